-- Every index on the outbox is paid for at each insert, update and delete
-- of every message. The relay reads in seq order (the primary key); the
-- sweep for undispatched events runs every few seconds over a table that
-- holds only messages in flight: neither needs an index of its own.
DROP INDEX outbox_unpublished;
DROP INDEX outbox_undispatched;
