//! Delivery: an issue's prepared email to every subscriber in its ledger, exactly once each
//! (`send_loop`), through a `transport` (the outbox folder or SMTP, one seam), and the single
//! messages outside any issue: test copies and confirmation mails.

pub mod dkim;
pub mod editions;
mod envelope;
pub mod message;
pub mod send_loop;
pub mod smtp;
pub mod transport;
pub mod welcome;

use anyhow::Context;
use lettre::message::Mailbox;

use crate::config::{Config, SmtpTarget};
use crate::issue_id::IssueId;
use crate::store::ledger;
use crate::store::{Purpose, Store, SubscriberEmail, TokenKey, bounce_token, sign_token};
pub use editions::{Edition, Editions};
pub use envelope::Envelope;
pub use message::{Built, PreparedEmail, Recipient};
pub use send_loop::{LogProgress, Progress, SendReport, send_issue};
use smtp::ServerSpec;
pub use transport::{Connection, Connector, SendError, Transport};

impl Transport {
    /// Where messages go, for people.
    pub fn describe(&self) -> String {
        Connector::describe(self)
    }

    /// The transport `[smtp]` names; the password comes from `GAZETTE_SMTP_PASSWORD`.
    pub fn from_config(config: &Config) -> anyhow::Result<Transport> {
        Ok(match &config.smtp.target {
            SmtpTarget::Outbox(dir) => Transport::Outbox(dir.clone()),
            SmtpTarget::Server { host, port, tls } => {
                let login = match &config.smtp.username {
                    Some(user) => {
                        let secret = match &config.smtp.password_command {
                            Some(command) => smtp::Secret::Command { key: "[smtp] password_command", command: command.clone() },
                            None => smtp::Secret::Variable { name: "GAZETTE_SMTP_PASSWORD", value: std::env::var("GAZETTE_SMTP_PASSWORD").map_err(|_| {
                                crate::error::ExitError::unusable(format!(
                                    "[smtp] username is `{user}` but GAZETTE_SMTP_PASSWORD is not set; export the password in that \
                                     variable, or set [smtp] password_command"
                                ))
                            })? },
                        };
                        Some(smtp::Login { user: user.clone(), secret, auth: config.smtp.auth })
                    }
                    None => None,
                };
                let ca_file = match &config.smtp.ca_file {
                    Some(path) => {
                        let pem = std::fs::read(path).map_err(|e| {
                            crate::error::ExitError::unusable(format!(
                                "[smtp] ca_file: cannot read {}: {e}",
                                path.display()
                            ))
                        })?;
                        smtp::ca_certificate(path, &pem).map_err(crate::error::ExitError::unusable)?;
                        Some((path.clone(), pem))
                    }
                    None => None,
                };
                // The system's store (SSL_CERT_FILE and SSL_CERT_DIR when set); the roots built into
                // Gazette only where the system has none.
                let builtin_roots = rustls_native_certs::load_native_certs().certs.is_empty();
                let trust = smtp::Trust { ca_file, builtin_roots };
                Transport::Smtp(ServerSpec {
                    host: host.clone(),
                    port: *port,
                    tls: tls.clone(),
                    login,
                    trust,
                    hello: config.email.from.email.domain().to_string(),
                    timeout: config.smtp.timeout,
                })
            }
        })
    }
}

/// Stops a send between messages, or the scheduler's sleep (SIGINT/SIGTERM, or a test).
#[derive(Clone, Default)]
pub struct StopFlag(tokio_util::sync::CancellationToken);

impl StopFlag {
    pub fn stop(&self) {
        self.0.cancel();
    }
    pub fn is_stopped(&self) -> bool {
        self.0.is_cancelled()
    }
    /// Completes once `stop` has been called.
    pub async fn stopped(&self) {
        self.0.cancelled().await
    }
    /// Sets the flag on the first SIGINT or SIGTERM.
    pub fn on_signals(&self) {
        let flag = self.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::warn!("stopping: finishing the messages in flight, then recording them");
            flag.stop();
        });
    }
}

fn clock() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The one-click unsubscribe URL of a subscriber.
pub fn unsubscribe_url(config: &Config, key: &TokenKey, subscriber_id: i64) -> String {
    crate::urls::unsubscribe(&config.site, &sign_token(key, subscriber_id, Purpose::Unsubscribe))
}

/// The preferences page URL of a subscriber (themes, pause, address, unsubscribe).
pub fn preferences_url(config: &Config, key: &TokenKey, subscriber_id: i64) -> String {
    crate::urls::preferences(&config.site, &sign_token(key, subscriber_id, Purpose::Preferences))
}

/// Where the failure notices of one issue's delivery go, with `[email] bounce_address` set:
/// `bounces+<token>@domain` (VERP), the token naming the issue and the subscriber, and the DSN
/// envelope id `<issue>.<subscriber>`. `None` without it: the From address, as it is.
pub fn return_path(config: &Config, key: &TokenKey, issue_id: &IssueId, subscriber_id: i64) -> Option<ReturnPath> {
    let bounce = config.email.bounce_address.as_ref()?;
    let local = format!("{}+{}", bounce.user(), bounce_token(key, subscriber_id, issue_id));
    let sender = lettre::Address::new(local, bounce.domain()).expect("a bounce token is a valid local part");
    Some(ReturnPath { sender, envid: format!("{issue_id}.{subscriber_id}") })
}

/// A delivery's own envelope sender and DSN envelope id (RFC 3461 §4.4).
#[derive(Debug, Clone, PartialEq)]
pub struct ReturnPath {
    pub sender: lettre::Address,
    pub envid: String,
}

fn mailbox(email: &str, name: Option<&str>) -> anyhow::Result<Mailbox> {
    let address: lettre::Address = email.parse().with_context(|| format!("stored address `{email}` is not valid"))?;
    Ok(Mailbox::new(name.map(str::to_owned), address))
}

/// Sends a copy to each address in `to`: `[TEST]` subject, never recorded in the ledger.
pub async fn send_test(
    store: &Store,
    config: &Config,
    email: &PreparedEmail,
    transport: &Transport,
    to: &[Mailbox],
) -> anyhow::Result<Vec<(String, Result<(), String>)>> {
    let key = store.token_key().await?;
    let mut connection = transport.open();
    let mut results = Vec::new();
    let domain = config.email.from.email.domain();
    for mailbox in to {
        // A subscriber's copy carries their real unsubscribe link; anyone else's a link that names nobody.
        let id = match SubscriberEmail::parse(mailbox.email.as_ref()) {
            Ok(email) => store.subscriber_by_email(&email).await?.map(|s| s.id).unwrap_or(0),
            Err(_) => 0,
        };
        let url = unsubscribe_url(config, &key, id);
        let preferences = preferences_url(config, &key, id);
        let message_id = format!("<test.{:016x}@{domain}>", rand::random::<u64>());
        let message = email.build(&Recipient {
            mailbox: mailbox.clone(),
            unsubscribe_url: &url,
            preferences_url: &preferences,
            message_id: &message_id,
        })?;
        match transmit(&mut connection, &message, &message_id, None, &StopFlag::default(), std::future::ready(true))
            .await
        {
            Err(e) if e.is_configuration() => return Err(crate::error::ExitError::unusable(e.to_string()).into()),
            Err(e) if e.stops_the_send() => anyhow::bail!("{e}"),
            result => results.push((mailbox.to_string(), result.map_err(|e| e.to_string()))),
        }
    }
    connection.close().await;
    Ok(results)
}

/// Sends one message outside any issue's ledger (a confirmation mail): into the outbox folder, or
/// over a connection of its own. The error is what the server answered (`is_permanent` for a refusal).
pub async fn send_single(transport: &Transport, message: &lettre::Message, message_id: &str) -> Result<(), SendError> {
    let mut connection = transport.open();
    let result = transmit(
        &mut connection,
        &Built::from(message),
        message_id,
        None,
        &StopFlag::default(),
        std::future::ready(true),
    )
    .await;
    connection.close().await;
    result
}

/// Puts one built message on its way over `connection`, from `return_path` when given (else
/// from the message's From address).
/// `gate`: see `Connection::send_gated`.
pub(crate) async fn transmit(
    connection: &mut impl Connection,
    message: &Built,
    message_id: &str,
    return_path: Option<ReturnPath>,
    stop: &StopFlag,
    gate: impl Future<Output = bool> + Send,
) -> Result<(), SendError> {
    let envelope = message.envelope();
    let (Some(from), Some(to)) = (envelope.from(), envelope.to().first()) else {
        return Err(SendError::permanent("the message has no sender or recipient"));
    };
    let envelope = match return_path {
        Some(r) => Envelope { from: r.sender, to: to.clone(), dsn_envid: Some(r.envid) },
        None => Envelope { from: from.clone(), to: to.clone(), dsn_envid: None },
    };
    connection.send_gated(&envelope, message.bytes(), message_id, stop, gate).await
}

/// What a dry run found the send would do (`dry_run`).
#[derive(Debug, Default)]
pub struct DryRun {
    /// Messages that would go out, and their bytes in all.
    pub messages: u64,
    pub bytes: u64,
    /// The first few addresses.
    pub sample: Vec<String>,
    /// How many editions of chosen themes the messages are made from (the whole issue aside).
    pub editions: usize,
    /// Readers who would be skipped, by why (paused, nothing of their themes), with how many.
    pub skipped: std::collections::BTreeMap<String, u64>,
}

/// Builds every message the send would produce at `now`, in each reader's edition, without
/// connecting: the recipients, sizes, and who would be skipped and why.
pub async fn dry_run(store: &Store, config: &Config, editions: &Editions, now: i64) -> anyhow::Result<DryRun> {
    let key = store.token_key().await?;
    let choices: Vec<crate::themes::ThemeChoice> =
        store.theme_choices().await?.into_iter().filter_map(|(c, _)| c).collect();
    editions.prepare(&choices)?;
    let mut run = DryRun { editions: editions.made(), ..DryRun::default() };
    let mut after = 0i64;
    loop {
        let page = store.ledger().active_after(after, 1000, now).await?;
        let Some(last) = page.last else { break };
        after = last;
        for (_, why) in page.skipped {
            *run.skipped.entry(why).or_default() += 1;
        }
        for reader in page.readers {
            let email = match editions.for_reader(reader.themes.as_ref())? {
                Edition::Send(email) => email,
                Edition::Nothing(_) => {
                    *run.skipped.entry("the issue has no digest of the themes they follow".into()).or_default() += 1;
                    continue;
                }
            };
            let id = reader.subscriber_id;
            let url = unsubscribe_url(config, &key, id);
            let preferences = preferences_url(config, &key, id);
            let message_id = format!("<dry-run.{id}@{}>", config.email.from.email.domain());
            let m = email.build(&Recipient {
                mailbox: mailbox(&reader.email, reader.name.as_deref())?,
                unsubscribe_url: &url,
                preferences_url: &preferences,
                message_id: &message_id,
            })?;
            run.messages += 1;
            run.bytes += m.bytes().len() as u64;
            if run.sample.len() < 10 {
                run.sample.push(reader.email);
            }
        }
    }
    Ok(run)
}

/// What a send of one issue would do now, read from the ledger without changing it. The real
/// send and its dry run both say what this says, so a dry run cannot tell another story.
#[derive(Debug, Clone, PartialEq)]
pub enum SendPlan {
    /// Not started: one message to each active subscriber.
    Start { audience: u64 },
    /// Started and unfinished: `to_send` messages are still to go (pending ones, and those a
    /// stopped run left in flight, less those its journal shows the server took).
    Resume { to_send: u64, counts: ledger::Counts },
    /// Every delivery has its outcome: nothing is sent.
    AlreadySent(ledger::Counts),
}

impl SendPlan {
    pub async fn of(store: &Store, issue_id: &IssueId) -> anyhow::Result<SendPlan> {
        let ledger = store.ledger();
        if ledger.send_record(issue_id).await?.is_none() {
            return Ok(SendPlan::Start { audience: ledger.active_count().await? });
        }
        let counts = ledger.counts(issue_id).await?;
        // A stopped run's journal (SQLite only) names messages the server took before the ledger
        // heard of them: the next run records them sent instead of sending them again.
        // Only its ids still `sending` count: the rest were folded into the ledger already.
        let recovered = match store.location() {
            crate::store::Database::Sqlite(path) => {
                let journal: std::collections::HashSet<i64> =
                    crate::store::journal::read(&crate::store::journal::path_of(path, issue_id))?.into_iter().collect();
                ledger.sending_ids(issue_id).await?.iter().filter(|id| journal.contains(id)).count() as i64
            }
            _ => 0,
        };
        let to_send = (counts.pending + counts.sending - recovered).max(0) as u64;
        Ok(if to_send == 0 { SendPlan::AlreadySent(counts) } else { SendPlan::Resume { to_send, counts } })
    }

    /// How many messages the send would put on their way.
    pub fn to_send(&self) -> u64 {
        match self {
            SendPlan::Start { audience } => *audience,
            SendPlan::Resume { to_send, .. } => *to_send,
            SendPlan::AlreadySent(_) => 0,
        }
    }
}

/// The line both the send and its dry run print for an issue whose send is over.
pub fn already_sent_line(number: u32, label: &str, c: &ledger::Counts) -> String {
    format!(
        "issue #{number} ({label}) was already sent: {} sent, {} failed, {} bounced, {} skipped; nothing to do",
        c.sent, c.failed, c.bounced, c.skipped
    )
}
