/* utf8.c — strict UTF-8 decoding (by hand, so validity never depends on the process locale),
 * lossy repair and boundary-aware truncation. A sequence is refused if its lead byte is a
 * continuation or overlong lead (80..C1) or beyond U+10FFFF (F5..FF), if a continuation byte is
 * missing, or if the decoded value is overlong, a surrogate or above U+10FFFF. */
#include "base/utf8.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

int sd_utf8_next(const char *str, size_t len, uint32_t *ret_cp)
{
    const unsigned char *s = (const unsigned char *)str;
    if (len == 0) {
        return -1;
    }
    unsigned char c = s[0];
    if (c < 0x80) {
        *ret_cp = c;
        return 1;
    }
    int n;
    uint32_t cp, min;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
        min = 0x10000;
    } else {
        return -1; /* continuation byte, overlong lead (c0/c1) or beyond U+10FFFF (f5..ff) */
    }
    if (len < (size_t)n) {
        return -1;
    }
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return -1;
        }
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return -1;
    }
    *ret_cp = cp;
    return n;
}

bool sd_utf8_valid(const char *s, size_t len)
{
    if (!s) {
        return false;
    }
    size_t i = 0;
    while (i < len) {
        uint32_t cp;
        int n = sd_utf8_next(s + i, len - i, &cp);
        if (n < 0 || cp == 0) {
            return false;
        }
        i += (size_t)n;
    }
    return true;
}

size_t sd_utf8_seq_len(const char *s, size_t n)
{
    uint32_t cp;
    int l = sd_utf8_next(s, n, &cp);
    return l > 0 ? (size_t)l : 0;
}

char *sd_utf8_repair(const char *s, size_t n)
{
    /* Each input byte becomes at most 3 output bytes (U+FFFD). */
    if (n > (SIZE_MAX - 1) / 3) {
        n = (SIZE_MAX - 1) / 3;
    }
    char *out = sd_malloc(n * 3 + 1);
    size_t o = 0, i = 0;
    while (i < n) {
        size_t l = sd_utf8_seq_len(s + i, n - i);
        if (l == 0 || s[i] == '\0') {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
            continue;
        }
        memcpy(out + o, s + i, l);
        o += l;
        i += l;
    }
    out[o] = '\0';
    return out;
}

size_t sd_utf8_prefix_len(const char *s, size_t n, size_t max)
{
    if (max >= n) {
        return n;
    }
    size_t i = 0;
    for (;;) {
        size_t l = sd_utf8_seq_len(s + i, n - i);
        if (l == 0) {
            l = 1; /* an invalid byte is its own unit */
        }
        if (i + l > max) {
            return i;
        }
        i += l;
    }
}

int sd_utf8_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    va_list again;
    va_copy(again, ap);
    int r = vsnprintf(buf, size, fmt, ap);
    if (r < 0) {
        if (size) {
            buf[0] = '\0';
        }
    } else if (size > 0 && (size_t)r >= size) {
        /* Truncated: format the whole text once more to see the character cut at the end. */
        char *full = sd_malloc((size_t)r + 1);
        vsnprintf(full, (size_t)r + 1, fmt, again);
        size_t keep = sd_utf8_prefix_len(full, (size_t)r, size - 1);
        memcpy(buf, full, keep);
        buf[keep] = '\0';
        free(full);
    }
    va_end(again);
    return r;
}

int sd_utf8_snprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = sd_utf8_vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return r;
}
