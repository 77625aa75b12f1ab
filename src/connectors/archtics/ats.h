/* ats.h — a client of Archtics Transaction Services (ATS), Ticketmaster's command API.
 *
 * Every call is a POST of a JSON envelope to {base_url}/{product}/ticketing_services.aspx?dsn=
 * {dsn} with the API key in the `apikey` header:
 *
 *   {"header": {"ver": 1, "src_sys_type": 2, "src_sys_name": …, "archtics_version": …},
 *    "command1": {"cmd": …, "uid": …, "dsn": …, "ref": …, <the command's parameters>}}
 *
 * The answer echoes both with `result` (0 = success), `sql_code` and `error_detail` (or
 * `error_desc`) in command1. Business errors arrive inside HTTP 200. Some servers send numbers
 * as strings and vary the case of keys and of `cmd`: every reader here is tolerant of both.
 *
 * A command may be answered 202 (queued): the identical command is sent again with every
 * cookie the server set, every poll_interval_ms, for up to poll_timeout_ms. The poll in
 * progress (the command's text, its cookies and when it was first sent) is written to the
 * connector's saved state after every 202 (sd_connector_state_save), so that a run after a
 * restart that sends the same command text resumes the poll instead of submitting again.
 * Command texts are deterministic for that reason: `ref` is derived from the command itself.
 *
 * Every request, polls included, is taken from the type's quotas before it is sent
 * (sd_connector_quota_take_within): when no call is possible within max_wait_usec (the day is
 * spent), nothing is sent and the call answers ATS_PAUSED with the time the quota refills;
 * likewise when the server answers 429 with a Retry-After beyond that bound. Shorter 429 waits
 * are waited out and are never a failure.
 *
 * Thread rules: a client belongs to the run (one thread) that made it. */
#ifndef SD_CONNECTORS_ARCHTICS_ATS_H
#define SD_CONNECTORS_ARCHTICS_ATS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/connector.h"

struct sd_tz;

/* How to reach one ATS service and how patiently. Strings are borrowed (the run's settings). */
struct ats_params {
    const char *base_url;         /* "https://app.ticketmaster.com/archtics-ats", no trailing / */
    const char *product;          /* path product: "sth-customer" */
    const char *dsn;              /* the data source (venue database) */
    const char *api_key;          /* sent as header `apikey` */
    const char *src_sys_name;     /* header.src_sys_name */
    const char *archtics_version; /* header.archtics_version */
    const char *uid;              /* command1.uid (≤ 12) */
    int64_t timeout_ms;           /* per request */
    int64_t poll_interval_ms;     /* between polls of a queued command */
    int64_t poll_timeout_ms;      /* a poll older than this is submitted again */
    int64_t max_attempts;         /* transport errors / 5xx before ATS_RETRY */
    int64_t backoff_initial_ms;   /* first back-off, doubling (503 Retry-After wins) */
    int64_t max_wait_usec;        /* longest quota / 429 wait inside a run (else ATS_PAUSED) */
    int64_t no_data_result;       /* the `result` of an expired poll ("No data for token") */
};

/* What a call's answer means. */
enum ats_status {
    ATS_OK = 0,    /* result 0 */
    ATS_HIT,       /* 11408: customer_add found the e-mail; acct_id is the existing one */
    ATS_NOT_FOUND, /* an in-band "nothing there" (5024, 5069, 5212, 5231, 10684, sql 100) */
    ATS_TOO_LARGE, /* 11075: the answer would exceed the server's size: ask for less */
    ATS_REJECTED,  /* any other in-band error: permanent for this command */
    ATS_RETRY,     /* transport errors / 5xx beyond max_attempts, poll timeout: later */
    ATS_AUTH,      /* HTTP 401 (or 403): the key or the DSN is refused */
    ATS_SETUP,     /* HTTP 404 (or another 4xx): wrong base URL or product */
    ATS_PAUSED,    /* no call possible before paused_until_usec (quota) */
    ATS_CANCELED,  /* the hub is stopping */
};

/* One answer. doc is the parsed body (owned), c1 its command1 (borrowed from doc). */
struct ats_answer {
    enum ats_status status;
    json_t *doc;
    const json_t *c1;
    int64_t result;
    int64_t sql_code;
    long http_status;
    int64_t paused_until_usec; /* ATS_PAUSED */
    int polls;                 /* 202 answers seen */
    int calls;                 /* requests sent (quota taken) */
    bool resumed;              /* the call continued a poll saved by an earlier run */
    char detail[256];          /* error_detail / error_desc / transport reason (no secrets) */
};
void ats_answer_release(struct ats_answer *a);

struct ats_client;
/* A client for ctx's run with params p (copied; strings borrowed). */
struct ats_client *ats_client_new(struct sd_connector_ctx *ctx, const struct ats_params *p);
void ats_client_free(struct ats_client *c);
/* Requests sent by this client so far (every poll included). */
int64_t ats_client_calls(const struct ats_client *c);

/* Send command `cmd` with params (an object of command1 members besides cmd/uid/dsn/ref, or
 * NULL) and read its answer, polling while it is queued, resuming a saved poll of the same
 * text, and submitting again once when the poll expired ("No data for token"). Returns 0 with
 * ret filled (see ret->status; release it in every case), or a negative errno for a bug of
 * the caller (-EINVAL). */
int ats_call(struct ats_client *c, const char *cmd, const json_t *params, struct ats_answer *ret);

/* ---- pure parts (unit-tested and fuzzed) -------------------------------------------------- */

/* The request body for cmd with params: the envelope, members in a fixed order, ref derived
 * from cmd and params (so the same command always has the same text). New string. */
char *ats_envelope_text(const struct ats_params *p, const char *cmd, const json_t *params);

/* Parse an answer body: 0 with *ret_doc (new reference) and result, sql_code, detail read
 * tolerantly (numbers or numeric strings; key case ignored; result in command1 or, missing
 * there, in header), or -EBADMSG with a reason in why (no body text quoted). */
int ats_parse_answer(const char *body, size_t len, json_t **ret_doc, int64_t *ret_result,
                     int64_t *ret_sql_code, char *detail, size_t detail_size, char *why,
                     size_t why_size);
/* What an in-band result means (no_data_result: the expired-poll code). ATS_RETRY for the
 * expired poll itself (the caller submits again). */
enum ats_status ats_classify_result(int64_t result, int64_t sql_code, const char *detail,
                                    int64_t no_data_result);
/* Is this the expired-poll answer ("No data for token …")? */
bool ats_is_no_data(int64_t result, const char *detail, int64_t no_data_result);

/* Tolerant readers. ats_get: member `key` of obj, matched without regard to ASCII case
 * (exact match first). */
const json_t *ats_get(const json_t *obj, const char *key);
/* An integer sent as a JSON integer, an integral real, or a decimal string (spaces trimmed):
 * 0, or -EINVAL (absent, empty or not an integer). */
int ats_get_int(const json_t *obj, const char *key, int64_t *ret);
/* A scalar as text: strings as they are (trimmed), integers in decimal, reals by
 * ats_real_text, true/false; NULL for absent, null, arrays and objects. New string. */
char *ats_get_text(const json_t *obj, const char *key);
/* A JSON real as the shortest decimal text that reads back as the same double ("99.0" → "99",
 * 12.35 → "12.35"), which is the text the server wrote whenever it wrote at most 15
 * significant digits: money in major units converted exactly. 0, or -EINVAL (not finite). */
int ats_real_text(double v, char out[40]);
/* A money member (JSON number or decimal string) as decimal text; -EINVAL if absent or not a
 * plain non-negative decimal. */
int ats_money_text(const json_t *obj, const char *key, char out[40]);

/* Venue-local times. "YYYY-MM-DD HH:MM" (or "YYYY-MM-DD", read as 00:00; "YYYY-MM-DDTHH:MM"
 * and seconds ":SS" accepted) → local seconds (tz.h's "local"): 0 or -EINVAL. */
int ats_local_parse(const char *s, int64_t *ret_local);
/* Local seconds → "YYYY-MM-DD HH:MM" (seconds dropped). */
void ats_local_format(int64_t local, char out[20]);
/* A venue-local text → UTC seconds with tz. A repeated local minute (clocks go back) resolves
 * to the earlier instant unless later is set; a skipped one (clocks go forward) moves forward
 * by the gap. 0, or -EINVAL (unreadable), -ERANGE. */
int ats_local_to_utc(const struct sd_tz *tz, const char *s, bool later, int64_t *ret_utc);
/* RFC 3339 UTC text of utc seconds ("2026-03-08T07:30:00Z"). */
void ats_utc_format(int64_t utc, char out[24]);

#endif
