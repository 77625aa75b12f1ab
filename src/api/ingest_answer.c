/* ingest_answer.c — see ingest_answer.h. */
#include "api/ingest_answer.h"

#include <stdint.h>
#include <string.h>

#include "base/base.h"
#include "base/fmt.h"

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
    if (!request_id || !plain_id(request_id) || strlen(request_id) > 128) {
        return NULL;
    }
    /* Written without printf (base/fmt.h); the counts as json_pack's json_int_t has them. */
    char text[384]; /* 283 bytes at most: a 128-byte id and three 20-digit counts */
    struct sd_line l;
    sd_line_init(&l, text, sizeof(text));
    sd_line_puts(&l, "{\"status\":\"queued\",\"request_id\":\"");
    sd_line_puts(&l, request_id);
    sd_line_puts(&l, "\",\"accepted\":{\"events\":");
    sd_line_i64(&l, (int64_t)n_events);
    sd_line_puts(&l, ",\"customers\":");
    sd_line_i64(&l, (int64_t)n_customers);
    sd_line_puts(&l, ",\"sales\":");
    sd_line_i64(&l, (int64_t)n_sales);
    sd_line_puts(&l, "},\"warnings\":[]}");
    return l.cut ? NULL : sd_strdup(text);
}
