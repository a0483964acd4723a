-- The publication record: one row per issue that has been published (its week became due, or an
-- editor sent or built it by hand). `number` is given once, when the row is made, and never
-- changes: it is the number readers see. `content_hash` is what the issue's digests were the
-- last time it was published; `revised_at` is when they last changed after that (NULL while they
-- never have), which the feeds show as the entry's `updated`.
CREATE TABLE publications (
    issue_id     TEXT PRIMARY KEY,
    number       INTEGER NOT NULL UNIQUE,
    published_at INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    revised_at   INTEGER
);

-- Issues sent before this table existed were numbered by their send: keep those numbers.
INSERT OR IGNORE INTO publications (issue_id, number, published_at, content_hash)
SELECT issue_id, number, started_at, '' FROM sends ORDER BY started_at;
