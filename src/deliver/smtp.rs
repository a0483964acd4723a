//! One SMTP connection, opened by us and driven with lettre's protocol client.
//!
//! We own the socket so that TCP_NODELAY is set: lettre 0.11.23's pooled transport does not set
//! it, and every message then waits ~40 ms for a delayed ACK (see DESIGN.md). We also drive the
//! transaction command by command, so that a refused recipient is answered with RSET and the
//! connection is kept, and so that we know at which step (RCPT or DATA) a refusal came.

use std::time::Duration;

use lettre::Address;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailParameter};

use crate::config::Tls;

/// Where to connect and how.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub credentials: Option<(String, String)>,
    pub hello: String,
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// 250 after DATA: the server has it.
    Accepted,
    /// 4xx, or the connection was lost: try again later.
    Deferred(String),
    /// 5xx to RCPT for the mailbox (550, 551, 553, or 5.1.x): the address is gone.
    Bounced(String),
    /// Any other 5xx: do not retry as it is.
    Rejected(String),
}

pub struct SmtpSession {
    conn: AsyncSmtpConnection,
    broken: bool,
}

const TIMEOUT: Duration = Duration::from_secs(60);

impl SmtpSession {
    /// Connects, says EHLO, upgrades to TLS as the spec says and authenticates. Credentials are
    /// never sent over a connection that is not encrypted unless the URL said `tls=none`.
    pub async fn connect(spec: &ServerSpec) -> Result<SmtpSession, String> {
        let hello = ClientId::Domain(spec.hello.clone());
        let whom = format!("{}:{}", spec.host, spec.port);
        let mut conn = match spec.tls {
            Tls::Implicit => {
                let tls = TlsParameters::new(spec.host.clone()).map_err(|e| format!("TLS setup for {whom}: {e}"))?;
                AsyncSmtpConnection::connect_tokio1((spec.host.as_str(), spec.port), Some(TIMEOUT), &hello, Some(tls), None)
                    .await
                    .map_err(|e| format!("cannot connect to {whom} with TLS: {e}"))?
            }
            Tls::StartTls | Tls::None => {
                let tcp = tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect((spec.host.as_str(), spec.port)))
                    .await
                    .map_err(|_| format!("cannot connect to {whom}: timed out"))?
                    .map_err(|e| format!("cannot connect to {whom}: {e}"))?;
                tcp.set_nodelay(true).map_err(|e| format!("{whom}: {e}"))?;
                let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &hello)
                    .await
                    .map_err(|e| format!("{whom} did not greet: {e}"))?;
                if spec.tls == Tls::StartTls {
                    if !conn.can_starttls() {
                        return Err(format!(
                            "{whom} does not offer STARTTLS; use smtps:// for port 465, or add ?tls=none only for a server on this machine"
                        ));
                    }
                    let tls = TlsParameters::new(spec.host.clone()).map_err(|e| format!("TLS setup for {whom}: {e}"))?;
                    conn.starttls(tls, &hello).await.map_err(|e| format!("STARTTLS with {whom} failed: {e}"))?;
                }
                conn
            }
        };
        if let Some((user, password)) = &spec.credentials {
            let creds = Credentials::new(user.clone(), password.clone());
            conn.auth(&[Mechanism::Plain, Mechanism::Login], &creds)
                .await
                .map_err(|e| format!("{whom} refused the login of `{user}`: {e}"))?;
        }
        Ok(SmtpSession { conn, broken: false })
    }

    /// True when the connection can no longer be used and a new one is needed.
    pub fn is_broken(&self) -> bool {
        self.broken || self.conn.has_broken()
    }

    /// One SMTP transaction (RFC 5321 §3.3): MAIL, RCPT, DATA, the message.
    pub async fn transmit(&mut self, from: &Address, to: &Address, message: &[u8]) -> Attempt {
        let mut params = Vec::new();
        if !to.to_string().is_ascii() {
            if !self.conn.server_info().supports_feature(Extension::SmtpUtfEight) {
                return Attempt::Rejected(format!("the server does not accept non-ASCII addresses (no SMTPUTF8) for {to}"));
            }
            params.push(MailParameter::SmtpUtfEight);
        }
        if let Err(e) = self.conn.command(Mail::new(Some(from.clone()), params)).await {
            return self.refused(e, false).await;
        }
        if let Err(e) = self.conn.command(Rcpt::new(to.clone(), vec![])).await {
            return self.refused(e, true).await;
        }
        if let Err(e) = self.conn.command(Data).await {
            return self.refused(e, false).await;
        }
        match self.conn.message(message).await {
            Ok(_) => Attempt::Accepted,
            // After the final dot the transaction is over either way: no RSET needed.
            Err(e) => classify(&e, false, &mut self.broken),
        }
    }

    /// A refusal before the message went out: classify it and reset the transaction.
    async fn refused(&mut self, e: lettre::transport::smtp::Error, at_rcpt: bool) -> Attempt {
        let attempt = classify(&e, at_rcpt, &mut self.broken);
        if !self.broken && self.conn.command(Rset).await.is_err() {
            self.broken = true;
        }
        attempt
    }

    pub async fn quit(mut self) {
        if !self.is_broken() {
            let _ = tokio::time::timeout(Duration::from_secs(5), self.conn.quit()).await;
        }
    }
}

fn classify(e: &lettre::transport::smtp::Error, at_rcpt: bool, broken: &mut bool) -> Attempt {
    let text = e.to_string().replace(['\r', '\n'], " ");
    if e.is_transient() {
        // 421 means the server is closing the connection.
        if e.status().is_some_and(|c| c.to_string() == "421") {
            *broken = true;
        }
        Attempt::Deferred(text)
    } else if e.is_permanent() {
        let code = e.status().map(|c| c.to_string()).unwrap_or_default();
        let mailbox_gone = matches!(code.as_str(), "550" | "551" | "553") || text.contains(" 5.1.");
        if at_rcpt && mailbox_gone { Attempt::Bounced(text) } else { Attempt::Rejected(text) }
    } else {
        // The connection broke, timed out or answered nonsense: the outcome is unknown, try again.
        *broken = true;
        Attempt::Deferred(format!("connection lost: {text}"))
    }
}
