//! One module per command of the command line. Each takes the checked configuration and its own
//! arguments and returns the exit code; errors go back to `cli`, which prints them.

pub mod build;
pub mod check;
pub mod preview;
pub mod run;
pub mod send;
pub mod serve;
pub mod status;
pub mod subscribers;

use std::path::Path;

use crate::cli::UsageError;
use crate::config::{Config, ConfigError};
use crate::digest::{self, ParseError};
use crate::issue::{self, Issue, PinnedNumbers, WeekRule, WeekSpec};
use crate::render::{self, RenderError, TemplateFile, Templates};

/// The digests folder read and grouped: the issues of every good digest, and every problem.
pub struct Archive {
    pub digest_count: usize,
    pub issues: Vec<Issue>,
    pub problems: Vec<ParseError>,
}

pub fn week_rule(config: &Config) -> WeekRule {
    WeekRule { starts: config.schedule.week_starts, timezone: config.schedule.timezone }
}

/// Reads `[paths] digests` and groups it into issues, keeping the numbers in `pinned`.
pub fn load_archive(config: &Config, pinned: &PinnedNumbers) -> anyhow::Result<Archive> {
    let dir = &config.paths.digests;
    let corpus = digest::read_folder(dir).map_err(|e| {
        ConfigError(format!(
            "cannot read the digests folder {}: {e}; set [paths] digests in {}",
            dir.display(),
            config.describe_source()
        ))
    })?;
    let digest_count = corpus.digests.len();
    let mut problems = corpus.problems;
    problems.sort();
    let issues = issue::group_into_issues(corpus.digests, &week_rule(config), pinned);
    Ok(Archive { digest_count, issues, problems })
}

/// The built-in templates with the files of `[paths] templates` over them. A missing folder is
/// fine (a fresh project runs on the built-ins); a broken template is a configuration error.
pub fn load_templates(config: &Config) -> anyhow::Result<Templates> {
    let dir = &config.paths.templates;
    let mut files = Vec::new();
    if dir.is_dir() {
        let entries = std::fs::read_dir(dir).map_err(|e| ConfigError(format!("cannot read the templates folder {}: {e}", dir.display())))?;
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect();
        paths.sort();
        for path in paths {
            let Some(name) = path.file_name().and_then(|n| n.to_str()).filter(|n| !n.starts_with('.')) else { continue };
            let source = std::fs::read_to_string(&path)
                .map_err(|e| ConfigError(format!("{}: cannot read the template: {e}", path.display())))?;
            files.push(TemplateFile { name: name.to_string(), path: path.clone(), source });
        }
    }
    Templates::new(&config.email.subject, files).map_err(|e| template_error(e).into())
}

/// Rendering errors are template (or `[email] subject`) errors: the user fixes a file, exit 2.
pub fn template_error(e: RenderError) -> ConfigError {
    ConfigError(e.to_string())
}

/// The issue of the week containing `spec`, or an error that names the week and the nearest issues.
pub fn select_week<'a>(config: &Config, issues: &'a [Issue], spec: WeekSpec) -> Result<&'a Issue, UsageError> {
    let rule = week_rule(config);
    if let Some(i) = issue::find_week(issues, &rule, spec.0) {
        return Ok(i);
    }
    let start = rule.week_start(spec.0);
    let label = issue::week_label(start, start + chrono::Duration::days(6));
    let before = issues.iter().rev().find(|i| i.start < start);
    let after = issues.iter().find(|i| i.start > start);
    let nearest: Vec<String> =
        [before, after].into_iter().flatten().map(|i| format!("#{} {} (--week {})", i.number, i.label, i.id)).collect();
    let hint = if nearest.is_empty() { "there are no issues at all; add digests first".to_string() } else { format!("the nearest issues: {}", nearest.join(", ")) };
    Err(UsageError(format!("the week of {label} has no digests, so there is no issue for it; {hint}")))
}

/// Writes `contents` to `path` unless it holds them already, through a temporary file renamed
/// into place so a reader never sees half a file. Returns whether the file was written.
pub fn write_if_changed(path: &Path, contents: &[u8]) -> anyhow::Result<bool> {
    use anyhow::Context;
    if std::fs::read(path).is_ok_and(|old| old == contents) {
        return Ok(false);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create the folder {}", dir.display()))?;
    let tmp = dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("out")));
    std::fs::write(&tmp, contents).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot move {} to {}", tmp.display(), path.display()))?;
    Ok(true)
}

/// Renders the email of each issue and warns about those Gmail would clip.
pub fn warn_large_emails(config: &Config, templates: &Templates, issues: &[&Issue]) -> Result<(), RenderError> {
    let sizes = render::par_map(issues, |i| render::email_html_size(config, templates, i));
    for (issue, size) in issues.iter().zip(sizes) {
        warn_if_large(issue, size?);
    }
    Ok(())
}

/// The issue a command is about: the week named by `--week`, or else the last complete week
/// before `now` in the configured zone.
pub fn select_issue<'a>(config: &Config, archive: &'a Archive, week: Option<WeekSpec>, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<&'a Issue> {
    match week {
        Some(spec) => Ok(select_week(config, &archive.issues, spec)?),
        None => {
            let last = week_rule(config).last_complete_week(now);
            select_week(config, &archive.issues, WeekSpec(last))
                .map_err(|e| UsageError(format!("{e} (it is the last complete week; name another with --week)")).into())
        }
    }
}

/// Refuses to go on when any digest is broken: a broken file may belong to the week being sent.
pub fn refuse_problems(archive: &Archive) -> anyhow::Result<()> {
    if archive.problems.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = archive.problems.iter().map(ToString::to_string).collect();
    anyhow::bail!("{} problem(s) in the digests; fix them first (`gazette check` lists them):\n{}", list.len(), list.join("\n"))
}

/// Issue numbers already pinned by a send, when the database exists (building never creates it).
pub fn pinned_numbers(config: &Config) -> anyhow::Result<PinnedNumbers> {
    if !config.paths.database.exists() {
        return Ok(PinnedNumbers::new());
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let store = crate::store::Store::open(&config.paths.database).await?;
        let pinned = crate::store::ledger::pinned_numbers(store.pool()).await?;
        store.close().await;
        Ok(pinned)
    })
}

pub fn warn_if_large(issue: &Issue, html_bytes: usize) {
    if html_bytes > render::GMAIL_CLIP_BYTES {
        tracing::warn!(
            "issue {issue}: its email HTML is {} KB; Gmail clips messages over about 100 KB and hides the unsubscribe link",
            html_bytes / 1024
        );
    }
}
