//! Article digests: the markdown files an editor keeps, one per article, in the seed's format.
//! This module owns reading them into `Digest`s and reporting every problem as `path:line: …`.
//! A bad file never hides another file's problems, and never stops the good files from being read.

use std::fmt;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use pulldown_cmark::{Event, Parser};
use serde::Serialize;

use crate::issue_id::IssueId;

/// One article digest, as read from its file. Text is kept as written: nothing here is HTML.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Digest {
    /// The hex part of the file name: `000_86102eed948879ef.txt` -> `86102eed948879ef`.
    pub id: String,
    pub file_name: String,
    #[serde(skip)]
    pub path: PathBuf,
    pub title: String,
    /// The date the article was collected.
    pub date: NaiveDate,
    /// The link in the heading: where the digest was collected from.
    pub source_url: String,
    /// The article itself.
    pub link: String,
    /// Markdown: links and emphasis are meant to survive rendering, nothing else.
    pub summary: String,
    pub keywords: Vec<String>,
    pub themes: Vec<String>,
    pub signals: Signals,
    pub closest: Vec<Closest>,
}

/// What every build needs of every digest, and what the build cache keeps of it: enough to
/// group, number, list and link the digests (the index, the theme feeds' plan, the publication
/// record), not to show them. Showing a digest takes the `Digest` read whole from its file.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogEntry {
    pub id: String,
    pub file_name: String,
    pub path: PathBuf,
    pub title: String,
    pub date: NaiveDate,
    pub themes: Vec<String>,
    /// The reference of each entry of its `## Closest`, in order.
    pub references: Vec<String>,
}

impl CatalogEntry {
    /// What the catalog keeps of `d`.
    pub fn of(d: &Digest) -> CatalogEntry {
        CatalogEntry {
            id: d.id.clone(),
            file_name: d.file_name.clone(),
            path: d.path.clone(),
            title: d.title.clone(),
            date: d.date,
            themes: d.themes.clone(),
            references: d.closest.iter().map(|c| c.reference.clone()).collect(),
        }
    }
}

/// What lists, groups and links digests: what a `CatalogEntry` and a whole `Digest` both have.
pub trait Listed {
    fn id(&self) -> &str;
    fn file_name(&self) -> &str;
    fn path(&self) -> &Path;
    fn title(&self) -> &str;
    fn date(&self) -> NaiveDate;
    fn themes(&self) -> &[String];
    /// The reference of each closest entry, in order.
    fn references(&self) -> impl Iterator<Item = &str>;
}

impl Listed for Digest {
    fn id(&self) -> &str {
        &self.id
    }
    fn file_name(&self) -> &str {
        &self.file_name
    }
    fn path(&self) -> &Path {
        &self.path
    }
    fn title(&self) -> &str {
        &self.title
    }
    fn date(&self) -> NaiveDate {
        self.date
    }
    fn themes(&self) -> &[String] {
        &self.themes
    }
    fn references(&self) -> impl Iterator<Item = &str> {
        self.closest.iter().map(|c| c.reference.as_str())
    }
}

impl Listed for CatalogEntry {
    fn id(&self) -> &str {
        &self.id
    }
    fn file_name(&self) -> &str {
        &self.file_name
    }
    fn path(&self) -> &Path {
        &self.path
    }
    fn title(&self) -> &str {
        &self.title
    }
    fn date(&self) -> NaiveDate {
        self.date
    }
    fn themes(&self) -> &[String] {
        &self.themes
    }
    fn references(&self) -> impl Iterator<Item = &str> {
        self.references.iter().map(String::as_str)
    }
}

/// The `## Signals` table: the header row names the columns.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Signals {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// An entry of `## Closest`. `target` is filled in when the issues are grouped, if the reference
/// names a digest of the corpus; otherwise only the title can be shown.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Closest {
    pub title: String,
    pub reference: String,
    /// Boxed, so that the many entries of a large archive stay small.
    pub target: Option<Box<ClosestTarget>>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClosestTarget {
    pub digest_id: String,
    pub issue_id: IssueId,
}

/// A problem in one digest file, at one line (1-based; 0 when it concerns the whole file).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ParseError {
    pub path: PathBuf,
    pub line: usize,
    pub message: String,
    /// The digest's date when its heading could be read: which week the broken file belongs to.
    pub date: Option<NaiveDate>,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A problem of the whole file (line 0) names the file alone: there is no line 0 to look at.
        match self.line {
            0 => write!(f, "{}: {}", self.path.display(), self.message),
            line => write!(f, "{}:{line}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for ParseError {}

/// What reading a folder gives: every digest that parsed, and every problem of the others.
#[derive(Debug, Default)]
pub struct Corpus {
    pub digests: Vec<Digest>,
    pub problems: Vec<ParseError>,
    /// How many files were read and parsed (the others' results came from the build cache).
    pub parsed: usize,
}

/// Reads every digest file of `dir` (`*.txt` named with an id, see `is_digest_name`; not hidden
/// ones, not subfolders), sorted by file name. Only an unreadable folder is an `Err`; problems with
/// single files are collected in `problems`.
pub fn read_folder(dir: &Path) -> std::io::Result<Corpus> {
    let mut paths = files_with_extension(dir, "txt")?;
    paths.retain(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(is_digest_name));
    Ok(Corpus::from_results(paths.len(), read_files(&paths)))
}

/// What one file gives: its digest, or every problem it has.
pub type FileResult = Result<Digest, Vec<ParseError>>;

/// Reads and parses `paths`, in their order.
pub fn read_files(paths: &[PathBuf]) -> Vec<FileResult> {
    // Parsing is independent per file: spread it over the cores for large folders.
    use rayon::prelude::*;
    paths.par_iter().map(|p| read_file(p)).collect()
}

impl Corpus {
    /// The digests and problems of `count` files of a folder, in any order.
    pub fn from_results(count: usize, results: impl IntoIterator<Item = FileResult>) -> Corpus {
        let mut corpus = Corpus { parsed: count, digests: Vec::with_capacity(count), ..Corpus::default() };
        for r in results {
            match r {
                Ok(d) => corpus.digests.push(d),
                Err(mut errs) => corpus.problems.append(&mut errs),
            }
        }
        if let Some((keep, mut duplicates)) = duplicate_ids(corpus.digests.iter(), corpus.digests.len()) {
            let mut keep = keep.into_iter();
            corpus.digests.retain(|_| keep.next().expect("one flag a digest"));
            corpus.problems.append(&mut duplicates);
        }
        corpus
    }
}

/// Two files with the same id would make closest links ambiguous: the first by file name is kept
/// and each other one is a problem. `None` when every id is used once (the usual case); else
/// whether to keep each digest, in the order given, and the problems.
pub fn duplicate_ids<'a, D: Listed + 'a>(
    digests: impl Iterator<Item = &'a D> + Clone,
    count: usize,
) -> Option<(Vec<bool>, Vec<ParseError>)> {
    let mut first: foldhash::HashMap<&str, (usize, &D)> =
        foldhash::HashMap::with_capacity_and_hasher(count, Default::default());
    let mut twice = false;
    for (k, d) in digests.clone().enumerate() {
        match first.get_mut(d.id()) {
            Some(at) => {
                twice = true;
                if d.file_name() < at.1.file_name() {
                    *at = (k, d);
                }
            }
            None => {
                first.insert(d.id(), (k, d));
            }
        }
    }
    if !twice {
        return None;
    }
    let mut duplicates = Vec::new();
    let mut keep = Vec::new();
    for (k, d) in digests.enumerate() {
        let (at, kept) = first[d.id()];
        keep.push(at == k);
        if at != k {
            duplicates.push(ParseError {
                path: d.path().to_path_buf(),
                line: 0,
                message: format!(
                    "id `{}` is already used by {}; ids (the hex part of the file name) must be unique",
                    d.id(),
                    kept.path().display()
                ),
                date: Some(d.date()),
            });
        }
    }
    Some((keep, duplicates))
}

/// The files of `dir` whose name ends in `.extension`, sorted by name: not hidden ones, not
/// subfolders. The digests folder and the notes folder are read alike.
pub fn files_with_extension(dir: &Path, extension: &str) -> std::io::Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !name.starts_with('.') && p.extension().is_some_and(|e| e == extension) && p.is_file()
        })
        .collect();
    paths.sort();
    Ok(paths)
}

/// A text file's contents, or the line and words of what is wrong (it cannot be read, or is not
/// UTF-8: the line where the first bad byte is).
pub fn read_text(path: &Path) -> Result<String, (usize, String)> {
    let bytes = std::fs::read(path).map_err(|e| (0, format!("cannot read the file: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        let line = e.as_bytes()[..e.utf8_error().valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
        (line, "the file is not valid UTF-8; save it as UTF-8".to_string())
    })
}

/// Reads and parses one file.
pub fn read_file(path: &Path) -> Result<Digest, Vec<ParseError>> {
    let text = read_text(path)
        .map_err(|(line, message)| vec![ParseError { path: path.to_path_buf(), line, message, date: None }])?;
    parse(path, &text)
}

/// Characters a digest may not carry: C0 and C1 controls except tab (newlines split lines before
/// this is asked), DEL, and Unicode noncharacters (U+FDD0..U+FDEF, and U+xxFFFE/U+xxFFFF).
pub fn forbidden(c: char) -> bool {
    let u = c as u32;
    (c.is_control() && c != '\t') || (0xFDD0..=0xFDEF).contains(&u) || (u & 0xFFFE) == 0xFFFE
}

/// Whether the folder's reader reads a file of this name as a digest: a `.txt` name that gives an
/// id (`id_from_file_name`). Other files are not read; `unread_files` says why, for `check`.
pub fn is_digest_name(name: &str) -> bool {
    name.ends_with(".txt") && name.len() > 4 && id_from_file_name(name).is_some()
}

/// The files of the digests folder that are not read as digests, each with why and what to do:
/// an editor who saved `notes.md` or `001_draft.txt` there is told, not silently ignored. Hidden
/// files and subfolders are left out, as the reader leaves them.
pub fn unread_files(dir: &Path) -> std::io::Result<Vec<(PathBuf, String)>> {
    let mut unread = Vec::new();
    for e in std::fs::read_dir(dir)?.filter_map(|e| e.ok()) {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !path.is_file() || is_digest_name(&name) {
            continue;
        }
        let why = if !name.ends_with(".txt") {
            "only `.txt` files are digests; if this is one, rename it NNN_<16 hex digits>.txt (gazette new makes one)"
                .to_string()
        } else {
            format!(
                "the name `{name}` has no hex id after its `_`; name it like 001_86102eed948879ef.txt (gazette new makes one)"
            )
        };
        unread.push((path, why));
    }
    unread.sort();
    Ok(unread)
}

/// The id a file name gives: the hex after the last `_` of the stem (or the whole stem).
pub fn id_from_file_name(name: &str) -> Option<String> {
    let stem = name.strip_suffix(".txt").unwrap_or(name);
    let hex = stem.rsplit('_').next().unwrap_or(stem);
    (!hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| hex.to_ascii_lowercase())
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Section {
    Summary,
    Keywords,
    Themes,
    Signals,
    Closest,
}

impl Section {
    fn from_heading(name: &str) -> Option<Section> {
        match name.trim().to_ascii_lowercase().as_str() {
            "summary" => Some(Section::Summary),
            "keywords" => Some(Section::Keywords),
            "themes" => Some(Section::Themes),
            "signals" => Some(Section::Signals),
            "closest" => Some(Section::Closest),
            _ => None,
        }
    }
}

/// Parses the text of one digest. `path` is used for the id and for messages.
pub fn parse(path: &Path, text: &str) -> Result<Digest, Vec<ParseError>> {
    let mut problems = Problems { path, found: Vec::new() };
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
    let id = id_from_file_name(&file_name);
    if id.is_none() {
        problems.add(0, format!("the file name `{file_name}` has no hex id; name it like 000_86102eed948879ef.txt"));
    }

    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Lines numbered from 1, with CR of CRLF endings removed.
    let lines: Vec<(usize, &str)> =
        text.split('\n').enumerate().map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l))).collect();
    let mut it = lines.iter().copied().filter(|(_, l)| !l.trim().is_empty()).peekable();
    let heading = read_heading_line(it.next(), &mut problems);
    let link = read_link_line(&mut it, lines.len(), &mut problems);
    check_characters(&lines, &mut problems);
    let sections = read_sections(&lines, &mut problems);

    if !problems.found.is_empty() {
        let mut found = problems.found;
        for p in &mut found {
            p.date = heading.date;
        }
        return Err(found);
    }
    Ok(Digest {
        id: id.expect("checked"),
        file_name,
        path: path.to_path_buf(),
        title: heading.title.expect("checked"),
        date: heading.date.expect("checked"),
        source_url: heading.source_url,
        link: link.expect("checked"),
        summary: sections.summary,
        keywords: sections.keywords,
        themes: sections.themes,
        signals: sections.signals,
        closest: sections.closest,
    })
}

/// The problems of the file being parsed, as they are found.
struct Problems<'a> {
    path: &'a Path,
    found: Vec<ParseError>,
}

impl Problems<'_> {
    fn add(&mut self, line: usize, message: String) {
        self.found.push(ParseError { path: self.path.to_path_buf(), line, message, date: None });
    }
}

/// What the heading gives, each part `None` (or empty) when it could not be read.
#[derive(Default)]
struct Heading {
    title: Option<String>,
    date: Option<NaiveDate>,
    source_url: String,
}

/// The heading, the first line that is not blank: `# __Title__, from ([YYYYMMDD](source-url).)`.
fn read_heading_line(first: Option<(usize, &str)>, problems: &mut Problems) -> Heading {
    let mut heading = Heading::default();
    let Some((n, line)) = first else {
        problems.add(1, "the file is empty; a digest starts with `# __Title__, from ([YYYYMMDD](url).)`".into());
        return heading;
    };
    match parse_heading(line) {
        Ok((t, d, s)) => {
            if t.trim().is_empty() {
                problems.add(
                    n,
                    "the title is empty; write it between the double underscores: `# __Title__, from ...`".into(),
                );
            } else {
                heading.title = Some(t.trim().to_string());
            }
            match NaiveDate::parse_from_str(d, "%Y%m%d") {
                Ok(d) if d.to_string().len() == 10 => heading.date = Some(d),
                _ => problems.add(n, format!("`{d}` is not a valid date; expected YYYYMMDD, such as 20230723")),
            }
            heading.source_url = s.to_string();
        }
        Err(why) => problems.add(n, why),
    }
    heading
}

/// The external link, the line after the heading: `__[External link](url)__`.
fn read_link_line<'a>(
    it: &mut std::iter::Peekable<impl Iterator<Item = (usize, &'a str)>>,
    line_count: usize,
    problems: &mut Problems,
) -> Option<String> {
    match it.peek().copied() {
        Some((n, line)) if !line.starts_with("## ") => {
            it.next();
            match line.trim().strip_prefix("__[External link](").and_then(|r| r.strip_suffix(")__")) {
                Some(url) => match check_http_url(url) {
                    Ok(()) => return Some(url.to_string()),
                    Err(why) => problems.add(n, format!("the external link {why}")),
                },
                None => problems.add(
                    n,
                    format!(
                        "expected the external link line `__[External link](https://...)__`, found `{}`",
                        clip(line)
                    ),
                ),
            }
        }
        other => problems.add(
            other.map(|(n, _)| n).unwrap_or(line_count),
            "the external link line `__[External link](https://...)__` is missing after the heading".into(),
        ),
    }
    None
}

/// Characters no mail, page or feed can carry, and `gazette new`'s placeholders, which must
/// never reach readers.
fn check_characters(lines: &[(usize, &str)], problems: &mut Problems) {
    for &(n, line) in lines {
        if let Some(c) = line.chars().find(|&c| forbidden(c)) {
            problems.add(
                n,
                format!(
                    "the line holds the character U+{:04X}, which mail, pages and feeds cannot carry; delete it",
                    c as u32
                ),
            );
        }
        if line.contains(PLACEHOLDER) {
            problems.add(
                n,
                format!("`{PLACEHOLDER}` is still here: write what it asks for in its place, or delete the line"),
            );
        }
    }
}

/// What the `##` sections give.
#[derive(Default)]
struct Sections {
    summary: String,
    keywords: Vec<String>,
    themes: Vec<String>,
    signals: Signals,
    closest: Vec<Closest>,
}

/// The sections, line by line: each `## Name` starts one, and its lines are read as that section's.
fn read_sections(lines: &[(usize, &str)], problems: &mut Problems) -> Sections {
    let mut sections = Sections::default();
    let mut summary_lines: Vec<(usize, &str)> = Vec::new();
    let mut current: Option<Section> = None;
    let mut seen: Vec<Section> = Vec::new();
    let mut table_line = 0usize; // rows of the signals table read so far

    for &(n, line) in lines {
        if let Some(name) = line.strip_prefix("## ") {
            current = match Section::from_heading(name) {
                Some(s) if seen.contains(&s) => {
                    problems.add(n, format!("the section `## {}` appears twice", name.trim()));
                    None
                }
                Some(s) => {
                    seen.push(s);
                    Some(s)
                }
                None => {
                    problems.add(
                        n,
                        format!(
                            "unknown section `## {}`; expected Summary, Keywords, Themes, Signals or Closest",
                            name.trim()
                        ),
                    );
                    None
                }
            };
            continue;
        }
        let Some(section) = current else { continue };
        let trimmed = line.trim();
        match section {
            Section::Summary => summary_lines.push((n, line)),
            _ if trimmed.is_empty() => {}
            Section::Keywords | Section::Themes => match bullet(trimmed) {
                Some(item) if !item.is_empty() => {
                    let list = if section == Section::Keywords { &mut sections.keywords } else { &mut sections.themes };
                    list.push(item.to_string());
                }
                _ => problems.add(
                    n,
                    format!("expected a bullet such as `* item` in `## {section:?}`, found `{}`", clip(trimmed)),
                ),
            },
            Section::Signals => read_signals_row(n, trimmed, &mut table_line, &mut sections.signals, problems),
            Section::Closest => match bullet(trimmed).and_then(parse_link) {
                Some((t, r)) if !r.is_empty() => sections.closest.push(Closest {
                    title: t.to_string(),
                    reference: r.to_ascii_lowercase(),
                    target: None,
                }),
                _ => problems
                    .add(n, format!("expected `* [Title](digest-id)` in `## Closest`, found `{}`", clip(trimmed))),
            },
        }
    }
    sections.summary = read_summary(lines, &summary_lines, seen.contains(&Section::Summary), problems);
    sections
}

/// One line of `## Signals`: the header row, the separator row, or a row of as many cells as
/// the header names columns. `table_line` counts the rows read so far; a line that is not a row
/// is a problem and does not count.
fn read_signals_row(n: usize, trimmed: &str, table_line: &mut usize, signals: &mut Signals, problems: &mut Problems) {
    if !trimmed.starts_with('|') {
        problems.add(n, format!("expected a table row starting with `|` in `## Signals`, found `{}`", clip(trimmed)));
        return;
    }
    let cells = split_row(trimmed);
    *table_line += 1;
    if *table_line == 1 {
        signals.columns = cells;
    } else if *table_line == 2 {
        if !cells.iter().all(|c| !c.is_empty() && c.chars().all(|ch| matches!(ch, '-' | ':' | ' '))) {
            problems.add(n, "expected the table's separator row, such as `|:---|:---|`, after its header row".into());
        }
    } else if cells.len() != signals.columns.len() {
        problems.add(
            n,
            format!("this row has {} cells but the header names {} columns", cells.len(), signals.columns.len()),
        );
    } else {
        signals.rows.push(cells);
    }
}

/// The summary's text from its lines (each with its number), and its problems: missing, empty,
/// or nested too deep.
fn read_summary(
    lines: &[(usize, &str)],
    summary_lines: &[(usize, &str)],
    seen: bool,
    problems: &mut Problems,
) -> String {
    let summary = summary_lines.iter().map(|(_, l)| *l).collect::<Vec<_>>().join("\n").trim().to_string();
    let first_line = summary_lines.iter().find(|(_, l)| !l.trim().is_empty()).map_or(0, |(n, _)| *n);
    if let (depth, Some(offset)) = nesting(&summary) {
        // The line: where the summary starts in the file, plus the lines before the offset.
        problems.add(
            first_line + summary[..offset].matches('\n').count(),
            format!(
                "the summary's markup nests {depth} levels deep (emphasis, links, quotes or lists inside each other); at most {MAX_NESTING} are allowed"
            ),
        );
    }
    if !seen {
        problems.add(lines.len(), "the `## Summary` section is missing; every digest needs a summary".into());
    } else if summary.is_empty() {
        let n = lines
            .iter()
            .find(|(_, l)| l.starts_with("## ") && l[3..].trim().eq_ignore_ascii_case("summary"))
            .map(|x| x.0);
        problems.add(n.unwrap_or(0), "the summary is empty; write at least one sentence under `## Summary`".into());
    }
    summary
}

/// How deep a summary's markup may nest: emphasis in a link in strong text is 3. MJML's compiler
/// recurses once per level, and a summary of 20,000 nested `*` would overflow its stack: the
/// reader reports a deeper summary as a problem (see `nesting`), and the renderer
/// (`render::markdown`) shows inner markup past this depth as plain text, which is what
/// guarantees that no content reaches the compiler that deep.
pub const MAX_NESTING: usize = 16;

/// The deepest nesting of `markdown`'s elements (blocks and inline markup alike), and the byte
/// offset where it first passes `MAX_NESTING`, if it does.
pub fn nesting(markdown: &str) -> (usize, Option<usize>) {
    let (mut depth, mut deepest, mut first_over) = (0usize, 0usize, None);
    for (ev, range) in Parser::new(markdown).into_offset_iter() {
        match ev {
            Event::Start(_) => {
                depth += 1;
                deepest = deepest.max(depth);
                if depth > MAX_NESTING && first_over.is_none() {
                    first_over = Some(range.start);
                }
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    (deepest, first_over)
}

/// What `gazette new` writes where the editor has text to write: `check` reports every line that
/// still holds it, so a skeleton is never published as it is.
pub const PLACEHOLDER: &str = "TODO(gazette new)";

/// The id of the example digest `gazette init` writes (`digests/000_0000000000000000.txt`). A
/// week that holds nothing else is an example (`Issue::is_example`), never published nor numbered.
pub const EXAMPLE_ID: &str = "0000000000000000";

/// A digest's id made from its article's link: the first 16 hex digits of its SHA-256. The same
/// link gives the same id (a second digest of one article is refused before, by its link), and
/// the example's id (`EXAMPLE_ID`) is never made.
pub fn id_for_link(link: &str) -> String {
    let hash = crate::fingerprint::Fingerprint::of(&[link]);
    let id = hash[..16].to_string();
    if id == EXAMPLE_ID { hash[16..32].to_string() } else { id }
}

/// The sequence number of a digest's file name (`012_...` -> 12), when it has one. It only orders
/// the files; the id after `_` is what names the digest.
pub fn sequence_of_file_name(name: &str) -> Option<u32> {
    let (nnn, _) = name.split_once('_')?;
    (!nnn.is_empty() && nnn.bytes().all(|b| b.is_ascii_digit())).then(|| nnn.parse().ok()).flatten()
}

/// The article link of a digest's text (its `__[External link](url)__` line), read without
/// parsing the rest: a broken digest still has its link counted as used.
pub fn link_of_text(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("__[External link](").and_then(|r| r.strip_suffix(")__")).map(str::trim))
}

/// Whether `url` can be a digest's link (an http(s) URL with a host); the reason when not.
pub fn check_link(url: &str) -> Result<(), String> {
    check_http_url(url)
}

/// The text of a new digest: every section of the format, with `PLACEHOLDER` where the editor has
/// something to write (or to delete: only the summary is required).
pub fn skeleton(title: &str, date: NaiveDate, source_url: &str, link: &str) -> String {
    format!(
        "# __{title}__, from ([{date}]({source_url}).)\n\n\
         __[External link]({link})__\n\n\
         ## Summary\n\n\
         {PLACEHOLDER}: what the article says, in a few sentences.\n\n\
         ## Keywords\n\n\
         * {PLACEHOLDER}: one keyword a bullet (or delete this section)\n\n\
         ## Themes\n\n\
         * {PLACEHOLDER}: one theme a bullet (or delete this section)\n\n\
         ## Signals\n\n\
         | Signal | Change | 10y horizon | Driving force |\n\
         |:-------|:-------|:------------|:--------------|\n\
         | {PLACEHOLDER}: one signal a row (or delete this section) | | | |\n\n\
         ## Closest\n\n\
         * [{PLACEHOLDER}: the title of a related digest (or delete this section)](its-id)\n",
        date = date.format("%Y%m%d"),
    )
}

/// `# __Title__, from ([YYYYMMDD](source-url).)` -> (title, date text, source url).
fn parse_heading(line: &str) -> Result<(&str, &str, &str), String> {
    const SHAPE: &str = "expected the heading `# __Title__, from ([YYYYMMDD](https://source).)`";
    let rest = line.trim().strip_prefix("# __").ok_or_else(|| format!("{SHAPE}, found `{}`", clip(line)))?;
    // The title may itself contain underscores, brackets and commas: cut at the last separator.
    const DATE: &str =
        "write the date the article was collected as a link to where it was, `, from ([20230723](https://source).)`";
    let Some(cut) = rest.rfind("__, from (") else {
        // A title closed by its underscores and nothing after it: what is missing is the date.
        return Err(match rest.trim_end().strip_suffix("__") {
            Some(_) => format!("the date is missing after the title; {DATE}"),
            None => format!("{SHAPE}, found `{}`", clip(line)),
        });
    };
    let title = &rest[..cut];
    let tail = &rest[cut + "__, from (".len()..];
    // The date wrapper `[YYYYMMDD](url)` must come first: without it, say so before the ending.
    if !tail.trim_start().starts_with('[') || tail.trim_start().starts_with("[]") {
        return Err(format!("the date is missing: found `from ({}`; {DATE}", clip(tail)));
    }
    let tail = tail
        .strip_suffix(".)")
        .or_else(|| tail.strip_suffix(')'))
        .ok_or_else(|| format!("{SHAPE}: the line must end with `.)`"))?;
    let (date, url) = parse_link(tail).ok_or_else(|| format!("{SHAPE}: the date must be a link `[YYYYMMDD](url)`"))?;
    Ok((title, date, url))
}

/// `[text](target)` -> (text, target), where text may contain brackets.
fn parse_link(s: &str) -> Option<(&str, &str)> {
    let s = s.trim();
    let inner = s.strip_prefix('[')?.strip_suffix(')')?;
    let cut = inner.rfind("](")?;
    Some((&inner[..cut], inner[cut + 2..].trim()))
}

fn bullet(line: &str) -> Option<&str> {
    line.strip_prefix("* ").or_else(|| line.strip_prefix("- ")).map(str::trim)
}

/// Splits a table row on unescaped pipes; `\|` is a literal pipe inside a cell.
fn split_row(row: &str) -> Vec<String> {
    let body = row.trim().strip_prefix('|').unwrap_or(row);
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cell.push('|');
                chars.next();
            }
            '|' => cells.push(std::mem::take(&mut cell).trim().to_string()),
            _ => cell.push(c),
        }
    }
    if !cell.trim().is_empty() {
        cells.push(cell.trim().to_string()); // a row without its closing pipe
    }
    cells
}

fn check_http_url(url: &str) -> Result<(), String> {
    match url::Url::parse(url) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host_str().is_some_and(|h| !h.is_empty()) => {
            Ok(())
        }
        Ok(u) => Err(format!("`{url}` must be an http(s) URL, not `{}:`", u.scheme())),
        Err(e) => Err(format!("`{url}` is not a valid URL ({e})")),
    }
}

fn clip(s: &str) -> String {
    let s = s.trim();
    if s.chars().count() > 60 { format!("{}…", s.chars().take(60).collect::<String>()) } else { s.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = include_str!("../digests/000_86102eed948879ef.txt");

    fn p(text: &str) -> Result<Digest, Vec<ParseError>> {
        parse(Path::new("digests/001_abcdef0123456789.txt"), text)
    }

    fn messages(text: &str) -> Vec<(usize, String)> {
        p(text).unwrap_err().into_iter().map(|e| (e.line, e.message)).collect()
    }

    #[test]
    fn control_characters_and_noncharacters_are_problems_with_their_line() {
        for (c, code) in [
            ('\u{1}', "U+0001"),
            ('\u{b}', "U+000B"),
            ('\u{c}', "U+000C"),
            ('\u{1b}', "U+001B"),
            ('\0', "U+0000"),
            ('\u{fffe}', "U+FFFE"),
            ('\u{85}', "U+0085"),
            ('\u{fdd0}', "U+FDD0"),
            ('\u{1ffff}', "U+1FFFF"),
        ] {
            let text = SEED.replacen("The Evolution", &format!("The{c}Evolution"), 1);
            let m = messages(&text);
            assert_eq!(m.len(), 1, "{code}: {m:?}");
            assert_eq!(m[0].0, 1, "{code}");
            assert!(m[0].1.contains(code), "{m:?}");
        }
        // Tabs, CRLF and a BOM stay fine.
        assert!(
            p(&format!("\u{feff}{}", SEED.replace('\n', "\r\n").replacen("open source", "open\tsource", 1))).is_ok()
        );
    }

    #[test]
    fn a_summary_nested_too_deep_is_a_problem_on_its_line() {
        let deep = format!("{}deep{}", "*".repeat(20_000), "*".repeat(20_000));
        let summary_line = SEED.lines().position(|l| l.starts_with("The text discusses")).unwrap() + 1;
        let text = SEED.replacen("The text discusses", &format!("{deep} The text discusses"), 1);
        let m = messages(&text);
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(m[0].0, summary_line);
        assert!(m[0].1.contains("nests") && m[0].1.contains("at most 16"), "{m:?}");
        // Ordinary emphasis is fine.
        assert!(p(&SEED.replacen("The text discusses", "*The* **text** [discusses](https://x.org)", 1)).is_ok());
    }

    #[test]
    fn a_heading_without_its_date_says_the_date_is_missing() {
        for heading in [
            "# __T__, from (https://x.org/p/1).",
            "# __T__, from (https://x.org/p/1).)",
            "# __T__, from ([](https://x.org/p/1).)",
            "# __T__",
        ] {
            let m = messages(&SEED.replacen(SEED.lines().next().unwrap(), heading, 1));
            assert_eq!(m.len(), 1, "{heading}: {m:?}");
            assert_eq!(m[0].0, 1, "{heading}");
            assert!(
                m[0].1.starts_with("the date is missing") && m[0].1.contains("([20230723](https://source).)"),
                "{heading}: {m:?}"
            );
        }
    }

    #[test]
    fn files_not_read_as_digests_are_listed_with_why() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["001_86102eed948879ef.txt", "notes.md", "001_xyz.txt", ".hidden.txt"] {
            std::fs::write(dir.path().join(name), SEED).unwrap();
        }
        std::fs::create_dir(dir.path().join("old")).unwrap();
        let unread = unread_files(dir.path()).unwrap();
        let names: Vec<_> = unread.iter().map(|(p, _)| p.file_name().unwrap().to_str().unwrap()).collect();
        assert_eq!(names, ["001_xyz.txt", "notes.md"]);
        assert!(unread[0].1.contains("`001_xyz.txt` has no hex id"), "{unread:?}");
        assert!(unread[1].1.contains("only `.txt` files are digests"), "{unread:?}");
        // And the reader reads the digest alone.
        let corpus = read_folder(dir.path()).unwrap();
        assert_eq!((corpus.digests.len(), corpus.problems.len()), (1, 0), "{:?}", corpus.problems);
    }

    #[test]
    fn a_problem_of_the_whole_file_names_no_line() {
        let e = parse(Path::new("digests/notes.txt"), SEED).unwrap_err();
        assert_eq!(
            e[0].to_string(),
            "digests/notes.txt: the file name `notes.txt` has no hex id; name it like 000_86102eed948879ef.txt"
        );
    }

    #[test]
    fn a_new_skeleton_reads_with_its_placeholders_alone_as_problems() {
        let text = skeleton("T", NaiveDate::from_ymd_opt(2023, 7, 19).unwrap(), "https://x.org/", "https://x.org/a");
        let m = messages(&text);
        assert_eq!(m.len(), 5, "{m:?}");
        assert!(m.iter().all(|(_, why)| why.contains(PLACEHOLDER)), "{m:?}");
        let filled: String = text
            .lines()
            .filter(|l| !l.contains(PLACEHOLDER))
            .collect::<Vec<_>>()
            .join("\n")
            .replace("## Summary", "## Summary\n\nWritten.");
        let d = p(&filled).unwrap();
        assert_eq!(
            (d.title.as_str(), d.date.to_string().as_str(), d.link.as_str(), d.summary.as_str()),
            ("T", "2023-07-19", "https://x.org/a", "Written.")
        );
    }

    #[test]
    fn the_seed_parses_section_by_section() {
        let d = parse(Path::new("digests/000_86102eed948879ef.txt"), SEED).unwrap();
        assert_eq!(d.id, "86102eed948879ef");
        assert_eq!(d.title, "The Evolution of \"Open Source\" in AI Models");
        assert_eq!(d.date, NaiveDate::from_ymd_opt(2023, 7, 23).unwrap());
        assert_eq!(d.source_url, "https://kghosh.substack.com/p/20230723");
        assert_eq!(d.link, "https://www.alessiofanelli.com/blog/llama2-isnt-open-source");
        assert!(d.summary.starts_with("The text discusses the evolution"));
        assert!(d.summary.ends_with("progress of the AI space."));
        assert_eq!(d.keywords.len(), 10);
        assert_eq!(d.keywords[0], "open source");
        assert_eq!(d.keywords[9], "open weights");
        assert_eq!(
            d.themes,
            vec!["evolution of open source", "restrictions on open source", "open source in the AI community"]
        );
        assert_eq!(d.signals.columns, vec!["Signal", "Change", "10y horizon", "Driving force"]);
        assert_eq!(d.signals.rows.len(), 1);
        assert_eq!(d.signals.rows[0][1], "Change in definition of \"open source\"");
        assert_eq!(d.closest.len(), 4);
        assert_eq!(
            d.closest[0].title,
            "Open-Source AI Stakeholders Call for Protection of Open Source Innovation in EU AI Act"
        );
        assert_eq!(d.closest[0].reference, "11bd695b887aa09dca79341f91ce6b82");
        // The last line has no final newline and must still be read.
        assert_eq!(d.closest[3].reference, "9787333cafcd0252d71a9bff845ad093");
    }

    #[test]
    fn crlf_and_bom_read_the_same_as_lf() {
        let plain = p(SEED).unwrap();
        let crlf = p(&format!("\u{feff}{}", SEED.replace('\n', "\r\n"))).unwrap();
        assert_eq!(plain.title, crlf.title);
        assert_eq!(plain.summary, crlf.summary);
        assert_eq!(plain.keywords, crlf.keywords);
        assert_eq!(plain.signals, crlf.signals);
        assert_eq!(plain.closest, crlf.closest);
    }

    #[test]
    fn escaped_pipes_stay_inside_their_cell() {
        let text = SEED.replace("| Change in definition of \"open source\" ", "| Either \\| or: a pipe ");
        let d = p(&text).unwrap();
        assert_eq!(d.signals.rows[0].len(), 4);
        assert_eq!(d.signals.rows[0][1], "Either | or: a pipe");
    }

    #[test]
    fn missing_optional_sections_are_empty() {
        let cut = SEED.find("## Keywords").unwrap();
        let d = p(&SEED[..cut]).unwrap();
        assert!(d.keywords.is_empty() && d.themes.is_empty() && d.closest.is_empty());
        assert_eq!(d.signals, Signals::default());
    }

    #[test]
    fn titles_with_markup_brackets_and_underscores_are_kept_verbatim() {
        let text = SEED.replacen(
            "The Evolution of \"Open Source\" in AI Models",
            "Underscores __inside__ <script>x</script> [in] (it)",
            1,
        );
        assert_eq!(p(&text).unwrap().title, "Underscores __inside__ <script>x</script> [in] (it)");
    }

    #[test]
    fn a_bad_date_is_reported_on_line_one() {
        let m = messages(&SEED.replacen("[20230723]", "[20231345]", 1));
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].0, 1);
        assert!(m[0].1.contains("20231345") && m[0].1.contains("YYYYMMDD"), "{m:?}");
    }

    #[test]
    fn an_empty_title_is_reported() {
        let m = messages(&SEED.replacen("__The Evolution of \"Open Source\" in AI Models__", "____", 1));
        assert_eq!(m[0].0, 1);
        assert!(m[0].1.contains("title is empty"), "{m:?}");
    }

    #[test]
    fn a_non_http_link_is_reported_on_its_line() {
        let m = messages(&SEED.replacen("(https://www.alessiofanelli", "(ftp://www.alessiofanelli", 1));
        assert_eq!(m, vec![(3, m[0].1.clone())]);
        assert!(m[0].1.contains("http(s)"), "{m:?}");
    }

    #[test]
    fn a_missing_summary_is_reported() {
        let m = messages(&SEED.replacen("## Summary", "## Summery", 1));
        assert!(m.iter().any(|(n, msg)| *n == 7 && msg.contains("unknown section `## Summery`")), "{m:?}");
        assert!(m.iter().any(|(_, msg)| msg.contains("`## Summary` section is missing")), "{m:?}");
    }

    #[test]
    fn an_empty_summary_is_reported_at_its_heading() {
        let start = SEED.find("The text discusses").unwrap();
        let end = SEED.find("## Keywords").unwrap();
        let text = format!("{}{}", &SEED[..start], &SEED[end..]);
        let m = messages(&text);
        assert_eq!(m, vec![(7, "the summary is empty; write at least one sentence under `## Summary`".to_string())]);
    }

    #[test]
    fn a_short_table_row_and_a_stray_line_are_both_reported_with_lines() {
        let mut lines: Vec<String> = SEED.lines().map(str::to_owned).collect();
        assert_eq!(lines[18], "* GPL");
        lines[18] = "GPL without a bullet".into();
        assert!(lines[33].starts_with("| Open Source Evolution in AI Models"));
        lines[33] = "| Only one cell |".into();
        let m = messages(&lines.join("\n"));
        let numbers: Vec<usize> = m.iter().map(|x| x.0).collect();
        assert_eq!(numbers, vec![19, 34], "{m:?}");
        assert!(m[0].1.contains("expected a bullet"), "{m:?}");
        assert!(m[1].1.contains("1 cells but the header names 4 columns"), "{m:?}");
    }

    #[test]
    fn a_file_name_without_hex_is_reported() {
        let e = parse(Path::new("digests/notes.txt"), SEED).unwrap_err();
        assert!(e[0].message.contains("no hex id"), "{e:?}");
        assert_eq!(id_from_file_name("012_ABCDEF.txt").as_deref(), Some("abcdef"));
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("001_aa.txt");
        let mut bytes = SEED.as_bytes()[..SEED.find("## Summary").unwrap()].to_vec();
        bytes.extend_from_slice(b"## Summary\n\nbad \xff byte\n");
        std::fs::write(&path, bytes).unwrap();
        let e = read_file(&path).unwrap_err();
        assert_eq!(e[0].line, 9);
        assert!(e[0].message.contains("UTF-8"));
    }
}
