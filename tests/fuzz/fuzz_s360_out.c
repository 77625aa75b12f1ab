/* fuzz_s360_out.c — fuzz target for what the s360 connector's outbound half reads from S-360
 * (connectors/s360/s360_out.h): any bytes as the answer of getContactData, of
 * saveIndividualContactData or of the order calls. For input jansson parses: the verdict is
 * one of the four and an in-band failure's detail points into the answer; the update body
 * built on it is an object whose contactNumber is the one asked for and whose lastName (when a
 * body is built at all) is a non-empty string; lastUpdateDate, whatever it holds, is read or
 * refused, never misread into a crash. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "connectors/s360/s360_out.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *answer = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    const char *detail = NULL;
    enum sd_verdict v = s360_judge(0, 200, answer, &detail);
    if (v != SD_VERDICT_OK && v != SD_VERDICT_RETRY && v != SD_VERDICT_REJECT) {
        abort();
    }
    if (detail && !answer) {
        abort();
    }
    int64_t usec = 0;
    (void)s360_time_usec(json_string_value(json_object_get(answer, "lastUpdateDate")), &usec);

    json_t *customer = json_pack("{s:s, s:s, s:s, s:n, s:s}", "customer_id", "c1", "email",
                                 "a@example.ch", "last_name", "L", "first_name", "street", "S 1");
    char why[256];
    json_t *body =
        s360_contact_body(customer, answer, "0000000001", "r", "NEWSLETTER", why, sizeof(why));
    if (body) {
        const char *num = json_string_value(json_object_get(body, "contactNumber"));
        const char *last = json_string_value(
            json_object_get(json_object_get(body, "individualContact"), "lastName"));
        if (!num || strcmp(num, "0000000001") != 0 || !last || !*last) {
            abort();
        }
        char *text = json_dumps(body, JSON_COMPACT);
        free(text);
    }
    json_t *offer =
        json_pack("{s:s, s:s, s:I, s:I, s:I, s:I}", "offer_id", "act_1", "order_type", "SALE",
                  "performance_id", (json_int_t)1, "seat_category_id", (json_int_t)2,
                  "audience_sub_category_id", (json_int_t)3, "quantity", (json_int_t)1);
    json_t *order = s360_order_body(answer ? answer : offer, "1", 1001, "r");
    json_decref(order);
    json_decref(offer);
    json_decref(body);
    json_decref(customer);
    json_decref(answer);
    return 0;
}
