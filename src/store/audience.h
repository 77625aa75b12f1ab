/* audience.h — the store's audience interface (issue #4): unified profiles, segments and the
 * delivery outbox. Part of the one store interface (store.h): sd_store_ops points to one ops
 * table per part, each backend fills them, and callers use the sd_store_profile_* /
 * sd_store_segment_* / sd_store_outbox_* wrappers (store/audience.c). Thread rules and error
 * conventions are those of store.h; each op says which path (control, write, read) it is on.
 *
 * Each part is declared in its own section below. */
#ifndef SD_STORE_AUDIENCE_H
#define SD_STORE_AUDIENCE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/model.h"
#include "store/store.h"

/* ==== profiles ================================================================================ */
/* PROFILES-BEGIN (owned by the profiles work) */
/* A customer record is a *source record*, keyed by (tenant, env, source, customer_id); each is
 * linked to one profile (customers.profile_id), the person as the hub sees it. Linking happens
 * inside apply_ingest, in the writer's transaction (sqlite_profiles.c): a record that has a
 * profile keeps it for ever (an update only recomputes that profile's flags); a new record
 * links by the tenant's rule to the oldest profile with the same link key, else gets a new
 * profile. A profile's opt_out is 1 if any member has ad_opt_out = 1; suppressed is 1 if any
 * member's e-mail (SHA-256 hex of the trimmed, lowercased address) is on the suppression list
 * of that tenant and environment. Consumers (segments, push) select profiles with opt_out = 0
 * AND suppressed = 0 and read e-mails and source ids from customers by profile_id.
 *
 * link_key: rule `email` → the e-mail key; `email_and_last_name` → e-mail key, U+001F, last
 * name folded (trimmed, inner whitespace collapsed, lowercased; absent = ""); `none` → NULL.
 * A profile made by a split has link_key NULL: nothing links to it by itself. Changing a
 * tenant's rule affects records that arrive afterwards; existing links stay. */
enum sd_link_rule { SD_LINK_EMAIL = 0, SD_LINK_EMAIL_AND_LAST_NAME = 1, SD_LINK_NONE = 2 };
/* "email", "email_and_last_name", "none". */
const char *sd_link_rule_name(enum sd_link_rule rule);
/* 0, or -EINVAL if s names no rule. */
int sd_link_rule_parse(const char *s, enum sd_link_rule *ret);

/* One source record of a profile. Strings are heap copies (NULL when absent). */
struct sd_profile_member {
    char *source;
    char *customer_id;
    char *email; /* the e-mail key (trimmed, lowercased) */
    char *first_name;
    char *last_name;
    int ad_opt_out; /* -1 never sent, 0, 1 */
    bool pinned;    /* split out by an operator */
    char *doc;      /* the record as stored (JSON text) */
};
struct sd_profile {
    int64_t id;
    bool opt_out;
    bool suppressed;
    int64_t created_usec;
    int64_t updated_usec;
    struct sd_profile_member *members; /* in record order (seq) */
    size_t n_members;
};
void sd_profile_release(struct sd_profile *p);
void sd_profiles_free(struct sd_profile *v, size_t n);

/* What a suppression addition did. */
struct sd_suppress_result {
    size_t added;              /* hashes not on the list before */
    size_t profiles_suppressed; /* profiles whose suppressed flag went from 0 to 1 */
};
/* What an erasure did (the `erasures` row holds the same, without any personal data). */
struct sd_erasure_result {
    int64_t profile_id; /* 0 if the record had no profile (stored before profiles existed) */
    int64_t records_erased;
    int64_t sales_anonymized;
    int64_t idempotency_purged; /* stored answers that quoted an erased id or address */
};

#define SD_PROFILES_FIND_MAX 100 /* profiles returned by one lookup */
#define SD_SUPPRESS_MAX 10000    /* addresses per suppression request */

struct sd_store_profile_ops {
    /* control plane (any thread; bumps the settings version on change). -ENOENT: no tenant. */
    int (*link_rule_get)(struct sd_store *s, const char *client_id, enum sd_link_rule *ret);
    int (*link_rule_set)(struct sd_store *s, const char *client_id, enum sd_link_rule rule);

    /* read path (any thread). get: -ENOENT if no such profile in this tenant/env. find: the
     * profiles of records with this e-mail key, or with this customer_id (in `source`, or in
     * any source if source is NULL); at most SD_PROFILES_FIND_MAX, oldest first, *ret_n may be
     * 0 (then *ret is NULL). is_suppressed: is this e-mail key on the list (push-time check). */
    int (*get)(struct sd_store *s, int64_t tenant_id, enum sd_env env, int64_t profile_id,
               struct sd_profile *ret);
    int (*find_by_email)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                         const char *email_key, struct sd_profile **ret, size_t *ret_n);
    int (*find_by_source)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                          const char *source, const char *customer_id, struct sd_profile **ret,
                          size_t *ret_n);
    int (*is_suppressed)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                         const char *email_key, bool *ret);

    /* write path (writer thread only, inside its transaction). */
    /* Move record (source, customer_id) out of profile_id into a new profile (pinned, link_key
     * NULL) and recompute both. -ENOENT: no such profile, or the record is not its member;
     * -EBUSY: it is the profile's only member. */
    int (*split)(struct sd_store *s, int64_t tenant_id, enum sd_env env, int64_t profile_id,
                 const char *source, const char *customer_id, int64_t *ret_new_id);
    /* Put e-mail keys (already trimmed and lowercased) on the suppression list (as hashes,
     * reason "suppressed") and set `suppressed` on every profile with a member using one. */
    int (*suppress)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                    const char *const *email_keys, size_t n, struct sd_suppress_result *ret);
    /* GDPR erasure of the person behind record customer_id (in `source`; NULL: the one source
     * that has this id): every record of its profile is deleted, their sales re-pointed to
     * ANON (column and document, new seq each), stored idempotent answers quoting one of the
     * ids or addresses deleted, the profile deleted, every member address hashed onto the
     * suppression list (reason "erased", other profiles using it become suppressed) and an
     * `erasures` row written; each deleted record leaves its tombstone (reason "erased", see
     * delete_record in store.h) in the change feed. -ENOENT: no such record; -ENOTUNIQ: source NULL
     * and the id exists in several sources. */
    int (*erase)(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *source,
                 const char *customer_id, struct sd_erasure_result *ret);
};

/* Wrappers (store/audience_profiles.c): -ENOTSUP if the backend lacks the op. Thread rules as
 * at each op above. */
int sd_store_profile_link_rule_get(struct sd_store_handle *h, const char *client_id,
                                   enum sd_link_rule *ret);
int sd_store_profile_link_rule_set(struct sd_store_handle *h, const char *client_id,
                                   enum sd_link_rule rule);
int sd_store_profile_get(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                         int64_t profile_id, struct sd_profile *ret);
int sd_store_profile_find_by_email(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                                   const char *email_key, struct sd_profile **ret, size_t *ret_n);
int sd_store_profile_find_by_source(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                                    const char *source, const char *customer_id,
                                    struct sd_profile **ret, size_t *ret_n);
int sd_store_profile_is_suppressed(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                                   const char *email_key, bool *ret);
int sd_store_profile_split(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                           int64_t profile_id, const char *source, const char *customer_id,
                           int64_t *ret_new_id);
int sd_store_profile_suppress(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                              const char *const *email_keys, size_t n,
                              struct sd_suppress_result *ret);
int sd_store_profile_erase(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                           const char *source, const char *customer_id,
                           struct sd_erasure_result *ret);
/* PROFILES-END */

/* ==== segments ================================================================================ */
/* SEGMENTS-BEGIN (owned by the segments work) */
/* Segments: a named rule over a tenant+environment's profiles, sales and events, whose members
 * the store computes in SQL (sqlite_segments.c) — never by loading sales into memory.
 *
 * The rule arrives here parsed and checked (core/segment_rules.c turns the JSON rule language
 * into this tree; README "Segments" documents the language). The tree is pure data: texts are
 * already folded where the field compares case-insensitively, money is in minor units,
 * relative dates are kept relative and resolved against the `now_usec` each query is given.
 * A member is a profile with opt_out = 0 AND suppressed = 0 (the profiles part keeps both
 * flags current, so today's opt-outs, suppressions and erasures apply to every query) for
 * which the rule holds; sales of ANON never count. */
enum sd_seg_kind {
    SD_SEG_ALL,            /* every kid holds (no kids: true) */
    SD_SEG_ANY,            /* at least one kid holds (no kids: false) */
    SD_SEG_NOT,            /* its one kid does not hold */
    SD_SEG_BOUGHT,         /* at least one sale matching every filter in `where` */
    SD_SEG_COUNT,          /* `measure` over the sales matching `where`, every cmp holds */
    SD_SEG_FIRST_PURCHASE, /* earliest purchase of the sales matching `where`, every cmp holds */
    SD_SEG_LAST_PURCHASE,  /* latest purchase, likewise */
    SD_SEG_CUSTOMER,       /* at least one source record of the profile matching every filter */
};

/* What a filter looks at, and the type of its values. */
enum sd_seg_field {
    /* event (the sale's event); text folded unless said otherwise */
    SD_SEG_F_EVENT_ID,  /* exact text */
    SD_SEG_F_TITLE,
    SD_SEG_F_WORK_TITLE,
    SD_SEG_F_COMPOSER,
    SD_SEG_F_CAST,      /* any cast member's name */
    SD_SEG_F_VENUE,
    SD_SEG_F_HALL,
    SD_SEG_F_CITY,
    SD_SEG_F_DATE,      /* time values, compared by day */
    SD_SEG_F_WEEKDAY,   /* num 0 (Sunday) .. 6 (Saturday) of the event date */
    SD_SEG_F_TIME,      /* text "HH:MM:SS", the event's time of day */
    /* sale */
    SD_SEG_F_TICKET_CATEGORY, /* exact text: regular, VIP, subscription, comp */
    SD_SEG_F_PURCHASED,       /* time values, compared to the second (UTC) */
    SD_SEG_F_PRICE,           /* num: per-ticket price in minor units of cond.currency */
    SD_SEG_F_CURRENCY,        /* exact text, ISO 4217 */
    SD_SEG_F_QUANTITY,        /* num: tickets in the sale */
    /* customer source record */
    SD_SEG_F_POST_CODE,
    SD_SEG_F_CUSTOMER_CITY,
    SD_SEG_F_SALUTATION,
    SD_SEG_F_SOURCE, /* exact text: the system the record came from */
    /* the compared value of a count (num) or of a first/last purchase (time values) */
    SD_SEG_F_MEASURE,
};

enum sd_seg_op {
    SD_SEG_EQ,
    SD_SEG_NE,
    SD_SEG_GT, /* "after" for times */
    SD_SEG_GTE,
    SD_SEG_LT, /* "before" for times */
    SD_SEG_LTE,
    SD_SEG_BETWEEN, /* v[0] ≤ x ≤ v[1]; for times, from the start of v[0] to the end of v[1] */
    SD_SEG_IN,      /* x is one of v[0..n) */
    SD_SEG_CONTAINS,
    SD_SEG_PREFIX,
    SD_SEG_EXISTS, /* the field has a value (exists = true) or has none (false) */
};

/* A point in time as a rule names it. A day stands for the whole day (00:00:00 to 24:00:00
 * UTC); an instant for its second. The relative kinds are resolved against the query's
 * now_usec: AGO to an instant, DAYS_AGO to a day ("today", "yesterday"). */
enum sd_seg_time_kind { SD_SEG_T_DAY, SD_SEG_T_INSTANT, SD_SEG_T_AGO, SD_SEG_T_DAYS_AGO };
struct sd_seg_time {
    enum sd_seg_time_kind kind;
    int64_t v; /* DAY: days since 1970-01-01; INSTANT: Unix seconds; AGO: seconds before now;
                  DAYS_AGO: days before today (negative: in the future, for both) */
};

struct sd_seg_value {
    int64_t num;            /* num fields; weekday */
    char *text;             /* text fields (folded where the field is), heap */
    struct sd_seg_time time; /* time fields */
};

struct sd_seg_cond {
    enum sd_seg_field field;
    enum sd_seg_op op;
    struct sd_seg_value *v; /* 1 value; 2 for between; n for in; none for exists */
    size_t n;
    bool exists;      /* SD_SEG_EXISTS */
    char currency[4]; /* SD_SEG_F_PRICE: the currency the amounts are in */
};

enum sd_seg_measure { SD_SEG_M_PURCHASES, SD_SEG_M_TICKETS, SD_SEG_M_EVENTS, SD_SEG_M_SPEND };

struct sd_seg_rule {
    enum sd_seg_kind kind;
    struct sd_seg_rule **kids; /* all, any: n_kids; not: 1 */
    size_t n_kids;
    struct sd_seg_cond *where; /* bought, count, first/last: sale and event filters (AND);
                                  customer: customer filters (AND) */
    size_t n_where;
    struct sd_seg_cond *cmp; /* count, first/last: on SD_SEG_F_MEASURE (AND) */
    size_t n_cmp;
    enum sd_seg_measure measure; /* count */
    char currency[4];            /* count of spend: only sales in this currency, minor units */
};
void sd_seg_rule_free(struct sd_seg_rule *r); /* NULL is fine */

/* Civil dates without gmtime (proleptic Gregorian, UTC): days since 1970-01-01. */
int64_t sd_seg_days_from_civil(int64_t y, unsigned m, unsigned d);
void sd_seg_civil_from_days(int64_t days, int64_t *ret_y, unsigned *ret_m, unsigned *ret_d);

/* A stored segment. rules is the JSON text of the rule as it was sent. member_count is -1 (and
 * computed_usec 0) until counted. */
struct sd_segment_row {
    char *id; /* "seg_" + 16 hex */
    int64_t tenant_id;
    enum sd_env env;
    char *name;
    char *description;
    char *rules;
    int64_t member_count;
    int64_t computed_usec;
    int64_t created_usec;
    int64_t updated_usec;
};
void sd_segment_row_release(struct sd_segment_row *r);
void sd_segment_rows_free(struct sd_segment_row *v, size_t n);

/* A page of members, in profile id order. Strings are heap copies. */
struct sd_seg_member_source {
    char *source;
    char *customer_id;
};
struct sd_seg_member {
    int64_t profile_id;
    char *email; /* of the most recently updated source record that has one; NULL if none */
    struct sd_seg_member_source *sources; /* every source record, by (source, customer_id) */
    size_t n_sources;
};
struct sd_seg_member_page {
    struct sd_seg_member *v;
    size_t n;
    bool has_more;      /* members with a greater profile id exist */
    int64_t next_after; /* the last profile id of the page (the `after` given if empty) */
};
void sd_seg_member_page_release(struct sd_seg_member_page *p);

/* The limits of one membership computation (one count, or one member page). The store checks
 * them every few thousand SQLite instructions (a progress handler), so a computation stops
 * within milliseconds of passing one. */
struct sd_seg_budget {
    int64_t cpu_usec;  /* CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID) the
                          computation may use; 0: no limit. -ETIME past it */
    int64_t wall_usec; /* time on the clock; 0: SD_SEGMENT_WALL_MAX_USEC. -ETIME past it */
    const atomic_bool *cancel; /* NULL, or stop with -ECANCELED as soon as it reads true */
};
#define SD_SEGMENT_WALL_MAX_USEC (600 * 1000000LL) /* with no budget: 10 minutes */

#define SD_SEGMENTS_MAX 1000         /* segments per tenant and environment */
#define SD_SEGMENT_MEMBERS_MAX 10000 /* members per page */

struct sd_store_segment_ops {
    /* Control plane (ctl connection; does not bump the settings version: nothing reloads on
     * segments). create: -EEXIST if the id exists, -EDQUOT if the scope already holds
     * SD_SEGMENTS_MAX. update: name, description, rules, member_count, computed_usec and
     * updated_usec of the segment of this tenant and env, -ENOENT if there is none. */
    int (*create)(struct sd_store *s, const struct sd_segment_row *row);
    int (*update)(struct sd_store *s, const struct sd_segment_row *row);
    int (*set_count)(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *id,
                     int64_t member_count, int64_t computed_usec);
    int (*remove)(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *id);
    /* Read pool. get: -ENOENT if this tenant+env has no such segment. list: oldest first. */
    int (*get)(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *id,
               struct sd_segment_row *ret);
    int (*list)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                struct sd_segment_row **ret, size_t *ret_n);
    /* Membership (read pool, one statement, one snapshot; never blocks the writer). count:
     * how many members. members: those with profile id > after, at most limit (1 ..
     * SD_SEGMENT_MEMBERS_MAX), in id order. budget may be NULL (the wall-clock cap only).
     * -ETIME past the budget, -ECANCELED when budget->cancel turned true (both checked before
     * the first statement too), -EINVAL for a malformed tree. */
    int (*count)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                 const struct sd_seg_rule *rule, int64_t now_usec,
                 const struct sd_seg_budget *budget, int64_t *ret);
    int (*members)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                   const struct sd_seg_rule *rule, int64_t now_usec, int64_t after, size_t limit,
                   const struct sd_seg_budget *budget, struct sd_seg_member_page *ret);
};

/* Wrappers (store/audience_segments.c): the handle's ops, -ENOTSUP if the backend has none. */
int sd_store_segment_create(struct sd_store_handle *h, const struct sd_segment_row *row);
int sd_store_segment_update(struct sd_store_handle *h, const struct sd_segment_row *row);
int sd_store_segment_set_count(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                               const char *id, int64_t member_count, int64_t computed_usec);
int sd_store_segment_remove(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                            const char *id);
int sd_store_segment_get(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                         const char *id, struct sd_segment_row *ret);
int sd_store_segment_list(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                          struct sd_segment_row **ret, size_t *ret_n);
int sd_store_segment_count(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                           const struct sd_seg_rule *rule, int64_t now_usec,
                           const struct sd_seg_budget *budget, int64_t *ret);
int sd_store_segment_members(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                             const struct sd_seg_rule *rule, int64_t now_usec, int64_t after,
                             size_t limit, const struct sd_seg_budget *budget,
                             struct sd_seg_member_page *ret);
/* SEGMENTS-END */

/* ==== outbox ================================================================================== */
/* OUTBOX-BEGIN (owned by the outbox work) */
/* Targets (systems segments are pushed to) and the delivery outbox. A target's settings are a
 * JSON document owned by core/targets.c (secrets included: only the worker reads them; no API
 * shows them). A delivery is one push of one segment to one target; its row is the queue
 * entry, the lease and the record of what happened (`doc`, owned by core/outbox.c).
 *
 * Delivery states: queued (never tried in this run) → sending (leased by a worker) →
 * delivered | retrying (waits for next_attempt_usec) | dead (failed for good). A lease is
 * lease_until_usec: while it is in the future no other worker may claim the row; a row in
 * `sending` whose lease has passed is claimable again (its worker died). A claim records its
 * process instance in the doc ("lease_owner"), so a restarted hub can end the leases of its dead
 * predecessor at once (delivery_renew to now) instead of waiting for them to run out. Every change of a
 * leased row names the lease it holds and fails with -ESTALE if another worker took the row
 * over meanwhile (fencing).
 *
 * Rate limit: the first send of a run stamps sent_usec; the sends of a target inside the
 * window are those with sent_usec in (now - window, now]. Queued deliveries of a target wait
 * in creation order (FIFO) for a slot: `plan` (core's policy, passed in) says when each may go,
 * and the store writes that into next_attempt_usec in the same transaction that decides a
 * claim, so two workers (threads or processes) never exceed the limit together.
 *
 * Thread rules: any thread. Changes run on the control-plane connection (durable when the call
 * returns); reads use the read pool. None of these bump the settings version. */

struct sd_target {
    char *id; /* "tgt_" + 16 hex */
    int64_t tenant_id;
    char *client_id; /* filled by get/list */
    enum sd_env env;
    char *type; /* "audience_push" */
    char *doc;  /* settings JSON, secrets included; the store reads segments_per_hour from it */
    int64_t created_usec;
    int64_t updated_usec;
};
void sd_target_release(struct sd_target *t);
void sd_targets_free(struct sd_target *v, size_t n);

enum sd_delivery_state {
    SD_DELIVERY_QUEUED = 0,
    SD_DELIVERY_SENDING,
    SD_DELIVERY_RETRYING,
    SD_DELIVERY_DELIVERED,
    SD_DELIVERY_DEAD,
};
const char *sd_delivery_state_name(enum sd_delivery_state s); /* "queued" … "dead" */
int sd_delivery_state_parse(const char *name, enum sd_delivery_state *ret); /* 0 or -EINVAL */

struct sd_delivery {
    char *id; /* "dlv_" + 16 hex */
    int64_t tenant_id;
    char *client_id; /* filled by get/list/claim */
    enum sd_env env;
    char *segment_id;
    char *target_id;
    enum sd_delivery_state state;
    int64_t attempts; /* attempts used in this run (a 429 gives its attempt back) */
    int64_t next_attempt_usec;
    int64_t lease_until_usec;
    int64_t sent_usec; /* first send of this run; 0 if none yet */
    char *idem_key;    /* Idempotency-Key of this run */
    char *request_key; /* insert only: the push request's own Idempotency-Key, or NULL */
    char *doc;         /* JSON: everything else (kind, last status, remote answer …) */
    int64_t created_usec;
    int64_t updated_usec;
};
void sd_delivery_release(struct sd_delivery *d);
void sd_deliveries_free(struct sd_delivery *v, size_t n);

/* When may the waiting deliveries of one target go? sends: the target's send times inside the
 * window, ascending; limit: its segments_per_hour; ret_slots[j] (written for j < n_waiting):
 * the earliest time the j-th oldest waiting delivery may be sent (<= now: at once). */
typedef void (*sd_outbox_plan_fn)(const int64_t *sends, size_t n_sends, int64_t limit,
                                  int64_t window_usec, int64_t now_usec, size_t n_waiting,
                                  int64_t *ret_slots);

struct sd_outbox_clock {
    int64_t now_usec;
    int64_t window_usec; /* rate window (one hour) */
    int64_t lease_usec;  /* claim: how long the new lease lasts */
    sd_outbox_plan_fn plan;
    const char *owner;   /* claim: the claiming process instance, kept with the lease in the
                            delivery's doc ("lease_owner"), or NULL */
};

/* How an attempt ended, written by delivery_finish in one transaction with the lease's end. */
struct sd_delivery_outcome {
    enum sd_delivery_state state; /* RETRYING, DELIVERED or DEAD */
    int64_t next_attempt_usec;    /* RETRYING: when to try again */
    int64_t attempts_delta;       /* 0, or -1: the attempt is given back (429 flow control) */
    const char *doc;              /* replaces the document */
    const char *remote_segment_id; /* DELIVERED: remembered for (target, segment), or NULL */
};

struct sd_delivery_filter {
    int64_t tenant_id; /* 0: every tenant */
    int state;         /* an enum sd_delivery_state, or -1 for all */
    size_t limit;      /* newest first; clamped to 1..1000 */
};

struct sd_store_outbox_ops {
    /* Targets. put: create (-EEXIST if the id exists) or update doc (-ENOENT if missing); with
     * clk, the target's waiting deliveries are planned again in the same transaction (a new
     * segments_per_hour applies to what already waits). delete also forgets the target's
     * remote segments and, in the same transaction, makes its waiting (queued, retrying)
     * deliveries dead with last_error "the target was deleted"; they stay, as history, and a
     * delivery in flight finishes on its own. */
    int (*target_put)(struct sd_store *s, const struct sd_target *t, bool create,
                      const struct sd_outbox_clock *clk);
    int (*target_get)(struct sd_store *s, const char *id, struct sd_target *ret);
    int (*target_list)(struct sd_store *s, int64_t tenant_id, struct sd_target **ret,
                       size_t *ret_n);
    int (*target_delete)(struct sd_store *s, const char *id);

    /* Store a new delivery (state queued) and plan its target's waiting deliveries with clk;
     * durable when it returns. -EEXIST if the id exists, or a delivery of the tenant and
     * environment has the same request_key. */
    int (*delivery_insert)(struct sd_store *s, const struct sd_delivery *d,
                           const struct sd_outbox_clock *clk);
    /* The delivery (tenant_id, env)'s push request with this Idempotency-Key created; -ENOENT. */
    int (*delivery_by_request)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                               const char *request_key, struct sd_delivery *ret);
    /* One delivery; tenant_id 0 = any tenant (admin), else it must be (tenant_id, env)'s. */
    int (*delivery_get)(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *id,
                        struct sd_delivery *ret);
    int (*delivery_list)(struct sd_store *s, const struct sd_delivery_filter *f,
                         struct sd_delivery **ret, size_t *ret_n, bool *ret_more);
    /* The earliest time a claim could find work (next attempt of a waiting delivery, end of a
     * lease); -ENOENT if nothing is pending. */
    int (*delivery_next_due)(struct sd_store *s, int64_t *ret_usec);
    /* Lease the next due delivery (due order; FIFO per target for first sends, which also
     * respect the target's rate limit): state sending, attempts + 1, lease_until = now +
     * lease_usec, sent_usec stamped on a first send. -ENOENT if nothing may go now. */
    int (*delivery_claim)(struct sd_store *s, const struct sd_outbox_clock *clk,
                          struct sd_delivery *ret);
    /* Extend a held lease (before a send whose timeout outlasts it). -ESTALE if not held. */
    int (*delivery_renew)(struct sd_store *s, const char *id, int64_t lease_until_usec,
                          int64_t new_lease_until_usec);
    /* End a held lease with the attempt's outcome (and the remote segment id) in one
     * transaction. -ESTALE if the lease is no longer this caller's. */
    int (*delivery_finish)(struct sd_store *s, const char *id, int64_t lease_until_usec,
                           const struct sd_delivery_outcome *o);
    /* Replay a dead delivery: queued, attempts 0, sent_usec cleared, the new idempotency key
     * and doc, then plan its target. -EBUSY if it is not dead, -ENOENT if missing. */
    int (*delivery_requeue)(struct sd_store *s, const char *id, const char *idem_key,
                            const char *doc, const struct sd_outbox_clock *clk);
    /* The remote segment id remembered for (target, segment) of (tenant_id, env); -ENOENT. */
    int (*remote_segment_get)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                              const char *target_id, const char *segment_id, char **ret);
};

int sd_store_target_put(struct sd_store_handle *h, const struct sd_target *t, bool create,
                        const struct sd_outbox_clock *clk);
int sd_store_target_get(struct sd_store_handle *h, const char *id, struct sd_target *ret);
int sd_store_target_list(struct sd_store_handle *h, int64_t tenant_id, struct sd_target **ret,
                         size_t *ret_n);
int sd_store_target_delete(struct sd_store_handle *h, const char *id);
int sd_store_delivery_insert(struct sd_store_handle *h, const struct sd_delivery *d,
                             const struct sd_outbox_clock *clk);
int sd_store_delivery_get(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                          const char *id, struct sd_delivery *ret);
int sd_store_delivery_by_request(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                                 const char *request_key, struct sd_delivery *ret);
int sd_store_delivery_list(struct sd_store_handle *h, const struct sd_delivery_filter *f,
                           struct sd_delivery **ret, size_t *ret_n, bool *ret_more);
int sd_store_delivery_next_due(struct sd_store_handle *h, int64_t *ret_usec);
int sd_store_delivery_claim(struct sd_store_handle *h, const struct sd_outbox_clock *clk,
                            struct sd_delivery *ret);
int sd_store_delivery_renew(struct sd_store_handle *h, const char *id, int64_t lease_until_usec,
                            int64_t new_lease_until_usec);
int sd_store_delivery_finish(struct sd_store_handle *h, const char *id, int64_t lease_until_usec,
                             const struct sd_delivery_outcome *o);
int sd_store_delivery_requeue(struct sd_store_handle *h, const char *id, const char *idem_key,
                              const char *doc, const struct sd_outbox_clock *clk);
int sd_store_remote_segment_get(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                                const char *target_id, const char *segment_id, char **ret);
/* OUTBOX-END */

#endif
