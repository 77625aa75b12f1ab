/* tb_tags.c — a segment as a Tradable Bits fan tag, kept in step by a diff.
 *
 * A push of a segment to a tradablebits instance (POST …/segments/{id}/push, or the per-segment
 * schedule of the `segments` setting, which a pull run applies) is an outbox item of operation
 * "sync_tag" whose subject is the segment. Its deliver:
 *  1. reads the segment's members now (opt-outs, suppressions and erasures of this moment
 *     applied; the rule is computed once, into a member snapshot that the pages read) and maps
 *     each to a fan: a source record of this instance's own source label (a
 *     pulled fan: its customer_id is the fan_id), else the remote reference of kind "customer"
 *     of any of its source records ("<source>:<customer_id>" → fan id, set by the fan push).
 * Profiles link records by e-mail, so a member known to the hub under another system's record still
 *     finds the fan with the same address. A member with no fan is counted (no_fan), never
 *     created here: the fan push does that when the instance pushes fans.
 *  2. reads the fans the tag was last given: remote references of kind "tag_member:<segment>"
 *     (local id = fan id, remote id = tag id), and takes the difference (tb_tags_diff).
 *  3. makes sure the tag exists: the segment's remote reference (kind "segment") is its tag_id;
 *     without one, tag_create named tag_prefix + the segment id ("duplicate" names the tag that
 *     exists: a hit) and the reference is stored at once.
 *  4. removes the fans that left, then adds the new ones, in calls of at most
 *     TB_TAG_BATCH_MAX fan ids. Each answered call moves the stored set in one transaction
 *     (sd_connector_remote_ref_apply), so a sync cut short by a 429 (WAIT: the outbox waits for
 *     Retry-After and runs the item again), an error or a crash resumes from exactly where the
 *     tag stands, and the calls are idempotent anyway (adding a tagged fan is "unchanged",
 *     removing an untagged one "not_member").
 * The item's facts (shown on the delivery) say members, fans, no_fan, added, removed, unchanged
 * and failed; added and removed add up over the attempts of one item. A dry run (payload
 * {"dry_run": true}) stops after step 2 and reports the same figures without a single call.
 *
 * Tagging moves a fan's last update on the vendor's side, so the fans the sync touched come
 * back through the updated-fans feed; they are stored unchanged (the tag list is not part of a
 * fan's record) and carry this instance as their origin, so nothing is echoed back.
 *
 * Nothing here logs a secret, a URL or personal data: log lines name the item, the segment and
 * the tag by id, and counts. */
#include "connectors/tradablebits/tb_tags.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/utf8.h"
#include "connectors/tradablebits/tradablebits.h"
#include "core/outbox.h"
#include "core/schedule.h"
#include "core/segments.h"
#include "http/client.h"
#include "http/verdict.h"

#define MEMBER_PAGE 1000
#define SYNCED_PAGE 10000
#define TB_TAG_MEMBERS_MAX 2000000 /* fans one tag sync holds in memory */
#define SEGMENT_ID_MAX 64

/* ---- the diff (pure) --------------------------------------------------------------------------
 */

bool tb_tags_is_fan_id(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 18 || s[0] == '0') {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
    }
    return true;
}

/* Numeric order for decimal ids (shorter is smaller), byte order among equal lengths; a total
 * order for any strings. */
static int cmp_id(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    size_t lx = strlen(x), ly = strlen(y);
    if (lx != ly) {
        return lx < ly ? -1 : 1;
    }
    return strcmp(x, y);
}

/* A sorted copy of v without duplicates; *ret_n its length. */
static const char **sorted_unique(const char *const *v, size_t n, size_t *ret_n)
{
    if (n == 0) {
        *ret_n = 0;
        return NULL;
    }
    const char **s = sd_calloc(n, sizeof(*s));
    memcpy(s, v, n * sizeof(*s));
    qsort(s, n, sizeof(*s), cmp_id);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (k == 0 || cmp_id(&s[k - 1], &s[i]) != 0) {
            s[k++] = s[i];
        }
    }
    *ret_n = k;
    return s;
}

void tb_tags_diff(const char *const *want, size_t n_want, const char *const *have, size_t n_have,
                  struct tb_tag_diff *ret)
{
    *ret = (struct tb_tag_diff){0};
    size_t nw = 0, nh = 0;
    const char **w = sorted_unique(want, n_want, &nw);
    const char **h = sorted_unique(have, n_have, &nh);
    ret->n_want = nw;
    if (nw) {
        ret->add = sd_calloc(nw, sizeof(*ret->add));
    }
    if (nh) {
        ret->del = sd_calloc(nh, sizeof(*ret->del));
    }
    size_t i = 0, j = 0;
    while (i < nw || j < nh) {
        int c = i == nw ? 1 : j == nh ? -1 : cmp_id(&w[i], &h[j]);
        if (c < 0) {
            ret->add[ret->n_add++] = w[i++];
        } else if (c > 0) {
            ret->del[ret->n_del++] = h[j++];
        } else {
            ret->n_same++;
            i++;
            j++;
        }
    }
    if (ret->n_add == 0) {
        free(ret->add);
        ret->add = NULL;
    }
    if (ret->n_del == 0) {
        free(ret->del);
        ret->del = NULL;
    }
    free(w);
    free(h);
}

void tb_tag_diff_release(struct tb_tag_diff *d)
{
    if (!d) {
        return;
    }
    free(d->add);
    free(d->del);
    *d = (struct tb_tag_diff){0};
}

/* ---- the answers (pure) -----------------------------------------------------------------------
 */

/* A JSON id (a positive integer or a string of digits) as a heap string, or NULL. */
static char *id_text(const json_t *v)
{
    char buf[32];
    if (json_is_integer(v) && json_integer_value(v) > 0) {
        snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        /* the same shape as an id sent as text: at most 18 digits */
        return tb_tags_is_fan_id(buf) ? sd_strdup(buf) : NULL;
    }
    if (json_is_string(v) && tb_tags_is_fan_id(json_string_value(v))) {
        return sd_strdup(json_string_value(v));
    }
    return NULL;
}

/* The answer as a JSON object whose meta.status is not "error", or NULL with why. */
static json_t *load_answer(const char *body, size_t len, char *why, size_t why_size)
{
    json_t *doc = json_loadb(body ? body : "", body ? len : 0, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(doc)) {
        json_decref(doc);
        snprintf(why, why_size, "the answer is not a JSON object");
        return NULL;
    }
    const char *st = json_string_value(json_object_get(json_object_get(doc, "meta"), "status"));
    if (st && strcmp(st, "error") == 0) {
        json_decref(doc);
        snprintf(why, why_size, "the answer says meta.status \"error\"");
        return NULL;
    }
    return doc;
}

int tb_tags_parse_create(const char *body, size_t len, char **ret_tag_id, bool *ret_duplicate,
                         char *why, size_t why_size)
{
    json_t *doc = load_answer(body, len, why, why_size);
    if (!doc) {
        return -EPROTO;
    }
    int r = -EPROTO;
    const json_t *data = json_object_get(doc, "data");
    const char *status = json_string_value(json_object_get(data, "status"));
    char *tag = id_text(json_object_get(data, "tag_id"));
    if (!json_is_object(data) || !status ||
        (strcmp(status, "success") != 0 && strcmp(status, "duplicate") != 0)) {
        snprintf(why, why_size, "the tag_create answer has no data.status success or duplicate");
    } else if (!tag) {
        snprintf(why, why_size, "the tag_create answer has no usable data.tag_id");
    } else {
        *ret_duplicate = strcmp(status, "duplicate") == 0;
        *ret_tag_id = tag;
        tag = NULL;
        r = 0;
    }
    free(tag);
    json_decref(doc);
    return r;
}

int tb_tags_parse_batch(const char *body, size_t len, const char *const *sent, size_t n_sent,
                        char ***ret_failed, size_t *ret_n_failed, char *why, size_t why_size)
{
    json_t *doc = load_answer(body, len, why, why_size);
    if (!doc) {
        return -EPROTO;
    }
    const json_t *data = json_object_get(doc, "data");
    const json_t *errs = json_object_get(data, "errors");
    if (!json_is_object(data) || (errs && !json_is_array(errs))) {
        json_decref(doc);
        snprintf(why, why_size, "the answer has no data object with an errors list");
        return -EPROTO;
    }
    char **failed = NULL;
    size_t n = 0;
    size_t i;
    const json_t *e;
    json_array_foreach(errs, i, e)
    {
        char *fid = id_text(json_object_get(e, "fan_id"));
        bool known = false;
        for (size_t k = 0; fid && k < n_sent && !known; k++) {
            known = strcmp(sent[k], fid) == 0;
        }
        for (size_t k = 0; known && k < n; k++) {
            known = strcmp(failed[k], fid) != 0; /* each id once */
        }
        if (known && n < n_sent) {
            if (!failed) {
                failed = sd_calloc(n_sent, sizeof(*failed));
            }
            failed[n++] = fid;
            fid = NULL;
        }
        free(fid);
    }
    json_decref(doc);
    *ret_failed = failed;
    *ret_n_failed = n;
    return 0;
}

/* ---- a growing list of heap strings -----------------------------------------------------------
 */

struct strv {
    char **v;
    size_t n, cap;
};

static void strv_push(struct strv *s, char *x)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 256;
        s->v = sd_realloc(s->v, s->cap * sizeof(*s->v));
    }
    s->v[s->n++] = x;
}

static void strv_release(struct strv *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->v[i]);
    }
    free(s->v);
    *s = (struct strv){0};
}

/* ---- one sync ---------------------------------------------------------------------------------
 */

struct sync {
    struct sd_connector_ctx *ctx;
    const struct tb_conf *c;
    const struct sd_outbox_item *item;
    struct sd_delivery_result *res;
    char kind[16 + SEGMENT_ID_MAX]; /* "tag_member:<segment>" */
    char *h_key, *h_secret;
    char *tag_id;
    char tag_name[64 + 1];
    bool tag_created;
    int64_t calls;
    int64_t added, removed, failed; /* in this attempt */
};

/* The fans of the segment's members now: want (heap strings, one per member with a fan), the
 * number of members and of those without a fan. -ENOENT: no such segment. The first page
 * computes the rule once and freezes its members in a snapshot (which also becomes the
 * segment's member_count); every later page reads that snapshot by profile id. */
static int member_fans(struct sync *s, struct strv *want, int64_t *ret_members, int64_t *ret_no_fan)
{
    struct sd_connector_ctx *ctx = s->ctx;
    const char *mine = json_string_value(json_object_get(ctx->settings, "source"));
    if (!mine) {
        mine = "tradablebits";
    }
    struct sd_segment *seg = NULL;
    int r = sd_segment_load(ctx->hub, ctx->tenant_id, ctx->env, s->item->subject_id, &seg);
    int64_t members = 0, no_fan = 0, after = 0, snapshot = 0;
    bool more = r == 0;
    while (more) {
        /* A large segment takes a while: keep the item ours meanwhile. */
        if (sd_connector_lease_extend(ctx, 60 * 1000000LL, 2 * 60 * 1000000LL) == -ESTALE) {
            r = -ESTALE;
            break;
        }
        struct sd_member_page page = {0};
        r = sd_segment_members_snapshot(ctx->hub, seg, snapshot, after, MEMBER_PAGE, NULL, &page);
        if (r == -ESTALE) {
            r = -EAGAIN; /* the snapshot expired mid-read: the next attempt makes a new one */
        }
        if (r < 0) {
            break;
        }
        snapshot = page.snapshot_id;
        for (size_t i = 0; i < page.n && r == 0; i++) {
            const struct sd_member *m = &page.v[i];
            char *fan = NULL;
            for (size_t k = 0; k < m->n_sources && !fan; k++) {
                if (strcmp(m->sources[k].source, mine) == 0 &&
                    tb_tags_is_fan_id(m->sources[k].customer_id)) {
                    fan = sd_strdup(m->sources[k].customer_id);
                }
            }
            for (size_t k = 0; k < m->n_sources && !fan; k++) {
                char *local = sd_asprintf("%s:%s", m->sources[k].source, m->sources[k].customer_id);
                char *remote = NULL;
                /* the fan push keeps a customer's fan id under the customer's subject */
                int g = sd_connector_remote_ref_get(ctx, "customer", local, &remote);
                free(local);
                if (g == 0 && tb_tags_is_fan_id(remote)) {
                    fan = remote;
                    remote = NULL;
                } else if (g < 0 && g != -ENOENT) {
                    r = g;
                }
                free(remote);
            }
            members++;
            if (fan) {
                strv_push(want, fan);
            } else {
                no_fan++;
            }
        }
        more = r == 0 && page.has_more;
        after = page.next_after;
        sd_member_page_release(&page);
        if (want->n > TB_TAG_MEMBERS_MAX) {
            r = -E2BIG;
        }
    }
    sd_segment_free(seg);
    *ret_members = members;
    *ret_no_fan = no_fan;
    return r;
}

/* The fans the tag was last given. */
static int synced_fans(struct sync *s, struct strv *have)
{
    char *after = NULL;
    int r = 0;
    for (;;) {
        char **loc = NULL, **rem = NULL;
        size_t n = 0;
        r = sd_connector_remote_ref_list(s->ctx, s->kind, after, SYNCED_PAGE, &loc, &rem, &n);
        if (r < 0) {
            break;
        }
        for (size_t i = 0; i < n; i++) {
            strv_push(have, loc[i]);
            free(rem[i]);
        }
        free(after);
        after = n ? sd_strdup(loc[n - 1]) : NULL;
        free(loc);
        free(rem);
        if (n < SYNCED_PAGE || have->n > TB_TAG_MEMBERS_MAX) {
            r = have->n > TB_TAG_MEMBERS_MAX ? -E2BIG : 0;
            break;
        }
    }
    free(after);
    return r;
}

/* path with "{tag_id}" replaced by the tag (digits only: nothing to escape). Heap string. */
static char *tag_path(const char *path, const char *tag_id)
{
    const char *at = strstr(path, "{tag_id}");
    if (!at) {
        return sd_strdup(path);
    }
    return sd_asprintf("%.*s%s%s", (int)(at - path), path, tag_id, at + strlen("{tag_id}"));
}

/* One POST of a form; fills the result's status, answer and error. The verdict of the
 * exchange (OK only for a 2xx); on OK *ret_body holds the answer (heap). */
static enum sd_verdict post(struct sync *s, const char *what, const char *path,
                            const struct sd_http_form *form, char **ret_body, size_t *ret_len)
{
    struct sd_connector_ctx *ctx = s->ctx;
    struct sd_delivery_result *res = s->res;
    int64_t timeout_usec = s->c->timeout_seconds * 1000000;
    /* Every call is taken before it is made: the first spends the call core took for the
     * attempt (ctx->prepaid_calls), the others are writes of their own. */
    {
        int q = sd_connector_quota_take(ctx, 1);
        if (q < 0 && q != -E2BIG) {
            free(res->error);
            res->error = sd_asprintf("%s: the call quota could not be taken (%s)", what,
                                     q == -ECANCELED ? "stopped" : "ledger error");
            return SD_VERDICT_RETRY;
        }
    }
    if (sd_connector_lease_extend(ctx, timeout_usec + SD_OUTBOX_LEASE_MARGIN_USEC,
                                  timeout_usec + 2 * SD_OUTBOX_LEASE_MARGIN_USEC) < 0) {
        free(res->error);
        res->error = sd_asprintf("%s: the item's lease could not be kept", what);
        return SD_VERDICT_RETRY;
    }
    char *url = tb_build_url(s->c, path, (const char *const[]){NULL});
    const char *headers[] = {"Accept: application/json", s->h_key, s->h_secret, NULL};
    struct sd_http_request rq = {.method = "POST",
                                 .url = url,
                                 .headers = headers,
                                 .form = form,
                                 .timeout_ms = s->c->timeout_seconds * 1000,
                                 .max_body = 8 << 20};
    struct sd_http_response resp;
    int64_t t0 = sd_mono_usec();
    int e = sd_http_fetch(&rq, &resp);
    res->ms += (sd_mono_usec() - t0) / 1000;
    s->calls++;
    free(url);
    enum sd_verdict v = sd_http_classify(e, e == 0 ? resp.status : 0);
    res->status = e == 0 ? resp.status : 0;
    free(res->answer);
    res->answer = e == 0 && resp.body.data ? sd_strndup(resp.body.data, resp.body.len) : NULL;
    free(res->error);
    res->error = NULL;
    if (e < 0) {
        res->error = sd_asprintf("%s: %s", what, resp.error[0] ? resp.error : strerror(-e));
    } else if (v != SD_VERDICT_OK) {
        res->error = sd_asprintf("%s: HTTP %ld", what, resp.status);
    }
    if (v == SD_VERDICT_WAIT || v == SD_VERDICT_RETRY) {
        int64_t ra =
            e == 0 ? sd_http_retry_after(resp.retry_after, SD_OUTBOX_RETRY_AFTER_MAX_S) : -1;
        res->retry_after_usec = ra >= 0 ? (ra > 0 ? ra : 1) * 1000000 : 0;
    }
    if (v == SD_VERDICT_OK) {
        *ret_len = resp.body.len;
        *ret_body = sd_strndup(resp.body.data ? resp.body.data : "", resp.body.len);
    }
    sd_http_response_release(&resp);
    return v;
}

/* The tag of the segment: its remote reference, or tag_create (the reference stored at once). */
static enum sd_verdict ensure_tag(struct sync *s)
{
    struct sd_connector_ctx *ctx = s->ctx;
    int r = sd_connector_remote_ref_get(ctx, SD_OUTBOX_SUBJECT_SEGMENT, s->item->subject_id,
                                        &s->tag_id);
    if (r == 0 && tb_tags_is_fan_id(s->tag_id)) {
        return SD_VERDICT_OK;
    }
    free(s->tag_id);
    s->tag_id = NULL;
    if (r < 0 && r != -ENOENT) {
        s->res->error = sd_asprintf("the tag reference could not be read (%s)", strerror(-r));
        return SD_VERDICT_RETRY;
    }
    struct sd_http_form *form = sd_http_form_new();
    sd_http_form_add(form, "tag_name", s->tag_name);
    char *body = NULL;
    size_t len = 0;
    enum sd_verdict v = post(s, "tag_create", s->c->tags_path, form, &body, &len);
    sd_http_form_free(form);
    if (v != SD_VERDICT_OK) {
        return v;
    }
    char why[160];
    bool dup = false;
    r = tb_tags_parse_create(body, len, &s->tag_id, &dup, why, sizeof(why));
    free(body);
    if (r < 0) {
        s->res->error = sd_asprintf("tag_create: %s", why);
        return SD_VERDICT_RETRY;
    }
    s->tag_created = !dup;
    r = sd_connector_remote_ref_put(ctx, SD_OUTBOX_SUBJECT_SEGMENT, s->item->subject_id, s->tag_id);
    if (r < 0) {
        s->res->error = sd_asprintf("the tag reference could not be stored (%s)", strerror(-r));
        return SD_VERDICT_RETRY;
    }
    sd_log(SD_LOG_INFO, "tag for a segment ready", "[tradablebits/%s] segment=%s tag=%s %s",
           ctx->id, s->item->subject_id, s->tag_id, dup ? "existing" : "created");
    return SD_VERDICT_OK;
}

/* The tag is gone on the vendor's side (a 404 to an add or remove): forget it and every fan it
 * was given, so the next attempt creates it again and gives it all the members. */
static int forget_tag(struct sync *s)
{
    const char *seg = s->item->subject_id;
    int r =
        sd_connector_remote_ref_apply(s->ctx, SD_OUTBOX_SUBJECT_SEGMENT, NULL, NULL, 0, &seg, 1);
    for (int guard = 0; r == 0 && guard < TB_TAG_MEMBERS_MAX / SYNCED_PAGE + 2; guard++) {
        char **loc = NULL, **rem = NULL;
        size_t n = 0;
        r = sd_connector_remote_ref_list(s->ctx, s->kind, NULL, SYNCED_PAGE, &loc, &rem, &n);
        if (r == 0 && n > 0) {
            r = sd_connector_remote_ref_apply(s->ctx, s->kind, NULL, NULL, 0,
                                              (const char *const *)loc, n);
        }
        for (size_t i = 0; i < n; i++) {
            free(loc[i]);
            free(rem[i]);
        }
        free(loc);
        free(rem);
        if (n == 0) {
            break;
        }
    }
    return r;
}

/* Send ids[0..n) to the tag (add) or take them off (remove), in batches; each answered batch
 * moves the stored set. */
static enum sd_verdict send_batches(struct sync *s, bool add, const char *const *ids, size_t n)
{
    const char *what = add ? "tag_add" : "tag_remove";
    char *path = tag_path(add ? s->c->tag_add_path : s->c->tag_remove_path, s->tag_id);
    enum sd_verdict v = SD_VERDICT_OK;
    for (size_t at = 0; at < n && v == SD_VERDICT_OK; at += TB_TAG_BATCH_MAX) {
        if (s->ctx->stop && *s->ctx->stop) {
            s->res->error = sd_strdup("the hub is stopping");
            v = SD_VERDICT_RETRY;
            break;
        }
        size_t k = n - at < TB_TAG_BATCH_MAX ? n - at : TB_TAG_BATCH_MAX;
        struct sd_http_form *form = sd_http_form_new();
        for (size_t i = 0; i < k; i++) {
            sd_http_form_add(form, "fan_id", ids[at + i]);
        }
        char *body = NULL;
        size_t len = 0;
        v = post(s, what, path, form, &body, &len);
        sd_http_form_free(form);
        if (v == SD_VERDICT_REJECT && s->res->status == 404) {
            int r = forget_tag(s);
            free(s->res->error);
            s->res->error =
                sd_asprintf("%s: tag %s no longer exists on Tradable Bits; %s", what, s->tag_id,
                            r == 0 ? "the next attempt creates it again with every member"
                                   : "it could not be forgotten here (store error)");
            sd_log(SD_LOG_WARN, "tag gone on the vendor's side, created again at the next attempt",
                   "[tradablebits/%s] segment=%s tag=%s", s->ctx->id, s->item->subject_id,
                   s->tag_id);
            v = SD_VERDICT_RETRY;
        }
        if (v != SD_VERDICT_OK) {
            break;
        }
        char **failed = NULL;
        size_t n_failed = 0;
        char why[160];
        int r = tb_tags_parse_batch(body, len, ids + at, k, &failed, &n_failed, why, sizeof(why));
        free(body);
        if (r < 0) {
            s->res->error = sd_asprintf("%s: %s", what, why);
            v = SD_VERDICT_RETRY;
            break;
        }
        /* A removal leaves the fan off the tag whatever the answer says of it (removed, not a
         * member, unknown fan); an addition that failed stays out of the set, so the next sync
         * tries it again. */
        const char **put = NULL, **tags = NULL;
        size_t n_put = 0;
        if (add) {
            put = sd_calloc(k, sizeof(*put));
            tags = sd_calloc(k, sizeof(*tags));
            for (size_t i = 0; i < k; i++) {
                bool bad = false;
                for (size_t f = 0; f < n_failed && !bad; f++) {
                    bad = strcmp(failed[f], ids[at + i]) == 0;
                }
                if (!bad) {
                    tags[n_put] = s->tag_id;
                    put[n_put++] = ids[at + i];
                }
            }
            r = sd_connector_remote_ref_apply(s->ctx, s->kind, put, tags, n_put, NULL, 0);
        } else {
            r = sd_connector_remote_ref_apply(s->ctx, s->kind, NULL, NULL, 0, ids + at, k);
        }
        free(put);
        free(tags);
        for (size_t f = 0; f < n_failed; f++) {
            free(failed[f]);
        }
        free(failed);
        if (r < 0) {
            s->res->error = sd_asprintf("%s: the remote's answer could not be recorded (%s)", what,
                                        strerror(-r));
            v = SD_VERDICT_RETRY;
            break;
        }
        if (add) {
            s->added += (int64_t)n_put;
            s->failed += (int64_t)n_failed;
        } else {
            s->removed += (int64_t)k;
        }
    }
    free(path);
    return v;
}

static int64_t fact_int(const json_t *facts, const char *key)
{
    const json_t *v = json_object_get(facts, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

enum sd_verdict tb_tags_deliver(struct sd_connector_ctx *ctx, const struct sd_outbox_item *item,
                                struct sd_delivery_result *res)
{
    struct sync s = {.ctx = ctx, .c = ctx->conf, .item = item, .res = res};
    struct strv want = {0}, have = {0};
    struct tb_tag_diff diff = {0};
    enum sd_verdict v = SD_VERDICT_OK;
    json_t *payload = item->payload ? json_loads(item->payload, 0, NULL) : NULL;
    bool dry = json_is_true(json_object_get(payload, "dry_run"));
    json_decref(payload);
    /* What earlier attempts of this item did (they moved the stored set already). */
    json_t *doc = item->doc ? json_loads(item->doc, 0, NULL) : NULL;
    const json_t *prev = json_object_get(doc, "facts");
    int64_t prev_added = dry ? 0 : fact_int(prev, "added");
    int64_t prev_removed = dry ? 0 : fact_int(prev, "removed");
    int64_t prev_calls = dry ? 0 : fact_int(prev, "calls");
    json_decref(doc);

    if (!item->subject_id || strlen(item->subject_id) > SEGMENT_ID_MAX) {
        res->error = sd_strdup("the item names no segment");
        return SD_VERDICT_REJECT;
    }
    snprintf(s.kind, sizeof(s.kind), "tag_member:%s", item->subject_id);
    sd_utf8_snprintf(s.tag_name, sizeof(s.tag_name), "%s%s", s.c->tag_prefix, item->subject_id);

    int64_t members = 0, no_fan = 0;
    int r = member_fans(&s, &want, &members, &no_fan);
    if (r == 0) {
        r = synced_fans(&s, &have);
    }
    if (r < 0) {
        res->error =
            r == -ENOENT ? sd_asprintf("segment '%s' no longer exists", item->subject_id)
            : r == -E2BIG
                ? sd_asprintf("more than %d fans: too many for one tag sync", TB_TAG_MEMBERS_MAX)
                : sd_asprintf("the members could not be read (%s)", strerror(-r));
        v = r == -ENOENT || r == -E2BIG || r == -EINVAL ? SD_VERDICT_REJECT : SD_VERDICT_RETRY;
        goto out;
    }
    tb_tags_diff((const char *const *)want.v, want.n, (const char *const *)have.v, have.n, &diff);

    if (dry) {
        char *known = NULL;
        if (sd_connector_remote_ref_get(ctx, SD_OUTBOX_SUBJECT_SEGMENT, item->subject_id, &known) ==
            0) {
            s.tag_id = known;
        }
        goto facts;
    }
    if (sd_http_header("Api-Key", s.c->api_key, &s.h_key) < 0 ||
        sd_http_header("Api-Secret", s.c->api_secret, &s.h_secret) < 0) {
        res->error = sd_strdup("api_key or api_secret cannot be sent as a header");
        v = SD_VERDICT_REJECT;
        goto out;
    }
    v = ensure_tag(&s);
    if (v == SD_VERDICT_OK) {
        v = send_batches(&s, false, diff.del, diff.n_del);
    }
    if (v == SD_VERDICT_OK) {
        v = send_batches(&s, true, diff.add, diff.n_add);
    }
    if (v == SD_VERDICT_OK) {
        free(res->remote_ref);
        res->remote_ref = sd_strdup(s.tag_id);
    }

facts:;
    /* dry: what a sync would do now; otherwise what this item did, over its attempts. */
    int64_t same = (int64_t)diff.n_same - prev_added;
    json_t *f = json_pack(
        "{s:b, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b}", "dry_run", dry, "tag_name",
        s.tag_name, "members", (json_int_t)members, "fans", (json_int_t)diff.n_want, "no_fan",
        (json_int_t)no_fan, "added", (json_int_t)(dry ? (int64_t)diff.n_add : prev_added + s.added),
        "removed", (json_int_t)(dry ? (int64_t)diff.n_del : prev_removed + s.removed), "unchanged",
        (json_int_t)(same > 0 ? same : 0), "failed", (json_int_t)s.failed, "calls",
        (json_int_t)(prev_calls + s.calls), "complete", v == SD_VERDICT_OK);
    json_object_set_new(f, "tag_id", s.tag_id ? json_string(s.tag_id) : json_null());
    if (s.tag_created) {
        json_object_set_new(f, "tag_created", json_true());
    }
    json_decref(res->facts);
    res->facts = f;
    sd_log(SD_LOG_INFO, dry ? "tag sync computed (dry run)" : "tag sync attempt done",
           "[tradablebits/%s] delivery=%s segment=%s verdict=%s members=%lld fans=%lld "
           "to_add=%zu to_remove=%zu added=%lld removed=%lld calls=%lld",
           ctx->id, item->id, item->subject_id, sd_verdict_name(v), (long long)members,
           (long long)diff.n_want, diff.n_add, diff.n_del, (long long)s.added, (long long)s.removed,
           (long long)s.calls);
out:
    tb_tag_diff_release(&diff);
    strv_release(&want);
    strv_release(&have);
    sd_http_header_free(s.h_key);
    sd_http_header_free(s.h_secret);
    free(s.tag_id);
    return v;
}

/* ---- the segments setting and its schedule ----------------------------------------------------
 */

/* Calls fn for each entry of the setting: its segment id and schedule ("" when none), both
 * trimmed copies; stops at the first nonzero return. */
typedef int (*entry_fn)(void *arg, const char *segment_id, const char *schedule, size_t index);

static int each_entry(const char *list, entry_fn fn, void *arg)
{
    size_t index = 0;
    const char *p = list ? list : "";
    while (*p) {
        const char *end = strchr(p, ';');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        while (n > 0 && (*p == ' ' || *p == '\t')) {
            p++;
            n--;
        }
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t')) {
            n--;
        }
        if (n > 0) {
            char *entry = sd_strndup(p, n);
            char *at = strchr(entry, '@');
            const char *sched = "";
            if (at) {
                *at = '\0';
                sched = at + 1;
                size_t k = strlen(entry);
                while (k > 0 && (entry[k - 1] == ' ' || entry[k - 1] == '\t')) {
                    entry[--k] = '\0';
                }
                while (*sched == ' ' || *sched == '\t') {
                    sched++;
                }
            }
            int r = fn(arg, entry, sched, index++);
            free(entry);
            if (r != 0) {
                return r;
            }
        }
        if (!end) {
            break;
        }
        p = end + 1;
    }
    return 0;
}

static bool segment_id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > SEGMENT_ID_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-')) {
            return false;
        }
    }
    return true;
}

struct check_arg {
    struct sd_issues *errors;
    struct strv seen;
};

static int check_entry(void *arg, const char *segment_id, const char *schedule, size_t index)
{
    struct check_arg *a = arg;
    if (!segment_id_ok(segment_id)) {
        sd_issues_add(a->errors, "/settings/segments",
                      "entry %zu: '%.64s' is not a segment id (letters, digits, _ and -)",
                      index + 1, segment_id);
        return 0;
    }
    for (size_t i = 0; i < a->seen.n; i++) {
        if (strcmp(a->seen.v[i], segment_id) == 0) {
            sd_issues_add(a->errors, "/settings/segments",
                          "entry %zu: segment '%s' is listed twice", index + 1, segment_id);
            return 0;
        }
    }
    strv_push(&a->seen, sd_strdup(segment_id));
    struct sd_schedule sc;
    const char *why = NULL;
    if (*schedule && sd_schedule_parse(schedule, &sc, &why) < 0) {
        sd_issues_add(a->errors, "/settings/segments", "entry %zu: schedule '%.100s': %s",
                      index + 1, schedule, why ? why : "not a schedule");
    }
    return 0;
}

void tb_tags_check(const struct tb_conf *c, struct sd_issues *errors)
{
    struct check_arg a = {.errors = errors};
    each_entry(c->segments, check_entry, &a);
    strv_release(&a.seen);
}

struct schedule_arg {
    struct sd_connector_ctx *ctx;
    json_t *last; /* {segment_id: last scheduled sync (µs)} in the saved state */
    int64_t now;
    int queued;
    int err;
};

static int schedule_entry(void *arg, const char *segment_id, const char *schedule, size_t index)
{
    (void)index;
    struct schedule_arg *a = arg;
    struct sd_schedule sc;
    const char *why = NULL;
    if (!*schedule || !segment_id_ok(segment_id) || sd_schedule_parse(schedule, &sc, &why) < 0) {
        return 0; /* on demand only (or refused when the settings were saved) */
    }
    const json_t *lv = json_object_get(a->last, segment_id);
    int64_t last = json_is_integer(lv) ? (int64_t)json_integer_value(lv) : 0;
    if (sd_schedule_next(&sc, last, a->now) > a->now) {
        return 0;
    }
    struct sd_connector_ctx *ctx = a->ctx;
    char *id = NULL;
    const char *what = NULL;
    int r = sd_outbox_push_segment(ctx->hub, ctx->tenant_id, ctx->env, segment_id, ctx->id, NULL,
                                   NULL, &id, &what, NULL);
    if (r == -ENOENT || r == -ENOTSUP) {
        sd_log(SD_LOG_WARN, "scheduled tag sync skipped: no such segment",
               "[tradablebits/%s] segment=%s", ctx->id, segment_id);
    } else if (r < 0) {
        a->err = r;
        return 1;
    } else {
        sd_log(SD_LOG_INFO, "scheduled tag sync queued", "[tradablebits/%s] segment=%s delivery=%s",
               ctx->id, segment_id, id);
        a->queued++;
    }
    free(id);
    /* A skipped segment waits for its next slot too, instead of being tried every run. */
    json_object_set_new(a->last, segment_id, json_integer(a->now));
    return 0;
}

int tb_tags_schedule(struct sd_connector_ctx *ctx)
{
    const struct tb_conf *c = ctx->conf;
    if (!c || !c->segments || !*c->segments) {
        return 0;
    }
    json_t *saved = sd_connector_saved(ctx);
    json_t *last = saved ? json_object_get(saved, "tag_sync") : NULL;
    if (saved && !json_is_object(last)) {
        last = json_object();
        json_object_set_new(saved, "tag_sync", last);
    }
    json_t *mine = last ? NULL : json_object(); /* no state document: every run is "first" */
    struct schedule_arg a = {.ctx = ctx, .last = last ? last : mine, .now = sd_now_usec()};
    each_entry(c->segments, schedule_entry, &a);
    json_decref(mine);
    if (a.queued > 0 && saved) {
        int r = sd_connector_state_save(ctx);
        if (r < 0 && r != -ENOTSUP) {
            sd_log(SD_LOG_WARN,
                   "the tag sync schedule could not be saved; a sync may be queued "
                   "twice (harmless: it is a diff)",
                   "[tradablebits/%s] " SD_LOG_ERR_FMT, ctx->id, SD_LOG_ERR_ARGS(r));
        }
    }
    return a.err < 0 ? a.err : a.queued;
}
