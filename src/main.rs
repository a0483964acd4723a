use std::process::ExitCode;

fn main() -> ExitCode {
    gazette::cli::main()
}
