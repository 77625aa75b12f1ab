/* audience_push.c — target connector "audience_push": a segment's members POSTed to a CRM or
 * ad platform. Its instances are configured through the targets API and CLI (core/targets.h,
 * an alias over connector instances of this type, which also checks the URL against the egress
 * policy and keeps the secrets); the table below documents the same settings so that the
 * generic connector views show them with the secrets hidden. Each push is an outbox item
 * (operation "push_segment", subject the segment) queued by POST …/segments/{id}/push; core's
 * outbox leases it, and `deliver` here builds the body and performs the one request.
 *
 * The body is built at send time from the segment's current members, so a retry or a replay
 * applies the opt-outs, suppressions and erasures of that moment. The remote segment a create
 * made is the segment's remote reference (kind "segment"): the next push of it is an update.
 *
 * Nothing here logs a secret, a URL (it may carry tokens in its query) or personal data. */
#include "connectors/audience_push/audience_push.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "core/connector.h"
#include "core/outbox.h"
#include "core/segments.h"
#include "core/targets.h"
#include "http/client.h"

#define MEMBER_PAGE 1000

/* The settings, filled by core from the stored (checked) settings before each attempt. */
struct push_conf {
    const char *url, *app_key, *secure_token;
    const char *source; /* "": members go by e-mail only */
    const char *name;
    int64_t segments_per_hour, timeout_seconds;
};
#define AT(member) offsetof(struct push_conf, member)

static const struct sd_setting settings[] = {
    {"url", SD_SETTING_URL, NULL, 1, 2048,
     "https:// URL the segment is POSTed to (http:// only for a loopback address or localhost)",
     SD_CHOICES("https", "http"), AT(url)},
    {"app_key", SD_SETTING_SECRET, NULL, 1, 1024, "sent as X-App-Key", NULL, AT(app_key)},
    {"secure_token", SD_SETTING_SECRET, NULL, 1, 1024, "sent as X-Secure-Token", NULL,
     AT(secure_token)},
    {"segments_per_hour", SD_SETTING_INT, "50", 1, 10000,
     "pushes started per rolling hour (the outbox plans them)", NULL, AT(segments_per_hour)},
    {"timeout_seconds", SD_SETTING_INT, "30", 1, 300, "HTTP timeout per attempt", NULL,
     AT(timeout_seconds)},
    {"source", SD_SETTING_STRING, "\"\"", 0, 64,
     "the source whose customer ids the receiver understands (others go by e-mail only)", NULL,
     AT(source)},
    {"name", SD_SETTING_STRING, "\"\"", 0, 200, "a label", NULL, AT(name)},
    {NULL, 0, NULL, 0, 0, NULL, NULL, 0},
};

static const char *const operations[] = {SD_OUTBOX_OP_PUSH_SEGMENT, NULL};

enum sd_verdict sd_audience_push_judge(int transport_err, long status, bool has_segment_id,
                                       bool is_update)
{
    enum sd_verdict v = sd_http_classify(transport_err, status);
    if (v == SD_VERDICT_OK && !has_segment_id && !is_update) {
        return SD_VERDICT_REJECT; /* created, but which segment? */
    }
    return v;
}

/* ---- building the body ----------------------------------------------------------------------- */

static void put_json_string(struct sd_buf *b, const char *s)
{
    json_t *j = json_string(s);
    char *t = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    sd_buf_puts(b, t ? t : "\"\"");
    free(t);
    json_decref(j);
}

/* The request body: {"segment_name", "description", ["remote_segment_id",] "customers": [...]}
 * from the segment's members now. A member goes in once per customer id it has from the
 * target's source (with its e-mail if known), else by e-mail alone, else not at all (a member
 * without e-mail from a source the receiver does not know: counted in *ret_skipped).
 * Returns 0, -E2BIG (more than SD_PUSH_MAX_CUSTOMERS), -ESTALE (the lease was lost) or the
 * members' error. */
static int build_body(struct sd_connector_ctx *ctx, const struct sd_segment *seg,
                      const char *source, const char *remote_id, struct sd_buf *out,
                      int64_t *ret_customers, int64_t *ret_skipped)
{
    int64_t skipped = 0;
    sd_buf_puts(out, "{\"segment_name\":");
    put_json_string(out, seg->name ? seg->name : "");
    sd_buf_puts(out, ",\"description\":");
    put_json_string(out, seg->description ? seg->description : "");
    if (remote_id) {
        sd_buf_puts(out, ",\"remote_segment_id\":");
        put_json_string(out, remote_id);
    }
    sd_buf_puts(out, ",\"customers\":[");
    int64_t n = 0, after = 0;
    for (;;) {
        struct sd_member_page page = {0};
        int r = sd_segment_members(ctx->hub, seg, after, MEMBER_PAGE, &page);
        if (r < 0) {
            return r;
        }
        for (size_t i = 0; i < page.n; i++) {
            const struct sd_member *m = &page.v[i];
            const char *email = m->email && *m->email ? m->email : NULL;
            size_t by_id = 0;
            for (size_t k = 0; source && k < m->n_sources; k++) {
                const struct sd_member_source *ms = &m->sources[k];
                if (!ms->source || !ms->customer_id || strcmp(ms->source, source) != 0) {
                    continue;
                }
                sd_buf_puts(out, n ? ",{\"customer_id\":" : "{\"customer_id\":");
                put_json_string(out, ms->customer_id);
                if (email) {
                    sd_buf_puts(out, ",\"email\":");
                    put_json_string(out, email);
                }
                sd_buf_puts(out, "}");
                n++;
                by_id++;
            }
            if (by_id == 0 && email) {
                sd_buf_puts(out, n ? ",{\"email\":" : "{\"email\":");
                put_json_string(out, email);
                sd_buf_puts(out, "}");
                n++;
            } else if (by_id == 0) {
                skipped++;
            }
        }
        bool more = page.has_more && page.n > 0;
        after = page.next_after;
        sd_member_page_release(&page);
        if (n > SD_PUSH_MAX_CUSTOMERS) {
            return -E2BIG;
        }
        if (!more) {
            break;
        }
        /* A large segment: keep the claim's lease alive while its members are read. */
        int kr = sd_connector_lease_extend(ctx, SD_OUTBOX_CLAIM_LEASE_USEC / 2,
                                           SD_OUTBOX_CLAIM_LEASE_USEC);
        if (kr < 0) {
            return kr;
        }
    }
    sd_buf_puts(out, "]}");
    *ret_customers = n;
    *ret_skipped = skipped;
    return 0;
}

/* ---- one request ----------------------------------------------------------------------------- */

/* The answer's segment_id (string, or an integer turned into text), if any. */
static char *answer_segment_id(const char *body, size_t len)
{
    json_t *j = json_loadb(body ? body : "", len, 0, NULL);
    const json_t *v = json_object_get(j, "segment_id");
    char *out = NULL;
    if (json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) <= 512) {
        out = sd_strdup(json_string_value(v));
    } else if (json_is_integer(v)) {
        out = sd_asprintf("%lld", (long long)json_integer_value(v));
    }
    json_decref(j);
    return out;
}

/* POST the body; fills res (status, answer, error, ms, retry_after_usec) and *ret_segment_id
 * (from a 2xx answer). Returns the transport result (0: an answer arrived). */
static int send_once(const struct push_conf *ts, const char *idem_key,
                     const struct sd_buf *body, struct sd_delivery_result *res,
                     char **ret_segment_id)
{
    char *h_app = sd_asprintf("X-App-Key: %s", ts->app_key);
    char *h_tok = sd_asprintf("X-Secure-Token: %s", ts->secure_token);
    char *h_idem = sd_asprintf("Idempotency-Key: %s", idem_key);
    const char *headers[] = {"Content-Type: application/json",
                             "Accept: application/json",
                             h_app,
                             h_tok,
                             h_idem,
                             "Expect:",
                             NULL};
    struct sd_http_request rq = {
        .method = "POST",
        .url = ts->url,
        .headers = headers,
        .body = body->data,
        .body_len = body->len,
        .timeout_ms = ts->timeout_seconds * 1000,
        .connect_timeout_ms = ts->timeout_seconds * 1000 < 10000 ? ts->timeout_seconds * 1000 : 0,
        .max_body = SD_PUSH_MAX_ANSWER,
    };
    struct sd_http_response resp = {0};
    int64_t t0 = sd_mono_usec();
    int err = sd_http_fetch(&rq, &resp);
    res->ms = (sd_mono_usec() - t0) / 1000;
    res->status = err == 0 ? resp.status : 0;
    if (err < 0) {
        res->error = sd_strdup(err == -ETIMEDOUT ? "timed out"
                               : err == -EFBIG   ? "answer larger than 1 MiB"
                               : resp.error[0]   ? resp.error
                                                 : strerror(-err));
    } else {
        if (resp.body.len > 0) {
            res->answer = sd_strndup(resp.body.data, resp.body.len);
        }
        if (res->status >= 200 && res->status < 300) {
            *ret_segment_id = answer_segment_id(resp.body.data, resp.body.len);
        }
        int64_t ra = resp.retry_after
                         ? sd_http_retry_after(resp.retry_after, SD_OUTBOX_RETRY_AFTER_MAX_S)
                         : -1;
        res->retry_after_usec = ra > 0 ? ra * 1000000 : 0;
    }
    sd_http_response_release(&resp);
    explicit_bzero(h_app, strlen(h_app));
    explicit_bzero(h_tok, strlen(h_tok));
    free(h_app);
    free(h_tok);
    free(h_idem);
    return err;
}

/* v, with res->error = why (a copy). */
static enum sd_verdict fail(struct sd_delivery_result *res, enum sd_verdict v, const char *why)
{
    res->error = sd_strdup(why);
    return v;
}

static enum sd_verdict push_deliver(struct sd_connector_ctx *ctx, void *state,
                                    const struct sd_outbox_item *item,
                                    struct sd_delivery_result *res)
{
    (void)state;
    const struct push_conf *ts = ctx->conf;
    struct sd_segment *seg = NULL;
    struct sd_buf body = {0};
    char *remote = NULL, *segment_id = NULL;
    enum sd_verdict v = SD_VERDICT_REJECT;
    char why[256];
    if (strcmp(item->operation, SD_OUTBOX_OP_PUSH_SEGMENT) != 0) {
        return fail(res, SD_VERDICT_REJECT, "not an operation of the audience push");
    }
    if (!ts || !ts->url || !ts->app_key || !ts->secure_token) {
        snprintf(why, sizeof(why), "target '%s' has no usable settings", ctx->id);
        v = fail(res, SD_VERDICT_REJECT, why);
        goto out;
    }
    int r = sd_segment_load(ctx->hub, ctx->tenant_id, ctx->env, item->subject_id, &seg);
    if (r < 0) {
        snprintf(why, sizeof(why),
                 r == -ENOENT ? "segment '%s' no longer exists" : "cannot read segment '%s'",
                 item->subject_id);
        v = fail(res, r == -ENOENT ? SD_VERDICT_REJECT : SD_VERDICT_RETRY, why);
        goto out;
    }
    r = sd_connector_remote_ref_get(ctx, SD_OUTBOX_SUBJECT_SEGMENT, item->subject_id, &remote);
    if (r < 0 && r != -ENOENT) {
        v = fail(res, SD_VERDICT_RETRY, "cannot read the remote segment id");
        goto out;
    }
    int64_t customers = 0, skipped = 0;
    r = build_body(ctx, seg, *ts->source ? ts->source : NULL, remote, &body, &customers, &skipped);
    if (r == -ESTALE) {
        v = SD_VERDICT_RETRY; /* core sees the lost lease and records nothing */
        goto out;
    }
    if (r < 0) {
        if (r == -E2BIG) {
            snprintf(why, sizeof(why), "segment has more than %d customers to push",
                     SD_PUSH_MAX_CUSTOMERS);
        } else if (r == -EINVAL) {
            snprintf(why, sizeof(why), "the segment's stored rule is no longer valid");
        } else {
            snprintf(why, sizeof(why), "cannot compute the segment's members (%s)",
                     r == -ETIME ? "time limit" : "store error");
        }
        v = fail(res, r != -E2BIG && r != -EINVAL ? SD_VERDICT_RETRY : SD_VERDICT_REJECT, why);
        goto out;
    }
    res->facts = json_pack("{s:s, s:s, s:I, s:I}", "kind", remote ? "update" : "create",
                           "segment_name", seg->name ? seg->name : "", "customers",
                           (json_int_t)customers, "skipped_without_email", (json_int_t)skipped);
    if (remote) {
        json_object_set_new(res->facts, "remote_segment_id", json_string(remote));
    }
    /* The lease must outlast the request: the whole timeout plus a margin. */
    int64_t need = ts->timeout_seconds * 1000000 + SD_OUTBOX_LEASE_MARGIN_USEC;
    if (sd_connector_lease_extend(ctx, need, need) < 0) {
        v = SD_VERDICT_RETRY;
        goto out;
    }
    int err = send_once(ts, item->idem_key, &body, res, &segment_id);
    v = sd_audience_push_judge(err, res->status, segment_id != NULL, remote != NULL);
    if (v == SD_VERDICT_OK) {
        res->remote_ref = segment_id ? segment_id : remote;
        if (segment_id) {
            segment_id = NULL;
        } else {
            remote = NULL;
        }
        json_object_set_new(res->facts, "remote_segment_id", json_string(res->remote_ref));
    } else if (!res->error && res->status >= 200 && res->status < 300) {
        res->error = sd_strdup("the answer carries no segment_id");
    }
out:
    sd_buf_release(&body);
    free(remote);
    free(segment_id);
    sd_segment_free(seg);
    return v;
}

const struct sd_connector sd_connector_audience_push = {
    .name = SD_TARGET_TYPE_PUSH,
    .kind = SD_CONNECTOR_TARGET,
    .help = "pushes segments to a CRM or ad platform (configure with the targets API)",
    .settings = settings,
    .settings_size = sizeof(struct push_conf),
    .default_schedule = "manual",
    .operations = operations,
    .deliver = push_deliver,
    .segment_operation = SD_OUTBOX_OP_PUSH_SEGMENT,
};
