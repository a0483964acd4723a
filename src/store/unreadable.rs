//! The record of messages set aside as unreadable (`bounces::unreadable`): what `gazette status`
//! counts, so that a message moved into the mailbox's `Unreadable` folder is not only in a log.

use super::{Store, StoreError, now};

/// One message set aside.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SetAside {
    /// Where it was read: a file, or a mailbox and the message's UID.
    pub source: String,
    /// Why it could not be read.
    pub why: String,
    /// SHA-256 of the message, hex; `None` when it was never read whole.
    pub message_key: Option<String>,
    /// Unix seconds.
    pub at: i64,
}

/// How many messages were set aside, and the newest of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Unreadable {
    pub count: i64,
    /// Newest first.
    pub newest: Vec<SetAside>,
}

impl Store {
    /// Records that the message read at `source` was set aside, and why. The same message read
    /// from the same place again (its move failed, say) is recorded once.
    pub async fn record_unreadable(
        &self,
        source: &str,
        why: &str,
        message_key: Option<&str>,
    ) -> Result<(), StoreError> {
        with_pool!(&self.pool, p => {
            sqlx::query(
                "INSERT INTO unreadable_messages (source, why, message_key, set_aside_at)
                 SELECT $1, $2, $3, $4
                 WHERE NOT EXISTS (SELECT 1 FROM unreadable_messages
                                   WHERE source = $1 AND (message_key = $3 OR (message_key IS NULL AND $3 IS NULL)))",
            )
            .bind(source)
            .bind(why)
            .bind(message_key)
            .bind(now())
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(())
    }

    /// The number of messages set aside, and the `newest` latest of them.
    pub async fn unreadable(&self, newest: usize) -> Result<Unreadable, StoreError> {
        let count: i64 = with_pool!(&self.pool, p => sqlx::query_scalar("SELECT count(*) FROM unreadable_messages").fetch_one(p).await?);
        let rows: Vec<(String, String, Option<String>, i64)> = with_pool!(&self.pool, p => {
            sqlx::query_as("SELECT source, why, message_key, set_aside_at FROM unreadable_messages ORDER BY set_aside_at DESC, id DESC LIMIT $1")
                .bind(newest as i64)
                .fetch_all(p)
                .await?
        });
        let newest =
            rows.into_iter().map(|(source, why, message_key, at)| SetAside { source, why, message_key, at }).collect();
        Ok(Unreadable { count, newest })
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn set_aside_messages_are_counted_once_per_message_and_place_newest_first() {
        for store in crate::store::testing::stores().await {
            assert_eq!(store.unreadable(5).await.unwrap(), super::Unreadable::default());
            store.record_unreadable("/m/new/1", "it is empty", Some("e3b0")).await.unwrap();
            store.record_unreadable("/m/new/2", "it is empty", Some("e3b0")).await.unwrap();
            store.record_unreadable("imaps://b@h:993/INBOX;UID=3", "it is 20 MB", None).await.unwrap();
            // Read again from the same place (a move that failed): nothing new.
            store.record_unreadable("/m/new/1", "it is empty", Some("e3b0")).await.unwrap();
            store.record_unreadable("imaps://b@h:993/INBOX;UID=3", "it is 20 MB", None).await.unwrap();
            let u = store.unreadable(2).await.unwrap();
            assert_eq!(u.count, 3, "{u:?}");
            let sources: Vec<&str> = u.newest.iter().map(|s| s.source.as_str()).collect();
            assert_eq!(sources, ["imaps://b@h:993/INBOX;UID=3", "/m/new/2"], "newest first, as many as asked");
            assert_eq!((u.newest[0].why.as_str(), u.newest[0].message_key.as_deref()), ("it is 20 MB", None));
            assert_eq!(u.newest[1].message_key.as_deref(), Some("e3b0"));
        }
    }
}
