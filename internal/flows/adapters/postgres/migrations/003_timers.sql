-- The durable timers a handling raised, with when each is due (JSON): the
-- journal sees a timer's message only once it is published.
ALTER TABLE journal_handlings ADD COLUMN timers jsonb NOT NULL DEFAULT '[]';
