/* quality.c — the in-memory data-quality and traffic counters (quality.h).
 *
 * Two tables under one mutex:
 *  - rows: what the next flush adds to the store, one sd_traffic_count per distinct (tenant,
 *    env, hour, kind, source, field, code), found through an open-addressing index. A flush
 *    takes the whole table out under the mutex and writes it without holding it; if the write
 *    fails the rows are added back, so a store outage loses nothing it can hold. The table is
 *    bounded (SD_TRAFFIC_ADD_MAX rows, one store call): a count that finds it full is dropped
 *    and counted, and the next flush logs how many.
 *  - totals: the per-tenant sums since start for /metrics, SD_QUALITY_METRIC_TENANTS tenants
 *    plus one "_other" slot, so a scrape's size is bounded whatever the number of tenants.
 *
 * Labels are bounded by construction: a field label is built only from the record array's
 * name and field names the model knows (sd_validate_field_known), an error code is one of a
 * fixed list, a source is "ingest", "sale_put" or a connector id (which exists: the caller
 * runs it), a route name comes from the route table. */
#include "core/quality.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "store/observe.h"

#define INDEX_SLOTS 8192 /* a power of two, at least twice SD_TRAFFIC_ADD_MAX */
#define HOUR_USEC (3600LL * 1000000)

struct totals {
    int64_t tenant_id; /* 0: the "_other" slot */
    uint64_t accepted[3];
    uint64_t rejected;
    uint64_t answers[3]; /* 2xx, 4xx, 5xx */
};

struct runs {
    char connector_id[SD_TRAFFIC_TEXT_MAX + 1]; /* "": the "_other" slot */
    int64_t tenant_id;
    uint64_t ok, failed;
    int64_t last_end_usec;
    uint64_t last_in, last_rejected;
};

struct sd_quality {
    pthread_mutex_t lock;
    struct sd_traffic_count *rows; /* SD_TRAFFIC_ADD_MAX */
    size_t n_rows;
    int32_t index[INDEX_SLOTS]; /* row number + 1; 0 empty */
    uint64_t dropped;
    struct totals totals[SD_QUALITY_METRIC_TENANTS + 1]; /* the last one: "_other" */
    size_t n_totals;
    struct runs runs[SD_QUALITY_METRIC_CONNECTORS + 1]; /* the last one: "_other" */
    size_t n_runs;
};

struct sd_quality *sd_quality_new(void)
{
    struct sd_quality *q = sd_calloc(1, sizeof(*q));
    pthread_mutex_init(&q->lock, NULL);
    q->rows = sd_calloc(SD_TRAFFIC_ADD_MAX, sizeof(*q->rows));
    return q;
}

void sd_quality_free(struct sd_quality *q)
{
    if (!q) {
        return;
    }
    pthread_mutex_destroy(&q->lock);
    free(q->rows);
    free(q);
}

/* ---- labels ------------------------------------------------------------------------------- */

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
    }
    return n > 0;
}

/* "/sales/3/currency" → "sales.currency"; "/events/0/cast/1/name" → "events.cast.name"; "" →
 * "record"; "/events" → "events"; anything naming what the model does not define → "other". */
static void field_label(const char *pointer, char *out, size_t cap)
{
    char records[48] = "";
    struct sd_buf b;
    sd_buf_init(&b);
    bool ok = true;
    const char *p = pointer ? pointer : "";
    if (!*p) {
        snprintf(out, cap, "record");
        sd_buf_release(&b);
        return;
    }
    int depth = 0;
    while (ok && *p == '/') {
        p++;
        size_t n = strcspn(p, "/");
        if (all_digits(p, n)) {
            p += n;
            continue;
        }
        char seg[48];
        if (n == 0 || n >= sizeof(seg)) {
            ok = false;
            break;
        }
        memcpy(seg, p, n);
        seg[n] = '\0';
        if (depth == 0) {
            ok = strcmp(seg, "events") == 0 || strcmp(seg, "customers") == 0 ||
                 strcmp(seg, "sales") == 0;
            snprintf(records, sizeof(records), "%s", seg);
        } else {
            ok = depth <= 2 && sd_validate_field_known(records, seg);
        }
        if (ok) {
            sd_buf_puts(&b, depth ? "." : "");
            sd_buf_puts(&b, seg);
        }
        depth++;
        p += n;
    }
    ok = ok && *p == '\0' && b.len > 0 && b.len < cap;
    snprintf(out, cap, "%s", ok ? b.data : "other");
    sd_buf_release(&b);
}

/* The validator's words, mapped to a fixed list of codes (SD_QUALITY_CODES). */
static const char *error_code(const char *message)
{
    static const struct {
        const char *words;
        const char *code;
    } rules[] = {
        {"is missing", "missing"},
        {"required", "missing"},
        {"does not exist", "unknown_reference"},
        {"unknown field", "unknown_field"},
        {"unknown member", "unknown_field"},
        {"unknown top-level", "unknown_field"},
        {"already", "duplicate"},
        {"duplicate", "duplicate"},
        {"must ", "invalid"},
        {"not a valid", "invalid"},
        {"invalid", "invalid"},
    };
    const char *m = message ? message : "";
    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
        if (strstr(m, rules[i].words)) {
            return rules[i].code;
        }
    }
    return "other";
}

void sd_quality_classify(const char *pointer, const char *message, char *label, size_t label_cap,
                         char *code, size_t code_cap)
{
    field_label(pointer, label, label_cap);
    snprintf(code, code_cap, "%s", error_code(message));
}

/* ---- counting ----------------------------------------------------------------------------- */

static uint32_t row_hash(const struct sd_traffic_count *t)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    const int64_t nums[3] = {t->tenant_id, (int64_t)t->env, t->hour_usec};
    const unsigned char *b = (const unsigned char *)nums;
    for (size_t i = 0; i < sizeof(nums); i++) {
        h = (h ^ b[i]) * 0x100000001b3ULL;
    }
    const char *texts[4] = {t->kind, t->source, t->field, t->code};
    for (size_t k = 0; k < 4; k++) {
        for (const char *c = texts[k]; *c; c++) {
            h = (h ^ (unsigned char)*c) * 0x100000001b3ULL;
        }
        h = (h ^ 0xff) * 0x100000001b3ULL;
    }
    return (uint32_t)(h ^ (h >> 32));
}

static bool row_same(const struct sd_traffic_count *a, const struct sd_traffic_count *b)
{
    return a->tenant_id == b->tenant_id && a->env == b->env && a->hour_usec == b->hour_usec &&
           strcmp(a->kind, b->kind) == 0 && strcmp(a->source, b->source) == 0 &&
           strcmp(a->field, b->field) == 0 && strcmp(a->code, b->code) == 0;
}

/* Under the lock: add key->n to its row. */
static void add_locked(struct sd_quality *q, const struct sd_traffic_count *key)
{
    uint32_t slot = row_hash(key) & (INDEX_SLOTS - 1);
    for (;;) {
        int32_t at = q->index[slot];
        if (at == 0) {
            break;
        }
        if (row_same(&q->rows[at - 1], key)) {
            q->rows[at - 1].n += key->n;
            return;
        }
        slot = (slot + 1) & (INDEX_SLOTS - 1);
    }
    if (q->n_rows >= SD_TRAFFIC_ADD_MAX) {
        q->dropped += (uint64_t)key->n;
        return;
    }
    q->rows[q->n_rows] = *key;
    q->index[slot] = (int32_t)++q->n_rows;
}

static struct totals *totals_locked(struct sd_quality *q, int64_t tenant_id)
{
    for (size_t i = 0; i < q->n_totals; i++) {
        if (q->totals[i].tenant_id == tenant_id) {
            return &q->totals[i];
        }
    }
    if (q->n_totals < SD_QUALITY_METRIC_TENANTS) {
        struct totals *t = &q->totals[q->n_totals++];
        t->tenant_id = tenant_id;
        return t;
    }
    return &q->totals[SD_QUALITY_METRIC_TENANTS];
}

static void make_key(struct sd_traffic_count *k, int64_t tenant_id, enum sd_env env,
                     const char *kind, const char *source, const char *field, const char *code,
                     int64_t n)
{
    memset(k, 0, sizeof(*k));
    int64_t now = sd_now_usec();
    k->tenant_id = tenant_id;
    k->env = env;
    k->hour_usec = now - now % HOUR_USEC;
    snprintf(k->kind, sizeof(k->kind), "%s", kind);
    snprintf(k->source, sizeof(k->source), "%s", source && *source ? source : "ingest");
    snprintf(k->field, sizeof(k->field), "%s", field);
    snprintf(k->code, sizeof(k->code), "%s", code);
    k->n = n;
}

void sd_quality_rejected(struct sd_quality *q, int64_t tenant_id, enum sd_env env,
                         const char *source, const char *base, const struct sd_issues *errors)
{
    if (!q || !errors || errors->total == 0) {
        return;
    }
    struct sd_traffic_count *keys = sd_calloc(errors->n + 1, sizeof(*keys));
    size_t nk = 0;
    for (size_t i = 0; i < errors->n; i++) {
        char label[SD_TRAFFIC_TEXT_MAX + 1], code[SD_TRAFFIC_TEXT_MAX + 1];
        char *ptr = sd_asprintf("%s%s", base ? base : "", errors->items[i].pointer);
        sd_quality_classify(ptr, errors->items[i].message, label, sizeof(label), code,
                            sizeof(code));
        free(ptr);
        make_key(&keys[nk++], tenant_id, env, "rejected", source, label, code, 1);
    }
    if (errors->total > errors->n) {
        make_key(&keys[nk++], tenant_id, env, "rejected", source, "other", "other",
                 (int64_t)(errors->total - errors->n));
    }
    pthread_mutex_lock(&q->lock);
    for (size_t i = 0; i < nk; i++) {
        add_locked(q, &keys[i]);
    }
    totals_locked(q, tenant_id)->rejected += errors->total;
    pthread_mutex_unlock(&q->lock);
    free(keys);
}

void sd_quality_rejected_n(struct sd_quality *q, int64_t tenant_id, enum sd_env env,
                           const char *source, uint64_t n)
{
    if (!q || n == 0) {
        return;
    }
    struct sd_traffic_count k;
    make_key(&k, tenant_id, env, "rejected", source, "record", "other", (int64_t)n);
    pthread_mutex_lock(&q->lock);
    add_locked(q, &k);
    totals_locked(q, tenant_id)->rejected += n;
    pthread_mutex_unlock(&q->lock);
}

static const char *const kind_arrays[3] = {"events", "customers", "sales"};

void sd_quality_accepted(struct sd_quality *q, int64_t tenant_id, enum sd_env env,
                         const char *source, enum sd_kind kind, uint64_t n)
{
    if (!q || n == 0 || (int)kind < 0 || (int)kind > 2) {
        return;
    }
    struct sd_traffic_count k;
    make_key(&k, tenant_id, env, "accepted", source, kind_arrays[kind], "", (int64_t)n);
    pthread_mutex_lock(&q->lock);
    add_locked(q, &k);
    totals_locked(q, tenant_id)->accepted[kind] += n;
    pthread_mutex_unlock(&q->lock);
}

void sd_quality_answer(struct sd_quality *q, int64_t tenant_id, enum sd_env env, const char *route,
                       int status)
{
    if (!q || !route || status < 200 || status > 599 || (status >= 300 && status < 400)) {
        return;
    }
    int cls = status < 300 ? 0 : status < 500 ? 1 : 2;
    static const char *const names[3] = {"2xx", "4xx", "5xx"};
    struct sd_traffic_count k;
    make_key(&k, tenant_id, env, "answer", route, "", names[cls], 1);
    pthread_mutex_lock(&q->lock);
    add_locked(q, &k);
    totals_locked(q, tenant_id)->answers[cls]++;
    pthread_mutex_unlock(&q->lock);
}

void sd_quality_run(struct sd_quality *q, const char *connector_id, int64_t tenant_id, bool ok,
                    uint64_t records_in, uint64_t rejected, int64_t end_usec)
{
    if (!q || !connector_id) {
        return;
    }
    pthread_mutex_lock(&q->lock);
    struct runs *r = NULL;
    for (size_t i = 0; i < q->n_runs && !r; i++) {
        if (strcmp(q->runs[i].connector_id, connector_id) == 0) {
            r = &q->runs[i];
        }
    }
    if (!r && q->n_runs < SD_QUALITY_METRIC_CONNECTORS) {
        r = &q->runs[q->n_runs++];
        snprintf(r->connector_id, sizeof(r->connector_id), "%s", connector_id);
        r->tenant_id = tenant_id;
    }
    if (!r) {
        r = &q->runs[SD_QUALITY_METRIC_CONNECTORS];
    }
    if (ok) {
        r->ok++;
    } else {
        r->failed++;
    }
    r->last_end_usec = end_usec;
    r->last_in = records_in;
    r->last_rejected = rejected;
    pthread_mutex_unlock(&q->lock);
}

/* ---- flush and metrics -------------------------------------------------------------------- */

int sd_quality_flush(struct sd_quality *q, struct sd_store_handle *st)
{
    if (!q) {
        return 0;
    }
    struct sd_traffic_count *taken = sd_calloc(SD_TRAFFIC_ADD_MAX, sizeof(*taken));
    pthread_mutex_lock(&q->lock);
    struct sd_traffic_count *rows = q->rows;
    size_t n = q->n_rows;
    uint64_t dropped = q->dropped;
    q->rows = taken;
    q->n_rows = 0;
    q->dropped = 0;
    memset(q->index, 0, sizeof(q->index));
    pthread_mutex_unlock(&q->lock);
    if (dropped) {
        sd_log(SD_LOG_WARN, "data-quality counters were full; counts dropped", "dropped=%llu",
               (unsigned long long)dropped);
    }
    int r = 0;
    if (n > 0) {
        r = sd_store_observe_traffic_add(st, rows, n, sd_now_usec() - SD_QUALITY_RETENTION_USEC);
    }
    if (r < 0) {
        pthread_mutex_lock(&q->lock);
        for (size_t i = 0; i < n; i++) {
            add_locked(q, &rows[i]);
        }
        pthread_mutex_unlock(&q->lock);
    }
    free(rows);
    return r;
}

/* Prometheus label values: client ids are [A-Za-z0-9_-] (checked at creation). */
static const char *tenant_label(const struct sd_tenant *v, size_t n, int64_t id)
{
    for (size_t i = 0; i < n; i++) {
        if (v[i].id == id) {
            return v[i].client_id;
        }
    }
    return NULL;
}

static double age_seconds(int64_t now, int64_t usec)
{
    return usec > 0 && now > usec ? (double)(now - usec) / 1e6 : 0.0;
}

static void render_runs(struct sd_quality *q, const struct sd_tenant *tv, size_t nt,
                        struct sd_buf *out)
{
    struct runs *snap = sd_calloc(SD_QUALITY_METRIC_CONNECTORS + 1, sizeof(*snap));
    pthread_mutex_lock(&q->lock);
    size_t n = q->n_runs;
    memcpy(snap, q->runs, (SD_QUALITY_METRIC_CONNECTORS + 1) * sizeof(*snap));
    pthread_mutex_unlock(&q->lock);
    const struct runs *other = &snap[SD_QUALITY_METRIC_CONNECTORS];
    int64_t now = sd_now_usec();
    sd_buf_puts(out, "# HELP stagedoor_connector_runs_total Connector runs since start by "
                     "outcome (at most 200 connectors; the rest as connector=\"_other\").\n"
                     "# TYPE stagedoor_connector_runs_total counter\n");
    for (size_t i = 0; i <= n; i++) {
        const struct runs *r = i < n ? &snap[i] : other;
        if (i == n && !other->ok && !other->failed) {
            break;
        }
        const char *t = i < n ? tenant_label(tv, nt, r->tenant_id) : NULL;
        const char *c = i < n ? r->connector_id : "_other";
        t = t ? t : "_other";
        sd_buf_printf(out,
                      "stagedoor_connector_runs_total{tenant=\"%s\",connector=\"%s\","
                      "outcome=\"ok\"} %llu\n"
                      "stagedoor_connector_runs_total{tenant=\"%s\",connector=\"%s\","
                      "outcome=\"failed\"} %llu\n",
                      t, c, (unsigned long long)r->ok, t, c, (unsigned long long)r->failed);
    }
    sd_buf_puts(out, "# HELP stagedoor_connector_last_run_age_seconds Seconds since the "
                     "connector's last run ended (runs of this process).\n"
                     "# TYPE stagedoor_connector_last_run_age_seconds gauge\n");
    for (size_t i = 0; i < n; i++) {
        const char *t = tenant_label(tv, nt, snap[i].tenant_id);
        sd_buf_printf(out,
                      "stagedoor_connector_last_run_age_seconds{tenant=\"%s\",connector=\"%s\"}"
                      " %.3f\n",
                      t ? t : "_other", snap[i].connector_id,
                      age_seconds(now, snap[i].last_end_usec));
    }
    sd_buf_puts(out, "# HELP stagedoor_connector_last_run_records Records the connector's last "
                     "run stored and rejected.\n"
                     "# TYPE stagedoor_connector_last_run_records gauge\n");
    for (size_t i = 0; i < n; i++) {
        const char *t = tenant_label(tv, nt, snap[i].tenant_id);
        t = t ? t : "_other";
        sd_buf_printf(out,
                      "stagedoor_connector_last_run_records{tenant=\"%s\",connector=\"%s\","
                      "kind=\"stored\"} %llu\n"
                      "stagedoor_connector_last_run_records{tenant=\"%s\",connector=\"%s\","
                      "kind=\"rejected\"} %llu\n",
                      t, snap[i].connector_id, (unsigned long long)snap[i].last_in, t,
                      snap[i].connector_id, (unsigned long long)snap[i].last_rejected);
    }
    free(snap);
}

/* The outbox now, from one store query; rows past the label bounds are summed into one
 * tenant="_other",target="_other" row. */
static void render_outbox(struct sd_store_handle *st, const struct sd_tenant *tv, size_t nt,
                          struct sd_buf *out)
{
    struct sd_outbox_stat *v = NULL;
    size_t n = 0;
    if (sd_store_observe_outbox_stats(st, &v, &n) < 0) {
        return; /* the other series still answer; the outbox's are missing from this scrape */
    }
    int64_t seen_tenants[SD_QUALITY_METRIC_TENANTS];
    size_t n_tenants = 0, n_targets = 0;
    struct sd_outbox_stat other = {0};
    bool any_other = false;
    /* Which rows are named: a row is, while its tenant is among the first 100 and the rows
     * named so far are fewer than 200. */
    bool *named = sd_calloc(n ? n : 1, sizeof(*named));
    for (size_t i = 0; i < n; i++) {
        bool known = false;
        for (size_t k = 0; k < n_tenants && !known; k++) {
            known = seen_tenants[k] == v[i].tenant_id;
        }
        if (!known && n_tenants < SD_QUALITY_METRIC_TENANTS) {
            seen_tenants[n_tenants++] = v[i].tenant_id;
            known = true;
        }
        const char *t = tenant_label(tv, nt, v[i].tenant_id);
        named[i] = known && t && n_targets < SD_QUALITY_METRIC_CONNECTORS;
        if (named[i]) {
            n_targets++;
        } else {
            any_other = true;
            other.depth += v[i].depth;
            other.attempts += v[i].attempts;
            other.dead += v[i].dead;
            if (v[i].oldest_usec > 0 &&
                (other.oldest_usec == 0 || v[i].oldest_usec < other.oldest_usec)) {
                other.oldest_usec = v[i].oldest_usec;
            }
        }
    }
    static const struct {
        const char *name, *help, *type;
    } series[4] = {
        {"stagedoor_outbox_queue_depth", "Outbox items waiting (queued, retrying or sending).",
         "gauge"},
        {"stagedoor_outbox_oldest_age_seconds", "Age of the oldest waiting outbox item.", "gauge"},
        {"stagedoor_outbox_attempts", "Attempts the waiting outbox items have used.", "gauge"},
        {"stagedoor_outbox_dead_letters",
         "Outbox items that gave up (dead), until replayed or "
         "cancelled.",
         "gauge"},
    };
    int64_t now = sd_now_usec();
    for (int m = 0; m < 4; m++) {
        sd_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", series[m].name, series[m].help,
                      series[m].name, series[m].type);
        for (size_t i = 0; i <= n; i++) {
            const struct sd_outbox_stat *o = i < n ? &v[i] : &other;
            if ((i < n && !named[i]) || (i == n && !any_other)) {
                continue;
            }
            const char *t = i < n ? tenant_label(tv, nt, o->tenant_id) : "_other";
            const char *c = i < n ? o->connector_id : "_other";
            sd_buf_printf(out, "%s{tenant=\"%s\",target=\"%s\"} ", series[m].name, t, c);
            if (m == 1) {
                sd_buf_printf(out, "%.3f\n", age_seconds(now, o->oldest_usec));
            } else {
                int64_t val = m == 0 ? o->depth : m == 2 ? o->attempts : o->dead;
                sd_buf_printf(out, "%lld\n", (long long)val);
            }
        }
    }
    free(named);
    free(v);
}

void sd_quality_render_metrics(struct sd_quality *q, struct sd_store_handle *st, struct sd_buf *out)
{
    if (!q) {
        return;
    }
    struct sd_tenant *tv = NULL;
    size_t nt = 0;
    if (sd_store_tenant_list(st, &tv, &nt) < 0) {
        tv = NULL;
        nt = 0;
    }
    /* Copy under the lock, render outside it; a tenant not in the list joins "_other". */
    struct totals snap[SD_QUALITY_METRIC_TENANTS + 1];
    pthread_mutex_lock(&q->lock);
    size_t n = q->n_totals;
    memcpy(snap, q->totals, sizeof(snap));
    pthread_mutex_unlock(&q->lock);
    struct totals *other = &snap[SD_QUALITY_METRIC_TENANTS];
    const char *names[SD_QUALITY_METRIC_TENANTS];
    for (size_t i = 0; i < n; i++) {
        names[i] = tenant_label(tv, nt, snap[i].tenant_id);
        if (!names[i]) {
            for (int k = 0; k < 3; k++) {
                other->accepted[k] += snap[i].accepted[k];
                other->answers[k] += snap[i].answers[k];
            }
            other->rejected += snap[i].rejected;
        }
    }
    /* The series rows: named tenants, then "_other" when anything was summed there. */
    const struct totals *rows[SD_QUALITY_METRIC_TENANTS + 1];
    const char *labels[SD_QUALITY_METRIC_TENANTS + 1];
    size_t nr = 0;
    for (size_t i = 0; i < n; i++) {
        if (names[i]) {
            rows[nr] = &snap[i];
            labels[nr++] = names[i];
        }
    }
    bool other_any = other->rejected != 0;
    for (int k = 0; k < 3; k++) {
        other_any = other_any || other->accepted[k] != 0 || other->answers[k] != 0;
    }
    if (other_any) {
        rows[nr] = other;
        labels[nr++] = "_other";
    }
    static const char *const classes[3] = {"2xx", "4xx", "5xx"};
    sd_buf_puts(out, "# HELP stagedoor_tenant_records_accepted_total Records stored per tenant "
                     "and kind since start (at most 100 tenants; the rest as tenant=\"_other\").\n"
                     "# TYPE stagedoor_tenant_records_accepted_total counter\n");
    for (size_t i = 0; i < nr; i++) {
        for (int k = 0; k < 3; k++) {
            sd_buf_printf(out,
                          "stagedoor_tenant_records_accepted_total{tenant=\"%s\",kind=\"%s\"} "
                          "%llu\n",
                          labels[i], kind_arrays[k], (unsigned long long)rows[i]->accepted[k]);
        }
    }
    sd_buf_puts(out, "# HELP stagedoor_tenant_records_rejected_total Records and fields rejected "
                     "per tenant since start.\n"
                     "# TYPE stagedoor_tenant_records_rejected_total counter\n");
    for (size_t i = 0; i < nr; i++) {
        sd_buf_printf(out, "stagedoor_tenant_records_rejected_total{tenant=\"%s\"} %llu\n",
                      labels[i], (unsigned long long)rows[i]->rejected);
    }
    sd_buf_puts(out, "# HELP stagedoor_tenant_http_answers_total Answers to a tenant's key per "
                     "status class since start.\n"
                     "# TYPE stagedoor_tenant_http_answers_total counter\n");
    for (size_t i = 0; i < nr; i++) {
        for (int k = 0; k < 3; k++) {
            sd_buf_printf(out,
                          "stagedoor_tenant_http_answers_total{tenant=\"%s\",class=\"%s\"} "
                          "%llu\n",
                          labels[i], classes[k], (unsigned long long)rows[i]->answers[k]);
        }
    }
    render_runs(q, tv, nt, out);
    render_outbox(st, tv, nt, out);
    sd_tenants_free(tv, nt);
}
