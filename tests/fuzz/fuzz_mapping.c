/* fuzz_mapping.c — fuzz target for connector mappings: spec check, normalization and applying
 * to a row and to a JSON object.
 *
 * Input: a JSON mapping spec, a 0x00 byte, then the row as 0x1f-separated "name=value" pairs
 * (a pair without '=' is a name with a NULL value). Unparsable JSON stands for the identity
 * mapping, so the row path is fuzzed either way. Besides "no crash, no leak" (ASan/LSan) it
 * checks the module's promises and aborts when one breaks:
 *  - sd_mapping_new: 0 with a mapping and no issue, or -EINVAL with issues and *ret untouched;
 *    the normalized spec is accepted again and normalizes to itself;
 *  - apply: a result is a JSON object whose keys and strings (at any depth) are valid UTF-8
 *    without NUL and that encodes, and added no issue; NULL added at least one;
 *  - every issue list encodes to JSON with valid UTF-8 pointers and messages.
 * Results are also fed to the validators, which must not crash on anything a mapping makes. */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mapping/mapping.h"

#define MAX_PAIRS 256

static void check_issues(const struct sd_issues *l)
{
    if (l->n > l->limit || l->total < l->n) {
        abort();
    }
    for (size_t i = 0; i < l->n; i++) {
        const char *p = l->items[i].pointer, *msg = l->items[i].message;
        if (!sd_utf8_valid(p, strlen(p)) || !sd_utf8_valid(msg, strlen(msg)) ||
            (p[0] != '\0' && p[0] != '/')) {
            abort();
        }
    }
    json_t *arr = sd_issues_to_json(l);
    if (json_array_size(arr) != l->n) {
        abort();
    }
    char *s = json_dumps(arr, JSON_COMPACT);
    if (!s) {
        abort();
    }
    free(s);
    json_decref(arr);
}

static void check_strings(const json_t *v, int depth)
{
    if (depth > 64) {
        abort(); /* the fuzz inputs never nest; a mapping must not make them */
    }
    if (json_is_string(v)) {
        if (!sd_utf8_valid(json_string_value(v), json_string_length(v))) {
            abort();
        }
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            check_strings(json_array_get(v, i), depth + 1);
        }
    } else if (json_is_object(v)) {
        for (void *it = json_object_iter((json_t *)v); it;
             it = json_object_iter_next((json_t *)v, it)) {
            if (!sd_utf8_valid(json_object_iter_key(it), json_object_iter_key_len(it))) {
                abort();
            }
            check_strings(json_object_iter_value(it), depth + 1);
        }
    }
}

static void validate(enum sd_kind kind, const json_t *rec)
{
    struct sd_issues errors, warnings;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    sd_issues_init(&warnings, SD_MAX_ISSUES);
    if (kind == SD_KIND_EVENT) {
        struct sd_event_rec r = {0};
        sd_validate_event(rec, "/r", &r, &errors, &warnings);
        sd_event_rec_release(&r);
    } else if (kind == SD_KIND_CUSTOMER) {
        struct sd_customer_rec r = {0};
        sd_validate_customer(rec, "/r", &r, &errors, &warnings);
        sd_customer_rec_release(&r);
    } else {
        struct sd_sale_rec r = {0};
        sd_validate_sale(rec, "/r", &r, &errors, &warnings);
        sd_sale_rec_release(&r);
    }
    check_issues(&errors);
    check_issues(&warnings);
    sd_issues_release(&errors);
    sd_issues_release(&warnings);
}

static void check_result(enum sd_kind kind, json_t *out, const struct sd_issues *errors,
                         size_t errors0)
{
    if (!out) {
        if (errors->total == errors0) {
            abort();
        }
        return;
    }
    if (!json_is_object(out) || errors->total != errors0) {
        abort();
    }
    check_strings(out, 0);
    char *s = json_dumps(out, JSON_COMPACT);
    if (!s) {
        abort();
    }
    free(s);
    validate(kind, out);
    json_decref(out);
}

static void check_roundtrip(const struct sd_mapping *m)
{
    json_t *norm = sd_mapping_to_json(m);
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    struct sd_mapping *m2 = NULL;
    if (!json_is_object(norm) || sd_mapping_new(norm, &m2, &errors) != 0 || !m2) {
        abort();
    }
    json_t *norm2 = sd_mapping_to_json(m2);
    if (!json_equal(norm, norm2)) {
        abort();
    }
    json_decref(norm2);
    json_decref(norm);
    sd_mapping_free(m2);
    sd_issues_release(&errors);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t speclen = nul ? (size_t)(nul - data) : size;
    json_t *spec = json_loadb((const char *)data, speclen,
                              JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_ANY, NULL);
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    struct sd_mapping *m = (struct sd_mapping *)&errors; /* sentinel: untouched on failure */
    int rc = sd_mapping_new(spec, &m, &errors);
    if (rc == 0) {
        if (errors.total != 0 || !m || m == (struct sd_mapping *)&errors) {
            abort();
        }
    } else if (rc != -EINVAL || errors.total == 0 || m != (struct sd_mapping *)&errors) {
        abort();
    }
    check_issues(&errors);
    sd_issues_release(&errors);
    json_decref(spec);
    if (rc != 0) {
        return 0;
    }
    check_roundtrip(m);

    /* The row: a NUL-terminated copy cut into pieces in place. */
    size_t rowlen = nul ? size - speclen - 1 : 0;
    char *row = malloc(rowlen + 1);
    if (!row) {
        abort();
    }
    if (rowlen) {
        memcpy(row, nul + 1, rowlen);
    }
    row[rowlen] = '\0';
    const char *names[MAX_PAIRS], *values[MAX_PAIRS];
    size_t lens[MAX_PAIRS], vlens[MAX_PAIRS];
    size_t n = 0;
    char *p = row, *end = row + rowlen;
    while (rowlen > 0 && n < MAX_PAIRS) {
        char *sep = memchr(p, 0x1f, (size_t)(end - p));
        char *stop = sep ? sep : end;
        *stop = '\0';
        char *eq = memchr(p, '=', (size_t)(stop - p));
        names[n] = p;
        if (eq) {
            *eq = '\0';
            values[n] = eq + 1;
            lens[n] = (size_t)(eq - p);
            vlens[n] = (size_t)(stop - eq - 1);
        } else {
            values[n] = NULL;
            lens[n] = (size_t)(stop - p);
            vlens[n] = 0;
        }
        n++;
        if (!sep) {
            break;
        }
        p = sep + 1;
    }

    /* The same pairs as a JSON object: values jansson refuses as strings become numbers. */
    json_t *obj = json_object();
    for (size_t i = 0; i < n; i++) {
        json_t *v = values[i] ? json_stringn(values[i], vlens[i]) : json_null();
        if (!v) {
            v = json_integer((json_int_t)vlens[i]);
        }
        json_object_setn_new(obj, names[i], lens[i], v); /* refused keys: v is freed */
    }

    sd_issues_init(&errors, SD_MAX_ISSUES);
    for (int k = SD_KIND_EVENT; k <= SD_KIND_SALE; k++) {
        size_t e0 = errors.total;
        json_t *out =
            sd_mapping_apply_row(m, (enum sd_kind)k, names, values, n, "/line/1", &errors);
        check_result((enum sd_kind)k, out, &errors, e0);
        e0 = errors.total;
        out = sd_mapping_apply_object(m, (enum sd_kind)k, obj, "/items/0", &errors);
        check_result((enum sd_kind)k, out, &errors, e0);
    }
    check_issues(&errors);
    sd_issues_release(&errors);
    json_decref(obj);
    free(row);
    sd_mapping_free(m);
    return 0;
}
