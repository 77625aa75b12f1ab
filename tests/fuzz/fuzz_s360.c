/* fuzz_s360.c — fuzz target for the s360 connector's inbound mapping of all three streams
 * (contacts, orders, access), through the whole door path that runs before the store: the
 * payload split into objects, each mapped by the connector with the stream kept in the
 * payload's headers, and validated (core/inbound.c's prepare), and each object again through
 * s360_map_object directly.
 *
 * Input: one byte choosing the stream (bits 0-1) and the instance's settings (bits 2-3), then
 * the body. Besides "no crash, no leak" (ASan/LSan) it aborts when a promise breaks:
 *  - prepare answers 0, or -E2BIG with a reason; one item per array element, else one;
 *  - every quarantine reason is non-empty, valid UTF-8, at most 480 bytes;
 *  - the mapping answers 0, SD_INBOUND_SKIP or -EINVAL, and -EINVAL always with a reason;
 *  - a mapped order line's invoice is "<orderId>-<operationId>" with the ids' exact digits,
 *    its quantity positive, its prices decimal text; a mapped contact's customer_id is the
 *    contactNumber as sent; a mapped scan names its sale the same way. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "connectors/s360/s360.h"
#include "core/inbound.h"
#include "model/model.h"

static const char *const streams[] = {"contacts", "orders", "access", "contacts"};
static const char *const settings[] = {
    "{\"institution\":\"myvenue\",\"api_base\":\"https://x.example\",\"event_city\":\"Bern\","
    "\"push_contacts\":false}",
    "{\"institution\":\"myvenue\",\"api_base\":\"https://x.example\",\"event_city\":\"Bern\","
    "\"push_contacts\":false,\"history_from\":\"2025-12-01\",\"attendance\":true,"
    "\"max_objects\":20}",
    "{\"institution\":\"myvenue\",\"api_base\":\"https://x.example\",\"event_city\":\"Bern\","
    "\"push_contacts\":false,\"abandoned_states\":\"ABANDONED,CLOSED\",\"time_zone\":"
    "\"America/New_York\",\"access_fields\":\"scan_id=ticketBarcode,order=orderId\"}",
    "{\"institution\":\"myvenue\",\"api_base\":\"https://x.example\",\"event_city\":\"Bern\","
    "\"push_contacts\":false,\"max_body_kib\":2}",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The decimal text of an id member as the mapping must read it, or "" when it is not one. */
static void id_text(const json_t *v, char out[32])
{
    *out = 0;
    if (json_is_integer(v)) {
        snprintf(out, 32, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    }
}

static void check_order_lines(const json_t *order, const json_t *body)
{
    char oid[32];
    id_text(json_object_get(order, "orderId"), oid);
    const json_t *sales = json_object_get(body, "sales");
    for (size_t i = 0; i < json_array_size(sales); i++) {
        const json_t *s = json_array_get(sales, i);
        const char *inv = json_string_value(json_object_get(s, "invoice_number"));
        const json_t *q = json_object_get(s, "quantity");
        const char *price = json_string_value(json_object_get(s, "sales_price"));
        if (!inv || !strchr(inv, '-') || !json_is_integer(q) || json_integer_value(q) <= 0 ||
            !price || !*price || strspn(price, "0123456789.") != strlen(price)) {
            abort();
        }
        /* a line's own invoice begins with the order's id (a freeing's names the original) */
        const char *typ = json_string_value(json_object_get(s, "s360_order_type"));
        bool freeing = typ && strstr(typ, "_FREEING");
        if (*oid && !freeing && strncmp(inv, oid, strlen(oid)) != 0) {
            abort();
        }
    }
}

static void check_object(const struct s360_conf *cf, const char *stream, const json_t *obj)
{
    struct sd_issues issues;
    sd_issues_init(&issues, 8);
    json_t *body = json_object();
    int r = s360_map_object(cf, stream, obj, body, &issues);
    if (r != 0 && r != SD_INBOUND_SKIP && r != -EINVAL) {
        abort();
    }
    if (r == -EINVAL && issues.total == 0) {
        abort();
    }
    if (r == 0 && strcmp(stream, "contacts") == 0) {
        const json_t *c = json_array_get(json_object_get(body, "customers"), 0);
        const char *id = json_string_value(json_object_get(c, "customer_id"));
        const char *sent = json_string_value(json_object_get(obj, "contactNumber"));
        if (!id || !sent || strcmp(id, sent) != 0) {
            abort();
        }
    }
    if (r == 0 && strcmp(stream, "orders") == 0) {
        const json_t *d = json_object_get(obj, "orderDetailsData");
        if (json_is_object(d)) {
            check_order_lines(d, body);
        }
    }
    if (r == 0 && strcmp(stream, "access") == 0) {
        const json_t *sc = json_array_get(json_object_get(body, "scans"), 0);
        const char *inv = json_string_value(json_object_get(sc, "invoice_number"));
        char oid[32];
        id_text(json_object_get(obj, "orderId"), oid);
        if (!inv || (*oid && strncmp(inv, oid, strlen(oid)) != 0)) {
            abort();
        }
    }
    json_decref(body);
    sd_issues_release(&issues);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    const char *stream = streams[data[0] & 3];
    const char *set = settings[(data[0] >> 2) & 3];
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    struct sd_connector_conf conf = {
        .id = "con_0123456789abcdef",
        .tenant_id = 1,
        .env = SD_ENV_TEST,
        .type = "s360",
        .schedule = "manual",
        .settings = (char *)set,
        .mapping = "{}",
    };
    struct sd_inbound_payload *p = NULL;
    const char *why = NULL;
    int r = sd_inbound_prepare(&conf, body, len, json_pack("{s:s}", "stream", stream), 1000000, &p,
                               &why);
    if (r == -E2BIG) {
        if (!why || !*why) {
            abort();
        }
        return 0;
    }
    if (r != 0 || !p) {
        abort();
    }
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
    size_t want = json_is_array(root) ? json_array_size(root) : 1;
    if (sd_inbound_payload_count(p) != want) {
        abort();
    }
    for (size_t i = 0; i < want; i++) {
        const char *reason = sd_inbound_payload_reason(p, i);
        if (reason &&
            (!*reason || strlen(reason) > 480 || !sd_utf8_valid(reason, strlen(reason)))) {
            abort();
        }
    }
    sd_inbound_payload_free(p);

    /* the mapping alone, with the instance's settings struct */
    const struct sd_connector *con = sd_connector_find("s360");
    json_t *in = json_loads(set, 0, NULL);
    struct sd_issues serr;
    sd_issues_init(&serr, 4);
    json_t *checked = sd_connector_check_settings(con, in, &serr);
    void *typed = NULL;
    if (!checked || sd_connector_settings_new(con, checked, &typed) < 0) {
        abort();
    }
    for (size_t i = 0; root && (json_is_object(root) || json_is_array(root)) && i < want; i++) {
        const json_t *obj = json_is_array(root) ? json_array_get(root, i) : root;
        if (json_is_object(obj)) {
            check_object(typed, stream, obj);
        }
    }
    free(typed);
    json_decref(checked);
    json_decref(in);
    sd_issues_release(&serr);
    json_decref(root);
    return 0;
}
