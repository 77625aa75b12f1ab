/* test_router.c — the route table: parameters, 404 vs 405 with Allow, no partial matches. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/api.h"
#include "server/router.h"

static void free_params(char **p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(p[i]);
    }
}

static void test_found_with_params(void **state)
{
    (void)state;
    char *params[SD_REQ_MAX_PARAMS] = {0};
    size_t n = 0, idx = 0;
    char allow[64];
    assert_int_equal(sd_route_find(sd_routes, sd_routes_count, "GET", "/v1/acme/sales/A-1", &idx, params, &n, allow,
                                   sizeof(allow)),
                     SD_ROUTE_FOUND);
    assert_string_equal(sd_routes[idx].name, "sale_get");
    assert_int_equal(n, 2);
    assert_string_equal(params[0], "acme");
    assert_string_equal(params[1], "A-1");
    free_params(params, n);
    assert_int_equal(sd_route_find(sd_routes, sd_routes_count, "PUT", "/v1/acme/sales/A-1", &idx, params, &n, allow,
                                   sizeof(allow)),
                     SD_ROUTE_FOUND);
    assert_string_equal(sd_routes[idx].name, "sale_put");
    free_params(params, n);
}

static void test_not_found(void **state)
{
    (void)state;
    char *params[SD_REQ_MAX_PARAMS] = {0};
    size_t n = 0, idx = 0;
    char allow[64];
    const char *paths[] = {"/v2/acme/ingest", "/v1/acme/ingest/x", "/v1//ingest", "/",
                           "/v1/acme", "/healthz/", "/v1/acme/sales/"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        assert_int_equal(sd_route_find(sd_routes, sd_routes_count, "GET", paths[i], &idx, params, &n, allow, sizeof(allow)),
                         SD_ROUTE_NO_PATH);
    }
}

static void test_method_not_allowed(void **state)
{
    (void)state;
    char *params[SD_REQ_MAX_PARAMS] = {0};
    size_t n = 0, idx = 0;
    char allow[64];
    assert_int_equal(sd_route_find(sd_routes, sd_routes_count, "POST", "/v1/acme/sales/A-1", &idx, params, &n, allow,
                                   sizeof(allow)),
                     SD_ROUTE_NO_METHOD);
    assert_string_equal(allow, "GET, PUT, DELETE");
    assert_int_equal(sd_route_find(sd_routes, sd_routes_count, "GET", "/v1/acme/ingest", &idx, params, &n, allow,
                                   sizeof(allow)),
                     SD_ROUTE_NO_METHOD);
    assert_string_equal(allow, "POST");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_found_with_params),
        cmocka_unit_test(test_not_found),
        cmocka_unit_test(test_method_not_allowed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
