//! The welcome on the service's side (the mail itself is `deliver::welcome`'s): queued and sent
//! in the background when a reader confirms (`after_confirm`), and sent again by `serve`'s
//! background round when it did not go out (`retry_welcomes_once`).

use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};

use super::App;
use crate::deliver::welcome::{self, Welcomer};
use crate::issue::CatalogIssue;
use crate::project::Project;

fn welcomer(app: &App) -> Welcomer<'_> {
    Welcomer {
        config: &app.config,
        store: &app.store,
        key: &app.key,
        templates: &app.templates,
        transport: &app.transport,
    }
}

/// A reader has just confirmed: queues their welcome (once ever) and sends it in the background,
/// as confirmation mails are, so the answer does not wait for the relay.
pub(super) fn after_confirm(app: &App, subscriber_id: i64) {
    let app = app.clone();
    app.mails_in_flight.fetch_add(1, Ordering::SeqCst);
    tokio::spawn(async move {
        if let Err(e) = welcome_now(&app, subscriber_id, Utc::now()).await {
            tracing::error!(
                "cannot send the welcome of subscriber {subscriber_id}: {e:#}; `serve` tries again in the background"
            );
        }
        app.mails_in_flight.fetch_sub(1, Ordering::SeqCst);
    });
}

async fn welcome_now(app: &App, subscriber_id: i64, now: DateTime<Utc>) -> anyhow::Result<()> {
    let w = welcomer(app);
    if !w.queue(subscriber_id, now).await? {
        // Welcomed before (or on its way): once ever.
        return Ok(());
    }
    let latest = latest_issue(app, now).await;
    let welcomed = w.send(subscriber_id, latest.as_ref(), now).await?;
    welcome::log(subscriber_id, &welcomed);
    Ok(())
}

/// One round: puts back the welcomes a process that died left in flight, then sends those due
/// (deferred ones whose wait is over, and any whose first attempt never ran). Returns how many it
/// tried. `serve` runs it with the confirmation retries (`retry_confirmations`), at start first.
pub async fn retry_welcomes_once(app: &App, now: DateTime<Utc>) -> anyhow::Result<usize> {
    let w = welcomer(app);
    w.requeue_stale(now).await?;
    let due = w.due(now).await?;
    if due.is_empty() {
        return Ok(0);
    }
    let latest = latest_issue(app, now).await;
    for id in &due {
        let welcomed = w.send(*id, latest.as_ref(), now).await?;
        welcome::log(*id, &welcomed);
    }
    Ok(due.len())
}

/// The latest published issue, whose contents a welcome lists; none (after saying why in the log)
/// when the project cannot be read: the welcome goes without the list rather than not at all.
async fn latest_issue(app: &App, now: DateTime<Utc>) -> Option<CatalogIssue> {
    match Project::load(app.config.clone(), Some(&app.store), now).await {
        Ok(project) => project.published().last().map(|i| (*i).clone()),
        Err(e) => {
            tracing::warn!("the welcome leaves out the latest issue: the project cannot be read: {e:#}");
            None
        }
    }
}
