//! `gazette store copy`: moving house, from one database to another (a SQLite file to a PostgreSQL
//! server, typically). Everything that is kept is copied as it is, ids included: subscribers, the
//! token secret and other settings, sends and their deliveries (a half-finished send resumes on
//! the new database where it stopped, with the same Message-IDs), confirmations, welcomes, the publication
//! record, bounce reports, refusals, the holds the editor lifted, the messages set aside as
//! unreadable and DMARC reports. Leases are not: they belong to processes of the old database. The
//! target must be empty, so nothing there is ever overwritten.

use futures_util::TryStreamExt;
use sqlx::Row;

use super::{Pool, Store, StoreError, values_list};

/// A column's kind: every column Gazette keeps is an integer or a text, either maybe NULL.
#[derive(Clone, Copy)]
enum Kind {
    Int,
    Text,
}

use Kind::{Int, Text};

/// The tables in an order that satisfies their foreign keys, with their columns.
const TABLES: &[(&str, &[(&str, Kind)])] = &[
    (
        "subscribers",
        &[
            ("id", Int),
            ("email", Text),
            ("email_key", Text),
            ("name", Text),
            ("status", Text),
            ("source", Text),
            ("created_at", Int),
            ("status_changed_at", Int),
            ("confirmed_at", Int),
            ("unsubscribed_at", Int),
            ("bounced_at", Int),
            ("complained_at", Int),
            ("status_reason", Text),
            ("themes", Text),
            ("paused_until", Int),
        ],
    ),
    ("settings", &[("name", Text), ("value", Text)]),
    (
        "sends",
        &[
            ("issue_id", Text),
            ("number", Int),
            ("subject", Text),
            ("audience", Int),
            ("started_at", Int),
            ("finished_at", Int),
        ],
    ),
    (
        "deliveries",
        &[
            ("issue_id", Text),
            ("subscriber_id", Int),
            ("state", Text),
            ("attempts", Int),
            ("last_error", Text),
            ("message_id", Text),
            ("next_attempt_at", Int),
            ("updated_at", Int),
            ("sent_at", Int),
        ],
    ),
    ("confirmations", &[("subscriber_id", Int), ("requested_at", Int), ("sent_at", Int)]),
    (
        "welcomes",
        &[
            ("subscriber_id", Int),
            ("state", Text),
            ("attempts", Int),
            ("last_error", Text),
            ("message_id", Text),
            ("next_attempt_at", Int),
            ("queued_at", Int),
            ("updated_at", Int),
            ("sent_at", Int),
        ],
    ),
    (
        "publications",
        &[
            ("issue_id", Text),
            ("number", Int),
            ("published_at", Int),
            ("content_hash", Text),
            ("revised_at", Int),
            ("skipped_at", Int),
        ],
    ),
    (
        "bounce_events",
        &[
            ("id", Int),
            ("subscriber_id", Int),
            ("issue_id", Text),
            ("kind", Text),
            ("address", Text),
            ("reason", Text),
            ("source", Text),
            ("message_key", Text),
            ("received_at", Int),
            ("reason_code", Text),
        ],
    ),
    (
        "refusals",
        &[
            ("id", Int),
            ("subscriber_id", Int),
            ("issue_id", Text),
            ("provider", Text),
            ("reason_code", Text),
            ("detail", Text),
            ("address", Text),
            ("source", Text),
            ("message_key", Text),
            ("received_at", Int),
        ],
    ),
    ("hold_lifts", &[("issue_id", Text), ("lifted_at", Int), ("reason", Text)]),
    (
        "unreadable_messages",
        &[("id", Int), ("source", Text), ("why", Text), ("message_key", Text), ("set_aside_at", Int)],
    ),
    (
        "dmarc_reports",
        &[
            ("id", Int),
            ("org", Text),
            ("report_id", Text),
            ("begins_at", Int),
            ("ends_at", Int),
            ("domain", Text),
            ("source", Text),
            ("received_at", Int),
        ],
    ),
    (
        "dmarc_rows",
        &[
            ("report", Int),
            ("source_ip", Text),
            ("count", Int),
            ("disposition", Text),
            ("dkim", Text),
            ("spf", Text),
            ("header_from", Text),
        ],
    ),
];

/// Rows per INSERT: 15 columns at most, well under both backends' limits on parameters.
const ROWS_PER_INSERT: usize = 1000;

/// One value on its way.
enum Value {
    Int(Option<i64>),
    Text(Option<String>),
}

/// Rows copied per table, in `TABLES` order.
pub type Copied = Vec<(&'static str, u64)>;

/// Copies every table of `from` into `to`, in one transaction on the target: on any error the
/// target is left as empty as it was. A SQLite source's send that stopped with accepted messages
/// in its journal has them recorded first (`Ledger::replay_journals`), so that the send resumes on
/// the target without sending them again; the second value is how many.
pub async fn copy(from: &Store, to: &Store) -> Result<(Copied, u64), StoreError> {
    let mut present = Vec::new();
    for (table, _) in TABLES {
        let n: i64 = with_pool!(to.pool(), p => sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}"))).fetch_one(p).await?);
        if n > 0 {
            present.push(format!("{table} ({n} rows)"));
        }
    }
    if !present.is_empty() {
        return Err(StoreError::Refused(format!(
            "the target database {} is not empty: it has {}. `store copy` only fills an empty database, so nothing is overwritten",
            to.location(),
            present.join(", ")
        )));
    }
    let recovered = match from.location() {
        super::Database::Sqlite(database) => from.ledger().replay_journals(database).await?,
        super::Database::Postgres(_) => 0,
    };
    let mut copied = Vec::new();
    with_pool!(to.pool(), target => {
        let mut tx = target.begin().await?;
        for (table, columns) in TABLES {
            let names: Vec<&str> = columns.iter().map(|(c, _)| *c).collect();
            let select = format!("SELECT {} FROM {table} ORDER BY {}", names.join(", "), names[0]);
            let mut count = 0u64;
            let mut batch: Vec<Vec<Value>> = Vec::with_capacity(ROWS_PER_INSERT);
            // Writes the rows of `batch` in one INSERT and empties it; the number of rows.
            macro_rules! insert {
                ($batch:ident) => {{
                    let n = $batch.len() as u64;
                    let sql = format!("INSERT INTO {table} ({}) VALUES {}", names.join(", "), values_list($batch.len(), names.len()));
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for value in $batch.drain(..).flatten() {
                        q = match value {
                            Value::Int(v) => q.bind(v),
                            Value::Text(v) => q.bind(v),
                        };
                    }
                    q.execute(&mut *tx).await?;
                    n
                }};
            }
            with_pool!(from.pool(), source => {
                let mut rows = sqlx::query(sqlx::AssertSqlSafe(select)).fetch(source);
                while let Some(row) = rows.try_next().await? {
                    let mut values = Vec::with_capacity(columns.len());
                    for (i, (_, kind)) in columns.iter().enumerate() {
                        values.push(match kind {
                            Int => Value::Int(row.try_get(i)?),
                            Text => Value::Text(row.try_get(i)?),
                        });
                    }
                    batch.push(values);
                    if batch.len() == ROWS_PER_INSERT {
                        count += insert!(batch);
                    }
                }
            });
            if !batch.is_empty() {
                count += insert!(batch);
            }
            copied.push((*table, count));
        }
        if let Pool::Postgres(_) = to.pool() {
            // Ids were copied as they were: the next new row takes the id after the highest.
            for table in ["subscribers", "bounce_events", "unreadable_messages", "refusals", "dmarc_reports"] {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
                )))
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
    });
    Ok((copied, recovered))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AddOutcome, NewSubscriber, Source, Status};
    use crate::themes::ThemeChoice;

    #[tokio::test]
    async fn every_column_of_every_table_is_copied() {
        // A column added by a migration and not listed here would be lost by `store copy`.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).await.unwrap();
        for (table, columns) in TABLES {
            let mut listed: Vec<&str> = columns.iter().map(|(c, _)| *c).collect();
            let mut present: Vec<String> =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT name FROM pragma_table_info('{table}')")))
                    .fetch_all(store.pool().sqlite())
                    .await
                    .unwrap();
            listed.sort_unstable();
            present.sort_unstable();
            assert_eq!(listed, present, "the columns of {table}");
        }
    }

    #[tokio::test]
    async fn a_readers_themes_and_pause_come_along() {
        let dir = tempfile::tempdir().unwrap();
        let from = Store::open(&dir.path().join("from.db")).await.unwrap();
        let new = NewSubscriber {
            email: "ada@example.org".parse().unwrap(),
            name: None,
            status: Status::Active,
            source: Source::Cli,
        };
        let AddOutcome::Added(ada) = from.add(&new, false).await.unwrap() else { panic!("a new subscriber") };
        let themes = ThemeChoice::parse_list("Energy transition; Public health").unwrap();
        from.set_themes(ada.id, themes.as_ref()).await.unwrap();
        let until = chrono::DateTime::from_timestamp(4_000_000_000, 0).unwrap();
        let before = from.set_pause(ada.id, Some(until)).await.unwrap().unwrap();
        for to in crate::store::testing::stores().await {
            copy(&from, &to).await.unwrap();
            let after = to.subscriber_by_id(ada.id).await.unwrap().unwrap();
            assert_eq!((after.themes.as_ref(), after.paused_until), (themes.as_ref(), Some(until)));
            assert_eq!(after, before);
        }
    }
}
