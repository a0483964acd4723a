//! `gazette dmarc`: what the receivers' DMARC aggregate reports say about the mail sent in the
//! domain's name, per day and receiver, and the sources that sent as the domain and failed both
//! DKIM and SPF aligned (an unknown sender, or a relay missing from SPF that does not sign).

use std::process::ExitCode;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::dmarc::{self, Summary};
use crate::store::Store;

pub fn run(config: &Config, days: u32, json: bool, now: DateTime<Utc>) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(async {
        let store = Store::open(&config.paths.database).await?;
        let since = dmarc::since(now, days);
        let result = store.dmarc().summary_since(since).await;
        store.close().await;
        let summary = result?;
        if json {
            say!("{}", serde_json::to_string_pretty(&as_json(summary.as_ref(), since, days))?);
        } else {
            say_summary(config, summary.as_ref(), since, days);
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn day_of(t: i64) -> String {
    DateTime::from_timestamp(t, 0).map(|t| t.date_naive().to_string()).unwrap_or_default()
}

/// `dmarc --json`: the keys in the documented order.
fn as_json(summary: Option<&Summary>, since: i64, days: u32) -> serde_json::Value {
    let empty = Summary::default();
    let s = summary.unwrap_or(&empty);
    serde_json::json!({
        "since": day_of(since),
        "days": days,
        "reports": s.reports,
        "domains": s.domains,
        "messages": s.messages,
        "dkim_aligned": s.dkim_aligned,
        "spf_aligned": s.spf_aligned,
        "by_day": s.days,
        "failing_sources": s.failing,
    })
}

fn say_summary(config: &Config, summary: Option<&Summary>, since: i64, days: u32) {
    let Some(s) = summary else {
        let rua =
            config.email.bounce_address.as_ref().map(|a| a.to_string()).unwrap_or_else(|| "bounces@your.domain".into());
        say!("No DMARC aggregate report has been read yet.");
        say!("Publish `rua=mailto:{rua}` in your domain's DMARC record (the bounce mailbox, or [dmarc] mailbox);");
        say!(
            "`gazette run` then reads the reports receivers send each day, and `gazette bounces import` reads saved ones."
        );
        return;
    };
    let domains: Vec<&str> = s.domains.iter().map(String::as_str).collect();
    say!(
        "DMARC aggregate reports since {} ({days} days): {} reports, {} messages from {}",
        day_of(since),
        s.reports,
        s.messages,
        if domains.is_empty() { "the domain".to_string() } else { domains.join(", ") }
    );
    if s.messages == 0 {
        return;
    }
    say!(
        "passed DKIM aligned: {} ({:.1}%), SPF aligned: {} ({:.1}%)",
        s.dkim_aligned,
        s.percent(s.dkim_aligned),
        s.spf_aligned,
        s.percent(s.spf_aligned)
    );
    say!();
    say!(
        "{:<10}  {:<34} {:>9} {:>13} {:>12} {:>12}",
        "day",
        "receiver",
        "messages",
        "DKIM aligned",
        "SPF aligned",
        "failed both"
    );
    for d in &s.days {
        say!(
            "{:<10}  {:<34} {:>9} {:>13} {:>12} {:>12}",
            d.day.to_string(),
            d.receiver,
            d.messages,
            d.dkim_aligned,
            d.spf_aligned,
            d.failed
        );
    }
    say!();
    if s.failing.is_empty() {
        say!("No source sent as the domain and failed both DKIM and SPF aligned.");
        return;
    }
    say!("Sources that sent as the domain and failed both DKIM and SPF aligned: a sender you do not know, or a");
    say!("relay of yours that is missing from the SPF record and does not sign with the domain's DKIM key:");
    say!("{:<40} {:>9}  reported by; From domain", "source IP", "messages");
    for f in &s.failing {
        let receivers: Vec<&str> = f.receivers.iter().map(String::as_str).collect();
        let from: Vec<&str> = f.header_from.iter().map(String::as_str).collect();
        say!("{:<40} {:>9}  {}; {}", f.source_ip, f.messages, receivers.join(", "), from.join(", "));
    }
}
