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
    let commands: Vec<String> =
        files.iter().filter(|f| f.parent() == Some(cmd.as_path())).map(|f| f.file_stem().unwrap().to_string_lossy().into_owned()).filter(|n| n != "mod").collect();
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
