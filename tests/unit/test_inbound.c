/* test_inbound.c — raw-first vendor webhooks (core/inbound.h) against the store: the
 * door's admission (token, credentials, IPv4/IPv6 allowlists with CIDR ranges, mapped
 * addresses) table-driven, a payload stored raw with one object quarantined, the same body
 * twice, the limits, retention and erasure, and a door connector's run (sd_inbound_replay_run:
 * the quarantine replayed through the fixed mapping), and the store's inbound operations one by
 * one. Writer work runs the way the writer runs it (begin, savepoint, op, release, commit). Each
 * test gets a fresh store. store suite: both backends */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "base/base.h"
#include "core/connector_config.h"
#include "core/hub.h"
#include "core/inbound.h"
#include "model/model.h"
#include "store/inbound.h"
#include "store/store.h"
#include "store_fixture.h"

#define DAY (24LL * 3600 * 1000000)

struct fx {
    struct sd_test_store st;
    struct sd_store_handle *h;
    struct sd_tenant t;
};

static int setup(void **state)
{
    struct fx *f = sd_calloc(1, sizeof(*f));
    sd_test_store_setup(&f->st, "inbound", &f->h);
    f->t.id = sd_test_store_tenant(f->h, "acme", "Acme");
    f->t.client_id = "acme";
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

/* A webhook_in instance with these settings (JSON text) and mapping; its id (heap). */
static char *make(struct fx *f, const char *settings, const char *mapping)
{
    char *text = sd_asprintf("{\"type\":\"webhook_in\",\"environment\":\"test\",\"settings\":%s,"
                             "\"mapping\":%s}",
                             settings, mapping ? mapping : "{}");
    json_t *body = json_loads(text, 0, NULL);
    free(text);
    assert_non_null(body);
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    char *id = NULL;
    int r = sd_connector_config_create(f->h, &f->t, body, &id, &errors);
    if (r != 0 && errors.n) {
        fprintf(stderr, "%s: %s\n", errors.items[0].pointer, errors.items[0].message);
    }
    assert_int_equal(r, 0);
    sd_issues_release(&errors);
    json_decref(body);
    return id;
}

/* ---- admission ------------------------------------------------------------------------------- */

struct hdrs {
    const char *authorization;
    const char *api_key;
};

static const char *hdr(void *arg, const char *name)
{
    const struct hdrs *h = arg;
    if (strcasecmp(name, "Authorization") == 0) {
        return h->authorization;
    }
    if (strcasecmp(name, "X-Api-Key") == 0) {
        return h->api_key;
    }
    return NULL;
}

static struct sockaddr_storage addr(const char *text)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, text, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
    } else {
        assert_int_equal(inet_pton(AF_INET6, text, &a6->sin6_addr), 1);
        a6->sin6_family = AF_INET6;
    }
    return ss;
}

static int admit(struct fx *f, const char *id, const char *token, struct hdrs h, const char *peer,
                 bool *known)
{
    struct sockaddr_storage ss;
    if (peer) {
        ss = addr(peer);
    }
    struct sd_inbound_request rq = {.connector_id = id,
                                    .token = token,
                                    .header = hdr,
                                    .header_arg = &h,
                                    .peer = peer ? (const struct sockaddr *)&ss : NULL};
    struct sd_connector_conf c = {0};
    int r = sd_inbound_admit(f->h, &rq, &c, known);
    if (r == 0) {
        assert_string_equal(c.id, id);
    }
    sd_connector_conf_release(&c);
    return r;
}

static void test_allowlist_and_token(void **state)
{
    struct fx *f = *state;
    char *id = make(f, "{\"allow_from\":\"10.0.0.0/8, 192.0.2.7,2001:db8::/32 \"}", NULL);
    char *token = NULL;
    assert_int_equal(sd_inbound_token_rotate(f->h, id, &token), 0);
    assert_int_equal(strlen(token), 64);
    static const struct {
        const char *peer;
        int want;
    } cases[] = {
        {"10.1.2.3", 0},        {"10.255.255.255", 0},        {"11.0.0.1", -ENOENT},
        {"192.0.2.7", 0},       {"192.0.2.8", -ENOENT},       {"127.0.0.1", -ENOENT},
        {"2001:db8::1", 0},     {"2001:db8:ffff::", 0},       {"2001:db9::1", -ENOENT},
        {"::ffff:10.9.8.7", 0}, {"::ffff:11.0.0.1", -ENOENT}, {"::1", -ENOENT},
        {NULL, -ENOENT},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool known = false;
        int r = admit(f, id, token, (struct hdrs){0}, cases[i].peer, &known);
        if (r != cases[i].want) {
            fail_msg("peer %s: %d, want %d", cases[i].peer ? cases[i].peer : "(none)", r,
                     cases[i].want);
        }
        assert_true(known);
    }
    bool known = true;
    char wrong[65];
    snprintf(wrong, sizeof(wrong), "%s", token);
    wrong[10] = wrong[10] == 'a' ? 'b' : 'a';
    assert_int_equal(admit(f, id, wrong, (struct hdrs){0}, "10.0.0.1", &known), -ENOENT);
    assert_true(known);
    assert_int_equal(admit(f, id, "", (struct hdrs){0}, "10.0.0.1", &known), -ENOENT);
    assert_int_equal(admit(f, "con_0000000000000000", token, (struct hdrs){0}, "10.0.0.1", &known),
                     -ENOENT);
    assert_false(known);
    /* rotation: the old token stops working */
    char *token2 = NULL;
    assert_int_equal(sd_inbound_token_rotate(f->h, id, &token2), 0);
    assert_int_equal(admit(f, id, token, (struct hdrs){0}, "10.0.0.1", &known), -ENOENT);
    assert_int_equal(admit(f, id, token2, (struct hdrs){0}, "10.0.0.1", &known), 0);
    /* removing the connector removes its door */
    char hash[65];
    assert_int_equal(sd_store_inbound_door_get(f->h, id, hash), 0);
    assert_int_equal(sd_store_connector_delete(f->h, id), 0);
    assert_int_equal(sd_store_inbound_door_get(f->h, id, hash), -ENOENT);
    free(token);
    free(token2);
    free(id);
}

static void test_credentials(void **state)
{
    struct fx *f = *state;
    char *basic =
        make(f, "{\"auth\":\"basic\",\"auth_user\":\"s360\",\"auth_secret\":\"pw\"}", NULL);
    char *header =
        make(f, "{\"auth\":\"header\",\"auth_header\":\"X-Api-Key\",\"auth_secret\":\"k\"}", NULL);
    char *bearer = make(f, "{\"auth\":\"bearer\",\"auth_secret\":\"tok\"}", NULL);
    char *tb = NULL, *th = NULL, *tt = NULL;
    assert_int_equal(sd_inbound_token_rotate(f->h, basic, &tb), 0);
    assert_int_equal(sd_inbound_token_rotate(f->h, header, &th), 0);
    assert_int_equal(sd_inbound_token_rotate(f->h, bearer, &tt), 0);
    bool known;
    /* "s360:pw" and "s360:pX" in base64 */
    assert_int_equal(admit(f, basic, tb, (struct hdrs){"Basic czM2MDpwdw==", NULL}, NULL, &known),
                     0);
    assert_int_equal(admit(f, basic, tb, (struct hdrs){"Basic czM2MDpwWA==", NULL}, NULL, &known),
                     -ENOENT);
    assert_int_equal(admit(f, basic, tb, (struct hdrs){"Basic !!!", NULL}, NULL, &known), -ENOENT);
    assert_int_equal(admit(f, basic, tb, (struct hdrs){0}, NULL, &known), -ENOENT);
    assert_int_equal(admit(f, header, th, (struct hdrs){NULL, "k"}, NULL, &known), 0);
    assert_int_equal(admit(f, header, th, (struct hdrs){NULL, "kk"}, NULL, &known), -ENOENT);
    assert_int_equal(admit(f, header, th, (struct hdrs){"Bearer k", NULL}, NULL, &known), -ENOENT);
    assert_int_equal(admit(f, bearer, tt, (struct hdrs){"Bearer tok", NULL}, NULL, &known), 0);
    assert_int_equal(admit(f, bearer, tt, (struct hdrs){"bearer  tok", NULL}, NULL, &known), 0);
    assert_int_equal(admit(f, bearer, tt, (struct hdrs){"Bearer to", NULL}, NULL, &known), -ENOENT);
    /* the right credential with another door's token */
    assert_int_equal(admit(f, bearer, th, (struct hdrs){"Bearer tok", NULL}, NULL, &known),
                     -ENOENT);
    free(tb);
    free(th);
    free(tt);
    free(basic);
    free(header);
    free(bearer);
}

static void test_settings_checked(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "{\"auth\":\"basic\",\"auth_secret\":\"x\"}",
        "{\"auth\":\"bearer\"}",
        "{\"auth\":\"header\",\"auth_secret\":\"x\",\"auth_header\":\"Authorization\"}",
        "{\"auth\":\"header\",\"auth_secret\":\"x\",\"auth_header\":\"X Key\"}",
        "{\"allow_from\":\"10.0.0/8\"}",
        "{\"allow_from\":\"10.0.0.0/33\"}",
        "{\"allow_from\":\"2001:db8::/129\"}",
        "{\"allow_from\":\"10.0.0.0/8,,\"}",
        "{\"record_pointer\":\"orderDetailsData\"}",
    };
    const struct sd_connector *c = sd_connector_find("webhook_in");
    assert_non_null(c);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *s = json_loads(bad[i], 0, NULL);
        struct sd_issues errors;
        sd_issues_init(&errors, SD_MAX_ISSUES);
        json_t *out = sd_connector_check_settings(c, s, &errors);
        if (out) {
            fail_msg("accepted: %s", bad[i]);
        }
        sd_issues_release(&errors);
        json_decref(s);
    }
}

/* ---- storing --------------------------------------------------------------------------------- */

static const char *const MAPPING =
    "{\"fields\":{\"contactNumber\":\"customer_id\",\"mail\":\"email\"},\"unmapped\":\"drop\"}";

static struct sd_connector_conf conf_of(struct fx *f, const char *id)
{
    struct sd_connector_conf c = {0};
    assert_int_equal(sd_store_connector_get(f->h, id, &c), 0);
    return c;
}

/* Prepare `body` for instance id at time now and store it as the writer does. */
static struct sd_inbound_outcome store(struct fx *f, const char *id, const char *body, int64_t now)
{
    struct sd_connector_conf c = conf_of(f, id);
    struct sd_inbound_payload *p = NULL;
    const char *why = NULL;
    assert_int_equal(sd_inbound_prepare(&c, body, strlen(body), json_object(), now, &p, &why), 0);
    assert_int_equal(sd_store_write_begin(f->h), 0);
    assert_int_equal(sd_store_savepoint(f->h), 0);
    assert_int_equal(sd_inbound_store_run(f->h, p), 0);
    assert_int_equal(sd_store_savepoint_release(f->h), 0);
    assert_int_equal(sd_store_write_commit(f->h), 0);
    struct sd_inbound_outcome o = *sd_inbound_payload_outcome(p);
    sd_inbound_payload_free(p);
    sd_connector_conf_release(&c);
    return o;
}

static int64_t customers(struct fx *f)
{
    int64_t n = 0;
    assert_int_equal(sd_store_count_records(f->h, SD_KIND_CUSTOMER, f->t.id, SD_ENV_TEST, &n), 0);
    return n;
}

static void test_quarantine_and_duplicate(void **state)
{
    struct fx *f = *state;
    char *id = make(f, "{\"kind\":\"customers\"}", MAPPING);
    const char *body = "[{\"contactNumber\":\"C1\",\"mail\":\"a@example.com\"},"
                       "{\"mail\":\"no-id@example.com\"},"
                       "7,"
                       "{\"contactNumber\":\"C2\",\"mail\":\"c2@example.com\"}]";
    struct sd_inbound_outcome o = store(f, id, body, sd_now_usec());
    assert_false(o.duplicate);
    assert_int_equal(o.objects, 4);
    assert_int_equal(o.applied, 2);
    assert_int_equal(o.quarantined, 2);
    assert_int_equal(customers(f), 2);
    struct sd_inbound_quarantined *q = NULL;
    size_t n = 0;
    assert_int_equal(
        sd_store_inbound_quarantine_list(f->h, f->t.id, SD_ENV_TEST, id, 0, 10, &q, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(q[0].idx, 1);
    assert_non_null(strstr(q[0].reason, "customer_id"));
    assert_int_equal(q[1].idx, 2);
    assert_non_null(strstr(q[1].reason, "not a JSON object"));
    sd_inbound_quarantined_free(q, n);
    /* the other environment sees nothing */
    assert_int_equal(
        sd_store_inbound_quarantine_list(f->h, f->t.id, SD_ENV_PROD, NULL, 0, 10, &q, &n), 0);
    assert_int_equal(n, 0);
    sd_inbound_quarantined_free(q, n);

    struct sd_inbound_outcome again = store(f, id, body, sd_now_usec());
    assert_true(again.duplicate);
    assert_int_equal(again.raw_id, o.raw_id);
    assert_int_equal(again.applied, 0);
    int64_t payloads = 0, quarantined = 0;
    assert_int_equal(sd_store_inbound_counts(f->h, id, &payloads, &quarantined), 0);
    assert_int_equal(payloads, 1);
    assert_int_equal(quarantined, 2);

    /* the raw record is the body as received */
    struct sd_inbound_raw raw = {0};
    assert_int_equal(sd_store_inbound_raw_get(f->h, o.raw_id, &raw), 0);
    assert_int_equal(raw.body_len, strlen(body));
    assert_memory_equal(raw.body, body, raw.body_len);
    assert_int_equal(raw.applied, 2);
    sd_inbound_raw_release(&raw);
    free(id);
}

/* S-360 wraps each record: {"orderDetailsData": {...}}; record_pointer unwraps it. */
static void test_record_pointer(void **state)
{
    struct fx *f = *state;
    char *id = make(f, "{\"record_pointer\":\"/contactData\"}", MAPPING);
    const char *body = "[{\"contactData\":{\"contactNumber\":\"W1\",\"mail\":\"w@example.com\"}},"
                       "{\"contactNumber\":\"W2\",\"mail\":\"w2@example.com\"},"
                       "{\"contactData\":[1]}]";
    struct sd_inbound_outcome o = store(f, id, body, sd_now_usec());
    assert_int_equal(o.applied, 1);
    assert_int_equal(o.quarantined, 2);
    char *doc = NULL;
    assert_int_equal(sd_store_get_record(f->h, SD_KIND_CUSTOMER, f->t.id, SD_ENV_TEST, "W1", &doc),
                     0);
    free(doc);
    struct sd_inbound_quarantined *q = NULL;
    size_t n = 0;
    assert_int_equal(
        sd_store_inbound_quarantine_list(f->h, f->t.id, SD_ENV_TEST, id, 0, 10, &q, &n), 0);
    assert_int_equal(n, 2);
    assert_non_null(strstr(q[0].reason, "record_pointer"));
    assert_non_null(strstr(q[1].reason, "record_pointer"));
    sd_inbound_quarantined_free(q, n);
    free(id);
}

/* Records are kept under the instance's source label (its "source" setting). */
static void test_source_label(void **state)
{
    if (!sd_test_store_is_sqlite()) {
        skip(); /* it reads the SQLite file */
    }
    struct fx *f = *state;
    char *id = make(f, "{\"source\":\"s360\"}", MAPPING);
    struct sd_inbound_outcome o =
        store(f, id, "[{\"contactNumber\":\"S1\",\"mail\":\"s1@example.com\"}]", sd_now_usec());
    assert_int_equal(o.applied, 1);
    char *path = sd_asprintf("%s/stagedoor.db", f->st.dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT source FROM customers WHERE customer_id = 'S1'",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "s360");
    sqlite3_finalize(st);
    sqlite3_close(db);
    free(path);
    free(id);
}

static void test_limits(void **state)
{
    struct fx *f = *state;
    char *id = make(f, "{\"max_objects\":2,\"max_body_kib\":1}", MAPPING);
    struct sd_connector_conf c = conf_of(f, id);
    static const char *const over[] = {
        "[{\"contactNumber\":\"1\"},{\"contactNumber\":\"2\"},{\"contactNumber\":\"3\"}]",
    };
    struct sd_inbound_payload *p = NULL;
    const char *why = NULL;
    assert_int_equal(sd_inbound_prepare(&c, over[0], strlen(over[0]), NULL, 0, &p, &why), -E2BIG);
    assert_non_null(strstr(why, "max_objects"));
    char big[1100];
    memset(big, ' ', sizeof(big));
    memcpy(big, "{}", 2);
    assert_int_equal(sd_inbound_prepare(&c, big, sizeof(big), NULL, 0, &p, &why), -E2BIG);
    assert_non_null(strstr(why, "max_body_kib"));
    /* exactly at the limits: fine */
    const char *two = "[{\"contactNumber\":\"1\"},{\"contactNumber\":\"2\"}]";
    assert_int_equal(sd_inbound_prepare(&c, two, strlen(two), NULL, 0, &p, &why), 0);
    sd_inbound_payload_free(p);
    sd_connector_conf_release(&c);
    free(id);
}

/* Within dedupe_hours an identical payload is a resend; after it, a contact changed A → B → A
 * must end as A, so the older twin is applied again. */
static void test_dedupe_window(void **state)
{
    struct fx *f = *state;
    char *id = make(f, "{\"dedupe_hours\":24}", MAPPING);
    int64_t now = sd_now_usec();
    const char *a = "[{\"contactNumber\":\"D1\",\"mail\":\"a@example.com\"},{\"x\":1}]";
    const char *b = "[{\"contactNumber\":\"D1\",\"mail\":\"b@example.com\"}]";
    struct sd_inbound_outcome first = store(f, id, a, now - 30 * 3600LL * 1000000);
    assert_int_equal(first.applied, 1);
    assert_int_equal(first.quarantined, 1);
    struct sd_inbound_outcome second = store(f, id, b, now - 3600LL * 1000000);
    assert_int_equal(second.applied, 1);
    struct sd_inbound_outcome third = store(f, id, a, now);
    assert_false(third.duplicate);
    assert_int_equal(third.raw_id, first.raw_id); /* received anew in place */
    assert_int_equal(third.applied, 1);
    char *doc = NULL;
    assert_int_equal(sd_store_get_record(f->h, SD_KIND_CUSTOMER, f->t.id, SD_ENV_TEST, "D1", &doc),
                     0);
    assert_non_null(strstr(doc, "a@example.com"));
    free(doc);
    struct sd_inbound_outcome fourth = store(f, id, a, now + 1000000);
    assert_true(fourth.duplicate);
    int64_t payloads = 0, quarantined = 0;
    assert_int_equal(sd_store_inbound_counts(f->h, id, &payloads, &quarantined), 0);
    assert_int_equal(payloads, 2);
    assert_int_equal(quarantined, 1); /* the bad object's row, not two */
    struct sd_inbound_raw raw = {0};
    assert_int_equal(sd_store_inbound_raw_get(f->h, first.raw_id, &raw), 0);
    assert_int_equal(raw.received_usec, now);
    sd_inbound_raw_release(&raw);
    free(id);
}

static void test_retention(void **state)
{
    struct fx *f = *state;
    char *id = make(f, "{\"raw_retention_days\":30}", MAPPING);
    int64_t now = sd_now_usec();
    struct sd_inbound_outcome old =
        store(f, id, "{\"contactNumber\":\"OLD\",\"mail\":\"o@example.com\"}", now - 31 * DAY);
    struct sd_inbound_outcome young =
        store(f, id, "{\"contactNumber\":\"NEW\",\"mail\":\"n@example.com\"}", now - 29 * DAY);
    assert_int_equal(sd_store_write_begin(f->h), 0);
    assert_int_equal(sd_inbound_purge_expired(f->h, now), 0);
    assert_int_equal(sd_store_write_commit(f->h), 0);
    struct sd_inbound_raw raw = {0};
    assert_int_equal(sd_store_inbound_raw_get(f->h, old.raw_id, &raw), -ENOENT);
    assert_int_equal(sd_store_inbound_raw_get(f->h, young.raw_id, &raw), 0);
    sd_inbound_raw_release(&raw);
    /* the records themselves stay: retention is about the raw payloads */
    assert_int_equal(customers(f), 2);
    free(id);
}

static void test_forget_person(void **state)
{
    struct fx *f = *state;
    char *id = make(f, "{}", MAPPING);
    int64_t now = sd_now_usec();
    struct sd_inbound_outcome a =
        store(f, id, "[{\"contactNumber\":\"V1\",\"mail\":\"Vic@Example.com\"}]", now);
    /* unmapped, but names her address deep inside */
    struct sd_inbound_outcome b = store(f, id, "[{\"x\":{\"y\":[\"vic@example.com\"]}}]", now);
    struct sd_inbound_outcome c =
        store(f, id, "[{\"contactNumber\":\"K1\",\"mail\":\"keep@example.com\"}]", now);
    assert_int_equal(b.quarantined, 1);
    assert_int_equal(sd_store_write_begin(f->h), 0);
    assert_int_equal(sd_inbound_forget_person(f->h, f->t.id, SD_ENV_TEST, NULL, "V1"), 0);
    assert_int_equal(sd_store_write_commit(f->h), 0);
    const int64_t ids[3] = {a.raw_id, b.raw_id, c.raw_id};
    const bool purged[3] = {true, true, false};
    for (size_t i = 0; i < 3; i++) {
        struct sd_inbound_raw raw = {0};
        assert_int_equal(sd_store_inbound_raw_get(f->h, ids[i], &raw), 0);
        assert_int_equal(raw.purged_usec != 0, purged[i]);
        assert_int_equal(raw.body_len == 0, purged[i]);
        sd_inbound_raw_release(&raw);
    }
    int64_t payloads = 0, quarantined = 0;
    assert_int_equal(sd_store_inbound_counts(f->h, id, &payloads, &quarantined), 0);
    assert_int_equal(quarantined, 0);
    free(id);
}

/* Streamed doors: a type with streams admits only a known stream under the right scope
 * segment (its inbound_scope_setting's value), a type without admits only the plain door; each
 * refusal is the same -ENOENT, known to be the connector's. */
static void test_stream_admission(void **state)
{
    struct fx *f = *state;
    char *plain = make(f, "{}", NULL);
    json_t *body = json_loads("{\"type\":\"s360\",\"environment\":\"test\",\"settings\":"
                              "{\"institution\":\"myvenue\",\"api_base\":"
                              "\"https://myvenue.ws.example\",\"event_city\":\"Bern\","
                              "\"push_contacts\":false}}",
                              0, NULL);
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    char *id = NULL;
    assert_int_equal(sd_connector_config_create(f->h, &f->t, body, &id, &errors), 0);
    sd_issues_release(&errors);
    json_decref(body);
    char *t1 = NULL, *t2 = NULL;
    assert_int_equal(sd_inbound_token_rotate(f->h, plain, &t1), 0);
    assert_int_equal(sd_inbound_token_rotate(f->h, id, &t2), 0);
    static const struct {
        bool streamed_type;
        const char *scope, *stream;
        int want;
    } cases[] = {
        {false, NULL, NULL, 0},
        {false, NULL, "orders", -ENOENT},
        {false, "myvenue", "orders", -ENOENT},
        {true, NULL, NULL, -ENOENT},
        {true, "myvenue", "orders", 0},
        {true, "myvenue", "contacts", 0},
        {true, "myvenue", "access", 0},
        {true, "othervenue", "orders", -ENOENT},
        {true, "myvenue", "scans", -ENOENT},
        {true, NULL, "orders", -ENOENT},
        {true, "", "orders", -ENOENT},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct hdrs h = {0};
        struct sd_inbound_request rq = {.connector_id = cases[i].streamed_type ? id : plain,
                                        .token = cases[i].streamed_type ? t2 : t1,
                                        .header = hdr,
                                        .header_arg = &h,
                                        .scope = cases[i].scope,
                                        .stream = cases[i].stream};
        struct sd_connector_conf c = {0};
        bool known = false;
        int r = sd_inbound_admit(f->h, &rq, &c, &known);
        if (r != cases[i].want) {
            fail_msg("case %zu: %d, want %d", i, r, cases[i].want);
        }
        assert_true(known);
        sd_connector_conf_release(&c);
    }
    struct sd_connector_conf c = {0};
    assert_int_equal(sd_store_connector_get(f->h, id, &c), 0);
    json_t *paths = sd_inbound_stream_paths(c.type, c.settings, id, NULL);
    char *want = sd_asprintf("/in/%s/{token}/myvenue/access", id);
    assert_string_equal(json_string_value(json_object_get(paths, "access")), want);
    assert_int_equal(json_object_size(paths), 3);
    free(want);
    json_decref(paths);
    sd_connector_conf_release(&c);
    assert_int_equal(sd_store_connector_get(f->h, plain, &c), 0);
    assert_null(sd_inbound_stream_paths(c.type, c.settings, plain, NULL));
    sd_connector_conf_release(&c);
    free(t1);
    free(t2);
    free(id);
    free(plain);
}

/* A door connector's run (webhook_in's, s360's): without a hub it fails naming the type; with
 * one it replays the quarantine through the current mapping and counts what applied and what
 * is still quarantined. */
static void test_replay_run(void **state)
{
    struct fx *f = *state;
    const struct sd_connector *type = sd_connector_find("webhook_in");
    assert_non_null(type);
    assert_ptr_equal(type->run, sd_inbound_replay_run);
    assert_ptr_equal(sd_connector_find("s360")->run, sd_inbound_replay_run);
    struct sd_connector_ctx bare = {.connector = type, .id = "con_x"};
    assert_int_equal(sd_inbound_replay_run(&bare, NULL), -EINVAL);
    assert_non_null(bare.error);
    assert_non_null(strstr(bare.error, "this webhook_in instance runs only when configured"));
    free(bare.error);

    /* Two objects name their contact "contactNo", which the mapping does not know yet. */
    char *id = make(f, "{\"kind\":\"customers\"}", MAPPING);
    struct sd_inbound_outcome o = store(f, id,
                                        "[{\"contactNo\":\"R1\",\"mail\":\"r1@example.com\"},"
                                        "{\"contactNo\":\"R2\",\"mail\":\"r2@example.com\"},"
                                        "{\"contactNumber\":\"R3\",\"mail\":\"r3@example.com\"}]",
                                        sd_now_usec());
    assert_int_equal(o.applied, 1);
    assert_int_equal(o.quarantined, 2);
    json_t *fix = json_loads("{\"mapping\":{\"fields\":{\"contactNo\":\"customer_id\","
                             "\"mail\":\"email\"},\"unmapped\":\"drop\"}}",
                             0, NULL);
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    assert_int_equal(sd_connector_config_update(f->h, &f->t, id, fix, &errors), 0);
    sd_issues_release(&errors);
    json_decref(fix);

    struct sd_hub *hub = NULL;
    assert_int_equal(sd_hub_open(f->st.dir, sd_test_store_is_sqlite() ? NULL : f->st.url, &hub), 0);
    struct sd_connector_ctx ctx = {
        .hub = hub, .tenant_id = f->t.id, .env = SD_ENV_TEST, .id = id, .connector = type};
    assert_int_equal(sd_inbound_replay_run(&ctx, NULL), 0);
    assert_null(ctx.error);
    assert_int_equal(ctx.records_in, 2);
    assert_int_equal(ctx.records_rejected, 0);
    /* a second run finds nothing left */
    assert_int_equal(sd_inbound_replay_run(&ctx, NULL), 0);
    assert_int_equal(ctx.records_in, 2);
    sd_hub_close(hub);
    assert_int_equal(customers(f), 3);
    free(id);
}

/* ---- the store's operations ----------------------------------------------------------------- */

static void raw_of(struct fx *f, struct sd_inbound_raw *r, int hash, int64_t received,
                   int64_t expires, const void *body, size_t len)
{
    *r = (struct sd_inbound_raw){.connector_id = (char *)"con_d",
                                 .tenant_id = f->t.id,
                                 .env = SD_ENV_TEST,
                                 .received_usec = received,
                                 .expires_usec = expires,
                                 .headers = (char *)"{\"content-type\":\"application/json\"}",
                                 .body = (unsigned char *)body,
                                 .body_len = len};
    snprintf(r->content_hash, sizeof(r->content_hash), "%064d", hash);
}

/* The store's inbound operations one by one, as core calls them: doors replaced and removed; a
 * payload kept byte for byte (NUL and 0xff included); a resend refused with the first one's id
 * and an older twin received anew in place; the outcome counters; quarantine rows replaced,
 * indexed, listed by environment and deleted; the lists by time and by quarantine; the subjects
 * index and a purge by subject; expiry; a person without records; a scan without a sale. */
static void test_store_ops(void **state)
{
    struct fx *f = *state;
    struct sd_store_handle *h = f->h;
    char tok1[65], tok2[65], got[65];
    memset(tok1, 'a', 64);
    memset(tok2, 'b', 64);
    tok1[64] = tok2[64] = '\0';
    assert_int_equal(sd_store_inbound_door_get(h, "con_d", got), -ENOENT);
    assert_int_equal(sd_store_inbound_door_set(h, "con_d", tok1), 0);
    assert_int_equal(sd_store_inbound_door_set(h, "con_d", tok2), 0);
    assert_int_equal(sd_store_inbound_door_get(h, "con_d", got), 0);
    assert_string_equal(got, tok2);
    assert_int_equal(sd_store_inbound_door_delete(h, "con_d"), 0);
    assert_int_equal(sd_store_inbound_door_get(h, "con_d", got), -ENOENT);
    assert_int_equal(sd_store_inbound_door_delete(h, "con_d"), 0);

    const int64_t now = sd_now_usec();
    static const unsigned char bin[] = {'[', 0, 0xff, ']', 'x'};
    struct sd_inbound_raw r1, r2;
    raw_of(f, &r1, 1, now - 10 * DAY, now + DAY, bin, sizeof(bin));
    raw_of(f, &r2, 2, now, now + 30 * DAY, "{}", 2);
    int64_t id1 = 0, id2 = 0, again = 0;
    bool renewed = true;
    char *subj2[] = {(char *)"cid:C1", (char *)"em:0123"};
    char *subj1[] = {(char *)"cid:C2"};
    int64_t *idx = NULL;
    size_t n = 0;
    assert_int_equal(sd_store_write_begin(h), 0);
    assert_int_equal(sd_store_inbound_raw_put(h, &r1, now - DAY, &id1, &renewed), 0);
    assert_false(renewed);
    assert_int_equal(sd_store_inbound_raw_put(h, &r2, now - DAY, &id2, &renewed), 0);
    assert_true(id2 > id1);
    assert_int_equal(sd_store_inbound_raw_put(h, &r2, now - DAY, &again, &renewed), -EEXIST);
    assert_int_equal(again, id2);
    assert_int_equal(sd_store_inbound_raw_counts(h, id2, 3, 1, 2), 0);
    assert_int_equal(
        sd_store_inbound_quarantine_put(h, id2, "con_d", f->t.id, SD_ENV_TEST, 0, "bad one"), 0);
    assert_int_equal(
        sd_store_inbound_quarantine_put(h, id2, "con_d", f->t.id, SD_ENV_TEST, 2, "bad two"), 0);
    assert_int_equal(
        sd_store_inbound_quarantine_put(h, id2, "con_d", f->t.id, SD_ENV_TEST, 0, "bad again"), 0);
    assert_int_equal(
        sd_store_inbound_quarantine_put(h, id1, "con_d", f->t.id, SD_ENV_TEST, 5, "bad five"), 0);
    assert_int_equal(sd_store_inbound_quarantine_delete(h, id1, 5), 0);
    assert_int_equal(sd_store_inbound_quarantine_delete(h, id1, 5), 0); /* none: no error */
    assert_int_equal(sd_store_inbound_quarantine_indexes(h, id2, &idx, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(idx[0], 0);
    assert_int_equal(idx[1], 2);
    free(idx);
    assert_int_equal(sd_store_inbound_subjects_put(h, f->t.id, SD_ENV_TEST, id2, subj2, 2), 0);
    assert_int_equal(sd_store_inbound_subjects_put(h, f->t.id, SD_ENV_TEST, id2, subj2, 2), 0);
    assert_int_equal(sd_store_inbound_subjects_put(h, f->t.id, SD_ENV_TEST, id1, subj1, 1), 0);
    char **who = NULL;
    assert_int_equal(
        sd_store_inbound_person_subjects(h, f->t.id, SD_ENV_TEST, NULL, "C9", &who, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(who[0], "cid:C9");
    free(who[0]);
    free(who);
    assert_int_equal(sd_store_inbound_email_erased(h, f->t.id, SD_ENV_TEST, "0123"), 0);
    assert_int_equal(
        sd_store_inbound_scan_put(h, f->t.id, SD_ENV_TEST, "INV-1", "scan-1", NULL, NULL), -ENOENT);
    assert_int_equal(sd_store_write_commit(h), 0);

    /* Committed: what the read path sees. */
    struct sd_inbound_raw raw = {0};
    assert_int_equal(sd_store_inbound_raw_get(h, id1, &raw), 0);
    assert_int_equal(raw.body_len, sizeof(bin));
    assert_memory_equal(raw.body, bin, sizeof(bin));
    assert_string_equal(raw.headers, r1.headers);
    assert_string_equal(raw.content_hash, r1.content_hash);
    assert_int_equal(raw.received_usec, now - 10 * DAY);
    assert_int_equal(raw.env, SD_ENV_TEST);
    sd_inbound_raw_release(&raw);
    assert_int_equal(sd_store_inbound_raw_get(h, id2, &raw), 0);
    assert_int_equal(raw.objects, 3);
    assert_int_equal(raw.applied, 1);
    assert_int_equal(raw.quarantined, 2);
    sd_inbound_raw_release(&raw);
    assert_int_equal(sd_store_inbound_raw_get(h, id2 + 1000, &raw), -ENOENT);
    int64_t payloads = 0, quarantined = 0;
    assert_int_equal(sd_store_inbound_counts(h, "con_d", &payloads, &quarantined), 0);
    assert_int_equal(payloads, 2);
    assert_int_equal(quarantined, 2);
    struct sd_inbound_quarantined *q = NULL;
    assert_int_equal(
        sd_store_inbound_quarantine_list(h, f->t.id, SD_ENV_TEST, "con_d", 0, 10, &q, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(q[0].idx, 0);
    assert_string_equal(q[0].reason, "bad again");
    assert_int_equal(q[0].raw_id, id2);
    assert_int_equal(q[0].received_usec, now);
    assert_int_equal(q[1].idx, 2);
    int64_t after = q[0].id;
    sd_inbound_quarantined_free(q, n);
    assert_int_equal(
        sd_store_inbound_quarantine_list(h, f->t.id, SD_ENV_TEST, NULL, after, 10, &q, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(q[0].idx, 2);
    sd_inbound_quarantined_free(q, n);
    assert_int_equal(sd_store_inbound_quarantine_list(h, f->t.id, SD_ENV_PROD, NULL, 0, 10, &q, &n),
                     0);
    assert_int_equal(n, 0);
    sd_inbound_quarantined_free(q, n);
    const enum sd_env both = (enum sd_env)2; /* neither test nor prod: both */
    assert_int_equal(sd_store_inbound_quarantine_list(h, f->t.id, both, NULL, 0, 10, &q, &n), 0);
    assert_int_equal(n, 2);
    sd_inbound_quarantined_free(q, n);
    int64_t *ids = NULL;
    assert_int_equal(sd_store_inbound_raw_list(h, "con_d", true, 0, 0, 0, 10, &ids, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], id2);
    free(ids);
    assert_int_equal(
        sd_store_inbound_raw_list(h, "con_d", false, now - 11 * DAY, now + 1, 0, 10, &ids, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], id1);
    assert_int_equal(ids[1], id2);
    free(ids);
    assert_int_equal(
        sd_store_inbound_raw_list(h, "con_d", false, now - 11 * DAY, now + 1, id1, 1, &ids, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], id2);
    free(ids);
    assert_int_equal(sd_store_inbound_raw_list(h, "con_d", false, now - DAY, now, 0, 10, &ids, &n),
                     0);
    assert_int_equal(n, 0);
    free(ids);

    /* The older twin of r1 arrives again after the dedupe window: received anew in place. */
    static const unsigned char empty[1] = {0};
    raw_of(f, &r1, 1, now, now - 1, empty, 0);
    int64_t purged = -1;
    char *forget[] = {(char *)"cid:C1"};
    assert_int_equal(sd_store_write_begin(h), 0);
    assert_int_equal(sd_store_inbound_raw_put(h, &r1, now - DAY, &again, &renewed), 0);
    assert_true(renewed);
    assert_int_equal(again, id1);
    assert_int_equal(sd_store_inbound_forget(h, f->t.id, SD_ENV_TEST, forget, 1, &purged), 0);
    assert_int_equal(purged, 1);
    assert_int_equal(sd_store_inbound_forget(h, f->t.id, SD_ENV_TEST, forget, 1, &purged), 0);
    assert_int_equal(purged, 0); /* its subject rows went with the purge */
    assert_int_equal(sd_store_write_commit(h), 0);
    assert_int_equal(sd_store_inbound_raw_get(h, id1, &raw), 0);
    assert_int_equal(raw.received_usec, now);
    assert_int_equal(raw.body_len, 0);
    assert_int_equal(raw.purged_usec, 0);
    sd_inbound_raw_release(&raw);
    assert_int_equal(sd_store_inbound_raw_get(h, id2, &raw), 0);
    assert_true(raw.purged_usec != 0);
    assert_int_equal(raw.body_len, 0);
    assert_string_equal(raw.headers, "{}");
    assert_string_equal(raw.content_hash, r2.content_hash); /* the hash stays */
    sd_inbound_raw_release(&raw);
    assert_int_equal(sd_store_inbound_counts(h, "con_d", &payloads, &quarantined), 0);
    assert_int_equal(payloads, 2);
    assert_int_equal(quarantined, 0);

    /* Expiry: r1 (renewed with an expiry in the past) goes, r2 stays. */
    assert_int_equal(sd_store_write_begin(h), 0);
    assert_int_equal(sd_store_inbound_purge_expired(h, now, 10, &purged), 0);
    assert_int_equal(purged, 1);
    assert_int_equal(sd_store_write_commit(h), 0);
    assert_int_equal(sd_store_inbound_raw_get(h, id1, &raw), -ENOENT);
    assert_int_equal(sd_store_inbound_raw_get(h, id2, &raw), 0);
    sd_inbound_raw_release(&raw);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_replay_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_allowlist_and_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_admission, setup, teardown),
        cmocka_unit_test_setup_teardown(test_credentials, setup, teardown),
        cmocka_unit_test_setup_teardown(test_settings_checked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quarantine_and_duplicate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_pointer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_source_label, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dedupe_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forget_person, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_ops, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
