//! `gazette preview`: one week's email, filled in for a sample subscriber, written where an
//! editor can open it in a browser.

use std::process::ExitCode;

use crate::cli::UsageError;
use crate::config::Config;
use crate::issue::WeekSpec;
use crate::render;

/// The sample subscriber of previews.
pub const SAMPLE_ADDRESS: &str = "reader@example.org";

pub fn run(config: &Config, week: Option<WeekSpec>) -> anyhow::Result<ExitCode> {
    let archive = super::load_archive(config, &super::pinned_numbers(config)?)?;
    let templates = super::load_templates(config)?;
    let issue = match week {
        Some(w) => super::select_week(config, &archive.issues, w)?,
        None => {
            let rule = super::week_rule(config);
            let day = rule.last_complete_week(chrono::Utc::now());
            match crate::issue::find_week(&archive.issues, &rule, day) {
                Some(i) => i,
                None => {
                    let latest = archive.issues.last().map(|i| format!("; the latest issue is #{} {}: --week {}", i.number, i.label, i.id));
                    return Err(UsageError(format!(
                        "the last complete week ({}) has no digests, so there is nothing to preview; pass --week DATE{}",
                        crate::issue::week_label(day, day + chrono::Duration::days(6)),
                        latest.unwrap_or_default()
                    ))
                    .into());
                }
            }
        }
    };

    let email = render::render_email(config, &templates, issue).map_err(super::template_error)?;
    if email.too_large() {
        tracing::warn!(
            "issue {issue}: its email HTML is {} KB; Gmail clips messages over about 100 KB and hides the unsubscribe link",
            email.html.len() / 1024
        );
    }
    let unsubscribe = format!("{}/unsubscribe?token=preview", config.site.base_url);
    let (html, text) = email.fill(&unsubscribe, SAMPLE_ADDRESS);
    let dir = config.paths.out.join("preview");
    let html_path = dir.join(format!("{}.html", issue.id));
    let text_path = dir.join(format!("{}.txt", issue.id));
    super::write_if_changed(&html_path, html.as_bytes())?;
    super::write_if_changed(&text_path, text.as_bytes())?;
    println!("Subject: {}", email.subject);
    println!("{}", html_path.display());
    println!("{}", text_path.display());
    Ok(ExitCode::SUCCESS)
}
