/* store_sqlite.c — the SQLite backend of store.h: two files in WAL mode, DIR/stagedoor.db (the
 * data) and DIR/control.db (the control plane: tenants, API keys, the settings version).
 *
 * This file holds the ops table sd_store_sqlite_ops, open and close, connections, migrations,
 * the checkpointer thread, the read pool and the helpers the other files share (declared in
 * sqlite_internal.h). The operations live by concern in sqlite_control.c, sqlite_write.c and
 * sqlite_read.c; the SQL text in sqlite_sql.c.
 *
 * Connections and who may touch them (no connection is ever used by two threads at once, so
 * all are opened SQLITE_OPEN_NOMUTEX and SQLite's own per-connection mutex is not paid for):
 *  - `writer`: only the single writer thread (write_*, savepoint*, apply_ingest, replace_sale,
 *    idem_put, idem_purge). Its transactions are BEGIN IMMEDIATE, so they hold SQLite's write
 *    lock from begin to commit; the seq counter is therefore re-read (max over the record
 *    tables, three O(log n) lookups because seq is the rowid) at every write_begin, which keeps
 *    seq unique and commit-ordered even if another process wrote records in between.
 *  - `cp`: control.db, guarded by cp_lock (sqlite_control.c). The data writer never locks this
 *    file, so revoking a key or creating a tenant never waits behind a long data transaction
 *    (a reject_file import holds the data file's write lock for as long as the file takes).
 *    Other processes (the CLI) write it too: writes are BEGIN IMMEDIATE and bump
 *    meta.settings_version in the same transaction, which is how running servers notice.
 *  - `ctl`: settings that live with the data (connectors, segments, targets, deliveries),
 *    guarded by ctl_lock; BEGIN IMMEDIATE on the data file, then a settings version bump.
 *    The writer and ctl take the data file's write lock in turns (see "write turns"): SQLite's
 *    busy handler alone lets a stream of ctl transactions starve the writer.
 *  - Every data connection (writer, ctl, readers) ATTACHes control.db read-only as `control`,
 *    so statements that join `tenants` resolve to it (SQLite looks a name up in main first,
 *    then in attached files), and BEGIN IMMEDIATE takes only a read snapshot of it.
 *  - read pool: up to POOL_MAX read-only connections on a free list (pool_lock + pool_cond).
 *    Every read op is one statement (or one BEGIN…COMMIT), so it sees one committed snapshot,
 *    and its statements are reset before the connection goes back, ending the read
 *    transaction (an open one would pin the WAL and stall checkpoints).
 *
 * Every statement is prepared once per connection (lazily, SQLITE_PREPARE_PERSISTENT) from the
 * sd_sqlite_sql[] table (sqlite_sql.c); values are always bound, never formatted into SQL.
 * Text that outlives the step (the caller's records) is bound SQLITE_STATIC to avoid a copy
 * per column.
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
#include <time.h>

#include "base/base.h"
#include "base/fault.h"
#include "base/log.h"
#include "sqlite_internal.h"
#include "store/quota.h"
#include "store/observe.h"
#include "store/alerts.h"
#include "store/runs.h"
#include "store/store.h"

extern const char *const sd_sqlite_schema[];
extern const unsigned sd_sqlite_schema_count;
extern const char *const sd_sqlite_control_schema[];
extern const unsigned sd_sqlite_control_schema_count;

#define POOL_MAX 8
#define BUSY_TIMEOUT_MS 5000
/* A PASSIVE checkpoint is due once the log holds this many frames (about 40 MiB). A round
 * copies each page once, however many frames rewrote it, and ends with one fsync of the
 * database: the pages a stream of small commits keeps rewriting (the tables' and indexes'
 * right-hand leaves, the sequence counter) cost once per round, so rarer, larger rounds cost
 * less per commit. It stays well below WAL_RESTART_FRAMES and WAL_SIZE_LIMIT. */
#define WAL_CHECKPOINT_FRAMES 10000
#define WAL_RESTART_FRAMES 50000
#define WAL_PAGE_BYTES 4096 /* SQLite's default page size, which the schema keeps */
#define WAL_SIZE_LIMIT (64LL << 20)

enum conn_role {
    ROLE_WRITER, /* the write path */
    ROLE_CTL,    /* control plane */
    ROLE_READ,   /* pool */
};

/* ---- connections and statements -------------------------------------------------------------- */

int sd_sqlite_fail(struct conn *c, int rc, const char *op)
{
    /* SQLite messages name tables and columns, never values: safe to log. */
    sd_log(SD_LOG_ERROR, "sqlite operation failed", "op=%s rc=%d error=\"%s\"", op, rc,
           c && c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
    if ((rc & 0xff) == SQLITE_FULL) {
        /* No space (disk, quota or max_page_count): SQLite rolled back the statement or the
         * whole transaction cleanly, unlike a failed fsync; the writer tells its callers to
         * retry later. */
        if (c) {
            c->full = true;
        }
        return -ENOSPC;
    }
    if ((rc & 0xff) == SQLITE_BUSY && op && strcmp(op, sd_sqlite_sql[ST_BEGIN_IMMEDIATE]) == 0) {
        /* A write's BEGIN found the write lock taken (another process) past busy_timeout:
         * nothing of this transaction was written, the same call can succeed later. Other
         * statements keep -EIO (their callers judge -EIO as a transient store failure). */
        return -ETIMEDOUT;
    }
    return -EIO;
}

static int is_constraint(int rc)
{
    return (rc & 0xff) == SQLITE_CONSTRAINT;
}

sqlite3_stmt *sd_sqlite_stmt(struct conn *c, enum stmt_id id)
{
    if (!c->st[id]) {
        int rc = sqlite3_prepare_v3(c->db, sd_sqlite_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                    &c->st[id], NULL);
        if (rc != SQLITE_OK) {
            sd_sqlite_fail(c, rc, "prepare");
            c->st[id] = NULL;
        }
    }
    return c->st[id];
}

sqlite3_stmt *sd_sqlite_stmt_extra(struct conn *c, unsigned slot, const char *sql)
{
    if (slot >= SD_SQLITE_EXTRA_SLOTS) {
        return NULL;
    }
    if (!c->extra[slot]) {
        int rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &c->extra[slot],
                                    NULL);
        if (rc != SQLITE_OK) {
            sd_sqlite_fail(c, rc, "prepare");
            c->extra[slot] = NULL;
        }
    }
    return c->extra[slot];
}

int sd_sqlite_step_done(struct conn *c, sqlite3_stmt *st, const char *op)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_DONE) {
        return 0;
    }
    if (is_constraint(rc)) {
        return -EEXIST;
    }
    return sd_sqlite_fail(c, rc, op);
}

int sd_sqlite_run(struct conn *c, enum stmt_id id)
{
    sqlite3_stmt *st = sd_sqlite_stmt(c, id);
    if (!st) {
        return -EIO;
    }
    return sd_sqlite_step_done(c, st, sd_sqlite_sql[id]);
}

static void conn_close(struct conn *c)
{
    if (!c) {
        return;
    }
    for (size_t i = 0; i < N_STMT; i++) {
        sqlite3_finalize(c->st[i]);
    }
    for (size_t i = 0; i < SD_SQLITE_EXTRA_SLOTS; i++) {
        sqlite3_finalize(c->extra[i]);
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

/* Before SQLite initializes: no allocation statistics. With them on (the default), every
 * sqlite3_malloc and free in the process takes one global mutex; a segment worker, running at
 * the lowest CPU priority, could be preempted holding it and stall the writer behind it. */
static void sqlite_global_config(void)
{
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

static int conn_open(const char *path, enum conn_role role, struct conn **ret)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, sqlite_global_config);
    struct conn *c = sd_calloc(1, sizeof(*c));
    /* URI names only for ATTACH (sqlite_open never hands a path beginning with "file:"). */
    int flags =
        SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI |
        (role == ROLE_READ ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
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
    if (sd_sqlite_register_fold(c->db) != SQLITE_OK) {
        sd_log(SD_LOG_ERROR, "cannot register sd_fold", "path=\"%s\"", path);
        r = -EIO;
        goto out;
    }
    if (role != ROLE_READ) {
        /* journal_mode answers with the mode in force; anything but wal means we could not
         * switch (e.g. a filesystem without shared memory) and durability assumptions break. */
        sqlite3_stmt *st = NULL;
        rc = sqlite3_prepare_v2(c->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
        if (rc == SQLITE_OK) {
            rc = sqlite3_step(st);
            /* Two processes opening a new file at once: the switch needs the file to itself and
             * SQLite answers BUSY at once there (its busy handler is not called for this lock,
             * to rule out deadlock), so wait here as the busy timeout would. */
            for (int waited = 0; rc == SQLITE_BUSY && waited < BUSY_TIMEOUT_MS; waited += 10) {
                sqlite3_reset(st);
                struct timespec ts = {0, 10 * 1000 * 1000};
                nanosleep(&ts, NULL);
                rc = sqlite3_step(st);
            }
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

int sd_sqlite_tx_finish(struct conn *c, int r)
{
    if (r >= 0) {
        int cr = sd_sqlite_run(c, ST_COMMIT);
        if (cr == 0) {
            return r;
        }
        r = cr == -ENOSPC ? cr : -EIO;
    }
    if (!sqlite3_get_autocommit(c->db)) {
        (void)sd_sqlite_run(c, ST_ROLLBACK);
    }
    return r;
}

/* ---- open, migrations, close ----------------------------------------------------------------- */

char *sd_sqlite_file_uri(const char *path, const char *query)
{
    struct sd_buf b;
    sd_buf_init(&b);
    sd_buf_append(&b, "file:", 5);
    while (path[0] == '/' && path[1] == '/') {
        path++; /* "file://x" would name a host */
    }
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                     (*p >= '0' && *p <= '9') || strchr("/._-~", *p);
        if (plain) {
            sd_buf_append(&b, p, 1);
        } else {
            char hex[4];
            snprintf(hex, sizeof(hex), "%%%02X", *p);
            sd_buf_append(&b, hex, 3);
        }
    }
    sd_buf_append(&b, "?", 1);
    sd_buf_append(&b, query, strlen(query));
    return sd_buf_steal(&b);
}

/* Attach control.db read-only as `control` to a data connection. */
static int attach_control(struct sd_store *s, struct conn *c)
{
    char *uri = sd_sqlite_file_uri(s->control_path, "mode=ro");
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(c->db, "ATTACH ?1 AS control", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_bind_text(st, 1, uri, -1, SQLITE_STATIC);
    }
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    free(uri);
    return rc == SQLITE_DONE ? 0 : sd_sqlite_fail(c, rc, "attach control");
}

static int user_version(struct conn *c, int64_t *ret)
{
    sqlite3_stmt *st = sd_sqlite_stmt(c, ST_USER_VERSION);
    if (!st) {
        return -EIO;
    }
    int rc = sqlite3_step(st);
    int64_t version = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW) {
        return sd_sqlite_fail(c, rc, "user_version");
    }
    *ret = version;
    return 0;
}

/* 1 if the main file of c has a table `name`, 0 if not, or -EIO. */
static int has_table(struct conn *c, const char *name)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(
        c->db, "SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = ?1", -1, &st,
        NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    }
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
        return rc == SQLITE_ROW;
    }
    return sd_sqlite_fail(c, rc, "schema lookup");
}

/* Bring one file (c's main database) up to `count` migrations. An up-to-date file is only read
 * (user_version needs no lock in WAL mode): opening the store, as every CLI command does, never
 * waits for a writer that holds the file's write lock. Only a file with something to migrate
 * takes the lock and reads the version again under it. For the data file (`s` not NULL), a
 * file that still holds the control tables has them copied into control.db first. */
static int migrate(struct sd_store *s, struct conn *c, const char *const *schema, unsigned count,
                   const char *what)
{
    int64_t version = 0;
    int r = user_version(c, &version);
    if (r < 0 || version == (int64_t)count) {
        return r;
    }
    r = sd_sqlite_run(c, ST_BEGIN_IMMEDIATE);
    if (r < 0) {
        return r;
    }
    r = user_version(c, &version);
    if (r < 0) {
        goto out;
    }
    if (version > (int64_t)count) {
        sd_log(SD_LOG_ERROR, "database schema is newer than this program",
               "file=%s version=%lld known=%u", what, (long long)version, count);
        r = -EIO;
        goto out;
    }
    if (s && version > 0 && version < (int64_t)count) {
        r = has_table(c, "tenants");
        if (r > 0) {
            char *uri = sd_sqlite_file_uri(s->path, "mode=ro");
            r = sd_sqlite_control_adopt(s, uri, version);
            free(uri);
        }
        if (r < 0) {
            goto out;
        }
    }
    for (unsigned i = (unsigned)version; i < count; i++) {
        r = conn_exec(c, schema[i]);
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
        sd_log(SD_LOG_INFO, "database migrated", "file=%s version=%u", what, i + 1);
    }
out:
    return sd_sqlite_tx_finish(c, r);
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
    /* control.db last: the attached read-only copies cannot checkpoint it, this one can. */
    conn_close(s->cp);
    pthread_mutex_destroy(&s->cp_lock);
    pthread_cond_destroy(&s->pool_cond);
    pthread_mutex_destroy(&s->pool_lock);
    pthread_mutex_destroy(&s->ctl_lock);
    pthread_mutex_destroy(&s->turn_lock);
    pthread_cond_destroy(&s->turn_cond);
    pthread_cond_destroy(&s->ckpt_cond);
    pthread_mutex_destroy(&s->ckpt_lock);
    free(s->path);
    free(s->control_path);
    free(s);
}

static int on_wal_commit(void *arg, sqlite3 *db, const char *name, int frames)
{
    struct sd_store *s = arg;
    (void)db;
    (void)name;
    pthread_mutex_lock(&s->ckpt_lock);
    s->wal_frames = frames;
    s->wal_log_frames = frames;
    if (frames >= s->wal_ckpt_frames) {
        pthread_cond_signal(&s->ckpt_cond);
    }
    pthread_mutex_unlock(&s->ckpt_lock);
    return SQLITE_OK;
}

/* One round: a PASSIVE checkpoint copies every frame no reader still needs, without any lock
 * a writer waits for. The writer resets the log by itself at its next BEGIN when every frame
 * was copied and no reader uses the log; under constant commits that moment may never come, so
 * past wal_restart_frames, once PASSIVE caught up, one RESTART is tried. The ckpt connection
 * has no busy handler, so RESTART takes the write lock only if it is free at once, copies the
 * few frames committed since PASSIVE, and gives up at once (SQLITE_BUSY, lock released) if a
 * reader still uses the log: it never holds the writer while it waits for a reader. Returns
 * the frames left in the log, -1 if unknown. */
static int checkpoint_round(struct sd_store *s, bool *pinned)
{
    int log = 0, done = 0;
    int rc = sqlite3_wal_checkpoint_v2(s->ckpt->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
    if (rc != SQLITE_OK) {
        /* BUSY: another connection (e.g. a CLI process) is checkpointing; sizes unknown. */
        if (rc != SQLITE_BUSY) {
            sd_log(SD_LOG_WARN, "wal checkpoint failed; will retry", "rc=%d error=\"%s\"", rc,
                   sqlite3_errmsg(s->ckpt->db));
        }
        return -1;
    }
    if (log >= s->wal_restart_frames && done >= log) {
        int rlog = 0, rdone = 0;
        rc = sqlite3_wal_checkpoint_v2(s->ckpt->db, NULL, SQLITE_CHECKPOINT_RESTART, &rlog, &rdone);
        if (rc == SQLITE_OK) {
            log = 0; /* the next writer starts the log from its beginning */
        }
    }
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
        sd_log(SD_LOG_WARN, "wal checkpoint failed; will retry", "rc=%d error=\"%s\"", rc,
               sqlite3_errmsg(s->ckpt->db));
    }
    if (log >= s->wal_restart_frames && done < log && !*pinned) {
        /* Frames a reader's snapshot still needs cannot be copied: a long read transaction
         * (here or in another process) makes the log grow until it ends. */
        sd_log(SD_LOG_WARN, "wal keeps growing: a read transaction holds an old snapshot",
               "frames=%d uncopied=%d", log, log - done);
        *pinned = true;
    } else if (*pinned && log < s->wal_restart_frames) {
        sd_log(SD_LOG_INFO, "wal checkpointed again after a long read", "frames=%d", log);
        *pinned = false;
    }
    return log;
}

static void *checkpointer_main(void *arg)
{
    struct sd_store *s = arg;
    bool pinned = false;
    pthread_mutex_lock(&s->ckpt_lock);
    while (!s->ckpt_stop) {
        if (s->wal_frames < s->wal_ckpt_frames) {
            pthread_cond_wait(&s->ckpt_cond, &s->ckpt_lock);
            continue;
        }
        s->wal_frames = 0; /* the next commit reports the new size */
        pthread_mutex_unlock(&s->ckpt_lock);
        int left = checkpoint_round(s, &pinned);
        pthread_mutex_lock(&s->ckpt_lock);
        s->wal_pinned = pinned;
        if (left == 0 && s->wal_frames == 0) {
            s->wal_log_frames = 0;
        }
    }
    pthread_mutex_unlock(&s->ckpt_lock);
    return NULL;
}

/* STAGEDOOR_WAL_RESTART_FRAMES (tests only, documented in README "Operating"): a smaller WAL
 * size at which the checkpointer tries to reset the log, so a test reaches it in seconds. */
static void wal_thresholds(struct sd_store *s)
{
    s->wal_ckpt_frames = WAL_CHECKPOINT_FRAMES;
    s->wal_restart_frames = WAL_RESTART_FRAMES;
    const char *v = getenv("STAGEDOOR_WAL_RESTART_FRAMES");
    int64_t n = 0;
    if (v && sd_parse_int64(v, false, &n) == 0 && n >= 2 && n < WAL_RESTART_FRAMES) {
        s->wal_restart_frames = (int)n;
        if (s->wal_ckpt_frames > s->wal_restart_frames / 2) {
            s->wal_ckpt_frames = s->wal_restart_frames / 2;
        }
    }
}

/* Bytes the log file keeps after a reset: its size at the reset threshold, at most 64 MiB. */
static int64_t wal_size_limit(const struct sd_store *s)
{
    int64_t bytes = (int64_t)s->wal_restart_frames * (WAL_PAGE_BYTES + 24);
    return bytes < WAL_SIZE_LIMIT ? bytes : WAL_SIZE_LIMIT;
}

int sd_sqlite_log_stats(struct sd_store *s, struct sd_store_log_stats *ret)
{
    struct sd_store_log_stats st = {0};
    pthread_mutex_lock(&s->ckpt_lock);
    st.frames = s->wal_log_frames;
    /* the checkpointer clears its flag at its next round; a log already reset is not pinned */
    st.pinned = s->wal_pinned && s->wal_log_frames >= s->wal_restart_frames;
    pthread_mutex_unlock(&s->ckpt_lock);
    char *wal = sd_asprintf("%s-wal", s->path);
    struct stat sb;
    if (stat(wal, &sb) == 0) {
        st.bytes = (int64_t)sb.st_size;
    }
    free(wal);
    *ret = st;
    return 0;
}

/* Test hook (STAGEDOOR_FAULT=max_pages, README "Operating"): before each write transaction the
 * writer reads DIR/fault-max-pages and caps the database at that many pages (SQLite keeps the
 * cap at least at the current size, so "1" means "no growth"), which fails writes with
 * SQLITE_FULL exactly like a full disk. Without the file the cap is lifted. */
void sd_sqlite_fault_max_pages(struct sd_store *s)
{
    if (!sd_fault_hit("max_pages")) {
        return;
    }
    const char *slash = strrchr(s->path, '/');
    int dir_len = slash ? (int)(slash - s->path) : 1;
    char *file = sd_asprintf("%.*s/fault-max-pages", dir_len, slash ? s->path : ".");
    int64_t pages = 4294967294LL; /* SQLite's largest page count: no cap */
    FILE *f = fopen(file, "re");
    if (f) {
        char line[32] = "";
        if (fgets(line, sizeof(line), f)) {
            line[strcspn(line, "\r\n")] = '\0';
            int64_t n = 0;
            if (sd_parse_int64(line, false, &n) == 0 && n >= 1 && n < pages) {
                pages = n;
            }
        }
        fclose(f);
    }
    free(file);
    char pragma[64];
    snprintf(pragma, sizeof(pragma), "PRAGMA max_page_count = %lld", (long long)pages);
    (void)conn_exec(s->writer, pragma);
}

/* A row of SD_STORE_PROBE_BYTES in meta, deleted again in the same transaction: its pages come
 * from the free list or grow the file, so SQLITE_FULL here means a real write would fail too.
 * Prepared per call: it only runs while the store is out of space. */
int sd_sqlite_space_probe(struct sd_store *s)
{
    static const char *const sql[] = {
        "INSERT OR REPLACE INTO meta (k, v) VALUES ('space_probe', zeroblob(?1))",
        "DELETE FROM meta WHERE k = 'space_probe'",
    };
    struct conn *c = s->writer;
    int r = 0;
    for (size_t i = 0; i < 2 && r == 0; i++) {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(c->db, sql[i], -1, &st, NULL);
        if (rc == SQLITE_OK && i == 0) {
            rc = sqlite3_bind_int(st, 1, SD_STORE_PROBE_BYTES);
        }
        if (rc == SQLITE_OK) {
            rc = sqlite3_step(st);
        }
        if (rc != SQLITE_DONE) {
            r = sd_sqlite_fail(c, rc, "space probe");
        }
        sqlite3_finalize(st);
    }
    return r;
}

static int start_checkpointer(struct sd_store *s)
{
    wal_thresholds(s);
    int r = conn_open(s->path, ROLE_CTL, &s->ckpt);
    if (r < 0) {
        return r;
    }
    sqlite3_busy_timeout(s->ckpt->db, 0); /* never wait for a lock: see checkpoint_round */
    /* When the log is reset, the writer's next commit truncates its file to this size: a long
     * reader's growth does not stay on disk. Our own number, not input. */
    char pragma[96];
    snprintf(pragma, sizeof(pragma),
             "PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = %lld",
             (long long)wal_size_limit(s));
    r = conn_exec(s->writer, pragma);
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
        sd_log(SD_LOG_ERROR, "cannot create data directory", "path=\"%s\" " SD_LOG_ERR_FMT,
               location, SD_LOG_ERR_ARGS(-e));
        return -e;
    }
    struct sd_store *s = sd_calloc(1, sizeof(*s));
    pthread_mutex_init(&s->cp_lock, NULL);
    pthread_mutex_init(&s->ctl_lock, NULL);
    pthread_mutex_init(&s->turn_lock, NULL);
    pthread_condattr_t turn_attr;
    pthread_condattr_init(&turn_attr);
    pthread_condattr_setclock(&turn_attr, CLOCK_MONOTONIC);
    pthread_cond_init(&s->turn_cond, &turn_attr);
    pthread_condattr_destroy(&turn_attr);
    pthread_mutex_init(&s->pool_lock, NULL);
    pthread_cond_init(&s->pool_cond, NULL);
    pthread_mutex_init(&s->ckpt_lock, NULL);
    pthread_cond_init(&s->ckpt_cond, NULL);
    /* Connections take URI names (for ATTACH); a plain path must not look like one. */
    const char *dot = strncmp(location, "file:", 5) == 0 ? "./" : "";
    s->path = sd_asprintf("%s%s/stagedoor.db", dot, location);
    s->control_path = sd_asprintf("%s%s/control.db", dot, location);

    /* control.db first: the data file's migration may copy rows into it, and the data
     * connections attach it. */
    int r = conn_open(s->control_path, ROLE_CTL, &s->cp);
    if (r < 0) {
        goto out;
    }
    r = migrate(NULL, s->cp, sd_sqlite_control_schema, sd_sqlite_control_schema_count,
                "control.db");
    if (r < 0) {
        goto out;
    }
    r = conn_open(s->path, ROLE_WRITER, &s->writer);
    if (r < 0) {
        goto out;
    }
    r = attach_control(s, s->writer);
    if (r < 0) {
        goto out;
    }
    r = migrate(s, s->writer, sd_sqlite_schema, sd_sqlite_schema_count, "stagedoor.db");
    if (r < 0) {
        goto out;
    }
    r = conn_open(s->path, ROLE_CTL, &s->ctl);
    if (r < 0) {
        goto out;
    }
    r = attach_control(s, s->ctl);
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

/* ---- write turns ----------------------------------------------------------------------------- */

/* The writer and ctl are two connections of this process on one file; SQLite arbitrates them by
 * sleeping and polling (the busy handler), which is not fair: the outbox workers' claims and
 * finishes, short transactions on ctl one after another (each commit syncing the log), can
 * hold the lock at every poll until busy_timeout runs out, and the writer's group fails with
 * "database is locked" — an accepted-looking batch answered 500 because of our own background
 * work. So the two take the lock in turns here, before their BEGIN IMMEDIATE: when both wait,
 * the one that did not have the last turn goes first. The writer therefore waits for at most
 * one ctl transaction and ctl for at most one group. SQLite's busy handler is then left only to
 * other processes (the CLI). */

void sd_sqlite_turn_writer_take(struct sd_store *s)
{
    pthread_mutex_lock(&s->turn_lock);
    s->writer_waiting = true;
    while (s->turn_held || (s->ctl_waiting > 0 && s->last_was_writer)) {
        pthread_cond_wait(&s->turn_cond, &s->turn_lock);
    }
    s->writer_waiting = false;
    s->turn_held = true;
    s->writer_holds = true;
    s->last_was_writer = true;
    pthread_mutex_unlock(&s->turn_lock);
}

void sd_sqlite_turn_writer_give(struct sd_store *s)
{
    pthread_mutex_lock(&s->turn_lock);
    if (s->writer_holds) {
        s->writer_holds = false;
        s->turn_held = false;
        pthread_cond_broadcast(&s->turn_cond);
    }
    pthread_mutex_unlock(&s->turn_lock);
}

int sd_sqlite_turn_ctl_take(struct sd_store *s)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += BUSY_TIMEOUT_MS / 1000;
    until.tv_nsec += (long)(BUSY_TIMEOUT_MS % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    int r = 0;
    pthread_mutex_lock(&s->turn_lock);
    s->ctl_waiting++;
    while (s->turn_held || (s->writer_waiting && !s->last_was_writer)) {
        if (pthread_cond_timedwait(&s->turn_cond, &s->turn_lock, &until) == ETIMEDOUT) {
            r = -ETIMEDOUT; /* nothing written: the caller may answer "retry later" */
            break;
        }
    }
    s->ctl_waiting--;
    if (r == 0) {
        s->turn_held = true;
        s->last_was_writer = false;
    } else {
        pthread_cond_broadcast(&s->turn_cond); /* the writer may have waited for this one */
    }
    pthread_mutex_unlock(&s->turn_lock);
    if (r < 0) {
        sd_log(SD_LOG_ERROR, "data file write lock still taken; giving up", "waited_ms=%d",
               BUSY_TIMEOUT_MS);
    }
    return r;
}

/* A ctl transaction waits for its turn: the writer's long jobs (a file being published) end
 * early for it as they do for queued writer jobs, so ctl waits for at most one bounded job. */
bool sd_sqlite_write_waiting(struct sd_store *s)
{
    pthread_mutex_lock(&s->turn_lock);
    bool waiting = s->ctl_waiting > 0;
    pthread_mutex_unlock(&s->turn_lock);
    return waiting;
}

void sd_sqlite_turn_ctl_give(struct sd_store *s)
{
    pthread_mutex_lock(&s->turn_lock);
    s->turn_held = false;
    pthread_cond_broadcast(&s->turn_cond);
    pthread_mutex_unlock(&s->turn_lock);
}

/* ---- read pool ------------------------------------------------------------------------------- */

int sd_sqlite_pool_get(struct sd_store *s, struct conn **ret)
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
    if (r == 0) {
        r = attach_control(s, c);
        if (r < 0) {
            conn_close(c);
        }
    }
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

void sd_sqlite_pool_put(struct sd_store *s, struct conn *c)
{
    pthread_mutex_lock(&s->pool_lock);
    c->next_free = s->pool_free;
    s->pool_free = c;
    pthread_cond_signal(&s->pool_cond);
    pthread_mutex_unlock(&s->pool_lock);
}

/* ---- small helpers --------------------------------------------------------------------------- */

char *sd_sqlite_column_strdup(sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    if (!t) {
        return NULL;
    }
    return sd_strndup((const char *)t, (size_t)sqlite3_column_bytes(st, col));
}

int sd_sqlite_bind_scope(sqlite3_stmt *st, int64_t tenant_id, enum sd_env env, const char *key)
{
    int rc = sqlite3_bind_int64(st, 1, tenant_id);
    rc |= sqlite3_bind_int(st, 2, (int)env);
    if (key) {
        rc |= sqlite3_bind_text(st, 3, key, -1, SQLITE_STATIC);
    }
    return rc;
}

int sd_sqlite_lookup_text(struct conn *c, enum stmt_id id, int64_t tenant_id, enum sd_env env,
                          const char *key, struct sd_buf *out)
{
    sqlite3_stmt *st = sd_sqlite_stmt(c, id);
    if (!st) {
        return -EIO;
    }
    if (sd_sqlite_bind_scope(st, tenant_id, env, key) != SQLITE_OK) {
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
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
        r = sd_sqlite_fail(c, rc, sd_sqlite_sql[id]);
    }
    sqlite3_reset(st);
    return r;
}

/* ---- the ops table --------------------------------------------------------------------------- */

const struct sd_store_ops sd_store_sqlite_ops = {
    .name = "sqlite",
    .open = sqlite_open,
    .close = sqlite_close,
    .tenant_create = sd_sqlite_tenant_create,
    .tenant_get = sd_sqlite_tenant_get,
    .tenant_list = sd_sqlite_tenant_list,
    .tenant_set_limits = sd_sqlite_tenant_set_limits,
    .key_insert = sd_sqlite_key_insert,
    .key_list = sd_sqlite_key_list,
    .key_revoke = sd_sqlite_key_revoke,
    .settings_version = sd_sqlite_settings_version,
    .auth_snapshot = sd_sqlite_auth_snapshot,
    .write_begin = sd_sqlite_write_begin,
    .write_commit = sd_sqlite_write_commit,
    .write_rollback = sd_sqlite_write_rollback,
    .savepoint = sd_sqlite_savepoint,
    .savepoint_release = sd_sqlite_savepoint_release,
    .savepoint_rollback = sd_sqlite_savepoint_rollback,
    .apply_ingest = sd_sqlite_apply_ingest,
    .replace_sale = sd_sqlite_replace_sale,
    .idem_put = sd_sqlite_idem_put,
    .idem_purge = sd_sqlite_idem_purge,
    .idem_get = sd_sqlite_idem_get,
    .list_records = sd_sqlite_list_records,
    .get_record = sd_sqlite_get_record,
    .count_records = sd_sqlite_count_records,
    .get_customer = sd_sqlite_get_customer,
    .get_customer_in_write = sd_sqlite_get_customer_in_write,
    .delete_record = sd_sqlite_delete_record,
    .connector_put = sd_sqlite_connector_put,
    .connector_get = sd_sqlite_connector_get,
    .connector_list = sd_sqlite_connector_list,
    .connector_delete = sd_sqlite_connector_delete,
    .connector_request_run = sd_sqlite_connector_request_run,
    .connector_state_put = sd_sqlite_connector_state_put,
    .connector_state_get = sd_sqlite_connector_state_get,
    .connector_state_put_fenced = sd_sqlite_connector_state_put_fenced,
    .run_lease_take = sd_sqlite_run_lease_take,
    .run_lease_renew = sd_sqlite_run_lease_renew,
    .run_lease_release = sd_sqlite_run_lease_release,
    .check_sale_refs = sd_sqlite_check_sale_refs,
    .log_stats = sd_sqlite_log_stats,
    .write_waiting = sd_sqlite_write_waiting,
    .space_probe = sd_sqlite_space_probe,
    .profiles = &sd_sqlite_profile_ops,
    .segments = &sd_sqlite_segment_ops,
    .outbox = &sd_sqlite_outbox_ops,
    .quota = &sd_sqlite_quota_ops,
    .inbound = &sd_sqlite_inbound_ops,
    .observe = &sd_sqlite_observe_ops,
    .runs = &sd_sqlite_runs_ops,
    .alerts = &sd_sqlite_alert_ops,
};
