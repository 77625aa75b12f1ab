/* client.h — outgoing HTTP(S) and SFTP requests (libcurl), for connectors that fetch (feeds,
 * REST pull, SFTP pull) and, later, deliver. One call is one request with hard limits: a
 * total timeout, a connect timeout and a cap on the answer's size, so a slow or hostile remote
 * can never hold a connector or its memory forever. Redirects are not followed (a feed that
 * moved is a configuration to fix, and following could leak the Authorization header).
 *
 * Thread rules: any thread; no shared state besides libcurl's global init (done once). */
#ifndef SD_HTTP_CLIENT_H
#define SD_HTTP_CLIENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

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

/* Retries (seed §6): 429 and 503 wait for Retry-After (bounded by max_wait_s; a 429 without
 * one waits the back-off) and 429 does not use up an attempt (up to 20 waits); other 5xx,
 * timeouts and connection errors retry with exponential back-off and "equal jitter" (a wait
 * between half and all of the current back-off, so gaps always grow), from initial_ms doubling
 * up to max_wait_s, at most max_attempts attempts in all. Anything else (2xx, 3xx, other 4xx,
 * -EFBIG) is returned at once. `stop` (may be NULL) cuts waits short AND aborts a transfer in
 * flight within about a second: then -ECANCELED. *ret_attempts (may be NULL) says how many
 * requests were made. */
struct sd_http_retry {
    int max_attempts;   /* 0 = 6 */
    int64_t initial_ms; /* 0 = 1000 */
    int64_t max_wait_s; /* 0 = 300 */
    const _Atomic bool *stop;
};
int sd_http_fetch_retry(const struct sd_http_request *rq, const struct sd_http_retry *policy,
                        struct sd_http_response *ret, int *ret_attempts);

/* s percent-encoded for one path segment of a URL (RFC 3986: unreserved characters stay),
 * e.g. "Sales Export #2.csv" → "Sales%20Export%20%232.csv". New string. */
char *sd_http_url_escape(const char *s);

/* Retry-After as seconds (delta-seconds or an HTTP-date), clamped to [0, max_s]; -1 if
 * absent or unreadable. */
int64_t sd_http_retry_after(const char *value, int64_t max_s);

#endif
