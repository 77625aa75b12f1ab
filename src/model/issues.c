/* issues.c — the list of errors or warnings a request collects: JSON Pointer + message,
 * capped (SD_MAX_ISSUES) so a hostile body cannot make the answer huge; `total` still counts
 * everything found. Pointers and messages quote client input (a key, a URL parameter, a file
 * name), so they are repaired to valid UTF-8 when added: every stored issue becomes a JSON
 * string, none is lost from errors[]. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/utf8.h"
#include "model/model.h"

void sd_issues_init(struct sd_issues *l, size_t limit)
{
    l->items = NULL;
    l->n = 0;
    l->cap = 0;
    l->total = 0;
    l->limit = limit;
}

void sd_issues_release(struct sd_issues *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i].pointer);
        free(l->items[i].message);
    }
    free(l->items);
    sd_issues_init(l, l->limit);
}

void sd_issues_add(struct sd_issues *l, const char *pointer, const char *fmt, ...)
{
    l->total++;
    if (l->n >= l->limit) {
        return;
    }
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 8;
        l->items = sd_realloc(l->items, l->cap * sizeof(*l->items));
    }
    va_list ap;
    va_start(ap, fmt);
    char *msg = sd_vasprintf(fmt, ap);
    va_end(ap);
    pointer = pointer ? pointer : "";
    l->items[l->n].pointer = sd_utf8_repair(pointer, strlen(pointer));
    l->items[l->n].message = sd_utf8_repair(msg, strlen(msg));
    free(msg);
    l->n++;
}

json_t *sd_issues_to_json(const struct sd_issues *l)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < l->n; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "pointer", sd_json_text(l->items[i].pointer));
        json_object_set_new(o, "message", sd_json_text(l->items[i].message));
        json_array_append_new(arr, o);
    }
    return arr;
}

json_t *sd_json_text(const char *s)
{
    s = s ? s : "";
    size_t n = strlen(s);
    if (sd_utf8_valid(s, n)) {
        return json_stringn_nocheck(s, n);
    }
    char *fixed = sd_utf8_repair(s, n);
    json_t *j = json_string_nocheck(fixed);
    free(fixed);
    return j;
}
