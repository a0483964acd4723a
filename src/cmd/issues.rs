//! `gazette issues`, `gazette unpublish`, `gazette skip` and `gazette lift-hold`: every issue with
//! its state, taking back a publication that reached nobody, choosing not to send a published issue,
//! and letting an issue the reputation guard holds go.

use std::process::ExitCode;

use chrono::{DateTime, Utc};

use crate::build_cache::CacheUse;
use crate::config::Config;
use crate::error::ExitError;
use crate::issue::{self, WeekSpec};
use crate::issue_id::IssueId;
use crate::issue_state::{self, State};
use crate::project::{BuildPlan, Project, Site};
use crate::store::Store;
use crate::store::publications::Change;

pub fn list(config: Config, json: bool, now: DateTime<Utc>) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(async {
        // Looking creates no database: a project that never published has nothing recorded.
        let (project, sends, standings, choices) = if config.paths.database.exists() {
            let store = Store::open(&config.paths.database).await?;
            let project = Project::load(config, Some(&store), now).await;
            let sends = store.ledger().send_progress().await;
            let standings = match (&project, &sends) {
                (Ok(project), Ok(sends)) => standings(&store, project, sends).await,
                _ => Ok(Default::default()),
            };
            let choices = store.theme_choices().await;
            store.close().await;
            (project?, sends?, standings?, choices?)
        } else {
            (Project::load(config, None, now).await?, Default::default(), Default::default(), Vec::new())
        };
        // Whom the readers' choices of themes reach (issue 31); nothing while no one chose.
        let audience = crate::audience::Audience::of(&choices, &project.recent_themes());
        let rows = issue_state::rows(&project, &sends);
        let time = |t: &DateTime<Utc>| t.with_timezone(&project.config.schedule.timezone).to_rfc3339();
        if json {
            let list: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    let mut v = serde_json::json!({
                        "number": r.number,
                        "week": r.id,
                        "label": r.label,
                        "title": r.title,
                        "published_at": r.published_at.as_ref().map(time),
                        "state": r.state.name(),
                        "description": issue_state::describe(r, &project),
                    });
                    let extra = match &r.state {
                        State::Due { fire } => serde_json::json!({ "due_at": time(fire) }),
                        State::Published { due_at, late } => {
                            serde_json::json!({ "due_at": due_at.as_ref().map(time), "late": late })
                        }
                        State::HeldBack { why, due_at, late } => {
                            serde_json::json!({ "why": why, "due_at": due_at.as_ref().map(time), "late": late })
                        }
                        State::Sending { sent, audience } | State::Sent { sent, audience } => {
                            serde_json::json!({ "sent": sent, "audience": audience })
                        }
                        State::Skipped { at, due_at } => {
                            serde_json::json!({ "skipped_at": time(at), "due_at": due_at.as_ref().map(time) })
                        }
                        State::Draft | State::Example => serde_json::json!({}),
                    };
                    v.as_object_mut().expect("an object").extend(extra.as_object().expect("an object").clone());
                    if let Some(standing) = standings.get(&r.id) {
                        let reputation = serde_json::json!({ "rates": standing.rates, "breaches": standing.breaches });
                        v.as_object_mut().expect("an object").insert("reputation".into(), reputation);
                    }
                    // An issue whose digests are in the folder: whom its email would reach today.
                    if let (Some(audience), Some(issue)) = (&audience, project.issue(&r.id)) {
                        let reach = serde_json::to_value(audience.of_issue(&choices, issue)).expect("plain data");
                        v.as_object_mut().expect("an object").insert("audience_by_theme".into(), reach);
                    }
                    v
                })
                .collect();
            say!("{}", serde_json::to_string_pretty(&list)?);
            return Ok(ExitCode::SUCCESS);
        }
        if rows.is_empty() {
            say!("no issues: {} holds no digests", project.config.paths.digests.display());
            return Ok(ExitCode::SUCCESS);
        }
        say!("{:>4}  {:<10}  {:<16}  {:<40}  state", "#", "week", "published", "title");
        for r in &rows {
            let number = if r.number == 0 { "-".to_string() } else { r.number.to_string() };
            let published = r
                .published_at
                .map(|t| t.with_timezone(&project.config.schedule.timezone).format("%Y-%m-%d %H:%M").to_string());
            let title = r.title.as_deref().unwrap_or("(no digests)");
            // A sent issue that passed a [reputation] limit says which (`gazette status` says more).
            let over: Vec<String> =
                standings.get(&r.id).map(|s| s.breaches.iter().map(breach_word).collect()).unwrap_or_default();
            let over =
                if over.is_empty() { String::new() } else { format!("; over [reputation]: {}", over.join(", ")) };
            say!(
                "{number:>4}  {:<10}  {:<16}  {:<40}  {}{over}",
                r.id,
                published.as_deref().unwrap_or("-"),
                shorten(title, 40),
                issue_state::describe(r, &project)
            );
        }
        if let Some(audience) = &audience {
            say!();
            audience.lines().iter().for_each(|line| say!("{line}"));
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The reputation of every issue whose send started.
async fn standings(
    store: &Store,
    project: &Project,
    sends: &std::collections::BTreeMap<IssueId, crate::store::ledger::SendProgress>,
) -> anyhow::Result<std::collections::BTreeMap<IssueId, crate::reputation::Standing>> {
    let mut out = std::collections::BTreeMap::new();
    for id in sends.keys() {
        let number = project.publication(id).map(|p| i64::from(p.number)).unwrap_or(0);
        out.insert(id.clone(), crate::reputation::Standing::of(store, &project.config.reputation, id, number).await?);
    }
    Ok(out)
}

/// A passed limit in a few words: `complaints 0.50%`, `gmail.com refused 3`.
fn breach_word(b: &crate::reputation::Breach) -> String {
    use crate::reputation::{Breach, percent};
    match b {
        Breach::ComplaintRate { value, .. } => format!("complaints {}", percent(*value)),
        Breach::HardBounceRate { value, .. } => format!("hard bounces {}", percent(*value)),
        Breach::RefusedMessages { domain, messages, .. } => format!("{domain} refused {messages}"),
    }
}

/// `text` cut to `width` characters, an ellipsis marking the cut.
fn shorten(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(width - 1).collect::<String>())
    }
}

/// The id of the week `spec` names: the first day of its week (it may have no digests any more).
fn week_id(project: &Project, spec: WeekSpec) -> (IssueId, String) {
    let start = project.rule().week_start(spec.0);
    (IssueId::from_week_start(start), issue::week_label(start, start + chrono::Duration::days(6)))
}

pub fn unpublish(config: Config, week: WeekSpec, now: DateTime<Utc>) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(async {
        let store = Store::open(&config.paths.database).await?;
        let result = unpublish_in(&store, config, week, now).await;
        store.close().await;
        result
    })
}

/// The refusal of an unpublish whose send started: what readers got cannot be taken back.
fn went_out(label: &str, started_at: i64, sent: i64) -> anyhow::Error {
    anyhow::anyhow!(
        "issue ({label}) is not unpublished: its send started at {} and {sent} message(s) went out; what readers got cannot be taken back",
        DateTime::from_timestamp(started_at, 0).map(|t| t.to_rfc3339()).unwrap_or_default()
    )
}

async fn unpublish_in(store: &Store, config: Config, week: WeekSpec, now: DateTime<Utc>) -> anyhow::Result<ExitCode> {
    // Only looking until the record changes: a refused unpublish writes nothing.
    let project = Project::load_with(config, Some(store), now, CacheUse::Read).await?;
    let (id, label) = week_id(&project, week);
    // A due week with digests would be published again by the next build or round. The store
    // refuses a week whose send started (below, in its transaction); when both hold, what readers
    // got is the reason to name, so the send is looked up first in that case only.
    if let Some(i) = project.issue(&id).filter(|i| project.is_due(i.start) && !i.is_example()) {
        if let Some(send) = store.ledger().send_progress().await?.get(&id) {
            return Err(went_out(&label, send.started_at, send.sent));
        }
        anyhow::bail!(
            "issue #{} ({label}) is not unpublished: its week is due by the schedule, so the next `gazette build` or round would publish it again; \
             move its digests out of {} first if it should not be an issue at all",
            i.number,
            project.config.paths.digests.display()
        );
    }
    let number = match store.publications().unpublish(&id).await? {
        Change::Done { number } => number,
        Change::NotPublished => {
            return Err(ExitError::unusable(format!(
                "the week of {label} is not published; there is nothing to unpublish (`gazette issues` lists what is)"
            ))
            .into());
        }
        Change::SendStarted { started_at, sent } => return Err(went_out(&label, started_at, sent)),
        Change::NumberedAfter { issue_id, number } => anyhow::bail!(
            "issue ({label}) is not unpublished: issue #{number} ({issue_id}) was numbered after it, and numbers never move; unpublish that one first if it too reached nobody"
        ),
    };
    // The archive and the feeds without it, rendered afresh: the build cache kept another issue's
    // feed entry with a closest link into the unpublished week (seen with digests whose entries
    // came from the cache), and the folder is safe to delete (README, "The build cache").
    let cache = &project.config.paths.cache;
    if cache.exists() {
        std::fs::remove_dir_all(cache).map_err(|e| {
            anyhow::anyhow!(
                "cannot remove the build cache {}: {e}; remove it by hand and run `gazette build`",
                cache.display()
            )
        })?;
    }
    let mut project = Project::load_to_build(project.config, Some(store), now).await?;
    let written = project.build(BuildPlan::site(Site::Published)).await?;
    say!("unpublished #{number} ({label}): it is a draft again, and the next issue published takes #{number}");
    say!(
        "{}: {} files ({} changed, {} stale removed)",
        written.folder.display(),
        written.total,
        written.changed,
        written.removed
    );
    Ok(ExitCode::SUCCESS)
}

pub fn skip(config: Config, week: WeekSpec, now: DateTime<Utc>) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(async {
        let store = Store::open(&config.paths.database).await?;
        let result = skip_in(&store, config, week, now).await;
        store.close().await;
        result
    })
}

async fn skip_in(store: &Store, config: Config, week: WeekSpec, now: DateTime<Utc>) -> anyhow::Result<ExitCode> {
    let mut project = Project::load_with(config, Some(store), now, CacheUse::Read).await?;
    let (id, label) = week_id(&project, week);
    if project.publication(&id).is_none() {
        let Some(issue) = project.issue(&id).filter(|i| project.is_published(i)) else {
            return Err(ExitError::unusable(format!(
                "the week of {label} is not published, so no send of it is due; there is nothing to skip (`gazette issues` lists every issue)"
            ))
            .into());
        };
        // Due, not recorded yet (no build or round since it fell due): recorded now, as they would.
        let id = issue.id.clone();
        project.publish(store, Some(&id)).await?;
    }
    match store.publications().skip(&id, now.timestamp()).await? {
        Change::Done { number } => {
            say!(
                "skipped #{number} ({label}): it is not sent, and rounds no longer remind of it; `gazette send --week {id}` still sends it by hand"
            );
            Ok(ExitCode::SUCCESS)
        }
        Change::NotPublished => unreachable!("published above"),
        Change::SendStarted { sent, .. } => {
            anyhow::bail!(
                "issue ({label}) is not skipped: its send started ({sent} message(s) went out); `gazette status --week {id}` shows how far it got"
            )
        }
        Change::NumberedAfter { .. } => unreachable!("skip does not look at later issues"),
    }
}

pub fn lift_hold(config: Config, week: WeekSpec, now: DateTime<Utc>) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(async {
        let store = Store::open(&config.paths.database).await?;
        let result = lift_hold_in(&store, config, week, now).await;
        store.close().await;
        result
    })
}

async fn lift_hold_in(store: &Store, config: Config, week: WeekSpec, now: DateTime<Utc>) -> anyhow::Result<ExitCode> {
    let project = Project::load_with(config, Some(store), now, CacheUse::Read).await?;
    let (id, label) = week_id(&project, week);
    if let Some(send) = store.ledger().send_record(&id).await? {
        anyhow::bail!(
            "issue #{} ({label}) is not held: its send started at {}; `gazette status --week {id}` shows how far it got",
            send.number,
            DateTime::from_timestamp(send.started_at, 0).map(|t| t.to_rfc3339()).unwrap_or_default()
        );
    }
    match crate::reputation::Hold::of(store, &project.config.reputation, &id).await? {
        hold @ crate::reputation::Hold::Held { .. } => {
            let why = hold.why().unwrap_or_default();
            store.lift_hold(&id, &why, now.timestamp()).await?;
            say!(
                "lifted the hold on the issue of {label} ({why}): the next round sends it when it is due; `gazette send --week {id}` sends it now"
            );
            Ok(ExitCode::SUCCESS)
        }
        crate::reputation::Hold::Lifted { lifted_at, .. } => {
            say!(
                "the hold on the issue of {label} was already lifted at {}; the next round sends it when it is due",
                DateTime::from_timestamp(lifted_at, 0).map(|t| t.to_rfc3339()).unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        crate::reputation::Hold::Clear => anyhow::bail!(
            "the issue of {label} is not held: the last issue sent before it passed no [reputation] limit (`gazette status` shows its rates)"
        ),
    }
}
