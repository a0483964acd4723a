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
