/* test_csv_reader.c — the streaming CSV reader: quoting, line ends, encodings, delimiter
 * detection, row and fatal errors, line numbers and resumable positions. Every input of the
 * main table is also read through an fd in tiny blocks and resumed from every row boundary,
 * and must give exactly the result of the memory reader. SD_CSV_BENCH=<file> enables the
 * throughput measurement (the file is generated when missing: 1,000,000 rows, 9 columns). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/base.h"
#include "formats/csv_reader.h"

/* Everything a reader reports, one line per call, plus the position after each call:
 * "1 L<line> [f1][f2] @off:line", "-84 L<line> <message> @off:line", "0", "-22 <message>". */
static void trace_call(struct sd_csv_reader *r, int rc, const struct sd_csv_row *row,
                       struct sd_buf *out)
{
    uint64_t off, line;
    sd_csv_position(r, &off, &line);
    sd_buf_printf(out, "%d", rc);
    if (rc == 1) {
        sd_buf_printf(out, " L%llu ", (unsigned long long)row->line);
        for (size_t i = 0; i < row->n; i++) {
            sd_buf_printf(out, "[%s]", row->fields[i]);
        }
    } else if (rc == -EILSEQ) {
        sd_buf_printf(out, " L%llu %s", (unsigned long long)row->line, sd_csv_error(r));
    } else if (rc < 0) {
        sd_buf_printf(out, " %s", sd_csv_error(r));
    }
    sd_buf_printf(out, " @%llu:%llu\n", (unsigned long long)off, (unsigned long long)line);
}

/* Where a resumed reader must pick up: the position after a row and the trace length then. */
struct resume_point {
    uint64_t off, line;
    size_t trace_len;
};
#define MAX_POINTS 16

/* Read to the end (or a fatal error, checked to be sticky); trace into out. If points is set,
 * record up to MAX_POINTS positions after rows (good or bad) into it. */
static void drain_points(struct sd_csv_reader *r, struct sd_buf *out, struct resume_point *points,
                         size_t *n_points)
{
    for (;;) {
        struct sd_csv_row row = {0};
        int rc = sd_csv_next(r, &row);
        trace_call(r, rc, &row, out);
        if (rc != 1) {
            /* Not a row: no fields; row.line is the line the message names (a bad row: where
             * it starts, the message may name a later line of it). */
            assert_null(row.fields);
            assert_int_equal(row.n, 0);
            unsigned long long line = 0;
            if (rc == 0) {
                uint64_t pos_line;
                sd_csv_position(r, NULL, &pos_line);
                line = pos_line;
            } else {
                assert_int_equal(sscanf(sd_csv_error(r), "line %llu", &line), 1);
            }
            if (rc == -EILSEQ) {
                assert_true(row.line <= line);
            } else {
                assert_int_equal(row.line, line);
            }
        }
        if (points && (rc == 1 || rc == -EILSEQ) && *n_points < MAX_POINTS) {
            struct resume_point *p = &points[(*n_points)++];
            sd_csv_position(r, &p->off, &p->line);
            p->trace_len = out->len;
        }
        if (rc == 0) {
            assert_int_equal(sd_csv_next(r, &row), 0);
            return;
        }
        if (rc != 1 && rc != -EILSEQ) {
            char *msg = sd_strdup(sd_csv_error(r));
            assert_int_equal(sd_csv_next(r, &row), rc);
            assert_string_equal(sd_csv_error(r), msg);
            free(msg);
            return;
        }
    }
}

static void drain(struct sd_csv_reader *r, struct sd_buf *out)
{
    drain_points(r, out, NULL, NULL);
}

static char *read_mem(const char *in, size_t len, const struct sd_csv_options *o)
{
    struct sd_csv_reader *r = NULL;
    assert_int_equal(sd_csv_open_mem(in, len, o, &r), 0);
    struct sd_buf out;
    sd_buf_init(&out);
    drain(r, &out);
    sd_csv_free(r);
    return sd_buf_steal(&out);
}

static int memfd_with(const char *in, size_t len)
{
    int fd = memfd_create("csv", MFD_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, in, len), (ssize_t)len);
    return fd;
}

static char *read_fd(int fd, uint64_t off, uint64_t line, const struct sd_csv_options *o,
                     size_t block)
{
    struct sd_csv_reader *r = NULL;
    assert_int_equal(sd_csv_open_fd(fd, off, line, o, &r), 0);
    sd_csv_set_block_size(r, block);
    struct sd_buf out;
    sd_buf_init(&out);
    drain(r, &out);
    sd_csv_free(r);
    return sd_buf_steal(&out);
}

struct csv_case {
    const char *in;
    size_t len;
    char delim;
    enum sd_csv_encoding enc;
    size_t max_row;
    const char *want;
};

/* clang-format off */
#define C(lit, d, e, m, w) {lit, sizeof(lit) - 1, d, e, m, w}
/* clang-format on */
#define UTF8 SD_CSV_UTF8
#define CP SD_CSV_CP1252

static const struct csv_case cases[] = {
    /* Quoting and doubled quotes. */
    C("a,\"b,c\",\"d\"\"e\"\n", ',', UTF8, 0, "1 L1 [a][b,c][d\"e] @15:2\n0 @15:2\n"),
    C("\"\",x,\"\"\"\"\n", ',', UTF8, 0, "1 L1 [][x][\"] @10:2\n0 @10:2\n"),
    C("a,,\n", ',', UTF8, 0, "1 L1 [a][][] @4:2\n0 @4:2\n"),
    /* Spaces are data (RFC 4180), including around quoted-looking text. */
    C(" a , b \n", ',', UTF8, 0, "1 L1 [ a ][ b ] @8:2\n0 @8:2\n"),
    /* Embedded CRLF and LF inside quotes; line numbers are physical. */
    C("\"x\r\ny\",z\r\n\"p\nq\",r\nlast,1\n", ',', UTF8, 0,
      "1 L1 [x\r\ny][z] @10:3\n1 L3 [p\nq][r] @18:5\n1 L5 [last][1] @25:6\n0 @25:6\n"),
    /* Missing trailing newline; quoted last field at EOF. */
    C("a,b\nc,d", ',', UTF8, 0, "1 L1 [a][b] @4:2\n1 L2 [c][d] @7:2\n0 @7:2\n"),
    C("a,\"b\"", ',', UTF8, 0, "1 L1 [a][b] @5:1\n0 @5:1\n"),
    C("a,", ',', UTF8, 0, "1 L1 [a][] @2:1\n0 @2:1\n"),
    /* Blank lines are skipped but counted; CR-only line ends. */
    C("\n\r\na\n\n\nb\r\n\r\n", ',', UTF8, 0, "1 L3 [a] @5:4\n1 L6 [b] @10:7\n0 @10:7\n"),
    C("a\rb\r\rc", ',', UTF8, 0, "1 L1 [a] @2:2\n1 L2 [b] @4:3\n1 L4 [c] @6:4\n0 @6:4\n"),
    C("", 0, UTF8, 0, "0 @0:1\n"),
    C("\r\n\n", 0, UTF8, 0, "0 @0:1\n"),
    /* BOM at offset 0 (not part of the first field). */
    C("\xef\xbb\xbfid,name\n1,x\n", 0, UTF8, 0,
      "1 L1 [id][name] @11:2\n1 L2 [1][x] @15:3\n0 @15:3\n"),
    C("\xef\xbb\xbf", 0, UTF8, 0, "0 @0:1\n"),
    C("\xef\xbb", 0, UTF8, 0, "-84 L1 line 1, column 1: invalid UTF-8 @2:1\n0 @2:1\n"),
    /* UTF-8 checks: a bad row is consumed and reading goes on. */
    C("a,b\n\xc3\x28,c\nd,\xe2\x82\xac\n", ',', UTF8, 0,
      "1 L1 [a][b] @4:2\n-84 L2 line 2, column 1: invalid UTF-8 @9:3\n"
      "1 L3 [d][\xe2\x82\xac] @15:4\n0 @15:4\n"),
    C("a,\"x\ny\nz\xff\"\nok\n", ',', UTF8, 0,
      "-84 L1 line 3, column 2: invalid UTF-8 @11:4\n1 L4 [ok] @14:5\n0 @14:5\n"),
    C("a\0b,c\nd\n", ',', UTF8, 0,
      "-84 L1 line 1, column 1: NUL byte @6:2\n1 L2 [d] @8:3\n0 @8:3\n"),
    C("\xed\xa0\x80\n", ',', UTF8, 0, "-84 L1 line 1, column 1: invalid UTF-8 @4:2\n0 @4:2\n"),
    /* Windows-1252: € ü, the 0x80-0x9F table, undefined bytes are row errors. */
    C("\x80,\xfc\n", ',', CP, 0, "1 L1 [\xe2\x82\xac][\xc3\xbc] @4:2\n0 @4:2\n"),
    C("\x82\x83\x8a\x8e\x91\x92\x93\x94\x96\x97\x99\x9c\x9f\xa0\xff\n", ',', CP, 0,
      "1 L1 [\xe2\x80\x9a\xc6\x92\xc5\xa0\xc5\xbd\xe2\x80\x98\xe2\x80\x99\xe2\x80\x9c"
      "\xe2\x80\x9d\xe2\x80\x93\xe2\x80\x94\xe2\x84\xa2\xc5\x93\xc5\xb8\xc2\xa0\xc3\xbf]"
      " @16:2\n0 @16:2\n"),
    C("a,b\x81\nc\n", ',', CP, 0,
      "-84 L1 line 1, column 2: byte 0x81 is not defined in Windows-1252 @5:2\n"
      "1 L2 [c] @7:3\n0 @7:3\n"),
    C("\x8d\n\x8f\n\x90\n\x9d\nx\0\n", ',', CP, 0,
      "-84 L1 line 1, column 1: byte 0x8D is not defined in Windows-1252 @2:2\n"
      "-84 L2 line 2, column 1: byte 0x8F is not defined in Windows-1252 @4:3\n"
      "-84 L3 line 3, column 1: byte 0x90 is not defined in Windows-1252 @6:4\n"
      "-84 L4 line 4, column 1: byte 0x9D is not defined in Windows-1252 @8:5\n"
      "-84 L5 line 5, column 1: NUL byte @11:6\n0 @11:6\n"),
    /* Delimiter detection: the most frequent outside quotes in the first row, ties to ','. */
    C("a;b;c\n1;2,5;3\n", 0, UTF8, 0, "1 L1 [a][b][c] @6:2\n1 L2 [1][2,5][3] @14:3\n0 @14:3\n"),
    C("a\tb\n1\t2\n", 0, UTF8, 0, "1 L1 [a][b] @4:2\n1 L2 [1][2] @8:3\n0 @8:3\n"),
    C("\"a;b;c\",d\n", 0, UTF8, 0, "1 L1 [a;b;c][d] @10:2\n0 @10:2\n"),
    C("a,b;c\n", 0, UTF8, 0, "1 L1 [a][b;c] @6:2\n0 @6:2\n"),
    C("a;b\tc\n", 0, UTF8, 0, "1 L1 [a][b\tc] @6:2\n0 @6:2\n"),
    C("\n\nx;y\n", 0, UTF8, 0, "1 L3 [x][y] @6:4\n0 @6:4\n"),
    C("\"h\n;;\",a,b\nc;d\n", 0, UTF8, 0, "1 L1 [h\n;;][a][b] @11:3\n1 L3 [c;d] @15:4\n0 @15:4\n"),
    /* Fatal: unclosed quote, stray quotes; earlier rows still come out. */
    C("a\n\"b,c\nd\n", ',', UTF8, 0,
      "1 L1 [a] @2:2\n-22 line 2: quoted field not closed before end of file @2:2\n"),
    C("a\nx,\"b\"\"", ',', UTF8, 0,
      "1 L1 [a] @2:2\n-22 line 2: quoted field not closed before end of file @2:2\n"),
    C("a,b\"c\n", ',', UTF8, 0, "-22 line 1, column 2: quote in unquoted field @0:1\n"),
    C("a\n\"x\ny\"z,b\n", ',', UTF8, 0,
      "1 L1 [a] @2:2\n-22 line 3, column 1: unexpected character after closing quote @2:2\n"),
    C("\"a\" ,b\n", ',', UTF8, 0,
      "-22 line 1, column 1: unexpected character after closing quote @0:1\n"),
    /* Row size: limit bytes pass, one more is fatal (terminator not counted). */
    C("12345678\n1234\r\n5678\n", ',', UTF8, 8,
      "1 L1 [12345678] @9:2\n1 L2 [1234] @15:3\n1 L3 [5678] @20:4\n0 @20:4\n"),
    C("12345678\n123456789\nx\n", ',', UTF8, 8,
      "1 L1 [12345678] @9:2\n-22 line 2: row longer than 8 bytes @9:2\n"),
    C("\"12\n456\"\n\"1\r\n45678\n", ',', UTF8, 8,
      "1 L1 [12\n456] @9:3\n-22 line 3: row longer than 8 bytes (the quoted field opened on line "
      "3 is still open) @9:3\n"),
    C("ab\"cdefghijk\n", ',', UTF8, 8, "-22 line 1, column 1: quote in unquoted field @0:1\n"),
};

static void test_table(void **state)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        const struct csv_case *c = &cases[i];
        struct sd_csv_options o = {c->delim, c->enc, c->max_row};
        char *got = read_mem(c->in, c->len, &o);
        if (strcmp(got, c->want) != 0) {
            fail_msg("case %zu:\n got: %s\nwant: %s", i, got, c->want);
        }
        free(got);
    }
}

/* The detected delimiter is reported after the first row. */
static void test_detected_delimiter(void **state)
{
    static const struct {
        const char *in;
        char want;
    } dcases[] = {
        {"a,b,c\n", ','}, {"a;b;c\n", ';'},          {"a\tb\tc\n", '\t'}, {"\"a;b;c\",d\n", ','},
        {"a,b;c\n", ','}, {"a;b\tc\n", ';'},         {"a\tb,c\n", ','},   {"x\n", ','},
        {"", ','},        {"\"a\tb\";c;d,e\n", ';'},
    };
    for (size_t i = 0; i < sizeof(dcases) / sizeof(*dcases); i++) {
        struct sd_csv_reader *r = NULL;
        assert_int_equal(sd_csv_open_mem(dcases[i].in, strlen(dcases[i].in), NULL, &r), 0);
        assert_int_equal(sd_csv_delimiter(r), 0);
        struct sd_csv_row row;
        assert_true(sd_csv_next(r, &row) >= 0);
        if (sd_csv_delimiter(r) != dcases[i].want) {
            fail_msg("case %zu: got %d", i, sd_csv_delimiter(r));
        }
        sd_csv_free(r);
    }
    struct sd_csv_reader *r = NULL;
    struct sd_csv_options o = {';', SD_CSV_UTF8, 0};
    assert_int_equal(sd_csv_open_mem("a,b\n", 4, &o, &r), 0);
    assert_int_equal(sd_csv_delimiter(r), ';');
    sd_csv_free(r);
}

/* Every case through an fd in blocks of 1..7 and 64 KiB bytes, and resumed at every position
 * the first pass reported: the output must be the memory reader's, or its exact suffix. */
static void test_fd_blocks_and_resume(void **state)
{
    static const size_t blocks[] = {1, 2, 3, 4, 5, 7, 65536};
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        const struct csv_case *c = &cases[i];
        struct sd_csv_options o = {c->delim, c->enc, c->max_row};
        int fd = memfd_with(c->in, c->len);
        for (size_t b = 0; b < sizeof(blocks) / sizeof(*blocks); b++) {
            char *got = read_fd(fd, 0, 1, &o, blocks[b]);
            if (strcmp(got, c->want) != 0) {
                fail_msg("case %zu block %zu:\n got: %s\nwant: %s", i, blocks[b], got, c->want);
            }
            free(got);
        }
        /* Resume after each row: the output must be the rest of the memory reader's. */
        struct sd_csv_reader *r = NULL;
        assert_int_equal(sd_csv_open_mem(c->in, c->len, &o, &r), 0);
        struct sd_buf trace;
        sd_buf_init(&trace);
        struct resume_point points[MAX_POINTS];
        size_t n_points = 0;
        drain_points(r, &trace, points, &n_points);
        struct sd_csv_options ro = {sd_csv_delimiter(r), c->enc, c->max_row};
        sd_csv_free(r);
        for (size_t k = 0; k < n_points; k++) {
            char *got = read_fd(fd, points[k].off, points[k].line, &ro, 3);
            const char *want = trace.data + points[k].trace_len;
            if (strcmp(got, want) != 0) {
                fail_msg("case %zu resume at %llu:\n got: %s\nwant: %s", i,
                         (unsigned long long)points[k].off, got, want);
            }
            free(got);
        }
        sd_buf_release(&trace);
        close(fd);
    }
}

/* The brief's scenario: read 3 rows, commit the position, reopen there, get row 4. */
static void test_resume_after_three_rows(void **state)
{
    static const char in[] = "id;name;note\r\n"
                             "1;Ann;\"two\r\nlines\"\r\n"
                             "\r\n"
                             "2;B\xc3\xa9la;x\r\n"
                             "3;Cy;\"a;b\"\r\n"
                             "4;Dee;\"\"\"q\"\"\"\r\n"
                             "5;Eve;end";
    int fd = memfd_with(in, sizeof(in) - 1);
    struct sd_csv_reader *r = NULL;
    assert_int_equal(sd_csv_open_fd(fd, 0, 1, NULL, &r), 0);
    struct sd_csv_row row;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(sd_csv_next(r, &row), 1);
    }
    assert_string_equal(row.fields[1], "B\xc3\xa9la");
    assert_int_equal(row.line, 5);
    uint64_t off, line;
    sd_csv_position(r, &off, &line);
    char delim = sd_csv_delimiter(r);
    assert_int_equal(delim, ';');
    sd_csv_free(r);
    assert_int_equal(off, strstr(in, "3;Cy") - in);
    assert_int_equal(line, 6);

    struct sd_csv_options o = {delim, SD_CSV_UTF8, 0};
    assert_int_equal(sd_csv_open_fd(fd, off, line, &o, &r), 0);
    assert_int_equal(sd_csv_next(r, &row), 1);
    assert_int_equal(row.n, 3);
    assert_string_equal(row.fields[0], "3");
    assert_string_equal(row.fields[2], "a;b");
    assert_int_equal(row.line, 6);
    assert_int_equal(sd_csv_next(r, &row), 1);
    assert_string_equal(row.fields[2], "\"q\"");
    assert_int_equal(row.line, 7);
    assert_int_equal(sd_csv_next(r, &row), 1);
    assert_string_equal(row.fields[2], "end");
    assert_int_equal(row.line, 8);
    assert_int_equal(sd_csv_next(r, &row), 0);
    sd_csv_free(r);
    close(fd);
}

static void test_field_count_limit(void **state)
{
    struct sd_buf in;
    sd_buf_init(&in);
    for (int i = 0; i < SD_CSV_MAX_FIELDS; i++) {
        sd_buf_puts(&in, i ? ",x" : "x");
    }
    sd_buf_puts(&in, "\n");
    size_t first = in.len;
    for (int i = 0; i <= SD_CSV_MAX_FIELDS; i++) {
        sd_buf_puts(&in, i ? ",y" : "y");
    }
    sd_buf_puts(&in, "\n");
    struct sd_csv_reader *r = NULL;
    assert_int_equal(sd_csv_open_mem(in.data, in.len, NULL, &r), 0);
    struct sd_csv_row row;
    assert_int_equal(sd_csv_next(r, &row), 1);
    assert_int_equal(row.n, SD_CSV_MAX_FIELDS);
    assert_int_equal(sd_csv_next(r, &row), -EINVAL);
    assert_string_equal(sd_csv_error(r), "line 2: more than 1000 fields");
    assert_int_equal(sd_csv_next(r, &row), -EINVAL);
    uint64_t off, line;
    sd_csv_position(r, &off, &line);
    assert_int_equal(off, first);
    assert_int_equal(line, 2);
    sd_csv_free(r);
    sd_buf_release(&in);
}

/* The default limit is 1 MiB; a longer row (here an unclosed quote swallowing the rest of a
 * big input) stops the reader without buffering the whole input. */
static void test_default_row_limit(void **state)
{
    size_t n = 3 * 1024 * 1024;
    char *in = sd_malloc(n);
    memset(in, 'a', n);
    in[0] = '"';
    for (size_t i = 100; i < n; i += 100) {
        in[i] = '\n';
    }
    struct sd_csv_reader *r = NULL;
    assert_int_equal(sd_csv_open_mem(in, n, NULL, &r), 0);
    struct sd_csv_row row;
    assert_int_equal(sd_csv_next(r, &row), -EINVAL);
    assert_string_equal(sd_csv_error(r), "line 1: row longer than 1048576 bytes (the quoted field "
                                         "opened on line 1 is still open)");
    sd_csv_free(r);

    /* Exactly 1 MiB of one field passes. */
    memset(in, 'b', n);
    in[1024 * 1024] = '\n';
    assert_int_equal(sd_csv_open_mem(in, 1024 * 1024 + 1, NULL, &r), 0);
    assert_int_equal(sd_csv_next(r, &row), 1);
    assert_int_equal(strlen(row.fields[0]), 1024 * 1024);
    assert_int_equal(sd_csv_next(r, &row), 0);
    sd_csv_free(r);
    free(in);
}

static void test_bad_arguments(void **state)
{
    struct sd_csv_reader *r = NULL;
    struct sd_csv_options o = {'|', SD_CSV_UTF8, 0};
    assert_int_equal(sd_csv_open_mem("a", 1, &o, &r), -EINVAL);
    o = (struct sd_csv_options){',', (enum sd_csv_encoding)7, 0};
    assert_int_equal(sd_csv_open_mem("a", 1, &o, &r), -EINVAL);
    assert_int_equal(sd_csv_open_mem(NULL, 1, NULL, &r), -EINVAL);
    assert_null(r);
    int fd = memfd_with("a,b\n", 4);
    assert_int_equal(sd_csv_open_fd(fd, 2, 1, NULL, &r), -EINVAL); /* resume needs delimiter */
    assert_int_equal(sd_csv_open_fd(fd, 0, 0, NULL, &r), -EINVAL); /* lines are 1-based */
    assert_int_equal(sd_csv_open_fd(-1, 0, 1, NULL, &r), -EINVAL);
    assert_null(r);
    /* Offset 0 reads from byte 0 whatever the fd's file position. */
    assert_int_equal(sd_csv_open_fd(fd, 0, 1, NULL, &r), 0);
    struct sd_csv_row row;
    assert_int_equal(sd_csv_next(r, &row), 1);
    assert_int_equal(row.n, 2);
    sd_csv_free(r);
    close(fd);
    sd_csv_free(NULL);

    /* A pipe is read from where it is. */
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    assert_int_equal(write(p[1], "x;y\n", 4), 4);
    close(p[1]);
    assert_int_equal(sd_csv_open_fd(p[0], 0, 1, NULL, &r), 0);
    assert_int_equal(sd_csv_next(r, &row), 1);
    assert_string_equal(row.fields[1], "y");
    assert_int_equal(sd_csv_next(r, &row), 0);
    sd_csv_free(r);
    close(p[0]);

    /* A read error is fatal and sticky. */
    int dir = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(dir >= 0);
    assert_int_equal(sd_csv_open_fd(dir, 0, 1, NULL, &r), 0);
    assert_int_equal(sd_csv_next(r, &row), -EIO);
    assert_non_null(strstr(sd_csv_error(r), "read error"));
    assert_int_equal(sd_csv_next(r, &row), -EIO);
    sd_csv_free(r);
    close(dir);
}

/* Throughput on a generated 1,000,000-row, 9-column file, only with SD_CSV_BENCH=<path>. */
static void test_bench(void **state)
{
    const char *path = getenv("SD_CSV_BENCH");
    if (!path || !*path) {
        skip();
    }
    const long rows = 1000000;
    if (access(path, R_OK) != 0) {
        FILE *f = fopen(path, "we");
        assert_non_null(f);
        fputs("id,event,date,time,venue,section,seat,price,customer\n", f);
        for (long i = 1; i < rows; i++) {
            fprintf(f,
                    "%ld,\"Die Zauberfl\xc3\xb6te, Act %ld\",2025-%02ld-%02ld,19:30:00,Staatsoper,"
                    "Parkett %ld,%ld,%ld.50,cust-%08ld@example.org\n",
                    i, i % 3 + 1, i % 12 + 1, i % 28 + 1, i % 40, i % 500, 20 + i % 180, i * 7);
        }
        assert_int_equal(fclose(f), 0);
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    off_t size = lseek(fd, 0, SEEK_END);
    for (int pass = 0; pass < 3; pass++) {
        struct sd_csv_reader *r = NULL;
        assert_int_equal(sd_csv_open_fd(fd, 0, 1, NULL, &r), 0);
        int64_t t0 = sd_mono_usec();
        struct sd_csv_row row;
        long n = 0;
        size_t fields = 0;
        int rc;
        while ((rc = sd_csv_next(r, &row)) == 1) {
            n++;
            fields += row.n;
        }
        int64_t dt = sd_mono_usec() - t0;
        assert_int_equal(rc, 0);
        assert_int_equal(n, rows);
        printf("csv bench: %ld rows (%zu fields, %.1f MB) in %.3f s: %.0f rows/s, %.0f MB/s\n", n,
               fields, (double)size / 1e6, (double)dt / 1e6, (double)n * 1e6 / (double)dt,
               (double)size / (double)dt);
        sd_csv_free(r);
    }
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_detected_delimiter),
        cmocka_unit_test(test_fd_blocks_and_resume),
        cmocka_unit_test(test_resume_after_three_rows),
        cmocka_unit_test(test_field_count_limit),
        cmocka_unit_test(test_default_row_limit),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_bench),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
