//! The inference endpoint on a local address: [`cvops_infer::Endpoint`] over the local registry
//! and models bucket, served by hyper's HTTP/1 connection builder rather than `axum::serve`, for
//! the one thing the latter lacks: a timer, so that a client has a deadline to send a request's
//! headers (a half-sent request, or an idle keep-alive connection, is closed instead of held
//! forever). The body's deadline, the concurrency limit and the image limits are the router's own
//! (`CVOPS_BODY_READ_TIMEOUT_SECONDS`, `CVOPS_MAX_CONCURRENCY`, `CVOPS_INFER_MAX_PIXELS`,
//! `CVOPS_INFER_MAX_DECODED_BYTES`), the same on Lambda.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cvops_infer::{Endpoint, Feed};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;

use crate::platform::LocalPlatform;

/// How long a client has to send a request's headers, by default.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long requests in flight may take to finish once a shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The endpoint over the local platform: the router the infer Lambda runs, and its monitoring
/// feed into the local table.
pub struct LocalEndpoint {
    pub router: axum::Router,
    pub feed: Arc<Feed>,
    flush_every: Duration,
    header_timeout: Duration,
}

impl LocalEndpoint {
    pub fn new(platform: &LocalPlatform, api_key: Option<String>, alias_check: Duration) -> anyhow::Result<Self> {
        let mut config = platform.infer_config()?;
        config.api_key = api_key;
        config.alias_check = alias_check;
        let Endpoint { router, feed, flush_every } = Endpoint::build(&platform.ports, config);
        Ok(Self { router, feed, flush_every, header_timeout: DEFAULT_HEADER_TIMEOUT })
    }

    pub fn with_header_timeout(mut self, header_timeout: Duration) -> Self {
        self.header_timeout = header_timeout;
        self
    }

    /// Serves until `shutdown` completes, then writes the last monitoring counters.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let flusher = self.feed.spawn_flusher(self.flush_every);
        serve_http1(listener, self.router, self.header_timeout, shutdown).await;
        flusher.abort();
        self.feed.flush().await.context("writing the last monitoring counters")?;
        Ok(())
    }
}

/// HTTP/1 connections on `listener`, each served by `router` with a deadline on its headers,
/// until `shutdown`; then the requests in flight get [`SHUTDOWN_GRACE`] to finish.
pub async fn serve_http1(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    header_timeout: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // the listener is fine; pause rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("requests still in flight after the shutdown grace period were dropped");
    }
}
