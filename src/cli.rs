//! The command line: argument parsing, loading the configuration once, and the one place that
//! prints errors and ends with the exit code each carries from where it was made (`error::Exit`:
//! 0 fine, 1 the input has problems or the job failed, 2 usage or configuration error).

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, FixedOffset};
use clap::{CommandFactory, Parser, Subcommand};

use crate::cmd;
use crate::cmd::bounces::BouncesCommand;
use crate::cmd::subscribers::SubscribersCommand;
use crate::config::{self, Config, ConfigError};
use crate::error::{self, Exit, ExitError};
use crate::issue::WeekSpec;

#[derive(Debug, Parser)]
#[command(
    name = "gazette",
    version,
    about = "Turns a folder of article digests into a weekly newsletter: email, web archive and feeds.",
    after_help = format!(
        "First steps: gazette init DIR, then in DIR: {}.\n\
         The configuration is ./publish.toml, or the file named by --config or GAZETTE_CONFIG;\n\
         without one, Gazette runs on its embedded defaults.",
        crate::project::FIRST_STEPS
    )
)]
pub struct Cli {
    /// The configuration file [default: ./publish.toml, or the embedded defaults when it is absent]
    #[arg(long, global = true, env = "GAZETTE_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Act as if it were this moment (RFC 3339): which weeks are due, and so published, depends on it
    #[arg(long, global = true, value_name = "RFC3339", value_parser = parse_now)]
    pub now: Option<DateTime<FixedOffset>>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a project: a commented publish.toml with every key, an example digest, the templates.
    #[command(after_help = "Examples:\n  gazette init\n  gazette init my-newsletter")]
    Init {
        /// The folder to write into (created when missing) [default: the current folder]
        #[arg(default_value = ".", hide_default_value = true)]
        dir: PathBuf,
    },

    /// Write a new digest, named and laid out as the format wants, with placeholders to write over.
    #[command(
        after_help = "The file is <[paths] digests>/NNN_<id>.txt: NNN the next sequence number of the folder (it only\n\
                            orders the files), the id 16 hex digits made from the link. Every placeholder line is a problem\n\
                            for `gazette check` until it is written over or deleted.\n\n\
                            Examples:\n  gazette new \"Open weights are not open source\" --link https://example.com/article\n  \
                            gazette new \"A title\" --link https://example.com/a --date 2023-07-23 --source https://example.com/"
    )]
    New {
        /// The article's title
        title: String,
        /// The article's address (http or https); one digest a link
        #[arg(long, value_name = "URL")]
        link: String,
        /// When the article was collected, as 2023-07-23 [default: today in [schedule] timezone]
        #[arg(long, value_name = "DATE")]
        date: Option<String>,
        /// Where the article was collected from, linked from the date [default: the link]
        #[arg(long, value_name = "URL")]
        source: Option<String>,
    },

    /// Validate everything a build or a send needs; list every problem. Exit 0 ready, 1 content problems, 2 configuration.
    #[command(
        after_help = "Examples:\n  gazette check\n  gazette check --smtp\n  gazette check --dns\n  gazette --config /srv/news/publish.toml check"
    )]
    Check {
        /// Connect to the [smtp] server as a send would (TLS, login), send nothing, and say what it offers
        #[arg(long, conflicts_with = "dns")]
        smtp: bool,
        /// Look up and judge SPF, DKIM, DMARC and MX for the sending domains, with the records to publish.
        /// Exit 0 as receivers want it, 1 warnings, 2 mail will be refused
        #[arg(long)]
        dns: bool,
    },

    /// Publish what is due and write the archive and the RSS, Atom and JSON feeds into [paths] out.
    #[command(
        after_help = "Examples:\n  gazette build\n  gazette build --week 2023-07-23     publishes that week now, due or not\n  gazette build --drafts              every week, into [paths] drafts"
    )]
    Build {
        /// Publish this week by hand (any date inside it, or an ISO week such as 2023-W29) and write its page
        #[arg(long, value_parser = parse_week, conflicts_with = "all")]
        week: Option<WeekSpec>,
        /// Every published issue's page (the default when --week is not given)
        #[arg(long)]
        all: bool,
        /// Write every week, drafts included, into [paths] drafts instead; publishes nothing
        #[arg(long)]
        drafts: bool,
    },

    /// Write one week's email (HTML and text, for a sample subscriber) into <[paths] drafts>/preview/.
    #[command(after_help = "Example:\n  gazette preview --week 2023-07-23")]
    Preview {
        /// Any date inside the week or an ISO week [default: the last complete week]
        #[arg(long, value_parser = parse_week)]
        week: Option<WeekSpec>,
    },

    /// Send a week's issue to every active subscriber, exactly once each, or a test copy.
    #[command(
        after_help = "Examples:\n  gazette send --test --week 2023-07-23        a copy to [email] editor\n  gazette send --test me@example.org --week 2023-W29\n  gazette send --week 2023-07-23 --dry-run\n  gazette send --week 2023-07-23"
    )]
    Send {
        /// Any date inside the week or an ISO week [default: the last complete week]
        #[arg(long, value_parser = parse_week)]
        week: Option<WeekSpec>,
        /// Send only to these addresses, with [TEST] in the subject; without ADDR, to [email] editor
        #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "")]
        test: Vec<String>,
        /// Say what the send would do (already sent, held back, how many messages still to go, through which relay), without connecting
        #[arg(long)]
        dry_run: bool,
    },

    /// Show how far a week's send got: counts by delivery state and the last error of each failure.
    #[command(after_help = "Examples:\n  gazette status --week 2023-07-23\n  gazette status --json")]
    Status {
        /// Any date inside the week or an ISO week [default: the last complete week]
        #[arg(long, value_parser = parse_week)]
        week: Option<WeekSpec>,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },

    /// The scheduler: publish and send each week's issue when [schedule] cron says it is due.
    #[command(
        after_help = "Examples:\n  gazette run\n  gazette run --once\n  gazette run --once --now 2023-07-24T08:05:00+01:00\n  gazette run --once --dry-run"
    )]
    Run {
        /// Do one round and exit (for cron or a systemd timer)
        #[arg(long)]
        once: bool,
        /// With --once: say what the round would read, publish and send, and change nothing
        #[arg(long, requires = "once")]
        dry_run: bool,
    },

    /// Serve the archive and feeds over HTTP, with subscribe, confirm and one-click unsubscribe.
    #[command(
        after_help = "Examples:\n  gazette serve\n  gazette serve --listen 127.0.0.1:9000\n  gazette serve --behind-proxy"
    )]
    Serve {
        /// The address to listen on [default: [server] listen]
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        /// A reverse proxy serves [site] base_url: leave links as they are (as [server] behind_proxy = true)
        #[arg(long)]
        behind_proxy: bool,
    },

    /// Manage subscribers: add, remove, list, import and export.
    #[command(subcommand)]
    Subscribers(SubscribersCommand),

    /// Read failure notices and complaints that came back after a send: stop mailing addresses that do not work, never readers for the sender's faults.
    #[command(subcommand)]
    Bounces(BouncesCommand),

    /// What receivers' DMARC aggregate reports say: per day and receiver, the messages that passed DKIM and SPF aligned, and the sources that failed both.
    #[command(
        after_help = "Reports are read from the bounce mailbox (publish rua=mailto:<[email] bounce_address> in the DMARC\nrecord), from [dmarc] mailbox, and by `gazette bounces import`.\n\nExamples:\n  gazette dmarc\n  gazette dmarc --days 7 --json"
    )]
    Dmarc {
        /// The reports of the last N days (whole UTC days before today)
        #[arg(long, value_name = "N", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3660))]
        days: u32,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },

    /// Move the database: copy everything it keeps into an empty SQLite file or PostgreSQL database.
    #[command(subcommand)]
    Store(crate::cmd::store::StoreCommand),

    /// Print a completion script for a shell.
    #[command(
        after_help = "Examples:\n  gazette completions bash > /etc/bash_completion.d/gazette\n  gazette completions zsh > ~/.zfunc/_gazette"
    )]
    Completions { shell: clap_complete::Shell },

    /// List every issue, one a line: number, week, title, when it was published, and its state.
    #[command(
        after_help = "States: draft, example (never published), due (the next round sends it), published (not sent:\n                            not due yet, or too late to be sent on its own), held back (digests to fix), sending n/m, sent n,\n                            skipped (`gazette skip`).\n\nExamples:\n  gazette issues\n  gazette issues --json"
    )]
    Issues {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },

    /// Take back an issue published by mistake that reached nobody: its number is free again.
    #[command(
        after_help = "Refused (exit 1), with the reason, once its send has started or a later issue is numbered\n                            after it, or while its week is due and has digests (the next build would publish it again).\n\n                            Example:\n  gazette unpublish --week 2023-07-17"
    )]
    Unpublish {
        /// Any date inside the week or an ISO week
        #[arg(long, value_parser = parse_week)]
        week: WeekSpec,
    },

    /// Choose not to send a published issue: the scheduler leaves it and stops reminding of it.
    #[command(
        after_help = "`gazette send --week W` still sends it by hand. Refused (exit 1) once its send has started.\n\n                            Example:\n  gazette skip --week 2023-07-17"
    )]
    Skip {
        /// Any date inside the week or an ISO week
        #[arg(long, value_parser = parse_week)]
        week: WeekSpec,
    },

    /// Let the scheduler send an issue the reputation guard holds (the last issue sent passed a [reputation] limit).
    #[command(
        after_help = "The lift is recorded for that issue only: the issue after it is judged afresh by the numbers of\n                            the last one sent. `gazette send --week W` sends a held issue by hand without lifting anything.\n                            Refused (exit 1) when the issue is not held.\n\n                            Example:\n  gazette lift-hold --week 2023-07-24"
    )]
    LiftHold {
        /// Any date inside the week or an ISO week
        #[arg(long, value_parser = parse_week)]
        week: WeekSpec,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            exit_code(&e).into()
        }
    }
}

/// The exit code an error ends Gazette with: the one attached where it was made, else 1.
fn exit_code(e: &anyhow::Error) -> Exit {
    error::attached(e).unwrap_or(Exit::Failure)
}

fn init_logging() {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    // `RUST_LOG` as `target=level` directives (`Targets`: no regex engine to compile, unlike `EnvFilter`).
    const DEFAULT: &str = "gazette=info,warn";
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) => v.parse::<Targets>().unwrap_or_else(|e| {
            eprintln!(
                "RUST_LOG={v}: {e}; it takes target=level directives such as gazette=debug,warn, so {DEFAULT} is used"
            );
            DEFAULT.parse().expect("the default filter parses")
        }),
        Err(_) => DEFAULT.parse().expect("the default filter parses"),
    };
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let _ = tracing_subscriber::registry().with(layer).with(filter).try_init();
}

/// Finds and loads the configuration: `--config`/`GAZETTE_CONFIG` must exist; `./publish.toml` is
/// used when present; otherwise the embedded defaults, relative to the current folder.
pub fn load_config(explicit: Option<&PathBuf>) -> Result<Config, ConfigError> {
    match explicit {
        Some(path) => Config::load(path),
        None => {
            let path = PathBuf::from(config::DEFAULT_FILE);
            if path.exists() { Config::load(&path) } else { Ok(Config::embedded_defaults(std::path::Path::new(""))) }
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let now = cmd::moment(cli.now);
    // These two come before there is a configuration to read.
    match cli.command {
        Command::Init { dir } => return cmd::init::run(&dir),
        Command::Completions { shell } => return cmd::completions::run(shell, &mut Cli::command()),
        _ => {}
    }
    let config = load_config(cli.config.as_ref()).map_err(ExitError::from)?;
    let database = config.paths.database.clone();
    dispatch(cli.command, config, now, cli.now).map_err(|e| name_the_database(e, &database))
}

/// A database error says which file, and that running the command again is safe.
fn name_the_database(e: anyhow::Error, database: &crate::config::Database) -> anyhow::Error {
    let sql = e.chain().find_map(|c| {
        c.downcast_ref::<sqlx::Error>().or_else(|| match c.downcast_ref::<crate::store::StoreError>() {
            Some(crate::store::StoreError::Database(inner)) => Some(inner),
            _ => None,
        })
    });
    let Some(sql) = sql else { return e };
    let busy =
        if held_by_another(sql) { " (another Gazette command held it for longer than the 10 s it waits)" } else { "" };
    e.context(format!(
        "the database {database} could not be used{busy}; what was recorded before is kept: run the command again (a send resumes where it stopped)"
    ))
}

/// Whether SQLite answered that another connection holds the database: `SQLITE_BUSY` ("database
/// is locked", once the wait is over) or `SQLITE_LOCKED`, with any of their extended codes, and
/// also while migrating.
fn held_by_another(e: &sqlx::Error) -> bool {
    use sqlx::error::DatabaseError;
    // https://www.sqlite.org/rescode.html: the primary code is the extended code's low byte.
    const SQLITE_BUSY: i32 = 5;
    const SQLITE_LOCKED: i32 = 6;
    match e {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<sqlx::sqlite::SqliteError>()
            .and_then(|s| s.code()?.parse::<i32>().ok())
            .is_some_and(|code| matches!(code & 0xff, SQLITE_BUSY | SQLITE_LOCKED)),
        sqlx::Error::Migrate(m) => match &**m {
            sqlx::migrate::MigrateError::Execute(e) | sqlx::migrate::MigrateError::ExecuteMigration(e, _) => {
                held_by_another(e)
            }
            _ => false,
        },
        _ => false,
    }
}

fn dispatch(
    command: Command,
    config: Config,
    now: chrono::DateTime<chrono::Utc>,
    at: Option<DateTime<FixedOffset>>,
) -> anyhow::Result<ExitCode> {
    match command {
        Command::Init { .. } | Command::Completions { .. } => unreachable!("handled above"),
        Command::New { title, link, date, source } => {
            cmd::new::run(&config, &title, &link, source.as_deref(), date.as_deref(), now)
        }
        Command::Check { smtp, dns } => cmd::check::run(&config, smtp, dns, now),
        Command::Build { week, all: _, drafts } => cmd::build::run(config, week, drafts, now),
        Command::Preview { week } => cmd::preview::run(config, week, now),
        Command::Send { week, test, dry_run } => cmd::send::run(config, week, test, dry_run, now),
        Command::Status { week, json } => cmd::status::run(config, week, json, now),
        Command::Run { once, dry_run } => {
            cmd::run::run(&config, once, dry_run, at.map(|t| t.with_timezone(&chrono::Utc)))
        }
        Command::Serve { listen, behind_proxy } => cmd::serve::run(config, listen, behind_proxy, now),
        Command::Subscribers(sub) => cmd::subscribers::run(&config, sub, now),
        Command::Bounces(sub) => cmd::bounces::run(&config, sub),
        Command::Dmarc { days, json } => cmd::dmarc::run(&config, days, json, now),
        Command::Store(sub) => cmd::store::run(&config, sub),
        Command::Issues { json } => cmd::issues::list(config, json, now),
        Command::Unpublish { week } => cmd::issues::unpublish(config, week, now),
        Command::Skip { week } => cmd::issues::skip(config, week, now),
        Command::LiftHold { week } => cmd::issues::lift_hold(config, week, now),
    }
}

/// Why `--now` is not a moment, with an example that works.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseNowError {
    #[error("`{0}`: a date alone is not enough: give the time of day and its offset from UTC too, as in {NOW_EXAMPLE}")]
    DateAlone(String),
    #[error("`{0}`: the offset from UTC is missing: add +00:00 (or Z), +01:00 ..., as in {NOW_EXAMPLE}")]
    NoOffset(String),
    #[error("`{0}`: this is not an RFC 3339 moment (a date, a time and an offset from UTC), as in {NOW_EXAMPLE}")]
    NotAMoment(String),
}

const NOW_EXAMPLE: &str = "--now 2026-12-14T08:00:00+00:00";

/// Parses `--now`: a whole RFC 3339 moment. A date alone is refused rather than guessed (midnight
/// where?).
pub fn parse_now(s: &str) -> Result<DateTime<FixedOffset>, ParseNowError> {
    let s = s.trim();
    DateTime::parse_from_rfc3339(s).map_err(|_| {
        if chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() {
            ParseNowError::DateAlone(s.into())
        } else if chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").is_ok()
            || chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M").is_ok()
        {
            ParseNowError::NoOffset(s.into())
        } else {
            ParseNowError::NotAMoment(s.into())
        }
    })
}

/// Parses `--week` values for clap.
pub fn parse_week(s: &str) -> Result<WeekSpec, crate::issue::ParseWeekError> {
    s.parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_says_what_is_missing() {
        assert!(parse_now(" 2026-12-14T08:00:00+01:00 ").is_ok());
        let err = |s: &str| parse_now(s).unwrap_err().to_string();
        assert_eq!(
            err("2026-12-14"),
            "`2026-12-14`: a date alone is not enough: give the time of day and its offset from UTC too, as in --now 2026-12-14T08:00:00+00:00"
        );
        assert_eq!(
            err("2026-12-14T08:00"),
            "`2026-12-14T08:00`: the offset from UTC is missing: add +00:00 (or Z), +01:00 ..., as in --now 2026-12-14T08:00:00+00:00"
        );
        assert_eq!(
            err(" monday "),
            "`monday`: this is not an RFC 3339 moment (a date, a time and an offset from UTC), as in --now 2026-12-14T08:00:00+00:00"
        );
    }

    #[tokio::test]
    async fn a_database_held_by_another_connection_is_told_by_sqlites_code() {
        use sqlx::ConnectOptions;
        let dir = tempfile::tempdir().unwrap();
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("held.db"))
            .create_if_missing(true)
            .busy_timeout(std::time::Duration::ZERO);
        let mut holder = options.connect().await.unwrap();
        sqlx::query("CREATE TABLE t (x)").execute(&mut holder).await.unwrap();
        sqlx::query("BEGIN EXCLUSIVE").execute(&mut holder).await.unwrap();
        let mut other = options.connect().await.unwrap();
        let busy = sqlx::query("INSERT INTO t VALUES (1)").execute(&mut other).await.unwrap_err();
        assert!(held_by_another(&busy), "{busy}");
        let wrapped = anyhow::Error::from(crate::store::StoreError::Database(busy)).context("adding a subscriber");
        let said = name_the_database(wrapped, &crate::config::Database::Sqlite("db/gazette.db".into())).to_string();
        assert!(said.contains("db/gazette.db could not be used (another Gazette command held it"), "{said}");
        let other_error = sqlx::query("SELECT * FROM no_such_table").execute(&mut holder).await.unwrap_err();
        assert!(!held_by_another(&other_error), "{other_error}");
        assert!(!held_by_another(&sqlx::Error::RowNotFound));
    }

    #[test]
    fn the_exit_code_is_the_one_attached_or_else_1() {
        assert_eq!(exit_code(&anyhow::anyhow!("the send failed")), Exit::Failure);
        assert_eq!(exit_code(&ExitError::unusable("--week: no issue").into()), Exit::Unusable);
        let config = ExitError::from(ConfigError("[smtp] ca_file: cannot read".into()));
        assert_eq!(exit_code(&config.into()), Exit::Unusable);
        let usage = anyhow::Error::from(ExitError::unusable("--link: not a URL")).context("outer");
        assert_eq!(exit_code(&usage), Exit::Unusable);
    }
}
