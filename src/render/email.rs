//! The email of an issue: rendered and compiled from MJML once, with placeholders where each
//! subscriber's unsubscribe link and address go, so that sending to many people costs a few string
//! replacements per message instead of a template run and an MJML compile.

use minijinja::context;
use minijinja::value::Value;

use super::markdown::escaped;
use super::templates::SUBJECT;
use super::{RenderError, Templates, issue_context};
use crate::config::Config;
use crate::issue::Issue;

/// Stands for the subscriber's one-click unsubscribe URL until `EmailBody::fill`.
pub const UNSUBSCRIBE_URL: &str = "%%UNSUBSCRIBE_URL%%";
/// Stands for the subscriber's address until `EmailBody::fill`.
pub const SUBSCRIBER_EMAIL: &str = "%%SUBSCRIBER_EMAIL%%";
/// Gmail clips a message whose HTML is larger than about 102 KB, hiding the footer with the
/// unsubscribe link; warn above 100 KB.
pub const GMAIL_CLIP_BYTES: usize = 100 * 1024;

/// An issue's email, common to every subscriber. Content can never contain the placeholders:
/// every `%%` in it is escaped (HTML) or broken by a zero-width space (text) while rendering.
#[derive(Debug, Clone, PartialEq)]
pub struct EmailBody {
    /// One line: CR and LF never reach a header.
    pub subject: String,
    pub html: String,
    pub text: String,
}

impl EmailBody {
    /// Fills the per-subscriber placeholders; cheap (no template engine, no MJML).
    pub fn fill(&self, unsubscribe_url: &str, address: &str) -> (String, String) {
        let html = self.html.replace(UNSUBSCRIBE_URL, &escaped(unsubscribe_url)).replace(SUBSCRIBER_EMAIL, &escaped(address));
        let text = self.text.replace(UNSUBSCRIBE_URL, unsubscribe_url).replace(SUBSCRIBER_EMAIL, address);
        (html, text)
    }

    /// True when Gmail would clip the HTML (and hide the unsubscribe link in the footer).
    pub fn too_large(&self) -> bool {
        self.html.len() > GMAIL_CLIP_BYTES
    }
}

pub fn render_email(config: &Config, templates: &Templates, issue: &Issue) -> Result<EmailBody, RenderError> {
    render_parts(config, templates, issue, true)
}

/// The size of the issue's email HTML, without rendering the text part (for the size warnings).
pub fn email_html_size(config: &Config, templates: &Templates, issue: &Issue) -> Result<usize, RenderError> {
    render_parts(config, templates, issue, false).map(|e| e.html.len())
}

/// The MJML the email template produces for `issue` (before compiling), for the rendering benchmark
/// (`examples/render_bench.rs`), which compares mrml with the reference compiler on the same input.
#[doc(hidden)]
pub fn email_mjml(config: &Config, templates: &Templates, issue: &Issue) -> Result<String, RenderError> {
    let (_, ctx) = email_context(config, templates, issue)?;
    templates.render("email.mjml", &ctx)
}

/// MJML to HTML exactly as an issue's email is compiled, for the rendering benchmark.
#[doc(hidden)]
pub fn compile_email_mjml(mjml: &str) -> Result<String, String> {
    compile_mjml(mjml)
}

fn render_parts(config: &Config, templates: &Templates, issue: &Issue, with_text: bool) -> Result<EmailBody, RenderError> {
    let (subject, ctx) = email_context(config, templates, issue)?;
    let mjml = templates.render("email.mjml", &ctx)?;
    let html = compile_mjml(&mjml).map_err(|message| RenderError::Mjml { file: templates.origin("email.mjml"), message })?;
    let text = if with_text { templates.render("email.txt", &ctx)? } else { UNSUBSCRIBE_URL.to_string() };
    for (part, name) in [(&html, "email.mjml"), (&text, "email.txt")] {
        if !part.contains(UNSUBSCRIBE_URL) {
            return Err(RenderError::NoUnsubscribe { file: templates.origin(name) });
        }
    }
    Ok(EmailBody { subject, html, text })
}

/// The subject and what the email templates see.
fn email_context(config: &Config, templates: &Templates, issue: &Issue) -> Result<(String, Value), RenderError> {
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
        subscriber_email => Value::from_safe_string(SUBSCRIBER_EMAIL.into()),
        ..base
    };
    Ok((subject, ctx))
}

/// MJML to HTML with mrml; a parse error quotes the offending line of the generated MJML.
fn compile_mjml(mjml: &str) -> Result<String, String> {
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
        let (html, text) = e.fill("https://signals.example.org/unsubscribe?token=a&b", "ada@example.org");
        let doc = Html::parse_document(&html);
        let a = Selector::parse("a").unwrap();
        for title in ["The Evolution of \"Open Source\" in AI Models", "Tags like <script>alert('x')</script> & other \"markup\""] {
            let n = doc.select(&a).filter(|el| el.text().collect::<String>() == title).count();
            assert_eq!(n, 1, "{title} appears {n} times as a link");
        }
        assert_eq!(doc.select(&Selector::parse("script").unwrap()).count(), 0);
        assert!(html.contains("&lt;script&gt;alert("));
        for el in doc.select(&a) {
            let href = el.value().attr("href").unwrap();
            assert!(href.starts_with("https://") || href.starts_with("http://") || href.starts_with("mailto:"), "{href}");
        }
        let unsub: Vec<_> = doc.select(&a).filter(|el| el.text().collect::<String>() == "Unsubscribe").collect();
        assert_eq!(unsub.len(), 1);
        assert_eq!(unsub[0].value().attr("href"), Some("https://signals.example.org/unsubscribe?token=a&b"));
        assert!(html.contains("ada@example.org") && !html.contains("%%"));
        assert!(text.contains("Unsubscribe: https://signals.example.org/unsubscribe?token=a&b"));
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
        let (html, text) = e.fill("https://u", "a@b");
        assert!(text.contains("Sneaky %\u{200b}%\u{200b}UNSUBSCRIBE_URL"));
        let doc = Html::parse_document(&html);
        assert!(doc.root_element().text().collect::<String>().contains("Sneaky %%UNSUBSCRIBE_URL%% and %%SUBSCRIBER_EMAIL%%"));
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
