//! SPF (RFC 7208) for the envelope domain: one record, that parses, within the 10 lookups receivers
//! follow, without `+all`, and that lets the relay's addresses send.

use std::collections::HashSet;

use mail_auth::SpfResult;
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::spf::{Macro, Mechanism, Qualifier, Spf};

use super::{Dns, DnsReport, Domains, Level, Relay, txt_record};

/// The most DNS lookups an SPF evaluation may make (RFC 7208 §4.6.4).
const LOOKUP_LIMIT: usize = 10;

/// The most records followed while counting: a hostile record could fan out without end, and
/// past this many (each costing at least one lookup) the count is over the limit anyway.
const FOLLOWED_AT_MOST: usize = 4 * LOOKUP_LIMIT;

pub async fn check(dns: &Dns, domains: &Domains, relay: &Relay, report: &mut DnsReport) {
    let domain = domains.envelope.as_str();
    let records = match dns.txt(domain).await {
        Ok(all) => all.into_iter().filter(|t| is_spf(t)).collect::<Vec<_>>(),
        Err(e) => {
            report.add(Level::Refused, "SPF", format!("{domain}: {e}"), vec![]);
            return;
        }
    };
    let text = match records.as_slice() {
        [] => {
            report.add(
                Level::Refused,
                "SPF",
                format!(
                    "{domain} has no SPF record: receivers cannot tell the relay may send for it, and Gmail, Yahoo and \
                     Outlook.com refuse bulk mail without one"
                ),
                vec![txt_record(domain, &suggested(relay))],
            );
            return;
        }
        [one] => one,
        many => {
            report.add(
                Level::Refused,
                "SPF",
                format!(
                    "{domain} has {} SPF records, and more than one is an error to receivers (RFC 7208 §4.5): merge them into one",
                    many.len()
                ),
                vec![txt_record(domain, &suggested(relay))],
            );
            return;
        }
    };
    let spf = match Spf::parse(text.as_bytes()) {
        Ok(spf) => spf,
        Err(e) => {
            report.add(
                Level::Refused,
                "SPF",
                format!("{domain}: the SPF record `{text}` does not parse ({e:?}), so SPF fails as a permerror"),
                vec![txt_record(domain, &suggested(relay))],
            );
            return;
        }
    };
    let mut ok = true;
    if spf.directives.iter().any(|d| d.mechanism == Mechanism::All && d.qualifier == Qualifier::Pass) {
        ok = false;
        report.add(
            Level::Warning,
            "SPF",
            format!(
                "{domain}: `+all` lets any server on the internet send as {domain}; end the record with ~all or -all"
            ),
            vec![txt_record(domain, &text.replace("+all", "~all").replace(" all", " ~all"))],
        );
    }
    let counted = count_lookups(dns, &spf, domain).await;
    if counted.total > LOOKUP_LIMIT {
        report.add(
            Level::Refused,
            "SPF",
            format!(
                "{domain}: the SPF record needs {} DNS lookups, and receivers stop at {LOOKUP_LIMIT} (RFC 7208 §4.6.4): SPF \
                 fails as a permerror. What costs them: {}. Replace includes by the ip4:/ip6: ranges they stand for, or \
                 drop the senders you no longer use",
                counted.total,
                counted.terms.join(", ")
            ),
            vec![txt_record(domain, &suggested(relay))],
        );
        return;
    }
    ok &= authorises_relay(dns, domains, relay, text, report).await;
    if ok {
        report.add(
            Level::Ok,
            "SPF",
            format!("{domain}: `{text}` ({} of {LOOKUP_LIMIT} lookups){}", counted.total, relay_said(relay)),
            vec![],
        );
    }
}

fn relay_said(relay: &Relay) -> String {
    match relay {
        Relay::Public { host, .. } => format!(", lets the relay {host} send"),
        _ => String::new(),
    }
}

/// A TXT record is an SPF record when it starts with `v=spf1` as a whole word (RFC 7208 §4.5).
fn is_spf(text: &str) -> bool {
    let text = text.trim_start();
    text.get(..6).is_some_and(|v| v.eq_ignore_ascii_case("v=spf1")) && text[6..].chars().next().is_none_or(|c| c == ' ')
}

/// What a new record would say: the relay's addresses, or its name, or the domain's MX hosts.
fn suggested(relay: &Relay) -> String {
    let senders = match relay {
        Relay::Public { addresses, .. } => addresses.iter().map(mechanism_for).collect::<Vec<_>>().join(" "),
        Relay::Private { .. } | Relay::Outbox => "mx".to_string(),
        Relay::Unknown { host, .. } => format!("a:{host}"),
    };
    format!("v=spf1 {senders} ~all")
}

fn mechanism_for(ip: &std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => format!("ip4:{v4}"),
        std::net::IpAddr::V6(v6) => format!("ip6:{v6}"),
    }
}

/// Whether SPF, evaluated by `mail-auth` as a receiver would, lets each of the relay's addresses
/// send as the envelope sender. Says what it found unless all is well.
async fn authorises_relay(dns: &Dns, domains: &Domains, relay: &Relay, text: &str, report: &mut DnsReport) -> bool {
    let domain = domains.envelope.as_str();
    let (host, addresses) = match relay {
        Relay::Public { host, addresses } => (host, addresses),
        Relay::Outbox => {
            report.add(
                Level::Note,
                "SPF",
                format!("[smtp] url writes messages into a folder: whether the SPF record of {domain} lets your relay send was not checked"),
                vec![],
            );
            return true;
        }
        Relay::Private { host } => {
            report.add(
                Level::Note,
                "SPF",
                format!(
                    "the relay {host} is on this machine or a private network, so the address it hands mail on from is \
                     not known here: the SPF record of {domain} must name that server's addresses (or its provider's include:)"
                ),
                vec![],
            );
            return true;
        }
        Relay::Unknown { host, why } => {
            report.add(
                Level::Warning,
                "SPF",
                format!("the relay {host} ([smtp] url) could not be looked up ({why}), so whether SPF lets it send is not known"),
                vec![],
            );
            return false;
        }
    };
    let mut missing = Vec::new();
    let mut worst = Level::Ok;
    for ip in addresses {
        let output = dns
            .authenticator()
            .verify_spf(SpfParameters::verify_mail_from(*ip, host, host, &domains.envelope_address))
            .await;
        let level = match output.result() {
            SpfResult::Pass => continue,
            SpfResult::Fail | SpfResult::PermError => Level::Refused,
            SpfResult::SoftFail | SpfResult::Neutral | SpfResult::None | SpfResult::TempError => Level::Warning,
        };
        worst = worst.max(level);
        missing.push((*ip, format!("{:?}", output.result()).to_lowercase()));
    }
    if missing.is_empty() {
        return true;
    }
    let said: Vec<String> = missing.iter().map(|(ip, result)| format!("{ip} ({result})")).collect();
    let mut fixed = text.to_string();
    for (ip, _) in &missing {
        fixed = with_mechanism(&fixed, &mechanism_for(ip));
    }
    report.add(
        worst,
        "SPF",
        format!(
            "{domain}: the SPF record does not let the relay {host} send from {}: add its addresses before the `all` term",
            said.join(", ")
        ),
        vec![txt_record(domain, &fixed)],
    );
    false
}

/// `record` with `mechanism` put before its `all` term (or its `redirect=`), or at its end.
fn with_mechanism(record: &str, mechanism: &str) -> String {
    let mut terms: Vec<&str> = record.split_whitespace().collect();
    let at = terms
        .iter()
        .position(|t| {
            let t = t.to_ascii_lowercase();
            t.trim_start_matches(['+', '-', '~', '?']) == "all" || t.starts_with("redirect=")
        })
        .unwrap_or(terms.len());
    terms.insert(at, mechanism);
    terms.join(" ")
}

/// The DNS lookups an evaluation of a record costs, includes and redirects followed.
struct Counted {
    total: usize,
    /// What costs them, each term with its count: `include:_spf.example.net (4)`.
    terms: Vec<String>,
}

async fn count_lookups(dns: &Dns, spf: &Spf, domain: &str) -> Counted {
    let mut seen = HashSet::from([domain.to_ascii_lowercase()]);
    let mut terms = Vec::new();
    let mut total = 0;
    for (term, target) in lookup_terms(spf) {
        let mut cost = 1;
        if let Some(target) = target {
            cost += nested_lookups(dns, &target, &mut seen, 1).await;
        }
        total += cost;
        terms.push(format!("{term} ({cost})"));
    }
    Counted { total, terms }
}

/// The terms of a record that cost a lookup, each with the domain whose record it reads as well
/// (an `include:` or `redirect=` to a literal domain).
fn lookup_terms(spf: &Spf) -> Vec<(String, Option<String>)> {
    let mut found = Vec::new();
    for d in spf.directives.iter() {
        let (name, target) = match &d.mechanism {
            Mechanism::Include { macro_string } => ("include", Some(literal(macro_string))),
            Mechanism::A { macro_string, .. } => ("a", named(macro_string)),
            Mechanism::Mx { macro_string, .. } => ("mx", named(macro_string)),
            Mechanism::Ptr { macro_string } => ("ptr", named(macro_string)),
            Mechanism::Exists { macro_string } => ("exists", Some(literal(macro_string))),
            Mechanism::All | Mechanism::Ip4 { .. } | Mechanism::Ip6 { .. } => continue,
        };
        let term = match &target {
            Some(Some(domain)) => format!("{name}:{domain}"),
            Some(None) => format!("{name}:(a macro)"),
            None => name.to_string(),
        };
        let follow = if name == "include" { target.flatten() } else { None };
        found.push((term, follow));
    }
    if let Some(redirect) = &spf.redirect {
        let target = literal(redirect);
        found.push((format!("redirect={}", target.as_deref().unwrap_or("(a macro)")), target));
    }
    found
}

/// The domain a mechanism names, `None` when it names none (it then means the record's own).
fn named(m: &Macro) -> Option<Option<String>> {
    (*m != Macro::None).then(|| literal(m))
}

/// The domain a macro string spells, when it is plain text without macros.
fn literal(m: &Macro) -> Option<String> {
    match m {
        Macro::Literal(bytes) => Some(String::from_utf8_lossy(bytes).to_ascii_lowercase()),
        _ => None,
    }
}

/// The lookups the record at `domain` costs, its own includes followed (not the lookup of
/// `domain` itself, which its parent counted). A loop, a depth past the limit or more records
/// than `FOLLOWED_AT_MOST` stop there.
fn nested_lookups<'a>(
    dns: &'a Dns,
    domain: &'a str,
    seen: &'a mut HashSet<String>,
    depth: usize,
) -> std::pin::Pin<Box<dyn Future<Output = usize> + Send + 'a>> {
    Box::pin(async move {
        if depth > LOOKUP_LIMIT || seen.len() > FOLLOWED_AT_MOST || !seen.insert(domain.to_string()) {
            return 0;
        }
        let Ok(records) = dns.txt(domain).await else { return 0 };
        let Some(spf) = records.iter().find(|t| is_spf(t)).and_then(|t| Spf::parse(t.as_bytes()).ok()) else {
            return 0;
        };
        let mut cost = 0;
        for (_, target) in lookup_terms(&spf) {
            cost += 1;
            if let Some(target) = target {
                cost += nested_lookups(dns, &target, seen, depth + 1).await;
            }
        }
        cost
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_spf_record_is_told_by_its_first_word() {
        assert!(is_spf("v=spf1 -all") && is_spf("V=SPF1") && is_spf("v=spf1"));
        assert!(!is_spf("v=spf10 -all") && !is_spf("google-site-verification=x") && !is_spf("v=DMARC1; p=none"));
    }

    #[test]
    fn a_mechanism_goes_before_the_all_term() {
        assert_eq!(with_mechanism("v=spf1 mx -all", "ip4:192.0.2.1"), "v=spf1 mx ip4:192.0.2.1 -all");
        assert_eq!(
            with_mechanism("v=spf1 redirect=_spf.example.org", "ip4:192.0.2.1"),
            "v=spf1 ip4:192.0.2.1 redirect=_spf.example.org"
        );
        assert_eq!(with_mechanism("v=spf1 mx", "ip6:2001:db8::1"), "v=spf1 mx ip6:2001:db8::1");
    }

    #[test]
    fn the_terms_that_cost_a_lookup_are_counted_from_the_parsed_record() {
        let spf = Spf::parse(b"v=spf1 ip4:192.0.2.0/24 a mx:mail.example.org include:_spf.example.net ptr exists:%{i}.x.example.org ~all redirect=r.example.org").unwrap();
        let terms: Vec<String> = lookup_terms(&spf).into_iter().map(|(t, _)| t).collect();
        assert_eq!(
            terms,
            [
                "a",
                "mx:mail.example.org",
                "include:_spf.example.net",
                "ptr",
                "exists:(a macro)",
                "redirect=r.example.org"
            ]
        );
    }
}
