//! Subscribers: the checked address type, the status life cycle and its queries. Unsubscribed,
//! bounced and complained addresses are "suppressed": nothing but an explicit reactivation makes
//! them active again.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::{Store, StoreError, now};
use crate::themes::ThemeChoice;

/// An email address Gazette can send to through an ordinary relay, checked once when it enters
/// Gazette; nothing downstream checks it again. lettre's parser (RFC 5322 syntax) is the base; on
/// top of it, the local part must be a dot-atom (no quoted strings), the domain a host name with a
/// dot (no address literals or IP addresses) whose labels are letters, digits and hyphens (after
/// IDNA for internationalized domains), and the lengths within RFC 5321 §4.5.3.1. Kept as given;
/// `key()` is the form uniqueness is decided on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberEmail {
    address: String,
    key: String,
}

/// An address that was refused, with the reason, phrased for the person who typed it. The input
/// shown is cut short and its control characters escaped, so that a file of junk gives short lines.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{}` is not a valid email address: {reason}", shown(.input, 80))]
pub struct InvalidEmail {
    pub input: String,
    pub reason: String,
}

impl SubscriberEmail {
    /// The longest address accepted, in octets (RFC 5321 §4.5.3.1.3: a path is 256 octets, less the
    /// angle brackets).
    pub const MAX_LEN: usize = 254;
    /// The longest local part (the part before the @), in octets (RFC 5321 §4.5.3.1.1).
    pub const MAX_LOCAL_LEN: usize = 64;

    pub fn parse(input: &str) -> Result<SubscriberEmail, InvalidEmail> {
        let address = input.trim();
        match check_address(address) {
            Ok(()) => Ok(SubscriberEmail { key: Self::key_of(address), address: address.to_string() }),
            Err(reason) => Err(InvalidEmail { input: input.to_string(), reason }),
        }
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

/// Why `address` (trimmed) is not an address Gazette can send to. The cheap checks come first, so
/// that a line of junk is refused before any parsing; lettre's parser has the last word.
fn check_address(address: &str) -> Result<(), String> {
    if address.is_empty() {
        return Err("it is empty".into());
    }
    if address.len() > SubscriberEmail::MAX_LEN {
        return Err(format!(
            "it is {} bytes long, and mail servers take at most {} (RFC 5321)",
            address.len(),
            SubscriberEmail::MAX_LEN
        ));
    }
    if address.chars().any(char::is_control) {
        return Err("it contains a line break or another control character".into());
    }
    let Some((local, domain)) = address.rsplit_once('@').filter(|(l, d)| !l.is_empty() && !d.is_empty()) else {
        return Err("it needs a name, an @ and a domain, as in reader@example.org".into());
    };
    if local.starts_with('"') || local.ends_with('"') {
        return Err(
            "the part before the @ is in quotes, which most mail servers refuse; give an address without quotes".into(),
        );
    }
    if address.contains(['<', '>']) {
        return Err("give the address alone, without a name or angle brackets, as in reader@example.org".into());
    }
    if address.contains(char::is_whitespace) {
        return Err("it contains a space".into());
    }
    if address.contains(['(', ')']) {
        return Err("it contains a comment in parentheses; give the address alone, as in reader@example.org".into());
    }
    if local.len() > SubscriberEmail::MAX_LOCAL_LEN {
        return Err(format!(
            "the part before the @ is {} bytes long, and mail servers take at most {} (RFC 5321)",
            local.len(),
            SubscriberEmail::MAX_LOCAL_LEN
        ));
    }
    check_domain(domain)?;
    match address.parse::<lettre::Address>() {
        Ok(_) => Ok(()),
        Err(lettre::address::AddressError::InvalidUser) => {
            Err("the part before the @ may only hold letters, digits and !#$%&'*+-/=?^_`{|}~, with single dots between them".into())
        }
        Err(_) => Err("it is not of the form reader@example.org".into()),
    }
}

/// Why `domain` is not a host name mail can be relayed to: one with a dot, whose labels are host
/// labels (RFC 1123 §2.1: letters, digits and hyphens, not at either end, 63 at most), in ASCII
/// or as IDNA turns them into ASCII, and whose top-level label is letters (RFC 3696 §2).
fn check_domain(domain: &str) -> Result<(), String> {
    let named = shown(domain, 80);
    if domain.starts_with('[') || domain.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!(
            "`{named}` is an IP address, not a domain name; mail goes to an address at a domain, as in reader@example.org"
        ));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err(format!("the domain `{named}` has no dot; give the whole domain, as in reader@example.org"));
    }
    let mut ascii_len = labels.len() - 1;
    let mut last = String::new();
    for label in labels {
        if label.is_empty() {
            return Err(format!("the domain `{named}` has an empty part (a dot at either end, or two in a row)"));
        }
        let Some(ascii) = ascii_label(label) else {
            return Err(format!(
                "`{}` in the domain `{named}` is not a valid internationalized domain label",
                shown(label, 80)
            ));
        };
        if ascii.len() > 63 {
            return Err(format!(
                "`{}` in the domain `{named}` is longer than the 63 characters a domain label can have",
                shown(label, 80)
            ));
        }
        if !ascii.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            || ascii.starts_with('-')
            || ascii.ends_with('-')
        {
            return Err(format!(
                "`{}` in the domain `{named}` is not a valid domain label: letters, digits and hyphens, with no hyphen at either end",
                shown(label, 80)
            ));
        }
        ascii_len += ascii.len();
        last = ascii;
    }
    if ascii_len > 253 {
        return Err(format!("the domain `{named}` is longer than the 253 characters a domain name can have"));
    }
    if !((last.len() >= 2 && last.bytes().all(|b| b.is_ascii_alphabetic())) || last.starts_with("xn--")) {
        return Err(format!("the domain `{named}` does not end in a top-level domain (letters only, as in .org)"));
    }
    Ok(())
}

/// One domain label as DNS knows it: itself, or for an internationalized label its IDNA (ASCII)
/// form. `None` when IDNA refuses the label or makes more than one of it.
fn ascii_label(label: &str) -> Option<String> {
    if label.is_ascii() {
        return Some(label.to_string());
    }
    // URL host parsing would decode `%` escapes: the label's ASCII characters are checked first.
    if !label.bytes().all(|b| !b.is_ascii() || b.is_ascii_alphanumeric() || b == b'-') {
        return None;
    }
    match url::Host::parse(label) {
        Ok(url::Host::Domain(ascii)) if !ascii.contains('.') => Some(ascii),
        _ => None,
    }
}

/// `text` for a message: its first `max` characters (then `…`), control characters escaped.
fn shown(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `text` up to its first `max` characters (cut at a character boundary), without the spaces the
/// cut may leave at its end.
fn cut(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => text[..at].trim_end(),
        None => text,
    }
}

/// A display name as entered: trimmed, cut to `Subscriber::MAX_NAME_CHARS` characters, `None` when
/// empty. Refused when it holds a line break or another control character (it ends up in a `To:`
/// header).
pub fn clean_name(name: &str) -> Result<Option<String>, String> {
    let name = name.trim();
    if name.chars().any(char::is_control) {
        let quoted =
            if name.chars().nth(40).is_some() { format!("{:?}…", cut(name, 40)) } else { format!("{name:?}") };
        return Err(format!("the name {quoted} contains a line break or another control character"));
    }
    let name = cut(name, Subscriber::MAX_NAME_CHARS);
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

text_enum!(Status {
    Pending => "pending",
    Active => "active",
    Unsubscribed => "unsubscribed",
    Bounced => "bounced",
    Complained => "complained",
});

impl Status {
    pub const ALL: [Status; 5] =
        [Status::Pending, Status::Active, Status::Unsubscribed, Status::Bounced, Status::Complained];

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
        Status::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| StatusParseError(s.to_string()))
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
    /// Why a report made it bounced or complained ("userunknown: 550 5.1.1 user unknown"); `None` otherwise.
    pub status_reason: Option<String>,
    /// Why a bounced subscriber's mail failed, as `status_reason` names it (`userunknown`,
    /// `mailboxfull`); `None` for any other status, and for reasons recorded before Gazette
    /// named them.
    pub reason: Option<crate::bounces::Reason>,
    /// The themes the reader follows; `None`: every theme.
    pub themes: Option<ThemeChoice>,
    /// Until when the reader's issues are skipped (`None`: not paused; a time past is no pause).
    pub paused_until: Option<chrono::DateTime<chrono::Utc>>,
}

impl Subscriber {
    /// The most characters of a name kept: longer names are cut when they come in (`clean_name`),
    /// and when a `To:` header is built (older databases may hold longer ones).
    pub const MAX_NAME_CHARS: usize = 100;
}

/// A row of `COLUMNS`, in that order.
struct SubscriberRow {
    id: i64,
    email: String,
    name: Option<String>,
    status: String,
    source: String,
    // Unix seconds on both backends.
    created_at: i64,
    status_changed_at: i64,
    confirmed_at: Option<i64>,
    unsubscribed_at: Option<i64>,
    bounced_at: Option<i64>,
    complained_at: Option<i64>,
    status_reason: Option<String>,
    themes: Option<String>,
    paused_until: Option<i64>,
}

/// `COLUMNS`' types, in order.
type Columns = (
    i64,
    String,
    Option<String>,
    String,
    String,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<i64>,
);

impl<'r, R: sqlx::Row> sqlx::FromRow<'r, R> for SubscriberRow
where
    Columns: sqlx::FromRow<'r, R>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        let (
            id,
            email,
            name,
            status,
            source,
            created_at,
            status_changed_at,
            confirmed_at,
            unsubscribed_at,
            bounced_at,
            complained_at,
            status_reason,
            themes,
            paused_until,
        ) = Columns::from_row(row)?;
        Ok(SubscriberRow {
            id,
            email,
            name,
            status,
            source,
            created_at,
            status_changed_at,
            confirmed_at,
            unsubscribed_at,
            bounced_at,
            complained_at,
            status_reason,
            themes,
            paused_until,
        })
    }
}

impl TryFrom<SubscriberRow> for Subscriber {
    type Error = StoreError;
    fn try_from(r: SubscriberRow) -> Result<Subscriber, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("subscriber {} has an unknown {what}", r.id));
        let time = |t: i64| {
            chrono::DateTime::from_timestamp(t, 0)
                .ok_or_else(|| StoreError::Corrupt(format!("subscriber {} has a time out of range", r.id)))
        };
        let maybe = |t: Option<i64>| t.map(time).transpose();
        Ok(Subscriber {
            status: r.status.parse().map_err(|_| corrupt("status"))?,
            source: r.source.parse().map_err(|_| corrupt("source"))?,
            id: r.id,
            email: r.email,
            name: r.name,
            created_at: time(r.created_at)?,
            status_changed_at: time(r.status_changed_at)?,
            confirmed_at: maybe(r.confirmed_at)?,
            unsubscribed_at: maybe(r.unsubscribed_at)?,
            bounced_at: maybe(r.bounced_at)?,
            complained_at: maybe(r.complained_at)?,
            reason: r
                .status_reason
                .as_deref()
                .filter(|_| r.status == Status::Bounced.as_str())
                .and_then(super::bounces::reason_in),
            status_reason: r.status_reason,
            themes: ThemeChoice::from_stored(r.themes.as_deref())
                .map_err(|e| StoreError::Corrupt(format!("subscriber {}: {e}", r.id)))?,
            paused_until: maybe(r.paused_until)?,
        })
    }
}

/// A subscriber to add.
#[derive(Debug, Clone)]
pub struct NewSubscriber {
    pub email: SubscriberEmail,
    /// As `clean_name` returns it.
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

const COLUMNS: &str = "id, email, name, status, source, created_at, status_changed_at, confirmed_at, unsubscribed_at, bounced_at, complained_at, status_reason, themes, paused_until";

// Moves the matching row to status $1 at time $2, stamping that status's own column and clearing
// the reason a bounce report gave. Callers append the WHERE clause; the parameters after $2 are theirs.
macro_rules! transition_sql {
    ($where:literal) => {
        concat!(
            "UPDATE subscribers SET status = $1, status_changed_at = $2, ",
            "confirmed_at = CASE $1 WHEN 'active' THEN $2 ELSE confirmed_at END, ",
            "unsubscribed_at = CASE $1 WHEN 'unsubscribed' THEN $2 ELSE unsubscribed_at END, ",
            "bounced_at = CASE $1 WHEN 'bounced' THEN $2 ELSE bounced_at END, ",
            "complained_at = CASE $1 WHEN 'complained' THEN $2 ELSE complained_at END, ",
            "status_reason = NULL ",
            $where,
            " RETURNING id, email, name, status, source, created_at, status_changed_at, confirmed_at, unsubscribed_at, bounced_at, complained_at, status_reason, themes, paused_until"
        )
    };
}

/// `,a,b,` for a set of statuses, matched in SQL with `$n LIKE ('%,' || status || ',%')` (on both
/// backends), so that a set of any size fits one static statement.
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
        let row: Option<SubscriberRow> = with_pool!(&self.pool, p => sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM subscribers WHERE id = $1")))
                .bind(id)
                .fetch_optional(p)
                .await)?;
        row.map(Subscriber::try_from).transpose()
    }

    pub async fn subscriber_by_email(&self, email: &SubscriberEmail) -> Result<Option<Subscriber>, StoreError> {
        let row: Option<SubscriberRow> = with_pool!(&self.pool, p => sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM subscribers WHERE email_key = $1")))
                .bind(email.key())
                .fetch_optional(p)
                .await)?;
        row.map(Subscriber::try_from).transpose()
    }

    /// Adds a subscriber, or reports why an existing one was left alone. A suppressed address
    /// (unsubscribed, bounced, complained) changes only when `reactivate` is true; a pending one
    /// becomes active when `new.status` is `Active`. An existing row keeps its name unless it is
    /// reactivated with a new one.
    pub async fn add(&self, new: &NewSubscriber, reactivate: bool) -> Result<AddOutcome, StoreError> {
        let at = now();
        let name = new.name.as_deref().map(str::trim).filter(|n| !n.is_empty());
        let inserted: Option<SubscriberRow> = with_pool!(&self.pool, p => sqlx::query_as(concat!(
            "INSERT INTO subscribers (email, email_key, name, status, source, created_at, status_changed_at, confirmed_at) ",
            "VALUES ($1, $2, $3, $4, $5, $6, $6, CASE $4 WHEN 'active' THEN $6 END) ",
            "ON CONFLICT (email_key) DO NOTHING ",
            "RETURNING id, email, name, status, source, created_at, status_changed_at, confirmed_at, unsubscribed_at, bounced_at, complained_at, status_reason, themes, paused_until"
        ))
        .bind(new.email.as_str())
        .bind(new.email.key())
        .bind(name)
        .bind(new.status.as_str())
        .bind(new.source.as_str())
        .bind(at)
        .fetch_optional(p)
        .await)?;
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
                    with_pool!(&self.pool, p => sqlx::query("UPDATE subscribers SET name = $1 WHERE id = $2").bind(name).bind(changed.id).execute(p).await.map(|r| r.rows_affected()))?;
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
    pub(super) async fn transition(
        &self,
        id: i64,
        to: Status,
        from: &[Status],
    ) -> Result<Option<Subscriber>, StoreError> {
        let row: Option<SubscriberRow> = with_pool!(&self.pool, p => sqlx::query_as(transition_sql!("WHERE id = $3 AND $4 LIKE ('%,' || status || ',%')"))
            .bind(to.as_str())
            .bind(now())
            .bind(id)
            .bind(status_set(from))
            .fetch_optional(p)
            .await)?;
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
    pub async fn list_page(
        &self,
        status: Option<Status>,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<Subscriber>, StoreError> {
        let rows: Vec<SubscriberRow> = match status {
            Some(st) => with_pool!(&self.pool, p => sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM subscribers WHERE status = $1 AND id > $2 ORDER BY id LIMIT $3"
                )))
                .bind(st.as_str())
                .bind(after_id)
                .bind(i64::from(limit))
                .fetch_all(p)
                .await)?,
            None => {
                with_pool!(&self.pool, p => sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM subscribers WHERE id > $1 ORDER BY id LIMIT $2")))
                    .bind(after_id)
                    .bind(i64::from(limit))
                    .fetch_all(p)
                    .await)?
            }
        };
        rows.into_iter().map(Subscriber::try_from).collect()
    }

    /// Sets the themes subscriber `id` follows (`None`: everything). Returns the subscriber as it
    /// now is, `None` when there is no such subscriber.
    pub async fn set_themes(&self, id: i64, themes: Option<&ThemeChoice>) -> Result<Option<Subscriber>, StoreError> {
        let stored = themes.map(ThemeChoice::to_stored);
        with_pool!(&self.pool, p => sqlx::query("UPDATE subscribers SET themes = $1 WHERE id = $2").bind(stored).bind(id).execute(p).await.map(|r| r.rows_affected()))?;
        self.subscriber_by_id(id).await
    }

    /// Pauses subscriber `id`'s issues until `until` (`None` ends a pause). Returns the subscriber
    /// as it now is, `None` when there is no such subscriber.
    pub async fn set_pause(
        &self,
        id: i64,
        until: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<Option<Subscriber>, StoreError> {
        let until = until.map(|t| t.timestamp());
        with_pool!(&self.pool, p => sqlx::query("UPDATE subscribers SET paused_until = $1 WHERE id = $2").bind(until).bind(id).execute(p).await.map(|r| r.rows_affected()))?;
        self.subscriber_by_id(id).await
    }

    /// The active subscribers by the themes they follow: each distinct choice (`None`: everything)
    /// with how many follow it, most followed first. One row per distinct choice, so it stays
    /// small whatever the list's size.
    pub async fn theme_choices(&self) -> Result<Vec<(Option<ThemeChoice>, i64)>, StoreError> {
        let rows: Vec<(Option<String>, i64)> = with_pool!(&self.pool, p => sqlx::query_as(
            "SELECT themes, count(*) FROM subscribers WHERE status = $1 GROUP BY themes ORDER BY count(*) DESC, themes"
        )
        .bind(Status::Active.as_str())
        .fetch_all(p)
        .await)?;
        // Two spellings of one choice (stored by different versions) are one choice.
        let mut merged: Vec<(Option<ThemeChoice>, i64)> = Vec::with_capacity(rows.len());
        for (stored, n) in rows {
            let choice = ThemeChoice::from_stored(stored.as_deref()).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            match merged
                .iter_mut()
                .find(|(c, _)| c.as_ref().map(ThemeChoice::key) == choice.as_ref().map(ThemeChoice::key))
            {
                Some((_, count)) => *count += n,
                None => merged.push((choice, n)),
            }
        }
        merged.sort_by_key(|b| std::cmp::Reverse(b.1));
        Ok(merged)
    }

    /// How many subscribers have each status (every status listed, zeros included).
    pub async fn count_by_status(&self) -> Result<Vec<(Status, i64)>, StoreError> {
        let rows: Vec<(String, i64)> = with_pool!(&self.pool, p => sqlx::query_as("SELECT status, count(*) FROM subscribers GROUP BY status").fetch_all(p).await)?;
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
        for bad in [
            "",
            "   ",
            "reader",
            "reader@",
            "@example.org",
            "a b@example.org",
            "Ada <ada@example.org>",
            "a@b@",
            "x@-bad-.org",
        ] {
            assert!(bad.parse::<SubscriberEmail>().is_err(), "{bad:?} should be refused");
        }
        let err = "reader@".parse::<SubscriberEmail>().unwrap_err().to_string();
        assert!(err.contains("`reader@`"), "{err}");
    }

    #[test]
    fn ordinary_addresses_are_accepted_including_internationalized_ones() {
        let longest_local = format!("{}@example.org", "l".repeat(64));
        for good in [
            "reader@example.org",
            "ada+newsletter@example.org",
            "first.last@mail.example.co.uk",
            "r2d2@host-1.example.org",
            "o'neil_007@sub.domain-name.example.museum",
            "1234@example.io",
            "ÉLODIE@exemple.fr",
            "élodie@exämple.fr",
            "user@xn--exmple-cua.org",
            "user@例え.テスト",
            &longest_local,
        ] {
            assert!(
                good.parse::<SubscriberEmail>().is_ok(),
                "{good:?} should be accepted: {:?}",
                good.parse::<SubscriberEmail>()
            );
        }
    }

    #[test]
    fn addresses_no_relay_can_deliver_to_are_refused_with_the_reason() {
        let long_local = format!("{}@example.org", "l".repeat(65));
        let long_label = format!("a@{}.org", "b".repeat(64));
        let long_address = format!("a@{}.org", ["b"; 130].join("."));
        let cases: [(&str, &str); 25] = [
            ("x@[127.0.0.1]", "is an IP address, not a domain name"),
            ("x@[IPv6:2001:db8::1]", "is an IP address"),
            ("x@127.0.0.1", "is an IP address"),
            ("\"evil<script>\"@example.org", "the part before the @ is in quotes"),
            ("\"a b\"@example.org", "in quotes"),
            ("li@h", "the domain `h` has no dot"),
            ("reader@localhost", "has no dot"),
            ("reader(comment)@example.org", "comment in parentheses"),
            ("reader@example.org(Reader)", "comment in parentheses"),
            ("Reader <reader@example.org>", "without a name or angle brackets"),
            ("a..b@example.org", "single dots between them"),
            (".ab@example.org", "single dots"),
            ("ab.@example.org", "single dots"),
            ("a,b@example.org", "may only hold letters, digits"),
            ("a@ex_ample.org", "`ex_ample` in the domain `ex_ample.org` is not a valid domain label"),
            ("a@-example.org", "not a valid domain label"),
            ("a@example..org", "has an empty part"),
            ("a@example.org.", "has an empty part"),
            ("a@example.c0m", "does not end in a top-level domain"),
            ("a@exa\u{3002}mple.org", "not a valid internationalized domain label"),
            ("a@b\r\nBcc: victim@example.org", "control character"),
            ("a\u{85}b@example.org", "control character"),
            (&long_local, "the part before the @ is 65 bytes long, and mail servers take at most 64"),
            (&long_label, "longer than the 63 characters"),
            (&long_address, "is 265 bytes long, and mail servers take at most 254"),
        ];
        for (bad, why) in cases {
            let err = bad.parse::<SubscriberEmail>().expect_err(bad);
            assert_eq!(err.input, bad);
            let message = err.to_string();
            assert!(message.contains(why), "{bad:?}: {message}");
            assert!(
                message.starts_with(&format!("`{}` is not a valid email address: ", shown(bad, 80))),
                "the address is named: {message}"
            );
            assert!(!message.contains(['\r', '\n']), "{message:?}");
        }
        // A line of junk is named, but cut short.
        let junk = "x@".repeat(5000);
        let message = junk.parse::<SubscriberEmail>().unwrap_err().to_string();
        assert!(message.starts_with(&format!("`{}…` is not a valid email address", &junk[..80])), "{message}");
        assert!(message.len() < 200, "{message}");
    }

    #[test]
    fn names_are_trimmed_bounded_and_free_of_control_characters() {
        assert_eq!(clean_name("  Ada Lovelace "), Ok(Some("Ada Lovelace".into())));
        assert_eq!(clean_name("   "), Ok(None));
        let long = clean_name(&"é".repeat(10_000)).unwrap().unwrap();
        assert_eq!(long, "é".repeat(Subscriber::MAX_NAME_CHARS), "cut at a character boundary");
        let words = clean_name(&"Ada ".repeat(50)).unwrap().unwrap();
        assert_eq!(
            words.chars().count(),
            Subscriber::MAX_NAME_CHARS - 1,
            "no space left at the end of a cut: {words:?}"
        );
        for bad in ["Two\nLines", "Cr\rLf", "Tab\there", "Nul\0", "C1\u{85}x"] {
            let err = clean_name(bad).unwrap_err();
            assert!(err.contains("control character"), "{err}");
        }
        let err = clean_name(&format!("{}\nb", "a".repeat(10_000))).unwrap_err();
        assert!(err.len() < 200, "the refusal quotes the name cut short: {err}");
    }

    #[test]
    fn statuses_parse_and_know_which_are_suppressed() {
        assert_eq!("Active".parse::<Status>().unwrap(), Status::Active);
        assert!("gone".parse::<Status>().unwrap_err().to_string().contains("`gone`"));
        let suppressed: Vec<_> = Status::ALL.into_iter().filter(|s| s.is_suppressed()).collect();
        assert_eq!(suppressed, [Status::Unsubscribed, Status::Bounced, Status::Complained]);
    }

    fn new(email: &str, status: Status) -> NewSubscriber {
        NewSubscriber { email: email.parse().unwrap(), name: Some("Ada".into()), status, source: Source::Cli }
    }

    #[tokio::test]
    async fn add_is_unique_case_insensitively_including_non_ascii() {
        for s in crate::store::testing::stores().await {
            let AddOutcome::Added(a) = s.add(&new("Élodie@Example.org", Status::Active), false).await.unwrap() else {
                panic!()
            };
            assert_eq!(a.email, "Élodie@Example.org");
            assert_eq!(a.status, Status::Active);
            assert!(a.confirmed_at.is_some());
            let again = s.add(&new("élodie@example.ORG", Status::Active), false).await.unwrap();
            assert_eq!(again, AddOutcome::Unchanged(a.clone()));
            assert_eq!(s.subscriber_by_email(&"ÉLODIE@EXAMPLE.ORG".parse().unwrap()).await.unwrap(), Some(a.clone()));
            assert_eq!(s.subscriber_by_id(a.id).await.unwrap(), Some(a));
            assert_eq!(s.subscriber_by_id(999).await.unwrap(), None);
        }
    }

    #[tokio::test]
    async fn unsubscribes_stick_until_reactivated() {
        for s in crate::store::testing::stores().await {
            let AddOutcome::Added(a) = s.add(&new("ada@example.org", Status::Active), false).await.unwrap() else {
                panic!()
            };
            let RemoveOutcome::Unsubscribed(u) = s.unsubscribe(&"ADA@example.org".parse().unwrap()).await.unwrap()
            else {
                panic!()
            };
            assert_eq!(u.status, Status::Unsubscribed);
            assert!(u.unsubscribed_at.is_some());
            assert!(matches!(s.unsubscribe_by_id(a.id).await.unwrap(), RemoveOutcome::AlreadyInactive(_)));
            assert_eq!(s.unsubscribe(&"nobody@example.org".parse().unwrap()).await.unwrap(), RemoveOutcome::NotFound);
            // A repeated add, even from the web form, and a confirmation link leave it unsubscribed.
            assert!(matches!(
                s.add(&new("ada@example.org", Status::Active), false).await.unwrap(),
                AddOutcome::Suppressed(_)
            ));
            assert!(matches!(
                s.add(&new("ada@example.org", Status::Pending), false).await.unwrap(),
                AddOutcome::Suppressed(_)
            ));
            assert_eq!(s.confirm(a.id).await.unwrap().unwrap().status, Status::Unsubscribed);
            let AddOutcome::Reactivated { previous, subscriber } = s
                .add(
                    &NewSubscriber { name: Some("Ada Lovelace".into()), ..new("ada@example.org", Status::Active) },
                    true,
                )
                .await
                .unwrap()
            else {
                panic!()
            };
            assert_eq!(previous, Status::Unsubscribed);
            assert_eq!(subscriber.status, Status::Active);
            assert_eq!(subscriber.name.as_deref(), Some("Ada Lovelace"));
            assert_eq!(subscriber.id, a.id);
        }
    }

    #[tokio::test]
    async fn pending_subscribers_are_confirmed_and_bounces_recorded() {
        for s in crate::store::testing::stores().await {
            let AddOutcome::Added(p) = s.add(&new("web@example.org", Status::Pending), false).await.unwrap() else {
                panic!()
            };
            assert_eq!(p.status, Status::Pending);
            assert_eq!(p.confirmed_at, None);
            let c = s.confirm(p.id).await.unwrap().unwrap();
            assert_eq!(c.status, Status::Active);
            assert!(c.confirmed_at.is_some());
            let b = s.set_status(p.id, Status::Bounced).await.unwrap().unwrap();
            assert_eq!(b.status, Status::Bounced);
            assert!(b.bounced_at.is_some());
            assert!(matches!(
                s.add(&new("web@example.org", Status::Active), false).await.unwrap(),
                AddOutcome::Suppressed(_)
            ));
            assert_eq!(s.set_status(12345, Status::Bounced).await.unwrap(), None);
            let counts = s.count_by_status().await.unwrap();
            assert_eq!(counts.iter().find(|(st, _)| *st == Status::Bounced).unwrap().1, 1);
            assert_eq!(counts.iter().map(|(_, n)| n).sum::<i64>(), 1);
        }
    }

    #[tokio::test]
    async fn list_pages_through_everyone_in_id_order() {
        for s in crate::store::testing::stores().await {
            for i in 0..25 {
                s.add(
                    &new(&format!("r{i}@example.org"), if i % 5 == 0 { Status::Pending } else { Status::Active }),
                    false,
                )
                .await
                .unwrap();
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
            assert_eq!(
                pending.iter().map(|s| s.email.as_str()).collect::<Vec<_>>(),
                ["r0@example.org", "r5@example.org", "r10@example.org", "r15@example.org", "r20@example.org"]
            );
        }
    }
}
