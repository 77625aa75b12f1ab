-- 0004_segment_indexes.sql — indexes for computing segment membership in SQL (issue #4 §2,
-- sqlite_segments.c).
--
-- A segment over millions of sales must not read the sales table row by row in random order:
-- on a cold or small page cache that is one random read per sale. So the membership queries
-- read indexes that hold every column they need ("covering"), in one sequential pass:
--
--  * seg_sales_event replaces sales_event (tenant_id, env, event_ref) with a superset — the
--    same leading columns, so every query that used sales_event keeps its access path and
--    ingest still maintains one index, not two — widened by the columns segment filters and
--    aggregates read: purchase time, the customer key, currency and price. A rule on the
--    event ("bought Verdi in Berlin") reads only the index ranges of the matching events; a
--    rule on purchase time, price or currency, or a count of purchases or events, reads the
--    index instead of the table. Rules on what only the sale document holds (ticket_category,
--    quantity, tickets, spend) still scan the table, in rowid order (sales_seq).
--  * seg_customers_key maps a sale's customer (tenant, env, source, customer_id) to its
--    profile without touching the customers table.
DROP INDEX sales_event;
CREATE INDEX seg_sales_event ON sales (tenant_id, env, event_ref, purchase_datetime, source,
                                       customer_id, currency, sales_price_minor);
CREATE INDEX seg_customers_key ON customers (tenant_id, env, source, customer_id, profile_id);
