//! DMARC aggregate reports (RFC 7489 §7.2 and appendix C): what receivers send to the `rua=`
//! address each day about the mail they got in the domain's name. This module recognises a report
//! (a message with a zip, gzip or XML attachment, or a bare file) and parses it with `mail-auth`,
//! and it summarises stored rows per day and receiver. Pure: bytes in, report out; rows in,
//! summary out.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use base64::Engine;
use mail_auth::report::{ActionDisposition, DmarcResult, Error as ReportError, Report};
use mail_parser::{MessageParser, MimeHeaders};

/// The most a report's XML may take once uncompressed. A report about one newsletter domain is a
/// few KB a day even at the largest receivers; anything near this is a zip bomb, not a report.
pub const MAX_XML_BYTES: usize = 20 * 1024 * 1024;

/// One aggregate report, checked: every field the summary needs is there.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateReport {
    /// The reporting organisation (`org_name`): the receiver, such as `google.com`.
    pub org: String,
    pub report_id: String,
    /// The period it covers (`date_range`), Unix seconds.
    pub begin: i64,
    pub end: i64,
    /// The domain whose policy was applied (`policy_published/domain`).
    pub domain: String,
    pub rows: Vec<ReportRow>,
}

/// One `record` of a report: messages from one source that fared alike.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRow {
    pub source_ip: IpAddr,
    pub count: i64,
    /// What the receiver did: `none`, `quarantine` or `reject` (`pass` from a few).
    pub disposition: &'static str,
    /// DKIM passed for a domain aligned with the From domain (`policy_evaluated/dkim`).
    pub dkim_aligned: bool,
    /// SPF passed for a domain aligned with the From domain (`policy_evaluated/spf`).
    pub spf_aligned: bool,
    pub header_from: String,
}

/// What a message (or a bare file) turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// Nothing about it says it is an aggregate report.
    NotAReport,
    Report(AggregateReport),
    /// It is meant to be one (its subject, its attachment's name, or a bare zip, gzip or XML
    /// file) but cannot be read: why, for the editor.
    Malformed(String),
}

/// Reads `bytes` as an aggregate report if they are one: a message whose subject is RFC 7489's
/// `Report Domain: ...`, or with an attachment named as §7.2.1.1 names one
/// (`receiver!domain!begin!end.xml.gz`), or with any zip, gzip or XML attachment that holds a
/// report; or a bare `.zip`, `.gz` or `.xml` file, told by its first bytes.
pub fn read(bytes: &[u8]) -> Found {
    if let Some(bare) = read_bare(bytes) {
        return bare;
    }
    let Some(message) = MessageParser::default().parse(bytes) else { return Found::NotAReport };
    // Failure notices and complaints (RFC 3464, RFC 5965) are multipart/report; an aggregate
    // report is an ordinary message with an attachment.
    if message.content_type().is_some_and(|c| {
        c.c_type.eq_ignore_ascii_case("multipart") && c.subtype().is_some_and(|t| t.eq_ignore_ascii_case("report"))
    }) {
        return Found::NotAReport;
    }
    let by_subject = message
        .subject()
        .is_some_and(|s| s.trim_start().get(..14).is_some_and(|p| p.eq_ignore_ascii_case("report domain:")));
    let by_name = message.parts.iter().any(|p| p.attachment_name().is_some_and(named_like_a_report));
    let attached = message.parts.iter().any(|p| {
        let subtype = p.content_type().and_then(|c| c.subtype()).unwrap_or_default().to_ascii_lowercase();
        let name = p.attachment_name().unwrap_or_default().to_ascii_lowercase();
        ["zip", "gzip", "x-gzip", "x-zip-compressed", "xml"].contains(&subtype.as_str())
            || [".zip", ".gz", ".xml"].iter().any(|e| name.ends_with(e))
    });
    if !(by_subject || by_name || attached) {
        return Found::NotAReport;
    }
    match Report::parse_rfc5322(bytes, MAX_XML_BYTES) {
        Ok(report) => checked(report),
        Err(e) if by_subject || by_name => Found::Malformed(describe(&e)),
        // An ordinary message with an archive attached: not a report, and not this module's.
        Err(_) => Found::NotAReport,
    }
}

/// A file that is a report by itself, not a message: zip, gzip or XML by its first bytes.
fn read_bare(bytes: &[u8]) -> Option<Found> {
    let text = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes).trim_ascii_start();
    if text.starts_with(b"<?xml") || text.starts_with(b"<feedback") {
        return Some(match Report::parse_xml(text) {
            Ok(report) => checked(report),
            Err(e) => Found::Malformed(describe(&ReportError::ReportParseError(e))),
        });
    }
    let (content_type, name) = if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        ("application/zip", "report.zip")
    } else if bytes.starts_with(&[0x1f, 0x8b]) {
        ("application/gzip", "report.xml.gz")
    } else {
        return None;
    };
    // As a message of one attachment, so that mail-auth uncompresses it within its size limit.
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut message = format!(
        "MIME-Version: 1.0\r\nContent-Type: {content_type}; name=\"{name}\"\r\n\
         Content-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    )
    .into_bytes();
    for line in encoded.as_bytes().chunks(76) {
        message.extend_from_slice(line);
        message.extend_from_slice(b"\r\n");
    }
    Some(match Report::parse_rfc5322(&message, MAX_XML_BYTES) {
        Ok(report) => checked(report),
        Err(e) => Found::Malformed(describe(&e)),
    })
}

/// `receiver!policy-domain!begin!end[!unique-id].ext`, RFC 7489 §7.2.1.1 (Google's
/// `google.com!example.org!1700000000!1700086399.zip`).
fn named_like_a_report(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let Some(stem) = [".xml.gz", ".gz", ".zip", ".xml"].iter().find_map(|e| lower.strip_suffix(e)) else {
        return false;
    };
    let parts: Vec<&str> = stem.split('!').collect();
    parts.len() >= 4 && parts[2].bytes().all(|b| b.is_ascii_digit()) && parts[3].bytes().all(|b| b.is_ascii_digit())
}

/// mail-auth's error, as a sentence about the report.
fn describe(e: &ReportError) -> String {
    match e {
        ReportError::MailParseError => {
            "it looks like a DMARC aggregate report but is not a readable email message".into()
        }
        ReportError::ReportParseError(why) => {
            format!("its XML is not a DMARC aggregate report (RFC 7489 appendix C): {}", why.trim_end_matches('.'))
        }
        ReportError::UncompressError(why) => {
            format!("its DMARC aggregate report cannot be uncompressed (a damaged or truncated zip or gzip): {why}")
        }
        ReportError::ReportTooLarge => {
            format!("its DMARC aggregate report is over {} MB once uncompressed; it was not read", MAX_XML_BYTES >> 20)
        }
        ReportError::NoReportsFound => {
            "it is named as a DMARC aggregate report but has no zip, gzip or XML attachment with one in it".into()
        }
    }
}

/// The latest moment a report may name (the end of 9999): a later one is not a date.
const LAST_MOMENT: u64 = 253_402_300_799;

/// The report, if it has what the summary needs; else why not.
fn checked(report: Report) -> Found {
    match check(report) {
        Ok(r) => Found::Report(r),
        Err(why) => Found::Malformed(format!("its XML is not a DMARC aggregate report (RFC 7489 appendix C): {why}")),
    }
}

fn check(report: Report) -> Result<AggregateReport, String> {
    let meta = report.report_metadata;
    let text = |s: &str| s.trim().to_string();
    let (org, report_id, domain) = (text(&meta.org_name), text(&meta.report_id), text(&report.policy_published.domain));
    for (value, name) in [
        (&org, "report_metadata/org_name"),
        (&report_id, "report_metadata/report_id"),
        (&domain, "policy_published/domain"),
    ] {
        if value.is_empty() {
            return Err(format!("{name} is missing or empty"));
        }
    }
    let range = meta.date_range;
    if range.begin == 0 || range.end < range.begin || range.end > LAST_MOMENT {
        return Err(format!(
            "report_metadata/date_range ({} to {}) is not a period of Unix times",
            range.begin, range.end
        ));
    }
    let mut rows = Vec::with_capacity(report.record.len());
    for (i, record) in report.record.into_iter().enumerate() {
        let row = record.row;
        let Some(source_ip) = row.source_ip else {
            return Err(format!("record {} has no valid row/source_ip", i + 1));
        };
        let evaluated = row.policy_evaluated;
        rows.push(ReportRow {
            source_ip,
            count: i64::from(row.count),
            disposition: match evaluated.disposition {
                ActionDisposition::None => "none",
                ActionDisposition::Pass => "pass",
                ActionDisposition::Quarantine => "quarantine",
                ActionDisposition::Reject => "reject",
                ActionDisposition::Unspecified => "unspecified",
            },
            dkim_aligned: evaluated.dkim == DmarcResult::Pass,
            spf_aligned: evaluated.spf == DmarcResult::Pass,
            header_from: record.identifiers.header_from.trim().to_ascii_lowercase(),
        });
    }
    Ok(AggregateReport { org, report_id, begin: range.begin as i64, end: range.end as i64, domain, rows })
}

// ---------------------------------------------------------------------------------------------
// The summary: per day and receiver, and the sources that failed both.
// ---------------------------------------------------------------------------------------------

/// One stored row with its report's fields, as the store gives it back.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRow {
    pub org: String,
    pub report_id: String,
    pub domain: String,
    /// The report's `date_range` begin, Unix seconds: the day the row is counted on.
    pub begin: i64,
    pub source_ip: String,
    pub count: i64,
    pub dkim_aligned: bool,
    pub spf_aligned: bool,
    pub header_from: String,
}

/// One day and receiver.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DayLine {
    /// The UTC day the report's period begins on (receivers report midnight to midnight UTC).
    pub day: chrono::NaiveDate,
    pub receiver: String,
    pub messages: i64,
    pub dkim_aligned: i64,
    pub spf_aligned: i64,
    /// Messages that passed neither aligned: DMARC failed for them.
    pub failed: i64,
}

/// A source that sent as the domain and passed neither DKIM nor SPF aligned: an unknown sender,
/// or a relay of the editor's that the SPF record or the DKIM signing misses.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FailingSource {
    pub source_ip: String,
    pub messages: i64,
    pub receivers: BTreeSet<String>,
    pub header_from: BTreeSet<String>,
}

/// Everything stored in a period, added up.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Summary {
    pub reports: usize,
    /// The domains the reports are about (`policy_published/domain`).
    pub domains: BTreeSet<String>,
    pub messages: i64,
    pub dkim_aligned: i64,
    pub spf_aligned: i64,
    /// Day by day, then by receiver.
    pub days: Vec<DayLine>,
    /// The most messages first.
    pub failing: Vec<FailingSource>,
}

impl Summary {
    /// `part` of all messages, in percent (0 when there were none).
    pub fn percent(&self, part: i64) -> f64 {
        if self.messages == 0 { 0.0 } else { part as f64 * 100.0 / self.messages as f64 }
    }
}

/// The first moment counted by "the last `days` days" at `now`: midnight UTC, `days` days before
/// today (today's reports are not in yet; receivers report whole UTC days).
pub fn since(now: chrono::DateTime<chrono::Utc>, days: u32) -> i64 {
    let today = now.date_naive().and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    today.timestamp() - i64::from(days) * 86_400
}

/// `gazette status`'s line about the reports of the last `days` days.
pub fn status_line(summary: &Summary, days: u32) -> String {
    let sources = match summary.failing.len() {
        0 => "no source failed both".to_string(),
        1 => "1 source sent as the domain and failed both".to_string(),
        n => format!("{n} sources sent as the domain and failed both"),
    };
    format!(
        "DMARC, last {days} days: {} messages in {} reports; DKIM aligned pass {:.1}%, SPF aligned pass {:.1}%; {sources} (`gazette dmarc` has the details)",
        summary.messages,
        summary.reports,
        summary.percent(summary.dkim_aligned),
        summary.percent(summary.spf_aligned)
    )
}

/// `gazette status --json`'s `dmarc`: what `status_line` says, as numbers.
pub fn status_json(summary: &Summary, days: u32) -> serde_json::Value {
    serde_json::json!({
        "days": days,
        "reports": summary.reports,
        "messages": summary.messages,
        "dkim_aligned": summary.dkim_aligned,
        "spf_aligned": summary.spf_aligned,
        "failing_sources": summary.failing.len(),
    })
}

/// Adds `rows` up per day and receiver, and lists the sources that failed both.
pub fn summarise(rows: &[StoredRow]) -> Summary {
    let mut days: BTreeMap<(chrono::NaiveDate, String), DayLine> = BTreeMap::new();
    let mut failing: BTreeMap<String, FailingSource> = BTreeMap::new();
    let mut reports = BTreeSet::new();
    let mut summary = Summary::default();
    for r in rows {
        reports.insert((r.org.as_str(), r.report_id.as_str()));
        summary.domains.insert(r.domain.clone());
        let day = chrono::DateTime::from_timestamp(r.begin, 0).unwrap_or_default().date_naive();
        let line = days.entry((day, r.org.clone())).or_insert_with(|| DayLine {
            day,
            receiver: r.org.clone(),
            messages: 0,
            dkim_aligned: 0,
            spf_aligned: 0,
            failed: 0,
        });
        let (dkim, spf) = (if r.dkim_aligned { r.count } else { 0 }, if r.spf_aligned { r.count } else { 0 });
        line.messages += r.count;
        line.dkim_aligned += dkim;
        line.spf_aligned += spf;
        summary.messages += r.count;
        summary.dkim_aligned += dkim;
        summary.spf_aligned += spf;
        if !r.dkim_aligned && !r.spf_aligned {
            line.failed += r.count;
            let source = failing.entry(r.source_ip.clone()).or_insert_with(|| FailingSource {
                source_ip: r.source_ip.clone(),
                messages: 0,
                receivers: BTreeSet::new(),
                header_from: BTreeSet::new(),
            });
            source.messages += r.count;
            source.receivers.insert(r.org.clone());
            source.header_from.insert(r.header_from.clone());
        }
    }
    summary.reports = reports.len();
    summary.days = days.into_values().collect();
    summary.failing = failing.into_values().collect();
    summary.failing.sort_by(|a, b| b.messages.cmp(&a.messages).then_with(|| a.source_ip.cmp(&b.source_ip)));
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    const XML: &str = r#"<?xml version="1.0" encoding="UTF-8" ?>
<feedback>
  <report_metadata><org_name>example.net</org_name><email>dmarc@example.net</email>
    <report_id>r-1</report_id><date_range><begin>1764547200</begin><end>1764633599</end></date_range></report_metadata>
  <policy_published><domain>signals.example.org</domain><adkim>r</adkim><aspf>r</aspf><p>none</p><sp>none</sp><pct>100</pct></policy_published>
  <record><row><source_ip>192.0.2.10</source_ip><count>7</count>
    <policy_evaluated><disposition>none</disposition><dkim>pass</dkim><spf>fail</spf></policy_evaluated></row>
    <identifiers><header_from>Signals.example.org</header_from></identifiers>
    <auth_results><dkim><domain>signals.example.org</domain><result>pass</result></dkim><spf><domain>relay.example.net</domain><result>pass</result></spf></auth_results></record>
  <record><row><source_ip>2001:db8::25</source_ip><count>2</count>
    <policy_evaluated><disposition>reject</disposition><dkim>fail</dkim><spf>fail</spf></policy_evaluated></row>
    <identifiers><header_from>signals.example.org</header_from></identifiers>
    <auth_results><spf><domain>spoof.example.com</domain><result>fail</result></spf></auth_results></record>
</feedback>
"#;

    #[test]
    fn a_bare_xml_report_is_read_with_its_rows() {
        let Found::Report(r) = read(XML.as_bytes()) else { panic!("{:?}", read(XML.as_bytes())) };
        assert_eq!(
            (r.org.as_str(), r.report_id.as_str(), r.domain.as_str()),
            ("example.net", "r-1", "signals.example.org")
        );
        assert_eq!((r.begin, r.end), (1764547200, 1764633599));
        assert_eq!(r.rows.len(), 2);
        assert_eq!(r.rows[0].source_ip.to_string(), "192.0.2.10");
        assert_eq!((r.rows[0].count, r.rows[0].dkim_aligned, r.rows[0].spf_aligned), (7, true, false));
        assert_eq!(r.rows[0].header_from, "signals.example.org");
        assert_eq!((r.rows[1].disposition, r.rows[1].dkim_aligned, r.rows[1].spf_aligned), ("reject", false, false));
    }

    #[test]
    fn what_is_not_a_report_is_said_and_what_is_broken_is_named() {
        let bounce = b"From: MAILER-DAEMON@relay.example.net\r\nSubject: Undelivered Mail\r\n\r\nbody\r\n";
        assert_eq!(read(bounce), Found::NotAReport);
        assert_eq!(read(b""), Found::NotAReport);
        let Found::Malformed(why) = read(b"<?xml version=\"1.0\"?><html><body/></html>") else { panic!() };
        assert!(why.contains("not a DMARC aggregate report") && why.contains("html"), "{why}");
        let no_id = XML.replace("<report_id>r-1</report_id>", "");
        let Found::Malformed(why) = read(no_id.as_bytes()) else { panic!() };
        assert!(why.contains("report_metadata/report_id is missing"), "{why}");
        let Found::Malformed(why) = read(b"PK\x03\x04truncated") else { panic!() };
        assert!(why.contains("cannot be uncompressed"), "{why}");
        let Found::Malformed(why) = read(&[0x1f, 0x8b, 8, 0, 1, 2]) else { panic!() };
        assert!(why.contains("cannot be uncompressed"), "{why}");
        let named = b"From: dmarc@example.net\r\nSubject: Report Domain: signals.example.org Submitter: example.net\r\n\r\nno attachment\r\n";
        let Found::Malformed(why) = read(named) else { panic!() };
        assert!(why.contains("no zip, gzip or XML attachment"), "{why}");
        assert!(named_like_a_report("google.com!signals.example.org!1764547200!1764633599.zip"));
        assert!(named_like_a_report(
            "enterprise.protection.outlook.com!signals.example.org!1764547200!1764633599.xml.gz"
        ));
        assert!(!named_like_a_report("slides.zip") && !named_like_a_report("a!b!c!d.pdf"));
    }

    #[test]
    fn damaged_copies_of_the_corpus_never_panic() {
        let corpus: [&[u8]; 4] = [
            include_bytes!("../tests/dmarc/google.eml"),
            include_bytes!("../tests/dmarc/microsoft.eml"),
            include_bytes!("../tests/dmarc/google.com!signals.example.org!1764547200!1764633599.zip"),
            include_bytes!(
                "../tests/dmarc/enterprise.protection.outlook.com!signals.example.org!1764547200!1764633600.xml.gz"
            ),
        ];
        for bytes in corpus {
            assert!(matches!(read(bytes), Found::Report(_)));
            for cut in (0..bytes.len()).step_by(11) {
                let _ = read(&bytes[..cut]);
                let mut flipped = bytes.to_vec();
                flipped[cut] ^= 0x5a;
                let _ = read(&flipped);
            }
        }
    }

    #[test]
    fn rows_add_up_per_day_and_receiver_and_sources_failing_both_are_listed() {
        let row = |org: &str, begin: i64, ip: &str, count: i64, dkim: bool, spf: bool| StoredRow {
            org: org.into(),
            report_id: format!("{org}-{begin}"),
            domain: "signals.example.org".into(),
            begin,
            source_ip: ip.into(),
            count,
            dkim_aligned: dkim,
            spf_aligned: spf,
            header_from: "signals.example.org".into(),
        };
        let day1 = 1764547200; // 2025-12-01
        let rows = [
            row("google.com", day1, "192.0.2.10", 100, true, true),
            row("google.com", day1, "198.51.100.7", 3, false, false),
            row("Yahoo", day1 + 3600, "192.0.2.10", 40, true, false),
            row("google.com", day1 + 86400, "192.0.2.10", 50, false, true),
            row("google.com", day1 + 86400, "198.51.100.7", 2, false, false),
            row("Yahoo", day1 + 86400, "203.0.113.9", 9, false, false),
        ];
        let s = summarise(&rows);
        assert_eq!((s.reports, s.messages, s.dkim_aligned, s.spf_aligned), (4, 204, 140, 150));
        let days: Vec<(String, &str, i64, i64, i64, i64)> = s
            .days
            .iter()
            .map(|d| (d.day.to_string(), d.receiver.as_str(), d.messages, d.dkim_aligned, d.spf_aligned, d.failed))
            .collect();
        assert_eq!(
            days,
            [
                ("2025-12-01".to_string(), "Yahoo", 40, 40, 0, 0),
                ("2025-12-01".to_string(), "google.com", 103, 100, 100, 3),
                ("2025-12-02".to_string(), "Yahoo", 9, 0, 0, 9),
                ("2025-12-02".to_string(), "google.com", 52, 0, 50, 2),
            ]
        );
        let failing: Vec<(&str, i64, usize)> =
            s.failing.iter().map(|f| (f.source_ip.as_str(), f.messages, f.receivers.len())).collect();
        assert_eq!(failing, [("203.0.113.9", 9, 1), ("198.51.100.7", 5, 1)]);
        assert_eq!(summarise(&[]), Summary::default());
        assert_eq!(Summary::default().percent(0), 0.0);
    }
}
