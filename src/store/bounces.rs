//! What a failed delivery does to a subscriber, whether it came back after the send (a report
//! read by `gazette bounces import` or from the mailbox) or was refused at sending. The policy, in
//! one place, decided by whose problem the failure is (`Reason::scope`):
//! - a failure of the address (user unknown, host unknown, has moved, a null MX) marks the
//!   delivery and the subscriber `bounced`;
//! - a failure of the mailbox or the mail system (full, suspended, expired, a system error, no
//!   reason given) is temporary: on `temporary_limit` distinct issues in a row (no issue
//!   delivered without a failure coming back between them) the subscriber becomes `bounced`;
//! - a refusal of the message or the sender (spam, a blocklist, a policy, the content, the size,
//!   authentication) is never the reader's fault: it is kept in `refusals`, for the issue and the
//!   provider (the recipient's domain), changes no status and counts in no streak;
//! - a complaint marks the subscriber `complained`.
//!
//! `bounced` and `complained` are sticky like an unsubscribe (only `subscribers add --reactivate`
//! undoes them), and record when (`bounced_at`, `complained_at`) and why (`status_reason`, which
//! starts with the reason's name: `userunknown: 550 5.1.1 ...`). Every report attributed to a
//! subscriber is kept (`bounce_events`, or `refusals`); reading the same message twice records it once.

use super::DeliveryState;
use super::{Backend, Status, Store, StoreError, now};
pub use super::{reason_in, status_reason};
pub use crate::bounces::reason::Refusal;
use crate::bounces::reason::{Reason, Scope};
use crate::issue_id::IssueId;

/// What a report says about one subscriber: `bounce_events.kind`, or a refusal (kept in the
/// `refusals` table instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Permanent,
    Temporary,
    Complaint,
    /// The message or the sender was refused: never counted against the reader.
    Refused,
}

text_enum!(EventKind { Permanent => "permanent", Temporary => "temporary", Complaint => "complaint", Refused => "refused" });

impl EventKind {
    /// What a failure whose problem is `scope`'s is recorded as.
    pub fn of(scope: Scope) -> EventKind {
        match scope {
            Scope::Address => EventKind::Permanent,
            Scope::Mailbox => EventKind::Temporary,
            Scope::Sender => EventKind::Refused,
        }
    }
}

/// One report, attributed to a subscriber (and, when it could be told, an issue).
#[derive(Debug, Clone)]
pub struct BounceEvent<'a> {
    pub subscriber_id: i64,
    pub issue_id: Option<&'a IssueId>,
    pub kind: EventKind,
    /// Why it failed; `None` for a complaint.
    pub code: Option<Reason>,
    /// The address the report named.
    pub address: &'a str,
    /// The status and the server's words (for a complaint, its feedback type).
    pub reason: &'a str,
    /// Where it was read, for people: a file, an mbox and the message's index, a mailbox's UID;
    /// `AT_SENDING` for a refusal at sending.
    pub source: &'a str,
    /// SHA-256 of the message, hex (`smtp:<issue>.<subscriber>` at sending).
    pub message_key: &'a str,
}

/// The `source` of what a server refused at sending (in `bounce_events` and `refusals`): not
/// something that came back after the send.
pub const AT_SENDING: &str = "smtp reply";

/// What recording a report did.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// The subscriber has this status now (bounced or complained).
    Became(Status),
    /// A temporary failure, counted: `count` issues in a row of the `limit` that make an address bounced.
    Counted { count: u32, limit: u32 },
    /// A refusal of the message or the sender, kept for the issue and `provider`; the reader is
    /// left as they were.
    Refused { provider: String },
    /// Recorded; the subscriber was already this (unsubscribed, bounced, complained) and stays so.
    Unchanged(Status),
    /// This message was read before: nothing new.
    Duplicate,
}

/// A refusal at sending of a mailbox's or the sender's (an address's is a bounce, which the
/// ledger records), for `Store::record_refused_at_sending`.
#[derive(Debug, Clone, PartialEq)]
pub struct RefusedAtSending {
    pub subscriber_id: i64,
    pub refusal: Refusal,
    /// The server's reply.
    pub detail: String,
}

/// What came back for one issue, counted by subscriber.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct Returned {
    pub permanent: i64,
    pub temporary: i64,
    pub complaints: i64,
}

/// How many messages of an issue one provider refused for one reason (each subscriber once).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProviderRefusals {
    pub provider: String,
    /// The reason's name (`spamdetected`).
    pub reason: String,
    pub messages: i64,
}

/// The provider a refusal is counted for: the domain of the refused address, in lower case.
fn provider_of(address: &str) -> String {
    let domain = address.trim().trim_end_matches('>').rsplit_once('@').map_or("", |(_, d)| d).trim();
    if domain.is_empty() { "(no domain)".to_string() } else { domain.to_ascii_lowercase() }
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
                let rows: Vec<(IssueId, DeliveryState, bool)> = sqlx::query_as(
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

/// Records one report in the write transaction `$tx` (either backend's) and applies the policy
/// (see the module's comment): the `Effect`, or `?` on errors. A macro for the same reason as
/// `temporary_streak!`.
macro_rules! apply_event {
    ($tx:ident, $event:expr, $temporary_limit:expr, $at:expr) => {
        'apply: {
            let event: &BounceEvent<'_> = $event;
            let (temporary_limit, at): (u32, i64) = ($temporary_limit, $at);
            if event.kind == EventKind::Refused {
                let provider = provider_of(event.address);
                let code = event.code.unwrap_or(Reason::Undefined);
                let inserted = sqlx::query(
                    "INSERT INTO refusals (subscriber_id, issue_id, provider, reason_code, detail, address, source, message_key, received_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
                )
                .bind(event.subscriber_id)
                .bind(event.issue_id)
                .bind(provider.as_str())
                .bind(code.as_str())
                .bind(event.reason)
                .bind(event.address)
                .bind(event.source)
                .bind(event.message_key)
                .bind(at)
                .execute(&mut *$tx)
                .await?
                .rows_affected();
                if inserted == 0 {
                    break 'apply Effect::Duplicate;
                }
                if let Some(issue_id) = event.issue_id {
                    // Refused after the relay took it: the message did not arrive. Not a success,
                    // so it neither counts in a streak of temporary failures nor ends one.
                    sqlx::query(
                        "UPDATE deliveries SET state = $3, last_error = $4, updated_at = $5 WHERE issue_id = $1 AND subscriber_id = $2 AND state = $6",
                    )
                    .bind(issue_id)
                    .bind(event.subscriber_id)
                    .bind(DeliveryState::Failed)
                    .bind(format!("refused after the send: {}", status_reason(Some(code), event.reason)))
                    .bind(at)
                    .bind(DeliveryState::Sent)
                    .execute(&mut *$tx)
                    .await?;
                }
                break 'apply Effect::Refused { provider };
            }
            let inserted = sqlx::query(
                "INSERT INTO bounce_events (subscriber_id, issue_id, kind, address, reason, source, message_key, received_at, reason_code)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
            )
            .bind(event.subscriber_id)
            .bind(event.issue_id)
            .bind(event.kind)
            .bind(event.address)
            .bind(event.reason)
            .bind(event.source)
            .bind(event.message_key)
            .bind(at)
            .bind(event.code.map(Reason::as_str))
            .execute(&mut *$tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                break 'apply Effect::Duplicate;
            }
            let status: String = sqlx::query_scalar("SELECT status FROM subscribers WHERE id = $1").bind(event.subscriber_id).fetch_one(&mut *$tx).await?;
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
                .bind(format!("bounced after the send: {}", status_reason(event.code, event.reason)))
                .bind(at)
                .bind(DeliveryState::Sent)
                .execute(&mut *$tx)
                .await?;
            }
            // Only an address that is being mailed changes: an unsubscribe, bounce or complaint stays.
            if !matches!(status, Status::Active | Status::Pending) {
                break 'apply Effect::Unchanged(status);
            }
            let (new, why) = match event.kind {
                EventKind::Permanent => (Status::Bounced, status_reason(event.code, event.reason)),
                EventKind::Complaint => (Status::Complained, format!("complaint: {}", event.reason)),
                EventKind::Temporary => {
                    let count = temporary_streak!(&mut *$tx, event.subscriber_id, event.issue_id);
                    if count < temporary_limit {
                        break 'apply Effect::Counted { count, limit: temporary_limit };
                    }
                    let issues = if count == 1 { "1 issue".to_string() } else { format!("{count} issues") };
                    (Status::Bounced, status_reason(event.code, &format!("{} (temporary failures on {issues} in a row)", event.reason)))
                }
                EventKind::Refused => unreachable!("refusals are recorded above"),
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
            .bind(why)
            .execute(&mut *$tx)
            .await?;
            Effect::Became(new)
        }
    };
}

impl Store {
    /// The delivery (issue, subscriber) whose message had this Message-ID. Gazette's ids are
    /// `<issue.subscriber.nonce@domain>`: the key is read from the id, then checked against the ledger.
    /// An id whose parts are not an issue's id and a subscriber's is not one of ours.
    pub async fn delivery_by_message_id(&self, message_id: &str) -> Result<Option<(IssueId, i64)>, StoreError> {
        let local = message_id.trim().trim_start_matches('<').split('@').next().unwrap_or("");
        let mut parts = local.rsplitn(3, '.');
        let (Some(_nonce), Some(subscriber), Some(issue)) = (parts.next(), parts.next(), parts.next()) else {
            return Ok(None);
        };
        let Ok(subscriber_id) = subscriber.parse::<i64>() else { return Ok(None) };
        let Ok(issue) = issue.parse::<IssueId>() else { return Ok(None) };
        let found: Option<i64> = with_pool!(&self.pool, p => {
            sqlx::query_scalar("SELECT subscriber_id FROM deliveries WHERE issue_id = $1 AND subscriber_id = $2 AND message_id = $3")
                .bind(&issue)
                .bind(subscriber_id)
                .bind(message_id.trim())
                .fetch_optional(p)
                .await?
        });
        Ok(found.map(|id| (issue, id)))
    }

    /// The issue most recently sent to a subscriber, if any: what a report that names only the
    /// address is taken to be about.
    pub async fn latest_delivery(&self, subscriber_id: i64) -> Result<Option<IssueId>, StoreError> {
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
            let effect = apply_event!(tx, event, temporary_limit, at);
            tx.commit().await?;
            Ok(effect)
        })
    }

    /// Applies the policy to refusals at sending of `issue_id`'s deliveries, in one transaction: a
    /// mailbox's counts as a temporary failure of the issue for the reader, a sender's is kept for
    /// the issue and the provider. Each is keyed by its delivery, so a delivery sent again after a
    /// crash and refused again is recorded once. A subscriber that is gone is passed over.
    pub async fn record_refused_at_sending(
        &self,
        issue_id: &IssueId,
        refused: &[RefusedAtSending],
        temporary_limit: u32,
    ) -> Result<Vec<Effect>, StoreError> {
        let at = now();
        let mut effects = Vec::with_capacity(refused.len());
        with_pool!(&self.pool, p => {
            let mut tx = p.begin_write().await?;
            for r in refused {
                let email: Option<String> =
                    sqlx::query_scalar("SELECT email FROM subscribers WHERE id = $1").bind(r.subscriber_id).fetch_optional(&mut *tx).await?;
                let Some(email) = email else { continue };
                let key = format!("smtp:{issue_id}.{}", r.subscriber_id);
                let event = BounceEvent {
                    subscriber_id: r.subscriber_id,
                    issue_id: Some(issue_id),
                    kind: EventKind::of(r.refusal.scope),
                    code: Some(r.refusal.reason),
                    address: &email,
                    reason: &r.detail,
                    source: AT_SENDING,
                    message_key: &key,
                };
                effects.push(apply_event!(tx, &event, temporary_limit, at));
            }
            tx.commit().await?;
        });
        Ok(effects)
    }

    /// What came back after the send of `issue_id`, counted by subscriber (refusals at sending
    /// are the send's own: `status` counts them by state).
    pub async fn returned(&self, issue_id: &IssueId) -> Result<Returned, StoreError> {
        let rows: Vec<(EventKind, i64)> = with_pool!(&self.pool, p => {
            sqlx::query_as("SELECT kind, COUNT(DISTINCT subscriber_id) FROM bounce_events WHERE issue_id = $1 AND source <> $2 GROUP BY kind")
                .bind(issue_id)
                .bind(AT_SENDING)
                .fetch_all(p)
                .await?
        });
        let mut r = Returned::default();
        for (kind, n) in rows {
            match kind {
                EventKind::Permanent => r.permanent = n,
                EventKind::Temporary => r.temporary = n,
                EventKind::Complaint => r.complaints = n,
                // Never a `bounce_events.kind`: refusals are counted by `refusals`.
                EventKind::Refused => {}
            }
        }
        Ok(r)
    }

    /// The refusals of the message or the sender for `issue_id`, at sending and after it: by
    /// provider and reason, each subscriber once, the most first.
    pub async fn refusals(&self, issue_id: &IssueId) -> Result<Vec<ProviderRefusals>, StoreError> {
        let rows: Vec<(String, String, i64)> = with_pool!(&self.pool, p => {
            sqlx::query_as(
                "SELECT provider, reason_code, COUNT(DISTINCT subscriber_id) FROM refusals WHERE issue_id = $1
                 GROUP BY provider, reason_code ORDER BY 3 DESC, 1, 2",
            )
            .bind(issue_id)
            .fetch_all(p)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(provider, reason, messages)| ProviderRefusals { provider, reason, messages })
            .collect())
    }
}

/// The count `temporary_streak!` returns, from the subscriber's deliveries (issue, state, whether a
/// temporary failure came back for it), latest first.
fn streak(rows: &[(IssueId, DeliveryState, bool)], issue_id: &IssueId) -> u32 {
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

    /// The issue of the week starting on `start` (`2023-07-17`).
    fn week(start: &str) -> IssueId {
        start.parse().expect("an issue's id")
    }
    use crate::store::ledger;
    use crate::store::{NewSubscriber, Source};

    /// Adds `addresses` to `store`, active; their ids.
    async fn add(store: &Store, addresses: &[&str]) -> Vec<i64> {
        let mut ids = Vec::new();
        for a in addresses {
            let new =
                NewSubscriber { email: a.parse().unwrap(), name: None, status: Status::Active, source: Source::Cli };
            let crate::store::AddOutcome::Added(s) = store.add(&new, false).await.unwrap() else { panic!() };
            ids.push(s.id);
        }
        ids
    }

    /// Starts and finishes the send of `issue` to everyone active: every delivery `sent`.
    async fn sent(store: &Store, issue: &IssueId, number: u32, at: i64) {
        assert!(store.ledger().start_send(issue, number, "s", "signals.example.org", "n0nce", at).await.unwrap());
        let claimed = store.ledger().claim(issue, "test", 1000, at).await.unwrap();
        let outcomes: Vec<_> = claimed.iter().map(|c| (c.subscriber_id, ledger::Outcome::Sent)).collect();
        store.ledger().record(issue, &outcomes, at).await.unwrap();
    }

    fn event<'a>(subscriber_id: i64, issue: &'a IssueId, kind: EventKind, key: &'a str) -> BounceEvent<'a> {
        let code = match kind {
            EventKind::Permanent => Some(Reason::UserUnknown),
            EventKind::Temporary => Some(Reason::MailboxFull),
            EventKind::Refused => Some(Reason::SpamDetected),
            EventKind::Complaint => None,
        };
        BounceEvent {
            subscriber_id,
            issue_id: Some(issue),
            kind,
            code,
            address: "x@example.org",
            reason: "452 4.2.2 mailbox full",
            source: "test",
            message_key: key,
        }
    }

    #[tokio::test]
    async fn temporary_failures_bounce_only_on_distinct_issues_in_a_row() {
        for store in crate::store::testing::stores().await {
            let ids = add(&store, &["a@example.org", "b@example.org"]).await;
            // Confirmed, then sent, a while ago, so that a reactivation now comes after them.
            let t = now() - 1000;
            with_pool!(store.pool(), p => sqlx::query("UPDATE subscribers SET confirmed_at = $1").bind(t - 10).execute(p).await.unwrap().rows_affected());
            for (i, issue) in
                [week("2023-07-03"), week("2023-07-10"), week("2023-07-17"), week("2023-07-24")].iter().enumerate()
            {
                sent(&store, issue, i as u32 + 1, t + i as i64).await;
            }
            let (a, b) = (ids[0], ids[1]);
            use EventKind::Temporary;
            // a: two failures for the same issue count once; the same message read twice counts nothing.
            assert_eq!(
                store.record_bounce(&event(a, &week("2023-07-03"), Temporary, "m1"), 3).await.unwrap(),
                Effect::Counted { count: 1, limit: 3 }
            );
            assert_eq!(
                store.record_bounce(&event(a, &week("2023-07-03"), Temporary, "m1"), 3).await.unwrap(),
                Effect::Duplicate
            );
            assert_eq!(
                store.record_bounce(&event(a, &week("2023-07-03"), Temporary, "m2"), 3).await.unwrap(),
                Effect::Counted { count: 1, limit: 3 }
            );
            // 07-10 was delivered without a failure: a success between, so 07-17 starts a new run.
            assert_eq!(
                store.record_bounce(&event(a, &week("2023-07-17"), Temporary, "m3"), 3).await.unwrap(),
                Effect::Counted { count: 1, limit: 3 }
            );
            // The report of 07-10 arrives late: now 07-03, 07-10 and 07-17 are in a row.
            assert_eq!(
                store.record_bounce(&event(a, &week("2023-07-10"), Temporary, "m4"), 3).await.unwrap(),
                Effect::Counted { count: 2, limit: 3 }
            );
            assert_eq!(
                store.record_bounce(&event(a, &week("2023-07-17"), Temporary, "m5"), 3).await.unwrap(),
                Effect::Became(Status::Bounced)
            );
            let s = store.subscriber_by_id(a).await.unwrap().unwrap();
            assert_eq!(s.status, Status::Bounced);
            assert!(s.bounced_at.is_some());
            assert_eq!(
                s.status_reason.as_deref(),
                Some("mailboxfull: 452 4.2.2 mailbox full (temporary failures on 3 issues in a row)")
            );
            // Sticky: a permanent failure later changes nothing, and the delivery is marked.
            assert_eq!(
                store.record_bounce(&event(a, &week("2023-07-24"), EventKind::Permanent, "m6"), 3).await.unwrap(),
                Effect::Unchanged(Status::Bounced)
            );
            assert_eq!(store.ledger().counts(&week("2023-07-24")).await.unwrap().bounced, 1);
            // b: a complaint.
            assert_eq!(
                store.record_bounce(&event(b, &week("2023-07-24"), EventKind::Complaint, "m7"), 3).await.unwrap(),
                Effect::Became(Status::Complained)
            );
            let r = store.returned(&week("2023-07-24")).await.unwrap();
            assert_eq!(r, Returned { permanent: 1, temporary: 0, complaints: 1 });
            // Reactivation starts afresh: old failures do not count again.
            let again = NewSubscriber {
                email: "a@example.org".parse().unwrap(),
                name: None,
                status: Status::Active,
                source: Source::Cli,
            };
            assert!(matches!(store.add(&again, true).await.unwrap(), crate::store::AddOutcome::Reactivated { .. }));
            assert_eq!(store.subscriber_by_id(a).await.unwrap().unwrap().status_reason, None);
            assert_eq!(
                store.record_bounce(&event(a, &week("2023-07-17"), Temporary, "m8"), 3).await.unwrap(),
                Effect::Counted { count: 0, limit: 3 }
            );
        }
    }

    #[tokio::test]
    async fn a_refusal_of_the_sender_is_kept_for_the_provider_and_never_counted_against_the_reader() {
        for store in crate::store::testing::stores().await {
            let ids = add(&store, &["a@example.org"]).await;
            let t = now() - 1000;
            with_pool!(store.pool(), p => sqlx::query("UPDATE subscribers SET confirmed_at = $1").bind(t - 10).execute(p).await.unwrap().rows_affected());
            for (i, issue) in [week("2023-07-03"), week("2023-07-10"), week("2023-07-17")].iter().enumerate() {
                sent(&store, issue, i as u32 + 1, t + i as i64).await;
            }
            let a = ids[0];
            assert_eq!(
                store.record_bounce(&event(a, &week("2023-07-03"), EventKind::Temporary, "m1"), 2).await.unwrap(),
                Effect::Counted { count: 1, limit: 2 }
            );
            // Refused as spam by the reader's provider: kept under its domain, in lower case.
            let refused_week = week("2023-07-10");
            let spam = BounceEvent {
                address: "A@Mail.Example.COM",
                reason: "550 5.7.1 likely unsolicited mail",
                ..event(a, &refused_week, EventKind::Refused, "m2")
            };
            assert_eq!(
                store.record_bounce(&spam, 2).await.unwrap(),
                Effect::Refused { provider: "mail.example.com".into() }
            );
            assert_eq!(store.record_bounce(&spam, 2).await.unwrap(), Effect::Duplicate);
            let s = store.subscriber_by_id(a).await.unwrap().unwrap();
            assert_eq!(
                (s.status, s.status_reason),
                (Status::Active, None),
                "a refusal changes nothing of the reader's"
            );
            // Its delivery did not arrive: failed, which neither counts in the streak nor ends it as a success would.
            let c = store.ledger().counts(&week("2023-07-10")).await.unwrap();
            assert_eq!((c.sent, c.failed), (0, 1));
            assert_eq!(
                store.record_bounce(&event(a, &week("2023-07-17"), EventKind::Temporary, "m3"), 2).await.unwrap(),
                Effect::Became(Status::Bounced)
            );
            assert_eq!(
                store.refusals(&week("2023-07-10")).await.unwrap(),
                [ProviderRefusals { provider: "mail.example.com".into(), reason: "spamdetected".into(), messages: 1 }]
            );
            assert_eq!(
                store.returned(&week("2023-07-10")).await.unwrap(),
                Returned::default(),
                "a refusal is not a failure of the reader's"
            );
            assert!(store.refusals(&week("2023-07-17")).await.unwrap().is_empty());
        }
    }

    #[tokio::test]
    async fn refusals_at_sending_follow_the_policy_once_per_delivery() {
        for store in crate::store::testing::stores().await {
            let ids = add(&store, &["a@gmail.com", "b@gmail.com", "c@example.org"]).await;
            let t = now() - 1000;
            with_pool!(store.pool(), p => sqlx::query("UPDATE subscribers SET confirmed_at = $1").bind(t - 10).execute(p).await.unwrap().rows_affected());
            assert!(
                store
                    .ledger()
                    .start_send(&week("2023-07-17"), 1, "s", "signals.example.org", "n0nce", t)
                    .await
                    .unwrap()
            );
            store.ledger().claim(&week("2023-07-17"), "test", 10, t).await.unwrap();
            let refused = |id: i64, reason: Reason, scope: Scope, detail: &str| RefusedAtSending {
                subscriber_id: id,
                refusal: Refusal { reason, scope },
                detail: detail.into(),
            };
            let batch = [
                refused(ids[0], Reason::SpamDetected, Scope::Sender, "550 5.7.1 spam"),
                refused(ids[1], Reason::SpamDetected, Scope::Sender, "550 5.7.1 spam"),
                refused(ids[2], Reason::MailboxFull, Scope::Mailbox, "552 5.2.2 mailbox full"),
            ];
            let effects = store.record_refused_at_sending(&week("2023-07-17"), &batch, 1).await.unwrap();
            let gmail = Effect::Refused { provider: "gmail.com".into() };
            assert_eq!(effects, [gmail.clone(), gmail, Effect::Became(Status::Bounced)]);
            // The same refusals again (a delivery sent again after a crash): nothing new.
            assert_eq!(
                store.record_refused_at_sending(&week("2023-07-17"), &batch, 1).await.unwrap(),
                [Effect::Duplicate, Effect::Duplicate, Effect::Duplicate]
            );
            assert_eq!(
                store.refusals(&week("2023-07-17")).await.unwrap(),
                [ProviderRefusals { provider: "gmail.com".into(), reason: "spamdetected".into(), messages: 2 }]
            );
            for id in &ids[..2] {
                assert_eq!(store.subscriber_by_id(*id).await.unwrap().unwrap().status, Status::Active);
            }
            let c = store.subscriber_by_id(ids[2]).await.unwrap().unwrap();
            assert_eq!(
                c.status_reason.as_deref(),
                Some("mailboxfull: 552 5.2.2 mailbox full (temporary failures on 1 issue in a row)")
            );
            assert_eq!(c.reason, Some(Reason::MailboxFull));
            assert_eq!(
                store.returned(&week("2023-07-17")).await.unwrap(),
                Returned::default(),
                "refused at sending is not what came back after it"
            );
        }
    }

    #[test]
    fn a_status_reason_names_its_reason_first() {
        for r in Reason::ALL {
            assert_eq!(reason_in(&status_reason(Some(r), "550 5.1.1 <x@y>: user unknown")), Some(r));
        }
        assert_eq!(
            status_reason(Some(Reason::UserUnknown), "550 5.1.1 <x@y>: user unknown"),
            "userunknown: 550 5.1.1 <x@y>: user unknown"
        );
        // Older rows, reasons without a name, complaints.
        for old in [
            "550 5.1.1 <x@y>: user unknown",
            "complaint: abuse report",
            "refused at sending: permanent error (550): 5.1.1 no",
        ] {
            assert_eq!(reason_in(old), None, "{old}");
        }
        assert_eq!(status_reason(None, "552 full"), "552 full");
    }

    #[tokio::test]
    async fn message_ids_find_their_delivery() {
        for store in crate::store::testing::stores().await {
            let ids = add(&store, &["a@example.org", "b@example.org"]).await;
            sent(&store, &week("2023-07-17"), 1, now()).await;
            let message_ids: Vec<String> = with_pool!(store.pool(), p => sqlx::query_scalar("SELECT message_id FROM deliveries ORDER BY subscriber_id").fetch_all(p).await.unwrap());
            let id = &message_ids[0];
            assert_eq!(store.delivery_by_message_id(id).await.unwrap(), Some((week("2023-07-17"), ids[0])));
            assert_eq!(
                store.delivery_by_message_id(&id.replace("n0nce", "other")).await.unwrap(),
                None,
                "the whole id must match"
            );
            // Each delivery's id has a random part of its own: b, knowing theirs, cannot spell a's.
            let prefix = |i: usize| format!("<2023-07-17.{}.n0nce", ids[i]);
            let (a_random, b_random) = (&message_ids[0][prefix(0).len()..], &message_ids[1][prefix(1).len()..]);
            assert!(
                message_ids[0].starts_with(&prefix(0)) && message_ids[1].starts_with(&prefix(1)),
                "{message_ids:?}"
            );
            assert_ne!(a_random, b_random);
            assert_eq!(a_random.len(), "0123456789abcdef@signals.example.org>".len(), "{a_random}");
            let forged = format!("{}{b_random}", prefix(0));
            assert_eq!(store.delivery_by_message_id(&forged).await.unwrap(), None);
            assert_eq!(store.delivery_by_message_id("<CAF=x@mail.gmail.com>").await.unwrap(), None);
            // An issue part that is not an issue's id is not ours.
            assert_eq!(store.delivery_by_message_id(&id.replacen("2023-07-17", "2023-7-17", 1)).await.unwrap(), None);
            assert_eq!(store.delivery_by_message_id("<a b.1.n0nce@signals.example.org>").await.unwrap(), None);
            assert_eq!(store.latest_delivery(ids[0]).await.unwrap(), Some(week("2023-07-17")));
        }
    }
}
