//! Every parser of outside input, fed hostile variants of real inputs: the digest reader, CSV
//! import, the subscribe form, signed tokens, mbox splitting, reading maildirs, folders and mboxes,
//! and the bounce classifier. Each case is a real input (the seed digest and generated nasty ones,
//! subscriber lists, form bodies, tokens, the 434 messages of ../shared/corpus/bounces-dev) truncated
//! (inside multi-byte characters too), byte-flipped, cut up, re-encoded (CRLF, LF, lone CR, BOMs,
//! Latin-1, UTF-16), given very long lines, or replaced by random bytes. No case may panic, and
//! each parser keeps a property a broken one would not.
//!
//! `GAZETTE_PROPERTY_CASES` sets the cases per parser (default `DEFAULT_CASES`), and
//! `GAZETTE_PROPERTY_SEED` the seed they are drawn from. A failing case is saved under
//! `target/tmp/hostile-input/<parser>/` and printed with the command that replays it alone
//! (`GAZETTE_PROPERTY_CASE=N`). `bench/property.sh` runs the same tests with many more cases.

mod hostile;

use std::io::Cursor;
use std::path::{Path, PathBuf};

use gazette::bounces::Kind;
use gazette::bounces::source::{Found, read_paths, split_mbox};
use gazette::store::{ImportError, InvalidRow, Store, SubscriberEmail};
use hostile::{Seed, run_cases};
use rand::RngExt;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The real messages: the development corpus of bounces (and the non-bounces in it), and the
/// repository's own test messages.
fn messages() -> Vec<Seed> {
    let mut seeds = Vec::new();
    let corpus = repo().join("../shared/corpus/bounces-dev/messages");
    for source in files_or_dirs(&corpus) {
        for file in files_or_dirs(&source) {
            seeds.push(Seed::from_file(&file));
        }
    }
    assert!(seeds.len() >= 400, "the bounce corpus is at {} (found {} messages)", corpus.display(), seeds.len());
    for file in files_or_dirs(&repo().join("tests/bounces")) {
        seeds.push(Seed::from_file(&file));
    }
    seeds
}

fn files_or_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    paths
}

/// Writes a case's file. The old one is removed first: ext4 flushes a file that is truncated
/// and written again (`auto_da_alloc`), which made the cases wait for the disk.
fn put(path: &Path, bytes: &[u8]) {
    let _ = std::fs::remove_file(path);
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Lines an input has, as the parsers number them (a last line without a line break counts).
fn line_count(input: &[u8]) -> usize {
    input.iter().filter(|b| **b == b'\n').count() + 1
}

// ---------------------------------------------------------------------------------------------
// Digests

/// The seed digest, the repository's example digests and, when python3 is there, a nasty
/// generated corpus (CRLF, BOMs, HTML in titles, escaped pipes, long summaries, other scripts).
fn digest_seeds() -> Vec<Seed> {
    let mut seeds = vec![Seed::from_file(&repo().join("../shared/seeds/000_86102eed948879ef.txt"))];
    for file in files_or_dirs(&repo().join("digests")) {
        if file.extension().is_some_and(|e| e == "txt") {
            seeds.push(Seed::from_file(&file));
        }
    }
    let generated = tempfile::tempdir().unwrap();
    let script = repo().join("../shared/corpus/gen_digests.py");
    let run = std::process::Command::new("python3")
        .arg(&script)
        .arg(generated.path())
        .args(["--count", "60", "--nasty", "--seed", "27"])
        .output();
    match run {
        Ok(out) if out.status.success() => {
            seeds.extend(files_or_dirs(generated.path()).iter().map(|f| Seed::from_file(f)))
        }
        other => {
            assert!(std::env::var_os("CI").is_none(), "{} did not run under CI: {other:?}", script.display());
            eprintln!(
                "SKIPPED: the generated nasty digests (python3 or {} is missing); the other seeds still run",
                script.display()
            );
        }
    }
    seeds
}

#[test]
fn digest_reader_never_panics_and_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let outcomes = run_cases("digest", &digest_seeds(), |input, case| {
        let seed = case.seed;
        // The seed's own name: the id it gives stays valid, so a parse can succeed.
        let path = dir.path().join(&seed.name);
        put(&path, input);
        match gazette::digest::read_file(&path) {
            Ok(d) => {
                check(
                    !d.title.is_empty() && d.title == d.title.trim(),
                    format!("a parsed digest has the title {:?}", d.title),
                )?;
                check(
                    Some(d.id.as_str()) == gazette::digest::id_from_file_name(&seed.name).as_deref(),
                    "the id is the file name's",
                )?;
                let link =
                    url::Url::parse(&d.link).map_err(|e| format!("the link {:?} does not parse: {e}", d.link))?;
                check(matches!(link.scheme(), "http" | "https"), format!("the link {:?} is not http(s)", d.link))?;
                check(!d.summary.trim().is_empty(), "a parsed digest has a summary")?;
                // What a reader gets of the summary: only links and emphasis survive as markup.
                use gazette::render::markdown;
                let html = markdown::to_html(&d.summary);
                check(
                    !html.contains("<script") && !html.contains("href=\"javascript"),
                    format!("markup got through: {html}"),
                )?;
                markdown::to_text(&d.summary);
                markdown::excerpt(&d.summary, 300);
                markdown::first_line(&d.summary, 120);
                Ok("parsed")
            }
            Err(problems) => {
                check(!case.unchanged, format!("a real digest is refused: {problems:?}"))?;
                check(!problems.is_empty(), "a digest refused with no problem named")?;
                let lines = line_count(input);
                for p in &problems {
                    check(p.path == path, format!("a problem names another file: {p}"))?;
                    check(p.line <= lines, format!("a problem names line {} of a file of {lines} lines: {p}", p.line))?;
                    let text = p.to_string();
                    check(
                        text.starts_with(&format!("{}:{}: ", path.display(), p.line)) && !p.message.is_empty(),
                        format!("not `path:line: what`: {text}"),
                    )?;
                }
                Ok("refused")
            }
        }
    });
    outcomes.reached(&["parsed", "refused"]);
}

// ---------------------------------------------------------------------------------------------
// CSV import

/// A list as another tool exports it: a BOM, CRLF, quoted names with commas, quotes and line
/// breaks, other scripts, every status, duplicates in other cases, blank lines, extra columns.
const EXPORTED_CSV: &str = "\u{feff}Email,Name,Status,Signed up,Tags\r\n\
    ada.lovelace@example.org,Ada Lovelace,active,2023-01-04,\"math,engines\"\r\n\
    \"grace.hopper@example.org\",\"Hopper, Grace \"\"Amazing\"\"\",active,2023-01-05,\r\n\
    alan.turing@example.org,\"Alan\r\nTuring\",unsubscribed,2023-02-01,\r\n\
    GRACE.HOPPER@EXAMPLE.ORG,Grace again,,2023-03-01,\r\n\
    \r\n\
    yamada@example.jp,山田 太郎,active,2023-03-02,日本\r\n\
    eleni@example.gr,Ελένη Παπαδοπούλου,bounced,2023-03-03,\r\n\
    zoë@exämple.org,Zoë 🦊,complained,2023-03-04,\r\n\
    not-an-address,Nobody,active,2023-03-05,\r\n\
    ,No address,active,,\r\n\
    katherine.johnson@example.org,Katherine Johnson,ACTIVE,2023-03-06,nasa\r\n\
    edsger.dijkstra@example.org,Edsger W. Dijkstra,paused,2023-03-07,\r\n\
    \"  spaced@example.org  \",\"  Spaced Out  \",active,2023-03-08,\r\n\
    last@example.org,Last Line Without A Break,active,2023-03-09,";

/// `gazette subscribers export`'s own shape, themes and pauses included.
const GAZETTE_EXPORT: &str = "email,name,status,source,created_at,status_changed_at,themes,paused_until\n\
    ada.lovelace@example.org,Ada Lovelace,active,import,2023-07-17T08:00:00Z,2023-07-17T08:00:00Z,Energy transition; Open source,\n\
    grace.hopper@example.org,,pending,web,2023-07-17T08:01:00Z,2023-07-17T08:01:00Z,,2023-08-01T00:00:00Z\n\
    alan.turing@example.org,\"Turing, Alan\",unsubscribed,web,2023-07-17T08:02:00Z,2023-07-20T10:00:00Z,\"Ünïcode; \"\"quoted\"\"\",\n\
    edsger.dijkstra@example.org,Edsger,active,import,2023-07-17T08:03:00Z,2023-07-17T08:03:00Z,a;b;c;d;e;f;g;h,2023-08-01T00:00:00+02:00\n";

fn csv_seeds() -> Vec<Seed> {
    vec![
        Seed::from_file(&repo().join("subscribers/example.csv")),
        Seed::new("exported.csv", EXPORTED_CSV.as_bytes().to_vec()),
        Seed::new("gazette-export.csv", GAZETTE_EXPORT.as_bytes().to_vec()),
        Seed::new("semicolons.csv", b"email;name\nada@example.org;Ada\n".to_vec()),
    ]
}

#[test]
fn csv_import_never_panics_and_reports_every_row_it_leaves_out() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // One store for every case: an import never changes rows already there, so cases stay
    // independent, and opening a database per case would cost more than the parsing tested.
    let store = runtime.block_on(Store::open(&dir.path().join("gazette.db"))).unwrap();
    let outcomes = run_cases("csv", &csv_seeds(), |input, _| {
        let mut invalid: Vec<InvalidRow> = Vec::new();
        let result =
            runtime
                .block_on(store.import_reader(Cursor::new(input.to_vec()), Path::new("list.csv"), |row| {
                    invalid.push(row.clone())
                }));
        let lines = line_count(input) as u64;
        match result {
            Ok(report) => {
                check(
                    report.invalid == invalid.len() as u64,
                    format!("{} rows counted invalid, {} reported", report.invalid, invalid.len()),
                )?;
                for row in &invalid {
                    check(
                        (2..=lines).contains(&row.line),
                        format!("a row left out at line {} of {lines}: {row}", row.line),
                    )?;
                    check(!row.reason.is_empty(), "a row left out without a reason")?;
                }
                // Every data row takes a line of its own after the header.
                let rows = report.added + report.updated + report.unchanged + report.skipped + report.invalid;
                check(rows < lines, format!("{rows} rows counted in {lines} lines: {report:?}"))?;
                Ok(if report.added + report.updated + report.unchanged + report.skipped > 0 {
                    "rows imported"
                } else {
                    "no row imported"
                })
            }
            Err(e) => {
                let text = e.to_string();
                // A reading thread that panicked comes back as an I/O error saying so.
                check(!text.contains("panicked"), format!("the reader panicked: {text}"))?;
                check(
                    matches!(e, ImportError::Refused { .. }),
                    format!("a file in memory is refused as a whole only for what it holds: {text}"),
                )?;
                check(text.starts_with("list.csv: "), format!("the error does not name the file: {text}"))?;
                Ok("file refused")
            }
        }
    });
    outcomes.reached(&["rows imported", "no row imported", "file refused"]);
}

// ---------------------------------------------------------------------------------------------
// The subscribe form

/// Bodies of `POST /subscribe` as browsers and scripts send them, with their content type.
fn form_seeds() -> Vec<Seed> {
    let form = "application/x-www-form-urlencoded";
    let json = "application/json";
    [
        (form, "email=ada.lovelace%40example.org&name=Ada+Lovelace"),
        (form, "email=grace.hopper%40example.org&name="),
        (form, "name=%E5%B1%B1%E7%94%B0+%E5%A4%AA%E9%83%8E&email=yamada%40example.jp"),
        (form, "email=+Zo%C3%AB%40Ex%C3%A4mple.ORG+&name=Zo%C3%AB+%3Cscript%3Ealert(1)%3C%2Fscript%3E"),
        (form, "email=eve%40example.org&name=Eve%0D%0ABcc%3A+all%40example.org"),
        (form, "email=&name=Nobody"),
        (form, "email=a%40b.example&email=c%40d.example&extra=1"),
        (json, r#"{"email":"ada.lovelace@example.org","name":"Ada Lovelace"}"#),
        (json, r#"{"email": "eleni@example.gr", "name": "Ελένη \"Λ\" Παπαδοπούλου 🦊"}"#),
        (json, r#"{"email":"x@example.org","name":null}"#),
        (json, r#"{"email":"nul@example.org","name":"a\u0000b\ud83e\udd8a"}"#),
        (json, r#"{"name":"no address"}"#),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (kind, body))| {
        Seed::new(&format!("{i:02}.{}", if kind == json { "json" } else { "form" }), body.as_bytes().to_vec())
    })
    .collect()
}

#[test]
fn subscribe_form_never_panics_and_takes_only_addresses_it_can_send_to() {
    use axum::body::Body;
    use axum::http::Request;
    use gazette::server::{Refusal, SubscribeRequest, read_subscribe_request};

    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let config = gazette::Config::embedded_defaults(Path::new("."));
    let templates = gazette::project::load_templates(&config).unwrap();
    let content_types =
        ["application/x-www-form-urlencoded", "application/json", "application/json; charset=utf-8", "text/plain", ""];
    let outcomes = run_cases("subscribe", &form_seeds(), |input, case| {
        // Mostly the seed's own content type; sometimes another, as a careless client sends.
        let content_type = if case.rng.random_ratio(1, 8) {
            content_types[case.rng.random_range(0..content_types.len())]
        } else if case.seed.name.ends_with(".json") {
            "application/json"
        } else {
            "application/x-www-form-urlencoded"
        };
        let json = content_type.starts_with("application/json");
        let request =
            Request::post("/subscribe").header("content-type", content_type).body(Body::from(input.to_vec())).unwrap();
        let offered =
            [gazette::themes::RecentTheme { name: "Open source".into(), slug: "open-source".into(), digests: 2 }];
        match runtime.block_on(read_subscribe_request(request, json, &offered)) {
            Ok(SubscribeRequest { email, name, themes }) => {
                check(
                    themes.iter().flat_map(|t| t.slugs()).all(|s| s == "open-source"),
                    format!("themes not offered were taken: {themes:?}"),
                )?;
                let again = SubscriberEmail::parse(email.as_str())
                    .map_err(|e| format!("{email} was taken but does not parse again: {e}"))?;
                check(again == email, format!("{email} parses again as {again}"))?;
                if let Some(name) = name {
                    check(!name.is_empty() && name == name.trim(), format!("the name {name:?} is not trimmed"))?;
                    check(!name.chars().any(char::is_control), format!("the name {name:?} has a control character"))?;
                    check(name.chars().count() <= 100, format!("the name has {} characters", name.chars().count()))?;
                }
                Ok("taken")
            }
            Err(Refusal::Undecodable(response)) => check(
                response.status().is_client_error(),
                format!("an undecodable body is answered {}", response.status()),
            )
            .map(|_| "not decodable"),
            Err(Refusal::Invalid(page)) => {
                check(page.error.as_deref().is_some_and(|e| !e.is_empty()), "a refused form says why")?;
                // The form comes back filled in as sent: nothing sent may become markup.
                let html = gazette::render::render_page(&config, &templates, &page)
                    .map_err(|e| format!("the page does not render: {e}"))?;
                check(!html.contains("<script"), "markup from the form got into the page")?;
                Ok("refused with the form again")
            }
        }
    });
    outcomes.reached(&["taken", "refused with the form again", "not decodable"]);
}

// ---------------------------------------------------------------------------------------------
// Signed tokens: in confirm and unsubscribe links, and in the envelope sender bounces return to

#[test]
fn tokens_never_panic_and_no_altered_one_verifies() {
    use gazette::store::{
        Purpose, TokenKey, address_token, bounce_token, sign_token, verify_address_token, verify_bounce_token,
        verify_token,
    };
    let key = TokenKey::from_secret(b"a secret of sufficient length for tests".to_vec()).unwrap();
    let mut seeds = Vec::new();
    for id in [1, 7, 1234, i64::MAX] {
        seeds.push(Seed::new("unsubscribe", sign_token(&key, id, Purpose::Unsubscribe).into_bytes()));
        seeds.push(Seed::new("confirm", sign_token(&key, id, Purpose::Confirm).into_bytes()));
        seeds.push(Seed::new("bounce", bounce_token(&key, id, &"2023-07-17".parse().unwrap()).into_bytes()));
        seeds.push(Seed::new("address", address_token(&key, id, 42, "new@example.org").into_bytes()));
    }
    let outcomes = run_cases("tokens", &seeds, |input, case| {
        // A token arrives as text: a URL's path segment or an address's local part.
        let token = String::from_utf8_lossy(input);
        let original = String::from_utf8_lossy(&case.seed.bytes);
        let verified = match case.seed.name.as_str() {
            "bounce" => {
                let named = verify_bounce_token(&key, &token);
                check(
                    named.is_none() || token.to_ascii_lowercase() == original,
                    format!("an altered bounce token names {named:?}"),
                )?;
                named.is_some()
            }
            "address" => {
                let named = verify_address_token(&key, &token, "new@example.org");
                check(
                    named.is_none() || token.to_ascii_lowercase() == original,
                    format!("an altered address token names {named:?}"),
                )?;
                check(
                    verify_address_token(&key, &token, "other@example.org").is_none(),
                    "an address token verifies for another address",
                )?;
                named.is_some()
            }
            purpose => {
                let (right, wrong) = if purpose == "confirm" {
                    (Purpose::Confirm, Purpose::Unsubscribe)
                } else {
                    (Purpose::Unsubscribe, Purpose::Confirm)
                };
                let named = verify_token(&key, &token, right);
                // Hex digits in either case spell the same MAC: such a token is the same token.
                check(
                    named.is_none() || token.to_ascii_lowercase() == original,
                    format!("an altered token names subscriber {named:?}"),
                )?;
                check(verify_token(&key, &token, wrong).is_none(), "a token verifies for the other purpose")?;
                named.is_some()
            }
        };
        check(!case.unchanged || verified, "a token as signed does not verify")?;
        Ok(if verified { "verified" } else { "refused" })
    });
    outcomes.reached(&["verified", "refused"]);
}

// ---------------------------------------------------------------------------------------------
// mbox splitting and reading paths

/// Separator lines as mail programs write them.
const SEPARATORS: [&[u8]; 3] = [
    b"From MAILER-DAEMON Mon Jul 17 09:00:00 2023\n",
    b"From bounce@example.org  Tue Jul 18 10:00:00 2023\r\n",
    b"From - \n",
];

/// `messages` as an mboxrd: each after a `From ` line, lines that start with `>*From ` quoted
/// with one more `>`, and an empty line (in the message's own line ending) between messages.
/// Each message must end with a line break.
fn write_mbox(messages: &[Vec<u8>], pick: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(if messages[i - 1].ends_with(b"\r\n") { b"\r\n" } else { b"\n" });
        }
        out.extend_from_slice(SEPARATORS[(pick + i) % SEPARATORS.len()]);
        for line in m.split_inclusive(|b| *b == b'\n') {
            let quotes = line.iter().take_while(|b| **b == b'>').count();
            if line[quotes..].starts_with(b"From ") {
                out.push(b'>');
            }
            out.extend_from_slice(line);
        }
    }
    out
}

/// A message made to end with a line break, as every message in an mbox does.
fn ended(mut m: Vec<u8>) -> Vec<u8> {
    if !m.ends_with(b"\n") {
        m.push(b'\n');
    }
    m
}

#[test]
fn mbox_splitting_gives_back_every_message_whole() {
    let seeds = messages();
    let outcomes = run_cases("mbox", &seeds, |input, case| {
        // The case's input is the first message; up to three more real ones follow it.
        let mut messages = vec![ended(input.to_vec())];
        for _ in 0..case.rng.random_range(0..4) {
            messages.push(ended(seeds[case.rng.random_range(0..seeds.len())].bytes.clone()));
        }
        let mbox = write_mbox(&messages, case.rng.random_range(0..SEPARATORS.len()));
        let split = split_mbox(&mbox);
        if split != messages {
            let lengths = |v: &[Vec<u8>]| v.iter().map(Vec::len).collect::<Vec<_>>();
            return Err(format!(
                "{} messages written ({:?} bytes), {} read back ({:?} bytes)",
                messages.len(),
                lengths(&messages),
                split.len(),
                lengths(&split)
            ));
        }
        // The input itself read as an mbox (a damaged one, most of the time): it loses bytes
        // (separators, quotes) but never makes any up.
        let read = split_mbox(input);
        let out: usize = read.iter().map(Vec::len).sum();
        check(out <= input.len(), format!("{out} bytes read out of {}", input.len()))?;
        Ok(if read.is_empty() { "round trip; the input is no mbox" } else { "round trip; the input read as an mbox" })
    });
    outcomes.reached(&["round trip; the input is no mbox", "round trip; the input read as an mbox"]);
}

#[test]
fn maildirs_folders_and_mboxes_are_read_without_losing_a_message() {
    let seeds = messages();
    // One tree for every case, its files written over by each: making folders per case costs
    // more than the reading tested. A maildir (a half-written message in tmp/ and a hidden file
    // in new/, neither read), a folder of files, and a file given as a path of its own.
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    for sub in ["new", "cur", "tmp", ".Processed/cur"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    std::fs::write(maildir.join("new/.hidden"), b"From x\n\nnot read\n").unwrap();
    let folder = dir.path().join("folder");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("c"), b"").unwrap();
    let single = dir.path().join("single.msg");
    let nowhere = dir.path().join("nowhere");
    let [new, cur, tmp] = ["new/1689584400.M1P2.host", "cur/1689584401.M3P4.host:2,S", "tmp/1689584402.M5P6.host"]
        .map(|f| maildir.join(f));

    let outcomes = run_cases("paths", &seeds, |input, case| {
        let other = seeds[case.rng.random_range(0..seeds.len())].bytes.clone();
        let mbox = [ended(input.to_vec()), ended(other.clone())];
        put(&new, input);
        put(&cur, &other);
        put(&tmp, &input[..input.len() / 2]);
        put(&folder.join("a.eml"), input);
        put(&folder.join("b.mbox"), &write_mbox(&mbox, case.rng.random_range(0..SEPARATORS.len())));
        put(&single, input);
        let missing = case.rng.random_ratio(1, 10);
        let mut paths = vec![maildir.clone(), folder.clone(), single.clone()];
        if missing {
            paths.push(nowhere.clone());
        }

        let found = match read_paths(&paths) {
            Err(e) if missing => {
                return check(
                    e.to_string().starts_with(&format!("{}: cannot read", nowhere.display())),
                    format!("{e}"),
                )
                .map(|_| "missing path named");
            }
            Err(e) => return Err(format!("reading failed: {e}")),
            Ok(_) if missing => return Err("a missing path is not an error".into()),
            Ok(found) => found,
        };
        // A maildir holds one message a file, whatever it starts with; elsewhere a file that
        // starts with `From ` is an mbox.
        let as_file = |path: &Path| -> Vec<(PathBuf, Option<usize>, Vec<u8>)> {
            if input.starts_with(b"From ") {
                split_mbox(input).into_iter().enumerate().map(|(i, m)| (path.to_path_buf(), Some(i + 1), m)).collect()
            } else {
                vec![(path.to_path_buf(), None, input.to_vec())]
            }
        };
        let mut expected = vec![(new.clone(), None, input.to_vec()), (cur.clone(), None, other)];
        expected.extend(as_file(&folder.join("a.eml")));
        expected.extend(mbox.into_iter().enumerate().map(|(i, m)| (folder.join("b.mbox"), Some(i + 1), m)));
        expected.push((folder.join("c"), None, Vec::new()));
        expected.extend(as_file(&single));
        let got: Vec<(PathBuf, Option<usize>, Vec<u8>)> =
            found.into_iter().map(|Found { path, index, bytes }| (path, index, bytes)).collect();
        if got != expected {
            let labels = |v: &[(PathBuf, Option<usize>, Vec<u8>)]| {
                v.iter()
                    .map(|(p, i, b)| format!("{}#{i:?} ({} bytes)", p.file_name().unwrap().to_string_lossy(), b.len()))
                    .collect::<Vec<_>>()
            };
            return Err(format!("expected {:?}\n got {:?}", labels(&expected), labels(&got)));
        }
        Ok(if input.starts_with(b"From ") { "read, the message as an mbox" } else { "read" })
    });
    outcomes.reached(&["read", "read, the message as an mbox", "missing path named"]);
}

// ---------------------------------------------------------------------------------------------
// The bounce classifier

#[test]
fn bounce_classifier_never_panics() {
    let bounce_address: lettre::Address = "bounces@signals.example.org".parse().unwrap();
    let outcomes = run_cases("classify", &messages(), |input, _| {
        Ok(match gazette::bounces::classify(input, Some(&bounce_address)).kind {
            Kind::Bounce => "bounce",
            Kind::Complaint => "complaint",
            Kind::Ignored => "ignored",
        })
    });
    outcomes.reached(&["bounce", "complaint", "ignored"]);
}

/// `Err(why)` unless `ok`: a property of a case.
fn check(ok: bool, why: impl Into<String>) -> Result<(), String> {
    if ok { Ok(()) } else { Err(why.into()) }
}
