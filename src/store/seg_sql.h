/* seg_sql.h — the segment rule compiler, shared by the backends: a checked rule tree
 * (store/audience.h) becomes ONE SELECT over the profiles of a tenant+env, with every value of
 * the rule as a numbered parameter, in the SQL dialect the caller names. Backend-neutral: it
 * neither opens nor runs anything; the backend prepares the text, binds and steps.
 *
 * Parameters. The text uses numbered placeholders (SQLite ?N, PostgreSQL $N). The first ones are
 * the same in every query and are bound by the caller:
 *   1 tenant_id (int), 2 env (int 0/1),
 *   and, unless count_only: 3 after (int: members have ids > after), 4 limit (int: at most that
 *   many rows; "no limit" is -1 in SQLite and NULL in PostgreSQL, whose LIMIT refuses negatives).
 * The rule's own values follow from `first_param` on (3 for a count, 5 otherwise), listed in
 * `params` in order, so params[k] is parameter number first_param + k. No number is skipped:
 * PostgreSQL must infer or be told the type of every parameter up to the highest.
 * The rows: count_only, one row with the number of members; otherwise the member profile ids in
 * ascending order (ORDER BY p.id).
 *
 * Errors: -EINVAL when the tree is malformed (a node or condition the parser never makes: a
 * wrong value count, an unknown field or kind, nesting deeper than 64). Allocation failure
 * aborts. Pure function of its input: any thread. */
#ifndef SD_STORE_SEG_SQL_H
#define SD_STORE_SEG_SQL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/audience.h"

/* The spelling of one SQL dialect (seg_sql.c lists what differs and why). */
struct sd_seg_dialect;
extern const struct sd_seg_dialect sd_seg_dialect_sqlite;
extern const struct sd_seg_dialect sd_seg_dialect_pg;

enum sd_seg_param_type { SD_SEG_P_INT, SD_SEG_P_TEXT };

struct sd_seg_param {
    enum sd_seg_param_type type;
    int64_t i;  /* SD_SEG_P_INT */
    char *text; /* SD_SEG_P_TEXT: owned, never NULL */
};

/* A compiled query. The caller owns it and releases it with sd_seg_sql_release. */
struct sd_seg_sql {
    char *sql; /* NUL-terminated; holds no value of the rule, so it may be logged */
    size_t len;
    struct sd_seg_param *params; /* params[k] is parameter number first_param + k */
    size_t n_params;
    unsigned first_param; /* 3 (count_only) or 5 */
};

/* Compile `rule` at now_usec (relative times resolve against it) into *ret (written only on
 * success). count_only: the query counts the members instead of listing a page of them. */
int sd_seg_sql_build(const struct sd_seg_rule *rule, int64_t now_usec, bool count_only,
                     const struct sd_seg_dialect *dialect, struct sd_seg_sql *ret);

/* Free what a compiled query holds and empty it; an emptied or zeroed one is fine. */
void sd_seg_sql_release(struct sd_seg_sql *q);

/* The dialect's name ("sqlite", "postgresql"), for logs and tests. */
const char *sd_seg_dialect_name(const struct sd_seg_dialect *dialect);

#endif
