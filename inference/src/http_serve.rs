//! The connection loop of `distill serve`: HTTP/1.1 over hyper with a deadline for request
//! headers that also closes idle keep-alive connections.
//!
//! `axum::serve` sets no timer, so a client that opens a connection and sends nothing, half a
//! header, or nothing after its last response holds a socket and a task for ever (thousands of
//! them exhaust file descriptors). hyper's header-read timeout starts whenever a connection
//! waits for the head of a request — after accept and again after each response — so one
//! setting bounds slow headers and idle keep-alive alike. Body deadlines are the request
//! guard's business ([`crate::serve_guard`]).

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;

/// Connection-level settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnOptions {
    /// Time a connection may take to send a request's headers, counted from accept or from the
    /// end of the previous response (so also the idle keep-alive timeout). Default 30 s.
    pub header_timeout: Duration,
}

impl Default for ConnOptions {
    fn default() -> Self {
        ConnOptions {
            header_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets open connections finish
/// their current response and returns.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    router: Router,
    options: ConnOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (closing_tx, closing_rx) = tokio::sync::watch::channel(false);
    let mut conns = tokio::task::JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors or a reset before accept: wait a little, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let mut closing = closing_rx.clone();
        let header_timeout = options.header_timeout;
        conns.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let mut conn = pin!(builder.serve_connection(TokioIo::new(stream), service));
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = closing.wait_for(|&c| c) => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    while conns.join_next().await.is_some() {}
    Ok(())
}
