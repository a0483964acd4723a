//! `[bounces] mailbox`, read by the scheduler every round and after each send: a maildir on this
//! machine or an IMAP mailbox (`imaps://`). Each message is processed, then moved into the
//! `[bounces] processed` folder, so that nothing is read twice and nothing is deleted. A message
//! that cannot be read or classified (`unreadable`) is moved into the `Unreadable` folder instead,
//! so that it stops neither this round nor the next. A message whose recording fails (the store
//! is unreachable) stays where it was, and is read again next time (recording it twice records
//! it once). `[dmarc] mailbox`, for DMARC aggregate reports, is read the same way with its own
//! keys; a report is recognised in either (`process_message`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::TryStreamExt;
use tokio_rustls::rustls;

use super::unreadable;
use super::{Kind, Outcome, Processed, process_message};
use crate::config::{Auth, BounceMailbox, Config};
use crate::deliver::smtp::{Secret, certificate_refusal};
use crate::error::ExitError;
use crate::store::Store;

/// A logged-in IMAP session over TLS.
type ImapSession = async_imap::Session<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// The variable holding the mailbox's password (without `[bounces] password_command`).
pub const PASSWORD_VAR: &str = "GAZETTE_BOUNCES_PASSWORD";

/// The longest wait for the IMAP server's greeting and each reply.
const IMAP_TIMEOUT: Duration = Duration::from_secs(60);

/// What one reading of the mailbox found.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Polled {
    pub read: usize,
    pub bounces: usize,
    pub complaints: usize,
    pub ignored: usize,
    /// Reports attributed to no known subscriber.
    pub unattributed: usize,
    /// Messages that could not be read or classified, moved into the `Unreadable` folder.
    pub unreadable: usize,
    /// DMARC aggregate reports read (kept, or read before).
    pub dmarc_reports: usize,
}

impl Polled {
    /// Counts one processed message.
    pub fn add_processed(&mut self, p: &Processed) {
        self.read += 1;
        match p.report.kind {
            Kind::Bounce => self.bounces += 1,
            Kind::Complaint => self.complaints += 1,
            Kind::Ignored => self.ignored += 1,
        }
        if p.report.kind != Kind::Ignored && p.targets.is_empty() {
            self.unattributed += 1;
        }
    }

    /// Counts one DMARC aggregate report.
    pub fn add_aggregate(&mut self) {
        self.read += 1;
        self.dmarc_reports += 1;
    }

    /// Counts one message set aside as unreadable.
    pub fn add_unreadable(&mut self) {
        self.read += 1;
        self.unreadable += 1;
    }
}

impl std::fmt::Display for Polled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} read: {} bounces, {} complaints, {} ignored, {} about no known subscriber, {} unreadable, {} DMARC reports",
            self.read,
            self.bounces,
            self.complaints,
            self.ignored,
            self.unattributed,
            self.unreadable,
            self.dmarc_reports
        )
    }
}

/// The variable holding the password of `[dmarc] mailbox` (without `[dmarc] password_command`).
pub const DMARC_PASSWORD_VAR: &str = "GAZETTE_DMARC_PASSWORD";

/// A mailbox to read and how: the keys of `[bounces]` or of `[dmarc]`.
struct Access<'a> {
    /// What it is, for messages: `bounce mailbox`.
    name: &'static str,
    /// The section its keys are in: `[bounces]`.
    section: &'static str,
    mailbox: &'a BounceMailbox,
    password_command: Option<&'a String>,
    /// `[bounces] password_command`, for messages.
    password_key: &'static str,
    password_var: &'static str,
    auth: Option<Auth>,
    ca_file: Option<&'a std::path::PathBuf>,
    processed: &'a str,
}

/// Reads `[bounces] mailbox`, if there is one. Each message's outcome is logged.
pub async fn poll(config: &Config, store: &Store) -> anyhow::Result<Option<Polled>> {
    let b = &config.bounces;
    let Some(mailbox) = &b.mailbox else { return Ok(None) };
    let access = Access {
        name: "bounce mailbox",
        section: "[bounces]",
        mailbox,
        password_command: b.password_command.as_ref(),
        password_key: "[bounces] password_command",
        password_var: PASSWORD_VAR,
        auth: b.auth,
        ca_file: b.ca_file.as_ref(),
        processed: &b.processed,
    };
    Ok(Some(poll_mailbox(config, store, &access).await?))
}

/// Reads `[dmarc] mailbox`, if there is one: a mailbox of its own for the DMARC record's `rua=`
/// address, read as the bounce mailbox is (a failure notice that lands there is read too).
pub async fn poll_dmarc(config: &Config, store: &Store) -> anyhow::Result<Option<Polled>> {
    let Some(d) = &config.dmarc else { return Ok(None) };
    let access = Access {
        name: "DMARC mailbox",
        section: "[dmarc]",
        mailbox: &d.mailbox,
        password_command: d.password_command.as_ref(),
        password_key: "[dmarc] password_command",
        password_var: DMARC_PASSWORD_VAR,
        auth: d.auth,
        ca_file: d.ca_file.as_ref(),
        processed: &d.processed,
    };
    Ok(Some(poll_mailbox(config, store, &access).await?))
}

async fn poll_mailbox(config: &Config, store: &Store, access: &Access<'_>) -> anyhow::Result<Polled> {
    let mailbox = access.mailbox;
    match mailbox {
        BounceMailbox::Maildir(dir) => poll_maildir(config, store, access, dir).await,
        BounceMailbox::Imap { host, port, user, folder } => {
            poll_imap(config, store, access, host, *port, user, folder).await
        }
    }
    .with_context(|| format!("reading the {} {mailbox} ({} mailbox)", access.name, access.section))
}

/// One message read whole: processed (`Ok`), or why it is set aside.
type Read = Result<Outcome, (unreadable::Unreadable, Option<Vec<u8>>)>;

/// Counts and logs `read`, recording a message set aside; `true` when it goes to the processed
/// folder, `false` for `Unreadable`.
async fn tally(store: &Store, source: &str, read: Read, polled: &mut Polled) -> anyhow::Result<bool> {
    match read {
        Ok(Outcome::Notice(processed)) => {
            log(source, &processed);
            polled.add_processed(&processed);
            Ok(true)
        }
        Ok(Outcome::Aggregate(report, recorded)) => {
            tracing::info!("{source}: {}", super::describe_aggregate(&report, recorded));
            polled.add_aggregate();
            Ok(true)
        }
        Err((why, bytes)) => {
            unreadable::record(store, source, &why, bytes.as_deref()).await?;
            polled.add_unreadable();
            Ok(false)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Maildir
// ---------------------------------------------------------------------------------------------

/// A maildir's `new/` and `cur/`, each message moved into the Maildir++ sub-folder
/// `.<processed>/cur/` once recorded (the layout Dovecot and Courier use for a folder of that name),
/// or into `.Unreadable/cur/` when it cannot be read.
async fn poll_maildir(config: &Config, store: &Store, access: &Access<'_>, dir: &Path) -> anyhow::Result<Polled> {
    if !super::source::is_maildir(dir) {
        anyhow::bail!("{} is not a maildir (a folder with cur/, new/ and tmp/ in it)", dir.display());
    }
    let key = store.token_key().await?;
    let done = maildir_folder(dir, access.processed)?;
    let mut polled = Polled::default();
    for sub in ["new", "cur"] {
        for file in super::source::files_in(&dir.join(sub))? {
            let source = file.display().to_string();
            let outcome = match unreadable::read_file(&file) {
                // Another reader moved it meanwhile.
                Ok(None) => continue,
                Ok(Some(bytes)) => match process_message(store, &key, config, &bytes, &source, false).await? {
                    Ok(outcome) => Ok(outcome),
                    Err(why) => Err((why, Some(bytes))),
                },
                Err(why) => Err((why, None)),
            };
            let folder = if tally(store, &source, outcome, &mut polled).await? {
                done.clone()
            } else {
                maildir_folder(dir, unreadable::FOLDER)?
            };
            let name = file.file_name().expect("a file has a name").to_string_lossy().into_owned();
            // A message taken from new/ is now seen (maildir's info suffix, ":2," and flags).
            let name = if name.contains(":2,") { name } else { format!("{name}:2,S") };
            let target = folder.join("cur").join(&name);
            std::fs::rename(&file, &target)
                .with_context(|| format!("cannot move {} to {}", file.display(), target.display()))?;
        }
    }
    Ok(polled)
}

/// The Maildir++ sub-folder `.<name>` of `dir`, made when missing.
fn maildir_folder(dir: &Path, name: &str) -> anyhow::Result<std::path::PathBuf> {
    let folder = dir.join(format!(".{name}"));
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(folder.join(sub))
            .with_context(|| format!("cannot create {}", folder.join(sub).display()))?;
    }
    Ok(folder)
}

fn log(source: &str, processed: &Processed) {
    let line = super::describe(processed);
    if processed.report.kind == Kind::Ignored {
        tracing::debug!("{source}: {line}");
    } else {
        tracing::info!("{source}: {line}");
    }
}

// ---------------------------------------------------------------------------------------------
// IMAP
// ---------------------------------------------------------------------------------------------

/// XOAUTH2's initial response (the SASL mechanism Google and Microsoft document).
struct XOAuth2 {
    user: String,
    token: String,
}

impl async_imap::Authenticator for &XOAuth2 {
    type Response = String;
    fn process(&mut self, _challenge: &[u8]) -> String {
        format!("user={}\x01auth=Bearer {}\x01\x01", self.user, self.token)
    }
}

/// The folder on the server, its messages fetched, processed and moved one by one (UID MOVE,
/// RFC 6851; or COPY, then flag and expunge only that UID where MOVE is not offered), into
/// `[bounces] processed` or, when one cannot be read, `Unreadable`.
async fn poll_imap(
    config: &Config,
    store: &Store,
    access: &Access<'_>,
    host: &str,
    port: u16,
    user: &str,
    folder: &str,
) -> anyhow::Result<Polled> {
    let whom = format!("imaps://{user}@{host}:{port}");
    let mut session = log_in(access, host, port, user, &whom).await?;
    within(session.select(folder), &whom, "open the folder")
        .await?
        .with_context(|| format!("{whom}: cannot open the folder `{folder}`"))?;
    let processed_folder = access.processed;
    // CREATE fails when it exists already, which is the usual case.
    let _ = within(session.create(processed_folder), &whom, "create a folder").await?;
    let can_move = within(session.capabilities(), &whom, "list its capabilities").await??.has_str("MOVE");
    let mut uids: Vec<u32> = within(session.uid_search("ALL"), &whom, "search").await??.into_iter().collect();
    uids.sort_unstable();
    let key = store.token_key().await?;
    let mut polled = Polled::default();
    let mut made_unreadable = false;
    for uid in uids {
        let source = format!("{whom}/{folder};UID={uid}");
        // Its size first, so that a message over the limit is never downloaded.
        let sized: Vec<_> = within(
            async { session.uid_fetch(uid.to_string(), "RFC822.SIZE").await?.try_collect::<Vec<_>>().await },
            &whom,
            "give a message's size",
        )
        .await?
        .with_context(|| format!("{whom}: cannot fetch the size of message UID {uid}"))?;
        if sized.is_empty() {
            // Another reader moved it meanwhile.
            continue;
        }
        let outcome = match unreadable::check_size(sized.iter().find_map(|f| f.size).map_or(0, u64::from)) {
            Err(why) => Err((why, None)),
            Ok(()) => {
                let fetched: Vec<_> = within(
                    async { session.uid_fetch(uid.to_string(), "BODY.PEEK[]").await?.try_collect::<Vec<_>>().await },
                    &whom,
                    "send a message",
                )
                .await?
                .with_context(|| format!("{whom}: cannot fetch message UID {uid}"))?;
                if fetched.is_empty() {
                    continue;
                }
                // A message with no body at all is an empty one, not one to fetch again next time.
                let bytes = fetched.iter().find_map(|f| f.body()).map(<[u8]>::to_vec).unwrap_or_default();
                match process_message(store, &key, config, &bytes, &source, false).await? {
                    Ok(outcome) => Ok(outcome),
                    Err(why) => Err((why, Some(bytes))),
                }
            }
        };
        let target = if tally(store, &source, outcome, &mut polled).await? {
            processed_folder
        } else {
            if !made_unreadable {
                // As for the processed folder: CREATE fails when it exists already.
                let _ = within(session.create(unreadable::FOLDER), &whom, "create a folder").await?;
                made_unreadable = true;
            }
            unreadable::FOLDER
        };
        file_away(&mut session, uid, target, can_move, &whom).await?;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), session.logout()).await;
    Ok(polled)
}

/// Connects over TLS, waits for the greeting and logs in as `[bounces]` (or `[dmarc]`) says.
async fn log_in(access: &Access<'_>, host: &str, port: u16, user: &str, whom: &str) -> anyhow::Result<ImapSession> {
    let (section, var) = (access.section, access.password_var);
    let secret = match access.password_command {
        Some(command) => Secret::Command {
            key: access.password_key,
            command: command.clone(),
        },
        None => Secret::Variable { name: var, value: std::env::var(var).map_err(|_| {
            ExitError::unusable(format!(
                "{section} mailbox logs in as `{user}` but {var} is not set; export the password in that variable, or set {section} password_command"
            ))
        })? },
    };
    let stream = connect_tls(access, host, port).await?;
    let mut client = async_imap::Client::new(stream);
    within(client.read_response(), whom, "greet")
        .await?
        .with_context(|| format!("{whom} did not greet"))?
        .ok_or_else(|| anyhow::anyhow!("{whom} closed the connection without a greeting"))?;
    let secret = secret.get().await.map_err(anyhow::Error::msg)?;
    let login = match access.auth {
        Some(Auth::Xoauth2) => {
            within(client.authenticate("XOAUTH2", &XOAuth2 { user: user.to_string(), token: secret }), whom, "log in")
                .await?
        }
        _ => within(client.login(user, &secret), whom, "log in").await?,
    };
    login
        .map_err(|(e, _)| {
            ExitError::unusable(format!(
                "{whom} refused the login of `{user}`: {e}; check the password (or token) and {section} auth"
            ))
        })
        .map_err(Into::into)
}

/// Moves message `uid` to `target`; without MOVE (RFC 6851), copies it, flags it deleted and
/// expunges it.
async fn file_away(
    session: &mut ImapSession,
    uid: u32,
    target: &str,
    can_move: bool,
    whom: &str,
) -> anyhow::Result<()> {
    if can_move {
        within(session.uid_mv(uid.to_string(), target), whom, "move a message").await??;
    } else {
        within(session.uid_copy(uid.to_string(), target), whom, "copy a message").await??;
        within(
            async {
                session.uid_store(uid.to_string(), "+FLAGS.SILENT (\\Deleted)").await?.try_collect::<Vec<_>>().await
            },
            whom,
            "flag a message",
        )
        .await??;
        within(async { session.uid_expunge(uid.to_string()).await?.try_collect::<Vec<_>>().await }, whom, "expunge")
            .await??;
    }
    Ok(())
}

/// `op`, given up after `IMAP_TIMEOUT`: a server that stops answering is an error, not a hang.
async fn within<T>(op: impl Future<Output = T>, whom: &str, doing: &str) -> anyhow::Result<T> {
    tokio::time::timeout(IMAP_TIMEOUT, op).await.map_err(|_| {
        anyhow::anyhow!(
            "{whom} did not answer within {} (waiting to {doing})",
            humantime::format_duration(IMAP_TIMEOUT)
        )
    })
}

/// TLS from the first byte, verified against the system's store (the roots built into Gazette
/// where it has none) and `[bounces] ca_file` (or `[dmarc]`'s).
async fn connect_tls(
    access: &Access<'_>,
    host: &str,
    port: u16,
) -> anyhow::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let whom = format!("{host}:{port}");
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs().certs;
    if native.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    } else {
        roots.add_parsable_certificates(native);
    }
    let section = access.section;
    if let Some(path) = access.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| ExitError::unusable(format!("{section} ca_file: cannot read {}: {e}", path.display())))?;
        let certs: Vec<CertificateDer> =
            CertificateDer::pem_slice_iter(&pem).collect::<Result<_, _>>().unwrap_or_default();
        if certs.is_empty() {
            return Err(
                ExitError::unusable(format!("{section} ca_file: {} holds no PEM certificate", path.display())).into()
            );
        }
        roots.add_parsable_certificates(certs);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS setup")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| ExitError::unusable(format!("{section} mailbox: `{host}` is not a host name: {e}")))?;
    let tcp = tokio::time::timeout(IMAP_TIMEOUT, tokio::net::TcpStream::connect((host, port)))
        .await
        .map_err(|_| {
            anyhow::anyhow!("cannot connect to {whom}: no answer within {}", humantime::format_duration(IMAP_TIMEOUT))
        })?
        .with_context(|| format!("cannot connect to {whom}"))?;
    let stream = tokio::time::timeout(IMAP_TIMEOUT, tokio_rustls::TlsConnector::from(Arc::new(tls)).connect(name, tcp))
        .await
        .map_err(|_| {
            anyhow::anyhow!("TLS with {whom}: no answer within {}", humantime::format_duration(IMAP_TIMEOUT))
        })?;
    stream.map_err(|e| {
        let text = e.to_string();
        // rustls's refusal of the certificate, inside the handshake's I/O error.
        if certificate_refusal(&e).is_some() {
            ExitError::unusable(format!(
                "the TLS certificate of {whom} was not accepted ({text}); if your organisation runs its own certificate authority, \
                 name its certificate in {section} ca_file; verification is never turned off"
            ))
            .into()
        } else {
            anyhow::anyhow!("TLS with {whom} failed: {text}")
        }
    })
}
