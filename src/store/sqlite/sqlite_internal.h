/* sqlite_internal.h — what the files of the SQLite backend share, and nothing else: the store
 * struct, the per-connection statement cache, the helpers every operation uses and the
 * operations themselves (gathered into sd_store_sqlite_ops by store_sqlite.c). Not installed
 * and not part of the store interface: only the .c files beside it include it; everyone else
 * goes through store.h.
 *
 * The files split by concern, and each one's opening comment states its rules:
 *   store_sqlite.c    the ops table, open/close, connections, migrations, checkpointer, read pool
 *   sqlite_sql.c      the text of every statement (sd_sqlite_sql[], indexed by enum stmt_id)
 *   sqlite_control.c  tenants, API keys, settings version, auth snapshot (the `ctl` connection)
 *   sqlite_write.c    transactions, savepoints, ingest, replace_sale, idempotency put/purge
 *                     (the `writer` connection)
 *   sqlite_read.c     idempotency get, list/get/count records (the read pool)
 *   sqlite_connectors.c  connector configuration (ctl) and connector state (writer, read pool)
 *
 * Helpers follow store.h's error convention: 0 (or a count) on success, negative errno on
 * failure; a SQLite failure is logged where it happens and comes back as -EIO. */
#ifndef SD_SQLITE_INTERNAL_H
#define SD_SQLITE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sqlite3.h>

#include "base/base.h"
#include "store/audience.h"
#include "store/store.h"

/* Every statement the backend runs. The per-kind read statements (LIST_*, GET_*, COUNT_*) are
 * declared in enum sd_kind order — events, customers, sales — so that base + kind picks one. */
enum stmt_id {
    ST_BEGIN,
    ST_BEGIN_IMMEDIATE,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_SAVEPOINT,
    ST_RELEASE,
    ST_ROLLBACK_TO,
    ST_USER_VERSION,
    ST_MAX_SEQ,
    /* control plane */
    ST_SETTINGS_BUMP,
    ST_SETTINGS_GET,
    ST_TENANT_INSERT,
    ST_TENANT_GET,
    ST_TENANT_LIST,
    ST_TENANT_ID,
    ST_TENANT_SET_LIMITS,
    ST_KEY_INSERT,
    ST_KEY_LIST,
    ST_KEY_LIST_ALL,
    ST_KEY_REVOKE,
    ST_KEY_EXISTS,
    /* write path */
    ST_EVENT_UPDATE,
    ST_EVENT_INSERT,
    ST_EVENT_BY_DUP,
    ST_ALIAS_GET,
    ST_ALIAS_INSERT,
    ST_EVENT_RESOLVE,
    ST_CUSTOMER_UPSERT,
    ST_CUSTOMER_EXISTS,
    ST_SALE_INSERT,
    ST_SALE_EXISTS,
    ST_SALE_UPDATE,
    ST_IDEM_PUT,
    ST_IDEM_PURGE,
    ST_SALE_DOC,
    ST_CONNECTOR_STATE_PUT,
    ST_TOMBSTONE_INSERT,
    ST_EVENT_DELETE,
    ST_ALIASES_DELETE,
    ST_CUSTOMER_FIND,
    ST_CUSTOMER_DELETE,
    ST_SALE_DELETE,
    ST_ALIASES_REPOINT,
    ST_SALES_REPOINT_EVENT,
    ST_SALES_OF_CUSTOMER,
    ST_SALE_RECUSTOMER,
    /* connectors (control plane) */
    ST_CONNECTOR_INSERT,
    ST_CONNECTOR_UPDATE,
    ST_CONNECTOR_GET,
    ST_CONNECTOR_LIST,
    ST_CONNECTOR_LIST_ALL,
    ST_CONNECTOR_DELETE,
    ST_CONNECTOR_STATE_DELETE,
    ST_CONNECTOR_REQUEST_RUN,
    ST_CONNECTOR_STATE_GET,
    /* read path */
    ST_IDEM_GET,
    ST_LIST_EVENTS,
    ST_LIST_CUSTOMERS,
    ST_LIST_SALES,
    ST_GET_EVENT,
    ST_GET_CUSTOMER,
    ST_GET_SALE,
    ST_COUNT_EVENTS,
    ST_COUNT_CUSTOMERS,
    ST_COUNT_SALES,
    /* order lifecycle (write path) */
    ST_SALE_STATE,
    ST_SALE_REFUNDS,
    ST_GET_CUSTOMER_SOURCE,
    ST_GET_CUSTOMER_OF_SOURCE,
    N_STMT
};

/* The text of each statement, prepared on demand by sd_sqlite_stmt() (sqlite_sql.c). */
extern const char *const sd_sqlite_sql[N_STMT];

/* One SQLite connection and its lazily prepared statements. A connection is used by one thread
 * at a time (they are opened SQLITE_OPEN_NOMUTEX); next_free links the read pool's free list. */
#define SD_SQLITE_EXTRA_SLOTS 256

struct conn {
    sqlite3 *db;
    sqlite3_stmt *st[N_STMT];
    /* Statements of the audience files, which keep their SQL next to their code: slots
     * 0..31 sqlite_profiles.c, 32..47 sqlite_segments.c, 48..95 sqlite_outbox.c, 96..103
     * sqlite_quota.c, 104..107 sqlite_runs.c, 108..117 sqlite_alerts.c, 120..124
     * sqlite_leases.c, 144..152 sqlite_facts.c, 160..191 sqlite_inbound.c. */
    sqlite3_stmt *extra[SD_SQLITE_EXTRA_SLOTS];
    struct conn *next_free;
    bool full; /* a statement failed with SQLITE_FULL (writer: since write_begin) */
};

/* The open store. Each group of fields belongs to one connection role and is touched only
 * under that role's rule (see store_sqlite.c). */
struct sd_store {
    char *path;
    char *control_path; /* DIR/control.db */

    /* The control plane's own file (tenants, keys, settings version), guarded by cp_lock.
     * Never locked by the data writer: data connections attach it read-only. */
    pthread_mutex_t cp_lock;
    struct conn *cp;

    /* writer thread only */
    struct conn *writer;
    int64_t seq;           /* last assigned */
    int64_t seq_at_begin;  /* restored by write_rollback */
    int64_t seq_at_sp;     /* restored by savepoint_rollback */

    pthread_mutex_t ctl_lock;
    struct conn *ctl;

    /* Turns at the data file's write lock between the writer and ctl (store_sqlite.c, "write
     * turns"), all under turn_lock. */
    pthread_mutex_t turn_lock;
    pthread_cond_t turn_cond;
    bool turn_held;       /* the writer or ctl is inside its BEGIN IMMEDIATE … end */
    bool writer_holds;    /* that one is the writer */
    bool writer_waiting;  /* the writer waits for its turn */
    unsigned ctl_waiting; /* ctl transactions waiting for their turn */
    bool last_was_writer; /* who had the last turn */

    pthread_mutex_t pool_lock;
    pthread_cond_t pool_cond;
    struct conn *pool_free;
    unsigned pool_open;

    /* checkpointer */
    struct conn *ckpt;
    pthread_t ckpt_thread;
    bool ckpt_running;
    pthread_mutex_t ckpt_lock;
    pthread_cond_t ckpt_cond;
    int wal_frames;         /* frames in the WAL after the writer's last commit (ckpt_lock) */
    int wal_ckpt_frames;    /* a PASSIVE checkpoint is due from this size (set at open) */
    int wal_restart_frames; /* ... and a reset of the log is tried from this one */
    int wal_log_frames;     /* frames in the log, for log_stats (ckpt_lock) */
    bool wal_pinned;        /* a reader keeps frames past wal_restart_frames (ckpt_lock) */
    bool ckpt_stop;
};

/* ---- shared helpers (store_sqlite.c) --------------------------------------------------------- */

int sd_sqlite_log_stats(struct sd_store *s, struct sd_store_log_stats *ret);
/* Test hook STAGEDOOR_FAULT=max_pages: apply DIR/fault-max-pages to the writer (store_sqlite.c). */
void sd_sqlite_fault_max_pages(struct sd_store *s);
int sd_sqlite_space_probe(struct sd_store *s);

/* Log a failed SQLite operation `op` with c's error message (or rc's when there is no
 * connection); returns -ENOSPC for SQLITE_FULL (and marks c->full), else -EIO. */
int sd_sqlite_fail(struct conn *c, int rc, const char *op);

/* The cached statement `id` of c, prepared on first use. NULL after logging on failure. */
sqlite3_stmt *sd_sqlite_stmt(struct conn *c, enum stmt_id id);

/* The cached statement in extra slot `slot` of c, prepared from `sql` on first use (the same
 * slot must always be given the same text). NULL after logging on failure. */
sqlite3_stmt *sd_sqlite_stmt_extra(struct conn *c, unsigned slot, const char *sql);

/* Step a statement that returns no row; resets it. Returns 0, -EEXIST (constraint) or -EIO. */
int sd_sqlite_step_done(struct conn *c, sqlite3_stmt *st, const char *op);

/* Run statement `id` of c, which takes no parameters and returns no row (BEGIN, COMMIT …). */
int sd_sqlite_run(struct conn *c, enum stmt_id id);

/* Commit if r >= 0, else roll back (if a transaction is still open). Returns r or -EIO. */
int sd_sqlite_tx_finish(struct conn *c, int r);

/* Take a read connection from the pool, opening one if fewer than the maximum are open and
 * waiting otherwise. Hand it back with sd_sqlite_pool_put() once its statements are reset. */
int sd_sqlite_pool_get(struct sd_store *s, struct conn **ret);
void sd_sqlite_pool_put(struct sd_store *s, struct conn *c);

/* A malloc'ed copy of text column `col` of the current row, or NULL if it is NULL. */
char *sd_sqlite_column_strdup(sqlite3_stmt *st, int col);

/* Bind (tenant_id, env, key) to ?1..?3 — the shape of every scoped lookup. key is bound
 * SQLITE_STATIC and skipped if NULL. Returns the OR of the SQLite result codes. */
int sd_sqlite_bind_scope(sqlite3_stmt *st, int64_t tenant_id, enum sd_env env, const char *key);

/* Run a scoped lookup whose first column is text: 1 and the text appended to *out (reset
 * first), 0 if no row, or -EIO. out may be NULL to test for existence only. */
int sd_sqlite_lookup_text(struct conn *c, enum stmt_id id, int64_t tenant_id, enum sd_env env,
                          const char *key, struct sd_buf *out);

/* 1 if customer `cid` of `source` exists, 0 if not, -EIO (sqlite_import_check.c). Used by the
 * writer's reference check on its connection and by the import check on a reader. */
int sd_sqlite_customer_exists(struct conn *c, int64_t tenant_id, enum sd_env env,
                              const char *source, const char *cid);

static inline bool sd_sqlite_env_ok(enum sd_env env)
{
    return env == SD_ENV_TEST || env == SD_ENV_PROD;
}

/* ---- operations of sd_store_sqlite_ops; behaviour as documented in store.h ------------------- */

/* sqlite_control.c — any thread; serialized on cp_lock (control.db). */
int sd_sqlite_tenant_create(struct sd_store *s, const char *client_id, const char *name);
int sd_sqlite_tenant_get(struct sd_store *s, const char *client_id, struct sd_tenant *ret);
int sd_sqlite_tenant_list(struct sd_store *s, struct sd_tenant **ret, size_t *ret_n);
int sd_sqlite_tenant_set_limits(struct sd_store *s, const char *client_id, int64_t per_minute,
                                int64_t burst);
int sd_sqlite_key_insert(struct sd_store *s, const char *key_id, const char *client_id,
                         enum sd_env env, const char *hash_hex);
int sd_sqlite_key_list(struct sd_store *s, const char *client_id, struct sd_key_info **ret,
                       size_t *ret_n);
int sd_sqlite_key_revoke(struct sd_store *s, const char *key_id);
int sd_sqlite_settings_version(struct sd_store *s, int64_t *ret);
int sd_sqlite_auth_snapshot(struct sd_store *s, struct sd_tenant **ret_t, size_t *ret_nt,
                            struct sd_key_info **ret_k, size_t *ret_nk);

/* sqlite_write.c — the writer thread only. */
int sd_sqlite_write_begin(struct sd_store *s);
int sd_sqlite_write_commit(struct sd_store *s);
int sd_sqlite_write_rollback(struct sd_store *s);
int sd_sqlite_savepoint(struct sd_store *s);
int sd_sqlite_savepoint_release(struct sd_store *s);
int sd_sqlite_savepoint_rollback(struct sd_store *s);
int sd_sqlite_apply_ingest(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                           const struct sd_batch *b, struct sd_apply_result *res);
int sd_sqlite_replace_sale(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                           const struct sd_sale_rec *sale, struct sd_apply_result *res);
int sd_sqlite_delete_record(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                            enum sd_kind kind, const char *id, const char *source,
                            enum sd_tombstone_reason reason, const char *merged_into,
                            const char *origin);
/* Write the tombstone of a record that has just left (kind, id; source for customers, else
 * NULL) with the next seq, in the current transaction. Returns 0 or -EIO. */
int sd_sqlite_tombstone_put(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                            enum sd_kind kind, const char *id, const char *source,
                            enum sd_tombstone_reason reason, const char *merged_into,
                            const char *origin, int64_t now);
int sd_sqlite_idem_put(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *key,
                       const struct sd_idem_entry *e);
int sd_sqlite_idem_purge(struct sd_store *s, int64_t before_usec);

/* sqlite_read.c — any thread; each call borrows a pool connection. */
int sd_sqlite_idem_get(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *key,
                       struct sd_idem_entry *ret);
int sd_sqlite_list_records(struct sd_store *s, enum sd_kind kind, int64_t tenant_id,
                           enum sd_env env, int64_t after_seq, size_t limit,
                           struct sd_record_page *ret);
int sd_sqlite_get_record(struct sd_store *s, enum sd_kind kind, int64_t tenant_id, enum sd_env env,
                         const char *rid, char **ret_doc);
int sd_sqlite_count_records(struct sd_store *s, enum sd_kind kind, int64_t tenant_id,
                            enum sd_env env, int64_t *ret);
int sd_sqlite_get_customer(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *id,
                           const char *source, char **ret_doc, char ***ret_sources, size_t *ret_n);
int sd_sqlite_get_customer_in_write(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                                    const char *id, const char *source, char **ret_doc);

/* The audience parts of the SQLite backend (issue #4), each an ops table of its own
 * (store/audience.h), reached through sd_store_sqlite_ops. */
/* ---- per-profile purchase facts (sqlite_facts.c, 0013_profile_facts.sql) ----------------------
 * Every change of a sale's key (source, customer_id), currency, purchase time or net figures,
 * and of which profile a customer record belongs to, keeps profile_facts equal to its
 * definition by calling these on the writer connection, in the same transaction, as follows:
 *  - a sale just inserted: batch_add (below), flushed before any other facts call and at the
 *    end of the batch;
 *  - a sale about to be updated or deleted: sale_out before the statement; after an update
 *    (whether or not it changed the row), sale_in;
 *  - a customer record about to change profile or be deleted: record_get before (its profile,
 *    and whether its key has sales); after, if it has sales, profile for the old and the new
 *    profile.
 * Each returns 0 or a negative errno (-EIO, -ENOSPC) after logging; the caller rolls back. */
/* The new sales of one batch, summed per profile and currency before they are written (with
 * the profile of each customer key looked up once): batch_add per sale just inserted, then
 * batch_flush (one UPSERT per profile and currency) before any other facts call and at the
 * end of the batch; batch_release frees it. Zero-initialised. */
struct sd_sqlite_facts_key {
    char *source, *customer_id; /* NULL: free slot */
    int64_t profile_id;         /* 0: none */
};
struct sd_sqlite_facts_sum {
    int64_t profile_id;
    char *currency; /* NULL: free slot */
    int64_t purchases, tickets, spend_minor, sales;
    char *first, *last; /* live purchase times, NULL: none */
};
struct sd_sqlite_facts_batch {
    struct sd_sqlite_facts_key *keys;
    size_t keys_cap, n_keys;
    struct sd_sqlite_facts_sum *sums;
    size_t sums_cap, n_sums;
};
int sd_sqlite_facts_batch_add(struct conn *c, struct sd_sqlite_facts_batch *fb, int64_t tenant_id,
                              enum sd_env env, const char *source, const char *customer_id,
                              const char *currency, const char *purchased, int64_t net_quantity,
                              int64_t net_minor);
int sd_sqlite_facts_batch_flush(struct conn *c, struct sd_sqlite_facts_batch *fb, int64_t tenant_id,
                                enum sd_env env);
void sd_sqlite_facts_batch_release(struct sd_sqlite_facts_batch *fb);
int sd_sqlite_facts_sale_out(struct conn *c, int64_t tenant_id, enum sd_env env,
                             const char *invoice);
int sd_sqlite_facts_sale_in(struct conn *c, int64_t tenant_id, enum sd_env env,
                            const char *invoice);
int sd_sqlite_facts_record_get(struct conn *c, int64_t tenant_id, enum sd_env env, int64_t seq,
                               int64_t *ret_profile_id, bool *ret_has_sales);
/* Recompute profile_id's rows from its sales (nothing for profile_id ≤ 0). */
int sd_sqlite_facts_profile(struct conn *c, int64_t tenant_id, enum sd_env env, int64_t profile_id);

extern const struct sd_store_profile_ops sd_sqlite_profile_ops;
extern const struct sd_store_segment_ops sd_sqlite_segment_ops;
/* Register sd_fold(x) (the model's text folding, sd_text_fold) on a new connection, before it
 * prepares anything: segment queries, migration 0014 and the customer upsert call it. */
int sd_sqlite_register_fold(sqlite3 *db);
extern const struct sd_store_outbox_ops sd_sqlite_outbox_ops;
/* Raw-first vendor webhooks (store/inbound.h), sqlite_inbound.c. */
extern const struct sd_store_inbound_ops sd_sqlite_inbound_ops;

/* sqlite_connectors.c */
int sd_sqlite_connector_put(struct sd_store *s, const struct sd_connector_conf *c, bool create);
int sd_sqlite_connector_get(struct sd_store *s, const char *id, struct sd_connector_conf *ret);
int sd_sqlite_connector_list(struct sd_store *s, int64_t tenant_id,
                             struct sd_connector_conf **ret, size_t *ret_n);
int sd_sqlite_connector_delete(struct sd_store *s, const char *id);
int sd_sqlite_connector_request_run(struct sd_store *s, const char *id, int64_t usec);
int sd_sqlite_connector_state_put(struct sd_store *s, const char *id, const char *doc);
int sd_sqlite_connector_state_get(struct sd_store *s, const char *id, char **ret_doc);
/* sqlite_leases.c — connector run leases (ctl) and the fenced state put (writer). */
int sd_sqlite_run_lease_take(struct sd_store *s, const char *id, const char *owner,
                             const char *gone_owner, int64_t lease_usec, int64_t *ret_fence,
                             char **ret_holder);
int sd_sqlite_run_lease_renew(struct sd_store *s, const char *id, int64_t fence,
                              int64_t lease_usec);
int sd_sqlite_run_lease_release(struct sd_store *s, const char *id, int64_t fence);
int sd_sqlite_connector_state_put_fenced(struct sd_store *s, const char *id, const char *doc,
                                         int64_t fence);
/* sqlite_import_check.c — read path. */
int sd_sqlite_check_sale_refs(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                              const struct sd_batch *b, struct sd_issues *errors,
                              bool *ret_needs_writer);

/* Write transaction on the data file's ctl connection (sqlite_control.c), for settings that
 * live with the data (connectors, segments, targets, deliveries): begin takes ctl_lock; end
 * commits or rolls back, then bumps the settings version in control.db when `changed` and the
 * commit succeeded (a second transaction: a reader that sees the new version sees the change),
 * and unlocks. */
/* Inside an open ctl write: forget connector id's remote references and make its waiting
 * (queued, retrying) outbox items dead with last_error `reason` (sqlite_outbox.c). */
int sd_sqlite_outbox_settle_connector(struct sd_store *s, const char *id, const char *reason);
int sd_sqlite_ctl_begin_write(struct sd_store *s);
/* Write turns (store_sqlite.c): the writer and the ctl connection take the data file's write
 * lock in turns, each BEGIN IMMEDIATE after a take and each end before the give. writer_take
 * waits at most for one ctl transaction; writer_give does nothing when the writer holds no
 * turn. ctl_take waits at most BUSY_TIMEOUT_MS (then -ETIMEDOUT, as a BEGIN past busy_timeout).
 * write_waiting: a ctl transaction waits in ctl_take (ops.write_waiting). */
void sd_sqlite_turn_writer_take(struct sd_store *s);
void sd_sqlite_turn_writer_give(struct sd_store *s);
int sd_sqlite_turn_ctl_take(struct sd_store *s);
bool sd_sqlite_write_waiting(struct sd_store *s);
void sd_sqlite_turn_ctl_give(struct sd_store *s);
int sd_sqlite_ctl_end_write(struct sd_store *s, int r, bool changed);

/* Write transaction on control.db (the `cp` connection): begin takes cp_lock; end bumps the
 * settings version in the same transaction when `changed`, commits or rolls back, unlocks. */
int sd_sqlite_cp_begin_write(struct sd_store *s);
int sd_sqlite_cp_end_write(struct sd_store *s, int r, bool changed);

/* Copy the tenants, keys and settings version of a data file that still holds them (schema
 * version `data_version`, 1 to 5) into control.db, in one transaction on `cp` (INSERT OR
 * IGNORE: running it twice copies nothing twice). The caller holds the data file's write lock,
 * so what is copied is what the data migration then drops. */
int sd_sqlite_control_adopt(struct sd_store *s, const char *data_uri, int64_t data_version);

/* For tests (test_profiles_plan.c): the text of profiles statement i, NULL past the last;
 * *ret_tenant_wide says whether it may read a whole tenant's rows by design. */
const char *sd_sqlite_profiles_stmt_text(unsigned i, bool *ret_tenant_wide);

/* A "file:" URI for path with the query (e.g. "mode=ro"), for ATTACH. Caller frees. */
char *sd_sqlite_file_uri(const char *path, const char *query);

#endif
