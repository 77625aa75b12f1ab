-- 0014_segment_customer_fields.sql — customer filters and member lookups of segments without
-- reading every customer document (sqlite_segments.c).
--
--  * seg_post_code and seg_city hold sd_fold(json_extract(doc, '$.post_code')) and
--    sd_fold(json_extract(doc, '$.city')): the folded text a `customer` leaf compares
--    (`{"customer":{"post_code":{"prefix":"1"}}}`). The customer upsert (sqlite_sql.c) keeps them
--    equal to its document's on every write; this migration fills them for the rows stored
--    before. sd_fold is registered on every connection the store opens (store_sqlite.c).
--    seg_customers_post_code and seg_customers_city serve eq, in and prefix (a range) on them
--    and give the profile id without reading the row.
--  * seg_profiles_live: the profiles a segment may list (neither opted out nor suppressed), in
--    id order. A membership query starts from them; without it every profile row of the tenant
--    was read for its two flags, even when a leaf had already named the few members.
ALTER TABLE customers ADD COLUMN seg_post_code TEXT;
ALTER TABLE customers ADD COLUMN seg_city TEXT;
UPDATE customers SET seg_post_code = sd_fold(json_extract(doc, '$.post_code')),
                     seg_city = sd_fold(json_extract(doc, '$.city'));
CREATE INDEX seg_customers_post_code ON customers (tenant_id, env, seg_post_code, profile_id);
CREATE INDEX seg_customers_city ON customers (tenant_id, env, seg_city, profile_id);
CREATE INDEX seg_profiles_live ON profiles (tenant_id, env) WHERE opt_out = 0 AND suppressed = 0;
