/* serve.h — the parts of `serve` that `demo` reuses: option parsing, signal set-up and the
 * serve-until-signal loop. */
#ifndef SD_CLI_SERVE_H
#define SD_CLI_SERVE_H

#include <stdbool.h>

#include "core/hub.h"
#include "http/server.h"

struct sd_serve_opts {
    const char *data;
    char host[256];
    struct sd_server_config cfg;
    /* Optional: called once listening, with the bound port (the demo prints its hint). */
    void (*on_listening)(const struct sd_serve_opts *o, int port, void *arg);
    void *on_listening_arg;
};

/* 0 ok (or *ret_help after printing usage), -1 after a usage error was printed. */
int sd_serve_parse(int argc, char **argv, const char *usage, struct sd_serve_opts *o,
                   bool *ret_help);
/* Block SIGTERM/SIGINT in this and every later thread; ignore SIGPIPE. Call before threads. */
void sd_serve_block_signals(void);
/* Serve until SIGTERM/SIGINT; returns the exit code. */
int sd_serve_run(struct sd_hub *hub, struct sd_serve_opts *o);

#endif
