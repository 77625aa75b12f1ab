/* mapping.h — a connector's field mapping: one source record (a CSV row with its header, or a
 * JSON object from a feed or REST API) in the ticketing system's own column names and formats →
 * one model record (json_t object) for the validators in model/model.h.
 *
 * The mapping converts names, types and formats; it does not judge the result. A record it
 * returns still goes through sd_validate_event/customer/sale, which decides whether it is valid
 * (required fields, ranges, real calendar dates, currency codes, ticket categories …).
 *
 * ## Spec (JSON, stored with the connector; NULL, JSON null or {} is the identity mapping)
 *
 *     {
 *       "fields":    {"EventNo": "event_id", "EventDate": "date", "PriceGross": "sales_price"},
 *       "values":    {"ticket_category": {"Abo": "subscription", "Freikarte": "comp"}},
 *       "constants": {"currency": "EUR"},
 *       "formats":   {"date": "DD.MM.YYYY", "time": "HH:mm", "datetime": "DD.MM.YYYY HH:mm:ss",
 *                     "timezone": "Europe/Berlin", "decimal_comma": true},
 *       "unmapped":  "keep"
 *     }
 *
 * Every member is optional. An object none of whose members is named fields, values,
 * constants, formats or unmapped is shorthand for {"fields": <that object>} (so a source column
 * literally named "fields" needs the full form). Checked by sd_mapping_new:
 *  - fields: source name → model field name (any kind's field). At most SD_MAPPING_MAX_ENTRIES
 *    entries; source names are 1..SD_MAPPING_MAX_NAME bytes of UTF-8 without surrounding
 *    whitespace. Several sources may name one model field: per record the first non-empty one
 *    in the order of "fields" wins, then a source member already named as the model field.
 *  - values: model field → {source value → model value}; model values are strings (for
 *    ad_opt_out also true/false); same limits as fields. Matching is exact (after trimming the
 *    cell); a value not in the map passes through unchanged.
 *  - constants: model field → value of the field's model type (string, "YYYY-MM-DD",
 *    "HH:MM:SS", RFC 3339 string, integer, boolean, decimal string "89.00", cast array).
 *  - formats: date (tokens DD D MM M YYYY YY), time (HH H mm ss), datetime (both sets), each
 *    with literal separators (any non-letter, and T) and at most SD_MAPPING_MAX_FORMAT bytes;
 *    a date needs year, month and day, a time hour and minute (seconds default to 00). YY is
 *    1969..2068 (POSIX %y). utc_offset: "Z", "UTC", "+HH:MM" or "-HH:MM" — a fixed offset for
 *    date-times without zone. timezone: an IANA zone name ("Europe/Berlin", see model/tz.h)
 *    for date-times without zone, daylight saving time included; a bad or unknown name is an
 *    error at "/mapping/formats/timezone"; utc_offset and timezone exclude each other.
 *    decimal_comma: true for "1.234,50". amount_unit: "decimal" (default), "tenths",
 *    "hundredths", "thousandths" or "ten_thousandths": decimal fields arrive as integers in
 *    that unit (S-360: thousandths) and become the exact decimal ("40000" → "40.000"); the
 *    validator then refuses what the currency's minor unit cannot hold, nothing is rounded.
 *  - unmapped: "keep" (default) keeps source members that are neither mapped nor model fields
 *    of the kind applied (a column `city`, an event field, in a customers file counts as
 *    unmapped) under their source name (the validator then warns "unknown field kept"); "drop"
 *    drops them.
 *  - Any other member, an unknown model field or a bad format is an error; errors carry a JSON
 *    Pointer into the spec as written, under "/mapping" ("/mapping/fields/EventNo", or
 *    "/mapping/EventNo" for the shorthand).
 *
 * ## Applying for a kind K
 *  - Source member names are trimmed (whitespace, NBSP, a leading UTF-8 BOM) and looked up once
 *    in a hash table built by sd_mapping_new. A target that is not a field of K is ignored for K
 *    (a combined export may carry several kinds); so is a member already named as another
 *    kind's field.
 *  - Every string value is trimmed; empty → the field is absent. JSON null → absent. Other
 *    non-string JSON values pass through unchanged, except that a JSON integer is looked up in
 *    the field's values map by its decimal text.
 *  - values maps apply to the model field after renaming, before type conversion; a value
 *    mapped to "" makes the field absent (so a constant may fill it).
 *  - Strings are converted by the field's type: integers (optional sign, digits only; thousand
 *    separators are an error) → JSON integer; ad_opt_out true/false/1/0/yes/no/y/n/ja/nein/j
 *    (case-insensitive) → JSON boolean, anything else stays a string; decimals → a plain decimal
 *    string ("1.234,50" → "1234.50" with decimal_comma, "1,234.50" → "1234.50" without), but a
 *    value with other characters (a currency sign) stays as sent, and one made of digits and
 *    separators that fits neither notation ("89.50" with decimal_comma) is an error rather
 *    than a guess; date/time/datetime in the configured format or already in ISO form
 *    ("YYYY-MM-DD"; "HH:MM:SS" or "HH:MM"; RFC 3339, or "YYYY-MM-DD[T ]HH:MM:SS" without zone)
 *    → "2025-10-03", "19:30:00", "2025-04-15T11:08:42+01:00" (zone from utc_offset, "Z" when
 *    none). With a timezone a date-time without zone becomes its UTC instant
 *    ("15.07.2025 11:08" in Europe/Berlin → "2025-07-15T09:08:00Z"): a local time the clocks
 *    repeat (the autumn change) is its earlier instant, one they skip (the spring change) moves
 *    forward by the gap (02:30 → 03:30 CEST = 01:30 UTC). Values with their own offset keep it.
 *    Shape and field ranges are checked (day 1..31, hour 0..23 …), the calendar is not:
 *    "31.02.2025" becomes "2025-02-31" for the validator to refuse. cast "Name (Role); Name2"
 *    → [{"name":"Name","role":"Role"},{"name":"Name2"}].
 *  - A value that cannot be converted (or is not UTF-8) refuses the record: the issue names the
 *    source field, the problem and the expected format, and echoes at most 40 bytes of value.
 *  - constants fill K's fields the record does not have; unmapped members are kept (trimmed,
 *    empty ones dropped, the first of a repeated name) or dropped.
 *  - Output member order: source order, then constants.
 *
 * Thread rules: a mapping is immutable after sd_mapping_new; apply and to_json may be called
 * from any number of threads at once. Nothing here keeps global mutable state. */
#ifndef SD_MAPPING_H
#define SD_MAPPING_H

#include <jansson.h>
#include <stddef.h>

#include "model/model.h"

#define SD_MAPPING_MAX_ENTRIES 500 /* entries in "fields" and in each values map */
#define SD_MAPPING_MAX_NAME 200    /* bytes in a source name or a values-map key/value */
#define SD_MAPPING_MAX_FORMAT 64   /* bytes in a date/time/datetime format */

struct sd_mapping;

/* Parse and check a mapping spec (NULL, JSON null or {} = identity; the spec is not kept, it
 * may be freed afterwards). Returns 0 and a new mapping in *ret, or -EINVAL with every problem
 * in errors (pointers "/mapping/…") and *ret untouched. errors may be NULL. */
int sd_mapping_new(const json_t *spec, struct sd_mapping **ret, struct sd_issues *errors);
/* Accepts NULL. */
void sd_mapping_free(struct sd_mapping *m);

/* The model field of `kind` that the source column (or member) `source_name` feeds, or NULL
 * when it feeds none (unmapped, or another kind's field). For error lists in the venue's own
 * column names. */
const char *sd_mapping_target_of(const struct sd_mapping *m, enum sd_kind kind,
                                 const char *source_name);

/* One source record given as parallel name/value arrays (a CSV row with its header) → a new
 * model record object of `kind`, or NULL with issues added (pointer = ptr + "/" + model field,
 * e.g. "/line/12/date" when ptr is "/line/12"; for a kept unmapped member ptr + "/" + its
 * escaped name). NULL names or values are skipped. m must not be NULL; errors may be NULL. */
json_t *sd_mapping_apply_row(const struct sd_mapping *m, enum sd_kind kind,
                             const char *const *names, const char *const *values, size_t n,
                             const char *ptr, struct sd_issues *errors);
/* The same from a JSON object (a feed or REST record); src is not modified and the result
 * shares nothing with it. A src that is not an object is an issue at ptr. */
json_t *sd_mapping_apply_object(const struct sd_mapping *m, enum sd_kind kind, const json_t *src,
                                const char *ptr, struct sd_issues *errors);

/* The mapping's spec in normalized form, for display: all five members present (shorthand
 * expanded, "unmapped" explicit). Feeding it back to sd_mapping_new gives the same mapping.
 * New reference. */
json_t *sd_mapping_to_json(const struct sd_mapping *m);

#endif
