//! `gazette send` against a real SMTP server (Postfix's smtp-sink): one message per active
//! subscriber, the headers mail servers expect, the test send, 4xx/5xx/unreachable paths,
//! kill -9 and resume, a second concurrent sender, and unsubscribes between runs; each scenario on
//! SQLite and on PostgreSQL (`on_both_stores!`).

mod common;

use std::collections::HashSet;

use common::{Project, Sink, header};

const WEEK: &str = "2023-07-23";

fn status(p: &Project) -> serde_json::Value {
    serde_json::from_str(&p.expect(0, &["status", "--week", WEEK, "--json"])).unwrap()
}

/// Sends to `n` readers over 4 connections at full speed, kills the sender with SIGKILL once
/// `kill_at` messages have arrived, reruns it, and returns how many messages the sink received
/// twice (the same Message-ID: the rerun's resends). Checks that everyone got the issue.
fn resends_after_kill_9(n: usize, kill_at: usize) -> usize {
    let sink = Sink::start(&[]);
    let p = Project::new(&sink.smtp_config());
    let readers = p.import_readers(n);
    let mut child = p
        .command(&["send", "--week", WEEK])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    sink.wait_for(kill_at);
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let at_kill = sink.count();
    assert!(at_kill < n, "killed part-way, not after the end ({at_kill} of {n})");
    let before = status(&p);
    assert!(before["sent"].as_i64().unwrap() > 0, "outcomes were recorded before the kill: {before}");
    // On SQLite the accepted messages not yet folded into the ledger are in the send's journal.
    let journals = || -> Vec<String> {
        let names = std::fs::read_dir(p.path("db"))
            .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect());
        names
            .unwrap_or_else(|_| Vec::new())
            .into_iter()
            .filter(|n: &String| n.starts_with("gazette.db.sent-"))
            .collect()
    };
    let expected: &[&str] = if common::on_sqlite() { &["gazette.db.sent-2023-07-17"] } else { &[] };
    assert_eq!(journals(), expected, "the journal of the issue's send (named by its id), on SQLite only");
    let journaled =
        expected.first().map_or(0, |name| std::fs::read_to_string(p.path("db").join(name)).unwrap().lines().count());
    assert_eq!(before["journaled"].as_u64(), Some(journaled as u64), "status counts what the journal holds: {before}");

    let out = p.expect(0, &["send", "--week", WEEK]);
    assert_eq!(journals(), Vec::<String>::new(), "a send that ends removes its journal");
    let resent = common::everyone_once_per_message_id(&sink.whole_messages(), &readers);
    let s = status(&p);
    assert_eq!(
        (s["sent"].as_i64(), s["pending"].as_i64(), s["sending"].as_i64()),
        (Some(n as i64), Some(0), Some(0)),
        "{s}"
    );
    // The rerun sends what was recorded neither in the ledger nor in the journal.
    let number_before = |tail: &str| -> i64 {
        let at = out.find(tail).map(|i| out[..i].trim_end()).unwrap_or("");
        at.rsplit(|c: char| !c.is_ascii_digit()).next().and_then(|d| d.parse().ok()).unwrap_or(0)
    };
    let (recovered, sent_now) =
        (number_before(" messages that a stopped run had sent"), number_before(" messages sent now"));
    assert_eq!(recovered + sent_now, n as i64 - before["sent"].as_i64().unwrap(), "{out}");
    assert!(recovered <= journaled as i64, "only what the journal held is recovered: {recovered} of {journaled}");
    assert_eq!(s["journaled"].as_u64(), Some(0), "{s}");
    resent
}

/// SQLite keeps one sender per issue (on PostgreSQL a second one joins: tests/postgres.rs).
#[test]
fn on_sqlite_a_second_sender_for_the_same_issue_is_refused() {
    let sink = Sink::start(&[]);
    let p = Project::new(&format!(
        "[smtp]\nurl = \"smtp://127.0.0.1:{}?tls=none\"\nconcurrency = 1\nrate_per_second = 20\n",
        sink.port
    ));
    p.import_readers(60);
    let mut first = p
        .command(&["send", "--week", WEEK])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    sink.wait_for(1);
    let second = p.run(&["send", "--week", WEEK]);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("being sent by another process"), "{stderr}");
    assert!(first.wait().unwrap().success());
    let got = sink.messages();
    assert_eq!(got.len(), 60, "nobody got it twice");
}

// Each scenario runs against SQLite and against PostgreSQL.
on_both_stores! {
    fn every_active_subscriber_gets_exactly_one_message_with_the_headers_mail_servers_expect() {
        let sink = Sink::start(&[]);
        let p = Project::new(&sink.smtp_config());
        let readers = p.import_readers(40);
        p.expect(0, &["subscribers", "remove", &readers[7]]);

        let out = p.expect(0, &["send", "--week", WEEK]);
        assert!(out.contains("39 messages sent"), "{out}");
        let got = sink.messages();
        assert_eq!(got.len(), 39, "one message per active subscriber");
        let rcpts: HashSet<&str> = got.iter().map(|m| m.rcpt.as_str()).collect();
        let expected: HashSet<&str> = readers.iter().map(String::as_str).filter(|r| *r != readers[7]).collect();
        assert_eq!(rcpts, expected);
        let ids: HashSet<&str> = got.iter().map(|m| m.message_id.as_str()).collect();
        assert_eq!(ids.len(), 39, "Message-IDs are unique per subscriber");

        let tokens: HashSet<String> = got
            .iter()
            .map(|m| {
                let raw = &m.raw;
                // The message starts after smtp-sink's own X- and Received lines.
                let body_start = raw.find("\nFrom: ").map(|i| i + 1).or_else(|| raw.find("From: ")).unwrap_or(0);
                let message = &raw[body_start..];
                assert!(m.message_id.starts_with("<2023-07-17.") && m.message_id.ends_with("@signals.example.org>"), "{}", m.message_id);
                assert_eq!(header(message, "List-Unsubscribe-Post"), Some("List-Unsubscribe=One-Click"));
                assert_eq!(header(message, "List-Id"), Some("Signals Weekly <signals-weekly.signals.example.org>"));
                assert_eq!(header(message, "MIME-Version"), Some("1.0"));
                assert!(header(message, "Date").is_some());
                let unsub = header(message, "List-Unsubscribe").unwrap();
                assert!(unsub.starts_with("<https://signals.example.org/unsubscribe/") && unsub.ends_with('>'), "{unsub}");
                assert!(message.bytes().all(|b| b.is_ascii()), "every byte on the wire is 7-bit");
                assert!(message.split('\n').all(|l| l.trim_end_matches('\r').len() <= 998), "no line over 998 octets");
                assert_eq!(message.matches("\nFrom: ").count() + usize::from(message.starts_with("From: ")), 1);
                unsub.to_string()
            })
            .collect();
        assert_eq!(tokens.len(), 39, "every subscriber has an unsubscribe link of their own");

        let s = status(&p);
        assert_eq!((s["sent"].as_i64(), s["total"].as_i64(), s["pending"].as_i64()), (Some(39), Some(39), Some(0)), "{s}");

        // A second send of a finished issue sends nothing.
        let again = p.expect(0, &["send", "--week", WEEK]);
        assert!(again.contains("already sent"), "{again}");
        assert_eq!(sink.messages().len(), 39);
    }

    fn the_mime_tree_parses_back_with_pythons_email_package() {
        let Some(python) = common::needs_python(&["email"]) else { return };
        let sink = Sink::start(&[]);
        let p = Project::new(&sink.smtp_config());
        p.import_readers(1);
        p.expect(0, &["send", "--week", WEEK]);
        let got = sink.messages();
        let file = p.path("message.eml");
        std::fs::write(&file, &got[0].raw).unwrap();
        let script = r#"
import email, sys
from email import policy
m = email.message_from_binary_file(open(sys.argv[1], 'rb'), policy=policy.default)
assert m.get_content_type() == 'multipart/alternative', m.get_content_type()
parts = list(m.iter_parts())
assert [p.get_content_type() for p in parts] == ['text/plain', 'text/html'], [p.get_content_type() for p in parts]
for p in parts:
    assert p.get_content_charset() == 'utf-8', p.get_content_charset()
    assert p['Content-Transfer-Encoding'] in ('quoted-printable', 'base64'), p['Content-Transfer-Encoding']
text, html = parts[0].get_content(), parts[1].get_content()
unsub = m['List-Unsubscribe'].strip('<>')
assert unsub in text, 'the text part shows the unsubscribe link'
assert unsub in html, 'the html part shows the unsubscribe link'
assert '%%' not in text and '%%' not in html, 'every placeholder was filled in'
print('ok', m['Subject'])
"#;
        let out = std::process::Command::new(python).arg("-c").arg(script).arg(&file).output().unwrap();
        assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }

    fn a_test_send_reaches_only_the_editor_and_is_not_recorded() {
        let sink = Sink::start(&[]);
        let p = Project::new(&sink.smtp_config());
        p.import_readers(5);
        let out = p.expect(0, &["send", "--test", "--week", WEEK]);
        assert!(out.contains("editor@example.org"), "{out}");
        p.expect(0, &["send", "--week", WEEK, "--test", "second@example.org", "--test", "third@example.org"]);
        let got = sink.messages();
        let rcpts: HashSet<&str> = got.iter().map(|m| m.rcpt.as_str()).collect();
        assert_eq!(rcpts, HashSet::from(["editor@example.org", "second@example.org", "third@example.org"]));
        assert!(got.iter().all(|m| m.subject.starts_with("[TEST]")), "{:?}", got.iter().map(|m| &m.subject).collect::<Vec<_>>());
        let s = status(&p);
        assert_eq!(s["started"], false, "a test send never counts as the real send: {s}");
        // The real send still goes to all five afterwards.
        p.expect(0, &["send", "--week", WEEK]);
        assert_eq!(sink.messages().len(), 3 + 5);
    }

    fn a_bad_test_address_is_refused_before_anything_is_sent() {
        let sink = Sink::start(&[]);
        let p = Project::new(&sink.smtp_config());
        let out = p.run(&["send", "--test", "not an address", "--week", WEEK]);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("not an address"));
        assert!(sink.messages().is_empty());
    }

    fn temporary_refusals_stay_pending_and_a_later_run_delivers_them() {
        let refusing = Sink::start(&["-r", "rcpt"]);
        let p = Project::new(&refusing.smtp_config());
        p.import_readers(6);
        let out = p.run(&["send", "--week", WEEK]);
        assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
        assert!(String::from_utf8_lossy(&out.stdout).contains("still pending"));
        let s = status(&p);
        assert_eq!((s["pending"].as_i64(), s["sent"].as_i64()), (Some(6), Some(0)), "{s}");
        let problems = s["problems"].as_array().unwrap();
        assert_eq!(problems.len(), 6);
        assert!(problems[0]["error"].as_str().unwrap().contains("(450)"), "the server's 4xx answer is kept: {s}");
        assert!(problems[0]["attempts"].as_i64().unwrap() >= 2, "retried within the run: {s}");
        assert!(refusing.messages().is_empty());

        // The server recovers: the next run delivers every pending message, once.
        let good = Sink::start(&[]);
        p.move_smtp(&refusing, &good);
        p.expect(0, &["send", "--week", WEEK]);
        assert_eq!(good.messages().len(), 6);
        assert_eq!(status(&p)["sent"].as_i64(), Some(6));
    }

    fn a_refused_mailbox_is_a_bounce_and_the_subscriber_is_marked_bounced() {
        let sink = Sink::start(&["-f", "rcpt", "-B", "550 5.1.1 No such user"]);
        let p = Project::new(&sink.smtp_config());
        p.import_readers(3);
        p.expect(0, &["send", "--week", WEEK]);
        let s = status(&p);
        assert_eq!((s["bounced"].as_i64(), s["sent"].as_i64(), s["pending"].as_i64()), (Some(3), Some(0), Some(0)), "{s}");
        assert!(s["problems"][0]["error"].as_str().unwrap().contains("5.1.1"), "{s}");
        assert_eq!(s["deliverability"], serde_json::json!([]), "an address that does not work is not the sender's problem: {s}");
        let bounced = p.expect(0, &["subscribers", "list", "--status", "bounced", "--format", "csv"]);
        assert_eq!(bounced.lines().filter(|l| l.contains("@example.org")).count(), 3, "{bounced}");
        // The reason is kept: by name in the JSON, and first in the table's REASON with the server's words.
        let list: serde_json::Value = serde_json::from_str(&p.expect(0, &["subscribers", "list", "--status", "bounced", "--format", "json"])).unwrap();
        for reader in list.as_array().unwrap() {
            assert_eq!(reader["reason"], "userunknown", "{reader}");
            assert!(reader["status_reason"].as_str().unwrap().starts_with("userunknown: permanent error (550): 5.1.1 No such user"), "{reader}");
        }
        let table = p.expect(0, &["subscribers", "list", "--status", "bounced"]);
        assert!(table.contains("REASON") && table.contains("userunknown: permanent error (550): 5.1.1 No such user"), "{table}");
    }

    // Needs the classifier to read `550 5.7.1 ... spam` as spamdetected (a refusal of the sender).
    fn a_refusal_as_spam_at_rcpt_keeps_the_reader_and_is_counted_for_the_issue_and_provider() {
        let spam = Sink::start(&["-f", "rcpt", "-B", "550 5.7.1 Message rejected as spam"]);
        let p = Project::new(&spam.smtp_config());
        let readers = p.import_readers(3);
        p.expect(0, &["send", "--week", WEEK]);
        let s = status(&p);
        assert_eq!((s["failed"].as_i64(), s["bounced"].as_i64(), s["sent"].as_i64()), (Some(3), Some(0), Some(0)), "{s}");
        assert_eq!(s["deliverability"], serde_json::json!([{"provider": "example.org", "reason": "spamdetected", "messages": 3}]), "{s}");
        assert_eq!(s["returned"], serde_json::json!({"permanent": 0, "temporary": 0, "complaints": 0}), "refused at sending, not after: {s}");
        let text = p.expect(0, &["status", "--week", WEEK]);
        assert!(text.contains("example.org refused 3 messages as spam (spamdetected)"), "{text}");
        let active = p.expect(0, &["subscribers", "list", "--status", "active", "--format", "csv"]);
        assert_eq!(active.lines().filter(|l| l.contains("@example.org")).count(), 3, "no reader pays for the sender's refusal: {active}");
        // The next issue goes to all of them.
        let good = Sink::start(&[]);
        p.move_smtp(&spam, &good);
        p.expect(0, &["send", "--week", "2023-07-30"]);
        let mut got: Vec<String> = good.messages().into_iter().map(|m| m.rcpt).collect();
        got.sort();
        assert_eq!(got, readers);
    }

    fn a_full_mailbox_at_rcpt_counts_as_temporary_and_bounces_only_on_three_issues_in_a_row() {
        let sink = Sink::start(&["-f", "rcpt", "-B", "552 5.2.2 Mailbox full"]);
        let p = Project::new(&sink.smtp_config());
        p.import_readers(2);
        // Three weeks with digests, sent one after another, each refused.
        for (i, week) in ["2023-07-05", "2023-07-16", WEEK].iter().enumerate() {
            p.expect(0, &["send", "--week", week]);
            let list: serde_json::Value = serde_json::from_str(&p.expect(0, &["subscribers", "list", "--format", "json"])).unwrap();
            let statuses: Vec<&str> = list.as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
            let expected = if i < 2 { "active" } else { "bounced" };
            assert_eq!(statuses, [expected, expected], "after {} issues refused: {list}", i + 1);
        }
        let s = status(&p);
        assert_eq!((s["failed"].as_i64(), s["bounced"].as_i64()), (Some(2), Some(0)), "the deliveries failed, the readers bounced: {s}");
        assert_eq!(s["deliverability"], serde_json::json!([]), "a full mailbox is not the sender's problem: {s}");
        let list: serde_json::Value = serde_json::from_str(&p.expect(0, &["subscribers", "list", "--status", "bounced", "--format", "json"])).unwrap();
        assert_eq!(list[0]["reason"], "mailboxfull", "{list}");
        assert!(list[0]["status_reason"].as_str().unwrap().ends_with("(temporary failures on 3 issues in a row)"), "{list}");
    }

    fn other_permanent_refusals_fail_the_delivery_without_touching_the_subscriber() {
        let sink = Sink::start(&["-f", "data"]);
        let p = Project::new(&sink.smtp_config());
        p.import_readers(2);
        p.expect(0, &["send", "--week", WEEK]);
        let s = status(&p);
        assert_eq!((s["failed"].as_i64(), s["bounced"].as_i64()), (Some(2), Some(0)), "{s}");
        let active = p.expect(0, &["subscribers", "list", "--status", "active", "--format", "csv"]);
        assert_eq!(active.lines().filter(|l| l.contains("@example.org")).count(), 2, "{active}");
    }

    fn an_unreachable_server_stops_the_send_with_a_clear_error_and_nothing_marked_sent() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let p = Project::new(&format!("[smtp]\nurl = \"smtp://127.0.0.1:{port}?tls=none\"\nconcurrency = 2\n"));
        p.import_readers(4);
        let out = p.run(&["send", "--week", WEEK]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("cannot reach the SMTP server") && stderr.contains(&port.to_string()), "{stderr}");
        let s = status(&p);
        assert_eq!((s["sent"].as_i64(), s["pending"].as_i64(), s["sending"].as_i64()), (Some(0), Some(4), Some(0)), "{s}");
    }

    fn killed_with_sigkill_mid_send_the_rerun_resends_at_most_one_message_per_connection() {
        // Each outcome is committed as soon as the server answers, and a connection sends its next
        // message only after that: what kill -9 leaves unrecorded is what was on the wire, at most
        // one message for each of the 4 connections (`Sink::smtp_config`).
        let resent = resends_after_kill_9(6000, 2500);
        eprintln!("resent after kill -9: {resent}");
        assert!(resent <= 4, "{resent} messages were received twice; at most one per connection (4) may be");
    }

    fn an_unsubscribe_between_two_runs_is_honoured() {
        let refusing = Sink::start(&["-r", "rcpt"]);
        let p = Project::new(&refusing.smtp_config());
        let readers = p.import_readers(5);
        p.run(&["send", "--week", WEEK]); // everything deferred
        p.expect(0, &["subscribers", "remove", &readers[2]]);
        let good = Sink::start(&[]);
        p.move_smtp(&refusing, &good);
        p.expect(0, &["send", "--week", WEEK]);
        let rcpts: HashSet<String> = good.messages().into_iter().map(|m| m.rcpt).collect();
        assert_eq!(rcpts.len(), 4);
        assert!(!rcpts.contains(&readers[2]));
        let s = status(&p);
        assert_eq!((s["sent"].as_i64(), s["skipped"].as_i64()), (Some(4), Some(1)), "{s}");
    }

    fn without_a_mail_server_messages_land_in_the_outbox_once_each() {
        let p = Project::new("[smtp]\nurl = \"file://outbox\"\n");
        p.import_readers(7);
        let out = p.expect(0, &["send", "--week", WEEK]);
        assert!(out.contains("outbox"), "{out}");
        let files: Vec<_> = std::fs::read_dir(p.path("outbox")).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(files.len(), 7);
        assert!(files.iter().all(|f| f.extension().is_some_and(|e| e == "eml")));
        let dry = p.expect(0, &["send", "--week", WEEK, "--dry-run"]);
        assert!(dry.contains("was already sent: 7 sent") && !dry.contains("would send"), "the send is over: {dry}");
        assert_eq!(std::fs::read_dir(p.path("outbox")).unwrap().count(), 7, "a dry run writes nothing");
    }

    fn with_a_dkim_key_every_message_is_signed_over_the_unsubscribe_headers() {
        let p = Project::new("[smtp]\nurl = \"file://outbox\"\n\n[dkim]\ndomain = \"signals.example.org\"\nselector = \"gazette\"\nprivate_key = \"dkim.pem\"\n");
        let made = std::process::Command::new("openssl")
            .args(["genrsa", "-traditional", "-out"])
            .arg(p.path("dkim.pem"))
            .arg("1024")
            .output();
        if !common::needs(made.as_ref().is_ok_and(|o| o.status.success()), "openssl that makes an RSA key (genrsa)") {
            return;
        }
        p.import_readers(2);
        p.expect(0, &["send", "--week", WEEK]);
        for entry in std::fs::read_dir(p.path("outbox")).unwrap() {
            let raw = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            let start = raw.find("DKIM-Signature:").expect("a DKIM-Signature header");
            // The header and its folded continuation lines, unfolded.
            let mut lines = raw[start..].split("\r\n");
            let mut sig = lines.next().unwrap().to_string();
            sig.extend(lines.take_while(|l| l.starts_with([' ', '\t'])).map(str::trim));
            assert!(sig.contains("d=signals.example.org") && sig.contains("s=gazette"), "{sig}");
            let signed = sig.split("h=").nth(1).unwrap().split(';').next().unwrap().to_ascii_lowercase();
            for h in ["list-unsubscribe", "list-unsubscribe-post", "from", "subject"] {
                assert!(signed.split(':').any(|x| x.trim() == h), "{h} is signed: {sig}");
            }
        }
        // A key lettre cannot read is a clear error naming the file.
        std::fs::write(p.path("dkim.pem"), "not a key").unwrap();
        let out = p.run(&["send", "--test", "--week", WEEK]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0));
        assert!(stderr.contains("[dkim] private_key") && stderr.contains("dkim.pem"), "{stderr}");
    }

    fn sigterm_stops_cleanly_and_the_rerun_sends_no_duplicates() {
        let sink = Sink::start(&[]);
        let p = Project::new(&format!("[smtp]\nurl = \"smtp://127.0.0.1:{}?tls=none\"\nconcurrency = 2\nrate_per_second = 100\n", sink.port));
        p.import_readers(400);
        let child = p.command(&["send", "--week", WEEK]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        sink.wait_for(50);
        let kill = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(kill.success());
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{stdout}");
        assert!(stdout.contains("gazette send --week 2023-07-17") && stdout.contains("resume"), "{stdout}");
        let s = status(&p);
        assert_eq!(s["sending"].as_i64(), Some(0), "everything in flight was recorded before exiting: {s}");
        let sent_before = s["sent"].as_i64().unwrap();
        assert!(sent_before > 0 && sent_before < 400, "{s}");
        assert_eq!(sink.messages().len() as i64, sent_before, "what the sink has is exactly what was recorded");

        p.expect(0, &["send", "--week", WEEK]);
        let got = sink.messages();
        assert_eq!(got.len(), 400, "after a clean stop the rerun sends no duplicates");
        let rcpts: HashSet<&str> = got.iter().map(|m| m.rcpt.as_str()).collect();
        assert_eq!(rcpts.len(), 400);
    }

    fn a_server_without_pipelining_gets_one_command_at_a_time() {
        // smtp-sink -p does not offer PIPELINING (RFC 2920), so each command waits for its reply. (Its
        // -r and -f options imply -p too; the pipelined refusals are tested in src/deliver/smtp.rs.)
        let sink = Sink::start(&["-p"]);
        let p = Project::new(&sink.smtp_config());
        p.import_readers(5);
        p.expect(0, &["send", "--week", WEEK]);
        assert_eq!(sink.messages().len(), 5);
    }
}
