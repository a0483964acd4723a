//! DMARC (RFC 7489) for the From domain: one record, at `_dmarc.<from>` or else at the
//! organisational domain (Public Suffix List), with a valid `p=`, and the DKIM `d=` or the SPF
//! (envelope) domain aligned with the From domain as the record's `adkim=` and `aspf=` ask.

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::dmarc::{Alignment, Dmarc, Policy};

use super::dkim::Signing;
use super::{Dns, DnsReport, Domains, Level, organisational, txt_record};
use crate::config::Config;

pub async fn check(dns: &Dns, config: &Config, domains: &Domains, dkim: Option<&Signing>, report: &mut DnsReport) {
    let org = organisational(&domains.from);
    let Some((name, text)) = find(dns, &domains.from, &org, config, report).await else { return };
    let record = match Dmarc::parse(text.as_bytes()) {
        Ok(record) if record.p != Policy::Unspecified => record,
        Ok(_) | Err(_) => {
            report.add(
                Level::Refused,
                "DMARC",
                format!("{name}: `{text}` is not a valid DMARC record (it needs v=DMARC1 first and a p= of none, quarantine or reject)"),
                vec![txt_record(&format!("_dmarc.{org}"), &suggested(config, &org))],
            );
            return;
        }
    };
    let aligned = |other: &str, mode: Alignment| match mode {
        Alignment::Strict => other.eq_ignore_ascii_case(&domains.from),
        Alignment::Relaxed => organisational(other) == org,
    };
    let by_dkim = dkim.is_some_and(|s| aligned(&s.domain, record.adkim));
    let by_spf = aligned(&domains.envelope, record.aspf);
    if !by_dkim && !by_spf {
        not_aligned(config, domains, dkim, &name, &record, report);
        return;
    }
    let how = match (by_dkim, by_spf) {
        (true, true) => "DKIM and SPF both aligned with the From domain".to_string(),
        (true, false) => format!("DKIM aligned with the From domain (SPF's {} is not)", domains.envelope),
        _ => "SPF aligned with the From domain (DKIM is not, so a forwarded message fails DMARC)".to_string(),
    };
    report.add(Level::Ok, "DMARC", format!("{name}: `{text}`: p={}, {how}", policy(record.p)), vec![]);
    if record.p == Policy::None {
        report.add(
            Level::Note,
            "DMARC",
            format!(
                "{name}: p=none asks receivers to deliver mail that fails and only report it; once the reports show every \
                 message passing, move to p=quarantine"
            ),
            vec![],
        );
    }
    if record.rua.is_empty() {
        report.add(
            Level::Note,
            "DMARC",
            format!("{name}: no rua=, so no receiver sends aggregate reports of who sends as {}", domains.from),
            vec![txt_record(
                &name,
                &format!("{}; rua=mailto:{}", text.trim_end_matches([';', ' ']), report_address(config, &org)),
            )],
        );
    }
}

/// The one DMARC record that applies to `from`: its own, else its organisational domain's.
async fn find(dns: &Dns, from: &str, org: &str, config: &Config, report: &mut DnsReport) -> Option<(String, String)> {
    let mut names = vec![format!("_dmarc.{from}")];
    if org != from {
        names.push(format!("_dmarc.{org}"));
    }
    for name in names {
        let records = match dns.txt(&name).await {
            Ok(all) => all.into_iter().filter(|t| is_dmarc(t)).collect::<Vec<_>>(),
            Err(e) => {
                report.add(Level::Refused, "DMARC", e.to_string(), vec![]);
                return None;
            }
        };
        match records.len() {
            0 => continue,
            1 => return records.into_iter().next().map(|text| (name, text)),
            n => {
                report.add(
                    Level::Refused,
                    "DMARC",
                    format!("{name} has {n} DMARC records, and receivers then apply none (RFC 7489 §6.6.3): keep one"),
                    vec![txt_record(&name, &suggested(config, org))],
                );
                return None;
            }
        }
    }
    report.add(
        Level::Refused,
        "DMARC",
        format!(
            "{from} has no DMARC record (looked up at _dmarc.{from}{}): Gmail, Yahoo and Outlook.com refuse bulk mail \
             without one. p=none is enough to start",
            if org != from { format!(" and _dmarc.{org}") } else { String::new() }
        ),
        vec![txt_record(&format!("_dmarc.{org}"), &suggested(config, org))],
    );
    None
}

fn not_aligned(
    config: &Config,
    domains: &Domains,
    dkim: Option<&Signing>,
    name: &str,
    record: &Dmarc,
    report: &mut DnsReport,
) {
    let signed =
        dkim.map(|s| format!("DKIM signs for {}", s.domain)).unwrap_or_else(|| "nothing is DKIM-signed".into());
    // The fix that always works: sign for the From domain itself, with the same key.
    let publish = config
        .dkim
        .as_ref()
        .and_then(|d| {
            let public = super::dkim::public_record(&d.private_key).ok()?;
            Some(vec![txt_record(&format!("{}._domainkey.{}", d.selector, domains.from), &public.record)])
        })
        .unwrap_or_default();
    report.add(
        Level::Refused,
        "DMARC",
        format!(
            "{name}: the From domain {} is aligned with neither DKIM ({signed}, adkim={}) nor SPF (the envelope sender's \
             domain {}, aspf={}), so every message fails DMARC: sign with [dkim] domain = \"{}\", or set [email] \
             bounce_address to an address at {}",
            domains.from,
            mode(record.adkim),
            domains.envelope,
            mode(record.aspf),
            domains.from,
            organisational(&domains.from)
        ),
        publish,
    );
}

/// A TXT record is a DMARC record when it starts with `v=DMARC1` (RFC 7489 §6.6.3).
fn is_dmarc(text: &str) -> bool {
    text.trim_start().get(..8).is_some_and(|v| v.eq_ignore_ascii_case("v=DMARC1"))
}

/// Where aggregate reports should go: the bounce mailbox, which Gazette reads, else `dmarc@` the
/// organisational domain (an address at another domain would need that domain's consent, RFC 7489 §7.1).
fn report_address(config: &Config, org: &str) -> String {
    config.email.bounce_address.as_ref().map(ToString::to_string).unwrap_or_else(|| format!("dmarc@{org}"))
}

/// A first DMARC record: monitoring only, reports to the bounce mailbox, relaxed alignment.
fn suggested(config: &Config, org: &str) -> String {
    format!("v=DMARC1; p=none; rua=mailto:{}", report_address(config, org))
}

fn policy(p: Policy) -> &'static str {
    match p {
        Policy::None => "none",
        Policy::Quarantine => "quarantine",
        Policy::Reject => "reject",
        Policy::Unspecified => "(none given)",
    }
}

fn mode(a: Alignment) -> &'static str {
    match a {
        Alignment::Relaxed => "r",
        Alignment::Strict => "s",
    }
}
