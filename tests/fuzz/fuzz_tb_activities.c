/* fuzz_tb_activities.c — fuzz target for the Tradable Bits activities page reader: the
 * aggregation per fan (tb_act_aggregate) and the customer record each fan's figures become
 * (tb_act_record), through the fan structure's shaping (tb_shape_fan). The input is a JSON
 * object {"after": id, "data": [activities…], "stored": {customer…}}: the page as the API
 * answers it and, for every fan, the record the store holds (or none when "stored" is absent).
 * For any input: the reader either refuses the page for its ids (-EPROTO) or accounts for every
 * activity (orphans plus the fans' counts), and the cursor moves to the page's last id; every
 * record is an object whose activity_count is at least the page's count for the fan, whose
 * last_activity_at (when set) is UTC "YYYY-MM-DDTHH:MM:SSZ", and which never turns a stored
 * opt-out (ad_opt_out true) into an opt-in. */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "connectors/tradablebits/tradablebits.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *doc = json_loadb((const char *)data, size, 0, NULL);
    if (!json_is_object(doc)) {
        json_decref(doc);
        return 0;
    }
    const json_t *page = json_object_get(doc, "data");
    const json_t *stored = json_object_get(doc, "stored");
    if (!json_is_object(stored)) {
        stored = NULL;
    }
    const json_t *a0 = json_object_get(doc, "after");
    int64_t after = json_is_integer(a0) ? json_integer_value(a0) : -1;
    int64_t before = after;
    struct tb_act_page pg;
    size_t bad = 0;
    int r = tb_act_aggregate(page, &after, &pg, &bad);
    if (r != 0 && r != -EPROTO) {
        abort();
    }
    if (r == 0) {
        size_t n = json_array_size(page);
        uint64_t sum = pg.orphans;
        for (size_t i = 0; i < pg.n_fans; i++) {
            sum += (uint64_t)pg.fans[i].n;
        }
        if (sum != n || (n > 0 && after <= before) || (n == 0 && after != before)) {
            abort();
        }
        for (size_t i = 0; i < pg.n_fans; i++) {
            struct tb_act_fan *a = &pg.fans[i];
            if (a->n < 1 || !json_is_string(a->fan_id)) {
                abort();
            }
            if (a->fan) {
                a->fan_rec = tb_shape_fan(a->fan);
            }
            const char *why = NULL;
            json_t *rec = tb_act_record(a, json_string_value(a->fan_id), stored, &why);
            if (!rec) {
                if (!why || stored) {
                    abort();
                }
                continue;
            }
            const json_t *c = json_object_get(rec, "activity_count");
            if (!json_is_object(rec) || !json_is_integer(c) || json_integer_value(c) < a->n) {
                abort();
            }
            const char *at = json_string_value(json_object_get(rec, "last_activity_at"));
            if (at && (strlen(at) != 20 || at[10] != 'T' || at[19] != 'Z')) {
                abort();
            }
            if (stored && json_is_true(json_object_get(stored, "ad_opt_out")) &&
                json_is_false(json_object_get(rec, "ad_opt_out"))) {
                abort();
            }
            json_decref(rec);
        }
    } else if (bad >= json_array_size(page)) {
        abort();
    }
    tb_act_page_release(&pg);
    json_decref(doc);
    return 0;
}
