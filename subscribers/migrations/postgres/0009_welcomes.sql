-- The welcome ledger: the same table as SQLite's 0013_welcomes.sql, with the same meanings (see
-- that file and src/store/welcomes.rs).
CREATE TABLE welcomes (
    subscriber_id   BIGINT PRIMARY KEY REFERENCES subscribers (id),
    state           TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'bounced', 'skipped')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT,
    message_id      TEXT NOT NULL,
    next_attempt_at BIGINT NOT NULL DEFAULT 0,
    queued_at       BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    sent_at         BIGINT
);

CREATE INDEX welcomes_by_state ON welcomes (state, next_attempt_at);
