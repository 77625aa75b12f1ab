/* base.c — libc-level helpers: clocks, checked allocation, randomness, SHA-256 of secrets,
 * constant-time comparison, a growable buffer and strict integer parsing. Allocation failure
 * aborts (style.md): callers never see NULL from sd_malloc & co. */
#include "base/base.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

int64_t sd_now_usec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t sd_mono_usec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void oom(void)
{
    fputs("stagedoor: out of memory\n", stderr);
    abort();
}

void *sd_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        oom();
    }
    return p;
}

void *sd_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        oom();
    }
    return p;
}

void *sd_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        oom();
    }
    return q;
}

char *sd_strdup(const char *s)
{
    return sd_strndup(s, strlen(s));
}

char *sd_strndup(const char *s, size_t n)
{
    char *p = sd_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *sd_vasprintf(const char *fmt, va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) {
        oom();
    }
    return s;
}

char *sd_asprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = sd_vasprintf(fmt, ap);
    va_end(ap);
    return s;
}

int sd_random_bytes(void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static void hex_digest(const unsigned char *md, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
}

void sd_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(data, len, md);
    hex_digest(md, out);
}

int sd_sha256_fd(int fd, char out[65])
{
    EVP_MD_CTX *mc = EVP_MD_CTX_new();
    if (!mc || EVP_DigestInit_ex(mc, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(mc);
        return -ENOMEM;
    }
    char *buf = sd_malloc(1 << 20);
    off_t off = 0;
    int r = 0;
    for (;;) {
        ssize_t n = pread(fd, buf, 1 << 20, off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            r = -errno;
            break;
        }
        if (n == 0) {
            break;
        }
        EVP_DigestUpdate(mc, buf, (size_t)n);
        off += n;
    }
    unsigned char md[SHA256_DIGEST_LENGTH];
    unsigned int mdl = 0;
    if (r == 0 && EVP_DigestFinal_ex(mc, md, &mdl) == 1) {
        hex_digest(md, out);
    } else if (r == 0) {
        r = -EIO;
    }
    free(buf);
    EVP_MD_CTX_free(mc);
    return r;
}

bool sd_ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    if (alen != blen) {
        return false;
    }
    return CRYPTO_memcmp(a, b, alen) == 0;
}

void sd_buf_init(struct sd_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void sd_buf_release(struct sd_buf *b)
{
    free(b->data);
    sd_buf_init(b);
}

void sd_buf_reset(struct sd_buf *b)
{
    b->len = 0;
    if (b->data) {
        b->data[0] = '\0';
    }
}

static void buf_grow(struct sd_buf *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len - 1) {
        oom();
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap) {
        return;
    }
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) {
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    }
    b->data = sd_realloc(b->data, cap);
    b->cap = cap;
}

void sd_buf_append(struct sd_buf *b, const void *data, size_t n)
{
    buf_grow(b, n);
    if (n) {
        memcpy(b->data + b->len, data, n);
    }
    b->len += n;
    b->data[b->len] = '\0';
}

void sd_buf_puts(struct sd_buf *b, const char *s)
{
    sd_buf_append(b, s, strlen(s));
}

void sd_buf_printf(struct sd_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        va_end(ap2);
        return;
    }
    buf_grow(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    b->len += (size_t)n;
}

char *sd_buf_steal(struct sd_buf *b)
{
    char *p = b->data ? b->data : sd_strdup("");
    sd_buf_init(b);
    return p;
}

int sd_parse_int64(const char *s, bool allow_negative, int64_t *ret)
{
    if (!s || !*s) {
        return -EINVAL;
    }
    bool neg = false;
    if (*s == '-') {
        if (!allow_negative) {
            return -EINVAL;
        }
        neg = true;
        s++;
    }
    if (!*s) {
        return -EINVAL;
    }
    int64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') {
            return -EINVAL;
        }
        int d = *s - '0';
        if (v > (INT64_MAX - d) / 10) {
            return -ERANGE;
        }
        v = v * 10 + d;
    }
    *ret = neg ? -v : v;
    return 0;
}
