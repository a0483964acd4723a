-- As SQLite's 0010_holds.sql: the editor lifting the reputation guard's hold of an issue.
CREATE TABLE hold_lifts (
    issue_id   TEXT PRIMARY KEY,
    lifted_at  BIGINT NOT NULL,
    reason     TEXT NOT NULL
);
