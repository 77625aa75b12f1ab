/* test_openapi_routes.c — "a route added without its description fails the build": every
 * (method, path) of the route table (src/api/routes.c) is an operation under `paths:` of the
 * OpenAPI document embedded in the binary (docs/openapi.yaml), and every operation there is a
 * route (no phantom routes).
 *
 * The document is read line by line, relying on the layout its header comment promises: a path
 * item is a line of two spaces, the path and a colon; an operation a line of four spaces, the
 * lower-case method and a colon; the block ends at the next line that starts without a space.
 * A line of that indentation that is neither (a typo such as `    gett:`) fails the test too, so
 * the reader can never silently skip an operation. The reader itself is checked on small
 * documents first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/api.h"
#include "server/assets.h"
#include "server/router.h"

#define MAX_OPS 256
#define MAX_LINE 512

struct op {
    char method[8]; /* upper case, as in the route table */
    char path[MAX_LINE];
    unsigned line;
};

struct doc_ops {
    struct op ops[MAX_OPS];
    size_t n;
    char problem[MAX_LINE + 64]; /* the first layout problem, or "" */
};

static const char *const methods[] = {"get", "put", "post", "delete", "patch", "head", "options",
                                      "trace", NULL};
/* Path-item members that are not operations (OpenAPI 3.1 §4.8.9). */
static const char *const item_keys[] = {"summary", "description", "parameters", "servers", "$ref",
                                        NULL};

static bool in_list(const char *s, size_t n, const char *const *list)
{
    for (size_t i = 0; list[i]; i++) {
        if (strlen(list[i]) == n && memcmp(list[i], s, n) == 0) {
            return true;
        }
    }
    return false;
}

static size_t indent_of(const char *line)
{
    size_t n = 0;
    while (line[n] == ' ') {
        n++;
    }
    return n;
}

static void problem(struct doc_ops *d, unsigned lineno, const char *what, const char *line)
{
    if (!d->problem[0]) {
        snprintf(d->problem, sizeof(d->problem), "line %u: %s: '%s'", lineno, what, line);
    }
}

/* Collect the operations under `paths:` of the YAML text. Returns false with d->problem set
 * when the layout is not the promised one. */
static bool read_ops(const char *text, size_t len, struct doc_ops *d)
{
    memset(d, 0, sizeof(*d));
    bool in_paths = false, seen_paths = false;
    char path[MAX_LINE] = "";
    unsigned lineno = 0;
    size_t pos = 0;
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - (text + pos)) : len - pos;
        char line[MAX_LINE];
        lineno++;
        if (ll >= sizeof(line)) {
            ll = sizeof(line) - 1; /* long lines are descriptions: never a key we read */
        }
        memcpy(line, text + pos, ll);
        line[ll] = '\0';
        pos += (nl ? (size_t)(nl - (text + pos)) + 1 : len - pos);
        while (ll > 0 && (line[ll - 1] == '\r' || line[ll - 1] == ' ')) {
            line[--ll] = '\0';
        }
        if (ll == 0 || line[indent_of(line)] == '#') {
            continue;
        }
        if (!in_paths) {
            if (strcmp(line, "paths:") == 0) {
                in_paths = seen_paths = true;
            }
            continue;
        }
        size_t ind = indent_of(line);
        if (ind == 0) {
            break; /* the next top-level key ends the block */
        }
        const char *key = line + ind;
        size_t kl = ll - ind;
        if (ind == 2) {
            if (key[0] != '/' || key[kl - 1] != ':') {
                problem(d, lineno, "a path item must be '  /path:'", line);
                return false;
            }
            memcpy(path, key, kl - 1);
            path[kl - 1] = '\0';
        } else if (ind == 4) {
            const char *colon = strchr(key, ':');
            size_t name_len = colon ? (size_t)(colon - key) : kl;
            if (!path[0] || !colon) {
                problem(d, lineno, "an operation must follow a path item", line);
                return false;
            }
            if (in_list(key, name_len, item_keys)) {
                continue;
            }
            if (!in_list(key, name_len, methods) || colon[1] != '\0') {
                problem(d, lineno, "not an HTTP method in lower case, alone on its line", line);
                return false;
            }
            if (d->n == MAX_OPS) {
                problem(d, lineno, "more operations than this reader holds", line);
                return false;
            }
            struct op *o = &d->ops[d->n++];
            for (size_t i = 0; i < name_len; i++) {
                o->method[i] = (char)(key[i] - 'a' + 'A');
            }
            o->method[name_len] = '\0';
            snprintf(o->path, sizeof(o->path), "%s", path);
            o->line = lineno;
            for (size_t i = 0; i + 1 < d->n; i++) {
                if (strcmp(d->ops[i].method, o->method) == 0 &&
                    strcmp(d->ops[i].path, o->path) == 0) {
                    problem(d, lineno, "operation described twice", line);
                    return false;
                }
            }
        } else if (ind < 4) {
            problem(d, lineno, "indentation of 1 or 3 spaces", line);
            return false;
        }
    }
    if (!seen_paths) {
        problem(d, lineno, "no top-level 'paths:'", "");
        return false;
    }
    return true;
}

static bool doc_has(const struct doc_ops *d, const char *method, const char *path)
{
    for (size_t i = 0; i < d->n; i++) {
        if (strcmp(d->ops[i].method, method) == 0 && strcmp(d->ops[i].path, path) == 0) {
            return true;
        }
    }
    return false;
}

static bool table_has(const struct sd_route *routes, size_t n, const char *method,
                      const char *path)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(routes[i].method, method) == 0 && strcmp(routes[i].pattern, path) == 0) {
            return true;
        }
    }
    return false;
}

/* Routes without an operation plus operations without a route, each printed. */
static size_t mismatches(const struct sd_route *routes, size_t n_routes, const struct doc_ops *d)
{
    size_t bad = 0;
    for (size_t i = 0; i < n_routes; i++) {
        if (!doc_has(d, routes[i].method, routes[i].pattern)) {
            print_message("route '%s' (%s %s) is not described in docs/openapi.yaml: add its "
                          "operation under paths:\n",
                          routes[i].name, routes[i].method, routes[i].pattern);
            bad++;
        }
    }
    for (size_t i = 0; i < d->n; i++) {
        if (!table_has(routes, n_routes, d->ops[i].method, d->ops[i].path)) {
            print_message("docs/openapi.yaml line %u: %s %s is not a route of src/api/routes.c\n",
                          d->ops[i].line, d->ops[i].method, d->ops[i].path);
            bad++;
        }
    }
    return bad;
}

/* ---- the reader on small documents ----------------------------------------------------------- */

static const struct sd_route small_routes[] = {
    {"GET", "/healthz", "healthz", 0, NULL},
    {"GET", "/v1/{client_id}/events", "events_list", 0, NULL},
    {"DELETE", "/v1/{client_id}/events/{event_id}", "event_delete", 0, NULL},
};

static const char small_doc[] = "openapi: 3.1.0\n"
                                "# paths: in a comment is not the block\n"
                                "paths:\n"
                                "  /healthz:\n"
                                "    get:\n"
                                "      responses:\n"
                                "        '200':\n"
                                "          description: ok\n"
                                "\n"
                                "  /v1/{client_id}/events:\n"
                                "    parameters:\n"
                                "      - name: client_id\n"
                                "    get:\n"
                                "      summary: post: not an operation\n"
                                "  /v1/{client_id}/events/{event_id}:\n"
                                "    delete:\n"
                                "components:\n"
                                "  /not/a/path:\n"
                                "    get:\n";

static void test_reader_small_document(void **state)
{
    (void)state;
    struct doc_ops *d = calloc(1, sizeof(*d));
    assert_true(read_ops(small_doc, strlen(small_doc), d));
    assert_int_equal(d->n, 3);
    assert_string_equal(d->ops[0].method, "GET");
    assert_string_equal(d->ops[0].path, "/healthz");
    assert_string_equal(d->ops[1].method, "GET");
    assert_string_equal(d->ops[1].path, "/v1/{client_id}/events");
    assert_string_equal(d->ops[2].method, "DELETE");
    assert_string_equal(d->ops[2].path, "/v1/{client_id}/events/{event_id}");
    assert_int_equal(d->ops[2].line, 16);
    assert_int_equal(mismatches(small_routes, 3, d), 0);
    free(d);
}

static void test_reader_finds_missing_and_phantom(void **state)
{
    (void)state;
    static const char doc[] = "paths:\n"
                              "  /healthz:\n"
                              "    get:\n"
                              "  /v1/{client_id}/events:\n"
                              "    post:\n"; /* GET described as POST: one missing, one phantom */
    struct doc_ops *d = calloc(1, sizeof(*d));
    assert_true(read_ops(doc, strlen(doc), d));
    assert_int_equal(d->n, 2);
    /* events GET and event DELETE missing; events POST a phantom */
    assert_int_equal(mismatches(small_routes, 3, d), 3);
    free(d);
}

static void test_reader_refuses_irregular_layout(void **state)
{
    (void)state;
    static const struct {
        const char *doc;
        const char *why;
    } cases[] = {
        {"paths:\n  /healthz:\n    gett:\n", "not an HTTP method"},
        {"paths:\n  /healthz:\n    GET:\n", "not an HTTP method"},
        {"paths:\n  /healthz:\n    get: {}\n", "alone on its line"},
        {"paths:\n  healthz:\n    get:\n", "a path item must be"},
        {"paths:\n    get:\n", "must follow a path item"},
        {"paths:\n   /healthz:\n", "1 or 3 spaces"},
        {"paths:\n  /healthz:\n    get:\n  /healthz:\n    get:\n", "described twice"},
        {"openapi: 3.1.0\n", "no top-level"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct doc_ops *d = calloc(1, sizeof(*d));
        assert_false(read_ops(cases[i].doc, strlen(cases[i].doc), d));
        if (!strstr(d->problem, cases[i].why)) {
            fail_msg("case %zu: problem '%s' does not say '%s'", i, d->problem, cases[i].why);
        }
        free(d);
    }
}

/* ---- the real document and the real table ----------------------------------------------------
 */

static void test_every_route_described_and_no_phantom(void **state)
{
    (void)state;
    const struct sd_asset *a = sd_asset_find("docs/openapi.yaml");
    assert_non_null(a);
    struct doc_ops *d = calloc(1, sizeof(*d));
    if (!read_ops((const char *)a->data, a->len, d)) {
        fail_msg("docs/openapi.yaml does not keep the layout its header describes: %s",
                 d->problem);
    }
    size_t bad = mismatches(sd_routes, sd_routes_count, d);
    if (bad > 0) {
        fail_msg("%zu route(s) and operation(s) of docs/openapi.yaml do not match", bad);
    }
    assert_int_equal(d->n, sd_routes_count);
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reader_small_document),
        cmocka_unit_test(test_reader_finds_missing_and_phantom),
        cmocka_unit_test(test_reader_refuses_irregular_layout),
        cmocka_unit_test(test_every_route_described_and_no_phantom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
