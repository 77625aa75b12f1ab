/* csv_reader.h — a streaming reader for CSV exports (RFC 4180) from venue systems.
 *
 * The reader hands out one row at a time and keeps memory bounded by the row limit, not by the
 * input size: input is read in blocks, and a row may not exceed max_row_bytes raw bytes (line
 * terminator excluded) nor SD_CSV_MAX_FIELDS fields.
 *
 * Dialect: fields separated by ',', ';' or tab; quoted with '"', a doubled quote inside a quoted
 * field is one quote, quoted fields may contain delimiters and line breaks. Lines end in LF, CRLF
 * or a lone CR; the last line may lack a terminator; blank lines are skipped. Spaces are part of
 * a field (no trimming); a quote inside an unquoted field, or anything but a delimiter or line
 * end after a closing quote, is a format error. Every field handed out is valid UTF-8 without
 * NUL: UTF-8 input is checked (a leading BOM is dropped), Windows-1252 input is converted.
 *
 * Line numbers count physical lines (LF, CRLF and a lone CR each end one line), 1-based. The
 * position (sd_csv_position) is the byte offset just after the last row handed out or skipped,
 * with the line number there: an importer stores both with the rows it commits and later
 * resumes with sd_csv_open_fd(fd, offset, line, ...) exactly at the next row.
 *
 * Errors: sd_csv_next returns -EILSEQ for a row with bad encoding (the row is consumed; the next
 * call goes on with the following row) and -EINVAL/-EIO for fatal errors (unclosed quote at end
 * of input, stray quote, row too large, too many fields, read error), after which every call
 * returns the same code. sd_csv_error gives a message such as "line 12, column 3: invalid UTF-8"
 * (column = 1-based field number).
 *
 * Thread rules: a reader is used by one thread at a time; distinct readers are independent. */
#ifndef SD_FORMATS_CSV_READER_H
#define SD_FORMATS_CSV_READER_H

#include <stddef.h>
#include <stdint.h>

#define SD_CSV_MAX_FIELDS 1000               /* more fields in one row is a fatal error */
#define SD_CSV_DEFAULT_MAX_ROW (1024 * 1024) /* max_row_bytes when 0 is given */

enum sd_csv_encoding { SD_CSV_UTF8 = 0, SD_CSV_CP1252 = 1 };

struct sd_csv_options {
    char delimiter; /* ',', ';', '\t', or 0 = detect from the first row */
    enum sd_csv_encoding encoding;
    size_t max_row_bytes; /* 0 = 1 MiB */
};

struct sd_csv_row {
    char **fields; /* UTF-8, NUL-terminated; owned by the reader, valid until the next call */
    size_t n;
    uint64_t line; /* 1-based physical line where the row starts */
};

struct sd_csv_reader;

/* Read from fd (not closed by the reader) starting at byte `offset` (0, or a position from
 * sd_csv_position) whose line number is `line` (1 at offset 0). At offset 0 a UTF-8 BOM is
 * skipped. When resuming (offset > 0) pass the delimiter detected before (no detection).
 * The fd is positioned with lseek; at offset 0 a non-seekable fd (pipe) is read from where it
 * is. o may be NULL (defaults: detect, UTF-8, 1 MiB). Returns 0, -EINVAL for bad options (an
 * unknown delimiter or encoding, offset > 0 without a delimiter, line 0) or -errno of lseek. */
int sd_csv_open_fd(int fd, uint64_t offset, uint64_t line, const struct sd_csv_options *o,
                   struct sd_csv_reader **ret);

/* Same over memory (tests, fuzzing); buf must stay valid while the reader lives. */
int sd_csv_open_mem(const char *buf, size_t len, const struct sd_csv_options *o,
                    struct sd_csv_reader **ret);

/* 1: a row in *row; 0: end of input; -EILSEQ: this row is bad (message in sd_csv_error, line in
 * row->line), the next call continues; -EINVAL: fatal format error; -EIO: read error.
 * On every return but 1, row->fields is NULL, row->n 0 and row->line: for -EILSEQ the line where
 * the bad row starts (the message names the line of the bad byte, later if the row spans lines),
 * for fatal errors the line the message names, at end of input the position's line. */
int sd_csv_next(struct sd_csv_reader *r, struct sd_csv_row *row);

/* Message of the last error sd_csv_next returned ("" if none): lowercase, no trailing period,
 * starting with "line N" or "line N, column C". Owned by the reader. */
const char *sd_csv_error(const struct sd_csv_reader *r);

/* The delimiter: given, or detected (0 before the first sd_csv_next when detecting). */
char sd_csv_delimiter(const struct sd_csv_reader *r);

/* Byte offset just after the last row returned (or skipped as bad) and the line number there. */
void sd_csv_position(const struct sd_csv_reader *r, uint64_t *ret_offset, uint64_t *ret_line);

void sd_csv_free(struct sd_csv_reader *r); /* NULL ok */

/* Tests and tuning: read(2) at most n bytes at a time from the fd (default 64 KiB, n >= 1).
 * Results never depend on it; call it before the first sd_csv_next. No effect on memory input. */
void sd_csv_set_block_size(struct sd_csv_reader *r, size_t n);

#endif
