//! `gazette check --dns` against a real authoritative DNS server: NSD, started on a free loopback
//! port with a zone of its own, holding a domain set up right and one domain for each fault.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

const NSD: &str = "/usr/sbin/nsd";
/// The relay's public address (TEST-NET-1), which the good SPF record lets send.
const RELAY_IP: &str = "192.0.2.25";

/// The running server and what the tests need from it: its port and the keys its zone publishes.
struct Server {
    port: u16,
    _child: ChildGuard,
    dir: tempfile::TempDir,
}

struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Server {
    fn key(&self) -> PathBuf {
        self.dir.path().join("dkim.pem")
    }
    fn other_key(&self) -> PathBuf {
        self.dir.path().join("other.pem")
    }
    fn ed25519_key(&self) -> PathBuf {
        self.dir.path().join("dkim-ed25519.key")
    }
}

/// `openssl` run with `args` in `dir`; its standard output.
fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// The DKIM record of an RSA key, made by openssl rather than by Gazette.
fn rsa_record(dir: &Path, key: &str) -> String {
    let der = openssl(dir, &["rsa", "-in", key, "-pubout", "-outform", "DER"]);
    use std::io::Write;
    let mut b64 =
        Command::new("base64").args(["-w", "0"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    b64.stdin.take().unwrap().write_all(&der).unwrap();
    let out = b64.wait_with_output().unwrap();
    format!("v=DKIM1; k=rsa; p={}", String::from_utf8(out.stdout).unwrap().trim())
}

/// A TXT record's text as zone-file strings of at most 255 bytes.
fn quoted(text: &str) -> String {
    text.as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", std::str::from_utf8(c).unwrap()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The zone `test.`: `good.test` has everything right; each other domain has one fault.
fn zone(good_key: &str, other_key: &str) -> String {
    let spf = format!("\"v=spf1 ip4:{RELAY_IP} -all\"");
    let includes: String = (1..=11).map(|i| format!(" include:i{i}.spf11.test")).collect();
    let mut z = format!(
        "$ORIGIN test.\n$TTL 300\n\
         @ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 300\n\
         @ IN NS ns.test.\nns IN A 127.0.0.1\n\
         relay.good IN A {RELAY_IP}\n\
         ; good.test: SPF for the relay, the DKIM key, DMARC p=reject, an MX.\n\
         good IN TXT {spf}\ngood IN MX 10 mx.good.test.\nmx.good IN A 192.0.2.30\n\
         gazette._domainkey.good IN TXT {good}\n\
         _dmarc.good IN TXT \"v=DMARC1; p=reject; rua=mailto:bounces@good.test\"\n\
         ; nospf.test: no SPF record.\n\
         nospf IN MX 10 mx.good.test.\ngazette._domainkey.nospf IN TXT {good}\n\
         _dmarc.nospf IN TXT \"v=DMARC1; p=reject; rua=mailto:bounces@nospf.test\"\n\
         ; badkey.test: a DKIM record of another key.\n\
         badkey IN TXT {spf}\nbadkey IN MX 10 mx.good.test.\ngazette._domainkey.badkey IN TXT {other}\n\
         _dmarc.badkey IN TXT \"v=DMARC1; p=reject; rua=mailto:bounces@badkey.test\"\n\
         ; nodmarc.test: no DMARC record.\n\
         nodmarc IN TXT {spf}\nnodmarc IN MX 10 mx.good.test.\ngazette._domainkey.nodmarc IN TXT {good}\n\
         ; unaligned.test: From here, DMARC here, but signed for good.test and sent from bounces@good.test.\n\
         _dmarc.unaligned IN TXT \"v=DMARC1; p=reject; rua=mailto:bounces@unaligned.test\"\n\
         ; spf11.test: an SPF record of 11 includes.\n\
         spf11 IN TXT {spf11}\nspf11 IN MX 10 mx.good.test.\n\
         gazette._domainkey.spf11 IN TXT {good}\n_dmarc.spf11 IN TXT \"v=DMARC1; p=reject; rua=mailto:bounces@spf11.test\"\n\
         ; strict.test: all right for relaxed alignment, but its DMARC asks for strict.\n\
         strict IN TXT {spf}\nstrict IN MX 10 mx.good.test.\ngazette._domainkey.strict IN TXT {good}\n\
         _dmarc.strict IN TXT \"v=DMARC1; p=quarantine; adkim=s; aspf=s; rua=mailto:bounces@strict.test\"\n\
         ; norelay.test: an SPF record that lets another address send, not the relay's.\n\
         norelay IN TXT \"v=spf1 ip4:198.51.100.1 -all\"\nnorelay IN MX 10 mx.good.test.\ngazette._domainkey.norelay IN TXT {good}\n\
         _dmarc.norelay IN TXT \"v=DMARC1; p=reject; rua=mailto:bounces@norelay.test\"\n\
         ; plusall.test: an SPF record ending in +all.\n\
         plusall IN TXT \"v=spf1 ip4:192.0.2.25 +all\"\nplusall IN MX 10 mx.good.test.\ngazette._domainkey.plusall IN TXT {good}\n\
         _dmarc.plusall IN TXT \"v=DMARC1; p=reject; rua=mailto:bounces@plusall.test\"\n\
         ; testing.test: all right, but the key is published with t=y.\n\
         testing IN TXT {spf}\ntesting IN MX 10 mx.good.test.\n\
         gazette._domainkey.testing IN TXT {testing}\n_dmarc.testing IN TXT \"v=DMARC1; p=none; rua=mailto:bounces@testing.test\"\n",
        good = quoted(good_key),
        other = quoted(other_key),
        spf11 = quoted(&format!("v=spf1{includes} ip4:{RELAY_IP} -all")),
        testing = quoted(&format!("v=DKIM1; t=y; {}", good_key.trim_start_matches("v=DKIM1; "))),
    );
    for i in 1..=11 {
        z.push_str(&format!("i{i}.spf11 IN TXT \"v=spf1 -all\"\n"));
    }
    z
}

/// The zone in `dir` as NSD reads it: a mistake in it would otherwise be a server that fails every query.
fn checked_zone(dir: &Path) {
    let out = Command::new("nsd-checkzone")
        .args(["test", "test.zone"])
        .current_dir(dir)
        .output()
        .expect("nsd-checkzone runs");
    let zone = std::fs::read_to_string(dir.join("test.zone")).unwrap();
    assert!(
        out.status.success(),
        "{}{}\n{zone}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// NSD serving the zone on a free loopback port (UDP and TCP), started once for all the tests.
fn server() -> Option<&'static Server> {
    static SERVER: OnceLock<Option<Server>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            if !common::needs(Path::new(NSD).exists(), "nsd (Debian's package nsd)") {
                return None;
            }
            Some(start())
        })
        .as_ref()
}

fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl(d, &["genrsa", "-traditional", "-out", "dkim.pem", "2048"]);
    openssl(d, &["genrsa", "-traditional", "-out", "other.pem", "2048"]);
    // An Ed25519 key as Gazette reads it: base64 of the 32-byte seed.
    std::fs::write(d.join("dkim-ed25519.key"), "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n").unwrap();
    std::fs::write(d.join("test.zone"), zone(&rsa_record(d, "dkim.pem"), &rsa_record(d, "other.pem"))).unwrap();
    checked_zone(d);
    let port = common::free_port();
    let conf = format!(
        "server:\n  ip-address: 127.0.0.1\n  port: {port}\n  do-ip6: no\n  server-count: 1\n  username: \"\"\n  chroot: \"\"\n  \
         zonesdir: \"{dir}\"\n  database: \"\"\n  zonelistfile: \"{dir}/zone.list\"\n  xfrdfile: \"{dir}/xfrd.state\"\n  \
         pidfile: \"{dir}/nsd.pid\"\n  logfile: \"{dir}/nsd.log\"\n  verbosity: 1\n\
         remote-control:\n  control-enable: no\n\
         zone:\n  name: test\n  zonefile: test.zone\n",
        dir = d.display()
    );
    std::fs::write(d.join("nsd.conf"), conf).unwrap();
    let child = Command::new(NSD)
        .args(["-d", "-c"])
        .arg(d.join("nsd.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nsd starts");
    let child = ChildGuard(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        let log = std::fs::read_to_string(d.join("nsd.log")).unwrap_or_default();
        assert!(std::time::Instant::now() < deadline, "nsd did not start on port {port}:\n{log}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Server { port, _child: child, dir }
}

/// A project that sends as `from` with the envelope sender `bounce`, signing for `dkim_domain`
/// with `key`, through the relay `relay.good.test`, looking names up at the test server.
fn project(s: &Server, from: &str, bounce: &str, dkim_domain: &str, key: &Path, extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[site]\ntitle = \"Signals Weekly\"\nbase_url = \"https://signals.example.org\"\n\n\
         [email]\nfrom = \"Signals Weekly <{from}>\"\nbounce_address = \"{bounce}\"\n\n\
         [smtp]\nurl = \"smtp://relay.good.test:587\"\n\n\
         [dns]\nnameservers = [\"127.0.0.1:{port}\"]\n\n\
         [dkim]\ndomain = \"{dkim_domain}\"\nselector = \"gazette\"\nprivate_key = \"{key}\"\n{extra}",
        port = s.port,
        key = key.display()
    );
    std::fs::write(dir.path().join("publish.toml"), toml).unwrap();
    std::fs::create_dir(dir.path().join("digests")).unwrap();
    dir
}

/// `gazette check --dns` in `project`: exit code and standard output.
fn check_dns(project: &tempfile::TempDir) -> (i32, String) {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_gazette"))
        .arg("--config")
        .arg(project.path().join("publish.toml"))
        .args(["check", "--dns"])
        .env_remove("GAZETTE_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), format!("{stdout}{stderr}"))
}

/// The lines of `out` that name a record to publish.
fn published(out: &str) -> Vec<String> {
    out.lines().filter_map(|l| l.trim().strip_prefix("publish: ")).map(str::to_owned).collect()
}

fn domain_case(s: &Server, domain: &str) -> (i32, String) {
    let p = project(s, &format!("news@{domain}"), &format!("bounces@{domain}"), domain, &s.key(), "");
    check_dns(&p)
}

#[test]
fn a_domain_set_up_right_exits_0_and_says_why_each_record_is_good() {
    let Some(s) = server() else { return };
    let (code, out) = domain_case(s, "good.test");
    assert_eq!(code, 0, "{out}");
    for expected in [
        "ok      SPF   good.test: `v=spf1 ip4:192.0.2.25 -all` (0 of 10 lookups), lets the relay relay.good.test send",
        "ok      DKIM  gazette._domainkey.good.test: RSA, 2048 bits, matches [dkim] private_key",
        "ok      DMARC _dmarc.good.test",
        "p=reject, DKIM and SPF both aligned",
        "ok      MX    good.test: MX 10 mx.good.test",
        "the records are as receivers want them",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    assert!(published(&out).is_empty(), "{out}");
    assert!(out.contains(&format!("looked up through [dns] nameservers 127.0.0.1:{}", s.port)), "{out}");
}

#[test]
fn missing_spf_exits_2_and_names_the_record_with_the_relays_address() {
    let Some(s) = server() else { return };
    let (code, out) = domain_case(s, "nospf.test");
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("refused SPF   nospf.test has no SPF record"), "{out}");
    assert_eq!(published(&out), ["nospf.test. IN TXT \"v=spf1 ip4:192.0.2.25 ~all\""], "{out}");
    // Only SPF is wrong: the key, DMARC (aligned by DKIM) and the MX are judged good.
    assert!(out.contains("ok      DKIM") && out.contains("ok      DMARC") && out.contains("ok      MX"), "{out}");
    assert!(out.contains("mail will be refused: 1 problem, 0 warnings"), "{out}");
}

#[test]
fn a_dkim_record_of_another_key_exits_2_and_names_the_configured_keys_record() {
    let Some(s) = server() else { return };
    let (code, out) = domain_case(s, "badkey.test");
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("refused DKIM  gazette._domainkey.badkey.test: the published key is not the public half of [dkim] private_key"), "{out}");
    // The record to publish is the configured key's, as openssl makes it, cut into 255-byte strings.
    let record = format!("gazette._domainkey.badkey.test. IN TXT {}", quoted(&rsa_record(s.dir.path(), "dkim.pem")));
    assert_eq!(published(&out), [record], "{out}");
}

#[test]
fn no_dmarc_record_exits_2_and_names_a_first_record_reporting_to_the_bounce_mailbox() {
    let Some(s) = server() else { return };
    let (code, out) = domain_case(s, "nodmarc.test");
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("refused DMARC nodmarc.test has no DMARC record"), "{out}");
    assert_eq!(
        published(&out),
        ["_dmarc.nodmarc.test. IN TXT \"v=DMARC1; p=none; rua=mailto:bounces@nodmarc.test\""],
        "{out}"
    );
}

#[test]
fn a_from_domain_aligned_with_neither_dkim_nor_spf_exits_2_and_names_the_key_to_publish_under_it() {
    let Some(s) = server() else { return };
    // Signed for good.test and sent from bounces@good.test, both of which pass on their own.
    let p = project(s, "news@unaligned.test", "bounces@good.test", "good.test", &s.key(), "");
    let (code, out) = check_dns(&p);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("ok      SPF   good.test") && out.contains("ok      DKIM  gazette._domainkey.good.test"),
        "{out}"
    );
    assert!(out.contains("refused DMARC _dmarc.unaligned.test: the From domain unaligned.test is aligned with neither DKIM (DKIM signs for good.test, adkim=r) nor SPF"), "{out}");
    let record = format!("gazette._domainkey.unaligned.test. IN TXT {}", quoted(&rsa_record(s.dir.path(), "dkim.pem")));
    assert_eq!(published(&out), [record], "{out}");
}

#[test]
fn strict_alignment_asked_by_the_organisational_domains_record_is_applied_to_a_subdomain() {
    let Some(s) = server() else { return };
    // From news.strict.test: no _dmarc.news.strict.test, so the record of strict.test (its
    // organisational domain) applies, and with adkim=s and aspf=s strict.test is not news.strict.test.
    let p = project(s, "news@news.strict.test", "bounces@strict.test", "strict.test", &s.key(), "");
    let (code, out) = check_dns(&p);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("refused DMARC _dmarc.strict.test: the From domain news.strict.test is aligned with neither DKIM (DKIM signs for strict.test, adkim=s) nor SPF"), "{out}");
    let record =
        format!("gazette._domainkey.news.strict.test. IN TXT {}", quoted(&rsa_record(s.dir.path(), "dkim.pem")));
    assert_eq!(published(&out), [record], "{out}");
    // From strict.test itself, the same records are aligned.
    let p = project(s, "news@strict.test", "bounces@strict.test", "strict.test", &s.key(), "");
    let (code, out) = check_dns(&p);
    assert_eq!(code, 0, "{out}");
    // Writing into the outbox, there is no relay to judge, and that is said rather than passed over.
    let toml = std::fs::read_to_string(p.path().join("publish.toml")).unwrap();
    std::fs::write(p.path().join("publish.toml"), toml.replace("smtp://relay.good.test:587", "file://outbox")).unwrap();
    let (code, out) = check_dns(&p);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("note    SPF   [smtp] url writes messages into a folder: whether the SPF record of strict.test lets your relay send was not checked"), "{out}");
}

#[test]
fn an_spf_record_that_leaves_the_relay_out_exits_2_and_one_ending_in_plus_all_exits_1() {
    let Some(s) = server() else { return };
    let (code, out) = domain_case(s, "norelay.test");
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("refused SPF   norelay.test: the SPF record does not let the relay relay.good.test send from 192.0.2.25 (fail)"), "{out}");
    assert_eq!(published(&out), ["norelay.test. IN TXT \"v=spf1 ip4:198.51.100.1 ip4:192.0.2.25 -all\""], "{out}");
    let (code, out) = domain_case(s, "plusall.test");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("warning SPF   plusall.test: `+all` lets any server on the internet send as plusall.test"),
        "{out}"
    );
    assert_eq!(published(&out), ["plusall.test. IN TXT \"v=spf1 ip4:192.0.2.25 ~all\""], "{out}");
}

#[test]
fn an_spf_record_over_10_lookups_exits_2_and_says_what_costs_them() {
    let Some(s) = server() else { return };
    let (code, out) = domain_case(s, "spf11.test");
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("refused SPF   spf11.test: the SPF record needs 11 DNS lookups, and receivers stop at 10"),
        "{out}"
    );
    assert!(out.contains("include:i1.spf11.test (1), include:i2.spf11.test (1)"), "{out}");
    assert_eq!(published(&out), ["spf11.test. IN TXT \"v=spf1 ip4:192.0.2.25 ~all\""], "{out}");
}

#[test]
fn a_key_in_test_mode_is_a_warning_exit_1() {
    let Some(s) = server() else { return };
    let (code, out) = domain_case(s, "testing.test");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("warning DKIM  gazette._domainkey.testing.test: t=y marks the key as a test"), "{out}");
    assert!(out.contains("note    DMARC _dmarc.testing.test: p=none"), "{out}");
    assert!(out.contains("mail gets through, with 1 warning"), "{out}");
}

#[test]
fn every_fault_at_once_is_each_named_with_its_record() {
    let Some(s) = server() else { return };
    // A domain with nothing at all, an Ed25519 second key, and a relay with no address.
    let extra = format!("ed25519_key = \"{}\"\ned25519_selector = \"gazette-ed\"\n", s.ed25519_key().display());
    let p = project(s, "news@empty.test", "bounces@empty.test", "empty.test", &s.other_key(), &extra);
    let toml =
        std::fs::read_to_string(p.path().join("publish.toml")).unwrap().replace("relay.good.test", "relay.empty.test");
    std::fs::write(p.path().join("publish.toml"), toml).unwrap();
    let (code, out) = check_dns(&p);
    assert_eq!(code, 2, "{out}");
    let records = published(&out);
    let names: Vec<&str> = records.iter().map(|r| r.split(' ').next().unwrap()).collect();
    assert_eq!(
        names,
        [
            "empty.test.",
            "gazette._domainkey.empty.test.",
            "gazette-ed._domainkey.empty.test.",
            "_dmarc.empty.test.",
            "empty.test."
        ],
        "{out}"
    );
    assert!(records[0].ends_with("\"v=spf1 a:relay.empty.test ~all\""), "{out}");
    assert!(records[2].contains("\"v=DKIM1; k=ed25519; p="), "{out}");
    assert_eq!(records[4], "empty.test. IN MX 10 mail.empty.test.", "{out}");
    assert!(out.contains("refused MX    empty.test has no MX record"), "{out}");
}

#[test]
fn the_records_check_prints_are_what_a_zone_takes_and_then_pass() {
    let Some(s) = server() else { return };
    // A second server for a domain with nothing published: its zone is then made of exactly the
    // lines `check --dns` printed, and the same check passes against it.
    let extra = format!("ed25519_key = \"{}\"\ned25519_selector = \"gazette-ed\"\n", s.ed25519_key().display());
    let p = project(s, "news@fresh.test", "bounces@fresh.test", "fresh.test", &s.key(), &extra);
    let (code, out) = check_dns(&p);
    assert_eq!(code, 2, "{out}");
    assert_eq!(published(&out).len(), 5, "{out}");
    let dir = tempfile::tempdir().unwrap();
    let mut zone =
        "$ORIGIN test.\n$TTL 300\n@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 300\n@ IN NS ns.test.\n\
                    ns IN A 127.0.0.1\nrelay.good IN A 192.0.2.25\nmail.fresh IN A 192.0.2.30\n"
            .to_string();
    for record in published(&out) {
        zone.push_str(&record);
        zone.push('\n');
    }
    std::fs::write(dir.path().join("test.zone"), &zone).unwrap();
    checked_zone(dir.path());
    let port = common::free_port();
    let conf = std::fs::read_to_string(s.dir.path().join("nsd.conf"))
        .unwrap()
        .replace(&s.dir.path().display().to_string(), &dir.path().display().to_string())
        .replace(&format!("port: {}", s.port), &format!("port: {port}"));
    std::fs::write(dir.path().join("nsd.conf"), conf).unwrap();
    let child = Command::new(NSD).args(["-d", "-c"]).arg(dir.path().join("nsd.conf")).spawn().unwrap();
    let _guard = ChildGuard(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "nsd did not start with the zone:\n{zone}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let toml = std::fs::read_to_string(p.path().join("publish.toml")).unwrap();
    std::fs::write(p.path().join("publish.toml"), toml.replace(&format!(":{}\"", s.port), &format!(":{port}\"")))
        .unwrap();
    let (code, out) = check_dns(&p);
    // p=none is a note, not a warning: the records printed are enough for exit 0, and both
    // signatures, RSA and Ed25519, verify against them.
    assert_eq!(code, 0, "zone:\n{zone}\n{out}");
    assert!(
        out.contains("ok      DKIM  gazette-ed._domainkey.fresh.test: Ed25519, matches [dkim] ed25519_key"),
        "{out}"
    );
    assert!(out.contains("note    DMARC _dmarc.fresh.test: p=none"), "{out}");
}

#[test]
fn check_without_dns_says_once_that_dns_exists_and_a_bad_nameserver_names_its_key() {
    let Some(s) = server() else { return };
    let p = project(s, "news@good.test", "bounces@good.test", "good.test", &s.key(), "");
    let out = Command::new(env!("CARGO_BIN_EXE_gazette"))
        .arg("--config")
        .arg(p.path().join("publish.toml"))
        .arg("check")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("gazette check --dns").count(), 1, "{stdout}");
    let toml = std::fs::read_to_string(p.path().join("publish.toml")).unwrap();
    std::fs::write(p.path().join("publish.toml"), toml.replace(&format!("127.0.0.1:{}", s.port), "127.0.0.1")).unwrap();
    let (code, out) = check_dns(&p);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("[dns] nameservers: `127.0.0.1` is not an address and port"), "{out}");
}
