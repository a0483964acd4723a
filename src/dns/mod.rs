//! `gazette check --dns`: the records receivers look up before they accept a newsletter (SPF for
//! the envelope domain, DKIM at the selector, DMARC at the From domain, an MX for failure notices),
//! looked up and judged, each finding with the record to publish. Records are read by `mail-auth`
//! (Stalwart's SPF, DKIM and DMARC parsers and verifiers) over `hickory`'s resolver.

mod dkim;
mod dmarc;
mod mx;
mod spf;

use std::net::IpAddr;
use std::time::Duration;

use mail_auth::MessageAuthenticator;
use mail_auth::hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use mail_auth::hickory_resolver::net::NetError;
use mail_auth::hickory_resolver::proto::rr::RData;

use crate::config::{Config, SmtpTarget};

/// How bad a finding is, mildest first: the worst one decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// As receivers want it.
    Ok,
    /// Worth knowing, changes nothing about delivery.
    Note,
    /// Mail gets through, but worse than it could (exit 1).
    Warning,
    /// Receivers that enforce the 2024 sender rules (Gmail, Yahoo, Outlook.com) will refuse or junk the mail (exit 2).
    Refused,
}

impl Level {
    pub fn word(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Note => "note",
            Level::Warning => "warning",
            Level::Refused => "refused",
        }
    }
}

/// One judgement about one record.
#[derive(Debug, Clone)]
pub struct Finding {
    pub level: Level,
    /// `SPF`, `DKIM`, `DMARC` or `MX`.
    pub topic: &'static str,
    pub text: String,
    /// Records to publish, as zone-file lines (`name. IN TXT "..."`) to paste.
    pub publish: Vec<String>,
}

/// Everything `check --dns` found, in the order it looked.
#[derive(Debug, Default)]
pub struct DnsReport {
    pub findings: Vec<Finding>,
    /// Who was asked, for the report's first line.
    pub resolver: String,
}

impl DnsReport {
    fn add(&mut self, level: Level, topic: &'static str, text: impl Into<String>, publish: Vec<String>) {
        self.findings.push(Finding { level, topic, text: text.into(), publish });
    }

    /// The worst level found (`Ok` when nothing was found at all).
    pub fn worst(&self) -> Level {
        self.findings.iter().map(|f| f.level).max().unwrap_or(Level::Ok)
    }

    pub fn count(&self, level: Level) -> usize {
        self.findings.iter().filter(|f| f.level == level).count()
    }
}

/// The resolver every lookup goes through, `mail-auth`'s included, so that they all see one DNS.
pub struct Dns {
    auth: MessageAuthenticator,
}

/// Why a lookup has no answer when the name has none: the resolver could not be asked, or failed.
#[derive(Debug)]
pub struct LookupError(String);

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Dns {
    /// The resolvers of `[dns] nameservers`, or the system's when there are none.
    pub fn new(config: &crate::config::Dns) -> anyhow::Result<(Dns, String)> {
        let mut options = ResolverOpts::default();
        options.timeout = Duration::from_secs(3);
        options.attempts = 2;
        if config.nameservers.is_empty() {
            let auth = MessageAuthenticator::new_system_conf().map_err(|e| {
                anyhow::anyhow!(
                    "cannot read the system's resolver configuration ({e}); name resolvers in [dns] nameservers"
                )
            })?;
            return Ok((Dns { auth }, "the system's resolver".into()));
        }
        let servers = config
            .nameservers
            .iter()
            .map(|address| {
                let mut server = NameServerConfig::udp_and_tcp(address.ip());
                for connection in &mut server.connections {
                    connection.port = address.port();
                }
                server
            })
            .collect();
        let auth = MessageAuthenticator::new(ResolverConfig::from_name_servers(servers), options)
            .map_err(|e| anyhow::anyhow!("[dns] nameservers: cannot set up the resolver: {e}"))?;
        let names: Vec<String> = config.nameservers.iter().map(ToString::to_string).collect();
        Ok((Dns { auth }, format!("[dns] nameservers {}", names.join(", "))))
    }

    fn authenticator(&self) -> &MessageAuthenticator {
        &self.auth
    }

    /// Every TXT record at `name`, each one's strings joined; none when the name has none.
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, LookupError> {
        let answers = match self.auth.resolver().txt_lookup(fqdn(name)).await {
            Ok(lookup) => lookup.answers().to_vec(),
            Err(e) => return none_or_error(e, name, "TXT"),
        };
        Ok(answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(txt) => Some(txt.txt_data.iter().map(|s| String::from_utf8_lossy(s)).collect::<String>()),
                _ => None,
            })
            .collect())
    }

    /// The MX records of `name`: preference and exchange (without the final dot, `.` for a null MX).
    pub async fn mx(&self, name: &str) -> Result<Vec<(u16, String)>, LookupError> {
        let answers = match self.auth.resolver().mx_lookup(fqdn(name)).await {
            Ok(lookup) => lookup.answers().to_vec(),
            Err(e) => return none_or_error(e, name, "MX"),
        };
        Ok(answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::MX(mx) => {
                    let exchange = mx.exchange.to_ascii();
                    let exchange = if exchange == "." { exchange } else { exchange.trim_end_matches('.').to_string() };
                    Some((mx.preference, exchange))
                }
                _ => None,
            })
            .collect())
    }

    /// The addresses of `host` (A and AAAA).
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, LookupError> {
        match self.auth.resolver().lookup_ip(fqdn(host)).await {
            Ok(lookup) => Ok(lookup.iter().collect()),
            Err(e) => none_or_error(e, host, "A/AAAA"),
        }
    }
}

/// A fully qualified name, so that no search domain of the system is tried after it.
fn fqdn(name: &str) -> String {
    if name.ends_with('.') { name.to_string() } else { format!("{name}.") }
}

fn none_or_error<T>(e: NetError, name: &str, kind: &str) -> Result<Vec<T>, LookupError> {
    if e.is_no_records_found() {
        Ok(Vec::new())
    } else {
        Err(LookupError(format!("the {kind} lookup of {name} failed: {e}")))
    }
}

/// A zone-file line for a TXT record, its text cut into strings of at most 255 bytes (RFC 1035
/// §3.3.14): what a zone file takes as it is, and what a provider's form takes with the quotes and
/// spaces between the strings removed.
pub fn txt_record(name: &str, text: &str) -> String {
    let strings: Vec<String> = text
        .as_bytes()
        .chunks(255)
        .map(|chunk| format!("\"{}\"", String::from_utf8_lossy(chunk).replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{} IN TXT {}", fqdn(name), strings.join(" "))
}

/// The relay a send goes through, as SPF sees it: the addresses it connects to receivers from.
#[derive(Debug)]
pub enum Relay {
    /// `[smtp] url` is a folder: there is no relay to authorise.
    Outbox,
    /// Public addresses, which the SPF record must authorise.
    Public { host: String, addresses: Vec<IpAddr> },
    /// On this machine or a private network: it hands the mail on from an address not known here.
    Private { host: String },
    /// Its name has no address, or could not be looked up.
    Unknown { host: String, why: String },
}

async fn relay(config: &Config, dns: &Dns) -> Relay {
    let SmtpTarget::Server { host, .. } = &config.smtp.target else { return Relay::Outbox };
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let addresses = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => match dns.addresses(&host).await {
            Ok(found) if !found.is_empty() => found,
            Ok(_) => return Relay::Unknown { why: format!("{host} has no address"), host },
            Err(e) => return Relay::Unknown { why: e.to_string(), host },
        },
    };
    if addresses.iter().all(|ip| !is_public(ip)) {
        return Relay::Private { host };
    }
    Relay::Public { host, addresses: addresses.into_iter().filter(is_public).collect() }
}

/// An address receivers could see a connection from (not loopback, private, link-local or the like).
fn is_public(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified() || v4.is_broadcast())
        }
        IpAddr::V6(v6) => {
            let local = (v6.segments()[0] & 0xfe00) == 0xfc00 || (v6.segments()[0] & 0xffc0) == 0xfe80;
            !(v6.is_loopback() || v6.is_unspecified() || local)
        }
    }
}

/// The domains a send puts its name on.
pub struct Domains {
    /// The From header's domain: the one DMARC is about.
    pub from: String,
    /// The envelope sender's (`[email] bounce_address`, else `from`): the one SPF is about.
    pub envelope: String,
    /// An address in the envelope domain, for SPF's macros.
    pub envelope_address: String,
}

/// Looks up and judges every record: SPF, DKIM, DMARC and MX, in that order.
pub async fn check(config: &Config) -> anyhow::Result<DnsReport> {
    let (dns, resolver) = Dns::new(&config.dns)?;
    let envelope = config.email.bounce_address.as_ref().unwrap_or(&config.email.from.email);
    let domains = Domains {
        from: config.email.from.email.domain().to_ascii_lowercase(),
        envelope: envelope.domain().to_ascii_lowercase(),
        envelope_address: envelope.to_string(),
    };
    let mut report = DnsReport { resolver, ..DnsReport::default() };
    let relay = relay(config, &dns).await;
    spf::check(&dns, &domains, &relay, &mut report).await;
    let dkim = dkim::check(&dns, config, &domains, &mut report).await;
    dmarc::check(&dns, config, &domains, dkim.as_ref(), &mut report).await;
    mx::check(&dns, config, &domains, &mut report).await;
    Ok(report)
}

/// The organisational domain of `domain` by the Public Suffix List (RFC 7489 §3.2): `example.co.uk`
/// for `news.example.co.uk`; the name itself when the list has no registrable part of it.
pub fn organisational(domain: &str) -> String {
    psl::domain_str(domain).unwrap_or(domain).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_txt_records_are_cut_into_strings_of_255_bytes_and_quotes_are_escaped() {
        let long = "a".repeat(300);
        let line = txt_record("s._domainkey.example.org", &long);
        assert_eq!(line, format!("s._domainkey.example.org. IN TXT \"{}\" \"{}\"", "a".repeat(255), "a".repeat(45)));
        assert_eq!(txt_record("x.org.", "say \"hi\""), "x.org. IN TXT \"say \\\"hi\\\"\"");
    }

    #[test]
    fn the_organisational_domain_follows_the_public_suffix_list() {
        assert_eq!(organisational("news.signals.example.co.uk"), "example.co.uk");
        assert_eq!(organisational("mail.Example.org"), "example.org");
        assert_eq!(organisational("good.test"), "good.test");
        assert_eq!(organisational("news.good.test"), "good.test");
    }

    #[test]
    fn private_and_loopback_relays_are_told_apart_from_public_ones() {
        for private in ["127.0.0.1", "10.1.2.3", "192.168.1.1", "::1", "fd00::1", "fe80::1"] {
            assert!(!is_public(&private.parse().unwrap()), "{private}");
        }
        for public in ["192.0.2.25", "2001:db8::25", "8.8.8.8"] {
            assert!(is_public(&public.parse().unwrap()), "{public}");
        }
    }
}
