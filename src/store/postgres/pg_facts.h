/* pg_facts.h — the per-profile purchase facts (profile_facts) of the PostgreSQL backend, kept
 * equal to their definition inside the writer's transaction, under the same rules as the
 * SQLite backend (sqlite_internal.h, "per-profile purchase facts"):
 *  - a sale just inserted: batch_add, flushed before any other facts call and at the end of
 *    the batch;
 *  - a sale about to be updated or deleted: sale_out before the statement; after an update
 *    (whether or not it changed the row), sale_in;
 *  - a customer record about to change profile or be deleted: record_get before (its profile,
 *    and whether its key has sales); after, if it has sales, profile for the old and the new
 *    profile.
 * All run on the connection given (the writer's), writer thread only. Each returns 0 or a
 * negative errno (-EIO, -ENOSPC …) after logging; the caller rolls back. Private to
 * src/store/postgres/. */
#ifndef SD_PG_FACTS_H
#define SD_PG_FACTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pg_internal.h"
#include "store/facts_plan.h"

/* The new sales of one batch, summed per profile and currency before they are written (the
 * profile of each customer key looked up once, store/facts_plan.h). Zero-initialised;
 * sd_facts_batch_release frees it, sd_facts_batch_known tells it profiles looked up already. */
/* The profile of a customer key, for sd_facts_batch_add (store/facts_plan.h). */
int sd_pg_facts_profile_of(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                           const char *source, const char *customer_id, int64_t *ret);
int sd_pg_facts_batch_flush(struct pgconn *c, struct sd_facts_batch *fb, int64_t tenant_id,
                            enum sd_env env);
/* The same, in one round trip with the caller's statements lead[0..n_lead) (at most 3), run
 * first (their outcomes are left in lead[k].result; after a failure nothing later runs).
 * Returns 0 or the first failure. */
int sd_pg_facts_batch_flush_with(struct pgconn *c, struct sd_facts_batch *fb, int64_t tenant_id,
                                 enum sd_env env, struct sd_pg_stmt *lead, size_t n_lead);
int sd_pg_facts_sale_out(struct pgconn *c, int64_t tenant_id, enum sd_env env, const char *invoice);
int sd_pg_facts_sale_in(struct pgconn *c, int64_t tenant_id, enum sd_env env, const char *invoice);
int sd_pg_facts_record_get(struct pgconn *c, int64_t tenant_id, enum sd_env env, int64_t seq,
                           int64_t *ret_profile_id, bool *ret_has_sales);
/* Recompute profile_id's rows from its sales (nothing for profile_id ≤ 0). */
int sd_pg_facts_profile(struct pgconn *c, int64_t tenant_id, enum sd_env env, int64_t profile_id);

#endif
