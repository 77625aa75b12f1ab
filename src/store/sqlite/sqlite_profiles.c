/* sqlite_profiles.c — the SQLite side of store/audience.h's profiles part (issue #4). */
#include "sqlite_internal.h"

const struct sd_store_profile_ops sd_sqlite_profile_ops = {0};
