/* audience_outbox.c — the store's outbox wrappers (store/audience.h, outbox part) and the
 * release helpers of the structs it hands out. Like store.c's wrappers they add nothing but a
 * check that the backend implements the op (-ENOTSUP otherwise). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store/audience.h"
#include "store/store.h"

static const char *const state_names[] = {"queued",    "sending", "retrying",
                                          "delivered", "dead",    "cancelled"};

const char *sd_delivery_state_name(enum sd_delivery_state st)
{
    return (unsigned)st < sizeof(state_names) / sizeof(state_names[0]) ? state_names[st] : "?";
}

int sd_delivery_state_parse(const char *name, enum sd_delivery_state *ret)
{
    for (size_t i = 0; name && i < sizeof(state_names) / sizeof(state_names[0]); i++) {
        if (strcmp(name, state_names[i]) == 0) {
            *ret = (enum sd_delivery_state)i;
            return 0;
        }
    }
    return -EINVAL;
}

void sd_target_release(struct sd_target *t)
{
    if (!t) {
        return;
    }
    free(t->id);
    free(t->client_id);
    free(t->type);
    free(t->doc);
    *t = (struct sd_target){0};
}

void sd_targets_free(struct sd_target *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) {
        sd_target_release(&v[i]);
    }
    free(v);
}

void sd_outbox_item_release(struct sd_outbox_item *d)
{
    if (!d) {
        return;
    }
    free(d->id);
    free(d->client_id);
    free(d->connector_id);
    free(d->operation);
    free(d->subject_kind);
    free(d->subject_id);
    free(d->payload);
    free(d->dedupe_key);
    free(d->lease_owner);
    free(d->idem_key);
    free(d->request_key);
    free(d->origin);
    free(d->remote_ref);
    free(d->doc);
    *d = (struct sd_outbox_item){0};
}

void sd_outbox_items_free(struct sd_outbox_item *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) {
        sd_outbox_item_release(&v[i]);
    }
    free(v);
}

#define OPS(h) (sd_store_handle_ops(h)->outbox)
#define CALL(op, ...)                                                                              \
    (OPS(h) && OPS(h)->op ? OPS(h)->op(sd_store_handle_backend(h), __VA_ARGS__) : -ENOTSUP)

int sd_store_target_put(struct sd_store_handle *h, const struct sd_target *t, bool create,
                        const struct sd_outbox_clock *clk)
{
    return CALL(target_put, t, create, clk);
}

int sd_store_target_get(struct sd_store_handle *h, const char *id, struct sd_target *ret)
{
    return CALL(target_get, id, ret);
}

int sd_store_target_list(struct sd_store_handle *h, int64_t tenant_id, struct sd_target **ret,
                         size_t *ret_n)
{
    return CALL(target_list, tenant_id, ret, ret_n);
}

int sd_store_target_delete(struct sd_store_handle *h, const char *id, const char *reason)
{
    return CALL(target_delete, id, reason);
}

int sd_store_delivery_insert(struct sd_store_handle *h, const struct sd_outbox_item *d,
                             const struct sd_outbox_clock *clk, char **ret_id)
{
    return CALL(delivery_insert, d, clk, ret_id);
}

int sd_store_delivery_get(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                          const char *id, struct sd_outbox_item *ret)
{
    return CALL(delivery_get, tenant_id, env, id, ret);
}

int sd_store_delivery_by_request(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                                 const char *request_key, struct sd_outbox_item *ret)
{
    return CALL(delivery_by_request, tenant_id, env, request_key, ret);
}

int sd_store_delivery_list(struct sd_store_handle *h, const struct sd_delivery_filter *f,
                           struct sd_outbox_item **ret, size_t *ret_n, bool *ret_more)
{
    return CALL(delivery_list, f, ret, ret_n, ret_more);
}

int sd_store_delivery_next_due(struct sd_store_handle *h, int64_t *ret_usec)
{
    return CALL(delivery_next_due, ret_usec);
}

int sd_store_delivery_claim(struct sd_store_handle *h, const struct sd_outbox_clock *clk,
                            struct sd_outbox_item *ret)
{
    return CALL(delivery_claim, clk, ret);
}

int sd_store_delivery_claim_more(struct sd_store_handle *h, const struct sd_outbox_clock *clk,
                                 const struct sd_outbox_item *first, size_t max,
                                 struct sd_outbox_item **ret, size_t *ret_n)
{
    return CALL(delivery_claim_more, clk, first, max, ret, ret_n);
}

int sd_store_delivery_finish_many(struct sd_store_handle *h, size_t n, const char *const *ids,
                                  const int64_t *fences, const struct sd_delivery_outcome *o,
                                  int *ret)
{
    return CALL(delivery_finish_many, n, ids, fences, o, ret);
}

int sd_store_delivery_renew(struct sd_store_handle *h, const char *id, int64_t fence,
                            int64_t new_lease_until_usec)
{
    return CALL(delivery_renew, id, fence, new_lease_until_usec);
}

int sd_store_delivery_finish(struct sd_store_handle *h, const char *id, int64_t fence,
                             const struct sd_delivery_outcome *o)
{
    return CALL(delivery_finish, id, fence, o);
}

int sd_store_delivery_requeue(struct sd_store_handle *h, const char *id, const char *idem_key,
                              const char *doc, const struct sd_outbox_clock *clk)
{
    return CALL(delivery_requeue, id, idem_key, doc, clk);
}

int sd_store_delivery_cancel(struct sd_store_handle *h, const char *id, const char *doc,
                             int64_t now_usec)
{
    return CALL(delivery_cancel, id, doc, now_usec);
}

int sd_store_delivery_send_now(struct sd_store_handle *h, const char *id,
                               const struct sd_outbox_clock *clk)
{
    return CALL(delivery_send_now, id, clk);
}

int sd_store_outbox_add_tx(struct sd_store_handle *h, const struct sd_outbox_item *d,
                           int64_t now_usec, char **ret_id)
{
    return CALL(outbox_add_tx, d, now_usec, ret_id);
}

int sd_store_outbox_targets_tx(struct sd_store_handle *h, int64_t tenant_id, struct sd_target **ret,
                               size_t *ret_n)
{
    return CALL(outbox_targets_tx, tenant_id, ret, ret_n);
}

int sd_store_outbox_linked_tx(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                              const char *source, const char *customer_id,
                              const char *member_source, int64_t *ret_n)
{
    return CALL(outbox_linked_tx, tenant_id, env, source, customer_id, member_source, ret_n);
}

int sd_store_customer_version(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                              const char *source, const char *customer_id, int64_t *ret_version)
{
    return CALL(customer_version, tenant_id, env, source, customer_id, ret_version);
}

int sd_store_remote_ref_get(struct sd_store_handle *h, const char *connector_id, const char *kind,
                            const char *local_id, char **ret_remote)
{
    return CALL(remote_ref_get, connector_id, kind, local_id, ret_remote);
}

int sd_store_remote_ref_find(struct sd_store_handle *h, const char *connector_id, const char *kind,
                             const char *remote_id, char **ret_local)
{
    return CALL(remote_ref_find, connector_id, kind, remote_id, ret_local);
}

int sd_store_remote_ref_put(struct sd_store_handle *h, const char *connector_id, const char *kind,
                            const char *local_id, const char *remote_id)
{
    return CALL(remote_ref_put, connector_id, kind, local_id, remote_id);
}

int sd_store_remote_ref_list(struct sd_store_handle *h, const char *connector_id,
                             const char *kind, const char *after, size_t limit, char ***ret_local,
                             char ***ret_remote, size_t *ret_n)
{
    return CALL(remote_ref_list, connector_id, kind, after, limit, ret_local, ret_remote, ret_n);
}

int sd_store_remote_ref_apply(struct sd_store_handle *h, const char *connector_id,
                              const char *kind, const char *const *put_local,
                              const char *const *put_remote, size_t n_put,
                              const char *const *del_local, size_t n_del)
{
    return CALL(remote_ref_apply, connector_id, kind, put_local, put_remote, n_put, del_local,
                n_del);
}
