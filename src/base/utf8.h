/* utf8.h — strict UTF-8 checks, lossy repair and truncation that never cuts a character.
 *
 * Client input reaches answers, error lists and logs as C strings that are not guaranteed to be
 * UTF-8 (a `%FF` in a URL, a truncated error text). Every place that quotes such text goes
 * through these helpers, so an answer is always valid JSON and a shortened text always ends on
 * a character boundary. "Valid" is RFC 3629: no overlong forms, no surrogates (U+D800..U+DFFF),
 * nothing above U+10FFFF. libc only, thread-safe (no state). */
#ifndef SD_BASE_UTF8_H
#define SD_BASE_UTF8_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Decode one UTF-8 sequence at s (len bytes available): returns its length 1..4 and writes the
 * code point (NUL decodes as 0), or -1 if the bytes there are not valid UTF-8 or len == 0. */
int sd_utf8_next(const char *s, size_t len, uint32_t *ret_cp);

/* Length (1..4) of the valid UTF-8 sequence at s[0..n), or 0 if there is none. */
size_t sd_utf8_seq_len(const char *s, size_t n);

/* True if s[0..n) is valid UTF-8 without NUL bytes (false for s == NULL). */
bool sd_utf8_valid(const char *s, size_t n);

/* A fresh NUL-terminated copy of s[0..n) in which every byte that is not part of a valid
 * sequence, and every NUL byte, is replaced by U+FFFD. Never fails (allocation failure aborts). */
char *sd_utf8_repair(const char *s, size_t n);

/* The largest length <= max such that s[0..len) does not end inside a valid multi-byte
 * sequence of s[0..n). A prefix of valid UTF-8 stays valid; bytes of invalid input are kept or
 * dropped one at a time. */
size_t sd_utf8_prefix_len(const char *s, size_t n, size_t max);

/* snprintf that, when the output does not fit, shortens it to a character boundary instead of
 * cutting a multi-byte character. Returns what snprintf returns (the untruncated length, or a
 * negative value on an encoding error, in which case buf holds ""). */
int sd_utf8_snprintf(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int sd_utf8_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#endif
