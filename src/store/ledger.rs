//! The delivery ledger: which subscriber got which issue, and the lease that keeps a second sender out.
//!
//! ```text
//! pending --claim--> sending --250 after DATA--> sent
//!    ^                  |--4xx / connection lost--> pending (attempts+1, next_attempt_at later)
//!    |                  |--5xx to RCPT (mailbox)--> bounced (and the subscriber: bounced)
//!    |                  '--other 5xx-------------> failed
//!    '-- on resume: rows left in `sending` by a crash go back to pending (outcome unknown;
//!        the resend carries the same Message-ID)
//! claim of a row whose subscriber is no longer active --> skipped
//! ```

use sqlx::{Row, SqlitePool};

use crate::store::Status;

type Result<T> = std::result::Result<T, sqlx::Error>;

/// Where a delivery is (the `deliveries.state` column; the diagram above). Queries bind these
/// rather than spelling the states out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(rename_all = "lowercase")]
pub enum DeliveryState {
    Pending,
    Sending,
    Sent,
    Failed,
    Bounced,
    Skipped,
}

use DeliveryState::{Bounced, Failed, Pending, Sending, Sent, Skipped};

/// A delivery taken for sending.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub subscriber_id: i64,
    pub email: String,
    pub name: Option<String>,
    pub message_id: String,
    pub attempts: i64,
}

/// The recorded result of one attempt.
#[derive(Debug, Clone)]
pub enum Outcome {
    Sent,
    /// Try again at `retry_at` (unix seconds); it stays pending.
    Deferred { error: String, retry_at: i64 },
    Bounced(String),
    Failed(String),
    /// Claimed but not attempted (the send was stopped): back to pending, attempt not counted.
    Unclaimed,
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
    /// Nothing is left to try: every row is sent, failed, bounced or skipped.
    pub fn is_finished(&self) -> bool {
        self.pending == 0 && self.sending == 0
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SendRecord {
    pub issue_id: String,
    pub number: i64,
    pub subject: String,
    pub audience: i64,
    pub started_at: i64,
    pub finished_at: Option<i64>,
}

/// Takes the lease on `issue_id` for `holder` until `expires_at`, if nobody else holds a live one.
pub async fn acquire_lease(pool: &SqlitePool, issue_id: &str, holder: &str, now: i64, expires_at: i64) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO send_leases (issue_id, holder, expires_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (issue_id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
         WHERE send_leases.expires_at < ?4 OR send_leases.holder = excluded.holder",
    )
    .bind(issue_id)
    .bind(holder)
    .bind(expires_at)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Takes over the lease of `issue_id` from `previous`, if it is still theirs (their process is gone).
pub async fn take_over_lease(pool: &SqlitePool, issue_id: &str, previous: &str, holder: &str, expires_at: i64) -> Result<bool> {
    let done = sqlx::query("UPDATE send_leases SET holder = ?3, expires_at = ?4 WHERE issue_id = ?1 AND holder = ?2")
        .bind(issue_id)
        .bind(previous)
        .bind(holder)
        .bind(expires_at)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Extends a lease we hold; false if it was lost (it expired and someone else took it).
pub async fn renew_lease(pool: &SqlitePool, issue_id: &str, holder: &str, expires_at: i64) -> Result<bool> {
    let done = sqlx::query("UPDATE send_leases SET expires_at = ?3 WHERE issue_id = ?1 AND holder = ?2")
        .bind(issue_id)
        .bind(holder)
        .bind(expires_at)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn release_lease(pool: &SqlitePool, issue_id: &str, holder: &str) -> Result<()> {
    sqlx::query("DELETE FROM send_leases WHERE issue_id = ?1 AND holder = ?2").bind(issue_id).bind(holder).execute(pool).await?;
    Ok(())
}

/// Who holds the lease on `issue_id` and until when, if anyone.
pub async fn lease_holder(pool: &SqlitePool, issue_id: &str) -> Result<Option<(String, i64)>> {
    let row = sqlx::query("SELECT holder, expires_at FROM send_leases WHERE issue_id = ?1").bind(issue_id).fetch_optional(pool).await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

pub async fn send_record(pool: &SqlitePool, issue_id: &str) -> Result<Option<SendRecord>> {
    let row = sqlx::query("SELECT issue_id, number, subject, audience, started_at, finished_at FROM sends WHERE issue_id = ?1")
        .bind(issue_id)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|r| SendRecord {
        issue_id: r.get(0),
        number: r.get(1),
        subject: r.get(2),
        audience: r.get(3),
        started_at: r.get(4),
        finished_at: r.get(5),
    }))
}

/// Fixes the audience of a send: a pending delivery for every active subscriber, in one transaction,
/// each with its Message-ID. Does nothing (and returns false) when the send had already started.
pub async fn start_send(
    pool: &SqlitePool,
    issue_id: &str,
    number: u32,
    subject: &str,
    message_id_domain: &str,
    nonce: &str,
    now: i64,
) -> Result<bool> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let created = sqlx::query(
        "INSERT INTO sends (issue_id, number, subject, audience, started_at) VALUES (?1, ?2, ?3, 0, ?4)
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
        let audience = sqlx::query(
            "INSERT INTO deliveries (issue_id, subscriber_id, message_id, updated_at)
             SELECT ?1, id, '<' || ?1 || '.' || id || '.' || ?2 || lower(hex(randomblob(8))) || '@' || ?3 || '>', ?4
             FROM subscribers WHERE status = ?5",
        )
        .bind(issue_id)
        .bind(nonce)
        .bind(message_id_domain)
        .bind(now)
        .bind(Status::Active.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("UPDATE sends SET audience = ?2 WHERE issue_id = ?1").bind(issue_id).bind(audience as i64).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(created)
}

/// Readies an issue's deliveries for a new run: those left `sending` by a sender that died go back to
/// `pending` (returned: their outcome is unknown), and every pending one is due now, since backoff
/// only spaces retries within one run. Call only with the lease held.
pub async fn requeue_in_flight(pool: &SqlitePool, issue_id: &str, now: i64) -> Result<u64> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let done = sqlx::query("UPDATE deliveries SET state = ?3, updated_at = ?2 WHERE issue_id = ?1 AND state = ?4")
        .bind(issue_id)
        .bind(now)
        .bind(Pending)
        .bind(Sending)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE deliveries SET next_attempt_at = 0 WHERE issue_id = ?1 AND state = ?2 AND next_attempt_at > 0")
        .bind(issue_id)
        .bind(Pending)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(done.rows_affected())
}

/// Marks up to `limit` due pending deliveries as `sending` and returns them. Deliveries whose subscriber
/// is no longer active (unsubscribed since the send started) are marked `skipped` instead.
/// `INDEXED BY`: left to itself, SQLite walks the primary key (issue, subscriber) for the ORDER BY
/// and steps over every delivery already sent on each claim, which made a send quadratic in the
/// audience (580 messages/s after 100,000 of 1,000,000; see BENCHMARKS.md).
pub async fn claim(pool: &SqlitePool, issue_id: &str, limit: i64, now: i64) -> Result<Vec<Claimed>> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let rows = sqlx::query(
        "SELECT d.subscriber_id, s.email, s.name, d.message_id, d.attempts, s.status
         FROM deliveries d INDEXED BY deliveries_by_state JOIN subscribers s ON s.id = d.subscriber_id
         WHERE d.issue_id = ?1 AND d.state = ?4 AND d.next_attempt_at <= ?2
         ORDER BY d.subscriber_id LIMIT ?3",
    )
    .bind(issue_id)
    .bind(now)
    .bind(limit)
    .bind(Pending)
    .fetch_all(&mut *tx)
    .await?;
    let mut claimed = Vec::with_capacity(rows.len());
    let mut skipped = Vec::new();
    for r in rows {
        let status: String = r.get(5);
        let id: i64 = r.get(0);
        if status == Status::Active.as_str() {
            claimed.push(Claimed { subscriber_id: id, email: r.get(1), name: r.get(2), message_id: r.get(3), attempts: r.get(4) });
        } else {
            skipped.push((id, format!("subscriber is {status}")));
        }
    }
    set_state(&mut tx, issue_id, Sending, &claimed.iter().map(|c| c.subscriber_id).collect::<Vec<_>>(), now).await?;
    for (id, why) in skipped {
        sqlx::query("UPDATE deliveries SET state = ?5, last_error = ?3, updated_at = ?4 WHERE issue_id = ?1 AND subscriber_id = ?2")
            .bind(issue_id)
            .bind(id)
            .bind(why)
            .bind(now)
            .bind(Skipped)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(claimed)
}

async fn set_state(tx: &mut sqlx::SqliteConnection, issue_id: &str, state: DeliveryState, ids: &[i64], now: i64) -> Result<()> {
    for chunk in ids.chunks(300) {
        let marks = vec!["?"; chunk.len()].join(",");
        let sql = format!(
            // Only anonymous `?`s: sqlx numbers them from 1 whatever numbered ones say, so never mix the two.
            "UPDATE deliveries SET state = ?, attempts = attempts + 1, updated_at = ? WHERE issue_id = ? AND subscriber_id IN ({marks})"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(state).bind(now).bind(issue_id);
        for id in chunk {
            q = q.bind(id);
        }
        q.execute(&mut *tx).await?;
    }
    Ok(())
}

/// Records a batch of outcomes in one transaction. A bounce also marks the subscriber bounced.
/// The send loop records every few outcomes (as soon as the server answers), so the common case,
/// a few messages sent, is one statement: its own transaction, one round trip to SQLite's thread
/// instead of three (BEGIN, UPDATE, COMMIT).
pub async fn record(pool: &SqlitePool, issue_id: &str, outcomes: &[(i64, Outcome)], now: i64) -> Result<()> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let sent: Vec<i64> = outcomes.iter().filter(|(_, o)| matches!(o, Outcome::Sent)).map(|(id, _)| *id).collect();
    if sent.len() == outcomes.len() && sent.len() <= RECORD_CHUNK {
        return mark_sent(pool, issue_id, &sent, now).await;
    }
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    for chunk in sent.chunks(RECORD_CHUNK) {
        mark_sent(&mut *tx, issue_id, chunk, now).await?;
    }
    for (id, outcome) in outcomes {
        let (state, error, retry_at) = match outcome {
            Outcome::Sent => continue,
            Outcome::Deferred { error, retry_at } => (Pending, Some(error.as_str()), *retry_at),
            Outcome::Bounced(e) => (Bounced, Some(e.as_str()), 0),
            Outcome::Failed(e) => (Failed, Some(e.as_str()), 0),
            Outcome::Unclaimed => (Pending, None, 0),
        };
        let uncount = i64::from(matches!(outcome, Outcome::Unclaimed));
        sqlx::query(
            "UPDATE deliveries SET state = ?3, last_error = COALESCE(?4, last_error), next_attempt_at = ?5,
             attempts = attempts - ?6, updated_at = ?7 WHERE issue_id = ?1 AND subscriber_id = ?2",
        )
        .bind(issue_id)
        .bind(id)
        .bind(state)
        .bind(error)
        .bind(retry_at)
        .bind(uncount)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if let Outcome::Bounced(why) = outcome {
            sqlx::query(
                "UPDATE subscribers SET status = ?3, bounced_at = ?2, status_changed_at = ?2, status_reason = ?5 WHERE id = ?1 AND status = ?4",
            )
            .bind(id)
            .bind(now)
            .bind(Status::Bounced.as_str())
            .bind(Status::Active.as_str())
            .bind(format!("refused at sending: {why}"))
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Ids per `IN (…)` list: SQLite allows 32,766 variables; statements stay short.
const RECORD_CHUNK: usize = 300;

/// Marks up to `RECORD_CHUNK` deliveries sent, in one statement.
async fn mark_sent<'c>(db: impl sqlx::SqliteExecutor<'c>, issue_id: &str, ids: &[i64], now: i64) -> Result<()> {
    let marks = vec!["?"; ids.len()].join(",");
    let sql = format!(
        "UPDATE deliveries SET state = ?, sent_at = ?, updated_at = ?, last_error = NULL
         WHERE issue_id = ? AND subscriber_id IN ({marks})"
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(Sent).bind(now).bind(now).bind(issue_id);
    for id in ids {
        q = q.bind(id);
    }
    q.execute(db).await?;
    Ok(())
}

/// Marks the send finished when nothing is pending or in flight any more.
pub async fn finish_if_done(pool: &SqlitePool, issue_id: &str, now: i64) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE sends SET finished_at = ?2 WHERE issue_id = ?1 AND finished_at IS NULL
         AND NOT EXISTS (SELECT 1 FROM deliveries WHERE issue_id = ?1 AND state IN (?3, ?4))",
    )
    .bind(issue_id)
    .bind(now)
    .bind(Pending)
    .bind(Sending)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The earliest time a pending delivery may be tried again, if any is pending.
pub async fn next_retry_at(pool: &SqlitePool, issue_id: &str) -> Result<Option<i64>> {
    sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM deliveries WHERE issue_id = ?1 AND state = ?2")
        .bind(issue_id)
        .bind(Pending)
        .fetch_one(pool)
        .await
}

pub async fn counts(pool: &SqlitePool, issue_id: &str) -> Result<Counts> {
    let rows = sqlx::query("SELECT state, COUNT(*) FROM deliveries WHERE issue_id = ?1 GROUP BY state").bind(issue_id).fetch_all(pool).await?;
    let mut c = Counts::default();
    for r in rows {
        let n: i64 = r.get(1);
        c.total += n;
        match r.try_get::<DeliveryState, _>(0)? {
            Pending => c.pending = n,
            Sending => c.sending = n,
            Sent => c.sent = n,
            Failed => c.failed = n,
            Bounced => c.bounced = n,
            Skipped => c.skipped = n,
        }
    }
    Ok(c)
}

/// Deliveries that did not go out (failed, bounced, or pending after an error), with their last error.
pub async fn problems(pool: &SqlitePool, issue_id: &str, limit: i64) -> Result<Vec<(String, String, i64, String)>> {
    let rows = sqlx::query(
        "SELECT s.email, d.state, d.attempts, d.last_error FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id
         WHERE d.issue_id = ?1 AND d.last_error IS NOT NULL AND d.state IN (?3, ?4, ?5)
         ORDER BY d.state, s.email LIMIT ?2",
    )
    .bind(issue_id)
    .bind(limit)
    .bind(Failed)
    .bind(Bounced)
    .bind(Pending)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect())
}

/// Who would get the issue if its send started now (for `--dry-run`), streamed in id order.
pub async fn active_after(pool: &SqlitePool, after_id: i64, limit: i64) -> Result<Vec<(i64, String, Option<String>)>> {
    let rows = sqlx::query("SELECT id, email, name FROM subscribers WHERE status = ?3 AND id > ?1 ORDER BY id LIMIT ?2")
        .bind(after_id)
        .bind(limit)
        .bind(Status::Active.as_str())
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
}

/// Issues whose send started and has not finished.
pub async fn unfinished_sends(pool: &SqlitePool) -> Result<Vec<String>> {
    sqlx::query_scalar("SELECT issue_id FROM sends WHERE finished_at IS NULL ORDER BY issue_id").fetch_all(pool).await
}

/// Issues whose send has started (finished or not): the scheduler never starts them again.
pub async fn started_sends(pool: &SqlitePool) -> Result<std::collections::HashSet<String>> {
    Ok(sqlx::query_scalar("SELECT issue_id FROM sends").fetch_all(pool).await?.into_iter().collect())
}
