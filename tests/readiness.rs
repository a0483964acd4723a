//! The placeholders of `gazette init` never reach readers: through a real relay (smtp-sink here),
//! `check` reports each one, `send` and `run` refuse to mail readers, and a test copy to the editor
//! still goes, with a warning.

mod common;

use std::process::{Command, Output};

use common::{Project, Sink};

/// Runs `gazette` in `p` without the harness's permission to send with placeholders.
fn strict(p: &Project, args: &[&str]) -> Output {
    p.command(args).env_remove("GAZETTE_ALLOW_PLACEHOLDERS").output().expect("gazette runs")
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A project written by `gazette init`, with `[smtp] url` at a relay and `reply_to` and
/// `bounce_address` uncommented as init suggests them.
fn initialised(smtp_url: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gazette"))
        .arg("init")
        .arg(dir.path())
        .env_remove("GAZETTE_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let toml = std::fs::read_to_string(dir.path().join("publish.toml")).unwrap();
    let toml = toml
        .replace("url = \"file://outbox\"", &format!("url = \"{smtp_url}\""))
        .replace("# reply_to = ", "reply_to = ")
        .replace("# bounce_address = ", "bounce_address = ");
    std::fs::write(dir.path().join("publish.toml"), toml).unwrap();
    dir
}

fn check(dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gazette"))
        .arg("--config")
        .arg(dir.join("publish.toml"))
        .arg("check")
        .env_remove("GAZETTE_CONFIG")
        .env_remove("GAZETTE_ALLOW_PLACEHOLDERS")
        .output()
        .unwrap()
}

const KEYS: [&str; 5] =
    ["[site] base_url", "[email] from", "[email] reply_to", "[email] editor", "[email] bounce_address"];

#[test]
fn check_with_a_relay_names_every_placeholder_of_init_and_passes_once_they_are_fixed() {
    let dir = initialised("smtp://127.0.0.1:2525");
    let out = check(dir.path());
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "a configuration problem:\n{stdout}{stderr}");
    for key in KEYS {
        let line = stdout.lines().find(|l| l.contains(key)).unwrap_or_else(|| panic!("{key} is not named:\n{stdout}"));
        assert!(line.contains("publish.toml"), "the line names the file: {line}");
    }
    assert!(stdout.contains("http://127.0.0.1:8080") && stdout.contains("loopback"), "{stdout}");
    assert!(stdout.contains("5 problems"), "{stdout}");

    // The outbox is a rehearsal: the same values are no problem there.
    let toml = std::fs::read_to_string(dir.path().join("publish.toml")).unwrap();
    std::fs::write(dir.path().join("publish.toml"), toml.replace("smtp://127.0.0.1:2525", "file://outbox")).unwrap();
    let out = check(dir.path());
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));

    // Real values pass through the relay.
    let fixed = toml
        .replace("http://127.0.0.1:8080", "https://news.acme-letters.net")
        .replace("signals.example.org", "acme-letters.net");
    std::fs::write(dir.path().join("publish.toml"), fixed).unwrap();
    let out = check(dir.path());
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(!KEYS.iter().any(|k| problems(&stdout).contains(k)), "{stdout}");
}

/// `check`'s output without its note on feed ids (which names `[site] base_url` before anything
/// is published, whatever its value): the problems.
fn problems(stdout: &str) -> String {
    stdout.lines().filter(|l| !l.starts_with("nothing is published yet")).collect::<Vec<_>>().join("\n")
}

#[test]
fn private_and_reserved_hosts_are_placeholders_public_ones_are_not() {
    let dir = initialised("smtp://127.0.0.1:2525");
    let toml = std::fs::read_to_string(dir.path().join("publish.toml")).unwrap();
    let fixed = toml.replace("signals.example.org", "acme-letters.net");
    for (base_url, placeholder) in [
        ("http://10.1.2.3", true),
        ("http://172.20.0.1:8080", true),
        ("http://192.168.1.10", true),
        ("http://169.254.0.5", true),
        ("http://[::1]:8080", true),
        ("http://[fd12::1]", true),
        ("http://localhost:8080", true),
        ("https://news.test", true),
        ("https://signals.example", true),
        ("https://www.example.net", true),
        ("https://example.com", true),
        ("https://example.community", false),
        ("https://203.0.113.9.nip.io", false),
        ("https://172.32.0.1", false),
    ] {
        std::fs::write(dir.path().join("publish.toml"), fixed.replace("http://127.0.0.1:8080", base_url)).unwrap();
        let out = check(dir.path());
        let (stdout, _) = text(&out);
        assert_eq!(problems(&stdout).contains("[site] base_url"), placeholder, "{base_url}:\n{stdout}");
        assert_eq!(out.status.code(), Some(if placeholder { 2 } else { 0 }), "{base_url}:\n{stdout}");
    }
}

#[test]
fn before_the_first_publication_check_says_that_the_feed_ids_come_from_the_host() {
    let p = Project::new("");
    let before = p.expect(0, &["check", "--now", "2023-06-01T00:00:00Z"]);
    assert!(
        before.contains("feed entry ids") && before.contains("signals.example.org") && before.contains("twice"),
        "{before}"
    );
    let after = p.expect(0, &["check", "--now", "2023-07-24T09:00:00+01:00"]);
    assert!(!after.contains("feed entry ids"), "{after}");
}

#[test]
fn a_send_to_readers_through_a_relay_is_refused_while_placeholders_remain() {
    let sink = Sink::start(&[]);
    // tests/common's project: base_url, from and editor are at signals.example.org and example.org.
    let p = Project::new(&sink.smtp_config());
    p.import_readers(3);
    let out = strict(&p, &["send", "--week", "2023-07-23"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    for key in ["[site] base_url", "[email] from", "[email] editor"] {
        assert!(stderr.contains(key), "{key} is not named:\n{stderr}");
    }
    assert!(stderr.contains("send --test"), "says what still works: {stderr}");
    // The scheduler's send follows the same rule.
    let out = strict(&p, &["run", "--once", "--now", "2023-07-24T08:05:00+01:00"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("[site] base_url"), "{stderr}");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(sink.count(), 0, "nothing reached the relay");
    assert!(!p.path("out/index.html").exists(), "nothing was published either");

    // A test copy to the editor goes, with a warning naming the keys.
    let out = strict(&p, &["send", "--test", "--week", "2023-07-23"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stderr.contains("[site] base_url") && stderr.contains("[email] from"),
        "the warning names the keys: {stderr}"
    );
    sink.wait_for(1);
    let got = sink.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpt, "editor@example.org");

    // Fixed, the real send goes out.
    let toml = std::fs::read_to_string(p.path("publish.toml")).unwrap();
    let fixed = toml
        .replace("signals.example.org", "acme-letters.net")
        .replace("editor@example.org", "editor@acme-letters.net");
    std::fs::write(p.path("publish.toml"), fixed).unwrap();
    let out = strict(&p, &["send", "--week", "2023-07-23"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    sink.wait_for(4);
}
