/* test_profiles.c — unified customers (issue #4 §1): linking at ingest under each rule, a
 * source record that never moves, split, the most restrictive opt-out, the suppression list at
 * ingest, and GDPR erasure. Records go through the real validator (sd_validate_ingest) so
 * e-mail folding is the production one; write operations run the way the writer runs them
 * (begin, savepoint, op, release, commit). Each test gets a fresh store.
 * store suite: both backends */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "base/base.h"
#include "model/model.h"
#include "store/audience.h"
#include "store/store.h"
#include "store_fixture.h"
#include "store_sql.h"

struct fx {
    struct sd_test_store st;
    struct sd_store_handle *h;
    int64_t t1, t2;
};

static const enum sd_env T = SD_ENV_TEST;

static int setup(void **state)
{
    struct fx *f = sd_calloc(1, sizeof(*f));
    sd_test_store_setup(&f->st, "profiles", &f->h);
    f->t1 = sd_test_store_tenant(f->h, "acme", "Acme");
    f->t2 = sd_test_store_tenant(f->h, "beta", "Beta");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    sd_test_store_release(&f->st, f->h);
    free(f);
    return 0;
}

/* ---- helpers --------------------------------------------------------------------------------- */

/* Validate `json` (an ingest body) and apply it from `source` as the writer would; 202 asserted. */
static void ingest_flags(struct fx *f, int64_t tenant, enum sd_env env, const char *source,
                         const char *json, unsigned flags)
{
    json_error_t jerr;
    json_t *body = json_loads(json, JSON_REJECT_DUPLICATES, &jerr);
    assert_non_null(body);
    struct sd_batch b = {0};
    struct sd_issues errors, warnings;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    sd_issues_init(&warnings, SD_MAX_ISSUES);
    int r = sd_validate_ingest_flags(body, flags, &b, &errors, &warnings);
    if (r != 0 && errors.n) {
        fprintf(stderr, "%s: %s\n", errors.items[0].pointer, errors.items[0].message);
    }
    assert_int_equal(r, 0);
    b.source = source;
    b.upsert_sales = true;
    struct sd_apply_result res;
    sd_apply_result_init(&res);
    assert_int_equal(sd_store_write_begin(f->h), 0);
    assert_int_equal(sd_store_savepoint(f->h), 0);
    assert_int_equal(sd_store_apply_ingest(f->h, tenant, env, &b, &res), 0);
    if (res.outcome != SD_APPLY_OK && res.errors.n) {
        fprintf(stderr, "%s: %s\n", res.errors.items[0].pointer, res.errors.items[0].message);
    }
    assert_int_equal(res.outcome, SD_APPLY_OK);
    assert_int_equal(sd_store_savepoint_release(f->h), 0);
    assert_int_equal(sd_store_write_commit(f->h), 0);
    sd_apply_result_release(&res);
    sd_batch_release(&b);
    sd_issues_release(&errors);
    sd_issues_release(&warnings);
    json_decref(body);
}

static void ingest(struct fx *f, int64_t tenant, enum sd_env env, const char *source,
                   const char *json)
{
    ingest_flags(f, tenant, env, source, json, 0);
}

/* One customer from a source (`extra`: more members, e.g. ",\"ad_opt_out\":true"). */
static void customer(struct fx *f, int64_t tenant, const char *source, const char *cid,
                     const char *email, const char *extra)
{
    char *json = sd_asprintf("{\"customers\":[{\"customer_id\":\"%s\",\"email\":\"%s\"%s}]}", cid,
                             email, extra ? extra : "");
    ingest(f, tenant, T, source, json);
    free(json);
}

static void write_begin(struct fx *f)
{
    assert_int_equal(sd_store_write_begin(f->h), 0);
    assert_int_equal(sd_store_savepoint(f->h), 0);
}

/* Keep the op's work if r == 0, else undo it; commit; return r. */
static int write_end(struct fx *f, int r)
{
    if (r == 0) {
        assert_int_equal(sd_store_savepoint_release(f->h), 0);
    } else {
        assert_int_equal(sd_store_savepoint_rollback(f->h), 0);
    }
    assert_int_equal(sd_store_write_commit(f->h), 0);
    return r;
}

static int split(struct fx *f, int64_t tenant, int64_t pid, const char *source, const char *cid,
                 int64_t *ret_new)
{
    write_begin(f);
    return write_end(f, sd_store_profile_split(f->h, tenant, T, pid, source, cid, ret_new));
}

static struct sd_suppress_result suppress(struct fx *f, int64_t tenant, const char *key)
{
    struct sd_suppress_result res = {0};
    const char *keys[1] = {key};
    write_begin(f);
    assert_int_equal(write_end(f, sd_store_profile_suppress(f->h, tenant, T, keys, 1, &res)), 0);
    return res;
}

static int erase(struct fx *f, int64_t tenant, const char *source, const char *cid,
                 struct sd_erasure_result *res)
{
    write_begin(f);
    return write_end(f, sd_store_profile_erase(f->h, tenant, T, source, cid, res));
}

/* The profile of record (source, cid): its id, and the profile itself in *ret (optional). */
static int64_t profile_of(struct fx *f, int64_t tenant, const char *source, const char *cid,
                          struct sd_profile *ret)
{
    struct sd_profile *v = NULL;
    size_t n = 0;
    assert_int_equal(sd_store_profile_find_by_source(f->h, tenant, T, source, cid, &v, &n), 0);
    assert_int_equal(n, 1);
    int64_t id = v[0].id;
    if (ret) {
        *ret = v[0];
        v[0] = (struct sd_profile){0};
    }
    sd_profiles_free(v, n);
    return id;
}

static size_t n_profiles_by_email(struct fx *f, int64_t tenant, const char *key)
{
    struct sd_profile *v = NULL;
    size_t n = 0;
    assert_int_equal(sd_store_profile_find_by_email(f->h, tenant, T, key, &v, &n), 0);
    sd_profiles_free(v, n);
    return n;
}

static const struct sd_profile_member *member(const struct sd_profile *p, const char *source,
                                              const char *cid)
{
    for (size_t i = 0; i < p->n_members; i++) {
        if (strcmp(p->members[i].source, source) == 0 &&
            strcmp(p->members[i].customer_id, cid) == 0) {
            return &p->members[i];
        }
    }
    return NULL;
}

static void set_rule(struct fx *f, const char *client_id, enum sd_link_rule rule)
{
    assert_int_equal(sd_store_profile_link_rule_set(f->h, client_id, rule), 0);
    enum sd_link_rule got = SD_LINK_NONE;
    assert_int_equal(sd_store_profile_link_rule_get(f->h, client_id, &got), 0);
    assert_int_equal(got, rule);
}

/* Run a statement on the database behind the store's back (simulating older data). */
static void sql_exec(struct fx *f, const char *q)
{
    if (!sd_test_store_is_sqlite()) {
        PGconn *pg = PQconnectdb(f->st.url);
        assert_int_equal(PQstatus(pg), CONNECTION_OK);
        PGresult *res = PQexec(pg, q);
        assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
        PQclear(res);
        PQfinish(pg);
        return;
    }
    char path[160];
    snprintf(path, sizeof(path), "%s/stagedoor.db", f->st.dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, q, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* Direct SQL for facts the store interface does not expose (inspection only). */
static int64_t sql_int(struct fx *f, const char *q)
{
    return sd_test_sql_int(&f->st, q);
}

/* The text of q for the backend under test: SQLite's dialect, or PostgreSQL's (documents are
 * TEXT there, read as json). */
static const char *dialect(const char *sqlite, const char *pg)
{
    return sd_test_store_is_sqlite() ? sqlite : pg;
}

/* ---- tests ----------------------------------------------------------------------------------- */

static void test_link_rule_names(void **state)
{
    (void)state;
    enum sd_link_rule r;
    assert_int_equal(sd_link_rule_parse("email", &r), 0);
    assert_int_equal(r, SD_LINK_EMAIL);
    assert_int_equal(sd_link_rule_parse("email_and_last_name", &r), 0);
    assert_int_equal(r, SD_LINK_EMAIL_AND_LAST_NAME);
    assert_int_equal(sd_link_rule_parse("none", &r), 0);
    assert_int_equal(r, SD_LINK_NONE);
    assert_int_equal(sd_link_rule_parse("Email", &r), -EINVAL);
    assert_int_equal(sd_link_rule_parse(NULL, &r), -EINVAL);
    assert_string_equal(sd_link_rule_name(SD_LINK_EMAIL_AND_LAST_NAME), "email_and_last_name");
}

static void test_link_rule_control_plane(void **state)
{
    struct fx *f = *state;
    enum sd_link_rule r = SD_LINK_NONE;
    assert_int_equal(sd_store_profile_link_rule_get(f->h, "acme", &r), 0);
    assert_int_equal(r, SD_LINK_EMAIL); /* the default */
    int64_t v0 = 0, v1 = 0;
    assert_int_equal(sd_store_settings_version(f->h, &v0), 0);
    set_rule(f, "acme", SD_LINK_NONE);
    assert_int_equal(sd_store_settings_version(f->h, &v1), 0);
    assert_true(v1 > v0);
    assert_int_equal(sd_store_profile_link_rule_get(f->h, "beta", &r), 0);
    assert_int_equal(r, SD_LINK_EMAIL); /* per tenant */
    assert_int_equal(sd_store_profile_link_rule_get(f->h, "nope", &r), -ENOENT);
    assert_int_equal(sd_store_profile_link_rule_set(f->h, "nope", SD_LINK_EMAIL), -ENOENT);
}

/* Same address in three sources (case and whitespace differ) → one profile, three source ids. */
static void test_link_same_email_across_sources(void **state)
{
    struct fx *f = *state;
    customer(f, f->t1, "webhook", "C1", "Jane.Doe@Example.com", ",\"last_name\":\"Doe\"");
    customer(f, f->t1, "crm", "900", "  jane.doe@example.COM ", NULL);
    customer(f, f->t1, "shop", "s-7", "JANE.DOE@EXAMPLE.COM", NULL);
    customer(f, f->t1, "webhook", "C2", "other@example.com", NULL);

    struct sd_profile p = {0};
    int64_t id = profile_of(f, f->t1, "crm", "900", &p);
    assert_int_equal(p.n_members, 3);
    assert_non_null(member(&p, "webhook", "C1"));
    assert_non_null(member(&p, "shop", "s-7"));
    const struct sd_profile_member *m = member(&p, "webhook", "C1");
    assert_string_equal(m->email, "jane.doe@example.com");
    assert_string_equal(m->last_name, "Doe");
    assert_null(m->first_name);
    assert_int_equal(m->ad_opt_out, -1);
    assert_false(m->pinned);
    assert_non_null(strstr(m->doc, "\"customer_id\":\"C1\""));
    assert_false(p.opt_out);
    assert_false(p.suppressed);
    assert_true(p.created_usec > 0 && p.updated_usec >= p.created_usec);
    sd_profile_release(&p);

    assert_int_equal(profile_of(f, f->t1, "webhook", "C1", NULL), id);
    assert_true(profile_of(f, f->t1, "webhook", "C2", NULL) != id);
    assert_int_equal(n_profiles_by_email(f, f->t1, "jane.doe@example.com"), 1);

    /* get by id; lookups are scoped to tenant and environment */
    assert_int_equal(sd_store_profile_get(f->h, f->t1, T, id, &p), 0);
    assert_int_equal(p.n_members, 3);
    sd_profile_release(&p);
    assert_int_equal(sd_store_profile_get(f->h, f->t1, SD_ENV_PROD, id, &p), -ENOENT);
    assert_int_equal(sd_store_profile_get(f->h, f->t2, T, id, &p), -ENOENT);
    assert_int_equal(sd_store_profile_get(f->h, f->t1, T, id + 1000, &p), -ENOENT);
    assert_int_equal(n_profiles_by_email(f, f->t2, "jane.doe@example.com"), 0);

    /* without a source, an id is looked up in every source */
    struct sd_profile *v = NULL;
    size_t n = 0;
    assert_int_equal(sd_store_profile_find_by_source(f->h, f->t1, T, NULL, "900", &v, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].id, id);
    sd_profiles_free(v, n);
    assert_int_equal(sd_store_profile_find_by_source(f->h, f->t1, T, "webhook", "900", &v, &n), 0);
    assert_int_equal(n, 0);
    assert_null(v);

    /* the same address in the other environment is another person's record */
    ingest(f, f->t1, SD_ENV_PROD, "webhook",
           "{\"customers\":[{\"customer_id\":\"C1\",\"email\":\"jane.doe@example.com\"}]}");
    assert_int_equal(sql_int(f, "SELECT count(*) FROM profiles"), 3);
}

static void test_email_and_last_name(void **state)
{
    struct fx *f = *state;
    set_rule(f, "acme", SD_LINK_EMAIL_AND_LAST_NAME);
    customer(f, f->t1, "webhook", "A1", "family@example.com", ",\"last_name\":\"Müller\"");
    customer(f, f->t1, "crm", "B1", "FAMILY@example.com", ",\"last_name\":\"  MÜLLER \"");
    customer(f, f->t1, "crm", "B2", "family@example.com", ",\"last_name\":\"Schmidt\"");
    customer(f, f->t1, "crm", "B3", "family@example.com", NULL);
    customer(f, f->t1, "shop", "S3", "family@example.com", NULL);
    int64_t a = profile_of(f, f->t1, "webhook", "A1", NULL);
    assert_int_equal(profile_of(f, f->t1, "crm", "B1", NULL), a); /* case, whitespace, umlaut */
    int64_t b = profile_of(f, f->t1, "crm", "B2", NULL);
    assert_true(b != a);
    int64_t c = profile_of(f, f->t1, "crm", "B3", NULL);
    assert_true(c != a && c != b);
    assert_int_equal(profile_of(f, f->t1, "shop", "S3", NULL), c); /* both without last name */
    assert_int_equal(n_profiles_by_email(f, f->t1, "family@example.com"), 3);
}

static void test_rule_none(void **state)
{
    struct fx *f = *state;
    set_rule(f, "acme", SD_LINK_NONE);
    customer(f, f->t1, "webhook", "C1", "a@example.com", NULL);
    customer(f, f->t1, "crm", "C1", "a@example.com", NULL);
    assert_true(profile_of(f, f->t1, "webhook", "C1", NULL) !=
                profile_of(f, f->t1, "crm", "C1", NULL));
    assert_int_equal(n_profiles_by_email(f, f->t1, "a@example.com"), 2);
    /* the rule is per tenant: beta still links by e-mail */
    customer(f, f->t2, "webhook", "C1", "a@example.com", NULL);
    customer(f, f->t2, "crm", "C1", "a@example.com", NULL);
    assert_int_equal(profile_of(f, f->t2, "webhook", "C1", NULL),
                     profile_of(f, f->t2, "crm", "C1", NULL));
}

/* A source record keeps its profile whatever its source sends later. */
static void test_record_never_moves(void **state)
{
    struct fx *f = *state;
    customer(f, f->t1, "webhook", "C1", "a@example.com", NULL);
    customer(f, f->t1, "crm", "K1", "b@example.com", NULL);
    int64_t pa = profile_of(f, f->t1, "webhook", "C1", NULL);
    int64_t pb = profile_of(f, f->t1, "crm", "K1", NULL);
    assert_true(pa != pb);
    /* C1 now says it is b@: it stays where it is */
    customer(f, f->t1, "webhook", "C1", "b@example.com", NULL);
    assert_int_equal(profile_of(f, f->t1, "webhook", "C1", NULL), pa);
    assert_int_equal(profile_of(f, f->t1, "crm", "K1", NULL), pb);
    /* a new record with a@ still links to the profile that was made for a@ */
    customer(f, f->t1, "shop", "S1", "a@example.com", NULL);
    assert_int_equal(profile_of(f, f->t1, "shop", "S1", NULL), pa);
    /* a rule change does not move existing records either */
    set_rule(f, "acme", SD_LINK_NONE);
    customer(f, f->t1, "shop", "S1", "a@example.com", ",\"first_name\":\"Ann\"");
    assert_int_equal(profile_of(f, f->t1, "shop", "S1", NULL), pa);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM profiles"), 2);
}

static void test_split_sticks(void **state)
{
    struct fx *f = *state;
    customer(f, f->t1, "webhook", "C1", "shared@example.com", ",\"ad_opt_out\":true");
    customer(f, f->t1, "crm", "K9", "shared@example.com", ",\"ad_opt_out\":false");
    int64_t p = profile_of(f, f->t1, "webhook", "C1", NULL);
    assert_int_equal(profile_of(f, f->t1, "crm", "K9", NULL), p);

    int64_t q = 0;
    assert_int_equal(split(f, f->t1, p, "crm", "K9", &q), 0);
    assert_true(q > 0 && q != p);
    struct sd_profile pq = {0}, pp = {0};
    assert_int_equal(sd_store_profile_get(f->h, f->t1, T, q, &pq), 0);
    assert_int_equal(pq.n_members, 1);
    assert_true(pq.members[0].pinned);
    assert_false(pq.opt_out); /* recomputed: K9 alone did not opt out */
    assert_int_equal(sd_store_profile_get(f->h, f->t1, T, p, &pp), 0);
    assert_int_equal(pp.n_members, 1);
    assert_true(pp.opt_out);
    sd_profile_release(&pq);
    sd_profile_release(&pp);

    /* the split sticks: an update from its source does not link it back */
    customer(f, f->t1, "crm", "K9", "shared@example.com", ",\"first_name\":\"Kim\"");
    assert_int_equal(profile_of(f, f->t1, "crm", "K9", NULL), q);
    /* nothing links to a split-out profile by itself: a new record joins the original */
    customer(f, f->t1, "shop", "S1", "shared@example.com", NULL);
    assert_int_equal(profile_of(f, f->t1, "shop", "S1", NULL), p);

    /* errors: the only member; a record that is not a member; no such profile */
    int64_t z = 0;
    assert_int_equal(split(f, f->t1, q, "crm", "K9", &z), -EBUSY);
    assert_int_equal(split(f, f->t1, p, "crm", "K9", &z), -ENOENT);
    assert_int_equal(split(f, f->t1, 999999, "crm", "K9", &z), -ENOENT);
    assert_int_equal(split(f, f->t2, p, "shop", "S1", &z), -ENOENT); /* other tenant */
    assert_int_equal(profile_of(f, f->t1, "crm", "K9", NULL), q);
}

static void test_opt_out_most_restrictive(void **state)
{
    struct fx *f = *state;
    customer(f, f->t1, "webhook", "C1", "o@example.com", ",\"ad_opt_out\":true");
    customer(f, f->t1, "crm", "K1", "o@example.com", ",\"ad_opt_out\":false");
    struct sd_profile p = {0};
    profile_of(f, f->t1, "crm", "K1", &p);
    assert_true(p.opt_out);
    assert_int_equal(member(&p, "webhook", "C1")->ad_opt_out, 1);
    assert_int_equal(member(&p, "crm", "K1")->ad_opt_out, 0);
    sd_profile_release(&p);

    /* crm says false again: never clears the webhook's true */
    customer(f, f->t1, "crm", "K1", "o@example.com", ",\"ad_opt_out\":false");
    profile_of(f, f->t1, "crm", "K1", &p);
    assert_true(p.opt_out);
    sd_profile_release(&p);
    /* an update without the flag keeps the stored true */
    customer(f, f->t1, "webhook", "C1", "o@example.com", NULL);
    profile_of(f, f->t1, "crm", "K1", &p);
    assert_true(p.opt_out);
    sd_profile_release(&p);
    /* only the source that opted out can take it back */
    customer(f, f->t1, "webhook", "C1", "o@example.com", ",\"ad_opt_out\":false");
    profile_of(f, f->t1, "crm", "K1", &p);
    assert_false(p.opt_out);
    sd_profile_release(&p);
    /* and any source can opt the person out */
    customer(f, f->t1, "shop", "S1", "o@example.com", ",\"ad_opt_out\":true");
    profile_of(f, f->t1, "webhook", "C1", &p);
    assert_true(p.opt_out);
    assert_int_equal(p.n_members, 3);
    sd_profile_release(&p);
}

static void test_suppression(void **state)
{
    struct fx *f = *state;
    customer(f, f->t1, "webhook", "C1", "before@example.com", NULL);
    customer(f, f->t1, "webhook", "C2", "free@example.com", NULL);
    bool sup = true;
    assert_int_equal(sd_store_profile_is_suppressed(f->h, f->t1, T, "gone@example.com", &sup), 0);
    assert_false(sup);

    /* added before the record arrives: checked at ingest */
    struct sd_suppress_result r = suppress(f, f->t1, "gone@example.com");
    assert_int_equal(r.added, 1);
    assert_int_equal(r.profiles_suppressed, 0);
    customer(f, f->t1, "crm", "K1", "  Gone@Example.COM", NULL);
    struct sd_profile p = {0};
    profile_of(f, f->t1, "crm", "K1", &p);
    assert_true(p.suppressed);
    assert_false(p.opt_out);
    sd_profile_release(&p);
    assert_int_equal(sd_store_profile_is_suppressed(f->h, f->t1, T, "gone@example.com", &sup), 0);
    assert_true(sup);

    /* added after: the existing profile is marked at once; twice is no second entry */
    r = suppress(f, f->t1, "before@example.com");
    assert_int_equal(r.added, 1);
    assert_int_equal(r.profiles_suppressed, 1);
    r = suppress(f, f->t1, "before@example.com");
    assert_int_equal(r.added, 0);
    assert_int_equal(r.profiles_suppressed, 0);
    profile_of(f, f->t1, "webhook", "C1", &p);
    assert_true(p.suppressed);
    sd_profile_release(&p);
    profile_of(f, f->t1, "webhook", "C2", &p);
    assert_false(p.suppressed);
    sd_profile_release(&p);

    /* a second member with a suppressed address suppresses the profile it joins */
    customer(f, f->t1, "crm", "K2", "free@example.com", NULL);
    profile_of(f, f->t1, "crm", "K2", &p);
    assert_false(p.suppressed);
    sd_profile_release(&p);

    /* stored as hashes only, scoped per tenant and environment */
    assert_int_equal(sql_int(f, "SELECT count(*) FROM suppression WHERE email_hash LIKE '%@%'"), 0);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM suppression WHERE length(email_hash) = 64"
                                " AND reason = 'suppressed'"),
                     2);
    assert_int_equal(sd_store_profile_is_suppressed(f->h, f->t2, T, "gone@example.com", &sup), 0);
    assert_false(sup);
    customer(f, f->t2, "crm", "K1", "gone@example.com", NULL);
    profile_of(f, f->t2, "crm", "K1", &p);
    assert_false(p.suppressed);
    sd_profile_release(&p);
}

/* One request with several addresses: an address twice is added once, a profile reached by two
 * of them is counted once, addresses with quotes, backslashes and braces are kept as sent, and
 * an empty address fails the request (the writer rolls it back whole). */
static void test_suppress_many(void **state)
{
    struct fx *f = *state;
    static const char odd[] = "\"o'b\\c{,}\"@example.com";
    customer(f, f->t1, "webhook", "M1", "m1@example.com", NULL);
    customer(f, f->t1, "crm", "M2", "m1@example.com", NULL); /* the same profile */
    customer(f, f->t1, "webhook", "M3", "m3@example.com", NULL);
    const char *keys[] = {"m1@example.com", "new@example.com", "m1@example.com", odd};
    struct sd_suppress_result res = {0};
    write_begin(f);
    assert_int_equal(write_end(f, sd_store_profile_suppress(f->h, f->t1, T, keys, 4, &res)), 0);
    assert_int_equal(res.added, 3);
    assert_int_equal(res.profiles_suppressed, 1);
    bool sup = false;
    assert_int_equal(sd_store_profile_is_suppressed(f->h, f->t1, T, odd, &sup), 0);
    assert_true(sup);
    struct sd_profile p = {0};
    profile_of(f, f->t1, "crm", "M2", &p);
    assert_true(p.suppressed);
    sd_profile_release(&p);
    profile_of(f, f->t1, "webhook", "M3", &p);
    assert_false(p.suppressed);
    sd_profile_release(&p);

    const char *bad[] = {"m3@example.com", ""};
    write_begin(f);
    assert_int_equal(write_end(f, sd_store_profile_suppress(f->h, f->t1, T, bad, 2, &res)),
                     -EINVAL);
    assert_int_equal(sd_store_profile_is_suppressed(f->h, f->t1, T, "m3@example.com", &sup), 0);
    assert_false(sup);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM suppression"), 3);

    /* nothing to add: no entry, no count */
    write_begin(f);
    assert_int_equal(write_end(f, sd_store_profile_suppress(f->h, f->t1, T, NULL, 0, &res)), 0);
    assert_int_equal(res.added, 0);
    assert_int_equal(res.profiles_suppressed, 0);
}

static void test_erasure(void **state)
{
    struct fx *f = *state;
    ingest(f, f->t1, T, "webhook",
           "{\"events\":[{\"event_id\":\"E1\",\"title\":\"Otello\",\"date\":\"2025-10-03\","
           "\"time\":\"19:30:00\",\"venue\":\"State "
           "Opera\",\"hall\":\"Main\",\"city\":\"Berlin\",\"capacity\":1250"
           "}],\"customers\":[{\"customer_id\":\"C1\",\"email\":\"erase.me@example.com\","
           "\"first_name\":\"Eve\",\"last_name\":\"Gone\"},{\"customer_id\":\"C2\",\"email\":"
           "\"stay@example.com\"}],\"sales\":["
           "{\"invoice_number\":\"I1\",\"event_id\":\"E1\",\"customer_id\":\"C1\","
           "\"purchase_datetime\":\"2025-04-15T11:08:42Z\",\"sales_price\":\"89.00\","
           "\"currency\":\"EUR\",\"ticket_category\":\"regular\",\"quantity\":1},"
           "{\"invoice_number\":\"I2\",\"event_id\":\"E1\",\"customer_id\":\"C1\","
           "\"purchase_datetime\":\"2025-04-15T11:08:42Z\",\"sales_price\":\"89.00\","
           "\"currency\":\"EUR\",\"ticket_category\":\"regular\",\"quantity\":1},"
           "{\"invoice_number\":\"I3\",\"event_id\":\"E1\",\"customer_id\":\"C2\","
           "\"purchase_datetime\":\"2025-04-15T11:08:42Z\",\"sales_price\":\"89.00\","
           "\"currency\":\"EUR\",\"ticket_category\":\"regular\",\"quantity\":1}]}");
    ingest(f, f->t1, T, "crm",
           "{\"events\":[{\"event_id\":\"E1\",\"title\":\"Otello\",\"date\":\"2025-10-03\","
           "\"time\":\"19:30:00\",\"venue\":\"State "
           "Opera\",\"hall\":\"Main\",\"city\":\"Berlin\",\"capacity\":1250"
           "}],\"customers\":[{\"customer_id\":\"K1\",\"email\":\"Erase.Me@example.com\"}],"
           "\"sales\":[{\"invoice_number\":\"I4\",\"event_id\":\"E1\",\"customer_id\":\"K1\","
           "\"purchase_datetime\":\"2025-04-15T11:08:42Z\",\"sales_price\":\"89.00\","
           "\"currency\":\"EUR\",\"ticket_category\":\"regular\",\"quantity\":1}]}");
    int64_t pid = profile_of(f, f->t1, "webhook", "C1", NULL);
    assert_int_equal(profile_of(f, f->t1, "crm", "K1", NULL), pid);

    /* stored answers: one quotes C1, one does not */
    write_begin(f);
    struct sd_idem_entry e1 = {.status = 400,
                               .response = "{\"errors\":[{\"message\":\"customer 'C1' does not "
                                           "exist in test\"}]}",
                               .created_usec = sd_now_usec()};
    struct sd_idem_entry e2 = {
        .status = 202, .response = "{\"status\":\"queued\"}", .created_usec = sd_now_usec()};
    assert_int_equal(sd_store_idem_put(f->h, f->t1, T, "k1", &e1), 0);
    assert_int_equal(sd_store_idem_put(f->h, f->t1, T, "k2", &e2), 0);
    write_end(f, 0);

    int64_t max_seq_before = sql_int(f, "SELECT max(seq) FROM sales");
    struct sd_erasure_result res = {0};
    assert_int_equal(erase(f, f->t1, "webhook", "C1", &res), 0);
    assert_int_equal(res.profile_id, pid);
    assert_int_equal(res.records_erased, 2);
    assert_int_equal(res.sales_anonymized, 3);
    assert_int_equal(res.idempotency_purged, 1);

    /* records gone, sales kept and anonymous (column and document, with new seqs) */
    char *doc = NULL;
    assert_int_equal(sd_store_get_record(f->h, SD_KIND_CUSTOMER, f->t1, T, "C1", &doc), -ENOENT);
    assert_int_equal(sd_store_get_record(f->h, SD_KIND_CUSTOMER, f->t1, T, "K1", &doc), -ENOENT);
    assert_int_equal(sd_store_get_record(f->h, SD_KIND_SALE, f->t1, T, "I1", &doc), 0);
    assert_non_null(strstr(doc, "\"customer_id\":\"ANON\""));
    assert_null(strstr(doc, "C1"));
    free(doc);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM sales WHERE customer_id = 'ANON'"), 3);
    assert_int_equal(sql_int(f, dialect("SELECT count(*) FROM sales WHERE customer_id = 'ANON'"
                                        " AND json_extract(doc, '$.customer_id') = 'ANON'",
                                        "SELECT count(*) FROM sales WHERE customer_id = 'ANON'"
                                        " AND doc::json ->> 'customer_id' = 'ANON'")),
                     3);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM sales WHERE customer_id = 'C2'"), 1);
    assert_true(sql_int(f, "SELECT min(seq) FROM sales WHERE customer_id = 'ANON'") >
                max_seq_before);
    /* no personal data left anywhere in the environment */
    assert_int_equal(sql_int(f, "SELECT count(*) FROM customers WHERE email_key LIKE 'erase%'"
                                " OR doc LIKE '%Gone%'"),
                     0);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM profiles"), 1); /* C2's */
    assert_int_equal(sql_int(f, "SELECT count(*) FROM idempotency"), 1);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM idempotency WHERE response LIKE '%C1%'"), 0);
    /* the erasure is recorded without data; the address is on the list as a hash */
    assert_int_equal(sql_int(f, "SELECT count(*) FROM erasures WHERE records_erased = 2"
                                " AND sales_anonymized = 3"),
                     1);
    char hex[65];
    sd_sha256_hex("erase.me@example.com", strlen("erase.me@example.com"), hex);
    char *q = sd_asprintf("SELECT count(*) FROM suppression WHERE email_hash = '%s'"
                          " AND reason = 'erased'",
                          hex);
    assert_int_equal(sql_int(f, q), 1);
    free(q);

    /* sent again by a source: a new profile, suppressed, never pushed */
    customer(f, f->t1, "webhook", "C1", "erase.me@example.com", NULL);
    struct sd_profile p = {0};
    int64_t again = profile_of(f, f->t1, "webhook", "C1", &p);
    assert_true(again != pid);
    assert_true(p.suppressed);
    sd_profile_release(&p);

    /* nothing to erase */
    assert_int_equal(erase(f, f->t1, "webhook", "NOPE", &res), -ENOENT);
    assert_int_equal(erase(f, f->t2, "webhook", "C2", &res), -ENOENT);
}

/* The anonymised sales get their new seqs in one order on every backend (by net quantity, then
 * purchase time, then their old seq), and each document is the stored one with only its
 * customer_id replaced, in place. */
static void test_erasure_sales_order_and_documents(void **state)
{
    struct fx *f = *state;
    static const char *const sales[][3] = {
        /* invoice, purchased, quantity */
        {"I-a", "2025-05-01T10:00:00Z", "2"},
        {"I-b", "2025-06-01T10:00:00Z", "1"},
        {"I-c", "2025-04-01T10:00:00Z", "1"},
        {"I-d", "2025-06-01T10:00:00Z", "1"},
    };
    struct sd_buf body;
    sd_buf_init(&body);
    sd_buf_puts(&body, "{\"events\":[{\"event_id\":\"E1\",\"title\":\"Otello\","
                       "\"date\":\"2025-10-03\",\"time\":\"19:30:00\",\"venue\":\"Opera\","
                       "\"hall\":\"Main\",\"city\":\"Berlin\",\"capacity\":1250}],"
                       "\"customers\":[{\"customer_id\":\"Z1\",\"email\":\"z@example.com\"}],"
                       "\"sales\":[");
    for (size_t i = 0; i < 4; i++) {
        char *one = sd_asprintf("%s{\"invoice_number\":\"%s\",\"event_id\":\"E1\","
                                "\"customer_id\":\"Z1\",\"purchase_datetime\":\"%s\","
                                "\"sales_price\":\"10.50\",\"currency\":\"EUR\","
                                "\"ticket_category\":\"regular\",\"quantity\":%s}",
                                i ? "," : "", sales[i][0], sales[i][1], sales[i][2]);
        sd_buf_puts(&body, one);
        free(one);
    }
    sd_buf_puts(&body, "]}");
    char *json = sd_buf_steal(&body);
    ingest(f, f->t1, T, "webhook", json);
    free(json);
    char *before[4] = {NULL};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(sd_store_get_record(f->h, SD_KIND_SALE, f->t1, T, sales[i][0], &before[i]),
                         0);
    }
    struct sd_erasure_result res = {0};
    assert_int_equal(erase(f, f->t1, "webhook", "Z1", &res), 0);
    assert_int_equal(res.sales_anonymized, 4);
    char *order = sd_test_sql(&f->st, "SELECT invoice_number FROM sales ORDER BY seq");
    assert_string_equal(order, "I-c\nI-b\nI-d\nI-a\n");
    free(order);
    for (size_t i = 0; i < 4; i++) {
        char *doc = NULL;
        assert_int_equal(sd_store_get_record(f->h, SD_KIND_SALE, f->t1, T, sales[i][0], &doc), 0);
        char *at = strstr(before[i], "\"customer_id\":\"Z1\"");
        assert_non_null(at);
        char *want = sd_asprintf("%.*s\"customer_id\":\"ANON\"%s", (int)(at - before[i]), before[i],
                                 at + strlen("\"customer_id\":\"Z1\""));
        assert_string_equal(doc, want);
        free(want);
        free(doc);
        free(before[i]);
    }
}

static void test_erase_needs_source_when_ambiguous(void **state)
{
    struct fx *f = *state;
    customer(f, f->t1, "webhook", "X1", "one@example.com", NULL);
    customer(f, f->t1, "crm", "X1", "two@example.com", NULL);
    struct sd_erasure_result res = {0};
    assert_int_equal(erase(f, f->t1, NULL, "X1", &res), -ENOTUNIQ);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM customers"), 2);
    assert_int_equal(erase(f, f->t1, "crm", "X1", &res), 0);
    assert_int_equal(res.records_erased, 1);
    assert_int_equal(erase(f, f->t1, NULL, "X1", &res), 0); /* now unambiguous */
    assert_int_equal(sql_int(f, "SELECT count(*) FROM customers"), 0);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM erasures"), 2);
}

/* An erasure may delete the row with the highest seq; that number is never handed out again. */
static void test_erasure_keeps_seq_increasing(void **state)
{
    struct fx *f = *state;
    customer(f, f->t1, "webhook", "A", "a@example.com", NULL);
    customer(f, f->t1, "webhook", "B", "b@example.com", NULL);
    int64_t top = sql_int(f, "SELECT max(seq) FROM customers");
    struct sd_erasure_result res = {0};
    assert_int_equal(erase(f, f->t1, "webhook", "B", &res), 0);
    customer(f, f->t1, "webhook", "C", "c@example.com", NULL);
    assert_true(sql_int(f, "SELECT seq FROM customers WHERE customer_id = 'C'") > top);
}

/* Records stored before profiles existed have no profile: an update links them, and an erasure
 * erases the record alone. */
static void test_records_without_profile(void **state)
{
    struct fx *f = *state;
    customer(f, f->t1, "webhook", "L1", "legacy@example.com", ",\"ad_opt_out\":true");
    customer(f, f->t1, "webhook", "L2", "old@example.com", NULL);
    sql_exec(f, "UPDATE customers SET profile_id = NULL; DELETE FROM profiles");
    customer(f, f->t1, "crm", "K1", "legacy@example.com", NULL);
    customer(f, f->t1, "webhook", "L1", "legacy@example.com", NULL); /* links now */
    struct sd_profile p = {0};
    profile_of(f, f->t1, "crm", "K1", &p);
    assert_int_equal(p.n_members, 2);
    assert_true(p.opt_out); /* L1's stored opt-out counts although this update omitted it */
    sd_profile_release(&p);

    struct sd_erasure_result res = {0};
    assert_int_equal(erase(f, f->t1, NULL, "L2", &res), 0);
    assert_int_equal(res.profile_id, 0);
    assert_int_equal(res.records_erased, 1);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM customers WHERE customer_id = 'L2'"), 0);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM suppression WHERE reason = 'erased'"), 1);
}

/* Customers of a source whose people need not have an e-mail (SD_VALIDATE_EMAIL_OPTIONAL):
 * stored with no e-mail key, each its own profile under every rule (nothing links on a missing
 * address), untouched by suppressions; a resend without "email" keeps a stored address, null
 * clears it; erasure deletes them and their sales go ANON without hashing any address. */
static void test_customers_without_email(void **state)
{
    struct fx *f = *state;
    static const char ev[] = "{\"event_id\":\"E1\",\"title\":\"Otello\",\"date\":\"2025-10-03\","
                             "\"time\":\"19:30:00\",\"venue\":\"State Opera\",\"hall\":\"Main\","
                             "\"city\":\"Berlin\",\"capacity\":1250}";
    char *body = sd_asprintf(
        "{\"events\":[%s],\"customers\":[{\"customer_id\":\"B1\",\"last_name\":\"Box\"},"
        "{\"customer_id\":\"B2\",\"email\":null,\"last_name\":\"Box\"}],\"sales\":["
        "{\"invoice_number\":\"I1\",\"event_id\":\"E1\",\"customer_id\":\"B1\","
        "\"purchase_datetime\":\"2025-04-15T11:08:42Z\",\"sales_price\":\"89.00\","
        "\"currency\":\"EUR\",\"ticket_category\":\"regular\",\"quantity\":1}]}",
        ev);
    ingest_flags(f, f->t1, T, "box", body, SD_VALIDATE_EMAIL_OPTIONAL);
    free(body);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM customers WHERE source = 'box'"
                                " AND email_key IS NULL AND profile_id IS NOT NULL"),
                     2);
    struct sd_profile p1;
    int64_t b1 = profile_of(f, f->t1, "box", "B1", &p1);
    assert_int_equal(p1.n_members, 1);
    assert_null(p1.members[0].email);
    sd_profile_release(&p1);
    assert_true(b1 != profile_of(f, f->t1, "box", "B2", NULL));
    set_rule(f, "acme", SD_LINK_EMAIL_AND_LAST_NAME);
    ingest_flags(f, f->t1, T, "box",
                 "{\"customers\":[{\"customer_id\":\"B3\",\"last_name\":\"Box\"}]}",
                 SD_VALIDATE_EMAIL_OPTIONAL);
    assert_true(profile_of(f, f->t1, "box", "B3", NULL) != b1);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM profiles WHERE link_key IS NULL"), 3);

    /* an address arrives, a resend without the member keeps it, null clears it */
    ingest_flags(f, f->t1, T, "box",
                 "{\"customers\":[{\"customer_id\":\"B3\",\"email\":\"B3@example.com\"}]}",
                 SD_VALIDATE_EMAIL_OPTIONAL);
    ingest_flags(f, f->t1, T, "box",
                 "{\"customers\":[{\"customer_id\":\"B3\",\"first_name\":\"Al\"}]}",
                 SD_VALIDATE_EMAIL_OPTIONAL);
    assert_int_equal(sql_int(f, dialect("SELECT count(*) FROM customers WHERE customer_id = 'B3'"
                                        " AND email_key = 'b3@example.com'"
                                        " AND doc ->> '$.email' = 'B3@example.com'",
                                        "SELECT count(*) FROM customers WHERE customer_id = 'B3'"
                                        " AND email_key = 'b3@example.com'"
                                        " AND doc::json ->> 'email' = 'B3@example.com'")),
                     1);
    ingest_flags(f, f->t1, T, "box", "{\"customers\":[{\"customer_id\":\"B3\",\"email\":null}]}",
                 SD_VALIDATE_EMAIL_OPTIONAL);
    assert_int_equal(
        sql_int(f, dialect("SELECT count(*) FROM customers WHERE customer_id = 'B3'"
                           " AND email_key IS NULL AND json_type(doc, '$.email') IS NULL"
                           " AND doc ->> '$.first_name' = 'Al'",
                           "SELECT count(*) FROM customers WHERE customer_id = 'B3'"
                           " AND email_key IS NULL AND NOT (doc::jsonb ? 'email')"
                           " AND doc::json ->> 'first_name' = 'Al'")),
        1);

    /* suppressions never reach them */
    struct sd_suppress_result sr = suppress(f, f->t1, "b3@example.com");
    assert_int_equal(sr.profiles_suppressed, 0);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM profiles WHERE suppressed = 1"), 0);

    /* erasure: the record goes, its sale is ANON, no address is hashed */
    int64_t hashes = sql_int(f, "SELECT count(*) FROM suppression");
    struct sd_erasure_result er = {0};
    assert_int_equal(erase(f, f->t1, "box", "B1", &er), 0);
    assert_int_equal(er.profile_id, b1);
    assert_int_equal(er.records_erased, 1);
    assert_int_equal(er.sales_anonymized, 1);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM suppression"), hashes);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM sales WHERE invoice_number = 'I1'"
                                " AND customer_id = 'ANON'"),
                     1);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM customers WHERE customer_id = 'B1'"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_link_rule_names),
        cmocka_unit_test_setup_teardown(test_link_rule_control_plane, setup, teardown),
        cmocka_unit_test_setup_teardown(test_link_same_email_across_sources, setup, teardown),
        cmocka_unit_test_setup_teardown(test_email_and_last_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rule_none, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_never_moves, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_sticks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_opt_out_most_restrictive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_suppression, setup, teardown),
        cmocka_unit_test_setup_teardown(test_suppress_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_erasure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_erasure_sales_order_and_documents, setup, teardown),
        cmocka_unit_test_setup_teardown(test_erase_needs_source_when_ambiguous, setup, teardown),
        cmocka_unit_test_setup_teardown(test_erasure_keeps_seq_increasing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_records_without_profile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_customers_without_email, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
