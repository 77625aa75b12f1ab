/* s360_out.h — the pure parts of the `s360` connector's outbound half (s360_out.c), exposed
 * for the unit tests: request bodies, answer classification and the stale-overwrite rule. The
 * connector's entry points (s360_deliver, s360_on_change, s360_operations) are declared in
 * s360.h.
 *
 * Thread rules: every function here is pure and reentrant. */
#ifndef SD_CONNECTORS_S360_OUT_H
#define SD_CONNECTORS_S360_OUT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/connector.h"
#include "core/outbox.h"
#include "http/verdict.h"

/* The outbox operations and subject kinds of the type. */
#define S360_OP_SAVE_CONTACT "save_contact"
#define S360_OP_CREATE_ORDER "create_order"
#define S360_KIND_CONTACT                                                                          \
    "contact"                   /* subject "<source>:<customer_id>"; remote ref: contactNumber */
#define S360_KIND_OFFER "offer" /* subject: the offer id; remote ref: S-360's orderId */
/* Remote reference kind of a subject: when stagedoor last wrote it (µs since the epoch, as text).
 */
#define S360_KIND_WRITTEN "contact_written"

/* S-360's clock and ours may differ by this much: a remote change less than this after a local
 * one (or after stagedoor's own last write) is taken for the same moment, and the local change
 * goes out. */
#define S360_CLOCK_SKEW_USEC (2LL * 1000000)
/* in_progress: S-360 is still working on it; ask again after this (scaled like the outbox). */
#define S360_IN_PROGRESS_RETRY_USEC (5LL * 1000000)
#define S360_MAX_ANSWER (4 * 1024 * 1024)

/* saveIndividualContactData's body for a stored customer (its model record: email, first_name,
 * last_name, street, post_code) on top of S-360's current contact `current` (getContactData's
 * answer; NULL for a create): individualContact, communicationMeans and addresses are copied
 * from `current` and the customer's values laid over them (first_name → firstName, last_name →
 * lastName, email → the EMAIL means, street/post_code → street1/zipCode of the main address), so
 * the sections S-360 replaces keep what stagedoor does not manage (phones, town, birth date).
 * A null member clears the S-360 field, an absent one leaves it; lastName is never cleared.
 * street: S-360's two lines, which the inbound joined as "street1, street2", are kept when the
 * street is that join, split back when it still ends in ", street2", else street1 alone.
 * ad_opt_out true: every authorizationType of optin_types (comma-separated) is written false
 * (added if S-360 has none), the other authorizations kept; otherwise no authorizations are
 * sent (S-360 keeps its own: an opt-out there is never turned into an opt-in).
 * number: the contactNumber to update, or NULL to create. request_id: the requestId. Returns a
 * new object, or NULL with the reason in why (no lastName at all; `current` is a company). */
json_t *s360_contact_body(const json_t *customer, const json_t *current, const char *number,
                          const char *request_id, const char *optin_types, char *why,
                          size_t why_size);

/* The verdict of one REST-RPC answer: transport_err and status as sd_http_classify takes them
 * (429 and 509: WAIT; 401 after the token's one refresh: REJECT); for a 2xx, the JSON answer's
 * statusCode: "success" OK, "in_progress" RETRY, anything else (or no JSON object) REJECT.
 * *ret_detail (may be NULL) points into answer: statusDetail (or statusCode) of an in-band
 * failure, else NULL. */
enum sd_verdict s360_judge(int transport_err, long status, const json_t *answer,
                           const char **ret_detail);

/* An S-360 time ("2026-03-01T10:00:00.123+01:00", any RFC 3339 offset) in µs since the epoch:
 * 0, or -EINVAL. */
int s360_time_usec(const char *text, int64_t *ret_usec);

/* No stale overwrite: is S-360's contact (its lastUpdateDate, remote_usec) newer than what
 * stagedoor would write? With received_ms > 0 (the remote_version stagedoor stored from S-360's
 * contact webhook: the lastUpdateDate it last received, in ms) S-360's own times decide: newer
 * when S-360 changed it after that version, unless the change is stagedoor's own last write
 * (written_usec, 0: never; within the clock skew) whose echo has not come in yet. Without a
 * received version (a contact created here whose webhook has not come yet) the clock rule: S-360
 * changed it after stagedoor's change was queued (queued_usec) and after stagedoor's own last
 * write, by more than the clock skew. S-360's newer version stays. */
bool s360_remote_newer(int64_t remote_usec, int64_t received_ms, int64_t queued_usec,
                       int64_t written_usec);

/* The subject of a customer: "<source>:<customer_id>" split at its first ':' (sources hold no
 * ':'). 0, or -EINVAL. The out strings point into subject's copy in *ret_buf (free it). */
int s360_split_subject(const char *subject, char **ret_buf, const char **ret_source,
                       const char **ret_id);

/* createOrUpdateOrder's body for an offer (the outbox item's payload: offer_id, order_type,
 * performance_id, seat_category_id, audience_sub_category_id, quantity): one single-entry line,
 * the offer id as externalReference, the buyer's contact number as purchasersInfo. New object. */
json_t *s360_order_body(const json_t *offer, const char *contact_number, int64_t point_of_sales_id,
                        const char *request_id);

#endif
