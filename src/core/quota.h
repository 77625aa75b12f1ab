/* quota.h — vendor rate limits as data: a connector type declares its quotas (struct sd_quota
 * in core/connector.h) and the credential settings that identify whose budget a call spends;
 * this module turns them into windows of the store's persistent ledger (store/quota.h).
 *
 * Windows are fixed and aligned to the Unix epoch: the window of length W containing time t
 * is [t - t mod W, t - t mod W + W). A 60 s quota counts per wall-clock minute, a 86400 s one
 * per UTC day (midnight UTC; a day that starts at local midnight is a later setting). A take
 * spends n calls in every window of the credential at once, or in none.
 *
 * The credential key: the connector type, ":", and the hex SHA-256 of the credential
 * settings' values (or of the instance id when the type names no credential settings). Two
 * instances whose credential values are equal share one ledger; the secret itself is never
 * stored or shown.
 *
 * Reads and writes: a READ take (a pull run) may fill a window up to calls - write_reserve, a
 * WRITE take (a delivery) up to calls, so the write reserve is always left for the outbox.
 *
 * Thread rules: any thread; takes are atomic across threads and processes (the store's
 * obligation). Times are passed in (now_usec, µs since the epoch) so that tests need no clock. */
#ifndef SD_CORE_QUOTA_H
#define SD_CORE_QUOTA_H

#include <jansson.h>
#include <stdint.h>

#include "core/connector.h"
#include "store/quota.h"
#include "store/store.h"

enum sd_quota_use {
    SD_QUOTA_READ = 0,  /* pull runs: up to calls - write_reserve */
    SD_QUOTA_WRITE = 1, /* deliveries: up to calls */
};

#define SD_QUOTAS_MAX SD_QUOTA_SLOTS_MAX /* quotas one connector type may declare */

/* 0 if q (terminated by {NULL}; NULL = none) follows the rules of struct sd_quota and holds at
 * most SD_QUOTAS_MAX entries, else -EINVAL. */
int sd_quota_check(const struct sd_quota *q);

/* The window of length window_usec (> 0) that contains now_usec: [*ret_start, *ret_end). */
void sd_quota_window(int64_t now_usec, int64_t window_usec, int64_t *ret_start, int64_t *ret_end);

/* The credential key of an instance of c with these (checked) settings: a new heap string.
 * Missing credential settings count as null, so instances that all lack one share a ledger. */
char *sd_quota_cred_key(const struct sd_connector *c, const json_t *settings,
                        const char *instance_id);

/* Spend n (≥ 0) calls of cred_key in every window of q at now_usec, all or nothing.
 * 0: taken (also when q declares no quota); -EAGAIN: some window has no room for n, nothing
 * spent, *ret_retry_at_usec (if not NULL) is the earliest time every window has room (the end
 * of the latest full window), unless others spend it first; -E2BIG: n exceeds a window's
 * limit for this use, so waiting cannot help; -EINVAL: bad arguments or malformed q; store
 * errors (-EIO). */
int sd_quota_take(struct sd_store_handle *st, const char *cred_key, const struct sd_quota *q,
                  enum sd_quota_use use, int64_t n, int64_t now_usec, int64_t *ret_retry_at_usec);
/* The fullest window (used / calls) after this thread's last sd_quota_take that reached the
 * ledger: its name, calls counted (a window that refused the take counts as full) and calls
 * per window; *ret_limit 0 when the last take counted nothing. For the alerts (core/alerts.h). */
void sd_quota_last_fill(const char **ret_window, int64_t *ret_used, int64_t *ret_limit);

/* The quotas an instance counts against: c->quotas, with `calls` of quota NAME replaced by
 * the instance's INT setting "quota_NAME_calls" when the type declares one and its value is
 * above 0 (a venue whose contract allows more or fewer calls), and write_reserve scaled in
 * proportion. Writes into ret (SD_QUOTAS_MAX + 1 entries, {NULL}-terminated); returns ret, or
 * c->quotas itself when no setting overrides it. */
const struct sd_quota *sd_quota_effective(const struct sd_connector *c, const json_t *settings,
                                          struct sd_quota *ret);

/* sd_quota_take for an instance: the key from sd_quota_cred_key(c, settings, instance_id) and
 * c's quotas. What the outbox worker calls (WRITE, n = 1) before each delivery. */
int sd_quota_take_instance(struct sd_store_handle *st, const struct sd_connector *c,
                           const json_t *settings, const char *instance_id, enum sd_quota_use use,
                           int64_t n, int64_t now_usec, int64_t *ret_retry_at_usec);

/* The ledger at now_usec, one object per quota in declaration order:
 * {"window": name, "limit": calls, "used": calls counted in the current window,
 *  "reserved_for_writes": write_reserve, "resets_at": RFC 3339 end of the current window}.
 * An empty array when q declares none; NULL if q is malformed or the store fails. New
 * reference. */
json_t *sd_quota_status(struct sd_store_handle *st, const char *cred_key, const struct sd_quota *q,
                        int64_t now_usec);

/* sd_quota_status for an instance (see sd_quota_take_instance). */
json_t *sd_quota_status_instance(struct sd_store_handle *st, const struct sd_connector *c,
                                 const json_t *settings, const char *instance_id, int64_t now_usec);

#endif
