//! The delivery ledger: which subscriber got which issue, and the lease that keeps a second sender out.
//!
//! ```text
//! pending --claim--> sending --250 after DATA--> sent
//!    ^                  |--4xx / connection lost--> pending (attempts+1, next_attempt_at later)
//!    |                  |--5xx to RCPT, the address does not work--> bounced (and the subscriber: bounced)
//!    |                  '--other 5xx-------------> failed (a mailbox's refusal counts as temporary
//!    |                                              for the reader, a sender's is kept for the
//!    |                                              provider: store::bounces)
//!    '-- on resume: rows left in `sending` by a crash go back to pending (outcome unknown;
//!        the resend carries the same Message-ID)
//! claim of a row whose subscriber is no longer active, or is paused --> skipped
//! a reader whose themes the issue does not carry (no edition for them) --> skipped
//! ```

use super::status_reason;
use super::{Backend, Pool, Store};
use crate::bounces::Reason;
use crate::bounces::reason::Refusal;
use crate::issue_id::IssueId;
use crate::store::Status;

type Result<T> = std::result::Result<T, sqlx::Error>;

pub use super::DeliveryState;

use crate::themes::ThemeChoice;
use DeliveryState::{Bounced, Failed, Pending, Sending, Sent, Skipped};

/// A delivery taken for sending.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub subscriber_id: i64,
    pub email: String,
    pub name: Option<String>,
    pub message_id: String,
    pub attempts: i64,
    /// The themes the reader follows now (`None`: everything): which edition they receive.
    pub themes: Option<ThemeChoice>,
}

/// The recorded result of one attempt.
#[derive(Debug, Clone)]
pub enum Outcome {
    Sent,
    /// Try again at `retry_at` (unix seconds); it stays pending.
    Deferred {
        error: String,
        retry_at: i64,
    },
    /// 5xx to RCPT saying the address does not work: the delivery and the subscriber `bounced`.
    Bounced {
        error: String,
        reason: Reason,
    },
    /// A 5xx that is the mailbox's or the sender's problem: the delivery `failed`. What it does to
    /// the reader is recorded apart, by the bounce policy (`Store::record_refused_at_sending`).
    Refused {
        error: String,
        refusal: Refusal,
    },
    /// Any other permanent failure (a message that could not be built, a server without SMTPUTF8).
    Failed(String),
    /// Claimed but not attempted (the send was stopped): back to pending, attempt not counted.
    Unclaimed,
    /// Nothing to send this reader (the issue carries none of their themes): `skipped`, with why,
    /// attempt not counted.
    Skipped(String),
}

/// Counts by delivery state.
#[derive(Debug, Default, Clone, serde::Serialize, PartialEq)]
pub struct Counts {
    pub total: i64,
    pub pending: i64,
    pub sending: i64,
    pub sent: i64,
    pub failed: i64,
    pub bounced: i64,
    pub skipped: i64,
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} sent, {} pending, {} failed, {} bounced, {} skipped",
            self.sent, self.total, self.pending, self.failed, self.bounced, self.skipped
        )
    }
}

impl Counts {
    /// The counts of `(state, how many)` rows, as `GROUP BY state` gives them.
    pub fn of(rows: impl IntoIterator<Item = (DeliveryState, i64)>) -> Counts {
        let mut c = Counts::default();
        for (state, n) in rows {
            c.total += n;
            match state {
                Pending => c.pending = n,
                Sending => c.sending = n,
                Sent => c.sent = n,
                Failed => c.failed = n,
                Bounced => c.bounced = n,
                Skipped => c.skipped = n,
            }
        }
        c
    }

    /// Nothing is left to try: every row is sent, failed, bounced or skipped.
    pub fn is_finished(&self) -> bool {
        self.pending == 0 && self.sending == 0
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SendRecord {
    pub issue_id: IssueId,
    pub number: i64,
    pub subject: String,
    pub audience: i64,
    pub started_at: i64,
    pub finished_at: Option<i64>,
}

/// The ledger's statements, on the store they were taken from (`Store::ledger`).
#[derive(Debug, Clone, Copy)]
pub struct Ledger<'a> {
    pool: &'a Pool,
}

impl Store {
    /// The delivery ledger and the send leases of this store.
    pub fn ledger(&self) -> Ledger<'_> {
        Ledger { pool: &self.pool }
    }
}

impl Ledger<'_> {
    /// Several senders may share an issue (PostgreSQL), or one holds it alone (SQLite).
    pub fn is_postgres(&self) -> bool {
        self.pool.is_postgres()
    }

    /// Takes the lease on `issue_id` for `holder` until `expires_at`. On SQLite the lease is the issue's
    /// alone: false when someone else holds a live one. On PostgreSQL several senders share an issue,
    /// each with its own lease row (true unless the row could not be written).
    pub async fn acquire_lease(&self, issue_id: &IssueId, holder: &str, now: i64, expires_at: i64) -> Result<bool> {
        let pool = self.pool;
        let done = match pool {
            Pool::Sqlite(p) => sqlx::query(
                "INSERT INTO send_leases (issue_id, holder, expires_at) VALUES ($1, $2, $3)
                 ON CONFLICT (issue_id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
                 WHERE send_leases.expires_at < $4 OR send_leases.holder = excluded.holder",
            )
            .bind(issue_id)
            .bind(holder)
            .bind(expires_at)
            .bind(now)
            .execute(p)
            .await?
            .rows_affected(),
            Pool::Postgres(p) => sqlx::query(
                "INSERT INTO send_leases (issue_id, holder, expires_at) VALUES ($1, $2, $3)
                 ON CONFLICT (issue_id, holder) DO UPDATE SET expires_at = excluded.expires_at",
            )
            .bind(issue_id)
            .bind(holder)
            .bind(expires_at)
            .execute(p)
            .await?
            .rows_affected(),
        };
        Ok(done == 1)
    }

    /// Takes over the lease of `issue_id` from `previous`, if it is still theirs (their process is gone).
    /// SQLite's single lease only; on PostgreSQL a dead sender's lease is ended with `expire_lease`.
    pub async fn take_over_lease(
        &self,
        issue_id: &IssueId,
        previous: &str,
        holder: &str,
        expires_at: i64,
    ) -> Result<bool> {
        let pool = self.pool;
        let done = with_pool!(pool, p => sqlx::query("UPDATE send_leases SET holder = $3, expires_at = $4 WHERE issue_id = $1 AND holder = $2")
            .bind(issue_id)
            .bind(previous)
            .bind(holder)
            .bind(expires_at)
            .execute(p)
            .await?
            .rows_affected());
        Ok(done == 1)
    }

    /// Extends a lease we hold; false if it was lost (it expired and someone else took it, or ended it).
    pub async fn renew_lease(&self, issue_id: &IssueId, holder: &str, expires_at: i64) -> Result<bool> {
        let pool = self.pool;
        let done = with_pool!(pool, p => sqlx::query("UPDATE send_leases SET expires_at = $3 WHERE issue_id = $1 AND holder = $2")
            .bind(issue_id)
            .bind(holder)
            .bind(expires_at)
            .execute(p)
            .await?
            .rows_affected());
        Ok(done == 1)
    }

    pub async fn release_lease(&self, issue_id: &IssueId, holder: &str) -> Result<()> {
        let pool = self.pool;
        with_pool!(pool, p => sqlx::query("DELETE FROM send_leases WHERE issue_id = $1 AND holder = $2").bind(issue_id).bind(holder).execute(p).await?.rows_affected());
        Ok(())
    }

    /// Ends `holder`'s lease on `issue_id` now (its process is known to be gone), so that its
    /// deliveries in flight can be taken over at once instead of when it would have expired.
    pub async fn expire_lease(&self, issue_id: &IssueId, holder: &str) -> Result<()> {
        let pool = self.pool;
        with_pool!(pool, p => sqlx::query("UPDATE send_leases SET expires_at = 0 WHERE issue_id = $1 AND holder = $2")
            .bind(issue_id)
            .bind(holder)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Who holds the lease on `issue_id` and until when, if anyone (the first by expiry on PostgreSQL).
    pub async fn lease_holder(&self, issue_id: &IssueId) -> Result<Option<(String, i64)>> {
        Ok(self.leases(issue_id).await?.into_iter().next())
    }

    /// Every lease on `issue_id`, live or expired, soonest to expire first.
    pub async fn leases(&self, issue_id: &IssueId) -> Result<Vec<(String, i64)>> {
        let pool = self.pool;
        with_pool!(pool, p => sqlx::query_as("SELECT holder, expires_at FROM send_leases WHERE issue_id = $1 ORDER BY expires_at, holder")
            .bind(issue_id)
            .fetch_all(p)
            .await)
    }

    pub async fn send_record(&self, issue_id: &IssueId) -> Result<Option<SendRecord>> {
        let pool = self.pool;
        let row = with_pool!(pool, p => sqlx::query_as::<_, (IssueId, i64, String, i64, i64, Option<i64>)>(
            "SELECT issue_id, number, subject, audience, started_at, finished_at FROM sends WHERE issue_id = $1",
        )
        .bind(issue_id)
        .fetch_optional(p)
        .await?);
        Ok(row.map(|(issue_id, number, subject, audience, started_at, finished_at)| SendRecord {
            issue_id,
            number,
            subject,
            audience,
            started_at,
            finished_at,
        }))
    }

    /// Fixes the audience of a send: a pending delivery for every active subscriber, in one transaction,
    /// each with its Message-ID. Does nothing (and returns false) when the send had already started:
    /// of several processes starting one issue at once, exactly one fixes its audience (the others
    /// wait for the write lock, then find the send started).
    pub async fn start_send(
        &self,
        issue_id: &IssueId,
        number: u32,
        subject: &str,
        message_id_domain: &str,
        nonce: &str,
        now: i64,
    ) -> Result<bool> {
        let pool = self.pool;
        with_pool!(pool, p => {
            let mut tx = p.begin_write().await?;
            let created = sqlx::query(
                "INSERT INTO sends (issue_id, number, subject, audience, started_at) VALUES ($1, $2, $3, 0, $4)
                 ON CONFLICT (issue_id) DO NOTHING",
            )
            .bind(issue_id)
            .bind(number as i64)
            .bind(subject)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if created {
                // <issue.subscriber.nonce random@domain>: unique per (issue, subscriber), the same on every
                // retry. The random part is drawn per delivery, so that a reader who knows their own copy's
                // Message-ID cannot spell another reader's (a returned Message-ID attributes a bounce).
                let sql = format!(
                    "INSERT INTO deliveries (issue_id, subscriber_id, message_id, updated_at)
                     SELECT $1, id, '<' || $1 || '.' || id || '.' || $2 || {} || '@' || $3 || '>', $4
                     FROM subscribers WHERE status = $5",
                    p.random_hex16()
                );
                let audience = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(issue_id)
                    .bind(nonce)
                    .bind(message_id_domain)
                    .bind(now)
                    .bind(Status::Active.as_str())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                sqlx::query("UPDATE sends SET audience = $2 WHERE issue_id = $1").bind(issue_id).bind(audience as i64).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(created)
        })
    }

    /// Readies an issue's deliveries for a new run, and returns how many it put back: those left
    /// `sending` by a sender that died go back to `pending` (their outcome is unknown).
    /// - SQLite (call with the lease held): every `sending` row is a dead run's.
    /// - PostgreSQL: only the rows of senders whose lease has expired (or is gone) go back, and their
    ///   leases are removed; a live sender's rows and its backoff are left alone. Any sender of the
    ///   issue may call it at any time: this is how the claims of a holder that died are taken over,
    ///   when they expire and not before.
    pub async fn requeue_in_flight(&self, issue_id: &IssueId, now: i64) -> Result<u64> {
        let pool = self.pool;
        match pool {
            Pool::Sqlite(p) => {
                let done =
                    sqlx::query("UPDATE deliveries SET state = $3, updated_at = $2 WHERE issue_id = $1 AND state = $4")
                        .bind(issue_id)
                        .bind(now)
                        .bind(Pending)
                        .bind(Sending)
                        .execute(p)
                        .await?;
                Ok(done.rows_affected())
            }
            Pool::Postgres(p) => {
                let mut tx = p.begin().await?;
                let done = sqlx::query(
                    "UPDATE deliveries d SET state = $3, claimed_by = NULL, updated_at = $2
                     WHERE d.issue_id = $1 AND d.state = $4 AND NOT EXISTS (
                         SELECT 1 FROM send_leases l WHERE l.issue_id = d.issue_id AND l.holder = d.claimed_by AND l.expires_at >= $2)",
                )
                .bind(issue_id)
                .bind(now)
                .bind(Pending)
                .bind(Sending)
                .execute(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM send_leases WHERE issue_id = $1 AND expires_at < $2")
                    .bind(issue_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(done.rows_affected())
            }
        }
    }

    /// Makes every pending delivery of the issue due now: a new run's retries start afresh, since
    /// backoff only spaces retries within one run. On PostgreSQL, call it only when no other sender is
    /// live: their backoff is theirs.
    pub async fn retry_now(&self, issue_id: &IssueId) -> Result<()> {
        let pool = self.pool;
        with_pool!(pool, p => sqlx::query("UPDATE deliveries SET next_attempt_at = 0 WHERE issue_id = $1 AND state = $2 AND next_attempt_at > 0")
            .bind(issue_id)
            .bind(Pending)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    /// How many deliveries of the issue other senders than `holder` have in flight (PostgreSQL's
    /// shared sends: a sender with nothing left to claim waits for those before it leaves).
    pub async fn in_flight_elsewhere(&self, issue_id: &IssueId, holder: &str) -> Result<i64> {
        let pool = self.pool;
        with_pool!(pool, p => sqlx::query_scalar(
            "SELECT count(*) FROM deliveries WHERE issue_id = $1 AND state = $2 AND (claimed_by IS NULL OR claimed_by <> $3)",
        )
        .bind(issue_id)
        .bind(Sending)
        .bind(holder)
        .fetch_one(p)
        .await)
    }

    /// Marks up to `limit` due pending deliveries as `sending` for `holder` and returns them. Deliveries
    /// whose subscriber is no longer active (unsubscribed since the send started) are marked `skipped`
    /// instead.
    /// - SQLite, `INDEXED BY`: left to itself, SQLite walks the primary key (issue, subscriber) for the
    ///   ORDER BY and steps over every delivery already sent on each claim, which made a send quadratic
    ///   in the audience (580 messages/s after 100,000 of 1,000,000; see BENCHMARKS.md).
    /// - PostgreSQL, `FOR UPDATE SKIP LOCKED`: senders claiming at the same moment each get rows the
    ///   others did not lock, without waiting for one another.
    pub async fn claim(&self, issue_id: &IssueId, holder: &str, limit: i64, now: i64) -> Result<Vec<Claimed>> {
        let pool = self.pool;
        match pool {
            Pool::Sqlite(p) => {
                let mut tx = p.begin_write().await?;
                let rows: Vec<ClaimRow> = sqlx::query_as(
                    "SELECT d.subscriber_id, s.email, s.name, d.message_id, d.attempts, s.status, s.themes, s.paused_until
                     FROM deliveries d INDEXED BY deliveries_by_state JOIN subscribers s ON s.id = d.subscriber_id
                     WHERE d.issue_id = $1 AND d.state = $4 AND d.next_attempt_at <= $2
                     ORDER BY d.subscriber_id LIMIT $3",
                )
                .bind(issue_id)
                .bind(now)
                .bind(limit)
                .bind(Pending)
                .fetch_all(&mut *tx)
                .await?;
                let (claimed, skipped) = split_claims(rows, now);
                let ids: Vec<i64> = claimed.iter().map(|c| c.subscriber_id).collect();
                for chunk in ids.chunks(RECORD_CHUNK) {
                    let sql = format!(
                        "UPDATE deliveries SET state = $1, attempts = attempts + 1, updated_at = $2 WHERE issue_id = $3 AND subscriber_id IN ({})",
                        id_list(4, chunk.len())
                    );
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(Sending).bind(now).bind(issue_id);
                    for id in chunk {
                        q = q.bind(id);
                    }
                    q.execute(&mut *tx).await?;
                }
                mark_skipped(&mut tx, issue_id, &skipped, 0, now).await?;
                tx.commit().await?;
                Ok(claimed)
            }
            Pool::Postgres(p) => {
                let mut tx = p.begin().await?;
                let rows: Vec<ClaimRow> = sqlx::query_as(
                    "WITH picked AS (
                         SELECT subscriber_id FROM deliveries
                         WHERE issue_id = $1 AND state = $4 AND next_attempt_at <= $2
                         ORDER BY subscriber_id LIMIT $3 FOR UPDATE SKIP LOCKED),
                     claimed AS (
                         UPDATE deliveries d SET state = $5, attempts = d.attempts + 1, updated_at = $2, claimed_by = $6
                         FROM picked WHERE d.issue_id = $1 AND d.subscriber_id = picked.subscriber_id
                         RETURNING d.subscriber_id, d.message_id, d.attempts - 1 AS attempts)
                     SELECT c.subscriber_id, s.email, s.name, c.message_id, c.attempts, s.status, s.themes, s.paused_until
                     FROM claimed c JOIN subscribers s ON s.id = c.subscriber_id ORDER BY c.subscriber_id",
                )
                .bind(issue_id)
                .bind(now)
                .bind(limit)
                .bind(Pending)
                .bind(Sending)
                .bind(holder)
                .fetch_all(&mut *tx)
                .await?;
                let (claimed, skipped) = split_claims(rows, now);
                // A skipped row was claimed, and counted as an attempt, before its subscriber was seen.
                mark_skipped(&mut tx, issue_id, &skipped, 1, now).await?;
                tx.commit().await?;
                Ok(claimed)
            }
        }
    }

    /// Records a batch of outcomes in one transaction. A bounce also marks the subscriber bounced
    /// (`status_reason` naming the reason first, as `store::bounces` does).
    /// The send loop records every few outcomes (as soon as the server answers), so the common case,
    /// a few messages sent, is one statement: its own transaction, one round trip to the database
    /// instead of three (BEGIN, UPDATE, COMMIT).
    pub async fn record(&self, issue_id: &IssueId, outcomes: &[(i64, Outcome)], now: i64) -> Result<()> {
        let pool = self.pool;
        if outcomes.is_empty() {
            return Ok(());
        }
        let sent: Vec<i64> = outcomes.iter().filter(|(_, o)| matches!(o, Outcome::Sent)).map(|(id, _)| *id).collect();
        with_pool!(pool, p => {
            // The statement marking up to `RECORD_CHUNK` deliveries sent.
            let mark_sent = |ids: &[i64]| {
                let sql = format!(
                    "UPDATE deliveries SET state = $1, sent_at = $2, updated_at = $2, last_error = NULL
                     WHERE issue_id = $3 AND subscriber_id IN ({})",
                    id_list(4, ids.len())
                );
                ids.iter().fold(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(Sent).bind(now).bind(issue_id), |q, id| q.bind(*id))
            };
            if sent.len() == outcomes.len() && sent.len() <= RECORD_CHUNK {
                mark_sent(&sent).execute(p).await?;
                return Ok(());
            }
            let mut tx = p.begin_write().await?;
            for chunk in sent.chunks(RECORD_CHUNK) {
                mark_sent(chunk).execute(&mut *tx).await?;
            }
            for (id, outcome) in outcomes {
                let (state, error, retry_at) = match outcome {
                    Outcome::Sent => continue,
                    Outcome::Deferred { error, retry_at } => (Pending, Some(error.as_str()), *retry_at),
                    Outcome::Bounced { error, .. } => (Bounced, Some(error.as_str()), 0),
                    Outcome::Refused { error, .. } | Outcome::Failed(error) => (Failed, Some(error.as_str()), 0),
                    Outcome::Unclaimed => (Pending, None, 0),
                    Outcome::Skipped(why) => (Skipped, Some(why.as_str()), 0),
                };
                let uncount = i64::from(matches!(outcome, Outcome::Unclaimed | Outcome::Skipped(_)));
                sqlx::query(
                    "UPDATE deliveries SET state = $3, last_error = COALESCE($4, last_error), next_attempt_at = $5,
                     attempts = attempts - $6, updated_at = $7 WHERE issue_id = $1 AND subscriber_id = $2",
                )
                .bind(issue_id)
                .bind(*id)
                .bind(state)
                .bind(error)
                .bind(retry_at)
                .bind(uncount)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if let Outcome::Bounced { error, reason } = outcome {
                    sqlx::query(
                        "UPDATE subscribers SET status = $3, bounced_at = $2, status_changed_at = $2, status_reason = $5 WHERE id = $1 AND status = $4",
                    )
                    .bind(*id)
                    .bind(now)
                    .bind(Status::Bounced.as_str())
                    .bind(Status::Active.as_str())
                    .bind(status_reason(Some(*reason), &format!("{error} (refused at sending)")))
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Marks sent the deliveries of `ids` that are still in flight: what the sent journal of a run
    /// that stopped without folding it says the server accepted (`store::journal`). Deliveries in any
    /// other state are left as they are. Returns how many were marked. SQLite's only: on PostgreSQL
    /// a send commits every outcome at once and keeps no journal.
    pub async fn replay_sent(&self, issue_id: &IssueId, ids: &[i64], now: i64) -> Result<u64> {
        let pool = self.pool;
        let Pool::Sqlite(p) = pool else { return Ok(0) };
        let mut marked = 0;
        let mut tx = p.begin_write().await?;
        for chunk in ids.chunks(RECORD_CHUNK) {
            let sql = format!(
                "UPDATE deliveries SET state = $1, sent_at = $2, updated_at = $2, last_error = NULL
                 WHERE issue_id = $3 AND state = $4 AND subscriber_id IN ({})",
                id_list(5, chunk.len())
            );
            let query = chunk.iter().fold(
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(Sent).bind(now).bind(issue_id).bind(Sending),
                |q, id| q.bind(*id),
            );
            marked += query.execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(marked)
    }

    /// `replay_sent` for what the journal of `issue_id`'s send beside the SQLite database at
    /// `database` holds (nothing when there is none). Returns how many deliveries were marked sent.
    pub async fn replay_journal(
        &self,
        database: &std::path::Path,
        issue_id: &IssueId,
        now: i64,
    ) -> std::result::Result<u64, super::StoreError> {
        let path = super::journal::path_of(database, issue_id);
        let ids = super::journal::read(&path)
            .map_err(|e| super::StoreError::Refused(format!("cannot read {}: {e}", path.display())))?;
        if ids.is_empty() {
            return Ok(0);
        }
        Ok(self.replay_sent(issue_id, &ids, now).await?)
    }

    /// `replay_journal` for every unfinished send of the SQLite database at `database`: what its next
    /// run would do first, for whatever takes the ledger elsewhere before that run (`store copy`).
    /// The journals stay: a rerun finds their ids sent already. Returns how many deliveries were
    /// marked sent.
    pub async fn replay_journals(&self, database: &std::path::Path) -> std::result::Result<u64, super::StoreError> {
        let pool = self.pool;
        let Pool::Sqlite(p) = pool else { return Ok(0) };
        let unfinished: Vec<IssueId> =
            sqlx::query_scalar("SELECT issue_id FROM sends WHERE finished_at IS NULL").fetch_all(p).await?;
        let mut marked = 0;
        for issue_id in unfinished {
            marked += self.replay_journal(database, &issue_id, super::now()).await?;
        }
        Ok(marked)
    }

    /// Marks the send finished when nothing is pending or in flight any more.
    pub async fn finish_if_done(&self, issue_id: &IssueId, now: i64) -> Result<bool> {
        let pool = self.pool;
        let done = with_pool!(pool, p => sqlx::query(
            "UPDATE sends SET finished_at = $2 WHERE issue_id = $1 AND finished_at IS NULL
             AND NOT EXISTS (SELECT 1 FROM deliveries WHERE issue_id = $1 AND state IN ($3, $4))",
        )
        .bind(issue_id)
        .bind(now)
        .bind(Pending)
        .bind(Sending)
        .execute(p)
        .await?
        .rows_affected());
        Ok(done == 1)
    }

    /// The earliest time a pending delivery may be tried again, if any is pending.
    pub async fn next_retry_at(&self, issue_id: &IssueId) -> Result<Option<i64>> {
        let pool = self.pool;
        with_pool!(pool, p => sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM deliveries WHERE issue_id = $1 AND state = $2")
            .bind(issue_id)
            .bind(Pending)
            .fetch_one(p)
            .await)
    }

    pub async fn counts(&self, issue_id: &IssueId) -> Result<Counts> {
        let pool = self.pool;
        let rows: Vec<(DeliveryState, i64)> = with_pool!(pool, p => sqlx::query_as("SELECT state, COUNT(*) FROM deliveries WHERE issue_id = $1 GROUP BY state")
            .bind(issue_id)
            .fetch_all(p)
            .await?);
        Ok(Counts::of(rows))
    }

    /// Deliveries that did not go out (failed, bounced, or pending after an error), with their last error.
    pub async fn problems(&self, issue_id: &IssueId, limit: i64) -> Result<Vec<(String, String, i64, String)>> {
        let pool = self.pool;
        with_pool!(pool, p => sqlx::query_as(
            "SELECT s.email, d.state, d.attempts, d.last_error FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id
             WHERE d.issue_id = $1 AND d.last_error IS NOT NULL AND d.state IN ($3, $4, $5)
             ORDER BY d.state, s.email LIMIT $2",
        )
        .bind(issue_id)
        .bind(limit)
        .bind(Failed)
        .bind(Bounced)
        .bind(Pending)
        .fetch_all(p)
        .await)
    }

    /// Who would get the issue if its send started at `now` (for `--dry-run`), streamed in id
    /// order: up to `limit` active subscribers with an id above `after_id`, decided as a claim
    /// decides (a paused reader is skipped, with why), and the last id read (`None`: no more).
    pub async fn active_after(&self, after_id: i64, limit: i64, now: i64) -> Result<AudiencePage> {
        let pool = self.pool;
        let rows: Vec<ClaimRow> = with_pool!(pool, p => sqlx::query_as(
            "SELECT id, email, name, '', 0, status, themes, paused_until FROM subscribers WHERE status = $3 AND id > $1 ORDER BY id LIMIT $2"
        )
            .bind(after_id)
            .bind(limit)
            .bind(Status::Active.as_str())
            .fetch_all(p)
            .await)?;
        let last = rows.last().map(|r| r.0);
        let (readers, skipped) = split_claims(rows, now);
        Ok(AudiencePage { readers, skipped, last })
    }

    /// How many deliveries a send started now would fix: the active subscribers.
    pub async fn active_count(&self) -> Result<u64> {
        let pool = self.pool;
        let n: i64 = with_pool!(pool, p => sqlx::query_scalar("SELECT COUNT(*) FROM subscribers WHERE status = $1")
            .bind(Status::Active.as_str())
            .fetch_one(p)
            .await?);
        Ok(n as u64)
    }

    /// The subscribers whose delivery of `issue_id` is `sending` (in flight, or left so by a run that
    /// died): few, a batch's worth per connection.
    pub async fn sending_ids(&self, issue_id: &IssueId) -> Result<Vec<i64>> {
        let pool = self.pool;
        with_pool!(pool, p => sqlx::query_scalar("SELECT subscriber_id FROM deliveries WHERE issue_id = $1 AND state = $2")
            .bind(issue_id)
            .bind(Sending)
            .fetch_all(p)
            .await)
    }

    /// Issues whose send started and has not finished.
    pub async fn unfinished_sends(&self) -> Result<Vec<IssueId>> {
        let pool = self.pool;
        with_pool!(pool, p => sqlx::query_scalar("SELECT issue_id FROM sends WHERE finished_at IS NULL ORDER BY issue_id").fetch_all(p).await)
    }

    /// Every send that has started, by issue id.
    pub async fn send_progress(&self) -> Result<std::collections::BTreeMap<IssueId, SendProgress>> {
        let pool = self.pool;
        let rows: Vec<(IssueId, i64, Option<i64>, i64, i64)> = with_pool!(pool, p => sqlx::query_as(
            "SELECT s.issue_id, s.started_at, s.finished_at, s.audience,
                    (SELECT COUNT(*) FROM deliveries d WHERE d.issue_id = s.issue_id AND d.state = $1)
             FROM sends s",
        )
        .bind(Sent)
        .fetch_all(p)
        .await?);
        Ok(rows
            .into_iter()
            .map(|(id, started_at, finished_at, audience, sent)| {
                (id, SendProgress { started_at, finished_at, audience, sent })
            })
            .collect())
    }

    /// Issues whose send has started (finished or not): the scheduler never starts them again.
    pub async fn started_sends(&self) -> Result<std::collections::HashSet<IssueId>> {
        let pool = self.pool;
        Ok(with_pool!(pool, p => sqlx::query_scalar::<_, IssueId>("SELECT issue_id FROM sends").fetch_all(p).await?)
            .into_iter()
            .collect())
    }
}

/// A page of the audience a send would have (`Ledger::active_after`).
pub struct AudiencePage {
    /// Those a message would go to (`message_id` empty, `attempts` 0).
    pub readers: Vec<Claimed>,
    /// Those who would be skipped, with why.
    pub skipped: Vec<(i64, String)>,
    /// The last id read: where the next page starts; `None` at the end.
    pub last: Option<i64>,
}

/// subscriber_id, email, name, message_id, attempts, subscriber status, themes, paused_until.
type ClaimRow = (i64, String, Option<String>, String, i64, String, Option<String>, Option<i64>);

/// The rows of a claim whose subscriber is active and not paused at `now`, and the others with
/// why they are skipped.
fn split_claims(rows: Vec<ClaimRow>, now: i64) -> (Vec<Claimed>, Vec<(i64, String)>) {
    let mut claimed = Vec::with_capacity(rows.len());
    let mut skipped = Vec::new();
    for (subscriber_id, email, name, message_id, attempts, status, themes, paused_until) in rows {
        if status != Status::Active.as_str() {
            skipped.push((subscriber_id, format!("subscriber is {status}")));
            continue;
        }
        if let Some(until) = paused_until.filter(|until| *until > now) {
            let until =
                chrono::DateTime::from_timestamp(until, 0).map_or(until.to_string(), |t| t.date_naive().to_string());
            skipped.push((subscriber_id, format!("the reader paused their issues until {until}")));
            continue;
        }
        // A choice that does not read back (written by hand into the database) is everything:
        // the reader gets the whole issue rather than nothing.
        let themes = ThemeChoice::from_stored(themes.as_deref()).unwrap_or_else(|e| {
            tracing::warn!("subscriber {subscriber_id}: {e}; sending them the whole issue");
            None
        });
        claimed.push(Claimed { subscriber_id, email, name, message_id, attempts, themes });
    }
    (claimed, skipped)
}

/// Marks the deliveries of `skipped` skipped, with why, taking `uncount` off their attempts.
async fn mark_skipped<DB>(
    tx: &mut sqlx::Transaction<'static, DB>,
    issue_id: &IssueId,
    skipped: &[(i64, String)],
    uncount: i64,
    now: i64,
) -> Result<()>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments: sqlx::IntoArguments<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> DeliveryState: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    for (id, why) in skipped {
        sqlx::query(
            "UPDATE deliveries SET state = $5, last_error = $3, updated_at = $4, attempts = attempts - $6
             WHERE issue_id = $1 AND subscriber_id = $2",
        )
        .bind(issue_id)
        .bind(*id)
        .bind(why.clone())
        .bind(now)
        .bind(Skipped)
        .bind(uncount)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// `$first, $first+1, …` for `n` values of an `IN (…)` list.
fn id_list(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(",")
}

/// Ids per `IN (…)` list: SQLite allows 32,766 variables; statements stay short.
const RECORD_CHUNK: usize = 300;

/// How far a send got, for the list of every issue (`gazette issues`).
#[derive(Debug, Clone, PartialEq)]
pub struct SendProgress {
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// The subscribers it was for.
    pub audience: i64,
    /// The messages accepted so far.
    pub sent: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The issue of the week starting on `start` (`2023-07-17`).
    fn week(start: &str) -> IssueId {
        start.parse().expect("an issue's id")
    }
    use crate::store::testing::stores;
    use crate::store::{NewSubscriber, Source, Store};

    async fn audience(store: &Store, n: usize) {
        for i in 0..n {
            let new = NewSubscriber {
                email: format!("r{i}@example.org").parse().unwrap(),
                name: None,
                status: Status::Active,
                source: Source::Cli,
            };
            store.add(&new, false).await.unwrap();
        }
    }

    #[tokio::test]
    async fn claims_never_overlap_and_only_a_dead_holders_claims_come_back() {
        for store in stores().await {
            let ledger = store.ledger();
            audience(&store, 5).await;
            assert!(ledger.start_send(&week("2023-07-17"), 1, "s", "example.org", "n", 10).await.unwrap());
            // A second start of the same issue fixes nothing.
            assert!(!ledger.start_send(&week("2023-07-17"), 1, "s", "example.org", "n", 11).await.unwrap());
            assert!(ledger.acquire_lease(&week("2023-07-17"), "a", 10, 100).await.unwrap());
            let a = ledger.claim(&week("2023-07-17"), "a", 2, 10).await.unwrap();
            let b = ledger.claim(&week("2023-07-17"), "b", 10, 10).await.unwrap();
            let ids = |c: &[Claimed]| c.iter().map(|c| c.subscriber_id).collect::<Vec<_>>();
            assert_eq!((a.len(), b.len()), (2, 3));
            assert!(ids(&a).iter().all(|id| !ids(&b).contains(id)), "a claimed row is nobody else's");
            assert!(a.iter().chain(&b).all(|c| c.attempts == 0 && c.message_id.starts_with("<2023-07-17.")));
            assert!(ledger.claim(&week("2023-07-17"), "c", 10, 10).await.unwrap().is_empty());
            ledger.record(&week("2023-07-17"), &[(b[0].subscriber_id, Outcome::Sent)], 20).await.unwrap();
            if ledger.is_postgres() {
                // b holds a live lease, a's runs until 100: before then nothing comes back.
                assert!(ledger.acquire_lease(&week("2023-07-17"), "b", 10, 1000).await.unwrap());
                assert_eq!(ledger.requeue_in_flight(&week("2023-07-17"), 50).await.unwrap(), 0);
                assert_eq!(ledger.in_flight_elsewhere(&week("2023-07-17"), "b").await.unwrap(), 2);
                // a's lease expired: its two come back, b's two stay in flight, and a's lease is gone.
                assert_eq!(ledger.requeue_in_flight(&week("2023-07-17"), 200).await.unwrap(), 2);
                assert_eq!(ledger.leases(&week("2023-07-17")).await.unwrap(), vec![("b".to_string(), 1000)]);
                assert!(!ledger.renew_lease(&week("2023-07-17"), "a", 300).await.unwrap(), "a lost its lease");
                let again = ledger.claim(&week("2023-07-17"), "b", 10, 200).await.unwrap();
                assert_eq!(ids(&again), ids(&a));
                assert!(
                    again.iter().all(|c| c.attempts == 1 && a.iter().any(|x| x.message_id == c.message_id)),
                    "same Message-ID"
                );
            } else {
                // SQLite's single sender: everything in flight belongs to the run that died.
                assert_eq!(ledger.requeue_in_flight(&week("2023-07-17"), 50).await.unwrap(), 4);
                assert!(!ledger.acquire_lease(&week("2023-07-17"), "b", 50, 1000).await.unwrap(), "a's lease is live");
            }
            let c = ledger.counts(&week("2023-07-17")).await.unwrap();
            assert_eq!((c.total, c.sent), (5, 1));
        }
    }

    #[tokio::test]
    async fn a_journal_replayed_marks_sent_only_what_is_still_in_flight() {
        // The journal is SQLite's: the first of the test stores.
        let store = stores().await.swap_remove(0);
        let ledger = store.ledger();
        audience(&store, 4).await;
        ledger.start_send(&week("2023-07-17"), 1, "s", "example.org", "n", 10).await.unwrap();
        let claimed: Vec<i64> =
            ledger.claim(&week("2023-07-17"), "a", 3, 10).await.unwrap().iter().map(|c| c.subscriber_id).collect();
        ledger.record(&week("2023-07-17"), &[(claimed[0], Outcome::Failed("550".into()))], 20).await.unwrap();
        let unclaimed = (1..=4).find(|id| !claimed.contains(id)).unwrap();
        // The journal names a failed delivery, two in flight, a pending one and one of nobody's.
        let marked = ledger
            .replay_sent(&week("2023-07-17"), &[claimed[0], claimed[1], claimed[2], unclaimed, 99], 30)
            .await
            .unwrap();
        assert_eq!(marked, 2, "only the two in flight");
        let c = ledger.counts(&week("2023-07-17")).await.unwrap();
        assert_eq!((c.sent, c.failed, c.pending, c.sending), (2, 1, 1, 0));
    }
}
