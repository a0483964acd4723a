//! `gazette build`: the web archive and the feeds, written into `[paths] out`. Files whose
//! contents did not change are left alone, so a rebuild touches only what is new.

use std::process::ExitCode;

use crate::config::Config;
use crate::issue::{Issue, WeekSpec};
use crate::render::{self, OutputFile};

/// Issues rendered (and held in memory) at a time: bounds memory on a large archive.
const BATCH: usize = 64;

pub fn run(config: &Config, week: Option<WeekSpec>) -> anyhow::Result<ExitCode> {
    let archive = super::load_archive(config, &super::pinned_numbers(config)?)?;
    if !archive.problems.is_empty() {
        tracing::warn!("{} digest problems; those files are left out (see `gazette check`)", archive.problems.len());
    }
    let only = week.map(|w| super::select_week(config, &archive.issues, w)).transpose()?;
    let site = write_site(config, &archive.issues, only)?;
    println!(
        "{}: {} files ({} changed): {} issue page{}, index, rss.xml, atom.xml, feed.json and {} theme feeds",
        config.paths.out.display(),
        site.total,
        site.written,
        site.pages,
        if site.pages == 1 { "" } else { "s" },
        site.theme_feeds
    );
    Ok(ExitCode::SUCCESS)
}

/// What `write_site` wrote.
pub struct Written {
    pub total: usize,
    pub written: usize,
    pub pages: usize,
    pub theme_feeds: usize,
}

/// Renders the index, the feeds and the page of every issue (or of `only`) and writes what changed
/// into `[paths] out`.
pub fn write_site(config: &Config, issues: &[Issue], only: Option<&Issue>) -> anyhow::Result<Written> {
    let templates = super::load_templates(config)?;
    let pages: Vec<&Issue> = match only {
        Some(i) => vec![i],
        None => issues.iter().collect(),
    };

    let out = &config.paths.out;
    let (mut total, mut written) = (0, 0);
    let mut write = |f: &OutputFile| -> anyhow::Result<()> {
        total += 1;
        written += usize::from(super::write_if_changed(&out.join(&f.path), f.contents.as_bytes())?);
        Ok(())
    };
    // Each issue's page, and for the issues that may still be sent (the one asked for, or the
    // newest `[feeds] items`) the size of its email: compiling MJML is most of the cost of a
    // build, and `check` covers every issue.
    let recent = issues.len().saturating_sub(config.feeds.items);
    let recent_from = issues.get(recent).map(|i| i.start);
    for batch in pages.chunks(BATCH) {
        let rendered = render::par_map(batch, |issue| -> Result<_, render::RenderError> {
            let page = render::render_issue_page(config, &templates, issue)?;
            let check_email = only.is_some() || recent_from.is_some_and(|d| issue.start >= d);
            Ok((page, if check_email { Some(render::email_html_size(config, &templates, issue)?) } else { None }))
        });
        for (issue, r) in batch.iter().zip(rendered) {
            let (page, email_bytes) = r.map_err(super::template_error)?;
            if let Some(bytes) = email_bytes {
                super::warn_if_large(issue, bytes);
            }
            write(&OutputFile { path: render::page_path(issue), contents: page })?;
        }
    }
    let index = render::render_index(config, &templates, issues).map_err(super::template_error)?;
    write(&OutputFile { path: "index.html".into(), contents: index })?;
    let feeds = render::render_feeds(config, &templates, issues).map_err(super::template_error)?;
    for f in &feeds {
        write(f)?;
    }
    Ok(Written { total, written, pages: pages.len(), theme_feeds: feeds.len() - 3 })
}
