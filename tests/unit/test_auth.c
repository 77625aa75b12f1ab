/* test_auth.c — API keys: format and entropy, only the hash stored, lookup by key, revocation
 * seen after a refresh, tenant isolation, client id rules; the verified-key cache (repeated
 * lookups skip the hash, never accept other bytes, and never outlive a revocation, a rotation
 * or new limits).
 *
 * store suite: both backends (ctest store_pg.* runs it on PostgreSQL). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/auth.h"
#include "store/store.h"
#include "store_fixture.h"

struct fixture {
    struct sd_test_store fs;
    struct sd_store_handle *st;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    sd_test_store_setup(&f->fs, "auth", &f->st);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    sd_test_store_release(&f->fs, f->st);
    free(f);
    return 0;
}

static void test_client_id_rules(void **state)
{
    (void)state;
    assert_true(sd_client_id_valid("a"));
    assert_true(sd_client_id_valid("Opera_Berlin-2"));
    char s64[65], s65[66];
    memset(s64, 'x', 64);
    s64[64] = 0;
    memset(s65, 'x', 65);
    s65[65] = 0;
    assert_true(sd_client_id_valid(s64));
    assert_false(sd_client_id_valid(s65));
    assert_false(sd_client_id_valid(""));
    assert_false(sd_client_id_valid("a b"));
    assert_false(sd_client_id_valid("a/b"));
    assert_false(sd_client_id_valid("ä"));
}

static void test_key_lifecycle(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(sd_store_tenant_create(f->st, "acme", "Acme"), 0);
    assert_int_equal(sd_store_tenant_create(f->st, "other", "Other"), 0);
    char *key = NULL, *key_id = NULL;
    assert_int_equal(sd_key_create(f->st, "acme", SD_ENV_PROD, &key, &key_id), 0);
    assert_int_equal(strncmp(key, "sd_prod_", 8), 0);
    assert_int_equal(strlen(key), 8 + 43);
    assert_int_equal(strncmp(key_id, "key_", 4), 0);
    char *key2 = NULL, *key_id2 = NULL;
    assert_int_equal(sd_key_create(f->st, "other", SD_ENV_TEST, &key2, &key_id2), 0);
    assert_string_not_equal(key, key2);
    assert_int_equal(strncmp(key2, "sd_test_", 8), 0);
    assert_int_equal(sd_key_create(f->st, "nobody", SD_ENV_TEST, &key2, &key_id2), -ENOENT);

    /* the store keeps only the hash */
    struct sd_key_info *keys = NULL;
    size_t nk = 0;
    assert_int_equal(sd_store_key_list(f->st, "acme", &keys, &nk), 0);
    assert_int_equal(nk, 1);
    assert_string_equal(keys[0].key_id, key_id);
    assert_true(keys[0].hash_hex == NULL || strstr(keys[0].hash_hex, key + 8) == NULL);
    sd_keys_free(keys, nk);

    struct sd_auth *a = NULL;
    assert_int_equal(sd_auth_new(f->st, &a), 0);
    struct sd_principal p;
    assert_int_equal(sd_auth_key(a, key, &p), 0);
    assert_string_equal(p.client_id, "acme");
    assert_int_equal(p.env, SD_ENV_PROD);
    assert_int_equal(p.per_minute, 500);
    assert_int_equal(p.burst, 1000);
    assert_int_equal(sd_auth_key(a, key2, &p), 0);
    assert_string_equal(p.client_id, "other");
    assert_int_equal(sd_auth_key(a, "sd_prod_nope", &p), -ENOENT);
    assert_int_equal(sd_auth_key(a, "", &p), -ENOENT);

    /* revocation and new limits become visible after a refresh */
    assert_int_equal(sd_store_key_revoke(f->st, key_id), 0);
    assert_int_equal(sd_store_tenant_set_limits(f->st, "other", 60, 5), 0);
    assert_int_equal(sd_auth_key(a, key, &p), 0);
    assert_int_equal(sd_auth_refresh(a), 0);
    assert_int_equal(sd_auth_key(a, key, &p), -EKEYREVOKED);
    assert_int_equal(sd_auth_key(a, key2, &p), 0);
    assert_int_equal(p.per_minute, 60);
    assert_int_equal(p.burst, 5);
    sd_auth_free(a);
    free(key);
    free(key_id);
    free(key2);
    free(key_id2);
}

/* The same key again is answered from the cache; every other presented text is hashed and
 * judged as before. */
static void test_key_cache_hits(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(sd_store_tenant_create(f->st, "acme", "Acme"), 0);
    char *key = NULL, *key_id = NULL;
    assert_int_equal(sd_key_create(f->st, "acme", SD_ENV_TEST, &key, &key_id), 0);
    struct sd_auth *a = NULL;
    assert_int_equal(sd_auth_new(f->st, &a), 0);
    uint64_t hits = 0, misses = 0;
    struct sd_principal p;
    for (int i = 0; i < 10; i++) {
        memset(&p, 0, sizeof(p));
        assert_int_equal(sd_auth_key(a, key, &p), 0);
        assert_string_equal(p.client_id, "acme");
        assert_int_equal(p.env, SD_ENV_TEST);
        assert_int_equal(p.per_minute, 500);
        assert_int_equal(p.burst, 1000);
    }
    sd_auth_cache_stats(a, &hits, &misses);
    assert_int_equal(misses, 1);
    assert_int_equal(hits, 9);

    /* Texts near the cached key: one byte changed (first, middle, last), cut short, one byte
     * longer. Each is hashed and refused; the cached key still works afterwards. */
    size_t len = strlen(key);
    char *near = malloc(len + 2);
    size_t at[] = {0, len / 2, len - 1};
    for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
        memcpy(near, key, len + 1);
        near[at[i]] = near[at[i]] == 'A' ? 'B' : 'A';
        assert_int_equal(sd_auth_key(a, near, &p), -ENOENT);
    }
    memcpy(near, key, len + 1);
    near[len - 1] = '\0';
    assert_int_equal(sd_auth_key(a, near, &p), -ENOENT);
    memcpy(near, key, len);
    near[len] = 'x';
    near[len + 1] = '\0';
    assert_int_equal(sd_auth_key(a, near, &p), -ENOENT);
    /* unknown keys are not cached: asked twice, hashed twice */
    assert_int_equal(sd_auth_key(a, "sd_test_unknown", &p), -ENOENT);
    assert_int_equal(sd_auth_key(a, "sd_test_unknown", &p), -ENOENT);
    sd_auth_cache_stats(a, &hits, &misses);
    assert_int_equal(misses, 1 + 5 + 2);
    assert_int_equal(hits, 9);
    assert_int_equal(sd_auth_key(a, key, &p), 0);
    sd_auth_cache_stats(a, &hits, &misses);
    assert_int_equal(hits, 10);
    free(near);
    sd_auth_free(a);
    free(key);
    free(key_id);
}

/* A cached key is revoked, rotated or gets new limits: the refresh that sees the change is the
 * last moment the cache answers for it, exactly as without a cache. */
static void test_key_cache_revoke_rotate(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(sd_store_tenant_create(f->st, "acme", "Acme"), 0);
    char *old_key = NULL, *old_id = NULL, *new_key = NULL, *new_id = NULL;
    assert_int_equal(sd_key_create(f->st, "acme", SD_ENV_PROD, &old_key, &old_id), 0);
    struct sd_auth *a = NULL;
    assert_int_equal(sd_auth_new(f->st, &a), 0);
    struct sd_principal p;
    assert_int_equal(sd_auth_key(a, old_key, &p), 0);
    assert_int_equal(sd_auth_key(a, old_key, &p), 0);
    uint64_t hits = 0, misses = 0;
    sd_auth_cache_stats(a, &hits, &misses);
    assert_int_equal(hits, 1); /* it is cached now */

    /* new limits: the cached key answers with them right after the refresh */
    assert_int_equal(sd_store_tenant_set_limits(f->st, "acme", 60, 5), 0);
    assert_int_equal(sd_auth_refresh(a), 0);
    assert_int_equal(sd_auth_key(a, old_key, &p), 0);
    assert_int_equal(p.per_minute, 60);
    assert_int_equal(p.burst, 5);
    assert_int_equal(sd_auth_key(a, old_key, &p), 0);

    /* rotation: a new key, then the old one revoked */
    assert_int_equal(sd_key_create(f->st, "acme", SD_ENV_PROD, &new_key, &new_id), 0);
    assert_int_equal(sd_auth_refresh(a), 0);
    assert_int_equal(sd_auth_key(a, new_key, &p), 0);
    assert_int_equal(sd_auth_key(a, old_key, &p), 0);
    assert_int_equal(sd_store_key_revoke(f->st, old_id), 0);
    assert_int_equal(sd_auth_refresh(a), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(sd_auth_key(a, old_key, &p), -EKEYREVOKED);
        assert_int_equal(sd_auth_key(a, new_key, &p), 0);
        assert_string_equal(p.client_id, "acme");
        assert_int_equal(p.env, SD_ENV_PROD);
    }
    sd_auth_free(a);
    free(old_key);
    free(old_id);
    free(new_key);
    free(new_id);
}

/* Many keys at once: more than the cache holds, each still resolves to its own tenant. */
static void test_key_cache_many_keys(void **state)
{
    struct fixture *f = *state;
    enum { N = 150 };
    char *keys[N], *ids[N];
    char client[16];
    for (int i = 0; i < N; i++) {
        snprintf(client, sizeof(client), "c%d", i);
        assert_int_equal(sd_store_tenant_create(f->st, client, client), 0);
        assert_int_equal(sd_key_create(f->st, client, SD_ENV_TEST, &keys[i], &ids[i]), 0);
    }
    struct sd_auth *a = NULL;
    assert_int_equal(sd_auth_new(f->st, &a), 0);
    struct sd_principal p;
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++) {
            snprintf(client, sizeof(client), "c%d", i);
            assert_int_equal(sd_auth_key(a, keys[i], &p), 0);
            assert_string_equal(p.client_id, client);
        }
    }
    uint64_t hits = 0, misses = 0;
    sd_auth_cache_stats(a, &hits, &misses);
    assert_int_equal(hits + misses, 3 * N);
    assert_true(misses >= N); /* each key hashed at least once */
    sd_auth_free(a);
    for (int i = 0; i < N; i++) {
        free(keys[i]);
        free(ids[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_id_rules),
        cmocka_unit_test_setup_teardown(test_key_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_cache_hits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_cache_revoke_rotate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_cache_many_keys, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
