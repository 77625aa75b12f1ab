-- 0013_profile_facts.sql — per-profile purchase facts, so rules on "how much" (purchases,
-- tickets, spend per currency, first and last purchase) scan profiles instead of grouping sales
-- (sqlite_segments.c reads them where a rule has no `where`).
--
-- One row per (profile, currency) with exactly what the segment queries compute from `sales`:
-- the sales counted are those of a customer record that has a profile (sales.source and
-- customer_id → customers.profile_id), never ANON; purchases = live sales (net_quantity > 0),
-- tickets = sum of net_quantity, spend_minor = sum of net_minor, first/last_purchase = the
-- earliest/latest purchase_datetime of a live sale (NULL when none is live). Sales with nothing
-- net left (net_quantity = 0 and net_minor = 0: cancelled, wholly refunded, reservations …)
-- add nothing to any figure and make no row.
--
-- The triggers below keep the table equal to that definition inside the statement that changes
-- a sale or a customer record, so in the writer's transaction on every path, present and future
-- (ingest, import, lifecycle updates, refunds, deletions, customer merges, profile links and
-- splits, erasure): a new sale adds itself to its profile's row (an UPSERT); any other change
-- recomputes the affected profile(s) from their sales — a profile's few source records
-- (customers_profile) and their sales (sales_customer, named: without statistics SQLite prefers
-- walking the covering seg_sales_event over the whole tenant). Profiles are not touched: opt-out and
-- suppression are read from profiles at query time.
CREATE TABLE profile_facts (
    tenant_id INTEGER NOT NULL,
    env INTEGER NOT NULL,
    profile_id INTEGER NOT NULL,
    currency TEXT NOT NULL,
    purchases INTEGER NOT NULL,
    tickets INTEGER NOT NULL,
    spend_minor INTEGER NOT NULL,
    first_purchase TEXT,
    last_purchase TEXT,
    PRIMARY KEY (tenant_id, env, profile_id, currency)
) WITHOUT ROWID;
-- "spend ≥ X in EUR": one range; "last purchase before / after T", "first purchase …": one range.
CREATE INDEX profile_facts_spend ON profile_facts (tenant_id, env, currency, spend_minor);
CREATE INDEX profile_facts_last ON profile_facts (tenant_id, env, last_purchase);
CREATE INDEX profile_facts_first ON profile_facts (tenant_id, env, first_purchase);

-- The backfill: one pass over the sales (CROSS JOIN keeps them the outer loop; each sale's
-- customer key is one probe), grouped with one sort.
INSERT INTO profile_facts (tenant_id, env, profile_id, currency, purchases, tickets, spend_minor,
                           first_purchase, last_purchase)
SELECT c.tenant_id, c.env, c.profile_id, s.currency, sum(s.net_quantity > 0),
       sum(s.net_quantity), sum(s.net_minor),
       min(CASE WHEN s.net_quantity > 0 THEN s.purchase_datetime END),
       max(CASE WHEN s.net_quantity > 0 THEN s.purchase_datetime END)
FROM sales s CROSS JOIN customers c ON c.tenant_id = s.tenant_id AND c.env = s.env
                AND c.source = s.source AND c.customer_id = s.customer_id
WHERE s.customer_id <> 'ANON' AND (s.net_quantity <> 0 OR s.net_minor <> 0)
  AND c.profile_id IS NOT NULL
GROUP BY c.profile_id, s.currency;

-- A new sale: added to its profile's row. "WHERE true" lets SQLite parse the ON CONFLICT of an
-- INSERT … SELECT.
CREATE TRIGGER profile_facts_sale_insert AFTER INSERT ON sales
WHEN new.customer_id <> 'ANON' AND (new.net_quantity <> 0 OR new.net_minor <> 0)
BEGIN
    INSERT INTO profile_facts (tenant_id, env, profile_id, currency, purchases, tickets,
                               spend_minor, first_purchase, last_purchase)
    SELECT c.tenant_id, c.env, c.profile_id, new.currency, new.net_quantity > 0,
           new.net_quantity, new.net_minor,
           CASE WHEN new.net_quantity > 0 THEN new.purchase_datetime END,
           CASE WHEN new.net_quantity > 0 THEN new.purchase_datetime END
    FROM customers c
    WHERE c.tenant_id = new.tenant_id AND c.env = new.env AND c.source = new.source
      AND c.customer_id = new.customer_id AND c.profile_id IS NOT NULL AND true
    ON CONFLICT (tenant_id, env, profile_id, currency) DO UPDATE SET
        purchases = purchases + excluded.purchases,
        tickets = tickets + excluded.tickets,
        spend_minor = spend_minor + excluded.spend_minor,
        first_purchase = CASE WHEN excluded.first_purchase IS NULL THEN first_purchase
            WHEN first_purchase IS NULL OR excluded.first_purchase < first_purchase
            THEN excluded.first_purchase ELSE first_purchase END,
        last_purchase = CASE WHEN excluded.last_purchase IS NULL THEN last_purchase
            WHEN last_purchase IS NULL OR excluded.last_purchase > last_purchase
            THEN excluded.last_purchase ELSE last_purchase END;
END;

-- A changed sale (refund, exchange, cancellation, a new price or quantity, another customer,
-- erasure's ANON): the profiles of its old and its new customer key are recomputed.
CREATE TRIGGER profile_facts_sale_update
AFTER UPDATE OF tenant_id, env, source, customer_id, currency, purchase_datetime, net_quantity,
                net_minor ON sales
WHEN old.tenant_id IS NOT new.tenant_id OR old.env IS NOT new.env OR old.source IS NOT new.source
  OR old.customer_id IS NOT new.customer_id OR old.currency IS NOT new.currency
  OR old.purchase_datetime IS NOT new.purchase_datetime
  OR old.net_quantity IS NOT new.net_quantity OR old.net_minor IS NOT new.net_minor
BEGIN
    DELETE FROM profile_facts WHERE tenant_id = old.tenant_id AND env = old.env
        AND profile_id = (SELECT c.profile_id FROM customers c WHERE c.tenant_id = old.tenant_id
            AND c.env = old.env AND c.source = old.source AND c.customer_id = old.customer_id);
    INSERT INTO profile_facts (tenant_id, env, profile_id, currency, purchases, tickets,
                               spend_minor, first_purchase, last_purchase)
    SELECT m.tenant_id, m.env, m.profile_id, s.currency, sum(s.net_quantity > 0),
           sum(s.net_quantity), sum(s.net_minor),
           min(CASE WHEN s.net_quantity > 0 THEN s.purchase_datetime END),
           max(CASE WHEN s.net_quantity > 0 THEN s.purchase_datetime END)
    FROM customers k JOIN customers m ON m.profile_id = k.profile_id AND +m.tenant_id = k.tenant_id
        AND +m.env = k.env
    JOIN sales s INDEXED BY sales_customer ON s.tenant_id = m.tenant_id AND s.env = m.env
        AND s.source = m.source AND s.customer_id = m.customer_id
    WHERE k.tenant_id = old.tenant_id AND k.env = old.env AND k.source = old.source
      AND k.customer_id = old.customer_id AND k.profile_id IS NOT NULL
      AND s.customer_id <> 'ANON' AND (s.net_quantity <> 0 OR s.net_minor <> 0)
    GROUP BY s.currency;
    DELETE FROM profile_facts WHERE tenant_id = new.tenant_id AND env = new.env
        AND profile_id = (SELECT c.profile_id FROM customers c WHERE c.tenant_id = new.tenant_id
            AND c.env = new.env AND c.source = new.source AND c.customer_id = new.customer_id);
    INSERT INTO profile_facts (tenant_id, env, profile_id, currency, purchases, tickets,
                               spend_minor, first_purchase, last_purchase)
    SELECT m.tenant_id, m.env, m.profile_id, s.currency, sum(s.net_quantity > 0),
           sum(s.net_quantity), sum(s.net_minor),
           min(CASE WHEN s.net_quantity > 0 THEN s.purchase_datetime END),
           max(CASE WHEN s.net_quantity > 0 THEN s.purchase_datetime END)
    FROM customers k JOIN customers m ON m.profile_id = k.profile_id AND +m.tenant_id = k.tenant_id
        AND +m.env = k.env
    JOIN sales s INDEXED BY sales_customer ON s.tenant_id = m.tenant_id AND s.env = m.env
        AND s.source = m.source AND s.customer_id = m.customer_id
    WHERE k.tenant_id = new.tenant_id AND k.env = new.env AND k.source = new.source
      AND k.customer_id = new.customer_id AND k.profile_id IS NOT NULL
      AND s.customer_id <> 'ANON' AND (s.net_quantity <> 0 OR s.net_minor <> 0)
    GROUP BY s.currency;
END;

-- A deleted sale (record deletion, tombstone): its profile is recomputed.
CREATE TRIGGER profile_facts_sale_delete AFTER DELETE ON sales
WHEN old.customer_id <> 'ANON' AND (old.net_quantity <> 0 OR old.net_minor <> 0)
BEGIN
    DELETE FROM profile_facts WHERE tenant_id = old.tenant_id AND env = old.env
        AND profile_id = (SELECT c.profile_id FROM customers c WHERE c.tenant_id = old.tenant_id
            AND c.env = old.env AND c.source = old.source AND c.customer_id = old.customer_id);
    INSERT INTO profile_facts (tenant_id, env, profile_id, currency, purchases, tickets,
                               spend_minor, first_purchase, last_purchase)
    SELECT m.tenant_id, m.env, m.profile_id, s.currency, sum(s.net_quantity > 0),
           sum(s.net_quantity), sum(s.net_minor),
           min(CASE WHEN s.net_quantity > 0 THEN s.purchase_datetime END),
           max(CASE WHEN s.net_quantity > 0 THEN s.purchase_datetime END)
    FROM customers k JOIN customers m ON m.profile_id = k.profile_id AND +m.tenant_id = k.tenant_id
        AND +m.env = k.env
    JOIN sales s INDEXED BY sales_customer ON s.tenant_id = m.tenant_id AND s.env = m.env
        AND s.source = m.source AND s.customer_id = m.customer_id
    WHERE k.tenant_id = old.tenant_id AND k.env = old.env AND k.source = old.source
      AND k.customer_id = old.customer_id AND k.profile_id IS NOT NULL
      AND s.customer_id <> 'ANON' AND (s.net_quantity <> 0 OR s.net_minor <> 0)
    GROUP BY s.currency;
END;

-- A customer record that joins, leaves or changes profile (link, re-link, split, erasure,
-- deletion): the profiles it leaves and joins are recomputed.
CREATE TRIGGER profile_facts_customer_insert AFTER INSERT ON customers
WHEN new.profile_id IS NOT NULL
BEGIN
    DELETE FROM profile_facts WHERE tenant_id = new.tenant_id AND env = new.env
        AND profile_id = new.profile_id;
    INSERT INTO profile_facts (tenant_id, env, profile_id, currency, purchases, tickets,
                               spend_minor, first_purchase, last_purchase)
    SELECT m.tenant_id, m.env, m.profile_id, s.currency, sum(s.net_quantity > 0),
           sum(s.net_quantity), sum(s.net_minor),
           min(CASE WHEN s.net_quantity > 0 THEN s.purchase_datetime END),
           max(CASE WHEN s.net_quantity > 0 THEN s.purchase_datetime END)
    FROM customers m JOIN sales s INDEXED BY sales_customer ON s.tenant_id = m.tenant_id
        AND s.env = m.env AND s.source = m.source AND s.customer_id = m.customer_id
    WHERE m.profile_id = new.profile_id AND +m.tenant_id = new.tenant_id AND +m.env = new.env
      AND s.customer_id <> 'ANON' AND (s.net_quantity <> 0 OR s.net_minor <> 0)
    GROUP BY s.currency;
END;

CREATE TRIGGER profile_facts_customer_update
AFTER UPDATE OF tenant_id, env, source, customer_id, profile_id ON customers
WHEN old.tenant_id IS NOT new.tenant_id OR old.env IS NOT new.env OR old.source IS NOT new.source
  OR old.customer_id IS NOT new.customer_id OR old.profile_id IS NOT new.profile_id
BEGIN
    DELETE FROM profile_facts WHERE tenant_id = old.tenant_id AND env = old.env
        AND profile_id = old.profile_id;
    INSERT INTO profile_facts (tenant_id, env, profile_id, currency, purchases, tickets,
                               spend_minor, first_purchase, last_purchase)
    SELECT m.tenant_id, m.env, m.profile_id, s.currency, sum(s.net_quantity > 0),
           sum(s.net_quantity), sum(s.net_minor),
           min(CASE WHEN s.net_quantity > 0 THEN s.purchase_datetime END),
           max(CASE WHEN s.net_quantity > 0 THEN s.purchase_datetime END)
    FROM customers m JOIN sales s INDEXED BY sales_customer ON s.tenant_id = m.tenant_id
        AND s.env = m.env AND s.source = m.source AND s.customer_id = m.customer_id
    WHERE m.profile_id = old.profile_id AND +m.tenant_id = old.tenant_id AND +m.env = old.env
      AND s.customer_id <> 'ANON' AND (s.net_quantity <> 0 OR s.net_minor <> 0)
    GROUP BY s.currency;
    DELETE FROM profile_facts WHERE tenant_id = new.tenant_id AND env = new.env
        AND profile_id = new.profile_id;
    INSERT INTO profile_facts (tenant_id, env, profile_id, currency, purchases, tickets,
                               spend_minor, first_purchase, last_purchase)
    SELECT m.tenant_id, m.env, m.profile_id, s.currency, sum(s.net_quantity > 0),
           sum(s.net_quantity), sum(s.net_minor),
           min(CASE WHEN s.net_quantity > 0 THEN s.purchase_datetime END),
           max(CASE WHEN s.net_quantity > 0 THEN s.purchase_datetime END)
    FROM customers m JOIN sales s INDEXED BY sales_customer ON s.tenant_id = m.tenant_id
        AND s.env = m.env AND s.source = m.source AND s.customer_id = m.customer_id
    WHERE m.profile_id = new.profile_id AND +m.tenant_id = new.tenant_id AND +m.env = new.env
      AND s.customer_id <> 'ANON' AND (s.net_quantity <> 0 OR s.net_minor <> 0)
    GROUP BY s.currency;
END;

CREATE TRIGGER profile_facts_customer_delete AFTER DELETE ON customers
WHEN old.profile_id IS NOT NULL
BEGIN
    DELETE FROM profile_facts WHERE tenant_id = old.tenant_id AND env = old.env
        AND profile_id = old.profile_id;
    INSERT INTO profile_facts (tenant_id, env, profile_id, currency, purchases, tickets,
                               spend_minor, first_purchase, last_purchase)
    SELECT m.tenant_id, m.env, m.profile_id, s.currency, sum(s.net_quantity > 0),
           sum(s.net_quantity), sum(s.net_minor),
           min(CASE WHEN s.net_quantity > 0 THEN s.purchase_datetime END),
           max(CASE WHEN s.net_quantity > 0 THEN s.purchase_datetime END)
    FROM customers m JOIN sales s INDEXED BY sales_customer ON s.tenant_id = m.tenant_id
        AND s.env = m.env AND s.source = m.source AND s.customer_id = m.customer_id
    WHERE m.profile_id = old.profile_id AND +m.tenant_id = old.tenant_id AND +m.env = old.env
      AND s.customer_id <> 'ANON' AND (s.net_quantity <> 0 OR s.net_minor <> 0)
    GROUP BY s.currency;
END;
