/* test_contacts.c — connector "test_contacts", for the tests only (compiled in when CMake's
 * STAGEDOOR_TEST_CONNECTORS is ON: the debug, asan-ubsan and tsan presets; never in release).
 * It is the smallest complete two-way connector, source and target with one set of settings,
 * the shape the vendor connectors take:
 *
 *  - on_change (writer thread, in the change's transaction): every stored customer becomes an
 *    item "upsert_contact" whose payload is the customer as stored then, deduplicated while it
 *    waits by a hash of that content; every stored sale an item "record_sale" (POST
 *    {url}/sales with the sale; any 2xx delivers it);
 *  - deliver: POST {url}/contacts {"contact_id": <the remote id if known, else null>,
 *    "source", "customer_id", "customer"} with the item's Idempotency-Key; a 2xx answers
 *    {"contact_id": "…"}, kept as the customer's remote reference, so the next change of the
 *    same customer names the same remote contact;
 *  - run: GET {url}/contacts → {"contacts": [{"contact_id", "customer_id", "email", …}]}, each
 *    stored as a customer of this source with this instance as origin (so it is not written
 *    back: no echo) and its contact id as the remote reference.
 *
 * Subjects are "<source>:<customer_id>" (a customer is keyed by both). */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "core/connector.h"
#include "core/outbox.h"
#include "http/client.h"

#define MAX_ANSWER (1024 * 1024)
#define KIND "customer"
#define OP_UPSERT "upsert_contact"
#define OP_SALE "record_sale"

/* Settings: a typed struct core fills before every run and every delivery (ctx->conf). */
struct contacts_conf {
    const char *url;
    int64_t timeout_seconds;
    int64_t quota_window_calls; /* read by core (sd_quota_effective), not here */
};

/* A vendor-style call quota, so the tests can exhaust one: per 2-second window, as good as
 * unlimited unless an instance sets quota_window_calls. */
static const struct sd_quota quotas[] = {
    {"window", 2000000, 1000000, 0},
    {NULL, 0, 0, 0},
};

static const struct sd_setting settings[] = {
    {"url", SD_SETTING_URL, NULL, 1, 2048,
     "base URL of the contact system: POST {url}/contacts, GET {url}/contacts",
     SD_CHOICES("http", "https"), offsetof(struct contacts_conf, url)},
    {"timeout_seconds", SD_SETTING_INT, "10", 1, 120, "HTTP timeout per request", NULL,
     offsetof(struct contacts_conf, timeout_seconds)},
    {"quota_window_calls", SD_SETTING_INT, "0", 0, 1000000,
     "calls per 2-second window (0: the declared 1,000,000)", NULL,
     offsetof(struct contacts_conf, quota_window_calls)},
    {NULL, 0, NULL, 0, 0, NULL, NULL, 0},
};

static const char *const operations[] = {OP_UPSERT, OP_SALE, NULL};

static char *endpoint(const struct sd_connector_ctx *ctx, const char *what)
{
    const struct contacts_conf *cf = ctx->conf;
    const char *base = cf ? cf->url : NULL;
    size_t n = base ? strlen(base) : 0;
    while (n > 0 && base[n - 1] == '/') {
        n--;
    }
    return sd_asprintf("%.*s/%s", (int)n, base ? base : "", what);
}

static int64_t timeout_ms(const struct sd_connector_ctx *ctx)
{
    const struct contacts_conf *cf = ctx->conf;
    int64_t t = cf ? cf->timeout_seconds : 0;
    return (t > 0 ? t : 10) * 1000;
}

static void contacts_on_change(const struct sd_connector_ctx *ctx, const struct sd_change *chg,
                               struct sd_outbox_adder *out)
{
    (void)ctx;
    if (chg->kind == SD_KIND_SALE) {
        json_t *sale = json_pack("{s:s, s:O}", "invoice_number", chg->id, "sale", chg->record);
        sd_outbox_add(out, OP_SALE, "sale", chg->id, sale, NULL);
        json_decref(sale);
        return;
    }
    if (chg->kind != SD_KIND_CUSTOMER) {
        return;
    }
    char *subject = sd_asprintf("%s:%s", chg->source, chg->id);
    json_t *payload = json_pack("{s:s, s:s, s:O}", "source", chg->source, "customer_id", chg->id,
                                "customer", chg->record);
    char *text = json_dumps(chg->record, JSON_COMPACT | JSON_SORT_KEYS);
    char hash[65];
    sd_sha256_hex(text ? text : "", text ? strlen(text) : 0, hash);
    char *dedupe = sd_asprintf("%s|%s", subject, hash);
    sd_outbox_add(out, OP_UPSERT, KIND, subject, payload, dedupe);
    free(dedupe);
    free(text);
    json_decref(payload);
    free(subject);
}

static enum sd_verdict contacts_deliver(struct sd_connector_ctx *ctx, void *state,
                                        const struct sd_outbox_item *item,
                                        struct sd_delivery_result *res)
{
    (void)state;
    bool sale = strcmp(item->operation, OP_SALE) == 0;
    if ((!sale && strcmp(item->operation, OP_UPSERT) != 0) || !item->payload) {
        res->error = sd_strdup("not an item of test_contacts with a payload");
        return SD_VERDICT_REJECT;
    }
    char *remote = NULL;
    int r = sale ? -ENOENT : sd_connector_remote_ref_get(ctx, KIND, item->subject_id, &remote);
    if (r < 0 && r != -ENOENT) {
        res->error = sd_strdup("cannot read the remote contact id");
        return SD_VERDICT_RETRY;
    }
    json_t *body = json_loads(item->payload, 0, NULL);
    if (!sale) {
        json_object_set_new(body, "contact_id", remote ? json_string(remote) : json_null());
    }
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    char *url = endpoint(ctx, sale ? "sales" : "contacts");
    char *h_idem = sd_asprintf("Idempotency-Key: %s", item->idem_key);
    const char *headers[] = {"Content-Type: application/json", h_idem, "Expect:", NULL};
    struct sd_http_request rq = {.method = "POST",
                                 .url = url,
                                 .headers = headers,
                                 .body = text,
                                 .body_len = text ? strlen(text) : 0,
                                 .timeout_ms = timeout_ms(ctx),
                                 .max_body = MAX_ANSWER};
    struct sd_http_response resp = {0};
    enum sd_verdict v = SD_VERDICT_RETRY;
    if (sd_connector_lease_extend(ctx, rq.timeout_ms * 1000 + SD_OUTBOX_LEASE_MARGIN_USEC,
                                  rq.timeout_ms * 1000 + SD_OUTBOX_LEASE_MARGIN_USEC) < 0) {
        goto out; /* taken over: core records nothing */
    }
    int64_t t0 = sd_mono_usec();
    int err = sd_http_fetch(&rq, &resp);
    res->ms = (sd_mono_usec() - t0) / 1000;
    res->status = err == 0 ? resp.status : 0;
    v = sd_http_classify(err, res->status);
    if (err < 0) {
        res->error = sd_strdup(resp.error[0] ? resp.error : strerror(-err));
        goto out;
    }
    if (resp.body.len) {
        res->answer = sd_strndup(resp.body.data, resp.body.len);
    }
    int64_t ra = resp.retry_after ? sd_http_retry_after(resp.retry_after, 3600) : -1;
    res->retry_after_usec = ra > 0 ? ra * 1000000 : 0;
    if (v == SD_VERDICT_OK && !sale) {
        json_t *ans = json_loadb(resp.body.data ? resp.body.data : "", resp.body.len, 0, NULL);
        const char *id = json_string_value(json_object_get(ans, "contact_id"));
        if (id && *id) {
            res->remote_ref = sd_strdup(id);
        } else if (!remote) {
            v = SD_VERDICT_REJECT;
            res->error = sd_strdup("the answer carries no contact_id");
        }
        json_decref(ans);
        res->facts = json_pack("{s:s}", "kind", remote ? "update" : "create");
    }
out:
    sd_http_response_release(&resp);
    free(h_idem);
    free(url);
    free(text);
    free(remote);
    return v;
}

static int contacts_run(struct sd_connector_ctx *ctx, void *state)
{
    (void)state;
    char *url = endpoint(ctx, "contacts");
    struct sd_http_request rq = {.url = url, .timeout_ms = timeout_ms(ctx), .max_body = MAX_ANSWER};
    struct sd_http_response resp = {0};
    json_t *ans = NULL, *body = NULL;
    int r = sd_http_fetch(&rq, &resp);
    if (r < 0 || resp.status != 200) {
        r = sd_connector_fail(ctx, -EIO, "GET contacts failed (status %ld)", resp.status);
        goto out;
    }
    ans = json_loadb(resp.body.data ? resp.body.data : "", resp.body.len, 0, NULL);
    const json_t *contacts = json_object_get(ans, "contacts");
    if (!json_is_array(contacts)) {
        r = sd_connector_fail(ctx, -EINVAL, "the answer has no \"contacts\" array");
        goto out;
    }
    body = json_pack("{s:[]}", "customers");
    json_t *customers = json_object_get(body, "customers");
    size_t i;
    const json_t *c;
    json_array_foreach(contacts, i, c)
    {
        json_t *rec = json_deep_copy(c);
        json_object_del(rec, "contact_id");
        json_array_append_new(customers, rec);
    }
    struct sd_ingest_outcome out = {0};
    sd_ingest_outcome_init(&out);
    r = sd_connector_commit(ctx, body, NULL, false, &out);
    if (r == 0 && out.status != 202) {
        r = sd_connector_fail(ctx, -EINVAL, "contacts refused (status %d)", out.status);
    }
    sd_ingest_outcome_release(&out);
    json_array_foreach(contacts, i, c)
    {
        const char *cid = json_string_value(json_object_get(c, "customer_id"));
        const char *rid = json_string_value(json_object_get(c, "contact_id"));
        if (r == 0 && cid && rid) {
            char *subject = sd_asprintf("%s:%s", ctx->source, cid);
            r = sd_connector_remote_ref_put(ctx, KIND, subject, rid);
            free(subject);
        }
    }
out:
    json_decref(body);
    json_decref(ans);
    sd_http_response_release(&resp);
    free(url);
    return r;
}

const struct sd_connector sd_connector_test_contacts = {
    .name = "test_contacts",
    .kind = SD_CONNECTOR_SOURCE | SD_CONNECTOR_TARGET,
    .help = "tests only: customers to and from a local contact system",
    .settings = settings,
    .settings_size = sizeof(struct contacts_conf),
    .test_only = true,
    .quotas = quotas,
    .default_schedule = "manual",
    .operations = operations,
    .run = contacts_run,
    .deliver = contacts_deliver,
    .on_change = contacts_on_change,
};
