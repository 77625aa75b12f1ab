/* audience_push.h — the audience push's own judgement of an answer, apart so it is unit-tested
 * (the connector itself is audience_push.c).
 *
 * Thread rules: pure, reentrant. */
#ifndef SD_CONNECTORS_AUDIENCE_PUSH_H
#define SD_CONNECTORS_AUDIENCE_PUSH_H

#include <stdbool.h>

#include "http/verdict.h"

#define SD_PUSH_MAX_CUSTOMERS 1000000    /* members in one push */
#define SD_PUSH_MAX_ANSWER (1024 * 1024) /* receiver's answer read */

/* sd_http_classify, and for a 2xx: a create must be answered with a segment_id (else REJECT:
 * which remote segment was made is unknown); an update (the push named a remote_segment_id)
 * may be answered by any 2xx. transport_err: sd_http_fetch's result. */
enum sd_verdict sd_audience_push_judge(int transport_err, long status, bool has_segment_id,
                                       bool is_update);

#endif
