//! `gazette send`.

use std::process::ExitCode;

use crate::config::Config;
use crate::issue::WeekSpec;

pub fn run(_config: &Config, _week: Option<WeekSpec>, _test: Vec<String>, _dry_run: bool) -> anyhow::Result<ExitCode> {
    Err(crate::cli::UsageError("`gazette send` is not implemented yet".into()).into())
}
