-- The latest message of each channel, for the service map.
CREATE INDEX journal_messages_channel ON journal_messages (channel, seen_at);
