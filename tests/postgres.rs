//! The PostgreSQL store, against a real throwaway cluster (tests/common/postgres.rs) and a real
//! SMTP sink: the same commands as on SQLite, several senders sharing one issue (one killed with
//! SIGKILL), two schedulers at one fire time, and `store copy` of a half-finished send.

mod common;

use std::collections::HashSet;
use std::process::{Child, Stdio};

use common::postgres::{self, Cluster};
use common::{Project, Sink};

const WEEK: &str = "2023-07-23";

/// A project whose `[paths] database` is a new database of `cluster`.
fn project(cluster: &Cluster, name: &str, extra: &str) -> Project {
    let p = Project::new(extra);
    let url = cluster.database(name);
    let toml = std::fs::read_to_string(p.path("publish.toml")).unwrap();
    std::fs::write(
        p.path("publish.toml"),
        toml.replace("database = \"db/gazette.db\"", &format!("database = \"{url}\"")),
    )
    .unwrap();
    p
}

/// `Project::command` gives every command the cluster's password.
fn gazette(p: &Project, args: &[&str]) -> std::process::Command {
    p.command(args)
}

fn expect(p: &Project, code: i32, args: &[&str]) -> String {
    let out = gazette(p, args).output().unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert_eq!(out.status.code(), Some(code), "gazette {args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    stdout
}

fn status(p: &Project) -> serde_json::Value {
    serde_json::from_str(&expect(p, 0, &["status", "--week", WEEK, "--json"])).unwrap()
}

fn import_readers(p: &Project, n: usize) -> Vec<String> {
    let emails: Vec<String> = (0..n).map(|i| format!("reader{i:04}@example.org")).collect();
    let csv: String = std::iter::once("email,name\n".to_string())
        .chain(emails.iter().enumerate().map(|(i, e)| format!("{e},Reader {i}\n")))
        .collect();
    std::fs::write(p.path("readers.csv"), csv).unwrap();
    let out = expect(p, 0, &["subscribers", "import", p.path("readers.csv").to_str().unwrap()]);
    assert!(out.contains(&format!("added {n},")), "{out}");
    emails
}

fn spawn(p: &Project, args: &[&str]) -> Child {
    gazette(p, args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
}

#[test]
fn subscribers_and_their_statuses_work_as_on_sqlite() {
    if !postgres::available() {
        return;
    }
    let cluster = Cluster::start();
    let p = project(&cluster, "subscribers", "");
    // Without the password the server refuses, and the error says which database.
    let out = p.command(&["subscribers", "list"]).env_remove("GAZETTE_DATABASE_PASSWORD").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot open the subscriber database postgres://gazette@127.0.0.1")
            && stderr.contains("password authentication failed")
            && stderr.contains("GAZETTE_DATABASE_PASSWORD"),
        "{stderr}"
    );
    // A password file in libpq's format does instead (here named by PGPASSFILE rather than ~/.pgpass).
    let pgpass = p.path("pgpass");
    std::fs::write(&pgpass, format!("127.0.0.1:{}:subscribers:gazette:{}\n", cluster.port, postgres::PASSWORD))
        .unwrap();
    std::fs::set_permissions(&pgpass, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = p
        .command(&["subscribers", "list"])
        .env_remove("GAZETTE_DATABASE_PASSWORD")
        .env("PGPASSFILE", &pgpass)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    import_readers(&p, 300);
    // The same file again adds nobody.
    let again = expect(&p, 0, &["subscribers", "import", p.path("readers.csv").to_str().unwrap()]);
    assert!(again.contains("added 0, unchanged 300"), "{again}");
    expect(&p, 0, &["subscribers", "add", "Reader.Extra@Example.org", "--name", "Extra Reader"]);
    expect(&p, 0, &["subscribers", "remove", "reader0007@example.org"]);
    let list = expect(&p, 0, &["subscribers", "list", "--status", "unsubscribed"]);
    assert!(list.contains("reader0007@example.org") && !list.contains("reader0008"), "{list}");
    // A second add of the same address, in another case, is the same subscriber.
    let dup = expect(&p, 0, &["subscribers", "add", "reader.extra@example.org"]);
    assert!(dup.contains("already"), "{dup}");
    let all = expect(&p, 0, &["subscribers", "list"]);
    assert_eq!(all.lines().filter(|l| l.contains("@example.org") || l.contains("@Example.org")).count(), 301, "{all}");

    // A send: the unsubscribed reader is not in the audience; status counts what went.
    let sink = Sink::start(&[]);
    let p2 = {
        let toml = std::fs::read_to_string(p.path("publish.toml")).unwrap();
        std::fs::write(p.path("publish.toml"), format!("{toml}\n{}", sink.smtp_config())).unwrap();
        &p
    };
    expect(p2, 0, &["send", "--week", WEEK]);
    let got = sink.messages();
    assert_eq!(got.len(), 300);
    assert!(got.iter().all(|m| m.rcpt != "reader0007@example.org"));
    let s = status(p2);
    assert_eq!((s["sent"].as_i64(), s["pending"].as_i64()), (Some(300), Some(0)), "{s}");
    // A second send of the issue sends nothing.
    let out = expect(p2, 0, &["send", "--week", WEEK]);
    assert!(out.contains("already"), "{out}");
    assert_eq!(sink.messages().len(), 300);

    // Themes and pauses through COPY: a new reader takes the file's, readers there take them
    // unless unsubscribed, and an export reads back the same.
    std::fs::write(
        p.path("themes.csv"),
        "email,themes,paused_until
\
         themed@example.org,\"Energy transition; tab\\there; Open Source\",2099-01-01T00:00:00Z\n\
         reader0001@example.org,open source,\n\
         reader0007@example.org,Open Source,\n\
         reader0002@example.org,\"bad\nline\",\n",
    )
    .unwrap();
    let out = gazette(&p, &["subscribers", "import", p.path("themes.csv").to_str().unwrap()]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("themes.csv:5: in the `themes` column: the theme \"bad\\nline\" holds a control character"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("added 1, updated 1, unchanged 0, skipped 1 (unsubscribed or bounced), invalid 1\n"),
        "{stdout}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&expect(&p, 0, &["subscribers", "list", "--theme", "OPEN-SOURCE", "--format", "json"]))
            .unwrap();
    let listed: Vec<(&str, &serde_json::Value)> =
        json.as_array().unwrap().iter().map(|s| (s["email"].as_str().unwrap(), &s["themes"])).collect();
    assert_eq!(
        listed,
        [
            ("reader0001@example.org", &serde_json::json!(["open source"])),
            ("themed@example.org", &serde_json::json!(["Energy transition", "Open Source", "tab\\there"])),
        ]
    );
    let export = expect(&p, 0, &["subscribers", "export"]);
    assert!(
        export.lines().any(|l| l.starts_with("themed@example.org,")
            && l.ends_with(",Energy transition; Open Source; tab\\there,2099-01-01T00:00:00Z")),
        "{export}"
    );
}

#[test]
fn three_senders_share_one_issue_and_the_two_left_finish_what_a_killed_one_had() {
    if !postgres::available() {
        return;
    }
    let cluster = Cluster::start();
    let sink = Sink::start(&[]);
    let n = 6000;
    let p = project(&cluster, "three", &sink.smtp_config());
    let readers = import_readers(&p, n);
    // The first fixes the audience; the other two join it.
    let mut senders: Vec<Child> = vec![spawn(&p, &["send", "--week", WEEK])];
    sink.wait_for(50);
    senders.push(spawn(&p, &["send", "--week", WEEK]));
    senders.push(spawn(&p, &["send", "--week", WEEK]));
    sink.wait_for(n / 3);
    let mut killed = senders.remove(1);
    killed.kill().unwrap(); // SIGKILL, a third of the way
    killed.wait().unwrap();
    for s in senders {
        let out = s.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    // Only what the killed sender had on the wire can come twice: one per connection (4).
    let twice = common::everyone_once_per_message_id(&sink.whole_messages(), &readers);
    eprintln!("received twice after the kill: {twice}");
    assert!(twice <= 4, "{twice} duplicates; only the killed sender's messages in flight may be");
    let s = status(&p);
    assert_eq!(
        (s["sent"].as_i64(), s["pending"].as_i64(), s["sending"].as_i64()),
        (Some(n as i64), Some(0), Some(0)),
        "{s}"
    );
}

#[test]
fn two_schedulers_at_one_fire_time_send_the_issue_once() {
    if !postgres::available() {
        return;
    }
    let cluster = Cluster::start();
    let sink = Sink::start(&[]);
    let p = project(&cluster, "schedulers", &sink.smtp_config());
    let readers = import_readers(&p, 400);
    let now = "2023-07-24T08:05:00+01:00";
    let a = spawn(&p, &["run", "--once", "--now", now]);
    let b = spawn(&p, &["run", "--once", "--now", now]);
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let got = sink.messages();
    assert_eq!(got.len(), 400, "one issue, sent once");
    assert!(got.iter().all(|m| m.message_id.starts_with("<2023-07-17.")));
    let rcpts: HashSet<&str> = got.iter().map(|m| m.rcpt.as_str()).collect();
    assert_eq!(rcpts.len(), readers.len());
    let s = status(&p);
    assert_eq!((s["sent"].as_i64(), s["audience"].as_i64()), (Some(400), Some(400)), "{s}");
}

#[test]
fn store_copy_moves_a_half_finished_send_and_postgres_finishes_it() {
    if !postgres::available() {
        return;
    }
    let cluster = Cluster::start();
    let sink = Sink::start(&[]);
    // A SQLite project whose send was killed part-way: some accepted messages are only in the
    // send's journal beside the database.
    let p = Project::new(&format!(
        "[smtp]\nurl = \"smtp://127.0.0.1:{}?tls=none\"\nconcurrency = 2\nrate_per_second = 100\n",
        sink.port
    ));
    p.import_readers(400);
    expect(&p, 0, &["subscribers", "remove", "reader0003@example.org"]);
    let mut child = p.command(&["send", "--week", WEEK]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    sink.wait_for(60);
    child.kill().unwrap();
    child.wait().unwrap();
    let before = status(&p);
    let (sent_before, journaled) = (before["sent"].as_i64().unwrap(), before["journaled"].as_i64().unwrap());
    assert!(sent_before > 0 && sent_before + journaled < 399, "{before}");

    let url = cluster.database("moved");
    let out = expect(&p, 0, &["store", "copy", "--to", &url]);
    assert!(out.contains("400 subscribers") && out.contains("399 deliveries") && out.contains("1 sends"), "{out}");
    // What the journal held is recorded before the copy, so it is not sent again from PostgreSQL.
    let recovered: i64 = out
        .split(" messages that a stopped send had sent")
        .next()
        .filter(|s| s.len() < out.len())
        .map_or(0, |s| s.trim().parse().unwrap());
    assert!(recovered <= journaled, "{out}");
    // Copying again is refused: the target is not empty any more.
    let again = gazette(&p, &["store", "copy", "--to", &url]).output().unwrap();
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is not empty") && stderr.contains("400 rows"), "{stderr}");

    // Point the project at PostgreSQL: the send resumes there, and nobody gets it twice.
    let toml = std::fs::read_to_string(p.path("publish.toml")).unwrap();
    std::fs::write(
        p.path("publish.toml"),
        toml.replace("database = \"db/gazette.db\"", &format!("database = \"{url}\"")),
    )
    .unwrap();
    let s = status(&p);
    assert_eq!(
        (s["sent"].as_i64(), s["number"].as_i64()),
        (Some(sent_before + recovered), before["number"].as_i64()),
        "the ledger came along: {s}"
    );
    expect(&p, 0, &["send", "--week", WEEK]);
    let got = sink.messages();
    let rcpts: HashSet<&str> = got.iter().map(|m| m.rcpt.as_str()).collect();
    assert_eq!(rcpts.len(), 399, "the rest were sent");
    // Only what was on the wire at the kill goes twice: one message per connection at most.
    assert!(got.len() <= 399 + 2, "{} messages for 399 readers", got.len());
    assert!(!rcpts.contains("reader0003@example.org"), "the unsubscribe came along");
    // Ids were copied as they were, and a new subscriber takes the next one.
    let added = expect(&p, 0, &["subscribers", "add", "late@example.org"]);
    assert!(added.contains("late@example.org"), "{added}");
    let s = status(&p);
    assert_eq!((s["sent"].as_i64(), s["pending"].as_i64()), (Some(399), Some(0)), "{s}");
}
