//! `gazette subscribers add|remove|list|import|export`: thin wrappers over `store`, which owns the
//! rules (sticky unsubscribes, case-insensitive addresses). Exit codes: 0 done; 1 the input had
//! problems (invalid import rows, an unknown address to remove, an add refused because the
//! address is unsubscribed or bounced); 2 a malformed address or status on the command line.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::Config;
use crate::error::{Exit, ExitError};
use crate::store::{
    AddOutcome, NewSubscriber, RemoveOutcome, Source, Status, Store, Subscriber, SubscriberEmail, clean_name,
};

#[derive(Debug, clap::Subcommand)]
pub enum SubscribersCommand {
    /// Add an active subscriber (an unsubscribed or bounced one stays so without --reactivate).
    #[command(after_help = "Example:\n  gazette subscribers add reader@example.org --name \"Ada Reader\"")]
    Add {
        email: String,
        #[arg(long)]
        name: Option<String>,
        /// Make an unsubscribed or bounced address active again
        #[arg(long)]
        reactivate: bool,
    },
    /// Mark a subscriber unsubscribed (the row is kept, so the unsubscribe sticks).
    #[command(after_help = "Example:\n  gazette subscribers remove reader@example.org")]
    Remove { email: String },
    /// List subscribers.
    #[command(
        after_help = "Examples:\n  gazette subscribers list\n  gazette subscribers list --status active --format csv"
    )]
    List {
        /// pending, active, unsubscribed, bounced or complained
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value = "table", value_parser = ["table", "csv", "json"])]
        format: String,
    },
    /// Import a CSV file whose header row names an `email` column (and optionally `name`).
    #[command(after_help = "Example:\n  gazette subscribers import subscribers/example.csv")]
    Import { file: PathBuf },
    /// Export subscribers as CSV to standard output.
    #[command(after_help = "Example:\n  gazette subscribers export --status active > active.csv")]
    Export {
        #[arg(long)]
        status: Option<String>,
    },
}

/// Rows fetched per query when listing or exporting: memory stays flat however many there are.
const PAGE: u32 = 10_000;

pub fn run(config: &Config, command: SubscribersCommand) -> anyhow::Result<ExitCode> {
    // Arguments are checked before the database is opened (or created).
    let command = Checked::from(command)?;
    super::runtime()?.block_on(async {
        let store = Store::open(&config.paths.database).await?;
        let code = match command {
            Checked::Add { email, name, reactivate } => add(&store, email, name, reactivate).await?,
            Checked::Remove { email } => remove(&store, &email).await?,
            Checked::List { status, format } => ok_unless_pipe_closed(list(&store, status, format).await)?,
            Checked::Import { file, opened } => import(&store, &file, opened).await?,
            Checked::Export { status } => ok_unless_pipe_closed(export(&store, status).await)?,
        };
        store.close().await;
        Ok(code)
    })
}

#[derive(Clone, Copy)]
enum Format {
    Table,
    Csv,
    Json,
}

/// The command with its arguments parsed.
enum Checked {
    Add { email: SubscriberEmail, name: Option<String>, reactivate: bool },
    Remove { email: SubscriberEmail },
    List { status: Option<Status>, format: Format },
    Import { file: std::path::PathBuf, opened: std::fs::File },
    Export { status: Option<Status> },
}

impl Checked {
    fn from(command: SubscribersCommand) -> Result<Checked, ExitError> {
        let email = |s: &str| s.parse::<SubscriberEmail>().map_err(|e| ExitError::unusable(e.to_string()));
        let status = |s: Option<String>| {
            s.map(|s| s.parse::<Status>().map_err(|e| ExitError::unusable(format!("--status: {e}")))).transpose()
        };
        Ok(match command {
            SubscribersCommand::Add { email: e, name, reactivate } => Checked::Add {
                email: email(&e)?,
                name: match name {
                    Some(n) => clean_name(&n).map_err(|e| ExitError::unusable(format!("--name: {e}")))?,
                    None => None,
                },
                reactivate,
            },
            SubscribersCommand::Remove { email: e } => Checked::Remove { email: email(&e)? },
            SubscribersCommand::List { status: s, format } => Checked::List {
                status: status(s)?,
                format: match format.as_str() {
                    "csv" => Format::Csv,
                    "json" => Format::Json,
                    _ => Format::Table,
                },
            },
            SubscribersCommand::Import { file } => match std::fs::File::open(&file) {
                Ok(opened) => Checked::Import { file, opened },
                // Not a usage error: the file named is the input, and it is missing or unreadable.
                Err(e) => return Err(ExitError::failure(format!("{}: cannot read: {e}", file.display()))),
            },
            SubscribersCommand::Export { status: s } => Checked::Export { status: status(s)? },
        })
    }
}

async fn add(
    store: &Store,
    email: SubscriberEmail,
    name: Option<String>,
    reactivate: bool,
) -> anyhow::Result<ExitCode> {
    let new = NewSubscriber { email, name, status: Status::Active, source: Source::Cli };
    Ok(match store.add(&new, reactivate).await? {
        AddOutcome::Added(s) => {
            say!("added {} (active)", s.email);
            ExitCode::SUCCESS
        }
        AddOutcome::Activated(s) => {
            say!("{} was pending confirmation; now active", s.email);
            ExitCode::SUCCESS
        }
        AddOutcome::Unchanged(s) => {
            say!("{} is already {}; nothing changed", s.email, s.status);
            ExitCode::SUCCESS
        }
        AddOutcome::Reactivated { previous, subscriber } => {
            say!("{} was {previous}; active again", subscriber.email);
            ExitCode::SUCCESS
        }
        AddOutcome::Suppressed(s) => {
            say!(
                "{} is {} (since {}) and stays so; add --reactivate if they asked to receive the newsletter again",
                s.email,
                s.status,
                s.status_changed_at.format("%Y-%m-%d")
            );
            Exit::Failure.into()
        }
    })
}

async fn remove(store: &Store, email: &SubscriberEmail) -> anyhow::Result<ExitCode> {
    Ok(match store.unsubscribe(email).await? {
        RemoveOutcome::Unsubscribed(s) => {
            say!("unsubscribed {}", s.email);
            ExitCode::SUCCESS
        }
        RemoveOutcome::AlreadyInactive(s) => {
            say!("{} is already {}; nothing changed", s.email, s.status);
            ExitCode::SUCCESS
        }
        RemoveOutcome::NotFound => {
            say!("no subscriber has the address {email}; nothing changed");
            Exit::Failure.into()
        }
    })
}

async fn import(store: &Store, file: &std::path::Path, opened: std::fs::File) -> anyhow::Result<ExitCode> {
    let shown = file.display().to_string();
    let report = store.import_reader(opened, file, |row| say!("{shown}:{}: {}", row.line, row.reason)).await?;
    say!(
        "added {}, unchanged {}, skipped {} (unsubscribed or bounced), invalid {}",
        report.added,
        report.unchanged,
        report.skipped,
        report.invalid
    );
    Ok(if report.invalid > 0 { Exit::Failure } else { Exit::Success }.into())
}

/// Calls `each` with every subscriber (of `status`), a page at a time.
async fn for_each_page(
    store: &Store,
    status: Option<Status>,
    mut each: impl FnMut(&[Subscriber]) -> std::io::Result<()>,
) -> anyhow::Result<u64> {
    let mut after = 0;
    let mut count = 0;
    loop {
        let page = store.list_page(status, after, PAGE).await?;
        let Some(last) = page.last() else { return Ok(count) };
        after = last.id;
        count += page.len() as u64;
        each(&page)?;
    }
}

fn time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn list(store: &Store, status: Option<Status>, format: Format) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match format {
        Format::Csv => write_csv(store, status, &mut out, true).await?,
        Format::Json => {
            let mut first = true;
            write!(out, "[")?;
            for_each_page(store, status, |page| {
                for s in page {
                    write!(out, "{}\n  ", if first { "" } else { "," })?;
                    first = false;
                    serde_json::to_writer(&mut out, s)?;
                }
                Ok(())
            })
            .await?;
            writeln!(out, "{}]", if first { "" } else { "\n" })?;
        }
        Format::Table => {
            // Column widths come from the first page; later rows may stick out, which is fine.
            let mut widths: Option<[usize; 2]> = None;
            // A bounce or complaint says why, when a report gave the reason.
            let with_reason = matches!(status, Some(Status::Bounced | Status::Complained));
            let n = for_each_page(store, status, |page| {
                let [email_w, name_w] = match widths {
                    Some(w) => w,
                    None => {
                        let email_w = page.iter().map(|s| s.email.chars().count()).max().unwrap_or(0).max(5);
                        let name_w = page
                            .iter()
                            .map(|s| s.name.as_deref().unwrap_or("").chars().count())
                            .max()
                            .unwrap_or(0)
                            .max(4);
                        // SINCE is always 20 characters wide (an RFC 3339 time in UTC).
                        let since = if with_reason { format!("{:20}  REASON", "SINCE") } else { "SINCE".to_string() };
                        writeln!(
                            out,
                            "{:>7}  {:email_w$}  {:name_w$}  {:12}  {:6}  {since}",
                            "ID", "EMAIL", "NAME", "STATUS", "SOURCE"
                        )?;
                        *widths.insert([email_w, name_w])
                    }
                };
                for s in page {
                    let reason = if with_reason {
                        format!("  {}", s.status_reason.as_deref().unwrap_or("-"))
                    } else {
                        String::new()
                    };
                    writeln!(
                        out,
                        "{:>7}  {:email_w$}  {:name_w$}  {:12}  {:6}  {}{reason}",
                        s.id,
                        s.email,
                        s.name.as_deref().unwrap_or(""),
                        s.status.as_str(),
                        s.source.as_str(),
                        time(&s.status_changed_at)
                    )?;
                }
                Ok(())
            })
            .await?;
            match (n, status) {
                (0, None) => writeln!(out, "no subscribers")?,
                (0, Some(st)) => writeln!(out, "no {st} subscribers")?,
                (1, _) => writeln!(out, "1 subscriber")?,
                (n, _) => writeln!(out, "{n} subscribers")?,
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

async fn export(store: &Store, status: Option<Status>) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    write_csv(store, status, &mut out, false).await?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// CSV with a header row, readable by `import` (which takes `email`, `name` and `status`).
async fn write_csv(store: &Store, status: Option<Status>, out: &mut impl Write, with_id: bool) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    let header = ["email", "name", "status", "source", "created_at", "status_changed_at"];
    if with_id {
        w.write_record(std::iter::once("id").chain(header))?;
    } else {
        w.write_record(header)?;
    }
    for_each_page(store, status, |page| {
        for s in page {
            let fields = [
                s.email.clone(),
                s.name.clone().unwrap_or_default(),
                s.status.to_string(),
                s.source.as_str().to_string(),
                time(&s.created_at),
                time(&s.status_changed_at),
            ];
            if with_id {
                w.write_record(std::iter::once(s.id.to_string()).chain(fields))?;
            } else {
                w.write_record(&fields)?;
            }
        }
        Ok(())
    })
    .await?;
    w.flush()?;
    Ok(())
}

/// A reader that closed the pipe (`gazette subscribers export | head`) is not an error.
fn ok_unless_pipe_closed(result: anyhow::Result<ExitCode>) -> anyhow::Result<ExitCode> {
    match result {
        Err(e) if e.chain().any(broken_pipe) => Ok(ExitCode::SUCCESS),
        other => other,
    }
}

/// Whether `e` is, or wraps, a write to a closed pipe: the CSV writer's errors travel inside
/// `io::Error`s of another kind, so the wrapped error is looked at too.
fn broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        return io.kind() == std::io::ErrorKind::BrokenPipe || io.get_ref().is_some_and(|inner| broken_pipe(inner));
    }
    if let Some(csv) = e.downcast_ref::<csv::Error>() {
        return matches!(csv.kind(), csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe);
    }
    false
}
