/* bodyscan.h — what a JSON body will cost once parsed, counted while it streams in.
 *
 * The server parses a whole body with jansson after it has arrived, and jansson's tree costs
 * far more than the text: an empty object `{}` (3 bytes with its comma) becomes about 235 bytes,
 * so an 8 MiB body of them was 630 MiB of tree. The scanner reads each chunk as it arrives
 * (strings are skipped, so it never mistakes their content for structure) and keeps:
 *   - records: objects opened at depth 2 (the elements of the top-level arrays)
 *   - depth: the deepest nesting seen
 *   - parsed_bytes: an estimate of the parsed tree, from per-node weights measured on jansson
 *     2.14 (x86-64, glibc malloc) and rounded up: SD_SCAN_COST_* below, plus the body's bytes
 *     (string text is copied into the tree).
 * It does not validate: a body it counts may still be malformed JSON (jansson says so later);
 * for malformed input the figures are still bounded by the bytes fed. */
#ifndef SD_SERVER_BODYSCAN_H
#define SD_SERVER_BODYSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SD_SCAN_COST_OBJECT 256 /* measured 235 (empty, in an array) */
#define SD_SCAN_COST_ARRAY 160  /* measured 140 */
#define SD_SCAN_COST_STRING 96  /* a string or a member name; measured 92 and about 100 */
#define SD_SCAN_COST_NUMBER 48  /* measured 40 (integer) and 46 (real) */
#define SD_SCAN_COST_LITERAL 16 /* true/false/null are shared: the array slot, measured 14 */

struct sd_body_scan {
    int depth;     /* current nesting */
    int max_depth; /* deepest seen */
    bool in_string, escape, in_bare;
    size_t records;
    uint64_t parsed_bytes;
};

/* Zeroed state is the initial state; _init is there for clarity. */
void sd_body_scan_init(struct sd_body_scan *s);
/* Account one chunk of the body. */
void sd_body_scan_feed(struct sd_body_scan *s, const char *data, size_t n);

#endif
