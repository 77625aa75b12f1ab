/* pg_records.h — the record operations of the PostgreSQL backend (pg_write.c: the write path;
 * pg_read.c: the record reads), as documented in store.h, and the lookups both sides share so
 * that the import check and apply_ingest agree on what exists. Private to src/store/postgres/.
 *
 * The lookups run on the connection given (the writer's inside its transaction, or a pool
 * connection) and return 1 found, 0 not found, or a negative errno after logging. */
#ifndef SD_PG_RECORDS_H
#define SD_PG_RECORDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pg_internal.h"

/* Run a statement on the writer where every key was looked up first: as sd_pg_exec, but a
 * constraint violation is a backend failure, logged as `msg` with the slot, and -EIO. */
int sd_pg_exec_strict(struct pgconn *c, const char *msg, unsigned slot, const char *sql,
                      const struct sd_pg_params *p, PGresult **ret);
/* sd_pg_exec_strict as the write path, the links and the facts log it ("constraint violated
 * on the write path"). */
int sd_pg_write_exec(struct pgconn *c, unsigned slot, const char *sql, const struct sd_pg_params *p,
                     PGresult **ret);
/* Parameters $1 tenant, $2 env, $3 id (an integer key). */
void sd_pg_p_scope_id(struct sd_pg_params *p, int64_t tenant_id, enum sd_env env, int64_t id);

/* Run a read on a pool connection (taken and given back here): as sd_pg_exec. */
int sd_pg_pool_exec(struct sd_store *s, unsigned slot, const char *sql,
                    const struct sd_pg_params *p, PGresult **ret);

/* The canonical id of event `id` (an alias resolves to its event) into *out (reset first;
 * out NULL: existence only). */
int sd_pg_event_resolve(struct pgconn *c, int64_t tenant_id, enum sd_env env, const char *id,
                        struct sd_buf *out);
/* Customer `cid` of `source` exists. */
int sd_pg_customer_exists(struct pgconn *c, int64_t tenant_id, enum sd_env env, const char *source,
                          const char *cid);
/* The stored document of sale `invoice` into *out (reset first). */
int sd_pg_sale_doc(struct pgconn *c, int64_t tenant_id, enum sd_env env, const char *invoice,
                   struct sd_buf *out);

/* pg_write.c — writer thread only, inside write_begin … commit. */
int sd_pg_apply_ingest(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                       const struct sd_batch *b, struct sd_apply_result *res);
int sd_pg_replace_sale(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                       const struct sd_sale_rec *sale, struct sd_apply_result *res);
int sd_pg_delete_record(struct sd_store *s, int64_t tenant_id, enum sd_env env, enum sd_kind kind,
                        const char *id, const char *source, enum sd_tombstone_reason reason,
                        const char *merged_into, const char *origin);
/* Write the tombstone of a record that has just left (kind, id; source for customers, else
 * NULL) with the next seq, in the current transaction. Returns 0 or a negative errno. */
int sd_pg_tombstone_put(struct sd_store *s, int64_t tenant_id, enum sd_env env, enum sd_kind kind,
                        const char *id, const char *source, enum sd_tombstone_reason reason,
                        const char *merged_into, const char *origin, int64_t now);
int sd_pg_idem_put(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *key,
                   const struct sd_idem_entry *e);
int sd_pg_idem_purge(struct sd_store *s, int64_t before_usec);
int sd_pg_get_customer_in_write(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                                const char *id, const char *source, char **ret_doc);

/* pg_read.c — any thread; each call borrows a pool connection. */
int sd_pg_idem_get(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *key,
                   struct sd_idem_entry *ret);
int sd_pg_list_records(struct sd_store *s, enum sd_kind kind, int64_t tenant_id, enum sd_env env,
                       int64_t after_seq, size_t limit, struct sd_record_page *ret);
int sd_pg_get_record(struct sd_store *s, enum sd_kind kind, int64_t tenant_id, enum sd_env env,
                     const char *id, char **ret_doc);
int sd_pg_count_records(struct sd_store *s, enum sd_kind kind, int64_t tenant_id, enum sd_env env,
                        int64_t *ret);
int sd_pg_get_customer(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *id,
                       const char *source, char **ret_doc, char ***ret_sources, size_t *ret_n);
int sd_pg_check_sale_refs(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                          const struct sd_batch *b, struct sd_issues *errors,
                          bool *ret_needs_writer);

#endif
