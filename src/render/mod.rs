//! Rendering: an issue (or all of them) and the templates in, strings out. The email (MJML compiled
//! once per issue, placeholders filled per subscriber), the welcome email, the web archive pages
//! and the feeds.
//! Pure: no files, no clock, no database; the caller writes what is returned.

mod archive;
mod email;
mod feeds;
pub mod markdown;
mod output;
mod pages;
mod templates;
mod welcome;

pub use archive::{
    feed_issues, issue_page_key, render_feeds, render_feeds_of, render_index, render_index_with, render_issue_content,
    render_issue_page, render_site,
};
pub use email::{
    EmailBody, GMAIL_CLIP_BYTES, PREFERENCES_URL, SUBSCRIBER_EMAIL, Shortening, UNSUBSCRIBE_URL, compile_email_mjml,
    email_html_size, email_mjml, render_email, render_email_at, render_email_for,
};
pub use feeds::{FeedItem, ThemeFeed, atom_feed, issue_date, json_feed, rss_feed, slug, theme_feed_plan, theme_feeds};
pub use output::OutputFile;
pub use pages::{
    Page, PageForm, PageLink, PageSection, PageSelect, SelectOption, ThemeFields, ThemeOption, render_page,
};
pub use templates::{BUILTIN, TemplateFile, Templates};
pub use welcome::render_welcome;

use minijinja::context;
use minijinja::value::{Serde, Value};

use crate::config::Config;
use crate::issue::WholeIssue;
use crate::urls;

/// Something that stops an issue from rendering; each names the template (or part) at fault.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Template { file: String, line: Option<usize>, message: String },
    #[error("{file}: the MJML it produced does not compile: {message}")]
    Mjml { file: String, message: String },
    #[error(
        "{file}: the unsubscribe link is missing; the template must print {{{{ unsubscribe_url }}}} (mail providers require a visible one)"
    )]
    NoUnsubscribe { file: String },
    #[error("cannot write a feed: {0}")]
    Feed(String),
}

fn feeds_value(config: &Config) -> Value {
    context! {
        rss => urls::file(&config.site, urls::RSS),
        atom => urls::file(&config.site, urls::ATOM),
        json => urls::file(&config.site, urls::JSON_FEED),
    }
}

/// What every issue template sees: `site`, `issue`, `count`, `issue_url`, `feeds`.
fn issue_context(config: &Config, issue: &WholeIssue) -> Value {
    context! {
        site => Value::from(Serde(&config.site)),
        issue => Value::from(Serde(issue)),
        count => issue.digest_count(),
        issue_url => urls::issue(&config.site, &issue.id),
        feeds => feeds_value(config),
    }
}

/// Maps `f` over `items` on all cores, keeping the order (issues render independently).
pub(crate) fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync + Send) -> Vec<R> {
    use rayon::prelude::*;
    items.par_iter().map(f).collect()
}

#[cfg(test)]
pub(crate) mod testing {
    //! A small issue with hostile content, for the render tests.
    use crate::config::Config;
    use crate::digest::{Closest, ClosestTarget, Digest, Signals};
    use crate::issue::{self, Issue, PinnedNumbers, WeekRule};
    use chrono::NaiveDate;

    pub fn config() -> Config {
        Config::parse(
            "[site]\nbase_url = \"https://signals.example.org\"\n[schedule]\ntimezone = \"UTC\"\n",
            std::path::Path::new("/srv/news/publish.toml"),
        )
        .unwrap()
    }

    pub fn digest(file: &str, day: &str, title: &str) -> Digest {
        Digest {
            id: crate::digest::id_from_file_name(file).unwrap(),
            file_name: file.into(),
            path: file.into(),
            title: title.into(),
            date: NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap(),
            source_url: "https://source.example.org/1".into(),
            link: "https://example.org/article?a=1&b=2".into(),
            summary: "A *summary* with [a link](https://example.org/x) and <b>raw html</b>.".into(),
            keywords: vec!["open source".into(), "<kw>".into()],
            themes: vec!["evolution of open source".into()],
            signals: Signals {
                columns: vec!["Signal".into(), "Change".into()],
                rows: vec![vec!["More openness".into(), "From closed to open".into()]],
            },
            closest: vec![
                Closest { title: "Elsewhere".into(), reference: "ffff".into(), target: None },
                Closest {
                    title: "The other one".into(),
                    reference: "bbbb".into(),
                    target: Some(Box::new(ClosestTarget {
                        digest_id: "bbbb".into(),
                        issue_id: "2023-07-17".parse().unwrap(),
                    })),
                },
            ],
        }
    }

    pub fn issues() -> Vec<Issue> {
        let ds = vec![
            digest("001_aaaa.txt", "2023-07-17", "The Evolution of \"Open Source\" in AI Models"),
            digest("002_bbbb.txt", "2023-07-23", "Tags like <script>alert('x')</script> & other \"markup\""),
            digest("003_cccc.txt", "2023-07-25", "Sneaky %%UNSUBSCRIBE_URL%% and %%SUBSCRIBER_EMAIL%%"),
        ];
        let rule = WeekRule { starts: chrono::Weekday::Mon, timezone: chrono_tz::UTC };
        issue::group_into_issues(ds, &rule, &PinnedNumbers::new())
    }
}
