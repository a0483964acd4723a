//! `gazette check`: validates the configuration, the templates and every digest, and lists every
//! problem at once. Exit 1 when any digest has a problem.

use std::process::ExitCode;

use crate::config::Config;
use crate::issue::PinnedNumbers;

pub fn run(config: &Config) -> anyhow::Result<ExitCode> {
    let archive = super::load_archive(config, &PinnedNumbers::new())?;
    for p in &archive.problems {
        println!("{p}");
    }
    let files_with_problems = {
        let mut paths: Vec<_> = archive.problems.iter().map(|p| &p.path).collect();
        paths.dedup();
        paths.len()
    };
    println!(
        "{} digests, {} issues, {} problems{}",
        archive.digest_count,
        archive.issues.len(),
        archive.problems.len(),
        if files_with_problems > 0 { format!(" in {files_with_problems} files") } else { String::new() }
    );
    Ok(if archive.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
