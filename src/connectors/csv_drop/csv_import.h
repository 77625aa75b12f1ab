/* csv_import.h — importing one CSV file through a connector: the part csv_drop and sftp_pull
 * share (both hand a complete local file to it).
 *
 * The file is read as a stream (formats/csv_reader.h: constant memory), each row mapped
 * (the instance's mapping) into a record of the file's kind, and stored through the webhook's
 * validation and store path in chunks of 1,000 records (read, mapped and validated on a thread of
 * their own: csv_chunks.h), with upsert semantics so a re-read stores
 * nothing twice. The file's identity is its SHA-256: the committed cursor names the file being
 * imported and how far it got, so after a crash a file is resumed (skip_rows) or redone
 * (reject_file, which stores nothing until the whole file is good), and a file whose import
 * committed before the crash is only acknowledged, never stored again.
 *
 * Afterwards the file moves to `processed/` with NAME.ack.json (rows read, records stored,
 * rejected, duration) or, when refused, to `failed/` with NAME.errors.csv listing every bad row
 * (line, column, message) — with skip_rows the skipped rows are listed next to the ack. */
#ifndef SD_CONNECTORS_CSV_IMPORT_H
#define SD_CONNECTORS_CSV_IMPORT_H

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "core/connector.h"

/* The settings both CSV connectors take: appended to each connector's own table, and filled
 * into a `struct sd_csv_import_conf` that must be the FIRST member of the connector's settings
 * struct (the importer reads it as `(const struct sd_csv_import_conf *)ctx->conf`). The enums
 * follow the order of the choices. */
enum sd_csv_kind { SD_CSV_KIND_AUTO, SD_CSV_KIND_EVENTS, SD_CSV_KIND_CUSTOMERS, SD_CSV_KIND_SALES };
enum sd_csv_delimiter {
    SD_CSV_DELIM_AUTO,
    SD_CSV_DELIM_COMMA,
    SD_CSV_DELIM_SEMICOLON,
    SD_CSV_DELIM_TAB
};
enum sd_csv_encoding_setting { SD_CSV_ENC_UTF8, SD_CSV_ENC_CP1252 };
enum sd_csv_policy { SD_CSV_REJECT_FILE, SD_CSV_SKIP_ROWS };

struct sd_csv_import_conf {
    int kind;      /* enum sd_csv_kind */
    int delimiter; /* enum sd_csv_delimiter */
    int encoding;  /* enum sd_csv_encoding_setting */
    int policy;    /* enum sd_csv_policy */
    int64_t settle_seconds;
};

#define SD_CSV_AT(member) offsetof(struct sd_csv_import_conf, member)
#define SD_CSV_IMPORT_SETTINGS                                                                     \
    {"kind", SD_SETTING_CHOICE, "\"auto\"", 0, 0,                                                  \
     "auto (from the file name: events*.csv, customers*.csv, sales*.csv), events, customers or "   \
     "sales",                                                                                      \
     SD_CHOICES("auto", "events", "customers", "sales"), SD_CSV_AT(kind)},                         \
        {"delimiter", SD_SETTING_CHOICE, "\"auto\"", 0, 0,                                         \
         "auto (detected from the header row), comma, semicolon or tab",                           \
         SD_CHOICES("auto", "comma", "semicolon", "tab"), SD_CSV_AT(delimiter)},                   \
        {"encoding", SD_SETTING_CHOICE, "\"utf-8\"", 0, 0,                                         \
         "utf-8 (with or without BOM) or windows-1252", SD_CHOICES("utf-8", "windows-1252"),       \
         SD_CSV_AT(encoding)},                                                                     \
        {"policy", SD_SETTING_CHOICE, "\"reject_file\"", 0, 0,                                     \
         "reject_file (the file is all or nothing) or skip_rows (store the good rows)",            \
         SD_CHOICES("reject_file", "skip_rows"), SD_CSV_AT(policy)},                               \
    {                                                                                              \
        "settle_seconds", SD_SETTING_INT, "2", 0, 3600,                                            \
            "a file is taken once unchanged this long (temporary names are always ignored)", NULL, \
            SD_CSV_AT(settle_seconds)                                                              \
    }

/* True for names worth importing: "*.csv" (any case), not hidden, not a temporary upload name. */
bool sd_csv_import_wanted(const char *name);

/* Sort key so that events files go before customers before sales (references resolve). */
int sd_csv_import_order(const char *name);

struct sd_csv_import_result {
    uint64_t rows_read;
    uint64_t records_stored;
    uint64_t records_rejected;
    int64_t duration_ms;
    bool failed;  /* the file went to failed/ */
    bool already; /* its import had committed before (crash): only acknowledged now */
    char sha256[65]; /* the file's identity in the cursor ("" if it could not be read) */
    /* Where the file, its ack and its error list ("" if none) are now. */
    char moved_path[PATH_MAX];
    char ack_path[PATH_MAX];
    char errors_path[PATH_MAX];
};

/* Import dir/name and move it to dir/processed or dir/failed with its ack/errors file.
 * Returns 0 (see res: a refused file is not an error of the run), -ECANCELED (stopping: the
 * file stays where it is and resumes next run), or a negative errno with the reason set
 * through sd_connector_fail (the file stays). */
int sd_csv_import_file(struct sd_connector_ctx *ctx, const char *dir, const char *name,
                       struct sd_csv_import_result *res);

/* The cursor tells a file stored but never acknowledged (a crash in between: the next run only
 * acknowledges it) from one acknowledged and then sent again (a new delivery, imported again)
 * by an "acked" mark, committed once the acknowledgement is where the venue looks.
 * sd_csv_import_file marks it once the local ack is written. A transport whose venue looks
 * elsewhere uses sd_csv_import_file_unmarked and calls sd_csv_import_mark_acked (name,
 * res->sha256) once the ack is there (sftp_pull: after the remote move and the ack upload). */
int sd_csv_import_file_unmarked(struct sd_connector_ctx *ctx, const char *dir, const char *name,
                                struct sd_csv_import_result *res);
void sd_csv_import_mark_acked(struct sd_connector_ctx *ctx, const char *name, const char *sha256);

/* What one run's files came to, for the connector's status: a run in which every file was
 * refused failed (last_error names the files); refused files among accepted ones, and rows
 * that skip_rows left out, are the run's warning ("3 rows skipped in sales.csv, see
 * processed/sales.csv.errors.csv"). */
struct sd_csv_run_summary {
    size_t files, refused, named;
    struct sd_buf refused_names; /* "a.csv, b.csv" (at most 5 named, then "and N more") */
    struct sd_buf skipped;       /* "N rows skipped in FILE, see WHERE; ..." */
};
void sd_csv_run_summary_init(struct sd_csv_run_summary *s);
/* One imported file (sd_csv_import_file returned 0). */
void sd_csv_run_summary_add(struct sd_csv_run_summary *s, const char *name,
                            const struct sd_csv_import_result *res);
/* Sets the run's error or warning through sd_connector_fail and returns the run's result:
 * -EINVAL when files were imported and every one was refused, else 0. Releases s. */
int sd_csv_run_summary_finish(struct sd_csv_run_summary *s, struct sd_connector_ctx *ctx);
/* Releases s without a word (the run failed for another reason). */
void sd_csv_run_summary_release(struct sd_csv_run_summary *s);

#endif
