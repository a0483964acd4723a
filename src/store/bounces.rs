//! What came back after a send, and what it does to a subscriber. The policy, in one place:
//! - a permanent failure marks the delivery and the subscriber `bounced`;
//! - temporary failures are counted: on `temporary_limit` distinct issues in a row (no issue
//!   delivered without a failure coming back between them) the subscriber becomes `bounced`;
//! - a complaint marks the subscriber `complained`.
//!
//! All three are sticky like an unsubscribe (only `subscribers add --reactivate` undoes them), and
//! record when (`bounced_at`, `complained_at`) and why (`status_reason`). Every report attributed
//! to a subscriber is kept in `bounce_events`; reading the same message twice records it once.

use super::ledger::DeliveryState;
use super::{Backend, Status, Store, StoreError, now};

/// What a report says about one subscriber (`bounce_events.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Permanent,
    Temporary,
    Complaint,
}

text_enum!(EventKind { Permanent => "permanent", Temporary => "temporary", Complaint => "complaint" });

/// One report, attributed to a subscriber (and, when it could be told, an issue).
#[derive(Debug, Clone)]
pub struct BounceEvent<'a> {
    pub subscriber_id: i64,
    pub issue_id: Option<&'a str>,
    pub kind: EventKind,
    /// The address the report named.
    pub address: &'a str,
    pub reason: &'a str,
    /// Where it was read, for people: a file, an mbox and the message's index, a mailbox's UID.
    pub source: &'a str,
    /// SHA-256 of the message, hex.
    pub message_key: &'a str,
}

/// What recording a report did.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// The subscriber has this status now (bounced or complained).
    Became(Status),
    /// A temporary failure, counted: `count` issues in a row of the `limit` that make an address bounced.
    Counted { count: u32, limit: u32 },
    /// Recorded; the subscriber was already this (unsubscribed, bounced, complained) and stays so.
    Unchanged(Status),
    /// This message was read before: nothing new.
    Duplicate,
}

/// What came back for one issue, counted by subscriber.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct Returned {
    pub permanent: i64,
    pub temporary: i64,
    pub complaints: i64,
}

/// How many issues in a row, ending with `issue_id`, came back with a temporary failure for this
/// subscriber. Walks the subscriber's deliveries from that issue back: an issue with a temporary
/// failure counts, one that was sent and has none is a success and ends the run, one that was not
/// sent (skipped, refused) is stepped over. Only issues sent since the subscriber last became
/// active count, so a reactivated address starts afresh. A report for an issue the ledger does not
/// know counts as nothing.
/// A macro rather than a function so that one text serves the transaction of either backend:
/// `temporary_streak!(&mut *tx, subscriber_id, issue_id)` is the count (`?` on errors).
macro_rules! temporary_streak {
    ($conn:expr, $subscriber_id:expr, $issue_id:expr) => {
        match $issue_id {
            None => 0u32,
            Some(issue_id) => {
                let rows: Vec<(String, DeliveryState, bool)> = sqlx::query_as(
                    "SELECT d.issue_id, d.state,
                            EXISTS (SELECT 1 FROM bounce_events e WHERE e.subscriber_id = d.subscriber_id AND e.issue_id = d.issue_id AND e.kind = $2)
                     FROM deliveries d JOIN sends s ON s.issue_id = d.issue_id
                     WHERE d.subscriber_id = $1 AND s.started_at >= (SELECT COALESCE(confirmed_at, 0) FROM subscribers WHERE id = $1)
                     ORDER BY s.started_at DESC, d.issue_id DESC",
                )
                .bind($subscriber_id)
                .bind(EventKind::Temporary)
                .fetch_all($conn)
                .await?;
                streak(&rows, issue_id)
            }
        }
    };
}

impl Store {
    /// The delivery (issue, subscriber) whose message had this Message-ID. Gazette's ids are
    /// `<issue.subscriber.nonce@domain>`: the key is read from the id, then checked against the ledger.
    pub async fn delivery_by_message_id(&self, message_id: &str) -> Result<Option<(String, i64)>, StoreError> {
        let local = message_id.trim().trim_start_matches('<').split('@').next().unwrap_or("");
        let mut parts = local.rsplitn(3, '.');
        let (Some(_nonce), Some(subscriber), Some(issue)) = (parts.next(), parts.next(), parts.next()) else { return Ok(None) };
        let Ok(subscriber_id) = subscriber.parse::<i64>() else { return Ok(None) };
        let found: Option<i64> = with_pool!(&self.pool, p => {
            sqlx::query_scalar("SELECT subscriber_id FROM deliveries WHERE issue_id = $1 AND subscriber_id = $2 AND message_id = $3")
                .bind(issue)
                .bind(subscriber_id)
                .bind(message_id.trim())
                .fetch_optional(p)
                .await?
        });
        Ok(found.map(|id| (issue.to_string(), id)))
    }

    /// The issue most recently sent to a subscriber, if any: what a report that names only the
    /// address is taken to be about.
    pub async fn latest_delivery(&self, subscriber_id: i64) -> Result<Option<String>, StoreError> {
        Ok(with_pool!(&self.pool, p => sqlx::query_scalar(
            "SELECT d.issue_id FROM deliveries d JOIN sends s ON s.issue_id = d.issue_id
             WHERE d.subscriber_id = $1 AND d.state = $2 ORDER BY s.started_at DESC, d.issue_id DESC LIMIT 1",
        )
        .bind(subscriber_id)
        .bind(DeliveryState::Sent)
        .fetch_optional(p)
        .await?))
    }

    /// Records one report and applies the policy (see the module's comment), in one transaction.
    pub async fn record_bounce(&self, event: &BounceEvent<'_>, temporary_limit: u32) -> Result<Effect, StoreError> {
        let at = now();
        with_pool!(&self.pool, p => {
            let mut tx = p.begin_write().await?;
            let inserted = sqlx::query(
                "INSERT INTO bounce_events (subscriber_id, issue_id, kind, address, reason, source, message_key, received_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            )
            .bind(event.subscriber_id)
            .bind(event.issue_id)
            .bind(event.kind)
            .bind(event.address)
            .bind(event.reason)
            .bind(event.source)
            .bind(event.message_key)
            .bind(at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                tx.commit().await?;
                return Ok(Effect::Duplicate);
            }
            let status: String = sqlx::query_scalar("SELECT status FROM subscribers WHERE id = $1").bind(event.subscriber_id).fetch_one(&mut *tx).await?;
            let status: Status = status.parse().map_err(|_| StoreError::Corrupt(format!("subscriber {} has an unknown status", event.subscriber_id)))?;
            if event.kind == EventKind::Permanent
                && let Some(issue_id) = event.issue_id
            {
                sqlx::query(
                    "UPDATE deliveries SET state = $3, last_error = $4, updated_at = $5 WHERE issue_id = $1 AND subscriber_id = $2 AND state = $6",
                )
                .bind(issue_id)
                .bind(event.subscriber_id)
                .bind(DeliveryState::Bounced)
                .bind(format!("bounced after the send: {}", event.reason))
                .bind(at)
                .bind(DeliveryState::Sent)
                .execute(&mut *tx)
                .await?;
            }
            // Only an address that is being mailed changes: an unsubscribe, bounce or complaint stays.
            if !matches!(status, Status::Active | Status::Pending) {
                tx.commit().await?;
                return Ok(Effect::Unchanged(status));
            }
            let (new, reason) = match event.kind {
                EventKind::Permanent => (Status::Bounced, event.reason.to_string()),
                EventKind::Complaint => (Status::Complained, format!("complaint: {}", event.reason)),
                EventKind::Temporary => {
                    let count = temporary_streak!(&mut *tx, event.subscriber_id, event.issue_id);
                    if count < temporary_limit {
                        tx.commit().await?;
                        return Ok(Effect::Counted { count, limit: temporary_limit });
                    }
                    (Status::Bounced, format!("temporary failures on {count} issues in a row; the last: {}", event.reason))
                }
            };
            sqlx::query(
                "UPDATE subscribers SET status = $2, status_changed_at = $3, status_reason = $4,
                 bounced_at = CASE $2 WHEN 'bounced' THEN $3 ELSE bounced_at END,
                 complained_at = CASE $2 WHEN 'complained' THEN $3 ELSE complained_at END
                 WHERE id = $1",
            )
            .bind(event.subscriber_id)
            .bind(new.as_str())
            .bind(at)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Effect::Became(new))
        })
    }

    /// What came back after the send of `issue_id`, counted by subscriber.
    pub async fn returned(&self, issue_id: &str) -> Result<Returned, StoreError> {
        let rows: Vec<(EventKind, i64)> = with_pool!(&self.pool, p => {
            sqlx::query_as("SELECT kind, COUNT(DISTINCT subscriber_id) FROM bounce_events WHERE issue_id = $1 GROUP BY kind")
                .bind(issue_id)
                .fetch_all(p)
                .await?
        });
        let mut r = Returned::default();
        for (kind, n) in rows {
            match kind {
                EventKind::Permanent => r.permanent = n,
                EventKind::Temporary => r.temporary = n,
                EventKind::Complaint => r.complaints = n,
            }
        }
        Ok(r)
    }
}


/// The count `temporary_streak!` returns, from the subscriber's deliveries (issue, state, whether a
/// temporary failure came back for it), latest first.
fn streak(rows: &[(String, DeliveryState, bool)], issue_id: &str) -> u32 {
    let mut count = 0;
    let mut reached = false;
    for (id, state, failed) in rows {
        reached |= id == issue_id;
        if !reached {
            // A later issue: its report may still be on its way.
            continue;
        }
        if *failed {
            count += 1;
        } else if *state == DeliveryState::Sent {
            break;
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ledger;
    use crate::store::{NewSubscriber, Source};

    /// Adds `addresses` to `store`, active; their ids.
    async fn add(store: &Store, addresses: &[&str]) -> Vec<i64> {
        let mut ids = Vec::new();
        for a in addresses {
            let new = NewSubscriber { email: a.parse().unwrap(), name: None, status: Status::Active, source: Source::Cli };
            let crate::store::AddOutcome::Added(s) = store.add(&new, false).await.unwrap() else { panic!() };
            ids.push(s.id);
        }
        ids
    }

    /// Starts and finishes the send of `issue` to everyone active: every delivery `sent`.
    async fn sent(store: &Store, issue: &str, number: u32, at: i64) {
        assert!(ledger::start_send(store.pool(), issue, number, "s", "signals.example.org", "n0nce", at).await.unwrap());
        let claimed = ledger::claim(store.pool(), issue, "test", 1000, at).await.unwrap();
        let outcomes: Vec<_> = claimed.iter().map(|c| (c.subscriber_id, ledger::Outcome::Sent)).collect();
        ledger::record(store.pool(), issue, &outcomes, at).await.unwrap();
    }

    fn event<'a>(subscriber_id: i64, issue: &'a str, kind: EventKind, key: &'a str) -> BounceEvent<'a> {
        BounceEvent { subscriber_id, issue_id: Some(issue), kind, address: "x@example.org", reason: "452 4.2.2 mailbox full", source: "test", message_key: key }
    }

    #[tokio::test]
    async fn temporary_failures_bounce_only_on_distinct_issues_in_a_row() {
        for store in crate::store::testing::stores().await {
            let ids = add(&store, &["a@example.org", "b@example.org"]).await;
            // Confirmed, then sent, a while ago, so that a reactivation now comes after them.
            let t = now() - 1000;
            with_pool!(store.pool(), p => sqlx::query("UPDATE subscribers SET confirmed_at = $1").bind(t - 10).execute(p).await.unwrap().rows_affected());
            for (i, issue) in ["2023-07-03", "2023-07-10", "2023-07-17", "2023-07-24"].iter().enumerate() {
                sent(&store, issue, i as u32 + 1, t + i as i64).await;
            }
            let (a, b) = (ids[0], ids[1]);
            use EventKind::Temporary;
            // a: two failures for the same issue count once; the same message read twice counts nothing.
            assert_eq!(store.record_bounce(&event(a, "2023-07-03", Temporary, "m1"), 3).await.unwrap(), Effect::Counted { count: 1, limit: 3 });
            assert_eq!(store.record_bounce(&event(a, "2023-07-03", Temporary, "m1"), 3).await.unwrap(), Effect::Duplicate);
            assert_eq!(store.record_bounce(&event(a, "2023-07-03", Temporary, "m2"), 3).await.unwrap(), Effect::Counted { count: 1, limit: 3 });
            // 07-10 was delivered without a failure: a success between, so 07-17 starts a new run.
            assert_eq!(store.record_bounce(&event(a, "2023-07-17", Temporary, "m3"), 3).await.unwrap(), Effect::Counted { count: 1, limit: 3 });
            // The report of 07-10 arrives late: now 07-03, 07-10 and 07-17 are in a row.
            assert_eq!(store.record_bounce(&event(a, "2023-07-10", Temporary, "m4"), 3).await.unwrap(), Effect::Counted { count: 2, limit: 3 });
            assert_eq!(store.record_bounce(&event(a, "2023-07-17", Temporary, "m5"), 3).await.unwrap(), Effect::Became(Status::Bounced));
            let s = store.subscriber_by_id(a).await.unwrap().unwrap();
            assert_eq!(s.status, Status::Bounced);
            assert!(s.bounced_at.is_some());
            assert_eq!(s.status_reason.as_deref(), Some("temporary failures on 3 issues in a row; the last: 452 4.2.2 mailbox full"));
            // Sticky: a permanent failure later changes nothing, and the delivery is marked.
            assert_eq!(store.record_bounce(&event(a, "2023-07-24", EventKind::Permanent, "m6"), 3).await.unwrap(), Effect::Unchanged(Status::Bounced));
            assert_eq!(ledger::counts(store.pool(), "2023-07-24").await.unwrap().bounced, 1);
            // b: a complaint.
            assert_eq!(store.record_bounce(&event(b, "2023-07-24", EventKind::Complaint, "m7"), 3).await.unwrap(), Effect::Became(Status::Complained));
            let r = store.returned("2023-07-24").await.unwrap();
            assert_eq!(r, Returned { permanent: 1, temporary: 0, complaints: 1 });
            // Reactivation starts afresh: old failures do not count again.
            let again = NewSubscriber { email: "a@example.org".parse().unwrap(), name: None, status: Status::Active, source: Source::Cli };
            assert!(matches!(store.add(&again, true).await.unwrap(), crate::store::AddOutcome::Reactivated { .. }));
            assert_eq!(store.subscriber_by_id(a).await.unwrap().unwrap().status_reason, None);
            assert_eq!(store.record_bounce(&event(a, "2023-07-17", Temporary, "m8"), 3).await.unwrap(), Effect::Counted { count: 0, limit: 3 });
        }
    }

    #[tokio::test]
    async fn message_ids_find_their_delivery() {
        for store in crate::store::testing::stores().await {
            let ids = add(&store, &["a@example.org", "b@example.org"]).await;
            sent(&store, "2023-07-17", 1, now()).await;
            let message_ids: Vec<String> =
                with_pool!(store.pool(), p => sqlx::query_scalar("SELECT message_id FROM deliveries ORDER BY subscriber_id").fetch_all(p).await.unwrap());
            let id = &message_ids[0];
            assert_eq!(store.delivery_by_message_id(id).await.unwrap(), Some(("2023-07-17".to_string(), ids[0])));
            assert_eq!(store.delivery_by_message_id(&id.replace("n0nce", "other")).await.unwrap(), None, "the whole id must match");
            // Each delivery's id has a random part of its own: b, knowing theirs, cannot spell a's.
            let prefix = |i: usize| format!("<2023-07-17.{}.n0nce", ids[i]);
            let (a_random, b_random) = (&message_ids[0][prefix(0).len()..], &message_ids[1][prefix(1).len()..]);
            assert!(message_ids[0].starts_with(&prefix(0)) && message_ids[1].starts_with(&prefix(1)), "{message_ids:?}");
            assert_ne!(a_random, b_random);
            assert_eq!(a_random.len(), "0123456789abcdef@signals.example.org>".len(), "{a_random}");
            let forged = format!("{}{b_random}", prefix(0));
            assert_eq!(store.delivery_by_message_id(&forged).await.unwrap(), None);
            assert_eq!(store.delivery_by_message_id("<CAF=x@mail.gmail.com>").await.unwrap(), None);
            assert_eq!(store.latest_delivery(ids[0]).await.unwrap().as_deref(), Some("2023-07-17"));
        }
    }
}
