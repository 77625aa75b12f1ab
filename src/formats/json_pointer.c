/* json_pointer.c — RFC 6901 JSON Pointer evaluation over jansson values.
 *
 * The pointer is walked token by token without copying the whole pointer per step: each token
 * is unescaped into one scratch buffer sized for the longest possible token (the pointer's own
 * length), so a lookup costs one allocation whatever the depth. Array indexes are parsed here,
 * not with strtoul, because RFC 6901 forbids what strtoul accepts: leading zeros, signs, spaces.
 * Overflowing indexes cannot exist in any array and simply find nothing. */
#include "formats/json_pointer.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

/* Length of the UTF-8 sequence at s (1..4), or 0 when it is not a valid scalar value encoding
 * (overlong, surrogate, beyond U+10FFFF, truncated). */
static size_t utf8_seq(const unsigned char *s)
{
    if (s[0] < 0x80) {
        return 1;
    }
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        return (s[1] & 0xc0) == 0x80 ? 2 : 0;
    }
    if (s[0] >= 0xe0 && s[0] <= 0xef) {
        unsigned lo = s[0] == 0xe0 ? 0xa0 : 0x80, hi = s[0] == 0xed ? 0x9f : 0xbf;
        return (s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80) ? 3 : 0;
    }
    if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        unsigned lo = s[0] == 0xf0 ? 0x90 : 0x80, hi = s[0] == 0xf4 ? 0x8f : 0xbf;
        return (s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 && (s[3] & 0xc0) == 0x80) ? 4 : 0;
    }
    return 0;
}

bool sd_json_pointer_valid(const char *pointer)
{
    if (!pointer) {
        return false;
    }
    if (pointer[0] == '\0') {
        return true;
    }
    if (pointer[0] != '/') {
        return false;
    }
    const unsigned char *p = (const unsigned char *)pointer;
    while (*p) {
        if (*p == '~' && p[1] != '0' && p[1] != '1') {
            return false;
        }
        /* A NUL inside a sequence makes utf8_seq fail before it reads past the terminator. */
        size_t n = utf8_seq(p);
        if (n == 0) {
            return false;
        }
        p += n;
    }
    return true;
}

/* Unescape the token starting at *p (just after a '/') into tok; advance *p to the next '/' or
 * the terminator. Returns false for a malformed escape. */
static bool next_token(const char **p, char *tok)
{
    const char *s = *p;
    size_t n = 0;
    while (*s && *s != '/') {
        if (*s == '~') {
            if (s[1] == '0') {
                tok[n++] = '~';
            } else if (s[1] == '1') {
                tok[n++] = '/';
            } else {
                return false;
            }
            s += 2;
        } else {
            tok[n++] = *s++;
        }
    }
    tok[n] = '\0';
    *p = s;
    return true;
}

/* A canonical array index: "0" or [1-9][0-9]*, and small enough for size_t. */
static bool parse_index(const char *tok, size_t *ret)
{
    if (tok[0] < '0' || tok[0] > '9' || (tok[0] == '0' && tok[1] != '\0')) {
        return false;
    }
    size_t v = 0;
    for (const char *c = tok; *c; c++) {
        if (*c < '0' || *c > '9') {
            return false;
        }
        size_t d = (size_t)(*c - '0');
        if (v > (SIZE_MAX - d) / 10) {
            return false;
        }
        v = v * 10 + d;
    }
    *ret = v;
    return true;
}

const json_t *sd_json_pointer_get(const json_t *root, const char *pointer)
{
    if (!root || !pointer) {
        return NULL;
    }
    if (pointer[0] == '\0') {
        return root;
    }
    if (pointer[0] != '/') {
        return NULL;
    }
    char *tok = sd_malloc(strlen(pointer) + 1);
    const json_t *cur = root;
    const char *p = pointer;
    while (cur && *p == '/') {
        p++;
        if (!next_token(&p, tok)) {
            cur = NULL;
            break;
        }
        if (json_is_object(cur)) {
            cur = json_object_get(cur, tok);
        } else if (json_is_array(cur)) {
            size_t i;
            cur = parse_index(tok, &i) ? json_array_get(cur, i) : NULL;
        } else {
            cur = NULL;
        }
    }
    free(tok);
    return cur;
}
