//! The bounce reader against the real world: 434 failure notices, complaints, auto-replies and
//! ordinary mail written by some sixty mail servers (../shared/corpus/bounces-dev), scored by that
//! corpus's `score.py` against Sisimai's verdicts. A change that helps one format and breaks
//! another fails here.

mod common;

use std::path::PathBuf;

use common::Project;

fn corpus() -> Option<PathBuf> {
    let dir = common::repo().join("../shared/corpus/bounces-dev");
    if dir.join("score.py").is_file() {
        return Some(dir);
    }
    assert!(std::env::var_os("CI").is_none(), "CI must have ../shared/corpus/bounces-dev");
    eprintln!("skipped: no ../shared/corpus/bounces-dev");
    None
}

/// What Sisimai writes as the recipient of a complaint that names none: no reader of the message
/// can name it, so the complaint goal is measured without these lines (the test says how many).
const UNDISCLOSED: &str = "undisclosed-recipient-in-headers@libsisimai.org.invalid";

#[test]
fn the_development_corpus_meets_the_goals_against_sisimai() {
    let Some(corpus) = corpus() else { return };
    let Some(python) = common::python_with(&["json"]) else {
        assert!(std::env::var_os("CI").is_none(), "CI must have python3");
        eprintln!("skipped: no python3");
        return;
    };
    let p = Project::new("");
    // Each source's folder, as an operator would name them: `import` reads a folder file by file.
    let mut folders: Vec<PathBuf> =
        std::fs::read_dir(corpus.join("messages")).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    folders.sort();
    let mut args = vec!["bounces".to_string(), "import".into(), "--dry-run".into(), "--format".into(), "json".into()];
    args.extend(folders.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let results = p.expect(0, &args);
    assert!(results.lines().count() >= 434, "one line per message at least: {} lines", results.lines().count());
    let file = p.dir.path().join("results.jsonl");
    std::fs::write(&file, &results).unwrap();

    let out = std::process::Command::new(python)
        .arg(corpus.join("score.py"))
        .arg(corpus.join("expected.jsonl"))
        .arg(&file)
        .args(["--json", "--list-misses"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let score: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let share = |name: &str| score[name]["ok"].as_f64().unwrap() / score[name]["n"].as_f64().unwrap();
    let misses = |name: &str| serde_json::to_string_pretty(&score[name]["misses"]).unwrap();
    assert_eq!(score["files_without_result"], 0, "every file has a line");
    assert!(share("found") >= 0.95, "found {:.3}: {}", share("found"), misses("found"));
    assert!(share("hard->perm") >= 0.97, "hard->perm {:.3}: {}", share("hard->perm"), misses("hard->perm"));
    assert_eq!(share("autoreplies"), 1.0, "every auto-reply left alone: {}", misses("autoreplies"));
    let fp = &score["false_permanent"];
    let false_share = fp["count"].as_f64().unwrap() / fp["permanent_emitted"].as_f64().unwrap();
    assert!(
        false_share <= 0.01,
        "false permanent {false_share:.3}: {}",
        serde_json::to_string_pretty(&fp["misses"]).unwrap()
    );

    // Complaints: Sisimai's placeholder aside, 95% named.
    let complaints = &score["complaints"];
    let placeholders =
        complaints["misses"].as_array().unwrap().iter().filter(|m| m["recipient"] == UNDISCLOSED).count() as f64;
    assert!(
        placeholders <= 2.0,
        "only the two reports that name no recipient are counted out: {}",
        misses("complaints")
    );
    let named = complaints["ok"].as_f64().unwrap() / (complaints["n"].as_f64().unwrap() - placeholders);
    assert!(named >= 0.95, "complaints {named:.3}: {}", misses("complaints"));
}
