-- Subscribers. `email` is kept as given; `email_key` is the whole address lower-cased in Rust
-- (Unicode-aware, which SQLite's NOCASE is not) and carries the uniqueness.
-- Timestamps are whole seconds since 1970-01-01 UTC (`datetime(created_at, 'unixepoch')` shows them).
CREATE TABLE subscribers (
    id                INTEGER PRIMARY KEY,
    email             TEXT NOT NULL,
    email_key         TEXT NOT NULL UNIQUE,
    name              TEXT,
    status            TEXT NOT NULL
                      CHECK (status IN ('pending', 'active', 'unsubscribed', 'bounced', 'complained')),
    -- Where the subscriber came from.
    source            TEXT NOT NULL CHECK (source IN ('import', 'cli', 'web')),
    created_at        INTEGER NOT NULL,
    -- When `status` last changed (equal to created_at until it does).
    status_changed_at INTEGER NOT NULL,
    -- The last time the subscriber entered each status; NULL when it never has.
    confirmed_at      INTEGER,
    unsubscribed_at   INTEGER,
    bounced_at        INTEGER,
    complained_at     INTEGER
);

-- No index on status: most subscribers are active, so the audience of a send is most of the
-- table anyway, and every index costs each of a million-row import's inserts.

-- Small named values the application keeps for itself, such as the token secret generated on
-- first use when GAZETTE_SECRET is unset.
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
