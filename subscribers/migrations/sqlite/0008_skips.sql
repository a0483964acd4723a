-- An issue the editor chose not to send (`gazette skip`): the scheduler never sends it, and its
-- rounds stop reminding that it is unsent. NULL while it is not skipped (Unix seconds otherwise).
ALTER TABLE publications ADD COLUMN skipped_at INTEGER;
