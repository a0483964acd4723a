//! DMARC aggregate reports (RFC 7489 §7.2): the corpus of tests/dmarc (made by make.py there, in
//! the shapes Google, Microsoft and Yahoo send), read by `gazette bounces import`, from a maildir
//! `[dmarc] mailbox` and from the bounce mailbox on a real Dovecot, kept once, summed by
//! `gazette dmarc` and `gazette status`; malformed reports set aside as unreadable.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::Project;
use common::dovecot::{Dovecot, IMAP_PASSWORD};

/// The corpus's reports as make.py writes them: file, receiver (org_name), report id, the UTC day
/// its period begins, and its rows (source IP, count, DKIM aligned, SPF aligned).
struct Known {
    file: &'static str,
    org: &'static str,
    report_id: &'static str,
    day: &'static str,
    rows: &'static [(&'static str, i64, bool, bool)],
}

const REPORTS: &[Known] = &[
    Known {
        file: "google.eml",
        org: "google.com",
        report_id: "4911385738172693081",
        day: "2025-12-01",
        rows: &[("192.0.2.10", 1200, true, true), ("192.0.2.11", 300, true, false), ("198.51.100.23", 4, false, false)],
    },
    Known {
        file: "microsoft.eml",
        org: "Enterprise Outlook",
        report_id: "f6a9c0e2b1d54f3a8e7c2d1b0a9f8e7d",
        day: "2025-12-01",
        rows: &[("192.0.2.10", 640, true, true), ("203.0.113.5", 12, false, false)],
    },
    Known {
        file: "yahoo.eml",
        org: "Yahoo",
        report_id: "1764633600.417291",
        day: "2025-12-02",
        rows: &[("192.0.2.10", 415, true, true), ("192.0.2.11", 20, false, true)],
    },
    Known {
        file: "plain-xml.eml",
        org: "mail.example.net",
        report_id: "mx1-20251202-1",
        day: "2025-12-02",
        rows: &[("2001:db8::25", 3, false, false), ("192.0.2.10", 50, true, true)],
    },
];

/// The same reports saved on their own, as bare files: each a duplicate of one above.
const BARE: &[(&str, &str)] = &[
    ("google.com!signals.example.org!1764547200!1764633599.zip", "4911385738172693081"),
    (
        "enterprise.protection.outlook.com!signals.example.org!1764547200!1764633600.xml.gz",
        "f6a9c0e2b1d54f3a8e7c2d1b0a9f8e7d",
    ),
    ("mail.example.net!signals.example.org!1764633600!1764719999.xml", "mx1-20251202-1"),
];

/// The malformed ones, and words of the reason each is set aside for.
const MALFORMED: &[(&str, &str)] = &[
    ("truncated-zip.eml", "cannot be uncompressed"),
    ("truncated.xml.gz", "cannot be uncompressed"),
    ("not-feedback.eml", "not a DMARC aggregate report"),
    ("wrong-schema.eml", "policy_published"),
    ("gzip-bomb.eml", "over 20 MB once uncompressed"),
];

/// A moment after the corpus's days (1 and 2 December 2025), so that `--days 7` counts them.
const NOW: &str = "2025-12-05T12:00:00+00:00";

fn corpus(file: &str) -> PathBuf {
    common::repo().join("tests/dmarc").join(file)
}

fn import(p: &Project, files: &[PathBuf]) -> Vec<serde_json::Value> {
    let mut args = vec!["bounces".to_string(), "import".to_string(), "--format".to_string(), "json".to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    p.expect(0, &args).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn dmarc_json(p: &Project) -> serde_json::Value {
    serde_json::from_str(&p.expect(0, &["dmarc", "--json", "--days", "7", "--now", NOW])).unwrap()
}

/// What `gazette dmarc --json` must say of `reports`, added up here from the known rows:
/// (day, receiver) -> (messages, DKIM aligned, SPF aligned, failed both), and the failing sources.
type ByDay = BTreeMap<(String, String), (i64, i64, i64, i64)>;

fn expected(reports: &[&Known]) -> (ByDay, BTreeMap<String, i64>) {
    let mut by_day = ByDay::new();
    let mut failing = BTreeMap::new();
    for r in reports {
        let line = by_day.entry((r.day.to_string(), r.org.to_string())).or_default();
        for &(ip, count, dkim, spf) in r.rows {
            line.0 += count;
            line.1 += if dkim { count } else { 0 };
            line.2 += if spf { count } else { 0 };
            if !dkim && !spf {
                line.3 += count;
                *failing.entry(ip.to_string()).or_default() += count;
            }
        }
    }
    (by_day, failing)
}

fn said(json: &serde_json::Value) -> (ByDay, BTreeMap<String, i64>) {
    let by_day = json["by_day"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let n = |k: &str| d[k].as_i64().unwrap();
            (
                (d["day"].as_str().unwrap().to_string(), d["receiver"].as_str().unwrap().to_string()),
                (n("messages"), n("dkim_aligned"), n("spf_aligned"), n("failed")),
            )
        })
        .collect();
    let failing = json["failing_sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["source_ip"].as_str().unwrap().to_string(), f["messages"].as_i64().unwrap()))
        .collect();
    (by_day, failing)
}

on_both_stores! {
    fn every_report_of_the_corpus_is_read_and_summed_as_its_rows_say() {
        let p = Project::new("");
        // Before any report: the command says where reports come from, status says nothing of DMARC.
        let none = p.expect(0, &["dmarc", "--now", NOW]);
        assert!(none.contains("No DMARC aggregate report") && none.contains("rua=mailto:"), "{none}");
        assert!(!p.expect(0, &["status", "--week", "2023-07-23", "--now", NOW]).contains("DMARC"));
        assert!(!p.expect(0, &["status", "--week", "2023-07-23", "--json", "--now", NOW]).contains("dmarc"));

        let lines = import(&p, &REPORTS.iter().map(|r| corpus(r.file)).collect::<Vec<_>>());
        assert_eq!(lines.len(), REPORTS.len(), "{lines:?}");
        for (line, r) in lines.iter().zip(REPORTS) {
            assert_eq!(line["kind"], "dmarc-report", "{line}");
            assert_eq!((line["org"].as_str(), line["report_id"].as_str()), (Some(r.org), Some(r.report_id)), "{line}");
            assert_eq!(line["new"], true, "{line}");
        }

        let json = dmarc_json(&p);
        let all: Vec<&Known> = REPORTS.iter().collect();
        let (by_day, failing) = expected(&all);
        assert_eq!(said(&json), (by_day.clone(), failing.clone()), "{json}");
        let total: i64 = by_day.values().map(|v| v.0).sum();
        let dkim: i64 = by_day.values().map(|v| v.1).sum();
        let spf: i64 = by_day.values().map(|v| v.2).sum();
        assert_eq!(json["reports"], REPORTS.len(), "{json}");
        assert_eq!((json["messages"].as_i64(), json["dkim_aligned"].as_i64()), (Some(total), Some(dkim)), "{json}");
        assert_eq!(json["spf_aligned"].as_i64(), Some(spf), "{json}");
        assert_eq!(json["domains"], serde_json::json!(["signals.example.org"]), "{json}");
        // The sources that failed both are listed most messages first, with who reported them.
        let first = &json["failing_sources"][0];
        assert_eq!(
            (first["source_ip"].as_str(), first["receivers"][0].as_str()),
            (Some("203.0.113.5"), Some("Enterprise Outlook"))
        );

        // A shorter window leaves the first day out.
        let recent: serde_json::Value =
            serde_json::from_str(&p.expect(0, &["dmarc", "--json", "--days", "3", "--now", NOW])).unwrap();
        let later: Vec<&Known> = REPORTS.iter().filter(|r| r.day == "2025-12-02").collect();
        assert_eq!(said(&recent), expected(&later), "{recent}");

        let text = p.expect(0, &["dmarc", "--days", "7", "--now", NOW]);
        assert!(text.contains(&format!("{} reports, {total} messages from signals.example.org", REPORTS.len())), "{text}");
        assert!(
            text.lines().any(|l| l.starts_with("198.51.100.23") && l.contains(" 4 ") && l.contains("google.com")),
            "{text}"
        );

        let status = p.expect(0, &["status", "--week", "2023-07-23", "--now", NOW]);
        let percent = |n: i64| format!("{:.1}%", n as f64 * 100.0 / total as f64);
        let line = status.lines().find(|l| l.starts_with("DMARC, last 7 days")).unwrap_or_else(|| panic!("{status}"));
        assert!(line.contains(&format!("{total} messages in 4 reports")), "{line}");
        assert!(line.contains(&format!("DKIM aligned pass {}", percent(dkim))), "{line}");
        assert!(line.contains(&format!("SPF aligned pass {}", percent(spf))), "{line}");
        assert!(line.contains(&format!("{} sources sent as the domain and failed both", failing.len())), "{line}");
        assert!(line.contains("gazette dmarc"), "{line}");
        let status: serde_json::Value =
            serde_json::from_str(&p.expect(0, &["status", "--week", "2023-07-23", "--json", "--now", NOW])).unwrap();
        assert_eq!(
            status["dmarc"],
            serde_json::json!({"days": 7, "reports": 4, "messages": total, "dkim_aligned": dkim, "spf_aligned": spf,
                               "failing_sources": failing.len()}),
            "{status}"
        );
    }

    fn the_same_report_delivered_again_or_saved_on_its_own_is_kept_once() {
        let p = Project::new("");
        let mut files: Vec<PathBuf> = REPORTS.iter().map(|r| corpus(r.file)).collect();
        files.extend(BARE.iter().map(|(f, _)| corpus(f)));
        files.push(corpus("google.eml"));
        let lines = import(&p, &files);
        let new: Vec<bool> = lines.iter().map(|l| l["new"].as_bool().unwrap()).collect();
        assert_eq!(new, [true, true, true, true, false, false, false, false], "{lines:?}");
        for (line, (_, id)) in lines[REPORTS.len()..].iter().zip(BARE) {
            assert_eq!(line["report_id"].as_str(), Some(*id), "{line}");
        }
        // Imported again, all of it changes nothing.
        assert!(import(&p, &files).iter().all(|l| l["new"] == false));
        let json = dmarc_json(&p);
        let all: Vec<&Known> = REPORTS.iter().collect();
        assert_eq!(said(&json), expected(&all), "{json}");
        assert_eq!(json["reports"], REPORTS.len(), "{json}");
    }

    fn a_malformed_report_is_set_aside_as_unreadable_with_its_reason_and_changes_nothing_else() {
        let p = Project::new("");
        import(&p, &[corpus("google.eml")]);
        let mut before = if common::on_sqlite() { Some(tables(&p)) } else { None };
        for (i, (file, why)) in MALFORMED.iter().enumerate() {
            let lines = import(&p, &[corpus(&format!("malformed/{file}"))]);
            assert_eq!(lines.len(), 1, "{lines:?}");
            assert_eq!((lines[0]["kind"].as_str(), lines[0]["why"].as_str()), (Some("ignored"), Some("unreadable")));
            let detail = lines[0]["detail"].as_str().unwrap();
            assert!(detail.contains(why), "{file}: {detail}");
            if let Some(before) = before.as_mut() {
                let mut after = tables(&p);
                let unreadable = after.remove("unreadable_messages").unwrap();
                assert_eq!(unreadable.len(), i + 1, "{unreadable:?}");
                assert!(unreadable[i].contains(file) && unreadable[i].contains(why), "{unreadable:?}");
                before.remove("unreadable_messages");
                assert_eq!(&after, before, "{file} changed another table");
            }
        }
        // Nothing of them reached the summary; status counts them.
        let json = dmarc_json(&p);
        assert_eq!((json["reports"].as_i64(), json["messages"].as_i64()), (Some(1), Some(1504)), "{json}");
        let status: serde_json::Value =
            serde_json::from_str(&p.expect(0, &["status", "--week", "2023-07-23", "--json", "--now", NOW])).unwrap();
        assert_eq!(status["unreadable"]["count"], MALFORMED.len(), "{status}");
    }

}

/// Every table of the project's SQLite database, with its rows in order: what "changes nothing"
/// is checked against.
fn tables(p: &Project) -> BTreeMap<String, Vec<String>> {
    let path = p.path("db/gazette.db");
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        use sqlx::{Connection, Row};
        let mut db = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
        let names: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                .fetch_all(&mut db)
                .await
                .unwrap();
        let mut all = BTreeMap::new();
        for name in names {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM \"{name}\" ORDER BY 1")))
                .fetch_all(&mut db)
                .await
                .unwrap();
            let text = rows
                .iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| {
                            r.try_get::<Option<String>, _>(i)
                                .map(|v| format!("{v:?}"))
                                .or_else(|_| r.try_get::<Option<i64>, _>(i).map(|v| format!("{v:?}")))
                                .unwrap_or_else(|_| "?".into())
                        })
                        .collect::<Vec<_>>()
                        .join("|")
                })
                .collect();
            all.insert(name, text);
        }
        all
    })
}

/// A maildir with `new/`, `cur/` and `tmp/`, holding `files` of the corpus in `new/`.
fn maildir_with(dir: &std::path::Path, files: &[&str]) -> PathBuf {
    let maildir = dir.join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    for (i, f) in files.iter().enumerate() {
        std::fs::copy(corpus(f), maildir.join(format!("new/1764700000.M{i}P1.mx"))).unwrap();
    }
    maildir
}

fn round(p: &Project, env: &[(&str, &str)]) -> String {
    let out =
        p.command(&["run", "--once", "--now", "2023-07-26T12:00:00+01:00"]).envs(env.iter().copied()).output().unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{log}");
    log
}

#[test]
fn a_dmarc_mailbox_of_its_own_is_read_every_round_and_a_bad_report_does_not_stop_it() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = maildir_with(dir.path(), &["malformed/truncated-zip.eml", "google.eml", "yahoo.eml", "google.eml"]);
    let p = Project::new(&format!("[dmarc]\nmailbox = {:?}\n", maildir.display().to_string()));
    let log = round(&p, &[]);
    assert!(
        log.contains("DMARC mailbox: 4 read: 0 bounces, 0 complaints, 0 ignored, 0 about no known subscriber, 1 unreadable, 3 DMARC reports"),
        "{log}"
    );
    assert!(log.contains("read before: nothing new"), "{log}");
    assert!(common::read_messages(&maildir.join("new")).is_empty(), "{log}");
    let count = |folder: &str| std::fs::read_dir(maildir.join(folder).join("cur")).unwrap().count();
    assert_eq!((count(".Processed"), count(".Unreadable")), (3, 1));
    let json = dmarc_json(&p);
    let read: Vec<&Known> = REPORTS.iter().filter(|r| ["google.eml", "yahoo.eml"].contains(&r.file)).collect();
    assert_eq!(said(&json), expected(&read), "{json}");
}

#[test]
fn a_dmarc_section_names_what_is_wrong_with_its_keys() {
    let p = Project::new("[dmarc]\nmailbox = \"pop3://dmarc@mail.example.org\"\nprocesed = \"Done\"\n");
    let run = p.run(&["dmarc"]);
    assert_eq!(run.status.code(), Some(2));
    let out = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(out.contains("publish.toml:") && out.contains("procesed") && out.contains("[dmarc]"), "{out}");
    let p = Project::new("[dmarc]\nmailbox = \"pop3://dmarc@mail.example.org\"\n");
    let out = String::from_utf8_lossy(&p.run(&["dmarc"]).stderr).into_owned();
    assert!(out.contains("[dmarc] mailbox") && out.contains("pop3"), "{out}");
}

#[test]
fn reports_sent_to_the_bounce_mailbox_on_dovecot_are_read_beside_the_bounces() {
    let Some(dovecot) = Dovecot::start() else { return };
    let p = Project::new(&format!(
        "[bounces]\nmailbox = \"imaps://bounces@127.0.0.1:{}/INBOX\"\nca_file = {:?}\n",
        dovecot.port,
        dovecot.cert().display().to_string()
    ));
    let messages: Vec<String> = ["google.eml", "malformed/not-feedback.eml", "microsoft.eml", "plain-xml.eml"]
        .iter()
        .map(|f| std::fs::read_to_string(corpus(f)).unwrap())
        .collect();
    dovecot.append(&messages);
    assert_eq!(dovecot.count("INBOX"), 4);
    let log = round(&p, &[("GAZETTE_BOUNCES_PASSWORD", IMAP_PASSWORD)]);
    assert!(log.contains("bounce mailbox: 4 read:") && log.contains("1 unreadable, 3 DMARC reports"), "{log}");
    assert!(
        log.contains(&format!(
            "imaps://bounces@127.0.0.1:{}/INBOX;UID=2: moved to the Unreadable folder",
            dovecot.port
        )),
        "{log}"
    );
    assert_eq!((dovecot.count("INBOX"), dovecot.count("Processed"), dovecot.count("Unreadable")), (0, 3, 1));
    let json = dmarc_json(&p);
    let read: Vec<&Known> = REPORTS.iter().filter(|r| r.file != "yahoo.eml").collect();
    assert_eq!(said(&json), expected(&read), "{json}");
}

/// Every file of the corpus under `dir`, by its path there.
fn files_under(dir: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for sub in ["", "malformed"] {
        for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() && path.extension().is_none_or(|e| e != "py") {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                files.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

#[test]
fn the_corpus_is_what_make_py_writes() {
    let Some(python) = common::needs_python(&["zipfile", "gzip"]) else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(python).arg(corpus("make.py")).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (made, committed) = (files_under(dir.path()), files_under(&corpus("")));
    assert_eq!(made.keys().collect::<Vec<_>>(), committed.keys().collect::<Vec<_>>());
    // What is not compressed is the same to the byte (compressed bytes may differ with the zlib).
    for name in [
        "plain-xml.eml",
        "mail.example.net!signals.example.org!1764633600!1764719999.xml",
        "malformed/not-feedback.eml",
    ] {
        assert!(made[name] == committed[name], "{name} differs from what make.py writes");
    }
}
