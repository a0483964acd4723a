//! `gazette serve`: builds the archive when `[paths] out` has none yet, then runs the web service
//! until SIGINT or SIGTERM.

use std::process::ExitCode;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::error::ExitError;
use crate::project::Project;
use crate::project::{BuildPlan, Publish, Site};
use crate::server;
use crate::store::Store;
use crate::urls;

pub fn run(
    config: Config,
    listen: Option<std::net::SocketAddr>,
    behind_proxy: bool,
    now: DateTime<Utc>,
) -> anyhow::Result<ExitCode> {
    let addr = listen.unwrap_or(config.server.listen);
    super::runtime()?.block_on(async {
        if !config.paths.out.join(urls::INDEX).is_file() {
            tracing::info!("{} has no {} yet; building the archive first", config.paths.out.display(), urls::INDEX);
            let store = Store::open(&config.paths.database).await?;
            let mut project = Project::load_to_build(config.clone(), Some(&store), now).await?;
            let publish = Some(Publish { store: &store, by_hand: None });
            project.build(BuildPlan { site: Site::Published, publish, only: None }).await?;
            store.close().await;
        }
        let local = !(behind_proxy || config.server.behind_proxy);
        let host = if addr.ip().is_unspecified() { std::net::IpAddr::from([127, 0, 0, 1]) } else { addr.ip() };
        let origin = std::net::SocketAddr::new(host, addr.port());
        let options = server::Options { local_origin: local.then(|| format!("http://{origin}")), ..server::Options::default() };
        if local && format!("http://{origin}") != config.site.base_url {
            tracing::info!(
                "links to {} are served as links to http://{origin}; behind a reverse proxy, set [server] behind_proxy = true",
                config.site.base_url
            );
        }
        let app = server::App::new(&config, options).await?;
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            ExitError::unusable(format!("cannot listen on {addr}: {e}; pick another address with --listen or [server] listen"))
        })?;
        tracing::info!("serving {} on http://{origin} (subscribe form: http://{origin}/subscribe)", config.paths.out.display());
        // Stopped when serving ends: a mail cut short then counts as sent, and a next subscribe sends it.
        let retries = tokio::spawn(server::retry_confirmations(app.clone()));
        let themes = tokio::spawn(server::refresh_themes(app.clone()));
        server::serve(listener, server::router(app.clone()), server::shutdown_signal()).await?;
        retries.abort();
        themes.abort();
        app.finish_mails(std::time::Duration::from_secs(30)).await;
        app.store().clone().close().await;
        Ok(ExitCode::SUCCESS)
    })
}
