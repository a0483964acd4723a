//! The reputation guard (issue 30): a relay that asks to slow down (tests/relay.py's
//! `--throttle-every` and `--max-rate`) is met with AIMD, every reader still gets the issue once
//! and nobody is failed; and an issue whose complaint rate passed `[reputation] complaint_rate`
//! holds the next one in `gazette run` until the editor lifts the hold or sends it by hand.

mod common;

use std::collections::HashMap;

use common::Project;
use common::relay::{self, Mode, Relay, SECRET, TestCa, USER};

const WEEK: &str = "2023-07-17";

fn status(p: &Project, week: &str) -> serde_json::Value {
    serde_json::from_str(&p.expect(0, &["status", "--week", week, "--json"])).unwrap()
}

/// Messages accepted per second over `times` (Unix seconds, sorted), from the first to the last.
fn rate(times: &[f64]) -> f64 {
    match (times.first(), times.last()) {
        (Some(a), Some(b)) if b > a => (times.len() - 1) as f64 / (b - a),
        _ => 0.0,
    }
}

#[test]
fn a_relay_that_asks_to_slow_down_gets_every_reader_once_nobody_failed_and_a_pace_under_its_limit() {
    if !relay::available() {
        return;
    }
    const READERS: usize = 200;
    const LIMIT: f64 = 40.0;
    let ca = TestCa::new();
    let relay = Relay::start(Mode::StartTls, &ca.localhost, &["--throttle-every", "10", "--max-rate", "40"]);
    let p = Project::new(&format!(
        "[smtp]\nurl = \"{}\"\nusername = \"{USER}\"\nconcurrency = 4\ntimeout = \"10s\"\nca_file = {:?}\n",
        relay.url(),
        ca.ca.display().to_string()
    ));
    let readers = p.import_readers(READERS);
    let out = p.command(&["send", "--week", WEEK]).env("GAZETTE_SMTP_PASSWORD", SECRET).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}\nrelay:\n{}", relay.log());

    // Every reader exactly once, by what the relay accepted.
    let got = relay.messages();
    let mut per_reader: HashMap<&str, usize> = HashMap::new();
    for m in &got {
        assert_eq!(m.rcpt_tos.len(), 1);
        *per_reader.entry(m.rcpt_tos[0].as_str()).or_default() += 1;
    }
    let twice: Vec<_> = per_reader.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "accepted more than once: {twice:?}");
    assert_eq!(per_reader.len(), READERS, "every reader");
    assert!(readers.iter().all(|r| per_reader.contains_key(r.as_str())));

    // The relay did ask: one message in ten, and more when the pace was over its limit.
    let throttled: Vec<_> = relay.journal().into_iter().filter(|e| e.event == "throttled").collect();
    let every = throttled.iter().filter(|e| e.why.as_deref() == Some("every")).count();
    assert!(every >= READERS / 10, "one in ten offered was refused: {every}");
    assert!(stderr.contains("the server asks to slow down"), "{stderr}");

    // Nobody failed, nothing left over, no attempt counted against anyone.
    let s = status(&p, WEEK);
    let count = |k: &str| s[k].as_i64().unwrap();
    assert_eq!(
        (count("sent"), count("failed"), count("bounced"), count("pending"), count("sending")),
        (READERS as i64, 0, 0, 0, 0),
        "{s}"
    );
    assert!(s["problems"].as_array().unwrap().is_empty(), "{s}");

    // The pace settles under the limit: over the second half of the send, fewer messages a second
    // than the relay takes, and the relay hardly had to refuse for the rate there.
    let mut times: Vec<f64> = got.iter().map(|m| m.at).collect();
    times.sort_by(f64::total_cmp);
    let second_half = &times[times.len() / 2..];
    let settled = rate(second_half);
    let (start, end) = (second_half[0], *second_half.last().unwrap());
    let over_limit = throttled
        .iter()
        .filter(|e| e.why.as_deref() == Some("rate") && e.at.is_some_and(|t| t >= start && t <= end))
        .count();
    let first_half_over =
        throttled.iter().filter(|e| e.why.as_deref() == Some("rate") && e.at.is_some_and(|t| t < start)).count();
    eprintln!(
        "settled at {settled:.1}/s (whole send {:.1}/s); refused for the rate: {first_half_over} in the first half, {over_limit} in the second; one in ten: {every}",
        rate(&times)
    );
    assert!(settled < LIMIT, "the second half went at {settled:.1} messages a second, the limit is {LIMIT}");
    assert!(settled > 5.0, "backed off to a crawl: {settled:.1} messages a second");
    assert!(over_limit <= 3, "{over_limit} refusals for the rate in the second half");
}

#[test]
fn under_a_rate_limit_alone_the_send_probes_up_to_just_under_it() {
    if !relay::available() {
        return;
    }
    const READERS: usize = 400;
    const LIMIT: f64 = 40.0;
    let ca = TestCa::new();
    let relay = Relay::start(Mode::StartTls, &ca.localhost, &["--max-rate", "40"]);
    let p = Project::new(&format!(
        "[smtp]\nurl = \"{}\"\nusername = \"{USER}\"\nconcurrency = 4\ntimeout = \"10s\"\nca_file = {:?}\n",
        relay.url(),
        ca.ca.display().to_string()
    ));
    p.import_readers(READERS);
    let out = p.command(&["send", "--week", WEEK]).env("GAZETTE_SMTP_PASSWORD", SECRET).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}\nrelay:\n{}", relay.log());
    let got = relay.messages();
    assert_eq!(got.len(), READERS, "each once");
    let s = status(&p, WEEK);
    assert_eq!(
        (s["sent"].as_i64(), s["failed"].as_i64(), s["pending"].as_i64()),
        (Some(READERS as i64), Some(0), Some(0))
    );
    let mut times: Vec<f64> = got.iter().map(|m| m.at).collect();
    times.sort_by(f64::total_cmp);
    let second_half = &times[times.len() / 2..];
    let settled = rate(second_half);
    let refused: Vec<f64> =
        relay.journal().into_iter().filter(|e| e.event == "throttled").filter_map(|e| e.at).collect();
    let late = refused.iter().filter(|t| **t >= second_half[0]).count();
    eprintln!("settled at {settled:.1}/s; refused for the rate: {} in all, {late} in the second half", refused.len());
    // Under the limit, and near it: additive increase keeps probing, multiplicative decrease backs off.
    assert!(settled <= LIMIT && settled > LIMIT / 2.0, "the second half went at {settled:.1} messages a second");
    assert!(late * 10 <= READERS / 2, "{late} refusals in the second half, for {} messages", READERS / 2);
    // The first refusals halve a pace that nothing limited down to the relay's quickly.
    assert!(refused.len() * 5 <= READERS, "{} refusals for {READERS} messages", refused.len());
}

const BOUNCE_ADDRESS: &str = "bounce_address = \"bounces@signals.example.org\"\n";

/// Postfix's smtp-sink, from ../shared/tools.
fn sink_available() -> bool {
    common::needs(common::repo().join("../shared/tools/smtp-sink").exists(), "../shared/tools/smtp-sink")
}

fn once(p: &Project, now: &str) -> (i32, String) {
    let out = p.run(&["run", "--once", "--now", now]);
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), log)
}

/// An abuse report (ARF, RFC 5965) from a feedback loop, to the VERP address the copy went out
/// from, naming its Message-ID.
fn complaint(to: &str, message_id: &str) -> String {
    format!(
        "From: Feedback Loop <fbl@feedback.example.com>\r\nTo: {to}\r\nSubject: Abuse report\r\nMIME-Version: 1.0\r\n\
         Message-ID: <arf.{}@feedback.example.com>\r\n\
         Content-Type: multipart/report; report-type=feedback-report; boundary=\"F0\"\r\n\r\n\
         --F0\r\nContent-Type: text/plain\r\n\r\nA complaint.\r\n\r\n\
         --F0\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nVersion: 1\r\nOriginal-Rcpt-To: <redacted>\r\n\r\n\
         --F0\r\nContent-Type: text/rfc822-headers\r\n\r\nReturn-Path: <{to}>\r\nTo: redacted\r\nMessage-ID: {message_id}\r\n\r\n--F0--\r\n",
        message_id.trim_matches(['<', '>']).replace('@', ".")
    )
}

/// Reports a complaint about the copy `reader` got of the issue whose Message-IDs start with
/// `<WEEK.`, through `gazette bounces import`.
fn complain(p: &Project, sink: &common::Sink, reader: &str, week: &str) {
    let m = sink
        .messages()
        .into_iter()
        .find(|m| m.rcpt == reader && m.message_id.starts_with(&format!("<{week}.")))
        .unwrap_or_else(|| panic!("{reader} got the issue of {week}"));
    let verp =
        common::header(&m.raw, "X-Mail-Args").unwrap().split_whitespace().next().unwrap().trim_matches(['<', '>']);
    let file = p.path(&format!("complaint-{reader}.eml"));
    std::fs::write(&file, complaint(verp, &m.message_id)).unwrap();
    p.expect(0, &["bounces", "import", file.to_str().unwrap()]);
}

// On a SQLite file and on a PostgreSQL database.
on_both_stores! {
    fn a_complaint_rate_over_the_limit_holds_the_next_issue_until_the_hold_is_lifted() {
        if !sink_available() {
            return;
        }
        let sink = common::Sink::start(&[]);
        let p = Project::new(&format!("{BOUNCE_ADDRESS}{}", sink.smtp_config()));
        let readers = p.import_readers(200);
        let sent = |week: &str| sink.messages().iter().filter(|m| m.message_id.starts_with(&format!("<{week}."))).count();

        // Issue #7 (the first sent; the earlier weeks are too late to go on their own): not held.
        let (code, log) = once(&p, "2023-07-24T08:05:00+01:00");
        assert_eq!(code, 0, "{log}");
        assert_eq!(sent("2023-07-17"), 200);
        // One complaint of 200 delivered: 0.5%, over Gmail's 0.3%.
        complain(&p, &sink, &readers[7], "2023-07-17");

        let s = status(&p, "2023-07-17");
        let rep = &s["reputation"]["standing"];
        assert_eq!((rep["rates"]["complaints"].as_i64(), rep["rates"]["delivered"].as_i64()), (Some(1), Some(200)), "{s}");
        assert_eq!(rep["breaches"][0]["rate"], "complaint_rate", "{s}");
        let text = p.expect(0, &["status", "--week", "2023-07-17"]);
        assert!(text.contains("complaints") && text.contains("0.50%") && text.contains("limit 0.30%  OVER"), "{text}");
        assert!(text.contains("holds the issue after this one"), "{text}");
        let issues = p.expect(0, &["issues"]);
        let line = issues.lines().find(|l| l.contains(" 7  2023-07-17 ")).unwrap();
        assert!(line.contains("sent 200; over [reputation]: complaints 0.50%"), "{issues}");
        let listed: serde_json::Value = serde_json::from_str(&p.expect(0, &["issues", "--json"])).unwrap();
        let issue = listed.as_array().unwrap().iter().find(|i| i["week"] == "2023-07-17").unwrap();
        assert_eq!(issue["reputation"]["rates"]["complaint_rate"].as_f64(), Some(0.005), "{issue}");

        // The next issue is due and held, every round, saying which rate, its value, the limit and the issue.
        for now in ["2023-07-31T08:05:00+01:00", "2023-07-31T09:00:00+01:00"] {
            let (code, log) = once(&p, now);
            assert_eq!(code, 1, "something due was not sent: {log}");
            assert!(
                log.contains("is due but held")
                    && log.contains("complaint rate 0.50% (1 complaints of 200 delivered)")
                    && log.contains("complaint_rate = 0.30%")
                    && log.contains("#7 (week 2023-07-17)")
                    && log.contains("gazette lift-hold --week 2023-07-24"),
                "{log}"
            );
            assert_eq!(sent("2023-07-24"), 0, "held: {log}");
        }
        let dry = p.expect(0, &["run", "--once", "--dry-run", "--now", "2023-07-31T09:00:00+01:00"]);
        assert!(dry.contains("is due but held") && dry.contains("it would not be sent"), "{dry}");
        let s = status(&p, "2023-07-24");
        assert_eq!(s["reputation"]["hold"]["hold"], "held", "{s}");
        let text = p.expect(0, &["status", "--week", "2023-07-24"]);
        assert!(text.contains("this issue is held") && text.contains("0.50%"), "{text}");

        // Lifting it is kept, and the next round sends it.
        let lifted = p.expect(0, &["lift-hold", "--week", "2023-07-24"]);
        assert!(lifted.contains("lifted the hold"), "{lifted}");
        let (code, log) = once(&p, "2023-07-31T09:30:00+01:00");
        assert_eq!(code, 0, "{log}");
        assert!(log.contains("hold was lifted"), "{log}");
        assert_eq!(sent("2023-07-24"), 199, "all but the reader who complained: {log}");
        assert_eq!(status(&p, "2023-07-24")["reputation"]["standing"]["breaches"], serde_json::json!([]));
        // Nothing to lift any more: its send started.
        let out = p.run(&["lift-hold", "--week", "2023-07-24"]);
        assert_eq!(out.status.code(), Some(1));

        // Issue #8 was under every limit: issue #9 (the week of 31 July has no digests) is not held.
        let (code, log) = once(&p, "2023-08-14T08:05:00+01:00");
        assert_eq!(code, 0, "{log}");
        assert!(!log.contains("but held"), "{log}");
        assert_eq!(sent("2023-08-07"), 199, "the reader who complained is not mailed: {log}");
        // And a week not held cannot be lifted.
        let out = p.run(&["lift-hold", "--week", "2023-08-14"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("is not held"));
    }
}

#[test]
fn a_held_issue_sent_by_hand_goes_and_the_one_after_is_judged_by_its_own_numbers() {
    if !sink_available() {
        return;
    }
    let sink = common::Sink::start(&[]);
    // Complaints over 0.3%, turned off; hard bounces and refusals by the defaults.
    let p = Project::new(&format!("{BOUNCE_ADDRESS}{}\n[reputation]\ncomplaint_rate = \"1%\"\n", sink.smtp_config()));
    let readers = p.import_readers(100);
    let (code, log) = once(&p, "2023-07-24T08:05:00+01:00");
    assert_eq!(code, 0, "{log}");
    // 1 of 100 is 1%, not over 1%: the next issue goes.
    complain(&p, &sink, &readers[1], "2023-07-17");
    let (code, log) = once(&p, "2023-07-31T08:05:00+01:00");
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("but held"), "{log}");
    // 2 of 99 on issue #8: 2.02%, over 1%. Issue #9 is held, and sent by hand.
    complain(&p, &sink, &readers[2], "2023-07-24");
    complain(&p, &sink, &readers[3], "2023-07-24");
    let (code, log) = once(&p, "2023-08-14T08:05:00+01:00");
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("complaint rate 2.02%") && log.contains("complaint_rate = 1.00%"), "{log}");
    p.expect(0, &["send", "--week", "2023-08-07"]);
    assert_eq!(sink.messages().iter().filter(|m| m.message_id.starts_with("<2023-08-07.")).count(), 97);
    let (code, log) = once(&p, "2023-08-14T09:00:00+01:00");
    assert_eq!(code, 0, "sent by hand, nothing is held: {log}");
}
