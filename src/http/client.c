/* client.c — outgoing requests over libcurl (see client.h). Each call uses its own easy
 * handle (no sharing between threads); the global init runs once under pthread_once. Answer
 * bodies go to memory (capped) or straight to a file descriptor (SFTP downloads of large CSV
 * files, constant memory). Only the headers a connector needs are kept. A request's session
 * (session.c) lends its cookie jar to the handle; its token (token.c) adds one header line,
 * and a 401 is repeated once with a fresh token — below the retry loop, so that repeat is part
 * of one attempt. Retrying is judged by sd_http_classify alone (http/verdict.h). */
#include "http/client.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "base/utf8.h"
#include "http/client_parts.h"
#include "http/egress.h"
#include "http/verdict.h"

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

void sd_http_global_init(void)
{
    pthread_once(&init_once, global_init);
}

struct sink {
    const struct sd_http_request *rq;
    struct sd_http_response *resp;
    size_t max;
    bool too_big;
    bool write_failed;
    const _Atomic bool *stop; /* set: abort the transfer (the hub is stopping) */
    char refused[200];        /* why the egress policy refused an address, "" if it did not */
};

/* Every socket libcurl opens (HTTP, HTTPS, SFTP; each address it tries) is checked here against
 * the egress policy, on the address it is about to connect to: a name that resolves to a
 * refused address is refused whatever it resolved to when the setting was saved. */
static curl_socket_t on_open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *addr)
{
    struct sink *s = arg;
    (void)purpose;
    enum sd_addr_class c = sd_egress_classify(&addr->addr);
    const char *no = sd_egress_refusal(sd_egress_policy_env(), c);
    if (no) {
        char text[INET6_ADDRSTRLEN] = "?";
        if (addr->family == AF_INET) {
            inet_ntop(AF_INET, &((const struct sockaddr_in *)&addr->addr)->sin_addr, text,
                      sizeof(text));
        } else if (addr->family == AF_INET6) {
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&addr->addr)->sin6_addr, text,
                      sizeof(text));
        }
        snprintf(s->refused, sizeof(s->refused), "refused by the egress policy: %s is %s", text,
                 no);
        return CURL_SOCKET_BAD;
    }
    return socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
}

/* libcurl calls this at least once a second during a transfer, even when nothing arrives:
 * a slow or silent remote cannot hold the hub's shutdown for the whole request timeout. */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    const struct sink *s = arg;
    return s->stop && atomic_load(s->stop) ? 1 : 0;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct sink *s = arg;
    size_t n = size * nmemb;
    if (s->resp->body_bytes + n > s->max) {
        s->too_big = true;
        return 0;
    }
    s->resp->body_bytes += n;
    if (s->rq->to_fd > 0) {
        size_t off = 0;
        while (off < n) {
            ssize_t w = write(s->rq->to_fd, data + off, n - off);
            if (w < 0 && errno == EINTR) {
                continue;
            }
            if (w <= 0) {
                s->write_failed = true;
                return 0;
            }
            off += (size_t)w;
        }
    } else {
        sd_buf_append(&s->resp->body, data, n);
    }
    return n;
}

static char *header_value(const char *line, size_t len, const char *name)
{
    size_t nl = strlen(name);
    if (len <= nl + 1 || strncasecmp(line, name, nl) != 0 || line[nl] != ':') {
        return NULL;
    }
    const char *v = line + nl + 1;
    const char *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t')) {
        v++;
    }
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ')) {
        end--;
    }
    if ((size_t)(end - v) > 1024) {
        return NULL;
    }
    char *out = sd_malloc((size_t)(end - v) + 1);
    memcpy(out, v, (size_t)(end - v));
    out[end - v] = '\0';
    return out;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
    struct sd_http_response *r = arg;
    size_t n = size * nmemb;
    static const struct {
        const char *name;
        size_t off;
    } keep[] = {
        {"ETag", offsetof(struct sd_http_response, etag)},
        {"Last-Modified", offsetof(struct sd_http_response, last_modified)},
        {"Retry-After", offsetof(struct sd_http_response, retry_after)},
        {"Content-Type", offsetof(struct sd_http_response, content_type)},
    };
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
        char *v = header_value(data, n, keep[i].name);
        if (v) {
            char **slot = (char **)((char *)r + keep[i].off);
            free(*slot);
            *slot = v;
        }
    }
    return n;
}

/* Does a "Name: value" line of headers name this header? */
static bool has_header(const char *const *headers, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; headers && headers[i]; i++) {
        if (strncasecmp(headers[i], name, nl) == 0 && headers[i][nl] == ':') {
            return true;
        }
    }
    return false;
}

/* One request. extra_header: one more header line (the token's), or NULL. */
static int fetch(const struct sd_http_request *rq, const char *extra_header,
                 const _Atomic bool *stop, struct sd_http_response *ret)
{
    pthread_once(&init_once, global_init);
    memset(ret, 0, sizeof(*ret));
    CURL *h = curl_easy_init();
    if (!h) {
        snprintf(ret->error, sizeof(ret->error), "cannot create a libcurl handle");
        return -EIO;
    }
    struct sink sink = {
        .rq = rq, .resp = ret, .max = rq->max_body ? rq->max_body : 64u << 20, .stop = stop};
    struct curl_slist *hdrs = NULL, *quote = NULL;
    for (size_t i = 0; rq->headers && rq->headers[i]; i++) {
        hdrs = curl_slist_append(hdrs, rq->headers[i]);
    }
    if (extra_header) {
        hdrs = curl_slist_append(hdrs, extra_header);
    }
    if (rq->form && !has_header(rq->headers, "Content-Type")) {
        hdrs = curl_slist_append(hdrs, "Content-Type: application/x-www-form-urlencoded");
    }
    for (size_t i = 0; rq->quote_after && rq->quote_after[i]; i++) {
        quote = curl_slist_append(quote, rq->quote_after[i]);
    }
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_URL, rq->url);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https,sftp");
    /* No proxy from the environment: the egress policy judges the address connected to, which
     * must be the destination itself. */
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, &sink);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(rq->timeout_ms ? rq->timeout_ms : 30000));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(rq->connect_timeout_ms ? rq->connect_timeout_ms : 10000));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, ret);
    if (stop) {
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, &sink);
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    }
    curl_easy_setopt(h, CURLOPT_USERAGENT, "stagedoor/0.1");
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (hdrs) {
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    }
    if (rq->method && strcmp(rq->method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, rq->method);
    }
    if (rq->form) {
        size_t len = 0;
        const char *text = sd_http_form_body(rq->form, &len);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, text);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    } else if (rq->body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, rq->body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
    }
    if (rq->session) {
        sd_http_session_attach(rq->session, h);
    }
    if (rq->username) {
        curl_easy_setopt(h, CURLOPT_USERNAME, rq->username);
    }
    if (rq->password) {
        curl_easy_setopt(h, CURLOPT_PASSWORD, rq->password);
    }
    if (rq->ssh_private_key) {
        curl_easy_setopt(h, CURLOPT_SSH_PRIVATE_KEYFILE, rq->ssh_private_key);
        curl_easy_setopt(h, CURLOPT_SSH_AUTH_TYPES, (long)CURLSSH_AUTH_PUBLICKEY);
    } else if (rq->password) {
        curl_easy_setopt(h, CURLOPT_SSH_AUTH_TYPES,
                         (long)(CURLSSH_AUTH_PASSWORD | CURLSSH_AUTH_KEYBOARD));
    }
    if (rq->ssh_public_key) {
        curl_easy_setopt(h, CURLOPT_SSH_PUBLIC_KEYFILE, rq->ssh_public_key);
    }
    if (rq->ssh_known_hosts) {
        curl_easy_setopt(h, CURLOPT_SSH_KNOWNHOSTS, rq->ssh_known_hosts);
    }
    if (rq->ssh_host_sha256) {
        curl_easy_setopt(h, CURLOPT_SSH_HOST_PUBLIC_KEY_SHA256, rq->ssh_host_sha256);
    }
    if (quote) {
        curl_easy_setopt(h, CURLOPT_POSTQUOTE, quote);
    }
    if (rq->list_only) {
        curl_easy_setopt(h, CURLOPT_DIRLISTONLY, 1L);
    }
    FILE *up = NULL;
    if (rq->upload_file) {
        struct stat st;
        up = fopen(rq->upload_file, "rb");
        if (!up || fstat(fileno(up), &st) != 0) {
            sd_utf8_snprintf(ret->error, sizeof(ret->error), "cannot read %s", rq->upload_file);
            if (up) {
                fclose(up);
            }
            curl_slist_free_all(hdrs);
            curl_slist_free_all(quote);
            curl_easy_cleanup(h);
            return -EIO;
        }
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_READDATA, up);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)st.st_size);
        curl_easy_setopt(h, CURLOPT_FTP_CREATE_MISSING_DIRS, (long)CURLFTP_CREATE_DIR);
    }
    CURLcode rc = curl_easy_perform(h);
    if (up) {
        fclose(up);
    }
    int r = 0;
    if (rc == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &ret->status);
    } else if (sink.too_big) {
        snprintf(ret->error, sizeof(ret->error), "answer larger than %zu bytes", sink.max);
        r = -EFBIG;
    } else if (sink.refused[0]) {
        snprintf(ret->error, sizeof(ret->error), "%s", sink.refused);
        r = -ENETUNREACH;
    } else if (rc == CURLE_ABORTED_BY_CALLBACK) {
        snprintf(ret->error, sizeof(ret->error), "stopped (the hub is shutting down)");
        r = -ECANCELED;
    } else {
        sd_utf8_snprintf(ret->error, sizeof(ret->error), "%s",
                         errbuf[0] ? errbuf : curl_easy_strerror(rc));
        switch (rc) {
        case CURLE_OPERATION_TIMEDOUT: r = -ETIMEDOUT; break;
        case CURLE_COULDNT_CONNECT:
        case CURLE_COULDNT_RESOLVE_HOST: r = -ECONNREFUSED; break;
        case CURLE_LOGIN_DENIED: r = -EACCES; break;
        case CURLE_REMOTE_FILE_NOT_FOUND: r = -ENOENT; break;
        case CURLE_QUOTE_ERROR: r = -EPERM; break;
        default: r = -EIO;
        }
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &ret->status);
    }
    if (rq->session) {
        char why[sizeof(ret->error)];
        if (sd_http_session_check(rq->session, h, why, sizeof(why)) < 0 && r == 0) {
            snprintf(ret->error, sizeof(ret->error), "%s", why);
            r = -EFBIG;
        }
    }
    curl_slist_free_all(hdrs);
    curl_slist_free_all(quote);
    curl_easy_cleanup(h);
    return r;
}

/* fetch with the request's token: a 401 drops the token the request carried and repeats the
 * request once with a fresh one; the second answer is returned whatever it is. */
static int exchange(const struct sd_http_request *rq, const _Atomic bool *stop,
                    struct sd_http_response *ret)
{
    if (!rq->token) {
        return fetch(rq, NULL, stop, ret);
    }
    for (int round = 0;; round++) {
        char *line = NULL;
        uint64_t gen = 0;
        memset(ret, 0, sizeof(*ret));
        int r = sd_http_token_header(rq->token, &line, &gen, ret->error, sizeof(ret->error));
        if (r < 0) {
            return r;
        }
        r = fetch(rq, line, stop, ret);
        sd_http_header_free(line);
        if (r == 0 && ret->status == 401 && round == 0) {
            sd_http_token_invalidate(rq->token, gen);
            sd_http_response_release(ret);
            continue;
        }
        return r;
    }
}

char *sd_http_url_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    struct sd_buf b = {0};
    sd_buf_puts(&b, "");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            sd_buf_append(&b, (const char *)p, 1);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            sd_buf_append(&b, e, 3);
        }
    }
    return sd_buf_steal(&b);
}

int sd_http_fetch(const struct sd_http_request *rq, struct sd_http_response *ret)
{
    return exchange(rq, NULL, ret);
}

void sd_http_response_release(struct sd_http_response *r)
{
    sd_buf_release(&r->body);
    free(r->etag);
    free(r->last_modified);
    free(r->retry_after);
    free(r->content_type);
    memset(r, 0, sizeof(*r));
}

int64_t sd_http_retry_after(const char *value, int64_t max_s)
{
    if (!value || !*value) {
        return -1;
    }
    int64_t v = 0;
    if (sd_parse_int64(value, false, &v) == 0) {
        return v < 0 ? 0 : v > max_s ? max_s : v;
    }
    time_t when = curl_getdate(value, NULL);
    if (when < 0) {
        return -1;
    }
    int64_t d = (int64_t)when - (int64_t)time(NULL);
    return d < 0 ? 0 : d > max_s ? max_s : d;
}

/* Sleep ms in slices, returning false early if stop is set. */
static bool nap(int64_t ms, const _Atomic bool *stop)
{
    int64_t end = sd_mono_usec() + ms * 1000;
    while (sd_mono_usec() < end) {
        if (stop && atomic_load(stop)) {
            return false;
        }
        int64_t left = (end - sd_mono_usec()) / 1000;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (left > 100 ? 100 : left) * 1000000L};
        if (left > 0) {
            nanosleep(&ts, NULL);
        }
    }
    return !(stop && atomic_load(stop));
}

/* A wait in [cap/2, cap] ("equal jitter"): spread out like full jitter, but never close to 0,
 * so every retry really backs off and the waits grow until the cap (each is at least the
 * longest the one before could be). Full jitter, [0, cap], could retry a failing server at
 * once. */
static int64_t jitter(int64_t cap_ms)
{
    uint64_t r = 0;
    if (cap_ms <= 0) {
        return 0;
    }
    int64_t half = cap_ms / 2;
    if (sd_random_bytes(&r, sizeof(r)) < 0) {
        return cap_ms;
    }
    return half + (int64_t)(r % (uint64_t)(cap_ms - half + 1));
}

int sd_http_fetch_retry(const struct sd_http_request *rq, const struct sd_http_retry *policy,
                        struct sd_http_response *ret, int *ret_attempts)
{
    int max_attempts = policy && policy->max_attempts > 0 ? policy->max_attempts : 6;
    int64_t initial = policy && policy->initial_ms > 0 ? policy->initial_ms : 1000;
    int64_t max_wait = policy && policy->max_wait_s > 0 ? policy->max_wait_s : 300;
    const _Atomic bool *stop = policy ? policy->stop : NULL;
    int attempts = 0, waits = 0, r = 0;
    int64_t backoff = initial;
    memset(ret, 0, sizeof(*ret));
    for (;;) {
        sd_http_response_release(ret);
        r = exchange(rq, stop, ret);
        enum sd_verdict v = sd_http_classify(r, ret->status);
        /* WAIT is flow control: the remote asks for time, the attempt is given back. */
        if (v == SD_VERDICT_WAIT) {
            waits++;
        } else {
            attempts++;
        }
        if (v == SD_VERDICT_OK || v == SD_VERDICT_REJECT ||
            (v == SD_VERDICT_WAIT ? waits > 20 : attempts >= max_attempts)) {
            break;
        }
        int64_t wait_ms = -1;
        if (r == 0 && (v == SD_VERDICT_WAIT || ret->status == 503)) {
            int64_t s = sd_http_retry_after(ret->retry_after, max_wait);
            wait_ms = s >= 0 ? s * 1000 : -1;
        }
        if (wait_ms < 0) {
            wait_ms = jitter(backoff);
            backoff = backoff * 2 > max_wait * 1000 ? max_wait * 1000 : backoff * 2;
        }
        if (!nap(wait_ms, stop)) {
            r = -ECANCELED;
            snprintf(ret->error, sizeof(ret->error), "stopped while waiting to retry");
            break;
        }
    }
    if (ret_attempts) {
        *ret_attempts = attempts + waits;
    }
    return r;
}

int sd_http_fetch_poll(const struct sd_http_request *rq, const struct sd_http_poll *poll,
                       const struct sd_http_retry *retry, struct sd_http_response *ret,
                       int *ret_polls)
{
    int64_t interval = poll && poll->interval_ms > 0 ? poll->interval_ms : 500;
    int64_t budget = poll && poll->max_ms > 0 ? poll->max_ms : 180000;
    const _Atomic bool *stop = retry ? retry->stop : NULL;
    int64_t end = sd_mono_usec() + budget * 1000;
    int polls = 0, r = 0;
    memset(ret, 0, sizeof(*ret));
    for (;;) {
        sd_http_response_release(ret);
        r = sd_http_fetch_retry(rq, retry, ret, NULL);
        polls += r == 0;
        if (r < 0 || ret->status != 202) {
            break;
        }
        int64_t left_ms = (end - sd_mono_usec()) / 1000;
        if (left_ms < interval) {
            snprintf(ret->error, sizeof(ret->error),
                     "still queued (202) after %d request(s) in %lld ms", polls,
                     (long long)budget);
            r = -ETIMEDOUT;
            break;
        }
        if (!nap(interval, stop)) {
            snprintf(ret->error, sizeof(ret->error), "stopped while polling a queued answer");
            r = -ECANCELED;
            break;
        }
    }
    if (ret_polls) {
        *ret_polls = polls;
    }
    return r;
}
