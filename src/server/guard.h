/* guard.h — deadlines and free slots for the HTTP server's connections.
 *
 * libmicrohttpd's connection timeout is an idle timeout: a client that trickles one header line
 * every few seconds is never cut off, and enough such clients hold every connection slot. The
 * guard keeps a table of the open connections with the phase each one is in and the time by
 * which that phase must end:
 *   head     accepted (or a kept-alive connection whose next request line has arrived): the
 *            request head must be complete within head_usec of the accept (of the request line)
 *   request  headers in: the body must be read and the answer sent within request_usec, not
 *            counting the time the hub itself works on the request (hold)
 *   hold     a handler runs or the request waits for the writer: no deadline
 *   idle     kept alive after an answer: the next request line must arrive within idle_usec
 * A watchdog thread closes connections past their deadline. And the guard keeps a reserve of a
 * tenth of each connection limit (total, and per client address) free: past it, the oldest
 * connection in the head or idle phase is closed, or failing that the oldest that has been in
 * a request for longer than the head deadline (a slow body, or a client not reading its
 * answer). An accept enforces the reserve at once for the new connection's address and the
 * total; each sweep enforces it for every address (libmicrohttpd refuses a connection at its
 * limit without telling the guard).
 *
 * Closing means shutdown(fd, SHUT_RDWR): libmicrohttpd sees end-of-file on its next poll and
 * closes the connection itself. The table only ever touches the fd of a connection that is
 * still registered, under its lock, and the server removes a connection (in libmicrohttpd's
 * CLOSED notification) before libmicrohttpd closes the fd, so a reused fd number is never hit.
 *
 * Thread rules: every function may be called from any thread; struct sd_guard_conn is opaque
 * and owned by the guard from _add to _remove. */
#ifndef SD_SERVER_GUARD_H
#define SD_SERVER_GUARD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct sd_guard_config {
    unsigned max_connections; /* the server's limits; 0 = no limit of that kind */
    unsigned max_per_ip;
    int64_t head_usec;
    int64_t request_usec;
    int64_t idle_usec;
    bool no_thread; /* tests: no watchdog thread, sweeps only through sd_guard_sweep() */
};

struct sd_guard;
struct sd_guard_conn;

/* The counts of connections the guard closed (since the last sweep, or in one sweep). */
struct sd_guard_closed {
    unsigned head, request, idle; /* past their deadline */
    unsigned evicted;             /* to keep a slot free for a new connection */
};

/* Starts the watchdog thread (a sweep every 250 ms, logging what it closed). Errors: negative
 * errno. */
int sd_guard_new(const struct sd_guard_config *cfg, struct sd_guard **ret);
/* Stops the watchdog; connections still registered are forgotten, not closed. NULL is fine. */
void sd_guard_free(struct sd_guard *g);

/* A connection was accepted: registered in the head phase. May close older connections (see
 * above). addr may be NULL (then it counts only against the total). */
struct sd_guard_conn *sd_guard_add(struct sd_guard *g, int fd, const struct sockaddr *addr);
/* The connection is closing: forget it. Before its fd is closed. NULL is fine. */
void sd_guard_remove(struct sd_guard *g, struct sd_guard_conn *c);

/* Phase changes (NULL c is ignored). */
void sd_guard_request_line(struct sd_guard *g, struct sd_guard_conn *c); /* idle -> head */
void sd_guard_request(struct sd_guard *g, struct sd_guard_conn *c);      /* head -> request */
void sd_guard_hold(struct sd_guard *g, struct sd_guard_conn *c);         /* request -> hold */
void sd_guard_unhold(struct sd_guard *g, struct sd_guard_conn *c);       /* hold -> request, the
                                                                          * time held not counted */
void sd_guard_idle(struct sd_guard *g, struct sd_guard_conn *c);         /* answer sent -> idle */

/* One watchdog pass as if the time were now_usec (the thread calls it with sd_mono_usec()):
 * closes the connections past their deadline, then enforces the reserve. *ret gets what this
 * pass closed plus the evictions since the previous pass. */
void sd_guard_sweep(struct sd_guard *g, int64_t now_usec, struct sd_guard_closed *ret);

#endif
