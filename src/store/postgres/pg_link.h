/* pg_link.h — what the write path (pg_write.c) needs from the profiles: linking a
 * just-upserted customer record to its profile, and a record leaving its profile. The rules
 * are the SQLite backend's (sqlite_profiles.h, audience.h). Writer thread only, on the writer
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

/* Facts that hold for one apply (one request's records), looked up once on first use: the
 * tenant's link rule and whether its suppression list (in this env) has any entry at all —
 * when it has none, no e-mail needs hashing. Zero-initialize before the first call. */
struct sd_pg_link_ctx {
    bool loaded;
    enum sd_link_rule rule;
    bool any_suppression;
};

/* Link the record (source, cu->customer_id) the writer has just upserted, in the current
 * transaction: a record with a profile keeps it and that profile's flags are recomputed; a new
 * record joins the oldest profile with its link key or gets a new profile (see audience.h).
 * Returns 0 or a negative errno. */
int sd_pg_profile_link(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                       struct sd_pg_link_ctx *ctx, const char *source,
                       const struct sd_customer_rec *cu, int64_t now);

/* A record of profile_id was deleted (not erased): recompute the profile's flags from the
 * records left, or delete the profile when none is left. Returns 0 or a negative errno. */
int sd_pg_profile_member_gone(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                              int64_t profile_id, int64_t now);

/* The building blocks of an operator's split (pg_profiles.c), on the writer connection inside
 * write_begin … commit, with the rules above. record: the stored record (source, customer_id):
 * 1 found (its seq, profile id or 0, ad_opt_out -1/0/1), 0 not found. recompute: a profile's
 * opt_out and suppressed from all its members (ctx loaded on first use); *ret_members
 * (optional) the member count. create: a new profile with these flags (link_key NULL: nothing
 * links to it by itself). move: record seq to profile_id (pinned: split out by an operator),
 * the purchase facts of both profiles following. Each returns 0 (or 1/0 as said) or a
 * negative errno. */
int sd_pg_profile_record(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *source,
                         const char *customer_id, int64_t *ret_seq, int64_t *ret_profile,
                         int *ret_opt_out);
int sd_pg_profile_recompute(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                            struct sd_pg_link_ctx *ctx, int64_t profile_id, int64_t now,
                            size_t *ret_members);
int sd_pg_profile_create(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                         const char *link_key, bool opt_out, bool suppressed, int64_t now,
                         int64_t *ret_id);
int sd_pg_profile_move(struct sd_store *s, int64_t tenant_id, enum sd_env env, int64_t seq,
                       int64_t profile_id, bool pinned);

#endif
