//! The publication model as a user meets it: which issues the archive and the feeds hold, the
//! numbers they carry and that those never move, `check` as the send-readiness check, `init`,
//! and `serve` for local viewing. The built binary, a temporary project, files read back.

mod common;

use std::path::Path;

use common::Project;

/// (number, issue id) of every issue on the archive's front page, oldest first.
fn index_numbers(p: &Project) -> Vec<(u32, String)> {
    let html = std::fs::read_to_string(p.path("out/index.html")).unwrap();
    let mut out: Vec<(u32, String)> = html
        .split("<li><a href=\"")
        .skip(1)
        .filter(|li| li.contains("/issues/"))
        .map(|li| {
            let id = li.split("/issues/").nth(1).unwrap().split('/').next().unwrap().to_string();
            let number = li.split_once(">#").unwrap().1.split(':').next().unwrap().parse().unwrap();
            (number, id)
        })
        .collect();
    out.reverse();
    out
}

/// Every week of the repository's digests, in week order.
const WEEKS: [&str; 10] = [
    "2023-06-05",
    "2023-06-12",
    "2023-06-19",
    "2023-06-26",
    "2023-07-03",
    "2023-07-10",
    "2023-07-17",
    "2023-07-24",
    "2023-08-07",
    "2023-08-14",
];

fn assert_numbered_in_week_order(p: &Project) {
    let expected: Vec<(u32, String)> = WEEKS.iter().enumerate().map(|(i, w)| (i as u32 + 1, w.to_string())).collect();
    assert_eq!(index_numbers(p), expected);
}

#[test]
fn sending_an_old_week_first_moves_no_number() {
    let p = Project::new("");
    p.import_readers(2);
    let out = p.expect(0, &["send", "--week", "2023-07-17"]);
    assert!(out.contains("issue #7 (17–23 July 2023): 2 messages sent"), "{out}");
    p.expect(0, &["build", "--all"]);
    assert_numbered_in_week_order(&p);
    // The subject readers got carries the same number.
    let eml = std::fs::read_dir(p.path("outbox")).unwrap().next().unwrap().unwrap().path();
    assert!(std::fs::read_to_string(eml).unwrap().contains("Subject: Signals Weekly #7: "));
}

#[test]
fn sending_the_latest_week_first_moves_no_number() {
    let p = Project::new("");
    p.import_readers(1);
    let out = p.expect(0, &["send", "--week", "2023-08-14"]);
    assert!(out.contains("issue #10 (14–20 August 2023)"), "{out}");
    p.expect(0, &["build"]);
    assert_numbered_in_week_order(&p);
}

#[test]
fn a_round_publishes_only_the_weeks_that_are_due() {
    let p = Project::new("");
    let out = p.run(&["run", "--once", "--now", "2023-07-24T08:05:00+01:00"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // Due: every week up to that of 17 July (its fire time was 08:00). Not due: 24 July onwards.
    assert_eq!(
        index_numbers(&p),
        WEEKS[..7].iter().enumerate().map(|(i, w)| (i as u32 + 1, w.to_string())).collect::<Vec<_>>()
    );
    for week in &WEEKS[7..] {
        assert!(!p.path(&format!("out/issues/{week}")).exists(), "{week} is not due");
    }
    let mut feeds = vec![p.path("out/rss.xml"), p.path("out/atom.xml"), p.path("out/feed.json")];
    feeds.extend(std::fs::read_dir(p.path("out/themes")).unwrap().map(|e| e.unwrap().path().join("atom.xml")));
    for feed in &feeds {
        let text = std::fs::read_to_string(feed).unwrap();
        for week in &WEEKS[7..] {
            assert!(!text.contains(&format!("issues/{week}/")), "{} links {week}, which is not due", feed.display());
        }
    }
    let atom = std::fs::read_to_string(p.path("out/atom.xml")).unwrap();
    assert_eq!(atom.matches("<entry>").count(), 7);
    // The drafts are there for the editor, outside what is served.
    p.expect(0, &["build", "--drafts", "--now", "2023-07-24T08:05:00+01:00"]);
    assert!(p.path("drafts/issues/2023-08-14/index.html").exists());
    assert!(!p.path("out/issues/2023-08-14").exists());
    // A week later the next one is published, and only it is new.
    let out = p.run(&["run", "--once", "--now", "2023-07-31T08:05:00+01:00"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(index_numbers(&p).last(), Some(&(8, "2023-07-24".to_string())));
}

#[test]
fn a_digest_added_to_an_old_empty_week_gets_the_next_free_number() {
    let p = Project::with_own_digests("");
    p.expect(0, &["build"]);
    assert_numbered_in_week_order(&p);
    // The week of 31 July 2023 had no digests; one arrives after every later week was published.
    let seed = std::fs::read_to_string(p.path("digests/000_86102eed948879ef.txt")).unwrap();
    std::fs::write(p.path("digests/099_abcdefabcdefabcd.txt"), seed.replacen("[20230723]", "[20230802]", 1)).unwrap();
    let out = p.expect(0, &["build"]);
    assert!(out.contains("published #11 31 July – 6 August 2023"), "{out}");
    let mut expected: Vec<(u32, String)> =
        WEEKS.iter().enumerate().map(|(i, w)| (i as u32 + 1, w.to_string())).collect();
    expected.insert(8, (11, "2023-07-31".into()));
    assert_eq!(index_numbers(&p), expected);
}

#[test]
fn an_edit_to_a_published_issue_updates_its_feed_entry_not_its_number() {
    let p = Project::with_own_digests("");
    // Publishes all ten weeks at once: #7 is dated 3 s before the moment, as #8, #9 and #10 follow it.
    p.expect(0, &["build", "--now", "2024-01-01T00:00:00Z"]);
    let entry = |atom: &str| -> String {
        let id = atom.find("issue-2023-07-17").unwrap();
        let start = atom[..id].rfind("<entry>").unwrap();
        atom[start..].split("</entry>").next().unwrap().to_string()
    };
    let before = entry(&std::fs::read_to_string(p.path("out/atom.xml")).unwrap());
    assert!(before.contains("<updated>2023-12-31T23:59:57+00:00</updated>"), "{before}");
    let path = p.path("digests/000_86102eed948879ef.txt");
    let seed = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, seed.replacen("## Summary\n\n", "## Summary\n\nCorrected: ", 1)).unwrap();
    p.expect(0, &["build", "--now", "2026-01-05T10:00:00Z"]);
    let after = entry(&std::fs::read_to_string(p.path("out/atom.xml")).unwrap());
    assert!(after.contains("<updated>2026-01-05T10:00:00+00:00</updated>"), "{after}");
    assert!(after.contains("<published>2023-12-31T23:59:57+00:00</published>"), "{after}");
    assert!(after.contains("Signals Weekly #7: 17–23 July 2023"), "{after}");
    assert_numbered_in_week_order(&p);
}

#[test]
fn build_exits_1_when_it_left_a_digest_out() {
    let p = Project::with_own_digests("");
    let path = p.path("digests/000_86102eed948879ef.txt");
    std::fs::write(&path, std::fs::read_to_string(&path).unwrap().replace("## Summary", "## Sumary")).unwrap();
    let out = p.run(&["build", "--all"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("000_86102eed948879ef.txt:7:") && stderr.contains("left out"), "{stderr}");
    // The other issues are built all the same.
    assert!(p.path("out/issues/2023-08-14/index.html").exists());
}

/// `check` and `send` on the same project: `check` names the cause and exits `code`; `send`
/// refuses with the same cause.
fn check_and_send_refuse(p: &Project, env: &[(&str, &str)], code: i32, cause: &str) {
    let mut check = p.command(&["check"]);
    check.envs(env.iter().copied());
    let out = check.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(code), "check: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(cause), "check does not name `{cause}`:\n{stdout}");
    let mut send = p.command(&["send", "--week", "2023-07-17"]);
    send.envs(env.iter().copied());
    let out = send.output().unwrap();
    assert_ne!(out.status.code(), Some(0), "send went ahead");
    assert!(String::from_utf8_lossy(&out.stderr).contains(cause), "send: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn check_finds_what_send_would_refuse() {
    // A clean project is ready.
    let p = Project::new("");
    let out = p.expect(0, &["check"]);
    assert!(out.trim_end().ends_with("61 digests, 10 issues, 0 problems"), "{out}");

    // A text part without the unsubscribe link.
    let p = Project::new("");
    std::fs::create_dir(p.path("templates")).unwrap(); // [paths] templates, by default
    std::fs::write(p.path("templates/email.txt"), "{{ issue.label }}\n").unwrap();
    check_and_send_refuse(&p, &[], 2, "email.txt: the unsubscribe link is missing");

    // A DKIM key that cannot be read.
    let p = Project::new(
        "[dkim]\ndomain = \"signals.example.org\"\nselector = \"gazette\"\nprivate_key = \"missing.pem\"\n",
    );
    p.import_readers(1);
    check_and_send_refuse(&p, &[], 2, "[dkim] private_key: cannot read");

    // A token secret too short to sign unsubscribe links safely.
    let p = Project::new("");
    p.import_readers(1);
    check_and_send_refuse(&p, &[("GAZETTE_SECRET", "short")], 2, "GAZETTE_SECRET: the secret is 5 bytes long");

    // A password that is not there.
    let p = Project::new("[smtp]\nurl = \"smtp://127.0.0.1:2525\"\nusername = \"news\"\n");
    check_and_send_refuse(&p, &[], 2, "GAZETTE_SMTP_PASSWORD is not set");

    // A broken digest: a content problem; the send of its own week is refused, naming it.
    let p = Project::with_own_digests("");
    let path = p.path("digests/000_86102eed948879ef.txt");
    std::fs::write(&path, std::fs::read_to_string(&path).unwrap().replace("## Summary", "## Sumary")).unwrap();
    check_and_send_refuse(&p, &[], 1, "000_86102eed948879ef.txt:7:");
    // ... and only its own week: another week's send goes out.
    p.import_readers(1);
    let out = p.expect(0, &["send", "--week", "2023-08-14"]);
    assert!(out.contains("1 messages sent now"), "{out}");
}

#[test]
fn init_writes_a_project_that_checks_clean_and_states_every_default() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("letters");
    let run = |args: &[&str], cwd: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_gazette"))
            .args(args)
            .current_dir(cwd)
            .env_remove("GAZETTE_CONFIG")
            .output()
            .unwrap()
    };
    let out = run(&["init", target.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let written = std::fs::read_to_string(target.join("publish.toml")).unwrap();
    // The file init writes, the repository's own publish.toml and the README's copy are one text.
    let defaults = std::fs::read_to_string(common::repo().join("src/publish.default.toml")).unwrap();
    assert_eq!(written, defaults);
    assert_eq!(std::fs::read_to_string(common::repo().join("publish.toml")).unwrap(), defaults);
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    let indented: String =
        defaults.lines().map(|l| if l.is_empty() { "\n".to_string() } else { format!("    {l}\n") }).collect();
    assert!(
        readme.contains(&indented),
        "README.md's publish.toml section is not src/publish.default.toml indented by four spaces"
    );
    // Every key is stated: the file and no file at all configure the same thing.
    let from_file = gazette::Config::load(&target.join("publish.toml")).unwrap();
    let embedded = gazette::Config::embedded_defaults(&target);
    assert_eq!(format!("{:?}", gazette::Config { source: None, ..from_file }), format!("{embedded:?}"));
    for template in ["email.mjml", "email.txt", "issue.html", "index.html", "_layout.html", "_digest.html", "page.html"]
    {
        assert!(target.join("templates").join(template).is_file(), "{template}");
    }
    // It checks clean as it is, and builds its example issue.
    let out = run(&["check"], &target);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The example is a draft, never published (tests/issues.rs follows it further).
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 digest, 1 issue (0 published, 1 draft), 0 problems"));
    // A second init writes nothing over the editor's files.
    std::fs::write(target.join("publish.toml"), "# mine\n").unwrap();
    let out = run(&["init", target.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds a project"));
    assert_eq!(std::fs::read_to_string(target.join("publish.toml")).unwrap(), "# mine\n");
}

#[test]
fn completions_cover_every_command() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gazette")).args(["completions", "bash"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let script = String::from_utf8_lossy(&out.stdout);
    assert!(script.contains("complete -F _gazette"), "{script}");
    for command in ["init", "check", "build", "preview", "send", "status", "run", "serve", "subscribers", "completions"]
    {
        assert!(script.contains(&format!("gazette,{command})")), "{command} is missing");
    }
    assert!(script.contains("--drafts") && script.contains("--behind-proxy"));
}

/// GETs `path` from a `gazette serve` on `port`, waiting for it to listen.
fn fetch(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut stream = loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "serve did not listen: {e}");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    };
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    reply
}

#[test]
fn serve_points_links_at_itself_unless_behind_a_proxy() {
    let p = Project::new("");
    for (flags, expect_local) in [(&[][..], true), (&["--behind-proxy"][..], false)] {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["serve", "--listen", &listen];
        args.extend_from_slice(flags);
        let mut child =
            p.command(&args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
        let index = fetch(port, "/");
        let atom = fetch(port, "/atom.xml");
        child.kill().unwrap();
        child.wait().unwrap();
        let local = format!("http://{listen}/issues/2023-07-17/");
        let public = "https://signals.example.org/issues/2023-07-17/";
        let (want, other) = if expect_local { (local.as_str(), public) } else { (public, local.as_str()) };
        for (name, body) in [("index", &index), ("atom.xml", &atom)] {
            assert!(body.contains(want) && !body.contains(other), "{flags:?} {name}:\n{body}");
        }
        // Feed ids never change with where the archive is looked at.
        assert!(atom.contains("<id>tag:signals.example.org,2023:issue-2023-07-17</id>"), "{atom}");
    }
    // The files on disk keep the public address.
    assert!(
        std::fs::read_to_string(p.path("out/index.html"))
            .unwrap()
            .contains("https://signals.example.org/issues/2023-07-17/")
    );
}

#[test]
fn an_issues_feed_date_is_the_moment_it_was_published() {
    let p = Project::new("");
    // The first build publishes every week due at 08:05 London time on 24 July (up to 17–23 July);
    // the second, a week later, publishes the week of 24 July alone.
    p.expect(0, &["build", "--now", "2023-07-24T08:05:00+01:00"]);
    p.expect(0, &["build", "--now", "2023-07-31T08:05:00+01:00"]);
    let (first, second) = ("2023-07-24T07:05:00+00:00", "2023-07-31T07:05:00+00:00");

    let rss = std::fs::read_to_string(p.path("out/rss.xml")).unwrap();
    let rss = feed_rs::parser::parse(rss.as_bytes()).unwrap();
    let atom = feed_rs::parser::parse(std::fs::read_to_string(p.path("out/atom.xml")).unwrap().as_bytes()).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.path("out/feed.json")).unwrap()).unwrap();
    // The issues published together by the first build are a second apart, in number order, so
    // that feed readers keep their order: #7 (17 July) at the moment itself, #6 a second before...
    let weeks = ["2023-06-05", "2023-06-12", "2023-06-19", "2023-06-26", "2023-07-03", "2023-07-10", "2023-07-17"];
    let at = |t: &str, before: i64| {
        (chrono::DateTime::parse_from_rfc3339(t).unwrap() - chrono::Duration::seconds(before)).to_rfc3339()
    };
    let when = |id: &str| match weeks.iter().position(|w| id.ends_with(&format!("issue-{w}"))) {
        Some(k) => at(first, (weeks.len() - 1 - k) as i64),
        None if id.ends_with("issue-2023-07-24") => second.to_string(),
        None => panic!("an unexpected issue {id}"),
    };
    assert_eq!(when("issue-2023-07-17"), first);
    assert!(
        rss.entries.len() >= 2 && rss.entries.iter().any(|e| e.id.ends_with("issue-2023-07-24")),
        "{:?}",
        rss.entries.iter().map(|e| &e.id).collect::<Vec<_>>()
    );
    for e in &rss.entries {
        assert_eq!(e.published.unwrap().to_rfc3339(), when(&e.id), "RSS pubDate of {}", e.id);
    }
    for e in &atom.entries {
        assert_eq!(e.published.unwrap().to_rfc3339(), when(&e.id), "Atom published of {}", e.id);
        assert_eq!(e.updated.unwrap().to_rfc3339(), when(&e.id), "Atom updated of {}", e.id);
    }
    for item in json["items"].as_array().unwrap() {
        let id = item["id"].as_str().unwrap();
        assert_eq!(
            item["date_published"].as_str().unwrap(),
            when(id).replace("+00:00", "Z"),
            "JSON Feed date_published of {id}"
        );
    }
    assert_eq!(atom.updated.unwrap().to_rfc3339(), second, "the feed's own date is its newest issue's");
}
