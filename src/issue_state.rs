//! What has become of each issue: a draft, due, published and waiting, held back, being sent,
//! sent, or skipped by the editor. Read from the project (digests, schedule, publication record)
//! and the sends of the delivery ledger; `gazette issues` lists it, and each scheduler round
//! reminds of the issues that are due and will not be sent on their own (`unsent_reminders`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::issue;
use crate::issue_id::IssueId;
use crate::project::Project;
use crate::schedule;
use crate::store::ledger::SendProgress;

#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Not published, and not due yet.
    Draft,
    /// Only the example digest `init` wrote: never published (`issue::EXAMPLE_ID`).
    Example,
    /// Published (or due), not sent yet, and the scheduler sends it on its own at its next round.
    Due { fire: DateTime<Utc> },
    /// Published, no send started. `late`: it fell due at `due_at` and the scheduler will not send
    /// it on its own any more (more than `max_lateness` late, or a later week fell due since).
    Published { due_at: Option<DateTime<Utc>>, late: bool },
    /// Published (or due), not sent, and its week has digests that cannot be read: no send goes out
    /// until they are fixed. `late` as for `Published`.
    HeldBack { why: String, due_at: Option<DateTime<Utc>>, late: bool },
    /// Its send started and has not finished: `sent` of `audience` messages so far.
    Sending { sent: i64, audience: i64 },
    /// Its send finished: `sent` messages accepted, of `audience`.
    Sent { sent: i64, audience: i64 },
    /// The editor chose not to send it (`gazette skip`) at `at`; it fell due at `due_at`.
    Skipped { at: DateTime<Utc>, due_at: Option<DateTime<Utc>> },
}

impl State {
    /// One word for scripts: draft, example, due, published, held-back, sending, sent, skipped.
    pub fn name(&self) -> &'static str {
        match self {
            State::Draft => "draft",
            State::Example => "example",
            State::Due { .. } => "due",
            State::Published { .. } => "published",
            State::HeldBack { .. } => "held-back",
            State::Sending { .. } => "sending",
            State::Sent { .. } => "sent",
            State::Skipped { .. } => "skipped",
        }
    }

    /// Due, unsent and not going to be sent on its own: what a round reminds of.
    pub fn is_forgotten(&self) -> bool {
        matches!(self, State::Published { late: true, .. } | State::HeldBack { late: true, .. })
    }
}

/// One issue, as `gazette issues` lists it.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: IssueId,
    pub number: u32,
    pub label: String,
    /// The title of its first digest (`None` when its digests are gone from the folder).
    pub title: Option<String>,
    pub published_at: Option<DateTime<Utc>>,
    pub state: State,
}

/// Every issue, oldest week first: each week with digests, and each published one whose digests
/// are gone since. `sends` is `ledger::send_progress`.
pub fn rows(project: &Project, sends: &BTreeMap<IssueId, SendProgress>) -> Vec<Row> {
    let config = &project.config;
    let (cron, rule, now) = (&config.schedule.cron, project.rule(), project.now());
    let time = |t: i64| DateTime::from_timestamp(t, 0);
    let mut rows: Vec<Row> = Vec::new();
    let mut ids: Vec<&IssueId> = project.issues().iter().map(|i| &i.id).collect();
    ids.extend(project.record().0.keys().filter(|id| project.issue(id).is_none()));
    ids.sort_unstable();
    for id in ids {
        let issue = project.issue(id);
        let publication = project.publication(id);
        let week = issue.map_or_else(|| id.week_start(), |i| i.start);
        let due_at = schedule::due_at(cron, &rule, week);
        let published = publication.is_some() || issue.is_some_and(|i| project.is_published(i));
        let state = if let Some(s) = sends.get(id) {
            if s.finished_at.is_some() {
                State::Sent { sent: s.sent, audience: s.audience }
            } else {
                State::Sending { sent: s.sent, audience: s.audience }
            }
        } else if let Some(at) = publication.and_then(|p| p.skipped_at).and_then(time) {
            State::Skipped { at, due_at }
        } else if !published {
            if issue.is_some_and(|i| i.is_example()) { State::Example } else { State::Draft }
        } else {
            let on_its_own = schedule::sends_on_its_own(cron, &rule, now, config.schedule.max_lateness, week);
            let late = !on_its_own && due_at.is_some_and(|d| d <= now);
            let held: Vec<String> =
                issue.map(|i| project.held_back_by(i).iter().map(ToString::to_string).collect()).unwrap_or_default();
            if let Some(first) = held.first() {
                let why = if held.len() == 1 {
                    first.clone()
                } else {
                    format!("{first} (and {} more digest problems)", held.len() - 1)
                };
                State::HeldBack { why, due_at, late }
            } else if issue.is_none() {
                // Its digests are gone: nothing can be sent until they are back.
                State::HeldBack {
                    why: format!(
                        "the week has no digests any more; restore them into {}",
                        config.paths.digests.display()
                    ),
                    due_at,
                    late,
                }
            } else if on_its_own {
                State::Due { fire: schedule::latest_fire(cron, &rule, now).unwrap_or(now) }
            } else {
                State::Published { due_at, late }
            }
        };
        let label =
            issue.map(|i| i.label.clone()).unwrap_or_else(|| issue::week_label(week, week + chrono::Duration::days(6)));
        rows.push(Row {
            id: id.clone(),
            number: publication.map(|p| p.number).or(issue.map(|i| i.number)).unwrap_or(0),
            label,
            title: issue.and_then(|i| i.digests().next()).map(|d| d.title.clone()),
            published_at: publication.and_then(|p| time(p.published_at)),
            state,
        });
    }
    rows
}

/// What a row's state says, for people: `sending 120/400`, `published, not sent: due at …`.
pub fn describe(row: &Row, project: &Project) -> String {
    let config = &project.config;
    let local = |t: &DateTime<Utc>| t.with_timezone(&config.schedule.timezone).format("%Y-%m-%d %H:%M %Z").to_string();
    let due = |d: &Option<DateTime<Utc>>| {
        d.as_ref().map(local).unwrap_or_else(|| "never (the schedule does not fire again)".into())
    };
    let lateness = humantime::format_duration(config.schedule.max_lateness);
    match &row.state {
        State::Draft => "draft".into(),
        State::Example => "example: never published".into(),
        State::Due { fire } => format!("due at {}: the next round sends it", local(fire)),
        State::Published { due_at, late: false } => format!("published, not sent yet: due at {}", due(due_at)),
        State::Published { due_at, late: true } => {
            format!(
                "published, not sent: due at {} and more than {lateness} late, so it is not sent on its own",
                due(due_at)
            )
        }
        State::HeldBack { why, .. } => format!("held back: {why}"),
        State::Sending { sent, audience } => format!("sending {sent}/{audience}"),
        State::Sent { sent, audience } => {
            format!("sent {sent}{}", if sent == audience { String::new() } else { format!(" (of {audience})") })
        }
        State::Skipped { at, due_at } => format!("skipped as late since {} (on {})", due(due_at), local(at)),
    }
}

/// The line a round logs for an issue that is due, unsent and will not be sent on its own,
/// saying what the editor can do about it. `None` for any other issue.
pub fn reminder(row: &Row, project: &Project) -> Option<String> {
    if !row.state.is_forgotten() {
        return None;
    }
    let fix = match &row.state {
        State::HeldBack { .. } => "fix its digests, then ",
        _ => "",
    };
    Some(format!(
        "issue #{} ({}) is unsent: {}; {fix}`gazette send --week {}` sends it, or `gazette skip --week {}` stops this reminder",
        row.number,
        row.label,
        describe(row, project),
        row.id,
        row.id
    ))
}
