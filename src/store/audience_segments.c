/* audience_segments.c — the store's segment wrappers (store/audience.h, segments part), the
 * release helpers of the structs it hands out. Like store.c's wrappers they add nothing but a
 * check that the backend implements the op (-ENOTSUP otherwise). */
#include <errno.h>
#include <stdlib.h>

#include "store/audience.h"
#include "store/store.h"

#define SEG_OPS(h) (sd_store_handle_ops(h)->segments)
#define SEG_CALL(op, ...)                                                                          \
    (SEG_OPS(h) && SEG_OPS(h)->op ? SEG_OPS(h)->op(sd_store_handle_backend(h), __VA_ARGS__)        \
                                  : -ENOTSUP)

int sd_store_segment_create(struct sd_store_handle *h, const struct sd_segment_row *row)
{
    return SEG_CALL(create, row);
}

int sd_store_segment_update(struct sd_store_handle *h, const struct sd_segment_row *row)
{
    return SEG_CALL(update, row);
}

int sd_store_segment_set_count(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                               const char *id, int64_t member_count, int64_t computed_usec)
{
    return SEG_CALL(set_count, tenant_id, env, id, member_count, computed_usec);
}

int sd_store_segment_remove(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                            const char *id)
{
    return SEG_CALL(remove, tenant_id, env, id);
}

int sd_store_segment_get(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                         const char *id, struct sd_segment_row *ret)
{
    return SEG_CALL(get, tenant_id, env, id, ret);
}

int sd_store_segment_list(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                          struct sd_segment_row **ret, size_t *ret_n)
{
    return SEG_CALL(list, tenant_id, env, ret, ret_n);
}

int sd_store_segment_count(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                           const struct sd_seg_rule *rule, int64_t now_usec,
                           const struct sd_seg_budget *budget, int64_t *ret)
{
    return SEG_CALL(count, tenant_id, env, rule, now_usec, budget, ret);
}

int sd_store_segment_members(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                             const struct sd_seg_rule *rule, int64_t now_usec, int64_t after,
                             size_t limit, const struct sd_seg_budget *budget,
                             struct sd_seg_member_page *ret)
{
    return SEG_CALL(members, tenant_id, env, rule, now_usec, after, limit, budget, ret);
}

int sd_store_segment_snapshot_create(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                                     const char *segment_id, const struct sd_seg_rule *rule,
                                     int64_t now_usec, int64_t ttl_usec,
                                     const struct sd_seg_budget *budget, int64_t *ret_id,
                                     int64_t *ret_count)
{
    return SEG_CALL(snapshot_create, tenant_id, env, segment_id, rule, now_usec, ttl_usec, budget,
                    ret_id, ret_count);
}

int sd_store_segment_snapshot_members(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                                      const char *segment_id, int64_t id, int64_t now_usec,
                                      int64_t after, size_t limit, struct sd_seg_member_page *ret)
{
    return SEG_CALL(snapshot_members, tenant_id, env, segment_id, id, now_usec, after, limit, ret);
}

/* ---- release helpers --------------------------------------------------------------------------
 */

static void cond_release(struct sd_seg_cond *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->v[i].text);
    }
    free(c->v);
}

void sd_seg_rule_free(struct sd_seg_rule *r)
{
    if (!r) {
        return;
    }
    for (size_t i = 0; i < r->n_kids; i++) {
        sd_seg_rule_free(r->kids[i]);
    }
    free(r->kids);
    for (size_t i = 0; i < r->n_where; i++) {
        cond_release(&r->where[i]);
    }
    free(r->where);
    for (size_t i = 0; i < r->n_cmp; i++) {
        cond_release(&r->cmp[i]);
    }
    free(r->cmp);
    free(r);
}

void sd_segment_row_release(struct sd_segment_row *r)
{
    if (!r) {
        return;
    }
    free(r->id);
    free(r->name);
    free(r->description);
    free(r->rules);
    *r = (struct sd_segment_row){0};
}

void sd_segment_rows_free(struct sd_segment_row *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) {
        sd_segment_row_release(&v[i]);
    }
    free(v);
}

void sd_seg_member_page_release(struct sd_seg_member_page *p)
{
    if (!p) {
        return;
    }
    for (size_t i = 0; i < p->n; i++) {
        struct sd_seg_member *m = &p->v[i];
        free(m->email);
        for (size_t j = 0; j < m->n_sources; j++) {
            free(m->sources[j].source);
            free(m->sources[j].customer_id);
        }
        free(m->sources);
    }
    free(p->v);
    *p = (struct sd_seg_member_page){0};
}

/* ---- civil dates ------------------------------------------------------------------------------
 */

