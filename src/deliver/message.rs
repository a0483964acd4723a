//! One issue's email, prepared once and stamped out per subscriber.
//!
//! The rendered HTML and text carry placeholders for what differs per subscriber. They are split
//! at the placeholders and each static piece is quoted-printable encoded once; a message is then
//! the encoded pieces with the encoded per-subscriber values between them, joined by soft line
//! breaks (RFC 2045 §6.7 rule 5), so no 30 KB body is re-encoded per subscriber.
//!
//! The headers and MIME structure are formatted once too: lettre formats one copy addressed to
//! markers, which is cut at the markers into a `Skeleton`, and each subscriber's copy is written in
//! one pass into one buffer, the subscriber's values between the pieces; any value the fast path
//! does not write exactly as lettre would goes through lettre's `Message` (see `Skeleton::write`).
//! A DKIM-signed copy is the same bytes with its signature headers on top (`super::dkim`).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use lettre::Message;
use lettre::address::Envelope;
use lettre::message::header::{
    ContentTransferEncoding, ContentType, HeaderName, HeaderValue, Headers, MIME_VERSION_1_0, To,
};
use lettre::message::{Body, Mailbox, Mailboxes, MultiPart, SinglePart};

use crate::config::Config;
use crate::render::markdown::escaped;
use crate::store::Subscriber;

pub use crate::render::{PREFERENCES_URL, SUBSCRIBER_EMAIL, UNSUBSCRIBE_URL};

/// What one recipient's copy needs.
pub struct Recipient<'a> {
    pub mailbox: Mailbox,
    pub unsubscribe_url: &'a str,
    /// The reader's preferences page (themes, pause, address), in the footer.
    pub preferences_url: &'a str,
    /// `<issue.subscriber.random@domain>`: fixed before the first attempt, so a resend is the same message.
    pub message_id: &'a str,
}

/// A body cut at its placeholders, the static pieces already encoded.
#[derive(Debug)]
struct EncodedBody {
    /// `pieces.len() == slots.len() + 1`.
    pieces: Vec<String>,
    slots: Vec<Slot>,
    html: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Slot {
    UnsubscribeUrl,
    PreferencesUrl,
    Email,
}

/// The per-subscriber values of a body, encoded for it, in `Slot` order.
type Values<'a> = [Cow<'a, str>; 3];

impl EncodedBody {
    fn new(body: &str, html: bool) -> EncodedBody {
        let mut pieces = Vec::new();
        let mut slots = Vec::new();
        let mut rest = body;
        loop {
            let next = [
                (UNSUBSCRIBE_URL, Slot::UnsubscribeUrl),
                (PREFERENCES_URL, Slot::PreferencesUrl),
                (SUBSCRIBER_EMAIL, Slot::Email),
            ]
            .into_iter()
            .filter_map(|(p, s)| rest.find(p).map(|at| (at, p.len(), s)))
            .min_by_key(|x| x.0);
            match next {
                Some((at, len, slot)) => {
                    pieces.push(qp(&rest[..at]));
                    slots.push(slot);
                    rest = &rest[at + len..];
                }
                None => {
                    pieces.push(qp(rest));
                    break;
                }
            }
        }
        EncodedBody { pieces, slots, html }
    }

    /// The per-subscriber values, encoded for this body.
    fn values<'a>(&self, unsubscribe_url: &'a str, preferences_url: &'a str, email: &'a str) -> Values<'a> {
        let encode = |value: &'a str| {
            // Most values need neither escaping nor encoding: no copy then.
            let value = if self.html && value.contains(['&', '<', '>', '"', '\'', '%']) {
                Cow::Owned(escaped(value))
            } else {
                Cow::Borrowed(value)
            };
            if value.len() <= 75 && value.bytes().all(|b| b.is_ascii_graphic() && b != b'=') {
                value
            } else {
                Cow::Owned(qp(&value))
            }
        };
        [encode(unsubscribe_url), encode(preferences_url), encode(email)]
    }

    fn len_with(&self, values: &Values) -> usize {
        self.pieces.iter().map(String::len).sum::<usize>()
            + self.slots.len() * (values.iter().map(|v| v.len()).max().unwrap_or(0) + 3)
            + 3 * self.pieces.len()
    }

    fn fill(&self, unsubscribe_url: &str, preferences_url: &str, email: &str) -> Vec<u8> {
        let values = self.values(unsubscribe_url, preferences_url, email);
        let mut out = Vec::with_capacity(self.len_with(&values));
        self.fill_into(&mut out, &values);
        out
    }

    /// Appends the body, with `values` (from `values`) in its slots, to `out`.
    fn fill_into(&self, out: &mut Vec<u8>, values: &Values) {
        let start = out.len();
        for (i, piece) in self.pieces.iter().enumerate() {
            push_joined(out, start, piece);
            if let Some(slot) = self.slots.get(i) {
                push_joined(out, start, &values[*slot as usize]);
            }
        }
    }
}

/// Appends an encoded piece to the body that starts at `out[start..]`, first ending the current
/// line with a soft break if it is not empty, so that joined pieces never make a line longer than
/// quoted-printable allows.
fn push_joined(out: &mut Vec<u8>, start: usize, piece: &str) {
    if piece.is_empty() {
        return;
    }
    if out.len() > start && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"=\r\n");
    }
    out.extend_from_slice(piece.as_bytes());
}

fn qp(text: &str) -> String {
    // Text mode keeps CRLF line breaks as line breaks (a bare LF would be escaped): normalize first.
    let encoded = if text.contains('\n') {
        quoted_printable::encode(text.replace("\r\n", "\n").replace('\n', "\r\n").as_bytes())
    } else {
        quoted_printable::encode(text.as_bytes())
    };
    String::from_utf8(encoded).expect("quoted-printable is ASCII")
}

/// What differs per subscriber in the formatted message, between the pieces of a `Skeleton`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Field {
    /// The whole `To:` header line, CRLF included.
    ToLine,
    /// The Message-ID's value, `<…>` included.
    MessageId,
    /// The URL inside `List-Unsubscribe: <…>`.
    UnsubscribeHeader,
    TextBody,
    HtmlBody,
}

/// Markers lettre formats into the skeleton's copy where the per-subscriber values go; each must
/// occur exactly once in it (a subject quoting one makes `Skeleton::new` give up: lettre then
/// builds every copy).
const TO_MARKER: &str = "gazette-slot-to@slot.invalid";
const MESSAGE_ID_MARKER: &str = "<gazette-slot-message-id@slot.invalid>";
const UNSUBSCRIBE_MARKER: &str = "gazette-slot-unsubscribe";
const TEXT_MARKER: &str = "gazette-slot-text-body";
const HTML_MARKER: &str = "gazette-slot-html-body";

/// The formatted message of an issue cut where the subscriber's values go:
/// `pieces[0] fields[0] pieces[1] … pieces[n]`. One multipart boundary for every copy.
#[derive(Debug)]
struct Skeleton {
    pieces: Vec<Vec<u8>>,
    fields: Vec<Field>,
}

impl Skeleton {
    /// Cuts `formatted` (lettre's copy addressed to the markers) at the markers.
    fn new(formatted: &[u8]) -> Option<Skeleton> {
        let to_line = format!("To: {TO_MARKER}\r\n");
        let markers = [
            (to_line.as_str(), Field::ToLine),
            (MESSAGE_ID_MARKER, Field::MessageId),
            (UNSUBSCRIBE_MARKER, Field::UnsubscribeHeader),
            (TEXT_MARKER, Field::TextBody),
            (HTML_MARKER, Field::HtmlBody),
        ];
        let mut found = Vec::new();
        for (marker, field) in markers {
            let at: Vec<usize> = formatted
                .windows(marker.len())
                .enumerate()
                .filter(|(_, w)| *w == marker.as_bytes())
                .map(|(i, _)| i)
                .collect();
            let [at] = at.as_slice() else { return None };
            found.push((*at, marker.len(), field));
        }
        found.sort_by_key(|f| f.0);
        // The To line starts a line of its own.
        if let Some((at, _, _)) = found.iter().find(|f| f.2 == Field::ToLine)
            && *at != 0
            && !formatted[..*at].ends_with(b"\r\n")
        {
            return None;
        }
        let (mut pieces, mut fields, mut from) = (Vec::new(), Vec::new(), 0);
        for (at, len, field) in found {
            pieces.push(formatted[from..at].to_vec());
            fields.push(field);
            from = at + len;
        }
        pieces.push(formatted[from..].to_vec());
        Some(Skeleton { pieces, fields })
    }

    /// One recipient's copy, or `None` when a value would not be written as lettre writes it (a
    /// Message-ID or URL with spaces or other than printable ASCII, which lettre would fold or
    /// encode): the caller then builds the copy with lettre.
    fn write(&self, email: &PreparedEmail, to: &Recipient, address: &str) -> Option<Vec<u8>> {
        let plain = |v: &str| v.bytes().all(|b| b.is_ascii_graphic());
        if !plain(to.message_id) || !plain(to.unsubscribe_url) {
            return None;
        }
        let to_line = to_line(to);
        let text = email.text.values(to.unsubscribe_url, to.preferences_url, address);
        let html = email.html.values(to.unsubscribe_url, to.preferences_url, address);
        let size = self.pieces.iter().map(Vec::len).sum::<usize>()
            + to_line.len()
            + to.message_id.len()
            + to.unsubscribe_url.len()
            + email.text.len_with(&text)
            + email.html.len_with(&html);
        let mut out = Vec::with_capacity(size);
        for (i, piece) in self.pieces.iter().enumerate() {
            out.extend_from_slice(piece);
            match self.fields.get(i) {
                Some(Field::ToLine) => out.extend_from_slice(to_line.as_bytes()),
                Some(Field::MessageId) => out.extend_from_slice(to.message_id.as_bytes()),
                Some(Field::UnsubscribeHeader) => out.extend_from_slice(to.unsubscribe_url.as_bytes()),
                Some(Field::TextBody) => email.text.fill_into(&mut out, &text),
                Some(Field::HtmlBody) => email.html.fill_into(&mut out, &html),
                None => {}
            }
        }
        Some(out)
    }
}

/// The `To:` header line of a recipient, as lettre writes it (`Mailbox::encode`, email-encoding's
/// quoted-string rules): written here for no name or a short plain-ASCII one (lettre folds only
/// past 76 columns and encodes only non-ASCII), by lettre otherwise.
fn to_line(to: &Recipient) -> String {
    let mailbox = recipient_mailbox(to.mailbox.name.as_deref(), to.mailbox.email.clone());
    let email: &str = mailbox.email.as_ref();
    let Some(name) = mailbox.name.as_deref() else { return format!("To: {email}\r\n") };
    let atom = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    // `"To: "` and the opening quote, then the name: no word of it passes column 76.
    if name.len() + 5 <= 76 {
        if name.bytes().all(atom) {
            return format!("To: {name} <{email}>\r\n");
        }
        if name.bytes().all(|b| atom(b) || b == b' ') {
            return format!("To: \"{name}\" <{email}>\r\n");
        }
    }
    let mut headers = Headers::new();
    headers.set(To::from(Mailboxes::from(mailbox)));
    headers.to_string()
}

/// One recipient's copy as it goes on the wire (7-bit, CRLF, lines under 998 octets), with its envelope.
#[derive(Debug, Clone)]
pub struct Built {
    envelope: Envelope,
    bytes: Vec<u8>,
}

impl Built {
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl From<&Message> for Built {
    fn from(message: &Message) -> Built {
        Built { envelope: message.envelope().clone(), bytes: message.formatted() }
    }
}

/// A copy being built (`PreparedEmail::start_building`): a future of the built message.
pub struct Building(BuildingState);

enum BuildingState {
    Done(Option<anyhow::Result<Built>>),
    Signing(tokio::sync::oneshot::Receiver<anyhow::Result<Built>>),
}

impl Building {
    /// A copy that cannot be built (its address, say): the error, when awaited.
    pub fn failed(e: anyhow::Error) -> Building {
        Building(BuildingState::Done(Some(Err(e))))
    }
}

impl std::future::Future for Building {
    type Output = anyhow::Result<Built>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        match &mut self.0 {
            BuildingState::Done(result) => std::task::Poll::Ready(result.take().expect("a built copy is awaited once")),
            BuildingState::Signing(receiver) => std::pin::Pin::new(receiver)
                .poll(cx)
                .map(|r| r.unwrap_or_else(|_| Err(anyhow::anyhow!("the thread signing the message stopped")))),
        }
    }
}

/// An issue's email ready to be addressed: the same for every subscriber but for the fields of `Recipient`.
#[derive(Debug)]
pub struct PreparedEmail {
    from: Mailbox,
    reply_to: Option<Mailbox>,
    subject: String,
    list_id: String,
    text: EncodedBody,
    html: EncodedBody,
    date: SystemTime,
    dkim: Option<super::dkim::Signer>,
    /// `None` when the markers did not come out once each.
    skeleton: Option<Skeleton>,
}

impl PreparedEmail {
    /// `subject`, `html` and `text` come from the renderer, with the placeholders above in them.
    /// `test` puts `[TEST]` before the subject. `date` is the Date header of every copy.
    pub fn new(
        config: &Config,
        subject: &str,
        html: &str,
        text: &str,
        test: bool,
        date: SystemTime,
    ) -> anyhow::Result<PreparedEmail> {
        // A digest title can never add a header: the subject is one line, whatever it was made from.
        let subject: String =
            subject.split(['\r', '\n']).map(str::trim).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ");
        let subject = if test { format!("[TEST] {subject}") } else { subject };
        let list_domain = config.email.from.email.domain().to_string();
        let list_name: String =
            config.site.title.chars().filter(|c| !matches!(c, '<' | '>' | '"' | '\r' | '\n')).collect();
        let dkim = match &config.dkim {
            Some(d) => Some(load_dkim(d)?),
            None => None,
        };
        let mut email = PreparedEmail {
            from: config.email.from.clone(),
            reply_to: config.email.reply_to.clone(),
            subject,
            list_id: format!("{list_name} <{}.{list_domain}>", crate::render::slug(&list_name)),
            text: EncodedBody::new(text, false),
            html: EncodedBody::new(html, true),
            date,
            dkim,
            skeleton: None,
        };
        let marker: lettre::Address = TO_MARKER.parse().expect("the marker is an address");
        let to = Recipient {
            mailbox: Mailbox::new(None, marker),
            unsubscribe_url: UNSUBSCRIBE_MARKER,
            preferences_url: "",
            message_id: MESSAGE_ID_MARKER,
        };
        let marker_body = |marker: &str| {
            Body::dangerous_pre_encoded(marker.as_bytes().to_vec(), ContentTransferEncoding::QuotedPrintable)
        };
        let copy = email.lettre_message(&to, marker_body(TEXT_MARKER), marker_body(HTML_MARKER))?;
        email.skeleton = Skeleton::new(&copy.formatted());
        Ok(email)
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Only the placeholder filling of `build`: the quoted-printable text and HTML bodies for one
    /// recipient, without headers (for the rendering benchmark, `examples/render_bench.rs`).
    #[doc(hidden)]
    pub fn fill_bodies(&self, unsubscribe_url: &str, preferences_url: &str, email: &str) -> (Vec<u8>, Vec<u8>) {
        (
            self.text.fill(unsubscribe_url, preferences_url, email),
            self.html.fill(unsubscribe_url, preferences_url, email),
        )
    }

    /// The whole message for one recipient, as it goes on the wire, written in one pass from the
    /// skeleton (or by lettre, see the module's comment), its DKIM signatures on top when configured.
    pub fn build(&self, to: &Recipient) -> anyhow::Result<Built> {
        let built = match self.skeleton.as_ref().and_then(|s| s.write(self, to, to.mailbox.email.as_ref())) {
            Some(bytes) => {
                let from = self.from.email.clone();
                Built { envelope: Envelope::new(Some(from), vec![to.mailbox.email.clone()])?, bytes }
            }
            None => Built::from(&self.build_with_lettre(to)?),
        };
        Ok(match &self.dkim {
            Some(signer) => {
                let mut bytes = signer.sign(&built.bytes);
                bytes.extend_from_slice(&built.bytes);
                Built { bytes, ..built }
            }
            None => built,
        })
    }

    /// Whether each copy carries DKIM signatures.
    pub fn is_signed(&self) -> bool {
        self.dkim.is_some()
    }

    /// `build` for a send's worker. An unsigned copy is built at once; a signed one is built and
    /// signed on rayon's threads (one per core) while the worker goes on, and awaited when it is
    /// needed. An RSA-2048 signature takes about a quarter of a millisecond of processor: on the
    /// send's one thread it held up every connection, and the send used about one core.
    pub fn start_building(
        self: &Arc<Self>,
        mailbox: Mailbox,
        unsubscribe_url: &str,
        preferences_url: &str,
        message_id: &str,
    ) -> Building {
        if self.dkim.is_none() {
            return Building(BuildingState::Done(Some(self.build(&Recipient {
                mailbox,
                unsubscribe_url,
                preferences_url,
                message_id,
            }))));
        }
        let (done, built) = tokio::sync::oneshot::channel();
        let (email, url, preferences, id) =
            (Arc::clone(self), unsubscribe_url.to_owned(), preferences_url.to_owned(), message_id.to_owned());
        rayon::spawn(move || {
            // A panic on rayon's thread would end the process: it is this message's error instead.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                email.build(&Recipient {
                    mailbox,
                    unsubscribe_url: &url,
                    preferences_url: &preferences,
                    message_id: &id,
                })
            }))
            .unwrap_or_else(|_| Err(anyhow::anyhow!("building and signing the message panicked")));
            let _ = done.send(result);
        });
        Building(BuildingState::Signing(built))
    }

    /// The whole message for one recipient built by lettre, unsigned.
    pub fn build_with_lettre(&self, to: &Recipient) -> anyhow::Result<Message> {
        let email = to.mailbox.email.to_string();
        let text = Body::dangerous_pre_encoded(
            self.text.fill(to.unsubscribe_url, to.preferences_url, &email),
            ContentTransferEncoding::QuotedPrintable,
        );
        let html = Body::dangerous_pre_encoded(
            self.html.fill(to.unsubscribe_url, to.preferences_url, &email),
            ContentTransferEncoding::QuotedPrintable,
        );
        self.lettre_message(to, text, html)
    }

    /// The message with these bodies (already quoted-printable), unsigned.
    fn lettre_message(&self, to: &Recipient, text: Body, html: Body) -> anyhow::Result<Message> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(recipient_mailbox(to.mailbox.name.as_deref(), to.mailbox.email.clone()))
            .subject(self.subject.clone())
            .date(self.date)
            .message_id(Some(to.message_id.to_string()))
            .raw_header(header("List-Id", self.list_id.clone()))
            .raw_header(header("List-Unsubscribe", format!("<{}>", to.unsubscribe_url)))
            .raw_header(header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click".into()))
            .raw_header(header("Precedence", "bulk".into()))
            .raw_header(header("Auto-Submitted", "auto-generated".into()));
        if let Some(r) = &self.reply_to {
            builder = builder.reply_to(r.clone());
        }
        // RFC 2046 §5.1.4: the last part is the preferred one, so text first, HTML last.
        let alternative = MultiPart::alternative()
            .singlepart(SinglePart::builder().content_type(ContentType::TEXT_PLAIN).body(text))
            .singlepart(SinglePart::builder().content_type(ContentType::TEXT_HTML).body(html));
        // `builder.multipart(..)` would write the top-level Content-Type as the multipart's own
        // header, outside `Message::headers`, where lettre's DKIM signer never looks: it would list
        // content-type in h= without hashing it, and every verifier would then fail the message.
        // So the Content-Type goes in the message headers and the parts become a pre-encoded body.
        let content_type = alternative.headers().get::<ContentType>().expect("a multipart has a Content-Type");
        let formatted = alternative.formatted();
        let parts_start = formatted.windows(4).position(|w| w == b"\r\n\r\n").expect("a multipart has headers") + 4;
        let parts = Body::dangerous_pre_encoded(formatted[parts_start..].to_vec(), ContentTransferEncoding::SevenBit);
        let mut message = builder.header(MIME_VERSION_1_0).header(content_type).body(parts)?;
        // `body` adds `Content-Transfer-Encoding: 7bit`, the default a multipart has anyway (RFC 2045 §6.4).
        message.headers_mut().remove::<ContentTransferEncoding>();
        Ok(message)
    }
}

/// The mailbox a `To:` header carries for a recipient: the name without control characters and cut
/// to `Subscriber::MAX_NAME_CHARS` (at a character boundary), or left out when nothing is left. lettre
/// folds a non-ASCII name into encoded words but writes an ASCII one (quoted or not) on one line,
/// folding only at spaces, so a long stored name (older databases may hold one) would otherwise
/// make a line over the 998 octets of RFC 5322 §2.1.1; and CR or LF must never reach a header.
pub fn recipient_mailbox(name: Option<&str>, email: lettre::Address) -> Mailbox {
    let name = name.map(|n| {
        let clean: String = n.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        let clean = clean.trim();
        let kept = clean.char_indices().nth(Subscriber::MAX_NAME_CHARS).map_or(clean.len(), |(at, _)| at);
        clean[..kept].trim_end().to_string()
    });
    Mailbox::new(name.filter(|n| !n.is_empty()), email)
}

fn header(name: &'static str, value: String) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value)
}

/// The signer of `[dkim]`, its keys read (see `dkim::load`).
pub fn load_dkim(d: &crate::config::Dkim) -> anyhow::Result<super::dkim::Signer> {
    super::dkim::load(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::parse(
            "[site]\ntitle = \"Signals Weekly\"\nbase_url = \"https://signals.example.org\"\n",
            std::path::Path::new("publish.toml"),
        )
        .unwrap()
    }

    fn decode(body: &[u8]) -> String {
        String::from_utf8(quoted_printable::decode(body, quoted_printable::ParseMode::Strict).unwrap()).unwrap()
    }

    #[test]
    fn filled_bodies_decode_to_the_rendered_text_with_the_values_in_place() {
        let long = "é".repeat(100);
        let html = format!("<p>{long}</p><a href=\"{UNSUBSCRIBE_URL}\">unsubscribe</a> {SUBSCRIBER_EMAIL}<br>\nend");
        let body = EncodedBody::new(&html, true);
        let url = "https://signals.example.org/unsubscribe/AbC_123-xyz";
        let out = body.fill(url, "https://signals.example.org/preferences/p", "o'neil&co@example.org");
        assert!(out.is_ascii());
        assert!(out.ends_with(b"<br>\r\nend"), "line breaks go on the wire as CRLF");
        assert!(out.split(|&b| b == b'\n').all(|l| l.len() <= 78), "quoted-printable lines stay short");
        assert_eq!(
            decode(&out),
            format!("<p>{long}</p><a href=\"{url}\">unsubscribe</a> o&#39;neil&amp;co@example.org<br>\r\nend")
        );
    }

    #[test]
    fn the_message_has_every_header_a_list_mail_needs() {
        let c = config();
        let p = PreparedEmail::new(
            &c,
            "Signals #3: naïve\r\nBcc: evil@example.org",
            "<p>x {SUB}</p>",
            "x",
            true,
            SystemTime::UNIX_EPOCH,
        )
        .unwrap();
        let m = p
            .build(&Recipient {
                mailbox: "Ada <ada@example.org>".parse().unwrap(),
                unsubscribe_url: "https://signals.example.org/unsubscribe/tok",
                preferences_url: "https://signals.example.org/preferences/tok",
                message_id: "<2023-07-17.7.abc@signals.example.org>",
            })
            .unwrap();
        let raw = String::from_utf8(m.bytes().to_vec()).unwrap();
        assert!(raw.is_ascii());
        let head = &raw[..raw.find("\r\n\r\n").unwrap()];
        assert!(!head.contains("\nBcc:"), "a subject can never add a header:\n{head}");
        assert!(head.contains("Subject: [TEST] Signals #3: =?utf-8?b?"), "non-ASCII words are encoded words:\n{head}");
        assert!(head.contains("Message-ID: <2023-07-17.7.abc@signals.example.org>"), "{head}");
        assert!(head.contains("List-Unsubscribe: <https://signals.example.org/unsubscribe/tok>"), "{head}");
        assert!(head.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"), "{head}");
        assert!(head.contains("List-Id: Signals Weekly <signals-weekly.signals.example.org>"), "{head}");
        assert!(head.contains("MIME-Version: 1.0"), "{head}");
        assert!(head.contains("Content-Type: multipart/alternative"), "{head}");
        assert_eq!(head.matches("Content-Type:").count(), 1, "one top-level Content-Type:\n{head}");
        assert!(!head.contains("Content-Transfer-Encoding"), "a multipart needs none at the top:\n{head}");
        assert!(raw.trim_end().ends_with("--"), "the body ends with the closing boundary");
        assert_eq!(head.matches("\r\nFrom: ").count() + usize::from(head.starts_with("From: ")), 1);
        assert_eq!(head.matches("Date: ").count(), 1);
        let plain = raw.find("Content-Type: text/plain; charset=utf-8").expect("text part");
        let html = raw.find("Content-Type: text/html; charset=utf-8").expect("html part");
        assert!(plain < html, "text/plain comes before text/html");
    }

    /// A message taken apart as a mail reader would: unfolded headers in order (the multipart
    /// boundary parameter set aside), then each part's headers and decoded body.
    #[derive(Debug, PartialEq)]
    struct Parsed {
        headers: Vec<(String, String)>,
        parts: Vec<(Vec<(String, String)>, String)>,
        /// Text around the parts (the preamble and the epilogue).
        outside: (String, String),
    }

    fn headers_of(head: &str) -> Vec<(String, String)> {
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", "\t");
        unfolded
            .split("\r\n")
            .map(|l| {
                let (k, v) = l.split_once(':').unwrap_or_else(|| panic!("not a header: {l:?}"));
                (k.to_string(), v.trim().to_string())
            })
            .collect()
    }

    fn parse(raw: &[u8]) -> (Parsed, String) {
        let raw = std::str::from_utf8(raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let mut headers = headers_of(head);
        let ct = headers.iter_mut().find(|(k, _)| k == "Content-Type").unwrap();
        let (value, boundary) = ct.1.split_once("; boundary=").unwrap();
        let boundary = boundary.trim_matches('"').to_string();
        ct.1 = value.to_string();
        let delimiter = format!("--{boundary}");
        let mut chunks: Vec<&str> = body.split(delimiter.as_str()).collect();
        let epilogue = chunks.pop().unwrap();
        assert!(epilogue.starts_with("--"), "the closing delimiter ends the parts: {epilogue:?}");
        let preamble = chunks.remove(0);
        let parts = chunks
            .into_iter()
            .map(|chunk| {
                let chunk = chunk.strip_prefix("\r\n").expect("a delimiter line ends with CRLF");
                let (head, body) = chunk.split_once("\r\n\r\n").unwrap();
                let headers = headers_of(head);
                let cte = headers.iter().find(|(k, _)| k == "Content-Transfer-Encoding").unwrap();
                assert_eq!(cte.1, "quoted-printable");
                (headers, decode(body.as_bytes()))
            })
            .collect();
        (Parsed { headers, parts, outside: (preamble.to_string(), epilogue.to_string()) }, boundary)
    }

    #[test]
    fn the_one_pass_copy_is_what_lettre_formats_field_by_field() {
        let toml = "[site]\ntitle = \"Signals Weekly\"\nbase_url = \"https://signals.example.org\"\n\
                    [email]\nfrom = \"Signals Wéekly <newsletter@signals.example.org>\"\nreply_to = \"Ed <ed@example.org>\"\n";
        let with_reply_to = Config::parse(toml, std::path::Path::new("publish.toml")).unwrap();
        let long_text = format!(
            "{}\nUnsubscribe: {UNSUBSCRIBE_URL}\n{SUBSCRIBER_EMAIL}\n.leading dot\n",
            "naïve words ".repeat(40)
        );
        let html = format!("<p>{}</p><a href=\"{UNSUBSCRIBE_URL}\">x</a>{SUBSCRIBER_EMAIL}<br>\n=", "é".repeat(120));
        let prepared = [
            PreparedEmail::new(&config(), "Signals #3", &html, &long_text, false, SystemTime::UNIX_EPOCH).unwrap(),
            PreparedEmail::new(
                &with_reply_to,
                "Signals #4: naïve\r\nand a long subject that has to be folded by lettre somewhere",
                &html,
                &format!("x {UNSUBSCRIBE_URL}"),
                true,
                SystemTime::now(),
            )
            .unwrap(),
        ];
        let names = [
            None,
            Some("Ada"),
            Some("Ada Lovelace"),
            Some("O'Neil, Ada"),
            Some("Ada \"the\" Lovelace"),
            Some("Adrián Fernández"),
            Some("A rather long plain name that goes past the column where lettre folds a header line"),
            Some("Tab\there"),
            Some("  "),
        ];
        let urls =
            ["https://signals.example.org/unsubscribe/AbC_123-xyz", "https://signals.example.org/unsubscribe/a&b=c?d"];
        for (n, email) in prepared.iter().enumerate() {
            assert!(email.skeleton.is_some(), "without DKIM the one-pass path is taken");
            let mut boundaries = std::collections::HashSet::new();
            for (i, name) in names.iter().enumerate() {
                for url in urls {
                    let address = if i % 2 == 0 { "ada@example.org" } else { "o.neil+news@example.co.uk" };
                    let message_id = format!("<2023-07-17.{i}.abc@signals.example.org>");
                    let to = Recipient {
                        mailbox: crate::deliver::mailbox(address, *name).unwrap(),
                        unsubscribe_url: url,
                        preferences_url: "https://signals.example.org/preferences/tok",
                        message_id: &message_id,
                    };
                    let fast = email.build(&to).unwrap();
                    let slow = email.build_with_lettre(&to).unwrap();
                    assert_eq!(fast.envelope(), slow.envelope());
                    let (fast_parsed, fast_boundary) = parse(fast.bytes());
                    let (slow_parsed, slow_boundary) = parse(&slow.formatted());
                    assert_eq!(fast_parsed, slow_parsed, "email {n}, name {name:?}, url {url}");
                    assert_eq!(fast_parsed.parts.len(), 2);
                    assert!(fast_parsed.parts[0].1.contains(url) && fast_parsed.parts[1].1.contains(&escaped(url)));
                    // And byte for byte, but for the boundary lettre draws for each multipart.
                    let fast_raw =
                        String::from_utf8(fast.bytes().to_vec()).unwrap().replace(&fast_boundary, "BOUNDARY");
                    let slow_raw = String::from_utf8(slow.formatted()).unwrap().replace(&slow_boundary, "BOUNDARY");
                    assert_eq!(fast_raw, slow_raw);
                    boundaries.insert(fast_boundary);
                }
            }
            assert_eq!(boundaries.len(), 1, "every copy of an issue shares the skeleton's boundary");
        }
        // A value lettre would fold or encode: the copy comes from lettre, still equal.
        let email = &prepared[0];
        let to = Recipient {
            mailbox: "ada@example.org".parse().unwrap(),
            unsubscribe_url: "https://x.example/u",
            preferences_url: "https://signals.example.org/preferences/tok",
            message_id: "<a b@example.org>",
        };
        assert!(email.skeleton.as_ref().unwrap().write(email, &to, "ada@example.org").is_none());
        assert_eq!(
            parse(email.build(&to).unwrap().bytes()).0,
            parse(&email.build_with_lettre(&to).unwrap().formatted()).0
        );
    }

    #[test]
    fn a_subject_that_quotes_a_marker_leaves_every_copy_to_lettre() {
        let email = PreparedEmail::new(
            &config(),
            &format!("About {TEXT_MARKER}"),
            "<p>x</p>",
            "x",
            false,
            SystemTime::UNIX_EPOCH,
        )
        .unwrap();
        assert!(email.skeleton.is_none());
        let to = Recipient {
            mailbox: "ada@example.org".parse().unwrap(),
            unsubscribe_url: "https://x.example/u",
            preferences_url: "https://signals.example.org/preferences/tok",
            message_id: "<a@example.org>",
        };
        let raw = String::from_utf8(email.build(&to).unwrap().bytes().to_vec()).unwrap();
        assert!(
            raw.contains(&format!("Subject: About {TEXT_MARKER}")) && raw.contains("To: ada@example.org\r\n"),
            "{raw}"
        );
    }

    #[test]
    fn the_to_mailbox_has_a_bounded_one_line_name_or_none() {
        let address: lettre::Address = "ada@example.org".parse().unwrap();
        let to = |name: &str| recipient_mailbox(Some(name), address.clone()).name;
        assert_eq!(to(" Ada Lovelace "), Some("Ada Lovelace".to_string()));
        assert_eq!(to("Ada\r\nBcc: x@example.org"), Some("Ada  Bcc: x@example.org".to_string()));
        assert_eq!(to("\r\n\t\u{85}"), None);
        assert_eq!(
            to(&"é".repeat(10_000)),
            Some("é".repeat(crate::store::Subscriber::MAX_NAME_CHARS)),
            "cut at a character boundary"
        );
        assert_eq!(recipient_mailbox(None, address.clone()), Mailbox::new(None, address));
    }

    #[tokio::test]
    async fn a_long_stored_name_is_cut_and_no_header_line_is_over_998_octets() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("t.db")).await.unwrap();
        // Straight into the table, past today's checks, as an older database could hold them.
        let names = [
            "a".repeat(10_000),
            format!("\"{}\"", "quoted\\".repeat(1_500)),
            "Ada Lovelace ".repeat(800),
            format!("Ada\r\nBcc: evil@example.org {}", "é".repeat(10_000)),
        ];
        for (i, name) in names.iter().enumerate() {
            sqlx::query(
                "INSERT INTO subscribers (email, email_key, name, status, source, created_at, status_changed_at) \
                 VALUES (?1, ?1, ?2, 'active', 'import', 0, 0)",
            )
            .bind(format!("reader{i}@example.org"))
            .bind(name)
            .execute(store.sqlite())
            .await
            .unwrap();
        }
        let p = PreparedEmail::new(&config(), "Signals #3", "<p>x</p>", "x", false, SystemTime::UNIX_EPOCH).unwrap();
        let stored = store.ledger().active_after(0, 10, 0).await.unwrap().readers;
        assert_eq!(stored.len(), names.len());
        for crate::store::ledger::Claimed { email, name, .. } in stored {
            assert!(name.as_ref().unwrap().chars().count() > 9_000);
            // The mailbox as the send loop makes it from the stored row.
            let mailbox = crate::deliver::mailbox(&email, name.as_deref()).unwrap();
            let recipient = Recipient {
                mailbox,
                unsubscribe_url: "https://signals.example.org/unsubscribe/tok",
                preferences_url: "https://signals.example.org/preferences/tok",
                message_id: "<t@signals.example.org>",
            };
            let m = p.build(&recipient).unwrap();
            assert_eq!(m.envelope().to(), [email.parse::<lettre::Address>().unwrap()]);
            let raw = String::from_utf8(m.bytes().to_vec()).unwrap();
            let head = &raw[..raw.find("\r\n\r\n").unwrap()];
            let longest = head.split("\r\n").map(str::len).max().unwrap();
            assert!(longest <= 998, "{email}: a header line of {longest} octets");
            assert!(!head.contains("\r\nBcc:"), "{head}");
            // The To: header, unfolded (RFC 5322 §2.2.3), still ends in the right address.
            let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", "\t");
            let to = unfolded.split("\r\n").find(|l| l.starts_with("To: ")).unwrap();
            assert!(to.ends_with(&format!(" <{email}>")), "{to}");
            if email == "reader0@example.org" {
                assert_eq!(
                    to,
                    format!("To: {} <{email}>", "a".repeat(crate::store::Subscriber::MAX_NAME_CHARS)),
                    "the name is cut"
                );
            }
        }
    }
}
