/* sqlite_sql.c — the text of every SQL statement the SQLite backend runs, one entry per
 * enum stmt_id (sqlite_internal.h). Each is prepared once per connection, on first use, by
 * sd_sqlite_stmt(). Values are always bound as ?N parameters, never formatted into the text;
 * statements that share a row shape (the sale insert and update, every scoped lookup) share
 * the parameter numbering so one bind helper serves them. Where a statement encodes a rule
 * (an alias keeps the event's id, an opt-out is never cleared, an idempotency entry younger
 * than 24 h is kept), the rule is stated next to it. */
#include "sqlite_internal.h"

/* A stored record's content is kept when the update is stale (an older remote version) or
 * changes nothing. A record re-sent exactly as stored (a batch transport re-reading a feed) is
 * recognised by its text first, which spares the merge (OR stops at the first true). */
#define EV_STALE "(?9 <> 0 AND remote_version > ?9)"
#define EV_MERGED "json_set(json_patch(doc, ?6), '$.event_id', ?3)"
#define EV_KEEP "(" EV_STALE " OR ((doc IS ?6 OR doc IS " EV_MERGED ") AND dup_key IS ?5))"
#define CU_STALE "(?11 <> 0 AND customers.remote_version > ?11)"
/* The e-mail key after an update: the record's own, else (a source whose customers may have
 * none) the stored one when the record leaves "email" out (its document is merged), none when
 * it sends null (that clears the address in the document too). */
#define CU_EMAIL_KEY                                                                               \
    "coalesce(excluded.email_key, CASE WHEN json_type(?7, '$.email') = 'null' THEN NULL"          \
    " ELSE customers.email_key END)"
#define CU_KEEP                                                                                    \
    "(" CU_STALE " OR ((customers.doc IS ?7 OR customers.doc IS json_patch(customers.doc, ?7))"    \
    " AND customers.email_key IS " CU_EMAIL_KEY                                                    \
    " AND customers.ad_opt_out IS coalesce(excluded.ad_opt_out, customers.ad_opt_out)))"
/* The folded copies of document fields that segments filter on (seg_post_code, seg_city:
 * 0014_segment_customer_fields.sql), always sd_fold(json_extract(doc, '$.<key>')) of the
 * stored document. The update's document is the stored one patched with ?7 (RFC 7396): a key
 * that ?7 leaves out keeps the stored value, one it sends (null included: the patch removes
 * it) takes ?7's. */
#define CU_POST_CODE_NEW "sd_fold(json_extract(?7, '$.post_code'))"
#define CU_CITY_NEW "sd_fold(json_extract(?7, '$.city'))"
#define CU_POST_CODE                                                                               \
    "CASE WHEN " CU_STALE " OR json_type(?7, '$.post_code') IS NULL THEN customers.seg_post_code" \
    " ELSE " CU_POST_CODE_NEW " END"
#define CU_CITY                                                                                    \
    "CASE WHEN " CU_STALE " OR json_type(?7, '$.city') IS NULL THEN customers.seg_city"           \
    " ELSE " CU_CITY_NEW " END"
/* A new document without its null members (only parsed when it may have one). */
#define EV_DOC_NEW "CASE WHEN instr(?6, 'null') THEN json_patch('{}', ?6) ELSE ?6 END"
#define CU_DOC_NEW "CASE WHEN instr(?7, 'null') THEN json_patch('{}', ?7) ELSE ?7 END"
/* The tombstones after cursor ?3 as feed entries; the kind's number follows. */
#define TOMBSTONES                                                                                 \
    "SELECT seq, json_patch(json_object('deleted', json('true'), 'id', record_id,"                 \
    " 'reason', reason), json_object('source', source, 'merged_into', merged_into))"               \
    " FROM tombstones WHERE tenant_id = ?1 AND env = ?2 AND seq > ?3 AND kind = "

const char *const sd_sqlite_sql[N_STMT] = {
    [ST_BEGIN] = "BEGIN",
    [ST_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SAVEPOINT] = "SAVEPOINT sd",
    [ST_RELEASE] = "RELEASE sd",
    [ST_ROLLBACK_TO] = "ROLLBACK TO sd",
    [ST_USER_VERSION] = "PRAGMA user_version",
    [ST_MAX_SEQ] = "SELECT max((SELECT coalesce(max(seq), 0) FROM events),"
                   " (SELECT coalesce(max(seq), 0) FROM customers),"
                   " (SELECT coalesce(max(seq), 0) FROM sales),"
                   " (SELECT coalesce(max(seq), 0) FROM tombstones))",

    [ST_SETTINGS_BUMP] = "UPDATE meta SET v = v + 1 WHERE k = 'settings_version'",
    [ST_SETTINGS_GET] = "SELECT v FROM meta WHERE k = 'settings_version'",
    [ST_TENANT_INSERT] = "INSERT INTO tenants (client_id, name, created_usec) VALUES (?1, ?2, ?3)",
    [ST_TENANT_GET] = "SELECT id, client_id, name, per_minute, burst, created_usec FROM tenants"
                      " WHERE client_id = ?1",
    [ST_TENANT_LIST] = "SELECT id, client_id, name, per_minute, burst, created_usec FROM tenants"
                       " ORDER BY id",
    [ST_TENANT_ID] = "SELECT id FROM tenants WHERE client_id = ?1",
    [ST_TENANT_SET_LIMITS] = "UPDATE tenants SET per_minute = ?2, burst = ?3 WHERE client_id = ?1",
    [ST_KEY_INSERT] = "INSERT INTO api_keys (key_id, tenant_id, env, hash_hex, created_usec)"
                      " VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_KEY_LIST] = "SELECT k.key_id, t.client_id, k.tenant_id, k.env, NULL, k.created_usec,"
                    " k.revoked_usec, k.last_used_usec"
                    " FROM api_keys k JOIN tenants t ON t.id = k.tenant_id"
                    " WHERE t.client_id = ?1 ORDER BY k.created_usec, k.key_id",
    [ST_KEY_LIST_ALL] = "SELECT k.key_id, t.client_id, k.tenant_id, k.env, k.hash_hex,"
                        " k.created_usec, k.revoked_usec, k.last_used_usec FROM api_keys k"
                        " JOIN tenants t ON t.id = k.tenant_id ORDER BY k.created_usec, k.key_id",
    [ST_KEY_REVOKE] =
        "UPDATE api_keys SET revoked_usec = ?2 WHERE key_id = ?1 AND revoked_usec = 0",
    [ST_KEY_EXISTS] = "SELECT 1 FROM api_keys WHERE key_id = ?1",

    /* An update merges (RFC 7396 merge patch, json_patch): a member the record leaves out keeps
     * its stored value, a member sent as null is removed; json_set: an update sent under an
     * alias id keeps the event's own id in the document (store.h states the merge every
     * backend makes).
     * Content unchanged → seq, updated_usec and origin stay, so a change cursor never returns
     * an event that was merely re-sent (batch connectors re-read whole feeds). RETURNING seq: a
     * seq other than ?4 means the event was left as it was (counted, n_unchanged); the customer
     * upsert below does the same.
     * An older remote version never overwrites a newer one: with ?9 (the record's remote
     * version, 0 = none) below the stored one, nothing but the kept maximum changes, and
     * RETURNING remote_version > ?9 tells the caller so (n_stale). */
    [ST_EVENT_UPDATE] =
        "UPDATE events SET"
        " seq = CASE WHEN " EV_KEEP " THEN seq ELSE ?4 END,"
        " updated_usec = CASE WHEN " EV_KEEP " THEN updated_usec ELSE ?7 END,"
        " origin = CASE WHEN " EV_KEEP " THEN origin ELSE ?8 END,"
        " dup_key = CASE WHEN " EV_STALE " THEN dup_key ELSE ?5 END,"
        " doc = CASE WHEN " EV_STALE " THEN doc ELSE " EV_MERGED " END,"
        " remote_version = max(remote_version, ?9)"
        " WHERE tenant_id = ?1 AND env = ?2 AND event_id = ?3 RETURNING seq, remote_version",
    /* A new record's explicit nulls are dropped too (json_patch onto {}), as an update's are. */
    [ST_EVENT_INSERT] = "INSERT INTO events (tenant_id, env, event_id, seq, dup_key, doc,"
                        " updated_usec, origin, remote_version) VALUES (?1, ?2, ?3, ?4, ?5,"
                        " " EV_DOC_NEW ", ?7, ?8, ?9)",
    [ST_EVENT_BY_DUP] = "SELECT event_id FROM events WHERE tenant_id = ?1 AND env = ?2"
                        " AND dup_key = ?3 LIMIT 1",
    [ST_ALIAS_GET] = "SELECT event_id FROM event_aliases WHERE tenant_id = ?1 AND env = ?2"
                     " AND alias_id = ?3",
    [ST_ALIAS_INSERT] = "INSERT INTO event_aliases (tenant_id, env, alias_id, event_id)"
                        " VALUES (?1, ?2, ?3, ?4)",
    [ST_EVENT_RESOLVE] = "SELECT event_id FROM events WHERE tenant_id = ?1 AND env = ?2"
                         " AND event_id = ?3 UNION ALL SELECT event_id FROM event_aliases"
                         " WHERE tenant_id = ?1 AND env = ?2 AND alias_id = ?3 LIMIT 1",
    /* Merged as events are (above); ?10 origin, ?11 remote version. An omitted opt-out flag
     * never clears a known one: losing an opt-out is the costly mistake (ads sent against the
     * customer's wish). */
    [ST_CUSTOMER_UPSERT] =
        "INSERT INTO customers (tenant_id, env, customer_id, seq, email_key, ad_opt_out, doc,"
        " updated_usec, source, origin, remote_version, seg_post_code, seg_city)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, " CU_DOC_NEW ", ?8, ?9, ?10, ?11,"
        " " CU_POST_CODE_NEW ", " CU_CITY_NEW ")"
        " ON CONFLICT (tenant_id, env, source, customer_id) DO UPDATE SET"
        " seq = CASE WHEN " CU_KEEP " THEN customers.seq ELSE excluded.seq END,"
        " updated_usec = CASE WHEN " CU_KEEP " THEN customers.updated_usec"
        " ELSE excluded.updated_usec END,"
        " origin = CASE WHEN " CU_KEEP " THEN customers.origin ELSE excluded.origin END,"
        " email_key = CASE WHEN " CU_STALE " THEN customers.email_key ELSE " CU_EMAIL_KEY " END,"
        " ad_opt_out = CASE WHEN " CU_STALE " THEN customers.ad_opt_out"
        " ELSE coalesce(excluded.ad_opt_out, customers.ad_opt_out) END,"
        " doc = CASE WHEN " CU_STALE " THEN customers.doc ELSE json_patch(customers.doc, ?7) END,"
        " remote_version = max(customers.remote_version, excluded.remote_version),"
        " seg_post_code = " CU_POST_CODE ", seg_city = " CU_CITY " RETURNING seq, remote_version",
    /* A sale's customer is a customer of the same source. */
    [ST_CUSTOMER_EXISTS] = "SELECT 1 FROM customers WHERE tenant_id = ?1 AND env = ?2"
                           " AND customer_id = ?3 AND source = ?4",
    [ST_SALE_INSERT] =
        "INSERT INTO sales (tenant_id, env, invoice_number, seq, event_id, event_ref,"
        " customer_id, purchase_datetime, sales_price_minor, currency, doc, updated_usec, source,"
        " order_type, status, quantity, refunded_quantity, refunded_minor, net_quantity,"
        " net_minor, status_changed, expires, attended_quantity, refund_of, rr_quantity,"
        " rr_minor, origin, remote_version)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,"
        " ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28)"
        " ON CONFLICT (tenant_id, env, invoice_number) DO NOTHING",
    [ST_SALE_EXISTS] = "SELECT 1 FROM sales WHERE tenant_id = ?1 AND env = ?2"
                       " AND invoice_number = ?3",
    /* A sale is replaced whole, unless its remote version (?28) is older than the stored one:
     * then no row changes. ?27 origin, ?28 remote version: numbered after the lifecycle's
     * columns so both sets of columns share one numbering. */
    [ST_SALE_UPDATE] = "UPDATE sales SET seq = ?4, event_id = ?5, event_ref = ?6,"
                       " customer_id = ?7, purchase_datetime = ?8, sales_price_minor = ?9,"
                       " currency = ?10, doc = ?11, updated_usec = ?12, source = ?13,"
                       " order_type = ?14, status = ?15, quantity = ?16,"
                       " refunded_quantity = ?17, refunded_minor = ?18, net_quantity = ?19,"
                       " net_minor = ?20, status_changed = ?21, expires = ?22,"
                       " attended_quantity = (SELECT CASE WHEN ?14 <> 'sale' THEN ?23"
                       " WHEN ?23 IS NULL THEN nullif(min(?16, count(*)), 0)"
                       " ELSE max(?23, min(?16, count(*))) END FROM sale_scans"
                       " WHERE tenant_id = ?1 AND env = ?2 AND invoice_number = ?3),"
                       " refund_of = ?24, rr_quantity = ?25,"
                       " rr_minor = ?26, origin = ?27, remote_version = max(remote_version, ?28)"
                       " WHERE tenant_id = ?1 AND env = ?2 AND invoice_number = ?3"
                       " AND NOT (?28 <> 0 AND remote_version > ?28)",
    [ST_IDEM_PUT] = "INSERT INTO idempotency (tenant_id, env, idem_key, body_hash, status,"
                    " response, created_usec) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                    " ON CONFLICT (tenant_id, env, idem_key) DO UPDATE SET"
                    " body_hash = excluded.body_hash, status = excluded.status,"
                    " response = excluded.response, created_usec = excluded.created_usec"
                    " WHERE idempotency.created_usec < excluded.created_usec - 86400000000",
    [ST_IDEM_PURGE] = "DELETE FROM idempotency WHERE created_usec < ?1",
    [ST_SALE_DOC] = "SELECT doc FROM sales WHERE tenant_id = ?1 AND env = ?2"
                    " AND invoice_number = ?3",
    [ST_CONNECTOR_STATE_PUT] =
        "INSERT INTO connector_state (connector_id, doc, updated_usec) VALUES (?1, ?2, ?3)"
        " ON CONFLICT (connector_id) DO UPDATE SET doc = excluded.doc,"
        " updated_usec = excluded.updated_usec",
    [ST_TOMBSTONE_INSERT] = "INSERT INTO tombstones (tenant_id, env, record_id, seq, kind, source,"
                            " reason, merged_into, origin, created_usec)"
                            " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    [ST_EVENT_DELETE] = "DELETE FROM events WHERE tenant_id = ?1 AND env = ?2 AND event_id = ?3",
    [ST_ALIASES_DELETE] = "DELETE FROM event_aliases WHERE tenant_id = ?1 AND env = ?2"
                          " AND event_id = ?3",
    /* LIMIT 2: one is the record, a second means the id is ambiguous without a source. */
    [ST_CUSTOMER_FIND] = "SELECT seq, source, profile_id FROM customers WHERE tenant_id = ?1"
                         " AND env = ?2 AND customer_id = ?3 AND (?4 IS NULL OR source = ?4)"
                         " ORDER BY source LIMIT 2",
    [ST_CUSTOMER_DELETE] = "DELETE FROM customers WHERE tenant_id = ?1 AND env = ?2 AND seq = ?3",
    [ST_SALE_DELETE] = "DELETE FROM sales WHERE tenant_id = ?1 AND env = ?2"
                       " AND invoice_number = ?3",
    /* An event merged into another: its aliases and its sales follow it (a sale's document
     * keeps the event id it was sent with, which now resolves through the alias). */
    [ST_ALIASES_REPOINT] = "UPDATE event_aliases SET event_id = ?4 WHERE tenant_id = ?1"
                           " AND env = ?2 AND event_id = ?3",
    [ST_SALES_REPOINT_EVENT] = "UPDATE sales SET event_ref = ?4 WHERE tenant_id = ?1 AND env = ?2"
                               " AND event_ref = ?3",
    /* A customer merged into another of its source: its sales name the survivor. */
    [ST_SALES_OF_CUSTOMER] = "SELECT invoice_number FROM sales WHERE tenant_id = ?1 AND env = ?2"
                             " AND source = ?4 AND customer_id = ?3",
    [ST_SALE_RECUSTOMER] = "UPDATE sales SET customer_id = ?4,"
                           " doc = json_set(doc, '$.customer_id', ?4), seq = ?5, updated_usec = ?6"
                           " WHERE tenant_id = ?1 AND env = ?2 AND invoice_number = ?3",

    [ST_CONNECTOR_INSERT] = "INSERT INTO connectors (id, tenant_id, env, type, schedule, settings,"
                            " mapping, created_usec, updated_usec)"
                            " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
    [ST_CONNECTOR_UPDATE] = "UPDATE connectors SET schedule = ?5, settings = ?6, mapping = ?7,"
                            " updated_usec = ?8 WHERE id = ?1",
    [ST_CONNECTOR_GET] = "SELECT c.id, c.tenant_id, t.client_id, c.env, c.type, c.schedule,"
                         " c.settings, c.mapping, c.run_requested_usec, c.created_usec,"
                         " c.updated_usec FROM connectors c JOIN tenants t ON t.id = c.tenant_id"
                         " WHERE c.id = ?1",
    [ST_CONNECTOR_LIST] = "SELECT c.id, c.tenant_id, t.client_id, c.env, c.type, c.schedule,"
                          " c.settings, c.mapping, c.run_requested_usec, c.created_usec,"
                          " c.updated_usec FROM connectors c JOIN tenants t ON t.id = c.tenant_id"
                          " WHERE c.tenant_id = ?1 ORDER BY c.created_usec, c.id",
    [ST_CONNECTOR_LIST_ALL] = "SELECT c.id, c.tenant_id, t.client_id, c.env, c.type, c.schedule,"
                              " c.settings, c.mapping, c.run_requested_usec, c.created_usec,"
                              " c.updated_usec FROM connectors c"
                              " JOIN tenants t ON t.id = c.tenant_id ORDER BY c.created_usec, c.id",
    [ST_CONNECTOR_DELETE] = "DELETE FROM connectors WHERE id = ?1",
    [ST_CONNECTOR_STATE_DELETE] = "DELETE FROM connector_state WHERE connector_id = ?1",
    [ST_CONNECTOR_REQUEST_RUN] = "UPDATE connectors SET run_requested_usec = ?2 WHERE id = ?1",
    [ST_CONNECTOR_STATE_GET] = "SELECT doc FROM connector_state WHERE connector_id = ?1",

    [ST_IDEM_GET] = "SELECT body_hash, status, response, created_usec FROM idempotency"
                    " WHERE tenant_id = ?1 AND env = ?2 AND idem_key = ?3",
    /* The change feed: live rows and tombstones of one kind, merged in seq order (each side
     * is read in seq order from its index, so the merge stops after LIMIT rows). A customer's
     * document shows its source. */
    [ST_LIST_EVENTS] = "SELECT seq, doc FROM events WHERE tenant_id = ?1 AND env = ?2"
                       " AND seq > ?3 UNION ALL " TOMBSTONES "0 ORDER BY seq LIMIT ?4",
    [ST_LIST_CUSTOMERS] = "SELECT seq, json_set(doc, '$.source', source) FROM customers"
                          " WHERE tenant_id = ?1 AND env = ?2 AND seq > ?3"
                          " UNION ALL " TOMBSTONES "1 ORDER BY seq LIMIT ?4",
    [ST_LIST_SALES] = "SELECT seq, doc FROM sales WHERE tenant_id = ?1 AND env = ?2"
                      " AND seq > ?3 UNION ALL " TOMBSTONES "2 ORDER BY seq LIMIT ?4",
    [ST_GET_EVENT] = "SELECT doc FROM events WHERE tenant_id = ?1 AND env = ?2 AND event_id = ?3"
                     " UNION ALL SELECT e.doc FROM event_aliases a JOIN events e"
                     " ON e.tenant_id = a.tenant_id AND e.env = a.env AND e.event_id = a.event_id"
                     " WHERE a.tenant_id = ?1 AND a.env = ?2 AND a.alias_id = ?3 LIMIT 1",
    /* One id may exist in several sources: the webhook's record first, then the oldest. */
    [ST_GET_CUSTOMER] =
        "SELECT json_set(doc, '$.source', source) FROM customers WHERE tenant_id = ?1 AND env = ?2"
        " AND customer_id = ?3 ORDER BY source <> 'webhook', seq LIMIT 1",
    [ST_GET_SALE] = "SELECT doc FROM sales WHERE tenant_id = ?1 AND env = ?2"
                    " AND invoice_number = ?3",
    [ST_COUNT_EVENTS] = "SELECT count(*) FROM events WHERE tenant_id = ?1 AND env = ?2",
    [ST_COUNT_CUSTOMERS] = "SELECT count(*) FROM customers WHERE tenant_id = ?1 AND env = ?2",
    [ST_COUNT_SALES] = "SELECT count(*) FROM sales WHERE tenant_id = ?1 AND env = ?2",
    /* One source (?4) or every source holding the id; 101 rows tell "more than 100". */
    [ST_GET_CUSTOMER_SOURCE] = "SELECT source, json_set(doc, '$.source', source) FROM customers"
                               " WHERE tenant_id = ?1 AND env = ?2 AND customer_id = ?3"
                               " AND (?4 IS NULL OR source = ?4) ORDER BY source LIMIT 101",
    /* One source: the whole unique key, so the lookup is one index probe (the OR above lets
     * the planner use only (tenant_id, env) of an index and scan the tenant's customers). */
    [ST_GET_CUSTOMER_OF_SOURCE] = "SELECT source, json_set(doc, '$.source', source) FROM customers"
                                  " WHERE tenant_id = ?1 AND env = ?2 AND customer_id = ?3"
                                  " AND source = ?4",

    /* order lifecycle (sqlite_write.c) */
    [ST_SALE_STATE] = "SELECT order_type, status, quantity, sales_price_minor, refunded_quantity,"
                      " refunded_minor, currency, rr_quantity, rr_minor, status_changed, doc,"
                      " customer_id"
                      " FROM sales WHERE tenant_id = ?1 AND env = ?2 AND invoice_number = ?3",
    [ST_SALE_REFUNDS] = "UPDATE sales SET status = ?4, refunded_quantity = ?5,"
                        " refunded_minor = ?6, rr_quantity = ?7, rr_minor = ?8,"
                        " net_quantity = ?9, net_minor = ?10, status_changed = ?11"
                        " WHERE tenant_id = ?1 AND env = ?2 AND invoice_number = ?3",
};
