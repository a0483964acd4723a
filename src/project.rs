//! A project: the configuration, the templates, the digests grouped into issues, and the
//! publication record, loaded once. Every command, the scheduler and the server work through it.
//!
//! Publication is decided here and nowhere else. An issue is *published* when its week is due by
//! the schedule (the first fire time after the week's end has passed) or when an editor sends or
//! builds it by hand; everything else is a draft. The archive, the feeds and the scheduler's sends
//! hold published issues only. An issue's number is recorded the first time it is published and
//! never changes; drafts are numbered after the recorded numbers, in week order, which is the
//! number they will get when published in that order.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};

use crate::build_cache::{self, CacheUse, SiteCache, WeekHashes};
use crate::config::{Config, ConfigError};
use crate::deliver::{self, PreparedEmail, Progress, SendReport, StopFlag, Transport};
use crate::digest::{self, ParseError};
use crate::fingerprint::Fingerprint;
use crate::issue::{self, Issue, WeekRule, WeekSpec};
use crate::render::{self, EmailBody, FeedItem, RenderError, TemplateFile, Templates};
use crate::schedule;
use crate::store::Store;
use crate::store::publications::{self, PublicationRecord};
use crate::urls;

/// A mistake in how Gazette was called (a week with no issue, a bad address on the command line),
/// as opposed to a problem in the input or a failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Issues rendered (and held in memory) at a time when writing a site: bounds memory on a large archive.
const BATCH: usize = 64;

pub struct Project {
    pub config: Config,
    pub templates: Templates,
    /// Every week that has digests, oldest first.
    issues: Vec<Issue>,
    /// How many digests were read whole.
    pub digest_count: usize,
    /// How many digest files were read and parsed; the others' results came from the build cache.
    pub digests_parsed: usize,
    /// Every digest that could not be read, sorted by file and line.
    pub problems: Vec<ParseError>,
    record: PublicationRecord,
    /// The last week whose issue is due by the schedule at `now`, if any is.
    due_through: Option<NaiveDate>,
    now: DateTime<Utc>,
    /// `Issue::content_hash` by issue id, computed once (it reads every digest of the issue).
    content_hashes: std::sync::Mutex<HashMap<String, String>>,
    /// Each week's content hash as the build cache recorded it, for the issues held light.
    weeks: WeekHashes,
    /// Where closest links lead in the published archive: what `whole` resolves them against.
    homes: issue::Homes,
    cache_use: CacheUse,
    /// Digest files read again by `whole`.
    reread: std::sync::atomic::AtomicUsize,
    /// Light issues read whole to compute their hash, kept for the page that is rendered next:
    /// an edited week is read once for both.
    wholes: std::sync::Mutex<HashMap<String, Issue>>,
}

/// What a publication would record: the new issues' ids, and every (id, content hash) written.
pub type PublicationChanges = (Vec<String>, Vec<(String, String)>);

/// Which site to write.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Site {
    /// The published issues into `[paths] out`, the folder `serve` publishes.
    Published,
    /// Every issue, drafts included, into `[paths] drafts`.
    Drafts,
}

/// What `write_site` wrote.
#[derive(Debug, Default)]
pub struct Written {
    pub folder: PathBuf,
    pub total: usize,
    pub changed: usize,
    pub pages: usize,
    pub theme_feeds: usize,
    /// Pages and theme feeds of an earlier build that the site no longer has.
    pub removed: usize,
    /// Issues whose email HTML is over the size Gmail clips at, with that size.
    pub too_large: Vec<(String, usize)>,
    /// Issues whose email could not be made, each with why.
    pub email_failures: Vec<String>,
    /// Issue pages rendered by this build; the others were as the build cache recorded them.
    pub rendered: usize,
}

impl Project {
    /// Reads the templates and the digests, and the publication record from `store` (none yet
    /// without one). `now` decides which weeks are due. The build cache is read, never written:
    /// for a command that only looks (`load_to_build` is for those that write the archive).
    pub async fn load(config: Config, store: Option<&Store>, now: DateTime<Utc>) -> anyhow::Result<Project> {
        Project::load_with(config, store, now, CacheUse::Read).await
    }

    /// As `load`, bringing the build cache up to date with the digests read: for the commands that
    /// write the archive (build, run, send, serve when it builds), whose `write_site` records the pages.
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
        let weeks = WeekHashes::open(&config.paths.cache, &config.paths.digests, stamps);
        let record = match store {
            Some(store) => store.publications().read().await?,
            None => PublicationRecord::default(),
        };
        // Numbered and linked by `refresh`, which knows what is published.
        let mut issues: Vec<Issue> = digests.weeks.into_iter().map(|w| Issue::of_week(w.start, w.days)).collect();
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
            content_hashes: Default::default(),
            weeks,
            homes: Default::default(),
            cache_use,
            reread: Default::default(),
            wholes: Default::default(),
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

    /// Numbers from the record, revision times, and closest links that lead only to published issues.
    fn refresh(&mut self) {
        issue::number_issues(&mut self.issues, &self.record.numbers());
        self.set_revised();
        let published: BTreeSet<String> =
            self.issues.iter().filter(|i| self.is_published(i)).map(|i| i.id.clone()).collect();
        let homes = issue::Homes::of(&self.issues, |i| published.contains(&i.id));
        // A light issue's links are resolved when it is read whole (`whole`).
        self.issues.iter_mut().filter(|i| !i.is_light()).for_each(|issue| homes.resolve(issue));
        self.homes = homes;
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

    /// How many digest files `whole` has read again so far.
    pub fn digests_reread(&self) -> usize {
        self.reread.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// `issue.content_hash()`, remembered: it does not change while the project is loaded. An
    /// issue held light has it from the build cache while its files are unchanged, and is read
    /// whole otherwise.
    fn content_hash(&self, issue: &Issue) -> anyhow::Result<String> {
        if let Some(hash) = self.content_hashes.lock().expect("not poisoned").get(&issue.id) {
            return Ok(hash.clone());
        }
        let recorded = if issue.is_light() { self.weeks.get(issue) } else { None };
        let hash = match recorded {
            Some(hash) => hash,
            None if issue.is_light() => {
                let whole = self.read_whole(issue)?;
                let hash = whole.content_hash();
                self.weeks.record(issue, &hash);
                self.wholes.lock().expect("not poisoned").insert(issue.id.clone(), whole);
                hash
            }
            None => {
                let hash = issue.content_hash();
                self.weeks.record(issue, &hash);
                hash
            }
        };
        self.content_hashes.lock().expect("not poisoned").insert(issue.id.clone(), hash.clone());
        Ok(hash)
    }

    /// `issue` with every digest whole, its closest links leading into the published archive.
    /// The project holds an issue light when its files are unchanged since the build cache
    /// recorded them (see `Digest::light`): whatever shows an issue asks for it whole, and its
    /// files are read again.
    pub fn whole<'a>(&self, issue: &'a Issue) -> anyhow::Result<Cow<'a, Issue>> {
        self.whole_linked(issue, &self.homes)
    }

    /// The digests `light` (of this project's issues) read again whole, by id, their closest
    /// links resolved against `homes`.
    fn whole_digests(
        &self,
        light: &[&digest::Digest],
        homes: &issue::Homes,
    ) -> anyhow::Result<BTreeMap<String, digest::Digest>> {
        let mut whole = BTreeMap::new();
        for mut d in self.read_digests_again(light)? {
            homes.resolve_digest(&mut d);
            whole.insert(d.id.clone(), d);
        }
        Ok(whole)
    }

    /// `light` digests read again from their files (counted in `digests_reread`), in their order.
    fn read_digests_again(&self, light: &[&digest::Digest]) -> anyhow::Result<Vec<digest::Digest>> {
        let paths: Vec<PathBuf> = light.iter().map(|d| d.path.clone()).collect();
        self.reread.fetch_add(paths.len(), std::sync::atomic::Ordering::Relaxed);
        light.iter().zip(digest::read_files(&paths)).map(|(was, read)| read_again(was, read)).collect()
    }

    /// A light `issue`'s digests read again from their files, as an issue of their week (its
    /// number, note and links left for `whole_linked`; `content_hash` needs none of them but the note).
    fn read_whole(&self, issue: &Issue) -> anyhow::Result<Issue> {
        let light: Vec<&digest::Digest> = issue.digests().collect();
        let mut weeks = issue::group_by_week(self.read_digests_again(&light)?, &self.rule());
        let mut whole = weeks.pop().expect("the digests of one week");
        whole.note = issue.note.clone();
        Ok(whole)
    }

    /// As `whole`, resolving closest links against `homes`.
    fn whole_linked<'a>(&self, issue: &'a Issue, homes: &issue::Homes) -> anyhow::Result<Cow<'a, Issue>> {
        if !issue.is_light() {
            // Linked against the project's homes already (`refresh`).
            if std::ptr::eq(homes, &self.homes) {
                return Ok(Cow::Borrowed(issue));
            }
            let mut linked = issue.clone();
            homes.resolve(&mut linked);
            return Ok(Cow::Owned(linked));
        }
        let kept = self.wholes.lock().expect("not poisoned").remove(&issue.id);
        let mut whole = match kept {
            Some(whole) => whole,
            None => self.read_whole(issue)?,
        };
        // As the project holds the issue now: publishing may have numbered it or moved links.
        (whole.number, whole.revised, whole.published, whole.note) =
            (issue.number, issue.revised, issue.published, issue.note.clone());
        homes.resolve(&mut whole);
        Ok(Cow::Owned(whole))
    }

    pub fn rule(&self) -> WeekRule {
        week_rule(&self.config)
    }

    /// Every week that has digests, published or not, oldest first.
    pub fn issues(&self) -> &[Issue] {
        &self.issues
    }

    pub fn issue(&self, id: &str) -> Option<&Issue> {
        self.issues.iter().find(|i| i.id == id)
    }

    /// Recorded as published, or due by the schedule (and so published by the next `publish`).
    /// The example `init` writes is never due (`Issue::is_example`).
    pub fn is_published(&self, issue: &Issue) -> bool {
        self.record.get(&issue.id).is_some() || (self.is_due(issue.start) && !issue.is_example())
    }

    /// What the publication record holds for the issue `id`, if it was published.
    pub fn publication(&self, id: &str) -> Option<&publications::Publication> {
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

    pub fn published(&self) -> Vec<&Issue> {
        self.issues.iter().filter(|i| self.is_published(i)).collect()
    }

    pub fn drafts(&self) -> Vec<&Issue> {
        self.issues.iter().filter(|i| !self.is_published(i)).collect()
    }

    /// The issue a command is about: the week named by `--week`, or else the last complete week.
    pub fn select(&self, week: Option<WeekSpec>) -> Result<&Issue, UsageError> {
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
        Err(UsageError(format!("the week of {label}{which} has no digests, so there is no issue for it; {hint}")))
    }

    /// The digest problems that hold back the send of `issue`: those of its week, and those of
    /// files whose date could not be read (they may belong to any week).
    pub fn held_back_by(&self, issue: &Issue) -> Vec<&ParseError> {
        let rule = self.rule();
        self.problems.iter().filter(|p| p.date.is_none_or(|d| rule.week_start(d) == issue.start)).collect()
    }

    /// Refuses to send `issue` while a digest of its week is broken, naming each.
    pub fn ready_to_send(&self, issue: &Issue) -> anyhow::Result<()> {
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
    pub async fn publish(&mut self, store: &Store, explicit: Option<&str>) -> anyhow::Result<Vec<String>> {
        if let Some(example) =
            explicit.and_then(|id| self.issue(id)).filter(|i| i.is_example() && self.record.get(&i.id).is_none())
        {
            return Err(UsageError(format!(
                "the week of {} holds only the example digest `gazette init` wrote (id {}), which is never published; \
                 write a digest of your own and delete the example",
                example.label,
                issue::EXAMPLE_ID
            ))
            .into());
        }
        let (new, changes) = self.publication_changes(explicit)?;
        if let Some(id) = explicit {
            let skipped: Vec<String> = self
                .issues
                .iter()
                .filter(|i| i.id.as_str() < id && !self.is_published(i))
                .map(|i| i.label.clone())
                .collect();
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
        Ok(new)
    }

    /// What `publish(store, explicit)` would record, recording nothing: the ids of the issues it
    /// would publish, and every (id, content hash) it would write (those and the revised ones).
    /// `run --once --dry-run` asks this, so it says what the round would do.
    pub fn publication_changes(&self, explicit: Option<&str>) -> anyhow::Result<PublicationChanges> {
        let mut changes = Vec::new();
        let mut new = Vec::new();
        let wanted: Vec<&Issue> =
            self.issues.iter().filter(|i| self.is_published(i) || explicit == Some(i.id.as_str())).collect();
        let hashes =
            render::par_map(&wanted, |i| self.content_hash(i)).into_iter().collect::<anyhow::Result<Vec<String>>>()?;
        for (issue, hash) in wanted.into_iter().zip(hashes) {
            match self.record.get(&issue.id) {
                Some(p) if p.content_hash == hash => {}
                Some(_) => changes.push((issue.id.clone(), hash)),
                None => {
                    new.push(issue.id.clone());
                    changes.push((issue.id.clone(), hash));
                }
            }
        }
        Ok((new, changes))
    }

    /// The email of `issue`, common to every reader (placeholders for their own fields).
    /// An error compiling the MJML names the issue and its digests: the template is fine for other
    /// weeks, so something in this one's content is the likely cause.
    pub fn email(&self, issue: &Issue) -> Result<EmailBody, ConfigError> {
        let issue = self.whole(issue).map_err(|e| ConfigError(format!("{e:#}")))?;
        render::render_email(&self.config, &self.templates, &issue).map_err(|e| email_failure(&issue, e))
    }

    /// `issue`'s email made ready to address: `test` copies say so in the subject.
    pub fn prepare_email(&self, issue: &Issue, test: bool) -> anyhow::Result<PreparedEmail> {
        let body = self.email(issue)?;
        PreparedEmail::new(&self.config, &body.subject, &body.html, &body.text, test, std::time::SystemTime::now())
    }

    /// Sends `issue` to every active subscriber, exactly once each (resuming an earlier run). The
    /// issue must be published first: its number is the recorded one.
    pub async fn send(
        &self,
        store: &Store,
        issue: &Issue,
        transport: &Transport,
        stop: &StopFlag,
        progress: &dyn Progress,
    ) -> anyhow::Result<SendReport> {
        anyhow::ensure!(
            self.record.get(&issue.id).is_some(),
            "internal error: issue {} is sent before it is published",
            issue.id
        );
        let email = std::sync::Arc::new(self.prepare_email(issue, false)?);
        deliver::send_issue(store, &self.config, &issue.id, issue.number, email, transport, stop, progress).await
    }

    /// Writes the site: the published issues into `[paths] out`, or every issue into `[paths] drafts`.
    /// `only` limits the pages written to one issue and its neighbours, whose previous and next
    /// links lead to it (the index and feeds are always written).
    ///
    /// The steps, in order: each issue's page (with its email's size for the issues that may still
    /// be sent); the index; the feeds; and, for a whole build, removing the pages and theme feeds
    /// an earlier build wrote that the site no longer has. A file whose contents did not change is
    /// left alone.
    pub fn write_site(&self, site: Site, only: Option<&str>) -> anyhow::Result<Written> {
        let owned: Vec<Issue>;
        let drafts_homes: issue::Homes;
        let (folder, issues, homes): (&Path, &[Issue], &issue::Homes) = match site {
            Site::Published => {
                // Usually the published issues are the oldest ones, and need no copy.
                let prefix = self.issues.iter().take_while(|i| self.is_published(i)).count();
                if prefix == self.published().len() {
                    (&self.config.paths.out, &self.issues[..prefix], &self.homes)
                } else {
                    owned = self.published().into_iter().cloned().collect();
                    (&self.config.paths.out, &owned, &self.homes)
                }
            }
            Site::Drafts => {
                // Drafts link to each other too.
                drafts_homes = issue::Homes::of(&self.issues, |_| true);
                (&self.config.paths.drafts, &self.issues[..], &drafts_homes)
            }
        };
        let (config, templates) = (&self.config, &self.templates);
        let mut written = Written { folder: folder.to_path_buf(), ..Written::default() };
        let mut kept: BTreeSet<String> = BTreeSet::new();
        // Writes a file (unless it holds `contents` already), or with `None` keeps one that is current.
        let mut write = |path: &str, contents: Option<&str>, written: &mut Written| -> anyhow::Result<()> {
            written.total += 1;
            if let Some(contents) = contents {
                written.changed += usize::from(write_if_changed(&folder.join(path), contents.as_bytes())?);
            }
            kept.insert(path.to_string());
            Ok(())
        };

        // What every page depends on; with it, the build cache's record of each page says which
        // pages are as they would be rendered now.
        let site_name = match site {
            Site::Published => "published",
            Site::Drafts => "drafts",
        };
        let inputs = Fingerprint::of(&[&format!("{:?}", config.with_paths_in_one_spelling()), templates.fingerprint()]);
        let mut cache = SiteCache::open(&config.paths.cache, site_name, &inputs);
        let key_of = |issue: &Issue| -> anyhow::Result<String> {
            Ok(render::issue_page_key(issues, issue, &self.content_hash(issue)?, homes))
        };

        // 1. Pages: those whose inputs or file changed. The email size is checked for the issues
        // that may still be sent (the one asked for, or the newest `[feeds] items`): compiling
        // MJML is most of a build's cost, and `check` covers every issue.
        let at = only.and_then(|id| issues.iter().position(|i| i.id == id));
        let pages: Vec<&Issue> = match (only, at) {
            (None, _) => issues.iter().collect(),
            (Some(_), Some(at)) => issues[at.saturating_sub(1)..(at + 2).min(issues.len())].iter().collect(),
            (Some(_), None) => Vec::new(),
        };
        let recent_from = issues.len().saturating_sub(config.feeds.items);
        let recent: BTreeSet<&str> = issues[recent_from..].iter().map(|i| i.id.as_str()).collect();
        let keys: Vec<String> =
            render::par_map(&pages, |issue| key_of(issue)).into_iter().collect::<anyhow::Result<_>>()?;
        let stale: Vec<bool> = pages
            .iter()
            .zip(&keys)
            .map(|(i, key)| !cache.page_is_current(&i.id, key, &folder.join(urls::issue_file(&i.id))))
            .collect();
        let wanted: Vec<bool> =
            pages.iter().map(|i| only.is_some_and(|id| id == i.id) || recent.contains(i.id.as_str())).collect();
        // Each wanted email's size (or why it fails), as recorded or else checked below.
        let mut emails: Vec<Option<Result<usize, String>>> = pages
            .iter()
            .zip(&keys)
            .zip(&wanted)
            .map(|((i, key), &w)| if w { cache.email_check(&i.id, key) } else { None })
            .collect();
        let unchecked: Vec<bool> = (0..pages.len()).map(|k| wanted[k] && emails[k].is_none()).collect();
        let work: Vec<usize> = (0..pages.len()).filter(|&k| stale[k] || unchecked[k]).collect();
        for batch in work.chunks(BATCH) {
            let rendered = render::par_map(batch, |&k| -> anyhow::Result<_> {
                // What shows an issue's digests needs it whole (see `Project::whole`).
                let issue = &self.whole_linked(pages[k], homes)?;
                let page = if stale[k] {
                    Some(render::render_issue_page(config, templates, issues, issue).map_err(template_error)?)
                } else {
                    None
                };
                let email = unchecked[k].then(|| {
                    render::email_html_size(config, templates, issue)
                        .map(|(bytes, _)| bytes)
                        .map_err(|e| email_failure(issue, e).0)
                });
                Ok((page, email))
            });
            for (&k, r) in batch.iter().zip(rendered) {
                let (page, email) = r?;
                let (issue, path) = (pages[k], urls::issue_file(&pages[k].id));
                if let Some(page) = page {
                    write(&path, Some(&page), &mut written)?;
                    cache.page_written(&issue.id, &keys[k], &folder.join(&path), &page);
                    written.rendered += 1;
                }
                if let Some(email) = email {
                    cache.set_email_check(&issue.id, email.clone());
                    emails[k] = Some(email);
                }
            }
        }
        for (k, issue) in pages.iter().enumerate() {
            if !stale[k] {
                write(&urls::issue_file(&issue.id), None, &mut written)?;
            }
            // One week's email that fails is reported, and the archive is written all the same.
            match emails[k].take() {
                Some(Ok(bytes)) if bytes > render::GMAIL_CLIP_BYTES => {
                    written.too_large.push((issue.id.clone(), bytes))
                }
                Some(Err(e)) => written.email_failures.push(e),
                _ => {}
            }
        }
        written.pages = pages.len();
        if only.is_some() {
            cache.keep_unvisited();
        }
        // 2. The index.
        let plan = render::theme_feed_plan(config, issues);
        let index = render::render_index_with(config, templates, issues, &plan).map_err(template_error)?;
        write("index.html", Some(&index), &mut written)?;
        // 3. The feeds, when what they are made from changed or one of their files did: the
        // newest issues (each by its page's key, which covers what its content is made from),
        // and each theme's name, oldest year and newest digests (by their issues' keys).
        let newest = render::feed_issues(config, issues);
        let mut known: HashMap<&str, &str> =
            pages.iter().zip(&keys).map(|(i, k)| (i.id.as_str(), k.as_str())).collect();
        let mut computed: Vec<(String, String)> = Vec::new();
        for issue in newest.iter().copied().chain(plan.iter().flat_map(|t| t.shown.iter().map(|(i, _)| *i))) {
            if !known.contains_key(issue.id.as_str()) && !computed.iter().any(|(id, _)| *id == issue.id) {
                computed.push((issue.id.clone(), key_of(issue)?));
            }
        }
        known.extend(computed.iter().map(|(id, k)| (id.as_str(), k.as_str())));
        let mut fingerprint = Fingerprint::default();
        for issue in &newest {
            fingerprint.text(&issue.id).text(known[issue.id.as_str()]);
        }
        for theme in &plan {
            fingerprint.text(&theme.name).text(&theme.slug).text(&theme.oldest_year.to_string());
            for (issue, d) in &theme.shown {
                fingerprint.text(&issue.id).text(&d.id).text(known[issue.id.as_str()]);
            }
        }
        let feeds_key = fingerprint.finish();
        let paths: Vec<String> = ["rss.xml", "atom.xml", "feed.json"]
            .into_iter()
            .map(String::from)
            .chain(plan.iter().map(|t| t.path.clone()))
            .collect();
        let record_id = |path: &str| format!("file:{path}");
        written.theme_feeds = plan.len();
        if paths.iter().all(|p| cache.page_is_current(&record_id(p), &feeds_key, &folder.join(p))) {
            for p in &paths {
                write(p, None, &mut written)?;
            }
        } else {
            let kept_contents: Vec<Option<String>> =
                newest.iter().map(|i| cache.feed_content(&i.id, known[i.id.as_str()])).collect();
            let missing: Vec<usize> = (0..newest.len()).filter(|&k| kept_contents[k].is_none()).collect();
            let mut rendered = render::par_map(&missing, |&k| -> anyhow::Result<String> {
                Ok(render::render_issue_content(config, templates, &*self.whole_linked(newest[k], homes)?)
                    .map_err(template_error)?)
            })
            .into_iter();
            let mut items = Vec::with_capacity(newest.len());
            for (issue, content) in newest.iter().zip(kept_contents) {
                let content_html = match content {
                    Some(content) => content,
                    None => {
                        let content = rendered.next().expect("one a missing content")?;
                        cache.set_feed_content(&issue.id, &content);
                        content
                    }
                };
                items.push(FeedItem { issue, content_html });
            }
            let shown: BTreeMap<&str, &digest::Digest> = plan
                .iter()
                .flat_map(|t| t.shown.iter().map(|(_, d)| (d.id.as_str(), *d)))
                .filter(|(_, d)| d.light)
                .collect();
            let shown: Vec<&digest::Digest> = shown.into_values().collect();
            let whole_shown = self.whole_digests(&shown, homes)?;
            for f in render::render_feeds_of(config, templates, &items, &plan, &whole_shown).map_err(template_error)? {
                write(&f.path, Some(&f.contents), &mut written)?;
                cache.page_written(&record_id(&f.path), &feeds_key, &folder.join(&f.path), &f.contents);
            }
        }
        // 4. What an earlier build wrote and the site no longer has (a week that lost its digests,
        // a theme nobody uses any more, a draft an older Gazette published).
        if only.is_none() {
            written.removed = remove_stale(folder, &kept)?;
        }
        cache.save();
        if self.cache_use == CacheUse::Update {
            self.weeks.save(self.issues.iter().map(|i| i.id.as_str()));
        }
        Ok(written)
    }

    /// Writes `issue`'s email, filled in for a sample reader, into `[paths] drafts`/preview/.
    /// Returns the subject and the paths of the HTML and text files.
    pub fn write_preview(&self, issue: &Issue) -> anyhow::Result<(EmailBody, PathBuf, PathBuf)> {
        let email = self.email(issue)?;
        let unsubscribe = urls::unsubscribe(&self.config.site, urls::PREVIEW_TOKEN);
        let (html, text) = email.fill(&unsubscribe, SAMPLE_ADDRESS);
        let dir = &self.config.paths.drafts;
        let html_path = dir.join(urls::preview_file(&issue.id, "html"));
        let text_path = dir.join(urls::preview_file(&issue.id, "txt"));
        write_if_changed(&html_path, html.as_bytes())?;
        write_if_changed(&text_path, text.as_bytes())?;
        Ok((email, html_path, text_path))
    }
}

/// A light digest `was` as read again from its file: the same digest, whole, unless the file
/// changed since it was listed in a way that matters here (it no longer parses, or its date moved
/// it to another week's issue).
fn read_again(was: &digest::Digest, read: digest::FileResult) -> anyhow::Result<digest::Digest> {
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

/// Logs the issues whose email Gmail would clip, and those whose email fails.
pub fn warn_email(written: &Written) {
    for failure in &written.email_failures {
        tracing::error!("{failure}");
    }
    warn_large(&written.too_large);
}

/// Logs the issues whose email Gmail would clip.
pub fn warn_large(too_large: &[(String, usize)]) {
    for (id, bytes) in too_large {
        tracing::warn!(
            "issue {id}: its email HTML is {} KB; Gmail clips messages over about 100 KB and hides the unsubscribe link",
            bytes / 1024
        );
    }
}

/// A new project's first path, after `gazette init`: what `--help` and `init` both say. The example
/// digest is never published, so nothing here takes issue #1 (`issue::EXAMPLE_ID`).
pub const FIRST_STEPS: &str = "gazette check, gazette build --drafts and open drafts/index.html, \
    then write your own digests and delete the example (it is never published, so your first issue is #1), \
    gazette send --test, then gazette run to publish and send each week when it is due";

/// The example digest `init` writes: the format, by example. Its id is `issue::EXAMPLE_ID`, so it
/// is never published (a project's first real issue is #1).
const EXAMPLE_DIGEST: (&str, &str) = ("000_0000000000000000.txt", include_str!("../digests/000_86102eed948879ef.txt"));

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
        return Err(UsageError(format!(
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

/// Reads `[paths] digests`: every digest, grouped into the weeks of `rule`, and every problem,
/// sorted, with each file's stamp. Files unchanged since the build cache recorded them are not
/// read again, and their digests are light (`Digest::light`); with `CacheUse::Update` the cache
/// is brought up to date.
pub fn read_digests(
    config: &Config,
    rule: &WeekRule,
    cache_use: CacheUse,
) -> Result<(build_cache::Digests, build_cache::Stamps), ConfigError> {
    let dir = &config.paths.digests;
    let (mut digests, stamps) = build_cache::read_digests(dir, &config.paths.cache, rule, cache_use).map_err(|e| {
        ConfigError(format!(
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
fn attach_notes(config: &Config, rule: &WeekRule, issues: &mut [Issue]) -> Result<Vec<ParseError>, ConfigError> {
    let dir = &config.paths.notes;
    let (notes, mut problems) = crate::notes::read_folder(dir).map_err(|e| {
        ConfigError(format!(
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
            format!("issues are named after the first day of their week: rename this note {start}.md")
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
pub fn load_templates(config: &Config) -> Result<Templates, ConfigError> {
    let dir = &config.paths.templates;
    let mut files = Vec::new();
    if dir.is_dir() {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| ConfigError(format!("cannot read the templates folder {}: {e}", dir.display())))?;
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect();
        paths.sort();
        for path in paths {
            let Some(name) = path.file_name().and_then(|n| n.to_str()).filter(|n| !n.starts_with('.')) else {
                continue;
            };
            let source = std::fs::read_to_string(&path)
                .map_err(|e| ConfigError(format!("{}: cannot read the template: {e}", path.display())))?;
            files.push(TemplateFile { name: name.to_string(), path: path.clone(), source });
        }
    }
    Templates::new(&config.email.subject, files).map_err(template_error)
}

/// An issue's email that cannot be made, as an error naming the issue (and, when the MJML did not
/// compile, its digests).
fn email_failure(issue: &Issue, e: RenderError) -> ConfigError {
    match e {
        RenderError::Mjml { .. } => {
            let files: Vec<String> = issue.digests().map(|d| d.path.display().to_string()).collect();
            ConfigError(format!("issue #{} ({}): {e}; its digests: {}", issue.number, issue.label, files.join(", ")))
        }
        other => template_error(other),
    }
}

/// Rendering errors are template (or `[email] subject`) errors: the user fixes a file, exit 2.
pub fn template_error(e: RenderError) -> ConfigError {
    ConfigError(e.to_string())
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

/// Removes the issue pages (`issues/<id>/index.html`) and theme feeds (`themes/<slug>/atom.xml`)
/// under `folder` that are not in `kept`, and the folders they leave empty. Nothing else there is
/// touched: files of the editor's own stay.
fn remove_stale(folder: &Path, kept: &BTreeSet<String>) -> anyhow::Result<usize> {
    let mut removed = 0;
    for (dir, file) in [("issues", "index.html"), ("themes", "atom.xml")] {
        let Ok(entries) = std::fs::read_dir(folder.join(dir)) else { continue };
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = format!("{dir}/{name}/{file}");
            let path = entry.path().join(file);
            if kept.contains(&rel) || !path.is_file() {
                continue;
            }
            std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
            let _ = std::fs::remove_dir(entry.path()); // only when empty
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
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
        let written = p.write_site(Site::Published, None).unwrap();
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
        p.write_site(Site::Published, None).unwrap();
        let atom = std::fs::read_to_string(config.paths.out.join("atom.xml")).unwrap();
        assert!(atom.contains("<updated>2023-07-12T10:00:00+00:00</updated>"), "{atom}");
        // Published when it was first published, not when its digest was dated.
        assert!(atom.contains("<published>2023-07-10T09:00:00+00:00</published>"), "{atom}");
    }
}
