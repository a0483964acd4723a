//! `gazette new "Title" --link URL [--date D]`: a digest skeleton in the digests folder, named as
//! the format wants (`NNN_<id>.txt`), with every section and `digest::PLACEHOLDER` where the editor
//! has text to write; `check` reports each placeholder until it is written over.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, NaiveDate, Utc};

use crate::config::Config;
use crate::digest::{self, PLACEHOLDER};
use crate::error::ExitError;

pub fn run(
    config: &Config,
    title: &str,
    link: &str,
    source: Option<&str>,
    date: Option<&str>,
    now: DateTime<Utc>,
) -> anyhow::Result<ExitCode> {
    let path = write(config, title, link, source, date, now)?;
    say!("wrote {}", path.display());
    say!(
        "next: write the summary and the other sections in place of `{PLACEHOLDER}` (or delete those you do not need), then gazette check"
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes the skeleton and returns its path. Refuses what would make a digest `check` cannot read
/// (a bad link or date, a title that breaks the heading) and a link another digest already has.
pub fn write(
    config: &Config,
    title: &str,
    link: &str,
    source: Option<&str>,
    date: Option<&str>,
    now: DateTime<Utc>,
) -> anyhow::Result<PathBuf> {
    let link = link.trim();
    digest::check_link(link).map_err(|why| {
        ExitError::unusable(format!(
            "--link: the link {why}; give the article's address, such as https://example.com/article"
        ))
    })?;
    let source = source.map(str::trim).unwrap_or(link);
    digest::check_link(source).map_err(|why| {
        ExitError::unusable(format!(
            "--source: the link {why}; give where the article was collected, such as https://example.com/"
        ))
    })?;
    let date = match date {
        Some(d) => parse_date(d)?,
        // Today where the newsletter is reckoned, so the digest lands in this week's issue.
        None => now.with_timezone(&config.schedule.timezone).date_naive(),
    };
    let title = title.trim();
    if title.is_empty() || title.contains(['\n', '\r']) {
        return Err(ExitError::unusable(
            "the title must be one line of text, such as \"Open weights are not open source\"",
        )
        .into());
    }

    let dir = &config.paths.digests;
    let files = digest::files_with_extension(dir, "txt").map_err(|e| {
        ExitError::unusable(format!(
            "cannot read the digests folder {}: {e}; create it or set [paths] digests in {}",
            dir.display(),
            config.describe_source()
        ))
    })?;
    let id = digest::id_for_link(link);
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if digest::link_of_text(&text) == Some(link) {
            return Err(ExitError::unusable(format!(
                "{} is already the digest of {link}; edit that one instead",
                path.display()
            ))
            .into());
        }
    }
    let mut next = 0;
    for path in &files {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(n) = digest::sequence_of_file_name(name) {
            next = next.max(n + 1);
        }
        if digest::id_from_file_name(name).as_deref() == Some(id.as_str()) {
            return Err(ExitError::unusable(format!(
                "{} already has the id {id} that this link gives; rename that file or give the link another spelling",
                path.display()
            ))
            .into());
        }
    }
    let path = dir.join(format!("{next:03}_{id}.txt"));
    let text = digest::skeleton(title, date, source, link);
    // What the skeleton gives when read must be its placeholders alone: a title that breaks the
    // heading (or holds a character mail cannot carry) is refused here, not found by `check`.
    if let Err(problems) = digest::parse(&path, &text)
        && let Some(p) = problems.iter().find(|p| !p.message.contains(PLACEHOLDER))
    {
        return Err(
            ExitError::unusable(format!("the title cannot be written as a digest's heading: {}", p.message)).into()
        );
    }
    std::fs::write(&path, text).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// `2023-07-23` or `20230723`, the format's own spelling.
fn parse_date(d: &str) -> Result<NaiveDate, ExitError> {
    let d = d.trim();
    let compact = || (d.len() == 8).then(|| NaiveDate::parse_from_str(d, "%Y%m%d").ok()).flatten();
    NaiveDate::parse_from_str(d, "%Y-%m-%d")
        .ok()
        .or_else(compact)
        .ok_or_else(|| ExitError::unusable(format!("--date `{d}` is not a date; give it as 2023-07-23 (or 20230723)")))
}
