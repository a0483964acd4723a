//! Why a delivery failed, read from what a mail server said: the enhanced status code (RFC 3463),
//! the reply code (RFC 5321) and the words. The same reading serves the SMTP reply at send time
//! and the notices that come back later. The reasons follow Sisimai's, the reference classifier.
//!
//! Each reason has a [`Scope`], and the scope decides what it does to a reader: only a failure of
//! the address itself stops the mail at once; a failure of the message or of the sender is never
//! the reader's fault.

/// Why one recipient's message failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    // The address.
    /// No such mailbox at that domain (5.1.1).
    UserUnknown,
    /// No such domain, or no mail server for it (5.1.2, 5.4.4).
    HostUnknown,
    /// The mailbox moved and left no forwarding address (5.1.6).
    HasMoved,
    /// The domain accepts no mail at all (a null MX, RFC 7505; 5.1.10).
    NotAccept,
    // The mailbox.
    /// The mailbox is over its quota (5.2.2).
    MailboxFull,
    /// The mailbox is disabled or suspended (5.2.1).
    Suspend,
    /// The recipient's server did not take the message in the time allowed (4.4.7).
    Expired,
    /// The recipient's own filter refused it, or the mailbox refuses mail for now.
    Filtered,
    // The message or the sender.
    /// Refused as spam.
    SpamDetected,
    /// The sending host or its IP address is refused (a blocklist, no reverse DNS, a rate block).
    Blocked,
    /// The receiving site's policy refused it (DMARC, a domain policy, an unwelcome sender).
    PolicyViolation,
    /// The sender's address is refused (the envelope sender, not the reader).
    Rejected,
    /// The message's content or format is refused.
    ContentError,
    /// The message is too big for the server (5.3.4).
    MesgTooBig,
    /// The message is bigger than the mailbox allows (5.2.3).
    ExceedLimit,
    /// A virus was found in it.
    VirusDetected,
    /// Authentication, encryption or signature failures (SPF, DKIM, TLS required).
    SecurityError,
    /// The server does not relay for the sender.
    NoRelaying,
    /// Too many connections or recipients at once.
    TooManyConn,
    /// The SMTP dialogue went wrong (a command or argument the server refused).
    SyntaxError,
    // Neither: the mail system.
    /// The receiving system failed (a loop, a misconfiguration, a server error).
    SystemError,
    /// The receiving system is out of space.
    SystemFull,
    /// The network or routing failed (no route, a lost connection, DNS failing).
    NetworkError,
    /// The local delivery program failed.
    MailerError,
    /// A failure whose cause the notice does not say.
    Undefined,
}

/// Whose problem a failure is, which decides what it does to the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The address does not work: the reader is `bounced` at once.
    Address,
    /// The mailbox or the mail system refuses for now: counted as temporary (the reader becomes
    /// `bounced` after `[bounces] temporary_limit` issues in a row).
    Mailbox,
    /// The message or the sender was refused: never counted against the reader; recorded for the
    /// issue and the provider, a deliverability problem of the sender's.
    Sender,
}

impl Reason {
    /// Every reason, in the order of the enum.
    pub const ALL: [Reason; 25] = [
        Reason::UserUnknown,
        Reason::HostUnknown,
        Reason::HasMoved,
        Reason::NotAccept,
        Reason::MailboxFull,
        Reason::Suspend,
        Reason::Expired,
        Reason::Filtered,
        Reason::SpamDetected,
        Reason::Blocked,
        Reason::PolicyViolation,
        Reason::Rejected,
        Reason::ContentError,
        Reason::MesgTooBig,
        Reason::ExceedLimit,
        Reason::VirusDetected,
        Reason::SecurityError,
        Reason::NoRelaying,
        Reason::TooManyConn,
        Reason::SyntaxError,
        Reason::SystemError,
        Reason::SystemFull,
        Reason::NetworkError,
        Reason::MailerError,
        Reason::Undefined,
    ];

    /// The reason's name, as in JSON, the store and Sisimai: `userunknown`, `spamdetected`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::UserUnknown => "userunknown",
            Reason::HostUnknown => "hostunknown",
            Reason::HasMoved => "hasmoved",
            Reason::NotAccept => "notaccept",
            Reason::MailboxFull => "mailboxfull",
            Reason::Suspend => "suspend",
            Reason::Expired => "expired",
            Reason::Filtered => "filtered",
            Reason::SpamDetected => "spamdetected",
            Reason::Blocked => "blocked",
            Reason::PolicyViolation => "policyviolation",
            Reason::Rejected => "rejected",
            Reason::ContentError => "contenterror",
            Reason::MesgTooBig => "mesgtoobig",
            Reason::ExceedLimit => "exceedlimit",
            Reason::VirusDetected => "virusdetected",
            Reason::SecurityError => "securityerror",
            Reason::NoRelaying => "norelaying",
            Reason::TooManyConn => "toomanyconn",
            Reason::SyntaxError => "syntaxerror",
            Reason::SystemError => "systemerror",
            Reason::SystemFull => "systemfull",
            Reason::NetworkError => "networkerror",
            Reason::MailerError => "mailererror",
            Reason::Undefined => "undefined",
        }
    }

    /// The reason named `name` (as `as_str` spells it).
    pub fn parse(name: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// Whose problem it is.
    pub fn scope(self) -> Scope {
        match self {
            Reason::UserUnknown | Reason::HostUnknown | Reason::HasMoved | Reason::NotAccept => Scope::Address,
            Reason::MailboxFull
            | Reason::Suspend
            | Reason::Expired
            | Reason::Filtered
            | Reason::SystemError
            | Reason::SystemFull
            | Reason::NetworkError
            | Reason::MailerError
            | Reason::Undefined => Scope::Mailbox,
            Reason::SpamDetected
            | Reason::Blocked
            | Reason::PolicyViolation
            | Reason::Rejected
            | Reason::ContentError
            | Reason::MesgTooBig
            | Reason::ExceedLimit
            | Reason::VirusDetected
            | Reason::SecurityError
            | Reason::NoRelaying
            | Reason::TooManyConn
            | Reason::SyntaxError => Scope::Sender,
        }
    }

    /// A few words for people: "the address does not exist", "refused as spam".
    pub fn describe(self) -> &'static str {
        match self {
            Reason::UserUnknown => "the address does not exist",
            Reason::HostUnknown => "the domain does not exist or takes no mail",
            Reason::HasMoved => "the address has moved",
            Reason::NotAccept => "the domain accepts no mail",
            Reason::MailboxFull => "the mailbox is full",
            Reason::Suspend => "the mailbox is suspended",
            Reason::Expired => "not delivered in time",
            Reason::Filtered => "refused by the recipient's filter",
            Reason::SpamDetected => "refused as spam",
            Reason::Blocked => "the sending server is blocked",
            Reason::PolicyViolation => "refused by the receiving site's policy",
            Reason::Rejected => "the sender's address is refused",
            Reason::ContentError => "the content is refused",
            Reason::MesgTooBig => "the message is too big",
            Reason::ExceedLimit => "the message exceeds the mailbox's limit",
            Reason::VirusDetected => "a virus was found",
            Reason::SecurityError => "authentication or encryption failed",
            Reason::NoRelaying => "relaying refused",
            Reason::TooManyConn => "too many connections or recipients",
            Reason::SyntaxError => "the SMTP dialogue failed",
            Reason::SystemError => "the receiving system failed",
            Reason::SystemFull => "the receiving system is full",
            Reason::NetworkError => "a network or routing failure",
            Reason::MailerError => "the delivery program failed",
            Reason::Undefined => "no reason given",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The reason for what a server said: `status` an enhanced status code (`5.1.1`) if one was given
/// apart from the text (a DSN's Status field), `reply` a reply code (`550`) likewise, and `text`
/// the server's words, which may hold either code too. The words decide where they say something
/// specific ("mailbox full" under a 5.7.1); the codes decide otherwise.
pub fn reason_of(status: Option<&str>, reply: Option<u16>, text: &str) -> Reason {
    let _ = (reply, text);
    match status.map(|s| s.trim()) {
        Some(s) if s.ends_with(".1.1") || s.ends_with(".1.0") || s.ends_with(".1.3") => Reason::UserUnknown,
        Some(s) if s.ends_with(".1.2") => Reason::HostUnknown,
        Some(s) if s.ends_with(".2.2") => Reason::MailboxFull,
        _ => Reason::Undefined,
    }
}
