//! The reputation guard: an issue's complaint rate, hard-bounce rate and refusals of the sender by
//! recipient domain, judged against `[reputation]` (the limits receivers publish: Gmail and Yahoo
//! hold bulk senders to complaints under 0.3%). When the last issue sent passed one, the next issue
//! is held: the scheduler does not send it until the editor sends it by hand or lifts the hold
//! (`gazette lift-hold`). The hold is read from the stored numbers each time; only a lift is kept.

use crate::bounces::Reason;
use crate::config::Reputation;
use crate::issue_id::IssueId;
use crate::store::Store;
use crate::store::holds::{Lift, SendNumbers};

/// The reasons of a refusal that are the sender's reputation: spam, a blocklist, a policy.
const SENDER_REASONS: [Reason; 3] = [Reason::SpamDetected, Reason::Blocked, Reason::PolicyViolation];

/// One issue's numbers, as rates.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Rates {
    /// Messages the servers took and that did not come back (the ledger's `sent`).
    pub delivered: i64,
    /// Complaints (feedback reports) that came back for the issue.
    pub complaints: i64,
    /// Complaints over delivered; `None` before anything was delivered.
    pub complaint_rate: Option<f64>,
    /// Addresses that do not exist, at sending or reported after it.
    pub hard_bounces: i64,
    /// Hard bounces over delivered and bounced; `None` before anything was tried.
    pub hard_bounce_rate: Option<f64>,
    /// Refusals of the sender (spam, blocklist, policy) by recipient domain, the most first.
    pub refused: Vec<DomainRefusals>,
}

/// How many messages one recipient domain refused as the sender's problem.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DomainRefusals {
    pub domain: String,
    pub messages: i64,
    /// The reasons' names (`spamdetected`, `blocked`, `policyviolation`).
    pub reasons: Vec<String>,
}

/// A threshold an issue passed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "rate", rename_all = "snake_case")]
pub enum Breach {
    ComplaintRate { value: f64, limit: f64, complaints: i64, delivered: i64 },
    HardBounceRate { value: f64, limit: f64, hard_bounces: i64, tried: i64 },
    RefusedMessages { domain: String, messages: i64, limit: u32, reasons: Vec<String> },
}

/// A rate as people read it: `0.50%`.
pub fn percent(rate: f64) -> String {
    format!("{:.2}%", rate * 100.0)
}

impl std::fmt::Display for Breach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Breach::ComplaintRate { value, limit, complaints, delivered } => write!(
                f,
                "complaint rate {} ({complaints} complaints of {delivered} delivered) is over [reputation] complaint_rate = {}",
                percent(*value),
                percent(*limit)
            ),
            Breach::HardBounceRate { value, limit, hard_bounces, tried } => write!(
                f,
                "hard-bounce rate {} ({hard_bounces} of {tried} messages) is over [reputation] hard_bounce_rate = {}",
                percent(*value),
                percent(*limit)
            ),
            Breach::RefusedMessages { domain, messages, limit, reasons } => write!(
                f,
                "{domain} refused {messages} message(s) as the sender's problem ({}), at least [reputation] refused_messages = {limit}",
                reasons.join(", ")
            ),
        }
    }
}

/// The rates of an issue's numbers.
pub fn rates(numbers: &SendNumbers) -> Rates {
    let c = &numbers.counts;
    let delivered = c.sent;
    let complaints = numbers.returned.complaints;
    // A bounce reported after the send moves its delivery from sent to bounced in the ledger, so the
    // ledger's `bounced` holds both kinds once each.
    let hard_bounces = c.bounced;
    let ratio = |n: i64, of: i64| (of > 0).then(|| n as f64 / of as f64);
    let mut refused: Vec<DomainRefusals> = Vec::new();
    for r in &numbers.refusals {
        if !Reason::parse(&r.reason).is_some_and(|reason| SENDER_REASONS.contains(&reason)) {
            continue;
        }
        match refused.iter_mut().find(|d| d.domain == r.provider) {
            Some(d) => {
                d.messages += r.messages;
                d.reasons.push(r.reason.clone());
            }
            None => refused.push(DomainRefusals {
                domain: r.provider.clone(),
                messages: r.messages,
                reasons: vec![r.reason.clone()],
            }),
        }
    }
    refused.sort_by(|a, b| b.messages.cmp(&a.messages).then_with(|| a.domain.cmp(&b.domain)));
    Rates {
        delivered,
        complaints,
        complaint_rate: ratio(complaints, delivered),
        hard_bounces,
        hard_bounce_rate: ratio(hard_bounces, delivered + hard_bounces),
        refused,
    }
}

/// The thresholds `rates` passed (a rate over its limit; a domain with at least `refused_messages`
/// refusals), in the order of `[reputation]`.
pub fn breaches(rates: &Rates, limits: &Reputation) -> Vec<Breach> {
    let mut found = Vec::new();
    if let (Some(value), Some(limit)) = (rates.complaint_rate, limits.complaint_rate)
        && value > limit
    {
        found.push(Breach::ComplaintRate { value, limit, complaints: rates.complaints, delivered: rates.delivered });
    }
    if let (Some(value), Some(limit)) = (rates.hard_bounce_rate, limits.hard_bounce_rate)
        && value > limit
    {
        let tried = rates.delivered + rates.hard_bounces;
        found.push(Breach::HardBounceRate { value, limit, hard_bounces: rates.hard_bounces, tried });
    }
    if limits.refused_messages > 0 {
        for d in rates.refused.iter().filter(|d| d.messages >= i64::from(limits.refused_messages)) {
            found.push(Breach::RefusedMessages {
                domain: d.domain.clone(),
                messages: d.messages,
                limit: limits.refused_messages,
                reasons: d.reasons.clone(),
            });
        }
    }
    found
}

/// An issue's standing: its rates and the thresholds they passed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Standing {
    pub issue: IssueId,
    pub number: i64,
    pub rates: Rates,
    pub breaches: Vec<Breach>,
}

impl Standing {
    pub async fn of(store: &Store, limits: &Reputation, issue: &IssueId, number: i64) -> anyhow::Result<Standing> {
        let rates = rates(&store.send_numbers(issue).await?);
        let breaches = breaches(&rates, limits);
        Ok(Standing { issue: issue.clone(), number, rates, breaches })
    }
}

/// Whether an issue may be sent by the scheduler, as far as the reputation guard is concerned.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "hold", rename_all = "snake_case")]
pub enum Hold {
    /// No issue was sent before it, or the last one passed no threshold.
    Clear,
    /// The last issue sent before it passed these thresholds: not sent on its own.
    Held { by: Box<Standing> },
    /// It was held, and the editor lifted the hold.
    Lifted { lifted_at: i64, reason: String },
}

impl Hold {
    /// The hold of `issue`: read from the last send before it and the editor's lifts.
    pub async fn of(store: &Store, limits: &Reputation, issue: &IssueId) -> anyhow::Result<Hold> {
        if let Some(Lift { lifted_at, reason }) = store.hold_lift(issue).await? {
            return Ok(Hold::Lifted { lifted_at, reason });
        }
        let Some((last, number)) = store.last_send_before(issue).await? else { return Ok(Hold::Clear) };
        let standing = Standing::of(store, limits, &last, number).await?;
        Ok(if standing.breaches.is_empty() { Hold::Clear } else { Hold::Held { by: Box::new(standing) } })
    }

    /// Why an issue is held, in one line (`None` when it is not).
    pub fn why(&self) -> Option<String> {
        let Hold::Held { by } = self else { return None };
        let list: Vec<String> = by.breaches.iter().map(ToString::to_string).collect();
        Some(format!(
            "the last issue sent, #{} (week {}), passed the reputation guard: {}",
            by.number,
            by.issue,
            list.join("; ")
        ))
    }
}

/// What `gazette status` says of an issue's reputation: the standing of the issue when its send
/// started, else of the last one sent before it; and, for an issue not sent yet, its hold.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StatusReport {
    pub standing: Option<Standing>,
    pub hold: Option<Hold>,
}

impl StatusReport {
    pub async fn of(store: &Store, limits: &Reputation, issue: &IssueId) -> anyhow::Result<StatusReport> {
        if let Some(record) = store.ledger().send_record(issue).await? {
            let standing = Standing::of(store, limits, issue, record.number).await?;
            return Ok(StatusReport { standing: Some(standing), hold: None });
        }
        let standing = match store.last_send_before(issue).await? {
            Some((last, number)) => Some(Standing::of(store, limits, &last, number).await?),
            None => None,
        };
        Ok(StatusReport { standing, hold: Some(Hold::of(store, limits, issue).await?) })
    }

    /// The lines for people.
    pub fn lines(&self, limits: &Reputation, issue: &IssueId) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(s) = &self.standing {
            lines.extend(standing_lines(s, limits));
        }
        match (&self.standing, &self.hold) {
            (Some(s), None) if !s.breaches.is_empty() => lines.push(
                "so `gazette run` holds the issue after this one, until you send it by hand (`gazette send --week W`) or lift its hold (`gazette lift-hold --week W`)".into()
            ),
            (_, Some(hold @ Hold::Held { .. })) => lines.push(format!(
                "this issue is held: {}; `gazette lift-hold --week {issue}` lets the next round send it, `gazette send --week {issue}` sends it now",
                hold.why().unwrap_or_default()
            )),
            (_, Some(Hold::Lifted { lifted_at, reason })) => lines.push(format!(
                "this issue was held ({reason}), and the hold was lifted at {}",
                chrono::DateTime::from_timestamp(*lifted_at, 0).map(|t| t.to_rfc3339()).unwrap_or_default()
            )),
            _ => {}
        }
        if !lines.is_empty() {
            lines.insert(0, String::new());
        }
        lines
    }
}

/// The lines `gazette status` shows for a standing: each rate against its limit.
pub fn standing_lines(s: &Standing, limits: &Reputation) -> Vec<String> {
    let r = &s.rates;
    let rate = |value: Option<f64>| value.map(percent).unwrap_or_else(|| "-".into());
    let limit = |value: Option<f64>| value.map(percent).unwrap_or_else(|| "off".into());
    let mark = |over: bool| if over { "  OVER" } else { "" };
    let over = |v: Option<f64>, l: Option<f64>| matches!((v, l), (Some(v), Some(l)) if v > l);
    let mut lines = vec![
        format!("reputation of issue #{} (week {}), against [reputation] in publish.toml:", s.number, s.issue),
        format!(
            "  complaints      {:>7}  {:>7} of {} delivered, limit {}{}",
            r.complaints,
            rate(r.complaint_rate),
            r.delivered,
            limit(limits.complaint_rate),
            mark(over(r.complaint_rate, limits.complaint_rate))
        ),
        format!(
            "  hard bounces    {:>7}  {:>7} of {} tried, limit {}{}",
            r.hard_bounces,
            rate(r.hard_bounce_rate),
            r.delivered + r.hard_bounces,
            limit(limits.hard_bounce_rate),
            mark(over(r.hard_bounce_rate, limits.hard_bounce_rate))
        ),
    ];
    if r.refused.is_empty() {
        lines.push("  refused as the sender's problem (spam, blocklist, policy): by no domain".into());
    }
    for d in &r.refused {
        let over = limits.refused_messages > 0 && d.messages >= i64::from(limits.refused_messages);
        lines.push(format!(
            "  {} refused {} message(s) as the sender's problem ({}){}",
            d.domain,
            d.messages,
            d.reasons.join(", "),
            mark(over)
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::bounces::{ProviderRefusals, Returned};
    use crate::store::ledger::Counts;

    fn limits() -> Reputation {
        Reputation { complaint_rate: Some(0.003), hard_bounce_rate: Some(0.02), refused_messages: 1 }
    }

    fn numbers(sent: i64, bounced: i64, complaints: i64, refusals: &[(&str, &str, i64)]) -> SendNumbers {
        SendNumbers {
            counts: Counts { total: sent + bounced, sent, bounced, ..Counts::default() },
            returned: Returned { complaints, ..Returned::default() },
            refusals: refusals
                .iter()
                .map(|(p, r, n)| ProviderRefusals { provider: p.to_string(), reason: r.to_string(), messages: *n })
                .collect(),
        }
    }

    #[test]
    fn a_rate_passes_its_limit_only_when_over_it() {
        // 3 of 1000 is the limit itself; 4 of 1000 is over it.
        assert!(breaches(&rates(&numbers(1000, 0, 3, &[])), &limits()).is_empty());
        let over = breaches(&rates(&numbers(1000, 0, 5, &[])), &limits());
        assert_eq!(over, [Breach::ComplaintRate { value: 0.005, limit: 0.003, complaints: 5, delivered: 1000 }]);
        assert_eq!(
            over[0].to_string(),
            "complaint rate 0.50% (5 complaints of 1000 delivered) is over [reputation] complaint_rate = 0.30%"
        );
        // 21 bounced of 1000 tried: 2.1%.
        let bounced = breaches(&rates(&numbers(979, 21, 0, &[])), &limits());
        assert!(matches!(bounced[..], [Breach::HardBounceRate { hard_bounces: 21, tried: 1000, .. }]), "{bounced:?}");
        // Nothing delivered: no rate, nothing passed.
        assert!(breaches(&rates(&numbers(0, 0, 0, &[])), &limits()).is_empty());
        // Turned off.
        let off = Reputation { complaint_rate: None, hard_bounce_rate: None, refused_messages: 0 };
        assert!(breaches(&rates(&numbers(10, 10, 10, &[("gmail.com", "spamdetected", 3)])), &off).is_empty());
    }

    #[test]
    fn only_refusals_of_the_sender_count_by_domain() {
        let r = rates(&numbers(
            100,
            0,
            0,
            &[
                ("gmail.com", "spamdetected", 2),
                ("gmail.com", "blocked", 1),
                ("example.org", "mesgtoobig", 5),
                ("yahoo.com", "policyviolation", 1),
            ],
        ));
        assert_eq!(
            r.refused.iter().map(|d| (d.domain.as_str(), d.messages)).collect::<Vec<_>>(),
            [("gmail.com", 3), ("yahoo.com", 1)]
        );
        let found = breaches(&r, &Reputation { refused_messages: 2, ..limits() });
        assert_eq!(found.len(), 1);
        assert!(found[0].to_string().starts_with("gmail.com refused 3 message(s)"), "{}", found[0]);
    }
}
