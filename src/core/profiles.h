/* profiles.h — unified customers (issue #4 §1) as the API and the CLI use them: one set of rules
 * for request bodies, one way to show a profile, and the writer jobs for the operations that
 * change profiles (split, suppression, erasure). Linking itself happens inside every ingest,
 * in the store (store/audience.h explains the rules).
 *
 * Thread rules: the parse/view helpers are reentrant. The sd_profiles_* jobs submit to the hub's
 * writer and wait for the commit, so they run on any thread but the writer's (an HTTP handler
 * of a low-rate endpoint, the CLI). Errors: negative errno as documented at each function. */
#ifndef SD_CORE_PROFILES_H
#define SD_CORE_PROFILES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/writer.h"
#include "model/model.h"
#include "store/audience.h"
#include "store/store.h"

/* The profile as the API shows it (new reference):
 * {"profile_id", "opt_out", "suppressed", "emails": [distinct e-mail keys],
 *  "sources": [{"source", "customer_id", "email", "first_name", "last_name", "ad_opt_out"
 *  (true/false/null), "pinned", "record": {the stored record}}], "created_at", "updated_at"}
 * (first_name/last_name only when known). */
json_t *sd_profile_view(const struct sd_profile *p);

/* A profile id as it appears in a path ("12"): 0, or -EINVAL unless a decimal integer > 0. */
int sd_profiles_parse_id(const char *s, int64_t *ret);

/* The e-mail key of an address as sent (trimmed, lowercased — the validator's rule), or NULL if
 * it is not a valid address. Heap string. */
char *sd_profiles_email_key(const char *email);

/* The tenant as the admin API shows it: {"client_id", "name", "link_rule", "per_minute",
 * "burst", "created_at"} (new reference; NULL after a store failure). */
json_t *sd_profiles_tenant_view(struct sd_store_handle *st, const struct sd_tenant *t);
/* Apply an admin PATCH body {"link_rule": "email"|"email_and_last_name"|"none"} to the tenant.
 * Returns 0, -EINVAL with errors (JSON Pointers into the body), -ENOENT, or a store error. */
int sd_profiles_tenant_patch(struct sd_store_handle *st, const char *client_id, const json_t *body,
                             struct sd_issues *errors);

/* Check a suppression body {"environment": "test"|"prod", "emails": [1..SD_SUPPRESS_MAX
 * addresses]}; on success *ret_keys holds the e-mail keys (heap array of heap strings, free
 * with sd_profiles_keys_free). Returns 0 or -EINVAL with errors. */
int sd_profiles_parse_suppress(const json_t *body, enum sd_env *ret_env, char ***ret_keys,
                               size_t *ret_n, struct sd_issues *errors);
void sd_profiles_keys_free(char **keys, size_t n);

/* Check a split body {"source": …, "customer_id": …}; *ret_source and *ret_customer_id point
 * into body. Returns 0 or -EINVAL with errors. */
int sd_profiles_parse_split(const json_t *body, const char **ret_source,
                            const char **ret_customer_id, struct sd_issues *errors);

/* Writer jobs (store ops of the same names; see audience.h for their errors: -ENOENT,
 * -EBUSY for split, -ENOTUNIQ for erase; -EIO). sd_profiles_suppress sends a batch in chunks
 * of 500 addresses, each its own commit, and sums their results; on failure the chunks before
 * stay committed (re-sending the batch is idempotent). */
int sd_profiles_suppress(struct sd_writer *w, int64_t tenant_id, enum sd_env env,
                         char *const *email_keys, size_t n, struct sd_suppress_result *ret);
int sd_profiles_split(struct sd_writer *w, int64_t tenant_id, enum sd_env env, int64_t profile_id,
                      const char *source, const char *customer_id, int64_t *ret_new_id);
int sd_profiles_erase(struct sd_writer *w, int64_t tenant_id, enum sd_env env, const char *source,
                      const char *customer_id, struct sd_erasure_result *ret);

#endif
