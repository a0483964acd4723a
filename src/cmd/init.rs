//! `gazette init [DIR]`: a new project, ready for `gazette check`.

use std::path::Path;
use std::process::ExitCode;

pub fn run(dir: &Path) -> anyhow::Result<ExitCode> {
    let written = crate::project::scaffold(dir)?;
    for path in &written {
        say!("wrote {}", path.display());
    }
    let cd = if dir == Path::new(".") { String::new() } else { format!("cd {} && ", dir.display()) };
    say!("next: {cd}{}", crate::project::FIRST_STEPS);
    Ok(ExitCode::SUCCESS)
}
