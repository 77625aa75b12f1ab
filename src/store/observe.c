/* observe.c — the store's observation wrappers (store/observe.h). Like store.c's wrappers they
 * add nothing but a check that the backend has the operation (-ENOTSUP otherwise). */
#include "store/observe.h"

#include <errno.h>
#include <string.h>

#define OPS(h) (sd_store_handle_ops(h)->observe)
#define CALL(op, ...)                                                                              \
    (OPS(h) && OPS(h)->op ? OPS(h)->op(sd_store_handle_backend(h), __VA_ARGS__) : -ENOTSUP)

int sd_store_observe_key_touch(struct sd_store_handle *h, const char *const *key_ids,
                               const int64_t *used_usec, size_t n)
{
    return CALL(key_touch, key_ids, used_usec, n);
}

int sd_store_observe_traffic_add(struct sd_store_handle *h, const struct sd_traffic_count *v,
                                 size_t n, int64_t purge_before_usec)
{
    return CALL(traffic_add, v, n, purge_before_usec);
}

int sd_store_observe_traffic_list(struct sd_store_handle *h, int64_t tenant_id, int64_t since_usec,
                                  size_t limit, struct sd_traffic_count **ret, size_t *ret_n,
                                  bool *ret_more)
{
    return CALL(traffic_list, tenant_id, since_usec, limit, ret, ret_n, ret_more);
}

int sd_store_observe_segment_size_record(struct sd_store_handle *h, int64_t tenant_id,
                                         enum sd_env env, const char *segment_id, int64_t at_usec,
                                         int64_t member_count)
{
    return CALL(segment_size_record, tenant_id, env, segment_id, at_usec, member_count);
}

int sd_store_observe_segment_size_history(struct sd_store_handle *h, int64_t tenant_id,
                                          enum sd_env env, const char *segment_id,
                                          int64_t since_usec, struct sd_segment_size_point **ret,
                                          size_t *ret_n)
{
    return CALL(segment_size_history, tenant_id, env, segment_id, since_usec, ret, ret_n);
}

int sd_store_observe_segment_pushes(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                                    const char *segment_id, struct sd_segment_push **ret,
                                    size_t *ret_n)
{
    return CALL(segment_pushes, tenant_id, env, segment_id, ret, ret_n);
}

int sd_store_observe_outbox_stats(struct sd_store_handle *h, struct sd_outbox_stat **ret,
                                  size_t *ret_n)
{
    return CALL(outbox_stats, ret, ret_n);
}

bool sd_traffic_count_valid(const struct sd_traffic_count *t)
{
    return t->n >= 0 && t->source[0] &&
           (strcmp(t->kind, "rejected") == 0 || strcmp(t->kind, "accepted") == 0 ||
            strcmp(t->kind, "answer") == 0) &&
           (t->env == SD_ENV_TEST || t->env == SD_ENV_PROD);
}
