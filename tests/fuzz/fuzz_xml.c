/* fuzz_xml.c — fuzz target for the XML feed reader: bytes → sd_xml_records with two fixed
 * XPaths, one selecting by id (attribute or child, so selections nest and overlap) and one
 * selecting the root's children. Besides "no crash, no leak, no hang" (ASan/LSan, libFuzzer's
 * timeout) it checks the function's promises and aborts when one breaks: success means an
 * array of at most SD_FEED_MAX_RECORDS objects whose values are strings, objects or arrays of
 * those, nested at most SD_FEED_MAX_DEPTH objects deep, that json_dumps can encode (valid
 * UTF-8); failure means -EINVAL, *ret untouched and a non-empty one-line UTF-8 message. */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/feed_records.h"

static void check_value(const json_t *v, int level);

/* level: objects enclosing v's members, counting v itself. */
static void check_object(const json_t *obj, int level)
{
    if (!json_is_object(obj) || level > SD_FEED_MAX_DEPTH) {
        abort();
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        if (key[0] == '\0') {
            abort();
        }
        if (strcmp(key, "#text") == 0) {
            if (!json_is_string(v) || json_string_length(v) == 0) {
                abort();
            }
            continue;
        }
        if (json_is_array(v)) {
            if (json_array_size(v) < 2) {
                abort();
            }
            size_t i;
            json_t *el;
            json_array_foreach(v, i, el)
            {
                check_value(el, level);
            }
        } else {
            check_value(v, level);
        }
    }
}

static void check_value(const json_t *v, int level)
{
    if (json_is_string(v)) {
        return;
    }
    check_object(v, level + 1);
}

static void run(const uint8_t *data, size_t size, const char *xpath)
{
    json_t *ret = (json_t *)0x1;
    char *err = NULL;
    int rc = sd_xml_records((const char *)data, size, xpath, &ret, &err);
    if (rc == 0) {
        if (err || !json_is_array(ret) || json_array_size(ret) > SD_FEED_MAX_RECORDS) {
            abort();
        }
        size_t i;
        json_t *rec;
        json_array_foreach(ret, i, rec)
        {
            check_object(rec, 1);
        }
        char *s = json_dumps(ret, JSON_COMPACT);
        if (!s) {
            abort();
        }
        free(s);
        json_decref(ret);
    } else {
        if (rc != -EINVAL || ret != (json_t *)0x1 || !err || err[0] == '\0' || strchr(err, '\n')) {
            abort();
        }
        json_t *msg = json_string(err);
        if (!msg) {
            abort();
        }
        json_decref(msg);
        free(err);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run(data, size, "//*[@id or id]");
    run(data, size, "/*/*");
    return 0;
}
