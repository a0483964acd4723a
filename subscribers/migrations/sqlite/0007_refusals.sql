-- Why each failure happened, and the refusals that are the sender's problem (issue 27). See
-- src/store/bounces.rs for the policy.
--
-- Every report keeps its reason: Sisimai's name (`userunknown`, `mailboxfull`, `spamdetected`, ...,
-- as `Reason::as_str` spells it); NULL for complaints and for reports read before this migration.
ALTER TABLE bounce_events ADD COLUMN reason_code TEXT;

-- Refusals of the message or the sender (spam, a blocklist, a policy, the content, the size,
-- authentication: a reason of `Scope::Sender`), at sending or in a report that came back. They
-- never change a subscriber's status and never count in the streak of temporary failures; they
-- are counted per issue and per provider (the recipient's domain) by `gazette status`.
--
-- A table of their own rather than a fourth `bounce_events.kind`: SQLite cannot change that
-- column's CHECK in place, and a rebuild (create, copy, drop, rename) would rewrite every report
-- kept so far in the migration, for rows that take no part in the reader's policy. Apart, nothing
-- that reads bounce_events (the streak, the counts of what came back) can count a refusal by
-- mistake.
CREATE TABLE refusals (
    id            INTEGER PRIMARY KEY,
    subscriber_id INTEGER NOT NULL REFERENCES subscribers (id),
    -- The issue whose delivery was refused; NULL when a report allowed no telling.
    issue_id      TEXT,
    -- The domain of the refused address, in lower case: whose servers refused.
    provider      TEXT NOT NULL,
    -- The reason (`Reason::as_str`). No CHECK: the list of reasons lives in the code alone.
    reason_code   TEXT NOT NULL,
    -- The status and the server's words.
    detail        TEXT NOT NULL,
    address       TEXT NOT NULL,
    -- `smtp reply` at sending; otherwise where the report was read (as bounce_events.source).
    source        TEXT NOT NULL,
    -- SHA-256 of the report, or `smtp:<issue>.<subscriber>` at sending: recorded once.
    message_key   TEXT NOT NULL,
    received_at   INTEGER NOT NULL,
    UNIQUE (message_key, subscriber_id)
);

CREATE INDEX refusals_by_issue ON refusals (issue_id, provider, reason_code);
