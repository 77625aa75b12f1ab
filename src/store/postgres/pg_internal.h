/* pg_internal.h — what the files of the PostgreSQL backend share: the store struct, connections
 * with their prepared statements, parameters and results, transactions with retry, and the
 * operations each file implements (gathered into sd_store_pg_ops by store_pg.c). Private to
 * src/store/postgres/; everyone else goes through store.h.
 *
 * The files split by concern, like the SQLite backend's:
 *   store_pg.c       the ops table, open/close, connections, the pool, migrations, helpers below,
 *                    the write path's transaction and savepoints, the sequence counter
 *   pg_control.c     tenants, API keys, settings version, auth snapshot
 *   pg_connectors.c  connector configuration and state
 *   (next: pg_write.c, pg_read.c, pg_profiles.c, pg_facts.c, pg_segments.c, pg_outbox.c,
 *    pg_quota.c, pg_inbound.c — one per part of store.h / audience.h / quota.h / inbound.h)
 *
 * Statements. Every statement is a fixed text with $1…$n parameters, prepared once per
 * connection under the name "s<slot>" (a slot number given once to one text, like SQLite's
 * extra slots: 0..63 store_pg.c, 64..127 pg_control.c + pg_connectors.c, 128..255 pg_write.c,
 * 256..319 pg_read.c, 320..447 pg_profiles.c + pg_facts.c, 448..575 pg_segments.c (generated
 * rule queries are run unnamed, see sd_pg_exec_text), 576..767 pg_outbox.c, 768..799
 * pg_quota.c, 800..895 pg_inbound.c, 900..903 pg_runs.c, 910..919 pg_alerts.c, 960..964
 * pg_leases.c). Values are always parameters, in text format (bytea:
 * binary), never formatted into SQL.
 *
 * Errors follow store.h: 0 (or a count) on success, negative errno on failure, mapped from
 * SQLSTATE where the statement runs (sd_pg_fail): 23505 unique violation → -EEXIST, other
 * integrity violations (23xxx) → -EINVAL, 53100/53200/53400 (disk, memory, limits) → -ENOSPC,
 * 40001 / 40P01 (serialization failure, deadlock) → -EAGAIN (sd_pg_tx_run retries),
 * 55P03 / 57014 (lock not available, statement timeout) → -ETIMEDOUT, a lost connection →
 * -ECONNRESET (the connection is reset before its next use), anything else → -EIO. Messages
 * are logged where the failure happens, without values (PostgreSQL's DETAIL, which quotes key
 * values, is never logged).
 *
 * Threads. A connection is used by one thread at a time. The writer connection belongs to the
 * single writer thread (store.h's write path); every other operation borrows a connection from
 * the pool for the duration of one call. */
#ifndef SD_PG_INTERNAL_H
#define SD_PG_INTERNAL_H

#include <libpq-fe.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "store/audience.h"
#include "store/inbound.h"
#include "store/quota.h"
#include "store/store.h"

#define SD_PG_SLOTS 1024
#define SD_PG_MAX_PARAMS 48

/* One libpq connection and which statement slots it has prepared. */
struct pgconn {
    PGconn *pg;
    uint64_t prepared[SD_PG_SLOTS / 64];
    struct pgconn *next_free;
    bool in_tx; /* between BEGIN and COMMIT/ROLLBACK issued through the helpers below */
    /* The writer's savepoint commands not sent yet (SD_PG_PEND_*, store_pg.c): they go out in
     * the same round trip as the next statement, ahead of it. */
    unsigned pending;
};

struct sd_store {
    char *conninfo;

    /* read and control pool: pool_lock + pool_cond */
    pthread_mutex_t pool_lock;
    pthread_cond_t pool_cond;
    struct pgconn *pool_free;
    unsigned pool_open;

    /* writer thread only */
    struct pgconn *writer;
    int64_t seq;          /* last assigned (valid between write_begin and commit/rollback) */
    int64_t seq_at_begin; /* meta.seq at write_begin: commit writes it back only if it moved */
    int64_t seq_at_sp;    /* restored by savepoint_rollback */
    bool writing;         /* inside write_begin … commit/rollback */
};

/* ---- parameters and results ------------------------------------------------------------------ */

/* Parameters of one statement, in order ($1, $2, …). Zero-initialise (or sd_pg_params_init),
 * then add. Text is not copied: it must outlive the exec call. More than SD_PG_MAX_PARAMS
 * aborts (a programming error, never input-driven). */
struct sd_pg_params {
    int n;
    const char *v[SD_PG_MAX_PARAMS];
    int len[SD_PG_MAX_PARAMS];
    int fmt[SD_PG_MAX_PARAMS];
    char num[SD_PG_MAX_PARAMS][24];
};
void sd_pg_params_init(struct sd_pg_params *p);
void sd_pg_p_text(struct sd_pg_params *p, const char *s); /* NULL → SQL NULL */
void sd_pg_p_int(struct sd_pg_params *p, int64_t v);
void sd_pg_p_bool(struct sd_pg_params *p, bool v); /* as 0 / 1 (the schema's flags are ints) */
void sd_pg_p_bytes(struct sd_pg_params *p, const void *b, size_t n); /* bytea, binary format */
/* (tenant_id, env, key): the shape of every scoped lookup; key NULL adds nothing for $3. */
void sd_pg_p_scope(struct sd_pg_params *p, int64_t tenant_id, enum sd_env env, const char *key);

/* Column readers for row `row` of a result: NULL reads as 0 / NULL / false. */
int64_t sd_pg_int64(const PGresult *r, int row, int col);
bool sd_pg_isnull(const PGresult *r, int row, int col);
char *sd_pg_strdup(const PGresult *r, int row, int col);     /* malloc'ed, NULL if SQL NULL */
const char *sd_pg_text(const PGresult *r, int row, int col); /* valid until PQclear, NULL */
/* A bytea column (text format "\x…" decoded): malloc'ed bytes in *ret, length in *ret_n.
 * Returns 0 or -EIO. */
int sd_pg_bytes(const PGresult *r, int row, int col, uint8_t **ret, size_t *ret_n);

/* ---- running statements ---------------------------------------------------------------------- */

/* Log a failed statement `op` (res may be NULL: the connection's error) and map its SQLSTATE
 * as described above. */
int sd_pg_fail(struct pgconn *c, const PGresult *res, const char *op);

/* Run the statement of `slot` (prepared from `sql` on first use on this connection; the same
 * slot must always be given the same text) with parameters p (NULL: none). On success *ret (if
 * not NULL) holds the result, the caller's to PQclear; ret NULL discards it. Returns the number
 * of rows affected or returned (≥ 0), or a negative errno after logging. */
int sd_pg_exec(struct pgconn *c, unsigned slot, const char *sql, const struct sd_pg_params *p,
               PGresult **ret);

/* The same for a statement built at run time from fixed fragments (the segment compiler): run
 * unnamed with PQexecParams, so it is planned for its values. */
int sd_pg_exec_text(struct pgconn *c, const char *sql, const struct sd_pg_params *p,
                    PGresult **ret);

/* Several statements in one round trip (libpq pipeline mode), for statements none of which
 * needs another's answer: each is run as sd_pg_exec would (slot < 0: unnamed, as
 * sd_pg_exec_text) and its result (rows ≥ 0 or negative errno) is left in .result, its
 * PGresult in *ret if ret is set and it succeeded. After a failure the later ones are not run
 * (-ECANCELED). Returns 0 if all succeeded, else the first failure. */
struct sd_pg_stmt {
    int slot;
    const char *sql;
    const struct sd_pg_params *p;
    PGresult **ret;
    int result;
};
int sd_pg_exec_pipeline(struct pgconn *c, struct sd_pg_stmt *st, size_t n);

/* A statement without parameters or rows ("BEGIN", "COMMIT", "SAVEPOINT sp" …): PQexec. */
int sd_pg_run(struct pgconn *c, const char *sql);

/* ---- connections ----------------------------------------------------------------------------- */

/* Borrow a pool connection (opening one if fewer than the maximum are open, waiting otherwise;
 * a connection found broken is reset first). Give it back with sd_pg_pool_put, outside any
 * transaction (put rolls back one left open, after logging: a bug, never a commit). */
int sd_pg_pool_get(struct sd_store *s, struct pgconn **ret);
void sd_pg_pool_put(struct sd_store *s, struct pgconn *c);

/* End c's session and start a new one at once (its server process is left to end the query
 * it may still run); prepared statements and any transaction are gone. 0 or -ECONNRESET (then
 * the next sd_pg_pool_get resets it again). */
int sd_pg_conn_drop(struct pgconn *c);

/* Run fn(c, arg) inside one transaction on a pool connection: BEGIN (with `begin`, e.g.
 * "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY" for a read that must see one snapshot;
 * NULL: plain BEGIN, read committed), fn, then COMMIT if fn returned ≥ 0, else ROLLBACK. On a
 * serialization failure or deadlock (-EAGAIN from fn or from COMMIT) and on a connection lost
 * before COMMIT was sent (-ECONNRESET), the whole transaction is run again, up to 5 times with
 * a short random backoff: fn must therefore only touch the database and state it (re)sets
 * itself. With `bump` set and fn ≥ 0, the settings version is incremented in the same
 * transaction (a control-plane change: running servers notice it within a second). Returns
 * fn's result or the commit's failure. */
int sd_pg_tx_run(struct sd_store *s, const char *begin, bool bump,
                 int (*fn)(struct pgconn *c, void *arg), void *arg);

/* Inside a transaction on c: take the write path's lock (a transaction-level advisory lock)
 * and read meta.seq into *ret_seq. Everything that assigns record seq numbers holds it from
 * the first number to COMMIT, on any node, so commit order equals seq order (store.h
 * obligation 1). The writer takes it in write_begin; a control-plane operation that must
 * number records (none yet outside the writer) takes it itself and writes meta.seq back with
 * sd_pg_seq_store before it commits. */
int sd_pg_write_lock(struct pgconn *c, int64_t *ret_seq);
int sd_pg_seq_store(struct pgconn *c, int64_t seq);

/* Writer thread, inside write_begin … commit: the next record seq number. */
static inline int64_t sd_pg_seq_next(struct sd_store *s)
{
    return ++s->seq;
}

/* The writer's connection, for the write-path files; NULL outside write_begin … commit. */
static inline struct pgconn *sd_pg_writer(struct sd_store *s)
{
    return s->writing ? s->writer : NULL;
}

static inline bool sd_pg_env_ok(enum sd_env env)
{
    return env == SD_ENV_TEST || env == SD_ENV_PROD;
}

/* ---- operations of sd_store_pg_ops; behaviour as documented in store.h ---------------------- */

/* store_pg.c — the write path's transaction (writer thread only). */
int sd_pg_write_begin(struct sd_store *s);
int sd_pg_write_commit(struct sd_store *s);
int sd_pg_write_rollback(struct sd_store *s);
int sd_pg_savepoint(struct sd_store *s);
int sd_pg_savepoint_release(struct sd_store *s);
int sd_pg_savepoint_rollback(struct sd_store *s);

/* pg_control.c — any thread. */
int sd_pg_tenant_create(struct sd_store *s, const char *client_id, const char *name);
int sd_pg_tenant_get(struct sd_store *s, const char *client_id, struct sd_tenant *ret);
int sd_pg_tenant_list(struct sd_store *s, struct sd_tenant **ret, size_t *ret_n);
int sd_pg_tenant_set_limits(struct sd_store *s, const char *client_id, int64_t per_minute,
                            int64_t burst);
int sd_pg_key_insert(struct sd_store *s, const char *key_id, const char *client_id, enum sd_env env,
                     const char *hash_hex);
int sd_pg_key_list(struct sd_store *s, const char *client_id, struct sd_key_info **ret,
                   size_t *ret_n);
int sd_pg_key_revoke(struct sd_store *s, const char *key_id);
int sd_pg_settings_version(struct sd_store *s, int64_t *ret);
int sd_pg_auth_snapshot(struct sd_store *s, struct sd_tenant **ret_t, size_t *ret_nt,
                        struct sd_key_info **ret_k, size_t *ret_nk);

/* pg_ratelimit.c — any thread. */
int sd_pg_rate_take(struct sd_store *s, uint64_t key, int64_t per_minute, int64_t burst,
                    int64_t want, int64_t now_usec, int64_t *ret_granted, double *ret_left);

/* pg_connectors.c */
int sd_pg_connector_put(struct sd_store *s, const struct sd_connector_conf *c, bool create);
int sd_pg_connector_get(struct sd_store *s, const char *id, struct sd_connector_conf *ret);
int sd_pg_connector_list(struct sd_store *s, int64_t tenant_id, struct sd_connector_conf **ret,
                         size_t *ret_n);
int sd_pg_connector_delete(struct sd_store *s, const char *id);
int sd_pg_connector_request_run(struct sd_store *s, const char *id, int64_t usec);
/* Writer thread, inside write_begin … commit. */
int sd_pg_connector_state_put(struct sd_store *s, const char *id, const char *doc);
int sd_pg_connector_state_get(struct sd_store *s, const char *id, char **ret_doc);
/* Inside a transaction on k: forget connector id's remote references and make its waiting
 * (queued, retrying) outbox items dead with last_error `reason`. */
int sd_pg_outbox_settle_connector(struct pgconn *k, const char *id, const char *reason);

#endif
