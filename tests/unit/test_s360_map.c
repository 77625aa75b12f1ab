/* test_s360_map.c — the s360 connector's inbound mapping (connectors/s360/s360.h): S-360
 * contact and order webhook objects into the model's customers, events and sales, checked
 * edge case by edge case; every body mapped is also checked by the model's validator. The last
 * tests go through the door's prepare step (core/inbound.h) with the stream kept in the
 * payload's headers, as the door and replay do. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/base.h"
#include "connectors/s360/s360.h"
#include "core/inbound.h"
#include "model/model.h"

extern const struct sd_connector sd_connector_s360; /* connectors/registry.c's table entry */

static struct s360_conf conf(void)
{
    return (struct s360_conf){
        .institution = "myvenue",
        .time_zone = "Europe/Zurich",
        .history_from = "",
        .abandoned_states = "ABANDONED, CANCELLED_BASKET",
        .optin_authorizations = "NEWSLETTER,PARTNERS",
        .event_venue = "",
        .event_hall = "main",
        .event_city = "Zürich",
        .access_ok_results = "ACCEPTED",
    };
}

/* Map one object (JSON text) of a stream; returns the result, body in *ret (new). */
static int map(const struct s360_conf *cf, const char *stream, const char *text, json_t **ret,
               struct sd_issues *issues)
{
    json_error_t jerr;
    json_t *o = json_loads(text, 0, &jerr);
    assert_non_null(o);
    json_t *body = json_object();
    int r = s360_map_object(cf, stream, o, body, issues);
    json_decref(o);
    *ret = body;
    return r;
}

/* The body (without remote_version) is a valid ingest body. */
static void assert_valid(json_t *body)
{
    json_t *copy = json_deep_copy(body);
    json_object_del(copy, "remote_version");
    struct sd_batch b = {0};
    struct sd_issues errors, warnings;
    sd_issues_init(&errors, 8);
    sd_issues_init(&warnings, 64);
    /* as core validates the type's records: customers may come without an e-mail */
    unsigned flags = sd_connector_s360.customers_email_optional ? SD_VALIDATE_EMAIL_OPTIONAL : 0;
    int r = sd_validate_ingest_flags(copy, flags, &b, &errors, &warnings);
    if (r != 0) {
        fail_msg("invalid body: %s %s", errors.n ? errors.items[0].pointer : "",
                 errors.n ? errors.items[0].message : "");
    }
    sd_batch_release(&b);
    sd_issues_release(&errors);
    sd_issues_release(&warnings);
    json_decref(copy);
}

static const json_t *sale(const json_t *body, size_t i)
{
    return json_array_get(json_object_get(body, "sales"), i);
}

static const char *str(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

#define ORDER(id, type, state, extra, lines)                                                       \
    "{\"orderDetailsData\": {\"orderId\": " id ", \"orderType\": \"" type                          \
    "\", \"orderState\": \"" state "\", \"contactReference\": \"0000001234\", "                    \
    "\"creationDateTime\": \"2026-03-29T10:15:00.250+02:00\", "                                    \
    "\"referenceDate\": \"2026-03-28T23:00:00.000+00:00\", "                                       \
    "\"catalogCurrency\": {\"currencyCode\": \"CHF\", \"fractionDigit\": 2}" extra                 \
    ", \"operationDatas\": [" lines "]}}"
#define LINE(op, qty, price)                                                                       \
    "{\"operationId\": " op ", \"kind\": \"SINGLE_ENTRY\", \"quantity\": " qty                     \
    ", \"basePrice\": 120000, \"unitPrice\": " price ", \"productId\": 10226000000001, "           \
    "\"product\": \"Tosca\", \"performanceId\": 10228000000007, "                                  \
    "\"performance\": \"Tosca — 12.04.2026 19:30\", \"eventId\": 10227000000000}"

/* An orderId past 2^53 keeps every digit; the same id as a floating-point number is refused. */
static void test_int64_ids(void **state)
{
    (void)state;
    struct s360_conf cf = conf();
    struct sd_issues is;
    sd_issues_init(&is, 8);
    json_t *body;
    assert_int_equal(
        map(&cf, "orders",
            ORDER("9007199254740993", "SALE", "CLOSED", "", LINE("20000000000001", "2", "40000")),
            &body, &is),
        0);
    assert_string_equal(str(sale(body, 0), "invoice_number"), "9007199254740993-20000000000001");
    assert_string_equal(str(sale(body, 0), "order_id"), "9007199254740993");
    assert_string_equal(str(sale(body, 0), "event_id"), "10228000000007");
    assert_valid(body);
    json_decref(body);
    assert_int_equal(map(&cf, "orders",
                         ORDER("9007199254740993.0", "SALE", "CLOSED", "", LINE("2", "1", "1000")),
                         &body, &is),
                     -EINVAL);
    assert_string_equal(is.items[0].pointer, "/orderDetailsData/orderId");
    assert_non_null(strstr(is.items[0].message, "floating-point"));
    json_decref(body);
    sd_issues_release(&is);
}

/* Thousandths convert exactly to the currency's minor unit; a fraction of a cent is refused. */
static void test_thousandths(void **state)
{
    (void)state;
    struct s360_conf cf = conf();
    struct sd_issues is;
    sd_issues_init(&is, 8);
    json_t *body;
    assert_int_equal(
        map(&cf, "orders", ORDER("1", "SALE", "CLOSED", "", LINE("2", "3", "42500")), &body, &is),
        0);
    assert_string_equal(str(sale(body, 0), "sales_price"), "42.50");
    assert_string_equal(str(sale(body, 0), "base_price"), "120.00");
    assert_int_equal(json_integer_value(json_object_get(sale(body, 0), "quantity")), 3);
    json_decref(body);
    assert_int_equal(
        map(&cf, "orders", ORDER("1", "SALE", "CLOSED", "", LINE("2", "1", "40005")), &body, &is),
        -EINVAL);
    assert_string_equal(is.items[0].pointer, "/orderDetailsData/operationDatas/0/unitPrice");
    json_decref(body);
    sd_issues_release(&is);
}

/* referenceDate is the local midnight written in UTC: 23:00Z before the spring change is the
 * next local day (CET), 22:00Z after it too (CEST); the performance label gives the event's
 * local date and time. */
static void test_dst_reference_date(void **state)
{
    (void)state;
    struct s360_conf cf = conf();
    struct sd_issues is;
    sd_issues_init(&is, 8);
    json_t *body;
    assert_int_equal(
        map(&cf, "orders", ORDER("1", "SALE", "CLOSED", "", LINE("2", "1", "1000")), &body, &is),
        0);
    assert_string_equal(str(sale(body, 0), "reference_date"), "2026-03-29");
    assert_string_equal(str(sale(body, 0), "purchase_datetime"), "2026-03-29T08:15:00.250Z");
    const json_t *ev = json_array_get(json_object_get(body, "events"), 0);
    assert_string_equal(str(ev, "date"), "2026-04-12");
    assert_string_equal(str(ev, "time"), "19:30:00");
    assert_string_equal(str(ev, "venue"), "myvenue");
    json_decref(body);
    const char *after =
        "{\"orderDetailsData\": {\"orderId\": 5, \"orderType\": \"SALE\", \"orderState\": "
        "\"CLOSED\", \"contactReference\": \"7\", \"creationDateTime\": "
        "\"2026-03-30T08:00:00.000+02:00\", \"referenceDate\": \"2026-03-29T22:00:00.000+00:00\", "
        "\"catalogCurrency\": {\"currencyCode\": \"CHF\"}, \"operationDatas\": [{\"operationId\": "
        "6, \"quantity\": 1, \"unitPrice\": 1000, \"performanceId\": 8, "
        "\"performanceStartDateTime\": \"2026-10-25T02:30:00.000+01:00\"}]}}";
    assert_int_equal(map(&cf, "orders", after, &body, &is), 0);
    assert_string_equal(str(sale(body, 0), "reference_date"), "2026-03-30");
    ev = json_array_get(json_object_get(body, "events"), 0);
    /* 02:30 in the hour that happens twice, the second time (+01:00) */
    assert_string_equal(str(ev, "date"), "2026-10-25");
    assert_string_equal(str(ev, "time"), "02:30:00");
    assert_valid(body);
    json_decref(body);
    sd_issues_release(&is);
}

/* CLOSED is a finished order, a configured abandoned state an abandoned basket, any other state
 * is kept as order_state without refusing the order. */
static void test_states(void **state)
{
    (void)state;
    struct s360_conf cf = conf();
    struct sd_issues is;
    sd_issues_init(&is, 8);
    json_t *body;
    assert_int_equal(map(&cf, "orders",
                         ORDER("1", "SALE", "PENDING_PAYMENT", "", LINE("2", "1", "1000")), &body,
                         &is),
                     0);
    assert_string_equal(str(sale(body, 0), "order_type"), "sale");
    assert_string_equal(str(sale(body, 0), "order_state"), "PENDING_PAYMENT");
    assert_valid(body);
    json_decref(body);
    assert_int_equal(map(&cf, "orders",
                         ORDER("1", "SALE", "CANCELLED_BASKET", "", LINE("2", "1", "1000")), &body,
                         &is),
                     0);
    assert_string_equal(str(sale(body, 0), "order_type"), "abandoned");
    assert_valid(body);
    json_decref(body);
    /* an unknown order type is quarantined with the reason */
    assert_int_equal(
        map(&cf, "orders", ORDER("1", "GIFT", "CLOSED", "", LINE("2", "1", "1000")), &body, &is),
        -EINVAL);
    assert_string_equal(is.items[is.n - 1].pointer, "/orderDetailsData/orderType");
    json_decref(body);
    sd_issues_release(&is);
}

/* Refunds, exchanges, reservations and freeings follow the lifecycle. */
static void test_lifecycle(void **state)
{
    (void)state;
    struct s360_conf cf = conf();
    struct sd_issues is;
    sd_issues_init(&is, 8);
    json_t *body;
    assert_int_equal(map(&cf, "orders",
                         ORDER("30", "REFUND_CLIENT", "CLOSED", ", \"originalOrderId\": 10",
                               "{\"operationId\": 31, \"originalOperationId\": 11, \"quantity\": "
                               "-2, \"unitPrice\": 40000, \"performanceId\": 8, \"performance\": "
                               "\"X — 01.05.2026 20:00\"}"),
                         &body, &is),
                     0);
    assert_string_equal(str(sale(body, 0), "order_type"), "refund");
    assert_string_equal(str(sale(body, 0), "refund_of"), "10-11");
    assert_int_equal(json_integer_value(json_object_get(sale(body, 0), "quantity")), 2);
    assert_valid(body);
    json_decref(body);
    /* an exchange: the returned line is a refund, the new line a sale */
    assert_int_equal(map(&cf, "orders",
                         ORDER("40", "EXCHANGE_CLIENT", "CLOSED", ", \"originalOrderId\": 10",
                               "{\"operationId\": 41, \"originalOperationId\": 11, \"quantity\": "
                               "-1, \"unitPrice\": 40000, \"performanceId\": 8, \"performance\": "
                               "\"X — 01.05.2026 20:00\"}," LINE("42", "1", "45000")),
                         &body, &is),
                     0);
    assert_string_equal(str(sale(body, 0), "order_type"), "refund");
    assert_string_equal(str(sale(body, 1), "order_type"), "sale");
    assert_string_equal(str(sale(body, 1), "invoice_number"), "40-42");
    assert_valid(body);
    json_decref(body);
    /* a refund line that does not say which line it undoes is quarantined */
    assert_int_equal(map(&cf, "orders",
                         ORDER("30", "REFUND_CLIENT", "CLOSED", ", \"originalOrderId\": 10",
                               LINE("31", "-1", "1000")),
                         &body, &is),
                     -EINVAL);
    assert_string_equal(is.items[is.n - 1].pointer,
                        "/orderDetailsData/operationDatas/0/originalOperationId");
    json_decref(body);
    /* a reservation with its expiry; its freeing frees the original line */
    assert_int_equal(map(&cf, "orders",
                         ORDER("50", "RESERVATION", "CLOSED",
                               ", \"expirationDate\": \"2026-04-05T10:15:00.000+02:00\"",
                               LINE("51", "2", "1000")),
                         &body, &is),
                     0);
    assert_string_equal(str(sale(body, 0), "order_type"), "reservation");
    assert_string_equal(str(sale(body, 0), "expires_at"), "2026-04-05T08:15:00.000Z");
    assert_valid(body);
    json_decref(body);
    assert_int_equal(map(&cf, "orders",
                         ORDER("60", "RESERVATION_FREEING", "CLOSED", ", \"originalOrderId\": 50",
                               "{\"operationId\": 61, \"originalOperationId\": 51, \"quantity\": "
                               "-2, \"unitPrice\": 1000, \"performanceId\": 8, \"performance\": "
                               "\"X — 01.05.2026 20:00\"}"),
                         &body, &is),
                     0);
    assert_string_equal(str(sale(body, 0), "invoice_number"), "50-51");
    assert_string_equal(str(sale(body, 0), "status"), "freed");
    assert_string_equal(str(sale(body, 0), "order_id"), "50");
    assert_string_equal(str(sale(body, 0), "freed_by_order_id"), "60");
    assert_valid(body);
    json_decref(body);
    /* goods only: nothing the model keeps, acknowledged */
    assert_int_equal(map(&cf, "orders",
                         ORDER("70", "SALE", "CLOSED", "",
                               "{\"operationId\": 71, \"kind\": \"GOODS\", \"quantity\": 1, "
                               "\"unitPrice\": 8000}"),
                         &body, &is),
                     SD_INBOUND_SKIP);
    json_decref(body);
    sd_issues_release(&is);
}

#define CONTACT(num, email, who, auth)                                                             \
    "{\"contactId\": 700000000001, \"contactNumber\": \"" num "\", "                               \
    "\"lastUpdateDate\": \"2026-03-29T10:15:00.250+02:00\", " who ", \"addresses\": "              \
    "[{\"isMain\": false, \"street1\": \"Old 1\", \"zipCode\": \"1000\"}, {\"isMain\": true, "     \
    "\"street1\": \"Seestrasse 5\", \"zipCode\": \"8001\", \"town\": \"Zürich\", "                \
    "\"countryCode\": \"CH\"}], \"communicationMeans\": [{\"type\": \"MOBILE\", \"value\": "       \
    "\"+41 79 000 00 00\"}, {\"type\": \"EMAIL\", \"value\": \"" email "\", \"isMain\": true}], "  \
    "\"authorizations\": [" auth "], \"unknownExtra\": {\"x\": 1}}"
#define PERSON                                                                                     \
    "\"individualContact\": {\"title\": \"MRS\", \"firstName\": \"Zoë\", \"lastName\": "          \
    "\"Müller\"}"

/* Contacts: the contact number as sent (leading zeros), never keyed by e-mail (two contacts
 * sharing one address are two customers), the main address, phones, consent (opt-out wins),
 * the last change as remote_version; a company; a contact without e-mail is a customer with
 * e-mail null, valid for the type (and refused by the hub's own contract). */
static void test_contacts(void **state)
{
    (void)state;
    struct s360_conf cf = conf();
    struct sd_issues is;
    sd_issues_init(&is, 8);
    json_t *a, *b;
    assert_int_equal(map(&cf, "contacts",
                         CONTACT("0000001234", "fam@example.ch", PERSON,
                                 "{\"authorizationType\": \"NEWSLETTER\", \"value\": true}"),
                         &a, &is),
                     0);
    assert_int_equal(map(&cf, "contacts",
                         CONTACT("0000001235", "fam@example.ch", PERSON,
                                 "{\"authorizationType\": \"NEWSLETTER\", \"value\": true}, "
                                 "{\"authorizationType\": \"PARTNERS\", \"value\": false}"),
                         &b, &is),
                     0);
    const json_t *ca = json_array_get(json_object_get(a, "customers"), 0);
    const json_t *cb = json_array_get(json_object_get(b, "customers"), 0);
    assert_string_equal(str(ca, "customer_id"), "0000001234");
    assert_string_equal(str(cb, "customer_id"), "0000001235");
    assert_string_equal(str(ca, "email"), str(cb, "email"));
    assert_string_equal(str(ca, "street"), "Seestrasse 5");
    assert_string_equal(str(ca, "post_code"), "8001");
    assert_string_equal(str(ca, "first_name"), "Zoë");
    assert_string_equal(str(ca, "contact_type"), "person");
    assert_false(json_is_true(json_object_get(ca, "ad_opt_out")));
    assert_true(json_is_true(json_object_get(cb, "ad_opt_out"))); /* opt-out wins */
    assert_string_equal(str(json_array_get(json_object_get(ca, "phones"), 0), "type"), "MOBILE");
    /* 2026-03-29T08:15:00.250Z in ms */
    assert_int_equal(json_integer_value(json_object_get(a, "remote_version")), 1774772100250LL);
    assert_valid(a);
    assert_valid(b);
    json_decref(a);
    json_decref(b);
    assert_int_equal(map(&cf, "contacts",
                         CONTACT("42", "info@helvetia.example",
                                 "\"structureContact\": {\"name\": \"Helvetia Events AG\", "
                                 "\"vatNumber\": \"CHE-1\"}",
                                 ""),
                         &a, &is),
                     0);
    ca = json_array_get(json_object_get(a, "customers"), 0);
    assert_string_equal(str(ca, "contact_type"), "company");
    assert_string_equal(str(ca, "company"), "Helvetia Events AG");
    assert_null(json_object_get(ca, "ad_opt_out")); /* no consent given either way */
    assert_valid(a);
    json_decref(a);
    const char *no_mail = "{\"contactNumber\": \"9\", \"individualContact\": {\"lastName\": "
                          "\"X\"}, \"communicationMeans\": [{\"type\": \"PHONE\", \"value\": "
                          "\"1\"}]}";
    size_t issues0 = is.total;
    assert_int_equal(map(&cf, "contacts", no_mail, &a, &is), 0);
    assert_int_equal(is.total, issues0);
    ca = json_array_get(json_object_get(a, "customers"), 0);
    assert_string_equal(str(ca, "customer_id"), "9");
    assert_true(json_is_null(json_object_get(ca, "email")));
    assert_string_equal(str(json_array_get(json_object_get(ca, "phones"), 0), "number"), "1");
    assert_valid(a);
    struct sd_batch nb = {0};
    struct sd_issues ne, nw;
    sd_issues_init(&ne, 8);
    sd_issues_init(&nw, 8);
    json_object_del(a, "remote_version");
    assert_int_equal(sd_validate_ingest(a, &nb, &ne, &nw), -EINVAL); /* the webhook's contract */
    assert_string_equal(ne.items[0].pointer, "/customers/0/email");
    sd_issues_release(&ne);
    sd_issues_release(&nw);
    json_decref(a);
    sd_issues_release(&is);
}

/* history_from: a contact changed and an order created before the local day are skipped. */
static void test_history_from(void **state)
{
    (void)state;
    struct s360_conf cf = conf();
    cf.history_from = "2026-03-30";
    struct sd_issues is;
    sd_issues_init(&is, 8);
    json_t *body;
    assert_int_equal(
        map(&cf, "orders", ORDER("1", "SALE", "CLOSED", "", LINE("2", "1", "1000")), &body, &is),
        SD_INBOUND_SKIP);
    json_decref(body);
    assert_int_equal(map(&cf, "contacts", CONTACT("1", "a@example.ch", PERSON, ""), &body, &is),
                     SD_INBOUND_SKIP);
    json_decref(body);
    cf.history_from = "2026-03-29"; /* local midnight 2026-03-28T23:00Z: both are after it */
    assert_int_equal(
        map(&cf, "orders", ORDER("1", "SALE", "CLOSED", "", LINE("2", "1", "1000")), &body, &is),
        0);
    json_decref(body);
    assert_int_equal(is.total, 0);
    sd_issues_release(&is);
}

/* Access control: a scan names its sale line by order and operation; the field names are a
 * setting; a refused entry is acknowledged without storing; with attendance, sales start at 0. */
static void test_access(void **state)
{
    (void)state;
    struct s360_conf cf = conf();
    cf.access_fields = "scan_id=controlId,order=orderId,operation=operationId,"
                       "time=controlDateTime,gate=accessPoint,result=result";
    struct sd_issues is;
    sd_issues_init(&is, 8);
    json_t *body;
    const char *scan = "{\"controlId\": 500123, \"ticketBarcode\": \"TOSCA1\", \"orderId\": "
                       "9007199254740993, \"operationId\": 20000000000001, \"performanceId\": 8, "
                       "\"controlDateTime\": \"2026-04-12T19:02:00.000+02:00\", \"accessPoint\": "
                       "\"Gate B\", \"result\": \"ACCEPTED\"}";
    assert_int_equal(map(&cf, "access", scan, &body, &is), 0);
    const json_t *sc = json_array_get(json_object_get(body, "scans"), 0);
    assert_string_equal(str(sc, "invoice_number"), "9007199254740993-20000000000001");
    assert_string_equal(str(sc, "scan_id"), "500123");
    assert_string_equal(str(sc, "scanned_at"), "2026-04-12T17:02:00.000Z");
    assert_string_equal(str(sc, "gate"), "Gate B");
    json_decref(body);
    const char *refused = "{\"controlId\": 1, \"orderId\": 2, \"operationId\": 3, \"result\": "
                          "\"REFUSED\"}";
    assert_int_equal(map(&cf, "access", refused, &body, &is), SD_INBOUND_SKIP);
    json_decref(body);
    cf.access_fields = "scan_id=checkId, order=order, operation=line";
    const char *renamed = "{\"checkId\": \"c-1\", \"order\": 2, \"line\": 3}";
    assert_int_equal(map(&cf, "access", renamed, &body, &is), 0);
    sc = json_array_get(json_object_get(body, "scans"), 0);
    assert_string_equal(str(sc, "invoice_number"), "2-3");
    assert_string_equal(str(sc, "scan_id"), "c-1");
    json_decref(body);
    assert_int_equal(is.total, 0);
    assert_int_equal(map(&cf, "access", "{\"order\": 2}", &body, &is), -EINVAL);
    json_decref(body);
    cf.access_fields = "seat=x";
    assert_int_equal(map(&cf, "access", renamed, &body, &is), -EINVAL);
    json_decref(body);
    /* attendance reported: a sale starts at 0 attended, other order types carry nothing */
    cf.attendance = true;
    assert_int_equal(
        map(&cf, "orders", ORDER("1", "SALE", "CLOSED", "", LINE("2", "1", "1000")), &body, &is),
        0);
    assert_int_equal(json_integer_value(json_object_get(sale(body, 0), "attended_quantity")), 0);
    assert_valid(body);
    json_decref(body);
    assert_int_equal(map(&cf, "orders",
                         ORDER("1", "RESERVATION", "CLOSED", "", LINE("2", "1", "1000")), &body,
                         &is),
                     0);
    assert_null(json_object_get(sale(body, 0), "attended_quantity"));
    assert_valid(body);
    json_decref(body);
    sd_issues_release(&is);
}

/* Through the door's prepare step: the stream kept in the headers chooses the mapping, an
 * object of the orders stream sent to the contacts stream is quarantined with the reason, and
 * a skipped object is neither applied nor quarantined. */
static void test_door_streams(void **state)
{
    (void)state;
    struct sd_connector_conf c = {
        .id = "con_0000000000000001",
        .tenant_id = 1,
        .type = "s360",
        .schedule = "manual",
        .settings = "{\"institution\": \"myvenue\", \"api_base\": \"https://x.example\", "
                    "\"event_city\": \"Zürich\", \"push_contacts\": false, \"history_from\": "
                    "\"2026-03-30\"}",
        .mapping = "{}",
    };
    const char *body = "[" CONTACT("0000001234", "a@example.ch", PERSON, "") ", " ORDER(
        "1", "SALE", "CLOSED", "", LINE("2", "1", "1000")) "]";
    struct sd_inbound_payload *p = NULL;
    const char *why = NULL;
    assert_int_equal(sd_inbound_prepare(&c, body, strlen(body),
                                        json_pack("{s:s}", "stream", "contacts"), 0, &p, &why),
                     0);
    assert_int_equal(sd_inbound_payload_count(p), 2);
    assert_null(sd_inbound_payload_reason(p, 0)); /* skipped (history), no reason */
    assert_non_null(strstr(sd_inbound_payload_reason(p, 1), "contactNumber"));
    sd_inbound_payload_free(p);
    assert_int_equal(sd_inbound_prepare(&c, body, strlen(body), json_object(), 0, &p, &why), 0);
    assert_non_null(strstr(sd_inbound_payload_reason(p, 0), "has no mapping"));
    sd_inbound_payload_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_int64_ids),          cmocka_unit_test(test_thousandths),
        cmocka_unit_test(test_dst_reference_date), cmocka_unit_test(test_states),
        cmocka_unit_test(test_lifecycle),          cmocka_unit_test(test_contacts),
        cmocka_unit_test(test_history_from),       cmocka_unit_test(test_access),
        cmocka_unit_test(test_door_streams),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
