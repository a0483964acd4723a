//! The accept loop: at most `MAX_CONNECTIONS` open at once, each closed when a request head takes
//! longer than `HEADER_READ_TIMEOUT` (which also ends idle keep-alive connections), and a stop that
//! finishes the requests in flight. `axum::serve` cannot set limits, so this is hyper's own server.

use std::sync::Arc;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

use super::{HEADER_READ_TIMEOUT, MAX_CONNECTIONS};

/// Serves `app` on `listener` until `shutdown` completes, then finishes the requests in flight.
pub async fn serve(
    mut listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let connections = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut full = false;
    loop {
        // When every slot is taken, new connections wait in the kernel's accept queue until one is
        // free: at the latest when the oldest silent connection times out.
        let accepted = async {
            let slot = match slots.clone().try_acquire_owned() {
                Ok(slot) => {
                    full = false;
                    slot
                }
                Err(_) => {
                    if !std::mem::replace(&mut full, true) {
                        tracing::warn!("{MAX_CONNECTIONS} connections are open; new ones wait until one closes");
                    }
                    slots.clone().acquire_owned().await.expect("the semaphore is never closed")
                }
            };
            let (stream, peer) = axum::serve::Listener::accept(&mut listener).await;
            (slot, stream, peer)
        };
        let (slot, stream, peer) = tokio::select! {
            accepted = accepted => accepted,
            () = &mut shutdown => break,
        };
        let router = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            // Where `ClientIp` finds the peer's address.
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request)
        });
        let connection = connections.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("connection from {peer}: {e}");
            }
            drop(slot);
        });
    }
    drop(listener);
    connections.shutdown().await;
    Ok(())
}
