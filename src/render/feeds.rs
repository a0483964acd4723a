//! RSS 2.0, Atom 1.0 and JSON Feed 1.1 of the newest issues, and an Atom feed per theme.
//! Ids are tag URIs (RFC 4151) that never change. Every date comes from the publication record
//! (when an issue was published, and revised after) or, for a draft, from the digests; never from
//! the clock: the same archive and record always give the same bytes.

use std::collections::BTreeMap;

use atom_syndication as atom;
use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, Utc};
use minijinja::context;
use minijinja::value::{Serde, Value};
use sha2::{Digest as _, Sha256};

use super::output::OutputFile;
use super::{RenderError, Templates};
use crate::config::Config;
use crate::digest::{Digest, Listed};
use crate::issue::Issue;
use crate::issue_id::IssueId;
use crate::urls;

/// One issue in a feed, with its HTML (the web version's content, rendered from the issue
/// whole): the feed's own lines need only what the catalog has of it.
pub struct FeedItem<'a, D = Digest> {
    pub issue: &'a Issue<D>,
    pub content_html: String,
}

/// An issue's date in the feeds: when it was published (the publication record's time), which is
/// when readers could first see it. A draft, never published, has the day of its newest digest at
/// midnight UTC.
pub fn issue_date<D>(issue: &Issue<D>) -> DateTime<Utc> {
    issue.published.unwrap_or_else(|| day_start(issue.days.last().map(|d| d.date).unwrap_or(issue.end)))
}

/// When an issue last changed: its date, or later when its digests were edited after it was
/// published (the publication record's revision time).
pub fn issue_updated<D>(issue: &Issue<D>) -> DateTime<Utc> {
    let date = issue_date(issue);
    issue.revised.map_or(date, |r| r.max(date))
}

fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn tag_uri(config: &Config, year: i32, specific: &str) -> String {
    format!("tag:{},{year}:{specific}", config.site.host())
}

fn issue_id_uri<D>(config: &Config, issue: &Issue<D>) -> String {
    tag_uri(config, issue.start.year(), &format!("issue-{}", issue.id))
}

fn issue_title<D>(config: &Config, issue: &Issue<D>) -> String {
    format!("{} #{}: {}", config.site.title, issue.number, issue.label)
}

/// The feed's own id: the year of its oldest entry keeps it fixed as new issues arrive.
fn feed_year<D>(items: &[FeedItem<D>]) -> i32 {
    items.last().map(|i| i.issue.start.year()).unwrap_or(2023)
}

/// The latest change of any item, or the epoch for an empty feed (still no clock).
fn feed_updated<D>(items: &[FeedItem<D>]) -> DateTime<Utc> {
    items.iter().map(|i| issue_updated(i.issue)).max().unwrap_or(DateTime::UNIX_EPOCH)
}

/// `items` newest first.
pub fn rss_feed<D: Listed>(config: &Config, items: &[FeedItem<D>]) -> Result<String, RenderError> {
    use rss::extension::Extension;
    let self_link = Extension {
        name: "atom:link".into(),
        attrs: [
            ("href", urls::file(&config.site, urls::RSS)),
            ("rel", "self".into()),
            ("type", "application/rss+xml".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
        ..Default::default()
    };
    let mut extensions = rss::extension::ExtensionMap::default();
    extensions.entry("atom".into()).or_default().insert("link".into(), vec![self_link]);
    let channel = rss::Channel {
        title: config.site.title.clone(),
        link: urls::home(&config.site),
        description: config.site.description.clone(),
        language: Some(config.site.language.clone()),
        last_build_date: Some(feed_updated(items).to_rfc2822()),
        generator: Some("Gazette".into()),
        namespaces: [("atom".to_string(), "http://www.w3.org/2005/Atom".to_string())].into(),
        extensions,
        items: items
            .iter()
            .map(|item| {
                let issue = item.issue;
                // RSS descriptions are HTML: the titles are escaped.
                let titles: Vec<String> = issue.digests().map(|d| super::markdown::escaped(d.title())).collect();
                rss::Item {
                    title: Some(issue_title(config, issue)),
                    link: Some(urls::issue(&config.site, &issue.id)),
                    description: Some(titles.join(" · ")),
                    content: Some(item.content_html.clone()),
                    guid: Some(rss::Guid { value: issue_id_uri(config, issue), permalink: false }),
                    pub_date: Some(issue_date(issue).to_rfc2822()),
                    categories: issue.themes().into_iter().map(|t| rss::Category { name: t, domain: None }).collect(),
                    ..Default::default()
                }
            })
            .collect(),
        ..Default::default()
    };
    let bytes =
        channel.pretty_write_to(Vec::new(), b' ', 2).map_err(|e| RenderError::Feed(format!("{}: {e}", urls::RSS)))?;
    Ok(String::from_utf8(bytes).expect("the rss crate writes UTF-8") + "\n")
}

fn atom_link(href: String, rel: &str, mime: &str) -> atom::Link {
    atom::Link { href, rel: rel.into(), mime_type: Some(mime.into()), ..Default::default() }
}

fn atom_author(config: &Config) -> atom::Person {
    atom::Person { name: config.site.author.clone(), uri: Some(urls::home(&config.site)), ..Default::default() }
}

fn atom_string(feed: &atom::Feed, file: &str) -> Result<String, RenderError> {
    let config = atom::WriteConfig { write_document_declaration: true, indent_size: Some(2) };
    let bytes = feed.write_with_config(Vec::new(), config).map_err(|e| RenderError::Feed(format!("{file}: {e}")))?;
    Ok(String::from_utf8(bytes).expect("atom_syndication writes UTF-8") + "\n")
}

fn fixed(t: DateTime<Utc>) -> atom::FixedDateTime {
    t.fixed_offset()
}

/// `items` newest first.
pub fn atom_feed<D: Listed>(config: &Config, items: &[FeedItem<D>]) -> Result<String, RenderError> {
    let feed = atom::Feed {
        title: atom::Text::plain(config.site.title.clone()),
        id: tag_uri(config, feed_year(items), "feed"),
        updated: fixed(feed_updated(items)),
        authors: vec![atom_author(config)],
        subtitle: Some(atom::Text::plain(config.site.description.clone())),
        lang: Some(config.site.language.clone()),
        links: vec![
            atom_link(urls::file(&config.site, urls::ATOM), "self", "application/atom+xml"),
            atom_link(urls::home(&config.site), "alternate", "text/html"),
        ],
        entries: items
            .iter()
            .map(|item| {
                let issue = item.issue;
                atom::Entry {
                    title: atom::Text::plain(issue_title(config, issue)),
                    id: issue_id_uri(config, issue),
                    updated: fixed(issue_updated(issue)),
                    published: Some(fixed(issue_date(issue))),
                    links: vec![atom_link(urls::issue(&config.site, &issue.id), "alternate", "text/html")],
                    categories: issue
                        .themes()
                        .into_iter()
                        .map(|t| atom::Category { term: t, ..Default::default() })
                        .collect(),
                    content: Some(atom::Content {
                        value: Some(item.content_html.clone()),
                        content_type: Some("html".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }
            })
            .collect(),
        ..Default::default()
    };
    atom_string(&feed, urls::ATOM)
}

/// JSON Feed 1.1, `items` newest first.
pub fn json_feed<D: Listed>(config: &Config, items: &[FeedItem<D>]) -> Result<String, RenderError> {
    let authors = serde_json::json!([{ "name": config.site.author, "url": urls::home(&config.site) }]);
    let feed = serde_json::json!({
        "version": "https://jsonfeed.org/version/1.1",
        "title": config.site.title,
        "home_page_url": urls::home(&config.site),
        "feed_url": urls::file(&config.site, urls::JSON_FEED),
        "description": config.site.description,
        "language": config.site.language,
        "authors": authors,
        "items": items.iter().map(|item| {
            let issue = item.issue;
            serde_json::json!({
                "id": issue_id_uri(config, issue),
                "url": urls::issue(&config.site, &issue.id),
                "title": issue_title(config, issue),
                "content_html": item.content_html,
                "date_published": rfc3339(issue_date(issue)),
                "date_modified": rfc3339(issue_updated(issue)),
                "tags": issue.themes(),
                "authors": authors,
            })
        }).collect::<Vec<_>>(),
    });
    let mut s =
        serde_json::to_string_pretty(&feed).map_err(|e| RenderError::Feed(format!("{}: {e}", urls::JSON_FEED)))?;
    s.push('\n');
    Ok(s)
}

/// A theme's name as a URL path segment: ASCII letters and digits joined by `-`; a theme with
/// other characters gets a short hash so that two non-Latin themes never share a feed.
pub fn slug(theme: &str) -> String {
    let mut s = String::new();
    for c in theme.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('-') && !s.is_empty() {
            s.push('-');
        }
    }
    let s = s.trim_end_matches('-').to_string();
    if theme.is_ascii() && !s.is_empty() {
        return s;
    }
    let hash = hex::encode(&Sha256::digest(theme.trim().to_lowercase().as_bytes())[..4]);
    if s.is_empty() { hash } else { format!("{s}-{hash}") }
}

pub(crate) struct Theme<'a, D> {
    pub name: String,
    pub slug: String,
    /// Every digest carrying the theme, oldest first, with its issue's id.
    pub digests: Vec<(&'a IssueId, &'a D)>,
}

/// Themes by slug, built in one pass over the archive (themes that differ only in case or
/// punctuation share a slug, and so a feed).
pub(crate) fn theme_index<D: Listed>(issues: &[Issue<D>]) -> BTreeMap<String, Theme<'_, D>> {
    // Few names, many digests: each name is hashed once a digest to find its slug's place, and
    // each slug is made once. A theme's name is the first that gave its slug.
    let mut place_of_name: foldhash::HashMap<&str, usize> = Default::default();
    let mut place_of_slug: foldhash::HashMap<String, usize> = Default::default();
    let mut themes: Vec<Theme<D>> = Vec::new();
    let mut seen: Vec<usize> = Vec::new();
    for issue in issues {
        for d in issue.digests() {
            seen.clear();
            for name in d.themes() {
                let place = match place_of_name.get(name.as_str()) {
                    Some(&place) => place,
                    None => {
                        let slug = slug(name);
                        let place = *place_of_slug.entry(slug.clone()).or_insert_with(|| {
                            themes.push(Theme { name: name.clone(), slug, digests: Vec::new() });
                            themes.len() - 1
                        });
                        place_of_name.insert(name, place);
                        place
                    }
                };
                // A digest counts once for each slug, whatever names it gives the theme.
                if !seen.contains(&place) {
                    seen.push(place);
                    themes[place].digests.push((&issue.id, d));
                }
            }
        }
    }
    themes.into_iter().map(|t| (t.slug.clone(), t)).collect()
}

/// One theme's feed, before it is rendered: what it is made from. Planned over the catalog;
/// rendered with its shown digests whole (`ThemeFeed<Digest>`).
pub struct ThemeFeed<'a, D> {
    pub name: String,
    pub slug: String,
    /// `themes/<slug>/atom.xml`.
    pub path: String,
    /// The year of the theme's oldest digest: part of the feed's id, which never changes.
    pub oldest_year: i32,
    /// How many digests carry the theme.
    pub count: usize,
    /// The newest `[feeds] items` digests carrying the theme, newest first, each with its issue's id.
    pub shown: Vec<(&'a IssueId, &'a D)>,
}

impl<'a, D> ThemeFeed<'a, D> {
    /// The same feed showing `whole(d)` for each digest `d` shown.
    pub fn with_digests<'b, E>(&self, mut whole: impl FnMut(&'a D) -> &'b E) -> ThemeFeed<'b, E>
    where
        'a: 'b,
    {
        ThemeFeed {
            name: self.name.clone(),
            slug: self.slug.clone(),
            path: self.path.clone(),
            oldest_year: self.oldest_year,
            count: self.count,
            shown: self.shown.iter().map(|&(issue_id, d)| (issue_id, whole(d))).collect(),
        }
    }
}

/// Every theme's feed, in slug order.
pub fn theme_feed_plan<'a, D: Listed>(config: &Config, issues: &'a [Issue<D>]) -> Vec<ThemeFeed<'a, D>> {
    theme_index(issues)
        .into_values()
        .map(|theme| ThemeFeed {
            oldest_year: theme.digests.first().map(|(_, d)| d.date().year()).unwrap_or(2023),
            count: theme.digests.len(),
            shown: theme.digests.iter().rev().take(config.feeds.items).copied().collect(),
            path: urls::theme_feed_file(&theme.slug),
            name: theme.name,
            slug: theme.slug,
        })
        .collect()
}

/// `themes/<slug>/atom.xml` for every theme of `plan` (`theme_feed_plan`): its newest digests, each
/// with its card.
pub fn theme_feeds(
    config: &Config,
    templates: &Templates,
    plan: &[ThemeFeed<Digest>],
) -> Result<Vec<OutputFile>, RenderError> {
    let site = Value::from(Serde(&config.site));
    let mut files = Vec::new();
    for theme in plan {
        let newest = &theme.shown;
        let mut entries = Vec::with_capacity(newest.len());
        for &(issue_id, d) in newest {
            let card =
                templates.render("_digest.html", &context! { d => Value::from(Serde(d)), site => site.clone() })?;
            entries.push(atom::Entry {
                title: atom::Text::plain(d.title.clone()),
                id: tag_uri(config, d.date.year(), &format!("digest-{}", d.id)),
                updated: fixed(day_start(d.date)),
                published: Some(fixed(day_start(d.date))),
                links: vec![
                    atom_link(urls::digest(&config.site, issue_id, &d.id), "alternate", "text/html"),
                    atom::Link { href: d.link.clone(), rel: "related".into(), ..Default::default() },
                ],
                categories: d.themes.iter().map(|t| atom::Category { term: t.clone(), ..Default::default() }).collect(),
                content: Some(atom::Content {
                    value: Some(card),
                    content_type: Some("html".into()),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        let feed = atom::Feed {
            title: atom::Text::plain(format!("{}: {}", config.site.title, theme.name)),
            id: tag_uri(config, theme.oldest_year, &format!("theme-{}", theme.slug)),
            updated: fixed(newest.first().map(|(_, d)| day_start(d.date)).unwrap_or(DateTime::UNIX_EPOCH)),
            authors: vec![atom_author(config)],
            lang: Some(config.site.language.clone()),
            links: vec![
                atom_link(urls::theme_feed(&config.site, &theme.slug), "self", "application/atom+xml"),
                atom_link(urls::home(&config.site), "alternate", "text/html"),
            ],
            entries,
            ..Default::default()
        };
        files.push(OutputFile { contents: atom_string(&feed, &theme.path)?, path: theme.path.clone() });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{Templates, render_site, testing};

    fn site() -> BTreeMap<String, String> {
        let config = testing::config();
        let templates = Templates::builtin(&config.email.subject).unwrap();
        render_site(&config, &templates, &testing::issues(), None)
            .unwrap()
            .into_iter()
            .map(|f| (f.path, f.contents))
            .collect()
    }

    #[test]
    fn slugs() {
        assert_eq!(slug("Evolution of open source"), "evolution-of-open-source");
        assert_eq!(slug("  AI & the *future*! "), "ai-the-future");
        let cjk = slug("开源");
        assert_eq!(cjk.len(), 8);
        assert_ne!(cjk, slug("模型"));
        assert!(slug("Émigrés").starts_with("migr-"));
    }

    #[test]
    fn rss_parses_back_with_ids_dates_and_self_link() {
        let files = site();
        let rss = &files["rss.xml"];
        assert!(
            rss.contains(
                r#"<atom:link href="https://signals.example.org/rss.xml" rel="self" type="application/rss+xml">"#
            ),
            "{rss}"
        );
        assert!(rss.contains(
            "<description><![CDATA[The Evolution of &quot;Open Source&quot; in AI Models · Tags like &lt;script&gt;"
        ));
        assert!(rss.contains(r#"xmlns:atom="http://www.w3.org/2005/Atom""#));
        assert!(rss.contains(r#"<guid isPermaLink="false">tag:signals.example.org,2023:issue-2023-07-24</guid>"#));
        assert!(rss.contains("<pubDate>Sun, 23 Jul 2023 00:00:00 +0000</pubDate>"), "{rss}");
        let feed = feed_rs::parser::parse(rss.as_bytes()).unwrap();
        assert_eq!(feed.entries.len(), 2);
        assert_eq!(feed.entries[0].id, "tag:signals.example.org,2023:issue-2023-07-24");
        assert_eq!(feed.entries[1].links[0].href, "https://signals.example.org/issues/2023-07-17/");
        assert_eq!(feed.entries[1].published.unwrap().to_rfc3339(), "2023-07-23T00:00:00+00:00");
        let content = feed.entries[1].content.as_ref().unwrap().body.as_ref().unwrap();
        assert!(content.contains(r#"<article id="d-bbbb">"#) && content.contains("&lt;script&gt;"), "{content}");
        assert!(!content.contains("<html"));
    }

    #[test]
    fn atom_and_json_parse_back() {
        let files = site();
        let feed = feed_rs::parser::parse(files["atom.xml"].as_bytes()).unwrap();
        assert_eq!(feed.id, "tag:signals.example.org,2023:feed");
        assert_eq!(feed.updated.unwrap().to_rfc3339(), "2023-07-25T00:00:00+00:00");
        assert_eq!(
            feed.links.iter().find(|l| l.rel.as_deref() == Some("self")).unwrap().href,
            "https://signals.example.org/atom.xml"
        );
        assert_eq!(feed.entries[1].title.as_ref().unwrap().content, "Signals Weekly #1: 17–23 July 2023");
        assert_eq!(feed.entries[1].categories[0].term, "evolution of open source");

        let json: serde_json::Value = serde_json::from_str(&files["feed.json"]).unwrap();
        assert_eq!(json["version"], "https://jsonfeed.org/version/1.1");
        assert_eq!(json["feed_url"], "https://signals.example.org/feed.json");
        assert_eq!(json["items"][1]["id"], "tag:signals.example.org,2023:issue-2023-07-17");
        assert_eq!(json["items"][1]["date_published"], "2023-07-23T00:00:00Z");
        let parsed = feed_rs::parser::parse(files["feed.json"].as_bytes()).unwrap();
        assert_eq!(parsed.entries.len(), 2);
    }

    #[test]
    fn themes_sharing_a_slug_are_one_named_as_first_seen_and_count_a_digest_once() {
        let mut issues = testing::issues();
        let mut all: Vec<&mut Digest> =
            issues.iter_mut().flat_map(|i| i.days.iter_mut().flat_map(|d| d.digests.iter_mut())).collect();
        assert!(all.len() >= 3);
        all[0].themes = vec!["Open Models".into(), "open models!".into(), "Safety".into()];
        all[1].themes = vec!["OPEN  models".into()];
        all.iter_mut().skip(2).for_each(|d| d.themes.clear());
        let ids: Vec<String> = all.iter().take(2).map(|d| d.id.clone()).collect();
        let index = theme_index(&issues);
        assert_eq!(index.keys().map(String::as_str).collect::<Vec<_>>(), ["open-models", "safety"]);
        let open = &index["open-models"];
        assert_eq!(open.name, "Open Models");
        assert_eq!(open.digests.iter().map(|(_, d)| d.id.clone()).collect::<Vec<_>>(), ids);
        assert_eq!(index["safety"].digests.iter().map(|(_, d)| d.id.clone()).collect::<Vec<_>>(), ids[..1]);
    }

    #[test]
    fn theme_feed_lists_the_digests_of_its_theme() {
        let files = site();
        let feed = feed_rs::parser::parse(files["themes/evolution-of-open-source/atom.xml"].as_bytes()).unwrap();
        let ids: Vec<_> = feed.entries.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "tag:signals.example.org,2023:digest-cccc",
                "tag:signals.example.org,2023:digest-bbbb",
                "tag:signals.example.org,2023:digest-aaaa"
            ]
        );
        assert_eq!(feed.entries[1].links[0].href, "https://signals.example.org/issues/2023-07-17/#d-bbbb");
    }

    #[test]
    fn atom_snapshot() {
        insta::assert_snapshot!(site()["atom.xml"]);
    }
}
