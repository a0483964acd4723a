//! An MX for the envelope domain: failure notices are mailed back to the envelope sender, and
//! receivers refuse mail whose envelope domain could not take a reply at all.

use super::{Dns, DnsReport, Domains, Level};
use crate::config::{BounceMailbox, Config};

pub async fn check(dns: &Dns, config: &Config, domains: &Domains, report: &mut DnsReport) {
    let domain = domains.envelope.as_str();
    let publish = vec![format!("{domain}. IN MX 10 {}.", mail_host(config, domain))];
    let exchanges = match dns.mx(domain).await {
        Ok(found) => found,
        Err(e) => {
            report.add(Level::Refused, "MX", e.to_string(), vec![]);
            return;
        }
    };
    if exchanges.iter().any(|(_, host)| host == ".") {
        report.add(
            Level::Refused,
            "MX",
            format!(
                "{domain} publishes a null MX (RFC 7505: it takes no mail), so failure notices cannot come back and \
                 receivers refuse it as an envelope sender: publish the MX of the bounce mailbox instead"
            ),
            publish,
        );
        return;
    }
    if let Some(list) = listed(&exchanges) {
        report.add(Level::Ok, "MX", format!("{domain}: {list}: failure notices have somewhere to go"), vec![]);
        return;
    }
    let has_address = dns.addresses(domain).await.is_ok_and(|a| !a.is_empty());
    let (level, why) = if has_address {
        (Level::Warning, "failure notices go to its address record's host, which may not take mail")
    } else {
        (Level::Refused, "nor an address, so receivers refuse it as an envelope sender and failure notices are lost")
    };
    report.add(level, "MX", format!("{domain} has no MX record: {why}"), publish);
}

/// `10 mx1.example.org, 20 mx2.example.org`, or `None` when there is no exchange.
fn listed(exchanges: &[(u16, String)]) -> Option<String> {
    if exchanges.is_empty() {
        return None;
    }
    let mut sorted = exchanges.to_vec();
    sorted.sort();
    Some(sorted.iter().map(|(p, host)| format!("MX {p} {host}")).collect::<Vec<_>>().join(", "))
}

/// The host the bounce mailbox is read from when it is on IMAP (likely the one that takes the
/// domain's mail), else `mail.<domain>` for the editor to replace.
fn mail_host(config: &Config, domain: &str) -> String {
    match &config.bounces.mailbox {
        Some(BounceMailbox::Imap { host, .. }) => host.clone(),
        _ => format!("mail.{domain}"),
    }
}
