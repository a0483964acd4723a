//! Bounces and complaints that come back after a send: the VERP envelope sender and the DSN
//! request a real SMTP server (Postfix's smtp-sink) receives, and what Gazette reads back.

mod common;

use common::dovecot::{Dovecot, IMAP_PASSWORD};
use common::{Project, Sink, header};

const WEEK: &str = "2023-07-23";
const ISSUE: &str = "2023-07-17";
const SECRET: &str = "test-secret-0123456789abcdef0123456789";
/// Appended right after `Project`'s [email] section, so it lands in it.
const BOUNCE_ADDRESS: &str = "bounce_address = \"bounces@signals.example.org\"\n";
/// The reputation guard off: a handful of readers of whom one complains or bounces passes every
/// `[reputation]` limit, and these tests are about what the reports do to readers and not about
/// holding the next issue (tests/reputation.rs).
const GUARD_OFF: &str = "\n[reputation]\ncomplaint_rate = \"off\"\nhard_bounce_rate = \"off\"\nrefused_messages = 0\n";

fn key() -> gazette::token::TokenKey {
    gazette::token::TokenKey::from_secret(SECRET.as_bytes().to_vec()).unwrap()
}

/// The subscribers' ids by address, from `subscribers list --format json`.
fn ids(p: &Project) -> std::collections::HashMap<String, i64> {
    let list: serde_json::Value =
        serde_json::from_str(&p.expect(0, &["subscribers", "list", "--format", "json"])).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| (s["email"].as_str().unwrap().to_string(), s["id"].as_i64().unwrap()))
        .collect()
}

#[test]
fn each_delivery_goes_out_from_its_own_verp_address_asking_for_failure_notices_only() {
    let sink = Sink::start(&[]);
    let p = Project::new(&format!("{BOUNCE_ADDRESS}{}", sink.smtp_config()));
    let readers = p.import_readers(3);
    p.expect(0, &["send", "--week", WEEK]);
    let ids = ids(&p);
    let got = sink.messages();
    assert_eq!(got.len(), 3);
    for m in &got {
        let id = ids[&m.rcpt];
        // MAIL FROM:<bounces+TOKEN@signals.example.org> RET=HDRS ENVID=<issue>.<subscriber>
        let mail = header(&m.raw, "X-Mail-Args").unwrap();
        let mut words = mail.split_whitespace();
        let sender = words.next().unwrap().trim_matches(['<', '>']);
        let token = sender
            .strip_prefix("bounces+")
            .and_then(|t| t.strip_suffix("@signals.example.org"))
            .unwrap_or_else(|| panic!("{mail}"));
        assert_eq!(gazette::token::verify_bounce_token(&key(), token), Some((id, ISSUE.parse().unwrap())), "{mail}");
        assert!(sender.split('@').next().unwrap().len() <= 64, "RFC 5321 local part: {sender}");
        let params: Vec<&str> = words.collect();
        assert!(params.contains(&"RET=HDRS"), "{mail}");
        assert!(params.contains(&format!("ENVID={ISSUE}.{id}").as_str()), "{mail}");
        let rcpt = header(&m.raw, "X-Rcpt-Args").unwrap();
        assert!(rcpt.contains("NOTIFY=FAILURE") && rcpt.contains(&format!("ORCPT=rfc822;{}", m.rcpt)), "{rcpt}");
        // The message itself still comes from the newsletter's address.
        let from = header(&m.raw, "From").unwrap();
        assert!(from.ends_with("<newsletter@signals.example.org>") && !from.contains("bounces"), "{from}");
    }
    assert_eq!(
        got.iter().map(|m| header(&m.raw, "X-Mail-Args").unwrap()).collect::<std::collections::HashSet<_>>().len(),
        readers.len()
    );

    // A server that does not offer DSN gets the VERP sender and no DSN parameters (RFC 3461 §4).
    let no_dsn = Sink::start(&["-N"]);
    let p = Project::new(&format!("{BOUNCE_ADDRESS}{}", no_dsn.smtp_config()));
    p.import_readers(2);
    p.expect(0, &["send", "--week", WEEK]);
    for m in no_dsn.messages() {
        let mail = header(&m.raw, "X-Mail-Args").unwrap();
        assert!(mail.starts_with("<bounces+") && !mail.contains("RET=") && !mail.contains("ENVID="), "{mail}");
        assert_eq!(header(&m.raw, "X-Rcpt-Args").unwrap(), format!("<{}>", m.rcpt));
    }

    // Without bounce_address nothing changes: the From address is the envelope sender, no DSN asked for.
    let plain = Sink::start(&[]);
    let p = Project::new(&plain.smtp_config());
    p.import_readers(2);
    p.expect(0, &["send", "--week", WEEK]);
    for m in plain.messages() {
        assert_eq!(header(&m.raw, "X-Mail-Args").unwrap(), "<newsletter@signals.example.org>");
        assert_eq!(header(&m.raw, "X-Rcpt-Args").unwrap(), format!("<{}>", m.rcpt));
    }
}

/// `gazette bounces import --dry-run --format json` on `dir`: one JSON object per line, by file name (and index).
fn import_json(p: &Project, paths: &[&std::path::Path]) -> Vec<serde_json::Value> {
    let mut args = vec!["bounces", "import", "--dry-run", "--format", "json"];
    let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    args.extend(paths.iter().map(String::as_str));
    let out = p.expect(0, &args);
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {l}")))
        .collect()
}

/// What the import must find in one message of tests/bounces.
struct Fixture {
    file: &'static str,
    /// Its place in an mbox.
    index: Option<u64>,
    kind: &'static str,
    permanent: &'static [&'static str],
    temporary: &'static [&'static str],
    complained: &'static [&'static str],
}

const fn fixture(
    file: &'static str,
    index: Option<u64>,
    kind: &'static str,
    permanent: &'static [&'static str],
    temporary: &'static [&'static str],
    complained: &'static [&'static str],
) -> Fixture {
    Fixture { file, index, kind, permanent, temporary, complained }
}

/// Every message in tests/bounces, in the order the import reads them.
const FIXTURES: &[Fixture] = &[
    fixture("aol.eml", None, "bounce", &["d.kowalczyk@aol.com"], &[], &[]),
    fixture("arf-complaint.eml", None, "complaint", &[], &[], &["r.castellano@example.com"]),
    fixture("exchange-ndr.msg", None, "bounce", &["priya.raman@corp.example.com"], &[], &[]),
    fixture("gmail-dsn.eml", None, "bounce", &["t.nakamura@example.org"], &[], &[]),
    fixture("lotus-notes.eml", None, "bounce", &["hanna.lindqvist@lotus.example.com"], &[], &[]),
    fixture("out-of-office.eml", None, "ignored", &[], &[], &[]),
    fixture("postfix-dsn-delayed.eml", None, "bounce", &[], &["lena.brandt@example.com"], &[]),
    fixture("postfix-dsn-permanent.eml", None, "bounce", &["m.okafor@example.net"], &[], &[]),
    fixture("qmail-failure", None, "bounce", &["j.ferreira@example.net"], &[], &[]),
    // 5.2.1 "Mailbox disabled": the mailbox, not the address, so temporary.
    fixture("returned.mbox", Some(1), "bounce", &[], &["k.oduya@example.org"], &[]),
    fixture("returned.mbox", Some(2), "ignored", &[], &[], &[]),
    fixture("sendmail-warning.eml", None, "bounce", &[], &["o.adeyemi@example.edu"], &[]),
    // "This user doesn't have a yahoo.com account" after the message was sent, with no status
    // that says the address is unknown: a filter's refusal as often as not (Sisimai: filtered).
    fixture("yahoo.eml", None, "bounce", &[], &["sam.whitfield@yahoo.com"], &[]),
];

fn expect_fixture(line: &serde_json::Value, f: &Fixture) {
    let source = line["source"].as_str().unwrap();
    assert!(source.ends_with(&format!("tests/bounces/{}", f.file)), "{line}");
    assert_eq!(line.get("index").and_then(|i| i.as_u64()), f.index, "{line}");
    assert_eq!(line["kind"], f.kind, "{}: {line}", f.file);
    assert_eq!(line["permanent"], serde_json::json!(f.permanent), "{}: {line}", f.file);
    assert_eq!(line["temporary"], serde_json::json!(f.temporary), "{}: {line}", f.file);
    assert_eq!(line["complained"], serde_json::json!(f.complained), "{}: {line}", f.file);
    // Every failed address has its reason, and only those.
    let mut failed: Vec<&str> = f.permanent.iter().chain(f.temporary).copied().collect();
    failed.sort();
    let reasons: Vec<&str> = line["reasons"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(reasons, failed, "{}: {line}", f.file);
    assert_eq!(line["refused"], serde_json::json!([]), "{}: {line}", f.file);
    let mut keys: Vec<&str> = line.as_object().unwrap().keys().map(String::as_str).collect();
    let mut wanted = vec!["complained", "kind", "permanent", "reasons", "refused", "source", "temporary"];
    if f.index.is_some() {
        wanted.push("index");
    }
    if f.kind == "ignored" {
        wanted.push("why");
    }
    wanted.sort();
    keys.sort();
    assert_eq!(keys, wanted, "exactly the keys the JSON format names");
}

#[test]
fn a_folder_of_real_world_reports_is_read_whatever_the_file_names_and_nothing_changes_on_a_dry_run() {
    let p = Project::new(BOUNCE_ADDRESS);
    // Subscribers named in the reports: a dry run must leave them active.
    for f in FIXTURES {
        for a in f.permanent.iter().chain(f.temporary).chain(f.complained) {
            p.expect(0, &["subscribers", "add", a]);
        }
    }
    let lines = import_json(&p, &[&common::repo().join("tests/bounces")]);
    assert_eq!(lines.len(), FIXTURES.len(), "one line per message: {lines:#?}");
    for (line, fixture) in lines.iter().zip(FIXTURES) {
        expect_fixture(line, fixture);
    }
    let list = p.expect(0, &["subscribers", "list", "--status", "active"]);
    assert!(
        list.contains(&format!(
            "{} subscribers",
            FIXTURES.iter().map(|f| f.permanent.len() + f.temporary.len() + f.complained.len()).sum::<usize>()
        )),
        "{list}"
    );
}

/// One test per format: each file alone, as a single message whatever its name ends with.
fn one_format(file: &str) {
    let p = Project::new(BOUNCE_ADDRESS);
    let path = common::repo().join("tests/bounces").join(file);
    let lines = import_json(&p, &[&path]);
    let expected: Vec<_> = FIXTURES.iter().filter(|f| f.file == file).collect();
    assert_eq!(lines.len(), expected.len(), "{lines:#?}");
    for (line, fixture) in lines.iter().zip(expected) {
        expect_fixture(line, fixture);
    }
}

#[test]
fn rfc3464_from_postfix_permanent() {
    one_format("postfix-dsn-permanent.eml");
}

#[test]
fn rfc3464_from_postfix_delayed_is_temporary() {
    one_format("postfix-dsn-delayed.eml");
}

#[test]
fn rfc3464_from_gmail() {
    one_format("gmail-dsn.eml");
}

#[test]
fn qmail() {
    one_format("qmail-failure");
}

#[test]
fn exchange() {
    one_format("exchange-ndr.msg");
}

#[test]
fn lotus_notes() {
    one_format("lotus-notes.eml");
}

#[test]
fn sendmail_plain_text_warning_is_temporary() {
    one_format("sendmail-warning.eml");
}

#[test]
fn postfix_plain_text_in_an_mbox_with_a_success_notice() {
    one_format("returned.mbox");
}

#[test]
fn yahoo() {
    one_format("yahoo.eml");
}

#[test]
fn aol() {
    one_format("aol.eml");
}

#[test]
fn arf_complaint() {
    one_format("arf-complaint.eml");
}

#[test]
fn out_of_office_is_ignored() {
    one_format("out-of-office.eml");
}

// ---------------------------------------------------------------------------------------------
// End to end: a send through smtp-sink with bounce_address, reports to the VERP addresses in a
// maildir and in a Dovecot mailbox, a scheduler round, and the next issue.
// ---------------------------------------------------------------------------------------------

/// The envelope sender and Message-ID each recipient's copy went out with.
fn sent_to(sink: &Sink) -> std::collections::HashMap<String, (String, String)> {
    sink.messages()
        .into_iter()
        .map(|m| {
            let sender = header(&m.raw, "X-Mail-Args")
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .trim_matches(['<', '>'])
                .to_string();
            (m.rcpt.clone(), (sender, m.message_id.clone()))
        })
        .collect()
}

/// A delivery status notification as a relay writes it, to the VERP address `to`.
fn dsn(to: &str, recipient: &str, message_id: &str, action: &str, status: &str, diagnostic: &str) -> String {
    format!(
        "Return-Path: <>\r\nFrom: MAILER-DAEMON@relay.example.net (Mail Delivery System)\r\nTo: {to}\r\n\
         Subject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n\
         Message-Id: <dsn.{status}.{recipient}>\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"B0\"\r\n\r\n\
         --B0\r\nContent-Type: text/plain\r\n\r\nThis is the mail system at host relay.example.net.\r\n\r\n\
         <{recipient}>: {diagnostic}\r\n\r\n\
         --B0\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; relay.example.net\r\n\r\n\
         Final-Recipient: rfc822; {recipient}\r\nAction: {action}\r\nStatus: {status}\r\nDiagnostic-Code: smtp; {diagnostic}\r\n\r\n\
         --B0\r\nContent-Type: text/rfc822-headers\r\n\r\nReturn-Path: <{to}>\r\nTo: {recipient}\r\nMessage-ID: {message_id}\r\n\r\n--B0--\r\n"
    )
}

/// An abuse report from a feedback loop that redacts the recipient: only the VERP address and the
/// Message-ID can say who complained.
fn arf(to: &str, message_id: &str) -> String {
    format!(
        "From: Feedback Loop <fbl@feedback.example.com>\r\nTo: {to}\r\nSubject: Abuse report\r\nMIME-Version: 1.0\r\n\
         Message-ID: <arf.1@feedback.example.com>\r\n\
         Content-Type: multipart/report; report-type=feedback-report; boundary=\"F0\"\r\n\r\n\
         --F0\r\nContent-Type: text/plain\r\n\r\nAn abuse report.\r\n\r\n\
         --F0\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nVersion: 1\r\nOriginal-Rcpt-To: <redacted>\r\n\r\n\
         --F0\r\nContent-Type: text/rfc822-headers\r\n\r\nReturn-Path: <{to}>\r\nTo: redacted\r\nMessage-ID: {message_id}\r\n\r\n--F0--\r\n"
    )
}

/// The reports of the issue's "Done when": a permanent failure for the first reader, a temporary
/// one for the second, a complaint for the third, and an out-of-office from the fourth.
fn reports(sink: &Sink, readers: &[String]) -> Vec<String> {
    let sent = sent_to(sink);
    let (verp0, id0) = &sent[&readers[0]];
    let (verp1, id1) = &sent[&readers[1]];
    let (verp2, id2) = &sent[&readers[2]];
    vec![
        dsn(
            verp0,
            &readers[0],
            id0,
            "failed",
            "5.1.1",
            "550 5.1.1 <reader0000@example.org>: Recipient address rejected: User unknown",
        ),
        dsn(verp1, &readers[1], id1, "delayed", "4.2.2", "452 4.2.2 Mailbox full"),
        arf(verp2, id2),
        format!(
            "From: {r} \r\nTo: newsletter@signals.example.org\r\nSubject: Out of office\r\nAuto-Submitted: auto-replied\r\n\r\n\
             I am away until August; mail to {r} will wait. I was not delivered to: anyone.\r\n",
            r = readers[3]
        ),
    ]
}

/// After the round that read the reports: who is what, what `status` says, and that the next
/// issue goes only to the second and fourth.
fn check_policy_and_next_issue(p: &Project, sink: &Sink, readers: &[String], env: &[(&str, &str)]) {
    let bounced = p.expect(0, &["subscribers", "list", "--status", "bounced"]);
    assert!(
        bounced.contains(&readers[0]) && bounced.contains("REASON") && bounced.contains("5.1.1 550 5.1.1"),
        "{bounced}"
    );
    assert!(bounced.contains("1 subscriber"), "{bounced}");
    let complained = p.expect(0, &["subscribers", "list", "--status", "complained"]);
    assert!(complained.contains(&readers[2]) && complained.contains("complaint: abuse report"), "{complained}");
    let active = p.expect(0, &["subscribers", "list", "--status", "active"]);
    assert!(
        active.contains(&readers[1]) && active.contains(&readers[3]) && active.contains("2 subscribers"),
        "{active}"
    );

    let status: serde_json::Value = serde_json::from_str(&p.expect(0, &["status", "--week", WEEK, "--json"])).unwrap();
    assert_eq!(status["returned"], serde_json::json!({"permanent": 1, "temporary": 1, "complaints": 1}), "{status}");
    assert_eq!(status["bounced"], 1, "the permanent failure marks its delivery: {status}");
    let text = p.expect(0, &["status", "--week", WEEK]);
    assert!(text.contains("came back after the send") && text.contains("complaints"), "{text}");

    // The next issue's round: the bounced and the complaining readers get nothing.
    let before = sink.messages().len();
    let (code, log) = once_with(p, "2023-07-31T08:05:00+01:00", env);
    assert_eq!(code, 0, "{log}");
    let mut next: Vec<String> =
        sink.messages().into_iter().filter(|m| m.message_id.starts_with("<2023-07-24.")).map(|m| m.rcpt).collect();
    next.sort();
    assert_eq!(next, [readers[1].clone(), readers[3].clone()], "{log}");
    assert_eq!(sink.messages().len(), before + 2);
}

fn once(p: &Project, now: &str) -> (i32, String) {
    once_with(p, now, &[])
}

/// `gazette run --once --now NOW` with these variables set; its exit code and its log.
fn once_with(p: &Project, now: &str, env: &[(&str, &str)]) -> (i32, String) {
    let out = p
        .command(&["run", "--once", "--now", now])
        .env("RUST_LOG", "gazette=debug")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

#[test]
fn reports_in_a_maildir_stop_the_next_issue_to_the_bounced_and_the_complaining() {
    let sink = Sink::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let p = Project::new(&format!(
        "{BOUNCE_ADDRESS}{}\n[bounces]\nmailbox = {:?}\n{GUARD_OFF}",
        sink.smtp_config(),
        maildir.display().to_string()
    ));
    let readers = p.import_readers(4);
    // A mailbox that is not there is said, and does not hold the send back.
    let (code, log) = once(&p, "2023-07-24T08:05:00+01:00");
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains(&format!("{} is not a maildir", maildir.display())) && log.contains("[bounces] mailbox"),
        "{log}"
    );
    assert_eq!(sink.messages().len(), 4);

    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    for (i, report) in reports(&sink, &readers).iter().enumerate() {
        std::fs::write(maildir.join(format!("new/1690000000.M{i}P1.relay")), report).unwrap();
    }
    // A round with nothing due reads the mailbox.
    let (code, log) = once(&p, "2023-07-26T12:00:00+01:00");
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("bounce mailbox: 4 read: 2 bounces, 1 complaints, 1 ignored, 0 about no known subscriber"),
        "{log}"
    );
    assert!(common::read_messages(&maildir.join("new")).is_empty(), "nothing is left to read twice");
    let moved: Vec<_> = std::fs::read_dir(maildir.join(".Processed/cur"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(moved.len(), 4, "nothing is deleted: {moved:?}");
    assert!(moved.iter().all(|n| n.ends_with(":2,S")), "{moved:?}");
    check_policy_and_next_issue(&p, &sink, &readers, &[]);
}

/// A project sending through `sink` whose bounce mailbox is Dovecot's INBOX.
fn imap_project(dovecot: &Dovecot, sink: &Sink) -> Project {
    Project::new(&format!(
        "{BOUNCE_ADDRESS}{}\n[bounces]\nmailbox = \"imaps://bounces@127.0.0.1:{}/INBOX\"\nca_file = {:?}\n{GUARD_OFF}",
        sink.smtp_config(),
        dovecot.port,
        dovecot.cert().display().to_string()
    ))
}

#[test]
fn reports_in_an_imap_mailbox_on_dovecot_stop_the_next_issue_to_the_bounced_and_the_complaining() {
    let Some(dovecot) = Dovecot::start() else { return };
    let sink = Sink::start(&[]);
    let p = imap_project(&dovecot, &sink);
    let readers = p.import_readers(4);
    // Without the password, the round says which variable to set and still sends.
    let (code, log) = once(&p, "2023-07-24T08:05:00+01:00");
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("GAZETTE_BOUNCES_PASSWORD is not set"), "{log}");
    assert_eq!(sink.messages().len(), 4);

    dovecot.append(&reports(&sink, &readers));
    assert_eq!(dovecot.count("INBOX"), 4);
    // A wrong password is refused and named.
    let out = p
        .command(&["run", "--once", "--now", "2023-07-26T12:00:00+01:00"])
        .env("GAZETTE_BOUNCES_PASSWORD", "wrong")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("refused the login of `bounces`"), "{log}");
    assert_eq!(dovecot.count("INBOX"), 4, "nothing read");

    let out = p
        .command(&["run", "--once", "--now", "2023-07-26T12:00:00+01:00"])
        .env("GAZETTE_BOUNCES_PASSWORD", IMAP_PASSWORD)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(
        log.contains("bounce mailbox: 4 read: 2 bounces, 1 complaints, 1 ignored, 0 about no known subscriber"),
        "{log}"
    );
    assert_eq!((dovecot.count("INBOX"), dovecot.count("Processed")), (0, 4), "moved, not deleted");
    // The next round finds nothing new to read.
    let out = p
        .command(&["run", "--once", "--now", "2023-07-27T12:00:00+01:00"])
        .env("GAZETTE_BOUNCES_PASSWORD", IMAP_PASSWORD)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bounce mailbox: 0 read"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_policy_and_next_issue(&p, &sink, &readers, &[("GAZETTE_BOUNCES_PASSWORD", IMAP_PASSWORD)]);
}

// ---------------------------------------------------------------------------------------------
// Messages that cannot be read: set aside in the mailbox's Unreadable folder, named in the log,
// counted by `status`, and the round goes on to publish and send.
// ---------------------------------------------------------------------------------------------

/// A message with a 20 MB attachment (base64, so about 27 MB): twice the limit.
fn with_huge_attachment() -> String {
    let line = "A".repeat(76);
    let lines = 20 * 1024 * 1024 / 57 + 1;
    let mut m = String::with_capacity(lines * 78 + 1000);
    m.push_str(
        "From: someone@example.com\r\nTo: bounces@signals.example.org\r\nSubject: the slides\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"M0\"\r\n\r\n--M0\r\nContent-Type: text/plain\r\n\r\nAttached.\r\n\r\n\
         --M0\r\nContent-Type: application/octet-stream; name=\"slides.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n",
    );
    for _ in 0..lines {
        m.push_str(&line);
        m.push_str("\r\n");
    }
    m.push_str("--M0--\r\n");
    m
}

/// The mailbox of the issue's "Done when", by a name for each: a real failure notice for the
/// second reader that the classifier panics on (the test hook of debug builds, which the
/// integration tests run), an empty message, one with a 20 MB attachment, and a real permanent
/// failure for the first reader.
fn unreadable_and_a_bounce(sink: &Sink, readers: &[String]) -> Vec<(&'static str, String)> {
    let sent = sent_to(sink);
    let (verp0, id0) = &sent[&readers[0]];
    let (verp1, id1) = &sent[&readers[1]];
    let panicking = dsn(verp1, &readers[1], id1, "failed", "5.1.1", "550 5.1.1 User unknown");
    vec![
        ("1690000001.M1P1.panic", format!("X-Gazette-Test: panic\r\n{panicking}")),
        ("1690000002.M2P1.empty", String::new()),
        ("1690000003.M3P1.huge", with_huge_attachment()),
        (
            "1690000004.M4P1.bounce",
            dsn(
                verp0,
                &readers[0],
                id0,
                "failed",
                "5.1.1",
                "550 5.1.1 <reader0000@example.org>: Recipient address rejected: User unknown",
            ),
        ),
    ]
}

/// After the round at 2023-07-31 08:05 that read `unreadable_and_a_bounce` (three readers): it
/// went on, the three bad messages are named in the log with why (`sources`: the panicking,
/// the empty and the huge one) and counted by `status`, the bounce is applied, and issue #8 went
/// to the other two.
fn check_set_aside(p: &Project, sink: &Sink, readers: &[String], (code, log): (i32, String), sources: [&str; 3]) {
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains(
            "bounce mailbox: 4 read: 1 bounces, 0 complaints, 0 ignored, 0 about no known subscriber, 3 unreadable"
        ),
        "{log}"
    );
    for (source, why) in sources.iter().zip(["reading it made Gazette panic", "it is empty", "MB, over the 10 MB"]) {
        let line = log
            .lines()
            .find(|l| l.contains(&format!("{source}: moved to the Unreadable folder")))
            .unwrap_or_else(|| panic!("{source} is not named: {log}"));
        assert!(line.contains("WARN") && line.contains(why), "{line}");
    }
    assert!(log.contains("X-Gazette-Test: panic") && log.contains("this is a bug in Gazette"), "{log}");
    assert!(
        !log.contains("panicked at"),
        "the caught panic is logged once, not printed by the default panic hook too: {log}"
    );

    let list: serde_json::Value =
        serde_json::from_str(&p.expect(0, &["subscribers", "list", "--format", "json"])).unwrap();
    let status_of = |who: &str| {
        list.as_array().unwrap().iter().find(|s| s["email"] == who).unwrap()["status"].as_str().unwrap().to_string()
    };
    assert_eq!(status_of(&readers[0]), "bounced", "the real bounce is applied: {list}");
    assert_eq!(status_of(&readers[1]), "active", "the notice the classifier panicked on changed nothing: {list}");

    // The round published the next issue and sent it to the two still active.
    let mut next: Vec<String> =
        sink.messages().into_iter().filter(|m| m.message_id.starts_with("<2023-07-24.")).map(|m| m.rcpt).collect();
    next.sort();
    assert_eq!(next, [readers[1].clone(), readers[2].clone()], "{log}");
    let status: serde_json::Value =
        serde_json::from_str(&p.expect(0, &["status", "--week", "2023-07-24", "--json"])).unwrap();
    assert_eq!((status["number"].as_i64(), status["sent"].as_i64()), (Some(8), Some(2)), "{status}");
    assert_eq!(status["unreadable"]["count"], 3, "{status}");
    let mut named: Vec<&str> =
        status["unreadable"]["newest"].as_array().unwrap().iter().map(|u| u["source"].as_str().unwrap()).collect();
    named.sort();
    let mut wanted = sources.to_vec();
    wanted.sort();
    assert_eq!(named, wanted, "{status}");
    assert!(
        status["unreadable"]["newest"].as_array().unwrap().iter().all(|u| !u["why"].as_str().unwrap().is_empty()),
        "{status}"
    );
    let text = p.expect(0, &["status", "--week", "2023-07-24"]);
    assert!(
        text.contains("3 messages of the bounce mailbox could not be read and were moved into its Unreadable folder"),
        "{text}"
    );
    for (source, why) in sources.iter().zip(["reading it made Gazette panic", "it is empty", "MB, over the 10 MB"]) {
        assert!(text.lines().any(|l| l.contains(source) && l.contains(why)), "{source}: {text}");
    }
}

#[test]
fn unreadable_messages_in_a_maildir_are_set_aside_and_the_round_publishes_and_sends() {
    let sink = Sink::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    let p = Project::new(&format!(
        "{BOUNCE_ADDRESS}{}\n[bounces]\nmailbox = {:?}\n{GUARD_OFF}",
        sink.smtp_config(),
        maildir.display().to_string()
    ));
    let readers = p.import_readers(3);
    let (code, log) = once(&p, "2023-07-24T08:05:00+01:00");
    assert_eq!((code, sink.messages().len()), (0, 3), "{log}");

    let messages = unreadable_and_a_bounce(&sink, &readers);
    for (name, text) in &messages {
        std::fs::write(maildir.join("new").join(name), text).unwrap();
    }
    let source = |i: usize| maildir.join("new").join(messages[i].0).display().to_string();
    let round = once(&p, "2023-07-31T08:05:00+01:00");
    check_set_aside(&p, &sink, &readers, round, [&source(0), &source(1), &source(2)]);

    // On disk: the three in .Unreadable/cur (whole, seen), the bounce in .Processed/cur, none left.
    let names = |folder: &str| -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(maildir.join(folder))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        n.sort();
        n
    };
    assert_eq!(names("new"), Vec::<String>::new());
    assert_eq!(names("cur"), Vec::<String>::new());
    assert_eq!(names(".Unreadable/cur"), messages[..3].iter().map(|(n, _)| format!("{n}:2,S")).collect::<Vec<_>>());
    assert_eq!(names(".Processed/cur"), [format!("{}:2,S", messages[3].0)]);
    let huge = std::fs::metadata(maildir.join(".Unreadable/cur").join(format!("{}:2,S", messages[2].0))).unwrap().len();
    assert_eq!(huge, messages[2].1.len() as u64, "moved as it was");

    // The next round reads nothing again.
    let (code, log) = once(&p, "2023-07-31T12:00:00+01:00");
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("bounce mailbox: 0 read") && !log.contains("Unreadable folder"), "{log}");
}

#[test]
fn unreadable_messages_in_an_imap_mailbox_on_dovecot_are_set_aside_and_the_round_publishes_and_sends() {
    let Some(dovecot) = Dovecot::start() else { return };
    let sink = Sink::start(&[]);
    let p = imap_project(&dovecot, &sink);
    let env = [("GAZETTE_BOUNCES_PASSWORD", IMAP_PASSWORD)];
    let readers = p.import_readers(3);
    let (code, log) = once_with(&p, "2023-07-24T08:05:00+01:00", &env);
    assert_eq!((code, sink.messages().len()), (0, 3), "{log}");

    let messages = unreadable_and_a_bounce(&sink, &readers);
    // Dovecot refuses to APPEND an empty message, so that one arrives as a delivery agent would
    // bring it, last. The server numbers them in the order they came: the panicking one is UID 1,
    // the huge one 2, the bounce 3, the empty one 4.
    dovecot.append(&[messages[0].1.clone(), messages[2].1.clone(), messages[3].1.clone()]);
    dovecot.deliver(messages[1].0, &messages[1].1);
    assert_eq!(dovecot.count("INBOX"), 4);
    let source = |uid: usize| format!("imaps://bounces@127.0.0.1:{}/INBOX;UID={uid}", dovecot.port);
    let round = once_with(&p, "2023-07-31T08:05:00+01:00", &env);
    check_set_aside(&p, &sink, &readers, round, [&source(1), &source(4), &source(2)]);
    assert_eq!(
        (dovecot.count("INBOX"), dovecot.count("Unreadable"), dovecot.count("Processed")),
        (0, 3, 1),
        "moved, not deleted"
    );
    // The huge one was never downloaded: Dovecot logs what each session sent (`out=` bytes).
    let dovecot_log = std::fs::read_to_string(dovecot.dir.path().join("dovecot.log")).unwrap();
    let sent: Vec<u64> =
        dovecot_log.split(" out=").skip(1).map(|s| s.split(' ').next().unwrap().trim().parse().unwrap()).collect();
    assert!(!sent.is_empty() && sent.iter().all(|&n| n < 1024 * 1024), "{dovecot_log}");

    // The next round reads nothing again.
    let (code, log) = once_with(&p, "2023-07-31T12:00:00+01:00", &env);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("bounce mailbox: 0 read") && !log.contains("Unreadable folder"), "{log}");
}

// ---------------------------------------------------------------------------------------------
// The policy by reason: only an address that does not work stops the mail at once; a full mailbox
// counts as temporary; a refusal of the message or the sender is never the reader's fault, and is
// counted for the issue and the provider instead. At sending (a relay refusing RCPT) and after it
// (reports that came back). The spam cases need the classifier to read `5.7.1 ... spam` as
// `spamdetected`.
// ---------------------------------------------------------------------------------------------

/// Every subscriber's status and reason, by address, from `subscribers list --format json`.
fn statuses(p: &Project) -> std::collections::BTreeMap<String, (String, serde_json::Value)> {
    let list: serde_json::Value =
        serde_json::from_str(&p.expect(0, &["subscribers", "list", "--format", "json"])).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (s["email"].as_str().unwrap().to_string(), (s["status"].as_str().unwrap().to_string(), s["reason"].clone()))
        })
        .collect()
}

#[test]
fn refusals_at_rcpt_bounce_only_the_address_that_does_not_work() {
    use common::relay::{Mode, Relay, SECRET as SMTP_SECRET, TestCa, USER};
    if !common::relay::available() {
        return;
    }
    let ca = TestCa::new();
    let spam = "ada@gmail.com=550 5.7.1 [203.0.113.5] Our system has detected that this message is likely unsolicited mail. To reduce the amount of spam sent to Gmail, this message has been blocked.";
    let unknown = "bob@example.net=550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown in virtual mailbox table";
    let full = "cy@example.com=552 5.2.2 <cy@example.com>: Mailbox full";
    let relay = Relay::start(Mode::StartTls, &ca.localhost, &["--refuse", spam, "--refuse", unknown, "--refuse", full]);
    let p = Project::new(&format!(
        "[smtp]\nurl = \"{}\"\nusername = \"{USER}\"\ntimeout = \"10s\"\nca_file = {:?}\n",
        relay.url(),
        ca.ca.display().to_string()
    ));
    for a in ["ada@gmail.com", "bob@example.net", "cy@example.com", "dee@gmail.com"] {
        p.expect(0, &["subscribers", "add", a]);
    }
    let out = p.command(&["send", "--week", WEEK]).env("GAZETTE_SMTP_PASSWORD", SMTP_SECRET).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}\nrelay:\n{}", String::from_utf8_lossy(&out.stderr), relay.log());
    let delivered: Vec<Vec<String>> = relay.messages().into_iter().map(|m| m.rcpt_tos).collect();
    assert_eq!(delivered, [["dee@gmail.com"]]);

    let status: serde_json::Value = serde_json::from_str(&p.expect(0, &["status", "--week", WEEK, "--json"])).unwrap();
    assert_eq!(
        (status["sent"].as_i64(), status["bounced"].as_i64(), status["failed"].as_i64()),
        (Some(1), Some(1), Some(2)),
        "{status}"
    );
    assert_eq!(
        status["deliverability"],
        serde_json::json!([{"provider": "gmail.com", "reason": "spamdetected", "messages": 1}]),
        "{status}"
    );
    let text = p.expect(0, &["status", "--week", WEEK]);
    assert!(text.contains("gmail.com refused 1 message as spam (spamdetected)"), "{text}");
    let active = serde_json::Value::Null;
    let expected = [
        ("ada@gmail.com", ("active", active.clone())),
        ("bob@example.net", ("bounced", serde_json::json!("userunknown"))),
        ("cy@example.com", ("active", active.clone())),
        ("dee@gmail.com", ("active", active)),
    ];
    let expected: std::collections::BTreeMap<String, (String, serde_json::Value)> =
        expected.into_iter().map(|(a, (s, r))| (a.to_string(), (s.to_string(), r))).collect();
    assert_eq!(statuses(&p), expected);
}

#[test]
fn reports_of_spam_a_full_mailbox_and_an_unknown_user_each_do_what_the_policy_says() {
    let sink = Sink::start(&[]);
    let p = Project::new(&format!("{BOUNCE_ADDRESS}{}", sink.smtp_config()));
    let readers = p.import_readers(3);
    p.expect(0, &["send", "--week", WEEK]);
    let sent = sent_to(&sink);
    let report = |i: usize, status: &str, diagnostic: &str| {
        dsn(&sent[&readers[i]].0, &readers[i], &sent[&readers[i]].1, "failed", status, diagnostic)
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("1-spam.eml"),
        report(0, "5.7.1", "550 5.7.1 Message rejected as spam: likely unsolicited mail"),
    )
    .unwrap();
    std::fs::write(dir.path().join("2-full.eml"), report(1, "5.2.2", "552 5.2.2 Mailbox full")).unwrap();
    std::fs::write(
        dir.path().join("3-unknown.eml"),
        report(2, "5.1.1", "550 5.1.1 <reader0002@example.org>: User unknown"),
    )
    .unwrap();
    let out = p.expect(0, &["bounces", "import", dir.path().to_str().unwrap()]);
    let line = |name: &str| {
        out.lines().find(|l| l.contains(name)).unwrap_or_else(|| panic!("no line for {name}:\n{out}")).to_string()
    };
    let spam = line("1-spam.eml");
    assert!(
        spam.contains("refused as spam (spamdetected) for reader0000@example.org")
            && spam.contains("not counted against the reader"),
        "{spam}"
    );
    assert!(line("2-full.eml").contains("temporary failure counted (1 of 3 issues in a row)"), "{out}");
    assert!(line("3-unknown.eml").contains("now bounced"), "{out}");
    assert!(out.contains("1 subscribers now bounced"), "{out}");

    let expected: std::collections::BTreeMap<String, (String, serde_json::Value)> = [
        (readers[0].clone(), ("active".to_string(), serde_json::Value::Null)),
        (readers[1].clone(), ("active".to_string(), serde_json::Value::Null)),
        (readers[2].clone(), ("bounced".to_string(), serde_json::json!("userunknown"))),
    ]
    .into();
    assert_eq!(statuses(&p), expected);
    let status: serde_json::Value = serde_json::from_str(&p.expect(0, &["status", "--week", WEEK, "--json"])).unwrap();
    assert_eq!(status["returned"], serde_json::json!({"permanent": 1, "temporary": 1, "complaints": 0}), "{status}");
    assert_eq!(
        status["deliverability"],
        serde_json::json!([{"provider": "example.org", "reason": "spamdetected", "messages": 1}]),
        "{status}"
    );
    // The refused message did not arrive: failed; the full mailbox's stays sent (a report of it may be temporary).
    assert_eq!(
        (status["sent"].as_i64(), status["failed"].as_i64(), status["bounced"].as_i64()),
        (Some(1), Some(1), Some(1)),
        "{status}"
    );
    let text = p.expect(0, &["status", "--week", WEEK]);
    assert!(text.contains("example.org refused 1 message as spam (spamdetected)"), "{text}");
    // Read again, the same reports record nothing new.
    let again = p.expect(0, &["bounces", "import", dir.path().to_str().unwrap()]);
    assert_eq!(again.matches("read before: nothing new").count(), 3, "{again}");
    let status: serde_json::Value = serde_json::from_str(&p.expect(0, &["status", "--week", WEEK, "--json"])).unwrap();
    assert_eq!(status["deliverability"][0]["messages"], 1, "{status}");
}

/// The README's list of reasons names each of `Reason::ALL` once, under what its scope does to a
/// reader: a reason added, renamed or moved to another scope must be said there too.
#[test]
fn the_readme_lists_every_reason_under_what_it_does() {
    use gazette::bounces::{Reason, Scope};
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    let start = readme.find("**The reasons.**").expect("README.md has a paragraph `**The reasons.**`");
    // Its bullets, each with its continuation lines.
    let mut bullets: Vec<String> = Vec::new();
    for line in readme[start..].lines().skip(1) {
        if let Some(bullet) = line.strip_prefix("- ") {
            bullets.push(bullet.to_string());
        } else if let (Some(more), Some(last)) = (line.strip_prefix("  "), bullets.last_mut()) {
            last.push(' ');
            last.push_str(more);
        } else {
            break;
        }
    }
    let headings = [
        (Scope::Address, "**Stop the mail at once**"),
        (Scope::Mailbox, "**Count as temporary**"),
        (Scope::Sender, "**The sender's problem"),
    ];
    assert_eq!(bullets.len(), headings.len(), "one bullet per scope: {bullets:#?}");
    for bullet in &bullets {
        let (scope, _) = headings
            .iter()
            .find(|(_, h)| bullet.starts_with(h))
            .unwrap_or_else(|| panic!("a bullet that does not say what its reasons do: {bullet}"));
        // Every code span without a space is a reason's name (`gazette status` is not one).
        let mut named: Vec<&str> = bullet.split('`').skip(1).step_by(2).filter(|span| !span.contains(' ')).collect();
        for name in &named {
            assert!(Reason::parse(name).is_some(), "README: `{name}` is not a reason");
        }
        named.sort();
        let mut expected: Vec<&str> = Reason::ALL.iter().filter(|r| r.scope() == *scope).map(|r| r.as_str()).collect();
        expected.sort();
        assert_eq!(named, expected, "the reasons of {scope:?} scope, each once: {bullet}");
    }
}

/// A reader whose address forwards elsewhere: the notice names the address that failed, and the
/// one Gazette sent to only as the Original-Recipient. The reader is found by either.
#[test]
fn a_failure_at_a_forwarding_address_is_attributed_to_the_reader_it_was_sent_to() {
    let p = Project::new(BOUNCE_ADDRESS);
    p.expect(0, &["subscribers", "add", "ada@example.org"]);
    p.expect(0, &["subscribers", "add", "bob@example.org"]);
    let dir = tempfile::tempdir().unwrap();
    let forwarded = dsn("news@signals.example.org", "ada.lovelace@forwarded.example.net", "<x@y>", "failed", "5.1.1", "550 5.1.1 User unknown (in reply to RCPT TO command)")
        .replace("Final-Recipient: rfc822; ada.lovelace@forwarded.example.net\r\n", "Final-Recipient: rfc822; ada.lovelace@forwarded.example.net\r\nOriginal-Recipient: rfc822; ada@example.org\r\n");
    std::fs::write(dir.path().join("forwarded.eml"), forwarded).unwrap();
    let out = p.expect(0, &["bounces", "import", &dir.path().join("forwarded.eml").display().to_string()]);
    assert!(out.contains("ada@example.org (by the address") && out.contains("now bounced"), "{out}");
    let list: serde_json::Value =
        serde_json::from_str(&p.expect(0, &["subscribers", "list", "--format", "json"])).unwrap();
    let status = |who: &str| {
        list.as_array().unwrap().iter().find(|s| s["email"] == who).unwrap()["status"].as_str().unwrap().to_string()
    };
    assert_eq!(
        (status("ada@example.org").as_str(), status("bob@example.org").as_str()),
        ("bounced", "active"),
        "{list}"
    );
}
