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

/* A source record of a profile, as erasure handles it (owned texts). */
struct sd_erase_member {
    int64_t seq;
    char *source;
    char *customer_id;
    char *email_key;
};
void sd_erase_member_release(struct sd_erase_member *m);
void sd_erase_members_free(struct sd_erase_member *v, size_t n);

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

/* What erasure asks of a backend, on its writer. Each returns 0 (or as said) or a negative
 * errno. */
struct sd_erase_steps {
    /* The record (source NULL: of any one source) to erase: 1 found (*ret owned by the caller,
     * its profile id or 0), 0 none, -ENOTUNIQ. */
    int (*find)(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *source,
                const char *customer_id, struct sd_erase_member *ret, int64_t *ret_profile);
    /* All records of profile_id. */
    int (*members)(struct sd_store *s, int64_t tenant_id, enum sd_env env, int64_t profile_id,
                   struct sd_erase_member **ret, size_t *ret_n);
    /* Re-point every sale of the record to ANON, one new seq each (each taken out of the
     * purchase facts first); *count grows by the sales changed. */
    int (*anonymize_sales)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                           const struct sd_erase_member *m, int64_t now, int64_t *count);
    /* Delete the record row seq. */
    int (*record_delete)(struct sd_store *s, int64_t tenant_id, enum sd_env env, int64_t seq);
    /* The backend's tombstone_put (store.h's delete_record tombstones). */
    int (*tombstone_put)(struct sd_store *s, int64_t tenant_id, enum sd_env env, enum sd_kind kind,
                         const char *id, const char *source, enum sd_tombstone_reason reason,
                         const char *merged_into, const char *origin, int64_t now);
    /* Delete the stored idempotent answers of tenant/env that contain needle (as
     * sd_profile_answer_needle made it); *count grows by the answers deleted. */
    int (*purge_answers)(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *needle,
                         int64_t *count);
    /* Hash the address onto the suppression list as erased and mark every other profile using
     * it suppressed. */
    int (*address_erased)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                          const char *email_key, int64_t now);
    /* Record the erasure (profile id, records, sales) at now: the last step. */
    int (*erasure_log)(struct sd_store *s, int64_t tenant_id, enum sd_env env, int64_t profile_id,
                       int64_t records, int64_t sales, int64_t now);
    /* Delete the profile row (its records are gone). */
    int (*remove)(struct sd_store *s, int64_t tenant_id, enum sd_env env, int64_t profile_id);
};

/* What an idempotent answer holding `text` contains: text JSON-encoded as a string, without
 * the surrounding quotes (quoted: 'text', how messages quote ids). NULL when text is not valid
 * UTF-8 (it could not have been stored in a JSON answer either). Free it. */
char *sd_profile_answer_needle(const char *text, bool quoted);

/* GDPR erasure of the person of record (source, customer_id) (source NULL: of any one
 * source): every record of its profile (or the record alone, without a profile) has its sales
 * made ANON, is deleted with an "erased" tombstone, and the idempotent answers naming it are
 * purged; each address is hashed onto the suppression list; the profile goes. -ENOENT when no
 * such record, -ENOTUNIQ when source is NULL and several sources hold the id. On success
 * *ret (optional). */
int sd_profile_erase(struct sd_store *s, const struct sd_erase_steps *st, int64_t tenant_id,
                     enum sd_env env, const char *source, const char *customer_id,
                     struct sd_erasure_result *ret);

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
