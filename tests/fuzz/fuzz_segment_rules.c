/* fuzz_segment_rules.c — fuzz target for the segment rule parser (core/segment_rules.c).
 *
 * Input: any bytes, parsed as JSON (NUL allowed in strings, so keys and values with NUL reach
 * the parser); unparsable input is dropped. Besides "no crash, no leak, no UB" it checks the
 * parser's promises and aborts when one breaks:
 *  - 0 with a tree and no issue, or -EINVAL with at least one issue and *ret untouched;
 *  - every issue's pointer starts at the given root ("/rules") and, like its message, is valid
 *    UTF-8, and the list encodes to JSON (it becomes the 400 body);
 *  - a tree is well formed: known kinds, not has one kid, the node count and nesting within
 *    the documented limits, each condition's value count fits its operator (between 2, in
 *    1..SD_SEG_RULE_LIST_MAX, exists none, others 1), texts are valid UTF-8 within the size
 *    limit (folding may grow a text a little, never past 4x), currencies are 3 uppercase
 *    letters. */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/segment_rules.h"

static size_t nodes;

static void check_conds(const struct sd_seg_cond *v, size_t n, bool measure)
{
    for (size_t i = 0; i < n; i++) {
        const struct sd_seg_cond *c = &v[i];
        nodes++;
        if ((c->field == SD_SEG_F_MEASURE) != measure || (unsigned)c->op > SD_SEG_EXISTS) {
            abort();
        }
        size_t want_lo = 1, want_hi = 1;
        if (c->op == SD_SEG_BETWEEN) {
            want_lo = want_hi = 2;
        } else if (c->op == SD_SEG_IN) {
            want_hi = SD_SEG_RULE_LIST_MAX;
        } else if (c->op == SD_SEG_EXISTS) {
            want_lo = want_hi = 0;
        }
        if (c->n < want_lo || c->n > want_hi || (c->n > 0) != (c->v != NULL)) {
            abort();
        }
        for (size_t j = 0; j < c->n; j++) {
            const char *t = c->v[j].text;
            if (t && (!sd_utf8_valid(t, strlen(t)) || strlen(t) > 4 * SD_SEG_RULE_TEXT_MAX)) {
                abort();
            }
        }
        if (c->field == SD_SEG_F_PRICE) {
            if (strlen(c->currency) != 3) {
                abort();
            }
            for (int k = 0; k < 3; k++) {
                if (c->currency[k] < 'A' || c->currency[k] > 'Z') {
                    abort();
                }
            }
        }
    }
}

static void check_tree(const struct sd_seg_rule *r, unsigned depth)
{
    nodes++;
    if (depth > SD_SEG_RULE_DEPTH_MAX || (unsigned)r->kind > SD_SEG_ABANDONED) {
        abort();
    }
    if (r->not_bought_since && r->kind != SD_SEG_ABANDONED) {
        abort();
    }
    if (r->kind == SD_SEG_NOT && r->n_kids != 1) {
        abort();
    }
    if (r->kind != SD_SEG_ALL && r->kind != SD_SEG_ANY && r->kind != SD_SEG_NOT && r->n_kids != 0) {
        abort();
    }
    for (size_t i = 0; i < r->n_kids; i++) {
        if (!r->kids[i]) {
            abort();
        }
        check_tree(r->kids[i], depth + 1);
    }
    check_conds(r->where, r->n_where, false);
    check_conds(r->cmp, r->n_cmp, true);
    bool measured = r->kind == SD_SEG_COUNT || r->kind == SD_SEG_FIRST_PURCHASE ||
                    r->kind == SD_SEG_LAST_PURCHASE;
    if (measured != (r->n_cmp > 0)) {
        abort();
    }
    if (r->kind == SD_SEG_COUNT && r->measure == SD_SEG_M_SPEND && strlen(r->currency) != 3) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t jerr;
    json_t *j = json_loadb((const char *)data, size, JSON_ALLOW_NUL | JSON_DECODE_ANY, &jerr);
    if (!j) {
        return 0;
    }
    struct sd_issues errors;
    sd_issues_init(&errors, 20);
    struct sd_seg_rule *r = (struct sd_seg_rule *)&errors; /* sentinel: must stay untouched */
    int rc = sd_seg_rule_parse(j, "/rules", &r, &errors);
    if (rc == 0) {
        if (errors.total != 0 || !r || r == (struct sd_seg_rule *)&errors) {
            abort();
        }
        nodes = 0;
        check_tree(r, 1);
        sd_seg_rule_free(r);
    } else {
        if (rc != -EINVAL || errors.total == 0 || r != (struct sd_seg_rule *)&errors) {
            abort();
        }
    }
    for (size_t i = 0; i < errors.n; i++) {
        const char *p = errors.items[i].pointer, *m = errors.items[i].message;
        if (strncmp(p, "/rules", 6) != 0 || !sd_utf8_valid(p, strlen(p)) ||
            !sd_utf8_valid(m, strlen(m))) {
            abort();
        }
    }
    json_t *arr = sd_issues_to_json(&errors);
    char *s = json_dumps(arr, JSON_COMPACT);
    if (!s || json_array_size(arr) != errors.n) {
        abort();
    }
    free(s);
    json_decref(arr);
    sd_issues_release(&errors);
    json_decref(j);
    return 0;
}
