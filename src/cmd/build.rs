//! `gazette build`: the web archive and the feeds, written into `[paths] out`. Files whose
//! contents did not change are left alone, so a rebuild touches only what is new.

use std::process::ExitCode;

use crate::config::Config;
use crate::issue::{Issue, WeekSpec};
use crate::render;

pub fn run(config: &Config, week: Option<WeekSpec>) -> anyhow::Result<ExitCode> {
    let archive = super::load_archive(config, &super::pinned_numbers(config)?)?;
    if !archive.problems.is_empty() {
        tracing::warn!("{} digest problems; those files are left out (see `gazette check`)", archive.problems.len());
    }
    let only = week.map(|w| super::select_week(config, &archive.issues, w)).transpose()?;
    let in_scope: Vec<_> = match only {
        Some(i) => vec![i],
        None => archive.issues.iter().collect(),
    };
    let (files, written) = write_site(config, &archive.issues, only.map(|i| i.id.as_str()))?;
    let out = &config.paths.out;
    println!(
        "{}: {} files ({} changed): {} issue page{}, index, rss.xml, atom.xml, feed.json and {} theme feeds",
        out.display(),
        files.len(),
        written,
        in_scope.len(),
        if in_scope.len() == 1 { "" } else { "s" },
        files.iter().filter(|f| f.path.starts_with("themes/")).count()
    );
    Ok(ExitCode::SUCCESS)
}

/// Renders the archive and the feeds (every issue page, or only `only`'s and those in the feeds)
/// and writes what changed into `[paths] out`. Returns the files and how many were written.
pub fn write_site(config: &Config, issues: &[Issue], only: Option<&str>) -> anyhow::Result<(Vec<render::OutputFile>, usize)> {
    let templates = super::load_templates(config)?;
    let files = render::render_site(config, &templates, issues, only).map_err(super::template_error)?;
    let in_scope: Vec<&Issue> = issues.iter().filter(|i| only.is_none_or(|id| id == i.id)).collect();
    super::warn_large_emails(config, &templates, &in_scope).map_err(super::template_error)?;
    let mut written = 0;
    for f in &files {
        if super::write_if_changed(&config.paths.out.join(&f.path), f.contents.as_bytes())? {
            written += 1;
        }
    }
    Ok((files, written))
}
