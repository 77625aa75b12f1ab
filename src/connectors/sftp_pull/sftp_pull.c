/* sftp_pull.c — the `sftp_pull` connector: fetch CSV files from a remote SFTP folder (libcurl
 * sftp://, password or key), import each one like a dropped file (connectors/csv_drop/
 * csv_import.c), then move it into the remote processed/ (or failed/) folder, or delete it,
 * and upload its NAME.csv.ack.json (and NAME.csv.errors.csv) there, so the venue sees the
 * outcome where it put the file; local copies are removed once the server has them.
 *
 * Completeness: a remote file is taken when its name is final (NAME.csv, not hidden) and its
 * listing line (size and time) is the same in two listings settle_seconds apart. Download goes
 * to a temporary name in the instance's work folder and is renamed once complete. The file's
 * SHA-256 is its identity: if the hub crashes after storing a file but before moving it
 * remotely, the next run downloads it again, sees in the committed cursor that it is already
 * stored and not yet acknowledged (the cursor's "acked" mark is committed only after the remote
 * move and the ack upload), and only acknowledges and moves it. Host keys: give host_key_sha256 (as
 * printed by `ssh-keygen -lf`, without the "SHA256:" prefix) or a known_hosts file; with neither
 * the host key is not checked, which the status says. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "base/fault.h"
#include "base/log.h"
#include "connectors/csv_drop/csv_import.h"
#include "core/connector.h"
#include "http/client.h"

struct pull_conf {
    struct sd_csv_import_conf csv; /* first: the importer reads it (csv_import.h) */
    const char *url, *username, *password, *private_key_file, *public_key_file;
    const char *host_key_sha256, *known_hosts_file;
    int after_import; /* enum after_import */
    int64_t timeout_seconds, max_attempts, retry_initial_ms;
};
enum after_import { AFTER_MOVE, AFTER_DELETE };

#define AT(member) offsetof(struct pull_conf, member)

static const struct sd_setting settings[] = {
    {"url", SD_SETTING_URL, NULL, 10, 2048,
     "sftp://host[:port]/folder/ of the remote folder (ending in /)", SD_CHOICES("sftp"), AT(url)},
    {"username", SD_SETTING_STRING, NULL, 1, 256, "SFTP user", NULL, AT(username)},
    {"password", SD_SETTING_SECRET, "\"\"", 0, 1024, "SFTP password (or use a key)", NULL,
     AT(password)},
    {"private_key_file", SD_SETTING_PATH, "\"\"", 0, 1024, "path of a private key file", NULL,
     AT(private_key_file)},
    {"public_key_file", SD_SETTING_PATH, "\"\"", 0, 1024, "path of its public key (optional)", NULL,
     AT(public_key_file)},
    {"host_key_sha256", SD_SETTING_STRING, "\"\"", 0, 128,
     "the server's host key fingerprint to check (`ssh-keygen -lf key.pub`, without "
     "\"SHA256:\"); or known_hosts_file; with neither the key is not checked and the status warns",
     NULL, AT(host_key_sha256)},
    {"known_hosts_file", SD_SETTING_PATH, "\"\"", 0, 1024, "or an OpenSSH known_hosts file", NULL,
     AT(known_hosts_file)},
    {"after_import", SD_SETTING_CHOICE, "\"move\"", 0, 0,
     "move (into processed/ or failed/ beside the files) or delete", SD_CHOICES("move", "delete"),
     AT(after_import)},
    {"timeout_seconds", SD_SETTING_INT, "600", 1, 86400, "per transfer", NULL, AT(timeout_seconds)},
    {"max_attempts", SD_SETTING_INT, "6", 1, 20, "attempts per transfer", NULL, AT(max_attempts)},
    {"retry_initial_ms", SD_SETTING_INT, "1000", 1, 600000, "first back-off", NULL,
     AT(retry_initial_ms)},
    SD_CSV_IMPORT_SETTINGS,
    {NULL, 0, NULL, 0, 0, NULL, NULL, 0},
};

static const struct pull_conf *cf(const struct sd_connector_ctx *ctx)
{
    return ctx->conf;
}

/* An optional string setting: NULL when empty ("" is its default: none). */
static const char *opt(const char *v)
{
    return v && v[0] ? v : NULL;
}

static void check(const void *conf, struct sd_issues *errors)
{
    const struct pull_conf *c = conf;
    const char *url = c->url;
    if (strncmp(url, "sftp://", 7) != 0 || url[strlen(url) - 1] != '/' || !strchr(url + 7, '/')) {
        sd_issues_add(errors, "/settings/url", "must be sftp://host[:port]/folder/ (ending in /)");
    }
    if (!opt(c->password) && !opt(c->private_key_file)) {
        sd_issues_add(errors, "/settings/password", "give a password or a private_key_file");
    }
}

static void base_request(struct sd_connector_ctx *ctx, struct sd_http_request *rq)
{
    const struct pull_conf *c = cf(ctx);
    *rq = (struct sd_http_request){
        .username = c->username,
        .password = opt(c->password),
        .ssh_private_key = opt(c->private_key_file),
        .ssh_public_key = opt(c->public_key_file),
        .ssh_host_sha256 = opt(c->host_key_sha256),
        .ssh_known_hosts = opt(c->known_hosts_file),
        .timeout_ms = c->timeout_seconds * 1000,
    };
}

static struct sd_http_retry retry_policy(struct sd_connector_ctx *ctx)
{
    return (struct sd_http_retry){.max_attempts = (int)cf(ctx)->max_attempts,
                                  .initial_ms = cf(ctx)->retry_initial_ms,
                                  .stop = ctx->stop};
}

/* The remote folder's path ("/upload/") from the URL. */
static const char *remote_path(const char *url)
{
    return strchr(url + 7, '/');
}

/* One long listing of the folder: lines "perm links owner group size month day time name". */
static int list_remote(struct sd_connector_ctx *ctx, char **ret_text)
{
    struct sd_http_request rq;
    base_request(ctx, &rq);
    rq.url = cf(ctx)->url;
    rq.max_body = 16u << 20;
    struct sd_http_retry pol = retry_policy(ctx);
    struct sd_http_response resp;
    int attempts = 0;
    int r = sd_http_fetch_retry(&rq, &pol, &resp, &attempts);
    if (r < 0) {
        r = sd_connector_fail(ctx, r, "listing %s failed after %d attempt(s): %s", rq.url, attempts,
                              resp.error);
    } else {
        *ret_text = sd_buf_steal(&resp.body);
        if (!*ret_text) {
            *ret_text = sd_strdup("");
        }
    }
    sd_http_response_release(&resp);
    return r;
}

/* The file name of a listing line (after 8 fields), or NULL. */
static const char *line_name(const char *line)
{
    const char *p = line;
    for (int f = 0; f < 8; f++) {
        while (*p == ' ') {
            p++;
        }
        while (*p && *p != ' ') {
            p++;
        }
    }
    while (*p == ' ') {
        p++;
    }
    return *p ? p : NULL;
}

static bool line_in(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p += n) {
        if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0' || p[n] == '\r')) {
            return true;
        }
    }
    return false;
}

static int download(struct sd_connector_ctx *ctx, const char *dir, const char *name)
{
    char *part = sd_asprintf("%s/.%s.part", dir, name);
    char *final = sd_asprintf("%s/%s", dir, name);
    int fd = open(part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int r = 0;
    if (fd < 0) {
        r = sd_connector_fail(ctx, -errno, "cannot write %s", part);
        goto out;
    }
    struct sd_http_request rq;
    base_request(ctx, &rq);
    char *ename = sd_http_url_escape(name);
    rq.url = sd_asprintf("%s%s", cf(ctx)->url, ename);
    free(ename);
    rq.to_fd = fd;
    rq.max_body = (size_t)4 << 30;
    struct sd_http_retry pol = retry_policy(ctx);
    struct sd_http_response resp;
    int attempts = 0;
    /* A retried download starts the file over. */
    r = sd_http_fetch_retry(&rq, &pol, &resp, &attempts);
    if (r == 0 && (fsync(fd) != 0 || (off_t)resp.body_bytes != lseek(fd, 0, SEEK_END))) {
        r = -EIO;
        snprintf(resp.error, sizeof(resp.error), "incomplete download");
    }
    close(fd);
    if (r < 0) {
        r = sd_connector_fail(ctx, r, "downloading %s failed after %d attempt(s): %s", name,
                              attempts, resp.error);
        unlink(part);
    } else if (rename(part, final) != 0) {
        r = sd_connector_fail(ctx, -errno, "cannot rename %s", part);
    }
    sd_http_response_release(&resp);
    free((char *)rq.url);
out:
    free(part);
    free(final);
    return r;
}

/* Run SFTP commands (after listing the folder, which opens the session). */
static int remote_commands(struct sd_connector_ctx *ctx, const char *const *cmds,
                           struct sd_http_response *resp)
{
    struct sd_http_request rq;
    base_request(ctx, &rq);
    rq.url = cf(ctx)->url;
    rq.list_only = true;
    rq.quote_after = cmds;
    struct sd_http_retry pol = retry_policy(ctx);
    return sd_http_fetch_retry(&rq, &pol, resp, NULL);
}

/* name with the time appended: the name to use when `name` is taken in a remote folder (the
 * same name delivered again), as a drop folder does locally. */
static char *stamped(const char *name)
{
    return sd_asprintf("%s.%lld", name, (long long)(sd_now_usec() / 1000000));
}

/* Move the remote file into processed/ or failed/ (*ret_moved: its name there; a name already
 * taken there gets the time appended, as locally) or delete it. */
static int after_import(struct sd_connector_ctx *ctx, const char *name, bool failed,
                        char **ret_moved)
{
    const char *path = remote_path(cf(ctx)->url);
    bool del = cf(ctx)->after_import == AFTER_DELETE;
    const char *sub = failed ? "failed" : "processed";
    char *mk = sd_asprintf("*mkdir \"%s%s\"", path, sub); /* '*': an existing folder is fine */
    char *moved = del ? NULL : sd_strdup(name);
    int r = 0;
    struct sd_http_response resp;
    for (int i = 0; i < 2; i++) {
        char *mv = del ? sd_asprintf("rm \"%s%s\"", path, name)
                       : sd_asprintf("rename \"%s%s\" \"%s%s/%s\"", path, name, path, sub, moved);
        const char *quote[] = {mk, mv, NULL};
        r = remote_commands(ctx, del ? quote + 1 : quote, &resp);
        free(mv);
        if (r != -EPERM || del || i == 1) {
            break;
        }
        /* processed/NAME exists (the same name delivered again): keep both */
        sd_http_response_release(&resp);
        free(moved);
        moved = stamped(name);
    }
    if (r < 0) {
        r = sd_connector_fail(ctx, r,
                              "%s %s on the server failed: %s (the file is stored; the "
                              "next run only acknowledges it)",
                              del ? "deleting" : "moving", name, resp.error);
        free(moved);
        moved = NULL;
    }
    sd_http_response_release(&resp);
    free(mk);
    *ret_moved = moved;
    return r;
}

/* Upload a local file into the remote folder sub/ as `name`: under a hidden temporary name,
 * renamed once complete. */
static int upload(struct sd_connector_ctx *ctx, const char *local, const char *sub,
                  const char *name)
{
    const char *path = remote_path(cf(ctx)->url);
    char *tmp = sd_asprintf(".%s.part", name);
    char *etmp = sd_http_url_escape(tmp);
    char *mv = sd_asprintf("rename \"%s%s/%s\" \"%s%s/%s\"", path, sub, tmp, path, sub, name);
    const char *quote[] = {mv, NULL};
    struct sd_http_request rq;
    base_request(ctx, &rq);
    rq.url = sd_asprintf("%s%s/%s", cf(ctx)->url, sub, etmp);
    rq.upload_file = local;
    rq.quote_after = quote;
    struct sd_http_retry pol = retry_policy(ctx);
    struct sd_http_response resp;
    int r = sd_http_fetch_retry(&rq, &pol, &resp, NULL);
    if (r < 0 && r != -EPERM) {
        sd_connector_fail(ctx, 0, "uploading %s/%s failed: %s (it stays in the hub's work folder)",
                          sub, name, resp.error);
    }
    sd_http_response_release(&resp);
    if (r == -EPERM) {
        /* The rename was refused (the name is taken): take the temporary file away again. */
        char *rm = sd_asprintf("rm \"%s%s/%s\"", path, sub, tmp);
        const char *cmds[] = {rm, NULL};
        (void)remote_commands(ctx, cmds, &resp);
        sd_http_response_release(&resp);
        free(rm);
    }
    free((char *)rq.url);
    free(mv);
    free(etmp);
    free(tmp);
    return r;
}

/* The acknowledgement goes where the venue looks: NAME.csv.ack.json (and its errors) beside the
 * moved file; with after_import "delete", only a refused file's, into failed/. Local copies are
 * removed once the remote has them, so the work folder does not grow with every file. */
static void report(struct sd_connector_ctx *ctx, const struct sd_csv_import_result *res,
                   const char *moved, const char *name)
{
    bool del = cf(ctx)->after_import == AFTER_DELETE;
    const char *sub = res->failed ? "failed" : "processed";
    int r = 0;
    char *base = sd_strdup(moved ? moved : name);
    for (int i = 0; i < 2 && (!del || res->failed); i++) {
        char *ack = sd_asprintf("%s.ack.json", base);
        char *errs = sd_asprintf("%s.errors.csv", base);
        r = upload(ctx, res->ack_path, sub, ack);
        if (r == 0 && res->errors_path[0]) {
            r = upload(ctx, res->errors_path, sub, errs);
        }
        free(ack);
        free(errs);
        if (r != -EPERM) {
            break;
        }
        /* failed/NAME.csv.ack.json exists (the same name refused before): keep both */
        free(base);
        base = stamped(name);
    }
    free(base);
    if (r == -EPERM) {
        sd_connector_fail(ctx, 0, "uploading the ack of %s failed: the server refused the "
                          "rename (it stays in the hub's work folder)", name);
    }
    if (r == 0) {
        unlink(res->moved_path);
        unlink(res->ack_path);
        if (res->errors_path[0]) {
            unlink(res->errors_path);
        }
    }
}

static int pull_run(struct sd_connector_ctx *ctx, void *state)
{
    (void)state;
    char *dir = sd_asprintf("%s/incoming", ctx->work_dir);
    mkdir(dir, 0700);
    char *first = NULL, *second = NULL;
    int r = list_remote(ctx, &first);
    int64_t settle = cf(ctx)->csv.settle_seconds;
    if (r == 0 && settle > 0) {
        for (int64_t i = 0; i < settle * 10 && !(ctx->stop && atomic_load(ctx->stop)); i++) {
            struct timespec ts = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        r = list_remote(ctx, &second);
    }
    if (r < 0) {
        goto out;
    }
    /* Names present, unchanged, in import order. */
    struct item {
        char *name;
        int order;
    } *v = NULL;
    size_t n = 0;
    char *save = NULL;
    for (char *line = strtok_r(first, "\r\n", &save); line; line = strtok_r(NULL, "\r\n", &save)) {
        const char *name = line_name(line);
        if (line[0] != '-' || !name || !sd_csv_import_wanted(name) || strchr(name, '/') ||
            strchr(name, '"') || (second && !line_in(second, line))) {
            continue;
        }
        v = sd_realloc(v, (n + 1) * sizeof(*v));
        v[n].name = sd_strdup(name);
        v[n].order = sd_csv_import_order(name);
        n++;
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t j = i + 1; j < n; j++) {
            if (v[j].order < v[i].order ||
                (v[j].order == v[i].order && strcmp(v[j].name, v[i].name) < 0)) {
                struct item t = v[i];
                v[i] = v[j];
                v[j] = t;
            }
        }
    }
    struct sd_csv_run_summary sum;
    sd_csv_run_summary_init(&sum);
    for (size_t i = 0; i < n && r == 0; i++) {
        if (ctx->stop && atomic_load(ctx->stop)) {
            r = -ECANCELED;
            break;
        }
        r = download(ctx, dir, v[i].name);
        struct sd_csv_import_result res;
        if (r == 0) {
            r = sd_csv_import_file_unmarked(ctx, dir, v[i].name, &res);
        }
        if (r == 0) {
            sd_csv_run_summary_add(&sum, v[i].name, &res);
            if (sd_fault_hit("sftp_before_move")) {
                sd_log_flush();
                _exit(137); /* test hook: a crash between the import and the remote move */
            }
            char *moved = NULL;
            r = after_import(ctx, v[i].name, res.failed, &moved);
            if (r == 0) {
                report(ctx, &res, moved, v[i].name);
                /* Only now is the file marked acknowledged, after the remote move and the ack
                 * upload: a crash before the move leaves it in the remote folder, and the next
                 * run, finding it stored and not marked, only moves it and uploads its ack; it
                 * does not import it again. Marked even if the upload failed: the file has left
                 * the folder, and an unmarked cursor would only have an identical later
                 * delivery acknowledged with these counts instead of imported. */
                sd_csv_import_mark_acked(ctx, v[i].name, res.sha256);
            }
            free(moved);
        }
    }
    for (size_t i = 0; i < n; i++) {
        free(v[i].name);
    }
    free(v);
    /* Every file refused fails the run; some refused, or rows skipped, warn. */
    if (r == 0) {
        r = sd_csv_run_summary_finish(&sum, ctx);
    } else {
        sd_csv_run_summary_release(&sum);
    }
    if (r == 0 && !opt(cf(ctx)->host_key_sha256) && !opt(cf(ctx)->known_hosts_file) &&
        !ctx->error) {
        sd_connector_fail(ctx, 0, "the server's host key is not checked: set host_key_sha256");
    }
out:
    free(first);
    free(second);
    free(dir);
    return r;
}

const struct sd_connector sd_connector_sftp_pull = {
    .name = "sftp_pull",
    .kind = SD_CONNECTOR_SOURCE,
    .help = "fetch CSV files from a remote SFTP folder, import them, then move or delete them",
    .settings = settings,
    .settings_size = sizeof(struct pull_conf),
    .default_schedule = "every 15m",
    .run = pull_run,
    .check = check,
};
