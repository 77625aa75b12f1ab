/* archtics_out_map.c — customers out to Archtics, the pure parts (archtics_out.h): stagedoor's
 * customer fields → Archtics customer fields, their Char(n) widths, and the merge of a
 * customer_query answer with stagedoor's fields into a full customer_update. The outbox hooks
 * that use them are archtics_out.c.
 *
 * Invariants: no value is ever truncated (one that does not fit refuses the write, naming the
 * field and its width); a customer_update carries every field Archtics held a moment before
 * (it blanks what it is not sent); other_info_* sit at command1 level. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/base.h"
#include "base/utf8.h"
#include "connectors/archtics/archtics_out.h"

const struct archtics_width archtics_customer_widths[] = {
    {"name_first", 40},
    {"name_mi", 1},
    {"name_last", 80},
    {"title", 10},
    {"company_name", 100},
    {"street_addr_1", 40},
    {"street_addr_2", 40},
    {"city", 20},
    {"state", 2},
    {"zip", 10},
    {"country", 8},
    {"phone_day", 15},
    {"phone_eve", 15},
    {"phone_fax", 10},
    {"phone_cell", 15},
    {"email", 100},
    {"birth_date", 10},
    {"gender", 1},
    {"email_optout", 1},
    {"email_deliv_opt", 1},
    {"text_on_mobile_phone", 1},
    {"ext_system_id_1", 10},
    {"ext_system_id_2", 10},
    {NULL, 0},
};

/* stagedoor's model fields that have an Archtics customer field of another name */
static const struct {
    const char *model;
    const char *ats;
} renamed[] = {
    {"email", "email"},
    {"first_name", "name_first"},
    {"last_name", "name_last"},
    {"salutation", "title"},
    {"street", "street_addr_1"},
    {"post_code", "zip"},
    {"ad_opt_out", "email_optout"},
};

int archtics_field_width(const char *field)
{
    for (const struct archtics_width *w = archtics_customer_widths; w->field; w++) {
        if (strcmp(w->field, field) == 0) {
            return w->width;
        }
    }
    if (strcmp(field, "name_type") == 0) {
        return 1;
    }
    if (strncmp(field, "other_info_", 11) == 0) {
        char *end = NULL;
        long n = strtol(field + 11, &end, 10);
        if (end != field + 11 && *end == '\0' && n >= 1 && n <= ARCHTICS_OTHER_INFO_N) {
            return ARCHTICS_OTHER_INFO_WIDTH;
        }
    }
    return 0;
}

size_t archtics_char_count(const char *s)
{
    size_t n = 0, len = strlen(s);
    for (size_t i = 0; i < len; n++) {
        size_t k = sd_utf8_seq_len(s + i, len - i);
        i += k ? k : 1;
    }
    return n;
}

static const char *model_name_of(const char *ats)
{
    for (size_t i = 0; i < sizeof(renamed) / sizeof(renamed[0]); i++) {
        if (strcmp(renamed[i].ats, ats) == 0) {
            return renamed[i].model;
        }
    }
    return NULL;
}

/* Put field = text into out unless it does not fit: -EMSGSIZE with why. */
static int put_checked(json_t *out, const char *field, const char *from, const char *text,
                       char *why, size_t why_size)
{
    int width = archtics_field_width(field);
    size_t n = archtics_char_count(text);
    if (width > 0 && n > (size_t)width) {
        if (strcmp(field, from) == 0) {
            snprintf(why, why_size,
                     "%s is %zu characters long; Archtics holds at most %d (Char(%d)): not sent",
                     field, n, width, width);
        } else {
            snprintf(why, why_size,
                     "%s (from %s) is %zu characters long; Archtics holds at most %d "
                     "(Char(%d)): not sent",
                     field, from, n, width, width);
        }
        return -EMSGSIZE;
    }
    json_object_set_new(out, field, json_string(text));
    return 0;
}

int archtics_out_fields(const json_t *record, json_t **ret, char *why, size_t why_size)
{
    json_t *out = json_object();
    int r = 0;
    for (size_t i = 0; r == 0 && i < sizeof(renamed) / sizeof(renamed[0]); i++) {
        const json_t *v = json_object_get(record, renamed[i].model);
        if (json_is_boolean(v)) {
            r = put_checked(out, renamed[i].ats, renamed[i].model, json_is_true(v) ? "1" : "0", why,
                            why_size);
        } else if (json_is_string(v)) {
            r = put_checked(out, renamed[i].ats, renamed[i].model, json_string_value(v), why,
                            why_size);
        }
    }
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)record, key, v)
    {
        /* members named as Archtics fields (kept from an extract or another source); a field
         * stagedoor has under its own name (email, first_name …) wins over a stray copy */
        if (r < 0 || !json_is_string(v) || archtics_field_width(key) == 0 ||
            strcmp(key, "name_type") == 0 || model_name_of(key)) {
            continue;
        }
        r = put_checked(out, key, key, json_string_value(v), why, why_size);
    }
    if (r < 0) {
        json_decref(out);
        return r;
    }
    *ret = out;
    return 0;
}

int archtics_out_add_params(const json_t *fields, json_t **ret, char *why, size_t why_size)
{
    const char *last = json_string_value(json_object_get(fields, "name_last"));
    const char *email = json_string_value(json_object_get(fields, "email"));
    if (!last || !*last) {
        snprintf(why, why_size,
                 "customer_add needs name_last (from last_name) for an "
                 "individual's account: not sent");
        return -EINVAL;
    }
    if (!email || !*email) {
        snprintf(why, why_size,
                 "customer_add needs email: without it a repeated add would "
                 "create a second account: not sent");
        return -EINVAL;
    }
    json_t *cust = json_deep_copy(fields);
    json_object_set_new(cust, "name_type", json_string("I"));
    *ret = json_pack("{s:o}", "customer", cust);
    return 0;
}

/* member key of obj, exact first, else without regard to ASCII case (servers vary it) */
static const json_t *get_ci(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    if (v || !json_is_object(obj)) {
        return v;
    }
    const char *k;
    const json_t *x;
    json_object_foreach((json_t *)obj, k, x)
    {
        if (strcasecmp(k, key) == 0) {
            return x;
        }
    }
    return NULL;
}

/* a scalar as text (numbers in decimal, as servers send them either way), or NULL */
static json_t *text_of(const json_t *v)
{
    if (json_is_string(v)) {
        return json_string(json_string_value(v));
    }
    if (json_is_integer(v)) {
        char b[32];
        snprintf(b, sizeof(b), "%lld", (long long)json_integer_value(v));
        return json_string(b);
    }
    if (json_is_real(v)) {
        char b[64];
        snprintf(b, sizeof(b), "%.15g", json_real_value(v));
        return json_string(b);
    }
    return NULL;
}

json_t *archtics_out_update_params(const json_t *query_c1, const json_t *fields, int64_t acct_id,
                                   const char *alt_id_type, const char *alt_id, char *why,
                                   size_t why_size)
{
    const json_t *have = get_ci(query_c1, "customer");
    if (!json_is_object(have)) {
        snprintf(why, why_size, "customer_query answered without a customer object");
        return NULL;
    }
    json_t *cust = json_object();
    json_object_set_new(cust, "acct_id", json_integer(acct_id));
    for (const struct archtics_width *w = archtics_customer_widths; w->field; w++) {
        const json_t *ours = json_object_get(fields, w->field);
        json_t *t = ours ? json_incref((json_t *)ours) : text_of(get_ci(have, w->field));
        json_object_set_new(cust, w->field, t ? t : json_string(""));
    }
    if (alt_id_type && *alt_id_type && alt_id && *alt_id) {
        json_object_set_new(
            cust, "alt_id_array",
            json_pack("[{s:s, s:s}]", "alt_id_type", alt_id_type, "alt_id", alt_id));
    }
    json_t *params = json_pack("{s:o}", "customer", cust);
    for (int i = 1; i <= ARCHTICS_OTHER_INFO_N; i++) {
        char name[24];
        snprintf(name, sizeof(name), "other_info_%d", i);
        json_t *t = text_of(get_ci(query_c1, name));
        json_object_set_new(params, name, t ? t : json_string(""));
    }
    return params;
}
