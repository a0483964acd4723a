//! `gazette send`: the week's issue to every active subscriber exactly once, or a test copy to
//! the editor, or a dry run that builds every message without connecting.

use std::process::ExitCode;
use std::sync::Arc;

use lettre::message::Mailbox;

use crate::cli::UsageError;
use crate::config::Config;
use crate::deliver::{self, PreparedEmail, StopFlag, Transport};
use crate::issue::WeekSpec;
use crate::render;
use crate::store::{Store, ledger};

pub fn run(config: &Config, week: Option<WeekSpec>, test: Vec<String>, dry_run: bool) -> anyhow::Result<ExitCode> {
    // Addresses are checked before anything else happens.
    let test_to = test_recipients(config, &test)?;
    crate::cli::runtime()?.block_on(async {
        let store = Store::open_for_sending(&config.paths.database).await?;
        let pinned = ledger::pinned_numbers(store.pool()).await?;
        let archive = super::load_archive(config, &pinned)?;
        super::refuse_problems(&archive)?;
        let issue = super::select_issue(config, &archive, week, chrono::Utc::now())?;
        let templates = super::load_templates(config)?;
        let body = render::render_email(config, &templates, issue).map_err(super::template_error)?;
        let transport = Transport::from_config(config)?;
        let now = std::time::SystemTime::now();

        if !test_to.is_empty() {
            let email = PreparedEmail::new(config, &body.subject, &body.html, &body.text, true, now)?;
            let results = deliver::send_test(&store, config, &email, &transport, &test_to).await?;
            let mut failed = 0;
            for (to, result) in &results {
                match result {
                    Ok(()) => println!("test copy of issue #{} ({}) sent to {to} via {}", issue.number, issue.label, transport.describe()),
                    Err(e) => {
                        failed += 1;
                        println!("test copy to {to} was not accepted: {e}");
                    }
                }
            }
            return Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) });
        }

        let email = Arc::new(PreparedEmail::new(config, &body.subject, &body.html, &body.text, false, now)?);
        if dry_run {
            let (count, bytes, sample) = deliver::dry_run(&store, config, &email).await?;
            println!("dry run: issue #{} ({}), subject \"{}\"", issue.number, issue.label, email.subject());
            println!("would send {count} messages ({} KB in all) via {}; nothing was sent", bytes / 1024, transport.describe());
            for address in &sample {
                println!("  {address}");
            }
            if count > sample.len() as u64 {
                println!("  ... and {} more", count - sample.len() as u64);
            }
            return Ok(ExitCode::SUCCESS);
        }

        let stop = StopFlag::default();
        stop.on_signals();
        let report = deliver::send_issue(&store, config, &issue.id, issue.number, email, &transport, &stop).await?;
        let c = &report.counts;
        if report.sent_now == 0 && c.is_finished() && !report.started_now {
            println!(
                "issue #{} ({}) was already sent: {} sent, {} failed, {} bounced, {} skipped; nothing to do",
                issue.number, issue.label, c.sent, c.failed, c.bounced, c.skipped
            );
            return Ok(ExitCode::SUCCESS);
        }
        println!("issue #{} ({}): {} messages sent now via {}; in all {c}", issue.number, issue.label, report.sent_now, transport.describe());
        if report.interrupted {
            println!("stopped before the end; run `gazette send --week {}` to resume", issue.id);
            return Ok(ExitCode::from(1));
        }
        if c.pending > 0 {
            println!(
                "{} deliveries are still pending after temporary errors; run `gazette send --week {}` again later (`gazette status` shows why)",
                c.pending, issue.id
            );
            return Ok(ExitCode::from(1));
        }
        if c.failed > 0 || c.bounced > 0 {
            println!("`gazette status --week {}` lists the failed and bounced addresses", issue.id);
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `--test` values as mailboxes: an empty value means `[email] editor`.
fn test_recipients(config: &Config, test: &[String]) -> anyhow::Result<Vec<Mailbox>> {
    test.iter()
        .map(|t| {
            if t.is_empty() {
                config.email.editor.clone().ok_or_else(|| {
                    UsageError(format!("--test without an address needs [email] editor in {}", config.describe_source())).into()
                })
            } else {
                t.parse::<Mailbox>().map_err(|e| UsageError(format!("--test {t}: not an email address ({e})")).into())
            }
        })
        .collect()
}
