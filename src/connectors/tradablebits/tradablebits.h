/* tradablebits.h — what the parts of the `tradablebits` connector share: its settings struct
 * (filled by core from the settings table in tradablebits.c, one member per setting, see
 * core/connector.h for the member types) and the helpers the pull half (tradablebits.c), the
 * push half (tb_push.c) and the segment → tag sync (tb_tags.c) all use.
 *
 * Settings the segment → tag sync reads:
 *  - tag_prefix: the Tradable Bits tag a segment becomes is tag_prefix + the segment's id.
 *  - segments: the segments to sync, "" for none. A list separated by ';' of entries
 *    "SEGMENT_ID" (synced on demand only) or "SEGMENT_ID@SCHEDULE" where SCHEDULE is a
 *    schedule string of core/schedule.h ("every 24h", "daily 03:00" …); blanks around an
 *    entry are ignored.
 *  - tags_path (create, list), tag_add_path, tag_remove_path: paths under base_url;
 *    "{tag_id}" stands for the tag's id. */
#ifndef SD_CONNECTORS_TRADABLEBITS_H
#define SD_CONNECTORS_TRADABLEBITS_H

#include <stdbool.h>
#include <stdint.h>

#include <stddef.h>

#include "core/connector.h"
#include "store/audience.h"

struct sd_mapping;

struct tb_conf {
    const char *base_url, *api_key, *api_secret;
    /* pull */
    const char *fans_updated_path, *tickets_path;
    const char *backfill_start, *currency, *event_city;
    bool pull_fans, pull_tickets, pull_activities;
    const char *activities_path;
    int64_t activities_page_size;
    int policy;         /* enum tb_policy */
    int deleted_policy; /* enum tb_deleted_policy */
    int64_t tickets_page_size, fans_page_size, partition_days;
    int64_t timeout_seconds, max_attempts, retry_initial_ms, max_wait_seconds;
    int64_t quota_10s_calls; /* read by core (sd_quota_effective), not here */
    /* push */
    bool push_tickets, push_fans;
    const char *tickets_bulk_path, *tickets_bulk_field, *fans_create_path, *fan_update_path;
    /* segment → tag sync (tb_tags.c) */
    const char *tag_prefix, *segments;
    const char *tags_path, *tag_add_path, *tag_remove_path;
};

enum tb_policy { TB_POLICY_REJECT_PAGE, TB_POLICY_SKIP_RECORDS };

/* What a ticket the API marks is_deleted does to its stored sale (docs/ORDER_LIFECYCLE.md). */
enum tb_deleted_policy { TB_DELETED_CANCEL, TB_DELETED_TOMBSTONE, TB_DELETED_SKIP };

/* base_url + path (a leading '/' optional) + "?" + name=value pairs from params (a
 * NULL-terminated list of name, value; values URL-escaped; a NULL value leaves its pair out).
 * Heap string. */
char *tb_build_url(const struct tb_conf *c, const char *path, const char *const *params);

/* ---- pull (tradablebits.c, tb_activities.c) ---- */

/* One pull run: what every stream shares. */
struct tb_run {
    struct sd_connector_ctx *ctx;
    struct sd_mapping *mapping; /* defaults overlaid with the instance's mapping */
    char *h_key, *h_secret;
    uint64_t deleted_skipped;
    uint64_t tombstoned; /* sales deleted because their ticket was */
    uint64_t echoes;     /* records this instance pushed, left out */
    json_t *deletions;   /* tombstone: the invoices of the current page's deleted tickets */
    uint64_t skipped;    /* records left out by skip_records */
    char *first_skip;    /* the first of them, for the warning */
    uint64_t activities_unmatched; /* activities whose fan could not be stored, left out */
    char *first_unmatched;         /* the first of them, for the warning */
};

/* "YYYY-MM-DD", "YYYY-MM-DD HH:MM:SS" or ISO 8601 with optional fraction and Z/±HH:MM → epoch
 * seconds in *ret; -1 when unreadable. */
int tb_parse_time(const char *s, int64_t *ret);
/* GET url (the call quota taken first, repeats counted after) and return its JSON object
 * answer {"meta", "data": [...]} in *ret_doc; 0, or the run's failure (sd_connector_fail). */
int tb_fetch_page(struct tb_run *run, const char *what, const char *url, json_t **ret_doc);
/* A JSON id (integer or non-empty string) as a JSON string, or NULL. New reference. */
json_t *tb_id_string(const json_t *v);
/* A boolean the API may send as true/false, 0/1 or "0"/"1"/"true"/"false"; -1: absent. */
int tb_truth(const json_t *v);
/* A fan as a customer source record (fan_id a string, consent as ad_opt_out). New reference. */
json_t *tb_shape_fan(const json_t *fan);
/* The committed cursor with member `name` replaced by v (stolen). New reference. */
json_t *tb_cursor_with(struct sd_connector_ctx *ctx, const char *name, json_t *v);
bool tb_stopping(struct sd_connector_ctx *ctx);
/* Whether the record of remote id `id` was written by this instance's push (no echo). */
bool tb_pushed_here(struct tb_run *run, const char *kind, const json_t *id, bool by_local);
/* The activities stream (tb_activities.c): 0 or the run's failure. */
int tb_pull_activities(struct tb_run *run);

/* One fan's activities on a page of the activities list. */
struct tb_act_fan {
    json_t *fan_id;     /* JSON string */
    int64_t n;          /* activities */
    int64_t last_t;     /* latest creation time, epoch s; -1: none readable */
    const json_t *last; /* the activity at last_t (borrowed from the page), or NULL */
    bool opt_in;        /* an activity with is_subscribed (an opt-in through its form) */
    const json_t *fan;  /* the first fan structure the page carries (borrowed), or NULL */
    size_t fan_index;   /* its activity's index in the page */
    /* filled by the pull: */
    json_t *fan_rec; /* the fan as a mapped customer record, or NULL */
    char *why;       /* why the mapping refused it (heap), or NULL */
    bool pushed;     /* a fan this instance's push created (never pulled: no echo) */
};
struct tb_act_page {
    struct tb_act_fan *fans;
    size_t n_fans;
    uint64_t orphans; /* activities without a fan_id */
};
/* Aggregate a page's activities (a JSON array) per fan into *pg. Each activity_id must be an
 * integer above the one before, starting above *after, which moves to the last. 0; -EPROTO
 * with the offending index in *ret_bad; -ENOMEM. Release *pg with tb_act_page_release in
 * every case. Pure; borrows from data. */
int tb_act_aggregate(const json_t *data, int64_t *after, struct tb_act_page *pg, size_t *ret_bad);
void tb_act_page_release(struct tb_act_page *pg);
/* The customer record that brings fan a's figures up to date: stored is the fan's customer as
 * stored (NULL: none), cid its customer id. With a stored record: {customer_id, email (as
 * stored), activity_count (stored + a->n), last_activity_* (when a's last is not older than
 * the stored one), ad_opt_out false (an opt-in, unless stored opted out)}; without: a's
 * fan_rec with the same figures. NULL with the reason in *ret_why (static or a->why) when the
 * fan cannot be stored. New reference. Pure. */
json_t *tb_act_record(const struct tb_act_fan *a, const char *cid, const json_t *stored,
                      const char **ret_why);

/* ---- push (tb_push.c) ---- */

#define TB_OP_TICKET "ticket"
#define TB_OP_FAN "fan"
/* Remote references of kind TB_REF_FAN_CREATED: fan id → the customer subject whose push
 * created that fan (the pull leaves such fans out: no echo). */
#define TB_REF_FAN_CREATED "fan_created"
#define TB_BULK_MAX 100 /* tickets per bulk call */

void tb_on_change(const struct sd_connector_ctx *ctx, const struct sd_change *chg,
                  struct sd_outbox_adder *out);
enum sd_verdict tb_deliver(struct sd_connector_ctx *ctx, void *state,
                           const struct sd_outbox_item *item, struct sd_delivery_result *res);
void tb_deliver_batch(struct sd_connector_ctx *ctx, void *state, const struct sd_outbox_item *items,
                      size_t n, struct sd_delivery_result *res, enum sd_verdict *verdicts);

/* A ticket (the create call's fields) from a stored sale, its customer and its event (either
 * may be NULL: the fields they give are left out, and the API refuses the row). ticket_key is
 * "<source>:<invoice_number>"; a cancelled sale is sent is_deleted. NULL when the sale has no
 * invoice_number. New reference. */
json_t *tb_ticket_from_sale(const char *source, const json_t *sale, const json_t *customer,
                            const json_t *event);
/* The bulk call's form body: one `field`=<ticket as JSON> per ticket. Heap, or NULL. */
char *tb_bulk_body(const char *field, json_t *const *tickets, size_t n, size_t *ret_len);

/* One row of a bulk answer. */
enum tb_row_outcome { TB_ROW_MISSING, TB_ROW_CREATED, TB_ROW_DUPLICATE, TB_ROW_ERROR };
struct tb_row {
    enum tb_row_outcome outcome; /* MISSING: the answer has no row for this ticket */
    char *ticket_id;             /* or NULL */
    char *text;                  /* the row as answered (compact JSON), or NULL */
};
/* Read a bulk answer {"meta", "data": [{row, status, ticket_id?, errors?}...]} for a call of n
 * tickets into rows[0..n) (each row found by its "row" index, else its position; a row
 * outside the call or a second row for one ticket is ignored; a status other than success or
 * duplicate is an error). 0, or -EPROTO with the reason in why (rows all MISSING). Release
 * with tb_rows_release. Pure. */
int tb_bulk_answer_parse(const char *body, size_t len, struct tb_row *rows, size_t n, char *why,
                         size_t why_len);
void tb_rows_release(struct tb_row *rows, size_t n);

#endif
