/* ingest_answer.c — see ingest_answer.h. */
#include "api/ingest_answer.h"

#include <stdio.h>

#include "base/base.h"

/* Characters json_dumps writes as they are (no escape, no multi-byte sequence). */
static bool plain_id(const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch < 0x20 || ch >= 0x7F || ch == '"' || ch == '\\') {
            return false;
        }
    }
    return true;
}

char *sd_ingest_accepted_text(const char *request_id, size_t n_events, size_t n_customers,
                              size_t n_sales)
{
    if (!request_id || !plain_id(request_id)) {
        return NULL;
    }
    struct sd_buf b;
    sd_buf_init(&b);
    sd_buf_printf(&b,
                  "{\"status\":\"queued\",\"request_id\":\"%s\",\"accepted\":{\"events\":%zu,"
                  "\"customers\":%zu,\"sales\":%zu},\"warnings\":[]}",
                  request_id, n_events, n_customers, n_sales);
    return sd_buf_steal(&b);
}
