//! `gazette preview`.

use std::process::ExitCode;

use crate::config::Config;
use crate::issue::WeekSpec;

pub fn run(_config: &Config, _week: Option<WeekSpec>) -> anyhow::Result<ExitCode> {
    Err(crate::cli::UsageError("`gazette preview` is not implemented yet".into()).into())
}
