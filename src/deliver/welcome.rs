//! The welcome a reader receives once, when they confirm: queued in the welcome ledger
//! (`store::welcomes`), rendered (`render::render_welcome`) and built as an issue's copy is
//! (`PreparedEmail`: the same headers, List-Unsubscribe one-click, DKIM signature and size budget),
//! then sent over a connection of its own. Its outcome is recorded as the send loop records an
//! issue's (`send_loop::outcome_of`): a 4xx defers it with a growing wait, a 5xx ends it (an
//! address that does not work also marks the reader bounced; a refusal of the mailbox or the sender
//! goes to the bounce policy).
//!
//! Return path: with `[email] bounce_address` set, a welcome goes out from that address as it is,
//! without a VERP token (a token names an issue, and a welcome is none); a failure notice that
//! comes back is then attributed by the address that failed. The DSN envelope id is `welcome.<id>`.

use std::time::SystemTime;

use chrono::{DateTime, Utc};

use super::send_loop::outcome_of;
use super::{
    Connection, Connector, PreparedEmail, Recipient, ReturnPath, StopFlag, Transport, mailbox, preferences_url,
    unsubscribe_url,
};
use crate::config::Config;
use crate::digest::Listed;
use crate::issue::Issue;
use crate::render::{self, Templates};
use crate::store::bounces::{AT_SENDING, BounceEvent, EventKind};
use crate::store::ledger::{Claimed, Outcome};
use crate::store::welcomes::Claim;
use crate::store::{Store, TokenKey};

/// A deferred welcome waits this long before its second attempt, twice as long before each next ...
const FIRST_WAIT: i64 = 300;
/// ... up to this ...
const LONGEST_WAIT: i64 = 6 * 3600;
/// ... and after this many attempts it is failed: the relay did not take it in about a day.
pub const MAX_ATTEMPTS: i64 = 10;
/// Welcomes a retry round sends at most; the rest follow in the next rounds.
const PER_ROUND: i64 = 50;

/// What became of one welcome.
#[derive(Debug, Clone, PartialEq)]
pub enum Welcomed {
    Sent,
    /// A passing failure: tried again from `retry_at` (Unix seconds).
    Deferred {
        error: String,
        retry_at: i64,
    },
    /// A refusal, or the attempts ran out: never tried again.
    Failed(String),
    /// The address does not work: the reader is bounced too.
    Bounced(String),
    /// The reader is no longer active.
    Skipped(String),
    /// Nothing to send: sent or ended already, being sent by another, not due, or never queued.
    Nothing,
}

/// What sending a welcome needs: the parts `serve` holds.
pub struct Welcomer<'a> {
    pub config: &'a Config,
    pub store: &'a Store,
    pub key: &'a TokenKey,
    pub templates: &'a Templates,
    pub transport: &'a Transport,
}

impl Welcomer<'_> {
    /// Queues the welcome of a reader who has just confirmed; true when it was queued now, false
    /// when they had one already (once ever, even after an unsubscribe and a new confirmation).
    pub async fn queue(&self, subscriber_id: i64, now: DateTime<Utc>) -> anyhow::Result<bool> {
        let domain = self.config.email.from.email.domain();
        Ok(self.store.welcomes().queue(subscriber_id, domain, now.timestamp()).await?)
    }

    /// Sends the welcome of `subscriber_id` if it is pending and due at `now`, and records what
    /// became of it. `latest` is the latest published issue, whose contents it lists. Only an
    /// error of the database is an error; the mail's own failures are outcomes.
    pub async fn send<D: Listed>(
        &self,
        subscriber_id: i64,
        latest: Option<&Issue<D>>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Welcomed> {
        let job = match self.store.welcomes().claim(subscriber_id, now.timestamp()).await? {
            Claim::Claimed(job) => job,
            Claim::Skipped(why) => return Ok(Welcomed::Skipped(why)),
            Claim::Nothing => return Ok(Welcomed::Nothing),
        };
        let outcome = match self.attempt(&job, latest, now).await {
            Ok(()) => Outcome::Sent,
            Err(outcome) => outcome,
        };
        let outcome = match outcome {
            Outcome::Deferred { error, .. } => deferral(error, job.attempts + 1, now.timestamp()),
            other => other,
        };
        if let Outcome::Refused { error, refusal } = &outcome {
            let key = format!("smtp:welcome.{subscriber_id}");
            let event = BounceEvent {
                subscriber_id,
                issue_id: None,
                kind: EventKind::of(refusal.scope),
                code: Some(refusal.reason),
                address: &job.email,
                reason: error,
                source: AT_SENDING,
                message_key: &key,
            };
            self.store.record_bounce(&event, self.config.bounces.temporary_limit).await?;
        }
        self.store.welcomes().record(subscriber_id, &outcome, now.timestamp()).await?;
        Ok(match outcome {
            Outcome::Sent => Welcomed::Sent,
            Outcome::Deferred { error, retry_at } => Welcomed::Deferred { error, retry_at },
            Outcome::Bounced { error, .. } => Welcomed::Bounced(error),
            Outcome::Refused { error, .. } | Outcome::Failed(error) => Welcomed::Failed(error),
            Outcome::Unclaimed => Welcomed::Nothing,
            Outcome::Skipped(why) => Welcomed::Skipped(why),
        })
    }

    /// One try: renders, builds and puts the welcome on its way; the outcome when it did not go.
    async fn attempt<D: Listed>(
        &self,
        job: &Claimed,
        latest: Option<&Issue<D>>,
        now: DateTime<Utc>,
    ) -> Result<(), Outcome> {
        // A broken template or an unreadable DKIM key is the editor's to fix (`check` and `serve`'s
        // start find both): the welcome waits for the fix instead of failing.
        let later = |e: &dyn std::fmt::Display| Outcome::Deferred { error: e.to_string(), retry_at: 0 };
        let body = render::render_welcome(self.config, self.templates, latest).map_err(|e| later(&e))?;
        let email =
            PreparedEmail::new(self.config, &body.subject, &body.html, &body.text, false, SystemTime::from(now))
                .map_err(|e| later(&format!("{e:#}")))?;
        let url = unsubscribe_url(self.config, self.key, job.subscriber_id);
        let preferences = preferences_url(self.config, self.key, job.subscriber_id);
        let built = mailbox(&job.email, job.name.as_deref()).and_then(|mailbox| {
            email.build(&Recipient {
                mailbox,
                unsubscribe_url: &url,
                preferences_url: &preferences,
                message_id: &job.message_id,
            })
        });
        let built = built.map_err(|e| Outcome::Failed(format!("cannot build the message: {e:#}")))?;
        let mut connection = self.transport.open();
        let sent = super::transmit(
            &mut connection,
            &built,
            &job.message_id,
            return_path(self.config, job.subscriber_id),
            &StopFlag::default(),
            std::future::ready(true),
        )
        .await;
        connection.close().await;
        sent.map_err(outcome_of)
    }

    /// Puts back to pending the welcomes a process that died left `sending`: those older than
    /// `in_flight_limit`, longer than any live attempt takes. Returns how many.
    pub async fn requeue_stale(&self, now: DateTime<Utc>) -> anyhow::Result<u64> {
        let stale = now.timestamp() - in_flight_limit(self.config);
        let requeued = self.store.welcomes().requeue_in_flight(stale, now.timestamp()).await?;
        if requeued > 0 {
            tracing::warn!("{requeued} welcome(s) left in flight by a process that stopped: sending them again");
        }
        Ok(requeued)
    }

    /// The subscribers whose welcome is due at `now`, as many as a retry round sends.
    pub async fn due(&self, now: DateTime<Utc>) -> anyhow::Result<Vec<i64>> {
        Ok(self.store.welcomes().due(now.timestamp(), PER_ROUND).await?)
    }
}

/// Says in the log what became of subscriber `id`'s welcome (ids, not addresses).
pub fn log(id: i64, welcomed: &Welcomed) {
    match welcomed {
        Welcomed::Sent => tracing::info!("welcome sent to subscriber {id}"),
        Welcomed::Deferred { error, retry_at } => {
            tracing::warn!(
                "the welcome of subscriber {id} did not go out: {error}; tried again at {retry_at} (Unix time)"
            )
        }
        Welcomed::Failed(error) => tracing::error!("the welcome of subscriber {id} failed: {error}"),
        Welcomed::Bounced(error) => {
            tracing::warn!("the welcome of subscriber {id} bounced: {error}; the reader is bounced")
        }
        Welcomed::Skipped(why) => tracing::info!("the welcome of subscriber {id} is skipped: {why}"),
        Welcomed::Nothing => {}
    }
}

/// A deferred attempt, the `attempts`-th: due again after a wait that doubles with each attempt,
/// or failed once `MAX_ATTEMPTS` have been made.
fn deferral(error: String, attempts: i64, now: i64) -> Outcome {
    if attempts >= MAX_ATTEMPTS {
        return Outcome::Failed(format!("{error}; gave up after {attempts} attempts"));
    }
    let wait = FIRST_WAIT.saturating_mul(1 << (attempts - 1).clamp(0, 20)).min(LONGEST_WAIT);
    Outcome::Deferred { error, retry_at: now + wait }
}

/// Longer than an attempt can take: the connection and the greeting, then the message (three
/// times `[smtp] timeout`), and a minute to spare. A welcome `sending` for longer was left so.
fn in_flight_limit(config: &Config) -> i64 {
    5 * config.smtp.timeout.as_secs() as i64 + 60
}

/// The envelope sender of a welcome: `[email] bounce_address` as it is (no VERP token: see the
/// module's comment), or `None` for the From address.
pub fn return_path(config: &Config, subscriber_id: i64) -> Option<ReturnPath> {
    let bounce = config.email.bounce_address.as_ref()?;
    Some(ReturnPath { sender: bounce.clone(), envid: format!("welcome.{subscriber_id}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deferred_welcome_waits_longer_each_time_and_is_failed_at_last() {
        let retry = |attempts| match deferral("450 busy".into(), attempts, 1000) {
            Outcome::Deferred { retry_at, .. } => Some(retry_at - 1000),
            Outcome::Failed(e) => {
                assert_eq!(e, format!("450 busy; gave up after {attempts} attempts"));
                None
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(retry(1), Some(300));
        assert_eq!(retry(2), Some(600));
        assert_eq!(retry(7), Some(300 << 6));
        assert_eq!(retry(8), Some(LONGEST_WAIT));
        assert_eq!(retry(MAX_ATTEMPTS - 1), Some(LONGEST_WAIT));
        assert_eq!(retry(MAX_ATTEMPTS), None);
    }
}
