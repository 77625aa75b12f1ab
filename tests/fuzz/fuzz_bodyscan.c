/* fuzz_bodyscan.c — fuzz target for the streaming body scanner (server/bodyscan.h). For any
 * input: the figures do not depend on how the body is cut into chunks. For input jansson
 * accepts as the server parses it (repeated member names refused): the scanner's records,
 * nesting and parsed-size estimate are exactly those of the tree (objects at level 3, the
 * deepest container, the weights of every node plus the bytes), so a body cannot look smaller
 * to the limit than it is to the parser. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/bodyscan.h"

struct tally {
    size_t records;
    int max_depth;
    uint64_t cost;
};

static void walk(const json_t *v, int level, struct tally *t)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        if (level == 3) {
            t->records++;
        }
        t->max_depth = level > t->max_depth ? level : t->max_depth;
        t->cost += SD_SCAN_COST_OBJECT;
        const char *key;
        json_t *m;
        json_object_foreach((json_t *)v, key, m)
        {
            (void)key;
            t->cost += SD_SCAN_COST_STRING; /* the member name */
            walk(m, level + 1, t);
        }
        break;
    }
    case JSON_ARRAY: {
        t->max_depth = level > t->max_depth ? level : t->max_depth;
        t->cost += SD_SCAN_COST_ARRAY;
        size_t i;
        json_t *m;
        json_array_foreach(v, i, m)
        {
            walk(m, level + 1, t);
        }
        break;
    }
    case JSON_STRING: t->cost += SD_SCAN_COST_STRING; break;
    case JSON_INTEGER:
    case JSON_REAL: t->cost += SD_SCAN_COST_NUMBER; break;
    default: t->cost += SD_SCAN_COST_LITERAL; break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    struct sd_body_scan whole, cut;
    sd_body_scan_init(&whole);
    sd_body_scan_feed(&whole, text, size);
    sd_body_scan_init(&cut);
    size_t step = size ? 1 + data[0] % 7 : 1;
    for (size_t at = 0; at < size; at += step) {
        sd_body_scan_feed(&cut, text + at, size - at < step ? size - at : step);
    }
    if (whole.records != cut.records || whole.max_depth != cut.max_depth ||
        whole.parsed_bytes != cut.parsed_bytes || whole.depth != cut.depth) {
        abort();
    }
    json_t *v =
        json_loadb(text, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
    if (!v) {
        return 0;
    }
    struct tally t = {0};
    walk(v, 1, &t);
    json_decref(v);
    if (whole.records != t.records || whole.max_depth != t.max_depth ||
        whole.parsed_bytes != t.cost + size || whole.depth != 0 || whole.in_string) {
        abort();
    }
    return 0;
}
