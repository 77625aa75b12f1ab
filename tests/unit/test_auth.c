/* test_auth.c — API keys: format and entropy, only the hash stored, lookup by key, revocation
 * seen after a refresh, tenant isolation, client id rules. */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_id_rules),
        cmocka_unit_test_setup_teardown(test_key_lifecycle, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
