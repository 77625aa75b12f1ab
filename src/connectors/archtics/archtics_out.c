/* archtics_out.c — customers created or changed in stagedoor, written to Archtics through the
 * outbox.
 *
 * on_change (writer thread, no network): a customer stored through another origin becomes one
 * item "push_customer" whose payload is the customer as stored then, deduplicated while it waits
 * by a hash of that content. Customers of the instance's own source label are never queued,
 * whichever instance stored them: they came from Archtics (its pull, or a file extract imported
 * under the same label), so writing them back would echo Archtics to itself.
 *
 * deliver: the item's subject has no Archtics account yet (no remote reference) →
 * customer_add, or, for a customer without an e-mail (admitted from vendor sources), nothing:
 * delivered with the fact {"skipped": "no e-mail"} and no call. customer_add's result 0 or
 * 11408 (the e-mail exists: a hit) gives the acct_id, kept as the remote reference. With an
 * account → customer_query, the merge of archtics_out_update_params, customer_update: two
 * calls (an e-mail the customer lacks stays the account's). Core takes the first call from the
 * quota before deliver; the ATS client takes every further request (the second command, a 202
 * poll) as a write of the same delivery (sd_connector_quota_take_within), so an item never
 * makes a call the ledger did not count. A value wider than its Archtics field is never sent:
 * the item is refused before any request, naming the field and its width.
 *
 * A 202 (queued) is polled within the delivery: the item's lease is extended before each
 * command to outlast its whole polling cycle, so no other worker can take the item over while
 * it polls, and a hub that dies mid-poll leaves a lease that the next start ends; the item is
 * then sent again, which customer_add's e-mail dedupe (11408) and the full-overwrite update
 * make harmless. Delivery workers are not run threads: a poll is never saved in a state. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "connectors/archtics/archtics.h"
#include "connectors/archtics/archtics_out.h"
#include "core/outbox.h"

/* ---- the outbox: on_change and deliver ------------------------------------------------------ */

#define OP_PUSH "push_customer"
/* remote references: the account under the item's subject kind (core keeps it there), and the
 * hash of the fields Archtics was last sent */
#define REF_KIND "customer"
#define REF_SENT "customer_sent"
#define DELIVERY_MAX_WAIT_USEC (15 * 1000000LL)

const char *const archtics_operations[] = {OP_PUSH, NULL};

/* The label the instance's own records carry (its "source" setting, or the type's name). */
static const char *own_source(const struct sd_connector_ctx *ctx)
{
    if (ctx->source && *ctx->source) {
        return ctx->source;
    }
    const char *s = json_string_value(json_object_get(ctx->settings, "source"));
    return s && *s ? s : "archtics";
}

void archtics_on_change(const struct sd_connector_ctx *ctx, const struct sd_change *chg,
                        struct sd_outbox_adder *out)
{
    const struct archtics_conf *cf = ctx->conf;
    if (!cf || !cf->push_customers || chg->kind != SD_KIND_CUSTOMER || !chg->record) {
        return;
    }
    /* Archtics' own accounts, whichever instance or file import stored them: no echo */
    if (chg->source && strcmp(chg->source, own_source(ctx)) == 0) {
        return;
    }
    char *subject = sd_asprintf("%s:%s", chg->source ? chg->source : "", chg->id);
    json_t *payload = json_pack("{s:s, s:s, s:O}", "source", chg->source ? chg->source : "",
                                "customer_id", chg->id, "customer", chg->record);
    char *text = json_dumps(chg->record, JSON_COMPACT | JSON_SORT_KEYS);
    char hash[65];
    sd_sha256_hex(text ? text : "", text ? strlen(text) : 0, hash);
    char *dedupe = sd_asprintf("%s|%s", subject, hash);
    sd_outbox_add(out, OP_PUSH, "customer", subject, payload, dedupe);
    free(dedupe);
    free(text);
    json_decref(payload);
    free(subject);
}

/* What a call's status means for the item; 0 to go on (OK or, where allowed, HIT). */
static enum sd_verdict verdict_of(const struct ats_answer *a, const char *cmd,
                                  struct sd_delivery_result *res)
{
    res->status = a->http_status;
    switch (a->status) {
    case ATS_OK:
    case ATS_HIT: return SD_VERDICT_OK;
    case ATS_PAUSED: {
        int64_t now = sd_now_usec();
        res->retry_after_usec = a->paused_until_usec > now ? a->paused_until_usec - now : 1000000;
        res->error = sd_asprintf("%s: %s; waiting for the window", cmd, a->detail);
        return SD_VERDICT_WAIT;
    }
    case ATS_RETRY:
    case ATS_CANCELED:
    case ATS_TOO_LARGE:
        res->error = sd_asprintf("%s: %s", cmd, a->detail[0] ? a->detail : "try again later");
        return SD_VERDICT_RETRY;
    case ATS_AUTH:
    case ATS_SETUP:
        /* the key, DSN or URL is wrong: retried (with back-off) so a fixed setting delivers */
        res->error = sd_asprintf("%s: %s", cmd, a->detail);
        return SD_VERDICT_RETRY;
    case ATS_NOT_FOUND:
    case ATS_REJECTED:
    default:
        res->error =
            sd_asprintf("%s refused: result %lld: %s", cmd, (long long)a->result, a->detail);
        return SD_VERDICT_REJECT;
    }
}

/* One command within the item's lease: the lease is extended to outlast the whole call (its
 * polls and the client's resubmits of an expired poll). */
static int call_leased(struct sd_connector_ctx *ctx, struct ats_client *cl,
                       const struct ats_params *p, const char *cmd, const json_t *params,
                       struct ats_answer *a)
{
    int64_t need = 3 * (p->poll_timeout_ms + p->timeout_ms) * 1000 + SD_OUTBOX_LEASE_MARGIN_USEC;
    if (sd_connector_lease_extend(ctx, need, need) < 0) {
        return -ESTALE;
    }
    return ats_call(cl, cmd, params, a);
}

static void keep_answer(struct sd_delivery_result *res, const struct ats_answer *a)
{
    free(res->answer);
    res->answer = a->c1 ? json_dumps(a->c1, JSON_COMPACT) : NULL;
}

enum sd_verdict archtics_deliver(struct sd_connector_ctx *ctx, void *state,
                                 const struct sd_outbox_item *item, struct sd_delivery_result *res)
{
    (void)state;
    const struct archtics_conf *cf = ctx->conf;
    enum sd_verdict v = SD_VERDICT_REJECT;
    json_t *payload = NULL, *fields = NULL, *params = NULL;
    char *remote = NULL, *sent = NULL;
    char hash[65];
    struct ats_client *cl = NULL;
    struct ats_answer a = {0}, q = {0};
    char why[320] = "";
    int64_t t0 = sd_mono_usec();

    if (!cf || strcmp(item->operation, OP_PUSH) != 0 || !item->payload ||
        !(payload = json_loads(item->payload, 0, NULL))) {
        res->error = sd_strdup("not an archtics push_customer item with a payload");
        goto out;
    }
    if (archtics_out_fields(json_object_get(payload, "customer"), &fields, why, sizeof(why)) < 0) {
        res->error = sd_strdup(why); /* refused before any request: nothing was sent */
        goto out;
    }
    int r = sd_connector_remote_ref_get(ctx, REF_KIND, item->subject_id, &remote);
    if (r == 0) {
        r = sd_connector_remote_ref_get(ctx, REF_SENT, item->subject_id, &sent);
    }
    if (r < 0 && r != -ENOENT) {
        res->error = sd_strdup("cannot read the customer's Archtics account");
        v = SD_VERDICT_RETRY;
        goto out;
    }
    /* the fields Archtics was last sent for this customer: the same again needs no call (the
     * hub offers every stored customer, changed or not) */
    char *text = json_dumps(fields, JSON_COMPACT | JSON_SORT_KEYS);
    sd_sha256_hex(text ? text : "", text ? strlen(text) : 0, hash);
    free(text);
    if (remote && sent && strcmp(sent, hash) == 0) {
        v = SD_VERDICT_OK;
        res->facts = json_pack("{s:s, s:s}", "kind", "unchanged", "acct_id", remote);
        goto out;
    }
    const char *email = json_string_value(json_object_get(fields, "email"));
    if (!remote && (!email || !*email)) {
        /* Archtics finds an account by its e-mail and customer_add requires one: a customer
         * without it (admitted from a vendor source) and without an account is not written,
         * and no call is made. With an account, the update keeps the account's e-mail. */
        v = SD_VERDICT_OK;
        res->facts = json_pack("{s:s}", "skipped", "no e-mail");
        goto out;
    }
    struct ats_params p;
    archtics_ats_params(cf, &p);
    /* a delivery waits for the vendor's quota briefly at most, then gives its attempt back
     * (WAIT) instead of holding a delivery worker */
    if (p.max_wait_usec > DELIVERY_MAX_WAIT_USEC) {
        p.max_wait_usec = DELIVERY_MAX_WAIT_USEC;
    }
    cl = ats_client_new(ctx, &p);

    if (!remote) {
        /* a new account; an e-mail Archtics knows answers 11408 with its account: a hit */
        if (archtics_out_add_params(fields, &params, why, sizeof(why)) < 0) {
            res->error = sd_strdup(why);
            goto out;
        }
        if (call_leased(ctx, cl, &p, "customer_add", params, &a) < 0) {
            v = SD_VERDICT_RETRY;
            goto out;
        }
        keep_answer(res, &a);
        v = verdict_of(&a, "customer_add", res);
        int64_t acct = 0;
        if (v == SD_VERDICT_OK && ats_get_int(a.c1, "acct_id", &acct) < 0) {
            v = SD_VERDICT_REJECT;
            res->error = sd_strdup("customer_add answered without an acct_id");
        }
        if (v == SD_VERDICT_OK) {
            res->remote_ref = sd_asprintf("%lld", (long long)acct);
            res->facts = json_pack("{s:s, s:I}", "kind", a.status == ATS_HIT ? "hit" : "add",
                                   "acct_id", (json_int_t)acct);
            if (a.status == ATS_OK) {
                /* a hit's account keeps its own fields: the next change sends ours */
                (void)sd_connector_remote_ref_put(ctx, REF_SENT, item->subject_id, hash);
            }
        }
        goto out;
    }

    /* an account: customer_query → merge → full customer_update (two calls) */
    char *end = NULL;
    long long acct = strtoll(remote, &end, 10);
    if (end == remote || *end) {
        res->error = sd_asprintf("the stored Archtics account '%.40s' is not a number", remote);
        goto out;
    }
    json_t *qp = json_pack("{s:I, s:s}", "acct_id", (json_int_t)acct, "call_reason", "S");
    r = call_leased(ctx, cl, &p, "customer_query", qp, &q);
    json_decref(qp);
    if (r < 0) {
        v = SD_VERDICT_RETRY;
        goto out;
    }
    keep_answer(res, &q);
    if (q.status == ATS_NOT_FOUND) {
        res->status = q.http_status;
        res->error = sd_asprintf("Archtics account %lld no longer exists (deleted or merged on "
                                 "the Archtics side): not updated",
                                 acct);
        goto out;
    }
    if ((v = verdict_of(&q, "customer_query", res)) != SD_VERDICT_OK) {
        goto out;
    }
    const char *sid = json_string_value(json_object_get(payload, "customer_id"));
    if (cf->alt_id_type[0] && sid && archtics_char_count(sid) > ARCHTICS_ALT_ID_WIDTH) {
        v = SD_VERDICT_REJECT;
        res->error = sd_asprintf("alt_id (the customer id) is %zu characters long; Archtics "
                                 "holds at most %d: not sent",
                                 archtics_char_count(sid), ARCHTICS_ALT_ID_WIDTH);
        goto out;
    }
    params = archtics_out_update_params(q.c1, fields, acct, cf->alt_id_type, sid, why, sizeof(why));
    if (!params) {
        v = SD_VERDICT_RETRY;
        res->error = sd_asprintf("customer_query: %s", why);
        goto out;
    }
    if (call_leased(ctx, cl, &p, "customer_update", params, &a) < 0) {
        v = SD_VERDICT_RETRY;
        goto out;
    }
    keep_answer(res, &a);
    free(res->error);
    res->error = NULL;
    v = verdict_of(&a, "customer_update", res);
    if (v == SD_VERDICT_OK) {
        res->facts = json_pack("{s:s, s:I}", "kind", "update", "acct_id", (json_int_t)acct);
        (void)sd_connector_remote_ref_put(ctx, REF_SENT, item->subject_id, hash);
    }
out:
    res->ms = (sd_mono_usec() - t0) / 1000;
    ats_answer_release(&a);
    ats_answer_release(&q);
    ats_client_free(cl);
    free(sent);
    free(remote);
    json_decref(params);
    json_decref(fields);
    json_decref(payload);
    return v;
}
