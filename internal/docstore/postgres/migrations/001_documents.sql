-- Aggregates as JSON documents; version guards against lost updates.
CREATE TABLE documents (
    kind       text        NOT NULL,
    id         text        NOT NULL,
    version    bigint      NOT NULL,
    idx        text        NOT NULL DEFAULT '',
    body       json        NOT NULL, -- json, not jsonb: kept as written, \u0000 included
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, id)
);
CREATE INDEX documents_idx ON documents (kind, idx, id);
