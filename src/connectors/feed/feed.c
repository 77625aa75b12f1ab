/* feed.c — the `feed` connector (seed §3 "XML / JSON feed"): fetch a static file from a URL on
 * a schedule and store its records.
 *
 * An unchanged feed costs one request: the committed cursor keeps the last ETag and
 * Last-Modified, sent back as If-None-Match / If-Modified-Since, and a 304 ends the run; a 200
 * whose body hashes to the one already stored ends it too. A JSON feed is either in the ingest
 * body's shape ({"events":[…],"customers":[…],"sales":[…]}, kind "ingest") or any shape, with
 * `records_pointer` naming the array of one kind's records; an XML feed names its records with
 * an XPath (libxml2 with no network, no DTD, no entity expansion: formats/feed_records.c).
 * Every record goes through the instance's mapping, then the webhook's validation and store
 * path with upsert semantics (a sale stored with identical content is no conflict).
 *
 * Policy `reject_feed` (default): the feed is stored all or nothing in one transaction, and
 * the cursor (ETag) moves with it; a refused feed leaves the cursor, so the next run fetches it
 * again. `skip_records`: bad records are left out and listed in the status; the rest is stored
 * in chunks and the cursor moves with the last chunk (a crash in between re-reads the feed and
 * stores nothing twice). */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "core/connector.h"
#include "formats/feed_records.h"
#include "formats/json_pointer.h"
#include "http/client.h"

#define CHUNK 1000

struct feed_conf {
    const char *url, *records_pointer, *xpath, *auth_header;
    int format; /* enum feed_format */
    int kind;   /* enum feed_kind */
    int policy; /* enum feed_policy */
    int64_t timeout_seconds, max_bytes, max_attempts, retry_initial_ms;
};
enum feed_format { FORMAT_AUTO, FORMAT_JSON, FORMAT_XML };
enum feed_kind { KIND_INGEST, KIND_EVENTS, KIND_CUSTOMERS, KIND_SALES };
enum feed_policy { POLICY_REJECT_FEED, POLICY_SKIP_RECORDS };

#define AT(member) offsetof(struct feed_conf, member)

static const struct sd_setting settings[] = {
    {"url", SD_SETTING_URL, NULL, 8, 2048, "http(s) URL of the feed", SD_CHOICES("http", "https"),
     AT(url)},
    {"format", SD_SETTING_CHOICE, "\"auto\"", 0, 0,
     "json, xml, or auto (from the Content-Type, then the first byte)",
     SD_CHOICES("auto", "json", "xml"), AT(format)},
    {"kind", SD_SETTING_CHOICE, "\"ingest\"", 0, 0,
     "ingest (a JSON body with events/customers/sales arrays), events, customers or sales",
     SD_CHOICES("ingest", "events", "customers", "sales"), AT(kind)},
    {"records_pointer", SD_SETTING_STRING, "\"\"", 0, 256,
     "JSON feeds of one kind: JSON Pointer to the records array (\"\" = the document)", NULL,
     AT(records_pointer)},
    {"xpath", SD_SETTING_STRING, "\"/*/*\"", 1, 512, "XML feeds: XPath selecting the records", NULL,
     AT(xpath)},
    {"auth_header", SD_SETTING_SECRET, "\"\"", 0, 4096,
     "value of the Authorization header (e.g. \"Bearer abc\"); never shown again", NULL,
     AT(auth_header)},
    {"policy", SD_SETTING_CHOICE, "\"reject_feed\"", 0, 0,
     "reject_feed (all or nothing) or skip_records (store the good records, list the bad)",
     SD_CHOICES("reject_feed", "skip_records"), AT(policy)},
    {"timeout_seconds", SD_SETTING_INT, "60", 1, 3600, "per request", NULL, AT(timeout_seconds)},
    {"max_bytes", SD_SETTING_INT, "67108864", 1024, 268435456,
     "largest feed accepted (an XML feed needs about 25 times its size in memory)", NULL,
     AT(max_bytes)},
    {"max_attempts", SD_SETTING_INT, "6", 1, 20, "requests per run before the run fails", NULL,
     AT(max_attempts)},
    {"retry_initial_ms", SD_SETTING_INT, "1000", 1, 600000, "first back-off", NULL,
     AT(retry_initial_ms)},
    {NULL, 0, NULL, 0, 0, NULL, NULL, 0},
};

static const struct feed_conf *cf(const struct sd_connector_ctx *ctx)
{
    return ctx->conf;
}

static void check(const void *conf, struct sd_issues *errors)
{
    /* url (scheme, host, egress policy) and the choices are checked by their setting types. */
    const struct feed_conf *c = conf;
    if (!sd_json_pointer_valid(c->records_pointer)) {
        sd_issues_add(errors, "/settings/records_pointer", "is not a JSON Pointer (RFC 6901)");
    }
}

static bool is_xml(const struct sd_connector_ctx *ctx, const struct sd_http_response *resp)
{
    if (cf(ctx)->format != FORMAT_AUTO) {
        return cf(ctx)->format == FORMAT_XML;
    }
    if (resp->content_type && strstr(resp->content_type, "xml")) {
        return true;
    }
    const char *b = resp->body.data ? resp->body.data : "";
    while (*b == ' ' || *b == '\n' || *b == '\r' || *b == '\t' || (unsigned char)*b == 0xEF ||
           (unsigned char)*b == 0xBB || (unsigned char)*b == 0xBF) {
        b++;
    }
    return *b == '<';
}

/* Build the ingest body (mapped) from the document; issues for unmappable records. */
static int build_body(struct sd_connector_ctx *ctx, const struct sd_http_response *resp,
                      json_t **ret, struct sd_issues *errors, size_t *ret_bad)
{
    int kind = cf(ctx)->kind;
    const char *buf = resp->body.data ? resp->body.data : "";
    size_t len = resp->body.len;
    json_t *body = json_object();
    char *err = NULL;
    int r = 0;
    *ret_bad = 0;
    if (kind == KIND_INGEST) {
        json_t *doc = NULL;
        if (is_xml(ctx, resp)) {
            r = sd_connector_fail(ctx, -EINVAL,
                                  "kind \"ingest\" needs a JSON feed; "
                                  "set kind to events, customers or sales for XML");
            goto out;
        }
        json_error_t jerr;
        doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!doc) {
            r = sd_connector_fail(ctx, -EINVAL, "feed is not valid JSON: line %d, column %d: %s",
                                  jerr.line, jerr.column, jerr.text);
            goto out;
        }
        if (!json_is_object(doc)) {
            json_decref(doc);
            r = sd_connector_fail(ctx, -EINVAL,
                                  "feed must be a JSON object with events, "
                                  "customers and/or sales arrays");
            goto out;
        }
        r = 0;
        for (int k = 0; k < 3; k++) {
            const char *name = sd_kind_array_name((enum sd_kind)k);
            const json_t *arr = json_object_get(doc, name);
            if (!arr) {
                continue;
            }
            if (!json_is_array(arr)) {
                json_decref(doc);
                r = sd_connector_fail(ctx, -EINVAL, "feed member '%s' must be an array", name);
                goto out;
            }
            char prefix[32];
            sd_utf8_snprintf(prefix, sizeof(prefix), "/%s", name);
            *ret_bad += sd_connector_map_records(ctx, (enum sd_kind)k, arr, prefix, body, errors);
        }
        json_decref(doc);
    } else {
        enum sd_kind k = kind == KIND_EVENTS      ? SD_KIND_EVENT
                         : kind == KIND_CUSTOMERS ? SD_KIND_CUSTOMER
                                                  : SD_KIND_SALE;
        json_t *records = NULL;
        bool xml = is_xml(ctx, resp);
        r = xml ? sd_xml_records_until(buf, len, cf(ctx)->xpath, ctx->stop, &records, &err)
                : sd_json_records(buf, len, cf(ctx)->records_pointer, &records, &err);
        if (r == -ECANCELED) {
            r = sd_connector_fail(ctx, -ECANCELED,
                                  "stopped while reading the feed: the hub is "
                                  "shutting down");
            goto out;
        }
        if (r < 0) {
            r = sd_connector_fail(ctx, -EINVAL, "%s feed refused: %s", xml ? "XML" : "JSON",
                                  err ? err : "unreadable");
            goto out;
        }
        *ret_bad = sd_connector_map_records(ctx, k, records, "", body, errors);
        json_decref(records);
    }
    *ret = body;
    body = NULL;
out:
    free(err);
    json_decref(body);
    return r;
}

/* An issue's pointer into a chunk of `name` records that starts at `at` ("/sales/3/x") as a
 * pointer into the whole feed ("/sales/1003/x"). */
static void feed_pointer(const char *p, const char *name, size_t at, char *buf, size_t size)
{
    size_t nl = strlen(name) + 1;
    char *end = NULL;
    unsigned long long idx = p[0] == '/' && strncmp(p + 1, name, nl - 1) == 0 && p[nl] == '/'
                                 ? strtoull(p + nl + 1, &end, 10)
                                 : 0;
    if (end && end != p + nl + 1) {
        sd_utf8_snprintf(buf, size, "/%s/%llu%s", name, idx + at, end);
    } else {
        sd_utf8_snprintf(buf, size, "%s", p);
    }
}

struct whole {
    const json_t *body;
    struct sd_issues *errors;
    const json_t *cursor;
    int status;
};

/* reject_feed: every chunk in one transaction; any refusal undoes all of it. */
static int store_whole(struct sd_connector_job *job, void *arg)
{
    struct whole *w = arg;
    for (int k = 0; k < 3; k++) {
        const char *name = sd_kind_array_name((enum sd_kind)k);
        const json_t *arr = json_object_get(w->body, name);
        for (size_t at = 0; at < json_array_size(arr); at += CHUNK) {
            json_t *chunk = json_array();
            for (size_t i = at; i < at + CHUNK && i < json_array_size(arr); i++) {
                json_array_append(chunk, json_array_get(arr, i));
            }
            json_t *part = json_pack("{s:o}", name, chunk);
            struct sd_ingest_outcome out;
            sd_ingest_outcome_init(&out);
            int r = sd_connector_job_ingest(job, part, &out);
            json_decref(part);
            if (r == 0 && out.status != 202) {
                for (size_t i = 0; i < out.errors.n; i++) {
                    char ptr[160];
                    feed_pointer(out.errors.items[i].pointer, name, at, ptr, sizeof(ptr));
                    sd_issues_add(w->errors, ptr, "%s", out.errors.items[i].message);
                }
                w->status = out.status;
            }
            sd_ingest_outcome_release(&out);
            if (r < 0) {
                return r;
            }
        }
    }
    if (w->status != 0) {
        return 1;
    }
    return sd_connector_job_cursor(job, w->cursor);
}

static int fail_with_errors(struct sd_connector_ctx *ctx, const struct sd_issues *errors,
                            const char *what)
{
    return sd_connector_fail(ctx, -EINVAL,
                             "%s: %zu record(s) refused, nothing stored; first: %s %s", what,
                             errors->total, errors->n ? errors->items[0].pointer : "",
                             errors->n ? errors->items[0].message : "");
}

static int feed_run(struct sd_connector_ctx *ctx, void *state)
{
    (void)state;
    const json_t *etag = json_object_get(ctx->cursor, "etag");
    const json_t *lm = json_object_get(ctx->cursor, "last_modified");
    char *h_inm =
        json_is_string(etag) ? sd_asprintf("If-None-Match: %s", json_string_value(etag)) : NULL;
    char *h_ims =
        json_is_string(lm) ? sd_asprintf("If-Modified-Since: %s", json_string_value(lm)) : NULL;
    char *h_auth =
        cf(ctx)->auth_header[0] ? sd_asprintf("Authorization: %s", cf(ctx)->auth_header) : NULL;
    const char *headers[5];
    size_t nh = 0;
    headers[nh++] = "Accept: application/json, application/xml, text/xml;q=0.9, */*;q=0.1";
    if (h_inm) {
        headers[nh++] = h_inm;
    }
    if (h_ims) {
        headers[nh++] = h_ims;
    }
    if (h_auth) {
        headers[nh++] = h_auth;
    }
    headers[nh] = NULL;
    struct sd_http_request rq = {.url = cf(ctx)->url,
                                 .headers = headers,
                                 .timeout_ms = cf(ctx)->timeout_seconds * 1000,
                                 .max_body = (size_t)cf(ctx)->max_bytes};
    struct sd_http_retry pol = {.max_attempts = (int)cf(ctx)->max_attempts,
                                .initial_ms = cf(ctx)->retry_initial_ms,
                                .stop = ctx->stop};
    struct sd_http_response resp;
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    json_t *body = NULL, *cursor = NULL;
    int attempts = 0;
    int r = sd_http_fetch_retry(&rq, &pol, &resp, &attempts);
    if (r < 0) {
        r = sd_connector_fail(ctx, r, "fetching %s failed after %d attempt(s): %s", rq.url,
                              attempts, resp.error);
        goto out;
    }
    if (resp.status == 304) {
        goto out; /* unchanged: nothing to do */
    }
    if (resp.status != 200) {
        r = sd_connector_fail(ctx, -EIO, "fetching %s: HTTP %ld after %d attempt(s)", rq.url,
                              resp.status, attempts);
        goto out;
    }
    char hash[65];
    sd_sha256_hex(resp.body.data ? resp.body.data : "", resp.body.len, hash);
    const json_t *old = json_object_get(ctx->cursor, "sha256");
    cursor = json_pack("{s:s, s:s?, s:s?}", "sha256", hash, "etag", resp.etag, "last_modified",
                       resp.last_modified);
    if (json_is_string(old) && strcmp(json_string_value(old), hash) == 0) {
        /* Same bytes as last time: nothing new. But keep the new ETag / Last-Modified, or every
         * later run would send the old ones and download the whole feed again. */
        if (!json_equal(cursor, ctx->cursor)) {
            json_t *empty = json_object();
            struct sd_ingest_outcome out;
            sd_ingest_outcome_init(&out);
            r = sd_connector_commit(ctx, empty, cursor, false, &out);
            sd_ingest_outcome_release(&out);
            json_decref(empty);
        }
        goto out;
    }
    atomic_store(ctx->progress, 0);
    size_t bad = 0;
    r = build_body(ctx, &resp, &body, &errors, &bad);
    if (r < 0) {
        goto out;
    }
    size_t total = 0;
    for (int k = 0; k < 3; k++) {
        total += json_array_size(json_object_get(body, sd_kind_array_name((enum sd_kind)k)));
    }
    atomic_store(ctx->progress, total + bad);
    bool skip = cf(ctx)->policy == POLICY_SKIP_RECORDS;
    if (!skip) {
        if (bad > 0) {
            r = fail_with_errors(ctx, &errors, "feed refused");
            goto out;
        }
        struct whole w = {.body = body, .errors = &errors, .cursor = cursor};
        r = sd_connector_write_job(ctx, store_whole, &w);
        if (r == 0 && w.status != 0) {
            r = fail_with_errors(ctx, &errors, "feed refused");
        }
        goto out;
    }
    /* skip_records: chunks, each committed; the cursor goes with the last one. */
    ctx->records_rejected += bad;
    size_t skipped = bad;
    int last_kind = -1;
    for (int k = 0; k < 3; k++) {
        if (json_array_size(json_object_get(body, sd_kind_array_name((enum sd_kind)k)))) {
            last_kind = k;
        }
    }
    if (last_kind < 0) {
        json_t *empty = json_object();
        struct sd_ingest_outcome out;
        sd_ingest_outcome_init(&out);
        r = sd_connector_commit(ctx, empty, cursor, true, &out);
        sd_ingest_outcome_release(&out);
        json_decref(empty);
    }
    for (int k = 0; k <= last_kind && r == 0; k++) {
        const char *name = sd_kind_array_name((enum sd_kind)k);
        const json_t *arr = json_object_get(body, name);
        size_t n = json_array_size(arr);
        for (size_t at = 0; at < n && r == 0; at += CHUNK) {
            json_t *chunk = json_array();
            for (size_t i = at; i < at + CHUNK && i < n; i++) {
                json_array_append(chunk, json_array_get(arr, i));
            }
            json_t *part = json_pack("{s:o}", name, chunk);
            bool last = k == last_kind && at + CHUNK >= n;
            struct sd_ingest_outcome out;
            sd_ingest_outcome_init_limit(&out, CHUNK + 16);
            r = sd_connector_commit(ctx, part, last ? cursor : NULL, true, &out);
            for (size_t i = 0; i < out.errors.n; i++) {
                char ptr[160];
                feed_pointer(out.errors.items[i].pointer, name, at, ptr, sizeof(ptr));
                sd_issues_add(&errors, ptr, "%s", out.errors.items[i].message);
            }
            if (r == 0 && out.status != 202) {
                char first[160] = "";
                if (out.errors.n) {
                    feed_pointer(out.errors.items[0].pointer, name, at, first, sizeof(first));
                }
                r = sd_connector_fail(ctx, -EINVAL, "feed chunk refused: %s %s", first,
                                      out.errors.n ? out.errors.items[0].message : "");
            }
            skipped += out.n_skipped;
            sd_ingest_outcome_release(&out);
            json_decref(part);
        }
    }
    if (r == 0 && skipped > 0) {
        /* Stored what was good; the status still says what was left out. */
        sd_connector_fail(ctx, 0, "%zu record(s) skipped; first: %s %s", skipped,
                          errors.n ? errors.items[0].pointer : "",
                          errors.n ? errors.items[0].message : "");
    }
out:
    sd_http_response_release(&resp);
    sd_issues_release(&errors);
    json_decref(body);
    json_decref(cursor);
    free(h_inm);
    free(h_ims);
    if (h_auth) {
        explicit_bzero(h_auth, strlen(h_auth));
        free(h_auth);
    }
    return r;
}

const struct sd_connector sd_connector_feed = {
    .name = "feed",
    .kind = SD_CONNECTOR_SOURCE,
    .help = "fetch an XML or JSON feed from a URL (ETag / If-Modified-Since aware)",
    .settings = settings,
    .settings_size = sizeof(struct feed_conf),
    .default_schedule = "hourly",
    .run = feed_run,
    .check = check,
};
