-- The transactional outbox: events stored in the transaction that raised
-- them. A row leaves once it is published (the relay) and dispatched to
-- the service's own event handlers (the message bus).
CREATE TABLE outbox (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    id                TEXT    NOT NULL UNIQUE,
    channel           TEXT    NOT NULL,
    msg_key           TEXT    NOT NULL,
    correlation_id    TEXT    NOT NULL,
    causation_id      TEXT    NOT NULL,
    occurred_at       INTEGER NOT NULL, -- unix microseconds
    payload           BLOB    NOT NULL,
    published         INTEGER NOT NULL DEFAULT 0,
    dispatched        INTEGER NOT NULL DEFAULT 0,
    dispatch_attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published = 0;
CREATE INDEX outbox_undispatched ON outbox (seq) WHERE dispatched = 0;

-- The inbox: which consumer handled which message, recorded in the
-- consumer's own transaction.
CREATE TABLE inbox (
    consumer   TEXT    NOT NULL,
    message_id TEXT    NOT NULL,
    handled_at INTEGER NOT NULL, -- unix microseconds
    PRIMARY KEY (consumer, message_id)
) WITHOUT ROWID;
CREATE INDEX inbox_handled_at ON inbox (handled_at);

-- Messages that could not be handled, with the reason.
CREATE TABLE dead_letters (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    consumer   TEXT    NOT NULL,
    channel    TEXT    NOT NULL,
    message_id TEXT    NOT NULL,
    payload    TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    failed_at  INTEGER NOT NULL -- unix microseconds
);
