/* issues.c — the list of errors or warnings a request collects: JSON Pointer + message,
 * capped (SD_MAX_ISSUES) so a hostile body cannot make the answer huge; `total` still counts
 * everything found. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/base.h"
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
    l->items[l->n].pointer = sd_strdup(pointer ? pointer : "");
    l->items[l->n].message = msg;
    l->n++;
}

json_t *sd_issues_to_json(const struct sd_issues *l)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < l->n; i++) {
        json_array_append_new(arr, json_pack("{s:s, s:s}", "pointer", l->items[i].pointer,
                                             "message", l->items[i].message));
    }
    return arr;
}
