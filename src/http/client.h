/* client.h — outgoing HTTP(S) and SFTP requests (libcurl), for connectors that fetch (feeds,
 * REST pull, SFTP pull) and, later, deliver. One call is one request with hard limits: a
 * total timeout, a connect timeout and a cap on the answer's size, so a slow or hostile remote
 * can never hold a connector or its memory forever. Redirects are not followed (a feed that
 * moved is a configuration to fix, and following could leak the Authorization header).
 *
 * A request may name three helpers (declared below): a session (the cookie jar of one exchange
 * that spans several requests), a form (an application/x-www-form-urlencoded body) and a token
 * (a Bearer token fetched and refreshed by a callback the connector supplies).
 *
 * Thread rules: any thread; no shared state besides libcurl's global init (done once), except
 * what a request names: a session belongs to one thread at a time, a token may be shared. */
#ifndef SD_HTTP_CLIENT_H
#define SD_HTTP_CLIENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

struct sd_http_session;
struct sd_http_form;
struct sd_http_token;

struct sd_http_request {
    const char *method;         /* NULL = GET */
    const char *url;            /* http://, https:// or sftp:// */
    const char *const *headers; /* "Name: value" lines, NULL-terminated; may be NULL */
    const char *body;           /* request body or NULL */
    size_t body_len;
    int64_t timeout_ms;         /* whole request; 0 = 30 s */
    int64_t connect_timeout_ms; /* 0 = 10 s */
    size_t max_body;            /* answer larger than this fails with -EFBIG; 0 = 64 MiB */
    int to_fd;                  /* > 0: write the answer body to this fd instead of memory */
    /* SFTP */
    const char *username, *password;
    const char *ssh_private_key, *ssh_public_key; /* key files */
    const char *ssh_known_hosts;                  /* OpenSSH known_hosts file, or … */
    const char *ssh_host_sha256;                  /* … the host key's SHA256 (base64), or
                                                     neither: the host key is not checked */
    const char *const *quote_after;               /* SFTP commands after the transfer */
    bool list_only;                               /* SFTP: list a directory (names only) */
    const char *upload_file; /* SFTP: send this local file to url (missing folders created) */
    /* HTTP(S) */
    struct sd_http_session *session; /* cookies: replay every cookie earlier answers set */
    const struct sd_http_form *form; /* the body (instead of body/body_len), with its
                                        Content-Type (unless headers name one) */
    struct sd_http_token *token;     /* add "Authorization: Bearer …"; see sd_http_token */
};

struct sd_http_response {
    long status;        /* HTTP status; for SFTP 0 */
    struct sd_buf body; /* unless to_fd */
    size_t body_bytes;
    char *etag; /* response headers of interest, or NULL */
    char *last_modified;
    char *retry_after;
    char *content_type;
    char error[256]; /* transport error text, "" if none */
};

/* Perform the request. Returns 0 when an answer arrived (any HTTP status; see ret->status),
 * or a negative errno with ret->error explaining it: -ETIMEDOUT (timeout), -ECONNREFUSED
 * (connection failed), -EFBIG (answer too large), -EACCES (SFTP login refused), -ENOENT
 * (SFTP file missing), -ENETUNREACH (every address of the host is refused by the egress policy,
 * http/egress.h; not retried), -EPERM (the server refused an SFTP command of quote_after, e.g. a rename
 * onto a name that exists; not retried), -EIO (anything else). ret must be released even on
 * failure. */
int sd_http_fetch(const struct sd_http_request *rq, struct sd_http_response *ret);
void sd_http_response_release(struct sd_http_response *r);

/* Retries, decided by sd_http_classify (http/verdict.h) and nothing else: WAIT (429, 509)
 * waits for Retry-After (bounded by max_wait_s; without one it waits the back-off) and does not
 * use up an attempt (up to 20 waits); RETRY (408, 5xx, timeouts, connection errors) retries
 * with exponential back-off and "equal jitter" (a wait between half and all of the current
 * back-off, so gaps always grow), from initial_ms doubling up to max_wait_s, or as long as a
 * 503's Retry-After says; at most max_attempts attempts in all. OK and REJECT (2xx, 3xx, other
 * 4xx, -EFBIG, …) are returned at once. `stop` (may be NULL) cuts waits short AND aborts a
 * transfer in flight within about a second: then -ECANCELED. *ret_attempts (may be NULL) says
 * how many requests were made (a token's 401 repeat not counted). */
struct sd_http_retry {
    int max_attempts;   /* 0 = 6 */
    int64_t initial_ms; /* 0 = 1000 */
    int64_t max_wait_s; /* 0 = 300 */
    const _Atomic bool *stop;
};
int sd_http_fetch_retry(const struct sd_http_request *rq, const struct sd_http_retry *policy,
                        struct sd_http_response *ret, int *ret_attempts);

/* Poll a queued exchange: send rq (through sd_http_fetch_retry with `retry`, so transport
 * errors and 5xx mid-poll are retried as ever) and, while the answer is 202, wait interval_ms
 * (0 = 500) and send the identical request again — with every cookie the answers set, if rq
 * names a session (Archtics: the command is queued until an answer other than 202 comes) — for
 * at most max_ms in all (0 = 180 s). Returns 0 with the first answer that is not 202, or
 * -ETIMEDOUT with the last 202 in ret and the reason in ret->error (a RETRY: a later run may
 * ask again), or fetch_retry's error; -ECANCELED as soon as retry->stop is set.
 * *ret_polls (may be NULL) counts the requests answered. */
struct sd_http_poll {
    int64_t interval_ms;
    int64_t max_ms;
};
int sd_http_fetch_poll(const struct sd_http_request *rq, const struct sd_http_poll *poll,
                       const struct sd_http_retry *retry, struct sd_http_response *ret,
                       int *ret_polls);

/* s percent-encoded for one path segment of a URL (RFC 3986: unreserved characters stay),
 * e.g. "Sales Export #2.csv" → "Sales%20Export%20%232.csv". New string. */
char *sd_http_url_escape(const char *s);

/* Retry-After as seconds (delta-seconds or an HTTP-date), clamped to [0, max_s]; -1 if
 * absent or unreadable. */
int64_t sd_http_retry_after(const char *value, int64_t max_s);

/* ---- sessions: the cookie jar of one exchange -------------------------------------------------
 *
 * Some protocols span several requests that must carry every cookie the server set: an
 * Archtics command answered "202 queued" is repeated, identical, with every cookie of the
 * earlier answers (CID, QTKN, SID… — names are not hard-coded) until the result is ready.
 * Requests that name the same session share one in-memory jar (libcurl's cookie engine, domain
 * and path rules included); nothing is read from or written to disk. Cookies are never logged
 * and never returned in an error text.
 *
 * The jar is capped: an answer that leaves more than SD_HTTP_SESSION_MAX_COOKIES cookies or
 * more than SD_HTTP_SESSION_MAX_COOKIE_BYTES of them in the jar fails with -EFBIG (a verdict of
 * REJECT) and empties the jar, so a hostile server cannot grow it without bound.
 *
 * Thread rules: a session belongs to one thread at a time (no locking); free it when the
 * exchange ends. */
#define SD_HTTP_SESSION_MAX_COOKIES 64
#define SD_HTTP_SESSION_MAX_COOKIE_BYTES (32 * 1024)

struct sd_http_session *sd_http_session_new(void);
void sd_http_session_free(struct sd_http_session *s); /* NULL is fine */
/* How many cookies the jar holds now. */
size_t sd_http_session_cookies(struct sd_http_session *s);
/* The jar as text, to resume an exchange after a restart (a queued command whose poll must go
 * on with the same cookies): one Netscape-format line per cookie ("host\tFALSE\t/path\t…"),
 * each ended by '\n'; "" when empty. New string; it holds the cookies, so keep it where secrets
 * may go (a connector's saved state), never in a log line or an error text. */
char *sd_http_session_export(struct sd_http_session *s);
/* Put the cookies of sd_http_session_export's text into the jar (replacing equal names): 0, or
 * -EINVAL (a line that is not a cookie line, more than the caps allow, a control character
 * other than TAB), nothing imported then. */
int sd_http_session_import(struct sd_http_session *s, const char *text);

/* ---- form bodies (application/x-www-form-urlencoded) ------------------------------------------
 *
 * name=value pairs joined by '&', encoded as browsers do (WHATWG URL standard, "urlencoded
 * serializer"): ASCII letters, digits and * - . _ stay, a space becomes '+', every other byte
 * (UTF-8 sequences byte by byte) becomes %XX (upper-case hex). Pairs keep the order they were
 * added in; a name may repeat. */
struct sd_http_form *sd_http_form_new(void);
void sd_http_form_free(struct sd_http_form *f); /* NULL is fine; the text is wiped (secrets) */
/* Append name=value. -EINVAL if name or value is NULL or name is empty. */
int sd_http_form_add(struct sd_http_form *f, const char *name, const char *value);
/* The encoded body ("" when empty) and its length (ret_len may be NULL); valid until the next
 * add or the free. */
const char *sd_http_form_body(const struct sd_http_form *f, size_t *ret_len);

/* ---- header lines (authentication and other custom headers) -----------------------------------
 *
 * Each returns 0 with *ret a new "Name: value" line for sd_http_request.headers, or -EINVAL
 * (nothing written) if a name is not an HTTP token or a value holds a control character (CR, LF,
 * NUL, TAB, any C0 or DEL: they would split or end the header) — so a secret from a setting can
 * never inject a header. Free the line with sd_http_header_free (it wipes it: lines often hold
 * secrets). Values are never logged. */
int sd_http_header(const char *name, const char *value, char **ret);
/* "Authorization: Basic base64(user:password)"; a ':' in user is -EINVAL (RFC 7617). */
int sd_http_header_basic(const char *user, const char *password, char **ret);
/* "Authorization: Bearer <token>"; an empty token or one with a space is -EINVAL. */
int sd_http_header_bearer(const char *token, char **ret);
void sd_http_header_free(char *line); /* NULL is fine */

/* ---- tokens: a short-lived Bearer token refreshed on demand -----------------------------------
 *
 * A token cache for APIs that exchange credentials for a short-lived token (S-360: POST
 * operator + secret → {"token"}; lifetime unknown or given as expires_in). A request naming a
 * token gets "Authorization: Bearer <token>" added; the token is fetched with the connector's
 * refresh callback when there is none yet or when it expires within `margin_s` seconds. If the
 * answer is 401, the token is refreshed ONCE and the request repeated once; a second 401 is the
 * answer returned. A refresh failure fails the request with the callback's negative errno and
 * its reason in sd_http_response.error.
 *
 * refresh: write a new token (heap, the token takes it) to *ret_token and its lifetime in
 * seconds to *ret_ttl_s (0: unknown — used until a 401 says otherwise); return 0, or a negative
 * errno with the reason in error[0..error_size) (no secrets). It runs with the token's mutex held,
 * so concurrent requests wait for one refresh instead of each starting one: it must not use a
 * request that names this token.
 *
 * Thread rules: a token may be shared by any number of threads (a pull run and the outbox of
 * one instance); every operation takes its mutex. The token text is wiped when replaced. */
typedef int (*sd_http_token_refresh_fn)(void *arg, char **ret_token, int64_t *ret_ttl_s,
                                        char *error, size_t error_size);
struct sd_http_token *sd_http_token_new(sd_http_token_refresh_fn refresh, void *arg,
                                        int64_t margin_s);
void sd_http_token_free(struct sd_http_token *t); /* NULL is fine */
/* A header line "Authorization: Bearer <valid token>" (refreshing first if needed) and the
 * token's generation, to name it in sd_http_token_invalidate. Free with sd_http_header_free. */
int sd_http_token_header(struct sd_http_token *t, char **ret_line, uint64_t *ret_generation,
                         char *error, size_t error_size);
/* The server refused generation `gen` (a 401): drop it, unless another thread has already
 * replaced it, so that the next use refreshes once, not once per thread. */
void sd_http_token_invalidate(struct sd_http_token *t, uint64_t gen);
/* How many refreshes have succeeded (for status lines and tests). */
uint64_t sd_http_token_refreshes(struct sd_http_token *t);

/* A ready refresh callback for the common exchange: POST `body` (JSON, e.g. S-360's
 * {"operator","partner","secret"}) to `url` with `headers`, read the answer as a JSON object
 * and take the token from member `token_member` ("token" if NULL) and its lifetime in seconds
 * from `ttl_member` (e.g. "expires_in"; NULL or absent: unknown). arg is a struct
 * sd_http_token_json that must outlive the token. Errors: -EACCES if the exchange was refused
 * (a status the classifier rejects, e.g. 401/403: the credentials are wrong; not retried),
 * -EAGAIN if it should be tried again (408, 429, 5xx), -EPROTO if the answer holds no token,
 * or the transport's error. The error text names the status, never the body (it may hold the
 * token) nor the request (it holds the secret). */
struct sd_http_token_json {
    const char *url;
    const char *body;
    const char *const *headers; /* besides Content-Type: application/json; may be NULL */
    const char *token_member;
    const char *ttl_member;
    int64_t timeout_ms;         /* 0 = 30 s */
    const _Atomic bool *stop;   /* may be NULL */
};
int sd_http_token_refresh_json(void *arg, char **ret_token, int64_t *ret_ttl_s, char *error,
                               size_t error_size);

#endif
