/* inbound.c — vendor webhook doors (POST /in/{connector_id}/{token}) and their admin side:
 * the quarantine list, replay, and token rotation. core/inbound.h holds the rules.
 *
 * Order of decisions at a door: the door's checks (token, credential, peer address) → 404
 * not_found, the same answer the router gives an unknown path, whatever failed; the door's
 * limits → 413; then the writer stores the body raw and applies it in one transaction, and only
 * after that commit the answer is 200. A store failure is 503 with Retry-After, so the vendor
 * resends (it does, every M minutes, 12 times). Every answer other than 200 from a known door
 * is counted by connector and logged: the vendor drops a payload after its last resend. */
#include <errno.h>
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "base/fault.h"
#include "base/log.h"
#include "core/alerts.h"
#include "core/connector_config.h"
#include "core/inbound.h"
#include "core/quality.h"
#include "store/inbound.h"

struct door {
    struct sd_write_job job;
    struct sd_req *req;
    struct sd_inbound_payload *payload;
    char *connector_id;
    char *stream; /* the admitted stream, or NULL (plain door) */
    int result;
};

static void door_cleanup(struct sd_req *req)
{
    struct door *d = req->state;
    sd_inbound_payload_free(d->payload);
    free(d->connector_id);
    free(d->stream);
    free(d);
    req->state = NULL;
}

static const char *header_of(void *arg, const char *name)
{
    return sd_req_header(arg, name);
}

static const struct sockaddr *peer_of(struct sd_req *req)
{
    const union MHD_ConnectionInfo *ci =
        req->conn ? MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS) : NULL;
    return ci ? ci->client_addr : NULL;
}

/* The headers worth keeping with a payload (never credentials), and the peer address. */
static json_t *kept_headers(struct sd_req *req)
{
    static const char *const names[] = {"Content-Type", "User-Agent", "X-Forwarded-For",
                                        "X-Request-Id", "Content-Length"};
    json_t *h = json_object();
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *v = sd_req_header(req, names[i]);
        if (v) {
            json_object_set_new(h, names[i], sd_json_text(v));
        }
    }
    const struct sockaddr *sa = peer_of(req);
    char addr[INET6_ADDRSTRLEN] = "";
    if (sa && sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, addr, sizeof(addr));
    } else if (sa && sa->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, addr, sizeof(addr));
    }
    if (*addr) {
        json_object_set_new(h, "peer", json_string(addr));
    }
    return h;
}

static void door_done(struct sd_write_job *job, int result)
{
    struct door *d = job->arg;
    d->result = result;
    sd_req_resume(d->req);
}

static int door_run(struct sd_store_handle *st, struct sd_write_job *job)
{
    struct door *d = job->arg;
    return sd_inbound_store_run(st, d->payload);
}

static void refuse_unavailable(struct sd_req *req, const char *connector_id, const char *stream,
                               int err)
{
    sd_log(SD_LOG_ERROR, "inbound payload not stored", "request_id=%s " SD_LOG_ERR_FMT,
           req->request_id, SD_LOG_ERR_ARGS(err));
    sd_req_add_header(req, "Retry-After", "%d", SD_API_STORAGE_RETRY_S);
    sd_req_reply_error(req, 503, "storage_unavailable",
                       "the payload could not be stored; nothing was kept. Send it again");
    sd_inbound_count_non200_stream(connector_id, stream, 503);
    if (strcmp(connector_id, "other") != 0) {
        sd_alerts_inbound_answer(req->hub, connector_id, 503);
    }
}

static int door_resume(struct sd_req *req)
{
    struct door *d = req->state;
    if (d->result < 0) {
        refuse_unavailable(req, d->connector_id, d->stream, d->result);
        return SD_REQ_DONE;
    }
    if (sd_fault_hit("inbound_after_commit")) {
        sd_log_flush();
        _exit(137); /* test hook: a crash between the commit and the answer */
    }
    const struct sd_inbound_outcome *o = sd_inbound_payload_outcome(d->payload);
    sd_inbound_count_stream(d->connector_id, d->stream, o);
    json_t *answer = json_pack("{s:s, s:I, s:b, s:I, s:I, s:I}", "status", "stored", "payload_id",
                               (json_int_t)o->raw_id, "duplicate", o->duplicate, "objects",
                               (json_int_t)o->objects, "applied", (json_int_t)o->applied,
                               "quarantined", (json_int_t)o->quarantined);
    if (o->skipped > 0) {
        json_object_set_new(answer, "skipped", json_integer((json_int_t)o->skipped));
    }
    sd_req_reply_json(req, 200, answer);
    sd_alerts_inbound_answer(req->hub, d->connector_id, 200);
    return SD_REQ_DONE;
}

/* POST /in/{connector_id}/{token}, …/{stream} and …/{scope}/{stream}. */
int sd_api_inbound_receive(struct sd_req *req)
{
    struct sd_inbound_request rq = {
        .connector_id = req->params[0],
        .token = req->params[1],
        .header = header_of,
        .header_arg = req,
        .peer = peer_of(req),
        .scope = req->n_params == 4 ? req->params[2] : NULL,
        .stream = req->n_params >= 3 ? req->params[req->n_params - 1] : NULL,
    };
    struct sd_connector_conf conf = {0};
    bool known = false;
    int r = sd_inbound_admit(req->hub->store, &rq, &conf, &known);
    if (r == -ENOENT) {
        if (known) {
            sd_inbound_count_non200(req->params[0], 404);
            sd_alerts_inbound_answer(req->hub, req->params[0], 404);
        }
        sd_req_reply_error(req, 404, "not_found", "no such endpoint");
        return SD_REQ_DONE;
    }
    if (r < 0) {
        refuse_unavailable(req, known ? req->params[0] : "other", NULL, r);
        return SD_REQ_DONE;
    }
    /* admitted: the stream (if any) is one of the type's, a safe metrics label */
    json_t *headers = kept_headers(req);
    if (rq.stream) {
        json_object_set_new(headers, "stream", json_string(rq.stream));
    }
    struct sd_inbound_payload *p = NULL;
    const char *why = NULL;
    r = sd_inbound_prepare(&conf, req->body.data ? req->body.data : "", req->body.len, headers,
                           sd_now_usec(), &p, &why);
    if (r == 0) {
        /* what the door refused counts for its connector in the data-quality view */
        sd_quality_rejected(req->hub->quality, conf.tenant_id, conf.env, conf.id, NULL,
                            sd_inbound_payload_rejected(p));
    }
    sd_connector_conf_release(&conf);
    if (r == -E2BIG) {
        sd_req_reply_error(req, 413, "payload_too_large", "%s; nothing was stored", why);
        sd_inbound_count_non200_stream(req->params[0], rq.stream, 413);
        sd_alerts_inbound_answer(req->hub, req->params[0], 413);
        return SD_REQ_DONE;
    }
    if (r < 0) {
        refuse_unavailable(req, req->params[0], rq.stream, r);
        return SD_REQ_DONE;
    }
    struct door *d = sd_calloc(1, sizeof(*d));
    d->req = req;
    d->payload = p;
    d->connector_id = sd_strdup(req->params[0]);
    d->stream = rq.stream ? sd_strdup(rq.stream) : NULL;
    d->job.run = door_run;
    d->job.done = door_done;
    d->job.arg = d;
    req->state = d;
    req->cleanup = door_cleanup;
    req->on_resume = door_resume;
    return sd_req_submit(req, &d->job);
}

/* ---- admin ----------------------------------------------------------------------------------- */

/* The door's address as shown once: {"path", "url", "token"}. The URL uses the Host the admin
 * request was sent to (the operator's view of the hub; behind a proxy, take the path). */
json_t *sd_api_inbound_door_json(struct sd_req *req, const char *connector_id, const char *token)
{
    char *path = sd_inbound_path(connector_id, token);
    const char *host = sd_req_header(req, "Host");
    json_t *o = json_pack("{s:s, s:s}", "path", path, "token", token);
    if (host) {
        /* a TLS session on this connection: https (behind a TLS proxy, the path is what counts) */
        bool tls = req->conn &&
                   MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_PROTOCOL) != NULL;
        char *url = sd_asprintf("%s://%s%s", tls ? "https" : "http", host, path);
        json_object_set_new(o, "url", sd_json_text(url));
        free(url);
    }
    free(path);
    /* a type with streams: one URL per stream (the plain path above is not a door then) */
    struct sd_connector_conf c = {0};
    if (sd_store_connector_get(req->hub->store, connector_id, &c) == 0) {
        json_t *streams = sd_inbound_stream_paths(c.type, c.settings, connector_id, token);
        if (streams) {
            json_object_set_new(o, "streams", streams);
        }
        sd_connector_conf_release(&c);
    }
    return o;
}

void sd_api_inbound_door_open(struct sd_req *req, const char *connector_id, json_t *o)
{
    struct sd_connector_conf c = {0};
    if (sd_store_connector_get(req->hub->store, connector_id, &c) < 0) {
        return;
    }
    if (sd_inbound_type_has_door(c.type)) {
        char *token = NULL;
        int r = sd_inbound_token_rotate(req->hub->store, connector_id, &token);
        if (r < 0) {
            /* The connector stands; its door stays closed until a rotation makes a token. */
            sd_log(SD_LOG_ERROR, "inbound door token not made; rotate it",
                   "connector=%s " SD_LOG_ERR_FMT, connector_id, SD_LOG_ERR_ARGS(r));
            json_object_set_new(o, "inbound", json_null());
        } else {
            json_object_set_new(o, "inbound", sd_api_inbound_door_json(req, connector_id, token));
        }
        free(token);
    }
    sd_connector_conf_release(&c);
}

static bool connector_of_tenant(struct sd_req *req, const struct sd_tenant *t,
                                struct sd_connector_conf *ret)
{
    int r = sd_connector_config_get(req->hub->store, t, req->params[1], ret);
    if (r == -ENOENT) {
        sd_req_reply_error(req, 404, "not_found", "no connector '%s' for tenant '%s'",
                           req->params[1], req->params[0]);
        return false;
    }
    if (r < 0) {
        sd_api_reply_store_error(req, r);
        return false;
    }
    return true;
}

int sd_api_admin_inbound_token(struct sd_req *req)
{
    struct sd_tenant t = {0};
    struct sd_connector_conf c = {0};
    if (!sd_api_path_tenant(req, &t)) {
        return SD_REQ_DONE;
    }
    if (connector_of_tenant(req, &t, &c)) {
        char *token = NULL;
        int r = sd_inbound_token_rotate(req->hub->store, c.id, &token);
        if (r == -EINVAL) {
            sd_req_reply_error(req, 409, "no_inbound_door",
                               "connectors of type '%s' have no inbound door", c.type);
        } else if (r < 0) {
            sd_api_reply_store_error(req, r);
        } else {
            sd_log(SD_LOG_INFO, "inbound door token rotated", "connector=%s", c.id);
            sd_req_reply_json(req, 200,
                              json_pack("{s:s, s:o}", "connector_id", c.id, "inbound",
                                        sd_api_inbound_door_json(req, c.id, token)));
        }
        free(token);
    }
    sd_connector_conf_release(&c);
    sd_tenant_release(&t);
    return SD_REQ_DONE;
}

/* RFC 3339 → µs since the epoch; -EINVAL if it is not one. */
static int parse_time(const char *s, int64_t *ret)
{
    char utc[64];
    if (sd_datetime_to_utc(s, utc, sizeof(utc)) < 0) {
        return -EINVAL;
    }
    struct tm tm = {0};
    int y, mo, d, h, mi, sec;
    if (sscanf(utc, "%4d-%2d-%2dT%2d:%2d:%2d", &y, &mo, &d, &h, &mi, &sec) != 6) {
        return -EINVAL;
    }
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    *ret = (int64_t)timegm(&tm) * 1000000;
    return 0;
}

int sd_api_admin_inbound_replay(struct sd_req *req)
{
    struct sd_tenant t = {0};
    struct sd_connector_conf c = {0};
    if (!sd_api_path_tenant(req, &t)) {
        return SD_REQ_DONE;
    }
    if (!connector_of_tenant(req, &t, &c)) {
        sd_tenant_release(&t);
        return SD_REQ_DONE;
    }
    const char *from = sd_req_query(req, "from");
    const char *to = sd_req_query(req, "to");
    int64_t from_usec = 0, to_usec = 0;
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    if ((from != NULL) != (to != NULL)) {
        sd_issues_add(&errors, from ? "/to" : "/from",
                      "from and to go together: every payload received in [from, to)");
    }
    if (from && parse_time(from, &from_usec) < 0) {
        sd_issues_add(&errors, "/from", "must be an RFC 3339 date-time");
    }
    if (to && parse_time(to, &to_usec) < 0) {
        sd_issues_add(&errors, "/to", "must be an RFC 3339 date-time");
    }
    if (!sd_inbound_type_has_door(c.type)) {
        sd_req_reply_error(req, 409, "no_inbound_door",
                           "connectors of type '%s' have no inbound door", c.type);
    } else if (errors.total > 0) {
        sd_api_reply_validation(req, &errors);
    } else {
        struct sd_inbound_replay res = {0};
        int r = sd_inbound_replay(req->hub, &c, from != NULL, from_usec, to_usec, &res);
        if (r < 0) {
            sd_api_reply_store_error(req, r);
        } else {
            sd_req_reply_json(req, 200,
                              json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I}", "connector_id", c.id,
                                        "mode", from ? "range" : "quarantined", "payloads",
                                        (json_int_t)res.payloads, "objects",
                                        (json_int_t)res.objects, "applied", (json_int_t)res.applied,
                                        "quarantined", (json_int_t)res.quarantined,
                                        "skipped_erased", (json_int_t)res.skipped_erased));
        }
    }
    sd_issues_release(&errors);
    sd_connector_conf_release(&c);
    sd_tenant_release(&t);
    return SD_REQ_DONE;
}

json_t *sd_api_inbound_quarantined_json(const struct sd_inbound_quarantined *q)
{
    return json_pack("{s:I, s:I, s:s, s:o, s:s, s:o, s:o, s:o}", "id", (json_int_t)q->id,
                     "payload_id", (json_int_t)q->raw_id, "connector_id", q->connector_id, "index",
                     q->idx < 0 ? json_null() : json_integer(q->idx), "reason", q->reason,
                     "received_at", sd_json_time(q->received_usec), "quarantined_at",
                     sd_json_time(q->created_usec), "updated_at", sd_json_time(q->updated_usec));
}

int sd_api_admin_quarantine_list(struct sd_req *req)
{
    struct sd_tenant t = {0};
    if (!sd_api_path_tenant(req, &t)) {
        return SD_REQ_DONE;
    }
    const char *connector = sd_req_query(req, "connector");
    const char *envs = sd_req_query(req, "environment");
    const char *after = sd_req_query(req, "after");
    const char *limits = sd_req_query(req, "limit");
    int env = -1;
    int64_t after_id = 0, limit = 100;
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    enum sd_env e;
    if (envs && sd_env_parse(envs, &e) < 0) {
        sd_issues_add(&errors, "/environment", "must be \"test\" or \"prod\"");
    } else if (envs) {
        env = (int)e;
    }
    if (after && sd_parse_int64(after, false, &after_id) < 0) {
        sd_issues_add(&errors, "/after", "must be a quarantine id (a non-negative integer)");
    }
    if (limits &&
        (sd_parse_int64(limits, false, &limit) < 0 || limit < 1 || limit > SD_INBOUND_LIST_MAX)) {
        sd_issues_add(&errors, "/limit", "must be an integer from 1 to %d", SD_INBOUND_LIST_MAX);
    }
    if (errors.total > 0) {
        sd_api_reply_validation(req, &errors);
    } else {
        struct sd_inbound_quarantined *v = NULL;
        size_t n = 0;
        int r = sd_store_inbound_quarantine_list(req->hub->store, t.id, (enum sd_env)env, connector,
                                                 after_id, (size_t)limit, &v, &n);
        if (r < 0) {
            sd_api_reply_store_error(req, r);
        } else {
            json_t *arr = json_array();
            for (size_t i = 0; i < n; i++) {
                json_array_append_new(arr, sd_api_inbound_quarantined_json(&v[i]));
            }
            json_t *o = json_pack("{s:o}", "quarantine", arr);
            json_object_set_new(o, "next_after",
                                n == (size_t)limit ? json_integer(v[n - 1].id) : json_null());
            sd_req_reply_json(req, 200, o);
            sd_inbound_quarantined_free(v, n);
        }
    }
    sd_issues_release(&errors);
    sd_tenant_release(&t);
    return SD_REQ_DONE;
}
