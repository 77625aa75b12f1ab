/* test_model_exact.c — prices sent as JSON numbers are judged by their digits as sent, not by
 * the double jansson made of them; other members and shapes are left alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "model/model.h"

static json_t *load_exact(const char *text)
{
    json_t *v = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    assert_non_null(v);
    sd_json_exact_prices(v, text, strlen(text));
    return v;
}

static void test_prices_become_literal_strings(void **state)
{
    (void)state;
    json_t *v = load_exact("{\"sales\":[{\"sales_price\": 89.0000000000000001, \"base_price\":75.5,"
                           " \"other\": 1.5}, {\"x\":{\"sales_price\":\"1.00\"}},"
                           " {\"sales_price\":12}]}");
    json_t *s0 = json_array_get(json_object_get(v, "sales"), 0);
    assert_string_equal(json_string_value(json_object_get(s0, "sales_price")),
                        "89.0000000000000001");
    assert_string_equal(json_string_value(json_object_get(s0, "base_price")), "75.5");
    assert_true(json_is_real(json_object_get(s0, "other")));
    json_t *s2 = json_array_get(json_object_get(v, "sales"), 2);
    assert_true(json_is_integer(json_object_get(s2, "sales_price")));
    json_decref(v);
}

static void test_left_alone(void **state)
{
    (void)state;
    /* exponent and negative stay numbers: validation judges them as numbers */
    json_t *v = load_exact("{\"sales_price\":1.5e2,\"base_price\":-1.25,\"s\":\"sales_price\","
                           "\"k\\\"q\":[{\"a\":[1,2,{\"sales_price\":0.10}]}]}");
    assert_true(json_is_real(json_object_get(v, "sales_price")));
    assert_true(json_is_real(json_object_get(v, "base_price")));
    json_t *inner = json_array_get(
        json_object_get(json_array_get(json_object_get(v, "k\"q"), 0), "a"), 2);
    assert_string_equal(json_string_value(json_object_get(inner, "sales_price")), "0.10");
    json_decref(v);
}

static void test_validation_sees_the_digits(void **state)
{
    (void)state;
    json_t *v = load_exact("{\"sales_price\": 89.0000000000000001}");
    int64_t minor = 0;
    const char *why = NULL;
    assert_int_not_equal(sd_decimal_parse(json_object_get(v, "sales_price"), 2, &minor, &why), 0);
    json_decref(v);
    v = load_exact("{\"sales_price\": 89.000}");
    assert_int_equal(sd_decimal_parse(json_object_get(v, "sales_price"), 2, &minor, &why), 0);
    assert_int_equal(minor, 8900);
    json_decref(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prices_become_literal_strings),
        cmocka_unit_test(test_left_alone),
        cmocka_unit_test(test_validation_sees_the_digits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
