/* test_s360out.c — connector "test_s360out", for the tests only (compiled in with
 * STAGEDOOR_TEST_CONNECTORS, never shipped): the s360 type's outbound half (s360_out.c:
 * s360_deliver, s360_on_change, s360_operations, s360_actions) behind a settings table of the
 * shared struct s360_conf, with a minimal inbound door of its own so the end-to-end tests can
 * receive S-360's contact webhook (and its echo) without the inbound half: a ContactDataResult
 * becomes a customer of the instance's source keyed by contactNumber (first EMAIL means, first
 * and last name). The real type `s360` hooks the same functions into its own table. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "connectors/s360/s360.h"
#include "core/connector.h"
#include "core/inbound.h"

/* The shared struct first (s360_out.c reads ctx->conf as a struct s360_conf), then what only
 * this test type has: the quota override core reads by key. */
struct test_conf {
    struct s360_conf s;
    int64_t quota_minute_calls;
};
#define AT(m) offsetof(struct s360_conf, m) /* == offsetof(struct test_conf, s.m) */

static const struct sd_setting settings[] = {
    {"api_base", SD_SETTING_URL, NULL, 1, 2048, "S-360's API base", SD_CHOICES("http", "https"),
     AT(api_base)},
    {"operator", SD_SETTING_STRING, NULL, 1, 200, "operator", NULL, AT(operator_name)},
    {"partner", SD_SETTING_STRING, NULL, 1, 200, "partner", NULL, AT(partner)},
    {"secret", SD_SETTING_SECRET, NULL, 1, 1024, "secret", NULL, AT(secret)},
    {"contact_service", SD_SETTING_STRING, "\"v2_21\"", 1, 16, "contact service version", NULL,
     AT(contact_service)},
    {"order_facade", SD_SETTING_STRING, "\"v1_33\"", 1, 16, "order facade version", NULL,
     AT(order_facade)},
    {"point_of_sales_id", SD_SETTING_INT, "1001", 1, INT64_MAX, "pointOfSalesId", NULL,
     AT(point_of_sales_id)},
    {"timeout_seconds", SD_SETTING_INT, "10", 1, 120, "HTTP timeout per call", NULL,
     AT(timeout_seconds)},
    {"push_contacts", SD_SETTING_BOOL, "true", 0, 0, "push changed S-360 contacts", NULL,
     AT(push_contacts)},
    {"create_contacts", SD_SETTING_BOOL, "false", 0, 0, "create contacts of other sources",
     NULL, AT(create_contacts)},
    {"quota_minute_calls", SD_SETTING_INT, "0", 0, 100000, "calls per minute (0: 180)", NULL,
     offsetof(struct test_conf, quota_minute_calls)},
    SD_INBOUND_SETTINGS(struct s360_conf),
    {NULL, 0, NULL, 0, 0, NULL, NULL, 0},
};

static const struct sd_quota quotas[] = {
    {"minute", 60000000, 180, 30},
    {NULL, 0, 0, 0},
};

static int inbound_map(struct sd_connector_ctx *ctx, const json_t *object, json_t *body,
                       struct sd_issues *issues)
{
    (void)ctx;
    const char *number = json_string_value(json_object_get(object, "contactNumber"));
    const json_t *ind = json_object_get(object, "individualContact");
    const char *email = NULL;
    size_t i;
    const json_t *m;
    json_array_foreach(json_object_get(object, "communicationMeans"), i, m)
    {
        const char *type = json_string_value(json_object_get(m, "type"));
        if (!email && type && strcmp(type, "EMAIL") == 0) {
            email = json_string_value(json_object_get(m, "value"));
        }
    }
    if (!number || !email || !json_is_object(ind)) {
        sd_issues_add(issues, "", "not a person with a contactNumber and an e-mail");
        return -EINVAL;
    }
    json_t *c = json_pack("{s:s, s:s}", "customer_id", number, "email", email);
    const char *keys[][2] = {{"firstName", "first_name"}, {"lastName", "last_name"}};
    for (size_t k = 0; k < 2; k++) {
        const char *v = json_string_value(json_object_get(ind, keys[k][0]));
        if (v) {
            json_object_set_new(c, keys[k][1], json_string(v));
        }
    }
    json_t *arr = json_object_get(body, "customers");
    if (!arr) {
        json_object_set_new(body, "customers", arr = json_array());
    }
    json_array_append_new(arr, c);
    return 0;
}

const struct sd_connector sd_connector_test_s360out = {
    .name = "test_s360out",
    .kind = SD_CONNECTOR_SOURCE | SD_CONNECTOR_TARGET,
    .help = "tests only: the s360 type's outbound half with a minimal contact door",
    .settings = settings,
    .settings_size = sizeof(struct test_conf),
    .test_only = true,
    .default_schedule = "manual",
    .quotas = quotas,
    .credential_settings = (const char *const[]){"api_base", "operator", "partner", NULL},
    .operations = s360_operations,
    .deliver = s360_deliver,
    .on_change = s360_on_change,
    .actions = s360_actions,
    .inbound_map = inbound_map,
};
