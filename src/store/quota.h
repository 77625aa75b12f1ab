/* quota.h — the store's quota ledger: how many calls each vendor credential has made in each
 * fixed time window. Part of the one store interface (store.h): sd_store_ops.quota points to a
 * backend's `struct sd_store_quota_ops`, callers use the sd_store_quota_* wrappers
 * (store/quota.c), which answer -ENOTSUP for a backend without a ledger.
 *
 * The store counts; it does not decide. Which windows a credential has, where they start and
 * end, and how far a take may fill them (the limit, lower for reads than for writes) are
 * core's business (core/quota.c): the store sees only a credential key, window names, window
 * bounds and limits.
 *
 * Obligations of every backend:
 *  - Path: control plane. Any thread, any number of processes on one store. A take never waits
 *    behind the data writer's transaction (SQLite: the ledger lives in control.db).
 *  - A take is atomic against every other take on the same store, from any thread or process:
 *    two takes that both see room for n when only room for n is left cannot both succeed
 *    (SQLite: BEGIN IMMEDIATE on control.db, so the check and the increment are one write
 *    transaction).
 *  - A take is all or nothing across the slots it is given.
 *  - Durable once it returns 0: a restart does not reset a window's count.
 *  - Ledger writes are not settings changes: they never change sd_store_settings_version.
 *  - Rows of ended windows are deleted by the store (every take deletes all rows, of any
 *    credential, whose window ended at or before its now_usec), so the ledger's size is bounded
 *    by the credentials in use times their quotas.
 *
 * Errors: -EINVAL (bad arguments: see each op), -EAGAIN (take: no room, nothing counted),
 * -EIO (backend failure, logged by the backend). */
#ifndef SD_STORE_QUOTA_H
#define SD_STORE_QUOTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define SD_QUOTA_SLOTS_MAX 8 /* windows per credential in one call */
#define SD_QUOTA_KEY_MAX 128 /* bytes of a credential key */
#define SD_QUOTA_NAME_MAX 32 /* bytes of a window name */

/* One window of a credential's ledger. The caller fills name, start_usec, end_usec (the
 * window is [start_usec, end_usec), start < end) and, for a take, limit (≥ 0); the store
 * writes used. */
struct sd_quota_slot {
    const char *name;   /* the quota's name, unique among the credential's slots */
    int64_t start_usec; /* with name, identifies the window */
    int64_t end_usec;
    int64_t limit; /* take: the count this take may bring the window to, at most */
    int64_t used;  /* out: calls counted in the window (after the take when it succeeded) */
};

struct sd_store_quota_ops {
    /* Count n (≥ 0) calls of cred_key in every slot's window, all or nothing: if
     * used + n <= limit holds for every slot, add n to each and return 0; otherwise count
     * nothing and return -EAGAIN. Either way (0 or -EAGAIN) every slot's `used` is set to the
     * window's count as the call leaves it. Also deletes the rows of every window (of any
     * credential) with end_usec <= now_usec. -EINVAL: cred_key NULL, empty or longer than
     * SD_QUOTA_KEY_MAX; n_slots 0 or above SD_QUOTA_SLOTS_MAX; a name NULL, empty or longer
     * than SD_QUOTA_NAME_MAX; start_usec >= end_usec; n or limit negative. */
    int (*take)(struct sd_store *s, const char *cred_key, int64_t now_usec, int64_t n,
                struct sd_quota_slot *slots, size_t n_slots);
    /* Set every slot's `used` to its window's count (0 if nothing was counted there), from one
     * consistent snapshot; limit is ignored. Same -EINVAL rules as take. */
    int (*read)(struct sd_store *s, const char *cred_key, struct sd_quota_slot *slots,
                size_t n_slots);
};

int sd_store_quota_take(struct sd_store_handle *h, const char *cred_key, int64_t now_usec,
                        int64_t n, struct sd_quota_slot *slots, size_t n_slots);
int sd_store_quota_read(struct sd_store_handle *h, const char *cred_key,
                        struct sd_quota_slot *slots, size_t n_slots);

/* The -EINVAL rules of the ops, for the backends: sd_quota_args_ok is read's (cred_key, every
 * slot's name and bounds, n_slots), sd_quota_take_args_ok is take's (read's, and n and every
 * limit ≥ 0). True when the call may proceed. */
bool sd_quota_args_ok(const char *cred_key, const struct sd_quota_slot *slots, size_t n_slots);
bool sd_quota_take_args_ok(const char *cred_key, int64_t n, const struct sd_quota_slot *slots,
                           size_t n_slots);

/* The SQLite ledger (store/sqlite/sqlite_quota.c). */
extern const struct sd_store_quota_ops sd_sqlite_quota_ops;

#endif
