-- A stale write fails in the server. Saving a product sets its version to
-- version + 1 when it is still the version the product was loaded at, and
-- to -1 otherwise, which this check rejects: the transaction fails at that
-- statement, so a COMMIT sent in the same round trip, after it, never
-- commits.
ALTER TABLE products ADD CONSTRAINT products_version_check CHECK (version >= 0);
