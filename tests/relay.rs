//! Sending through a real submission relay (tests/relay.py, aiosmtpd) with TLS and AUTH: a CA of
//! the test's own in `[smtp] ca_file` or SSL_CERT_FILE, STARTTLS and implicit TLS, certificate
//! problems, XOAUTH2 with a `password_command`, a refused login, `gazette check --smtp`, and the
//! server's SIZE limit. The relay's own behaviour, and the certificates, are checked first with
//! lettre's client, so that a failure further down is Gazette's.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Project;
use common::relay::{self, Mode, Relay, SECRET, TestCa, USER};

const WEEK: &str = "2023-07-17";

/// What a run of gazette left behind.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Ran {
    /// stdout and stderr together, for looking for a message wherever it was printed.
    fn output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    fn describe(&self, args: &[&str]) -> String {
        format!(
            "gazette {args:?} exited {:?} after {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.took, self.stdout, self.stderr
        )
    }
}

/// Runs gazette with exactly the given secrets and certificate stores in its environment.
fn run(p: &Project, args: &[&str], env: &[(&str, &str)]) -> Ran {
    let mut c = p.command(args);
    for var in ["GAZETTE_SMTP_PASSWORD", "SSL_CERT_FILE", "SSL_CERT_DIR"] {
        c.env_remove(var);
    }
    c.envs(env.iter().copied());
    let start = Instant::now();
    let out = c.output().expect("gazette runs");
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: start.elapsed(),
    }
}

const PASSWORD: [(&str, &str); 1] = [("GAZETTE_SMTP_PASSWORD", SECRET)];

/// `[smtp]` for `relay` as `USER`, plus `more` keys (ca_file, auth, password_command).
fn smtp(relay: &Relay, concurrency: u32, more: &str) -> String {
    format!(
        "[smtp]\nurl = \"{}\"\nusername = \"{USER}\"\nconcurrency = {concurrency}\ntimeout = \"10s\"\n{more}",
        relay.url()
    )
}

fn ca_file(ca: &TestCa) -> String {
    format!("ca_file = {:?}\n", ca.ca.display().to_string())
}

fn status(p: &Project) -> serde_json::Value {
    serde_json::from_str(&p.expect(0, &["status", "--week", WEEK, "--json"])).unwrap()
}

/// Nobody marked: no delivery sent, failed or bounced (all pending, or the send not started).
fn assert_nothing_marked(p: &Project) {
    let s = status(p);
    let count = |k: &str| s[k].as_i64().unwrap_or(0);
    assert_eq!((count("sent"), count("failed"), count("bounced"), count("sending")), (0, 0, 0, 0), "{s}");
    assert_eq!(count("pending"), count("total"), "{s}");
}

/// One message per reader, each on a connection that was encrypted and logged in as `USER`, and
/// no AUTH or MAIL command ever in clear.
fn assert_delivered_over_tls_after_login(relay: &Relay, readers: &[String], mechanisms: &[&str]) {
    let got = relay.messages();
    assert_eq!(got.len(), readers.len(), "one message per subscriber\n{}", relay.log());
    for m in &got {
        assert!(m.tls.is_some(), "the message to {:?} came in clear", m.rcpt_tos);
        assert_eq!(m.user.as_deref(), Some(USER), "the message to {:?} came without the login", m.rcpt_tos);
        assert!(
            m.mechanism.as_deref().is_some_and(|x| mechanisms.contains(&x)),
            "{:?} is not one of {mechanisms:?}",
            m.mechanism
        );
        assert_eq!(m.rcpt_tos.len(), 1, "one recipient per message: {:?}", m.rcpt_tos);
        assert!(m.message.contains("\nSubject: ") || m.message.starts_with("Subject: "), "a whole message");
    }
    let rcpts: HashSet<&str> = got.iter().map(|m| m.rcpt_tos[0].as_str()).collect();
    assert_eq!(rcpts, readers.iter().map(String::as_str).collect(), "every subscriber, once");
    let in_clear: Vec<_> = relay.commands().into_iter().filter(|c| c.tls.is_none()).collect();
    assert!(in_clear.is_empty(), "commands sent in clear: {in_clear:?}");
}

// The relay and the test CA themselves, with lettre's client (rustls, the CA added as a root).

fn lettre_send(
    relay: &Relay,
    ca: &TestCa,
    mechanism: lettre::transport::smtp::authentication::Mechanism,
    secret: &str,
    to: &str,
) -> Result<(), String> {
    use lettre::Transport;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    let root = Certificate::from_pem(&std::fs::read(&ca.ca).unwrap()).unwrap();
    let tls = TlsParameters::builder("localhost".into()).add_root_certificate(root).build().unwrap();
    let transport = lettre::SmtpTransport::builder_dangerous("localhost")
        .port(relay.port)
        .tls(if relay.mode == Mode::Implicit { Tls::Wrapper(tls) } else { Tls::Required(tls) })
        .credentials(Credentials::new(USER.into(), secret.into()))
        .authentication(vec![mechanism])
        .timeout(Some(Duration::from_secs(10)))
        .build();
    let envelope =
        lettre::address::Envelope::new(Some("editor@example.org".parse().unwrap()), vec![to.parse().unwrap()]).unwrap();
    transport
        .send_raw(&envelope, b"Subject: relay check\r\n\r\nhello\r\n")
        .map(|_| ())
        .map_err(|e| format!("{e} ({e:?})"))
}

#[test]
fn the_relay_takes_tls_logins_and_the_test_certificates_fail_as_intended() {
    use lettre::transport::smtp::authentication::Mechanism;
    if !relay::available() {
        return;
    }
    let ca = TestCa::new();
    for mode in [Mode::StartTls, Mode::Implicit] {
        let relay = Relay::start(mode, &ca.localhost, &["--mechanisms", "PLAIN,LOGIN,XOAUTH2"]);
        let readers: Vec<String> = (0..3).map(|i| format!("reader{i}@example.org")).collect();
        for (mechanism, to) in [Mechanism::Plain, Mechanism::Login, Mechanism::Xoauth2].into_iter().zip(&readers) {
            lettre_send(&relay, &ca, mechanism, SECRET, to)
                .unwrap_or_else(|e| panic!("{mode:?} {mechanism}: {e}\n{}", relay.log()));
        }
        assert_delivered_over_tls_after_login(&relay, &readers, &["PLAIN", "LOGIN", "XOAUTH2"]);
        let how: Vec<_> = relay
            .messages()
            .into_iter()
            .map(|m| (m.rcpt_tos[0].clone(), m.mechanism.unwrap(), m.tls.unwrap()))
            .collect();
        assert!(how.iter().all(|(.., tls)| tls.starts_with("TLSv1.")), "{how:?}");
        let mechanisms: Vec<_> = how.iter().map(|(to, mechanism, _)| (to.as_str(), mechanism.as_str())).collect();
        assert_eq!(
            mechanisms,
            [(&*readers[0], "PLAIN"), (&*readers[1], "LOGIN"), (&*readers[2], "XOAUTH2")],
            "{mode:?}"
        );
        assert_eq!(relay.connections(), 3, "{mode:?}: one connection per send");

        let refused = lettre_send(&relay, &ca, Mechanism::Plain, "wrong", "reader9@example.org").unwrap_err();
        assert!(refused.contains("535"), "{mode:?}: {refused}");
        assert_eq!(relay.messages().len(), 3);
    }
    // The two bad certificates fail for the reason their tests are about, and no other.
    let stranger = Relay::start(Mode::StartTls, &ca.stranger, &[]);
    let err = lettre_send(&stranger, &ca, Mechanism::Plain, SECRET, "reader@example.org").unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
    let other = Relay::start(Mode::StartTls, &ca.other_name, &[]);
    let err = lettre_send(&other, &ca, Mechanism::Plain, SECRET, "reader@example.org").unwrap_err();
    assert!(err.contains("NotValidForName"), "{err}");
    assert!(stranger.logins().is_empty() && other.logins().is_empty());
}

/// Reads one SMTP reply (all its lines) and returns it whole.
fn reply(r: &mut impl BufRead) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        all.push_str(&line);
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            return all;
        }
    }
}

#[test]
fn the_starttls_relay_refuses_auth_and_mail_in_clear_and_journals_them() {
    if !relay::available() {
        return;
    }
    let ca = TestCa::new();
    let relay = Relay::start(Mode::StartTls, &ca.localhost, &[]);
    let mut w = TcpStream::connect(("127.0.0.1", relay.port)).unwrap();
    w.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(w.try_clone().unwrap());
    assert!(reply(&mut r).starts_with("220 "));
    w.write_all(b"EHLO client.example\r\n").unwrap();
    let ehlo = reply(&mut r);
    assert!(ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"), "AUTH is offered only after STARTTLS:\n{ehlo}");
    w.write_all(b"AUTH PLAIN AHVzZXIAd3Jvbmc=\r\n").unwrap();
    assert!(reply(&mut r).starts_with("538 "), "AUTH in clear is refused");
    w.write_all(b"MAIL FROM:<editor@example.org>\r\n").unwrap();
    assert!(reply(&mut r).starts_with("530 "), "MAIL in clear is refused");
    w.write_all(b"QUIT\r\n").unwrap();
    assert!(reply(&mut r).starts_with("221 "));

    let seen: Vec<_> = relay.commands().into_iter().map(|c| (c.verb.unwrap(), c.tls)).collect();
    assert_eq!(seen, [("AUTH".to_string(), None), ("MAIL".to_string(), None)], "the journal shows both, in clear");
    assert!(relay.logins().is_empty() && relay.messages().is_empty());
}

// Gazette through the relay.

fn fifty_subscribers_over_tls_after_login(mode: Mode) {
    if !relay::available() {
        return;
    }
    let ca = TestCa::new();
    let relay = Relay::start(mode, &ca.localhost, &[]);
    let p = Project::new(&smtp(&relay, 4, &ca_file(&ca)));
    let readers = p.import_readers(50);
    let args = ["send", "--week", WEEK];
    let ran = run(&p, &args, &PASSWORD);
    assert_eq!(ran.code, Some(0), "{}\nrelay:\n{}", ran.describe(&args), relay.log());
    assert_delivered_over_tls_after_login(&relay, &readers, &["PLAIN", "LOGIN"]);
    assert_eq!(status(&p)["sent"].as_i64(), Some(50));
}

#[test]
fn with_the_test_ca_in_ca_file_starttls_then_auth_delivers_to_fifty_subscribers() {
    fifty_subscribers_over_tls_after_login(Mode::StartTls);
}

#[test]
fn with_the_test_ca_in_ca_file_smtps_delivers_to_fifty_subscribers() {
    fifty_subscribers_over_tls_after_login(Mode::Implicit);
}

#[test]
fn the_test_ca_in_ssl_cert_file_is_trusted_without_ca_file() {
    if !relay::available() {
        return;
    }
    let ca = TestCa::new();
    let relay = Relay::start(Mode::StartTls, &ca.localhost, &[]);
    let p = Project::new(&smtp(&relay, 2, ""));
    let readers = p.import_readers(5);
    let args = ["send", "--week", WEEK];
    let ran = run(&p, &args, &[PASSWORD[0], ("SSL_CERT_FILE", ca.ca.to_str().unwrap())]);
    assert_eq!(ran.code, Some(0), "{}", ran.describe(&args));
    assert_delivered_over_tls_after_login(&relay, &readers, &["PLAIN", "LOGIN"]);
}

#[test]
fn a_certificate_from_an_unknown_issuer_stops_the_send_before_any_login() {
    if !relay::available() {
        return;
    }
    let ca = TestCa::new();
    for mode in [Mode::StartTls, Mode::Implicit] {
        let relay = Relay::start(mode, &ca.stranger, &[]);
        let out = refused_before_login(&relay, &ca, &format!("{mode:?}"));
        assert!(
            out.to_lowercase().contains("unknown issuer") && out.contains("ca_file"),
            "{mode:?}: names the problem and ca_file: {out}"
        );
    }
}

/// Sends the week through `relay` (whose certificate is not accepted) and checks that the send
/// stopped within seconds, before any login or message; returns what gazette printed.
fn refused_before_login(relay: &Relay, ca: &TestCa, case: &str) -> String {
    let p = Project::new(&smtp(relay, 2, &ca_file(ca)));
    p.import_readers(3);
    let args = ["send", "--week", WEEK];
    let ran = run(&p, &args, &PASSWORD);
    let what = ran.describe(&args);
    assert!(ran.code.is_some_and(|c| c != 0), "{case}: {what}");
    assert!(ran.took < Duration::from_secs(10), "{case}: not within seconds: {what}");
    assert!(relay.messages().is_empty(), "{case}");
    assert!(relay.commands().is_empty(), "{case}: no AUTH (in clear or not), no MAIL: {:?}", relay.commands());
    assert_nothing_marked(&p);
    ran.output()
}

#[test]
fn a_certificate_for_another_name_stops_the_send_naming_the_mismatch() {
    if !relay::available() {
        return;
    }
    let ca = TestCa::new();
    let relay = Relay::start(Mode::StartTls, &ca.other_name, &[]);
    let out = refused_before_login(&relay, &ca, "another name");
    assert!(out.to_lowercase().contains("name mismatch"), "names the problem: {out}");
}

#[test]
fn xoauth2_with_a_password_command_logs_in_with_a_fresh_token_per_connection() {
    if !relay::available() {
        return;
    }
    const TOKEN: &str = "ya29.test-token-0123456789";
    let ca = TestCa::new();
    let relay =
        Relay::start(Mode::StartTls, &ca.localhost, &["--mechanisms", "PLAIN,LOGIN,XOAUTH2", "--secret", TOKEN]);
    let runs_dir = tempfile::tempdir().unwrap();
    let runs = runs_dir.path().join("token-command-runs.txt");
    // A trailing newline, as a real token helper prints: the secret is the trimmed output.
    let command = format!("echo ran >> '{}'; printf '%s\\n' '{TOKEN}'", runs.display());
    let p = Project::new(&smtp(
        &relay,
        2,
        &format!("{}auth = \"xoauth2\"\npassword_command = {command:?}\n", ca_file(&ca)),
    ));
    let readers = p.import_readers(20);
    let args = ["send", "--week", WEEK];
    let ran = run(&p, &args, &[]); // no GAZETTE_SMTP_PASSWORD: the command is the only source
    assert_eq!(ran.code, Some(0), "{}\nrelay:\n{}", ran.describe(&args), relay.log());
    assert_delivered_over_tls_after_login(&relay, &readers, &["XOAUTH2"]);

    let connections: HashSet<u64> =
        relay.logins().iter().filter(|l| l.ok == Some(true)).filter_map(|l| l.conn).collect();
    let ran_times = std::fs::read_to_string(&runs).unwrap_or_default().lines().count();
    assert!(connections.len() >= 2, "concurrency = 2 opens two connections: {:?}", relay.logins());
    assert!(
        ran_times >= connections.len(),
        "the command runs for each connection: {ran_times} runs, {} connections",
        connections.len()
    );
}

#[test]
fn a_refused_login_is_a_configuration_error_and_nobody_is_marked() {
    if !relay::available() {
        return;
    }
    let ca = TestCa::new();
    let relay = Relay::start(Mode::StartTls, &ca.localhost, &[]);
    let p = Project::new(&smtp(&relay, 1, &ca_file(&ca)));
    p.import_readers(5);
    for (i, args) in [&["send", "--week", WEEK][..], &["send", "--test", "--week", WEEK]].into_iter().enumerate() {
        let ran = run(&p, args, &[("GAZETTE_SMTP_PASSWORD", "not-the-secret")]);
        let what = format!("{}\nrelay:\n{}", ran.describe(args), relay.log());
        assert_eq!(ran.code, Some(2), "{what}");
        assert!(ran.took < Duration::from_secs(5), "no retrying: {what}");
        let logins = relay.logins();
        assert_eq!(logins.len(), i + 1, "one login attempt per run, not retried: {logins:?}");
        let mechanism = logins[i].mechanism.clone().unwrap();
        let out = ran.output();
        for needed in ["localhost", USER, mechanism.as_str(), "535", "GAZETTE_SMTP_PASSWORD"] {
            assert!(
                out.contains(needed),
                "the message names {needed:?} (server, user, mechanism, reply, secret's source): {what}"
            );
        }
    }
    assert!(relay.messages().is_empty());
    assert_nothing_marked(&p);
}

#[test]
fn check_smtp_logs_in_without_sending_and_reports_tls_and_the_mechanism() {
    if !relay::available() {
        return;
    }
    let ca = TestCa::new();
    let relay = Relay::start(Mode::StartTls, &ca.localhost, &[]);
    let p = Project::new(&smtp(&relay, 4, &ca_file(&ca)));
    let args = ["check", "--smtp"];
    let ran = run(&p, &args, &PASSWORD);
    assert_eq!(ran.code, Some(0), "{}\nrelay:\n{}", ran.describe(&args), relay.log());
    let logins = relay.logins();
    let login = logins.iter().find(|l| l.ok == Some(true)).unwrap_or_else(|| panic!("check logs in: {logins:?}"));
    let mechanism = login.mechanism.clone().unwrap();
    assert!(login.tls.is_some(), "the login went over TLS: {login:?}");
    // lettre 0.11 does not tell which TLS version was agreed; Gazette says TLS is on and verified.
    assert!(ran.stdout.contains("STARTTLS, certificate verified"), "stdout says TLS is on: {}", ran.describe(&args));
    assert!(ran.stdout.contains(&mechanism), "stdout names the mechanism ({mechanism}): {}", ran.describe(&args));
    assert!(relay.messages().is_empty(), "check sends nothing");
    assert!(
        relay.commands().iter().all(|c| c.verb.as_deref() != Some("MAIL")),
        "not even a MAIL: {:?}",
        relay.commands()
    );

    let wrong = run(&p, &args, &[("GAZETTE_SMTP_PASSWORD", "not-the-secret")]);
    assert_eq!(wrong.code, Some(2), "{}", wrong.describe(&args));
}

/// The smallest and largest message of the week for `n` subscribers, in bytes (from the outbox).
fn message_sizes(n: usize) -> (u64, u64) {
    let p = Project::new("[smtp]\nurl = \"file://outbox\"\n");
    p.import_readers(n);
    p.expect(0, &["send", "--week", WEEK]);
    let sizes: Vec<u64> =
        std::fs::read_dir(p.path("outbox")).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).collect();
    (*sizes.iter().min().unwrap(), *sizes.iter().max().unwrap())
}

#[test]
fn a_message_over_the_servers_size_limit_is_never_offered() {
    if !relay::available() {
        return;
    }
    let ca = TestCa::new();
    let relay = Relay::start(Mode::StartTls, &ca.localhost, &["--size", "10000"]);
    let p = Project::new(&smtp(&relay, 2, &ca_file(&ca)));
    p.import_readers(5);
    let args = ["send", "--week", WEEK];
    let ran = run(&p, &args, &PASSWORD);
    let what = ran.describe(&args);
    assert!(ran.code.is_some_and(|c| c != 0), "{what}");
    let out = ran.output();
    let numbers: Vec<u64> = out.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok()).collect();
    assert!(numbers.contains(&10000), "names the limit in bytes: {what}");
    let (smallest, largest) = message_sizes(5);
    let near = |n: u64| n * 100 >= smallest * 95 && n * 100 <= largest * 105;
    assert!(
        numbers.iter().any(|&n| n != u64::from(relay.port) && near(n)),
        "names the message's size in bytes ({smallest} to {largest}): {what}"
    );
    assert!(relay.messages().is_empty());
    let mails: Vec<_> = relay.commands().into_iter().filter(|c| c.verb.as_deref() == Some("MAIL")).collect();
    assert!(mails.is_empty(), "never offered, not even a MAIL FROM: {mails:?}");
    assert_nothing_marked(&p);
}
