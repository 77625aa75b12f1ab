/* sqlite_profiles.h — what the write path (sqlite_write.c) needs from sqlite_profiles.c:
 * linking a just-upserted customer record to its profile, and the sequence floor erasures leave
 * behind. Private to the SQLite backend, like sqlite_internal.h. Writer thread only. */
#ifndef SD_SQLITE_PROFILES_H
#define SD_SQLITE_PROFILES_H

#include <stdbool.h>
#include <stdint.h>

#include "sqlite_internal.h"
#include "store/profile_rules.h"

/* Link the record (source, cu->customer_id) the writer has just upserted, in the current
 * transaction: a record with a profile keeps it and that profile's flags are recomputed; a new
 * record joins the oldest profile with its link key or gets a new profile (see audience.h).
 * Returns 0 or -EIO. */
int sd_sqlite_profile_link(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                           struct sd_link_ctx *ctx, const char *source,
                           const struct sd_customer_rec *cu, int64_t now);

/* Raise *seq to the highest sequence number an erasure has handed out (rows carrying it may
 * have been deleted since, and a number once seen by a change cursor must never be reused).
 * Called by write_begin on the writer connection. Returns 0 or -EIO. */
int sd_sqlite_profile_seq_floor(struct sd_store *s, int64_t *seq);

/* A record of profile_id was deleted (not erased): recompute the profile's flags from the
 * records left, or delete the profile when none is left. Returns 0 or -EIO. */
int sd_sqlite_profile_member_gone(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                                  int64_t profile_id, int64_t now);

#endif
