/* rest_pull.c — the `rest_pull` connector (seed §3 "REST API (pull)"): a generic client for a
 * ticketing system's REST API with cursor pagination.
 *
 * For each configured path (events first, then customers, then sales, so references resolve)
 * it asks for pages of `page_size` records, starting from the committed cursor of that kind,
 * and stores each page together with the cursor that follows it in ONE transaction
 * (sd_connector_commit): a crash never skips a page (the cursor did not move) and never stores
 * one twice (re-reading it finds identical records: upsert). Where the records and the next
 * cursor are in the answer is configured with JSON Pointers. cursor_mode `token`: the answer
 * carries an opaque next cursor. `after_id` / `since`: the cursor is the value of
 * `cursor_field` in the page's last record ("greater than this id / since this timestamp").
 * A run ends for a kind when a page is empty, the answer says there is no more (more_pointer,
 * or no next cursor), or the cursor stops moving. It follows stagedoor's own
 * GET /v1/{client_id}/{events,customers,sales} (records /data, next /next_cursor, more
 * /has_more): that is how one hub replicates another.
 *
 * Answers are judged by the one classifier (http/verdict.h), in the retry loop and here: 429
 * and 509 wait for Retry-After without using an attempt, 408, 5xx (503 as long as Retry-After
 * says), timeouts and broken connections back off exponentially, at most max_attempts (6 by
 * default); then, or at once for any other status but 2xx, the run fails with the reason and
 * the next run resumes from the same committed cursor. A page with a bad record is refused
 * whole by default (policy reject_page: the run fails there, nothing of the page is stored, the
 * cursor stays), or its bad records are skipped and listed (skip_records).
 *
 * Another stagedoor's feed also carries tombstones ({"deleted": true, "id", "reason"}) for
 * records deleted, erased or merged away there: they are applied here as deletions of this
 * connector's records with the same reason (so they show in this hub's feed too), in one writer
 * transaction before the page's records and cursor; a crash in between re-reads the page and
 * finds them gone already. */
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "core/connector.h"
#include "core/deletions.h"
#include "formats/json_pointer.h"
#include "http/client.h"
#include "http/verdict.h"

struct rest_conf {
    const char *base_url;
    const char *path[3]; /* by enum sd_kind: events_path, customers_path, sales_path */
    const char *auth_header, *page_size_param, *cursor_param;
    /* JSON Pointers into a page, in check()'s order */
    const char *records_pointer, *next_pointer, *more_pointer;
    const char *cursor_field;
    int cursor_mode; /* enum cursor_mode */
    int policy;      /* enum rest_policy */
    int64_t page_size, timeout_seconds, max_attempts, retry_initial_ms, max_pages;
};
enum cursor_mode { CURSOR_TOKEN, CURSOR_AFTER_ID, CURSOR_SINCE };
enum rest_policy { POLICY_REJECT_PAGE, POLICY_SKIP_RECORDS };

#define AT(member) offsetof(struct rest_conf, member)

static const struct sd_setting settings[] = {
    {"base_url", SD_SETTING_URL, NULL, 8, 2048, "http(s) base URL, e.g. https://api.box.example",
     SD_CHOICES("http", "https"), AT(base_url)},
    {"events_path", SD_SETTING_STRING, "\"\"", 0, 512,
     "path of the events collection (at least one of the three paths; pulled in this order)", NULL,
     AT(path[SD_KIND_EVENT])},
    {"customers_path", SD_SETTING_STRING, "\"\"", 0, 512, "path of the customers collection", NULL,
     AT(path[SD_KIND_CUSTOMER])},
    {"sales_path", SD_SETTING_STRING, "\"\"", 0, 512, "path of the sales collection", NULL,
     AT(path[SD_KIND_SALE])},
    {"auth_header", SD_SETTING_SECRET, "\"\"", 0, 4096,
     "Authorization header value, e.g. \"Bearer abc\"; never shown again", NULL, AT(auth_header)},
    {"page_size", SD_SETTING_INT, "100", 1, 10000, "records asked for per page", NULL,
     AT(page_size)},
    {"page_size_param", SD_SETTING_STRING, "\"limit\"", 1, 64, "query parameter of the page size",
     NULL, AT(page_size_param)},
    {"cursor_param", SD_SETTING_STRING, "\"cursor\"", 1, 64, "query parameter of the cursor", NULL,
     AT(cursor_param)},
    {"records_pointer", SD_SETTING_STRING, "\"/data\"", 0, 256,
     "JSON Pointer to the records array in a page", NULL, AT(records_pointer)},
    {"next_pointer", SD_SETTING_STRING, "\"/next_cursor\"", 0, 256,
     "token mode: JSON Pointer to the next cursor in a page", NULL, AT(next_pointer)},
    {"more_pointer", SD_SETTING_STRING, "\"\"", 0, 256,
     "optional JSON Pointer to a boolean saying whether more pages follow (e.g. /has_more)", NULL,
     AT(more_pointer)},
    {"cursor_mode", SD_SETTING_CHOICE, "\"token\"", 0, 0,
     "token (the page names the next cursor), after_id or since (the last record's cursor_field)",
     SD_CHOICES("token", "after_id", "since"), AT(cursor_mode)},
    {"cursor_field", SD_SETTING_STRING, "\"id\"", 1, 128,
     "after_id/since: the record field whose last value is the next cursor", NULL,
     AT(cursor_field)},
    {"timeout_seconds", SD_SETTING_INT, "30", 1, 600, "per request", NULL, AT(timeout_seconds)},
    {"max_attempts", SD_SETTING_INT, "6", 1, 20, "attempts per page before the run fails", NULL,
     AT(max_attempts)},
    {"retry_initial_ms", SD_SETTING_INT, "1000", 1, 600000, "first back-off", NULL,
     AT(retry_initial_ms)},
    {"max_pages", SD_SETTING_INT, "0", 0, 100000000, "pages per kind and run; 0 = no limit", NULL,
     AT(max_pages)},
    {"policy", SD_SETTING_CHOICE, "\"reject_page\"", 0, 0,
     "reject_page (a page is all or nothing) or skip_records (store the good records)",
     SD_CHOICES("reject_page", "skip_records"), AT(policy)},
    {NULL, 0, NULL, 0, 0, NULL, NULL, 0},
};

static const struct rest_conf *cf(const struct sd_connector_ctx *ctx)
{
    return ctx->conf;
}

static void check(const void *conf, struct sd_issues *errors)
{
    /* base_url (scheme, host, egress policy) and the choices are checked by their types. */
    const struct rest_conf *c = conf;
    if (!c->path[0][0] && !c->path[1][0] && !c->path[2][0]) {
        sd_issues_add(errors, "/settings",
                      "name at least one of events_path, customers_path, "
                      "sales_path");
    }
    const struct {
        const char *key, *value;
    } ptrs[] = {{"records_pointer", c->records_pointer},
                {"next_pointer", c->next_pointer},
                {"more_pointer", c->more_pointer}};
    for (size_t i = 0; i < sizeof(ptrs) / sizeof(ptrs[0]); i++) {
        if (!sd_json_pointer_valid(ptrs[i].value)) {
            char at[64];
            sd_utf8_snprintf(at, sizeof(at), "/settings/%s", ptrs[i].key);
            sd_issues_add(errors, at, "is not a JSON Pointer (RFC 6901)");
        }
    }
}

/* A cursor value as query text: strings as they are, numbers in decimal. */
static char *cursor_text(const json_t *v)
{
    if (json_is_string(v)) {
        return sd_strdup(json_string_value(v));
    }
    if (json_is_integer(v)) {
        return sd_asprintf("%lld", (long long)json_integer_value(v));
    }
    return NULL;
}

static char *page_url(struct sd_connector_ctx *ctx, const char *path, const char *cursor)
{
    CURL *h = curl_easy_init();
    char *esc = cursor && h ? curl_easy_escape(h, cursor, 0) : NULL;
    const char *base = cf(ctx)->base_url;
    size_t bl = strlen(base);
    bool slash = bl > 0 && base[bl - 1] == '/';
    char *url = sd_asprintf("%.*s%s%s%c%s=%lld%s%s%s", (int)(slash ? bl - 1 : bl), base,
                            path[0] == '/' ? "" : "/", path, strchr(path, '?') ? '&' : '?',
                            cf(ctx)->page_size_param, (long long)cf(ctx)->page_size, esc ? "&" : "",
                            esc ? cf(ctx)->cursor_param : "", esc ? "=" : "");
    if (esc) {
        char *full = sd_asprintf("%s%s", url, esc);
        free(url);
        url = full;
        curl_free(esc);
    }
    if (h) {
        curl_easy_cleanup(h);
    }
    return url;
}

/* Records left out by skip_records over the whole run (the status names the first). */
struct skipped {
    size_t n;
    char *first;
};

/* Whether a page entry is a stagedoor tombstone: {"deleted": true, "id": "…", "reason": one of
 * the three}. Anything else is a record, mapped as usual. */
static bool is_tombstone(const json_t *rec, enum sd_tombstone_reason *ret_reason)
{
    return json_is_object(rec) && json_is_true(json_object_get(rec, "deleted")) &&
           json_string_value(json_object_get(rec, "id")) &&
           *json_string_value(json_object_get(rec, "id")) &&
           sd_tombstone_reason_parse(json_string_value(json_object_get(rec, "reason")),
                                     ret_reason) == 0;
}

/* The page's tombstones as deletions of this connector's records (its source label), in *dels
 * (heap, *ret_n of them), and the page's other entries (new reference), to map as usual. Their
 * pointers in messages count the page's records without its tombstones. */
static json_t *split_tombstones(struct sd_connector_ctx *ctx, enum sd_kind kind,
                                const json_t *records, struct sd_deletion **dels, size_t *ret_n)
{
    size_t n = json_array_size(records), nd = 0;
    json_t *live = json_array();
    *dels = NULL;
    for (size_t i = 0; i < n; i++) {
        const json_t *rec = json_array_get(records, i);
        enum sd_tombstone_reason reason;
        if (!is_tombstone(rec, &reason)) {
            json_array_append(live, (json_t *)rec);
            continue;
        }
        if (!*dels) {
            *dels = sd_calloc(n, sizeof(**dels));
        }
        const char *into = json_string_value(json_object_get(rec, "merged_into"));
        (*dels)[nd++] = (struct sd_deletion){
            .kind = kind,
            .id = json_string_value(json_object_get(rec, "id")),
            .source = kind == SD_KIND_CUSTOMER ? ctx->source : NULL,
            .reason = reason == SD_TOMBSTONE_MERGED && !into ? SD_TOMBSTONE_DELETED : reason,
            .merged_into = reason == SD_TOMBSTONE_MERGED ? into : NULL,
        };
    }
    *ret_n = nd;
    return live;
}

/* Pull one kind until the source says there is no more. */
static int pull_kind(struct sd_connector_ctx *ctx, enum sd_kind kind, const char *path,
                     struct skipped *skipped)
{
    const char *name = sd_kind_array_name(kind);
    bool token_mode = cf(ctx)->cursor_mode == CURSOR_TOKEN;
    bool skip = cf(ctx)->policy == POLICY_SKIP_RECORDS;
    int64_t max_pages = cf(ctx)->max_pages;
    char *h_auth =
        cf(ctx)->auth_header[0] ? sd_asprintf("Authorization: %s", cf(ctx)->auth_header) : NULL;
    const char *headers[] = {"Accept: application/json", h_auth, NULL};
    int r = 0;
    for (int64_t page = 0; max_pages == 0 || page < max_pages; page++) {
        if (ctx->stop && atomic_load(ctx->stop)) {
            r = sd_connector_fail(ctx, -ECANCELED,
                                  "stopped (the hub is shutting down); the "
                                  "next run resumes from the committed cursor");
            break;
        }
        char *cur = cursor_text(json_object_get(ctx->cursor, name));
        char *url = page_url(ctx, path, cur);
        struct sd_http_request rq = {
            .url = url, .headers = headers, .timeout_ms = cf(ctx)->timeout_seconds * 1000};
        struct sd_http_retry pol = {.max_attempts = (int)cf(ctx)->max_attempts,
                                    .initial_ms = cf(ctx)->retry_initial_ms,
                                    .stop = ctx->stop};
        struct sd_http_response resp;
        int attempts = 0;
        r = sd_http_fetch_retry(&rq, &pol, &resp, &attempts);
        json_t *doc = NULL, *body = NULL, *next_cursor = NULL;
        struct sd_deletion *dels = NULL;
        struct sd_issues errors;
        sd_issues_init(&errors, SD_MAX_ISSUES);
        bool done = false;
        if (r < 0) {
            r = sd_connector_fail(ctx, r,
                                  "%s page after cursor '%s' failed after %d attempt(s): "
                                  "%s",
                                  name, cur ? cur : "", attempts, resp.error);
            goto next;
        }
        enum sd_verdict verdict = sd_http_classify(r, resp.status);
        if (verdict != SD_VERDICT_OK) {
            r = sd_connector_fail(ctx, -EIO,
                                  "%s page after cursor '%s': HTTP %ld after %d attempt(s) (%s)",
                                  name, cur ? cur : "", resp.status, attempts,
                                  verdict == SD_VERDICT_REJECT ? "refused" : "gave up");
            goto next;
        }
        json_error_t jerr;
        doc = json_loadb(resp.body.data ? resp.body.data : "", resp.body.len,
                         JSON_REJECT_DUPLICATES, &jerr);
        if (!doc) {
            r = sd_connector_fail(ctx, -EINVAL,
                                  "%s page is not valid JSON: line %d, column "
                                  "%d: %s",
                                  name, jerr.line, jerr.column, jerr.text);
            goto next;
        }
        const json_t *records = sd_json_pointer_get(doc, cf(ctx)->records_pointer);
        if (!json_is_array(records)) {
            r = sd_connector_fail(ctx, -EINVAL, "%s page has no records array at '%s'", name,
                                  cf(ctx)->records_pointer);
            goto next;
        }
        size_t n = json_array_size(records);
        if (n == 0) {
            done = true;
            goto next;
        }
        /* The cursor after this page. */
        const json_t *nv = NULL;
        if (token_mode) {
            nv = sd_json_pointer_get(doc, cf(ctx)->next_pointer);
        } else {
            nv = json_object_get(json_array_get(records, n - 1), cf(ctx)->cursor_field);
        }
        char *nt = cursor_text(nv);
        if (!nt) {
            done = true; /* no next cursor: this is the last page */
        } else if (cur && strcmp(nt, cur) == 0) {
            done = true;
        }
        const json_t *more =
            cf(ctx)->more_pointer[0] ? sd_json_pointer_get(doc, cf(ctx)->more_pointer) : NULL;
        if (json_is_false(more)) {
            done = true;
        }
        next_cursor = json_deep_copy(ctx->cursor ? ctx->cursor : NULL);
        if (!json_is_object(next_cursor)) {
            json_decref(next_cursor);
            next_cursor = json_object();
        }
        if (nt) {
            json_object_set_new(next_cursor, name, json_string(nt));
        }
        free(nt);
        size_t n_dels = 0;
        json_t *live = split_tombstones(ctx, kind, records, &dels, &n_dels);
        body = json_object();
        char prefix[32];
        sd_utf8_snprintf(prefix, sizeof(prefix), "/%s", name);
        size_t bad = sd_connector_map_records(ctx, kind, live, prefix, body, &errors);
        json_decref(live);
        if (json_array_size(json_object_get(body, name)) == 0) {
            json_object_del(body, name); /* only deletions (or skipped records): the cursor */
        }
        if (bad > 0 && !skip) {
            r = sd_connector_fail(ctx, -EINVAL,
                                  "%s page after cursor '%s' refused (%zu bad "
                                  "record(s)); first: %s %s",
                                  name, cur ? cur : "", bad,
                                  errors.n ? errors.items[0].pointer : "",
                                  errors.n ? errors.items[0].message : "");
            goto next;
        }
        ctx->records_rejected += bad;
        if (n_dels > 0) {
            /* Committed before the records and cursor: a crash in between re-reads the page,
             * whose deletions then find nothing left to delete. */
            struct sd_deletion_outcome gone = {0};
            r = sd_hub_delete_records_fenced(ctx->hub, ctx->tenant_id, ctx->env, dels, n_dels,
                                             ctx->id, ctx->run_fence, &gone);
            if (r < 0) {
                sd_connector_fail(ctx, r, "%s page after cursor '%s': storing its deletions failed",
                                  name, cur ? cur : "");
                goto next;
            }
        }
        struct sd_ingest_outcome out;
        sd_ingest_outcome_init(&out);
        r = sd_connector_commit(ctx, body, next_cursor, skip, &out);
        if (r == 0 && out.status != 202) {
            r = sd_connector_fail(ctx, -EINVAL,
                                  "%s page after cursor '%s' refused, nothing of "
                                  "it stored: %s %s",
                                  name, cur ? cur : "",
                                  out.errors.n ? out.errors.items[0].pointer : "",
                                  out.errors.n ? out.errors.items[0].message : "");
        } else if (r == 0 && out.n_skipped + bad > 0) {
            /* Pointers are into this page: say which page. A mapping refusal (errors) points
             * into the page as fetched; the store's point into what the mapping kept, which is
             * the page as fetched only when the mapping refused nothing. */
            if (!skipped->first) {
                const struct sd_issues *is = errors.n ? &errors : &out.errors;
                skipped->first = sd_asprintf("%s page after cursor '%s': %s %s", name,
                                             cur ? cur : "", is->n ? is->items[0].pointer : "",
                                             is->n ? is->items[0].message : "");
            }
            skipped->n += out.n_skipped + bad;
        } else if (r < 0) {
            sd_connector_fail(ctx, r, "storing a %s page failed", name);
        }
        sd_ingest_outcome_release(&out);
        atomic_fetch_add(ctx->progress, n);
    next:
        free(dels);
        sd_issues_release(&errors);
        json_decref(doc);
        json_decref(body);
        json_decref(next_cursor);
        sd_http_response_release(&resp);
        free(url);
        free(cur);
        if (r < 0 || done) {
            break;
        }
    }
    if (h_auth) {
        explicit_bzero(h_auth, strlen(h_auth));
        free(h_auth);
    }
    return r;
}

static int rest_run(struct sd_connector_ctx *ctx, void *state)
{
    (void)state;
    struct skipped skipped = {0};
    int r = 0;
    for (int k = 0; k < 3 && r >= 0; k++) {
        const char *path = cf(ctx)->path[k];
        if (*path) {
            r = pull_kind(ctx, (enum sd_kind)k, path, &skipped);
        }
    }
    if (r >= 0 && skipped.n > 0) {
        /* Stored what was good; the status still says what was left out in this run. */
        sd_connector_fail(ctx, 0, "%zu record(s) skipped; first: %s", skipped.n, skipped.first);
    }
    free(skipped.first);
    return r < 0 ? r : 0;
}

const struct sd_connector sd_connector_rest_pull = {
    .name = "rest_pull",
    .kind = SD_CONNECTOR_SOURCE,
    .help = "pull events, customers and sales from a REST API with cursor pagination",
    .settings = settings,
    .settings_size = sizeof(struct rest_conf),
    .default_schedule = "every 15m",
    .run = rest_run,
    .check = check,
};
