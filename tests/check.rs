//! `gazette check` run as a user would: the built binary on the example corpus, on broken digests,
//! and on the generator's `--nasty` corpus.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn gazette(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gazette"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("GAZETTE_CONFIG")
        .output()
        .expect("the gazette binary runs")
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A project folder with a publish.toml whose digests are `digests`.
fn project(digests: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("publish.toml"),
        format!(
            "[paths]\ndigests = {:?}\nout = \"out\"\ndatabase = \"db/gazette.db\"\n",
            digests.display().to_string()
        ),
    )
    .unwrap();
    dir
}

#[test]
fn the_example_corpus_is_clean_and_counted() {
    let out = gazette(&repo().join("publish.toml"), &["check"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let files = std::fs::read_dir(repo().join("digests"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "txt"));
    let count = files.count();
    assert!(count >= 60, "the example corpus has about 60 digests, found {count}");
    // The generator spreads its digests over 12 weeks from 5 June 2023; 10 of them have digests.
    assert_eq!(stdout.trim(), format!("{count} digests, 10 issues, 0 problems"));
}

#[test]
fn broken_digests_are_all_named_with_lines_and_the_good_ones_still_counted() {
    let dir = tempfile::tempdir().unwrap();
    let seed = std::fs::read_to_string(repo().join("digests/000_86102eed948879ef.txt")).unwrap();
    let d = dir.path().join("digests");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("000_86102eed948879ef.txt"), &seed).unwrap();
    std::fs::write(d.join("001_1111111111111111.txt"), seed.replacen("[20230723]", "[20230732]", 1)).unwrap();
    std::fs::write(
        d.join("002_2222222222222222.txt"),
        seed.replacen("(https://www.alessio", "(javascript:alert(1)//www.alessio", 1),
    )
    .unwrap();
    std::fs::write(d.join("003_3333333333333333.txt"), seed.replacen("## Summary", "## Abstract", 1)).unwrap();
    std::fs::write(
        d.join("004_4444444444444444.txt"),
        b"# __T__, from ([20230723](https://x.org).)\n\n__[External link](https://x.org)__\n\n## Summary\n\n\xff\xfe\n",
    )
    .unwrap();
    std::fs::write(d.join("README.md"), "not a digest").unwrap();
    let p = project(&d);
    let out = gazette(&p.path().join("publish.toml"), &["check"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let name = |f: &str| d.join(f).display().to_string();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{}:1: `20230732` is not a valid date", name("001_1111111111111111.txt")))),
        "{stdout}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with(&format!("{}:3: the external link", name("002_2222222222222222.txt")))),
        "{stdout}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{}:7: unknown section `## Abstract`", name("003_3333333333333333.txt")))),
        "{stdout}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with(&format!("{}:7:", name("004_4444444444444444.txt"))) && l.contains("UTF-8")),
        "{stdout}"
    );
    // Other files are not digests: each is named, as a warning that counts as no problem.
    assert!(lines.contains(&format!("warning: {} is not read: only `.txt` files are digests; if this is one, rename it NNN_<16 hex digits>.txt (gazette new makes one)", name("README.md")).as_str()), "{stdout}");
    assert_eq!(*lines.last().unwrap(), "1 digest, 1 issue, 5 problems (5 in 4 digest files)", "{stdout}");
}

#[test]
fn files_not_read_and_a_missing_date_are_said_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let seed = std::fs::read_to_string(repo().join("digests/000_86102eed948879ef.txt")).unwrap();
    let d = dir.path().join("digests");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("000_86102eed948879ef.txt"), &seed).unwrap();
    std::fs::write(d.join("notes.md"), &seed).unwrap();
    std::fs::write(d.join("001_xyz.txt"), &seed).unwrap();
    std::fs::write(
        d.join("002_2222222222222222.txt"),
        seed.replacen(
            "from ([20230723](https://kghosh.substack.com/p/20230723).)",
            "from (https://kghosh.substack.com/p/20230723).",
            1,
        ),
    )
    .unwrap();
    let p = project(&d);
    let out = gazette(&p.path().join("publish.toml"), &["check"]);
    let (stdout, stderr) = text(&out);
    let name = |f: &str| d.join(f).display().to_string();
    let lines: Vec<&str> = stdout.lines().collect();
    // The misnamed files: warnings, not problems, and never at a "line 0".
    assert!(lines.contains(&format!("warning: {} is not read: the name `001_xyz.txt` has no hex id after its `_`; name it like 001_86102eed948879ef.txt (gazette new makes one)", name("001_xyz.txt")).as_str()), "{stdout}");
    assert!(lines.contains(&format!("warning: {} is not read: only `.txt` files are digests; if this is one, rename it NNN_<16 hex digits>.txt (gazette new makes one)", name("notes.md")).as_str()), "{stdout}");
    assert!(!stdout.contains(":0:"), "{stdout}");
    // The heading without its date wrapper: the date is what is missing.
    assert!(lines.contains(&format!("{}:1: the date is missing: found `from (https://kghosh.substack.com/p/20230723).`; write the date the article was collected as a link to where it was, `, from ([20230723](https://source).)`", name("002_2222222222222222.txt")).as_str()), "{stdout}");
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert_eq!(*lines.last().unwrap(), "1 digest, 1 issue, 1 problem (1 in 1 digest files)", "{stdout}");
}

#[test]
fn the_nasty_corpus_is_read_without_problems() {
    let Some(dir) = common::generated_corpus(&["--count", "300", "--nasty"]) else { return };
    let d = dir.path();
    // The generator really did write the hard cases.
    let all: String =
        std::fs::read_dir(d).unwrap().map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).collect();
    assert!(all.contains("\r\n") && all.contains('\u{feff}') && all.contains("\\|") && all.contains("<script>"));
    let p = project(d);
    let out = gazette(&p.path().join("publish.toml"), &["check"]);
    let (stdout, stderr) = text(&out);
    // 300 digests in 12 weeks (about 25 a week, with long summaries) make emails that would pass
    // the size budget whole: they are shortened to fit, which check reports without calling it a
    // problem. No digest has a problem.
    let (summary, findings) =
        stdout.trim_end().rsplit_once('\n').map(|(f, s)| (s, f)).unwrap_or((stdout.trim_end(), ""));
    for line in findings.lines() {
        assert!(
            line.starts_with("issue #") && line.contains("shortened to fit [email] max_html_kb = 90"),
            "not a size note: {line}\n{stderr}"
        );
    }
    assert!(!findings.is_empty(), "some weeks of the nasty corpus are heavy: {stdout}");
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(summary.starts_with("300 digests, ") && summary.ends_with(" 0 problems"), "{stdout}");
}

#[test]
fn a_typo_in_publish_toml_is_a_configuration_error_naming_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("publish.toml");
    std::fs::write(&path, "[site]\ntitle = \"x\"\n\n[smtp]\nconcurency = 8\n").unwrap();
    let out = gazette(&path, &["check"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("{}:5:", path.display())), "{stderr}");
    assert!(stderr.contains("concurency") && stderr.contains("[smtp]"), "{stderr}");
}

#[test]
fn a_missing_digests_folder_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = project(&dir.path().join("nowhere"));
    let out = gazette(&p.path().join("publish.toml"), &["check"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("nowhere") && stderr.contains("[paths] digests"), "{stderr}");
}

#[test]
fn a_theme_readers_follow_that_no_recent_digest_carries_is_a_warning_naming_it() {
    let p = project(&repo().join("digests"));
    let config = p.path().join("publish.toml");
    let now = "2023-09-01T00:00:00Z"; // every week of the corpus is due: ten published issues
    let count_line = |stdout: &str| stdout.lines().last().unwrap_or_default().to_string();
    let clean = gazette(&config, &["check", "--now", now]);
    let (clean_out, _) = text(&clean);

    let import = |csv: &str| {
        std::fs::write(p.path().join("readers.csv"), csv).unwrap();
        let out = gazette(&config, &["subscribers", "import", p.path().join("readers.csv").to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    };
    // Readers who follow everything, or themes the digests carry (in any spelling): no warning.
    import("email,themes\nall@example.org,\nenergy@example.org,Energy-Transition; PUBLIC HEALTH\n");
    let out = gazette(&config, &["check", "--now", now]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(stdout, clean_out);

    // "Climate Tech" is no theme of the corpus (its eleven are listed in its digests' Themes):
    // four active readers follow it, two of them nothing else.
    import(
        "email,themes,status\n\
         a@example.org,Energy Transition; Climate Tech,\n\
         b@example.org,Climate Tech,\n\
         b2@example.org,climate tech,\n\
         c@example.org,climate-tech; public health,\n\
         gone@example.org,Old Theme,unsubscribed\n",
    );
    let out = gazette(&config, &["check", "--now", now]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "a warning, not a problem: {stdout}{stderr}");
    let warnings: Vec<&str> = stdout.lines().filter(|l| l.starts_with("warning: ")).collect();
    assert_eq!(warnings.len(), 2, "{stdout}");
    assert_eq!(
        warnings[0],
        "warning: 4 readers follow the theme `Climate Tech`, which no digest of the last 8 issues carries: was it renamed? Readers who follow only such themes receive nothing."
    );
    assert!(warnings[1].starts_with("warning: 2 readers follow only such themes"), "{}", warnings[1]);
    assert!(!stdout.contains("Old Theme"), "an unsubscribed reader's theme is no one's: {stdout}");
    assert_eq!(count_line(&stdout), count_line(&clean_out));

    // Before anything is published, no digest has reached anyone: nothing to compare.
    let out = gazette(&config, &["check", "--now", "2023-06-01T00:00:00Z"]);
    let (stdout, _) = text(&out);
    assert!(!stdout.contains("Climate Tech"), "{stdout}");
}
