//! `gazette serve`'s web service: the archive and feeds of `[paths] out`, the double opt-in
//! subscribe form with its themes, confirmation links, one-click unsubscribe (RFC 8058) and the
//! reader's preferences page. The router is built apart from running it, so tests serve it on port 0.

mod connections;
mod files;
mod limit;
mod offered;
mod preferences;
mod subscribe;
mod welcome;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::config::Config;
use crate::deliver::Transport;
use crate::render::{Page, Templates, render_page};
use crate::store::{Store, TokenKey};
pub use connections::serve;
pub use limit::Rate;
pub use offered::{refresh_themes, refresh_themes_once};
pub use subscribe::{Refusal, SubscribeRequest, read_subscribe_request, retry_confirmations, retry_confirmations_once};
pub use welcome::retry_welcomes_once;

/// Bodies larger than this are refused with 413: a subscribe form is a few dozen bytes.
pub const MAX_BODY: usize = 4 * 1024;
/// A request head (a few hundred bytes) that takes longer is dropped; the same wait, counted from the
/// last answer, ends an idle keep-alive connection, so silent clients cannot hold connections.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A body (at most `MAX_BODY`) that takes longer is answered 408: even a poor mobile link sends 4 KB in one.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections open at once; more wait to be accepted. Far more than readers need, and few enough
/// for the common limit of 1024 open files.
pub const MAX_CONNECTIONS: usize = 512;

/// What the service allows; the defaults suit a public newsletter.
#[derive(Debug, Clone)]
pub struct Options {
    /// Subscribe requests from one client (an IPv4 address or an IPv6 /64).
    pub per_client: Rate,
    /// Subscribe requests from everyone together.
    pub overall: Rate,
    /// A repeated subscribe of a pending address re-sends the confirmation after this long, not before.
    pub resend_after: chrono::Duration,
    /// How long a new request lets an unsubscribed address confirm its way back.
    pub confirm_within: chrono::Duration,
    /// Where the service is reached when no reverse proxy serves `[site] base_url`
    /// (`http://127.0.0.1:8080`): links in the pages, feeds and mails it serves point there.
    pub local_origin: Option<String>,
    /// How often `serve` sends again the confirmation mails that did not go out (`retry_confirmations`).
    pub retry_confirmations_every: Duration,
    /// How often `serve` looks whether the publication record changed, to offer a new issue's
    /// themes (`refresh_themes`).
    pub refresh_themes_every: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            per_client: Rate { burst: 5, every: Duration::from_secs(120) },
            overall: Rate { burst: 60, every: Duration::from_secs(2) },
            resend_after: chrono::Duration::hours(1),
            confirm_within: chrono::Duration::days(7),
            local_origin: None,
            retry_confirmations_every: Duration::from_secs(300),
            refresh_themes_every: Duration::from_secs(60),
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct App(Arc<Inner>);

pub struct Inner {
    config: Config,
    /// `[paths] out`, canonical.
    root: PathBuf,
    store: Store,
    key: TokenKey,
    templates: Templates,
    transport: Transport,
    limiter: limit::Limiter,
    options: Options,
    /// Confirmation mails and welcomes being sent in the background, waited for at shutdown.
    mails_in_flight: std::sync::atomic::AtomicUsize,
    /// Files already read, with their ETag, by path: a poll for an unchanged feed costs a stat.
    files: files::FileCache,
    /// The themes the forms offer (`offered`).
    offered: offered::OfferedLock,
}

impl std::ops::Deref for App {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl App {
    /// Opens what the service needs: the database, the token key, the templates (every page is
    /// rendered once, so a broken `page.html` stops the start), the mail transport, and the themes
    /// of the newest published issues (as of now) for the forms: none, with a warning, when the
    /// digests cannot be read, for a host that serves the archive without them.
    pub async fn new(config: &Config, options: Options) -> anyhow::Result<App> {
        let mut config = config.clone();
        let rewrite = options
            .local_origin
            .clone()
            .filter(|o| *o != config.site.base_url)
            .map(|to| files::Rewrite { from: std::mem::replace(&mut config.site.base_url, to.clone()), to });
        let config = &config;
        let out = &config.paths.out;
        let root = out.canonicalize().with_context(|| {
            format!(
                "cannot serve {}: the folder is missing or unreadable; run `gazette build` or set [paths] out",
                out.display()
            )
        })?;
        let store = Store::open(&config.paths.database).await?;
        let key = store.token_key().await?;
        let templates = crate::project::load_templates(config)?;
        check_pages(config, &templates).map_err(crate::project::template_error)?;
        // The welcome, as `check` renders it: a broken welcome.mjml stops the start, naming it.
        crate::render::render_welcome::<crate::digest::Digest>(config, &templates, None)
            .map_err(crate::project::template_error)?;
        let transport = Transport::from_config(config)?;
        // A host that only serves the archive may lack the digests: the forms then offer no themes
        // until `refresh_themes` can read them.
        let offered = offered::read(config, &store, chrono::Utc::now()).await.unwrap_or_else(|e| {
            tracing::warn!(
                "cannot read the themes of the recent issues: {e:#}; the subscribe form offers none until they can be read"
            );
            offered::Offered::unread()
        });
        let limiter = limit::Limiter::new(options.per_client, options.overall);
        let mails_in_flight = Default::default();
        Ok(App(Arc::new(Inner {
            config: config.clone(),
            root,
            store,
            key,
            templates,
            transport,
            limiter,
            options,
            mails_in_flight,
            files: files::FileCache::new(rewrite),
            offered: std::sync::RwLock::new(offered),
        })))
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Waits, up to `limit`, for the confirmation mails still being sent (after the server stopped).
    pub async fn finish_mails(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.mails_in_flight.load(std::sync::atomic::Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A page of the site; no shared cache keeps it (it can show an address), and no other site
    /// frames it or learns its address from a Referer (it can hold a token).
    fn page(&self, status: StatusCode, page: &Page) -> Response {
        match render_page(&self.config, &self.templates, page) {
            Ok(html) => (
                status,
                [
                    (header::CACHE_CONTROL, "no-store"),
                    (header::REFERRER_POLICY, "no-referrer"),
                    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                    (
                        header::CONTENT_SECURITY_POLICY,
                        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
                    ),
                ],
                Html(html),
            )
                .into_response(),
            Err(e) => {
                tracing::error!("{e}");
                (StatusCode::INTERNAL_SERVER_ERROR, "the page template is broken; see the server log").into_response()
            }
        }
    }

    fn not_found(&self) -> Response {
        let lines = vec!["There is nothing at this address. The archive's front page lists every issue.".into()];
        self.page(StatusCode::NOT_FOUND, &Page { title: "Not found".into(), lines, ..Page::default() })
    }

    /// Something broke on our side (the database): logged; the reader is asked to try again.
    fn unavailable(&self, e: impl std::fmt::Display) -> Response {
        tracing::error!("{e}");
        let lines = vec!["Something went wrong on our side. Please try again in a few minutes.".into()];
        self.page(StatusCode::SERVICE_UNAVAILABLE, &Page { title: "Please try again".into(), lines, ..Page::default() })
    }
}

/// Renders one of each page the service shows, to find a broken `page.html` before a reader does.
pub fn check_pages(config: &Config, templates: &Templates) -> Result<(), crate::render::RenderError> {
    for page in subscribe::sample_pages().into_iter().chain(preferences::sample_pages()) {
        render_page(config, templates, &page)?;
    }
    Ok(())
}

/// Every route. Serve it with `serve`, which supplies the client addresses the rate limit needs.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/subscribe", get(subscribe::form).post(subscribe::subscribe))
        .route("/confirm/{token}", get(subscribe::confirm_page).post(subscribe::confirm))
        .route("/unsubscribe/{token}", get(subscribe::unsubscribe_page).post(subscribe::unsubscribe))
        .route("/preferences/{token}", get(preferences::page).post(preferences::change))
        .route("/address/{token}", get(preferences::address_page).post(preferences::confirm_address))
        .route("/", get(files::serve_file))
        .route("/{*path}", get(files::serve_file))
        .fallback(not_found)
        .layer(middleware::from_fn(read_body_first))
        .layer(middleware::from_fn(log_request))
        .with_state(app)
}

/// Completes on the first SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping: finishing the requests in flight");
}

async fn healthz(State(app): State<App>) -> Response {
    match app.store.ping().await {
        Ok(_) => (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")], "ok\n").into_response(),
        Err(e) => {
            tracing::error!("health check: subscriber database: {e}");
            (StatusCode::SERVICE_UNAVAILABLE, "the subscriber database does not answer\n").into_response()
        }
    }
}

async fn not_found(State(app): State<App>) -> Response {
    app.not_found()
}

/// Reads the whole body before the handler runs: at most `MAX_BODY` (a larger declared length is
/// refused at once, unread) within `BODY_READ_TIMEOUT`, so a slow or endless body holds no handler.
async fn read_body_first(request: Request, next: Next) -> Response {
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large();
    }
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(BODY_READ_TIMEOUT, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(body)) => next.run(Request::from_parts(parts, body.into())).await,
        Ok(Err(e)) if std::error::Error::source(&e).is_some_and(|e| e.is::<http_body_util::LengthLimitError>()) => {
            too_large()
        }
        // The client went away or broke the framing; it hardly reads the answer.
        Ok(Err(_)) => (StatusCode::BAD_REQUEST, "the request body could not be read\n").into_response(),
        Err(_) => {
            let why = format!("the request body did not arrive within {} seconds\n", BODY_READ_TIMEOUT.as_secs());
            (StatusCode::REQUEST_TIMEOUT, [(header::CONNECTION, "close")], why).into_response()
        }
    }
}

fn too_large() -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        [(header::CONNECTION, "close")],
        format!("the request body is over the limit of {MAX_BODY} bytes\n"),
    )
        .into_response()
}

/// One line per request: method, path (tokens replaced by `{token}`), status, time taken.
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = loggable_path(request.uri().path());
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::info!("{method} {path} {} {:.1}ms", response.status().as_u16(), started.elapsed().as_secs_f64() * 1000.0);
    response
}

fn loggable_path(path: &str) -> String {
    for prefix in ["/unsubscribe/", "/confirm/", "/preferences/", "/address/"] {
        if path.len() > prefix.len() && path.starts_with(prefix) {
            return format!("{prefix}{{token}}");
        }
    }
    path.chars().take(200).collect()
}

/// The client's address. Behind a reverse proxy on this machine every peer is the proxy, so for a
/// loopback peer the last `X-Forwarded-For` entry (the one the proxy added) is the client.
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<ClientIp, Infallible> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        let forwarded = || -> Option<IpAddr> {
            let last = parts.headers.get_all("x-forwarded-for").iter().next_back()?;
            last.to_str().ok()?.rsplit(',').next()?.trim().parse().ok()
        };
        let ip = match peer {
            Some(ip) if !ip.to_canonical().is_loopback() => ip,
            peer => forwarded().or(peer).unwrap_or(IpAddr::from([0, 0, 0, 0])),
        };
        Ok(ClientIp(ip))
    }
}

/// `Retry-After` in whole seconds, at least one.
fn retry_after(wait: Duration) -> HeaderValue {
    HeaderValue::from(wait.as_secs_f64().ceil().max(1.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_reach_the_log() {
        assert_eq!(loggable_path("/unsubscribe/7.abcdef"), "/unsubscribe/{token}");
        assert_eq!(loggable_path("/confirm/7.abcdef"), "/confirm/{token}");
        assert_eq!(loggable_path("/preferences/7.abcdef"), "/preferences/{token}");
        assert_eq!(loggable_path("/address/7.9.abcdef"), "/address/{token}");
        assert_eq!(loggable_path("/rss.xml"), "/rss.xml");
    }
}
