/* inbound.c — the store's raw-first webhook wrappers (store/inbound.h), the release helpers
 * of the structs it hands out, and what both backends compute alike (a subject's stored key, a
 * person's subjects). The wrappers add nothing but a check that the backend implements the op
 * (-ENOTSUP otherwise). */
#include "store/inbound.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

#include "store/store.h"

void sd_inbound_raw_release(struct sd_inbound_raw *r)
{
    if (!r) {
        return;
    }
    free(r->connector_id);
    free(r->headers);
    free(r->body);
    *r = (struct sd_inbound_raw){0};
}

void sd_inbound_quarantined_free(struct sd_inbound_quarantined *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) {
        free(v[i].connector_id);
        free(v[i].reason);
    }
    free(v);
}

void sd_inbound_subject_key(const char *subject, uint8_t out[SD_INBOUND_SUBJECT_KEY_BYTES])
{
    char hex[65];
    sd_sha256_hex(subject, strlen(subject), hex);
    for (size_t i = 0; i < SD_INBOUND_SUBJECT_KEY_BYTES; i++) {
        unsigned v = 0;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
}

int sd_inbound_forget_run(char *const *subjects, size_t n, const struct sd_inbound_forget_io *io,
                          void *ctx, int64_t *ret_n)
{
    int64_t purged = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t key[SD_INBOUND_SUBJECT_KEY_BYTES];
        sd_inbound_subject_key(subjects[i], key);
        int64_t *ids = NULL;
        size_t nid = 0;
        int r = io->raws(ctx, key, &ids, &nid);
        for (size_t j = 0; r >= 0 && j < nid; j++) {
            r = io->purge(ctx, ids[j]);
            purged += r > 0 ? r : 0;
        }
        free(ids);
        if (r < 0) {
            return r;
        }
    }
    if (ret_n) {
        *ret_n = purged;
    }
    return 0;
}

static void push(struct sd_inbound_subjects *b, char *s)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 8;
        b->v = sd_realloc(b->v, b->cap * sizeof(*b->v));
    }
    b->v[b->n++] = s;
}

void sd_inbound_subjects_init(struct sd_inbound_subjects *b, const char *customer_id)
{
    *b = (struct sd_inbound_subjects){0};
    push(b, sd_asprintf("cid:%s", customer_id));
}

void sd_inbound_subjects_add(struct sd_inbound_subjects *b, const char *customer_id,
                             const char *row_id, const char *row_email)
{
    if (row_id && strcmp(row_id, customer_id) != 0) {
        push(b, sd_asprintf("cid:%s", row_id));
    }
    if (row_email) {
        char h[65];
        sd_sha256_hex(row_email, strlen(row_email), h);
        push(b, sd_asprintf("em:%s", h));
    }
}

void sd_inbound_subjects_release(struct sd_inbound_subjects *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->v[i]);
    }
    free(b->v);
    *b = (struct sd_inbound_subjects){0};
}

#define OPS(h, op)                                                                                 \
    const struct sd_store_inbound_ops *o = sd_store_handle_ops(h)->inbound;                        \
    if (!o || !o->op) {                                                                            \
        return -ENOTSUP;                                                                           \
    }                                                                                              \
    struct sd_store *s = sd_store_handle_backend(h)

int sd_store_inbound_door_set(struct sd_store_handle *h, const char *connector_id,
                              const char *token_hash)
{
    OPS(h, door_set);
    return o->door_set(s, connector_id, token_hash);
}

int sd_store_inbound_door_get(struct sd_store_handle *h, const char *connector_id,
                              char ret_hash[65])
{
    OPS(h, door_get);
    return o->door_get(s, connector_id, ret_hash);
}

int sd_store_inbound_door_delete(struct sd_store_handle *h, const char *connector_id)
{
    OPS(h, door_delete);
    return o->door_delete(s, connector_id);
}

int sd_store_inbound_raw_put(struct sd_store_handle *h, const struct sd_inbound_raw *r,
                             int64_t dedupe_after_usec, int64_t *ret_id, bool *ret_renewed)
{
    OPS(h, raw_put);
    return o->raw_put(s, r, dedupe_after_usec, ret_id, ret_renewed);
}

int sd_store_inbound_raw_counts(struct sd_store_handle *h, int64_t raw_id, int64_t objects,
                                int64_t applied, int64_t quarantined)
{
    OPS(h, raw_counts);
    return o->raw_counts(s, raw_id, objects, applied, quarantined);
}

int sd_store_inbound_quarantine_put(struct sd_store_handle *h, int64_t raw_id,
                                    const char *connector_id, int64_t tenant_id, enum sd_env env,
                                    int64_t idx, const char *reason)
{
    OPS(h, quarantine_put);
    return o->quarantine_put(s, raw_id, connector_id, tenant_id, env, idx, reason);
}

int sd_store_inbound_quarantine_delete(struct sd_store_handle *h, int64_t raw_id, int64_t idx)
{
    OPS(h, quarantine_delete);
    return o->quarantine_delete(s, raw_id, idx);
}

int sd_store_inbound_quarantine_indexes(struct sd_store_handle *h, int64_t raw_id, int64_t **ret,
                                        size_t *ret_n)
{
    OPS(h, quarantine_indexes);
    return o->quarantine_indexes(s, raw_id, ret, ret_n);
}

int sd_store_inbound_subjects_put(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                                  int64_t raw_id, char *const *subjects, size_t n)
{
    OPS(h, subjects_put);
    return o->subjects_put(s, tenant_id, env, raw_id, subjects, n);
}

int sd_store_inbound_forget(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                            char *const *subjects, size_t n, int64_t *ret_n)
{
    OPS(h, forget);
    return o->forget(s, tenant_id, env, subjects, n, ret_n);
}

int sd_store_inbound_person_subjects(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                                     const char *source, const char *customer_id, char ***ret,
                                     size_t *ret_n)
{
    OPS(h, person_subjects);
    return o->person_subjects(s, tenant_id, env, source, customer_id, ret, ret_n);
}

int sd_store_inbound_purge_expired(struct sd_store_handle *h, int64_t now_usec, size_t limit,
                                   int64_t *ret_n)
{
    OPS(h, purge_expired);
    return o->purge_expired(s, now_usec, limit, ret_n);
}

int sd_store_inbound_email_erased(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                                  const char *email_hash)
{
    OPS(h, email_erased);
    return o->email_erased(s, tenant_id, env, email_hash);
}

int sd_store_inbound_raw_get(struct sd_store_handle *h, int64_t raw_id, struct sd_inbound_raw *ret)
{
    OPS(h, raw_get);
    return o->raw_get(s, raw_id, ret);
}

int sd_store_inbound_raw_list(struct sd_store_handle *h, const char *connector_id,
                              bool quarantined_only, int64_t from_usec, int64_t to_usec,
                              int64_t after_id, size_t limit, int64_t **ret_ids, size_t *ret_n)
{
    OPS(h, raw_list);
    return o->raw_list(s, connector_id, quarantined_only, from_usec, to_usec, after_id, limit,
                       ret_ids, ret_n);
}

int sd_store_inbound_quarantine_list(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                                     const char *connector_id, int64_t after_id, size_t limit,
                                     struct sd_inbound_quarantined **ret, size_t *ret_n)
{
    OPS(h, quarantine_list);
    return o->quarantine_list(s, tenant_id, env, connector_id, after_id, limit, ret, ret_n);
}

int sd_store_inbound_counts(struct sd_store_handle *h, const char *connector_id,
                            int64_t *ret_payloads, int64_t *ret_quarantined)
{
    OPS(h, counts);
    return o->counts(s, connector_id, ret_payloads, ret_quarantined);
}

int sd_store_inbound_scan_put(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                              const char *invoice, const char *scan_id, const char *scanned_at,
                              const char *gate)
{
    OPS(h, scan_put);
    return o->scan_put(s, tenant_id, env, invoice, scan_id, scanned_at, gate);
}
