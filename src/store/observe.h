/* observe.h — the store's part of watching a hub: when each API key was last used, traffic and
 * data-quality counters per hour, segment sizes over time and the outbox's queue figures. Part
 * of the one store interface (store.h): sd_store_ops.observe points to a backend's
 * `struct sd_store_observe_ops`, callers use the sd_store_observe_* wrappers (store/observe.c),
 * which answer -ENOTSUP for a backend without them.
 *
 * Obligations of every backend:
 *  - key_touch and the traffic counters are control plane: any thread, never waiting behind
 *    the data writer's transaction (SQLite: control.db), and they never change
 *    sd_store_settings_version (they are traffic, not settings: a bump would make every server
 *    reload its auth snapshot).
 *  - Counters only grow: traffic_add adds to a row's count, key_touch only moves last_used
 *    forward, so several nodes flushing their own counts never lose each other's.
 *  - Bounded size: traffic_add deletes hour rows older than its purge_before_usec in the same
 *    transaction.
 *
 * Errors: -EINVAL (bad arguments, see each op), -EIO (backend failure, logged by the backend). */
#ifndef SD_STORE_OBSERVE_H
#define SD_STORE_OBSERVE_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define SD_TRAFFIC_KIND_MAX 12
#define SD_TRAFFIC_TEXT_MAX 64  /* bytes of a source, field or code label */
#define SD_TRAFFIC_ADD_MAX 4096 /* rows in one traffic_add */

/* One counter row: how many `kind` things happened for (tenant, env) in the UTC hour starting
 * at hour_usec. kind "rejected": records or fields refused, by source ("ingest", "sale_put", a
 * connector id), field label and error code; "accepted": records stored, by source and record
 * kind (field "events" | "customers" | "sales", code ""); "answer": HTTP answers, by route
 * name (source), field "" and status class (code "2xx" | "4xx" | "5xx"). */
struct sd_traffic_count {
    int64_t tenant_id;
    enum sd_env env;
    int64_t hour_usec; /* a multiple of 3600 s */
    char kind[SD_TRAFFIC_KIND_MAX + 1];
    char source[SD_TRAFFIC_TEXT_MAX + 1];
    char field[SD_TRAFFIC_TEXT_MAX + 1];
    char code[SD_TRAFFIC_TEXT_MAX + 1];
    int64_t n;
};

/* Segment sizes over time: a point per computation, at most one per segment per
 * SD_SEGMENT_SIZE_GAP_USEC, kept SD_SEGMENT_SIZE_KEEP_USEC. */
#define SD_SEGMENT_SIZE_GAP_USEC (10 * 60 * 1000000LL)
#define SD_SEGMENT_SIZE_KEEP_USEC (400 * 86400 * 1000000LL)
#define SD_SEGMENT_SIZE_POINTS_MAX 60000 /* a history answer: 400 days of 10-minute points */
struct sd_segment_size_point {
    int64_t at_usec;
    int64_t member_count;
};

/* The last delivery of a segment to one connector instance (a push target). */
struct sd_segment_push {
    char connector_id[SD_TRAFFIC_TEXT_MAX + 1];
    char delivery_id[SD_TRAFFIC_TEXT_MAX + 1];
    char state[SD_TRAFFIC_TEXT_MAX + 1]; /* queued | sending | retrying | delivered | dead | … */
    int64_t updated_usec;
};

/* The outbox of one (tenant, connector) as /metrics shows it: items waiting (queued, retrying or
 * sending), the oldest waiting item's creation time (0: none), attempts the waiting items used,
 * dead letters. */
struct sd_outbox_stat {
    int64_t tenant_id;
    char connector_id[SD_TRAFFIC_TEXT_MAX + 1];
    int64_t depth;
    int64_t oldest_usec;
    int64_t attempts;
    int64_t dead;
};

struct sd_store_observe_ops {
    /* Record that key_ids[i] was last used at used_usec[i] (a key's stored time only moves
     * forward; an unknown key id is skipped). One transaction. -EINVAL: n > 0 with a NULL
     * array or key id. */
    int (*key_touch)(struct sd_store *s, const char *const *key_ids, const int64_t *used_usec,
                     size_t n);
    /* Add every row's n to its stored counter (creating it), then delete every row (of any
     * tenant) whose hour_usec < purge_before_usec; one transaction. -EINVAL: n above
     * SD_TRAFFIC_ADD_MAX, a row with n < 0, a kind not "rejected" / "accepted" / "answer",
     * or an empty source. */
    int (*traffic_add)(struct sd_store *s, const struct sd_traffic_count *v, size_t n,
                       int64_t purge_before_usec);
    /* A tenant's rows with hour_usec >= since_usec, ordered by hour, kind, env, source, field,
     * code; at most `limit` rows (clamped to 10000), *ret_more set when more exist. */
    int (*traffic_list)(struct sd_store *s, int64_t tenant_id, int64_t since_usec, size_t limit,
                        struct sd_traffic_count **ret, size_t *ret_n, bool *ret_more);
    /* Settings path (SQLite: the data file's ctl connection; may wait as a segment write does,
     * -ETIMEDOUT past its bound). Record that segment_id of (tenant, env) had member_count
     * members at at_usec, unless it has a point less than SD_SEGMENT_SIZE_GAP_USEC away from
     * at_usec (before or after: nodes' clocks differ); also deletes its points older than at_usec -
     * SD_SEGMENT_SIZE_KEEP_USEC. One transaction. Returns 1 recorded, 0 skipped (a recent point),
     * -EINVAL (NULL or empty id, count < 0, bad env). Does not check that the segment exists. */
    int (*segment_size_record)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                               const char *segment_id, int64_t at_usec, int64_t member_count);
    /* Read pool: the points of segment_id with at_usec >= since_usec, oldest first, at most
     * SD_SEGMENT_SIZE_POINTS_MAX (the newest kept when there are more). *ret heap (NULL when
     * none). */
    int (*segment_size_history)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                                const char *segment_id, int64_t since_usec,
                                struct sd_segment_size_point **ret, size_t *ret_n);
    /* Read pool, one statement: for each connector instance of (tenant, env) that segment_id
     * was ever pushed to (an outbox item with subject segment / segment_id), its newest such
     * item; ordered by connector id. Each is one index seek per connector of the scope
     * (outbox_items_subject), so the cost does not grow with the outbox. *ret heap. */
    int (*segment_pushes)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                          const char *segment_id, struct sd_segment_push **ret, size_t *ret_n);
    /* Read pool, one statement: one row per connector instance that has outbox items (any
     * state; zeros when none waits), ordered by tenant then connector. Per connector it reads
     * its waiting and dead items only, by the index on (connector_id, state, seq), never the
     * delivered history. Items of a removed connector are not counted. *ret heap. */
    int (*outbox_stats)(struct sd_store *s, struct sd_outbox_stat **ret, size_t *ret_n);
};

/* The row checks traffic_add makes (for the backends): kind, env, source, n. */
bool sd_traffic_count_valid(const struct sd_traffic_count *t);

int sd_store_observe_key_touch(struct sd_store_handle *h, const char *const *key_ids,
                               const int64_t *used_usec, size_t n);
int sd_store_observe_traffic_add(struct sd_store_handle *h, const struct sd_traffic_count *v,
                                 size_t n, int64_t purge_before_usec);
int sd_store_observe_traffic_list(struct sd_store_handle *h, int64_t tenant_id, int64_t since_usec,
                                  size_t limit, struct sd_traffic_count **ret, size_t *ret_n,
                                  bool *ret_more);

int sd_store_observe_segment_size_record(struct sd_store_handle *h, int64_t tenant_id,
                                         enum sd_env env, const char *segment_id, int64_t at_usec,
                                         int64_t member_count);
int sd_store_observe_segment_size_history(struct sd_store_handle *h, int64_t tenant_id,
                                          enum sd_env env, const char *segment_id,
                                          int64_t since_usec, struct sd_segment_size_point **ret,
                                          size_t *ret_n);
int sd_store_observe_segment_pushes(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                                    const char *segment_id, struct sd_segment_push **ret,
                                    size_t *ret_n);
int sd_store_observe_outbox_stats(struct sd_store_handle *h, struct sd_outbox_stat **ret,
                                  size_t *ret_n);

extern const struct sd_store_observe_ops sd_sqlite_observe_ops;
extern const struct sd_store_observe_ops sd_pg_observe_ops;

#endif
