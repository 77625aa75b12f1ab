/* auth.h — API keys: creation, and the server's in-memory view of tenants and keys.
 *
 * A key is "sd_<env>_" + 43 base62 characters (256 bits of entropy). Only its SHA-256 is
 * stored. The server keeps a snapshot of all tenants and key hashes, reloaded whenever the
 * store's settings version changes (checked by the server's housekeeping loop several times a
 * second), so a key created or revoked with the CLI takes effect within one second.
 * Lookups hash the presented key and compare hashes in constant time. A key verified once is
 * kept (its bytes, compared in constant time) in a small cache that belongs to the snapshot:
 * the next requests with it skip the hash, and the next snapshot (after a revocation, a new
 * key or new limits) starts with an empty cache, so a revocation takes effect at the same
 * refresh as without it.
 *
 * Thread rules: sd_auth_* lookups from any thread (read lock); refresh from one thread. */
#ifndef SD_CORE_AUTH_H
#define SD_CORE_AUTH_H

#include <stdbool.h>
#include <stdint.h>

#include "model/model.h"
#include "store/store.h"

#define SD_CLIENT_ID_MAX 64

/* Who a request acts as, copied out of the snapshot. */
struct sd_principal {
    int64_t tenant_id;
    char client_id[SD_CLIENT_ID_MAX + 1];
    enum sd_env env;
    int64_t per_minute;
    int64_t burst;
};

/* 1..64 of A-Z a-z 0-9 _ - */
bool sd_client_id_valid(const char *s);

/* Create a key for client_id/env: stores the hash, writes the key (secret, shown once) into
 * ret_key (heap) and its public id into ret_key_id (heap). -ENOENT unknown client. */
int sd_key_create(struct sd_store_handle *st, const char *client_id, enum sd_env env,
                  char **ret_key, char **ret_key_id);

/* The admin token guards /admin/v1/…: "sd_admin_" + 43 base62 characters in DATA/admin.token
 * (mode 0600), created on the first `serve` if missing (an operator may also write their own,
 * at least 32 characters). Only its SHA-256 is kept in memory. *ret_created says whether this
 * call created it. */
int sd_admin_token_ensure(const char *data_dir, char ret_hash[65], bool *ret_created);
/* Constant-time check of a presented token against the hash. */
bool sd_admin_token_check(const char hash[65], const char *token);

struct sd_auth;

int sd_auth_new(struct sd_store_handle *st, struct sd_auth **ret);
void sd_auth_free(struct sd_auth *a);
/* Reload if the settings version changed. 0, or negative errno (the old view stays). */
int sd_auth_refresh(struct sd_auth *a);
/* Resolve a presented bearer key: 0 (ret filled), -ENOENT unknown, -EKEYREVOKED revoked. */
int sd_auth_key(struct sd_auth *a, const char *key, struct sd_principal *ret);
/* Write the last-use times of keys resolved since they were last written to the store
 * (store/observe.h key_touch): a key whose last use is a minute or more past its stored time
 * (its first use at once, then at most once a minute); all: every pending one now. Call from the thread that calls sd_auth_refresh. 0 or
 * negative errno (the times stay pending). A server does not flush when it stops: a stored
 * time is at most a minute behind the key's last use, and a stopped hub writes nothing more
 * (`stagedoor migrate --verify` after a stop compares equal). */
int sd_auth_flush_usage(struct sd_auth *a, bool all);
/* Lookups so far answered from the verified-key cache (hits) and by hashing (misses). */
void sd_auth_cache_stats(struct sd_auth *a, uint64_t *ret_hits, uint64_t *ret_misses);

#endif
