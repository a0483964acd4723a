//! Web sign-ups waiting for their confirmation mail to be clicked: when the mail was last sent (so a
//! repeated subscribe re-sends it at most once an interval) and when it was last asked for (so an
//! unsubscribed address comes back only by confirming a request made after it left).

use chrono::{DateTime, Utc};

use super::{Backend, Status, Store, StoreError, Subscriber};

/// What a confirmation link did.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfirmOutcome {
    /// Pending, or unsubscribed with a fresh request: now active.
    Confirmed(Subscriber),
    AlreadyActive(Subscriber),
    /// Unsubscribed without a request since, or bounced or complained: left as it was.
    Refused(Subscriber),
    NotFound,
}

/// `sent_at` of a confirmation mail that did not go out and is to be retried.
const NOT_SENT: i64 = 0;
/// `sent_at` of one the server refused for good: sent again only when asked again. Both are long
/// past, so a next request always sends at once.
const REFUSED: i64 = -1;

impl Store {
    /// Records that subscriber `id` asked for a confirmation mail at `now`. True when the mail is to
    /// be sent (none was sent within `min_interval`); it is then counted as sent.
    pub async fn request_confirmation(
        &self,
        id: i64,
        now: DateTime<Utc>,
        min_interval: chrono::Duration,
    ) -> Result<bool, StoreError> {
        let due = with_pool!(&self.pool, p => {
            let mut tx = p.begin_write().await?;
            let last: Option<i64> =
                sqlx::query_scalar("SELECT sent_at FROM confirmations WHERE subscriber_id = $1").bind(id).fetch_optional(&mut *tx).await?;
            let due = last.and_then(|at| DateTime::from_timestamp(at, 0)).is_none_or(|at| now - at >= min_interval);
            sqlx::query(
                "INSERT INTO confirmations (subscriber_id, requested_at, sent_at) VALUES ($1, $2, $2) \
                 ON CONFLICT (subscriber_id) DO UPDATE SET requested_at = $2, sent_at = CASE WHEN $3 THEN $2 ELSE confirmations.sent_at END",
            )
            .bind(id)
            .bind(now.timestamp())
            .bind(due)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            due
        });
        Ok(due)
    }

    /// Forgets that subscriber `id`'s confirmation mail went out (the server could not take it),
    /// so the next request sends it again at once, and `serve` retries it meanwhile
    /// (`confirmations_to_retry`). With `permanent` (the server refused the address), only a next
    /// request sends it again: retrying would get the same answer.
    pub async fn confirmation_not_sent(&self, id: i64, permanent: bool) -> Result<(), StoreError> {
        with_pool!(&self.pool, p => sqlx::query("UPDATE confirmations SET sent_at = $2 WHERE subscriber_id = $1")
            .bind(id)
            .bind(if permanent { REFUSED } else { NOT_SENT })
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Up to `limit` subscribers whose confirmation mail did not go out for a passing reason and
    /// was asked for at `since` or later (older links are no longer worth a mail), oldest first.
    /// Each is counted as sent at `now` (as `request_confirmation` does), so that a subscribe
    /// meanwhile does not send it twice; a failure puts it back with `confirmation_not_sent`.
    pub async fn confirmations_to_retry(
        &self,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let ids = with_pool!(&self.pool, p => {
            let mut tx = p.begin_write().await?;
            let ids: Vec<i64> = sqlx::query_scalar(
                "SELECT subscriber_id FROM confirmations WHERE sent_at = $1 AND requested_at >= $2 ORDER BY requested_at, subscriber_id LIMIT $3",
            )
            .bind(NOT_SENT)
            .bind(since.timestamp())
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            for id in &ids {
                sqlx::query("UPDATE confirmations SET sent_at = $2 WHERE subscriber_id = $1").bind(id).bind(now.timestamp()).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            ids
        });
        Ok(ids)
    }

    /// Confirms subscriber `id` from its confirmation link. A pending subscriber becomes active; an
    /// unsubscribed one only when it asked again (`request_confirmation`) after unsubscribing and
    /// within `valid_for` of `now`. Anything else is left alone.
    pub async fn confirm_request(
        &self,
        id: i64,
        now: DateTime<Utc>,
        valid_for: chrono::Duration,
    ) -> Result<ConfirmOutcome, StoreError> {
        let Some(s) = self.subscriber_by_id(id).await? else { return Ok(ConfirmOutcome::NotFound) };
        let from = match s.status {
            Status::Active => return Ok(ConfirmOutcome::AlreadyActive(s)),
            Status::Pending => Status::Pending,
            Status::Unsubscribed => {
                let requested: Option<i64> = with_pool!(&self.pool, p => {
                    sqlx::query_scalar("SELECT requested_at FROM confirmations WHERE subscriber_id = $1").bind(id).fetch_optional(p).await?
                });
                let requested = requested.and_then(|at| DateTime::<Utc>::from_timestamp(at, 0));
                // Whole seconds on both sides: a request in the same second as the unsubscribe counts.
                let fresh =
                    requested.is_some_and(|at| s.unsubscribed_at.is_none_or(|u| at >= u) && now - at <= valid_for);
                if !fresh {
                    return Ok(ConfirmOutcome::Refused(s));
                }
                Status::Unsubscribed
            }
            Status::Bounced | Status::Complained => return Ok(ConfirmOutcome::Refused(s)),
        };
        match self.transition(id, Status::Active, &[from]).await? {
            Some(active) => {
                with_pool!(&self.pool, p => sqlx::query("DELETE FROM confirmations WHERE subscriber_id = $1").bind(id).execute(p).await?.rows_affected());
                Ok(ConfirmOutcome::Confirmed(active))
            }
            // Changed meanwhile (confirmed twice at once, or unsubscribed): decide on what is there now.
            None => Box::pin(self.confirm_request(id, now, valid_for)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AddOutcome, NewSubscriber, Source};

    async fn pending(s: &Store, email: &str) -> Subscriber {
        let new =
            NewSubscriber { email: email.parse().unwrap(), name: None, status: Status::Pending, source: Source::Web };
        let AddOutcome::Added(p) = s.add(&new, false).await.unwrap() else { panic!() };
        p
    }

    #[tokio::test]
    async fn confirmation_mails_are_resent_at_most_once_an_interval() {
        for s in crate::store::testing::stores().await {
            let p = pending(&s, "web@example.org").await;
            let t0 = Utc::now();
            let hour = chrono::Duration::hours(1);
            assert!(s.request_confirmation(p.id, t0, hour).await.unwrap());
            assert!(!s.request_confirmation(p.id, t0 + chrono::Duration::minutes(59), hour).await.unwrap());
            assert!(s.request_confirmation(p.id, t0 + hour, hour).await.unwrap());
            assert!(!s.request_confirmation(p.id, t0 + hour, hour).await.unwrap());
            s.confirmation_not_sent(p.id, false).await.unwrap();
            assert!(
                s.request_confirmation(p.id, t0 + hour, hour).await.unwrap(),
                "a mail that did not go out is sent again"
            );
            s.confirmation_not_sent(p.id, true).await.unwrap();
            assert!(
                s.request_confirmation(p.id, t0 + hour, hour).await.unwrap(),
                "a refused one too, when asked again"
            );
        }
    }

    #[tokio::test]
    async fn only_confirmations_that_failed_for_a_passing_reason_and_are_still_valid_are_retried() {
        for s in crate::store::testing::stores().await {
            let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
            let hour = chrono::Duration::hours(1);
            let (passing, refused, sent, old) = (
                pending(&s, "a@example.org").await,
                pending(&s, "b@example.org").await,
                pending(&s, "c@example.org").await,
                pending(&s, "d@example.org").await,
            );
            s.request_confirmation(old.id, t0 - hour * 48, hour).await.unwrap();
            for p in [&passing, &refused, &sent] {
                s.request_confirmation(p.id, t0, hour).await.unwrap();
            }
            for p in [&passing, &old] {
                s.confirmation_not_sent(p.id, false).await.unwrap();
            }
            s.confirmation_not_sent(refused.id, true).await.unwrap();
            let since = t0 - hour * 24;
            assert_eq!(s.confirmations_to_retry(since, t0 + hour, 10).await.unwrap(), [passing.id]);
            // Taken: not handed out again until it fails again.
            assert!(s.confirmations_to_retry(since, t0 + hour, 10).await.unwrap().is_empty());
            assert!(!s.request_confirmation(passing.id, t0 + hour, hour).await.unwrap(), "counted as sent when taken");
            s.confirmation_not_sent(passing.id, false).await.unwrap();
            assert_eq!(s.confirmations_to_retry(since, t0 + hour, 10).await.unwrap(), [passing.id]);
        }
    }

    #[tokio::test]
    async fn an_unsubscribed_address_comes_back_only_through_a_new_request() {
        for s in crate::store::testing::stores().await {
            let week = chrono::Duration::days(7);
            let p = pending(&s, "web@example.org").await;
            s.request_confirmation(p.id, Utc::now(), chrono::Duration::hours(1)).await.unwrap();
            assert!(
                matches!(s.confirm_request(p.id, Utc::now(), week).await.unwrap(), ConfirmOutcome::Confirmed(a) if a.status == Status::Active)
            );
            assert!(matches!(
                s.confirm_request(p.id, Utc::now(), week).await.unwrap(),
                ConfirmOutcome::AlreadyActive(_)
            ));
            s.unsubscribe_by_id(p.id).await.unwrap();
            // The old link alone does nothing.
            assert!(
                matches!(s.confirm_request(p.id, Utc::now(), week).await.unwrap(), ConfirmOutcome::Refused(u) if u.status == Status::Unsubscribed)
            );
            // A request after the unsubscribe, confirmed in time, does; a stale one does not.
            let now = Utc::now();
            s.request_confirmation(p.id, now, chrono::Duration::hours(1)).await.unwrap();
            assert!(matches!(
                s.confirm_request(p.id, now + week + chrono::Duration::seconds(1), week).await.unwrap(),
                ConfirmOutcome::Refused(_)
            ));
            assert!(
                matches!(s.confirm_request(p.id, now, week).await.unwrap(), ConfirmOutcome::Confirmed(a) if a.status == Status::Active)
            );
            assert_eq!(s.confirm_request(999, now, week).await.unwrap(), ConfirmOutcome::NotFound);
        }
    }
}
