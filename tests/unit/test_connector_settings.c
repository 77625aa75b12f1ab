/* test_connector_settings.c — typed settings (the config map): core fills a connector's own
 * settings struct from checked settings, one member per table entry at its offset; CHOICE
 * values become their index; defaults fill what was not sent; a wrong choice lists the allowed
 * values; a table that names a member outside its struct, or settings that were never checked,
 * fail the fill as a whole; a connector without a struct (settings_size 0) still works; every
 * registered connector's table fits its struct; the table described as JSON and Markdown. */
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
#include "connectors/csv_drop/csv_import.h"
#include "core/connector.h"

/* A connector using every setting type. */
struct all_conf {
    const char *name;
    int64_t count;
    bool loud;
    const char *token;
    int colour; /* enum colour */
    const char *url;
    const char *dir;
};
enum colour { RED, GREEN, BLUE };

#define AT(member) offsetof(struct all_conf, member)

static const struct sd_setting all_settings[] = {
    {"name", SD_SETTING_STRING, NULL, 1, 50, "required name", NULL, AT(name)},
    {"count", SD_SETTING_INT, "7", -5, 100, "a number | with a bar", NULL, AT(count)},
    {"loud", SD_SETTING_BOOL, "false", 0, 0, "a switch", NULL, AT(loud)},
    {"token", SD_SETTING_SECRET, "\"\"", 0, 100, "a secret", NULL, AT(token)},
    {"colour", SD_SETTING_CHOICE, "\"green\"", 0, 0, "red, green or blue",
     SD_CHOICES("red", "green", "blue"), AT(colour)},
    {"url", SD_SETTING_URL, "\"https://api.example/v1\"", 8, 200, "where",
     SD_CHOICES("http", "https"), AT(url)},
    {"dir", SD_SETTING_PATH, "\"\"", 0, 200, "a folder", NULL, AT(dir)},
    {NULL, 0, NULL, 0, 0, NULL, NULL, 0},
};

static const void *checked_conf; /* what the check hook saw */
static int check_calls;

static void all_check(const void *conf, struct sd_issues *errors)
{
    const struct all_conf *c = conf;
    checked_conf = conf;
    check_calls++;
    if (c && c->loud && c->colour == RED) {
        sd_issues_add(errors, "/settings/loud", "not with red");
    }
}

static const struct sd_connector all_conn = {.name = "all",
                                             .kind = SD_CONNECTOR_SOURCE,
                                             .help = "every type",
                                             .settings = all_settings,
                                             .settings_size = sizeof(struct all_conf),
                                             .check = all_check};

/* The older form: no struct, offsets 0, settings read from JSON. */
static const struct sd_setting old_settings[] = {
    {"url", SD_SETTING_STRING, NULL, 1, 200, "required", NULL, 0},
    {"page_size", SD_SETTING_INT, "100", 1, 1000, "bounded", NULL, 0},
    {NULL, 0, NULL, 0, 0, NULL, NULL, 0},
};
static const struct sd_connector old_conn = {
    .name = "old", .kind = SD_CONNECTOR_TARGET, .settings = old_settings, .check = all_check};

static bool has_message(const struct sd_issues *l, const char *ptr, const char *part)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->items[i].pointer, ptr) == 0 && strstr(l->items[i].message, part)) {
            return true;
        }
    }
    return false;
}

/* Check `in` (JSON text) and fill the struct; the checked JSON is returned for the caller to
 * free after the struct (the struct's strings point into it). */
static struct all_conf *fill_ok(const char *in_text, json_t **ret_checked)
{
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    json_t *in = json_loads(in_text, 0, NULL);
    assert_non_null(in);
    json_t *checked = sd_connector_check_settings(&all_conn, in, &errors);
    if (!checked) {
        fail_msg("%s refused: %s %s", in_text, errors.n ? errors.items[0].pointer : "",
                 errors.n ? errors.items[0].message : "");
    }
    void *conf = NULL;
    assert_int_equal(sd_connector_settings_new(&all_conn, checked, &conf), 0);
    assert_non_null(conf);
    json_decref(in);
    sd_issues_release(&errors);
    *ret_checked = checked;
    return conf;
}

static void test_fill_every_type(void **state)
{
    (void)state;
    json_t *checked = NULL;
    check_calls = 0;
    struct all_conf *c =
        fill_ok("{\"name\": \"box\", \"count\": -5, \"loud\": true, \"token\": \"s3cret\","
                " \"colour\": \"blue\", \"url\": \"http://10.1.2.3/x\", \"dir\": \"/tmp\"}",
                &checked);
    assert_string_equal(c->name, "box");
    assert_int_equal(c->count, -5);
    assert_true(c->loud);
    assert_string_equal(c->token, "s3cret");
    assert_int_equal(c->colour, BLUE);
    assert_string_equal(c->url, "http://10.1.2.3/x");
    assert_string_equal(c->dir, "/tmp");
    /* the strings are the checked JSON's own: valid exactly as long as it */
    assert_ptr_equal(c->name, json_string_value(json_object_get(checked, "name")));
    /* the check hook saw a filled struct, once */
    assert_int_equal(check_calls, 1);
    assert_non_null(checked_conf);
    free(c);
    json_decref(checked);

    /* int bounds reach the struct as they are */
    c = fill_ok("{\"name\": \"b\", \"count\": 100}", &checked);
    assert_int_equal(c->count, 100);
    free(c);
    json_decref(checked);
}

static void test_defaults_filled(void **state)
{
    (void)state;
    json_t *checked = NULL;
    struct all_conf *c = fill_ok("{\"name\": \"x\"}", &checked);
    assert_int_equal(c->count, 7);
    assert_false(c->loud);
    assert_string_equal(c->token, "");
    assert_int_equal(c->colour, GREEN);
    assert_string_equal(c->url, "https://api.example/v1");
    assert_string_equal(c->dir, "");
    free(c);
    json_decref(checked);
}

static void test_choice_index_and_refusal(void **state)
{
    (void)state;
    static const struct {
        const char *value;
        int index;
    } cases[] = {{"red", RED}, {"green", GREEN}, {"blue", BLUE}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[80];
        snprintf(text, sizeof(text), "{\"name\": \"x\", \"colour\": \"%s\"}", cases[i].value);
        json_t *checked = NULL;
        struct all_conf *c = fill_ok(text, &checked);
        assert_int_equal(c->colour, cases[i].index);
        assert_int_equal(sd_setting_choice_index(&all_settings[4], cases[i].value), cases[i].index);
        free(c);
        json_decref(checked);
    }
    assert_int_equal(sd_setting_choice_index(&all_settings[4], "Red"), -1);
    assert_int_equal(sd_setting_choice_index(&all_settings[4], NULL), -1);

    static const char *const wrong[] = {"\"purple\"", "\"\"", "\"RED\"", "3", "null"};
    for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
        char text[80];
        snprintf(text, sizeof(text), "{\"name\": \"x\", \"colour\": %s}", wrong[i]);
        json_t *in = json_loads(text, 0, NULL);
        struct sd_issues errors;
        sd_issues_init(&errors, SD_MAX_ISSUES);
        assert_null(sd_connector_check_settings(&all_conn, in, &errors));
        bool is_string = wrong[i][0] == '"';
        if (!has_message(&errors, "/settings/colour",
                         is_string ? "must be one of red, green, blue" : "must be a string")) {
            fail_msg("colour = %s: %s", wrong[i], errors.n ? errors.items[0].message : "(none)");
        }
        json_decref(in);
        sd_issues_release(&errors);
    }
    /* the check hook works on the struct: loud with red is refused there */
    json_t *in = json_pack("{s:s, s:b, s:s}", "name", "x", "loud", 1, "colour", "red");
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    assert_null(sd_connector_check_settings(&all_conn, in, &errors));
    assert_true(has_message(&errors, "/settings/loud", "not with red"));
    json_decref(in);
    sd_issues_release(&errors);
}

/* Settings that were not checked (a key missing, a wrong JSON type, an unknown choice) and
 * tables that name members outside their struct fail the fill as a whole. */
static void test_fill_refuses(void **state)
{
    (void)state;
    void *conf = (void *)&conf;                   /* must stay untouched */
    json_t *in = json_pack("{s:s}", "name", "x"); /* nothing else: not checked */
    assert_int_equal(sd_connector_settings_new(&all_conn, in, &conf), -EINVAL);
    assert_ptr_equal(conf, (void *)&conf);
    json_decref(in);
    in = json_pack("{s:s, s:s, s:b, s:s, s:s, s:s, s:s}", "name", "x", "count", "7", "loud", 0,
                   "token", "", "colour", "green", "url", "https://a.example", "dir", "");
    assert_int_equal(sd_connector_settings_new(&all_conn, in, &conf), -EINVAL); /* "7" */
    json_object_set_new(in, "count", json_integer(7));
    json_object_set_new(in, "colour", json_string("mauve"));
    assert_int_equal(sd_connector_settings_new(&all_conn, in, &conf), -EINVAL);
    json_object_set_new(in, "colour", json_string("red"));
    assert_int_equal(sd_connector_settings_new(&all_conn, in, &conf), 0);
    assert_int_equal(((struct all_conf *)conf)->colour, RED);
    free(conf);
    json_decref(in);
    assert_int_equal(sd_connector_settings_new(&all_conn, NULL, &conf), -EINVAL);

    /* a member past the end of the struct, or misaligned */
    struct small {
        int64_t n;
    };
    const struct sd_setting beyond[] = {
        {"n", SD_SETTING_INT, "1", 0, 9, "", NULL, sizeof(struct small)},
        {NULL, 0, NULL, 0, 0, NULL, NULL, 0},
    };
    const struct sd_setting skewed[] = {
        {"n", SD_SETTING_INT, "1", 0, 9, "", NULL, 1},
        {NULL, 0, NULL, 0, 0, NULL, NULL, 0},
    };
    const struct sd_setting fits[] = {
        {"n", SD_SETTING_INT, "1", 0, 9, "", NULL, offsetof(struct small, n)},
        {NULL, 0, NULL, 0, 0, NULL, NULL, 0},
    };
    json_t *n = json_pack("{s:i}", "n", 3);
    struct small s = {0};
    struct sd_connector c = {.name = "small",
                             .kind = SD_CONNECTOR_SOURCE,
                             .settings = beyond,
                             .settings_size = sizeof(struct small)};
    assert_int_equal(sd_connector_settings_fill(&c, n, &s), -EINVAL);
    c.settings = skewed;
    assert_int_equal(sd_connector_settings_fill(&c, n, &s), -EINVAL);
    c.settings = fits;
    assert_int_equal(sd_connector_settings_fill(&c, n, &s), 0);
    assert_int_equal(s.n, 3);
    json_decref(n);
}

/* A connector in the older form (no struct) is checked as before, gets no struct, and its
 * check hook runs with NULL. */
static void test_no_struct_still_works(void **state)
{
    (void)state;
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    json_t *in = json_pack("{s:s}", "url", "https://x");
    check_calls = 0;
    checked_conf = (void *)&errors;
    json_t *out = sd_connector_check_settings(&old_conn, in, &errors);
    assert_non_null(out);
    assert_int_equal(json_integer_value(json_object_get(out, "page_size")), 100);
    assert_int_equal(check_calls, 1);
    assert_null(checked_conf);
    void *conf = (void *)&conf;
    assert_int_equal(sd_connector_settings_new(&old_conn, out, &conf), 0);
    assert_null(conf);
    assert_int_equal(sd_connector_settings_fill(&old_conn, out, NULL), 0);
    json_decref(out);
    json_decref(in);
    sd_issues_release(&errors);
}

/* Settings every connector needs besides the defaults (a required URL, folder, user …). */
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

/* Every registered connector with a struct: no two settings share bytes of it, the defaults
 * fill it, and every choice of every CHOICE setting reads back as its index at its offset. */
static void test_registered_tables_fit(void **state)
{
    (void)state;
    size_t typed = 0;
    for (size_t i = 0; sd_connectors[i]; i++) {
        const struct sd_connector *c = sd_connectors[i];
        if (c->settings_size == 0) {
            continue;
        }
        typed++;
        unsigned char *owner = sd_calloc(1, c->settings_size);
        for (const struct sd_setting *s = c->settings; s && s->key; s++) {
            size_t size = s->type == SD_SETTING_INT      ? sizeof(int64_t)
                          : s->type == SD_SETTING_BOOL   ? sizeof(bool)
                          : s->type == SD_SETTING_CHOICE ? sizeof(int)
                                                         : sizeof(const char *);
            assert_true(s->offset + size <= c->settings_size);
            for (size_t b = 0; b < size; b++) {
                if (owner[s->offset + b]) {
                    fail_msg("%s: '%s' overlaps another setting's member", c->name, s->key);
                }
                owner[s->offset + b] = 1;
            }
        }
        free(owner);
        for (const struct sd_setting *s = c->settings; s && s->key; s++) {
            for (size_t j = 0; s->type == SD_SETTING_CHOICE && s->choices[j]; j++) {
                /* Set after the check: a choice may need other settings to pass the
                 * connector's whole-settings check (auth "basic" needs a user). */
                json_t *in = base_settings(c);
                struct sd_issues errors;
                sd_issues_init(&errors, SD_MAX_ISSUES);
                json_t *checked = sd_connector_check_settings(c, in, &errors);
                assert_non_null(checked);
                json_object_set_new(checked, s->key, json_string(s->choices[j]));
                void *conf = NULL;
                assert_int_equal(sd_connector_settings_new(c, checked, &conf), 0);
                int got;
                memcpy(&got, (unsigned char *)conf + s->offset, sizeof(got));
                if (got != (int)j) {
                    fail_msg("%s.%s = %s read back as %d", c->name, s->key, s->choices[j], got);
                }
                free(conf);
                json_decref(checked);
                json_decref(in);
                sd_issues_release(&errors);
            }
        }
    }
    assert_true(typed >= 5); /* demo_season, csv_drop, sftp_pull, feed, rest_pull */
}

/* The CSV connectors' shared enums follow the order of their choices (the importer compares
 * the filled index with them), in both connectors' tables. */
static void test_csv_enums_match_choices(void **state)
{
    (void)state;
    static const struct {
        const char *key, *value;
        int want;
    } cases[] = {
        {"kind", "auto", SD_CSV_KIND_AUTO},
        {"kind", "events", SD_CSV_KIND_EVENTS},
        {"kind", "customers", SD_CSV_KIND_CUSTOMERS},
        {"kind", "sales", SD_CSV_KIND_SALES},
        {"delimiter", "auto", SD_CSV_DELIM_AUTO},
        {"delimiter", "comma", SD_CSV_DELIM_COMMA},
        {"delimiter", "semicolon", SD_CSV_DELIM_SEMICOLON},
        {"delimiter", "tab", SD_CSV_DELIM_TAB},
        {"encoding", "utf-8", SD_CSV_ENC_UTF8},
        {"encoding", "windows-1252", SD_CSV_ENC_CP1252},
        {"policy", "reject_file", SD_CSV_REJECT_FILE},
        {"policy", "skip_rows", SD_CSV_SKIP_ROWS},
    };
    static const char *const connectors[] = {"csv_drop", "sftp_pull"};
    for (size_t k = 0; k < 2; k++) {
        const struct sd_connector *c = sd_connector_find(connectors[k]);
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            json_t *in = base_settings(c);
            json_object_set_new(in, cases[i].key, json_string(cases[i].value));
            struct sd_issues errors;
            sd_issues_init(&errors, SD_MAX_ISSUES);
            json_t *checked = sd_connector_check_settings(c, in, &errors);
            assert_non_null(checked);
            void *conf = NULL;
            assert_int_equal(sd_connector_settings_new(c, checked, &conf), 0);
            /* the shared part is the struct's first member */
            const struct sd_csv_import_conf *csv = conf;
            int got = strcmp(cases[i].key, "kind") == 0        ? csv->kind
                      : strcmp(cases[i].key, "delimiter") == 0 ? csv->delimiter
                      : strcmp(cases[i].key, "encoding") == 0  ? csv->encoding
                                                               : csv->policy;
            if (got != cases[i].want) {
                fail_msg("%s.%s = %s filled as %d, enum says %d", c->name, cases[i].key,
                         cases[i].value, got, cases[i].want);
            }
            free(conf);
            json_decref(checked);
            json_decref(in);
            sd_issues_release(&errors);
        }
    }
}

/* The connectors' own check hooks run on the struct. */
static void test_connector_checks_on_struct(void **state)
{
    (void)state;
    static const struct {
        const char *connector, *key, *value, *ptr, *why;
    } cases[] = {
        {"rest_pull", "events_path", "", "/settings", "at least one of"},
        {"rest_pull", "more_pointer", "has_more", "/settings/more_pointer", "JSON Pointer"},
        {"feed", "records_pointer", "data", "/settings/records_pointer", "JSON Pointer"},
        {"sftp_pull", "url", "sftp://files.example/in", "/settings/url", "ending in /"},
        {"sftp_pull", "password", "", "/settings/password", "a password or a private_key_file"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct sd_connector *c = sd_connector_find(cases[i].connector);
        json_t *in = base_settings(c);
        json_object_set_new(in, cases[i].key, json_string(cases[i].value));
        struct sd_issues errors;
        sd_issues_init(&errors, SD_MAX_ISSUES);
        json_t *out = sd_connector_check_settings(c, in, &errors);
        if (out || !has_message(&errors, cases[i].ptr, cases[i].why)) {
            fail_msg("%s.%s = '%s' not refused with '%s'", cases[i].connector, cases[i].key,
                     cases[i].value, cases[i].why);
        }
        json_decref(in);
        sd_issues_release(&errors);
    }
}

static void test_describe(void **state)
{
    (void)state;
    json_t *d = sd_connector_describe(&all_conn);
    assert_string_equal(json_string_value(json_object_get(d, "name")), "all");
    assert_string_equal(json_string_value(json_object_get(d, "kind")), "source");
    const json_t *settings = json_object_get(d, "settings");
    assert_int_equal(json_array_size(settings), 8); /* seven and "source" */
    const json_t *name = json_array_get(settings, 0);
    assert_true(json_is_true(json_object_get(name, "required")));
    assert_true(json_is_null(json_object_get(name, "default")));
    assert_int_equal(json_integer_value(json_object_get(name, "max_length")), 50);
    const json_t *count = json_array_get(settings, 1);
    assert_int_equal(json_integer_value(json_object_get(count, "default")), 7);
    assert_int_equal(json_integer_value(json_object_get(count, "min")), -5);
    const json_t *colour = json_array_get(settings, 4);
    assert_string_equal(json_string_value(json_object_get(colour, "type")), "choice");
    assert_string_equal(json_string_value(json_array_get(json_object_get(colour, "choices"), 2)),
                        "blue");
    const json_t *url = json_array_get(settings, 5);
    assert_string_equal(json_string_value(json_array_get(json_object_get(url, "schemes"), 1)),
                        "https");
    const json_t *source = json_array_get(settings, 7);
    assert_string_equal(json_string_value(json_object_get(source, "key")), "source");
    assert_string_equal(json_string_value(json_object_get(source, "default")), "all");
    json_decref(d);

    struct sd_buf md = {0};
    sd_connector_markdown(&all_conn, &md);
    static const char *const want[] = {
        "<!-- BEGIN GENERATED: all -->\n",
        "| `name` | string | (required) | 1 to 50 characters | required name |\n",
        "| `count` | int | `7` | -5 to 100 | a number \\| with a bar |\n",
        "| `loud` | bool | `false` | `true`, `false` | a switch |\n",
        "| `token` | secret | `\"\"` | at most 100 characters | a secret |\n",
        "| `colour` | choice | `green` | `red`, `green`, `blue` | red, green or blue |\n",
        "| `url` | url | `https://api.example/v1` | scheme `http`, `https`; 8 to 200 characters",
        "| `source` | string | `all` | 1 to 64 characters |",
        "<!-- END GENERATED -->\n",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        if (!strstr(md.data, want[i])) {
            fail_msg("markdown lacks %s in:\n%s", want[i], md.data);
        }
    }
    sd_buf_release(&md);
    /* a target has no implicit "source" */
    d = sd_connector_describe(&old_conn);
    assert_string_equal(json_string_value(json_object_get(d, "kind")), "target");
    assert_int_equal(json_array_size(json_object_get(d, "settings")), 2);
    json_decref(d);
}

int main(void)
{
    /* as ctest runs it (CMakeLists.txt): /tmp and private addresses are allowed */
    setenv("STAGEDOOR_FILE_ROOTS", "/tmp:/srv", 0);
    setenv("STAGEDOOR_EGRESS_ALLOW", "loopback,private", 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fill_every_type),
        cmocka_unit_test(test_defaults_filled),
        cmocka_unit_test(test_choice_index_and_refusal),
        cmocka_unit_test(test_fill_refuses),
        cmocka_unit_test(test_no_struct_still_works),
        cmocka_unit_test(test_registered_tables_fit),
        cmocka_unit_test(test_csv_enums_match_choices),
        cmocka_unit_test(test_connector_checks_on_struct),
        cmocka_unit_test(test_describe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
