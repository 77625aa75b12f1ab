/* pg_backup.c — the PostgreSQL backend's answer to `stagedoor backup` (store/backup.h): a
 * database server is backed up with its own tools, which copy a consistent snapshot of a live
 * database already; the hub adds nothing to them, so the op says which to use and writes
 * nothing. */
#include <errno.h>
#include <stdio.h>

#include "pg_internal.h"
#include "store/backup.h"

int sd_pg_backup(struct sd_store *s, const char *dest, struct sd_store_backup_report *rep)
{
    (void)s;
    (void)dest;
    snprintf(rep->message, sizeof(rep->message),
             "the PostgreSQL store is backed up with PostgreSQL's tools: use pg_dump (e.g. "
             "pg_dump --format=custom --file=stagedoor.dump \"$STAGEDOOR_STORE\", restored with "
             "pg_restore); stagedoor backup copies the SQLite store only");
    return -ENOTSUP;
}
