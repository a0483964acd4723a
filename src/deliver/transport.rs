//! The one seam between the send loop and where messages go: a `Connector` opens connections,
//! each worker owns one and hands it whole messages. The outbox folder and SMTP sit behind it,
//! and so does the tests' in-memory transport. Refusals come back as a `SendError` that answers
//! the only questions the loop asks: try again later, or never.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::StopFlag;
use super::envelope::Envelope;
use super::smtp::{Attempt, ConnectError, GATE_CLOSED, ServerSpec, SmtpSession, asks_to_slow_down};
use crate::bounces::Scope;
use crate::bounces::reason::first_reply_code;
use crate::store::bounces::Refusal;

/// Why a message was not taken.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    kind: ErrorKind,
    message: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ErrorKind {
    /// 4xx, a lost connection or a missed deadline: try again later.
    Transient,
    /// A 4xx that asks the sender to slow down: the message goes again in this send, more slowly.
    Throttled,
    /// Not as it is, ever, and no server's reply says why (a message that cannot be built).
    Permanent,
    /// A server's 5xx: permanent, and what it does to the reader depends on whose problem it is
    /// (`Refusal`): an address that does not work is not mailed again.
    Refused(Refusal),
    /// The server cannot be reached at all: the send stops instead of failing every delivery.
    Unreachable,
    /// The server refuses the configuration (the login, the certificate): the send stops, and
    /// the fix is in publish.toml or the secret.
    Configuration,
    /// Larger than the server takes: the send stops before any delivery is marked.
    TooLarge,
}

impl SendError {
    pub fn transient(message: impl Into<String>) -> SendError {
        SendError { kind: ErrorKind::Transient, message: message.into() }
    }
    pub fn throttled(message: impl Into<String>) -> SendError {
        SendError { kind: ErrorKind::Throttled, message: message.into() }
    }
    pub fn permanent(message: impl Into<String>) -> SendError {
        SendError { kind: ErrorKind::Permanent, message: message.into() }
    }
    pub fn refused(message: impl Into<String>, refusal: Refusal) -> SendError {
        SendError { kind: ErrorKind::Refused(refusal), message: message.into() }
    }
    pub fn unreachable(message: impl Into<String>) -> SendError {
        SendError { kind: ErrorKind::Unreachable, message: message.into() }
    }
    pub fn configuration(message: impl Into<String>) -> SendError {
        SendError { kind: ErrorKind::Configuration, message: message.into() }
    }
    pub fn too_large(message: impl Into<String>) -> SendError {
        SendError { kind: ErrorKind::TooLarge, message: message.into() }
    }
    /// Worth trying again later (a 4xx, a lost connection, a missed deadline).
    pub fn is_transient(&self) -> bool {
        matches!(self.kind, ErrorKind::Transient | ErrorKind::Throttled)
    }
    /// The server asks the sender to slow down (a rate limit), not refusing this message.
    pub fn is_throttled(&self) -> bool {
        self.kind == ErrorKind::Throttled
    }
    /// Not worth trying again as it is (a 5xx).
    pub fn is_permanent(&self) -> bool {
        matches!(self.kind, ErrorKind::Permanent | ErrorKind::Refused(_))
    }
    /// A server's 5xx: why, and whose problem it is.
    pub fn refusal(&self) -> Option<Refusal> {
        match self.kind {
            ErrorKind::Refused(r) => Some(r),
            _ => None,
        }
    }
    /// The recipient's address does not work: a bounce.
    pub fn is_bounce(&self) -> bool {
        self.refusal().is_some_and(|r| r.scope == Scope::Address)
    }
    /// Nothing can be sent through this transport now.
    pub fn is_unreachable(&self) -> bool {
        self.kind == ErrorKind::Unreachable
    }
    /// The configuration (login, certificate) is refused: a person must change it.
    pub fn is_configuration(&self) -> bool {
        self.kind == ErrorKind::Configuration
    }
    /// The send cannot go on through this transport: stop, and leave every delivery pending.
    pub fn stops_the_send(&self) -> bool {
        matches!(self.kind, ErrorKind::Unreachable | ErrorKind::Configuration | ErrorKind::TooLarge)
    }
}

/// Opens connections; cheap to clone, one connection per worker.
pub trait Connector: Clone + Send + Sync + 'static {
    type Connection: Connection;
    /// A connection that connects when it first has something to send.
    fn open(&self) -> Self::Connection;
    /// Where messages go, for people: `smtp://host:587`, `the outbox folder outbox`.
    fn describe(&self) -> String;
}

/// A connection of one worker: messages one after another.
pub trait Connection: Send + 'static {
    /// Puts one message on its way: `Ok` once the other side has taken it.
    fn send(
        &mut self,
        envelope: &Envelope,
        message: &[u8],
        message_id: &str,
        stop: &StopFlag,
    ) -> impl Future<Output = Result<(), SendError>> + Send;
    /// As `send`, going only as far as it can without delivering the message until `gate` says
    /// yes: an SMTP connection offers the envelope and waits to send the message's end; anything
    /// else waits before it starts. When `gate` says no, nothing is delivered (an SMTP
    /// transaction is abandoned with its connection) and the error is transient.
    fn send_gated<G: Future<Output = bool> + Send>(
        &mut self,
        envelope: &Envelope,
        message: &[u8],
        message_id: &str,
        stop: &StopFlag,
        gate: G,
    ) -> impl Future<Output = Result<(), SendError>> + Send {
        async move {
            through(gate).await?;
            self.send(envelope, message, message_id, stop).await
        }
    }
    /// Says goodbye (SMTP QUIT), within a short deadline.
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// Waits for a `send_gated` gate: an error (`GATE_CLOSED`) when it says no.
async fn through(gate: impl Future<Output = bool>) -> Result<(), SendError> {
    if gate.await { Ok(()) } else { Err(SendError::transient(GATE_CLOSED)) }
}

/// Where messages go, as configured.
#[derive(Debug, Clone)]
pub enum Transport {
    /// Each message as a `.eml` file in this folder.
    Outbox(PathBuf),
    Smtp(ServerSpec),
}

impl Connector for Transport {
    type Connection = TransportConnection;

    fn open(&self) -> TransportConnection {
        match self {
            Transport::Outbox(dir) => TransportConnection::Outbox(dir.clone()),
            Transport::Smtp(spec) => TransportConnection::Smtp { spec: spec.clone(), session: None },
        }
    }

    fn describe(&self) -> String {
        match self {
            Transport::Outbox(dir) => format!("the outbox folder {}", dir.display()),
            Transport::Smtp(s) => format!("smtp://{}:{}", s.host, s.port),
        }
    }
}

// One a worker: their size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum TransportConnection {
    Outbox(PathBuf),
    /// Connected on first use, and again after the connection broke.
    Smtp {
        spec: ServerSpec,
        session: Option<SmtpSession>,
    },
}

impl Connection for TransportConnection {
    async fn send(
        &mut self,
        envelope: &Envelope,
        message: &[u8],
        message_id: &str,
        stop: &StopFlag,
    ) -> Result<(), SendError> {
        self.send_gated(envelope, message, message_id, stop, std::future::ready(true)).await
    }

    async fn send_gated<G: Future<Output = bool> + Send>(
        &mut self,
        envelope: &Envelope,
        message: &[u8],
        message_id: &str,
        stop: &StopFlag,
        gate: G,
    ) -> Result<(), SendError> {
        match self {
            TransportConnection::Outbox(dir) => {
                through(gate).await?;
                write_eml(dir, message_id, message)
            }
            TransportConnection::Smtp { spec, session } => {
                if session.as_ref().is_none_or(|s| s.is_broken()) {
                    *session = Some(connect_with_retries(spec, stop).await?);
                }
                let s = session.as_mut().expect("connected above");
                match s.transmit_gated(envelope, message, gate).await {
                    Attempt::Accepted => Ok(()),
                    Attempt::Deferred(e) => Err(SendError::transient(e)),
                    Attempt::Throttled(e) => Err(SendError::throttled(e)),
                    Attempt::Refused { error, refusal } => Err(SendError::refused(error, refusal)),
                    Attempt::Rejected(e) => Err(SendError::permanent(e)),
                    Attempt::TooLarge(e) => Err(SendError::too_large(e)),
                }
            }
        }
    }

    async fn close(self) {
        if let TransportConnection::Smtp { session: Some(s), .. } = self {
            s.quit().await;
        }
    }
}

/// Three tries a second or two apart, so that a server restarting is waited for; then the
/// server is unreachable and the send stops.
async fn connect_with_retries(spec: &ServerSpec, stop: &StopFlag) -> Result<SmtpSession, SendError> {
    let mut last = String::new();
    for (i, wait) in [0u64, 1, 2].into_iter().enumerate() {
        if stop.is_stopped() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(wait)).await;
        match SmtpSession::connect(spec).await {
            Ok(s) => return Ok(s),
            // Trying again would be refused again.
            Err(ConnectError::Refused(e)) => return Err(SendError::configuration(e)),
            // Turned away at the greeting or EHLO for going too fast (Gmail's `421 4.7.0 Try again
            // later`): the send slows down and this connection tries again, as for a message.
            Err(ConnectError::Unreachable(e)) if asks_to_slow_down(first_reply_code(&e), &e) => {
                return Err(SendError::throttled(e));
            }
            Err(ConnectError::Unreachable(e)) => {
                tracing::warn!("connection attempt {} failed: {e}", i + 1);
                last = e;
            }
        }
    }
    Err(SendError::unreachable(format!("cannot reach the SMTP server: {last}")))
}

/// Writes a message into the outbox folder, named after its Message-ID, so a resend replaces it.
fn write_eml(dir: &Path, message_id: &str, bytes: &[u8]) -> Result<(), SendError> {
    let name: String = message_id
        .trim_matches(['<', '>'])
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@') { c } else { '_' })
        .collect();
    let path = dir.join(format!("{name}.eml"));
    // This process's own temporary name: senders sharing the outbox never move each other's files.
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::write(&tmp, bytes))
        .and_then(|_| std::fs::rename(&tmp, &path));
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        SendError::transient(format!("cannot write {}: {e}", path.display()))
    })
}

/// A transport in memory, for tests of the send loop: records what it takes, and answers
/// recipients by rule.
#[cfg(test)]
pub mod memory {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A message taken: its recipient and its bytes.
    pub type Message = (String, Vec<u8>);

    /// What a recipient gets: by a word in its address.
    #[derive(Clone, Default)]
    pub struct Memory {
        pub taken: Arc<Mutex<Vec<(String, String)>>>,
        /// The envelope of every message taken, in order.
        pub envelopes: Arc<Mutex<Vec<Envelope>>>,
        /// Addresses that got a temporary refusal, each time.
        pub deferred: Arc<Mutex<Vec<String>>>,
        /// The bytes of every message taken, by recipient, in order.
        pub messages: Arc<Mutex<Vec<Message>>>,
    }

    impl Memory {
        pub fn recipients(&self) -> Vec<String> {
            let mut r: Vec<String> = self.taken.lock().unwrap().iter().map(|(to, _)| to.clone()).collect();
            r.sort();
            r
        }
    }

    impl Connector for Memory {
        type Connection = Memory;
        fn open(&self) -> Memory {
            self.clone()
        }
        fn describe(&self) -> String {
            "memory".into()
        }
    }

    impl Connection for Memory {
        /// `gone` in the address: 550 5.1.1 (the address); `full`: 552 5.2.2 (the mailbox); `spam`:
        /// 554 5.7.1 (the sender); `later`: 450 the first time it is tried; `slow`: 421 4.7.0 (slow
        /// down) the first time; `hang`: no answer at all.
        async fn send(
            &mut self,
            envelope: &Envelope,
            message: &[u8],
            message_id: &str,
            _stop: &StopFlag,
        ) -> Result<(), SendError> {
            let to = envelope.to.to_string();
            if to.contains("hang") {
                std::future::pending::<()>().await;
            }
            use crate::bounces::Reason;
            if to.contains("gone") {
                return Err(SendError::refused(
                    "550 5.1.1 no such user",
                    Refusal { reason: Reason::UserUnknown, scope: Scope::Address },
                ));
            }
            if to.contains("full") {
                return Err(SendError::refused(
                    "552 5.2.2 mailbox full",
                    Refusal { reason: Reason::MailboxFull, scope: Scope::Mailbox },
                ));
            }
            if to.contains("spam") {
                return Err(SendError::refused(
                    "554 5.7.1 rejected as spam",
                    Refusal { reason: Reason::SpamDetected, scope: Scope::Sender },
                ));
            }
            if to.contains("slow") {
                let mut deferred = self.deferred.lock().unwrap();
                if !deferred.contains(&to) {
                    deferred.push(to);
                    return Err(SendError::throttled("421 4.7.0 slow down"));
                }
            }
            if to.contains("later") {
                let mut deferred = self.deferred.lock().unwrap();
                if !deferred.contains(&to) {
                    deferred.push(to);
                    return Err(SendError::transient("450 4.2.0 try later"));
                }
            }
            self.messages.lock().unwrap().push((to.clone(), message.to_vec()));
            self.taken.lock().unwrap().push((to, message_id.to_string()));
            self.envelopes.lock().unwrap().push(envelope.clone());
            Ok(())
        }

        async fn close(self) {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_greeting_that_says_slow_down_is_a_throttle_not_an_unreachable_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            while let Ok((mut socket, _)) = listener.accept().await {
                let _ = socket.write_all(b"421 4.7.0 Too many connections, slow down\r\n").await;
            }
        });
        let spec = ServerSpec {
            host: "127.0.0.1".into(),
            port,
            tls: crate::config::Tls::None,
            login: None,
            trust: super::super::smtp::Trust::default(),
            hello: "client.example.org".into(),
            timeout: Duration::from_secs(5),
        };
        let started = std::time::Instant::now();
        let e = connect_with_retries(&spec, &StopFlag::default()).await.err().expect("refused");
        assert!(e.is_throttled() && e.to_string().contains("421"), "{e:?}");
        assert!(started.elapsed() < Duration::from_secs(1), "not waited out as an unreachable server");
    }
}
