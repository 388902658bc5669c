//! `--http HOST:PORT`: serves the minion's metrics (`metrics`) as
//! `GET /metrics`, in the text exposition format Prometheus scrapes.
//!
//! A small axum server on a single-threaded tokio runtime in a thread of
//! its own, away from the io_uring cores: a scrape never waits behind
//! block traffic, and block traffic never behind a scrape. It holds the
//! store weakly, so a stopped minion lets its data directories go even if
//! a scrape is under way; it stops accepting when the minion stops. At most
//! `CONNECTIONS_MAX` connections, each closed after `CONNECTION_LIFETIME`
//! (`dfs_engine::http_listener`), so idle peers cannot hold the minion's
//! descriptors.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use dfs_engine::{Error, IoContext, Result};

use crate::store::Store;

/// The content type of the OpenMetrics text format, which Prometheus reads.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Most connections served at once (a scraper or two, and a person).
const CONNECTIONS_MAX: usize = 16;
/// How long a connection lives at most, from its accept.
const CONNECTION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(60);

/// The running metrics server; it stops when this is dropped.
pub struct MetricsServer {
    local_address: SocketAddr,
    shutdown: Arc<Shutdown>,
}

impl MetricsServer {
    /// The address it is bound to (port 0 resolved).
    pub fn local_address(&self) -> SocketAddr {
        self.local_address
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shutdown.stop();
    }
}

/// Refuses an address other machines reach unless the cluster has a key or
/// the minion runs `--insecure`: metrics tell how the cluster is used.
pub fn check_exposure(http: &str, keyed: bool, insecure: bool) -> Result<()> {
    if keyed || insecure || dfs_engine::auth::is_loopback(http) {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "--http {http} is reachable from other machines and this cluster has no key: \
         give --key FILE (made by `dfs admin keygen FILE`), or --insecure to serve metrics without one"
    )))
}

/// Binds `address` and serves `/metrics` of `store` from a thread of its
/// own, to loopback peers only when `loopback_only`.
pub fn serve(address: &str, store: Weak<Store>, loopback_only: bool) -> Result<MetricsServer> {
    let listener = std::net::TcpListener::bind(address)
        .with_context(|| format!("listen for HTTP on {address}"))?;
    let local_address = listener
        .local_addr()
        .context("read the bound HTTP address")?;
    listener
        .set_nonblocking(true)
        .context("make the HTTP listener non-blocking")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("start the HTTP runtime")?;
    let shutdown = Arc::new(Shutdown::default());
    let stopped = Stopped(Arc::clone(&shutdown));
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(error) => {
                        tracing::error!("serve metrics on {local_address}: {error}");
                        return;
                    }
                };
                let listener = dfs_engine::http_listener::BoundedListener::new(
                    listener,
                    CONNECTIONS_MAX,
                    CONNECTION_LIFETIME,
                    loopback_only,
                );
                let router = Router::new()
                    .route("/metrics", get(metrics))
                    .with_state(store);
                if let Err(error) = axum::serve(listener, router)
                    .with_graceful_shutdown(stopped)
                    .await
                {
                    tracing::error!("serve metrics on {local_address}: {error}");
                }
            })
        })
        .context("start the HTTP thread")?;
    Ok(MetricsServer {
        local_address,
        shutdown,
    })
}

async fn metrics(State(store): State<Weak<Store>>) -> Response {
    match store.upgrade() {
        Some(store) => (
            [(header::CONTENT_TYPE, CONTENT_TYPE)],
            store.metrics.render(store.block_store()),
        )
            .into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "the minion is stopping\n").into_response(),
    }
}

/// The stop of the HTTP server: set once, wakes the server's task.
#[derive(Default)]
struct Shutdown {
    stopped: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Shutdown {
    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        if let Some(waker) = dfs_engine::sync::lock(&self.waker).take() {
            waker.wake();
        }
    }
}

/// Completes once `Shutdown::stop` was called.
struct Stopped(Arc<Shutdown>);

impl Future for Stopped {
    type Output = ();

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        let shutdown = &self.0;
        if shutdown.stopped.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        *dfs_engine::sync::lock(&shutdown.waker) = Some(context.waker().clone());
        // A stop between the first look and keeping the waker is seen here.
        if shutdown.stopped.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_is_served_without_a_key() {
        assert!(check_exposure("127.0.0.1:0", false, false).is_ok());
        assert!(check_exposure("[::1]:9100", false, false).is_ok());
        let error = check_exposure("0.0.0.0:9100", false, false).expect_err("open");
        assert!(error.to_string().contains("--http 0.0.0.0:9100"), "{error}");
        assert!(check_exposure("0.0.0.0:9100", true, false).is_ok());
        assert!(check_exposure("0.0.0.0:9100", false, true).is_ok());
    }
}
