//! The email's weight per digest (run by `bench/email_size.sh`, see BENCHMARKS.md).
//!
//!     cargo run --release --example email_size -- DIGEST_FILE [TEMPLATES_DIR]
//!
//! Makes issues of 2 and 12 copies of DIGEST_FILE (one week, one day), renders each one's email
//! HTML at every step of the size budget with the templates of TEMPLATES_DIR over the built-in ones,
//! and prints, per step, the HTML bytes one more digest costs: (size of 12 - size of 2) / 10.
//! Prints one `step bytes` per line.

use std::path::{Path, PathBuf};

use gazette::Config;
use gazette::render::{self, Shortening};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [digest, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: email_size DIGEST_FILE [TEMPLATES_DIR]");
    };
    let templates = rest.first().map(PathBuf::from);
    let source = std::fs::read(digest)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let steps = [
        ("whole", Shortening::Whole),
        ("summaries_cut", Shortening::Summaries),
        ("details_to_web", Shortening::Details),
        ("one_line", Shortening::Lines { cards: 0 }),
    ];
    let mut sizes = Vec::new();
    for copies in [2usize, 12] {
        let dir = tempfile::tempdir()?;
        let digests = dir.path().join("digests");
        std::fs::create_dir(&digests)?;
        for i in 0..copies {
            std::fs::write(digests.join(format!("{i:03}_{:016x}.txt", i + 1)), &source)?;
        }
        let templates = templates.clone().unwrap_or_else(|| dir.path().join("no-templates"));
        let toml = format!(
            "[site]\nbase_url = \"https://signals.example.org\"\n[paths]\ndigests = \"{}\"\ntemplates = \"{}\"\n",
            digests.display(),
            templates.display()
        );
        let config = Config::parse(&toml, &dir.path().join("publish.toml"))?;
        let project = runtime.block_on(gazette::project::Project::load(config.clone(), None, chrono::Utc::now()))?;
        let [issue] = project.issues() else {
            anyhow::bail!("{}: the copies make more than one issue", Path::new(digest).display())
        };
        anyhow::ensure!(issue.digest_count() == copies);
        let mut row = Vec::new();
        for (_, step) in steps {
            row.push(
                render::render_email_at(&config, &project.templates, &project.whole_issue(issue)?, step)?.html.len(),
            );
        }
        sizes.push(row);
    }
    for (i, (name, _)) in steps.iter().enumerate() {
        println!("{name} {}", (sizes[1][i] - sizes[0][i]) / 10);
    }
    Ok(())
}
