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

#include "core/connector.h"

struct tb_conf {
    const char *base_url, *api_key, *api_secret;
    /* pull */
    const char *fans_updated_path, *tickets_path, *activities_path;
    const char *backfill_start, *currency, *event_city;
    bool pull_fans, pull_tickets, pull_activities;
    int policy;         /* enum tb_policy */
    int deleted_policy; /* enum tb_deleted_policy */
    int64_t tickets_page_size, fans_page_size, partition_days, activities_page_size;
    int64_t timeout_seconds, max_attempts, retry_initial_ms, max_wait_seconds;
    /* push */
    bool push_tickets, push_fans;
    const char *tickets_bulk_path, *tickets_bulk_field, *fans_create_path, *fan_update_path;
    const char *fan_get_path;
    int64_t bulk_size;
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

#endif
