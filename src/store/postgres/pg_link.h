/* pg_link.h — what the write path (pg_write.c) needs from the profiles: linking a
 * just-upserted customer record to its profile, and a record leaving its profile. The rules
 * are store/profile_rules.h's, shared with the SQLite backend. Writer thread only, on the writer
 * connection inside write_begin … commit. Private to src/store/postgres/.
 *
 * SQLite's sequence floor (meta 'seq_floor', raised by erasures) has no counterpart here: the
 * PostgreSQL backend keeps its counter in meta 'seq', which never goes back. */
#ifndef SD_PG_LINK_H
#define SD_PG_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pg_internal.h"
#include "store/profile_rules.h"

/* Link the record (source, cu->customer_id) the writer has just upserted, in the current
 * transaction: a record with a profile keeps it and that profile's flags are recomputed; a new
 * record joins the oldest profile with its link key or gets a new profile (see audience.h).
 * Returns 0 or a negative errno. */
int sd_pg_profile_link(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                       struct sd_link_ctx *ctx, const char *source,
                       const struct sd_customer_rec *cu, int64_t now);

/* A record of profile_id was deleted (not erased): recompute the profile's flags from the
 * records left, or delete the profile when none is left. Returns 0 or a negative errno. */
int sd_pg_profile_member_gone(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                              int64_t profile_id, int64_t now);

/* An operator's split (pg_profiles.c), on the writer connection inside write_begin … commit,
 * with the rules of store/profile_rules.h (sd_profile_split). */
int sd_pg_profile_split(struct sd_store *s, int64_t tenant_id, enum sd_env env, int64_t profile_id,
                        const char *source, const char *customer_id, int64_t *ret_new_id);

#endif
