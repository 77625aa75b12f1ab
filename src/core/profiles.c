/* profiles.c — request bodies, views and writer jobs of unified customers (see profiles.h).
 *
 * Bodies are checked completely before anything is stored, every problem reported with a JSON
 * Pointer. E-mail addresses given by operators (suppressions, lookups) are turned into keys with
 * the validator's own rule (sd_text_fold), so an address matches however it was capitalised or
 * padded at ingest. Addresses never reach the log. */
#include "core/profiles.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "core/connector_config.h"
#include "core/inbound.h"

/* "/" + key with RFC 6901 escapes (~0, ~1). */
static char *member_pointer(const char *key)
{
    struct sd_buf b;
    sd_buf_init(&b);
    sd_buf_puts(&b, "/");
    for (const char *p = key; *p; p++) {
        if (*p == '~') {
            sd_buf_puts(&b, "~0");
        } else if (*p == '/') {
            sd_buf_puts(&b, "~1");
        } else {
            sd_buf_append(&b, p, 1);
        }
    }
    return sd_buf_steal(&b);
}

static void check_members(const json_t *body, const char *const *allowed, struct sd_issues *errors)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v)
    {
        bool ok = false;
        for (size_t i = 0; allowed[i]; i++) {
            ok = ok || strcmp(key, allowed[i]) == 0;
        }
        if (!ok) {
            char *ptr = member_pointer(key);
            sd_issues_add(errors, ptr, "unknown member");
            free(ptr);
        }
    }
}

static bool body_object(const json_t *body, struct sd_issues *errors)
{
    if (!json_is_object(body)) {
        sd_issues_add(errors, "", "request body must be a JSON object");
        return false;
    }
    return true;
}

json_t *sd_profile_view(const struct sd_profile *p)
{
    json_t *emails = json_array();
    json_t *sources = json_array();
    for (size_t i = 0; i < p->n_members; i++) {
        const struct sd_profile_member *m = &p->members[i];
        bool seen = !m->email;
        for (size_t j = 0; j < i && !seen; j++) {
            seen = p->members[j].email && strcmp(p->members[j].email, m->email) == 0;
        }
        if (!seen) {
            json_array_append_new(emails, json_string(m->email));
        }
        json_t *o = json_pack("{s:s, s:s, s:o}", "source", m->source ? m->source : "",
                              "customer_id", m->customer_id ? m->customer_id : "", "email",
                              m->email ? json_string(m->email) : json_null());
        if (m->first_name) {
            json_object_set_new(o, "first_name", json_string(m->first_name));
        }
        if (m->last_name) {
            json_object_set_new(o, "last_name", json_string(m->last_name));
        }
        json_object_set_new(o, "ad_opt_out",
                            m->ad_opt_out < 0 ? json_null() : json_boolean(m->ad_opt_out == 1));
        json_object_set_new(o, "pinned", json_boolean(m->pinned));
        json_t *rec = m->doc ? json_loads(m->doc, 0, NULL) : NULL;
        json_object_set_new(o, "record", rec ? rec : json_null());
        json_array_append_new(sources, o);
    }
    return json_pack("{s:I, s:b, s:b, s:o, s:o, s:o, s:o}", "profile_id", (json_int_t)p->id,
                     "opt_out", p->opt_out, "suppressed", p->suppressed, "emails", emails,
                     "sources", sources, "created_at", sd_json_time(p->created_usec), "updated_at",
                     sd_json_time(p->updated_usec));
}

int sd_profiles_parse_id(const char *s, int64_t *ret)
{
    int64_t v = 0;
    if (!s || !*s || strlen(s) > 18) {
        return -EINVAL;
    }
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') {
            return -EINVAL;
        }
        v = v * 10 + (*p - '0');
    }
    if (v <= 0) {
        return -EINVAL;
    }
    *ret = v;
    return 0;
}

char *sd_profiles_email_key(const char *email)
{
    if (!email || !sd_utf8_valid(email, strlen(email))) {
        return NULL;
    }
    char *key = sd_text_fold(email);
    if (!key || !sd_email_valid(key)) {
        free(key);
        return NULL;
    }
    return key;
}

json_t *sd_profiles_tenant_view(struct sd_store_handle *st, const struct sd_tenant *t)
{
    enum sd_link_rule rule = SD_LINK_EMAIL;
    if (sd_store_profile_link_rule_get(st, t->client_id, &rule) < 0) {
        return NULL;
    }
    return json_pack("{s:s, s:s, s:s, s:I, s:I, s:o}", "client_id", t->client_id, "name",
                     t->name ? t->name : "", "link_rule", sd_link_rule_name(rule), "per_minute",
                     (json_int_t)t->per_minute, "burst", (json_int_t)t->burst, "created_at",
                     sd_json_time(t->created_usec));
}

int sd_profiles_tenant_patch(struct sd_store_handle *st, const char *client_id, const json_t *body,
                             struct sd_issues *errors)
{
    if (!body_object(body, errors)) {
        return -EINVAL;
    }
    static const char *const allowed[] = {"link_rule", NULL};
    check_members(body, allowed, errors);
    const json_t *v = json_object_get(body, "link_rule");
    enum sd_link_rule rule = SD_LINK_EMAIL;
    if (!v) {
        if (errors->total == 0) {
            sd_issues_add(errors, "", "nothing to change: send \"link_rule\"");
        }
    } else if (!json_is_string(v) || sd_link_rule_parse(json_string_value(v), &rule) < 0) {
        sd_issues_add(errors, "/link_rule",
                      "must be one of \"email\", \"email_and_last_name\", \"none\"");
    }
    if (errors->total > 0) {
        return -EINVAL;
    }
    return sd_store_profile_link_rule_set(st, client_id, rule);
}

void sd_profiles_keys_free(char **keys, size_t n)
{
    if (!keys) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        free(keys[i]);
    }
    free(keys);
}

int sd_profiles_parse_suppress(const json_t *body, enum sd_env *ret_env, char ***ret_keys,
                               size_t *ret_n, struct sd_issues *errors)
{
    if (!body_object(body, errors)) {
        return -EINVAL;
    }
    static const char *const allowed[] = {"environment", "emails", NULL};
    check_members(body, allowed, errors);
    enum sd_env env = SD_ENV_TEST;
    const json_t *e = json_object_get(body, "environment");
    if (!e) {
        sd_issues_add(errors, "/environment", "required: \"test\" or \"prod\"");
    } else if (!json_is_string(e) || sd_env_parse(json_string_value(e), &env) < 0) {
        sd_issues_add(errors, "/environment", "must be \"test\" or \"prod\"");
    }
    const json_t *arr = json_object_get(body, "emails");
    char **keys = NULL;
    size_t n = 0;
    if (!arr) {
        sd_issues_add(errors, "/emails", "required: an array of e-mail addresses");
    } else if (!json_is_array(arr) || json_array_size(arr) == 0) {
        sd_issues_add(errors, "/emails", "must be a non-empty array of e-mail addresses");
    } else if (json_array_size(arr) > SD_SUPPRESS_MAX) {
        sd_issues_add(errors, "/emails", "at most %d addresses per request", SD_SUPPRESS_MAX);
    } else {
        keys = sd_calloc(json_array_size(arr), sizeof(*keys));
        size_t i;
        json_t *v;
        json_array_foreach(arr, i, v)
        {
            char ptr[32];
            snprintf(ptr, sizeof(ptr), "/emails/%zu", i);
            char *key = json_is_string(v) ? sd_profiles_email_key(json_string_value(v)) : NULL;
            if (!key) {
                sd_issues_add(errors, ptr, "must be a valid e-mail address");
                continue;
            }
            keys[n++] = key;
        }
    }
    if (errors->total > 0) {
        sd_profiles_keys_free(keys, n);
        return -EINVAL;
    }
    *ret_env = env;
    *ret_keys = keys;
    *ret_n = n;
    return 0;
}

static const char *want_id(const json_t *body, const char *name, struct sd_issues *errors)
{
    const json_t *v = json_object_get(body, name);
    char ptr[32];
    sd_utf8_snprintf(ptr, sizeof(ptr), "/%s", name);
    if (!v) {
        sd_issues_add(errors, ptr, "required");
        return NULL;
    }
    const char *s = json_string_value(v);
    if (!s || !*s || strlen(s) > 256) {
        sd_issues_add(errors, ptr, "must be a non-empty string of at most 256 bytes");
        return NULL;
    }
    return s;
}

int sd_profiles_parse_split(const json_t *body, const char **ret_source,
                            const char **ret_customer_id, struct sd_issues *errors)
{
    if (!body_object(body, errors)) {
        return -EINVAL;
    }
    static const char *const allowed[] = {"source", "customer_id", NULL};
    check_members(body, allowed, errors);
    const char *source = want_id(body, "source", errors);
    const char *cid = want_id(body, "customer_id", errors);
    if (errors->total > 0) {
        return -EINVAL;
    }
    *ret_source = source;
    *ret_customer_id = cid;
    return 0;
}

/* ---- writer jobs ------------------------------------------------------------------------------
 */

struct job {
    int64_t tenant_id;
    enum sd_env env;
    /* suppress */
    char *const *keys;
    size_t n_keys;
    struct sd_suppress_result sup;
    /* split */
    int64_t profile_id;
    int64_t new_id;
    /* split, erase */
    const char *source;
    const char *customer_id;
    struct sd_erasure_result erased;
};

static int suppress_run(struct sd_store_handle *st, struct sd_write_job *wj)
{
    struct job *j = wj->arg;
    return sd_store_profile_suppress(st, j->tenant_id, j->env, (const char *const *)j->keys,
                                     j->n_keys, &j->sup);
}

static int split_run(struct sd_store_handle *st, struct sd_write_job *wj)
{
    struct job *j = wj->arg;
    return sd_store_profile_split(st, j->tenant_id, j->env, j->profile_id, j->source,
                                  j->customer_id, &j->new_id);
}

static int erase_run(struct sd_store_handle *st, struct sd_write_job *wj)
{
    struct job *j = wj->arg;
    /* The raw vendor payloads that mention the person go with the records (same transaction). */
    int r = sd_inbound_forget_person(st, j->tenant_id, j->env, j->source, j->customer_id);
    if (r < 0) {
        return r;
    }
    return sd_store_profile_erase(st, j->tenant_id, j->env, j->source, j->customer_id, &j->erased);
}

/* A suppression batch goes to the writer in chunks of this many addresses, each its own job
 * and commit, so other writes (webhooks) interleave: one chunk holds the writer for a few
 * milliseconds (each address is two index lookups and an insert). */
#define SUPPRESS_CHUNK 500

int sd_profiles_suppress(struct sd_writer *w, int64_t tenant_id, enum sd_env env,
                         char *const *email_keys, size_t n, struct sd_suppress_result *ret)
{
    /* The answer covers the whole batch and is given only once every chunk committed. A crash
     * or failure in between leaves the chunks already committed on the list; sending the batch
     * again is safe (an address already there counts as already suppressed). */
    struct sd_suppress_result sum = {0};
    size_t done = 0;
    do {
        size_t take = n - done < SUPPRESS_CHUNK ? n - done : SUPPRESS_CHUNK;
        struct job j = {
            .tenant_id = tenant_id, .env = env, .keys = email_keys + done, .n_keys = take};
        int r = sd_writer_run_sync(w, suppress_run, &j);
        if (r < 0) {
            return r;
        }
        sum.added += j.sup.added;
        sum.profiles_suppressed += j.sup.profiles_suppressed;
        done += take;
    } while (done < n);
    if (ret) {
        *ret = sum;
    }
    return 0;
}

int sd_profiles_split(struct sd_writer *w, int64_t tenant_id, enum sd_env env, int64_t profile_id,
                      const char *source, const char *customer_id, int64_t *ret_new_id)
{
    struct job j = {.tenant_id = tenant_id,
                    .env = env,
                    .profile_id = profile_id,
                    .source = source,
                    .customer_id = customer_id};
    int r = sd_writer_run_sync(w, split_run, &j);
    if (r == 0 && ret_new_id) {
        *ret_new_id = j.new_id;
    }
    return r;
}

int sd_profiles_erase(struct sd_writer *w, int64_t tenant_id, enum sd_env env, const char *source,
                      const char *customer_id, struct sd_erasure_result *ret)
{
    struct job j = {
        .tenant_id = tenant_id, .env = env, .source = source, .customer_id = customer_id};
    int r = sd_writer_run_sync(w, erase_run, &j);
    if (r == 0 && ret) {
        *ret = j.erased;
    }
    return r;
}
