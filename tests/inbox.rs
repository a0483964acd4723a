//! The email as a receiving mail server judges it: its DKIM signature checked by an independent
//! verifier (Python's dkimpy) against the public key, and the whole message scored by
//! SpamAssassin's packaged rules. dkimpy reads what smtp-sink received over SMTP, SpamAssassin
//! what `gazette send` wrote to the outbox folder: the bytes an SMTP server would get, without the
//! trust a local relay would add.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Project;

const WEEK: &str = "2023-07-23";

/// What the signature must cover (issue 13; RFC 8058 §4 for the unsubscribe pair).
const MUST_SIGN: [&str; 11] = [
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "mime-version",
    "content-type",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
];

/// False, after saying so, when `what` is missing; under CI (where .ci/run installs it) a failure.
fn have(ok: bool, what: &str) -> bool {
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "{what} is needed for this test; .ci/run installs it");
        eprintln!("SKIPPED: {what} is missing");
    }
    ok
}

fn run(cmd: &mut Command) -> bool {
    cmd.output().is_ok_and(|o| o.status.success())
}

fn openssl(args: &[&str], dir: &Path) -> bool {
    run(Command::new("openssl").args(args).current_dir(dir))
}

#[derive(Clone, Copy, Debug)]
enum Key {
    Rsa,
    Ed25519,
}

impl Key {
    fn kind(self) -> &'static str {
        match self {
            Key::Rsa => "rsa",
            Key::Ed25519 => "ed25519",
        }
    }
}

/// Makes `{stem}.key` in the format `[dkim]` reads and `{stem}.pub.der`, the DER public key a DNS
/// record would publish.
fn make_key(key: Key, stem: &str, dir: &Path) -> bool {
    let public = format!("{stem}.pub.der");
    match key {
        // An RSA key as PKCS#1 PEM, which -traditional writes.
        Key::Rsa => {
            openssl(&["genrsa", "-traditional", "-out", &format!("{stem}.key"), "2048"], dir)
                && openssl(&["rsa", "-in", &format!("{stem}.key"), "-pubout", "-outform", "DER", "-out", &public], dir)
        }
        // An Ed25519 key as the base64 of its 32 bytes: the end of the PKCS#8 DER.
        Key::Ed25519 => {
            let der = format!("{stem}.der");
            let ok = openssl(&["genpkey", "-algorithm", "ed25519", "-outform", "DER", "-out", &der], dir)
                && openssl(
                    &["pkey", "-inform", "DER", "-in", &der, "-pubout", "-outform", "DER", "-out", &public],
                    dir,
                );
            ok && {
                let bytes = std::fs::read(dir.join(&der)).unwrap();
                std::fs::write(dir.join(format!("{stem}.raw")), &bytes[bytes.len() - 32..]).unwrap();
                openssl(&["base64", "-A", "-in", &format!("{stem}.raw"), "-out", &format!("{stem}.key")], dir)
            }
        }
    }
}

/// A selector, the kind of its key and its DER public key, as DNS would publish them.
type Published = Vec<(String, Key, PathBuf)>;

/// A project that signs with keys made here (`[dkim] private_key`, and `ed25519_key` for a second),
/// sending with `smtp` (a `[smtp]` section), and what DNS would publish for them.
fn signing_project(keys: &[Key], reply_to: bool, smtp: &str) -> Option<(Project, Published)> {
    let reply_to = if reply_to { "reply_to = \"Signals Desk <desk@signals.example.org>\"\n" } else { "" };
    let second = if keys.len() > 1 { "ed25519_key = \"second.key\"\ned25519_selector = \"gazette-ed\"\n" } else { "" };
    // `extra` follows the [email] section, so a leading reply_to belongs to it.
    let p = Project::new(&format!(
        "{reply_to}\n{smtp}\n[dkim]\ndomain = \"signals.example.org\"\nselector = \"gazette\"\nprivate_key = \"dkim.key\"\n{second}"
    ));
    let mut published = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let (stem, selector) = if i == 0 { ("dkim", "gazette") } else { ("second", "gazette-ed") };
        if !have(make_key(*key, stem, p.dir.path()), "the openssl command") {
            return None;
        }
        published.push((selector.to_string(), *key, p.path(&format!("{stem}.pub.der"))));
    }
    Some((p, published))
}

/// Sends the week's issue to one reader through the outbox and returns the message file.
fn send_one(p: &Project) -> PathBuf {
    p.import_readers(1);
    p.expect(0, &["send", "--week", WEEK]);
    let files: Vec<PathBuf> = std::fs::read_dir(p.path("outbox")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.into_iter().next().unwrap()
}

/// Signs with `keys`, sends the week's issue to three readers through smtp-sink (a real SMTP
/// conversation: dot-stuffing and all) and has dkimpy judge each message as it arrived.
fn verdicts_through_the_sink(keys: &[Key], reply_to: bool) -> Option<Vec<serde_json::Value>> {
    let sink = common::Sink::start(&[]);
    let (p, published) = signing_project(keys, reply_to, &sink.smtp_config())?;
    p.import_readers(3);
    p.expect(0, &["send", "--week", WEEK]);
    let files: Vec<PathBuf> = std::fs::read_dir(sink.dump.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|f| !f.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    files.iter().map(|f| dkimpy_verdict(f, &published)).collect()
}

/// Verifies every DKIM signature of a message with dkimpy, given the public keys the DNS TXT
/// records would carry, as sent and after each change a party in transit could make. Prints one
/// JSON object. smtp-sink stores a message with LF line ends: they go back to CRLF, as on the wire.
const VERIFY: &str = r#"
import base64, json, sys
import dkim
from dkim.util import parse_tag_value

message, published = sys.argv[1], json.loads(sys.argv[2])
records = {}
for selector, kind, public_der in published:
    der = open(public_der, 'rb').read()
    # RFC 6376 §3.6.1: p= is the DER SubjectPublicKeyInfo for RSA; RFC 8463: the raw 32 bytes for Ed25519.
    key = base64.b64encode(der if kind == 'rsa' else der[-32:]).decode()
    records[('%s._domainkey.signals.example.org.' % selector).encode()] = ('v=DKIM1; k=%s; p=%s' % (kind, key)).encode()
asked = []
def dns(name, timeout=5):
    asked.append(name.decode())
    return records.get(name)

raw = open(message, 'rb').read().replace(b'\r\n', b'\n').replace(b'\n', b'\r\n')
head, sep, body = raw.partition(b'\r\n\r\n')
assert sep, 'the message has a header section ending in CRLF CRLF'
fields = []
for line in head.split(b'\r\n'):
    if line[:1] in (b' ', b'\t'):
        fields[-1] += b'\r\n' + line
    else:
        fields.append(line)
def name(field):
    return field.split(b':', 1)[0].strip().lower()

def with_header(header, value):
    """The message with that header's value replaced, or the header added on top when absent."""
    new = ('%s: %s' % (header, value)).encode()
    out = list(fields)
    at = [i for i, f in enumerate(out) if name(f) == header.lower().encode()]
    if at:
        out[at[0]] = new
    else:
        out.insert(0, new)
    return b'\r\n'.join(out) + sep + body

signatures = [f for f in fields if name(f) == b'dkim-signature']
def verdict(i):
    def verifies(m):
        # dkim.verify's own handling, for the signature at idx: a failure is False, not an error.
        try:
            return bool(dkim.DKIM(m).verify(idx=i, dnsfunc=dns))
        except dkim.DKIMException:
            return False
    tags = parse_tag_value(signatures[i].split(b':', 1)[1])
    return {
        'a': tags[b'a'].decode(),
        's': tags[b's'].decode(),
        'h': [h.strip().decode() for h in tags[b'h'].split(b':')],
        'as sent': verifies(raw),
        'Reply-To': verifies(with_header('Reply-To', 'Attacker <replies@attacker.example>')),
        'Subject': verifies(with_header('Subject', 'Your account is suspended')),
        'List-Unsubscribe': verifies(with_header('List-Unsubscribe', '<https://attacker.example/unsubscribe>')),
        'Content-Type': verifies(with_header('Content-Type', 'text/plain; charset=utf-8')),
        'body': verifies(head + sep + body.replace(b'unsubscribe', b'unsubscrib_', 1)),
        'Precedence, not signed': verifies(with_header('Precedence', 'list')),
    }
print(json.dumps({
    'signatures': [verdict(i) for i in range(len(signatures))],
    'had Reply-To': any(name(f) == b'reply-to' for f in fields),
    'asked': asked,
}))
"#;

fn dkimpy_verdict(message: &Path, published: &Published) -> Option<serde_json::Value> {
    let ed25519 = published.iter().any(|(_, k, _)| matches!(k, Key::Ed25519));
    let modules: &[&str] = if ed25519 { &["dkim", "nacl"] } else { &["dkim"] };
    let python = common::python_with(modules);
    if !have(python.is_some(), &format!("python3 with {} (pip install dkimpy pynacl)", modules.join(", "))) {
        return None;
    }
    let published: Vec<(&str, &str, &Path)> =
        published.iter().map(|(s, k, p)| (s.as_str(), k.kind(), p.as_path())).collect();
    let published = serde_json::to_string(&published).unwrap();
    let out = Command::new(python.unwrap()).arg("-c").arg(VERIFY).arg(message).arg(published).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "dkimpy failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    Some(serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}")))
}

/// The verdicts every signed issue must get, whatever the keys: one signature per `(algorithm,
/// selector)`, in that order, each verified by dkimpy and broken by each signed change.
fn assert_signatures_hold(v: &serde_json::Value, expected: &[(&str, &str)]) {
    let signatures = v["signatures"].as_array().unwrap();
    assert_eq!(signatures.len(), expected.len(), "{v}");
    for (s, (algorithm, selector)) in signatures.iter().zip(expected) {
        assert_eq!(s["a"], *algorithm, "{v}");
        assert_eq!(s["s"], *selector, "{v}");
        let name = format!("{selector}._domainkey.signals.example.org.");
        assert!(
            v["asked"].as_array().unwrap().iter().any(|a| *a == name.as_str()),
            "the key is looked up at selector._domainkey.domain: {v}"
        );
        let signed: Vec<&str> = s["h"].as_array().unwrap().iter().map(|h| h.as_str().unwrap()).collect();
        for h in MUST_SIGN {
            assert!(signed.iter().any(|s| s.eq_ignore_ascii_case(h)), "h= lists {h}: {signed:?}");
        }
        assert_eq!(s["as sent"], true, "dkimpy verifies the message as sent: {v}");
        for changed in ["Reply-To", "Subject", "List-Unsubscribe", "Content-Type", "body"] {
            assert_eq!(s[changed], false, "a changed {changed} breaks the signature: {v}");
        }
        // The control: the changes above fail because they are signed, not because editing breaks the file.
        assert_eq!(s["Precedence, not signed"], true, "{v}");
    }
}

#[test]
fn an_rsa_signed_issue_verifies_with_dkimpy_and_fails_once_reply_to_subject_or_unsubscribe_change() {
    let Some(verdicts) = verdicts_through_the_sink(&[Key::Rsa], true) else { return };
    for v in verdicts {
        assert_eq!(v["had Reply-To"], true, "the configured Reply-To is in the message, and was changed: {v}");
        assert_signatures_hold(&v, &[("rsa-sha256", "gazette")]);
    }
}

#[test]
fn an_ed25519_signed_issue_verifies_and_a_reply_to_added_in_transit_breaks_it() {
    let Some(verdicts) = verdicts_through_the_sink(&[Key::Ed25519], false) else { return };
    for v in verdicts {
        assert_eq!(v["had Reply-To"], false, "no Reply-To configured, so the test added one: {v}");
        assert_signatures_hold(&v, &[("ed25519-sha256", "gazette")]);
    }
}

/// RFC 8463 §1: RSA and Ed25519 side by side, each verified on its own.
#[test]
fn with_both_keys_each_message_carries_an_rsa_and_an_ed25519_signature_and_both_verify() {
    let Some(verdicts) = verdicts_through_the_sink(&[Key::Rsa, Key::Ed25519], true) else { return };
    for v in verdicts {
        assert_signatures_hold(&v, &[("rsa-sha256", "gazette"), ("ed25519-sha256", "gazette-ed")]);
    }
}

/// `spamassassin -t -L` over a full weekly issue from the example digests, signed as in
/// production. Local rules only (no network, no sa-update): the packaged rule set.
#[test]
fn spamassassin_scores_a_full_issue_at_zero_or_less_without_low_contrast_text() {
    if !have(run(Command::new("spamassassin").arg("-V")), "spamassassin (apt-get install spamassassin)") {
        return;
    }
    let Some((p, _)) = signing_project(&[Key::Rsa], false, "[smtp]\nurl = \"file://outbox\"\n") else { return };
    let message = send_one(&p);
    let home = tempfile::tempdir().unwrap();
    // Its own HOME and no Bayes: nothing learnt from an earlier run changes this one's score.
    let out = Command::new("spamassassin")
        .args(["-t", "-L", "--cf=use_bayes 0", "--cf=bayes_auto_learn 0"])
        .env("HOME", home.path())
        .stdin(std::fs::File::open(&message).unwrap())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "spamassassin failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let text = report.replace("\r\n", "\n");
    let head = &text[..text.find("\n\n").expect("a header section")];
    // Unfolded; SpamAssassin folds the list of rules after a comma.
    let head = head.replace(",\n\t", ",").replace("\n\t", " ").replace("\n ", " ");
    let status = head.lines().find(|l| l.starts_with("X-Spam-Status:")).expect("an X-Spam-Status header");
    let field = |tag: &str| {
        status.split_once(tag).and_then(|(_, rest)| rest.split_whitespace().next()).unwrap_or_default().to_string()
    };
    let score: f64 = field("score=").parse().unwrap_or_else(|e| panic!("{e}: {status}"));
    let rules: Vec<String> = field("tests=").split(',').filter(|r| !r.is_empty()).map(str::to_string).collect();
    let details = text.find("Content analysis details").map_or(status, |at| &text[at..]);
    assert!(rules.iter().any(|r| r == "HTML_MESSAGE"), "the rules hit are read from {status}");
    assert!(score <= 0.0, "SpamAssassin scores the issue {score} (rules hit: {rules:?}):\n{details}");
    assert!(
        !rules.iter().any(|r| r == "HTML_FONT_LOW_CONTRAST"),
        "text in the colour of its background (rules hit: {rules:?}):\n{details}"
    );
}
