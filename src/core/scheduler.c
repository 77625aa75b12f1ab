/* scheduler.c — the connector scheduler (see scheduler.h).
 *
 * Invariants: `lock` guards the instance table; an instance is `running` from the moment it is
 * handed to a run thread until that thread has joined (reaped by the scheduler loop), so a
 * reload that drops or changes an instance never races with its run — a removed instance is
 * kept (marked `gone`) until its run ends. A "run now" request is the store's
 * run_requested_usec being newer than the one the instance last honoured.
 *
 * Several nodes (processes, hosts) may schedule the same connectors from one store; each run
 * is done by one of them. A run thread first takes the connector's run lease (store
 * run_lease_take, owner = this scheduler's node id), then re-reads the committed state under
 * it and runs only if the run is still due by that state: what this node saw may have been
 * done by another node meanwhile (its last_run_usec), and a run cut short (run_started_usec
 * after last_run_usec: a node died or lost its lease) is resumed from its committed cursor.
 * The lease is renewed by the scheduler loop every third of its length while the run lasts and
 * released when it ends. Every commit of the run names the lease's fencing token, so a run
 * whose lease was taken over (its node stalled past the lease) stores nothing more; its renewal
 * then fails with -ESTALE and the loop raises the run's stop flag, so it also stops at its next
 * safe point. A lease held by another node (-EBUSY) leaves the instance due, tried again after
 * a quarter of the lease (at most 30 s): once that node is done its committed state shows the
 * run as done; if it died, its lease expires and this node takes the run over.
 *
 * The due reasons that are not in the committed state carry a time, "due after": a drop seen
 * by inotify (its time), a "run now" request (the request's time), a watched folder that was
 * never scanned (1: any run at all satisfies it). A run started after that time satisfies it,
 * whichever node ran it. */
#include "core/scheduler.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "base/base.h"
#include "base/log.h"
#include "core/connector.h"
#include "core/connector_run.h"
#include "core/schedule.h"

#define TICK_MSEC 250
/* STAGEDOOR_RUN_LEASE_SECONDS: see scheduler.h. */
#define LEASE_DEFAULT_SEC 900
#define LEASE_MAX_SEC 86400
/* The longest HTTP timeout a connector can be configured with: the top of the bounds of every
 * "timeout_seconds" and "poll_timeout_seconds" setting (archtics, rest_pull, tradablebits,
 * audience_push, test connectors). A shorter lease is allowed (tests) but logged. */
#define LONGEST_HTTP_TIMEOUT_SEC 600
#define BUSY_RETRY_MAX_USEC (30LL * 1000000)

enum run_outcome {
    RUN_RAN = 0, /* the connector ran (its lease may have been lost meanwhile) */
    RUN_SKIPPED, /* under the lease, the committed state showed nothing due */
    RUN_BUSY,    /* another node holds the lease, or the store could not be asked */
};

struct inst {
    struct sd_connector_conf conf;
    struct sd_schedule sched;
    bool sched_ok;
    int64_t last_run_usec;     /* from the committed state, then from our own runs */
    int64_t request_seen_usec; /* run_requested_usec already honoured */
    int64_t next_usec;
    bool due_now;            /* an inotify event or a request */
    int64_t due_set_usec;    /* when due_now was set (for the fair pick) */
    int64_t due_after_usec;  /* a run started after this satisfies due_now (0: none) */
    int64_t busy_until_usec; /* the lease was busy: not tried again before this */
    bool running, gone, done;
    pthread_t thread;
    struct sd_connector_live live;
    int64_t run_started_usec;
    int watch_wd;
    struct sd_scheduler *owner;
    /* The run in progress: what the run thread judges "due" by, copied at dispatch, and the
     * lease it holds. */
    struct sd_schedule run_sched;
    bool run_sched_ok;
    int64_t run_due_after_usec;
    atomic_bool stop;           /* the run stops at its next safe point */
    bool leased;                /* lock: the run holds its lease (the loop renews it) */
    bool run_active;            /* lock: the connector itself runs (lease taken, still due) */
    int64_t fence;              /* lock: its token */
    int64_t renewed_mono_usec;  /* lock: when it was taken or last renewed */
    enum run_outcome outcome;   /* set by the run thread before done */
    int64_t seen_last_run_usec; /* RUN_SKIPPED: the committed last_run_usec */
};

/* Due now, satisfied by any run that starts after after_usec (0: only by the committed state's
 * own reasons, a cut-short run). */
static void mark_due(struct inst *in, int64_t now, int64_t after_usec)
{
    if (!in->due_now) {
        in->due_now = true;
        in->due_set_usec = now;
    }
    if (after_usec > in->due_after_usec) {
        in->due_after_usec = after_usec;
    }
}

struct sd_scheduler {
    struct sd_hub *hub;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;
    bool woken;
    int64_t version;
    struct inst **v;
    size_t n;
    int inotify_fd;
    char node_id[SD_LEASE_OWNER_MAX + 1]; /* lease owner: host/pid/random/boot/pidns/start */
    char boot[64], pidns[64];             /* this process's kernel boot id and pid namespace */
    int64_t lease_usec;
};

static bool owner_gone(const struct sd_scheduler *s, const char *owner);

static struct inst *find(struct sd_scheduler *s, const char *id)
{
    for (size_t i = 0; i < s->n; i++) {
        if (!s->v[i]->gone && strcmp(s->v[i]->conf.id, id) == 0) {
            return s->v[i];
        }
    }
    return NULL;
}

static void inst_free(struct inst *in)
{
    sd_connector_conf_release(&in->conf);
    free(in);
}

static void copy_conf(struct sd_connector_conf *to, const struct sd_connector_conf *from)
{
    *to = (struct sd_connector_conf){
        .id = sd_strdup(from->id),
        .tenant_id = from->tenant_id,
        .client_id = from->client_id ? sd_strdup(from->client_id) : NULL,
        .env = from->env,
        .type = sd_strdup(from->type),
        .schedule = sd_strdup(from->schedule),
        .settings = sd_strdup(from->settings),
        .mapping = sd_strdup(from->mapping),
        .run_requested_usec = from->run_requested_usec,
        .created_usec = from->created_usec,
        .updated_usec = from->updated_usec,
    };
}

/* inotify gives one watch id per directory: drop it only when no other instance shares it. */
static void drop_watch(struct sd_scheduler *s, struct inst *in)
{
    if (in->watch_wd < 0) {
        return;
    }
    for (size_t i = 0; i < s->n; i++) {
        if (s->v[i] != in && s->v[i]->watch_wd == in->watch_wd) {
            in->watch_wd = -1;
            return;
        }
    }
    inotify_rm_watch(s->inotify_fd, in->watch_wd);
    in->watch_wd = -1;
}

static void set_watch(struct sd_scheduler *s, struct inst *in)
{
    const struct sd_connector *c = sd_connector_find(in->conf.type);
    in->watch_wd = -1;
    /* "manual" means only when asked: a dropped file waits for "run now". */
    bool manual = in->sched_ok && in->sched.kind == SD_SCHED_MANUAL;
    if (!c || !c->watch_dir || s->inotify_fd < 0 || manual) {
        return;
    }
    json_t *settings = json_loads(in->conf.settings, 0, NULL);
    void *conf = NULL;
    const char *dir =
        sd_connector_settings_new(c, settings, &conf) == 0 ? c->watch_dir(conf) : NULL;
    if (dir) {
        in->watch_wd = inotify_add_watch(s->inotify_fd, dir, IN_CLOSE_WRITE | IN_MOVED_TO);
        /* A connector that never ran may find files already there (dropped before the watch
         * existed): look once now. Others rescan on their schedule. */
        if (in->last_run_usec == 0) {
            mark_due(in, sd_now_usec(), 1);
        }
    }
    free(conf);
    json_decref(settings);
}

static void plan(struct inst *in, int64_t now)
{
    in->next_usec = in->sched_ok ? sd_schedule_next(&in->sched, in->last_run_usec, now) : INT64_MAX;
}

/* Reload the instance table from the store (lock held). */
static void reload(struct sd_scheduler *s)
{
    struct sd_connector_conf *confs = NULL;
    size_t n = 0;
    if (sd_store_connector_list(s->hub->store, 0, &confs, &n) < 0) {
        return;
    }
    int64_t now = sd_now_usec();
    for (size_t i = 0; i < s->n; i++) {
        s->v[i]->gone = true;
    }
    for (size_t i = 0; i < n; i++) {
        const struct sd_connector *type = sd_connector_find(confs[i].type);
        if (type && !type->run) {
            continue; /* a target only (the audience push): nothing to run, the outbox sends */
        }
        struct inst *in = NULL;
        for (size_t j = 0; j < s->n; j++) {
            if (strcmp(s->v[j]->conf.id, confs[i].id) == 0) {
                in = s->v[j];
            }
        }
        if (in) {
            in->gone = false;
            /* A running instance keeps its conf until its run ends (its run thread reads it);
             * the end of the run wakes the loop, whose reload then applies the change. */
            bool changed = in->conf.updated_usec != confs[i].updated_usec && !in->running;
            int64_t req = confs[i].run_requested_usec;
            if (req > in->request_seen_usec) {
                in->request_seen_usec = req;
                mark_due(in, now, req);
            }
            if (changed) {
                drop_watch(s, in);
                sd_connector_conf_release(&in->conf);
                copy_conf(&in->conf, &confs[i]);
                const char *why;
                in->sched_ok = sd_schedule_parse(in->conf.schedule, &in->sched, &why) == 0;
                set_watch(s, in);
                plan(in, now);
            }
            continue;
        }
        in = sd_calloc(1, sizeof(*in));
        in->owner = s;
        copy_conf(&in->conf, &confs[i]);
        const char *why;
        in->sched_ok = sd_schedule_parse(in->conf.schedule, &in->sched, &why) == 0;
        json_t *state = NULL;
        if (sd_connector_state_load(s->hub, in->conf.id, &state) == 0) {
            json_t *lr = json_object_get(state, "last_run_usec");
            in->last_run_usec = json_is_integer(lr) ? json_integer_value(lr) : 0;
            json_t *rs = json_object_get(state, "run_started_usec");
            if (json_is_integer(rs) && json_integer_value(rs) > in->last_run_usec) {
                mark_due(in, now, 0); /* a run was cut short (crash): resume it now */
            }
        }
        json_decref(state);
        if (in->conf.run_requested_usec > in->last_run_usec) {
            mark_due(in, now, in->conf.run_requested_usec);
        }
        in->request_seen_usec = in->conf.run_requested_usec;
        set_watch(s, in);
        plan(in, now);
        s->v = sd_realloc(s->v, (s->n + 1) * sizeof(*s->v));
        s->v[s->n++] = in;
    }
    sd_connector_confs_free(confs, n);
    /* Drop removed instances that are not running. */
    for (size_t i = 0; i < s->n; i++) {
        if (s->v[i]->gone && !s->v[i]->running) {
            drop_watch(s, s->v[i]);
        }
    }
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++) {
        struct inst *in = s->v[i];
        if (in->gone && !in->running) {
            inst_free(in);
        } else {
            s->v[k++] = in;
        }
    }
    s->n = k;
}

static int64_t state_usec(const json_t *state, const char *key)
{
    const json_t *v = json_object_get(state, key);
    return json_is_integer(v) ? json_integer_value(v) : 0;
}

/* Under the lease: is the run still due by the committed state? */
static bool still_due(const struct inst *in, const json_t *state, int64_t now)
{
    int64_t last = state_usec(state, "last_run_usec");
    if (state_usec(state, "run_started_usec") > last) {
        return true; /* cut short (a node died or lost its lease): resume from the cursor */
    }
    if (in->run_sched_ok && sd_schedule_next(&in->run_sched, last, now) <= now) {
        return true;
    }
    return in->run_due_after_usec > last;
}

/* One run: take the lease, check, run, release. in->conf stays as it is while `running`
 * (reload replaces it only between runs). */
static enum run_outcome lease_and_run(struct inst *in)
{
    struct sd_scheduler *s = in->owner;
    const char *id = in->conf.id;
    int64_t fence = 0;
    char *holder = NULL;
    int r = sd_store_run_lease_take(s->hub->store, id, s->node_id, NULL, s->lease_usec, &fence,
                                    &holder);
    if (r == -EBUSY && holder && owner_gone(s, holder)) {
        /* A node of this host that died (kill -9, crash): no need to wait out its lease. */
        r = sd_store_run_lease_take(s->hub->store, id, s->node_id, holder, s->lease_usec, &fence,
                                    NULL);
        if (r == 0) {
            sd_log(SD_LOG_INFO, "run lease of a stopped node taken over", "connector=%s", id);
        }
    }
    free(holder);
    if (r == -EBUSY) {
        return RUN_BUSY;
    }
    if (r < 0) {
        sd_log(SD_LOG_WARN, "cannot take a connector's run lease, retrying later",
               "connector=%s " SD_LOG_ERR_FMT, id, SD_LOG_ERR_ARGS(r));
        return RUN_BUSY;
    }
    pthread_mutex_lock(&s->lock);
    in->fence = fence;
    in->leased = true;
    in->renewed_mono_usec = sd_mono_usec();
    pthread_mutex_unlock(&s->lock);
    enum run_outcome out = RUN_SKIPPED;
    json_t *state = NULL;
    int64_t now = sd_now_usec();
    if (sd_connector_state_load(s->hub, id, &state) < 0) {
        out = RUN_BUSY; /* cannot tell whether it is due: try again later */
    } else if (atomic_load(&in->stop)) {
        out = RUN_BUSY;
    } else if (!still_due(in, state, now)) {
        in->seen_last_run_usec = state_usec(state, "last_run_usec");
    } else {
        pthread_mutex_lock(&s->lock);
        in->run_started_usec = sd_now_usec();
        in->run_active = true;
        pthread_mutex_unlock(&s->lock);
        sd_connector_run_instance(s->hub, &in->conf, fence, &in->stop, &in->live);
        out = RUN_RAN;
    }
    json_decref(state);
    pthread_mutex_lock(&s->lock);
    in->leased = false;
    pthread_mutex_unlock(&s->lock);
    r = sd_store_run_lease_release(s->hub->store, id, fence);
    if (r < 0 && r != -ESTALE) {
        sd_log(SD_LOG_WARN, "cannot release a connector's run lease; it expires by itself",
               "connector=%s " SD_LOG_ERR_FMT, id, SD_LOG_ERR_ARGS(r));
    }
    return out;
}

static void *run_thread(void *arg)
{
    struct inst *in = arg;
    struct sd_scheduler *s = in->owner;
    enum run_outcome out = lease_and_run(in);
    pthread_mutex_lock(&s->lock);
    in->outcome = out;
    in->done = true;
    s->woken = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* Renew the leases of running instances that are a third of a lease old (lock held; dropped
 * around each store call: instances stay, since only this thread reaps or frees them). A
 * renewal answered -ESTALE means the lease went to another node: the run stops at its next
 * safe point, and its commits are refused meanwhile. Other failures are tried again next tick
 * (the token still guards every commit). */
static void renew_leases(struct sd_scheduler *s)
{
    int64_t due_mono = sd_mono_usec() - s->lease_usec / 3;
    for (size_t i = 0; i < s->n; i++) {
        struct inst *in = s->v[i];
        if (!in->running || !in->leased || in->renewed_mono_usec > due_mono) {
            continue;
        }
        int64_t fence = in->fence;
        char *id = sd_strdup(in->conf.id);
        pthread_mutex_unlock(&s->lock);
        int r = sd_store_run_lease_renew(s->hub->store, id, fence, s->lease_usec);
        pthread_mutex_lock(&s->lock);
        if (r == 0 && in->leased && in->fence == fence) {
            in->renewed_mono_usec = sd_mono_usec();
        } else if (r == -ESTALE && in->leased && in->fence == fence) {
            in->leased = false;
            atomic_store(&in->stop, true);
            sd_log(SD_LOG_WARN, "connector run lost its lease to another node, stopping it",
                   "connector=%s", id);
        } else if (r < 0 && r != -ESTALE) {
            sd_log(SD_LOG_WARN, "cannot renew a connector's run lease, retrying",
                   "connector=%s " SD_LOG_ERR_FMT, id, SD_LOG_ERR_ARGS(r));
        }
        free(id);
    }
}

/* Join finished runs and start due ones (lock held). */
static void dispatch(struct sd_scheduler *s)
{
    int64_t now = sd_now_usec();
    for (size_t i = 0; i < s->n; i++) {
        struct inst *in = s->v[i];
        if (in->running && in->done) {
            pthread_mutex_unlock(&s->lock);
            pthread_join(in->thread, NULL);
            pthread_mutex_lock(&s->lock);
            in->running = false;
            in->done = false;
            if (in->outcome == RUN_RAN) {
                in->last_run_usec = in->run_started_usec;
            } else if (in->outcome == RUN_SKIPPED) {
                /* done by another node meanwhile: plan from its run */
                if (in->seen_last_run_usec > in->last_run_usec) {
                    in->last_run_usec = in->seen_last_run_usec;
                }
            } else {
                /* Still due: try again once the other node may be done or its lease out. */
                int64_t retry = s->lease_usec / 4;
                retry = retry < TICK_MSEC * 1000 ? TICK_MSEC * 1000 : retry;
                retry = retry > BUSY_RETRY_MAX_USEC ? BUSY_RETRY_MAX_USEC : retry;
                in->busy_until_usec = now + retry;
                mark_due(in, in->run_started_usec, in->run_due_after_usec);
            }
            plan(in, now);
        }
    }
    if (s->stop) {
        return;
    }
    struct sd_scheduler_candidate *cand = sd_calloc(s->n ? s->n : 1, sizeof(*cand));
    for (;;) {
        for (size_t i = 0; i < s->n; i++) {
            struct inst *in = s->v[i];
            int64_t due = in->next_usec;
            if (in->due_now && in->due_set_usec < due) {
                due = in->due_set_usec;
            }
            bool due_now =
                !in->gone && (in->due_now || in->next_usec <= now) && in->busy_until_usec <= now;
            cand[i] = (struct sd_scheduler_candidate){
                .tenant_id = in->conf.tenant_id,
                .due_usec = due_now ? due : INT64_MAX,
                .running = in->running,
            };
        }
        ssize_t pick =
            sd_scheduler_pick(cand, s->n, SD_SCHEDULER_MAX_RUNS, SD_SCHEDULER_MAX_RUNS_PER_TENANT);
        if (pick < 0) {
            break;
        }
        struct inst *best = s->v[pick];
        best->run_sched = best->sched;
        best->run_sched_ok = best->sched_ok;
        best->run_due_after_usec = best->due_after_usec;
        best->due_after_usec = 0;
        best->due_now = false;
        best->busy_until_usec = 0;
        best->leased = false;
        best->run_active = false;
        best->outcome = RUN_BUSY;
        atomic_store(&best->stop, false);
        best->running = true;
        best->done = false;
        best->run_started_usec = now;
        if (pthread_create(&best->thread, NULL, run_thread, best) != 0) {
            best->running = false;
            sd_log(SD_LOG_ERROR, "could not start a connector run", "connector=%s", best->conf.id);
            break;
        }
    }
    free(cand);
}

ssize_t sd_scheduler_pick(const struct sd_scheduler_candidate *c, size_t n, size_t max_runs,
                          size_t max_per_tenant)
{
    /* The tenants of the runs going: fewer than max_runs of them, so counting a candidate's
     * tenant load costs O(max_runs), the whole pick O(n * max_runs). */
    size_t running = 0;
    for (size_t i = 0; i < n; i++) {
        running += c[i].running;
    }
    if (running >= max_runs) {
        return -1;
    }
    int64_t *busy = sd_calloc(running ? running : 1, sizeof(*busy));
    size_t nb = 0;
    for (size_t i = 0; i < n; i++) {
        if (c[i].running) {
            busy[nb++] = c[i].tenant_id;
        }
    }
    /* Among due candidates whose tenant is under its cap: the tenant with the fewest runs going
     * first (one each before anyone gets a second: round robin), then the longest wait. */
    ssize_t best = -1;
    size_t best_load = 0;
    for (size_t i = 0; i < n; i++) {
        if (c[i].running || c[i].due_usec == INT64_MAX) {
            continue;
        }
        size_t load = 0;
        for (size_t k = 0; k < nb; k++) {
            load += busy[k] == c[i].tenant_id;
        }
        if (load >= max_per_tenant) {
            continue;
        }
        if (best < 0 || load < best_load ||
            (load == best_load && c[i].due_usec < c[best].due_usec)) {
            best = (ssize_t)i;
            best_load = load;
        }
    }
    free(busy);
    return best;
}

static void drain_inotify(struct sd_scheduler *s)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        ssize_t n = read(s->inotify_fd, buf, sizeof(buf));
        if (n <= 0) {
            return;
        }
        for (char *p = buf; p < buf + n;) {
            struct inotify_event *ev = (struct inotify_event *)p;
            for (size_t i = 0; i < s->n; i++) {
                if (s->v[i]->watch_wd == ev->wd && ev->len > 0 && ev->name[0] != '.') {
                    int64_t t = sd_now_usec();
                    mark_due(s->v[i], t, t);
                }
            }
            p += sizeof(*ev) + ev->len;
        }
    }
}

static void *loop(void *arg)
{
    struct sd_scheduler *s = arg;
    pthread_mutex_lock(&s->lock);
    while (!s->stop) {
        int64_t v = 0;
        pthread_mutex_unlock(&s->lock);
        int r = sd_store_settings_version(s->hub->store, &v);
        if (s->inotify_fd >= 0) {
            struct pollfd pfd = {.fd = s->inotify_fd, .events = POLLIN};
            poll(&pfd, 1, 0);
            pthread_mutex_lock(&s->lock);
            if (pfd.revents & POLLIN) {
                drain_inotify(s);
            }
        } else {
            pthread_mutex_lock(&s->lock);
        }
        if (r == 0 && (v != s->version || s->woken)) {
            s->version = v;
            reload(s);
        }
        s->woken = false;
        renew_leases(s);
        dispatch(s);
        if (s->stop || s->woken) {
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += TICK_MSEC * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->cond, &s->lock, &ts);
    }
    /* Stopping: let running connectors reach a safe point, then join them (their leases are
     * released by the runs themselves). */
    for (size_t i = 0; i < s->n; i++) {
        atomic_store(&s->v[i]->stop, true);
    }
    for (size_t i = 0; i < s->n; i++) {
        struct inst *in = s->v[i];
        if (in->running) {
            pthread_mutex_unlock(&s->lock);
            pthread_join(in->thread, NULL);
            pthread_mutex_lock(&s->lock);
            in->running = false;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

int64_t sd_scheduler_lease_usec(void)
{
    const char *v = getenv("STAGEDOOR_RUN_LEASE_SECONDS");
    if (!v || !*v) {
        return LEASE_DEFAULT_SEC * 1000000LL;
    }
    char *end = NULL;
    errno = 0;
    long long sec = strtoll(v, &end, 10);
    if (errno != 0 || *end != '\0' || sec < 1 || sec > LEASE_MAX_SEC) {
        sd_log(SD_LOG_WARN, "STAGEDOOR_RUN_LEASE_SECONDS out of range, using the default",
               "min=1 max=%d default=%d", LEASE_MAX_SEC, LEASE_DEFAULT_SEC);
        return LEASE_DEFAULT_SEC * 1000000LL;
    }
    return sec * 1000000LL;
}

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

/* Field 22 (starttime, clock ticks since boot) of /proc/PID/stat, or 0 (no such process). */
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
    for (int field = 3; *p; field++) {
        while (*p == ' ') {
            p++;
        }
        if (field == 22) {
            return strtoull(p, NULL, 10);
        }
        while (*p && *p != ' ') {
            p++;
        }
    }
    return 0;
}

/* This process as a node: the kernel's boot id and pid namespace, which tell whether another
 * node's pid can be looked up here, and its start time, which tells a reused pid apart. */
static void local_identity(char *boot, size_t nb, char *pidns, size_t np, unsigned long long *start)
{
    if (!read_line("/proc/sys/kernel/random/boot_id", boot, nb)) {
        boot[0] = '\0';
    }
    ssize_t n = readlink("/proc/self/ns/pid", pidns, np - 1);
    pidns[n > 0 ? n : 0] = '\0';
    for (char *c = pidns; *c; c++) {
        *c = *c == '/' ? '_' : *c;
    }
    *start = start_time((long)getpid());
}

/* Whether lease owner `owner` (a node id) is certainly gone: a process of this kernel boot
 * and pid namespace whose pid no longer runs the process that took the lease. Anything else
 * (another host, a container of its own, an id not in this format) cannot be told from here:
 * its lease runs out as usual. */
static bool owner_gone(const struct sd_scheduler *s, const char *owner)
{
    char host[72], rnd[24], boot[64], pidns[64];
    long pid = 0;
    unsigned long long start = 0;
    if (strcmp(owner, s->node_id) == 0 ||
        sscanf(owner, "%71[^/]/%ld/%23[^/]/%63[^/]/%63[^/]/%llu", host, &pid, rnd, boot, pidns,
               &start) != 6 ||
        pid <= 0 || start == 0 || !s->boot[0] || !s->pidns[0] || strcmp(boot, s->boot) != 0 ||
        strcmp(pidns, s->pidns) != 0) {
        return false;
    }
    return start_time(pid) != start;
}

/* host/pid/16 random hex digits/boot id/pid namespace/start time: unique per scheduler (two
 * hubs in one process too); an operator can tell which host and process holds a lease, and a
 * node of the same host can tell that the holder is gone (owner_gone). */
static void make_node_id(struct sd_scheduler *s, char *out, size_t size)
{
    char host[65] = "";
    if (gethostname(host, sizeof(host) - 1) != 0 || !host[0]) {
        snprintf(host, sizeof(host), "host");
    }
    host[sizeof(host) - 1] = '\0';
    uint8_t rnd[8] = {0};
    if (sd_random_bytes(rnd, sizeof(rnd)) < 0) {
        /* getrandom cannot fail on a running Linux; the clock still separates nodes */
        int64_t t = sd_mono_usec() ^ sd_now_usec();
        memcpy(rnd, &t, sizeof(rnd));
    }
    char hex[17];
    for (size_t i = 0; i < sizeof(rnd); i++) {
        snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
    }
    for (char *c = host; *c; c++) {
        *c = *c == '/' ? '_' : *c;
    }
    unsigned long long start = 0;
    local_identity(s->boot, sizeof(s->boot), s->pidns, sizeof(s->pidns), &start);
    snprintf(out, size, "%s/%ld/%s/%s/%s/%llu", host, (long)getpid(), hex,
             s->boot[0] ? s->boot : "-", s->pidns[0] ? s->pidns : "-", start);
}

int sd_scheduler_new(struct sd_hub *hub, struct sd_scheduler **ret)
{
    struct sd_scheduler *s = sd_calloc(1, sizeof(*s));
    s->hub = hub;
    s->version = -1;
    make_node_id(s, s->node_id, sizeof(s->node_id));
    s->lease_usec = sd_scheduler_lease_usec();
    sd_log(SD_LOG_INFO, "scheduler started", "node=\"%s\" run_lease_seconds=%lld", s->node_id,
           (long long)(s->lease_usec / 1000000));
    if (s->lease_usec <= LONGEST_HTTP_TIMEOUT_SEC * 1000000LL) {
        sd_log(SD_LOG_WARN,
               "run lease not longer than the longest connector HTTP timeout; a stalled request "
               "may outlive it and another node start the same run",
               "run_lease_seconds=%lld longest_timeout_seconds=%d",
               (long long)(s->lease_usec / 1000000), LONGEST_HTTP_TIMEOUT_SEC);
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    s->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (pthread_create(&s->thread, NULL, loop, s) != 0) {
        if (s->inotify_fd >= 0) {
            close(s->inotify_fd);
        }
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->cond);
        free(s);
        return -EAGAIN;
    }
    *ret = s;
    return 0;
}

void sd_scheduler_free(struct sd_scheduler *s)
{
    if (!s) {
        return;
    }
    pthread_mutex_lock(&s->lock);
    s->stop = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    for (size_t i = 0; i < s->n; i++) {
        inst_free(s->v[i]);
    }
    free(s->v);
    if (s->inotify_fd >= 0) {
        close(s->inotify_fd);
    }
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s);
}

void sd_scheduler_wake(struct sd_scheduler *s)
{
    pthread_mutex_lock(&s->lock);
    s->woken = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

json_t *sd_scheduler_live(struct sd_scheduler *s, const char *id)
{
    json_t *out = NULL;
    pthread_mutex_lock(&s->lock);
    struct inst *in = find(s, id);
    if (in) {
        out = json_object();
        /* This node's view: running only once it holds the lease and the run has started (a
         * node that found the lease busy shows what it plans next). */
        bool active = in->running && in->run_active && !in->done;
        json_object_set_new(out, "running", json_boolean(active));
        if (active) {
            json_object_set_new(out, "run_started_usec", json_integer(in->run_started_usec));
            json_object_set_new(out, "progress",
                                json_integer((json_int_t)atomic_load(&in->live.progress)));
        }
        if (in->next_usec != INT64_MAX) {
            json_object_set_new(out, "next_run_usec", json_integer(in->next_usec));
        }
    }
    pthread_mutex_unlock(&s->lock);
    return out;
}
