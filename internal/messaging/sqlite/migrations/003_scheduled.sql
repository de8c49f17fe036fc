-- Durable timers: messages raised for later (Envelope.DeliverAt), stored in
-- the transaction that raised them and kept apart from the outbox, so that
-- any number of them waiting costs the relay nothing; when due, the relay
-- moves them into the outbox.
CREATE TABLE scheduled (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT    NOT NULL UNIQUE,
    deliver_at     INTEGER NOT NULL, -- unix microseconds
    channel        TEXT    NOT NULL,
    msg_key        TEXT    NOT NULL,
    correlation_id TEXT    NOT NULL,
    causation_id   TEXT    NOT NULL,
    occurred_at    INTEGER NOT NULL, -- unix microseconds
    payload        BLOB    NOT NULL
);
CREATE INDEX scheduled_due ON scheduled (deliver_at, seq);
