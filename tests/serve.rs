//! `gazette serve` over real HTTP: content types and validators, path traversal, the double opt-in
//! flow with a real SMTP sink, anti-enumeration, rate limits, one-click unsubscribe, and the
//! end-to-end path from a sent message's List-Unsubscribe header to the next send skipping the reader.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::web::{Running, confirm_path, get, http, post_form, wait_for_mail};
use common::{Project, Sink, header};
use gazette::server::{self, Options, Rate};
use gazette::store::{Purpose, Status};

fn status_of_cli(p: &Project, email: &str) -> String {
    let csv = p.expect(0, &["subscribers", "export"]);
    csv.lines().find(|l| l.starts_with(email)).unwrap_or_else(|| panic!("{email} not in {csv}")).to_string()
}

#[test]
fn feeds_and_pages_have_their_content_types_and_validators() {
    let p = Project::new("");
    let s = Running::start(&p, Options::default());
    let theme =
        std::fs::read_dir(p.path("out/themes")).unwrap().next().unwrap().unwrap().file_name().into_string().unwrap();
    let theme_feed = format!("/themes/{theme}/atom.xml");
    for (path, ty) in [
        ("/", "text/html; charset=utf-8"),
        ("/index.html", "text/html; charset=utf-8"),
        ("/issues/2023-07-17/", "text/html; charset=utf-8"),
        ("/rss.xml", "application/rss+xml; charset=utf-8"),
        ("/atom.xml", "application/atom+xml; charset=utf-8"),
        ("/feed.json", "application/feed+json; charset=utf-8"),
        (theme_feed.as_str(), "application/atom+xml; charset=utf-8"),
        ("/subscribe", "text/html; charset=utf-8"),
    ] {
        let r = get(s.addr, path);
        assert_eq!((r.status, r.header("content-type")), (200, Some(ty)), "{path}");
        assert!(!r.body.is_empty(), "{path}");
        if path != "/subscribe" {
            assert!(
                r.header("etag").is_some_and(|e| e.starts_with('"') && e.ends_with('"')),
                "{path}: {:?}",
                r.headers
            );
            assert!(r.header("last-modified").is_some_and(|d| d.ends_with(" GMT")), "{path}");
            assert!(r.header("cache-control").is_some_and(|c| c.contains("max-age=")), "{path}");
        }
        if ty.starts_with("text/html") {
            for feed in ["application/rss+xml", "application/atom+xml", "application/feed+json"] {
                assert!(r.body.contains(&format!("<link rel=\"alternate\" type=\"{feed}\"")), "{path} links {feed}");
            }
            assert!(r.body.contains("Signals Weekly"), "{path}");
        }
    }
    // A folder without its slash is redirected (relatively, so a path prefix survives a proxy).
    let r = get(s.addr, "/issues/2023-07-17");
    assert_eq!((r.status, r.header("location")), (308, Some("2023-07-17/")));

    // Round trips to 304, and back to 200 when the validators do not match.
    let first = get(s.addr, "/rss.xml");
    let etag = first.header("etag").unwrap().to_string();
    let modified = first.header("last-modified").unwrap().to_string();
    for (name, value) in [
        ("If-None-Match", etag.clone()),
        ("If-None-Match", format!("\"other\", {etag}")),
        ("If-None-Match", format!("W/{etag}")),
        ("If-None-Match", "*".to_string()),
        ("If-Modified-Since", modified.clone()),
    ] {
        let r = http(s.addr, "GET", "/rss.xml", &[(name, &value)], b"");
        assert_eq!(r.status, 304, "{name}: {value}");
        assert_eq!(r.body, "", "a 304 has no body");
        assert_eq!(r.header("etag"), Some(etag.as_str()));
        assert_eq!(r.header("last-modified"), Some(modified.as_str()));
        assert!(r.header("cache-control").is_some());
    }
    let r = http(s.addr, "GET", "/rss.xml", &[("If-None-Match", "\"other\""), ("If-Modified-Since", &modified)], b"");
    assert_eq!(r.status, 200, "a tag that does not match wins over the date");
    assert_eq!(r.body, first.body);
    let r = http(s.addr, "GET", "/rss.xml", &[("If-Modified-Since", "Mon, 01 Jan 2001 00:00:00 GMT")], b"");
    assert_eq!(r.status, 200);
    // A rebuilt file is served anew, with a new ETag, although the old one was read before.
    let rss = p.path("out/rss.xml");
    let rebuilt = first.body.replace("Signals Weekly", "Signals Weekly, rebuilt");
    std::fs::write(p.path("out/.rss.xml.new"), &rebuilt).unwrap();
    std::fs::rename(p.path("out/.rss.xml.new"), &rss).unwrap();
    let r = http(s.addr, "GET", "/rss.xml", &[("If-None-Match", &etag)], b"");
    assert_eq!(r.status, 200, "the old ETag no longer matches");
    assert_ne!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(r.body, rebuilt);
    // HEAD: the headers without the body.
    let r = http(s.addr, "HEAD", "/atom.xml", &[], b"");
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    assert!(r.header("etag").is_some());
    // The health check.
    let r = get(s.addr, "/healthz");
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
}

/// A connection left open by the client: for `closed_by_server`.
fn connect(addr: SocketAddr, sent: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(sent).unwrap();
    s
}

/// What the server sent before closing `s`, if it closed it before `deadline`; `None` if it still
/// holds it open then.
fn closed_by_server(mut s: TcpStream, deadline: Instant) -> Option<String> {
    let mut got = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(10));
        s.set_read_timeout(Some(left)).unwrap();
        let mut buf = [0; 4096];
        match s.read(&mut buf) {
            Ok(0) => return Some(String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(String::from_utf8_lossy(&got).into_owned());
            }
            Err(_) if Instant::now() >= deadline => return None,
            Err(e) => panic!("{e}"),
        }
    }
}

/// Silent, slow and idle clients cost the server a few seconds each, and do not keep the health
/// check from answering meanwhile.
#[test]
fn silent_slow_and_idle_connections_are_dropped_and_healthz_answers_meanwhile() {
    let p = Project::new("");
    let s = Running::start(&p, Options::default());
    let started = Instant::now();
    let silent: Vec<TcpStream> = (0..300).map(|_| connect(s.addr, b"")).collect();
    let slow_head = connect(s.addr, format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n", s.addr).as_bytes());
    let head = format!(
        "POST /subscribe HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n",
        s.addr
    );
    let slow_body = connect(s.addr, format!("{head}email=ada").as_bytes());
    let mut idle = connect(s.addr, format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr).as_bytes());
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answered = Vec::new();
    while !answered.ends_with(b"\r\n\r\nok\n") {
        let mut buf = [0; 1024];
        let n = idle.read(&mut buf).unwrap();
        assert!(n > 0, "the keep-alive connection was closed after one request");
        answered.extend_from_slice(&buf[..n]);
    }

    let asked = Instant::now();
    let r = get(s.addr, "/healthz");
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "/healthz took {:?} beside 300 silent connections",
        asked.elapsed()
    );

    let deadline = started + server::HEADER_READ_TIMEOUT.max(server::BODY_READ_TIMEOUT) + Duration::from_secs(3);
    for (i, c) in silent.into_iter().enumerate() {
        assert_eq!(closed_by_server(c, deadline).as_deref(), Some(""), "silent connection {i} is still open");
    }
    assert_eq!(closed_by_server(slow_head, deadline).as_deref(), Some(""), "a request head that never ends");
    assert_eq!(closed_by_server(idle, deadline).as_deref(), Some(""), "an idle keep-alive connection");
    let answer = closed_by_server(slow_body, deadline).expect("a body that never ends keeps its connection");
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert_eq!(s.status_of("ada@example.org"), None);
}

/// A declared body over the limit is refused at once, without waiting for it.
#[test]
fn a_body_declared_too_large_is_refused_before_it_is_sent() {
    let p = Project::new("");
    let s = Running::start(&p, Options::default());
    let asked = Instant::now();
    let head = format!(
        "POST /subscribe HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000000000\r\n\r\n",
        s.addr
    );
    let answer = closed_by_server(connect(s.addr, head.as_bytes()), asked + Duration::from_secs(1));
    let answer = answer.expect("no answer within a second");
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    // A chunked body (no length declared) is cut off at the limit too.
    let big = format!("email=x%40example.org&name={}", "a".repeat(8000));
    let chunked = format!(
        "POST /subscribe HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
        s.addr,
        big.len()
    );
    let answer =
        closed_by_server(connect(s.addr, chunked.as_bytes()), Instant::now() + Duration::from_secs(5)).unwrap();
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert_eq!(s.status_of("x@example.org"), None);
}

/// The archive and feeds are not framed by other sites, not sniffed into another type, and the
/// pages run no script; the pages keep their inline styles.
#[test]
fn archive_pages_and_feeds_carry_the_security_headers() {
    let p = Project::new("");
    let s = Running::start(&p, Options::default());
    for path in ["/", "/issues/2023-07-17/", "/rss.xml", "/atom.xml", "/feed.json"] {
        let r = get(s.addr, path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{path}");
        assert!(r.header("referrer-policy").is_some(), "{path}");
        let csp = r.header("content-security-policy").unwrap_or_else(|| panic!("{path}: no CSP in {:?}", r.headers));
        let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
        assert!(directives.contains(&"frame-ancestors 'none'"), "{path}: {csp}");
        assert!(directives.contains(&"default-src 'none'"), "{path}: nothing runs: {csp}");
        assert!(!csp.contains("script-src"), "{path}: {csp}");
        if path.ends_with('/') {
            assert!(r.body.contains("<style>"), "{path}");
            assert!(
                directives.iter().any(|d| d.starts_with("style-src") && d.contains("'unsafe-inline'")),
                "{path}: {csp}"
            );
        }
    }
}

#[test]
fn nothing_outside_out_is_served() {
    let p = Project::new("");
    p.expect(0, &["build"]);
    std::fs::write(p.path("out/.hidden"), "secret").unwrap();
    std::fs::create_dir_all(p.path("out/.git")).unwrap();
    std::fs::write(p.path("out/.git/config"), "secret").unwrap();
    std::fs::write(p.path("secret.txt"), "secret").unwrap();
    std::os::unix::fs::symlink(p.path("secret.txt"), p.path("out/leak.txt")).unwrap();
    std::os::unix::fs::symlink(p.dir.path(), p.path("out/up")).unwrap();
    std::os::unix::fs::symlink(p.path("out/rss.xml"), p.path("out/inside.xml")).unwrap();
    let s = Running::start(&p, Options::default());
    for path in [
        "/../publish.toml",
        "/../secret.txt",
        "/issues/../../publish.toml",
        "/%2e%2e/publish.toml",
        "/%2E%2E%2Fpublish.toml",
        "/issues/%2e%2e/%2e%2e/publish.toml",
        "/..%5cpublish.toml",
        "/.hidden",
        "/%2ehidden",
        "/.git/config",
        "/leak.txt",
        "/up/publish.toml",
        "/up/secret.txt",
        "/%00",
    ] {
        let r = get(s.addr, path);
        assert_eq!(r.status, 404, "{path}: {}", r.body);
        assert!(!r.body.contains("secret") && !r.body.contains("base_url"), "{path}");
    }
    // A symlink that stays inside is fine.
    assert_eq!(get(s.addr, "/inside.xml").status, 200);
}

#[test]
fn subscribe_mails_a_confirmation_link_that_activates_the_reader() {
    let sink = Sink::start(&[]);
    let p = Project::new(&sink.smtp_config());
    let s = Running::start(&p, Options::default());

    let form = get(s.addr, "/subscribe");
    assert!(form.body.contains(r#"<form method="post">"#), "{}", form.body);
    assert!(
        form.body.contains(r#"<label for="email">"#) && form.body.contains(r#"name="email" type="email" required"#)
    );
    assert_eq!(form.header("cache-control"), Some("no-store"));

    let r = post_form(s.addr, "/subscribe", "email=ada%40example.org&name=Ada+Reader", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Check your inbox") && r.body.contains("ada@example.org"), "{}", r.body);
    assert_eq!(s.status_of("ada@example.org"), Some(Status::Pending));

    let mail = wait_for_mail(&sink, "ada@example.org", 1);
    assert_eq!(mail.len(), 1, "one confirmation mail");
    let m = &mail[0];
    assert!(m.subject.contains("Confirm your subscription to Signals Weekly"), "{}", m.subject);
    assert!(header(&m.raw, "To").is_some_and(|t| t.contains("Ada Reader")), "{}", m.raw);
    // RFC 2045 §4: a message that declares a Content-Type says which MIME it is.
    assert_eq!(header(&m.raw, "MIME-Version"), Some("1.0"), "{}", m.raw);
    let link = confirm_path(m);

    // Opening the link changes nothing; pressing its button confirms.
    let page = get(s.addr, &link);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("ada@example.org") && page.body.contains(r#"<button type="submit">"#), "{}", page.body);
    assert_eq!(s.status_of("ada@example.org"), Some(Status::Pending));
    let done = post_form(s.addr, &link, "", &[]);
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("You are subscribed"));
    assert_eq!(s.status_of("ada@example.org"), Some(Status::Active));
    assert_eq!(post_form(s.addr, &link, "", &[]).status, 200, "confirming twice is fine");

    // JSON works too; bad input is named; a large body is refused.
    let r =
        http(s.addr, "POST", "/subscribe", &[("Content-Type", "application/json")], br#"{"email": "bob@example.org"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.header("content-type").unwrap().starts_with("application/json") && r.body.contains("bob@example.org"),
        "{}",
        r.body
    );
    let r = post_form(s.addr, "/subscribe", "email=not-an-address", &[]);
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("`not-an-address` is not a valid email address")
            && r.body.contains(r#"value="not-an-address""#),
        "{}",
        r.body
    );
    let big = format!("email=x%40example.org&name={}", "a".repeat(8000));
    assert_eq!(post_form(s.addr, "/subscribe", &big, &[("X-Forwarded-For", "192.0.2.99")]).status, 413);
    assert_eq!(wait_for_mail(&sink, "bob@example.org", 1).len(), 1);
}

#[test]
fn a_subscribe_answers_alike_for_every_address_and_resends_sparingly() {
    let sink = Sink::start(&[]);
    let p = Project::new(&sink.smtp_config());
    let s = Running::start(&p, Options::default());
    s.add("active@example.org", Status::Active);
    let gone = s.add("gone@example.org", Status::Active);
    let old_confirm = s.token(gone, Purpose::Confirm);
    s.rt.block_on(s.app.store().unsubscribe_by_id(gone)).unwrap();
    assert_eq!(post_form(s.addr, "/subscribe", "email=pending%40example.org", &[]).status, 200);
    assert_eq!(wait_for_mail(&sink, "pending@example.org", 1).len(), 1);
    // Before any new request, the unsubscribed address's confirmation link does nothing.
    let r = post_form(s.addr, &format!("/confirm/{old_confirm}"), "", &[]);
    assert_eq!(r.status, 410, "{}", r.body);
    assert_eq!(s.status_of("gone@example.org"), Some(Status::Unsubscribed));

    let answer = |email: &str| {
        let r = post_form(s.addr, "/subscribe", &format!("email={}", email.replace('@', "%40")), &[]);
        let mut headers: Vec<String> = r
            .headers
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("date") && !k.eq_ignore_ascii_case("content-length"))
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        headers.sort();
        (r.status, headers, r.body.replace(email, "ADDRESS"))
    };
    let reference = answer("new@example.org");
    assert_eq!(reference.0, 200);
    for email in ["pending@example.org", "active@example.org", "gone@example.org"] {
        assert_eq!(answer(email), reference, "{email} is answered like a new address");
    }
    // New: mailed. Pending: not again within the hour. Active: nothing. Unsubscribed: a new confirmation.
    assert_eq!(wait_for_mail(&sink, "new@example.org", 1).len(), 1);
    assert_eq!(wait_for_mail(&sink, "gone@example.org", 1).len(), 1);
    // A mail for these requests would have arrived by now, as those to new@ and gone@ have.
    std::thread::sleep(Duration::from_secs(1));
    let to = |rcpt: &str| sink.messages().iter().filter(|m| m.rcpt == rcpt).count();
    assert_eq!(to("pending@example.org"), 1, "re-sent at most once an hour");
    assert_eq!(to("active@example.org"), 0);
    assert_eq!(s.status_of("active@example.org"), Some(Status::Active));
    assert_eq!(s.status_of("gone@example.org"), Some(Status::Unsubscribed), "a subscribe alone does not reactivate");
    // The new confirmation brings the unsubscribed address back.
    let link = confirm_path(&wait_for_mail(&sink, "gone@example.org", 1)[0]);
    assert_eq!(post_form(s.addr, &link, "", &[]).status, 200);
    assert_eq!(s.status_of("gone@example.org"), Some(Status::Active));
}

#[test]
fn subscribes_are_limited_per_client_and_overall() {
    let p = Project::new("");
    let minute = Duration::from_secs(60);
    let options = Options {
        per_client: Rate { burst: 2, every: minute },
        overall: Rate { burst: 4, every: minute },
        ..Options::default()
    };
    let s = Running::start(&p, options);
    let from = |ip: &str, n: usize| {
        post_form(s.addr, "/subscribe", &format!("email=r{n}%40example.org"), &[("X-Forwarded-For", ip)])
    };
    assert_eq!(from("192.0.2.1", 1).status, 200);
    assert_eq!(from("192.0.2.1", 2).status, 200);
    let r = from("192.0.2.1", 3);
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some_and(|s| s.parse::<u64>().unwrap() > 0));
    assert_eq!(s.status_of("r3@example.org"), None, "a refused request stores nothing");
    assert_eq!(from("198.51.100.1", 4).status, 200, "another client is not held back by the first");
    assert_eq!(from("198.51.100.1", 5).status, 200);
    assert_eq!(from("203.0.113.9", 6).status, 429, "everyone together is limited too");
    // The rest of the site is not limited.
    assert_eq!(get(s.addr, "/subscribe").status, 200);
}

#[test]
fn one_click_unsubscribe_changes_only_on_post_and_only_with_a_genuine_token() {
    let p = Project::new("");
    let s = Running::start(&p, Options::default());
    let id = s.add("ada@example.org", Status::Active);
    let other = s.add("bob@example.org", Status::Active);
    let token = s.token(id, Purpose::Unsubscribe);
    let path = format!("/unsubscribe/{token}");

    let page = get(s.addr, &path);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("ada@example.org"), "{}", page.body);
    assert!(
        page.body.contains(r#"<form method="post">"#)
            && page.body.contains(r#"name="List-Unsubscribe" value="One-Click""#)
    );
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(s.status_of("ada@example.org"), Some(Status::Active), "a GET changes nothing");

    let (_, mac) = token.split_once('.').unwrap();
    let mut flipped = token.clone();
    let last = if token.ends_with('0') { "1" } else { "0" };
    flipped.replace_range(token.len() - 1.., last);
    for forged in [
        format!("{other}.{mac}"),
        flipped,
        token[..token.len() - 2].to_string(),
        s.token(id, Purpose::Confirm),
        "1".to_string(),
        "garbage".to_string(),
        format!("{token}%00"),
    ] {
        for method in ["GET", "POST"] {
            let r = http(
                s.addr,
                method,
                &format!("/unsubscribe/{forged}"),
                &[("Content-Type", "application/x-www-form-urlencoded")],
                b"List-Unsubscribe=One-Click",
            );
            assert!(r.status == 400 || r.status == 404, "{method} {forged}: {}", r.status);
        }
    }
    assert_eq!(s.status_of("ada@example.org"), Some(Status::Active));
    assert_eq!(s.status_of("bob@example.org"), Some(Status::Active));

    let r = post_form(s.addr, &path, "List-Unsubscribe=One-Click", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("location").is_none() && r.header("set-cookie").is_none());
    assert!(r.body.contains("You are unsubscribed"));
    assert_eq!(s.status_of("ada@example.org"), Some(Status::Unsubscribed));
    assert_eq!(s.status_of("bob@example.org"), Some(Status::Active));
    let again = post_form(s.addr, &path, "List-Unsubscribe=One-Click", &[]);
    assert_eq!(again.status, 200, "idempotent");
    let page = get(s.addr, &path);
    assert!(page.status == 200 && !page.body.contains("<form"), "{}", page.body);
    // A confirmation link never undoes an unsubscribe.
    assert_eq!(post_form(s.addr, &format!("/confirm/{}", s.token(id, Purpose::Confirm)), "", &[]).status, 410);
    assert_eq!(s.status_of("ada@example.org"), Some(Status::Unsubscribed));
}

/// The issue's "done when": a one-click POST to the URL in a sent message's List-Unsubscribe header
/// unsubscribes that reader, and the next send skips them. The server is the real binary.
#[test]
fn the_list_unsubscribe_url_of_a_sent_message_works_and_the_next_send_skips_the_reader() {
    let sink = Sink::start(&[]);
    let p = Project::new(&sink.smtp_config());
    let readers = p.import_readers(3);
    p.expect(0, &["send", "--week", "2023-07-23"]);
    let message = sink.messages().into_iter().find(|m| m.rcpt == readers[1]).expect("reader 1 got the issue");
    let url = header(&message.raw, "List-Unsubscribe").unwrap().trim_matches(['<', '>']).to_string();
    let path = url.strip_prefix("https://signals.example.org").unwrap_or_else(|| panic!("{url}")).to_string();

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child =
        p.command(&["serve", "--listen", &addr.to_string()]).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline && child.try_wait().unwrap().is_none(), "gazette serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = post_form(addr, &path, "List-Unsubscribe=One-Click", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(status_of_cli(&p, &readers[1]).contains("unsubscribed"));
    assert!(status_of_cli(&p, &readers[0]).contains("active"));
    // A sign-up and its confirmation, which the log tells as the unsubscribe is.
    assert_eq!(post_form(addr, "/subscribe", "email=newcomer%40example.org", &[]).status, 200);
    // `serve` without behind_proxy writes its links for the address it listens on: the path is what counts.
    let mail = wait_for_mail(&sink, "newcomer@example.org", 1);
    let raw = mail[0].raw.replace("=\r\n", "").replace("=\n", "");
    let link: String = raw[raw.find("/confirm/").unwrap_or_else(|| panic!("no confirm link in {raw}"))..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    assert_eq!(post_form(addr, &link, "", &[]).status, 200);
    assert!(status_of_cli(&p, "newcomer@example.org").contains("active"));

    // SIGTERM: a graceful stop, exit 0, and the log has one line per request without the token.
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("POST /unsubscribe/{token} 200"), "{log}");
    let token = path.rsplit('/').next().unwrap();
    assert!(!log.contains(token), "the token is not logged: {log}");
    let id = |who: &str| -> i64 {
        let list: serde_json::Value =
            serde_json::from_str(&p.expect(0, &["subscribers", "list", "--format", "json"])).unwrap();
        list.as_array().unwrap().iter().find(|s| s["email"] == who).unwrap()["id"].as_i64().unwrap()
    };
    let newcomer = id("newcomer@example.org");
    assert!(
        log.contains(&format!("subscriber {newcomer} asked to subscribe (pending): confirmation mail on its way")),
        "{log}"
    );
    assert!(log.contains(&format!("subscriber {newcomer} confirmed: active")), "{log}");
    assert!(log.contains(&format!("subscriber {} unsubscribed", id(&readers[1]))), "{log}");
    assert!(!log.contains("newcomer@example.org"), "ids, not addresses, are logged: {log}");

    p.expect(0, &["send", "--week", "2023-07-30"]);
    let week2: Vec<String> =
        sink.messages().into_iter().filter(|m| m.message_id.starts_with("<2023-07-24.")).map(|m| m.rcpt).collect();
    assert_eq!(week2.len(), 3, "the next week goes to the two readers still subscribed and the newcomer: {week2:?}");
    assert!(week2.iter().any(|r| r == "newcomer@example.org"), "{week2:?}");
    assert!(!week2.contains(&readers[1]), "{week2:?}");
}

/// A reader in headless Chromium types into the subscribe form and clicks its button, confirms from
/// the mailed link, and clicks the unsubscribe page's button: real input events over the DevTools
/// protocol (tests/browser.py), no scripted submits. Screenshots go to the target folder.
#[test]
fn a_reader_subscribes_confirms_and_unsubscribes_in_a_real_browser() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !std::path::Path::new(&chromium).exists() || common::python_with(&["json"]).is_none() {
        let why = format!("the browser test needs {chromium} and python3 (.ci/run installs Chromium)");
        assert!(std::env::var_os("CI").is_none(), "{why}");
        eprintln!("SKIPPED: {why}");
        return;
    }
    let browse = |steps: serde_json::Value| -> Vec<String> {
        let out = std::process::Command::new("python3")
            .arg(common::repo().join("tests/browser.py"))
            .arg(steps.to_string())
            .env("CHROMIUM", &chromium)
            .output()
            .unwrap();
        assert!(out.status.success(), "browser.py: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let shots = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let sink = Sink::start(&[]);
    let p = Project::new(&sink.smtp_config());
    let s = Running::start(&p, Options::default());
    let base = format!("http://{}", s.addr);

    let text = browse(serde_json::json!([
        {"visit": format!("{base}/subscribe")},
        {"click": "#email"}, {"type": "bea@example.org"},
        {"click": "#name"}, {"type": "Bea Browser"},
        {"screenshot": shots.join("subscribe.png")},
        {"click": "button[type=submit]", "navigates": true},
        {"text": true},
    ]));
    assert!(text[0].contains("Check your inbox") && text[0].contains("bea@example.org"), "{text:?}");
    assert_eq!(s.status_of("bea@example.org"), Some(Status::Pending));

    let mail = wait_for_mail(&sink, "bea@example.org", 1);
    assert!(header(&mail[0].raw, "To").is_some_and(|t| t.contains("Bea Browser")), "the typed name arrived");
    let text = browse(serde_json::json!([
        {"visit": format!("{base}{}", confirm_path(&mail[0]))},
        {"click": "button[type=submit]", "navigates": true},
        {"text": true},
    ]));
    assert!(text[0].contains("You are subscribed"), "{text:?}");
    assert_eq!(s.status_of("bea@example.org"), Some(Status::Active));

    let id = s.rt.block_on(s.app.store().subscriber_by_email(&"bea@example.org".parse().unwrap())).unwrap().unwrap().id;
    let text = browse(serde_json::json!([
        {"visit": format!("{base}/unsubscribe/{}", s.token(id, Purpose::Unsubscribe))},
        {"screenshot": shots.join("unsubscribe.png")},
        {"text": true},
        {"click": "button[type=submit]", "navigates": true},
        {"text": true},
    ]));
    assert!(text[0].contains("Stop sending Signals Weekly to bea@example.org?"), "{text:?}");
    assert!(text[1].contains("You are unsubscribed"), "{text:?}");
    assert_eq!(s.status_of("bea@example.org"), Some(Status::Unsubscribed));
    eprintln!("screenshots: {}", shots.display());
}

/// The limits the README states are the ones the server applies.
#[test]
fn the_readme_states_the_connection_limits_in_force() {
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    let readme = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    let (head, body) = (server::HEADER_READ_TIMEOUT.as_secs(), server::BODY_READ_TIMEOUT.as_secs());
    for stated in [
        format!("{head} seconds to send a request's head and {body} more for its body"),
        format!("`Content-Length` over {} KB is refused at once", server::MAX_BODY / 1024),
        format!("idle keep-alive connection is closed after {head} seconds"),
        format!("at most {} connections are open at once", server::MAX_CONNECTIONS),
    ] {
        assert!(readme.contains(&stated), "README.md does not say {stated:?}");
    }
}

/// A `Running` service whose relay is `port`, with `serve`'s confirmation retries every 200 ms.
fn retrying(port: u16) -> (Project, Running) {
    let p = Project::new(&format!("[smtp]\nurl = \"smtp://127.0.0.1:{port}?tls=none\"\n"));
    let s = Running::start(&p, Options { retry_confirmations_every: Duration::from_millis(200), ..Options::default() });
    s.rt.spawn(server::retry_confirmations(s.app.clone()));
    (p, s)
}

#[test]
fn a_confirmation_the_relay_could_not_take_is_sent_again_in_the_background() {
    let port = common::free_port();
    // The relay answers 450 to every recipient: try later.
    let busy = Sink::start_on(port, &["-r", "rcpt"]);
    let (_p, s) = retrying(port);
    assert_eq!(post_form(s.addr, "/subscribe", "email=later%40example.org", &[]).status, 200);
    s.rt.block_on(s.app.finish_mails(Duration::from_secs(20)));
    std::thread::sleep(Duration::from_millis(500)); // rounds that meet the 450 too
    assert_eq!(busy.count(), 0);
    drop(busy);
    // The relay takes mail again, on the same port: the next round sends it, with no new subscribe.
    let sink = Sink::start_on(port, &[]);
    let got = wait_for_mail(&sink, "later@example.org", 1);
    assert_eq!(got.len(), 1, "the confirmation mail was sent again");
    assert_eq!(post_form(s.addr, &confirm_path(&got[0]), "", &[]).status, 200);
    assert_eq!(s.status_of("later@example.org"), Some(Status::Active));
    std::thread::sleep(Duration::from_millis(800));
    let confirmations = |m: &&common::Received| m.subject.starts_with("Confirm");
    let again = wait_for_mail(&sink, "later@example.org", 1);
    assert_eq!(again.iter().filter(confirmations).count(), 1, "sent once, not again each round");
}

#[test]
fn a_confirmation_the_relay_refused_is_not_retried() {
    let port = common::free_port();
    // The relay answers 500 to every recipient: a refusal that the same mail would meet again.
    let refusing = Sink::start_on(port, &["-f", "rcpt"]);
    let (_p, s) = retrying(port);
    assert_eq!(post_form(s.addr, "/subscribe", "email=refused%40example.org", &[]).status, 200);
    s.rt.block_on(s.app.finish_mails(Duration::from_secs(20)));
    drop(refusing);
    let sink = Sink::start_on(port, &[]);
    std::thread::sleep(Duration::from_millis(1200)); // several rounds
    assert_eq!(sink.count(), 0, "a refused confirmation is sent again only when asked again");
    // Asked again, it is sent.
    assert_eq!(post_form(s.addr, "/subscribe", "email=refused%40example.org", &[]).status, 200);
    assert_eq!(wait_for_mail(&sink, "refused@example.org", 1).len(), 1);
}
