//! Building a site from a project: `Project::build` and its named steps (publish, pages, index,
//! feeds, prune), each gated by the `BuildPlan`, like zola's `Site::build`. The published issues
//! go into `[paths] out`, every issue into `[paths] drafts`. A file whose contents did not change
//! is left alone, and the build cache says which pages and feeds need no rendering at all.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::Context;
use rayon::prelude::*;

use super::{Hashed, Project, WholeDigests, email_failure, template_error, write_if_changed};
use crate::build_cache::SiteCache;
use crate::digest::{CatalogEntry, Digest};
use crate::fingerprint::Fingerprint;
use crate::issue::{CatalogIssue, Homes, WholeIssue};
use crate::issue_id::IssueId;
use crate::render::{self, FeedItem, ThemeFeed};
use crate::store::Store;
use crate::urls;

/// Issues rendered (and held in memory) at a time when writing a site: bounds memory on a large archive.
const BATCH: usize = 64;

/// Which site to write.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Site {
    /// The published issues into `[paths] out`, the folder `serve` publishes.
    Published,
    /// Every issue, drafts included, into `[paths] drafts`.
    Drafts,
}

/// What a build does.
pub struct BuildPlan<'a> {
    pub site: Site,
    /// Publish first (the `publish` step): every due week, and the week an editor names by hand.
    pub publish: Option<Publish<'a>>,
    /// Write only this issue's page and its neighbours', whose previous and next links lead to it
    /// (the index and the feeds are always written); nothing is pruned.
    pub only: Option<IssueId>,
}

/// The `publish` step: where the record is kept, and the issue published by hand, if any.
pub struct Publish<'a> {
    pub store: &'a Store,
    pub by_hand: Option<IssueId>,
}

impl BuildPlan<'_> {
    /// The whole of `site`, publishing nothing.
    pub fn site(site: Site) -> BuildPlan<'static> {
        BuildPlan { site, publish: None, only: None }
    }
}

/// What a build did.
#[derive(Debug, Default)]
pub struct BuildReport {
    /// The issues the `publish` step published, by id.
    pub published: Vec<IssueId>,
    pub folder: PathBuf,
    pub total: usize,
    pub changed: usize,
    pub pages: usize,
    pub theme_feeds: usize,
    /// Pages and theme feeds of an earlier build that the site no longer has.
    pub removed: usize,
    /// Issues whose email HTML is over the size Gmail clips at, with that size.
    pub too_large: Vec<(IssueId, usize)>,
    /// Issues whose email could not be made, each with why.
    pub email_failures: Vec<String>,
    /// Issue pages rendered by this build; the others were as the build cache recorded them.
    pub rendered: usize,
    /// Digest files read again whole for what was rendered (their catalog entries came from the cache).
    pub reread: usize,
}

impl BuildReport {
    /// Logs the issues whose email Gmail would clip, and those whose email fails.
    pub fn warn_email(&self) {
        for failure in &self.email_failures {
            tracing::error!("{failure}");
        }
        super::warn_large(&self.too_large);
    }
}

/// The site being written: its folder, its issues (oldest first) and where their links lead.
struct SiteInput<'p> {
    folder: &'p Path,
    issues: Cow<'p, [CatalogIssue]>,
    homes: Cow<'p, Homes>,
}

impl SiteInput<'_> {
    fn issue(&self, id: &IssueId) -> Option<&CatalogIssue> {
        self.issues.iter().find(|i| i.id == *id)
    }
}

/// What a build wrote and learnt so far, and the build cache's record of the site.
struct Output {
    folder: PathBuf,
    cache: SiteCache,
    /// Every file of the site this build wrote or found current (by path in the folder).
    kept: BTreeSet<String>,
    /// The content hashes found by this build, by issue id.
    hashed: Vec<(IssueId, Hashed)>,
    /// Digests read whole for a hash, by issue id, for what shows the issue next.
    wholes: WholeDigests,
    report: BuildReport,
}

impl Output {
    /// Writes a file (unless it holds `contents` already), or with `None` keeps one that is current.
    fn write(&mut self, path: &str, contents: Option<&str>) -> anyhow::Result<()> {
        self.report.total += 1;
        if let Some(contents) = contents {
            self.report.changed += usize::from(write_if_changed(&self.folder.join(path), contents.as_bytes())?);
        }
        self.kept.insert(path.to_string());
        Ok(())
    }

    /// Notes the hashes found for the issues `ids` (and the digests read for them), and gives
    /// back the keys.
    fn keep_hashes(&mut self, ids: &[&IssueId], keyed: Vec<(String, Hashed)>) -> Vec<String> {
        let mut keys = Vec::with_capacity(keyed.len());
        for (&id, (key, mut hashed)) in ids.iter().zip(keyed) {
            self.report.reread += hashed.reread;
            if let Some(digests) = hashed.digests.take() {
                self.wholes.insert(id.clone(), digests);
            }
            self.hashed.push((id.clone(), hashed));
            keys.push(key);
        }
        keys
    }
}

impl Project {
    /// Builds a site as `plan` says: publish, pages, index, feeds, prune.
    pub async fn build(&mut self, plan: BuildPlan<'_>) -> anyhow::Result<BuildReport> {
        let mut published = Vec::new();
        let mut wholes = WholeDigests::new();
        let mut reread = 0;
        if let Some(publish) = &plan.publish {
            let (new, (kept, read)) = self.publish_keeping(publish.store, publish.by_hand.as_ref()).await?;
            (published, wholes, reread) = (new, kept, read);
        }
        let (site, mut out) = self.open_site(plan.site);
        out.wholes = wholes;
        out.report.reread = reread;
        let keys = self.write_pages(&site, &mut out, plan.only.as_ref())?;
        let themes = render::theme_feed_plan(&self.config, &site.issues);
        self.write_index(&site, &themes, &mut out)?;
        self.write_feeds(&site, &themes, &mut out, keys)?;
        if plan.only.is_none() {
            out.report.removed = prune(site.folder, &out.kept)?;
        }
        drop(themes);
        drop(site);
        let Output { cache, hashed, mut report, .. } = out;
        cache.save();
        self.remember_hashes(hashed.iter().map(|(id, h)| (id, h)));
        self.save_week_hashes();
        report.published = published;
        Ok(report)
    }

    /// The site to write: the published issues into `[paths] out`, or every issue into
    /// `[paths] drafts`, linked to each other.
    fn open_site(&self, site: Site) -> (SiteInput<'_>, Output) {
        let (folder, issues, homes, name) = match site {
            Site::Published => {
                // Usually the published issues are the oldest ones, and need no copy.
                let prefix = self.issues().iter().take_while(|i| self.is_published(i)).count();
                let issues = if prefix == self.published().len() {
                    Cow::Borrowed(&self.issues()[..prefix])
                } else {
                    Cow::Owned(self.published().into_iter().cloned().collect())
                };
                (&self.config.paths.out, issues, Cow::Borrowed(self.homes()), "published")
            }
            // Drafts link to each other too.
            Site::Drafts => (
                &self.config.paths.drafts,
                Cow::Borrowed(self.issues()),
                Cow::Owned(Homes::of(self.issues(), |_| true)),
                "drafts",
            ),
        };
        // What every page depends on; with it, the build cache's record of each page says which
        // pages are as they would be rendered now.
        let inputs = Fingerprint::of(&[
            &format!("{:?}", self.config.with_paths_in_one_spelling()),
            self.templates.fingerprint(),
        ]);
        let out = Output {
            folder: folder.to_path_buf(),
            cache: SiteCache::open(&self.config.paths.cache, name, &inputs),
            kept: BTreeSet::new(),
            hashed: Vec::new(),
            wholes: WholeDigests::new(),
            report: BuildReport { folder: folder.to_path_buf(), ..BuildReport::default() },
        };
        (SiteInput { folder, issues, homes }, out)
    }

    /// The key of `issue`'s page (`render::issue_page_key`), with its content hash as found.
    fn page_key(&self, site: &SiteInput, issue: &CatalogIssue) -> anyhow::Result<(String, Hashed)> {
        let hashed = self.hash_of(issue)?;
        Ok((render::issue_page_key(&site.issues, issue, &hashed.hash, &site.homes), hashed))
    }

    /// `issue` whole, linked by `homes`: from the digests read for its hash, or else as the
    /// project reads it. Counts the files read again.
    fn whole_for(
        &self,
        issue: &CatalogIssue,
        kept: Option<Vec<Digest>>,
        homes: &Homes,
    ) -> anyhow::Result<(WholeIssue, usize)> {
        let (digests, reread) = match kept {
            Some(digests) => (digests, 0),
            None => self.read_digests_of(issue)?,
        };
        let mut whole = issue.with_digests(digests);
        homes.resolve(&mut whole);
        Ok((whole, reread))
    }

    /// The `pages` step: each issue's page whose inputs or file changed, and the email size of the
    /// issues that may still be sent (the one asked for, or the newest `[feeds] items`): compiling
    /// MJML is most of a build's cost, and `check` covers every issue. Gives back each page's
    /// issue id and key, for the feeds.
    fn write_pages(
        &self,
        site: &SiteInput,
        out: &mut Output,
        only: Option<&IssueId>,
    ) -> anyhow::Result<Vec<(IssueId, String)>> {
        let (config, templates, issues) = (&self.config, &self.templates, &site.issues);
        let at = only.and_then(|id| issues.iter().position(|i| i.id == *id));
        let pages: Vec<&CatalogIssue> = match (only, at) {
            (None, _) => issues.iter().collect(),
            (Some(_), Some(at)) => issues[at.saturating_sub(1)..(at + 2).min(issues.len())].iter().collect(),
            (Some(_), None) => Vec::new(),
        };
        let recent_from = issues.len().saturating_sub(config.feeds.items);
        let recent: BTreeSet<&IssueId> = issues[recent_from..].iter().map(|i| &i.id).collect();
        let keyed = render::par_map(&pages, |issue| self.page_key(site, issue))
            .into_iter()
            .collect::<anyhow::Result<Vec<_>>>()?;
        let ids: Vec<&IssueId> = pages.iter().map(|i| &i.id).collect();
        let keys = out.keep_hashes(&ids, keyed);
        let stale: Vec<bool> = ids
            .iter()
            .zip(&keys)
            .map(|(id, key)| !out.cache.page_is_current(id.as_str(), key, &site.folder.join(urls::issue_file(id))))
            .collect();
        let wanted: Vec<bool> = ids.iter().map(|&id| only == Some(id) || recent.contains(id)).collect();
        // Each wanted email's size (or why it fails), as recorded or else checked below.
        let mut emails: Vec<Option<Result<usize, String>>> = (0..pages.len())
            .map(|p| if wanted[p] { out.cache.email_check(ids[p].as_str(), &keys[p]) } else { None })
            .collect();
        let unchecked: Vec<bool> = (0..pages.len()).map(|p| wanted[p] && emails[p].is_none()).collect();
        let work: Vec<usize> = (0..pages.len()).filter(|&p| stale[p] || unchecked[p]).collect();
        for batch in work.chunks(BATCH) {
            let inputs: Vec<(usize, Option<Vec<Digest>>)> =
                batch.iter().map(|&p| (p, out.wholes.remove(ids[p]))).collect();
            let rendered: Vec<anyhow::Result<_>> = inputs
                .into_par_iter()
                .map(|(p, kept)| {
                    let (issue, reread) = self.whole_for(pages[p], kept, &site.homes)?;
                    let page = if stale[p] {
                        Some(render::render_issue_page(config, templates, issues, &issue).map_err(template_error)?)
                    } else {
                        None
                    };
                    let email = unchecked[p].then(|| {
                        render::email_html_size(config, templates, &issue)
                            .map(|(bytes, _)| bytes)
                            .map_err(|e| email_failure(&issue, e).to_string())
                    });
                    Ok((page, email, reread))
                })
                .collect();
            for (&p, r) in batch.iter().zip(rendered) {
                let (page, email, reread) = r?;
                out.report.reread += reread;
                let path = urls::issue_file(ids[p]);
                if let Some(page) = page {
                    out.write(&path, Some(&page))?;
                    out.cache.page_written(ids[p].as_str(), &keys[p], &site.folder.join(&path), &page);
                    out.report.rendered += 1;
                }
                if let Some(email) = email {
                    out.cache.set_email_check(ids[p].as_str(), email.clone());
                    emails[p] = Some(email);
                }
            }
        }
        for (p, &id) in ids.iter().enumerate() {
            if !stale[p] {
                out.write(&urls::issue_file(id), None)?;
            }
            // One week's email that fails is reported, and the archive is written all the same.
            match emails[p].take() {
                Some(Ok(bytes)) if bytes > render::GMAIL_CLIP_BYTES => out.report.too_large.push((id.clone(), bytes)),
                Some(Err(e)) => out.report.email_failures.push(e),
                _ => {}
            }
        }
        out.report.pages = pages.len();
        if only.is_some() {
            out.cache.keep_unvisited();
        }
        Ok(ids.into_iter().cloned().zip(keys).collect())
    }

    /// The `index` step: the front page, listing every issue and theme feed.
    fn write_index(
        &self,
        site: &SiteInput,
        themes: &[ThemeFeed<CatalogEntry>],
        out: &mut Output,
    ) -> anyhow::Result<()> {
        let index =
            render::render_index_with(&self.config, &self.templates, &site.issues, themes).map_err(template_error)?;
        out.write(urls::INDEX, Some(&index))
    }

    /// The `feeds` step: the feeds of the newest issues and each theme's, rendered when what they
    /// are made from changed or one of their files did: the newest issues (each by its page's key,
    /// which covers what its content is made from), and each theme's name, oldest year and newest
    /// digests (by their issues' keys). `keys` are the pages' keys by issue id.
    fn write_feeds(
        &self,
        site: &SiteInput,
        plan: &[ThemeFeed<CatalogEntry>],
        out: &mut Output,
        keys: Vec<(IssueId, String)>,
    ) -> anyhow::Result<()> {
        let (config, templates) = (&self.config, &self.templates);
        let newest = render::feed_issues(config, &site.issues);
        let mut known: HashMap<IssueId, String> = keys.into_iter().collect();
        let mut missing: Vec<&IssueId> = Vec::new();
        for id in newest.iter().map(|i| &i.id).chain(plan.iter().flat_map(|t| t.shown.iter().map(|(i, _)| *i))) {
            if !known.contains_key(id) && !missing.contains(&id) {
                missing.push(id);
            }
        }
        let keyed = missing
            .iter()
            .map(|id| self.page_key(site, site.issue(id).expect("a shown issue of the site")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let computed = out.keep_hashes(&missing, keyed);
        known.extend(missing.iter().map(|&id| id.clone()).zip(computed));
        let mut fingerprint = Fingerprint::default();
        for issue in &newest {
            fingerprint.text(issue.id.as_str()).text(&known[&issue.id]);
        }
        for theme in plan {
            fingerprint.text(&theme.name).text(&theme.slug).text(&theme.oldest_year.to_string());
            for (issue_id, d) in &theme.shown {
                fingerprint.text(issue_id.as_str()).text(&d.id).text(&known[*issue_id]);
            }
        }
        let feeds_key = fingerprint.finish();
        let paths: Vec<String> =
            urls::FEEDS.into_iter().map(String::from).chain(plan.iter().map(|t| t.path.clone())).collect();
        let record_id = |path: &str| format!("file:{path}");
        out.report.theme_feeds = plan.len();
        if paths.iter().all(|p| out.cache.page_is_current(&record_id(p), &feeds_key, &site.folder.join(p))) {
            for p in &paths {
                out.write(p, None)?;
            }
            return Ok(());
        }
        let items = self.feed_items(site, out, &newest, &known)?;
        // The theme feeds' digests, each once, whole. Their closest links lead into the published
        // archive, in the drafts too (whose pages link every week): what Gazette has always
        // written for the digests it parsed, kept byte for byte.
        let mut shown: BTreeMap<&str, &CatalogEntry> = BTreeMap::new();
        for (_, d) in plan.iter().flat_map(|t| t.shown.iter()) {
            shown.insert(d.id.as_str(), d);
        }
        let shown: Vec<&CatalogEntry> = shown.into_values().collect();
        let (mut digests, reread) = self.read_entries(&shown)?;
        out.report.reread += reread;
        digests.iter_mut().for_each(|d| self.homes().resolve_digest(d));
        let whole: BTreeMap<&str, &Digest> = shown.iter().map(|e| e.id.as_str()).zip(&digests).collect();
        let plan: Vec<ThemeFeed<Digest>> = plan.iter().map(|t| t.with_digests(|e| whole[e.id.as_str()])).collect();
        for f in render::render_feeds_of(config, templates, &items, &plan).map_err(template_error)? {
            out.write(&f.path, Some(&f.contents))?;
            out.cache.page_written(&record_id(&f.path), &feeds_key, &site.folder.join(&f.path), &f.contents);
        }
        Ok(())
    }

    /// The items of the feeds of the newest issues: each issue's content as the build cache kept
    /// it, or else rendered from the issue whole (and kept).
    fn feed_items<'i>(
        &self,
        site: &SiteInput,
        out: &mut Output,
        newest: &[&'i CatalogIssue],
        known: &HashMap<IssueId, String>,
    ) -> anyhow::Result<Vec<FeedItem<'i, CatalogEntry>>> {
        let (config, templates) = (&self.config, &self.templates);
        let kept_contents: Vec<Option<String>> =
            newest.iter().map(|i| out.cache.feed_content(i.id.as_str(), &known[&i.id])).collect();
        let missing: Vec<(usize, Option<Vec<Digest>>)> = (0..newest.len())
            .filter(|&k| kept_contents[k].is_none())
            .map(|k| (k, out.wholes.remove(&newest[k].id)))
            .collect();
        let rendered: Vec<anyhow::Result<(String, usize)>> = missing
            .into_par_iter()
            .map(|(k, kept)| {
                let (whole, reread) = self.whole_for(newest[k], kept, &site.homes)?;
                Ok((render::render_issue_content(config, templates, &whole).map_err(template_error)?, reread))
            })
            .collect();
        let mut rendered = rendered.into_iter();
        let mut items = Vec::with_capacity(newest.len());
        for (issue, content) in newest.iter().zip(kept_contents) {
            let content_html = match content {
                Some(content) => content,
                None => {
                    let (content, reread) = rendered.next().expect("one a missing content")?;
                    out.report.reread += reread;
                    out.cache.set_feed_content(issue.id.as_str(), &content);
                    content
                }
            };
            items.push(FeedItem { issue, content_html });
        }
        Ok(items)
    }
}

/// The `prune` step: removes the issue pages (`issues/<id>/index.html`) and theme feeds
/// (`themes/<slug>/atom.xml`) under `folder` that are not in `kept` (a week that lost its digests,
/// a theme nobody uses any more, a draft an older Gazette published), and the folders they leave
/// empty. Nothing else there is touched: files of the editor's own stay.
fn prune(folder: &Path, kept: &BTreeSet<String>) -> anyhow::Result<usize> {
    let mut removed = 0;
    for (dir, file) in [(urls::ISSUES_DIR, urls::INDEX), (urls::THEMES_DIR, urls::ATOM)] {
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
    use std::collections::BTreeMap;

    use chrono::{DateTime, Utc};

    use super::*;
    use crate::config::Config;

    /// Two digests a week apart, each the other's closest, sharing a theme.
    fn project_in(dir: &Path) -> Config {
        let d = dir.join("digests");
        std::fs::create_dir_all(&d).unwrap();
        for (name, date, other) in [("001_aaaa.txt", "20230704", "bbbb"), ("002_bbbb.txt", "20230711", "aaaa")] {
            let text = format!(
                "# __Title {name}__, from ([{date}](https://example.org/c).)\n\n__[External link](https://example.org/{name})__\n\n\
                 ## Summary\n\nSomething happened.\n\n## Themes\n\n* shared\n\n## Closest\n\n* [The other]({other})\n"
            );
            std::fs::write(d.join(name), text).unwrap();
        }
        std::fs::write(dir.join("publish.toml"), "[site]\nbase_url = \"https://signals.example.org\"\n").unwrap();
        Config::load(&dir.join("publish.toml")).unwrap()
    }

    fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let path = e.unwrap().path();
                if path.is_dir() {
                    todo.push(path);
                } else {
                    out.insert(path.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&path).unwrap());
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn the_drafts_are_the_same_whether_the_digests_are_parsed_or_come_from_the_catalog_cache() {
        let dir = tempfile::tempdir().unwrap();
        let config = project_in(dir.path());
        // The week of 3 July is due, the week of 10 July is a draft.
        let now: DateTime<Utc> = "2023-07-12T09:00:00Z".parse().unwrap();
        // The files settle before the cache records them, so that the next load trusts it.
        std::thread::sleep(std::time::Duration::from_millis(400));
        let mut parsed = Project::load_to_build(config.clone(), None, now).await.unwrap();
        assert_eq!(parsed.digests_parsed, 2);
        let first = parsed.build(BuildPlan::site(Site::Drafts)).await.unwrap();
        assert_eq!((first.pages, first.rendered, first.reread), (2, 2, 0));
        let from_files = files(&config.paths.drafts);

        std::fs::remove_dir_all(&config.paths.drafts).unwrap();
        std::fs::remove_dir_all(config.paths.cache.join("drafts")).unwrap();
        let mut cached = Project::load_to_build(config.clone(), None, now).await.unwrap();
        assert_eq!(cached.digests_parsed, 0, "every entry from the cache");
        let second = cached.build(BuildPlan::site(Site::Drafts)).await.unwrap();
        assert!(second.reread > 0, "what was shown was read whole again");
        assert!(files(&config.paths.drafts) == from_files, "the drafts depend on the cache");
        // Drafts link each other on their pages.
        let page = String::from_utf8(from_files[Path::new("issues/2023-07-03/index.html")].clone()).unwrap();
        assert!(page.contains("issues/2023-07-10/#d-bbbb"), "{page}");
    }
}
