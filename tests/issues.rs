//! Every issue accounted for, as an editor meets it: the example `init` writes never takes #1,
//! `gazette issues` lists each issue's state, `unpublish` takes back a mistake that reached nobody,
//! and `skip` ends the scheduler's reminders about an issue that will not be sent. The built
//! binary, temporary projects, real sends into smtp-sink.

mod common;

use std::path::Path;
use std::process::Output;

use common::{Project, Sink};

/// A digest of one's own, dated `yyyymmdd`.
fn digest(title: &str, yyyymmdd: &str) -> String {
    format!(
        "# __{title}__, from ([{yyyymmdd}](https://example.org/collected).)\n\n__[External link](https://example.org/{yyyymmdd})__\n\n\
         ## Summary\n\nSomething {title} happened.\n"
    )
}

fn gazette(args: &[&str], cwd: &Path) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_gazette"))
        .args(args)
        .current_dir(cwd)
        .env_remove("GAZETTE_CONFIG")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ok(out: Output) -> String {
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    stdout(&out)
}

#[test]
fn the_example_never_becomes_an_issue_and_the_first_real_week_is_number_one() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("letters");
    let init = ok(gazette(&["init", project.to_str().unwrap()], dir.path()));
    // init's last line and --help give one first path.
    let next = init.lines().last().unwrap();
    let steps = next
        .strip_prefix("next: cd ")
        .and_then(|s| s.split_once(" && "))
        .map(|(_, steps)| steps)
        .unwrap_or_else(|| panic!("{init}"));
    let help = ok(gazette(&["--help"], dir.path())).replace('\n', " ");
    assert!(help.contains(steps), "--help does not give init's first path `{steps}`:\n{help}");
    assert!(steps.contains("gazette build --drafts") && !steps.contains("--all"), "{steps}");
    assert!(project.join("digests/000_0000000000000000.txt").is_file(), "the example has the example's id");

    // The path as an editor who follows the old advice would take it, `build --all` included.
    let now = "2026-01-12T09:00:00Z"; // a Monday after 08:00 in London: every week before it is due
    let checked = ok(gazette(&["check", "--now", now], &project));
    assert!(checked.contains("1 digest, 1 issue") && checked.contains(", 0 problems"), "{checked}");
    let built = ok(gazette(&["build", "--all", "--now", now], &project));
    assert!(!built.contains("published #") && built.contains("only the example digest"), "{built}");
    assert!(!project.join("out/issues/2023-07-17").exists(), "the example is not in the archive");
    assert!(!std::fs::read_to_string(project.join("out/atom.xml")).unwrap().contains("2023-07-17"));
    // It is there to look at, among the drafts.
    ok(gazette(&["build", "--drafts", "--now", now], &project));
    assert!(project.join("drafts/issues/2023-07-17/index.html").is_file());
    // Publishing it by hand is refused, naming why.
    let by_hand = gazette(&["build", "--week", "2023-07-17", "--now", now], &project);
    assert_eq!(by_hand.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&by_hand.stderr).contains("only the example digest"),
        "{}",
        String::from_utf8_lossy(&by_hand.stderr)
    );

    // The example goes, a real digest comes: its week is #1.
    std::fs::remove_file(project.join("digests/000_0000000000000000.txt")).unwrap();
    std::fs::write(project.join("digests/001_00c0ffee00c0ffee.txt"), digest("Real", "20260107")).unwrap();
    let built = ok(gazette(&["build", "--all", "--now", now], &project));
    assert!(built.contains("published #1 5–11 January 2026"), "{built}");
}

/// `gazette issues --json`, as (week, state, the whole entry).
fn states(p: &Project, now: &str) -> Vec<(String, String, serde_json::Value)> {
    let out = p.expect(0, &["issues", "--json", "--now", now]);
    let list: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    list.into_iter()
        .map(|v| (v["week"].as_str().unwrap().to_string(), v["state"].as_str().unwrap().to_string(), v))
        .collect()
}

fn state_of(list: &[(String, String, serde_json::Value)], week: &str) -> (String, serde_json::Value) {
    let (_, state, v) =
        list.iter().find(|(w, _, _)| w == week).unwrap_or_else(|| panic!("{week} is not listed: {list:?}"));
    (state.clone(), v.clone())
}

/// Monday 24 July 2023, 08:05 in London: the week of 17 July fell due five minutes ago.
const MONDAY: &str = "2023-07-24T08:05:00+01:00";

#[test]
fn issues_lists_every_issue_with_its_state_after_a_real_send() {
    let sink = Sink::start(&[]);
    let p = Project::with_own_digests(&sink.smtp_config());
    p.import_readers(3);
    // Before the round: the week of 17 July is due and the round will send it; later weeks are drafts.
    let before = states(&p, MONDAY);
    assert_eq!(before.len(), 10, "{before:?}");
    assert_eq!(state_of(&before, "2023-07-17").0, "due");
    assert_eq!(state_of(&before, "2023-07-24").0, "draft");
    assert_eq!(state_of(&before, "2023-07-17").1["published_at"], serde_json::Value::Null);

    let out = p.run(&["run", "--once", "--now", MONDAY]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(sink.messages().len(), 3);
    // One published ahead by hand, one skipped, one held back by a digest that cannot be read.
    p.expect(0, &["build", "--week", "2023-08-14", "--now", MONDAY]);
    p.expect(0, &["skip", "--week", "2023-06-05", "--now", MONDAY]);
    std::fs::write(
        p.path("digests/500_bad0bad0bad0bad0.txt"),
        "# __Broken__, from ([20230712](https://example.org/c).)\n\nno link, no summary\n",
    )
    .unwrap();

    let after = states(&p, MONDAY);
    let (sent, v) = state_of(&after, "2023-07-17");
    assert_eq!(
        (sent.as_str(), v["sent"].as_i64(), v["audience"].as_i64(), v["number"].as_u64()),
        ("sent", Some(3), Some(3), Some(7)),
        "{v}"
    );
    assert!(v["published_at"].as_str().unwrap().starts_with("2023-07-24T08:05:00"), "{v}");
    assert_eq!(v["title"], "Why Carbon Removal Is Reshaping Media");
    let (skipped, v) = state_of(&after, "2023-06-05");
    assert_eq!(skipped, "skipped");
    assert_eq!(v["due_at"], "2023-06-12T08:00:00+01:00");
    let (late, v) = state_of(&after, "2023-06-12");
    assert_eq!((late.as_str(), v["late"].as_bool()), ("published", Some(true)), "{v}");
    let (held, v) = state_of(&after, "2023-07-10");
    assert_eq!(held, "held-back");
    assert!(v["why"].as_str().unwrap().contains("500_bad0bad0bad0bad0.txt"), "{v}");
    let (ahead, v) = state_of(&after, "2023-08-14");
    assert_eq!((ahead.as_str(), v["late"].as_bool(), v["number"].as_u64()), ("published", Some(false), Some(8)), "{v}");
    assert_eq!(state_of(&after, "2023-08-07").0, "draft");

    // The table says the same, one line an issue.
    let table = p.expect(0, &["issues", "--now", MONDAY]);
    let line = |week: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(week))
            .unwrap_or_else(|| panic!("{table}"))
            .to_string()
    };
    assert!(line("2023-07-17").trim_start().starts_with("7 ") && line("2023-07-17").ends_with("sent 3"), "{table}");
    assert!(line("2023-06-05").contains("skipped as late since 2023-06-12 08:00"), "{table}");
    assert!(line("2023-07-10").contains("held back: "), "{table}");
    assert!(line("2023-08-14").contains("published, not sent yet: due at 2023-08-21 08:00"), "{table}");
    assert!(line("2023-08-07").ends_with("draft"), "{table}");
    assert_eq!(table.lines().count(), 11, "a header and one line an issue:\n{table}");
}

#[test]
fn unpublish_frees_the_number_of_an_issue_that_reached_nobody_and_refuses_otherwise() {
    let p = Project::with_own_digests("");
    p.import_readers(1);
    p.expect(0, &["build", "--now", MONDAY]); // #1 to #7, every week due by then
    assert!(p.expect(0, &["build", "--week", "2023-08-07", "--now", MONDAY]).contains("published #8 "));
    assert!(p.expect(0, &["build", "--week", "2023-08-14", "--now", MONDAY]).contains("published #9 "));
    let refused = |week: &str, code: i32, why: &str| {
        let out = p.run(&["unpublish", "--week", week, "--now", MONDAY]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{week}: {stderr}");
        assert!(stderr.contains(why), "{week}: {stderr}");
    };
    // A later issue is numbered after #8: numbers never move.
    refused("2023-08-07", 1, "issue #9 (2023-08-14) was numbered after it");
    // A due week would be published again by the next build.
    refused("2023-07-10", 1, "its week is due by the schedule");

    // #9 reached nobody: taken back, out of the archive and the feeds.
    let out = p.expect(0, &["unpublish", "--week", "2023-W33", "--now", MONDAY]);
    assert!(out.contains("unpublished #9 (14–20 August 2023)"), "{out}");
    assert!(!p.path("out/issues/2023-08-14").exists());
    let atom = std::fs::read_to_string(p.path("out/atom.xml")).unwrap();
    assert!(
        !atom.contains("issues/2023-08-14/"),
        "{}",
        &atom[atom.find("issues/2023-08-14/").unwrap().saturating_sub(300)..][..400]
    );
    refused("2023-08-14", 2, "is not published");
    // Its number is free: the next publication takes it.
    assert!(p.expect(0, &["build", "--week", "2023-07-24", "--now", MONDAY]).contains("published #9 24–30 July 2023"));

    // Once a message went out, it stays.
    p.expect(0, &["send", "--week", "2023-07-24", "--now", MONDAY]);
    refused("2023-07-24", 1, "1 message(s) went out");
}

#[test]
fn a_late_issue_is_reminded_of_every_round_until_it_is_skipped() {
    let p = Project::with_own_digests("");
    p.import_readers(1);
    let round = |now: &str| -> String {
        let out = p.run(&["run", "--once", "--now", now]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let reminded = |log: &str, week: &str| {
        log.lines().any(|l| l.contains("WARN") && l.contains("is unsent") && l.contains(&format!("--week {week}`")))
    };
    // The first round sends the week of 17 July; the week of 10 July was published with it, a week late.
    let first = round(MONDAY);
    assert!(reminded(&first, "2023-07-10"), "{first}");
    assert!(!reminded(&first, "2023-07-17"), "sent this round: {first}");
    let second = round("2023-07-24T09:05:00+01:00");
    assert!(reminded(&second, "2023-07-10"), "the next round reminds again: {second}");
    assert!(second.contains("skip --week 2023-07-10"), "{second}");

    let out = p.expect(0, &["skip", "--week", "2023-07-10", "--now", "2023-07-24T09:10:00+01:00"]);
    assert!(out.contains("skipped #6 (10–16 July 2023)"), "{out}");
    let third = round("2023-07-24T10:05:00+01:00");
    assert!(!reminded(&third, "2023-07-10"), "skipped: no more reminders: {third}");
    assert!(reminded(&third, "2023-07-03"), "the others are still unsent: {third}");
    let (state, v) = state_of(&states(&p, "2023-07-24T10:05:00+01:00"), "2023-07-10");
    assert_eq!(state, "skipped", "{v}");
    assert!(std::fs::read_dir(p.path("outbox")).unwrap().count() == 1, "only the week of 17 July was sent");
    // Skipping is for what was not sent.
    let out = p.run(&["skip", "--week", "2023-07-17", "--now", "2023-07-24T10:05:00+01:00"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("its send started"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (name, chose it, receive it) of the "audience by theme" table ending `out`, read from its rows
/// (a name may hold spaces: the two numbers are the row's last words); the heading line first.
fn audience_table(out: &str) -> (String, Vec<(String, i64, i64)>) {
    let lines: Vec<&str> = out.lines().collect();
    let at = lines.iter().position(|l| l.starts_with("audience by theme")).unwrap_or_else(|| panic!("{out}"));
    assert_eq!(lines[at + 1].split_whitespace().collect::<Vec<_>>(), ["theme", "chose", "it", "receive", "it"]);
    let rows = lines[at + 2..]
        .iter()
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let [name @ .., chose, receive] = words.as_slice() else { panic!("{l}") };
            (name.join(" "), chose.parse().unwrap(), receive.parse().unwrap())
        })
        .collect();
    (lines[at].to_string(), rows)
}

#[test]
fn issues_and_status_show_the_audience_by_theme_once_readers_chose() {
    let p = Project::with_own_digests("");
    for e in std::fs::read_dir(p.path("digests")).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let themed = |title: &str, date: &str, theme: &str| format!("{}\n## Themes\n\n* {theme}\n", digest(title, date));
    std::fs::write(p.path("digests/001_1000000000000001.txt"), themed("Grid", "20260106", "Energy Transition"))
        .unwrap();
    std::fs::write(p.path("digests/002_1000000000000002.txt"), digest("Untagged", "20260107")).unwrap();
    std::fs::write(p.path("digests/003_1000000000000003.txt"), themed("Clinics", "20260113", "Public health")).unwrap();
    let now = "2026-01-20T09:00:00Z"; // both weeks due
    let import = |csv: &str| {
        std::fs::write(p.path("readers.csv"), csv).unwrap();
        p.expect(0, &["subscribers", "import", p.path("readers.csv").to_str().unwrap()])
    };

    // Readers who all follow everything: no audience by theme anywhere.
    import("email\nc@example.org\ne@example.org\n");
    let plain = p.expect(0, &["issues", "--now", now]);
    assert!(!plain.contains("audience"), "{plain}");
    let list: Vec<serde_json::Value> = serde_json::from_str(&p.expect(0, &["issues", "--json", "--now", now])).unwrap();
    assert!(list.iter().all(|v| v.get("audience_by_theme").is_none()), "{list:?}");
    let status = p.expect(0, &["status", "--week", "2026-01-05", "--now", now]);
    assert!(!status.contains("audience"), "{status}");
    let json: serde_json::Value =
        serde_json::from_str(&p.expect(0, &["status", "--week", "2026-01-05", "--json", "--now", now])).unwrap();
    assert!(json.get("audience_by_theme").is_none(), "{json}");

    // Three active readers choose; an unsubscribed one's choice does not count.
    import(
        "email,themes,status\n\
         a@example.org,energy transition,\n\
         b@example.org,Public Health; ENERGY TRANSITION,\n\
         d@example.org,Climate,\n\
         f@example.org,public health,unsubscribed\n",
    );
    let with = p.expect(0, &["issues", "--now", now]);
    assert!(with.starts_with(&plain), "the issues' table stays as it was:\n{plain}\n---\n{with}");
    // Named as the digests spell a theme; most chosen first, then by name.
    let expected_rows = vec![
        ("Energy Transition".to_string(), 2, 4),
        ("Climate".to_string(), 1, 3),
        ("Public health".to_string(), 1, 3),
    ];
    let heading = "audience by theme (active readers): 2 with every theme, 3 with themes they chose";
    assert_eq!(audience_table(&with), (heading.to_string(), expected_rows.clone()));
    let status = p.expect(0, &["status", "--week", "2026-01-05", "--now", now]);
    assert_eq!(audience_table(&status), (heading.to_string(), expected_rows));

    // JSON: each issue's own themes, and how many readers get a digest of it at all (c, e and
    // the followers of its themes; d's week is skipped either way).
    let list: Vec<serde_json::Value> = serde_json::from_str(&p.expect(0, &["issues", "--json", "--now", now])).unwrap();
    let of = |week: &str| list.iter().find(|v| v["week"] == week).unwrap()["audience_by_theme"].clone();
    assert_eq!(
        of("2026-01-05"),
        serde_json::json!({"reach": 4, "everything": 2, "themes": [
            {"name": "Energy Transition", "slug": "energy-transition", "followers": 2, "receive": 4}
        ]})
    );
    assert_eq!(
        of("2026-01-12"),
        serde_json::json!({"reach": 3, "everything": 2, "themes": [
            {"name": "Public health", "slug": "public-health", "followers": 1, "receive": 3}
        ]})
    );
    let json: serde_json::Value =
        serde_json::from_str(&p.expect(0, &["status", "--week", "2026-01-05", "--json", "--now", now])).unwrap();
    assert_eq!(json["audience_by_theme"]["everything"], 2);
    assert_eq!(json["audience_by_theme"]["choosing"], 3);
    let themes: Vec<(&str, i64, i64)> = json["audience_by_theme"]["themes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap(), t["followers"].as_i64().unwrap(), t["receive"].as_i64().unwrap()))
        .collect();
    assert_eq!(themes, [("Energy Transition", 2, 4), ("Climate", 1, 3), ("Public health", 1, 3)]);
}
