//! `gazette build`, `preview` and `check` run as a user would: the built binary, a temporary
//! publish.toml, the repository's digests (or a generated hostile corpus), files checked on disk.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use scraper::{Html, Selector};

const SEED_TITLE: &str = "The Evolution of \"Open Source\" in AI Models";

struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    /// A project whose digests are `digests` and whose templates folder holds `templates`.
    fn new(digests: &Path, templates: &[(&str, &str)]) -> Site {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("templates")).unwrap();
        for (name, source) in templates {
            std::fs::write(dir.path().join("templates").join(name), source).unwrap();
        }
        let toml = format!(
            "[site]\nbase_url = \"https://signals.example.org\"\n[paths]\ndigests = \"{}\"\nout = \"out\"\ntemplates = \"templates\"\n",
            digests.display()
        );
        std::fs::write(dir.path().join("publish.toml"), toml).unwrap();
        Site { dir }
    }

    fn repo() -> Site {
        Site::new(&Path::new(env!("CARGO_MANIFEST_DIR")).join("digests"), &[])
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_gazette"))
            .arg("--config")
            .arg(self.dir.path().join("publish.toml"))
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "gazette {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.out().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }
}

fn all_files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p)
            } else {
                files.insert(p.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&p).unwrap());
            }
        }
    }
    files
}

#[test]
fn build_writes_the_archive_and_feeds_and_is_reproducible() {
    let site = Site::repo();
    site.ok(&["build", "--all"]);
    let first = all_files(&site.out());
    for f in ["index.html", "rss.xml", "atom.xml", "feed.json", "issues/2023-07-17/index.html"] {
        assert!(first.contains_key(Path::new(f)), "{f} missing");
    }
    assert!(first.keys().any(|p| p.starts_with("themes") && p.ends_with("atom.xml")));

    // A second build in a fresh folder gives the same bytes.
    std::fs::remove_dir_all(site.out()).unwrap();
    site.ok(&["build", "--all"]);
    assert!(first == all_files(&site.out()), "a second build differs");

    // Every page links its feeds; the seed digest has its anchor; every resolved closest link
    // points at an anchor that exists.
    let a = Selector::parse("a[href]").unwrap();
    let alt = Selector::parse("head link[rel=alternate]").unwrap();
    let mut anchors = std::collections::HashSet::new();
    let mut targets = Vec::new();
    for (path, bytes) in &first {
        if path.extension().is_some_and(|e| e == "html") {
            let doc = Html::parse_document(std::str::from_utf8(bytes).unwrap());
            let types: Vec<_> = doc.select(&alt).filter_map(|l| l.value().attr("type")).collect();
            assert_eq!(
                types,
                ["application/rss+xml", "application/atom+xml", "application/feed+json"],
                "{}",
                path.display()
            );
            for el in doc.select(&Selector::parse("article[id]").unwrap()) {
                anchors.insert(format!(
                    "https://signals.example.org/{}#{}",
                    path.parent().unwrap().display(),
                    el.value().attr("id").unwrap()
                ));
            }
            for el in doc.select(&a) {
                let href = el.value().attr("href").unwrap();
                assert!(href.starts_with("https://") || href.starts_with("http://"), "{href} in {}", path.display());
                if href.contains("/issues/") && href.contains("#d-") {
                    targets.push(href.replace("/#", "#"));
                }
            }
        }
    }
    assert!(!targets.is_empty());
    for t in &targets {
        assert!(anchors.contains(t), "closest link {t} has no anchor");
    }
    let page = site.read("issues/2023-07-17/index.html");
    assert!(page.contains(r#"<article id="d-86102eed948879ef">"#));
    assert!(page.contains("The Evolution of &quot;Open Source&quot; in AI Models"));

    // The feeds parse back with an independent parser.
    for f in ["rss.xml", "atom.xml", "feed.json"] {
        let feed = feed_rs::parser::parse(site.read(f).as_bytes()).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(feed.entries.len(), 10, "{f}");
        assert_eq!(feed.entries[0].id, "tag:signals.example.org,2023:issue-2023-08-14", "{f}");
        assert!(feed.entries[0].published.is_some(), "{f}");
        assert!(feed.entries.windows(2).all(|w| w[0].published > w[1].published), "{f}: not newest first");
    }
}

#[test]
fn build_one_week_and_unknown_weeks() {
    let site = Site::repo();
    let out = site.ok(&["build", "--week", "2023-07-23"]);
    // Its page, and its neighbours', whose previous and next links lead to it.
    assert!(out.contains("3 issue pages"), "{out}");
    for week in ["2023-07-10", "2023-07-17", "2023-07-24"] {
        assert!(site.out().join(format!("issues/{week}/index.html")).exists(), "{week}");
    }
    assert!(
        site.read("issues/2023-07-10/index.html")
            .contains("href=\"https://signals.example.org/issues/2023-07-17/\" rel=\"next\"")
    );
    assert!(!site.out().join("issues/2023-07-03/index.html").exists());

    let bad = site.run(&["build", "--week", "2023-01-01"]);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("26 December 2022 – 1 January 2023 has no digests") && err.contains("--week 2023-06-05"),
        "{err}"
    );
}

#[test]
fn preview_writes_a_filled_in_email() {
    let site = Site::repo();
    let out = site.ok(&["preview", "--week", "2023-07-23"]);
    let paths: Vec<&str> = out.lines().filter(|l| !l.starts_with("Subject:") && !l.starts_with("HTML:")).collect();
    assert_eq!(paths.len(), 2, "{out}");
    assert!(
        out.lines().nth(1).is_some_and(|l| l.starts_with("HTML: ") && l.ends_with(" KB")),
        "a whole email, and its size: {out}"
    );
    assert!(out.starts_with("Subject: Signals Weekly #7: 17–23 July 2023\n"), "{out}");
    let html = std::fs::read_to_string(paths[0]).unwrap();
    let text = std::fs::read_to_string(paths[1]).unwrap();
    // Previews go to the drafts folder, which `serve` never publishes, not into the archive.
    let drafts = site.dir.path().join("drafts/preview");
    assert_eq!(Path::new(paths[0]), drafts.join("2023-07-17.html"));
    assert_eq!(Path::new(paths[1]), drafts.join("2023-07-17.txt"));
    assert!(!site.out().join("preview").exists());

    let doc = Html::parse_document(&html);
    let links: Vec<_> = doc.select(&Selector::parse("a[href]").unwrap()).collect();
    assert_eq!(links.iter().filter(|a| a.text().collect::<String>() == SEED_TITLE).count(), 1);
    for a in &links {
        let href = a.value().attr("href").unwrap();
        assert!(href.starts_with("https://") || href.starts_with("http://"), "{href}");
    }
    let unsub = links.iter().find(|a| a.text().collect::<String>() == "Unsubscribe").expect("an unsubscribe link");
    // The real link's shape (`<id>.<64 hex digits>`, as `token::sign_token` makes), with a token
    // that names nobody.
    let preview_link = format!("https://signals.example.org/unsubscribe/0.{}", "0".repeat(64));
    assert_eq!(unsub.value().attr("href"), Some(preview_link.as_str()));
    assert!(!html.contains("%%") && !text.contains("%%"));
    assert!(
        text.contains(SEED_TITLE) && text.contains(&format!("Unsubscribe with one click:\n{preview_link}\n")),
        "{text}"
    );
    // The preheader is there, hidden.
    assert!(html.contains("display:none") || html.contains("display: none"));
}

/// The editor's note of `notes/<issue-id>.md` comes first in the email's two parts; a note named
/// after a day inside a week is reported with the name it needs, and holds back that week.
#[test]
fn the_editors_note_leads_the_email_and_a_misnamed_one_is_reported() {
    let site = Site::repo();
    let notes = site.dir.path().join("notes");
    std::fs::create_dir(&notes).unwrap();
    std::fs::write(
        notes.join("2023-07-17.md"),
        "A word from the editor: *welcome* to [our site](https://signals.example.org/about).\r\n",
    )
    .unwrap();
    let out = site.ok(&["preview", "--week", "2023-07-23"]);
    let html = std::fs::read_to_string(out.lines().find(|l| l.ends_with(".html")).unwrap()).unwrap();
    let text = std::fs::read_to_string(out.lines().find(|l| l.ends_with(".txt")).unwrap()).unwrap();
    let note = html
        .find("A word from the editor: <em>welcome</em> to <a href=\"https://signals.example.org/about\">our site</a>.")
        .expect(&html);
    assert!(note < html.find("The Evolution of").unwrap());
    // Wrapped at 72 columns, the link's URL after its text.
    assert!(
        text.contains("\n\nA word from the editor: welcome to our site\n<https://signals.example.org/about>.\n"),
        "{text}"
    );
    assert_eq!(site.run(&["check"]).status.code(), Some(0));
    // The web page and the feeds carry it too, above the digests.
    site.ok(&["build", "--all"]);
    let page = site.read("issues/2023-07-17/index.html");
    let note_html = "<p>A word from the editor: <em>welcome</em> to <a href=\"https://signals.example.org/about\">our site</a>.</p>";
    assert!(page.find(note_html).expect(&page) < page.find("id=\"d-").unwrap());
    let feed: serde_json::Value = serde_json::from_str(&site.read("feed.json")).unwrap();
    let item =
        feed["items"].as_array().unwrap().iter().find(|i| i["url"].as_str().unwrap().contains("2023-07-17")).unwrap();
    assert!(item["content_html"].as_str().unwrap().contains(note_html), "{item}");
    assert!(site.read("atom.xml").contains("A word from the editor: &lt;em&gt;welcome&lt;/em&gt;"));

    std::fs::rename(notes.join("2023-07-17.md"), notes.join("2023-07-18.md")).unwrap();
    let out = site.run(&["check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "2023-07-18.md: issues are named after the first day of their week: rename this note 2023-07-17.md"
        ),
        "{stdout}"
    );
    let out = site.ok(&["preview", "--week", "2023-07-23"]);
    let html = std::fs::read_to_string(out.lines().find(|l| l.ends_with(".html")).unwrap()).unwrap();
    assert!(!html.contains("A word from the editor"));
}

#[test]
fn preview_of_an_empty_week_says_what_to_do() {
    let site = Site::repo();
    let out = site.run(&["preview"]); // the last complete week before now: no digests in it
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has no digests") && err.contains("--week 2023-08-14"), "{err}");
}

#[test]
fn a_broken_template_is_reported_with_file_and_line() {
    let site = Site::new(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("digests"),
        &[("email.txt", "{{ issue.label }}\n{% for d in %}\n")],
    );
    let out = site.run(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("templates/email.txt:2: "), "{stdout}");
    let build = site.run(&["build", "--all"]);
    assert_eq!(build.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&build.stderr).contains("templates/email.txt:2: "));
}

#[test]
fn an_override_replaces_one_template_and_keeps_the_others() {
    let site = Site::new(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("digests"),
        &[(
            "index.html",
            "{% extends \"_layout.html\" %}{% block content %}<p id=\"custom\">{{ issues | length }} issues</p>{% endblock %}",
        )],
    );
    site.ok(&["build", "--all"]);
    let index = site.read("index.html");
    assert!(index.contains("<p id=\"custom\">10 issues</p>") && index.contains("application/atom+xml"), "{index}");
    assert!(site.read("issues/2023-07-17/index.html").contains("<article id=\"d-86102eed948879ef\">"));
}

/// A corpus with hostile content (markup in titles, CRLF, BOMs, non-Latin text), generated by
/// the shared script (`common::generated_corpus`: skipped with a notice without python3 or the
/// script, a failure under CI).
fn nasty_corpus() -> Option<tempfile::TempDir> {
    common::generated_corpus(&["--count", "80", "--nasty"])
}

/// Heavy weeks: every week's email, as a reader gets it, is under Gmail's clip (about 102 KB)
/// with its unsubscribe link, shortened where needed; the web page of the same week carries every
/// digest whole. The weeks: 80 digests in one week, 60 in two weeks, and 60 hostile ones in two.
#[test]
fn heavy_weeks_fit_the_inbox_and_their_web_pages_keep_everything() {
    let cases: [&[&str]; 3] = [
        &["--count", "80", "--days", "7"],
        &["--count", "60", "--days", "14"],
        &["--count", "60", "--days", "14", "--nasty"],
    ];
    let mut shortened_weeks = 0;
    for args in cases {
        let Some(corpus) = common::generated_corpus(args) else { return };
        let site = Site::new(corpus.path(), &[]);
        site.ok(&["build", "--all"]);
        let digests = gazette::digest::read_folder(corpus.path()).unwrap();
        assert!(digests.problems.is_empty(), "{:?}", digests.problems);
        let weeks: Vec<String> = std::fs::read_dir(site.out().join("issues"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(weeks.len(), if args[1] == "80" { 1 } else { 2 }, "{args:?}");
        for week in weeks {
            let out = site.ok(&["preview", "--week", &week]);
            let html = std::fs::read_to_string(out.lines().find(|l| l.ends_with(".html")).unwrap()).unwrap();
            assert!(html.len() < 100 * 1024, "{args:?} week {week}: the email is {} bytes", html.len());
            let doc = Html::parse_document(&html);
            let unsubscribe = doc
                .select(&Selector::parse("a[href]").unwrap())
                .find(|a| a.text().collect::<String>() == "Unsubscribe")
                .unwrap_or_else(|| panic!("{args:?} week {week}: no unsubscribe link"));
            assert!(unsubscribe.value().attr("href").unwrap().starts_with("https://signals.example.org/unsubscribe/"));
            if out.contains("shortened to fit") {
                shortened_weeks += 1;
                assert!(html.contains("Read the whole issue on the web."), "a shortened email says so");
            }
            // The web page: every digest of the week, its summary whole, its signals table.
            let page = site.read(&format!("issues/{week}/index.html"));
            use chrono::Datelike;
            let monday = |d: chrono::NaiveDate| {
                (d - chrono::Duration::days(d.weekday().num_days_from_monday().into())).to_string()
            };
            let in_week: Vec<_> = digests.digests.iter().filter(|d| monday(d.date) == week).collect();
            assert!(in_week.len() >= 20, "{args:?} week {week}: {} digests", in_week.len());
            for d in &in_week {
                assert!(
                    page.contains(&format!("id=\"d-{}\"", d.id)),
                    "{args:?} week {week}: {} is missing on the web",
                    d.id
                );
                assert!(
                    page.contains(&gazette::render::markdown::to_html(&d.summary)),
                    "{args:?} week {week}: {} is cut on the web",
                    d.id
                );
            }
        }
    }
    assert!(shortened_weeks >= 2, "the heavy weeks were shortened ({shortened_weeks})");
}

#[test]
fn a_hostile_corpus_renders_escaped_everywhere() {
    let Some(corpus) = nasty_corpus() else { return };
    let site = Site::new(corpus.path(), &[]);
    site.ok(&["build", "--all"]);
    for (path, bytes) in all_files(&site.out()) {
        let text = String::from_utf8(bytes).unwrap();
        assert!(!text.contains("<script>"), "{} contains a live <script>", path.display());
        if path.extension().is_some_and(|e| e == "xml" || e == "json") {
            feed_rs::parser::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
    let first_week = all_files(&site.out().join("issues")).into_keys().next().unwrap();
    let week = first_week.parent().unwrap().to_str().unwrap().to_string();
    let out = site.ok(&["preview", "--week", &week]);
    let html = std::fs::read_to_string(out.lines().find(|l| l.ends_with(".html")).unwrap()).unwrap();
    assert!(!html.contains("<script>") && !html.contains("%%"));
}

/// Python's feedparser, the reference feed reader, must read the feeds without complaint.
#[test]
fn feedparser_reads_the_feeds() {
    let site = Site::repo();
    site.ok(&["build", "--all"]);
    let script = r#"
import sys
import feedparser
for path, version in [(sys.argv[1], "rss20"), (sys.argv[2], "atom10")]:
    d = feedparser.parse(open(path, "rb").read())
    assert d.bozo == 0, (path, d.get("bozo_exception"))
    assert d.version == version, (path, d.version)
    assert d.feed.title and d.feed.link, path
    for e in d.entries:
        assert e.id.startswith("tag:signals.example.org,2023:issue-"), e.id
        assert e.title and e.link and e.published_parsed, e
print("OK", len(d.entries))
"#;
    let Some(python) = common::needs_python(&["feedparser"]) else { return };
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(site.out().join("rss.xml"))
        .arg(site.out().join("atom.xml"))
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.starts_with("OK 10"), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
}
