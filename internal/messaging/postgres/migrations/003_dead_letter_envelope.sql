-- A dead letter keeps the whole envelope of its message, so that it can be
-- sent again as the message it was, and how often and since when it
-- failed. Rows kept before have the defaults.
ALTER TABLE dead_letters ADD COLUMN msg_key text NOT NULL DEFAULT '';
ALTER TABLE dead_letters ADD COLUMN correlation_id text NOT NULL DEFAULT '';
ALTER TABLE dead_letters ADD COLUMN causation_id text NOT NULL DEFAULT '';
ALTER TABLE dead_letters ADD COLUMN occurred_at timestamptz;
ALTER TABLE dead_letters ADD COLUMN attempts integer NOT NULL DEFAULT 0;
ALTER TABLE dead_letters ADD COLUMN first_failed_at timestamptz;
