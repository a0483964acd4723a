//! `gazette check`: is the project ready to build and send? Lists every problem, one a line, then
//! a summary. Exit 0 ready, 1 the content has problems, 2 the configuration is unusable.

use std::process::ExitCode;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::readiness::{self, Severity};

pub fn run(config: &Config, now: DateTime<Utc>) -> anyhow::Result<ExitCode> {
    let r = super::runtime()?.block_on(readiness::check(config, now))?;
    for f in &r.findings {
        say!("{}", f.text);
    }
    let drafts = if r.drafts > 0 { format!(" ({} published, {} not due yet)", r.published, r.drafts) } else { String::new() };
    let files = if r.broken_files > 0 { format!(" ({} in {} digest files)", r.digest_problems, r.broken_files) } else { String::new() };
    say!("{} digests, {} issues{drafts}, {} problems{files}", r.digests, r.issues, r.findings.len());
    Ok(match r.worst() {
        None => ExitCode::SUCCESS,
        Some(Severity::Content) => ExitCode::from(1),
        Some(Severity::Config) => ExitCode::from(2),
    })
}
