//! `publish.toml`: read once, checked once, and handed to the rest of Gazette as a `Config` whose
//! values are already parsed (time zone, cron schedule, addresses, SMTP target). Unknown keys are
//! errors that name the key, its section and the line, so a typo never passes silently.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::Weekday;
use chrono_tz::Tz;
use lettre::message::Mailbox;
use serde::Deserialize;

use crate::error::{Exit, ExitError};

/// The file name looked for in the current folder when neither `--config` nor `GAZETTE_CONFIG` is given.
pub const DEFAULT_FILE: &str = "publish.toml";

/// One problem in the configuration, already phrased for the person who has to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Nothing runs on a broken configuration: exit 2.
impl From<ConfigError> for ExitError {
    fn from(e: ConfigError) -> ExitError {
        ExitError::new(Exit::Unusable, e)
    }
}

// ---------------------------------------------------------------------------------------------
// The file as written. Every table rejects unknown keys; a key left out takes its value from the
// defaults file, `src/publish.default.toml`, which is also what `gazette init` writes and what the
// README shows: the defaults have that one source.
// ---------------------------------------------------------------------------------------------

/// The commented configuration with every key at its default.
pub const DEFAULTS_TOML: &str = include_str!("publish.default.toml");

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawConfig {
    site: RawSite,
    paths: RawPaths,
    schedule: RawSchedule,
    email: RawEmail,
    smtp: RawSmtp,
    server: RawServer,
    feeds: RawFeeds,
    bounces: RawBounces,
    reputation: RawReputation,
    dkim: Option<RawDkim>,
    dmarc: Option<RawDmarc>,
    dns: RawDns,
}

/// Fills the keys a table leaves out from `defaults`: `fill!(table, defaults; key, key...)`.
macro_rules! fill {
    ($t:expr, $d:expr; $($k:ident),+) => { $( if $t.$k.is_none() { $t.$k = $d.$k.take(); } )+ };
}

impl RawConfig {
    /// The defaults file, parsed.
    fn defaults() -> RawConfig {
        toml::from_str(DEFAULTS_TOML).expect("src/publish.default.toml parses")
    }

    /// This file with every key it leaves out taken from the defaults file.
    fn with_defaults(mut self) -> RawConfig {
        let mut d = RawConfig::defaults();
        fill!(self.site, d.site; title, base_url, description, author, language);
        fill!(self.paths, d.paths; digests, notes, templates, out, drafts, cache, database);
        fill!(self.schedule, d.schedule; cron, timezone, week_starts, max_lateness);
        fill!(self.email, d.email; from, reply_to, editor, subject, welcome_subject, max_html_kb, bounce_address);
        fill!(self.smtp, d.smtp; url, username, password_command, auth, ca_file, concurrency, timeout, rate_per_second);
        fill!(self.server, d.server; listen, behind_proxy);
        fill!(self.feeds, d.feeds; items);
        fill!(self.bounces, d.bounces; mailbox, password_command, auth, ca_file, processed, temporary_limit);
        fill!(self.dns, d.dns; nameservers);
        fill!(self.reputation, d.reputation; complaint_rate, hard_bounce_rate, refused_messages);
        self
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawSite {
    title: Option<String>,
    base_url: Option<String>,
    description: Option<String>,
    author: Option<String>,
    language: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawPaths {
    digests: Option<PathBuf>,
    notes: Option<PathBuf>,
    templates: Option<PathBuf>,
    out: Option<PathBuf>,
    drafts: Option<PathBuf>,
    cache: Option<PathBuf>,
    database: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawSchedule {
    cron: Option<String>,
    timezone: Option<String>,
    week_starts: Option<String>,
    max_lateness: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawEmail {
    from: Option<String>,
    reply_to: Option<String>,
    editor: Option<String>,
    subject: Option<String>,
    welcome_subject: Option<String>,
    max_html_kb: Option<usize>,
    bounce_address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawSmtp {
    url: Option<String>,
    username: Option<String>,
    password_command: Option<String>,
    auth: Option<String>,
    ca_file: Option<PathBuf>,
    concurrency: Option<u32>,
    timeout: Option<String>,
    rate_per_second: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    behind_proxy: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawFeeds {
    items: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawBounces {
    mailbox: Option<String>,
    password_command: Option<String>,
    auth: Option<String>,
    ca_file: Option<PathBuf>,
    processed: Option<String>,
    temporary_limit: Option<u32>,
}

/// `[dmarc]`: the mailbox keys of `[bounces]`, for a mailbox of its own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDmarc {
    mailbox: String,
    password_command: Option<String>,
    auth: Option<String>,
    ca_file: Option<PathBuf>,
    processed: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawDns {
    nameservers: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawReputation {
    complaint_rate: Option<RawRate>,
    hard_bounce_rate: Option<RawRate>,
    refused_messages: Option<u32>,
}

/// A rate as written: a percentage in quotes, or a bare number that `check_reputation` refuses by
/// name (is 0.3 meant as 0.3% or as 30%?).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawRate {
    Text(String),
    Number(f64),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDkim {
    domain: String,
    selector: String,
    private_key: PathBuf,
    /// A second signature, Ed25519 beside an RSA `private_key` (RFC 8463 §1): both keys or neither.
    ed25519_key: Option<PathBuf>,
    ed25519_selector: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// The checked configuration.
// ---------------------------------------------------------------------------------------------

/// The whole configuration, valid by construction: every later stage takes it as it is.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, or `None` for the embedded defaults.
    pub source: Option<PathBuf>,
    pub site: Site,
    pub paths: Paths,
    pub schedule: Schedule,
    pub email: Email,
    pub smtp: Smtp,
    pub server: Server,
    pub feeds: Feeds,
    pub bounces: Bounces,
    pub reputation: Reputation,
    pub dkim: Option<Dkim>,
    pub dmarc: Option<Dmarc>,
    pub dns: Dns,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Site {
    pub title: String,
    /// Absolute http(s) URL without a trailing slash: `https://signals.example.org`.
    pub base_url: String,
    pub description: String,
    pub author: String,
    pub language: String,
}

impl Site {
    /// The host part of `base_url`, used in tag URIs, Message-IDs and List-Id.
    pub fn host(&self) -> String {
        url::Url::parse(&self.base_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| "localhost".into())
    }
}

/// Paths, already resolved against the folder holding `publish.toml`.
#[derive(Debug, Clone)]
pub struct Paths {
    pub digests: PathBuf,
    /// The editor's notes: `<issue-id>.md`, shown above the digests.
    pub notes: PathBuf,
    pub templates: PathBuf,
    pub out: PathBuf,
    /// Drafts and previews: never served.
    pub drafts: PathBuf,
    /// What the last build read and wrote, so the next one redoes only what changed (`build_cache`).
    pub cache: PathBuf,
    pub database: Database,
}

/// Where the store lives: a SQLite file (the default), or a PostgreSQL server shared by several
/// hosts. A PostgreSQL URL never carries its password: that comes from `GAZETTE_DATABASE_PASSWORD`
/// or the user's `.pgpass`.
#[derive(Debug, Clone, PartialEq)]
pub enum Database {
    Sqlite(PathBuf),
    Postgres(url::Url),
}

impl Database {
    /// True when a command that only reads may open it: a SQLite file that exists, or any server.
    pub fn exists(&self) -> bool {
        match self {
            Database::Sqlite(path) => path.exists(),
            Database::Postgres(_) => true,
        }
    }
}

impl From<&Database> for Database {
    fn from(d: &Database) -> Database {
        d.clone()
    }
}

/// A SQLite file.
impl From<&Path> for Database {
    fn from(path: &Path) -> Database {
        Database::Sqlite(path.to_path_buf())
    }
}

impl From<&PathBuf> for Database {
    fn from(path: &PathBuf) -> Database {
        Database::Sqlite(path.clone())
    }
}

impl std::fmt::Display for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(path) => write!(f, "{}", path.display()),
            Database::Postgres(url) => write!(f, "{url}"),
        }
    }
}

/// Why `[paths] database` (or `store copy --from/--to`) names no database Gazette can use.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseDatabaseError {
    #[error("is empty; give a SQLite file such as subscribers/gazette.db, or a postgres:// URL")]
    Empty,
    #[error("`{text}`: unknown scheme `{scheme}`; give a SQLite file's path or a postgres://user@host/database URL")]
    UnknownScheme { text: String, scheme: String },
    #[error("`{text}` is not a URL ({why}); use postgres://user@host:5432/database")]
    NotAUrl { text: String, why: url::ParseError },
    #[error(
        "the password does not belong in publish.toml: put it in the GAZETTE_DATABASE_PASSWORD environment variable \
         or in ~/.pgpass"
    )]
    Password,
    #[error("`{text}` names no host; use postgres://user@host:5432/database")]
    NoHost { text: String },
    #[error("`{text}` names no database; add it after the host, as in postgres://gazette@{host}/gazette")]
    NoDatabase { text: String, host: String },
}

/// `[paths] database`: a `postgres://` (or `postgresql://`) URL, or else a SQLite file's path.
pub fn parse_database(text: &str, base: &Path) -> Result<Database, ParseDatabaseError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ParseDatabaseError::Empty);
    }
    let Some((scheme, _)) = text.split_once("://") else {
        return Ok(Database::Sqlite(resolve(base, PathBuf::from(text))));
    };
    if !matches!(scheme, "postgres" | "postgresql") {
        return Err(ParseDatabaseError::UnknownScheme { text: text.into(), scheme: scheme.into() });
    }
    let url = url::Url::parse(text).map_err(|why| ParseDatabaseError::NotAUrl { text: text.into(), why })?;
    if url.password().is_some() {
        return Err(ParseDatabaseError::Password);
    }
    if url.host_str().is_none_or(str::is_empty) && !url.query_pairs().any(|(k, _)| k == "host") {
        return Err(ParseDatabaseError::NoHost { text: text.into() });
    }
    if url.path().trim_start_matches('/').is_empty() {
        let host = url.host_str().unwrap_or("localhost").into();
        return Err(ParseDatabaseError::NoDatabase { text: text.into(), host });
    }
    Ok(Database::Postgres(url))
}

#[derive(Debug, Clone)]
pub struct Schedule {
    pub cron: cron::Schedule,
    pub cron_text: String,
    pub timezone: Tz,
    pub week_starts: Weekday,
    pub max_lateness: Duration,
}

#[derive(Debug, Clone)]
pub struct Email {
    pub from: Mailbox,
    pub reply_to: Option<Mailbox>,
    pub editor: Option<Mailbox>,
    /// A template (same engine as the other templates) for the subject line.
    pub subject: String,
    /// A template for the subject of the welcome a reader receives once confirmed.
    pub welcome_subject: String,
    /// The most HTML an email may carry, in bytes: a heavier week is shortened to fit.
    pub max_html_bytes: usize,
    /// Where failure notices go: each delivery's envelope sender is this address with a bounce
    /// token after a `+` (VERP). `None`: the From address, as it is.
    pub bounce_address: Option<lettre::Address>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Tls {
    /// STARTTLS after connecting, required (the usual port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// No encryption at all: only when the URL says `tls=none`, for a server on this machine.
    None,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SmtpTarget {
    /// Write each message as a `.eml` file into this folder instead of sending it.
    Outbox(PathBuf),
    Server {
        host: String,
        port: u16,
        tls: Tls,
    },
}

/// A login mechanism (RFC 4954 AUTH).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Auth {
    Plain,
    Login,
    /// OAuth 2.0 access tokens (Google, Microsoft 365), from `password_command`.
    Xoauth2,
}

#[derive(Debug, Clone)]
pub struct Smtp {
    pub url: String,
    pub target: SmtpTarget,
    pub username: Option<String>,
    /// Run with `sh -c` for each connection: its trimmed output is the secret.
    pub password_command: Option<String>,
    /// `None`: what the server offers of PLAIN and LOGIN.
    pub auth: Option<Auth>,
    /// A private CA's certificate(s), trusted besides the system's store.
    pub ca_file: Option<PathBuf>,
    pub concurrency: u32,
    /// The longest wait for the server's greeting and for each reply; the reply to the end of a
    /// message may take three times as long (the server checks the content then).
    pub timeout: Duration,
    /// A ceiling on messages per second; `None` means as fast as the server takes them.
    pub rate_per_second: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub listen: std::net::SocketAddr,
    /// A reverse proxy serves `[site] base_url`: `serve` leaves links as they are. When false,
    /// `serve` rewrites links to where it listens (for looking at the archive locally).
    pub behind_proxy: bool,
}

#[derive(Debug, Clone)]
pub struct Feeds {
    /// How many issues the feeds carry, newest first.
    pub items: usize,
}

/// `[bounces]`: where failure notices and complaints are read, and what they do.
#[derive(Debug, Clone)]
pub struct Bounces {
    /// Read by every scheduler round and after each send; `None`: only `gazette bounces import`.
    pub mailbox: Option<BounceMailbox>,
    /// Run with `sh -c` for each login: its trimmed output is the secret (else `GAZETTE_BOUNCES_PASSWORD`).
    pub password_command: Option<String>,
    /// `None`: a plain login.
    pub auth: Option<Auth>,
    pub ca_file: Option<PathBuf>,
    /// The folder (IMAP mailbox or Maildir++ sub-folder) a read message is moved into.
    pub processed: String,
    /// Temporary failures on this many distinct issues, with no success between, make a subscriber bounced.
    pub temporary_limit: u32,
}

/// `[dmarc]`: a mailbox of its own for the DMARC record's `rua=` address, read as the bounce
/// mailbox is (without it, reports sent to the bounce mailbox are read there).
#[derive(Debug, Clone)]
pub struct Dmarc {
    pub mailbox: BounceMailbox,
    /// As `[bounces] password_command` (else `GAZETTE_DMARC_PASSWORD`).
    pub password_command: Option<String>,
    pub auth: Option<Auth>,
    pub ca_file: Option<PathBuf>,
    pub processed: String,
}

/// `[reputation]`: the rates past which an issue harms the sender's reputation with the receivers
/// (Gmail's and Yahoo's published limits), and after which the scheduler holds the next issue.
#[derive(Debug, Clone, PartialEq)]
pub struct Reputation {
    /// Complaints over messages accepted, as a fraction (0.003 for 0.3%); `None`: not a reason to hold.
    pub complaint_rate: Option<f64>,
    /// Hard bounces over messages tried, as a fraction; `None`: not a reason to hold.
    pub hard_bounce_rate: Option<f64>,
    /// Refusals of the sender (spam, a blocklist, a policy) by one recipient domain; 0: not a reason to hold.
    pub refused_messages: u32,
}

/// A mailbox that failure notices arrive in.
#[derive(Debug, Clone, PartialEq)]
pub enum BounceMailbox {
    /// A maildir folder on this machine (with `cur/`, `new/` and `tmp/`).
    Maildir(PathBuf),
    /// `imaps://user@host[:port]/FOLDER`: TLS from the first byte, port 993 unless given.
    Imap { host: String, port: u16, user: String, folder: String },
}

impl std::fmt::Display for BounceMailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BounceMailbox::Maildir(p) => write!(f, "the maildir {}", p.display()),
            BounceMailbox::Imap { host, port, user, folder } => write!(f, "imaps://{user}@{host}:{port}/{folder}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Dkim {
    pub domain: String,
    pub selector: String,
    pub private_key: PathBuf,
    /// The second signature's selector and key (`ed25519_selector`, `ed25519_key`), when given.
    pub ed25519: Option<(String, PathBuf)>,
}

impl Dkim {
    /// The most bytes the `DKIM-Signature` headers put on a message can take: the email's size budget
    /// counts them. The RSA signature is counted at 4,096 bits (512 bytes, 684 in base64, folded at
    /// 72), the largest key DNS TXT records commonly carry; Ed25519's is 64 bytes (88 in base64).
    pub fn signature_bytes(&self) -> usize {
        // v=, a=, c=, h= with its 11 header names, bh= (44), the folds and the header's name.
        const TAGS: usize = 240;
        let folded = |b64: usize| b64 + b64.div_ceil(72) * 3;
        let rsa = TAGS + self.domain.len() + self.selector.len() + folded(684);
        let ed25519 = self.ed25519.as_ref().map_or(0, |(s, _)| TAGS + self.domain.len() + s.len() + folded(88));
        rsa + ed25519
    }
}

/// `[dns]`: how `gazette check --dns` looks records up.
#[derive(Debug, Clone, Default)]
pub struct Dns {
    /// The resolvers asked instead of the system's (`/etc/resolv.conf`), each an address and port;
    /// empty: the system's.
    pub nameservers: Vec<std::net::SocketAddr>,
}

impl Config {
    /// The configuration a fresh checkout runs on when there is no `publish.toml`: paths relative to `base`.
    pub fn embedded_defaults(base: &Path) -> Config {
        check(RawConfig::default(), base, None).expect("the embedded defaults are valid")
    }

    /// Reads and checks the file at `path`. Every problem found is listed in the one error.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: cannot read the configuration: {e}", path.display())))?;
        Config::parse(&text, path)
    }

    /// Parses `text` as if it were the file at `path` (used for messages and to resolve relative paths).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let raw: RawConfig = toml::from_str(text).map_err(|e| describe_toml_error(&e, text, path))?;
        // A bare `publish.toml` has an empty parent: paths then stay relative to the current folder.
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        check(raw, &base, Some(path))
    }

    /// The configuration with every path spelled one way (`one_spelling`): what the build cache's
    /// keys are made from, so that `--config publish.toml`, `--config ./publish.toml` and
    /// `--config /srv/news/publish.toml` use the same cache.
    pub fn with_paths_in_one_spelling(&self) -> Config {
        let mut config = self.clone();
        config.source = self.source.as_deref().map(one_spelling);
        let paths = &mut config.paths;
        for p in [
            &mut paths.digests,
            &mut paths.notes,
            &mut paths.templates,
            &mut paths.out,
            &mut paths.drafts,
            &mut paths.cache,
        ] {
            *p = one_spelling(p);
        }
        if let Database::Sqlite(file) = &mut paths.database {
            *file = one_spelling(file);
        }
        if let SmtpTarget::Outbox(folder) = &mut config.smtp.target {
            *folder = one_spelling(folder);
        }
        let dmarc_ca = config.dmarc.as_mut().and_then(|d| d.ca_file.as_mut());
        for file in [config.smtp.ca_file.as_mut(), config.bounces.ca_file.as_mut(), dmarc_ca].into_iter().flatten() {
            *file = one_spelling(file);
        }
        let dmarc_mailbox = config.dmarc.as_mut().map(|d| &mut d.mailbox);
        for mailbox in [config.bounces.mailbox.as_mut(), dmarc_mailbox].into_iter().flatten() {
            if let BounceMailbox::Maildir(folder) = mailbox {
                *folder = one_spelling(folder);
            }
        }
        if let Some(dkim) = &mut config.dkim {
            dkim.private_key = one_spelling(&dkim.private_key);
            if let Some((_, key)) = &mut dkim.ed25519 {
                *key = one_spelling(key);
            }
        }
        config
    }

    /// Where this configuration came from, for messages.
    pub fn describe_source(&self) -> String {
        match &self.source {
            Some(p) => p.display().to_string(),
            None => "the embedded defaults (no publish.toml found)".into(),
        }
    }
}

/// One spelling of a path however it was given: absolute, with links and `..` resolved as the
/// system finds them for the part that exists (a folder not made yet keeps its last names).
pub fn one_spelling(path: &Path) -> PathBuf {
    let Ok(absolute) = std::path::absolute(path) else { return path.to_path_buf() };
    let mut missing = Vec::new();
    let mut at = absolute.as_path();
    loop {
        if let Ok(mut found) = std::fs::canonicalize(at) {
            found.extend(missing.iter().rev());
            return found;
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name);
                at = parent;
            }
            _ => return absolute,
        }
    }
}

/// Turns a toml/serde error into `path:line: message`, naming the section of an unknown key.
fn describe_toml_error(e: &toml::de::Error, text: &str, path: &Path) -> ConfigError {
    let message = e.message().trim().to_string();
    let Some(span) = e.span() else {
        return ConfigError(format!("{}: {message}", path.display()));
    };
    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
    let section = text[..span.start.min(text.len())]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && l.ends_with(']'))
        .map(str::to_owned);
    if let Some(e) = unknown_section(&message, text, span.start, line, path) {
        return e;
    }
    let hint = if message.starts_with("unknown field") {
        match &section {
            Some(s) => format!(" in {s}"),
            None => " at the top level (keys belong in a [section])".into(),
        }
    } else {
        String::new()
    };
    ConfigError(format!("{}:{line}: {message}{hint}", path.display()))
}

/// An unknown field that is the header of a table (`[feed]`): serde calls it a field, and the
/// last header before it would name the section before. Says it is an unknown section, with the
/// sections there are (serde's list, made from `RawConfig`).
fn unknown_section(message: &str, text: &str, at: usize, line: usize, path: &Path) -> Option<ConfigError> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let at = at.min(text.len());
    let header = text[text[..at].rfind('\n').map_or(0, |i| i + 1)..].lines().next()?.trim();
    let name = header.strip_prefix("[[").or_else(|| header.strip_prefix('['))?;
    let first = name.split(['.', ']']).next()?.trim().trim_matches('"');
    if first != field {
        return None;
    }
    let sections: Vec<&str> = rest.split_once("expected one of ")?.1.split(", ").map(|s| s.trim_matches('`')).collect();
    let near = sections
        .iter()
        .find(|s| s.starts_with(field) || field.starts_with(**s))
        .map(|s| format!(" (did you mean [{s}]?)"));
    let list: Vec<String> = sections.iter().map(|s| format!("[{s}]")).collect();
    Some(ConfigError(format!(
        "{}:{line}: unknown section [{field}]{}; the sections are {}",
        path.display(),
        near.unwrap_or_default(),
        list.join(", ")
    )))
}

/// The range of `[email] max_html_kb`: below 20 KB not even a short issue's frame fits; above
/// 1 MB no mail client shows it whole.
const MIN_HTML_KB: usize = 20;
const MAX_HTML_KB: usize = 1024;

/// The problems found in a configuration, each as `FILE: [section] key: why`, in the order of
/// the file's sections: all of them are listed in the one error.
struct Problems {
    file: String,
    found: Vec<String>,
}

impl Problems {
    fn new(source: Option<&Path>) -> Problems {
        let file = source.map(|p| p.display().to_string()).unwrap_or_else(|| "embedded defaults".into());
        Problems { file, found: Vec::new() }
    }

    fn bad(&mut self, key: &str, why: impl std::fmt::Display) {
        self.found.push(format!("{}: {key}: {why}", self.file));
    }
}

/// Every key left out was filled from `src/publish.default.toml`.
const SET: &str = "src/publish.default.toml sets every key";
/// A section is built whole once none of its keys had a problem.
const CHECKED: &str = "checked above";

/// Checks every section (each adds its problems), then builds the configuration when none has one.
fn check(raw: RawConfig, base: &Path, source: Option<&Path>) -> Result<Config, ConfigError> {
    let raw = raw.with_defaults();
    let mut problems = Problems::new(source);
    let site = check_site(raw.site, &mut problems);
    let schedule = check_schedule(raw.schedule, &mut problems);
    let email = check_email(raw.email, &mut problems);
    let smtp = check_smtp(raw.smtp, base, &mut problems);
    let server = check_server(raw.server, &mut problems);
    let feeds = check_feeds(raw.feeds, &mut problems);
    let bounces = check_bounces(raw.bounces, base, &mut problems);
    let reputation = check_reputation(raw.reputation, &mut problems);
    let paths = check_paths(raw.paths, base, &mut problems);
    let dkim = raw.dkim.and_then(|d| check_dkim(d, base, &mut problems));
    let dmarc = raw.dmarc.and_then(|d| check_dmarc(d, base, &mut problems));
    let dns = check_dns(raw.dns, &mut problems);
    if !problems.found.is_empty() {
        return Err(ConfigError(problems.found.join("\n")));
    }
    Ok(Config {
        source: source.map(Path::to_path_buf),
        site,
        paths,
        schedule: schedule.expect(CHECKED),
        email: email.expect(CHECKED),
        smtp: smtp.expect(CHECKED),
        server: server.expect(CHECKED),
        feeds,
        bounces,
        reputation,
        dkim,
        dmarc,
        dns,
    })
}

fn check_dns(dns: RawDns, problems: &mut Problems) -> Dns {
    let mut nameservers = Vec::new();
    for text in dns.nameservers.unwrap_or_default() {
        match text.trim().parse::<std::net::SocketAddr>() {
            Ok(address) => nameservers.push(address),
            Err(_) => problems.bad(
                "[dns] nameservers",
                format!("`{text}` is not an address and port such as \"127.0.0.1:53\" or \"[::1]:53\""),
            ),
        }
    }
    Dns { nameservers }
}

fn check_dkim(d: RawDkim, base: &Path, problems: &mut Problems) -> Option<Dkim> {
    let ed25519 = match (d.ed25519_selector, d.ed25519_key) {
        (Some(selector), Some(key)) => Some((selector, resolve(base, key))),
        (None, None) => None,
        (selector, _) => {
            let (given, missing) = if selector.is_some() {
                ("ed25519_selector", "ed25519_key")
            } else {
                ("ed25519_key", "ed25519_selector")
            };
            problems.bad(
                &format!("[dkim] {given}"),
                format!("a second (Ed25519) signature needs both keys: add {missing}, or remove {given}"),
            );
            return None;
        }
    };
    Some(Dkim { domain: d.domain, selector: d.selector, private_key: resolve(base, d.private_key), ed25519 })
}

/// A path of the configuration, taken from the folder holding `publish.toml` unless absolute.
fn resolve(base: &Path, path: PathBuf) -> PathBuf {
    if path.is_absolute() { path } else { base.join(path) }
}

fn check_site(site: RawSite, problems: &mut Problems) -> Site {
    let (title, raw_base_url) = (site.title.expect(SET), site.base_url.expect(SET));
    let mut base_url = raw_base_url.trim().trim_end_matches('/').to_string();
    match url::Url::parse(&base_url) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host_str().is_some() => {}
        _ => {
            problems.bad(
                "[site] base_url",
                format!("`{}` is not an absolute http(s) URL such as https://signals.example.org", raw_base_url),
            );
            base_url = "http://localhost".into();
        }
    }
    if title.trim().is_empty() {
        problems.bad("[site] title", "must not be empty");
    }
    Site {
        title,
        base_url,
        description: site.description.expect(SET),
        author: site.author.expect(SET),
        language: site.language.expect(SET),
    }
}

fn check_schedule(schedule: RawSchedule, problems: &mut Problems) -> Option<Schedule> {
    let (cron_text, zone, week_start_text, lateness) = (
        schedule.cron.expect(SET),
        schedule.timezone.expect(SET),
        schedule.week_starts.expect(SET),
        schedule.max_lateness.expect(SET),
    );
    let cron = match cron::Schedule::from_str(&cron_text) {
        Ok(c) => Some(c),
        Err(e) => {
            problems.bad("[schedule] cron", explain_cron(&cron_text, &e.to_string()));
            None
        }
    };
    let timezone = match zone.parse::<Tz>() {
        Ok(tz) => Some(tz),
        Err(_) => {
            problems.bad(
                "[schedule] timezone",
                format!("`{}` is not an IANA time zone such as Europe/London or UTC", zone),
            );
            None
        }
    };
    let week_starts = parse_weekday(&week_start_text).unwrap_or_else(|| {
        problems.bad(
            "[schedule] week_starts",
            format!("`{}` is not a day of the week; use monday, ..., sunday", week_start_text),
        );
        Weekday::Mon
    });
    let max_lateness = humantime::parse_duration(&lateness).unwrap_or_else(|e| {
        problems.bad("[schedule] max_lateness", format!("`{}` is not a duration such as 6h or 90m ({e})", lateness));
        Duration::ZERO
    });
    Some(Schedule { cron: cron?, cron_text, timezone: timezone?, week_starts, max_lateness })
}

fn check_email(email: RawEmail, problems: &mut Problems) -> Option<Email> {
    let (from_text, subject, max_html_kb) =
        (email.from.expect(SET), email.subject.expect(SET), email.max_html_kb.expect(SET));
    let mut mailbox = |key: &str, value: &str| match value.parse::<Mailbox>() {
        Ok(m) => Some(m),
        Err(e) => {
            problems.bad(
                key,
                format!("`{value}` is not an email address such as \"Signals Weekly <news@example.org>\" ({e})"),
            );
            None
        }
    };
    let from = mailbox("[email] from", &from_text);
    let reply_to = email.reply_to.as_deref().and_then(|v| mailbox("[email] reply_to", v));
    let editor = email.editor.as_deref().and_then(|v| mailbox("[email] editor", v));
    if subject.contains(['\r', '\n']) {
        problems.bad("[email] subject", "must be a single line");
    }
    let welcome_subject = email.welcome_subject.expect(SET);
    if welcome_subject.contains(['\r', '\n']) {
        problems.bad("[email] welcome_subject", "must be a single line");
    }
    let bounce_address = email.bounce_address.as_deref().and_then(|text| match check_bounce_address(text) {
        Ok(a) => Some(a),
        Err(why) => {
            problems.bad("[email] bounce_address", why);
            None
        }
    });
    if !(MIN_HTML_KB..=MAX_HTML_KB).contains(&max_html_kb) {
        problems.bad(
            "[email] max_html_kb",
            format!(
                "{max_html_kb} is out of range; use {MIN_HTML_KB} to {MAX_HTML_KB} (Gmail clips an email's HTML past about 102 KB)"
            ),
        );
    }
    Some(Email {
        from: from?,
        reply_to,
        editor,
        subject,
        welcome_subject,
        max_html_bytes: max_html_kb * 1024,
        bounce_address,
    })
}

fn check_smtp(smtp: RawSmtp, base: &Path, problems: &mut Problems) -> Option<Smtp> {
    let (url, concurrency, timeout_text) =
        (smtp.url.expect(SET), smtp.concurrency.expect(SET), smtp.timeout.expect(SET));
    let target = match parse_smtp_url(&url, base) {
        Ok(t) => Some(t),
        Err(why) => {
            problems.bad("[smtp] url", why);
            None
        }
    };
    if concurrency == 0 || concurrency > 256 {
        problems.bad("[smtp] concurrency", format!("{} is out of range; use 1 to 256 connections", concurrency));
    }
    let timeout = match humantime::parse_duration(&timeout_text) {
        Ok(d) if d >= Duration::from_secs(1) => d,
        _ => {
            problems.bad(
                "[smtp] timeout",
                format!("`{timeout_text}` is not a duration of a second or more, such as 60s or 5m"),
            );
            Duration::from_secs(60)
        }
    };
    let auth = match smtp.auth.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => None,
        Some("plain") => Some(Auth::Plain),
        Some("login") => Some(Auth::Login),
        Some("xoauth2") => Some(Auth::Xoauth2),
        Some(other) => {
            problems.bad(
                "[smtp] auth",
                format!("`{other}` is not a login mechanism Gazette speaks; use plain, login or xoauth2"),
            );
            None
        }
    };
    if smtp.username.is_none() && (smtp.password_command.is_some() || auth.is_some()) {
        problems.bad("[smtp] username", "is needed with [smtp] auth or password_command: the account to log in as");
    }
    if let Some(r) = smtp.rate_per_second
        && !(r > 0.0 && r.is_finite())
    {
        problems.bad(
            "[smtp] rate_per_second",
            format!("{r} must be a positive number of messages per second (leave it out for no limit)"),
        );
    }
    Some(Smtp {
        url,
        target: target?,
        username: smtp.username,
        password_command: smtp.password_command,
        auth,
        ca_file: smtp.ca_file.map(|p| resolve(base, p)),
        concurrency,
        timeout,
        rate_per_second: smtp.rate_per_second,
    })
}

fn check_server(server: RawServer, problems: &mut Problems) -> Option<Server> {
    let listen_text = server.listen.expect(SET);
    let listen = match listen_text.parse::<std::net::SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            problems
                .bad("[server] listen", format!("`{}` is not an address and port such as 127.0.0.1:8080", listen_text));
            None
        }
    };
    Some(Server { listen: listen?, behind_proxy: server.behind_proxy.expect(SET) })
}

fn check_feeds(feeds: RawFeeds, problems: &mut Problems) -> Feeds {
    let items = feeds.items.expect(SET);
    if items == 0 {
        problems.bad("[feeds] items", "must be at least 1");
    }
    Feeds { items }
}

fn check_bounces(bounces: RawBounces, base: &Path, problems: &mut Problems) -> Bounces {
    let (processed, temporary_limit) = (bounces.processed.expect(SET), bounces.temporary_limit.expect(SET));
    let mailbox = bounces.mailbox.as_deref().and_then(|text| match parse_bounce_mailbox(text, base) {
        Ok(m) => Some(m),
        Err(why) => {
            problems.bad("[bounces] mailbox", why);
            None
        }
    });
    let auth =
        check_mailbox_login("[bounces]", bounces.auth.as_deref(), &bounces.password_command, &processed, problems);
    if temporary_limit == 0 {
        problems.bad(
            "[bounces] temporary_limit",
            "must be at least 1 (temporary failures on that many issues make an address bounced)",
        );
    }
    Bounces {
        mailbox,
        password_command: bounces.password_command,
        auth,
        ca_file: bounces.ca_file.map(|p| resolve(base, p)),
        processed,
        temporary_limit,
    }
}

/// A mailbox's `auth` (with `password_command`, which xoauth2 needs) and `processed` folder, in
/// `section` (`[bounces]` or `[dmarc]`).
fn check_mailbox_login(
    section: &str,
    auth: Option<&str>,
    password_command: &Option<String>,
    processed: &str,
    problems: &mut Problems,
) -> Option<Auth> {
    let auth = match auth.map(str::to_ascii_lowercase).as_deref() {
        None | Some("plain") => None,
        Some("xoauth2") => Some(Auth::Xoauth2),
        Some(other) => {
            problems.bad(
                &format!("{section} auth"),
                format!("`{other}` is not a login Gazette speaks to a mailbox; use plain or xoauth2"),
            );
            None
        }
    };
    if auth == Some(Auth::Xoauth2) && password_command.is_none() {
        problems.bad(
            &format!("{section} auth"),
            format!("xoauth2 needs {section} password_command, a command that prints a fresh access token"),
        );
    }
    if processed.trim().is_empty() || processed.contains(['/', '\\', '\r', '\n', '"', '*', '%']) {
        problems.bad(
            &format!("{section} processed"),
            format!("`{processed}` is not a folder name; use a plain name such as Processed"),
        );
    }
    auth
}

/// `[dmarc]`: its mailbox, read as `[bounces] mailbox` is; `processed` is `Processed` unless given.
fn check_dmarc(d: RawDmarc, base: &Path, problems: &mut Problems) -> Option<Dmarc> {
    let mailbox = match parse_bounce_mailbox(&d.mailbox, base) {
        Ok(m) => Some(m),
        Err(why) => {
            problems.bad("[dmarc] mailbox", why);
            None
        }
    };
    let processed = d.processed.unwrap_or_else(|| "Processed".to_string());
    let auth = check_mailbox_login("[dmarc]", d.auth.as_deref(), &d.password_command, &processed, problems);
    Some(Dmarc {
        mailbox: mailbox?,
        password_command: d.password_command,
        auth,
        ca_file: d.ca_file.map(|p| resolve(base, p)),
        processed,
    })
}

fn check_reputation(r: RawReputation, problems: &mut Problems) -> Reputation {
    let mut rate = |key: &str, raw: RawRate| {
        let parsed = match raw {
            RawRate::Text(text) => parse_rate(&text),
            RawRate::Number(n) => {
                Err(format!("{n} is a bare number; write the rate as a percentage in quotes, such as \"{n}%\""))
            }
        };
        parsed.unwrap_or_else(|why| {
            problems.bad(&format!("[reputation] {key}"), why);
            None
        })
    };
    Reputation {
        complaint_rate: rate("complaint_rate", r.complaint_rate.expect(SET)),
        hard_bounce_rate: rate("hard_bounce_rate", r.hard_bounce_rate.expect(SET)),
        refused_messages: r.refused_messages.expect(SET),
    }
}

/// A rate written as a percentage (`"0.3%"`) as a fraction (0.003); `"off"`: `None`.
pub fn parse_rate(text: &str) -> Result<Option<f64>, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let number = t.strip_suffix('%').map(str::trim).and_then(|n| n.parse::<f64>().ok());
    match number {
        Some(n) if n > 0.0 && n <= 100.0 => Ok(Some(n / 100.0)),
        _ => Err(format!("`{text}` is not a percentage above 0 and at most 100 such as \"0.3%\" (or \"off\")")),
    }
}

/// The paths, resolved against `base`; only the database can be wrong.
fn check_paths(paths: RawPaths, base: &Path, problems: &mut Problems) -> Paths {
    let database = parse_database(&paths.database.expect(SET), base).unwrap_or_else(|why| {
        problems.bad("[paths] database", why);
        Database::Sqlite(PathBuf::new())
    });
    Paths {
        digests: resolve(base, paths.digests.expect(SET)),
        notes: resolve(base, paths.notes.expect(SET)),
        templates: resolve(base, paths.templates.expect(SET)),
        out: resolve(base, paths.out.expect(SET)),
        drafts: resolve(base, paths.drafts.expect(SET)),
        cache: resolve(base, paths.cache.expect(SET)),
        database,
    }
}

/// A cron field: its name, what its values are called, and its range (the cron crate's).
struct CronField {
    name: &'static str,
    values: &'static str,
    min: u32,
    max: u32,
    /// Names it takes besides numbers, lower case, in order from `min`.
    names: &'static [&'static str],
}

const CRON_FIELDS: [CronField; 7] = [
    CronField { name: "second", values: "seconds are 0 to 59", min: 0, max: 59, names: &[] },
    CronField { name: "minute", values: "minutes are 0 to 59", min: 0, max: 59, names: &[] },
    CronField { name: "hour", values: "hours are 0 to 23", min: 0, max: 23, names: &[] },
    CronField { name: "day-of-month", values: "days of the month are 1 to 31", min: 1, max: 31, names: &[] },
    CronField {
        name: "month",
        values: "months are 1 to 12 or Jan to Dec",
        min: 1,
        max: 12,
        names: &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
    },
    CronField {
        name: "day-of-week",
        values: "days of the week are Sun to Sat (or 1 to 7, where 1 is Sunday)",
        min: 1,
        max: 7,
        names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    },
    CronField { name: "year", values: "years are 1970 to 2100", min: 1970, max: 2100, names: &[] },
];

/// Says which field of a bad `[schedule] cron` is wrong and what it takes. The cron crate's own
/// text can mislead ("Hours must be less than 23", of 25, when 23 is valid), so it is only
/// quoted when no field can be blamed.
fn explain_cron(text: &str, crate_says: &str) -> String {
    const SHAPE: &str = "six fields, seconds first, as in \"0 0 8 * * Mon\" (Mondays at 08:00), and an optional year";
    let fields: Vec<&str> = text.split_whitespace().collect();
    if !(6..=7).contains(&fields.len()) {
        return format!("`{text}` has {} fields; a schedule has {SHAPE}", fields.len());
    }
    for (value, field) in fields.iter().zip(&CRON_FIELDS) {
        if let Some(why) = cron_field_problem(value, field) {
            return format!("`{text}`: the {} field {why}; {}", field.name, field.values);
        }
    }
    format!("`{text}` is not a schedule Gazette can read ({crate_says}); it has {SHAPE}")
}

/// What is wrong with one field's text, if a value in it is out of range or not a value at all.
fn cron_field_problem(text: &str, field: &CronField) -> Option<String> {
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        if let Some(step) = step
            && step.parse::<u32>().map_or(true, |n| n == 0)
        {
            return Some(format!("has the step `/{step}`; a step is a whole number of 1 or more"));
        }
        if range == "*" || range == "?" {
            continue;
        }
        let ends: Vec<&str> = range.splitn(2, '-').collect();
        for end in ends {
            if let Ok(n) = end.parse::<u32>() {
                if n < field.min || n > field.max {
                    return Some(format!("is {n}"));
                }
            } else if !field.names.iter().any(|name| end.to_ascii_lowercase().starts_with(name)) {
                return Some(format!("is `{end}`, which is not one of its values"));
            }
        }
    }
    None
}

/// `[schedule] week_starts`: a day's English name or its first three letters, in any case, with
/// spaces around ignored (chrono's `Weekday: FromStr`, which takes exactly those).
pub fn parse_weekday(s: &str) -> Option<Weekday> {
    s.trim().parse().ok()
}

/// The longest bounce token (`bounce_token` for a 7-digit subscriber id) and its `+`: the bounce
/// address's local part must leave room for it within RFC 5321's 64 octets.
const VERP_SUFFIX_LEN: usize = "+1234567.2023-07-17.".len() + 20;

/// Why `[email] bounce_address` cannot be a bounce address.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BounceAddressError {
    #[error("`{text}` is not a bare email address such as bounces@signals.example.org ({why})")]
    NotAnAddress { text: String, why: lettre::address::AddressError },
    #[error("`{text}` already has a `+` in it; Gazette adds `+` and a token to it, so give the address without one")]
    HasPlus { text: String },
    #[error(
        "the part before the @ of `{text}` is {length} characters; with the token Gazette adds it would pass the 64 that mail \
         servers take (RFC 5321): use at most {}",
        64 - VERP_SUFFIX_LEN
    )]
    TooLong { text: String, length: usize },
}

/// `[email] bounce_address`: a bare address whose local part leaves room for a bounce token.
fn check_bounce_address(text: &str) -> Result<lettre::Address, BounceAddressError> {
    let address: lettre::Address =
        text.trim().parse().map_err(|why| BounceAddressError::NotAnAddress { text: text.into(), why })?;
    let local = address.user();
    if local.contains('+') {
        return Err(BounceAddressError::HasPlus { text: text.into() });
    }
    if local.len() + VERP_SUFFIX_LEN > 64 {
        return Err(BounceAddressError::TooLong { text: text.into(), length: local.len() });
    }
    Ok(address)
}

/// Why `[bounces] mailbox` names no mailbox Gazette can read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseBounceMailboxError {
    #[error("is empty; give an imaps:// URL or a maildir folder, or leave the key out")]
    Empty,
    #[error("`{text}` is not a URL ({why}); use imaps://user@host/INBOX or a maildir folder")]
    NotAUrl { text: String, why: url::ParseError },
    #[error("`{text}` would send the password in clear; use imaps:// (TLS, port 993)")]
    Plain { text: String },
    #[error("`{text}`: unknown scheme `{scheme}`; use imaps://user@host/INBOX or a maildir folder")]
    UnknownScheme { text: String, scheme: String },
    #[error("`{text}` names no host")]
    NoHost { text: String },
    #[error("the password does not belong in the URL: put it in the GAZETTE_BOUNCES_PASSWORD environment variable")]
    Password,
    #[error("`{text}` names no account; write it before the host, as in imaps://bounces@{host}/INBOX")]
    NoAccount { text: String, host: String },
}

/// `imaps://user@host[:port]/FOLDER` (the folder defaults to INBOX), or a maildir folder.
pub fn parse_bounce_mailbox(text: &str, base: &Path) -> Result<BounceMailbox, ParseBounceMailboxError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ParseBounceMailboxError::Empty);
    }
    if !text.contains("://") {
        return Ok(BounceMailbox::Maildir(resolve(base, PathBuf::from(text))));
    }
    let url = url::Url::parse(text).map_err(|why| ParseBounceMailboxError::NotAUrl { text: text.into(), why })?;
    match url.scheme() {
        "imaps" => {}
        "imap" => return Err(ParseBounceMailboxError::Plain { text: text.into() }),
        other => return Err(ParseBounceMailboxError::UnknownScheme { text: text.into(), scheme: other.into() }),
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| ParseBounceMailboxError::NoHost { text: text.into() })?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    if url.password().is_some() {
        return Err(ParseBounceMailboxError::Password);
    }
    let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
    let user = decode(url.username());
    if user.is_empty() {
        return Err(ParseBounceMailboxError::NoAccount { text: text.into(), host });
    }
    let folder = decode(url.path().trim_start_matches('/'));
    let folder = if folder.is_empty() { "INBOX".to_string() } else { folder };
    Ok(BounceMailbox::Imap { host, port: url.port().unwrap_or(993), user, folder })
}

/// Why `[smtp] url` names no server or outbox Gazette can send to.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseSmtpUrlError {
    #[error("`file://` needs a folder, such as file://outbox")]
    NoFolder,
    #[error("`{text}` is not a URL ({why}); use smtp://host:587, smtps://host:465 or file://outbox")]
    NotAUrl { text: String, why: url::ParseError },
    #[error("`{text}` names no host")]
    NoHost { text: String },
    #[error(
        "credentials do not belong in the URL: set [smtp] username and the GAZETTE_SMTP_PASSWORD environment variable"
    )]
    Credentials,
    #[error("`{text}`: unknown option `{key}={value}`; the only option is tls=none")]
    UnknownOption { text: String, key: String, value: String },
    #[error("smtps:// is TLS from the start; `tls=none` contradicts it")]
    TlsNone,
    #[error("unknown scheme `{scheme}`; use smtp://, smtps:// or file://")]
    UnknownScheme { scheme: String },
}

/// `file://DIR`, `smtp://host[:port][?tls=none]` (STARTTLS unless told otherwise), `smtps://host[:port]`.
pub fn parse_smtp_url(text: &str, base: &Path) -> Result<SmtpTarget, ParseSmtpUrlError> {
    if let Some(dir) = text.strip_prefix("file://") {
        if dir.is_empty() {
            return Err(ParseSmtpUrlError::NoFolder);
        }
        return Ok(SmtpTarget::Outbox(resolve(base, PathBuf::from(dir))));
    }
    let url = url::Url::parse(text).map_err(|why| ParseSmtpUrlError::NotAUrl { text: text.into(), why })?;
    let host =
        url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| ParseSmtpUrlError::NoHost { text: text.into() })?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ParseSmtpUrlError::Credentials);
    }
    let mut tls_none = false;
    for (k, v) in url.query_pairs() {
        match (k.as_ref(), v.as_ref()) {
            ("tls", "none") => tls_none = true,
            ("tls", "starttls") | ("tls", "required") => {}
            _ => return Err(ParseSmtpUrlError::UnknownOption { text: text.into(), key: k.into(), value: v.into() }),
        }
    }
    match url.scheme() {
        "smtp" => Ok(SmtpTarget::Server {
            host,
            port: url.port().unwrap_or(587),
            tls: if tls_none { Tls::None } else { Tls::StartTls },
        }),
        "smtps" if tls_none => Err(ParseSmtpUrlError::TlsNone),
        "smtps" => Ok(SmtpTarget::Server { host, port: url.port().unwrap_or(465), tls: Tls::Implicit }),
        other => Err(ParseSmtpUrlError::UnknownScheme { scheme: other.into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_has_one_spelling_whether_or_not_it_exists() {
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(real.join("a")).unwrap();
        let name = real.file_name().unwrap().to_string_lossy().into_owned();
        // An existing folder, through `..`; one that does not exist yet, through `..` too.
        assert_eq!(one_spelling(&real.join("a/..").join("a")), real.join("a"));
        assert_eq!(one_spelling(&real.join(format!("a/../../{name}/notes/x"))), real.join("notes/x"));
        // A link is followed where it exists.
        std::os::unix::fs::symlink(real.join("a"), real.join("link")).unwrap();
        assert_eq!(one_spelling(&real.join("link/new")), real.join("a/new"));
        // A relative path is taken from the current folder.
        assert_eq!(
            one_spelling(Path::new("no-such-folder-here")),
            std::env::current_dir().unwrap().canonicalize().unwrap().join("no-such-folder-here")
        );
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/srv/news/publish.toml"))
    }

    #[test]
    fn defaults_are_complete_and_paths_are_relative_to_the_file() {
        let c = parse("").unwrap();
        assert_eq!(c.paths.digests, PathBuf::from("/srv/news/digests"));
        assert_eq!(c.paths.database, Database::Sqlite(PathBuf::from("/srv/news/subscribers/gazette.db")));
        assert_eq!(c.smtp.target, SmtpTarget::Outbox("/srv/news/outbox".into()));
        assert_eq!(c.schedule.timezone, chrono_tz::Europe::London);
        assert_eq!(c.schedule.week_starts, Weekday::Mon);
        assert_eq!(c.schedule.max_lateness, Duration::from_secs(6 * 3600));
        assert_eq!(c.feeds.items, 20);
    }

    #[test]
    fn unknown_key_names_the_key_the_section_and_the_line() {
        let err =
            parse("[site]\ntitle = \"x\"\n\n[schedule]\ntimezone = \"UTC\"\ncorn = \"0 0 8 * * Mon\"\n").unwrap_err().0;
        assert!(err.starts_with("/srv/news/publish.toml:6:"), "{err}");
        assert!(err.contains("corn"), "{err}");
        assert!(err.contains("[schedule]"), "{err}");
    }

    #[test]
    fn unknown_section_is_rejected() {
        let err = parse("[sitee]\ntitle = \"x\"\n").unwrap_err().0;
        assert!(err.contains(":1:") && err.contains("sitee"), "{err}");
    }

    #[test]
    fn an_unknown_section_is_called_a_section_not_a_field_of_the_one_before() {
        let err =
            parse("[site]\ntitle = \"x\"\n\n[bounces]\ntemporary_limit = 3\n\n[feed]\nitems = 3\n").unwrap_err().0;
        assert!(err.starts_with("/srv/news/publish.toml:7: unknown section [feed] (did you mean [feeds]?)"), "{err}");
        assert!(err.contains("[site], [paths], [schedule]") && err.contains("[dkim]"), "{err}");
        assert!(!err.contains("[bounces]\n") && !err.contains("in [bounces]") && !err.contains("field"), "{err}");
        // A key outside any section is still a key.
        let err = parse("title = \"x\"\n[site]\n").unwrap_err().0;
        assert!(err.contains("keys belong in a [section]"), "{err}");
    }

    #[test]
    fn a_dmarc_mailbox_takes_the_bounce_mailboxs_keys_and_its_mistakes_are_named() {
        assert!(parse("[site]\ntitle = \"x\"\n").unwrap().dmarc.is_none());
        let d = parse("[dmarc]\nmailbox = \"mail/dmarc\"\n").unwrap().dmarc.unwrap();
        assert_eq!(d.mailbox, BounceMailbox::Maildir("/srv/news/mail/dmarc".into()));
        assert_eq!((d.processed.as_str(), d.auth, d.password_command), ("Processed", None, None));
        let d = parse("[dmarc]\nmailbox = \"imaps://dmarc@mail.example.org/Reports\"\nprocessed = \"Read\"\nca_file = \"ca.pem\"\n")
            .unwrap()
            .dmarc
            .unwrap();
        assert_eq!(d.processed, "Read");
        assert_eq!(d.ca_file, Some(PathBuf::from("/srv/news/ca.pem")));
        let err = parse("[dmarc]\nmailbox = \"pop3://x@y\"\nauth = \"xoauth2\"\nprocessed = \"a/b\"\n").unwrap_err().0;
        for key in ["[dmarc] mailbox", "[dmarc] auth", "[dmarc] processed"] {
            assert!(err.contains(key), "{key}: {err}");
        }
        let err = parse("[site]\ntitle = \"x\"\n\n[dmarc]\nmailbox = \"m\"\ntemporary_limit = 3\n").unwrap_err().0;
        assert!(err.contains(":6:") && err.contains("temporary_limit") && err.contains("[dmarc]"), "{err}");
        let err = parse("[dmarc]\nprocessed = \"Read\"\n").unwrap_err().0;
        assert!(err.contains("mailbox"), "{err}");
    }

    #[test]
    fn a_second_dkim_key_needs_its_selector_and_an_old_dkim_section_still_reads() {
        let base = "[site]\ntitle = \"x\"\n[dkim]\ndomain = \"signals.example.org\"\nselector = \"gazette\"\nprivate_key = \"dkim.pem\"\n";
        let dkim = parse(base).unwrap().dkim.unwrap();
        assert_eq!((dkim.selector.as_str(), dkim.ed25519), ("gazette", None));
        let both = parse(&format!("{base}ed25519_key = \"ed.key\"\ned25519_selector = \"gazette-ed\"\n")).unwrap();
        let (selector, key) = both.dkim.unwrap().ed25519.unwrap();
        assert_eq!(selector, "gazette-ed");
        assert_eq!(key, Path::new("/srv/news/ed.key"));
        let err = parse(&format!("{base}ed25519_key = \"ed.key\"\n")).unwrap_err().0;
        assert!(err.contains("[dkim] ed25519_key") && err.contains("add ed25519_selector"), "{err}");
    }

    #[test]
    fn every_bad_value_is_listed() {
        let err = parse(
            "[site]\nbase_url = \"signals.example.org\"\n[schedule]\ntimezone = \"Mars/Olympus\"\ncron = \"every monday\"\nweek_starts = \"caturday\"\n[email]\nfrom = \"not an address\"\n",
        )
        .unwrap_err()
        .0;
        for key in
            ["[site] base_url", "[schedule] timezone", "[schedule] cron", "[schedule] week_starts", "[email] from"]
        {
            assert!(err.contains(key), "missing {key} in:\n{err}");
        }
    }

    #[test]
    fn the_database_is_a_sqlite_file_or_a_postgres_url_without_its_password() {
        let b = Path::new("/srv/news");
        assert_eq!(parse_database("data/g.db", b).unwrap(), Database::Sqlite(PathBuf::from("/srv/news/data/g.db")));
        assert_eq!(parse_database("/var/lib/g.db", b).unwrap(), Database::Sqlite(PathBuf::from("/var/lib/g.db")));
        for url in
            ["postgres://gazette@db.example.org/news", "postgresql://gazette@db.example.org:6432/news?sslmode=require"]
        {
            assert_eq!(parse_database(url, b).unwrap().to_string(), url);
        }
        let err = |text: &str| parse_database(text, b).unwrap_err().to_string();
        assert!(err("postgres://gazette:hunter2@db.example.org/news").contains("GAZETTE_DATABASE_PASSWORD"));
        assert!(
            !err("postgres://gazette:hunter2@db.example.org/news").contains("hunter2"),
            "the password is not repeated"
        );
        assert!(err("mysql://gazette@db.example.org/news").contains("unknown scheme `mysql`"));
        assert!(err("postgres://gazette@db.example.org").contains("names no database"));
        assert!(err("postgres:///news").contains("names no host"));
        assert!(err("  ").contains("is empty"));
        // In publish.toml, the error names the key.
        let e = parse("[paths]\ndatabase = \"postgres://u:p@h/d\"\n").unwrap_err().to_string();
        assert!(e.contains("[paths] database") && e.contains("does not belong in publish.toml"), "{e}");
    }

    #[test]
    fn smtp_urls() {
        let b = Path::new("/x");
        assert_eq!(
            parse_smtp_url("smtp://mail.example.org", b).unwrap(),
            SmtpTarget::Server { host: "mail.example.org".into(), port: 587, tls: Tls::StartTls }
        );
        assert_eq!(
            parse_smtp_url("smtps://mail.example.org", b).unwrap(),
            SmtpTarget::Server { host: "mail.example.org".into(), port: 465, tls: Tls::Implicit }
        );
        assert_eq!(
            parse_smtp_url("smtp://127.0.0.1:2525?tls=none", b).unwrap(),
            SmtpTarget::Server { host: "127.0.0.1".into(), port: 2525, tls: Tls::None }
        );
        assert!(parse_smtp_url("smtp://user:pw@host", b).unwrap_err().to_string().contains("GAZETTE_SMTP_PASSWORD"));
        assert!(parse_smtp_url("http://host", b).is_err());
        assert!(parse_smtp_url("smtp://host?tls=maybe", b).is_err());
    }

    #[test]
    fn dns_nameservers_are_addresses_with_ports_and_default_to_none() {
        assert!(parse("").unwrap().dns.nameservers.is_empty());
        let c = parse("[dns]\nnameservers = [\"127.0.0.1:5353\", \"[::1]:53\"]\n").unwrap();
        let expected: Vec<std::net::SocketAddr> = vec!["127.0.0.1:5353".parse().unwrap(), "[::1]:53".parse().unwrap()];
        assert_eq!(c.dns.nameservers, expected);
        let err = parse("[dns]\nnameservers = [\"ns1.example.org\"]\n").unwrap_err().0;
        assert!(err.contains("[dns] nameservers: `ns1.example.org` is not an address and port"), "{err}");
    }

    #[test]
    fn bounce_address_and_mailbox() {
        let c = parse("").unwrap();
        assert_eq!(c.email.bounce_address, None);
        assert_eq!(c.bounces.mailbox, None);
        assert_eq!((c.bounces.temporary_limit, c.bounces.processed.as_str()), (3, "Processed"));
        let c = parse("[email]\nbounce_address = \"bounces@signals.example.org\"\n[bounces]\nmailbox = \"mail/bounces\"\ntemporary_limit = 5\n").unwrap();
        assert_eq!(c.email.bounce_address.unwrap().to_string(), "bounces@signals.example.org");
        assert_eq!(c.bounces.mailbox, Some(BounceMailbox::Maildir("/srv/news/mail/bounces".into())));
        assert_eq!(c.bounces.temporary_limit, 5);
        let b = Path::new("/x");
        assert_eq!(
            parse_bounce_mailbox("imaps://bounces%40signals.example.org@mail.example.org/Bounces/2023", b).unwrap(),
            BounceMailbox::Imap {
                host: "mail.example.org".into(),
                port: 993,
                user: "bounces@signals.example.org".into(),
                folder: "Bounces/2023".into()
            }
        );
        assert_eq!(
            parse_bounce_mailbox("imaps://u@127.0.0.1:10993", b).unwrap(),
            BounceMailbox::Imap { host: "127.0.0.1".into(), port: 10993, user: "u".into(), folder: "INBOX".into() }
        );
        assert!(parse_bounce_mailbox("imap://u@host/INBOX", b).unwrap_err().to_string().contains("imaps://"));
        assert!(
            parse_bounce_mailbox("imaps://u:pw@host/INBOX", b)
                .unwrap_err()
                .to_string()
                .contains("GAZETTE_BOUNCES_PASSWORD")
        );
        assert!(parse_bounce_mailbox("imaps://host/INBOX", b).unwrap_err().to_string().contains("names no account"));
        let err = parse(
            "[email]\nbounce_address = \"a-very-long-bounce-address-name@example.org\"\n[bounces]\nauth = \"xoauth2\"\ntemporary_limit = 0\nmailbox = \"pop3://x@y\"\n",
        )
        .unwrap_err()
        .0;
        for key in ["[email] bounce_address", "[bounces] auth", "[bounces] temporary_limit", "[bounces] mailbox"] {
            assert!(err.contains(key), "missing {key} in:\n{err}");
        }
        assert!(parse("[email]\nbounce_address = \"b+x@example.org\"\n").unwrap_err().0.contains("already has a `+`"));
    }

    #[test]
    fn reputation_limits_are_percentages_or_off_and_a_bad_one_is_named() {
        let c = parse("").unwrap();
        assert_eq!(
            c.reputation,
            Reputation { complaint_rate: Some(0.003), hard_bounce_rate: Some(0.02), refused_messages: 1 }
        );
        let c = parse("[reputation]\ncomplaint_rate = \" 0.1 % \"\nhard_bounce_rate = \"off\"\nrefused_messages = 0\n")
            .unwrap();
        assert_eq!(
            c.reputation,
            Reputation { complaint_rate: Some(0.001), hard_bounce_rate: None, refused_messages: 0 }
        );
        let err = parse("[reputation]\ncomplaint_rate = \"0.3\"\nhard_bounce_rate = \"NaN%\"\n").unwrap_err().0;
        for key in ["[reputation] complaint_rate: `0.3`", "[reputation] hard_bounce_rate: `NaN%`"] {
            assert!(err.contains(key), "{key} in {err}");
        }
        // A number where a percentage is wanted, and a mistyped key: named with their line.
        let err = parse("[reputation]\ncomplaint_rate = 0.3\n").unwrap_err().0;
        assert!(err.contains("[reputation] complaint_rate: 0.3 is a bare number") && err.contains("\"0.3%\""), "{err}");
        let err = parse("[reputation]\n\ncomplaints = \"1%\"\n").unwrap_err().0;
        assert!(err.contains("complaints") && err.contains(":3"), "{err}");
    }

    #[test]
    fn a_bad_cron_field_is_named_with_its_range() {
        let err = |cron: &str| parse(&format!("[schedule]\ncron = \"{cron}\"\n")).unwrap_err().0;
        let e = err("0 0 25 * * Mon");
        assert!(e.contains("[schedule] cron") && e.contains("the hour field is 25; hours are 0 to 23"), "{e}");
        assert!(err("0 60 8 * * Mon").contains("the minute field is 60; minutes are 0 to 59"));
        assert!(err("0 0 8 0 * *").contains("the day-of-month field is 0; days of the month are 1 to 31"));
        assert!(err("0 0 8 * 13 *").contains("the month field is 13; months are 1 to 12"));
        let e = err("0 0 8 * * Mun");
        assert!(e.contains("the day-of-week field is `Mun`") && e.contains("Sun to Sat"), "{e}");
        assert!(err("0 0 8 * * 0-8").contains("the day-of-week field is 0;"));
        assert!(err("0 */0 8 * * Mon").contains("the minute field has the step `/0`"));
        let e = err("0 8 * * 1");
        assert!(e.contains("has 5 fields") && e.contains("seconds first"), "{e}");
        // The edges of each range are valid.
        assert!(parse("[schedule]\ncron = \"59 59 23 31 12 Sat\"\n").is_ok());
        assert!(parse("[schedule]\ncron = \"0 0 0 1 1 1-7\"\n").is_ok());
    }

    #[test]
    fn week_starts_takes_the_spellings_it_always_took() {
        // The hand-written parser chrono's `Weekday: FromStr` replaced.
        fn before(s: &str) -> Option<Weekday> {
            match s.trim().to_ascii_lowercase().as_str() {
                "monday" | "mon" => Some(Weekday::Mon),
                "tuesday" | "tue" => Some(Weekday::Tue),
                "wednesday" | "wed" => Some(Weekday::Wed),
                "thursday" | "thu" => Some(Weekday::Thu),
                "friday" | "fri" => Some(Weekday::Fri),
                "saturday" | "sat" => Some(Weekday::Sat),
                "sunday" | "sun" => Some(Weekday::Sun),
                _ => None,
            }
        }
        let names = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];
        let mut inputs: Vec<String> =
            ["", " ", "mo", "mond", "tues", "thurs", "weds", "sundays", "monday,", "mon day", "m\u{f6}n"]
                .map(String::from)
                .to_vec();
        for name in names {
            for text in [name.to_string(), name[..3].to_string()] {
                // Every casing of every letter, and spaces around.
                for mask in 0..(1u32 << text.len()) {
                    let cased: String = text
                        .chars()
                        .enumerate()
                        .map(|(i, c)| if mask & (1 << i) != 0 { c.to_ascii_uppercase() } else { c })
                        .collect();
                    inputs.push(format!(" {cased}\t"));
                    inputs.push(cased);
                }
                inputs.push(format!("{text}x"));
                inputs.push(text[1..].to_string());
            }
        }
        for text in &inputs {
            assert_eq!(parse_weekday(text), before(text), "{text:?}");
        }
        let err = parse("[schedule]\nweek_starts = \"caturday\"\n").unwrap_err().0;
        assert!(
            err.ends_with("[schedule] week_starts: `caturday` is not a day of the week; use monday, ..., sunday"),
            "{err}"
        );
    }

    #[test]
    fn base_url_loses_its_trailing_slash_and_gives_a_host() {
        let c = parse("[site]\nbase_url = \"https://signals.example.org/\"\n").unwrap();
        assert_eq!(c.site.base_url, "https://signals.example.org");
        assert_eq!(c.site.host(), "signals.example.org");
    }
}
