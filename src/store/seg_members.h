/* seg_members.h — the backend-neutral part of store/audience.h's segments part: how a member
 * page is filled from the rows a backend reads, and how a snapshot's ids are numbered and cut
 * into chunks. sqlite_segments.c and pg_segments.c read and write with their own statements
 * and call these, so both give the same pages, e-mails, source orders and chunking.
 *
 * For the backends only (store/sqlite, store/postgres); callers use the sd_store_* wrappers. */
#ifndef SD_STORE_SEG_MEMBERS_H
#define SD_STORE_SEG_MEMBERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/audience.h"

/* Both backends name the function of each op after the op (statics of their *_segments.c): one
 * initializer serves both ops tables. */
#define SD_SEGMENT_OPS_INIT                                                                        \
    {                                                                                              \
        .create = seg_create, .update = seg_update, .set_count = seg_set_count,                    \
        .remove = seg_remove, .get = seg_get, .list = seg_list, .count = seg_count,                \
        .members = seg_members, .snapshot_create = snapshot_create,                                \
        .snapshot_members = snapshot_members,                                                      \
    }

/* Add the next profile id of a page query (ids ascending, asked with limit + 1) to page, whose
 * v the caller allocated for `limit` members. False, with has_more set, when the page is full:
 * the caller stops reading. */
bool sd_seg_page_add(struct sd_seg_member_page *page, size_t limit, int64_t profile_id);
/* The page is complete (sources read): next_after becomes its last profile id, if any. */
void sd_seg_page_done(struct sd_seg_member_page *page);

/* The end of a page call: on success (r == 0) *ret receives the page, else the page is
 * released. Returns r. */
int sd_seg_page_hand(int r, struct sd_seg_member_page *page, struct sd_seg_member_page *ret);

/* The cursor of the source rows of one page: rows come ordered by profile id. */
struct sd_seg_sources_cursor {
    size_t at;  /* the member the rows are at */
    size_t cap; /* its sources' capacity */
};

/* One source record row of a page's member: its profile id, source and customer id (NULL read
 * as ""), and its e-mail when that is a string (else NULL); rows of a member come most
 * recently updated first, so its e-mail is the first row's that has one. A row of a profile
 * that is not on the page is passed over. */
void sd_seg_sources_add(struct sd_seg_member_page *page, struct sd_seg_sources_cursor *cur,
                        int64_t profile_id, const char *source, const char *customer_id,
                        const char *email);
/* After the last row: every member's sources by (source, customer_id), byte order. */
void sd_seg_sources_sort(struct sd_seg_member_page *page);

/* The snapshot being created, as its row is written. */
struct sd_seg_snapshot_req {
    int64_t tenant_id;
    enum sd_env env;
    const char *segment_id;
    int64_t count; /* its member count */
    int64_t now_usec;
    int64_t ttl_usec;
};

/* What creating a snapshot does to the database. */
struct sd_seg_snapshot_io {
    /* Every member id of rule at now_usec, ascending, from one read within budget (heap). 0
     * or a negative errno. */
    int (*members)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                   const struct sd_seg_rule *rule, int64_t now_usec,
                   const struct sd_seg_budget *budget, int64_t **ret, size_t *ret_n);
    /* Purge and insert the (incomplete) snapshot row `id` of q. 0 or a negative errno. */
    int (*open)(struct sd_store *s, const struct sd_seg_snapshot_req *q, int64_t id);
    /* Insert ids[0..n) as members of `id` (n may be 0, ids NULL then); `last`: the snapshot
     * is complete with them. 0 or a negative errno. */
    int (*chunk)(struct sd_store *s, int64_t id, const int64_t *ids, size_t n, bool last);
};

/* The snapshot_create op (audience.h) with io's reads and writes: -EINVAL unless there is a
 * rule, a segment id, env TEST or PROD and a positive ttl; then the members are computed, a
 * random positive id drawn, the row written, then chunks of at most SD_SEGMENT_SNAPSHOT_CHUNK
 * ids (one empty chunk when there are no members), the last completing it. 0 with *ret_id and
 * *ret_count, or the first negative errno (an incomplete snapshot is never read and goes with
 * its expiry). */
int sd_seg_snapshot_create(const struct sd_seg_snapshot_io *io, struct sd_store *s,
                           int64_t tenant_id, enum sd_env env, const char *segment_id,
                           const struct sd_seg_rule *rule, int64_t now_usec, int64_t ttl_usec,
                           const struct sd_seg_budget *budget, int64_t *ret_id, int64_t *ret_count);

#endif
