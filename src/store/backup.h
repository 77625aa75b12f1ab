/* backup.h — an online backup of the store (`stagedoor backup DEST`), reached through the
 * store's ops table (sd_store_ops.backup) like every other store operation.
 *
 * Contract of a backend's backup op:
 *  - DEST is a directory the op creates (mode 0700); an existing one must be empty, else
 *    -ENOTEMPTY (nothing written). What it writes there is a complete store of the same
 *    backend: pointing the program at DEST (SQLite: --data DEST) is the restore.
 *  - It runs while the store serves: writers are never blocked for the length of the copy, and
 *    the copy is one consistent snapshot (for SQLite: of each file, the data file's taken
 *    first, so every tenant the data names is in the control file's).
 *  - Before returning 0 it verifies the copy by opening it: its integrity check passes, its
 *    schema versions equal the source's, and the row counts of the main tables equal the
 *    source snapshot's; the report carries those figures.
 *  - Failure: negative errno with a sentence for the user in report->message (no personal
 *    data): -ENOTEMPTY, -ENOTDIR, -EIO, -ENOSPC, -EBADMSG (the copy did not verify; it stays in
 *    DEST for inspection), -ENOTSUP (a backend whose backups are made with its own tools: the
 *    message says which).
 * Any thread; the op opens its own connections and keeps none past its return. */
#ifndef SD_STORE_BACKUP_H
#define SD_STORE_BACKUP_H

#include <stddef.h>
#include <stdint.h>

struct sd_store_handle;

#define SD_STORE_BACKUP_TABLES 16

struct sd_store_backup_table {
    const char *file; /* "stagedoor.db", "control.db" (static) */
    const char *name; /* "sales" (static) */
    int64_t rows;     /* in the copy, equal to the source snapshot's */
};

struct sd_store_backup_report {
    int64_t schema_version;         /* data file: PRAGMA user_version, source == copy */
    int64_t control_schema_version; /* control file */
    int64_t pages;                  /* pages copied, both files */
    int64_t bytes;                  /* bytes written, both files */
    int64_t usec;                   /* copy and verification */
    struct sd_store_backup_table tables[SD_STORE_BACKUP_TABLES];
    size_t n_tables;
    char message[320]; /* on failure: why, in words for the operator */
};

/* ops.backup; -ENOTSUP (with a message) for a backend without the op. */
int sd_store_backup(struct sd_store_handle *h, const char *dest,
                    struct sd_store_backup_report *ret);

#endif
