/* verdict.c — the one HTTP status classifier (see verdict.h for the table). */
#include "http/verdict.h"

#include <errno.h>

enum sd_verdict sd_http_classify(int transport_err, long status)
{
    if (transport_err < 0) {
        switch (transport_err) {
        case -EFBIG:       /* an answer we cannot read: its meaning is unknown */
        case -ENETUNREACH: /* the egress policy refuses every address: a configuration */
        case -EPERM:
        case -EACCES: /* an SFTP login refused: the credentials are wrong */
        case -ENOENT: /* an SFTP file that is not there */
        case -ECANCELED:
        case -EINVAL:
            return SD_VERDICT_REJECT;
        default:
            return SD_VERDICT_RETRY; /* timeout, refused, reset, DNS, TLS */
        }
    }
    if (status >= 200 && status < 300) {
        return SD_VERDICT_OK;
    }
    if (status == 429 || status == 509) {
        return SD_VERDICT_WAIT;
    }
    if (status == 408 || (status >= 500 && status < 600)) {
        return SD_VERDICT_RETRY;
    }
    return SD_VERDICT_REJECT;
}

const char *sd_verdict_name(enum sd_verdict v)
{
    switch (v) {
    case SD_VERDICT_OK:
        return "ok";
    case SD_VERDICT_RETRY:
        return "retry";
    case SD_VERDICT_WAIT:
        return "wait";
    case SD_VERDICT_REJECT:
        return "reject";
    }
    return "unknown";
}
