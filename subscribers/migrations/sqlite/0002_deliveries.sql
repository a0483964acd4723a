-- The delivery ledger: one row per (issue, subscriber) of a real send, created for the whole
-- audience in one transaction when the send starts. See src/store/ledger.rs for the states.

-- One row per issue whose real send has started. Its number is pinned here: an issue readers
-- received never changes number.
CREATE TABLE sends (
    issue_id      TEXT PRIMARY KEY,
    number        INTEGER NOT NULL,
    subject       TEXT NOT NULL,
    audience      INTEGER NOT NULL,
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER
);

CREATE TABLE deliveries (
    issue_id        TEXT NOT NULL REFERENCES sends (issue_id),
    subscriber_id   INTEGER NOT NULL REFERENCES subscribers (id),
    state           TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'bounced', 'skipped')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    message_id      TEXT NOT NULL,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    updated_at      INTEGER NOT NULL,
    sent_at         INTEGER,
    PRIMARY KEY (issue_id, subscriber_id)
) WITHOUT ROWID;

CREATE INDEX deliveries_by_state ON deliveries (issue_id, state, subscriber_id);

-- Who is sending an issue right now. A lease that is not renewed expires, and the issue can then
-- be taken over: that is what makes a crashed sender's issue resumable.
CREATE TABLE send_leases (
    issue_id   TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
