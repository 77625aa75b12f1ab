-- 0010_order_lifecycle.sql — the order lifecycle of sales records (model.h "order lifecycle").
--
-- A sales record is an order of one type (sale, reservation, option, abandoned, refund) with a
-- status; the store keeps what the segment queries and the lifecycle rules read as columns, so
-- no query parses a document for them:
--  * order_type, status, quantity; refunded_quantity / refunded_minor: everything refunded,
--    the sale's own figures plus those of refund records naming it (rr_quantity / rr_minor
--    hold the refund records' part, so a sale sent again keeps what its refunds took);
--  * net_quantity / net_minor: tickets and money the record still stands for, net of refunds
--    (0 for cancelled and exchanged sales and for every other order type). Counts of
--    purchases, tickets, events and spend in segments read these;
--  * status_changed: when the status last changed (UTC text like purchase_datetime), expires
--    (reservations and options), attended_quantity (tickets scanned at the entrance, NULL if
--    never reported), refund_of (a refund record: the invoice it refunds).
-- Every stored sale becomes a sale, status sold, nothing refunded: its net figures are its
-- quantity and quantity × price.
ALTER TABLE sales ADD COLUMN order_type TEXT NOT NULL DEFAULT 'sale';
ALTER TABLE sales ADD COLUMN status TEXT NOT NULL DEFAULT 'sold';
ALTER TABLE sales ADD COLUMN quantity INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sales ADD COLUMN refunded_quantity INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sales ADD COLUMN refunded_minor INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sales ADD COLUMN rr_quantity INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sales ADD COLUMN rr_minor INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sales ADD COLUMN net_quantity INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sales ADD COLUMN net_minor INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sales ADD COLUMN status_changed TEXT;
ALTER TABLE sales ADD COLUMN expires TEXT;
ALTER TABLE sales ADD COLUMN attended_quantity INTEGER;
ALTER TABLE sales ADD COLUMN refund_of TEXT;
UPDATE sales SET quantity = json_extract(doc, '$.quantity'),
                 net_quantity = json_extract(doc, '$.quantity'),
                 net_minor = sales_price_minor * json_extract(doc, '$.quantity');

-- The covering index of segment queries gains the net figures, so counts of tickets and spend
-- read it instead of every sale's document; the customer-key index gains what "a live sale
-- since" needs. Lifecycle facts other than a plain sold sale are few: a partial index of them
-- lets "refunded", "holds" and "abandoned" rules skip the ordinary sales.
DROP INDEX seg_sales_event;
CREATE INDEX seg_sales_event ON sales (tenant_id, env, event_ref, purchase_datetime, source,
                                       customer_id, currency, sales_price_minor, net_quantity,
                                       net_minor);
DROP INDEX sales_customer;
CREATE INDEX sales_customer ON sales (tenant_id, env, source, customer_id, net_quantity,
                                      purchase_datetime);
CREATE INDEX seg_sales_lifecycle ON sales (tenant_id, env, source, customer_id)
    WHERE order_type <> 'sale' OR status <> 'sold';
