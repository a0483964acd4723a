-- Messages of the bounce mailbox that could not be read or classified (empty, no header block,
-- over the size limit, or the classifier failed on them), moved into its `Unreadable` folder
-- instead of stopping the round. See src/bounces/unreadable.rs. One row per message set aside;
-- reading the same message from the same place again adds none.
CREATE TABLE unreadable_messages (
    id           INTEGER PRIMARY KEY,
    -- Where it was read: a file, or a mailbox and the message's UID (`imaps://...;UID=7`).
    source       TEXT NOT NULL,
    -- Why it could not be read, for people.
    why          TEXT NOT NULL,
    -- SHA-256 of the message; NULL when it was never read whole (too large, or the file would not open).
    message_key  TEXT,
    set_aside_at INTEGER NOT NULL
);

CREATE INDEX unreadable_messages_by_source ON unreadable_messages (source);
