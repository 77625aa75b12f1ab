/* sqlite_backup.c — the SQLite backend's online backup (store/backup.h): both files,
 * DIR/stagedoor.db and DIR/control.db, copied with SQLite's backup API into DEST under the same
 * names, so that `--data DEST` is the restore.
 *
 * Consistent without stopping the hub: one read-only connection opens a read transaction on the
 * data file and then on the control file (attached) and holds it for the whole copy. In WAL
 * mode a reader never blocks the writer, so a hub serving the same directory keeps committing;
 * the copy reads that one snapshot STEP_PAGES at a time with a pause between steps (the disk is
 * shared with the hub), and never starts over: the backup API restarts a copy only when its
 * source changes under it, which the held snapshot rules out. The price is the one every long
 * reader pays: while the copy runs, checkpoints cannot go past its snapshot and the WAL grows by
 * what the hub writes meanwhile.
 * The data file's snapshot is taken first: a tenant is created in control.db before any row
 * names it, so every tenant the copied data names is in the copied control file.
 *
 * The copy is then verified by opening it afresh: PRAGMA quick_check on both files, their
 * user_version equal to the source's, the row counts of the main tables equal to the counts of
 * the same snapshot. A copy that fails verification stays in DEST for inspection (-EBADMSG). */
#include <dirent.h>
#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "base/log.h"
#include "sqlite_internal.h"
#include "store/backup.h"

#define STEP_PAGES 256 /* 1 MiB of 4 KiB pages per step */
#define STEP_PAUSE_USEC 1000
#define BUSY_WAIT_USEC (5 * 1000 * 1000) /* a step answered BUSY: give up after this long */

/* The tables whose row counts the report prints; identifiers of our own, never input. The data
 * file's connection attaches the control file as `control` (source and copy alike). */
static const struct {
    const char *file;
    const char *name;
    const char *sql;
} counted[] = {
    {"control.db", "tenants", "SELECT count(*) FROM control.tenants"},
    {"control.db", "api_keys", "SELECT count(*) FROM control.api_keys"},
    {"stagedoor.db", "events", "SELECT count(*) FROM main.events"},
    {"stagedoor.db", "customers", "SELECT count(*) FROM main.customers"},
    {"stagedoor.db", "sales", "SELECT count(*) FROM main.sales"},
    {"stagedoor.db", "tombstones", "SELECT count(*) FROM main.tombstones"},
    {"stagedoor.db", "profiles", "SELECT count(*) FROM main.profiles"},
    {"stagedoor.db", "connectors", "SELECT count(*) FROM main.connectors"},
    {"stagedoor.db", "segments", "SELECT count(*) FROM main.segments"},
    {"stagedoor.db", "outbox_items", "SELECT count(*) FROM main.outbox_items"},
    {"stagedoor.db", "inbound_raw", "SELECT count(*) FROM main.inbound_raw"},
};
_Static_assert(sizeof(counted) / sizeof(counted[0]) <= SD_STORE_BACKUP_TABLES,
               "the report holds every counted table");

__attribute__((format(printf, 3, 4))) static int fail(struct sd_store_backup_report *rep, int r,
                                                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rep->message, sizeof(rep->message), fmt, ap);
    va_end(ap);
    return r; /* the caller prints the message: no log line of its own */
}

static int64_t now_usec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void pause_usec(long usec)
{
    struct timespec ts = {usec / 1000000, (usec % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* SQLite's answer as an errno: a full disk is -ENOSPC, anything else -EIO. */
static int sqlite_errno(int rc)
{
    return (rc & 0xff) == SQLITE_FULL ? -ENOSPC : -EIO;
}

/* DEST: created (*ret_created), or an existing empty directory. */
static int prepare_dest(const char *dest, bool *ret_created, struct sd_store_backup_report *rep)
{
    if (mkdir(dest, 0700) == 0) {
        *ret_created = true;
        return 0;
    }
    int e = errno;
    if (e != EEXIST) {
        return fail(rep, -e, "cannot create backup directory '%s': %s", dest, strerror(e));
    }
    struct stat sb;
    if (stat(dest, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
        return fail(rep, -ENOTDIR, "'%s' exists and is not a directory", dest);
    }
    DIR *d = opendir(dest);
    if (!d) {
        e = errno;
        return fail(rep, -e, "cannot read backup directory '%s': %s", dest, strerror(e));
    }
    int r = 0;
    for (struct dirent *de; (de = readdir(d));) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            r = fail(rep, -ENOTEMPTY,
                     "backup directory '%s' is not empty: a backup never overwrites, name a new "
                     "or empty directory",
                     dest);
            break;
        }
    }
    closedir(d);
    return r;
}

static int open_db(const char *path, int flags, sqlite3 **ret, struct sd_store_backup_report *rep)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI, NULL);
    if (rc != SQLITE_OK) {
        int r = fail(rep, sqlite_errno(rc), "cannot open '%s': %s", path,
                     db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return r;
    }
    sqlite3_busy_timeout(db, 5000);
    if (sd_sqlite_register_fold(db) != SQLITE_OK) { /* indexes on sd_fold() need it */
        sqlite3_close(db);
        return fail(rep, -EIO, "cannot open '%s': sd_fold not registered", path);
    }
    *ret = db;
    return 0;
}

/* Attach the control file at path as `control` (query: URI parameters, e.g. "mode=ro"). */
static int attach_control(sqlite3 *db, const char *path, const char *query,
                          struct sd_store_backup_report *rep)
{
    char *uri = sd_sqlite_file_uri(path, query);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "ATTACH ?1 AS control", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_bind_text(st, 1, uri, -1, SQLITE_STATIC);
    }
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    free(uri);
    if (rc != SQLITE_DONE) {
        return fail(rep, sqlite_errno(rc), "cannot attach '%s': %s", path, sqlite3_errmsg(db));
    }
    return 0;
}

/* The first column of the first row of sql, as an integer (want_text: compared to "ok"). */
static int query_int(sqlite3 *db, const char *sql, int64_t *ret, struct sd_store_backup_report *rep)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
    }
    int r = 0;
    if (rc == SQLITE_ROW) {
        *ret = sqlite3_column_int64(st, 0);
    } else {
        r = fail(rep, sqlite_errno(rc), "%s: %s", sql, sqlite3_errmsg(db));
    }
    sqlite3_finalize(st);
    return r;
}

/* PRAGMA schema.quick_check: 0 if it answers "ok", else -EBADMSG with its first finding. */
static int quick_check(sqlite3 *db, const char *schema, const char *file,
                       struct sd_store_backup_report *rep)
{
    char sql[48];
    snprintf(sql, sizeof(sql), "PRAGMA %s.quick_check", schema); /* our own schema names */
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
    }
    int r = 0;
    if (rc != SQLITE_ROW) {
        r = fail(rep, sqlite_errno(rc), "quick_check of the copied %s: %s", file,
                 sqlite3_errmsg(db));
    } else {
        const char *answer = (const char *)sqlite3_column_text(st, 0);
        if (!answer || strcmp(answer, "ok") != 0) {
            r = fail(rep, -EBADMSG, "the copied %s fails quick_check: %s", file,
                     answer ? answer : "(no answer)");
        }
    }
    sqlite3_finalize(st);
    return r;
}

/* Schema versions and counts of one connection (data as main, control attached). */
static int read_figures(sqlite3 *db, int64_t *version, int64_t *control_version, int64_t *rows,
                        struct sd_store_backup_report *rep)
{
    int r = query_int(db, "PRAGMA main.user_version", version, rep);
    if (r == 0) {
        r = query_int(db, "PRAGMA control.user_version", control_version, rep);
    }
    for (size_t i = 0; r == 0 && i < sizeof(counted) / sizeof(counted[0]); i++) {
        r = query_int(db, counted[i].sql, &rows[i], rep);
    }
    return r;
}

/* Copy schema `schema` of src (inside its read transaction) into a new file at dest_path. */
static int copy_file(sqlite3 *src, const char *schema, const char *dest_path,
                     struct sd_store_backup_report *rep)
{
    sqlite3 *dst = NULL;
    int r = open_db(dest_path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &dst, rep);
    if (r < 0) {
        return r;
    }
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, schema);
    if (!b) {
        r = fail(rep, sqlite_errno(sqlite3_errcode(dst)), "cannot start copying to '%s': %s",
                 dest_path, sqlite3_errmsg(dst));
        goto out;
    }
    int64_t busy_since = 0;
    int rc;
    for (;;) {
        rc = sqlite3_backup_step(b, STEP_PAGES);
        if (rc == SQLITE_DONE) {
            break;
        }
        if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
            int64_t now = now_usec();
            busy_since = busy_since ? busy_since : now;
            if (now - busy_since > BUSY_WAIT_USEC) {
                break;
            }
        } else if (rc == SQLITE_OK) {
            busy_since = 0;
        } else {
            break;
        }
        pause_usec(STEP_PAUSE_USEC);
    }
    rep->pages += sqlite3_backup_pagecount(b);
    int frc = sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE) {
        r = fail(rep, sqlite_errno(rc), "copying to '%s' failed: %s", dest_path,
                 sqlite3_errstr(rc));
    } else if (frc != SQLITE_OK) {
        r = fail(rep, sqlite_errno(frc), "copying to '%s' failed: %s", dest_path,
                 sqlite3_errmsg(dst));
    }
out:
    if (sqlite3_close(dst) != SQLITE_OK && r == 0) {
        r = fail(rep, -EIO, "closing '%s' failed", dest_path);
    }
    if (r == 0) {
        struct stat sb;
        if (stat(dest_path, &sb) == 0) {
            rep->bytes += (int64_t)sb.st_size;
        }
    }
    return r;
}

/* A copy that failed before it was complete goes again, so DEST can be used once the cause is
 * fixed (a copy that failed verification stays: it is complete, and the finding is about it). */
static void remove_partial(const char *dest, bool created, const char *const files[2])
{
    static const char *const suffixes[] = {"", "-journal", "-wal", "-shm"};
    for (size_t i = 0; i < 2; i++) {
        for (size_t k = 0; k < sizeof(suffixes) / sizeof(suffixes[0]); k++) {
            char *path = sd_asprintf("%s%s", files[i], suffixes[k]);
            (void)unlink(path);
            free(path);
        }
    }
    if (created) {
        (void)rmdir(dest);
    }
}

/* The directory entries of the new files reach the disk too. */
static int sync_dir(const char *dest, struct sd_store_backup_report *rep)
{
    int fd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0) {
        int e = errno;
        if (fd >= 0) {
            close(fd);
        }
        return fail(rep, -e, "cannot sync backup directory '%s': %s", dest, strerror(e));
    }
    close(fd);
    return 0;
}

int sd_sqlite_backup(struct sd_store *s, const char *dest, struct sd_store_backup_report *rep)
{
    const size_t n_counted = sizeof(counted) / sizeof(counted[0]);
    int64_t start = now_usec();
    int64_t src_rows[SD_STORE_BACKUP_TABLES] = {0}, copy_rows[SD_STORE_BACKUP_TABLES] = {0};
    int64_t src_version = 0, src_control = 0, copy_version = 0, copy_control = 0;
    sqlite3 *src = NULL, *copy = NULL;
    char *dest_data = NULL, *dest_control = NULL;
    bool created = false;

    int r = prepare_dest(dest, &created, rep);
    if (r < 0) {
        return r;
    }
    /* Our own names for the copies; a DEST starting "file:" must not read as a URI. */
    const char *dot = strncmp(dest, "file:", 5) == 0 ? "./" : "";
    dest_data = sd_asprintf("%s%s/stagedoor.db", dot, dest);
    dest_control = sd_asprintf("%s%s/control.db", dot, dest);

    r = open_db(s->path, SQLITE_OPEN_READONLY, &src, rep);
    if (r == 0) {
        r = attach_control(src, s->control_path, "mode=ro", rep);
    }
    if (r < 0) {
        goto incomplete;
    }
    /* One read transaction, held until both files are copied: the data file's snapshot first
     * (its first read starts it), then the control file's. */
    if (sqlite3_exec(src, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
        r = fail(rep, -EIO, "cannot begin reading the store: %s", sqlite3_errmsg(src));
        goto incomplete;
    }
    r = read_figures(src, &src_version, &src_control, src_rows, rep);
    if (r == 0) {
        r = copy_file(src, "main", dest_data, rep);
    }
    if (r == 0) {
        r = copy_file(src, "control", dest_control, rep);
    }
    (void)sqlite3_exec(src, "COMMIT", NULL, NULL, NULL); /* ends the read: the WAL may move on */
    if (r == 0) {
        r = sync_dir(dest, rep);
    }
    if (r < 0) {
        goto incomplete;
    }

    /* Verification: the copy as a restore would open it. */
    r = open_db(dest_data, SQLITE_OPEN_READWRITE, &copy, rep);
    if (r == 0) {
        r = attach_control(copy, dest_control, "mode=rw", rep);
    }
    if (r == 0) {
        r = quick_check(copy, "main", "stagedoor.db", rep);
    }
    if (r == 0) {
        r = quick_check(copy, "control", "control.db", rep);
    }
    if (r == 0) {
        r = read_figures(copy, &copy_version, &copy_control, copy_rows, rep);
    }
    if (r < 0) {
        goto out;
    }
    if (copy_version != src_version || copy_control != src_control) {
        r = fail(rep, -EBADMSG,
                 "the copy's schema versions (%lld, control %lld) differ from the store's "
                 "(%lld, control %lld)",
                 (long long)copy_version, (long long)copy_control, (long long)src_version,
                 (long long)src_control);
        goto out;
    }
    for (size_t i = 0; i < n_counted; i++) {
        if (copy_rows[i] != src_rows[i]) {
            r = fail(rep, -EBADMSG, "the copy holds %lld rows of %s, the store's snapshot %lld",
                     (long long)copy_rows[i], counted[i].name, (long long)src_rows[i]);
            goto out;
        }
        rep->tables[i].file = counted[i].file;
        rep->tables[i].name = counted[i].name;
        rep->tables[i].rows = copy_rows[i];
    }
    rep->n_tables = n_counted;
    rep->schema_version = copy_version;
    rep->control_schema_version = copy_control;
    rep->usec = now_usec() - start;
    sd_log(SD_LOG_INFO, "backup written and verified", "dest=\"%s\" pages=%lld usec=%lld", dest,
           (long long)rep->pages, (long long)rep->usec);
    goto out;
incomplete:
    remove_partial(dest, created, (const char *const[]){dest_data, dest_control});
out:
    sqlite3_close(copy); /* the last connection: checkpoints the copy and removes its WAL */
    sqlite3_close(src);
    free(dest_data);
    free(dest_control);
    return r;
}
