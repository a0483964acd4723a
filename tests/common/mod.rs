//! What the integration tests share: a project folder with its own publish.toml, the built binary,
//! and a real SMTP server (Postfix's smtp-sink from ../shared/tools) that dumps what it receives;
//! `relay` is the TLS and AUTH relay (tests/relay.py) with a test CA.
#![allow(dead_code)]

pub mod dovecot;
pub mod postgres;
pub mod relay;
pub mod web;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The store a test's projects use: the default SQLite file, or a fresh database of this test
/// process's PostgreSQL cluster. Set per test thread by `on_store` (the `on_both_stores!` tests).
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Store {
    Sqlite,
    Postgres,
}

thread_local! {
    static STORE: std::cell::Cell<Store> = const { std::cell::Cell::new(Store::Sqlite) };
}

/// Runs `test` with its projects on `store`. Without PostgreSQL installed, its variant is skipped
/// (it fails under CI, where .ci/run installs it).
pub fn on_store(store: Store, test: impl FnOnce()) {
    if store == Store::Postgres && !postgres::available() {
        return;
    }
    STORE.set(store);
    test();
}

/// Defines each test twice, in a module `sqlite` and a module `postgres`: the same scenario against
/// each store (`Project::new` picks the database).
#[macro_export]
macro_rules! on_both_stores {
    ($($(#[$meta:meta])* fn $name:ident() $body:block)*) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $( $(#[$meta])* #[test] fn $name() { $crate::common::on_store($crate::common::Store::Sqlite, || $body) } )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $( $(#[$meta])* #[test] fn $name() { $crate::common::on_store($crate::common::Store::Postgres, || $body) } )*
        }
    };
}

/// True when this test's projects keep their data in SQLite.
pub fn on_sqlite() -> bool {
    STORE.get() == Store::Sqlite
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A temporary project: the repo's example digests, a database and an outbox of its own.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    /// `extra` is appended to publish.toml (for example an [smtp] section).
    pub fn new(extra: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        let toml = format!(
            "[site]\ntitle = \"Signals Weekly\"\nbase_url = \"https://signals.example.org\"\n\n\
             [paths]\ndigests = {:?}\nout = \"out\"\ndatabase = \"db/gazette.db\"\n\n\
             [email]\nfrom = \"Signals Weekly <newsletter@signals.example.org>\"\neditor = \"editor@example.org\"\n\n{extra}",
            repo().join("digests").display().to_string()
        );
        let toml = match STORE.get() {
            Store::Sqlite => toml,
            Store::Postgres => {
                let url = postgres::Cluster::shared().fresh_database();
                toml.replace("database = \"db/gazette.db\"", &format!("database = \"{url}\""))
            }
        };
        std::fs::write(dir.path().join("publish.toml"), toml).unwrap();
        Project { dir }
    }

    /// As `new`, with a copy of the repository's digests in `digests/` that a test may change.
    pub fn with_own_digests(extra: &str) -> Project {
        let p = Project::new(extra);
        let digests = p.path("digests");
        std::fs::create_dir(&digests).unwrap();
        for e in std::fs::read_dir(repo().join("digests")).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), digests.join(e.file_name())).unwrap();
        }
        let toml = std::fs::read_to_string(p.path("publish.toml")).unwrap();
        let toml: Vec<String> = toml
            .lines()
            .map(|l| if l.starts_with("digests = ") { "digests = \"digests\"".to_string() } else { l.to_string() })
            .collect();
        std::fs::write(p.path("publish.toml"), toml.join("\n")).unwrap();
        p
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_gazette"));
        c.arg("--config")
            .arg(self.path("publish.toml"))
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("GAZETTE_CONFIG");
        c.env("GAZETTE_SECRET", "test-secret-0123456789abcdef0123456789");
        // These projects use signals.example.org and relay to smtp-sink: a rehearsal, which the
        // placeholder rule lets through only when told (tests/readiness.rs tests the rule itself).
        c.env("GAZETTE_ALLOW_PLACEHOLDERS", "1");
        c.env("GAZETTE_DATABASE_PASSWORD", postgres::PASSWORD);
        c
    }

    /// Points `[smtp] url` at `to` instead of `from` (a server that recovered, say).
    pub fn move_smtp(&self, from: &Sink, to: &Sink) {
        let toml = std::fs::read_to_string(self.path("publish.toml")).unwrap();
        std::fs::write(self.path("publish.toml"), toml.replace(&from.port.to_string(), &to.port.to_string())).unwrap();
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("gazette runs")
    }

    /// Runs and requires exit code `code`; returns stdout.
    pub fn expect(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "gazette {args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
        stdout
    }

    /// Imports `n` subscribers reader0000@example.org ... and returns their addresses.
    pub fn import_readers(&self, n: usize) -> Vec<String> {
        let emails: Vec<String> = (0..n).map(|i| format!("reader{i:04}@example.org")).collect();
        let mut csv = String::from("email,name\n");
        for (i, e) in emails.iter().enumerate() {
            csv.push_str(&format!("{e},Reader {i}\n"));
        }
        let file = self.path("readers.csv");
        std::fs::write(&file, csv).unwrap();
        self.expect(0, &["subscribers", "import", file.to_str().unwrap()]);
        emails
    }
}

/// Checks that every one of `readers` got the issue, under one Message-ID each that went to that
/// reader alone (a resend carries the same one), and returns how many messages came twice.
pub fn everyone_once_per_message_id(got: &[Received], readers: &[String]) -> usize {
    let mut by_id: std::collections::HashMap<&str, Vec<&str>> = std::collections::HashMap::new();
    for m in got {
        by_id.entry(m.message_id.as_str()).or_default().push(m.rcpt.as_str());
    }
    let rcpts: std::collections::HashSet<&str> = got.iter().map(|m| m.rcpt.as_str()).collect();
    assert_eq!(rcpts.len(), readers.len(), "every subscriber got the issue");
    assert!(readers.iter().all(|r| rcpts.contains(r.as_str())));
    assert_eq!(by_id.len(), readers.len(), "one Message-ID per subscriber, the same on a resend");
    for (id, to) in &by_id {
        assert!(to.iter().all(|r| r == &to[0]), "{id} went to one subscriber: {to:?}");
    }
    got.len() - readers.len()
}

/// A loopback port nothing listens on (now).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running smtp-sink on a free loopback port; killed when dropped.
pub struct Sink {
    child: Child,
    pub port: u16,
    pub dump: tempfile::TempDir,
}

impl Sink {
    /// `options` are smtp-sink's own, such as `["-r", "rcpt"]`.
    pub fn start(options: &[&str]) -> Sink {
        Sink::start_on(free_port(), options)
    }

    /// As `start`, on `port` (a server that comes back where it was).
    pub fn start_on(port: u16, options: &[&str]) -> Sink {
        let dump = tempfile::tempdir().unwrap();
        let tool = repo().join("../shared/tools/smtp-sink");
        let child = Command::new(&tool)
            .args(options)
            .arg("-d")
            .arg(format!("{}/", dump.path().display()))
            .arg(format!("127.0.0.1:{port}"))
            .arg("256")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", tool.display()));
        let deadline = Instant::now() + Duration::from_secs(120); // the first start unpacks Postfix
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "smtp-sink did not start listening on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Sink { child, port, dump }
    }

    pub fn smtp_config(&self) -> String {
        format!("[smtp]\nurl = \"smtp://127.0.0.1:{}?tls=none\"\nconcurrency = 4\n", self.port)
    }

    /// Every message received so far, parsed into (recipient, message-id, subject, raw text).
    pub fn messages(&self) -> Vec<Received> {
        read_messages(self.dump.path())
    }

    /// How many messages have arrived (or are arriving) so far, without reading them.
    pub fn count(&self) -> usize {
        std::fs::read_dir(self.dump.path())
            .unwrap()
            .filter(|e| e.as_ref().is_ok_and(|e| !e.file_name().to_string_lossy().starts_with('.')))
            .count()
    }

    /// Waits (60 s at most) until `n` messages have arrived: a send is under way.
    pub fn wait_for(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.count() < n {
            assert!(Instant::now() < deadline, "the send did not get going: {} of {n} messages", self.count());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The issue messages received whole: a sender killed mid-message leaves a partial dump behind,
    /// and every issue message ends with its closing MIME boundary.
    pub fn whole_messages(&self) -> Vec<Received> {
        self.messages().into_iter().filter(|m| m.raw.trim_end().ends_with("--")).collect()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone)]
pub struct Received {
    pub rcpt: String,
    pub message_id: String,
    pub subject: String,
    pub raw: String,
}

pub fn header<'a>(raw: &'a str, name: &str) -> Option<&'a str> {
    let head = &raw[..raw.find("\r\n\r\n").or_else(|| raw.find("\n\n")).unwrap_or(raw.len())];
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

pub fn read_messages(dir: &Path) -> Vec<Received> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with('.') {
            continue;
        }
        // smtp-sink writes a dump while the transaction runs: a file may vanish or be cut short
        // between listing and reading; read what is there.
        let Ok(bytes) = std::fs::read(&path) else { continue };
        let raw = String::from_utf8_lossy(&bytes).into_owned();
        // `<address>` and, with DSN asked for, its parameters after a space.
        let rcpt = header(&raw, "X-Rcpt-Args")
            .map(|v| v.split_whitespace().next().unwrap_or("").trim_matches(['<', '>']).to_string())
            .or_else(|| header(&raw, "To").map(str::to_string))
            .unwrap_or_default();
        out.push(Received {
            rcpt,
            message_id: header(&raw, "Message-ID").unwrap_or_default().to_string(),
            subject: header(&raw, "Subject").unwrap_or_default().to_string(),
            raw,
        });
    }
    out
}

/// Python with the given modules, if the machine has it (CI installs them).
pub fn python_with(modules: &[&str]) -> Option<&'static str> {
    let check = if modules.is_empty() { "pass".to_string() } else { format!("import {}", modules.join(", ")) };
    let ok = Command::new("python3").args(["-c", &check]).output().map(|o| o.status.success()).unwrap_or(false);
    if ok { Some("python3") } else { None }
}

/// Whether a test can use a tool it needs: `present` as given, after saying the test skipped when
/// it is false. When `CI` is set a missing tool is a failure instead, since .ci/run installs every
/// tool the tests use: a test that needs one never passes there without running.
pub fn needs(present: bool, what: &str) -> bool {
    if !present {
        assert!(std::env::var_os("CI").is_none(), "{what} is needed for this test; .ci/run installs it");
        eprintln!("skipped: {what} is missing");
    }
    present
}

/// Python with the given modules, through `needs`: `None` (after saying so) when it is missing.
pub fn needs_python(modules: &[&str]) -> Option<&'static str> {
    let python = python_with(modules);
    let what = match modules {
        [] => "python3".to_string(),
        _ => format!("python3 with {}", modules.join(", ")),
    };
    needs(python.is_some(), &what).then_some("python3")
}

/// The shared script that writes a digest corpus (../shared/corpus/gen_digests.py), run into a
/// fresh folder with `args`. `None` (after saying so) without python3 or the script; once both
/// are there the generator must succeed.
pub fn generated_corpus(args: &[&str]) -> Option<tempfile::TempDir> {
    let script = repo().join("../shared/corpus/gen_digests.py");
    if !needs(script.is_file(), &script.display().to_string()) {
        return None;
    }
    let python = needs_python(&[])?;
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(python).arg(&script).arg(dir.path()).args(args).output().expect("python3 runs");
    assert!(out.status.success(), "{} {args:?} failed: {}", script.display(), String::from_utf8_lossy(&out.stderr));
    Some(dir)
}

/// Every file under `dir` with its bytes and modification time: what "a dry run writes nothing"
/// is checked against.
pub fn tree(dir: &Path) -> std::collections::BTreeMap<String, (Vec<u8>, std::time::SystemTime)> {
    let mut files = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                let name = e.path().strip_prefix(dir).unwrap().display().to_string();
                files.insert(name, (std::fs::read(e.path()).unwrap(), meta.modified().unwrap()));
            }
        }
    }
    files
}

/// A digest as its file says, read with a few lines of text handling (not with Gazette's parser,
/// which is what the tests check): its date, external link and themes.
#[allow(dead_code)] // each test binary uses its own part of this module
pub struct DigestFacts {
    pub date: chrono::NaiveDate,
    pub link: String,
    pub themes: Vec<String>,
}

/// Every digest in `dir` (files in the seed's format).
#[allow(dead_code)]
pub fn digest_facts(dir: &Path) -> Vec<DigestFacts> {
    let mut digests = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let text = text.trim_start_matches('\u{feff}').replace("\r\n", "\n");
        let date = text
            .lines()
            .next()
            .and_then(|l| l.split_once("from (["))
            .and_then(|(_, rest)| chrono::NaiveDate::parse_from_str(rest.get(..8)?, "%Y%m%d").ok())
            .expect("a digest's first line gives its date");
        let link = text
            .lines()
            .find_map(|l| l.strip_prefix("__[External link](").and_then(|r| r.strip_suffix(")__")))
            .expect("a digest has an external link")
            .to_string();
        let mut themes = Vec::new();
        let mut in_themes = false;
        for line in text.lines() {
            if line.starts_with("## ") {
                in_themes = line.trim() == "## Themes";
            } else if in_themes && let Some(t) = line.strip_prefix("* ") {
                themes.push(t.trim().to_string());
            }
        }
        digests.push(DigestFacts { date, link, themes });
    }
    digests
}
