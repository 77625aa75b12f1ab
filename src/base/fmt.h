/* fmt.h — integers as text without printf, for the text every request writes (its id, its
 * rate-limit headers, its log line): glibc's vfprintf costs more than the rest of a small
 * line. Same digits as printf's "%lld" and "%016llx". libc only. */
#ifndef SD_BASE_FMT_H
#define SD_BASE_FMT_H

#include <stddef.h>
#include <stdint.h>

#define SD_FMT_I64_MAX 21 /* "-9223372036854775808" and its NUL */

/* v in decimal ("%lld"), NUL-terminated; returns the length without the NUL. */
size_t sd_fmt_i64(char out[SD_FMT_I64_MAX], int64_t v);
/* v as 16 lowercase hex digits, zero-padded ("%016llx"), NUL-terminated. */
void sd_fmt_hex64(char out[17], uint64_t v);

/* A line built in a caller's fixed buffer: appends past the end are cut (and flagged), the
 * text stays NUL-terminated. */
struct sd_line {
    char *buf;
    size_t cap; /* bytes of buf, at least 1 */
    size_t len;
    int cut; /* an append did not fit */
};

void sd_line_init(struct sd_line *l, char *buf, size_t cap);
void sd_line_put(struct sd_line *l, const char *s, size_t n);
void sd_line_puts(struct sd_line *l, const char *s);
void sd_line_i64(struct sd_line *l, int64_t v);

#endif
