/* csv_chunks.h — the reading half of a CSV import, on a thread of its own.
 *
 * A thread reads rows (formats/csv_reader.h), maps each (the instance's mapping) and, when asked,
 * validates the chunk (sd_validate_ingest), then hands the chunk to the importer through a queue
 * two chunks deep. So reading, mapping and checking the next rows overlaps with storing the last
 * ones, and with reject_file the writer thread — which every other write waits for while a file
 * is stored — only stores. Rows refused on the way (bad encoding or quoting, wrong field count,
 * mapping or validation errors) travel with their chunk as ready errors.csv rows, so errors.csv
 * is written by the importer alone, in chunk order. */
#ifndef SD_CONNECTORS_CSV_CHUNKS_H
#define SD_CONNECTORS_CSV_CHUNKS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "model/model.h"

struct sd_csv_reader;
struct sd_mapping;

struct sd_csv_chunk {
    json_t *body;     /* {"events"|"customers"|"sales": [record, …]}, possibly empty; NULL
                         once validated (batch has the records) */
    uint64_t *lines;  /* the CSV line each record of body starts on */
    size_t n;         /* records in body */
    bool validated;   /* batch holds body validated: record .index = its position in body */
    struct sd_batch batch;
    char *errs;       /* errors.csv rows ("line,column,message\n") of the rows refused here */
    size_t errs_len;
    uint64_t rejected;          /* rows refused here */
    uint64_t rows_end;          /* rows read, from the start of the file, after this chunk */
    uint64_t offset_end;        /* reader position after this chunk (byte offset, next line) */
    uint64_t line_end;
    bool eof;                   /* the last chunk of the file */
    int fatal;                  /* a read error ended the file here (negative errno) */
    char fatal_msg[300];
    struct sd_csv_chunk *next_spent; /* private */
};

struct sd_csv_chunks_options {
    struct sd_csv_reader *reader; /* positioned after the header or at a resume point; borrowed */
    enum sd_kind kind;
    const struct sd_mapping *mapping;
    const char *const *header;
    size_t n_header;
    size_t chunk_rows;   /* records per chunk at most */
    bool validate;       /* fill batch (and leave the rows it refuses out of body) */
    uint64_t rows_before; /* rows read before the reader's position (a resumed file) */
};

struct sd_csv_chunks;

/* Start the reading thread. 0, or a negative errno. */
int sd_csv_chunks_start(const struct sd_csv_chunks_options *o, struct sd_csv_chunks **ret);
/* The next chunk, waiting for it; the caller owns it. After one with eof, NULL. */
struct sd_csv_chunk *sd_csv_chunks_next(struct sd_csv_chunks *cs);
void sd_csv_chunk_free(struct sd_csv_chunk *ch); /* NULL ok */
/* Hand a chunk back when done with it: the reading thread frees it (NULL ok). */
void sd_csv_chunks_done(struct sd_csv_chunks *cs, struct sd_csv_chunk *ch);
/* Stop the thread (it ends after the row it is on), drop what is queued, free. NULL ok. The
 * reader may be used or freed again afterwards. */
void sd_csv_chunks_stop(struct sd_csv_chunks *cs);

/* ---- errors.csv rows (shared with the importer) ------------------------------------------ */
/* One row: line,"column","message". */
void sd_csv_error_row(FILE *f, uint64_t line, const char *column, const char *message);
/* Issues of validation or store ("/sales/7/currency", index into lines[0..n)) → rows; returns
 * how many distinct records they hit, marking them in hit (n entries) when it is not NULL. An
 * issue that names no record becomes a row for line 0. With cs, a row's column is the file's
 * own column name (the one the mapping took the field from: "EventNo", not "event_id"). */
uint64_t sd_csv_record_issues(FILE *f, const struct sd_csv_chunks *cs, const uint64_t *lines,
                              size_t n, const struct sd_issues *issues, bool *hit);

#endif
