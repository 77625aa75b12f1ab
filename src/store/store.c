/* store.c — backend selection and the sd_store_*() wrappers of store.h, plus the release
 * helpers for the structs the store hands out.
 *
 * A handle is the ops table of the chosen backend and that backend's state. The wrappers add
 * nothing but a check that the backend implements the op (-ENOTSUP otherwise), so a backend
 * may grow op by op; thread rules are the backend's and are documented in store.h. */
#include "store/store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

struct sd_store_handle {
    const struct sd_store_ops *ops;
    struct sd_store *s;
};

static const struct sd_store_ops *const backends[] = {
    &sd_store_sqlite_ops,
    &sd_store_pg_ops,
};

int sd_store_open(const char *kind, const char *location, struct sd_store_handle **ret)
{
    if (!kind || !location) {
        return -EINVAL;
    }
    for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
        if (strcmp(backends[i]->name, kind) != 0) {
            continue;
        }
        struct sd_store *s = NULL;
        int r = backends[i]->open(location, &s);
        if (r < 0) {
            return r;
        }
        struct sd_store_handle *h = sd_malloc(sizeof(*h));
        h->ops = backends[i];
        h->s = s;
        *ret = h;
        return 0;
    }
    return -EINVAL;
}

const struct sd_store_ops *sd_store_handle_ops(struct sd_store_handle *h)
{
    return h->ops;
}

struct sd_store *sd_store_handle_backend(struct sd_store_handle *h)
{
    return h->s;
}

void sd_store_close(struct sd_store_handle *h)
{
    if (!h) {
        return;
    }
    h->ops->close(h->s);
    free(h);
}

#define CALL(op, ...) (h->ops->op ? h->ops->op(h->s, __VA_ARGS__) : -ENOTSUP)
#define CALL0(op) (h->ops->op ? h->ops->op(h->s) : -ENOTSUP)

int sd_store_tenant_create(struct sd_store_handle *h, const char *client_id, const char *name)
{
    return CALL(tenant_create, client_id, name);
}

int sd_store_tenant_get(struct sd_store_handle *h, const char *client_id, struct sd_tenant *ret)
{
    return CALL(tenant_get, client_id, ret);
}

int sd_store_tenant_list(struct sd_store_handle *h, struct sd_tenant **ret, size_t *ret_n)
{
    return CALL(tenant_list, ret, ret_n);
}

int sd_store_tenant_set_limits(struct sd_store_handle *h, const char *client_id, int64_t per_minute,
                               int64_t burst)
{
    return CALL(tenant_set_limits, client_id, per_minute, burst);
}

int sd_store_key_insert(struct sd_store_handle *h, const char *key_id, const char *client_id,
                        enum sd_env env, const char *hash_hex)
{
    return CALL(key_insert, key_id, client_id, env, hash_hex);
}

int sd_store_key_list(struct sd_store_handle *h, const char *client_id, struct sd_key_info **ret,
                      size_t *ret_n)
{
    return CALL(key_list, client_id, ret, ret_n);
}

int sd_store_key_revoke(struct sd_store_handle *h, const char *key_id)
{
    return CALL(key_revoke, key_id);
}

int sd_store_settings_version(struct sd_store_handle *h, int64_t *ret)
{
    return CALL(settings_version, ret);
}

int sd_store_auth_snapshot(struct sd_store_handle *h, struct sd_tenant **ret_t, size_t *ret_nt,
                           struct sd_key_info **ret_k, size_t *ret_nk)
{
    return CALL(auth_snapshot, ret_t, ret_nt, ret_k, ret_nk);
}

int sd_store_connector_put(struct sd_store_handle *h, const struct sd_connector_conf *c,
                           bool create)
{
    return CALL(connector_put, c, create);
}

int sd_store_connector_get(struct sd_store_handle *h, const char *id, struct sd_connector_conf *ret)
{
    return CALL(connector_get, id, ret);
}

int sd_store_connector_list(struct sd_store_handle *h, int64_t tenant_id,
                            struct sd_connector_conf **ret, size_t *ret_n)
{
    return CALL(connector_list, tenant_id, ret, ret_n);
}

int sd_store_connector_delete(struct sd_store_handle *h, const char *id)
{
    return CALL(connector_delete, id);
}

int sd_store_connector_request_run(struct sd_store_handle *h, const char *id, int64_t usec)
{
    return CALL(connector_request_run, id, usec);
}

int sd_store_connector_state_put(struct sd_store_handle *h, const char *id, const char *doc)
{
    return CALL(connector_state_put, id, doc);
}

int sd_store_connector_state_get(struct sd_store_handle *h, const char *id, char **ret_doc)
{
    return CALL(connector_state_get, id, ret_doc);
}

int sd_store_connector_state_put_fenced(struct sd_store_handle *h, const char *id,
                                       const char *doc, int64_t fence)
{
    return CALL(connector_state_put_fenced, id, doc, fence);
}

int sd_store_run_lease_holder(struct sd_store_handle *h, const char *id, char **ret_owner,
                              int64_t *ret_until_usec)
{
    if (!id || !ret_owner || !ret_until_usec) {
        return -EINVAL;
    }
    return CALL(run_lease_holder, id, ret_owner, ret_until_usec);
}

int sd_store_run_lease_check(struct sd_store_handle *h, const char *id, int64_t fence)
{
    if (!id) {
        return -EINVAL;
    }
    return CALL(run_lease_check, id, fence);
}

int sd_store_run_lease_take(struct sd_store_handle *h, const char *id, const char *owner,
                            const char *gone_owner, int64_t lease_usec, int64_t *ret_fence,
                            char **ret_holder)
{
    if (!id || !owner || !ret_fence || lease_usec <= 0 || strlen(owner) > SD_LEASE_OWNER_MAX) {
        return -EINVAL;
    }
    return CALL(run_lease_take, id, owner, gone_owner, lease_usec, ret_fence, ret_holder);
}

int sd_store_run_lease_renew(struct sd_store_handle *h, const char *id, int64_t fence,
                             int64_t lease_usec)
{
    if (!id || lease_usec <= 0) {
        return -EINVAL;
    }
    return CALL(run_lease_renew, id, fence, lease_usec);
}

int sd_store_run_lease_release(struct sd_store_handle *h, const char *id, int64_t fence)
{
    if (!id) {
        return -EINVAL;
    }
    return CALL(run_lease_release, id, fence);
}

int sd_store_write_begin(struct sd_store_handle *h)
{
    return CALL0(write_begin);
}

int sd_store_write_commit(struct sd_store_handle *h)
{
    return CALL0(write_commit);
}

int sd_store_write_rollback(struct sd_store_handle *h)
{
    return CALL0(write_rollback);
}

int sd_store_savepoint(struct sd_store_handle *h)
{
    return CALL0(savepoint);
}

int sd_store_savepoint_release(struct sd_store_handle *h)
{
    return CALL0(savepoint_release);
}

int sd_store_savepoint_rollback(struct sd_store_handle *h)
{
    return CALL0(savepoint_rollback);
}

int sd_store_apply_ingest(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                          const struct sd_batch *b, struct sd_apply_result *res)
{
    return CALL(apply_ingest, tenant_id, env, b, res);
}

int sd_store_replace_sale(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                          const struct sd_sale_rec *sale, struct sd_apply_result *res)
{
    return CALL(replace_sale, tenant_id, env, sale, res);
}

int sd_store_idem_put(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                      const char *key, const struct sd_idem_entry *e)
{
    return CALL(idem_put, tenant_id, env, key, e);
}

int sd_store_idem_purge(struct sd_store_handle *h, int64_t before_usec)
{
    return CALL(idem_purge, before_usec);
}

int sd_store_idem_get(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                      const char *key, struct sd_idem_entry *ret)
{
    return CALL(idem_get, tenant_id, env, key, ret);
}

int sd_store_list_records(struct sd_store_handle *h, enum sd_kind kind, int64_t tenant_id,
                          enum sd_env env, int64_t after_seq, size_t limit,
                          struct sd_record_page *ret)
{
    return CALL(list_records, kind, tenant_id, env, after_seq, limit, ret);
}

int sd_store_get_record(struct sd_store_handle *h, enum sd_kind kind, int64_t tenant_id,
                        enum sd_env env, const char *id, char **ret_doc)
{
    return CALL(get_record, kind, tenant_id, env, id, ret_doc);
}

int sd_store_check_sale_refs(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                             const struct sd_batch *b, struct sd_issues *errors,
                             bool *ret_needs_writer)
{
    return CALL(check_sale_refs, tenant_id, env, b, errors, ret_needs_writer);
}

int sd_store_count_records(struct sd_store_handle *h, enum sd_kind kind, int64_t tenant_id,
                           enum sd_env env, int64_t *ret)
{
    return CALL(count_records, kind, tenant_id, env, ret);
}

int sd_store_delete_record(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                           enum sd_kind kind, const char *id, const char *source,
                           enum sd_tombstone_reason reason, const char *merged_into,
                           const char *origin)
{
    return CALL(delete_record, tenant_id, env, kind, id, source, reason, merged_into, origin);
}

int sd_store_get_customer(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                          const char *id, const char *source, char **ret_doc, char ***ret_sources,
                          size_t *ret_n)
{
    return CALL(get_customer, tenant_id, env, id, source, ret_doc, ret_sources, ret_n);
}

int sd_store_get_customer_in_write(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                                   const char *id, const char *source, char **ret_doc)
{
    return CALL(get_customer_in_write, tenant_id, env, id, source, ret_doc);
}

static const char *const tombstone_reasons[] = {"deleted", "erased", "merged"};

const char *sd_tombstone_reason_name(enum sd_tombstone_reason r)
{
    return (unsigned)r < 3 ? tombstone_reasons[r] : "deleted";
}

int sd_tombstone_reason_parse(const char *s, enum sd_tombstone_reason *ret)
{
    for (unsigned i = 0; s && i < 3; i++) {
        if (strcmp(s, tombstone_reasons[i]) == 0) {
            *ret = (enum sd_tombstone_reason)i;
            return 0;
        }
    }
    return -EINVAL;
}

/* ---- release helpers ------------------------------------------------------------------------ */

void sd_tenant_release(struct sd_tenant *t)
{
    if (!t) {
        return;
    }
    free(t->client_id);
    free(t->name);
    memset(t, 0, sizeof(*t));
}

void sd_tenants_free(struct sd_tenant *v, size_t n)
{
    if (!v) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        sd_tenant_release(&v[i]);
    }
    free(v);
}

void sd_connector_conf_release(struct sd_connector_conf *c)
{
    if (!c) {
        return;
    }
    free(c->id);
    free(c->client_id);
    free(c->type);
    free(c->schedule);
    free(c->settings);
    free(c->mapping);
    memset(c, 0, sizeof(*c));
}

void sd_connector_confs_free(struct sd_connector_conf *v, size_t n)
{
    if (!v) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        sd_connector_conf_release(&v[i]);
    }
    free(v);
}

void sd_keys_free(struct sd_key_info *v, size_t n)
{
    if (!v) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        free(v[i].key_id);
        free(v[i].client_id);
        free(v[i].hash_hex);
    }
    free(v);
}

void sd_apply_result_init(struct sd_apply_result *r)
{
    *r = (struct sd_apply_result){0};
    sd_issues_init(&r->errors, SD_MAX_ISSUES);
    sd_issues_init(&r->warnings, SD_MAX_ISSUES);
}

void sd_apply_result_release(struct sd_apply_result *r)
{
    if (!r) {
        return;
    }
    sd_issues_release(&r->errors);
    sd_issues_release(&r->warnings);
    for (size_t i = 0; i < r->n_duplicate_invoices; i++) {
        free(r->duplicate_invoices[i]);
    }
    free(r->duplicate_invoices);
    r->duplicate_invoices = NULL;
    r->n_duplicate_invoices = 0;
    r->outcome = SD_APPLY_OK;
}

void sd_record_page_release(struct sd_record_page *p)
{
    if (!p) {
        return;
    }
    for (size_t i = 0; i < p->n; i++) {
        free(p->docs[i]);
    }
    free(p->docs);
    free(p->seqs);
    memset(p, 0, sizeof(*p));
}

void sd_store_log_stats(struct sd_store_handle *h, struct sd_store_log_stats *ret)
{
    *ret = (struct sd_store_log_stats){0};
    if (h->ops->log_stats) {
        (void)h->ops->log_stats(h->s, ret);
    }
}

bool sd_store_write_waiting(struct sd_store_handle *h)
{
    return h->ops->write_waiting && h->ops->write_waiting(h->s);
}

int sd_store_space_probe(struct sd_store_handle *h)
{
    return CALL0(space_probe);
}

bool sd_store_has_shared_rate(struct sd_store_handle *h)
{
    return h->ops->rate_take != NULL;
}

int sd_store_rate_take(struct sd_store_handle *h, uint64_t key, int64_t per_minute, int64_t burst,
                       int64_t want, int64_t now_usec, int64_t *ret_granted, double *ret_left)
{
    return CALL(rate_take, key, per_minute, burst, want, now_usec, ret_granted, ret_left);
}
