/* ats.c — the ATS client (see ats.h): the envelope, tolerant answer parsing, result classes,
 * the 202 polling cycle with its cookies kept in the saved state, and every request taken from
 * the quota before it is sent.
 *
 * Invariants:
 *  - one request = one quota unit, taken before the request (polls and repeats included), so
 *    the ledger never says less than the server counted;
 *  - after every 202 the poll (text, cookies, first-sent time) is committed before the wait, so
 *    a kill -9 at any point of a cycle leaves the latest cookies for the next run;
 *  - a 429 is a wait, never an attempt: only transport errors and 5xx use up max_attempts;
 *  - nothing of the API key or the cookies reaches a log line or a detail text. */
#include "connectors/archtics/ats.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/base.h"
#include "base/log.h"
#include "http/client.h"
#include "model/model.h"
#include "model/tz.h"

#define SAVED_POLL "ats_poll"
#define MAX_429_WAITS 20
#define MAX_RESUBMITS 2

struct ats_client {
    struct sd_connector_ctx *ctx;
    struct ats_params p;
    char *url;
    char *key_line;
    int64_t calls;
};

void ats_answer_release(struct ats_answer *a)
{
    if (a) {
        json_decref(a->doc);
        a->doc = NULL;
        a->c1 = NULL;
    }
}

struct ats_client *ats_client_new(struct sd_connector_ctx *ctx, const struct ats_params *p)
{
    struct ats_client *c = sd_calloc(1, sizeof(*c));
    c->ctx = ctx;
    c->p = *p;
    if (c->p.poll_interval_ms <= 0) {
        c->p.poll_interval_ms = 500;
    }
    if (c->p.poll_timeout_ms <= 0) {
        c->p.poll_timeout_ms = 150000;
    }
    if (c->p.max_attempts <= 0) {
        c->p.max_attempts = 4;
    }
    if (c->p.backoff_initial_ms <= 0) {
        c->p.backoff_initial_ms = 1000;
    }
    if (c->p.timeout_ms <= 0) {
        c->p.timeout_ms = 60000;
    }
    char *dsn = sd_http_url_escape(p->dsn ? p->dsn : "");
    size_t n = strlen(p->base_url);
    while (n > 0 && p->base_url[n - 1] == '/') {
        n--;
    }
    c->url =
        sd_asprintf("%.*s/%s/ticketing_services.aspx?dsn=%s", (int)n, p->base_url, p->product, dsn);
    free(dsn);
    if (sd_http_header("apikey", p->api_key ? p->api_key : "", &c->key_line) < 0) {
        c->key_line = NULL; /* ats_call refuses to send (ATS_AUTH) */
    }
    return c;
}

void ats_client_free(struct ats_client *c)
{
    if (!c) {
        return;
    }
    sd_http_header_free(c->key_line);
    free(c->url);
    free(c);
}

int64_t ats_client_calls(const struct ats_client *c)
{
    return c ? c->calls : 0;
}

/* ---- tolerant readers --------------------------------------------------------------------- */

const json_t *ats_get(const json_t *obj, const char *key)
{
    if (!json_is_object(obj) || !key) {
        return NULL;
    }
    const json_t *v = json_object_get(obj, key);
    if (v) {
        return v;
    }
    const char *k;
    json_t *val;
    json_object_foreach((json_t *)obj, k, val)
    {
        if (strcasecmp(k, key) == 0) {
            return val;
        }
    }
    return NULL;
}

static const char *trim(const char *s, size_t *ret_len)
{
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) {
        n--;
    }
    *ret_len = n;
    return s;
}

int ats_get_int(const json_t *obj, const char *key, int64_t *ret)
{
    const json_t *v = ats_get(obj, key);
    if (json_is_integer(v)) {
        *ret = (int64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!isfinite(d) || d != floor(d) || fabs(d) > 9.0e15) {
            return -EINVAL;
        }
        *ret = (int64_t)d;
        return 0;
    }
    if (json_is_string(v)) {
        size_t n;
        const char *s = trim(json_string_value(v), &n);
        if (n == 0 || n > 20) {
            return -EINVAL;
        }
        char buf[24];
        memcpy(buf, s, n);
        buf[n] = '\0';
        int64_t x;
        if (sd_parse_int64(buf, true, &x) < 0) {
            return -EINVAL;
        }
        *ret = x;
        return 0;
    }
    return -EINVAL;
}

int ats_real_text(double v, char out[40])
{
    if (!isfinite(v)) {
        return -EINVAL;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, 40, "%.*g", prec, v);
        if (strtod(out, NULL) == v) {
            break;
        }
    }
    if (strchr(out, 'e') || strchr(out, 'E')) {
        /* beyond the plain range: write it out in full */
        snprintf(out, 40, "%.6f", v);
        if (strlen(out) >= 39) {
            return -EINVAL;
        }
        char *dot = strchr(out, '.');
        if (dot) {
            char *end = out + strlen(out) - 1;
            while (end > dot && *end == '0') {
                *end-- = '\0';
            }
            if (end == dot) {
                *end = '\0';
            }
        }
    }
    return 0;
}

char *ats_get_text(const json_t *obj, const char *key)
{
    const json_t *v = ats_get(obj, key);
    if (json_is_string(v)) {
        size_t n;
        const char *s = trim(json_string_value(v), &n);
        return sd_strndup(s, n);
    }
    if (json_is_integer(v)) {
        return sd_asprintf("%lld", (long long)json_integer_value(v));
    }
    if (json_is_real(v)) {
        char buf[40];
        return ats_real_text(json_real_value(v), buf) == 0 ? sd_strdup(buf) : NULL;
    }
    if (json_is_boolean(v)) {
        return sd_strdup(json_is_true(v) ? "true" : "false");
    }
    return NULL;
}

/* A plain non-negative decimal: digits, at most one '.', a digit on each side of it. */
static bool plain_decimal(const char *s)
{
    size_t digits = 0, dots = 0;
    for (const char *p = s; *p; p++) {
        if (*p >= '0' && *p <= '9') {
            digits++;
        } else if (*p == '.' && dots == 0 && p != s && p[1] >= '0' && p[1] <= '9') {
            dots++;
        } else {
            return false;
        }
    }
    return digits > 0;
}

int ats_money_text(const json_t *obj, const char *key, char out[40])
{
    const json_t *v = ats_get(obj, key);
    if (json_is_real(v)) {
        if (json_real_value(v) < 0 || ats_real_text(json_real_value(v), out) < 0) {
            return -EINVAL;
        }
        return plain_decimal(out) ? 0 : -EINVAL;
    }
    if (json_is_integer(v)) {
        if (json_integer_value(v) < 0) {
            return -EINVAL;
        }
        snprintf(out, 40, "%lld", (long long)json_integer_value(v));
        return 0;
    }
    if (json_is_string(v)) {
        size_t n;
        const char *s = trim(json_string_value(v), &n);
        if (n == 0 || n >= 40) {
            return -EINVAL;
        }
        memcpy(out, s, n);
        out[n] = '\0';
        return plain_decimal(out) ? 0 : -EINVAL;
    }
    return -EINVAL;
}

/* ---- times -------------------------------------------------------------------------------- */

static int digits(const char *s, int n, int *ret)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -EINVAL;
        }
        v = v * 10 + (s[i] - '0');
    }
    *ret = v;
    return 0;
}

int ats_local_parse(const char *s, int64_t *ret_local)
{
    if (!s) {
        return -EINVAL;
    }
    size_t n;
    s = trim(s, &n);
    int y, mo, d, h = 0, mi = 0, sec = 0;
    if (n < 10 || digits(s, 4, &y) < 0 || s[4] != '-' || digits(s + 5, 2, &mo) < 0 || s[7] != '-' ||
        digits(s + 8, 2, &d) < 0) {
        return -EINVAL;
    }
    if (n > 10) {
        if ((n != 16 && n != 19) || (s[10] != ' ' && s[10] != 'T') || digits(s + 11, 2, &h) < 0 ||
            s[13] != ':' || digits(s + 14, 2, &mi) < 0) {
            return -EINVAL;
        }
        if (n == 19 && (s[16] != ':' || digits(s + 17, 2, &sec) < 0)) {
            return -EINVAL;
        }
    }
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap) ||
        h > 23 || mi > 59 || sec > 59) {
        return -EINVAL;
    }
    *ret_local = sd_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
    return 0;
}

void ats_local_format(int64_t local, char out[20])
{
    int64_t days = local >= 0 ? local / 86400 : -((-local + 86399) / 86400);
    int64_t rem = local - days * 86400;
    int64_t y;
    int m, d;
    sd_civil_from_days(days, &y, &m, &d);
    snprintf(out, 20, "%04lld-%02d-%02d %02d:%02d", (long long)y, m, d, (int)(rem / 3600),
             (int)(rem % 3600 / 60));
}

int ats_local_to_utc(const struct sd_tz *tz, const char *s, bool later, int64_t *ret_utc)
{
    int64_t local;
    if (!tz || ats_local_parse(s, &local) < 0) {
        return -EINVAL;
    }
    int64_t utc;
    int r = sd_tz_local_to_utc(tz, local, later ? SD_TZ_LATER : SD_TZ_EARLIER, &utc);
    if (r < 0) {
        return r;
    }
    *ret_utc = utc;
    return 0;
}

void ats_utc_format(int64_t utc, char out[24])
{
    int64_t days = utc >= 0 ? utc / 86400 : -((-utc + 86399) / 86400);
    int64_t rem = utc - days * 86400;
    int64_t y;
    int m, d;
    sd_civil_from_days(days, &y, &m, &d);
    snprintf(out, 24, "%04lld-%02d-%02dT%02d:%02d:%02dZ", (long long)y, m, d, (int)(rem / 3600),
             (int)(rem % 3600 / 60), (int)(rem % 60));
}

/* ---- envelope and answers ----------------------------------------------------------------- */

char *ats_envelope_text(const struct ats_params *p, const char *cmd, const json_t *params)
{
    /* ref: the same command always has the same text, so a restarted run finds its saved poll */
    char *canon = params ? json_dumps(params, JSON_COMPACT | JSON_SORT_KEYS) : sd_strdup("{}");
    char *seed = sd_asprintf("%s\n%s", cmd, canon ? canon : "");
    char hex[65];
    sd_sha256_hex(seed, strlen(seed), hex);
    free(seed);
    free(canon);
    hex[16] = '\0';
    json_t *c1 = json_pack("{s:s, s:s, s:s, s:s+}", "cmd", cmd, "uid", p->uid ? p->uid : "", "dsn",
                           p->dsn ? p->dsn : "", "ref", "sd-", hex);
    if (json_is_object(params)) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)params, k, v)
        {
            if (!json_object_get(c1, k)) {
                json_object_set(c1, k, v);
            }
        }
    }
    json_t *doc = json_pack("{s:{s:i, s:i, s:s, s:s}, s:o}", "header", "ver", 1, "src_sys_type", 2,
                            "src_sys_name", p->src_sys_name ? p->src_sys_name : "stagedoor",
                            "archtics_version", p->archtics_version ? p->archtics_version : "",
                            "command1", c1);
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return text;
}

static void copy_detail(char *out, size_t size, const char *s)
{
    if (!size) {
        return;
    }
    size_t j = 0;
    for (size_t i = 0; s && s[i] && j + 1 < size; i++) {
        unsigned char ch = (unsigned char)s[i];
        out[j++] = ch < 0x20 || ch == 0x7f ? ' ' : (char)ch;
    }
    out[j] = '\0';
}

int ats_parse_answer(const char *body, size_t len, json_t **ret_doc, int64_t *ret_result,
                     int64_t *ret_sql_code, char *detail, size_t detail_size, char *why,
                     size_t why_size)
{
    json_error_t err;
    json_t *doc = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &err);
    if (!json_is_object(doc)) {
        snprintf(why, why_size, "the answer is not a JSON object (%s at offset %zu)",
                 doc ? "another JSON value" : "malformed", doc ? (size_t)0 : (size_t)err.position);
        json_decref(doc);
        return -EBADMSG;
    }
    const json_t *c1 = ats_get(doc, "command1");
    int64_t result;
    if (ats_get_int(c1, "result", &result) < 0 &&
        ats_get_int(ats_get(doc, "header"), "result", &result) < 0) {
        snprintf(why, why_size, "the answer has no readable result");
        json_decref(doc);
        return -EBADMSG;
    }
    int64_t sql = 0;
    if (ats_get_int(c1, "sql_code", &sql) < 0) {
        sql = 0;
    }
    char *d = ats_get_text(c1, "error_detail");
    if (!d || !*d) {
        free(d);
        d = ats_get_text(c1, "error_desc");
    }
    copy_detail(detail, detail_size, d ? d : "");
    free(d);
    *ret_doc = doc;
    *ret_result = result;
    *ret_sql_code = sql;
    return 0;
}

bool ats_is_no_data(int64_t result, const char *detail, int64_t no_data_result)
{
    if (result == 0) {
        return false;
    }
    if (detail && strncasecmp(detail, "no data for token", 17) == 0) {
        return true;
    }
    return result == no_data_result && no_data_result != 0 && (!detail || !*detail);
}

enum ats_status ats_classify_result(int64_t result, int64_t sql_code, const char *detail,
                                    int64_t no_data_result)
{
    switch (result) {
    case 0: return ATS_OK;
    case 11408: return ATS_HIT;
    case 11075: return ATS_TOO_LARGE;
    case 5024: /* customer_query: account or e-mail not found */
    case 5069: /* seats_sold: no blocks found */
    case 5212: /* event_search: no events */
    case 5231: /* event_details: no events (past the last page) */
    case 10684: /* customer_query: no record for alt_id */ return ATS_NOT_FOUND;
    default: break;
    }
    if (ats_is_no_data(result, detail, no_data_result)) {
        return ATS_RETRY;
    }
    return sql_code == 100 ? ATS_NOT_FOUND : ATS_REJECTED;
}

/* ---- the exchange ------------------------------------------------------------------------- */

static bool stopping(const struct ats_client *c)
{
    return c->ctx->stop && atomic_load(c->ctx->stop);
}

/* The Apigee fault's text, if the body is one (bounded; no key material in it). */
static void fault_text(const struct sd_http_response *resp, char *out, size_t size)
{
    out[0] = '\0';
    json_t *doc = json_loadb(resp->body.data ? resp->body.data : "", resp->body.len, 0, NULL);
    const json_t *f = ats_get(ats_get(doc, "fault"), "faultstring");
    if (json_is_string(f)) {
        copy_detail(out, size < 120 ? size : 120, json_string_value(f));
    }
    json_decref(doc);
}

/* One request of an exchange, repeated on transport errors, 5xx and short 429 waits. Returns
 * 0 with resp holding a 200 or 202, or -1 with a->status/detail set (resp released). */
static int send_one(struct ats_client *c, const char *text, struct sd_http_session *session,
                    struct sd_http_response *resp, struct ats_answer *a)
{
    const char *headers[] = {c->key_line, "Content-Type: application/json",
                             "Accept: application/json", NULL};
    struct sd_http_request rq = {.method = "POST",
                                 .url = c->url,
                                 .headers = headers,
                                 .body = text,
                                 .body_len = strlen(text),
                                 .timeout_ms = c->p.timeout_ms,
                                 .max_body = 32 * 1024 * 1024,
                                 .session = session};
    int attempts = 0, waits429 = 0;
    int64_t backoff_ms = c->p.backoff_initial_ms;
    for (;;) {
        if (stopping(c)) {
            a->status = ATS_CANCELED;
            return -1;
        }
        int64_t retry_at = 0;
        int q = sd_connector_quota_take_within(c->ctx, 1, c->p.max_wait_usec, &retry_at);
        if (q == -EAGAIN) {
            a->status = ATS_PAUSED;
            a->paused_until_usec = retry_at;
            snprintf(a->detail, sizeof(a->detail), "the call quota is spent");
            return -1;
        }
        if (q == -ECANCELED) {
            a->status = ATS_CANCELED;
            return -1;
        }
        if (q < 0) {
            a->status = ATS_RETRY;
            snprintf(a->detail, sizeof(a->detail), "the quota ledger failed (%s)", strerror(-q));
            return -1;
        }
        c->calls++;
        a->calls++;
        memset(resp, 0, sizeof(*resp));
        int r = sd_http_fetch(&rq, resp);
        a->http_status = r == 0 ? resp->status : 0;
        int64_t wait_ms = -1;
        if (r == 0 && (resp->status == 200 || resp->status == 202)) {
            return 0;
        }
        if (r == 0 && resp->status == 429) {
            int64_t ra = sd_http_retry_after(resp->retry_after, 400 * 86400);
            if (ra < 0) {
                ra = 60;
            }
            if (ra * 1000000 > c->p.max_wait_usec || ++waits429 > MAX_429_WAITS) {
                a->status = ATS_PAUSED;
                a->paused_until_usec = sd_now_usec() + ra * 1000000;
                snprintf(a->detail, sizeof(a->detail), "ATS answered 429 (call quota exceeded)");
                sd_http_response_release(resp);
                return -1;
            }
            sd_log(SD_LOG_INFO, "ats rate limit, waiting",
                   "connector=\"[archtics/%s]\" wait_s=%lld", c->ctx->id ? c->ctx->id : "",
                   (long long)ra);
            wait_ms = ra * 1000;
        } else if (r == 0 && (resp->status == 401 || resp->status == 403)) {
            char f[120];
            fault_text(resp, f, sizeof(f));
            a->status = ATS_AUTH;
            snprintf(a->detail, sizeof(a->detail), "HTTP %ld: %s", resp->status,
                     f[0] ? f : "refused");
            sd_http_response_release(resp);
            return -1;
        } else if (r == 0 && resp->status != 408 && resp->status < 500) {
            char f[120];
            fault_text(resp, f, sizeof(f));
            a->status = resp->status == 404 ? ATS_SETUP : ATS_REJECTED;
            snprintf(a->detail, sizeof(a->detail), "HTTP %ld: %s", resp->status,
                     f[0] ? f : "refused");
            sd_http_response_release(resp);
            return -1;
        } else {
            /* transport error, 408, 5xx: back off */
            if (++attempts >= c->p.max_attempts) {
                a->status = ATS_RETRY;
                if (r < 0) {
                    snprintf(a->detail, sizeof(a->detail), "%.180s after %d attempt(s)",
                             resp->error[0] ? resp->error : strerror(-r), attempts);
                } else {
                    snprintf(a->detail, sizeof(a->detail), "HTTP %ld after %d attempt(s)",
                             resp->status, attempts);
                }
                sd_http_response_release(resp);
                return -1;
            }
            int64_t ra = r == 0 && resp->status == 503
                             ? sd_http_retry_after(resp->retry_after, c->p.max_wait_usec / 1000000)
                             : -1;
            wait_ms = ra >= 0 ? ra * 1000 : backoff_ms;
            backoff_ms *= 2;
            sd_log(SD_LOG_INFO, "ats call failed, retrying",
                   "connector=\"[archtics/%s]\" status=%ld wait_ms=%lld",
                   c->ctx->id ? c->ctx->id : "", r == 0 ? resp->status : 0L, (long long)wait_ms);
        }
        sd_http_response_release(resp);
        if (sd_connector_wait(c->ctx, wait_ms * 1000) < 0) {
            a->status = ATS_CANCELED;
            return -1;
        }
    }
}

/* The poll in progress, committed now so that a restart resumes it. */
static void save_poll(struct ats_client *c, const char *cmd, const char *text,
                      struct sd_http_session *session, int64_t started_usec)
{
    json_t *saved = sd_connector_saved(c->ctx);
    if (!saved) {
        return;
    }
    char *cookies = sd_http_session_export(session);
    json_object_set_new(saved, SAVED_POLL,
                        json_pack("{s:s, s:s, s:s, s:I}", "cmd", cmd, "text", text, "cookies",
                                  cookies, "started_usec", (json_int_t)started_usec));
    free(cookies);
    int r = sd_connector_state_save(c->ctx);
    if (r < 0) {
        sd_log(SD_LOG_WARN, "ats poll not saved", "connector=\"[archtics/%s]\" " SD_LOG_ERR_FMT,
               c->ctx->id ? c->ctx->id : "", SD_LOG_ERR_ARGS(r));
    }
}

static void drop_poll(struct ats_client *c)
{
    json_t *saved = sd_connector_saved(c->ctx);
    if (saved) {
        json_object_del(saved, SAVED_POLL);
    }
}

/* A saved poll of exactly this text that has not expired: its cookies go into session. */
static bool resume_poll(struct ats_client *c, const char *text, struct sd_http_session *session,
                        int64_t *ret_started)
{
    json_t *saved = sd_connector_saved(c->ctx);
    const json_t *poll = json_object_get(saved, SAVED_POLL);
    if (!poll) {
        return false;
    }
    const char *t = json_string_value(json_object_get(poll, "text"));
    const char *cookies = json_string_value(json_object_get(poll, "cookies"));
    const json_t *st = json_object_get(poll, "started_usec");
    bool ok = t && cookies && json_is_integer(st) && strcmp(t, text) == 0 &&
              sd_now_usec() - json_integer_value(st) < c->p.poll_timeout_ms * 1000 &&
              sd_http_session_import(session, cookies) == 0;
    if (ok) {
        *ret_started = json_integer_value(st);
    } else {
        json_object_del(saved, SAVED_POLL); /* another command, or expired: submit afresh */
    }
    return ok;
}

int ats_call(struct ats_client *c, const char *cmd, const json_t *params, struct ats_answer *ret)
{
    memset(ret, 0, sizeof(*ret));
    if (!c || !cmd || !*cmd || (params && !json_is_object(params))) {
        return -EINVAL;
    }
    if (!c->key_line) {
        ret->status = ATS_AUTH;
        snprintf(ret->detail, sizeof(ret->detail), "the API key holds a control character");
        return 0;
    }
    char *text = ats_envelope_text(&c->p, cmd, params);
    struct sd_http_session *session = sd_http_session_new();
    int64_t started = sd_now_usec();
    ret->resumed = resume_poll(c, text, session, &started);
    int resubmits = 0;
    for (;;) {
        struct sd_http_response resp;
        if (send_one(c, text, session, &resp, ret) < 0) {
            break; /* ret->status says why; a saved poll stays for the next run */
        }
        if (resp.status == 202) {
            ret->polls++;
            sd_http_response_release(&resp);
            if (sd_now_usec() - started >= c->p.poll_timeout_ms * 1000) {
                drop_poll(c);
                if (resubmits++ >= MAX_RESUBMITS) {
                    ret->status = ATS_RETRY;
                    snprintf(ret->detail, sizeof(ret->detail),
                             "%s still queued after %lld ms of polling", cmd,
                             (long long)c->p.poll_timeout_ms);
                    break;
                }
                sd_http_session_free(session);
                session = sd_http_session_new();
                started = sd_now_usec();
                continue;
            }
            save_poll(c, cmd, text, session, started);
            if (sd_connector_wait(c->ctx, c->p.poll_interval_ms * 1000) < 0) {
                ret->status = ATS_CANCELED;
                break;
            }
            continue;
        }
        char why[160];
        int64_t result = 0, sql = 0;
        json_t *doc = NULL;
        int r = ats_parse_answer(resp.body.data, resp.body.len, &doc, &result, &sql, ret->detail,
                                 sizeof(ret->detail), why, sizeof(why));
        sd_http_response_release(&resp);
        drop_poll(c);
        if (r < 0) {
            ret->status = ATS_RETRY;
            snprintf(ret->detail, sizeof(ret->detail), "%s: %s", cmd, why);
            break;
        }
        if (ats_is_no_data(result, ret->detail, c->p.no_data_result)) {
            json_decref(doc);
            if (resubmits++ >= MAX_RESUBMITS) {
                ret->status = ATS_RETRY;
                break;
            }
            sd_http_session_free(session);
            session = sd_http_session_new();
            started = sd_now_usec();
            continue;
        }
        ret->doc = doc;
        ret->c1 = ats_get(doc, "command1");
        ret->result = result;
        ret->sql_code = sql;
        ret->status = ats_classify_result(result, sql, ret->detail, c->p.no_data_result);
        break;
    }
    sd_http_session_free(session);
    free(text);
    return 0;
}
