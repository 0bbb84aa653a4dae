//! `synclog serve`: the [`LogStore`] contract over HTTP.
//!
//! - a JSON API under `/v1` (append one log or a batch with an `Idempotency-Key`, start,
//!   finish and abandon runs, list logs and runs with every filter and keyset paging, one
//!   log, one run, summary, count), Server-Sent Events of new logs (`/v1/stream`,
//!   resumable with `Last-Event-ID`), `/v1/health`, `/metrics` (Prometheus) and
//!   `/v1/openapi.json` (generated from the handlers);
//! - a dashboard at `/`, rendered on the server, live through `EventSource`;
//! - bearer tokens (a write token, a read token, or public reads), compared in constant
//!   time and never logged; loopback only without a token;
//! - limits: a body size limit (413), a body timeout (408: a slow client never reaches the
//!   writer), a header timeout (a half-sent or idle connection is closed), a concurrency
//!   limit and a connection limit (503 with `Retry-After`, never a hang), a stream limit.
//!
//! An append answers only once its records are durable (and, for a guarded pair, read
//! back), with the receipt. On shutdown, appends in flight finish and are answered, the
//! streams end, then the caller closes the store.
//!
//! ```no_run
//! # async fn f(store: std::sync::Arc<dyn synclog_core::LogStore>) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7070").await?;
//! let config = synclog_server::Config::default();
//! synclog_server::serve(listener, store, None, config, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! # Ok(()) }
//! ```

pub mod api;
pub mod app;
pub mod auth;
pub mod dashboard;
pub mod disk;
pub mod error;
pub mod hub;
mod listen;
pub mod metrics;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use synclog_core::guarded::Guarded;
use synclog_core::LogStore;

pub use app::{router, App, Config, VerifyOutcome};
pub use auth::{Access, Token};
pub use error::ApiError;

/// The address `synclog serve` listens on by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";

/// Refuses to listen on `addr` when it is not a loopback address and no token is set:
/// an open store on the network is a mistake, never a default.
///
/// Errors: a message saying what to do.
pub fn check_listen(addr: SocketAddr, access: &Access) -> Result<(), String> {
    if !addr.ip().is_loopback() && !access.has_tokens() {
        return Err(format!(
            "refusing to listen on {addr} without a token: anyone who reaches it could write; \
             give --token-file (or SYNCLOG_TOKEN), or listen on 127.0.0.1"
        ));
    }
    if access.public_read && access.write.is_none() && access.read.is_none() {
        return Err("--public-read only makes sense with a token for writes (--token-file)".into());
    }
    Ok(())
}

/// How long, after the shutdown signal, requests in flight may take before the server
/// stops waiting for them (a client that stopped reading must not keep the store open).
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves `store` (`guarded`: the same store as a guarded pair, if it is one) on
/// `listener` until `shutdown` completes; then lets requests in flight finish (appends are
/// answered) for up to [`SHUTDOWN_GRACE`], ends the event streams and returns. The caller
/// closes the store.
///
/// Errors: the listener's I/O errors; [`std::io::ErrorKind::InvalidInput`] when the
/// listener is not on a loopback address and `config` has no token ([`check_listen`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Arc<dyn LogStore>,
    guarded: Option<Arc<Guarded>>,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    check_listen(listener.local_addr()?, &config.access)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let verify_every = config.verify_every;
    let app = App::new(store, guarded, config, rx.clone());
    let verifier = verify_every.map(|every| {
        let app = app.clone();
        let mut stop = rx.clone();
        tokio::spawn(async move {
            loop {
                let outcome = app.verify_now().await;
                tracing::info!(clean = outcome.clean, detail = %outcome.detail, "background verify");
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.changed() => break,
                }
            }
        })
    });
    let (signalled, mut on_signal) = tokio::sync::watch::channel(false);
    let limits = listen::Limits {
        header_timeout: app.inner.config.header_timeout,
        max_connections: app.inner.config.max_connections,
    };
    let metrics = app.inner.metrics.clone();
    let server = listen::serve(listener, router(app), limits, metrics, async move {
        shutdown.await;
        tracing::info!("shutting down: finishing requests in flight, ending streams");
        let _ = tx.send(true);
        let _ = signalled.send(true);
    });
    let grace = async move {
        while !*on_signal.borrow() {
            if on_signal.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let result = tokio::select! {
        r = server => r,
        () = grace => {
            tracing::warn!(
                grace_secs = SHUTDOWN_GRACE.as_secs(),
                "requests still open after the shutdown grace; closing without them (what was answered is durable)"
            );
            Ok(())
        }
    };
    if let Some(v) = verifier {
        v.abort();
        // Wait for it to stop: the caller closes the store next.
        let _ = v.await;
    }
    result
}
