/* pg_profiles.h — the profiles part of store/audience.h on PostgreSQL (pg_profiles.c): its ops
 * table, for sd_store_pg_ops (store_pg.c). Private to src/store/postgres/. */
#ifndef SD_PG_PROFILES_H
#define SD_PG_PROFILES_H

#include "pg_internal.h"

extern const struct sd_store_profile_ops sd_pg_profile_ops;

#endif
