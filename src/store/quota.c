/* quota.c — the store's quota ledger wrappers (store/quota.h). Like store.c's wrappers they add
 * nothing but a check that the backend keeps a ledger (-ENOTSUP otherwise). */
#include "store/quota.h"

#include <errno.h>

#define OPS(h) (sd_store_handle_ops(h)->quota)
#define CALL(op, ...)                                                                              \
    (OPS(h) && OPS(h)->op ? OPS(h)->op(sd_store_handle_backend(h), __VA_ARGS__) : -ENOTSUP)

int sd_store_quota_take(struct sd_store_handle *h, const char *cred_key, int64_t now_usec,
                        int64_t n, struct sd_quota_slot *slots, size_t n_slots)
{
    return CALL(take, cred_key, now_usec, n, slots, n_slots);
}

int sd_store_quota_read(struct sd_store_handle *h, const char *cred_key,
                        struct sd_quota_slot *slots, size_t n_slots)
{
    return CALL(read, cred_key, slots, n_slots);
}
