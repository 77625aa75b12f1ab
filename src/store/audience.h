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
 * which the rule holds; sales of ANON never count. Purchases are net of the order lifecycle:
 * bought, first/last purchase and counts of purchases and events see live sales only (order
 * type sale, not cancelled or exchanged, not every ticket refunded); counts of tickets and
 * spend add the net figures (quantity and amount minus what was refunded). */
enum sd_seg_kind {
    SD_SEG_ALL,            /* every kid holds (no kids: true) */
    SD_SEG_ANY,            /* at least one kid holds (no kids: false) */
    SD_SEG_NOT,            /* its one kid does not hold */
    SD_SEG_BOUGHT,         /* at least one sale matching every filter in `where` */
    SD_SEG_COUNT,          /* `measure` over the sales matching `where`, every cmp holds */
    SD_SEG_FIRST_PURCHASE, /* earliest purchase of the sales matching `where`, every cmp holds */
    SD_SEG_LAST_PURCHASE,  /* latest purchase, likewise */
    SD_SEG_CUSTOMER,       /* at least one source record of the profile matching every filter */
    /* order lifecycle (model.h): facts other than live sales */
    SD_SEG_REFUNDED,  /* a sale with something refunded (wholly or partly) matching `where` */
    SD_SEG_HOLDS,     /* an open reservation or option (status open, not expired at now) */
    SD_SEG_ABANDONED, /* an abandoned basket matching `where`; with not_bought_since, one after
                         which the profile bought nothing (no live sale purchased later) */
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
    /* customer activity (fields a source keeps on the record: activity_count, last_activity_at,
     * last_activity_type, last_activity_campaign) */
    SD_SEG_F_ACTIVITIES,             /* num: activity_count, absent counts 0 */
    SD_SEG_F_LAST_ACTIVITY,          /* time values, to the second; may be absent */
    SD_SEG_F_LAST_ACTIVITY_TYPE,     /* text */
    SD_SEG_F_LAST_ACTIVITY_CAMPAIGN, /* text */
    /* sales record lifecycle */
    SD_SEG_F_STATUS,         /* exact text: sold, refunded, cancelled, exchanged, open, freed */
    SD_SEG_F_STATUS_CHANGED, /* time values, to the second: when the status last changed */
    SD_SEG_F_ATTENDED,       /* num: tickets scanned at the entrance (absent: not reported) */
    SD_SEG_F_ORDER_TYPE,     /* exact text: reservation, option (holds only) */
    SD_SEG_F_EXPIRES,        /* time values, to the second (holds only) */
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
    bool not_bought_since;       /* abandoned */
};
void sd_seg_rule_free(struct sd_seg_rule *r); /* NULL is fine */

/* Civil dates (days since 1970-01-01) are model/model.h's sd_days_from_civil /
 * sd_civil_from_days, the one copy. */

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
    int64_t total;      /* snapshot pages: the snapshot's member count (0 otherwise) */
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
#define SD_SEGMENT_SNAPSHOT_TTL_USEC (15 * 60 * 1000000LL) /* a snapshot lives 15 minutes */
#define SD_SEGMENT_SNAPSHOTS_MAX 8       /* snapshots kept per tenant+env (newest) */
#define SD_SEGMENT_SNAPSHOT_CHUNK 10000  /* ids written per write transaction */

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
     * the first statement too), -EINVAL for a malformed tree. A backend may answer leaves from
     * aggregates it keeps (SQLite: per-profile purchase facts, sqlite_facts.c) if they are
     * changed in the same transaction as every sale and profile link they sum, so an answer
     * equals the one computed from the sales at that snapshot. */
    int (*count)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                 const struct sd_seg_rule *rule, int64_t now_usec,
                 const struct sd_seg_budget *budget, int64_t *ret);
    int (*members)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                   const struct sd_seg_rule *rule, int64_t now_usec, int64_t after, size_t limit,
                   const struct sd_seg_budget *budget, struct sd_seg_member_page *ret);
    /* Snapshots: a segment's members frozen at now_usec, so a count and all pages of members
     * come from one computation and a page costs a keyset read, not the rule again.
     * snapshot_create computes the rule once (read pool, within budget, errors as count),
     * then writes the ids through the control plane in transactions of at most
     * SD_SEGMENT_SNAPSHOT_CHUNK rows (the writer waits for one chunk at most, never for the
     * computation); the snapshot is visible only once complete. It first purges expired
     * snapshots (every tenant) and the oldest of this tenant+env beyond
     * SD_SEGMENT_SNAPSHOTS_MAX - 1. Returns a new positive id and the member count; it expires
     * at now_usec + ttl_usec. snapshot_members: the page of snapshot `id` of this segment,
     * tenant and env with profile id > after, in id order, its e-mails and source ids read now;
     * a profile that is no member any more by today's flags (opt_out, suppressed, erased or
     * merged away) is left out at read time, never returned from a stale snapshot. -ENOENT if
     * there is no such complete snapshot, or it expired at now_usec. page->total: its count. */
    int (*snapshot_create)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                           const char *segment_id, const struct sd_seg_rule *rule,
                           int64_t now_usec, int64_t ttl_usec, const struct sd_seg_budget *budget,
                           int64_t *ret_id, int64_t *ret_count);
    int (*snapshot_members)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                            const char *segment_id, int64_t id, int64_t now_usec, int64_t after,
                            size_t limit, struct sd_seg_member_page *ret);
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
int sd_store_segment_snapshot_create(struct sd_store_handle *h, int64_t tenant_id,
                                     enum sd_env env, const char *segment_id,
                                     const struct sd_seg_rule *rule, int64_t now_usec,
                                     int64_t ttl_usec, const struct sd_seg_budget *budget,
                                     int64_t *ret_id, int64_t *ret_count);
int sd_store_segment_snapshot_members(struct sd_store_handle *h, int64_t tenant_id,
                                      enum sd_env env, const char *segment_id, int64_t id,
                                      int64_t now_usec, int64_t after, size_t limit,
                                      struct sd_seg_member_page *ret);
/* SEGMENTS-END */

/* ==== outbox ================================================================================== */
/* OUTBOX-BEGIN (owned by the outbox work) */
/* Target connector instances (the targets API's view of them), the generic outbox of items and
 * the remote references. A target is a row of the connectors table (store.h) whose type is a
 * target type; its settings are a JSON document core owns (secrets included: only the worker
 * reads them; no API shows them). An outbox item is one outbound operation of one connector
 * instance on one subject ("push_segment" of segment seg_…, "upsert_contact" of customer …);
 * its row is the queue entry, the lease and the record of what happened (`doc`, owned by core:
 * the store never reads it).
 *
 * Item states: queued (never tried in this run) → sending (leased by a worker) → delivered |
 * retrying (waits for next_attempt_usec) | dead (failed for good); queued and retrying may also
 * become cancelled (an operator's decision, final). A lease is lease_until_usec plus a fencing
 * token `fence`, a counter the claim bumps: every later change of a leased row names the token
 * and fails with -ESTALE if another claim took the row over meanwhile. A row in `sending`
 * whose lease has passed is claimable again (its worker died). A claim records its process
 * instance (lease_owner), so a restarted hub can end the leases of its dead predecessor at once
 * (renew to now) instead of waiting for them to run out.
 *
 * Order: every item has a queue position (insert order). FIFO per subject: an item is claimable
 * only when no earlier item of the same (connector, subject_kind, subject_id) is queued, sending
 * or retrying, so two changes of one contact reach the remote system in order.
 *
 * Rate limit (per connector instance, rate_per_hour > 0): the first send of a run stamps
 * sent_usec; the sends of a connector inside the window are those with sent_usec in (now -
 * window, now]. Queued items of that connector wait in queue order for a slot: `plan` (core's
 * policy, passed in) says when each may go, and the store writes that into next_attempt_usec in
 * the same transaction that decides a claim, so two workers (threads or processes) never
 * exceed the limit together. Connectors without a rate are not planned.
 *
 * Dedupe: an item inserted with a dedupe_key while an item of the same connector with the same
 * key still waits (queued or retrying) is not stored; the insert answers the waiting one.
 *
 * Obligations of every backend: the ops below are atomic and durable when they return; claims
 * are serialized with every other claim, of this process and of any other process on the same
 * data (SQLite: its write lock; a server database: a row lock or SERIALIZABLE). Thread rules:
 * any thread. Changes run on the control-plane connection; reads use the read pool; none of
 * these bump the settings version. outbox_add_tx and outbox_targets_tx are the exceptions: the
 * writer's, on its connection, in its transaction. */

struct sd_target {
    char *id; /* "tgt_" + 16 hex (or any connector id) */
    int64_t tenant_id;
    char *client_id; /* filled by get/list */
    enum sd_env env;
    char *type; /* a target connector type ("audience_push") */
    char *doc;  /* settings JSON, secrets included; the store does not read it */
    int64_t rate_per_hour; /* first sends per rolling hour; 0: no limit */
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
    SD_DELIVERY_CANCELLED,
};
/* "queued" … "dead", "cancelled" */
const char *sd_delivery_state_name(enum sd_delivery_state s);
int sd_delivery_state_parse(const char *name, enum sd_delivery_state *ret); /* 0 or -EINVAL */

struct sd_outbox_item {
    char *id; /* "dlv_" + 16 hex */
    int64_t tenant_id;
    char *client_id; /* filled by get/list/claim */
    enum sd_env env;
    char *connector_id;
    char *operation;    /* named by the connector: "push_segment", "upsert_contact" … */
    char *subject_kind; /* "segment", "customer" … */
    char *subject_id;   /* the local id of the subject */
    char *payload;      /* JSON text, or NULL: built at send time from the subject */
    char *dedupe_key;   /* or NULL */
    enum sd_delivery_state state;
    int64_t attempts; /* attempts used in this run (a WAIT gives its attempt back) */
    int64_t next_attempt_usec;
    int64_t lease_until_usec;
    int64_t fence;      /* fencing token of the current lease (bumped by every claim) */
    char *lease_owner;  /* process instance holding the lease, or NULL */
    int64_t sent_usec;  /* first send of this run; 0 if none yet */
    char *idem_key;     /* Idempotency-Key of this run */
    char *request_key;  /* the push request's own Idempotency-Key, or NULL */
    char *origin;       /* connector instance whose change caused it, or NULL (the API) */
    char *remote_ref;   /* the remote id the delivery answered with, or NULL */
    char *doc;          /* JSON owned by core: last status, remote answer, history … */
    int64_t created_usec;
    int64_t updated_usec;
};
void sd_outbox_item_release(struct sd_outbox_item *d);
void sd_outbox_items_free(struct sd_outbox_item *v, size_t n);

/* When may the waiting items of one connector go? sends: its send times inside the window,
 * ascending; limit: its rate_per_hour; ret_slots[j] (written for j < n_waiting): the earliest
 * time the j-th oldest waiting item may be sent (<= now: at once). */
typedef void (*sd_outbox_plan_fn)(const int64_t *sends, size_t n_sends, int64_t limit,
                                  int64_t window_usec, int64_t now_usec, size_t n_waiting,
                                  int64_t *ret_slots);

struct sd_outbox_clock {
    int64_t now_usec;
    int64_t window_usec; /* rate window (one hour) */
    int64_t lease_usec;  /* claim: how long the new lease lasts */
    sd_outbox_plan_fn plan;
    const char *owner;   /* claim: the claiming process instance (lease_owner), or NULL */
};

/* How an attempt ended, written by delivery_finish in one transaction with the lease's end. */
struct sd_delivery_outcome {
    enum sd_delivery_state state; /* RETRYING, DELIVERED or DEAD */
    int64_t next_attempt_usec;    /* RETRYING: when to try again */
    int64_t attempts_delta;       /* 0, or -1: the attempt is given back (WAIT flow control) */
    const char *doc;              /* replaces the document */
    const char *remote_ref; /* DELIVERED: the subject's remote id, kept on the item and in
                               remote_refs (connector, subject_kind, subject_id); or NULL */
};

struct sd_delivery_filter {
    int64_t tenant_id;        /* 0: every tenant */
    int env;                  /* with a tenant: an enum sd_env, or -1 for both */
    int state;                /* an enum sd_delivery_state, or -1 for all */
    const char *connector_id; /* or NULL for all */
    size_t limit;             /* newest first; clamped to 1..1000 */
};

struct sd_store_outbox_ops {
    /* Target connector instances. put: create (-EEXIST if the id exists; schedule "manual", no
     * mapping) or update settings and rate (-ENOENT if missing); with clk, the connector's
     * waiting items are planned again in the same transaction (a new rate applies to what
     * already waits). get and list return connectors of any type (core picks the targets).
     * delete removes the connector, its state and its remote references and, in the same
     * transaction, makes its waiting (queued, retrying) items dead with last_error `reason`;
     * they stay, as history, and an item in flight finishes on its own. */
    int (*target_put)(struct sd_store *s, const struct sd_target *t, bool create,
                      const struct sd_outbox_clock *clk);
    int (*target_get)(struct sd_store *s, const char *id, struct sd_target *ret);
    int (*target_list)(struct sd_store *s, int64_t tenant_id, struct sd_target **ret,
                       size_t *ret_n);
    int (*target_delete)(struct sd_store *s, const char *id, const char *reason);

    /* Store a new item (state queued, next attempt now) and plan its connector's waiting items
     * with clk; durable when it returns. -EEXIST if the id exists, or an item of the tenant and
     * environment has the same request_key. With a dedupe_key that a waiting item of the same
     * connector holds: nothing is stored, 1 is returned and *ret_id (if not NULL, heap) names
     * the waiting item; else 0 (and *ret_id = a copy of d->id). */
    int (*delivery_insert)(struct sd_store *s, const struct sd_outbox_item *d,
                           const struct sd_outbox_clock *clk, char **ret_id);
    /* The item (tenant_id, env)'s push request with this Idempotency-Key created; -ENOENT. */
    int (*delivery_by_request)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                               const char *request_key, struct sd_outbox_item *ret);
    /* One item; tenant_id 0 = any tenant (admin), else it must be (tenant_id, env)'s. */
    int (*delivery_get)(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *id,
                        struct sd_outbox_item *ret);
    int (*delivery_list)(struct sd_store *s, const struct sd_delivery_filter *f,
                         struct sd_outbox_item **ret, size_t *ret_n, bool *ret_more);
    /* The earliest time a claim could find work (next attempt of a waiting item, end of a
     * lease); -ENOENT if nothing is pending. */
    int (*delivery_next_due)(struct sd_store *s, int64_t *ret_usec);
    /* Lease the next due item (due order, then queue order; FIFO per subject; first sends of a
     * rated connector within its plan): state sending, attempts + 1, fence + 1, lease_until =
     * now + lease_usec, lease_owner = clk->owner, sent_usec stamped on a first send. -ENOENT if
     * nothing may go now. */
    int (*delivery_claim)(struct sd_store *s, const struct sd_outbox_clock *clk,
                          struct sd_outbox_item *ret);
    /* After a claim of `first`: lease up to `max` more due items of the same connector and
     * operation (due order; FIFO per subject; not first sends of a connector with a rate,
     * which only the planned claim takes) as delivery_claim leases one, in one transaction,
     * so that one request can carry them (sd_connector.deliver_batch). *ret (heap, free with
     * sd_outbox_items_free) holds the *ret_n leased, possibly none. 0 or negative errno
     * (nothing leased then). */
    int (*delivery_claim_more)(struct sd_store *s, const struct sd_outbox_clock *clk,
                               const struct sd_outbox_item *first, size_t max,
                               struct sd_outbox_item **ret, size_t *ret_n);
    /* Move a held lease's end (longer before a send whose timeout outlasts it; to now to end a
     * dead instance's lease). -ESTALE if the row is not sending under this fence. */
    int (*delivery_renew)(struct sd_store *s, const char *id, int64_t fence,
                          int64_t new_lease_until_usec);
    /* End a held lease with the attempt's outcome (and the remote reference) in one
     * transaction. -ESTALE if the lease is no longer this fence's. */
    int (*delivery_finish)(struct sd_store *s, const char *id, int64_t fence,
                           const struct sd_delivery_outcome *o);
    /* delivery_finish of n items (a batch sent in one request) in ONE transaction: ret[i] is 0,
     * or -ESTALE for an item whose lease is no longer fences[i]'s (nothing written for it; the
     * others are). Returns 0, -EINVAL (an outcome delivery_finish would refuse; nothing
     * written), or a store error (nothing written). */
    int (*delivery_finish_many)(struct sd_store *s, size_t n, const char *const *ids,
                                const int64_t *fences, const struct sd_delivery_outcome *o,
                                int *ret);
    /* Replay a dead item: queued, attempts 0, sent_usec cleared, the new idempotency key and
     * doc, then plan its connector. -EBUSY if it is not dead, -ENOENT if missing. */
    int (*delivery_requeue)(struct sd_store *s, const char *id, const char *idem_key,
                            const char *doc, const struct sd_outbox_clock *clk);
    /* Cancel a waiting (queued or retrying) item: cancelled, with the new doc (who, why).
     * Send now: a waiting item's next attempt becomes clk->now_usec (attempts unchanged; a rate
     * limit still applies to a first send). Both: -EBUSY if the item does not wait, -ENOENT. */
    int (*delivery_cancel)(struct sd_store *s, const char *id, const char *doc, int64_t now_usec);
    int (*delivery_send_now)(struct sd_store *s, const char *id,
                             const struct sd_outbox_clock *clk);

    /* Writer only, inside the writer's open transaction (its savepoint): store a new item as
     * delivery_insert does (dedupe included, next attempt now_usec; no rate plan: the claim
     * plans), so it commits or rolls back with the change that caused it. Same returns. */
    int (*outbox_add_tx)(struct sd_store *s, const struct sd_outbox_item *d, int64_t now_usec,
                         char **ret_id);
    /* Writer only: target_list read on the writer's own connection (inside its transaction),
     * so the writer never waits for a read connection. */
    int (*outbox_targets_tx)(struct sd_store *s, int64_t tenant_id, struct sd_target **ret,
                             size_t *ret_n);
    /* Writer only, inside its transaction (it sees the links the job just made): *ret_n = how
     * many customer records of member_source share the profile of record (source, customer_id)
     * in (tenant_id, env), that record itself not counted; 0 when it has no profile or is not
     * stored. One indexed lookup (the record by its key, then its profile's members). */
    int (*outbox_linked_tx)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                            const char *source, const char *customer_id, const char *member_source,
                            int64_t *ret_n);
    /* Read pool: the remote_version stored with customer record (source, customer_id) (the
     * highest version its source gave, 0 = none; store.h, apply_ingest). -ENOENT: no record. */
    int (*customer_version)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                            const char *source, const char *customer_id, int64_t *ret_version);

    /* Remote references: (connector_id, kind, local_id) ↔ remote_id. get: by local id; find:
     * the local id of a remote id (the oldest if several); both -ENOENT. put: insert or
     * replace. Callers check the connector is the tenant's: the ids are global. */
    int (*remote_ref_get)(struct sd_store *s, const char *connector_id, const char *kind,
                          const char *local_id, char **ret_remote);
    int (*remote_ref_find)(struct sd_store *s, const char *connector_id, const char *kind,
                           const char *remote_id, char **ret_local);
    int (*remote_ref_put)(struct sd_store *s, const char *connector_id, const char *kind,
                          const char *local_id, const char *remote_id);
    /* A set of references kept under one kind (the members a remote list was last given):
     * list: up to `limit` (1..SD_REMOTE_REFS_PAGE_MAX) local ids of (connector_id, kind) greater
     * than `after` (NULL: from the first), in byte order, with their remote ids; *ret_n may be
     * 0 (then both arrays are NULL). apply: in ONE transaction, put the n_put pairs (insert or
     * replace) and delete the n_del local ids (absent ones are no error), at most
     * SD_REMOTE_REFS_APPLY_MAX of each, so the set moves exactly as far as the remote did.
     * -EINVAL for NULL arguments or counts out of range. Read pool / control plane. */
    int (*remote_ref_list)(struct sd_store *s, const char *connector_id, const char *kind,
                           const char *after, size_t limit, char ***ret_local,
                           char ***ret_remote, size_t *ret_n);
    int (*remote_ref_apply)(struct sd_store *s, const char *connector_id, const char *kind,
                            const char *const *put_local, const char *const *put_remote,
                            size_t n_put, const char *const *del_local, size_t n_del);
};
#define SD_REMOTE_REFS_PAGE_MAX 10000
#define SD_REMOTE_REFS_APPLY_MAX 10000

int sd_store_target_put(struct sd_store_handle *h, const struct sd_target *t, bool create,
                        const struct sd_outbox_clock *clk);
int sd_store_target_get(struct sd_store_handle *h, const char *id, struct sd_target *ret);
int sd_store_target_list(struct sd_store_handle *h, int64_t tenant_id, struct sd_target **ret,
                         size_t *ret_n);
int sd_store_target_delete(struct sd_store_handle *h, const char *id, const char *reason);
int sd_store_delivery_insert(struct sd_store_handle *h, const struct sd_outbox_item *d,
                             const struct sd_outbox_clock *clk, char **ret_id);
int sd_store_delivery_get(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                          const char *id, struct sd_outbox_item *ret);
int sd_store_delivery_by_request(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                                 const char *request_key, struct sd_outbox_item *ret);
int sd_store_delivery_list(struct sd_store_handle *h, const struct sd_delivery_filter *f,
                           struct sd_outbox_item **ret, size_t *ret_n, bool *ret_more);
int sd_store_delivery_next_due(struct sd_store_handle *h, int64_t *ret_usec);
int sd_store_delivery_claim(struct sd_store_handle *h, const struct sd_outbox_clock *clk,
                            struct sd_outbox_item *ret);
int sd_store_delivery_claim_more(struct sd_store_handle *h, const struct sd_outbox_clock *clk,
                                 const struct sd_outbox_item *first, size_t max,
                                 struct sd_outbox_item **ret, size_t *ret_n);
int sd_store_delivery_renew(struct sd_store_handle *h, const char *id, int64_t fence,
                            int64_t new_lease_until_usec);
int sd_store_delivery_finish(struct sd_store_handle *h, const char *id, int64_t fence,
                             const struct sd_delivery_outcome *o);
int sd_store_delivery_finish_many(struct sd_store_handle *h, size_t n, const char *const *ids,
                                  const int64_t *fences, const struct sd_delivery_outcome *o,
                                  int *ret);
int sd_store_delivery_requeue(struct sd_store_handle *h, const char *id, const char *idem_key,
                              const char *doc, const struct sd_outbox_clock *clk);
int sd_store_delivery_cancel(struct sd_store_handle *h, const char *id, const char *doc,
                             int64_t now_usec);
int sd_store_delivery_send_now(struct sd_store_handle *h, const char *id,
                               const struct sd_outbox_clock *clk);
int sd_store_outbox_add_tx(struct sd_store_handle *h, const struct sd_outbox_item *d,
                           int64_t now_usec, char **ret_id);
int sd_store_outbox_targets_tx(struct sd_store_handle *h, int64_t tenant_id,
                               struct sd_target **ret, size_t *ret_n);
int sd_store_outbox_linked_tx(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                              const char *source, const char *customer_id,
                              const char *member_source, int64_t *ret_n);
int sd_store_customer_version(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                              const char *source, const char *customer_id, int64_t *ret_version);
int sd_store_remote_ref_get(struct sd_store_handle *h, const char *connector_id,
                            const char *kind, const char *local_id, char **ret_remote);
int sd_store_remote_ref_find(struct sd_store_handle *h, const char *connector_id,
                             const char *kind, const char *remote_id, char **ret_local);
int sd_store_remote_ref_put(struct sd_store_handle *h, const char *connector_id,
                            const char *kind, const char *local_id, const char *remote_id);
int sd_store_remote_ref_list(struct sd_store_handle *h, const char *connector_id,
                             const char *kind, const char *after, size_t limit, char ***ret_local,
                             char ***ret_remote, size_t *ret_n);
int sd_store_remote_ref_apply(struct sd_store_handle *h, const char *connector_id,
                              const char *kind, const char *const *put_local,
                              const char *const *put_remote, size_t n_put,
                              const char *const *del_local, size_t n_del);
/* OUTBOX-END */

#endif
