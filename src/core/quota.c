/* quota.c — connector quotas over the store's ledger (see quota.h).
 *
 * Invariants not visible from the code:
 *  - The limit handed to the store is per use (calls - write_reserve for reads, calls for
 *    writes), so the store never learns what a read or a write is; the reserve holds because
 *    every read take is checked against the lower limit in the same atomic step that counts it.
 *  - The retry time of a refused take is the end of the latest full window: by then every full
 *    window has rolled over, and every window that had room either still has it (nobody but
 *    other takers spend it) or has rolled over too. n never exceeds a limit there (-E2BIG
 *    first), so an empty window always has room.
 *  - The credential hash covers each credential setting's name and JSON text, one per line
 *    (JSON text holds no raw newline), behind a prefix that tells a settings-based key from an
 *    instance-based one, so no two different inputs give the same text. */
#include "core/quota.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "core/connector_config.h"

static size_t count_quotas(const struct sd_quota *q)
{
    size_t n = 0;
    while (q && q[n].name) {
        n++;
    }
    return n;
}

int sd_quota_check(const struct sd_quota *q)
{
    size_t n = count_quotas(q);
    if (n > SD_QUOTAS_MAX) {
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        size_t len = strnlen(q[i].name, SD_QUOTA_NAME_MAX + 1);
        if (len == 0 || len > SD_QUOTA_NAME_MAX || q[i].window_usec <= 0 || q[i].calls <= 0 ||
            q[i].write_reserve < 0 || q[i].write_reserve > q[i].calls) {
            return -EINVAL;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(q[i].name, q[j].name) == 0) {
                return -EINVAL;
            }
        }
    }
    return 0;
}

void sd_quota_window(int64_t now_usec, int64_t window_usec, int64_t *ret_start, int64_t *ret_end)
{
    int64_t off = now_usec % window_usec;
    if (off < 0) {
        off += window_usec; /* floor, also before the epoch */
    }
    *ret_start = now_usec - off;
    *ret_end = *ret_start + window_usec;
}

char *sd_quota_cred_key(const struct sd_connector *c, const json_t *settings,
                        const char *instance_id)
{
    struct sd_buf in;
    sd_buf_init(&in);
    if (!c->credential_settings) {
        sd_buf_puts(&in, "instance\n");
        sd_buf_puts(&in, instance_id ? instance_id : "");
    } else {
        sd_buf_puts(&in, "settings");
        for (size_t i = 0; c->credential_settings[i]; i++) {
            const char *key = c->credential_settings[i];
            const json_t *v = json_object_get(settings, key);
            char *text = v ? json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
            sd_buf_printf(&in, "\n%s=%s", key, text ? text : "null");
            free(text);
        }
    }
    char hex[65];
    sd_sha256_hex(in.data ? in.data : "", in.len, hex);
    sd_buf_release(&in);
    return sd_asprintf("%s:%s", c->name, hex);
}

/* Fill slots from q for now_usec and use; n_slots = count_quotas(q) ≤ SD_QUOTAS_MAX. */
static void fill_slots(const struct sd_quota *q, size_t n_slots, enum sd_quota_use use,
                       int64_t now_usec, struct sd_quota_slot *slots)
{
    for (size_t i = 0; i < n_slots; i++) {
        slots[i] = (struct sd_quota_slot){
            .name = q[i].name,
            .limit = use == SD_QUOTA_WRITE ? q[i].calls : q[i].calls - q[i].write_reserve,
        };
        sd_quota_window(now_usec, q[i].window_usec, &slots[i].start_usec, &slots[i].end_usec);
    }
}

/* The fullest window of this thread's last take (sd_quota_last_fill): set by every take that
 * reached the ledger, so a caller can hand the fact to the alerts without a second read. */
static _Thread_local struct {
    char name[SD_QUOTA_NAME_MAX + 1];
    int64_t used, limit;
} last_fill;

void sd_quota_last_fill(const char **ret_window, int64_t *ret_used, int64_t *ret_limit)
{
    *ret_window = last_fill.name;
    *ret_used = last_fill.used;
    *ret_limit = last_fill.limit;
}

int sd_quota_take(struct sd_store_handle *st, const char *cred_key, const struct sd_quota *q,
                  enum sd_quota_use use, int64_t n, int64_t now_usec, int64_t *ret_retry_at_usec)
{
    last_fill.limit = 0;
    if (sd_quota_check(q) < 0 || n < 0 || (use != SD_QUOTA_READ && use != SD_QUOTA_WRITE)) {
        return -EINVAL;
    }
    size_t n_slots = count_quotas(q);
    if (n_slots == 0) {
        return 0;
    }
    struct sd_quota_slot slots[SD_QUOTAS_MAX];
    fill_slots(q, n_slots, use, now_usec, slots);
    for (size_t i = 0; i < n_slots; i++) {
        if (n > slots[i].limit) {
            return -E2BIG;
        }
    }
    int r = sd_store_quota_take(st, cred_key, now_usec, n, slots, n_slots);
    for (size_t i = 0; (r == 0 || r == -EAGAIN) && i < n_slots; i++) {
        /* the share of the whole window (q[i].calls), whatever this take's own limit */
        if (q[i].calls > 0 && (last_fill.limit == 0 || (double)slots[i].used / (double)q[i].calls >
                                                           (double)last_fill.used /
                                                               (double)last_fill.limit)) {
            snprintf(last_fill.name, sizeof(last_fill.name), "%s", q[i].name);
            last_fill.used = r == -EAGAIN && slots[i].used > slots[i].limit - n ? q[i].calls
                                                                                : slots[i].used;
            last_fill.limit = q[i].calls;
        }
    }
    if (r == -EAGAIN && ret_retry_at_usec) {
        int64_t at = now_usec;
        for (size_t i = 0; i < n_slots; i++) {
            if (slots[i].used > slots[i].limit - n && slots[i].end_usec > at) {
                at = slots[i].end_usec;
            }
        }
        *ret_retry_at_usec = at;
    }
    return r;
}

const struct sd_quota *sd_quota_effective(const struct sd_connector *c, const json_t *settings,
                                          struct sd_quota *ret)
{
    size_t n = count_quotas(c->quotas);
    bool changed = false;
    for (size_t i = 0; i < n && i < SD_QUOTAS_MAX; i++) {
        ret[i] = c->quotas[i];
        char key[64];
        snprintf(key, sizeof(key), "quota_%s_calls", c->quotas[i].name);
        const json_t *v = json_object_get(settings, key);
        json_int_t calls = json_is_integer(v) ? json_integer_value(v) : 0;
        if (calls > 0 && calls != c->quotas[i].calls) {
            /* the reserve keeps its share of the window, and reads keep at least one call */
            int64_t reserve = (int64_t)((double)c->quotas[i].write_reserve * (double)calls /
                                        (double)c->quotas[i].calls);
            ret[i].calls = calls;
            ret[i].write_reserve = reserve < calls ? reserve : calls - 1;
            changed = true;
        }
    }
    ret[n < SD_QUOTAS_MAX ? n : SD_QUOTAS_MAX] = (struct sd_quota){0};
    return changed ? ret : c->quotas;
}

int sd_quota_take_instance(struct sd_store_handle *st, const struct sd_connector *c,
                           const json_t *settings, const char *instance_id, enum sd_quota_use use,
                           int64_t n, int64_t now_usec, int64_t *ret_retry_at_usec)
{
    if (!c) {
        return -EINVAL;
    }
    if (!c->quotas || !c->quotas[0].name) {
        return n < 0 ? -EINVAL : 0;
    }
    char *key = sd_quota_cred_key(c, settings, instance_id);
    struct sd_quota eff[SD_QUOTAS_MAX + 1];
    int r = sd_quota_take(st, key, sd_quota_effective(c, settings, eff), use, n, now_usec,
                          ret_retry_at_usec);
    free(key);
    return r;
}

json_t *sd_quota_status(struct sd_store_handle *st, const char *cred_key, const struct sd_quota *q,
                        int64_t now_usec)
{
    if (sd_quota_check(q) < 0) {
        return NULL;
    }
    size_t n_slots = count_quotas(q);
    json_t *out = json_array();
    if (n_slots == 0) {
        return out;
    }
    struct sd_quota_slot slots[SD_QUOTAS_MAX];
    fill_slots(q, n_slots, SD_QUOTA_WRITE, now_usec, slots);
    if (sd_store_quota_read(st, cred_key, slots, n_slots) < 0) {
        json_decref(out);
        return NULL;
    }
    for (size_t i = 0; i < n_slots; i++) {
        json_array_append_new(out,
                              json_pack("{s:s, s:I, s:I, s:I, s:o}", "window", q[i].name, "limit",
                                        (json_int_t)q[i].calls, "used", (json_int_t)slots[i].used,
                                        "reserved_for_writes", (json_int_t)q[i].write_reserve,
                                        "resets_at", sd_json_time(slots[i].end_usec)));
    }
    return out;
}

json_t *sd_quota_status_instance(struct sd_store_handle *st, const struct sd_connector *c,
                                 const json_t *settings, const char *instance_id, int64_t now_usec)
{
    if (!c) {
        return NULL;
    }
    if (!c->quotas || !c->quotas[0].name) {
        return json_array();
    }
    char *key = sd_quota_cred_key(c, settings, instance_id);
    struct sd_quota eff[SD_QUOTAS_MAX + 1];
    json_t *out = sd_quota_status(st, key, sd_quota_effective(c, settings, eff), now_usec);
    free(key);
    return out;
}
