//! A minion: stores sealed blocks in its data directories, takes part in
//! write pipelines, serves reads, and keeps the master informed.
//!
//! `start` wires the parts together: the identity (`identity`), the block
//! store (`dfs_engine::block_store`, written through `store` on the data
//! path), the data service (`server`, one io_uring runtime per core, with
//! `pipeline` and `read`; `uring` is the only module that touches io_uring),
//! a keeper thread per data directory that watches its health and scrubs
//! its blocks (`scrub`, yielding to clients as `health` tells), and the
//! master conversation (`heartbeat`), which reports sealed blocks, bad
//! replicas and failed directories and carries out the master's commands:
//! deletions, and copies to other minions (`replicate`). Every part counts
//! what it does in `metrics`, which `http` serves with `--http`.
//!
//! A data directory that fails is taken out of service while the minion
//! runs on with the others. When every one has failed, the minion stays up
//! (the master still sees it, with nothing), refuses writes and says so in
//! its log; a restart with working directories brings it back.
//!
//! The binary only parses the command line, sets up logging and signals,
//! and calls `start_with_cores`.

mod batch;
pub mod config;
mod group_sync;
mod health;
pub mod heartbeat;
pub mod http;
pub mod identity;
mod metrics;
mod pipeline;
mod read;
pub mod replicate;
pub mod scrub;
pub mod server;
mod spare;
pub mod store;
mod uring;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use dfs_engine::block_store::BlockStore;
use dfs_engine::msg::MinionAddress;
use dfs_engine::{Error, Result};

use crate::config::{Config, Cores, ScrubPeriod};
use crate::heartbeat::{HeartbeatConfig, StopSignal};
use crate::identity::Identity;
use crate::scrub::ScrubConfig;
use crate::server::{DataService, ServeConfig};

/// How often `run_until` looks at its stop flag.
const STOP_POLL_INTERVAL_MS: u64 = 50;
/// Stray files named one by one in the log at start-up; the rest are counted.
const STRAYS_LOGGED_MAX: usize = 20;

/// A started minion: its data service and its heartbeat thread.
pub struct RunningMinion {
    service: DataService,
    heartbeat: Option<JoinHandle<Result<()>>>,
    stop: StopSignal,
    /// Serves `/metrics` with `--http`; stops when dropped.
    http: Option<http::MetricsServer>,
}

/// Checks the data directories, opens the store, starts serving on every
/// core and starts talking to the master. Returns once the data service is
/// listening.
pub fn start(config: Config) -> Result<RunningMinion> {
    start_with_cores(config, Cores::All)
}

/// `start`, serving data on `cores` cores.
pub fn start_with_cores(config: Config, cores: Cores) -> Result<RunningMinion> {
    config.validate()?;
    dfs_engine::auth::check_exposure(&config.listen, config.key.is_some(), config.insecure)?;
    if let Some(address) = &config.http {
        http::check_exposure(address, config.key.is_some(), config.insecure)?;
    }
    // The identity check comes first: it refuses another minion's directory
    // before the store touches anything in it.
    let identity = Identity::load_or_create(&config.data_dirs)?;
    let store = BlockStore::open(&config.data_dirs)?;
    log_open_report(&store);
    let key = match &config.key {
        Some(path) => Some(dfs_engine::auth::ClusterKey::load(path)?),
        None => None,
    };
    let data_tls = key
        .as_ref()
        .map(|key| server::DataTls::new(key, config.tls_data))
        .transpose()?;
    let service = server::serve(
        ServeConfig {
            advertise: config.advertise.clone(),
            cores: cores.resolve(),
            pipeline_timeout: config.pipeline_timeout,
            frame_deadline: config.frame_deadline,
            idle_timeout: config.idle_timeout,
            tokens: key.clone().map(dfs_engine::token::TokenKeys::new),
            data_tls: data_tls.clone(),
            ..ServeConfig::new(config.listen.clone(), identity.minion())
        },
        store,
    )?;
    // The keepers end when the store's doorbell stops (see `stop`).
    let period = match config.scrub_period {
        ScrubPeriod::Every(period) => Some(period),
        ScrubPeriod::Off => None,
    };
    scrub::spawn(Arc::clone(service.store()), ScrubConfig { period })?;
    let http = match &config.http {
        Some(address) => Some(http::serve(
            address,
            Arc::downgrade(service.store()),
            // Counters and directory names only: any scraper may read them.
            false,
        )?),
        None => None,
    };
    let stop = StopSignal::new();
    let heartbeat = heartbeat::spawn(
        HeartbeatConfig {
            master: config.master.clone(),
            advertised: service.minion_address().address.clone(),
            interval: config.heartbeat_interval,
            key,
            data_trust: server::DataTls::outgoing(data_tls.as_ref()).cloned(),
        },
        identity,
        Arc::clone(service.store()),
        stop.clone(),
    )?;
    Ok(RunningMinion {
        service,
        heartbeat: Some(heartbeat),
        stop,
        http,
    })
}

fn log_open_report(store: &BlockStore) {
    let report = store.open_report();
    if !report.abandoned_removed.is_empty() {
        tracing::info!(
            count = report.abandoned_removed.len(),
            "removed unfinished block writes left by an earlier run"
        );
    }
    for stray in report.strays.iter().take(STRAYS_LOGGED_MAX) {
        tracing::warn!("{}: not a block file; ignored", stray.display());
    }
    if report.strays.len() > STRAYS_LOGGED_MAX {
        tracing::warn!(
            "{} more stray files under blocks/ ignored",
            report.strays.len() - STRAYS_LOGGED_MAX
        );
    }
    if !report.quarantined.is_empty() {
        tracing::info!(
            count = report.quarantined.len(),
            "replicas in quarantine (never served; the master is told again and deletes them)"
        );
    }
}

impl RunningMinion {
    /// The address the data service is bound to.
    pub fn local_address(&self) -> SocketAddr {
        self.service.local_address()
    }

    /// This minion's id and advertised address.
    pub fn minion_address(&self) -> &MinionAddress {
        self.service.minion_address()
    }

    /// The address `/metrics` is served on, with `--http`.
    pub fn http_address(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(http::MetricsServer::local_address)
    }

    /// Runs until `stop_requested` is set (`Ok`) or the master refuses this
    /// minion for good (`Err`).
    pub fn run_until(mut self, stop_requested: &AtomicBool) -> Result<()> {
        loop {
            if stop_requested.load(Ordering::SeqCst) {
                tracing::info!("stopping");
                self.stop();
                return Ok(());
            }
            if self.heartbeat.as_ref().is_some_and(|h| h.is_finished()) {
                if let Some(heartbeat) = self.heartbeat.take() {
                    return match heartbeat.join() {
                        Ok(result) => result,
                        Err(_) => Err(Error::Invalid("the heartbeat thread panicked".into())),
                    };
                }
            }
            std::thread::sleep(Duration::from_millis(STOP_POLL_INTERVAL_MS));
        }
    }

    /// Stops the heartbeat and the data service (in-flight writes are
    /// abandoned; their files are removed at the next start).
    pub fn stop(mut self) {
        self.stop.stop();
        self.service.store().doorbell.stop();
        // The heartbeat thread may be inside a call to an unresponsive
        // master; don't wait for it.
        self.heartbeat = None;
    }
}

impl Drop for RunningMinion {
    fn drop(&mut self) {
        self.stop.stop();
        self.service.store().doorbell.stop();
    }
}
