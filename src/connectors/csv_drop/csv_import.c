/* csv_import.c — one CSV file into the hub (see csv_import.h).
 *
 * Two policies, one reader:
 *  - reject_file: the whole file is one write job (sd_connector_write_job): every chunk is
 *    validated and applied inside one savepoint, and any refused row undoes everything. Every
 *    chunk is still applied after the first error, only so that errors.csv lists every bad
 *    row (reference errors included); the savepoint is rolled back at the end. The cursor
 *    {"sha256", "done": true} commits with the records.
 *  - skip_rows: chunks commit one by one, each with the cursor (byte offset and line after the
 *    chunk, counters, and the size errors.csv had then), so a crash resumes after the last
 *    committed chunk and errors.csv is cut back to match.
 * Rows are mapped with the instance's mapping; a row that cannot be mapped, has the wrong
 * number of fields or bad encoding is a bad row like a refused record. */
#include "connectors/csv_drop/csv_import.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "formats/csv_reader.h"
#include "mapping/mapping.h"

#define CHUNK 1000

void sd_csv_import_check(const json_t *s, struct sd_issues *errors)
{
    static const struct {
        const char *key;
        const char *choices[5];
    } enums[] = {
        {"kind", {"auto", "events", "customers", "sales", NULL}},
        {"delimiter", {"auto", "comma", "semicolon", "tab", NULL}},
        {"encoding", {"utf-8", "windows-1252", NULL}},
        {"policy", {"reject_file", "skip_rows", NULL}},
    };
    for (size_t i = 0; i < sizeof(enums) / sizeof(enums[0]); i++) {
        const char *v = json_string_value(json_object_get(s, enums[i].key));
        if (!v) {
            continue;
        }
        bool ok = false;
        struct sd_buf list = {0};
        for (size_t j = 0; enums[i].choices[j]; j++) {
            ok = ok || strcmp(v, enums[i].choices[j]) == 0;
            sd_buf_printf(&list, "%s%s", j ? ", " : "", enums[i].choices[j]);
        }
        if (!ok) {
            char ptr[64];
            snprintf(ptr, sizeof(ptr), "/settings/%s", enums[i].key);
            sd_issues_add(errors, ptr, "must be one of %s", list.data);
        }
        sd_buf_release(&list);
    }
}

bool sd_csv_import_wanted(const char *name)
{
    size_t n = strlen(name);
    return n > 4 && name[0] != '.' && strcasecmp(name + n - 4, ".csv") == 0 &&
           !strstr(name, ".errors.csv");
}

static int kind_of_name(const char *name)
{
    if (strncasecmp(name, "events", 6) == 0) {
        return SD_KIND_EVENT;
    }
    if (strncasecmp(name, "customers", 9) == 0) {
        return SD_KIND_CUSTOMER;
    }
    if (strncasecmp(name, "sales", 5) == 0) {
        return SD_KIND_SALE;
    }
    return -1;
}

int sd_csv_import_order(const char *name)
{
    int k = kind_of_name(name);
    return k < 0 ? 3 : k;
}

/* ---- the importer --------------------------------------------------------------------------- */

struct importer {
    struct sd_connector_ctx *ctx;
    const char *dir, *name;
    char *path;
    enum sd_kind kind;
    struct sd_csv_options copt;
    bool skip_rows;
    char sha[65];
    int fd;
    struct sd_csv_reader *rd;
    char **header;
    size_t nh;
    char *err_path; /* errors.csv being written, in the work folder */
    FILE *errf;
    uint64_t rows, stored, rejected, unchanged;
    uint64_t rejected_here; /* rows refused before the store saw them, in this run */
    int fatal;              /* a structural error ended the file */
    char fatal_msg[300];
};

static const char *setting(const struct sd_connector_ctx *ctx, const char *key)
{
    const char *v = json_string_value(json_object_get(ctx->settings, key));
    return v ? v : "";
}

static void csv_field(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') {
            fputc('"', f);
        }
        fputc(*s, f);
    }
    fputc('"', f);
}

static void bad_row(struct importer *im, uint64_t line, const char *column, const char *msg)
{
    fprintf(im->errf, "%llu,", (unsigned long long)line);
    csv_field(im->errf, column ? column : "");
    fputc(',', im->errf);
    csv_field(im->errf, msg);
    fputc('\n', im->errf);
}

/* Issues from the mapping ("/line/12/date") → errors.csv rows. */
static void mapping_issues(struct importer *im, uint64_t line, const struct sd_issues *iss)
{
    for (size_t i = 0; i < iss->n; i++) {
        const char *p = iss->items[i].pointer;
        const char *col = "";
        const char *q = strchr(p + (p[0] == '/'), '/');
        if (q) {
            q = strchr(q + 1, '/');
            col = q ? q + 1 : "";
        }
        bad_row(im, line, col, iss->items[i].message);
    }
}

/* Issues from validation/apply ("/sales/7/currency") → rows; returns distinct records hit.
 * With ret_hit (n entries, false on entry), the records hit are marked in it. */
static uint64_t record_issues_hit(struct importer *im, const uint64_t *lines, size_t n,
                                  const struct sd_issues *iss, bool *ret_hit)
{
    uint64_t distinct = 0;
    bool *seen = ret_hit ? ret_hit : sd_calloc(n + 1, sizeof(bool));
    for (size_t i = 0; i < iss->n; i++) {
        const char *p = iss->items[i].pointer;
        const char *q = p[0] == '/' ? strchr(p + 1, '/') : NULL;
        char *end = NULL;
        unsigned long long idx = q ? strtoull(q + 1, &end, 10) : 0;
        if (!q || !end || idx >= n) {
            bad_row(im, 0, p, iss->items[i].message);
            continue;
        }
        if (!seen[idx]) {
            seen[idx] = true;
            distinct++;
        }
        bad_row(im, lines[idx], *end == '/' ? end + 1 : end, iss->items[i].message);
    }
    if (!ret_hit) {
        free(seen);
    }
    return distinct;
}

static uint64_t record_issues(struct importer *im, const uint64_t *lines, size_t n,
                              const struct sd_issues *iss)
{
    return record_issues_hit(im, lines, n, iss, NULL);
}

/* Read up to CHUNK good rows into body[kind]; bad rows go to errors.csv. */
static int read_chunk(struct importer *im, json_t **ret_body, uint64_t *lines, size_t *ret_n,
                      bool *eof)
{
    json_t *arr = json_array();
    size_t n = 0;
    *eof = false;
    struct sd_issues iss;
    sd_issues_init(&iss, 50);
    while (n < CHUNK) {
        struct sd_csv_row row;
        int r = sd_csv_next(im->rd, &row);
        if (r == 0) {
            *eof = true;
            break;
        }
        if (r == -EILSEQ) {
            im->rows++;
            im->rejected++;
            im->rejected_here++;
            bad_row(im, row.line, "", sd_csv_error(im->rd));
            continue;
        }
        if (r < 0) {
            im->fatal = r;
            snprintf(im->fatal_msg, sizeof(im->fatal_msg), "%s", sd_csv_error(im->rd));
            bad_row(im, row.line, "", sd_csv_error(im->rd));
            *eof = true;
            break;
        }
        im->rows++;
        if (row.n != im->nh) {
            char msg[96];
            snprintf(msg, sizeof(msg), "the row has %zu fields, the header has %zu", row.n, im->nh);
            bad_row(im, row.line, "", msg);
            im->rejected++;
            im->rejected_here++;
            continue;
        }
        char ptr[40];
        snprintf(ptr, sizeof(ptr), "/line/%llu", (unsigned long long)row.line);
        json_t *rec =
            sd_mapping_apply_row(im->ctx->mapping, im->kind, (const char *const *)im->header,
                                 (const char *const *)row.fields, row.n, ptr, &iss);
        if (!rec) {
            mapping_issues(im, row.line, &iss);
            sd_issues_release(&iss);
            im->rejected++;
            im->rejected_here++;
            continue;
        }
        json_array_append_new(arr, rec);
        lines[n++] = row.line;
    }
    sd_issues_release(&iss);
    atomic_store(im->ctx->progress, im->rows);
    *ret_body = json_pack("{s:o}", sd_kind_array_name(im->kind), arr);
    *ret_n = n;
    return 0;
}

static int open_reader(struct importer *im, uint64_t offset, uint64_t line)
{
    sd_csv_free(im->rd);
    im->rd = NULL;
    int r = sd_csv_open_fd(im->fd, offset, line, &im->copt, &im->rd);
    if (r < 0) {
        return sd_connector_fail(im->ctx, r, "%s: cannot read from byte %llu", im->name,
                                 (unsigned long long)offset);
    }
    return 0;
}

/* Read the header row (from the start of the file) and keep its names. */
static int read_header(struct importer *im)
{
    int r = open_reader(im, 0, 1);
    if (r < 0) {
        return r;
    }
    struct sd_csv_row row;
    r = sd_csv_next(im->rd, &row);
    if (r <= 0) {
        return sd_connector_fail(im->ctx, -EINVAL, "%s: %s", im->name,
                                 r == 0 ? "the file is empty (a header row is required)"
                                        : sd_csv_error(im->rd));
    }
    im->header = sd_calloc(row.n + 1, sizeof(char *));
    im->nh = row.n;
    for (size_t i = 0; i < row.n; i++) {
        im->header[i] = sd_strdup(row.fields[i]);
    }
    im->copt.delimiter = sd_csv_delimiter(im->rd);
    return 0;
}

static json_t *cursor_doc(struct importer *im, bool done)
{
    uint64_t off = 0, line = 0;
    if (im->rd) {
        sd_csv_position(im->rd, &off, &line);
    }
    fflush(im->errf);
    long errbytes = ftell(im->errf);
    char delim[2] = {im->copt.delimiter, 0};
    return json_pack("{s:s, s:s, s:b, s:I, s:I, s:s, s:I, s:I, s:I, s:I, s:I}", "file", im->name,
                     "sha256", im->sha, "done", done, "offset", (json_int_t)off, "line",
                     (json_int_t)line, "delimiter", delim, "rows", (json_int_t)im->rows, "stored",
                     (json_int_t)im->stored, "rejected", (json_int_t)im->rejected, "unchanged",
                     (json_int_t)im->unchanged, "errors_bytes",
                     (json_int_t)(errbytes < 0 ? 0 : errbytes));
}

/* reject_file, one chunk inside the file's savepoint. The store checks a body in stages
 * (validation, then references), so a chunk refused for one row says nothing yet about the
 * others: the chunk is stored again without the rows named so far until it is accepted, and
 * errors.csv lists every bad row. Rows stored that way are undone with the refused file. */
static int whole_file_chunk(struct importer *im, struct sd_connector_job *job, const json_t *body,
                            const uint64_t *lines, size_t n)
{
    const char *name = sd_kind_array_name(im->kind);
    const json_t *arr = json_object_get(body, name);
    bool *bad = sd_calloc(n + 1, sizeof(bool));
    bool *hit = sd_calloc(n + 1, sizeof(bool));
    size_t *map = sd_calloc(n + 1, sizeof(size_t));
    uint64_t *rlines = sd_calloc(n + 1, sizeof(uint64_t));
    bool any_bad = false;
    int r = 0;
    for (;;) {
        json_t *ra = json_array();
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            if (!bad[i]) {
                json_array_append(ra, json_array_get(arr, i));
                map[m] = i;
                rlines[m] = lines[i];
                m++;
            }
        }
        json_t *red = json_pack("{s:o}", name, ra);
        struct sd_ingest_outcome out;
        sd_ingest_outcome_init_limit(&out, CHUNK * 4);
        r = m > 0 ? sd_connector_job_ingest(job, red, &out) : 0;
        json_decref(red);
        if (r < 0 || m == 0) {
            sd_ingest_outcome_release(&out);
            break;
        }
        if (out.status == 202) {
            if (!any_bad) {
                im->stored += n;
                im->unchanged += out.n_unchanged;
            }
            sd_ingest_outcome_release(&out);
            break;
        }
        memset(hit, 0, (n + 1) * sizeof(bool));
        uint64_t newly = record_issues_hit(im, rlines, m, &out.errors, hit);
        sd_ingest_outcome_release(&out);
        im->rejected += newly;
        any_bad = true;
        for (size_t j = 0; j < m; j++) {
            if (hit[j]) {
                bad[map[j]] = true;
            }
        }
        if (newly == 0) {
            if (im->rejected == 0) {
                im->rejected = 1; /* refused without naming a row: still refuse the file */
            }
            break;
        }
    }
    free(bad);
    free(hit);
    free(map);
    free(rlines);
    return r;
}

/* reject_file: the whole file inside one writer savepoint. */
static int whole_file_job(struct sd_connector_job *job, void *arg)
{
    struct importer *im = arg;
    uint64_t *lines = sd_malloc(CHUNK * sizeof(uint64_t));
    int r = 0;
    bool eof = false;
    while (!eof) {
        if (im->ctx->stop && atomic_load(im->ctx->stop)) {
            r = -ECANCELED;
            break;
        }
        json_t *body = NULL;
        size_t n = 0;
        read_chunk(im, &body, lines, &n, &eof);
        if (n > 0) {
            r = whole_file_chunk(im, job, body, lines, n);
        }
        json_decref(body);
        if (r < 0) {
            break;
        }
    }
    free(lines);
    if (r < 0) {
        return r;
    }
    if (im->rejected > 0 || im->fatal) {
        return 1; /* undo everything: the file is refused */
    }
    json_t *cur = cursor_doc(im, true);
    r = sd_connector_job_cursor(job, cur);
    json_decref(cur);
    return r;
}

/* skip_rows: chunk by chunk; each chunk commits with the cursor after it. */
struct chunk_ctx {
    struct importer *im;
    const uint64_t *lines;
    size_t n;
    long err_mark; /* errors.csv size before this chunk's store errors */
    bool eof;
};

/* Called before each attempt to store the chunk: rewrite this chunk's store errors into
 * errors.csv and describe the position after the chunk, so both commit together. */
static json_t *chunk_cursor(void *arg, const struct sd_issues *skipped, size_t n_skipped)
{
    struct chunk_ctx *cc = arg;
    struct importer *im = cc->im;
    fflush(im->errf);
    if (ftruncate(fileno(im->errf), cc->err_mark) == 0) {
        fseek(im->errf, cc->err_mark, SEEK_SET);
    }
    record_issues(im, cc->lines, cc->n, skipped);
    uint64_t stored0 = im->stored, rejected0 = im->rejected;
    im->stored += cc->n - n_skipped;
    im->rejected += n_skipped;
    json_t *c = cursor_doc(im, cc->eof);
    im->stored = stored0;
    im->rejected = rejected0;
    return c;
}

static int chunked(struct importer *im)
{
    uint64_t *lines = sd_malloc(CHUNK * sizeof(uint64_t));
    int r = 0;
    bool eof = false;
    while (!eof) {
        if (im->ctx->stop && atomic_load(im->ctx->stop)) {
            r = sd_connector_fail(im->ctx, -ECANCELED,
                                  "stopped in %s after row %llu; the next "
                                  "run resumes there",
                                  im->name, (unsigned long long)im->rows);
            break;
        }
        json_t *body = NULL;
        size_t n = 0;
        read_chunk(im, &body, lines, &n, &eof);
        fflush(im->errf);
        struct chunk_ctx cc = {
            .im = im, .lines = lines, .n = n, .err_mark = ftell(im->errf), .eof = eof};
        struct sd_ingest_outcome out;
        sd_ingest_outcome_init_limit(&out, CHUNK * 4);
        r = sd_connector_commit_fn(im->ctx, body, chunk_cursor, &cc, true, &out);
        if (r == 0 && out.status == 202) {
            im->stored += out.n_events + out.n_customers + out.n_sales;
            im->unchanged += out.n_unchanged;
            im->rejected += out.n_skipped;
        } else if (r == 0) {
            r = sd_connector_fail(im->ctx, -EINVAL, "%s: rows refused as a whole: %s %s", im->name,
                                  out.errors.n ? out.errors.items[0].pointer : "",
                                  out.errors.n ? out.errors.items[0].message : "");
        }
        if (r < 0) {
            /* Nothing of this chunk is stored: forget its error rows too. */
            fflush(im->errf);
            if (ftruncate(fileno(im->errf), cc.err_mark) == 0) {
                fseek(im->errf, cc.err_mark, SEEK_SET);
            }
        }
        sd_ingest_outcome_release(&out);
        json_decref(body);
        if (r < 0) {
            break;
        }
    }
    free(lines);
    return r;
}

/* Modes for what the hub creates in the drop folder: processed/ and failed/ get the folder's
 * own mode and the acks and error lists its read/write bits, so the SFTP user who can read the
 * folder can read them too (the process umask is 077 for the data directory). */
static mode_t folder_mode(const char *dir, bool for_dir)
{
    struct stat st;
    mode_t m = stat(dir, &st) == 0 ? (st.st_mode & 0777) : 0700;
    return for_dir ? m : (m & 0666);
}

static int move_into(const char *dir, const char *sub, const char *name, const char *from,
                     char **ret_path)
{
    char *d = sd_asprintf("%s/%s", dir, sub);
    if (mkdir(d, 0700) == 0) {
        /* Through an fd opened without following links: never chmod what a symlink names. */
        int dfd = open(d, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fchmod(dfd, folder_mode(dir, true));
            close(dfd);
        }
    }
    char *to = sd_asprintf("%s/%s", d, name);
    struct stat st;
    if (stat(to, &st) == 0) {
        /* A file of that name was processed before: keep both. */
        free(to);
        to = sd_asprintf("%s/%s.%lld", d, name, (long long)(sd_now_usec() / 1000000));
    }
    int r = rename(from, to) == 0 ? 0 : -errno;
    free(d);
    if (ret_path && r == 0) {
        *ret_path = to;
    } else {
        free(to);
    }
    return r;
}

static int write_file(const char *path, const char *text, mode_t mode)
{
    char *tmp = sd_asprintf("%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int r = 0;
    if (fd < 0) {
        r = -errno;
    } else {
        size_t len = strlen(text);
        if (fchmod(fd, mode) != 0 || write(fd, text, len) != (ssize_t)len || fsync(fd) != 0) {
            r = -EIO;
        }
        close(fd);
        if (r == 0 && rename(tmp, path) != 0) {
            r = -errno;
        }
    }
    if (r < 0) {
        unlink(tmp);
    }
    free(tmp);
    return r;
}

/* Copy the errors list (open, read from its start) to path, through a temporary name. */
static int copy_errors(FILE *from, const char *path, mode_t mode)
{
    char *tmp = sd_asprintf("%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int r = fd < 0 ? -errno : 0;
    if (r == 0 && (fchmod(fd, mode) != 0 || fseek(from, 0, SEEK_SET) != 0)) {
        r = -EIO;
    }
    char buf[65536];
    size_t n;
    while (r == 0 && (n = fread(buf, 1, sizeof(buf), from)) > 0) {
        if (write(fd, buf, n) != (ssize_t)n) {
            r = -EIO;
        }
    }
    if (r == 0 && (ferror(from) || fsync(fd) != 0)) {
        r = -EIO;
    }
    if (fd >= 0) {
        close(fd);
    }
    if (r == 0 && rename(tmp, path) != 0) {
        r = -errno;
    }
    if (r < 0) {
        unlink(tmp);
    }
    free(tmp);
    return r;
}

static json_t *now_text(void)
{
    time_t t = (time_t)(sd_now_usec() / 1000000);
    struct tm tm;
    char buf[32] = "";
    if (gmtime_r(&t, &tm)) {
        strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    return json_string(buf);
}

/* Move the file and write its acknowledgement (and errors.csv). */
static int finish(struct importer *im, bool failed, int64_t started,
                  struct sd_csv_import_result *res)
{
    char *moved = NULL;
    int r = move_into(im->dir, failed ? "failed" : "processed", im->name, im->path, &moved);
    if (r < 0) {
        return sd_connector_fail(im->ctx, r, "%s: cannot move it to %s/: %s", im->name,
                                 failed ? "failed" : "processed", strerror(-r));
    }
    fflush(im->errf);
    long errbytes = ftell(im->errf);
    char *errors_name = NULL;
    if (errbytes > (long)strlen("line,column,message\n")) {
        char *to = sd_asprintf("%s.errors.csv", moved);
        mode_t mode = folder_mode(im->dir, false);
        (void)fchmod(fileno(im->errf), mode);
        /* The work folder (data directory) and the drop folder are often on different file
         * systems: then the list is copied (EXDEV). */
        if (rename(im->err_path, to) == 0 ||
            (errno == EXDEV && copy_errors(im->errf, to, mode) == 0)) {
            const char *slash = strrchr(to, '/');
            errors_name = sd_strdup(slash ? slash + 1 : to);
        }
        free(to);
    }
    /* Counted into the run: rows the store never saw (skip_rows commits count the rest), or
     * every refused row of a file that was refused as a whole. */
    if (!res->already) {
        im->ctx->records_rejected += im->skip_rows ? im->rejected_here : im->rejected;
    }
    res->rows_read = im->rows;
    res->records_stored = failed ? 0 : im->stored;
    res->records_rejected = im->rejected;
    res->duration_ms = (sd_now_usec() - started) / 1000;
    res->failed = failed;
    json_t *ack = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:s?, s:s?, s:o, s:s}",
                            "file", im->name, "status", failed ? "failed" : "processed", "kind",
                            sd_kind_array_name(im->kind), "sha256", im->sha, "rows_read",
                            (json_int_t)im->rows, "records_stored", (json_int_t)res->records_stored,
                            "records_unchanged", (json_int_t)im->unchanged, "records_rejected",
                            (json_int_t)im->rejected, "duration_ms", (json_int_t)res->duration_ms,
                            "errors_file", errors_name, "error", im->fatal ? im->fatal_msg : NULL,
                            "finished_at", now_text(), "connector_id", im->ctx->id);
    char *text = json_dumps(ack, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    char *ack_path = sd_asprintf("%s.ack.json", moved);
    r = write_file(ack_path, text, folder_mode(im->dir, false));
    free(ack_path);
    free(text);
    json_decref(ack);
    free(errors_name);
    free(moved);
    if (r < 0) {
        return sd_connector_fail(im->ctx, r, "%s: cannot write its acknowledgement", im->name);
    }
    return 0;
}

static char delimiter_setting(const char *v)
{
    return strcmp(v, "comma") == 0       ? ','
           : strcmp(v, "semicolon") == 0 ? ';'
           : strcmp(v, "tab") == 0       ? '\t'
                                         : 0;
}

int sd_csv_import_file(struct sd_connector_ctx *ctx, const char *dir, const char *name,
                       struct sd_csv_import_result *res)
{
    memset(res, 0, sizeof(*res));
    int64_t started = sd_now_usec();
    struct importer im = {.ctx = ctx, .dir = dir, .name = name, .fd = -1};
    im.path = sd_asprintf("%s/%s", dir, name);
    im.skip_rows = strcmp(setting(ctx, "policy"), "skip_rows") == 0;
    im.copt.delimiter = delimiter_setting(setting(ctx, "delimiter"));
    im.copt.encoding =
        strcmp(setting(ctx, "encoding"), "windows-1252") == 0 ? SD_CSV_CP1252 : SD_CSV_UTF8;
    const char *ks = setting(ctx, "kind");
    int kind = strcmp(ks, "events") == 0      ? SD_KIND_EVENT
               : strcmp(ks, "customers") == 0 ? SD_KIND_CUSTOMER
               : strcmp(ks, "sales") == 0     ? SD_KIND_SALE
                                              : kind_of_name(name);
    im.err_path = sd_asprintf("%s/%s.errors.csv.part", ctx->work_dir, name);
    int r = 0;
    im.errf = fopen(im.err_path, "a+");
    if (!im.errf) {
        r = sd_connector_fail(ctx, -errno, "cannot write %s", im.err_path);
        goto out;
    }
    im.fd = open(im.path, O_RDONLY | O_CLOEXEC);
    if (im.fd < 0) {
        r = sd_connector_fail(ctx, -errno, "%s: cannot open: %s", name, strerror(errno));
        goto out;
    }
    if ((r = sd_sha256_fd(im.fd, im.sha)) < 0) {
        r = sd_connector_fail(ctx, r, "%s: cannot read", name);
        goto out;
    }
    /* Where did we leave this file? The same content under another name is a new delivery
     * (re-sent by the venue): it is imported again, which stores nothing twice (upsert) and
     * says so in its ack (records_unchanged). */
    const json_t *c = ctx->cursor;
    bool same = json_is_object(c) &&
                strcmp(json_string_value(json_object_get(c, "sha256")) ?: "", im.sha) == 0 &&
                strcmp(json_string_value(json_object_get(c, "file")) ?: "", name) == 0;
    if (same && json_is_true(json_object_get(c, "done"))) {
        /* Stored before a crash cut the acknowledgement short: acknowledge only. */
        im.kind = kind < 0 ? SD_KIND_SALE : (enum sd_kind)kind;
        im.rows = (uint64_t)json_integer_value(json_object_get(c, "rows"));
        im.stored = (uint64_t)json_integer_value(json_object_get(c, "stored"));
        im.rejected = (uint64_t)json_integer_value(json_object_get(c, "rejected"));
        im.unchanged = (uint64_t)json_integer_value(json_object_get(c, "unchanged"));
        res->already = true;
        r = finish(&im, false, started, res);
        goto out;
    }
    if (!same || !im.skip_rows) {
        /* A fresh start: errors.csv starts empty. */
        if (ftruncate(fileno(im.errf), 0) != 0) {
            r = sd_connector_fail(ctx, -EIO, "cannot reset %s", im.err_path);
            goto out;
        }
        rewind(im.errf);
        fputs("line,column,message\n", im.errf);
    }
    if (kind < 0) {
        im.kind = SD_KIND_SALE;
        bad_row(&im, 0, "",
                "cannot tell the kind of records from the file name: name it "
                "events*.csv, customers*.csv or sales*.csv, or set the connector's "
                "kind");
        im.fatal = -EINVAL;
        snprintf(im.fatal_msg, sizeof(im.fatal_msg), "unknown kind of file");
        r = finish(&im, true, started, res);
        goto out;
    }
    im.kind = (enum sd_kind)kind;
    r = read_header(&im);
    if (r < 0) {
        /* An unreadable header refuses the file (it stays readable for the operator). */
        im.fatal = r;
        snprintf(im.fatal_msg, sizeof(im.fatal_msg), "%s", ctx->error ? ctx->error : "bad header");
        bad_row(&im, 1, "", im.fatal_msg);
        free(ctx->error);
        ctx->error = NULL;
        r = finish(&im, true, started, res);
        goto out;
    }
    if (im.skip_rows && same) {
        /* Resume after the last committed chunk. */
        im.rows = (uint64_t)json_integer_value(json_object_get(c, "rows"));
        im.stored = (uint64_t)json_integer_value(json_object_get(c, "stored"));
        im.rejected = (uint64_t)json_integer_value(json_object_get(c, "rejected"));
        im.unchanged = (uint64_t)json_integer_value(json_object_get(c, "unchanged"));
        long eb = (long)json_integer_value(json_object_get(c, "errors_bytes"));
        fflush(im.errf);
        if (eb > 0 && ftruncate(fileno(im.errf), eb) == 0) {
            fseek(im.errf, eb, SEEK_SET);
        }
        r = open_reader(&im, (uint64_t)json_integer_value(json_object_get(c, "offset")),
                        (uint64_t)json_integer_value(json_object_get(c, "line")));
        if (r < 0) {
            goto out;
        }
    }
    if (im.skip_rows) {
        r = chunked(&im);
        if (r < 0) {
            goto out;
        }
        r = finish(&im, im.fatal != 0 && im.stored == 0, started, res);
    } else {
        r = sd_connector_write_job(ctx, whole_file_job, &im);
        if (r < 0) {
            if (r == -ECANCELED) {
                sd_connector_fail(ctx, r,
                                  "stopped while importing %s; the next run starts it "
                                  "again",
                                  name);
            } else {
                sd_connector_fail(ctx, r, "storing %s failed", name);
            }
            goto out;
        }
        bool failed = im.rejected > 0 || im.fatal;
        r = finish(&im, failed, started, res);
    }
out:
    if (im.errf) {
        fclose(im.errf);
        unlink(im.err_path);
    }
    if (im.fd >= 0) {
        close(im.fd);
    }
    sd_csv_free(im.rd);
    for (size_t i = 0; i < im.nh; i++) {
        free(im.header[i]);
    }
    free(im.header);
    free(im.err_path);
    free(im.path);
    return r;
}
