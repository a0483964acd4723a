//! One issue's email, prepared once and stamped out per subscriber.
//!
//! The rendered HTML and text carry placeholders for what differs per subscriber. They are split
//! at the placeholders and each static piece is quoted-printable encoded once; a message is then
//! the encoded pieces with the encoded per-subscriber values between them, joined by soft line
//! breaks (RFC 2045 §6.7 rule 5), so no 30 KB body is re-encoded per subscriber.

use std::time::SystemTime;

use lettre::message::header::{ContentTransferEncoding, ContentType, HeaderName, HeaderValue, MIME_VERSION_1_0};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};
use lettre::Message;

use crate::config::Config;
use crate::render::markdown::escaped;
use crate::store::Subscriber;

pub use crate::render::{SUBSCRIBER_EMAIL, UNSUBSCRIBE_URL};

/// What one recipient's copy needs.
pub struct Recipient<'a> {
    pub mailbox: Mailbox,
    pub unsubscribe_url: &'a str,
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
    Email,
}

impl EncodedBody {
    fn new(body: &str, html: bool) -> EncodedBody {
        let mut pieces = Vec::new();
        let mut slots = Vec::new();
        let mut rest = body;
        loop {
            let next = [(UNSUBSCRIBE_URL, Slot::UnsubscribeUrl), (SUBSCRIBER_EMAIL, Slot::Email)]
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

    fn fill(&self, unsubscribe_url: &str, email: &str) -> Vec<u8> {
        let url = qp(&if self.html { escaped(unsubscribe_url) } else { unsubscribe_url.to_string() });
        let email = qp(&if self.html { escaped(email) } else { email.to_string() });
        let size = self.pieces.iter().map(String::len).sum::<usize>() + self.slots.len() * (url.len() + email.len() + 6);
        let mut out = Vec::with_capacity(size);
        for (i, piece) in self.pieces.iter().enumerate() {
            push_joined(&mut out, piece);
            if let Some(slot) = self.slots.get(i) {
                push_joined(&mut out, if *slot == Slot::UnsubscribeUrl { &url } else { &email });
            }
        }
        out
    }
}

/// Appends an encoded piece, first ending the current line with a soft break if it is not empty,
/// so that joined pieces never make a line longer than quoted-printable allows.
fn push_joined(out: &mut Vec<u8>, piece: &str) {
    if piece.is_empty() {
        return;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"=\r\n");
    }
    out.extend_from_slice(piece.as_bytes());
}

fn qp(text: &str) -> String {
    // Text mode keeps CRLF line breaks as line breaks (a bare LF would be escaped): normalize first.
    let crlf = text.replace("\r\n", "\n").replace('\n', "\r\n");
    String::from_utf8(quoted_printable::encode(crlf.as_bytes())).expect("quoted-printable is ASCII")
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
    dkim: Option<lettre::message::dkim::DkimConfig>,
}

impl PreparedEmail {
    /// `subject`, `html` and `text` come from the renderer, with the placeholders above in them.
    /// `test` puts `[TEST]` before the subject. `date` is the Date header of every copy.
    pub fn new(config: &Config, subject: &str, html: &str, text: &str, test: bool, date: SystemTime) -> anyhow::Result<PreparedEmail> {
        // A digest title can never add a header: the subject is one line, whatever it was made from.
        let subject: String = subject.split(['\r', '\n']).map(str::trim).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ");
        let subject = if test { format!("[TEST] {subject}") } else { subject };
        let list_domain = config.email.from.email.domain().to_string();
        let list_name: String = config.site.title.chars().filter(|c| !matches!(c, '<' | '>' | '"' | '\r' | '\n')).collect();
        let dkim = match &config.dkim {
            Some(d) => Some(load_dkim(d)?),
            None => None,
        };
        Ok(PreparedEmail {
            from: config.email.from.clone(),
            reply_to: config.email.reply_to.clone(),
            subject,
            list_id: format!("{list_name} <{}.{list_domain}>", crate::render::slug(&list_name)),
            text: EncodedBody::new(text, false),
            html: EncodedBody::new(html, true),
            date,
            dkim,
        })
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Only the placeholder filling of `build`: the quoted-printable text and HTML bodies for one
    /// recipient, without headers (for the rendering benchmark, `examples/render_bench.rs`).
    #[doc(hidden)]
    pub fn fill_bodies(&self, unsubscribe_url: &str, email: &str) -> (Vec<u8>, Vec<u8>) {
        (self.text.fill(unsubscribe_url, email), self.html.fill(unsubscribe_url, email))
    }

    /// The whole message for one recipient, as it goes on the wire: 7-bit, CRLF, lines under 998 octets.
    pub fn build(&self, to: &Recipient) -> anyhow::Result<Message> {
        let email = to.mailbox.email.to_string();
        let text = Body::dangerous_pre_encoded(self.text.fill(to.unsubscribe_url, &email), ContentTransferEncoding::QuotedPrintable);
        let html = Body::dangerous_pre_encoded(self.html.fill(to.unsubscribe_url, &email), ContentTransferEncoding::QuotedPrintable);
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
        if let Some(dkim) = &self.dkim {
            message.sign(dkim);
        }
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

/// The headers the DKIM signature covers (RFC 6376 §5.4). lettre 0.11 lists every one in `h=`
/// and hashes the first header of that name (matched ignoring case) or nothing when there is none,
/// which is what a verifier does for one that is absent (§5.4.2): an absent header is signed too,
/// so one added in transit breaks the signature. A name must not appear twice: lettre would hash
/// the same header twice where a verifier hashes it once and then nothing. Names are spelt as
/// lettre writes them, which matters only with `simple` header canonicalization (it hashes the
/// name as listed here); `relaxed` lowercases them.
const SIGNED_HEADERS: [&str; 11] = [
    // Who it is from and to, and what it is: what the reader sees and DMARC aligns on.
    "From",
    "To",
    "Subject",
    "Date",
    // A resend carries the same Message-ID; a changed one would make it another message.
    "Message-ID",
    // Absent unless configured: signed either way, so replies cannot be redirected in transit.
    "Reply-To",
    // How the body is read: an altered Content-Type (another boundary or charset) changes what is shown.
    "MIME-Version",
    "Content-Type",
    // The list and its one-click unsubscribe (RFC 8058 §4 requires these two to be signed).
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

pub fn load_dkim(d: &crate::config::Dkim) -> anyhow::Result<lettre::message::dkim::DkimConfig> {
    use lettre::message::dkim::{DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm, DkimSigningKey};
    let pem = std::fs::read_to_string(&d.private_key)
        .map_err(|e| anyhow::anyhow!("[dkim] private_key: cannot read {}: {e}", d.private_key.display()))?;
    // lettre reads RSA keys as PKCS#1 PEM and Ed25519 keys as the base64 of their 32 bytes.
    let algorithm = if pem.contains("-----BEGIN") { DkimSigningAlgorithm::Rsa } else { DkimSigningAlgorithm::Ed25519 };
    let key = DkimSigningKey::new(pem.trim(), algorithm).map_err(|e| {
        anyhow::anyhow!(
            "[dkim] private_key: {} is not a usable key ({e}); use an RSA key in PKCS#1 PEM \
             (`openssl genrsa -traditional -out dkim.pem 2048`) or an Ed25519 key as base64 of its 32 bytes",
            d.private_key.display()
        )
    })?;
    let headers = SIGNED_HEADERS.into_iter().map(HeaderName::new_from_ascii_str).collect();
    Ok(DkimConfig::new(
        d.selector.clone(),
        d.domain.clone(),
        key,
        headers,
        DkimCanonicalization { header: DkimCanonicalizationType::Relaxed, body: DkimCanonicalizationType::Relaxed },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::parse("[site]\ntitle = \"Signals Weekly\"\nbase_url = \"https://signals.example.org\"\n", std::path::Path::new("publish.toml")).unwrap()
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
        let out = body.fill(url, "o'neil&co@example.org");
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
        let p = PreparedEmail::new(&c, "Signals #3: naïve\r\nBcc: evil@example.org", "<p>x {SUB}</p>", "x", true, SystemTime::UNIX_EPOCH).unwrap();
        let m = p
            .build(&Recipient {
                mailbox: "Ada <ada@example.org>".parse().unwrap(),
                unsubscribe_url: "https://signals.example.org/unsubscribe/tok",
                message_id: "<2023-07-17.7.abc@signals.example.org>",
            })
            .unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
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

    #[test]
    fn the_to_mailbox_has_a_bounded_one_line_name_or_none() {
        let address: lettre::Address = "ada@example.org".parse().unwrap();
        let to = |name: &str| recipient_mailbox(Some(name), address.clone()).name;
        assert_eq!(to(" Ada Lovelace "), Some("Ada Lovelace".to_string()));
        assert_eq!(to("Ada\r\nBcc: x@example.org"), Some("Ada  Bcc: x@example.org".to_string()));
        assert_eq!(to("\r\n\t\u{85}"), None);
        assert_eq!(to(&"é".repeat(10_000)), Some("é".repeat(crate::store::Subscriber::MAX_NAME_CHARS)), "cut at a character boundary");
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
            .execute(store.pool())
            .await
            .unwrap();
        }
        let p = PreparedEmail::new(&config(), "Signals #3", "<p>x</p>", "x", false, SystemTime::UNIX_EPOCH).unwrap();
        let stored = crate::store::ledger::active_after(store.pool(), 0, 10).await.unwrap();
        assert_eq!(stored.len(), names.len());
        for (_, email, name) in stored {
            assert!(name.as_ref().unwrap().chars().count() > 9_000);
            // The mailbox as the send loop makes it from the stored row.
            let mailbox = crate::deliver::mailbox(&email, name.as_deref()).unwrap();
            let recipient = Recipient { mailbox, unsubscribe_url: "https://signals.example.org/unsubscribe/tok", message_id: "<t@signals.example.org>" };
            let m = p.build(&recipient).unwrap();
            assert_eq!(m.envelope().to(), [email.parse::<lettre::Address>().unwrap()]);
            let raw = String::from_utf8(m.formatted()).unwrap();
            let head = &raw[..raw.find("\r\n\r\n").unwrap()];
            let longest = head.split("\r\n").map(str::len).max().unwrap();
            assert!(longest <= 998, "{email}: a header line of {longest} octets");
            assert!(!head.contains("\r\nBcc:"), "{head}");
            // The To: header, unfolded (RFC 5322 §2.2.3), still ends in the right address.
            let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", "\t");
            let to = unfolded.split("\r\n").find(|l| l.starts_with("To: ")).unwrap();
            assert!(to.ends_with(&format!(" <{email}>")), "{to}");
            if email == "reader0@example.org" {
                assert_eq!(to, format!("To: {} <{email}>", "a".repeat(crate::store::Subscriber::MAX_NAME_CHARS)), "the name is cut");
            }
        }
    }
}
