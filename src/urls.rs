//! Every address Gazette writes, in one place: the archive's pages and feeds (each with the path of
//! its file under `[paths] out`), and the reader's own links (subscribe, confirm, unsubscribe).
//! All of them hang off `[site] base_url`, which never ends with a slash.

use crate::config::Site;
use crate::issue_id::IssueId;

/// The archive's front page, and the name of each folder's page (`issues/<id>/index.html`).
pub const INDEX: &str = "index.html";
/// The RSS 2.0 feed of the newest issues.
pub const RSS: &str = "rss.xml";
/// The Atom feed of the newest issues, and the name of each theme's feed (`themes/<slug>/atom.xml`).
pub const ATOM: &str = "atom.xml";
/// The JSON Feed of the newest issues.
pub const JSON_FEED: &str = "feed.json";
/// The feeds of the newest issues, in the order they are written.
pub const FEEDS: [&str; 3] = [RSS, ATOM, JSON_FEED];
/// The folder of the issue pages.
pub const ISSUES_DIR: &str = "issues";
/// The folder of the theme feeds.
pub const THEMES_DIR: &str = "themes";

/// The archive's front page.
pub fn home(site: &Site) -> String {
    format!("{}/", site.base_url)
}

/// An issue's page.
pub fn issue(site: &Site, issue_id: &IssueId) -> String {
    format!("{}/issues/{issue_id}/", site.base_url)
}

/// Where an issue's page is written, relative to the output folder.
pub fn issue_file(issue_id: &IssueId) -> String {
    format!("{ISSUES_DIR}/{issue_id}/{INDEX}")
}

/// A digest's card on its issue's page (the anchor `d-<digest id>`).
pub fn digest(site: &Site, issue_id: &IssueId, digest_id: &str) -> String {
    format!("{}/issues/{issue_id}/#d-{digest_id}", site.base_url)
}

/// A file at the root of the archive, such as `RSS`.
pub fn file(site: &Site, path: &str) -> String {
    format!("{}/{path}", site.base_url)
}

/// Where a theme's Atom feed is written, relative to the output folder.
pub fn theme_feed_file(slug: &str) -> String {
    format!("{THEMES_DIR}/{slug}/{ATOM}")
}

pub fn theme_feed(site: &Site, slug: &str) -> String {
    file(site, &theme_feed_file(slug))
}

pub fn subscribe(site: &Site) -> String {
    format!("{}/subscribe", site.base_url)
}

/// The confirmation link of a double opt-in, with its signed token.
pub fn confirm(site: &Site, token: &str) -> String {
    format!("{}/confirm/{token}", site.base_url)
}

/// The one-click unsubscribe link (RFC 8058), with its signed token.
pub fn unsubscribe(site: &Site, token: &str) -> String {
    format!("{}/unsubscribe/{token}", site.base_url)
}

/// A reader's preferences page (themes, pause, address), with its signed token.
pub fn preferences(site: &Site, token: &str) -> String {
    format!("{}/preferences/{token}", site.base_url)
}

/// The link mailed to a new address that moves a reader's subscription there, with its signed token.
pub fn confirm_address(site: &Site, token: &str) -> String {
    format!("{}/address/{token}", site.base_url)
}

/// The token previews carry in place of a reader's: exactly the real link's shape (an id, a dot,
/// 64 hex digits), naming nobody (ids start at 1, and the MAC is not one), so that the service
/// answers it with "this link is not valid".
pub const PREVIEW_TOKEN: &str = "0.0000000000000000000000000000000000000000000000000000000000000000";

/// Where a preview of an issue's email is written, relative to the drafts folder.
pub fn preview_file(issue_id: &IssueId, extension: &str) -> String {
    format!("preview/{issue_id}.{extension}")
}
