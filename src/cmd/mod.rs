//! One module per command of the command line. Each parses nothing more than its own arguments,
//! calls the project (or the store, the scheduler, the server) and prints what came back; errors
//! go back to `cli`, which prints them and ends with the exit code chosen where they were made (`error`).

/// `println!` for a command's output that a closed pipe cannot stop (`gazette status | head -1`):
/// what cannot be written is dropped and the command goes on (a send keeps sending); the exit
/// code says how the job went, not whether anyone read all of its report.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

pub mod bounces;
pub mod build;
pub mod check;
pub mod completions;
pub mod dmarc;
pub mod init;
pub mod issues;
pub mod new;
pub mod preview;
pub mod run;
pub mod send;
pub mod serve;
pub mod status;
pub mod store;
pub mod subscribers;

use chrono::{DateTime, Utc};

/// A multi-threaded tokio runtime for the commands that do network or database work.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// A runtime on the calling thread alone, for work that waits rather than computes: a send's
/// connections wait on their servers and its records on SQLite's own thread, and without the
/// hand-offs between worker threads a send took about a tenth less CPU (BENCHMARKS.md).
pub fn runtime_on_this_thread() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// The moment a command acts at: `--now` when given, else the clock.
pub fn moment(now: Option<DateTime<chrono::FixedOffset>>) -> DateTime<Utc> {
    now.map(|t| t.with_timezone(&Utc)).unwrap_or_else(Utc::now)
}
