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
    std::process::Command::new(env!("CARGO_BIN_EXE_gazette")).args(args).current_dir(cwd).env_remove("GAZETTE_CONFIG").output().unwrap()
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
    let steps = next.strip_prefix("next: cd ").and_then(|s| s.split_once(" && ")).map(|(_, steps)| steps).unwrap_or_else(|| panic!("{init}"));
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
    assert!(String::from_utf8_lossy(&by_hand.stderr).contains("only the example digest"), "{}", String::from_utf8_lossy(&by_hand.stderr));

    // The example goes, a real digest comes: its week is #1.
    std::fs::remove_file(project.join("digests/000_0000000000000000.txt")).unwrap();
    std::fs::write(project.join("digests/001_00c0ffee00c0ffee.txt"), digest("Real", "20260107")).unwrap();
    let built = ok(gazette(&["build", "--all", "--now", now], &project));
    assert!(built.contains("published #1 5–11 January 2026"), "{built}");
}
