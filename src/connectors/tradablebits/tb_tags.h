/* tb_tags.h — the segment → fan tag sync of the `tradablebits` connector (tb_tags.c): the
 * outbox operation a segment push to a tradablebits instance becomes, its deliver, the
 * per-segment schedule a pull run applies, the check of the `segments` setting, and the pure
 * parts (the diff, the answers' parsers) the unit test and the fuzz target reach.
 *
 * Thread rules: as core/connector.h (deliver on an outbox worker, schedule on the instance's
 * run); the pure functions are reentrant. */
#ifndef SD_CONNECTORS_TB_TAGS_H
#define SD_CONNECTORS_TB_TAGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "core/connector.h"
#include "store/audience.h"

struct tb_conf;

#define TB_OP_SYNC_TAG "sync_tag"
#define TB_TAG_BATCH_MAX 1000 /* fan ids per tag add / remove call */

/* Deliver one "sync_tag" item (subject: a segment). See tb_tags.c. */
enum sd_verdict tb_tags_deliver(struct sd_connector_ctx *ctx, const struct sd_outbox_item *item,
                                struct sd_delivery_result *res);

/* For each segment of the `segments` setting with a schedule that is due (its last scheduled
 * sync, kept in the instance's saved state, is older than the schedule's next slot), queue a
 * sync through the outbox as the push route does. Returns the number queued (≥ 0), or a
 * negative errno (a store failure); a segment that no longer exists is logged and skipped. */
int tb_tags_schedule(struct sd_connector_ctx *ctx);

/* The `segments` setting checked entry by entry (pointer "/settings/segments"). */
void tb_tags_check(const struct tb_conf *c, struct sd_issues *errors);

/* ---- pure parts -------------------------------------------------------------------------------
 */

/* True for a fan id as the API writes it: 1–18 decimal digits, no leading zero. */
bool tb_tags_is_fan_id(const char *s);

/* The difference between the fans a tag should have (want) and those it was last given (have):
 * add = want − have, del = have − want, n_same = |want ∩ have|. Inputs in any order, duplicates
 * allowed (counted once); outputs in ascending numeric order of the ids, pointing into the
 * inputs (valid while they are), heap arrays (NULL when empty). Release with
 * tb_tag_diff_release. */
struct tb_tag_diff {
    const char **add;
    size_t n_add;
    const char **del;
    size_t n_del;
    size_t n_same;
    size_t n_want; /* distinct ids in want */
};
void tb_tags_diff(const char *const *want, size_t n_want, const char *const *have, size_t n_have,
                  struct tb_tag_diff *ret);
void tb_tag_diff_release(struct tb_tag_diff *d);

/* The tag a tag_create answer names: 0 with *ret_tag_id (heap, digits) for status "success" or
 * "duplicate" (*ret_duplicate says which), or -EPROTO with the reason in why. */
int tb_tags_parse_create(const char *body, size_t len, char **ret_tag_id, bool *ret_duplicate,
                         char *why, size_t why_size);
/* A tag add/remove answer {"meta", "data": {…, "errors": [{"fan_id", …}]}}: 0 with the fan ids
 * the remote refused (heap array of heap strings, NULL when none; only ids that were sent
 * count, at most n_sent), or -EPROTO (not that shape, or meta.status "error") with why. */
int tb_tags_parse_batch(const char *body, size_t len, const char *const *sent, size_t n_sent,
                        char ***ret_failed, size_t *ret_n_failed, char *why, size_t why_size);

#endif
