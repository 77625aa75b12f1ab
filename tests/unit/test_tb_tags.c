/* test_tb_tags.c — the segment → fan tag sync's pure parts and its store: the diff between the
 * fans a tag should have and those it was last given (table-driven: empty sides, duplicates,
 * numeric order, ids of different lengths), the fan id check, the answers of tag_create and
 * tag_add/remove read strictly (a failed fan only counts if it was sent, each once), the
 * `segments` setting checked entry by entry, and the remote reference set the sync keeps
 * (list in pages, put and delete in one transaction, scoped by connector and kind). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/base.h"
#include "connectors/tradablebits/tb_tags.h"
#include "core/connector.h"
#include "store/audience.h"
#include "store/store.h"
#include "store_fixture.h"

#define MAXV 8

/* "a,b,c" → the list, in the caller's buffer. */
static size_t split(const char *csv, char buf[256], const char *out[MAXV])
{
    size_t n = 0;
    snprintf(buf, 256, "%s", csv);
    for (char *p = buf; *p && n < MAXV;) {
        out[n++] = p;
        char *c = strchr(p, ',');
        if (!c) {
            break;
        }
        *c = '\0';
        p = c + 1;
    }
    return n;
}

static void assert_list(const char *const *got, size_t n, const char *want)
{
    char buf[256] = "";
    for (size_t i = 0; i < n; i++) {
        strncat(buf, i ? "," : "", sizeof(buf) - strlen(buf) - 1);
        strncat(buf, got[i], sizeof(buf) - strlen(buf) - 1);
    }
    assert_string_equal(buf, want);
}

static void test_diff(void **state)
{
    (void)state;
    static const struct {
        const char *want, *have;
        const char *add, *del;
        size_t same, n_want;
    } cases[] = {
        {"", "", "", "", 0, 0},
        {"1,2,3", "", "1,2,3", "", 0, 3},
        {"", "4,5", "", "4,5", 0, 0},
        {"1,2,3", "1,2,3", "", "", 3, 3},
        {"1,2,3,4", "3,4,5,6", "1,2", "5,6", 2, 4},
        /* members mapping to one fan count once */
        {"7,7,8", "8", "7", "", 1, 2},
        /* numeric order, not byte order: 9 before 10 before 100 */
        {"100,9,10", "", "9,10,100", "", 0, 3},
        {"2", "10,2,1", "", "1,10", 1, 1},
        {"123456789012345678,5", "5,99", "123456789012345678", "99", 1, 2},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        char bw[256], bh[256];
        const char *w[MAXV], *h[MAXV];
        size_t nw = cases[k].want[0] ? split(cases[k].want, bw, w) : 0;
        size_t nh = cases[k].have[0] ? split(cases[k].have, bh, h) : 0;
        struct tb_tag_diff d;
        tb_tags_diff(w, nw, h, nh, &d);
        assert_list(d.add, d.n_add, cases[k].add);
        assert_list(d.del, d.n_del, cases[k].del);
        assert_int_equal(d.n_same, cases[k].same);
        assert_int_equal(d.n_want, cases[k].n_want);
        assert_true(d.n_add > 0 || d.add == NULL);
        assert_true(d.n_del > 0 || d.del == NULL);
        tb_tag_diff_release(&d);
    }
}

static void test_fan_id(void **state)
{
    (void)state;
    assert_true(tb_tags_is_fan_id("1"));
    assert_true(tb_tags_is_fan_id("123456789012345678"));
    assert_false(tb_tags_is_fan_id("1234567890123456789")); /* 19 digits */
    assert_false(tb_tags_is_fan_id(""));
    assert_false(tb_tags_is_fan_id(NULL));
    assert_false(tb_tags_is_fan_id("012"));
    assert_false(tb_tags_is_fan_id("12a"));
    assert_false(tb_tags_is_fan_id("-1"));
    assert_false(tb_tags_is_fan_id("1 "));
}

static void test_parse_create(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        int r;
        const char *tag;
        bool dup;
    } cases[] = {
        {"{\"meta\":{},\"data\":{\"tag_id\":17,\"tag_name\":\"x\",\"status\":\"success\"}}", 0,
         "17", false},
        {"{\"data\":{\"tag_id\":\"4\",\"status\":\"duplicate\"}}", 0, "4", true},
        {"{\"data\":{\"tag_id\":4,\"status\":\"error\"}}", -EPROTO, NULL, false},
        {"{\"data\":{\"status\":\"success\"}}", -EPROTO, NULL, false},
        {"{\"data\":{\"tag_id\":-4,\"status\":\"success\"}}", -EPROTO, NULL, false},
        {"{\"data\":{\"tag_id\":\"4; drop\",\"status\":\"success\"}}", -EPROTO, NULL, false},
        {"{\"meta\":{\"status\":\"error\"},\"data\":{\"tag_id\":4,\"status\":\"success\"}}",
         -EPROTO, NULL, false},
        {"[1,2]", -EPROTO, NULL, false},
        {"not json", -EPROTO, NULL, false},
        {"", -EPROTO, NULL, false},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        char *tag = NULL;
        bool dup = false;
        char why[128] = "";
        int r = tb_tags_parse_create(cases[k].body, strlen(cases[k].body), &tag, &dup, why,
                                     sizeof(why));
        assert_int_equal(r, cases[k].r);
        if (r == 0) {
            assert_string_equal(tag, cases[k].tag);
            assert_int_equal(dup, cases[k].dup);
        } else {
            assert_null(tag);
            assert_true(why[0] != '\0');
        }
        free(tag);
    }
}

static void test_parse_batch(void **state)
{
    (void)state;
    const char *sent[] = {"1", "2", "3"};
    static const struct {
        const char *body;
        int r;
        const char *failed;
    } cases[] = {
        {"{\"data\":{\"added\":[1,2,3],\"unchanged\":[],\"errors\":[]}}", 0, ""},
        {"{\"data\":{\"added\":[1],\"errors\":[{\"fan_id\":\"2\",\"error\":\"no such fan\"}]}}", 0,
         "2"},
        /* an id that was not sent, or named twice, counts once or not at all */
        {"{\"data\":{\"errors\":[{\"fan_id\":9},{\"fan_id\":3},{\"fan_id\":3},{\"x\":1}]}}", 0,
         "3"},
        {"{\"data\":{\"removed\":[1,2,3]}}", 0, ""},
        {"{\"data\":{\"errors\":{}}}", -EPROTO, ""},
        {"{\"data\":[]}", -EPROTO, ""},
        {"{\"meta\":{\"status\":\"error\"},\"data\":{}}", -EPROTO, ""},
        {"{", -EPROTO, ""},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        char **failed = NULL;
        size_t n = 99;
        char why[128] = "";
        int r = tb_tags_parse_batch(cases[k].body, strlen(cases[k].body), sent, 3, &failed, &n, why,
                                    sizeof(why));
        assert_int_equal(r, cases[k].r);
        if (r == 0) {
            assert_list((const char *const *)failed, n, cases[k].failed);
            for (size_t i = 0; i < n; i++) {
                free(failed[i]);
            }
            free(failed);
        } else {
            assert_true(why[0] != '\0');
        }
    }
}

static bool has(const struct sd_issues *e, const char *ptr, const char *why)
{
    for (size_t i = 0; i < e->n; i++) {
        if (strcmp(e->items[i].pointer, ptr) == 0 && strstr(e->items[i].message, why)) {
            return true;
        }
    }
    return false;
}

static void test_segments_setting(void **state)
{
    (void)state;
    const struct sd_connector *c = sd_connector_find("tradablebits");
    assert_non_null(c);
    assert_non_null(c->segment_operation);
    assert_string_equal(c->segment_operation, TB_OP_SYNC_TAG);
    assert_true(c->segment_dry_run);
    static const struct {
        const char *segments;
        const char *why; /* NULL: accepted */
    } cases[] = {
        {"", NULL},
        {"seg_0123456789abcdef", NULL},
        {" seg_a @ every 1d ; seg_b;seg_c@daily at 03:00 Europe/Berlin ;", NULL},
        {"seg_a;seg_a@every 1d", "listed twice"},
        {"seg a", "not a segment id"},
        {"seg_a@every fortnight", "schedule"},
        {"@every 1d", "not a segment id"},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        json_t *in =
            json_pack("{s:s, s:s, s:s, s:s, s:s}", "api_key", "k", "api_secret", "s", "currency",
                      "CAD", "event_city", "Vancouver", "segments", cases[k].segments);
        struct sd_issues errors;
        sd_issues_init(&errors, SD_MAX_ISSUES);
        json_t *out = sd_connector_check_settings(c, in, &errors);
        if (cases[k].why) {
            assert_null(out);
            assert_true(has(&errors, "/settings/segments", cases[k].why));
        } else {
            assert_non_null(out);
        }
        json_decref(out);
        json_decref(in);
        sd_issues_release(&errors);
    }
}

static void test_remote_ref_set(void **state)
{
    (void)state;
    struct sd_test_store st;
    struct sd_store_handle *h = NULL;
    sd_test_store_setup(&st, "tbtags", &h);
    const char *kind = "tag_member:seg_a";
    char ids[2500][8];
    const char *loc[2500], *rem[2500];
    for (size_t i = 0; i < 2500; i++) {
        snprintf(ids[i], sizeof(ids[i]), "%zu", 100000 + i);
        loc[i] = ids[i];
        rem[i] = "77";
    }
    assert_int_equal(sd_store_remote_ref_apply(h, "c1", kind, loc, rem, 2500, NULL, 0), 0);
    /* another connector and another kind are other sets */
    assert_int_equal(sd_store_remote_ref_apply(h, "c2", kind, loc, rem, 3, NULL, 0), 0);
    assert_int_equal(sd_store_remote_ref_apply(h, "c1", "tag_member:seg_b", loc, rem, 2, NULL, 0),
                     0);
    /* delete and put in one call; an absent id is no error */
    const char *gone[] = {ids[0], ids[1], "nope"};
    const char *newl[] = {"900000"}, *newr[] = {"77"};
    assert_int_equal(sd_store_remote_ref_apply(h, "c1", kind, newl, newr, 1, gone, 3), 0);

    /* paged in byte order */
    size_t total = 0;
    char *after = NULL;
    for (int page = 0; page < 10; page++) {
        char **l = NULL, **r = NULL;
        size_t n = 0;
        assert_int_equal(sd_store_remote_ref_list(h, "c1", kind, after, 1000, &l, &r, &n), 0);
        for (size_t i = 0; i < n; i++) {
            if (i > 0) {
                assert_true(strcmp(l[i - 1], l[i]) < 0);
            }
            assert_string_equal(r[i], "77");
            assert_string_not_equal(l[i], ids[0]);
            free(r[i]);
        }
        total += n;
        free(after);
        after = n ? sd_strdup(l[n - 1]) : NULL;
        for (size_t i = 0; i < n; i++) {
            free(l[i]);
        }
        free(l);
        free(r);
        if (n < 1000) {
            break;
        }
    }
    free(after);
    assert_int_equal(total, 2500 - 2 + 1);
    char **l = NULL, **r = NULL;
    size_t n = 9;
    assert_int_equal(sd_store_remote_ref_list(h, "c3", kind, NULL, 10, &l, &r, &n), 0);
    assert_int_equal(n, 0);
    assert_null(l);
    assert_null(r);
    assert_int_equal(sd_store_remote_ref_list(h, "c1", kind, NULL, 0, &l, &r, &n), -EINVAL);
    assert_int_equal(
        sd_store_remote_ref_list(h, "c1", kind, NULL, SD_REMOTE_REFS_PAGE_MAX + 1, &l, &r, &n),
        -EINVAL);
    assert_int_equal(
        sd_store_remote_ref_apply(h, "c1", kind, NULL, NULL, SD_REMOTE_REFS_APPLY_MAX + 1, NULL, 0),
        -EINVAL);
    const char *bad[] = {NULL};
    assert_int_equal(sd_store_remote_ref_apply(h, "c1", kind, NULL, NULL, 0, bad, 1), -EINVAL);
    /* the single-reference ops see the same rows */
    char *one = NULL;
    assert_int_equal(sd_store_remote_ref_get(h, "c1", kind, "900000", &one), 0);
    assert_string_equal(one, "77");
    free(one);
    sd_test_store_release(&st, h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_diff),
        cmocka_unit_test(test_fan_id),
        cmocka_unit_test(test_parse_create),
        cmocka_unit_test(test_parse_batch),
        cmocka_unit_test(test_segments_setting),
        cmocka_unit_test(test_remote_ref_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
