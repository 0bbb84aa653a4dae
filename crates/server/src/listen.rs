//! The accept loop: HTTP/1.1 connections served by hyper with the limits `axum::serve`
//! does not set (it takes no configuration).
//!
//! - **A header timeout.** A client must send a request's whole head within
//!   [`Config::header_timeout`](crate::Config::header_timeout); a connection that sends
//!   part of one and stops (slowloris), or sits idle between keep-alive requests that
//!   long, is closed. Without it such a connection holds a task and a file descriptor for
//!   ever, and enough of them starve the server of descriptors.
//! - **A connection limit.** Beyond [`Config::max_connections`](crate::Config::max_connections)
//!   open connections, a new one is answered `503` with `Retry-After` and closed, never
//!   left hanging in the listen queue (beyond [`REFUSING_AT_ONCE`] refusals being
//!   answered, closed unanswered).
//! - **Graceful shutdown.** When the signal comes, the listener stops accepting, idle
//!   connections close, and requests in flight finish and are answered.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

/// The body a connection over the limit is answered with (the API's error shape).
const OVER_LIMIT_BODY: &str =
    r#"{"error":{"kind":"overloaded","message":"too many connections open; retry shortly"}}"#;

/// The whole answer to a connection over the limit.
fn over_limit() -> Vec<u8> {
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{OVER_LIMIT_BODY}",
        OVER_LIMIT_BODY.len()
    )
    .into_bytes()
}

/// How long a refused connection is given to take its `503` before it is closed.
const REFUSE_GRACE: Duration = Duration::from_secs(2);

/// Refused connections being answered at once; beyond, one is closed without its `503`
/// (a flood of refusals must not take the descriptors the limit keeps free).
const REFUSING_AT_ONCE: usize = 32;

/// Limits of the accept loop.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub header_timeout: Duration,
    pub max_connections: usize,
}

/// Descriptors kept free of connections: the store's files, the listener, logs, and
/// refused connections being answered.
const RESERVED_DESCRIPTORS: u64 = 64 + REFUSING_AT_ONCE as u64;

/// The connection limit that fits the process's open-file limit (`soft`): with more
/// connections than descriptors, `accept` would fail and new clients would wait unanswered
/// in the listen queue instead of getting their 503.
pub(crate) fn fitting_connections(configured: usize, soft: Option<u64>) -> usize {
    match soft {
        Some(soft) => {
            let room = soft.saturating_sub(RESERVED_DESCRIPTORS).max(1);
            configured.min(usize::try_from(room).unwrap_or(usize::MAX))
        }
        None => configured,
    }
}

/// The process's soft limit of open files (`None`: unlimited or unknown).
pub(crate) fn open_file_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    (ok && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

/// Serves `router` on `listener` until `signal` completes, then stops accepting and waits
/// until every connection has closed (idle ones at once, busy ones once answered).
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    metrics: crate::metrics::Metrics,
    signal: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let max = fitting_connections(limits.max_connections, open_file_limit());
    if max < limits.max_connections {
        tracing::warn!(
            configured = limits.max_connections,
            serving = max,
            "the open-file limit holds fewer connections than configured; raise it (ulimit -n) to serve more"
        );
    }
    let slots = Arc::new(Semaphore::new(max));
    let refusing = Arc::new(Semaphore::new(REFUSING_AT_ONCE));
    // Every connection task holds a receiver: when all are dropped, all have ended.
    let (closed_tx, closed_rx) = watch::channel(());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut signal = std::pin::pin!(signal);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors or memory: let connections close, then go on.
                    // Other errors are a connection's own (reset before accept).
                    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)) {
                        tracing::warn!(error = %e, "cannot accept a connection; waiting");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    } else {
                        tracing::debug!(error = %e, "a connection failed before it was accepted");
                    }
                    continue;
                }
            },
            () = &mut signal => break,
        };
        let _ = stream.set_nodelay(true);
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.connection_refused();
            if let Ok(permit) = refusing.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    refuse(stream).await;
                    drop(permit);
                });
            }
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        let (mut stop, closed) = (stop_rx.clone(), closed_rx.clone());
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            let mut stopping = false;
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    changed = stop.changed(), if !stopping => {
                        if changed.is_err() || *stop.borrow() {
                            stopping = true;
                            conn.as_mut().graceful_shutdown();
                        }
                    }
                }
            }
            drop((slot, closed));
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(closed_rx);
    closed_tx.closed().await;
    Ok(())
}

/// Tells a connection over the limit to come back later, then closes it (after it read
/// the answer, or [`REFUSE_GRACE`]).
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(REFUSE_GRACE, async {
        stream.write_all(&over_limit()).await?;
        stream.shutdown().await?;
        // Read what the client sent until it closes: closing with unread bytes would reset
        // the connection, and a reset may drop the answer before the client reads it.
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_limit_stays_below_the_open_file_limit() {
        assert_eq!(fitting_connections(8192, Some(1024)), 1024 - 96);
        assert_eq!(fitting_connections(100, Some(1024)), 100);
        assert_eq!(fitting_connections(8192, None), 8192);
        assert_eq!(fitting_connections(8192, Some(10)), 1);
    }
}
