//! `gazette run`: the scheduler, one round (`--once`) or until SIGTERM.

use std::process::ExitCode;

use chrono::{DateTime, Utc};

use crate::config::Config;

pub fn run(config: &Config, once: bool, dry_run: bool, now: Option<DateTime<Utc>>) -> anyhow::Result<ExitCode> {
    if dry_run {
        return dry_run_round(config, now.unwrap_or_else(Utc::now));
    }
    let ok = super::runtime()?.block_on(crate::scheduler::run(config, once, now))?;
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `run --once --dry-run`: says what the round would do, refused as the round would be (placeholders).
fn dry_run_round(config: &Config, now: DateTime<Utc>) -> anyhow::Result<ExitCode> {
    let transport = crate::deliver::Transport::from_config(config)?;
    crate::readiness::ready_for_readers(config)?;
    // Opening a missing SQLite file would create it: a dry run writes nothing.
    if let crate::config::Database::Sqlite(path) = &config.paths.database
        && !path.exists()
    {
        return Err(crate::error::ExitError::unusable(format!(
            "there is no database at {} yet: nothing is published or sent, and there are no subscribers. \
             Import subscribers first (`gazette subscribers import`), then ask again",
            path.display()
        ))
        .into());
    }
    let lines = super::runtime()?.block_on(async {
        let store = crate::store::Store::open_for_sending(&config.paths.database).await?;
        let lines = crate::scheduler::dry_round(config, &store, &transport, now).await;
        store.close().await;
        lines
    })?;
    for line in lines {
        say!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
