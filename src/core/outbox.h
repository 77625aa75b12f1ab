/* outbox.h — the generic transactional outbox: core owns the queue of outbound items (which
 * connector instance, which operation, which subject; store/audience.h), the connectors'
 * `deliver` owns only the request and its verdict (core/connector.h). The audience push is one
 * such connector (connectors/audience_push): a push request becomes an item of operation
 * "push_segment".
 *
 * Delivery semantics (at least once, made effectively once by the receiver):
 *  - An item is committed (synchronous=FULL) before the push answers 202, or in the writer's
 *    transaction that stores the change causing it (sd_outbox_add from a connector's
 *    on_change): a change is never stored without its items, nor an item without its change.
 *    It carries a random Idempotency-Key, sent unchanged with every attempt of that run.
 *  - A worker leases the item in the same statement that claims it, with a fencing token (a
 *    counter the claim bumps); deliver keeps the lease ahead of its request
 *    (sd_connector_lease_extend: the whole HTTP timeout + SD_OUTBOX_LEASE_MARGIN_USEC), so two
 *    workers (threads or processes) never perform one item at once, and the outcome of a worker
 *    whose lease was taken over is refused.
 *  - FIFO per subject: an item waits while an earlier item of the same connector and subject is
 *    queued, sending or retrying, so two changes of one contact reach the remote in order.
 *  - The outcome (and the remote reference a create answered with) is written in the
 *    transaction that ends the lease: once that commits the item is never sent again. If the
 *    process dies between the receiver's answer and that commit, the item is sent again with
 *    the same Idempotency-Key. A lease records the process instance that holds it (boot id,
 *    pid, process start time); a hub that starts ends at once the leases of instances that are
 *    gone (kill -9, crash, reboot).
 *
 * Retry policy: the verdict of deliver (http/verdict.h). OK delivers; RETRY backs off with full
 * jitter (at most SD_OUTBOX_MAX_ATTEMPTS attempts, then dead; a longer Retry-After is
 * honoured); WAIT (429, 509) waits for the remote's Retry-After (or the scaled default) and
 * gives its attempt back (at most SD_OUTBOX_MAX_WAITS waits in one run); REJECT is dead at
 * once, with the remote answer kept. A dead item can be replayed (sd_outbox_retry): a new run
 * with attempts reset and a new Idempotency-Key. A waiting item can be cancelled or sent now.
 *
 * Wake-up: a worker sleeps until its next item is due, a wake-up, or the poll interval
 * (STAGEDOOR_OUTBOX_POLL_MS, default 1000, range 5..3600000; the fallback for items queued by
 * another process). Items queued in this process wake the workers after their commit.
 *
 * Test knob: STAGEDOOR_OUTBOX_TIME_SCALE (read once; default 1, range 0.000001..1) multiplies
 * the back-off schedule and the default WAIT, so 0.001 turns 30 s into 30 ms. It does not
 * touch Retry-After values sent by the receiver, HTTP timeouts, leases or the one-hour rate
 * window. Fault hook: STAGEDOOR_FAULT=outbox_after_send[:N] ends the process with _exit(137)
 * right after the N-th 2xx answer arrives, before it is recorded; outbox_after_claim right after
 * a claim, before anything is sent (base/fault.h).
 *
 * Thread rules: the policy functions are pure and reentrant. sd_outbox_new/free from one thread
 * (serve's main thread); wake, push and retry from any thread. */
#ifndef SD_CORE_OUTBOX_H
#define SD_CORE_OUTBOX_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/connector.h"
#include "core/hub.h"
#include "model/model.h"
#include "store/audience.h"

/* The audience push's operation and subject kind (connectors/audience_push). */
#define SD_OUTBOX_OP_PUSH_SEGMENT "push_segment"
#define SD_OUTBOX_SUBJECT_SEGMENT "segment"

#define SD_OUTBOX_MAX_ATTEMPTS 6
#define SD_OUTBOX_THREADS 4
#define SD_OUTBOX_WINDOW_USEC (3600LL * 1000000)     /* rate window: a rolling hour */
#define SD_OUTBOX_LEASE_MARGIN_USEC (10LL * 1000000) /* lease beyond the HTTP timeout */
#define SD_OUTBOX_CLAIM_LEASE_USEC (120LL * 1000000) /* lease while the body is built */
#define SD_OUTBOX_RETRY_AFTER_MAX_S 3600             /* 429: longest wait honoured */
#define SD_OUTBOX_RETRY_AFTER_DEFAULT_S 60           /* 429 without Retry-After */
#define SD_OUTBOX_MAX_WAITS 50                       /* WAITs in one run before dead */
#define SD_OUTBOX_KEPT_ANSWER 2048                   /* receiver's answer kept in the record */

/* ---- policy (pure) --------------------------------------------------------------------------- */

/* The scale factor from STAGEDOOR_OUTBOX_TIME_SCALE (1 if unset or out of range). */
double sd_outbox_time_scale(void);

/* Back-off before attempt `failed + 1` after `failed` failed attempts (1 ≤ failed < max):
 * uniform ("full jitter") over the whole step [lo, hi] of the base schedule 0 s, 30 s, 5 min,
 * 30 min, 2 h, 6 h — after attempt 1 between 0 and 30 s, after attempt 2 between 30 s and 5 min,
 * …, after attempt 5 between 2 h and 6 h — multiplied by scale. rnd is a uniform random 64-bit
 * value. sd_outbox_backoff_bounds gives [lo, hi] unscaled. */
int64_t sd_outbox_backoff_usec(int failed, uint64_t rnd, double scale);
void sd_outbox_backoff_bounds(int failed, int64_t *ret_lo, int64_t *ret_hi);

/* WAIT: Retry-After (seconds or HTTP-date) bounded to SD_OUTBOX_RETRY_AFTER_MAX_S, or the
 * scaled default when absent or unreadable. */
int64_t sd_outbox_retry_after_usec(const char *retry_after, double scale);

/* The rate plan (sd_outbox_plan_fn, store/audience.h): the j-th waiting delivery may go at the
 * earliest time t ≥ now at which fewer than `limit` sends — those given plus the slots of the
 * waiting deliveries before it — fall inside (t - window, t]. */
void sd_outbox_plan(const int64_t *sends, size_t n_sends, int64_t limit, int64_t window_usec,
                    int64_t now_usec, size_t n_waiting, int64_t *ret_slots);

/* A clock for the store's outbox ops: now, the one-hour window, lease_usec and sd_outbox_plan. */
struct sd_outbox_clock sd_outbox_clock_now(int64_t lease_usec);

/* prefix + 16 random hex digits ("dlv_", "tgt_"); a UUID-v4-shaped random Idempotency-Key.
 * Heap strings; NULL if the system's randomness failed. */
char *sd_outbox_new_id(const char *prefix);
char *sd_outbox_new_idem_key(void);

/* ---- views and operator actions (shared by the API and the CLI) ------------------------------ */

/* The delivery as shown: delivery_id, client_id, environment, segment_id, target_id, state,
 * kind, attempts, max_attempts, next_attempt_at, waiting_for ("rate_limit", "retry",
 * "flow_control" or null), last_status, last_error, last_response, remote_segment_id,
 * idempotency_key, customers, facts (the connector's own figures, an object, or null),
 * created_at, updated_at, first_sent_at, delivered_at, history.
 * New reference. */
json_t *sd_outbox_delivery_view(const struct sd_outbox_item *d);

/* Replay a dead delivery: queued again now with attempts reset and a new Idempotency-Key (the
 * body will be rebuilt, so it is a new request for the receiver); the old key is kept in the
 * record. -ENOENT missing, -EBUSY not dead, or a store error. */
int sd_outbox_retry(struct sd_store_handle *st, const char *delivery_id);

/* Cancel a waiting (queued or retrying) item: cancelled, for good, with who ("admin", "cli")
 * and why (may be NULL) kept in the record ("cancelled"). Send now: a waiting item's next
 * attempt becomes now (its attempts are not reset; a rate limit still applies to a first
 * send). Both: -ENOENT missing, -EBUSY not waiting, or a store error. */
int sd_outbox_cancel(struct sd_store_handle *st, const char *delivery_id, const char *who,
                     const char *why);
int sd_outbox_send_now(struct sd_store_handle *st, const char *delivery_id);

/* ---- push and the worker --------------------------------------------------------------------- */

/* Queue a push of segment_id to target_id for (tenant_id, env). Both must exist in that tenant
 * and environment: -ENOENT with *ret_what = "segment" or "target" otherwise (ret_what may be
 * NULL). On success the delivery is committed and *ret_id (heap) names it; the worker is woken.
 * request_key (the request's Idempotency-Key, or NULL): a push with a key used before for the
 * same segment and target answers the delivery that push created (*ret_replayed true, nothing
 * new queued); used for another segment or target, -EEXIST. Returns 0, -ENOENT, -EEXIST or a
 * store error. */
int sd_outbox_push(struct sd_hub *hub, int64_t tenant_id, enum sd_env env, const char *segment_id,
                   const char *target_id, const char *request_key, char **ret_id,
                   const char **ret_what, bool *ret_replayed);
/* The same with options, for any target whose type declares a segment_operation (the item is
 * of that operation; audience_push's is "push_segment"): -ENOTSUP with *ret_what "target" when
 * the target's type takes no segment, or "dry_run" when a dry run is asked of a type that
 * cannot do one. dry_run: the item carries the payload {"dry_run": true} and its doc
 * "dry_run": true; the connector computes its facts and sends nothing. A request key used for a
 * dry run and then for a real push (or back) is -EEXIST. opt may be NULL. */
struct sd_push_options {
    bool dry_run;
};
int sd_outbox_push_segment(struct sd_hub *hub, int64_t tenant_id, enum sd_env env,
                           const char *segment_id, const char *target_id, const char *request_key,
                           const struct sd_push_options *opt, char **ret_id, const char **ret_what,
                           bool *ret_replayed);

/* ---- transactional enqueue (the writer's side) ------------------------------------------------
 */

/* Called by the writer thread, inside the job that applied `batch` for (tenant_id, env) (its
 * savepoint, before COMMIT), after the store accepted it: every record of the batch is offered
 * to every target instance of that tenant and environment whose type has on_change and whose id
 * is not batch->origin (no echo); the items they add are stored in the same transaction. Records
 * stored unchanged are offered too (the store does not say which were): connectors deduplicate
 * with a dedupe key. Returns the number of items stored, or negative errno (then the job must
 * fail, so the change is undone with its items). Cheap when no registered type has on_change. */
int sd_outbox_changes_in_writer(struct sd_store_handle *st, int64_t tenant_id, enum sd_env env,
                                const struct sd_batch *batch);

/* For on_change: queue one item of the calling instance. payload: the request's data as of the
 * change (NULL: deliver builds it at send time from the subject); dedupe_key: while an item of
 * this instance with the same key still waits, no second one is queued (NULL: none). Errors
 * are kept in `out` and fail the writer's job. */
void sd_outbox_add(struct sd_outbox_adder *out, const char *operation, const char *subject_kind,
                   const char *subject_id, const json_t *payload, const char *dedupe_key);

/* For on_change, the one store read it may make: *ret_n = how many customer records of
 * member_source are linked into the same profile as the changed customer (the record itself not
 * counted), as the writer's transaction sees it (profiles are linked before on_change runs).
 * One indexed lookup, so an instance can queue only the customers linked to one of its records
 * instead of every change of a large import. 0, -EINVAL (not a customer change), or the store's
 * negative errno, which is also kept in `out` and fails the writer's job. */
int sd_outbox_change_linked(struct sd_outbox_adder *out, const struct sd_change *chg,
                            const char *member_source, int64_t *ret_n);

struct sd_outbox;
struct sd_buf;

/* Start SD_OUTBOX_THREADS worker threads on the hub's store. */
int sd_outbox_new(struct sd_hub *hub, struct sd_outbox **ret);
/* Stop: threads finish the attempt they are in (bounded by its HTTP timeout) and record it,
 * then exit. NULL is fine. */
void sd_outbox_free(struct sd_outbox *o);
/* Look for due deliveries now (after a push or a replay). NULL is fine. Items that a change
 * queued (sd_outbox_add) need no call: sd_outbox_new hooks the hub's writer
 * (sd_writer_set_group_hook), which wakes the workers after the COMMIT that stores them. */
void sd_outbox_wake(struct sd_outbox *o);

/* /metrics: stagedoor_outbox_commit_wakes_total (commits that queued items and woke the
 * workers) and stagedoor_outbox_claims_total{after="signal"|"poll"|"busy"} (what preceded each
 * claim). Process-wide; any thread. */
void sd_outbox_metrics_render(struct sd_buf *out);

#endif
