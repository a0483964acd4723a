-- Subscribers. `email` is kept as given; `email_key` is the whole address lower-cased in Rust
-- (Unicode-aware, which SQLite's NOCASE is not) and carries the uniqueness.
-- Timestamps are UTC, RFC 3339 text ("2026-11-27T08:00:00Z").
CREATE TABLE subscribers (
    id                INTEGER PRIMARY KEY,
    email             TEXT NOT NULL,
    email_key         TEXT NOT NULL UNIQUE,
    name              TEXT,
    status            TEXT NOT NULL
                      CHECK (status IN ('pending', 'active', 'unsubscribed', 'bounced', 'complained')),
    -- Where the subscriber came from.
    source            TEXT NOT NULL CHECK (source IN ('import', 'cli', 'web')),
    created_at        TEXT NOT NULL,
    -- When `status` last changed (equal to created_at until it does).
    status_changed_at TEXT NOT NULL,
    -- The last time the subscriber entered each status; NULL when it never has.
    confirmed_at      TEXT,
    unsubscribed_at   TEXT,
    bounced_at        TEXT,
    complained_at     TEXT
);

CREATE INDEX subscribers_by_status ON subscribers (status, id);

-- Small named values the application keeps for itself, such as the token secret generated on
-- first use when GAZETTE_SECRET is unset.
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
