/* store_sqlite.c — the SQLite backend of store.h: one file DIR/stagedoor.db in WAL mode.
 *
 * Connections and who may touch them (no connection is ever used by two threads at once, so
 * all are opened SQLITE_OPEN_NOMUTEX and SQLite's own per-connection mutex is not paid for):
 *  - `writer`: only the single writer thread (write_*, savepoint*, apply_ingest, replace_sale,
 *    idem_put, idem_purge). Its transactions are BEGIN IMMEDIATE, so they hold SQLite's write
 *    lock from begin to commit; the seq counter is therefore re-read (max over the record
 *    tables, three O(log n) lookups because seq is the rowid) at every write_begin, which keeps
 *    seq unique and commit-ordered even if another process wrote records in between.
 *  - `ctl`: control plane, guarded by ctl_lock. Other processes (the CLI) write the same file,
 *    so writes are BEGIN IMMEDIATE and wait on busy_timeout; each bumps meta.settings_version
 *    in the same transaction.
 *  - read pool: up to POOL_MAX read-only connections on a free list (pool_lock + pool_cond).
 *    Every read op is one statement (or one BEGIN…COMMIT), so it sees one committed snapshot,
 *    and its statements are reset before the connection goes back, ending the read
 *    transaction (an open one would pin the WAL and stall checkpoints).
 *
 * Every statement is prepared once per connection (lazily, SQLITE_PREPARE_PERSISTENT) from the
 * sql[] table below; values are always bound, never formatted into SQL. Text that outlives the
 * step (the caller's records) is bound SQLITE_STATIC to avoid a copy per column.
 *
 * seq lives in memory on the writer side: write_begin loads it, each insert/update takes the
 * next value, savepoint remembers it, savepoint_rollback / write_rollback restore it.
 *
 * Checkpoints run on their own thread and connection (`ckpt`), not inside the writer's COMMIT:
 * the writer's wal_autocheckpoint is off and its WAL hook wakes the checkpointer once enough
 * frames have piled up. A PASSIVE checkpoint never blocks the writer; if the WAL still grows
 * past WAL_RESTART_FRAMES (readers or a constant stream of commits kept it from being reset),
 * one RESTART checkpoint waits for the writer's current commit and resets the log. This keeps
 * the checkpoint's fsync of the database file off the latency of every group commit. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/base.h"
#include "base/log.h"
#include "store/store.h"

extern const char *const sd_sqlite_schema[];
extern const unsigned sd_sqlite_schema_count;

#define POOL_MAX 8
#define BUSY_TIMEOUT_MS 5000
#define PAGE_MAX 10000 /* list_records clamps its limit to this */

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
    N_STMT
};

static const char *const sql[N_STMT] = {
    [ST_BEGIN] = "BEGIN",
    [ST_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SAVEPOINT] = "SAVEPOINT sd",
    [ST_RELEASE] = "RELEASE sd",
    [ST_ROLLBACK_TO] = "ROLLBACK TO sd",
    [ST_USER_VERSION] = "PRAGMA user_version",
    [ST_MAX_SEQ] = "SELECT max((SELECT coalesce(max(seq), 0) FROM events),"
                   " (SELECT coalesce(max(seq), 0) FROM customers),"
                   " (SELECT coalesce(max(seq), 0) FROM sales))",

    [ST_SETTINGS_BUMP] = "UPDATE meta SET v = v + 1 WHERE k = 'settings_version'",
    [ST_SETTINGS_GET] = "SELECT v FROM meta WHERE k = 'settings_version'",
    [ST_TENANT_INSERT] = "INSERT INTO tenants (client_id, name, created_usec) VALUES (?1, ?2, ?3)",
    [ST_TENANT_GET] = "SELECT id, client_id, name, per_minute, burst, created_usec FROM tenants"
                      " WHERE client_id = ?1",
    [ST_TENANT_LIST] = "SELECT id, client_id, name, per_minute, burst, created_usec FROM tenants"
                       " ORDER BY id",
    [ST_TENANT_ID] = "SELECT id FROM tenants WHERE client_id = ?1",
    [ST_TENANT_SET_LIMITS] = "UPDATE tenants SET per_minute = ?2, burst = ?3 WHERE client_id = ?1",
    [ST_KEY_INSERT] = "INSERT INTO api_keys (key_id, tenant_id, env, hash_hex, created_usec)"
                      " VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_KEY_LIST] = "SELECT k.key_id, t.client_id, k.tenant_id, k.env, NULL, k.created_usec,"
                    " k.revoked_usec FROM api_keys k JOIN tenants t ON t.id = k.tenant_id"
                    " WHERE t.client_id = ?1 ORDER BY k.created_usec, k.key_id",
    [ST_KEY_LIST_ALL] = "SELECT k.key_id, t.client_id, k.tenant_id, k.env, k.hash_hex,"
                        " k.created_usec, k.revoked_usec FROM api_keys k"
                        " JOIN tenants t ON t.id = k.tenant_id ORDER BY k.created_usec, k.key_id",
    [ST_KEY_REVOKE] = "UPDATE api_keys SET revoked_usec = ?2 WHERE key_id = ?1 AND revoked_usec = 0",
    [ST_KEY_EXISTS] = "SELECT 1 FROM api_keys WHERE key_id = ?1",

    /* json_set: an update sent under an alias id keeps the event's own id in the document. */
    [ST_EVENT_UPDATE] = "UPDATE events SET seq = ?4, dup_key = ?5,"
                        " doc = json_set(?6, '$.event_id', ?3), updated_usec = ?7"
                        " WHERE tenant_id = ?1 AND env = ?2 AND event_id = ?3",
    [ST_EVENT_INSERT] = "INSERT INTO events (tenant_id, env, event_id, seq, dup_key, doc,"
                        " updated_usec) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_EVENT_BY_DUP] = "SELECT event_id FROM events WHERE tenant_id = ?1 AND env = ?2"
                        " AND dup_key = ?3 LIMIT 1",
    [ST_ALIAS_GET] = "SELECT event_id FROM event_aliases WHERE tenant_id = ?1 AND env = ?2"
                     " AND alias_id = ?3",
    [ST_ALIAS_INSERT] = "INSERT INTO event_aliases (tenant_id, env, alias_id, event_id)"
                        " VALUES (?1, ?2, ?3, ?4)",
    [ST_EVENT_RESOLVE] = "SELECT event_id FROM events WHERE tenant_id = ?1 AND env = ?2"
                         " AND event_id = ?3 UNION ALL SELECT event_id FROM event_aliases"
                         " WHERE tenant_id = ?1 AND env = ?2 AND alias_id = ?3 LIMIT 1",
    /* An omitted opt-out flag never clears a known one: losing an opt-out is the costly
     * mistake (ads sent against the customer's wish). */
    [ST_CUSTOMER_UPSERT] =
        "INSERT INTO customers (tenant_id, env, customer_id, seq, email_key, ad_opt_out, doc,"
        " updated_usec) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        " ON CONFLICT (tenant_id, env, customer_id) DO UPDATE SET seq = excluded.seq,"
        " email_key = excluded.email_key,"
        " ad_opt_out = coalesce(excluded.ad_opt_out, customers.ad_opt_out),"
        " doc = excluded.doc, updated_usec = excluded.updated_usec",
    [ST_CUSTOMER_EXISTS] = "SELECT 1 FROM customers WHERE tenant_id = ?1 AND env = ?2"
                           " AND customer_id = ?3",
    [ST_SALE_INSERT] =
        "INSERT INTO sales (tenant_id, env, invoice_number, seq, event_id, event_ref,"
        " customer_id, purchase_datetime, sales_price_minor, currency, doc, updated_usec)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
        " ON CONFLICT (tenant_id, env, invoice_number) DO NOTHING",
    [ST_SALE_EXISTS] = "SELECT 1 FROM sales WHERE tenant_id = ?1 AND env = ?2"
                       " AND invoice_number = ?3",
    [ST_SALE_UPDATE] = "UPDATE sales SET seq = ?4, event_id = ?5, event_ref = ?6,"
                       " customer_id = ?7, purchase_datetime = ?8, sales_price_minor = ?9,"
                       " currency = ?10, doc = ?11, updated_usec = ?12"
                       " WHERE tenant_id = ?1 AND env = ?2 AND invoice_number = ?3",
    [ST_IDEM_PUT] = "INSERT INTO idempotency (tenant_id, env, idem_key, body_hash, status,"
                    " response, created_usec) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                    " ON CONFLICT (tenant_id, env, idem_key) DO UPDATE SET"
                    " body_hash = excluded.body_hash, status = excluded.status,"
                    " response = excluded.response, created_usec = excluded.created_usec"
                    " WHERE idempotency.created_usec < excluded.created_usec - 86400000000",
    [ST_IDEM_PURGE] = "DELETE FROM idempotency WHERE created_usec < ?1",

    [ST_IDEM_GET] = "SELECT body_hash, status, response, created_usec FROM idempotency"
                    " WHERE tenant_id = ?1 AND env = ?2 AND idem_key = ?3",
    [ST_LIST_EVENTS] = "SELECT seq, doc FROM events WHERE tenant_id = ?1 AND env = ?2"
                       " AND seq > ?3 ORDER BY seq LIMIT ?4",
    [ST_LIST_CUSTOMERS] = "SELECT seq, doc FROM customers WHERE tenant_id = ?1 AND env = ?2"
                          " AND seq > ?3 ORDER BY seq LIMIT ?4",
    [ST_LIST_SALES] = "SELECT seq, doc FROM sales WHERE tenant_id = ?1 AND env = ?2"
                      " AND seq > ?3 ORDER BY seq LIMIT ?4",
    [ST_GET_EVENT] = "SELECT doc FROM events WHERE tenant_id = ?1 AND env = ?2 AND event_id = ?3"
                     " UNION ALL SELECT e.doc FROM event_aliases a JOIN events e"
                     " ON e.tenant_id = a.tenant_id AND e.env = a.env AND e.event_id = a.event_id"
                     " WHERE a.tenant_id = ?1 AND a.env = ?2 AND a.alias_id = ?3 LIMIT 1",
    [ST_GET_CUSTOMER] = "SELECT doc FROM customers WHERE tenant_id = ?1 AND env = ?2"
                        " AND customer_id = ?3",
    [ST_GET_SALE] = "SELECT doc FROM sales WHERE tenant_id = ?1 AND env = ?2"
                    " AND invoice_number = ?3",
    [ST_COUNT_EVENTS] = "SELECT count(*) FROM events WHERE tenant_id = ?1 AND env = ?2",
    [ST_COUNT_CUSTOMERS] = "SELECT count(*) FROM customers WHERE tenant_id = ?1 AND env = ?2",
    [ST_COUNT_SALES] = "SELECT count(*) FROM sales WHERE tenant_id = ?1 AND env = ?2",
};

struct conn {
    sqlite3 *db;
    sqlite3_stmt *st[N_STMT];
    struct conn *next_free;
};

struct sd_store {
    char *path;

    /* writer thread only */
    struct conn *writer;
    int64_t seq;          /* last assigned */
    int64_t seq_at_begin; /* restored by write_rollback */
    int64_t seq_at_sp;    /* restored by savepoint_rollback */
    struct sd_buf ref_key; /* apply: last resolved event id as sent … */
    struct sd_buf ref_val; /* … and its canonical id */

    pthread_mutex_t ctl_lock;
    struct conn *ctl;

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
    int wal_frames; /* frames in the WAL after the writer's last commit (ckpt_lock) */
    bool ckpt_stop;
};

#define WAL_CHECKPOINT_FRAMES 1000
#define WAL_RESTART_FRAMES 50000

enum conn_role {
    ROLE_WRITER, /* the write path */
    ROLE_CTL,    /* control plane */
    ROLE_READ,   /* pool */
};

/* ---- connections and statements ------------------------------------------------------------ */

static int db_fail(struct conn *c, int rc, const char *op)
{
    /* SQLite messages name tables and columns, never values: safe to log. */
    sd_log(SD_LOG_ERROR, "sqlite operation failed", "op=%s rc=%d error=\"%s\"", op, rc,
           c && c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
    return -EIO;
}

static int is_constraint(int rc)
{
    return (rc & 0xff) == SQLITE_CONSTRAINT;
}

/* The cached statement `id` of c, prepared on first use. NULL after logging on failure. */
static sqlite3_stmt *stmt(struct conn *c, enum stmt_id id)
{
    if (!c->st[id]) {
        int rc = sqlite3_prepare_v3(c->db, sql[id], -1, SQLITE_PREPARE_PERSISTENT, &c->st[id],
                                    NULL);
        if (rc != SQLITE_OK) {
            db_fail(c, rc, "prepare");
            c->st[id] = NULL;
        }
    }
    return c->st[id];
}

/* Step a statement that returns no row; resets it. Returns 0, -EEXIST (constraint) or -EIO. */
static int step_done(struct conn *c, sqlite3_stmt *st, const char *op)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_DONE) {
        return 0;
    }
    if (is_constraint(rc)) {
        return -EEXIST;
    }
    return db_fail(c, rc, op);
}

static int run(struct conn *c, enum stmt_id id)
{
    sqlite3_stmt *st = stmt(c, id);
    if (!st) {
        return -EIO;
    }
    return step_done(c, st, sql[id]);
}

static void conn_close(struct conn *c)
{
    if (!c) {
        return;
    }
    for (size_t i = 0; i < N_STMT; i++) {
        sqlite3_finalize(c->st[i]);
    }
    int rc = sqlite3_close(c->db);
    if (rc != SQLITE_OK) {
        sd_log(SD_LOG_ERROR, "sqlite close failed", "rc=%d", rc);
    }
    free(c);
}

static int conn_exec(struct conn *c, const char *text)
{
    char *err = NULL;
    int rc = sqlite3_exec(c->db, text, NULL, NULL, &err);
    if (rc != SQLITE_OK) {
        sd_log(SD_LOG_ERROR, "sqlite statement failed", "sql=\"%s\" rc=%d error=\"%s\"", text, rc,
               err ? err : sqlite3_errstr(rc));
        sqlite3_free(err);
        return -EIO;
    }
    return 0;
}

static int conn_open(const char *path, enum conn_role role, struct conn **ret)
{
    struct conn *c = sd_calloc(1, sizeof(*c));
    int flags = SQLITE_OPEN_NOMUTEX | (role == ROLE_READ
                                           ? SQLITE_OPEN_READONLY
                                           : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    int r = 0;
    int rc = sqlite3_open_v2(path, &c->db, flags, NULL);
    if (rc != SQLITE_OK) {
        sd_log(SD_LOG_ERROR, "cannot open database", "path=\"%s\" rc=%d error=\"%s\"", path, rc,
               c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        r = -EIO;
        goto out;
    }
    sqlite3_extended_result_codes(c->db, 0);
    sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);
    if (role != ROLE_READ) {
        /* journal_mode answers with the mode in force; anything but wal means we could not
         * switch (e.g. a filesystem without shared memory) and durability assumptions break. */
        sqlite3_stmt *st = NULL;
        rc = sqlite3_prepare_v2(c->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
        if (rc == SQLITE_OK) {
            rc = sqlite3_step(st);
        }
        if (rc != SQLITE_ROW || !sqlite3_column_text(st, 0) ||
            strcmp((const char *)sqlite3_column_text(st, 0), "wal") != 0) {
            sd_log(SD_LOG_ERROR, "cannot switch database to wal mode", "path=\"%s\" rc=%d", path,
                   rc);
            sqlite3_finalize(st);
            r = -EIO;
            goto out;
        }
        sqlite3_finalize(st);
        r = conn_exec(c, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON");
        if (r < 0) {
            goto out;
        }
    }
    if (role == ROLE_WRITER) {
        /* 64 MiB page cache (default 2 MiB): the group-commit writer touches the right edge of
         * every table and index plus random customer and invoice index pages; measured ~1.3x
         * on the 1M-sale bench as the file outgrows the default cache. */
        r = conn_exec(c, "PRAGMA cache_size = -65536");
        if (r < 0) {
            goto out;
        }
    }
    *ret = c;
    c = NULL;
out:
    conn_close(c);
    return r;
}

/* Commit if r >= 0, else roll back (if a transaction is still open). Returns r or -EIO. */
static int tx_finish(struct conn *c, int r)
{
    if (r >= 0) {
        int cr = run(c, ST_COMMIT);
        if (cr == 0) {
            return r;
        }
        r = -EIO;
    }
    if (!sqlite3_get_autocommit(c->db)) {
        (void)run(c, ST_ROLLBACK);
    }
    return r;
}

/* ---- open, migrations, close ------------------------------------------------------------- */

static int migrate(struct conn *c)
{
    int r = run(c, ST_BEGIN_IMMEDIATE);
    if (r < 0) {
        return r;
    }
    sqlite3_stmt *st = stmt(c, ST_USER_VERSION);
    if (!st) {
        r = -EIO;
        goto out;
    }
    int rc = sqlite3_step(st);
    int64_t version = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW) {
        r = db_fail(c, rc, "user_version");
        goto out;
    }
    if (version > (int64_t)sd_sqlite_schema_count) {
        sd_log(SD_LOG_ERROR, "database schema is newer than this program",
               "version=%lld known=%u", (long long)version, sd_sqlite_schema_count);
        r = -EIO;
        goto out;
    }
    for (unsigned i = (unsigned)version; i < sd_sqlite_schema_count; i++) {
        r = conn_exec(c, sd_sqlite_schema[i]);
        if (r < 0) {
            goto out;
        }
        /* PRAGMA takes no parameters; the value is our own counter, not input. */
        char pragma[48];
        snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %u", i + 1);
        r = conn_exec(c, pragma);
        if (r < 0) {
            goto out;
        }
        sd_log(SD_LOG_INFO, "database migrated", "version=%u", i + 1);
    }
out:
    return tx_finish(c, r);
}

static void sqlite_close(struct sd_store *s)
{
    if (!s) {
        return;
    }
    if (s->ckpt_running) {
        pthread_mutex_lock(&s->ckpt_lock);
        s->ckpt_stop = true;
        pthread_cond_signal(&s->ckpt_cond);
        pthread_mutex_unlock(&s->ckpt_lock);
        pthread_join(s->ckpt_thread, NULL);
    }
    conn_close(s->ckpt);
    /* Readers first, the writer last: the last connection to close checkpoints the WAL and
     * removes it, which a read-only connection cannot do. */
    unsigned n = 0;
    while (s->pool_free) {
        struct conn *c = s->pool_free;
        s->pool_free = c->next_free;
        conn_close(c);
        n++;
    }
    if (n != s->pool_open) {
        sd_log(SD_LOG_ERROR, "store closed with read connections in use", "in_use=%u",
               s->pool_open - n);
    }
    conn_close(s->ctl);
    conn_close(s->writer);
    pthread_cond_destroy(&s->pool_cond);
    pthread_mutex_destroy(&s->pool_lock);
    pthread_mutex_destroy(&s->ctl_lock);
    pthread_cond_destroy(&s->ckpt_cond);
    pthread_mutex_destroy(&s->ckpt_lock);
    sd_buf_release(&s->ref_key);
    sd_buf_release(&s->ref_val);
    free(s->path);
    free(s);
}

static int on_wal_commit(void *arg, sqlite3 *db, const char *name, int frames)
{
    struct sd_store *s = arg;
    (void)db;
    (void)name;
    pthread_mutex_lock(&s->ckpt_lock);
    s->wal_frames = frames;
    if (frames >= WAL_CHECKPOINT_FRAMES) {
        pthread_cond_signal(&s->ckpt_cond);
    }
    pthread_mutex_unlock(&s->ckpt_lock);
    return SQLITE_OK;
}

static void *checkpointer_main(void *arg)
{
    struct sd_store *s = arg;
    pthread_mutex_lock(&s->ckpt_lock);
    while (!s->ckpt_stop) {
        if (s->wal_frames < WAL_CHECKPOINT_FRAMES) {
            pthread_cond_wait(&s->ckpt_cond, &s->ckpt_lock);
            continue;
        }
        int mode = s->wal_frames >= WAL_RESTART_FRAMES ? SQLITE_CHECKPOINT_RESTART
                                                       : SQLITE_CHECKPOINT_PASSIVE;
        s->wal_frames = 0; /* the next commit reports the new size */
        pthread_mutex_unlock(&s->ckpt_lock);
        int log = 0, done = 0;
        int rc = sqlite3_wal_checkpoint_v2(s->ckpt->db, NULL, mode, &log, &done);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
            sd_log(SD_LOG_WARN, "wal checkpoint failed; will retry", "rc=%d", rc);
        }
        pthread_mutex_lock(&s->ckpt_lock);
    }
    pthread_mutex_unlock(&s->ckpt_lock);
    return NULL;
}

static int start_checkpointer(struct sd_store *s)
{
    int r = conn_open(s->path, ROLE_CTL, &s->ckpt);
    if (r < 0) {
        return r;
    }
    r = conn_exec(s->writer, "PRAGMA wal_autocheckpoint = 0");
    if (r < 0) {
        return r;
    }
    sqlite3_wal_hook(s->writer->db, on_wal_commit, s);
    int e = pthread_create(&s->ckpt_thread, NULL, checkpointer_main, s);
    if (e != 0) {
        return -e;
    }
    s->ckpt_running = true;
    return 0;
}

static int sqlite_open(const char *location, struct sd_store **ret)
{
    if (!location || !*location) {
        return -EINVAL;
    }
    if (mkdir(location, 0700) < 0 && errno != EEXIST) {
        int e = errno;
        sd_log(SD_LOG_ERROR, "cannot create data directory", "path=\"%s\" errno=%d", location, e);
        return -e;
    }
    struct sd_store *s = sd_calloc(1, sizeof(*s));
    pthread_mutex_init(&s->ctl_lock, NULL);
    pthread_mutex_init(&s->pool_lock, NULL);
    pthread_cond_init(&s->pool_cond, NULL);
    pthread_mutex_init(&s->ckpt_lock, NULL);
    pthread_cond_init(&s->ckpt_cond, NULL);
    sd_buf_init(&s->ref_key);
    sd_buf_init(&s->ref_val);
    s->path = sd_asprintf("%s/stagedoor.db", location);

    int r = conn_open(s->path, ROLE_WRITER, &s->writer);
    if (r < 0) {
        goto out;
    }
    r = migrate(s->writer);
    if (r < 0) {
        goto out;
    }
    r = conn_open(s->path, ROLE_CTL, &s->ctl);
    if (r < 0) {
        goto out;
    }
    r = start_checkpointer(s);
    if (r < 0) {
        goto out;
    }
    *ret = s;
    s = NULL;
out:
    sqlite_close(s);
    return r;
}

/* ---- read pool ------------------------------------------------------------------------------ */

static int pool_get(struct sd_store *s, struct conn **ret)
{
    pthread_mutex_lock(&s->pool_lock);
    while (!s->pool_free && s->pool_open >= POOL_MAX) {
        pthread_cond_wait(&s->pool_cond, &s->pool_lock);
    }
    struct conn *c = s->pool_free;
    if (c) {
        s->pool_free = c->next_free;
        pthread_mutex_unlock(&s->pool_lock);
        c->next_free = NULL;
        *ret = c;
        return 0;
    }
    s->pool_open++; /* reserve the slot, open outside the lock */
    pthread_mutex_unlock(&s->pool_lock);
    int r = conn_open(s->path, ROLE_READ, &c);
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

static void pool_put(struct sd_store *s, struct conn *c)
{
    pthread_mutex_lock(&s->pool_lock);
    c->next_free = s->pool_free;
    s->pool_free = c;
    pthread_cond_signal(&s->pool_cond);
    pthread_mutex_unlock(&s->pool_lock);
}

/* ---- small helpers -------------------------------------------------------------------------- */

static const char *env_name(enum sd_env env)
{
    return env == SD_ENV_PROD ? "prod" : "test";
}

static bool env_ok(enum sd_env env)
{
    return env == SD_ENV_TEST || env == SD_ENV_PROD;
}

static char *column_strdup(sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    if (!t) {
        return NULL;
    }
    return sd_strndup((const char *)t, (size_t)sqlite3_column_bytes(st, col));
}

/* Bind (tenant_id, env, key) to ?1..?3 — the shape of every scoped lookup. */
static int bind_scope(sqlite3_stmt *st, int64_t tenant_id, enum sd_env env, const char *key)
{
    int rc = sqlite3_bind_int64(st, 1, tenant_id);
    rc |= sqlite3_bind_int(st, 2, (int)env);
    if (key) {
        rc |= sqlite3_bind_text(st, 3, key, -1, SQLITE_STATIC);
    }
    return rc;
}

/* Run a scoped lookup whose first column is text: 1 and the text appended to *out (reset
 * first), 0 if no row, or -EIO. */
static int lookup_text(struct conn *c, enum stmt_id id, int64_t tenant_id, enum sd_env env,
                       const char *key, struct sd_buf *out)
{
    sqlite3_stmt *st = stmt(c, id);
    if (!st) {
        return -EIO;
    }
    if (bind_scope(st, tenant_id, env, key) != SQLITE_OK) {
        return db_fail(c, SQLITE_MISUSE, "bind");
    }
    int rc = sqlite3_step(st);
    int r = 0;
    if (rc == SQLITE_ROW) {
        if (out) {
            sd_buf_reset(out);
            const unsigned char *t = sqlite3_column_text(st, 0);
            sd_buf_append(out, t ? t : (const unsigned char *)"",
                          (size_t)sqlite3_column_bytes(st, 0));
        }
        r = 1;
    } else if (rc != SQLITE_DONE) {
        r = db_fail(c, rc, sql[id]);
    }
    sqlite3_reset(st);
    return r;
}

static void read_tenant(sqlite3_stmt *st, struct sd_tenant *t)
{
    t->id = sqlite3_column_int64(st, 0);
    t->client_id = column_strdup(st, 1);
    t->name = column_strdup(st, 2);
    t->per_minute = sqlite3_column_int64(st, 3);
    t->burst = sqlite3_column_int64(st, 4);
    t->created_usec = sqlite3_column_int64(st, 5);
}

static void read_key(sqlite3_stmt *st, struct sd_key_info *k)
{
    k->key_id = column_strdup(st, 0);
    k->client_id = column_strdup(st, 1);
    k->tenant_id = sqlite3_column_int64(st, 2);
    k->env = sqlite3_column_int(st, 3) == 1 ? SD_ENV_PROD : SD_ENV_TEST;
    k->hash_hex = column_strdup(st, 4);
    k->created_usec = sqlite3_column_int64(st, 5);
    k->revoked_usec = sqlite3_column_int64(st, 6);
}

static int collect_tenants(struct conn *c, struct sd_tenant **ret, size_t *ret_n)
{
    sqlite3_stmt *st = stmt(c, ST_TENANT_LIST);
    if (!st) {
        return -EIO;
    }
    struct sd_tenant *v = NULL;
    size_t n = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            v = sd_realloc(v, cap * sizeof(*v));
        }
        read_tenant(st, &v[n++]);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        sd_tenants_free(v, n);
        return db_fail(c, rc, "tenant list");
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

static int collect_keys(struct conn *c, enum stmt_id id, const char *client_id,
                        struct sd_key_info **ret, size_t *ret_n)
{
    sqlite3_stmt *st = stmt(c, id);
    if (!st) {
        return -EIO;
    }
    if (client_id && sqlite3_bind_text(st, 1, client_id, -1, SQLITE_STATIC) != SQLITE_OK) {
        return db_fail(c, SQLITE_MISUSE, "bind");
    }
    struct sd_key_info *v = NULL;
    size_t n = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            v = sd_realloc(v, cap * sizeof(*v));
        }
        read_key(st, &v[n++]);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        sd_keys_free(v, n);
        return db_fail(c, rc, "key list");
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

/* ---- control plane -------------------------------------------------------------------------- */

static int ctl_begin_write(struct sd_store *s)
{
    pthread_mutex_lock(&s->ctl_lock);
    int r = run(s->ctl, ST_BEGIN_IMMEDIATE);
    if (r < 0) {
        pthread_mutex_unlock(&s->ctl_lock);
    }
    return r;
}

/* Bump the settings version if r >= 0 and something changed, commit or roll back, unlock. */
static int ctl_end_write(struct sd_store *s, int r, bool changed)
{
    if (r >= 0 && changed) {
        r = run(s->ctl, ST_SETTINGS_BUMP);
    }
    r = tx_finish(s->ctl, r);
    pthread_mutex_unlock(&s->ctl_lock);
    return r;
}

static int sqlite_tenant_create(struct sd_store *s, const char *client_id, const char *name)
{
    if (!client_id || !name) {
        return -EINVAL;
    }
    int r = ctl_begin_write(s);
    if (r < 0) {
        return r;
    }
    sqlite3_stmt *st = stmt(s->ctl, ST_TENANT_INSERT);
    if (!st) {
        r = -EIO;
    } else if ((sqlite3_bind_text(st, 1, client_id, -1, SQLITE_STATIC) |
                sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC) |
                sqlite3_bind_int64(st, 3, sd_now_usec())) != SQLITE_OK) {
        r = db_fail(s->ctl, SQLITE_MISUSE, "bind");
    } else {
        r = step_done(s->ctl, st, "tenant insert");
    }
    return ctl_end_write(s, r, true);
}

static int sqlite_tenant_get(struct sd_store *s, const char *client_id, struct sd_tenant *ret)
{
    if (!client_id) {
        return -EINVAL;
    }
    pthread_mutex_lock(&s->ctl_lock);
    struct conn *c = s->ctl;
    int r = -EIO;
    sqlite3_stmt *st = stmt(c, ST_TENANT_GET);
    if (st) {
        if (sqlite3_bind_text(st, 1, client_id, -1, SQLITE_STATIC) != SQLITE_OK) {
            r = db_fail(c, SQLITE_MISUSE, "bind");
        } else {
            int rc = sqlite3_step(st);
            if (rc == SQLITE_ROW) {
                read_tenant(st, ret);
                r = 0;
            } else if (rc == SQLITE_DONE) {
                r = -ENOENT;
            } else {
                r = db_fail(c, rc, "tenant get");
            }
            sqlite3_reset(st);
        }
    }
    pthread_mutex_unlock(&s->ctl_lock);
    return r;
}

static int sqlite_tenant_list(struct sd_store *s, struct sd_tenant **ret, size_t *ret_n)
{
    pthread_mutex_lock(&s->ctl_lock);
    int r = collect_tenants(s->ctl, ret, ret_n);
    pthread_mutex_unlock(&s->ctl_lock);
    return r;
}

static int sqlite_tenant_set_limits(struct sd_store *s, const char *client_id,
                                    int64_t per_minute, int64_t burst)
{
    if (!client_id || per_minute < 0 || burst < 0) {
        return -EINVAL;
    }
    int r = ctl_begin_write(s);
    if (r < 0) {
        return r;
    }
    sqlite3_stmt *st = stmt(s->ctl, ST_TENANT_SET_LIMITS);
    if (!st) {
        r = -EIO;
    } else if ((sqlite3_bind_text(st, 1, client_id, -1, SQLITE_STATIC) |
                sqlite3_bind_int64(st, 2, per_minute) | sqlite3_bind_int64(st, 3, burst)) !=
               SQLITE_OK) {
        r = db_fail(s->ctl, SQLITE_MISUSE, "bind");
    } else {
        r = step_done(s->ctl, st, "tenant set limits");
        if (r == 0 && sqlite3_changes(s->ctl->db) == 0) {
            r = -ENOENT;
        }
    }
    return ctl_end_write(s, r, true);
}

static int sqlite_key_insert(struct sd_store *s, const char *key_id, const char *client_id,
                             enum sd_env env, const char *hash_hex)
{
    if (!key_id || !client_id || !hash_hex || !env_ok(env)) {
        return -EINVAL;
    }
    int r = ctl_begin_write(s);
    if (r < 0) {
        return r;
    }
    struct conn *c = s->ctl;
    int64_t tenant_id = 0;
    sqlite3_stmt *st = stmt(c, ST_TENANT_ID);
    if (!st) {
        r = -EIO;
        goto out;
    }
    if (sqlite3_bind_text(st, 1, client_id, -1, SQLITE_STATIC) != SQLITE_OK) {
        r = db_fail(c, SQLITE_MISUSE, "bind");
        goto out;
    }
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        tenant_id = sqlite3_column_int64(st, 0);
    }
    sqlite3_reset(st);
    if (rc == SQLITE_DONE) {
        r = -ENOENT;
        goto out;
    } else if (rc != SQLITE_ROW) {
        r = db_fail(c, rc, "tenant id");
        goto out;
    }
    st = stmt(c, ST_KEY_INSERT);
    if (!st) {
        r = -EIO;
        goto out;
    }
    if ((sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC) |
         sqlite3_bind_int64(st, 2, tenant_id) | sqlite3_bind_int(st, 3, (int)env) |
         sqlite3_bind_text(st, 4, hash_hex, -1, SQLITE_STATIC) |
         sqlite3_bind_int64(st, 5, sd_now_usec())) != SQLITE_OK) {
        r = db_fail(c, SQLITE_MISUSE, "bind");
        goto out;
    }
    r = step_done(c, st, "key insert");
out:
    return ctl_end_write(s, r, true);
}

static int sqlite_key_list(struct sd_store *s, const char *client_id, struct sd_key_info **ret,
                           size_t *ret_n)
{
    if (!client_id) {
        return -EINVAL;
    }
    pthread_mutex_lock(&s->ctl_lock);
    struct conn *c = s->ctl;
    /* One read transaction: the tenant check and the list see the same snapshot. */
    int r = run(c, ST_BEGIN);
    struct sd_key_info *v = NULL;
    size_t n = 0;
    if (r < 0) {
        goto out;
    }
    r = collect_keys(c, ST_KEY_LIST, client_id, &v, &n);
    if (r == 0 && n == 0) {
        sqlite3_stmt *st = stmt(c, ST_TENANT_ID);
        if (!st) {
            r = -EIO;
        } else if (sqlite3_bind_text(st, 1, client_id, -1, SQLITE_STATIC) != SQLITE_OK) {
            r = db_fail(c, SQLITE_MISUSE, "bind");
        } else {
            int rc = sqlite3_step(st);
            sqlite3_reset(st);
            r = rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : db_fail(c, rc, "tenant id");
        }
    }
    r = tx_finish(c, r);
    if (r == 0) {
        *ret = v;
        *ret_n = n;
        v = NULL;
        n = 0;
    }
out:
    sd_keys_free(v, n);
    pthread_mutex_unlock(&s->ctl_lock);
    return r;
}

static int sqlite_key_revoke(struct sd_store *s, const char *key_id)
{
    if (!key_id) {
        return -EINVAL;
    }
    int r = ctl_begin_write(s);
    if (r < 0) {
        return r;
    }
    struct conn *c = s->ctl;
    bool changed = false;
    sqlite3_stmt *st = stmt(c, ST_KEY_REVOKE);
    if (!st) {
        r = -EIO;
        goto out;
    }
    if ((sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC) |
         sqlite3_bind_int64(st, 2, sd_now_usec())) != SQLITE_OK) {
        r = db_fail(c, SQLITE_MISUSE, "bind");
        goto out;
    }
    r = step_done(c, st, "key revoke");
    if (r < 0) {
        goto out;
    }
    changed = sqlite3_changes(c->db) > 0;
    if (!changed) {
        /* Unknown, or revoked before: the first revocation time stays. */
        st = stmt(c, ST_KEY_EXISTS);
        if (!st) {
            r = -EIO;
            goto out;
        }
        if (sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC) != SQLITE_OK) {
            r = db_fail(c, SQLITE_MISUSE, "bind");
            goto out;
        }
        int rc = sqlite3_step(st);
        sqlite3_reset(st);
        r = rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : db_fail(c, rc, "key exists");
    }
out:
    return ctl_end_write(s, r, changed);
}

static int sqlite_settings_version(struct sd_store *s, int64_t *ret)
{
    pthread_mutex_lock(&s->ctl_lock);
    struct conn *c = s->ctl;
    int r = -EIO;
    sqlite3_stmt *st = stmt(c, ST_SETTINGS_GET);
    if (st) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *ret = sqlite3_column_int64(st, 0);
            r = 0;
        } else {
            r = db_fail(c, rc, "settings version");
        }
        sqlite3_reset(st);
    }
    pthread_mutex_unlock(&s->ctl_lock);
    return r;
}

static int sqlite_auth_snapshot(struct sd_store *s, struct sd_tenant **ret_t, size_t *ret_nt,
                                struct sd_key_info **ret_k, size_t *ret_nk)
{
    pthread_mutex_lock(&s->ctl_lock);
    struct conn *c = s->ctl;
    struct sd_tenant *t = NULL;
    size_t nt = 0;
    struct sd_key_info *k = NULL;
    size_t nk = 0;
    int r = run(c, ST_BEGIN);
    if (r < 0) {
        goto out;
    }
    r = collect_tenants(c, &t, &nt);
    if (r == 0) {
        r = collect_keys(c, ST_KEY_LIST_ALL, NULL, &k, &nk);
    }
    r = tx_finish(c, r);
    if (r == 0) {
        *ret_t = t;
        *ret_nt = nt;
        *ret_k = k;
        *ret_nk = nk;
        t = NULL;
        nt = 0;
        k = NULL;
        nk = 0;
    }
out:
    sd_tenants_free(t, nt);
    sd_keys_free(k, nk);
    pthread_mutex_unlock(&s->ctl_lock);
    return r;
}

/* ---- write path: transactions ---------------------------------------------------------------- */

static int sqlite_write_begin(struct sd_store *s)
{
    struct conn *c = s->writer;
    int r = run(c, ST_BEGIN_IMMEDIATE);
    if (r < 0) {
        return r;
    }
    sqlite3_stmt *st = stmt(c, ST_MAX_SEQ);
    if (!st) {
        r = -EIO;
    } else {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            s->seq = sqlite3_column_int64(st, 0);
        } else {
            r = db_fail(c, rc, "max seq");
        }
        sqlite3_reset(st);
    }
    if (r < 0) {
        (void)run(c, ST_ROLLBACK);
        return r;
    }
    s->seq_at_begin = s->seq;
    s->seq_at_sp = s->seq;
    return 0;
}

static int sqlite_write_commit(struct sd_store *s)
{
    struct conn *c = s->writer;
    int r = run(c, ST_COMMIT);
    if (r < 0) {
        /* The group is lost; leave the connection usable and the counter consistent. */
        if (!sqlite3_get_autocommit(c->db)) {
            (void)run(c, ST_ROLLBACK);
        }
        s->seq = s->seq_at_begin;
        return -EIO;
    }
    return 0;
}

static int sqlite_write_rollback(struct sd_store *s)
{
    struct conn *c = s->writer;
    s->seq = s->seq_at_begin;
    if (sqlite3_get_autocommit(c->db)) {
        return 0; /* SQLite already rolled back (e.g. after an I/O error) */
    }
    return run(c, ST_ROLLBACK);
}

static int sqlite_savepoint(struct sd_store *s)
{
    int r = run(s->writer, ST_SAVEPOINT);
    if (r == 0) {
        s->seq_at_sp = s->seq;
    }
    return r;
}

static int sqlite_savepoint_release(struct sd_store *s)
{
    return run(s->writer, ST_RELEASE);
}

static int sqlite_savepoint_rollback(struct sd_store *s)
{
    int r = run(s->writer, ST_ROLLBACK_TO);
    if (r == 0) {
        r = run(s->writer, ST_RELEASE);
    }
    if (r == 0) {
        s->seq = s->seq_at_sp;
    }
    return r;
}

/* ---- write path: ingest ------------------------------------------------------------------- */

/* Update event `event_id` with e's content and a new seq: 1 updated, 0 no such event, -EIO. */
static int event_update(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                        const char *event_id, const struct sd_event_rec *e, int64_t now)
{
    struct conn *c = s->writer;
    sqlite3_stmt *st = stmt(c, ST_EVENT_UPDATE);
    if (!st) {
        return -EIO;
    }
    int64_t seq = s->seq + 1;
    if ((bind_scope(st, tenant_id, env, event_id) | sqlite3_bind_int64(st, 4, seq) |
         sqlite3_bind_text(st, 5, e->dup_key, -1, SQLITE_STATIC) |
         sqlite3_bind_text(st, 6, e->doc, -1, SQLITE_STATIC) |
         sqlite3_bind_int64(st, 7, now)) != SQLITE_OK) {
        return db_fail(c, SQLITE_MISUSE, "bind");
    }
    int r = step_done(c, st, "event update");
    if (r < 0) {
        return r == -EEXIST ? db_fail(c, SQLITE_CONSTRAINT, "event update") : r;
    }
    if (sqlite3_changes(c->db) == 0) {
        return 0;
    }
    s->seq = seq;
    return 1;
}

static int event_insert(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                        const struct sd_event_rec *e, int64_t now)
{
    struct conn *c = s->writer;
    sqlite3_stmt *st = stmt(c, ST_EVENT_INSERT);
    if (!st) {
        return -EIO;
    }
    int64_t seq = s->seq + 1;
    if ((bind_scope(st, tenant_id, env, e->event_id) | sqlite3_bind_int64(st, 4, seq) |
         sqlite3_bind_text(st, 5, e->dup_key, -1, SQLITE_STATIC) |
         sqlite3_bind_text(st, 6, e->doc, -1, SQLITE_STATIC) |
         sqlite3_bind_int64(st, 7, now)) != SQLITE_OK) {
        return db_fail(c, SQLITE_MISUSE, "bind");
    }
    int r = step_done(c, st, "event insert");
    if (r < 0) {
        return r == -EEXIST ? db_fail(c, SQLITE_CONSTRAINT, "event insert") : r;
    }
    s->seq = seq;
    return 0;
}

static int alias_insert(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                        const char *alias_id, const char *event_id)
{
    struct conn *c = s->writer;
    sqlite3_stmt *st = stmt(c, ST_ALIAS_INSERT);
    if (!st) {
        return -EIO;
    }
    if ((bind_scope(st, tenant_id, env, alias_id) |
         sqlite3_bind_text(st, 4, event_id, -1, SQLITE_STATIC)) != SQLITE_OK) {
        return db_fail(c, SQLITE_MISUSE, "bind");
    }
    int r = step_done(c, st, "alias insert");
    return r == -EEXIST ? db_fail(c, SQLITE_CONSTRAINT, "alias insert") : r;
}

static int apply_events(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                        const struct sd_batch *b, int64_t now, struct sd_apply_result *res)
{
    struct conn *c = s->writer;
    struct sd_buf other;
    sd_buf_init(&other);
    int r = 0;
    for (size_t i = 0; i < b->n_events; i++) {
        const struct sd_event_rec *e = &b->events[i];
        char ptr[48];
        snprintf(ptr, sizeof(ptr), "/events/%zu", e->index);

        r = event_update(s, tenant_id, env, e->event_id, e, now);
        if (r != 0) {
            if (r < 0) {
                goto out;
            }
            continue;
        }
        r = lookup_text(c, ST_ALIAS_GET, tenant_id, env, e->event_id, &other);
        if (r < 0) {
            goto out;
        }
        if (r == 1) {
            r = event_update(s, tenant_id, env, other.data, e, now);
            if (r < 0) {
                goto out;
            }
            if (r == 0) {
                sd_log(SD_LOG_ERROR, "event alias points to no event", "tenant=%lld",
                       (long long)tenant_id);
                r = -EIO;
                goto out;
            }
            sd_issues_add(&res->warnings, ptr, "'%s' is an alias of event '%s'; updated that event",
                          e->event_id, other.data);
            continue;
        }
        r = lookup_text(c, ST_EVENT_BY_DUP, tenant_id, env, e->dup_key, &other);
        if (r < 0) {
            goto out;
        }
        if (r == 1) {
            r = alias_insert(s, tenant_id, env, e->event_id, other.data);
            if (r < 0) {
                goto out;
            }
            sd_issues_add(&res->warnings, ptr,
                          "same performance (date, time, venue, hall) as event '%s'; '%s' stored "
                          "as an alias",
                          other.data, e->event_id);
            continue;
        }
        r = event_insert(s, tenant_id, env, e, now);
        if (r < 0) {
            goto out;
        }
    }
    r = 0;
out:
    sd_buf_release(&other);
    return r;
}

static int apply_customers(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                           const struct sd_batch *b, int64_t now)
{
    struct conn *c = s->writer;
    sqlite3_stmt *st = stmt(c, ST_CUSTOMER_UPSERT);
    if (!st) {
        return -EIO;
    }
    for (size_t i = 0; i < b->n_customers; i++) {
        const struct sd_customer_rec *cu = &b->customers[i];
        int64_t seq = s->seq + 1;
        int rc = bind_scope(st, tenant_id, env, cu->customer_id);
        rc |= sqlite3_bind_int64(st, 4, seq);
        rc |= cu->email_key ? sqlite3_bind_text(st, 5, cu->email_key, -1, SQLITE_STATIC)
                            : sqlite3_bind_null(st, 5);
        rc |= cu->ad_opt_out < 0 ? sqlite3_bind_null(st, 6)
                                 : sqlite3_bind_int(st, 6, cu->ad_opt_out ? 1 : 0);
        rc |= sqlite3_bind_text(st, 7, cu->doc, -1, SQLITE_STATIC);
        rc |= sqlite3_bind_int64(st, 8, now);
        if (rc != SQLITE_OK) {
            return db_fail(c, SQLITE_MISUSE, "bind");
        }
        int r = step_done(c, st, "customer upsert");
        if (r < 0) {
            return r == -EEXIST ? db_fail(c, SQLITE_CONSTRAINT, "customer upsert") : r;
        }
        s->seq = seq;
    }
    return 0;
}

/* Resolve a sale's event_id to the canonical event id (s->ref_val), caching the last answer:
 * a request's sales mostly share a few events. 1 found, 0 not, -EIO. */
static int resolve_event(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                         const char *event_id, bool *cache_valid)
{
    if (*cache_valid && strcmp(s->ref_key.data, event_id) == 0) {
        return 1;
    }
    *cache_valid = false;
    int r = lookup_text(s->writer, ST_EVENT_RESOLVE, tenant_id, env, event_id, &s->ref_val);
    if (r == 1) {
        sd_buf_reset(&s->ref_key);
        sd_buf_puts(&s->ref_key, event_id);
        *cache_valid = true;
    }
    return r;
}

/* Check both references of a sale; adds errors at ptr_prefix + "/event_id" / "/customer_id".
 * Returns the number of errors added (0..2) or -EIO. On 0, s->ref_val holds the event ref. */
static int check_sale_refs(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                           const struct sd_sale_rec *sale, const char *ptr_prefix,
                           bool *event_cache, const char **customer_cache,
                           struct sd_apply_result *res)
{
    int n_err = 0;
    char ptr[64];
    int r = resolve_event(s, tenant_id, env, sale->event_id, event_cache);
    if (r < 0) {
        return r;
    }
    if (r == 0) {
        snprintf(ptr, sizeof(ptr), "%s/event_id", ptr_prefix);
        sd_issues_add(&res->errors, ptr, "event '%s' does not exist in %s", sale->event_id,
                      env_name(env));
        n_err++;
    }
    const char *cid = sale->customer_id;
    if (strcmp(cid, SD_ANON_CUSTOMER) != 0 &&
        !(*customer_cache && strcmp(*customer_cache, cid) == 0)) {
        r = lookup_text(s->writer, ST_CUSTOMER_EXISTS, tenant_id, env, cid, NULL);
        if (r < 0) {
            return r;
        }
        if (r == 0) {
            snprintf(ptr, sizeof(ptr), "%s/customer_id", ptr_prefix);
            sd_issues_add(&res->errors, ptr, "customer '%s' does not exist in %s", cid,
                          env_name(env));
            n_err++;
        } else {
            *customer_cache = cid;
        }
    }
    return n_err;
}

/* Bind a sale's columns ?1..?12 (the insert and the update share the numbering). */
static int bind_sale(sqlite3_stmt *st, int64_t tenant_id, enum sd_env env,
                     const struct sd_sale_rec *sale, int64_t seq, const char *event_ref,
                     int64_t now)
{
    int rc = bind_scope(st, tenant_id, env, sale->invoice_number);
    rc |= sqlite3_bind_int64(st, 4, seq);
    rc |= sqlite3_bind_text(st, 5, sale->event_id, -1, SQLITE_STATIC);
    rc |= sqlite3_bind_text(st, 6, event_ref, -1, SQLITE_STATIC);
    rc |= sqlite3_bind_text(st, 7, sale->customer_id, -1, SQLITE_STATIC);
    rc |= sqlite3_bind_text(st, 8, sale->purchase_datetime, -1, SQLITE_STATIC);
    rc |= sqlite3_bind_int64(st, 9, sale->sales_price_minor);
    rc |= sqlite3_bind_text(st, 10, sale->currency, (int)strnlen(sale->currency, 3),
                            SQLITE_STATIC);
    rc |= sqlite3_bind_text(st, 11, sale->doc, -1, SQLITE_STATIC);
    rc |= sqlite3_bind_int64(st, 12, now);
    return rc;
}

static void push_duplicate(struct sd_apply_result *res, const char *invoice, size_t *cap)
{
    if (res->n_duplicate_invoices == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        res->duplicate_invoices =
            sd_realloc(res->duplicate_invoices, *cap * sizeof(*res->duplicate_invoices));
    }
    res->duplicate_invoices[res->n_duplicate_invoices++] = sd_strdup(invoice);
}

/* One pass: check references and insert while no reference error was seen. Once one is
 * found, inserting stops (the answer is 400 and the caller rolls the savepoint back) but the
 * checks go on so that every error is reported. */
static int apply_sales(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                       const struct sd_batch *b, int64_t now, struct sd_apply_result *res)
{
    struct conn *c = s->writer;
    sqlite3_stmt *st = stmt(c, ST_SALE_INSERT);
    if (!st) {
        return -EIO;
    }
    bool event_cache = false;
    const char *customer_cache = NULL;
    size_t ref_errors = 0, dup_cap = 0;
    for (size_t i = 0; i < b->n_sales; i++) {
        const struct sd_sale_rec *sale = &b->sales[i];
        char prefix[40];
        snprintf(prefix, sizeof(prefix), "/sales/%zu", sale->index);
        int n = check_sale_refs(s, tenant_id, env, sale, prefix, &event_cache, &customer_cache,
                                res);
        if (n < 0) {
            return n;
        }
        ref_errors += (size_t)n;
        if (ref_errors > 0) {
            continue;
        }
        int64_t seq = s->seq + 1;
        if (bind_sale(st, tenant_id, env, sale, seq, s->ref_val.data, now) != SQLITE_OK) {
            return db_fail(c, SQLITE_MISUSE, "bind");
        }
        int r = step_done(c, st, "sale insert");
        if (r < 0) {
            return r == -EEXIST ? db_fail(c, SQLITE_CONSTRAINT, "sale insert") : r;
        }
        if (sqlite3_changes(c->db) == 0) {
            push_duplicate(res, sale->invoice_number, &dup_cap);
        } else {
            s->seq = seq;
        }
    }
    if (ref_errors > 0) {
        for (size_t i = 0; i < res->n_duplicate_invoices; i++) {
            free(res->duplicate_invoices[i]);
        }
        free(res->duplicate_invoices);
        res->duplicate_invoices = NULL;
        res->n_duplicate_invoices = 0;
        res->status = 400;
    } else if (res->n_duplicate_invoices > 0) {
        res->status = 409;
    }
    return 0;
}

static int sqlite_apply_ingest(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                               const struct sd_batch *b, struct sd_apply_result *res)
{
    if (!env_ok(env)) {
        return -EINVAL;
    }
    int64_t now = sd_now_usec();
    res->status = 202;
    int r = apply_events(s, tenant_id, env, b, now, res);
    if (r == 0) {
        r = apply_customers(s, tenant_id, env, b, now);
    }
    if (r == 0) {
        r = apply_sales(s, tenant_id, env, b, now, res);
    }
    return r;
}

static int sqlite_replace_sale(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                               const struct sd_sale_rec *sale, struct sd_apply_result *res)
{
    if (!env_ok(env)) {
        return -EINVAL;
    }
    struct conn *c = s->writer;
    int r = lookup_text(c, ST_SALE_EXISTS, tenant_id, env, sale->invoice_number, NULL);
    if (r < 0) {
        return r;
    }
    if (r == 0) {
        res->status = 404;
        return 0;
    }
    /* The PUT body is the sale itself, so pointers are relative to it ("/event_id"). */
    bool event_cache = false;
    const char *customer_cache = NULL;
    r = check_sale_refs(s, tenant_id, env, sale, "", &event_cache, &customer_cache, res);
    if (r < 0) {
        return r;
    }
    if (r > 0) {
        res->status = 400;
        return 0;
    }
    sqlite3_stmt *st = stmt(c, ST_SALE_UPDATE);
    if (!st) {
        return -EIO;
    }
    int64_t seq = s->seq + 1;
    if (bind_sale(st, tenant_id, env, sale, seq, s->ref_val.data, sd_now_usec()) != SQLITE_OK) {
        return db_fail(c, SQLITE_MISUSE, "bind");
    }
    r = step_done(c, st, "sale update");
    if (r < 0) {
        return r == -EEXIST ? db_fail(c, SQLITE_CONSTRAINT, "sale update") : r;
    }
    s->seq = seq;
    res->status = 200;
    return 0;
}

static int sqlite_idem_put(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                           const char *key, const struct sd_idem_entry *e)
{
    if (!key || !e || !env_ok(env)) {
        return -EINVAL;
    }
    struct conn *c = s->writer;
    sqlite3_stmt *st = stmt(c, ST_IDEM_PUT);
    if (!st) {
        return -EIO;
    }
    int rc = bind_scope(st, tenant_id, env, key);
    rc |= sqlite3_bind_text(st, 4, e->body_hash, (int)strnlen(e->body_hash, 64), SQLITE_STATIC);
    rc |= sqlite3_bind_int(st, 5, e->status);
    rc |= sqlite3_bind_text(st, 6, e->response ? e->response : "", -1, SQLITE_STATIC);
    rc |= sqlite3_bind_int64(st, 7, e->created_usec);
    if (rc != SQLITE_OK) {
        return db_fail(c, SQLITE_MISUSE, "bind");
    }
    int r = step_done(c, st, "idempotency put");
    if (r < 0) {
        return r == -EEXIST ? db_fail(c, SQLITE_CONSTRAINT, "idempotency put") : r;
    }
    return sqlite3_changes(c->db) == 0 ? -EEXIST : 0;
}

static int sqlite_idem_purge(struct sd_store *s, int64_t before_usec)
{
    struct conn *c = s->writer;
    sqlite3_stmt *st = stmt(c, ST_IDEM_PURGE);
    if (!st) {
        return -EIO;
    }
    if (sqlite3_bind_int64(st, 1, before_usec) != SQLITE_OK) {
        return db_fail(c, SQLITE_MISUSE, "bind");
    }
    return step_done(c, st, "idempotency purge");
}

/* ---- read path ---------------------------------------------------------------------------- */

static int sqlite_idem_get(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                           const char *key, struct sd_idem_entry *ret)
{
    if (!key || !env_ok(env)) {
        return -EINVAL;
    }
    struct conn *c = NULL;
    int r = pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    sqlite3_stmt *st = stmt(c, ST_IDEM_GET);
    if (!st) {
        r = -EIO;
        goto out;
    }
    if (bind_scope(st, tenant_id, env, key) != SQLITE_OK) {
        r = db_fail(c, SQLITE_MISUSE, "bind");
        goto out;
    }
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *h = sqlite3_column_text(st, 0);
        memset(ret->body_hash, 0, sizeof(ret->body_hash));
        if (h) {
            size_t hl = (size_t)sqlite3_column_bytes(st, 0);
            memcpy(ret->body_hash, h, hl < 64 ? hl : 64);
        }
        ret->status = sqlite3_column_int(st, 1);
        ret->response = column_strdup(st, 2);
        ret->created_usec = sqlite3_column_int64(st, 3);
        r = 0;
    } else if (rc == SQLITE_DONE) {
        r = -ENOENT;
    } else {
        r = db_fail(c, rc, "idempotency get");
    }
    sqlite3_reset(st);
out:
    pool_put(s, c);
    return r;
}

static int kind_stmt(enum sd_kind kind, enum stmt_id base_events, enum stmt_id *ret)
{
    if (kind != SD_KIND_EVENT && kind != SD_KIND_CUSTOMER && kind != SD_KIND_SALE) {
        return -EINVAL;
    }
    /* The per-kind statements are declared in kind order: events, customers, sales. */
    *ret = (enum stmt_id)(base_events + (int)kind);
    return 0;
}

static int sqlite_list_records(struct sd_store *s, enum sd_kind kind, int64_t tenant_id,
                               enum sd_env env, int64_t after_seq, size_t limit,
                               struct sd_record_page *ret)
{
    enum stmt_id id;
    if (kind_stmt(kind, ST_LIST_EVENTS, &id) < 0 || !env_ok(env)) {
        return -EINVAL;
    }
    if (limit > PAGE_MAX) {
        limit = PAGE_MAX;
    }
    struct conn *c = NULL;
    int r = pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    struct sd_record_page page = {0};
    size_t cap = 0;
    sqlite3_stmt *st = stmt(c, id);
    if (!st) {
        r = -EIO;
        goto out;
    }
    if ((bind_scope(st, tenant_id, env, NULL) | sqlite3_bind_int64(st, 3, after_seq) |
         sqlite3_bind_int64(st, 4, (int64_t)limit + 1)) != SQLITE_OK) {
        r = db_fail(c, SQLITE_MISUSE, "bind");
        goto out;
    }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (page.n == limit) {
            page.has_more = true;
            break;
        }
        if (page.n == cap) {
            cap = cap ? cap * 2 : (limit < 64 ? limit : 64);
            page.docs = sd_realloc(page.docs, cap * sizeof(*page.docs));
            page.seqs = sd_realloc(page.seqs, cap * sizeof(*page.seqs));
        }
        page.seqs[page.n] = sqlite3_column_int64(st, 0);
        page.docs[page.n] = column_strdup(st, 1);
        page.n++;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        r = db_fail(c, rc, "list records");
        goto out;
    }
    *ret = page;
    page = (struct sd_record_page){0};
out:
    sd_record_page_release(&page);
    pool_put(s, c);
    return r;
}

static int sqlite_get_record(struct sd_store *s, enum sd_kind kind, int64_t tenant_id,
                             enum sd_env env, const char *rid, char **ret_doc)
{
    enum stmt_id id;
    if (kind_stmt(kind, ST_GET_EVENT, &id) < 0 || !env_ok(env) || !rid) {
        return -EINVAL;
    }
    struct conn *c = NULL;
    int r = pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    struct sd_buf doc;
    sd_buf_init(&doc);
    r = lookup_text(c, id, tenant_id, env, rid, &doc);
    pool_put(s, c);
    if (r == 1) {
        *ret_doc = sd_buf_steal(&doc);
        r = 0;
    } else if (r == 0) {
        r = -ENOENT;
    }
    sd_buf_release(&doc);
    return r;
}

static int sqlite_count_records(struct sd_store *s, enum sd_kind kind, int64_t tenant_id,
                                enum sd_env env, int64_t *ret)
{
    enum stmt_id id;
    if (kind_stmt(kind, ST_COUNT_EVENTS, &id) < 0 || !env_ok(env)) {
        return -EINVAL;
    }
    struct conn *c = NULL;
    int r = pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    sqlite3_stmt *st = stmt(c, id);
    if (!st) {
        r = -EIO;
    } else if (bind_scope(st, tenant_id, env, NULL) != SQLITE_OK) {
        r = db_fail(c, SQLITE_MISUSE, "bind");
    } else {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *ret = sqlite3_column_int64(st, 0);
        } else {
            r = db_fail(c, rc, "count records");
        }
        sqlite3_reset(st);
    }
    pool_put(s, c);
    return r;
}

const struct sd_store_ops sd_store_sqlite_ops = {
    .name = "sqlite",
    .open = sqlite_open,
    .close = sqlite_close,
    .tenant_create = sqlite_tenant_create,
    .tenant_get = sqlite_tenant_get,
    .tenant_list = sqlite_tenant_list,
    .tenant_set_limits = sqlite_tenant_set_limits,
    .key_insert = sqlite_key_insert,
    .key_list = sqlite_key_list,
    .key_revoke = sqlite_key_revoke,
    .settings_version = sqlite_settings_version,
    .auth_snapshot = sqlite_auth_snapshot,
    .write_begin = sqlite_write_begin,
    .write_commit = sqlite_write_commit,
    .write_rollback = sqlite_write_rollback,
    .savepoint = sqlite_savepoint,
    .savepoint_release = sqlite_savepoint_release,
    .savepoint_rollback = sqlite_savepoint_rollback,
    .apply_ingest = sqlite_apply_ingest,
    .replace_sale = sqlite_replace_sale,
    .idem_put = sqlite_idem_put,
    .idem_purge = sqlite_idem_purge,
    .idem_get = sqlite_idem_get,
    .list_records = sqlite_list_records,
    .get_record = sqlite_get_record,
    .count_records = sqlite_count_records,
};
