/* s360_out.c — the `s360` connector's outbound half: stagedoor writes to S-360's backend APIs
 * (REST-RPC, POST JSON) through core's outbox.
 *
 *  - The token: POST {api_base}/tnai/backend-apis/v1/auth {"operator","partner","secret"} →
 *    {"token"}, sent as a Bearer token. One token per credential is kept for the life of the
 *    process and shared by every delivery of every instance with that credential; a 401 drops
 *    it, refreshes it once and repeats the call once (http/client.h, sd_http_token).
 *  - Contacts out ("save_contact", subject kind "contact", subject "<source>:<customer_id>"):
 *    on_change queues a customer of the instance's own source (its customer_id is S-360's
 *    contactNumber) that changed through another origin, a customer of another source whose
 *    profile holds one of the instance's contacts (one indexed look-up in the writer's
 *    transaction, so an import of unlinked customers queues nothing), or with create_contacts
 *    any customer of another source. deliver reads the customer as stored NOW, finds its contact
 *    (own number, remote reference, else the profile: exactly one contact of the instance's
 *    source, several are never guessed between) and calls saveIndividualContactData over
 *    S-360's current contact; a created contact's number becomes the subject's remote reference.
 *    Before an update it reads S-360's contact (getContactData): a lastUpdateDate past the
 *    remote_version stagedoor received from S-360's webhook, and not stagedoor's own last
 *    write, is a change stagedoor has not seen, which is not overwritten (delivered with the
 *    fact {"skipped": "remote newer"}; it comes in through the contact webhook); without a
 *    received version the times of the local change and of the last write decide
 *    (s360_remote_newer). A contact S-360 no longer has (CONTACT_NOT_FOUND) is not created
 *    again: S-360 deleted or merged it, so the item is rejected with the detail. An opt-out is
 *    written as refused opt-in authorizations; nothing is ever written as an opt-in.
 *  - Every call counts against the instance's call quota (the outbox takes one per delivery;
 *    deliver takes the others before it makes them). 429 and 509 (S-360's rate limit, never
 *    with Retry-After) make the item wait; in_progress retries soon; any other in-band status
 *    rejects it with S-360's statusDetail.
 *
 * Nothing here logs a secret, a token or personal data. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/log.h"
#include "connectors/s360/s360.h"
#include "connectors/s360/s360_out.h"
#include "core/quota.h"
#include "http/client.h"
#include "model/model.h"
#include "store/store.h"

const char *const s360_operations[] = {S360_OP_SAVE_CONTACT, S360_OP_CREATE_ORDER, NULL};

/* ---- pure parts ---------------------------------------------------------------------------- */

int s360_time_usec(const char *text, int64_t *ret_usec)
{
    char utc[48];
    if (!text || sd_datetime_to_utc(text, utc, sizeof(utc)) < 0) {
        return -EINVAL;
    }
    int y, mo, d, h, mi, s, n = 0;
    if (sscanf(utc, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &s, &n) != 6) {
        return -EINVAL;
    }
    int64_t frac = 0, scale = 1000000;
    if (utc[n] == '.') {
        for (const char *p = utc + n + 1; *p >= '0' && *p <= '9'; p++) {
            if (scale > 1) {
                scale /= 10;
                frac += (*p - '0') * scale;
            }
        }
    }
    int64_t days = sd_days_from_civil(y, mo, d);
    *ret_usec = ((days * 86400) + h * 3600 + mi * 60 + s) * 1000000 + frac;
    return 0;
}

bool s360_remote_newer(int64_t remote_usec, int64_t received_ms, int64_t queued_usec,
                       int64_t written_usec)
{
    if (received_ms > 0) {
        /* S-360's own word: its contact is newer than every version stagedoor received from
         * it, and not stagedoor's own last write (whose echo may still be on its way). */
        return remote_usec > received_ms * 1000 &&
               (written_usec <= 0 || remote_usec > written_usec + S360_CLOCK_SKEW_USEC);
    }
    int64_t known = queued_usec > written_usec ? queued_usec : written_usec;
    return remote_usec > known + S360_CLOCK_SKEW_USEC;
}

int s360_split_subject(const char *subject, char **ret_buf, const char **ret_source,
                       const char **ret_id)
{
    const char *colon = subject ? strchr(subject, ':') : NULL;
    if (!colon || colon == subject || colon[1] == '\0') {
        return -EINVAL;
    }
    char *buf = sd_strdup(subject);
    buf[colon - subject] = '\0';
    *ret_buf = buf;
    *ret_source = buf;
    *ret_id = buf + (colon - subject) + 1;
    return 0;
}

enum sd_verdict s360_judge(int transport_err, long status, const json_t *answer,
                           const char **ret_detail)
{
    if (ret_detail) {
        *ret_detail = NULL;
    }
    enum sd_verdict v = sd_http_classify(transport_err, status);
    if (v != SD_VERDICT_OK) {
        return v;
    }
    const char *code = json_string_value(json_object_get(answer, "statusCode"));
    if (!json_is_object(answer) || !code) {
        return SD_VERDICT_REJECT;
    }
    if (strcmp(code, "success") == 0) {
        return SD_VERDICT_OK;
    }
    if (strcmp(code, "in_progress") == 0) {
        return SD_VERDICT_RETRY;
    }
    if (ret_detail) {
        const char *detail = json_string_value(json_object_get(answer, "statusDetail"));
        *ret_detail = detail && *detail ? detail : code;
    }
    return SD_VERDICT_REJECT;
}

/* A customer's string member: 1 with *ret set (NULL for a JSON null), 0 when absent. */
static int member(const json_t *rec, const char *key, const char **ret)
{
    const json_t *v = json_object_get(rec, key);
    if (!v) {
        return 0;
    }
    *ret = json_is_string(v) && json_string_length(v) > 0 ? json_string_value(v) : NULL;
    return 1;
}

/* obj[key] = value, or removed when value is NULL. */
static void overlay(json_t *obj, const char *key, const char *value)
{
    if (value) {
        json_object_set_new(obj, key, json_string(value));
    } else {
        json_object_del(obj, key);
    }
}

static json_t *array_copy(const json_t *current, const char *key);

/* stagedoor keeps one street; S-360 two lines, which the inbound joins as "street1, street2".
 * An unchanged street keeps both lines; a street that still ends in ", <street2>" splits back
 * there; any other street is street1 alone (street2 would repeat part of it or contradict it). */
static void put_street(json_t *addr, const char *street)
{
    const char *s1 = json_string_value(json_object_get(addr, "street1"));
    const char *s2 = json_string_value(json_object_get(addr, "street2"));
    if (!street) {
        json_object_del(addr, "street1");
        json_object_del(addr, "street2");
        return;
    }
    size_t n = strlen(street), n2 = s2 ? strlen(s2) : 0;
    if (s2 && *s2) {
        if (s1 && *s1 && n == strlen(s1) + 2 + n2 && strncmp(street, s1, strlen(s1)) == 0 &&
            strncmp(street + strlen(s1), ", ", 2) == 0 && strcmp(street + n - n2, s2) == 0) {
            return; /* unchanged */
        }
        if ((!s1 || !*s1) && strcmp(street, s2) == 0) {
            return; /* the inbound took a lone street2 as the street */
        }
        if (n > n2 + 2 && strcmp(street + n - n2, s2) == 0 &&
            strncmp(street + n - n2 - 2, ", ", 2) == 0) {
            json_object_set_new(addr, "street1", json_stringn(street, n - n2 - 2));
            return; /* street1 changed, street2 kept */
        }
        json_object_del(addr, "street2");
    }
    json_object_set_new(addr, "street1", json_string(street));
}

/* The customer's opt-out as S-360 authorizations: every opt-in type of optin_types set to
 * false (added when S-360 has none). NULL when nothing is to be written: the customer is not
 * opted out (an opt-out in S-360 is never turned into an opt-in, and a missing consent is not
 * invented), or no type is configured. */
static json_t *opt_out_authorizations(const json_t *customer, const json_t *current,
                                      const char *optin_types)
{
    if (!json_is_true(json_object_get(customer, "ad_opt_out")) || !optin_types ||
        !optin_types[strspn(optin_types, " ,")]) {
        return NULL;
    }
    json_t *auths = array_copy(current, "authorizations");
    size_t i;
    json_t *a;
    json_array_foreach(auths, i, a)
    {
        const char *t = json_string_value(json_object_get(a, "authorizationType"));
        if (t && s360_in_list(optin_types, t)) {
            json_object_set_new(a, "value", json_false());
        }
    }
    for (const char *p = optin_types; *p;) {
        while (*p == ' ' || *p == ',') {
            p++;
        }
        const char *e = p;
        while (*e && *e != ',') {
            e++;
        }
        const char *t = e;
        while (t > p && t[-1] == ' ') {
            t--;
        }
        if (t > p) {
            bool have = false;
            json_array_foreach(auths, i, a)
            {
                const char *x = json_string_value(json_object_get(a, "authorizationType"));
                have = have || (x && strlen(x) == (size_t)(t - p) && strncmp(x, p, t - p) == 0);
            }
            if (!have) {
                json_array_append_new(auths, json_pack("{s:s%, s:b}", "authorizationType", p,
                                                       (size_t)(t - p), "value", 0));
            }
        }
        p = e;
    }
    if (json_array_size(auths) == 0) {
        json_decref(auths);
        return NULL;
    }
    return auths;
}

/* A copy of current[key] if it is an array, else a new empty one. */
static json_t *array_copy(const json_t *current, const char *key)
{
    const json_t *a = json_object_get(current, key);
    return json_is_array(a) ? json_deep_copy(a) : json_array();
}

json_t *s360_contact_body(const json_t *customer, const json_t *current, const char *number,
                          const char *request_id, const char *optin_types, char *why,
                          size_t why_size)
{
    if (current && !json_is_object(json_object_get(current, "individualContact")) &&
        json_object_get(current, "structureContact")) {
        snprintf(why, why_size,
                 "S-360 contact %s is a company: saveIndividualContactData writes persons only",
                 number ? number : "");
        return NULL;
    }
    const json_t *ind0 = json_object_get(current, "individualContact");
    json_t *ind = json_is_object(ind0) ? json_deep_copy(ind0) : json_object();
    const char *v = NULL;
    if (member(customer, "first_name", &v)) {
        overlay(ind, "firstName", v);
    }
    if (member(customer, "last_name", &v) && v) {
        overlay(ind, "lastName", v); /* mandatory in S-360: a null leaves S-360's */
    }
    const char *last = json_string_value(json_object_get(ind, "lastName"));
    if (!last || !*last) {
        json_decref(ind);
        snprintf(why, why_size,
                 "S-360 requires a last name (individualContact.lastName) and "
                 "the customer has none");
        return NULL;
    }

    json_t *means = array_copy(current, "communicationMeans");
    if (member(customer, "email", &v)) {
        size_t i;
        json_t *m;
        bool done = false;
        json_array_foreach(means, i, m)
        {
            const char *type = json_string_value(json_object_get(m, "type"));
            if (type && strcmp(type, "EMAIL") == 0) {
                if (v) {
                    json_object_set_new(m, "value", json_string(v));
                } else {
                    json_array_remove(means, i);
                }
                done = true;
                break;
            }
        }
        if (!done && v) {
            json_array_append_new(
                means, json_pack("{s:s, s:s, s:b}", "type", "EMAIL", "value", v, "isMain", 1));
        }
    }

    json_t *addrs = array_copy(current, "addresses");
    const char *street = NULL, *zip = NULL;
    int has_street = member(customer, "street", &street);
    int has_zip = member(customer, "post_code", &zip);
    if (has_street || has_zip) {
        json_t *main_addr = NULL, *a;
        size_t i;
        json_array_foreach(addrs, i, a)
        {
            if (json_is_object(a) && (json_is_true(json_object_get(a, "isMain")) || !main_addr)) {
                main_addr = a;
            }
        }
        if (!main_addr && (street || zip)) {
            main_addr = json_pack("{s:b}", "isMain", 1);
            json_array_append_new(addrs, main_addr);
        }
        if (main_addr && has_street) {
            put_street(main_addr, street);
        }
        if (main_addr && has_zip) {
            overlay(main_addr, "zipCode", zip);
        }
    }

    json_t *body =
        json_pack("{s:s, s:o, s:o, s:o}", "requestId", request_id ? request_id : "",
                  "individualContact", ind, "communicationMeans", means, "addresses", addrs);
    if (number) {
        json_object_set_new(body, "contactNumber", json_string(number));
    }
    json_t *auths = opt_out_authorizations(customer, current, optin_types);
    if (auths) {
        json_object_set_new(body, "authorizations", auths);
    }
    return body;
}

/* ---- the token: one per credential, shared by every delivery -------------------------------- */

#define TOKEN_SLOTS 64
#define TOKEN_MARGIN_S 60

struct token_slot {
    char key[65]; /* SHA-256 of the credential and the API base */
    struct sd_http_token *token;
    struct sd_http_token_json exchange;
    char *url, *body;
};

static pthread_mutex_t token_lock = PTHREAD_MUTEX_INITIALIZER;
static struct token_slot *token_slots[TOKEN_SLOTS];

static char *api_url(const struct s360_conf *cf, const char *path)
{
    const char *base = cf->api_base ? cf->api_base : "";
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '/') {
        n--;
    }
    return sd_asprintf("%.*s%s", (int)n, base, path);
}

static struct token_slot *slot_new(const struct s360_conf *cf, const char *key)
{
    struct token_slot *s = sd_calloc(1, sizeof(*s));
    memcpy(s->key, key, sizeof(s->key));
    s->url = api_url(cf, "/tnai/backend-apis/v1/auth");
    json_t *b = json_pack("{s:s, s:s, s:s}", "operator", cf->operator_name ? cf->operator_name : "",
                          "partner", cf->partner ? cf->partner : "", "secret",
                          cf->secret ? cf->secret : "");
    s->body = b ? json_dumps(b, JSON_COMPACT) : sd_strdup("{}");
    json_decref(b);
    s->exchange = (struct sd_http_token_json){
        .url = s->url,
        .body = s->body,
        .token_member = "token",
        .timeout_ms = (cf->timeout_seconds > 0 ? cf->timeout_seconds : 30) * 1000,
    };
    s->token = sd_http_token_new(sd_http_token_refresh_json, &s->exchange, TOKEN_MARGIN_S);
    return s;
}

static void slot_free(struct token_slot *s)
{
    if (!s) {
        return;
    }
    sd_http_token_free(s->token);
    if (s->body) {
        explicit_bzero(s->body, strlen(s->body));
    }
    free(s->body);
    free(s->url);
    free(s);
}

/* The credential's token slot. A process keeps TOKEN_SLOTS credentials' tokens; past that,
 * *ret_own is set and the caller frees the slot (a token for this delivery only). */
static struct token_slot *token_for(const struct s360_conf *cf, bool *ret_own)
{
    struct sd_buf k = {0};
    sd_buf_init(&k);
    const char *parts[] = {cf->api_base, cf->operator_name, cf->partner, cf->secret};
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        sd_buf_puts(&k, parts[i] ? parts[i] : "");
        sd_buf_append(&k, "\n", 1);
    }
    char key[65];
    sd_sha256_hex(k.data, k.len, key);
    explicit_bzero(k.data, k.len);
    sd_buf_release(&k);
    *ret_own = false;
    pthread_mutex_lock(&token_lock);
    struct token_slot *found = NULL;
    size_t i = 0;
    for (; i < TOKEN_SLOTS && token_slots[i]; i++) {
        if (strcmp(token_slots[i]->key, key) == 0) {
            found = token_slots[i];
            break;
        }
    }
    if (!found && i < TOKEN_SLOTS) {
        found = token_slots[i] = slot_new(cf, key);
    }
    pthread_mutex_unlock(&token_lock);
    if (!found) {
        *ret_own = true;
        found = slot_new(cf, key);
    }
    return found;
}

/* ---- one call ------------------------------------------------------------------------------ */

struct call_ctx {
    struct sd_connector_ctx *ctx;
    const struct s360_conf *cf;
    struct token_slot *slot;
    struct sd_delivery_result *res;
};

/* Spend n more calls of the instance's quota (the outbox took one for the delivery): OK, or
 * WAIT with the time the window has room. */
static enum sd_verdict take_calls(struct call_ctx *cc, int64_t n, bool must)
{
    struct sd_connector_ctx *ctx = cc->ctx;
    if (n <= 0 || !ctx->hub || !ctx->connector || !ctx->connector->quotas) {
        return SD_VERDICT_OK;
    }
    int64_t now = sd_now_usec(), retry_at = 0;
    int r = sd_quota_take_instance(ctx->hub->store, ctx->connector, ctx->settings, ctx->id,
                                   SD_QUOTA_WRITE, n, now, &retry_at);
    if (r == 0 || !must) {
        return SD_VERDICT_OK; /* !must: calls already made are counted if there is room */
    }
    if (r == -EAGAIN) {
        cc->res->retry_after_usec = retry_at > now ? retry_at - now : 1000000;
        free(cc->res->error);
        cc->res->error = sd_strdup("waiting for the S-360 call quota");
        return SD_VERDICT_WAIT;
    }
    free(cc->res->error);
    cc->res->error = sd_asprintf("the S-360 call quota could not be counted (%s)", strerror(-r));
    return r == -E2BIG ? SD_VERDICT_REJECT : SD_VERDICT_RETRY;
}

/* POST body to path (under api_base) with the Bearer token; *ret_answer: the JSON answer of a
 * 2xx (NULL otherwise). counted: the call was already counted against the quota. Fills res
 * (status, answer, error, ms, retry_after_usec) and returns the verdict (s360_judge). */
static enum sd_verdict rpc(struct call_ctx *cc, const char *path, const json_t *body, bool counted,
                           json_t **ret_answer)
{
    struct sd_delivery_result *res = cc->res;
    *ret_answer = NULL;
    const char *method = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    if (!counted) {
        enum sd_verdict q = take_calls(cc, 1, true);
        if (q != SD_VERDICT_OK) {
            return q;
        }
    }
    int64_t timeout_ms = (cc->cf->timeout_seconds > 0 ? cc->cf->timeout_seconds : 30) * 1000;
    /* The request, and a token exchange before it, within the lease. */
    int64_t need = 2 * timeout_ms * 1000 + SD_OUTBOX_LEASE_MARGIN_USEC;
    if (cc->ctx->lease && sd_connector_lease_extend(cc->ctx, need, need) < 0) {
        free(res->error);
        res->error = sd_strdup("the delivery was taken over by another worker");
        return SD_VERDICT_RETRY; /* core records nothing for a lost lease */
    }
    char *url = api_url(cc->cf, path);
    char *text = json_dumps(body, JSON_COMPACT);
    const char *headers[] = {"Content-Type: application/json", "Accept: application/json",
                             "Expect:", NULL};
    struct sd_http_request rq = {
        .method = "POST",
        .url = url,
        .headers = headers,
        .body = text,
        .body_len = text ? strlen(text) : 0,
        .timeout_ms = timeout_ms,
        .connect_timeout_ms = timeout_ms < 10000 ? timeout_ms : 0,
        .max_body = S360_MAX_ANSWER,
        .token = cc->slot->token,
    };
    struct sd_http_response resp = {0};
    uint64_t refreshes = sd_http_token_refreshes(cc->slot->token);
    int64_t t0 = sd_mono_usec();
    int err = sd_http_fetch(&rq, &resp);
    res->ms += (sd_mono_usec() - t0) / 1000;
    /* Token exchanges made for this call are calls too. */
    take_calls(cc, (int64_t)(sd_http_token_refreshes(cc->slot->token) - refreshes), false);
    res->status = err == 0 ? resp.status : 0;
    free(res->answer);
    res->answer = NULL;
    free(res->error);
    res->error = NULL;
    res->retry_after_usec = 0;
    json_t *ans = NULL;
    enum sd_verdict v;
    const char *detail = NULL;
    if (err < 0) {
        v = err == -EACCES ? SD_VERDICT_REJECT : sd_http_classify(err, 0);
        res->error = sd_asprintf("S-360 %s: %s", method,
                                 err == -EACCES  ? "the token exchange was refused (operator, "
                                                   "partner or secret is wrong)"
                                 : resp.error[0] ? resp.error
                                                 : strerror(-err));
        goto out;
    }
    if (resp.body.len > 0) {
        res->answer = sd_strndup(resp.body.data, resp.body.len);
    }
    if (resp.status >= 200 && resp.status < 300) {
        ans = json_loadb(resp.body.data ? resp.body.data : "", resp.body.len, 0, NULL);
    }
    v = s360_judge(0, resp.status, ans, &detail);
    if (v == SD_VERDICT_WAIT) {
        int64_t ra = resp.retry_after
                         ? sd_http_retry_after(resp.retry_after, SD_OUTBOX_RETRY_AFTER_MAX_S)
                         : -1;
        res->retry_after_usec = ra > 0 ? ra * 1000000 : 0;
        res->error = sd_asprintf("S-360 %s: HTTP %ld (rate limit)", method, resp.status);
    } else if (v == SD_VERDICT_RETRY && ans) {
        res->retry_after_usec = (int64_t)(S360_IN_PROGRESS_RETRY_USEC * sd_outbox_time_scale());
        res->error = sd_asprintf("S-360 %s: in_progress", method);
    } else if (v == SD_VERDICT_REJECT && ans) {
        res->error = detail ? sd_asprintf("S-360 %s failed: %s", method, detail)
                            : sd_asprintf("S-360 %s: the answer has no statusCode", method);
    } else if (v != SD_VERDICT_OK) {
        res->error = sd_asprintf("S-360 %s: HTTP %ld%s", method, resp.status,
                                 resp.status >= 200 && resp.status < 300
                                     ? " with an answer that is not a JSON object"
                                     : "");
    }
out:
    if (v == SD_VERDICT_OK) {
        *ret_answer = ans;
    } else {
        json_decref(ans);
    }
    sd_http_response_release(&resp);
    if (text) {
        explicit_bzero(text, strlen(text));
    }
    free(text);
    free(url);
    return v;
}

static char *contact_path(const struct s360_conf *cf, const char *method)
{
    return sd_asprintf("/tnco/backend-apis/contactInformationPublicService/%s/%s",
                       cf->contact_service && *cf->contact_service ? cf->contact_service : "v2_21",
                       method);
}

static char *s360_order_path(const struct s360_conf *cf, const char *method)
{
    return sd_asprintf("/tnseb/backend-apis/externalOrderFacade/%s/%s",
                       cf->order_facade && *cf->order_facade ? cf->order_facade : "v1_33", method);
}

/* ---- contacts out -------------------------------------------------------------------------- */

static const char *own_source(const struct sd_connector_ctx *ctx)
{
    const char *s = json_string_value(json_object_get(ctx->settings, "source"));
    return s && *s ? s : "s360";
}

void s360_on_change(const struct sd_connector_ctx *ctx, const struct sd_change *chg,
                    struct sd_outbox_adder *out)
{
    const struct s360_conf *cf = ctx->conf;
    if (!cf || chg->kind != SD_KIND_CUSTOMER || !chg->id || !chg->source) {
        return;
    }
    const char *mine = own_source(ctx);
    bool own = strcmp(chg->source, mine) == 0;
    if (own && !cf->push_contacts) {
        return;
    }
    if (!own && !cf->create_contacts) {
        /* Only a customer linked to one of this instance's contacts can go out: one indexed
         * look-up here keeps a large import of unlinked customers from queueing an item each. */
        int64_t linked = 0;
        if (!cf->push_contacts || sd_outbox_change_linked(out, chg, mine, &linked) < 0 ||
            linked == 0) {
            return;
        }
    }
    /* The body is built at send time from the customer as stored then; items of one customer
     * with the same content are one item while it waits. */
    char *subject = sd_asprintf("%s:%s", chg->source, chg->id);
    char *text = json_dumps(chg->record, JSON_COMPACT | JSON_SORT_KEYS);
    char hash[65];
    sd_sha256_hex(text ? text : "", text ? strlen(text) : 0, hash);
    char *dedupe = sd_asprintf("%s|%s", subject, hash);
    sd_outbox_add(out, S360_OP_SAVE_CONTACT, S360_KIND_CONTACT, subject, NULL, dedupe);
    free(dedupe);
    free(text);
    free(subject);
}

static enum sd_verdict done(struct sd_delivery_result *res, enum sd_verdict v, json_t *facts)
{
    json_decref(res->facts);
    res->facts = facts;
    return v;
}

static enum sd_verdict reject(struct sd_delivery_result *res, const char *why)
{
    free(res->error);
    res->error = sd_strdup(why);
    return SD_VERDICT_REJECT;
}

static enum sd_verdict deliver_contact(struct call_ctx *cc, const struct sd_outbox_item *item)
{
    struct sd_connector_ctx *ctx = cc->ctx;
    struct sd_delivery_result *res = cc->res;
    char *buf = NULL, *doc = NULL, *number = NULL, *written = NULL, *path = NULL;
    char **sources = NULL, **linked = NULL;
    size_t n_sources = 0, n_linked = 0;
    const char *source, *id;
    json_t *customer = NULL, *current = NULL, *body = NULL, *ans = NULL;
    enum sd_verdict v = SD_VERDICT_REJECT;
    char why[256];
    if (s360_split_subject(item->subject_id, &buf, &source, &id) < 0) {
        return reject(res, "the item's subject is not \"<source>:<customer_id>\"");
    }
    int r = sd_store_get_customer(ctx->hub->store, ctx->tenant_id, ctx->env, id, source, &doc,
                                  &sources, &n_sources);
    if (r == -ENOENT) {
        v = done(res, SD_VERDICT_OK, json_pack("{s:s}", "skipped", "customer gone"));
        goto out;
    }
    if (r < 0 || !(customer = json_loads(doc, 0, NULL))) {
        free(res->error);
        res->error = sd_asprintf("the customer could not be read (%s)", strerror(r < 0 ? -r : EIO));
        v = SD_VERDICT_RETRY;
        goto out;
    }
    const char *mine = own_source(ctx);
    bool own = strcmp(source, mine) == 0, by_profile = false;
    if (own) {
        number = sd_strdup(id);
    } else if ((r = sd_connector_remote_ref_get(ctx, S360_KIND_CONTACT, item->subject_id,
                                                &number)) < 0 &&
               r != -ENOENT) {
        free(res->error);
        res->error = sd_strdup("the customer's S-360 contact number could not be read");
        v = SD_VERDICT_RETRY;
        goto out;
    }
    if (!number) {
        /* Not created by this instance: linked to one of its contacts by the tenant's profile
         * link rule? */
        r = sd_connector_linked_ids(ctx, source, id, mine, &linked, &n_linked);
        if (r < 0) {
            free(res->error);
            res->error = sd_strdup("the customer's profile could not be read");
            v = SD_VERDICT_RETRY;
            goto out;
        }
        if (n_linked > 1) {
            /* People sharing an address (a family, a company's buyers) may share a profile:
             * which contact this customer is cannot be told, so none is overwritten. */
            v = done(res, SD_VERDICT_OK,
                     json_pack("{s:s, s:I}", "skipped", "linked to several contacts",
                               "linked_contacts", (json_int_t)n_linked));
            goto out;
        }
        if (n_linked == 1) {
            number = sd_strdup(linked[0]);
            by_profile = true;
        } else if (!cc->cf->create_contacts) {
            v = done(res, SD_VERDICT_OK, json_pack("{s:s}", "skipped", "not linked"));
            goto out;
        }
    }

    if (number) {
        /* An update: S-360's contact as it is now, to keep what stagedoor does not manage and
         * to never overwrite a newer S-360 change. */
        path = contact_path(cc->cf, "getContactData");
        json_t *q = json_pack("{s:s, s:s}", "requestId", item->idem_key ? item->idem_key : "",
                              "contactNumber", number);
        v = rpc(cc, path, q, true, &current);
        json_decref(q);
        free(path);
        path = NULL;
        if (v != SD_VERDICT_OK) {
            goto out; /* CONTACT_NOT_FOUND included: S-360 deleted or merged it */
        }
        int64_t remote = 0, written_usec = 0, received_ms = 0;
        const char *stamp = json_string_value(json_object_get(current, "lastUpdateDate"));
        if (sd_connector_remote_ref_get(ctx, S360_KIND_WRITTEN, item->subject_id, &written) == 0) {
            sd_parse_int64(written, false, &written_usec);
        }
        r = sd_connector_record_version(ctx, mine, number, &received_ms);
        if (r < 0 && r != -ENOENT) {
            free(res->error);
            res->error = sd_strdup("the S-360 contact's received version could not be read");
            v = SD_VERDICT_RETRY;
            goto out;
        }
        if (stamp && s360_time_usec(stamp, &remote) == 0 &&
            s360_remote_newer(remote, received_ms, item->created_usec, written_usec)) {
            v = done(res, SD_VERDICT_OK,
                     json_pack("{s:s, s:s, s:s, s:s}", "kind", "update", "skipped", "remote newer",
                               "remote_updated", stamp, "rule",
                               received_ms > 0 ? "remote_version" : "clock"));
            goto out;
        }
        if (!json_is_object(json_object_get(current, "individualContact")) &&
            json_object_get(current, "structureContact")) {
            /* saveIndividualContactData writes persons only: a company (a person of another
             * source linked to it through a shared address, or the company itself) is left as
             * S-360 has it, like a profile of several contacts. */
            v = done(res, SD_VERDICT_OK,
                     json_pack("{s:s, s:s}", "skipped",
                               by_profile ? "linked to a company" : "a company contact",
                               "contact_number", number));
            goto out;
        }
    }
    body = s360_contact_body(customer, current, number, item->idem_key,
                             cc->cf->optin_authorizations, why, sizeof(why));
    if (!body) {
        v = reject(res, why);
        goto out;
    }
    path = contact_path(cc->cf, "saveIndividualContactData");
    v = rpc(cc, path, body, !number, &ans); /* an update's second call takes its own quota */
    if (v != SD_VERDICT_OK) {
        goto out;
    }
    const char *got = json_string_value(json_object_get(ans, "contactNumber"));
    if (!got || !*got) {
        v = reject(res, "S-360 saveIndividualContactData answered success without a "
                        "contactNumber");
        goto out;
    }
    if (!by_profile) {
        res->remote_ref = sd_strdup(got); /* a linked contact stays found through the profile */
    }
    char stamp_now[32];
    snprintf(stamp_now, sizeof(stamp_now), "%lld", (long long)sd_now_usec());
    if (sd_connector_remote_ref_put(ctx, S360_KIND_WRITTEN, item->subject_id, stamp_now) < 0) {
        sd_log(SD_LOG_WARN, "s360: the time of a contact's write could not be kept", "id=%s",
               ctx->id);
    }
    json_t *facts =
        json_pack("{s:s, s:s}", "kind", number ? "update" : "create", "contact_number", got);
    if (by_profile) {
        json_object_set_new(facts, "linked", json_string("profile"));
    }
    done(res, SD_VERDICT_OK, facts);
out:
    for (size_t i = 0; i < n_linked; i++) {
        free(linked[i]);
    }
    free(linked);
    json_decref(ans);
    json_decref(body);
    json_decref(current);
    json_decref(customer);
    for (size_t i = 0; i < n_sources; i++) {
        free(sources[i]);
    }
    free(sources);
    free(path);
    free(written);
    free(number);
    free(doc);
    free(buf);
    return v;
}

/* ---- offers out ----------------------------------------------------------------------------- */

json_t *s360_order_body(const json_t *offer, const char *contact_number, int64_t point_of_sales_id,
                        const char *request_id)
{
    const char *offer_id = json_string_value(json_object_get(offer, "offer_id"));
    const char *type = json_string_value(json_object_get(offer, "order_type"));
    json_t *line = json_pack(
        "{s:I, s:I, s:I, s:I}", "performanceId",
        (json_int_t)json_integer_value(json_object_get(offer, "performance_id")), "seatCategoryId",
        (json_int_t)json_integer_value(json_object_get(offer, "seat_category_id")),
        "audienceSubCategoryId",
        (json_int_t)json_integer_value(json_object_get(offer, "audience_sub_category_id")),
        "quantity", (json_int_t)json_integer_value(json_object_get(offer, "quantity")));
    return json_pack("{s:s, s:I, s:s, s:{s:s}, s:s, s:{s:[o]}}", "requestId",
                     request_id ? request_id : "", "pointOfSalesId", (json_int_t)point_of_sales_id,
                     "orderType", type ? type : "", "purchasersInfo", "contactReference",
                     contact_number ? contact_number : "", "externalReference",
                     offer_id ? offer_id : "", "singleEntryAttributionOperations",
                     "operationAttributions", line);
}

/* An order S-360 answered ({orderId, orderState, orderType, …}): the remote reference (the
 * orderId as text) and the facts the offer's answer shows. false if it has no integer orderId. */
static bool order_result(struct sd_delivery_result *res, const json_t *order, bool found)
{
    const json_t *oid = json_object_get(order, "orderId");
    if (!json_is_integer(oid)) {
        return false;
    }
    res->remote_ref = sd_asprintf("%lld", (long long)json_integer_value(oid));
    json_t *facts = json_pack("{s:s, s:b}", "order_id", res->remote_ref, "found_existing", found);
    const char *keys[][2] = {{"orderState", "order_state"}, {"orderType", "order_type"}};
    for (size_t i = 0; i < 2; i++) {
        const json_t *v = json_object_get(order, keys[i][0]);
        if (json_is_string(v)) {
            json_object_set(facts, keys[i][1], (json_t *)v);
        }
    }
    const json_t *total = json_object_get(order, "totalAmount");
    if (json_is_integer(total)) {
        json_object_set(facts, "total_amount_thousandths", (json_t *)total);
    }
    done(res, SD_VERDICT_OK, facts);
    return true;
}

static enum sd_verdict deliver_order(struct call_ctx *cc, const struct sd_outbox_item *item)
{
    struct sd_connector_ctx *ctx = cc->ctx;
    struct sd_delivery_result *res = cc->res;
    json_t *offer = item->payload ? json_loads(item->payload, 0, NULL) : NULL;
    json_t *ans = NULL, *body = NULL;
    char *number = NULL, *path = NULL;
    enum sd_verdict v = SD_VERDICT_REJECT;
    const char *offer_id = item->subject_id; /* the action's id: S-360's externalReference */
    const char *contact = json_string_value(json_object_get(offer, "contact"));
    const char *source = json_string_value(json_object_get(offer, "source"));
    if (!offer_id || !contact) {
        v = reject(res, "the offer item has no offer_id or contact");
        goto out;
    }
    /* The buyer: a contact number, or a customer of another source linked to a contact. */
    if (source && strcmp(source, own_source(ctx)) != 0) {
        char *subject = sd_asprintf("%s:%s", source, contact);
        int r = sd_connector_remote_ref_get(ctx, S360_KIND_CONTACT, subject, &number);
        free(subject);
        if (r == -ENOENT) {
            v = reject(res, "the customer is not linked to an S-360 contact");
            goto out;
        }
        if (r < 0) {
            free(res->error);
            res->error = sd_strdup("the customer's S-360 contact number could not be read");
            v = SD_VERDICT_RETRY;
            goto out;
        }
    } else {
        number = sd_strdup(contact);
    }

    /* First the look-up: a previous attempt may have opened the order although its answer
     * was lost or said in_progress; S-360 does not deduplicate createOrUpdateOrder. */
    path = s360_order_path(cc->cf, "findOrdersByExternalReference");
    json_t *q = json_pack("{s:s, s:s}", "requestId", item->idem_key ? item->idem_key : "",
                          "externalReference", offer_id);
    v = rpc(cc, path, q, true, &ans);
    json_decref(q);
    free(path);
    path = NULL;
    if (v != SD_VERDICT_OK) {
        goto out;
    }
    const json_t *orders = json_object_get(ans, "orders");
    if (json_is_array(orders) && json_array_size(orders) > 0) {
        if (!order_result(res, json_array_get(orders, 0), true)) {
            v = reject(res, "S-360 findOrdersByExternalReference: an order without an orderId");
        }
        goto out;
    }
    json_decref(ans);
    ans = NULL;
    json_object_set_new(offer, "offer_id", json_string(offer_id));
    body = s360_order_body(offer, number, cc->cf->point_of_sales_id, item->idem_key);
    path = s360_order_path(cc->cf, "createOrUpdateOrder");
    v = rpc(cc, path, body, false, &ans);
    if (v != SD_VERDICT_OK) {
        goto out;
    }
    if (!order_result(res, json_object_get(ans, "orderUpdateData"), false)) {
        v = reject(res, "S-360 createOrUpdateOrder answered success without an orderId");
    }
out:
    json_decref(ans);
    json_decref(body);
    json_decref(offer);
    free(path);
    free(number);
    return v;
}

/* The offers action: {contact, source?, performance_id, seat_category_id,
 * audience_sub_category_id, quantity, order_type} checked and copied as the item's payload. */
static int offer_prepare(const void *conf, const json_t *body, json_t **ret_payload,
                         struct sd_issues *errors)
{
    (void)conf;
    static const char *const ints[] = {"performance_id", "seat_category_id",
                                       "audience_sub_category_id", "quantity", NULL};
    static const char *const known[] = {"contact",
                                        "source",
                                        "performance_id",
                                        "seat_category_id",
                                        "audience_sub_category_id",
                                        "quantity",
                                        "order_type",
                                        NULL};
    size_t before = errors->total;
    if (!json_is_object(body)) {
        sd_issues_add(errors, "", "must be a JSON object");
        return -EINVAL;
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v)
    {
        bool ok = false;
        for (size_t i = 0; known[i] && !ok; i++) {
            ok = strcmp(key, known[i]) == 0;
        }
        if (!ok) {
            sd_issues_add(errors, "", "unknown member '%.*s'", 64, key);
        }
    }
    const json_t *contact = json_object_get(body, "contact");
    if (!json_is_string(contact) || json_string_length(contact) == 0 ||
        json_string_length(contact) > 64) {
        sd_issues_add(errors, "/contact",
                      "required: the buyer's S-360 contact number (or, with source, the id of "
                      "a customer of that source), 1 to 64 characters");
    }
    const json_t *source = json_object_get(body, "source");
    if (source && (!json_is_string(source) || json_string_length(source) == 0 ||
                   json_string_length(source) > 64)) {
        sd_issues_add(errors, "/source", "must be a source label (1 to 64 characters)");
    }
    for (size_t i = 0; ints[i]; i++) {
        const json_t *n = json_object_get(body, ints[i]);
        bool qty = strcmp(ints[i], "quantity") == 0;
        if (!json_is_integer(n) || json_integer_value(n) < 1 ||
            (qty && json_integer_value(n) > 50)) {
            char ptr[40];
            snprintf(ptr, sizeof(ptr), "/%s", ints[i]);
            sd_issues_add(errors, ptr,
                          qty ? "required: an integer from 1 to 50"
                              : "required: a positive integer (S-360's id)");
        }
    }
    const char *type = json_string_value(json_object_get(body, "order_type"));
    if (!type || (strcmp(type, "SALE") != 0 && strcmp(type, "RESERVATION") != 0 &&
                  strcmp(type, "OPTION") != 0)) {
        sd_issues_add(errors, "/order_type", "required: SALE, RESERVATION or OPTION");
    }
    if (errors->total > before) {
        return -EINVAL;
    }
    *ret_payload = json_deep_copy(body);
    return 0;
}

const struct sd_connector_action s360_actions[] = {
    {"offers", S360_OP_CREATE_ORDER, S360_KIND_OFFER, offer_prepare},
    {NULL, NULL, NULL, NULL},
};

/* ---- deliver ------------------------------------------------------------------------------- */

enum sd_verdict s360_deliver(struct sd_connector_ctx *ctx, void *state,
                             const struct sd_outbox_item *item, struct sd_delivery_result *res)
{
    (void)state;
    const struct s360_conf *cf = ctx->conf;
    if (!cf || !cf->api_base || !*cf->api_base) {
        return reject(res, "the instance has no usable S-360 settings (api_base)");
    }
    bool save = strcmp(item->operation, S360_OP_SAVE_CONTACT) == 0;
    bool order = strcmp(item->operation, S360_OP_CREATE_ORDER) == 0;
    if (!save && !order) {
        return reject(res, "not an operation of the s360 connector");
    }
    if (!ctx->hub) {
        return reject(res, "no hub to read the subject from");
    }
    bool own_slot = false;
    struct token_slot *slot = token_for(cf, &own_slot);
    struct call_ctx cc = {.ctx = ctx, .cf = cf, .slot = slot, .res = res};
    enum sd_verdict v = save ? deliver_contact(&cc, item) : deliver_order(&cc, item);
    if (own_slot) {
        slot_free(slot);
    }
    return v;
}
