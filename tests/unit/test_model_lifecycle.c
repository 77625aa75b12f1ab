/* test_model_lifecycle.c — the order lifecycle of model/lifecycle.c and the lifecycle fields of
 * sd_validate_sale: statuses and their defaults, partial and whole refunds, the transitions a
 * stored sale may go through, and exact money unit conversion (sd_money_scaled_to_minor). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "model/model.h"

/* A valid sale with `extra` members merged in (JSON object text). */
static int validate(const char *extra, struct sd_sale_rec *ret, struct sd_issues *errors)
{
    json_t *rec = json_pack("{s:s,s:s,s:s,s:s,s:s,s:i,s:s,s:s}", "invoice_number", "A1", "event_id",
                            "E1", "customer_id", "C1", "purchase_datetime", "2025-04-15T11:08:42Z",
                            "ticket_category", "regular", "quantity", 2, "sales_price", "40.00",
                            "currency", "EUR");
    json_t *x = json_loads(extra, 0, NULL);
    assert_non_null(x);
    json_object_update(rec, x);
    json_decref(x);
    struct sd_issues warnings;
    sd_issues_init(&warnings, SD_MAX_ISSUES);
    int r = sd_validate_sale(rec, "/sales/0", ret, errors, &warnings);
    assert_int_equal(warnings.total, 0); /* every lifecycle field is known */
    sd_issues_release(&warnings);
    json_decref(rec);
    return r;
}

struct rec_case {
    const char *extra;
    const char *error; /* "pointer|fragment", or NULL: valid */
    enum sd_order_type type;
    enum sd_sale_status status;
    int64_t refunded_quantity, refunded_minor, net_quantity, net_minor;
};

static const struct rec_case rec_cases[] = {
    /* an old body: a sale, sold, nothing refunded */
    {"{}", NULL, SD_ORDER_SALE, SD_STATUS_SOLD, 0, 0, 2, 8000},
    {"{\"status\":\"sold\"}", NULL, SD_ORDER_SALE, SD_STATUS_SOLD, 0, 0, 2, 8000},
    /* "refunded" alone refunds everything */
    {"{\"status\":\"refunded\"}", NULL, SD_ORDER_SALE, SD_STATUS_REFUNDED, 2, 8000, 0, 0},
    /* partial: one ticket, its price by default */
    {"{\"status\":\"refunded\",\"refunded_quantity\":1}", NULL, SD_ORDER_SALE, SD_STATUS_REFUNDED,
     1, 4000, 1, 4000},
    /* amounts alone imply the status */
    {"{\"refunded_quantity\":1,\"refunded_amount\":\"35.00\"}", NULL, SD_ORDER_SALE,
     SD_STATUS_REFUNDED, 1, 3500, 1, 4500},
    {"{\"refunded_amount\":\"5.00\"}", NULL, SD_ORDER_SALE, SD_STATUS_REFUNDED, 0, 500, 2, 7500},
    {"{\"status\":\"cancelled\"}", NULL, SD_ORDER_SALE, SD_STATUS_CANCELLED, 0, 0, 0, 0},
    {"{\"status\":\"exchanged\"}", NULL, SD_ORDER_SALE, SD_STATUS_EXCHANGED, 0, 0, 0, 0},
    {"{\"order_type\":\"reservation\",\"expires_at\":\"2025-05-01T12:00:00+02:00\"}", NULL,
     SD_ORDER_RESERVATION, SD_STATUS_OPEN, 0, 0, 0, 0},
    {"{\"order_type\":\"option\",\"status\":\"freed\"}", NULL, SD_ORDER_OPTION, SD_STATUS_FREED, 0,
     0, 0, 0},
    {"{\"order_type\":\"abandoned\"}", NULL, SD_ORDER_ABANDONED, SD_STATUS_ABANDONED, 0, 0, 0, 0},
    {"{\"refund_of\":\"A0\"}", NULL, SD_ORDER_REFUND, SD_STATUS_APPLIED, 0, 0, 0, 0},
    {"{\"attended_quantity\":2}", NULL, SD_ORDER_SALE, SD_STATUS_SOLD, 0, 0, 2, 8000},
    /* errors name the field */
    {.extra = "{\"refunded_quantity\":3}",
     .error = "/sales/0/refunded_quantity|must not exceed quantity (2)"},
    {.extra = "{\"refunded_amount\":\"80.01\"}",
     .error = "/sales/0/refunded_amount|must not exceed quantity"},
    {.extra = "{\"refunded_amount\":\"1.001\"}",
     .error = "/sales/0/refunded_amount|at most 2 decimal places"},
    {.extra = "{\"status\":\"sold\",\"refunded_quantity\":1}",
     .error = "/sales/0/status|must be refunded"},
    {.extra = "{\"status\":\"refunded\",\"refunded_quantity\":0,\"refunded_amount\":0}",
     .error = "/sales/0/refunded_quantity|refunds something"},
    {.extra = "{\"status\":\"open\"}",
     .error = "/sales/0/status|sold, refunded, cancelled, exchanged"},
    {.extra = "{\"status\":\"Sold\"}",
     .error = "/sales/0/status|sold, refunded, cancelled, exchanged"},
    {.extra = "{\"order_type\":\"reservation\",\"status\":\"sold\"}",
     .error = "/sales/0/status|open or freed"},
    {.extra = "{\"order_type\":\"preorder\"}", .error = "/sales/0/order_type|must be one of"},
    {.extra = "{\"order_type\":\"refund\"}", .error = "/sales/0/refund_of|required for a refund"},
    {.extra = "{\"order_type\":\"sale\",\"refund_of\":\"A0\"}",
     .error = "/sales/0/refund_of|only a refund"},
    {.extra = "{\"expires_at\":\"2025-05-01T12:00:00Z\"}",
     .error = "/sales/0/expires_at|only a reservation"},
    {.extra = "{\"order_type\":\"option\",\"expires_at\":\"tomorrow\"}",
     .error = "/sales/0/expires_at|RFC 3339"},
    {.extra = "{\"order_type\":\"abandoned\",\"refunded_quantity\":1}",
     .error = "/sales/0/refunded_quantity|only a sale"},
    {.extra = "{\"attended_quantity\":3}",
     .error = "/sales/0/attended_quantity|must not exceed quantity"},
    {.extra = "{\"attended_quantity\":-1}",
     .error = "/sales/0/attended_quantity|must be 0 or more"},
    {.extra = "{\"status_changed_at\":\"2025-02-30T10:00:00Z\"}",
     .error = "/sales/0/status_changed_at|RFC 3339"},
};

static void test_record_fields(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(rec_cases) / sizeof(*rec_cases); i++) {
        const struct rec_case *c = &rec_cases[i];
        struct sd_issues errors;
        sd_issues_init(&errors, SD_MAX_ISSUES);
        struct sd_sale_rec rec = {0};
        int r = validate(c->extra, &rec, &errors);
        if (c->error) {
            const char *bar = strchr(c->error, '|');
            if (r != -EINVAL || errors.n != 1 ||
                strncmp(errors.items[0].pointer, c->error, (size_t)(bar - c->error)) != 0 ||
                strlen(errors.items[0].pointer) != (size_t)(bar - c->error) ||
                !strstr(errors.items[0].message, bar + 1)) {
                fail_msg("case %zu %s: got %d, %zu errors, first '%s' %s", i, c->extra, r, errors.n,
                         errors.n ? errors.items[0].pointer : "",
                         errors.n ? errors.items[0].message : "");
            }
        } else {
            if (r != 0) {
                fail_msg("case %zu %s: refused: %s %s", i, c->extra,
                         errors.n ? errors.items[0].pointer : "",
                         errors.n ? errors.items[0].message : "");
            }
            assert_int_equal(rec.state.order_type, c->type);
            assert_int_equal(rec.state.status, c->status);
            assert_int_equal(rec.state.refunded_quantity, c->refunded_quantity);
            assert_int_equal(rec.state.refunded_minor, c->refunded_minor);
            assert_int_equal(rec.net_quantity, c->net_quantity);
            assert_int_equal(rec.net_minor, c->net_minor);
            assert_int_equal(rec.state.total_minor, 8000);
        }
        sd_sale_rec_release(&rec);
        sd_issues_release(&errors);
    }
}

/* An old body is stored as sent: no lifecycle member is added to the document. */
static void test_old_body_doc_unchanged(void **state)
{
    (void)state;
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    struct sd_sale_rec rec = {0};
    assert_int_equal(validate("{}", &rec, &errors), 0);
    assert_null(strstr(rec.doc, "status"));
    assert_null(strstr(rec.doc, "order_type"));
    assert_null(rec.status_changed_at);
    assert_null(rec.expires_at);
    assert_null(rec.refund_of);
    assert_int_equal(rec.attended_quantity, -1);
    sd_sale_rec_release(&rec);
    /* the new date-times are normalized to UTC like purchase_datetime */
    assert_int_equal(validate("{\"order_type\":\"reservation\",\"expires_at\":"
                              "\"2025-05-01T12:00:00+02:00\"}",
                              &rec, &errors),
                     0);
    assert_string_equal(rec.expires_at, "2025-05-01T10:00:00Z");
    assert_non_null(strstr(rec.doc, "\"expires_at\":\"2025-05-01T10:00:00Z\""));
    sd_sale_rec_release(&rec);
    sd_issues_release(&errors);
}

static struct sd_sale_state sale(enum sd_sale_status st, int64_t q, int64_t total, int64_t rq,
                                 int64_t rm)
{
    return (struct sd_sale_state){SD_ORDER_SALE, st, q, total, rq, rm, "EUR"};
}

static void test_partial_refunds(void **state)
{
    (void)state;
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    struct sd_sale_state s = sale(SD_STATUS_SOLD, 2, 8000, 0, 0);
    assert_int_equal(sd_sale_refund_apply(&s, "A1", 1, 4000, "EUR", "/sales/1", &errors), 0);
    assert_int_equal(s.status, SD_STATUS_REFUNDED);
    assert_false(sd_sale_wholly_refunded(&s));
    assert_int_equal(sd_sale_net_quantity(&s), 1);
    assert_int_equal(sd_sale_net_minor(&s), 4000);
    /* the second half makes it refunded wholly */
    assert_int_equal(sd_sale_refund_apply(&s, "A1", 1, 4000, "EUR", "/sales/2", &errors), 0);
    assert_true(sd_sale_wholly_refunded(&s));
    assert_int_equal(sd_sale_net_quantity(&s), 0);
    assert_int_equal(sd_sale_net_minor(&s), 0);
    assert_int_equal(errors.total, 0);
    /* a third exceeds what was sold: refused, state untouched */
    struct sd_sale_state before = s;
    assert_int_equal(sd_sale_refund_apply(&s, "A1", 1, 0, "EUR", "/sales/3", &errors), -EINVAL);
    assert_int_equal(errors.total, 1);
    assert_string_equal(errors.items[0].pointer, "/sales/3/quantity");
    assert_non_null(strstr(errors.items[0].message, "2 of the 2 tickets of sale 'A1'"));
    assert_memory_equal(&s, &before, sizeof(s));
    /* an amount beyond what is left, alone */
    struct sd_sale_state t = sale(SD_STATUS_SOLD, 2, 8000, 0, 0);
    assert_int_equal(sd_sale_refund_apply(&t, "A2", 1, 8001, "EUR", "", &errors), -EINVAL);
    assert_string_equal(errors.items[1].pointer, "/sales_price");
    /* another currency */
    assert_int_equal(sd_sale_refund_apply(&t, "A2", 1, 100, "CHF", "", &errors), -EINVAL);
    assert_string_equal(errors.items[2].pointer, "/currency");
    /* a cancelled sale is not refunded */
    struct sd_sale_state c = sale(SD_STATUS_CANCELLED, 2, 8000, 0, 0);
    assert_int_equal(sd_sale_refund_apply(&c, "A3", 1, 4000, "EUR", "", &errors), -EINVAL);
    assert_string_equal(errors.items[3].pointer, "/refund_of");
    assert_non_null(strstr(errors.items[3].message, "is cancelled: it cannot be refunded"));
    /* nor a reservation */
    struct sd_sale_state r = sale(SD_STATUS_OPEN, 2, 8000, 0, 0);
    r.order_type = SD_ORDER_RESERVATION;
    assert_int_equal(sd_sale_refund_apply(&r, "A4", 1, 4000, "EUR", "", &errors), -EINVAL);
    assert_non_null(strstr(errors.items[4].message, "not a sale"));
    sd_issues_release(&errors);
}

struct tr_case {
    struct sd_sale_state old, next;
    const char *error; /* field, or NULL: allowed */
};

static void test_transitions(void **state)
{
    (void)state;
    struct sd_sale_state res_open = {SD_ORDER_RESERVATION, SD_STATUS_OPEN, 2, 8000, 0, 0, "EUR"};
    struct sd_sale_state res_freed = res_open;
    res_freed.status = SD_STATUS_FREED;
    struct sd_sale_state refund = {SD_ORDER_REFUND, SD_STATUS_APPLIED, 1, 4000, 0, 0, "EUR"};
    struct sd_sale_state refund2 = refund;
    refund2.quantity = 2;
    const struct tr_case cases[] = {
        {sale(SD_STATUS_SOLD, 2, 8000, 0, 0), sale(SD_STATUS_SOLD, 3, 12000, 0, 0), NULL},
        {sale(SD_STATUS_SOLD, 2, 8000, 0, 0), sale(SD_STATUS_REFUNDED, 2, 8000, 1, 4000), NULL},
        {sale(SD_STATUS_SOLD, 2, 8000, 0, 0), sale(SD_STATUS_CANCELLED, 2, 8000, 0, 0), NULL},
        {sale(SD_STATUS_SOLD, 2, 8000, 0, 0), sale(SD_STATUS_EXCHANGED, 2, 8000, 0, 0), NULL},
        {sale(SD_STATUS_REFUNDED, 2, 8000, 1, 4000), sale(SD_STATUS_REFUNDED, 2, 8000, 2, 8000),
         NULL},
        {sale(SD_STATUS_REFUNDED, 2, 8000, 1, 4000), sale(SD_STATUS_CANCELLED, 2, 8000, 1, 4000),
         NULL},
        {sale(SD_STATUS_REFUNDED, 2, 8000, 1, 4000), sale(SD_STATUS_SOLD, 2, 8000, 0, 0),
         "/status"},
        {sale(SD_STATUS_REFUNDED, 2, 8000, 2, 8000), sale(SD_STATUS_REFUNDED, 2, 8000, 1, 4000),
         "/refunded_quantity"},
        {sale(SD_STATUS_REFUNDED, 2, 8000, 1, 4000), sale(SD_STATUS_REFUNDED, 2, 8000, 1, 3000),
         "/refunded_amount"},
        {sale(SD_STATUS_REFUNDED, 2, 8000, 2, 8000), sale(SD_STATUS_REFUNDED, 2, 8000, 2, 8000),
         NULL},
        {sale(SD_STATUS_REFUNDED, 2, 8000, 2, 8000), sale(SD_STATUS_CANCELLED, 2, 8000, 2, 8000),
         "/status"},
        /* refunding a cancelled sale, un-cancelling, re-selling an exchanged one */
        {sale(SD_STATUS_CANCELLED, 2, 8000, 0, 0), sale(SD_STATUS_REFUNDED, 2, 8000, 2, 8000),
         "/status"},
        {sale(SD_STATUS_CANCELLED, 2, 8000, 0, 0), sale(SD_STATUS_SOLD, 2, 8000, 0, 0), "/status"},
        {sale(SD_STATUS_CANCELLED, 2, 8000, 0, 0), sale(SD_STATUS_CANCELLED, 2, 8000, 0, 0), NULL},
        {sale(SD_STATUS_EXCHANGED, 2, 8000, 0, 0), sale(SD_STATUS_SOLD, 2, 8000, 0, 0), "/status"},
        /* order types */
        {res_open, sale(SD_STATUS_SOLD, 2, 8000, 0, 0), NULL},
        {res_open, res_freed, NULL},
        {res_freed, res_open, "/status"},
        {sale(SD_STATUS_SOLD, 2, 8000, 0, 0), res_open, "/order_type"},
        {sale(SD_STATUS_SOLD, 2, 8000, 0, 0), refund, "/order_type"},
        {refund, refund, NULL},
        {refund, refund2, "/quantity"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        struct sd_issues errors;
        sd_issues_init(&errors, SD_MAX_ISSUES);
        int r = sd_sale_transition_check(&cases[i].old, &cases[i].next, "", &errors);
        if (cases[i].error) {
            if (r != -EINVAL || errors.total != 1 ||
                strcmp(errors.items[0].pointer, cases[i].error) != 0) {
                fail_msg("case %zu: got %d, %zu errors '%s'", i, r, errors.total,
                         errors.n ? errors.items[0].pointer : "");
            }
        } else if (r != 0) {
            fail_msg("case %zu: refused: %s %s", i, errors.items[0].pointer,
                     errors.items[0].message);
        }
        sd_issues_release(&errors);
    }
}

static void test_money_units(void **state)
{
    (void)state;
    struct {
        int64_t amount;
        int scale, minor;
        int r;
        int64_t want;
    } cases[] = {
        {40000, 3, 2, 0, 4000},     /* S-360: 40.000 EUR */
        {0, 3, 2, 0, 0},            /* zero */
        {40005, 3, 2, -EINVAL, 0},  /* 40.005 EUR: no whole cent, never rounded */
        {40010, 3, 2, 0, 4001},     /* 40.010 */
        {-40000, 3, 2, 0, -4000},   /* a negative amount converts exactly too */
        {-40005, 3, 2, -EINVAL, 0}, /* and is refused likewise */
        {40000, 3, 0, 0, 40},       /* JPY: 40 */
        {40500, 3, 0, -EINVAL, 0},  /* 40.5 JPY does not exist */
        {40005, 3, 3, 0, 40005},    /* KWD has three places: identity */
        {40005, 2, 3, 0, 400050},   /* hundredths into KWD */
        {7, 0, 4, 0, 70000},        /* CLF, four places */
        {INT64_MAX, 3, 3, 0, INT64_MAX},
        {INT64_MAX, 3, 2, -EINVAL, 0}, /* ...807 has a last digit */
        {INT64_MAX - 7, 3, 2, 0, (INT64_MAX - 7) / 10},
        {INT64_MAX / 10 + 1, 2, 3, -ERANGE, 0},
        {INT64_MAX / 10, 2, 3, 0, INT64_MAX / 10 * 10},
        {INT64_MIN, 0, 1, -ERANGE, 0},
        {1, 19, 2, -EINVAL, 0}, /* unknown unit */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        int64_t got = 12345;
        const char *why = NULL;
        int r =
            sd_money_scaled_to_minor(cases[i].amount, cases[i].scale, cases[i].minor, &got, &why);
        if (r != cases[i].r || (r == 0 && got != cases[i].want) || (r < 0 && !why) ||
            (r < 0 && got != 12345)) {
            fail_msg("case %zu: r %d got %lld", i, r, (long long)got);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_fields),   cmocka_unit_test(test_old_body_doc_unchanged),
        cmocka_unit_test(test_partial_refunds), cmocka_unit_test(test_transitions),
        cmocka_unit_test(test_money_units),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
