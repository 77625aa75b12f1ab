/* json_pointer.h — RFC 6901 JSON Pointer lookup in a jansson tree.
 *
 * A pointer is "" (the whole document) or a sequence of "/token"; inside a token "~0" stands for
 * '~' and "~1" for '/', and any other '~' makes the pointer malformed. On an array a token must
 * be a decimal index without leading zeros ("0", "7", "12", never "07" or "+1"); "-" (the
 * element after the last, RFC 6901 §4) never exists for a lookup.
 *
 * Thread rules: reentrant, no global state. The tree is only read. */
#ifndef SD_JSON_POINTER_H
#define SD_JSON_POINTER_H

#include <jansson.h>
#include <stdbool.h>

/* The value `pointer` designates inside `root`, borrowed (no new reference; valid while root
 * lives), or NULL when root or pointer is NULL, the pointer is malformed, or nothing is there
 * (missing member, index out of range or not a canonical index, a step into a scalar). */
const json_t *sd_json_pointer_get(const json_t *root, const char *pointer);

/* Whether `pointer` is syntactically a JSON Pointer: NULL is not; "" is; otherwise it starts
 * with '/', every '~' is followed by '0' or '1', and the text is valid UTF-8. */
bool sd_json_pointer_valid(const char *pointer);

#endif
