-- The journal: every message the services exchanged, found by its flow
-- (correlation_id), its cause, and the business keys of its payload.
CREATE TABLE journal_messages (
    id             text        PRIMARY KEY,
    channel        text        NOT NULL,
    msg_key        text        NOT NULL DEFAULT '',
    correlation_id text        NOT NULL,
    causation_id   text        NOT NULL DEFAULT '',
    occurred_at    timestamptz,
    seen_at        timestamptz NOT NULL DEFAULT now(),
    producer       text        NOT NULL DEFAULT '',
    payload        bytea       NOT NULL,
    orderid        text,
    customer       text,
    sku            text,
    batchref       text,
    qty            bigint
);
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
    message_id  text             NOT NULL,
    handler     text             NOT NULL,
    outcome     text             NOT NULL,
    at          timestamptz      NOT NULL,
    service     text             NOT NULL,
    duration_ms double precision NOT NULL DEFAULT 0,
    raised      text[]           NOT NULL DEFAULT '{}',
    reason      text             NOT NULL DEFAULT '',
    attempts    integer          NOT NULL DEFAULT 0,
    PRIMARY KEY (message_id, handler, outcome, at)
);
