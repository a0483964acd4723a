//! `gazette run`: the scheduler around `schedule::decide`. Each round reads `[bounces] mailbox`
//! (so that the addresses that failed since are not mailed) and `[dmarc] mailbox`, loads the
//! project afresh (digests change between rounds), publishes what is due and writes the archive
//! and feeds, finishes any send left unfinished, then sends the issue that is due, reading the
//! mailbox again after each send. Without `once` it sleeps until the next fire time, round after
//! round, until SIGTERM or Ctrl-C.

use std::time::Duration;

use chrono::{DateTime, Utc};

use anyhow::Context;

use crate::build_cache::CacheUse;
use crate::config::{BounceMailbox, Config};
use crate::deliver::{self, SendPlan, StopFlag, Transport};
use crate::issue::CatalogIssue;
use crate::issue_id::IssueId;
use crate::project::{BuildPlan, Project, Publish, Site};
use crate::reputation::Hold;
use crate::schedule::{self, Decision};
use crate::store::Store;
use crate::urls;

/// The setting that remembers when the last round ran.
const LAST_ROUND: &str = "scheduler.last_round";

/// Runs rounds from `now` (the clock when `None`). Returns false when something due could not be
/// sent in the last round (it is tried again in the next).
pub async fn run(config: &Config, once: bool, now: Option<DateTime<Utc>>) -> anyhow::Result<bool> {
    let store = Store::open_for_sending(&config.paths.database).await?;
    let transport = Transport::from_config(config)?;
    // Every round may send to readers: placeholders are refused before anything is published.
    crate::readiness::ready_for_readers(config)?;
    let stop = StopFlag::default();
    stop.on_signals();
    let rule = crate::project::week_rule(config);
    let mut at = now.unwrap_or_else(Utc::now);
    tracing::info!(
        "schedule `{}` in {}, weeks starting on {}; sending through {}",
        config.schedule.cron_text,
        config.schedule.timezone,
        config.schedule.week_starts,
        transport.describe()
    );
    loop {
        let ok = round(config, &store, &transport, &stop, at).await?;
        let Some((next, week)) = schedule::next_fire(&config.schedule.cron, &rule, if once { at } else { Utc::now() })
        else {
            tracing::warn!("`{}` never fires again; nothing more to schedule", config.schedule.cron_text);
            return Ok(ok);
        };
        tracing::info!(
            "next round at {} ({}), for the issue of the week of {week}",
            next.with_timezone(&config.schedule.timezone).to_rfc3339(),
            config.schedule.timezone
        );
        if once {
            store.close().await;
            return Ok(ok);
        }
        // Sleep in steps on the wall clock, so a clock change or a suspend is noticed; a signal
        // ends the sleep at once.
        while Utc::now() < next {
            let left = (next - Utc::now()).to_std().unwrap_or_default();
            tokio::select! {
                _ = stop.stopped() => {
                    tracing::info!("stopped");
                    store.close().await;
                    return Ok(true);
                }
                _ = tokio::time::sleep(left.min(Duration::from_secs(30))) => {}
            }
        }
        at = Utc::now();
    }
}

/// One round at `now`. Returns false when something due could not be sent.
pub async fn round(
    config: &Config,
    store: &Store,
    transport: &Transport,
    stop: &StopFlag,
    now: DateTime<Utc>,
) -> anyhow::Result<bool> {
    read_bounces(config, store).await;
    let mut project = Project::load_to_build(config.clone(), Some(store), now).await?;
    let local = |t: DateTime<Utc>| t.with_timezone(&config.schedule.timezone).to_rfc3339();
    let mut ok = true;

    // What is due is published, whether or not its send goes out this round.
    let publish = Some(Publish { store, by_hand: None });
    let site = project.build(BuildPlan { site: Site::Published, publish, only: None }).await?;
    for id in &site.published {
        let i = project.issue(id).expect("a published issue exists");
        tracing::info!("published issue #{} ({})", i.number, i.label);
    }
    if !project.problems.is_empty() {
        let list: Vec<String> = project.problems.iter().map(ToString::to_string).collect();
        tracing::error!(
            "{} digest(s) cannot be read and are left out; the sends of their weeks wait until they are fixed:\n{}",
            list.len(),
            list.join("\n")
        );
    }
    site.warn_email();
    let out = &config.paths.out;
    let [rss, atom, json] = urls::FEEDS.map(|f| out.join(f));
    tracing::info!(
        "archive: {} ({} files, {} changed); feeds: {}, {}, {}",
        out.join(urls::INDEX).display(),
        site.total,
        site.changed,
        rss.display(),
        atom.display(),
        json.display()
    );

    // An unfinished send (the process died or was stopped mid-send) is finished first.
    for issue_id in store.ledger().unfinished_sends().await? {
        let Some(issue) = project.issue(&issue_id).cloned() else {
            tracing::error!(
                "the send of issue {issue_id} is unfinished but that week has no digests any more; restore them to finish it \
                 (`gazette status --week {issue_id}` shows how far it got)"
            );
            ok = false;
            continue;
        };
        tracing::info!("resuming the unfinished send of issue #{} ({})", issue.number, issue.label);
        ok &= send(&project, store, transport, stop, &issue).await;
        read_bounces(config, store).await;
    }

    let decisions = decisions(config, &project, store, now).await?;
    let skipped = |id: &IssueId| project.publication(id).is_some_and(|p| p.skipped_at.is_some());
    if decisions.is_empty() {
        tracing::info!("nothing is due at {now}");
    }
    for decision in decisions {
        let week = match &decision {
            Decision::AlreadySent { week } | Decision::Missed { week, .. } | Decision::Send { week, .. } => *week,
        };
        let Some(issue) = project.issues().iter().find(|i| i.start == week).cloned() else {
            // Nothing to send, nothing to warn about.
            tracing::info!("the week of {week} has no digests; there is no issue to send for it");
            continue;
        };
        match decision {
            Decision::AlreadySent { .. } if skipped(&issue.id) => {
                tracing::info!("issue #{} ({}) was skipped (`gazette skip`); not sending it", issue.number, issue.label)
            }
            Decision::AlreadySent { .. } => {
                tracing::info!("issue #{} ({}) was already sent; nothing to do", issue.number, issue.label)
            }
            // Reminded of below, with every other issue that will not be sent on its own.
            Decision::Missed { .. } => {}
            Decision::Send { fire, .. } => {
                if let Err(e) = project.ready_to_send(&issue) {
                    tracing::error!("{e}\nthe next round sends it once they are fixed");
                    ok = false;
                    continue;
                }
                if let Some(why) = held(config, store, &issue).await? {
                    tracing::error!("{why}");
                    ok = false;
                    continue;
                }
                tracing::info!("issue #{} ({}) is due (fire time {}): sending", issue.number, issue.label, local(fire));
                ok &= send(&project, store, transport, stop, &issue).await;
                read_bounces(config, store).await;
            }
        }
    }
    remind_of_unsent(&project, store).await?;
    store.set_setting(LAST_ROUND, &now.to_rfc3339()).await?;
    Ok(ok)
}

/// What is due at `now`, given the last round and the sends that started.
async fn decisions(
    config: &Config,
    project: &Project,
    store: &Store,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<Decision>> {
    let last_round = store
        .setting(LAST_ROUND)
        .await?
        .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
        .map(|t| t.with_timezone(&Utc));
    let started = store.ledger().started_sends().await?;
    let skipped = |id: &IssueId| project.publication(id).is_some_and(|p| p.skipped_at.is_some());
    // A skipped issue is done with, as a sent one is: the editor said so (`gazette skip`).
    Ok(schedule::decide(
        &config.schedule.cron,
        &project.rule(),
        now,
        last_round,
        config.schedule.max_lateness,
        |week| {
            let id = IssueId::from_week_start(week);
            started.contains(&id) || skipped(&id)
        },
    ))
}

/// `run --once --dry-run`: what one round at `now` would read, publish and send, as lines for
/// the editor, from the same decisions the round makes. Writes nothing: no database row (not even
/// the round's time), no file (no pages, no build cache), no message moved in the bounce mailbox.
pub async fn dry_round(
    config: &Config,
    store: &Store,
    transport: &Transport,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<String>> {
    let mut lines = vec![format!(
        "dry run of one round at {}: nothing is changed or sent",
        now.with_timezone(&config.schedule.timezone).to_rfc3339()
    )];
    lines.push(match &config.bounces.mailbox {
        None => "bounce mailbox: not configured ([bounces] mailbox)".to_string(),
        Some(BounceMailbox::Maildir(dir)) => {
            let mut count = 0;
            for sub in ["new", "cur"] {
                count += crate::bounces::source::files_in(&dir.join(sub))
                    .with_context(|| format!("reading the bounce mailbox {}", dir.display()))?
                    .len();
            }
            format!("bounce mailbox {}: would read {count} message(s) (left where they are)", dir.display())
        }
        // Connecting would be a network round trip and a login: a dry run only says it would.
        Some(imap @ BounceMailbox::Imap { .. }) => {
            format!("bounce mailbox {imap}: would be read (a dry run does not connect to it)")
        }
    });
    if let Some(dmarc) = &config.dmarc {
        lines.push(format!("DMARC mailbox {}: would be read (nothing in it is moved)", dmarc.mailbox));
    }

    let project = Project::load_with(config.clone(), Some(store), now, CacheUse::Read).await?;
    let (new, changes) = project.publication_changes(None)?;
    for id in &new {
        let i = project.issue(id).expect("an issue to publish exists");
        lines.push(format!("would publish issue #{} ({}, week {})", i.number, i.label, i.id));
    }
    for (id, _) in changes.iter().filter(|(id, _)| !new.contains(id)) {
        let i = project.issue(id).expect("a revised issue exists");
        lines.push(format!("would record a revision of issue #{} ({}): its digests changed", i.number, i.label));
    }
    if changes.is_empty() {
        lines.push("nothing new to publish".into());
    }
    if !project.problems.is_empty() {
        lines.push(format!(
            "{} digest(s) cannot be read and would be left out (`gazette check` lists them)",
            project.problems.len()
        ));
    }
    lines.push(format!("would bring the archive in {} up to date", config.paths.out.display()));

    let mut sends = 0;
    for issue_id in store.ledger().unfinished_sends().await? {
        let Some(issue) = project.issue(&issue_id) else {
            lines.push(format!("the send of issue {issue_id} is unfinished but that week has no digests any more: it could not be resumed"));
            continue;
        };
        let plan = SendPlan::of(store, &issue.id).await?;
        lines.push(format!(
            "would resume the send of issue #{} ({}): {} message(s) to go via {}",
            issue.number,
            issue.label,
            plan.to_send(),
            transport.describe()
        ));
        sends += 1;
    }
    for decision in decisions(config, &project, store, now).await? {
        let Decision::Send { week, .. } = decision else { continue };
        let Some(issue) = project.issues().iter().find(|i| i.start == week) else { continue };
        if let Err(e) = project.ready_to_send(issue) {
            lines.push(format!("{e}\nit would not be sent"));
            continue;
        }
        if let Some(why) = held(config, store, issue).await? {
            lines.push(format!("{why}\nit would not be sent"));
            continue;
        }
        let plan = SendPlan::of(store, &issue.id).await?;
        lines.push(format!(
            "would send issue #{} ({}) to {} subscriber(s) via {}",
            issue.number,
            issue.label,
            plan.to_send(),
            transport.describe()
        ));
        sends += 1;
    }
    // The round's reminders, in the log as the round logs them.
    remind_of_unsent(&project, store).await?;
    if sends == 0 {
        lines.push(format!("nothing would be sent at {now}"));
    }
    Ok(lines)
}

/// Logs every published issue that is due, unsent and will not be sent on its own (more than
/// `max_lateness` late, or held back), every round until it is sent or skipped: a published issue
/// nobody got must not be forgotten.
async fn remind_of_unsent(project: &Project, store: &Store) -> anyhow::Result<()> {
    let sends = store.ledger().send_progress().await?;
    for row in crate::issue_state::rows(project, &sends) {
        if let Some(line) = crate::issue_state::reminder(&row, project) {
            tracing::warn!("{line}");
        }
    }
    Ok(())
}

/// The reputation guard's word on sending `issue` now: why it is held (`None` when it may go),
/// said so that the editor knows what passed which limit and what to do about it.
async fn held(config: &Config, store: &Store, issue: &CatalogIssue) -> anyhow::Result<Option<String>> {
    Ok(match &Hold::of(store, &config.reputation, &issue.id).await? {
        Hold::Clear => None,
        Hold::Lifted { lifted_at, .. } => {
            let at = DateTime::from_timestamp(*lifted_at, 0).map(|t| t.to_rfc3339()).unwrap_or_default();
            tracing::info!("issue #{} ({}): its reputation hold was lifted at {at}", issue.number, issue.label);
            None
        }
        hold @ Hold::Held { by } => Some(format!(
            "issue #{} ({}) is due but held, and not sent: {}. Look into it (`gazette status --week {}`), then \
             `gazette lift-hold --week {}` lets the next round send it, or `gazette send --week {}` sends it now",
            issue.number,
            issue.label,
            hold.why().unwrap_or_default(),
            by.issue,
            issue.id,
            issue.id
        )),
    })
}

/// Reads `[bounces] mailbox` and `[dmarc] mailbox`, where there are. A mailbox that cannot be
/// read is logged and does not hold the round back: the send is not the mailbox's to stop.
async fn read_bounces(config: &Config, store: &Store) {
    match crate::bounces::mailbox::poll(config, store).await {
        Ok(None) => {}
        Ok(Some(polled)) => tracing::info!("bounce mailbox: {polled}"),
        Err(e) => tracing::error!("{e:#}"),
    }
    match crate::bounces::mailbox::poll_dmarc(config, store).await {
        Ok(None) => {}
        Ok(Some(polled)) => tracing::info!("DMARC mailbox: {polled}"),
        Err(e) => tracing::error!("{e:#}"),
    }
}

/// Hands `issue`'s email to `deliver`, for every active subscriber exactly once (resuming an
/// earlier run). The issue is published already: its number is the recorded one.
async fn deliver_issue(
    project: &Project,
    store: &Store,
    transport: &Transport,
    stop: &StopFlag,
    issue: &CatalogIssue,
) -> anyhow::Result<deliver::SendReport> {
    let email = project.email_to_send(issue)?;
    let progress = deliver::LogProgress::default();
    deliver::send_issue(store, &project.config, &issue.id, issue.number, email, transport, stop, &progress).await
}

async fn send(project: &Project, store: &Store, transport: &Transport, stop: &StopFlag, issue: &CatalogIssue) -> bool {
    match deliver_issue(project, store, transport, stop, issue).await {
        Ok(report) => {
            let c = &report.counts;
            if report.recovered > 0 {
                tracing::warn!(
                    "{} messages that a stopped run had sent are now recorded (from its journal); they were not sent again",
                    report.recovered
                );
            }
            tracing::info!(
                "issue #{} ({}): {} sent now via {}; in all {c}",
                issue.number,
                issue.label,
                report.sent_now,
                transport.describe()
            );
            c.pending == 0 && !report.interrupted
        }
        Err(e) => {
            tracing::error!("sending issue #{} failed: {e:#}", issue.number);
            false
        }
    }
}
