//! The web archive: `index.html`, one page per issue, and the feeds, as a list of files for the
//! caller to write. Issues render independently, so they are spread over the cores.

use minijinja::context;
use minijinja::value::{Serde, Value};

use super::feeds::{self, FeedItem};
use super::output::OutputFile;
use super::{RenderError, Templates, feeds_value, issue_context, par_map};
use crate::config::Config;
use crate::digest::{Digest, Listed};
use crate::issue::{Issue, WholeIssue};
use crate::issue_id::IssueId;
use crate::urls;

/// `issue`'s page, with links to the issues before and after it in `issues` (the archive in week
/// order, as grouped), a summary for search results and link previews, and the subscribe box.
pub fn render_issue_page<D>(
    config: &Config,
    templates: &Templates,
    issues: &[Issue<D>],
    issue: &WholeIssue,
) -> Result<String, RenderError> {
    let (previous, next) = neighbours(issues, issue);
    templates.render("issue.html", &page_context(config, issue, previous, next))
}

/// A hash of what `render_issue_page` makes `issue`'s page from, besides the configuration and
/// the templates: what the issue says (`content_hash`, its `Issue::content_hash`), its number and
/// revision, where its closest links lead (by `homes`, which the page is rendered with), and its
/// neighbours. Equal keys render equal pages.
pub fn issue_page_key<D: Listed>(
    issues: &[Issue<D>],
    issue: &Issue<D>,
    content_hash: &str,
    homes: &crate::issue::Homes,
) -> String {
    let mut key = crate::fingerprint::Fingerprint::default();
    key.text(content_hash).text(issue.id.as_str()).text(&issue.number.to_string()).text(&issue.label);
    key.text(&issue.revised.map(|t| t.to_rfc3339()).unwrap_or_default());
    for d in issue.digests() {
        for reference in d.references() {
            match homes.target(reference) {
                Some((digest_id, issue_id)) => key.text(issue_id.as_str()).text(digest_id),
                None => key.text("-"),
            };
        }
    }
    let (previous, next) = neighbours(issues, issue);
    for i in [previous, next] {
        match i {
            Some(i) => key.text(i.id.as_str()).text(&i.number.to_string()).text(&i.label),
            None => key.text("-"),
        };
    }
    key.finish()
}

/// What `issue.html` sees: the issue's context, and what the page shows around the content.
fn page_context<D>(config: &Config, issue: &WholeIssue, previous: Option<&Issue<D>>, next: Option<&Issue<D>>) -> Value {
    let link = |i: Option<&Issue<D>>| {
        i.map(|i| context! { number => i.number, label => i.label.clone(), url => urls::issue(&config.site, &i.id) })
    };
    context! {
        previous => link(previous),
        next => link(next),
        summary => summary(issue),
        subscribe_url => urls::subscribe(&config.site),
        ..issue_context(config, issue)
    }
}

/// The issues just before and after `issue` in `issues`; none at the ends, or when `issue` is not
/// there. The archive is in week order, so it is found by its first day; by id should it not be.
fn neighbours<'a, D, E>(issues: &'a [Issue<D>], issue: &Issue<E>) -> (Option<&'a Issue<D>>, Option<&'a Issue<D>>) {
    let at = issues
        .binary_search_by(|i| i.start.cmp(&issue.start))
        .ok()
        .filter(|&k| issues[k].id == issue.id)
        .or_else(|| issues.iter().position(|i| i.id == issue.id));
    match at {
        Some(k) => (k.checked_sub(1).map(|p| &issues[p]), issues.get(k + 1)),
        None => (None, None),
    }
}

/// What an issue holds, in one line of plain text for its page's description and `og:description`:
/// the digest count and the first titles (the template escapes it).
fn summary(issue: &WholeIssue) -> String {
    const SHOWN: usize = 3;
    let count = issue.digest_count();
    let titles: Vec<&str> = issue.digests().take(SHOWN).map(|d| d.title.as_str()).collect();
    let more = count.saturating_sub(titles.len());
    let rest = if more > 0 { format!("; and {more} more") } else { String::new() };
    format!("{count} digest{}: {}{rest}", if count == 1 { "" } else { "s" }, titles.join("; "))
}

/// The issue's HTML without the page around it (the `content` block of `issue.html`): what the
/// feeds carry.
pub fn render_issue_content(config: &Config, templates: &Templates, issue: &WholeIssue) -> Result<String, RenderError> {
    // The page is rendered too (and dropped): the block sees the page's context, whose neighbours
    // it does not show.
    Ok(templates.render_with_block("issue.html", "content", &page_context::<Digest>(config, issue, None, None))?.1)
}

/// The front page; `issues` in any order (they are listed newest first).
pub fn render_index<D: Listed>(
    config: &Config,
    templates: &Templates,
    issues: &[Issue<D>],
) -> Result<String, RenderError> {
    render_index_with(config, templates, issues, &feeds::theme_feed_plan(config, issues))
}

/// As `render_index`, with the issues' theme feeds planned already (`theme_feed_plan`).
pub fn render_index_with<D: Listed, E>(
    config: &Config,
    templates: &Templates,
    issues: &[Issue<D>],
    themes: &[feeds::ThemeFeed<E>],
) -> Result<String, RenderError> {
    let mut listed: Vec<Value> = issues
        .iter()
        .map(|i| {
            context! { number => i.number, label => i.label.clone(), url => urls::issue(&config.site, &i.id), count => i.digest_count(), id => i.id.to_string() }
        })
        .collect();
    listed.reverse();
    let themes: Vec<Value> = themes
        .iter()
        .map(|t| context! { name => t.name.clone(), url => urls::theme_feed(&config.site, &t.slug), count => t.count })
        .collect();
    let ctx = context! {
        site => Value::from(Serde(&config.site)),
        home_url => urls::home(&config.site),
        issues => listed,
        themes,
        feeds => feeds_value(config),
    };
    templates.render(urls::INDEX, &ctx)
}

/// Everything `build` writes: the index, the pages of the issues `only` selects (every issue when
/// `None`), and the feeds. `issues` oldest first, as grouped. This holds every page in memory:
/// for a large archive, render pages in batches with `render_issue_page` and add `render_feeds`.
pub fn render_site(
    config: &Config,
    templates: &Templates,
    issues: &[WholeIssue],
    only: Option<&IssueId>,
) -> Result<Vec<OutputFile>, RenderError> {
    let mut files = vec![OutputFile { path: urls::INDEX.into(), contents: render_index(config, templates, issues)? }];
    let pages: Vec<&WholeIssue> = issues.iter().filter(|i| only.is_none_or(|id| *id == i.id)).collect();
    for (issue, page) in pages.iter().zip(par_map(&pages, |i| render_issue_page(config, templates, issues, i))) {
        files.push(OutputFile { path: urls::issue_file(&issue.id), contents: page? });
    }
    files.extend(render_feeds(config, templates, issues)?);
    Ok(files)
}

/// `rss.xml`, `atom.xml` and `feed.json` with the newest `[feeds] items` issues, and
/// `themes/<slug>/atom.xml` for every theme.
pub fn render_feeds(
    config: &Config,
    templates: &Templates,
    issues: &[WholeIssue],
) -> Result<Vec<OutputFile>, RenderError> {
    let newest = feed_issues(config, issues);
    let contents = par_map(&newest, |i| render_issue_content(config, templates, i));
    let mut items = Vec::with_capacity(newest.len());
    for (issue, content) in newest.into_iter().zip(contents) {
        items.push(FeedItem { issue, content_html: content? });
    }
    render_feeds_of(config, templates, &items, &feeds::theme_feed_plan(config, issues))
}

/// The issues the feeds carry: the newest `[feeds] items`, newest first.
pub fn feed_issues<'a, D>(config: &Config, issues: &'a [Issue<D>]) -> Vec<&'a Issue<D>> {
    issues.iter().rev().take(config.feeds.items).collect()
}

/// As `render_feeds`, with the items' content given (`feed_issues`, each with its
/// `render_issue_content`), and the theme feeds planned (`theme_feed_plan`) with their digests
/// whole.
pub fn render_feeds_of<D: Listed>(
    config: &Config,
    templates: &Templates,
    items: &[FeedItem<D>],
    plan: &[feeds::ThemeFeed<Digest>],
) -> Result<Vec<OutputFile>, RenderError> {
    let mut files = vec![
        OutputFile { path: urls::RSS.into(), contents: feeds::rss_feed(config, items)? },
        OutputFile { path: urls::ATOM.into(), contents: feeds::atom_feed(config, items)? },
        OutputFile { path: urls::JSON_FEED.into(), contents: feeds::json_feed(config, items)? },
    ];
    files.extend(feeds::theme_feeds(config, templates, plan)?);
    Ok(files)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use scraper::{Html, Selector};

    use super::*;
    use crate::render::testing;

    fn attr(doc: &Html, css: &str, name: &str) -> Option<String> {
        doc.select(&Selector::parse(css).unwrap()).next().and_then(|e| e.value().attr(name).map(str::to_string))
    }

    fn texts(doc: &Html, css: &str) -> Vec<String> {
        doc.select(&Selector::parse(css).unwrap()).map(|e| e.text().collect::<String>()).collect()
    }

    fn pages() -> (Config, Vec<Issue>, BTreeMap<String, String>) {
        let config = testing::config();
        let templates = Templates::builtin(&config.email.subject).unwrap();
        let issues = testing::issues();
        let files = render_site(&config, &templates, &issues, None)
            .unwrap()
            .into_iter()
            .map(|f| (f.path, f.contents))
            .collect();
        (config, issues, files)
    }

    #[test]
    fn each_issue_page_links_the_issues_before_and_after_it_and_none_past_the_ends() {
        let (_, issues, files) = pages();
        assert_eq!(issues.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["2023-07-17", "2023-07-24"]);
        let first = Html::parse_document(&files["issues/2023-07-17/index.html"]);
        assert_eq!(attr(&first, "nav a[rel=prev]", "href"), None);
        assert_eq!(
            attr(&first, "nav a[rel=next]", "href").as_deref(),
            Some("https://signals.example.org/issues/2023-07-24/")
        );
        assert_eq!(texts(&first, "nav a[rel=next]"), ["Next: #2, 24–30 July 2023 →"]);
        let last = Html::parse_document(&files["issues/2023-07-24/index.html"]);
        assert_eq!(
            attr(&last, "nav a[rel=prev]", "href").as_deref(),
            Some("https://signals.example.org/issues/2023-07-17/")
        );
        assert_eq!(attr(&last, "nav a[rel=next]", "href"), None);
    }

    #[test]
    fn neighbours_follow_the_archive_order_and_an_issue_outside_it_has_none() {
        let mut ds = Vec::new();
        for (k, day) in ["2023-07-03", "2023-07-10", "2023-07-17"].iter().enumerate() {
            ds.push(testing::digest(&format!("00{k}_{k}{k}{k}{k}.txt"), day, "T"));
        }
        let rule = crate::issue::WeekRule { starts: chrono::Weekday::Mon, timezone: chrono_tz::UTC };
        let issues = crate::issue::group_into_issues(ds, &rule, &crate::issue::PinnedNumbers::new());
        let ids = |(p, n): (Option<&Issue>, Option<&Issue>)| (p.map(|i| i.id.to_string()), n.map(|i| i.id.to_string()));
        assert_eq!(ids(neighbours(&issues, &issues[1])), (Some("2023-07-03".into()), Some("2023-07-17".into())));
        assert_eq!(ids(neighbours(&issues, &issues[0])), (None, Some("2023-07-10".into())));
        assert_eq!(ids(neighbours(&issues[..2], &issues[2])), (None, None));
        // Out of week order (not what grouping gives), the id still finds it.
        let shuffled = vec![issues[2].clone(), issues[0].clone(), issues[1].clone()];
        assert_eq!(ids(neighbours(&shuffled, &issues[0])), (Some("2023-07-17".into()), Some("2023-07-10".into())));
    }

    #[test]
    fn an_issue_page_has_its_canonical_url_open_graph_and_a_subscribe_box_that_the_feeds_leave_out() {
        let (config, issues, files) = pages();
        let html = &files["issues/2023-07-17/index.html"];
        let doc = Html::parse_document(html);
        let url = "https://signals.example.org/issues/2023-07-17/";
        assert_eq!(attr(&doc, "link[rel=canonical]", "href").as_deref(), Some(url));
        assert_eq!(attr(&doc, "meta[property='og:url']", "content").as_deref(), Some(url));
        assert_eq!(attr(&doc, "meta[property='og:type']", "content").as_deref(), Some("article"));
        assert_eq!(attr(&doc, "meta[property='og:site_name']", "content").as_deref(), Some("Signals Weekly"));
        assert_eq!(
            attr(&doc, "meta[property='og:title']", "content").as_deref(),
            Some("Signals Weekly #1: 17–23 July 2023")
        );
        let description = "2 digests: The Evolution of \"Open Source\" in AI Models; Tags like <script>alert('x')</script> & other \"markup\"";
        assert_eq!(attr(&doc, "meta[property='og:description']", "content").as_deref(), Some(description));
        assert_eq!(attr(&doc, "meta[name=description]", "content").as_deref(), Some(description));
        assert!(!html.contains("<script>"), "the titles are escaped in the attributes");

        // The subscribe box posts what the service's own form posts, to the same address.
        assert_eq!(attr(&doc, ".subscribe form", "action").as_deref(), Some("https://signals.example.org/subscribe"));
        assert_eq!(attr(&doc, ".subscribe form", "method").as_deref(), Some("post"));
        assert_eq!(attr(&doc, ".subscribe input[type=email]", "name").as_deref(), Some("email"));
        let id = attr(&doc, ".subscribe input", "id").unwrap();
        assert_eq!(attr(&doc, ".subscribe label", "for"), Some(id), "the input is labelled");

        let content = render_issue_content(&config, &Templates::builtin("x").unwrap(), &issues[0]).unwrap();
        assert!(content.contains(r#"<article id="d-aaaa">"#), "{content}");
        for page_only in ["<form", "rel=\"prev\"", "rel=\"next\"", "Other issues", "subscribe-title", "<footer", "og:"]
        {
            assert!(!content.contains(page_only), "the feeds carry {page_only}: {content}");
        }
    }

    #[test]
    fn the_summary_counts_the_digests_and_names_the_first_three() {
        let ds: Vec<_> = (1..=5)
            .map(|k| testing::digest(&format!("00{k}_{k}{k}{k}{k}.txt"), "2023-07-18", &format!("Title {k}")))
            .collect();
        let rule = crate::issue::WeekRule { starts: chrono::Weekday::Mon, timezone: chrono_tz::UTC };
        let issues = crate::issue::group_into_issues(ds, &rule, &crate::issue::PinnedNumbers::new());
        let titles: Vec<String> = issues[0].digests().map(|d| d.title.clone()).collect();
        assert_eq!(summary(&issues[0]), format!("5 digests: {}; {}; {}; and 2 more", titles[0], titles[1], titles[2]));
        let one = crate::issue::group_into_issues(
            vec![testing::digest("001_aaaa.txt", "2023-07-18", "Alone")],
            &rule,
            &crate::issue::PinnedNumbers::new(),
        );
        assert_eq!(summary(&one[0]), "1 digest: Alone");
    }

    #[test]
    fn the_index_has_its_canonical_url_and_open_graph() {
        let (_, _, files) = pages();
        let doc = Html::parse_document(&files["index.html"]);
        assert_eq!(attr(&doc, "link[rel=canonical]", "href").as_deref(), Some("https://signals.example.org/"));
        assert_eq!(attr(&doc, "meta[property='og:url']", "content").as_deref(), Some("https://signals.example.org/"));
        assert_eq!(attr(&doc, "meta[property='og:type']", "content").as_deref(), Some("website"));
        assert_eq!(attr(&doc, "meta[property='og:title']", "content").as_deref(), Some("Signals Weekly"));
        assert_eq!(
            attr(&doc, "meta[property='og:description']", "content").as_deref(),
            Some("A weekly digest of the articles worth your time.")
        );
        let footer = texts(&doc, "footer").concat();
        assert_eq!(
            footer,
            "A weekly digest of the articles worth your time. Subscribe to Signals Weekly by email, or follow it in a feed reader with RSS, Atom or JSON Feed."
        );
    }

    #[test]
    fn tags_are_list_items_and_signal_labels_are_row_headers() {
        let (_, _, files) = pages();
        let doc = Html::parse_document(&files["issues/2023-07-17/index.html"]);
        let card = Selector::parse("article#d-aaaa").unwrap();
        let card = doc.select(&card).next().unwrap();
        let items: Vec<String> =
            card.select(&Selector::parse("ul.tags > li").unwrap()).map(|e| e.text().collect()).collect();
        assert_eq!(items, ["Theme: evolution of open source", "open source", "<kw>"]);
        let headers: Vec<String> =
            card.select(&Selector::parse("table.signals th[scope=row]").unwrap()).map(|e| e.text().collect()).collect();
        assert_eq!(headers, ["Signal", "Change"]);
        assert_eq!(card.select(&Selector::parse("table.signals td").unwrap()).count(), 2, "one value cell a row");
    }
}
