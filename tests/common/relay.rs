//! The relay of the TLS and AUTH tests: tests/relay.py (aiosmtpd) on a free loopback port, serving a
//! certificate from a throwaway CA that the test makes with openssl. The relay dumps each accepted
//! message with the facts of its session (TLS, login, envelope) and journals connections and commands.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::repo;

/// The one account the relay accepts (not the From address, so that a message naming it means
/// the login); `SECRET` is its password, or its XOAUTH2 token.
pub const USER: &str = "smtp-user@signals.example.org";
pub const SECRET: &str = "correct-horse-battery-staple";

/// What these tests need besides the binary, if something is missing.
pub fn missing_tools() -> Option<&'static str> {
    if super::python_with(&["aiosmtpd"]).is_none() {
        return Some("python3 with aiosmtpd (pip install aiosmtpd)");
    }
    if !Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success()) {
        return Some("the openssl command");
    }
    None
}

/// True when the relay can run. Otherwise the test fails under CI (.ci/run installs everything),
/// and says it skipped elsewhere.
pub fn available() -> bool {
    let Some(what) = missing_tools() else { return true };
    super::needs(false, what)
}

/// A certificate and its private key, PEM files.
pub struct Cert {
    pub pem: PathBuf,
    pub key: PathBuf,
}

/// A CA of the test's own and the server certificates the tests need, in a temporary folder.
pub struct TestCa {
    pub dir: tempfile::TempDir,
    /// The CA's certificate: what `ca_file` or SSL_CERT_FILE names.
    pub ca: PathBuf,
    /// For localhost and 127.0.0.1, signed by this CA.
    pub localhost: Cert,
    /// For localhost, signed by another CA that nobody trusts: an unknown issuer.
    pub stranger: Cert,
    /// For other.example, signed by this CA: a name mismatch when the URL says localhost.
    pub other_name: Cert,
}

/// The extensions of each kind of certificate (what rustls/webpki insists on: a CA with
/// basicConstraints, servers with a subjectAltName and serverAuth).
const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ext_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ext_localhost]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = DNS:localhost, IP:127.0.0.1
[ext_other_name]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = DNS:other.example
";

impl TestCa {
    /// Makes the CAs and certificates (P-256 keys: a few milliseconds each).
    pub fn new() -> TestCa {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("openssl.cnf"), OPENSSL_CNF).unwrap();
        let ca = make_ca(d, "ca", "Gazette Test CA");
        make_ca(d, "stranger-ca", "Somebody Else's CA");
        TestCa {
            ca: ca.pem,
            localhost: make_cert(d, "localhost", "localhost", "ca", "ext_localhost"),
            stranger: make_cert(d, "stranger", "localhost", "stranger-ca", "ext_localhost"),
            other_name: make_cert(d, "other-name", "other.example", "ca", "ext_other_name"),
            dir,
        }
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
}

/// A new P-256 key, unencrypted, and our openssl.cnf.
const NEW_KEY: [&str; 7] =
    ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-config", "openssl.cnf"];

fn make_ca(dir: &Path, name: &str, cn: &str) -> Cert {
    let (pem, key, subject) = (format!("{name}.pem"), format!("{name}.key"), format!("/CN={cn}"));
    openssl(
        dir,
        &[
            &["req", "-x509", "-new"],
            &NEW_KEY[..],
            &["-extensions", "ext_ca", "-days", "2", "-subj", &subject, "-keyout", &key, "-out", &pem],
        ]
        .concat(),
    );
    Cert { pem: dir.join(pem), key: dir.join(key) }
}

/// A server certificate for `dns_name`, signed by the CA `issuer`, with the extensions of `section`.
fn make_cert(dir: &Path, name: &str, dns_name: &str, issuer: &str, section: &str) -> Cert {
    let (pem, key, csr) = (format!("{name}.pem"), format!("{name}.key"), format!("{name}.csr"));
    let subject = format!("/CN={dns_name}");
    openssl(dir, &[&["req", "-new"], &NEW_KEY[..], &["-subj", &subject, "-keyout", &key, "-out", &csr]].concat());
    let (ca_pem, ca_key, serial) = (format!("{issuer}.pem"), format!("{issuer}.key"), format!("{issuer}.srl"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAserial",
            &serial,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "openssl.cnf",
            "-extensions",
            section,
            "-out",
            &pem,
        ],
    );
    Cert { pem: dir.join(pem), key: dir.join(key) }
}

/// How the relay speaks TLS.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// Plain text first; STARTTLS required before AUTH and MAIL (port 587's way): `smtp://`.
    StartTls,
    /// TLS from the first byte (port 465's way): `smtps://`.
    Implicit,
}

/// A running tests/relay.py on a free loopback port; killed when dropped.
pub struct Relay {
    child: Child,
    pub port: u16,
    pub mode: Mode,
    pub dump: tempfile::TempDir,
}

/// A message the relay accepted, with the facts of its session.
#[derive(Debug, Deserialize)]
pub struct Delivered {
    /// Which connection (1, 2, ...) it came on.
    pub connection: u64,
    /// The TLS version in force ("TLSv1.3"), None in clear.
    pub tls: Option<String>,
    /// Who logged in on that connection, and how.
    pub user: Option<String>,
    pub mechanism: Option<String>,
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    pub size: usize,
    pub message: String,
    /// When it was accepted, Unix seconds.
    pub at: f64,
}

/// A line of the relay's journal: `connect`, `tls` (handshake done), `command` (AUTH or MAIL, as
/// they arrived), `auth` (a login's outcome) or `error` (such as a failed STARTTLS handshake).
#[derive(Debug, Deserialize)]
pub struct Event {
    pub event: String,
    #[serde(default)]
    pub conn: Option<u64>,
    /// The TLS version in force at the time, None in clear.
    #[serde(default)]
    pub tls: Option<String>,
    #[serde(default)]
    pub verb: Option<String>,
    #[serde(default)]
    pub mechanism: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub ok: Option<bool>,
    #[serde(default)]
    pub error: Option<String>,
    /// Why a message was answered 421 (`throttled`): `every` (`--throttle-every`) or `rate` (`--max-rate`).
    #[serde(default)]
    pub why: Option<String>,
    /// When, Unix seconds (`throttled`).
    #[serde(default)]
    pub at: Option<f64>,
}

impl Relay {
    /// Starts a relay serving `cert` for `USER` / `SECRET`, offering PLAIN and LOGIN. `options` are
    /// relay.py's own and win over those: `["--size", "10000"]`, `["--mechanisms", "XOAUTH2"]`, ...
    pub fn start(mode: Mode, cert: &Cert, options: &[&str]) -> Relay {
        let dump = tempfile::tempdir().unwrap();
        let out = dump.path().join("relay.out");
        let log = dump.path().join("relay.log");
        let mode_arg = match mode {
            Mode::StartTls => "starttls",
            Mode::Implicit => "implicit",
        };
        let mut child = Command::new("python3")
            .arg(repo().join("tests/relay.py"))
            .args(["--host", "127.0.0.1", "--port", "0", "--mode", mode_arg, "--user", USER, "--secret", SECRET])
            .arg("--cert")
            .arg(&cert.pem)
            .arg("--key")
            .arg(&cert.key)
            .arg("--dump")
            .arg(dump.path())
            .args(options)
            .stdin(Stdio::null())
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("python3 starts");
        // It prints `ready PORT` once it listens.
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            if let Some(port) = text.lines().find_map(|l| l.strip_prefix("ready ")) {
                break port.trim().parse().expect("a port number after `ready`");
            }
            let log = || std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(status) = child.try_wait().unwrap() {
                panic!("tests/relay.py stopped ({status}) before it was ready:\n{}", log());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("tests/relay.py did not say `ready` within 30 s:\n{}", log());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Relay { child, port, mode, dump }
    }

    /// The URL Gazette is given: `localhost`, the name in the certificate.
    pub fn url(&self) -> String {
        match self.mode {
            Mode::StartTls => format!("smtp://localhost:{}", self.port),
            Mode::Implicit => format!("smtps://localhost:{}", self.port),
        }
    }

    /// Every message accepted so far, in the order they arrived.
    pub fn messages(&self) -> Vec<Delivered> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dump.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name().unwrap().to_string_lossy().starts_with("message-")
                    && p.extension().is_some_and(|e| e == "json")
            })
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| {
                serde_json::from_str(&std::fs::read_to_string(f).unwrap())
                    .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
            })
            .collect()
    }

    /// The journal so far (a line still being written is left out).
    pub fn journal(&self) -> Vec<Event> {
        let text = std::fs::read_to_string(self.dump.path().join("journal.jsonl")).unwrap_or_default();
        let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        whole.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("journal line {l}: {e}"))).collect()
    }

    /// The AUTH and MAIL commands received, in order, with the TLS in force for each.
    pub fn commands(&self) -> Vec<Event> {
        self.journal().into_iter().filter(|e| e.event == "command").collect()
    }

    /// The logins attempted (successful or not), in order.
    pub fn logins(&self) -> Vec<Event> {
        self.journal().into_iter().filter(|e| e.event == "auth").collect()
    }

    /// How many connections reached SMTP (with implicit TLS: got through the handshake).
    pub fn connections(&self) -> usize {
        self.journal().iter().filter(|e| e.event == "connect").count()
    }

    /// The relay's own log (its stderr), for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dump.path().join("relay.log")).unwrap_or_default()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
