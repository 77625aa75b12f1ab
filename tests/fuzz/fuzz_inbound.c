/* fuzz_inbound.c — fuzz target for a vendor webhook payload as a door receives it: split into
 * objects, each unwrapped (record_pointer), mapped and validated (core/inbound.c's prepare; the
 * store is not involved).
 *
 * Input: one byte choosing the instance (kind, record_pointer, limits), then the body. Besides
 * "no crash, no leak" (ASan/LSan) it checks what the door relies on and aborts when one breaks:
 *  - prepare answers 0, or -E2BIG with a reason, for any body; never anything else;
 *  - a body over the door's byte limit is refused; under it, a JSON array has one object per
 *    element (unless over the object limit: refused), anything else exactly one;
 *  - every quarantine reason is non-empty, valid UTF-8 without NUL, at most 480 bytes: it is
 *    stored as text and returned in JSON;
 *  - an object reported as mapped has no reason; the outcome counters start at zero. */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "core/inbound.h"

static const struct {
    const char *settings;
    const char *mapping;
} confs[] = {
    {"{\"kind\":\"customers\",\"max_objects\":50,\"max_body_kib\":64}",
     "{\"fields\":{\"contactNumber\":\"customer_id\",\"mail\":\"email\"},\"unmapped\":\"drop\"}"},
    {"{\"kind\":\"sales\",\"record_pointer\":\"/orderDetailsData\",\"max_objects\":5}",
     "{\"fields\":{\"orderId\":\"invoice_number\",\"contactReference\":\"customer_id\"},"
     "\"constants\":{\"currency\":\"EUR\"}}"},
    {"{\"kind\":\"events\",\"max_objects\":10000,\"max_body_kib\":1}", "{}"},
    {"{\"kind\":\"customers\",\"record_pointer\":\"/a~1b/0\"}", "{}"},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    size_t which = data[0] % (sizeof(confs) / sizeof(confs[0]));
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    struct sd_connector_conf conf = {
        .id = "con_0123456789abcdef",
        .tenant_id = 1,
        .env = SD_ENV_TEST,
        .type = "webhook_in",
        .schedule = "manual",
        .settings = (char *)confs[which].settings,
        .mapping = (char *)confs[which].mapping,
    };
    json_t *s = json_loads(confs[which].settings, 0, NULL);
    json_t *mo = json_object_get(s, "max_objects");
    size_t max_objects = mo ? (size_t)json_integer_value(mo) : 500; /* the setting's default */
    json_t *kib = json_object_get(s, "max_body_kib");
    size_t max_bytes = kib ? (size_t)json_integer_value(kib) * 1024 : 4096 * 1024;
    json_decref(s);

    struct sd_inbound_payload *p = NULL;
    const char *why = NULL;
    int r = sd_inbound_prepare(&conf, body, len, json_object(), 1000000, &p, &why);
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
    if (r == -E2BIG) {
        bool big = len > max_bytes;
        bool many = json_is_array(root) && json_array_size(root) > max_objects;
        if (!why || !*why || !(big || many)) {
            abort();
        }
        json_decref(root);
        return 0;
    }
    if (r != 0 || !p || len > max_bytes) {
        abort();
    }
    size_t n = sd_inbound_payload_count(p);
    size_t want = json_is_array(root) ? json_array_size(root) : 1;
    if (json_is_array(root) && want > max_objects) {
        abort();
    }
    /* a broken mapping would quarantine the payload as a whole; these mappings are valid */
    if (n != want) {
        abort();
    }
    for (size_t i = 0; i < n; i++) {
        const char *reason = sd_inbound_payload_reason(p, i);
        if (reason &&
            (!*reason || strlen(reason) > 480 || !sd_utf8_valid(reason, strlen(reason)))) {
            abort();
        }
    }
    const struct sd_inbound_outcome *o = sd_inbound_payload_outcome(p);
    if (o->applied || o->quarantined || o->duplicate) {
        abort();
    }
    sd_inbound_payload_free(p);
    json_decref(root);
    return 0;
}
