//! Readers who follow some themes, end to end: 20,000 readers over 200 distinct choices of themes
//! get, from a real SMTP server's dumps, exactly the digests of their themes (every message
//! parsed), each once, through a kill -9 mid-send and the rerun; readers whose themes the week
//! lacks get nothing and are recorded as skipped.

mod common;

use std::collections::{BTreeSet, HashMap};

use common::{Project, Sink};

/// The choices: every set of one, two and three of `themes`, in a fixed order, the first `n`.
fn choices(themes: &[String], n: usize) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = themes.iter().map(|t| vec![t.clone()]).collect();
    for i in 0..themes.len() {
        for j in i + 1..themes.len() {
            out.push(vec![themes[i].clone(), themes[j].clone()]);
        }
    }
    for i in 0..themes.len() {
        for j in i + 1..themes.len() {
            for k in j + 1..themes.len() {
                out.push(vec![themes[i].clone(), themes[j].clone(), themes[k].clone()]);
            }
        }
    }
    assert!(out.len() >= n, "{} themes make only {} choices", themes.len(), out.len());
    out.truncate(n);
    out
}

/// The HTML part of a message as the sink dumped it, decoded.
fn html_of(raw: &[u8]) -> String {
    let message = mail_parser::MessageParser::default().parse(raw).expect("a message that parses");
    message.body_html(0).expect("an HTML part").into_owned()
}

#[test]
fn twenty_thousand_readers_over_200_choices_get_exactly_their_themes_through_a_kill_9() {
    let Some(corpus) = common::generated_corpus(&["--count", "40", "--days", "7", "--start", "2023-07-17"]) else {
        return;
    };
    let digests = common::digest_facts(corpus.path());
    assert_eq!(digests.len(), 40);
    let themes: Vec<String> =
        digests.iter().flat_map(|d| d.themes.iter().cloned()).collect::<BTreeSet<_>>().into_iter().collect();
    let choices = choices(&themes, 200);

    let sink = Sink::start(&[]);
    let p = Project::new(&sink.smtp_config());
    let toml = std::fs::read_to_string(p.path("publish.toml")).unwrap();
    let toml: Vec<String> = toml
        .lines()
        .map(|l| if l.starts_with("digests = ") { format!("digests = {:?}", corpus.path()) } else { l.to_string() })
        .collect();
    std::fs::write(p.path("publish.toml"), toml.join("\n")).unwrap();

    // 20,000 readers, a hundred on each of the 200 choices; and 100 more who follow a theme the
    // week does not carry.
    let mut csv = String::from("email,name,themes\n");
    let mut wanted: HashMap<String, BTreeSet<&str>> = HashMap::new();
    for i in 0..20_000 {
        let choice = &choices[i % choices.len()];
        let email = format!("reader{i:05}@example.org");
        csv.push_str(&format!("{email},Reader {i},{}\n", choice.join("; ")));
        let links =
            digests.iter().filter(|d| d.themes.iter().any(|t| choice.contains(t))).map(|d| d.link.as_str()).collect();
        wanted.insert(email, links);
    }
    for i in 0..100 {
        csv.push_str(&format!("elsewhere{i:03}@example.org,,Deep Sea Mining; {}\n", "Quantum Gardening"));
    }
    std::fs::write(p.path("readers.csv"), csv).unwrap();
    p.expect(0, &["subscribers", "import", p.path("readers.csv").to_str().unwrap()]);

    // The send, killed with SIGKILL part-way, then run again to the end.
    let mut child = p
        .command(&["send", "--week", "2023-07-17"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    sink.wait_for(6_000);
    child.kill().unwrap();
    child.wait().unwrap();
    let at_kill = sink.count();
    assert!(at_kill < 20_000, "killed part-way ({at_kill} messages)");
    let out = p.expect(0, &["send", "--week", "2023-07-17"]);

    let status: serde_json::Value =
        serde_json::from_str(&p.expect(0, &["status", "--week", "2023-07-17", "--json"])).unwrap();
    assert_eq!(
        (status["sent"].as_i64(), status["skipped"].as_i64(), status["pending"].as_i64()),
        (Some(20_000), Some(100), Some(0)),
        "{status}\n{out}"
    );

    // Every message, parsed: one Message-ID per reader, the same on a resend, and exactly the
    // digests of the reader's themes in it.
    let got = sink.whole_messages();
    let readers: Vec<String> = wanted.keys().cloned().collect();
    let resent = common::everyone_once_per_message_id(&got, &readers);
    assert!(resent <= 4, "a kill -9 resends at most one message per connection (4): {resent}");
    eprintln!("killed at {at_kill} messages; the rerun resent {resent}");
    let mut checked = 0;
    for m in &got {
        let html = html_of(m.raw.as_bytes());
        let present: BTreeSet<&str> =
            digests.iter().map(|d| d.link.as_str()).filter(|link| html.contains(&format!("href=\"{link}\""))).collect();
        let expected = &wanted[&m.rcpt];
        assert_eq!(&present, expected, "{} got the digests of other themes, or missed some of theirs", m.rcpt);
        assert!(html.contains("Only the themes you follow:"), "{} is told their email holds their themes only", m.rcpt);
        checked += 1;
    }
    assert!(checked >= 20_000);
    let sizes: BTreeSet<usize> = wanted.values().map(BTreeSet::len).collect();
    eprintln!("digests per reader: from {:?} to {:?}", sizes.first(), sizes.last());
    assert!(!got.iter().any(|m| m.rcpt.starts_with("elsewhere")), "nothing goes to readers of themes the week lacks");
}
