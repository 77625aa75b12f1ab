/* migrate.h — moving a venue's store from its SQLite files (DATA_DIR/stagedoor.db and
 * DATA_DIR/control.db) into a PostgreSQL database, and checking the copy.
 *
 * sd_store_migrate() copies every table of the PostgreSQL schema from one read snapshot of each
 * SQLite file into an empty PostgreSQL database in one transaction, sets what PostgreSQL keeps
 * apart (meta 'seq' and 'settings_version', the id sequences), commits, and then verifies every
 * table by row count and checksum (sd_store_migrate_verify's comparison, on the same SQLite
 * snapshot). The SQLite files are only read.
 *
 * The checksum of a table: SHA-256 over the SHA-256 of each row in primary-key order (text
 * compared bytewise), where a row is its values in column order, each written as "-" for NULL
 * or "<byte length>:<text>" — integers in decimal, text as its UTF-8 bytes, bytea as lowercase
 * hex. SQLite's side is computed here from the values read; PostgreSQL's by the server (sha256(),
 * convert_to(), encode()) from the values it stored, so the two are independent computations.
 *
 * Errors (negative errno; ret->error says which table or column and why, never a value):
 *   -ENOENT     DATA_DIR holds no stagedoor.db / control.db
 *   -EPROTO     the SQLite files' schema version is not this binary's (older: upgrade DATA_DIR
 *               first by opening it with this stagedoor; newer: use a newer stagedoor), or the
 *               two schemas differ (a table or column on one side only, a SQLite meta key
 *               PostgreSQL's meta does not take over, a column type migrate does not know)
 *   -ENOTEMPTY  the PostgreSQL database already holds data (ret->error names the first table)
 *   -EBADMSG    verification found a difference (ret->error names the table); the data copied
 *               stays committed
 *   -EINVAL     a value PostgreSQL cannot hold as its column's type (a NUL byte in text, a
 *               non-integer in an integer column)
 *   -ECONNREFUSED, -ECONNRESET, -EIO  PostgreSQL unreachable or lost, a statement failed
 *               (ret->error holds the server's primary message, which names relations, not
 *               values)
 * Nothing is written to PostgreSQL unless every table was copied: the copy commits at once.
 *
 * Threads: any one thread; nothing is shared. */
#ifndef SD_STORE_MIGRATE_H
#define SD_STORE_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sd_migrate_table {
    char name[64];
    int64_t rows;    /* in the SQLite snapshot */
    int64_t pg_rows; /* in PostgreSQL after the copy (-1: not verified) */
    char sum[65];    /* the SQLite side's checksum, hex */
    bool ok;         /* PostgreSQL's count and checksum are equal */
};

struct sd_migrate_result {
    struct sd_migrate_table *tables; /* in copy order (tables referenced by others first) */
    size_t n;
    int64_t rows;             /* all tables */
    int64_t seq;              /* meta 'seq' set in PostgreSQL */
    int64_t settings_version; /* meta 'settings_version' set in PostgreSQL */
    int64_t copy_usec;        /* from BEGIN to COMMIT */
    int64_t verify_usec;
    char error[320];
};

/* Release what a call filled in; the struct may be used again. */
void sd_migrate_result_release(struct sd_migrate_result *r);

/* Copy data_dir's SQLite store into the empty PostgreSQL database at url (a conninfo or
 * postgresql:// URL), then verify. *ret is always filled (zero it first). */
int sd_store_migrate(const char *data_dir, const char *url, struct sd_migrate_result *ret);

/* Only the verification: compare every table of data_dir's SQLite store with the PostgreSQL
 * database at url by row count and checksum, and meta 'seq'. 0 if all are equal, -EBADMSG
 * naming the first table that differs, or the errors above. */
int sd_store_migrate_verify(const char *data_dir, const char *url, struct sd_migrate_result *ret);

#endif
