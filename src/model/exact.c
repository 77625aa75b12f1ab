/* exact.c — keeps prices sent as JSON numbers exact.
 *
 * jansson reads a number with a fraction into a double, which cannot tell 89.0000000000000001
 * from 89. After a successful parse, this walks the raw text alongside the parsed tree and
 * swaps every `sales_price` / `base_price` member that is a plain decimal literal (digits, a
 * point, digits — no sign, no exponent) for a string holding the literal exactly as sent, which
 * validation then reads digit by digit (model.h: sd_decimal_parse). Other numbers are left as
 * they are. The text is known to be valid JSON (jansson accepted it), so the walker only has to
 * follow it, not check it. */
#include <ctype.h>
#include <string.h>

#include "model/model.h"

static void skip_ws(const char **p, const char *end)
{
    while (*p < end && (**p == ' ' || **p == '\t' || **p == '\n' || **p == '\r')) {
        (*p)++;
    }
}

/* Skip a string token; *p is at the opening quote. Returns the raw content span. */
static void skip_string(const char **p, const char *end, const char **ret_s, size_t *ret_n)
{
    const char *s = ++(*p);
    while (*p < end && **p != '"') {
        if (**p == '\\' && *p + 1 < end) {
            (*p)++;
        }
        (*p)++;
    }
    *ret_s = s;
    *ret_n = (size_t)(*p - s);
    if (*p < end) {
        (*p)++;
    }
}

static bool is_price_key(const char *k, size_t n)
{
    return (n == 11 && memcmp(k, "sales_price", 11) == 0) ||
           (n == 10 && memcmp(k, "base_price", 10) == 0);
}

static bool plain_decimal(const char *s, size_t n)
{
    size_t i = 0, digits_before = 0, digits_after = 0;
    while (i < n && isdigit((unsigned char)s[i])) {
        i++;
        digits_before++;
    }
    if (i >= n || s[i] != '.') {
        return false;
    }
    i++;
    while (i < n && isdigit((unsigned char)s[i])) {
        i++;
        digits_after++;
    }
    return i == n && digits_before > 0 && digits_after > 0;
}

static void walk(const char **p, const char *end, json_t *v, int depth);

static void walk_object(const char **p, const char *end, json_t *obj, int depth)
{
    (*p)++; /* { */
    for (;;) {
        skip_ws(p, end);
        if (*p >= end || **p == '}') {
            break;
        }
        if (**p != '"') { /* not where valid JSON would be: stop rather than guess */
            *p = end;
            return;
        }
        const char *k;
        size_t kn;
        skip_string(p, end, &k, &kn);
        skip_ws(p, end);
        (*p)++; /* : */
        skip_ws(p, end);
        /* Find the member by its decoded name; a name with escapes is decoded by jansson. */
        json_t *child = NULL;
        char key[16];
        if (!memchr(k, '\\', kn)) {
            if (kn < sizeof(key)) {
                memcpy(key, k, kn);
                key[kn] = '\0';
                child = json_object_get(obj, key);
            } else {
                json_t *name = json_stringn(k, kn);
                child = name ? json_object_get(obj, json_string_value(name)) : NULL;
                json_decref(name);
            }
        } else {
            json_t *name = json_loadb(k - 1, kn + 2, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
            if (json_is_string(name)) {
                child = json_object_get(obj, json_string_value(name));
            }
            json_decref(name);
        }
        const char *start = *p;
        walk(p, end, child, depth + 1);
        if (child && is_price_key(k, kn) && json_is_real(child) &&
            plain_decimal(start, (size_t)(*p - start))) {
            json_object_set_new(obj, key, json_stringn(start, (size_t)(*p - start)));
        }
        skip_ws(p, end);
        if (*p < end && **p == ',') {
            (*p)++;
        }
    }
    if (*p < end) {
        (*p)++;
    }
}

static void walk(const char **p, const char *end, json_t *v, int depth)
{
    skip_ws(p, end);
    if (*p >= end) {
        return;
    }
    char c = **p;
    if (c == '{') {
        if (json_is_object(v) && depth < 64) {
            walk_object(p, end, v, depth);
            return;
        }
    } else if (c == '[') {
        (*p)++;
        size_t i = 0;
        for (;;) {
            skip_ws(p, end);
            if (*p >= end || **p == ']') {
                break;
            }
            const char *before = *p;
            walk(p, end, json_is_array(v) ? json_array_get(v, i) : NULL, depth + 1);
            if (*p == before) { /* no progress: not valid JSON here, stop */
                *p = end;
                return;
            }
            i++;
            skip_ws(p, end);
            if (*p < end && **p == ',') {
                (*p)++;
            }
        }
        if (*p < end) {
            (*p)++;
        }
        return;
    } else if (c == '"') {
        const char *s;
        size_t n;
        skip_string(p, end, &s, &n);
        return;
    } else {
        while (*p < end &&
               (isalnum((unsigned char)**p) || **p == '-' || **p == '+' || **p == '.')) {
            (*p)++;
        }
        return;
    }
    /* A container we do not descend into (too deep, or no matching value): skip it whole. */
    int nest = 0;
    while (*p < end) {
        char ch = **p;
        if (ch == '"') {
            const char *s;
            size_t n;
            skip_string(p, end, &s, &n);
            continue;
        }
        (*p)++;
        if (ch == '{' || ch == '[') {
            nest++;
        } else if ((ch == '}' || ch == ']') && --nest == 0) {
            return;
        }
    }
}

void sd_json_exact_prices(json_t *root, const char *text, size_t len)
{
    const char *p = text;
    walk(&p, text + len, root, 0);
}
