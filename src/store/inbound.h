/* inbound.h — the store's part of raw-first vendor webhooks: the doors' token hashes, the raw
 * payloads as received, the quarantine of objects that could not be applied, and the index of
 * who a payload mentions (for erasure).
 *
 * One ops table per backend (struct sd_store_inbound_ops, reached from sd_store_ops.inbound);
 * callers use the sd_store_inbound_*() wrappers, which answer -ENOTSUP when the backend lacks
 * an op. Outcomes are negative errno values, never HTTP statuses; the store does not parse the
 * payloads (core/inbound.c does, and hands the store the values it needs as arguments).
 *
 * Obligations of every backend:
 *  - door_set/door_get/door_delete are control plane (any thread; door_set is durable when it
 *    returns). door_get is called on every webhook request and must not wait for the writer.
 *  - raw_put, quarantine_put/_delete, subjects_put, raw_counts, forget, purge_expired and
 *    email_erased run ONLY on the writer thread, inside its transaction: they commit with the
 *    records the same job applies, so "stored" and "applied" are never separated.
 *  - raw_put refuses a second payload with the same (connector_id, content_hash) received at or
 *    after dedupe_after_usec with -EEXIST (committed or earlier in this transaction) and
 *    reports the first one's id; an older one is received anew in place (same id).
 *  - raw_get, raw_list and quarantine_list are the read path (any thread; committed data only).
 *  - Every row is scoped by (tenant_id, env) like the records it leads to. */
#ifndef SD_STORE_INBOUND_H
#define SD_STORE_INBOUND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/model.h"

struct sd_store;
struct sd_store_handle;

/* One raw payload. body is the bytes as received (not NUL-terminated; body_len), headers a
 * JSON object text of the headers kept. An erased payload has purged_usec != 0 and no body. */
struct sd_inbound_raw {
    int64_t id;
    char *connector_id;
    int64_t tenant_id;
    enum sd_env env;
    char content_hash[65]; /* SHA-256 hex of the body */
    int64_t received_usec;
    int64_t expires_usec;
    int64_t purged_usec;
    char *headers;
    unsigned char *body;
    size_t body_len;
    int64_t objects, applied, quarantined;
};
void sd_inbound_raw_release(struct sd_inbound_raw *r);

/* One quarantined object: index in its payload (-1: the payload as a whole). */
struct sd_inbound_quarantined {
    int64_t id;
    int64_t raw_id;
    char *connector_id;
    int64_t idx;
    char *reason;
    int64_t received_usec; /* of the payload */
    int64_t created_usec;
    int64_t updated_usec;
};
void sd_inbound_quarantined_free(struct sd_inbound_quarantined *v, size_t n);

#define SD_INBOUND_LIST_MAX 1000 /* rows returned by one list call at most */

struct sd_store_inbound_ops {
    /* Control plane. door_set creates or replaces the door's token hash. door_get: -ENOENT if
     * the connector has no door. door_delete removes it (0 also if there was none). */
    int (*door_set)(struct sd_store *s, const char *connector_id, const char *token_hash);
    int (*door_get)(struct sd_store *s, const char *connector_id, char ret_hash[65]);
    int (*door_delete)(struct sd_store *s, const char *connector_id);

    /* Writer. Store r (id ignored) and write its id into *ret_id. If this connector already has
     * a payload with r's content_hash: -EEXIST with its id in *ret_id when it was received at or
     * after dedupe_after_usec (a resend); otherwise that row is received anew — its receipt and
     * expiry times, headers and body become r's, its counters zero, purged_usec 0 — and 0 is
     * returned with its id and *ret_renewed set. */
    int (*raw_put)(struct sd_store *s, const struct sd_inbound_raw *r, int64_t dedupe_after_usec,
                   int64_t *ret_id, bool *ret_renewed);
    /* Writer. The outcome counters of a payload (after it was mapped, or replayed). */
    int (*raw_counts)(struct sd_store *s, int64_t raw_id, int64_t objects, int64_t applied,
                      int64_t quarantined);
    /* Writer. Quarantine object idx of raw_id with reason (an existing row gets the new reason
     * and updated_usec). */
    int (*quarantine_put)(struct sd_store *s, int64_t raw_id, const char *connector_id,
                          int64_t tenant_id, enum sd_env env, int64_t idx, const char *reason);
    /* Writer. The object was applied (or must never be): its quarantine row goes. 0 also if
     * there was none. */
    int (*quarantine_delete)(struct sd_store *s, int64_t raw_id, int64_t idx);
    /* Writer. The indexes of raw_id's open quarantine rows, ascending (heap array). */
    int (*quarantine_indexes)(struct sd_store *s, int64_t raw_id, int64_t **ret, size_t *ret_n);
    /* Writer. Record that raw_id mentions each subject ("cid:…" / "em:<sha256>"). */
    int (*subjects_put)(struct sd_store *s, int64_t tenant_id, enum sd_env env, int64_t raw_id,
                        char *const *subjects, size_t n);
    /* Writer. Purge (empty body and headers, drop quarantine and subject rows; the hash stays)
     * every payload of tenant/env that mentions one of the subjects. *ret_n: payloads purged. */
    int (*forget)(struct sd_store *s, int64_t tenant_id, enum sd_env env, char *const *subjects,
                  size_t n, int64_t *ret_n);
    /* Writer. The subjects an erasure of record (source, customer_id) must forget: "cid:" of
     * every customer id of the person's profile (or of that record alone) and "em:" + the
     * SHA-256 of each of their e-mail keys. Call before the records are erased. Heap array. */
    int (*person_subjects)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                           const char *source, const char *customer_id, char ***ret, size_t *ret_n);
    /* Writer. Delete at most `limit` payloads (with their quarantine and subject rows) whose
     * expires_usec is before now_usec. *ret_n: how many. */
    int (*purge_expired)(struct sd_store *s, int64_t now_usec, size_t limit, int64_t *ret_n);
    /* Writer. 1 if the e-mail hash is on tenant/env's suppression list because a person was
     * erased, else 0. */
    int (*email_erased)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                        const char *email_hash);
    /* Writer. An entry scan of sale `invoice` of tenant/env (a vendor's access-control stream),
     * kept once per scan_id (scanned_at: normalized UTC or NULL; gate or NULL): 1 when new (the
     * sale's attended_quantity becomes min(quantity, its scans)), 0 when that scan was kept
     * before (nothing changes), -ENOENT when no such sale exists (nothing kept); a record of
     * another order type keeps the scan but no attendance. A sale stored again keeps at least
     * the count of its scans as its attended_quantity (the larger of the two). */
    int (*scan_put)(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *invoice,
                    const char *scan_id, const char *scanned_at, const char *gate);
    /* Writer or read path. One payload; -ENOENT if missing. */
    int (*raw_get)(struct sd_store *s, int64_t raw_id, struct sd_inbound_raw *ret);

    /* Read path. Ids of the connector's payloads, in receipt order after after_id: with
     * quarantined_only those with an open quarantine row, else those received in [from, to)
     * (µs). At most limit (clamped to SD_INBOUND_LIST_MAX). */
    int (*raw_list)(struct sd_store *s, const char *connector_id, bool quarantined_only,
                    int64_t from_usec, int64_t to_usec, int64_t after_id, size_t limit,
                    int64_t **ret_ids, size_t *ret_n);
    /* Read path. Open quarantine rows of tenant/env (an env other than SD_ENV_TEST/PROD: both;
     * connector_id NULL: every connector), by id after after_id, at most limit (clamped). */
    int (*quarantine_list)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                           const char *connector_id, int64_t after_id, size_t limit,
                           struct sd_inbound_quarantined **ret, size_t *ret_n);
    /* Read path. Open quarantine rows and payloads stored of one connector. */
    int (*counts)(struct sd_store *s, const char *connector_id, int64_t *ret_payloads,
                  int64_t *ret_quarantined);
};

int sd_store_inbound_door_set(struct sd_store_handle *h, const char *connector_id,
                              const char *token_hash);
int sd_store_inbound_door_get(struct sd_store_handle *h, const char *connector_id,
                              char ret_hash[65]);
int sd_store_inbound_door_delete(struct sd_store_handle *h, const char *connector_id);
int sd_store_inbound_raw_put(struct sd_store_handle *h, const struct sd_inbound_raw *r,
                             int64_t dedupe_after_usec, int64_t *ret_id, bool *ret_renewed);
int sd_store_inbound_raw_counts(struct sd_store_handle *h, int64_t raw_id, int64_t objects,
                                int64_t applied, int64_t quarantined);
int sd_store_inbound_quarantine_put(struct sd_store_handle *h, int64_t raw_id,
                                    const char *connector_id, int64_t tenant_id, enum sd_env env,
                                    int64_t idx, const char *reason);
int sd_store_inbound_quarantine_delete(struct sd_store_handle *h, int64_t raw_id, int64_t idx);
int sd_store_inbound_quarantine_indexes(struct sd_store_handle *h, int64_t raw_id, int64_t **ret,
                                        size_t *ret_n);
int sd_store_inbound_subjects_put(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                                  int64_t raw_id, char *const *subjects, size_t n);
int sd_store_inbound_forget(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                            char *const *subjects, size_t n, int64_t *ret_n);
int sd_store_inbound_person_subjects(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                                     const char *source, const char *customer_id, char ***ret,
                                     size_t *ret_n);
int sd_store_inbound_purge_expired(struct sd_store_handle *h, int64_t now_usec, size_t limit,
                                   int64_t *ret_n);
int sd_store_inbound_email_erased(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                                  const char *email_hash);
int sd_store_inbound_raw_get(struct sd_store_handle *h, int64_t raw_id, struct sd_inbound_raw *ret);
int sd_store_inbound_scan_put(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                              const char *invoice, const char *scan_id, const char *scanned_at,
                              const char *gate);
int sd_store_inbound_raw_list(struct sd_store_handle *h, const char *connector_id,
                              bool quarantined_only, int64_t from_usec, int64_t to_usec,
                              int64_t after_id, size_t limit, int64_t **ret_ids, size_t *ret_n);
int sd_store_inbound_quarantine_list(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                                     const char *connector_id, int64_t after_id, size_t limit,
                                     struct sd_inbound_quarantined **ret, size_t *ret_n);
int sd_store_inbound_counts(struct sd_store_handle *h, const char *connector_id,
                            int64_t *ret_payloads, int64_t *ret_quarantined);

/* ---- for the backends (sqlite_inbound.c, pg_inbound.c) ------------------------------------- */

/* The statements both backends have, by name (P is the backend's enum prefix), in slot order. */
#define SD_INBOUND_STATEMENTS(P)                                                                   \
    P##DOOR_SET, P##DOOR_GET, P##DOOR_DELETE, P##RAW_PUT, P##RAW_BY_HASH, P##RAW_COUNTS, P##Q_PUT, \
        P##Q_DELETE, P##SUBJ_PUT, P##SUBJ_RAWS, P##RAW_PURGE, P##Q_DELETE_RAW, P##SUBJ_DELETE_RAW, \
        P##PERSON, P##EXPIRED, P##RAW_DELETE, P##ERASED, P##RAW_GET, P##LIST_Q, P##LIST_RANGE,     \
        P##Q_LIST, P##COUNTS, P##Q_INDEXES, P##RAW_RENEW, P##SCAN_SALE, P##SCAN_PUT,               \
        P##SCAN_ATTEND

/* Both backends name the function of each op after the op (statics of their *_inbound.c): one
 * initializer serves both ops tables. */
#define SD_INBOUND_OPS_INIT                                                                        \
    {                                                                                              \
        .scan_put = scan_put, .door_set = door_set, .door_get = door_get,                          \
        .door_delete = door_delete, .raw_put = raw_put, .raw_counts = raw_counts,                  \
        .quarantine_put = quarantine_put, .quarantine_delete = quarantine_delete,                  \
        .quarantine_indexes = quarantine_indexes, .subjects_put = subjects_put, .forget = forget,  \
        .person_subjects = person_subjects, .purge_expired = purge_expired,                        \
        .email_erased = email_erased, .raw_get = raw_get, .raw_list = raw_list,                    \
        .quarantine_list = quarantine_list, .counts = counts,                                      \
    }

/* The stored form of a subject: the first 16 bytes of its SHA-256. A row per subject and payload
 * is written with every payload, so its size is the door's write volume: 16 bytes instead of
 * about 70 of text; two subjects sharing a digest would only make an erasure purge more. */
#define SD_INBOUND_SUBJECT_KEY_BYTES 16

void sd_inbound_subject_key(const char *subject, uint8_t out[SD_INBOUND_SUBJECT_KEY_BYTES]);

/* What forget does to the database, inside the writer's transaction. */
struct sd_inbound_forget_io {
    /* The ids of the payloads of (the call's tenant and env) that hold the subject stored as
     * `key`: a heap array (NULL when none). 0 or a negative errno. */
    int (*raws)(void *ctx, const uint8_t key[SD_INBOUND_SUBJECT_KEY_BYTES], int64_t **ret,
                size_t *ret_n);
    /* Purge payload raw_id (its body gone) and drop its quarantine and subject rows: the
     * payload rows purged (0 or 1), or a negative errno. */
    int (*purge)(void *ctx, int64_t raw_id);
};

/* forget: every payload holding one of the subjects is purged, subject by subject in order;
 * the first error ends it. 0 with *ret_n (may be NULL) the payloads purged, or the error. */
int sd_inbound_forget_run(char *const *subjects, size_t n, const struct sd_inbound_forget_io *io,
                          void *ctx, int64_t *ret_n);

/* The subjects person_subjects answers, built from the rows of the person's profile:
 * "cid:<customer_id>" first, then per row (in the backend's row order) "cid:<id>" for a record
 * of another customer id and "em:<sha256 hex of the e-mail>" for a row with an e-mail. */
struct sd_inbound_subjects {
    char **v; /* heap, n strings (heap) */
    size_t n;
    size_t cap;
};

void sd_inbound_subjects_init(struct sd_inbound_subjects *b, const char *customer_id);
/* One row of the profile: its customer id and e-mail (either may be NULL). */
void sd_inbound_subjects_add(struct sd_inbound_subjects *b, const char *customer_id,
                             const char *row_id, const char *row_email);
void sd_inbound_subjects_release(struct sd_inbound_subjects *b);

#endif
