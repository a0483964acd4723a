//! Messages that help: each error or help text names what to fix and tells the truth, run through
//! the real binary as an editor meets them.

mod common;

use std::process::Output;

use common::{Project, Sink};

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_bad_cron_hour_names_the_field_and_its_range() {
    let p = Project::new("[schedule]\ncron = \"0 0 25 * * Mon\"\n");
    let out = p.run(&["check"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("[schedule] cron: `0 0 25 * * Mon`: the hour field is 25; hours are 0 to 23"), "{stderr}");
    assert!(!stderr.contains("less than 23"), "the cron crate's misleading text is not passed on: {stderr}");
}

#[test]
fn an_unknown_section_is_called_a_section_with_the_valid_ones() {
    let p = Project::new("[bounces]\ntemporary_limit = 3\n\n[feed]\nitems = 3\n");
    let out = p.run(&["check"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("unknown section [feed] (did you mean [feeds]?)"), "{stderr}");
    assert!(
        stderr.contains(
            "[site], [paths], [schedule], [email], [smtp], [server], [feeds], [bounces], [reputation], [dkim]"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("in [bounces]") && !stderr.contains("unknown field"), "{stderr}");
}

#[test]
fn a_bad_now_shows_an_example_and_says_what_is_missing() {
    let p = Project::new("");
    let out = p.run(&["check", "--now", "2026-12-14"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("a date alone is not enough") && stderr.contains("--now 2026-12-14T08:00:00+00:00"),
        "{stderr}"
    );
    assert!(!stderr.contains("premature end of input"), "{stderr}");
    let out = p.run(&["check", "--now", "2026-12-14T08:00:00"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("offset from UTC is missing") && stderr.contains("--now 2026-12-14T08:00:00+00:00"),
        "{stderr}"
    );
    // The example itself works.
    p.expect(0, &["check", "--now", "2026-12-14T08:00:00+00:00"]);
}

#[test]
fn check_smtp_on_a_plain_connection_does_not_claim_a_verified_certificate() {
    let sink = Sink::start(&[]);
    let p = Project::new(&sink.smtp_config());
    let stdout = p.expect(0, &["check", "--smtp"]);
    assert!(!stdout.contains("certificate verified"), "{stdout}");
    assert!(
        stdout.contains("connected")
            && stdout.contains("not encrypted (tls=none)")
            && stdout.contains("no certificate was checked"),
        "{stdout}"
    );
    assert!(stdout.contains("login      none"), "{stdout}");
    assert_eq!(sink.count(), 0, "check sends nothing");
}

#[test]
fn preview_help_names_the_folder_preview_writes() {
    let p = Project::new("");
    let help = p.expect(0, &["preview", "--help"]);
    assert!(help.contains("<[paths] drafts>/preview/") && !help.contains("<out>"), "{help}");
    let said = p.expect(0, &["preview", "--week", "2023-07-23"]);
    assert!(p.path("drafts/preview/2023-07-17.html").exists(), "{said}");
    assert!(!p.path("out/preview").exists(), "{said}");
}

#[test]
fn init_help_shows_its_default_once() {
    let p = Project::new("");
    let help = p.expect(0, &["init", "--help"]);
    let dir = help.lines().find(|l| l.trim_start().starts_with("[DIR]")).unwrap_or_else(|| panic!("{help}"));
    assert_eq!(dir.matches("[default").count(), 1, "{dir}");
    assert!(dir.contains("[default: the current folder]"), "{dir}");
}
