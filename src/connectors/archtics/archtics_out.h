/* archtics_out.h — customers out to Archtics: the pure parts of archtics_out.c (which fields of
 * a stagedoor customer become which Archtics customer fields, the field widths, and the merge
 * that turns a customer_query answer plus stagedoor's fields into a full customer_update),
 * declared here so that unit tests and the fuzz driver reach them without a server.
 *
 * Archtics' customer_update overwrites: a field it is not sent is blanked. So an update is
 * always customer_query → archtics_out_update_params (every field Archtics holds, stagedoor's
 * on top) → customer_update, and `other_info_1..20` travel at command1 level, never inside
 * `customer`. A value longer than its field (Char(n), counted in characters) is never sent:
 * the whole write is refused with the field and its width named, so nothing is truncated.
 *
 * Thread rules: pure functions, any thread. */
#ifndef SD_CONNECTORS_ARCHTICS_OUT_H
#define SD_CONNECTORS_ARCHTICS_OUT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* One Archtics customer field and its width (Char(n)). */
struct archtics_width {
    const char *field;
    int width;
};
/* Every customer field customer_update writes (name_type excepted: it cannot be updated), in
 * the order they are sent; terminated by {NULL, 0}. */
extern const struct archtics_width archtics_customer_widths[];
#define ARCHTICS_OTHER_INFO_N 20
#define ARCHTICS_OTHER_INFO_WIDTH 100
#define ARCHTICS_ALT_ID_WIDTH 50

/* The width of an Archtics customer field (other_info_N included), or 0 if it is none. */
int archtics_field_width(const char *field);

/* A stagedoor customer record (as stored: model fields plus the unknown fields it kept) → the
 * Archtics customer fields it gives, as an object of strings: email → email, first_name →
 * name_first, last_name → name_last, salutation → title, street → street_addr_1, post_code →
 * zip, ad_opt_out → email_optout ("1"/"0"), and any member already named as an Archtics
 * customer field (city, state, country, phone_cell, company_name, …: what an Archtics extract
 * or another source kept) as it is. Non-string values other than ad_opt_out are skipped.
 * Returns 0 with *ret (new reference), or -EMSGSIZE when a value does not fit its field: why
 * then names the Archtics field, the stagedoor field, the value's length and the width
 * (never the value: it is personal data). */
int archtics_out_fields(const json_t *record, json_t **ret, char *why, size_t why_size);

/* command1 parameters of customer_add for fields (archtics_out_fields' result): {"customer":
 * {fields…, "name_type": "I"}}. -EINVAL with why when Archtics would refuse it for sure (an
 * individual's account needs name_last; an e-mail is what makes a repeated add a hit). */
int archtics_out_add_params(const json_t *fields, json_t **ret, char *why, size_t why_size);

/* command1 parameters of customer_update: every field of query_c1's `customer` (the
 * customer_query answer's command1; values read tolerantly: numbers as their text) overwritten
 * by fields, acct_id set, name_type left out, and other_info_1..20 copied from query_c1 to
 * command1 level. alt_id_type/alt_id (both non-empty) add {"alt_id_array": [{alt_id_type,
 * alt_id}]} inside `customer` (a stagedoor id an Archtics user can search for). New
 * reference, or NULL with why when query_c1 has no `customer` object. */
json_t *archtics_out_update_params(const json_t *query_c1, const json_t *fields, int64_t acct_id,
                                   const char *alt_id_type, const char *alt_id, char *why,
                                   size_t why_size);

/* The number of characters (UTF-8 code points) of s; invalid bytes count one each. */
size_t archtics_char_count(const char *s);

#endif
