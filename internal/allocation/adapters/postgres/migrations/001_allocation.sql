-- Products are the aggregates; version guards against lost updates.
CREATE TABLE products (
    sku     text    PRIMARY KEY,
    version integer NOT NULL
);

-- allocated is the sum of the batch's allocations, kept with them, so that
-- allocating never reads the allocation history.
CREATE TABLE batches (
    ref       text    PRIMARY KEY,
    sku       text    NOT NULL REFERENCES products (sku),
    purchased bigint  NOT NULL,
    eta       date,   -- NULL for warehouse stock
    allocated bigint  NOT NULL DEFAULT 0
);
CREATE INDEX batches_sku ON batches (sku);

-- id orders allocations: the most recent is deallocated first.
CREATE TABLE allocations (
    id       bigserial PRIMARY KEY,
    orderid  text      NOT NULL,
    sku      text      NOT NULL,
    qty      bigint    NOT NULL,
    batchref text      NOT NULL REFERENCES batches (ref),
    UNIQUE (orderid, sku)
);
CREATE INDEX allocations_batch ON allocations (batchref, id);

-- The read model (the book's chapter 12), kept by event handlers.
CREATE TABLE allocations_view (
    orderid  text NOT NULL,
    sku      text NOT NULL,
    batchref text NOT NULL,
    PRIMARY KEY (orderid, sku)
);
