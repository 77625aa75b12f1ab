/* outbox.c — the push request and the delivery worker (see outbox.h for the guarantees).
 *
 * Each of SD_OUTBOX_THREADS threads loops: ask the store when the next delivery is due (a read),
 * and if it is due claim one (a short write transaction that also applies the rate limit), then
 * process it without holding anything but the lease: load the target and the segment, build the
 * body from the segment's current members, extend the lease past the HTTP timeout, send, and
 * record the outcome with the lease as fencing token. Threads sleep on a condition variable
 * until the next item is due, or at most the poll interval (a second; STAGEDOOR_OUTBOX_POLL_MS),
 * so that work queued by another process — the CLI's replay — is seen. Work queued in this
 * process wakes them at once: a push, a replay or an action after its commit, and the items a
 * change queued (sd_outbox_add, on the writer thread) through the writer's group hook, after
 * the COMMIT that makes them visible — a worker never looks for an item before it is committed.
 *
 * Nothing here logs a secret, a URL (it may carry tokens in its query) or personal data: log
 * lines name the delivery, the target and the segment by id, and the remote status. */
#include "core/outbox.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "base/fault.h"
#include "base/log.h"
#include "core/alerts.h"
#include "core/quota.h"
#include "core/segments.h"
#include "core/targets.h"

#define HISTORY_KEEP 20
#define POLL_DEFAULT_USEC (1000LL * 1000)
#define POLL_MIN_USEC (5LL * 1000)
#define BLOCKED_POLL_USEC (250LL * 1000)

/* Items sd_outbox_add queued in the writer's open group (on the writer thread only): the group
 * hook wakes the workers when the group commits, and forgets them either way. An item whose
 * job's savepoint was rolled back still counts: that wake finds nothing, which is harmless. */
static _Thread_local int64_t group_queued;

/* Process-wide counters for /metrics (sd_outbox_metrics_render). */
static _Atomic uint64_t commit_wakes;  /* groups that committed items and woke the workers */
static _Atomic uint64_t claims_signal; /* claims right after a wake-up signal */
static _Atomic uint64_t claims_timer;  /* claims right after a nap that timed out */
static _Atomic uint64_t claims_busy;   /* claims right after the worker's previous item */

struct sd_outbox {
    struct sd_hub *hub;
    pthread_t threads[SD_OUTBOX_THREADS];
    size_t n_threads;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;
    atomic_bool stopping; /* stop, for the connectors' deliver (ctx->stop) */
    uint64_t wakes;  /* bumped by sd_outbox_wake; a thread that saw a change re-polls at once */
    char owner[128]; /* this process instance, recorded with every lease it takes */
    pthread_mutex_t claim_lock; /* a claim and the batch claimed with it, as one step */
    int64_t poll_usec;          /* longest nap (STAGEDOOR_OUTBOX_POLL_MS) */
};

/* ---- lease owners ---------------------------------------------------------------------------- */

/* A process instance: the boot id, the pid and the process's start time (clock ticks since
 * boot), so that neither a reboot nor a reused pid makes a dead instance look alive. */
static bool read_line(const char *path, char *buf, size_t n)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        return false;
    }
    bool ok = fgets(buf, (int)n, f) != NULL;
    fclose(f);
    if (ok) {
        buf[strcspn(buf, "\n")] = '\0';
    }
    return ok;
}

/* Field 22 (starttime) of /proc/PID/stat, or 0. */
static unsigned long long start_time(long pid)
{
    char path[64], line[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    if (!read_line(path, line, sizeof(line))) {
        return 0;
    }
    const char *p = strrchr(line, ')'); /* the command name may hold spaces */
    if (!p) {
        return 0;
    }
    p++;
    for (int field = 2; field < 22 && *p; field++) { /* p is before field `field + 1` */
        while (*p == ' ') {
            p++;
        }
        if (field == 21) {
            return strtoull(p, NULL, 10);
        }
        while (*p && *p != ' ') {
            p++;
        }
    }
    return 0;
}

static void instance_id(char *buf, size_t n)
{
    char boot[64] = "";
    if (!read_line("/proc/sys/kernel/random/boot_id", boot, sizeof(boot))) {
        boot[0] = '\0';
    }
    long pid = (long)getpid();
    snprintf(buf, n, "%s/%ld/%llu", boot, pid, start_time(pid));
}

/* 1 if the instance `owner` (instance_id's format) is certainly gone, 0 if it may be alive
 * (or cannot be told: then its lease runs out as usual). */
static int owner_gone(const char *owner, const char *self)
{
    char boot[64], my_boot[64];
    long pid = 0;
    unsigned long long start = 0;
    const char *slash = strchr(owner, '/');
    const char *my_slash = strchr(self, '/');
    if (!slash || !my_slash || (size_t)(slash - owner) >= sizeof(boot) ||
        (size_t)(my_slash - self) >= sizeof(my_boot) ||
        sscanf(slash, "/%ld/%llu", &pid, &start) != 2 || pid <= 0) {
        return 0;
    }
    memcpy(boot, owner, (size_t)(slash - owner));
    boot[slash - owner] = '\0';
    memcpy(my_boot, self, (size_t)(my_slash - self));
    my_boot[my_slash - self] = '\0';
    if (!boot[0] || !my_boot[0]) {
        return 0;
    }
    if (strcmp(boot, my_boot) != 0) {
        return 1; /* the machine rebooted since */
    }
    if (strcmp(owner, self) == 0) {
        return 0;
    }
    unsigned long long now_start = start_time(pid);
    return now_start == 0 || now_start != start ? 1 : 0;
}

/* At start-up: a delivery leased by an instance that is gone (a kill -9, a crash, a reboot) is
 * claimable at once, instead of after its lease (up to the HTTP timeout + 10 s, or 120 s while
 * the body is built). Its lease is ended with the fencing token it holds, so a lease that
 * changed meanwhile is left alone. Leases of live instances (another process on the same data
 * directory) are not touched. */
static void recover_leases(struct sd_outbox *o)
{
    struct sd_delivery_filter f = {
        .tenant_id = 0, .env = -1, .state = SD_DELIVERY_SENDING, .limit = 1000};
    struct sd_outbox_item *v = NULL;
    size_t n = 0;
    bool more = false;
    int r = sd_store_delivery_list(o->hub->store, &f, &v, &n, &more);
    if (r < 0) {
        sd_log(SD_LOG_WARN, "cannot list leased deliveries; their leases run out as usual",
               "err=%d", r);
        return;
    }
    int64_t now = sd_now_usec();
    for (size_t i = 0; i < n; i++) {
        const char *owner = v[i].lease_owner;
        if (owner && v[i].lease_until_usec > now && owner_gone(owner, o->owner) &&
            sd_store_delivery_renew(o->hub->store, v[i].id, v[i].fence, now) == 0) {
            sd_log(SD_LOG_INFO, "lease of a stopped hub released; the delivery goes again now",
                   "delivery=%s connector=%s", v[i].id, v[i].connector_id);
        }
    }
    sd_outbox_items_free(v, n);
}

/* ---- push ------------------------------------------------------------------------------------ */

/* The delivery an earlier push with this request key created: 1 (its id in *ret_id) if it was
 * the same push, -EEXIST if the key was used for another segment or target, 0 if none. */
static int earlier_push(struct sd_hub *hub, int64_t tenant_id, enum sd_env env,
                        const char *request_key, const char *segment_id, const char *target_id,
                        bool dry_run, char **ret_id)
{
    struct sd_outbox_item d = {0};
    int r = sd_store_delivery_by_request(hub->store, tenant_id, env, request_key, &d);
    if (r == -ENOENT) {
        return 0;
    }
    if (r == 0) {
        /* A dry run carries a payload, a push none: the same key for both is another push. */
        if (strcmp(d.subject_id, segment_id) == 0 && strcmp(d.connector_id, target_id) == 0 &&
            (d.payload != NULL) == dry_run) {
            *ret_id = d.id;
            d.id = NULL;
            r = 1;
        } else {
            r = -EEXIST;
        }
    }
    sd_outbox_item_release(&d);
    return r;
}

int sd_outbox_push(struct sd_hub *hub, int64_t tenant_id, enum sd_env env, const char *segment_id,
                   const char *target_id, const char *request_key, char **ret_id,
                   const char **ret_what, bool *ret_replayed)
{
    return sd_outbox_push_segment(hub, tenant_id, env, segment_id, target_id, request_key, NULL,
                                  ret_id, ret_what, ret_replayed);
}

int sd_outbox_push_segment(struct sd_hub *hub, int64_t tenant_id, enum sd_env env,
                           const char *segment_id, const char *target_id, const char *request_key,
                           const struct sd_push_options *opt, char **ret_id, const char **ret_what,
                           bool *ret_replayed)
{
    bool dry_run = opt && opt->dry_run;
    if (ret_replayed) {
        *ret_replayed = false;
    }
    if (request_key) {
        int e =
            earlier_push(hub, tenant_id, env, request_key, segment_id, target_id, dry_run, ret_id);
        if (e != 0) {
            if (ret_replayed) {
                *ret_replayed = e == 1;
            }
            if (ret_what) {
                *ret_what = NULL;
            }
            return e < 0 ? e : 0;
        }
    }

    struct sd_target t = {0};
    struct sd_segment *seg = NULL;
    char *remote = NULL, *id = NULL, *key = NULL, *text = NULL;
    json_t *doc = NULL;
    const char *what = NULL;
    int r = sd_segment_load(hub, tenant_id, env, segment_id, &seg);
    if (r < 0) {
        what = "segment";
        goto out;
    }
    r = sd_store_target_get(hub->store, target_id, &t);
    if (r == 0 && (t.tenant_id != tenant_id || t.env != env)) {
        r = -ENOENT;
    }
    /* Any target type that declares a segment operation takes the push. */
    const struct sd_connector *c = r == 0 ? sd_connector_find(t.type) : NULL;
    if (r == 0 && (!c || !c->deliver || !c->segment_operation)) {
        r = -ENOTSUP;
    } else if (r == 0 && dry_run && !c->segment_dry_run) {
        r = -ENOTSUP;
        what = "dry_run";
        goto out;
    }
    if (r < 0) {
        what = "target";
        goto out;
    }
    r = sd_store_remote_ref_get(hub->store, target_id, SD_OUTBOX_SUBJECT_SEGMENT, segment_id,
                                &remote);
    if (r < 0 && r != -ENOENT) {
        goto out;
    }
    doc = json_pack("{s:s, s:s}", "kind", remote ? "update" : "create", "segment_name",
                    seg->name ? seg->name : "");
    if (remote) {
        json_object_set_new(doc, "remote_segment_id", json_string(remote));
    }
    if (dry_run) {
        json_object_set_new(doc, "dry_run", json_true());
    }
    id = sd_outbox_new_id("dlv_");
    key = sd_outbox_new_idem_key();
    text = json_dumps(doc, JSON_COMPACT);
    if (!id || !key || !text) {
        r = -EIO;
        goto out;
    }
    struct sd_outbox_item d = {
        .id = id,
        .tenant_id = tenant_id,
        .env = env,
        .connector_id = (char *)target_id,
        .operation = (char *)c->segment_operation,
        .subject_kind = (char *)SD_OUTBOX_SUBJECT_SEGMENT,
        .subject_id = (char *)segment_id,
        .payload = dry_run ? (char *)"{\"dry_run\":true}" : NULL,
        .idem_key = key,
        .request_key = (char *)request_key,
        .doc = text,
    };
    struct sd_outbox_clock clk = sd_outbox_clock_now(SD_OUTBOX_CLAIM_LEASE_USEC);
    r = sd_store_delivery_insert(hub->store, &d, &clk, NULL);
    if (r == -EEXIST && request_key) {
        /* The same key in a request racing with this one: its delivery is the answer. */
        int e =
            earlier_push(hub, tenant_id, env, request_key, segment_id, target_id, dry_run, ret_id);
        if (e == 1 && ret_replayed) {
            *ret_replayed = true;
        }
        r = e == 1 ? 0 : e < 0 ? e : -EIO;
        goto out;
    }
    if (r < 0) {
        goto out;
    }
    sd_log(SD_LOG_INFO, "push queued", "delivery=%s segment=%s target=%s kind=%s%s", id, segment_id,
           target_id, remote ? "update" : "create", dry_run ? " dry_run=true" : "");
    sd_outbox_wake(hub->outbox);
    *ret_id = id;
    id = NULL;
out:
    if (ret_what) {
        *ret_what = r == -ENOENT || r == -ENOTSUP ? what : NULL;
    }
    sd_segment_free(seg);
    sd_target_release(&t);
    free(remote);
    free(id);
    free(key);
    free(text);
    json_decref(doc);
    return r;
}

/* ---- what a connector's deliver sees ----------------------------------------------------------
 */

struct sd_outbox_lease {
    struct sd_store_handle *store;
    const char *id;
    int64_t fence;
    int64_t until;
    bool lost; /* another claim took the item over: record nothing */
    struct sd_outbox_lease *next; /* deliver_batch: the batch's other items */
};

static int lease_extend_one(struct sd_outbox_lease *l, int64_t now, int64_t need_usec,
                            int64_t to_usec)
{
    if (l->lost) {
        return -ESTALE;
    }
    if (l->until >= now + need_usec) {
        return 0;
    }
    int r = sd_store_delivery_renew(l->store, l->id, l->fence, now + to_usec);
    if (r == 0) {
        l->until = now + to_usec;
    } else if (r == -ESTALE) {
        l->lost = true;
    }
    return r;
}

int sd_connector_lease_extend(struct sd_connector_ctx *ctx, int64_t need_usec, int64_t to_usec)
{
    struct sd_outbox_lease *l = ctx ? ctx->lease : NULL;
    if (!l) {
        return 0;
    }
    /* A batch: every item's lease; -ESTALE only when every one was taken over (the others
     * go, and the lost ones' outcomes are not recorded). */
    int64_t now = sd_now_usec();
    int r = -ESTALE;
    for (; l; l = l->next) {
        int x = lease_extend_one(l, now, need_usec, to_usec);
        if (x == 0 || (x != -ESTALE && r == -ESTALE)) {
            r = x;
        }
    }
    return r;
}

int sd_connector_remote_ref_get(const struct sd_connector_ctx *ctx, const char *kind,
                                const char *local_id, char **ret_remote)
{
    return sd_store_remote_ref_get(ctx->hub->store, ctx->id, kind, local_id, ret_remote);
}

int sd_connector_record_version(const struct sd_connector_ctx *ctx, const char *source,
                                const char *customer_id, int64_t *ret_version)
{
    return sd_store_customer_version(ctx->hub->store, ctx->tenant_id, ctx->env, source, customer_id,
                                     ret_version);
}

int sd_connector_linked_ids(const struct sd_connector_ctx *ctx, const char *source,
                            const char *customer_id, const char *member_source, char ***ret_ids,
                            size_t *ret_n)
{
    if (!ctx || !ctx->hub || !source || !customer_id || !member_source || !ret_ids || !ret_n) {
        return -EINVAL;
    }
    struct sd_profile *v = NULL;
    size_t n = 0;
    int r = sd_store_profile_find_by_source(ctx->hub->store, ctx->tenant_id, ctx->env, source,
                                            customer_id, &v, &n);
    if (r < 0) {
        return r;
    }
    char **ids = NULL;
    size_t k = 0;
    for (size_t p = 0; p < n && p < 1; p++) { /* (source, customer_id) has one profile */
        ids = sd_calloc(v[p].n_members + 1, sizeof(*ids));
        for (size_t m = 0; m < v[p].n_members; m++) {
            const struct sd_profile_member *mb = &v[p].members[m];
            if (mb->source && mb->customer_id && strcmp(mb->source, member_source) == 0 &&
                !(strcmp(source, member_source) == 0 &&
                  strcmp(mb->customer_id, customer_id) == 0)) {
                ids[k++] = sd_strdup(mb->customer_id);
            }
        }
    }
    sd_profiles_free(v, n);
    if (k == 0) {
        free(ids);
        ids = NULL;
    }
    *ret_ids = ids;
    *ret_n = k;
    return 0;
}

int sd_connector_remote_ref_find(const struct sd_connector_ctx *ctx, const char *kind,
                                 const char *remote_id, char **ret_local)
{
    return sd_store_remote_ref_find(ctx->hub->store, ctx->id, kind, remote_id, ret_local);
}

int sd_connector_remote_ref_put(const struct sd_connector_ctx *ctx, const char *kind,
                                const char *local_id, const char *remote_id)
{
    return sd_store_remote_ref_put(ctx->hub->store, ctx->id, kind, local_id, remote_id);
}

int sd_connector_remote_ref_list(const struct sd_connector_ctx *ctx, const char *kind,
                                 const char *after, size_t limit, char ***ret_local,
                                 char ***ret_remote, size_t *ret_n)
{
    return sd_store_remote_ref_list(ctx->hub->store, ctx->id, kind, after, limit, ret_local,
                                    ret_remote, ret_n);
}

int sd_connector_remote_ref_apply(const struct sd_connector_ctx *ctx, const char *kind,
                                  const char *const *put_local, const char *const *put_remote,
                                  size_t n_put, const char *const *del_local, size_t n_del)
{
    return sd_store_remote_ref_apply(ctx->hub->store, ctx->id, kind, put_local, put_remote, n_put,
                                     del_local, n_del);
}

void sd_delivery_result_release(struct sd_delivery_result *res)
{
    if (!res) {
        return;
    }
    free(res->remote_ref);
    free(res->answer);
    free(res->error);
    json_decref(res->facts);
    *res = (struct sd_delivery_result){0};
}

/* At most SD_OUTBOX_KEPT_ANSWER bytes of the remote's answer, for the record. */
static char *keep_answer(const char *body)
{
    if (!body || !*body) {
        return NULL;
    }
    size_t len = strlen(body);
    size_t n = len > SD_OUTBOX_KEPT_ANSWER ? SD_OUTBOX_KEPT_ANSWER : len;
    /* Do not cut a UTF-8 sequence in half (the record is JSON text). */
    while (n < len && n > 0 && ((unsigned char)body[n] & 0xc0) == 0x80) {
        n--;
    }
    char *s = sd_strndup(body, n);
    for (char *p = s; *p; p++) {
        if ((unsigned char)*p < 0x20 && *p != '\n' && *p != '\t') {
            *p = ' ';
        }
    }
    return s;
}

static int64_t doc_int(const json_t *doc, const char *key)
{
    const json_t *v = json_object_get(doc, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

static void add_history(json_t *doc, int64_t attempt, long status, const char *error, int64_t ms)
{
    json_t *h = json_object_get(doc, "history");
    if (!json_is_array(h)) {
        h = json_array();
        json_object_set_new(doc, "history", h);
    }
    json_array_append_new(
        h, json_pack("{s:I, s:I, s:o, s:o, s:I}", "at_usec", (json_int_t)sd_now_usec(), "attempt",
                     (json_int_t)attempt, "status", status ? json_integer(status) : json_null(),
                     "error", error ? json_string(error) : json_null(), "ms", (json_int_t)ms));
    while (json_array_size(h) > HISTORY_KEEP) {
        json_array_remove(h, 0);
    }
}

static uint64_t random_u64(void)
{
    uint64_t v = 0;
    if (sd_random_bytes(&v, sizeof(v)) < 0) {
        v = (uint64_t)sd_mono_usec() * 0x9e3779b97f4a7c15ULL;
    }
    return v;
}

/* The fact of an item going dead, for the alerts (its last error, never its payload). */
static void dead_alert(struct sd_outbox *o, const struct sd_outbox_item *d, const json_t *doc)
{
    sd_alerts_dead_letter(o->hub, d->tenant_id, d->env, d->connector_id, d->id,
                          json_string_value(json_object_get(doc, "last_error")));
}

/* Record the outcome; logs if the lease was lost meanwhile. */
static void finish(struct sd_outbox *o, const struct sd_outbox_item *d,
                   enum sd_delivery_state state, int64_t next, int64_t delta, json_t *doc,
                   const char *remote)
{
    if (state == SD_DELIVERY_DEAD) {
        dead_alert(o, d, doc);
    }
    char *text = json_dumps(doc, JSON_COMPACT);
    struct sd_delivery_outcome oc = {
        .state = state,
        .next_attempt_usec = next,
        .attempts_delta = delta,
        .doc = text,
        .remote_ref = remote,
    };
    int r = text ? sd_store_delivery_finish(o->hub->store, d->id, d->fence, &oc) : -EIO;
    if (r == -ESTALE) {
        sd_log(SD_LOG_WARN,
               "delivery lease lost before its outcome was recorded; the worker "
               "that took it over decides",
               "delivery=%s", d->id);
    } else if (r < 0) {
        sd_log(SD_LOG_ERROR,
               "cannot record a delivery outcome; it is sent again when its lease "
               "runs out",
               "delivery=%s " SD_LOG_ERR_FMT, d->id, SD_LOG_ERR_ARGS(r));
    }
    free(text);
}

/* The outcomes of a batch's items, written in one transaction (finish_flush). */
struct finish_batch {
    size_t n;
    const char **ids;
    int64_t *fences;
    struct sd_delivery_outcome *oc; /* doc and remote_ref owned (heap) */
};

/* finish(), or, with a batch, its outcome kept for finish_flush. */
static void finish_to(struct sd_outbox *o, struct finish_batch *fb, const struct sd_outbox_item *d,
                      enum sd_delivery_state state, int64_t next, int64_t delta, json_t *doc,
                      const char *remote)
{
    if (!fb) {
        finish(o, d, state, next, delta, doc, remote);
        return;
    }
    if (state == SD_DELIVERY_DEAD) {
        dead_alert(o, d, doc);
    }
    size_t i = fb->n++;
    fb->ids[i] = d->id;
    fb->fences[i] = d->fence;
    fb->oc[i] = (struct sd_delivery_outcome){.state = state,
                                             .next_attempt_usec = next,
                                             .attempts_delta = delta,
                                             .doc = json_dumps(doc, JSON_COMPACT),
                                             .remote_ref = remote ? sd_strdup(remote) : NULL};
}

/* Write a batch's outcomes in one transaction; if the store cannot, one by one (each as
 * finish() would, so a failure leaves that item to its lease's end). */
static void finish_flush(struct sd_outbox *o, struct finish_batch *fb)
{
    int *ret = sd_calloc(fb->n ? fb->n : 1, sizeof(*ret));
    bool docs = true;
    for (size_t i = 0; i < fb->n; i++) {
        docs = docs && fb->oc[i].doc;
    }
    int r = docs && fb->n ? sd_store_delivery_finish_many(o->hub->store, fb->n, fb->ids,
                                                          fb->fences, fb->oc, ret)
                          : -EIO;
    for (size_t i = 0; i < fb->n; i++) {
        if (r < 0 && fb->oc[i].doc) {
            ret[i] = sd_store_delivery_finish(o->hub->store, fb->ids[i], fb->fences[i], &fb->oc[i]);
        } else if (r < 0) {
            ret[i] = -EIO;
        }
        if (ret[i] == -ESTALE) {
            sd_log(SD_LOG_WARN,
                   "delivery lease lost before its outcome was recorded; the worker "
                   "that took it over decides",
                   "delivery=%s", fb->ids[i]);
        } else if (ret[i] < 0) {
            sd_log(SD_LOG_ERROR,
                   "cannot record a delivery outcome; it is sent again when its lease "
                   "runs out",
                   "delivery=%s " SD_LOG_ERR_FMT, fb->ids[i], SD_LOG_ERR_ARGS(ret[i]));
        }
        free((char *)fb->oc[i].doc);
        free((char *)fb->oc[i].remote_ref);
    }
    free(ret);
    fb->n = 0;
}

/* Fail the attempt without sending: dead at once, or retried with back-off (transient). */
static void fail_unsent(struct sd_outbox *o, const struct sd_outbox_item *d, json_t *doc,
                        bool transient, const char *why)
{
    json_object_set_new(doc, "last_status", json_null());
    json_object_set_new(doc, "last_error", sd_json_text(why));
    json_object_set_new(doc, "last_attempt_usec", json_integer(sd_now_usec()));
    add_history(doc, d->attempts, 0, why, 0);
    if (transient && d->attempts < SD_OUTBOX_MAX_ATTEMPTS) {
        int64_t wait =
            sd_outbox_backoff_usec((int)d->attempts, random_u64(), sd_outbox_time_scale());
        sd_log(SD_LOG_WARN, "delivery not sent, retrying later", "delivery=%s reason=\"%s\"", d->id,
               why);
        finish(o, d, SD_DELIVERY_RETRYING, sd_now_usec() + wait, 0, doc, NULL);
    } else {
        sd_log(SD_LOG_WARN, "delivery dead-lettered", "delivery=%s reason=\"%s\"", d->id, why);
        finish(o, d, SD_DELIVERY_DEAD, 0, 0, doc, NULL);
    }
}

/* *settings (stored, owned) checked against c's table with the defaults filled in (replaced by
 * the checked copy) and the connector's settings struct built from it. 0 or -EINVAL. */
static int typed_settings(const struct sd_connector *c, json_t **settings, void **ret_typed)
{
    struct sd_issues errs;
    sd_issues_init(&errs, 4);
    json_t *checked = sd_connector_check_settings(c, *settings, &errs);
    sd_issues_release(&errs);
    if (!checked) {
        return -EINVAL;
    }
    json_decref(*settings);
    *settings = checked;
    return sd_connector_settings_new(c, checked, ret_typed);
}

/* Record one attempt's outcome from the connector's verdict and result. */
static void conclude(struct sd_outbox *o, const struct sd_outbox_item *d, enum sd_verdict v,
                     const struct sd_delivery_result *r, json_t *doc, int64_t now, uint64_t rnd,
                     struct finish_batch *fb)
{
    const struct sd_delivery_result res = *r;
    const char *key;
    json_t *val;
    json_object_foreach(res.facts, key, val)
    {
        json_object_set(doc, key, val);
    }
    /* The same facts together, as the views show them ("facts"): the connector's own figures
     * (a sync's added / removed / unchanged), kept across the attempts of the item. */
    if (json_object_size(res.facts) > 0) {
        json_t *all = json_object_get(doc, "facts");
        if (!json_is_object(all)) {
            all = json_object();
            json_object_set_new(doc, "facts", all);
        }
        json_object_update(all, res.facts);
    }
    char status_err[64];
    const char *err = res.error;
    if (!err && v != SD_VERDICT_OK && res.status) {
        snprintf(status_err, sizeof(status_err), "HTTP %ld", res.status);
        err = status_err;
    }
    char *kept = keep_answer(res.answer);
    json_object_set_new(doc, "last_status", res.status ? json_integer(res.status) : json_null());
    json_object_set_new(doc, "last_error", err ? sd_json_text(err) : json_null());
    json_object_set_new(doc, "last_response", kept ? sd_json_text(kept) : json_null());
    json_object_set_new(doc, "last_attempt_usec", json_integer(sd_now_usec()));
    free(kept);
    add_history(doc, d->attempts, res.status, err, res.ms);

    switch (v) {
    case SD_VERDICT_OK:
        json_object_set_new(doc, "delivered_usec", json_integer(sd_now_usec()));
        sd_log(SD_LOG_INFO, "delivery delivered",
               "delivery=%s connector=%s operation=%s %s=%s status=%ld attempt=%lld ms=%lld", d->id,
               d->connector_id, d->operation, d->subject_kind, d->subject_id, res.status,
               (long long)d->attempts, (long long)res.ms);
        finish_to(o, fb, d, SD_DELIVERY_DELIVERED, 0, 0, doc, res.remote_ref);
        break;
    case SD_VERDICT_WAIT: {
        int64_t waits = doc_int(doc, "waits") + 1;
        json_object_set_new(doc, "waits", json_integer(waits));
        if (waits > SD_OUTBOX_MAX_WAITS) {
            sd_log(SD_LOG_WARN, "delivery dead-lettered: still rate-limited by the receiver",
                   "delivery=%s waits=%lld", d->id, (long long)waits);
            finish_to(o, fb, d, SD_DELIVERY_DEAD, 0, 0, doc, NULL);
            break;
        }
        int64_t wait = res.retry_after_usec > 0
                           ? res.retry_after_usec
                           : sd_outbox_retry_after_usec(NULL, sd_outbox_time_scale());
        sd_log(SD_LOG_INFO, "delivery rate-limited by the receiver, waiting",
               "delivery=%s status=%ld wait_ms=%lld", d->id, res.status, (long long)(wait / 1000));
        finish_to(o, fb, d, SD_DELIVERY_RETRYING, now + wait, -1, doc, NULL);
        break;
    }
    case SD_VERDICT_RETRY:
        if (d->attempts >= SD_OUTBOX_MAX_ATTEMPTS) {
            sd_log(SD_LOG_WARN, "delivery dead-lettered after the last attempt",
                   "delivery=%s status=%ld attempts=%lld error=\"%s\"", d->id, res.status,
                   (long long)d->attempts, err ? err : "");
            finish_to(o, fb, d, SD_DELIVERY_DEAD, 0, 0, doc, NULL);
        } else {
            int64_t wait =
                sd_outbox_backoff_usec((int)d->attempts, rnd, sd_outbox_time_scale());
            /* A 503's Retry-After, when longer, is honoured too. */
            if (res.retry_after_usec > wait) {
                wait = res.retry_after_usec;
            }
            sd_log(SD_LOG_INFO, "delivery attempt failed, retrying",
                   "delivery=%s status=%ld attempt=%lld error=\"%s\" wait_ms=%lld", d->id,
                   res.status, (long long)d->attempts, err ? err : "", (long long)(wait / 1000));
            finish_to(o, fb, d, SD_DELIVERY_RETRYING, now + wait, 0, doc, NULL);
        }
        break;
    case SD_VERDICT_REJECT:
        sd_log(SD_LOG_WARN, "delivery dead-lettered: the receiver refused it",
               "delivery=%s status=%ld error=\"%s\"", d->id, res.status, err ? err : "");
        finish_to(o, fb, d, SD_DELIVERY_DEAD, 0, 0, doc, NULL);
        break;
    }
}

/* Whether c delivers `operation` in batches (deliver_batch). */
static bool batched(const struct sd_connector *c, const char *operation)
{
    for (size_t i = 0; c->batch_operations && c->batch_operations[i]; i++) {
        if (operation && strcmp(c->batch_operations[i], operation) == 0) {
            return true;
        }
    }
    return false;
}

/* After d's claim: the items of its batch, when d's connector delivers its operation in
 * batches (none otherwise, or when anything fails: d then goes alone). */
static void claim_batch(struct sd_outbox *o, const struct sd_outbox_item *d,
                        struct sd_outbox_item **more, size_t *n_more)
{
    *more = NULL;
    *n_more = 0;
    struct sd_target t = {0};
    if (!d->operation || sd_store_target_get(o->hub->store, d->connector_id, &t) < 0) {
        return;
    }
    const struct sd_connector *c = sd_connector_find(t.type);
    if (t.doc) {
        explicit_bzero(t.doc, strlen(t.doc));
    }
    sd_target_release(&t);
    if (!c || !c->deliver_batch || c->batch_max < 2 || !batched(c, d->operation)) {
        return;
    }
    struct sd_outbox_clock clk = sd_outbox_clock_now(SD_OUTBOX_CLAIM_LEASE_USEC);
    clk.owner = o->owner;
    int r = sd_store_delivery_claim_more(o->hub->store, &clk, d, c->batch_max - 1, more, n_more);
    if (r < 0) {
        sd_log(SD_LOG_WARN, "cannot claim a batch; the item goes alone",
               "delivery=%s " SD_LOG_ERR_FMT, d->id, SD_LOG_ERR_ARGS(r));
        *more = NULL;
        *n_more = 0;
    }
}

/* One request for d and the n_more items claimed with it (moved in: freed here). Extras
 * that used up their attempts (a lease ran out during the last one) are dead-lettered and
 * left out, as process does for one item. Each item's outcome is recorded on its own: the
 * connector's verdict per item. */
static void process_batch(struct sd_outbox *o, const struct sd_connector *c,
                          struct sd_connector_ctx *ctx, void *cstate, struct sd_outbox_item *d,
                          json_t *doc, struct sd_outbox_item *more, size_t n_more)
{
    size_t n = 1;
    struct sd_outbox_item *items = sd_calloc(1 + n_more, sizeof(*items));
    json_t **docs = sd_calloc(1 + n_more, sizeof(*docs));
    struct sd_outbox_lease *leases = sd_calloc(1 + n_more, sizeof(*leases));
    items[0] = *d;
    docs[0] = doc;
    for (size_t i = 0; i < n_more; i++) {
        json_t *x = json_loads(more[i].doc ? more[i].doc : "{}", 0, NULL);
        if (!json_is_object(x)) {
            json_decref(x);
            x = json_object();
        }
        if (more[i].attempts > SD_OUTBOX_MAX_ATTEMPTS) {
            fail_unsent(o, &more[i], x,
                        false, "the worker stopped during the last attempt (its lease ran out); "
                               "it may or may not have arrived");
            json_decref(x);
            sd_outbox_item_release(&more[i]);
            continue;
        }
        items[n] = more[i];
        docs[n++] = x;
    }
    free(more);
    struct sd_outbox_lease *first = ctx->lease;
    leases[0] = *first;
    for (size_t i = 1; i < n; i++) {
        leases[i] = (struct sd_outbox_lease){.store = first->store,
                                             .id = items[i].id,
                                             .fence = items[i].fence,
                                             .until = items[i].lease_until_usec};
    }
    for (size_t i = 0; i + 1 < n; i++) {
        leases[i].next = &leases[i + 1];
    }
    ctx->lease = &leases[0];
    struct sd_delivery_result *res = sd_calloc(n, sizeof(*res));
    enum sd_verdict *v = sd_calloc(n, sizeof(*v));
    for (size_t i = 0; i < n; i++) {
        v[i] = SD_VERDICT_RETRY;
    }
    c->deliver_batch(ctx, cstate, items, n, res, v);
    bool sent = false;
    for (size_t i = 0; i < n; i++) {
        sent = sent || (res[i].status >= 200 && res[i].status < 300);
    }
    if (sent && sd_fault_hit("outbox_after_send")) {
        sd_log_flush();
        _exit(137); /* test hook: a crash between the receiver's answer and its record */
    }
    /* One time and one jitter for the whole batch: items that wait or retry together are due
     * together, so they go again as one request. */
    int64_t now = sd_now_usec();
    uint64_t rnd = random_u64();
    struct finish_batch fb = {.ids = sd_calloc(n, sizeof(*fb.ids)),
                              .fences = sd_calloc(n, sizeof(*fb.fences)),
                              .oc = sd_calloc(n, sizeof(*fb.oc))};
    for (size_t i = 0; i < n; i++) {
        if (leases[i].lost) {
            sd_log(SD_LOG_WARN,
                   "delivery lease lost during the attempt; the worker that took it "
                   "over decides",
                   "delivery=%s", items[i].id);
        } else {
            items[i].lease_until_usec = leases[i].until;
            conclude(o, &items[i], v[i], &res[i], docs[i], now, rnd, &fb);
        }
        sd_delivery_result_release(&res[i]);
    }
    /* One transaction for the batch's outcomes (one fsync, not one per item). */
    finish_flush(o, &fb);
    free(fb.ids);
    free(fb.fences);
    free(fb.oc);
    for (size_t i = 1; i < n; i++) {
        json_decref(docs[i]);
        sd_outbox_item_release(&items[i]);
    }
    ctx->lease = first;
    free(res);
    free(v);
    free(leases);
    free(docs);
    free(items);
}

static void process(struct sd_outbox *o, struct sd_outbox_item *d, struct sd_outbox_item *more,
                    size_t n_more)
{
    struct sd_hub *hub = o->hub;
    struct sd_target conf = {0};
    struct sd_delivery_result res = {0};
    json_t *settings = NULL;
    void *typed = NULL; /* the connector's settings struct (ctx.conf) */
    void *cstate = NULL;
    char why[256];
    json_t *doc = json_loads(d->doc ? d->doc : "{}", 0, NULL);
    if (!json_is_object(doc)) {
        json_decref(doc);
        doc = json_object();
    }
    if (sd_fault_hit("outbox_after_claim")) {
        sd_log_flush();
        _exit(137); /* test hook: a crash between the claim and the send */
    }

    if (d->attempts > SD_OUTBOX_MAX_ATTEMPTS) {
        fail_unsent(o, d, doc, false,
                    "the worker stopped during the last attempt (its lease "
                    "ran out); it may or may not have arrived");
        goto out;
    }
    const struct sd_connector *c = NULL;
    int r = sd_store_target_get(hub->store, d->connector_id, &conf);
    if (r == 0 && (conf.tenant_id != d->tenant_id || conf.env != d->env)) {
        r = -ENOENT;
    }
    if (r == 0 && (!(c = sd_connector_find(conf.type)) || !c->deliver)) {
        r = -ENOTSUP;
    }
    if (r == 0) {
        settings = json_loads(conf.doc, 0, NULL); /* not inside json_is_object: a macro */
        r = json_is_object(settings) ? 0 : -EINVAL;
    }
    if (r < 0) {
        bool push = sd_target_is_push(&conf) ||
                    (d->operation && strcmp(d->operation, SD_OUTBOX_OP_PUSH_SEGMENT) == 0);
        snprintf(why, sizeof(why),
                 r == -ENOENT    ? "%s '%s' no longer exists"
                 : r == -ENOTSUP ? "%s '%s' is of a type that cannot deliver"
                 : r == -EINVAL  ? "%s '%s' has no usable settings"
                                 : "cannot read %s '%s'",
                 push ? "target" : "connector", d->connector_id);
        fail_unsent(o, d, doc, r == -EIO || r == -ENOSPC, why);
        goto out;
    }

    /* The vendor's call quota, shared with the pull runs of every instance that uses the same
     * credential: a write takes one call before it is sent; none left in a window means the
     * item waits for the window's end and gets its attempt back, like a 429. */
    if (c->quotas) {
        int64_t retry_at = 0, now = sd_now_usec();
        int qr = sd_quota_take_instance(hub->store, c, settings, d->connector_id, SD_QUOTA_WRITE,
                                        1, now, &retry_at);
        sd_alerts_quota_taken(hub, d->tenant_id, d->env, d->connector_id);
        if (qr == -EAGAIN) {
            int64_t wait = retry_at > now ? retry_at - now : 1000;
            json_object_set_new(doc, "last_error",
                                json_string("waiting for the vendor's call quota (a window is "
                                            "used up)"));
            sd_log(SD_LOG_INFO, "delivery waits for the vendor's call quota",
                   "delivery=%s connector=%s wait_ms=%lld", d->id, d->connector_id,
                   (long long)(wait / 1000));
            finish(o, d, SD_DELIVERY_RETRYING, now + wait, -1, doc, NULL);
            goto out;
        }
        if (qr < 0) {
            snprintf(why, sizeof(why), "connector '%s': its call quota could not be counted (%s)",
                     d->connector_id, strerror(-qr));
            fail_unsent(o, d, doc, true, why);
            goto out;
        }
    }
    /* Stored settings as the type's table reads them: defaults filled in for what an older
     * version (or the targets API, which stores only what was sent) left out. */
    if ((r = typed_settings(c, &settings, &typed)) < 0) {
        snprintf(why, sizeof(why), "connector '%s' has settings its type cannot hold",
                 d->connector_id);
        fail_unsent(o, d, doc, false, why);
        goto out;
    }

    struct sd_outbox_lease lease = {
        .store = hub->store, .id = d->id, .fence = d->fence, .until = d->lease_until_usec};
    struct sd_connector_ctx ctx = {
        .hub = hub,
        .tenant_id = d->tenant_id,
        .env = d->env,
        .id = d->connector_id,
        .settings = settings,
        .conf = typed,
        .stop = &o->stopping,
        .lease = &lease,
        .connector = c,
        .prepaid_calls = c->quotas ? 1 : 0, /* the write call taken above */
    };
    if (c->init && (r = c->init(&ctx, &cstate)) < 0) {
        snprintf(why, sizeof(why), "connector '%s' could not start (%s)", d->connector_id,
                 strerror(-r));
        fail_unsent(o, d, doc, true, why);
        goto out;
    }
    if (c->deliver_batch && batched(c, d->operation)) {
        process_batch(o, c, &ctx, cstate, d, doc, more, n_more);
        more = NULL;
        n_more = 0;
        if (c->fini) {
            c->fini(cstate);
        }
        free(ctx.error);
        goto out;
    }
    enum sd_verdict v = c->deliver(&ctx, cstate, d, &res);
    if (c->fini) {
        c->fini(cstate);
    }
    free(ctx.error);
    if (lease.lost) {
        sd_log(SD_LOG_WARN,
               "delivery lease lost during the attempt; the worker that took it "
               "over decides",
               "delivery=%s", d->id);
        goto out;
    }
    d->lease_until_usec = lease.until;
    if (res.status >= 200 && res.status < 300 && sd_fault_hit("outbox_after_send")) {
        sd_log_flush();
        _exit(137); /* test hook: a crash between the receiver's answer and its record */
    }
    conclude(o, d, v, &res, doc, sd_now_usec(), random_u64(), NULL);
out:
    if (n_more > 0) {
        /* Claimed with d but not sent (d failed before its request): their leases are ended
         * at once, with their attempt given back, so they go again without waiting. */
        for (size_t i = 0; i < n_more; i++) {
            json_t *x = json_loads(more[i].doc ? more[i].doc : "{}", 0, NULL);
            if (json_is_object(x)) {
                finish(o, &more[i], SD_DELIVERY_RETRYING, sd_now_usec(), -1, x, NULL);
            }
            json_decref(x);
        }
        sd_outbox_items_free(more, n_more);
    }
    sd_delivery_result_release(&res);
    free(typed);
    json_decref(settings);
    if (conf.doc) {
        explicit_bzero(conf.doc, strlen(conf.doc));
    }
    sd_target_release(&conf);
    json_decref(doc);
}

/* ---- transactional enqueue ------------------------------------------------------------------ */

struct sd_outbox_adder {
    struct sd_store_handle *st;
    int64_t tenant_id;
    enum sd_env env;
    const char *connector_id;
    const char *origin;
    int64_t now_usec;
    int err; /* first error: the writer's job fails */
    int64_t added;
};

void sd_outbox_add(struct sd_outbox_adder *out, const char *operation, const char *subject_kind,
                   const char *subject_id, const json_t *payload, const char *dedupe_key)
{
    if (!out || out->err < 0) {
        return;
    }
    if (!operation || !subject_kind || !subject_id) {
        out->err = -EINVAL;
        return;
    }
    char *id = sd_outbox_new_id("dlv_");
    char *key = sd_outbox_new_idem_key();
    char *text = payload ? json_dumps(payload, JSON_COMPACT) : NULL;
    if (!id || !key || (payload && !text)) {
        out->err = -EIO;
    } else {
        struct sd_outbox_item d = {
            .id = id,
            .tenant_id = out->tenant_id,
            .env = out->env,
            .connector_id = (char *)out->connector_id,
            .operation = (char *)operation,
            .subject_kind = (char *)subject_kind,
            .subject_id = (char *)subject_id,
            .payload = text,
            .dedupe_key = (char *)dedupe_key,
            .idem_key = key,
            .origin = (char *)out->origin,
            .doc = (char *)"{}",
        };
        int r = sd_store_outbox_add_tx(out->st, &d, out->now_usec, NULL);
        if (r < 0) {
            out->err = r;
        } else if (r == 0) {
            out->added++;
            group_queued++;
        }
    }
    free(id);
    free(key);
    free(text);
}

int sd_outbox_change_linked(struct sd_outbox_adder *out, const struct sd_change *chg,
                            const char *member_source, int64_t *ret_n)
{
    if (!out || !chg || chg->kind != SD_KIND_CUSTOMER || !chg->id || !chg->source ||
        !member_source || !ret_n) {
        return -EINVAL;
    }
    if (out->err < 0) {
        return out->err;
    }
    int r = sd_store_outbox_linked_tx(out->st, out->tenant_id, out->env, chg->source, chg->id,
                                      member_source, ret_n);
    if (r < 0) {
        out->err = r;
    }
    return r;
}

static bool any_on_change(void)
{
    for (size_t i = 0; sd_connectors[i]; i++) {
        if (sd_connectors[i]->on_change) {
            return true;
        }
    }
    return false;
}

/* Offer the n records of one kind to one instance. */
static void offer(const struct sd_connector *c, const struct sd_connector_ctx *ctx,
                  struct sd_outbox_adder *out, enum sd_kind kind, const char *source,
                  const char *origin, const char *const *ids, const char *const *docs, size_t n)
{
    for (size_t i = 0; i < n && out->err >= 0; i++) {
        json_t *rec = json_loads(docs[i], 0, NULL);
        struct sd_change chg = {
            .kind = kind, .id = ids[i], .source = source, .record = rec, .origin = origin};
        if (rec) {
            c->on_change(ctx, &chg, out);
        }
        json_decref(rec);
    }
}

int sd_outbox_changes_in_writer(struct sd_store_handle *st, int64_t tenant_id, enum sd_env env,
                                const struct sd_batch *batch)
{
    if (!batch || sd_batch_count(batch) == 0 || !any_on_change()) {
        return 0;
    }
    struct sd_target *v = NULL;
    size_t n = 0;
    int r = sd_store_outbox_targets_tx(st, tenant_id, &v, &n);
    if (r < 0) {
        return r;
    }
    const char *source = batch->source ? batch->source : SD_SOURCE_WEBHOOK;
    int64_t added = 0;
    size_t cap = batch->n_events > batch->n_customers ? batch->n_events : batch->n_customers;
    cap = cap > batch->n_sales ? cap : batch->n_sales;
    const char **ids = sd_calloc(cap ? cap : 1, sizeof(*ids));
    const char **docs = sd_calloc(cap ? cap : 1, sizeof(*docs));
    for (size_t i = 0; i < n && r >= 0; i++) {
        const struct sd_connector *c = sd_connector_find(v[i].type);
        if (!c || !c->on_change || v[i].env != env ||
            (batch->origin && strcmp(batch->origin, v[i].id) == 0)) {
            continue; /* not a writer of changes here, or the change came from it: no echo */
        }
        json_t *settings = json_loads(v[i].doc, 0, NULL);
        void *typed = NULL;
        if (!settings || typed_settings(c, &settings, &typed) < 0) {
            json_decref(settings);
            continue; /* settings its type cannot hold: the instance's deliveries say so */
        }
        struct sd_connector_ctx ctx = {.tenant_id = tenant_id,
                                       .env = env,
                                       .id = v[i].id,
                                       .settings = settings,
                                       .conf = typed,
                                       .connector = c};
        struct sd_outbox_adder out = {.st = st,
                                      .tenant_id = tenant_id,
                                      .env = env,
                                      .connector_id = v[i].id,
                                      .origin = batch->origin,
                                      .now_usec = sd_now_usec()};
        for (size_t k = 0; k < batch->n_customers; k++) {
            ids[k] = batch->customers[k].customer_id;
            docs[k] = batch->customers[k].doc;
        }
        offer(c, &ctx, &out, SD_KIND_CUSTOMER, source, batch->origin, ids, docs,
              batch->n_customers);
        for (size_t k = 0; k < batch->n_events; k++) {
            ids[k] = batch->events[k].event_id;
            docs[k] = batch->events[k].doc;
        }
        offer(c, &ctx, &out, SD_KIND_EVENT, source, batch->origin, ids, docs, batch->n_events);
        for (size_t k = 0; k < batch->n_sales; k++) {
            ids[k] = batch->sales[k].invoice_number;
            docs[k] = batch->sales[k].doc;
        }
        offer(c, &ctx, &out, SD_KIND_SALE, source, batch->origin, ids, docs, batch->n_sales);
        free(typed);
        json_decref(settings);
        r = out.err;
        added += out.added;
    }
    free(ids);
    free(docs);
    if (v) {
        for (size_t i = 0; i < n; i++) {
            if (v[i].doc) {
                explicit_bzero(v[i].doc, strlen(v[i].doc));
            }
        }
    }
    sd_targets_free(v, n);
    return r < 0 ? r : (int)(added > INT32_MAX ? INT32_MAX : added);
}

/* ---- threads --------------------------------------------------------------------------------- */

/* Sleep until `usec` from now (at most the poll interval), a wake-up or stop. */
static void nap(struct sd_outbox *o, int64_t usec, uint64_t seen)
{
    if (usec < POLL_MIN_USEC) {
        usec = POLL_MIN_USEC;
    }
    if (usec > o->poll_usec) {
        usec = o->poll_usec;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ns = (int64_t)ts.tv_nsec + (usec % 1000000) * 1000;
    ts.tv_sec += (time_t)(usec / 1000000 + ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    pthread_mutex_lock(&o->lock);
    while (!o->stop && o->wakes == seen) {
        if (pthread_cond_timedwait(&o->cond, &o->lock, &ts) == ETIMEDOUT) {
            break;
        }
    }
    pthread_mutex_unlock(&o->lock);
}

static void *worker(void *arg)
{
    struct sd_outbox *o = arg;
    int64_t last_error_log = 0;
    /* For the metrics: whether the worker napped since its last claim, and the wake-ups it had
     * seen when it began that nap (a claim after a nap is the signal's when a wake-up came
     * since, the poll's otherwise). */
    bool napped = true;
    uint64_t napped_seen = 0;
    for (;;) {
        pthread_mutex_lock(&o->lock);
        bool stop = o->stop;
        uint64_t seen = o->wakes;
        pthread_mutex_unlock(&o->lock);
        if (stop) {
            break;
        }
        int64_t due = 0;
        int r = sd_store_delivery_next_due(o->hub->store, &due);
        int64_t now = sd_now_usec();
        if (r == -ENOENT || (r == 0 && due > now)) {
            napped = true;
            napped_seen = seen;
            nap(o, r == 0 ? due - now : o->poll_usec, seen);
            continue;
        }
        struct sd_outbox_item d = {0};
        struct sd_outbox_clock clk = sd_outbox_clock_now(SD_OUTBOX_CLAIM_LEASE_USEC);
        clk.owner = o->owner;
        struct sd_outbox_item *more = NULL;
        size_t n_more = 0;
        if (r == 0) {
            /* A batch is claimed right after its first item, before another thread of this
             * process claims (so n items make ceil(n / batch_max) requests here). */
            pthread_mutex_lock(&o->claim_lock);
            r = sd_store_delivery_claim(o->hub->store, &clk, &d);
            if (r == 0) {
                claim_batch(o, &d, &more, &n_more);
            }
            pthread_mutex_unlock(&o->claim_lock);
        }
        if (r == 0) {
            atomic_fetch_add_explicit(!napped               ? &claims_busy
                                      : seen != napped_seen ? &claims_signal
                                                            : &claims_timer,
                                      1, memory_order_relaxed);
            napped = false;
            process(o, &d, more, n_more);
            sd_outbox_item_release(&d);
            continue;
        }
        if (r != -ENOENT && sd_mono_usec() - last_error_log > 60LL * 1000000) {
            last_error_log = sd_mono_usec();
            sd_log(SD_LOG_ERROR, "outbox cannot read or claim deliveries; trying again",
                   SD_LOG_ERR_FMT, SD_LOG_ERR_ARGS(r));
        }
        /* Nothing may go now (e.g. rate-limited): poll again soon, the plan has the times. */
        napped = true;
        napped_seen = seen;
        nap(o, r == -ENOENT ? BLOCKED_POLL_USEC : o->poll_usec, seen);
    }
    return NULL;
}

/* STAGEDOOR_OUTBOX_POLL_MS (milliseconds, 5..3600000; default 1000): the longest a worker
 * sleeps before looking for work it was not woken for (another process's, or one whose time
 * came). Out of range or unreadable: the default. */
static int64_t poll_interval_usec(void)
{
    const char *v = getenv("STAGEDOOR_OUTBOX_POLL_MS");
    if (!v || !*v) {
        return POLL_DEFAULT_USEC;
    }
    char *end = NULL;
    errno = 0;
    long long ms = strtoll(v, &end, 10);
    if (errno != 0 || *end != '\0' || ms < 5 || ms > 3600LL * 1000) {
        return POLL_DEFAULT_USEC;
    }
    return ms * 1000;
}

/* The writer's group hook: a group that committed items wakes the workers. */
static void group_ended(void *arg, bool committed)
{
    int64_t n = group_queued;
    group_queued = 0;
    if (committed && n > 0) {
        atomic_fetch_add_explicit(&commit_wakes, 1, memory_order_relaxed);
        sd_outbox_wake(arg);
    }
}

int sd_outbox_new(struct sd_hub *hub, struct sd_outbox **ret)
{
    struct sd_outbox *o = sd_calloc(1, sizeof(*o));
    o->hub = hub;
    pthread_mutex_init(&o->lock, NULL);
    pthread_mutex_init(&o->claim_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_cond_init(&o->cond, &ca);
    pthread_condattr_destroy(&ca);
    (void)sd_outbox_time_scale(); /* read the knob once, at start */
    o->poll_usec = poll_interval_usec();
    instance_id(o->owner, sizeof(o->owner));
    recover_leases(o);
    for (size_t i = 0; i < SD_OUTBOX_THREADS; i++) {
        int e = pthread_create(&o->threads[i], NULL, worker, o);
        if (e != 0) {
            sd_outbox_free(o);
            return -e;
        }
        o->n_threads++;
    }
    if (hub->writer) {
        sd_writer_set_group_hook(hub->writer, group_ended, o);
    }
    *ret = o;
    return 0;
}

void sd_outbox_free(struct sd_outbox *o)
{
    if (!o) {
        return;
    }
    if (o->hub->writer) {
        sd_writer_set_group_hook(o->hub->writer, NULL, NULL); /* no wake-up once o is gone */
    }
    pthread_mutex_lock(&o->lock);
    o->stop = true;
    atomic_store(&o->stopping, true);
    pthread_cond_broadcast(&o->cond);
    pthread_mutex_unlock(&o->lock);
    for (size_t i = 0; i < o->n_threads; i++) {
        pthread_join(o->threads[i], NULL);
    }
    pthread_cond_destroy(&o->cond);
    pthread_mutex_destroy(&o->lock);
    pthread_mutex_destroy(&o->claim_lock);
    free(o);
}

void sd_outbox_wake(struct sd_outbox *o)
{
    if (!o) {
        return;
    }
    pthread_mutex_lock(&o->lock);
    o->wakes++;
    pthread_cond_broadcast(&o->cond);
    pthread_mutex_unlock(&o->lock);
}

void sd_outbox_metrics_render(struct sd_buf *out)
{
    sd_buf_printf(out,
                  "# HELP stagedoor_outbox_commit_wakes_total Group commits that queued outbox "
                  "items and woke the workers.\n"
                  "# TYPE stagedoor_outbox_commit_wakes_total counter\n"
                  "stagedoor_outbox_commit_wakes_total %llu\n"
                  "# HELP stagedoor_outbox_claims_total Items claimed, by what the worker did "
                  "just before: woken (signal), its wait ran out (poll), or its previous item "
                  "(busy).\n"
                  "# TYPE stagedoor_outbox_claims_total counter\n"
                  "stagedoor_outbox_claims_total{after=\"signal\"} %llu\n"
                  "stagedoor_outbox_claims_total{after=\"poll\"} %llu\n"
                  "stagedoor_outbox_claims_total{after=\"busy\"} %llu\n",
                  (unsigned long long)atomic_load_explicit(&commit_wakes, memory_order_relaxed),
                  (unsigned long long)atomic_load_explicit(&claims_signal, memory_order_relaxed),
                  (unsigned long long)atomic_load_explicit(&claims_timer, memory_order_relaxed),
                  (unsigned long long)atomic_load_explicit(&claims_busy, memory_order_relaxed));
}
