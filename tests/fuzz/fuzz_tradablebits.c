/* fuzz_tradablebits.c — fuzz target for the Tradable Bits bulk ticket answer reader
 * (tb_bulk_answer_parse) and the ticket builder it answers for. The first byte picks how many
 * tickets the call carried (1–100); the rest is the answer. For any input: the reader never
 * fails on anything but "not {"data": [...]}", every row it returns is one of the four
 * outcomes, a ticket id is never empty, a row text is JSON, and a call whose answer cannot be
 * read leaves every row MISSING (so the whole batch is retried, never half-delivered). An
 * answer that is a JSON object is also read as {"sale", "customer", "event"} and turned into
 * a ticket and its form body. */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "connectors/tradablebits/tradablebits.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    size_t n = 1 + data[0] % TB_BULK_MAX;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    struct tb_row rows[TB_BULK_MAX];
    char why[160];
    int r = tb_bulk_answer_parse(body, len, rows, n, why, sizeof(why));
    if (r != 0 && r != -EPROTO) {
        abort();
    }
    for (size_t i = 0; i < n; i++) {
        if (rows[i].outcome > TB_ROW_ERROR) {
            abort();
        }
        if (r != 0 && (rows[i].outcome != TB_ROW_MISSING || rows[i].text)) {
            abort();
        }
        if (rows[i].ticket_id && !rows[i].ticket_id[0]) {
            abort();
        }
        if (rows[i].text) {
            json_t *t = json_loads(rows[i].text, 0, NULL);
            if (!t) {
                abort();
            }
            json_decref(t);
        }
    }
    tb_rows_release(rows, n);

    json_t *doc = json_loadb(body, len, 0, NULL);
    if (json_is_object(doc)) {
        json_t *t = tb_ticket_from_sale(json_string_value(json_object_get(doc, "source")),
                                        json_object_get(doc, "sale"),
                                        json_object_get(doc, "customer"),
                                        json_object_get(doc, "event"));
        if (t) {
            if (!json_is_string(json_object_get(t, "ticket_key"))) {
                abort();
            }
            size_t blen = 0;
            char *form = tb_bulk_body("tickets", &t, 1, &blen);
            if (!form || blen == 0 || strncmp(form, "tickets=", 8) != 0) {
                abort();
            }
            free(form);
            json_decref(t);
        }
    }
    json_decref(doc);
    return 0;
}
