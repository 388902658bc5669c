//! The master's web front (`dfs-master --http HOST:PORT`): a status page
//! (`/`), a read-only file browser (`/browse/PATH`), the same data as JSON
//! (`/api/v1/...`) and Prometheus metrics (`/metrics`). Off unless asked
//! for.
//!
//! It runs on a small tokio runtime of its own thread; the master itself
//! does not change. Data comes from `status`, which copies it out under the
//! master's locks one at a time; building and rendering run on the
//! runtime's blocking threads, never with a lock held while a response is
//! written.
//!
//! Bounds: at most `CONNECTIONS_MAX` connections (more wait in the kernel's
//! backlog), each closed `CONNECTION_LIFETIME` after it was accepted
//! whatever it does (a slow or idle peer cannot keep a slot); at most
//! `REQUESTS_MAX` requests built at once (beyond: 503), each given
//! `REQUEST_TIMEOUT` (beyond: 503); only GET, no request body is read;
//! pages list at most `status::BROWSE_ENTRIES_MAX` entries.
//!
//! Access: with a cluster key, only peers on loopback are answered unless
//! the master runs `--insecure` (the page shows every name, and users do
//! not authenticate over HTTP yet). Where it may listen follows `--listen`'s
//! rule (`dfs_engine::auth::check_exposure`).
//!
//! Routes are listed in `router`: one more (say `/metrics`) is one line.

mod api;
mod chart;
mod pages;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use dfs_engine::{Error, IoContext, Result};
use tokio::sync::Semaphore;

use crate::service::Master;
use crate::status::{self, History};

pub use dfs_engine::http_listener::BoundedListener;

/// Most connections served at once.
pub const CONNECTIONS_MAX: usize = 64;
/// How long a connection lives at most, from its accept.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Most requests being built at once (each may wait for a lock).
pub const REQUESTS_MAX: usize = 8;
/// How long a request may take to build.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub master: Arc<Master>,
    /// The charts' samples, filled by `status::spawn_sampler`.
    pub history: Arc<Mutex<History>>,
    /// Permits for requests being built (`REQUESTS_MAX`).
    work: Arc<Semaphore>,
}

impl AppState {
    pub fn new(master: Arc<Master>, history: Arc<Mutex<History>>) -> AppState {
        AppState {
            master,
            history,
            work: Arc::new(Semaphore::new(REQUESTS_MAX)),
        }
    }
}

/// Every route of the web front.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::overview))
        .route("/browse", get(pages::browse))
        .route("/browse/", get(pages::browse))
        .route("/browse/{*path}", get(pages::browse))
        .route("/api/v1/cluster", get(api::cluster))
        .route("/api/v1/minions", get(api::minions))
        .route("/api/v1/history", get(api::history))
        .route("/api/v1/browse", get(api::browse))
        .route("/metrics", get(api::metrics))
        .fallback(pages::not_found)
        .with_state(state)
}

/// Who may be answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// Only peers on loopback (a keyed master not run `--insecure`).
    pub loopback_only: bool,
}

impl Access {
    /// The rule for a master with or without a cluster key.
    pub fn for_master(keyed: bool, insecure: bool) -> Access {
        Access {
            loopback_only: keyed && !insecure,
        }
    }
}

/// Refuses an `--http` address other machines reach when the cluster has no
/// key, unless `insecure` (as `--listen`).
pub fn check_exposure(address: &str, keyed: bool, insecure: bool) -> Result<()> {
    dfs_engine::auth::check_exposure(address, keyed, insecure).map_err(|_| {
        Error::Invalid(format!(
            "--http {address} is reachable from other machines and this cluster has no key: \
             give --key FILE (made by `dfs admin keygen FILE`), or --insecure to run without one"
        ))
    })
}

/// Binds `address` (port 0 picks a free port).
pub fn bind(address: &str) -> Result<(std::net::TcpListener, SocketAddr)> {
    crate::server::bind(address)
}

/// Serves the web front on `listener` from a thread of its own, with the
/// history sampler started beside it; returns once both run.
pub fn spawn(master: Arc<Master>, listener: std::net::TcpListener, access: Access) -> Result<()> {
    listener
        .set_nonblocking(true)
        .context("make the http listener non-blocking")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .max_blocking_threads(REQUESTS_MAX)
        .thread_name("http-work")
        .build()
        .context("start the http runtime")?;
    let listener = {
        let _entered = runtime.enter();
        tokio::net::TcpListener::from_std(listener).context("register the http listener")?
    };
    let history = Arc::new(Mutex::new(History::default()));
    status::spawn_sampler(&master, Arc::clone(&history)).context("spawn the history sampler")?;
    // Peers `access` does not allow are closed at accept.
    let app = router(AppState::new(master, history)).into_make_service();
    let listener = BoundedListener::new(
        listener,
        CONNECTIONS_MAX,
        CONNECTION_LIFETIME,
        access.loopback_only,
    );
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            if let Err(e) = runtime.block_on(async { axum::serve(listener, app).await }) {
                tracing::error!("http server stopped: {e}");
            }
        })
        .context("spawn the http thread")?;
    Ok(())
}

/// Why a request could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unavailable {
    /// `REQUESTS_MAX` requests are being built.
    Busy,
    /// Building took longer than `REQUEST_TIMEOUT` (a lock held long).
    TimedOut,
}

impl Unavailable {
    pub(crate) fn message(self) -> String {
        match self {
            Unavailable::Busy => format!(
                "the master is busy: {REQUESTS_MAX} status requests are being answered; try again"
            ),
            Unavailable::TimedOut => format!(
                "the master did not answer within {REQUEST_TIMEOUT:?} (busy, or stopping); try again"
            ),
        }
    }
}

/// Runs `work` on a blocking thread (it takes the master's locks), within
/// the request bounds. The permit goes with the work, so work that outlives
/// its timeout still counts against `REQUESTS_MAX` until it ends.
pub(crate) async fn run_blocking<R: Send + 'static>(
    state: &AppState,
    work: impl FnOnce(&AppState) -> R + Send + 'static,
) -> std::result::Result<R, Unavailable> {
    let permit = Arc::clone(&state.work)
        .try_acquire_owned()
        .map_err(|_| Unavailable::Busy)?;
    let state = state.clone();
    let task = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work(&state)
    });
    match tokio::time::timeout(REQUEST_TIMEOUT, task).await {
        Ok(Ok(result)) => Ok(result),
        // A panic aborts the master (`dfs_engine::sync::abort_on_panic`):
        // a failed join is a cancelled task, the runtime going away.
        Ok(Err(_)) | Err(_) => Err(Unavailable::TimedOut),
    }
}
