/* fuzz_ats.c — fuzz target for the Archtics ATS answer parser: bytes → ats_parse_answer, then
 * every tolerant reader the connector applies to an answer's rows (ats_get, ats_get_int,
 * ats_get_text, ats_money_text, the venue-local time parser and formatter) over every member of
 * command1 and of the objects in its arrays. Besides "no crash, no leak, no hang" it checks the
 * promises and aborts when one breaks: a refused answer is -EBADMSG with a reason and no
 * document; a money text is a plain decimal; a parsed local time formats back to a text that
 * parses to the same minute. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "connectors/archtics/ats.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void probe(const json_t *obj)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v)
    {
        int64_t n;
        (void)ats_get_int(obj, k, &n);
        char *t = ats_get_text(obj, k);
        if (t) {
            int64_t local, again;
            if (ats_local_parse(t, &local) == 0) {
                /* the text keeps the minute: seconds are dropped, never rounded */
                char out[20];
                ats_local_format(local, out);
                int64_t minute = local - ((local % 60) + 60) % 60;
                if (ats_local_parse(out, &again) < 0 || again != minute) {
                    abort();
                }
            }
            free(t);
        }
        char money[40];
        if (ats_money_text(obj, k, money) == 0) {
            for (const char *p = money; *p; p++) {
                if (!((*p >= '0' && *p <= '9') || *p == '.')) {
                    abort();
                }
            }
        }
        (void)ats_get(obj, k);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 20) {
        return 0;
    }
    json_t *doc = (json_t *)(uintptr_t)1;
    int64_t result = 0, sql = 0;
    char detail[256], why[160];
    int r = ats_parse_answer((const char *)data, size, &doc, &result, &sql, detail, sizeof(detail),
                             why, sizeof(why));
    if (r < 0) {
        if (r != -EBADMSG || why[0] == '\0' || doc != (json_t *)(uintptr_t)1) {
            abort();
        }
        return 0;
    }
    (void)ats_classify_result(result, sql, detail, 1);
    const json_t *c1 = ats_get(doc, "command1");
    probe(c1);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)c1, k, v)
    {
        size_t i;
        json_t *row;
        json_array_foreach(v, i, row)
        {
            probe(row);
        }
        if (json_is_object(v)) {
            probe(v);
        }
    }
    json_decref(doc);
    return 0;
}
