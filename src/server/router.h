/* router.h — matching a request against a route table (api/routes.c holds the one table). Patterns are literal segments and `{name}` parameters
 * ("/v1/{client_id}/events/{id}"); a path that matches a pattern under another method is a 405
 * with `Allow`, anything else a JSON 404. Flags say what the server checks before the handler
 * runs, so handlers never repeat authentication, rate limiting or body limits. */
#ifndef SD_SERVER_ROUTER_H
#define SD_SERVER_ROUTER_H

#include <stddef.h>

#include "server/request.h"

enum {
    SD_ROUTE_TENANT = 1 << 0,    /* first param is client_id; Bearer key of that tenant required */
    SD_ROUTE_JSON_BODY = 1 << 1, /* Content-Type application/json; body read under limits */
    SD_ROUTE_RATE_LIMITED = 1 << 2, /* takes a token from the tenant+env bucket */
    SD_ROUTE_ADMIN = 1 << 3,        /* Bearer admin token (DATA/admin.token) required */
};

struct sd_route {
    const char *method;
    const char *pattern;
    const char *name; /* for metrics and logs */
    unsigned flags;
    int (*handler)(struct sd_req *req);
};


enum sd_route_match { SD_ROUTE_FOUND, SD_ROUTE_NO_PATH, SD_ROUTE_NO_METHOD };

/* Find the route for method+path in routes[0..n_routes) (the table is the caller's: the server
 * is given it, it never reaches up into api/). On FOUND fills *ret_idx and params (heap strings, caller
 * frees). On NO_METHOD writes the allowed methods ("GET, PUT") into allow. */
enum sd_route_match sd_route_find(const struct sd_route *routes, size_t n_routes,
                                  const char *method, const char *path, size_t *ret_idx,
                                  char **params, size_t *ret_n_params, char *allow,
                                  size_t allow_sz);

#endif
