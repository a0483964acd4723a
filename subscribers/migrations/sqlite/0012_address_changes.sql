-- A reader's change of address from the preferences page (issue 31), confirmed from a link mailed
-- to the new address (double opt-in): one row per request, kept after it is used or superseded, so
-- that an old link is refused saying why rather than as a forgery. The old address keeps receiving
-- until the link is used; confirming moves `new_email` into `subscribers` and stamps `confirmed_at`.
-- A request is superseded by any later request of the same subscriber (a higher `id`).
-- Timestamps are Unix seconds, like those of `subscribers`.
CREATE TABLE address_changes (
    id            INTEGER PRIMARY KEY,
    subscriber_id INTEGER NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    -- The new address as given, and its key (`SubscriberEmail::key`), as in `subscribers`.
    new_email     TEXT NOT NULL,
    new_email_key TEXT NOT NULL,
    requested_at  INTEGER NOT NULL,
    -- When the link was used; NULL while it has not been.
    confirmed_at  INTEGER
);

CREATE INDEX address_changes_by_subscriber ON address_changes (subscriber_id, id);
