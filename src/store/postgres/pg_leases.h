/* pg_leases.h — connector run leases with fencing tokens on PostgreSQL (pg_leases.c): the
 * operations of sd_store_pg_ops for store.h's run_lease_* and connector_state_put_fenced.
 * Private to src/store/postgres/. */
#ifndef SD_PG_LEASES_H
#define SD_PG_LEASES_H

#include <stdint.h>

struct sd_store;

/* Any thread: each one transaction on a pool connection. */
int sd_pg_run_lease_take(struct sd_store *s, const char *id, const char *owner,
                         const char *gone_owner, int64_t lease_usec, int64_t *ret_fence,
                         char **ret_holder);
int sd_pg_run_lease_renew(struct sd_store *s, const char *id, int64_t fence, int64_t lease_usec);
int sd_pg_run_lease_release(struct sd_store *s, const char *id, int64_t fence);
/* Writer thread, inside write_begin … commit. */
int sd_pg_run_lease_check(struct sd_store *s, const char *id, int64_t fence);
int sd_pg_run_lease_holder(struct sd_store *s, const char *id, char **ret_owner,
                           int64_t *ret_until_usec);
int sd_pg_connector_state_put_fenced(struct sd_store *s, const char *id, const char *doc,
                                     int64_t fence);

#endif
