//! The email of an issue: rendered and compiled from MJML once, with placeholders where each
//! subscriber's unsubscribe link and address go, so that sending to many people costs a few string
//! replacements per message instead of a template run and an MJML compile.

use minijinja::context;
use minijinja::value::{Serde, Value};

use super::markdown::{self, escaped};
use super::templates::SUBJECT;
use super::{RenderError, Templates, issue_context};
use crate::config::Config;
use crate::issue::{Day, Issue};
use crate::themes::ThemeChoice;
use crate::urls;

/// Stands for the subscriber's one-click unsubscribe URL until `EmailBody::fill`.
pub const UNSUBSCRIBE_URL: &str = "%%UNSUBSCRIBE_URL%%";
/// Stands for the subscriber's preferences page (themes, pause, address) until `EmailBody::fill`.
pub const PREFERENCES_URL: &str = "%%PREFERENCES_URL%%";
/// Stands for the subscriber's address until `EmailBody::fill`.
pub const SUBSCRIBER_EMAIL: &str = "%%SUBSCRIBER_EMAIL%%";
/// Gmail clips a message whose HTML is larger than about 102 KB, hiding the footer with the
/// unsubscribe link; `[email] max_html_kb` stays under it, and the warnings say so past 100 KB.
pub const GMAIL_CLIP_BYTES: usize = 100 * 1024;

/// A summary longer than this (bytes of markdown) is cut at a sentence once the email is over budget.
const SUMMARY_BYTES: usize = 360;
/// The longest line of a digest listed in brief, in characters.
const LINE_CHARS: usize = 140;

/// How far an issue's email was shortened to fit `[email] max_html_kb`. Each step keeps the cuts
/// of the ones before it; the web page and the feeds always carry everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortening {
    /// Every digest whole.
    Whole,
    /// Long summaries cut at a sentence, each with a link to the rest on the web.
    Summaries,
    /// Also the signals tables and closest links left to the web page.
    Details,
    /// The first `cards` digests as above, the others as one-line entries.
    Lines { cards: usize },
    /// Only the first `listed` digests, as one-line entries; the others only on the web.
    Listed { listed: usize },
}

impl Shortening {
    /// The digests shown as cards, of `total`.
    fn cards(self, total: usize) -> usize {
        match self {
            Shortening::Lines { cards } => cards.min(total),
            Shortening::Listed { .. } => 0,
            _ => total,
        }
    }

    /// The digests the email names at all, of `total`.
    fn listed(self, total: usize) -> usize {
        match self {
            Shortening::Listed { listed } => listed.min(total),
            _ => total,
        }
    }

    /// What a reader is told, at the top of a shortened email.
    fn to_reader(self, total: usize) -> Option<String> {
        let s = |n: usize| if n == 1 { "" } else { "s" };
        Some(match self {
            Shortening::Whole => return None,
            Shortening::Summaries => "A busy week: long summaries are shortened here.".to_string(),
            Shortening::Details => {
                "A busy week: long summaries are shortened, and signals are on the web page.".to_string()
            }
            Shortening::Lines { cards } => {
                let brief = total - cards.min(total);
                format!(
                    "A busy week: summaries are shortened, and the last {brief} digest{} are listed in brief.",
                    s(brief)
                )
            }
            Shortening::Listed { listed } => {
                format!("A very busy week: this email lists {} of the {total} digests in brief.", listed.min(total))
            }
        })
    }

    /// What an editor is told by `check` and `preview` about an issue of `total` digests whose
    /// email had to fit `budget` bytes; `None` when nothing was cut.
    pub fn report(self, budget: usize, total: usize) -> Option<String> {
        (self != Shortening::Whole)
            .then(|| format!("shortened to fit [email] max_html_kb = {}: {}", budget / 1024, self.describe(total)))
    }

    /// The cut, for an issue of `total` digests.
    pub fn describe(self, total: usize) -> String {
        match self {
            Shortening::Whole => "every digest whole".into(),
            Shortening::Summaries => "long summaries shortened".into(),
            Shortening::Details => "long summaries shortened, signals and closest links left to the web page".into(),
            Shortening::Lines { cards } => {
                format!("summaries shortened, {} of {total} digests as one-line entries", total - cards.min(total))
            }
            Shortening::Listed { listed } => {
                format!(
                    "only {} of {total} digests listed, as one-line entries; the rest only on the web page",
                    listed.min(total)
                )
            }
        }
    }
}

/// An issue's email, common to every subscriber. Content can never contain the placeholders:
/// every `%%` in it is escaped (HTML) or broken by a zero-width space (text) while rendering.
#[derive(Debug, Clone, PartialEq)]
pub struct EmailBody {
    /// One line: CR and LF never reach a header.
    pub subject: String,
    pub html: String,
    pub text: String,
    /// What the size budget cut.
    pub shortened: Shortening,
}

impl EmailBody {
    /// Fills the per-subscriber placeholders; cheap (no template engine, no MJML).
    pub fn fill(&self, unsubscribe_url: &str, preferences_url: &str, address: &str) -> (String, String) {
        let html = self
            .html
            .replace(UNSUBSCRIBE_URL, &escaped(unsubscribe_url))
            .replace(PREFERENCES_URL, &escaped(preferences_url))
            .replace(SUBSCRIBER_EMAIL, &escaped(address));
        let text = self
            .text
            .replace(UNSUBSCRIBE_URL, unsubscribe_url)
            .replace(PREFERENCES_URL, preferences_url)
            .replace(SUBSCRIBER_EMAIL, address);
        (html, text)
    }

    /// True when Gmail would clip the HTML (and hide the unsubscribe link in the footer): only
    /// when even the shortest form of the email is over the limit.
    pub fn too_large(&self) -> bool {
        self.html.len() > GMAIL_CLIP_BYTES
    }
}

/// The issue's email, shortened as far as `[email] max_html_kb` needs (see `Shortening`).
pub fn render_email(config: &Config, templates: &Templates, issue: &Issue) -> Result<EmailBody, RenderError> {
    render_parts(config, templates, issue, None, true)
}

/// The email of `issue` for a reader who follows `themes` only: the digests that carry one of
/// them, in the same layout, with a line saying so (the template's `selection`), shortened to the
/// size budget as any email is. `None` when the issue holds none of them: nothing to send.
pub fn render_email_for(
    config: &Config,
    templates: &Templates,
    issue: &Issue,
    themes: &ThemeChoice,
) -> Result<Option<EmailBody>, RenderError> {
    let days: Vec<Day> = issue
        .days
        .iter()
        .filter_map(|day| {
            let digests: Vec<_> = day.digests.iter().filter(|d| themes.wants(&d.themes)).cloned().collect();
            (!digests.is_empty()).then(|| Day { digests, ..day.clone() })
        })
        .collect();
    if days.is_empty() {
        return Ok(None);
    }
    let selected = Issue { days, ..issue.clone() };
    let selection = context! { themes => themes.to_string(), total => issue.digest_count() };
    render_parts(config, templates, &selected, Some(selection), true).map(Some)
}

/// The size of the issue's email HTML and how it was shortened, without rendering the text part.
pub fn email_html_size(
    config: &Config,
    templates: &Templates,
    issue: &Issue,
) -> Result<(usize, Shortening), RenderError> {
    render_parts(config, templates, issue, None, false).map(|e| (e.html.len(), e.shortened))
}

/// The MJML the email template produces for `issue` (before compiling), for the rendering benchmark
/// (`examples/render_bench.rs`), which compares mrml with the reference compiler on the same input.
#[doc(hidden)]
pub fn email_mjml(config: &Config, templates: &Templates, issue: &Issue) -> Result<String, RenderError> {
    let shortened = render_parts(config, templates, issue, None, false)?.shortened;
    let base = BaseContext::new(config, templates, issue, None)?;
    templates.render("email.mjml", &base.with(config, issue, shortened))
}

/// The email of `issue` at exactly the step `shortened`, with no budget: for measuring what each
/// step costs (`examples/email_size.rs`).
#[doc(hidden)]
pub fn render_email_at(
    config: &Config,
    templates: &Templates,
    issue: &Issue,
    shortened: Shortening,
) -> Result<EmailBody, RenderError> {
    let base = BaseContext::new(config, templates, issue, None)?;
    let ctx = base.with(config, issue, shortened);
    let html = compile(templates, &ctx)?;
    let text = templates.render("email.txt", &ctx)?;
    Ok(EmailBody { subject: base.subject, html, text, shortened })
}

/// MJML to HTML exactly as an issue's email is compiled, for the rendering benchmark.
#[doc(hidden)]
pub fn compile_email_mjml(mjml: &str) -> Result<String, String> {
    compile_mjml(mjml)
}

fn render_parts(
    config: &Config,
    templates: &Templates,
    issue: &Issue,
    selection: Option<Value>,
    with_text: bool,
) -> Result<EmailBody, RenderError> {
    let base = BaseContext::new(config, templates, issue, selection)?;
    let total = issue.digest_count();
    let budget = config.email.max_html_bytes;
    let fits = |html: &str| filled_size(html, config) <= budget;
    let html_at = |s: Shortening| compile(templates, &base.with(config, issue, s));

    // The steps in order, each rendered whole; then, for the entries in brief, the most cards that
    // fit, and at last the most entries that fit (both found by bisection: a step's size grows
    // with its count).
    let mut chosen = None;
    let mut whole = None;
    for step in [Shortening::Whole, Shortening::Summaries, Shortening::Details] {
        let html = html_at(step)?;
        if fits(&html) {
            chosen = Some((step, html));
            break;
        }
        whole.get_or_insert(html);
    }
    if chosen.is_none() {
        let lines = |cards| Shortening::Lines { cards };
        let listed = |listed| Shortening::Listed { listed };
        let html = html_at(lines(0))?;
        // A template of its own that ignores the steps (one written before they existed) renders
        // the same email at each: it is sent whole, and the size warnings say it is too large.
        if whole.as_ref() == Some(&html) {
            chosen = whole.map(|html| (Shortening::Whole, html));
        } else {
            chosen = Some(if fits(&html) {
                most_that_fit(total, (lines(0), html), |n| html_at(lines(n)), &fits)?
            } else {
                most_that_fit(total, (listed(0), html_at(listed(0))?), |n| html_at(listed(n)), &fits)?
            });
        }
    }
    let (shortened, html) = chosen.expect("a step was chosen");
    let text = if with_text {
        templates.render("email.txt", &base.with(config, issue, shortened))?
    } else {
        UNSUBSCRIBE_URL.to_string()
    };
    for (part, name) in [(&html, "email.mjml"), (&text, "email.txt")] {
        if !part.contains(UNSUBSCRIBE_URL) {
            return Err(RenderError::NoUnsubscribe { file: templates.origin(name) });
        }
    }
    Ok(EmailBody { subject: base.subject, html, text, shortened })
}

/// The largest `n` in `0..=total` whose email fits, starting from `none` (n = 0, which is kept
/// even when it does not fit: the frame alone is all the email can be).
fn most_that_fit(
    total: usize,
    none: (Shortening, String),
    at: impl Fn(usize) -> Result<String, RenderError>,
    fits: &impl Fn(&str) -> bool,
) -> Result<(Shortening, String), RenderError> {
    let step = |n: usize| match none.0 {
        Shortening::Lines { .. } => Shortening::Lines { cards: n },
        _ => Shortening::Listed { listed: n },
    };
    let (mut good, mut good_html) = (0, none.1);
    let mut bad = total + 1;
    while bad - good > 1 {
        let mid = good + (bad - good) / 2;
        let html = at(mid)?;
        if fits(&html) {
            (good, good_html) = (mid, html);
        } else {
            bad = mid;
        }
    }
    Ok((step(good), good_html))
}

/// The HTML's size once filled in for a subscriber: each placeholder replaced by the longest
/// value it can take (an address of 254 characters, every one escaped; the unsubscribe and
/// preferences links), plus
/// the DKIM signature headers every message will carry.
pub(super) fn filled_size(html: &str, config: &Config) -> usize {
    let link = config.site.base_url.len() + "/unsubscribe/".len() + 120;
    let signatures = config.dkim.as_ref().map_or(0, |d| d.signature_bytes());
    html.len()
        + (html.matches(UNSUBSCRIBE_URL).count() + html.matches(PREFERENCES_URL).count()) * link
        + html.matches(SUBSCRIBER_EMAIL).count() * 254 * 2
        + signatures
}

fn compile(templates: &Templates, ctx: &Value) -> Result<String, RenderError> {
    let mjml = templates.render("email.mjml", ctx)?;
    compile_mjml(&mjml).map_err(|message| RenderError::Mjml { file: templates.origin("email.mjml"), message })
}

/// What the email templates see whatever the shortening: the subject, the preheader, the issue.
struct BaseContext {
    subject: String,
    ctx: Value,
}

impl BaseContext {
    fn new(
        config: &Config,
        templates: &Templates,
        issue: &Issue,
        selection: Option<Value>,
    ) -> Result<BaseContext, RenderError> {
        let base = issue_context(config, issue);
        let subject = templates.render(SUBJECT, &base)?;
        let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");

        // The preheader: what the inbox list shows after the subject.
        let mut preheader = String::new();
        for d in issue.digests() {
            if preheader.chars().count() > 120 {
                break;
            }
            if !preheader.is_empty() {
                preheader.push_str(" · ");
            }
            preheader.push_str(&d.title);
        }

        let ctx = context! {
            subject => subject.clone(),
            preheader,
            unsubscribe_url => Value::from_safe_string(UNSUBSCRIBE_URL.into()),
            preferences_url => Value::from_safe_string(PREFERENCES_URL.into()),
            selection,
            subscriber_email => Value::from_safe_string(SUBSCRIBER_EMAIL.into()),
            ..base
        };
        Ok(BaseContext { subject, ctx })
    }

    /// The full context at the step `shortened`: `days`, `shortened`, `omitted`, `toc`.
    fn with(&self, config: &Config, issue: &Issue, shortened: Shortening) -> Value {
        let total = issue.digest_count();
        let (cards, listed) = (shortened.cards(total), shortened.listed(total));
        let cut = shortened != Shortening::Whole;
        let details = matches!(shortened, Shortening::Whole | Shortening::Summaries);
        let mut index = 0;
        let mut days = Vec::new();
        for day in &issue.days {
            let mut digests = Vec::new();
            for d in &day.digests {
                let i = index;
                index += 1;
                if i >= listed {
                    break;
                }
                let web = urls::digest(&config.site, &issue.id, &d.id);
                let digest = Value::from(Serde(d));
                digests.push(if i < cards {
                    let excerpt = if cut { markdown::excerpt(&d.summary, SUMMARY_BYTES) } else { None };
                    context! { card => true, cut => excerpt.is_some(), summary => excerpt.unwrap_or_else(|| d.summary.clone()), details, web, ..digest }
                } else {
                    context! { card => false, line => markdown::first_line(&d.summary, LINE_CHARS), source => source_of(&d.link), web, ..digest }
                });
            }
            if !digests.is_empty() {
                days.push(context! { label => day.label.clone(), date => day.date.to_string(), digests });
            }
        }
        context! {
            days,
            shortened => shortened.to_reader(total),
            omitted => total - listed,
            toc => total > 1 && matches!(shortened, Shortening::Whole | Shortening::Summaries | Shortening::Details),
            ..self.ctx.clone()
        }
    }
}

/// Where a link leads, for a reader: its host without `www.`.
fn source_of(link: &str) -> String {
    let host = url::Url::parse(link).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
    host.strip_prefix("www.").map(str::to_owned).unwrap_or(host)
}

/// MJML to HTML with mrml; a parse error quotes the offending line of the generated MJML.
pub(super) fn compile_mjml(mjml: &str) -> Result<String, String> {
    use mrml::prelude::parser::Error as E;
    let parsed = mrml::parse(mjml).map_err(|e| {
        let at = match &e {
            E::UnexpectedElement { position, .. }
            | E::UnexpectedToken { position, .. }
            | E::MissingAttribute { position, .. }
            | E::InvalidAttribute { position, .. }
            | E::InvalidFormat { position, .. } => Some(position.start),
            _ => None,
        };
        match at {
            Some(at) => {
                let line_no = mjml[..at.min(mjml.len())].matches('\n').count() + 1;
                let line = mjml.lines().nth(line_no - 1).unwrap_or("").trim();
                let line: String = line.chars().take(160).collect();
                format!("{e} (line {line_no} of the generated MJML: `{line}`)")
            }
            None => e.to_string(),
        }
    })?;
    let opts = mrml::prelude::render::RenderOptions { disable_comments: true, ..Default::default() };
    parsed.element.render(&opts).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::testing;
    use scraper::{Html, Selector};

    fn email() -> EmailBody {
        let config = testing::config();
        let templates = Templates::builtin(&config.email.subject).unwrap();
        render_email(&config, &templates, &testing::issues()[0]).unwrap()
    }

    /// A reader's edition holds the digests of their themes only, in the same layout, says so
    /// with a link to the whole issue and to the preferences page; an issue with nothing of their
    /// themes has no edition for them.
    #[test]
    fn an_edition_for_some_themes_holds_only_their_digests_and_says_so() {
        let config = testing::config();
        let templates = Templates::builtin(&config.email.subject).unwrap();
        let mut issue = testing::issues().remove(0);
        let titles: Vec<String> = issue.digests().map(|d| d.title.clone()).collect();
        assert_eq!(titles.len(), 2, "{titles:?}");
        issue.days.iter_mut().flat_map(|d| d.digests.iter_mut()).enumerate().for_each(|(i, d)| {
            d.themes = vec![if i == 0 { "Energy Transition".into() } else { "public health".into() }];
        });
        let choice = ThemeChoice::parse_list("energy transition; trust and safety").unwrap().unwrap();
        let e = render_email_for(&config, &templates, &issue, &choice).unwrap().unwrap();
        let (html, text) = e.fill("https://u.example/unsub", "https://u.example/prefs", "a@b.example");
        let doc = Html::parse_document(&html);
        let h3: Vec<String> = doc
            .select(&Selector::parse("h3").unwrap())
            .map(|h| h.text().collect::<String>().trim().to_string())
            .collect();
        assert_eq!(h3, [titles[0].clone()], "only the digest of a followed theme");
        assert!(text.contains(&titles[0]) && !text.contains(&titles[1]));
        let said = "Only the themes you follow: energy transition, trust and safety (1 of the issue's 2 digests).";
        assert!(html.contains(said), "{html}");
        assert!(text.replace('\n', " ").contains(said), "{text}");
        assert_eq!(html.matches("https://u.example/prefs").count(), 2, "the line and the footer link the preferences");
        assert!(text.contains("https://u.example/prefs"));
        // The whole email has no such line.
        let whole = render_email(&config, &templates, &issue).unwrap();
        assert!(!whole.html.contains("Only the themes you follow"));
        let none = ThemeChoice::parse_list("decentralization").unwrap().unwrap();
        assert_eq!(render_email_for(&config, &templates, &issue, &none).unwrap(), None);
    }

    #[test]
    fn subject_is_one_line_from_the_config_template() {
        assert_eq!(email().subject, "Signals Weekly #1: 17–23 July 2023");
        let config = testing::config();
        let templates = Templates::builtin("{{ site.title }}\r\n#{{ issue.number }}\n").unwrap();
        let e = render_email(&config, &templates, &testing::issues()[0]).unwrap();
        assert_eq!(e.subject, "Signals Weekly #1");
    }

    #[test]
    fn every_title_once_escaped_and_every_link_absolute() {
        let e = email();
        let (html, text) = e.fill(
            "https://signals.example.org/unsubscribe?token=a&b",
            "https://signals.example.org/preferences/p",
            "ada@example.org",
        );
        let doc = Html::parse_document(&html);
        let a = Selector::parse("a").unwrap();
        for title in [
            "The Evolution of \"Open Source\" in AI Models",
            "Tags like <script>alert('x')</script> & other \"markup\"",
        ] {
            let n = doc.select(&a).filter(|el| el.text().collect::<String>() == title).count();
            assert_eq!(n, 1, "{title} appears {n} times as a link");
        }
        assert_eq!(doc.select(&Selector::parse("script").unwrap()).count(), 0);
        assert!(html.contains("&lt;script&gt;alert("));
        for el in doc.select(&a) {
            let href = el.value().attr("href").unwrap();
            assert!(
                href.starts_with("https://") || href.starts_with("http://") || href.starts_with("mailto:"),
                "{href}"
            );
        }
        let unsub: Vec<_> = doc.select(&a).filter(|el| el.text().collect::<String>() == "Unsubscribe").collect();
        assert_eq!(unsub.len(), 1);
        assert_eq!(unsub[0].value().attr("href"), Some("https://signals.example.org/unsubscribe?token=a&b"));
        assert!(html.contains("ada@example.org") && !html.contains("%%"));
        assert!(text.contains("Unsubscribe with one click:\nhttps://signals.example.org/unsubscribe?token=a&b\n"));
        assert!(text.contains("ada@example.org") && !text.contains("%%"));
        assert!(!e.too_large());
    }

    #[test]
    fn content_cannot_inject_a_placeholder() {
        let config = testing::config();
        let templates = Templates::builtin(&config.email.subject).unwrap();
        let e = render_email(&config, &templates, &testing::issues()[1]).unwrap();
        // Only the template's own placeholders: one unsubscribe link in each part.
        assert_eq!(e.html.matches(UNSUBSCRIBE_URL).count(), 1, "{}", e.html);
        assert_eq!(e.text.matches(UNSUBSCRIBE_URL).count(), 1);
        assert_eq!(e.text.matches(SUBSCRIBER_EMAIL).count(), 1);
        let (html, text) = e.fill("https://u", "https://p", "a@b");
        assert!(text.contains("Sneaky %\u{200b}%\u{200b}UNSUBSCRIBE_URL"));
        let doc = Html::parse_document(&html);
        assert!(
            doc.root_element()
                .text()
                .collect::<String>()
                .contains("Sneaky %%UNSUBSCRIBE_URL%% and %%SUBSCRIBER_EMAIL%%")
        );
    }

    /// A week of `n` digests with long summaries, and a config whose budget is `kb`.
    fn heavy(n: usize, kb: usize) -> (Config, Issue) {
        let config = Config::parse(
            &format!("[site]\nbase_url = \"https://signals.example.org\"\n[schedule]\ntimezone = \"UTC\"\n[email]\nmax_html_kb = {kb}\n"),
            std::path::Path::new("/srv/news/publish.toml"),
        )
        .unwrap();
        let digests = (0..n)
            .map(|i| {
                let mut d =
                    testing::digest(&format!("{i:03}_{:016x}.txt", i + 1), "2023-07-18", &format!("Digest number {i}"));
                d.summary =
                    (1..=16).map(|k| format!("Sentence {k} of digest {i} says something worth a read. ")).collect();
                d
            })
            .collect();
        let rule = crate::issue::WeekRule { starts: chrono::Weekday::Mon, timezone: chrono_tz::UTC };
        let issue = crate::issue::group_into_issues(digests, &rule, &Default::default()).remove(0);
        (config, issue)
    }

    #[test]
    fn a_heavy_week_steps_down_until_it_fits_and_says_so() {
        let mut seen = Vec::new();
        for n in [2, 8, 12, 18, 40, 400] {
            let (config, issue) = heavy(n, 20);
            let templates = Templates::builtin(&config.email.subject).unwrap();
            let e = render_email(&config, &templates, &issue).unwrap();
            let (html, text) = e.fill(
                &format!("https://signals.example.org/unsubscribe/1.{}", "a".repeat(64)),
                &format!("https://signals.example.org/preferences/1.{}", "a".repeat(64)),
                "a.reader@example.org",
            );
            assert!(html.len() <= 20 * 1024, "{n} digests: {} bytes at {:?}", html.len(), e.shortened);
            assert!(html.contains("Unsubscribe</a>") && text.contains("Unsubscribe with one click:"));
            let doc = Html::parse_document(&html);
            let count = |css: &str| doc.select(&Selector::parse(css).unwrap()).count();
            let continue_links: Vec<String> = doc
                .select(&Selector::parse("a").unwrap())
                .filter(|a| a.text().collect::<String>() == "Continue reading on the web")
                .map(|a| a.value().attr("href").unwrap().to_string())
                .collect();
            match e.shortened {
                Shortening::Whole => {
                    assert!(continue_links.is_empty() && count("table.sig") == n && !html.contains("busy week"));
                    assert!(html.contains("Sentence 16 of digest 0 says"));
                }
                Shortening::Summaries | Shortening::Details => {
                    // Every summary is cut, at a sentence, and links to its card on the web page.
                    assert_eq!(continue_links.len(), n, "{:?}", e.shortened);
                    assert_eq!(continue_links[1], "https://signals.example.org/issues/2023-07-17/#d-0000000000000002");
                    assert!(
                        !html.contains("Sentence 16 of")
                            && html.contains("Sentence 6 of digest 0 says something worth a read.</p>")
                    );
                    assert_eq!(count("table.sig"), if e.shortened == Shortening::Summaries { n } else { 0 });
                    assert!(html.contains("A busy week: long summaries are shortened"));
                    let continued = text.replace("\n  https://", " https://");
                    assert_eq!(
                        continued
                            .matches("Continue reading on the web: https://signals.example.org/issues/2023-07-17/#d-")
                            .count(),
                        n
                    );
                }
                Shortening::Lines { cards } => {
                    assert!(cards < n);
                    assert_eq!(continue_links.len(), cards);
                    assert_eq!(count("p.d"), n - cards, "one-line entries");
                    assert!(html.contains(&format!("the last {} digests are listed in brief", n - cards)));
                    assert!(text.contains("(example.org) Sentence 1 of digest"));
                }
                Shortening::Listed { listed } => {
                    assert!(listed < n && continue_links.is_empty());
                    assert_eq!(count("p.d"), listed);
                    assert!(html.contains(&format!("And {} more digests this week", n - listed)));
                    assert!(html.contains(&format!("this email lists {listed} of the {n} digests")));
                }
            }
            for line in text.lines() {
                assert!(line.chars().count() <= 72 || !line.trim().contains(' '), "{n} digests: a long line: {line}");
            }
            seen.push(std::mem::discriminant(&e.shortened));
        }
        seen.dedup();
        assert_eq!(seen.len(), 5, "every step was taken by one of the weeks");
    }

    #[test]
    fn a_template_that_ignores_the_steps_is_sent_whole_and_not_said_to_be_shortened() {
        let (config, issue) = heavy(40, 20);
        let own = "<mjml><mj-body><mj-section><mj-column><mj-text>{% for day in issue.days %}{% for d in day.digests %}<p>{{ d.summary }}</p>{% endfor %}{% endfor %}<a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></mj-text></mj-column></mj-section></mj-body></mjml>";
        let files = vec![crate::render::TemplateFile {
            name: "email.mjml".into(),
            path: "/srv/news/templates/email.mjml".into(),
            source: own.into(),
        }];
        let templates = Templates::new(&config.email.subject, files).unwrap();
        let e = render_email(&config, &templates, &issue).unwrap();
        assert_eq!(e.shortened, Shortening::Whole);
        assert!(e.html.len() > 20 * 1024 && e.html.contains("Sentence 16 of digest 39"));
    }

    #[test]
    fn the_top_of_the_email_has_the_issue_a_browser_link_and_the_list() {
        let e = email();
        assert_eq!(e.shortened, Shortening::Whole);
        let doc = Html::parse_document(&e.html);
        let top = doc.select(&Selector::parse("a").unwrap()).next().unwrap();
        assert_eq!(top.text().collect::<String>(), "View this issue in your browser");
        assert_eq!(top.value().attr("href"), Some("https://signals.example.org/issues/2023-07-17/"));
        let text = doc.root_element().text().collect::<String>();
        let list = text.find("In this issue").expect("an in-this-issue list");
        let first_card = text.find("A summary with").unwrap();
        assert!(list < first_card && text[list..first_card].contains("Monday 17 July 2023"));
        assert!(text.contains("Issue #1 · 17–23 July 2023 · 2 digests"));
        // Hidden without white-on-white text (which spam filters score).
        for el in doc.select(&Selector::parse("[style]").unwrap()) {
            for decl in el.value().attr("style").unwrap().split(';') {
                let (property, value) = decl.split_once(':').unwrap_or((decl, ""));
                let value = value.trim().to_ascii_lowercase();
                assert!(
                    property.trim() != "color" || !["#ffffff", "#fff", "white"].contains(&value.as_str()),
                    "white text: {}",
                    el.html()
                );
            }
        }
        // Row headers, and tags that read apart in a text-only client.
        assert_eq!(doc.select(&Selector::parse("th[scope=row]").unwrap()).count(), 4);
        assert!(text.contains("Themes: evolution of open source.") && text.contains("Keywords: open source, <kw>."));
        assert!(e.html.contains("prefers-color-scheme: dark") && e.html.contains("[data-ogsc]"));
    }

    #[test]
    fn the_editors_note_comes_first() {
        let config = testing::config();
        let templates = Templates::builtin(&config.email.subject).unwrap();
        let mut issue = testing::issues().remove(0);
        issue.note = Some("Welcome to *this* week. <script>x</script>".into());
        let e = render_email(&config, &templates, &issue).unwrap();
        assert!(e.html.contains("<p>Welcome to <em>this</em> week. &lt;script&gt;x&lt;/script&gt;</p>"), "{}", e.html);
        assert!(e.html.find("Welcome to").unwrap() < e.html.find("In this issue").unwrap());
        assert!(e.text.contains("\nWelcome to this week. <script>x</script>\n"));
    }

    #[test]
    fn text_part_snapshot() {
        insta::assert_snapshot!(email().text);
    }

    #[test]
    fn a_template_without_unsubscribe_link_is_refused() {
        let files = vec![crate::render::TemplateFile {
            name: "email.txt".into(),
            path: "/srv/news/templates/email.txt".into(),
            source: "{{ issue.label }}\n".into(),
        }];
        let config = testing::config();
        let templates = Templates::new(&config.email.subject, files).unwrap();
        let err = render_email(&config, &templates, &testing::issues()[0]).unwrap_err().to_string();
        assert!(err.starts_with("/srv/news/templates/email.txt: the unsubscribe link is missing"), "{err}");
    }

    #[test]
    fn template_errors_name_the_file_and_line() {
        let files = vec![crate::render::TemplateFile {
            name: "email.mjml".into(),
            path: "/srv/news/templates/email.mjml".into(),
            source: "<mjml>\n<mj-body>\n{% for x in %}\n</mj-body></mjml>".into(),
        }];
        let err = Templates::new("s", files).unwrap_err().to_string();
        assert!(err.starts_with("/srv/news/templates/email.mjml:3: "), "{err}");
        let err = Templates::new("{{ site.title", vec![]).unwrap_err().to_string();
        assert!(err.starts_with("[email] subject:1: "), "{err}");
    }
}
