-- 0013_profile_facts.sql — per-profile purchase facts, so rules on "how much" (purchases,
-- tickets, spend per currency, first and last purchase) scan profiles instead of grouping sales
-- (sqlite_segments.c reads them where a rule has no `where`).
--
-- One row per (profile, currency) with exactly what the segment queries compute from `sales`:
-- the sales counted are those of a customer record that has a profile (sales.source and
-- customer_id → customers.profile_id), never ANON; purchases = live sales (net_quantity > 0),
-- tickets = sum of net_quantity, spend_minor = sum of net_minor, first/last_purchase = the
-- earliest/latest purchase_datetime of a live sale (NULL when none is live), sales = how many
-- sales the row sums. Sales with nothing net left (net_quantity = 0 and net_minor = 0:
-- cancelled, exchanged, wholly refunded, reservations …) add nothing and make no row.
--
-- The writer keeps the table equal to that definition in the same transaction as every change
-- of a sale or of which profile a customer record belongs to (sqlite_facts.c: a new sale is
-- one UPSERT; a changed or deleted sale is taken out and put back; a record that changes
-- profile recomputes both profiles). Profiles are not touched: opt-out and suppression are read
-- from profiles at query time.
CREATE TABLE profile_facts (
    tenant_id INTEGER NOT NULL,
    env INTEGER NOT NULL,
    profile_id INTEGER NOT NULL,
    currency TEXT NOT NULL,
    purchases INTEGER NOT NULL,
    tickets INTEGER NOT NULL,
    spend_minor INTEGER NOT NULL,
    sales INTEGER NOT NULL,
    first_purchase TEXT,
    last_purchase TEXT,
    PRIMARY KEY (tenant_id, env, profile_id, currency)
) WITHOUT ROWID;
-- No secondary index: every one is a random write per sale on the import path, and the rules
-- ("spend ≥ X in EUR", "last purchase before T") read the facts in one pass of this key, in
-- profile order, which costs about a microsecond a profile.

-- The backfill: one pass over the sales (CROSS JOIN keeps them the outer loop; each sale's
-- customer key is one probe), grouped with one sort.
INSERT INTO profile_facts (tenant_id, env, profile_id, currency, purchases, tickets, spend_minor,
                           sales, first_purchase, last_purchase)
SELECT c.tenant_id, c.env, c.profile_id, s.currency, sum(s.net_quantity > 0),
       sum(s.net_quantity), sum(s.net_minor), count(*),
       min(CASE WHEN s.net_quantity > 0 THEN s.purchase_datetime END),
       max(CASE WHEN s.net_quantity > 0 THEN s.purchase_datetime END)
FROM sales s CROSS JOIN customers c ON c.tenant_id = s.tenant_id AND c.env = s.env
                AND c.source = s.source AND c.customer_id = s.customer_id
WHERE s.customer_id <> 'ANON' AND (s.net_quantity <> 0 OR s.net_minor <> 0)
  AND c.profile_id IS NOT NULL
GROUP BY c.profile_id, s.currency;
