/* test_archtics_out.c — customers out to Archtics, the pure parts: which stagedoor fields
 * become which Archtics fields; every width boundary (a value of exactly the width is sent, one
 * character more refuses the write naming the field and the width, counted in characters, not
 * bytes); the merge of a customer_query answer with stagedoor's fields into a full
 * customer_update (fields stagedoor does not hold survive, numbers sent as strings are read,
 * name_type is never sent, other_info_* at command1 level, the alt id); customer_add's
 * parameters. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/base.h"
#include "connectors/archtics/archtics_out.h"

static json_t *load(const char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, 0, &e);
    if (!v) {
        fail_msg("bad test json: %s (%s)", text, e.text);
    }
    return v;
}

static const char *str(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    if (!s) {
        fail_msg("no string member %s", k);
    }
    return s;
}

static void test_fields_renamed_and_kept(void **state)
{
    (void)state;
    json_t *rec = load("{\"customer_id\":\"C-1\",\"email\":\"ann@example.com\","
                       "\"first_name\":\"Ann\",\"last_name\":\"Lee\",\"salutation\":\"Dr\","
                       "\"street\":\"1 Main St\",\"post_code\":\"98101\",\"ad_opt_out\":true,"
                       "\"city\":\"Seattle\",\"state\":\"WA\",\"country\":\"USA\","
                       "\"loyalty_tier\":\"gold\",\"name_type\":\"C\",\"phone_cell\":5551234}");
    json_t *f = NULL;
    char why[256] = "";
    assert_int_equal(archtics_out_fields(rec, &f, why, sizeof(why)), 0);
    assert_string_equal(str(f, "email"), "ann@example.com");
    assert_string_equal(str(f, "name_first"), "Ann");
    assert_string_equal(str(f, "name_last"), "Lee");
    assert_string_equal(str(f, "title"), "Dr");
    assert_string_equal(str(f, "street_addr_1"), "1 Main St");
    assert_string_equal(str(f, "zip"), "98101");
    assert_string_equal(str(f, "email_optout"), "1");
    assert_string_equal(str(f, "city"), "Seattle");
    assert_string_equal(str(f, "state"), "WA");
    assert_string_equal(str(f, "country"), "USA");
    /* not an Archtics field, name_type (never written), a non-string: left out */
    assert_null(json_object_get(f, "loyalty_tier"));
    assert_null(json_object_get(f, "name_type"));
    assert_null(json_object_get(f, "phone_cell"));
    assert_null(json_object_get(f, "customer_id"));
    assert_int_equal(json_object_size(f), 10);
    json_decref(f);
    json_decref(rec);

    rec = load("{\"email\":\"b@example.com\",\"ad_opt_out\":false}");
    assert_int_equal(archtics_out_fields(rec, &f, why, sizeof(why)), 0);
    assert_string_equal(str(f, "email_optout"), "0");
    json_decref(f);
    json_decref(rec);
}

/* a value of exactly the width is sent; one more character refuses the write */
static void test_widths_boundaries(void **state)
{
    (void)state;
    static const struct {
        const char *model, *ats;
        int width;
    } cases[] = {
        {"state", "state", 2},
        {"country", "country", 8},
        {"city", "city", 20},
        {"first_name", "name_first", 40},
        {"email", "email", 100},
        {"post_code", "zip", 10},
        {"salutation", "title", 10},
        {"last_name", "name_last", 80},
        {"other_info_3", "other_info_3", 100},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(archtics_field_width(cases[i].ats), cases[i].width);
        for (int extra = 0; extra <= 1; extra++) {
            char value[128];
            memset(value, 'x', sizeof(value));
            value[cases[i].width + extra] = '\0';
            json_t *rec = json_pack("{s:s}", cases[i].model, value);
            json_t *f = NULL;
            char why[256] = "";
            int r = archtics_out_fields(rec, &f, why, sizeof(why));
            if (extra == 0) {
                assert_int_equal(r, 0);
                assert_int_equal(strlen(str(f, cases[i].ats)), (size_t)cases[i].width);
                json_decref(f);
            } else {
                assert_int_equal(r, -EMSGSIZE);
                assert_null(f);
                char want[64];
                snprintf(want, sizeof(want), "at most %d (Char(%d))", cases[i].width,
                         cases[i].width);
                print_message("%s\n", why);
                assert_non_null(strstr(why, cases[i].ats));
                assert_non_null(strstr(why, want));
                assert_null(strstr(why, "xxxx")); /* the value itself is never quoted */
                if (strcmp(cases[i].model, cases[i].ats) != 0) {
                    assert_non_null(strstr(why, cases[i].model));
                }
            }
            json_decref(rec);
        }
    }
}

/* Char(n) counts characters: 20 umlauts fit city (40 bytes), 21 do not */
static void test_widths_count_characters(void **state)
{
    (void)state;
    char city[64] = "";
    for (int i = 0; i < 20; i++) {
        strcat(city, "\xc3\xbc");
    }
    assert_int_equal(archtics_char_count(city), 20);
    json_t *rec = json_pack("{s:s}", "city", city);
    json_t *f = NULL;
    char why[256] = "";
    assert_int_equal(archtics_out_fields(rec, &f, why, sizeof(why)), 0);
    json_decref(f);
    json_decref(rec);
    strcat(city, "a");
    rec = json_pack("{s:s}", "city", city);
    assert_int_equal(archtics_out_fields(rec, &f, why, sizeof(why)), -EMSGSIZE);
    assert_non_null(strstr(why, "city is 21 characters"));
    json_decref(rec);
}

static void test_update_merges_over_archtics(void **state)
{
    (void)state;
    /* as a server sends it: numbers as strings here and there, key case varied */
    json_t *q = load("{\"cmd\":\"Customer_Query\",\"result\":\"0\",\"Customer\":{"
                     "\"acct_id\":\"100007\",\"cust_name_id\":\"500007\",\"name_first\":\"Ann\","
                     "\"name_last\":\"Lee\",\"city\":\"Tacoma\",\"state\":\"WA\",\"zip\":98402,"
                     "\"phone_cell\":\"2065550100\",\"company_name\":\"Harbor Inc\","
                     "\"email\":\"ann@example.com\",\"name_type\":\"I\",\"email_optout\":\"0\"},"
                     "\"other_info_1\":\"VIP\",\"OTHER_INFO_7\":\"row 12\"}");
    json_t *ours = load("{\"name_first\":\"Anne\",\"city\":\"Seattle\",\"zip\":\"98101\","
                        "\"email\":\"anne@example.com\"}");
    char why[256] = "";
    json_t *p = archtics_out_update_params(q, ours, 100007, "SDID", "crm:C-1", why, sizeof(why));
    assert_non_null(p);
    const json_t *c = json_object_get(p, "customer");
    assert_true(json_is_object(c));
    assert_int_equal(json_integer_value(json_object_get(c, "acct_id")), 100007);
    /* ours on top */
    assert_string_equal(str(c, "name_first"), "Anne");
    assert_string_equal(str(c, "city"), "Seattle");
    assert_string_equal(str(c, "zip"), "98101");
    assert_string_equal(str(c, "email"), "anne@example.com");
    /* what stagedoor does not hold survives, numbers as their text */
    assert_string_equal(str(c, "name_last"), "Lee");
    assert_string_equal(str(c, "state"), "WA");
    assert_string_equal(str(c, "phone_cell"), "2065550100");
    assert_string_equal(str(c, "company_name"), "Harbor Inc");
    assert_string_equal(str(c, "email_optout"), "0");
    /* every field is sent (the update blanks what it is not sent); name_type never */
    for (const struct archtics_width *w = archtics_customer_widths; w->field; w++) {
        assert_true(json_is_string(json_object_get(c, w->field)));
    }
    assert_string_equal(str(c, "phone_day"), "");
    assert_null(json_object_get(c, "name_type"));
    assert_null(json_object_get(c, "cust_name_id"));
    /* other_info_* at command1 level, every one of them */
    assert_string_equal(str(p, "other_info_1"), "VIP");
    assert_string_equal(str(p, "other_info_7"), "row 12");
    assert_string_equal(str(p, "other_info_20"), "");
    assert_null(json_object_get(c, "other_info_1"));
    const json_t *alt = json_array_get(json_object_get(c, "alt_id_array"), 0);
    assert_string_equal(str(alt, "alt_id_type"), "SDID");
    assert_string_equal(str(alt, "alt_id"), "crm:C-1");
    json_decref(p);

    /* no alt id type configured: none sent */
    p = archtics_out_update_params(q, ours, 100007, "", "crm:C-1", why, sizeof(why));
    assert_null(json_object_get(json_object_get(p, "customer"), "alt_id_array"));
    json_decref(p);
    json_decref(ours);
    json_decref(q);

    q = load("{\"result\":0}");
    assert_null(archtics_out_update_params(q, NULL, 1, NULL, NULL, why, sizeof(why)));
    assert_non_null(strstr(why, "customer"));
    json_decref(q);
}

static void test_add_params(void **state)
{
    (void)state;
    json_t *f = load("{\"email\":\"ann@example.com\",\"name_last\":\"Lee\"}");
    json_t *p = NULL;
    char why[256] = "";
    assert_int_equal(archtics_out_add_params(f, &p, why, sizeof(why)), 0);
    const json_t *c = json_object_get(p, "customer");
    assert_string_equal(str(c, "name_type"), "I");
    assert_string_equal(str(c, "email"), "ann@example.com");
    assert_null(json_object_get(c, "acct_id"));
    json_decref(p);
    json_decref(f);

    f = load("{\"email\":\"ann@example.com\"}");
    assert_int_equal(archtics_out_add_params(f, &p, why, sizeof(why)), -EINVAL);
    assert_non_null(strstr(why, "name_last"));
    json_decref(f);
    f = load("{\"name_last\":\"Lee\"}");
    assert_int_equal(archtics_out_add_params(f, &p, why, sizeof(why)), -EINVAL);
    assert_non_null(strstr(why, "email"));
    json_decref(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields_renamed_and_kept),
        cmocka_unit_test(test_widths_boundaries),
        cmocka_unit_test(test_widths_count_characters),
        cmocka_unit_test(test_update_merges_over_archtics),
        cmocka_unit_test(test_add_params),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
