//! The rendering benchmark's Gazette side (run by `bench/run.sh`, see BENCHMARKS.md).
//!
//!     cargo run --release --example render_bench -- CONFIG WEEK MJML_OUT [ITERATIONS]
//!
//! Renders the email of the issue of WEEK (any date in it) from CONFIG's digests and templates,
//! writes the MJML it compiles to MJML_OUT (for the `mjml` npm package to compile the same input),
//! then times, in this one process after a warm-up:
//! - `compile`: one MJML compile by mrml, as `gazette send` does once per issue;
//! - `fill`: one subscriber's copy, as `gazette send` does per message: the address parsed and
//!   the bytes sent written from the prepared message (`PreparedEmail::build`);
//! - `bodies`: only the placeholders filled into the pre-encoded bodies (part of `fill`).
//!
//! Prints one `key value` per line. RENDER_BENCH_FILLS_PER_COMPILE=1 (default 100) shortens the
//! message timings, to profile the compile alone.

use std::path::Path;
use std::time::{Instant, SystemTime};

use gazette::Config;
use gazette::deliver::{PreparedEmail, Recipient};
use gazette::render;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [config, week, mjml_out, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: render_bench CONFIG WEEK MJML_OUT [ITERATIONS]");
    };
    let iterations: u32 = rest.first().map(|n| n.parse()).transpose()?.unwrap_or(200);
    let config = Config::load(Path::new(config))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let project = runtime.block_on(gazette::project::Project::load_if_recorded(
        config.clone(),
        chrono::Utc::now(),
        gazette::build_cache::CacheUse::Read,
    ))?;
    let issue = &project.whole_issue(project.select(Some(week.parse()?))?)?;
    let templates = &project.templates;

    let mjml = render::email_mjml(&config, templates, issue)?;
    std::fs::write(mjml_out, &mjml)?;
    let body = render::render_email(&config, templates, issue)?;
    assert_eq!(
        render::compile_email_mjml(&mjml).map_err(anyhow::Error::msg)?,
        body.html,
        "the dumped MJML is what the email is compiled from"
    );

    // One MJML compile.
    let compile = || render::compile_email_mjml(std::hint::black_box(&mjml)).expect("compiles");
    for _ in 0..iterations.div_ceil(10) {
        std::hint::black_box(compile());
    }
    let start = Instant::now();
    for _ in 0..iterations {
        std::hint::black_box(compile());
    }
    let compile_s = start.elapsed().as_secs_f64() / f64::from(iterations);

    // One subscriber's copy, on the wire.
    let email = PreparedEmail::new(&config, &body.subject, &body.html, &body.text, false, SystemTime::now())?;
    let fills = iterations * std::env::var("RENDER_BENCH_FILLS_PER_COMPILE").map_or(Ok(100), |v| v.parse())?;
    let mut bytes = 0usize;
    let fill = |i: u32| -> anyhow::Result<usize> {
        let address = format!("reader.{i}@example{}.org", i % 97);
        let url =
            gazette::urls::unsubscribe(&config.site, &format!("{i}.0123456789abcdef0123456789abcdef0123456789abcdef"));
        let message_id = format!("<2023-07-17.{i}.0123456789ab@example.org>");
        // The address parsed as the send loop does (`deliver::mailbox`).
        let mailbox = lettre::message::Mailbox::new(None, address.parse::<lettre::Address>()?);
        let message = email.build(&Recipient {
            mailbox,
            unsubscribe_url: &url,
            preferences_url: &url,
            message_id: &message_id,
        })?;
        Ok(std::hint::black_box(message).bytes().len())
    };
    for i in 0..fills / 10 {
        bytes = fill(i)?;
    }
    let start = Instant::now();
    for i in 0..fills {
        fill(i)?;
    }
    let fill_s = start.elapsed().as_secs_f64() / f64::from(fills);

    // Only the placeholders filled into the encoded bodies (no address parsing, headers or formatting).
    let start = Instant::now();
    for i in 0..fills {
        let url =
            gazette::urls::unsubscribe(&config.site, &format!("{i}.0123456789abcdef0123456789abcdef0123456789abcdef"));
        std::hint::black_box(email.fill_bodies(&url, &url, "reader.1@example1.org"));
    }
    let bodies_s = start.elapsed().as_secs_f64() / f64::from(fills);

    println!("mjml_bytes {}", mjml.len());
    println!("html_bytes {}", body.html.len());
    println!("message_bytes {bytes}");
    println!("compile_ms {:.4}", compile_s * 1e3);
    println!("fill_us {:.3}", fill_s * 1e6);
    println!("bodies_us {:.3}", bodies_s * 1e6);
    Ok(())
}
