/* cmd_backup.c — `stagedoor backup DEST [--data DIR]`: an online, verified copy of the store
 * into a new directory (store/backup.h does the work). A hub may keep serving the same data
 * directory meanwhile. Prints the verified figures: schema versions and the row counts of the
 * main tables. Exit 0 once the copy verified, 1 when it failed (the reason on stderr), 2 for a
 * usage error. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "store/backup.h"
#include "store/store.h"

static const char usage_backup[] =
    "usage: stagedoor backup DEST [--data DIR]\n"
    "Copies the SQLite store in DIR (stagedoor.db and control.db) into DEST, a new or empty\n"
    "directory, while a hub may keep serving DIR: one consistent snapshot, copied in steps,\n"
    "then verified by opening the copy (quick_check, schema versions, row counts).\n"
    "Restore: stop the hub and start it with --data DEST (or copy DEST's two files into DIR).\n"
    "A PostgreSQL store (--store, STAGEDOOR_STORE) is backed up with pg_dump instead.\n"
    "  --data DIR  the data directory (default ./stagedoor-data)\n";

int sd_cmd_backup(int argc, char **argv)
{
    const char *data = SD_DEFAULT_DATA_DIR;
    struct sd_cli_opt opts[] = {{"--data", true, &data, NULL}, {0}};
    const char *pos[1];
    int n = sd_cli_parse(argc, argv, opts, pos, 1, usage_backup);
    if (n < 0) {
        return n == -1 ? SD_EXIT_OK : SD_EXIT_USAGE;
    }
    if (n != 1 || !*pos[0]) {
        return sd_cli_usage_error("backup needs a DEST directory (see --help)");
    }
    const char *dest = pos[0];
    struct sd_store_handle *h = NULL;
    int code = sd_cli_open_store(data, &h);
    if (code != 0) {
        return code;
    }
    struct sd_store_backup_report rep;
    int r = sd_store_backup(h, dest, &rep);
    sd_store_close(h);
    if (r < 0) {
        return sd_cli_fail("backup: %s", rep.message[0] ? rep.message : strerror(-r));
    }
    printf("backup of %s written to %s and verified: quick_check ok, schema version %" PRId64
           ", control schema version %" PRId64 "\n",
           data, dest, rep.schema_version, rep.control_schema_version);
    for (size_t i = 0; i < rep.n_tables; i++) {
        printf("  %-13s %-13s %12" PRId64 " rows\n", rep.tables[i].file, rep.tables[i].name,
               rep.tables[i].rows);
    }
    printf("%" PRId64 " pages, %.1f MiB in %.2f s; restore with --data %s\n", rep.pages,
           (double)rep.bytes / (1024.0 * 1024.0), (double)rep.usec / 1e6, dest);
    return SD_EXIT_OK;
}
