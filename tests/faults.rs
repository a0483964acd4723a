//! What an editor's files, a subscriber's input or a stuck peer can do, and that none of it stops
//! the other weeks' sends or loses a delivery. The built binary, real SQLite, real SMTP servers.

mod common;

use std::time::{Duration, Instant};

use common::{Project, Sink};

#[test]
fn hostile_digests_in_an_old_week_are_named_and_hold_back_nothing_else() {
    let sink = Sink::start(&[]);
    let p = Project::with_own_digests(&sink.smtp_config());
    let readers = p.import_readers(3);
    let seed = std::fs::read_to_string(p.path("digests/000_86102eed948879ef.txt")).unwrap();
    // An old week (5–11 June 2023): one file per hostile thing.
    let old = seed.replacen("[20230723]", "[20230607]", 1);
    let deep = format!("{}deep{}", "*".repeat(20_000), "*".repeat(20_000));
    let mut hostile: Vec<(String, usize)> = Vec::new();
    let summary_line = old.lines().position(|l| l.starts_with("The text discusses")).unwrap() + 1;
    let mut add = |n: usize, text: String, line: usize| {
        let name = format!("9{n:02}_{:016x}.txt", 0xdead_0000 + n);
        std::fs::write(p.path(&format!("digests/{name}")), text).unwrap();
        hostile.push((name, line));
    };
    add(0, old.replacen("The text discusses", &format!("{deep} The text discusses"), 1), summary_line);
    for (i, c) in ['\u{1}', '\u{b}', '\u{c}', '\u{1b}', '\0', '\u{fffe}'].into_iter().enumerate() {
        add(i + 1, old.replacen("The Evolution", &format!("The {c}Evolution"), 1), 1);
    }

    let out = p.run(&["check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for (name, line) in &hostile {
        let at = format!("{}:{line}: ", p.path(&format!("digests/{name}")).display());
        assert!(stdout.lines().any(|l| l.starts_with(&at)), "{at} is not named:\n{stdout}");
    }

    // The week that is due goes out to everyone, and the archive is written.
    let out = p.run(&["run", "--once", "--now", "2023-07-24T08:05:00+01:00"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    let mut got: Vec<String> =
        sink.messages().into_iter().filter(|m| m.message_id.starts_with("<2023-07-17.")).map(|m| m.rcpt).collect();
    got.sort();
    assert_eq!(got, readers, "{log}");
    assert!(p.path("out/issues/2023-07-17/index.html").exists());
}

#[test]
fn an_email_that_cannot_be_compiled_names_its_week_and_the_others_go_on() {
    // A template that compiles for ordinary weeks and not for one: an unclosed tag, only where a
    // digest's title says so.
    let p = Project::with_own_digests("");
    std::fs::create_dir(p.path("templates")).unwrap();
    let template = std::fs::read_to_string(common::repo().join("templates/email.mjml")).unwrap();
    let trap = "{% for day in issue.days %}{% for d in day.digests %}{% if 'TRAP' in d.title %}<mj-raw><div></mj-raw>{% endif %}{% endfor %}{% endfor %}";
    let template = template.replacen("</mj-body>", &format!("{trap}</mj-body>"), 1);
    std::fs::write(p.path("templates/email.mjml"), template).unwrap();
    let path = p.path("digests/000_86102eed948879ef.txt");
    let seed = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, seed.replacen("The Evolution", "TRAP The Evolution", 1)).unwrap();

    let out = p.run(&["build"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("issue #7 (17–23 July 2023)") && stderr.contains("000_86102eed948879ef.txt"), "{stderr}");
    assert!(p.path("out/issues/2023-08-14/index.html").exists() && p.path("out/issues/2023-07-17/index.html").exists());
    // Its send is refused, naming it; another week's goes out.
    p.import_readers(2);
    let out = p.run(&["send", "--week", "2023-07-17"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr.contains("issue #7 (17–23 July 2023)") && stderr.contains("000_86102eed948879ef.txt"), "{stderr}");
    let out = p.expect(0, &["send", "--week", "2023-07-24"]);
    assert!(out.contains("2 messages sent now"), "{out}");
    // The command leaves no write-ahead log behind.
    let wal = p.path("db/gazette.db-wal");
    assert!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) == 0, "{} is not empty", wal.display());
}

#[test]
fn a_locked_database_is_named_with_what_to_do() {
    let Some(python) = common::python_with(&["sqlite3"]) else {
        assert!(std::env::var_os("CI").is_none(), "python3 is needed for this test");
        eprintln!("skipped: no python3");
        return;
    };
    let p = Project::new("");
    p.import_readers(1);
    let db = p.path("db/gazette.db");
    // Another program holds the database for longer than Gazette waits (10 s).
    let mut holder = std::process::Command::new(python)
        .args(["-c", "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1]); c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(30)"])
        .arg(&db)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "locked");
    let out = p.run(&["subscribers", "add", "late@example.org"]);
    holder.kill().unwrap();
    let _ = holder.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&db.display().to_string()) && stderr.contains("run the command again"), "{stderr}");
    assert!(stderr.contains("another Gazette command"), "{stderr}");
}

/// A server that accepts connections and never says a word; returns its port.
fn silent_server() -> (u16, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let mut held = Vec::new();
        listener.set_nonblocking(true).unwrap();
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            match listener.accept() {
                Ok((s, _)) => held.push(s),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    (port, handle)
}

#[test]
fn a_server_that_never_answers_ends_the_send_with_deliveries_pending() {
    let (port, _server) = silent_server();
    let p = Project::new(&format!(
        "[smtp]\nurl = \"smtp://127.0.0.1:{port}?tls=none\"\nconcurrency = 2\ntimeout = \"2s\"\n"
    ));
    p.import_readers(3);
    let started = Instant::now();
    let out = p.run(&["send", "--week", "2023-07-17"]);
    let took = started.elapsed();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{text}");
    // Three connection attempts, each given up after the 2 s deadline, with waits of 1 and 2 s between.
    assert!(took < Duration::from_secs(15), "took {took:?}:\n{text}");
    assert!(text.contains("did not greet within 2s") || text.contains("within 2s"), "{text}");
    let status: serde_json::Value =
        serde_json::from_slice(&p.run(&["status", "--week", "2023-07-17", "--json"]).stdout).unwrap();
    assert_eq!((status["pending"].as_i64(), status["sent"].as_i64()), (Some(3), Some(0)), "{status}");
}

#[test]
fn sigterm_ends_a_send_stuck_on_a_silent_server_within_5_seconds() {
    let (port, _server) = silent_server();
    let p = Project::new(&format!("[smtp]\nurl = \"smtp://127.0.0.1:{port}?tls=none\"\nconcurrency = 2\n"));
    p.import_readers(3);
    let mut child = p
        .command(&["send", "--week", "2023-07-17"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let signalled = Instant::now();
    assert!(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(1));
            break;
        }
        assert!(signalled.elapsed() < Duration::from_secs(5), "still running 5 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    let status: serde_json::Value =
        serde_json::from_slice(&p.run(&["status", "--week", "2023-07-17", "--json"]).stdout).unwrap();
    assert_eq!(
        (status["pending"].as_i64(), status["sending"].as_i64()),
        (Some(3), Some(0)),
        "every delivery recorded: {status}"
    );
}

#[test]
fn an_idle_scheduler_stops_within_a_second_of_sigterm() {
    let p = Project::new("");
    let mut child =
        p.command(&["run"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    // Wait until it is idle: its first round has written the archive.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !p.path("out/index.html").exists() {
        assert!(Instant::now() < deadline, "the first round did not run");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let signalled = Instant::now();
    assert!(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(signalled.elapsed() < Duration::from_secs(1), "still running 1 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_closed_pipe_ends_a_command_quietly() {
    let p = Project::new("");
    p.import_readers(300);
    for args in [
        &["status", "--week", "2023-07-17"][..],
        &["subscribers", "list"][..],
        &["subscribers", "export"][..],
        &["check"][..],
    ] {
        let mut child =
            p.command(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        // As `| head -0`: the reader is gone before the first line is written.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
