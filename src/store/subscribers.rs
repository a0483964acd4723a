//! Subscribers: the checked address type, the status life cycle and its queries. Unsubscribed,
//! bounced and complained addresses are "suppressed": nothing but an explicit reactivation makes
//! them active again.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::{Store, StoreError, now};

/// An email address checked once (with lettre's parser) when it enters Gazette; nothing downstream
/// checks it again. Kept as given; `key()` is the form uniqueness is decided on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberEmail {
    address: String,
    key: String,
}

/// An address that could not be parsed, with the reason, phrased for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a valid email address: {reason}")]
pub struct InvalidEmail {
    pub input: String,
    pub reason: String,
}

impl SubscriberEmail {
    /// The longest address accepted (RFC 5321's limit on a forward path, less the angle brackets).
    pub const MAX_LEN: usize = 254;

    pub fn parse(input: &str) -> Result<SubscriberEmail, InvalidEmail> {
        let address = input.trim();
        let bad = |reason: &str| InvalidEmail { input: input.to_string(), reason: reason.to_string() };
        if address.is_empty() {
            return Err(bad("it is empty"));
        }
        if address.len() > Self::MAX_LEN {
            return Err(bad(&format!("it is longer than {} characters", Self::MAX_LEN)));
        }
        if let Err(e) = address.parse::<lettre::Address>() {
            let reason = match e {
                lettre::address::AddressError::MissingParts => "it needs a name, an @ and a domain, as in reader@example.org",
                lettre::address::AddressError::InvalidUser => "the part before the @ is not valid",
                lettre::address::AddressError::InvalidDomain => "the domain after the @ is not valid",
                _ => "it is not of the form reader@example.org",
            };
            return Err(bad(reason));
        }
        Ok(SubscriberEmail { key: Self::key_of(address), address: address.to_string() })
    }

    /// Uniqueness is case-insensitive on the whole address, with Unicode lower-casing (SQLite's
    /// NOCASE only folds ASCII).
    fn key_of(address: &str) -> String {
        if address.is_ascii() { address.to_ascii_lowercase() } else { address.to_lowercase() }
    }

    /// The address as given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.address
    }

    /// The lower-cased address the database's uniqueness is on.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl FromStr for SubscriberEmail {
    type Err = InvalidEmail;
    fn from_str(s: &str) -> Result<Self, InvalidEmail> {
        SubscriberEmail::parse(s)
    }
}

impl fmt::Display for SubscriberEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address)
    }
}

impl AsRef<str> for SubscriberEmail {
    fn as_ref(&self) -> &str {
        &self.address
    }
}

/// A display name as entered: trimmed, `None` when empty. Refused when it holds a line break or
/// another control character (it ends up in a `To:` header).
pub fn clean_name(name: &str) -> Result<Option<String>, String> {
    let name = name.trim();
    if name.chars().any(char::is_control) {
        return Err(format!("the name {name:?} contains a line break or another control character"));
    }
    Ok(if name.is_empty() { None } else { Some(name.to_string()) })
}

/// Where a subscriber is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Signed up on the web form, not yet confirmed: receives nothing but the confirmation mail.
    Pending,
    /// Receives every issue.
    Active,
    Unsubscribed,
    /// The mail server refused the address permanently.
    Bounced,
    /// The reader marked an issue as spam.
    Complained,
}

impl Status {
    pub const ALL: [Status; 5] = [Status::Pending, Status::Active, Status::Unsubscribed, Status::Bounced, Status::Complained];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Active => "active",
            Status::Unsubscribed => "unsubscribed",
            Status::Bounced => "bounced",
            Status::Complained => "complained",
        }
    }

    /// Unsubscribed, bounced and complained addresses stay so: imports and repeated subscribes
    /// leave them alone; only an explicit reactivation changes them.
    pub fn is_suppressed(self) -> bool {
        matches!(self, Status::Unsubscribed | Status::Bounced | Status::Complained)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that is not a status, as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a subscriber status; use pending, active, unsubscribed, bounced or complained")]
pub struct StatusParseError(pub String);

impl FromStr for Status {
    type Err = StatusParseError;
    fn from_str(s: &str) -> Result<Status, StatusParseError> {
        Status::ALL.into_iter().find(|st| st.as_str().eq_ignore_ascii_case(s.trim())).ok_or_else(|| StatusParseError(s.to_string()))
    }
}

/// Where a subscriber came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Import,
    Cli,
    Web,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Import => "import",
            Source::Cli => "cli",
            Source::Web => "web",
        }
    }
}

impl FromStr for Source {
    type Err = String;
    fn from_str(s: &str) -> Result<Source, String> {
        match s {
            "import" => Ok(Source::Import),
            "cli" => Ok(Source::Cli),
            "web" => Ok(Source::Web),
            other => Err(format!("`{other}` is not a subscriber source")),
        }
    }
}

/// One subscriber as stored. Timestamps are UTC.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Subscriber {
    pub id: i64,
    /// As given when the subscriber was added; checked then.
    pub email: String,
    pub name: Option<String>,
    pub status: Status,
    pub source: Source,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub status_changed_at: chrono::DateTime<chrono::Utc>,
    pub confirmed_at: Option<chrono::DateTime<chrono::Utc>>,
    pub unsubscribed_at: Option<chrono::DateTime<chrono::Utc>>,
    pub bounced_at: Option<chrono::DateTime<chrono::Utc>>,
    pub complained_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(sqlx::FromRow)]
struct SubscriberRow {
    id: i64,
    email: String,
    name: Option<String>,
    status: String,
    source: String,
    created_at: chrono::DateTime<chrono::Utc>,
    status_changed_at: chrono::DateTime<chrono::Utc>,
    confirmed_at: Option<chrono::DateTime<chrono::Utc>>,
    unsubscribed_at: Option<chrono::DateTime<chrono::Utc>>,
    bounced_at: Option<chrono::DateTime<chrono::Utc>>,
    complained_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl TryFrom<SubscriberRow> for Subscriber {
    type Error = StoreError;
    fn try_from(r: SubscriberRow) -> Result<Subscriber, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("subscriber {} has an unknown {what}", r.id));
        Ok(Subscriber {
            status: r.status.parse().map_err(|_| corrupt("status"))?,
            source: r.source.parse().map_err(|_| corrupt("source"))?,
            id: r.id,
            email: r.email,
            name: r.name,
            created_at: r.created_at,
            status_changed_at: r.status_changed_at,
            confirmed_at: r.confirmed_at,
            unsubscribed_at: r.unsubscribed_at,
            bounced_at: r.bounced_at,
            complained_at: r.complained_at,
        })
    }
}

/// A subscriber to add.
#[derive(Debug, Clone)]
pub struct NewSubscriber {
    pub email: SubscriberEmail,
    pub name: Option<String>,
    /// `Active` for the command line and imports, `Pending` for the web form (confirmed by mail).
    pub status: Status,
    pub source: Source,
}

/// What `Store::add` did.
#[derive(Debug, Clone, PartialEq)]
pub enum AddOutcome {
    /// A new row.
    Added(Subscriber),
    /// Already there and not suppressed; nothing changed.
    Unchanged(Subscriber),
    /// Was pending; an active add confirmed it.
    Activated(Subscriber),
    /// Unsubscribed, bounced or complained, and left so (no reactivation asked for).
    Suppressed(Subscriber),
    /// Was suppressed (`previous`) and has been made active again on request.
    Reactivated { previous: Status, subscriber: Subscriber },
}

/// What `Store::unsubscribe` did.
#[derive(Debug, Clone, PartialEq)]
pub enum RemoveOutcome {
    Unsubscribed(Subscriber),
    /// Already unsubscribed, bounced or complained: left as it was.
    AlreadyInactive(Subscriber),
    NotFound,
}

const COLUMNS: &str = "id, email, name, status, source, created_at, status_changed_at, confirmed_at, unsubscribed_at, bounced_at, complained_at";

// Moves the matching row to status ?1 at time ?2, stamping that status's own column. Callers append
// the WHERE clause; the parameters after ?2 are theirs.
macro_rules! transition_sql {
    ($where:literal) => {
        concat!(
            "UPDATE subscribers SET status = ?1, status_changed_at = ?2, ",
            "confirmed_at = CASE ?1 WHEN 'active' THEN ?2 ELSE confirmed_at END, ",
            "unsubscribed_at = CASE ?1 WHEN 'unsubscribed' THEN ?2 ELSE unsubscribed_at END, ",
            "bounced_at = CASE ?1 WHEN 'bounced' THEN ?2 ELSE bounced_at END, ",
            "complained_at = CASE ?1 WHEN 'complained' THEN ?2 ELSE complained_at END ",
            $where,
            " RETURNING id, email, name, status, source, created_at, status_changed_at, confirmed_at, unsubscribed_at, bounced_at, complained_at"
        )
    };
}

/// `,a,b,` for a set of statuses, matched in SQL with `instr(?, ',' || status || ',')`, so that a
/// set of any size fits one static statement.
fn status_set(statuses: &[Status]) -> String {
    let mut s = String::from(",");
    for st in statuses {
        s.push_str(st.as_str());
        s.push(',');
    }
    s
}

impl Store {
    pub async fn subscriber_by_id(&self, id: i64) -> Result<Option<Subscriber>, StoreError> {
        let row: Option<SubscriberRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM subscribers WHERE id = ?")))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(Subscriber::try_from).transpose()
    }

    pub async fn subscriber_by_email(&self, email: &SubscriberEmail) -> Result<Option<Subscriber>, StoreError> {
        let row: Option<SubscriberRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM subscribers WHERE email_key = ?")))
                .bind(email.key())
                .fetch_optional(&self.pool)
                .await?;
        row.map(Subscriber::try_from).transpose()
    }

    /// Adds a subscriber, or reports why an existing one was left alone. A suppressed address
    /// (unsubscribed, bounced, complained) changes only when `reactivate` is true; a pending one
    /// becomes active when `new.status` is `Active`. An existing row keeps its name unless it is
    /// reactivated with a new one.
    pub async fn add(&self, new: &NewSubscriber, reactivate: bool) -> Result<AddOutcome, StoreError> {
        let at = now();
        let name = new.name.as_deref().map(str::trim).filter(|n| !n.is_empty());
        let inserted: Option<SubscriberRow> = sqlx::query_as(concat!(
            "INSERT INTO subscribers (email, email_key, name, status, source, created_at, status_changed_at, confirmed_at) ",
            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, CASE ?4 WHEN 'active' THEN ?6 END) ",
            "ON CONFLICT (email_key) DO NOTHING ",
            "RETURNING id, email, name, status, source, created_at, status_changed_at, confirmed_at, unsubscribed_at, bounced_at, complained_at"
        ))
        .bind(new.email.as_str())
        .bind(new.email.key())
        .bind(name)
        .bind(new.status.as_str())
        .bind(new.source.as_str())
        .bind(at)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = inserted {
            return Ok(AddOutcome::Added(row.try_into()?));
        }
        let Some(existing) = self.subscriber_by_email(&new.email).await? else {
            // Deleted between the two statements: rare enough to ask again.
            return Box::pin(self.add(new, reactivate)).await;
        };
        let wanted = new.status;
        if existing.status.is_suppressed() {
            if !reactivate {
                return Ok(AddOutcome::Suppressed(existing));
            }
            let Some(changed) = self.transition(existing.id, wanted, &[existing.status]).await? else {
                // Changed by someone else meanwhile: decide again on what is there now.
                return Box::pin(self.add(new, reactivate)).await;
            };
            let subscriber = match name {
                Some(name) if changed.name.as_deref() != Some(name) => {
                    sqlx::query("UPDATE subscribers SET name = ? WHERE id = ?").bind(name).bind(changed.id).execute(&self.pool).await?;
                    Subscriber { name: Some(name.to_string()), ..changed }
                }
                _ => changed,
            };
            return Ok(AddOutcome::Reactivated { previous: existing.status, subscriber });
        }
        if existing.status == Status::Pending
            && wanted == Status::Active
            && let Some(s) = self.transition(existing.id, Status::Active, &[Status::Pending]).await?
        {
            return Ok(AddOutcome::Activated(s));
        }
        Ok(AddOutcome::Unchanged(existing))
    }

    /// Moves subscriber `id` to `to` if its status is one of `from`; returns it as changed, or
    /// `None` when it is missing or was not in `from`.
    pub(super) async fn transition(&self, id: i64, to: Status, from: &[Status]) -> Result<Option<Subscriber>, StoreError> {
        let row: Option<SubscriberRow> = sqlx::query_as(transition_sql!("WHERE id = ?3 AND instr(?4, ',' || status || ',') > 0"))
            .bind(to.as_str())
            .bind(now())
            .bind(id)
            .bind(status_set(from))
            .fetch_optional(&self.pool)
            .await?;
        row.map(Subscriber::try_from).transpose()
    }

    /// Sets a subscriber's status whatever it was (for the send loop: bounced, complained), and
    /// stamps the time. `None` when there is no such subscriber. Setting the current status again
    /// changes nothing.
    pub async fn set_status(&self, id: i64, status: Status) -> Result<Option<Subscriber>, StoreError> {
        let others: Vec<Status> = Status::ALL.into_iter().filter(|s| *s != status).collect();
        match self.transition(id, status, &others).await? {
            Some(s) => Ok(Some(s)),
            None => self.subscriber_by_id(id).await,
        }
    }

    /// Confirms a pending subscriber (the web form's confirmation link). Any other status is left
    /// alone: a confirmation link never revives an unsubscribe. Returns the subscriber as it now is.
    pub async fn confirm(&self, id: i64) -> Result<Option<Subscriber>, StoreError> {
        match self.transition(id, Status::Active, &[Status::Pending]).await? {
            Some(s) => Ok(Some(s)),
            None => self.subscriber_by_id(id).await,
        }
    }

    /// Marks the subscriber with this address unsubscribed (the row stays, so the unsubscribe sticks).
    pub async fn unsubscribe(&self, email: &SubscriberEmail) -> Result<RemoveOutcome, StoreError> {
        match self.subscriber_by_email(email).await? {
            None => Ok(RemoveOutcome::NotFound),
            Some(s) => self.unsubscribe_by_id(s.id).await,
        }
    }

    /// As `unsubscribe`, by id (the unsubscribe link).
    pub async fn unsubscribe_by_id(&self, id: i64) -> Result<RemoveOutcome, StoreError> {
        if let Some(s) = self.transition(id, Status::Unsubscribed, &[Status::Pending, Status::Active]).await? {
            return Ok(RemoveOutcome::Unsubscribed(s));
        }
        Ok(match self.subscriber_by_id(id).await? {
            Some(s) => RemoveOutcome::AlreadyInactive(s),
            None => RemoveOutcome::NotFound,
        })
    }

    /// Up to `limit` subscribers with an id above `after_id`, by id, optionally of one status: page
    /// through everyone with the last id of each page, in flat memory.
    pub async fn list_page(&self, status: Option<Status>, after_id: i64, limit: u32) -> Result<Vec<Subscriber>, StoreError> {
        let rows: Vec<SubscriberRow> = match status {
            Some(st) => {
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM subscribers WHERE status = ? AND id > ? ORDER BY id LIMIT ?"
                )))
                .bind(st.as_str())
                .bind(after_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM subscribers WHERE id > ? ORDER BY id LIMIT ?")))
                    .bind(after_id)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.into_iter().map(Subscriber::try_from).collect()
    }

    /// How many subscribers have each status (every status listed, zeros included).
    pub async fn count_by_status(&self) -> Result<Vec<(Status, i64)>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, count(*) FROM subscribers GROUP BY status").fetch_all(&self.pool).await?;
        Ok(Status::ALL
            .into_iter()
            .map(|st| (st, rows.iter().find(|(s, _)| s == st.as_str()).map_or(0, |(_, n)| *n)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_once_and_keyed_case_insensitively() {
        let e: SubscriberEmail = "  Ada.Reader@Example.ORG ".parse().unwrap();
        assert_eq!(e.as_str(), "Ada.Reader@Example.ORG");
        assert_eq!(e.key(), "ada.reader@example.org");
        let u: SubscriberEmail = "ÉLODIE@exemple.fr".parse().unwrap();
        assert_eq!(u.key(), "élodie@exemple.fr");
        for bad in ["", "   ", "reader", "reader@", "@example.org", "a b@example.org", "Ada <ada@example.org>", "a@b@", "x@-bad-.org"] {
            assert!(bad.parse::<SubscriberEmail>().is_err(), "{bad:?} should be refused");
        }
        let err = "reader@".parse::<SubscriberEmail>().unwrap_err().to_string();
        assert!(err.contains("`reader@`"), "{err}");
    }

    #[test]
    fn statuses_parse_and_know_which_are_suppressed() {
        assert_eq!("Active".parse::<Status>().unwrap(), Status::Active);
        assert!("gone".parse::<Status>().unwrap_err().to_string().contains("`gone`"));
        let suppressed: Vec<_> = Status::ALL.into_iter().filter(|s| s.is_suppressed()).collect();
        assert_eq!(suppressed, [Status::Unsubscribed, Status::Bounced, Status::Complained]);
    }

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).await.unwrap();
        (dir, store)
    }

    fn new(email: &str, status: Status) -> NewSubscriber {
        NewSubscriber { email: email.parse().unwrap(), name: Some("Ada".into()), status, source: Source::Cli }
    }

    #[tokio::test]
    async fn add_is_unique_case_insensitively_including_non_ascii() {
        let (_d, s) = store().await;
        let AddOutcome::Added(a) = s.add(&new("Élodie@Example.org", Status::Active), false).await.unwrap() else { panic!() };
        assert_eq!(a.email, "Élodie@Example.org");
        assert_eq!(a.status, Status::Active);
        assert!(a.confirmed_at.is_some());
        let again = s.add(&new("élodie@example.ORG", Status::Active), false).await.unwrap();
        assert_eq!(again, AddOutcome::Unchanged(a.clone()));
        assert_eq!(s.subscriber_by_email(&"ÉLODIE@EXAMPLE.ORG".parse().unwrap()).await.unwrap(), Some(a.clone()));
        assert_eq!(s.subscriber_by_id(a.id).await.unwrap(), Some(a));
        assert_eq!(s.subscriber_by_id(999).await.unwrap(), None);
    }

    #[tokio::test]
    async fn unsubscribes_stick_until_reactivated() {
        let (_d, s) = store().await;
        let AddOutcome::Added(a) = s.add(&new("ada@example.org", Status::Active), false).await.unwrap() else { panic!() };
        let RemoveOutcome::Unsubscribed(u) = s.unsubscribe(&"ADA@example.org".parse().unwrap()).await.unwrap() else { panic!() };
        assert_eq!(u.status, Status::Unsubscribed);
        assert!(u.unsubscribed_at.is_some());
        assert!(matches!(s.unsubscribe_by_id(a.id).await.unwrap(), RemoveOutcome::AlreadyInactive(_)));
        assert_eq!(s.unsubscribe(&"nobody@example.org".parse().unwrap()).await.unwrap(), RemoveOutcome::NotFound);
        // A repeated add, even from the web form, and a confirmation link leave it unsubscribed.
        assert!(matches!(s.add(&new("ada@example.org", Status::Active), false).await.unwrap(), AddOutcome::Suppressed(_)));
        assert!(matches!(s.add(&new("ada@example.org", Status::Pending), false).await.unwrap(), AddOutcome::Suppressed(_)));
        assert_eq!(s.confirm(a.id).await.unwrap().unwrap().status, Status::Unsubscribed);
        let AddOutcome::Reactivated { previous, subscriber } =
            s.add(&NewSubscriber { name: Some("Ada Lovelace".into()), ..new("ada@example.org", Status::Active) }, true).await.unwrap()
        else {
            panic!()
        };
        assert_eq!(previous, Status::Unsubscribed);
        assert_eq!(subscriber.status, Status::Active);
        assert_eq!(subscriber.name.as_deref(), Some("Ada Lovelace"));
        assert_eq!(subscriber.id, a.id);
    }

    #[tokio::test]
    async fn pending_subscribers_are_confirmed_and_bounces_recorded() {
        let (_d, s) = store().await;
        let AddOutcome::Added(p) = s.add(&new("web@example.org", Status::Pending), false).await.unwrap() else { panic!() };
        assert_eq!(p.status, Status::Pending);
        assert_eq!(p.confirmed_at, None);
        let c = s.confirm(p.id).await.unwrap().unwrap();
        assert_eq!(c.status, Status::Active);
        assert!(c.confirmed_at.is_some());
        let b = s.set_status(p.id, Status::Bounced).await.unwrap().unwrap();
        assert_eq!(b.status, Status::Bounced);
        assert!(b.bounced_at.is_some());
        assert!(matches!(s.add(&new("web@example.org", Status::Active), false).await.unwrap(), AddOutcome::Suppressed(_)));
        assert_eq!(s.set_status(12345, Status::Bounced).await.unwrap(), None);
        let counts = s.count_by_status().await.unwrap();
        assert_eq!(counts.iter().find(|(st, _)| *st == Status::Bounced).unwrap().1, 1);
        assert_eq!(counts.iter().map(|(_, n)| n).sum::<i64>(), 1);
    }

    #[tokio::test]
    async fn list_pages_through_everyone_in_id_order() {
        let (_d, s) = store().await;
        for i in 0..25 {
            s.add(&new(&format!("r{i}@example.org"), if i % 5 == 0 { Status::Pending } else { Status::Active }), false).await.unwrap();
        }
        let mut seen = Vec::new();
        let mut after = 0;
        loop {
            let page = s.list_page(None, after, 10).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.id;
            seen.extend(page.into_iter().map(|s| s.email));
        }
        assert_eq!(seen.len(), 25);
        assert_eq!(seen[0], "r0@example.org");
        assert_eq!(seen[24], "r24@example.org");
        let pending = s.list_page(Some(Status::Pending), 0, 100).await.unwrap();
        assert_eq!(pending.iter().map(|s| s.email.as_str()).collect::<Vec<_>>(), ["r0@example.org", "r5@example.org", "r10@example.org", "r15@example.org", "r20@example.org"]);
    }
}
