//! Dry runs that tell the truth: `send --dry-run` answers as the send would (already sent, a
//! resumed send's pending count, placeholders refused), and `run --once --dry-run` says what the
//! round would read, publish and send while changing nothing, which the real round then does.

mod common;

use common::{Project, Sink};

const WEEK: &str = "2023-07-23";
const MONDAY: &str = "2023-07-24T08:05:00+01:00";

fn status(p: &Project) -> serde_json::Value {
    serde_json::from_str(&p.expect(0, &["status", "--week", WEEK, "--json"])).unwrap()
}

/// The number in `out` just before `tail` ("12 messages sent now" gives 12).
fn number_before(out: &str, tail: &str) -> Option<u64> {
    let at = out.find(tail).map(|i| out[..i].trim_end())?;
    at.rsplit(|c: char| !c.is_ascii_digit()).next().and_then(|d| d.parse().ok())
}

#[test]
fn send_dry_run_on_a_sent_issue_says_already_sent_as_the_send_does() {
    let sink = Sink::start(&[]);
    let p = Project::new(&sink.smtp_config());
    p.import_readers(3);
    p.expect(0, &["send", "--week", WEEK]);
    let real = p.expect(0, &["send", "--week", WEEK]);
    let dry = p.expect(0, &["send", "--week", WEEK, "--dry-run"]);
    let line = |out: &str| out.lines().find(|l| l.contains("was already sent")).map(str::to_owned);
    assert!(line(&real).is_some_and(|l| l.contains("3 sent") && l.ends_with("nothing to do")), "{real}");
    assert_eq!(line(&dry), line(&real), "the dry run answers as the send does:\n{dry}");
    assert!(!dry.contains("would send"), "{dry}");
    assert_eq!(sink.count(), 3, "neither the second send nor the dry run sent anything");
}

#[test]
fn send_dry_run_of_a_stopped_send_counts_only_what_is_still_to_go() {
    let sink = Sink::start(&[]);
    let p = Project::new(&format!(
        "[smtp]\nurl = \"smtp://127.0.0.1:{}?tls=none\"\nconcurrency = 1\nrate_per_second = 20\n",
        sink.port
    ));
    p.import_readers(40);
    let mut child = p
        .command(&["send", "--week", WEEK])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    sink.wait_for(5);
    child.kill().unwrap(); // SIGKILL: the send is left unfinished
    child.wait().unwrap();
    let before = status(&p);
    // Taken messages are in the ledger or (on SQLite, not yet folded in) in the send's journal.
    let n = |k: &str| before[k].as_i64().unwrap_or(0);
    assert!(n("sent") + n("journaled") > 0 && n("pending") + n("sending") > 0, "stopped part-way: {before}");

    let dry = p.expect(0, &["send", "--week", WEEK, "--dry-run"]);
    let to_go =
        number_before(&dry, " of 40 messages still to send").unwrap_or_else(|| panic!("a resumed send's count: {dry}"));
    assert!(to_go < 40, "not every subscriber: {dry}");
    assert!(dry.contains(&format!("via smtp://127.0.0.1:{}", sink.port)), "the relay: {dry}");
    assert_eq!(status(&p), before, "a dry run changes nothing in the ledger");

    let real = p.expect(0, &["send", "--week", WEEK]);
    assert_eq!(
        number_before(&real, " messages sent now"),
        Some(to_go),
        "the send sent what the dry run said:\n{dry}\n{real}"
    );
}

#[test]
fn send_dry_run_is_refused_for_placeholders_as_the_send_is() {
    let sink = Sink::start(&[]);
    let p = Project::new(&sink.smtp_config());
    p.import_readers(2);
    // Without the tests' allowance, signals.example.org is a placeholder and smtp-sink a relay.
    let out =
        p.command(&["send", "--week", WEEK, "--dry-run"]).env_remove("GAZETTE_ALLOW_PLACEHOLDERS").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("[site] base_url"), "names the key: {stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("would send"));
}

#[test]
fn send_dry_run_of_a_week_held_back_is_refused_as_the_send_is() {
    let sink = Sink::start(&[]);
    let p = Project::with_own_digests(&sink.smtp_config());
    p.import_readers(2);
    // A digest of the week of 10 July 2023 that cannot be read.
    std::fs::write(
        p.path("digests/500_bad0bad0bad0bad0.txt"),
        "# __Broken__, from ([20230712](https://example.org/c).)\n\nno link, no summary\n",
    )
    .unwrap();
    let answer = |args: &[&str]| {
        let out = p.run(args);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let dry = answer(&["send", "--week", "2023-07-12", "--dry-run"]);
    let real = answer(&["send", "--week", "2023-07-12"]);
    assert!(
        dry.2.contains("is held back: 2 digest problem(s)") && dry.2.contains("500_bad0bad0bad0bad0.txt"),
        "{dry:?}"
    );
    assert_eq!(dry.0, real.0, "the same exit code: {dry:?} {real:?}");
    assert!(real.2.contains("is held back: 2 digest problem(s)"), "{real:?}");
    assert!(!dry.1.contains("would send"), "{dry:?}");
    assert_eq!(sink.count(), 0);
}

#[test]
fn run_once_dry_run_changes_nothing_and_the_round_then_does_what_it_said() {
    let sink = Sink::start(&[]);
    let p = Project::new(&format!("{}\n[bounces]\nmailbox = \"Maildir\"\n", sink.smtp_config()));
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(p.path("Maildir").join(sub)).unwrap();
    }
    std::fs::write(p.path("Maildir/new/1.eml"), "From: someone@example.net\nSubject: hello\n\nnot a bounce\n").unwrap();
    let readers = p.import_readers(12);

    let issues_before = p.expect(0, &["issues", "--json"]);
    let subscribers_before = p.expect(0, &["subscribers", "list", "--format", "json"]);
    let files_before = common::tree(p.dir.path());
    let dry = p.expect(0, &["run", "--once", "--dry-run", "--now", MONDAY]);
    assert_eq!(
        common::tree(p.dir.path()),
        files_before,
        "no file written, moved or touched (database included):\n{dry}"
    );
    assert_eq!(p.expect(0, &["issues", "--json"]), issues_before);
    assert_eq!(p.expect(0, &["subscribers", "list", "--format", "json"]), subscribers_before);
    assert!(!p.path("out").exists(), "no archive");
    assert_eq!(sink.count(), 0);

    assert!(dry.contains("Maildir: would read 1 message(s) (left where they are)"), "{dry}");
    let published: Vec<&str> = dry.lines().filter(|l| l.starts_with("would publish issue #")).collect();
    assert_eq!(published.len(), 7, "the example weeks due by 24 July: {dry}");
    assert!(
        published.last().unwrap().starts_with("would publish issue #7 (17–23 July 2023, week 2023-07-17)"),
        "{dry}"
    );
    assert!(
        dry.contains(&format!(
            "would send issue #7 (17–23 July 2023) to 12 subscriber(s) via smtp://127.0.0.1:{}",
            sink.port
        )),
        "{dry}"
    );

    // The real round does what the dry run said.
    let out = p.run(&["run", "--once", "--now", MONDAY]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(sink.count(), readers.len());
    assert!(sink.messages().iter().all(|m| m.message_id.starts_with("<2023-07-17.")), "the week the dry run named");
    let issues: serde_json::Value = serde_json::from_str(&p.expect(0, &["issues", "--json"])).unwrap();
    let numbered: Vec<(String, u64)> = issues
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["published_at"].is_number() || i["published_at"].is_string())
        .map(|i| (i["week"].as_str().unwrap_or_default().to_string(), i["number"].as_u64().unwrap_or(0)))
        .collect();
    assert!(numbered.contains(&("2023-07-17".to_string(), 7)), "published as the dry run numbered it: {issues}");
    assert_eq!(numbered.len(), 7, "{issues}");
    assert!(
        std::fs::read_dir(p.path("Maildir/new")).unwrap().next().is_none(),
        "the round read the message the dry run counted"
    );
}

#[test]
fn run_dry_run_needs_once() {
    let p = Project::new("");
    let out = p.run(&["run", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--once"), "{}", String::from_utf8_lossy(&out.stderr));
}
