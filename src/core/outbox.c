/* outbox.c — the push request and the delivery worker (see outbox.h for the guarantees).
 *
 * Each of SD_OUTBOX_THREADS threads loops: ask the store when the next delivery is due (a read),
 * and if it is due claim one (a short write transaction that also applies the rate limit), then
 * process it without holding anything but the lease: load the target and the segment, build the
 * body from the segment's current members, extend the lease past the HTTP timeout, send, and
 * record the outcome with the lease as fencing token. Threads sleep on a condition variable
 * between polls (at most a second, so work queued by another process — the CLI's replay — is
 * seen quickly); a push in this process wakes them at once.
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
#include "core/segments.h"
#include "core/targets.h"
#include "http/client.h"

#define MEMBER_PAGE 1000
#define HISTORY_KEEP 20
#define POLL_MAX_USEC (1000LL * 1000)
#define POLL_MIN_USEC (5LL * 1000)

struct sd_outbox {
    struct sd_hub *hub;
    pthread_t threads[SD_OUTBOX_THREADS];
    size_t n_threads;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;
    uint64_t wakes; /* bumped by sd_outbox_wake; a thread that saw a change re-polls at once */
    char owner[128]; /* this process instance, recorded with every lease it takes */
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
                        char **ret_id)
{
    struct sd_outbox_item d = {0};
    int r = sd_store_delivery_by_request(hub->store, tenant_id, env, request_key, &d);
    if (r == -ENOENT) {
        return 0;
    }
    if (r == 0) {
        if (strcmp(d.subject_id, segment_id) == 0 && strcmp(d.connector_id, target_id) == 0) {
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
    if (ret_replayed) {
        *ret_replayed = false;
    }
    if (request_key) {
        int e = earlier_push(hub, tenant_id, env, request_key, segment_id, target_id, ret_id);
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
    if (r == 0 && (t.tenant_id != tenant_id || t.env != env || !sd_target_is_push(&t))) {
        r = -ENOENT;
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
        .operation = (char *)SD_OUTBOX_OP_PUSH_SEGMENT,
        .subject_kind = (char *)SD_OUTBOX_SUBJECT_SEGMENT,
        .subject_id = (char *)segment_id,
        .idem_key = key,
        .request_key = (char *)request_key,
        .doc = text,
    };
    struct sd_outbox_clock clk = sd_outbox_clock_now(SD_OUTBOX_CLAIM_LEASE_USEC);
    r = sd_store_delivery_insert(hub->store, &d, &clk, NULL);
    if (r == -EEXIST && request_key) {
        /* The same key in a request racing with this one: its delivery is the answer. */
        int e = earlier_push(hub, tenant_id, env, request_key, segment_id, target_id, ret_id);
        if (e == 1 && ret_replayed) {
            *ret_replayed = true;
        }
        r = e == 1 ? 0 : e < 0 ? e : -EIO;
        goto out;
    }
    if (r < 0) {
        goto out;
    }
    sd_log(SD_LOG_INFO, "push queued", "delivery=%s segment=%s target=%s kind=%s", id, segment_id,
           target_id, remote ? "update" : "create");
    sd_outbox_wake(hub->outbox);
    *ret_id = id;
    id = NULL;
out:
    if (ret_what) {
        *ret_what = r == -ENOENT ? what : NULL;
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

/* ---- building the body ----------------------------------------------------------------------- */

static void put_json_string(struct sd_buf *b, const char *s)
{
    json_t *j = json_string(s);
    char *t = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    sd_buf_puts(b, t ? t : "\"\"");
    free(t);
    json_decref(j);
}

/* Keeps a claim's lease alive while a large segment's members are read. */
struct keeper {
    struct sd_store_handle *store;
    const char *id;
    int64_t fence;
    int64_t *lease_until_usec;
};

static int keep_lease(struct keeper *k)
{
    int64_t now = sd_now_usec();
    if (*k->lease_until_usec - now > SD_OUTBOX_CLAIM_LEASE_USEC / 2) {
        return 0;
    }
    int64_t lease = now + SD_OUTBOX_CLAIM_LEASE_USEC;
    int r = sd_store_delivery_renew(k->store, k->id, k->fence, lease);
    if (r == 0) {
        *k->lease_until_usec = lease;
    }
    return r;
}

/* The request body: {"segment_name", "description", ["remote_segment_id",] "customers": [...]}
 * from the segment's members now. A member goes in once per customer id it has from the
 * target's source (with its e-mail if known), else by e-mail alone, else not at all.
 * Returns 0, -E2BIG (more than SD_OUTBOX_MAX_CUSTOMERS), -ESTALE (the lease was lost) or the
 * members' error. */
static int build_body(struct sd_hub *hub, const struct sd_segment *seg, const char *source,
                      const char *remote_id, struct keeper *keeper, struct sd_buf *out,
                      int64_t *ret_customers)
{
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
        int r = sd_segment_members(hub, seg, after, MEMBER_PAGE, &page);
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
            }
        }
        bool more = page.has_more && page.n > 0;
        after = page.next_after;
        sd_member_page_release(&page);
        if (n > SD_OUTBOX_MAX_CUSTOMERS) {
            return -E2BIG;
        }
        if (!more) {
            break;
        }
        int kr = keep_lease(keeper);
        if (kr < 0) {
            return kr;
        }
    }
    sd_buf_puts(out, "]}");
    *ret_customers = n;
    return 0;
}

/* ---- one attempt ----------------------------------------------------------------------------- */

struct attempt {
    int transport_err;
    long status;
    char *segment_id; /* from a 2xx answer */
    char *answer;     /* the receiver's body, truncated */
    char *retry_after;
    char error[300];
    int64_t ms;
};

static void attempt_release(struct attempt *a)
{
    free(a->segment_id);
    free(a->answer);
    free(a->retry_after);
}

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

static char *keep_answer(const char *body, size_t len)
{
    if (!body || len == 0) {
        return NULL;
    }
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

static void send_once(const struct sd_target_settings *ts, const char *idem_key,
                      const struct sd_buf *body, struct attempt *a)
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
        .max_body = SD_OUTBOX_MAX_ANSWER,
    };
    struct sd_http_response resp = {0};
    int64_t t0 = sd_mono_usec();
    a->transport_err = sd_http_fetch(&rq, &resp);
    a->ms = (sd_mono_usec() - t0) / 1000;
    a->status = a->transport_err == 0 ? resp.status : 0;
    if (a->transport_err < 0) {
        snprintf(a->error, sizeof(a->error), "%s",
                 a->transport_err == -ETIMEDOUT ? "timed out"
                 : a->transport_err == -EFBIG   ? "answer larger than 1 MiB"
                 : resp.error[0]                ? resp.error
                                                : strerror(-a->transport_err));
    } else {
        a->answer = keep_answer(resp.body.data, resp.body.len);
        if (a->status >= 200 && a->status < 300) {
            a->segment_id = answer_segment_id(resp.body.data, resp.body.len);
        }
        a->retry_after = resp.retry_after ? sd_strdup(resp.retry_after) : NULL;
    }
    sd_http_response_release(&resp);
    explicit_bzero(h_app, strlen(h_app));
    explicit_bzero(h_tok, strlen(h_tok));
    free(h_app);
    free(h_tok);
    free(h_idem);
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

/* Record the outcome; logs if the lease was lost meanwhile. */
static void finish(struct sd_outbox *o, const struct sd_outbox_item *d, int64_t lease,
                   enum sd_delivery_state state, int64_t next, int64_t delta, json_t *doc,
                   const char *remote)
{
    char *text = json_dumps(doc, JSON_COMPACT);
    struct sd_delivery_outcome oc = {
        .state = state,
        .next_attempt_usec = next,
        .attempts_delta = delta,
        .doc = text,
        .remote_ref = remote,
    };
    (void)lease;
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
        finish(o, d, d->lease_until_usec, SD_DELIVERY_RETRYING, sd_now_usec() + wait, 0, doc, NULL);
    } else {
        sd_log(SD_LOG_WARN, "delivery dead-lettered", "delivery=%s reason=\"%s\"", d->id, why);
        finish(o, d, d->lease_until_usec, SD_DELIVERY_DEAD, 0, 0, doc, NULL);
    }
}

static void process(struct sd_outbox *o, struct sd_outbox_item *d)
{
    struct sd_hub *hub = o->hub;
    struct sd_target t = {0};
    struct sd_target_settings ts = {0};
    struct sd_segment *seg = NULL;
    struct sd_buf body = {0};
    struct attempt a = {0};
    char *remote = NULL;
    char why[256];
    json_t *doc = json_loads(d->doc ? d->doc : "{}", 0, NULL);
    if (!json_is_object(doc)) {
        json_decref(doc);
        doc = json_object();
    }
    json_object_del(doc, "sent_usec");   /* the store's */
    json_object_del(doc, "lease_owner"); /* the lease's, ended with this attempt */
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
    int r = sd_store_target_get(hub->store, d->connector_id, &t);
    if (r == 0 && (t.tenant_id != d->tenant_id || t.env != d->env || !sd_target_is_push(&t))) {
        r = -ENOENT;
    }
    if (r == 0 && sd_target_settings_parse(t.doc, &ts) < 0) {
        r = -EINVAL;
    }
    if (r < 0) {
        snprintf(why, sizeof(why),
                 r == -ENOENT   ? "target '%s' no longer exists"
                 : r == -EINVAL ? "target '%s' has no usable settings"
                                : "cannot read target '%s'",
                 d->connector_id);
        fail_unsent(o, d, doc, r == -EIO || r == -ENOSPC, why);
        goto out;
    }
    r = sd_segment_load(hub, d->tenant_id, d->env, d->subject_id, &seg);
    if (r < 0) {
        snprintf(why, sizeof(why),
                 r == -ENOENT ? "segment '%s' no longer exists" : "cannot read segment '%s'",
                 d->subject_id);
        fail_unsent(o, d, doc, r != -ENOENT, why);
        goto out;
    }
    r = sd_store_remote_ref_get(hub->store, d->connector_id, SD_OUTBOX_SUBJECT_SEGMENT,
                                d->subject_id, &remote);
    if (r < 0 && r != -ENOENT) {
        fail_unsent(o, d, doc, true, "cannot read the remote segment id");
        goto out;
    }
    int64_t customers = 0;
    struct keeper keeper = {hub->store, d->id, d->fence, &d->lease_until_usec};
    r = build_body(hub, seg, ts.source, remote, &keeper, &body, &customers);
    if (r == -ESTALE) {
        sd_log(SD_LOG_WARN, "delivery lease lost while reading the segment; not sending",
               "delivery=%s", d->id);
        goto out;
    }
    if (r < 0) {
        if (r == -E2BIG) {
            snprintf(why, sizeof(why), "segment has more than %d customers to push",
                     SD_OUTBOX_MAX_CUSTOMERS);
        } else if (r == -EINVAL) {
            snprintf(why, sizeof(why), "the segment's stored rule is no longer valid");
        } else {
            snprintf(why, sizeof(why), "cannot compute the segment's members (%s)",
                     r == -ETIME ? "time limit" : "store error");
        }
        fail_unsent(o, d, doc, r != -E2BIG && r != -EINVAL, why);
        goto out;
    }
    json_object_set_new(doc, "kind", json_string(remote ? "update" : "create"));
    json_object_set_new(doc, "segment_name", json_string(seg->name ? seg->name : ""));
    json_object_set_new(doc, "customers", json_integer(customers));
    if (remote) {
        json_object_set_new(doc, "remote_segment_id", json_string(remote));
    }

    /* The lease must outlast the request: renew it for the whole timeout plus a margin. */
    int64_t lease = sd_now_usec() + ts.timeout_seconds * 1000000 + SD_OUTBOX_LEASE_MARGIN_USEC;
    r = sd_store_delivery_renew(hub->store, d->id, d->fence, lease);
    if (r < 0) {
        sd_log(SD_LOG_WARN, "delivery lease lost before sending; not sending",
               "delivery=%s " SD_LOG_ERR_FMT, d->id, SD_LOG_ERR_ARGS(r));
        goto out;
    }
    d->lease_until_usec = lease;

    send_once(&ts, d->idem_key, &body, &a);
    if (a.transport_err == 0 && a.status >= 200 && a.status < 300 &&
        sd_fault_hit("outbox_after_send")) {
        sd_log_flush();
        _exit(137); /* test hook: a crash between the receiver's answer and its record */
    }

    enum sd_outbox_verdict v =
        sd_outbox_classify(a.transport_err, a.status, a.segment_id != NULL, remote != NULL);
    const char *err = a.transport_err < 0 ? a.error : NULL;
    char status_err[64];
    if (!err && v != SD_OUTBOX_DELIVERED) {
        if (a.status >= 200 && a.status < 300) {
            err = "the answer carries no segment_id";
        } else {
            snprintf(status_err, sizeof(status_err), "HTTP %ld", a.status);
            err = status_err;
        }
    }
    json_object_set_new(doc, "last_status", a.status ? json_integer(a.status) : json_null());
    json_object_set_new(doc, "last_error", err ? sd_json_text(err) : json_null());
    json_object_set_new(doc, "last_response", a.answer ? sd_json_text(a.answer) : json_null());
    json_object_set_new(doc, "last_attempt_usec", json_integer(sd_now_usec()));
    add_history(doc, d->attempts, a.status, err, a.ms);

    switch (v) {
    case SD_OUTBOX_DELIVERED: {
        const char *rid = a.segment_id ? a.segment_id : remote;
        if (rid) {
            json_object_set_new(doc, "remote_segment_id", json_string(rid));
        }
        json_object_set_new(doc, "delivered_usec", json_integer(sd_now_usec()));
        sd_log(SD_LOG_INFO, "delivery delivered",
               "delivery=%s target=%s segment=%s status=%ld attempt=%lld customers=%lld ms=%lld",
               d->id, d->connector_id, d->subject_id, a.status, (long long)d->attempts,
               (long long)customers, (long long)a.ms);
        finish(o, d, lease, SD_DELIVERY_DELIVERED, 0, 0, doc, rid);
        break;
    }
    case SD_OUTBOX_WAIT: {
        int64_t waits = doc_int(doc, "waits_429") + 1;
        json_object_set_new(doc, "waits_429", json_integer(waits));
        if (waits > SD_OUTBOX_MAX_429_WAITS) {
            sd_log(SD_LOG_WARN, "delivery dead-lettered: still rate-limited by the receiver",
                   "delivery=%s waits=%lld", d->id, (long long)waits);
            finish(o, d, lease, SD_DELIVERY_DEAD, 0, 0, doc, NULL);
            break;
        }
        int64_t wait = sd_outbox_retry_after_usec(a.retry_after, sd_outbox_time_scale());
        sd_log(SD_LOG_INFO, "delivery rate-limited by the receiver, waiting",
               "delivery=%s status=429 wait_ms=%lld", d->id, (long long)(wait / 1000));
        finish(o, d, lease, SD_DELIVERY_RETRYING, sd_now_usec() + wait, -1, doc, NULL);
        break;
    }
    case SD_OUTBOX_RETRY:
        if (d->attempts >= SD_OUTBOX_MAX_ATTEMPTS) {
            sd_log(SD_LOG_WARN, "delivery dead-lettered after the last attempt",
                   "delivery=%s status=%ld attempts=%lld error=\"%s\"", d->id, a.status,
                   (long long)d->attempts, err ? err : "");
            finish(o, d, lease, SD_DELIVERY_DEAD, 0, 0, doc, NULL);
        } else {
            int64_t wait =
                sd_outbox_backoff_usec((int)d->attempts, random_u64(), sd_outbox_time_scale());
            /* A 503's Retry-After, when longer, is honoured too. */
            int64_t ra = a.retry_after
                             ? sd_http_retry_after(a.retry_after, SD_OUTBOX_RETRY_AFTER_MAX_S)
                             : -1;
            if (ra > 0 && ra * 1000000 > wait) {
                wait = ra * 1000000;
            }
            sd_log(SD_LOG_INFO, "delivery attempt failed, retrying",
                   "delivery=%s status=%ld attempt=%lld error=\"%s\" wait_ms=%lld", d->id, a.status,
                   (long long)d->attempts, err ? err : "", (long long)(wait / 1000));
            finish(o, d, lease, SD_DELIVERY_RETRYING, sd_now_usec() + wait, 0, doc, NULL);
        }
        break;
    case SD_OUTBOX_REJECTED:
        sd_log(SD_LOG_WARN, "delivery dead-lettered: the receiver refused it",
               "delivery=%s status=%ld error=\"%s\"", d->id, a.status, err ? err : "");
        finish(o, d, lease, SD_DELIVERY_DEAD, 0, 0, doc, NULL);
        break;
    }
out:
    attempt_release(&a);
    sd_buf_release(&body);
    free(remote);
    sd_segment_free(seg);
    sd_target_settings_release(&ts);
    if (t.doc) {
        explicit_bzero(t.doc, strlen(t.doc));
    }
    sd_target_release(&t);
    json_decref(doc);
}

/* ---- threads --------------------------------------------------------------------------------- */

/* Sleep until `usec` from now, a wake-up or stop. */
static void nap(struct sd_outbox *o, int64_t usec, uint64_t seen)
{
    if (usec < POLL_MIN_USEC) {
        usec = POLL_MIN_USEC;
    }
    if (usec > POLL_MAX_USEC) {
        usec = POLL_MAX_USEC;
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
            nap(o, r == 0 ? due - now : POLL_MAX_USEC, seen);
            continue;
        }
        struct sd_outbox_item d = {0};
        struct sd_outbox_clock clk = sd_outbox_clock_now(SD_OUTBOX_CLAIM_LEASE_USEC);
        clk.owner = o->owner;
        if (r == 0) {
            r = sd_store_delivery_claim(o->hub->store, &clk, &d);
        }
        if (r == 0) {
            process(o, &d);
            sd_outbox_item_release(&d);
            continue;
        }
        if (r != -ENOENT && sd_mono_usec() - last_error_log > 60LL * 1000000) {
            last_error_log = sd_mono_usec();
            sd_log(SD_LOG_ERROR, "outbox cannot read or claim deliveries; trying again",
                   SD_LOG_ERR_FMT, SD_LOG_ERR_ARGS(r));
        }
        /* Nothing may go now (e.g. rate-limited): poll again soon, the plan has the times. */
        nap(o, r == -ENOENT ? 250LL * 1000 : POLL_MAX_USEC, seen);
    }
    return NULL;
}

int sd_outbox_new(struct sd_hub *hub, struct sd_outbox **ret)
{
    struct sd_outbox *o = sd_calloc(1, sizeof(*o));
    o->hub = hub;
    pthread_mutex_init(&o->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_cond_init(&o->cond, &ca);
    pthread_condattr_destroy(&ca);
    (void)sd_outbox_time_scale(); /* read the knob once, at start */
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
    *ret = o;
    return 0;
}

void sd_outbox_free(struct sd_outbox *o)
{
    if (!o) {
        return;
    }
    pthread_mutex_lock(&o->lock);
    o->stop = true;
    pthread_cond_broadcast(&o->cond);
    pthread_mutex_unlock(&o->lock);
    for (size_t i = 0; i < o->n_threads; i++) {
        pthread_join(o->threads[i], NULL);
    }
    pthread_cond_destroy(&o->cond);
    pthread_mutex_destroy(&o->lock);
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
