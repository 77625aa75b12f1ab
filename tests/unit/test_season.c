/* test_season.c — the demo season generator: determinism, counts and order of bodies,
 * uniqueness of ids, e-mail addresses, invoice numbers and performances, referential
 * integrity of sales, the shape of every field, and validity under the model's validator. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "demo/season.h"
#include "model/model.h"

/* ---- helpers --------------------------------------------------------------------------------- */

static const char *kind_of(const json_t *body)
{
    assert_int_equal(json_object_size(body), 1);
    const char *key = json_object_iter_key(json_object_iter((json_t *)body));
    assert_true(strcmp(key, "events") == 0 || strcmp(key, "customers") == 0 ||
                strcmp(key, "sales") == 0);
    return key;
}

static char *dump(const json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    assert_non_null(s);
    return s;
}

/* A growable list of owned strings, checked for duplicates after sorting. */
struct strs {
    char **v;
    size_t n, cap;
};

static void strs_add(struct strs *l, const char *s)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        l->v = sd_realloc(l->v, l->cap * sizeof(*l->v));
    }
    l->v[l->n++] = sd_strdup(s);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void strs_sort(struct strs *l)
{
    if (l->n == 0) {
        return;
    }
    qsort(l->v, l->n, sizeof(*l->v), cmp_str);
}

static bool strs_has(const struct strs *l, const char *s)
{
    if (l->n == 0) {
        return false;
    }
    return bsearch(&s, l->v, l->n, sizeof(*l->v), cmp_str) != NULL;
}

static void assert_unique(struct strs *l, const char *what)
{
    strs_sort(l);
    for (size_t i = 1; i < l->n; i++) {
        if (strcmp(l->v[i - 1], l->v[i]) == 0) {
            fail_msg("duplicate %s '%s'", what, l->v[i]);
        }
    }
}

static void strs_release(struct strs *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i]);
    }
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static const char *str_field(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (!s) {
        fail_msg("missing string field '%s' in %s", key, json_dumps(o, JSON_COMPACT));
    }
    return s;
}

static bool all_digits(const char *s, size_t n)
{
    if (strlen(s) != n) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
    }
    return true;
}

/* "123.45" → 12345; fails the test on any other shape. */
static long long cents_of(const char *s)
{
    const char *dot = strchr(s, '.');
    assert_non_null(dot);
    assert_true(dot > s);
    assert_int_equal(strlen(dot + 1), 2);
    long long v = 0;
    for (const char *p = s; *p; p++) {
        if (p == dot) {
            continue;
        }
        assert_true(*p >= '0' && *p <= '9');
        v = v * 10 + (*p - '0');
    }
    return v;
}

/* Everything the season produced, as sets and counts, for the checks below. */
struct season_facts {
    size_t bodies, events, customers, sales, anon;
    size_t by_category[4]; /* regular, VIP, subscription, comp */
    struct strs event_ids, event_dates; /* event_dates[i] = "EVT-…|YYYY-MM-DD" */
    struct strs performances, hall_slots;
    struct strs customer_ids, emails, invoices;
};

static void facts_release(struct season_facts *f)
{
    strs_release(&f->event_ids);
    strs_release(&f->event_dates);
    strs_release(&f->performances);
    strs_release(&f->hall_slots);
    strs_release(&f->customer_ids);
    strs_release(&f->emails);
    strs_release(&f->invoices);
}

static void check_event(struct season_facts *f, const json_t *e)
{
    const char *id = str_field(e, "event_id");
    assert_int_equal(strncmp(id, "EVT-2026-", 9), 0);
    const char *date = str_field(e, "date"), *time = str_field(e, "time");
    const char *venue = str_field(e, "venue"), *hall = str_field(e, "hall");
    assert_true(sd_date_valid(date));
    assert_true(sd_time_valid(time));
    assert_true(strcmp(time, "19:30:00") == 0 || strcmp(time, "18:00:00") == 0 ||
                strcmp(time, "11:00:00") == 0);
    assert_true(strlen(str_field(e, "title")) > 0);
    assert_string_equal(str_field(e, "title"), str_field(e, "work_title"));
    assert_true(strlen(str_field(e, "composer")) > 0);
    assert_true(strlen(str_field(e, "city")) > 0);
    assert_true(json_is_integer(json_object_get(e, "capacity")));
    assert_true(json_integer_value(json_object_get(e, "capacity")) > 0);
    const json_t *cast = json_object_get(e, "cast");
    assert_true(json_is_array(cast));
    assert_true(json_array_size(cast) >= 3);
    size_t i;
    const json_t *member;
    json_array_foreach(cast, i, member)
    {
        assert_true(strlen(str_field(member, "name")) > 0);
        assert_true(strlen(str_field(member, "role")) > 0);
    }
    strs_add(&f->event_ids, id);
    char *s = sd_asprintf("%s|%s", id, date);
    strs_add(&f->event_dates, s);
    free(s);
    s = sd_asprintf("%s|%s|%s|%s", date, time, venue, hall);
    strs_add(&f->performances, s);
    free(s);
    s = sd_asprintf("%s|%s|%s", date, time, hall); /* the seed's duplicate rule */
    strs_add(&f->hall_slots, s);
    free(s);
}

static void check_customer(struct season_facts *f, const json_t *c)
{
    const char *id = str_field(c, "customer_id");
    assert_int_equal(strncmp(id, "C-", 2), 0);
    const char *email = str_field(c, "email");
    assert_true(sd_email_valid(email));
    assert_non_null(strstr(email, "example."));
    char *lower = sd_text_fold(email);
    strs_add(&f->emails, lower);
    free(lower);
    const json_t *post = json_object_get(c, "post_code");
    if (post) {
        assert_true(all_digits(json_string_value(post), 5));
    }
    const json_t *opt = json_object_get(c, "ad_opt_out");
    assert_true(opt == NULL || json_is_boolean(opt));
    strs_add(&f->customer_ids, id);
}

static void check_sale(struct season_facts *f, const json_t *s)
{
    strs_add(&f->invoices, str_field(s, "invoice_number"));
    const char *event_id = str_field(s, "event_id");
    assert_true(strs_has(&f->event_ids, event_id));
    const char *customer_id = str_field(s, "customer_id");
    if (strcmp(customer_id, "ANON") == 0) {
        f->anon++;
    } else {
        assert_true(strs_has(&f->customer_ids, customer_id));
    }

    /* purchase_datetime: UTC, and on a day before the performance. */
    const char *when = str_field(s, "purchase_datetime");
    char utc[40];
    assert_int_equal(sd_datetime_to_utc(when, utc, sizeof(utc)), 0);
    assert_string_equal(utc, when);
    char *key = sd_asprintf("%s|", event_id);
    size_t lo = 0, hi = f->event_dates.n;
    while (lo < hi) { /* first entry ≥ key */
        size_t mid = (lo + hi) / 2;
        if (strcmp(f->event_dates.v[mid], key) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    assert_true(lo < f->event_dates.n);
    assert_int_equal(strncmp(f->event_dates.v[lo], key, strlen(key)), 0);
    const char *event_date = f->event_dates.v[lo] + strlen(key);
    assert_true(strncmp(when, event_date, 10) < 0);
    assert_true(strncmp(when, "2026-03-01", 10) > 0);
    free(key);

    const char *category = str_field(s, "ticket_category");
    static const char *const categories[] = {"regular", "VIP", "subscription", "comp"};
    size_t c = 0;
    while (c < 4 && strcmp(category, categories[c]) != 0) {
        c++;
    }
    assert_true(c < 4);
    f->by_category[c]++;

    const json_t *qty = json_object_get(s, "quantity");
    assert_true(json_is_integer(qty));
    assert_in_range(json_integer_value(qty), 1, 6);
    long long price = cents_of(str_field(s, "sales_price"));
    const json_t *base = json_object_get(s, "base_price");
    if (base) {
        assert_true(cents_of(json_string_value(base)) <= price);
    }
    if (c == 3) {
        assert_int_equal(price, 0);
    } else {
        assert_true(price > 0);
    }
    assert_string_equal(str_field(s, "currency"), "EUR");
}

/* Run a whole season, checking each body on the way; sets are left sorted. */
static void collect(struct season_facts *f, uint64_t seed, size_t ne, size_t nc, size_t ns,
                    size_t max_records)
{
    struct sd_season *s = sd_season_new(seed, ne, nc, ns);
    assert_non_null(s);
    int phase = 0; /* 0 events, 1 customers, 2 sales: never goes back */
    json_t *body;
    while ((body = sd_season_next(s, max_records))) {
        f->bodies++;
        const char *kind = kind_of(body);
        int p = kind[0] == 'e' ? 0 : kind[0] == 'c' ? 1 : 2;
        assert_true(p >= phase);
        if (p != phase) {
            /* Sorted once per phase so later records can be looked up. */
            strs_sort(&f->event_ids);
            strs_sort(&f->event_dates);
            strs_sort(&f->customer_ids);
        }
        phase = p;
        const json_t *records = json_object_get(body, kind);
        assert_true(json_array_size(records) >= 1);
        assert_true(json_array_size(records) <= max_records);
        size_t i;
        const json_t *rec;
        json_array_foreach(records, i, rec)
        {
            if (p == 0) {
                check_event(f, rec);
                f->events++;
            } else if (p == 1) {
                check_customer(f, rec);
                f->customers++;
            } else {
                check_sale(f, rec);
                f->sales++;
            }
        }
        json_decref(body);
    }
    assert_null(sd_season_next(s, max_records)); /* stays exhausted */
    sd_season_free(s);
    assert_int_equal(f->events, ne);
    assert_int_equal(f->customers, nc);
    assert_int_equal(f->sales, ns);
    assert_unique(&f->event_ids, "event_id");
    assert_unique(&f->performances, "date|time|venue|hall");
    assert_unique(&f->hall_slots, "date|time|hall");
    assert_unique(&f->customer_ids, "customer_id");
    assert_unique(&f->emails, "email");
    assert_unique(&f->invoices, "invoice_number");
}

/* ---- tests ----------------------------------------------------------------------------------- */

/* Concatenated compact dump of the season's records, cut into bodies of max_records. */
static char *season_text(uint64_t seed, size_t ne, size_t nc, size_t ns, size_t max_records,
                         bool with_body_breaks)
{
    struct sd_season *s = sd_season_new(seed, ne, nc, ns);
    assert_non_null(s);
    struct sd_buf out;
    sd_buf_init(&out);
    json_t *body;
    while ((body = sd_season_next(s, max_records))) {
        const json_t *records = json_object_get(body, kind_of(body));
        size_t i;
        const json_t *rec;
        json_array_foreach(records, i, rec)
        {
            char *t = dump(rec);
            sd_buf_puts(&out, t);
            sd_buf_puts(&out, "\n");
            free(t);
        }
        if (with_body_breaks) {
            sd_buf_puts(&out, "--\n");
        }
        json_decref(body);
    }
    sd_season_free(s);
    return sd_buf_steal(&out);
}

static void test_deterministic(void **state)
{
    (void)state;
    char *a = season_text(42, 40, 300, 2000, 64, true);
    char *b = season_text(42, 40, 300, 2000, 64, true);
    assert_string_equal(a, b);
    /* Cutting into other body sizes changes nothing but the cuts. */
    char *c = season_text(42, 40, 300, 2000, 64, false);
    char *d = season_text(42, 40, 300, 2000, 7, false);
    assert_string_equal(c, d);
    /* Another seed, another season. */
    char *e = season_text(43, 40, 300, 2000, 64, true);
    assert_string_not_equal(a, e);
    free(a);
    free(b);
    free(c);
    free(d);
    free(e);
}

static void test_default_season(void **state)
{
    (void)state;
    struct season_facts f = {0};
    collect(&f, 1, SD_SEASON_DEFAULT_EVENTS, SD_SEASON_DEFAULT_CUSTOMERS,
            SD_SEASON_DEFAULT_SALES, 1000);
    /* Bodies: 1 of events, 20 of customers, 150 of sales. */
    assert_int_equal(f.bodies, 1 + 20 + 150);
    /* The season stays in its calendar. */
    for (size_t i = 0; i < f.hall_slots.n; i++) {
        assert_true(strncmp(f.hall_slots.v[i], "2026-09-01", 10) >= 0);
        assert_true(strncmp(f.hall_slots.v[i], "2027-06-30", 10) <= 0);
    }
    /* About 5 % anonymous; most tickets regular, all categories present. */
    assert_in_range(f.anon, f.sales * 3 / 100, f.sales * 7 / 100);
    assert_true(f.by_category[0] > f.sales / 2);
    for (int c = 1; c < 4; c++) {
        assert_true(f.by_category[c] > 0);
    }
    facts_release(&f);
}

struct size_case {
    size_t ne, nc, ns, max_records;
};

static void test_sizes(void **state)
{
    (void)state;
    static const struct size_case cases[] = {
        {0, 0, 0, 10},    /* nothing at all */
        {1, 0, 0, 10},    /* one event */
        {1, 0, 25, 10},   /* no customers: every sale is anonymous */
        {1, 1, 1, 0},     /* max_records 0 counts as 1 */
        {5, 3, 40, 1},    /* one record per body */
        {400, 20, 500, 50}, /* more performances than the season holds */
        {3000, 0, 0, 500},  /* a crowded calendar exercises the fallback scan */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct size_case *c = &cases[i];
        struct season_facts f = {0};
        size_t max = c->max_records ? c->max_records : 1;
        collect(&f, 7 + i, c->ne, c->nc, c->ns, max);
        size_t expect = (c->ne + max - 1) / max + (c->nc + max - 1) / max + (c->ns + max - 1) / max;
        assert_int_equal(f.bodies, expect);
        if (c->nc == 0) {
            assert_int_equal(f.anon, c->ns);
        }
        facts_release(&f);
    }
}

static void test_bad_sizes(void **state)
{
    (void)state;
    assert_null(sd_season_new(1, 0, 10, 1)); /* sales need an event */
    assert_null(sd_season_new(1, 2000000, 0, 0));
    assert_null(sd_season_new(1, 1, (size_t)200000000, 0));
    sd_season_free(NULL);
}

/* Every body passes the model's validator without an error. */
static void test_validates(void **state)
{
    (void)state;
    struct sd_season *s = sd_season_new(2026, SD_SEASON_DEFAULT_EVENTS,
                                        SD_SEASON_DEFAULT_CUSTOMERS, SD_SEASON_DEFAULT_SALES);
    assert_non_null(s);
    json_t *body;
    size_t records = 0;
    while ((body = sd_season_next(s, 500))) {
        struct sd_batch batch = {0};
        struct sd_issues errors, warnings;
        sd_issues_init(&errors, SD_MAX_ISSUES);
        sd_issues_init(&warnings, SD_MAX_ISSUES);
        int r = sd_validate_ingest(body, &batch, &errors, &warnings);
        if (r != 0 || errors.total != 0) {
            json_t *list = sd_issues_to_json(&errors);
            char *text = json_dumps(list, JSON_COMPACT);
            char *rec = NULL;
            if (errors.n > 0) {
                /* Show the first offending record (pointer "/kind/i/field"). */
                const char *p = errors.items[0].pointer;
                const char *kind = kind_of(body);
                const char *idx = p + 1 + strlen(kind) + 1;
                int64_t k = 0;
                char num[24] = {0};
                size_t n = strcspn(idx, "/");
                memcpy(num, idx, n < sizeof(num) - 1 ? n : sizeof(num) - 1);
                if (sd_parse_int64(num, false, &k) == 0) {
                    rec = dump(json_array_get(json_object_get(body, kind), (size_t)k));
                }
            }
            fail_msg("body %zu rejected (r=%d): %s record: %s", records, r, text,
                     rec ? rec : "?");
        }
        records += sd_batch_count(&batch);
        sd_batch_release(&batch);
        sd_issues_release(&errors);
        sd_issues_release(&warnings);
        json_decref(body);
    }
    sd_season_free(s);
    assert_int_equal(records, SD_SEASON_DEFAULT_EVENTS + SD_SEASON_DEFAULT_CUSTOMERS +
                                  SD_SEASON_DEFAULT_SALES);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_default_season),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_bad_sizes),
        cmocka_unit_test(test_validates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
