//! `gazette build`: the web archive and the feeds, written into `[paths] out`. Files whose
//! contents did not change are left alone, so a rebuild touches only what is new.

use std::process::ExitCode;

use crate::config::Config;
use crate::issue::{PinnedNumbers, WeekSpec};
use crate::render;

pub fn run(config: &Config, week: Option<WeekSpec>) -> anyhow::Result<ExitCode> {
    let archive = super::load_archive(config, &PinnedNumbers::new())?;
    if !archive.problems.is_empty() {
        tracing::warn!("{} digest problems; those files are left out (see `gazette check`)", archive.problems.len());
    }
    let templates = super::load_templates(config)?;
    let only = week.map(|w| super::select_week(config, &archive.issues, w)).transpose()?;

    let files = render::render_site(config, &templates, &archive.issues, only.map(|i| i.id.as_str())).map_err(super::template_error)?;
    let in_scope: Vec<_> = match only {
        Some(i) => vec![i],
        None => archive.issues.iter().collect(),
    };
    super::warn_large_emails(config, &templates, &in_scope).map_err(super::template_error)?;

    let out = &config.paths.out;
    let mut written = 0;
    for f in &files {
        if super::write_if_changed(&out.join(&f.path), f.contents.as_bytes())? {
            written += 1;
        }
    }
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
