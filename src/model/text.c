/* text.c — text rules of the data model: the "fold" used for duplicate keys (trim, collapse
 * whitespace, lowercase) and the pragmatic e-mail check (UTF-8 decoding is base/utf8.c).
 *
 * Invariants: UTF-8 is decoded by hand (base/utf8.c), so validity never depends on the locale.
 * Case mapping and the whitespace class come from one "C.UTF-8" locale object created once
 * (pthread_once) and never changed, so folding is reentrant and gives the same answer in every
 * thread whatever setlocale() says. If that locale is missing, folding falls back to ASCII. */
#include <locale.h>
#include <pthread.h>
#include <string.h>
#include <wctype.h>

#include "base/base.h"
#include "model/model.h"

static pthread_once_t utf8_locale_once = PTHREAD_ONCE_INIT;
static locale_t utf8_locale = (locale_t)0;

static void utf8_locale_init(void)
{
    utf8_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
}

static locale_t get_utf8_locale(void)
{
    pthread_once(&utf8_locale_once, utf8_locale_init);
    return utf8_locale;
}

static bool is_space(uint32_t cp, locale_t loc)
{
    if (cp < 0x80 || !loc) {
        return cp == ' ' || (cp >= '\t' && cp <= '\r');
    }
    return iswspace_l((wint_t)cp, loc) != 0;
}

static uint32_t to_lower(uint32_t cp, locale_t loc)
{
    if (cp < 0x80 || !loc) {
        return (cp >= 'A' && cp <= 'Z') ? cp + ('a' - 'A') : cp;
    }
    wint_t l = towlower_l((wint_t)cp, loc);
    if (l == WEOF || l > 0x10ffff || (l >= 0xd800 && l <= 0xdfff)) {
        return cp;
    }
    return (uint32_t)l;
}

static void put_utf8(struct sd_buf *b, uint32_t cp)
{
    char o[4];
    size_t n;
    if (cp < 0x80) {
        o[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        o[0] = (char)(0xf0 | (cp >> 18));
        o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    sd_buf_append(b, o, n);
}

char *sd_text_fold(const char *s)
{
    locale_t loc = get_utf8_locale();
    struct sd_buf b;
    sd_buf_init(&b);
    size_t len = strlen(s), i = 0;
    bool pending_space = false;
    while (i < len) {
        uint32_t cp;
        int n = sd_utf8_next(s + i, len - i, &cp);
        if (n < 0) {
            /* Callers fold validated text; stray bytes still get a deterministic result. */
            cp = 0xfffd;
            n = 1;
        }
        i += (size_t)n;
        if (is_space(cp, loc)) {
            pending_space = b.len > 0;
            continue;
        }
        if (pending_space) {
            sd_buf_append(&b, " ", 1);
            pending_space = false;
        }
        put_utf8(&b, to_lower(cp, loc));
    }
    return sd_buf_steal(&b);
}

static bool local_char_ok(unsigned char c)
{
    if (c >= 0x80) {
        return true; /* UTF-8 (RFC 6531); the whole string is checked for validity */
    }
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
        return true;
    }
    return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~.", c) != NULL;
}

static bool label_char_ok(unsigned char c)
{
    return c >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '-';
}

bool sd_email_valid(const char *s)
{
    if (!s) {
        return false;
    }
    size_t len = strlen(s);
    if (len == 0 || len > 254 || !sd_utf8_valid(s, len)) {
        return false;
    }
    const char *at = strchr(s, '@');
    if (!at || strchr(at + 1, '@')) {
        return false;
    }
    size_t llen = (size_t)(at - s);
    if (llen == 0 || llen > 64 || s[0] == '.' || s[llen - 1] == '.') {
        return false;
    }
    for (size_t i = 0; i < llen; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!local_char_ok(c) || (c == '.' && s[i + 1] == '.')) {
            return false;
        }
    }
    const char *d = at + 1;
    size_t dlen = len - llen - 1;
    if (dlen == 0 || dlen > 253) {
        return false;
    }
    size_t labels = 0, start = 0;
    for (size_t i = 0; i <= dlen; i++) {
        if (i < dlen && d[i] != '.') {
            if (!label_char_ok((unsigned char)d[i])) {
                return false;
            }
            continue;
        }
        size_t l = i - start;
        if (l == 0 || l > 63 || d[start] == '-' || d[i - 1] == '-') {
            return false;
        }
        labels++;
        start = i + 1;
    }
    return labels >= 2;
}
