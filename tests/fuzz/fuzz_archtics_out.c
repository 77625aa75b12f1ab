/* fuzz_archtics_out.c — fuzz target for customers out to Archtics: a customer_query answer (the
 * server's command1, outside input) merged with stagedoor's fields into a customer_update, and
 * a stored customer record turned into Archtics fields.
 *
 * Input: JSON text, used both as the answer's command1 and as a customer record. Besides "no
 * crash, no leak" (ASan/LSan) it checks the module's promises and aborts when one breaks:
 *  - archtics_out_fields: 0 with an object of strings each within its field's width, or
 *    -EMSGSIZE with a reason and nothing returned;
 *  - archtics_out_update_params: NULL with a reason, or params whose `customer` holds every
 *    writable field as a string (never name_type) and whose other_info_1..20 are strings at
 *    command1 level; the result encodes to JSON. */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "connectors/archtics/archtics_out.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *in = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    if (!in) {
        return 0;
    }
    char why[320];
    json_t *fields = NULL;
    why[0] = '\0';
    int r = archtics_out_fields(in, &fields, why, sizeof(why));
    if (r == 0) {
        const char *k;
        json_t *v;
        json_object_foreach(fields, k, v)
        {
            int w = archtics_field_width(k);
            if (!json_is_string(v) || w <= 0 ||
                archtics_char_count(json_string_value(v)) > (size_t)w) {
                abort();
            }
        }
    } else if (r != -EMSGSIZE || fields || !why[0]) {
        abort();
    }
    why[0] = '\0';
    json_t *p = archtics_out_update_params(in, fields, 100001, "SDHUB", "C-1", why, sizeof(why));
    if (!p) {
        if (!why[0]) {
            abort();
        }
    } else {
        const json_t *c = json_object_get(p, "customer");
        for (const struct archtics_width *w = archtics_customer_widths; w->field; w++) {
            if (!json_is_string(json_object_get(c, w->field))) {
                abort();
            }
        }
        if (json_object_get(c, "name_type") || json_object_get(c, "other_info_1") ||
            !json_is_string(json_object_get(p, "other_info_1")) ||
            !json_is_string(json_object_get(p, "other_info_20"))) {
            abort();
        }
        char *text = json_dumps(p, JSON_COMPACT);
        if (!text) {
            abort();
        }
        free(text);
    }
    json_decref(p);
    json_decref(fields);
    json_decref(in);
    return 0;
}
