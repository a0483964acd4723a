//! `gazette run`: the scheduler. Each round resumes any unfinished send, then asks `schedule::decide`
//! what is due at that moment and builds and sends it. `--once` does one round and exits; without it
//! the process sleeps until the next fire time, round after round, until SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};

use crate::config::Config;
use crate::deliver::{self, PreparedEmail, StopFlag, Transport};
use crate::schedule::{self, Decision};
use crate::store::{Store, ledger};

const LAST_ROUND: &str = "scheduler.last_round";

pub fn run(config: &Config, once: bool, now: Option<DateTime<FixedOffset>>) -> anyhow::Result<ExitCode> {
    crate::cli::runtime()?.block_on(async {
        let store = Store::open_for_sending(&config.paths.database).await?;
        let transport = Transport::from_config(config)?;
        let stop = StopFlag::default();
        stop.on_signals();
        let rule = super::week_rule(config);
        let mut at = now.map(|t| t.with_timezone(&Utc)).unwrap_or_else(Utc::now);
        tracing::info!(
            "schedule `{}` in {}, weeks starting on {}; sending through {}",
            config.schedule.cron_text,
            config.schedule.timezone,
            config.schedule.week_starts,
            transport.describe()
        );
        loop {
            let ok = round(config, &store, &transport, &stop, at).await?;
            let Some((next, week)) = schedule::next_fire(&config.schedule.cron, &rule, if once { at } else { Utc::now() }) else {
                tracing::warn!("`{}` never fires again; nothing more to schedule", config.schedule.cron_text);
                return Ok(ExitCode::SUCCESS);
            };
            tracing::info!(
                "next round at {} ({}), for the issue of the week of {week}",
                next.with_timezone(&config.schedule.timezone).to_rfc3339(),
                config.schedule.timezone
            );
            if once {
                return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) });
            }
            // Sleep in short steps on the wall clock, so a clock change or a suspend is noticed.
            while Utc::now() < next {
                if stop.is_stopped() {
                    tracing::info!("stopped");
                    return Ok(ExitCode::SUCCESS);
                }
                let left = (next - Utc::now()).to_std().unwrap_or_default();
                tokio::time::sleep(left.min(Duration::from_secs(30))).await;
            }
            at = Utc::now();
        }
    })
}

/// One round at `now`. Returns false when something due could not be sent (and will be retried).
async fn round(config: &Config, store: &Store, transport: &Transport, stop: &StopFlag, now: DateTime<Utc>) -> anyhow::Result<bool> {
    let pool = store.pool();
    let rule = super::week_rule(config);
    let pinned = ledger::pinned_numbers(pool).await?;
    let archive = super::load_archive(config, &pinned)?;
    let mut ok = true;

    // An unfinished send (the process died or was stopped mid-send) is finished first.
    for issue_id in ledger::unfinished_sends(pool).await? {
        let Some(issue) = archive.issues.iter().find(|i| i.id == issue_id) else {
            tracing::error!("the send of issue {issue_id} is unfinished but its digests are gone; restore them or run `gazette status --week {issue_id}`");
            ok = false;
            continue;
        };
        tracing::info!("resuming the unfinished send of issue #{} ({})", issue.number, issue.label);
        ok &= send(config, store, transport, stop, &archive, issue).await?;
    }

    let last_round = store.setting(LAST_ROUND).await?.and_then(|s| DateTime::parse_from_rfc3339(&s).ok()).map(|t| t.with_timezone(&Utc));
    let started: std::collections::HashSet<String> = ledger::pinned_numbers(pool).await?.into_keys().collect();
    let decisions = schedule::decide(&config.schedule.cron, &rule, now, last_round, config.schedule.max_lateness, |week| {
        started.contains(&week.format("%Y-%m-%d").to_string())
    });
    if decisions.is_empty() {
        tracing::info!("nothing is due at {now}");
    }
    let local = |t: DateTime<Utc>| t.with_timezone(&config.schedule.timezone).to_rfc3339();
    for decision in decisions {
        match decision {
            Decision::AlreadySent { week } => tracing::info!("the issue of the week of {week} was already sent; nothing to do"),
            Decision::Missed { week, fire } => tracing::warn!(
                "the issue of the week of {week} was due at {} and is more than {} late; not sending it by surprise. \
                 Send it with `gazette send --week {week}` if it should still go out",
                local(fire),
                humantime::format_duration(config.schedule.max_lateness)
            ),
            Decision::Send { week, fire } => {
                let Some(issue) = archive.issues.iter().find(|i| i.start == week) else {
                    tracing::info!("no digests in the week of {week} (due at {}); skipping it", local(fire));
                    continue;
                };
                let blocking: Vec<String> = archive
                    .problems
                    .iter()
                    .filter(|p| p.date.is_none_or(|d| rule.week_start(d) == week))
                    .map(ToString::to_string)
                    .collect();
                if !blocking.is_empty() {
                    tracing::error!(
                        "not sending issue #{} ({}): fix these digests and the next round sends it:\n{}",
                        issue.number,
                        issue.label,
                        blocking.join("\n")
                    );
                    ok = false;
                    continue;
                }
                tracing::info!("issue #{} ({}) is due (fire time {}): building and sending", issue.number, issue.label, local(fire));
                let site = super::build::write_site(config, &archive.issues, None)?;
                let out = &config.paths.out;
                tracing::info!("archive: {} ({} files); feeds: {}, {}, {}", out.join("index.html").display(), site.total,
                    out.join("rss.xml").display(), out.join("atom.xml").display(), out.join("feed.json").display());
                ok &= send(config, store, transport, stop, &archive, issue).await?;
            }
        }
    }
    store.set_setting(LAST_ROUND, &now.to_rfc3339()).await?;
    Ok(ok)
}

async fn send(
    config: &Config,
    store: &Store,
    transport: &Transport,
    stop: &StopFlag,
    _archive: &super::Archive,
    issue: &crate::issue::Issue,
) -> anyhow::Result<bool> {
    let templates = super::load_templates(config)?;
    let body = crate::render::render_email(config, &templates, issue).map_err(super::template_error)?;
    let email = Arc::new(PreparedEmail::new(config, &body.subject, &body.html, &body.text, false, std::time::SystemTime::now())?);
    match deliver::send_issue(store, config, &issue.id, issue.number, email, transport, stop).await {
        Ok(report) => {
            let c = &report.counts;
            tracing::info!(
                "issue #{} ({}): {} sent now via {}; in all {c}",
                issue.number,
                issue.label,
                report.sent_now,
                transport.describe()
            );
            Ok(c.pending == 0 && !report.interrupted)
        }
        Err(e) => {
            tracing::error!("sending issue #{} failed: {e:#}", issue.number);
            Ok(false)
        }
    }
}
