//! The web archive: `index.html`, one page per issue, and the feeds, as a list of files for the
//! caller to write. Issues render independently, so they are spread over the cores.

use minijinja::context;
use minijinja::value::{Serde, Value};

use super::feeds::{self, FeedItem};
use super::{RenderError, Templates, feeds_value, issue_context, par_map};
use crate::urls;
use crate::config::Config;
use crate::issue::Issue;

/// A file of the archive: its path relative to `[paths] out` (with `/`), and its contents.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputFile {
    pub path: String,
    pub contents: String,
}

pub fn render_issue_page(config: &Config, templates: &Templates, issue: &Issue) -> Result<String, RenderError> {
    templates.render("issue.html", &issue_context(config, issue))
}

/// The issue's HTML without the page around it (the `content` block of `issue.html`): what the
/// feeds carry.
pub fn render_issue_content(config: &Config, templates: &Templates, issue: &Issue) -> Result<String, RenderError> {
    Ok(templates.render_with_block("issue.html", "content", &issue_context(config, issue))?.1)
}

/// The front page; `issues` in any order (they are listed newest first).
pub fn render_index(config: &Config, templates: &Templates, issues: &[Issue]) -> Result<String, RenderError> {
    let mut listed: Vec<Value> = issues
        .iter()
        .map(|i| {
            context! { number => i.number, label => i.label.clone(), url => urls::issue(&config.site, &i.id), count => i.digest_count(), id => i.id.clone() }
        })
        .collect();
    listed.reverse();
    let themes: Vec<Value> = feeds::theme_index(issues)
        .into_values()
        .map(|t| {
            context! { name => t.name, url => urls::theme_feed(&config.site, &t.slug), count => t.digests.len() }
        })
        .collect();
    let ctx = context! { site => Value::from(Serde(&config.site)), issues => listed, themes, feeds => feeds_value(config) };
    templates.render("index.html", &ctx)
}

/// Everything `build` writes: the index, the pages of the issues `only` selects (every issue when
/// `None`), and the feeds. `issues` oldest first, as grouped. This holds every page in memory:
/// for a large archive, render pages in batches with `render_issue_page` and add `render_feeds`.
pub fn render_site(
    config: &Config,
    templates: &Templates,
    issues: &[Issue],
    only: Option<&str>,
) -> Result<Vec<OutputFile>, RenderError> {
    let mut files = vec![OutputFile { path: "index.html".into(), contents: render_index(config, templates, issues)? }];
    let pages: Vec<&Issue> = issues.iter().filter(|i| only.is_none_or(|id| id == i.id)).collect();
    for (issue, page) in pages.iter().zip(par_map(&pages, |i| render_issue_page(config, templates, i))) {
        files.push(OutputFile { path: urls::issue_file(&issue.id), contents: page? });
    }
    files.extend(render_feeds(config, templates, issues)?);
    Ok(files)
}

/// `rss.xml`, `atom.xml` and `feed.json` with the newest `[feeds] items` issues, and
/// `themes/<slug>/atom.xml` for every theme.
pub fn render_feeds(config: &Config, templates: &Templates, issues: &[Issue]) -> Result<Vec<OutputFile>, RenderError> {
    let newest: Vec<&Issue> = issues.iter().rev().take(config.feeds.items).collect();
    let contents = par_map(&newest, |i| render_issue_content(config, templates, i));
    let mut items = Vec::with_capacity(newest.len());
    for (issue, content) in newest.into_iter().zip(contents) {
        items.push(FeedItem { issue, content_html: content? });
    }
    let mut files = vec![
        OutputFile { path: "rss.xml".into(), contents: feeds::rss_feed(config, &items)? },
        OutputFile { path: "atom.xml".into(), contents: feeds::atom_feed(config, &items)? },
        OutputFile { path: "feed.json".into(), contents: feeds::json_feed(config, &items)? },
    ];
    files.extend(feeds::theme_feeds(config, templates, issues)?);
    Ok(files)
}
