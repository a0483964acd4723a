//! `gazette run`: the scheduler, one round (`--once`) or until SIGTERM.

use std::process::ExitCode;

use chrono::{DateTime, Utc};

use crate::config::Config;

pub fn run(config: &Config, once: bool, now: Option<DateTime<Utc>>) -> anyhow::Result<ExitCode> {
    let ok = super::runtime()?.block_on(crate::scheduler::run(config, once, now))?;
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
