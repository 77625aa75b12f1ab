/* connector_settings.c — a connector's settings table as a config map: the typed struct core
 * fills from checked settings (ctx->conf), and the table described for people and machines
 * (`stagedoor connector types`, the generated tables of docs/CONNECTORS.md).
 *
 * Invariants: a struct is filled only from settings that sd_connector_check_settings accepted
 * (defaults filled), so every key of the table is present with the JSON type its setting type
 * demands; anything else is a programming or storage error and fails the fill as a whole
 * (-EINVAL) rather than leaving a member silently zero. String members point into the JSON
 * they were filled from: nothing is copied, nothing is freed but the block itself. The
 * description is the table and nothing else, so what the docs say is what the checks do. */
#include <errno.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "core/connector.h"

int sd_setting_choice_index(const struct sd_setting *s, const char *value)
{
    for (size_t i = 0; value && s->choices && s->choices[i]; i++) {
        if (strcmp(s->choices[i], value) == 0) {
            return (int)i;
        }
    }
    return -1;
}

const char *sd_setting_type_name(enum sd_setting_type type)
{
    switch (type) {
    case SD_SETTING_STRING: return "string";
    case SD_SETTING_INT: return "int";
    case SD_SETTING_BOOL: return "bool";
    case SD_SETTING_SECRET: return "secret";
    case SD_SETTING_CHOICE: return "choice";
    case SD_SETTING_URL: return "url";
    case SD_SETTING_PATH: return "path";
    }
    return "?";
}

/* Size and alignment of the member a setting type fills. */
static void member_shape(enum sd_setting_type type, size_t *size, size_t *align)
{
    switch (type) {
    case SD_SETTING_INT:
        *size = sizeof(int64_t);
        *align = alignof(int64_t);
        return;
    case SD_SETTING_BOOL:
        *size = sizeof(bool);
        *align = alignof(bool);
        return;
    case SD_SETTING_CHOICE:
        *size = sizeof(int);
        *align = alignof(int);
        return;
    default:
        *size = sizeof(const char *);
        *align = alignof(const char *);
        return;
    }
}

int sd_connector_settings_fill(const struct sd_connector *c, const json_t *checked, void *conf)
{
    if (c->settings_size == 0) {
        return 0;
    }
    if (!conf || !json_is_object(checked)) {
        return -EINVAL;
    }
    unsigned char *base = conf;
    for (const struct sd_setting *s = c->settings; s && s->key; s++) {
        size_t size, align;
        member_shape(s->type, &size, &align);
        if (s->offset > c->settings_size || size > c->settings_size - s->offset ||
            s->offset % align != 0) {
            return -EINVAL;
        }
        const json_t *v = json_object_get(checked, s->key);
        void *at = base + s->offset;
        switch (s->type) {
        case SD_SETTING_INT: {
            if (!json_is_integer(v)) {
                return -EINVAL;
            }
            int64_t n = json_integer_value(v);
            memcpy(at, &n, sizeof(n));
            break;
        }
        case SD_SETTING_BOOL: {
            if (!json_is_boolean(v)) {
                return -EINVAL;
            }
            bool b = json_is_true(v);
            memcpy(at, &b, sizeof(b));
            break;
        }
        case SD_SETTING_CHOICE: {
            int i = sd_setting_choice_index(s, json_string_value(v));
            if (i < 0) {
                return -EINVAL;
            }
            memcpy(at, &i, sizeof(i));
            break;
        }
        case SD_SETTING_STRING:
        case SD_SETTING_SECRET:
        case SD_SETTING_URL:
        case SD_SETTING_PATH: {
            const char *p = json_string_value(v);
            if (!p) {
                return -EINVAL;
            }
            memcpy(at, &p, sizeof(p));
            break;
        }
        }
    }
    return 0;
}

int sd_connector_settings_new(const struct sd_connector *c, const json_t *checked, void **ret_conf)
{
    if (c->settings_size == 0) {
        *ret_conf = NULL;
        return 0;
    }
    void *conf = sd_calloc(1, c->settings_size);
    int r = sd_connector_settings_fill(c, checked, conf);
    if (r < 0) {
        free(conf);
        return r;
    }
    *ret_conf = conf;
    return 0;
}

/* ---- the table described ------------------------------------------------------------------ */

/* The setting every source takes besides its table (sd_connector_check_settings checks it). */
static const struct sd_setting source_setting = {
    "source",
    SD_SETTING_STRING,
    NULL,
    1,
    64,
    "label its customers are kept under (a-z 0-9 _ - .), so ids of different systems never "
    "collide; default: the connector's type",
    NULL,
    0};

static const char *kind_name(enum sd_connector_kind kind)
{
    switch ((int)kind) {
    case SD_CONNECTOR_SOURCE:
        return "source";
    case SD_CONNECTOR_TARGET:
        return "target";
    case SD_CONNECTOR_SOURCE | SD_CONNECTOR_TARGET:
        return "source+target";
    default:
        return "?";
    }
}

static json_t *choices_json(const char *const *choices)
{
    json_t *a = json_array();
    for (size_t i = 0; choices && choices[i]; i++) {
        json_array_append_new(a, json_string(choices[i]));
    }
    return a;
}

static json_t *setting_json(const struct sd_setting *s, const char *default_text)
{
    json_t *o = json_object();
    json_object_set_new(o, "key", json_string(s->key));
    json_object_set_new(o, "type", json_string(sd_setting_type_name(s->type)));
    json_t *d = default_text ? json_loads(default_text, JSON_DECODE_ANY, NULL) : NULL;
    json_object_set_new(o, "required", json_boolean(!default_text));
    json_object_set_new(o, "default", d ? d : json_null());
    switch (s->type) {
    case SD_SETTING_INT:
        json_object_set_new(o, "min", json_integer((json_int_t)s->min));
        json_object_set_new(o, "max", json_integer((json_int_t)s->max));
        break;
    case SD_SETTING_BOOL: break;
    case SD_SETTING_CHOICE: json_object_set_new(o, "choices", choices_json(s->choices)); break;
    case SD_SETTING_URL:
    case SD_SETTING_STRING:
    case SD_SETTING_SECRET:
    case SD_SETTING_PATH:
        json_object_set_new(o, "min_length", json_integer((json_int_t)s->min));
        json_object_set_new(o, "max_length", json_integer((json_int_t)s->max));
        if (s->type == SD_SETTING_URL) {
            json_object_set_new(o, "schemes", choices_json(s->choices));
        }
        break;
    }
    json_object_set_new(o, "help", json_string(s->help ? s->help : ""));
    return o;
}

json_t *sd_connector_describe(const struct sd_connector *c)
{
    json_t *settings = json_array();
    for (const struct sd_setting *s = c->settings; s && s->key; s++) {
        json_array_append_new(settings, setting_json(s, s->default_value));
    }
    if (c->kind & SD_CONNECTOR_SOURCE) {
        char *d = sd_asprintf("\"%s\"", c->name); /* connector names are [a-z0-9_] */
        json_array_append_new(settings, setting_json(&source_setting, d));
        free(d);
    }
    return json_pack("{s:s, s:s, s:s, s:s?, s:o}", "name", c->name, "kind", kind_name(c->kind),
                     "help", c->help ? c->help : "", "default_schedule", c->default_schedule,
                     "settings", settings);
}

/* Text for a Markdown table cell, or as it is (md false). In Markdown '|' is escaped (a table
 * cell, code spans included), and in prose also '*' ("events*.csv, sales*.csv" is no
 * emphasis); line breaks become spaces. */
static void cell_text(struct sd_buf *out, const char *text, bool md, bool prose)
{
    for (const char *p = text ? text : ""; *p; p++) {
        if (md && (*p == '|' || (prose && *p == '*'))) {
            sd_buf_append(out, "\\", 1);
            sd_buf_append(out, p, 1);
        } else if (md && (*p == '\n' || *p == '\r')) {
            sd_buf_append(out, " ", 1);
        } else {
            sd_buf_append(out, p, 1);
        }
    }
}

static void cell(struct sd_buf *out, const char *text, bool md)
{
    cell_text(out, text, md, true);
}

/* A value as code: `x` in Markdown, x in text. */
static void code(struct sd_buf *out, const char *text, bool md)
{
    if (md) {
        sd_buf_append(out, "`", 1);
    }
    cell_text(out, text, md, false);
    if (md) {
        sd_buf_append(out, "`", 1);
    }
}

static void code_list(struct sd_buf *out, const char *const *items, bool md)
{
    for (size_t i = 0; items && items[i]; i++) {
        if (i) {
            sd_buf_append(out, ", ", 2);
        }
        code(out, items[i], md);
    }
}

static void length_text(struct sd_buf *out, const struct sd_setting *s)
{
    if (s->min > 0) {
        sd_buf_printf(out, "%lld to %lld characters", (long long)s->min, (long long)s->max);
    } else {
        sd_buf_printf(out, "at most %lld characters", (long long)s->max);
    }
}

/* The default column: "(required)", `""`, `auto`, `60`. */
static void default_cell(struct sd_buf *out, const char *default_text, bool md)
{
    json_t *d = default_text ? json_loads(default_text, JSON_DECODE_ANY, NULL) : NULL;
    if (!default_text) {
        sd_buf_printf(out, "(required)");
    } else if (json_is_string(d) && json_string_length(d) == 0) {
        code(out, "\"\"", md);
    } else if (json_is_string(d)) {
        code(out, json_string_value(d), md);
    } else {
        code(out, default_text, md);
    }
    json_decref(d);
}

/* The values column: bounds, choices or schemes. */
static void values_cell(struct sd_buf *out, const struct sd_setting *s, bool md)
{
    switch (s->type) {
    case SD_SETTING_INT:
        if (s->max == INT64_MAX) {
            sd_buf_printf(out, "%lld or more", (long long)s->min);
        } else {
            sd_buf_printf(out, "%lld to %lld", (long long)s->min, (long long)s->max);
        }
        break;
    case SD_SETTING_BOOL: code_list(out, (const char *const[]){"true", "false", NULL}, md); break;
    case SD_SETTING_CHOICE: code_list(out, s->choices, md); break;
    case SD_SETTING_URL:
        sd_buf_printf(out, "scheme ");
        code_list(out, s->choices, md);
        sd_buf_printf(out, "; ");
        length_text(out, s);
        break;
    case SD_SETTING_STRING:
    case SD_SETTING_SECRET:
    case SD_SETTING_PATH: length_text(out, s); break;
    }
}

static void md_row(struct sd_buf *out, const struct sd_setting *s, const char *default_text)
{
    sd_buf_printf(out, "| `%s` | %s | ", s->key, sd_setting_type_name(s->type));
    default_cell(out, default_text, true);
    sd_buf_printf(out, " | ");
    values_cell(out, s, true);
    sd_buf_printf(out, " | ");
    cell(out, s->help, true);
    sd_buf_printf(out, " |\n");
}

static void text_row(struct sd_buf *out, const struct sd_setting *s, const char *default_text)
{
    struct sd_buf d = {0};
    default_cell(&d, default_text, false);
    sd_buf_printf(out, "  %-18s %-7s %-14s ", s->key, sd_setting_type_name(s->type),
                  d.data ? d.data : "");
    sd_buf_release(&d);
    values_cell(out, s, false);
    sd_buf_printf(out, "\n  %-18s ", "");
    cell(out, s->help, false);
    sd_buf_printf(out, "\n");
}

/* Each row of c's table, then a source's implicit "source". */
static void rows(const struct sd_connector *c, struct sd_buf *out,
                 void (*row)(struct sd_buf *, const struct sd_setting *, const char *))
{
    for (const struct sd_setting *s = c->settings; s && s->key; s++) {
        row(out, s, s->default_value);
    }
    if (c->kind & SD_CONNECTOR_SOURCE) {
        char *d = sd_asprintf("\"%s\"", c->name);
        row(out, &source_setting, d);
        free(d);
    }
}

void sd_connector_markdown(const struct sd_connector *c, struct sd_buf *out)
{
    sd_buf_printf(out, "<!-- BEGIN GENERATED: %s -->\n", c->name);
    sd_buf_printf(out, "`%s` (%s", c->name, kind_name(c->kind));
    if (c->default_schedule) {
        sd_buf_printf(out, ", default schedule `%s`", c->default_schedule);
    }
    sd_buf_printf(out, "): ");
    cell(out, c->help, true);
    sd_buf_printf(out, ".\n\n| setting | type | default | values | |\n|---|---|---|---|---|\n");
    rows(c, out, md_row);
    sd_buf_printf(out, "<!-- END GENERATED -->\n");
}

void sd_connector_text(const struct sd_connector *c, struct sd_buf *out)
{
    sd_buf_printf(out, "%s (%s", c->name, kind_name(c->kind));
    if (c->default_schedule) {
        sd_buf_printf(out, ", default schedule \"%s\"", c->default_schedule);
    }
    sd_buf_printf(out, "): %s\n", c->help ? c->help : "");
    sd_buf_printf(out, "  %-18s %-7s %-14s %s\n", "SETTING", "TYPE", "DEFAULT", "VALUES / HELP");
    rows(c, out, text_row);
}
