/* csv_drop.c — the `csv_drop` connector (seed §3 "CSV via SFTP", the hub's side): a local
 * drop folder that operators serve over SFTP with OpenSSH (internal-sftp in a chroot; the README
 * shows the sshd configuration). The scheduler watches the folder with inotify and also runs
 * the connector on its schedule as a rescan, so a missed event only delays a file.
 *
 * A file is taken when its name is final ("NAME.csv", not hidden, not a temporary upload name: a
 * careful uploader writes a temporary name and renames) and it has not changed for settle_seconds
 * (a plain `put` of the final name is complete once it stops growing). Files go in name order
 * with events files first, then customers, then sales, so references resolve when a venue drops
 * all three at once. Each file is imported by csv_import.c and acknowledged beside it. */
#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/base.h"
#include "connectors/csv_drop/csv_import.h"
#include "core/connector.h"

struct drop_conf {
    struct sd_csv_import_conf csv; /* first: the importer reads it (csv_import.h) */
    const char *folder;
};

static const struct sd_setting settings[] = {
    {"folder", SD_SETTING_PATH, NULL, 2, 1024,
     "absolute path of the drop folder (the SFTP user's upload directory)", NULL,
     offsetof(struct drop_conf, folder)},
    SD_CSV_IMPORT_SETTINGS,
    {NULL, 0, NULL, 0, 0, NULL, NULL, 0},
};

static const char *watch_dir(const void *conf)
{
    return conf ? ((const struct drop_conf *)conf)->folder : NULL;
}

struct entry {
    char *name;
    int order;
};

static int cmp_entry(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    if (x->order != y->order) {
        return x->order - y->order;
    }
    return strcmp(x->name, y->name);
}

/* Files ready to import, in order; *ret_waiting counts files still settling. */
static int scan(const char *folder, int64_t settle_s, struct entry **ret, size_t *ret_n,
                size_t *ret_waiting)
{
    DIR *d = opendir(folder);
    if (!d) {
        return -errno;
    }
    struct entry *v = NULL;
    size_t n = 0, waiting = 0;
    time_t now = time(NULL);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!sd_csv_import_wanted(de->d_name)) {
            continue;
        }
        char *path = sd_asprintf("%s/%s", folder, de->d_name);
        struct stat st;
        /* lstat: a link in the drop folder, symbolic or hard, is never imported (it could name
         * any file the hub can read); it is left where it is. */
        bool ok = lstat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1;
        free(path);
        if (!ok) {
            continue;
        }
        if (now - st.st_mtime < settle_s) {
            waiting++;
            continue;
        }
        v = sd_realloc(v, (n + 1) * sizeof(*v));
        v[n].name = sd_strdup(de->d_name);
        v[n].order = sd_csv_import_order(de->d_name);
        n++;
    }
    closedir(d);
    if (n > 1) {
        qsort(v, n, sizeof(*v), cmp_entry); /* v is NULL when n is 0: not for qsort */
    }
    *ret = v;
    *ret_n = n;
    *ret_waiting = waiting;
    return 0;
}

static int drop_run(struct sd_connector_ctx *ctx, void *state)
{
    (void)state;
    const struct drop_conf *conf = ctx->conf;
    const char *folder = conf->folder;
    int64_t settle = conf->csv.settle_seconds;
    struct sd_csv_run_summary sum;
    sd_csv_run_summary_init(&sum);
    /* A few rounds, so a file that is still settling when the run starts is taken in it. */
    for (int round = 0; round < 10; round++) {
        struct entry *v = NULL;
        size_t n = 0, waiting = 0;
        int r = scan(folder, settle, &v, &n, &waiting);
        if (r < 0) {
            sd_csv_run_summary_release(&sum);
            return sd_connector_fail(ctx, r, "cannot read the drop folder %s: %s", folder,
                                     strerror(-r));
        }
        for (size_t i = 0; i < n && r == 0; i++) {
            if (ctx->stop && atomic_load(ctx->stop)) {
                r = -ECANCELED;
                break;
            }
            struct sd_csv_import_result res;
            r = sd_csv_import_file(ctx, folder, v[i].name, &res);
            if (r == 0) {
                sd_csv_run_summary_add(&sum, v[i].name, &res);
            }
        }
        for (size_t i = 0; i < n; i++) {
            free(v[i].name);
        }
        free(v);
        if (r < 0) {
            sd_csv_run_summary_release(&sum); /* the failure's reason is the status */
            return r;
        }
        if (waiting == 0 || (ctx->stop && atomic_load(ctx->stop))) {
            break;
        }
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 500 * 1000 * 1000};
        for (int64_t w = 0; w < (settle > 0 ? settle * 2 : 1); w++) {
            nanosleep(&ts, NULL);
        }
    }
    return sd_csv_run_summary_finish(&sum, ctx);
}

const struct sd_connector sd_connector_csv_drop = {
    .name = "csv_drop",
    .kind = SD_CONNECTOR_SOURCE,
    .help = "import CSV files dropped into a local folder (served over SFTP by OpenSSH)",
    .settings = settings,
    .settings_size = sizeof(struct drop_conf),
    .default_schedule = "every 1m",
    .run = drop_run,
    .watch_dir = watch_dir,
};
