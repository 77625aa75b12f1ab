/* fuzz_request.c — fuzz target for the whole request path: raw HTTP/1.1 bytes over a loopback
 * socket through libmicrohttpd, the router, authentication, the rate limiter and the handlers
 * into a real SQLite store in a temporary data directory.
 *
 * The first input builds the hub as `stagedoor serve` does (sd_hub_open, the admin token, the
 * HTTP server on 127.0.0.1, port 0), with two tenants, a test and a prod key each, and seeds
 * data through the API itself (records in every tenant/environment, a segment, a target, a
 * connector, a delivery), remembering the ids the hub gave out. The scheduler and the push
 * worker are not started: no connector runs and nothing leaves the machine (their URLs name
 * hosts under .example, which also passes any egress policy when saved).
 *
 * Input layout (tests/fuzz/gen_request_corpus.py writes seeds in it):
 *   byte 0  method: 0 the route's own, 1..7 GET POST PUT PATCH DELETE HEAD OPTIONS, 8 "FUZZ"
 *   byte 1  route: index into sd_routes[]; sd_routes_count means "raw path" (field 0 is the path)
 *   byte 2  Authorization: 0 none, 1 key of the tenant in the path, 2 the other tenant's key,
 *           3 admin token, 4 a well-formed key nobody has, 5 "Bearer" alone
 *   byte 3  flags: 1 percent-encode path parameters (else sent raw: only control bytes, space,
 *           '#' and DEL are escaped, so "%FF" or raw UTF-8 go through as written), 2 send
 *           Content-Type: application/json, 4 second tenant, 8 prod environment, 16 chunked body
 *   then    fields separated by the byte 0xFE: one per path parameter (empty = the seeded id
 *           for that parameter, "@1" = a second, disposable one), the query string (raw, as
 *           parameters), extra header lines ("Name: value" separated by '\n'; framing headers
 *           are dropped), and the body (the rest, 0xFE included). In the query and the body
 *           "@name@" (or "@name.1@") becomes the seeded value of that parameter, so seeds can
 *           name ids the hub only gives out at set-up.
 *
 * Every request is well framed, so every one must get a complete answer (except a head within
 * a kilobyte of libmicrohttpd's buffer, see near_head_limit). The target aborts
 * (libFuzzer reports the input) when: no complete HTTP response arrives; the status is 500,
 * or another 5xx than 503 with Retry-After; an answer of the hub is not valid JSON (only
 * libmicrohttpd's own 400/413/414/431 refusals, without X-Request-Id, /metrics, /openapi.yaml
 * and the dashboard's files under /ui are not JSON); the body is not what Content-Length says. The data directory is removed at exit, after the
 * server stopped and the hub closed, so replays under ASan/LSan and TSan exit cleanly. */
#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "base/base.h"
#include "base/log.h"
#include "core/auth.h"
#include "core/hub.h"
#include "api/api.h"
#include "server/router.h"
#include "server/server.h"
#include "store/store.h"

#define SEP 0xFE
#define MAX_PARAMS 4
#define RECV_TIMEOUT_SEC 60
#define MAX_RESPONSE (64u << 20)

static const char *const tenants[2] = {"fz_opera", "fz_ballet"};

/* Keys [tenant][env], the admin token, the data dir, the running hub. */
static struct {
    char dir[256];
    struct sd_hub *hub;
    struct sd_server *srv;
    int port;
    char *keys[2][2];
    char admin[128];
    /* Seeded ids by parameter name, per tenant (test environment): [0] for reading, [1] a
     * second one that seeds may delete. */
    char segment_id[2][2][64], target_id[2][2][64], connector_id[2][2][64], delivery_id[2][64],
        profile_id[2][2][64];
} fx;

/* ---- growable byte buffer -------------------------------------------------------------------- */

struct buf {
    char *p;
    size_t n, cap;
};

static void buf_add(struct buf *b, const void *data, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->n + n + 1 > cap) {
            cap *= 2;
        }
        b->p = sd_realloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void buf_str(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

static void buf_escape(struct buf *b, const uint8_t *s, size_t n, bool all)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                          (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == '~';
        bool framing = c <= 0x20 || c == 0x7F || c == '#';
        if (all ? !unreserved : framing) {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            buf_add(b, e, 3);
        } else {
            buf_add(b, &c, 1);
        }
    }
}

/* ---- one HTTP exchange ----------------------------------------------------------------------- */

struct answer {
    int status;
    struct buf raw;   /* the whole response */
    const char *body; /* into raw */
    size_t body_len;
    char content_type[64];
    bool retry_after;
    bool request_id;          /* X-Request-Id: the hub answered, not libmicrohttpd on its own */
    long long content_length; /* -1 if absent */
    char why[96];             /* how the exchange broke, for the report */
};

static void answer_release(struct answer *a)
{
    free(a->raw.p);
    memset(a, 0, sizeof(*a));
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void remove_dir(void)
{
    if (fx.dir[0]) {
        nftw(fx.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        fx.dir[0] = '\0';
    }
}

static void dump_and_abort(const char *why, const struct buf *request, const struct answer *a)
{
    fprintf(stderr, "fuzz_request: %s\n--- request (%zu bytes) ---\n", why, request->n);
    fwrite(request->p, 1, request->n < 4096 ? request->n : 4096, stderr);
    fprintf(stderr, "\n--- response (%zu bytes%s%s) ---\n", a ? a->raw.n : 0,
            a && a->why[0] ? ", " : "", a ? a->why : "");
    if (a && a->raw.p) {
        fwrite(a->raw.p, 1, a->raw.n < 4096 ? a->raw.n : 4096, stderr);
    }
    fputc('\n', stderr);
    remove_dir();
    abort();
}

/* Parses the status line and headers of a->raw. false if it is not a complete response. */
static bool parse_answer(struct answer *a, bool head)
{
    if (a->raw.n < 12 || memcmp(a->raw.p, "HTTP/1.", 7) != 0) {
        return false;
    }
    char *end = memmem(a->raw.p, a->raw.n, "\r\n\r\n", 4);
    if (!end) {
        return false;
    }
    a->status = (a->raw.p[9] - '0') * 100 + (a->raw.p[10] - '0') * 10 + (a->raw.p[11] - '0');
    a->content_length = -1;
    /* The status line ends at the first "\r\n", at the latest where the header block ends. */
    char *line = (char *)memchr(a->raw.p, '\n', (size_t)(end + 2 - a->raw.p)) + 1;
    while (line < end) {
        char *eol = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
        *eol = '\0';
        if (strncasecmp(line, "Content-Type:", 13) == 0) {
            snprintf(a->content_type, sizeof(a->content_type), "%s",
                     line + 13 + strspn(line + 13, " "));
        } else if (strncasecmp(line, "Retry-After:", 12) == 0) {
            a->retry_after = true;
        } else if (strncasecmp(line, "X-Request-Id:", 13) == 0) {
            a->request_id = true;
        } else if (strncasecmp(line, "Content-Length:", 15) == 0) {
            a->content_length = strtoll(line + 15, NULL, 10);
        }
        *eol = '\r';
        line = eol + 2;
    }
    a->body = end + 4;
    a->body_len = a->raw.n - (size_t)(a->body - a->raw.p);
    if (head || a->status == 204 || a->status == 304) {
        return true;
    }
    return a->content_length < 0 || (size_t)a->content_length == a->body_len;
}

/* libFuzzer's timer (SIGALRM) can interrupt connect(); the connection then completes on its
 * own. true once it did, false (errno set) if it failed. */
static bool connect_interrupted(int fd)
{
    if (errno != EINTR) {
        return false;
    }
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int n;
    do {
        n = poll(&p, 1, RECV_TIMEOUT_SEC * 1000);
    } while (n < 0 && errno == EINTR);
    int err = 0;
    socklen_t len = sizeof(err);
    if (n != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) {
        errno = n == 0 ? ETIMEDOUT : err ? err : errno;
        return false;
    }
    return true;
}

/* Sends request, reads until the server closes. 0, or -1 if the exchange broke (no answer in
 * RECV_TIMEOUT_SEC, connection refused). */
static int exchange(const struct buf *request, bool head, struct answer *a)
{
    memset(a, 0, sizeof(*a));
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(a->why, sizeof(a->why), "socket: %s", strerror(errno));
        return -1;
    }
    struct timeval tv = {.tv_sec = RECV_TIMEOUT_SEC};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    /* Each request comes from another address of 127.0.0.0/8: the server closes first, so each
     * exchange leaves a TIME_WAIT for 60 s (at a thousand requests a second one address runs
     * out of ports), and libmicrohttpd counts a closed connection against the per-IP limit
     * until it has cleaned it up (one address at full speed got a silent close now and then:
     * the limit at work, not the request path this target is about). */
    static uint32_t next_src;
    next_src = next_src % 0xFFFFFD + 1;
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7F000000u | (next_src + 1));
    (void)bind(fd, (struct sockaddr *)&src, sizeof(src));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)fx.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && !connect_interrupted(fd)) {
        snprintf(a->why, sizeof(a->why), "connect: %s", strerror(errno));
        goto out;
    }
    /* The server may answer (and close) before it read the whole body: a failed send is fine
     * as long as the answer arrives. */
    size_t off = 0;
    while (off < request->n) {
        ssize_t w = send(fd, request->p + off, request->n - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            break;
        }
        off += (size_t)w;
    }
    char chunk[16384];
    for (;;) {
        ssize_t r = recv(fd, chunk, sizeof(chunk), 0);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0 && errno == ECONNRESET && a->raw.n > 0) {
            break;
        }
        if (r < 0) {
            snprintf(a->why, sizeof(a->why), "recv after %zu bytes sent of %zu: %s", off,
                     request->n, strerror(errno));
            goto out;
        }
        if (r == 0) {
            break;
        }
        if (a->raw.n + (size_t)r > MAX_RESPONSE) {
            snprintf(a->why, sizeof(a->why), "answer over %u bytes", MAX_RESPONSE);
            goto out;
        }
        buf_add(&a->raw, chunk, (size_t)r);
    }
    rc = parse_answer(a, head) ? 0 : -1;
    if (rc < 0) {
        snprintf(a->why, sizeof(a->why), "closed after %zu bytes sent of %zu", off, request->n);
    }
out:
    close(fd);
    return rc;
}

static const char *const methods[] = {"GET",    "POST", "PUT",     "PATCH",
                                      "DELETE", "HEAD", "OPTIONS", "FUZZ"};

static void build_request(struct buf *rq, const char *method, const char *target,
                          const char *authorization, bool json_type, bool chunked,
                          const uint8_t *hdrs, size_t hdrs_n, const uint8_t *body, size_t body_n)
{
    buf_str(rq, method);
    buf_str(rq, " ");
    buf_str(rq, target);
    buf_str(rq, " HTTP/1.1\r\n");
    /* Extra header lines first, so that a folded line (leading space) can only continue
     * another extra line and never the harness's own headers; the framing stays the
     * harness's (a request the harness cannot frame has no answer to check). A line without
     * ':', with a control byte, or naming a framing header (blanks around the name ignored) is
     * dropped, and so is a folded line with nothing to continue. */
    bool kept_one = false;
    size_t i = 0;
    while (i < hdrs_n) {
        const uint8_t *nl = memchr(hdrs + i, '\n', hdrs_n - i);
        size_t len = nl ? (size_t)(nl - (hdrs + i)) : hdrs_n - i;
        const char *l = (const char *)hdrs + i;
        const char *colon = memchr(l, ':', len);
        bool folded = len > 0 && (l[0] == ' ' || l[0] == '\t');
        bool ok = colon && colon > l && (!folded || kept_one);
        for (size_t k = 0; ok && k < len; k++) {
            uint8_t c = (uint8_t)l[k];
            ok = c >= 0x20 || c == '\t';
        }
        const char *name = l, *name_end = colon;
        while (ok && name < name_end && (*name == ' ' || *name == '\t')) {
            name++;
        }
        while (ok && name_end > name && (name_end[-1] == ' ' || name_end[-1] == '\t')) {
            name_end--;
        }
        static const char *const framing[] = {
            "content-length", "transfer-encoding", "connection", "expect", "host", "upgrade"};
        for (size_t k = 0; ok && k < sizeof(framing) / sizeof(framing[0]); k++) {
            size_t fl = strlen(framing[k]);
            ok = !((size_t)(name_end - name) == fl && strncasecmp(name, framing[k], fl) == 0);
        }
        if (ok) {
            buf_add(rq, l, len);
            buf_str(rq, "\r\n");
            kept_one = true;
        }
        i += len + 1;
    }
    buf_str(rq, "Host: 127.0.0.1\r\nConnection: close\r\n");
    if (authorization) {
        buf_str(rq, "Authorization: ");
        buf_str(rq, authorization);
        buf_str(rq, "\r\n");
    }
    if (json_type) {
        buf_str(rq, "Content-Type: application/json\r\n");
    }
    char num[64];
    if (chunked) {
        buf_str(rq, "Transfer-Encoding: chunked\r\n\r\n");
        size_t half = body_n / 2;
        const uint8_t *parts[2] = {body, body + half};
        size_t lens[2] = {half, body_n - half};
        for (int k = 0; k < 2; k++) {
            if (lens[k] == 0) {
                continue;
            }
            snprintf(num, sizeof(num), "%zx\r\n", lens[k]);
            buf_str(rq, num);
            buf_add(rq, parts[k], lens[k]);
            buf_str(rq, "\r\n");
        }
        buf_str(rq, "0\r\n\r\n");
    } else {
        if (body_n > 0 || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
            strcmp(method, "PATCH") == 0) {
            snprintf(num, sizeof(num), "Content-Length: %zu\r\n", body_n);
            buf_str(rq, num);
        }
        buf_str(rq, "\r\n");
        buf_add(rq, body, body_n);
    }
}

/* libmicrohttpd refuses a request line or header block over its buffer (414, 431) or one it
 * cannot parse (400, 413) on its own, with a small HTML body, before the hub sees the request:
 * a precise 4xx, not the hub's JSON. Everything the hub answers carries X-Request-Id. */
static bool mhd_refusal(const struct answer *a)
{
    return !a->request_id &&
           (a->status == 400 || a->status == 413 || a->status == 414 || a->status == 431);
}

/* The routes whose answers are not JSON: Prometheus text, the OpenAPI document (YAML), the
 * dashboard's HTML, CSS and JS. */
static bool not_json_route(const char *target)
{
    static const char *const prefixes[] = {"/metrics", "/openapi.yaml", "/ui"};
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        if (strncmp(target, prefixes[i], strlen(prefixes[i])) == 0) {
            return true;
        }
    }
    return false;
}

/* The checks every answer must pass. */
static void check_answer(const struct buf *rq, const struct answer *a, bool head, bool not_json)
{
    if (a->status < 100 || a->status > 599) {
        dump_and_abort("status out of range", rq, a);
    }
    if (a->status >= 500 && !(a->status == 503 && a->retry_after)) {
        dump_and_abort("5xx answer (only 503 with Retry-After is allowed)", rq, a);
    }
    if (head || a->body_len == 0) {
        return;
    }
    if (strncmp(a->content_type, "application/json", 16) == 0) {
        json_error_t err;
        json_t *v = json_loadb(a->body, a->body_len, JSON_ALLOW_NUL, &err);
        if (!v) {
            dump_and_abort("answer is not valid JSON", rq, a);
        }
        json_decref(v);
    } else if (!not_json && !mhd_refusal(a)) {
        dump_and_abort("answer with a body that is not JSON", rq, a);
    }
}

/* The connection memory the server gives libmicrohttpd (src/server/server.c). A request head
 * that does not fit gets a 414/431 and the connection is closed with the rest unread, so the
 * client may see a reset before it reads the answer; a head that just fits leaves no room for
 * any answer and the connection is closed without one (libmicrohttpd 0.9.75, found by this
 * target). Within HEAD_SLACK of the limit a missing answer is therefore not reported. */
#define HEAD_LIMIT (32 * 1024)
#define HEAD_SLACK 1024

static bool near_head_limit(const struct buf *rq)
{
    const char *end = memmem(rq->p, rq->n, "\r\n\r\n", 4);
    size_t head = end ? (size_t)(end - rq->p) + 4 : rq->n;
    return head + HEAD_SLACK >= HEAD_LIMIT;
}

/* ---- set-up and tear-down -------------------------------------------------------------------- */

static void teardown(void)
{
    sd_server_stop(fx.srv, 5LL * 1000000);
    fx.srv = NULL;
    sd_hub_close(fx.hub);
    fx.hub = NULL;
    for (int t = 0; t < 2; t++) {
        for (int e = 0; e < 2; e++) {
            free(fx.keys[t][e]);
            fx.keys[t][e] = NULL;
        }
    }
    remove_dir();
}

static void fail_setup(const char *what, int r)
{
    fprintf(stderr, "fuzz_request: set-up failed: %s (%d)\n", what, r);
    remove_dir();
    abort();
}

/* One request from the set-up; the answer must have the expected status. Returns the parsed
 * JSON body (caller decrefs). */
static json_t *setup_call(const char *method, const char *path, const char *bearer,
                          const char *body, int expect)
{
    char authorization[160];
    snprintf(authorization, sizeof(authorization), "Bearer %s", bearer);
    struct buf rq = {0};
    build_request(&rq, method, path, authorization, body != NULL, false, NULL, 0,
                  (const uint8_t *)(body ? body : ""), body ? strlen(body) : 0);
    struct answer a;
    if (exchange(&rq, false, &a) < 0 || a.status != expect) {
        dump_and_abort("set-up request failed", &rq, &a);
    }
    json_t *v = json_loadb(a.body, a.body_len, 0, NULL);
    answer_release(&a);
    free(rq.p);
    return v;
}

static void copy_id(char *dst, size_t n, json_t *v, const char *key)
{
    const char *s = json_string_value(json_object_get(v, key));
    if (!s) {
        fail_setup(key, -EINVAL);
    }
    snprintf(dst, n, "%s", s);
    json_decref(v);
}

static void seed_profile(int t, const char *customer_id, char *dst, size_t n)
{
    char path[256];
    snprintf(path, sizeof(path), "/v1/%s/profiles?customer_id=%s", tenants[t], customer_id);
    json_t *found = setup_call("GET", path, fx.keys[t][0], NULL, 200);
    json_t *pid = json_object_get(json_array_get(json_object_get(found, "data"), 0), "profile_id");
    if (json_is_integer(pid)) {
        snprintf(dst, n, "%lld", (long long)json_integer_value(pid));
    } else if (json_is_string(pid)) {
        snprintf(dst, n, "%s", json_string_value(pid));
    } else {
        fail_setup("profile_id", -EINVAL);
    }
    json_decref(found);
}

static void seed(void)
{
    static const char records[] =
        "{\"events\":[{\"event_id\":\"EVT-1\",\"title\":\"Otello\",\"date\":\"2025-10-03\","
        "\"time\":\"19:30:00\",\"venue\":\"State Opera\",\"hall\":\"Main\",\"capacity\":1250,"
        "\"city\":\"Berlin\"}],"
        "\"customers\":[{\"customer_id\":\"CUS-1\",\"email\":\"cus-1@example.com\","
        "\"first_name\":\"Ada\"},{\"customer_id\":\"CUS-2\",\"email\":\"cus-2@example.com\"}],"
        "\"sales\":[{\"invoice_number\":\"INV-1\",\"event_id\":\"EVT-1\",\"customer_id\":\"CUS-1\","
        "\"purchase_datetime\":\"2025-04-15T11:08:42Z\",\"ticket_category\":\"regular\","
        "\"quantity\":2,\"sales_price\":\"89.00\",\"currency\":\"EUR\"},"
        "{\"invoice_number\":\"INV-2\",\"event_id\":\"EVT-1\",\"customer_id\":\"CUS-2\","
        "\"purchase_datetime\":\"2025-04-16T10:00:00Z\",\"ticket_category\":\"VIP\","
        "\"quantity\":1,\"sales_price\":\"45.50\",\"currency\":\"EUR\"}]}";
    char path[256], body[256];
    for (int t = 0; t < 2; t++) {
        for (int e = 0; e < 2; e++) {
            snprintf(path, sizeof(path), "/v1/%s/ingest", tenants[t]);
            json_decref(setup_call("POST", path, fx.keys[t][e], records, 202));
        }
        for (int k = 0; k < 2; k++) {
            snprintf(path, sizeof(path), "/v1/%s/segments", tenants[t]);
            snprintf(body, sizeof(body),
                     "{\"segment_name\":\"Buyers %d\",\"rules\":{\"bought\":{\"event_id\":"
                     "\"EVT-1\"}}}",
                     k);
            copy_id(fx.segment_id[t][k], sizeof(fx.segment_id[t][k]),
                    setup_call("POST", path, fx.keys[t][0], body, 201), "segment_id");
            snprintf(path, sizeof(path), "/admin/v1/tenants/%s/targets", tenants[t]);
            copy_id(fx.target_id[t][k], sizeof(fx.target_id[t][k]),
                    setup_call("POST", path, fx.admin,
                               "{\"type\":\"audience_push\",\"environment\":\"test\",\"url\":"
                               "\"https://push.example/push\",\"app_key\":\"APP\","
                               "\"secure_token\":\"TOK\"}",
                               201),
                    "target_id");
            snprintf(path, sizeof(path), "/admin/v1/tenants/%s/connectors", tenants[t]);
            copy_id(fx.connector_id[t][k], sizeof(fx.connector_id[t][k]),
                    setup_call("POST", path, fx.admin,
                               "{\"type\":\"feed\",\"environment\":\"test\",\"schedule\":"
                               "\"manual\",\"settings\":{\"url\":"
                               "\"https://feed.example/feed.json\"}}",
                               201),
                    "connector_id");
        }
        snprintf(path, sizeof(path), "/v1/%s/segments/%s/push", tenants[t], fx.segment_id[t][0]);
        snprintf(body, sizeof(body), "{\"target_id\":\"%s\"}", fx.target_id[t][0]);
        copy_id(fx.delivery_id[t], sizeof(fx.delivery_id[t]),
                setup_call("POST", path, fx.keys[t][0], body, 202), "delivery_id");
        seed_profile(t, "CUS-1", fx.profile_id[t][0], sizeof(fx.profile_id[t][0]));
        seed_profile(t, "CUS-2", fx.profile_id[t][1], sizeof(fx.profile_id[t][1]));
    }
}

static void setup(void)
{
    if (!getenv("FUZZ_REQUEST_LOG")) {
        sd_log_set_level(SD_LOG_ERROR);
    }
    signal(SIGPIPE, SIG_IGN);
    const char *tmp = getenv("TMPDIR");
    snprintf(fx.dir, sizeof(fx.dir), "%s/sd-fuzz-request-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(fx.dir)) {
        fail_setup("mkdtemp", -errno);
    }
    atexit(teardown);
    /* Tenants and keys as the CLI makes them, before the hub opens. */
    struct sd_store_handle *st = NULL;
    int r = sd_store_open("sqlite", fx.dir, &st);
    if (r < 0) {
        fail_setup("sd_store_open", r);
    }
    for (int t = 0; t < 2; t++) {
        if ((r = sd_store_tenant_create(st, tenants[t], tenants[t])) < 0 ||
            (r = sd_store_tenant_set_limits(st, tenants[t], 1000000000, 1000000000)) < 0) {
            fail_setup("tenant", r);
        }
        for (int e = 0; e < 2; e++) {
            char *key_id = NULL;
            r = sd_key_create(st, tenants[t], e ? SD_ENV_PROD : SD_ENV_TEST, &fx.keys[t][e],
                              &key_id);
            if (r < 0) {
                fail_setup("sd_key_create", r);
            }
            free(key_id);
        }
    }
    sd_store_close(st);
    r = sd_hub_open(fx.dir, NULL, &fx.hub);
    if (r < 0) {
        fail_setup("sd_hub_open", r);
    }
    bool created = false;
    r = sd_admin_token_ensure(fx.dir, fx.hub->admin_hash, &created);
    if (r < 0) {
        fail_setup("sd_admin_token_ensure", r);
    }
    char tok_path[300];
    snprintf(tok_path, sizeof(tok_path), "%s/admin.token", fx.dir);
    FILE *f = fopen(tok_path, "re");
    if (!f || !fgets(fx.admin, sizeof(fx.admin), f)) {
        fail_setup("admin.token", -EIO);
    }
    fclose(f);
    fx.admin[strcspn(fx.admin, "\r\n")] = '\0';
    struct sd_server_config cfg = {.host = "127.0.0.1", .port = 0, .threads = 2,
                                   .routes = sd_routes, .n_routes = sd_routes_count};
    r = sd_server_start(fx.hub, &cfg, &fx.srv, &fx.port);
    if (r < 0) {
        fail_setup("sd_server_start", r);
    }
    seed();
}

/* ---- the target ------------------------------------------------------------------------------ */

/* The seeded value of a path parameter (which: 0 the stable one, 1 the disposable one). */
static const char *known(const char *name, size_t name_len, int tenant, int which)
{
    static const char *const fixed[][3] = {
        {"event_id", "EVT-1", "EVT-1"},
        {"customer_id", "CUS-1", "CUS-2"},
        {"invoice_number", "INV-1", "INV-2"},
    };
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        if (strlen(fixed[i][0]) == name_len && memcmp(name, fixed[i][0], name_len) == 0) {
            return fixed[i][1 + which];
        }
    }
#define IS(s) (name_len == strlen(s) && memcmp(name, s, name_len) == 0)
    if (IS("client_id")) {
        return tenants[which ? !tenant : tenant];
    }
    if (IS("segment_id")) {
        return fx.segment_id[tenant][which];
    }
    if (IS("target_id")) {
        return fx.target_id[tenant][which];
    }
    if (IS("connector_id")) {
        return fx.connector_id[tenant][which];
    }
    if (IS("delivery_id")) {
        return fx.delivery_id[tenant];
    }
    if (IS("profile_id")) {
        return fx.profile_id[tenant][which];
    }
#undef IS
    return NULL;
}

/* Copies s into b, replacing "@name@" by the seeded value of that parameter ("@name.1@" the
 * disposable one), so seeds can name ids the hub gives out at set-up. */
static void buf_subst(struct buf *b, const uint8_t *s, size_t n, int tenant)
{
    size_t i = 0;
    while (i < n) {
        const uint8_t *end = s[i] == '@' ? memchr(s + i + 1, '@', n - i - 1) : NULL;
        size_t len = end ? (size_t)(end - (s + i + 1)) : 0;
        const char *name = (const char *)s + i + 1;
        int which = 0;
        if (len > 2 && memcmp(name + len - 2, ".1", 2) == 0) {
            which = 1;
            len -= 2;
        }
        const char *v = end && len < 32 ? known(name, len, tenant, which) : NULL;
        if (v) {
            buf_str(b, v);
            i = (size_t)(end - s) + 1;
        } else {
            buf_add(b, s + i, 1);
            i++;
        }
    }
}

/* Splits data at SEP into at most max fields; the last field takes the rest. */
static size_t split(const uint8_t *data, size_t size, const uint8_t **f, size_t *fl, size_t max)
{
    size_t n = 0, start = 0;
    for (size_t i = 0; i < size && n + 1 < max; i++) {
        if (data[i] == SEP) {
            f[n] = data + start;
            fl[n] = i - start;
            n++;
            start = i + 1;
        }
    }
    f[n] = data + start;
    fl[n] = size - start;
    return n + 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fx.hub) {
        setup();
    }
    if (size < 4) {
        return 0;
    }
    uint8_t m = data[0] % 9, ri = (uint8_t)(data[1] % (sd_routes_count + 1)), auth = data[2] % 6,
            flags = data[3];
    int tenant = (flags & 4) ? 1 : 0, env = (flags & 8) ? 1 : 0;
    const struct sd_route *route = ri < sd_routes_count ? &sd_routes[ri] : NULL;

    /* Parameters in the pattern, in order. */
    char names[MAX_PARAMS][32];
    size_t n_params = 0;
    if (route) {
        for (const char *p = route->pattern;
             (p = strchr(p, '{')) != NULL && n_params < MAX_PARAMS;) {
            const char *close_b = strchr(p, '}');
            snprintf(names[n_params++], sizeof(names[0]), "%.*s", (int)(close_b - p - 1), p + 1);
            p = close_b;
        }
    } else {
        n_params = 1; /* the raw path */
    }
    const uint8_t *f[MAX_PARAMS + 3];
    size_t fl[MAX_PARAMS + 3];
    size_t nf = split(data + 4, size - 4, f, fl, n_params + 3);
    for (size_t k = nf; k < n_params + 3; k++) {
        f[k] = (const uint8_t *)"";
        fl[k] = 0;
    }

    struct buf target = {0};
    if (route) {
        size_t k = 0;
        for (const char *p = route->pattern; *p;) {
            if (*p == '{') {
                if (fl[k] == 0 || (fl[k] == 2 && memcmp(f[k], "@1", 2) == 0)) {
                    const char *v = known(names[k], strlen(names[k]), tenant, fl[k] != 0);
                    buf_str(&target, v ? v : "x");
                } else {
                    buf_escape(&target, f[k], fl[k], flags & 1);
                }
                k++;
                p = strchr(p, '}') + 1;
            } else {
                buf_add(&target, p, 1);
                p++;
            }
        }
    } else {
        if (fl[0] == 0 || f[0][0] != '/') {
            buf_str(&target, "/");
        }
        buf_escape(&target, f[0], fl[0], false);
    }
    if (fl[n_params] > 0) {
        buf_str(&target, "?");
        struct buf q = {0};
        buf_subst(&q, f[n_params], fl[n_params], tenant);
        buf_escape(&target, (const uint8_t *)q.p, q.n, false);
        free(q.p);
    }
    const char *method = m == 0 ? (route ? route->method : "GET") : methods[m - 1];
    bool head = strcmp(method, "HEAD") == 0;

    char authorization[160];
    switch (auth) {
    case 1:
    case 2:
        snprintf(authorization, sizeof(authorization), "Bearer %s",
                 fx.keys[auth == 1 ? tenant : !tenant][env]);
        break;
    case 3: snprintf(authorization, sizeof(authorization), "Bearer %s", fx.admin); break;
    case 4: snprintf(authorization, sizeof(authorization), "Bearer sd_test_%043d", 0); break;
    default: snprintf(authorization, sizeof(authorization), "Bearer"); break;
    }
    struct buf body = {0};
    buf_subst(&body, f[n_params + 2], fl[n_params + 2], tenant);
    struct buf rq = {0};
    build_request(&rq, method, target.p, auth ? authorization : NULL, flags & 2, flags & 16,
                  f[n_params + 1], fl[n_params + 1], (const uint8_t *)(body.p ? body.p : ""),
                  body.n);
    struct answer a;
    bool answered = exchange(&rq, head, &a) == 0;
    if (!answered && !near_head_limit(&rq)) {
        dump_and_abort("no complete HTTP response", &rq, &a);
    }
    if (getenv("FUZZ_REQUEST_VERBOSE")) {
        fprintf(stderr, "%.*s\n=> %.*s\n\n", (int)(rq.n < 2048 ? rq.n : 2048), rq.p,
                (int)(a.raw.n < 2048 ? a.raw.n : 2048), a.raw.p);
    }
    if (answered) {
        check_answer(&rq, &a, head, not_json_route(target.p));
    }
    answer_release(&a);
    free(rq.p);
    free(body.p);
    free(target.p);
    return 0;
}
