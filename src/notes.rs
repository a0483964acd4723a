//! The editor's notes: an optional markdown file per issue, `<issue-id>.md` in `[paths] notes`
//! (`notes/2023-07-17.md` for the week that starts on 17 July 2023), shown above the issue's
//! digests in the email, on its web page and in the feeds. Read like digests: a BOM and CRLF are
//! tolerated, control characters and markup nested past what the renderer takes are problems.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;

use crate::digest::{ParseError, files_with_extension, forbidden, read_text};
use crate::render::markdown;

/// A note: its file, and its markdown.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub path: PathBuf,
    pub markdown: String,
}

/// Every readable note of `dir` by the week it names, and the problems of the others. A missing
/// folder has no notes (notes are optional); only a folder that exists and cannot be read is an `Err`.
pub fn read_folder(dir: &Path) -> std::io::Result<(BTreeMap<NaiveDate, Note>, Vec<ParseError>)> {
    let mut notes = BTreeMap::new();
    let mut problems = Vec::new();
    if !dir.is_dir() {
        return Ok((notes, problems));
    }
    for path in files_with_extension(dir, "md")? {
        match read_file(&path) {
            Ok((week, note)) => {
                notes.insert(week, note);
            }
            Err(e) => problems.push(e),
        }
    }
    Ok((notes, problems))
}

fn read_file(path: &Path) -> Result<(NaiveDate, Note), ParseError> {
    let problem = |line: usize, message: String, date: Option<NaiveDate>| ParseError {
        path: path.to_path_buf(),
        line,
        message,
        date,
    };
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let week = NaiveDate::parse_from_str(stem, "%Y-%m-%d").map_err(|_| {
        problem(
            0,
            format!("`{stem}` is not the first day of a week; name a note after its issue, such as 2023-07-17.md"),
            None,
        )
    })?;
    let text = read_text(path).map_err(|(line, message)| problem(line, message, Some(week)))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text).replace("\r\n", "\n");
    for (n, line) in text.lines().enumerate() {
        if let Some(c) = line.chars().find(|&c| forbidden(c)) {
            return Err(problem(
                n + 1,
                format!("holds the control character U+{:04X}, which no reader can see; remove it", c as u32),
                Some(week),
            ));
        }
    }
    if let (_, Some(at)) = markdown::nesting(&text) {
        let line = text[..at].matches('\n').count() + 1;
        return Err(problem(
            line,
            format!("markup is nested more than {} levels deep here; flatten it", markdown::MAX_NESTING),
            Some(week),
        ));
    }
    let markdown = text.trim().to_string();
    Ok((week, Note { path: path.to_path_buf(), markdown }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_read_by_week_and_bad_ones_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("2023-07-17.md"), "\u{feff}Hello *readers*.\r\n\r\nSecond paragraph.\r\n")
            .unwrap();
        std::fs::write(dir.path().join("july.md"), "x").unwrap();
        std::fs::write(dir.path().join("2023-07-24.md"), "fine\nbell \u{7} here\n").unwrap();
        std::fs::write(dir.path().join("2023-07-31.txt"), "not a note").unwrap();
        let (notes, problems) = read_folder(dir.path()).unwrap();
        let week = NaiveDate::from_ymd_opt(2023, 7, 17).unwrap();
        assert_eq!(notes.keys().collect::<Vec<_>>(), [&week]);
        assert_eq!(notes[&week].markdown, "Hello *readers*.\n\nSecond paragraph.");
        let texts: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 2, "{texts:?}");
        assert!(
            texts.iter().any(|t| t
                .ends_with("2023-07-24.md:2: holds the control character U+0007, which no reader can see; remove it")),
            "{texts:?}"
        );
        assert!(texts.iter().any(|t| t.contains("july.md: `july` is not the first day of a week")), "{texts:?}");
        assert!(read_folder(&dir.path().join("missing")).unwrap().0.is_empty());
    }
}
