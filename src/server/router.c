/* router.c — matches a request path against the route table (src/api/routes.c). Paths are
 * split on '/'; a `{param}` segment matches any non-empty segment. The table is small, so a
 * linear scan is cheaper than any index. */
#include "server/router.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

/* Match one pattern; params captured on success. */
static bool match(const char *pattern, const char *path, char **params, size_t *n_params)
{
    size_t n = 0;
    const char *p = pattern, *s = path;
    while (*p && *s) {
        if (*p != '/' || *s != '/') {
            goto fail;
        }
        p++;
        s++;
        const char *pe = strchr(p, '/');
        const char *se = strchr(s, '/');
        size_t pl = pe ? (size_t)(pe - p) : strlen(p);
        size_t sl = se ? (size_t)(se - s) : strlen(s);
        if (pl >= 2 && p[0] == '{' && p[pl - 1] == '}') {
            if (sl == 0 || n >= SD_REQ_MAX_PARAMS) {
                goto fail;
            }
            params[n++] = sd_strndup(s, sl);
        } else if (pl != sl || memcmp(p, s, pl) != 0) {
            goto fail;
        }
        p += pl;
        s += sl;
    }
    if (*p || *s) {
        goto fail;
    }
    *n_params = n;
    return true;
fail:
    for (size_t i = 0; i < n; i++) {
        free(params[i]);
        params[i] = NULL;
    }
    return false;
}

enum sd_route_match sd_route_find(const struct sd_route *routes, size_t n_routes,
                                  const char *method, const char *path, size_t *ret_idx,
                                  char **params, size_t *ret_n_params, char *allow, size_t allow_sz)
{
    bool path_seen = false;
    size_t used = 0;
    if (allow_sz) {
        allow[0] = '\0';
    }
    for (size_t i = 0; i < n_routes; i++) {
        char *tmp[SD_REQ_MAX_PARAMS] = {0};
        size_t nt = 0;
        if (!match(routes[i].pattern, path, tmp, &nt)) {
            continue;
        }
        if (strcmp(routes[i].method, method) == 0) {
            for (size_t k = 0; k < nt; k++) {
                params[k] = tmp[k];
            }
            *ret_n_params = nt;
            *ret_idx = i;
            return SD_ROUTE_FOUND;
        }
        for (size_t k = 0; k < nt; k++) {
            free(tmp[k]);
        }
        path_seen = true;
        int w =
            snprintf(allow + used, allow_sz - used, "%s%s", used ? ", " : "", routes[i].method);
        if (w > 0 && (size_t)w < allow_sz - used) {
            used += (size_t)w;
        }
    }
    return path_seen ? SD_ROUTE_NO_METHOD : SD_ROUTE_NO_PATH;
}
