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
    const READERS: usize = 300;
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
