//! Changes of address asked for on the preferences page, each waiting for the link mailed to the
//! new address (double opt-in; the old address keeps receiving until then). Every request is kept,
//! so that an old link is refused saying why: used already, superseded by a later request, too old,
//! or for an address another subscriber has taken since.

use chrono::{DateTime, Utc};

use super::{Backend, Status, Store, StoreError, Subscriber, SubscriberEmail};

/// One request as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AddressChange {
    pub id: i64,
    pub subscriber_id: i64,
    /// The new address as given.
    pub new_email: String,
    /// `SubscriberEmail::key` of `new_email`: what the link's token is signed over.
    pub new_email_key: String,
    pub requested_at: DateTime<Utc>,
    /// When the link was used.
    pub confirmed_at: Option<DateTime<Utc>>,
    /// The same subscriber asked for another change since: this one's link no longer works.
    pub superseded: bool,
}

/// What `Store::request_address_change` did.
#[derive(Debug, Clone, PartialEq)]
pub enum AddressChangeRequest {
    /// Recorded: its link is to be mailed to the new address.
    Requested(AddressChange),
    /// The subscriber has this address already: nothing recorded.
    Unchanged,
    /// Another subscriber has this address: nothing recorded.
    Taken,
}

/// What `Store::confirm_address_change` did.
#[derive(Debug, Clone, PartialEq)]
pub enum AddressChangeOutcome {
    /// The subscriber now has the new address (`subscriber.email`); `old_email` was theirs.
    Changed {
        subscriber: Subscriber,
        old_email: String,
    },
    /// The link was used before: nothing changed now.
    AlreadyDone(Subscriber),
    /// A later request of the same subscriber replaced this one.
    Superseded(AddressChange),
    /// Asked for longer ago than the links stay valid.
    Expired(AddressChange),
    /// Another subscriber has the new address now.
    Taken(AddressChange),
    /// The subscriber is no longer active (unsubscribed, bounced): their address stays.
    Inactive(Subscriber),
    NotFound,
}

/// id, subscriber_id, new_email, new_email_key, requested_at, confirmed_at, later requests.
type ChangeRow = (i64, i64, String, String, i64, Option<i64>, i64);

const SELECT_CHANGE: &str = "SELECT c.id, c.subscriber_id, c.new_email, c.new_email_key, c.requested_at, c.confirmed_at, \
     (SELECT count(*) FROM address_changes l WHERE l.subscriber_id = c.subscriber_id AND l.id > c.id) \
     FROM address_changes c WHERE c.id = $1";

fn change_of(row: ChangeRow) -> Result<AddressChange, StoreError> {
    let (id, subscriber_id, new_email, new_email_key, requested_at, confirmed_at, later) = row;
    let time = |t: i64| {
        DateTime::from_timestamp(t, 0)
            .ok_or_else(|| StoreError::Corrupt(format!("address change {id} has a time out of range")))
    };
    Ok(AddressChange {
        id,
        subscriber_id,
        new_email,
        new_email_key,
        requested_at: time(requested_at)?,
        confirmed_at: confirmed_at.map(time).transpose()?,
        superseded: later > 0,
    })
}

impl Store {
    /// Records that active subscriber `id` asked at `now` to receive at `new` instead, unless the
    /// address is theirs already or another subscriber's (whatever that one's status: the address
    /// is unique).
    pub async fn request_address_change(
        &self,
        id: i64,
        new: &SubscriberEmail,
        now: DateTime<Utc>,
    ) -> Result<AddressChangeRequest, StoreError> {
        let change_id = with_pool!(&self.pool, p => {
            let mut tx = p.begin_write().await?;
            let holder: Option<i64> = sqlx::query_scalar("SELECT id FROM subscribers WHERE email_key = $1")
                .bind(new.key())
                .fetch_optional(&mut *tx)
                .await?;
            match holder {
                Some(holder) if holder == id => return Ok(AddressChangeRequest::Unchanged),
                Some(_) => return Ok(AddressChangeRequest::Taken),
                None => {}
            }
            let change_id: i64 = sqlx::query_scalar(
                "INSERT INTO address_changes (subscriber_id, new_email, new_email_key, requested_at) VALUES ($1, $2, $3, $4) RETURNING id",
            )
            .bind(id)
            .bind(new.as_str())
            .bind(new.key())
            .bind(now.timestamp())
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            change_id
        });
        match self.address_change(change_id).await? {
            Some(change) => Ok(AddressChangeRequest::Requested(change)),
            None => Err(StoreError::Corrupt(format!("the address change {change_id} just recorded is gone"))),
        }
    }

    /// The request `change_id`, if there is one.
    pub async fn address_change(&self, change_id: i64) -> Result<Option<AddressChange>, StoreError> {
        let row: Option<ChangeRow> =
            with_pool!(&self.pool, p => sqlx::query_as(SELECT_CHANGE).bind(change_id).fetch_optional(p).await)?;
        row.map(change_of).transpose()
    }

    /// Uses the link of request `change_id` at `now`: the subscriber's address becomes the new one
    /// (address and key in one statement, which finds the address still free), when the request is
    /// the subscriber's latest, unused, younger than `valid_for`, and the subscriber still active.
    pub async fn confirm_address_change(
        &self,
        change_id: i64,
        now: DateTime<Utc>,
        valid_for: chrono::Duration,
    ) -> Result<AddressChangeOutcome, StoreError> {
        enum Done {
            Changed { subscriber_id: i64, old_email: String },
            Already(i64),
            Inactive(i64),
        }
        let done = with_pool!(&self.pool, p => {
            let mut tx = p.begin_write().await?;
            let row: Option<ChangeRow> = sqlx::query_as(SELECT_CHANGE).bind(change_id).fetch_optional(&mut *tx).await?;
            let Some(change) = row.map(change_of).transpose()? else { return Ok(AddressChangeOutcome::NotFound) };
            let current: Option<(String, String)> = sqlx::query_as("SELECT email, status FROM subscribers WHERE id = $1")
                .bind(change.subscriber_id)
                .fetch_optional(&mut *tx)
                .await?;
            let Some((old_email, status)) = current else { return Ok(AddressChangeOutcome::NotFound) };
            if change.confirmed_at.is_some() {
                Done::Already(change.subscriber_id)
            } else if change.superseded {
                return Ok(AddressChangeOutcome::Superseded(change));
            } else if now - change.requested_at > valid_for {
                return Ok(AddressChangeOutcome::Expired(change));
            } else if status != Status::Active.as_str() {
                Done::Inactive(change.subscriber_id)
            } else {
                let moved = sqlx::query(
                    "UPDATE subscribers SET email = $1, email_key = $2 WHERE id = $3 AND status = $4 \
                     AND NOT EXISTS (SELECT 1 FROM subscribers o WHERE o.email_key = $2)",
                )
                .bind(&change.new_email)
                .bind(&change.new_email_key)
                .bind(change.subscriber_id)
                .bind(Status::Active.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if moved == 0 {
                    return Ok(AddressChangeOutcome::Taken(change));
                }
                sqlx::query("UPDATE address_changes SET confirmed_at = $1 WHERE id = $2")
                    .bind(now.timestamp())
                    .bind(change.id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Done::Changed { subscriber_id: change.subscriber_id, old_email }
            }
        });
        let id = match &done {
            Done::Changed { subscriber_id, .. } | Done::Already(subscriber_id) | Done::Inactive(subscriber_id) => {
                *subscriber_id
            }
        };
        let Some(subscriber) = self.subscriber_by_id(id).await? else { return Ok(AddressChangeOutcome::NotFound) };
        Ok(match done {
            Done::Changed { old_email, .. } => AddressChangeOutcome::Changed { subscriber, old_email },
            Done::Already(_) => AddressChangeOutcome::AlreadyDone(subscriber),
            Done::Inactive(_) => AddressChangeOutcome::Inactive(subscriber),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AddOutcome, NewSubscriber, Source};

    async fn add(s: &Store, email: &str) -> Subscriber {
        let new =
            NewSubscriber { email: email.parse().unwrap(), name: None, status: Status::Active, source: Source::Cli };
        match s.add(&new, false).await.unwrap() {
            AddOutcome::Added(s) => s,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_change_waits_for_its_link_and_refuses_taken_superseded_and_old_ones() {
        let week = chrono::Duration::days(7);
        for s in crate::store::testing::stores().await {
            let now = Utc::now();
            let ada = add(&s, "ada@example.org").await;
            let bob = add(&s, "bob@example.org").await;
            let email = |e: &str| e.parse::<SubscriberEmail>().unwrap();
            assert_eq!(
                s.request_address_change(ada.id, &email("ADA@example.org"), now).await.unwrap(),
                AddressChangeRequest::Unchanged
            );
            assert_eq!(
                s.request_address_change(ada.id, &email("Bob@example.org"), now).await.unwrap(),
                AddressChangeRequest::Taken
            );
            let AddressChangeRequest::Requested(first) =
                s.request_address_change(ada.id, &email("Ada.New@example.org"), now).await.unwrap()
            else {
                panic!()
            };
            assert_eq!(
                (first.new_email.as_str(), first.new_email_key.as_str()),
                ("Ada.New@example.org", "ada.new@example.org")
            );
            // Nothing changes until the link is used.
            assert_eq!(s.subscriber_by_id(ada.id).await.unwrap().unwrap().email, "ada@example.org");
            let AddressChangeRequest::Requested(second) =
                s.request_address_change(ada.id, &email("ada.other@example.org"), now).await.unwrap()
            else {
                panic!()
            };
            assert!(s.address_change(first.id).await.unwrap().unwrap().superseded);
            assert!(matches!(
                s.confirm_address_change(first.id, now, week).await.unwrap(),
                AddressChangeOutcome::Superseded(_)
            ));
            assert!(matches!(
                s.confirm_address_change(second.id, now + chrono::Duration::days(8), week).await.unwrap(),
                AddressChangeOutcome::Expired(_)
            ));
            let AddressChangeOutcome::Changed { subscriber, old_email } =
                s.confirm_address_change(second.id, now, week).await.unwrap()
            else {
                panic!()
            };
            assert_eq!((subscriber.email.as_str(), old_email.as_str()), ("ada.other@example.org", "ada@example.org"));
            assert_eq!(s.subscriber_by_email(&email("ADA.OTHER@example.org")).await.unwrap().unwrap().id, ada.id);
            assert_eq!(s.subscriber_by_email(&email("ada@example.org")).await.unwrap(), None, "the old key is freed");
            assert!(matches!(
                s.confirm_address_change(second.id, now, week).await.unwrap(),
                AddressChangeOutcome::AlreadyDone(_)
            ));
            // Bob asks for an address that Carol takes before he uses the link.
            let AddressChangeRequest::Requested(bobs) =
                s.request_address_change(bob.id, &email("carol@example.org"), now).await.unwrap()
            else {
                panic!()
            };
            add(&s, "Carol@example.org").await;
            assert!(matches!(
                s.confirm_address_change(bobs.id, now, week).await.unwrap(),
                AddressChangeOutcome::Taken(_)
            ));
            assert_eq!(s.subscriber_by_id(bob.id).await.unwrap().unwrap().email, "bob@example.org");
            // An unsubscribed reader's link changes nothing.
            let AddressChangeRequest::Requested(later) =
                s.request_address_change(bob.id, &email("bob.new@example.org"), now).await.unwrap()
            else {
                panic!()
            };
            s.unsubscribe_by_id(bob.id).await.unwrap();
            assert!(matches!(
                s.confirm_address_change(later.id, now, week).await.unwrap(),
                AddressChangeOutcome::Inactive(_)
            ));
            assert_eq!(s.subscriber_by_id(bob.id).await.unwrap().unwrap().email, "bob@example.org");
            assert_eq!(s.confirm_address_change(9999, now, week).await.unwrap(), AddressChangeOutcome::NotFound);
        }
    }
}
