//! What one message that came back says: a delivery failure (an RFC 3464 delivery status
//! notification, or the plain-text notice of a server that writes none), a complaint (ARF, RFC
//! 5965, and the older feedback loops), or neither (an auto-reply, a read receipt, a person's
//! reply). Pure: bytes in, `Report` out; who the message is about is decided later
//! (`attribute`), from the clues gathered here. Why each recipient failed is `reason::reason_of`.
//!
//! Nothing here slices text at a byte offset it did not find in that same text, and every
//! charset is decoded by `mail_parser`, which replaces what it cannot decode: no message can make
//! this panic.

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};

use super::reason::{Reason, Scope, Stage, reason_at, reason_of, stage_in};

/// What kind of message it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A delivery failure, permanent or temporary.
    Bounce,
    /// The reader reported the newsletter as spam.
    Complaint,
    /// Anything else (an auto-reply, a success notice, a message we cannot read): never acted on.
    Ignored,
}

/// Why a message is ignored, in a word for JSON (`"why"`) and a sentence for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Not an email message at all.
    NotAMessage,
    /// An out-of-office or other automatic reply (RFC 3834).
    AutoReply,
    /// A delivery report that says the message was delivered (or relayed, or expanded).
    Delivered,
    /// A read receipt or another report that is not about delivery.
    OtherReport,
    /// A feedback report that is not a complaint (RFC 6650's not-spam, for example).
    NotAComplaint,
    /// From a mail system, but naming no recipient that failed.
    NoRecipient,
    /// A message from a person or a program, not a failure notice.
    NotAReport,
}

impl Ignored {
    pub fn as_str(self) -> &'static str {
        match self {
            Ignored::NotAMessage => "not-a-message",
            Ignored::AutoReply => "auto-reply",
            Ignored::Delivered => "delivered",
            Ignored::OtherReport => "other-report",
            Ignored::NotAComplaint => "not-a-complaint",
            Ignored::NoRecipient => "no-recipient",
            Ignored::NotAReport => "not-a-report",
        }
    }
}

/// One address that could not be delivered to.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The address that failed (a DSN's Final-Recipient), lowercased.
    pub address: String,
    /// The address Gazette sent to, when the notice gives it apart (a DSN's Original-Recipient):
    /// a forwarding address fails under another name.
    pub original: Option<String>,
    /// Why it failed, which decides what it does to the reader (`Reason::scope`).
    pub reason: Reason,
    /// The status and the server's words, for the record.
    pub detail: String,
}

impl Failure {
    /// Whose problem it is.
    pub fn scope(&self) -> Scope {
        self.reason.scope()
    }

    /// Only a failure of the address itself is permanent.
    pub fn is_permanent(&self) -> bool {
        self.scope() == Scope::Address
    }
}

/// What a message says, and the clues to whom it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub kind: Kind,
    pub failures: Vec<Failure>,
    /// The addresses a complaint names (ARF's Original-Rcpt-To, or the returned message's To).
    pub complained: Vec<String>,
    /// Why it is ignored, for JSON; `None` for a bounce or a complaint.
    pub why: Option<Ignored>,
    /// Why it is ignored, or the feedback type of a complaint: for people.
    pub note: String,
    /// Texts found after `<bounce local part>+` in an address at the bounce domain: candidate
    /// VERP tokens, still to be verified.
    pub verp_tokens: Vec<String>,
    /// Message-IDs of the returned original message (angle brackets kept).
    pub original_message_ids: Vec<String>,
}

impl Report {
    /// A message that is not acted on, and why.
    pub fn ignored(why: Ignored, note: impl Into<String>) -> Report {
        Report {
            kind: Kind::Ignored,
            failures: Vec::new(),
            complained: Vec::new(),
            why: Some(why),
            note: note.into(),
            verp_tokens: Vec::new(),
            original_message_ids: Vec::new(),
        }
    }

    fn bounce(failures: Vec<Failure>) -> Report {
        Report { kind: Kind::Bounce, failures, why: None, ..Report::ignored(Ignored::NotAReport, "") }
    }

    /// Failures of the address: the reader is bounced.
    pub fn permanent(&self) -> impl Iterator<Item = &Failure> {
        self.failures.iter().filter(|f| f.scope() == Scope::Address)
    }

    /// Failures of the mailbox or the mail system: counted against the reader as temporary.
    pub fn temporary(&self) -> impl Iterator<Item = &Failure> {
        self.failures.iter().filter(|f| f.scope() == Scope::Mailbox)
    }

    /// Refusals of the message or the sender: never the reader's fault.
    pub fn refused(&self) -> impl Iterator<Item = &Failure> {
        self.failures.iter().filter(|f| f.scope() == Scope::Sender)
    }
}

/// Reads `raw`. `bounce_address` is `[email] bounce_address`, whose `local+token@domain` forms
/// are looked for anywhere in the message.
pub fn classify(raw: &[u8], bounce_address: Option<&lettre::Address>) -> Report {
    // Some notices arrive with empty lines before their headers.
    let raw = raw.trim_ascii_start();
    let message = match MessageParser::default().parse(raw) {
        Some(m)
            if m.headers().iter().any(|h| !matches!(h.name, mail_parser::HeaderName::Other(_)))
                || raw.starts_with(b"From ") =>
        {
            m
        }
        _ => return Report::ignored(Ignored::NotAMessage, "not an email message (no headers)"),
    };
    let mut report = read(&message);
    if report.kind != Kind::Ignored {
        report.original_message_ids = original_message_ids(&message);
        if let Some(bounce) = bounce_address {
            report.verp_tokens = verp_tokens(&message, bounce);
        }
    }
    report
}

/// Which kind of message, in the order that keeps each from being mistaken for another: a
/// complaint carries the returned message (which may look like anything), a delivery status part
/// is unambiguous, an auto-reply may come from a mail system's address, and only then are the
/// words of a plain-text notice read.
fn read(message: &Message) -> Report {
    if let Some(report) = complaint(message) {
        return report;
    }
    if let Some(report) = ses_notification(message) {
        return report;
    }
    let notice = Notice::new(message);
    if let Some(report) = delivery_status(message, &notice) {
        return report;
    }
    if is_auto_reply(message) && notice.failed_header.is_empty() {
        return Report::ignored(
            Ignored::AutoReply,
            "an automatic reply (out of office or similar), not a failure report",
        );
    }
    if let Some(kind) = other_report(message) {
        return Report::ignored(
            Ignored::OtherReport,
            format!("a report of type `{kind}`, not a delivery failure or a complaint"),
        );
    }
    if !from_mail_system(message) {
        return Report::ignored(Ignored::NotAReport, "not a failure report or a complaint");
    }
    let failures = notice.failures();
    if failures.is_empty() {
        return Report::ignored(Ignored::NoRecipient, "a notice from a mail system that names no failed recipient");
    }
    Report::bounce(failures)
}

// ---------------------------------------------------------------------------------------------
// The human-readable notice: the text a server writes for people, before the returned message.
// ---------------------------------------------------------------------------------------------

/// The notice's text and the addresses that are not recipients (the sender's, the server's).
struct Notice {
    /// The text parts of the notice itself (not of the returned message), up to where a returned
    /// copy begins.
    text: String,
    subject: String,
    /// Addresses that are the notice's own or the original sender's: never a failed recipient.
    own: Vec<String>,
    /// `X-Failed-Recipients` (Exim and others).
    failed_header: Vec<String>,
    /// The returned message's To, when it names exactly one address.
    returned_to: Option<String>,
    /// The notice says the server is still trying.
    delay: bool,
    /// The step of the dialogue the whole notice names last.
    whole_stage: Stage,
}

/// The most of a notice's text that is read, in bytes.
const MAX_NOTICE_TEXT: usize = 256 * 1024;

/// The most recipients read from one message: Gazette sends each message to one reader, and a
/// notice that names hundreds is no notice about its mail.
const MAX_RECIPIENTS: usize = 50;

impl Notice {
    fn new(message: &Message) -> Notice {
        let mut text = String::new();
        for part in notice_parts(message) {
            match &part.body {
                PartType::Text(t) => text.push_str(t),
                PartType::Html(h) => text.push_str(&strip_tags(h)),
                _ => continue,
            }
            text.push('\n');
        }
        // A notice's own words are a few KB; past this it is something else, and reading it
        // whole for every address it names would let one message take seconds.
        text.truncate(text.floor_char_boundary(MAX_NOTICE_TEXT));
        let end = copy_starts(&text);
        // A copy returned inline: its headers name the original's sender, never a recipient.
        let inline_copy: String = text[end..]
            .lines()
            .skip(1)
            .skip_while(|l| l.trim().is_empty())
            .take_while(|l| !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        text.truncate(end);
        let subject = message.subject().unwrap_or("").to_string();
        let mut own: Vec<String> = Vec::new();
        let header_addresses = |m: &Message, names: &[&str], into: &mut Vec<String>| {
            for (name, value) in m.headers_raw() {
                if names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                    into.extend(addresses_in(value));
                }
            }
        };
        header_addresses(
            message,
            &["From", "To", "Cc", "Sender", "Reply-To", "Return-Path", "Delivered-To", "X-Original-To", "Envelope-To"],
            &mut own,
        );
        let mut returned = returned_headers(message);
        if !inline_copy.is_empty() {
            returned.push(inline_copy);
        }
        for block in &returned {
            // A forged message may come "from" its recipient: the recipient stays a recipient.
            let to: Vec<String> = ["To", "Cc"]
                .iter()
                .filter_map(|n| header(block, n))
                .flat_map(|v| addresses_in(&v))
                .map(|a| a.to_lowercase())
                .collect();
            for name in ["From", "Sender", "Reply-To", "Return-Path"] {
                if let Some(v) = header(block, name) {
                    own.extend(addresses_in(&v).into_iter().filter(|a| !to.contains(&a.to_lowercase())));
                }
            }
        }
        let mut failed_header = Vec::new();
        header_addresses(message, &["X-Failed-Recipients"], &mut failed_header);
        let returned_to = returned
            .iter()
            .find_map(|b| header(b, "To"))
            .map(|to| addresses_in(&to))
            .filter(|a| a.len() == 1)
            .and_then(|a| a.into_iter().next());
        let lower_subject = subject.to_lowercase();
        let lower = text.to_lowercase();
        let delay = DELAY_WORDS.iter().any(|w| lower_subject.contains(w))
            || [
                "this is a warning message only",
                "warning only",
                "will be retried",
                "will continue to try",
                "still trying",
                "has been delayed",
                "not yet been delivered",
                "delivery attempts will continue",
                "message will be retried",
                "is delayed",
                "temporary failure",
            ]
            .iter()
            .any(|w| lower.contains(w));
        let whole_stage = stage_in(&text);
        Notice {
            text,
            subject,
            own: own.into_iter().map(|a| a.to_lowercase()).collect(),
            failed_header,
            returned_to,
            delay,
            whole_stage,
        }
    }

    fn is_own(&self, address: &str) -> bool {
        let a = address.to_lowercase();
        self.own.contains(&a) || is_system_address(&a)
    }

    /// The step of the dialogue the lines naming `address` say (a transcript's `>>> RCPT To:<a>`).
    fn stage_of(&self, address: &str) -> Stage {
        self.text
            .lines()
            .filter(|l| l.to_lowercase().contains(address))
            .map(stage_in)
            .find(|s| *s != Stage::Unknown)
            .unwrap_or(Stage::Unknown)
    }

    /// The failed recipients the notice names, each with the words about it.
    fn failures(&self) -> Vec<Failure> {
        let lines: Vec<&str> = self.text.lines().collect();
        // Recipients stand at the start of a line, or after a label that names one; an address
        // in the middle of a sentence is only taken when no line names one so.
        let mut named: Vec<(String, usize)> = Vec::new();
        let mut mentioned: Vec<(String, usize)> = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let lower = line.to_lowercase();
            if lower.trim_start().starts_with("message-id")
                || lower.contains("message-id:")
                || lower.trim_start().starts_with("references:")
            {
                continue;
            }
            if named.len() >= MAX_RECIPIENTS {
                break;
            }
            for address in addresses_in(line) {
                if self.is_own(&address) || looks_like_message_id(line, &address) {
                    continue;
                }
                let a = address.to_lowercase();
                let list = if stands_as_recipient(line, &address) { &mut named } else { &mut mentioned };
                if list.len() < MAX_RECIPIENTS && !list.iter().any(|(x, _)| *x == a) {
                    list.push((a, i));
                }
            }
        }
        for address in &self.failed_header {
            let a = address.to_lowercase();
            if !named.iter().any(|(x, _)| *x == a) {
                let line = mentioned.iter().find(|(x, _)| *x == a).map_or(usize::MAX, |(_, i)| *i);
                named.push((a, line));
            }
        }
        if named.is_empty() {
            named = mentioned.into_iter().filter(|(_, i)| says_failure(lines[*i])).collect();
        }
        if named.is_empty()
            && let Some(to) = &self.returned_to
            && !self.is_own(to)
            && says_failure(&self.text)
        {
            named.push((to.to_lowercase(), usize::MAX));
        }
        named.truncate(MAX_RECIPIENTS);
        let addresses: Vec<&str> = named.iter().map(|(a, _)| a.as_str()).collect();
        named
            .iter()
            .map(|(address, line)| {
                let near =
                    if *line == usize::MAX { String::new() } else { words_about(&lines, *line, address, &addresses) };
                self.failure(address.clone(), None, None, &near)
            })
            .collect()
    }

    /// A failure for `address`: the reason from `near` (the words about that address) where they
    /// name one, else from the whole notice.
    fn failure(&self, address: String, original: Option<String>, status: Option<&str>, near: &str) -> Failure {
        self.failure_at(Stage::Unknown, address, original, status, near)
    }

    /// The same, with the step of the dialogue if the caller knows it; otherwise the words near
    /// the address say it, or the whole notice.
    fn failure_at(
        &self,
        stage: Stage,
        address: String,
        original: Option<String>,
        status: Option<&str>,
        near: &str,
    ) -> Failure {
        let stage = [stage, stage_in(near), self.stage_of(&address), self.whole_stage]
            .into_iter()
            .find(|s| *s != Stage::Unknown)
            .unwrap_or(Stage::Unknown);
        let mut reason = reason_at(stage, status, None, near);
        let mut detail = near.to_string();
        if reason == Reason::Undefined {
            let whole = reason_at(stage, status, None, &self.text);
            if whole != Reason::Undefined {
                reason = whole;
                if detail.is_empty() {
                    detail = shorten(&self.text);
                }
            }
        }
        if self.delay && reason == Reason::Undefined {
            reason = Reason::Expired;
        }
        if detail.is_empty() {
            detail = if self.subject.is_empty() { reason.describe().to_string() } else { self.subject.clone() };
        }
        Failure { address, original, reason, detail: shorten(&detail) }
    }
}

/// Reasons that the words near an address may give without saying much: the whole notice may say more.
fn reason_is_vague(reason: Reason) -> bool {
    matches!(reason, Reason::Undefined | Reason::SystemError | Reason::NetworkError | Reason::SecurityError)
}

/// Words in a subject that mean "still trying".
const DELAY_WORDS: [&str; 7] =
    ["delay", "warning:", "warning message", "still being retried", "deferred", "not yet delivered", "(delay)"];

/// The address stands as the subject of its line: first on it (after spaces, quotes, angle
/// brackets or a bullet), or after a label that names a recipient.
fn stands_as_recipient(line: &str, address: &str) -> bool {
    let trimmed = line.trim_start_matches(|c: char| {
        c.is_whitespace() || matches!(c, '<' | '"' | '\'' | '*' | '-' | '•' | '>' | '[' | '(')
    });
    if starts_with_ci(trimmed, address) {
        return true;
    }
    let lower = line.to_lowercase();
    let Some(at) = lower.find(&address.to_lowercase()) else { return false };
    let before = lower[..at].trim_end().trim_end_matches(['<', '"', '\'', ':', ' ']);
    [
        "rcpt to",
        "recipient",
        "recipient address",
        "original address",
        "final-recipient",
        "original-recipient",
        "rfc822",
        "to",
        "addressee",
        "address",
        "user",
        "mailbox",
        "delivery to",
        "delivered to",
        "deliver to",
        "delivering to",
        "could not be delivered to",
        "was not delivered to",
        "not be delivered to",
        "unable to deliver to",
        "failed to deliver to",
        "your message to",
        "message to",
        "following address",
        "following recipient",
        "email address",
        "e-mail address",
        "destination",
        "for",
    ]
    .iter()
    .any(|label| before.ends_with(label))
}

/// The line says a delivery failed, so an address in its middle may be the recipient.
fn says_failure(line: &str) -> bool {
    let lower = line.to_lowercase();
    [
        "could not be delivered",
        "couldn't be delivered",
        "was not delivered",
        "undeliverable",
        "delivery failed",
        "delivery to the following",
        "failed",
        "unknown",
        "does not exist",
        "not found",
        "rejected",
        "refused",
        "unable to deliver",
        "no such",
        "invalid",
        "quota",
        "full",
        "not deliver",
        "could not deliver",
    ]
    .iter()
    .any(|w| lower.contains(w))
}

/// The words about the address on line `at`: the rest of that line and the lines after it, up to
/// an empty line or another recipient's line; with a line's worth of text before it when the
/// address ends a sentence ("... could not be delivered to: addr").
fn words_about(lines: &[&str], at: usize, address: &str, others: &[&str]) -> String {
    let mut out: Vec<String> = Vec::new();
    let own_line = lines[at];
    let lower = own_line.to_lowercase();
    let after = lower.find(address).map(|i| own_line.get(i + address.len()..).unwrap_or("")).unwrap_or(own_line);
    let after = after.trim_start_matches(['>', ':', '.', ' ', '\t', ',']).trim();
    if !after.is_empty() {
        out.push(after.to_string());
    }
    for line in lines.iter().skip(at + 1).take(12) {
        let t = line.trim();
        if t.is_empty() {
            if out.is_empty() {
                continue;
            }
            break;
        }
        let l = t.to_lowercase();
        if others.iter().any(|o| *o != address && l.contains(o)) && !l.contains(address) {
            break;
        }
        if t.starts_with("---") || t.starts_with("___") || t.starts_with("===") {
            break;
        }
        out.push(t.to_string());
    }
    out.join(" ")
}

/// The notice's own parts: the top-level text parts, not the returned message, its headers, or
/// the delivery status fields.
fn notice_parts<'m>(message: &'m Message) -> impl Iterator<Item = &'m mail_parser::MessagePart<'m>> {
    message.parts.iter().filter(|p| {
        matches!(p.body, PartType::Text(_) | PartType::Html(_))
            && !p.is_content_type("text", "rfc822-headers")
            && !p.is_content_type("message", "delivery-status")
            && !p.is_content_type("message", "global-delivery-status")
            && !p.is_content_type("message", "feedback-report")
            && !p.is_content_type("message", "disposition-notification")
    })
}

/// Where a copy of the returned message starts in a notice's text (its length when none does).
fn copy_starts(text: &str) -> usize {
    const MARKERS: [&str; 33] = [
        "-------original message",
        "-------original mail info",
        "the attachment contains the original mail headers",
        "----- no message was collected -----",
        "------- returned message --------",
        "included is a copy of the message header",
        "original mail as follows:",
        "below is a copy of the original message:",
        "en-têtes de message d'origine",
        "intestazioni originali del messaggio",
        "content-type: text/rfc822-headers",
        "------ this is a copy of the message",
        "--- below this line is a copy of the message",
        "--- enclosed are the original headers",
        "----- original message -----",
        "--- original message follows",
        "original message follows",
        "----- message header follows -----",
        "------ returned message",
        "----- returned mail follows",
        "--- the header of the original message is following",
        "------ this is a copy of your message",
        "-------- original message --------",
        "----- transcript of session follows -----\n----- original message",
        "original message headers:",
        "--- mensaje original adjunto",
        "----- unsent message follows -----",
        "----- the following is a copy of the message",
        "---- begin original message",
        "|------------------------- failed addresses follow",
        "content-type: message/rfc822",
        "----- message body suppressed -----",
        "the original message was received at",
    ];
    let lower = text.to_lowercase();
    // "The original message was received at ..." opens Sendmail's notice: it is no copy.
    MARKERS[..MARKERS.len() - 1]
        .iter()
        .filter_map(|m| lower.find(m))
        .min()
        .and_then(|at| if text.is_char_boundary(at) { Some(at) } else { None })
        .unwrap_or(text.len())
}

/// A `Message-ID`-like token rather than an address: in angle brackets with a `$`, `%` or a long
/// run of letters and digits before the `@` on a line that says so.
fn looks_like_message_id(line: &str, address: &str) -> bool {
    let local = address.split('@').next().unwrap_or("");
    local.contains('$')
        || local.contains('%')
        || (local.len() > 30
            && local.bytes().filter(u8::is_ascii_digit).count() > 8
            && line.contains(&format!("<{address}>"))
            && !line.to_lowercase().contains("rcpt"))
}

/// Mail systems' own addresses: never a failed recipient.
fn is_system_address(address: &str) -> bool {
    let local = address.split('@').next().unwrap_or("");
    matches!(
        local,
        "mailer-daemon"
            | "postmaster"
            | "mail-daemon"
            | "mailerdaemon"
            | "root"
            | "abuse"
            | "noreply"
            | "no-reply"
            | "nobody"
            | "daemon"
    )
}

/// HTML to the text a reader sees, roughly: enough to find addresses and words in.
fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").replace("&nbsp;", " ").replace("&quot;", "\"")
}

// ---------------------------------------------------------------------------------------------
// RFC 3464: message/delivery-status
// ---------------------------------------------------------------------------------------------

/// The per-recipient fields of each `message/delivery-status` part (RFC 3464 §2.3); `None` when
/// the message has no such part with a recipient in it.
fn delivery_status(message: &Message, notice: &Notice) -> Option<Report> {
    let parts: Vec<_> = message
        .parts
        .iter()
        .filter(|p| {
            p.is_content_type("message", "delivery-status") || p.is_content_type("message", "global-delivery-status")
        })
        .collect();
    let mut records = Vec::new();
    for part in parts {
        records.extend(recipient_records(&String::from_utf8_lossy(part.contents())));
    }
    if records.is_empty() {
        return None;
    }
    let lines: Vec<&str> = notice.text.lines().collect();
    let mut failures: Vec<Failure> = Vec::new();
    let mut actions: Vec<String> = Vec::new();
    for record in records.iter().take(MAX_RECIPIENTS) {
        let status = record
            .get("status")
            .map(|s| s.split_whitespace().next().unwrap_or("").to_string())
            .filter(|s| !s.is_empty());
        let action = record.get("action").map(|a| a.trim().to_lowercase()).unwrap_or_else(|| {
            match status.as_deref().map(|s| s.as_bytes()[0]) {
                Some(b'2') => "delivered".into(),
                Some(b'4') => "delayed".into(),
                _ => "failed".into(),
            }
        });
        actions.push(action.clone());
        let action_word = action.split_whitespace().next().unwrap_or("");
        if !matches!(action_word, "failed" | "delayed" | "failure" | "expired")
            || status.as_deref().is_some_and(|s| s.starts_with('2'))
        {
            continue;
        }
        let final_recipient = record.get("final-recipient").map(|v| typed_address(v));
        let original = record.get("original-recipient").map(|v| typed_address(v)).filter(|a| named_address(a));
        let address = match final_recipient.filter(|a| named_address(a)).or_else(|| original.clone()) {
            Some(a) => a,
            // "Final-Recipient: LOCAL; user": the address is in the text or the headers.
            None => match notice.failed_header.first().cloned().or_else(|| notice.returned_to.clone()) {
                Some(a) => a.to_lowercase(),
                None => continue,
            },
        };
        // Exim names the address an alias led to, "(generated from <the address sent to>)",
        // and reports the latter: the failed address is the former.
        let (address, original) = match generated_from(&lines, &address) {
            Some(generated) => (generated, Some(address)),
            None => (address, original),
        };
        let original = original.filter(|o| *o != address);
        if failures.iter().any(|f| f.address == address) {
            continue;
        }
        let diagnostic = record
            .get("diagnostic-code")
            .map(|d| d.split_once(';').map_or(d.as_str(), |(_, text)| text).trim().to_string())
            .unwrap_or_default();
        // The fields first; where they say nothing specific, the words of the notice about
        // this recipient, then the whole notice. The step of the dialogue is often said only
        // in the notice ("in reply to RCPT TO command").
        let near = lines
            .iter()
            .position(|l| l.to_lowercase().contains(&address))
            .map(|i| words_about(&lines, i, &address, &[]))
            .unwrap_or_default();
        let stage = [stage_in(&diagnostic), stage_in(&near), notice.stage_of(&address)]
            .into_iter()
            .find(|s| *s != Stage::Unknown)
            .unwrap_or(Stage::Unknown);
        let mut reason = reason_at(stage, status.as_deref(), None, &diagnostic);
        let mut detail = [status.clone().unwrap_or_default(), diagnostic.clone()].join(" ").trim().to_string();
        if reason == Reason::Undefined
            || (diagnostic.is_empty() && reason_is_vague(reason))
            || (reason == Reason::UserUnknown && diagnostic.is_empty())
        {
            let from_notice = notice.failure_at(stage, address.clone(), None, status.as_deref(), &near);
            if from_notice.reason != Reason::Undefined
                && !(reason == Reason::UserUnknown && reason_is_vague(from_notice.reason))
            {
                reason = from_notice.reason;
            }
            if diagnostic.is_empty() {
                detail = [status.clone().unwrap_or_default(), from_notice.detail].join(" ").trim().to_string();
            }
        }
        if reason == Reason::Undefined && action_word != "failed" {
            reason = Reason::Expired;
        }
        failures.push(Failure {
            address,
            original,
            reason,
            detail: shorten(if detail.is_empty() { &action } else { &detail }),
        });
    }
    if failures.is_empty() {
        return Some(Report::ignored(
            Ignored::Delivered,
            format!("a delivery status notification that reports no failure ({})", actions.join(", ")),
        ));
    }
    Some(Report::bounce(failures))
}

/// The address on the line above "(generated from `address`)", if the notice has one.
fn generated_from(lines: &[&str], address: &str) -> Option<String> {
    let at = lines.iter().position(|l| {
        let l = l.to_lowercase();
        l.contains("generated from") && l.contains(address)
    })?;
    let above = lines[..at].iter().rev().find(|l| !l.trim().is_empty())?;
    addresses_in(above).into_iter().next().map(|a| a.to_lowercase()).filter(|a| a != address)
}

/// The per-recipient records of a delivery-status body: fields unfolded, names lowercased. The
/// records are the blocks between empty lines that name a recipient (RFC 3464 §2.1); a block that
/// names several (servers do not all leave the empty line) is cut at each Final-Recipient.
fn recipient_records(text: &str) -> Vec<std::collections::HashMap<String, String>> {
    let mut records = Vec::new();
    let text = text.replace("\r\n", "\n");
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let fields = fields(block);
        let recipients = fields.iter().filter(|(k, _)| k == "final-recipient").count();
        if recipients == 0 && !fields.iter().any(|(k, _)| k == "original-recipient") {
            continue;
        }
        if recipients <= 1 {
            let mut record = std::collections::HashMap::new();
            for (k, v) in fields {
                record.entry(k).or_insert(v);
            }
            records.push(record);
            continue;
        }
        let mut current: Option<std::collections::HashMap<String, String>> = None;
        for (name, value) in fields {
            let starts = match name.as_str() {
                "final-recipient" => current.as_ref().is_none_or(|c| c.contains_key("final-recipient")),
                "original-recipient" => current
                    .as_ref()
                    .is_none_or(|c| c.contains_key("original-recipient") || c.contains_key("final-recipient")),
                _ => false,
            };
            if starts {
                records.extend(current.take());
            }
            current.get_or_insert_with(std::collections::HashMap::new).entry(name).or_insert(value);
        }
        records.extend(current);
    }
    records
}

/// `Name: value` fields with continuation lines folded in.
fn fields(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = out.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':')
            && !k.is_empty()
            && !k.contains(' ')
        {
            out.push((k.trim().to_lowercase(), v.trim().to_string()));
        }
    }
    out
}

/// `rfc822; reader@example.org` → `reader@example.org`, lowercased, with RFC 3461's xtext
/// (`+2B`) decoded.
fn typed_address(value: &str) -> String {
    let address = value.split_once(';').map_or(value, |(_, a)| a).trim().trim_matches(['<', '>', '"']).trim();
    let mut out = String::new();
    let mut rest = address;
    while let Some(i) = rest.find('+') {
        out.push_str(&rest[..i]);
        let hex = rest.get(i + 1..i + 3).filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()).filter(u8::is_ascii) {
            Some(byte) => {
                out.push(byte as char);
                rest = &rest[i + 3..];
            }
            None => {
                out.push('+');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out.to_lowercase()
}

// ---------------------------------------------------------------------------------------------
// Complaints: RFC 5965 feedback reports and the older loops.
// ---------------------------------------------------------------------------------------------

/// A spam complaint: an ARF report (its `message/feedback-report` part, or its fields written in
/// a text part by providers that send it flat), or Hotmail's older loop ("complaint about
/// message from ..."). `None` when the message is none of these.
fn complaint(message: &Message) -> Option<Report> {
    let arf_part = message.parts.iter().find(|p| p.is_content_type("message", "feedback-report"));
    let report_type =
        message.content_type().and_then(|c| c.attribute("report-type")).unwrap_or("").to_ascii_lowercase();
    let fields_text = match arf_part {
        Some(part) => Some(String::from_utf8_lossy(part.contents()).into_owned()),
        None => {
            let text: String = notice_parts(message).filter_map(|p| p.text_contents()).collect::<Vec<_>>().join("\n");
            let flat = fields(&text).iter().any(|(k, v)| k == "feedback-type" && !v.is_empty());
            (flat || report_type == "feedback-report").then_some(text)
        }
    };
    let returned = returned_headers(message);
    let Some(fields_text) = fields_text else {
        let from = message.from().and_then(|a| a.first()).and_then(|a| a.address()).unwrap_or("").to_lowercase();
        let subject = message.subject().unwrap_or("").to_lowercase();
        if from.starts_with("staff@hotmail.com") || subject.starts_with("complaint about message from") {
            let complained: Vec<String> = returned
                .iter()
                .filter_map(|h| header(h, "X-HmXmrOriginalRecipient"))
                .flat_map(|v| addresses_in(&v))
                .map(|a| a.to_lowercase())
                .collect();
            if !complained.is_empty() || subject.starts_with("complaint about message from") {
                return Some(Report {
                    kind: Kind::Complaint,
                    complained,
                    why: None,
                    ..Report::ignored(Ignored::NotAReport, "abuse")
                });
            }
        }
        return None;
    };
    let fields = fields(&fields_text);
    let field =
        |name: &str| -> Vec<String> { fields.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect() };
    let feedback_type = field("feedback-type").first().map_or("abuse".to_string(), |t| t.trim().to_ascii_lowercase());
    // RFC 6650's not-spam is the opposite of a complaint.
    if feedback_type == "not-spam" {
        return Some(Report::ignored(
            Ignored::NotAComplaint,
            format!("a feedback report of type `{feedback_type}`, not a spam complaint"),
        ));
    }
    // `rfc822; a@b`, or a name and the address in angle brackets ("undisclosed recipient <a@b>").
    let mut complained: Vec<String> = field("original-rcpt-to")
        .into_iter()
        .chain(field("removal-recipient"))
        .map(|v| {
            let typed = typed_address(&v);
            if plausible_address(&typed) {
                typed
            } else {
                addresses_in(&v).into_iter().next().unwrap_or(typed).to_lowercase()
            }
        })
        .collect();
    if complained.is_empty() {
        // The returned message's headers, when the provider did not redact them.
        for block in &returned {
            for name in ["X-HmXmrOriginalRecipient", "To", "X-Original-To", "Delivered-To"] {
                if let Some(v) = header(block, name) {
                    complained.extend(addresses_in(&v).into_iter().map(|a| a.to_lowercase()));
                }
                if !complained.is_empty() {
                    break;
                }
            }
        }
    }
    complained.retain(|a| plausible_address(a));
    complained.dedup();
    Some(Report { kind: Kind::Complaint, complained, why: None, ..Report::ignored(Ignored::NotAReport, feedback_type) })
}

// ---------------------------------------------------------------------------------------------
// Amazon SES: its notifications, mailed as JSON (directly, or inside an SNS envelope).
// ---------------------------------------------------------------------------------------------

/// An Amazon SES bounce or complaint notification: a text part that is a JSON object with
/// `notificationType` (or `eventType`) `Bounce` or `Complaint`, possibly as the `Message` string of
/// an SNS notification. `None` for anything else, including a delivery notification.
fn ses_notification(message: &Message) -> Option<Report> {
    let text = notice_parts(message).filter_map(|p| p.text_contents()).find(|t| t.trim_start().starts_with('{'))?;
    let outer: serde_json::Value = serde_json::from_str(text.trim()).ok()?;
    let inner = match outer.get("Message").and_then(|m| m.as_str()) {
        Some(m) => serde_json::from_str(m).ok()?,
        None => outer,
    };
    let kind = inner.get("notificationType").or_else(|| inner.get("eventType"))?.as_str()?.to_ascii_lowercase();
    fn addresses(list: Option<&serde_json::Value>) -> Vec<(String, &serde_json::Value)> {
        list.and_then(|l| l.as_array())
            .map(|l| {
                l.iter()
                    .filter_map(|r| {
                        Some((addresses_in(r.get("emailAddress")?.as_str()?).into_iter().next()?.to_lowercase(), r))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
    match kind.as_str() {
        "bounce" => {
            let bounce = inner.get("bounce")?;
            let bounce_type = bounce.get("bounceType").and_then(|t| t.as_str()).unwrap_or("");
            let sub_type = bounce.get("bounceSubType").and_then(|t| t.as_str()).unwrap_or("");
            let failures: Vec<Failure> = addresses(bounce.get("bouncedRecipients"))
                .into_iter()
                .map(|(address, r)| {
                    let status = r.get("status").and_then(|s| s.as_str());
                    let diagnostic = r.get("diagnosticCode").and_then(|d| d.as_str()).unwrap_or("");
                    let mut reason = reason_of(status, None, diagnostic);
                    // SES's own verdicts where the server's words say nothing more.
                    if reason == Reason::Undefined {
                        reason = match (bounce_type, sub_type) {
                            ("Permanent", "General" | "NoEmail") => Reason::UserUnknown,
                            ("Permanent", "Suppressed" | "OnAccountSuppressionList") => Reason::Suspend,
                            ("Permanent", "UnsubscribedRecipient") => Reason::Filtered,
                            ("Transient", "MailboxFull") => Reason::MailboxFull,
                            ("Transient", "MessageTooLarge") => Reason::MesgTooBig,
                            ("Transient", "ContentRejected") => Reason::ContentError,
                            ("Transient", "AttachmentRejected") => Reason::PolicyViolation,
                            _ => Reason::Undefined,
                        };
                    }
                    let detail = [status.unwrap_or(""), diagnostic, bounce_type, sub_type]
                        .iter()
                        .filter(|s| !s.is_empty())
                        .copied()
                        .collect::<Vec<_>>()
                        .join(" ");
                    Failure { address, original: None, reason, detail: shorten(&detail) }
                })
                .collect();
            (!failures.is_empty()).then(|| Report::bounce(failures))
        }
        "complaint" => {
            let complaint = inner.get("complaint")?;
            let feedback =
                complaint.get("complaintFeedbackType").and_then(|t| t.as_str()).unwrap_or("abuse").to_ascii_lowercase();
            if feedback == "not-spam" {
                return Some(Report::ignored(Ignored::NotAComplaint, "an Amazon SES notification of type not-spam"));
            }
            let complained = addresses(complaint.get("complainedRecipients")).into_iter().map(|(a, _)| a).collect();
            Some(Report {
                kind: Kind::Complaint,
                complained,
                why: None,
                ..Report::ignored(Ignored::NotAReport, feedback)
            })
        }
        "delivery" => Some(Report::ignored(Ignored::Delivered, "an Amazon SES delivery notification")),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// What is not a failure report.
// ---------------------------------------------------------------------------------------------

/// An automatic reply (RFC 3834): its headers say so, or its subject does. `Auto-Submitted:
/// auto-replied` alone is not enough: Exim and others put it on failure notices too.
fn is_auto_reply(message: &Message) -> bool {
    let said_by_headers = message.headers_raw().any(|(k, v)| {
        let v = v.trim().to_ascii_lowercase();
        k.eq_ignore_ascii_case("X-Autoreply")
            || k.eq_ignore_ascii_case("X-Autorespond")
            || k.eq_ignore_ascii_case("X-Autogenerated") && v.contains("reply")
            || (k.eq_ignore_ascii_case("Precedence") && v == "auto_reply")
            || (k.eq_ignore_ascii_case("X-Auto-Response-Suppress") && !from_daemon(message))
            || (k.eq_ignore_ascii_case("Auto-Submitted")
                && v.starts_with("auto-replied")
                && !from_daemon(message)
                && !failure_subject(message))
    });
    let subject = message.subject().unwrap_or("").trim().to_lowercase();
    let said_by_subject = [
        "auto:",
        "automatic reply",
        "autoreply",
        "auto-reply",
        "auto reply",
        "out of office",
        "out of the office",
        "(automatic response)",
        "away from",
        "vacation",
        "abwesenheit",
        "réponse automatique",
        "respuesta automática",
        "risposta automatica",
        "automatisch antwoord",
        "autosvar",
    ]
    .iter()
    .any(|w| subject.contains(w));
    (said_by_headers || said_by_subject) && !failure_subject(message)
}

/// A report that is about something else than delivery: a read receipt (RFC 8098) or a report
/// type Gazette does not know. Its type, when it is one.
fn other_report(message: &Message) -> Option<String> {
    if message.parts.iter().any(|p| p.is_content_type("message", "disposition-notification")) {
        return Some("disposition-notification".into());
    }
    let report_type = message
        .content_type()
        .filter(|c| {
            c.ctype().eq_ignore_ascii_case("multipart") && c.subtype().is_some_and(|s| s.eq_ignore_ascii_case("report"))
        })?
        .attribute("report-type")?
        .to_ascii_lowercase();
    (!matches!(report_type.as_str(), "delivery-status" | "global-delivery-status" | "feedback-report"))
        .then_some(report_type)
}

/// Sent by a mail server rather than a person: the null return path, a mailer-daemon or
/// postmaster sender, or the subject line of a failure notice.
fn from_mail_system(message: &Message) -> bool {
    let null_sender = message
        .headers_raw()
        .any(|(k, v)| k.eq_ignore_ascii_case("Return-Path") && matches!(v.trim(), "<>" | "" | "<MAILER-DAEMON>"));
    let failed = message.headers_raw().any(|(k, _)| k.eq_ignore_ascii_case("X-Failed-Recipients"));
    null_sender || failed || from_daemon(message) || failure_subject(message)
}

fn from_daemon(message: &Message) -> bool {
    let from = message.from().and_then(|a| a.first());
    let local = from.and_then(|a| a.address()).and_then(|a| a.split('@').next()).unwrap_or("").to_ascii_lowercase();
    let name = from.and_then(|a| a.name()).unwrap_or("").to_ascii_lowercase();
    [
        "mailer-daemon",
        "mailerdaemon",
        "mail-daemon",
        "postmaster",
        "mdaemon",
        "mail.delivery",
        "maildelivery",
        "bounce",
        "nobody",
    ]
    .iter()
    .any(|d| local.starts_with(d))
        || [
            "mail delivery",
            "mail administrator",
            "mailer-daemon",
            "mailer daemon",
            "postmaster",
            "mail system",
            "mail router",
            "delivery subsystem",
            "system administrator",
            "delivery failure",
            "delivery status",
        ]
        .iter()
        .any(|n| name.contains(n))
}

fn failure_subject(message: &Message) -> bool {
    let subject = message.subject().unwrap_or("").trim().to_lowercase();
    let subject = subject.trim_start_matches("fw:").trim_start_matches("fwd:").trim();
    [
        "undeliverable",
        "undelivered",
        "undeliverd",
        "delivery status notification",
        "delivery notification",
        "returned mail",
        "return mail",
        "failure notice",
        "failed mail",
        "mail delivery failed",
        "mail delivery failure",
        "mail delivery problem",
        "delivery failure",
        "delivery failed",
        "delivery has failed",
        "delivery delay",
        "delayed mail",
        "warning: could not send",
        "warning: message",
        "nondeliverable",
        "non-deliverable",
        "non-delivery",
        "mail could not be delivered",
        "message not delivered",
        "could not send message",
        "mail system error",
        "rejected:",
        "error sending",
        "delivery report",
        "problem delivering",
    ]
    .iter()
    .any(|s| subject.contains(s))
}

// ---------------------------------------------------------------------------------------------
// Clues: VERP tokens, Message-IDs, addresses.
// ---------------------------------------------------------------------------------------------

/// Every decoded text part of the message (its own, not a returned message's).
fn all_text(message: &Message) -> String {
    let mut out = String::new();
    for part in &message.parts {
        if let PartType::Text(t) | PartType::Html(t) = &part.body {
            out.push_str(t);
            out.push('\n');
        }
    }
    out
}

/// The headers of the original message a report returns: a `message/rfc822` part's, or a
/// `text/rfc822-headers` part's text.
fn returned_headers(message: &Message) -> Vec<String> {
    let mut out = Vec::new();
    for part in message.parts.iter().skip(1) {
        if let Some(inner) = part.message() {
            let raw = inner.raw_message();
            let end = find(raw, b"\r\n\r\n").or_else(|| find(raw, b"\n\n")).unwrap_or(raw.len());
            out.push(String::from_utf8_lossy(&raw[..end]).into_owned());
        } else if part.is_content_type("text", "rfc822-headers") {
            out.push(String::from_utf8_lossy(part.contents()).into_owned());
        }
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

/// The value of header `name` in a block of headers, unfolded.
fn header(headers: &str, name: &str) -> Option<String> {
    let mut lines = headers.lines().peekable();
    while let Some(line) = lines.next() {
        // A continuation line is part of the field above (a DKIM signature's `h=To: From:`).
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let Some((k, v)) = line.split_once(':') else { continue };
        if k.trim().eq_ignore_ascii_case(name) && !k.contains(' ') {
            let mut value = v.trim().to_string();
            while let Some(next) = lines.next_if(|l| l.starts_with([' ', '\t'])) {
                value.push(' ');
                value.push_str(next.trim());
            }
            return Some(value);
        }
    }
    None
}

/// Message-IDs of the returned original: in its headers when they are returned as a part, else
/// any `Message-ID:` line in the report's text other than the report's own.
fn original_message_ids(message: &Message) -> Vec<String> {
    let own = message.message_id().map(|id| format!("<{id}>"));
    let mut ids: Vec<String> = returned_headers(message).iter().filter_map(|h| header(h, "Message-ID")).collect();
    for line in all_text(message).lines() {
        let line = line.trim();
        if let Some(value) = strip_prefix_ci(line, "message-id:") {
            ids.push(value.trim().to_string());
        }
    }
    let mut out: Vec<String> = Vec::new();
    for id in ids {
        let id = id.trim().to_string();
        if id.starts_with('<') && id.ends_with('>') && Some(&id) != own.as_ref() && !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

/// Candidate tokens: whatever stands between `local+` and `@domain` anywhere in the message (its
/// headers, the returned headers, the text), in the characters a token has.
fn verp_tokens(message: &Message, bounce: &lettre::Address) -> Vec<String> {
    let prefix = format!("{}+", bounce.user()).to_ascii_lowercase();
    let suffix = format!("@{}", bounce.domain()).to_ascii_lowercase();
    let mut text = String::from_utf8_lossy(message.raw_message()).to_ascii_lowercase();
    text.push('\n');
    text.push_str(&all_text(message).to_ascii_lowercase());
    let mut out: Vec<String> = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find(&prefix) {
        let start = from + at + prefix.len();
        let token: String =
            text[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-').collect();
        if text[start + token.len()..].starts_with(&suffix) && !token.is_empty() && !out.contains(&token) {
            out.push(token.clone());
        }
        from = start;
    }
    out
}

/// Every address-looking word in `text`, in order, without angle brackets, quotes or brackets.
fn addresses_in(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in text.split(|c: char| {
        c.is_whitespace() || matches!(c, '<' | '>' | '(' | ')' | '\'' | '"' | ',' | ';' | '[' | ']' | '{' | '}' | '|')
    }) {
        let word = word.trim_matches(|c: char| matches!(c, '.' | ':' | '!' | '?' | '=' | '*'));
        let word = strip_prefix_ci(word, "mailto:").or_else(|| strip_prefix_ci(word, "rfc822:")).unwrap_or(word);
        if plausible_address(word) && !out.iter().any(|a| a.eq_ignore_ascii_case(word)) {
            out.push(word.to_string());
        }
    }
    out
}

/// What a delivery status field names as an address: something on both sides of an `@` and no
/// space (the report says it is an address; its domain may be one no resolver would take).
fn named_address(text: &str) -> bool {
    text.rsplit_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty() && !text.contains(char::is_whitespace))
}

/// One `@` with something on both sides, and a dot in a domain of letters, digits, dots and hyphens.
fn plausible_address(word: &str) -> bool {
    match word.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !local
                    .contains(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '(' | ')' | ',' | ';' | '[' | ']'))
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains("..")
                && domain.chars().all(|c| c.is_alphanumeric() || c == '.' || c == '-' || c == '_')
        }
        None => false,
    }
}

fn starts_with_ci(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len()).is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    if starts_with_ci(text, prefix) { text.get(prefix.len()..) } else { None }
}

/// A text cut to a length a table and a database column hold comfortably.
fn shorten(text: &str) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(300) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_addresses_lose_their_type_and_xtext() {
        assert_eq!(typed_address("rfc822; reader@example.org"), "reader@example.org");
        assert_eq!(typed_address("rfc822;ada+2Bnews@example.org"), "ada+news@example.org");
        assert_eq!(typed_address("RFC822;<Ada+news@Example.org>"), "ada+news@example.org");
        assert_eq!(typed_address("rfc822;a+E9@example.org"), "a+e9@example.org", "xtext is ASCII only");
    }

    #[test]
    fn a_report_is_never_built_from_a_personal_reply_that_mentions_addresses() {
        let raw = b"From: Ada <ada@example.org>\r\nTo: newsletter@signals.example.org\r\nSubject: Re: Signals Weekly #3\r\n\r\n\
                    This was not delivered to: bob@example.org because: I moved.\r\n\
                    ----- The following addresses had permanent fatal errors -----\r\n<carol@example.org>\r\n";
        let r = classify(raw, None);
        assert_eq!(r.kind, Kind::Ignored, "{r:?}");
        assert_eq!(r.why, Some(Ignored::NotAReport));
        assert!(r.failures.is_empty());
    }

    #[test]
    fn delivery_status_records_without_blank_lines_between_them_are_each_read() {
        let raw = "From: MAILER-DAEMON@mx.example.net\r\nTo: news@signals.example.org\r\nSubject: Undelivered Mail\r\n\
                   Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n\
                   --b\r\nContent-Type: text/plain\r\n\r\nSorry.\r\n\
                   --b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\
                   Final-Recipient: rfc822; ONE@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n\
                   Final-Recipient: rfc822; two@example.com\r\nAction: failed\r\nStatus: 5.2.2\r\nDiagnostic-Code: smtp; 552 5.2.2 Mailbox full\r\n\
                   Final-Recipient: rfc822; three@example.com\r\nAction: delivered\r\nStatus: 2.0.0\r\n--b--\r\n";
        let r = classify(raw.as_bytes(), None);
        let got: Vec<(&str, Reason)> = r.failures.iter().map(|f| (f.address.as_str(), f.reason)).collect();
        assert_eq!(got, [("one@example.com", Reason::UserUnknown), ("two@example.com", Reason::MailboxFull)]);
        assert_eq!(r.permanent().count(), 1);
        assert_eq!(r.temporary().count(), 1);
    }

    #[test]
    fn an_exim_notice_without_a_status_part_names_the_failed_address_and_its_reason() {
        let raw = "Return-path: <>\nX-Failed-Recipients: gone@example.com\nFrom: Mail Delivery System <Mailer-Daemon@mx.example.net>\n\
                   To: news@signals.example.org\nSubject: Mail delivery failed: returning message to sender\n\n\
                   This message was created automatically by mail delivery software.\n\n\
                   A message that you sent could not be delivered to one or more of its\nrecipients. This is a permanent error. The following address(es) failed:\n\n\
                   \x20 gone@example.com\n    SMTP error from remote mail server after RCPT TO:<gone@example.com>:\n    host mx.example.com [192.0.2.1]: 550 Requested action not taken:\n    mailbox unavailable\n\n\
                   ------ This is a copy of the message, including all the headers. ------\nTo: gone@example.com\nFrom: news@signals.example.org\n";
        let r = classify(raw.as_bytes(), None);
        assert_eq!(r.kind, Kind::Bounce, "{r:?}");
        assert_eq!(r.failures.len(), 1, "{r:?}");
        assert_eq!((r.failures[0].address.as_str(), r.failures[0].reason), ("gone@example.com", Reason::UserUnknown));
    }

    #[test]
    fn a_spam_refusal_is_the_senders_problem_not_the_readers() {
        let raw = "Return-Path: <>\nFrom: MAILER-DAEMON@mx.example.net\nSubject: Undelivered Mail Returned to Sender\n\n\
                   This is the mail system at host mx.example.net.\n\n\
                   <reader@example.com>: host mx.example.com[192.0.2.1] said: 550 5.7.1 Message rejected as spam (in reply to end of DATA command)\n";
        let r = classify(raw.as_bytes(), None);
        assert_eq!(r.failures.len(), 1, "{r:?}");
        assert_eq!(r.failures[0].reason, Reason::SpamDetected);
        assert_eq!(r.refused().count(), 1);
        assert_eq!(r.permanent().count(), 0);
    }

    #[test]
    fn an_out_of_office_reply_is_left_alone_even_from_a_null_sender() {
        let raw = "Return-Path: <>\nFrom: ada@example.com\nSubject: Out of Office: Signals Weekly #3\nAuto-Submitted: auto-replied\n\n\
                   I am away until Monday; in urgent cases write to bob@example.com.\n";
        let r = classify(raw.as_bytes(), None);
        assert_eq!((r.kind, r.why), (Kind::Ignored, Some(Ignored::AutoReply)), "{r:?}");
    }

    #[test]
    fn amazon_ses_notifications_are_read_inside_their_sns_envelope() {
        let bounce = r#"{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bounceSubType":"General","bouncedRecipients":[{"emailAddress":"Gone <gone@example.com>","action":"failed","status":"5.1.1","diagnosticCode":"smtp; 550 5.1.1 user unknown"},{"emailAddress":"spam@example.net","status":"5.7.1","diagnosticCode":"smtp; 554 5.7.1 Message rejected as spam"}]},"mail":{"messageId":"x"}}"#;
        let sns = serde_json::json!({"Type": "Notification", "Message": bounce}).to_string();
        let raw = format!(
            "From: AWS Notifications <no-reply@sns.amazonaws.com>\nSubject: AWS Notification Message\nContent-Type: text/plain; charset=UTF-8\n\n{sns}\n"
        );
        let r = classify(raw.as_bytes(), None);
        let got: Vec<(&str, Reason)> = r.failures.iter().map(|f| (f.address.as_str(), f.reason)).collect();
        assert_eq!(
            got,
            [("gone@example.com", Reason::UserUnknown), ("spam@example.net", Reason::SpamDetected)],
            "{r:?}"
        );
        let complaint = r#"{"notificationType":"Complaint","complaint":{"complainedRecipients":[{"emailAddress":"ada@example.org"}],"complaintFeedbackType":"abuse"}}"#;
        let raw = format!("From: no-reply@sns.amazonaws.com\nSubject: AWS Notification Message\n\n{complaint}\n");
        let r = classify(raw.as_bytes(), None);
        assert_eq!((r.kind, r.complained.as_slice()), (Kind::Complaint, ["ada@example.org".to_string()].as_slice()));
        let delivery = r#"{"notificationType":"Delivery","delivery":{"recipients":["ada@example.org"]}}"#;
        let raw = format!("From: no-reply@sns.amazonaws.com\nSubject: AWS Notification Message\n\n{delivery}\n");
        assert_eq!(classify(raw.as_bytes(), None).why, Some(Ignored::Delivered));
    }

    #[test]
    fn text_that_is_not_a_message_is_ignored_and_multibyte_text_never_panics() {
        assert_eq!(classify(b"", None).why, Some(Ignored::NotAMessage));
        assert_eq!(classify(b"\x00\xff\xfe garbage", None).kind, Kind::Ignored);
        let raw = "Return-Path: <>\nFrom: MAILER-DAEMON@mx.example.jp\nSubject: 配信エラー\n\nメッセージーid: あ\n• <ユーザー@例え.jp>: 宛先不明 550 5.1.1\n";
        let r = classify(raw.as_bytes(), None);
        assert_eq!(r.kind, Kind::Bounce, "{r:?}");
    }
}
