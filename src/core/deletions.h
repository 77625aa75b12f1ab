/* deletions.h — records leaving the hub on purpose: deleted by an operator or by their source
 * (a vendor's "is_deleted", another hub's tombstone), or merged into another record. Each
 * deletion leaves a tombstone in the change feed (store.h, delete_record), in the same writer
 * transaction, so every follower learns of it exactly once. Erasure of a person (GDPR) is
 * profiles.h's: it deletes every record of the person and leaves tombstones the same way.
 *
 * Thread rules: any thread except the writer's (the call waits for the commit). */
#ifndef SD_CORE_DELETIONS_H
#define SD_CORE_DELETIONS_H

#include <stddef.h>

#include "core/hub.h"
#include "store/store.h"

struct sd_deletion {
    enum sd_kind kind;
    const char *id;     /* event_id, customer_id or invoice_number */
    const char *source; /* customers: the source holding the record; NULL = the only one */
    enum sd_tombstone_reason reason;
    const char *merged_into; /* SD_TOMBSTONE_MERGED: the surviving record's id; else NULL */
};

/* What became of each deletion of one call. */
struct sd_deletion_outcome {
    size_t n_deleted;   /* records removed (each left a tombstone) */
    size_t n_missing;   /* no such record: nothing to do (deleting twice is harmless) */
    size_t n_ambiguous; /* a customer id held by several sources, none named: left as it is */
};

/* Apply deletions in order, all in ONE writer transaction, each tombstone carrying origin (a
 * connector instance id, NULL for the API). Returns 0 and *ret, or negative errno (-EINVAL a
 * bad deletion, nothing applied; -EIO / -ENOSPC from the store, nothing applied). */
int sd_hub_delete_records(struct sd_hub *hub, int64_t tenant_id, enum sd_env env,
                          const struct sd_deletion *v, size_t n, const char *origin,
                          struct sd_deletion_outcome *ret);

/* The same for a connector run that holds its run lease (connector.h, run_fence): the
 * deletions are stored only while `fence` is still the lease's token of the connector `origin`
 * — checked in the same transaction and held to its COMMIT — else -ESTALE and nothing is
 * applied (another node took the connector over). fence 0 = an unleased caller. */
int sd_hub_delete_records_fenced(struct sd_hub *hub, int64_t tenant_id, enum sd_env env,
                                 const struct sd_deletion *v, size_t n, const char *origin,
                                 int64_t fence, struct sd_deletion_outcome *ret);

/* For code already running on the writer thread (a connector's write job storing a vendor's
 * deletions with its records and cursor): the same, in the current transaction, no commit.
 * Returns 0 and *ret, or -EIO / -ENOSPC (the caller's job fails; its savepoint is undone). */
int sd_delete_records_in_writer(struct sd_store_handle *st, int64_t tenant_id, enum sd_env env,
                                const struct sd_deletion *v, size_t n, const char *origin,
                                struct sd_deletion_outcome *ret);

#endif
