//! A project: the configuration, the templates, the catalog of digests grouped into issues, and
//! the publication record, loaded once. Every command, the scheduler and the server work through
//! it; `site` builds the archive from it (`Project::build`).
//!
//! Publication is decided here and nowhere else. An issue is *published* when its week is due by
//! the schedule (the first fire time after the week's end has passed) or when an editor sends or
//! builds it by hand; everything else is a draft. The archive, the feeds and the scheduler's sends
//! hold published issues only. An issue's number is recorded the first time it is published and
//! never changes; drafts are numbered after the recorded numbers, in week order, which is the
//! number they will get when published in that order.
//!
//! The project holds every issue as the catalog has it (`CatalogIssue`: listed, numbered, linked);
//! whatever shows an issue asks for it whole (`whole_issue`), made from the digests this load
//! parsed or else from its files read again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};

use crate::build_cache::{self, CacheUse, WeekHashes};
use crate::config::Config;
use crate::deliver::{Editions, PreparedEmail};
use crate::digest::{self, CatalogEntry, Digest, Listed, ParseError};
use crate::error::ExitError;
use crate::issue::{self, CatalogIssue, Issue, WeekRule, WeekSpec, WholeIssue};
use crate::issue_id::IssueId;
use crate::render::{self, EmailBody, RenderError, TemplateFile, Templates};
use crate::schedule;
use crate::store::Store;
use crate::store::publications::{self, PublicationRecord};
use crate::themes::ThemeChoice;
use crate::urls;

mod site;
pub use site::{BuildPlan, BuildReport, Publish, Site};

pub struct Project {
    pub config: Config,
    pub templates: Templates,
    /// Every week that has digests, oldest first, as the catalog has it.
    issues: Vec<CatalogIssue>,
    /// How many digests there are.
    pub digest_count: usize,
    /// How many digest files were read and parsed; the others' entries came from the build cache.
    pub digests_parsed: usize,
    /// Every digest that could not be read, sorted by file and line.
    pub problems: Vec<ParseError>,
    record: PublicationRecord,
    /// The last week whose issue is due by the schedule at `now`, if any is.
    due_through: Option<NaiveDate>,
    now: DateTime<Utc>,
    /// The digests this load parsed (their files were not as the build cache recorded them),
    /// whole, by file name: an issue made only of these is whole without reading its files again.
    parsed: foldhash::HashMap<String, Digest>,
    /// Each issue's content hash once computed (by `publish` or a build), by issue id: it does not
    /// change while the project is loaded.
    hashes: BTreeMap<IssueId, String>,
    /// Each week's content hash as the build cache recorded it, and those computed since.
    weeks: WeekHashes,
    /// Where closest links lead in the published archive.
    homes: issue::Homes,
    cache_use: CacheUse,
}

/// What a publication would record: the new issues' ids, and every (id, content hash) written.
pub type PublicationChanges = (Vec<IssueId>, Vec<(IssueId, String)>);

/// An issue's content hash, and how it was found.
pub(crate) struct Hashed {
    pub hash: String,
    /// Computed now from the digests (to record in the build cache), not known before.
    pub computed: bool,
    /// The issue's digests whole, when they had to be read for the hash: what shows it next
    /// need not read them again.
    pub digests: Option<Vec<Digest>>,
    /// Digest files read again for it.
    pub reread: usize,
}

/// The digests read whole while publishing, by issue id, for the build that follows.
pub(crate) type WholeDigests = BTreeMap<IssueId, Vec<Digest>>;

impl Project {
    /// Reads the templates and the digests, and the publication record from `store` (none yet
    /// without one). `now` decides which weeks are due. The build cache is read, never written:
    /// for a command that only looks (`load_to_build` is for those that write the archive).
    pub async fn load(config: Config, store: Option<&Store>, now: DateTime<Utc>) -> anyhow::Result<Project> {
        Project::load_with(config, store, now, CacheUse::Read).await
    }

    /// As `load`, bringing the build cache up to date with the digests read: for the commands that
    /// write the archive (build, run, send, serve when it builds), whose `build` records the pages.
    pub async fn load_to_build(config: Config, store: Option<&Store>, now: DateTime<Utc>) -> anyhow::Result<Project> {
        Project::load_with(config, store, now, CacheUse::Update).await
    }

    /// `load` or `load_to_build`, as `cache_use` says.
    pub async fn load_with(
        config: Config,
        store: Option<&Store>,
        now: DateTime<Utc>,
        cache_use: CacheUse,
    ) -> anyhow::Result<Project> {
        let templates = load_templates(&config)?;
        let rule = week_rule(&config);
        let (digests, stamps) = read_digests(&config, &rule, cache_use)?;
        let (digest_count, digests_parsed, problems) = (digests.count, digests.parsed, digests.problems);
        let parsed = digests.parsed_whole.into_iter().map(|d| (d.file_name.clone(), d)).collect();
        let weeks = WeekHashes::open(&config.paths.cache, &config.paths.digests, stamps);
        let record = match store {
            Some(store) => store.publications().read().await?,
            None => PublicationRecord::default(),
        };
        // Numbered by `refresh`, which knows what is published.
        let mut issues: Vec<CatalogIssue> =
            digests.weeks.into_iter().map(|w| Issue::of_week(w.start, w.days)).collect();
        let mut problems = problems;
        problems.extend(attach_notes(&config, &rule, &mut issues)?);
        problems.sort();
        let due_through = schedule::due_through(&config.schedule.cron, &rule, now);
        let mut project = Project {
            config,
            templates,
            issues,
            digest_count,
            digests_parsed,
            problems,
            record,
            due_through,
            now,
            parsed,
            hashes: BTreeMap::new(),
            weeks,
            homes: Default::default(),
            cache_use,
        };
        project.refresh();
        Ok(project)
    }

    /// As `load`, opening the database only when it exists already (a project that never published
    /// anything has no record to read, and looking must not create one). `cache_use` as for
    /// `load` and `load_to_build`.
    pub async fn load_if_recorded(config: Config, now: DateTime<Utc>, cache_use: CacheUse) -> anyhow::Result<Project> {
        if config.paths.database.exists() {
            let store = Store::open(&config.paths.database).await?;
            let project = Project::load_with(config, Some(&store), now, cache_use).await;
            store.close().await;
            project
        } else {
            Project::load_with(config, None, now, cache_use).await
        }
    }

    /// Numbers from the record, revision times, and where closest links lead: only to published
    /// issues.
    fn refresh(&mut self) {
        issue::number_issues(&mut self.issues, &self.record.numbers());
        self.set_revised();
        let published: BTreeSet<IssueId> =
            self.issues.iter().filter(|i| self.is_published(i)).map(|i| i.id.clone()).collect();
        self.homes = issue::Homes::of(&self.issues, |i| published.contains(&i.id));
    }

    /// Each issue's publication and revision times, from the record. Issues published at one
    /// moment (a first build publishes every due week) are dated a second apart, the highest number
    /// at that moment, so that feed readers, which sort by date, keep them in order.
    fn set_revised(&mut self) {
        let mut together: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        for p in self.record.0.values() {
            together.entry(p.published_at).or_default().push(p.number);
        }
        for issue in &mut self.issues {
            let recorded = self.record.get(&issue.id);
            issue.published = recorded.and_then(|p| {
                let later = together[&p.published_at].iter().filter(|&&n| n > p.number).count();
                DateTime::from_timestamp(p.published_at - later as i64, 0)
            });
            issue.revised = recorded.and_then(|p| p.revised_at).and_then(|t| DateTime::from_timestamp(t, 0));
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// Where closest links lead in the published archive.
    pub(crate) fn homes(&self) -> &issue::Homes {
        &self.homes
    }

    /// `issue`'s digests whole, in its order, and how many files were read again for them (those
    /// this load did not parse).
    pub(crate) fn read_digests_of(&self, issue: &CatalogIssue) -> anyhow::Result<(Vec<Digest>, usize)> {
        let entries: Vec<&CatalogEntry> = issue.digests().collect();
        self.read_entries(&entries)
    }

    /// `entries` whole: parsed by this load, or read again from their files; and how many were
    /// read again.
    pub(crate) fn read_entries(&self, entries: &[&CatalogEntry]) -> anyhow::Result<(Vec<Digest>, usize)> {
        let again: Vec<&CatalogEntry> =
            entries.iter().copied().filter(|e| !self.parsed.contains_key(&e.file_name)).collect();
        let mut read = self.read_files_again(&again)?.into_iter();
        let digests = entries
            .iter()
            .map(|e| match self.parsed.get(&e.file_name) {
                Some(d) => d.clone(),
                None => read.next().expect("one read a digest not parsed"),
            })
            .collect();
        Ok((digests, again.len()))
    }

    /// `entries` read again from their files, in their order.
    fn read_files_again(&self, entries: &[&CatalogEntry]) -> anyhow::Result<Vec<Digest>> {
        let paths: Vec<PathBuf> = entries.iter().map(|e| e.path.clone()).collect();
        entries.iter().zip(digest::read_files(&paths)).map(|(was, read)| read_again(was, read)).collect()
    }

    /// `issue` whole, its closest links leading into the published archive.
    pub fn whole_issue(&self, issue: &CatalogIssue) -> anyhow::Result<WholeIssue> {
        let (digests, _) = self.read_digests_of(issue)?;
        let mut whole = issue.with_digests(digests);
        self.homes.resolve(&mut whole);
        Ok(whole)
    }

    /// `issue`'s content hash (`WholeIssue::content_hash`): computed already, recorded by the build
    /// cache while its files are unchanged, or else computed from its digests whole.
    pub(crate) fn hash_of(&self, issue: &CatalogIssue) -> anyhow::Result<Hashed> {
        if let Some(hash) = self.hashes.get(&issue.id) {
            return Ok(Hashed { hash: hash.clone(), computed: false, digests: None, reread: 0 });
        }
        if issue.digests().all(|e| self.parsed.contains_key(&e.file_name)) {
            let hash = issue::content_hash(issue.digests().map(|e| &self.parsed[&e.file_name]), issue.note.as_deref());
            return Ok(Hashed { hash, computed: true, digests: None, reread: 0 });
        }
        if let Some(hash) = self.weeks.get(issue) {
            return Ok(Hashed { hash, computed: false, digests: None, reread: 0 });
        }
        let (digests, reread) = self.read_digests_of(issue)?;
        let hash = issue::content_hash(digests.iter(), issue.note.as_deref());
        Ok(Hashed { hash, computed: true, digests: Some(digests), reread })
    }

    /// Remembers the hashes of `hashed` (by issue id), and records those computed in the build
    /// cache's week record.
    pub(crate) fn remember_hashes<'a>(&mut self, hashed: impl IntoIterator<Item = (&'a IssueId, &'a Hashed)>) {
        for (id, h) in hashed {
            if h.computed
                && let Some(issue) = self.issues.iter().find(|i| i.id == *id)
            {
                self.weeks.record(issue, &h.hash);
            }
            self.hashes.insert(id.clone(), h.hash.clone());
        }
    }

    /// Writes the build cache's week record, when this project may bring the cache up to date.
    pub(crate) fn save_week_hashes(&self) {
        if self.cache_use == CacheUse::Update {
            self.weeks.save(self.issues.iter().map(|i| &i.id));
        }
    }

    pub fn rule(&self) -> WeekRule {
        week_rule(&self.config)
    }

    /// Every week that has digests, published or not, oldest first.
    pub fn issues(&self) -> &[CatalogIssue] {
        &self.issues
    }

    pub fn issue(&self, id: &IssueId) -> Option<&CatalogIssue> {
        self.issues.iter().find(|i| i.id == *id)
    }

    /// Recorded as published, or due by the schedule (and so published by the next `publish`).
    /// The example `init` writes is never due (`Issue::is_example`).
    pub fn is_published<D: Listed>(&self, issue: &Issue<D>) -> bool {
        self.record.get(&issue.id).is_some() || (self.is_due(issue.start) && !issue.is_example())
    }

    /// What the publication record holds for the issue `id`, if it was published.
    pub fn publication(&self, id: &IssueId) -> Option<&publications::Publication> {
        self.record.get(id)
    }

    /// The publication record, every published issue by id (some may have lost their digests).
    pub fn record(&self) -> &PublicationRecord {
        &self.record
    }

    /// Whether the week starting on `week` is due by the schedule.
    pub fn is_due(&self, week: NaiveDate) -> bool {
        self.due_through.is_some_and(|d| week <= d)
    }

    pub fn published(&self) -> Vec<&CatalogIssue> {
        self.issues.iter().filter(|i| self.is_published(i)).collect()
    }

    /// The themes of the newest published issues (`themes::RECENT_ISSUES` of them), most used
    /// first: what readers choose from.
    pub fn recent_themes(&self) -> Vec<crate::themes::RecentTheme> {
        crate::themes::recent_themes(self.published().into_iter().rev().take(crate::themes::RECENT_ISSUES))
    }

    pub fn drafts(&self) -> Vec<&CatalogIssue> {
        self.issues.iter().filter(|i| !self.is_published(i)).collect()
    }

    /// The issue a command is about: the week named by `--week`, or else the last complete week.
    pub fn select(&self, week: Option<WeekSpec>) -> Result<&CatalogIssue, ExitError> {
        let rule = self.rule();
        let (day, default) = match week {
            Some(spec) => (spec.0, false),
            None => (rule.last_complete_week(self.now), true),
        };
        if let Some(i) = issue::find_week(&self.issues, &rule, day) {
            return Ok(i);
        }
        let start = rule.week_start(day);
        let label = issue::week_label(start, start + chrono::Duration::days(6));
        let before = self.issues.iter().rev().find(|i| i.start < start);
        let after = self.issues.iter().find(|i| i.start > start);
        let nearest: Vec<String> = [before, after]
            .into_iter()
            .flatten()
            .map(|i| format!("#{} {} (--week {})", i.number, i.label, i.id))
            .collect();
        let hint = if nearest.is_empty() {
            "there are no issues at all; add digests first".to_string()
        } else {
            format!("the nearest issues: {}", nearest.join(", "))
        };
        let which = if default { " (the last complete week; name another with --week)" } else { "" };
        Err(ExitError::unusable(format!(
            "the week of {label}{which} has no digests, so there is no issue for it; {hint}"
        )))
    }

    /// The digest problems that hold back the send of `issue`: those of its week, and those of
    /// files whose date could not be read (they may belong to any week).
    pub fn held_back_by<D>(&self, issue: &Issue<D>) -> Vec<&ParseError> {
        let rule = self.rule();
        self.problems.iter().filter(|p| p.date.is_none_or(|d| rule.week_start(d) == issue.start)).collect()
    }

    /// Refuses to send `issue` while a digest of its week is broken, naming each.
    pub fn ready_to_send<D>(&self, issue: &Issue<D>) -> anyhow::Result<()> {
        let held: Vec<String> = self.held_back_by(issue).iter().map(ToString::to_string).collect();
        if held.is_empty() {
            return Ok(());
        }
        anyhow::bail!(
            "issue #{} ({}) is held back: {} digest problem(s) in its week; fix them and send again:\n{}",
            issue.number,
            issue.label,
            held.len(),
            held.join("\n")
        )
    }

    /// Records as published every issue due by the schedule, and `explicit` (an issue an editor
    /// sends or builds by hand), giving each new one the next number in week order; notes the
    /// content of every published issue, so that an edit becomes a revision in the feeds. Returns
    /// the issues published by this call.
    pub async fn publish(&mut self, store: &Store, explicit: Option<&IssueId>) -> anyhow::Result<Vec<IssueId>> {
        let (new, _) = self.publish_keeping(store, explicit).await?;
        Ok(new)
    }

    /// As `publish`, giving back too the digests read whole to hash the issues (and how many files
    /// that read again), for the build that follows.
    pub(crate) async fn publish_keeping(
        &mut self,
        store: &Store,
        explicit: Option<&IssueId>,
    ) -> anyhow::Result<(Vec<IssueId>, (WholeDigests, usize))> {
        if let Some(example) =
            explicit.and_then(|id| self.issue(id)).filter(|i| i.is_example() && self.record.get(&i.id).is_none())
        {
            return Err(ExitError::unusable(format!(
                "the week of {} holds only the example digest `gazette init` wrote (id {}), which is never published; \
                 write a digest of your own and delete the example",
                example.label,
                issue::EXAMPLE_ID
            ))
            .into());
        }
        let (new, changes, hashed) = self.changes_with_hashes(explicit)?;
        self.remember_hashes(hashed.iter().map(|(id, h)| (id, h)));
        let reread = hashed.iter().map(|(_, h)| h.reread).sum();
        let kept: WholeDigests = hashed.into_iter().filter_map(|(id, h)| Some((id, h.digests?))).collect();
        if let Some(id) = explicit {
            let skipped: Vec<String> =
                self.issues.iter().filter(|i| &i.id < id && !self.is_published(i)).map(|i| i.label.clone()).collect();
            if !skipped.is_empty() {
                tracing::warn!(
                    "publishing {id} by hand before the earlier weeks {}: they are still drafts, and will be numbered after it when they are published",
                    skipped.join(", ")
                );
            }
        }
        if !changes.is_empty() {
            self.record = store.publications().publish(&changes, self.now.timestamp()).await?;
            if new.is_empty() {
                // Only revisions: the numbers, what is published and so where links lead are as
                // they were (rebuilding the links took 40 ms of a build over 100,000 digests).
                self.set_revised();
            } else {
                self.refresh();
            }
        }
        Ok((new, (kept, reread)))
    }

    /// What `publish(store, explicit)` would record, recording nothing: the ids of the issues it
    /// would publish, and every (id, content hash) it would write (those and the revised ones).
    /// `run --once --dry-run` asks this, so it says what the round would do.
    pub fn publication_changes(&self, explicit: Option<&IssueId>) -> anyhow::Result<PublicationChanges> {
        let (new, changes, _) = self.changes_with_hashes(explicit)?;
        Ok((new, changes))
    }

    /// `publication_changes`, with the hash of every issue it looked at.
    #[allow(clippy::type_complexity)]
    fn changes_with_hashes(
        &self,
        explicit: Option<&IssueId>,
    ) -> anyhow::Result<(Vec<IssueId>, Vec<(IssueId, String)>, Vec<(IssueId, Hashed)>)> {
        let mut changes = Vec::new();
        let mut new = Vec::new();
        let wanted: Vec<&CatalogIssue> =
            self.issues.iter().filter(|i| self.is_published(i) || explicit == Some(&i.id)).collect();
        let hashed = render::par_map(&wanted, |i| self.hash_of(i)).into_iter().collect::<anyhow::Result<Vec<_>>>()?;
        for (issue, h) in wanted.iter().zip(&hashed) {
            match self.record.get(&issue.id) {
                Some(p) if p.content_hash == h.hash => {}
                Some(_) => changes.push((issue.id.clone(), h.hash.clone())),
                None => {
                    new.push(issue.id.clone());
                    changes.push((issue.id.clone(), h.hash.clone()));
                }
            }
        }
        let hashed = wanted.iter().map(|i| i.id.clone()).zip(hashed).collect();
        Ok((new, changes, hashed))
    }

    /// The email of `issue`, common to every reader (placeholders for their own fields).
    /// An error compiling the MJML names the issue and its digests: the template is fine for other
    /// weeks, so something in this one's content is the likely cause.
    pub fn email(&self, issue: &CatalogIssue) -> Result<EmailBody, ExitError> {
        let issue = self.whole_issue(issue).map_err(|e| ExitError::unusable(format!("{e:#}")))?;
        render::render_email(&self.config, &self.templates, &issue).map_err(|e| email_failure(&issue, e))
    }

    /// `issue`'s email made ready to address, what `deliver` sends: `test` copies say so in the
    /// subject.
    pub fn prepare_email(&self, issue: &CatalogIssue, test: bool) -> anyhow::Result<PreparedEmail> {
        let body = self.email(issue)?;
        PreparedEmail::new(&self.config, &body.subject, &body.html, &body.text, test, std::time::SystemTime::now())
    }

    /// The editions of a published `issue` for its readers, what `deliver::send_issue` takes: its
    /// number is the recorded one, so an issue sent before it is published is an internal error.
    pub fn email_to_send(&self, issue: &CatalogIssue) -> anyhow::Result<std::sync::Arc<Editions>> {
        anyhow::ensure!(
            self.publication(&issue.id).is_some(),
            "internal error: issue {} is sent before it is published",
            issue.id
        );
        self.editions(issue)
    }

    /// `issue`'s editions: the whole email, and one per choice of themes, made as needed.
    pub fn editions(&self, issue: &CatalogIssue) -> anyhow::Result<std::sync::Arc<Editions>> {
        let whole = self.whole_issue(issue).map_err(|e| ExitError::unusable(format!("{e:#}")))?;
        let body = render::render_email(&self.config, &self.templates, &whole).map_err(|e| email_failure(&whole, e))?;
        let date = std::time::SystemTime::now();
        let email = PreparedEmail::new(&self.config, &body.subject, &body.html, &body.text, false, date)?;
        // Each reader's edition is rendered from the same issue, templates and Date as the whole.
        let (config, templates) = (self.config.clone(), self.templates.clone());
        let render = move |themes: &ThemeChoice| -> anyhow::Result<Option<PreparedEmail>> {
            let Some(body) =
                render::render_email_for(&config, &templates, &whole, themes).map_err(|e| email_failure(&whole, e))?
            else {
                return Ok(None);
            };
            Ok(Some(PreparedEmail::new(&config, &body.subject, &body.html, &body.text, false, date)?))
        };
        Ok(std::sync::Arc::new(Editions::new(std::sync::Arc::new(email), Box::new(render))))
    }

    /// Writes `issue`'s email, filled in for a sample reader, into `[paths] drafts`/preview/.
    /// Returns the subject and the paths of the HTML and text files.
    pub fn write_preview(&self, issue: &CatalogIssue) -> anyhow::Result<(EmailBody, PathBuf, PathBuf)> {
        let email = self.email(issue)?;
        let unsubscribe = urls::unsubscribe(&self.config.site, urls::PREVIEW_TOKEN);
        let preferences = urls::preferences(&self.config.site, urls::PREVIEW_TOKEN);
        let (html, text) = email.fill(&unsubscribe, &preferences, SAMPLE_ADDRESS);
        let dir = &self.config.paths.drafts;
        let html_path = dir.join(urls::preview_file(&issue.id, "html"));
        let text_path = dir.join(urls::preview_file(&issue.id, "txt"));
        write_if_changed(&html_path, html.as_bytes())?;
        write_if_changed(&text_path, text.as_bytes())?;
        Ok((email, html_path, text_path))
    }
}

/// The digest of catalog entry `was` as read again from its file: whole, unless the file changed
/// since it was listed in a way that matters here (it no longer parses, or its date moved it to
/// another week's issue).
fn read_again(was: &CatalogEntry, read: digest::FileResult) -> anyhow::Result<Digest> {
    let changed = "changed while Gazette was reading the digests; run the command again";
    match read {
        Ok(d) if d.date == was.date && d.id == was.id => Ok(d),
        Ok(_) => anyhow::bail!("{}: its date {changed}", was.path.display()),
        Err(problems) => {
            let first =
                problems.first().map_or_else(|| format!("{}: cannot be read", was.path.display()), ToString::to_string);
            anyhow::bail!("{first}: the file {changed}")
        }
    }
}

/// Logs the issues whose email Gmail would clip.
pub fn warn_large(too_large: &[(IssueId, usize)]) {
    for (id, bytes) in too_large {
        tracing::warn!(
            "issue {id}: its email HTML is {} KB; Gmail clips messages over about 100 KB and hides the unsubscribe link",
            bytes / 1024
        );
    }
}

/// A new project's first path, after `gazette init`: what `--help` and `init` both say. The example
/// digest is never published, so nothing here takes issue #1 (`issue::EXAMPLE_ID`).
pub const FIRST_STEPS: FirstSteps = FirstSteps;

/// The text of `FIRST_STEPS`, naming the drafts' front page by its file name in `urls`.
pub struct FirstSteps;

impl std::fmt::Display for FirstSteps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "gazette check, gazette build --drafts and open drafts/{}, \
             then write your own digests and delete the example (it is never published, so your first issue is #1), \
             gazette send --test, then gazette run to publish and send each week when it is due",
            urls::INDEX
        )
    }
}

/// The example digest `init` writes: the format, by example. Its id is `issue::EXAMPLE_ID`, so it
/// is never published (a project's first real issue is #1).
const EXAMPLE_DIGEST: (&str, &str) =
    ("000_0000000000000000.txt", include_str!("../../digests/000_86102eed948879ef.txt"));

/// The example digest's path inside a project, as `init` names it.
pub fn example_digest_file() -> &'static str {
    EXAMPLE_DIGEST.0
}

/// Writes a new project into `dir`: `publish.toml` with every key at its default (commented), an
/// example digest in `digests/`, and the built-in templates in `templates/` to edit. Refuses,
/// writing nothing, when any of those files exists already. Returns the files written.
pub fn scaffold(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<(PathBuf, &str)> = vec![
        (dir.join(crate::config::DEFAULT_FILE), crate::config::DEFAULTS_TOML),
        (dir.join("digests").join(EXAMPLE_DIGEST.0), EXAMPLE_DIGEST.1),
    ];
    files.extend(render::BUILTIN.iter().map(|(name, source)| (dir.join("templates").join(name), *source)));
    let existing: Vec<String> =
        files.iter().filter(|(p, _)| p.exists()).map(|(p, _)| p.display().to_string()).collect();
    if !existing.is_empty() {
        return Err(ExitError::unusable(format!(
            "{} already holds a project; nothing was written. These files exist: {}",
            dir.display(),
            existing.join(", ")
        ))
        .into());
    }
    for (path, contents) in &files {
        let parent = path.parent().unwrap_or(dir);
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create the folder {}", parent.display()))?;
        std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

/// The sample reader of previews.
pub const SAMPLE_ADDRESS: &str = "reader@example.org";

pub fn week_rule(config: &Config) -> WeekRule {
    WeekRule { starts: config.schedule.week_starts, timezone: config.schedule.timezone }
}

/// Reads `[paths] digests`: every digest's catalog entry, grouped into the weeks of `rule`, and
/// every problem, sorted, with each file's stamp. Files unchanged since the build cache recorded
/// them are not read again (their entries come from the cache); the others are given whole too
/// (`Digests::parsed_whole`). With `CacheUse::Update` the cache is brought up to date.
pub fn read_digests(
    config: &Config,
    rule: &WeekRule,
    cache_use: CacheUse,
) -> Result<(build_cache::Digests, build_cache::Stamps), ExitError> {
    let dir = &config.paths.digests;
    let (mut digests, stamps) = build_cache::read_digests(dir, &config.paths.cache, rule, cache_use).map_err(|e| {
        ExitError::unusable(format!(
            "cannot read the digests folder {}: {e}; set [paths] digests in {}",
            dir.display(),
            config.describe_source()
        ))
    })?;
    digests.problems.sort();
    Ok((digests, stamps))
}

/// Reads `[paths] notes` and gives each issue its note. A note that names no issue is a problem:
/// one named after a day inside a week says which name it needs.
fn attach_notes(config: &Config, rule: &WeekRule, issues: &mut [CatalogIssue]) -> Result<Vec<ParseError>, ExitError> {
    let dir = &config.paths.notes;
    let (notes, mut problems) = crate::notes::read_folder(dir).map_err(|e| {
        ExitError::unusable(format!(
            "cannot read the notes folder {}: {e}; set [paths] notes in {}",
            dir.display(),
            config.describe_source()
        ))
    })?;
    for (week, note) in notes {
        if let Some(issue) = issues.iter_mut().find(|i| i.start == week) {
            issue.note = Some(note.markdown);
            continue;
        }
        let start = rule.week_start(week);
        let message = if start != week {
            format!(
                "issues are named after the first day of their week: rename this note {}.md",
                IssueId::from_week_start(start)
            )
        } else {
            format!(
                "the week of {} has no digests, so there is no issue to show this note with",
                issue::week_label(start, start + chrono::Duration::days(6))
            )
        };
        problems.push(ParseError { path: note.path, line: 0, message, date: Some(week) });
    }
    Ok(problems)
}

/// The built-in templates with the files of `[paths] templates` over them. A missing folder is
/// fine (a fresh project runs on the built-ins); a broken template is a configuration error.
pub fn load_templates(config: &Config) -> Result<Templates, ExitError> {
    let dir = &config.paths.templates;
    let mut files = Vec::new();
    if dir.is_dir() {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| ExitError::unusable(format!("cannot read the templates folder {}: {e}", dir.display())))?;
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect();
        paths.sort();
        for path in paths {
            let Some(name) = path.file_name().and_then(|n| n.to_str()).filter(|n| !n.starts_with('.')) else {
                continue;
            };
            let source = std::fs::read_to_string(&path)
                .map_err(|e| ExitError::unusable(format!("{}: cannot read the template: {e}", path.display())))?;
            files.push(TemplateFile { name: name.to_string(), path: path.clone(), source });
        }
    }
    Templates::new(&config.email.subject, files).map_err(template_error)
}

/// An issue's email that cannot be made, as an error naming the issue (and, when the MJML did not
/// compile, its digests).
pub(crate) fn email_failure(issue: &WholeIssue, e: RenderError) -> ExitError {
    match e {
        RenderError::Mjml { .. } => {
            let files: Vec<String> = issue.digests().map(|d| d.path.display().to_string()).collect();
            ExitError::unusable(format!(
                "issue #{} ({}): {e}; its digests: {}",
                issue.number,
                issue.label,
                files.join(", ")
            ))
        }
        other => template_error(other),
    }
}

/// Rendering errors are template (or `[email] subject`) errors: the user fixes a file, exit 2.
pub fn template_error(e: RenderError) -> ExitError {
    ExitError::unusable(e.to_string())
}

/// Writes `contents` to `path` unless it holds them already, through a temporary file renamed
/// into place so a reader never sees half a file. Returns whether the file was written.
pub fn write_if_changed(path: &Path, contents: &[u8]) -> anyhow::Result<bool> {
    if std::fs::read(path).is_ok_and(|old| old == contents) {
        return Ok(false);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create the folder {}", dir.display()))?;
    // The process's own temporary name: two processes writing the same archive (a build beside a
    // running scheduler, two schedulers sharing a folder) each move a whole file into place.
    let tmp =
        dir.join(format!(".{}.{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("out"), std::process::id()));
    let written =
        std::fs::write(&tmp, contents).with_context(|| format!("cannot write {}", tmp.display())).and_then(|_| {
            std::fs::rename(&tmp, path).with_context(|| format!("cannot move {} to {}", tmp.display(), path.display()))
        });
    if written.is_err() {
        // Nothing half-done stays behind in a served folder.
        let _ = std::fs::remove_file(&tmp);
    }
    written.map(|_| true)
}

#[cfg(test)]
mod tests {
    use super::site::{BuildPlan, Site};
    use super::*;

    fn project_in(dir: &Path, digests: &[(&str, &str)]) -> Config {
        let d = dir.join("digests");
        std::fs::create_dir_all(&d).unwrap();
        for (name, date) in digests {
            let text = format!(
                "# __Title {name}__, from ([{date}](https://example.org/c).)\n\n__[External link](https://example.org/{name})__\n\n## Summary\n\nSomething happened.\n"
            );
            std::fs::write(d.join(name), text).unwrap();
        }
        std::fs::write(dir.join("publish.toml"), "[site]\nbase_url = \"https://signals.example.org\"\n").unwrap();
        Config::load(&dir.join("publish.toml")).unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // A folder where the file should go: the rename fails.
        std::fs::create_dir_all(dir.path().join("atom.xml/inside")).unwrap();
        assert!(write_if_changed(&dir.path().join("atom.xml"), b"<feed/>").is_err());
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["atom.xml"], "{left:?}");
        assert!(write_if_changed(&dir.path().join("rss.xml"), b"<rss/>").unwrap());
        assert!(!write_if_changed(&dir.path().join("rss.xml"), b"<rss/>").unwrap(), "unchanged: not written");
    }

    #[tokio::test]
    async fn only_due_weeks_are_published_and_numbers_stay_put() {
        let dir = tempfile::tempdir().unwrap();
        // Weeks of 3, 10 (empty), 17 and 24 July 2023 (Mondays).
        let config = project_in(
            dir.path(),
            &[("001_aa.txt", "20230704"), ("002_bb.txt", "20230719"), ("003_cc.txt", "20230725")],
        );
        let store = Store::open(&config.paths.database).await.unwrap();
        // Monday 24 July, 08:05 in London: the week of the 17th is due, the week of the 24th is not.
        let mut p = Project::load(config.clone(), Some(&store), at("2023-07-24T08:05:00+01:00")).await.unwrap();
        assert_eq!(p.published().iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["2023-07-03", "2023-07-17"]);
        assert_eq!(p.drafts().iter().map(|i| (i.id.as_str(), i.number)).collect::<Vec<_>>(), [("2023-07-24", 3)]);
        assert_eq!(p.publish(&store, None).await.unwrap(), ["2023-07-03", "2023-07-17"]);
        let written = p.build(BuildPlan::site(Site::Published)).await.unwrap();
        assert_eq!(written.pages, 2);
        assert!(!config.paths.out.join("issues/2023-07-24").exists());
        assert!(
            !std::fs::read_to_string(config.paths.out.join("atom.xml")).unwrap().contains("issue-2023-07-24"),
            "the draft week of the 24th is in no feed"
        );

        // A week later, the week of the 24th is due: number 3.
        let mut p = Project::load(config.clone(), Some(&store), at("2023-07-31T09:00:00+01:00")).await.unwrap();
        assert_eq!(p.publish(&store, None).await.unwrap(), ["2023-07-24"]);
        // A digest arrives for the empty week of the 10th after later weeks were published: the next free number.
        std::fs::write(
            config.paths.digests.join("004_dd.txt"),
            "# __Late__, from ([20230711](https://example.org/c).)\n\n__[External link](https://example.org/d)__\n\n## Summary\n\nLate.\n",
        )
        .unwrap();
        let mut p = Project::load(config.clone(), Some(&store), at("2023-08-01T09:00:00+01:00")).await.unwrap();
        assert_eq!(p.publish(&store, None).await.unwrap(), ["2023-07-10"]);
        let numbers: Vec<(&str, u32)> = p.issues().iter().map(|i| (i.id.as_str(), i.number)).collect();
        assert_eq!(numbers, [("2023-07-03", 1), ("2023-07-10", 4), ("2023-07-17", 2), ("2023-07-24", 3)]);
    }

    #[tokio::test]
    async fn an_edit_to_a_published_issue_is_a_revision_and_keeps_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let config = project_in(dir.path(), &[("001_aa.txt", "20230704")]);
        let store = Store::open(&config.paths.database).await.unwrap();
        let mut p = Project::load(config.clone(), Some(&store), at("2023-07-10T09:00:00Z")).await.unwrap();
        p.publish(&store, None).await.unwrap();
        assert_eq!(p.issues()[0].revised, None);
        let path = config.paths.digests.join("001_aa.txt");
        std::fs::write(
            &path,
            std::fs::read_to_string(&path).unwrap().replace("Something happened.", "Something else happened."),
        )
        .unwrap();
        let mut p = Project::load(config.clone(), Some(&store), at("2023-07-12T10:00:00Z")).await.unwrap();
        p.publish(&store, None).await.unwrap();
        assert_eq!(p.issues()[0].number, 1);
        assert_eq!(p.issues()[0].revised, Some(at("2023-07-12T10:00:00Z")));
        p.build(BuildPlan::site(Site::Published)).await.unwrap();
        let atom = std::fs::read_to_string(config.paths.out.join("atom.xml")).unwrap();
        assert!(atom.contains("<updated>2023-07-12T10:00:00+00:00</updated>"), "{atom}");
        // Published when it was first published, not when its digest was dated.
        assert!(atom.contains("<published>2023-07-10T09:00:00+00:00</published>"), "{atom}");
    }
}
