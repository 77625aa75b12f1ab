/* model.h — the hub's data model (events, customers, sales; seed §2) and its validation.
 *
 * Validation turns an untrusted JSON record into a normalized record ready for the store, or
 * into precise issues (a JSON Pointer into the request body and a message). It checks
 * everything that can be decided from the request alone; checks that need stored data
 * (does the event exist, is the invoice number new, is this event a duplicate performance)
 * are done by the store inside the write transaction.
 *
 * Thread rules: all functions are reentrant; nothing here keeps global mutable state. */
#ifndef SD_MODEL_H
#define SD_MODEL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/utf8.h"

enum sd_env { SD_ENV_TEST = 0, SD_ENV_PROD = 1 };
const char *sd_env_name(enum sd_env env);          /* "test" / "prod" */
int sd_env_parse(const char *s, enum sd_env *ret); /* 0 or -EINVAL */

enum sd_kind { SD_KIND_EVENT = 0, SD_KIND_CUSTOMER = 1, SD_KIND_SALE = 2 };

#define SD_MAX_ISSUES 100 /* cap on errors/warnings reported per request */
#define SD_ANON_CUSTOMER "ANON"
#define SD_SOURCE_WEBHOOK "webhook"

/* ---- issues: errors and warnings with a JSON Pointer ------------------------------------- */
struct sd_issue {
    char *pointer; /* JSON Pointer into the request body, e.g. "/sales/0/currency" */
    char *message; /* human readable, lowercase start, no trailing period */
};
struct sd_issues {
    struct sd_issue *items;
    size_t n; /* stored, at most limit */
    size_t cap;
    size_t total; /* found, may exceed n */
    size_t limit;
};
void sd_issues_init(struct sd_issues *l, size_t limit);
void sd_issues_release(struct sd_issues *l);
void sd_issues_add(struct sd_issues *l, const char *pointer, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* JSON array of {"pointer":…, "message":…}; new reference. */
json_t *sd_issues_to_json(const struct sd_issues *l);
/* A JSON string of s (NULL reads as ""), with every byte that is not valid UTF-8 replaced by
 * U+FFFD: the way to put client-controlled text into an answer. Never NULL. */
json_t *sd_json_text(const char *s);

/* ---- normalized records -------------------------------------------------------------------- */
/* `doc` is the compact JSON text of the normalized record: the seed's fields (normalized as
 * described at each validator) plus every unknown field kept as sent. In an event's or a
 * customer's doc a member whose value is null clears that (optional) field of the stored
 * record; a member left out keeps the stored value (the store merges, RFC 7396). */
struct sd_event_rec {
    size_t index; /* position in the request's "events" array */
    char *event_id;
    char *dup_key; /* "date|time|venue|hall", venue and hall trimmed, inner whitespace
                      collapsed to one space, lowercased (Unicode simple case folding) */
    char *doc;
    /* The source's version of the record (a revision number or a last-change time as an
     * integer), 0 = none. An update older than the stored version is not applied. */
    int64_t remote_version;
};
struct sd_customer_rec {
    size_t index;
    char *customer_id;
    char *email_key; /* the e-mail trimmed and lowercased, for case-insensitive matching; NULL:
                        none (SD_VALIDATE_EMAIL_OPTIONAL) */
    int ad_opt_out;  /* -1 unknown (absent), 0 false, 1 true */
    char *doc;
    int64_t remote_version; /* as in sd_event_rec */
};
/* ---- order lifecycle ------------------------------------------------------------------------
 * A sales record is an order of one type. Only a `sale` is a purchase; the other types are kept
 * as facts of their own and never count as bought tickets or spend:
 *   sale         status sold (default) | refunded (wholly or partly) | cancelled | exchanged
 *   reservation  status open (default) | freed; expires_at optional (open until then)
 *   option       likewise
 *   abandoned    a basket the customer left; purchase_datetime is when it was abandoned
 *   refund       a refund of `quantity` tickets at `sales_price` of the sale named by refund_of
 * A body without any of the new fields is a sale with status sold, as before. */
enum sd_order_type {
    SD_ORDER_SALE = 0,
    SD_ORDER_RESERVATION,
    SD_ORDER_OPTION,
    SD_ORDER_ABANDONED,
    SD_ORDER_REFUND,
};
enum sd_sale_status {
    SD_STATUS_SOLD = 0,
    SD_STATUS_REFUNDED,
    SD_STATUS_CANCELLED,
    SD_STATUS_EXCHANGED,
    SD_STATUS_OPEN,      /* reservation, option */
    SD_STATUS_FREED,     /* reservation, option */
    SD_STATUS_ABANDONED, /* abandoned basket (implied) */
    SD_STATUS_APPLIED,   /* refund record (implied) */
};
const char *sd_order_type_name(enum sd_order_type t);    /* "sale", "reservation", … */
const char *sd_sale_status_name(enum sd_sale_status st); /* "sold", "refunded", … */
int sd_order_type_parse(const char *s, enum sd_order_type *ret);    /* 0 or -EINVAL */
int sd_sale_status_parse(const char *s, enum sd_sale_status *ret); /* 0 or -EINVAL */

/* What the lifecycle rules look at: a stored sale, or the one about to replace it. */
struct sd_sale_state {
    enum sd_order_type order_type;
    enum sd_sale_status status;
    int64_t quantity;
    int64_t total_minor; /* quantity × sales_price, minor units */
    int64_t refunded_quantity;
    int64_t refunded_minor;
    char currency[4];
};
/* Net of refunds: the tickets and money a sale still stands for. A sold or (partly) refunded
 * sale counts quantity − refunded_quantity and total − refunded; cancelled and exchanged sales
 * and every other order type count 0. */
int64_t sd_sale_net_quantity(const struct sd_sale_state *st);
int64_t sd_sale_net_minor(const struct sd_sale_state *st);
/* Every ticket and the whole amount refunded. */
bool sd_sale_wholly_refunded(const struct sd_sale_state *st);
/* May stored sale `old` be replaced by `next` (same invoice number)? Rules: a sale never
 * becomes another order type (a reservation, option or abandoned basket may become a sale);
 * cancelled, exchanged and wholly refunded sales and refund records are final (only identical
 * amounts and status may be sent again); a refunded sale never becomes sold again and its
 * refunded quantity and amount never decrease; a freed reservation or option stays freed.
 * Returns 0, or -EINVAL with one issue at ptr + "/<field>" naming the rule broken. */
int sd_sale_transition_check(const struct sd_sale_state *old, const struct sd_sale_state *next,
                             const char *ptr, struct sd_issues *errors);
/* Apply a refund of `quantity` tickets and `amount_minor` (in `currency`) to sale *st (named
 * `invoice` in messages). Only a sold or partly refunded sale can be refunded, in its own
 * currency, and never beyond what was sold: two partial refunds that sum to the whole make it
 * refunded wholly, a third is an error. On success *st is updated (status refunded) and 0
 * returned; else -EINVAL with an issue at ptr + "/refund_of" | "/quantity" | "/sales_price" |
 * "/currency", and *st untouched. */
int sd_sale_refund_apply(struct sd_sale_state *st, const char *invoice, int64_t quantity,
                         int64_t amount_minor, const char *currency, const char *ptr,
                         struct sd_issues *errors);

struct sd_sale_rec {
    size_t index;
    char *invoice_number;
    char *event_id;
    char *customer_id;         /* SD_ANON_CUSTOMER for anonymous sales */
    char *purchase_datetime;   /* normalized UTC, "YYYY-MM-DDTHH:MM:SS[.fff]Z" */
    int64_t sales_price_minor; /* exact, in the currency's minor unit */
    char currency[4];
    char *doc;
    /* lifecycle (all defaulted for a body without the fields: a sale, sold) */
    struct sd_sale_state state;
    int64_t net_quantity;      /* sd_sale_net_quantity(&state) */
    int64_t net_minor;         /* sd_sale_net_minor(&state) */
    int64_t attended_quantity; /* tickets scanned at the entrance; -1 not reported */
    char *status_changed_at;   /* normalized UTC, or NULL (the store then uses the time it
                                  stores a status other than sold/open) */
    char *expires_at;          /* reservation, option: normalized UTC, or NULL (no expiry) */
    char *refund_of;           /* refund: the refunded sale's invoice_number; else NULL */
    int64_t remote_version; /* as in sd_event_rec */
};
struct sd_batch {
    struct sd_event_rec *events;
    size_t n_events;
    struct sd_customer_rec *customers;
    size_t n_customers;
    struct sd_sale_rec *sales;
    size_t n_sales;
    /* Batch transports (files, feeds, REST pull) re-read what they sent before: a sale stored
     * with identical content is then no conflict, and changed content replaces it. The
     * webhook leaves this false (a known invoice number is a 409). */
    bool upsert_sales;
    /* Where the records come from ("webhook", or a connector's source label): a customer is
     * a source record keyed by (source, customer_id), and a sale's customer_id refers to a
     * customer of the same source. NULL = SD_SOURCE_WEBHOOK. */
    const char *source;
    /* Who wrote this change: a connector instance id ("con_…"), or NULL for the hub's own API
     * (the webhook, the admin API). A target instance never receives back a change whose origin
     * is itself (no ping-pong). Kept with every record it writes. */
    const char *origin;
};
void sd_batch_release(struct sd_batch *b); /* frees all records; b may be zeroed */
size_t sd_batch_count(const struct sd_batch *b);

/* ---- validation ----------------------------------------------------------------------------- */
/* Validate an ingest body (seed §2, issue #2 "Validation"): a JSON object with any of the arrays
 * "events", "customers", "sales"; no other top-level member; at least one record in total.
 * Checks within the request: two sales with one invoice_number are an error on the second.
 * On success (return 0, errors->total == 0) *ret holds every record in request order.
 * On failure returns -EINVAL with every problem found in errors (capped), and *ret untouched.
 * warnings receives "unknown field 'x' kept" style notes (pointer to the field). */
int sd_validate_ingest(const json_t *body, struct sd_batch *ret, struct sd_issues *errors,
                       struct sd_issues *warnings);
/* For a body sd_validate_ingest refused: the records that are valid on their own, so the store
 * can still check the sales' references and one 400 lists field and reference errors together.
 * Left out: records with an error, sales whose invoice_number repeats in the request, and sales
 * naming an event_id or customer_id that an invalid record of the request carries. Returns the
 * number of sales kept; with 0, *ret is empty (nothing to check). */
size_t sd_validate_ingest_checkable(const json_t *body, struct sd_batch *ret);
/* Whether `name` is a field the model defines for records of the array `records` ("events"
 * (cast members' fields included), "customers", "sales"): the bounded field labels of the
 * data-quality counts (core/quality.c). */
bool sd_validate_field_known(const char *records, const char *name);

/* Flags of the *_flags variants (0 = the hub's own contract, as above). */
enum {
    /* A customer's "email" may be absent or null: records of a source whose people need not
     * have an address (a vendor connector that declares it). Such a customer has email_key
     * NULL and is identified by (source, customer_id) only; a null clears a stored address.
     * A string sent is still checked (non-empty, a valid address). */
    SD_VALIDATE_EMAIL_OPTIONAL = 1u << 0,
};
int sd_validate_ingest_flags(const json_t *body, unsigned flags, struct sd_batch *ret,
                             struct sd_issues *errors, struct sd_issues *warnings);
size_t sd_validate_ingest_checkable_flags(const json_t *body, unsigned flags, struct sd_batch *ret);

/* Single-record validators; `ptr` is the record's JSON Pointer ("/sales/3"). Return 0 and fill
 * *ret, or -EINVAL with issues added. Used by PUT /sales/{id} and by later connectors. */
int sd_validate_event(const json_t *rec, const char *ptr, struct sd_event_rec *ret,
                      struct sd_issues *errors, struct sd_issues *warnings);
int sd_validate_customer(const json_t *rec, const char *ptr, struct sd_customer_rec *ret,
                         struct sd_issues *errors, struct sd_issues *warnings);
int sd_validate_customer_flags(const json_t *rec, const char *ptr, unsigned flags,
                               struct sd_customer_rec *ret, struct sd_issues *errors,
                               struct sd_issues *warnings);
int sd_validate_sale(const json_t *rec, const char *ptr, struct sd_sale_rec *ret,
                     struct sd_issues *errors, struct sd_issues *warnings);
void sd_event_rec_release(struct sd_event_rec *r);
void sd_customer_rec_release(struct sd_customer_rec *r);
void sd_sale_rec_release(struct sd_sale_rec *r);

/* ---- building blocks (exposed for tests and other layers) ------------------------------------ */
/* UTF-8 validity and decoding: base/utf8.h (sd_utf8_valid, sd_utf8_next). */
/* Trim, collapse inner whitespace runs to one space, lowercase (Unicode). New string. */
char *sd_text_fold(const char *s);
/* Calendar date "YYYY-MM-DD" (real date, leap years), years 1900..9999. */
bool sd_date_valid(const char *s);
/* "HH:MM:SS" 00:00:00..23:59:59. */
bool sd_time_valid(const char *s);
/* RFC 3339 date-time with Z or ±HH:MM offset (and optional fraction); on success writes the
 * UTC form "YYYY-MM-DDTHH:MM:SS[.frac]Z" into out (size >= 40) and returns 0, else -EINVAL. */
int sd_datetime_to_utc(const char *s, char *out, size_t outsz);
/* Proleptic Gregorian calendar ↔ days since 1970-01-01 (Howard Hinnant's algorithms), exact
 * for every int64 year that does not overflow; m 1..12, d 1..31 (not range-checked). The one
 * copy of the day count: time zones and schedules use it too. */
int64_t sd_days_from_civil(int64_t y, int m, int d);
void sd_civil_from_days(int64_t days, int64_t *ret_y, int *ret_m, int *ret_d);
/* Pragmatic address check: one @, non-empty local part ≤ 64, domain with a dot, labels of
 * letters/digits/hyphens (or UTF-8), no spaces, total ≤ 254. */
bool sd_email_valid(const char *s);
/* Active ISO 4217 currency: returns minor unit digits (0..4) or -1 if unknown. Uppercase only. */
int sd_currency_minor_units(const char *code);
/* Exact decimal from a JSON number or numeric string: must be ≥ 0 and have at most `minor`
 * decimal places (trailing zeros beyond that are allowed: "89.000" is 89 for EUR). Writes the
 * amount in minor units. Returns 0, or -EINVAL with a reason in *why (static string).
 * minor < 0 means "currency unknown": everything but the decimal places is checked and the
 * amount written is the whole part only. */
int sd_decimal_parse(const json_t *v, int minor, int64_t *ret_minor, const char **why);
/* After json_loadb() accepted `text`: replace every sales_price / base_price member that is a
 * plain decimal literal ("89.0000000000000001") with a string of that literal, so the double
 * jansson made of it never decides the value. */
void sd_json_exact_prices(json_t *root, const char *text, size_t len);
/* Format minor units as a decimal string with exactly `minor` places, e.g. 8900,2 → "89.00". */
void sd_decimal_format(int64_t amount_minor, int minor, char out[32]);
/* An integer amount counted in units of 10^-scale of the currency (S-360 sends thousandths:
 * scale 3, 40000 = 40.000) → minor units of a currency with `minor` digits (ISO 4217 exponent:
 * EUR 2, JPY 0, KWD 3), exactly: 40000 thousandths = 4000 cents of EUR; 40005 thousandths is
 * no whole number of cents and is refused (-EINVAL), never rounded; a result beyond int64 is
 * -ERANGE. Negative amounts convert likewise (a price's sign is the validator's business).
 * scale and minor: 0..18. *why (may be NULL) gets a static reason on failure. */
int sd_money_scaled_to_minor(int64_t amount, int scale, int minor, int64_t *ret_minor,
                             const char **why);

#endif
