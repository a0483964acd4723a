//! The welcome a reader receives once, when they confirm: what the newsletter is, when it comes,
//! the link to their preferences and, when an issue is published, the latest one's contents.
//! Compiled from MJML as an issue's email is, with the same per-reader placeholders and the same
//! size budget (`[email] max_html_kb`), which drops the contents list rather than fail.

use minijinja::context;
use minijinja::value::{Serde, Value};

use super::email::{compile_mjml, filled_size};
use super::{EmailBody, PREFERENCES_URL, RenderError, SUBSCRIBER_EMAIL, Shortening, Templates, UNSUBSCRIBE_URL};
use super::{feeds_value, markdown};
use crate::config::Config;
use crate::digest::Listed;
use crate::issue::Issue;
use crate::urls;

/// Where `[email] welcome_subject` is named in errors.
const SUBJECT_KEY: &str = "[email] welcome_subject";

/// The welcome email, common to every reader but for the placeholders (`EmailBody::fill`).
/// `latest` is the latest published issue: its titles, each linking to its place on the web page,
/// are listed when the email fits `[email] max_html_kb` with them; otherwise the email goes without
/// them and `shortened` says so (`Shortening::Listed { listed: 0 }`).
pub fn render_welcome<D: Listed>(
    config: &Config,
    templates: &Templates,
    latest: Option<&Issue<D>>,
) -> Result<EmailBody, RenderError> {
    let base = context! {
        site => Value::from(Serde(&config.site)),
        feeds => feeds_value(config),
        archive_url => urls::home(&config.site),
    };
    let subject = templates.render_text(SUBJECT_KEY, &config.email.welcome_subject, &base)?;
    let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    let ctx = context! {
        subject => subject.clone(),
        preheader => markdown::first_line(&config.site.description, 140),
        schedule => crate::schedule::in_words(&config.schedule.cron, config.schedule.timezone),
        unsubscribe_url => Value::from_safe_string(UNSUBSCRIBE_URL.into()),
        preferences_url => Value::from_safe_string(PREFERENCES_URL.into()),
        subscriber_email => Value::from_safe_string(SUBSCRIBER_EMAIL.into()),
        ..base
    };
    let with = |latest: Option<Value>| context! { latest, ..ctx.clone() };
    let compile = |ctx: &Value| {
        let mjml = templates.render("welcome.mjml", ctx)?;
        compile_mjml(&mjml).map_err(|message| RenderError::Mjml { file: templates.origin("welcome.mjml"), message })
    };
    let listed = latest.map(|issue| contents(config, issue));
    let mut ctx = with(listed.clone());
    let mut html = compile(&ctx)?;
    let mut shortened = Shortening::Whole;
    if listed.is_some() && filled_size(&html, config) > config.email.max_html_bytes {
        ctx = with(None);
        html = compile(&ctx)?;
        shortened = Shortening::Listed { listed: 0 };
    }
    let text = templates.render("welcome.txt", &ctx)?;
    for (part, name) in [(&html, "welcome.mjml"), (&text, "welcome.txt")] {
        if !part.contains(UNSUBSCRIBE_URL) {
            return Err(RenderError::NoUnsubscribe { file: templates.origin(name) });
        }
    }
    Ok(EmailBody { subject, html, text, shortened })
}

/// The template's `latest`: the issue's number, label and address, and its digests' titles by
/// day, each with the address of its place on the issue's page.
fn contents<D: Listed>(config: &Config, issue: &Issue<D>) -> Value {
    let days: Vec<Value> = issue
        .days
        .iter()
        .map(|day| {
            let digests: Vec<Value> = day
                .digests
                .iter()
                .map(|d| context! { title => d.title(), url => urls::digest(&config.site, &issue.id, d.id()) })
                .collect();
            context! { label => day.label.clone(), digests }
        })
        .collect();
    context! {
        number => issue.number,
        label => issue.label.clone(),
        url => urls::issue(&config.site, &issue.id),
        count => issue.digest_count(),
        days,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{TemplateFile, testing};
    use scraper::{Html, Selector};

    fn config(extra: &str) -> Config {
        Config::parse(
            &format!(
                "[site]\nbase_url = \"https://signals.example.org\"\ndescription = \"Signals of *change*, weekly.\"\n[schedule]\ntimezone = \"UTC\"\n{extra}"
            ),
            std::path::Path::new("/srv/news/publish.toml"),
        )
        .unwrap()
    }

    fn links(html: &str) -> Vec<(String, String)> {
        let doc = Html::parse_document(html);
        doc.select(&Selector::parse("a").unwrap())
            .map(|a| (a.text().collect::<String>(), a.value().attr("href").unwrap_or_default().to_string()))
            .collect()
    }

    #[test]
    fn the_welcome_says_what_when_where_and_lists_the_latest_issue() {
        let config = config("");
        let templates = Templates::builtin(&config.email.subject).unwrap();
        let issue = &testing::issues()[0];
        let e = render_welcome(&config, &templates, Some(issue)).unwrap();
        assert_eq!(e.subject, "Welcome to Signals Weekly");
        assert_eq!(e.shortened, Shortening::Whole);
        // One of each per-reader link in each part, the required one included.
        for part in [&e.html, &e.text] {
            assert_eq!(part.matches(UNSUBSCRIBE_URL).count(), 1, "{part}");
            assert!(part.contains(PREFERENCES_URL) && part.contains(SUBSCRIBER_EMAIL));
        }
        let (html, text) = e.fill(
            "https://signals.example.org/unsubscribe/7.abc",
            "https://signals.example.org/preferences/7.def",
            "ada@example.org",
        );
        assert!(!html.contains("%%") && !text.contains("%%"));
        let links = links(&html);
        let to = |text: &str| links.iter().filter(|(t, _)| t == text).map(|(_, h)| h.as_str()).collect::<Vec<_>>();
        assert_eq!(to("Unsubscribe"), ["https://signals.example.org/unsubscribe/7.abc"]);
        assert_eq!(to("your preferences page"), ["https://signals.example.org/preferences/7.def"]);
        assert_eq!(to("the archive"), ["https://signals.example.org/"]);
        // Each title of the issue, escaped once, linking to its place on the issue's page.
        assert_eq!(
            to("The Evolution of \"Open Source\" in AI Models"),
            ["https://signals.example.org/issues/2023-07-17/#d-aaaa"]
        );
        assert_eq!(
            to("Tags like <script>alert('x')</script> & other \"markup\""),
            ["https://signals.example.org/issues/2023-07-17/#d-bbbb"]
        );
        assert_eq!(to("Issue #1 · 17–23 July 2023"), ["https://signals.example.org/issues/2023-07-17/"]);
        assert!(!html.contains("<script>alert"));
        let words = Html::parse_document(&html).root_element().text().collect::<String>();
        assert!(words.contains("Signals of *change*, weekly."), "the site's description, as written");
        assert!(words.contains("comes every Monday at 08:00 (UTC time), to ada@example.org"), "{words}");
        assert!(e.html.contains("prefers-color-scheme: dark") && e.html.contains("[data-ogsc]"), "styled as an issue");
        // The text part says the same, its lines within 72 columns but for URLs.
        assert!(
            text.contains("A new issue comes every Monday at 08:00 (UTC time), to this address:\nada@example.org\n")
        );
        assert!(
            text.contains(
                "== The latest issue: #1, 17–23 July 2023 ==\nhttps://signals.example.org/issues/2023-07-17/\n"
            )
        );
        assert!(text.contains("    - The Evolution of \"Open Source\" in AI Models\n      https://signals.example.org/issues/2023-07-17/#d-aaaa\n"));
        assert!(text.contains("Unsubscribe with one click:\nhttps://signals.example.org/unsubscribe/7.abc"));
        for line in text.lines() {
            assert!(line.chars().count() <= 72 || !line.trim().contains(' '), "a long line: {line}");
        }
    }

    #[test]
    fn without_a_published_issue_there_is_no_contents_list() {
        let config = config("");
        let templates = Templates::builtin(&config.email.subject).unwrap();
        let e = render_welcome::<crate::digest::Digest>(&config, &templates, None).unwrap();
        assert_eq!(e.shortened, Shortening::Whole);
        assert!(!e.html.contains("The latest issue") && !e.text.contains("The latest issue"));
        assert!(!links(&e.html).iter().any(|(_, h)| h.contains("/issues/")));
        assert!(e.html.contains(UNSUBSCRIBE_URL) && e.text.contains(PREFERENCES_URL));
    }

    #[test]
    fn a_contents_list_over_the_budget_is_left_out_and_the_welcome_still_goes() {
        let issue = |n: usize| {
            let digests = (0..n)
                .map(|i| {
                    testing::digest(
                        &format!("{i:03}_{:016x}.txt", i + 1),
                        "2023-07-18",
                        &format!("A rather long digest title, number {i}, that takes room in the list"),
                    )
                })
                .collect();
            let rule = crate::issue::WeekRule { starts: chrono::Weekday::Mon, timezone: chrono_tz::UTC };
            crate::issue::group_into_issues(digests, &rule, &Default::default()).remove(0)
        };
        let config = config("[email]\nmax_html_kb = 20\n");
        let templates = Templates::builtin(&config.email.subject).unwrap();
        // A short list fits.
        let e = render_welcome(&config, &templates, Some(&issue(5))).unwrap();
        assert_eq!(e.shortened, Shortening::Whole);
        assert_eq!(e.html.matches("that takes room in the list</a>").count(), 5);
        // A long one does not: the welcome goes without it, within the budget, and says nothing false.
        let e = render_welcome(&config, &templates, Some(&issue(400))).unwrap();
        assert_eq!(e.shortened, Shortening::Listed { listed: 0 });
        assert!(!e.html.contains("that takes room") && !e.text.contains("that takes room"));
        assert!(!e.html.contains("The latest issue"));
        assert!(filled_size(&e.html, &config) <= 20 * 1024, "{} bytes", e.html.len());
        assert!(e.html.contains(UNSUBSCRIBE_URL));
    }

    #[test]
    fn the_subject_comes_from_the_config_and_its_errors_name_the_key() {
        let config = config("[email]\nwelcome_subject = \"Hello from {{ site.title }}, {{ site.language }}\"\n");
        let templates = Templates::builtin(&config.email.subject).unwrap();
        let e = render_welcome::<crate::digest::Digest>(&config, &templates, None).unwrap();
        assert_eq!(e.subject, "Hello from Signals Weekly, en");
        let config = self::config("[email]\nwelcome_subject = \"Hello {{ site.title\"\n");
        let err = render_welcome::<crate::digest::Digest>(&config, &templates, None).unwrap_err().to_string();
        assert!(err.starts_with("[email] welcome_subject:1: "), "{err}");
    }

    #[test]
    fn a_template_of_the_project_replaces_the_built_in_and_must_carry_the_unsubscribe_link() {
        let config = config("");
        let file = |name: &str, source: &str| TemplateFile {
            name: name.into(),
            path: format!("/srv/news/templates/{name}").into(),
            source: source.into(),
        };
        let own = "<mjml><mj-body><mj-section><mj-column><mj-text>Hi from {{ site.title }}. <a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></mj-text></mj-column></mj-section></mj-body></mjml>";
        let templates = Templates::new(&config.email.subject, vec![file("welcome.mjml", own)]).unwrap();
        let e = render_welcome::<crate::digest::Digest>(&config, &templates, None).unwrap();
        assert!(e.html.contains("Hi from Signals Weekly.") && !e.html.contains("preferences"));

        let templates = Templates::new(&config.email.subject, vec![file("welcome.txt", "Welcome.\n")]).unwrap();
        let err = render_welcome::<crate::digest::Digest>(&config, &templates, None).unwrap_err().to_string();
        assert!(err.starts_with("/srv/news/templates/welcome.txt: the unsubscribe link is missing"), "{err}");

        let broken = "<mjml><mj-body>\n{% if %}\n</mj-body></mjml>";
        let err = Templates::new(&config.email.subject, vec![file("welcome.mjml", broken)]).unwrap_err().to_string();
        assert!(err.starts_with("/srv/news/templates/welcome.mjml:2: "), "{err}");
        let unclosed = "<mjml><mj-body><mj-section>{{ unsubscribe_url }}</mjml>";
        let templates = Templates::new(&config.email.subject, vec![file("welcome.mjml", unclosed)]).unwrap();
        let err = render_welcome::<crate::digest::Digest>(&config, &templates, None).unwrap_err().to_string();
        assert!(err.starts_with("/srv/news/templates/welcome.mjml: the MJML it produced does not compile"), "{err}");
    }
}
