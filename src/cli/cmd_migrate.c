/* cmd_migrate.c — `stagedoor migrate --from DATA_DIR --to URL`: move a venue's SQLite store into
 * an empty PostgreSQL database and verify the copy (store/migrate.h does the work). Prints one
 * line per table (rows and the checksum both sides agree on), then a summary; with --verify it
 * only compares an earlier copy. Exit 0 when every table matches, 1 when anything failed or
 * differs, 2 for a usage error. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "store/migrate.h"

static const char usage_migrate[] =
    "usage: stagedoor migrate --from DATA_DIR --to postgresql://USER@HOST:PORT/DB [--verify]\n"
    "Copies the SQLite store in DATA_DIR (stagedoor.db and control.db) into an empty PostgreSQL\n"
    "database in one transaction: every record with its change number (cursors stay valid),\n"
    "tenants, key hashes, connectors and their state, outbox items, segments, raw inbound\n"
    "bodies, quota windows. Then compares every table by row count and checksum. Refuses a\n"
    "database that already holds data. DATA_DIR is only read; a hub may keep serving from it,\n"
    "but what it writes after the copy starts is not moved: stop it for the real move.\n"
    "  --verify  only compare DATA_DIR with a database it was migrated into\n";

static void print_tables(const struct sd_migrate_result *m)
{
    for (size_t i = 0; i < m->n; i++) {
        const struct sd_migrate_table *t = &m->tables[i];
        if (t->pg_rows < 0) {
            continue; /* not reached */
        }
        printf("%-26s %10" PRId64 " rows  sha256 %s%s\n", t->name, t->rows, t->sum,
               t->ok ? "" : "  DIFFERS");
        if (!t->ok) {
            printf("%-26s %10" PRId64 " rows in PostgreSQL\n", "", t->pg_rows);
        }
    }
}

int sd_cmd_migrate(int argc, char **argv)
{
    const char *from = NULL, *to = NULL;
    bool verify_only = false;
    struct sd_cli_opt opts[] = {{"--from", true, &from, NULL},
                                {"--to", true, &to, NULL},
                                {"--verify", false, NULL, &verify_only},
                                {0}};
    const char *pos[1];
    int n = sd_cli_parse(argc, argv, opts, pos, 1, usage_migrate);
    if (n < 0) {
        return n == -1 ? SD_EXIT_OK : SD_EXIT_USAGE;
    }
    if (n != 0) {
        return sd_cli_usage_error("migrate takes no positional arguments (see --help)");
    }
    if (!from || !*from) {
        return sd_cli_usage_error("migrate needs --from DATA_DIR");
    }
    if (!to || !*to) {
        /* --store and STAGEDOOR_STORE name the store other commands open, not the target. */
        return sd_cli_usage_error("migrate needs --to postgresql://… (the target database)");
    }
    struct sd_migrate_result m = {0};
    int r = verify_only ? sd_store_migrate_verify(from, to, &m) : sd_store_migrate(from, to, &m);
    print_tables(&m);
    if (r == 0) {
        printf("%s %" PRId64 " rows in %zu tables: counts and checksums match (meta seq %" PRId64
               ")",
               verify_only ? "verified" : "migrated", m.rows, m.n, m.seq);
        if (!verify_only) {
            double copy = (double)m.copy_usec / 1e6, all = (double)m.verify_usec / 1e6;
            printf("; copy %.2f s (%.0f rows/s), verification %.2f s", copy,
                   copy > 0 ? (double)m.rows / copy : 0.0, all);
        }
        printf("\n");
        sd_migrate_result_release(&m);
        return SD_EXIT_OK;
    }
    if (r == -EBADMSG) {
        fprintf(stderr,
                "stagedoor: verification failed: %s\n"
                "stagedoor: the copied data stays in the database; to start again, use a fresh "
                "database (or drop every table of this one) and run stagedoor migrate again\n",
                m.error);
    } else {
        fprintf(stderr, "stagedoor: migrate %s: %s\n", verify_only ? "--verify failed" : "failed",
                m.error[0] ? m.error : strerror(-r));
        if (!verify_only) {
            fprintf(stderr, "stagedoor: no data was written to PostgreSQL\n");
        }
    }
    sd_migrate_result_release(&m);
    return SD_EXIT_FAIL;
}
