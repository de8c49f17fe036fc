-- Durable timers: messages raised for later (Envelope.DeliverAt), stored in
-- the transaction that raised them and kept apart from the outbox, so that
-- any number of them waiting costs the relay nothing; when due, the relay
-- moves them into the outbox.
CREATE TABLE scheduled (
    seq            bigserial   PRIMARY KEY,
    id             text        NOT NULL UNIQUE,
    deliver_at     timestamptz NOT NULL,
    channel        text        NOT NULL,
    msg_key        text        NOT NULL,
    correlation_id text        NOT NULL,
    causation_id   text        NOT NULL,
    occurred_at    timestamptz NOT NULL,
    payload        bytea       NOT NULL
);
CREATE INDEX scheduled_due ON scheduled (deliver_at, seq);
