//! The welcome ledger: one welcome per subscriber, ever, queued when they confirm. The states and
//! columns mean what the delivery ledger's do (`ledger`), keyed by the subscriber alone:
//!
//! ```text
//! queue (once ever) --> pending --claim (one claimer wins)--> sending --accepted--> sent
//!                          ^                                    |--4xx--> pending (next_attempt_at later)
//!                          |                                    |--5xx to RCPT, the address does not work--> bounced
//!                          |                                    '--other 5xx--> failed
//!                          '-- rows left `sending` by a crash (same Message-ID on the resend)
//! claim of a row whose subscriber is no longer active --> skipped, saying why
//! ```

use super::status_reason;
use super::{Backend, DeliveryState, Pool, Store};
use crate::store::Status;
use crate::store::ledger::{Claimed, Counts, Outcome};

use DeliveryState::{Bounced, Failed, Pending, Sending, Sent, Skipped};

type Result<T> = std::result::Result<T, sqlx::Error>;

/// What a claim of one subscriber's welcome found.
#[derive(Debug, Clone)]
pub enum Claim {
    /// Taken for sending, by this claimer alone: send it and record the outcome.
    Claimed(Claimed),
    /// The subscriber is no longer active: marked skipped with this reason.
    Skipped(String),
    /// Nothing to send now: none queued, already sent or ended, taken by another claimer, or a
    /// deferred one not due yet.
    Nothing,
}

/// One welcome as the ledger has it, for `status` and the tests.
#[derive(Debug, Clone, PartialEq)]
pub struct Welcome {
    pub subscriber_id: i64,
    pub state: DeliveryState,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub message_id: String,
    pub next_attempt_at: i64,
    pub queued_at: i64,
    pub sent_at: Option<i64>,
}

/// The welcome ledger's statements, on the store they were taken from (`Store::welcomes`).
#[derive(Debug, Clone, Copy)]
pub struct Welcomes<'a> {
    pool: &'a Pool,
}

impl Store {
    /// The welcome ledger of this store.
    pub fn welcomes(&self) -> Welcomes<'_> {
        Welcomes { pool: &self.pool }
    }
}

/// subscriber_id, state, attempts, last_error, message_id, next_attempt_at, queued_at, sent_at.
type WelcomeRow = (i64, DeliveryState, i64, Option<String>, String, i64, i64, Option<i64>);

impl Welcomes<'_> {
    /// Queues the welcome of `subscriber_id`, with its Message-ID
    /// (`<welcome.subscriber.random@domain>`, fixed for every attempt). Once ever: true when it was
    /// queued now, false when the subscriber has (or had) one already, whatever became of it.
    pub async fn queue(&self, subscriber_id: i64, message_id_domain: &str, now: i64) -> Result<bool> {
        // The random part, drawn per welcome, keeps a reader from spelling another's Message-ID
        // (a returned Message-ID attributes a bounce).
        let message_id = format!("<welcome.{subscriber_id}.{:016x}@{message_id_domain}>", rand::random::<u64>());
        let done = with_pool!(self.pool, p => sqlx::query(
            "INSERT INTO welcomes (subscriber_id, message_id, queued_at, updated_at) VALUES ($1, $2, $3, $3)
             ON CONFLICT (subscriber_id) DO NOTHING",
        )
        .bind(subscriber_id)
        .bind(message_id)
        .bind(now)
        .execute(p)
        .await?
        .rows_affected());
        Ok(done == 1)
    }

    /// Takes the welcome of `subscriber_id` for sending when it is pending and due at `now`: marks
    /// it `sending` and counts the attempt. Of claimers at the same moment exactly one gets it. A
    /// subscriber who is no longer active has theirs skipped instead, with the reason.
    pub async fn claim(&self, subscriber_id: i64, now: i64) -> Result<Claim> {
        with_pool!(self.pool, p => {
            let mut tx = p.begin_write().await?;
            let row: Option<(String, Option<String>, String, i64, String)> = sqlx::query_as(
                "SELECT s.email, s.name, w.message_id, w.attempts, s.status FROM welcomes w JOIN subscribers s ON s.id = w.subscriber_id
                 WHERE w.subscriber_id = $1 AND w.state = $2 AND w.next_attempt_at <= $3",
            )
            .bind(subscriber_id)
            .bind(Pending)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((email, name, message_id, attempts, status)) = row else { return Ok(Claim::Nothing) };
            let active = status == Status::Active.as_str();
            let why = format!("subscriber is {status}");
            let (state, error) = if active { (Sending, None) } else { (Skipped, Some(why.as_str())) };
            // `AND state = pending` again: on PostgreSQL a concurrent claimer may have taken it
            // between the read and this write; only one update finds it pending.
            let taken = sqlx::query(
                "UPDATE welcomes SET state = $2, attempts = attempts + $3, last_error = COALESCE($4, last_error), updated_at = $5
                 WHERE subscriber_id = $1 AND state = $6",
            )
            .bind(subscriber_id)
            .bind(state)
            .bind(i64::from(active))
            .bind(error)
            .bind(now)
            .bind(Pending)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            tx.commit().await?;
            Ok(match (taken, active) {
                (false, _) => Claim::Nothing,
                (true, false) => Claim::Skipped(why),
                (true, true) => Claim::Claimed(Claimed { subscriber_id, email, name, message_id, attempts, themes: None }),
            })
        })
    }

    /// Records the outcome of a claimed welcome's attempt. A bounce (the address does not work)
    /// marks the subscriber bounced too, as the delivery ledger does; what a refusal of the
    /// mailbox or the sender does to the reader is the bounce policy's (`Store::record_bounce`).
    pub async fn record(&self, subscriber_id: i64, outcome: &Outcome, now: i64) -> Result<()> {
        let (state, error, retry_at, sent_at) = match outcome {
            Outcome::Sent => (Sent, None, 0, Some(now)),
            Outcome::Deferred { error, retry_at } => (Pending, Some(error.as_str()), *retry_at, None),
            Outcome::Bounced { error, .. } => (Bounced, Some(error.as_str()), 0, None),
            Outcome::Refused { error, .. } | Outcome::Failed(error) => (Failed, Some(error.as_str()), 0, None),
            Outcome::Unclaimed => (Pending, None, 0, None),
            Outcome::Skipped(why) => (Skipped, Some(why.as_str()), 0, None),
        };
        let uncount = i64::from(matches!(outcome, Outcome::Unclaimed | Outcome::Skipped(_)));
        with_pool!(self.pool, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query(
                "UPDATE welcomes SET state = $2, last_error = CASE WHEN $2 = $8 THEN NULL ELSE COALESCE($3, last_error) END,
                 next_attempt_at = $4, attempts = attempts - $5, updated_at = $6, sent_at = COALESCE($7, sent_at)
                 WHERE subscriber_id = $1 AND state = $9",
            )
            .bind(subscriber_id)
            .bind(state)
            .bind(error)
            .bind(retry_at)
            .bind(uncount)
            .bind(now)
            .bind(sent_at)
            .bind(Sent)
            .bind(Sending)
            .execute(&mut *tx)
            .await?;
            if let Outcome::Bounced { error, reason } = outcome {
                sqlx::query(
                    "UPDATE subscribers SET status = $3, bounced_at = $2, status_changed_at = $2, status_reason = $5 WHERE id = $1 AND status = $4",
                )
                .bind(subscriber_id)
                .bind(now)
                .bind(Status::Bounced.as_str())
                .bind(Status::Active.as_str())
                .bind(status_reason(Some(*reason), &format!("{error} (refused at sending the welcome)")))
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Puts back to pending, due at once, the welcomes left `sending` since before `before` (by a
    /// process that died mid-send: their outcome is unknown; the resend carries the same
    /// Message-ID). Returns how many. `before` leaves alone what a live process is sending now.
    pub async fn requeue_in_flight(&self, before: i64, now: i64) -> Result<u64> {
        Ok(with_pool!(self.pool, p => sqlx::query(
            "UPDATE welcomes SET state = $1, next_attempt_at = 0, updated_at = $3 WHERE state = $2 AND updated_at < $4",
        )
        .bind(Pending)
        .bind(Sending)
        .bind(now)
        .bind(before)
        .execute(p)
        .await?
        .rows_affected()))
    }

    /// The subscribers whose welcome is pending and due at `now`, the oldest queued first, at most `limit`.
    pub async fn due(&self, now: i64, limit: i64) -> Result<Vec<i64>> {
        with_pool!(self.pool, p => sqlx::query_scalar(
            "SELECT subscriber_id FROM welcomes WHERE state = $1 AND next_attempt_at <= $2 ORDER BY queued_at, subscriber_id LIMIT $3",
        )
        .bind(Pending)
        .bind(now)
        .bind(limit)
        .fetch_all(p)
        .await)
    }

    /// The welcome of `subscriber_id`, if one was ever queued.
    pub async fn get(&self, subscriber_id: i64) -> Result<Option<Welcome>> {
        let row: Option<WelcomeRow> = with_pool!(self.pool, p => sqlx::query_as(
            "SELECT subscriber_id, state, attempts, last_error, message_id, next_attempt_at, queued_at, sent_at
             FROM welcomes WHERE subscriber_id = $1",
        )
        .bind(subscriber_id)
        .fetch_optional(p)
        .await?);
        Ok(row.map(|(subscriber_id, state, attempts, last_error, message_id, next_attempt_at, queued_at, sent_at)| {
            Welcome { subscriber_id, state, attempts, last_error, message_id, next_attempt_at, queued_at, sent_at }
        }))
    }

    /// Every welcome counted by state.
    pub async fn counts(&self) -> Result<Counts> {
        let rows: Vec<(DeliveryState, i64)> = with_pool!(self.pool, p => sqlx::query_as(
            "SELECT state, COUNT(*) FROM welcomes GROUP BY state",
        )
        .fetch_all(p)
        .await?);
        Ok(Counts::of(rows))
    }

    /// Welcomes that did not go out (failed, bounced, skipped, or pending after an error): the
    /// address, the state, the attempts and the last error, at most `limit`, by state and address.
    pub async fn problems(&self, limit: i64) -> Result<Vec<(String, DeliveryState, i64, String)>> {
        with_pool!(self.pool, p => sqlx::query_as(
            "SELECT s.email, w.state, w.attempts, w.last_error FROM welcomes w JOIN subscribers s ON s.id = w.subscriber_id
             WHERE w.last_error IS NOT NULL AND w.state <> $2 ORDER BY w.state, s.email LIMIT $1",
        )
        .bind(limit)
        .bind(Sent)
        .fetch_all(p)
        .await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounces::Reason;
    use crate::store::testing::stores;
    use crate::store::{NewSubscriber, Source};

    async fn reader(store: &Store, email: &str) -> i64 {
        let new =
            NewSubscriber { email: email.parse().unwrap(), name: None, status: Status::Active, source: Source::Cli };
        store.add(&new, false).await.unwrap();
        store.subscriber_by_email(&new.email).await.unwrap().unwrap().id
    }

    #[tokio::test]
    async fn a_welcome_is_queued_once_ever_and_claimed_by_one_claimer() {
        for store in stores().await {
            let w = store.welcomes();
            let id = reader(&store, "ada@example.org").await;
            assert!(w.queue(id, "example.org", 10).await.unwrap());
            let first = w.get(id).await.unwrap().unwrap();
            assert!(
                first.message_id.starts_with(&format!("<welcome.{id}.")) && first.message_id.ends_with("@example.org>")
            );
            assert!(!w.queue(id, "example.org", 11).await.unwrap(), "a second queue does nothing");
            assert_eq!(w.get(id).await.unwrap().unwrap().message_id, first.message_id);

            let Claim::Claimed(c) = w.claim(id, 12).await.unwrap() else { panic!("the first claim wins") };
            assert_eq!(
                (c.email.as_str(), c.attempts, c.message_id.as_str()),
                ("ada@example.org", 0, first.message_id.as_str())
            );
            assert!(matches!(w.claim(id, 12).await.unwrap(), Claim::Nothing), "a second claimer gets nothing");
            w.record(id, &Outcome::Sent, 13).await.unwrap();
            let sent = w.get(id).await.unwrap().unwrap();
            assert_eq!((sent.state, sent.attempts, sent.sent_at), (Sent, 1, Some(13)));
            // Sent is final: no queue, no claim, no outcome changes it.
            assert!(!w.queue(id, "example.org", 14).await.unwrap());
            assert!(matches!(w.claim(id, 14).await.unwrap(), Claim::Nothing));
            w.record(id, &Outcome::Failed("late".into()), 15).await.unwrap();
            assert_eq!(w.get(id).await.unwrap().unwrap().state, Sent);
            assert_eq!(w.counts().await.unwrap(), Counts { total: 1, sent: 1, ..Counts::default() });
        }
    }

    #[tokio::test]
    async fn deferred_waits_its_time_and_a_crash_leaves_it_to_be_sent_again_with_its_message_id() {
        for store in stores().await {
            let w = store.welcomes();
            let id = reader(&store, "bob@example.org").await;
            w.queue(id, "example.org", 10).await.unwrap();
            assert!(matches!(w.claim(id, 10).await.unwrap(), Claim::Claimed(_)));
            w.record(id, &Outcome::Deferred { error: "450 busy".into(), retry_at: 100 }, 11).await.unwrap();
            assert!(
                w.due(50, 10).await.unwrap().is_empty() && matches!(w.claim(id, 50).await.unwrap(), Claim::Nothing)
            );
            assert_eq!(w.due(100, 10).await.unwrap(), vec![id]);
            let Claim::Claimed(c) = w.claim(id, 100).await.unwrap() else { panic!("due at 100") };
            assert_eq!(c.attempts, 1);
            // The process dies here. A requeue for rows older than 100 leaves it (it may be live) ...
            assert_eq!(w.requeue_in_flight(100, 120).await.unwrap(), 0);
            // ... one for rows older than 101 puts it back, and it goes again with the same Message-ID.
            assert_eq!(w.requeue_in_flight(101, 400).await.unwrap(), 1);
            let Claim::Claimed(again) = w.claim(id, 400).await.unwrap() else { panic!("requeued") };
            assert_eq!((again.message_id, again.attempts), (c.message_id, 2));
            let problems = w.problems(10).await.unwrap();
            assert_eq!(problems, vec![("bob@example.org".to_string(), Sending, 3, "450 busy".to_string())]);
        }
    }

    #[tokio::test]
    async fn an_inactive_reader_is_skipped_and_a_bounce_marks_the_reader_bounced() {
        for store in stores().await {
            let w = store.welcomes();
            let gone = reader(&store, "gone@example.org").await;
            let wrong = reader(&store, "wrong@example.org").await;
            w.queue(gone, "example.org", 10).await.unwrap();
            w.queue(wrong, "example.org", 10).await.unwrap();
            store.unsubscribe_by_id(gone).await.unwrap();
            assert!(
                matches!(w.claim(gone, 11).await.unwrap(), Claim::Skipped(why) if why == "subscriber is unsubscribed")
            );
            let skipped = w.get(gone).await.unwrap().unwrap();
            assert_eq!(
                (skipped.state, skipped.attempts, skipped.last_error.as_deref()),
                (Skipped, 0, Some("subscriber is unsubscribed"))
            );

            assert!(matches!(w.claim(wrong, 11).await.unwrap(), Claim::Claimed(_)));
            let bounce = Outcome::Bounced { error: "550 5.1.1 no such user".into(), reason: Reason::UserUnknown };
            w.record(wrong, &bounce, 12).await.unwrap();
            assert_eq!(w.get(wrong).await.unwrap().unwrap().state, Bounced);
            let s = store.subscriber_by_id(wrong).await.unwrap().unwrap();
            assert_eq!(s.status, Status::Bounced);
            let c = w.counts().await.unwrap();
            assert_eq!((c.total, c.skipped, c.bounced), (2, 1, 1));
        }
    }

    #[tokio::test]
    async fn store_copy_takes_the_welcomes_along_and_the_copy_still_welcomes_once() {
        let mut stores = stores().await;
        if stores.len() < 2 {
            return; // PostgreSQL is not installed (under CI it is).
        }
        let (to, from) = (stores.pop().unwrap(), stores.pop().unwrap());
        let id = reader(&from, "ada@example.org").await;
        from.welcomes().queue(id, "example.org", 10).await.unwrap();
        let before = from.welcomes().get(id).await.unwrap();
        crate::store::copy::copy(&from, &to).await.unwrap();
        assert_eq!(to.welcomes().get(id).await.unwrap(), before);
        assert!(!to.welcomes().queue(id, "example.org", 20).await.unwrap(), "welcomed once, in either database");
    }
}
