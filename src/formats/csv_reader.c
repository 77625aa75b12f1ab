/* csv_reader.c — streaming CSV reader on top of libcsv (csv_reader.h has the dialect).
 *
 * Design invariants:
 * - Pieces. libcsv reports a row end only through its row callback, not where in the fed bytes
 *   it happened. So the reader feeds libcsv pieces that end at the first line break (CR, LF or
 *   CRLF, found with memchr, never byte by byte): a row can only end on a piece's last line
 *   break, hence "row ended" after a csv_parse call means the row ends at the end of that piece
 *   and the position is exact. A piece has at most one line break, which makes line counting
 *   and blank-line skipping free. A CR at the end of the buffered bytes is held back until the
 *   next byte is known, so CRLF is never split into two line breaks across a read.
 * - Bounded memory. Bytes of the current row are counted before they are fed; a row over the
 *   limit stops the reader before libcsv buffers more than the limit. libcsv grows its field
 *   buffer by a fixed block (128 bytes); the block is raised to the current size before each
 *   call so growth is geometric. The read buffer is 64 KiB and only grows while detecting the
 *   delimiter of a header row longer than that (up to the row limit).
 * - libcsv options. CSV_STRICT (+ CSV_STRICT_FINI) turns stray quotes and an unclosed quote at
 *   end of input into errors. A space function that never matches disables libcsv's default
 *   trimming of spaces and tabs around unquoted fields (RFC 4180: spaces are part of a field).
 *   CSV_APPEND_NULL is not used: fields are copied by length into the row buffer.
 * - Errors. Encoding errors mark the row bad (first error wins) and the row is still parsed to
 *   its end, so the caller can continue; format errors are sticky in r->fatal. */
#include "formats/csv_reader.h"

#include <csv.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "model/model.h"

#define BLOCK_SIZE (64 * 1024)
#define PARSER_BLOCK_MIN 1024

struct sd_csv_reader {
    struct csv_parser parser;

    /* Input: unconsumed bytes are data[start, end); data[0] is at input offset base. */
    int fd;           /* -1 for memory input */
    const char *data; /* == buf for fd input */
    char *buf;
    size_t cap;
    size_t start, end;
    uint64_t base;
    bool eof;
    size_t block;
    bool bom_checked;

    char delim;
    enum sd_csv_encoding enc;
    size_t max_row;

    uint64_t line;              /* line number of data[start] */
    uint64_t pos_off, pos_line; /* after the last row handed out */

    /* Current row. Field i is text[offs[i]], NUL-terminated. */
    bool in_row;
    bool row_done;
    bool row_bad;
    uint64_t row_line;
    uint64_t field_line; /* line where the field being parsed starts */
    size_t row_bytes;    /* raw bytes of the row fed in earlier pieces */
    size_t nfields;      /* fields seen, may exceed SD_CSV_MAX_FIELDS */
    size_t *offs;
    char **fields;
    size_t fields_cap;
    char *text;
    size_t text_len, text_cap;

    int fatal;
    uint64_t fatal_line;
    char err[192];
};

/* Windows-1252 0x80..0x9F (eight per line, as in the code chart); 0 marks the five undefined
 * bytes. 0xA0..0xFF map to U+00A0..U+00FF. */
/* clang-format off */
static const uint16_t cp1252_high[32] = {
    0x20ac, 0,      0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021,
    0x02c6, 0x2030, 0x0160, 0x2039, 0x0152, 0,      0x017d, 0,
    0,      0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014,
    0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0,      0x017e, 0x0178,
};
/* clang-format on */

static int never_space(unsigned char c)
{
    return 0;
}

static void set_error(struct sd_csv_reader *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_error(struct sd_csv_reader *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sd_utf8_vsnprintf(r->err, sizeof(r->err), fmt, ap);
    va_end(ap);
}

/* Make a fatal error sticky; line is the line the message names. */
static int fail(struct sd_csv_reader *r, int code, uint64_t line)
{
    r->fatal = code;
    r->fatal_line = line;
    return code;
}

/* True if s has no NUL and no byte >= 0x80; eight bytes at a time. A word passes only if every
 * byte is in 1..0x7f: then b - 1 borrows nothing and neither b nor b - 1 has the top bit set. */
static bool plain_ascii(const unsigned char *s, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (((w - 0x0101010101010101ULL) | w) & 0x8080808080808080ULL) {
            return false;
        }
    }
    for (; i < n; i++) {
        if (s[i] == 0 || s[i] >= 0x80) {
            return false;
        }
    }
    return true;
}

/* Line breaks (LF, CRLF, lone CR) in s[0, n), for the line of an error inside a field. */
static uint64_t count_breaks(const char *s, size_t n)
{
    uint64_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n' || (s[i] == '\r' && (i + 1 == n || s[i + 1] != '\n'))) {
            k++;
        }
    }
    return k;
}

static void row_error(struct sd_csv_reader *r, uint64_t line, size_t col, const char *what)
{
    r->row_bad = true;
    set_error(r, "line %" PRIu64 ", column %zu: %s", line, col, what);
}

static void text_reserve(struct sd_csv_reader *r, size_t n)
{
    if (r->text_cap - r->text_len >= n) {
        return;
    }
    size_t cap = r->text_cap ? r->text_cap : 1024;
    while (cap - r->text_len < n) {
        cap *= 2;
    }
    r->text = sd_realloc(r->text, cap);
    r->text_cap = cap;
}

static void put_utf8(char **p, uint32_t cp)
{
    char *o = *p;
    if (cp < 0x80) {
        *o++ = (char)cp;
    } else if (cp < 0x800) {
        *o++ = (char)(0xc0 | (cp >> 6));
        *o++ = (char)(0x80 | (cp & 0x3f));
    } else {
        *o++ = (char)(0xe0 | (cp >> 12));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
        *o++ = (char)(0x80 | (cp & 0x3f));
    }
    *p = o;
}

/* Append one field as UTF-8 to the row text; false (row marked bad) on an encoding error. */
static bool store_text(struct sd_csv_reader *r, const char *s, size_t len, uint64_t line,
                       size_t col)
{
    const unsigned char *u = (const unsigned char *)s;
    if (plain_ascii(u, len)) {
        text_reserve(r, len + 1);
        memcpy(r->text + r->text_len, s, len);
        r->text_len += len;
        r->text[r->text_len++] = '\0';
        return true;
    }
    if (r->enc == SD_CSV_UTF8) {
        if (!sd_utf8_valid(s, len)) {
            /* Find the first bad sequence for the message (rare path). */
            size_t i = 0;
            uint32_t cp = 0;
            int n;
            while (i < len && (n = sd_utf8_next(s + i, len - i, &cp)) > 0 && cp != 0) {
                i += (size_t)n;
            }
            bool nul = i < len && s[i] == '\0';
            row_error(r, line + count_breaks(s, i), col, nul ? "NUL byte" : "invalid UTF-8");
            return false;
        }
        text_reserve(r, len + 1);
        memcpy(r->text + r->text_len, s, len);
        r->text_len += len;
        r->text[r->text_len++] = '\0';
        return true;
    }
    /* Windows-1252: at most 3 UTF-8 bytes per input byte (row size caps len). */
    text_reserve(r, len * 3 + 1);
    char *o = r->text + r->text_len;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = u[i];
        if (c >= 0x80 && c < 0xa0 && cp1252_high[c - 0x80] == 0) {
            char what[64];
            snprintf(what, sizeof(what), "byte 0x%02X is not defined in Windows-1252", c);
            row_error(r, line + count_breaks(s, i), col, what);
            return false;
        }
        if (c == 0) {
            row_error(r, line + count_breaks(s, i), col, "NUL byte");
            return false;
        }
        put_utf8(&o, c >= 0x80 && c < 0xa0 ? cp1252_high[c - 0x80] : c);
    }
    *o++ = '\0';
    r->text_len = (size_t)(o - r->text);
    return true;
}

/* libcsv field callback. */
static void on_field(void *s, size_t len, void *data)
{
    struct sd_csv_reader *r = data;
    uint64_t line = r->field_line;
    /* The next field starts after this field's delimiter, which is in the piece being fed. */
    r->field_line = r->line;
    r->nfields++;
    if (r->nfields > SD_CSV_MAX_FIELDS || r->row_bad) {
        return;
    }
    size_t at = r->text_len;
    if (!store_text(r, s, len, line, r->nfields)) {
        return;
    }
    if (r->nfields > r->fields_cap) {
        size_t cap = r->fields_cap ? r->fields_cap * 2 : 16;
        r->offs = sd_realloc(r->offs, cap * sizeof(*r->offs));
        r->fields = sd_realloc(r->fields, cap * sizeof(*r->fields));
        r->fields_cap = cap;
    }
    r->offs[r->nfields - 1] = at;
}

/* libcsv row callback. */
static void on_row(int c, void *data)
{
    struct sd_csv_reader *r = data;
    r->row_done = true;
}

/* Read more input after the unconsumed bytes. Grows the buffer only when grow is set and the
 * buffer is full. Returns 0 (r->eof set at end of input) or -EIO (fatal, message set). */
static int fill(struct sd_csv_reader *r, bool grow)
{
    if (r->eof) {
        return 0;
    }
    if (r->start > 0) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->base += r->start;
        r->end -= r->start;
        r->start = 0;
    }
    if (r->end == r->cap) {
        if (!grow) {
            return 0;
        }
        r->cap *= 2;
        r->buf = sd_realloc(r->buf, r->cap);
        r->data = r->buf;
    }
    size_t want = r->cap - r->end;
    if (want > r->block) {
        want = r->block;
    }
    for (;;) {
        ssize_t n = read(r->fd, r->buf + r->end, want);
        if (n > 0) {
            r->end += (size_t)n;
            return 0;
        }
        if (n == 0) {
            r->eof = true;
            return 0;
        }
        if (errno != EINTR) {
            set_error(r, "line %" PRIu64 ": read error: %s", r->line, strerror(errno));
            return fail(r, -EIO, r->line);
        }
    }
}

/* Count candidate delimiters outside quotes in the first row, which starts at data[start]
 * (blank lines before it are already skipped); most frequent wins, ties go to ','. Reads ahead,
 * growing the buffer, until that row ends; only its first max_row + 1 bytes are looked at (a
 * longer row is fatal anyway), so the result does not depend on how the input is read. */
static int detect_delimiter(struct sd_csv_reader *r)
{
    size_t i = 0, comma = 0, semi = 0, tab = 0;
    bool quoted = false, ended = false;
    for (;;) {
        const char *s = r->data + r->start;
        size_t n = r->end - r->start;
        for (; i < n && i <= r->max_row && !ended; i++) {
            switch (s[i]) {
            case '"': quoted = !quoted; break;
            case ',': comma += !quoted; break;
            case ';': semi += !quoted; break;
            case '\t': tab += !quoted; break;
            case '\r':
            case '\n': ended = !quoted; break;
            default: break;
            }
        }
        if (ended || i > r->max_row || r->eof) {
            break;
        }
        int rc = fill(r, true);
        if (rc < 0) {
            return rc;
        }
    }
    r->delim = ',';
    if (semi > comma && semi >= tab) {
        r->delim = ';';
    } else if (tab > comma && tab > semi) {
        r->delim = '\t';
    }
    csv_set_delim(&r->parser, (unsigned char)r->delim);
    return 0;
}

/* First call: drop a UTF-8 BOM at offset 0. */
static int skip_bom(struct sd_csv_reader *r)
{
    r->bom_checked = true;
    if (r->base + r->start != 0) {
        return 0;
    }
    while (r->end - r->start < 3 && !r->eof) {
        int rc = fill(r, true);
        if (rc < 0) {
            return rc;
        }
    }
    if (r->end - r->start >= 3 && memcmp(r->data + r->start, "\xef\xbb\xbf", 3) == 0) {
        r->start += 3;
    }
    return 0;
}

/* Feed s[0, len) to libcsv; a strict-mode rejection or too many fields is fatal. */
static int feed(struct sd_csv_reader *r, const char *s, size_t len)
{
    size_t size = csv_get_buffer_size(&r->parser);
    if (size > PARSER_BLOCK_MIN) {
        csv_set_blk_size(&r->parser, size);
    }
    size_t done = csv_parse(&r->parser, s, len, on_field, on_row, r);
    if (r->nfields > SD_CSV_MAX_FIELDS) {
        set_error(r, "line %" PRIu64 ": more than %d fields", r->row_line, SD_CSV_MAX_FIELDS);
        return fail(r, -EINVAL, r->row_line);
    }
    if (done < len) {
        /* Only strict mode stops early (allocation failure aborts in sd_realloc). */
        const char *what =
            s[done] == '"' ? "quote in unquoted field" : "unexpected character after closing quote";
        set_error(r, "line %" PRIu64 ", column %zu: %s", r->line, r->nfields + 1, what);
        return fail(r, -EINVAL, r->line);
    }
    return 0;
}

static int emit(struct sd_csv_reader *r, struct sd_csv_row *row)
{
    r->in_row = false;
    r->pos_off = r->base + r->start;
    r->pos_line = r->line;
    if (r->row_bad) {
        return -EILSEQ; /* sd_csv_next fills in the row */
    }
    row->line = r->row_line;
    for (size_t i = 0; i < r->nfields; i++) {
        r->fields[i] = r->text + r->offs[i];
    }
    row->fields = r->fields;
    row->n = r->nfields;
    return 1;
}

/* End of input: flush a last row without line terminator. */
static int finish(struct sd_csv_reader *r, struct sd_csv_row *row)
{
    if (!r->delim) {
        r->delim = ','; /* no row at all: nothing to count, the tie rule applies */
    }
    if (!r->in_row) {
        return 0;
    }
    if (csv_fini(&r->parser, on_field, on_row, r) != 0) {
        set_error(r, "line %" PRIu64 ": quoted field not closed before end of file", r->field_line);
        return fail(r, -EINVAL, r->field_line);
    }
    if (r->nfields > SD_CSV_MAX_FIELDS) {
        set_error(r, "line %" PRIu64 ": more than %d fields", r->row_line, SD_CSV_MAX_FIELDS);
        return fail(r, -EINVAL, r->row_line);
    }
    return emit(r, row);
}

static int too_large(struct sd_csv_reader *r)
{
    if (r->parser.quoted) {
        set_error(r,
                  "line %" PRIu64 ": row longer than %zu bytes (the quoted field opened on "
                  "line %" PRIu64 " is still open)",
                  r->row_line, r->max_row, r->field_line);
    } else {
        set_error(r, "line %" PRIu64 ": row longer than %zu bytes", r->row_line, r->max_row);
    }
    return fail(r, -EINVAL, r->row_line);
}

static int next_row(struct sd_csv_reader *r, struct sd_csv_row *row)
{
    if (r->fatal) {
        return r->fatal;
    }
    if (!r->bom_checked) {
        int rc = skip_bom(r);
        if (rc < 0) {
            return rc;
        }
    }
    r->in_row = false;
    r->row_done = false;
    r->row_bad = false;
    r->nfields = 0;
    r->text_len = 0;
    for (;;) {
        size_t avail = r->end - r->start;
        if (avail == 0) {
            if (r->eof) {
                return finish(r, row);
            }
            int rc = fill(r, false);
            if (rc < 0) {
                return rc;
            }
            continue;
        }
        /* The piece: up to and including the first line break, or all that is buffered. */
        const char *s = r->data + r->start;
        const char *lf = memchr(s, '\n', avail);
        size_t scan = lf ? (size_t)(lf - s) : avail;
        const char *cr = memchr(s, '\r', scan);
        size_t content, len;
        if (cr) {
            content = (size_t)(cr - s);
            if (content + 1 < avail) {
                len = content + 1 + (s[content + 1] == '\n');
            } else if (r->eof) {
                len = content + 1;
            } else if (content > 0) {
                len = content; /* hold the CR back until the next byte is known */
            } else {
                int rc = fill(r, false);
                if (rc < 0) {
                    return rc;
                }
                continue;
            }
        } else if (lf) {
            content = scan;
            len = content + 1;
        } else {
            content = len = avail;
        }
        bool has_break = len > content;
        if (!r->in_row) {
            if (content == 0) {
                r->start += len; /* blank line */
                r->line++;
                continue;
            }
            if (!r->delim) {
                int rc = detect_delimiter(r);
                if (rc < 0) {
                    return rc;
                }
                continue; /* the buffer may have moved */
            }
            r->in_row = true;
            r->row_line = r->field_line = r->line;
            r->row_bytes = 0;
        }
        if (content > r->max_row || r->row_bytes > r->max_row - content) {
            /* Parse what fits first, so an earlier format error is the one reported. */
            size_t fits = r->row_bytes < r->max_row ? r->max_row - r->row_bytes : 0;
            int rc = feed(r, s, fits);
            return rc < 0 ? rc : too_large(r);
        }
        int rc = feed(r, s, len);
        if (rc < 0) {
            return rc;
        }
        r->start += len;
        if (has_break) {
            r->line++;
        }
        if (r->row_done) {
            return emit(r, row);
        }
        r->row_bytes += len;
    }
}

int sd_csv_next(struct sd_csv_reader *r, struct sd_csv_row *row)
{
    if (!r || !row) {
        return -EINVAL;
    }
    int rc = next_row(r, row);
    if (rc != 1) {
        row->fields = NULL;
        row->n = 0;
        row->line = rc == 0 ? r->pos_line : rc == -EILSEQ ? r->row_line : r->fatal_line;
    }
    return rc;
}

static int check_options(const struct sd_csv_options *o, struct sd_csv_options *ret)
{
    struct sd_csv_options d = {0};
    if (o) {
        d = *o;
    }
    if (d.delimiter != 0 && d.delimiter != ',' && d.delimiter != ';' && d.delimiter != '\t') {
        return -EINVAL;
    }
    if (d.encoding != SD_CSV_UTF8 && d.encoding != SD_CSV_CP1252) {
        return -EINVAL;
    }
    if (d.max_row_bytes == 0) {
        d.max_row_bytes = SD_CSV_DEFAULT_MAX_ROW;
    }
    *ret = d;
    return 0;
}

static struct sd_csv_reader *reader_new(const struct sd_csv_options *o)
{
    struct sd_csv_reader *r = sd_calloc(1, sizeof(*r));
    csv_init(&r->parser, CSV_STRICT | CSV_STRICT_FINI);
    csv_set_space_func(&r->parser, never_space);
    csv_set_realloc_func(&r->parser, sd_realloc);
    csv_set_blk_size(&r->parser, PARSER_BLOCK_MIN);
    r->fd = -1;
    r->block = BLOCK_SIZE;
    r->delim = o->delimiter;
    if (r->delim) {
        csv_set_delim(&r->parser, (unsigned char)r->delim);
    }
    r->enc = o->encoding;
    r->max_row = o->max_row_bytes;
    r->line = r->pos_line = 1;
    return r;
}

int sd_csv_open_fd(int fd, uint64_t offset, uint64_t line, const struct sd_csv_options *o,
                   struct sd_csv_reader **ret)
{
    struct sd_csv_options opts;
    if (fd < 0 || !ret || line == 0 || check_options(o, &opts) < 0 ||
        (offset > 0 && opts.delimiter == 0) || offset > (uint64_t)INT64_MAX) {
        return -EINVAL;
    }
    if (lseek(fd, (off_t)offset, SEEK_SET) < 0 && (errno != ESPIPE || offset > 0)) {
        return -errno;
    }
    struct sd_csv_reader *r = reader_new(&opts);
    r->fd = fd;
    r->cap = BLOCK_SIZE;
    r->buf = sd_malloc(r->cap);
    r->data = r->buf;
    r->base = r->pos_off = offset;
    r->line = r->pos_line = line;
    *ret = r;
    return 0;
}

int sd_csv_open_mem(const char *buf, size_t len, const struct sd_csv_options *o,
                    struct sd_csv_reader **ret)
{
    struct sd_csv_options opts;
    if (!ret || (!buf && len > 0) || check_options(o, &opts) < 0) {
        return -EINVAL;
    }
    struct sd_csv_reader *r = reader_new(&opts);
    r->data = buf ? buf : "";
    r->end = len;
    r->eof = true;
    *ret = r;
    return 0;
}

const char *sd_csv_error(const struct sd_csv_reader *r)
{
    return r ? r->err : "";
}

char sd_csv_delimiter(const struct sd_csv_reader *r)
{
    return r ? r->delim : 0;
}

void sd_csv_position(const struct sd_csv_reader *r, uint64_t *ret_offset, uint64_t *ret_line)
{
    if (ret_offset) {
        *ret_offset = r->pos_off;
    }
    if (ret_line) {
        *ret_line = r->pos_line;
    }
}

void sd_csv_set_block_size(struct sd_csv_reader *r, size_t n)
{
    if (r && n > 0) {
        r->block = n;
    }
}

void sd_csv_free(struct sd_csv_reader *r)
{
    if (!r) {
        return;
    }
    csv_free(&r->parser);
    free(r->buf);
    free(r->text);
    free(r->offs);
    free(r->fields);
    free(r);
}
