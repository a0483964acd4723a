//! The welcome over real HTTP and SMTP: a reader subscribes and confirms against `server::App`,
//! Postfix's smtp-sink receives the welcome, and the message is parsed back (mail-parser) and its
//! DKIM signature checked by dkimpy. Once ever, deferred on a 4xx and sent by the retry round,
//! and a broken project template is named by `gazette check` and stops `serve`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Project, Sink, header};
use gazette::server::{self, App, Options};
use gazette::store::welcomes::Welcome;
use gazette::store::{DeliveryState, NewSubscriber, Purpose, Source, Status, sign_token, verify_token};
use mail_parser::{MessageParser, MimeHeaders};

/// One HTTP/1.1 request on its own connection; the status and the body.
fn post(addr: SocketAddr, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {text:?}"));
    (status, text)
}

/// The service running in this process on 127.0.0.1:0, against a project's database and out folder.
struct Running {
    addr: SocketAddr,
    app: App,
    rt: tokio::runtime::Runtime,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Running {
    fn start(p: &Project) -> Running {
        if !p.path("out/index.html").exists() {
            p.expect(0, &["build"]);
        }
        let config = gazette::Config::load(&p.path("publish.toml")).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let (app, listener) = rt.block_on(async {
            let app = App::new(&config, Options::default()).await.unwrap();
            (app, tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
        });
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        rt.spawn(server::serve(listener, server::router(app.clone()), async {
            let _ = stopped.await;
        }));
        Running { addr, app, rt, _stop: stop }
    }

    /// A pending subscriber added directly (no confirmation mail), with their confirm link's path.
    fn pending(&self, email: &str) -> (i64, String) {
        let store = self.app.store().clone();
        let new =
            NewSubscriber { email: email.parse().unwrap(), name: None, status: Status::Pending, source: Source::Web };
        self.rt.block_on(async move {
            store.add(&new, false).await.unwrap();
            let id = store.subscriber_by_email(&new.email).await.unwrap().unwrap().id;
            (id, format!("/confirm/{}", sign_token(&store.token_key().await.unwrap(), id, Purpose::Confirm)))
        })
    }

    fn id_of(&self, email: &str) -> i64 {
        let store = self.app.store().clone();
        let email = email.parse().unwrap();
        self.rt.block_on(async move { store.subscriber_by_email(&email).await.unwrap().unwrap().id })
    }

    fn welcome(&self, id: i64) -> Option<Welcome> {
        let store = self.app.store().clone();
        self.rt.block_on(async move { store.welcomes().get(id).await.unwrap() })
    }

    fn verifies(&self, token: &str, purpose: Purpose) -> Option<i64> {
        let store = self.app.store().clone();
        let key = self.rt.block_on(async move { store.token_key().await.unwrap() });
        verify_token(&key, token, purpose)
    }

    /// Waits for the mails being sent in the background.
    fn settle(&self) {
        self.rt.block_on(self.app.finish_mails(Duration::from_secs(30)));
    }
}

fn welcomes_to(sink: &Sink, rcpt: &str) -> Vec<common::Received> {
    sink.messages().into_iter().filter(|m| m.rcpt == rcpt && m.subject == "Welcome to Signals Weekly").collect()
}

/// The messages to `rcpt` whose subject starts with `subject`, waiting up to 20 s for one.
fn wait_for(sink: &Sink, rcpt: &str, subject: &str) -> Vec<common::Received> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got: Vec<_> =
            sink.messages().into_iter().filter(|m| m.rcpt == rcpt && m.subject.starts_with(subject)).collect();
        if !got.is_empty() || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The path of the confirmation link in a received message.
fn confirm_path(m: &common::Received) -> String {
    let raw = m.raw.replace("=\r\n", "").replace("=\n", "");
    let at = raw.find("https://signals.example.org/confirm/").unwrap_or_else(|| panic!("no confirm link in {}", m.raw));
    let url: String = raw[at..].chars().take_while(|c| !c.is_whitespace()).collect();
    url.trim_start_matches("https://signals.example.org").to_string()
}

/// The message as smtp-sink dumped it, without the lines it adds on top (`X-Client-Addr` ...).
fn as_sent(raw: &str) -> &str {
    let at = raw.find("\nDKIM-Signature:").or_else(|| raw.find("\nFrom:")).or_else(|| raw.find("\nMIME-Version:"));
    at.map_or(raw, |at| &raw[at + 1..])
}

#[test]
fn a_confirmed_reader_gets_one_welcome_once_ever() {
    let sink = Sink::start(&[]);
    let p = Project::new(&format!("bounce_address = \"bounces@signals.example.org\"\n\n{}", sink.smtp_config()));
    let s = Running::start(&p);

    assert_eq!(post(s.addr, "/subscribe", "email=ada%40example.org&name=Ada+Reader").0, 200);
    let confirmation = wait_for(&sink, "ada@example.org", "Confirm");
    assert_eq!(confirmation.len(), 1);
    let link = confirm_path(&confirmation[0]);
    assert_eq!(welcomes_to(&sink, "ada@example.org").len(), 0, "nothing before the confirmation");
    assert_eq!(post(s.addr, &link, "").0, 200);
    let got = wait_for(&sink, "ada@example.org", "Welcome");
    assert_eq!(got.len(), 1, "one welcome");
    let id = s.id_of("ada@example.org");
    let ledger = s.welcome(id).expect("the welcome is in the ledger");
    assert_eq!((ledger.state, ledger.attempts), (DeliveryState::Sent, 1));

    // The message parsed back: headers as an issue's copy has them, multipart text then HTML.
    let raw = as_sent(&got[0].raw);
    let m = MessageParser::default().parse(raw.as_bytes()).expect("a MIME message");
    assert_eq!(m.header_raw("MIME-Version").map(str::trim), Some("1.0"));
    let ct = m.content_type().unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("alternative")));
    assert_eq!((m.text_body.as_slice(), m.html_body.as_slice()), (&[1][..], &[2][..]), "text first, HTML last");
    assert_eq!(format!("<{}>", m.message_id().unwrap()), ledger.message_id, "the Message-ID fixed when queued");
    assert_eq!(m.header_raw("List-Unsubscribe-Post").map(str::trim), Some("List-Unsubscribe=One-Click"));
    assert!(m.header_raw("List-Id").is_some_and(|v| v.contains("Signals Weekly")), "{raw}");
    let unsubscribe = m.header_raw("List-Unsubscribe").unwrap().trim().trim_matches(['<', '>']).to_string();
    let token = unsubscribe.strip_prefix("https://signals.example.org/unsubscribe/").expect("a one-click URL");
    assert_eq!(s.verifies(token, Purpose::Unsubscribe), Some(id));
    // No VERP token for a welcome: the bounce address as it is, and a DSN envelope id of its own.
    let mail_from = header(&got[0].raw, "X-Mail-Args").unwrap_or_default();
    assert!(mail_from.starts_with("<bounces@signals.example.org>"), "{mail_from}");
    assert!(mail_from.contains(&format!("ENVID=welcome.{id}")), "{mail_from}");

    let text = m.body_text(0).unwrap();
    let html = m.body_html(0).unwrap();
    assert!(text.contains(&format!("Unsubscribe with one click:\n{unsubscribe}")), "{text}");
    assert!(text.contains("A new issue comes every Monday at 08:00 (Europe/London time)"), "{text}");
    let doc = scraper::Html::parse_document(&html);
    let links: Vec<(String, String)> = doc
        .select(&scraper::Selector::parse("a").unwrap())
        .map(|a| (a.text().collect(), a.value().attr("href").unwrap().to_string()))
        .collect();
    let href = |text: &str| links.iter().find(|(t, _)| t == text).map(|(_, h)| h.clone()).unwrap();
    assert_eq!(href("Unsubscribe"), unsubscribe);
    let preferences = href("your preferences page");
    let token = preferences.strip_prefix("https://signals.example.org/preferences/").expect("a preferences link");
    assert_eq!(s.verifies(token, Purpose::Preferences), Some(id), "the preferences token names the reader");
    assert_eq!(s.verifies(token, Purpose::Unsubscribe), None, "and is good for nothing else");

    // The latest issue's contents: each title links to its place on the newest issue's page.
    let newest = std::fs::read_dir(p.path("out/issues"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .max()
        .unwrap();
    let page = std::fs::read_to_string(p.path(&format!("out/issues/{newest}/index.html"))).unwrap();
    let prefix = format!("https://signals.example.org/issues/{newest}/#d-");
    let listed: Vec<&(String, String)> = links.iter().filter(|(_, h)| h.starts_with(&prefix)).collect();
    assert!(!listed.is_empty(), "the latest issue ({newest}) is listed: {links:?}");
    for (title, href) in &listed {
        let anchor = &href[prefix.len()..];
        assert!(page.contains(&format!("id=\"d-{anchor}\"")), "{href} is a digest of the page");
        assert!(text.contains(title.as_str()), "the text part lists {title} too");
    }
    assert_eq!(listed.len(), page.matches("<article id=\"d-").count(), "every digest of the issue");
    assert!(!links.iter().any(
        |(_, h)| h.contains("/issues/") && !h.starts_with(&format!("https://signals.example.org/issues/{newest}/"))
    ));

    // Confirming again, and unsubscribing then confirming a new request, send no second welcome.
    assert_eq!(post(s.addr, &link, "").0, 200);
    assert_eq!(post(s.addr, &format!("/unsubscribe/{}", sign_token_of(&s, id, Purpose::Unsubscribe)), "").0, 200);
    assert_eq!(post(s.addr, "/subscribe", "email=ada%40example.org").0, 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    while wait_for(&sink, "ada@example.org", "Confirm").len() < 2 {
        assert!(Instant::now() < deadline, "a second confirmation mail");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, page) = post(s.addr, &link, "");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("You are subscribed"), "{page}");
    s.settle();
    s.rt.block_on(server::retry_welcomes_once(&s.app, chrono::Utc::now() + chrono::Duration::days(2))).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(welcomes_to(&sink, "ada@example.org").len(), 1, "once ever");
    assert_eq!(s.welcome(id).unwrap(), ledger);
}

fn sign_token_of(s: &Running, id: i64, purpose: Purpose) -> String {
    let store = s.app.store().clone();
    s.rt.block_on(async move { sign_token(&store.token_key().await.unwrap(), id, purpose) })
}

#[test]
fn a_welcome_the_relay_could_not_take_is_deferred_and_the_retry_round_sends_it_once() {
    let port = common::free_port();
    // The relay answers 450 to every recipient: try later.
    let busy = Sink::start_on(port, &["-r", "rcpt"]);
    let p = Project::new(&format!("[smtp]\nurl = \"smtp://127.0.0.1:{port}?tls=none\"\n"));
    let s = Running::start(&p);
    let (id, link) = s.pending("later@example.org");
    let before = chrono::Utc::now();
    assert_eq!(post(s.addr, &link, "").0, 200);
    s.settle();
    let deferred = s.welcome(id).expect("queued");
    assert_eq!((deferred.state, deferred.attempts), (DeliveryState::Pending, 1));
    assert!(deferred.last_error.as_deref().is_some_and(|e| e.contains("450")), "{deferred:?}");
    assert!(deferred.next_attempt_at >= before.timestamp() + 300, "it waits before the next try: {deferred:?}");
    assert_eq!(busy.count(), 0);
    drop(busy);
    let sink = Sink::start_on(port, &[]);
    // Not due yet: the round leaves it.
    let round = |at| s.rt.block_on(server::retry_welcomes_once(&s.app, at)).unwrap();
    assert_eq!(round(chrono::Utc::now()), 0);
    assert_eq!(sink.count(), 0);
    // Due: sent once, with the Message-ID it was given when queued, and never again.
    let due = chrono::DateTime::from_timestamp(deferred.next_attempt_at, 0).unwrap();
    assert_eq!(round(due), 1);
    let got = wait_for(&sink, "later@example.org", "Welcome");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message_id, deferred.message_id);
    let sent = s.welcome(id).unwrap();
    assert_eq!((sent.state, sent.attempts, sent.last_error), (DeliveryState::Sent, 2, None));
    assert_eq!(round(due + chrono::Duration::days(1)), 0);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.count(), 1, "sent once");
}

/// Makes an RSA key in the format `[dkim]` reads (`dkim.key`) and its DER public key (`dkim.pub.der`).
fn make_key(dir: &Path) -> bool {
    let openssl =
        |args: &[&str]| Command::new("openssl").args(args).current_dir(dir).output().is_ok_and(|o| o.status.success());
    openssl(&["genrsa", "-traditional", "-out", "dkim.key", "2048"])
        && openssl(&["rsa", "-in", "dkim.key", "-pubout", "-outform", "DER", "-out", "dkim.pub.der"])
}

/// dkimpy's verdict on the message in `file`, with `public` (DER) as the key DNS publishes.
const VERIFY: &str = r#"
import base64, sys, dkim
message = open(sys.argv[1], 'rb').read()
key = base64.b64encode(open(sys.argv[2], 'rb').read())
def dns(name, timeout=5):
    assert name == b'gazette._domainkey.signals.example.org.', name
    return b'v=DKIM1; k=rsa; p=' + key
print('pass' if dkim.verify(message, dnsfunc=dns) else 'fail')
"#;

#[test]
fn with_dkim_the_welcome_is_signed_and_dkimpy_verifies_it() {
    let Some(python) = common::needs_python(&["dkim"]) else { return };
    let sink = Sink::start(&[]);
    let p = Project::new(&format!(
        "{}\n[dkim]\ndomain = \"signals.example.org\"\nselector = \"gazette\"\nprivate_key = \"dkim.key\"\n",
        sink.smtp_config()
    ));
    if !common::needs(make_key(p.dir.path()), "the openssl command") {
        return;
    }
    let s = Running::start(&p);
    let (_, link) = s.pending("signed@example.org");
    assert_eq!(post(s.addr, &link, "").0, 200);
    let got = wait_for(&sink, "signed@example.org", "Welcome");
    assert_eq!(got.len(), 1);
    let raw = as_sent(&got[0].raw);
    let signature = header(raw, "DKIM-Signature").expect("a DKIM-Signature");
    assert!(signature.contains("d=signals.example.org") && signature.contains("s=gazette"), "{signature}");
    let message = p.path("welcome.eml");
    std::fs::write(&message, raw).unwrap();
    let out = Command::new(python).arg("-c").arg(VERIFY).arg(&message).arg(p.path("dkim.pub.der")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "pass");
    // The control: a changed List-Unsubscribe (signed) fails.
    std::fs::write(&message, raw.replacen("List-Unsubscribe: <https://", "List-Unsubscribe: <http://", 1)).unwrap();
    let out = Command::new(python).arg("-c").arg(VERIFY).arg(&message).arg(p.path("dkim.pub.der")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "fail");
}

#[test]
fn a_broken_welcome_template_of_the_project_is_named_by_check_and_stops_serve() {
    let p = Project::new("");
    std::fs::create_dir(p.path("templates")).unwrap();
    let file = p.path("templates/welcome.mjml");
    std::fs::write(&file, "<mjml><mj-body>\n<mj-section><mj-column><mj-text>\n{% if %}\n</mj-text></mj-column></mj-section></mj-body></mjml>\n").unwrap();
    let out = p.run(&["check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("{}:3: ", file.display())), "{stdout}");

    // It parses, but the welcome it makes has no unsubscribe link: found by rendering it.
    std::fs::write(
        &file,
        "<mjml><mj-body><mj-section><mj-column><mj-text>Hello</mj-text></mj-column></mj-section></mj-body></mjml>\n",
    )
    .unwrap();
    let out = p.run(&["check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains(&format!("{}: the unsubscribe link is missing", file.display())), "{stdout}");
    p.expect(0, &["build"]);
    let config = gazette::Config::load(&p.path("publish.toml")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let err = rt.block_on(App::new(&config, Options::default())).err().expect("serve does not start").to_string();
    assert!(err.contains(&format!("{}: the unsubscribe link is missing", file.display())), "{err}");
}

#[test]
fn a_welcome_refused_for_the_address_bounces_the_reader_and_one_refused_as_spam_keeps_them() {
    for (reply, state, status) in [
        ("550 5.1.1 No such user", DeliveryState::Bounced, Status::Bounced),
        ("550 5.7.1 Message rejected as spam", DeliveryState::Failed, Status::Active),
    ] {
        let sink = Sink::start(&["-f", "rcpt", "-B", reply]);
        let p = Project::new(&sink.smtp_config());
        let s = Running::start(&p);
        let (id, link) = s.pending("refused@example.org");
        assert_eq!(post(s.addr, &link, "").0, 200);
        s.settle();
        let w = s.welcome(id).unwrap();
        assert_eq!((w.state, w.attempts), (state, 1), "{reply}: {w:?}");
        assert!(w.last_error.as_deref().is_some_and(|e| e.contains(&reply[4..])), "{reply}: {w:?}");
        let store = s.app.store().clone();
        let reader = s.rt.block_on(async move { store.subscriber_by_id(id).await.unwrap().unwrap() });
        assert_eq!(reader.status, status, "{reply}");
        // A refusal is final: the retry rounds leave it.
        assert_eq!(
            s.rt.block_on(server::retry_welcomes_once(&s.app, chrono::Utc::now() + chrono::Duration::days(1))).unwrap(),
            0
        );
        assert_eq!(sink.count(), 0);
    }
}
