/* test_ingest_checkable.c — sd_validate_ingest_checkable: which records of a refused ingest body
 * can still have their references checked. Each case is a body and the exact indexes of the
 * events, customers and sales kept ("" = none); a case without sales keeps nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "model/model.h"

#define EV(id, extra)                                                                              \
    "{\"event_id\":\"" id "\",\"title\":\"T\",\"date\":\"2025-10-03\",\"time\":\"19:30:00\","      \
    "\"venue\":\"V\",\"hall\":\"H " id "\",\"capacity\":10,\"city\":\"B\"" extra "}"
#define CU(id, email) "{\"customer_id\":\"" id "\",\"email\":\"" email "\"}"
#define SA(inv, ev, cu, cur)                                                                       \
    "{\"invoice_number\":\"" inv "\",\"event_id\":\"" ev "\",\"customer_id\":\"" cu "\","          \
    "\"purchase_datetime\":\"2025-04-15T11:08:42Z\",\"ticket_category\":\"regular\","              \
    "\"quantity\":1,\"sales_price\":\"9.00\",\"currency\":\"" cur "\"}"

struct ck_case {
    const char *name;
    const char *body;
    const char *events, *customers, *sales; /* kept indexes, comma-separated */
};

static const struct ck_case cases[] = {
    {"bad currency left out, unknown event kept for the check",
     "{\"sales\":[" SA("I1", "E1", "ANON", "EURO") "," SA("I2", "NOPE", "ANON", "EUR") "]}", "", "",
     "1"},
    {"valid event and customer kept as references",
     "{\"events\":[" EV("E1", "") "],\"customers\":[" CU(
         "C1", "a@example.com") "],"
                                "\"sales\":[" SA("I1", "E1", "C1", "EUR") "," SA("I2", "E1", "C1",
                                                                                 "XX") "]}",
     "0", "0", "0"},
    {"sales naming an invalid event or customer of the request are left out",
     "{\"events\":[" EV("E1", ",\"capacity\":-1") "," EV(
         "E2", "") "],"
                   "\"customers\":[" CU(
                       "C1", "not an address") "],"
                                               "\"sales\":[" SA("I1", "E1", "ANON", "EUR") "," SA(
                                                   "I2", "E2", "C1",
                                                   "EUR") "," SA("I3", "E2", "ANON", "EUR") "]}",
     "1", "", "2"},
    {"the repeat of an invoice number is left out, its first use kept",
     "{\"sales\":[" SA("I1", "E1", "ANON", "EUR") "," SA("I1", "E1", "ANON", "EUR") "," SA(
         "I2", "E1", "ANON", "EUR") "," SA("I3", "E1", "ANON", "?") "]}",
     "", "", "0,2"},
    {"no valid sale: nothing to check",
     "{\"events\":[" EV("E1", "") "],\"sales\":[" SA("I1", "E1", "ANON", "??") "]}", "", "", ""},
    {"records in a wrong shape: nothing to check",
     "{\"events\":{\"event_id\":\"E1\"},\"sales\":[" SA("I1", "E1", "ANON", "EUR") "]}", "", "",
     ""},
    {"an unknown top-level member does not stop the check",
     "{\"salez\":[],\"sales\":[" SA("I1", "E1", "ANON", "EUR") "]}", "", "", "0"},
    {"not an object", "[1,2]", "", "", ""},
};

static void expect_indexes(const char *want, size_t n, const size_t *got, const char *what,
                           const char *name)
{
    char have[256] = "";
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        len += (size_t)snprintf(have + len, sizeof(have) - len, "%s%zu", i ? "," : "", got[i]);
    }
    if (strcmp(have, want) != 0) {
        fail_msg("%s: %s kept [%s], want [%s]", name, what, have, want);
    }
}

static void test_cases(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        const struct ck_case *k = &cases[c];
        json_error_t err;
        json_t *body = json_loads(k->body, 0, &err);
        if (!body) {
            fail_msg("%s: test body does not parse: %s", k->name, err.text);
        }
        struct sd_batch b;
        size_t kept = sd_validate_ingest_checkable(body, &b);
        assert_int_equal(kept, b.n_sales);
        size_t idx[16];
        for (size_t i = 0; i < b.n_events; i++) {
            idx[i] = b.events[i].index;
        }
        expect_indexes(k->events, b.n_events, idx, "events", k->name);
        for (size_t i = 0; i < b.n_customers; i++) {
            idx[i] = b.customers[i].index;
        }
        expect_indexes(k->customers, b.n_customers, idx, "customers", k->name);
        for (size_t i = 0; i < b.n_sales; i++) {
            idx[i] = b.sales[i].index;
        }
        expect_indexes(k->sales, b.n_sales, idx, "sales", k->name);
        sd_batch_release(&b);
        json_decref(body);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
