/* tb_push.c — the `tradablebits` connector, push half: the hub's sales as tickets (the bulk
 * call) and its customers as fans, through the outbox.
 *
 *  - on_change (writer thread): a sale (order type sale, not anonymous) becomes an item
 *    "ticket" (subject sale/<invoice>), a customer an item "fan" (subject
 *    customer/<source>:<customer_id>); the payload is the record as stored then with its
 *    source, deduplicated while it waits by a hash of that content. Records whose source is
 *    this instance's own (pulled from Tradable Bits) are never offered back, and core offers
 *    nothing an instance stored itself (origin).
 *  - tickets go in bulk: core claims up to 99 more waiting "ticket" items with the first and
 *    calls deliver_batch once (core/connector.h), so 250 sales are three calls. Each ticket
 *    carries ticket_key = "<source>:<invoice_number>" (one sale record is one ticket line):
 *    a repeat answers `duplicate`, which delivers the item without changing anything. The
 *    answer has one row per ticket: success or duplicate delivers that item (the ticket id
 *    is its remote reference), an error row dead-letters that item with the row's errors and
 *    never its neighbours. A 429 or 509 waits the whole batch out (Retry-After when sent, else
 *    the outbox's default), a transport error or a 5xx retries it with back-off, any other
 *    refusal of the call dead-letters the batch with the answer.
 *  - a fan: fan_update when its remote fan id is known, else fan_create, which needs an email
 *    or a phone: a customer without an email (admitted from a vendor source) is created with
 *    its first phone number; with neither, the item is delivered without a call and its facts
 *    say {"skipped": "no e-mail or phone"}. A create answered `duplicate` (the email is
 *    known) names the existing fan, which is then updated. The fan
 *    id is the customer's remote reference; a fan this instance created is also noted (kind
 *    "fan_created") so the pull does not bring it back as a customer of its own.
 *
 * Consent out: ad_opt_out true → is_optout true and is_subscribed false; false →
 * is_subscribed true and is_optout false; absent → neither sent (the fan keeps what it has). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "core/connector.h"
#include "core/outbox.h"
#include "http/client.h"
#include "http/verdict.h"
#include "store/store.h"

#include "connectors/tradablebits/tradablebits.h"
#include "connectors/tradablebits/tb_tags.h"

#define MAX_ANSWER (4 * 1024 * 1024)

static const struct tb_conf *cf(const struct sd_connector_ctx *ctx)
{
    return ctx->conf;
}

/* The instance's own source label: the setting, or the type's name. */
static const char *own_source(const struct sd_connector_ctx *ctx)
{
    const char *s = json_string_value(json_object_get(ctx->settings, "source"));
    return s ? s : "tradablebits";
}

static char *content_hash(const json_t *rec)
{
    char *text = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS);
    char hash[65];
    sd_sha256_hex(text ? text : "", text ? strlen(text) : 0, hash);
    free(text);
    return sd_strdup(hash);
}

void tb_on_change(const struct sd_connector_ctx *ctx, const struct sd_change *chg,
                  struct sd_outbox_adder *out)
{
    const struct tb_conf *c = cf(ctx);
    if (!c || (chg->source && strcmp(chg->source, own_source(ctx)) == 0)) {
        return; /* what came from Tradable Bits through this instance goes nowhere back */
    }
    const json_t *rec = chg->record;
    if (chg->kind == SD_KIND_SALE && c->push_tickets) {
        const char *type = json_string_value(json_object_get(rec, "order_type"));
        const char *cust = json_string_value(json_object_get(rec, "customer_id"));
        if ((type && strcmp(type, "sale") != 0) || !cust || strcmp(cust, SD_ANON_CUSTOMER) == 0) {
            return; /* a ticket needs a buyer with an email, and is a purchase */
        }
        json_t *payload = json_pack("{s:s, s:O}", "source", chg->source ? chg->source : "",
                                    "sale", rec);
        char *h = content_hash(payload);
        char *dedupe = sd_asprintf("ticket|%s|%s", chg->id, h);
        sd_outbox_add(out, TB_OP_TICKET, "sale", chg->id, payload, dedupe);
        free(dedupe);
        free(h);
        json_decref(payload);
    } else if (chg->kind == SD_KIND_CUSTOMER && c->push_fans) {
        char *subject = sd_asprintf("%s:%s", chg->source ? chg->source : "", chg->id);
        json_t *payload = json_pack("{s:s, s:O}", "source", chg->source ? chg->source : "",
                                    "customer", rec);
        char *h = content_hash(payload);
        char *dedupe = sd_asprintf("fan|%s|%s", subject, h);
        sd_outbox_add(out, TB_OP_FAN, "customer", subject, payload, dedupe);
        free(dedupe);
        free(h);
        json_decref(payload);
        free(subject);
    }
}

/* ---- pure parts (unit tests, fuzz) ------------------------------------------------------------ */

/* "YYYY-MM-DDTHH:MM:SS[.fff]Z" (the hub's UTC form) → "YYYY-MM-DD HH:MM:SS"; false if not. */
static bool gmt_form(const char *iso, char out[20])
{
    if (!iso || strlen(iso) < 19 || iso[4] != '-' || iso[7] != '-' || iso[10] != 'T' ||
        iso[13] != ':' || iso[16] != ':') {
        return false;
    }
    memcpy(out, iso, 19);
    out[10] = ' ';
    out[19] = '\0';
    return true;
}

static void put_str(json_t *o, const char *name, const json_t *v)
{
    const char *s = json_string_value(v);
    if (s && *s) {
        json_object_set_new(o, name, json_string(s));
    }
}

json_t *tb_ticket_from_sale(const char *source, const json_t *sale, const json_t *customer,
                            const json_t *event)
{
    const char *inv = json_string_value(json_object_get(sale, "invoice_number"));
    if (!inv || !*inv) {
        return NULL;
    }
    json_t *t = json_object();
    char *key = sd_asprintf("%s:%s", source && *source ? source : "hub", inv);
    json_object_set_new(t, "ticket_key", json_string(key));
    free(key);
    put_str(t, "first_name", json_object_get(customer, "first_name"));
    put_str(t, "last_name", json_object_get(customer, "last_name"));
    put_str(t, "email", json_object_get(customer, "email"));
    char gmt[20];
    if (gmt_form(json_string_value(json_object_get(sale, "purchase_datetime")), gmt)) {
        json_object_set_new(t, "purchase_timestamp", json_string(gmt));
    }
    put_str(t, "paid_amount", json_object_get(sale, "sales_price"));
    const json_t *q = json_object_get(sale, "quantity");
    if (json_is_integer(q)) {
        json_object_set_new(t, "num_seats",
                            json_sprintf("%" JSON_INTEGER_FORMAT, json_integer_value(q)));
    }
    put_str(t, "event_key", json_object_get(sale, "event_id"));
    put_str(t, "price_code", json_object_get(sale, "ticket_category"));
    put_str(t, "customer_key", json_object_get(sale, "customer_id"));
    put_str(t, "event_name", json_object_get(event, "title"));
    put_str(t, "venue_name", json_object_get(event, "venue"));
    const char *status = json_string_value(json_object_get(sale, "status"));
    if (status && strcmp(status, "cancelled") == 0) {
        json_object_set_new(t, "is_deleted", json_string("true"));
    }
    const char *day = json_string_value(json_object_get(event, "date"));
    const char *tm = json_string_value(json_object_get(event, "time"));
    if (day) {
        json_object_set_new(t, "event_date",
                            tm ? json_sprintf("%sT%s", day, tm) : json_string(day));
    }
    return t;
}

char *tb_bulk_body(const char *field, json_t *const *tickets, size_t n, size_t *ret_len)
{
    struct sd_http_form *f = sd_http_form_new();
    for (size_t i = 0; i < n; i++) {
        char *one = json_dumps(tickets[i], JSON_COMPACT | JSON_SORT_KEYS);
        if (!one || sd_http_form_add(f, field, one) < 0) {
            free(one);
            sd_http_form_free(f);
            return NULL;
        }
        free(one);
    }
    size_t len = 0;
    const char *body = sd_http_form_body(f, &len);
    char *copy = sd_strndup(body, len);
    sd_http_form_free(f);
    if (ret_len) {
        *ret_len = len;
    }
    return copy;
}

void tb_rows_release(struct tb_row *rows, size_t n)
{
    for (size_t i = 0; rows && i < n; i++) {
        free(rows[i].ticket_id);
        free(rows[i].text);
        rows[i] = (struct tb_row){0};
    }
}

int tb_bulk_answer_parse(const char *body, size_t len, struct tb_row *rows, size_t n,
                         char *why, size_t why_len)
{
    for (size_t i = 0; i < n; i++) {
        rows[i] = (struct tb_row){.outcome = TB_ROW_MISSING};
    }
    json_error_t jerr;
    json_t *doc = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &jerr);
    const json_t *data = json_object_get(doc, "data");
    if (!json_is_array(data)) {
        json_decref(doc);
        snprintf(why, why_len, "the answer is not {\"meta\", \"data\": [...]}");
        return -EPROTO;
    }
    size_t i;
    const json_t *row;
    json_array_foreach(data, i, row)
    {
        const json_t *r = json_object_get(row, "row");
        size_t k = i;
        if (json_is_integer(r)) {
            json_int_t v = json_integer_value(r);
            if (v < 0 || (uint64_t)v >= n) {
                continue; /* names no ticket of this call */
            }
            k = (size_t)v;
        }
        if (k >= n || rows[k].outcome != TB_ROW_MISSING) {
            continue; /* beyond the call, or a second answer for a row: the first stands */
        }
        const char *st = json_string_value(json_object_get(row, "status"));
        if (st && strcmp(st, "success") == 0) {
            rows[k].outcome = TB_ROW_CREATED;
        } else if (st && strcmp(st, "duplicate") == 0) {
            rows[k].outcome = TB_ROW_DUPLICATE;
        } else {
            rows[k].outcome = TB_ROW_ERROR;
        }
        json_t *id = json_object_get(row, "ticket_id");
        if (json_is_integer(id)) {
            rows[k].ticket_id = sd_asprintf("%" JSON_INTEGER_FORMAT, json_integer_value(id));
        } else if (json_is_string(id) && json_string_length(id) > 0 &&
                   json_string_length(id) < 64) {
            rows[k].ticket_id = sd_strdup(json_string_value(id));
        }
        rows[k].text = json_dumps(row, JSON_COMPACT);
    }
    json_decref(doc);
    return 0;
}

/* ---- delivery -------------------------------------------------------------------------------- */

/* Headers of every call: the keys, form encoding, no 100-continue. */
struct tb_call {
    char *h_key, *h_secret;
};

static int call_open(const struct tb_conf *c, struct tb_call *k)
{
    *k = (struct tb_call){0};
    if (sd_http_header("Api-Key", c->api_key, &k->h_key) < 0 ||
        sd_http_header("Api-Secret", c->api_secret, &k->h_secret) < 0) {
        sd_http_header_free(k->h_key);
        k->h_key = NULL;
        return -EINVAL;
    }
    return 0;
}

static void call_close(struct tb_call *k)
{
    sd_http_header_free(k->h_key);
    sd_http_header_free(k->h_secret);
}

/* path with "{name}" replaced by value (escaped). Heap. */
static char *path_with(const char *path, const char *name, const char *value)
{
    char mark[64];
    snprintf(mark, sizeof(mark), "{%s}", name);
    const char *at = strstr(path, mark);
    if (!at) {
        return sd_strdup(path);
    }
    char *v = sd_http_url_escape(value);
    char *out = sd_asprintf("%.*s%s%s", (int)(at - path), path, v, at + strlen(mark));
    free(v);
    return out;
}

/* POST a form to path; resp filled (release it). The transport error, or 0. */
static int post(struct sd_connector_ctx *ctx, const struct tb_call *k, const char *path,
                const char *body, size_t body_len, struct sd_http_response *resp, int64_t *ret_ms)
{
    const struct tb_conf *c = cf(ctx);
    const char *const none[] = {NULL};
    char *url = tb_build_url(c, path, none);
    const char *headers[] = {"Accept: application/json",
                             "Content-Type: application/x-www-form-urlencoded",
                             k->h_key,
                             k->h_secret,
                             "Expect:",
                             NULL};
    struct sd_http_request rq = {.method = "POST",
                                 .url = url,
                                 .headers = headers,
                                 .body = body,
                                 .body_len = body_len,
                                 .timeout_ms = c->timeout_seconds * 1000,
                                 .max_body = MAX_ANSWER};
    *resp = (struct sd_http_response){0};
    int64_t lease = rq.timeout_ms * 1000 + SD_OUTBOX_LEASE_MARGIN_USEC;
    int r = sd_connector_lease_extend(ctx, lease, lease);
    if (r < 0) {
        free(url);
        return r;
    }
    int64_t t0 = sd_mono_usec();
    r = sd_http_fetch(&rq, resp);
    *ret_ms += (sd_mono_usec() - t0) / 1000;
    free(url);
    return r;
}

static int64_t retry_after_usec(const struct sd_http_response *resp)
{
    int64_t ra = resp->retry_after ? sd_http_retry_after(resp->retry_after, 3600) : -1;
    return ra > 0 ? ra * 1000000 : 0;
}

/* The stored customer and event a sale names (NULL when missing). */
static void sale_context(struct sd_connector_ctx *ctx, const char *source, const json_t *sale,
                         json_t **ret_customer, json_t **ret_event)
{
    *ret_customer = *ret_event = NULL;
    const char *cid = json_string_value(json_object_get(sale, "customer_id"));
    const char *eid = json_string_value(json_object_get(sale, "event_id"));
    char *doc = NULL, **sources = NULL;
    size_t n = 0;
    if (cid) {
        int r = sd_store_get_customer(ctx->hub->store, ctx->tenant_id, ctx->env, cid,
                                      source && *source ? source : NULL, &doc, &sources, &n);
        if (r == -ENOENT && source && *source) {
            r = sd_store_get_customer(ctx->hub->store, ctx->tenant_id, ctx->env, cid, NULL, &doc,
                                      &sources, &n);
        }
        if (r == 0 && doc) {
            *ret_customer = json_loads(doc, 0, NULL);
        }
        free(doc);
        for (size_t i = 0; i < n; i++) {
            free(sources[i]);
        }
        free(sources);
        doc = NULL;
    }
    if (eid && sd_store_get_record(ctx->hub->store, SD_KIND_EVENT, ctx->tenant_id, ctx->env, eid,
                                   &doc) == 0) {
        *ret_event = json_loads(doc, 0, NULL);
    }
    free(doc);
}

static void set_all(struct sd_delivery_result *res, enum sd_verdict *v, const size_t *idx,
                    size_t m, enum sd_verdict verdict, long status, const char *answer,
                    const char *error, int64_t retry_after, int64_t ms)
{
    for (size_t j = 0; j < m; j++) {
        size_t i = idx[j];
        v[i] = verdict;
        res[i].status = status;
        res[i].answer = answer ? sd_strdup(answer) : NULL;
        res[i].error = error ? sd_strdup(error) : NULL;
        res[i].retry_after_usec = retry_after;
        res[i].ms = ms;
    }
}

void tb_deliver_batch(struct sd_connector_ctx *ctx, void *state,
                      const struct sd_outbox_item *items, size_t n,
                      struct sd_delivery_result *res, enum sd_verdict *v)
{
    (void)state;
    const struct tb_conf *c = cf(ctx);
    json_t **tickets = sd_calloc(n, sizeof(*tickets));
    size_t *idx = sd_calloc(n, sizeof(*idx)); /* the items sent, in row order */
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *p = items[i].payload ? json_loads(items[i].payload, 0, NULL) : NULL;
        const json_t *sale = json_object_get(p, "sale");
        const char *source = json_string_value(json_object_get(p, "source"));
        json_t *cust = NULL, *ev = NULL;
        if (json_is_object(sale)) {
            sale_context(ctx, source, sale, &cust, &ev);
        }
        json_t *t = json_is_object(sale) ? tb_ticket_from_sale(source, sale, cust, ev) : NULL;
        json_decref(cust);
        json_decref(ev);
        json_decref(p);
        if (!t) {
            v[i] = SD_VERDICT_REJECT;
            res[i].error = sd_strdup("not a ticket item with a sale");
            continue;
        }
        tickets[m] = t;
        idx[m++] = i;
    }
    struct tb_call k;
    char *body = NULL;
    struct sd_http_response resp = {0};
    struct tb_row *rows = NULL;
    int64_t ms = 0;
    if (m == 0) {
        goto out;
    }
    if (call_open(c, &k) < 0) {
        set_all(res, v, idx, m, SD_VERDICT_REJECT, 0, NULL,
                "api_key or api_secret cannot be sent as a header", 0, 0);
        goto out;
    }
    size_t body_len = 0;
    body = tb_bulk_body(c->tickets_bulk_field, tickets, m, &body_len);
    int err = body ? post(ctx, &k, c->tickets_bulk_path, body, body_len, &resp, &ms) : -ENOMEM;
    call_close(&k);
    if (err == -ESTALE) {
        goto out; /* every lease was taken over: nothing sent, nothing recorded */
    }
    long status = err == 0 ? resp.status : 0;
    enum sd_verdict call_v = sd_http_classify(err, status);
    char *answer = resp.body.len ? sd_strndup(resp.body.data, resp.body.len) : NULL;
    if (err < 0 || call_v != SD_VERDICT_OK) {
        char e[300];
        sd_utf8_snprintf(e, sizeof(e), "bulk call of %zu ticket(s): %s", m,
                 err < 0 ? (resp.error[0] ? resp.error : strerror(-err)) : "refused");
        set_all(res, v, idx, m, call_v, status, answer, e, retry_after_usec(&resp), ms);
        free(answer);
        goto out;
    }
    rows = sd_calloc(m, sizeof(*rows));
    char why[160];
    if (tb_bulk_answer_parse(resp.body.data, resp.body.len, rows, m, why, sizeof(why)) < 0) {
        /* Stored or not, a repeat is safe: the ticket keys make it a duplicate. */
        set_all(res, v, idx, m, SD_VERDICT_RETRY, status, answer, why, 0, ms);
        free(answer);
        goto out;
    }
    free(answer);
    for (size_t j = 0; j < m; j++) {
        size_t i = idx[j];
        res[i].status = status;
        res[i].ms = ms;
        res[i].answer = rows[j].text ? sd_strdup(rows[j].text) : NULL;
        switch (rows[j].outcome) {
        case TB_ROW_CREATED:
        case TB_ROW_DUPLICATE:
            v[i] = SD_VERDICT_OK;
            res[i].remote_ref = rows[j].ticket_id ? sd_strdup(rows[j].ticket_id) : NULL;
            res[i].facts = json_pack("{s:s, s:i}", "kind",
                                     rows[j].outcome == TB_ROW_CREATED ? "create" : "duplicate",
                                     "batch", (json_int_t)m);
            break;
        case TB_ROW_ERROR:
            v[i] = SD_VERDICT_REJECT;
            res[i].error = sd_strdup("the ticket's row was refused (see the answer)");
            break;
        case TB_ROW_MISSING:
            v[i] = SD_VERDICT_RETRY;
            res[i].error = sd_strdup("the answer has no row for this ticket");
            break;
        }
    }
out:
    tb_rows_release(rows, m);
    free(rows);
    sd_http_response_release(&resp);
    free(body);
    for (size_t j = 0; j < m; j++) {
        json_decref(tickets[j]);
    }
    free(tickets);
    free(idx);
}

/* The customer's first phone number with text, or NULL. */
static const char *first_phone(const json_t *cust)
{
    size_t i;
    const json_t *ph;
    json_array_foreach(json_object_get(cust, "phones"), i, ph)
    {
        const char *n = json_string_value(json_object_get(ph, "number"));
        if (n && *n) {
            return n;
        }
    }
    return NULL;
}

/* The form of a fan from a customer record: its e-mail, else (a customer admitted without one
 * from a vendor source) its first phone number, which fan_create takes instead. */
static struct sd_http_form *fan_form(const json_t *cust)
{
    struct sd_http_form *f = sd_http_form_new();
    const char *names[][2] = {{"email", "email"},
                              {"first_name", "first_name"},
                              {"last_name", "last_name"}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *s = json_string_value(json_object_get(cust, names[i][0]));
        if (s && *s) {
            sd_http_form_add(f, names[i][1], s);
        }
    }
    const char *email = json_string_value(json_object_get(cust, "email"));
    const char *phone = first_phone(cust);
    if ((!email || !*email) && phone) {
        sd_http_form_add(f, "phone", phone);
    }
    const json_t *opt = json_object_get(cust, "ad_opt_out");
    if (json_is_boolean(opt)) {
        sd_http_form_add(f, "is_optout", json_is_true(opt) ? "true" : "false");
        sd_http_form_add(f, "is_subscribed", json_is_true(opt) ? "false" : "true");
    }
    return f;
}

/* data.fan_id and data.status of a fan call's answer. */
static char *fan_answer(const struct sd_http_response *resp, char status[16])
{
    json_t *doc = json_loadb(resp->body.data ? resp->body.data : "", resp->body.len, 0, NULL);
    const json_t *data = json_object_get(doc, "data");
    const json_t *id = json_object_get(data, "fan_id");
    const char *st = json_string_value(json_object_get(data, "status"));
    snprintf(status, 16, "%s", st ? st : "");
    char *out = json_is_integer(id) ? sd_asprintf("%" JSON_INTEGER_FORMAT, json_integer_value(id))
                : json_is_string(id) && json_string_length(id) > 0
                    ? sd_strdup(json_string_value(id))
                    : NULL;
    json_decref(doc);
    return out;
}

enum sd_verdict tb_deliver(struct sd_connector_ctx *ctx, void *state,
                           const struct sd_outbox_item *item, struct sd_delivery_result *res)
{
    (void)state;
    const struct tb_conf *c = cf(ctx);
    if (strcmp(item->operation, TB_OP_SYNC_TAG) == 0) {
        return tb_tags_deliver(ctx, item, res); /* a segment as a fan tag (tb_tags.c) */
    }
    if (strcmp(item->operation, TB_OP_FAN) != 0 || !item->payload) {
        res->error = sd_strdup("not an item of tradablebits with a payload");
        return SD_VERDICT_REJECT;
    }
    json_t *p = json_loads(item->payload, 0, NULL);
    const json_t *cust = json_object_get(p, "customer");
    if (!json_is_object(cust)) {
        json_decref(p);
        res->error = sd_strdup("the item carries no customer");
        return SD_VERDICT_REJECT;
    }
    char *fan = NULL;
    int r = sd_connector_remote_ref_get(ctx, "customer", item->subject_id, &fan);
    if (r < 0 && r != -ENOENT) {
        json_decref(p);
        res->error = sd_strdup("cannot read the fan id");
        return SD_VERDICT_RETRY;
    }
    const char *email = json_string_value(json_object_get(cust, "email"));
    if (!fan && (!email || !*email) && !first_phone(cust)) {
        /* fan_create needs an email or a phone: a customer with neither (admitted from a
         * vendor source) is no fan; delivered without a call, the skip in its facts */
        json_decref(p);
        res->facts = json_pack("{s:s}", "skipped", "no e-mail or phone");
        return SD_VERDICT_OK;
    }
    struct tb_call k;
    if (call_open(c, &k) < 0) {
        json_decref(p);
        free(fan);
        res->error = sd_strdup("api_key or api_secret cannot be sent as a header");
        return SD_VERDICT_REJECT;
    }
    struct sd_http_form *form = fan_form(cust);
    struct sd_http_response resp = {0};
    enum sd_verdict v = SD_VERDICT_RETRY;
    bool created = false;
    const char *kind = "update";
    /* The first request's call is the one core took for the attempt (sd_connector_quota_take
     * spends it first); a second request (the update after a duplicate) takes its own. */
    r = sd_connector_quota_take(ctx, 1);
    if (r < 0) {
        v = SD_VERDICT_RETRY;
        res->error = sd_strdup("the call quota could not be taken for the fan");
        goto out;
    }
    if (!fan) {
        size_t len = 0;
        const char *text = sd_http_form_body(form, &len);
        int err = post(ctx, &k, c->fans_create_path, text, len, &resp, &res->ms);
        if (err == -ESTALE) {
            goto out;
        }
        res->status = err == 0 ? resp.status : 0;
        v = sd_http_classify(err, res->status);
        if (err < 0 || v != SD_VERDICT_OK) {
            res->error = sd_strdup(err < 0 ? (resp.error[0] ? resp.error : strerror(-err))
                                           : "fan create refused");
            res->retry_after_usec = retry_after_usec(&resp);
            goto keep_answer;
        }
        char st[16];
        fan = fan_answer(&resp, st);
        if (!fan) {
            v = SD_VERDICT_RETRY;
            res->error = sd_strdup("the fan create answer names no fan_id");
            goto keep_answer;
        }
        if (strcmp(st, "duplicate") != 0) {
            created = true;
            kind = "create";
            goto keep_answer;
        }
        /* The email is a fan already: that fan is this customer's, and gets its fields. */
        kind = "duplicate_update";
        sd_http_response_release(&resp);
        resp = (struct sd_http_response){0};
        r = sd_connector_quota_take(ctx, 1);
        if (r < 0) {
            v = SD_VERDICT_RETRY;
            res->error = sd_strdup("the call quota could not be taken for the fan update");
            goto out;
        }
    }
    {
        char *path = path_with(c->fan_update_path, "fan_id", fan);
        size_t len = 0;
        const char *text = sd_http_form_body(form, &len);
        int err = post(ctx, &k, path, text, len, &resp, &res->ms);
        free(path);
        if (err == -ESTALE) {
            goto out;
        }
        res->status = err == 0 ? resp.status : 0;
        v = sd_http_classify(err, res->status);
        if (err < 0 || v != SD_VERDICT_OK) {
            res->error = sd_strdup(err < 0 ? (resp.error[0] ? resp.error : strerror(-err))
                                           : "fan update refused");
            res->retry_after_usec = retry_after_usec(&resp);
        }
    }
keep_answer:
    if (resp.body.len) {
        res->answer = sd_strndup(resp.body.data, resp.body.len);
    }
    if (v == SD_VERDICT_OK) {
        res->remote_ref = sd_strdup(fan);
        res->facts = json_pack("{s:s}", "kind", kind);
        if (created) {
            /* The pull leaves this fan out: it is the hub's own customer. */
            sd_connector_remote_ref_put(ctx, TB_REF_FAN_CREATED, fan, item->subject_id);
        }
    }
out:
    sd_http_response_release(&resp);
    sd_http_form_free(form);
    call_close(&k);
    free(fan);
    json_decref(p);
    return v;
}
