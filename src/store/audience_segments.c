/* audience_segments.c — the store's segment wrappers (store/audience.h, segments part), the
 * release helpers of the structs it hands out, and the civil-date arithmetic both the rule
 * parser (core) and the SQL compiler (backend) use. Like store.c's wrappers they add nothing
 * but a check that the backend implements the op (-ENOTSUP otherwise).
 *
 * The date helpers are Howard Hinnant's days_from_civil / civil_from_days: exact for the
 * proleptic Gregorian calendar over the whole int64 day range we accept (years 1..9999), no
 * gmtime and no time zone involved. */
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

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - ((a % b != 0) && ((a < 0) != (b < 0)));
}

int64_t sd_seg_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = floor_div(y, 400);
    int64_t yoe = y - era * 400;                                                     /* [0, 399] */
    int64_t doy = (153 * (int64_t)(m > 2 ? m - 3 : m + 9) + 2) / 5 + (int64_t)d - 1; /* [0, 365] */
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; /* [0, 146096] */
    return era * 146097 + doe - 719468;
}

void sd_seg_civil_from_days(int64_t days, int64_t *ret_y, unsigned *ret_m, unsigned *ret_d)
{
    days += 719468;
    int64_t era = floor_div(days, 146097);
    int64_t doe = days - era * 146097;                                   /* [0, 146096] */
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
    int64_t y = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100); /* [0, 365] */
    int64_t mp = (5 * doy + 2) / 153;                      /* [0, 11] */
    unsigned d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    unsigned m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    *ret_y = y + (m <= 2);
    *ret_m = m;
    *ret_d = d;
}
