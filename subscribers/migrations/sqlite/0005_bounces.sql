-- Bounces and complaints that came back after a send (`gazette bounces import`, the scheduler's
-- mailbox), one row per report and subscriber it was attributed to. A report that names no known
-- subscriber leaves no row: it changes nothing. See src/store/bounces.rs for the policy.
CREATE TABLE bounce_events (
    id            INTEGER PRIMARY KEY,
    subscriber_id INTEGER NOT NULL REFERENCES subscribers (id),
    -- The issue whose delivery came back; NULL when the report allowed no telling.
    issue_id      TEXT,
    kind          TEXT NOT NULL CHECK (kind IN ('permanent', 'temporary', 'complaint')),
    -- The address the report named (for a complaint from a provider that redacts it, the subscriber's).
    address       TEXT NOT NULL,
    reason        TEXT NOT NULL,
    -- Where it was read: a file (with its index in an mbox) or a mailbox and the message's UID.
    source        TEXT NOT NULL,
    -- SHA-256 of the message: reading the same message again records nothing new.
    message_key   TEXT NOT NULL,
    received_at   INTEGER NOT NULL,
    UNIQUE (message_key, subscriber_id, kind)
);

CREATE INDEX bounce_events_by_subscriber ON bounce_events (subscriber_id, kind, issue_id);
CREATE INDEX bounce_events_by_issue ON bounce_events (issue_id, kind);

-- Why the subscriber has its status, when a report set it ("550 5.1.1 user unknown", "complaint
-- (abuse report)"); NULL otherwise. Cleared whenever the status changes by other means.
ALTER TABLE subscribers ADD COLUMN status_reason TEXT;
