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

/// A server's permanent refusal of one delivery at sending: why (`reason_of` on its reply), and
/// whose problem the send takes it to be (the reason's own scope, narrowed by the step of the
/// dialogue it came at: see `deliver::smtp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    pub scope: Scope,
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

/// The most of a text that `reason_at` reads, in bytes.
const MAX_WORDS: usize = 16 * 1024;

/// The step of the SMTP dialogue a server refused at, where it is known: a refusal of the
/// recipient's address means more at RCPT TO than after the message was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The connection, its greeting, HELO/EHLO or MAIL FROM: before any recipient was named.
    Session,
    /// RCPT TO: the recipient was refused.
    Recipient,
    /// DATA or its end: the message was refused.
    Message,
    /// Not said.
    Unknown,
}

/// The reason for what a server said: `status` an enhanced status code (`5.1.1`) if one was given
/// apart from the text (a DSN's Status field), `reply` a reply code (`550`) likewise, and `text`
/// the server's words, which may hold either code too, and may say at which step it refused
/// ("in reply to RCPT TO command").
pub fn reason_of(status: Option<&str>, reply: Option<u16>, text: &str) -> Reason {
    let said = normalize(text);
    reason_at(stage_in(&said), status, reply, &said)
}

/// The reason for a server's reply at a known step of the dialogue (the send's own replies).
///
/// Words that name a cause outrank a code ("mailbox full" under a 5.1.1 is a full mailbox; "user
/// unknown" under a 5.7.1 is an unknown user), in the order of [`FIRST`]; a code that names a
/// cause outranks vaguer words ([`SECOND`]); then the class of the code. Words that say the
/// address is unknown make it unknown only with a status that says so or at RCPT TO: after the
/// message was sent, or where the step is not said, they are as often a filter's refusal that
/// borrows the words, and count as `Filtered` (Sisimai reads them the same way).
pub fn reason_at(stage: Stage, status: Option<&str>, reply: Option<u16>, text: &str) -> Reason {
    let mut said = normalize(text);
    // What a server says of one failure is a few lines; a longer text is read from its start.
    said.truncate(said.floor_char_boundary(MAX_WORDS));
    // A specific status in the server's own words outranks one given apart (a report's summary).
    let in_words = first_enhanced_status(&said);
    let status =
        in_words.clone().filter(|s| is_specific_status(s)).or_else(|| status.and_then(enhanced_status)).or(in_words);
    let reply = reply.or_else(|| first_reply_code(&said));
    let matched = patterns().matches(&said);
    let says = |r: Reason| matched.iter().any(|i| PATTERNS[i].0 == r);
    let by_status = status.as_deref().and_then(status_reason);
    let temporary = status.as_deref().map_or(reply.is_some_and(|r| (400..500).contains(&r)), |s| s.starts_with('4'));

    let mut reason = None;
    for r in FIRST {
        let by_words = says(r);
        let decided = match r {
            Reason::UserUnknown => {
                (by_status == Some(r) && !OVERRIDE_UNKNOWN.iter().any(|o| says(*o)))
                    || (by_words && stage == Stage::Recipient)
                    || directory_says_unknown().is_match(&said)
            }
            Reason::Filtered => {
                by_status == Some(r)
                    || (!matches!(stage, Stage::Session | Stage::Recipient) && (by_words || says(Reason::UserUnknown)))
            }
            // A status that says the domain is unknown yields to words of a network failure.
            Reason::HostUnknown => by_words || (by_status == Some(r) && !says(Reason::NetworkError)),
            _ => by_words || by_status == Some(r),
        };
        if decided {
            reason = Some(r);
            break;
        }
    }
    let reason = reason
        .or_else(|| SECOND.into_iter().find(|r| says(*r)))
        .or(by_status)
        .or_else(|| match status.as_deref().map(|s| s.get(..3).unwrap_or(s)) {
            Some("5.6" | "4.6") => Some(Reason::ContentError),
            Some("5.7" | "4.7") => Some(Reason::SecurityError),
            _ => None,
        })
        .unwrap_or(Reason::Undefined);
    // A null MX is for good; "not accepting mail" with a 4xx is the system's state for now.
    if reason == Reason::NotAccept && temporary { Reason::SystemError } else { reason }
}

/// The step a server's words say it refused at: "in reply to RCPT TO command" (Postfix), "after
/// RCPT TO:" (Exim), ">>> RCPT To:" (Sendmail's transcript), "end of DATA".
pub fn stage_in(text: &str) -> Stage {
    const WORDS: [(Stage, &[&str]); 3] = [
        (
            Stage::Recipient,
            &[
                "rcpt to",
                "rcpt command",
                ">>> rcpt",
                "after rcpt",
                "recipient address rejected",
                "does not like recipient",
                "(state 14)",
            ],
        ),
        (
            Stage::Message,
            &[
                "end of data",
                "after data",
                "data command",
                ">>> data",
                "in reply to data",
                "message body",
                "after end of",
                "after i sent the message",
                "(state 17)",
                "(state 18)",
            ],
        ),
        (Stage::Session, &["mail from", "helo", "ehlo", "initial connection", "greeting", "banner", "(state 13)"]),
    ];
    // A transcript may name several steps: the last one named is where it stopped.
    let said = normalize(text);
    WORDS
        .iter()
        .filter_map(|(stage, words)| words.iter().filter_map(|w| said.rfind(w)).max().map(|at| (at, *stage)))
        .max_by_key(|(at, _)| *at)
        .map_or(Stage::Unknown, |(_, stage)| stage)
}

/// The words of a server that looked the address up in its own directory and did not find it
/// (Domino, Exchange): unknown at whatever step, as they are no filter's.
fn directory_says_unknown() -> &'static regex::Regex {
    static WORDS: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"not listed in (the )?([a-z]+ )?(public )?(address book|directory)|recipient name is not recognized|unknown recipient|recipient address not found in directory|no such recipient in (the )?directory")
            .expect("a valid regular expression")
    });
    &WORDS
}

/// Reasons whose words are looked for first, and which a status code alone may also decide.
const FIRST: [Reason; 13] = [
    Reason::MailboxFull,
    Reason::MesgTooBig,
    Reason::ExceedLimit,
    Reason::Suspend,
    Reason::HasMoved,
    Reason::NoRelaying,
    Reason::UserUnknown,
    Reason::Filtered,
    Reason::Rejected,
    Reason::HostUnknown,
    Reason::SpamDetected,
    Reason::TooManyConn,
    Reason::Blocked,
];

/// Words that make a "user unknown" status mean something else.
const OVERRIDE_UNKNOWN: [Reason; 6] =
    [Reason::NoRelaying, Reason::Blocked, Reason::MailboxFull, Reason::HasMoved, Reason::Rejected, Reason::NotAccept];

/// Reasons found by their words only, after the status code had its say.
const SECOND: [Reason; 11] = [
    Reason::PolicyViolation,
    Reason::VirusDetected,
    Reason::SecurityError,
    Reason::SystemError,
    Reason::NetworkError,
    Reason::Expired,
    Reason::ContentError,
    Reason::SystemFull,
    Reason::NotAccept,
    Reason::MailerError,
    Reason::SyntaxError,
];

/// What each enhanced status code (RFC 3463) says by itself, where it says something specific.
fn status_reason(status: &str) -> Option<Reason> {
    let (class, rest) = status.split_once('.')?;
    if class != "4" && class != "5" {
        return None;
    }
    Some(match rest {
        "1.0" | "1.1" | "1.3" if class == "5" => Reason::UserUnknown,
        "1.2" if class == "5" => Reason::HostUnknown,
        "1.4" => Reason::Filtered,
        "1.6" => Reason::HasMoved,
        "1.7" | "1.8" => Reason::Rejected,
        "1.9" | "3.3" | "3.5" | "4.3" | "5.4" | "5.5" => Reason::SystemError,
        "1.10" => Reason::NotAccept,
        "2.0" | "2.4" if class == "5" => Reason::Filtered,
        "2.1" if class == "5" => Reason::Filtered,
        "2.1" => Reason::Suspend,
        "2.2" => Reason::MailboxFull,
        "2.3" => Reason::ExceedLimit,
        "3.1" | "4.5" => Reason::SystemFull,
        "3.2" => Reason::NotAccept,
        "3.4" => Reason::MesgTooBig,
        "4.0" | "4.2" | "4.6" => Reason::NetworkError,
        "4.4" if class == "5" => Reason::HostUnknown,
        "4.4" => Reason::NetworkError,
        "4.1" | "4.7" => Reason::Expired,
        "5.3" => Reason::TooManyConn,
        "5.6" | "7.5" | "7.6" | "7.7" | "7.12" | "7.15" | "7.24" => Reason::SecurityError,
        "7.1" | "7.2" | "7.25" if class == "4" => Reason::Blocked,
        "7.13" => Reason::Suspend,
        "7.16" => Reason::MesgTooBig,
        "7.17" | "7.18" => Reason::Suspend,
        "7.20" | "7.21" | "7.22" | "7.23" | "7.26" | "7.27" => Reason::SecurityError,
        _ => return None,
    })
}

/// `5.7.1` but not `5.0.0` or `5.1.10`: a class, a subject and a detail, each one digit, neither 0.
fn is_specific_status(status: &str) -> bool {
    let b = status.as_bytes();
    b.len() == 5
        && matches!(b[0], b'4' | b'5')
        && b[1] == b'.'
        && (b'1'..=b'9').contains(&b[2])
        && b[3] == b'.'
        && (b'1'..=b'9').contains(&b[4])
}

/// `5.1.1`, `#5.1.1` or `5.1.1.` as the canonical `5.1.1`, if it is one.
fn enhanced_status(word: &str) -> Option<String> {
    let w = word.trim().trim_start_matches('#').trim_end_matches(['.', ',', ')', ':', ';']);
    let mut parts = w.split('.');
    let (Some(class), Some(subject), Some(detail), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let digits = |p: &str, most: usize| !p.is_empty() && p.len() <= most && p.bytes().all(|b| b.is_ascii_digit());
    (matches!(class, "2" | "4" | "5") && digits(subject, 3) && digits(detail, 3)).then(|| w.to_string())
}

/// The first enhanced status code standing as a word in `text` that is not part of a version
/// number or an address.
pub fn first_enhanced_status(text: &str) -> Option<String> {
    words(text).find_map(enhanced_status)
}

/// The first SMTP reply code (4xx or 5xx) standing as a word in `text`.
pub fn first_reply_code(text: &str) -> Option<u16> {
    words(text).find_map(|w| {
        let w = w.trim_end_matches(['-', '.', ':']);
        (w.len() == 3 && w.bytes().all(|b| b.is_ascii_digit()) && matches!(w.as_bytes()[0], b'4' | b'5'))
            .then(|| w.parse().ok())
            .flatten()
    })
}

fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| {
        c.is_whitespace() || matches!(c, '(' | ')' | ';' | ',' | '[' | ']' | '<' | '>' | '"' | '\'' | '=')
    })
    .filter(|w| !w.is_empty())
}

/// Lowercase, one space for any run of whitespace: what the patterns are written against.
fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().flat_map(char::to_lowercase));
    }
    out
}

fn patterns() -> &'static regex::RegexSet {
    static SET: std::sync::LazyLock<regex::RegexSet> =
        // ASCII word boundaries: a Unicode `\b` would keep the fast automaton off any text with a
        // non-ASCII letter in it, and a long notice would take seconds.
        std::sync::LazyLock::new(|| {
            regex::RegexSet::new(PATTERNS.iter().map(|(_, p)| p.replace(r"\b", r"(?-u:\b)")))
                .expect("the reason patterns are valid regular expressions")
        });
    &SET
}

/// The words of each reason, as mail servers write them (lowercase, single spaces). One table
/// read by one `RegexSet`: adding a server's wording is adding a line.
const PATTERNS: &[(Reason, &str)] = &[
    // A full mailbox.
    (
        Reason::MailboxFull,
        r"mailbox (is )?full|full mailbox|mailfolder is full|mailbox (is )?over (its )?quota|over (the )?(allowed |disk |storage )?quota|quota (exceeded|violation)|exceeded (its |the )?(mailbox |storage )?quota|exceeding its mailbox quota|(disc|disk) quota exceeded|quota usage exceeded|userdisk quota|domaindisk quota",
    ),
    (
        Reason::MailboxFull,
        r"not enough (storage )?space|does not have enough space|insufficient (disk|system) (space|storage)|mailbox size limit exceeded|mailbox exceeded the local limit|exceeded (its )?(disk space|storage) (limit|allocation)|mailbox would exceed|user mailbox exceeds allowed size|mailbox has exceeded|space has been used up|too many messages (on the server|in (this|the) mailbox)|too much mail data|boite du destinataire pleine|(recipient|user)('s)? (mailbox )?(is )?over( the)? quota|reached disk quota|quota (full|exceeded)|mail file size exceeds",
    ),
    // Too big for the server, or for the mailbox.
    (
        Reason::MesgTooBig,
        r"message (file )?(is )?too (big|large)|max(imum)? message size exceeded|message (length|size) exceeds|size (exceeds|limit)|exceeds (the )?(maximum|fixed) (message )?size|message too big|taille limite du message",
    ),
    (
        Reason::ExceedLimit,
        r"message (length )?exceeds (the )?(local|recipient's|mailbox) (size )?limit|exceeds the (mailbox|recipient's) size limit",
    ),
    // The mailbox disabled.
    (
        Reason::Suspend,
        r"(mailbox|account|user|address) (is |has been |currently )?(suspended|disabled|deactivated|frozen|locked|inactive|archived)|has been suspended|this mailbox is disabled|invalid/inactive user|deactivated mailbox|temporarily inactive|suspend(ed)? the service|boite du destinataire archivee|account has been disabled|account that you tried to reach is disabled|mailbox unavailable or access denied|account is locked",
    ),
    // Moved.
    (
        Reason::HasMoved,
        r"has been replaced by |address (has )?moved|no longer (at|with) this (address|company)|changed (his|her|their) (e-?mail )?address",
    ),
    // Relaying.
    (
        Reason::NoRelaying,
        r"relay(ing)? (access )?(denied|not permitted|prohibited|not allowed)|(unable|not allowed|not permitted) to relay|relaying mail to|not an open relay|not a gateway|not local host|this system is not configured to relay|we don'?t handle mail for|requires authentication when attempting to send to a non-local|isn'?t in my list of allowed rcpthosts|cannot relay|relay not authorized",
    ),
    // The address does not exist.
    (
        Reason::UserUnknown,
        r"(user|recipient|mailbox|address|account|addressee)( name)? (is )?(unknown|not known|not found|not exist|does not exist|doesn'?t exist|not listed|invalid|unavailable|not recognized|not present)|unknown (user|recipient|mailbox|local[- ]part|e-?mail address|address|account)|no (such|valid) (user|recipient|mailbox|address|person|account)|invalid (recipient|mailbox|address|user)|bad[-_ ]?(destination )?(recipient|mailbox|address)|non[- ]?existent (user|address|recipient|mailbox)|does not exist|doesn'?t exist|not a valid (recipient|user|mailbox|address)|is not a (known user|valid mailbox)|no mailbox (here|by that name|found)|requested action not taken: mailbox unavailable|mailbox unavailable|no mail ?box available|not an active address|user not (found|active|exist|known)|not our customer|no account by that name|addressee unknown|recipient not (found|ok)|recipient (is )?not local|unrouteable address in domain|utilisateur inconnu|nessun utente|no existe|no one at this address|no longer (valid|accepts mail|in use)|account (has been )?(closed|expired|deleted|removed)|user doesn'?t have an? .+ account|resolver\.adr\.recip(ient)? ?notfound|recipnotfound|badrcptto|not in my validrcptto|email account that you tried to reach does not exist|does not have an account|address rejected: (user unknown|unknown user|invalid user)|user unknown|mailbox name not allowed|not listed in (the )?(domino )?directory|recipient name is not recognized|unknown recipient",
    ),
    // The recipient's own filter.
    (
        Reason::Filtered,
        r"rejected due to user rules|refused due to recipient preferences|user reject|you have been blocked by the recipient|is not accepting (any )?mail|not currently being accepted for this mailbox|this account is protected by|resolver\.rst\.notauthorized|restricted sms e-mail|refuse to receive mail|domain filter|rejected by (the )?recipient'?s? (mail )?(filter|settings|rules)",
    ),
    // The sender's address refused.
    (
        Reason::Rejected,
        r"sender (address |email address |domain )?(rejected|denied|blacklisted|not (allowed|accepted|pre-approved))|(invalid|bad|unknown|unroutable|bogus) (sender|mail from)|sender verify failed|sender (domain )?(must exist|is empty)|domain of sender address|mail from not owned|empty envelope senders? not allowed|null sender is not allowed|no third-party dsns|batv (failed|validation|defense)|not on the recipient's list of senders|sender is (in my black list|spammer)|access denied \(sender blacklisted\)|administrative prohibition|emetteur invalide|fully qualified email address required|you are not allowed to post to this mailing list|does not accept mail from|in reply to mail from command",
    ),
    // No such domain.
    (
        Reason::HostUnknown,
        r"host (or domain name )?(unknown|not found)|unknown (host|domain)|no such (domain|host)|domain (name )?(not found|does not exist|must exist|unknown)|name or service not known|host unreachable|couldn't find any host|could not find any host|no host (found|by that name)|(the )?account or domain may not exist|mail domain mentioned in email address is unknown|recipient domain must exist|no mx (record|host)|unrout(e)?able address|nxdomain|dns error.*(does not exist|not found)",
    ),
    // Spam.
    (
        Reason::SpamDetected,
        r"\bspam\b|unsolicited|bulk (e-?mail|mail|advertising)|junk mail|spamassassin|spam-?like|content filter rejection|rejecting (banned|mail) content|mail content denied|high probability of|message (content )?(rejected|filtered)( for policy reasons| because of unacceptable content)?|blacklisted url|uribl|message looks like|mass mailer|recurrent pattern detection|rated as junk|spambouncer|greylisted",
    ),
    // Too many.
    (
        Reason::TooManyConn,
        r"too many (connections|concurrent|smtp sessions|errors from your ip|recipients)|connection limit|max(imum)? (emails|messages) per (hour|day)|maximum sending rate exceeded|daily message quota exceeded|rate limit(ed)?|throttl|trop de connexions",
    ),
    // The sending host refused.
    (
        Reason::Blocked,
        r"blocked (using|by|for abuse)|black ?list(ed)?|block ?list(ed)?|\bdnsbl\b|\brbl\b|spamhaus|spamcop|barracuda|sorbs|reverse dns|rdns|ptr record|no ptr|cannot (find|resolve) your (hostname|address)|client host .*(blocked|rejected)|(ip|host|server|address|network) (\S+ )?(is |was |has been )?(blocked|banned|listed|not allowed)|your (ip|host|network)|poor (email )?reputation|reputation (problem|score)|dynamic ip|dial-?up|residential|open proxy|helo command rejected|access denied\. ip name lookup failed|connection (refused|dropped|reset) by|not currently accepting mail from your ip|go away|service refused|confirm this mail server|mismatches client ip|esmtp not accepting connections",
    ),
    // The site's policy.
    (
        Reason::PolicyViolation,
        r"polic(y|ies) (violation|reasons|restrictions)|(denied|rejected|blocked|refused) (by|due to|for) (local |organi[sz]ation(al)? |security )?(policy|policies|settings)|dmarc|local policy|members-only list|closed mailing list|not subscribed to this group|header (error|are not accepted)|protocol violation|multiple addresses|we do not accept messages containing|organizational settings|rejected by organization policy|low priority|prohibited attachment|illegal attachment|attachment (is )?not allowed",
    ),
    (Reason::VirusDetected, r"virus|malware|infected|trojan|worm detected"),
    (
        Reason::SecurityError,
        r"authenticat(ion|e)|\bspf\b|\bdkim\b|starttls|\btls\b|encryption|not authorized to send|insecure mail relay|verification fail|unauthenticated senders|access denied",
    ),
    (
        Reason::SystemError,
        r"system (error|config)|configuration error|local error|internal (server )?error|server error|mail loop|loops back to myself|loop was found|queue file write error|interrupted system call|error while being processed|misconfigured|service (currently )?unavailable|temporary local problem|timeout waiting for input|transaction failed|could not load|i/o error|out of memory|remote server is misconfigured",
    ),
    (
        Reason::NetworkError,
        r"unrout(e)?able mail domain|malformed (or unexpected )?name server reply|no route to host|host is unreachable|network (is )?unreachable|name ?server|dns (lookup|failure|error|timeout)|host name lookup failure|host not found, try again|routing loop|forwarding loop|hop count exceeded|too many hops|message looping|unable to resolve route|connection (timed out|refused|lost|closed)|could not (connect|initiate smtp conversation)|lost connection|timed out while",
    ),
    (
        Reason::Expired,
        r"delivery time expired|expired after|message expired|timed? ?out|giving up on|have been failing for a long time|retry time not reached|been in the queue too long|not (been )?(delivered|reachable) (with)?in|could not be delivered for more than|unable to deliver message after multiple retries|delivery attempts will continue|has been delayed|server did not respond|failed to deliver to domain|not collected after",
    ),
    (
        Reason::ContentError,
        r"mime|improperly[- ]formatted|invalid (header|content)|malformed (message|header)|8-?bit|base64|binary content|message header size|too many received",
    ),
    (Reason::SystemFull, r"(mail )?system (is )?full|insufficient system storage|disk full|no space left|congestion"),
    (
        Reason::NotAccept,
        r"null mx|does not accept mail|accepts no mail|host does not accept|no mx record found|not accepting (network )?messages|no route for current request",
    ),
    (
        Reason::MailerError,
        r"x-unix|mailer error|command (failed|died|output)|pipe to \||exit (code|status)? ?\d+|procmail|local delivery failed|unknown mailer|mail program",
    ),
    (
        Reason::SyntaxError,
        r"syntax error|command unrecognized|bad sequence of commands|unrecognized command|line too long|parameter not implemented",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_a_name_that_reads_back() {
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
        }
        assert_eq!(Reason::parse("nonsense"), None);
    }

    #[test]
    fn codes_decide_where_the_words_say_nothing_specific() {
        assert_eq!(reason_of(Some("5.1.1"), None, ""), Reason::UserUnknown);
        assert_eq!(reason_of(None, None, "550 5.1.1 <a@b.example>: Recipient address rejected"), Reason::UserUnknown);
        assert_eq!(reason_of(Some("5.1.2"), None, "550 rejected"), Reason::HostUnknown);
        assert_eq!(reason_of(Some("4.2.2"), None, ""), Reason::MailboxFull);
        assert_eq!(reason_of(Some("5.7.1"), Some(550), "delivery not authorized"), Reason::SecurityError);
        assert_eq!(reason_of(Some("5.1.10"), None, "recipient domain has a null mx"), Reason::NotAccept);
        assert_eq!(reason_of(None, None, "version 1.5.0 of the parser"), Reason::Undefined, "1.5.0 is no status");
        assert_eq!(reason_of(None, None, ""), Reason::Undefined);
    }

    #[test]
    fn words_that_name_a_cause_outrank_the_code() {
        // The sender's problem, whatever the status says.
        assert_eq!(reason_of(Some("5.7.1"), Some(550), "550 5.7.1 Message rejected as spam"), Reason::SpamDetected);
        assert_eq!(
            reason_of(
                None,
                None,
                "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org"
            ),
            Reason::Blocked
        );
        assert_eq!(reason_of(Some("5.1.1"), None, "552 5.1.1 mailbox full"), Reason::MailboxFull);
        assert_eq!(reason_of(Some("5.1.1"), None, "550 5.1.1 relaying denied"), Reason::NoRelaying);
        assert_eq!(reason_of(None, None, "552 Message size exceeds fixed maximum message size"), Reason::MesgTooBig);
        assert_eq!(reason_of(None, None, "550 Unrouteable address"), Reason::HostUnknown);
        // "No such user" words make the address unknown at RCPT TO; after the message was sent,
        // or where the step is not said, a filter may be using them.
        assert_eq!(
            reason_at(
                Stage::Recipient,
                None,
                None,
                "554 delivery error: dd This user doesn't have a yahoo.com account"
            ),
            Reason::UserUnknown
        );
        assert_eq!(
            reason_of(None, None, "554 delivery error: dd This user doesn't have a yahoo.com account"),
            Reason::Filtered
        );
        assert_eq!(reason_of(None, None, "said: 550 User unknown (in reply to RCPT TO command)"), Reason::UserUnknown);
        assert_eq!(reason_of(None, None, "said: 550 User unknown (in reply to end of DATA command)"), Reason::Filtered);
        // A directory lookup that failed is the address's, whatever the step.
        assert_eq!(reason_of(None, None, "User x (x@example.net) not listed in Domino Directory"), Reason::UserUnknown);
        assert_eq!(
            reason_of(Some("5.0.0"), None, "Sorry, no mailbox here by that name. (#5.1.1)"),
            Reason::UserUnknown
        );
        // A 4xx "not accepting messages" is the system's state, not a null MX.
        assert_eq!(reason_of(Some("4.3.2"), None, "not accepting messages"), Reason::SystemError);
    }

    #[test]
    fn each_reason_has_one_scope_and_only_address_failures_are_permanent() {
        let address: Vec<Reason> = Reason::ALL.into_iter().filter(|r| r.scope() == Scope::Address).collect();
        assert_eq!(address, [Reason::UserUnknown, Reason::HostUnknown, Reason::HasMoved, Reason::NotAccept]);
        for r in [
            Reason::SpamDetected,
            Reason::Blocked,
            Reason::PolicyViolation,
            Reason::ContentError,
            Reason::MesgTooBig,
            Reason::SecurityError,
        ] {
            assert_eq!(r.scope(), Scope::Sender, "{r}");
        }
        for r in [Reason::MailboxFull, Reason::Suspend, Reason::Expired] {
            assert_eq!(r.scope(), Scope::Mailbox, "{r}");
        }
    }

    #[test]
    fn no_text_makes_it_panic() {
        for text in ["", "5.", "5.1.", "#", "é5.1.1", "５５０ ５.１.１", "\u{0}\u{ffff}", "4.4.7.", "550-5.1.1"]
        {
            let _ = reason_of(None, None, text);
            let _ = reason_of(Some(text), Some(0), text);
        }
    }
}
