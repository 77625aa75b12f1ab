/* verdict.h — what an HTTP exchange with a remote system means for the caller: done, try again
 * later (the attempt counts), wait as told (flow control: the attempt is given back), or give
 * up (sending the same request again cannot help). One classifier for every pull and every
 * push, so the two never disagree on a status (408 is a retry for both).
 *
 *   OK      2xx
 *   WAIT    429 and 509 (the remote's rate or bandwidth limit): wait for Retry-After
 *   RETRY   408, every other 5xx, and transport failures (timeout, refused, reset, DNS, TLS)
 *   REJECT  1xx, 3xx (redirects are not followed), every other 4xx, an answer too large to
 *           read (-EFBIG), an address the egress policy refuses (-ENETUNREACH), an SFTP
 *           command the server refused (-EPERM), an SFTP login refused (-EACCES) or file
 *           missing (-ENOENT), a cancelled exchange (-ECANCELED)
 *
 * A connector may judge a 2xx answer further (a business error inside a 200) and return REJECT
 * or RETRY itself; this is the default for the transport.
 *
 * Thread rules: pure, reentrant. */
#ifndef SD_HTTP_VERDICT_H
#define SD_HTTP_VERDICT_H

enum sd_verdict {
    SD_VERDICT_OK = 0,
    SD_VERDICT_RETRY = 1,
    SD_VERDICT_WAIT = 2,
    SD_VERDICT_REJECT = 3,
};

/* transport_err: 0 if an answer arrived (then status counts), else sd_http_fetch's negative
 * errno. */
enum sd_verdict sd_http_classify(int transport_err, long status);

/* "ok", "retry", "wait", "reject". */
const char *sd_verdict_name(enum sd_verdict v);

#endif
