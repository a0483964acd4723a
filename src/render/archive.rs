//! The web archive: `index.html`, one page per issue, and the feeds, as a list of files for the
//! caller to write. Issues render independently, so they are spread over the cores.

use minijinja::context;
use minijinja::value::{Serde, Value};

use super::feeds::{self, FeedItem};
use super::{RenderError, Templates, feeds_value, issue_context, issue_url, par_map};
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
    Ok(render_page_and_content(config, templates, issue)?.1)
}

fn render_page_and_content(config: &Config, templates: &Templates, issue: &Issue) -> Result<(String, String), RenderError> {
    templates.render_with_block("issue.html", "content", &issue_context(config, issue))
}

/// The front page; `issues` in any order (they are listed newest first).
pub fn render_index(config: &Config, templates: &Templates, issues: &[Issue]) -> Result<String, RenderError> {
    let mut listed: Vec<Value> = issues
        .iter()
        .map(|i| {
            context! { number => i.number, label => i.label.clone(), url => issue_url(config, &i.id), count => i.digest_count(), id => i.id.clone() }
        })
        .collect();
    listed.reverse();
    let themes: Vec<Value> = feeds::theme_index(issues)
        .into_values()
        .map(|t| {
            context! { name => t.name, url => feeds::theme_feed_url(config, &t.slug), count => t.digests.len() }
        })
        .collect();
    let ctx = context! { site => Value::from(Serde(&config.site)), issues => listed, themes, feeds => feeds_value(config) };
    templates.render("index.html", &ctx)
}

/// Everything `build` writes: the index, the pages of the issues `only` selects (every issue when
/// `None`), the three feeds and one Atom feed per theme. `issues` oldest first, as grouped.
pub fn render_site(
    config: &Config,
    templates: &Templates,
    issues: &[Issue],
    only: Option<&str>,
) -> Result<Vec<OutputFile>, RenderError> {
    let mut files = vec![OutputFile { path: "index.html".into(), contents: render_index(config, templates, issues)? }];

    // The newest issues are in the feeds: their content comes from the same template run as
    // their page. Older pages are rendered only when asked for.
    let in_feeds = issues.len().saturating_sub(config.feeds.items);
    let wanted: Vec<(usize, &Issue)> =
        issues.iter().enumerate().filter(|(n, i)| *n >= in_feeds || only.is_none_or(|id| id == i.id)).collect();
    let rendered = par_map(&wanted, |(n, issue)| -> Result<(Option<String>, Option<String>), RenderError> {
        let page_wanted = only.is_none_or(|id| id == issue.id);
        if *n >= in_feeds {
            let (page, content) = render_page_and_content(config, templates, issue)?;
            Ok((page_wanted.then_some(page), Some(content)))
        } else {
            Ok((Some(render_issue_page(config, templates, issue)?), None))
        }
    });
    let mut items = Vec::new();
    for ((_, issue), r) in wanted.iter().zip(rendered) {
        let (page, content) = r?;
        if let Some(page) = page {
            files.push(OutputFile { path: format!("issues/{}/index.html", issue.id), contents: page });
        }
        if let Some(content_html) = content {
            items.push(FeedItem { issue, content_html });
        }
    }
    items.reverse(); // newest first
    files.push(OutputFile { path: "rss.xml".into(), contents: feeds::rss_feed(config, &items)? });
    files.push(OutputFile { path: "atom.xml".into(), contents: feeds::atom_feed(config, &items)? });
    files.push(OutputFile { path: "feed.json".into(), contents: feeds::json_feed(config, &items)? });
    files.extend(feeds::theme_feeds(config, templates, issues)?);
    Ok(files)
}
