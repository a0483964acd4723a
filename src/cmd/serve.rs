//! `gazette serve`: builds the archive when `[paths] out` has none yet, then runs the web service
//! until SIGINT or SIGTERM.

use std::process::ExitCode;

use crate::cli::UsageError;
use crate::config::Config;
use crate::server;

pub fn run(config: &Config, listen: Option<std::net::SocketAddr>) -> anyhow::Result<ExitCode> {
    if !config.paths.out.join("index.html").is_file() {
        tracing::info!("{} has no index.html yet; building the archive first", config.paths.out.display());
        let archive = super::load_archive(config, &super::pinned_numbers(config)?)?;
        super::build::write_site(config, &archive.issues, None)?;
    }
    let addr = listen.unwrap_or(config.server.listen);
    crate::cli::runtime()?.block_on(async {
        let app = server::App::new(config, server::Options::default()).await?;
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            UsageError(format!("cannot listen on {addr}: {e}; pick another address with --listen or [server] listen"))
        })?;
        tracing::info!("serving {} on http://{addr} (subscribe form: http://{addr}/subscribe)", config.paths.out.display());
        server::serve(listener, server::router(app.clone()), server::shutdown_signal()).await?;
        app.finish_mails(std::time::Duration::from_secs(30)).await;
        app.store().clone().close().await;
        Ok(ExitCode::SUCCESS)
    })
}
