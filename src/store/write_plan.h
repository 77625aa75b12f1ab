/* write_plan.h — the database-independent parts of applying an ingest batch, shared by the
 * backends: the per-batch map of looked-up ids, the reference checks of a sale (its event, an
 * alias included, and its customer), the outcome of a batch's sales, and the counters of
 * records left as they were. Backend-neutral: it runs no statement itself; what it must know
 * of the stored records it asks through the backend's lookups (struct sd_write_lookup), all
 * made on the backend's writer inside the write transaction.
 *
 * Errors: negative errno as the backend's lookup returned it (-EIO, …); every refusal of a
 * record is an issue in res->errors with the JSON Pointer of the field, counted in the return
 * value. Allocation failure aborts. Only the writer thread calls these. */
#ifndef SD_STORE_WRITE_PLAN_H
#define SD_STORE_WRITE_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "store/facts_plan.h"
#include "store/store.h"

/* A stored sales record as the lifecycle rules see it (store/lifecycle_plan.h). */
struct sd_stored_sale {
    struct sd_sale_state st; /* effective figures (refund records included) */
    int64_t rr_quantity, rr_minor;
    char *changed, *doc, *customer_id; /* owned */
};
void sd_stored_sale_release(struct sd_stored_sale *x);

/* The backend's lookups on its writer, inside the write transaction. */
struct sd_write_lookup {
    /* Sales record `invoice`: 1 and *ret (released with sd_stored_sale_release), 0 when not
     * stored, negative errno. */
    int (*sale_state)(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *invoice,
                      struct sd_stored_sale *ret);
    /* The canonical id of event `event_id` (itself, or the event it is an alias of): 1 and the
     * id in *out, 0 if there is no such event, negative errno. */
    int (*event_resolve)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                         const char *event_id, struct sd_buf *out);
    /* 1 when customer `cid` of `source` is stored, 0 when not, negative errno. */
    int (*customer_exists)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                           const char *source, const char *cid);
};

/* The backend's steps of applying a batch's events, on its writer. */
struct sd_event_steps {
    /* Merge e's content into event `event_id` with a new seq: 1 updated, 2 stored already with
     * identical content (unchanged), 3 not applied because e's remote version is older than
     * the stored one (stale), 0 no such event, negative errno. */
    int (*update)(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *event_id,
                  const struct sd_event_rec *e, int64_t now, const char *origin);
    /* The event alias_id is an alias of: 1 and its id in *out, 0 none, negative errno. */
    int (*alias_get)(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *alias_id,
                     struct sd_buf *out);
    /* The oldest event of performance dup_key: 1 and its id in *out, 0 none, negative errno. */
    int (*by_dup)(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *dup_key,
                  struct sd_buf *out);
    /* Store alias_id as an alias of event_id: 0 or negative errno. */
    int (*alias_insert)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                        const char *alias_id, const char *event_id);
    /* Insert e as a new event with a new seq: 0 or negative errno. */
    int (*insert)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                  const struct sd_event_rec *e, int64_t now, const char *origin);
};

/* Apply a batch's events in order: an event stored under its id (or under an alias of it) is
 * updated; a new id for a stored performance (same dup_key) becomes an alias of that event,
 * which is updated with the record (a warning at "/events/<index>" says so); else the event is
 * inserted. Unchanged and stale records count in res. 0 or negative errno. */
int sd_write_apply_events(struct sd_store *s, const struct sd_event_steps *st, int64_t tenant_id,
                          enum sd_env env, const struct sd_batch *b, int64_t now,
                          struct sd_apply_result *res);

/* A string → string-or-NULL map over one batch (open addressing, FNV-1a): the canonical ids
 * of the events a batch's sales name, the customers known to exist, the invoices seen. An
 * entry with val NULL records that the key names nothing. Zero-initialised is empty. */
struct sd_refmap {
    struct sd_refmap_entry {
        char *key; /* NULL: free slot */
        char *val; /* owned, or NULL */
    } * slot;
    size_t cap, n; /* cap: 0 or a power of two */
};
/* The entry of key, NULL if the map has none. */
const struct sd_refmap_entry *sd_refmap_get(const struct sd_refmap *m, const char *key);
/* Add key → val (copied; val NULL: known to name nothing) unless key is there already. */
void sd_refmap_put(struct sd_refmap *m, const char *key, const char *val);
void sd_refmap_release(struct sd_refmap *m);

struct sd_sale_plan;
struct sd_refund_targets;

/* The backend's steps of writing a batch's sales, on its writer. Each returns 0 (or as said)
 * or a negative errno. */
struct sd_sale_steps {
    /* Look up the events and customers the batch's sales name in one go (into events: id →
     * canonical id or NULL; customers: id → non-NULL or NULL; their profiles into facts).
     * NULL: each is looked up when a sale names it. */
    int (*prefetch)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                    const struct sd_batch *b, struct sd_refmap *events, struct sd_refmap *customers,
                    struct sd_facts_batch *facts);
    /* 1 when sales record `invoice` is stored, 0 when not. */
    int (*exists)(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *invoice);
    /* Insert sale with the figures planned and the next seq unless its invoice is stored: 1
     * inserted (the seq taken, its facts added to *facts), 0 stored already. */
    int (*insert)(struct sd_store *s, int64_t tenant_id, enum sd_env env, const struct sd_batch *b,
                  const struct sd_sale_rec *sale, const struct sd_sale_plan *plan,
                  const char *event_ref, int64_t now, struct sd_facts_batch *facts);
    /* Replace stored sale with the record as planned, with the next seq, its facts following:
     * 1 replaced, 0 kept (an older remote version). number_kept: the seq is taken even then. */
    int (*update)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                  const struct sd_sale_rec *sale, const struct sd_sale_plan *plan,
                  const char *event_ref, int64_t now, const char *source, const char *origin,
                  bool number_kept);
    /* Write the facts summed in *facts so far (and empty the sums). */
    int (*facts_flush)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                       struct sd_facts_batch *facts);
    /* Write the new figures of the sales refund records changed. */
    int (*refunds)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                   const struct sd_refund_targets *t);
};

/* A batch's sales, one by one: planned (store/lifecycle_plan.h), references checked, inserted
 * while no reference error was seen. Once one is found, inserting stops (the answer is 400 and
 * the caller rolls the savepoint back) but the checks go on so that every error is reported.
 * An upsert batch (a batch transport, which stores a refused batch again without the records
 * named, inside one larger transaction) is checked whole first, so that a refused one writes
 * nothing; its stored sales are left as they are when identical, else replaced. A stored
 * invoice in any other batch is a duplicate. Sets res->outcome; 0 or negative errno. */
int sd_write_apply_sales(struct sd_store *s, const struct sd_write_lookup *lk,
                         const struct sd_sale_steps *st, int64_t tenant_id, enum sd_env env,
                         const struct sd_batch *b, int64_t now, struct sd_apply_result *res);

/* Replace stored sale `sale` (PUT, pointers relative to the sale): res->outcome
 * SD_APPLY_NOT_FOUND, SD_APPLY_REFUSED (issues added) or SD_APPLY_OK. 0 or negative errno. */
int sd_write_replace_sale(struct sd_store *s, const struct sd_write_lookup *lk,
                          const struct sd_sale_steps *st, int64_t tenant_id, enum sd_env env,
                          const struct sd_sale_rec *sale, struct sd_apply_result *res);

/* An ingest batch: its events (st->events), then customers, then sales, at one `now`. */
struct sd_ingest_steps {
    const struct sd_event_steps *events;
    int (*customers)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                     const struct sd_batch *b, int64_t now, struct sd_apply_result *res);
    int (*sales)(struct sd_store *s, int64_t tenant_id, enum sd_env env, const struct sd_batch *b,
                 int64_t now, struct sd_apply_result *res);
};
int sd_write_apply_ingest(struct sd_store *s, const struct sd_ingest_steps *st, int64_t tenant_id,
                          enum sd_env env, const struct sd_batch *b, struct sd_apply_result *res);

/* The backend's steps of deleting a record, on its writer. Each returns 0 (or as said) or a
 * negative errno. */
struct sd_delete_steps {
    /* Delete event id's row: the rows deleted (0 or 1). */
    int (*event_delete)(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *id);
    /* Delete the aliases of event id. */
    int (*aliases_delete)(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *id);
    /* Event id (deleted a moment ago) merged into `into`: its aliases and sales follow. */
    int (*merge_event)(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *id,
                       const char *into);
    /* The customer record (source NULL: any one source) to delete: 1 and its seq, source
     * (heap) and profile id (0 none), 0 none, -ENOTUNIQ. */
    int (*customer_find)(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *id,
                         const char *source, int64_t *ret_seq, char **ret_source,
                         int64_t *ret_profile);
    /* Delete customer row seq, the purchase facts of its profile following. */
    int (*customer_delete)(struct sd_store *s, int64_t tenant_id, enum sd_env env, int64_t seq);
    /* A record of profile_id was deleted (store/profile_rules.h, sd_profile_member_gone). */
    int (*member_gone)(struct sd_store *s, int64_t tenant_id, enum sd_env env, int64_t profile_id,
                       int64_t now);
    /* Customer (source, id) merged into (source, into): its sales name into. */
    int (*merge_customer_sales)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                                const char *id, const char *source, const char *into, int64_t now);
    /* Delete sale id, taken out of the purchase facts first: the rows deleted (0 or 1). */
    int (*sale_delete)(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *id);
    /* The backend's tombstone_put. */
    int (*tombstone_put)(struct sd_store *s, int64_t tenant_id, enum sd_env env, enum sd_kind kind,
                         const char *id, const char *source, enum sd_tombstone_reason reason,
                         const char *merged_into, const char *origin, int64_t now);
};

/* store.h's delete_record, once the backend checked env: 1 deleted (its tombstone written), 0
 * no such record, -ENOTUNIQ (a customer id of several sources, source NULL), -EINVAL (no id,
 * an unknown kind or reason, merged_into given exactly when reason is merged), or negative
 * errno. */
int sd_write_delete_record(struct sd_store *s, const struct sd_delete_steps *st, int64_t tenant_id,
                           enum sd_env env, enum sd_kind kind, const char *id, const char *source,
                           enum sd_tombstone_reason reason, const char *merged_into,
                           const char *origin);

/* "prod" / "test", as messages name an environment. */
const char *sd_write_env_name(enum sd_env env);

/* The batch's source: b->source, or SD_SOURCE_WEBHOOK when it names none. */
const char *sd_write_batch_source(const struct sd_batch *b);

/* A record left as it was: how 2 identical to the stored one, 3 older than it (stale);
 * anything else counts nothing. */
void sd_write_count_kept(struct sd_apply_result *res, int how);

/* Add `invoice` to res->duplicate_invoices (*cap: its capacity, 0 at first). */
void sd_write_push_duplicate(struct sd_apply_result *res, const char *invoice, size_t *cap);

/* Check both references of a sale; adds errors at ptr_prefix + "/event_id" / "/customer_id".
 * events caches the event lookups of the batch; customers (NULL: none) holds customers looked
 * up already for the batch's source (val non-NULL: exists); *customer_cache is the last
 * customer found. Returns the number of errors added (0..2) or negative errno. On 0, *ret_ref
 * is the event's canonical id (valid while events lives). */
int sd_write_check_sale_refs(struct sd_store *s, const struct sd_write_lookup *lk,
                             int64_t tenant_id, enum sd_env env, const char *source,
                             const struct sd_sale_rec *sale, const char *ptr_prefix,
                             struct sd_refmap *events, const struct sd_refmap *customers,
                             const char **customer_cache, struct sd_apply_result *res,
                             const char **ret_ref);

/* An upsert batch's sales are checked whole before any is written, so that a refused batch
 * writes nothing: checks every sale in order (at "/sales/<index>"), checked[i] its event ref.
 * Returns the number of errors added, or negative errno (then stops). */
int sd_write_check_all_sales(struct sd_store *s, const struct sd_write_lookup *lk,
                             int64_t tenant_id, enum sd_env env, const struct sd_batch *b,
                             struct sd_refmap *events, const struct sd_refmap *customers,
                             const char **customer_cache, struct sd_apply_result *res,
                             const char **checked);

/* The outcome of a batch's sales once applying them ended with r: with reference errors the
 * batch is refused (its duplicates forgotten, 0 returned); else with duplicates it is a
 * duplicate. A negative r is returned as it is. */
int sd_write_sales_outcome(struct sd_apply_result *res, int r, size_t ref_errors);

#endif
