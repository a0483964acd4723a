-- The welcome ledger (issue 31): one welcome per subscriber, ever, queued when they confirm. A
-- welcome is not an issue (no week, no `sends` row), so it has a table of its own rather than rows
-- in `deliveries`; its states and columns mean what theirs do (see src/store/welcomes.rs).
-- A reader who unsubscribes and confirms again keeps their row: no second welcome.
CREATE TABLE welcomes (
    subscriber_id   INTEGER PRIMARY KEY REFERENCES subscribers (id),
    state           TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'bounced', 'skipped')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    -- Fixed when queued: a resend after a crash is the same message.
    message_id      TEXT NOT NULL,
    -- A deferred welcome (4xx) is tried again from this time (Unix seconds) on.
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    queued_at       INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    sent_at         INTEGER
);

CREATE INDEX welcomes_by_state ON welcomes (state, next_attempt_at);
