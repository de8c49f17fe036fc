-- The transactional outbox: events stored in the transaction that raised
-- them. A row leaves once it is published (the relay) and dispatched to
-- the service's own event handlers (the message bus).
CREATE TABLE outbox (
    seq               bigserial   PRIMARY KEY,
    id                text        NOT NULL UNIQUE,
    channel           text        NOT NULL,
    msg_key           text        NOT NULL,
    correlation_id    text        NOT NULL,
    causation_id      text        NOT NULL,
    occurred_at       timestamptz NOT NULL,
    payload           bytea       NOT NULL,
    published         boolean     NOT NULL DEFAULT false,
    dispatched        boolean     NOT NULL DEFAULT false,
    dispatch_attempts integer     NOT NULL DEFAULT 0
);
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE NOT published;
CREATE INDEX outbox_undispatched ON outbox (seq) WHERE NOT dispatched;

-- The inbox: which consumer handled which message, recorded in the
-- consumer's own transaction.
CREATE TABLE inbox (
    consumer   text        NOT NULL,
    message_id text        NOT NULL,
    handled_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);
CREATE INDEX inbox_handled_at ON inbox (handled_at);

-- Messages that could not be handled, with the reason.
CREATE TABLE dead_letters (
    id         bigserial   PRIMARY KEY,
    consumer   text        NOT NULL,
    channel    text        NOT NULL,
    message_id text        NOT NULL,
    payload    text        NOT NULL,
    reason     text        NOT NULL,
    failed_at  timestamptz NOT NULL
);
