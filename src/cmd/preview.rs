//! `gazette preview`: one week's email, filled in for a sample reader, written into
//! `[paths] drafts` where an editor can open it in a browser. Drafts can be previewed too.

use std::process::ExitCode;

use chrono::{DateTime, Utc};

use crate::build_cache::CacheUse;
use crate::config::Config;
use crate::issue::WeekSpec;
use crate::project::Project;

pub fn run(config: Config, week: Option<WeekSpec>, now: DateTime<Utc>) -> anyhow::Result<ExitCode> {
    let project = super::runtime()?.block_on(Project::load_if_recorded(config, now, CacheUse::Read))?;
    let issue = project.select(week)?;
    let (email, html, text) = project.write_preview(issue)?;
    if email.too_large() {
        crate::project::warn_large(&[(issue.id.clone(), email.html.len())]);
    }
    if !project.is_published(issue) {
        say!(
            "issue #{} ({}) is a draft: its week is not due yet, and the number may still change",
            issue.number,
            issue.label
        );
    }
    for p in project.held_back_by(issue) {
        eprintln!("{p}");
    }
    say!("Subject: {}", email.subject);
    let fit = email.shortened.report(project.config.email.max_html_bytes, issue.digest_count());
    say!("HTML: {} KB{}", email.html.len().div_ceil(1024), fit.map(|f| format!(", {f}")).unwrap_or_default());
    say!("{}", html.display());
    say!("{}", text.display());
    Ok(ExitCode::SUCCESS)
}
