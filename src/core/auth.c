/* auth.c — key generation and the server's snapshot of tenants and key hashes.
 *
 * The snapshot is immutable once built: refresh builds a new one and swaps the pointer under a
 * write lock, so lookups hold a read lock only while they copy a few fields. Keys are sorted by
 * hash for binary search; the final comparison of the found hash is constant-time.
 *
 * Verified keys: hashing the presented key is most of a lookup's cost, and a webhook client
 * presents the same key on every request. Each snapshot carries a small direct-mapped cache of
 * keys it has verified (the presented bytes, compared in constant time, and the key and tenant
 * they resolved to in that snapshot). Only an active key's success is cached, never a miss or
 * a revoked key. The cache lives and dies with its snapshot: a revocation, rotation or new
 * limits change the settings version, refresh swaps in a new snapshot with an empty cache, and
 * the old one's key bytes are wiped when it is freed — a cached key is never trusted past the
 * snapshot that verified it. The slot is chosen by a seeded hash, so which keys evict each
 * other cannot be chosen from outside; an eviction only costs a hash.
 *
 * Last use: written to the store at most once a minute per key, never once per request. A
 * lookup that resolves an active key stores the time in the snapshot's per-key atomic (to the
 * second: at most one store a second per key); sd_auth_flush_usage, on the housekeeping
 * thread, writes a key's time when it is a minute or more past the time last written (so a
 * key's first use shows at once, and then the stored time is never more than a minute behind),
 * all due keys in one transaction. A refresh carries the times (and what was written) over to
 * the new snapshot under the write lock, so no use recorded in the old one is lost. */
#include "core/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/log.h"
#include "store/observe.h"

bool sd_client_id_valid(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-';
        if (!ok || n >= SD_CLIENT_ID_MAX) {
            return false;
        }
    }
    return n >= 1;
}

/* n base62 characters from random bytes taken below 248 (= 4 * 62, so no modulo bias). */
static int random_base62(char *out, size_t n)
{
    static const char alphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    size_t got = 0;
    while (got < n) {
        uint8_t b[64];
        int r = sd_random_bytes(b, sizeof(b));
        if (r < 0) {
            return r;
        }
        for (size_t i = 0; i < sizeof(b) && got < n; i++) {
            if (b[i] < 248) {
                out[got++] = alphabet[b[i] % 62];
            }
        }
        explicit_bzero(b, sizeof(b));
    }
    out[n] = '\0';
    return 0;
}

int sd_admin_token_ensure(const char *data_dir, char ret_hash[65], bool *ret_created)
{
    char *path = sd_asprintf("%s/admin.token", data_dir);
    int r = 0;
    bool created = false;
    char buf[128];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT) {
        char body[44];
        if ((r = random_base62(body, 43)) < 0) {
            goto out;
        }
        int n = snprintf(buf, sizeof(buf), "sd_admin_%s\n", body);
        explicit_bzero(body, sizeof(body));
        /* O_EXCL: two servers starting on one data dir never overwrite each other's token. */
        int wfd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (wfd >= 0) {
            bool ok = write(wfd, buf, (size_t)n) == n && fsync(wfd) == 0;
            close(wfd);
            if (!ok) {
                unlink(path);
                r = -EIO;
                goto out;
            }
            created = true;
        } else if (errno != EEXIST) {
            r = -errno;
            goto out;
        }
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    }
    if (fd < 0) {
        r = -errno;
        goto out;
    }
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) {
        r = -EIO;
        goto out;
    }
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    if (strlen(buf) < 32) {
        r = -EINVAL; /* an operator's own token must still be long enough to be a secret */
        goto out;
    }
    sd_sha256_hex(buf, strlen(buf), ret_hash);
    if (ret_created) {
        *ret_created = created;
    }
out:
    explicit_bzero(buf, sizeof(buf));
    free(path);
    return r;
}

bool sd_admin_token_check(const char hash[65], const char *token)
{
    if (!token || !*token || !hash[0]) {
        return false;
    }
    char h[65];
    sd_sha256_hex(token, strlen(token), h);
    return sd_ct_equal(h, 64, hash, 64);
}

int sd_key_create(struct sd_store_handle *st, const char *client_id, enum sd_env env,
                  char **ret_key, char **ret_key_id)
{
    /* 43 base62 characters from 43 random bytes taken below 248 (= 4 * 62, so no modulo
     * bias): about 256 bits of entropy. The public id is 8 more random bytes in hex. */
    uint8_t rnd[8];
    int r = sd_random_bytes(rnd, sizeof(rnd));
    if (r < 0) {
        return r;
    }
    char body[44];
    if ((r = random_base62(body, 43)) < 0) {
        return r;
    }
    body[43] = '\0';
    char idpart[17];
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < 8; i++) {
        idpart[2 * i] = hex[rnd[i] >> 4];
        idpart[2 * i + 1] = hex[rnd[i] & 15];
    }
    idpart[16] = '\0';
    char *key = sd_asprintf("sd_%s_%s", sd_env_name(env), body);
    char *key_id = sd_asprintf("key_%s", idpart);
    char hash[65];
    sd_sha256_hex(key, strlen(key), hash);
    r = sd_store_key_insert(st, key_id, client_id, env, hash);
    explicit_bzero(rnd, sizeof(rnd));
    explicit_bzero(body, sizeof(body));
    if (r < 0) {
        explicit_bzero(key, strlen(key));
        free(key);
        free(key_id);
        return r;
    }
    *ret_key = key;
    *ret_key_id = key_id;
    return 0;
}

#define CACHE_SLOTS 64   /* verified keys kept per snapshot */
#define CACHE_KEY_MAX 64 /* longer presented keys are never cached (ours are 51 bytes) */

/* One verified key: the bytes presented, and what they resolved to in this snapshot. */
struct cache_slot {
    size_t len; /* 0: empty */
    char key[CACHE_KEY_MAX];
    const struct sd_key_info *k;
    const struct sd_tenant *t;
};

struct snapshot {
    struct sd_tenant *tenants; /* sorted by id */
    size_t n_tenants;
    struct sd_key_info *keys; /* sorted by hash_hex */
    size_t n_keys;
    int64_t version;
    /* Per key (same index as keys): last use seen (any thread), and last written to the store
     * (only by the housekeeping thread). */
    _Atomic int64_t *used;
    int64_t *flushed;
    pthread_mutex_t cache_lock; /* the slots; taken under the auth read lock */
    struct cache_slot cache[CACHE_SLOTS];
};

struct sd_auth {
    struct sd_store_handle *st;
    pthread_rwlock_t lock;
    struct snapshot *snap;
    uint64_t seed;                 /* of the slot hash, random per process */
    _Atomic uint64_t cache_hits;   /* lookups answered from a snapshot's cache */
    _Atomic uint64_t cache_misses; /* lookups that hashed the key */
};

static void snapshot_free(struct snapshot *s)
{
    if (!s) {
        return;
    }
    explicit_bzero(s->cache, sizeof(s->cache));
    pthread_mutex_destroy(&s->cache_lock);
    sd_tenants_free(s->tenants, s->n_tenants);
    sd_keys_free(s->keys, s->n_keys);
    free(s->used);
    free(s->flushed);
    free(s);
}

/* FNV-1a over the presented bytes, from a per-process random seed. */
static size_t cache_slot_of(const struct sd_auth *a, const char *key, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ a->seed;
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)key[i];
        h *= 0x100000001b3ULL;
    }
    return (size_t)((h ^ (h >> 32)) % CACHE_SLOTS);
}

static int cmp_tenant(const void *a, const void *b)
{
    int64_t x = ((const struct sd_tenant *)a)->id, y = ((const struct sd_tenant *)b)->id;
    return (x > y) - (x < y);
}

static int cmp_key(const void *a, const void *b)
{
    return strcmp(((const struct sd_key_info *)a)->hash_hex,
                  ((const struct sd_key_info *)b)->hash_hex);
}

static int load(struct sd_store_handle *st, int64_t version, struct snapshot **ret)
{
    struct snapshot *s = sd_calloc(1, sizeof(*s));
    int r = sd_store_auth_snapshot(st, &s->tenants, &s->n_tenants, &s->keys, &s->n_keys);
    if (r < 0) {
        free(s);
        return r;
    }
    s->version = version;
    pthread_mutex_init(&s->cache_lock, NULL);
    if (s->n_tenants) {
        qsort(s->tenants, s->n_tenants, sizeof(*s->tenants), cmp_tenant);
    }
    if (s->n_keys) {
        qsort(s->keys, s->n_keys, sizeof(*s->keys), cmp_key);
    }
    size_t nk = s->n_keys ? s->n_keys : 1;
    s->used = sd_calloc(nk, sizeof(*s->used));
    s->flushed = sd_calloc(nk, sizeof(*s->flushed));
    for (size_t i = 0; i < s->n_keys; i++) {
        atomic_init(&s->used[i], s->keys[i].last_used_usec);
        s->flushed[i] = s->keys[i].last_used_usec;
    }
    *ret = s;
    return 0;
}

int sd_auth_new(struct sd_store_handle *st, struct sd_auth **ret)
{
    struct sd_auth *a = sd_calloc(1, sizeof(*a));
    a->st = st;
    pthread_rwlock_init(&a->lock, NULL);
    atomic_init(&a->cache_hits, 0);
    atomic_init(&a->cache_misses, 0);
    int r = sd_random_bytes(&a->seed, sizeof(a->seed));
    int64_t v = 0;
    if (r >= 0) {
        r = sd_store_settings_version(st, &v);
    }
    if (r >= 0) {
        r = load(st, v, &a->snap);
    }
    if (r < 0) {
        pthread_rwlock_destroy(&a->lock);
        free(a);
        return r;
    }
    *ret = a;
    return 0;
}

void sd_auth_free(struct sd_auth *a)
{
    if (!a) {
        return;
    }
    snapshot_free(a->snap);
    pthread_rwlock_destroy(&a->lock);
    free(a);
}

/* Under the write lock: the uses the old snapshot saw, and what was written, move to the
 * same keys (by hash) in the new one. */
static void carry_usage(const struct snapshot *old, struct snapshot *s)
{
    for (size_t i = 0; i < s->n_keys; i++) {
        const struct sd_key_info *k =
            old->n_keys ? bsearch(&s->keys[i], old->keys, old->n_keys, sizeof(*old->keys), cmp_key)
                        : NULL;
        if (!k) {
            continue;
        }
        size_t j = (size_t)(k - old->keys);
        int64_t u = atomic_load(&old->used[j]);
        if (u > atomic_load(&s->used[i])) {
            atomic_store(&s->used[i], u);
        }
        if (old->flushed[j] > s->flushed[i]) {
            s->flushed[i] = old->flushed[j];
        }
    }
}

/* A resolved key's use, kept to the second (see the file's comment). */
static void mark_used(struct snapshot *s, const struct sd_key_info *k)
{
    _Atomic int64_t *u = &s->used[k - s->keys];
    int64_t now = sd_now_usec();
    if (now - atomic_load_explicit(u, memory_order_relaxed) >= 1000000) {
        atomic_store_explicit(u, now, memory_order_relaxed);
    }
}

#define USAGE_FLUSH_USEC (60LL * 1000000) /* a key's last use is written at most this often */

int sd_auth_flush_usage(struct sd_auth *a, bool all)
{
    pthread_rwlock_rdlock(&a->lock);
    struct snapshot *s = a->snap;
    size_t cap = s->n_keys ? s->n_keys : 1, n = 0;
    size_t *idx = sd_calloc(cap, sizeof(*idx));
    const char **ids = sd_calloc(cap, sizeof(*ids));
    int64_t *when = sd_calloc(cap, sizeof(*when));
    for (size_t i = 0; i < s->n_keys; i++) {
        int64_t u = atomic_load_explicit(&s->used[i], memory_order_relaxed);
        if (u > s->flushed[i] && (all || u - s->flushed[i] >= USAGE_FLUSH_USEC)) {
            idx[n] = i;
            ids[n] = s->keys[i].key_id;
            when[n++] = u;
        }
    }
    /* Only this thread swaps snapshots (sd_auth_refresh), so s and its keys stay valid. */
    pthread_rwlock_unlock(&a->lock);
    int r = n ? sd_store_observe_key_touch(a->st, ids, when, n) : 0;
    if (r == 0) {
        for (size_t i = 0; i < n; i++) {
            s->flushed[idx[i]] = when[i];
        }
    }
    free(idx);
    free(ids);
    free(when);
    return r;
}

int sd_auth_refresh(struct sd_auth *a)
{
    int64_t v = 0;
    int r = sd_store_settings_version(a->st, &v);
    if (r < 0) {
        return r;
    }
    pthread_rwlock_rdlock(&a->lock);
    bool same = a->snap->version == v;
    pthread_rwlock_unlock(&a->lock);
    if (same) {
        return 0;
    }
    struct snapshot *s = NULL;
    r = load(a->st, v, &s);
    if (r < 0) {
        return r;
    }
    pthread_rwlock_wrlock(&a->lock);
    struct snapshot *old = a->snap;
    carry_usage(old, s);
    a->snap = s;
    pthread_rwlock_unlock(&a->lock);
    snapshot_free(old);
    sd_log(SD_LOG_INFO, "settings reloaded", "version=%lld tenants=%zu keys=%zu", (long long)v,
           s->n_tenants, s->n_keys);
    return 0;
}

static const struct sd_tenant *find_tenant_by_id(const struct snapshot *s, int64_t id)
{
    struct sd_tenant probe = {.id = id};
    return s->n_tenants ? bsearch(&probe, s->tenants, s->n_tenants, sizeof(*s->tenants), cmp_tenant)
                        : NULL;
}

static void fill_tenant(const struct sd_tenant *t, struct sd_principal *ret)
{
    ret->tenant_id = t->id;
    /* a client id is at most SD_CLIENT_ID_MAX bytes (checked at creation); cut, never overrun */
    size_t n = strnlen(t->client_id, sizeof(ret->client_id) - 1);
    memcpy(ret->client_id, t->client_id, n);
    ret->client_id[n] = '\0';
    ret->per_minute = t->per_minute;
    ret->burst = t->burst;
}

int sd_auth_key(struct sd_auth *a, const char *key, struct sd_principal *ret)
{
    size_t len = strlen(key);
    int r = -ENOENT;
    pthread_rwlock_rdlock(&a->lock);
    struct snapshot *s = a->snap;
    struct cache_slot *slot = NULL;
    if (len > 0 && len <= CACHE_KEY_MAX) {
        slot = &s->cache[cache_slot_of(a, key, len)];
        pthread_mutex_lock(&s->cache_lock);
        bool hit = sd_ct_equal(slot->key, slot->len, key, len);
        const struct sd_key_info *k = slot->k;
        const struct sd_tenant *t = slot->t;
        pthread_mutex_unlock(&s->cache_lock);
        if (hit) {
            /* verified in this snapshot: active, its tenant present */
            fill_tenant(t, ret);
            ret->env = k->env;
            mark_used(s, k);
            pthread_rwlock_unlock(&a->lock);
            atomic_fetch_add(&a->cache_hits, 1);
            return 0;
        }
    }
    atomic_fetch_add(&a->cache_misses, 1);
    char hash[65];
    sd_sha256_hex(key, len, hash);
    struct sd_key_info probe = {.hash_hex = hash};
    const struct sd_key_info *k =
        s->n_keys ? bsearch(&probe, s->keys, s->n_keys, sizeof(*s->keys), cmp_key) : NULL;
    if (k && sd_ct_equal(k->hash_hex, 64, hash, 64)) {
        const struct sd_tenant *t = find_tenant_by_id(s, k->tenant_id);
        if (k->revoked_usec != 0) {
            r = -EKEYREVOKED;
        } else if (t) {
            fill_tenant(t, ret);
            ret->env = k->env;
            mark_used(s, k);
            r = 0;
            if (slot) {
                pthread_mutex_lock(&s->cache_lock);
                explicit_bzero(slot->key, sizeof(slot->key));
                memcpy(slot->key, key, len);
                slot->len = len;
                slot->k = k;
                slot->t = t;
                pthread_mutex_unlock(&s->cache_lock);
            }
        }
    }
    pthread_rwlock_unlock(&a->lock);
    return r;
}

void sd_auth_cache_stats(struct sd_auth *a, uint64_t *ret_hits, uint64_t *ret_misses)
{
    *ret_hits = atomic_load(&a->cache_hits);
    *ret_misses = atomic_load(&a->cache_misses);
}
