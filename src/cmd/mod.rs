//! One module per command of the command line. Each takes the checked configuration and its own
//! arguments and returns the exit code; errors go back to `cli`, which prints them.

pub mod build;
pub mod check;
pub mod preview;
pub mod run;
pub mod send;
pub mod serve;
pub mod status;
pub mod subscribers;

use crate::config::{Config, ConfigError};
use crate::digest::{self, ParseError};
use crate::issue::{self, Issue, PinnedNumbers, WeekRule};

/// The digests folder read and grouped: the issues of every good digest, and every problem.
pub struct Archive {
    pub digest_count: usize,
    pub issues: Vec<Issue>,
    pub problems: Vec<ParseError>,
}

pub fn week_rule(config: &Config) -> WeekRule {
    WeekRule { starts: config.schedule.week_starts, timezone: config.schedule.timezone }
}

/// Reads `[paths] digests` and groups it into issues, keeping the numbers in `pinned`.
pub fn load_archive(config: &Config, pinned: &PinnedNumbers) -> anyhow::Result<Archive> {
    let dir = &config.paths.digests;
    let corpus = digest::read_folder(dir).map_err(|e| {
        ConfigError(format!(
            "cannot read the digests folder {}: {e}; set [paths] digests in {}",
            dir.display(),
            config.describe_source()
        ))
    })?;
    let digest_count = corpus.digests.len();
    let mut problems = corpus.problems;
    problems.sort();
    let issues = issue::group_into_issues(corpus.digests, &week_rule(config), pinned);
    Ok(Archive { digest_count, issues, problems })
}

/// The issue a command is about: the week named by `--week`, or the last complete week before `now`.
pub fn select_issue<'a>(
    config: &Config,
    archive: &'a Archive,
    week: Option<crate::issue::WeekSpec>,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<&'a Issue> {
    let rule = week_rule(config);
    let start = match week {
        Some(w) => rule.week_start(w.0),
        None => rule.last_complete_week(now),
    };
    if let Some(issue) = archive.issues.iter().find(|i| i.start == start) {
        return Ok(issue);
    }
    let label = issue::week_label(start, start + chrono::Duration::days(6));
    let how = if week.is_some() { "" } else { " (the last complete week; name another with --week)" };
    let nearest: Vec<String> = {
        let mut by_distance: Vec<&Issue> = archive.issues.iter().collect();
        by_distance.sort_by_key(|i| (i.start - start).num_days().abs());
        by_distance.iter().take(3).map(|i| format!("{} ({})", i.id, i.label)).collect()
    };
    Err(crate::cli::UsageError(format!(
        "no digest in {} is dated in the week of {label}{how}; weeks with digests nearby: {}",
        config.paths.digests.display(),
        if nearest.is_empty() { "none".into() } else { nearest.join(", ") }
    ))
    .into())
}

/// Refuses to go on when any digest is broken: a broken file may belong to the week being sent.
pub fn refuse_problems(archive: &Archive) -> anyhow::Result<()> {
    if archive.problems.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = archive.problems.iter().map(ToString::to_string).collect();
    anyhow::bail!(
        "{} problem(s) in the digests; fix them first (`gazette check` lists them):\n{}",
        list.len(),
        list.join("\n")
    )
}
