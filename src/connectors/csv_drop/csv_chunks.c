/* csv_chunks.c — reading, mapping and validating CSV rows into chunks on a thread of its own
 * (see csv_chunks.h). */
#include "connectors/csv_drop/csv_chunks.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "core/connector.h"
#include "formats/csv_reader.h"
#include "mapping/mapping.h"

#define QUEUE_DEPTH 2

struct sd_csv_chunks {
    struct sd_csv_chunks_options o;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct sd_csv_chunk *queue[QUEUE_DEPTH];
    size_t head, count;
    const char **targets;       /* per header column: the model field it feeds, or NULL */
    struct sd_csv_chunk *spent; /* handed back by the importer, freed by this thread */
    bool cancel;     /* the importer stopped: end now */
    bool taken_last; /* the importer has the chunk with eof */
    uint64_t rows; /* rows read so far (this thread only) */
};

/* ---- errors.csv rows -------------------------------------------------------------------------
 */

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

void sd_csv_error_row(FILE *f, uint64_t line, const char *column, const char *message)
{
    fprintf(f, "%llu,", (unsigned long long)line);
    csv_field(f, column ? column : "");
    fputc(',', f);
    csv_field(f, message);
    fputc('\n', f);
}

/* The file's own name for a model field path ("event_id" → "EventNo", "cast/0/name" →
 * "Besetzung/0/name"): the first header column that feeds the field, else the path itself. */
static const char *column_of(const struct sd_csv_chunks *cs, const char *path, char *buf,
                             size_t size)
{
    if (!cs || !path[0]) {
        return path;
    }
    size_t seg = strcspn(path, "/");
    for (size_t i = 0; i < cs->o.n_header; i++) {
        const char *t = cs->targets[i];
        if (t && strlen(t) == seg && strncmp(t, path, seg) == 0) {
            sd_utf8_snprintf(buf, size, "%s%s", cs->o.header[i], path + seg);
            return buf;
        }
    }
    return path;
}

uint64_t sd_csv_record_issues(FILE *f, const struct sd_csv_chunks *cs, const uint64_t *lines,
                              size_t n, const struct sd_issues *iss, bool *hit)
{
    char col[512];
    uint64_t distinct = 0;
    bool *seen = hit ? hit : sd_calloc(n + 1, sizeof(bool));
    for (size_t i = 0; i < iss->n; i++) {
        const char *p = iss->items[i].pointer;
        const char *q = p[0] == '/' ? strchr(p + 1, '/') : NULL;
        char *end = NULL;
        unsigned long long idx = q ? strtoull(q + 1, &end, 10) : 0;
        if (!q || !end || idx >= n) {
            sd_csv_error_row(f, 0, p, iss->items[i].message);
            continue;
        }
        if (!seen[idx]) {
            seen[idx] = true;
            distinct++;
        }
        const char *path = *end == '/' ? end + 1 : end;
        sd_csv_error_row(f, lines[idx], column_of(cs, path, col, sizeof(col)),
                         iss->items[i].message);
    }
    if (!hit) {
        free(seen);
    }
    return distinct;
}

/* Issues from the mapping ("/line/12/date") → rows. */
static void mapping_issues(FILE *f, const struct sd_csv_chunks *cs, uint64_t line,
                           const struct sd_issues *iss)
{
    char buf[512];
    for (size_t i = 0; i < iss->n; i++) {
        const char *p = iss->items[i].pointer;
        const char *col = "";
        const char *q = strchr(p + (p[0] == '/'), '/');
        if (q) {
            q = strchr(q + 1, '/');
            col = q ? q + 1 : "";
        }
        sd_csv_error_row(f, line, column_of(cs, col, buf, sizeof(buf)), iss->items[i].message);
    }
}

/* ---- one chunk -------------------------------------------------------------------------------
 */

void sd_csv_chunk_free(struct sd_csv_chunk *ch)
{
    if (!ch) {
        return;
    }
    json_decref(ch->body);
    free(ch->lines);
    sd_batch_release(&ch->batch);
    free(ch->errs);
    free(ch);
}

/* Free a list of spent chunks (linked through ->next_spent). */
static void free_spent(struct sd_csv_chunk *ch)
{
    while (ch) {
        struct sd_csv_chunk *next = ch->next_spent;
        sd_csv_chunk_free(ch);
        ch = next;
    }
}

void sd_csv_chunks_done(struct sd_csv_chunks *cs, struct sd_csv_chunk *ch)
{
    if (!ch) {
        return;
    }
    pthread_mutex_lock(&cs->mu);
    ch->next_spent = cs->spent;
    cs->spent = ch;
    pthread_cond_broadcast(&cs->cv);
    pthread_mutex_unlock(&cs->mu);
}

/* Validate the chunk's body; rows it refuses go to ef and out of the body, until what is left
 * is valid (each round removes at least one record, or gives up on a body-level error). */
static void validate_chunk(struct sd_csv_chunks *cs, struct sd_csv_chunk *ch, FILE *ef)
{
    const char *name = sd_kind_array_name(cs->o.kind);
    while (ch->n > 0) {
        struct sd_issues errors, warnings;
        sd_issues_init(&errors, ch->n * 4 + 16);
        sd_issues_init(&warnings, 0);
        struct sd_batch batch = {0};
        int r = sd_validate_ingest(ch->body, &batch, &errors, &warnings);
        sd_issues_release(&warnings);
        if (r == 0 && errors.total == 0) {
            sd_issues_release(&errors);
            ch->batch = batch;
            ch->validated = true;
            /* The batch holds everything the store needs: free the records here, not on the
             * writer thread. */
            json_decref(ch->body);
            ch->body = NULL;
            return;
        }
        bool *hit = sd_calloc(ch->n + 1, sizeof(bool));
        uint64_t newly = sd_csv_record_issues(ef, cs, ch->lines, ch->n, &errors, hit);
        sd_issues_release(&errors);
        if (newly == 0) {
            /* Refused without naming a row: nothing of it can be stored. */
            ch->rejected += ch->n;
            for (size_t i = 0; i < ch->n; i++) {
                hit[i] = true;
            }
        } else {
            ch->rejected += newly;
        }
        const json_t *arr = json_object_get(ch->body, name);
        json_t *kept = json_array();
        size_t m = 0;
        for (size_t i = 0; i < ch->n; i++) {
            if (!hit[i]) {
                json_array_append(kept, json_array_get(arr, i));
                ch->lines[m++] = ch->lines[i];
            }
        }
        free(hit);
        json_object_set_new(ch->body, name, kept);
        ch->n = m;
    }
}

static struct sd_csv_chunk *read_chunk(struct sd_csv_chunks *cs)
{
    struct sd_csv_chunk *ch = sd_calloc(1, sizeof(*ch));
    ch->lines = sd_malloc((cs->o.chunk_rows + 1) * sizeof(uint64_t));
    FILE *ef = open_memstream(&ch->errs, &ch->errs_len);
    if (!ef) {
        abort(); /* allocation failure aborts (style.md) */
    }
    json_t *arr = json_array();
    struct sd_issues iss;
    sd_issues_init(&iss, 50);
    while (ch->n < cs->o.chunk_rows) {
        struct sd_csv_row row;
        int r = sd_csv_next(cs->o.reader, &row);
        if (r == 0) {
            ch->eof = true;
            break;
        }
        if (r == -EILSEQ) {
            cs->rows++;
            ch->rejected++;
            sd_csv_error_row(ef, row.line, "", sd_csv_error(cs->o.reader));
            continue;
        }
        if (r < 0) {
            ch->fatal = r;
            sd_utf8_snprintf(ch->fatal_msg, sizeof(ch->fatal_msg), "%s",
                             sd_csv_error(cs->o.reader));
            sd_csv_error_row(ef, row.line, "", sd_csv_error(cs->o.reader));
            ch->eof = true;
            break;
        }
        cs->rows++;
        if (row.n != cs->o.n_header) {
            char msg[96];
            snprintf(msg, sizeof(msg), "the row has %zu fields, the header has %zu", row.n,
                     cs->o.n_header);
            sd_csv_error_row(ef, row.line, "", msg);
            ch->rejected++;
            continue;
        }
        char ptr[40];
        snprintf(ptr, sizeof(ptr), "/line/%llu", (unsigned long long)row.line);
        json_t *rec = sd_mapping_apply_row(cs->o.mapping, cs->o.kind, cs->o.header,
                                           (const char *const *)row.fields, row.n, ptr, &iss);
        if (!rec) {
            mapping_issues(ef, cs, row.line, &iss);
            sd_issues_release(&iss);
            ch->rejected++;
            continue;
        }
        json_array_append_new(arr, rec);
        ch->lines[ch->n++] = row.line;
    }
    sd_issues_release(&iss);
    ch->body = json_pack("{s:o}", sd_kind_array_name(cs->o.kind), arr);
    if (cs->o.validate) {
        validate_chunk(cs, ch, ef);
    }
    ch->rows_end = cs->rows;
    sd_csv_position(cs->o.reader, &ch->offset_end, &ch->line_end);
    fclose(ef);
    return ch;
}

/* ---- the thread and its queue ----------------------------------------------------------------
 */

static void *reading_thread(void *arg)
{
    struct sd_csv_chunks *cs = arg;
    for (;;) {
        pthread_mutex_lock(&cs->mu);
        while (cs->count == QUEUE_DEPTH && !cs->cancel && !cs->spent) {
            pthread_cond_wait(&cs->cv, &cs->mu);
        }
        bool cancel = cs->cancel, full = cs->count == QUEUE_DEPTH;
        struct sd_csv_chunk *spent = cs->spent;
        cs->spent = NULL;
        pthread_mutex_unlock(&cs->mu);
        /* Memory is freed by the thread that allocated it (no contention on malloc's arenas). */
        free_spent(spent);
        if (cancel) {
            break;
        }
        if (full) {
            continue;
        }
        struct sd_csv_chunk *ch = read_chunk(cs);
        bool last = ch->eof;
        pthread_mutex_lock(&cs->mu);
        cs->queue[(cs->head + cs->count) % QUEUE_DEPTH] = ch;
        cs->count++;
        pthread_cond_broadcast(&cs->cv);
        pthread_mutex_unlock(&cs->mu);
        if (last) {
            break;
        }
    }
    return NULL;
}

int sd_csv_chunks_start(const struct sd_csv_chunks_options *o, struct sd_csv_chunks **ret)
{
    struct sd_csv_chunks *cs = sd_calloc(1, sizeof(*cs));
    cs->o = *o;
    if (cs->o.chunk_rows == 0) {
        cs->o.chunk_rows = 1000;
    }
    cs->rows = o->rows_before;
    cs->targets = sd_calloc(o->n_header + 1, sizeof(*cs->targets));
    for (size_t i = 0; i < o->n_header; i++) {
        cs->targets[i] = sd_mapping_target_of(o->mapping, o->kind, o->header[i]);
    }
    pthread_mutex_init(&cs->mu, NULL);
    pthread_cond_init(&cs->cv, NULL);
    int rc = pthread_create(&cs->thread, NULL, reading_thread, cs);
    if (rc != 0) {
        pthread_cond_destroy(&cs->cv);
        pthread_mutex_destroy(&cs->mu);
        free(cs->targets);
        free(cs);
        return -rc;
    }
    *ret = cs;
    return 0;
}

struct sd_csv_chunk *sd_csv_chunks_next(struct sd_csv_chunks *cs)
{
    pthread_mutex_lock(&cs->mu);
    if (cs->taken_last) {
        pthread_mutex_unlock(&cs->mu);
        return NULL;
    }
    while (cs->count == 0) {
        pthread_cond_wait(&cs->cv, &cs->mu);
    }
    struct sd_csv_chunk *ch = cs->queue[cs->head];
    cs->queue[cs->head] = NULL;
    cs->head = (cs->head + 1) % QUEUE_DEPTH;
    cs->count--;
    cs->taken_last = ch->eof;
    pthread_cond_broadcast(&cs->cv);
    pthread_mutex_unlock(&cs->mu);
    return ch;
}

void sd_csv_chunks_stop(struct sd_csv_chunks *cs)
{
    if (!cs) {
        return;
    }
    pthread_mutex_lock(&cs->mu);
    cs->cancel = true;
    pthread_cond_broadcast(&cs->cv);
    pthread_mutex_unlock(&cs->mu);
    pthread_join(cs->thread, NULL);
    free_spent(cs->spent);
    while (cs->count > 0) {
        sd_csv_chunk_free(cs->queue[cs->head]);
        cs->head = (cs->head + 1) % QUEUE_DEPTH;
        cs->count--;
    }
    pthread_cond_destroy(&cs->cv);
    pthread_mutex_destroy(&cs->mu);
    free(cs->targets);
    free(cs);
}
