//! The incremental build: `gazette build` run twice reads and renders only what changed (the build
//! cache in `[paths] cache`), and what it writes is byte for byte what a build without a cache
//! writes. The built binary, the repository's digests copied into a temporary project.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Longer than the build cache's settling margin (2 s): files changed before it are trusted by their stamps.
const SETTLE: Duration = Duration::from_millis(2200);

struct Project {
    dir: tempfile::TempDir,
    /// More configuration, in every configuration written (`configure`).
    extra: std::cell::RefCell<String>,
}

impl Project {
    /// The repository's digests in a folder of their own, with an empty templates folder.
    fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        let digests = dir.path().join("digests");
        std::fs::create_dir_all(&digests).unwrap();
        std::fs::create_dir_all(dir.path().join("templates")).unwrap();
        for e in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("digests")).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), digests.join(e.file_name())).unwrap();
        }
        let project = Project { dir, extra: Default::default() };
        project.config("publish.toml", "out", ".gazette-cache");
        project
    }

    /// A configuration writing into `out` with its cache in `cache`; every other path shared.
    fn config(&self, name: &str, out: &str, cache: &str) -> PathBuf {
        let toml = format!(
            "[site]\nbase_url = \"https://signals.example.org\"\n{}\n[paths]\ndigests = \"digests\"\ntemplates = \"templates\"\nout = \"{out}\"\ncache = \"{cache}\"\n",
            self.extra.borrow()
        );
        let path = self.dir.path().join(name);
        std::fs::write(&path, toml).unwrap();
        path
    }

    /// Adds `site` (lines of `[site]`) to the project's configuration, and to the one a build from scratch uses.
    fn configure(&self, site: &str) {
        *self.extra.borrow_mut() = site.to_string();
        self.config("publish.toml", "out", ".gazette-cache");
    }

    /// Runs `gazette ARGS` with the project's configuration; its exit status, stdout and stderr.
    fn run(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_gazette"))
            .arg("--config")
            .arg(self.path("publish.toml"))
            .args(args)
            .args(["--now", "2024-01-01T00:00:00Z"])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `gazette build --all` with `config`: its report line.
    fn build_with(&self, config: &Path) -> String {
        succeed(config, &["build", "--all", "--now", "2024-01-01T00:00:00Z"])
    }

    fn build(&self) -> String {
        self.build_with(&self.path("publish.toml"))
    }

    /// What a build with no cache at all writes, into a fresh folder, on the same database.
    fn built_from_scratch(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let _ = std::fs::remove_dir_all(self.path("scratch"));
        let _ = std::fs::remove_dir_all(self.path("scratch-cache"));
        let report = self.build_with(&self.config("scratch.toml", "scratch", "scratch-cache"));
        let digests = std::fs::read_dir(self.path("digests")).unwrap().count();
        assert!(report.contains(&format!("; {digests} digest file(s) read")), "{report}");
        files(&self.path("scratch"))
    }

    fn out(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        files(&self.path("out"))
    }
}

/// Runs `gazette --config CONFIG ARGS`, which must succeed: its standard output.
fn succeed(config: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_gazette"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "gazette {} failed:\n{}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.insert(p.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&p).unwrap());
            }
        }
    }
    files
}

/// The files whose bytes differ between two builds (or that only one has).
fn changed(before: &BTreeMap<PathBuf, Vec<u8>>, after: &BTreeMap<PathBuf, Vec<u8>>) -> Vec<String> {
    let mut paths: Vec<&PathBuf> = before.keys().chain(after.keys()).collect();
    paths.sort();
    paths.dedup();
    paths.into_iter().filter(|p| before.get(*p) != after.get(*p)).map(|p| p.display().to_string()).collect()
}

/// Asserts that the report says how many pages were rendered and digest files read.
fn assert_work(report: &str, rendered: usize, read: usize) {
    assert_rendered(report, rendered);
    assert!(report.contains(&format!("; {read} digest file(s) read")), "expected {read} digest files read:\n{report}");
}

fn assert_rendered(report: &str, rendered: usize) {
    assert!(report.contains(&format!("({rendered} rendered)")), "expected {rendered} pages rendered:\n{report}");
}

#[test]
fn an_edit_of_one_digest_renders_its_issue_only_and_equals_a_build_built_from_scratch() {
    let p = Project::new();
    std::thread::sleep(SETTLE);
    assert_work(&p.build(), 10, 61);
    let first = p.out();
    // Nothing changed: nothing is read or rendered, nothing written.
    let again = p.build();
    assert_work(&again, 0, 0);
    assert!(again.contains("(0 changed)"), "{again}");

    // An edit that keeps the size, and even the modification time, of one digest of the week of 17 July.
    let digest = p.path("digests/000_86102eed948879ef.txt");
    let text = std::fs::read_to_string(&digest).unwrap();
    let modified = std::fs::metadata(&digest).unwrap().modified().unwrap();
    let edited = text.replacen("The Evolution of", "The EVOLUTION of", 1);
    assert_eq!(edited.len(), text.len());
    std::fs::write(&digest, &edited).unwrap();
    std::fs::File::options().write(true).open(&digest).unwrap().set_modified(modified).unwrap();
    assert_work(&p.build(), 1, 1);
    let after = p.out();
    let changes = changed(&first, &after);
    assert!(changes.contains(&"issues/2023-07-17/index.html".to_string()), "{changes:?}");
    for c in &changes {
        let expected = ["issues/2023-07-17/index.html", "index.html", "rss.xml", "atom.xml", "feed.json"]
            .contains(&c.as_str())
            || c.starts_with("themes/");
        assert!(expected, "{c} changed, though only a digest of the week of 17 July did: {changes:?}");
    }
    assert!(String::from_utf8_lossy(&after[Path::new("issues/2023-07-17/index.html")]).contains("The EVOLUTION of"));
    assert!(
        String::from_utf8_lossy(&after[Path::new("feed.json")]).contains("The EVOLUTION of"),
        "the feeds carry the edit"
    );
    assert!(after == p.built_from_scratch(), "the incremental build differs from a build from scratch");

    // A page deleted from the output is written again, the same. (The digest just edited may be
    // read again: it changed too recently to be trusted by its stamp.)
    std::fs::remove_file(p.path("out/issues/2023-07-24/index.html")).unwrap();
    assert_rendered(&p.build(), 1);
    assert!(p.out() == after, "the deleted page came back different");
    // A page changed in the output (keeping its size) is put right.
    let page = p.path("out/issues/2023-07-03/index.html");
    let bytes = std::fs::read(&page).unwrap();
    let mut spoiled = bytes.clone();
    spoiled[100] = if bytes[100] == b'x' { b'y' } else { b'x' };
    std::fs::write(&page, &spoiled).unwrap();
    assert_rendered(&p.build(), 1);
    assert_eq!(std::fs::read(&page).unwrap(), bytes);
}

#[test]
fn the_cache_serves_the_configuration_however_its_path_is_spelled() {
    let p = Project::new();
    std::thread::sleep(SETTLE);
    assert_work(&p.build(), 10, 61); // `--config /tmp/.../publish.toml`
    let folder = p.dir.path().file_name().unwrap().to_string_lossy().into_owned();
    // A crontab names the file in full, an editor in the folder names it as it is: one cache.
    for spelling in ["publish.toml", "./publish.toml", &format!("../{folder}/publish.toml")] {
        let out = Command::new(env!("CARGO_BIN_EXE_gazette"))
            .current_dir(p.dir.path())
            .args(["--config", spelling, "build", "--all", "--now", "2024-01-01T00:00:00Z"])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report = String::from_utf8(out.stdout).unwrap();
        assert_work(&report, 0, 0);
        assert!(report.contains("(0 changed)"), "--config {spelling}: {report}");
    }
}

#[test]
fn a_template_change_renders_every_page_and_a_corrupt_cache_is_rebuilt() {
    let p = Project::new();
    std::thread::sleep(SETTLE);
    assert_work(&p.build(), 10, 61);

    // Every page uses the layout: all of them change, and equal a build from scratch.
    let layout = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/_layout.html")).unwrap();
    std::fs::write(p.path("templates/_layout.html"), layout.replacen("<body", "<body data-edited=\"1\"", 1)).unwrap();
    let report = p.build();
    assert_work(&report, 10, 0);
    let built = p.out();
    assert!(built.iter().filter(|(path, bytes)| path.starts_with("issues") && String::from_utf8_lossy(bytes).contains("data-edited")).count() == 10);
    assert!(
        built == p.built_from_scratch(),
        "after a template change, the incremental build differs from a build from scratch"
    );

    // Every cache file spoiled (cut short, or garbage): ignored, then rewritten.
    let mut spoiled = 0;
    for f in files(&p.path(".gazette-cache")).keys() {
        let path = p.path(".gazette-cache").join(f);
        let bytes = std::fs::read(&path).unwrap();
        let junk: &[u8] = if spoiled % 2 == 0 { &bytes[..bytes.len() / 2] } else { b"\x00not a cache{" };
        std::fs::write(&path, junk).unwrap();
        spoiled += 1;
    }
    assert!(spoiled > 3, "the cache holds digests, pages and feed contents");
    let report = p.build();
    assert_work(&report, 10, 61);
    assert!(report.contains("(0 changed)"), "{report}");
    assert!(p.out() == built);
    // And once rewritten, it is used again.
    std::thread::sleep(SETTLE);
    p.build();
    assert_work(&p.build(), 0, 0);

    // Deleting it is safe: the next build reads and renders everything, and writes the same.
    std::fs::remove_dir_all(p.path(".gazette-cache")).unwrap();
    let report = p.build();
    assert_work(&report, 10, 61);
    assert!(p.out() == built);
}

/// Every file under `dir` but the database's, with its size and modification time.
fn stamps(dir: &Path) -> BTreeMap<PathBuf, (u64, std::time::SystemTime)> {
    let mut stamps = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::metadata(&p).unwrap();
            if meta.is_dir() {
                stack.push(p);
            } else if !p.starts_with(dir.join("subscribers")) {
                stamps.insert(p.strip_prefix(dir).unwrap().to_path_buf(), (meta.len(), meta.modified().unwrap()));
            }
        }
    }
    stamps
}

#[test]
fn check_and_status_read_the_cache_and_write_nothing() {
    let p = Project::new();
    std::thread::sleep(SETTLE);
    // Before any build: no cache appears.
    p.run(&["check"]);
    assert!(!p.path(".gazette-cache").exists(), "check wrote the build cache");
    assert_work(&p.build(), 10, 61);

    // One digest edited, and old enough to be trusted by its stamp had check or status recorded it.
    let digest = p.path("digests/000_86102eed948879ef.txt");
    let text = std::fs::read_to_string(&digest).unwrap();
    std::fs::write(&digest, text.replacen("The Evolution of", "The Revolution of", 1)).unwrap();
    std::thread::sleep(SETTLE);
    let before = stamps(p.dir.path());
    let (_, checked) = p.run(&["check"]);
    assert!(!checked.trim().is_empty(), "check said nothing");
    let (ok, status) = p.run(&["status", "--week", "2023-07-17"]);
    assert!(ok, "status failed:\n{status}");
    assert!(stamps(p.dir.path()) == before, "check or status wrote a file (the database aside)");
    // So the build still has the edited digest to read.
    assert_work(&p.build(), 1, 1);
}

#[test]
fn a_digest_moved_to_another_week_or_deleted_and_a_configuration_change_equal_a_build_from_scratch() {
    let p = Project::new();
    std::thread::sleep(SETTLE);
    assert_work(&p.build(), 10, 61);

    // A digest of the week of 17 July redated into the week of 3 July.
    let digest = p.path("digests/000_86102eed948879ef.txt");
    let text = std::fs::read_to_string(&digest).unwrap();
    let (heading, rest) = text.split_once('\n').unwrap();
    let at = heading.find("([2023").expect("the heading's date") + 2;
    let moved = format!("{}20230705{}\n{rest}", &heading[..at], &heading[at + 8..]);
    std::fs::write(&digest, moved).unwrap();
    let report = p.build();
    assert!(report.contains("; 1 digest file(s) read"), "{report}");
    let title = "<article id=\"d-86102eed948879ef\">";
    let page =
        |week: &str| String::from_utf8_lossy(&p.out()[Path::new(&format!("issues/{week}/index.html"))]).into_owned();
    assert!(page("2023-07-03").contains(title) && !page("2023-07-17").contains(title), "the digest moved weeks");
    assert!(
        p.out() == p.built_from_scratch(),
        "after a digest moved, the incremental build differs from a build from scratch"
    );

    // A digest deleted.
    std::fs::remove_file(&digest).unwrap();
    let report = p.build();
    assert!(report.contains("; 0 digest file(s) read"), "{report}");
    assert!(!page("2023-07-03").contains(title), "the deleted digest is gone from its page");
    assert!(
        p.out() == p.built_from_scratch(),
        "after a digest was deleted, the incremental build differs from a build from scratch"
    );

    // The configuration changed: every page again.
    p.configure("title = \"Signals Elsewhere\"");
    let report = p.build();
    assert_rendered(&report, 10);
    assert!(page("2023-07-24").contains("Signals Elsewhere"));
    assert!(
        p.out() == p.built_from_scratch(),
        "after a configuration change, the incremental build differs from a build from scratch"
    );
}

/// Every file under `dir`, by path relative to it (none when it does not exist).
fn files_if_any(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    if dir.exists() { files(dir) } else { BTreeMap::new() }
}

#[test]
fn what_shows_an_unchanged_issue_reads_it_whole_and_equals_a_project_without_a_cache() {
    let p = Project::new();
    std::thread::sleep(SETTLE);
    assert_work(&p.build(), 10, 61);
    // Nothing changed: the project holds every digest light (from the cache) and reads again only
    // what it shows.
    let again = p.build();
    assert_work(&again, 0, 0);
    assert!(!again.contains("read again whole"), "nothing was rendered, so nothing was read again:\n{again}");

    // A deleted feed is written again, the same, from digests read again whole.
    let feed = std::fs::read(p.path("out/feed.json")).unwrap();
    let theme_feeds: Vec<PathBuf> = files(&p.path("out/themes")).into_keys().collect();
    std::fs::remove_file(p.path("out/feed.json")).unwrap();
    std::fs::remove_file(p.path("out/themes").join(&theme_feeds[0])).unwrap();
    let report = p.build();
    assert!(report.contains("read again whole"), "the feeds' digests come from their files:\n{report}");
    assert_eq!(std::fs::read(p.path("out/feed.json")).unwrap(), feed);
    assert!(p.out() == p.built_from_scratch(), "the feeds written again differ from a build from scratch");

    // The email preview of an issue held light, and `check`, say what a project without a cache says.
    let (ok, cached_preview) = p.run(&["preview", "--week", "2023-07-17"]);
    assert!(ok, "preview failed:\n{cached_preview}");
    let with_cache = files_if_any(&p.path("drafts/preview"));
    assert!(
        with_cache.values().any(|html| String::from_utf8_lossy(html).contains("The Evolution of")),
        "the preview shows the digests"
    );
    std::fs::remove_dir_all(p.path("drafts")).unwrap();
    std::fs::remove_dir_all(p.path(".gazette-cache")).unwrap();
    let (ok, fresh_preview) = p.run(&["preview", "--week", "2023-07-17"]);
    assert!(ok, "preview failed:\n{fresh_preview}");
    assert_eq!(cached_preview, fresh_preview);
    assert!(
        files_if_any(&p.path("drafts/preview")) == with_cache,
        "the preview of a light issue differs from one read whole"
    );
}

#[test]
fn the_drafts_built_from_the_cache_link_every_week_as_a_build_from_scratch_does() {
    let p = Project::new();
    // Drafts link to every week, the published archive only to published ones: at this time most
    // weeks are not due yet, so the two differ.
    let drafts = |config: &Path| succeed(config, &["build", "--drafts", "--now", "2023-07-12T00:00:00Z"]);
    std::thread::sleep(SETTLE);
    assert_work(&drafts(&p.path("publish.toml")), 10, 61);
    let first = files(&p.path("drafts"));
    // From the cache: every digest light, nothing rendered, nothing changed.
    assert_work(&drafts(&p.path("publish.toml")), 0, 0);
    // Two pages deleted: rendered again from their files, linked as before.
    std::fs::remove_file(p.path("drafts/issues/2023-07-17/index.html")).unwrap();
    std::fs::remove_file(p.path("drafts/issues/2023-07-24/index.html")).unwrap();
    let report = drafts(&p.path("publish.toml"));
    assert_rendered(&report, 2);
    assert!(report.contains("read again whole"), "{report}");
    let again = files(&p.path("drafts"));
    assert!(again == first, "the drafts rendered from the cache differ from the first build");
    let page = String::from_utf8_lossy(&again[Path::new("issues/2023-07-24/index.html")]).into_owned();
    assert!(page.contains("/issues/2023-07-17/#d-"), "a draft links a digest of another draft week:\n{page}");

    // And a build without any cache writes the same drafts.
    let scratch = p.path("scratch-drafts.toml");
    std::fs::write(
        &scratch,
        "[site]\nbase_url = \"https://signals.example.org\"\n[paths]\ndigests = \"digests\"\ntemplates = \"templates\"\nout = \"scratch\"\ndrafts = \"scratch-drafts\"\ncache = \"scratch-cache\"\n",
    )
    .unwrap();
    assert_work(&drafts(&scratch), 10, 61);
    assert!(
        files(&p.path("scratch-drafts")) == first,
        "the drafts built with the cache differ from drafts built from scratch"
    );
}
