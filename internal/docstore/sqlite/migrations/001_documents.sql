-- Aggregates as JSON documents; version guards against lost updates.
CREATE TABLE documents (
    kind       TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    idx        TEXT    NOT NULL DEFAULT '',
    body       TEXT    NOT NULL,
    updated_at INTEGER NOT NULL, -- unix microseconds
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;
CREATE INDEX documents_idx ON documents (kind, idx, id);
