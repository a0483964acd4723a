//! `gazette store copy`: moves the database to another one (a SQLite file to PostgreSQL, most often).

use std::process::ExitCode;

use crate::config::{Config, Database, parse_database};
use crate::error::ExitError;
use crate::store::Store;

#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {
    /// Copy subscribers, sends and their deliveries, confirmations, the publication record and the token secret into an empty database.
    #[command(
        after_help = "Examples:\n  gazette store copy --to postgres://gazette@db.example.org/gazette\n  gazette store copy --from old/gazette.db --to postgres://gazette@localhost/gazette"
    )]
    Copy {
        /// The database to copy from: a SQLite file or a postgres:// URL [default: [paths] database]
        #[arg(long, value_name = "DATABASE")]
        from: Option<String>,
        /// The empty database to copy into: a SQLite file or a postgres:// URL (its password from GAZETTE_DATABASE_PASSWORD or ~/.pgpass)
        #[arg(long, value_name = "DATABASE")]
        to: String,
    },
}

pub fn run(config: &Config, command: StoreCommand) -> anyhow::Result<ExitCode> {
    let StoreCommand::Copy { from, to } = command;
    let here = std::env::current_dir()?;
    let parse = |flag: &str, text: &str| {
        parse_database(text, &here).map_err(|why| ExitError::unusable(format!("--{flag}: {why}")))
    };
    let from = match from {
        Some(text) => parse("from", &text)?,
        None => config.paths.database.clone(),
    };
    let to = parse("to", &to)?;
    if from == to {
        return Err(ExitError::unusable(format!("--from and --to are the same database ({from})")).into());
    }
    if let Database::Sqlite(path) = &from
        && !path.exists()
    {
        return Err(ExitError::unusable(format!("--from: {} does not exist", path.display())).into());
    }
    super::runtime()?.block_on(async {
        let source = Store::open(&from).await?;
        let target = Store::open(&to).await?;
        let copied = crate::store::copy::copy(&source, &target).await;
        source.close().await;
        target.close().await;
        let (copied, recovered) = copied?;
        if recovered > 0 {
            say!("{recovered} messages that a stopped send had sent were first recorded from its journal, so that they are not sent again");
        }
        let rows: Vec<String> = copied.iter().map(|(table, n)| format!("{n} {table}")).collect();
        say!("copied {from} into {to}: {}", rows.join(", "));
        say!("point [paths] database at {to} in publish.toml; an unfinished send resumes there with `gazette send --week <week>`");
        Ok(ExitCode::SUCCESS)
    })
}
