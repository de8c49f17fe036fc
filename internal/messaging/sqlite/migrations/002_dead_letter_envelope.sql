-- A dead letter keeps the whole envelope of its message, so that it can be
-- sent again as the message it was, and how often and since when it
-- failed. Rows kept before have the defaults.
ALTER TABLE dead_letters ADD COLUMN msg_key TEXT NOT NULL DEFAULT '';
ALTER TABLE dead_letters ADD COLUMN correlation_id TEXT NOT NULL DEFAULT '';
ALTER TABLE dead_letters ADD COLUMN causation_id TEXT NOT NULL DEFAULT '';
ALTER TABLE dead_letters ADD COLUMN occurred_at INTEGER; -- unix microseconds
ALTER TABLE dead_letters ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE dead_letters ADD COLUMN first_failed_at INTEGER; -- unix microseconds
