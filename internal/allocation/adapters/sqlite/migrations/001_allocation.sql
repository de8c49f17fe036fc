-- Products are the aggregates; version guards against lost updates.
CREATE TABLE products (
    sku     TEXT    PRIMARY KEY,
    version INTEGER NOT NULL
) WITHOUT ROWID;

-- allocated is the sum of the batch's allocations, kept with them, so that
-- allocating never reads the allocation history.
CREATE TABLE batches (
    ref       TEXT    PRIMARY KEY,
    sku       TEXT    NOT NULL REFERENCES products (sku),
    purchased INTEGER NOT NULL,
    eta       TEXT,   -- YYYY-MM-DD, NULL for warehouse stock
    allocated INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX batches_sku ON batches (sku);

-- id orders allocations: the most recent is deallocated first.
CREATE TABLE allocations (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    orderid  TEXT    NOT NULL,
    sku      TEXT    NOT NULL,
    qty      INTEGER NOT NULL,
    batchref TEXT    NOT NULL REFERENCES batches (ref),
    UNIQUE (orderid, sku)
);
CREATE INDEX allocations_batch ON allocations (batchref, id);

-- The read model (the book's chapter 12), kept by event handlers.
CREATE TABLE allocations_view (
    orderid  TEXT NOT NULL,
    sku      TEXT NOT NULL,
    batchref TEXT NOT NULL,
    PRIMARY KEY (orderid, sku)
) WITHOUT ROWID;
