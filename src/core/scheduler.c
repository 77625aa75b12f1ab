/* scheduler.c — the connector scheduler (see scheduler.h).
 *
 * Invariants: `lock` guards the instance table; an instance is `running` from the moment it is
 * handed to a run thread until that thread has joined (reaped by the scheduler loop), so a
 * reload that drops or changes an instance never races with its run — a removed instance is
 * kept (marked `gone`) until its run ends. A "run now" request is the store's
 * run_requested_usec being newer than the one the instance last honoured. */
#include "core/scheduler.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
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

struct inst {
    struct sd_connector_conf conf;
    struct sd_schedule sched;
    bool sched_ok;
    int64_t last_run_usec;     /* from the committed state, then from our own runs */
    int64_t request_seen_usec; /* run_requested_usec already honoured */
    int64_t next_usec;
    bool due_now; /* an inotify event or a request */
    int64_t due_set_usec; /* when due_now was set (for the fair pick) */
    bool running, gone, done;
    pthread_t thread;
    struct sd_connector_live live;
    int64_t run_started_usec;
    int watch_wd;
    struct sd_scheduler *owner;
};

static void mark_due(struct inst *in, int64_t now)
{
    if (!in->due_now) {
        in->due_now = true;
        in->due_set_usec = now;
    }
}

struct sd_scheduler {
    struct sd_hub *hub;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;
    atomic_bool run_stop; /* seen by running connectors */
    bool woken;
    int64_t version;
    struct inst **v;
    size_t n;
    int inotify_fd;
};

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
            mark_due(in, sd_now_usec());
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
            bool changed = in->conf.updated_usec != confs[i].updated_usec;
            int64_t req = confs[i].run_requested_usec;
            if (req > in->request_seen_usec) {
                in->request_seen_usec = req;
                mark_due(in, now);
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
                mark_due(in, now); /* a run was cut short (crash): resume it now */
            }
        }
        json_decref(state);
        if (in->conf.run_requested_usec > in->last_run_usec) {
            mark_due(in, now);
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

static void *run_thread(void *arg)
{
    struct inst *in = arg;
    struct sd_scheduler *s = in->owner;
    sd_connector_run_instance(s->hub, &in->conf, &s->run_stop, &in->live);
    pthread_mutex_lock(&s->lock);
    in->done = true;
    s->woken = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    return NULL;
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
            in->last_run_usec = in->run_started_usec;
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
            cand[i] = (struct sd_scheduler_candidate){
                .tenant_id = in->conf.tenant_id,
                .due_usec = in->gone || !(in->due_now || in->next_usec <= now) ? INT64_MAX : due,
                .running = in->running,
            };
        }
        ssize_t pick =
            sd_scheduler_pick(cand, s->n, SD_SCHEDULER_MAX_RUNS, SD_SCHEDULER_MAX_RUNS_PER_TENANT);
        if (pick < 0) {
            break;
        }
        struct inst *best = s->v[pick];
        best->due_now = false;
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
                    mark_due(s->v[i], sd_now_usec());
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
    /* Stopping: let running connectors reach a safe point, then join them. */
    atomic_store(&s->run_stop, true);
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

int sd_scheduler_new(struct sd_hub *hub, struct sd_scheduler **ret)
{
    struct sd_scheduler *s = sd_calloc(1, sizeof(*s));
    s->hub = hub;
    s->version = -1;
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
    atomic_store(&s->run_stop, true);
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
        json_object_set_new(out, "running", json_boolean(in->running && !in->done));
        if (in->running) {
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
