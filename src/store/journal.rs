//! The sent journal of a send on SQLite: one line per message the server has accepted, appended
//! (one `write` for all the outcomes that arrive together) before the connection that sent it may
//! put its next message on the wire, and folded into the delivery ledger in larger commits.
//!
//! Why a file beside the database rather than a commit per outcome: what a kill -9 can make
//! Gazette send twice is only what the server accepted and Gazette did not keep, so each accepted
//! message must be kept before the next one goes out. A commit of the ledger costs a round trip to
//! SQLite's thread and a write of whole pages to its WAL; a line appended to this file costs one
//! system call, and like a commit with `synchronous = NORMAL` it survives the death of the process
//! (the kernel holds it), not a power cut. The next send of the issue reads what the file holds
//! into the ledger before anything else (`Ledger::requeue_in_flight` would otherwise send those
//! messages again), and removes it.
//!
//! The file is `<database>.sent-<issue id>`, written by the one sender that holds the issue's
//! lease. Only messages the server accepted are written here: any other outcome is committed to
//! the ledger at once, and a message that was not accepted cannot reach a reader twice.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::issue_id::IssueId;

/// The journal of one issue's send, open for appending.
#[derive(Debug)]
pub struct SentJournal {
    file: File,
    path: PathBuf,
    /// Written and not yet folded into the ledger.
    unfolded: Vec<i64>,
}

/// Where the journal of `issue_id` lives for the database at `database`.
pub fn path_of(database: &Path, issue_id: &IssueId) -> PathBuf {
    // An issue's id is a week's date (`2023-07-23`): digits and hyphens, safe in a file name.
    let mut name = database.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".sent-{issue_id}"));
    database.with_file_name(name)
}

/// The subscriber ids a journal holds: every whole line. A line cut short (the process died in
/// the middle of a write) or anything that is not an id ends the reading; what follows is not
/// trusted, and those messages are sent again as any message in flight would be.
pub fn read(path: &Path) -> std::io::Result<Vec<i64>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut ids = Vec::new();
    let mut rest = &bytes[..];
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        let line = &rest[..end];
        match std::str::from_utf8(line).ok().and_then(|s| s.parse::<i64>().ok()) {
            Some(id) if !line.is_empty() && line.iter().all(u8::is_ascii_digit) => ids.push(id),
            _ => {
                tracing::warn!(
                    "{}: line {} is not a subscriber id; it and the lines after it are not used (those messages are sent again)",
                    path.display(),
                    ids.len() + 1
                );
                break;
            }
        }
        rest = &rest[end + 1..];
    }
    Ok(ids)
}

impl SentJournal {
    /// Opens (creating) the journal of `issue_id`. What an earlier run left in it must have been
    /// read into the ledger first: it is emptied here.
    pub fn create(database: &Path, issue_id: &IssueId) -> std::io::Result<SentJournal> {
        let path = path_of(database, issue_id);
        // Appending: after a fold empties it, the next write goes to its start again.
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        file.set_len(0)?;
        Ok(SentJournal { file, path, unfolded: Vec::new() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `ids` in one write.
    pub fn append(&mut self, ids: &[i64]) -> std::io::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut line = String::with_capacity(ids.len() * 8);
        for id in ids {
            line.push_str(&id.to_string());
            line.push('\n');
        }
        self.file.write_all(line.as_bytes())?;
        self.unfolded.extend_from_slice(ids);
        Ok(())
    }

    /// The ids written since the last fold.
    pub fn unfolded(&self) -> &[i64] {
        &self.unfolded
    }

    /// The ids written so far are in the ledger (committed): the file starts afresh.
    pub fn folded(&mut self) -> std::io::Result<()> {
        if !self.unfolded.is_empty() {
            self.file.set_len(0)?;
            self.unfolded.clear();
        }
        Ok(())
    }

    /// The send is over and everything is in the ledger: the file goes.
    pub fn remove(self) -> std::io::Result<()> {
        debug_assert!(self.unfolded.is_empty(), "the journal is removed with ids not folded");
        drop(self.file);
        std::fs::remove_file(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The issue of the week starting on `start` (`2023-07-17`).
    fn week(start: &str) -> IssueId {
        start.parse().expect("an issue's id")
    }

    #[test]
    fn the_journal_keeps_whole_lines_and_starts_afresh_when_folded() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("gazette.db");
        let path = path_of(&db, &week("2023-07-23"));
        assert_eq!(path, dir.path().join("gazette.db.sent-2023-07-23"));
        assert_eq!(read(&path).unwrap(), Vec::<i64>::new(), "no journal: nothing to read");

        let mut journal = SentJournal::create(&db, &week("2023-07-23")).unwrap();
        journal.append(&[3, 1]).unwrap();
        journal.append(&[]).unwrap();
        journal.append(&[20]).unwrap();
        assert_eq!(read(&path).unwrap(), vec![3, 1, 20]);
        assert_eq!(journal.unfolded(), &[3, 1, 20]);
        journal.folded().unwrap();
        assert_eq!(read(&path).unwrap(), Vec::<i64>::new());
        // Appending after a fold writes at the start again, with no hole of zeros before it.
        journal.append(&[7]).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"7\n");
        journal.folded().unwrap();
        journal.remove().unwrap();
        assert!(!path.exists());

        // A write cut short: the last line has no end, so it is not an id (it may be 12 of 123).
        std::fs::write(&path, b"5\n6\n12").unwrap();
        assert_eq!(read(&path).unwrap(), vec![5, 6]);
        // Garbage (a power cut's zeros) ends the reading.
        std::fs::write(&path, b"5\n\0\0\n6\n").unwrap();
        assert_eq!(read(&path).unwrap(), vec![5]);
        std::fs::write(&path, b"5\n-6\n7\n").unwrap();
        assert_eq!(read(&path).unwrap(), vec![5]);
        // Opening a journal empties it: its ids must have been read into the ledger before.
        let journal = SentJournal::create(&db, &week("2023-07-23")).unwrap();
        assert_eq!(read(&path).unwrap(), Vec::<i64>::new());
        journal.remove().unwrap();
    }
}
