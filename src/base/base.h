/* base.h — small libc-only helpers shared by every layer: time, randomness, hashing of
 * secrets, constant-time comparison, checked allocation and a growable string buffer.
 * Nothing here depends on another stagedoor module. Allocation failure aborts. */
#ifndef SD_BASE_H
#define SD_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Wall clock and monotonic clock in microseconds. */
int64_t sd_now_usec(void);
int64_t sd_mono_usec(void);

/* Checked allocation: abort on failure (style.md). */
void *sd_malloc(size_t n);
void *sd_calloc(size_t n, size_t size);
void *sd_realloc(void *p, size_t n);
char *sd_strdup(const char *s);
char *sd_strndup(const char *s, size_t n);
/* printf into a fresh heap string. */
char *sd_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *sd_vasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

/* Fill buf with n cryptographically random bytes (getrandom). Returns 0 or -errno. */
int sd_random_bytes(void *buf, size_t n);

/* SHA-256 of data as 64 lowercase hex chars + NUL into out[65]. */
void sd_sha256_hex(const void *data, size_t len, char out[65]);
/* SHA-256 (hex) of everything readable from fd, from its start (pread); 0 or -errno. */
int sd_sha256_fd(int fd, char out[65]);

/* Constant-time equality of two equal-length byte strings (false if lengths differ). */
bool sd_ct_equal(const void *a, size_t alen, const void *b, size_t blen);

/* Growable byte buffer, always NUL-terminated. Embed it and call _init/_release. */
struct sd_buf {
    char *data;
    size_t len;
    size_t cap;
};
void sd_buf_init(struct sd_buf *b);
void sd_buf_release(struct sd_buf *b);
void sd_buf_reset(struct sd_buf *b);
void sd_buf_append(struct sd_buf *b, const void *data, size_t n);
void sd_buf_puts(struct sd_buf *b, const char *s);
void sd_buf_printf(struct sd_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hand the buffer's memory to the caller (who frees it); the buffer is left empty. */
char *sd_buf_steal(struct sd_buf *b);

/* Parse a decimal int64 from the whole of s (no sign unless allow_negative). Returns 0 or
 * -EINVAL / -ERANGE. Replaces atoi/strtol misuse (banned). */
int sd_parse_int64(const char *s, bool allow_negative, int64_t *ret);

#endif
