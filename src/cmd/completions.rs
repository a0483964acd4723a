//! `gazette completions SHELL`: a completion script for bash, zsh, fish, elvish or PowerShell.

use std::process::ExitCode;

pub fn run(shell: clap_complete::Shell, command: &mut clap::Command) -> anyhow::Result<ExitCode> {
    clap_complete::generate(shell, command, "gazette", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
