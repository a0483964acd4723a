//! `gazette send`: the week's issue to every active subscriber exactly once, or a test copy to
//! the editor, or a dry run that builds every message without connecting. A real send publishes
//! the issue (its number is recorded) and writes the archive and feeds before the first message.

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use lettre::message::Mailbox;

use crate::build_cache::CacheUse;
use crate::config::Config;
use crate::deliver::{self, StopFlag, Transport};
use crate::error::ExitError;
use crate::issue::WeekSpec;
use crate::project::Project;
use crate::project::{BuildPlan, Publish, Site};
use crate::store::Store;

pub fn run(
    config: Config,
    week: Option<WeekSpec>,
    test: Vec<String>,
    dry_run: bool,
    now: DateTime<Utc>,
) -> anyhow::Result<ExitCode> {
    // Addresses are checked before anything else happens.
    let test_to = test_recipients(&config, &test)?;
    let transport = Transport::from_config(&config)?;
    // A dry run answers as the send to readers would, refusals included.
    if test_to.is_empty() {
        crate::readiness::ready_for_readers(&config)?;
    } else if !test_to.is_empty() && crate::readiness::through_relay(&config) {
        let keys: Vec<&str> = crate::readiness::placeholders(&config).iter().map(|p| p.key).collect();
        if !keys.is_empty() {
            tracing::warn!(
                "{} still hold example values (see `gazette check`): a test copy goes out, but a send to readers is refused until they are fixed",
                keys.join(", ")
            );
        }
    }
    // The send waits on the network and on SQLite, best on one thread; DKIM signing, the one CPU
    // work per message, runs on rayon's threads meanwhile (`PreparedEmail::build_for_send`).
    let runtime = super::runtime_on_this_thread()?;
    runtime.block_on(async {
        let store = Store::open_for_sending(&config.paths.database).await?;
        let result = send(&store, config, week, &test_to, dry_run, &transport, now).await;
        store.close().await;
        result
    })
}

async fn send(
    store: &Store,
    config: Config,
    week: Option<WeekSpec>,
    test_to: &[Mailbox],
    dry_run: bool,
    transport: &Transport,
    now: DateTime<Utc>,
) -> anyhow::Result<ExitCode> {
    // Test copies and dry runs write no archive, and so no build cache either.
    let cache_use = if dry_run || !test_to.is_empty() { CacheUse::Read } else { CacheUse::Update };
    let mut project = Project::load_with(config, Some(store), now, cache_use).await?;
    let issue = project.select(week)?.clone();
    project.ready_to_send(&issue)?;

    if !test_to.is_empty() {
        let email = project.prepare_email(&issue, true)?;
        let results = deliver::send_test(store, &project.config, &email, transport, test_to).await?;
        let mut failed = 0;
        for (to, result) in &results {
            match result {
                Ok(()) => say!(
                    "test copy of issue #{} ({}) sent to {to} via {}",
                    issue.number,
                    issue.label,
                    transport.describe()
                ),
                Err(e) => {
                    failed += 1;
                    say!("test copy to {to} was not accepted: {e}");
                }
            }
        }
        return Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) });
    }

    if dry_run {
        return dry_run_send(store, &project, &issue, transport).await;
    }

    // The issue is published before its first message goes out, so its "view in browser"
    // link and the feeds are there when readers look.
    let publish = Some(Publish { store, by_hand: Some(issue.id.clone()) });
    let written = project.build(BuildPlan { site: Site::Published, publish, only: None }).await?;
    for id in &written.published {
        let i = project.issue(id).expect("a published issue exists");
        say!("published #{} {}", i.number, i.label);
    }
    written.warn_email();
    let issue = project.issue(&issue.id).expect("the selected issue exists").clone();
    // Its number is the recorded one now: the email is made, and handed to `deliver`.
    let email = project.email_to_send(&issue)?;

    let stop = StopFlag::default();
    stop.on_signals();
    let bar = Bar::new();
    let progress: &dyn deliver::Progress = match &bar {
        Some(bar) => bar,
        None => &deliver::LogProgress::default(),
    };
    let report =
        deliver::send_issue(store, &project.config, &issue.id, issue.number, email, transport, &stop, progress).await?;
    let c = &report.counts;
    if report.recovered > 0 {
        say!(
            "{} messages that a stopped run had sent are now recorded (from its journal); they were not sent again",
            report.recovered
        );
    }
    if report.sent_now == 0 && c.is_finished() && !report.started_now {
        say!("{}", deliver::already_sent_line(issue.number, &issue.label, c));
        return Ok(ExitCode::SUCCESS);
    }
    say!(
        "issue #{} ({}): {} messages sent now via {}; in all {c}",
        issue.number,
        issue.label,
        report.sent_now,
        transport.describe()
    );
    if report.interrupted {
        say!("stopped before the end; run `gazette send --week {}` to resume", issue.id);
        return Ok(ExitCode::from(1));
    }
    if c.pending > 0 {
        say!(
            "{} deliveries are still pending after temporary errors; run `gazette send --week {}` again later (`gazette status` shows why)",
            c.pending,
            issue.id
        );
        return Ok(ExitCode::from(1));
    }
    if c.failed > 0 || c.bounced > 0 {
        say!("`gazette status --week {}` lists the failed and bounced addresses", issue.id);
    }
    Ok(ExitCode::SUCCESS)
}

/// What the send would do, from the same `SendPlan` the send follows, with nothing written: the
/// messages of a send not yet started are built (their sizes are real), a resumed send counts
/// only what is still to go.
async fn dry_run_send(
    store: &Store,
    project: &Project,
    issue: &crate::issue::CatalogIssue,
    transport: &Transport,
) -> anyhow::Result<ExitCode> {
    let plan = deliver::SendPlan::of(store, &issue.id).await?;
    if let deliver::SendPlan::AlreadySent(c) = &plan {
        say!("{}", deliver::already_sent_line(issue.number, &issue.label, c));
        return Ok(ExitCode::SUCCESS);
    }
    let editions = project.editions(issue)?;
    say!("dry run: issue #{} ({}), subject \"{}\"", issue.number, issue.label, editions.whole().subject());
    if project.publication(&issue.id).is_none() {
        say!("it is not published yet: the send would publish it as #{} first", issue.number);
    }
    match plan {
        deliver::SendPlan::Resume { to_send, counts } => {
            say!(
                "would resume its send: {to_send} of {} messages still to send via {}; nothing was sent",
                counts.total,
                transport.describe()
            );
            say!("so far: {counts}");
        }
        _ => {
            let run = deliver::dry_run(store, &project.config, &editions, project.now().timestamp()).await?;
            let count = run.messages;
            say!(
                "would send {count} messages ({} KB in all) via {}; nothing was sent",
                run.bytes / 1024,
                transport.describe()
            );
            for address in &run.sample {
                say!("  {address}");
            }
            if count > run.sample.len() as u64 {
                say!("  ... and {} more", count - run.sample.len() as u64);
            }
            if run.editions > 0 {
                say!("readers who chose themes receive only those: {} editions of the issue by theme", run.editions);
            }
            for (why, n) in &run.skipped {
                say!("would skip {n} reader{}: {why}", if *n == 1 { "" } else { "s" });
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A progress bar on a terminal (the log's lines every few seconds otherwise).
struct Bar(indicatif::ProgressBar);

impl Bar {
    fn new() -> Option<Bar> {
        use std::io::IsTerminal;
        std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} sent, {per_sec}, {eta} left")
                    .expect("valid template"),
            );
            Bar(bar)
        })
    }
}

impl deliver::Progress for Bar {
    fn start(&self, total: u64, done: u64) {
        self.0.set_length(total);
        self.0.set_position(done);
    }
    fn sent(&self) {
        self.0.inc(1);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// `--test` values as mailboxes: an empty value means `[email] editor`.
fn test_recipients(config: &Config, test: &[String]) -> anyhow::Result<Vec<Mailbox>> {
    test.iter()
        .map(|t| {
            if t.is_empty() {
                config.email.editor.clone().ok_or_else(|| {
                    ExitError::unusable(format!(
                        "--test without an address needs [email] editor in {}",
                        config.describe_source()
                    ))
                    .into()
                })
            } else {
                t.parse::<Mailbox>()
                    .map_err(|e| ExitError::unusable(format!("--test {t}: not an email address ({e})")).into())
            }
        })
        .collect()
}
