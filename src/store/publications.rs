//! The publication record: which issues are published, the number each was given when it was first
//! published (never changed after), and what its content was, so that a later edit shows in the
//! feeds as an update. The one place numbers are read from and written to.

use std::collections::BTreeMap;

use super::{Backend, Pool, Store, values_list};

use crate::issue::PinnedNumbers;
use crate::issue_id::IssueId;

type Result<T> = std::result::Result<T, sqlx::Error>;

/// One published issue.
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    pub number: u32,
    /// Unix seconds.
    pub published_at: i64,
    /// The issue's content hash when it was last published ("" for an issue sent before the record
    /// kept hashes).
    pub content_hash: String,
    /// When its content last changed after it was first published (Unix seconds).
    pub revised_at: Option<i64>,
    /// When the editor chose not to send it (`gazette skip`; Unix seconds).
    pub skipped_at: Option<i64>,
}

/// Published issues by issue id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PublicationRecord(pub BTreeMap<IssueId, Publication>);

impl PublicationRecord {
    pub fn get(&self, issue_id: &IssueId) -> Option<&Publication> {
        self.0.get(issue_id)
    }

    pub fn numbers(&self) -> PinnedNumbers {
        self.0.iter().map(|(id, p)| (id.clone(), p.number)).collect()
    }
}

/// issue_id, number, published_at, content_hash, revised_at, skipped_at.
type PublicationRow = (IssueId, i64, i64, String, Option<i64>, Option<i64>);

/// The publication record's statements, on the store they were taken from (`Store::publications`).
#[derive(Debug, Clone, Copy)]
pub struct Publications<'a> {
    pool: &'a Pool,
}

impl Store {
    /// The publication record of this store.
    pub fn publications(&self) -> Publications<'_> {
        Publications { pool: &self.pool }
    }
}

impl Publications<'_> {
    pub async fn read(&self) -> Result<PublicationRecord> {
        let pool = self.pool;
        let rows: Vec<PublicationRow> = with_pool!(pool, p => {
            sqlx::query_as("SELECT issue_id, number, published_at, content_hash, revised_at, skipped_at FROM publications").fetch_all(p).await?
        });
        Ok(PublicationRecord(
            rows.into_iter()
                .map(|(id, number, published_at, content_hash, revised_at, skipped_at)| {
                    (id, Publication { number: number as u32, published_at, content_hash, revised_at, skipped_at })
                })
                .collect(),
        ))
    }

    /// Takes `issue_id` out of the record, freeing its number for the next publication, unless a
    /// message of it may have reached anyone (its send started) or a later issue is numbered after it.
    /// The checks and the removal are one write transaction, so a send cannot start in between.
    pub async fn unpublish(&self, issue_id: &IssueId) -> Result<Change> {
        let pool = self.pool;
        with_pool!(pool, p => {
            let mut tx = p.begin_write().await?;
            let number: Option<i64> = sqlx::query_scalar("SELECT number FROM publications WHERE issue_id = $1").bind(issue_id).fetch_optional(&mut *tx).await?;
            let Some(number) = number else { return Ok(Change::NotPublished) };
            if let Some(started) = send_started(&mut tx, issue_id).await? {
                return Ok(started);
            }
            let later: Option<(IssueId, i64)> = sqlx::query_as("SELECT issue_id, number FROM publications WHERE number > $1 ORDER BY number LIMIT 1")
                .bind(number)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some((issue_id, number)) = later {
                return Ok(Change::NumberedAfter { issue_id, number: number as u32 });
            }
            sqlx::query("DELETE FROM publications WHERE issue_id = $1").bind(issue_id).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(Change::Done { number: number as u32 })
        })
    }

    /// Records that `issue_id` is not to be sent (`gazette skip`) at `now`, unless its send has
    /// started. Skipping it again keeps the first time.
    pub async fn skip(&self, issue_id: &IssueId, now: i64) -> Result<Change> {
        let pool = self.pool;
        with_pool!(pool, p => {
            let mut tx = p.begin_write().await?;
            let number: Option<i64> = sqlx::query_scalar("SELECT number FROM publications WHERE issue_id = $1").bind(issue_id).fetch_optional(&mut *tx).await?;
            let Some(number) = number else { return Ok(Change::NotPublished) };
            if let Some(started) = send_started(&mut tx, issue_id).await? {
                return Ok(started);
            }
            sqlx::query("UPDATE publications SET skipped_at = COALESCE(skipped_at, $2) WHERE issue_id = $1").bind(issue_id).bind(now).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(Change::Done { number: number as u32 })
        })
    }

    /// Records `issues` (issue id and content hash, oldest week first) as published at `now`, in one
    /// transaction: an issue not in the record yet gets the next free number, in the order given; one
    /// whose content changed since gets `revised_at = now`. Returns the whole record afterwards.
    /// Another process publishing at the same moment waits for this one (`Backend::begin_write`), so a
    /// number is never given twice.
    pub async fn publish(&self, issues: &[(IssueId, String)], now: i64) -> Result<PublicationRecord> {
        let pool = self.pool;
        with_pool!(pool, p => {
            let mut tx = p.begin_write().await?;
            let known: BTreeMap<IssueId, String> =
                sqlx::query_as::<_, (IssueId, String)>("SELECT issue_id, content_hash FROM publications").fetch_all(&mut *tx).await?.into_iter().collect();
            let next: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(number), 0) + 1 FROM publications").fetch_one(&mut *tx).await?;
            let new: Vec<&(IssueId, String)> = issues.iter().filter(|(id, _)| !known.contains_key(id)).collect();
            // Many rows a statement: a first build of a large archive publishes thousands at once.
            for (chunk_index, chunk) in new.chunks(200).enumerate() {
                let sql = format!("INSERT INTO publications (issue_id, number, published_at, content_hash) VALUES {}", values_list(chunk.len(), 4));
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for (i, (id, hash)) in chunk.iter().enumerate() {
                    q = q.bind(id.clone()).bind(next + (chunk_index * 200 + i) as i64).bind(now).bind(hash.clone());
                }
                q.execute(&mut *tx).await?;
            }
            for (id, hash) in issues {
                match known.get(id) {
                    None => {}
                    Some(old) if old != hash => {
                        // A record from before hashes were kept learns its hash without counting as a revision.
                        let revised = if old.is_empty() { None } else { Some(now) };
                        sqlx::query("UPDATE publications SET content_hash = $2, revised_at = COALESCE($3, revised_at) WHERE issue_id = $1")
                            .bind(id)
                            .bind(hash)
                            .bind(revised)
                            .execute(&mut *tx)
                            .await?;
                    }
                    Some(_) => {}
                }
            }
            tx.commit().await?;
        });
        self.read().await
    }
}

/// Why an issue cannot be taken back or skipped, or that it was.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Done: the issue's number (free again after an unpublish).
    Done { number: u32 },
    /// The issue is not in the record.
    NotPublished,
    /// Its send has started (Unix seconds), and this many messages were accepted.
    SendStarted { started_at: i64, sent: i64 },
    /// Another issue was numbered after it: taking it back would leave a gap in the numbers.
    NumberedAfter { issue_id: IssueId, number: u32 },
}

/// `Change::SendStarted` when the send of `issue_id` has started, or any delivery of it is sent.
async fn send_started<DB>(tx: &mut sqlx::Transaction<'static, DB>, issue_id: &IssueId) -> Result<Option<Change>>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments: sqlx::IntoArguments<DB>,
    for<'q> &'q IssueId: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> super::ledger::DeliveryState: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let started: Option<(i64,)> = sqlx::query_as("SELECT started_at FROM sends WHERE issue_id = $1")
        .bind(issue_id)
        .fetch_optional(&mut **tx)
        .await?;
    let (sent,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM deliveries WHERE issue_id = $1 AND state = $2")
        .bind(issue_id)
        .bind(super::ledger::DeliveryState::Sent)
        .fetch_one(&mut **tx)
        .await?;
    Ok((started.is_some() || sent > 0).then(|| Change::SendStarted { started_at: started.map_or(0, |(t,)| t), sent }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(list: &[(&str, &str)]) -> Vec<(IssueId, String)> {
        list.iter().map(|(a, b)| (id(a), b.to_string())).collect()
    }

    fn id(text: &str) -> IssueId {
        text.parse().unwrap()
    }

    #[tokio::test]
    async fn numbers_are_given_once_in_order_and_edits_are_revisions() {
        for store in crate::store::testing::stores().await {
            let publications = store.publications();
            let r = publications.publish(&items(&[("2023-07-03", "a"), ("2023-07-17", "b")]), 100).await.unwrap();
            assert_eq!(r.numbers().into_iter().collect::<Vec<_>>(), vec![(id("2023-07-03"), 1), (id("2023-07-17"), 2)]);
            // An old week published later gets the next number; nobody else's moves; an edit is a revision.
            let r = publications
                .publish(&items(&[("2023-07-10", "c"), ("2023-07-17", "b2"), ("2023-07-03", "a")]), 200)
                .await
                .unwrap();
            assert_eq!(r.get(&id("2023-07-10")).unwrap().number, 3);
            assert_eq!(r.get(&id("2023-07-17")).unwrap().number, 2);
            assert_eq!(r.get(&id("2023-07-17")).unwrap().revised_at, Some(200));
            assert_eq!(r.get(&id("2023-07-17")).unwrap().published_at, 100);
            assert_eq!(r.get(&id("2023-07-03")).unwrap().revised_at, None);
            assert_eq!(publications.read().await.unwrap(), r);
        }
    }

    #[tokio::test]
    async fn a_large_first_publication_numbers_every_issue_in_order() {
        for store in crate::store::testing::stores().await {
            let first = chrono::NaiveDate::from_ymd_opt(2020, 1, 6).unwrap();
            let ids: Vec<(IssueId, String)> = (0..450)
                .map(|i| (IssueId::from_week_start(first + chrono::Duration::weeks(i)), format!("h{i}")))
                .collect();
            let r = store.publications().publish(&ids[1..], 7).await.unwrap();
            assert_eq!(r.get(&ids[1].0).unwrap().number, 1);
            assert_eq!(r.get(&ids[449].0).unwrap().number, 449);
            let r = store.publications().publish(&ids, 8).await.unwrap();
            assert_eq!(r.get(&ids[0].0).unwrap().number, 450);
            assert_eq!(r.0.len(), 450);
            assert!(ids[1..].iter().enumerate().all(|(n, (id, _))| r.get(id).unwrap().number == n as u32 + 1));
        }
    }

    #[tokio::test]
    async fn issues_sent_before_the_record_keep_their_numbers() {
        for store in crate::store::testing::stores().await {
            let publications = store.publications();
            // As migration 0004 found them: a row made from a send, without a hash.
            with_pool!(store.pool(), p => sqlx::query("INSERT INTO publications (issue_id, number, published_at, content_hash) VALUES ('2023-07-17', 7, 5, '')")
                .execute(p)
                .await
                .unwrap()
                .rows_affected());
            let r = publications.publish(&items(&[("2023-07-10", "x"), ("2023-07-17", "y")]), 9).await.unwrap();
            assert_eq!(
                r.get(&id("2023-07-17")).unwrap(),
                &Publication {
                    number: 7,
                    published_at: 5,
                    content_hash: "y".into(),
                    revised_at: None,
                    skipped_at: None
                }
            );
            assert_eq!(r.get(&id("2023-07-10")).unwrap().number, 8);
        }
    }
}
