//! `gazette run`.

use std::process::ExitCode;

use crate::config::Config;


pub fn run(_config: &Config, _once: bool, _now: Option<chrono::DateTime<chrono::FixedOffset>>) -> anyhow::Result<ExitCode> {
    Err(crate::cli::UsageError("`gazette run` is not implemented yet".into()).into())
}
