//! `gazette bounces import PATH...`: reads failure notices, complaints and DMARC aggregate reports
//! from maildirs, folders, mbox files, single messages and bare report files (`.xml`, `.xml.gz`,
//! `.zip`), and records what they say (or, with `--dry-run`, only says it). A message that cannot
//! be read is said and recorded as unreadable (`gazette status` counts it). Exit codes: 0 done;
//! 1 a path could not be read (nothing was recorded then).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::bounces::{self, source};
use crate::config::Config;
use crate::store::Store;

#[derive(Debug, clap::Subcommand)]
pub enum BouncesCommand {
    /// Read bounces and complaints from maildirs, folders, mbox files or single messages, and apply the bounce policy to each; keep DMARC aggregate reports (also bare .xml, .xml.gz, .zip files) for `gazette dmarc`.
    #[command(
        after_help = "Examples:\n  gazette bounces import ~/Maildir/.Bounces\n  gazette bounces import returned.mbox --dry-run --format json"
    )]
    Import {
        /// A maildir (a folder with cur/ and new/), any other folder (read file by file), an mbox file or one message
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Say what each message is and whom it is about; change nothing
        #[arg(long)]
        dry_run: bool,
        /// `json`: one object per message, one per line
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
    },
}

pub fn run(config: &Config, command: BouncesCommand) -> anyhow::Result<ExitCode> {
    let BouncesCommand::Import { paths, dry_run, format } = command;
    // Every path is read before anything is recorded: a typo in the last one changes nothing.
    let found = source::read_paths(&paths)?;
    super::runtime()?.block_on(async {
        let store = Store::open(&config.paths.database).await?;
        let result = import(config, &store, found, dry_run, format == "json").await;
        store.close().await;
        result
    })
}

async fn import(
    config: &Config,
    store: &Store,
    found: Vec<source::Found>,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let key = store.token_key().await?;
    let mut tally = bounces::mailbox::Polled::default();
    let (mut bounced, mut complained) = (0, 0);
    for message in &found {
        let label = message.label();
        // A message that cannot be read is said, and the others are still read.
        let outcome = bounces::process_message(store, &key, config, &message.bytes, &label, dry_run).await?;
        let processed = match outcome {
            Ok(bounces::Outcome::Notice(processed)) => processed,
            Ok(bounces::Outcome::Aggregate(report, recorded)) => {
                if json {
                    let line = ReportLine {
                        source: message.path.display().to_string(),
                        index: message.index,
                        kind: "dmarc-report",
                        org: &report.org,
                        report_id: &report.report_id,
                        domain: &report.domain,
                        new: recorded.map(|r| r != crate::store::dmarc::Recorded::Duplicate),
                    };
                    say!("{}", serde_json::to_string(&line)?);
                } else {
                    say!("{label}: {}", bounces::describe_aggregate(&report, recorded));
                }
                tally.add_aggregate();
                continue;
            }
            Err(why) => {
                if json {
                    let line = serde_json::json!({"source": message.path.display().to_string(), "index": message.index, "kind": "ignored", "why": "unreadable", "detail": why.to_string()});
                    say!("{line}");
                } else {
                    say!("{label}: unreadable: {why}");
                }
                if !dry_run {
                    bounces::unreadable::record_quietly(store, &label, &why, Some(&message.bytes)).await?;
                }
                tally.add_unreadable();
                continue;
            }
        };
        if json {
            let a = processed.addresses();
            let line = JsonLine {
                source: message.path.display().to_string(),
                index: message.index,
                kind: processed.report.kind,
                why: processed.report.why.map(|w| w.as_str()),
                permanent: a.permanent,
                temporary: a.temporary,
                refused: a.refused,
                complained: a.complained,
                reasons: a.reasons,
            };
            say!("{}", serde_json::to_string(&line)?);
        } else {
            say!("{label}: {}", bounces::describe(&processed));
        }
        for (_, effect) in &processed.targets {
            match effect {
                Some(crate::store::bounces::Effect::Became(crate::store::Status::Bounced)) => bounced += 1,
                Some(crate::store::bounces::Effect::Became(crate::store::Status::Complained)) => complained += 1,
                _ => {}
            }
        }
        tally.add_processed(&processed);
    }
    if !json {
        let changed = if dry_run {
            "dry run: nothing was changed".to_string()
        } else {
            format!("{bounced} subscribers now bounced, {complained} complained")
        };
        say!("{tally}; {changed}");
    }
    Ok(ExitCode::SUCCESS)
}

/// One message in `--format json`, its keys in the documented order.
#[derive(serde::Serialize)]
struct JsonLine {
    source: String,
    /// Its place in an mbox, from 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<usize>,
    kind: bounces::classify::Kind,
    /// Why an ignored message is ignored: `auto-reply`, `delivered`, `not-a-report`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    why: Option<&'static str>,
    /// Address failures: the reader is bounced.
    permanent: Vec<String>,
    /// Mailbox failures: counted as temporary.
    temporary: Vec<String>,
    /// The message or the sender was refused: never counted against the reader.
    refused: Vec<String>,
    complained: Vec<String>,
    /// Each failed address's reason.
    reasons: std::collections::BTreeMap<String, bounces::Reason>,
}

/// One DMARC aggregate report in `--format json`, its keys in the documented order.
#[derive(serde::Serialize)]
struct ReportLine<'a> {
    source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<usize>,
    kind: &'static str,
    org: &'a str,
    report_id: &'a str,
    domain: &'a str,
    /// `false` when it was read before; `None` (null) on a dry run.
    new: Option<bool>,
}
