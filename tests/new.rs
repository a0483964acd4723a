//! `gazette new` run as an editor would, in a project `gazette init` made: the skeleton's name,
//! its placeholders that `check` reports until they are written over, the digest in its week's
//! draft, and the refusals (a bad link or date, a link another digest has).

use std::path::Path;
use std::process::{Command, Output};

fn gazette(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gazette"))
        .args(args)
        .current_dir(dir)
        .env_remove("GAZETTE_CONFIG")
        .output()
        .expect("gazette runs")
}

/// Runs and requires exit code `code`; returns stdout and stderr together.
fn expect(dir: &Path, code: i32, args: &[&str]) -> String {
    let out = gazette(dir, args);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(code), "gazette {args:?}:\n{text}");
    text
}

fn initialized() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    expect(dir.path(), 0, &["init"]);
    dir
}

const NOW: &str = "--now=2023-07-20T09:00:00+00:00";

#[test]
fn new_writes_a_named_skeleton_that_check_flags_until_it_is_filled_in_then_shows_in_its_week() {
    let project = initialized();
    let dir = project.path();
    let out = expect(
        dir,
        0,
        &[
            "new",
            "Open weights are not open source",
            "--link",
            "https://example.com/open-weights",
            "--date",
            "2023-07-19",
            NOW,
        ],
    );
    let name =
        out.lines().next().unwrap().strip_prefix("wrote digests/").unwrap_or_else(|| panic!("{out}")).to_string();
    // NNN: the next sequence number after the example's 000; the id: 16 hex digits, not the example's.
    let (nnn, id) = name.strip_suffix(".txt").unwrap().split_once('_').unwrap();
    assert_eq!(nnn, "001", "{name}");
    assert!(id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) && id != "0000000000000000", "{name}");
    let path = dir.join("digests").join(&name);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with(
            "# __Open weights are not open source__, from ([20230719](https://example.com/open-weights).)\n"
        ),
        "{text}"
    );
    assert!(text.contains("\n__[External link](https://example.com/open-weights)__\n"), "{text}");
    for section in ["Summary", "Keywords", "Themes", "Signals", "Closest"] {
        assert!(text.contains(&format!("\n## {section}\n")), "{section}: {text}");
    }

    // Each placeholder line is a problem, at its line; the digest is not read until they are gone.
    let check = expect(dir, 1, &["check", NOW]);
    let flagged: Vec<&str> = check.lines().filter(|l| l.contains("`TODO(gazette new)` is still here")).collect();
    assert_eq!(flagged.len(), 5, "{check}");
    let summary_line =
        text.lines().position(|l| l.starts_with("TODO(gazette new): what the article says")).unwrap() + 1;
    assert!(flagged[0].starts_with(&format!("digests/{name}:{summary_line}: ")), "{check}");

    // Written over: the summary in, the optional sections' placeholders deleted.
    let filled: String = text
        .lines()
        .filter(|l| !l.contains("TODO(gazette new)") || l.starts_with("TODO(gazette new): what"))
        .map(|l| {
            if l.starts_with("TODO(gazette new): what") {
                "Open weights let anyone run a model, not rebuild it."
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&path, filled).unwrap();
    let check = expect(dir, 0, &["check", NOW]);
    assert!(check.contains("2 digests") && check.contains("0 problems"), "{check}");

    expect(dir, 0, &["build", "--drafts", NOW]);
    let page = std::fs::read_to_string(dir.join("drafts/issues/2023-07-17/index.html")).unwrap();
    assert!(page.contains("Open weights are not open source"), "the week of 17 July shows the new digest");

    // The next one takes the next number.
    let out = expect(dir, 0, &["new", "Another", "--link", "https://example.com/another", "--date", "20230720", NOW]);
    assert!(out.starts_with("wrote digests/002_"), "{out}");
}

#[test]
fn new_refuses_a_bad_link_a_bad_date_and_a_link_already_used() {
    let project = initialized();
    let dir = project.path();
    let before = std::fs::read_dir(dir.join("digests")).unwrap().count();

    let out = expect(dir, 2, &["new", "T", "--link", "ftp://example.com/a", NOW]);
    assert!(out.contains("--link: the link `ftp://example.com/a` must be an http(s) URL"), "{out}");
    let out = expect(dir, 2, &["new", "T", "--link", "example.com/a", NOW]);
    assert!(out.contains("--link: the link `example.com/a` is not a valid URL"), "{out}");
    let out = expect(dir, 2, &["new", "T", "--link", "https://example.com/a", "--date", "2023-02-30", NOW]);
    assert!(out.contains("--date `2023-02-30` is not a date; give it as 2023-07-23"), "{out}");
    // The example's own link is used already, by the example.
    let example = std::fs::read_to_string(dir.join("digests/000_0000000000000000.txt")).unwrap();
    let link =
        example.lines().find_map(|l| l.strip_prefix("__[External link](")?.strip_suffix(")__")).unwrap().to_string();
    let out = expect(dir, 2, &["new", "T", "--link", &link, NOW]);
    assert!(out.contains(&format!("digests/000_0000000000000000.txt is already the digest of {link}")), "{out}");
    assert_eq!(std::fs::read_dir(dir.join("digests")).unwrap().count(), before, "nothing was written");

    // A title that would break the heading's line is refused too.
    let out = expect(dir, 2, &["new", "two\nlines", "--link", "https://example.com/b", NOW]);
    assert!(out.contains("the title must be one line"), "{out}");
}

#[test]
fn without_a_date_the_digest_is_dated_today_where_the_newsletter_is_reckoned() {
    let project = initialized();
    let dir = project.path();
    // 23:30 UTC on 19 July is already 20 July in London (BST, the default [schedule] timezone).
    let out = expect(dir, 0, &["new", "T", "--link", "https://example.com/t", "--now=2023-07-19T23:30:00+00:00"]);
    let name = out.lines().next().unwrap().strip_prefix("wrote ").unwrap();
    let text = std::fs::read_to_string(dir.join(name)).unwrap();
    assert!(text.starts_with("# __T__, from ([20230720]("), "{text}");
}
