/* csv_import.c — one CSV file into the hub (see csv_import.h).
 *
 * Two policies, one reader (csv_chunks.c: a thread that reads, maps and validates chunks of
 * 1,000 rows ahead of the store, so the writer thread only stores). Rows are written in
 * bounded write jobs (at most JOB_ROWS rows, and about JOB_USEC of storing when other writes
 * wait), so the writer takes other writes — webhook requests — between them; each job commits the
 * cursor (byte offset and line after its rows, counters, and the size errors.csv had then), so a
 * crash resumes after the last commit and errors.csv is cut back to match.
 *  - reject_file runs in two phases. CHECK reads, maps and validates the whole file and checks
 *    every sale's references against the committed data (sd_connector_check_sale_refs, a read:
 *    no write job); errors.csv lists every bad row, and a file with any is refused having
 *    written nothing. PUBLISH then stores the file in bounded jobs with the cursor
 *    {"phase": "publishing", "done": false, offset, …}; a crash resumes the publish where it
 *    stopped (upserts make a redone chunk harmless), never checks or refuses it again, and the
 *    last job commits "done": true. Readers may see the file's rows appear over the publish;
 *    change cursors see each once, in seq order, as for any commits.
 *    A row the store refuses during the publish — what the check saw changed meanwhile (an
 *    event deleted, a webhook storing the same invoice) — undoes its job and stops the
 *    publish there: the file stays in the drop folder, the run fails naming the row, and the
 *    next run resumes the publish at that job once the reference is back. A file is thus never
 *    half stored and never refused after it started publishing.
 *    When acceptance depends on more than references (a refund record, an invoice already
 *    stored with other content, an invoice twice in the file: the lifecycle rules judge those
 *    while storing), the check cannot decide alone: such a file is stored as before, the whole
 *    file in one write job (one savepoint) that any refused row undoes.
 *  - skip_rows: the same bounded jobs from the start; refused rows are listed and left out.
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
#include "base/fault.h"
#include "connectors/csv_drop/csv_chunks.h"
#include "formats/csv_reader.h"
#include "mapping/mapping.h"

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

/* Records per chunk handed from the reading thread to the store: bounds memory (three chunks
 * exist at a time). */
#define CHUNK_ROWS 1000
/* One write job (one commit, with the position after its rows) stores chunks until it holds
 * JOB_ROWS rows, or, once it has stored for JOB_USEC, as soon as other writes wait for it (at
 * least one chunk). Every other write — a webhook request — waits for the job in progress and
 * its commit, so JOB_USEC bounds that wait (the webhook is specified as real time, < 1 s). It
 * is a trade: a commit writes every index page its rows touched, and sales of random customers
 * touch about one page of each random-order index per row until a job holds more rows than the
 * index has pages (at a million sales, tens of thousands). Jobs of 5,000 rows or 100 ms, and of
 * 300 ms, wrote 18-26 GB for a million rows and took 4-10 times as long as one job, and the
 * webhook still waited 0.5-2 s for their commits (bench/README.md). So jobs end for waiting
 * writes only after JOB_USEC, and grow to JOB_ROWS when nothing waits. */
#define JOB_ROWS 100000
#define JOB_USEC 500000
#define SLOW_CHUNK_USEC 80000 /* fault point csv_slow_chunk: 8 s per JOB_ROWS */

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
    struct sd_csv_chunks *chunks; /* the reading thread, while rows are read */
    char **header;
    size_t nh;
    char *err_path; /* errors.csv being written, in the work folder */
    FILE *errf;
    uint64_t rows, stored, rejected, unchanged;
    bool mark_acked;         /* mark the cursor "acked" once the local ack is written */
    bool publishing;         /* reject_file after its check: bounded jobs, "phase" in cursor */
    uint64_t rows_committed; /* rows read up to the last commit of a bounded job */
    uint64_t body_offset, body_line; /* the reader's position after the header row */
    uint64_t offset, line;           /* reader position after the last chunk taken */
    int fatal;                       /* a structural error ended the file */
    char fatal_msg[300];
};

/* Take the next chunk from the reading thread: its refused rows go to errors.csv and its
 * counters and position become the importer's. NULL after the last one. */
static struct sd_csv_chunk *take_chunk(struct importer *im)
{
    struct sd_csv_chunk *ch = sd_csv_chunks_next(im->chunks);
    if (!ch) {
        return NULL;
    }
    if (ch->errs_len > 0) {
        fwrite(ch->errs, 1, ch->errs_len, im->errf);
    }
    im->rows = ch->rows_end;
    im->rejected += ch->rejected;
    im->offset = ch->offset_end;
    im->line = ch->line_end;
    if (ch->fatal && !im->fatal) {
        im->fatal = ch->fatal;
        sd_utf8_snprintf(im->fatal_msg, sizeof(im->fatal_msg), "%s", ch->fatal_msg);
    }
    atomic_store(im->ctx->progress, im->rows);
    return ch;
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
    sd_csv_position(im->rd, &im->body_offset, &im->body_line);
    return 0;
}

static json_t *cursor_doc(struct importer *im, bool done)
{
    fflush(im->errf);
    long errbytes = ftell(im->errf);
    char delim[2] = {im->copt.delimiter, 0};
    json_t *c = json_pack(
        "{s:s, s:s, s:b, s:I, s:I, s:s, s:I, s:I, s:I, s:I, s:I}", "file", im->name, "sha256",
        im->sha, "done", done, "offset", (json_int_t)im->offset, "line", (json_int_t)im->line,
        "delimiter", delim, "rows", (json_int_t)im->rows, "stored", (json_int_t)im->stored,
        "rejected", (json_int_t)im->rejected, "unchanged", (json_int_t)im->unchanged,
        "errors_bytes", (json_int_t)(errbytes < 0 ? 0 : errbytes));
    if (im->publishing) {
        json_object_set_new(c, "phase", json_string("publishing"));
    }
    return c;
}

/* The records of b whose index is not marked bad, sharing b's strings (free only the arrays). */
static struct sd_batch batch_without(const struct sd_batch *b, const bool *bad)
{
    struct sd_batch v = *b;
    v.events = sd_calloc(b->n_events + 1, sizeof(*v.events));
    v.customers = sd_calloc(b->n_customers + 1, sizeof(*v.customers));
    v.sales = sd_calloc(b->n_sales + 1, sizeof(*v.sales));
    v.n_events = v.n_customers = v.n_sales = 0;
    for (size_t i = 0; i < b->n_events; i++) {
        if (!bad[b->events[i].index]) {
            v.events[v.n_events++] = b->events[i];
        }
    }
    for (size_t i = 0; i < b->n_customers; i++) {
        if (!bad[b->customers[i].index]) {
            v.customers[v.n_customers++] = b->customers[i];
        }
    }
    for (size_t i = 0; i < b->n_sales; i++) {
        if (!bad[b->sales[i].index]) {
            v.sales[v.n_sales++] = b->sales[i];
        }
    }
    return v;
}

/* One validated chunk inside a write job. The store checks references record by record, so a
 * chunk refused for one row says nothing yet about the others: each attempt runs in its own
 * savepoint, the rows it names go to errors.csv, and the chunk is stored again without them
 * until it is accepted. Adds to im->stored, im->unchanged and im->rejected; *ret_refused is how
 * many rows the store refused. */
static int store_chunk(struct importer *im, struct sd_connector_job *job, struct sd_csv_chunk *ch,
                       uint64_t *ret_refused)
{
    size_t n = ch->n;
    bool *bad = sd_calloc(n + 1, sizeof(bool));
    bool *hit = sd_calloc(n + 1, sizeof(bool));
    uint64_t refused = 0;
    int r = 0;
    for (;;) {
        struct sd_batch view = batch_without(&ch->batch, bad);
        size_t m = sd_batch_count(&view);
        struct sd_ingest_outcome out;
        sd_ingest_outcome_init_limit(&out, n * 4 + 16);
        r = m > 0 ? sd_connector_job_ingest_batch(job, &view, &out) : 0;
        free(view.events);
        free(view.customers);
        free(view.sales);
        if (r < 0 || m == 0) {
            sd_ingest_outcome_release(&out);
            break;
        }
        if (out.status == 202) {
            /* records_stored counts what changed: a sale already stored as is is unchanged. */
            im->stored += m - (out.n_unchanged < m ? out.n_unchanged : m);
            im->unchanged += out.n_unchanged;
            sd_ingest_outcome_release(&out);
            break;
        }
        /* Pointers name records by their index in the validated body, which is where their
         * line is kept. */
        memset(hit, 0, (n + 1) * sizeof(bool));
        uint64_t newly =
            sd_csv_record_issues(im->errf, im->chunks, ch->lines, n, &out.errors, hit);
        sd_ingest_outcome_release(&out);
        if (newly == 0) {
            /* Refused without naming a row: none of the rest can be stored. */
            refused += m;
            break;
        }
        refused += newly;
        for (size_t j = 0; j < n; j++) {
            bad[j] = bad[j] || hit[j];
        }
    }
    free(bad);
    free(hit);
    im->rejected += refused;
    *ret_refused = refused;
    return r;
}

/* reject_file: the whole file inside one write job (one savepoint); the reading thread
 * validates ahead, so the writer only stores. */
static int whole_file_job(struct sd_connector_job *job, void *arg)
{
    struct importer *im = arg;
    int r = 0;
    struct sd_csv_chunk *ch;
    while ((ch = take_chunk(im)) != NULL) {
        if (im->ctx->stop && atomic_load(im->ctx->stop)) {
            sd_csv_chunks_done(im->chunks, ch);
            r = -ECANCELED;
            break;
        }
        uint64_t refused = 0;
        if (ch->validated && ch->n > 0) {
            r = store_chunk(im, job, ch, &refused);
        }
        sd_csv_chunks_done(im->chunks, ch);
        if (r < 0) {
            break;
        }
    }
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

/* A bounded write job (JOB_ROWS, JOB_USEC), committed with the position after its rows (and
 * errors.csv's size then), so a crash resumes after the last commit. skip_rows lists refused
 * rows and stores the rest; a publish (checked before) undoes the job at the first refused
 * row and stops there (refused names it). */
struct bounded_group {
    struct importer *im;
    bool eof;
    bool refused;
    uint64_t refused_line;
    char refused_msg[300];
};

/* Publish: one store attempt of a checked chunk; a refusal is the group's end. */
static int publish_chunk(struct importer *im, struct sd_connector_job *job, struct sd_csv_chunk *ch,
                         struct bounded_group *g)
{
    struct sd_ingest_outcome out;
    sd_ingest_outcome_init_limit(&out, 16);
    size_t m = sd_batch_count(&ch->batch);
    int r = sd_connector_job_ingest_batch(job, &ch->batch, &out);
    if (r == 0 && out.status == 202) {
        im->stored += m - (out.n_unchanged < m ? out.n_unchanged : m);
        im->unchanged += out.n_unchanged;
    } else if (r == 0) {
        g->refused = true;
        const char *msg = out.errors.n ? out.errors.items[0].message : "refused by the store";
        const char *p = out.errors.n ? out.errors.items[0].pointer : "";
        const char *q = p[0] == '/' ? strchr(p + 1, '/') : NULL;
        unsigned long long idx = q ? strtoull(q + 1, NULL, 10) : 0;
        const char *col = q ? strchr(q + 1, '/') : NULL;
        g->refused_line = q && idx < ch->n ? ch->lines[idx] : 0;
        sd_utf8_snprintf(g->refused_msg, sizeof(g->refused_msg), "%s%s%s", col ? col + 1 : "",
                         col ? ": " : "", msg);
    }
    sd_ingest_outcome_release(&out);
    return r;
}

static int bounded_job(struct sd_connector_job *job, void *arg)
{
    struct bounded_group *g = arg;
    struct importer *im = g->im;
    uint64_t rows0 = im->rows;
    int64_t t0 = sd_now_usec();
    struct sd_csv_chunk *ch;
    while (im->rows - rows0 < JOB_ROWS &&
           (im->rows == rows0 || sd_now_usec() - t0 < JOB_USEC ||
            !sd_connector_job_others_waiting(job)) &&
           (ch = take_chunk(im)) != NULL) {
        uint64_t refused = 0;
        int r = 0;
        if (ch->validated && ch->n > 0) {
            r = im->publishing ? publish_chunk(im, job, ch, g) : store_chunk(im, job, ch, &refused);
        }
        sd_connector_job_reject(job, ch->rejected + refused);
        if (sd_fault_hit("csv_slow_chunk")) {
            /* Test hook: every chunk of a write job takes SLOW_CHUNK_USEC more, holding the
             * write lock as a slow disk would, so that a job of JOB_ROWS outlasts the store's
             * wait bound for the write lock unless it ends early for waiting writes. */
            (void)sd_connector_wait(im->ctx, SLOW_CHUNK_USEC);
        }
        g->eof = ch->eof;
        sd_csv_chunks_done(im->chunks, ch);
        if (r < 0) {
            return r;
        }
        if (g->refused) {
            return 1; /* undo this job: the cursor stays before it */
        }
        if (g->eof || (im->ctx->stop && atomic_load(im->ctx->stop))) {
            break;
        }
    }
    json_t *cur = cursor_doc(im, g->eof);
    int r = sd_connector_job_cursor(job, cur);
    json_decref(cur);
    return r;
}

/* Test hook (STAGEDOOR_FAULT, base/fault.h): "csv_publish_exit:N" ends the process right after
 * the Nth bounded job of a publish committed, as a kill -9 would. */
static void publish_fault(struct importer *im)
{
    if (im->publishing && sd_fault_hit("csv_publish_exit")) {
        _exit(99);
    }
}

/* Test hook "csv_after_check": a sales file passed its check and nothing of it is written yet:
 * say so in WORK/fault-csv-checked, then wait (at most a minute) for WORK/fault-csv-go. */
static void check_fault(struct importer *im)
{
    if (im->kind != SD_KIND_SALE || !sd_fault_hit("csv_after_check")) {
        return;
    }
    char *checked = sd_asprintf("%s/fault-csv-checked", im->ctx->work_dir);
    char *go = sd_asprintf("%s/fault-csv-go", im->ctx->work_dir);
    int fd = open(checked, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) {
        close(fd);
    }
    for (int i = 0; i < 1200 && access(go, F_OK) != 0; i++) {
        if (sd_connector_wait(im->ctx, 50000) < 0) {
            break;
        }
    }
    unlink(go);
    unlink(checked);
    free(go);
    free(checked);
}

static int bounded_import(struct importer *im)
{
    struct bounded_group g = {.im = im};
    while (!g.eof) {
        if (im->ctx->stop && atomic_load(im->ctx->stop)) {
            return sd_connector_fail(im->ctx, -ECANCELED,
                                     "stopped in %s after row %llu; the next run resumes there",
                                     im->name, (unsigned long long)im->rows_committed);
        }
        fflush(im->errf);
        long err_mark = ftell(im->errf);
        int r = sd_connector_write_job(im->ctx, bounded_job, &g);
        if (r < 0 || g.refused) {
            /* Nothing of these rows is stored: forget their error rows too. */
            fflush(im->errf);
            if (err_mark >= 0 && ftruncate(fileno(im->errf), err_mark) == 0) {
                fseek(im->errf, err_mark, SEEK_SET);
            }
        }
        if (r < 0) {
            return sd_connector_fail(im->ctx, r, "storing %s failed after row %llu: %s", im->name,
                                     (unsigned long long)im->rows_committed, strerror(-r));
        }
        if (g.refused) {
            return sd_connector_fail(
                im->ctx, -EAGAIN,
                "%s: line %llu: %s; the file passed its check but this changed before it was "
                "stored: the file stays, its first %llu rows stored, and the next run goes on "
                "from there once it is fixed",
                im->name, (unsigned long long)g.refused_line, g.refused_msg,
                (unsigned long long)im->rows_committed);
        }
        im->rows_committed = im->rows;
        publish_fault(im);
    }
    return 0;
}

/* Start the reading thread on im->rd (after the header, or at the resume point). */
static int start_reading(struct importer *im)
{
    struct sd_csv_chunks_options o = {.reader = im->rd,
                                      .kind = im->kind,
                                      .mapping = im->ctx->mapping,
                                      .header = (const char *const *)im->header,
                                      .n_header = im->nh,
                                      .chunk_rows = CHUNK_ROWS,
                                      .validate = true,
                                      .rows_before = im->rows};
    sd_csv_position(im->rd, &im->offset, &im->line);
    int r = sd_csv_chunks_start(&o, &im->chunks);
    if (r < 0) {
        return sd_connector_fail(im->ctx, r, "%s: cannot start reading", im->name);
    }
    return 0;
}

/* Invoice numbers seen in a file, as 64-bit hashes (open addressing, 0 = a free slot; at most
 * INVOICE_SET_MAX slots, 32 MiB: 2 million rows): an invoice twice in one file is a change of a
 * sale, which the lifecycle rules judge while storing. A collision, or a file with more sales
 * than the set holds, only sends the file the whole-file way. */
#define INVOICE_SET_MAX ((size_t)1 << 22)
struct invoice_set {
    uint64_t *slot;
    size_t cap, n; /* cap: 0 or a power of two */
};

static uint64_t invoice_hash(const char *k)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *k; k++) {
        h = (h ^ (unsigned char)*k) * 1099511628211ULL;
    }
    return h ? h : 1;
}

static void invoice_set_put(struct invoice_set *s, uint64_t h)
{
    size_t i = (size_t)h & (s->cap - 1);
    while (s->slot[i] && s->slot[i] != h) {
        i = (i + 1) & (s->cap - 1);
    }
    s->n += s->slot[i] == 0;
    s->slot[i] = h;
}

/* Adds inv; true if it was there already (or may have been: the set is full). */
static bool invoice_set_add(struct invoice_set *s, const char *inv)
{
    if (2 * (s->n + 1) > s->cap) {
        if (s->cap >= INVOICE_SET_MAX) {
            return true;
        }
        struct invoice_set old = *s;
        s->cap = old.cap ? old.cap * 2 : 4096;
        s->slot = sd_calloc(s->cap, sizeof(*s->slot));
        s->n = 0;
        for (size_t i = 0; i < old.cap; i++) {
            if (old.slot[i]) {
                invoice_set_put(s, old.slot[i]);
            }
        }
        free(old.slot);
    }
    uint64_t h = invoice_hash(inv);
    size_t i = (size_t)h & (s->cap - 1);
    while (s->slot[i]) {
        if (s->slot[i] == h) {
            return true;
        }
        i = (i + 1) & (s->cap - 1);
    }
    invoice_set_put(s, h);
    return false;
}

static int finish(struct importer *im, bool failed, int64_t started,
                  struct sd_csv_import_result *res);

/* reject_file when storing must judge rows: the whole file in one write job, as checked
 * (im->rd after the header). */
static int whole_file_import(struct importer *im, int64_t started, struct sd_csv_import_result *res)
{
    int r = start_reading(im);
    if (r < 0) {
        return r;
    }
    r = sd_connector_write_job(im->ctx, whole_file_job, im);
    if (r < 0) {
        if (r == -ECANCELED) {
            return sd_connector_fail(
                im->ctx, r, "stopped while importing %s; the next run starts it again", im->name);
        }
        return sd_connector_fail(im->ctx, r, "storing %s failed", im->name);
    }
    return finish(im, im->rejected > 0 || im->fatal, started, res);
}

/* reject_file, phase one: read, map and validate the whole file and check its sales'
 * references against the committed data, writing nothing; every bad row goes to errors.csv
 * (im->rejected). *ret_needs_writer: storing must judge some rows (see the top of the file). */
static int check_file(struct importer *im, bool *ret_needs_writer)
{
    struct invoice_set seen = {0};
    int r = start_reading(im);
    struct sd_csv_chunk *ch;
    while (r == 0 && (ch = take_chunk(im)) != NULL) {
        if (im->ctx->stop && atomic_load(im->ctx->stop)) {
            sd_csv_chunks_done(im->chunks, ch);
            r = sd_connector_fail(im->ctx, -ECANCELED,
                                  "stopped while checking %s; the next run checks it again",
                                  im->name);
            break;
        }
        if (ch->validated && ch->batch.n_sales > 0) {
            for (size_t i = 0; i < ch->batch.n_sales; i++) {
                if (invoice_set_add(&seen, ch->batch.sales[i].invoice_number)) {
                    *ret_needs_writer = true;
                }
            }
            struct sd_issues errs;
            sd_issues_init(&errs, ch->n * 4 + 16);
            r = sd_connector_check_sale_refs(im->ctx, &ch->batch, &errs, ret_needs_writer);
            if (r > 0 || errs.n > 0) {
                im->rejected +=
                    sd_csv_record_issues(im->errf, im->chunks, ch->lines, ch->n, &errs, NULL);
            }
            sd_issues_release(&errs);
            if (r < 0) {
                r = sd_connector_fail(im->ctx, r, "%s: cannot check its references", im->name);
            } else {
                r = 0;
            }
        }
        sd_csv_chunks_done(im->chunks, ch);
    }
    sd_csv_chunks_stop(im->chunks);
    im->chunks = NULL;
    free(seen.slot);
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

/* Where a finished file goes: dir/sub/, opened without following links. The drop folder is the
 * venue's to write in, so processed/ or failed/ may be a symbolic link it planted; the hub then
 * refuses to move anything rather than write where the link points (every step below is
 * relative to the opened folder, so swapping the folder for a link later changes nothing). */
struct dest {
    int fd;     /* dir/sub */
    char *name; /* the file's name there */
    char *path; /* dir/sub/name, for messages and the result */
};

static void dest_release(struct dest *d)
{
    if (d->fd >= 0) {
        close(d->fd);
    }
    free(d->name);
    free(d->path);
    *d = (struct dest){.fd = -1};
}

static int move_into(const char *dir, const char *sub, const char *name, const char *from,
                     struct dest *ret)
{
    *ret = (struct dest){.fd = -1};
    char *d = sd_asprintf("%s/%s", dir, sub);
    bool made = mkdir(d, 0700) == 0;
    int fd = open(d, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    free(d);
    if (fd < 0) {
        return errno == ELOOP || errno == ENOTDIR ? -ELOOP : -errno;
    }
    if (made) {
        (void)fchmod(fd, folder_mode(dir, true));
    }
    char *to = sd_strdup(name);
    struct stat st;
    if (fstatat(fd, to, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        /* A file of that name was processed before: keep both. */
        free(to);
        to = sd_asprintf("%s.%lld", name, (long long)(sd_now_usec() / 1000000));
    }
    if (renameat(AT_FDCWD, from, fd, to) != 0) {
        int e = -errno;
        close(fd);
        free(to);
        return e;
    }
    ret->fd = fd;
    ret->name = to;
    ret->path = sd_asprintf("%s/%s/%s", dir, sub, to);
    return 0;
}

/* Write text to dfd/name through a temporary name (never following a link there). */
static int write_file(int dfd, const char *name, const char *text, mode_t mode)
{
    char *tmp = sd_asprintf(".%s.tmp", name);
    (void)unlinkat(dfd, tmp, 0);
    int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    int r = 0;
    if (fd < 0) {
        r = -errno;
    } else {
        size_t len = strlen(text);
        if (fchmod(fd, mode) != 0 || write(fd, text, len) != (ssize_t)len || fsync(fd) != 0) {
            r = -EIO;
        }
        close(fd);
        if (r == 0 && renameat(dfd, tmp, dfd, name) != 0) {
            r = -errno;
        }
    }
    if (r < 0) {
        (void)unlinkat(dfd, tmp, 0);
    }
    free(tmp);
    return r;
}

/* Copy the errors list (open, read from its start) to dfd/name, through a temporary name. */
static int copy_errors(FILE *from, int dfd, const char *name, mode_t mode)
{
    char *tmp = sd_asprintf(".%s.tmp", name);
    (void)unlinkat(dfd, tmp, 0);
    int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
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
    if (r == 0 && renameat(dfd, tmp, dfd, name) != 0) {
        r = -errno;
    }
    if (r < 0) {
        (void)unlinkat(dfd, tmp, 0);
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
    struct dest to;
    const char *sub = failed ? "failed" : "processed";
    int r = move_into(im->dir, sub, im->name, im->path, &to);
    if (r == -ELOOP) {
        return sd_connector_fail(im->ctx, r,
                                 "%s: %s/ in the drop folder is not a folder (a symbolic link?); "
                                 "nothing is moved there",
                                 im->name, sub);
    }
    if (r < 0) {
        return sd_connector_fail(im->ctx, r, "%s: cannot move it to %s/: %s", im->name, sub,
                                 strerror(-r));
    }
    fflush(im->errf);
    long errbytes = ftell(im->errf);
    char *errors_name = NULL;
    if (errbytes > (long)strlen("line,column,message\n")) {
        char *en = sd_asprintf("%s.errors.csv", to.name);
        mode_t mode = folder_mode(im->dir, false);
        (void)fchmod(fileno(im->errf), mode);
        /* The work folder (data directory) and the drop folder are often on different file
         * systems: then the list is copied (EXDEV). */
        if (renameat(AT_FDCWD, im->err_path, to.fd, en) == 0 ||
            (errno == EXDEV && copy_errors(im->errf, to.fd, en, mode) == 0)) {
            errors_name = sd_strdup(en);
            snprintf(res->errors_path, sizeof(res->errors_path), "%s/%s/%s", im->dir, sub, en);
        }
        free(en);
    }
    /* Counted into the run: every refused row of a file refused as a whole (skip_rows counts
     * its refused rows with each commit). */
    if (!res->already) {
        im->ctx->records_rejected += im->skip_rows ? 0 : im->rejected;
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
    char *ack_name = sd_asprintf("%s.ack.json", to.name);
    r = write_file(to.fd, ack_name, text, folder_mode(im->dir, false));
    snprintf(res->moved_path, sizeof(res->moved_path), "%s", to.path);
    snprintf(res->ack_path, sizeof(res->ack_path), "%s.ack.json", to.path);
    free(ack_name);
    free(text);
    json_decref(ack);
    free(errors_name);
    dest_release(&to);
    if (r < 0) {
        return sd_connector_fail(im->ctx, r, "%s: cannot write its acknowledgement", im->name);
    }
    return 0;
}

/* Commit the cursor again with "acked": true once the file is acknowledged, so that the same
 * content under the same name arriving later is told apart from a crash between storing and
 * acknowledging (only the latter is acknowledged without importing). */
static int mark_acked_job(struct sd_connector_job *job, void *arg)
{
    const json_t *cur = sd_connector_job_ctx(job)->cursor;
    json_t *c = json_is_object(cur) ? json_deep_copy(cur) : json_object();
    json_object_set_new(c, "acked", json_true());
    int r = sd_connector_job_cursor(job, c);
    json_decref(c);
    return r;
}

void sd_csv_import_mark_acked(struct sd_connector_ctx *ctx, const char *name, const char *sha256)
{
    const json_t *c = ctx->cursor;
    bool ours = json_is_object(c) && json_is_true(json_object_get(c, "done")) &&
                strcmp(json_string_value(json_object_get(c, "sha256")) ?: "", sha256) == 0 &&
                strcmp(json_string_value(json_object_get(c, "file")) ?: "", name) == 0;
    if (ours && !json_is_true(json_object_get(c, "acked"))) {
        (void)sd_connector_write_job(ctx, mark_acked_job, NULL);
    }
}

static void mark_acked(struct importer *im)
{
    if (im->mark_acked) {
        sd_csv_import_mark_acked(im->ctx, im->name, im->sha);
    }
}

/* The reader's delimiter for the setting (0: detect). */
static char delimiter_char(int d)
{
    return d == SD_CSV_DELIM_COMMA       ? ','
           : d == SD_CSV_DELIM_SEMICOLON ? ';'
           : d == SD_CSV_DELIM_TAB       ? '\t'
                                         : 0;
}

static int import_file(struct sd_connector_ctx *ctx, const char *dir, const char *name,
                       bool mark, struct sd_csv_import_result *res)
{
    memset(res, 0, sizeof(*res));
    int64_t started = sd_now_usec();
    struct importer im = {.ctx = ctx, .dir = dir, .name = name, .fd = -1, .mark_acked = mark};
    im.path = sd_asprintf("%s/%s", dir, name);
    /* Both CSV connectors' settings structs start with the shared part (csv_import.h). */
    const struct sd_csv_import_conf *conf = ctx->conf;
    im.skip_rows = conf->policy == SD_CSV_SKIP_ROWS;
    im.copt.delimiter = delimiter_char(conf->delimiter);
    im.copt.encoding = conf->encoding == SD_CSV_ENC_CP1252 ? SD_CSV_CP1252 : SD_CSV_UTF8;
    int kind = conf->kind == SD_CSV_KIND_EVENTS      ? SD_KIND_EVENT
               : conf->kind == SD_CSV_KIND_CUSTOMERS ? SD_KIND_CUSTOMER
               : conf->kind == SD_CSV_KIND_SALES     ? SD_KIND_SALE
                                                     : kind_of_name(name);
    im.err_path = sd_asprintf("%s/%s.errors.csv.part", ctx->work_dir, name);
    int r = 0;
    im.errf = fopen(im.err_path, "a+");
    if (!im.errf) {
        r = sd_connector_fail(ctx, -errno, "cannot write %s", im.err_path);
        goto out;
    }
    /* processed/ and failed/ must be folders of their own, not links the venue planted: check
     * before anything is stored (move_into checks again, race-free). */
    for (int i = 0; i < 2; i++) {
        const char *sub = i ? "failed" : "processed";
        char *d = sd_asprintf("%s/%s", dir, sub);
        struct stat dst;
        bool bad = lstat(d, &dst) == 0 && !S_ISDIR(dst.st_mode);
        free(d);
        if (bad) {
            r = sd_connector_fail(ctx, -ELOOP,
                                  "%s: %s/ in the drop folder is not a folder (a symbolic "
                                  "link?); nothing is imported until it is",
                                  name, sub);
            goto out;
        }
    }
    /* Never through a link, symbolic or hard: a venue could otherwise have the hub read any
     * file it can. */
    im.fd = open(im.path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    struct stat fst;
    if (im.fd >= 0 &&
        (fstat(im.fd, &fst) != 0 || !S_ISREG(fst.st_mode) || fst.st_nlink > 1)) {
        close(im.fd);
        im.fd = -1;
        errno = EINVAL;
    }
    if (im.fd < 0) {
        r = sd_connector_fail(ctx, -errno, "%s: cannot open: %s", name,
                              errno == ELOOP || errno == EINVAL
                                  ? "not a regular file of its own (links are not followed)"
                                  : strerror(errno));
        goto out;
    }
    if ((r = sd_sha256_fd(im.fd, im.sha)) < 0) {
        r = sd_connector_fail(ctx, r, "%s: cannot read", name);
        goto out;
    }
    memcpy(res->sha256, im.sha, sizeof(res->sha256));
    /* Where did we leave this file? The same content under another name is a new delivery
     * (re-sent by the venue): it is imported again, which stores nothing twice (upsert) and
     * says so in its ack (records_unchanged). */
    const json_t *c = ctx->cursor;
    bool same = json_is_object(c) &&
                strcmp(json_string_value(json_object_get(c, "sha256")) ?: "", im.sha) == 0 &&
                strcmp(json_string_value(json_object_get(c, "file")) ?: "", name) == 0;
    if (same && json_is_true(json_object_get(c, "acked"))) {
        /* Acknowledged before: this is the venue sending the file again, a new delivery. */
        same = false;
    }
    if (same && json_is_true(json_object_get(c, "done"))) {
        /* Stored before a crash cut the acknowledgement short: acknowledge only. */
        im.kind = kind < 0 ? SD_KIND_SALE : (enum sd_kind)kind;
        im.rows = (uint64_t)json_integer_value(json_object_get(c, "rows"));
        im.stored = (uint64_t)json_integer_value(json_object_get(c, "stored"));
        im.rejected = (uint64_t)json_integer_value(json_object_get(c, "rejected"));
        im.unchanged = (uint64_t)json_integer_value(json_object_get(c, "unchanged"));
        res->already = true;
        r = finish(&im, false, started, res);
        if (r == 0) {
            mark_acked(&im);
        }
        goto out;
    }
    /* A skip_rows file or a publish cut short resumes after its last commit. */
    bool resume = same && (im.skip_rows ||
                           strcmp(json_string_value(json_object_get(c, "phase")) ?: "",
                                  "publishing") == 0);
    if (!resume) {
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
        sd_csv_error_row(im.errf, 0, "",
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
        sd_utf8_snprintf(im.fatal_msg, sizeof(im.fatal_msg), "%s",
                         ctx->error ? ctx->error : "bad header");
        sd_csv_error_row(im.errf, 1, "", im.fatal_msg);
        free(ctx->error);
        ctx->error = NULL;
        r = finish(&im, true, started, res);
        goto out;
    }
    if (resume) {
        /* Resume after the last commit. */
        im.rows = (uint64_t)json_integer_value(json_object_get(c, "rows"));
        im.rows_committed = im.rows;
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
    if (!resume && !im.skip_rows) {
        /* reject_file: check the whole file first; only a good one is stored. */
        bool needs_writer = false;
        r = check_file(&im, &needs_writer);
        if (r < 0) {
            goto out;
        }
        if (im.rejected > 0 || im.fatal) {
            r = finish(&im, true, started, res);
            goto acked;
        }
        im.rows = 0;
        r = open_reader(&im, im.body_offset, im.body_line);
        if (r < 0) {
            goto out;
        }
        if (needs_writer) {
            r = whole_file_import(&im, started, res);
            goto acked;
        }
        check_fault(&im);
    }
    im.publishing = !im.skip_rows;
    r = start_reading(&im);
    if (r < 0) {
        goto out;
    }
    r = bounded_import(&im);
    if (r < 0) {
        goto out;
    }
    r = finish(&im, im.fatal != 0 && im.stored == 0, started, res);
acked:
    if (r == 0) {
        mark_acked(&im);
    }
out:
    sd_csv_chunks_stop(im.chunks);
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

int sd_csv_import_file(struct sd_connector_ctx *ctx, const char *dir, const char *name,
                       struct sd_csv_import_result *res)
{
    return import_file(ctx, dir, name, true, res);
}

int sd_csv_import_file_unmarked(struct sd_connector_ctx *ctx, const char *dir, const char *name,
                                struct sd_csv_import_result *res)
{
    return import_file(ctx, dir, name, false, res);
}

/* ---- a run's summary ------------------------------------------------------------------------ */

#define SUMMARY_NAMES 5 /* files named in a status message; the rest are counted */

void sd_csv_run_summary_init(struct sd_csv_run_summary *s)
{
    memset(s, 0, sizeof(*s));
    sd_buf_init(&s->refused_names);
    sd_buf_init(&s->skipped);
}

void sd_csv_run_summary_add(struct sd_csv_run_summary *s, const char *name,
                            const struct sd_csv_import_result *res)
{
    s->files++;
    if (res->failed) {
        s->refused++;
        if (s->named < SUMMARY_NAMES) {
            sd_buf_printf(&s->refused_names, "%s%s", s->named ? ", " : "", name);
            s->named++;
        }
        return;
    }
    if (res->records_rejected > 0 && !res->already) {
        /* The errors list beside the moved file: "processed/NAME.errors.csv". */
        const char *base = strrchr(res->errors_path, '/');
        const char *sub = "processed/";
        sd_buf_printf(&s->skipped, "%s%llu row%s skipped in %s, see %s%s",
                      s->skipped.len ? "; " : "", (unsigned long long)res->records_rejected,
                      res->records_rejected == 1 ? "" : "s", name, base ? sub : "",
                      base ? base + 1 : "its .errors.csv");
    }
}

int sd_csv_run_summary_finish(struct sd_csv_run_summary *s, struct sd_connector_ctx *ctx)
{
    int r = 0;
    char more[48] = "";
    if (s->refused > s->named) {
        snprintf(more, sizeof(more), " and %zu more", s->refused - s->named);
    }
    if (s->files > 0 && s->refused == s->files) {
        r = sd_connector_fail(ctx, -EINVAL,
                              "every file was refused (%zu): %s%s; see failed/ and their "
                              ".errors.csv",
                              s->refused, s->refused_names.data, more);
    } else if (s->refused > 0) {
        sd_connector_fail(ctx, 0,
                          "%zu of %zu file(s) refused: %s%s; see failed/ and their "
                          ".errors.csv%s%s",
                          s->refused, s->files, s->refused_names.data, more,
                          s->skipped.len ? "; " : "", s->skipped.len ? s->skipped.data : "");
    } else if (s->skipped.len) {
        sd_connector_fail(ctx, 0, "%s", s->skipped.data);
    }
    sd_csv_run_summary_release(s);
    return r;
}

void sd_csv_run_summary_release(struct sd_csv_run_summary *s)
{
    sd_buf_release(&s->refused_names);
    sd_buf_release(&s->skipped);
}
