/* pg_outbox.h — what the PostgreSQL backend's outbox, quota and raw-first inbound files
 * (pg_outbox.c, pg_quota.c, pg_inbound.c) give the rest of the backend: their ops tables, for
 * sd_store_pg_ops (store_pg.c). Private to src/store/postgres/. */
#ifndef SD_PG_OUTBOX_H
#define SD_PG_OUTBOX_H

#include "pg_internal.h"

extern const struct sd_store_outbox_ops sd_pg_outbox_ops;
extern const struct sd_store_quota_ops sd_pg_quota_ops;
extern const struct sd_store_inbound_ops sd_pg_inbound_ops;

/* sd_pg_outbox_settle_connector (declared in pg_internal.h) is defined in pg_outbox.c. */

#endif
