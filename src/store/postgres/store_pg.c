/* store_pg.c — the PostgreSQL backend of store.h: one database (a libpq conninfo or
 * postgresql:// URL) shared by any number of stagedoor processes ("nodes").
 *
 * This file holds the ops table sd_store_pg_ops, open and close, connections, the pool, the
 * statement and parameter helpers, transactions with retry, migrations and the write path's
 * transaction (pg_internal.h documents the helpers). The operations live by concern in the
 * pg_*.c files beside it.
 *
 * Connections: `writer` belongs to the single writer thread of this process; everything else
 * borrows from a pool of at most POOL_MAX connections for one call. A connection found broken
 * (the server restarted, the network dropped) is reset before its next use, so a lost
 * connection costs the calls that were running on it, never the process's store.
 *
 * Change order across nodes (store.h obligation 1). Every transaction that numbers records
 * takes one transaction-level advisory lock (WRITE_LOCK_KEY) before its first number and keeps
 * it to COMMIT; the last number handed out lives in meta('seq') and is read under the lock and
 * written back before COMMIT. So numbers are handed out in commit order whichever node writes,
 * and a reader that saw seq N never later sees a commit with a smaller one: a change cursor
 * stays gap-free. The price: the write path of all nodes is one queue (each node still groups
 * its requests into one transaction per group commit); reads, control-plane calls, leases and
 * segment computations run beside it.
 *
 * Durability (obligation 2): synchronous_commit is forced on for every connection, so COMMIT
 * returns once the commit record is flushed; a COMMIT whose answer was lost with the connection
 * is reported as -EIO, never as success.
 *
 * Migrations: src/store/postgres/schema/NNNN_*.sql, embedded at build time, applied in order
 * under a session advisory lock (MIGRATE_LOCK_KEY), so two nodes starting at once apply each
 * file once; schema_version records the number of the last file applied (each file's first
 * line is "-- NNNN_name.sql": numbers may have gaps, never repeat). Each file runs in its own
 * transaction. */
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "base/log.h"
#include "pg_internal.h"
#include "pg_leases.h"
#include "pg_outbox.h"
#include "pg_profiles.h"
#include "pg_records.h"
#include "pg_segments.h"
#include "store/alerts.h"
#include "store/runs.h"
#include "store/store.h"
#include "store/observe.h"

extern const char *const sd_pg_schema[];
extern const unsigned sd_pg_schema_count;

#define POOL_MAX 8
#define TX_RETRIES 5
/* Advisory lock keys: fixed numbers of stagedoor's own ("sd" + purpose). */
#define MIGRATE_LOCK_KEY INT64_C(0x7364000000000001)
#define WRITE_LOCK_KEY INT64_C(0x7364000000000002)

/* ---- parameters and results ------------------------------------------------------------------ */

void sd_pg_params_init(struct sd_pg_params *p)
{
    p->n = 0;
}

static int param_slot(struct sd_pg_params *p)
{
    if (p->n >= SD_PG_MAX_PARAMS) {
        sd_log(SD_LOG_ERROR, "too many statement parameters", "max=%d", SD_PG_MAX_PARAMS);
        abort();
    }
    int i = p->n++;
    p->len[i] = 0;
    p->fmt[i] = 0;
    return i;
}

void sd_pg_p_text(struct sd_pg_params *p, const char *s)
{
    int i = param_slot(p);
    p->v[i] = s;
}

void sd_pg_p_int(struct sd_pg_params *p, int64_t v)
{
    int i = param_slot(p);
    snprintf(p->num[i], sizeof(p->num[i]), "%" PRId64, v);
    p->v[i] = p->num[i];
}

void sd_pg_p_bool(struct sd_pg_params *p, bool v)
{
    sd_pg_p_int(p, v ? 1 : 0);
}

void sd_pg_p_bytes(struct sd_pg_params *p, const void *b, size_t n)
{
    if (n > INT32_MAX) {
        sd_log(SD_LOG_ERROR, "bytea parameter too large", "bytes=%zu", n);
        abort();
    }
    int i = param_slot(p);
    /* A zero-length value still needs a non-NULL pointer (NULL means SQL NULL). */
    p->v[i] = n ? (const char *)b : "";
    p->len[i] = (int)n;
    p->fmt[i] = 1;
}

void sd_pg_p_scope(struct sd_pg_params *p, int64_t tenant_id, enum sd_env env, const char *key)
{
    sd_pg_p_int(p, tenant_id);
    sd_pg_p_int(p, (int64_t)env);
    if (key) {
        sd_pg_p_text(p, key);
    }
}

int64_t sd_pg_int64(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col)) {
        return 0;
    }
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

bool sd_pg_isnull(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) != 0;
}

char *sd_pg_strdup(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col)) {
        return NULL;
    }
    return sd_strdup(PQgetvalue(r, row, col));
}

const char *sd_pg_text(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col)) {
        return NULL;
    }
    return PQgetvalue(r, row, col);
}

int sd_pg_bytes(const PGresult *r, int row, int col, uint8_t **ret, size_t *ret_n)
{
    if (PQgetisnull(r, row, col)) {
        *ret = NULL;
        *ret_n = 0;
        return 0;
    }
    size_t n = 0;
    unsigned char *b = PQunescapeBytea((const unsigned char *)PQgetvalue(r, row, col), &n);
    if (!b) {
        sd_log(SD_LOG_ERROR, "cannot decode a bytea column", "col=%d", col);
        return -EIO;
    }
    uint8_t *copy = sd_malloc(n ? n : 1);
    memcpy(copy, b, n);
    PQfreemem(b);
    *ret = copy;
    *ret_n = n;
    return 0;
}

/* ---- errors and statements ------------------------------------------------------------------- */

int sd_pg_fail(struct pgconn *c, const PGresult *res, const char *op)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    /* The primary message names relations and constraints, never values (DETAIL does: it is
     * not logged). */
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!msg && c && c->pg) {
        msg = PQerrorMessage(c->pg);
    }
    bool lost = c && c->pg && PQstatus(c->pg) != CONNECTION_OK;
    int r = -EIO;
    if (lost) {
        r = -ECONNRESET;
    } else if (state && strcmp(state, "23505") == 0) {
        r = -EEXIST;
    } else if (state && strncmp(state, "23", 2) == 0) {
        r = -EINVAL;
    } else if (state && (strcmp(state, "53100") == 0 || strcmp(state, "53200") == 0 ||
                         strcmp(state, "53400") == 0)) {
        r = -ENOSPC;
    } else if (state && (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0)) {
        r = -EAGAIN;
    } else if (state && (strcmp(state, "55P03") == 0 || strcmp(state, "57014") == 0)) {
        r = -ETIMEDOUT;
    }
    /* A duplicate key is an expected outcome callers turn into -EEXIST answers. */
    if (r != -EEXIST) {
        sd_log(r == -EAGAIN ? SD_LOG_WARN : SD_LOG_ERROR, "postgresql operation failed",
               "op=\"%.60s\" sqlstate=%s error=\"%.200s\"", op ? op : "?", state ? state : "-",
               msg ? msg : "?");
    }
    return r;
}

static int result_rows(PGresult *res)
{
    if (PQresultStatus(res) == PGRES_TUPLES_OK) {
        return PQntuples(res);
    }
    const char *n = PQcmdTuples(res);
    return n && *n ? atoi(n) : 0; /* NOLINT: libpq's own decimal text */
}

static int finish(struct pgconn *c, PGresult *res, const char *op, PGresult **ret)
{
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        int r = sd_pg_fail(c, res, op);
        PQclear(res);
        return r;
    }
    int n = result_rows(res);
    if (ret) {
        *ret = res;
    } else {
        PQclear(res);
    }
    return n;
}

/* ---- pipelines and the writer's deferred savepoint commands -----------------------------------
 * The writer's savepoint commands cost a round trip each if sent on their own, and nothing
 * needs their answer before the next statement: SAVEPOINT and RELEASE are noted in
 * c->pending and go out ahead of the next statement on the connection, in the same pipeline
 * (a failure of one of them fails that statement, the later ones are not run). A savepoint in
 * which no statement ran is never sent; COMMIT and ROLLBACK drop what is pending (COMMIT
 * keeps the work of open savepoints). When the transaction is already failed, the commands are
 * sent at once, so their failure lands on the request that caused it. */
enum { PEND_RELEASE = 1u, PEND_SAVEPOINT = 2u };
static const char *const PENDING_SQL[] = {"RELEASE SAVEPOINT sp", "SAVEPOINT sp"};

static void stmt_name(char name[16], unsigned slot)
{
    if (slot >= SD_PG_SLOTS) {
        sd_log(SD_LOG_ERROR, "statement slot out of range", "slot=%u", slot);
        abort();
    }
    snprintf(name, 16, "s%u", slot);
}

static bool slot_prepared(const struct pgconn *c, unsigned slot)
{
    return c->prepared[slot / 64] & (UINT64_C(1) << (slot % 64));
}

/* What one pipeline queued, in order. */
struct queued {
    enum { Q_PENDING, Q_PREPARE, Q_EXEC } kind;
    size_t idx;
};

int sd_pg_exec_pipeline(struct pgconn *c, struct sd_pg_stmt *st, size_t n)
{
    PGconn *pg = c->pg;
    unsigned pend = c->pending;
    c->pending = 0;
    for (size_t i = 0; i < n; i++) {
        st[i].result = -ECANCELED;
        if (st[i].ret) {
            *st[i].ret = NULL;
        }
    }
    if (!PQenterPipelineMode(pg)) {
        return sd_pg_fail(c, NULL, "pipeline");
    }
    struct queued *q = sd_calloc(2 * n + 2, sizeof(*q));
    size_t nq = 0;
    bool sent = true;
    for (size_t k = 0; k < 2; k++) {
        if (pend & (1u << k)) {
            sent = sent && PQsendQueryParams(pg, PENDING_SQL[k], 0, NULL, NULL, NULL, NULL, 0);
            q[nq++] = (struct queued){Q_PENDING, k};
        }
    }
    for (size_t i = 0; i < n && sent; i++) {
        const struct sd_pg_params *p = st[i].p;
        int np = p ? p->n : 0;
        if (st[i].slot < 0) {
            sent = PQsendQueryParams(pg, st[i].sql, np, NULL, p ? p->v : NULL, p ? p->len : NULL,
                                     p ? p->fmt : NULL, 0);
            q[nq++] = (struct queued){Q_EXEC, i};
            continue;
        }
        char name[16];
        stmt_name(name, (unsigned)st[i].slot);
        if (!slot_prepared(c, (unsigned)st[i].slot)) {
            sent = PQsendPrepare(pg, name, st[i].sql, 0, NULL);
            q[nq++] = (struct queued){Q_PREPARE, i};
        }
        sent = sent && PQsendQueryPrepared(pg, name, np, p ? p->v : NULL, p ? p->len : NULL,
                                           p ? p->fmt : NULL, 0);
        q[nq++] = (struct queued){Q_EXEC, i};
    }
    sent = sent && PQpipelineSync(pg);
    int first = 0;
    if (!sent) {
        first = sd_pg_fail(c, NULL, "pipeline");
        nq = 0;
    }
    for (size_t j = 0; j < nq; j++) {
        PGresult *res = PQgetResult(pg);
        if (!res) {
            first = first ? first : sd_pg_fail(c, NULL, "pipeline");
            break;
        }
        PGresult *end = PQgetResult(pg); /* each query's results end with NULL */
        PQclear(end);
        ExecStatusType stt = PQresultStatus(res);
        struct sd_pg_stmt *x = q[j].kind == Q_PENDING ? NULL : &st[q[j].idx];
        if (stt == PGRES_PIPELINE_ABORTED) {
            PQclear(res);
            continue;
        }
        if (q[j].kind == Q_EXEC) {
            x->result = finish(c, res, x->sql, x->ret);
            first = first ? first : (x->result < 0 ? x->result : 0);
            continue;
        }
        if (stt == PGRES_COMMAND_OK) {
            if (q[j].kind == Q_PREPARE) {
                c->prepared[x->slot / 64] |= UINT64_C(1) << (x->slot % 64);
            }
        } else {
            int r = sd_pg_fail(c, res, x ? x->sql : PENDING_SQL[q[j].idx]);
            if (x) {
                x->result = r;
            }
            first = first ? first : r;
        }
        PQclear(res);
    }
    free(q);
    if (sent && PQstatus(pg) == CONNECTION_OK) {
        PGresult *sync = PQgetResult(pg);
        if (PQresultStatus(sync) != PGRES_PIPELINE_SYNC) {
            first = first ? first : sd_pg_fail(c, sync, "pipeline sync");
        }
        PQclear(sync);
    }
    if (!PQexitPipelineMode(pg) && PQstatus(pg) == CONNECTION_OK) {
        first = first ? first : sd_pg_fail(c, NULL, "pipeline end");
    }
    return first;
}

int sd_pg_exec(struct pgconn *c, unsigned slot, const char *sql, const struct sd_pg_params *p,
               PGresult **ret)
{
    char name[16];
    stmt_name(name, slot);
    if (c->pending) {
        struct sd_pg_stmt one = {.slot = (int)slot, .sql = sql, .p = p, .ret = ret};
        int r = sd_pg_exec_pipeline(c, &one, 1);
        return r < 0 ? r : one.result; /* a failed savepoint command fails the statement */
    }
    if (!slot_prepared(c, slot)) {
        PGresult *pr = PQprepare(c->pg, name, sql, 0, NULL);
        if (!pr || PQresultStatus(pr) != PGRES_COMMAND_OK) {
            int r = sd_pg_fail(c, pr, sql);
            PQclear(pr);
            return r;
        }
        PQclear(pr);
        c->prepared[slot / 64] |= UINT64_C(1) << (slot % 64);
    }
    int n = p ? p->n : 0;
    PGresult *res =
        PQexecPrepared(c->pg, name, n, p ? p->v : NULL, p ? p->len : NULL, p ? p->fmt : NULL, 0);
    return finish(c, res, sql, ret);
}

int sd_pg_exec_text(struct pgconn *c, const char *sql, const struct sd_pg_params *p, PGresult **ret)
{
    if (c->pending) {
        struct sd_pg_stmt one = {.slot = -1, .sql = sql, .p = p, .ret = ret};
        int r = sd_pg_exec_pipeline(c, &one, 1);
        return r < 0 ? r : one.result;
    }
    int n = p ? p->n : 0;
    PGresult *res =
        PQexecParams(c->pg, sql, n, NULL, p ? p->v : NULL, p ? p->len : NULL, p ? p->fmt : NULL, 0);
    return finish(c, res, sql, ret);
}

/* What is pending goes out before a command run on its own. */
static int flush_pending(struct pgconn *c)
{
    return c->pending ? sd_pg_exec_pipeline(c, NULL, 0) : 0;
}

int sd_pg_run(struct pgconn *c, const char *sql)
{
    if (flush_pending(c) < 0) {
        return -EIO;
    }
    return finish(c, PQexec(c->pg, sql), sql, NULL) < 0 ? -EIO : 0;
}

/* sd_pg_run with the error kept (BEGIN/COMMIT callers need -EAGAIN and -ECONNRESET). */
static int run_keep(struct pgconn *c, const char *sql)
{
    int r = flush_pending(c);
    if (r < 0) {
        return r;
    }
    r = finish(c, PQexec(c->pg, sql), sql, NULL);
    return r < 0 ? r : 0;
}

/* ---- connections ----------------------------------------------------------------------------- */

static void notice_quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message; /* NOTICEs (e.g. "relation already exists, skipping") are not our log's */
}

static int conn_setup(struct pgconn *c)
{
    /* Durability before "accepted" whatever the server's default; UTC so that any timestamp
     * PostgreSQL prints is the same on every node; no statement waits forever for a lock. */
    static const char setup[] = "SET synchronous_commit = on; SET TimeZone = 'UTC';"
                                " SET lock_timeout = '30s'; SET application_name = 'stagedoor'";
    memset(c->prepared, 0, sizeof(c->prepared));
    c->in_tx = false;
    c->pending = 0;
    PQsetNoticeProcessor(c->pg, notice_quiet, NULL);
    return sd_pg_run(c, setup);
}

static int conn_open(const char *conninfo, struct pgconn **ret)
{
    struct pgconn *c = sd_calloc(1, sizeof(*c));
    c->pg = PQconnectdb(conninfo);
    if (!c->pg || PQstatus(c->pg) != CONNECTION_OK) {
        /* libpq's message may quote the host and user, never the password. */
        sd_log(SD_LOG_ERROR, "cannot connect to postgresql", "error=\"%.200s\"",
               c->pg ? PQerrorMessage(c->pg) : "out of memory");
        PQfinish(c->pg);
        free(c);
        return -ECONNREFUSED;
    }
    int r = conn_setup(c);
    if (r < 0) {
        PQfinish(c->pg);
        free(c);
        return r;
    }
    *ret = c;
    return 0;
}

static void conn_close(struct pgconn *c)
{
    if (c) {
        PQfinish(c->pg);
        free(c);
    }
}

/* A connection that lost its server is reset (a new session: prepared statements go). */
static int conn_ensure(struct pgconn *c)
{
    if (PQstatus(c->pg) == CONNECTION_OK) {
        return 0;
    }
    sd_log(SD_LOG_WARN, "postgresql connection lost, reconnecting", NULL);
    PQreset(c->pg);
    if (PQstatus(c->pg) != CONNECTION_OK) {
        sd_log(SD_LOG_ERROR, "cannot reconnect to postgresql", "error=\"%.200s\"",
               PQerrorMessage(c->pg));
        return -ECONNRESET;
    }
    return conn_setup(c);
}

int sd_pg_conn_drop(struct pgconn *c)
{
    PQreset(c->pg);
    if (PQstatus(c->pg) != CONNECTION_OK) {
        return -ECONNRESET; /* reset again before its next use (conn_ensure) */
    }
    return conn_setup(c);
}

int sd_pg_pool_get(struct sd_store *s, struct pgconn **ret)
{
    pthread_mutex_lock(&s->pool_lock);
    for (;;) {
        if (s->pool_free) {
            struct pgconn *c = s->pool_free;
            s->pool_free = c->next_free;
            pthread_mutex_unlock(&s->pool_lock);
            int r = conn_ensure(c);
            if (r < 0) {
                sd_pg_pool_put(s, c);
                return r;
            }
            *ret = c;
            return 0;
        }
        if (s->pool_open < POOL_MAX) {
            s->pool_open++;
            pthread_mutex_unlock(&s->pool_lock);
            struct pgconn *c = NULL;
            int r = conn_open(s->conninfo, &c);
            if (r < 0) {
                pthread_mutex_lock(&s->pool_lock);
                s->pool_open--;
                pthread_cond_signal(&s->pool_cond);
                pthread_mutex_unlock(&s->pool_lock);
                return r;
            }
            *ret = c;
            return 0;
        }
        pthread_cond_wait(&s->pool_cond, &s->pool_lock);
    }
}

void sd_pg_pool_put(struct sd_store *s, struct pgconn *c)
{
    if (PQstatus(c->pg) == CONNECTION_OK && PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
        sd_log(SD_LOG_ERROR, "pool connection returned inside a transaction, rolling back", NULL);
        sd_pg_run(c, "ROLLBACK");
    }
    c->in_tx = false;
    pthread_mutex_lock(&s->pool_lock);
    c->next_free = s->pool_free;
    s->pool_free = c;
    pthread_cond_signal(&s->pool_cond);
    pthread_mutex_unlock(&s->pool_lock);
}

static void backoff(int attempt)
{
    struct timespec ts = {0, (long)(1000000L * (1 + attempt * 3 + (rand() % 5)))}; /* NOLINT */
    nanosleep(&ts, NULL);
}

int sd_pg_tx_run(struct sd_store *s, const char *begin, bool bump,
                 int (*fn)(struct pgconn *c, void *arg), void *arg)
{
    int r = 0;
    for (int attempt = 0; attempt < TX_RETRIES; attempt++) {
        struct pgconn *c = NULL;
        r = sd_pg_pool_get(s, &c);
        if (r < 0) {
            if (r == -ECONNRESET) {
                backoff(attempt);
                continue;
            }
            return r;
        }
        r = run_keep(c, begin ? begin : "BEGIN");
        if (r == 0) {
            c->in_tx = true;
            r = fn(c, arg);
            if (r >= 0 && bump) {
                int b = sd_pg_exec(c, 0, "UPDATE meta SET v = v + 1 WHERE k = 'settings_version'",
                                   NULL, NULL);
                if (b < 0) {
                    r = b;
                }
            }
            if (r >= 0) {
                int cr = run_keep(c, "COMMIT");
                if (cr < 0) {
                    /* A commit whose answer was lost may or may not have happened: only a
                     * refusal before the commit (serialization) is retried. */
                    r = cr == -EAGAIN ? -EAGAIN : -EIO;
                }
            } else if (PQstatus(c->pg) == CONNECTION_OK) {
                sd_pg_run(c, "ROLLBACK");
            }
            c->in_tx = false;
        }
        sd_pg_pool_put(s, c);
        if (r != -EAGAIN && r != -ECONNRESET) {
            return r;
        }
        backoff(attempt);
    }
    return r;
}

int sd_pg_write_lock(struct pgconn *c, int64_t *ret_seq)
{
    struct sd_pg_params p = {0};
    sd_pg_p_int(&p, WRITE_LOCK_KEY);
    int r = sd_pg_exec(c, 1, "SELECT pg_advisory_xact_lock($1)", &p, NULL);
    if (r < 0) {
        return r;
    }
    PGresult *res = NULL;
    r = sd_pg_exec(c, 2, "SELECT v FROM meta WHERE k = 'seq'", NULL, &res);
    if (r < 0) {
        return r;
    }
    if (r != 1) {
        PQclear(res);
        sd_log(SD_LOG_ERROR, "meta row 'seq' missing", NULL);
        return -EIO;
    }
    *ret_seq = sd_pg_int64(res, 0, 0);
    PQclear(res);
    return 0;
}

int sd_pg_seq_store(struct pgconn *c, int64_t seq)
{
    struct sd_pg_params p = {0};
    sd_pg_p_int(&p, seq);
    int r = sd_pg_exec(c, 3, "UPDATE meta SET v = $1 WHERE k = 'seq'", &p, NULL);
    return r < 0 ? r : 0;
}

/* ---- the write path's transaction ------------------------------------------------------------ */

/* BEGIN, the write lock and the seq read go out in one round trip (each statement of a
 * pipeline takes its own snapshot, so the read sees what the lock's last holder committed). */
int sd_pg_write_begin(struct sd_store *s)
{
    if (s->writing) {
        return -EINVAL;
    }
    int r = conn_ensure(s->writer);
    if (r < 0) {
        return r;
    }
    s->writer->pending = 0;
    struct sd_pg_params lock = {0};
    sd_pg_p_int(&lock, WRITE_LOCK_KEY);
    PGresult *res = NULL;
    struct sd_pg_stmt st[] = {
        {.slot = -1, .sql = "BEGIN"},
        {.slot = 1, .sql = "SELECT pg_advisory_xact_lock($1)", .p = &lock},
        {.slot = 2, .sql = "SELECT v FROM meta WHERE k = 'seq'", .ret = &res},
    };
    r = sd_pg_exec_pipeline(s->writer, st, sizeof(st) / sizeof(*st));
    if (r == 0 && st[2].result != 1) {
        sd_log(SD_LOG_ERROR, "meta row 'seq' missing", NULL);
        r = -EIO;
    }
    if (r < 0) {
        PQclear(res);
        if (PQstatus(s->writer->pg) == CONNECTION_OK &&
            PQtransactionStatus(s->writer->pg) != PQTRANS_IDLE) {
            sd_pg_run(s->writer, "ROLLBACK");
        }
        return r == -ECONNRESET ? -EIO : r;
    }
    s->seq_at_begin = sd_pg_int64(res, 0, 0);
    PQclear(res);
    s->seq = s->seq_at_begin;
    s->seq_at_sp = s->seq;
    s->writer->in_tx = true;
    s->writing = true;
    return 0;
}

/* The seq write and COMMIT in one round trip. A COMMIT answered "ROLLBACK" (the transaction
 * had failed) is a failure. */
int sd_pg_write_commit(struct sd_store *s)
{
    if (!s->writing) {
        return -EINVAL;
    }
    struct pgconn *c = s->writer;
    c->pending = 0; /* COMMIT keeps the work of open savepoints; an unsent one holds none */
    struct sd_pg_params p = {0};
    sd_pg_p_int(&p, s->seq);
    PGresult *res = NULL;
    struct sd_pg_stmt st[] = {
        {.slot = 3, .sql = "UPDATE meta SET v = $1 WHERE k = 'seq'", .p = &p},
        {.slot = -1, .sql = "COMMIT", .ret = &res},
    };
    bool moved = s->seq != s->seq_at_begin;
    int r = 0;
    if (PQtransactionStatus(c->pg) != PQTRANS_INTRANS) {
        /* failed, or gone with its session: a COMMIT sent now would answer ROLLBACK, or
         * commit nothing with a mere warning */
        sd_log(SD_LOG_ERROR, "postgresql write transaction not open at commit", NULL);
        r = -EIO;
    } else {
        r = sd_pg_exec_pipeline(c, moved ? st : st + 1, moved ? 2 : 1);
    }
    if (r == 0 && strcmp(PQcmdStatus(res), "COMMIT") != 0) {
        sd_log(SD_LOG_ERROR, "postgresql commit was a rollback", NULL);
        r = -EIO;
    }
    PQclear(res);
    if (r < 0 && PQstatus(c->pg) == CONNECTION_OK && PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
        sd_pg_run(c, "ROLLBACK");
    }
    c->in_tx = false;
    s->writing = false;
    /* Never a success for a commit that may not have happened; -ENOSPC keeps its meaning
     * (nothing was written). */
    return r < 0 ? (r == -ENOSPC ? -ENOSPC : -EIO) : 0;
}

int sd_pg_write_rollback(struct sd_store *s)
{
    if (!s->writing) {
        return 0;
    }
    int r = 0;
    s->writer->pending = 0;
    if (PQstatus(s->writer->pg) == CONNECTION_OK) {
        r = sd_pg_run(s->writer, "ROLLBACK");
    }
    s->writer->in_tx = false;
    s->writing = false;
    s->seq = s->seq_at_begin;
    return r;
}

static bool tx_failed(const struct pgconn *c)
{
    return PQtransactionStatus(c->pg) != PQTRANS_INTRANS;
}

int sd_pg_savepoint(struct sd_store *s)
{
    if (!s->writing) {
        return -EINVAL;
    }
    s->seq_at_sp = s->seq;
    if (tx_failed(s->writer)) {
        return run_keep(s->writer, "SAVEPOINT sp");
    }
    s->writer->pending |= PEND_SAVEPOINT;
    return 0;
}

int sd_pg_savepoint_release(struct sd_store *s)
{
    if (!s->writing) {
        return -EINVAL;
    }
    struct pgconn *c = s->writer;
    if (c->pending & PEND_SAVEPOINT) {
        c->pending &= ~PEND_SAVEPOINT; /* never sent: no statement ran in it */
        return 0;
    }
    if (tx_failed(c)) {
        return run_keep(c, "RELEASE SAVEPOINT sp");
    }
    c->pending |= PEND_RELEASE;
    return 0;
}

int sd_pg_savepoint_rollback(struct sd_store *s)
{
    if (!s->writing) {
        return -EINVAL;
    }
    struct pgconn *c = s->writer;
    s->seq = s->seq_at_sp;
    if (c->pending & PEND_SAVEPOINT) {
        c->pending &= ~PEND_SAVEPOINT; /* never sent: nothing to undo */
        return 0;
    }
    int r = run_keep(c, "ROLLBACK TO SAVEPOINT sp");
    if (r == 0) {
        c->pending |= PEND_RELEASE;
    }
    return r;
}

/* ---- migrations ------------------------------------------------------------------------------ */

/* The number a schema file names on its first line ("-- NNNN_name.sql"), or -1. */
static int64_t file_number(const char *sql)
{
    if (strncmp(sql, "-- ", 3) != 0) {
        return -1;
    }
    int64_t n = 0;
    int digits = 0;
    for (const char *p = sql + 3; *p >= '0' && *p <= '9' && digits < 9; p++, digits++) {
        n = n * 10 + (*p - '0');
    }
    return digits == 4 ? n : -1;
}

static int migrate(struct pgconn *c)
{
    struct sd_pg_params p = {0};
    sd_pg_p_int(&p, MIGRATE_LOCK_KEY);
    int r = sd_pg_exec_text(c, "SELECT pg_advisory_lock($1)", &p, NULL);
    if (r < 0) {
        return r;
    }
    r = sd_pg_run(c, "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL);"
                     " INSERT INTO schema_version SELECT 0"
                     " WHERE NOT EXISTS (SELECT 1 FROM schema_version)");
    PGresult *res = NULL;
    if (r == 0) {
        r = sd_pg_exec_text(c, "SELECT version FROM schema_version", NULL, &res);
    }
    int64_t have = r == 1 ? sd_pg_int64(res, 0, 0) : 0;
    PQclear(res);
    if (r >= 0 && r != 1) {
        r = -EIO;
    }
    int64_t last = 0;
    for (unsigned i = 0; r >= 0 && i < sd_pg_schema_count; i++) {
        int64_t num = file_number(sd_pg_schema[i]);
        if (num <= last) {
            sd_log(SD_LOG_ERROR, "postgresql schema files misnumbered", "file=%u", i);
            r = -EPROTO;
        }
        last = num;
    }
    if (r >= 0 && have > last) {
        sd_log(SD_LOG_ERROR, "the database's schema is newer than this stagedoor",
               "version=%" PRId64 " known=%" PRId64, have, last);
        r = -EPROTO;
    }
    for (unsigned i = 0; r >= 0 && i < sd_pg_schema_count; i++) {
        int64_t num = file_number(sd_pg_schema[i]);
        if (num <= have) {
            continue;
        }
        r = run_keep(c, "BEGIN");
        if (r == 0) {
            r = run_keep(c, sd_pg_schema[i]);
        }
        if (r == 0) {
            struct sd_pg_params q = {0};
            sd_pg_p_int(&q, num);
            r = sd_pg_exec_text(c, "UPDATE schema_version SET version = $1", &q, NULL);
        }
        if (r >= 0) {
            r = run_keep(c, "COMMIT");
        } else {
            sd_pg_run(c, "ROLLBACK");
        }
        if (r >= 0) {
            sd_log(SD_LOG_INFO, "postgresql schema migrated", "version=%" PRId64, num);
        }
    }
    struct sd_pg_params u = {0};
    sd_pg_p_int(&u, MIGRATE_LOCK_KEY);
    sd_pg_exec_text(c, "SELECT pg_advisory_unlock($1)", &u, NULL);
    return r < 0 ? r : 0;
}

/* ---- open / close ---------------------------------------------------------------------------- */

static void pg_close(struct sd_store *s)
{
    if (!s) {
        return;
    }
    if (s->writing) {
        sd_pg_write_rollback(s);
    }
    conn_close(s->writer);
    while (s->pool_free) {
        struct pgconn *c = s->pool_free;
        s->pool_free = c->next_free;
        conn_close(c);
    }
    pthread_mutex_destroy(&s->pool_lock);
    pthread_cond_destroy(&s->pool_cond);
    free(s->conninfo);
    free(s);
}

static int pg_open(const char *location, struct sd_store **ret)
{
    if (!location || !*location) {
        return -EINVAL;
    }
    struct sd_store *s = sd_calloc(1, sizeof(*s));
    s->conninfo = sd_strdup(location);
    pthread_mutex_init(&s->pool_lock, NULL);
    pthread_cond_init(&s->pool_cond, NULL);
    int r = conn_open(s->conninfo, &s->writer);
    if (r == 0) {
        r = migrate(s->writer);
    }
    if (r < 0) {
        pg_close(s);
        return r;
    }
    *ret = s;
    return 0;
}

const struct sd_store_ops sd_store_pg_ops = {
    .name = "postgresql",
    .open = pg_open,
    .close = pg_close,
    .tenant_create = sd_pg_tenant_create,
    .tenant_get = sd_pg_tenant_get,
    .tenant_list = sd_pg_tenant_list,
    .tenant_set_limits = sd_pg_tenant_set_limits,
    .key_insert = sd_pg_key_insert,
    .key_list = sd_pg_key_list,
    .key_revoke = sd_pg_key_revoke,
    .settings_version = sd_pg_settings_version,
    .auth_snapshot = sd_pg_auth_snapshot,
    .connector_put = sd_pg_connector_put,
    .connector_get = sd_pg_connector_get,
    .connector_list = sd_pg_connector_list,
    .connector_delete = sd_pg_connector_delete,
    .connector_request_run = sd_pg_connector_request_run,
    .write_begin = sd_pg_write_begin,
    .write_commit = sd_pg_write_commit,
    .write_rollback = sd_pg_write_rollback,
    .savepoint = sd_pg_savepoint,
    .savepoint_release = sd_pg_savepoint_release,
    .savepoint_rollback = sd_pg_savepoint_rollback,
    .connector_state_put = sd_pg_connector_state_put,
    .connector_state_get = sd_pg_connector_state_get,
    .connector_state_put_fenced = sd_pg_connector_state_put_fenced,
    .run_lease_take = sd_pg_run_lease_take,
    .run_lease_renew = sd_pg_run_lease_renew,
    .run_lease_release = sd_pg_run_lease_release,
    .apply_ingest = sd_pg_apply_ingest,
    .replace_sale = sd_pg_replace_sale,
    .delete_record = sd_pg_delete_record,
    .idem_put = sd_pg_idem_put,
    .idem_purge = sd_pg_idem_purge,
    .idem_get = sd_pg_idem_get,
    .list_records = sd_pg_list_records,
    .get_record = sd_pg_get_record,
    .count_records = sd_pg_count_records,
    .get_customer = sd_pg_get_customer,
    .get_customer_in_write = sd_pg_get_customer_in_write,
    .check_sale_refs = sd_pg_check_sale_refs,
    .rate_take = sd_pg_rate_take,
    .profiles = &sd_pg_profile_ops,
    .outbox = &sd_pg_outbox_ops,
    .quota = &sd_pg_quota_ops,
    .inbound = &sd_pg_inbound_ops,
    .runs = &sd_pg_runs_ops,
    .alerts = &sd_pg_alert_ops,
    .segments = &sd_pg_segment_ops,
    .observe = &sd_pg_observe_ops,
};
