/* segment_rules.h — the segment rule language: JSON in, a checked tree (struct sd_seg_rule,
 * store/audience.h) out. Pure: no I/O, no clock, no store.
 *
 * A rule is an object with exactly one key:
 *   {"all": [rule, …]}  {"any": [rule, …]}  {"not": rule}
 *   {"bought": {filter…}}                       at least one purchase matching every filter
 *   {"count": {"of": "purchases"|"tickets"|"events"|"spend", "where": {filter…},
 *              "currency": "EUR" (spend only), op: value, …}}
 *   {"first_purchase": {"where": {filter…}, op: time, …}}   ("exists": true|false too)
 *   {"last_purchase":  {"where": {filter…}, op: time, …}}
 *   {"customer": {filter…}}                     one of the person's source records matches
 * where a filter is `field: {op: value, …}` (several ops are ANDed), or the shorthand
 * `field: value` (eq) / `field: [values]` (in). README.md "Segments" lists every field and
 * operator with examples.
 *
 * Errors carry a JSON Pointer to the offending node: an unknown key points at the object that
 * holds it ("/rules/all/1/bought/composer" "unknown operator 'equals' (use eq, ne, in,
 * contains, prefix, exists)"), a bad value at the value. Every problem found is reported (up
 * to the issue list's limit), not just the first. */
#ifndef SD_CORE_SEGMENT_RULES_H
#define SD_CORE_SEGMENT_RULES_H

#include <jansson.h>

#include "model/model.h"
#include "store/audience.h"

#define SD_SEG_RULE_DEPTH_MAX 16  /* nesting of rules (all / any / not and their kids) */
#define SD_SEG_RULE_NODES_MAX 200 /* rules plus field conditions plus operators */
#define SD_SEG_RULE_LIST_MAX 500  /* values of one "in" */
#define SD_SEG_RULE_TEXT_MAX 500  /* bytes of one text value */
#define SD_SEG_RULE_AGO_MAX 36500 /* days a relative time may reach back or forward */

/* Parse and check `rule`, whose JSON Pointer in the request is `ptr` (e.g. "/rules"; "" for
 * the root). Returns 0 and a new tree in *ret (free with sd_seg_rule_free), or -EINVAL with
 * the problems added to errors (and *ret untouched). Reentrant. */
int sd_seg_rule_parse(const json_t *rule, const char *ptr, struct sd_seg_rule **ret,
                      struct sd_issues *errors);

#endif
