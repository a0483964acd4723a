-- Readers choose what they receive (issue 31). `themes`: the themes a reader follows, a JSON array
-- of names (src/themes.rs); NULL follows everything, the default. `paused_until`: while this time
-- (Unix seconds) is in the future, the reader's deliveries are skipped, saying so; NULL when not
-- paused.
ALTER TABLE subscribers ADD COLUMN themes TEXT;
ALTER TABLE subscribers ADD COLUMN paused_until INTEGER;
