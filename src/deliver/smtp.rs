//! One SMTP connection, opened by us and driven with lettre's protocol client.
//!
//! We own the socket so that TCP_NODELAY is set: lettre 0.11.23's pooled transport does not set
//! it, and every message then waits ~40 ms for a delayed ACK (see DESIGN.md). We also drive the
//! transaction command by command, so that a refused recipient is answered with RSET and the
//! connection is kept, and so that we know at which step (RCPT or DATA) a refusal came.

use std::time::Duration;

use tokio_rustls::rustls;

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, CertificateStore, TlsParameters};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailParameter, RcptParameter};

use super::envelope::Envelope;
use crate::bounces::reason::{Stage, reason_at};
use crate::bounces::{Reason, Scope};
use crate::config::{Auth, Tls};
use crate::store::bounces::Refusal;

/// Where to connect and how.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub login: Option<Login>,
    pub trust: Trust,
    pub hello: String,
    /// The longest wait for the greeting and each reply; the end of a message gets `END_OF_DATA`
    /// times as long. RFC 5321 §4.5.3.2 suggests minutes (5 for the greeting, 10 for the end of
    /// data); a newsletter's relay that is that slow is better retried later than waited for.
    pub timeout: Duration,
}

/// Which certificates a TLS connection accepts.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// `[smtp] ca_file` and its PEM text: a private CA, trusted besides the system's store.
    pub ca_file: Option<(std::path::PathBuf, Vec<u8>)>,
    /// The system has no certificate store: use the roots built into Gazette instead.
    pub builtin_roots: bool,
}

/// Who logs in, how, and where the secret comes from.
#[derive(Debug, Clone)]
pub struct Login {
    pub user: String,
    pub secret: Secret,
    /// `None`: what the server offers of PLAIN and LOGIN.
    pub auth: Option<Auth>,
}

/// A login's secret, from where the configuration says, named in every error by the variable or
/// key it came from (`[smtp]` for sending, `[bounces]` for the bounce mailbox).
#[derive(Clone)]
pub enum Secret {
    /// An environment variable's value (`GAZETTE_SMTP_PASSWORD`, `GAZETTE_BOUNCES_PASSWORD`).
    Variable { name: &'static str, value: String },
    /// A `password_command` (`key` says whose: `[smtp] password_command`), run with `sh -c` for
    /// each login (an OAuth token expires).
    Command { key: &'static str, command: String },
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Variable { name, .. } => f.write_str(name),
            Secret::Command { command, .. } => write!(f, "password_command `{command}`"),
        }
    }
}

impl Secret {
    /// Where the secret came from, for messages.
    pub fn origin(&self) -> String {
        format!("{self:?}")
    }

    /// The secret now: the variable's value, or the command's trimmed output.
    pub async fn get(&self) -> Result<String, String> {
        match self {
            Secret::Variable { value, .. } => Ok(value.clone()),
            Secret::Command { key, command } => {
                let out = tokio::process::Command::new("sh")
                    .arg("-c")
                    .arg(command)
                    .stdin(std::process::Stdio::null())
                    .output()
                    .await
                    .map_err(|e| format!("{key} `{command}` could not be run: {e}"))?;
                if !out.status.success() {
                    return Err(format!(
                        "{key} `{command}` failed ({}): {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                }
                let secret = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if secret.is_empty() {
                    return Err(format!("{key} `{command}` printed nothing"));
                }
                Ok(secret)
            }
        }
    }
}

/// Why a connection could not be made ready.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectError {
    /// Nobody answered, or the connection broke: worth another try.
    Unreachable(String),
    /// The server answered and said no (a login refused, a certificate that is not trusted, no
    /// STARTTLS): the configuration must change; trying again changes nothing.
    Refused(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Unreachable(m) | ConnectError::Refused(m) => f.write_str(m),
        }
    }
}

/// What `connect` learned about the server, for `gazette check --smtp`.
#[derive(Debug, Clone, Default)]
pub struct ServerFacts {
    pub name: String,
    pub tls: &'static str,
    /// The mechanism of the login, if there was one.
    pub mechanism: Option<String>,
    /// The largest message it takes (RFC 1870 SIZE), if it says.
    pub size_limit: Option<u64>,
    pub pipelining: bool,
    /// It offers delivery status notifications (RFC 3461 DSN).
    pub dsn: bool,
}

/// How many `timeout`s the reply to the end of a message may take: the server checks the whole
/// message then (content filters, DKIM, queueing).
pub const END_OF_DATA: u32 = 3;

/// Why a message `transport::send_gated` held back was not sent.
pub const GATE_CLOSED: &str = "not sent: the send stopped before this message could go out";

/// What became of one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// 250 after DATA: the server has it.
    Accepted,
    /// 4xx, or the connection was lost: try again later.
    Deferred(String),
    /// A 4xx that asks the sender to slow down (a rate or connection limit; `asks_to_slow_down`):
    /// the message is fine and goes again, more slowly.
    Throttled(String),
    /// A 5xx: not again as it is. `refusal` says why, and whose problem it is (`refusal_of`).
    Refused { error: String, refusal: Refusal },
    /// Refused before it was offered, with no reply to read (no SMTPUTF8 for a non-ASCII address).
    Rejected(String),
    /// Larger than the server's declared SIZE: not offered at all.
    TooLarge(String),
}

pub struct SmtpSession {
    conn: AsyncSmtpConnection,
    broken: bool,
    timeout: Duration,
    /// What the server said about itself.
    pub facts: ServerFacts,
    /// The server offers PIPELINING (RFC 2920): MAIL, RCPT and DATA go out in one write.
    pipelining: bool,
}

/// The message as DATA content: lines starting with a dot get another (RFC 5321 §4.5.2), then the
/// terminating `.` line. One pass over the text (`memmem` finds the line starts with a dot), instead
/// of lettre's byte-by-byte codec. The text is given to lettre as a `&str`, which it copies once
/// (for any other `Display` type it would grow a `String` by doubling).
fn dot_stuffed(message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 64);
    if message.starts_with('.') {
        out.push('.');
    }
    let mut from = 0;
    for at in memchr::memmem::find_iter(message.as_bytes(), b"\n.") {
        out.push_str(&message[from..at + 2]);
        out.push('.');
        from = at + 2;
    }
    out.push_str(&message[from..]);
    out.push_str(if out.ends_with("\r\n") { ".\r\n" } else { "\r\n.\r\n" });
    out
}

/// `op`, given up after `limit`: a silent peer is a lost connection, not a reason to wait forever.
async fn within<T>(
    limit: Duration,
    op: impl Future<Output = Result<T, lettre::transport::smtp::Error>>,
) -> Result<T, Silent> {
    match tokio::time::timeout(limit, op).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Silent::Error(e)),
        Err(_) => Err(Silent::TimedOut(limit)),
    }
}

/// A reply that did not come as wanted: the server's error, or none within the deadline.
enum Silent {
    Error(lettre::transport::smtp::Error),
    TimedOut(Duration),
}

impl std::fmt::Display for Silent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Silent::Error(e) => write!(f, "{e}"),
            Silent::TimedOut(d) => write!(f, "no reply within {}", humantime::format_duration(*d)),
        }
    }
}

impl SmtpSession {
    /// Connects, says EHLO, upgrades to TLS as the spec says and authenticates. Credentials are
    /// never sent over a connection that is not encrypted unless the URL said `tls=none`.
    pub async fn connect(spec: &ServerSpec) -> Result<SmtpSession, ConnectError> {
        use ConnectError::{Refused, Unreachable};
        let hello = ClientId::Domain(spec.hello.clone());
        let whom = format!("{}:{}", spec.host, spec.port);
        let limit = spec.timeout;
        let tls_failed = |e: Silent| match e {
            Silent::Error(ref e) if let Some(refused) = certificate_refusal(e) => {
                Refused(certificate_problem(&whom, &spec.host, refused, &e.to_string()))
            }
            e => Unreachable(format!("TLS with {whom} failed: {e}")),
        };
        let mut conn = match spec.tls {
            Tls::Implicit => {
                let tls = tls_parameters(spec)?;
                // Connecting, the TLS handshake and the greeting, each within the deadline.
                let connect = AsyncSmtpConnection::connect_tokio1(
                    (spec.host.as_str(), spec.port),
                    Some(limit),
                    &hello,
                    Some(tls),
                    None,
                );
                within(limit * 3, connect).await.map_err(tls_failed)?
            }
            Tls::StartTls | Tls::None => {
                let tcp = tokio::time::timeout(limit, tokio::net::TcpStream::connect((spec.host.as_str(), spec.port)))
                    .await
                    .map_err(|_| {
                        Unreachable(format!(
                            "cannot connect to {whom}: no answer within {}",
                            humantime::format_duration(limit)
                        ))
                    })?
                    .map_err(|e| Unreachable(format!("cannot connect to {whom}: {e}")))?;
                tcp.set_nodelay(true).map_err(|e| Unreachable(format!("{whom}: {e}")))?;
                let mut conn = within(limit, AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &hello))
                    .await
                    .map_err(|e| match e {
                        Silent::TimedOut(d) => {
                            Unreachable(format!("{whom} did not greet within {}", humantime::format_duration(d)))
                        }
                        e => Unreachable(format!("{whom} did not greet: {e}")),
                    })?;
                if spec.tls == Tls::StartTls {
                    if !conn.can_starttls() {
                        return Err(Refused(format!(
                            "{whom} does not offer STARTTLS; use smtps:// for port 465, or add ?tls=none only for a server on this machine"
                        )));
                    }
                    let tls = tls_parameters(spec)?;
                    within(limit * 2, conn.starttls(tls, &hello)).await.map_err(tls_failed)?;
                }
                conn
            }
        };
        // lettre keeps only the extensions it knows; ask again to learn about PIPELINING and SIZE.
        let ehlo = within(limit, conn.command(Ehlo::new(hello.clone())))
            .await
            .map_err(|e| Unreachable(format!("{whom} refused EHLO: {e}")))?;
        let mut facts = ServerFacts {
            name: conn.server_info().name().to_string(),
            tls: match spec.tls {
                Tls::Implicit => "TLS from the first byte (smtps)",
                Tls::StartTls => "STARTTLS",
                Tls::None => "none (tls=none)",
            },
            ..ServerFacts::default()
        };
        for line in ehlo.message() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                [w] if w.eq_ignore_ascii_case("PIPELINING") => facts.pipelining = true,
                [w] if w.eq_ignore_ascii_case("DSN") => facts.dsn = true,
                [w, n] if w.eq_ignore_ascii_case("SIZE") => facts.size_limit = n.parse().ok().filter(|n| *n > 0),
                _ => {}
            }
        }
        if let Some(login) = &spec.login {
            let secret = login.secret.get().await.map_err(Refused)?;
            let creds = Credentials::new(login.user.clone(), secret);
            let mechanisms: &[Mechanism] = match login.auth {
                None => &[Mechanism::Plain, Mechanism::Login],
                Some(Auth::Plain) => &[Mechanism::Plain],
                Some(Auth::Login) => &[Mechanism::Login],
                Some(Auth::Xoauth2) => &[Mechanism::Xoauth2],
            };
            let offered = conn.server_info().get_auth_mechanism(mechanisms);
            let Some(mechanism) = offered else {
                let wanted: Vec<String> = mechanisms.iter().map(|m| m.to_string()).collect();
                return Err(Refused(format!(
                    "{whom} does not offer the login {} for `{}`; set [smtp] auth to one it offers",
                    wanted.join(" or "),
                    login.user
                )));
            };
            match within(limit * 2, conn.auth(&[mechanism], &creds)).await {
                Ok(_) => facts.mechanism = Some(mechanism.to_string()),
                Err(Silent::Error(e)) if e.is_permanent() => {
                    return Err(Refused(format!(
                        "{whom} refused the login of `{}` with {mechanism} (the secret from {}): {}",
                        login.user,
                        login.secret.origin(),
                        e.to_string().replace(['\r', '\n'], " ")
                    )));
                }
                Err(e) => {
                    return Err(Unreachable(format!("{whom}: the login of `{}` did not go through: {e}", login.user)));
                }
            }
        }
        Ok(SmtpSession { conn, broken: false, pipelining: facts.pipelining, timeout: limit, facts })
    }

    /// True when the connection can no longer be used and a new one is needed.
    pub fn is_broken(&self) -> bool {
        self.broken || self.conn.has_broken()
    }

    /// One SMTP transaction (RFC 5321 §3.3): MAIL, RCPT, DATA, the message. The envelope's DSN
    /// request goes out only to a server that offers DSN (RFC 3461 §4: a client must not send
    /// the parameters otherwise).
    pub async fn transmit(&mut self, envelope: &Envelope, message: &[u8]) -> Attempt {
        self.transmit_gated(envelope, message, std::future::ready(true)).await
    }

    /// As `transmit`, sending the message itself only once `gate` says yes: the envelope's round
    /// trip overlaps whatever the caller waits for. When `gate` says no, the transaction is
    /// abandoned with the connection (without the message's end the server delivers nothing).
    pub async fn transmit_gated(
        &mut self,
        envelope: &Envelope,
        message: &[u8],
        gate: impl Future<Output = bool>,
    ) -> Attempt {
        let (from, to) = (&envelope.from, &envelope.to);
        if let Some(limit) = self.facts.size_limit.filter(|l| message.len() as u64 > *l) {
            return Attempt::TooLarge(format!(
                "the message is {} bytes and the server takes at most {limit} (its SIZE); nothing was offered to it",
                message.len()
            ));
        }
        let mut params = Vec::new();
        if !to.to_string().is_ascii() {
            if !self.conn.server_info().supports_feature(Extension::SmtpUtfEight) {
                return Attempt::Rejected(format!(
                    "the server does not accept non-ASCII addresses (no SMTPUTF8) for {to}"
                ));
            }
            params.push(MailParameter::SmtpUtfEight);
        }
        let mut rcpt_params = Vec::new();
        if let Some(envid) = envelope.dsn_envid.as_ref().filter(|_| self.facts.dsn) {
            // lettre writes the values as xtext (RFC 3461 §4).
            let other =
                |keyword: &str, value: String| MailParameter::Other { keyword: keyword.into(), value: Some(value) };
            params.push(other("RET", "HDRS".into()));
            params.push(other("ENVID", envid.clone()));
            let notify =
                |keyword: &str, value: String| RcptParameter::Other { keyword: keyword.into(), value: Some(value) };
            rcpt_params.push(notify("NOTIFY", "FAILURE".into()));
            if to.to_string().is_ascii() {
                rcpt_params.push(notify("ORCPT", format!("rfc822;{to}")));
            }
        }
        let mail = Mail::new(Some(from.clone()), params);
        let rcpt = Rcpt::new(to.clone(), rcpt_params);
        if self.pipelining {
            // One write, then the three replies in order; every reply is read whatever the others were.
            let commands = format!("{mail}{rcpt}{Data}");
            let t = self.timeout;
            // Once one reply is missing, the others will not come either.
            let first = match within(t, self.conn.command(commands.as_str())).await {
                Err(Silent::TimedOut(d)) => return self.lost(Silent::TimedOut(d)),
                first => first,
            };
            let replies =
                [first, within(t, self.conn.read_response()).await, within(t, self.conn.read_response()).await];
            let [mail_reply, rcpt_reply, data_reply] = replies;
            let refusal = match (mail_reply, rcpt_reply) {
                (Err(e), _) => Some((e, Stage::Session)),
                (Ok(_), Err(e)) => Some((e, Stage::Recipient)),
                (Ok(_), Ok(_)) => None,
            };
            match (refusal, data_reply) {
                (None, Ok(_)) => {}
                (None, Err(e)) => return self.refused(e, Stage::Message).await,
                (Some((e, step)), data) => {
                    // A server that took DATA after all gets an empty message's end, then RSET.
                    if data.is_ok() && within(self.timeout, self.conn.command(".\r\n")).await.is_err() {
                        self.broken = true;
                    }
                    return self.refused(e, step).await;
                }
            }
        } else {
            let t = self.timeout;
            if let Err(e) = within(t, self.conn.command(mail)).await {
                return self.refused(e, Stage::Session).await;
            }
            if let Err(e) = within(t, self.conn.command(rcpt)).await {
                return self.refused(e, Stage::Recipient).await;
            }
            if let Err(e) = within(t, self.conn.command(Data)).await {
                return self.refused(e, Stage::Message).await;
            }
        }
        if !gate.await {
            self.broken = true;
            return Attempt::Deferred(GATE_CLOSED.into());
        }
        let t = self.timeout * END_OF_DATA;
        let sent = match std::str::from_utf8(message) {
            Ok(text) => within(t, self.conn.command(dot_stuffed(text).as_str())).await,
            Err(_) => within(t, self.conn.message(message)).await,
        };
        match sent {
            Ok(_) => Attempt::Accepted,
            // After the final dot the transaction is over either way: no RSET needed.
            Err(Silent::Error(e)) => classify(&e, Stage::Message, &mut self.broken),
            Err(silent) => self.lost(silent),
        }
    }

    /// A refusal before the message went out: classify it and reset the transaction.
    async fn refused(&mut self, e: Silent, step: Stage) -> Attempt {
        let e = match e {
            Silent::Error(e) => e,
            silent => return self.lost(silent),
        };
        let attempt = classify(&e, step, &mut self.broken);
        if !self.broken && within(self.timeout, self.conn.command(Rset)).await.is_err() {
            self.broken = true;
        }
        attempt
    }

    /// No reply in time: the connection is given up and the message is tried again later (its
    /// outcome is unknown; a resend carries the same Message-ID).
    fn lost(&mut self, silent: Silent) -> Attempt {
        self.broken = true;
        Attempt::Deferred(format!("connection lost: {silent}"))
    }

    pub async fn quit(mut self) {
        if !self.is_broken() {
            let _ = tokio::time::timeout(Duration::from_secs(5), self.conn.quit()).await;
        }
    }
}

/// The TLS parameters of a connection to `spec`: the system's store (or the built-in roots when
/// the system has none) and `[smtp] ca_file`. Verification is never turned off.
fn tls_parameters(spec: &ServerSpec) -> Result<TlsParameters, ConnectError> {
    let mut builder = TlsParameters::builder(spec.host.clone());
    if spec.trust.builtin_roots {
        builder = builder.certificate_store(CertificateStore::WebpkiRoots);
    }
    if let Some((path, pem)) = &spec.trust.ca_file {
        builder = builder.add_root_certificate(ca_certificate(path, pem).map_err(ConnectError::Refused)?);
    }
    builder.build_rustls().map_err(|e| ConnectError::Refused(format!("TLS setup for {}: {e}", spec.host)))
}

/// The certificate(s) of `[smtp] ca_file`, read from its PEM text. lettre's `Certificate` cannot be
/// cloned, so the text is kept and parsed for each connection (`Transport::from_config` parses it
/// once first, to refuse a bad file before anything is sent).
pub fn ca_certificate(path: &std::path::Path, pem: &[u8]) -> Result<Certificate, String> {
    Certificate::from_pem(pem)
        .map_err(|e| format!("[smtp] ca_file: {} holds no usable PEM certificate: {e}", path.display()))
}

/// The certificate refusal inside a TLS failure, if that is what it was: rustls's error, inside
/// the handshake's I/O error (tokio-rustls's, which lettre hands on in its own). The bounce
/// mailbox's IMAP connection asks the same.
pub(crate) fn certificate_refusal<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(e);
    while let Some(err) = next {
        let tls = err
            .downcast_ref::<rustls::Error>()
            .or_else(|| err.downcast_ref::<std::io::Error>()?.get_ref()?.downcast_ref::<rustls::Error>());
        if let Some(tls) = tls {
            use rustls::Error::{InvalidCertRevocationList, InvalidCertificate, NoCertificatesPresented};
            return matches!(tls, InvalidCertificate(_) | NoCertificatesPresented | InvalidCertRevocationList(_))
                .then_some(tls);
        }
        next = err.source();
    }
    None
}

/// A certificate that was not accepted, said so that the editor knows what to change.
fn certificate_problem(whom: &str, host: &str, refused: &rustls::Error, error: &str) -> String {
    use rustls::CertificateError::*;
    let what = match refused {
        rustls::Error::InvalidCertificate(UnknownIssuer) => {
            "is signed by a certificate authority this machine does not trust (unknown issuer)".to_string()
        }
        rustls::Error::InvalidCertificate(NotValidForName | NotValidForNameContext { .. }) => {
            format!("is not for the name `{host}` (name mismatch): connect by a name the certificate carries")
        }
        rustls::Error::InvalidCertificate(Expired | ExpiredContext { .. }) => "has expired".to_string(),
        rustls::Error::InvalidCertificate(NotValidYet | NotValidYetContext { .. }) => {
            "is not valid yet (check this machine's clock)".to_string()
        }
        _ => "was not accepted".to_string(),
    };
    format!(
        "the TLS certificate of {whom} {what}. If your organisation runs its own certificate authority, name its \
         certificate in [smtp] ca_file (or add it to the system's store); verification is never turned off. ({error})"
    )
}

fn classify(e: &lettre::transport::smtp::Error, step: Stage, broken: &mut bool) -> Attempt {
    let text = e.to_string().replace(['\r', '\n'], " ");
    if e.is_transient() {
        let code: Option<u16> = e.status().and_then(|c| c.to_string().parse().ok());
        // 421 means the server is closing the connection.
        if code == Some(421) {
            *broken = true;
        }
        let words = std::error::Error::source(e).map(|w| w.to_string()).unwrap_or_default();
        if asks_to_slow_down(code, &words) { Attempt::Throttled(text) } else { Attempt::Deferred(text) }
    } else if e.is_permanent() {
        // Read only here, on a refusal: an accepted message costs nothing of this.
        let words = std::error::Error::source(e).map(|w| w.to_string()).unwrap_or_default();
        let code = e.status().and_then(|c| c.to_string().parse().ok());
        Attempt::Refused { refusal: refusal_of(code, &words, step), error: text }
    } else {
        // The connection broke, timed out or answered nonsense: the outcome is unknown, try again.
        *broken = true;
        Attempt::Deferred(format!("connection lost: {text}"))
    }
}

/// Whether a temporary refusal (`code`, and the server's `words`, which open with the enhanced
/// status code) asks the sender to slow down rather than refusing this message: 421 with a 4.7.x
/// status (Gmail's and Outlook's rate limits, RFC 3463 §3.8: security or policy), or a 421, 450,
/// 451, 452 or 454 whose words say it is a rate (Amazon SES's `454 Throttling failure: Maximum
/// sending rate exceeded`, `451 4.7.500 Server busy`). A 451 4.7.1 alone is greylisting, which is
/// about the message: it is deferred as any 4xx.
pub fn asks_to_slow_down(code: Option<u16>, words: &str) -> bool {
    const RATE_WORDS: [&str; 10] = [
        "throttl",
        "rate limit",
        "rate-limit",
        "ratelimit",
        "sending rate",
        "too many messages",
        "too many connections",
        "too fast",
        "slow down",
        "server busy",
    ];
    let Some(code @ (421 | 450 | 451 | 452 | 454)) = code else { return false };
    let status = crate::bounces::reason::first_enhanced_status(words);
    if code == 421 && status.as_deref().is_some_and(|s| s.starts_with("4.7.")) {
        return true;
    }
    let words = words.to_ascii_lowercase();
    RATE_WORDS.iter().any(|w| words.contains(w))
}

/// Why a 5xx reply (`code`, and the server's `words`, which open with the enhanced status code)
/// refused a message at `step` (`Session`: MAIL FROM; `Recipient`; `Message`: DATA or its end), and
/// whose problem the send takes it to be. The reason is the classifier's (`reason_at`), and its
/// scope stands, except that only RCPT can show that an address does not work: after DATA such a
/// refusal counts as the mailbox's (temporary, so that a reader is bounced only by `[bounces]
/// temporary_limit` of them in a row), and a refusal of MAIL FROM is the sender's, whatever it
/// says, since our own address is the one refused.
fn refusal_of(code: Option<u16>, words: &str, step: Stage) -> Refusal {
    let reason = reason_at(step, None, code, words);
    match (step, reason.scope()) {
        (Stage::Session, Scope::Sender) => Refusal { reason, scope: Scope::Sender },
        (Stage::Session, _) => Refusal { reason: Reason::Rejected, scope: Scope::Sender },
        (Stage::Message | Stage::Unknown, Scope::Address) => Refusal { reason, scope: Scope::Mailbox },
        (_, scope) => Refusal { reason, scope },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lettre::Address;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    /// A scripted SMTP peer that offers PIPELINING (smtp-sink stops offering it as soon as it is
    /// told to refuse anything): RCPT to an address with `gone` gets 550 5.1.1, with `later` 450,
    /// and DATA after a refused RCPT gets 554. Returns the messages it accepted, un-stuffed.
    async fn scripted_server(listener: tokio::net::TcpListener) -> Vec<String> {
        let (socket, _) = listener.accept().await.unwrap();
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        write.write_all(b"220 scripted ESMTP\r\n").await.unwrap();
        let (mut accepted, mut rcpt_ok) = (Vec::new(), false);
        while let Some(line) = lines.next_line().await.unwrap() {
            let reply: &[u8] = match line.split(':').next().unwrap_or("").to_ascii_uppercase().as_str() {
                c if c.starts_with("EHLO") => b"250-scripted\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
                "MAIL FROM" => b"250 2.1.0 Ok\r\n",
                "RCPT TO" if line.contains("gone") => (rcpt_ok = false, b"550 5.1.1 No such user\r\n".as_slice()).1,
                "RCPT TO" if line.contains("later") => (rcpt_ok = false, b"450 4.2.0 Try later\r\n".as_slice()).1,
                "RCPT TO" => (rcpt_ok = true, b"250 2.1.5 Ok\r\n".as_slice()).1,
                "DATA" if !rcpt_ok => b"554 5.5.1 No valid recipients\r\n",
                "DATA" => {
                    write.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await.unwrap();
                    let (mut message, mut ended) = (Vec::new(), false);
                    while let Some(l) = lines.next_line().await.unwrap() {
                        if l == "." {
                            ended = true;
                            break;
                        }
                        message.push(l.strip_prefix('.').map(str::to_owned).unwrap_or(l));
                    }
                    if !ended {
                        // The client went away without the message's end: nothing is delivered.
                        break;
                    }
                    accepted.push(message.join("\n"));
                    b"250 2.0.0 Queued\r\n"
                }
                "RSET" => b"250 2.0.0 Ok\r\n",
                "QUIT" => {
                    write.write_all(b"221 2.0.0 Bye\r\n").await.unwrap();
                    break;
                }
                _ => b"500 5.5.2 What?\r\n",
            };
            write.write_all(reply).await.unwrap();
        }
        accepted
    }

    /// Plain envelope: no DSN asked for.
    fn envelope(from: &Address, to: &str) -> Envelope {
        Envelope { from: from.clone(), to: to.parse().unwrap(), dsn_envid: None }
    }

    /// A server on this machine, in clear, without a login.
    fn local(port: u16, timeout: Duration) -> ServerSpec {
        let hello = "client.example.org".into();
        ServerSpec {
            host: "127.0.0.1".into(),
            port,
            tls: Tls::None,
            login: None,
            trust: Trust::default(),
            hello,
            timeout,
        }
    }

    #[tokio::test]
    async fn a_closed_gate_sends_no_message_end_and_gives_the_connection_up() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(scripted_server(listener));
        let mut s = SmtpSession::connect(&local(port, Duration::from_secs(5))).await.unwrap();
        let from: Address = "news@example.org".parse().unwrap();
        let body = b"Subject: x\r\n\r\nbody\r\n";
        // An open gate is waited for after the envelope: the message goes out.
        let opened = std::sync::atomic::AtomicBool::new(false);
        let gate = async {
            opened.store(true, std::sync::atomic::Ordering::SeqCst);
            true
        };
        assert_eq!(s.transmit_gated(&envelope(&from, "first@example.org"), body, gate).await, Attempt::Accepted);
        assert!(opened.load(std::sync::atomic::Ordering::SeqCst));
        // A closed one: the transaction is abandoned with the connection.
        let attempt = s.transmit_gated(&envelope(&from, "second@example.org"), body, std::future::ready(false)).await;
        assert_eq!(attempt, Attempt::Deferred(super::GATE_CLOSED.into()));
        assert!(s.is_broken(), "a connection in the middle of DATA cannot be used again");
        drop(s);
        let accepted = server.await.unwrap();
        assert_eq!(accepted, vec!["Subject: x\n\nbody".to_string()], "only the first message was delivered");
    }

    #[tokio::test]
    async fn pipelined_refusals_are_classified_and_the_connection_goes_on() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(scripted_server(listener));
        let mut s = SmtpSession::connect(&local(port, Duration::from_secs(5))).await.unwrap();
        assert!(s.pipelining);
        let from: Address = "news@example.org".parse().unwrap();
        let body = b"Subject: x\r\n\r\n.leading dot\r\nend\r\n";
        assert_eq!(s.transmit(&envelope(&from, "ok@example.org"), body).await, Attempt::Accepted);
        let gone = s.transmit(&envelope(&from, "gone@example.org"), body).await;
        let user_unknown = Refusal { reason: Reason::UserUnknown, scope: Scope::Address };
        assert!(
            matches!(&gone, Attempt::Refused { error, refusal } if error.contains("5.1.1") && *refusal == user_unknown),
            "{gone:?}"
        );
        assert!(
            matches!(s.transmit(&envelope(&from, "later@example.org"), body).await, Attempt::Deferred(e) if e.contains("450"))
        );
        assert_eq!(s.transmit(&envelope(&from, "ok2@example.org"), body).await, Attempt::Accepted);
        assert!(!s.is_broken());
        s.quit().await;
        let accepted = server.await.unwrap();
        assert_eq!(accepted.len(), 2);
        assert_eq!(accepted[0], "Subject: x\n\n.leading dot\nend", "dot-stuffing is undone by the server");
    }

    #[tokio::test]
    async fn a_silent_greeting_and_a_silence_after_data_are_deadlines_not_hangs() {
        let spec = |port| local(port, Duration::from_millis(300));
        // Accepts and never greets.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        let hold = tokio::spawn(async move { silent.accept().await.map(|(s, _)| s) });
        let started = std::time::Instant::now();
        let err = SmtpSession::connect(&spec(port)).await.err().expect("no session without a greeting");
        assert!(matches!(&err, ConnectError::Unreachable(m) if m.contains("did not greet within 300ms")), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(hold);

        // Greets, answers EHLO and the envelope, then says nothing after the message.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let (read, mut write) = socket.into_split();
            let mut lines = BufReader::new(read).lines();
            write.write_all(b"220 hi\r\n").await.unwrap();
            while let Some(line) = lines.next_line().await.unwrap() {
                let reply: &[u8] = match line.to_ascii_uppercase().as_str() {
                    l if l.starts_with("EHLO") => b"250 hi\r\n",
                    l if l.starts_with("MAIL") || l.starts_with("RCPT") => b"250 ok\r\n",
                    "DATA" => b"354 go on\r\n",
                    _ => continue, // the message, and then nothing
                };
                write.write_all(reply).await.unwrap();
            }
        });
        let mut s = SmtpSession::connect(&spec(port)).await.unwrap();
        let started = std::time::Instant::now();
        let from: Address = "news@example.org".parse().unwrap();
        let attempt = s.transmit(&envelope(&from, "ok@example.org"), b"Subject: x\r\n\r\nbody\r\n").await;
        assert!(matches!(&attempt, Attempt::Deferred(e) if e.contains("no reply within 900ms")), "{attempt:?}");
        assert!(s.is_broken());
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn a_refused_certificate_is_known_by_rustls_error_not_by_the_words() {
        use std::io::{Error, ErrorKind::InvalidData};
        let unknown =
            Error::new(InvalidData, rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer));
        let found = certificate_refusal(&unknown);
        assert!(matches!(found, Some(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer))));
        let text = certificate_problem("mx:465", "mx", found.unwrap(), &unknown.to_string());
        assert!(text.contains("(unknown issuer)"), "{text}");
        // Words alone, or another TLS failure, are no certificate refusal.
        assert!(certificate_refusal(&Error::new(InvalidData, "certificate expired")).is_none());
        let alert = Error::new(InvalidData, rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure));
        assert!(certificate_refusal(&alert).is_none());
    }

    #[test]
    fn only_a_refusal_of_rcpt_can_say_that_the_address_does_not_work() {
        let unknown = "5.1.1 <x@example.org>: Recipient address rejected: User unknown";
        assert_eq!(
            refusal_of(Some(550), unknown, Stage::Recipient),
            Refusal { reason: Reason::UserUnknown, scope: Scope::Address }
        );
        // After DATA: counted as the mailbox's, so three issues in a row are needed.
        assert_ne!(refusal_of(Some(550), unknown, Stage::Message).scope, Scope::Address);
        // MAIL FROM refused: our own address is the one in question.
        assert_eq!(
            refusal_of(
                Some(553),
                "5.1.1 <bounces@signals.example.org>: Sender address rejected: User unknown",
                Stage::Session
            ),
            Refusal { reason: Reason::Rejected, scope: Scope::Sender }
        );
        // The enhanced status that opens the reply reaches the classifier.
        assert_eq!(
            refusal_of(Some(552), "5.2.2 <x@example.org>: over quota", Stage::Recipient).reason,
            Reason::MailboxFull
        );
        let spam = "5.7.1 [203.0.113.5] Our system has detected that this message is likely unsolicited mail.";
        assert_eq!(
            refusal_of(Some(550), spam, Stage::Recipient),
            Refusal { reason: Reason::SpamDetected, scope: Scope::Sender }
        );
        // Whatever the classifier reads, RCPT keeps its scope, MAIL makes it the sender's, DATA never the address's.
        for words in [
            "5.7.1 Message rejected as spam",
            "5.2.2 Mailbox full",
            "Service unavailable; client host blocked using zen.spamhaus.org",
            "5.1.2 Host unknown",
        ] {
            let reason = reason_at(Stage::Recipient, None, Some(550), words);
            assert_eq!(
                refusal_of(Some(550), words, Stage::Recipient),
                Refusal { reason, scope: reason.scope() },
                "{words}"
            );
            assert_eq!(refusal_of(Some(550), words, Stage::Session).scope, Scope::Sender, "{words}");
            assert_ne!(refusal_of(Some(550), words, Stage::Message).scope, Scope::Address, "{words}");
        }
    }

    #[test]
    fn a_slow_down_is_a_rate_limit_and_not_any_temporary_refusal() {
        for (code, words) in [
            (421, "4.7.0 Try again later, closing connection."),
            (421, "4.7.28 Our system has detected an unusual rate of unsolicited mail"),
            (454, "Throttling failure: Maximum sending rate exceeded."),
            (451, "4.7.500 Server busy. Please try again later from [192.0.2.1]."),
            (451, "4.7.1 Rate limit exceeded, slow down"),
            (421, "Too many connections from your host, try again later"),
        ] {
            assert!(asks_to_slow_down(Some(code), words), "{code} {words}");
        }
        for (code, words) in [
            (451, "4.7.1 Greylisted, please try again later"),
            (
                450,
                "4.2.1 The user you are trying to contact is receiving mail at a rate that prevents additional messages",
            ),
            (452, "4.2.2 Mailbox full"),
            (421, "4.4.2 Timeout, closing connection"),
            (550, "5.7.1 throttled forever"),
        ] {
            assert!(!asks_to_slow_down(Some(code), words), "{code} {words}");
        }
        assert!(!asks_to_slow_down(None, "throttled"));
    }

    #[test]
    fn lines_starting_with_a_dot_are_stuffed_and_the_end_is_marked() {
        assert_eq!(dot_stuffed(".a\r\nb\r\n.c\r\n..d\r\n"), "..a\r\nb\r\n..c\r\n...d\r\n.\r\n");
        assert_eq!(dot_stuffed("no final break"), "no final break\r\n.\r\n");
        assert_eq!(dot_stuffed("a.b\r\n"), "a.b\r\n.\r\n");
        // Lines of a lone dot one after another: each is found, none is stuffed twice.
        assert_eq!(dot_stuffed("x\r\n.\r\n.\r\n..\r\n"), "x\r\n..\r\n..\r\n...\r\n.\r\n");
    }
}
