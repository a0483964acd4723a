//! `gazette check`: is the project ready to build and send? Lists every problem, one a line, then
//! a summary. Exit 0 ready, 1 the content has problems, 2 the configuration is unusable.
//! `--smtp` tries the relay; `--dns` judges the domain's records (0 fine, 1 warnings, 2 refused).

use std::process::ExitCode;

use chrono::{DateTime, Utc};

use crate::config::{Config, SmtpTarget, Tls};
use crate::dns::{self, Level};
use crate::error::Exit;
use crate::readiness::{self, Severity, SmtpCheck};

pub fn run(config: &Config, smtp: bool, dns: bool, now: DateTime<Utc>) -> anyhow::Result<ExitCode> {
    if smtp {
        return check_smtp(config);
    }
    if dns {
        return check_dns(config);
    }
    let r = super::runtime()?.block_on(readiness::check(config, now))?;
    for f in &r.findings {
        say!("{}", f.text);
    }
    for line in r.unread.iter().chain(&r.themes).chain(&r.shortened).chain(&r.notes) {
        say!("{line}");
    }
    // Drafts: weeks not due yet, and the example `init` wrote, which is never published.
    let drafts = if r.drafts > 0 {
        format!(" ({} published, {})", r.published, counted(r.drafts, "draft"))
    } else {
        String::new()
    };
    let files = if r.broken_files > 0 {
        format!(" ({} in {} digest files)", r.digest_problems, r.broken_files)
    } else {
        String::new()
    };
    // Once mail goes to receivers, their view of the domain matters: say where it is checked.
    if readiness::through_relay(config) {
        say!("the sending domain's DNS records (SPF, DKIM, DMARC, MX) are checked by `gazette check --dns`");
    }
    say!(
        "{}, {}{drafts}, {}{files}",
        counted(r.digests, "digest"),
        counted(r.issues, "issue"),
        counted(r.findings.len(), "problem")
    );
    let exit = match r.worst() {
        None => Exit::Success,
        Some(Severity::Content) => Exit::Failure,
        Some(Severity::Config) => Exit::Unusable,
    };
    Ok(exit.into())
}

/// "1 digest", "2 digests".
fn counted(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// `check --smtp`: 0 when a send would get through, 2 when it would not.
fn check_smtp(config: &Config) -> anyhow::Result<ExitCode> {
    match super::runtime()?.block_on(readiness::check_smtp(config))? {
        SmtpCheck::Outbox(dir) => {
            say!("no SMTP server is configured: messages are written into {} ([smtp] url)", dir.display());
            Ok(Exit::Success.into())
        }
        SmtpCheck::Ready { server, facts } => {
            // What was verified depends on the connection: a plain one has no certificate at all.
            let tls = match &config.smtp.target {
                SmtpTarget::Server { tls: Tls::None, .. } => {
                    "none: the connection is not encrypted (tls=none), so no certificate was checked".to_string()
                }
                _ => format!("{}, certificate verified", facts.tls),
            };
            say!("{server}: connected; ready to send");
            say!("server     {}", facts.name);
            say!("TLS        {tls}");
            say!(
                "login      {}",
                facts
                    .mechanism
                    .as_deref()
                    .map(|m| format!("{m} as `{}`, accepted", config.smtp.username.as_deref().unwrap_or_default()))
                    .unwrap_or_else(|| "none (no [smtp] username)".into())
            );
            say!(
                "size limit {}",
                facts.size_limit.map(|n| format!("{n} bytes")).unwrap_or_else(|| "none declared".into())
            );
            say!("pipelining {}", if facts.pipelining { "yes" } else { "no" });
            Ok(Exit::Success.into())
        }
        SmtpCheck::Refused(why) => {
            say!("{why}");
            Ok(Exit::Unusable.into())
        }
    }
}

/// `check --dns`: each finding on its line, the records to publish under it, then a summary.
fn check_dns(config: &Config) -> anyhow::Result<ExitCode> {
    let report = super::runtime()?.block_on(dns::check(config))?;
    say!("looked up through {}", report.resolver);
    for f in &report.findings {
        say!("{:<7} {:<5} {}", f.level.word(), f.topic, f.text);
        for record in &f.publish {
            say!("                publish: {record}");
        }
    }
    let (refused, warnings) = (report.count(Level::Refused), report.count(Level::Warning));
    let (summary, exit) = match report.worst() {
        Level::Refused => (
            format!("mail will be refused: {}, {}", counted(refused, "problem"), counted(warnings, "warning")),
            Exit::Unusable,
        ),
        Level::Warning => (format!("mail gets through, with {}", counted(warnings, "warning")), Exit::Failure),
        Level::Ok | Level::Note => ("the records are as receivers want them".to_string(), Exit::Success),
    };
    say!("{summary}");
    Ok(exit.into())
}
