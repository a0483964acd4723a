//! An editor's first weeks, end to end, as the README and `--help` lead them: `init`, the first
//! path, the example replaced by real digests, a real relay (smtp-sink) with `init`'s placeholders
//! still in place (refused, each key named), the placeholders fixed, a test copy, readers
//! imported, a dry run of the scheduler's round that changes nothing, the round itself (each
//! reader once), `gazette issues`, a dry run of a send already made, and an unpublish refused.

mod common;

use std::path::Path;
use std::process::Output;

use common::Sink;

/// A Monday after 08:00 in London: the week of 30 November to 6 December 2026 is due.
const NOW: &str = "2026-12-07T09:00:00Z";
const WEEK: &str = "2026-11-30";

fn gazette(args: &[&str], cwd: &Path) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_gazette"))
        .args(args)
        .current_dir(cwd)
        .env_remove("GAZETTE_CONFIG")
        .env_remove("GAZETTE_ALLOW_PLACEHOLDERS")
        .env("GAZETTE_SECRET", "first-weeks-secret-0123456789abcdef")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn expect(code: i32, args: &[&str], cwd: &Path) -> String {
    let out = gazette(args, cwd);
    assert_eq!(out.status.code(), Some(code), "gazette {args:?}:\n{}", text(&out));
    text(&out)
}

fn digest(title: &str, yyyymmdd: &str, link: &str) -> String {
    format!(
        "# __{title}__, from ([{yyyymmdd}](https://news.example-collector.net/collected).)\n\n__[External link]({link})__\n\n\
         ## Summary\n\nWhat {title} says, in two sentences. Worth the read.\n"
    )
}

#[test]
fn an_editors_first_weeks_from_init_to_the_first_issue_sent_once() {
    let sink = Sink::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("letters");
    let init = expect(0, &["init", project.to_str().unwrap()], dir.path());
    let p = project.as_path();

    // The first path init gives: check, then look at the drafts. Nothing is published.
    assert!(init.contains("gazette check") && init.contains("build --drafts"), "{init}");
    expect(0, &["check", "--now", NOW], p);
    let drafts = expect(0, &["build", "--drafts", "--now", NOW], p);
    assert!(!drafts.contains("published #"), "{drafts}");

    // The example goes; two real digests of last week come.
    for e in std::fs::read_dir(p.join("digests")).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    std::fs::write(
        p.join("digests/001_1a2b3c4d5e6f7a8b.txt"),
        digest("Tides of the north", "20261201", "https://tides.example-news.net/a"),
    )
    .unwrap();
    std::fs::write(
        p.join("digests/002_2b3c4d5e6f7a8b9c.txt"),
        digest("Quiet harbours", "20261203", "https://harbours.example-news.net/b"),
    )
    .unwrap();

    // A real relay with init's placeholders: refused, each key named.
    let toml = std::fs::read_to_string(p.join("publish.toml")).unwrap();
    let relay = format!("url = \"smtp://127.0.0.1:{}?tls=none\"", sink.port);
    let toml = toml.replace("url = \"file://outbox\"", &relay);
    std::fs::write(p.join("publish.toml"), &toml).unwrap();
    let checked = expect(2, &["check", "--now", NOW], p);
    for key in ["base_url", "from", "editor"] {
        assert!(checked.contains(key), "check names `{key}`: {checked}");
    }
    let refused = expect(2, &["send", "--week", WEEK, "--now", NOW], p);
    assert!(refused.contains("base_url"), "{refused}");
    assert_eq!(sink.count(), 0, "nothing reaches a reader while placeholders remain");

    // Fixed: the check passes, a test copy reaches the editor.
    let toml = toml
        .replace("http://127.0.0.1:8080", "https://letters.harbour-press.net")
        .replace("newsletter@signals.example.org", "newsletter@harbour-press.net")
        .replace("editor = \"editor@signals.example.org\"", "editor = \"editor@harbour-press.net\"");
    std::fs::write(p.join("publish.toml"), &toml).unwrap();
    let checked = expect(0, &["check", "--now", NOW], p);
    assert!(checked.contains("0 problems"), "{checked}");
    expect(0, &["send", "--test", "--week", WEEK, "--now", NOW], p);
    let test_copies = sink.messages();
    assert_eq!(test_copies.len(), 1, "one test copy");
    assert_eq!(test_copies[0].rcpt, "editor@harbour-press.net");
    assert!(test_copies[0].subject.contains("[TEST]"), "{}", test_copies[0].subject);
    assert!(!test_copies[0].raw.contains("127.0.0.1:8080"), "no placeholder link in real mail");

    // Readers, then a dry run of the round: it says what it would do and changes nothing.
    let csv = p.join("readers.csv");
    std::fs::write(&csv, "email,name\nada@readers-one.net,Ada\nbob@readers-two.net,Bob\ncy@readers-three.net,Cy\n")
        .unwrap();
    expect(0, &["subscribers", "import", csv.to_str().unwrap()], p);
    let before = common::tree(p);
    let dry = expect(0, &["run", "--once", "--dry-run", "--now", NOW], p);
    assert!(dry.contains("#1") && dry.contains('3'), "the dry run says it would publish #1 and send to 3: {dry}");
    assert_eq!(common::tree(p), before, "a dry run writes nothing");
    assert_eq!(sink.count(), 1, "a dry run sends nothing");

    // The round: published as #1, sent to each reader once.
    expect(0, &["run", "--once", "--now", NOW], p);
    let issue: Vec<_> = sink.messages().into_iter().filter(|m| !m.subject.contains("[TEST]")).collect();
    let mut to: Vec<&str> = issue.iter().map(|m| m.rcpt.as_str()).collect();
    to.sort();
    assert_eq!(to, ["ada@readers-one.net", "bob@readers-two.net", "cy@readers-three.net"]);
    assert!(issue.iter().all(|m| m.subject.contains("#1")), "the first real week is #1");
    expect(0, &["run", "--once", "--now", "2026-12-07T10:00:00Z"], p);
    assert_eq!(sink.count(), 4, "a second round sends nothing again");

    // Every issue accounted for; a dry run of the send tells the truth; an unpublish is refused.
    let issues: Vec<serde_json::Value> =
        serde_json::from_str(&expect(0, &["issues", "--json", "--now", NOW], p)).unwrap();
    let first = issues.iter().find(|i| i["week"] == WEEK).unwrap_or_else(|| panic!("{issues:?}"));
    assert_eq!((first["number"].as_i64(), first["state"].as_str()), (Some(1), Some("sent")), "{first}");
    let dry_send = expect(0, &["send", "--week", WEEK, "--dry-run", "--now", NOW], p);
    assert!(dry_send.contains("already sent"), "{dry_send}");
    let unpublish = gazette(&["unpublish", "--week", WEEK, "--now", NOW], p);
    assert_eq!(unpublish.status.code(), Some(1), "{}", text(&unpublish));
    assert!(text(&unpublish).contains("3 message(s) went out"), "says why: {}", text(&unpublish));
}
