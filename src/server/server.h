/* server.h — the HTTP(S) front of the hub, on libmicrohttpd.
 *
 * One listening socket, a small pool of event-loop threads, and suspended connections while a
 * request waits for its group commit (so thousands of requests can wait on one fsync without a
 * thread each). Connection limits (total and per IP), an idle timeout, a deadline for the
 * request head and one for the whole request are set explicitly (server/guard.h enforces the
 * deadlines and keeps slots free for new clients). Shutdown stops accepting, lets in-flight
 * requests finish (up to a grace period) and then closes every connection. */
#ifndef SD_SERVER_SERVER_H
#define SD_SERVER_SERVER_H

#include <stdint.h>

#include "core/hub.h"
#include "server/router.h"

struct sd_server_config {
    const char *host;     /* numeric IPv4/IPv6 address or "localhost" */
    int port;             /* 0 = pick a free port */
    const char *tls_cert; /* PEM file paths; both or neither */
    const char *tls_key;
    unsigned threads; /* event-loop threads; 0 = number of CPUs */
    unsigned max_connections;
    unsigned max_per_ip;
    unsigned idle_timeout_sec;
    unsigned request_deadline_sec;
    unsigned header_timeout_sec; /* accept (or request line) to complete head; 0 = 10 */
    /* The route table (api/routes.c: sd_routes, sd_routes_count); at most
     * SD_METRICS_MAX_ROUTES entries, indexes are the metrics' route numbers. */
    const struct sd_route *routes;
    size_t n_routes;
};

#define SD_MAX_BODY_BYTES (8u * 1024 * 1024)
#define SD_MAX_RECORDS 10000u
/* A JSON body nests at most this deep and its parsed form (estimated while it streams, see
 * server/bodyscan.h) takes at most this much: a 10,000-record body of events with 20-member
 * casts estimates at about 150 MiB. */
#define SD_MAX_BODY_DEPTH 32u
#define SD_MAX_PARSED_BYTES (192u << 20)

struct sd_server;

/* Bind and start serving. *ret_port gets the bound port. Errors: negative errno with a message
 * logged (bad address, port in use, unreadable certificate). */
int sd_server_start(struct sd_hub *hub, const struct sd_server_config *cfg, struct sd_server **ret,
                    int *ret_port);
/* Stop accepting, wait up to grace_usec for in-flight requests, close all. NULL is fine. */
void sd_server_stop(struct sd_server *srv, int64_t grace_usec);

#endif
