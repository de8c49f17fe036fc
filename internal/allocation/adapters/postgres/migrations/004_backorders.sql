-- The shop's customer of a line (empty: a line of the book's API), so that
-- a line a shrinking batch pushes out waits for stock in their name.
ALTER TABLE allocations ADD COLUMN customer text NOT NULL DEFAULT '';

-- The number of the product's waiting lines: the repository reads the
-- waiting list only when there is one.
ALTER TABLE products ADD COLUMN waiting integer NOT NULL DEFAULT 0;

-- The waiting list: shop lines no batch could take, served when stock
-- comes, VIPs' first, then by age (id).
CREATE TABLE backorders (
    id       bigserial   PRIMARY KEY,
    sku      text        NOT NULL REFERENCES products (sku),
    orderid  text        NOT NULL,
    qty      bigint      NOT NULL,
    customer text        NOT NULL,
    since    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (orderid, sku)
);
CREATE INDEX backorders_sku ON backorders (sku, id);
CREATE INDEX backorders_customer ON backorders (customer);

-- The VIP customers, as the CRM announced them (customer_became_vip).
CREATE TABLE vip_customers (
    customer text        PRIMARY KEY,
    since    timestamptz NOT NULL DEFAULT now()
);
