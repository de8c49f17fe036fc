-- The journal: every message the services exchanged, found by its flow
-- (correlation_id), its cause, and the business keys of its payload.
-- Times are microseconds since the epoch, UTC.
CREATE TABLE journal_messages (
    id             TEXT    PRIMARY KEY,
    channel        TEXT    NOT NULL,
    msg_key        TEXT    NOT NULL DEFAULT '',
    correlation_id TEXT    NOT NULL,
    causation_id   TEXT    NOT NULL DEFAULT '',
    occurred_at    INTEGER NOT NULL,
    seen_at        INTEGER NOT NULL,
    producer       TEXT    NOT NULL DEFAULT '',
    payload        BLOB    NOT NULL,
    orderid        TEXT,
    customer       TEXT,
    sku            TEXT,
    batchref       TEXT,
    qty            INTEGER
) WITHOUT ROWID;
CREATE INDEX journal_messages_flow ON journal_messages (correlation_id, occurred_at);
CREATE INDEX journal_messages_order ON journal_messages (orderid) WHERE orderid IS NOT NULL;
CREATE INDEX journal_messages_customer ON journal_messages (customer) WHERE customer IS NOT NULL;
CREATE INDEX journal_messages_sku ON journal_messages (sku) WHERE sku IS NOT NULL;
CREATE INDEX journal_messages_batch ON journal_messages (batchref) WHERE batchref IS NOT NULL;
CREATE INDEX journal_messages_seen ON journal_messages (seen_at);

-- What each handler did with each message: one row per receipt or dead
-- letter (a message may be handled by several handlers of several
-- services, and dead-lettered by one).
CREATE TABLE journal_handlings (
    message_id  TEXT    NOT NULL,
    handler     TEXT    NOT NULL,
    outcome     TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    service     TEXT    NOT NULL,
    duration_ms REAL    NOT NULL DEFAULT 0,
    raised      TEXT    NOT NULL DEFAULT '[]', -- JSON array of message ids
    reason      TEXT    NOT NULL DEFAULT '',
    attempts    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (message_id, handler, outcome, at)
) WITHOUT ROWID;
