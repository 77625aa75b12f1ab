/* segments.c — segments (segments.h): checking a definition, counting and paging members
 * through the store, and the JSON view the API shows.
 *
 * The rule is parsed on every use (it is small and parsing is microseconds), never cached:
 * the stored text is the truth, and a rule that no longer parses — a later release dropped a
 * field — fails that call with -EINVAL instead of silently meaning something else.
 * Counting happens before the write that stores the count, outside any transaction: the count
 * is what the rule matched at computed_usec, which is what the API reports. Counting freezes
 * the member ids in a snapshot (store/audience.h) whose id the answer carries; member pages
 * read a snapshot by keyset, so the count and the pages agree and no page recomputes the rule. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/log.h"
#include "core/connector_config.h"
#include "core/segment_jobs.h"
#include "core/segment_rules.h"
#include "core/segments.h"
#include "store/observe.h"

/* A computed count joins the segment's size history: at most one point per segment per 10
 * minutes, kept 400 days (the store's rule, store/observe.h). A failure costs a point, never
 * the computation. */
static void note_size(struct sd_hub *hub, int64_t tenant_id, enum sd_env env, const char *id,
                      int64_t count, int64_t at_usec)
{
    int r = sd_store_observe_segment_size_record(hub->store, tenant_id, env, id, at_usec, count);
    if (r < 0) {
        sd_log(SD_LOG_WARN, "cannot record a segment's size; the point is skipped",
               "segment=\"%s\" " SD_LOG_ERR_FMT, id, SD_LOG_ERR_ARGS(r));
    }
}

void sd_segment_free(struct sd_segment *s)
{
    if (!s) {
        return;
    }
    free(s->id);
    free(s->name);
    free(s->description);
    json_decref(s->rules);
    free(s);
}

void sd_segments_free(struct sd_segment **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) {
        sd_segment_free(v[i]);
    }
    free(v);
}

/* A segment from a stored row (the row's strings are taken over). */
static struct sd_segment *from_row(struct sd_segment_row *row)
{
    struct sd_segment *s = sd_calloc(1, sizeof(*s));
    s->id = row->id;
    s->tenant_id = row->tenant_id;
    s->env = row->env;
    s->name = row->name;
    s->description = row->description;
    json_error_t jerr;
    s->rules = row->rules ? json_loads(row->rules, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    if (!s->rules) {
        s->rules = json_null();
    }
    free(row->rules);
    s->member_count = row->member_count;
    s->computed_usec = row->computed_usec;
    s->created_usec = row->created_usec;
    s->updated_usec = row->updated_usec;
    *row = (struct sd_segment_row){0};
    return s;
}

int sd_segment_load(struct sd_hub *hub, int64_t tenant_id, enum sd_env env, const char *segment_id,
                    struct sd_segment **ret)
{
    if (!segment_id) {
        return -ENOENT;
    }
    struct sd_segment_row row = {0};
    int r = sd_store_segment_get(hub->store, tenant_id, env, segment_id, &row);
    if (r < 0) {
        return r == -EINVAL ? -ENOENT : r;
    }
    *ret = from_row(&row);
    return 0;
}

static void move_page(struct sd_seg_member_page *sp_in, struct sd_member_page *ret);

void sd_member_page_release(struct sd_member_page *p)
{
    if (!p) {
        return;
    }
    for (size_t i = 0; i < p->n; i++) {
        struct sd_member *m = &p->v[i];
        free(m->email);
        for (size_t j = 0; j < m->n_sources; j++) {
            free(m->sources[j].source);
            free(m->sources[j].customer_id);
        }
        free(m->sources);
    }
    free(p->v);
    *p = (struct sd_member_page){0};
}

/* The budget of a computation: the caller's, or the hub's default one. */
static struct sd_seg_budget budget_of(struct sd_hub *hub, const struct sd_seg_budget *b)
{
    return b ? *b : sd_segment_jobs_budget(hub->segment_jobs);
}

int sd_segment_members(struct sd_hub *hub, const struct sd_segment *seg, int64_t after,
                       size_t limit, struct sd_member_page *ret)
{
    return sd_segment_members_within(hub, seg, after, limit, NULL, ret);
}

int sd_segment_members_within(struct sd_hub *hub, const struct sd_segment *seg, int64_t after,
                              size_t limit, const struct sd_seg_budget *budget,
                              struct sd_member_page *ret)
{
    if (!seg || limit < 1 || limit > SD_SEGMENT_MEMBERS_MAX) {
        return -EINVAL;
    }
    struct sd_issues errors;
    sd_issues_init(&errors, 1);
    struct sd_seg_rule *rule = NULL;
    int r = sd_seg_rule_parse(seg->rules, "/rules", &rule, &errors);
    sd_issues_release(&errors);
    if (r < 0) {
        return -EINVAL;
    }
    struct sd_seg_member_page sp = {0};
    struct sd_seg_budget b = budget_of(hub, budget);
    r = sd_store_segment_members(hub->store, seg->tenant_id, seg->env, rule, sd_now_usec(), after,
                                 limit, &b, &sp);
    sd_seg_rule_free(rule);
    if (r < 0) {
        return r;
    }
    move_page(&sp, ret);
    return 0;
}

/* Same shape, core's names: move every pointer of sp over to *ret. */
static void move_page(struct sd_seg_member_page *sp_in, struct sd_member_page *ret)
{
    struct sd_seg_member_page sp = *sp_in;
    *sp_in = (struct sd_seg_member_page){0};
    struct sd_member_page page = {
        .v = sd_calloc(sp.n ? sp.n : 1, sizeof(*page.v)),
        .n = sp.n,
        .has_more = sp.has_more,
        .next_after = sp.next_after,
    };
    for (size_t i = 0; i < sp.n; i++) {
        struct sd_seg_member *m = &sp.v[i];
        page.v[i].profile_id = m->profile_id;
        page.v[i].email = m->email;
        page.v[i].n_sources = m->n_sources;
        page.v[i].sources = sd_calloc(m->n_sources ? m->n_sources : 1, sizeof(*page.v[i].sources));
        for (size_t j = 0; j < m->n_sources; j++) {
            page.v[i].sources[j].source = m->sources[j].source;
            page.v[i].sources[j].customer_id = m->sources[j].customer_id;
        }
        free(m->sources);
        *m = (struct sd_seg_member){0};
    }
    sd_seg_member_page_release(&sp);
    *ret = page;
}

/* The stored rule of seg, parsed: -EINVAL if it no longer parses. */
static int rule_of(const struct sd_segment *seg, struct sd_seg_rule **ret)
{
    struct sd_issues errors;
    sd_issues_init(&errors, 1);
    int r = sd_seg_rule_parse(seg->rules, "/rules", ret, &errors);
    sd_issues_release(&errors);
    return r < 0 ? -EINVAL : 0;
}

int sd_segment_members_snapshot(struct sd_hub *hub, const struct sd_segment *seg,
                                int64_t snapshot_id, int64_t after, size_t limit,
                                const struct sd_seg_budget *budget, struct sd_member_page *ret)
{
    if (!seg || limit < 1 || limit > SD_SEGMENT_MEMBERS_MAX || snapshot_id < 0) {
        return -EINVAL;
    }
    int r = 0;
    if (snapshot_id == 0) {
        struct sd_seg_rule *rule = NULL;
        r = rule_of(seg, &rule);
        int64_t now = sd_now_usec(), count = 0;
        if (r == 0) {
            struct sd_seg_budget b = budget_of(hub, budget);
            r = sd_store_segment_snapshot_create(hub->store, seg->tenant_id, seg->env, seg->id,
                                                 rule, now, SD_SEGMENT_SNAPSHOT_TTL_USEC, &b,
                                                 &snapshot_id, &count);
        }
        sd_seg_rule_free(rule);
        if (r == 0) {
            /* The segment's count is this snapshot's from now on: the count agrees with the
             * pages being read. */
            r = sd_store_segment_set_count(hub->store, seg->tenant_id, seg->env, seg->id, count,
                                           now);
        }
        if (r == 0) {
            note_size(hub, seg->tenant_id, seg->env, seg->id, count, now);
        }
        if (r < 0) {
            return r;
        }
    }
    struct sd_seg_member_page sp = {0};
    r = sd_store_segment_snapshot_members(hub->store, seg->tenant_id, seg->env, seg->id,
                                          snapshot_id, sd_now_usec(), after, limit, &sp);
    if (r < 0) {
        return r == -ENOENT ? -ESTALE : r;
    }
    int64_t total = sp.total;
    move_page(&sp, ret);
    ret->snapshot_id = snapshot_id;
    ret->member_count = total;
    return 0;
}

/* ---- definitions ------------------------------------------------------------------------------
 */

/* A string member for a name or description: NULL if absent, reported if not a string, not
 * valid text or too long. */
static const char *want_text(const json_t *body, const char *key, size_t max, bool required,
                             bool *ok, struct sd_issues *errors)
{
    const json_t *v = json_object_get(body, key);
    char ptr[64];
    sd_utf8_snprintf(ptr, sizeof(ptr), "/%s", key);
    if (!v) {
        if (required) {
            sd_issues_add(errors, ptr, "required field is missing");
            *ok = false;
        }
        return NULL;
    }
    if (!json_is_string(v)) {
        sd_issues_add(errors, ptr, "must be a string");
        *ok = false;
        return NULL;
    }
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (strlen(s) != len) {
        sd_issues_add(errors, ptr, "must not contain NUL characters");
        *ok = false;
        return NULL;
    }
    if (len > max) {
        sd_issues_add(errors, ptr, "must be at most %zu bytes long", max);
        *ok = false;
        return NULL;
    }
    if (required) {
        char *f = sd_text_fold(s);
        bool blank = f[0] == '\0';
        free(f);
        if (blank) {
            sd_issues_add(errors, ptr, "must not be empty");
            *ok = false;
            return NULL;
        }
    }
    return s;
}

/* Check a create (all of name and rules required) or update (everything optional) body. On
 * success the body's parts are in the out-parameters (borrowed; rule_text and *ret_rule new). */
static int check_body(const json_t *body, bool create, const char **ret_name, const char **ret_desc,
                      char **ret_rule_text, struct sd_seg_rule **ret_rule, struct sd_issues *errors)
{
    if (!json_is_object(body)) {
        sd_issues_add(errors, "", "request body must be a JSON object");
        return -EINVAL;
    }
    bool ok = true;
    static const char *const known[] = {"segment_name", "description", "rules", NULL};
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)body, key, val)
    {
        bool found = false;
        for (size_t i = 0; known[i]; i++) {
            found = found || strcmp(key, known[i]) == 0;
        }
        if (!found) {
            struct sd_buf ptr;
            sd_buf_init(&ptr);
            sd_buf_puts(&ptr, "/");
            for (const char *k = key; *k; k++) { /* RFC 6901 escapes */
                sd_buf_puts(&ptr, *k == '~' ? "~0" : *k == '/' ? "~1" : (char[]){*k, 0});
            }
            sd_issues_add(errors, ptr.data, "unknown field (use segment_name, description, rules)");
            sd_buf_release(&ptr);
            ok = false;
        }
    }
    *ret_name = want_text(body, "segment_name", SD_SEGMENT_NAME_MAX, create, &ok, errors);
    if (!create && *ret_name) {
        /* An update may not blank the name either. */
        char *f = sd_text_fold(*ret_name);
        if (!f[0]) {
            sd_issues_add(errors, "/segment_name", "must not be empty");
            ok = false;
        }
        free(f);
    }
    *ret_desc = want_text(body, "description", SD_SEGMENT_DESCRIPTION_MAX, false, &ok, errors);
    const json_t *rules = json_object_get(body, "rules");
    *ret_rule = NULL;
    *ret_rule_text = NULL;
    if (!rules) {
        if (create) {
            sd_issues_add(errors, "/rules", "required field is missing");
            ok = false;
        }
    } else if (sd_seg_rule_parse(rules, "/rules", ret_rule, errors) < 0) {
        ok = false;
    }
    if (!ok) {
        sd_seg_rule_free(*ret_rule);
        *ret_rule = NULL;
        return -EINVAL;
    }
    if (rules) {
        *ret_rule_text = json_dumps(rules, JSON_COMPACT | JSON_PRESERVE_ORDER);
    }
    return 0;
}

int sd_segment_check(const json_t *body, bool create, struct sd_issues *errors)
{
    const char *name = NULL, *desc = NULL;
    char *rule_text = NULL;
    struct sd_seg_rule *rule = NULL;
    int r = check_body(body, create, &name, &desc, &rule_text, &rule, errors);
    sd_seg_rule_free(rule);
    free(rule_text);
    return r;
}

static int new_id(char out[21])
{
    unsigned char raw[8];
    int r = sd_random_bytes(raw, sizeof(raw));
    if (r < 0) {
        return r;
    }
    memcpy(out, "seg_", 4);
    for (size_t i = 0; i < sizeof(raw); i++) {
        snprintf(out + 4 + 2 * i, 3, "%02x", raw[i]);
    }
    return 0;
}

int sd_segment_create(struct sd_hub *hub, int64_t tenant_id, enum sd_env env, const json_t *body,
                      const struct sd_seg_budget *budget, struct sd_segment **ret,
                      struct sd_issues *errors)
{
    const char *name = NULL, *desc = NULL;
    char *rule_text = NULL;
    struct sd_seg_rule *rule = NULL;
    int r = check_body(body, true, &name, &desc, &rule_text, &rule, errors);
    if (r < 0) {
        return r;
    }
    char id[21];
    int64_t now = sd_now_usec(), count = 0, snapshot_id = 0;
    r = new_id(id);
    if (r == 0) {
        /* Counting freezes the members in a snapshot, so pages of them agree with this count. */
        struct sd_seg_budget b = budget_of(hub, budget);
        r = sd_store_segment_snapshot_create(hub->store, tenant_id, env, id, rule, now,
                                             SD_SEGMENT_SNAPSHOT_TTL_USEC, &b, &snapshot_id,
                                             &count);
    }
    if (r == 0) {
        struct sd_segment_row row = {
            .id = id,
            .tenant_id = tenant_id,
            .env = env,
            .name = (char *)name,
            .description = (char *)(desc ? desc : ""),
            .rules = rule_text,
            .member_count = count,
            .computed_usec = now,
            .created_usec = now,
            .updated_usec = now,
        };
        r = sd_store_segment_create(hub->store, &row);
        if (r == 0) {
            note_size(hub, tenant_id, env, id, count, now);
        }
    }
    sd_seg_rule_free(rule);
    free(rule_text);
    if (r < 0) {
        return r;
    }
    r = sd_segment_load(hub, tenant_id, env, id, ret);
    if (r == 0) {
        (*ret)->snapshot_id = snapshot_id;
    }
    return r;
}

int sd_segment_update(struct sd_hub *hub, int64_t tenant_id, enum sd_env env, const char *id,
                      const json_t *body, const struct sd_seg_budget *budget,
                      struct sd_segment **ret, struct sd_issues *errors)
{
    struct sd_segment_row row = {0};
    int r = sd_store_segment_get(hub->store, tenant_id, env, id, &row);
    if (r < 0) {
        return r == -EINVAL ? -ENOENT : r;
    }
    const char *name = NULL, *desc = NULL;
    char *rule_text = NULL;
    struct sd_seg_rule *rule = NULL;
    if (body) {
        r = check_body(body, false, &name, &desc, &rule_text, &rule, errors);
        if (r < 0) {
            goto out;
        }
    }
    if (name) {
        free(row.name);
        row.name = sd_strdup(name);
    }
    if (desc) {
        free(row.description);
        row.description = sd_strdup(desc);
    }
    if (rule_text) {
        free(row.rules);
        row.rules = sd_strdup(rule_text);
    }
    if (!rule) {
        json_error_t jerr;
        json_t *stored = json_loads(row.rules, JSON_REJECT_DUPLICATES, &jerr);
        r = sd_seg_rule_parse(stored, "/rules", &rule, errors);
        json_decref(stored);
        if (r < 0) {
            goto out;
        }
    }
    int64_t now = sd_now_usec(), count = 0, snapshot_id = 0;
    struct sd_seg_budget b = budget_of(hub, budget);
    r = sd_store_segment_snapshot_create(hub->store, tenant_id, env, id, rule, now,
                                         SD_SEGMENT_SNAPSHOT_TTL_USEC, &b, &snapshot_id, &count);
    if (r < 0) {
        goto out;
    }
    row.member_count = count;
    row.computed_usec = now;
    row.updated_usec = now;
    r = sd_store_segment_update(hub->store, &row);
    if (r == 0) {
        note_size(hub, tenant_id, env, id, count, now);
        r = sd_segment_load(hub, tenant_id, env, id, ret);
    }
    if (r == 0) {
        (*ret)->snapshot_id = snapshot_id;
    }
out:
    sd_seg_rule_free(rule);
    free(rule_text);
    sd_segment_row_release(&row);
    return r;
}

int sd_segment_list(struct sd_hub *hub, int64_t tenant_id, enum sd_env env,
                    struct sd_segment ***ret, size_t *ret_n)
{
    struct sd_segment_row *rows = NULL;
    size_t n = 0;
    int r = sd_store_segment_list(hub->store, tenant_id, env, &rows, &n);
    if (r < 0) {
        return r;
    }
    struct sd_segment **v = sd_calloc(n ? n : 1, sizeof(*v));
    for (size_t i = 0; i < n; i++) {
        v[i] = from_row(&rows[i]);
    }
    sd_segment_rows_free(rows, n);
    *ret = v;
    *ret_n = n;
    return 0;
}

int sd_segment_delete(struct sd_hub *hub, int64_t tenant_id, enum sd_env env, const char *id)
{
    int r = sd_store_segment_remove(hub->store, tenant_id, env, id);
    return r == -EINVAL ? -ENOENT : r;
}

json_t *sd_segment_view(const struct sd_segment *s)
{
    json_t *o = json_object();
    json_object_set_new(o, "segment_id", json_string(s->id));
    json_object_set_new(o, "segment_name", json_string(s->name));
    json_object_set_new(o, "description", json_string(s->description ? s->description : ""));
    json_object_set(o, "rules", s->rules ? s->rules : json_null());
    json_object_set_new(o, "member_count",
                        s->member_count >= 0 ? json_integer(s->member_count) : json_null());
    json_object_set_new(o, "computed_at", sd_json_time(s->computed_usec));
    json_object_set_new(o, "created_at", sd_json_time(s->created_usec));
    json_object_set_new(o, "updated_at", sd_json_time(s->updated_usec));
    if (s->snapshot_id > 0) {
        char snap[SD_SNAPSHOT_ID_HEX + 1];
        snprintf(snap, sizeof(snap), "%016llx", (unsigned long long)s->snapshot_id);
        json_object_set_new(o, "snapshot_id", json_string(snap));
    }
    return o;
}
