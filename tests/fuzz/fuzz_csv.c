/* fuzz_csv.c — fuzz target for the streaming CSV reader (formats/csv_reader.h).
 *
 * The first input byte picks the options: bit 0 the encoding (UTF-8 / Windows-1252), bits 1-2
 * the delimiter (detect, ',', ';', tab), bits 3-4 the row limit (1 MiB, 16, 64, 256 bytes) and
 * bits 5-7 the read block size of the fd pass. The rest is the CSV text. Besides "no crash, no
 * leak" it checks the reader's promises and aborts when one breaks:
 * - every field is valid UTF-8 without NUL, a row has 1..SD_CSV_MAX_FIELDS fields;
 * - row lines and positions never go back, each row consumes input, offsets stay <= size;
 * - messages start with "line " and have no trailing period, row.line is the line they name
 *   (for a bad row: where it starts, at or before the bad byte's line);
 *   a fatal error repeats itself with the same message and position, end of input stays end;
 * - the same input read through an fd in small blocks gives the same calls and results;
 * - resuming at a position after a row gives exactly the rest of the first reading. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/base.h"
#include "formats/csv_reader.h"
#include "model/model.h"

#define MAX_POINTS 64

struct point {
    uint64_t off, line;
    size_t trace_len;
};

static void check(bool ok)
{
    if (!ok) {
        abort();
    }
}

static void check_message(const char *m)
{
    size_t n = strlen(m);
    check(n > 5 && strncmp(m, "line ", 5) == 0 && m[n - 1] != '.' && sd_utf8_valid(m, n));
}

/* Read everything, checking invariants; the trace records every call. */
static void run(struct sd_csv_reader *r, size_t size, uint64_t first_line, struct sd_buf *trace,
                struct point *points, size_t *n_points)
{
    uint64_t off0, line0;
    sd_csv_position(r, &off0, &line0);
    check(line0 == first_line);
    uint64_t last_row_line = 0;
    for (size_t calls = 0;; calls++) {
        check(calls <= size + 1); /* every row consumes at least one byte */
        struct sd_csv_row row = {0};
        int rc = sd_csv_next(r, &row);
        uint64_t off, line;
        sd_csv_position(r, &off, &line);
        check(off >= off0 && off <= size && line >= line0);
        sd_buf_printf(trace, "%d @%llu:%llu", rc, (unsigned long long)off,
                      (unsigned long long)line);
        if (rc != 1) {
            /* Not a row: no fields, row.line is the line of the message (or the position's). */
            check(!row.fields && row.n == 0);
            unsigned long long named = line;
            if (rc < 0) {
                check(sscanf(sd_csv_error(r), "line %llu", &named) == 1);
            }
            check(rc == -EILSEQ ? row.line <= named : row.line == named);
        }
        if (rc == 1 || rc == -EILSEQ) {
            check(off > off0 && row.line >= line0 && row.line >= last_row_line && row.line <= line);
            last_row_line = row.line;
            sd_buf_printf(trace, " L%llu", (unsigned long long)row.line);
        }
        if (rc == 1) {
            check(row.n >= 1 && row.n <= SD_CSV_MAX_FIELDS && row.fields);
            for (size_t i = 0; i < row.n; i++) {
                size_t n = strlen(row.fields[i]);
                check(sd_utf8_valid(row.fields[i], n));
                sd_buf_printf(trace, " %zu:", n);
                sd_buf_append(trace, row.fields[i], n);
            }
        } else if (rc == -EILSEQ) {
            check(row.n == 0);
            check_message(sd_csv_error(r));
            sd_buf_printf(trace, " %s", sd_csv_error(r));
        } else if (rc == 0) {
            check(off == off0 && line == line0);
            check(sd_csv_next(r, &row) == 0);
            sd_buf_puts(trace, "\n");
            return;
        } else {
            check(rc == -EINVAL && off == off0 && line == line0);
            check_message(sd_csv_error(r));
            char *msg = sd_strdup(sd_csv_error(r));
            for (int k = 0; k < 2; k++) {
                check(sd_csv_next(r, &row) == rc && strcmp(sd_csv_error(r), msg) == 0);
                sd_csv_position(r, &off, &line);
                check(off == off0 && line == line0);
            }
            sd_buf_printf(trace, " %s\n", msg);
            free(msg);
            return;
        }
        sd_buf_puts(trace, "\n");
        if (points && *n_points < MAX_POINTS) {
            points[*n_points] = (struct point){off, line, trace->len};
            (*n_points)++;
        }
        off0 = off;
        line0 = line;
    }
}

static char *read_fd(int fd, uint64_t off, uint64_t line, const struct sd_csv_options *o,
                     size_t block, size_t size)
{
    struct sd_csv_reader *r = NULL;
    check(sd_csv_open_fd(fd, off, line, o, &r) == 0);
    sd_csv_set_block_size(r, block);
    struct sd_buf trace;
    sd_buf_init(&trace);
    run(r, size, line, &trace, NULL, NULL);
    sd_csv_free(r);
    return sd_buf_steal(&trace);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char delims[] = {0, ',', ';', '\t'};
    static const size_t limits[] = {0, 16, 64, 256};
    static const size_t blocks[] = {1, 2, 3, 5, 8, 64, 4096, 65536};
    if (size == 0) {
        return 0;
    }
    uint8_t sel = data[0];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    struct sd_csv_options o = {delims[(sel >> 1) & 3], (enum sd_csv_encoding)(sel & 1),
                               limits[(sel >> 3) & 3]};

    struct sd_csv_reader *r = NULL;
    check(sd_csv_open_mem(text, len, &o, &r) == 0);
    check(sd_csv_delimiter(r) == o.delimiter);
    struct sd_buf trace;
    sd_buf_init(&trace);
    struct point points[MAX_POINTS];
    size_t n_points = 0;
    run(r, len, 1, &trace, points, &n_points);
    char d = sd_csv_delimiter(r);
    check(d == ',' || d == ';' || d == '\t');
    check(o.delimiter == 0 || d == o.delimiter);
    sd_csv_free(r);

    int fd = memfd_create("fuzz_csv", MFD_CLOEXEC);
    check(fd >= 0);
    check(write(fd, text, len) == (ssize_t)len);
    char *got = read_fd(fd, 0, 1, &o, blocks[sel >> 5], len);
    check(strcmp(got, trace.data) == 0);
    free(got);

    /* Resume at the first, middle and last committed positions. */
    struct sd_csv_options ro = {d, o.encoding, o.max_row_bytes};
    size_t picks[3] = {0, n_points / 2, n_points ? n_points - 1 : 0};
    for (size_t k = 0; k < 3 && n_points > 0; k++) {
        const struct point *p = &points[picks[k]];
        got = read_fd(fd, p->off, p->line, &ro, blocks[(sel >> 5) ^ k], len);
        /* The resumed trace is the first one's rest, both ending at the same place. */
        check(strcmp(got, trace.data + p->trace_len) == 0);
        free(got);
    }
    close(fd);
    sd_buf_release(&trace);
    return 0;
}
