/* fmt.c — see fmt.h. */
#include "base/fmt.h"

#include <string.h>

size_t sd_fmt_i64(char out[SD_FMT_I64_MAX], int64_t v)
{
    char tmp[SD_FMT_I64_MAX];
    size_t n = 0;
    /* in unsigned arithmetic, so INT64_MIN has a magnitude */
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    size_t len = 0;
    if (v < 0) {
        out[len++] = '-';
    }
    while (n) {
        out[len++] = tmp[--n];
    }
    out[len] = '\0';
    return len;
}

void sd_fmt_hex64(char out[17], uint64_t v)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--) {
        out[i] = hex[v & 15];
        v >>= 4;
    }
    out[16] = '\0';
}

void sd_line_init(struct sd_line *l, char *buf, size_t cap)
{
    l->buf = buf;
    l->cap = cap;
    l->len = 0;
    l->cut = 0;
    buf[0] = '\0';
}

void sd_line_put(struct sd_line *l, const char *s, size_t n)
{
    size_t room = l->cap - 1 - l->len;
    if (n > room) {
        n = room;
        l->cut = 1;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
    l->buf[l->len] = '\0';
}

void sd_line_puts(struct sd_line *l, const char *s)
{
    sd_line_put(l, s, strlen(s));
}

void sd_line_i64(struct sd_line *l, int64_t v)
{
    char d[SD_FMT_I64_MAX];
    size_t n = sd_fmt_i64(d, v);
    sd_line_put(l, d, n);
}
