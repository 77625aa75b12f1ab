/* request.h — one HTTP request as the API handlers see it, and how they answer.
 *
 * The server creates a `struct sd_req` when a request's headers are in, routes and
 * authenticates it, streams the body in under the limits, then calls the route's handler once.
 * A handler either answers at once (sd_req_reply_*), or hands work to the writer and returns
 * SD_REQ_SUSPEND after setting `on_resume`; the writer's done callback calls sd_req_resume(),
 * and the server then calls on_resume on an HTTP thread to build the answer. The request owns
 * everything hung on it; `cleanup` (if set) frees handler state when the request ends. */
#ifndef SD_SERVER_REQUEST_H
#define SD_SERVER_REQUEST_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/base.h"
#include "core/auth.h"
#include "core/hub.h"
#include "core/ratelimit.h"

#define SD_REQ_MAX_PARAMS 4
#define SD_REQ_MAX_HEADERS 8
#define SD_REQ_DONE 0
#define SD_REQ_SUSPEND 1

struct MHD_Connection;
struct sd_route;

struct sd_req {
    char request_id[33];
    int64_t start_usec; /* monotonic */
    struct sd_hub *hub;
    struct MHD_Connection *conn;
    const char *method;
    const char *path;
    const struct sd_route *route;
    size_t route_idx;
    char *params[SD_REQ_MAX_PARAMS]; /* path parameters in pattern order, valid UTF-8 */
    size_t n_params;

    bool authenticated;
    struct sd_principal who;
    bool has_ratelimit;
    struct sd_ratelimit_result ratelimit;

    struct sd_buf body;

    /* the answer */
    int status;
    char *resp_body; /* owned */
    const char *content_type;
    const char *hdr_names[SD_REQ_MAX_HEADERS];
    char *hdr_values[SD_REQ_MAX_HEADERS]; /* owned */
    size_t n_headers;

    /* asynchronous completion */
    int (*on_resume)(struct sd_req *req);
    atomic_int resumed;
    void *state;
    void (*cleanup)(struct sd_req *req);
};

/* Header value of the request (case-insensitive name), or NULL. Before any handler runs the
 * server has refused heads with a NUL byte in a header line, so the value is the whole value. */
const char *sd_req_header(struct sd_req *req, const char *name);
/* Query argument, or NULL: percent-decoded, valid UTF-8 and without NUL (checked before the
 * handler runs, like the path parameters in params[]). */
const char *sd_req_query(struct sd_req *req, const char *name);
void sd_req_add_header(struct sd_req *req, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Answer with a JSON value (reference stolen). */
void sd_req_reply_json(struct sd_req *req, int status, json_t *body);
/* Answer with JSON text already serialized (copied). */
void sd_req_reply_text(struct sd_req *req, int status, const char *content_type, const char *body);
/* {"error": code, "message": msg}; msg may quote client input (repaired to valid UTF-8). Never
 * fails. */
void sd_req_reply_error(struct sd_req *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Suspend the connection and queue job on the hub's writer; job->done must end with
 * sd_req_resume(). If the writer refuses the job, done is called at once with the error.
 * Returns SD_REQ_SUSPEND for the handler to return. */
int sd_req_submit(struct sd_req *req, struct sd_write_job *job);
/* Suspend the connection for work the handler hands to another thread itself (set on_resume
 * first; suspend before handing the work over, since it may finish at once). That thread ends
 * with sd_req_resume(). Returns SD_REQ_SUSPEND for the handler to return. */
int sd_req_suspend(struct sd_req *req);
/* Called from the writer thread (or the thread given suspended work) when it is done. */
void sd_req_resume(struct sd_req *req);

#endif
