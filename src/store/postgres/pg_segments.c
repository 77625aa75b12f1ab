/* pg_segments.c — the PostgreSQL side of store/audience.h's segments part: segment definitions
 * (control plane), membership computed in SQL, and snapshots of it. The SQLite backend
 * (sqlite_segments.c) is the reference; the outcomes, errors and orderings are its.
 *
 * Definitions live in `segments`. Writes are sd_pg_tx_run transactions that do not bump the
 * settings version (nothing reloads on a segment, as on SQLite). create counts the scope's
 * segments and inserts in one SERIALIZABLE transaction, so two nodes creating at once cannot
 * pass SD_SEGMENTS_MAX together (the loser is retried and then sees the winner's row). Reads use
 * the pool. list orders ties of created_usec by id in byte order (COLLATE "C"), as SQLite does.
 *
 * Membership: the rule compiles into ONE SELECT (store/seg_sql.c in PostgreSQL's dialect), run
 * unnamed (planned for its values) on a pool connection inside one REPEATABLE READ, READ ONLY
 * transaction: a member page and its e-mails and source ids come from one snapshot, and the
 * writer is never blocked. Each computation's transaction sets work_mem to SEGMENT_WORK_MEM
 * (SET LOCAL, via set_config): a leaf `p.id [NOT] IN (subquery)` is a hashed SubPlan only while
 * the subquery's ids fit in work_mem × hash_mem_multiplier, and at the server's default (4MB) a
 * few hundred thousand ids already make it a scan of the materialised ids per profile
 * (quadratic: `p.id NOT IN` one million ids over one million profiles ran past 30 s at 4MB,
 * 1.3 s at 64MB). 64MB holds a few million ids per leaf; it is per computation, not per server.
 *
 * The budget (audience.h). The statement is sent asynchronously and the calling thread waits
 * for its answer in slices of at most WATCH_USEC, checking the budget between slices: the cancel
 * flag (→ -ECANCELED) and the deadline (→ -ETIME). Past either it sends a cancel request
 * (PQcancel), drains the aborted statement and returns the reason, even if the answer raced the
 * cancel. statement_timeout is set to the remaining time (plus a little) as a backstop on the
 * server; its error (57014) also reads -ETIME. Both are checked before the first statement too.
 * What differs from SQLite, and why:
 *  - the CPU budget: the work runs in the server's backend process, whose CPU time per
 *    statement the client cannot see, and the calling thread only waits (its own CPU time says
 *    nothing about the computation). So budget->cpu_usec bounds the time the computation takes
 *    on the clock, like wall_usec (the smaller of the two wins): stricter than SQLite, as a
 *    wait for the server's CPU is charged too;
 *  - granularity: SQLite stops within about 100 µs of a limit; here within WATCH_USEC plus the
 *    time PostgreSQL takes to act on a cancel request (it checks for interrupts often, but a
 *    cancel is a new connection to the server: about a millisecond on a local one).
 *
 * Member sources: one statement per page (profile_id = ANY(ids)), per member most recently
 * updated first; the e-mail is the first one's that has a string `email`, as SQLite's
 * json_extract typed TEXT; sources are sorted in C by (source, customer_id) with strcmp, as
 * SQLite's code does, so the pages are byte for byte the same.
 *
 * Snapshots: the ids are computed once (as a member query without a limit, same transaction
 * shape and budget), then written through sd_pg_tx_run transactions: the purge and the row (not
 * complete), then chunks of at most SD_SEGMENT_SNAPSHOT_CHUNK ids (one INSERT … unnest each),
 * the last one completing the snapshot. A snapshot page is read in one REPEATABLE READ, READ
 * ONLY transaction with today's flags (the join on profiles), as on SQLite.
 *
 * Statements live in slots 448..575 (pg_internal.h); the rule queries are unnamed. */
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "base/log.h"
#include "pg_internal.h"
#include "pg_segments.h"
#include "store/audience.h"
#include "store/seg_members.h"
#include "store/seg_sql.h"
#include "store/store.h"

#define SEGMENT_WORK_MEM "64MB"   /* work_mem of a membership computation, see above */
#define WATCH_USEC 5000           /* the longest wait for the server between budget checks */
#define CANCEL_GRACE_USEC 1000000 /* how long a cancelled query may take to stop */
#define TIMEOUT_SLACK_MSEC 250    /* statement_timeout beyond the client's own deadline */
#define READ_TX "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"

enum {
    SLOT_INSERT = 448,
    SLOT_COUNT_SCOPE,
    SLOT_UPDATE,
    SLOT_SET_COUNT,
    SLOT_DELETE,
    SLOT_GET,
    SLOT_LIST,
    SLOT_LIMITS,
    SLOT_SNAP_PURGE_MEMBERS,
    SLOT_SNAP_PURGE,
    SLOT_SNAP_INSERT,
    SLOT_SNAP_MEMBERS,
    SLOT_SNAP_COMPLETE,
    SLOT_SNAP_GET,
    SLOT_SNAP_PAGE,
};

#define SEG_COLS                                                                                   \
    "id, tenant_id, env, name, description, rules, coalesce(member_count, -1),"                    \
    " coalesce(computed_usec, 0), created_usec, updated_usec"

static const char SQL_INSERT[] =
    "INSERT INTO segments (id, tenant_id, env, name, description, rules, member_count,"
    " computed_usec, created_usec, updated_usec) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
static const char SQL_COUNT_SCOPE[] = "SELECT count(*) FROM segments WHERE tenant_id = $1"
                                      " AND env = $2";
static const char SQL_UPDATE[] =
    "UPDATE segments SET name = $4, description = $5, rules = $6, member_count = $7,"
    " computed_usec = $8, updated_usec = $9 WHERE id = $1 AND tenant_id = $2 AND env = $3";
static const char SQL_SET_COUNT[] = "UPDATE segments SET member_count = $4, computed_usec = $5"
                                    " WHERE id = $1 AND tenant_id = $2 AND env = $3";
static const char SQL_DELETE[] = "DELETE FROM segments WHERE id = $1 AND tenant_id = $2"
                                 " AND env = $3";
static const char SQL_GET[] =
    "SELECT " SEG_COLS " FROM segments WHERE id = $1 AND tenant_id = $2 AND env = $3";
static const char SQL_LIST[] = "SELECT " SEG_COLS " FROM segments WHERE tenant_id = $1"
                               " AND env = $2 ORDER BY created_usec, id COLLATE \"C\"";
/* The computation's settings, for its transaction only (SET cannot take parameters). */
static const char SQL_LIMITS[] = "SELECT set_config('statement_timeout', $1::text, true),"
                                 " set_config('work_mem', $2::text, true)";
/* The source records of a page's members ($1: their ids as an array), per member most
 * recently updated first. The e-mail only when it is a JSON string, as SQLite reads it. */
static const char SQL_SOURCES[] =
    "SELECT profile_id, source, customer_id, CASE jsonb_typeof(doc::jsonb -> 'email')"
    " WHEN 'string' THEN doc::jsonb ->> 'email' END FROM customers"
    " WHERE profile_id = ANY($1::bigint[]) AND tenant_id = $2::bigint AND env = $3::smallint"
    " ORDER BY profile_id, updated_usec DESC, seq DESC";

/* ---- definitions (control plane) ------------------------------------------------------------- */

static void read_row(const PGresult *res, int i, struct sd_segment_row *r)
{
    r->id = sd_pg_strdup(res, i, 0);
    r->tenant_id = sd_pg_int64(res, i, 1);
    r->env = sd_pg_int64(res, i, 2) == 1 ? SD_ENV_PROD : SD_ENV_TEST;
    r->name = sd_pg_strdup(res, i, 3);
    r->description = sd_pg_strdup(res, i, 4);
    r->rules = sd_pg_strdup(res, i, 5);
    r->member_count = sd_pg_int64(res, i, 6);
    r->computed_usec = sd_pg_int64(res, i, 7);
    r->created_usec = sd_pg_int64(res, i, 8);
    r->updated_usec = sd_pg_int64(res, i, 9);
}

static bool row_ok(const struct sd_segment_row *row)
{
    return row && row->id && row->name && row->description && row->rules && sd_pg_env_ok(row->env);
}

/* $1..$3 the key, $4..$6 the texts, $7..$8 the count (NULL when not counted). */
static void p_row(struct sd_pg_params *p, const struct sd_segment_row *row)
{
    sd_pg_params_init(p);
    sd_pg_p_text(p, row->id);
    sd_pg_p_int(p, row->tenant_id);
    sd_pg_p_int(p, (int64_t)row->env);
    sd_pg_p_text(p, row->name);
    sd_pg_p_text(p, row->description);
    sd_pg_p_text(p, row->rules);
    if (row->member_count >= 0) {
        sd_pg_p_int(p, row->member_count);
        sd_pg_p_int(p, row->computed_usec);
    } else {
        sd_pg_p_text(p, NULL);
        sd_pg_p_text(p, NULL);
    }
}

static void p_key(struct sd_pg_params *p, const char *id, int64_t tenant_id, enum sd_env env)
{
    sd_pg_params_init(p);
    sd_pg_p_text(p, id);
    sd_pg_p_int(p, tenant_id);
    sd_pg_p_int(p, (int64_t)env);
}

static int tx_create(struct pgconn *c, void *arg)
{
    const struct sd_segment_row *row = arg;
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_int(&p, row->tenant_id);
    sd_pg_p_int(&p, (int64_t)row->env);
    PGresult *res = NULL;
    int r = sd_pg_exec(c, SLOT_COUNT_SCOPE, SQL_COUNT_SCOPE, &p, &res);
    if (r < 0) {
        return r;
    }
    int64_t n = sd_pg_int64(res, 0, 0);
    PQclear(res);
    if (n >= SD_SEGMENTS_MAX) {
        return -EDQUOT;
    }
    p_row(&p, row);
    sd_pg_p_int(&p, row->created_usec);
    sd_pg_p_int(&p, row->updated_usec);
    r = sd_pg_exec(c, SLOT_INSERT, SQL_INSERT, &p, NULL);
    return r < 0 ? r : 0;
}

static int seg_create(struct sd_store *s, const struct sd_segment_row *row)
{
    if (!row_ok(row)) {
        return -EINVAL;
    }
    return sd_pg_tx_run(s, "BEGIN ISOLATION LEVEL SERIALIZABLE", false, tx_create, (void *)row);
}

/* One UPDATE/DELETE that must hit exactly the segment of this tenant+env. */
struct change {
    unsigned slot;
    const char *sql;
    struct sd_pg_params p;
};

static int tx_change(struct pgconn *c, void *arg)
{
    struct change *ch = arg;
    int r = sd_pg_exec(c, ch->slot, ch->sql, &ch->p, NULL);
    if (r < 0) {
        return r;
    }
    return r == 0 ? -ENOENT : 0;
}

static int seg_update(struct sd_store *s, const struct sd_segment_row *row)
{
    if (!row_ok(row)) {
        return -EINVAL;
    }
    struct change ch = {.slot = SLOT_UPDATE, .sql = SQL_UPDATE};
    p_row(&ch.p, row);
    sd_pg_p_int(&ch.p, row->updated_usec);
    return sd_pg_tx_run(s, NULL, false, tx_change, &ch);
}

static int seg_set_count(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *id,
                         int64_t member_count, int64_t computed_usec)
{
    if (!id || !sd_pg_env_ok(env) || member_count < 0) {
        return -EINVAL;
    }
    struct change ch = {.slot = SLOT_SET_COUNT, .sql = SQL_SET_COUNT};
    p_key(&ch.p, id, tenant_id, env);
    sd_pg_p_int(&ch.p, member_count);
    sd_pg_p_int(&ch.p, computed_usec);
    return sd_pg_tx_run(s, NULL, false, tx_change, &ch);
}

static int seg_remove(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *id)
{
    if (!id || !sd_pg_env_ok(env)) {
        return -EINVAL;
    }
    struct change ch = {.slot = SLOT_DELETE, .sql = SQL_DELETE};
    p_key(&ch.p, id, tenant_id, env);
    return sd_pg_tx_run(s, NULL, false, tx_change, &ch);
}

static int seg_get(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *id,
                   struct sd_segment_row *ret)
{
    if (!id || !sd_pg_env_ok(env)) {
        return -EINVAL;
    }
    struct sd_pg_params p;
    p_key(&p, id, tenant_id, env);
    PGresult *res = NULL;
    int r = sd_pg_exec_pooled(s, SLOT_GET, SQL_GET, &p, &res);
    if (r < 0) {
        return r;
    }
    if (r == 0) {
        PQclear(res);
        return -ENOENT;
    }
    read_row(res, 0, ret);
    PQclear(res);
    return 0;
}

static int seg_list(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                    struct sd_segment_row **ret, size_t *ret_n)
{
    if (!sd_pg_env_ok(env)) {
        return -EINVAL;
    }
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_int(&p, tenant_id);
    sd_pg_p_int(&p, (int64_t)env);
    PGresult *res = NULL;
    int r = sd_pg_exec_pooled(s, SLOT_LIST, SQL_LIST, &p, &res);
    if (r < 0) {
        return r;
    }
    struct sd_segment_row *v = r ? sd_calloc((size_t)r, sizeof(*v)) : NULL;
    for (int i = 0; i < r; i++) {
        read_row(res, i, &v[i]);
    }
    PQclear(res);
    *ret = v;
    *ret_n = (size_t)r;
    return 0;
}

/* ---- running a computation ------------------------------------------------------------------- */

/* The running computation's limits. */
struct limits {
    int64_t deadline; /* monotonic µs: the smaller of the wall-clock and the CPU budget */
    const atomic_bool *cancel;
    int reason; /* why the computation was cut off: -ECANCELED or -ETIME (0: it was not) */
    const char *what;
    const char *deadline_what;
};

static void limits_init(struct limits *l, const struct sd_seg_budget *b)
{
    int64_t wall = b && b->wall_usec > 0 ? b->wall_usec : SD_SEGMENT_WALL_MAX_USEC;
    const char *what = "wall clock";
    if (b && b->cpu_usec > 0 && b->cpu_usec < wall) {
        wall = b->cpu_usec; /* see the top of the file: the server's time is what is charged */
        what = "cpu time";
    }
    *l = (struct limits){
        .deadline = sd_mono_usec() + wall,
        .cancel = b ? b->cancel : NULL,
        .deadline_what = what,
    };
}

/* Nonzero when the computation must stop now (and why, in l->reason). */
static int over_limits(struct limits *l)
{
    if (l->reason < 0) {
        return 1;
    }
    if (l->cancel && atomic_load_explicit(l->cancel, memory_order_relaxed)) {
        l->reason = -ECANCELED;
        l->what = "cancelled";
        return 1;
    }
    if (sd_mono_usec() > l->deadline) {
        l->reason = -ETIME;
        l->what = l->deadline_what;
        return 1;
    }
    return 0;
}

/* Set the computation's statement_timeout (the remaining budget plus slack) and work_mem for
 * the transaction open on c. */
static int limits_set(struct pgconn *c, const struct limits *l)
{
    int64_t left = l->deadline - sd_mono_usec();
    int64_t msec = (left > 0 ? (left + 999) / 1000 : 1) + TIMEOUT_SLACK_MSEC;
    if (msec > INT32_MAX) {
        msec = INT32_MAX;
    }
    char timeout[24];
    snprintf(timeout, sizeof(timeout), "%" PRId64, msec);
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_text(&p, timeout);
    sd_pg_p_text(&p, SEGMENT_WORK_MEM);
    int r = sd_pg_exec(c, SLOT_LIMITS, SQL_LIMITS, &p, NULL);
    return r < 0 ? r : 0;
}

/* The canceller: a thread of ordinary priority that sends the cancel request of a running
 * computation whose cancel flag is set or whose deadline passed. The computation's own thread
 * (a segment worker) runs at the lowest priority (SCHED_IDLE): while PostgreSQL backends burn
 * both CPUs on computations, it may not be scheduled for seconds, and a cancel that waits for
 * it lets a shutdown wait for the whole query. The canceller needs no CPU but a wake-up every
 * WATCH_USEC, so it reacts at once; the worker still returns the reason when it runs. */
struct watch {
    const atomic_bool *cancel;
    int64_t deadline;
    PGcancel *cn;
    bool fired;
    struct watch *next;
};

static pthread_mutex_t watch_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t watch_cond = PTHREAD_COND_INITIALIZER;
static struct watch *watch_head;
static pthread_once_t watch_once = PTHREAD_ONCE_INIT;

static void *canceller(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&watch_mu);
    for (;;) {
        while (!watch_head) {
            pthread_cond_wait(&watch_cond, &watch_mu);
        }
        int64_t now = sd_mono_usec();
        for (struct watch *w = watch_head; w; w = w->next) {
            if (w->fired || !w->cn) {
                continue;
            }
            bool cancelled = w->cancel && atomic_load_explicit(w->cancel, memory_order_relaxed);
            if (cancelled || now > w->deadline) {
                char err[256];
                if (!PQcancel(w->cn, err, (int)sizeof(err))) {
                    sd_log(SD_LOG_WARN, "segment query cancel request failed", "error=\"%.200s\"",
                           err);
                }
                w->fired = true;
            }
        }
        pthread_mutex_unlock(&watch_mu);
        struct timespec ts = {0, WATCH_USEC * 1000};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&watch_mu);
    }
    return NULL;
}

static void canceller_start(void)
{
    /* A thread inherits its creator's scheduling: the first computation's worker is SCHED_IDLE,
     * so ask for ordinary scheduling explicitly (refused without the privilege to leave
     * SCHED_IDLE: then it runs as its creator does, and a cancel the server ignores is still
     * cut by the worker after CANCEL_GRACE_USEC). Started on first use, not when the store
     * opens: a process that never computes a segment stays single-threaded (fork-safe). */
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_attr_setinheritsched(&a, PTHREAD_EXPLICIT_SCHED);
    pthread_attr_setschedpolicy(&a, SCHED_OTHER);
    struct sched_param sp = {.sched_priority = 0};
    pthread_attr_setschedparam(&a, &sp);
    int rc = pthread_create(&t, &a, canceller, NULL);
    pthread_attr_destroy(&a);
    if (rc != 0) {
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        rc = pthread_create(&t, &a, canceller, NULL);
        pthread_attr_destroy(&a);
    }
    if (rc != 0) {
        sd_log(SD_LOG_WARN, "cannot start the segment query canceller", NULL);
    }
}

static void watch_add(struct watch *w, struct pgconn *c, const struct limits *l)
{
    pthread_once(&watch_once, canceller_start);
    *w = (struct watch){.cancel = l->cancel, .deadline = l->deadline, .cn = PQgetCancel(c->pg)};
    pthread_mutex_lock(&watch_mu);
    w->next = watch_head;
    watch_head = w;
    pthread_cond_signal(&watch_cond);
    pthread_mutex_unlock(&watch_mu);
}

/* Under watch_mu, so the canceller never uses w->cn after it is freed. */
static void watch_remove(struct watch *w)
{
    pthread_mutex_lock(&watch_mu);
    for (struct watch **p = &watch_head; *p; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            break;
        }
    }
    pthread_mutex_unlock(&watch_mu);
    if (w->cn) {
        PQfreeCancel(w->cn);
    }
}

static void cancel_request(struct pgconn *c)
{
    PGcancel *cn = PQgetCancel(c->pg);
    if (!cn) {
        return;
    }
    char err[256];
    if (!PQcancel(cn, err, (int)sizeof(err))) {
        sd_log(SD_LOG_WARN, "segment query cancel request failed", "error=\"%.200s\"", err);
    }
    PQfreeCancel(cn);
}

/* Run sql with the n parameters v (text format, NULL = SQL NULL) on c within the budget l.
 * On success *ret holds the rows (the caller's to PQclear). Past the budget: the statement is
 * cancelled and l->reason returned, whatever the server answered meanwhile. */
static int run_query(struct pgconn *c, const char *sql, int n, const char *const *v,
                     struct limits *l, const char *op, PGresult **ret)
{
    if (over_limits(l)) {
        return l->reason;
    }
    if (!PQsendQueryParams(c->pg, sql, n, NULL, v, NULL, NULL, 0)) {
        return sd_pg_fail(c, NULL, op);
    }
    struct watch w;
    watch_add(&w, c, l);
    bool cut = false, broken = false;
    int64_t cut_at = 0;
    for (;;) {
        if (!cut && over_limits(l)) {
            cancel_request(c);
            cut = true;
            cut_at = sd_mono_usec();
        }
        if (cut && sd_mono_usec() - cut_at > CANCEL_GRACE_USEC) {
            /* Some plans act on a cancel only when they finish (seen: a hashed NOT IN over
             * 150,000 sale documents went on for 10+ s). The caller is not kept waiting for
             * that: the session is dropped (the server ends the query when it next looks at
             * its client) and the connection starts a new one. */
            sd_log(SD_LOG_WARN, "segment query ignored its cancel, dropping its session",
                   "op=\"%s\"", op);
            sd_pg_conn_drop(c);
            broken = true;
            break;
        }
        if (!PQconsumeInput(c->pg)) {
            broken = true;
            break;
        }
        if (!PQisBusy(c->pg)) {
            break;
        }
        int64_t wait = WATCH_USEC;
        if (!cut) {
            int64_t left = l->deadline - sd_mono_usec();
            wait = left < wait ? (left > 0 ? left : 0) : wait;
        }
        struct pollfd pfd = {.fd = PQsocket(c->pg), .events = POLLIN};
        (void)poll(&pfd, 1, (int)((wait + 999) / 1000));
    }
    watch_remove(&w);
    /* The canceller may have cut the query before this thread looked: judge by the limits. */
    if (!cut && over_limits(l)) {
        cut = true;
    }
    PGresult *res = NULL, *got = NULL;
    while (!broken && (res = PQgetResult(c->pg)) != NULL) {
        if (!got) {
            got = res;
        } else {
            PQclear(res);
        }
    }
    if (cut) {
        PQclear(got);
        sd_log(l->reason == -ETIME ? SD_LOG_WARN : SD_LOG_INFO, "segment query cut off",
               "op=\"%s\" limit=\"%s\"", op, l->what);
        return l->reason;
    }
    ExecStatusType st = got ? PQresultStatus(got) : PGRES_FATAL_ERROR;
    if (st != PGRES_TUPLES_OK) {
        const char *state = got ? PQresultErrorField(got, PG_DIAG_SQLSTATE) : NULL;
        int r;
        if (state && strcmp(state, "57014") == 0) {
            /* statement_timeout, the server's backstop of the same deadline */
            l->reason = -ETIME;
            l->what = l->deadline_what;
            sd_log(SD_LOG_WARN, "segment query cut off", "op=\"%s\" limit=\"%s\"", op,
                   "statement_timeout");
            r = -ETIME;
        } else {
            r = sd_pg_fail(c, got, op);
        }
        PQclear(got);
        return r;
    }
    *ret = got;
    return 0;
}

/* Begin the computation's read transaction on c and set its limits. */
static int read_begin(struct pgconn *c, const struct limits *l)
{
    int r = sd_pg_run(c, READ_TX);
    if (r < 0) {
        return r;
    }
    c->in_tx = true;
    return limits_set(c, l);
}

/* End it: COMMIT after success (a read: nothing to keep, but the snapshot ends), else
 * ROLLBACK (a cancelled statement left the transaction aborted). */
static int read_end(struct pgconn *c, int r)
{
    if (c->in_tx && !sd_pg_conn_lost(c)) {
        int e = sd_pg_run(c, r < 0 ? "ROLLBACK" : "COMMIT");
        if (r >= 0 && e < 0) {
            r = e;
        }
    }
    c->in_tx = false;
    return r;
}

/* The parameters of a compiled query: the scope, after and limit (unless a count; limit < 0:
 * NULL, no limit) and the rule's values, as text. */
struct qparams {
    int n;
    const char **v;
    char (*num)[24];
};

static void qparams_make(struct qparams *qp, const struct sd_seg_sql *q, int64_t tenant_id,
                         enum sd_env env, bool count_only, int64_t after, int64_t limit)
{
    size_t n = q->first_param - 1 + q->n_params;
    qp->n = (int)n;
    qp->v = sd_calloc(n, sizeof(*qp->v));
    qp->num = sd_calloc(n, sizeof(*qp->num));
    snprintf(qp->num[0], sizeof(qp->num[0]), "%" PRId64, tenant_id);
    snprintf(qp->num[1], sizeof(qp->num[1]), "%d", (int)env);
    qp->v[0] = qp->num[0];
    qp->v[1] = qp->num[1];
    if (!count_only) {
        snprintf(qp->num[2], sizeof(qp->num[2]), "%" PRId64, after);
        qp->v[2] = qp->num[2];
        if (limit >= 0) {
            snprintf(qp->num[3], sizeof(qp->num[3]), "%" PRId64, limit);
            qp->v[3] = qp->num[3];
        }
    }
    for (size_t k = 0; k < q->n_params; k++) {
        size_t at = q->first_param - 1 + k;
        if (q->params[k].type == SD_SEG_P_INT) {
            snprintf(qp->num[at], sizeof(qp->num[at]), "%" PRId64, q->params[k].i);
            qp->v[at] = qp->num[at];
        } else {
            qp->v[at] = q->params[k].text;
        }
    }
}

static void qparams_release(struct qparams *qp)
{
    free(qp->v);
    free(qp->num);
}

/* Run the compiled rule q on c (inside its read transaction) within l: the count's one row, or
 * the member ids > after (at most limit; < 0: all). */
static int rule_query(struct pgconn *c, const struct sd_seg_sql *q, int64_t tenant_id,
                      enum sd_env env, bool count_only, int64_t after, int64_t limit,
                      struct limits *l, const char *op, PGresult **ret)
{
    /* The text holds no values (they are parameters), so it may be logged. */
    sd_log(SD_LOG_DEBUG, "segment query", "sql=\"%s\"", q->sql);
    struct qparams qp;
    qparams_make(&qp, q, tenant_id, env, count_only, after, limit);
    int r = run_query(c, q->sql, qp.n, qp.v, l, op, ret);
    qparams_release(&qp);
    return r;
}

/* Borrow a connection for a computation, with its budget started and checked (one already
 * spent stops here) and its read transaction begun. */
static int computation_open(struct sd_store *s, const struct sd_seg_budget *budget,
                            struct limits *l, struct pgconn **ret)
{
    limits_init(l, budget);
    if (over_limits(l)) {
        return l->reason;
    }
    struct pgconn *c = NULL;
    int r = sd_pg_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    r = read_begin(c, l);
    if (r < 0) {
        read_end(c, r);
        sd_pg_pool_put(s, c);
        return r;
    }
    *ret = c;
    return 0;
}

static int computation_close(struct sd_store *s, struct pgconn *c, int r)
{
    r = read_end(c, r);
    sd_pg_pool_put(s, c);
    return r;
}

/* Compile rule (a malformed tree is refused before anything is borrowed), then open a
 * computation for it. On success the caller releases *q and closes *ret. */
static int rule_open(struct sd_store *s, const struct sd_seg_rule *rule, int64_t now_usec,
                     bool count_only, const struct sd_seg_budget *budget, struct sd_seg_sql *q,
                     struct limits *l, struct pgconn **ret)
{
    int r = sd_seg_sql_build(rule, now_usec, count_only, &sd_seg_dialect_pg, q);
    if (r < 0) {
        return r;
    }
    r = computation_open(s, budget, l, ret);
    if (r < 0) {
        sd_seg_sql_release(q);
    }
    return r;
}

static int seg_count(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                     const struct sd_seg_rule *rule, int64_t now_usec,
                     const struct sd_seg_budget *budget, int64_t *ret)
{
    if (!rule || !sd_pg_env_ok(env)) {
        return -EINVAL;
    }
    struct sd_seg_sql q = {0};
    struct limits l;
    struct pgconn *c = NULL;
    int r = rule_open(s, rule, now_usec, true, budget, &q, &l, &c);
    if (r < 0) {
        return r;
    }
    PGresult *res = NULL;
    r = rule_query(c, &q, tenant_id, env, true, 0, 0, &l, "segment count", &res);
    sd_seg_sql_release(&q);
    if (r == 0) {
        if (PQntuples(res) == 1) {
            *ret = sd_pg_int64(res, 0, 0);
        } else {
            r = sd_pg_fail(c, NULL, "segment count: no row");
        }
        PQclear(res);
    }
    return computation_close(s, c, r);
}

/* Fill the e-mail and source ids of every member of page (ids ascending) from their source
 * records, in one statement on c (inside its read transaction). */
static int member_sources(struct pgconn *c, int64_t tenant_id, enum sd_env env, struct limits *l,
                          struct sd_seg_member_page *page)
{
    if (page->n == 0) {
        return 0;
    }
    struct sd_buf ids;
    sd_buf_init(&ids);
    for (size_t i = 0; i < page->n; i++) {
        sd_buf_printf(&ids, "%c%" PRId64, i ? ',' : '{', page->v[i].profile_id);
    }
    sd_buf_puts(&ids, "}");
    char tenant[24], envs[24];
    snprintf(tenant, sizeof(tenant), "%" PRId64, tenant_id);
    snprintf(envs, sizeof(envs), "%d", (int)env);
    const char *v[3] = {ids.data, tenant, envs};
    PGresult *res = NULL;
    int r = run_query(c, SQL_SOURCES, 3, v, l, "segment member sources", &res);
    sd_buf_release(&ids);
    if (r < 0) {
        return r;
    }
    int rows = PQntuples(res);
    struct sd_seg_sources_cursor cur = {0};
    for (int i = 0; i < rows; i++) {
        sd_seg_sources_add(page, &cur, sd_pg_int64(res, i, 0), sd_pg_text(res, i, 1),
                           sd_pg_text(res, i, 2), sd_pg_text(res, i, 3));
    }
    PQclear(res);
    sd_seg_sources_sort(page);
    return 0;
}

/* The page of ids in res (at most limit; one more means has_more), then their sources. */
static int fill_page(struct pgconn *c, int64_t tenant_id, enum sd_env env, struct limits *l,
                     const PGresult *res, size_t limit, struct sd_seg_member_page *page)
{
    int rows = PQntuples(res);
    page->v = sd_calloc(limit, sizeof(*page->v));
    for (int i = 0; i < rows && sd_seg_page_add(page, limit, sd_pg_int64(res, i, 0)); i++) {
    }
    int r = member_sources(c, tenant_id, env, l, page);
    if (r == 0) {
        sd_seg_page_done(page);
    }
    return r;
}

static int seg_members(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                       const struct sd_seg_rule *rule, int64_t now_usec, int64_t after,
                       size_t limit, const struct sd_seg_budget *budget,
                       struct sd_seg_member_page *ret)
{
    if (!rule || !sd_pg_env_ok(env) || limit < 1 || limit > SD_SEGMENT_MEMBERS_MAX) {
        return -EINVAL;
    }
    struct sd_seg_sql q = {0};
    struct limits l;
    struct pgconn *c = NULL;
    int r = rule_open(s, rule, now_usec, false, budget, &q, &l, &c);
    if (r < 0) {
        return r;
    }
    struct sd_seg_member_page page = {.next_after = after};
    PGresult *res = NULL;
    r = rule_query(c, &q, tenant_id, env, false, after, (int64_t)limit + 1, &l, "segment members",
                   &res);
    sd_seg_sql_release(&q);
    if (r == 0) {
        r = fill_page(c, tenant_id, env, &l, res, limit, &page);
        PQclear(res);
    }
    r = computation_close(s, c, r);
    return sd_seg_page_hand(r, &page, ret);
}

/* ---- snapshots ------------------------------------------------------------------------------- */

/* The snapshots to purge: expired ones ($1 now), and this scope's ($2, $3) beyond the newest
 * $4 (the new one makes the cap). */
#define SNAP_DOOMED                                                                                \
    "SELECT id FROM segment_snapshots WHERE expires_usec <= $1 UNION SELECT id FROM"               \
    " (SELECT id FROM segment_snapshots WHERE tenant_id = $2 AND env = $3"                         \
    " ORDER BY created_usec DESC, id DESC OFFSET $4) older"
static const char SQL_SNAP_PURGE_MEMBERS[] =
    "DELETE FROM segment_snapshot_members WHERE snapshot_id IN (" SNAP_DOOMED ")";
static const char SQL_SNAP_PURGE[] = "DELETE FROM segment_snapshots WHERE id IN (" SNAP_DOOMED ")";
static const char SQL_SNAP_INSERT[] =
    "INSERT INTO segment_snapshots (id, tenant_id, env, segment_id, member_count, created_usec,"
    " expires_usec, complete) VALUES ($1, $2, $3, $4, $5, $6, $7, 0)";
static const char SQL_SNAP_MEMBERS[] =
    "INSERT INTO segment_snapshot_members (snapshot_id, profile_id)"
    " SELECT $1, unnest($2::bigint[])";
static const char SQL_SNAP_COMPLETE[] = "UPDATE segment_snapshots SET complete = 1 WHERE id = $1";
static const char SQL_SNAP_GET[] =
    "SELECT member_count FROM segment_snapshots WHERE id = $1 AND tenant_id = $2 AND env = $3"
    " AND segment_id = $4 AND complete = 1 AND expires_usec > $5";
/* Today's flags apply: a profile opted out, suppressed, erased or merged away since is left
 * out (the join finds no profile of this scope with both flags 0). */
static const char SQL_SNAP_PAGE[] =
    "SELECT m.profile_id FROM segment_snapshot_members m JOIN profiles p ON p.id = m.profile_id"
    " WHERE m.snapshot_id = $1 AND m.profile_id > $2 AND p.tenant_id = $3 AND p.env = $4"
    " AND p.opt_out = 0 AND p.suppressed = 0"
    " ORDER BY m.profile_id LIMIT $5";

/* Every member id of rule at now_usec, in id order, from one read transaction. */
static int member_ids(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                      const struct sd_seg_rule *rule, int64_t now_usec,
                      const struct sd_seg_budget *budget, int64_t **ret, size_t *ret_n)
{
    struct sd_seg_sql q = {0};
    struct limits l;
    struct pgconn *c = NULL;
    int r = rule_open(s, rule, now_usec, false, budget, &q, &l, &c);
    if (r < 0) {
        return r;
    }
    PGresult *res = NULL;
    r = rule_query(c, &q, tenant_id, env, false, 0, -1, &l, "segment snapshot", &res);
    sd_seg_sql_release(&q);
    r = computation_close(s, c, r);
    if (r < 0) {
        PQclear(res);
        return r;
    }
    int rows = PQntuples(res);
    int64_t *v = rows ? sd_calloc((size_t)rows, sizeof(*v)) : NULL;
    for (int i = 0; i < rows; i++) {
        v[i] = sd_pg_int64(res, i, 0);
    }
    PQclear(res);
    *ret = v;
    *ret_n = (size_t)rows;
    return 0;
}

struct snap_open_args {
    const struct sd_seg_snapshot_req *q;
    int64_t id;
};

/* The first transaction: purge, then the snapshot's row (not complete yet). */
static int tx_snap_open(struct pgconn *c, void *arg)
{
    const struct snap_open_args *a = arg;
    const struct sd_seg_snapshot_req *q = a->q;
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_int(&p, q->now_usec);
    sd_pg_p_int(&p, q->tenant_id);
    sd_pg_p_int(&p, (int64_t)q->env);
    sd_pg_p_int(&p, SD_SEGMENT_SNAPSHOTS_MAX - 1);
    int r = sd_pg_exec(c, SLOT_SNAP_PURGE_MEMBERS, SQL_SNAP_PURGE_MEMBERS, &p, NULL);
    if (r >= 0) {
        r = sd_pg_exec(c, SLOT_SNAP_PURGE, SQL_SNAP_PURGE, &p, NULL);
    }
    if (r < 0) {
        return r;
    }
    sd_pg_params_init(&p);
    sd_pg_p_int(&p, a->id);
    sd_pg_p_int(&p, q->tenant_id);
    sd_pg_p_int(&p, (int64_t)q->env);
    sd_pg_p_text(&p, q->segment_id);
    sd_pg_p_int(&p, q->count);
    sd_pg_p_int(&p, q->now_usec);
    sd_pg_p_int(&p, q->now_usec + q->ttl_usec);
    r = sd_pg_exec(c, SLOT_SNAP_INSERT, SQL_SNAP_INSERT, &p, NULL);
    return r < 0 ? r : 0;
}

struct snap_chunk_args {
    int64_t id;
    const char *ids; /* the chunk's ids as an array literal */
    bool last;
};

/* One transaction writing a chunk of ids (and, when last, completing the snapshot). */
static int tx_snap_chunk(struct pgconn *c, void *arg)
{
    const struct snap_chunk_args *a = arg;
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_int(&p, a->id);
    sd_pg_p_text(&p, a->ids);
    int r = sd_pg_exec(c, SLOT_SNAP_MEMBERS, SQL_SNAP_MEMBERS, &p, NULL);
    if (r >= 0 && a->last) {
        sd_pg_params_init(&p);
        sd_pg_p_int(&p, a->id);
        r = sd_pg_exec(c, SLOT_SNAP_COMPLETE, SQL_SNAP_COMPLETE, &p, NULL);
    }
    return r < 0 ? r : 0;
}

static int snap_open(struct sd_store *s, const struct sd_seg_snapshot_req *q, int64_t id)
{
    struct snap_open_args a = {.q = q, .id = id};
    return sd_pg_tx_run(s, NULL, false, tx_snap_open, &a);
}

static int snap_chunk(struct sd_store *s, int64_t id, const int64_t *v, size_t n, bool last)
{
    struct sd_buf ids;
    sd_buf_init(&ids);
    sd_buf_puts(&ids, "{");
    for (size_t i = 0; i < n; i++) {
        sd_buf_printf(&ids, "%s%" PRId64, i ? "," : "", v[i]);
    }
    sd_buf_puts(&ids, "}");
    struct snap_chunk_args a = {.id = id, .ids = ids.data, .last = last};
    int r = sd_pg_tx_run(s, NULL, false, tx_snap_chunk, &a);
    sd_buf_release(&ids);
    return r;
}

static const struct sd_seg_snapshot_io snap_io = {
    .members = member_ids, .open = snap_open, .chunk = snap_chunk};

static int snapshot_create(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                           const char *segment_id, const struct sd_seg_rule *rule, int64_t now_usec,
                           int64_t ttl_usec, const struct sd_seg_budget *budget, int64_t *ret_id,
                           int64_t *ret_count)
{
    return sd_seg_snapshot_create(&snap_io, s, tenant_id, env, segment_id, rule, now_usec, ttl_usec,
                                  budget, ret_id, ret_count);
}

static int snapshot_members(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                            const char *segment_id, int64_t id, int64_t now_usec, int64_t after,
                            size_t limit, struct sd_seg_member_page *ret)
{
    if (!segment_id || !sd_pg_env_ok(env) || limit < 1 || limit > SD_SEGMENT_MEMBERS_MAX) {
        return -EINVAL;
    }
    struct limits l;
    struct pgconn *c = NULL;
    int r = computation_open(s, NULL, &l, &c);
    if (r < 0) {
        return r;
    }
    struct sd_seg_member_page page = {.next_after = after};
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_int(&p, id);
    sd_pg_p_int(&p, tenant_id);
    sd_pg_p_int(&p, (int64_t)env);
    sd_pg_p_text(&p, segment_id);
    sd_pg_p_int(&p, now_usec);
    PGresult *res = NULL;
    r = sd_pg_exec(c, SLOT_SNAP_GET, SQL_SNAP_GET, &p, &res);
    if (r == 0) {
        PQclear(res);
        r = -ENOENT;
    } else if (r > 0) {
        page.total = sd_pg_int64(res, 0, 0);
        PQclear(res);
        sd_pg_params_init(&p);
        sd_pg_p_int(&p, id);
        sd_pg_p_int(&p, after);
        sd_pg_p_int(&p, tenant_id);
        sd_pg_p_int(&p, (int64_t)env);
        sd_pg_p_int(&p, (int64_t)limit + 1);
        r = sd_pg_exec(c, SLOT_SNAP_PAGE, SQL_SNAP_PAGE, &p, &res);
        if (r >= 0) {
            r = fill_page(c, tenant_id, env, &l, res, limit, &page);
            PQclear(res);
        }
    }
    r = computation_close(s, c, r);
    return sd_seg_page_hand(r, &page, ret);
}

const struct sd_store_segment_ops sd_pg_segment_ops = SD_SEGMENT_OPS_INIT;
