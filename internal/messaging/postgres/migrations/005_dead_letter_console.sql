-- The dead-letter console: each dead letter's fingerprint (its cause, to
-- group by), its state (failed, retried, archived), how many times it
-- failed and was sent again, and who put it aside. Rows kept before get
-- their fingerprint computed when read.
ALTER TABLE dead_letters ADD COLUMN fingerprint text NOT NULL DEFAULT '';
ALTER TABLE dead_letters ADD COLUMN state text NOT NULL DEFAULT 'failed';
ALTER TABLE dead_letters ADD COLUMN failures integer NOT NULL DEFAULT 1;
ALTER TABLE dead_letters ADD COLUMN retried integer NOT NULL DEFAULT 0;
ALTER TABLE dead_letters ADD COLUMN retried_at timestamptz;
ALTER TABLE dead_letters ADD COLUMN archived_at timestamptz;
ALTER TABLE dead_letters ADD COLUMN archived_by text NOT NULL DEFAULT '';
CREATE INDEX dead_letters_message ON dead_letters (consumer, message_id);
CREATE INDEX dead_letters_state ON dead_letters (state, consumer, channel);
