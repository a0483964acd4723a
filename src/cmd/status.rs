//! `gazette status`: how far a week's send got, from the delivery ledger, what came back after it,
//! and the messages of the bounce mailbox set aside as unreadable.

use std::process::ExitCode;

use chrono::{DateTime, Utc};

use crate::bounces::Reason;
use crate::config::Config;
use crate::issue::{self, WeekSpec};
use crate::issue_id::IssueId;
use crate::project::Project;
use crate::store::Store;
use crate::store::bounces::{ProviderRefusals, Returned};
use crate::store::ledger::{Counts, SendRecord};
use crate::store::unreadable::Unreadable;

/// How many of the messages set aside as unreadable are named, newest first.
const UNREADABLE_NAMED: usize = 5;

/// The issue a status is about: its id, number and label.
struct About {
    id: IssueId,
    number: i64,
    label: String,
}

/// What the store knows of an issue's send and of what came back after it.
struct Report {
    record: Option<SendRecord>,
    counts: Counts,
    /// The deliveries with an error: address, state, attempts, last error.
    problems: Vec<(String, String, i64, String)>,
    returned: Returned,
    unreadable: Unreadable,
    refusals: Vec<ProviderRefusals>,
    /// On SQLite, what a send in progress or stopped has kept in its journal and not yet in the ledger.
    journaled: usize,
}

pub fn run(config: Config, week: Option<WeekSpec>, json: bool, now: DateTime<Utc>) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(async {
        let store = Store::open(&config.paths.database).await?;
        let result = status(&store, config, week, json, now).await;
        store.close().await;
        result
    })
}

async fn status(
    store: &Store,
    config: Config,
    week: Option<WeekSpec>,
    json: bool,
    now: DateTime<Utc>,
) -> anyhow::Result<ExitCode> {
    let project = Project::load(config, Some(store), now).await?;
    let issue = about(store, &project, week, now).await?;
    let report = read_report(store, &issue.id).await?;
    // What the DMARC aggregate reports of the last week say, once any has been read.
    let dmarc = store.dmarc().summary_since(crate::dmarc::since(now, 7)).await?;
    // The reputation guard (issue 30): the rates against [reputation], and this issue's hold.
    let limits = &project.config.reputation;
    let guard = crate::reputation::StatusReport::of(store, limits, &issue.id).await?;
    // Whom the readers' choices of themes reach (issue 31); nothing while no one chose.
    let audience = crate::audience::Audience::of(&store.theme_choices().await?, &project.recent_themes());
    if json {
        let mut value = as_json(&issue, &report);
        if let Some(summary) = &dmarc {
            value["dmarc"] = crate::dmarc::status_json(summary, 7);
        }
        value["reputation"] = serde_json::to_value(&guard)?;
        if let Some(audience) = &audience {
            value["audience_by_theme"] = serde_json::to_value(audience)?;
        }
        say!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        say_report(&project, &issue, &report);
        if let Some(summary) = &dmarc {
            say!();
            say!("{}", crate::dmarc::status_line(summary, 7));
        }
        guard.lines(limits, &issue.id).iter().for_each(|line| say!("{line}"));
        if let Some(audience) = &audience {
            say!();
            audience.lines().iter().for_each(|line| say!("{line}"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The issue of `week` (the last complete week when `None`); a send whose digests are gone from
/// the folder still has its ledger, and is found by its week.
async fn about(store: &Store, project: &Project, week: Option<WeekSpec>, now: DateTime<Utc>) -> anyhow::Result<About> {
    let e = match project.select(week) {
        Ok(i) => {
            return Ok(About {
                id: IssueId::from_week_start(i.start),
                number: i.number.into(),
                label: i.label.clone(),
            });
        }
        Err(e) => e,
    };
    let start = project.rule().week_start(week.map(|w| w.0).unwrap_or_else(|| project.rule().last_complete_week(now)));
    let id = IssueId::from_week_start(start);
    match store.ledger().send_record(&id).await? {
        Some(r) => {
            Ok(About { id, number: r.number, label: issue::week_label(start, start + chrono::Duration::days(6)) })
        }
        None => Err(e.into()),
    }
}

async fn read_report(store: &Store, id: &IssueId) -> anyhow::Result<Report> {
    let ledger = store.ledger();
    Ok(Report {
        record: ledger.send_record(id).await?,
        counts: ledger.counts(id).await?,
        problems: ledger.problems(id, 1000).await?,
        returned: store.returned(id).await?,
        unreadable: store.unreadable(UNREADABLE_NAMED).await?,
        refusals: store.refusals(id).await?,
        journaled: match store.location() {
            crate::config::Database::Sqlite(database) => {
                let path = crate::store::journal::path_of(database, id);
                let ids = crate::store::journal::read(&path)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
                ids.len()
            }
            crate::config::Database::Postgres(_) => 0,
        },
    })
}

/// A moment of the store, as RFC 3339.
fn time(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0).map(|t| t.to_rfc3339()).unwrap_or_default()
}

/// `status --json`: the keys in the documented order.
fn as_json(issue: &About, report: &Report) -> serde_json::Value {
    let Report { record, counts, problems, returned, unreadable, refusals, journaled } = report;
    serde_json::json!({
        "issue": issue.id,
        "number": issue.number,
        "label": issue.label,
        "started": record.is_some(),
        "started_at": record.as_ref().map(|r| time(r.started_at)),
        "finished_at": record.as_ref().and_then(|r| r.finished_at).map(time),
        "audience": record.as_ref().map(|r| r.audience).unwrap_or(0),
        "total": counts.total,
        "sent": counts.sent,
        "pending": counts.pending,
        "sending": counts.sending,
        "journaled": journaled,
        "failed": counts.failed,
        "bounced": counts.bounced,
        "skipped": counts.skipped,
        "returned": returned,
        "unreadable": {
            "count": unreadable.count,
            "newest": unreadable.newest.iter().map(|u| serde_json::json!({
                "source": u.source, "why": u.why, "at": time(u.at)
            })).collect::<Vec<_>>(),
        },
        "deliverability": refusals,
        "problems": problems.iter().map(|(email, state, attempts, error)| serde_json::json!({
            "email": email, "state": state, "attempts": attempts, "error": error
        })).collect::<Vec<_>>(),
    })
}

/// `status` for people: where the send is, its deliveries by state, what came back after it.
fn say_report(project: &Project, issue: &About, report: &Report) {
    say!("issue #{} ({}), week {}", issue.number, issue.label, issue.id);
    let Some(r) = &report.record else {
        let held = project.issue(&issue.id).map(|i| project.held_back_by(i)).unwrap_or_default();
        if held.is_empty() {
            say!("not sent yet; `gazette send --week {}` sends it", issue.id);
        } else {
            say!("not sent yet, and held back until these digests are fixed (`gazette check` lists them all):");
            for p in held {
                say!("  {p}");
            }
        }
        say_unreadable(&report.unreadable);
        return;
    };
    say!("started   {}", time(r.started_at));
    match r.finished_at {
        Some(f) => say!("finished  {}", time(f)),
        None => say!("finished  not yet: `gazette send --week {}` resumes it", issue.id),
    }
    say_deliveries(&report.counts, report.journaled);
    say_returned(report);
    say_unreadable(&report.unreadable);
}

/// The deliveries, counted by state.
fn say_deliveries(counts: &Counts, journaled: usize) {
    say!();
    say!("{:<10} {:>9}", "state", "count");
    for (name, n) in [
        ("sent", counts.sent),
        ("pending", counts.pending),
        ("sending", counts.sending),
        ("failed", counts.failed),
        ("bounced", counts.bounced),
        ("skipped", counts.skipped),
        ("total", counts.total),
    ] {
        say!("{name:<10} {n:>9}");
    }
    if journaled > 0 {
        say!(
            "{journaled} of those sending were accepted by the server: the send's journal beside the database holds them, and the send records them as sent when it runs again (or within a second while it runs)"
        );
    }
}

/// What came back after the send, the providers' refusals, and each delivery's last error.
fn say_returned(report: &Report) {
    let returned = &report.returned;
    say!();
    say!("came back after the send (`gazette bounces import`, [bounces] mailbox):");
    for (name, n) in [
        ("permanent failures", returned.permanent),
        ("temporary failures", returned.temporary),
        ("complaints", returned.complaints),
    ] {
        say!("  {name:<20} {n:>7}");
    }
    if !report.refusals.is_empty() {
        say!();
        say!("deliverability: refused as the sender's problem, at sending or after (not counted against the readers):");
        for r in &report.refusals {
            say!("  {}", refusal_line(r));
        }
    }
    if !report.problems.is_empty() {
        say!();
        say!("{:<40} {:<8} {:>8}  last error", "address", "state", "attempts");
        for (email, state, attempts, error) in &report.problems {
            say!("{email:<40} {state:<8} {attempts:>8}  {error}");
        }
    }
}

/// The messages of the bounce mailbox that could not be read, when there are any: they were
/// moved aside for the editor to look at, and a count here is where the editor learns of them.
fn say_unreadable(unreadable: &Unreadable) {
    if unreadable.count == 0 {
        return;
    }
    say!();
    let (messages, were) = if unreadable.count == 1 { ("message", "was") } else { ("messages", "were") };
    say!(
        "{} {messages} of the bounce mailbox could not be read and {were} moved into its {} folder{}:",
        unreadable.count,
        crate::bounces::unreadable::FOLDER,
        if unreadable.count > unreadable.newest.len() as i64 {
            format!(" (the newest {})", unreadable.newest.len())
        } else {
            String::new()
        }
    );
    for u in &unreadable.newest {
        say!("  {}  {}: {}", time(u.at), u.source, u.why);
    }
}

/// `gmail.com refused 3 messages as spam (spamdetected)`.
fn refusal_line(r: &ProviderRefusals) -> String {
    let messages = if r.messages == 1 { "1 message".to_string() } else { format!("{} messages", r.messages) };
    // A reason from a newer Gazette than this one is shown by its name alone.
    let words = Reason::parse(&r.reason).map(crate::bounces::refused_words).unwrap_or_default();
    format!("{} refused {messages}{words} ({})", r.provider, r.reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_line_says_who_refused_how_many_and_why() {
        let line = |provider: &str, reason: &str, messages| {
            refusal_line(&ProviderRefusals { provider: provider.into(), reason: reason.into(), messages })
        };
        assert_eq!(line("gmail.com", "spamdetected", 1240), "gmail.com refused 1240 messages as spam (spamdetected)");
        assert_eq!(
            line("example.org", "blocked", 1),
            "example.org refused 1 message: the sending server is blocked (blocked)"
        );
        assert_eq!(
            line("example.org", "policyviolation", 2),
            "example.org refused 2 messages by the receiving site's policy (policyviolation)"
        );
        assert_eq!(line("example.org", "someday", 2), "example.org refused 2 messages (someday)");
    }
}
