//! The shape of the code that the design depends on: commands only parse arguments and print, so
//! the library never reaches into `cmd`, and no command reaches into another.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn the_library_never_reaches_into_the_commands_and_no_command_into_another() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let cmd = src.join("cmd");
    let commands: Vec<String> = files
        .iter()
        .filter(|f| f.parent() == Some(cmd.as_path()))
        .map(|f| f.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|n| n != "mod")
        .collect();
    assert!(commands.len() >= 8, "{commands:?}");
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let rel = file.strip_prefix(&src).unwrap().display().to_string();
        if !file.starts_with(&cmd) && rel != "cli.rs" && rel != "main.rs" {
            assert!(!text.contains("crate::cmd"), "{rel} reaches into crate::cmd");
        }
        if file.starts_with(&cmd) {
            assert!(!text.contains("crate::cli"), "{rel} imports crate::cli, which imports the commands");
            let me = file.file_stem().unwrap().to_string_lossy();
            for other in commands.iter().filter(|c| **c != me) {
                for path in [format!("super::{other}::"), format!("crate::cmd::{other}::")] {
                    assert!(!text.contains(&path), "{rel} imports from the {other} command ({path})");
                }
            }
        }
    }
}

/// A released migration is never edited (a database that ran it would refuse the edited one, or
/// silently miss the change): every migration is listed with its SHA-256 in
/// subscribers/released-migrations.sha256 and still has it; a new one must be listed to ship.
#[test]
fn released_migrations_are_never_edited() {
    use sha2::{Digest, Sha256};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("subscribers");
    let list = std::fs::read_to_string(root.join("released-migrations.sha256")).unwrap();
    let released: std::collections::BTreeMap<&str, &str> = list
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (sum, name) = l.split_once("  ").unwrap_or_else(|| panic!("not `sha256  name`: {l}"));
            (name, sum)
        })
        .collect();
    // One folder per backend: `sqlite/0001_subscribers.sql`, `postgres/0001_store.sql`.
    let mut files: Vec<String> = ["sqlite", "postgres"]
        .iter()
        .flat_map(|backend| {
            std::fs::read_dir(root.join("migrations").join(backend))
                .unwrap()
                .map(move |e| format!("{backend}/{}", e.unwrap().file_name().into_string().unwrap()))
        })
        .filter(|n| n.ends_with(".sql"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "{files:?}");
    for name in &files {
        let sum = hex::encode(Sha256::digest(std::fs::read(root.join("migrations").join(name)).unwrap()));
        match released.get(name.as_str()) {
            Some(listed) => {
                assert_eq!(*listed, sum, "{name} was edited after its release: put the change in a new migration")
            }
            None => {
                panic!("{name} is not in subscribers/released-migrations.sha256: add `{sum}  {name}` when it ships")
            }
        }
    }
    for name in released.keys() {
        assert!(files.iter().any(|f| f == name), "the released migration {name} is gone");
    }
}
