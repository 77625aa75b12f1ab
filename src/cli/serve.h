/* serve.h — the parts of `serve` that `demo` reuses: option parsing, signal set-up and the
 * serve-until-signal loop. */
#ifndef SD_CLI_SERVE_H
#define SD_CLI_SERVE_H

#include <stdbool.h>

#include "core/hub.h"
#include "server/server.h"

struct sd_serve_opts {
    const char *data;
    char host[256];
    struct sd_server_config cfg;
    unsigned segment_budget_sec; /* --segment-budget; 0: the default */
    /* Optional: called once listening, with the bound port (the demo prints its hint). */
    void (*on_listening)(const struct sd_serve_opts *o, int port, void *arg);
    void *on_listening_arg;
};

/* Parse the serve options, block SIGTERM/SIGINT (before any thread starts) and open the hub.
 * Returns -1 when the caller should go on with *ret_hub, else the exit code to return (0 after
 * --help, 2 after a usage error, 1 if the store cannot be opened). */
int sd_serve_prepare(int argc, char **argv, const char *usage, struct sd_serve_opts *o,
                     struct sd_hub **ret_hub);
/* Serve until SIGTERM/SIGINT; returns the exit code. */
int sd_serve_run(struct sd_hub *hub, struct sd_serve_opts *o);

#endif
