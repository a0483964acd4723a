//! The web service over real HTTP, for the tests of `gazette serve` (tests/serve.rs) and of the
//! preferences page (tests/preferences.rs): raw HTTP/1.1 requests, the service running in the test's
//! process on port 0, and the links in the mail it sends.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use gazette::server::{self, App, Options};
use gazette::store::{NewSubscriber, Purpose, Source, Status, sign_token};

use super::{Project, Received, Sink};

/// A response as read off the socket.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on its own connection, exactly as given (the path is not normalised).
pub fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no response head in {text:?}"));
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let chunked = headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_string() };
    Reply { status, headers, body }
}

pub fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

pub fn get(addr: SocketAddr, path: &str) -> Reply {
    http(addr, "GET", path, &[], b"")
}

pub fn post_form(addr: SocketAddr, path: &str, body: &str, extra: &[(&str, &str)]) -> Reply {
    let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
    headers.extend_from_slice(extra);
    http(addr, "POST", path, &headers, body.as_bytes())
}

/// The service running in this process on 127.0.0.1:0, against a project's database and out folder.
pub struct Running {
    pub addr: SocketAddr,
    pub app: App,
    pub rt: tokio::runtime::Runtime,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Running {
    pub fn start(p: &Project, options: Options) -> Running {
        if !p.path("out/index.html").exists() {
            p.expect(0, &["build"]);
        }
        let config = gazette::Config::load(&p.path("publish.toml")).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let (app, listener) = rt.block_on(async {
            (App::new(&config, options).await.unwrap(), tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
        });
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        rt.spawn(server::serve(listener, server::router(app.clone()), async {
            let _ = stopped.await;
        }));
        Running { addr, app, rt, _stop: stop }
    }

    pub fn status_of(&self, email: &str) -> Option<Status> {
        let store = self.app.store().clone();
        let email = email.parse().unwrap();
        self.rt.block_on(async move { store.subscriber_by_email(&email).await.unwrap().map(|s| s.status) })
    }

    pub fn add(&self, email: &str, status: Status) -> i64 {
        let store = self.app.store().clone();
        let new = NewSubscriber { email: email.parse().unwrap(), name: None, status, source: Source::Cli };
        self.rt.block_on(async move {
            store.add(&new, true).await.unwrap();
            store.subscriber_by_email(&new.email).await.unwrap().unwrap().id
        })
    }

    pub fn token(&self, id: i64, purpose: Purpose) -> String {
        let store = self.app.store().clone();
        self.rt.block_on(async move { sign_token(&store.token_key().await.unwrap(), id, purpose) })
    }
}

/// The messages to `rcpt`, waiting up to 20 s for `n` of them to arrive.
pub fn wait_for_mail(sink: &Sink, rcpt: &str, n: usize) -> Vec<Received> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got: Vec<_> = sink.messages().into_iter().filter(|m| m.rcpt == rcpt).collect();
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The path of the confirmation link in a received message.
pub fn confirm_path(m: &Received) -> String {
    link_path(m, "/confirm/")
}

/// The path of the first link to `https://signals.example.org{prefix}…` in a received message
/// (`/confirm/`, `/address/`).
pub fn link_path(m: &Received, prefix: &str) -> String {
    let raw = m.raw.replace("=\r\n", "").replace("=\n", ""); // quoted-printable soft line breaks
    let start = format!("https://signals.example.org{prefix}");
    let at = raw.find(&start).unwrap_or_else(|| panic!("no {prefix} link in {}", m.raw));
    let url: String = raw[at..].chars().take_while(|c| !c.is_whitespace()).collect();
    url.trim_start_matches("https://signals.example.org").to_string()
}

impl Running {
    /// Subscriber `id` as stored now.
    pub fn subscriber(&self, id: i64) -> gazette::store::Subscriber {
        let store = self.app.store().clone();
        self.rt.block_on(async move { store.subscriber_by_id(id).await.unwrap().expect("the subscriber exists") })
    }
}
