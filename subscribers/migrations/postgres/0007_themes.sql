-- Readers choose what they receive: the same columns as SQLite's 0011_themes.sql, with the same
-- meanings (see that file).
ALTER TABLE subscribers ADD COLUMN themes TEXT;
ALTER TABLE subscribers ADD COLUMN paused_until BIGINT;
