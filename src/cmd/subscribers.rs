//! `gazette subscribers`.

use std::process::ExitCode;

use crate::config::Config;
use crate::cli::SubscribersCommand;

pub fn run(_config: &Config, _command: SubscribersCommand) -> anyhow::Result<ExitCode> {
    Err(crate::cli::UsageError("`gazette subscribers` is not implemented yet".into()).into())
}
