/* quota.c — the store's quota ledger wrappers (store/quota.h) and the argument rules both
 * backends apply. The wrappers add nothing but a check that the backend keeps a ledger
 * (-ENOTSUP otherwise); the rules live here once so that the SQLite and PostgreSQL ledgers
 * refuse exactly the same calls. */
#include "store/quota.h"

#include <errno.h>
#include <string.h>

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

static bool text_ok(const char *s, size_t max)
{
    return s && s[0] && strnlen(s, max + 1) <= max;
}

bool sd_quota_args_ok(const char *cred_key, const struct sd_quota_slot *slots, size_t n_slots)
{
    if (!text_ok(cred_key, SD_QUOTA_KEY_MAX) || !slots || n_slots == 0 ||
        n_slots > SD_QUOTA_SLOTS_MAX) {
        return false;
    }
    for (size_t i = 0; i < n_slots; i++) {
        if (!text_ok(slots[i].name, SD_QUOTA_NAME_MAX) ||
            slots[i].start_usec >= slots[i].end_usec) {
            return false;
        }
    }
    return true;
}

bool sd_quota_take_args_ok(const char *cred_key, int64_t n, const struct sd_quota_slot *slots,
                           size_t n_slots)
{
    if (!sd_quota_args_ok(cred_key, slots, n_slots) || n < 0) {
        return false;
    }
    for (size_t i = 0; i < n_slots; i++) {
        if (slots[i].limit < 0) {
            return false;
        }
    }
    return true;
}
