/* profile_rules.h — the linking decisions and flag rules of profiles (audience.h), shared by
 * the backends (sqlite_profiles.c, pg_link.c / pg_profiles.c):
 *  - a record's profile_id, once set, changes only by an explicit split (or disappears with the
 *    record at erasure) — never because of what a source sends;
 *  - a new record joins the oldest profile with its link key, or gets a profile of its own;
 *  - profiles.opt_out / suppressed are recomputed from all members whenever one changes, so a
 *    `false` from one source never clears another source's `true`.
 * Backend-neutral: every read and write goes through the backend's steps (struct
 * sd_profile_steps), all on its writer inside write_begin … commit. Each function returns 0
 * (or as said) or the negative errno a step returned. Writer thread only. */
#ifndef SD_STORE_PROFILE_RULES_H
#define SD_STORE_PROFILE_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/audience.h"
#include "store/store.h"

/* Facts that hold for one apply (one request's records), looked up once on first use: the
 * tenant's link rule and whether its suppression list (in this env) has any entry at all —
 * when it has none, no e-mail needs hashing. Zero-initialize before the first call. */
struct sd_link_ctx {
    bool loaded;
    enum sd_link_rule rule;
    bool any_suppression;
};

/* What the rules ask of a backend, on its writer. Each returns 0 (or as said) or a negative
 * errno. */
struct sd_profile_steps {
    /* Fill ctx unless ctx->loaded. */
    int (*ctx_load)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                    struct sd_link_ctx *ctx);
    /* The stored record (source, customer_id): 1 found (seq, profile id or 0, ad_opt_out
     * -1/0/1), 0 not found. */
    int (*record)(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *source,
                  const char *customer_id, int64_t *ret_seq, int64_t *ret_profile,
                  int *ret_opt_out);
    /* Write profile_id's opt_out and suppressed from all its members (each member's flags
     * folded with sd_profile_flags_add); *ret_members (optional) the member count. */
    int (*recompute)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                     const struct sd_link_ctx *ctx, int64_t profile_id, int64_t now,
                     size_t *ret_members);
    /* 1 and the oldest profile with this link key, 0 if none. */
    int (*by_key)(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *key,
                  int64_t *ret_id);
    /* 1 if the e-mail key is on the suppression list of tenant/env, 0 if not. */
    int (*sup_has)(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *email_key);
    /* A new profile with these flags (link_key NULL: nothing links to it by itself). */
    int (*create)(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *link_key,
                  bool opt_out, bool suppressed, int64_t now, int64_t *ret_id);
    /* Record seq to profile_id (pinned: split out by an operator), the purchase facts of both
     * profiles following. */
    int (*move)(struct sd_store *s, int64_t tenant_id, enum sd_env env, int64_t seq,
                int64_t profile_id, bool pinned);
    /* Delete the profile row (it has no member left). */
    int (*remove)(struct sd_store *s, int64_t tenant_id, enum sd_env env, int64_t profile_id);
};

/* A profile's flags, folded over its members. */
struct sd_profile_flags {
    bool opt_out, suppressed;
};

/* Fold one member into f: its ad_opt_out (-1 none, 0, 1) and e-mail key (NULL: none), which
 * is looked up on the suppression list only while the tenant has one and f is not suppressed
 * yet. 0 or the lookup's negative errno. */
int sd_profile_flags_add(struct sd_profile_flags *f, struct sd_store *s,
                         const struct sd_profile_steps *st, int64_t tenant_id, enum sd_env env,
                         const struct sd_link_ctx *ctx, int opt_out, const char *email_key);

/* Link the record (source, cu->customer_id) the writer has just upserted: a record with a
 * profile keeps it and that profile's flags are recomputed; a new record joins the oldest
 * profile with its link key or gets a new profile. -EIO if the record is not stored. */
int sd_profile_link(struct sd_store *s, const struct sd_profile_steps *st, int64_t tenant_id,
                    enum sd_env env, struct sd_link_ctx *ctx, const char *source,
                    const struct sd_customer_rec *cu, int64_t now);

/* A record of profile_id was deleted (not erased): recompute the profile's flags from the
 * records left, or delete the profile when none is left. */
int sd_profile_member_gone(struct sd_store *s, const struct sd_profile_steps *st, int64_t tenant_id,
                           enum sd_env env, int64_t profile_id, int64_t now);

/* An operator's split: record (source, customer_id) of profile_id leaves it for a new profile
 * of its own, pinned. -ENOENT when the record is not a member of profile_id, -EBUSY when it
 * is the only one; on success *ret_new_id (optional). */
int sd_profile_split(struct sd_store *s, const struct sd_profile_steps *st, int64_t tenant_id,
                     enum sd_env env, int64_t profile_id, const char *source,
                     const char *customer_id, int64_t *ret_new_id);

#endif
