//! `gazette subscribers ...` run as a user would: the real binary, a `publish.toml` in a temporary
//! folder, and a real SQLite file that does not exist before the first command.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Site {
    dir: tempfile::TempDir,
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("publish.toml"), "[paths]\ndatabase = \"data/gazette.db\"\n").unwrap();
        Site { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn db(&self) -> PathBuf {
        self.path("data/gazette.db")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_gazette"));
        c.arg("--config").arg(self.path("publish.toml")).arg("subscribers").args(args);
        c.current_dir(self.dir.path()).env_remove("GAZETTE_CONFIG").env_remove("GAZETTE_SECRET").env("RUST_LOG", "off");
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        finish(self.command(args).output().unwrap())
    }

    fn write(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.path(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_string()
    }

    /// `email,status` of everyone, from `export`.
    fn statuses(&self) -> Vec<String> {
        let r = self.run(&["export"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let mut rows = csv::Reader::from_reader(r.stdout.as_bytes());
        rows.records()
            .map(|rec| {
                let rec = rec.unwrap();
                format!("{},{}", &rec[0], &rec[2])
            })
            .collect()
    }
}

fn finish(o: Output) -> Run {
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8(o.stdout).unwrap(),
        stderr: String::from_utf8(o.stderr).unwrap(),
    }
}

#[test]
fn the_first_command_creates_and_migrates_the_database() {
    let site = Site::new();
    assert!(!site.db().exists());
    let r = site.run(&["list"]);
    assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "no subscribers\n", ""));
    assert!(site.db().exists());
    let r = site.run(&["list", "--format", "json"]);
    assert_eq!(r.stdout, "[]\n");
    let r = site.run(&["export"]);
    assert_eq!(r.stdout, "email,name,status,source,created_at,status_changed_at,themes,paused_until\n");
}

#[test]
fn add_remove_and_list() {
    let site = Site::new();
    let r = site.run(&["add", "Ada@Example.org", "--name", "Ada Lovelace"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "added Ada@Example.org (active)\n"));
    // Case-insensitive on the whole address; the address stays as first given.
    let r = site.run(&["add", "ada@EXAMPLE.ORG"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "Ada@Example.org is already active; nothing changed\n"));
    let r = site.run(&["add", "grace@example.org"]);
    assert_eq!(r.code, 0);

    let r = site.run(&["list"]);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", r.stdout);
    assert!(
        lines[0].split_whitespace().eq(["ID", "EMAIL", "NAME", "STATUS", "SOURCE", "SINCE", "PAUSED", "THEMES"]),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("Ada@Example.org") && lines[1].contains("Ada Lovelace") && lines[1].contains("active"),
        "{}",
        lines[1]
    );
    assert_eq!(lines[3], "2 subscribers");

    let r = site.run(&["remove", "ADA@example.org"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "unsubscribed Ada@Example.org\n"));
    let r = site.run(&["remove", "ada@example.org"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "Ada@Example.org is already unsubscribed; nothing changed\n"));
    let r = site.run(&["remove", "nobody@example.org"]);
    assert_eq!((r.code, r.stdout.as_str()), (1, "no subscriber has the address nobody@example.org; nothing changed\n"));

    let r = site.run(&["list", "--status", "active", "--format", "csv"]);
    let rows: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(rows[0], "id,email,name,status,source,created_at,status_changed_at,themes,paused_until");
    assert_eq!(rows.len(), 2);
    assert!(rows[1].starts_with("2,grace@example.org,,active,cli,"), "{}", rows[1]);
    // Following every theme, not paused: both cells empty.
    assert!(rows[1].ends_with("Z,,"), "{}", rows[1]);

    let r = site.run(&["list", "--status", "unsubscribed", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let list = json.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["email"], "Ada@Example.org");
    assert_eq!(list[0]["name"], "Ada Lovelace");
    assert_eq!(list[0]["status"], "unsubscribed");
    assert_eq!(list[0]["source"], "cli");
    assert!(list[0]["unsubscribed_at"].is_string());
    assert!(list[0]["bounced_at"].is_null());

    let r = site.run(&["list", "--status", "bounced"]);
    assert_eq!(r.stdout, "no bounced subscribers\n");
}

#[test]
fn usage_errors_exit_2_and_touch_nothing() {
    let site = Site::new();
    let r = site.run(&["add", "not-an-address"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("`not-an-address` is not a valid email address"), "{}", r.stderr);
    let r = site.run(&["add", "ok@example.org", "--name", "Two\nLines"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--name"), "{}", r.stderr);
    let r = site.run(&["list", "--status", "gone"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("`gone` is not a subscriber status"), "{}", r.stderr);
    let r = site.run(&["import", "missing.csv"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("missing.csv: cannot read"), "{}", r.stderr);
    assert!(!site.db().exists(), "no database should be created for a command that cannot run");
}

#[test]
fn unsubscribes_stick_through_add_and_import_until_reactivated() {
    let site = Site::new();
    site.run(&["add", "ada@example.org"]);
    site.run(&["add", "bob@example.org"]);
    site.run(&["remove", "ada@example.org"]);

    let r = site.run(&["add", "Ada@example.org"]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.starts_with("ada@example.org is unsubscribed (since "), "{}", r.stdout);
    assert!(r.stdout.contains("--reactivate"), "{}", r.stdout);

    let file = site.write("again.csv", b"email,name\nADA@example.org,Ada\nbob@example.org,Bob\ncy@example.org,Cy\n");
    let r = site.run(&["import", &file]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "added 1, unchanged 1, skipped 1 (unsubscribed or bounced), invalid 0\n")
    );
    assert_eq!(site.statuses(), ["ada@example.org,unsubscribed", "bob@example.org,active", "cy@example.org,active"]);

    let r = site.run(&["add", "ada@example.org", "--reactivate", "--name", "Ada L."]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "ada@example.org was unsubscribed; active again\n"));
    assert_eq!(site.statuses()[0], "ada@example.org,active");
    let r = site.run(&["add", "ada@example.org", "--reactivate"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "ada@example.org is already active; nothing changed\n"));
}

/// good, duplicate (same file and case-folded), malformed, non-UTF-8, empty and bad-status rows.
const MIXED: &[u8] = b"email,name,status\n\
ada@example.org,Ada,\n\
grace@example.org,Grace,active\n\
not-an-address,Nobody,\n\
GRACE@Example.org,Grace again,\n\
\n\
jos\xE9@example.org,Latin-1,\n\
zoe@example.org,Zo\xEB,\n\
,No address,\n\
eve@example.org,Eve,asleep\n\
\"multi@example.org\",\"Multi\n\
Line\",\n\
old@example.org,Old,unsubscribed\n\
ok@example.org\n";

#[test]
fn import_reports_every_row_and_reimport_changes_nothing() {
    let site = Site::new();
    let file = site.write("mixed.csv", MIXED);
    let r = site.run(&["import", &file]);
    let expected = [
        format!(
            "{file}:4: `not-an-address` is not a valid email address: it needs a name, an @ and a domain, as in reader@example.org"
        ),
        format!("{file}:7: is not UTF-8 (byte 0xE9 in the `email` column)"),
        format!("{file}:8: is not UTF-8 (byte 0xEB in the `name` column)"),
        format!("{file}:9: has no email address"),
        format!(
            "{file}:10: `asleep` is not a subscriber status; use pending, active, unsubscribed, bounced or complained (for eve@example.org)"
        ),
        format!(
            "{file}:11: the name \"Multi\\nLine\" contains a line break or another control character (for multi@example.org)"
        ),
        "added 4, unchanged 1, skipped 0 (unsubscribed or bounced), invalid 6".to_string(),
    ];
    assert_eq!(r.stdout.lines().collect::<Vec<_>>(), expected, "{}", r.stdout);
    assert_eq!(r.code, 1, "invalid rows make the exit code 1 (the valid rows are imported)");
    let before = site.statuses();
    // An import's rows are stored in address order (each transaction's rows are sorted by key).
    assert_eq!(
        before,
        ["ada@example.org,active", "grace@example.org,active", "ok@example.org,active", "old@example.org,unsubscribed"]
    );
    // Of two rows for one address, the first in the file is the one kept.
    let json: serde_json::Value = serde_json::from_str(&site.run(&["list", "--format", "json"]).stdout).unwrap();
    assert_eq!(json[1]["email"], "grace@example.org");
    assert_eq!(json[1]["name"], "Grace");
    assert!(json[3]["unsubscribed_at"].is_string() && json[3]["confirmed_at"].is_null(), "{}", json[3]);
    let export_before = site.run(&["export"]).stdout;

    let r = site.run(&["import", &file]);
    assert_eq!(
        r.stdout.lines().last().unwrap(),
        "added 0, unchanged 4, skipped 1 (unsubscribed or bounced), invalid 6"
    );
    assert_eq!(site.run(&["export"]).stdout, export_before, "a re-import must change nothing");
}

#[test]
fn only_sendable_addresses_and_bounded_names_are_stored() {
    let site = Site::new();
    let long = "N".repeat(10_000);
    let rows = [
        format!("ada@example.org,{long}"),
        format!("x@[127.0.0.1],{long}"),
        r#""""evil<script>""@example.org",Eve"#.to_string(),
        "li@h,Li".to_string(),
        format!("{}@example.org,Long", "l".repeat(65)),
        "reader@example.org(Reader),Reader".to_string(),
        format!("grace+news@mail.example.org,\"Grace {long}\""),
        "bob@ex_ample.org,Bob".to_string(),
        format!("{},Junk", "x@".repeat(5_000)),
        format!("ok@example.org,\"{long}\nBcc: victim@example.org\""),
    ];
    let file = site.write("risky.csv", format!("email,name\n{}\n", rows.join("\n")).as_bytes());
    let r = site.run(&["import", &file]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    let (summary, refused) = lines.split_last().unwrap();
    assert_eq!(*summary, "added 2, unchanged 0, skipped 0 (unsubscribed or bounced), invalid 8");
    let expected = [
        (3, "`x@[127.0.0.1]` is not a valid email address: `[127.0.0.1]` is an IP address, not a domain name"),
        (4, r#"`"evil<script>"@example.org` is not a valid email address: the part before the @ is in quotes"#),
        (5, "`li@h` is not a valid email address: the domain `h` has no dot"),
        (6, "is not a valid email address: the part before the @ is 65 bytes long"),
        (7, "`reader@example.org(Reader)` is not a valid email address: it contains a comment"),
        (9, "`bob@ex_ample.org` is not a valid email address: `ex_ample` in the domain"),
        (10, "is not a valid email address: it is 10000 bytes long"),
        (11, "contains a line break or another control character (for ok@example.org)"),
    ];
    assert_eq!(refused.len(), expected.len(), "{}", r.stdout);
    for (line, (number, reason)) in refused.iter().zip(expected) {
        assert!(
            line.starts_with(&format!("{file}:{number}: ")) && line.contains(reason),
            "expected line {number}: {reason}\n got: {line}"
        );
        assert!(line.len() < file.len() + 250, "a refusal stays short: {line}");
    }

    // The names are stored cut to 100 characters; nothing unsendable is stored.
    let json: serde_json::Value = serde_json::from_str(&site.run(&["list", "--format", "json"]).stdout).unwrap();
    let stored: Vec<(&str, &str)> =
        json.as_array().unwrap().iter().map(|s| (s["email"].as_str().unwrap(), s["name"].as_str().unwrap())).collect();
    let grace = format!("Grace {}", &long[..94]);
    assert_eq!(stored, [("ada@example.org", &long[..100]), ("grace+news@mail.example.org", grace.as_str())]);

    // `add` holds to the same rules.
    let r = site.run(&["add", "x@[127.0.0.1]"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("`x@[127.0.0.1]` is not a valid email address: `[127.0.0.1]` is an IP address"),
        "{}",
        r.stderr
    );
    let r = site.run(&["add", "li@h"]);
    assert_eq!(r.code, 2);
    let r = site.run(&["add", "cy@example.org", "--name", &long]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let json: serde_json::Value = serde_json::from_str(&site.run(&["list", "--format", "json"]).stdout).unwrap();
    assert_eq!(json[2]["name"].as_str().unwrap(), &long[..100]);
    assert_eq!(site.statuses().len(), 3);
}

#[test]
fn unusable_files_are_refused_before_anything_is_written() {
    let site = Site::new();
    site.run(&["add", "keep@example.org"]);
    let cases: [(&str, &[u8], &str); 5] = [
        (
            "names.csv",
            b"name,address\nAda,ada@example.org\n",
            "the header row has no `email` column (found `name`, `address`)",
        ),
        ("list.txt", b"ada@example.org\nbob@example.org\n", "no `email` column (found `ada@example.org`)"),
        ("latin1.csv", b"n\xF6m,email\nx,ada@example.org\n", "the header row is not UTF-8"),
        ("book.xlsx", b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00", "this is not a CSV file"),
        ("empty.csv", b"", "the file is empty"),
    ];
    for (name, bytes, reason) in cases {
        let file = site.write(name, bytes);
        let r = site.run(&["import", &file]);
        assert_eq!(r.code, 1, "{name}");
        assert_eq!(r.stdout, "", "{name}");
        assert!(r.stderr.starts_with(&format!("error: {file}: ")), "{name}: {}", r.stderr);
        assert!(r.stderr.contains(reason) && r.stderr.contains("nothing was imported"), "{name}: {}", r.stderr);
    }
    assert_eq!(site.statuses(), ["keep@example.org,active"]);
}

#[test]
fn export_reads_back_into_a_fresh_database_with_statuses_kept() {
    let site = Site::new();
    site.run(&["add", "ada@example.org", "--name", "Ada, Countess of Lovelace"]);
    site.run(&["add", "bob@example.org"]);
    site.run(&["remove", "bob@example.org"]);
    let exported = site.run(&["export"]).stdout;
    let file = site.write("export.csv", exported.as_bytes());

    let other = Site::new();
    let r = other.run(&["import", &file]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "added 2, unchanged 0, skipped 0 (unsubscribed or bounced), invalid 0\n")
    );
    assert_eq!(other.statuses(), ["ada@example.org,active", "bob@example.org,unsubscribed"]);
    let json: serde_json::Value = serde_json::from_str(&other.run(&["list", "--format", "json"]).stdout).unwrap();
    assert_eq!(json[0]["name"], "Ada, Countess of Lovelace");
    assert_eq!(json[0]["source"], "import");
    let r = site.run(&["export", "--status", "unsubscribed"]);
    assert_eq!(r.stdout.lines().count(), 2);
}

#[test]
fn the_example_file_imports() {
    let site = Site::new();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("subscribers/example.csv");
    let r = site.run(&["import", example.to_str().unwrap()]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "added 5, unchanged 0, skipped 0 (unsubscribed or bounced), invalid 0\n")
    );
}

fn big_csv(prefix: &str, n: usize) -> Vec<u8> {
    let mut s = String::from("email,name\n");
    for i in 0..n {
        s.push_str(&format!("{prefix}{i}@example.org,Reader {i}\n"));
    }
    s.into_bytes()
}

#[test]
fn concurrent_writers_all_succeed() {
    // Two imports large enough to need several transactions each, started together on a database
    // that does not exist yet (so the migrations race too), plus adds in between.
    let site = Site::new();
    let a = site.write("a.csv", &big_csv("a", 120_000));
    let b = site.write("b.csv", &big_csv("b", 120_000));
    let spawn = |file: &str| {
        site.command(&["import", file])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let import_a = spawn(&a);
    let import_b = spawn(&b);
    let adds: Vec<Run> = (0..5).map(|i| site.run(&["add", &format!("c{i}@example.org")])).collect();
    let ra = finish(import_a.wait_with_output().unwrap());
    let rb = finish(import_b.wait_with_output().unwrap());
    for (r, what) in [(&ra, "import a"), (&rb, "import b")] {
        assert_eq!(
            (r.code, r.stdout.as_str(), r.stderr.as_str()),
            (0, "added 120000, unchanged 0, skipped 0 (unsubscribed or bounced), invalid 0\n", ""),
            "{what}"
        );
    }
    for r in &adds {
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let r = site.run(&["list", "--format", "csv"]);
    assert_eq!(r.stdout.lines().count(), 1 + 240_005);
}

/// `email,themes,paused_until` of everyone, from `export` read as CSV by its header.
fn choices(site: &Site) -> Vec<(String, String, String)> {
    let r = site.run(&["export"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut rows = csv::Reader::from_reader(r.stdout.as_bytes());
    let header = rows.headers().unwrap().clone();
    let at = |name: &str| header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no `{name}` in {header:?}"));
    let (email, themes, paused) = (at("email"), at("themes"), at("paused_until"));
    rows.records()
        .map(|rec| {
            let rec = rec.unwrap();
            (rec[email].to_string(), rec[themes].to_string(), rec[paused].to_string())
        })
        .collect()
}

#[test]
fn themes_and_pauses_round_trip_through_export_and_import() {
    let site = Site::new();
    let file = site.write(
        "chosen.csv",
        "email,name,themes,paused_until\n\
         ada@example.org,Ada,\"open source;Energy transition; Open Source\",2099-01-01T00:00:00Z\n\
         bob@example.org,Bob,,\n\
         cy@example.org,Cy,\"Ünïcode; \"\"quoted\"\" theme\",2020-01-01T00:00:00Z\n"
            .as_bytes(),
    );
    let r = site.run(&["import", &file]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "added 3, unchanged 0, skipped 0 (unsubscribed or bounced), invalid 0\n")
    );
    site.run(&["remove", "cy@example.org"]);
    // Two spellings of one theme are one theme (the first kept), ordered by slug (`Ünïcode`'s is
    // `n-code-` and a hash: the feeds' rule keeps ASCII letters); a pause that ended is no pause.
    let expected = [
        ("ada@example.org", "Energy transition; open source", "2099-01-01T00:00:00Z"),
        ("bob@example.org", "", ""),
        ("cy@example.org", "Ünïcode; \"quoted\" theme", ""),
    ];
    let as_strings = |rows: &[(&str, &str, &str)]| -> Vec<(String, String, String)> {
        rows.iter().map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())).collect()
    };
    assert_eq!(choices(&site), as_strings(&expected));

    let exported = site.write("export.csv", site.run(&["export"]).stdout.as_bytes());
    let other = Site::new();
    let r = other.run(&["import", &exported]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "added 3, unchanged 0, skipped 0 (unsubscribed or bounced), invalid 0\n")
    );
    assert_eq!(choices(&other), as_strings(&expected));
    assert_eq!(other.statuses(), ["ada@example.org,active", "bob@example.org,active", "cy@example.org,unsubscribed"]);

    // The export edited and imported again: readers there take the file's themes (an empty cell
    // is every theme again); an unsubscribed reader stays as they were.
    let edited = other.write(
        "edited.csv",
        b"email,themes\nada@example.org,\nbob@example.org,Energy transition\ncy@example.org,Energy transition\n",
    );
    let r = other.run(&["import", &edited]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "added 0, updated 2, unchanged 0, skipped 1 (unsubscribed or bounced), invalid 0\n")
    );
    assert_eq!(
        choices(&other),
        as_strings(&[
            ("ada@example.org", "", "2099-01-01T00:00:00Z"),
            ("bob@example.org", "Energy transition", ""),
            ("cy@example.org", "Ünïcode; \"quoted\" theme", ""),
        ])
    );
}

#[test]
fn an_unusable_theme_list_is_refused_for_its_row_naming_line_and_column() {
    let site = Site::new();
    let too_many: Vec<String> = (0..101).map(|i| format!("theme {i}")).collect();
    let file = site.write(
        "themes.csv",
        format!(
            "email,name,themes\n\
             ada@example.org,Ada,Energy\n\
             bel@example.org,Bel,\"Energy\nBcc: x@example.org\"\n\
             cy@example.org,Cy,{}\n\
             dee@example.org,Dee,{}\n\
             eve@example.org,Eve,\"tab\there\"\n",
            too_many.join("; "),
            "y".repeat(300)
        )
        .as_bytes(),
    );
    let r = site.run(&["import", &file]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    let expected = [
        (3, "the theme \"Energy\\nBcc: x@example.org\" holds a control character", "bel@example.org"),
        (5, "101 themes were given; a reader can follow at most 100", "cy@example.org"),
        (6, "is longer than 200 characters", "dee@example.org"),
        (7, "the theme \"tab\\there\" holds a control character", "eve@example.org"),
    ];
    assert_eq!(lines.len(), expected.len() + 1, "{}", r.stdout);
    for (line, (number, why, address)) in lines.iter().zip(expected) {
        assert!(
            line.starts_with(&format!("{file}:{number}: in the `themes` column: "))
                && line.contains(why)
                && line.ends_with(&format!("(for {address})")),
            "expected line {number}: {why}\n got: {line}"
        );
        assert!(line.len() < file.len() + 250, "a refusal stays short: {line}");
    }
    assert_eq!(lines[4], "added 1, unchanged 0, skipped 0 (unsubscribed or bounced), invalid 4");
    assert_eq!(site.statuses(), ["ada@example.org,active"]);
}

#[test]
fn list_by_theme_matches_by_slug_and_says_who_follows_everything() {
    let site = Site::new();
    let file = site.write(
        "readers.csv",
        b"email,themes,status\n\
          ada@example.org,Open Source; Energy,\n\
          bob@example.org,,\n\
          cy@example.org,open-source,\n\
          dee@example.org,Energy,\n\
          eve@example.org,OPEN SOURCE,unsubscribed\n",
    );
    assert_eq!(site.run(&["import", &file]).code, 0);
    let emails = |args: &[&str]| -> Vec<String> {
        let r = site.run(&[&["list", "--format", "json"], args].concat());
        assert_eq!(r.code, 0, "{}", r.stderr);
        let json: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        json.as_array().unwrap().iter().map(|s| s["email"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(emails(&["--theme", "open source"]), ["ada@example.org", "cy@example.org", "eve@example.org"]);
    assert_eq!(emails(&["--theme", "Open-Source", "--status", "active"]), ["ada@example.org", "cy@example.org"]);
    assert_eq!(
        emails(&["--theme", "energy", "--with-everything"]),
        ["ada@example.org", "bob@example.org", "dee@example.org"]
    );
    assert_eq!(emails(&["--theme", "Public health"]), Vec::<String>::new());

    // The table: THEMES says `all` for everything, PAUSED `-`; the count says which theme.
    let r = site.run(&["list", "--theme", "energy", "--with-everything"]);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{}", r.stdout);
    let cells = |l: &str| l.split_whitespace().map(String::from).collect::<Vec<_>>();
    assert_eq!(cells(lines[2])[1..], ["bob@example.org", "active", "import", &cells(lines[2])[4], "-", "all"]);
    assert!(lines[1].ends_with("  -           Energy; Open Source"), "{}", lines[1]);
    assert_eq!(lines[4], "3 subscribers following the theme `energy` or every theme");
    let r = site.run(&["list", "--theme", "Public health", "--status", "active"]);
    assert_eq!(r.stdout, "no active subscribers following the theme `Public health`\n");
    // CSV lists by theme too.
    let r = site.run(&["list", "--theme", "ENERGY", "--format", "csv"]);
    assert_eq!(r.stdout.lines().count(), 3, "{}", r.stdout);

    for (args, why) in [
        (&["list", "--theme", " "][..], "--theme: the name is empty"),
        (&["list", "--theme", "a; b"][..], "--theme takes one theme"),
        (&["list", "--theme", "a\u{7}"][..], "control character"),
        (&["list", "--with-everything"][..], "--theme"),
    ] {
        let r = site.run(args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(why), "{args:?}: {}", r.stderr);
    }
}

#[test]
fn add_sets_and_changes_themes() {
    let site = Site::new();
    let r = site.run(&["add", "ada@example.org", "--themes", "Energy; open source"]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "added ada@example.org (active); follows the themes Energy; open source\n")
    );
    let r = site.run(&["add", "ADA@example.org", "--themes", "energy;Open Source"]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "ada@example.org is already active; follows the themes energy; Open Source\n"),
        "a new spelling is stored"
    );
    let r = site.run(&["add", "ada@example.org", "--themes", "energy;Open Source"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "ada@example.org is already active; nothing changed\n"));
    let r = site.run(&["add", "ada@example.org", "--themes", ""]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "ada@example.org is already active; follows every theme\n"));
    site.run(&["add", "bob@example.org"]);
    site.run(&["remove", "bob@example.org"]);
    let r = site.run(&["add", "bob@example.org", "--themes", "Energy"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let r = site.run(&["add", "bob@example.org", "--themes", "Energy", "--reactivate"]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "bob@example.org was unsubscribed; active again; follows the theme Energy\n")
    );
    assert_eq!(
        choices(&site),
        [
            ("ada@example.org".into(), String::new(), String::new()),
            ("bob@example.org".into(), "Energy".into(), String::new())
        ]
    );
    let r = site.run(&["add", "cy@example.org", "--themes", &"z".repeat(201)]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--themes: the theme") && r.stderr.contains("longer than 200"), "{}", r.stderr);
}
