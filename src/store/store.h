/* store.h — the one interface to persistent state. No SQL exists outside src/store/.
 *
 * A backend (SQLite now, PostgreSQL next) fills one `struct sd_store_ops`; callers use the
 * sd_store_*() wrappers only. Three groups of operations with different thread rules:
 *
 *  - control plane (tenants, keys, limits): any thread; each call is its own durable
 *    transaction and bumps the settings version so running servers notice within a second.
 *    It never waits behind the write path: a backend keeps it where the writer's transaction
 *    holds no lock (SQLite: its own file, DIR/control.db), so revoking a key works within a
 *    second even while a long import holds the writer.
 *  - write path: ONLY the single writer thread (core/writer.c). It opens one transaction per
 *    group commit, wraps each request in a savepoint, and commits once for the whole group.
 *  - read path: any thread; the backend keeps a pool of read connections. Reads see committed
 *    data only.
 *
 * Every record row is scoped by (tenant_id, env): nothing reads or checks across environments.
 * Every record carries a change sequence number `seq`, unique and increasing per store, assigned
 * on insert and on every update; commit order equals seq order (single writer), so
 * "seq > cursor" returns exactly what changed since a cursor.
 *
 * Errors: ≥ 0 success, negative errno: -ENOENT (not found), -EEXIST (already exists),
 * -EIO (backend failure; the message is logged by the backend, without personal data),
 * -ENOSPC (the store is full: the transaction was rolled back, nothing half-applied),
 * -ESTALE (a lease or fencing token is no longer the caller's), -EDQUOT (a configured limit),
 * -ETIMEDOUT (a write that waited its bound for the data's write lock and gave up: nothing was
 * written, the same call may succeed later).
 * Operations return outcomes, never HTTP statuses: what an outcome means for a client is the
 * caller's business (core and api).
 *
 * Obligations of every backend. SQLite meets some of them by construction (one writer per
 * file, enforced by its file lock); a backend without that property must meet them explicitly:
 *  1. Change order. seq values are assigned so that a reader who has seen seq N never later
 *     sees a commit with a seq ≤ N. SQLite: the single writer assigns them in commit order.
 *     A backend with concurrent writers must serialise seq assignment with commit (e.g. one
 *     advisory lock held from the first seq taken to COMMIT), or hand out seqs at commit.
 *  2. Durability before "accepted". write_commit returns 0 only once the data survives a
 *     power cut (SQLite: synchronous=FULL in WAL; PostgreSQL: synchronous_commit=on).
 *  3. One writer transaction at a time per store for the write path, with savepoints that
 *     undo a request's changes, its seq numbers and the outbound items it queued together.
 *  4. Readers never block the writer and never see uncommitted data; a read spanning several
 *     statements (a count and its member pages) sees one snapshot when the op says so.
 *  5. Control-plane calls never wait behind the write path's transaction.
 *  6. Leases (outbox items, connector runs) are decided in one atomic statement or
 *     transaction, so two workers in one or several processes never hold the same lease;
 *     every change of a leased row names its fencing token and fails with -ESTALE otherwise.
 *  7. JSON documents core owns (settings, a delivery's doc, a connector's state) are stored and
 *     returned as opaque text; the store reads from them only what its ops declare (and a
 *     backend reproduces the same reads with its own JSON functions).
 *  8. Every statement is prepared with bound parameters; identifiers never come from input. */
#ifndef SD_STORE_H
#define SD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/model.h"

struct sd_store; /* backend-private */
struct sd_store_profile_ops;
struct sd_store_segment_ops;
struct sd_store_outbox_ops;
struct sd_store_quota_ops;
struct sd_store_inbound_ops;
struct sd_store_observe_ops;
struct sd_store_runs_ops;
struct sd_store_alert_ops;

struct sd_tenant {
    int64_t id;
    char *client_id;
    char *name;
    int64_t per_minute; /* webhook rate limit refill per minute (default 500) */
    int64_t burst;      /* bucket size (default 1000) */
    int64_t created_usec;
};
void sd_tenant_release(struct sd_tenant *t);
void sd_tenants_free(struct sd_tenant *v, size_t n);

struct sd_key_info {
    char *key_id; /* public id, e.g. "key_3f9a…" */
    char *client_id;
    int64_t tenant_id;
    enum sd_env env;
    char *hash_hex; /* SHA-256 of the key, hex; only filled by auth_snapshot */
    int64_t created_usec;
    int64_t revoked_usec; /* 0 if active */
    int64_t last_used_usec; /* 0: never; kept to the minute (store/observe.h key_touch) */
};
void sd_keys_free(struct sd_key_info *v, size_t n);

/* How applying records ended (the store's outcome; what it means for a client — 202, 400, 409,
 * 404 — is core's and the API's business). */
enum sd_apply_outcome {
    SD_APPLY_OK = 0,    /* applied (or replaced) */
    SD_APPLY_REFUSED,   /* reference or lifecycle errors, listed in errors; nothing applied */
    SD_APPLY_DUPLICATE, /* invoice numbers already stored (duplicate_invoices); nothing applied */
    SD_APPLY_NOT_FOUND, /* replace_sale: no sale with that invoice number */
};

/* Result of applying one request's records inside the write transaction. */
struct sd_apply_result {
    enum sd_apply_outcome outcome;
    struct sd_issues errors;   /* e.g. /sales/3/event_id "event 'X' does not exist in test" */
    struct sd_issues warnings; /* e.g. /events/1 "same performance as stored event 'E1'" */
    char **duplicate_invoices; /* SD_APPLY_DUPLICATE */
    size_t n_duplicate_invoices;
    /* Records already stored with identical content, left as they are (their seq kept): events
     * and customers of any batch, sales of upsert_sales batches. */
    size_t n_unchanged;
    /* Of n_unchanged: records not applied because their remote_version is older than the
     * stored one. */
    size_t n_stale;
};
void sd_apply_result_init(struct sd_apply_result *r);
void sd_apply_result_release(struct sd_apply_result *r);

/* Why a record left the change feed; its tombstone says so ("deleted", "erased", "merged"). */
enum sd_tombstone_reason {
    SD_TOMBSTONE_DELETED = 0, /* deleted by an operator or by its source */
    SD_TOMBSTONE_ERASED = 1,  /* its person was erased (GDPR Art. 17) */
    SD_TOMBSTONE_MERGED = 2,  /* merged into another record, which lives on */
};
const char *sd_tombstone_reason_name(enum sd_tombstone_reason r);
int sd_tombstone_reason_parse(const char *s, enum sd_tombstone_reason *ret); /* 0 or -EINVAL */

/* A page of records in change order. docs[i] is the record's JSON text, or for a record that
 * left the feed its tombstone {"deleted":true,"id":…,"reason":…} (customers: also "source";
 * merged: also "merged_into"), which carries no other data. */
struct sd_record_page {
    char **docs;
    int64_t *seqs;
    size_t n;
    bool has_more;
};
void sd_record_page_release(struct sd_record_page *p);

/* A connector instance as configured (issue #3). settings and mapping are JSON texts; settings
 * include secrets, which only the connector itself may see. */
struct sd_connector_conf {
    char *id;        /* "con_" + 16 hex */
    int64_t tenant_id;
    char *client_id; /* filled by get/list */
    enum sd_env env;
    char *type;      /* a name in the connector registry */
    char *schedule;  /* see core/schedule.h */
    char *settings;
    char *mapping;
    int64_t run_requested_usec; /* "run now" requests; the scheduler runs when this is newer */
    int64_t created_usec;
    int64_t updated_usec;
};
void sd_connector_conf_release(struct sd_connector_conf *c);
void sd_connector_confs_free(struct sd_connector_conf *v, size_t n);

struct sd_idem_entry {
    char body_hash[65];
    int status;
    char *response; /* JSON body of the first answer */
    int64_t created_usec;
};

/* The write-ahead log, for /metrics and warnings (a backend without one leaves log_stats NULL:
 * the wrapper answers zeros). */
struct sd_store_log_stats {
    int64_t frames; /* pages in the log after the last commit (0 once reset) */
    int64_t bytes;  /* size of the log file on disk */
    bool pinned;    /* a read transaction keeps the log from being checkpointed past its
                     * reset size */
};

struct sd_store_ops {
    const char *name;
    /* location: a data directory for SQLite (files DIR/stagedoor.db and DIR/control.db), a
     * conninfo for PG. Opening an up-to-date store waits for no lock. */
    int (*open)(const char *location, struct sd_store **ret);
    void (*close)(struct sd_store *s);

    /* control plane */
    int (*tenant_create)(struct sd_store *s, const char *client_id, const char *name);
    int (*tenant_get)(struct sd_store *s, const char *client_id, struct sd_tenant *ret);
    int (*tenant_list)(struct sd_store *s, struct sd_tenant **ret, size_t *ret_n);
    int (*tenant_set_limits)(struct sd_store *s, const char *client_id, int64_t per_minute,
                             int64_t burst);
    int (*key_insert)(struct sd_store *s, const char *key_id, const char *client_id,
                      enum sd_env env, const char *hash_hex);
    int (*key_list)(struct sd_store *s, const char *client_id, struct sd_key_info **ret,
                    size_t *ret_n);
    int (*key_revoke)(struct sd_store *s, const char *key_id);
    /* Changes whenever a control-plane call commits (any process). */
    int (*settings_version)(struct sd_store *s, int64_t *ret);
    /* All tenants and all keys (revoked ones too, with hash_hex), for the auth cache. */
    int (*auth_snapshot)(struct sd_store *s, struct sd_tenant **ret_t, size_t *ret_nt,
                         struct sd_key_info **ret_k, size_t *ret_nk);

    /* Connectors (control plane). put: create (-EEXIST if the id exists) or update (type, env
     * and tenant stay; -ENOENT if missing). list: tenant_id 0 = every tenant. delete removes the
     * state too. request_run records a "run now" at usec. */
    int (*connector_put)(struct sd_store *s, const struct sd_connector_conf *c, bool create);
    int (*connector_get)(struct sd_store *s, const char *id, struct sd_connector_conf *ret);
    int (*connector_list)(struct sd_store *s, int64_t tenant_id, struct sd_connector_conf **ret,
                          size_t *ret_n);
    int (*connector_delete)(struct sd_store *s, const char *id);
    int (*connector_request_run)(struct sd_store *s, const char *id, int64_t usec);

    /* Connector run leases (obligation 6): which node runs a connector instance now. Any
     * thread; each call is one atomic statement in its own durable transaction, bumps no
     * settings version, and never holds anything past its return. Time is the store's clock
     * (SQLite: the host's, which every process on one data file shares; PostgreSQL: the
     * server's, so nodes with skewed clocks agree on expiry).
     * take: owner (a node id, at most SD_LEASE_OWNER_MAX bytes) holds the lease of connector
     * `id` until now + lease_usec, and *ret_fence receives its fencing token, a number that
     * grows with every take of this lease (across expiry, release and takeover; it never goes
     * back, not even when the connector is deleted). -EBUSY (nothing changed) if another owner
     * holds an unexpired lease, its owner then in *ret_holder (heap; ret_holder may be NULL);
     * a lease of the same owner is taken again with a new token, and so is an unexpired lease
     * of `gone_owner` (NULL: none), an owner the caller knows has ended (its process is gone),
     * so a restarted node need not wait out a dead one's lease. The connector need not exist
     * (the lease names an id, not a row).
     * renew: the lease with token `fence` now lasts until now + lease_usec; -ESTALE if fence is
     * no longer its token (taken over) or it was released.
     * release: the lease with token `fence` ends now (takeable at once); -ESTALE as renew.
     * A lease that expired but was not taken over still renews and releases with its token. */
    int (*run_lease_take)(struct sd_store *s, const char *id, const char *owner,
                          const char *gone_owner, int64_t lease_usec, int64_t *ret_fence,
                          char **ret_holder);
    int (*run_lease_renew)(struct sd_store *s, const char *id, int64_t fence, int64_t lease_usec);
    int (*run_lease_release)(struct sd_store *s, const char *id, int64_t fence);

    /* write path — writer thread only */
    int (*write_begin)(struct sd_store *s);
    int (*write_commit)(struct sd_store *s); /* 0 only once durable (fsync done) */
    int (*write_rollback)(struct sd_store *s);
    int (*savepoint)(struct sd_store *s);
    int (*savepoint_release)(struct sd_store *s);
    int (*savepoint_rollback)(struct sd_store *s); /* also restores the seq counter */
    /* Apply events (upsert; duplicate-performance detection → alias + warning; one re-sent as
     * stored counts in n_unchanged), then customers (upsert; likewise), then sales (insert;
     * reference checks; duplicate invoice → 409; with b->upsert_sales a stored sale with an
     * identical document is left as it is and counted in n_unchanged, one with other content is
     * replaced). On outcome != SD_APPLY_OK the caller rolls back the savepoint. Returns 0 (see res->outcome)
     * or -EIO.
     * An event or customer update MERGES into the stored document as an RFC 7396 merge patch:
     * members the record leaves out keep their stored values, a member whose value is null is
     * removed (objects merge member by member, any other value replaces); a new record is
     * stored without its null members. The store does not otherwise interpret the document
     * (SQLite: json_patch; PostgreSQL: a merge-patch function over jsonb — || merges one level
     * and keeps nulls, so it recurses into objects and deletes the keys the patch nulls).
     * "Unchanged" compares the merged result.
     * Every row written keeps b->origin. A record whose remote_version is not 0 and below the
     * stored one (the highest seen) is left as it is: counted in n_unchanged and n_stale. */
    int (*apply_ingest)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                        const struct sd_batch *b, struct sd_apply_result *res);
    /* Replace an existing sale (same invoice_number); res->outcome OK, NOT_FOUND or REFUSED
     * (reference or lifecycle errors). */
    int (*replace_sale)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                        const struct sd_sale_rec *sale, struct sd_apply_result *res);
    /* Delete one record and leave its tombstone, numbered with the next seq, in the current
     * transaction (so a change cursor sees it exactly once, after the record's last change).
     * id: event_id (not an alias: the event's aliases go with it; its sales stay), customer_id
     * (source NULL: the only source holding it, -ENOTUNIQ if several do; the record leaves its
     * profile, which is removed once empty) or invoice_number. merged_into: with
     * SD_TOMBSTONE_MERGED, the surviving record's id (kept in the tombstone), else NULL; when
     * it exists, a merged event's id and aliases become aliases of it and its sales count for
     * it, and a merged customer's sales (same source) name it, each with a new seq. origin as
     * sd_batch.origin. Returns 1 deleted, 0 no such record (nothing written: deleting twice
     * is harmless), -ENOTUNIQ, -EINVAL, -EIO. */
    int (*delete_record)(struct sd_store *s, int64_t tenant_id, enum sd_env env, enum sd_kind kind,
                         const char *id, const char *source, enum sd_tombstone_reason reason,
                         const char *merged_into, const char *origin);
    /* Keeps the first entry: -EEXIST if the key is already stored (committed or earlier in
     * this transaction) and less than 24 h old; an older entry is replaced. */
    int (*idem_put)(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *key,
                    const struct sd_idem_entry *e);
    /* Delete idempotency entries created before the given time. */
    int (*idem_purge)(struct sd_store *s, int64_t before_usec);
    /* Replace a connector's state document (cursor and run status), in the current
     * transaction: committed together with the records of the same job. */
    int (*connector_state_put)(struct sd_store *s, const char *id, const char *doc);
    /* The same, for a run that holds the connector's run lease (above): in the same
     * transaction, the put first checks that `fence` is still the lease's current token and not
     * released, and fails with -ESTALE otherwise (nothing written; the caller's job fails, so
     * its savepoint and the records it applied go with it). The check holds until COMMIT: a
     * take on any node cannot slip between it and the commit (SQLite: the writer holds the data
     * file's write lock; PostgreSQL: the lease row is locked FOR SHARE). A lease that expired
     * but was not taken over still passes: no one else has run since. */
    int (*connector_state_put_fenced)(struct sd_store *s, const char *id, const char *doc,
                                      int64_t fence);

    /* read path — any thread */
    int (*idem_get)(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *key,
                    struct sd_idem_entry *ret); /* -ENOENT if none; caller frees ret->response */
    /* limit is clamped to a backend maximum (SQLite: 10000); has_more says whether more rows
     * with a greater seq exist. */
    int (*list_records)(struct sd_store *s, enum sd_kind kind, int64_t tenant_id, enum sd_env env,
                        int64_t after_seq, size_t limit, struct sd_record_page *ret);
    /* id: event_id (aliases resolve to their event), customer_id or invoice_number. */
    int (*get_record)(struct sd_store *s, enum sd_kind kind, int64_t tenant_id, enum sd_env env,
                      const char *id, char **ret_doc);
    int (*count_records)(struct sd_store *s, enum sd_kind kind, int64_t tenant_id, enum sd_env env,
                         int64_t *ret);
    /* One customer record, its doc with "source" set to the record's source. source NULL: the
     * id must be held by one source only; if several hold it, -ENOTUNIQ and *ret_sources (heap
     * array of heap strings, sorted, at most 100) and *ret_n. -ENOENT if none. One snapshot. */
    int (*get_customer)(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *id,
                        const char *source, char **ret_doc, char ***ret_sources, size_t *ret_n);
    /* Writer thread only, inside a write job: the customer record (source, id) as the write
     * transaction sees it (the group's uncommitted writes included), its doc with "source"
     * set. -ENOENT if none. For a record derived from the stored one in the same transaction. */
    int (*get_customer_in_write)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                                 const char *id, const char *source, char **ret_doc);
    /* The committed state document of a connector; -ENOENT if it never ran. */
    int (*connector_state_get)(struct sd_store *s, const char *id, char **ret_doc);
    /* A file transport's check before it writes anything of a file: the references of b's
     * sales as one committed snapshot sees them. For each sale: its event (an alias counts)
     * and its customer (a customer of b->source; SD_ANON_CUSTOMER needs none) must exist, else
     * an issue is added at "/sales/<index>/event_id" or "/sales/<index>/customer_id" in the
     * words apply_ingest uses. *ret_needs_writer (never cleared) is set when a sale's
     * acceptance depends on more than its references, which only apply_ingest can judge: it
     * refunds another sale (refund_of), or its invoice is stored with another document (the
     * lifecycle rules judge the change). A sale stored with this very document is fine.
     * Returns the number of issues added, or -EINVAL / -EIO. Writes nothing. */
    int (*check_sale_refs)(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                           const struct sd_batch *b, struct sd_issues *errors,
                           bool *ret_needs_writer);

    /* Audiences (issue #4): profiles, segments, the outbox — store/audience.h. */
    const struct sd_store_profile_ops *profiles;
    const struct sd_store_segment_ops *segments;
    const struct sd_store_outbox_ops *outbox;
    /* The quota ledger per vendor credential (control plane): store/quota.h. */
    const struct sd_store_quota_ops *quota;
    /* Raw-first vendor webhooks: store/inbound.h. */
    const struct sd_store_inbound_ops *inbound;
    /* Key use, traffic counters, segment sizes, outbox figures: store/observe.h. */
    const struct sd_store_observe_ops *observe;
    /* Connector run history: store/runs.h. */
    const struct sd_store_runs_ops *runs;
    /* Alert settings and history: store/alerts.h. */
    const struct sd_store_alert_ops *alerts;

    int (*log_stats)(struct sd_store *s, struct sd_store_log_stats *ret);
    /* Any thread, a hint: true while a settings write (connectors, segments, targets,
     * deliveries) waits for the data's write lock that the write path holds or is about to
     * take. A long writer job ends early for it, so that the wait stays within the job's time
     * bound. A backend whose settings writes never wait behind the writer answers false (NULL:
     * the wrapper answers false). */
    bool (*write_waiting)(struct sd_store *s);
    /* Writer only, inside write_begin…commit: takes and frees again SD_STORE_PROBE_BYTES of new
     * space, so that the commit shows whether writes fit again; -ENOSPC if not. */
    int (*space_probe)(struct sd_store *s);
    /* Any thread: a token bucket shared by every process on the store (the per-tenant request
     * limits of several nodes). The bucket `key` refills at per_minute/60 tokens a second up to
     * burst (a new bucket starts full); then min(want, its whole tokens) are taken, in one
     * atomic step whichever process asks. *ret_granted: tokens taken (0..want); *ret_left:
     * tokens left after. NULL for a backend one process serves (SQLite): limits stay in
     * memory. */
    int (*rate_take)(struct sd_store *s, uint64_t key, int64_t per_minute, int64_t burst,
                     int64_t want, int64_t now_usec, int64_t *ret_granted, double *ret_left);
};

/* The SQLite backend (embedded default). */
extern const struct sd_store_ops sd_store_sqlite_ops;
/* The PostgreSQL backend (location: a libpq conninfo or postgresql:// URL). */
extern const struct sd_store_ops sd_store_pg_ops;

/* A store handle: the ops table plus the backend's state. */
struct sd_store_handle;
/* For the wrappers of the store's sub-interfaces (store/audience.c): the handle's parts. */
const struct sd_store_ops *sd_store_handle_ops(struct sd_store_handle *h);
struct sd_store *sd_store_handle_backend(struct sd_store_handle *h);

/* Open by kind: "sqlite" (location = data dir) or "postgresql" (location = a conninfo or
 * postgresql:// URL). Returns 0 or -errno. */
int sd_store_open(const char *kind, const char *location, struct sd_store_handle **ret);
void sd_store_close(struct sd_store_handle *h);
/* The write-ahead log's size; zeros for a backend without one. Any thread. */
void sd_store_log_stats(struct sd_store_handle *h, struct sd_store_log_stats *ret);
/* A settings write waits for the data's write lock (ops.write_waiting); false for a backend
 * without the op. Any thread. */
bool sd_store_write_waiting(struct sd_store_handle *h);
#define SD_STORE_PROBE_BYTES (64 * 1024)
int sd_store_space_probe(struct sd_store_handle *h);
/* ops.rate_take; -ENOTSUP for a backend without shared buckets. */
bool sd_store_has_shared_rate(struct sd_store_handle *h);
int sd_store_rate_take(struct sd_store_handle *h, uint64_t key, int64_t per_minute, int64_t burst,
                       int64_t want, int64_t now_usec, int64_t *ret_granted, double *ret_left);

/* Wrappers: one per op, same arguments with the handle in front. */
int sd_store_tenant_create(struct sd_store_handle *h, const char *client_id, const char *name);
int sd_store_tenant_get(struct sd_store_handle *h, const char *client_id, struct sd_tenant *ret);
int sd_store_tenant_list(struct sd_store_handle *h, struct sd_tenant **ret, size_t *ret_n);
int sd_store_tenant_set_limits(struct sd_store_handle *h, const char *client_id, int64_t per_minute,
                               int64_t burst);
int sd_store_key_insert(struct sd_store_handle *h, const char *key_id, const char *client_id,
                        enum sd_env env, const char *hash_hex);
int sd_store_key_list(struct sd_store_handle *h, const char *client_id, struct sd_key_info **ret,
                      size_t *ret_n);
int sd_store_key_revoke(struct sd_store_handle *h, const char *key_id);
int sd_store_settings_version(struct sd_store_handle *h, int64_t *ret);
int sd_store_auth_snapshot(struct sd_store_handle *h, struct sd_tenant **ret_t, size_t *ret_nt,
                           struct sd_key_info **ret_k, size_t *ret_nk);
int sd_store_connector_put(struct sd_store_handle *h, const struct sd_connector_conf *c,
                           bool create);
int sd_store_connector_get(struct sd_store_handle *h, const char *id, struct sd_connector_conf *ret);
int sd_store_connector_list(struct sd_store_handle *h, int64_t tenant_id,
                            struct sd_connector_conf **ret, size_t *ret_n);
int sd_store_connector_delete(struct sd_store_handle *h, const char *id);
int sd_store_connector_request_run(struct sd_store_handle *h, const char *id, int64_t usec);
int sd_store_connector_state_put(struct sd_store_handle *h, const char *id, const char *doc);
int sd_store_connector_state_get(struct sd_store_handle *h, const char *id, char **ret_doc);
int sd_store_connector_state_put_fenced(struct sd_store_handle *h, const char *id,
                                       const char *doc, int64_t fence);
/* A lease owner: a node id (core/scheduler.c: hostname, pid and random bits). */
#define SD_LEASE_OWNER_MAX 200
int sd_store_run_lease_take(struct sd_store_handle *h, const char *id, const char *owner,
                            const char *gone_owner, int64_t lease_usec, int64_t *ret_fence,
                            char **ret_holder);
int sd_store_run_lease_renew(struct sd_store_handle *h, const char *id, int64_t fence,
                             int64_t lease_usec);
int sd_store_run_lease_release(struct sd_store_handle *h, const char *id, int64_t fence);
int sd_store_write_begin(struct sd_store_handle *h);
int sd_store_write_commit(struct sd_store_handle *h);
int sd_store_write_rollback(struct sd_store_handle *h);
int sd_store_savepoint(struct sd_store_handle *h);
int sd_store_savepoint_release(struct sd_store_handle *h);
int sd_store_savepoint_rollback(struct sd_store_handle *h);
int sd_store_apply_ingest(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                          const struct sd_batch *b, struct sd_apply_result *res);
int sd_store_replace_sale(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                          const struct sd_sale_rec *sale, struct sd_apply_result *res);
int sd_store_idem_put(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                      const char *key, const struct sd_idem_entry *e);
int sd_store_idem_purge(struct sd_store_handle *h, int64_t before_usec);
int sd_store_idem_get(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                      const char *key, struct sd_idem_entry *ret);
int sd_store_list_records(struct sd_store_handle *h, enum sd_kind kind, int64_t tenant_id,
                          enum sd_env env, int64_t after_seq, size_t limit,
                          struct sd_record_page *ret);
int sd_store_get_record(struct sd_store_handle *h, enum sd_kind kind, int64_t tenant_id,
                        enum sd_env env, const char *id, char **ret_doc);
int sd_store_check_sale_refs(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                             const struct sd_batch *b, struct sd_issues *errors,
                             bool *ret_needs_writer);
int sd_store_count_records(struct sd_store_handle *h, enum sd_kind kind, int64_t tenant_id,
                           enum sd_env env, int64_t *ret);
int sd_store_delete_record(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                           enum sd_kind kind, const char *id, const char *source,
                           enum sd_tombstone_reason reason, const char *merged_into,
                           const char *origin);
int sd_store_get_customer(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                          const char *id, const char *source, char **ret_doc, char ***ret_sources,
                          size_t *ret_n);
int sd_store_get_customer_in_write(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                                   const char *id, const char *source, char **ret_doc);

#endif
