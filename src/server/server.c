/* server.c — libmicrohttpd glue: request lifecycle, limits, authentication, rate limiting,
 * suspension while a request waits for the writer, answer headers, logs and metrics.
 *
 * Lifecycle of one request (libmicrohttpd calls on_request several times):
 *   1st call  headers are in: route, authenticate, rate-limit, check Content-Type and
 *             Content-Length. Any refusal is answered right here, before the body is read.
 *   body      chunks are appended under the byte limit while a scanner (server/bodyscan.h) counts
 *             records, nesting and the parsed size, so an oversized body is refused while it
 *             streams: buffering stops at once, the rest is drained unkept (libmicrohttpd
 *             cannot answer mid-body) and the 413 goes out when the client stops sending, or
 *             the request deadline closes the connection. The bytes and the parsed estimate
 *             count against the server-wide budget (BUFFERED_MAX).
 *   last      the route's handler runs; it answers or suspends the connection.
 *   resumed   on_resume builds the answer from the writer's result.
 * on_completed logs one line, records metrics and frees the request.
 * Each connection is registered with the guard (server/guard.h) from accept to close, and told
 * its phase: head, request, hold (a handler or the writer works; no deadline), idle. */
#include "server/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/fmt.h"
#include "base/log.h"
#include "base/utf8.h"
#include "core/metrics.h"
#include "core/quality.h"
#include "server/bodyscan.h"
#include "server/guard.h"
#include "server/router.h"

struct sd_server {
    struct sd_hub *hub;
    struct MHD_Daemon *daemon;
    int listen_fd;
    char *tls_cert_pem;
    char *tls_key_pem;
    atomic_long in_flight;
    char id_prefix[9];
    _Atomic uint64_t id_counter;
    int64_t deadline_usec;
    atomic_size_t buffered; /* body bytes and their parsed estimate, all requests together */
    struct sd_guard *guard; /* phase deadlines and free slots for the connections */
    const struct sd_route *routes; /* the caller's table (sd_server_config) */
    size_t n_routes;
};

enum phase { PHASE_BODY, PHASE_SUSPENDED, PHASE_ANSWERED };

#define BODY_RESERVE_MAX (256 << 10)
/* All request bodies together, their bytes plus what they will cost once parsed (bodyscan.h):
 * past this, new body bytes get a 503 (retry shortly) instead of memory. Five bodies at the
 * parsed-size limit, or thousands of ordinary ones. */
#define BUFFERED_MAX ((size_t)1 << 30)

/* One per connection, from libmicrohttpd's STARTED notification to CLOSED (its socket context),
 * so nothing made for a request head that never completes can leak: the connection's entry in
 * the guard, and the target of the latest request line as received, before libmicrohttpd
 * decodes it in place (on_uri). */
struct conn_ctx {
    struct sd_guard_conn *guard;
    const char *raw_uri; /* only compared with on_request's url, never read */
    size_t raw_uri_len;  /* up to the first NUL byte */
    bool raw_nul_escape; /* holds "%00" */
    bool too_many_params; /* its query was cut off before libmicrohttpd parsed it */
};

/* Query parameters per request. libmicrohttpd 0.9.75 keeps each parsed parameter in the
 * connection's 32 KiB memory pool; a few hundred of them leave no room for any answer and the
 * connection is closed silently. No route takes more than a handful. */
#define MAX_QUERY_PARAMS 64

/* Server-private part of a request, wrapping the public one. */
struct req_priv {
    struct sd_req req; /* first: handlers get &priv->req */
    struct sd_server *srv;
    enum phase phase;
    bool discard; /* body refused: drain the rest without keeping it */
    size_t discarded;
    size_t accounted;            /* this request's share of srv->buffered */
    struct sd_body_scan scan;    /* records, depth and parsed size, counted as the body streams */
    struct conn_ctx *cc;         /* the connection's context (its guard entry, raw target) */
    struct sd_guard_conn *gconn; /* cc->guard, or NULL */
};

/* ---- public request helpers ---------------------------------------------------------------- */

const char *sd_req_header(struct sd_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *sd_req_query(struct sd_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

void sd_req_add_header(struct sd_req *req, const char *name, const char *fmt, ...)
{
    if (req->n_headers >= SD_REQ_MAX_HEADERS) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    char *v = sd_vasprintf(fmt, ap);
    va_end(ap);
    req->hdr_names[req->n_headers] = name;
    req->hdr_values[req->n_headers] = v;
    req->n_headers++;
}

void sd_req_reply_text(struct sd_req *req, int status, const char *content_type, const char *body)
{
    free(req->resp_body);
    req->status = status;
    req->content_type = content_type;
    req->resp_body = sd_strdup(body);
}

/* Total: a body that was never built (a json_pack that refused its input) or cannot be
 * serialized becomes a logged 500 with a fixed JSON text, never a crash. */
void sd_req_reply_json(struct sd_req *req, int status, json_t *body)
{
    free(req->resp_body);
    req->status = status;
    req->content_type = "application/json";
    req->resp_body = body ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(body);
    if (!req->resp_body) {
        sd_log(SD_LOG_ERROR, "answer could not be built; answering 500", "request_id=%s status=%d",
               req->request_id, status);
        req->status = 500;
        req->resp_body = sd_asprintf("{\"error\":\"internal_error\",\"message\":\"the answer "
                                     "could not be built\",\"request_id\":\"%s\"}",
                                     req->request_id);
    }
}

/* A JSON string of text that may come from the client: bytes that are not UTF-8 become
 * U+FFFD, so json_string never refuses it. */
static json_t *json_text(const char *s)
{
    char *fixed = sd_utf8_repair(s, strlen(s));
    json_t *j = json_string_nocheck(fixed);
    free(fixed);
    return j;
}

/* The message often quotes client input (an id from the path, a parser's error text): it goes
 * in through json_text, so this builder cannot fail. */
void sd_req_reply_error(struct sd_req *req, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = sd_vasprintf(fmt, ap);
    va_end(ap);
    json_t *o = json_object();
    json_object_set_new(o, "error", json_text(code));
    json_object_set_new(o, "message", json_text(msg));
    if (status >= 500) {
        json_object_set_new(o, "request_id", json_text(req->request_id));
    }
    free(msg);
    sd_req_reply_json(req, status, o);
}

int sd_req_submit(struct sd_req *req, struct sd_write_job *job)
{
    /* Suspend first: the writer may finish and resume before this handler returns. */
    MHD_suspend_connection(req->conn);
    int r = sd_writer_submit(req->hub->writer, job);
    if (r < 0) {
        job->done(job, r);
    }
    return SD_REQ_SUSPEND;
}

int sd_req_suspend(struct sd_req *req)
{
    MHD_suspend_connection(req->conn);
    return SD_REQ_SUSPEND;
}

void sd_req_resume(struct sd_req *req)
{
    atomic_store_explicit(&req->resumed, 1, memory_order_release);
    MHD_resume_connection(req->conn);
}

/* ---- answering ------------------------------------------------------------------------------- */

static enum MHD_Result send_answer(struct req_priv *p)
{
    struct sd_req *req = &p->req;
    p->phase = PHASE_ANSWERED;
    if (!req->resp_body) {
        sd_req_reply_error(req, 500, "internal_error", "no answer was produced");
    }
    size_t len = strlen(req->resp_body);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, req->resp_body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        return MHD_NO;
    }
    req->resp_body = NULL; /* owned by the response now */
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            req->content_type ? req->content_type : "application/json");
    MHD_add_response_header(resp, "X-Request-Id", req->request_id);
    /* Answers hold tenant data: never stored by a cache, unless the handler chose its own
     * policy (the dashboard's static files are revalidated by ETag). */
    bool own_cache_policy = false;
    for (size_t i = 0; i < req->n_headers; i++) {
        own_cache_policy |= strcasecmp(req->hdr_names[i], "Cache-Control") == 0;
    }
    if (!own_cache_policy) {
        MHD_add_response_header(resp, "Cache-Control", "no-store");
    }
    if (req->has_ratelimit) {
        char v[SD_FMT_I64_MAX];
        sd_fmt_i64(v, req->ratelimit.limit);
        MHD_add_response_header(resp, "RateLimit-Limit", v);
        sd_fmt_i64(v, req->ratelimit.remaining);
        MHD_add_response_header(resp, "RateLimit-Remaining", v);
        sd_fmt_i64(v, req->ratelimit.reset_sec);
        MHD_add_response_header(resp, "RateLimit-Reset", v);
    }
    for (size_t i = 0; i < req->n_headers; i++) {
        MHD_add_response_header(resp, req->hdr_names[i], req->hdr_values[i]);
    }
    enum MHD_Result r = MHD_queue_response(req->conn, (unsigned)req->status, resp);
    MHD_destroy_response(resp);
    return r;
}

/* ---- the checks before the body ------------------------------------------------------------ */

static bool content_type_is_json(const char *ct)
{
    if (!ct) {
        return false;
    }
    while (*ct == ' ' || *ct == '\t') {
        ct++;
    }
    static const char want[] = "application/json";
    if (strncasecmp(ct, want, sizeof(want) - 1) != 0) {
        return false;
    }
    ct += sizeof(want) - 1;
    while (*ct == ' ' || *ct == '\t') {
        ct++;
    }
    return *ct == '\0' || *ct == ';';
}

/* Two buckets per tenant and environment: reads (GET) and everything else (the webhook and
 * other writes), so a client paging through its data never spends the webhook's budget. Both
 * use the tenant's per-minute limit and burst. */
static uint64_t bucket_key(const struct sd_req *req)
{
    uint64_t read = strcmp(req->method, "GET") == 0;
    return ((uint64_t)req->who.tenant_id * 2 + (uint64_t)req->who.env) * 2 + read;
}

/* ---- the checks on the request head, before routing ---------------------------------------- */

/* What one pass over the headers and query arguments found. */
struct head_scan {
    size_t content_lengths;
    bool transfer_encoding;
    enum MHD_ValueKind bad_kind; /* 0: nothing wrong */
    bool bad_nul;                /* a NUL byte; otherwise not valid UTF-8 */
    char bad_name[80];           /* the header or parameter (UTF-8 cut, repaired when quoted) */
};

static enum MHD_Result scan_value(void *cls, enum MHD_ValueKind kind, const char *key,
                                  size_t key_size, const char *value, size_t value_size)
{
    struct head_scan *h = cls;
    if (kind == MHD_HEADER_KIND) {
        if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
            h->content_lengths++;
        } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
            h->transfer_encoding = true;
        }
    }
    if (h->bad_kind) {
        return MHD_YES;
    }
    /* libmicrohttpd hands out C strings but reports the real sizes: a shorter strlen means a
     * NUL byte that would silently cut the value ("Bearer KEY\0junk" must not read KEY). */
    bool nul = strlen(key) != key_size || (value && strlen(value) != value_size);
    bool bad_text = kind == MHD_GET_ARGUMENT_KIND &&
                    (!sd_utf8_valid(key, key_size) || (value && !sd_utf8_valid(value, value_size)));
    if (nul || bad_text) {
        h->bad_kind = kind;
        h->bad_nul = nul;
        sd_utf8_snprintf(h->bad_name, sizeof(h->bad_name), "%s", key);
    }
    return MHD_YES;
}

/* A walk over the request head as libmicrohttpd 0.9.75 leaves it in its read buffer: the
 * request line, then each header line with ':' and the line ends (CR LF or LF) overwritten by
 * NUL, header names and values pointing into it, in order. Between a name and its value only NUL
 * (the colon) and blanks belong; after a value or the version only the NULs of the line end.
 * Anything else is a NUL byte inside a line ("Bearer KEY\0junk"), which the C-string API would
 * silently cut. If the layout is not the expected one (a folded header copied elsewhere), the
 * walk gives up and finds nothing. */
struct head_walk {
    const char *pos, *end;
    bool gave_up, hidden;
};

static void walk_to(struct head_walk *w, const char *s, bool blanks)
{
    if (w->gave_up || w->hidden) {
        return;
    }
    if (s < w->pos || s > w->end) {
        w->gave_up = true;
        return;
    }
    for (; w->pos < s; w->pos++) {
        char c = *w->pos;
        if (c != '\0' && !(blanks && (c == ' ' || c == '\t'))) {
            w->hidden = true;
            return;
        }
    }
}

static void walk_over(struct head_walk *w, const char *s, bool blanks)
{
    walk_to(w, s, blanks);
    if (!w->gave_up && !w->hidden) {
        size_t n = strnlen(s, (size_t)(w->end - s));
        w->pos = s + n;
    }
}

static enum MHD_Result walk_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    struct head_walk *w = cls;
    (void)kind;
    walk_over(w, key, false);
    if (value) {
        walk_over(w, value, true);
    }
    return MHD_YES;
}

static bool header_hides_text(struct MHD_Connection *conn, const char *method, const char *version)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    if (!ci || !version || !*version) {
        return false;
    }
    struct head_walk w = {.end = method + ci->header_size};
    w.pos = version + strlen(version); /* the request line ends with the version */
    if (version < method || w.pos > w.end) {
        return false;
    }
    MHD_get_connection_values(conn, MHD_HEADER_KIND, walk_header, &w);
    walk_to(&w, w.end, false);
    return w.hidden && !w.gave_up;
}

/* Refuse a request head that cannot be read one way only: NUL bytes anywhere in the request
 * target or a header (C strings would cut them short), text that is not UTF-8 in the path or
 * a query argument (no id or value stored here can match it, and answers quote it), and
 * ambiguous body framing (two Content-Length, or one with Transfer-Encoding: a proxy in front
 * may split the stream differently — request smuggling). Returns true if answered. */
static bool refuse_head(struct req_priv *p, const char *method, const char *url,
                        const char *version)
{
    struct sd_req *req = &p->req;
    if (p->cc && p->cc->too_many_params) {
        sd_req_reply_error(req, 400, "invalid_parameter",
                           "more than %d query parameters", MAX_QUERY_PARAMS);
        return true;
    }
    struct head_scan h = {0};
    MHD_get_connection_values_n(req->conn, MHD_HEADER_KIND | MHD_GET_ARGUMENT_KIND, scan_value, &h);
    if (h.content_lengths > 1 || (h.content_lengths && h.transfer_encoding)) {
        sd_req_add_header(req, MHD_HTTP_HEADER_CONNECTION, "close");
        sd_req_reply_error(req, 400, "invalid_framing", "%s",
                           h.content_lengths > 1
                               ? "more than one Content-Length header"
                               : "Content-Length and Transfer-Encoding in one request");
        return true;
    }
    /* A raw NUL in the request line: libmicrohttpd 0.9.75 keeps the target and the version in
     * one buffer (target NUL version), so the target's real length is version - 1 - url; a
     * shorter strlen seen by on_uri means a NUL inside. Checked only when that layout holds. */
    const struct conn_ctx *cc = p->cc;
    bool raw_nul = cc && cc->raw_uri == url && version && *version && version > url &&
                   (size_t)(version - 1 - url) != cc->raw_uri_len;
    if ((cc && cc->raw_nul_escape) || raw_nul) {
        sd_req_reply_error(req, 400, "invalid_request",
                           "the request target holds a NUL byte (%%00); no path segment or query "
                           "parameter may contain one");
        return true;
    }
    if (h.bad_kind == MHD_HEADER_KIND) {
        sd_req_reply_error(req, 400, "invalid_header", "header '%s' holds a NUL byte", h.bad_name);
        return true;
    }
    if (header_hides_text(req->conn, method, version)) {
        sd_req_reply_error(req, 400, "invalid_header", "a header line holds a NUL byte");
        return true;
    }
    if (h.bad_kind == MHD_GET_ARGUMENT_KIND) {
        sd_req_reply_error(req, 400, "invalid_parameter", "query parameter '%s' %s", h.bad_name,
                           h.bad_nul ? "holds a NUL byte" : "is not valid UTF-8");
        return true;
    }
    if (!sd_utf8_valid(url, strlen(url))) {
        sd_req_reply_error(req, 400, "invalid_path",
                           "the path is not valid UTF-8 once percent-decoded");
        return true;
    }
    return false;
}

/* Returns true if the request was answered (refused). */
static bool admit(struct req_priv *p)
{
    struct sd_req *req = &p->req;
    struct sd_hub *hub = p->srv->hub;
    const struct sd_route *route = req->route;

    if (route->flags & SD_ROUTE_ADMIN) {
        const char *authz = sd_req_header(req, MHD_HTTP_HEADER_AUTHORIZATION);
        const char *token = NULL;
        if (authz && strncasecmp(authz, "Bearer ", 7) == 0) {
            token = authz + 7;
            while (*token == ' ') {
                token++;
            }
        }
        if (!sd_admin_token_check(hub->admin_hash, token)) {
            sd_req_add_header(req, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                              "Bearer realm=\"stagedoor-admin\"");
            sd_req_reply_error(req, 401, "unauthorized",
                               token ? "the admin token is not valid"
                                     : "an Authorization: Bearer admin token is required");
            return true;
        }
    }
    if (route->flags & SD_ROUTE_TENANT) {
        const char *authz = sd_req_header(req, MHD_HTTP_HEADER_AUTHORIZATION);
        const char *key = NULL;
        if (authz && strncasecmp(authz, "Bearer ", 7) == 0) {
            key = authz + 7;
            while (*key == ' ') {
                key++;
            }
        }
        int r = key && *key ? sd_auth_key(hub->auth, key, &req->who) : -ENOENT;
        if (r < 0) {
            sd_req_add_header(req, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"stagedoor\"");
            sd_req_reply_error(req, 401, "unauthorized",
                               r == -EKEYREVOKED ? "the API key has been revoked"
                               : key             ? "the API key is not valid"
                                                 : "an Authorization: Bearer API key is required");
            return true;
        }
        if (strcmp(req->who.client_id, req->params[0]) != 0) {
            /* The key is valid, so its bucket's state is shown; a refusal takes no token. */
            sd_ratelimit_peek(hub->ratelimiter, bucket_key(req), req->who.per_minute,
                              req->who.burst, sd_mono_usec(), &req->ratelimit);
            req->has_ratelimit = true;
            sd_req_reply_error(req, 403, "forbidden",
                               "this API key does not grant access to client '%s'", req->params[0]);
            return true;
        }
        req->authenticated = true;
    }
    if ((route->flags & SD_ROUTE_RATE_LIMITED) && req->authenticated) {
        sd_ratelimit_take(hub->ratelimiter, bucket_key(req), req->who.per_minute, req->who.burst,
                          sd_mono_usec(), &req->ratelimit);
        req->has_ratelimit = true;
        if (!req->ratelimit.allowed) {
            sd_req_add_header(req, MHD_HTTP_HEADER_RETRY_AFTER, "%lld",
                              (long long)req->ratelimit.retry_after);
            sd_req_reply_error(req, 429, "rate_limited",
                               "rate limit of %lld requests per minute (burst %lld) exceeded; "
                               "retry after %lld s",
                               (long long)req->who.per_minute, (long long)req->who.burst,
                               (long long)req->ratelimit.retry_after);
            return true;
        }
    }
    if (route->flags & SD_ROUTE_JSON_BODY) {
        if (!content_type_is_json(sd_req_header(req, MHD_HTTP_HEADER_CONTENT_TYPE))) {
            sd_req_reply_error(req, 415, "unsupported_media_type",
                               "Content-Type must be application/json");
            return true;
        }
        const char *cl = sd_req_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH);
        int64_t n = 0;
        if (cl && sd_parse_int64(cl, false, &n) == 0) {
            if (n > (int64_t)SD_MAX_BODY_BYTES) {
                sd_req_reply_error(req, 413, "payload_too_large",
                                   "body of %lld bytes exceeds the limit of %u bytes", (long long)n,
                                   SD_MAX_BODY_BYTES);
                return true;
            }
            /* Reserve what was announced, up to 256 KiB: a client that announces 8 MiB and then
             * trickles must not hold 8 MiB per connection before it has sent anything. */
            size_t reserve = (size_t)(n < BODY_RESERVE_MAX ? n : BODY_RESERVE_MAX) + 1;
            sd_buf_append(&req->body, "", 0);
            req->body.data = sd_realloc(req->body.data, reserve);
            req->body.cap = reserve;
        }
    }
    return false;
}

static void release_body(struct req_priv *p)
{
    sd_buf_release(&p->req.body);
    atomic_fetch_sub(&p->srv->buffered, p->accounted);
    p->accounted = 0;
}

/* A 413 (or the given answer) decided while the body streams: keep nothing more. */
__attribute__((format(printf, 4, 5))) static void
refuse_streaming_as(struct req_priv *p, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = sd_vasprintf(fmt, ap);
    va_end(ap);
    sd_req_reply_error(&p->req, status, code, "%s", msg);
    free(msg);
    p->discard = true;
    release_body(p);
}

#define refuse_streaming(p, ...) refuse_streaming_as(p, 413, "payload_too_large", __VA_ARGS__)

/* Refuses a body past a limit on its records or parsed size (413), or its nesting (400, as the
 * JSON parser would: a parse limit, not a size). */
static bool refuse_by_scan(struct req_priv *p)
{
    const struct sd_body_scan *s = &p->scan;
    if (s->records > SD_MAX_RECORDS) {
        refuse_streaming(p, "body holds more records than the limit of %u", SD_MAX_RECORDS);
        return true;
    }
    if (s->max_depth > (int)SD_MAX_BODY_DEPTH) {
        refuse_streaming_as(p, 400, "malformed_json",
                            "objects and arrays nest deeper than the limit of %u levels",
                            SD_MAX_BODY_DEPTH);
        return true;
    }
    if (s->parsed_bytes > SD_MAX_PARSED_BYTES) {
        refuse_streaming(p,
                         "body would take more than %u MiB of memory once parsed (the limit; each "
                         "object counts %u bytes, array %u, string or member name %u, number %u)",
                         SD_MAX_PARSED_BYTES >> 20, SD_SCAN_COST_OBJECT, SD_SCAN_COST_ARRAY,
                         SD_SCAN_COST_STRING, SD_SCAN_COST_NUMBER);
        return true;
    }
    return false;
}

/* ---- libmicrohttpd callbacks ----------------------------------------------------------------- */

/* URI log callback: a request line arrived, its target still undecoded. Recorded on the
 * connection (a kept-alive connection's next head begins here for the guard); on_request's
 * first call creates the request. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct sd_server *srv = cls;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct conn_ctx *cc = ci ? ci->socket_context : NULL;
    if (cc) {
        cc->raw_uri = uri;
        cc->raw_uri_len = strlen(uri);
        cc->raw_nul_escape = strstr(uri, "%00") != NULL;
        cc->too_many_params = false;
        char *q = strchr(uri, '?');
        size_t n = q ? 1 : 0;
        for (const char *c = q; c && *c; c++) {
            n += *c == '&';
        }
        if (n > MAX_QUERY_PARAMS) {
            /* libmicrohttpd parses the query from its own buffer after this callback returns:
             * ending the text right after '?' leaves it nothing to parse, so the pool keeps
             * room for the 400 that refuse_head() answers. */
            q[1] = '\0';
            cc->too_many_params = true;
        }
        sd_guard_request_line(srv->guard, cc->guard);
    }
    return NULL;
}

static struct req_priv *req_new(struct sd_server *srv, struct MHD_Connection *conn, const char *url,
                                const char *method)
{
    struct req_priv *p = sd_calloc(1, sizeof(*p));
    p->srv = srv;
    struct sd_req *req = &p->req;
    uint64_t id = atomic_fetch_add(&srv->id_counter, 1);
    /* "%s%016llx" of the prefix and the counter, without printf (fmt.h) */
    _Static_assert(sizeof(req->request_id) >= sizeof(srv->id_prefix) - 1 + 17, "request id");
    memcpy(req->request_id, srv->id_prefix, sizeof(srv->id_prefix) - 1);
    sd_fmt_hex64(req->request_id + sizeof(srv->id_prefix) - 1, id);
    req->start_usec = sd_mono_usec();
    req->hub = srv->hub;
    req->conn = conn;
    req->method = method;
    req->path = url;
    req->route_idx = SD_METRICS_MAX_ROUTES;
    sd_buf_init(&req->body);
    atomic_init(&req->resumed, 0);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    p->cc = ci ? ci->socket_context : NULL;
    p->gconn = p->cc ? p->cc->guard : NULL;
    sd_guard_request(srv->guard, p->gconn); /* the head is complete */
    return p;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct sd_server *srv = cls;
    struct req_priv *p = *con_cls;
    if (!p) {
        p = req_new(srv, conn, url, method);
        *con_cls = p;
        atomic_fetch_add(&srv->in_flight, 1);
        struct sd_req *req = &p->req;
        if (refuse_head(p, method, url, version)) {
            return send_answer(p);
        }
        char allow[64];
        enum sd_route_match m = sd_route_find(p->srv->routes, p->srv->n_routes, method, url, &req->route_idx, req->params,
                                              &req->n_params, allow, sizeof(allow));
        if (m == SD_ROUTE_NO_PATH) {
            req->route_idx = SD_METRICS_MAX_ROUTES;
            sd_req_reply_error(req, 404, "not_found", "no such endpoint");
            return send_answer(p);
        }
        if (m == SD_ROUTE_NO_METHOD) {
            req->route_idx = SD_METRICS_MAX_ROUTES;
            sd_req_add_header(req, MHD_HTTP_HEADER_ALLOW, "%s", allow);
            sd_req_reply_error(req, 405, "method_not_allowed", "use %s on this endpoint", allow);
            return send_answer(p);
        }
        req->route = &p->srv->routes[req->route_idx];
        if (admit(p)) {
            return send_answer(p);
        }
        return MHD_YES;
    }
    struct sd_req *req = &p->req;
    if (p->phase == PHASE_BODY) {
        if (*upload_data_size > 0) {
            size_t n = *upload_data_size;
            *upload_data_size = 0;
            if (sd_mono_usec() - req->start_usec > srv->deadline_usec) {
                sd_log(SD_LOG_WARN, "request deadline exceeded; closing connection",
                       "request_id=%s", req->request_id);
                return MHD_NO;
            }
            if (p->discard) {
                /* libmicrohttpd (0.9.75) cannot answer before the body is read, so a refused
                 * body is drained without being kept, bounded by the request deadline above,
                 * and the 413 goes out when it ends. */
                p->discarded += n;
                return MHD_YES;
            }
            if (!(req->route->flags & SD_ROUTE_JSON_BODY)) {
                p->discarded += n;
                return p->discarded > 65536 ? MHD_NO : MHD_YES;
            }
            if (req->body.len + n > SD_MAX_BODY_BYTES) {
                refuse_streaming(p, "body exceeds the byte limit of %u", SD_MAX_BODY_BYTES);
                return MHD_YES;
            }
            uint64_t parsed_before = p->scan.parsed_bytes;
            sd_body_scan_feed(&p->scan, upload_data, n);
            if (refuse_by_scan(p)) {
                return MHD_YES;
            }
            /* The bytes kept, and what they will cost once parsed. */
            size_t cost = n + (size_t)(p->scan.parsed_bytes - parsed_before);
            p->accounted += cost;
            if (atomic_fetch_add(&srv->buffered, cost) + cost > BUFFERED_MAX) {
                sd_req_add_header(req, MHD_HTTP_HEADER_RETRY_AFTER, "1");
                sd_req_reply_error(req, 503, "overloaded",
                                   "the hub is holding too many request bodies; retry shortly");
                p->discard = true;
                release_body(p);
                return MHD_YES;
            }
            sd_buf_append(&req->body, upload_data, n);
            return MHD_YES;
        }
        if (p->discard || req->status) {
            return send_answer(p);
        }
        /* The hub's own work does not count against the request deadline. */
        sd_guard_hold(srv->guard, p->gconn);
        int r = req->route->handler(req);
        if (r == SD_REQ_SUSPEND) {
            p->phase = PHASE_SUSPENDED;
            return MHD_YES;
        }
        sd_guard_unhold(srv->guard, p->gconn);
        return send_answer(p);
    }
    if (p->phase == PHASE_SUSPENDED) {
        if (!atomic_load_explicit(&req->resumed, memory_order_acquire)) {
            return MHD_YES;
        }
        req->on_resume(req);
        sd_guard_unhold(srv->guard, p->gconn);
        return send_answer(p);
    }
    (void)version;
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct sd_server *srv = cls;
    struct req_priv *p = *con_cls;
    (void)conn;
    if (!p) {
        return;
    }
    struct sd_req *req = &p->req;
    int64_t dur = sd_mono_usec() - req->start_usec;
    int status = p->phase == PHASE_ANSWERED ? req->status : 499;
    sd_metrics_request(req->route_idx, status, dur);
    if (req->authenticated && req->route && req->hub) {
        sd_quality_answer(req->hub->quality, req->who.tenant_id, req->who.env, req->route->name,
                          status);
    }
    /* "request_id=%s client=%s method=%s route=%s status=%d duration_us=%lld[ aborted=true]",
     * built without printf: this line is written for every request. */
    char tail[2048]; /* as long as a whole line: a long method is cut where the line is */
    struct sd_line l;
    sd_line_init(&l, tail, sizeof(tail));
    sd_line_puts(&l, "request_id=");
    sd_line_puts(&l, req->request_id);
    sd_line_puts(&l, " client=");
    sd_line_puts(&l, req->authenticated ? req->who.client_id : "-");
    sd_line_puts(&l, " method=");
    sd_line_puts(&l, req->method);
    sd_line_puts(&l, " route=");
    sd_line_puts(&l, req->route ? req->route->name : "-");
    sd_line_puts(&l, " status=");
    sd_line_i64(&l, status);
    sd_line_puts(&l, " duration_us=");
    sd_line_i64(&l, dur);
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) {
        sd_line_puts(&l, " aborted=true");
    }
    sd_log_text(SD_LOG_INFO, "request", tail, l.len);
    if (req->cleanup) {
        req->cleanup(req);
    }
    for (size_t i = 0; i < req->n_params; i++) {
        free(req->params[i]);
    }
    for (size_t i = 0; i < req->n_headers; i++) {
        free(req->hdr_values[i]);
    }
    free(req->resp_body);
    release_body(p);
    sd_guard_idle(srv->guard, p->gconn);
    free(p);
    *con_cls = NULL;
    atomic_fetch_sub(&srv->in_flight, 1);
}

/* A connection opens or closes: register it with the guard, or forget it (libmicrohttpd calls
 * CLOSED before it closes the socket, see guard.h). */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    struct sd_server *srv = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *fd =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        const union MHD_ConnectionInfo *addr =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        struct conn_ctx *cc = sd_calloc(1, sizeof(*cc));
        if (fd) {
            cc->guard = sd_guard_add(srv->guard, fd->connect_fd, addr ? addr->client_addr : NULL);
        }
        *socket_context = cc;
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        struct conn_ctx *cc = *socket_context;
        if (cc) {
            sd_guard_remove(srv->guard, cc->guard);
            free(cc);
        }
        *socket_context = NULL;
    }
}

/* ---- start and stop -------------------------------------------------------------------------- */

static int read_file(const char *path, char **ret)
{
    FILE *f = fopen(path, "rbe");
    if (!f) {
        return -errno;
    }
    struct sd_buf b;
    sd_buf_init(&b);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        sd_buf_append(&b, chunk, n);
        if (b.len > 1 << 20) {
            break;
        }
    }
    fclose(f);
    *ret = sd_buf_steal(&b);
    return 0;
}

static int open_listener(const char *host, int port, int *ret_fd, int *ret_port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    int r = getaddrinfo(host, portstr, &hints, &ai);
    if (r != 0) {
        sd_log(SD_LOG_ERROR, "cannot resolve listen address", "host=\"%s\" reason=\"%s\"", host,
               gai_strerror(r));
        return -EINVAL;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        r = -errno;
        freeaddrinfo(ai);
        return r;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
        r = -errno;
        sd_log(SD_LOG_ERROR, "cannot listen", "host=\"%s\" port=%d reason=\"%s\"", host, port,
               strerror(errno));
        close(fd);
        freeaddrinfo(ai);
        return r;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *ret_port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                         : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    *ret_fd = fd;
    return 0;
}

__attribute__((format(printf, 2, 0))) static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    sd_utf8_vsnprintf(msg, sizeof(msg), fmt, ap); /* may quote the request: cut on a boundary */
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '"')) {
        msg[--n] = '\0';
    }
    for (char *c = msg; *c; c++) {
        if (*c == '"') {
            *c = '\'';
        }
    }
    sd_log(SD_LOG_DEBUG, "libmicrohttpd", "detail=\"%s\"", msg);
}

int sd_server_start(struct sd_hub *hub, const struct sd_server_config *cfg, struct sd_server **ret,
                    int *ret_port)
{
    if (!cfg->routes || cfg->n_routes == 0 || cfg->n_routes > SD_METRICS_MAX_ROUTES) {
        sd_log(SD_LOG_ERROR, "server", "error=\"no route table, or more than %d routes\"",
               SD_METRICS_MAX_ROUTES);
        return -EINVAL;
    }
    struct sd_server *srv = sd_calloc(1, sizeof(*srv));
    srv->hub = hub;
    srv->routes = cfg->routes;
    srv->n_routes = cfg->n_routes;
    srv->listen_fd = -1;
    atomic_init(&srv->in_flight, 0);
    atomic_init(&srv->buffered, 0);
    uint8_t rnd[4];
    sd_random_bytes(rnd, sizeof(rnd));
    snprintf(srv->id_prefix, sizeof(srv->id_prefix), "%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2],
             rnd[3]);
    srv->deadline_usec =
        (int64_t)(cfg->request_deadline_sec ? cfg->request_deadline_sec : 120) * 1000000;
    unsigned max_connections = cfg->max_connections ? cfg->max_connections : 1000;
    unsigned max_per_ip = cfg->max_per_ip ? cfg->max_per_ip : 500;
    unsigned idle_sec = cfg->idle_timeout_sec ? cfg->idle_timeout_sec : 30;
    struct sd_guard_config gcfg = {
        .max_connections = max_connections,
        .max_per_ip = max_per_ip,
        .head_usec = (int64_t)(cfg->header_timeout_sec ? cfg->header_timeout_sec : 10) * 1000000,
        .request_usec = srv->deadline_usec,
        .idle_usec = (int64_t)idle_sec * 1000000,
    };
    int r = sd_guard_new(&gcfg, &srv->guard);
    if (r < 0) {
        free(srv);
        return r;
    }
    /* poll(), not epoll: libmicrohttpd 0.9.75 can abort in MHD_quiesce_daemon() when a pool
     * thread removes the listening socket from its epoll set at the same moment ("Failed to
     * remove listen FD from epoll set"); with poll quiescing is a plain flag. */
    unsigned flags =
        MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (cfg->tls_cert) {
        if ((r = read_file(cfg->tls_cert, &srv->tls_cert_pem)) < 0) {
            sd_log(SD_LOG_ERROR, "cannot read the TLS certificate", "file=\"%s\" reason=\"%s\"",
                   cfg->tls_cert, strerror(-r));
            goto fail;
        }
        if ((r = read_file(cfg->tls_key, &srv->tls_key_pem)) < 0) {
            sd_log(SD_LOG_ERROR, "cannot read the TLS key", "file=\"%s\" reason=\"%s\"",
                   cfg->tls_key, strerror(-r));
            goto fail;
        }
        flags |= MHD_USE_TLS;
    }
    int port = 0;
    r = open_listener(cfg->host, cfg->port, &srv->listen_fd, &port);
    if (r < 0) {
        goto fail;
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned threads = cfg->threads ? cfg->threads : (unsigned)(ncpu > 0 ? ncpu : 2);
    struct MHD_OptionItem tls_opts[] = {
        {MHD_OPTION_HTTPS_MEM_CERT, 0, srv->tls_cert_pem},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, srv->tls_key_pem},
        {MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"},
        {MHD_OPTION_END, 0, NULL},
    };
    struct MHD_OptionItem no_opts[] = {{MHD_OPTION_END, 0, NULL}};
    srv->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_LISTEN_SOCKET, srv->listen_fd,
        MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_CONNECTION_LIMIT, max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, max_per_ip, MHD_OPTION_CONNECTION_TIMEOUT, idle_sec,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)32 * 1024, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, srv, MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, srv, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_ARRAY, cfg->tls_cert ? tls_opts : no_opts, MHD_OPTION_END);
    if (!srv->daemon) {
        sd_log(SD_LOG_ERROR, "cannot start the HTTP server", NULL);
        r = -EIO;
        goto fail;
    }
    *ret_port = port;
    *ret = srv;
    return 0;
fail:
    if (srv->listen_fd >= 0) {
        close(srv->listen_fd);
    }
    sd_guard_free(srv->guard);
    free(srv->tls_cert_pem);
    free(srv->tls_key_pem);
    free(srv);
    return r;
}

void sd_server_stop(struct sd_server *srv, int64_t grace_usec)
{
    if (!srv) {
        return;
    }
    MHD_socket fd = MHD_quiesce_daemon(srv->daemon);
    int64_t until = sd_mono_usec() + grace_usec;
    while (atomic_load(&srv->in_flight) > 0 && sd_mono_usec() < until) {
        usleep(10000);
    }
    MHD_stop_daemon(srv->daemon);
    if (fd != MHD_INVALID_SOCKET) {
        close(fd);
    }
    sd_guard_free(srv->guard); /* after the daemon: every connection is closed and forgotten */
    free(srv->tls_cert_pem);
    free(srv->tls_key_pem);
    free(srv);
}
