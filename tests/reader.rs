//! What readers see, in headless Chromium on a phone's screen (375 CSS pixels wide, an iPhone SE or
//! 13 mini): the archive's index, an issue page and the subscribe page as `gazette serve` serves
//! them, and the email as `gazette preview` writes it. Each must fit the screen (nothing passes its
//! right edge) and pass axe-core's WCAG 2.0 and 2.1 A and AA rules; a reader on an issue page moves
//! to the next issue and subscribes from its box. Screenshots go to the target folder (`docs/`
//! holds copies of `reader-issue.png` and `reader-email.png`).
//!
//! Needs Chromium (`CHROMIUM`, default /usr/bin/chromium) and axe-core's `axe.min.js`
//! (`AXE_CORE_JS`, default the npm cache folder that .ci/run installs it into); says it is skipped
//! without them, and fails when `CI` is set.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::Project;
use serde_json::{Value, json};

/// The phone: its viewport in CSS pixels and its pixel ratio (1 keeps the screenshots small).
const PHONE: (u32, u32, u32) = (375, 812, 1);

struct Tools {
    chromium: PathBuf,
    axe: PathBuf,
}

/// Where .ci/run installs axe-core: `npm install --prefix <cache>/gazette-npm axe-core@4`.
fn axe_path() -> PathBuf {
    if let Some(p) = std::env::var_os("AXE_CORE_JS") {
        return p.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"));
    cache.join("gazette-npm/node_modules/axe-core/axe.min.js")
}

/// Chromium, python3 and (when `with_axe`) axe-core, or `None` after saying what is missing (a
/// failure under CI).
fn tools(test: &str, with_axe: bool) -> Option<Tools> {
    let chromium = PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    let axe = axe_path();
    let mut missing = Vec::new();
    if !chromium.exists() {
        missing.push(format!("Chromium ({})", chromium.display()));
    }
    if common::python_with(&["json"]).is_none() {
        missing.push("python3".into());
    }
    if with_axe && !axe.exists() {
        missing.push(format!("axe-core ({})", axe.display()));
    }
    if missing.is_empty() {
        return Some(Tools { chromium, axe });
    }
    let why = format!("{test} needs {} (.ci/run installs them)", missing.join(" and "));
    assert!(std::env::var_os("CI").is_none(), "{why}");
    eprintln!("SKIPPED: {why}");
    None
}

impl Tools {
    /// Runs tests/browser.py on a phone's screen with `steps` after it; returns their outputs.
    fn browse(&self, steps: Vec<Value>) -> Vec<Value> {
        let (width, height, scale) = PHONE;
        let mut all = vec![json!({"device": {"width": width, "height": height, "scale": scale}})];
        all.extend(steps);
        let out = std::process::Command::new("python3")
            .arg(common::repo().join("tests/browser.py"))
            .arg(Value::Array(all).to_string())
            .env("CHROMIUM", &self.chromium)
            .output()
            .unwrap();
        assert!(out.status.success(), "browser.py: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The steps that check the page on screen: what passes the right edge, then axe-core.
    fn checks(&self) -> [Value; 2] {
        [json!({"overflow": true}), json!({"axe": self.axe})]
    }
}

/// What is wrong with a page, from the outputs of its `checks`: one line per problem, none when
/// it fits the screen and axe-core finds no violation.
fn problems(overflow: &Value, axe: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let (width, scroll) = (overflow["width"].as_u64().unwrap(), overflow["scroll_width"].as_u64().unwrap());
    if scroll > width {
        found.push(format!(
            "the page is {scroll} px wide on a {width} px screen (viewport meta: {})",
            overflow["viewport_meta"]
        ));
    }
    for e in overflow["offenders"].as_array().unwrap() {
        found.push(format!("passes the right edge: {}", e.as_str().unwrap()));
    }
    for v in axe.as_array().expect("axe-core ran") {
        found.push(format!(
            "axe {} ({}): {}; {} element(s), the first: {}",
            v["id"], v["impact"], v["help"], v["nodes"], v["why"]
        ));
        for (target, html) in v["targets"].as_array().unwrap().iter().zip(v["html"].as_array().unwrap()) {
            found.push(format!("    {target}\n      {html}"));
        }
    }
    found
}

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `gazette serve` on a free loopback port, building the archive first; stopped when dropped.
struct Served {
    child: Child,
    base: String,
}

impl Served {
    fn start(p: &Project) -> Served {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let child =
            p.command(&["serve", "--listen", &addr]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let mut served = Served { child, base: format!("http://{addr}") };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(&addr).is_err() {
            assert!(served.child.try_wait().unwrap().is_none(), "gazette serve stopped");
            assert!(Instant::now() < deadline, "gazette serve did not start listening on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
        served
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The index, an issue page with neighbours on both sides and the service's subscribe page fit a
/// phone's screen and pass axe-core.
#[test]
fn the_archive_pages_fit_a_phone_and_pass_axe() {
    let Some(tools) = tools("the archive's browser test", true) else { return };
    let p = Project::new("");
    let s = Served::start(&p);
    let shots = screenshots();
    let [overflow, axe] = tools.checks();
    let out = tools.browse(vec![
        json!({"visit": format!("{}/", s.base)}),
        json!({"text": true}),
        overflow.clone(),
        axe.clone(),
        json!({"visit": format!("{}/issues/2023-07-17/", s.base)}),
        json!({"text": true}),
        overflow.clone(),
        axe.clone(),
        json!({"screenshot": shots.join("reader-issue.png")}),
        json!({"screenshot": shots.join("reader-issue-full.png"), "full_page": true}),
        json!({"visit": format!("{}/subscribe", s.base)}),
        json!({"text": true}),
        overflow,
        axe,
    ]);
    let (index, issue, subscribe) = (&out[..3], &out[3..6], &out[6..]);
    // The right pages, styled: the checks below are about them.
    assert!(index[0].as_str().unwrap().contains("#7: 17–23 July 2023"), "{}", index[0]);
    let text = issue[0].as_str().unwrap();
    assert!(
        text.contains("#7: 17–23 July 2023") && text.contains("Previous: #6") && text.contains("Next: #8"),
        "{text}"
    );
    assert!(subscribe[0].as_str().unwrap().contains("Email address"), "{}", subscribe[0]);
    for (page, checks) in [("index", index), ("issue page", issue), ("subscribe page", subscribe)] {
        let found = problems(&checks[1], &checks[2]);
        assert!(found.is_empty(), "the {page} on a {} px screen:\n{}", PHONE.0, found.join("\n"));
    }
    eprintln!("screenshots: {}", shots.display());
}

/// The email as `gazette preview` writes it (what a phone's mail app shows) fits the screen and
/// passes axe-core.
#[test]
fn the_email_fits_a_phone_and_passes_axe() {
    let Some(tools) = tools("the email's browser test", true) else { return };
    let p = Project::new("");
    let out = p.expect(0, &["preview", "--week", "2023-07-23"]);
    let html = out.lines().find(|l| l.ends_with(".html")).unwrap_or_else(|| panic!("no HTML preview in {out}"));
    let html = p.dir.path().join(html);
    assert!(html.is_file(), "{}", html.display());
    let url = format!("file://{}", html.canonicalize().unwrap().display());
    let shots = screenshots();
    let [overflow, axe] = tools.checks();
    let out = tools.browse(vec![
        json!({"visit": url}),
        json!({"screenshot": shots.join("reader-email.png")}),
        json!({"screenshot": shots.join("reader-email-full.png"), "full_page": true}),
        json!({"text": true}),
        overflow,
        axe,
    ]);
    assert!(out[0].as_str().unwrap().contains("Signals Weekly"), "{}", out[0]);
    let found = problems(&out[1], &out[2]);
    eprintln!("screenshots: {}", shots.display());
    assert!(found.is_empty(), "the email on a {} px screen:\n{}", PHONE.0, found.join("\n"));

    // A reader whose phone is in dark mode: dark backgrounds, light text, the same contrast rules.
    let [overflow, axe] = tools.checks();
    let out = tools.browse(vec![
        json!({"dark": true}),
        json!({"visit": url}),
        json!({"screenshot": shots.join("reader-email-dark.png")}),
        json!({"style": ["body", "backgroundColor"]}),
        json!({"style": ["h3 a", "color"]}),
        json!({"style": [".d p", "color"]}),
        json!({"style": ["h1 a", "color"]}),
        json!({"style": [".card td", "borderTopColor"]}),
        overflow,
        axe,
    ]);
    assert_eq!(out[0], "rgb(18, 18, 18)", "the body is dark");
    assert_eq!(out[1], "rgb(138, 180, 248)", "links are light blue");
    assert_eq!(out[2], "rgb(232, 232, 232)", "text is light");
    assert_eq!(out[3], "rgb(232, 232, 232)", "the title is light text");
    assert_eq!(out[4], "rgb(18, 18, 18)", "the gaps between days are dark");
    let found = problems(&out[5], &out[6]);
    assert!(found.is_empty(), "the email in dark mode:\n{}", found.join("\n"));
}

/// On a phone, a reader taps from an issue to the next one, and subscribes from the box on its
/// page: real taps and typing, the service's real answer, a pending subscriber in the database.
#[test]
fn a_reader_goes_to_the_next_issue_and_subscribes_from_its_page() {
    let Some(tools) = tools("the subscribe box's browser test", false) else { return };
    let p = Project::new("");
    let s = Served::start(&p);
    let out = tools.browse(vec![
        json!({"visit": format!("{}/issues/2023-07-17/", s.base)}),
        json!({"click": "a[rel=next]", "navigates": true}),
        json!({"text": true}),
        json!({"click": ".subscribe input[type=email]"}),
        json!({"type": "phone.reader@example.org"}),
        json!({"click": ".subscribe button[type=submit]", "navigates": true}),
        json!({"text": true}),
    ]);
    let next = out[0].as_str().unwrap();
    assert!(next.contains("#8: 24–30 July 2023") && next.contains("Previous: #7"), "{next}");
    let answer = out[1].as_str().unwrap();
    assert!(answer.contains("Check your inbox") && answer.contains("phone.reader@example.org"), "{answer}");
    let list = p.expect(0, &["subscribers", "export"]);
    let row = list
        .lines()
        .find(|l| l.starts_with("phone.reader@example.org,"))
        .unwrap_or_else(|| panic!("not subscribed: {list}"));
    assert!(row.contains(",pending,web,"), "{row}");
}

#[test]
fn axe_core_is_looked_for_where_ci_installs_it() {
    let run = std::fs::read_to_string(common::repo().join(".ci/run")).unwrap();
    assert!(
        run.contains(r#"npm install --prefix "${XDG_CACHE_HOME:-$HOME/.cache}/gazette-npm""#),
        ".ci/run installs axe-core elsewhere"
    );
    if std::env::var_os("AXE_CORE_JS").is_none() {
        assert!(axe_path().ends_with(Path::new("gazette-npm/node_modules/axe-core/axe.min.js")));
    }
}
