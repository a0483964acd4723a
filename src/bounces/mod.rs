//! Bounces and complaints that come back after a send. Messages are read from paths (`source`)
//! or a mailbox the scheduler polls (`mailbox`), classified (`classify`), attributed to a
//! subscriber (the VERP token first, then the returned Message-ID, then the failed address) and
//! recorded under the store's policy (`store::bounces`). A message that names no known subscriber
//! changes nothing. A DMARC aggregate report that arrives there (the `rua=` address may be the
//! bounce mailbox) is recognised first and kept (`crate::dmarc`, `store::dmarc`).

pub mod classify;
pub mod mailbox;
pub mod reason;
pub mod source;
pub mod unreadable;

use sha2::Digest;

pub use classify::{Failure, Kind, Report, classify};
pub use reason::{Reason, Scope, reason_of};

use crate::config::Config;
use crate::issue_id::IssueId;
use crate::store::bounces::{BounceEvent, Effect, EventKind};
use crate::store::dmarc::Recorded;
use crate::store::{Store, StoreError, SubscriberEmail, TokenKey, verify_bounce_token};

/// How a report was tied to a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    /// The signed token in the envelope sender it came back to.
    Verp,
    /// The Message-ID of the returned message, found in the ledger.
    MessageId,
    /// The failed (or complaining) address, found among the subscribers.
    Address,
}

impl std::fmt::Display for By {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            By::Verp => "its VERP token",
            By::MessageId => "the returned Message-ID",
            By::Address => "the address",
        })
    }
}

/// One subscriber a report is about, and what it says of them.
#[derive(Debug, Clone)]
pub struct Target {
    pub subscriber_id: i64,
    pub email: String,
    pub issue_id: Option<IssueId>,
    pub by: By,
    pub kind: EventKind,
    /// Why it failed (`None` for a complaint); its scope chose `kind`.
    pub code: Option<Reason>,
    /// The address the report named (the subscriber's when it named none).
    pub address: String,
    pub reason: String,
}

/// One message read, and what came of it.
#[derive(Debug)]
pub struct Processed {
    pub report: Report,
    pub targets: Vec<(Target, Option<Effect>)>,
}

impl Processed {
    /// The addresses for the JSON line, by what they do to the reader: the address failed, the
    /// mailbox failed for now, the message or sender was refused, the reader complained. For a
    /// complaint that names no address (providers redact it), the subscriber it was attributed to.
    pub fn addresses(&self) -> Addresses {
        let r = &self.report;
        let list = |it: &mut dyn Iterator<Item = &Failure>| it.map(|f| f.address.clone()).collect::<Vec<_>>();
        let mut complained = r.complained.clone();
        if r.kind == Kind::Complaint && complained.is_empty() {
            complained.extend(self.targets.iter().map(|(t, _)| t.email.clone()));
        }
        Addresses {
            permanent: list(&mut r.permanent()),
            temporary: list(&mut r.temporary()),
            refused: list(&mut r.refused()),
            complained,
            reasons: r.failures.iter().map(|f| (f.address.clone(), f.reason)).collect(),
        }
    }
}

/// A report's addresses, sorted by what they do to the reader.
#[derive(Debug, Clone, PartialEq)]
pub struct Addresses {
    pub permanent: Vec<String>,
    pub temporary: Vec<String>,
    pub refused: Vec<String>,
    pub complained: Vec<String>,
    pub reasons: std::collections::BTreeMap<String, Reason>,
}

/// The SHA-256 of a message, hex: the same message read twice is recorded once.
pub fn message_key(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Classifies one message, attributes it, and unless `dry_run` records it. `source` says where it
/// was read, for the record.
pub async fn process(
    store: &Store,
    key: &TokenKey,
    config: &Config,
    bytes: &[u8],
    source: &str,
    dry_run: bool,
) -> Result<Processed, StoreError> {
    let report = classify(bytes, config.email.bounce_address.as_ref());
    process_report(store, key, config, report, bytes, source, dry_run).await
}

/// The second half of `process`, for a message already classified (`unreadable::read` classifies
/// without letting one message stop the rest): attributes `report` and unless `dry_run` records it.
pub async fn process_report(
    store: &Store,
    key: &TokenKey,
    config: &Config,
    report: Report,
    bytes: &[u8],
    source: &str,
    dry_run: bool,
) -> Result<Processed, StoreError> {
    let targets = attribute(store, key, &report).await?;
    let message_key = message_key(bytes);
    let mut done = Vec::new();
    for target in targets {
        let effect = if dry_run {
            None
        } else {
            let event = BounceEvent {
                subscriber_id: target.subscriber_id,
                issue_id: target.issue_id.as_ref(),
                kind: target.kind,
                code: target.code,
                address: &target.address,
                reason: &target.reason,
                source,
                message_key: &message_key,
            };
            Some(store.record_bounce(&event, config.bounces.temporary_limit).await?)
        };
        done.push((target, effect));
    }
    Ok(Processed { report, targets: done })
}

/// What one message read whole came to.
#[derive(Debug)]
pub enum Outcome {
    /// A failure notice, a complaint, or a message ignored.
    Notice(Processed),
    /// A DMARC aggregate report, and what keeping it did (`None` on a dry run).
    Aggregate(crate::dmarc::AggregateReport, Option<Recorded>),
}

/// Reads one message (or a bare report file), and unless `dry_run` records what it says: a DMARC
/// aggregate report is kept, anything else is classified and attributed (`process_report`). The
/// inner `Err` says why it cannot be read, for the caller to set it aside.
pub async fn process_message(
    store: &Store,
    key: &TokenKey,
    config: &Config,
    bytes: &[u8],
    source: &str,
    dry_run: bool,
) -> Result<Result<Outcome, unreadable::Unreadable>, StoreError> {
    match unreadable::read_any(bytes, config.email.bounce_address.as_ref()) {
        Err(why) => Ok(Err(why)),
        Ok(unreadable::Readable::Aggregate(report)) => {
            let recorded = if dry_run { None } else { Some(store.dmarc().record(&report, source).await?) };
            Ok(Ok(Outcome::Aggregate(report, recorded)))
        }
        Ok(unreadable::Readable::Notice(report)) => {
            Ok(Ok(Outcome::Notice(process_report(store, key, config, report, bytes, source, dry_run).await?)))
        }
    }
}

/// What one DMARC aggregate report says and what keeping it did, in a line for people.
pub fn describe_aggregate(report: &crate::dmarc::AggregateReport, recorded: Option<Recorded>) -> String {
    let messages: i64 = report.rows.iter().map(|r| r.count).sum();
    let failed: i64 = report.rows.iter().filter(|r| !r.dkim_aligned && !r.spf_aligned).map(|r| r.count).sum();
    let day = chrono::DateTime::from_timestamp(report.begin, 0).map(|t| t.date_naive().to_string()).unwrap_or_default();
    let result = match recorded {
        None => "dry run: nothing changed",
        Some(Recorded::Kept { .. }) => "kept (`gazette dmarc` shows it)",
        Some(Recorded::Duplicate) => "read before: nothing new",
    };
    format!(
        "DMARC aggregate report {} from {} for {}, {day}: {messages} messages, {failed} failed both DKIM and SPF aligned -> {result}",
        report.report_id, report.org, report.domain
    )
}

/// Who a report is about: the subscriber its VERP token names, else the delivery whose
/// Message-ID it returns, else each subscriber whose address it names as failed or complaining.
pub async fn attribute(store: &Store, key: &TokenKey, report: &Report) -> Result<Vec<Target>, StoreError> {
    if report.kind == Kind::Ignored {
        return Ok(Vec::new());
    }
    let mut delivery: Option<(i64, IssueId, By)> = None;
    for token in &report.verp_tokens {
        if let Some((id, issue)) = verify_bounce_token(key, token) {
            delivery = Some((id, issue, By::Verp));
            break;
        }
    }
    if delivery.is_none() {
        for message_id in &report.original_message_ids {
            if let Some((issue, id)) = store.delivery_by_message_id(message_id).await? {
                delivery = Some((id, issue, By::MessageId));
                break;
            }
        }
    }
    if let Some((id, issue, by)) = delivery {
        let Some(subscriber) = store.subscriber_by_id(id).await? else { return Ok(Vec::new()) };
        let (kind, code, address, reason) = match report.kind {
            Kind::Complaint => {
                (EventKind::Complaint, None, report.complained.first().cloned(), format!("{} report", report.note))
            }
            // The failure that weighs most on the reader: the address's, the mailbox's, else a refusal.
            _ => match report
                .permanent()
                .next()
                .or_else(|| report.temporary().next())
                .or_else(|| report.refused().next())
            {
                Some(f) => (EventKind::of(f.scope()), Some(f.reason), Some(f.address.clone()), f.detail.clone()),
                None => return Ok(Vec::new()),
            },
        };
        let address = address.unwrap_or_else(|| subscriber.email.clone());
        return Ok(vec![Target {
            subscriber_id: id,
            email: subscriber.email,
            issue_id: Some(issue),
            by,
            kind,
            code,
            address,
            reason,
        }]);
    }
    // Only the addresses are left: each one that is a subscriber's.
    // A failure names the address that failed and, apart, the one it was sent to when they
    // differ (a forwarding address): either may be the subscriber's.
    let named: Vec<(Vec<String>, EventKind, Option<Reason>, String)> = match report.kind {
        Kind::Complaint => report
            .complained
            .iter()
            .map(|a| (vec![a.clone()], EventKind::Complaint, None, format!("{} report", report.note)))
            .collect(),
        _ => report
            .failures
            .iter()
            .map(|f| {
                (
                    std::iter::once(f.address.clone()).chain(f.original.clone()).collect(),
                    EventKind::of(f.scope()),
                    Some(f.reason),
                    f.detail.clone(),
                )
            })
            .collect(),
    };
    let mut targets: Vec<Target> = Vec::new();
    for (addresses, kind, code, reason) in named {
        let mut found = None;
        for a in &addresses {
            let Ok(email) = SubscriberEmail::parse(a) else { continue };
            if let Some(subscriber) = store.subscriber_by_email(&email).await? {
                found = Some(subscriber);
                break;
            }
        }
        let Some(subscriber) = found else { continue };
        let address = addresses[0].clone();
        if targets.iter().any(|t| t.subscriber_id == subscriber.id) {
            continue;
        }
        let issue_id = store.latest_delivery(subscriber.id).await?;
        targets.push(Target {
            subscriber_id: subscriber.id,
            email: subscriber.email,
            issue_id,
            by: By::Address,
            kind,
            code,
            address,
            reason,
        });
    }
    Ok(targets)
}

/// What one processed message did, in a line for people.
pub fn describe(p: &Processed) -> String {
    let r = &p.report;
    let what = match r.kind {
        Kind::Ignored => return format!("ignored: {}", r.note),
        Kind::Complaint => format!(
            "complaint ({})",
            if r.complained.is_empty() { "address not given".into() } else { r.complained.join(", ") }
        ),
        Kind::Bounce => r
            .failures
            .iter()
            .map(|f| match f.scope() {
                Scope::Address => format!("permanent failure for {} ({}: {})", f.address, f.reason, f.detail),
                Scope::Mailbox => format!("temporary failure for {} ({}: {})", f.address, f.reason, f.detail),
                Scope::Sender => {
                    format!("refused{} ({}) for {} ({})", refused_words(f.reason), f.reason, f.address, f.detail)
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
    };
    if p.targets.is_empty() {
        return format!("{what}; no known subscriber: nothing changed");
    }
    let outcomes: Vec<String> = p
        .targets
        .iter()
        .map(|(t, effect)| {
            let issue = t.issue_id.as_ref().map(|i| format!(", issue {i}")).unwrap_or_default();
            let result = match effect {
                None => "dry run: nothing changed".to_string(),
                Some(Effect::Became(s)) => format!("now {s}"),
                Some(Effect::Counted { count, limit }) => {
                    format!("temporary failure counted ({count} of {limit} issues in a row)")
                }
                Some(Effect::Refused { provider }) => {
                    format!("not counted against the reader; kept as a refusal by {provider}")
                }
                Some(Effect::Unchanged(s)) => format!("recorded; already {s}"),
                Some(Effect::Duplicate) => "read before: nothing new".to_string(),
            };
            format!("{} (by {}{issue}): {result}", t.email, t.by)
        })
        .collect();
    format!("{what} -> {}", outcomes.join("; "))
}

/// What a refusal of the message or the sender says after "refused": ` as spam`, ` by the
/// receiving site's policy`, or `: the sending server is blocked`.
pub fn refused_words(reason: Reason) -> String {
    match reason.describe().strip_prefix("refused ") {
        Some(rest) => format!(" {rest}"),
        None => format!(": {}", reason.describe()),
    }
}
