//! The command line: argument parsing, loading the configuration once, and the one place that
//! prints errors and picks exit codes (0 fine, 1 the input has problems or the job failed,
//! 2 usage or configuration error).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Config, ConfigError};
use crate::issue::WeekSpec;

#[derive(Debug, Parser)]
#[command(
    name = "gazette",
    version,
    about = "Turns a folder of article digests into a weekly newsletter: email, web archive and feeds.",
    after_help = "Start with `gazette check`, then `gazette build --all` and `gazette send --test`.\n\
                  The configuration is ./publish.toml, or the file named by --config or GAZETTE_CONFIG;\n\
                  without one, Gazette runs on its embedded defaults."
)]
pub struct Cli {
    /// The configuration file [default: ./publish.toml, or the embedded defaults when it is absent]
    #[arg(long, global = true, env = "GAZETTE_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the configuration, the templates and every digest; list all problems.
    #[command(after_help = "Example:\n  gazette check\n  gazette --config /srv/news/publish.toml check")]
    Check,

    /// Write the web archive and the RSS, Atom and JSON feeds into [paths] out.
    #[command(after_help = "Examples:\n  gazette build --all\n  gazette build --week 2023-07-23\n  gazette build --week 2023-W29")]
    Build {
        /// Any date inside the week (2023-07-23) or an ISO week (2023-W29) [default: every week]
        #[arg(long, value_parser = parse_week, conflicts_with = "all")]
        week: Option<WeekSpec>,
        /// Every week (the default when --week is not given)
        #[arg(long)]
        all: bool,
    },

    /// Write one week's email (HTML and text, for a sample subscriber) into <out>/preview/.
    #[command(after_help = "Example:\n  gazette preview --week 2023-07-23")]
    Preview {
        /// Any date inside the week or an ISO week [default: the last complete week]
        #[arg(long, value_parser = parse_week)]
        week: Option<WeekSpec>,
    },

    /// Send a week's issue to every active subscriber, exactly once each, or a test copy.
    #[command(after_help = "Examples:\n  gazette send --test --week 2023-07-23        a copy to [email] editor\n  gazette send --test me@example.org --week 2023-W29\n  gazette send --week 2023-07-23 --dry-run\n  gazette send --week 2023-07-23")]
    Send {
        /// Any date inside the week or an ISO week [default: the last complete week]
        #[arg(long, value_parser = parse_week)]
        week: Option<WeekSpec>,
        /// Send only to these addresses, with [TEST] in the subject; without ADDR, to [email] editor
        #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "")]
        test: Vec<String>,
        /// Render every message and report what would be sent, without connecting
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

    /// The scheduler: build and send each week's issue when [schedule] cron says it is due.
    #[command(after_help = "Examples:\n  gazette run\n  gazette run --once\n  gazette run --once --now 2023-07-24T08:05:00+01:00")]
    Run {
        /// Do one round and exit (for cron or a systemd timer)
        #[arg(long)]
        once: bool,
        /// Act as if it were this moment (RFC 3339)
        #[arg(long, value_name = "RFC3339")]
        now: Option<chrono::DateTime<chrono::FixedOffset>>,
    },

    /// Serve the archive and feeds over HTTP, with subscribe, confirm and one-click unsubscribe.
    #[command(after_help = "Example:\n  gazette serve --listen 127.0.0.1:8080")]
    Serve {
        /// The address to listen on [default: [server] listen]
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
    },

    /// Manage subscribers: add, remove, list, import and export.
    #[command(subcommand)]
    Subscribers(SubscribersCommand),
}

#[derive(Debug, Subcommand)]
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
    #[command(after_help = "Examples:\n  gazette subscribers list\n  gazette subscribers list --status active --format csv")]
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

/// A mistake in how Gazette was called (as opposed to a problem in the input or a failure).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

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
            if e.is::<ConfigError>() || e.is::<UsageError>() { ExitCode::from(2) } else { ExitCode::from(1) }
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("gazette=info,warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
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
    let config = load_config(cli.config.as_ref())?;
    match cli.command {
        Command::Check => crate::cmd::check::run(&config),
        Command::Build { week, all: _ } => crate::cmd::build::run(&config, week),
        Command::Preview { week } => crate::cmd::preview::run(&config, week),
        Command::Send { week, test, dry_run } => crate::cmd::send::run(&config, week, test, dry_run),
        Command::Status { week, json } => crate::cmd::status::run(&config, week, json),
        Command::Run { once, now } => crate::cmd::run::run(&config, once, now),
        Command::Serve { listen } => crate::cmd::serve::run(&config, listen),
        Command::Subscribers(sub) => crate::cmd::subscribers::run(&config, sub),
    }
}

/// Parses `--week` values for clap.
pub fn parse_week(s: &str) -> Result<WeekSpec, String> {
    s.parse()
}

/// A multi-threaded tokio runtime for the commands that do network or database work.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}
