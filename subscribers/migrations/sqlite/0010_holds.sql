-- The reputation guard (issue 30): when the last issue sent passed a `[reputation]` threshold, the
-- scheduler holds the next issue. The hold itself is not stored: it is read from the numbers of the
-- last send each round. What is stored is the editor lifting it (`gazette lift-hold`), for the held
-- issue, with what held it then, so that the hold of the next issue is decided afresh.
CREATE TABLE hold_lifts (
    -- The issue that was held (and may now go).
    issue_id   TEXT PRIMARY KEY,
    -- When the editor lifted the hold (Unix seconds).
    lifted_at  INTEGER NOT NULL,
    -- What held it when it was lifted, as `gazette run` said it.
    reason     TEXT NOT NULL
);
