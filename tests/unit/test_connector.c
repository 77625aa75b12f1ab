/* test_connector.c — the connector interface: the registry, settings checked against a
 * connector's key table (unknown keys, types, bounds, defaults, required keys, secrets
 * redacted), and a source connector run end to end into a real store through the hub. */
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
#include "core/connector.h"

static const struct sd_setting test_settings[] = {
    {"url", SD_SETTING_STRING, NULL, 1, 200, "required", NULL, 0},
    {"page_size", SD_SETTING_INT, "100", 1, 1000, "bounded", NULL, 0},
    {"verbose", SD_SETTING_BOOL, "false", 0, 0, "switch", NULL, 0},
    {"token", SD_SETTING_SECRET, "\"\"", 0, 100, "secret", NULL, 0},
    {NULL, 0, NULL, 0, 0, NULL, NULL, 0},
};
static const struct sd_connector test_conn = {
    .name = "test", .kind = SD_CONNECTOR_SOURCE, .settings = test_settings};

static bool has_pointer(const struct sd_issues *l, const char *ptr)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->items[i].pointer, ptr) == 0) {
            return true;
        }
    }
    return false;
}

static void test_registry(void **state)
{
    (void)state;
    const struct sd_connector *c = sd_connector_find("demo_season");
    assert_non_null(c);
    assert_int_equal(c->kind, SD_CONNECTOR_SOURCE);
    assert_non_null(c->run);
    assert_null(sd_connector_find("nope"));
    for (size_t i = 0; sd_connectors[i]; i++) { /* every default parses and passes its checks */
        struct sd_issues errors;
        sd_issues_init(&errors, SD_MAX_ISSUES);
        json_t *empty = json_object();
        json_t *checked = sd_connector_check_settings(sd_connectors[i], empty, &errors);
        bool needs_required = false;
        for (const struct sd_setting *s = sd_connectors[i]->settings; s && s->key; s++) {
            needs_required |= s->default_value == NULL;
        }
        assert_true(needs_required || checked != NULL);
        json_decref(checked);
        json_decref(empty);
        sd_issues_release(&errors);
    }
}

static void test_settings_checked(void **state)
{
    (void)state;
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    json_t *in = json_pack("{s:s, s:i, s:s}", "url", "https://x", "page_size", 1001, "colour",
                           "red");
    assert_null(sd_connector_check_settings(&test_conn, in, &errors));
    assert_int_equal(errors.total, 2); /* the bound and the unknown key, in any order */
    assert_true(has_pointer(&errors, "/settings/page_size"));
    assert_true(has_pointer(&errors, "/settings/colour"));
    json_decref(in);
    sd_issues_release(&errors);
    sd_issues_init(&errors, SD_MAX_ISSUES);
    in = json_pack("{s:s, s:s}", "page_size", "10", "token", "s3cret");
    assert_null(sd_connector_check_settings(&test_conn, in, &errors));
    assert_int_equal(errors.total, 2); /* page_size not an integer, url missing */
    assert_true(has_pointer(&errors, "/settings/page_size"));
    assert_true(has_pointer(&errors, "/settings/url"));
    json_decref(in);
    sd_issues_release(&errors);

    sd_issues_init(&errors, SD_MAX_ISSUES);
    in = json_pack("{s:s, s:s}", "url", "https://x", "token", "s3cret");
    json_t *out = sd_connector_check_settings(&test_conn, in, &errors);
    assert_non_null(out);
    assert_int_equal(errors.total, 0);
    assert_int_equal(json_integer_value(json_object_get(out, "page_size")), 100);
    assert_true(json_is_false(json_object_get(out, "verbose")));
    json_t *shown = sd_connector_redact_settings(&test_conn, out);
    assert_string_equal(json_string_value(json_object_get(shown, "token")), "(set)");
    assert_string_equal(json_string_value(json_object_get(out, "token")), "s3cret");
    json_decref(shown);
    json_decref(out);
    json_decref(in);
    sd_issues_release(&errors);
}

static void test_source_run_into_store(void **state)
{
    (void)state;
    char dir[] = "/tmp/sd-test-connector-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct sd_hub *hub = NULL;
    assert_int_equal(sd_hub_open(dir, NULL, &hub), 0);
    assert_int_equal(sd_store_tenant_create(hub->store, "venue", "Venue"), 0);
    struct sd_tenant t = {0};
    assert_int_equal(sd_store_tenant_get(hub->store, "venue", &t), 0);

    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    json_t *settings = json_pack("{s:i, s:i, s:i, s:i}", "events", 5, "customers", 50, "sales",
                                 120, "batch", 40);
    uint64_t records = 0;
    assert_int_equal(sd_connector_run_source(hub, "demo_season", t.id, SD_ENV_PROD, "t1",
                                             settings, &errors, &records),
                     0);
    assert_int_equal(records, 5 + 50 + 120);
    int64_t n = 0;
    assert_int_equal(sd_store_count_records(hub->store, SD_KIND_SALE, t.id, SD_ENV_PROD, &n), 0);
    assert_int_equal(n, 120);
    assert_int_equal(sd_store_count_records(hub->store, SD_KIND_SALE, t.id, SD_ENV_TEST, &n), 0);
    assert_int_equal(n, 0);

    /* a second run of the same season: events and customers update, sales are duplicates */
    assert_int_equal(sd_connector_run_source(hub, "demo_season", t.id, SD_ENV_PROD, "t1",
                                             settings, &errors, &records),
                     -EINVAL);
    json_decref(settings);
    /* bad settings never start a run */
    settings = json_pack("{s:i}", "events", 0);
    assert_int_equal(sd_connector_run_source(hub, "demo_season", t.id, SD_ENV_PROD, "t1",
                                             settings, &errors, &records),
                     -EINVAL);
    assert_string_equal(errors.items[errors.n - 1].pointer, "/settings/events");
    assert_int_equal(sd_connector_run_source(hub, "nope", t.id, SD_ENV_PROD, "t1", NULL,
                                             &errors, &records),
                     -ENOENT);
    json_decref(settings);
    sd_issues_release(&errors);
    sd_tenant_release(&t);
    sd_hub_close(hub);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static bool has_message(const struct sd_issues *l, const char *ptr, const char *part)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->items[i].pointer, ptr) == 0 && strstr(l->items[i].message, part)) {
            return true;
        }
    }
    return false;
}

/* Settings a connector needs besides the one under test (a required URL, folder, user …). */
static json_t *base_settings(const struct sd_connector *c)
{
    if (strcmp(c->name, "csv_drop") == 0) {
        return json_pack("{s:s}", "folder", "/srv/stagedoor/drop");
    }
    if (strcmp(c->name, "sftp_pull") == 0) {
        return json_pack("{s:s, s:s, s:s}", "url", "sftp://files.example/in/", "username", "u",
                         "password", "p");
    }
    if (strcmp(c->name, "feed") == 0) {
        return json_pack("{s:s}", "url", "https://feed.example/f.json");
    }
    if (strcmp(c->name, "rest_pull") == 0) {
        return json_pack("{s:s, s:s}", "base_url", "https://api.example", "events_path", "/e");
    }
    if (strcmp(c->name, "webhook_in") == 0) {
        /* every auth choice but none needs its credential */
        return json_pack("{s:s, s:s, s:s}", "auth_user", "u", "auth_header", "X-Api-Key",
                         "auth_secret", "s3cret");
    }
    if (strcmp(c->name, "tradablebits") == 0) {
        return json_pack("{s:s, s:s, s:s, s:s}", "api_key", "k", "api_secret", "s", "currency",
                         "CAD", "event_city", "Vancouver");
    }
    if (strcmp(c->name, "s360") == 0) {
        /* every auth choice but none needs its credential; push_contacts needs the API's */
        return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "institution",
                         "myvenue", "api_base", "https://myvenue.ws.example", "event_city",
                         "Zurich", "operator", "o", "partner", "p", "secret", "s", "auth_user",
                         "u", "auth_header", "X-Api-Key", "auth_secret", "s3cret");
    }
    return json_object();
}

/* Every value a choice setting declares is accepted (the docs list the same values), anything
 * else is refused with the allowed values listed; "semicolon" for csv_drop's delimiter is one. */
static void test_choice_settings(void **state)
{
    (void)state;
    size_t choices_seen = 0;
    for (size_t i = 0; sd_connectors[i]; i++) {
        const struct sd_connector *c = sd_connectors[i];
        for (const struct sd_setting *s = c->settings; s && s->key; s++) {
            if (s->type != SD_SETTING_CHOICE) {
                continue;
            }
            assert_non_null(s->choices);
            struct sd_buf list = {0};
            for (size_t j = 0; s->choices[j]; j++) {
                struct sd_issues errors;
                sd_issues_init(&errors, SD_MAX_ISSUES);
                json_t *in = base_settings(c);
                json_object_set_new(in, s->key, json_string(s->choices[j]));
                json_t *out = sd_connector_check_settings(c, in, &errors);
                if (!out) {
                    fail_msg("%s.%s = \"%s\" refused: %s", c->name, s->key, s->choices[j],
                             errors.n ? errors.items[0].message : "?");
                }
                json_decref(out);
                json_decref(in);
                sd_issues_release(&errors);
                sd_buf_printf(&list, "%s%s", j ? ", " : "", s->choices[j]);
                choices_seen++;
            }
            struct sd_issues errors;
            sd_issues_init(&errors, SD_MAX_ISSUES);
            json_t *in = base_settings(c);
            json_object_set_new(in, s->key, json_string("no-such-choice"));
            assert_null(sd_connector_check_settings(c, in, &errors));
            char ptr[80];
            snprintf(ptr, sizeof(ptr), "/settings/%s", s->key);
            assert_true(has_message(&errors, ptr, list.data));
            json_decref(in);
            sd_issues_release(&errors);
            sd_buf_release(&list);
        }
    }
    assert_true(choices_seen >= 20);
    const struct sd_connector *drop = sd_connector_find("csv_drop");
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    json_t *in = json_pack("{s:s, s:s}", "folder", "/srv/stagedoor/drop", "delimiter", "semicolon");
    json_t *out = sd_connector_check_settings(drop, in, &errors);
    assert_non_null(out);
    assert_string_equal(json_string_value(json_object_get(out, "delimiter")), "semicolon");
    json_decref(out);
    json_decref(in);
    sd_issues_release(&errors);
}

/* Header values and URLs from settings: control characters, user info, refused addresses and
 * paths outside the roots are refused when saved. */
static void test_string_settings_refused(void **state)
{
    (void)state;
    static const struct {
        const char *connector, *key, *value, *why;
    } cases[] = {
        {"feed", "auth_header", "Bearer x\r\nX-Injected: yes", "control characters"},
        {"rest_pull", "auth_header", "Bearer x\nX-Injected: yes", "control characters"},
        {"rest_pull", "page_size_param", "limit\r\n", "control characters"},
        {"feed", "url", "https://feed.example/f.json\r\nX: y", "characters"},
        {"feed", "url", "http://user:pass@feed.example/f.json", "user:password@"},
        {"feed", "url", "http://169.254.169.254/latest/meta-data/", "metadata"},
        {"feed", "url", "ftp://feed.example/f.json", "scheme"},
        {"rest_pull", "base_url", "http://[fe80::1]/", "link-local"},
        {"sftp_pull", "url", "sftp://bob:pw@files.example/in/", "user:password@"},
        {"sftp_pull", "password", "pw\r\nquote", "control characters"},
        {"sftp_pull", "known_hosts_file", "/etc/ssh/ssh_known_hosts", "/etc"},
        {"sftp_pull", "private_key_file", "/srv/keys/../../etc/shadow", "\"..\""},
        {"csv_drop", "folder", "/proc/self", "/proc"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct sd_connector *c = sd_connector_find(cases[i].connector);
        assert_non_null(c);
        struct sd_issues errors;
        sd_issues_init(&errors, SD_MAX_ISSUES);
        json_t *in = base_settings(c);
        json_object_set_new(in, cases[i].key, json_string(cases[i].value));
        json_t *out = sd_connector_check_settings(c, in, &errors);
        char ptr[80];
        snprintf(ptr, sizeof(ptr), "/settings/%s", cases[i].key);
        if (out || !has_message(&errors, ptr, cases[i].why)) {
            fail_msg("%s.%s = %s: not refused with '%s'", cases[i].connector, cases[i].key,
                     cases[i].value, cases[i].why);
        }
        json_decref(in);
        sd_issues_release(&errors);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_settings_checked),
        cmocka_unit_test(test_choice_settings),
        cmocka_unit_test(test_string_settings_refused),
        cmocka_unit_test(test_source_run_into_store),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
