-- As SQLite's 0008_skips.sql: when the editor chose not to send an issue (`gazette skip`).
ALTER TABLE publications ADD COLUMN skipped_at BIGINT;
