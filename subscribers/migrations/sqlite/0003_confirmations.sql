-- Confirmation mails of the web form, one row per subscriber with an open request. `sent_at`
-- limits re-sends to one an hour; `requested_at` lets an unsubscribed address come back only by
-- confirming a request made after it left. The row goes when the request is confirmed.
-- Timestamps are Unix seconds, like those of `subscribers`.
CREATE TABLE confirmations (
    subscriber_id INTEGER PRIMARY KEY REFERENCES subscribers (id) ON DELETE CASCADE,
    requested_at  INTEGER NOT NULL,
    sent_at       INTEGER NOT NULL
);
