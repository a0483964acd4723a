//! `gazette status`.

use std::process::ExitCode;

use crate::config::Config;
use crate::issue::WeekSpec;

pub fn run(_config: &Config, _week: Option<WeekSpec>, _json: bool) -> anyhow::Result<ExitCode> {
    Err(crate::cli::UsageError("`gazette status` is not implemented yet".into()).into())
}
