//! `gazette check`: validates the configuration, the templates and every digest, and lists every
//! problem at once. Exit 1 when any digest has a problem, 2 when a template is broken.

use std::process::ExitCode;

use crate::config::Config;

pub fn run(config: &Config) -> anyhow::Result<ExitCode> {
    let archive = super::load_archive(config, &super::pinned_numbers(config)?)?;
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

    // Templates: syntax when loading, then every issue's email (which also finds errors that
    // only show with real content, and the emails Gmail would clip).
    let checked = super::load_templates(config).and_then(|t| {
        let issues: Vec<_> = archive.issues.iter().collect();
        super::warn_large_emails(config, &t, &issues).map_err(super::template_error)?;
        // The archive templates too: the index, the newest page, the feeds.
        let newest = archive.issues.last().map(|i| i.id.as_str()).unwrap_or("");
        crate::render::render_site(config, &t, &archive.issues, Some(newest)).map_err(super::template_error)?;
        Ok(())
    });
    if let Err(e) = checked {
        println!("{e}");
        return Ok(ExitCode::from(2));
    }
    Ok(if archive.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
