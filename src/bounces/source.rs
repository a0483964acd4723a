//! Messages from paths: a folder with `cur/` and `new/` is a maildir, any other folder is read
//! file by file, a file that begins with a `From ` line is an mbox (of one message or many), any
//! other file is one message, whatever its name ends with.

use std::path::{Path, PathBuf};

/// One message read from a path.
#[derive(Debug, Clone)]
pub struct Found {
    /// The file it came from.
    pub path: PathBuf,
    /// Its position in an mbox, from 1; `None` for a file that is one message.
    pub index: Option<usize>,
    pub bytes: Vec<u8>,
}

impl Found {
    /// `path`, or `path#3` for the third message of an mbox: for people and the record.
    pub fn label(&self) -> String {
        match self.index {
            Some(i) => format!("{}#{i}", self.path.display()),
            None => self.path.display().to_string(),
        }
    }
}

/// A path that cannot be read, named.
#[derive(Debug, thiserror::Error)]
#[error("{}: {why}", path.display())]
pub struct SourceError {
    pub path: PathBuf,
    pub why: String,
}

/// Every message under `paths`, in order: a maildir's `new/` then `cur/`, a folder's files, by name.
pub fn read_paths(paths: &[PathBuf]) -> Result<Vec<Found>, SourceError> {
    let mut found = Vec::new();
    for path in paths {
        let err = |why: String| SourceError { path: path.clone(), why };
        let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read: {e}")))?;
        if meta.is_dir() {
            if is_maildir(path) {
                for sub in ["new", "cur"] {
                    for file in files_in(&path.join(sub))? {
                        found.push(Found { bytes: read(&file)?, path: file, index: None });
                    }
                }
            } else {
                for file in files_in(path)? {
                    found.extend(read_file(&file)?);
                }
            }
        } else {
            found.extend(read_file(path)?);
        }
    }
    Ok(found)
}

/// A folder with `cur/` and `new/` in it.
pub fn is_maildir(path: &Path) -> bool {
    path.join("cur").is_dir() && path.join("new").is_dir()
}

/// The regular files of a folder, by name, leaving out hidden ones (a maildir's `.Processed`,
/// editors' and mail programs' own files).
pub fn files_in(dir: &Path) -> Result<Vec<PathBuf>, SourceError> {
    let err = |e: std::io::Error| SourceError { path: dir.to_path_buf(), why: format!("cannot list: {e}") };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let entry = entry.map_err(err)?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && entry.file_type().map_err(err)?.is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

fn read(path: &Path) -> Result<Vec<u8>, SourceError> {
    std::fs::read(path).map_err(|e| SourceError { path: path.to_path_buf(), why: format!("cannot read: {e}") })
}

/// One file: an mbox's messages, or the file as one message.
fn read_file(path: &Path) -> Result<Vec<Found>, SourceError> {
    let bytes = read(path)?;
    if !bytes.starts_with(b"From ") {
        return Ok(vec![Found { path: path.to_path_buf(), index: None, bytes }]);
    }
    Ok(split_mbox(&bytes)
        .into_iter()
        .enumerate()
        .map(|(i, bytes)| Found { path: path.to_path_buf(), index: Some(i + 1), bytes })
        .collect())
}

/// The messages of an mbox: each starts after a `From ` line that opens the file or follows an
/// empty line. Lines quoted as `>From ` (mboxrd) lose one `>`.
pub fn split_mbox(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut messages: Vec<Vec<u8>> = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    let mut previous_blank = true;
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        if previous_blank && line.starts_with(b"From ") {
            if let Some(mut m) = current.take() {
                // The empty line before the separator belongs to the mbox, not to the message.
                if m.ends_with(b"\r\n\r\n") {
                    m.truncate(m.len() - 2);
                } else if m.ends_with(b"\n\n") {
                    m.truncate(m.len() - 1);
                }
                messages.push(m);
            }
            current = Some(Vec::new());
            previous_blank = false;
            continue;
        }
        previous_blank = line == b"\n" || line == b"\r\n";
        let Some(m) = current.as_mut() else { continue };
        let quoted = line.iter().take_while(|b| **b == b'>').count();
        if quoted > 0 && line[quoted..].starts_with(b"From ") {
            m.extend_from_slice(&line[1..]);
        } else {
            m.extend_from_slice(line);
        }
    }
    messages.extend(current);
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_mbox_splits_at_from_lines_after_a_blank_line_only() {
        let mbox = b"From MAILER-DAEMON Mon Jul 17 09:00:00 2023\nSubject: one\n\nbody\nFrom here on, a body line.\n>From quoted\n\n\
                     From MAILER-DAEMON Mon Jul 17 09:05:00 2023\nSubject: two\n\nbody\n";
        let messages = split_mbox(mbox);
        assert_eq!(messages.len(), 2);
        assert_eq!(
            String::from_utf8_lossy(&messages[0]),
            "Subject: one\n\nbody\nFrom here on, a body line.\nFrom quoted\n"
        );
        assert_eq!(String::from_utf8_lossy(&messages[1]), "Subject: two\n\nbody\n");
    }

    #[test]
    fn paths_are_read_as_maildir_folder_mbox_or_single_file() {
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("Maildir");
        for sub in ["cur", "new", "tmp", ".Processed/cur"] {
            std::fs::create_dir_all(maildir.join(sub)).unwrap();
        }
        std::fs::write(maildir.join("new/1.host"), "Subject: a\n\nx\n").unwrap();
        std::fs::write(maildir.join("cur/2.host:2,S"), "Subject: b\n\nx\n").unwrap();
        std::fs::write(maildir.join("tmp/3.host"), "Subject: half-written\n").unwrap();
        std::fs::write(maildir.join(".Processed/cur/4.host:2,S"), "Subject: done\n\nx\n").unwrap();
        let folder = dir.path().join("folder");
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(
            folder.join("box.txt"),
            "From x Mon Jul 17 09:00:00 2023\nSubject: c\n\nx\n\nFrom y Mon Jul 17 09:00:00 2023\nSubject: d\n\ny\n",
        )
        .unwrap();
        std::fs::write(folder.join("single.msg"), "Subject: e\n\nx\n").unwrap();
        let found = read_paths(&[maildir, folder.clone(), folder.join("single.msg")]).unwrap();
        let labels: Vec<String> = found.iter().map(|f| f.label().rsplit('/').next().unwrap().to_string()).collect();
        assert_eq!(labels, ["1.host", "2.host:2,S", "box.txt#1", "box.txt#2", "single.msg", "single.msg"]);
        let missing = read_paths(&[dir.path().join("nowhere")]).unwrap_err().to_string();
        assert!(missing.contains("nowhere: cannot read"), "{missing}");
    }
}
