//! What one message that came back says: a delivery failure (RFC 3464 delivery status
//! notifications, and the older plain-text reports of qmail, Postfix, Sendmail, Exchange, Lotus
//! Notes, Yahoo and AOL), a complaint (ARF, RFC 5965), or neither. Pure: bytes in, `Report` out;
//! who the message is about is decided later (`attribute`), from the clues gathered here.

use mail_parser::{Message, MessageParser, MimeHeaders};

use super::reason::{Reason, Scope, reason_of};

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

/// One address that could not be delivered to.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub address: String,
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
    /// Why it is ignored, or the feedback type of a complaint: for people.
    pub note: String,
    /// Texts found after `<bounce local part>+` in an address at the bounce domain: candidate
    /// VERP tokens, still to be verified.
    pub verp_tokens: Vec<String>,
    /// Message-IDs of the returned original message (angle brackets kept).
    pub original_message_ids: Vec<String>,
}

impl Report {
    fn ignored(note: impl Into<String>) -> Report {
        Report {
            kind: Kind::Ignored,
            failures: Vec::new(),
            complained: Vec::new(),
            note: note.into(),
            verp_tokens: Vec::new(),
            original_message_ids: Vec::new(),
        }
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
    let Some(message) = MessageParser::default().parse(raw) else {
        return Report::ignored("not an email message (no headers)");
    };
    let mut report = if message.is_content_type("multipart", "report") {
        let report_type = message.content_type().and_then(|c| c.attribute("report-type")).unwrap_or("").to_ascii_lowercase();
        match report_type.as_str() {
            "delivery-status" | "global-delivery-status" => delivery_status(&message),
            "feedback-report" => feedback_report(&message),
            // A disposition notification ("read receipt") or another report: not about delivery.
            other => legacy(&message).unwrap_or_else(|| Report::ignored(format!("a report of type `{other}`, not a delivery failure or a complaint"))),
        }
    } else {
        legacy(&message).unwrap_or_else(|| Report::ignored(why_ignored(&message)))
    };
    if report.kind != Kind::Ignored {
        report.original_message_ids = original_message_ids(&message);
        if let Some(bounce) = bounce_address {
            report.verp_tokens = verp_tokens(&message, bounce);
        }
    }
    report
}

// ---------------------------------------------------------------------------------------------
// RFC 3464: multipart/report; report-type=delivery-status
// ---------------------------------------------------------------------------------------------

/// The per-recipient fields of a `message/delivery-status` part (RFC 3464 §2.3).
fn delivery_status(message: &Message) -> Report {
    let Some(part) = message.parts.iter().find(|p| {
        p.is_content_type("message", "delivery-status") || p.is_content_type("message", "global-delivery-status")
    }) else {
        // Some servers label it a report and put only text in: read the text.
        return legacy(message).unwrap_or_else(|| Report::ignored("a delivery report without a message/delivery-status part"));
    };
    let text = String::from_utf8_lossy(part.contents());
    let mut failures = Vec::new();
    let mut actions = Vec::new();
    // The first block is about the message; each later one about a recipient.
    for block in field_blocks(&text).into_iter().skip(1) {
        let field = |name: &str| block.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
        let action = field("Action").unwrap_or("").trim().to_ascii_lowercase();
        let status = field("Status").unwrap_or("").trim().to_string();
        let diagnostic = field("Diagnostic-Code").map(|d| d.split_once(';').map_or(d, |(_, text)| text).trim().to_string());
        let recipient = field("Original-Recipient").or(field("Final-Recipient")).map(typed_address);
        actions.push(action.clone());
        let Some(address) = recipient.filter(|a| a.contains('@')) else { continue };
        let permanent = match action.as_str() {
            "failed" => !status.starts_with('4'),
            "delayed" => false,
            // delivered, relayed, expanded: it went through.
            _ => continue,
        };
        let mut reason = status.clone();
        if let Some(d) = diagnostic.filter(|d| !d.is_empty()) {
            reason = if reason.is_empty() { d } else { format!("{reason} {d}") };
        }
        if reason.is_empty() {
            reason = action.clone();
        }
        failures.push(Draft { address, permanent, reason });
    }
    if failures.is_empty() {
        let said = if actions.is_empty() { "no recipient".to_string() } else { actions.join(", ") };
        return Report::ignored(format!("a delivery status notification that reports no failure ({said})"));
    }
    Report { kind: Kind::Bounce, failures: failures.into_iter().map(Draft::into_failure).collect(), ..Report::ignored("") }
}

/// `rfc822; reader@example.org` → `reader@example.org`, with RFC 3461's xtext (`+2B`) decoded.
fn typed_address(value: &str) -> String {
    let address = value.split_once(';').map_or(value, |(_, a)| a).trim().trim_matches(['<', '>']);
    let mut out = String::new();
    let mut rest = address;
    while let Some(i) = rest.find('+') {
        out.push_str(&rest[..i]);
        let hex = rest.get(i + 1..i + 3).filter(|h| h.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)));
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
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
    out
}

/// Header-style fields (`Name: value`, continued on indented lines) in blocks separated by
/// blank lines.
fn field_blocks(text: &str) -> Vec<Vec<(String, String)>> {
    let mut blocks = Vec::new();
    let mut block: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if !block.is_empty() {
                blocks.push(std::mem::take(&mut block));
            }
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = block.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            block.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    if !block.is_empty() {
        blocks.push(block);
    }
    blocks
}

// ---------------------------------------------------------------------------------------------
// RFC 5965: multipart/report; report-type=feedback-report
// ---------------------------------------------------------------------------------------------

fn feedback_report(message: &Message) -> Report {
    let Some(part) = message.parts.iter().find(|p| p.is_content_type("message", "feedback-report")) else {
        return Report::ignored("a feedback report without a message/feedback-report part");
    };
    let text = String::from_utf8_lossy(part.contents());
    let fields: Vec<(String, String)> = field_blocks(&text).into_iter().flatten().collect();
    let field = |name: &str| -> Vec<String> { fields.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone()).collect() };
    let feedback_type = field("Feedback-Type").first().map_or("abuse", |t| t.as_str()).trim().to_ascii_lowercase();
    // RFC 5965 §7.3: abuse is the spam complaint; fraud, virus and other are about the content,
    // and RFC 6650's not-spam is the opposite of a complaint.
    if feedback_type != "abuse" {
        return Report::ignored(format!("a feedback report of type `{feedback_type}`, not a spam complaint"));
    }
    let mut complained: Vec<String> = field("Original-Rcpt-To").into_iter().chain(field("Removal-Recipient")).map(|a| typed_address(&a)).collect();
    if complained.is_empty() {
        // The returned message's To, when the provider did not redact it.
        complained.extend(returned_headers(message).iter().filter_map(|h| header(h, "To")).filter_map(bare_address));
    }
    complained.retain(|a| plausible_address(a));
    complained.dedup();
    Report { kind: Kind::Complaint, complained, note: "abuse".into(), ..Report::ignored("") }
}

// ---------------------------------------------------------------------------------------------
// The older plain-text reports.
// ---------------------------------------------------------------------------------------------

/// A failure report that is not RFC 3464, recognized by the words its software writes, in a
/// message from a mail system (a person's reply that happens to hold those words is not one).
fn legacy(message: &Message) -> Option<Report> {
    if !from_mail_system(message) {
        return None;
    }
    let body = all_text(message);
    let subject = message.subject().unwrap_or("").to_string();
    let failures = qmail(&body)
        .or_else(|| postfix_text(&body))
        .or_else(|| sendmail(&body))
        .or_else(|| exchange(&body))
        .or_else(|| lotus(&body, &subject))?;
    if failures.is_empty() {
        return None;
    }
    Some(Report { kind: Kind::Bounce, failures: failures.into_iter().map(Draft::into_failure).collect(), ..Report::ignored("") })
}

/// Sent by a mail server rather than a person: the null return path, a mailer-daemon or
/// postmaster sender, or the subject line of a failure notice.
fn from_mail_system(message: &Message) -> bool {
    let null_sender = message.headers_raw().any(|(k, v)| k.eq_ignore_ascii_case("Return-Path") && v.trim() == "<>");
    let from = message.from().and_then(|a| a.first());
    let local = from.and_then(|a| a.address()).and_then(|a| a.split('@').next()).unwrap_or("").to_ascii_lowercase();
    let name = from.and_then(|a| a.name()).unwrap_or("").to_ascii_lowercase();
    let daemon = ["mailer-daemon", "mailerdaemon", "mail-daemon", "postmaster", "mdaemon"].iter().any(|d| local.starts_with(d))
        || ["mail delivery", "mail administrator", "mailer-daemon", "postmaster", "mail system", "mail router"].iter().any(|n| name.contains(n));
    let subject = message.subject().unwrap_or("").trim().to_ascii_lowercase();
    let failure_subject = [
        "undeliverable",
        "undelivered mail",
        "delivery status notification",
        "returned mail",
        "failure notice",
        "mail delivery failed",
        "delivery failure",
        "delivery delay",
        "warning: could not send message",
        "delayed mail",
        "nondeliverable",
        "non-delivery",
    ]
    .iter()
    .any(|s| subject.starts_with(s));
    null_sender || daemon || failure_subject
}

/// qmail ("Hi. This is the qmail-send program at …"), and Yahoo's mail servers, which write the
/// same layout: `<address>:` then the reason, up to "--- Below this line is a copy of the message."
fn qmail(body: &str) -> Option<Vec<Draft>> {
    let starts = ["This is the qmail-send program", "Sorry, we were unable to deliver your message to the following address"];
    let start = starts.iter().filter_map(|s| body.find(s)).min()?;
    let section = before_copy(&body[start..]);
    let mut failures = Vec::new();
    let lines: Vec<&str> = section.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let line = line.trim();
        let Some(address) = line.strip_prefix('<').and_then(|l| l.split_once(">:")).map(|(a, _)| a.trim()) else { continue };
        let same_line = line.split_once(">:").map(|(_, r)| r.trim()).unwrap_or("");
        let following: Vec<&str> = lines[i + 1..].iter().map(|l| l.trim()).take_while(|l| !l.is_empty() && !l.starts_with('<')).collect();
        let reason = std::iter::once(same_line).chain(following).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ");
        let permanent = !is_temporary(&reason);
        failures.push(Draft { address: address.to_string(), permanent, reason: shorten(&reason) });
    }
    Some(failures)
}

/// Postfix's report without the machine-readable part: "This is the mail system at host …" (or,
/// from older versions, "This is the Postfix program at host …"), then `<address>: reason`.
/// "THIS IS A WARNING ONLY" marks a delay.
fn postfix_text(body: &str) -> Option<Vec<Draft>> {
    let start = ["This is the mail system at host", "This is the Postfix program at host"].iter().filter_map(|s| body.find(s)).min()?;
    let section = before_copy(&body[start..]);
    let warning = section.contains("THIS IS A WARNING ONLY");
    let mut failures = Vec::new();
    let lines: Vec<&str> = section.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.strip_prefix('<') else { continue };
        let Some((address, reason)) = rest.split_once(">") else { continue };
        // `<a@b> (expanded from <c@d>): reason` or `<a@b>: reason`
        let Some((_, reason)) = reason.split_once(':') else { continue };
        let following = lines[i + 1..].iter().take_while(|l| l.starts_with([' ', '\t'])).map(|l| l.trim());
        let reason = std::iter::once(reason.trim()).chain(following).collect::<Vec<_>>().join(" ");
        let permanent = !warning && !is_temporary(&reason);
        failures.push(Draft { address: address.trim().to_string(), permanent, reason: shorten(&reason) });
    }
    Some(failures)
}

/// Sendmail (and AOL's servers, which were Sendmail's): "----- The following addresses had
/// permanent fatal errors -----" or "… transient non-fatal errors -----", then one `<address>`
/// a line, each perhaps with "(reason: …)" below.
fn sendmail(body: &str) -> Option<Vec<Draft>> {
    let markers = [("had permanent fatal errors", true), ("had transient non-fatal errors", false)];
    let mut failures = Vec::new();
    let mut found = false;
    for (marker, permanent) in markers {
        let Some(at) = body.find(marker) else { continue };
        found = true;
        let section = body[at..].lines().skip(1);
        let mut current: Option<Draft> = None;
        for line in section {
            let line = line.trim();
            if line.is_empty() || line.starts_with("-----") {
                break;
            }
            if let Some(address) = line.strip_prefix('<').and_then(|l| l.split('>').next()) {
                failures.extend(current.take());
                current = Some(Draft { address: address.trim().to_string(), permanent, reason: String::new() });
            } else if let Some(f) = current.as_mut() {
                let reason = line.trim_start_matches("(reason:").trim_end_matches(')').trim();
                f.reason = if f.reason.is_empty() { reason.to_string() } else { format!("{} {reason}", f.reason) };
            }
        }
        failures.extend(current);
    }
    if !found {
        return None;
    }
    for f in &mut failures {
        // A transient section with a 5xx reason is still transient: Sendmail is still trying.
        if f.permanent && is_temporary(&f.reason) {
            f.permanent = false;
        }
        if f.reason.is_empty() {
            f.reason = if f.permanent { "permanent fatal error".into() } else { "transient non-fatal error".into() };
        }
        f.reason = shorten(&f.reason);
    }
    Some(failures)
}

/// Exchange's and Outlook's non-delivery notices without a machine-readable part: "The following
/// recipient(s) cannot be reached:" (or "could not be reached", "Delivery has failed to these
/// recipients or groups:"), then the recipients, each with an `#5.1.1`-style status.
fn exchange(body: &str) -> Option<Vec<Draft>> {
    let markers = [
        "The following recipient(s) cannot be reached:",
        "The following recipient(s) could not be reached:",
        "Delivery has failed to these recipients or groups:",
        "Your message did not reach some or all of the intended recipients.",
    ];
    let start = markers.iter().filter_map(|m| body.find(m).map(|at| at + m.len())).min()?;
    let section = &body[start..];
    let end = ["Original message headers:", "Diagnostic information for administrators:", "________________________________"]
        .iter()
        .filter_map(|m| section.find(m))
        .min()
        .unwrap_or(section.len());
    // Exchange names the recipient and puts the status on the following lines: a status applies
    // to the addresses above it that have none yet.
    let mut failures: Vec<Draft> = Vec::new();
    let mut open = 0;
    for line in section[..end].lines().map(str::trim).filter(|l| !l.is_empty()) {
        let addresses = addresses_in(line);
        if !addresses.is_empty() && !line.starts_with('<') {
            for address in addresses {
                if !failures.iter().any(|f| f.address.eq_ignore_ascii_case(&address)) {
                    failures.push(Draft { address, permanent: true, reason: String::new() });
                }
            }
            continue;
        }
        if failures.len() > open {
            for f in &mut failures[open..] {
                f.reason = if f.reason.is_empty() { line.to_string() } else { format!("{} {line}", f.reason) };
            }
            if line.contains('#') || line.contains("SMTP;") {
                open = failures.len();
            }
        }
    }
    for f in &mut failures {
        f.permanent = !is_temporary(&f.reason);
        f.reason = shorten(if f.reason.is_empty() { "could not be reached" } else { &f.reason });
    }
    Some(failures)
}

/// Lotus Notes (Domino): "Your message … was not delivered to: <address> because: <reason>";
/// a "DELIVERY DELAY NOTIFICATION" is temporary.
fn lotus(body: &str, subject: &str) -> Option<Vec<Draft>> {
    let (marker, permanent) = [("was not delivered to:", true), ("has not been delivered to:", false)]
        .into_iter()
        .find(|(m, _)| body.contains(m))?;
    let after = &body[body.find(marker)? + marker.len()..];
    let (who, why) = after.split_once("because:").unwrap_or((after, ""));
    let reason = why.lines().map(str::trim).skip_while(|l| l.is_empty()).take_while(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
    let permanent = permanent && !subject.to_ascii_uppercase().contains("DELAY") && !is_temporary(&reason);
    let reason = shorten(if reason.is_empty() { "not delivered" } else { &reason });
    Some(addresses_in(who).into_iter().map(|address| Draft { address, permanent, reason: reason.clone() }).collect())
}

/// The part of a report before the returned copy of the message: addresses in the copy are the
/// sender's and the recipient's, not failures.
fn before_copy(text: &str) -> &str {
    let ends = [
        "--- Below this line is a copy of the message",
        "--- Enclosed are the original headers",
        "----- Original message -----",
        "--- Original message follows",
    ];
    let end = ends.iter().filter_map(|e| text.find(e)).min().unwrap_or(text.len());
    &text[..end]
}

/// A reason that says "try again later": a 4xx reply or 4.x.x status, or the words of a delay.
fn is_temporary(reason: &str) -> bool {
    let lower = reason.to_ascii_lowercase();
    if ["temporary", "temporarily", "try again later", "still trying", "will be retried", "delivery delayed"].iter().any(|w| lower.contains(w)) {
        return true;
    }
    match first_status(reason) {
        Some(code) => code.starts_with('4'),
        None => false,
    }
}

/// The first SMTP status in `text`: an enhanced status (`5.1.1`, `#4.4.7`) or a reply code
/// (`550`, `452`) standing as a word.
fn first_status(text: &str) -> Option<String> {
    let words = text.split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | '#' | ';' | ',' | '[' | ']' | '<' | '>' | ':'));
    words.filter(|w| !w.is_empty()).find_map(|w| {
        let w = w.trim_end_matches('.');
        let parts: Vec<&str> = w.split('.').collect();
        let enhanced = parts.len() == 3
            && matches!(parts[0], "2" | "4" | "5")
            && parts[1..].iter().all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
        let reply = w.len() == 3 && w.bytes().all(|b| b.is_ascii_digit()) && matches!(w.as_bytes()[0], b'4' | b'5');
        (enhanced || reply).then(|| w.to_string())
    })
}

/// A failure as the format readers find it, before its reason is read.
struct Draft {
    address: String,
    permanent: bool,
    reason: String,
}

impl Draft {
    fn into_failure(self) -> Failure {
        let status = first_status(&self.reason);
        let mut reason = reason_of(status.as_deref().filter(|s| s.contains('.')), None, &self.reason);
        if reason == Reason::Undefined && self.permanent {
            reason = Reason::UserUnknown;
        }
        Failure { address: self.address, reason, detail: self.reason }
    }
}

// ---------------------------------------------------------------------------------------------
// Clues: VERP tokens, Message-IDs, addresses.
// ---------------------------------------------------------------------------------------------

/// Every text the message holds: its text parts decoded, and the raw bytes (for headers and
/// parts a parser calls binary, such as `text/rfc822-headers` in some reports).
fn all_text(message: &Message) -> String {
    let mut out = String::new();
    for part in &message.parts {
        if let mail_parser::PartType::Text(t) | mail_parser::PartType::Html(t) = &part.body {
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
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The value of header `name` in a block of headers, unfolded.
fn header(headers: &str, name: &str) -> Option<String> {
    let mut lines = headers.lines().peekable();
    while let Some(line) = lines.next() {
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
        if line.len() > 11 && line[..11].eq_ignore_ascii_case("message-id:") {
            ids.push(line[11..].trim().to_string());
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
        let token: String = text[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-').collect();
        if text[start + token.len()..].starts_with(&suffix) && !token.is_empty() && !out.contains(&token) {
            out.push(token.clone());
        }
        from = start;
    }
    out
}

/// The address of a header value such as `"Ada" <ada@example.org>` or `ada@example.org`.
fn bare_address(value: String) -> Option<String> {
    addresses_in(&value).into_iter().next()
}

/// Every address-looking word in `text`, in order, without angle brackets, quotes or brackets.
fn addresses_in(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in text.split(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '(' | ')' | '\'' | '"' | ',' | ';' | '[' | ']')) {
        let word = word.trim_matches(|c: char| matches!(c, '.' | ':'));
        if plausible_address(word) && !out.iter().any(|a| a.eq_ignore_ascii_case(word)) {
            out.push(word.to_string());
        }
    }
    out
}

/// One `@` with something on both sides, and a dot in the domain.
fn plausible_address(word: &str) -> bool {
    match word.split_once('@') {
        Some((local, domain)) => !local.is_empty() && domain.contains('.') && !domain.contains('@') && !domain.starts_with('.') && !domain.ends_with('.'),
        None => false,
    }
}

/// Why a message is not a report, for people.
fn why_ignored(message: &Message) -> String {
    let auto = message.headers_raw().any(|(k, v)| {
        (k.eq_ignore_ascii_case("Auto-Submitted") && !v.trim().eq_ignore_ascii_case("no"))
            || k.eq_ignore_ascii_case("X-Autoreply")
            || k.eq_ignore_ascii_case("X-Autorespond")
    });
    if auto { "an automatic reply (out of office or similar), not a failure report".into() } else { "not a failure report or a complaint".into() }
}

/// A reason cut to a length a table and a database column hold comfortably.
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
    fn statuses_are_found_as_words() {
        assert_eq!(first_status("host said: 550 5.1.1 <a@b.org>: unknown"), Some("550".into()));
        assert_eq!(first_status("<mx.example.org #5.1.1 SMTP; user unknown>"), Some("5.1.1".into()));
        assert_eq!(first_status("Mailbox full (#4.2.2)"), Some("4.2.2".into()));
        assert_eq!(first_status("version 1.5.0 of 2023"), None, "not a status: 1.x.x");
        assert_eq!(first_status("room 4550"), None);
        assert!(is_temporary("452 4.2.2 Mailbox full"));
        assert!(!is_temporary("550 5.1.1 User unknown"));
    }

    #[test]
    fn typed_addresses_lose_their_type_and_xtext() {
        assert_eq!(typed_address("rfc822; reader@example.org"), "reader@example.org");
        assert_eq!(typed_address("rfc822;ada+2Bnews@example.org"), "ada+news@example.org");
        assert_eq!(typed_address("rfc822;<ada+news@example.org>"), "ada+news@example.org");
    }

    #[test]
    fn a_report_is_never_built_from_a_personal_reply_that_mentions_addresses() {
        let raw = b"From: Ada <ada@example.org>\r\nTo: newsletter@signals.example.org\r\nSubject: Re: Signals Weekly #3\r\n\r\n\
                    This was not delivered to: bob@example.org because: I moved.\r\n\
                    ----- The following addresses had permanent fatal errors -----\r\n<carol@example.org>\r\n";
        let r = classify(raw, None);
        assert_eq!(r.kind, Kind::Ignored, "{r:?}");
        assert!(r.failures.is_empty());
    }
}
