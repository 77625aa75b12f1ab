/* segments.h — segments (issue #4 §2): named rules over a tenant+environment's customers and
 * sales, their member counts and their members, for the HTTP API (api/segments.c) and the
 * audience push (core/outbox.c).
 *
 * A segment is stored with its rule as sent; membership is never stored: every count and every
 * member page is computed by the store in SQL at the time of the call, so today's opt-outs,
 * suppressions and erasures (profile flags kept current by the profiles part) always apply,
 * and relative dates ("730 days ago") are resolved against the clock of the call. The count
 * stored with a segment is the one computed at creation or at the last PUT (computed_usec).
 *
 * Thread rules: every function may be called from any thread. Counting and member pages run
 * on a read connection of the store (they never block the writer and may take seconds over
 * millions of sales), within a budget (store/audience.h; NULL: the hub's default, CPU time as
 * configured on the segment workers, no cancel flag): the HTTP API runs them on the segment
 * workers (core/segment_jobs.h), never on its own threads. Definitions are written through the
 * store's control plane.
 * Errors: 0 / negative errno — -ENOENT no such segment in this tenant+env, -EINVAL invalid
 * body or rule (details in `errors`), -ENOSPC the tenant+env has SD_SEGMENTS_MAX segments,
 * -ETIME the computation ran past its budget, -ECANCELED its cancel flag was raised (shutdown),
 * -EIO store failure. */
#ifndef SD_CORE_SEGMENTS_H
#define SD_CORE_SEGMENTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/hub.h"
#include "model/model.h"
#include "store/audience.h"

#define SD_SEGMENT_NAME_MAX 200         /* bytes */
#define SD_SEGMENT_DESCRIPTION_MAX 2000 /* bytes */
#define SD_SNAPSHOT_ID_HEX 16           /* a snapshot id as the API shows it: %016llx */

struct sd_segment {
    char *id; /* "seg_" + 16 hex */
    int64_t tenant_id;
    enum sd_env env;
    char *name;
    char *description;
    json_t *rules;        /* the rule as sent (owned reference) */
    int64_t member_count; /* at computed_usec; -1 if never counted */
    int64_t computed_usec;
    int64_t created_usec;
    int64_t updated_usec;
    int64_t snapshot_id; /* create/update: the snapshot of the members just counted; 0 else */
};
void sd_segment_free(struct sd_segment *s); /* NULL is fine */

/* Load a segment of this tenant/env: 0, -ENOENT, -EIO. */
int sd_segment_load(struct sd_hub *hub, int64_t tenant_id, enum sd_env env, const char *segment_id,
                    struct sd_segment **ret);

struct sd_member_source {
    char *source;
    char *customer_id;
};
struct sd_member {
    int64_t profile_id;
    char *email; /* of the most recently updated source record that has one; NULL if none */
    struct sd_member_source *sources; /* every source record of the profile, by (source, id) */
    size_t n_sources;
};
struct sd_member_page {
    struct sd_member *v;
    size_t n;
    bool has_more;        /* members with a greater profile id exist */
    int64_t next_after;   /* pass as `after` for the next page (the last id of this one) */
    int64_t snapshot_id;  /* sd_segment_members_snapshot: the snapshot paged (0 otherwise) */
    int64_t member_count; /* its count, as the segment's member_count when it was made */
};
void sd_member_page_release(struct sd_member_page *p);

/* Current members (opt-outs, suppressions and erasures of right now applied), profile_id > after,
 * at most limit (≤ 10000), in profile id order. -EINVAL if limit is out of range or the stored
 * rule no longer parses. */
int sd_segment_members(struct sd_hub *hub, const struct sd_segment *seg, int64_t after,
                       size_t limit, struct sd_member_page *ret);
/* The same within budget (NULL: the hub's default). */
int sd_segment_members_within(struct sd_hub *hub, const struct sd_segment *seg, int64_t after,
                              size_t limit, const struct sd_seg_budget *budget,
                              struct sd_member_page *ret);

/* Members from a snapshot (store/audience.h): snapshot_id 0 computes the rule once, freezes
 * its member ids in a new snapshot (SD_SEGMENT_SNAPSHOT_TTL_USEC) and stores its count as the
 * segment's member_count; else the page of that snapshot of this segment (-ESTALE: no such
 * snapshot, or it expired; -ENOENT stays "no such segment"). Either way the page reads ids by
 * keyset (profile_id > after): count and pages agree, and no page recomputes the rule. Today's
 * opt-outs, suppressions and erasures still apply to every page. page->snapshot_id / member_count
 * say which snapshot. */
int sd_segment_members_snapshot(struct sd_hub *hub, const struct sd_segment *seg,
                                int64_t snapshot_id, int64_t after, size_t limit,
                                const struct sd_seg_budget *budget, struct sd_member_page *ret);

/* ---- for the HTTP API ---------------------------------------------------------------------- */

/* Check a create (create = true) or update body without computing anything: 0, or -EINVAL
 * with every problem in errors (the same ones create/update would report). Microseconds: the
 * HTTP threads answer a 400 with it before queueing the computation. */
int sd_segment_check(const json_t *body, bool create, struct sd_issues *errors);
/* Create from a request body {"segment_name", "description"?, "rules"}: checks it (errors get
 * JSON Pointers into the body, e.g. /rules/all/1/bought/composer), counts the members within
 * budget, stores the segment with that count and returns it. */
int sd_segment_create(struct sd_hub *hub, int64_t tenant_id, enum sd_env env, const json_t *body,
                      const struct sd_seg_budget *budget, struct sd_segment **ret,
                      struct sd_issues *errors);
/* Change any of segment_name, description, rules (body may be NULL or {}: nothing changes) and
 * count the members again within budget; returns the segment as stored. */
int sd_segment_update(struct sd_hub *hub, int64_t tenant_id, enum sd_env env, const char *id,
                      const json_t *body, const struct sd_seg_budget *budget,
                      struct sd_segment **ret, struct sd_issues *errors);
/* Every segment of the tenant+env, oldest first. Free with sd_segments_free. */
int sd_segment_list(struct sd_hub *hub, int64_t tenant_id, enum sd_env env,
                    struct sd_segment ***ret, size_t *ret_n);
void sd_segments_free(struct sd_segment **v, size_t n);
int sd_segment_delete(struct sd_hub *hub, int64_t tenant_id, enum sd_env env, const char *id);
/* {"segment_id", "segment_name", "description", "rules", "member_count", "computed_at",
 * "created_at", "updated_at"} (times RFC 3339 UTC), and "snapshot_id" (16 hex) when the
 * segment was just counted. New reference. */
json_t *sd_segment_view(const struct sd_segment *s);

#endif
