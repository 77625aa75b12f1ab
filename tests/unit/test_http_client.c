/* test_http_client.c — the HTTP client against a small libmicrohttpd server on 127.0.0.1:
 * escaping and Retry-After (pure); a session's cookie jar (cookies set by 202 answers replayed
 * on the repeats, kept per session, capped); polling a queued (202) exchange; form bodies (encoding
 * of tricky values, the Content-Type); header lines (CR/LF and other controls refused, Basic,
 * Bearer, Api-Key); the token (fetched once and shared, refreshed near expiry, a 401 refreshed once
 * and repeated, a second 401 returned, a failed refresh reported; the ready JSON exchange); and the
 * retry loop judged by the one classifier (408 retried, 509 waits without using an attempt, 404
 * returned at once).
 *
 * The server's routes:
 *   /cookies   202 + Set-Cookie CID until the request carries CID, then 202 + Set-Cookie QTKN
 *              until it carries QTKN too, then 200 (an Archtics-style queued command)
 *   /flood     200 + 40 new cookies per answer (a hostile server)
 *   /echo      200, body "<Content-Type>|<Api-Key>|<request body>"
 *   /token     POST {"operator":"op","secret":"s3"} → {"token":"jN","expires_in":3600}, else 401
 *   /token-broken  200 without a token member
 *   /auth      200 if Authorization is "Bearer <srv.valid>", else 401
 *   /flaky/C/N the first N requests answer status C (with Retry-After: 0), then 200
 * Every request's Cookie header is logged in order. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/base.h"
#include "http/client.h"

/* ---- the server ------------------------------------------------------------------------------
 */

#define LOG_MAX 16

static struct {
    struct MHD_Daemon *d;
    uint16_t port;
    pthread_mutex_t mu;
    char valid[64];             /* the token /auth accepts */
    int requests;               /* every request since srv_reset */
    int flood_round;            /* /flood answers so far: names stay unique */
    int tokens;                 /* tokens /token has issued */
    char cookies[LOG_MAX][256]; /* Cookie header of each request ("" if none) */
} srv = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void srv_reset(void)
{
    pthread_mutex_lock(&srv.mu);
    srv.requests = 0;
    memset(srv.cookies, 0, sizeof(srv.cookies));
    pthread_mutex_unlock(&srv.mu);
}

static int srv_requests(void)
{
    pthread_mutex_lock(&srv.mu);
    int n = srv.requests;
    pthread_mutex_unlock(&srv.mu);
    return n;
}

static void srv_set_valid(const char *token)
{
    pthread_mutex_lock(&srv.mu);
    snprintf(srv.valid, sizeof(srv.valid), "%s", token);
    pthread_mutex_unlock(&srv.mu);
}

struct upload {
    struct sd_buf body;
};

static enum MHD_Result answer(struct MHD_Connection *c, unsigned status, const char *body,
                              const char *const *headers)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    for (size_t i = 0; headers && headers[i]; i += 2) {
        MHD_add_response_header(r, headers[i], headers[i + 1]);
    }
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

static bool has_cookie(const char *cookie, const char *pair)
{
    return cookie && strstr(cookie, pair) != NULL;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **con_cls)
{
    (void)cls, (void)method, (void)version;
    struct upload *up = *con_cls;
    if (!up) {
        up = sd_calloc(1, sizeof(*up));
        sd_buf_puts(&up->body, "");
        *con_cls = up;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        sd_buf_append(&up->body, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    const char *cookie = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Cookie");
    pthread_mutex_lock(&srv.mu);
    int n = srv.requests++;
    if (n < LOG_MAX) {
        snprintf(srv.cookies[n], sizeof(srv.cookies[n]), "%s", cookie ? cookie : "");
    }
    char valid[80];
    snprintf(valid, sizeof(valid), "Bearer %s", srv.valid);
    int flood = srv.flood_round++;
    pthread_mutex_unlock(&srv.mu);

    if (strcmp(url, "/cookies") == 0) {
        if (!has_cookie(cookie, "CID=c1")) {
            const char *h[] = {"Set-Cookie", "CID=c1; Path=/", NULL};
            return answer(c, 202, "queued", h);
        }
        if (!has_cookie(cookie, "QTKN=q1")) {
            const char *h[] = {"Set-Cookie", "QTKN=q1; Path=/", NULL};
            return answer(c, 202, "queued", h);
        }
        return answer(c, 200, "done", NULL);
    }
    if (strcmp(url, "/flood") == 0) {
        struct MHD_Response *r =
            MHD_create_response_from_buffer(2, (void *)"ok", MHD_RESPMEM_PERSISTENT);
        for (int i = 0; i < 40; i++) {
            char v[64];
            snprintf(v, sizeof(v), "f%d_%d=%0*d; Path=/", flood, i, 20, i);
            MHD_add_response_header(r, "Set-Cookie", v);
        }
        enum MHD_Result ok = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        return ok;
    }
    if (strcmp(url, "/echo") == 0) {
        const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
        const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Api-Key");
        char *b = sd_asprintf("%s|%s|%s", ct ? ct : "", key ? key : "", up->body.data);
        enum MHD_Result ok = answer(c, 200, b, NULL);
        free(b);
        return ok;
    }
    if (strcmp(url, "/token") == 0) {
        if (strcmp(up->body.data, "{\"operator\":\"op\",\"secret\":\"s3\"}") != 0) {
            return answer(c, 401, "{\"error\":\"bad credentials\"}", NULL);
        }
        pthread_mutex_lock(&srv.mu);
        int k = ++srv.tokens;
        pthread_mutex_unlock(&srv.mu);
        char *b = sd_asprintf("{\"token\":\"j%d\",\"expires_in\":3600}", k);
        enum MHD_Result ok = answer(c, 200, b, NULL);
        free(b);
        return ok;
    }
    if (strcmp(url, "/token-broken") == 0) {
        return answer(c, 200, "{\"access\":\"j0\"}", NULL);
    }
    if (strcmp(url, "/auth") == 0) {
        const char *a = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
        bool ok = a && strcmp(a, valid) == 0;
        return answer(c, ok ? 200 : 401, ok ? "welcome" : "who are you", NULL);
    }
    unsigned code = 0;
    int times = 0;
    if (sscanf(url, "/flaky/%u/%d", &code, &times) == 2) {
        const char *h[] = {"Retry-After", "0", NULL};
        return n < times ? answer(c, code, "not now", h) : answer(c, 200, "fine", NULL);
    }
    return answer(c, 404, "no such route", NULL);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)c, (void)toe;
    struct upload *up = *con_cls;
    if (up) {
        sd_buf_release(&up->body);
        free(up);
        *con_cls = NULL;
    }
}

static int srv_start(void **state)
{
    (void)state;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    srv.d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                             handle, NULL, MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
                             MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_END);
    if (!srv.d) {
        return -1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv.d, MHD_DAEMON_INFO_BIND_PORT);
    srv.port = info ? info->port : 0;
    return srv.port ? 0 : -1;
}

static int srv_stop(void **state)
{
    (void)state;
    MHD_stop_daemon(srv.d);
    return 0;
}

static char *url(const char *path)
{
    return sd_asprintf("http://127.0.0.1:%u%s", (unsigned)srv.port, path);
}

/* ---- pure helpers ----------------------------------------------------------------------------
 */

static void test_url_escape(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"sales_2025.csv", "sales_2025.csv"},
        {"Sales Export #2.csv", "Sales%20Export%20%232.csv"},
        {"a?b&c=d%e", "a%3Fb%26c%3Dd%25e"},
        {"~x-y.z", "~x-y.z"},
        {"Kündigungen.csv", "K%C3%BCndigungen.csv"},
        {"a/b", "a%2Fb"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *got = sd_http_url_escape(cases[i].in);
        assert_string_equal(got, cases[i].out);
        free(got);
    }
}

static void test_retry_after(void **state)
{
    (void)state;
    assert_int_equal(sd_http_retry_after("120", 3600), 120);
    assert_int_equal(sd_http_retry_after("7200", 3600), 3600);
    assert_int_equal(sd_http_retry_after(NULL, 3600), -1);
    assert_int_equal(sd_http_retry_after("soon", 3600), -1);
    /* an HTTP-date in the past waits nothing */
    assert_int_equal(sd_http_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 3600), 0);
}

/* ---- sessions --------------------------------------------------------------------------------
 */

/* Poll a queued command as Archtics wants it: the identical request again, with every cookie
 * the earlier answers set, until it is no longer 202. */
static void test_cookies_replayed_on_repeat(void **state)
{
    (void)state;
    srv_reset();
    char *u = url("/cookies");
    struct sd_http_session *s = sd_http_session_new();
    struct sd_http_request rq = {
        .method = "POST", .url = u, .body = "{\"cmd\":\"q\"}", .body_len = 11, .session = s};
    long statuses[4] = {0};
    int polls = 0;
    for (; polls < 4; polls++) {
        struct sd_http_response resp;
        assert_int_equal(sd_http_fetch(&rq, &resp), 0);
        statuses[polls] = resp.status;
        sd_http_response_release(&resp);
        if (statuses[polls] != 202) {
            break;
        }
    }
    assert_int_equal(polls, 2);
    assert_int_equal(statuses[0], 202);
    assert_int_equal(statuses[1], 202);
    assert_int_equal(statuses[2], 200);
    pthread_mutex_lock(&srv.mu);
    assert_string_equal(srv.cookies[0], "");
    assert_string_equal(srv.cookies[1], "CID=c1");
    assert_true(has_cookie(srv.cookies[2], "CID=c1") && has_cookie(srv.cookies[2], "QTKN=q1"));
    pthread_mutex_unlock(&srv.mu);
    assert_int_equal(sd_http_session_cookies(s), 2);

    /* Without the session, or with another one, no cookie goes out. */
    struct sd_http_session *other = sd_http_session_new();
    struct sd_http_request plain = {.url = u};
    struct sd_http_request fresh = {.url = u, .session = other};
    struct sd_http_response resp;
    assert_int_equal(sd_http_fetch(&plain, &resp), 0);
    assert_int_equal(resp.status, 202);
    sd_http_response_release(&resp);
    assert_int_equal(sd_http_fetch(&fresh, &resp), 0);
    assert_int_equal(resp.status, 202);
    sd_http_response_release(&resp);
    pthread_mutex_lock(&srv.mu);
    assert_string_equal(srv.cookies[3], "");
    assert_string_equal(srv.cookies[4], "");
    pthread_mutex_unlock(&srv.mu);
    assert_int_equal(sd_http_session_cookies(other), 1);
    assert_int_equal(sd_http_session_cookies(s), 2);
    sd_http_session_free(other);
    sd_http_session_free(s);
    free(u);
}

/* A server that keeps setting new cookies fills the jar to its cap and no further. */
static void test_cookie_jar_capped(void **state)
{
    (void)state;
    srv_reset();
    char *u = url("/flood");
    struct sd_http_session *s = sd_http_session_new();
    struct sd_http_request rq = {.url = u, .session = s};
    struct sd_http_response resp;
    assert_int_equal(sd_http_fetch(&rq, &resp), 0); /* 40 cookies: within the cap */
    assert_int_equal(resp.status, 200);
    sd_http_response_release(&resp);
    assert_int_equal(sd_http_session_cookies(s), 40);
    assert_int_equal(sd_http_fetch(&rq, &resp), -EFBIG); /* 80: over it */
    assert_non_null(strstr(resp.error, "more cookies than a session keeps"));
    assert_null(strstr(resp.error, "f1_")); /* no cookie names in the error */
    sd_http_response_release(&resp);
    assert_int_equal(sd_http_session_cookies(s), 0);
    sd_http_session_free(s);
    free(u);
}

/* The same exchange through sd_http_fetch_poll: the loop ends at the first answer that is not
 * 202; a command that stays queued ends with -ETIMEDOUT (the last 202 kept); a stopping hub
 * ends it with -ECANCELED. */
static void test_poll_queued(void **state)
{
    (void)state;
    srv_reset();
    char *u = url("/cookies");
    struct sd_http_session *s = sd_http_session_new();
    struct sd_http_request rq = {
        .method = "POST", .url = u, .body = "{}", .body_len = 2, .session = s};
    struct sd_http_poll poll = {.interval_ms = 10, .max_ms = 60000};
    struct sd_http_retry retry = {.max_attempts = 2, .initial_ms = 1};
    struct sd_http_response resp;
    int polls = 0;
    assert_int_equal(sd_http_fetch_poll(&rq, &poll, &retry, &resp, &polls), 0);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.body.data, "done");
    assert_int_equal(polls, 3);
    sd_http_response_release(&resp);
    pthread_mutex_lock(&srv.mu);
    assert_true(has_cookie(srv.cookies[2], "CID=c1") && has_cookie(srv.cookies[2], "QTKN=q1"));
    pthread_mutex_unlock(&srv.mu);
    sd_http_session_free(s);
    free(u);

    srv_reset();
    u = url("/flaky/202/1000000");
    rq = (struct sd_http_request){.url = u};
    poll = (struct sd_http_poll){.interval_ms = 10, .max_ms = 50};
    assert_int_equal(sd_http_fetch_poll(&rq, &poll, &retry, &resp, &polls), -ETIMEDOUT);
    assert_int_equal(resp.status, 202);
    assert_non_null(strstr(resp.error, "still queued (202)"));
    assert_true(polls >= 1);
    assert_int_equal(polls, srv_requests());
    sd_http_response_release(&resp);

    atomic_bool stop = true;
    retry.stop = &stop;
    assert_int_equal(sd_http_fetch_poll(&rq, &poll, &retry, &resp, &polls), -ECANCELED);
    sd_http_response_release(&resp);
    free(u);
}

/* ---- forms and headers -----------------------------------------------------------------------
 */

static void test_form_encoding(void **state)
{
    (void)state;
    static const struct {
        const char *name, *value, *out;
    } cases[] = {
        {"q", "a b", "q=a+b"},
        {"k", "x&y=z", "k=x%26y%3Dz"},
        {"plus", "1+1", "plus=1%2B1"},
        {"name", "Müller", "name=M%C3%BCller"},
        {"emoji", "\xF0\x9F\x8E\xAB", "emoji=%F0%9F%8E%AB"},
        {"keep", "*-._", "keep=*-._"},
        {"tilde", "~/?#%", "tilde=%7E%2F%3F%23%25"},
        {"line", "a\r\nb", "line=a%0D%0Ab"},
        {"a b&c", "", "a+b%26c="},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sd_http_form *f = sd_http_form_new();
        assert_int_equal(sd_http_form_add(f, cases[i].name, cases[i].value), 0);
        size_t len = 0;
        assert_string_equal(sd_http_form_body(f, &len), cases[i].out);
        assert_int_equal(len, strlen(cases[i].out));
        sd_http_form_free(f);
    }
    struct sd_http_form *f = sd_http_form_new();
    assert_string_equal(sd_http_form_body(f, NULL), "");
    assert_int_equal(sd_http_form_add(f, "api_key", "k 1"), 0);
    assert_int_equal(sd_http_form_add(f, "tag", "a"), 0);
    assert_int_equal(sd_http_form_add(f, "tag", "b=c"), 0);
    assert_int_equal(sd_http_form_add(f, "", "x"), -EINVAL);
    assert_int_equal(sd_http_form_add(f, "x", NULL), -EINVAL);
    assert_string_equal(sd_http_form_body(f, NULL), "api_key=k+1&tag=a&tag=b%3Dc");

    /* Sent: the body as built, with its Content-Type, and a custom header beside it. */
    char *key = NULL;
    assert_int_equal(sd_http_header("Api-Key", "K-123", &key), 0);
    const char *headers[] = {key, NULL};
    char *u = url("/echo");
    struct sd_http_request rq = {.method = "POST", .url = u, .form = f, .headers = headers};
    struct sd_http_response resp;
    assert_int_equal(sd_http_fetch(&rq, &resp), 0);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.body.data,
                        "application/x-www-form-urlencoded|K-123|api_key=k+1&tag=a&tag=b%3Dc");
    sd_http_response_release(&resp);
    /* A Content-Type the caller names wins (one header, not two). */
    const char *own[] = {"Content-Type: application/x-www-form-urlencoded; charset=utf-8", NULL};
    rq.headers = own;
    assert_int_equal(sd_http_fetch(&rq, &resp), 0);
    assert_string_equal(resp.body.data, "application/x-www-form-urlencoded; charset=utf-8||"
                                        "api_key=k+1&tag=a&tag=b%3Dc");
    sd_http_response_release(&resp);
    sd_http_header_free(key);
    sd_http_form_free(f);
    free(u);
}

static void test_header_lines(void **state)
{
    (void)state;
    char *line = NULL;
    assert_int_equal(sd_http_header("Api-Secret", "s3cr=t/+", &line), 0);
    assert_string_equal(line, "Api-Secret: s3cr=t/+");
    sd_http_header_free(line);
    static const char *const bad_values[] = {"a\r\nX-Evil: 1", "a\nb",  "a\rb",   "a\tb",
                                             "a\x01",          "a\x7f", "\x1b[0m"};
    for (size_t i = 0; i < sizeof(bad_values) / sizeof(bad_values[0]); i++) {
        line = (char *)"untouched";
        assert_int_equal(sd_http_header("Api-Key", bad_values[i], &line), -EINVAL);
        assert_string_equal(line, "untouched");
        assert_int_equal(sd_http_header_bearer(bad_values[i], &line), -EINVAL);
        assert_int_equal(sd_http_header_basic("u", bad_values[i], &line), -EINVAL);
        assert_int_equal(sd_http_header_basic(bad_values[i], "p", &line), -EINVAL);
    }
    assert_int_equal(sd_http_header("Api Key", "v", &line), -EINVAL);
    assert_int_equal(sd_http_header("Api-Key:", "v", &line), -EINVAL);
    assert_int_equal(sd_http_header("", "v", &line), -EINVAL);
    assert_int_equal(sd_http_header("X\r\nY", "v", &line), -EINVAL);

    /* RFC 7617's example */
    assert_int_equal(sd_http_header_basic("Aladdin", "open sesame", &line), 0);
    assert_string_equal(line, "Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
    sd_http_header_free(line);
    assert_int_equal(sd_http_header_basic("a:b", "p", &line), -EINVAL);
    assert_int_equal(sd_http_header_basic("", "", &line), 0);
    assert_string_equal(line, "Authorization: Basic Og==");
    sd_http_header_free(line);

    assert_int_equal(sd_http_header_bearer("eyJ.abc-_~+/=", &line), 0);
    assert_string_equal(line, "Authorization: Bearer eyJ.abc-_~+/=");
    sd_http_header_free(line);
    assert_int_equal(sd_http_header_bearer("", &line), -EINVAL);
    assert_int_equal(sd_http_header_bearer("two words", &line), -EINVAL);
}

/* ---- tokens ----------------------------------------------------------------------------------
 */

/* The connector's side: hands out tok1, tok2, … with the lifetimes queued in ttl[]. */
struct issuer {
    pthread_mutex_t mu;
    int issued;
    int64_t ttl[8];
    int fail; /* > 0: fail that many refreshes with -ECONNREFUSED */
};

static int issue(void *arg, char **ret_token, int64_t *ret_ttl_s, char *error, size_t error_size)
{
    struct issuer *is = arg;
    pthread_mutex_lock(&is->mu);
    if (is->fail > 0) {
        is->fail--;
        pthread_mutex_unlock(&is->mu);
        snprintf(error, error_size, "the token service is down");
        return -ECONNREFUSED;
    }
    int n = is->issued++;
    *ret_ttl_s = n < 8 ? is->ttl[n] : 0;
    pthread_mutex_unlock(&is->mu);
    *ret_token = sd_asprintf("tok%d", n + 1);
    return 0;
}

static void test_token_refreshed_near_expiry(void **state)
{
    (void)state;
    struct issuer is = {.mu = PTHREAD_MUTEX_INITIALIZER, .ttl = {30, 3600, 0}};
    struct sd_http_token *t = sd_http_token_new(issue, &is, 60);
    char err[256];
    char *line = NULL;
    uint64_t g1 = 0, g2 = 0, g3 = 0;
    assert_int_equal(sd_http_token_header(t, &line, &g1, err, sizeof(err)), 0);
    assert_string_equal(line, "Authorization: Bearer tok1");
    sd_http_header_free(line);
    /* tok1 lives 30 s, inside the 60 s margin: refreshed before its next use */
    assert_int_equal(sd_http_token_header(t, &line, &g2, err, sizeof(err)), 0);
    assert_string_equal(line, "Authorization: Bearer tok2");
    sd_http_header_free(line);
    assert_true(g2 > g1);
    /* tok2 lives an hour: used as it is */
    assert_int_equal(sd_http_token_header(t, &line, &g3, err, sizeof(err)), 0);
    assert_string_equal(line, "Authorization: Bearer tok2");
    sd_http_header_free(line);
    assert_int_equal(g3, g2);
    assert_int_equal(sd_http_token_refreshes(t), 2);
    /* a stale generation's 401 does not drop the current token; the current one's does */
    sd_http_token_invalidate(t, g1);
    assert_int_equal(sd_http_token_header(t, &line, NULL, err, sizeof(err)), 0);
    assert_string_equal(line, "Authorization: Bearer tok2");
    sd_http_header_free(line);
    sd_http_token_invalidate(t, g2);
    assert_int_equal(sd_http_token_header(t, &line, NULL, err, sizeof(err)), 0);
    assert_string_equal(line, "Authorization: Bearer tok3"); /* unknown lifetime: kept */
    sd_http_header_free(line);
    assert_int_equal(sd_http_token_header(t, &line, NULL, err, sizeof(err)), 0);
    assert_string_equal(line, "Authorization: Bearer tok3");
    sd_http_header_free(line);
    assert_int_equal(sd_http_token_refreshes(t), 3);
    sd_http_token_free(t);
}

static void test_token_401_refreshed_once(void **state)
{
    (void)state;
    srv_reset();
    struct issuer is = {.mu = PTHREAD_MUTEX_INITIALIZER};
    struct sd_http_token *t = sd_http_token_new(issue, &is, 0);
    char *u = url("/auth");
    struct sd_http_request rq = {.url = u, .token = t};
    struct sd_http_response resp;

    srv_set_valid("tok1");
    assert_int_equal(sd_http_fetch(&rq, &resp), 0);
    assert_int_equal(resp.status, 200);
    sd_http_response_release(&resp);
    assert_int_equal(srv_requests(), 1);

    /* The server stops accepting tok1: one 401, one refresh, the repeat succeeds. */
    srv_set_valid("tok2");
    assert_int_equal(sd_http_fetch(&rq, &resp), 0);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.body.data, "welcome");
    sd_http_response_release(&resp);
    assert_int_equal(srv_requests(), 3);
    assert_int_equal(sd_http_token_refreshes(t), 2);

    /* A fresh token refused as well: the second 401 is the answer (no loop). */
    srv_set_valid("never");
    assert_int_equal(sd_http_fetch(&rq, &resp), 0);
    assert_int_equal(resp.status, 401);
    sd_http_response_release(&resp);
    assert_int_equal(srv_requests(), 5);
    assert_int_equal(sd_http_token_refreshes(t), 3);

    /* Through the retry loop: a 401 is REJECT, so still one repeat and no retries. */
    int attempts = 0;
    struct sd_http_retry pol = {.max_attempts = 3, .initial_ms = 1};
    assert_int_equal(sd_http_fetch_retry(&rq, &pol, &resp, &attempts), 0);
    assert_int_equal(resp.status, 401);
    sd_http_response_release(&resp);
    assert_int_equal(attempts, 1);
    assert_int_equal(srv_requests(), 7);

    /* A refresh that fails fails the request with its reason, before anything is sent. */
    uint64_t gen = 0;
    char err[256], *line = NULL;
    assert_int_equal(sd_http_token_header(t, &line, &gen, err, sizeof(err)), 0);
    sd_http_header_free(line);
    assert_int_equal(sd_http_token_refreshes(t), 4);
    sd_http_token_invalidate(t, gen);
    is.fail = 1;
    assert_int_equal(sd_http_fetch(&rq, &resp), -ECONNREFUSED);
    assert_string_equal(resp.error, "the token service is down");
    sd_http_response_release(&resp);
    assert_int_equal(srv_requests(), 7);
    sd_http_token_free(t);
    free(u);
}

/* The ready callback: POST the credentials as JSON, take {"token", "expires_in"}. */
static void test_token_json_exchange(void **state)
{
    (void)state;
    srv_reset();
    char *tu = url("/token"), *au = url("/auth");
    struct sd_http_token_json cfg = {
        .url = tu, .body = "{\"operator\":\"op\",\"secret\":\"s3\"}", .ttl_member = "expires_in"};
    struct sd_http_token *t = sd_http_token_new(sd_http_token_refresh_json, &cfg, 60);
    pthread_mutex_lock(&srv.mu);
    int first = srv.tokens + 1;
    pthread_mutex_unlock(&srv.mu);
    char want[16];
    snprintf(want, sizeof(want), "j%d", first);
    srv_set_valid(want);
    struct sd_http_request rq = {.url = au, .token = t};
    struct sd_http_response resp;
    for (int i = 0; i < 2; i++) { /* the second request reuses the token (an hour to live) */
        assert_int_equal(sd_http_fetch(&rq, &resp), 0);
        assert_int_equal(resp.status, 200);
        sd_http_response_release(&resp);
    }
    assert_int_equal(sd_http_token_refreshes(t), 1);
    assert_int_equal(srv_requests(), 3);
    sd_http_token_free(t);

    /* Wrong credentials: refused, not retried, no secret in the error. */
    cfg.body = "{\"operator\":\"op\",\"secret\":\"wrong-s3cret\"}";
    t = sd_http_token_new(sd_http_token_refresh_json, &cfg, 60);
    rq.token = t;
    assert_int_equal(sd_http_fetch(&rq, &resp), -EACCES);
    assert_string_equal(resp.error, "the token exchange was refused (HTTP 401)");
    sd_http_response_release(&resp);
    assert_int_equal(srv_requests(), 4);
    sd_http_token_free(t);

    /* Unavailable (503): try again later; an answer without the member: a protocol error. */
    char *busy = url("/flaky/503/1000000"), *broken = url("/token-broken");
    cfg.url = busy;
    t = sd_http_token_new(sd_http_token_refresh_json, &cfg, 60);
    rq.token = t;
    assert_int_equal(sd_http_fetch(&rq, &resp), -EAGAIN);
    assert_string_equal(resp.error, "the token exchange was not answered (HTTP 503)");
    sd_http_response_release(&resp);
    sd_http_token_free(t);
    cfg.url = broken;
    t = sd_http_token_new(sd_http_token_refresh_json, &cfg, 60);
    rq.token = t;
    assert_int_equal(sd_http_fetch(&rq, &resp), -EPROTO);
    assert_string_equal(resp.error, "the token exchange answered without a \"token\" string");
    sd_http_response_release(&resp);
    sd_http_token_free(t);
    free(busy);
    free(broken);
    free(tu);
    free(au);
}

struct burst {
    struct sd_http_token *t;
    int ok;
};

static void *use_token(void *arg)
{
    struct burst *b = arg;
    char err[256], *line = NULL;
    if (sd_http_token_header(b->t, &line, NULL, err, sizeof(err)) == 0 &&
        strcmp(line, "Authorization: Bearer tok1") == 0) {
        b->ok = 1;
    }
    sd_http_header_free(line);
    return NULL;
}

/* Threads that find no token at once cause one refresh, not one each. */
static void test_token_shared_by_threads(void **state)
{
    (void)state;
    struct issuer is = {.mu = PTHREAD_MUTEX_INITIALIZER};
    struct sd_http_token *t = sd_http_token_new(issue, &is, 0);
    pthread_t th[8];
    struct burst b[8];
    for (int i = 0; i < 8; i++) {
        b[i] = (struct burst){.t = t};
        assert_int_equal(pthread_create(&th[i], NULL, use_token, &b[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(b[i].ok, 1);
    }
    assert_int_equal(sd_http_token_refreshes(t), 1);
    sd_http_token_free(t);
}

/* ---- retries judged by the classifier --------------------------------------------------------
 */

static void retry_case(const char *path, int max_attempts, int want_r, long want_status,
                       int want_attempts, int want_requests)
{
    srv_reset();
    char *u = url(path);
    struct sd_http_request rq = {.url = u};
    struct sd_http_retry pol = {.max_attempts = max_attempts, .initial_ms = 1};
    struct sd_http_response resp;
    int attempts = 0;
    assert_int_equal(sd_http_fetch_retry(&rq, &pol, &resp, &attempts), want_r);
    assert_int_equal(resp.status, want_status);
    assert_int_equal(attempts, want_attempts);
    assert_int_equal(srv_requests(), want_requests);
    sd_http_response_release(&resp);
    free(u);
}

static void test_retry_follows_classifier(void **state)
{
    (void)state;
    retry_case("/flaky/408/1", 2, 0, 200, 2, 2); /* 408 is retried */
    retry_case("/flaky/408/5", 3, 0, 408, 3, 3); /* … up to max_attempts */
    retry_case("/flaky/509/2", 1, 0, 200, 3, 3); /* 509 waits; no attempt used */
    retry_case("/flaky/429/2", 1, 0, 200, 3, 3);
    retry_case("/flaky/503/1", 2, 0, 200, 2, 2);
    retry_case("/flaky/500/4", 2, 0, 500, 2, 2);
    retry_case("/flaky/404/1", 5, 0, 404, 1, 1); /* REJECT: at once */
    retry_case("/flaky/409/1", 5, 0, 409, 1, 1);
    retry_case("/flaky/201/1", 5, 0, 201, 1, 1); /* OK */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_escape),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_cookies_replayed_on_repeat),
        cmocka_unit_test(test_cookie_jar_capped),
        cmocka_unit_test(test_poll_queued),
        cmocka_unit_test(test_form_encoding),
        cmocka_unit_test(test_header_lines),
        cmocka_unit_test(test_token_refreshed_near_expiry),
        cmocka_unit_test(test_token_401_refreshed_once),
        cmocka_unit_test(test_token_json_exchange),
        cmocka_unit_test(test_token_shared_by_threads),
        cmocka_unit_test(test_retry_follows_classifier),
    };
    return cmocka_run_group_tests(tests, srv_start, srv_stop);
}
