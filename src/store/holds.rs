//! What the reputation guard reads and keeps: the numbers of an issue's send (what the ledger, the
//! reports that came back and the refusals say of it), the last send before an issue, and the
//! holds the editor lifted (`hold_lifts`). Whether an issue is held is decided from these by
//! `reputation`, each time it is asked: only a lift is stored.

use super::Store;
use super::bounces::{ProviderRefusals, Returned};
use super::ledger::Counts;
use crate::issue_id::IssueId;

type Result<T> = std::result::Result<T, super::StoreError>;

/// What became of one issue's send, for its rates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SendNumbers {
    pub counts: Counts,
    pub returned: Returned,
    pub refusals: Vec<ProviderRefusals>,
}

/// A hold the editor lifted.
#[derive(Debug, Clone, PartialEq)]
pub struct Lift {
    /// Unix seconds.
    pub lifted_at: i64,
    /// What held the issue then.
    pub reason: String,
}

impl Store {
    /// The numbers of `issue_id`'s send, as they are now (complaints keep coming in after it).
    pub async fn send_numbers(&self, issue_id: &IssueId) -> Result<SendNumbers> {
        Ok(SendNumbers {
            counts: self.ledger().counts(issue_id).await?,
            returned: self.returned(issue_id).await?,
            refusals: self.refusals(issue_id).await?,
        })
    }

    /// The latest issue before `issue_id` whose send started, with its number.
    pub async fn last_send_before(&self, issue_id: &IssueId) -> Result<Option<(IssueId, i64)>> {
        Ok(with_pool!(&self.pool, p => {
            sqlx::query_as("SELECT issue_id, number FROM sends WHERE issue_id < $1 ORDER BY issue_id DESC LIMIT 1")
                .bind(issue_id)
                .fetch_optional(p)
                .await?
        }))
    }

    /// The latest issue whose send started, with its number.
    pub async fn last_send(&self) -> Result<Option<(IssueId, i64)>> {
        Ok(with_pool!(&self.pool, p => {
            sqlx::query_as("SELECT issue_id, number FROM sends ORDER BY issue_id DESC LIMIT 1")
                .fetch_optional(p)
                .await?
        }))
    }

    /// Records that the editor lets `issue_id` go although `reason` held it. Lifting again keeps
    /// the first lift.
    pub async fn lift_hold(&self, issue_id: &IssueId, reason: &str, at: i64) -> Result<()> {
        with_pool!(&self.pool, p => {
            sqlx::query("INSERT INTO hold_lifts (issue_id, lifted_at, reason) VALUES ($1, $2, $3) ON CONFLICT (issue_id) DO NOTHING")
                .bind(issue_id)
                .bind(at)
                .bind(reason)
                .execute(p)
                .await?
                .rows_affected()
        });
        Ok(())
    }

    /// The editor's lift of `issue_id`'s hold, if there was one.
    pub async fn hold_lift(&self, issue_id: &IssueId) -> Result<Option<Lift>> {
        let row: Option<(i64, String)> = with_pool!(&self.pool, p => {
            sqlx::query_as("SELECT lifted_at, reason FROM hold_lifts WHERE issue_id = $1")
                .bind(issue_id)
                .fetch_optional(p)
                .await?
        });
        Ok(row.map(|(lifted_at, reason)| Lift { lifted_at, reason }))
    }
}
