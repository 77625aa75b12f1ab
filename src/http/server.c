/* server.c — libmicrohttpd glue: request lifecycle, limits, authentication, rate limiting,
 * suspension while a request waits for the writer, answer headers, logs and metrics.
 *
 * Lifecycle of one request (libmicrohttpd calls on_request several times):
 *   1st call  headers are in: route, authenticate, rate-limit, check Content-Type and
 *             Content-Length. Any refusal is answered right here, before the body is read.
 *   body      chunks are appended under the byte limit while a tiny scanner counts records
 *             (objects opened at depth 2), so an oversized body is refused while it streams:
 *             buffering stops at once, the rest is drained unkept (libmicrohttpd cannot answer
 *             mid-body) and the 413 goes out when the client stops sending, or the request
 *             deadline closes the connection.
 *   last      the route's handler runs; it answers or suspends the connection.
 *   resumed   on_resume builds the answer from the writer's result.
 * on_completed logs one line, records metrics and frees the request. */
#include "http/server.h"

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

#include "base/log.h"
#include "core/metrics.h"
#include "http/router.h"

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
    atomic_size_t buffered; /* body bytes held by all requests together */
};

enum phase { PHASE_BODY, PHASE_SUSPENDED, PHASE_ANSWERED };

#define BODY_RESERVE_MAX (256 << 10)
/* All request bodies together: past this, new body bytes get a 503 (retry shortly) instead of
 * memory. 32 bodies at the 8 MiB limit, or thousands of ordinary ones. */
#define BUFFERED_MAX ((size_t)256 << 20)

/* Server-private part of a request, wrapping the public one. */
struct req_priv {
    struct sd_req req; /* first: handlers get &priv->req */
    struct sd_server *srv;
    enum phase phase;
    bool discard; /* body refused: drain the rest without keeping it */
    size_t discarded;
    size_t accounted; /* this request's share of srv->buffered */
    /* record counter for the streaming limit */
    int depth;
    bool in_string, escape;
    size_t records;
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

void sd_req_reply_json(struct sd_req *req, int status, json_t *body)
{
    free(req->resp_body);
    req->status = status;
    req->content_type = "application/json";
    req->resp_body = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(body);
    if (!req->resp_body) {
        abort();
    }
}

void sd_req_reply_error(struct sd_req *req, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = sd_vasprintf(fmt, ap);
    va_end(ap);
    json_t *o = json_pack("{s:s, s:s}", "error", code, "message", msg);
    if (status >= 500) {
        json_object_set_new(o, "request_id", json_string(req->request_id));
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
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    if (req->has_ratelimit) {
        char v[32];
        snprintf(v, sizeof(v), "%lld", (long long)req->ratelimit.limit);
        MHD_add_response_header(resp, "RateLimit-Limit", v);
        snprintf(v, sizeof(v), "%lld", (long long)req->ratelimit.remaining);
        MHD_add_response_header(resp, "RateLimit-Remaining", v);
        snprintf(v, sizeof(v), "%lld", (long long)req->ratelimit.reset_sec);
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

/* One bucket per tenant and environment. */
static uint64_t bucket_key(const struct sd_principal *who)
{
    return (uint64_t)who->tenant_id * 2 + (uint64_t)who->env;
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
            sd_ratelimit_peek(hub->ratelimiter, bucket_key(&req->who), req->who.per_minute,
                              req->who.burst, sd_mono_usec(), &req->ratelimit);
            req->has_ratelimit = true;
            sd_req_reply_error(req, 403, "forbidden",
                               "this API key does not grant access to client '%s'", req->params[0]);
            return true;
        }
        req->authenticated = true;
    }
    if ((route->flags & SD_ROUTE_RATE_LIMITED) && req->authenticated) {
        sd_ratelimit_take(hub->ratelimiter, bucket_key(&req->who), req->who.per_minute,
                          req->who.burst, sd_mono_usec(), &req->ratelimit);
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

/* Count records (objects opened at depth 2) in a chunk; strings are skipped. */
static void count_records(struct req_priv *p, const char *data, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = data[i];
        if (p->in_string) {
            if (p->escape) {
                p->escape = false;
            } else if (c == '\\') {
                p->escape = true;
            } else if (c == '"') {
                p->in_string = false;
            }
            continue;
        }
        switch (c) {
        case '"': p->in_string = true; break;
        case '{':
            if (p->depth == 2) {
                p->records++;
            }
            /* fall through */
        case '[': p->depth++; break;
        case '}':
        case ']': p->depth--; break;
        default: break;
        }
    }
}

static void release_body(struct req_priv *p)
{
    sd_buf_release(&p->req.body);
    atomic_fetch_sub(&p->srv->buffered, p->accounted);
    p->accounted = 0;
}

static void refuse_streaming(struct req_priv *p, const char *why, long long limit)
{
    sd_req_reply_error(&p->req, 413, "payload_too_large", "%s %lld", why, limit);
    p->discard = true;
    release_body(p);
}

/* ---- libmicrohttpd callbacks ----------------------------------------------------------------- */

static struct req_priv *req_new(struct sd_server *srv, struct MHD_Connection *conn, const char *url,
                                const char *method)
{
    struct req_priv *p = sd_calloc(1, sizeof(*p));
    p->srv = srv;
    struct sd_req *req = &p->req;
    uint64_t id = atomic_fetch_add(&srv->id_counter, 1);
    snprintf(req->request_id, sizeof(req->request_id), "%s%016llx", srv->id_prefix,
             (unsigned long long)id);
    req->start_usec = sd_mono_usec();
    req->hub = srv->hub;
    req->conn = conn;
    req->method = method;
    req->path = url;
    req->route_idx = SD_METRICS_MAX_ROUTES;
    sd_buf_init(&req->body);
    atomic_init(&req->resumed, 0);
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
        char allow[64];
        enum sd_route_match m = sd_route_find(method, url, &req->route_idx, req->params,
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
        req->route = &sd_routes[req->route_idx];
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
                refuse_streaming(p, "body exceeds the byte limit of", (long long)SD_MAX_BODY_BYTES);
                return MHD_YES;
            }
            count_records(p, upload_data, n);
            if (p->records > SD_MAX_RECORDS) {
                refuse_streaming(p, "body holds more records than the limit of",
                                 (long long)SD_MAX_RECORDS);
                return MHD_YES;
            }
            p->accounted += n;
            if (atomic_fetch_add(&srv->buffered, n) + n > BUFFERED_MAX) {
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
        int r = req->route->handler(req);
        if (r == SD_REQ_SUSPEND) {
            p->phase = PHASE_SUSPENDED;
            return MHD_YES;
        }
        return send_answer(p);
    }
    if (p->phase == PHASE_SUSPENDED) {
        if (!atomic_load_explicit(&req->resumed, memory_order_acquire)) {
            return MHD_YES;
        }
        req->on_resume(req);
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
    sd_log(SD_LOG_INFO, "request",
           "request_id=%s client=%s method=%s route=%s status=%d duration_us=%lld%s",
           req->request_id, req->authenticated ? req->who.client_id : "-", req->method,
           req->route ? req->route->name : "-", status, (long long)dur,
           toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " aborted=true");
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
    free(p);
    *con_cls = NULL;
    atomic_fetch_sub(&srv->in_flight, 1);
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
    vsnprintf(msg, sizeof(msg), fmt, ap);
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
    struct sd_server *srv = sd_calloc(1, sizeof(*srv));
    srv->hub = hub;
    srv->listen_fd = -1;
    atomic_init(&srv->in_flight, 0);
    atomic_init(&srv->buffered, 0);
    uint8_t rnd[4];
    sd_random_bytes(rnd, sizeof(rnd));
    snprintf(srv->id_prefix, sizeof(srv->id_prefix), "%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2],
             rnd[3]);
    srv->deadline_usec =
        (int64_t)(cfg->request_deadline_sec ? cfg->request_deadline_sec : 120) * 1000000;
    int r;
    /* poll(), not epoll: libmicrohttpd 0.9.75 can abort in MHD_quiesce_daemon() when a pool
     * thread removes the listening socket from its epoll set at the same moment ("Failed to
     * remove listen FD from epoll set"); with poll quiescing is a plain flag. */
    unsigned flags =
        MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (cfg->tls_cert) {
        if ((r = read_file(cfg->tls_cert, &srv->tls_cert_pem)) < 0 ||
            (r = read_file(cfg->tls_key, &srv->tls_key_pem)) < 0) {
            sd_log(SD_LOG_ERROR, "cannot read TLS certificate or key", "reason=\"%s\"",
                   strerror(-r));
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
        MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_CONNECTION_LIMIT,
        cfg->max_connections ? cfg->max_connections : 1000, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        cfg->max_per_ip ? cfg->max_per_ip : 500, MHD_OPTION_CONNECTION_TIMEOUT,
        cfg->idle_timeout_sec ? cfg->idle_timeout_sec : 30, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)32 * 1024, MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_ARRAY,
        cfg->tls_cert ? tls_opts : no_opts, MHD_OPTION_END);
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
    free(srv->tls_cert_pem);
    free(srv->tls_key_pem);
    free(srv);
}
