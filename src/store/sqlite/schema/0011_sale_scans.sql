-- 0011_sale_scans.sql — entry scans reported apart from their sale (a vendor's access-control
-- stream, e.g. S-360's): one row per scan, so a scan received twice counts once. The sale's
-- attended_quantity is min(quantity, its scans); a sale stored again keeps at least that count
-- (sqlite_sql.c, ST_SALE_UPDATE). A scan names its sale by
-- invoice number only (no personal data); it goes with the sale.

CREATE TABLE sale_scans (
    tenant_id INTEGER NOT NULL,
    env INTEGER NOT NULL,
    invoice_number TEXT NOT NULL,
    scan_id TEXT NOT NULL,
    scanned_at TEXT,
    gate TEXT,
    created_usec INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, env, invoice_number, scan_id)
) WITHOUT ROWID;

CREATE TRIGGER sale_scans_sale_gone AFTER DELETE ON sales
BEGIN
    DELETE FROM sale_scans WHERE tenant_id = old.tenant_id AND env = old.env
        AND invoice_number = old.invoice_number;
END;
