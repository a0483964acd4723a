//! `gazette build`: the published issues' archive and feeds into `[paths] out`, or with
//! `--drafts` every week's into `[paths] drafts`. Exit 1 when digests had to be left out or an
//! issue's email cannot be made.

use std::process::ExitCode;

use chrono::{DateTime, Utc};

use crate::build_cache::CacheUse;
use crate::config::Config;
use crate::issue::WeekSpec;
use crate::project::Project;
use crate::project::{BuildPlan, BuildReport, Publish, Site};
use crate::store::Store;
use crate::urls;

pub fn run(config: Config, week: Option<WeekSpec>, drafts: bool, now: DateTime<Utc>) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(async {
        let (project, written) = if drafts {
            let mut project = Project::load_if_recorded(config, now, CacheUse::Update).await?;
            let only = week.map(|w| project.select(Some(w)).map(|i| i.id.clone())).transpose()?;
            let written = project.build(BuildPlan { site: Site::Drafts, publish: None, only }).await?;
            report(&project, &written, "every week, drafts included");
            (project, written)
        } else {
            // Building publishes: the due weeks, and a week named by hand.
            let store = Store::open(&config.paths.database).await?;
            let mut project = Project::load_to_build(config, Some(&store), now).await?;
            let only = week.map(|w| project.select(Some(w)).map(|i| i.id.clone())).transpose()?;
            let publish = Some(Publish { store: &store, by_hand: only.clone() });
            let written = project.build(BuildPlan { site: Site::Published, publish, only }).await?;
            store.close().await;
            report(&project, &written, "the published issues");
            (project, written)
        };
        for p in &project.problems {
            eprintln!("{p}");
        }
        if !project.problems.is_empty() {
            eprintln!(
                "{} digest problem(s): those files were left out; `gazette check` lists every problem",
                project.problems.len()
            );
        }
        let complete = project.problems.is_empty() && written.email_failures.is_empty();
        // The process ends next: freeing every digest one by one took 0.3 s of a 100,000-digest
        // build, and the system takes the memory back at once.
        std::mem::forget(project);
        Ok(if complete { ExitCode::SUCCESS } else { ExitCode::from(1) })
    })
}

fn report(project: &Project, w: &BuildReport, what: &str) {
    for id in &w.published {
        if let Some(i) = project.issue(id) {
            say!("published #{} {}", i.number, i.label);
        }
    }
    w.warn_email();
    let (examples, drafts): (Vec<&crate::issue::CatalogIssue>, Vec<&crate::issue::CatalogIssue>) =
        project.drafts().into_iter().partition(|i| i.is_example());
    let drafts = drafts.len();
    say!(
        "{}: {what}: {} files ({} changed{}): {} issue page{} ({} rendered), index, {}, {}, {} and {} theme feeds; {} digest file(s) read, the others unchanged since the last build{}",
        w.folder.display(),
        w.total,
        w.changed,
        if w.removed > 0 { format!(", {} stale removed", w.removed) } else { String::new() },
        w.pages,
        if w.pages == 1 { "" } else { "s" },
        w.rendered,
        urls::RSS,
        urls::ATOM,
        urls::JSON_FEED,
        w.theme_feeds,
        project.digests_parsed,
        match w.reread {
            0 => String::new(),
            n => format!("; {n} unchanged one(s) read again whole for what was rendered"),
        }
    );
    if drafts > 0 && w.folder == project.config.paths.out {
        say!(
            "{drafts} week(s) not due yet stay drafts: `gazette build --drafts` writes them into {}",
            project.config.paths.drafts.display()
        );
    }
    if w.folder == project.config.paths.out {
        for i in examples {
            say!(
                "the week of {} holds only the example digest `gazette init` wrote: it is never published; `gazette build --drafts` shows it",
                i.label
            );
        }
    }
}
