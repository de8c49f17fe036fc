-- The shop's customer of a line (empty: a line of the book's API), so that
-- a line a shrinking batch pushes out waits for stock in their name.
ALTER TABLE allocations ADD COLUMN customer TEXT NOT NULL DEFAULT '';

-- The number of the product's waiting lines: the repository reads the
-- waiting list only when there is one.
ALTER TABLE products ADD COLUMN waiting INTEGER NOT NULL DEFAULT 0;

-- The waiting list: shop lines no batch could take, served when stock
-- comes, VIPs' first, then by age (id).
CREATE TABLE backorders (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    sku      TEXT    NOT NULL REFERENCES products (sku),
    orderid  TEXT    NOT NULL,
    qty      INTEGER NOT NULL,
    customer TEXT    NOT NULL,
    since    TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (orderid, sku)
);
CREATE INDEX backorders_sku ON backorders (sku, id);
CREATE INDEX backorders_customer ON backorders (customer);

-- The VIP customers, as the CRM announced them (customer_became_vip).
CREATE TABLE vip_customers (
    customer TEXT PRIMARY KEY,
    since    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) WITHOUT ROWID;
