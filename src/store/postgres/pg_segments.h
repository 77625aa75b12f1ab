/* pg_segments.h — what the PostgreSQL backend's segments file (pg_segments.c) gives the rest of
 * the backend: its ops table, for sd_store_pg_ops (store_pg.c). Private to src/store/postgres/. */
#ifndef SD_PG_SEGMENTS_H
#define SD_PG_SEGMENTS_H

#include "pg_internal.h"

extern const struct sd_store_segment_ops sd_pg_segment_ops;

#endif
