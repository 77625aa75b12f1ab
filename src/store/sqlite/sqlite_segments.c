/* sqlite_segments.c — the SQLite side of store/audience.h's segments part (issue #4). */
#include "sqlite_internal.h"

const struct sd_store_segment_ops sd_sqlite_segment_ops = {0};
