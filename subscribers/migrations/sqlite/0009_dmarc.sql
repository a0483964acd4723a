-- DMARC aggregate reports (RFC 7489 §7.2): what receivers report each day about the mail sent in
-- the domain's name, read from the bounce mailbox, [dmarc] mailbox or `gazette bounces import`.
-- See src/dmarc.rs and src/store/dmarc.rs. A report delivered twice (the same reporter and
-- report id) is kept once.
CREATE TABLE dmarc_reports (
    id          INTEGER PRIMARY KEY,
    -- The reporting organisation (`org_name`): the receiver.
    org         TEXT NOT NULL,
    report_id   TEXT NOT NULL,
    -- The period it covers (`date_range`), Unix seconds.
    begins_at   INTEGER NOT NULL,
    ends_at     INTEGER NOT NULL,
    -- The domain whose policy was applied (`policy_published/domain`).
    domain      TEXT NOT NULL,
    -- Where it was read: a file, or a mailbox and the message's UID.
    source      TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    UNIQUE (org, report_id)
);

CREATE INDEX dmarc_reports_by_begin ON dmarc_reports (begins_at);

-- Its records: messages from one source IP that fared alike.
CREATE TABLE dmarc_rows (
    report      INTEGER NOT NULL REFERENCES dmarc_reports (id) ON DELETE CASCADE,
    source_ip   TEXT NOT NULL,
    count       INTEGER NOT NULL,
    -- What the receiver did: none, quarantine, reject (pass from a few), unspecified.
    disposition TEXT NOT NULL,
    -- DKIM and SPF as DMARC evaluated them (`policy_evaluated`): passed for an aligned domain or not.
    dkim        TEXT NOT NULL CHECK (dkim IN ('pass', 'fail')),
    spf         TEXT NOT NULL CHECK (spf IN ('pass', 'fail')),
    header_from TEXT NOT NULL
);

CREATE INDEX dmarc_rows_by_report ON dmarc_rows (report);
