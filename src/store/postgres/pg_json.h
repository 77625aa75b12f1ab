/* pg_json.h — the record documents of the PostgreSQL backend, made byte for byte as the SQLite
 * backend makes them with json_patch, json_set and json_object (SQLite 3.40's JSON rendering):
 * compact, member order of the target kept, new members appended in the patch's order, members
 * patched to null dropped, and every string and number copied as written. PostgreSQL's jsonb
 * reorders keys and re-prints numbers, and jansson re-prints reals, so the documents are built
 * here in C over the text itself. Private to src/store/postgres/; pure functions, any thread.
 *
 * Errors: 0 on success, -EINVAL when a text is not one JSON value (never for the documents the
 * model writes). Results are malloc'ed, the caller's to free. */
#ifndef SD_PG_JSON_H
#define SD_PG_JSON_H

#include <stdbool.h>

#include "base/base.h"

/* json_patch(target, patch) (RFC 7396 merge patch); target NULL reads as "{}". With set_key,
 * then json_set(result, '$.<set_key>', set_value) (set_value a text). */
int sd_pg_json_patch(const char *target, const char *patch, const char *set_key,
                     const char *set_value, char **ret);

/* json_set(doc, '$.<key>', value) with value a text: replaces the member's value in place, or
 * appends the member. */
int sd_pg_json_set(const char *doc, const char *key, const char *value, char **ret);

/* Append s as SQLite writes a text into JSON (quotes, \" \\ \b \t \n \f \r, \u00xx). */
void sd_pg_json_string(struct sd_buf *b, const char *s);

/* The text json_extract(doc, '$.<key>') gives SQL for an object member, folded (sd_text_fold):
 * *ret_present false when doc has no such member; *ret NULL when it is null (or doc is not an
 * object). A string is unescaped; a number, true/false (1/0), an object or array as its text. */
int sd_pg_json_fold_member(const char *doc, const char *key, bool *ret_present, char **ret);

#endif
