//! `gazette serve`.

use std::process::ExitCode;

use crate::config::Config;


pub fn run(_config: &Config, _listen: Option<std::net::SocketAddr>) -> anyhow::Result<ExitCode> {
    Err(crate::cli::UsageError("`gazette serve` is not implemented yet".into()).into())
}
