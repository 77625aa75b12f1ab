/* sqlite_outbox.c — the SQLite side of store/audience.h's outbox part (issue #4). */
#include "sqlite_internal.h"

const struct sd_store_outbox_ops sd_sqlite_outbox_ops = {0};
