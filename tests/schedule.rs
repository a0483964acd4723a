//! `gazette run --once --now …`: the scheduler's rounds with explicit times, against each real store
//! (a SQLite file, a PostgreSQL database: `on_both_stores!`) and a real SMTP sink. The pure decisions (DST, lateness, week boundaries) are unit tests in
//! src/schedule.rs; these check what a round does with them.

mod common;

use common::{Project, Sink};

fn once(p: &Project, now: &str) -> (i32, String) {
    let out = p.run(&["run", "--once", "--now", now]);
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), log)
}

// Each scenario runs against SQLite and against PostgreSQL.
on_both_stores! {
    fn monday_morning_sends_last_week_once_and_builds_the_archive() {
        let sink = Sink::start(&[]);
        let p = Project::new(&sink.smtp_config());
        let readers = p.import_readers(12);
        let (code, log) = once(&p, "2023-07-24T08:05:00+01:00");
        assert_eq!(code, 0, "{log}");
        let got = sink.messages();
        assert_eq!(got.len(), 12, "{log}");
        assert!(got.iter().all(|m| m.message_id.starts_with("<2023-07-17.")), "the week of 17 July 2023 was sent");
        let mut rcpts: Vec<String> = got.into_iter().map(|m| m.rcpt).collect();
        rcpts.sort();
        assert_eq!(rcpts, readers);
        assert!(p.path("out/index.html").exists() && p.path("out/issues/2023-07-17/index.html").exists(), "built before sending");

        // The same round again, and a later one in the same week: nothing more is sent.
        let (code, log) = once(&p, "2023-07-24T08:05:00+01:00");
        assert_eq!(code, 0, "{log}");
        assert!(log.contains("already sent"), "{log}");
        let (code, _) = once(&p, "2023-07-26T12:00:00+01:00");
        assert_eq!(code, 0);
        assert_eq!(sink.messages().len(), 12);
    }

    fn a_round_too_late_sends_nothing_and_says_how_to_send_by_hand() {
        let sink = Sink::start(&[]);
        let p = Project::new(&sink.smtp_config());
        p.import_readers(3);
        let (code, log) = once(&p, "2023-07-24T15:00:00+01:00"); // 7 hours after the 08:00 fire; max_lateness is 6h
        assert_eq!(code, 0, "{log}");
        assert!(log.contains("gazette send --week 2023-07-17"), "{log}");
        assert!(sink.messages().is_empty());
    }

    fn a_week_without_digests_is_skipped() {
        let sink = Sink::start(&[]);
        let p = Project::new(&sink.smtp_config());
        p.import_readers(3);
        // The example digests end in August 2023: the week of 4 September has none.
        let (code, log) = once(&p, "2023-09-11T08:05:00+01:00");
        assert_eq!(code, 0, "{log}");
        assert!(log.contains("the week of 2023-09-04 has no digests"), "{log}");
        // Nothing to warn about, and no advice to run a command that would fail.
        assert!(!log.lines().any(|l| l.contains("WARN") && l.contains("2023-09-04")), "{log}");
        assert!(!log.contains("gazette send --week 2023-09-04"), "{log}");
        assert!(sink.messages().is_empty());
    }

    fn a_broken_digest_holds_back_its_week_only() {
        let sink = Sink::start(&[]);
        let p = Project::new(&sink.smtp_config());
        p.import_readers(2);
        // A copy of the example digests in which the seed (dated 23 July 2023) lost its summary.
        let digests = p.path("digests");
        std::fs::create_dir(&digests).unwrap();
        for e in std::fs::read_dir(common::repo().join("digests")).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), digests.join(e.file_name())).unwrap();
        }
        let seed = digests.join("000_86102eed948879ef.txt");
        let text = std::fs::read_to_string(&seed).unwrap();
        std::fs::write(&seed, text.replace("## Summary", "## Sumary")).unwrap();
        let toml = std::fs::read_to_string(p.path("publish.toml")).unwrap();
        let toml = toml.lines().map(|l| if l.starts_with("digests = ") { "digests = \"digests\"".to_string() } else { l.to_string() }).collect::<Vec<_>>().join("\n");
        std::fs::write(p.path("publish.toml"), toml).unwrap();

        let (code, log) = once(&p, "2023-07-24T08:05:00+01:00");
        assert_eq!(code, 1, "{log}");
        assert!(log.contains("000_86102eed948879ef.txt:7:"), "the file and line are logged: {log}");
        assert!(sink.messages().is_empty());

        // The next week is not affected.
        let (code, log) = once(&p, "2023-07-31T08:05:00+01:00");
        assert_eq!(code, 0, "{log}");
        assert_eq!(sink.messages().len(), 2);
        assert!(sink.messages().iter().all(|m| m.message_id.starts_with("<2023-07-24.")));

        // Once fixed, the held-back week goes out on the next round within max_lateness.
        std::fs::write(&seed, text).unwrap();
        let (code, log) = once(&p, "2023-07-24T09:00:00+01:00");
        assert_eq!(code, 0, "{log}");
        assert_eq!(sink.messages().len(), 4);
    }

    fn a_round_killed_mid_send_is_finished_by_the_next_round() {
        let sink = Sink::start(&[]);
        let p = Project::new(&format!("[smtp]\nurl = \"smtp://127.0.0.1:{}?tls=none\"\nconcurrency = 2\nrate_per_second = 100\n", sink.port));
        p.import_readers(300);
        let mut child = p
            .command(&["run", "--once", "--now", "2023-07-24T08:05:00+01:00"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        sink.wait_for(50);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(sink.messages().len() < 300);

        // A restart later the same morning resumes the unfinished send first.
        let (code, log) = once(&p, "2023-07-24T08:30:00+01:00");
        assert_eq!(code, 0, "{log}");
        assert!(log.contains("resuming"), "{log}");
        let mut rcpts: Vec<String> = sink.whole_messages().into_iter().map(|m| m.rcpt).collect();
        rcpts.sort();
        rcpts.dedup();
        assert_eq!(rcpts.len(), 300, "everyone got it");
    }
}
