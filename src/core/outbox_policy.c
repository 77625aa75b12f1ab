/* outbox_policy.c — the outbox's decisions that need no network and no connector: the back-off
 * schedule, the WAIT's default, the rate plan, ids and keys, how a
 * delivery is shown, and the replay of a dead delivery (see outbox.h). Kept apart from the
 * worker (outbox.c) so the rules are unit-tested on their own and the CLI can use the views.
 *
 * The item's document (outbox_items.doc) is core's format: {"last_status", "last_error",
 * "last_response", "last_attempt_usec", "delivered_usec", "waits", "replays",
 * "previous_idempotency_keys", "cancelled": {"by", "reason", "at"}, "history": [{"at_usec",
 * "attempt", "status", "error", "ms"}]} plus the facts its connector's deliver reported (the
 * audience push: "kind", "segment_name", "customers", "remote_segment_id"). */
#include "core/outbox.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "core/connector_config.h"
#include "http/client.h"

#define SEC (1000000LL)

/* The base schedule: attempt n (1-based) is sent about base[n-1] after the first. */
static const int64_t base_usec[SD_OUTBOX_MAX_ATTEMPTS] = {
    0, 30 * SEC, 5 * 60 * SEC, 30 * 60 * SEC, 2 * 3600 * SEC, 6 * 3600 * SEC,
};

static pthread_once_t scale_once = PTHREAD_ONCE_INIT;
static double scale_value = 1.0;

static void scale_load(void)
{
    const char *v = getenv("STAGEDOOR_OUTBOX_TIME_SCALE");
    if (!v || !*v) {
        return;
    }
    char *end = NULL;
    double d = strtod(v, &end);
    if (end && *end == '\0' && isfinite(d) && d >= 0.000001 && d <= 1.0) {
        scale_value = d;
    }
}

double sd_outbox_time_scale(void)
{
    pthread_once(&scale_once, scale_load);
    return scale_value;
}

void sd_outbox_backoff_bounds(int failed, int64_t *ret_lo, int64_t *ret_hi)
{
    if (failed < 1) {
        failed = 1;
    }
    if (failed > SD_OUTBOX_MAX_ATTEMPTS - 1) {
        failed = SD_OUTBOX_MAX_ATTEMPTS - 1;
    }
    *ret_lo = base_usec[failed - 1];
    *ret_hi = base_usec[failed];
}

int64_t sd_outbox_backoff_usec(int failed, uint64_t rnd, double scale)
{
    int64_t lo, hi;
    sd_outbox_backoff_bounds(failed, &lo, &hi);
    /* 53 random bits → [0, 1]: uniform over the whole step, both ends reachable. */
    double u = (double)(rnd >> 11) / (double)((1ULL << 53) - 1);
    double v = ((double)lo + u * (double)(hi - lo)) * scale;
    return (int64_t)v;
}

int64_t sd_outbox_retry_after_usec(const char *retry_after, double scale)
{
    int64_t s = retry_after ? sd_http_retry_after(retry_after, SD_OUTBOX_RETRY_AFTER_MAX_S) : -1;
    if (s < 0) {
        return (int64_t)((double)SD_OUTBOX_RETRY_AFTER_DEFAULT_S * SEC * scale);
    }
    return s * SEC;
}

void sd_outbox_plan(const int64_t *sends, size_t n_sends, int64_t limit, int64_t window_usec,
                    int64_t now_usec, size_t n_waiting, int64_t *ret_slots)
{
    if (limit < 1) {
        limit = 1;
    }
    size_t cap = n_sends + n_waiting;
    int64_t *all = sd_malloc((cap ? cap : 1) * sizeof(*all));
    size_t n = 0;
    /* Keep `all` ascending (sends arrive ascending; a slot is inserted in place). */
    for (size_t i = 0; i < n_sends; i++) {
        size_t k = n;
        while (k > 0 && all[k - 1] > sends[i]) {
            all[k] = all[k - 1];
            k--;
        }
        all[k] = sends[i];
        n++;
    }
    for (size_t j = 0; j < n_waiting; j++) {
        int64_t t = now_usec;
        if (n >= (size_t)limit) {
            /* The limit-th most recent send must have left the window (t - window, t]. */
            int64_t free_at = all[n - (size_t)limit] + window_usec;
            if (free_at > t) {
                t = free_at;
            }
        }
        ret_slots[j] = t;
        size_t k = n;
        while (k > 0 && all[k - 1] > t) {
            all[k] = all[k - 1];
            k--;
        }
        all[k] = t;
        n++;
    }
    free(all);
}

struct sd_outbox_clock sd_outbox_clock_now(int64_t lease_usec)
{
    return (struct sd_outbox_clock){
        .now_usec = sd_now_usec(),
        .window_usec = SD_OUTBOX_WINDOW_USEC,
        .lease_usec = lease_usec,
        .plan = sd_outbox_plan,
    };
}

/* ---- views ----------------------------------------------------------------------------------- */

static json_t *copy_or_null(const json_t *doc, const char *key)
{
    const json_t *v = json_object_get(doc, key);
    return v ? json_deep_copy(v) : json_null();
}

static int64_t doc_int(const json_t *doc, const char *key)
{
    const json_t *v = json_object_get(doc, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

/* The facts its connector's deliver reported: the item's document without core's members. */
static json_t *connector_facts(const json_t *doc)
{
    static const char *const core_keys[] = {
        "last_status", "last_error", "last_response", "last_attempt_usec", "delivered_usec",
        "waits",       "replays",    "previous_idempotency_keys", "cancelled", "history", NULL};
    json_t *out = json_object();
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)doc, key, v)
    {
        bool core = false;
        for (size_t i = 0; core_keys[i] && !core; i++) {
            core = strcmp(key, core_keys[i]) == 0;
        }
        if (!core) {
            json_object_set(out, key, v);
        }
    }
    return out;
}

json_t *sd_outbox_delivery_view(const struct sd_outbox_item *d)
{
    json_t *doc = d->doc ? json_loads(d->doc, 0, NULL) : NULL;
    if (!json_is_object(doc)) {
        json_decref(doc);
        doc = json_object();
    }
    bool pending = d->state == SD_DELIVERY_QUEUED || d->state == SD_DELIVERY_RETRYING;
    const char *waiting = NULL;
    if (d->state == SD_DELIVERY_QUEUED && d->next_attempt_usec > sd_now_usec()) {
        waiting = "rate_limit";
    } else if (d->state == SD_DELIVERY_RETRYING) {
        int64_t last = doc_int(doc, "last_status");
        waiting = last == 429 || last == 509 ? "flow_control" : "retry";
    }
    json_t *history = json_array();
    const json_t *h = json_object_get(doc, "history");
    size_t i;
    const json_t *e;
    json_array_foreach(h, i, e)
    {
        json_t *row = json_object();
        json_object_set_new(row, "at", sd_json_time(doc_int(e, "at_usec")));
        json_object_set_new(row, "attempt", copy_or_null(e, "attempt"));
        json_object_set_new(row, "status", copy_or_null(e, "status"));
        json_object_set_new(row, "error", copy_or_null(e, "error"));
        json_object_set_new(row, "duration_ms", copy_or_null(e, "ms"));
        json_array_append_new(history, row);
    }
    const char *kind = json_string_value(json_object_get(doc, "kind"));
    json_t *v = json_object();
    json_object_set_new(v, "delivery_id", json_string(d->id));
    json_object_set_new(v, "client_id", json_string(d->client_id ? d->client_id : ""));
    json_object_set_new(v, "environment", json_string(sd_env_name(d->env)));
    bool segment = d->subject_kind && strcmp(d->subject_kind, SD_OUTBOX_SUBJECT_SEGMENT) == 0;
    json_object_set_new(v, "connector_id", json_string(d->connector_id));
    json_object_set_new(v, "operation", json_string(d->operation ? d->operation : ""));
    json_object_set_new(v, "subject",
                        json_pack("{s:s, s:s}", "kind", d->subject_kind ? d->subject_kind : "",
                                  "id", d->subject_id ? d->subject_id : ""));
    json_object_set_new(v, "segment_id", segment ? json_string(d->subject_id) : json_null());
    json_object_set_new(v, "target_id", json_string(d->connector_id));
    json_object_set_new(v, "origin", d->origin ? json_string(d->origin) : json_null());
    json_object_set_new(v, "remote_ref", d->remote_ref ? json_string(d->remote_ref) : json_null());
    json_object_set_new(v, "dedupe_key", d->dedupe_key ? json_string(d->dedupe_key) : json_null());
    json_object_set_new(v, "state", json_string(sd_delivery_state_name(d->state)));
    /* The push's own fact (create or update); other connectors may report one. */
    json_object_set_new(v, "kind",
                        kind      ? json_string(kind)
                        : segment ? json_string("create")
                                  : json_null());
    json_object_set_new(v, "attempts", json_integer(d->attempts));
    json_object_set_new(v, "max_attempts", json_integer(SD_OUTBOX_MAX_ATTEMPTS));
    json_object_set_new(v, "next_attempt_at",
                        pending ? sd_json_time(d->next_attempt_usec) : json_null());
    json_object_set_new(v, "next_attempt_usec",
                        pending ? json_integer(d->next_attempt_usec) : json_null());
    json_object_set_new(v, "waiting_for", waiting ? json_string(waiting) : json_null());
    json_object_set_new(v, "last_status", copy_or_null(doc, "last_status"));
    json_object_set_new(v, "last_error", copy_or_null(doc, "last_error"));
    json_object_set_new(v, "last_response", copy_or_null(doc, "last_response"));
    json_object_set_new(v, "remote_segment_id", copy_or_null(doc, "remote_segment_id"));
    json_object_set_new(v, "segment_name", copy_or_null(doc, "segment_name"));
    json_object_set_new(v, "customers", copy_or_null(doc, "customers"));
    json_object_set_new(v, "idempotency_key", json_string(d->idem_key ? d->idem_key : ""));
    json_object_set_new(v, "replays", json_integer(doc_int(doc, "replays")));
    json_object_set_new(v, "created_at", sd_json_time(d->created_usec));
    json_object_set_new(v, "updated_at", sd_json_time(d->updated_usec));
    json_object_set_new(v, "first_sent_at", sd_json_time(d->sent_usec));
    json_object_set_new(v, "first_sent_usec",
                        d->sent_usec ? json_integer(d->sent_usec) : json_null());
    json_object_set_new(v, "delivered_at", sd_json_time(doc_int(doc, "delivered_usec")));
    json_object_set_new(v, "cancelled", copy_or_null(doc, "cancelled"));
    json_object_set_new(v, "history", history);
    json_object_set_new(v, "facts", connector_facts(doc));
    json_decref(doc);
    return v;
}

/* ---- ids, replay ----------------------------------------------------------------------------- */

char *sd_outbox_new_id(const char *prefix)
{
    uint8_t rnd[8];
    if (sd_random_bytes(rnd, sizeof(rnd)) < 0) {
        return NULL;
    }
    char hex[17];
    for (size_t i = 0; i < sizeof(rnd); i++) {
        snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
    }
    return sd_asprintf("%s%s", prefix, hex);
}

char *sd_outbox_new_idem_key(void)
{
    uint8_t b[16];
    if (sd_random_bytes(b, sizeof(b)) < 0) {
        return NULL;
    }
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* UUID version 4 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    return sd_asprintf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
                       b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
                       b[13], b[14], b[15]);
}

int sd_outbox_retry(struct sd_store_handle *st, const char *delivery_id)
{
    struct sd_outbox_item d = {0};
    int r = sd_store_delivery_get(st, 0, SD_ENV_TEST, delivery_id, &d);
    if (r < 0) {
        return r;
    }
    char *key = NULL, *text = NULL;
    json_t *doc = NULL;
    if (d.state != SD_DELIVERY_DEAD) {
        r = -EBUSY;
        goto out;
    }
    doc = json_loads(d.doc, 0, NULL);
    if (!json_is_object(doc)) {
        json_decref(doc);
        doc = json_object();
    }
    json_t *prev = json_object_get(doc, "previous_idempotency_keys");
    if (!json_is_array(prev)) {
        prev = json_array();
        json_object_set_new(doc, "previous_idempotency_keys", prev);
    }
    json_array_append_new(prev, json_string(d.idem_key));
    json_object_set_new(doc, "replays", json_integer(doc_int(doc, "replays") + 1));
    json_object_set_new(doc, "waits", json_integer(0));
    json_object_set_new(doc, "replayed_usec", json_integer(sd_now_usec()));
    key = sd_outbox_new_idem_key();
    text = json_dumps(doc, JSON_COMPACT);
    if (!key || !text) {
        r = -EIO;
        goto out;
    }
    struct sd_outbox_clock clk = sd_outbox_clock_now(SD_OUTBOX_CLAIM_LEASE_USEC);
    r = sd_store_delivery_requeue(st, d.id, key, text, &clk);
out:
    free(key);
    free(text);
    json_decref(doc);
    sd_outbox_item_release(&d);
    return r;
}

int sd_outbox_cancel(struct sd_store_handle *st, const char *delivery_id, const char *who,
                     const char *why)
{
    struct sd_outbox_item d = {0};
    int r = sd_store_delivery_get(st, 0, SD_ENV_TEST, delivery_id, &d);
    if (r < 0) {
        return r;
    }
    char *text = NULL;
    json_t *doc = NULL;
    if (d.state != SD_DELIVERY_QUEUED && d.state != SD_DELIVERY_RETRYING) {
        r = -EBUSY;
        goto out;
    }
    doc = json_loads(d.doc, 0, NULL);
    if (!json_is_object(doc)) {
        json_decref(doc);
        doc = json_object();
    }
    int64_t now = sd_now_usec();
    json_object_set_new(doc, "cancelled",
                        json_pack("{s:s, s:o, s:o}", "by", who ? who : "admin", "reason",
                                  why ? sd_json_text(why) : json_null(), "at", sd_json_time(now)));
    text = json_dumps(doc, JSON_COMPACT);
    r = text ? sd_store_delivery_cancel(st, d.id, text, now) : -EIO;
out:
    free(text);
    json_decref(doc);
    sd_outbox_item_release(&d);
    return r;
}

int sd_outbox_send_now(struct sd_store_handle *st, const char *delivery_id)
{
    struct sd_outbox_clock clk = sd_outbox_clock_now(SD_OUTBOX_CLAIM_LEASE_USEC);
    return sd_store_delivery_send_now(st, delivery_id, &clk);
}
