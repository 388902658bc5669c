//! The minion's side of its conversation with the master: register (and
//! learn the cluster id), send a full block report, then heartbeat every
//! interval. When the master forgets the minion (it restarted), register and
//! report again. The master being away is normal: keep trying; the data
//! service serves all the while.
//!
//! Each round also reports the blocks sealed since the last one
//! (`BlockStored`), and carries out the master's commands from the answer:
//! deletions here, copies on the replication workers. News that should not
//! wait for the next round goes out as it comes: a data directory taken
//! out of service (`DataDirectoryFailed`, then a full block report of what
//! is left), replicas found bad and quarantined (`ReportBadReplicas`; the
//! master has them deleted once it replaced them). A full report lists the
//! quarantined replicas as held, and registering reports them bad again,
//! so a master that restarted learns of them too.
//!
//! Only two answers end the minion: the master runs another cluster, or
//! another live minion has our id. Both are configuration errors that
//! retrying can't fix.

use dfs_engine::sync;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use dfs_engine::auth::{bind_challenge, random_bytes, ClusterKey, NONCE_BYTES};
use dfs_engine::limits::{
    BAD_REPLICAS_PER_REPORT_MAX, BLOCK_REPORT_IDS_MAX, CONNECT_TIMEOUT_MS, IO_TIMEOUT_MS,
    STORED_BLOCKS_PER_REPORT_MAX,
};
use dfs_engine::msg::{
    self, Credentials, ErrorKind, MasterRequest, MasterResponse, MinionCommand, MinionId,
};
use dfs_engine::rpc::Connection;
use dfs_engine::tls::DataTrust;
use dfs_engine::token::TokenKeys;
use dfs_engine::{Error, Result};

use crate::identity::Identity;
use crate::replicate::{CopyJob, Replicator, REPLICATION_USER};
use crate::store::{BadReport, ChangeReport, FailedDirectory, QuarantinedReplica, Store};

/// Connection failures in a row after which another warning is logged;
/// those in between are logged at debug level.
const UNREACHABLE_WARNING_EVERY: u64 = 10;

/// How often the heartbeat thread looks, between rounds, for news that
/// should not wait for the next round: sealed blocks to report, a finished
/// copy (the master may have the next one).
const EARLY_ROUND_POLL_MS: u64 = 50;

/// A stop request that a sleeping thread wakes up for.
#[derive(Clone, Default)]
pub struct StopSignal {
    state: Arc<(Mutex<bool>, Condvar)>,
}

impl StopSignal {
    pub fn new() -> StopSignal {
        StopSignal::default()
    }

    pub fn stop(&self) {
        let (stopped, wake) = &*self.state;
        *sync::lock(stopped) = true;
        wake.notify_all();
    }

    pub fn is_stopped(&self) -> bool {
        *sync::lock(&self.state.0)
    }

    /// Sleeps for `duration` or until stopped; true when stopped.
    pub fn wait(&self, duration: Duration) -> bool {
        let (stopped, wake) = &*self.state;
        let guard = sync::lock(stopped);
        let (guard, _) = sync::wait_timeout_while(wake, guard, duration, |stopped| !*stopped);
        *guard
    }
}

/// What the heartbeat loop needs to know.
#[derive(Clone, Debug)]
pub struct HeartbeatConfig {
    /// The master's HOST:PORT.
    pub master: String,
    /// Our data service's address as others reach it.
    pub advertised: String,
    /// Time between heartbeats, and between attempts to reach the master.
    pub interval: Duration,
    /// The cluster key this minion proves on each connection to the
    /// master (and checks the master's proof of).
    pub key: Option<ClusterKey>,
    /// How copies to other minions check them, when they go over TLS.
    pub data_trust: Option<DataTrust>,
}

/// Why a round with the master failed.
#[derive(Debug)]
enum Failure {
    /// Try again next interval (with a new connection).
    Retry(Error),
    /// The master refused us for good.
    Fatal(Error),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure::Retry(error)
    }
}

/// Starts the heartbeat thread. It returns `Ok` when stopped and `Err` when
/// the master refused this minion for good.
pub fn spawn(
    config: HeartbeatConfig,
    identity: Identity,
    store: Arc<Store>,
    stop: StopSignal,
) -> Result<JoinHandle<Result<()>>> {
    let replicator = Replicator::start(Arc::clone(&store), config.data_trust.clone())?;
    let mut heartbeat = Heartbeat {
        replicator,
        interval: config.interval,
        config,
        identity,
        store,
        connection: None,
        registered: false,
        credentials: Credentials {
            user: "dfs-minion".into(),
            ..Credentials::default()
        },
        failures_in_a_row: 0,
    };
    thread::Builder::new()
        .name("heartbeat".into())
        .spawn(move || heartbeat.run(&stop))
        .map_err(|e| Error::io("start the heartbeat thread", e))
}

struct Heartbeat {
    config: HeartbeatConfig,
    identity: Identity,
    store: Arc<Store>,
    connection: Option<Connection>,
    registered: bool,
    credentials: Credentials,
    /// The configured interval, or the master's when that is shorter.
    interval: Duration,
    failures_in_a_row: u64,
    replicator: Replicator,
}

impl Heartbeat {
    fn run(&mut self, stop: &StopSignal) -> Result<()> {
        while !stop.is_stopped() {
            match self.round() {
                Ok(()) => self.failures_in_a_row = 0,
                Err(Failure::Fatal(error)) => {
                    tracing::error!(
                        "the master at {} refused this minion: {error}",
                        self.config.master
                    );
                    return Err(error);
                }
                Err(Failure::Retry(error)) => {
                    self.connection = None;
                    self.failures_in_a_row += 1;
                    let message = format!(
                        "master at {}: {error}; retrying every {:?}",
                        self.config.master, self.interval
                    );
                    if (self.failures_in_a_row - 1).is_multiple_of(UNREACHABLE_WARNING_EVERY) {
                        tracing::warn!("{message}");
                    } else {
                        tracing::debug!("{message}");
                    }
                }
            }
            if self.wait_for_next_round(stop) {
                break;
            }
        }
        Ok(())
    }

    /// Sleeps until the next round is due: after the interval, or sooner
    /// when a copy finished (the master may have the next one). Sealed
    /// blocks are reported as they come, without a heartbeat. True when
    /// stopped.
    fn wait_for_next_round(&mut self, stop: &StopSignal) -> bool {
        let deadline = std::time::Instant::now() + self.interval;
        loop {
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            let slice = (deadline - now).min(Duration::from_millis(EARLY_ROUND_POLL_MS));
            if stop.wait(slice) {
                return true;
            }
            if !self.registered || self.failures_in_a_row > 0 {
                continue;
            }
            if self.replicator.take_finished() {
                return false;
            }
            if self.store.has_failed_directories() || self.store.has_bad() {
                if let Err(Failure::Retry(error) | Failure::Fatal(error)) = self.report_news() {
                    tracing::debug!("report failed directories and bad replicas: {error}");
                    self.connection = None;
                    return false;
                }
            }
            if self.store.has_changes() {
                if let Err(Failure::Retry(error) | Failure::Fatal(error)) = self.report_changes() {
                    // The round at the deadline tries again and handles it.
                    tracing::debug!("report stored blocks: {error}");
                    self.connection = None;
                    return false;
                }
            }
        }
    }

    /// One interval's worth of work: register if needed, else heartbeat.
    fn round(&mut self) -> Result<(), Failure> {
        if !self.registered {
            return self.register();
        }
        self.report_news()?;
        self.report_changes()?;
        let usage = self.store.usage()?;
        let request = MasterRequest::Heartbeat {
            minion: self.identity.minion(),
            capacity_bytes: usage.capacity_bytes,
            used_bytes: usage.used_bytes,
            available_bytes: usage.available_bytes,
            block_count: usage.block_count,
            traffic: self.store.metrics.traffic(),
        };
        match self.call(request)? {
            MasterResponse::Ok => Ok(()),
            MasterResponse::HeartbeatAck { commands } => {
                for command in commands {
                    self.execute(command);
                }
                Ok(())
            }
            MasterResponse::Error(error) if error.kind == ErrorKind::UnknownMinion => {
                tracing::info!("the master forgot this minion ({error}); registering again");
                self.registered = false;
                self.register()
            }
            MasterResponse::Error(error) => Err(Failure::Retry(Error::Remote(error))),
            other => Err(unexpected("Heartbeat", &other)),
        }
    }

    /// Sends the replicas sealed and deleted since the last round, in
    /// order; on failure they are kept for the next one.
    fn report_changes(&mut self) -> Result<(), Failure> {
        let changes = match self.store.take_changes() {
            ChangeReport::Changes(changes) => changes,
            ChangeReport::Full => {
                tracing::info!("too many changed replicas to list; sending a full block report");
                return self.full_report().map(drop);
            }
        };
        let mut rest = changes.as_slice();
        while !rest.is_empty() {
            let count = rest.len().min(STORED_BLOCKS_PER_REPORT_MAX);
            let request = MasterRequest::BlockChanges {
                minion: self.identity.minion(),
                changes: rest[..count].to_vec(),
            };
            let failure = match self.call(request) {
                Ok(MasterResponse::Ok) => None,
                Ok(MasterResponse::Error(error)) if error.kind == ErrorKind::UnknownMinion => {
                    // Registering again sends the full report, which covers
                    // what was sealed; deletions are asked for again.
                    tracing::info!("the master forgot this minion ({error}); registering again");
                    self.registered = false;
                    return self.register();
                }
                Ok(MasterResponse::Error(error)) => Some(Failure::Retry(Error::Remote(error))),
                Ok(other) => Some(unexpected("BlockChanges", &other)),
                Err(error) => Some(Failure::Retry(error)),
            };
            if let Some(failure) = failure {
                self.store.restore_changes(rest.to_vec());
                return Err(failure);
            }
            rest = &rest[count..];
        }
        Ok(())
    }

    /// Sends what can't wait for the next round: failed data directories
    /// (each followed by a full block report) and bad replicas. What does
    /// not get through is kept for the next try.
    fn report_news(&mut self) -> Result<(), Failure> {
        let failures = self.store.take_failed_directories();
        if !failures.is_empty() {
            let sent = self
                .announce_failed_directories(&failures)
                .and_then(|()| self.full_report().map(drop));
            if let Err(failure) = sent {
                self.store.restore_failed_directories(failures);
                return Err(failure);
            }
        }
        let replicas = match self.store.take_bad() {
            BadReport::Replicas(replicas) => replicas,
            BadReport::Full => {
                // Too many to list: report them by what is quarantined.
                quarantined_replicas(&self.store)
            }
        };
        let mut rest = replicas.as_slice();
        while !rest.is_empty() {
            let count = rest.len().min(BAD_REPLICAS_PER_REPORT_MAX);
            if let Err(failure) = self.report_bad_replicas(&rest[..count]) {
                self.store.restore_bad(rest.to_vec());
                return Err(failure);
            }
            rest = &rest[count..];
        }
        Ok(())
    }

    /// Tells the master which data directories are out of service.
    fn announce_failed_directories(&mut self, failures: &[FailedDirectory]) -> Result<(), Failure> {
        for failure in failures {
            let request = MasterRequest::DataDirectoryFailed {
                minion: self.identity.minion(),
                directory: failure.directory.clone(),
                reason: failure.reason.clone(),
            };
            match self.call(request)? {
                MasterResponse::Ok => tracing::info!(
                    "told the master that data directory {} is out of service",
                    failure.directory
                ),
                MasterResponse::Error(error) if error.kind == ErrorKind::UnknownMinion => {
                    return self.register_again(error);
                }
                // The block report that follows still tells it what is lost.
                MasterResponse::Error(error) => tracing::warn!(
                    "the master did not take the failure of data directory {}: {error}",
                    failure.directory
                ),
                other => return Err(unexpected("DataDirectoryFailed", &other)),
            }
        }
        Ok(())
    }

    /// Sends one `ReportBadReplicas` of at most `BAD_REPLICAS_PER_REPORT_MAX`.
    fn report_bad_replicas(&mut self, replicas: &[QuarantinedReplica]) -> Result<(), Failure> {
        let minion = self.identity.minion();
        let request = MasterRequest::ReportBadReplicas {
            reporter: Some(minion),
            replicas: replicas
                .iter()
                .map(|replica| msg::BadReplica {
                    block: replica.replica.block,
                    generation: replica.replica.generation,
                    minion,
                    reason: replica.reason.clone(),
                })
                .collect(),
        };
        match self.call(request)? {
            MasterResponse::Ok => {
                tracing::info!(
                    count = replicas.len(),
                    "reported quarantined replicas to the master"
                );
                Ok(())
            }
            // Registering reports every quarantined replica again.
            MasterResponse::Error(error) if error.kind == ErrorKind::UnknownMinion => {
                self.register_again(error)
            }
            MasterResponse::Error(error) => {
                // Not retried: the master would refuse it again. It learns
                // of them when this minion registers next.
                tracing::warn!(
                    count = replicas.len(),
                    "the master did not take a report of quarantined replicas: {error}"
                );
                Ok(())
            }
            other => Err(unexpected("ReportBadReplicas", &other)),
        }
    }

    /// Registers again after the master answered `UnknownMinion`; while
    /// registering (the master forgot us again meanwhile), the next round
    /// tries again.
    fn register_again(&mut self, error: msg::RemoteError) -> Result<(), Failure> {
        if !self.registered {
            return Err(Failure::Retry(Error::Remote(error)));
        }
        tracing::info!("the master forgot this minion ({error}); registering again");
        self.registered = false;
        self.register()
    }

    /// Carries out one command of the master's.
    fn execute(&mut self, command: MinionCommand) {
        match command {
            MinionCommand::Delete { replicas } => {
                // A slow deletion (a busy disk, a long round) lets copies
                // land before it: fault tests stretch that here.
                dfs_engine::failpoint::hit("delete-delay");
                let mut removed = 0;
                for replica in &replicas {
                    match self.store.remove(*replica) {
                        Ok(true) => removed += 1,
                        Ok(false) => {}
                        Err(error) => tracing::warn!(%replica, "delete: {error}"),
                    }
                }
                tracing::info!(
                    asked = replicas.len(),
                    removed,
                    "deleted replicas the master no longer wants here"
                );
            }
            MinionCommand::Replicate { replica, targets } => {
                // The master named the pipeline over a connection that
                // proved the cluster key; the token says so to its members.
                let token = self.config.key.clone().map_or_else(Vec::new, |key| {
                    TokenKeys::new(key).mint_write(
                        REPLICATION_USER,
                        replica.replica(),
                        &targets,
                        dfs_engine::rpc::now_ms(),
                    )
                });
                self.replicator.submit(CopyJob {
                    replica,
                    targets,
                    token,
                });
            }
        }
    }

    /// Registers, remembers the cluster, and sends the full block report.
    fn register(&mut self) -> Result<(), Failure> {
        let usage = self.store.usage()?;
        let request = MasterRequest::Register {
            minion: self.identity.minion(),
            cluster: self.identity.cluster(),
            address: self.config.advertised.clone(),
            capacity_bytes: usage.capacity_bytes,
            used_bytes: usage.used_bytes,
            available_bytes: usage.available_bytes,
        };
        let (cluster, interval_ms) = match self.call(request)? {
            MasterResponse::Registered {
                cluster,
                heartbeat_interval_ms,
            } => (cluster, heartbeat_interval_ms),
            MasterResponse::Error(error)
                if matches!(
                    error.kind,
                    ErrorKind::WrongCluster | ErrorKind::DuplicateMinion
                ) =>
            {
                return Err(Failure::Fatal(Error::Remote(error)));
            }
            MasterResponse::Error(error) => return Err(Failure::Retry(Error::Remote(error))),
            other => return Err(unexpected("Register", &other)),
        };
        if let Some(known) = self.identity.cluster() {
            if known != cluster {
                return Err(Failure::Fatal(Error::Invalid(format!(
                    "the master registered this minion in cluster {cluster}, but its data directories belong to cluster {known}"
                ))));
            }
        }
        self.identity.set_cluster(cluster)?;
        // Beat at least as often as the master expects.
        if interval_ms > 0 {
            self.interval = self.config.interval.min(Duration::from_millis(interval_ms));
        }
        // Every failed directory is announced before the full report
        // (which covers everything sealed so far), and every quarantined
        // replica is reported bad after it.
        let _ = self.store.take_failed_directories();
        let _ = self.store.take_bad();
        let failures = self.store.failed_directories();
        self.announce_failed_directories(&failures)?;
        let count = self.full_report()?;
        let quarantined = quarantined_replicas(&self.store);
        for replicas in quarantined.chunks(BAD_REPLICAS_PER_REPORT_MAX) {
            self.report_bad_replicas(replicas)?;
        }
        self.registered = true;
        tracing::info!(
            minion = %self.identity.minion(),
            %cluster,
            blocks = count,
            master = %self.config.master,
            "registered with the master"
        );
        Ok(())
    }

    /// Sends the list of every block here; returns how many.
    fn full_report(&mut self) -> Result<usize, Failure> {
        // A report that is late (a slow disk to list, a busy master) leaves
        // the master with what it knew of this minion before: fault tests
        // stretch that window here.
        dfs_engine::failpoint::hit("block-report-delay");
        // Blocks sealed before the listing are in it. Their incremental
        // reports must not follow it: one of a block in a directory that
        // failed since would put back the location the report removes.
        // Deletions stay queued: the master waits for them.
        self.store.forget_stored_changes();
        let blocks = self.store.list_for_report()?;
        for (blocks, first, last) in report_frames(&blocks, BLOCK_REPORT_IDS_MAX) {
            let request = MasterRequest::BlockReport {
                minion: self.identity.minion(),
                blocks: blocks.to_vec(),
                first,
                last,
            };
            match self.call(request)? {
                MasterResponse::Ok => {}
                MasterResponse::Error(error) => return Err(Failure::Retry(Error::Remote(error))),
                other => return Err(unexpected("BlockReport", &other)),
            }
        }
        Ok(blocks.len())
    }

    /// Sends one request on the kept connection, opening it when needed.
    fn call(&mut self, request: MasterRequest) -> Result<MasterResponse> {
        // A kept connection the master closed (idle, or to make room for
        // another) is replaced before a request is lost on it.
        if self
            .connection
            .as_mut()
            .is_some_and(|connection| !connection.is_quiet())
        {
            self.connection = None;
        }
        let connection = match &mut self.connection {
            Some(connection) => connection,
            None => {
                let mut connection = match &self.config.key {
                    // With a key, the proofs and all after them go over TLS.
                    Some(_) => Connection::open_tls(
                        &self.config.master,
                        Duration::from_millis(CONNECT_TIMEOUT_MS),
                        Duration::from_millis(IO_TIMEOUT_MS),
                    )?,
                    None => Connection::open(&self.config.master)?,
                };
                if let Some(key) = &self.config.key {
                    prove_membership(
                        &mut connection,
                        &self.credentials,
                        key,
                        self.identity.minion(),
                    )?;
                }
                self.connection.insert(connection)
            }
        };
        connection.call(&self.credentials, request)
    }
}

/// Proves on `connection` that this minion holds the cluster key, after
/// checking the master's proof that it does (`dfs_engine::auth`).
fn prove_membership(
    connection: &mut Connection,
    credentials: &Credentials,
    key: &ClusterKey,
    minion: MinionId,
) -> Result<()> {
    let nonce: [u8; NONCE_BYTES] = random_bytes()?;
    let challenge = connection.call(
        credentials,
        MasterRequest::Authenticate {
            minion,
            nonce: nonce.to_vec(),
        },
    )?;
    let (master_nonce, proof) = match challenge {
        MasterResponse::Challenge { nonce, proof } => (nonce, proof),
        MasterResponse::Error(error) => return Err(Error::Remote(error)),
        other => {
            return Err(Error::Protocol(format!(
                "the master answered Authenticate with {other:?}"
            )))
        }
    };
    let master_nonce = bind_challenge(&master_nonce, connection.binding(), connection.address())?;
    if !key.is_master_proof(&proof, minion, &nonce, &master_nonce) {
        return Err(Error::Invalid(format!(
            "the master at {} does not prove this cluster's key: refusing to serve it",
            connection.address()
        )));
    }
    let answer = connection.call(
        credentials,
        MasterRequest::ProveMember {
            proof: key.minion_proof(minion, &nonce, &master_nonce).to_vec(),
        },
    )?;
    match answer {
        MasterResponse::Ok => Ok(()),
        MasterResponse::Error(error) => Err(Error::Remote(error)),
        other => Err(Error::Protocol(format!(
            "the master answered ProveMember with {other:?}"
        ))),
    }
}

/// Every quarantined replica, as a report of a bad one.
fn quarantined_replicas(store: &Store) -> Vec<QuarantinedReplica> {
    store
        .block_store()
        .quarantined()
        .into_iter()
        .map(|stored| QuarantinedReplica {
            replica: stored.replica(),
            reason: "quarantined after it failed verification".into(),
        })
        .collect()
}

fn unexpected(request: &str, response: &MasterResponse) -> Failure {
    let name = format!("{response:?}");
    let name = name.split(['(', ' ', '{']).next().unwrap_or_default();
    Failure::Retry(Error::Protocol(format!(
        "the master answered {request} with {name}"
    )))
}

/// Cuts a block report into frames of at most `ids_max` ids, flagging the
/// first and the last. An empty report is one empty frame.
pub fn report_frames<T>(blocks: &[T], ids_max: usize) -> impl Iterator<Item = (&[T], bool, bool)> {
    let ids_max = ids_max.max(1);
    let frame_count = blocks.len().div_ceil(ids_max).max(1);
    (0..frame_count).map(move |index| {
        let start = (index * ids_max).min(blocks.len());
        let end = (start + ids_max).min(blocks.len());
        (&blocks[start..end], index == 0, index + 1 == frame_count)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_reports_are_cut_into_flagged_frames() {
        use dfs_engine::msg::BlockId;
        let blocks: Vec<BlockId> = (0..7).map(BlockId).collect();
        let check = |count: usize, ids_max: usize, expected: &[(usize, bool, bool)]| {
            let frames: Vec<(usize, bool, bool)> = report_frames(&blocks[..count], ids_max)
                .map(|(ids, first, last)| (ids.len(), first, last))
                .collect();
            assert_eq!(frames, expected, "{count} ids, {ids_max} per frame");
            let ids: Vec<BlockId> = report_frames(&blocks[..count], ids_max)
                .flat_map(|(ids, _, _)| ids.iter().copied())
                .collect();
            assert_eq!(ids, &blocks[..count]);
        };
        check(0, 3, &[(0, true, true)]);
        check(1, 3, &[(1, true, true)]);
        check(3, 3, &[(3, true, true)]);
        check(4, 3, &[(3, true, false), (1, false, true)]);
        check(
            7,
            3,
            &[(3, true, false), (3, false, false), (1, false, true)],
        );
        check(
            7,
            1,
            &[
                (1, true, false),
                (1, false, false),
                (1, false, false),
                (1, false, false),
                (1, false, false),
                (1, false, false),
                (1, false, true),
            ],
        );
    }

    #[test]
    fn a_stop_wakes_a_waiting_thread() {
        let stop = StopSignal::new();
        assert!(!stop.wait(Duration::from_millis(1)));
        let waiter = {
            let stop = stop.clone();
            thread::spawn(move || stop.wait(Duration::from_secs(60)))
        };
        stop.stop();
        assert!(waiter.join().expect("waiter"));
        assert!(stop.is_stopped());
    }
}
