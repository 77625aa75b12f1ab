/* cmd_version.c — `stagedoor version` / `stagedoor --version`: the release (CMake's project
 * VERSION, compiled in as SD_VERSION), the git commit the binary was configured from when it
 * was built from a checkout (SD_GIT_COMMIT, `git describe --always --dirty` at configure time;
 * absent in a build from a source tarball, and then not printed), and on a second line the
 * versions of the libraries that decide the store's and the server's behaviour, as linked at run
 * time (a distribution's security update changes them without a rebuild). */
#include <libpq-fe.h>
#include <microhttpd.h>
#include <sqlite3.h>
#include <stdio.h>

#include "cli/cli.h"

#ifndef SD_VERSION
#error "SD_VERSION comes from CMakeLists.txt (project VERSION)"
#endif

static const char usage_version[] =
    "usage: stagedoor version   (also: stagedoor --version)\n"
    "Prints \"stagedoor X.Y.Z\" (with the git commit of a build from a checkout) and the versions\n"
    "of SQLite, libpq and libmicrohttpd the binary runs with.\n";

const char *sd_cli_version(void)
{
    return SD_VERSION;
}

int sd_cmd_version(int argc, char **argv)
{
    const char *pos[1];
    struct sd_cli_opt opts[] = {{0}};
    int n = sd_cli_parse(argc, argv, opts, pos, 0, usage_version);
    if (n < 0) {
        return n == -1 ? SD_EXIT_OK : SD_EXIT_USAGE;
    }
#ifdef SD_GIT_COMMIT
    printf("stagedoor %s (git %s)\n", SD_VERSION, SD_GIT_COMMIT);
#else
    printf("stagedoor %s\n", SD_VERSION);
#endif
    /* PQlibVersion: major * 10000 + minor since PostgreSQL 10. */
    int pq = PQlibVersion();
    printf("SQLite %s, libpq %d.%d, libmicrohttpd %s\n", sqlite3_libversion(), pq / 10000,
           pq % 10000, MHD_get_version());
    return SD_EXIT_OK;
}
