//! The master's request handling: turns requests into namespace ops and
//! registry updates, journals every op before it is acknowledged, and
//! answers. Lookups take the namespace read lock and never wait for a flush;
//! changes take the write lock to apply and append, then wait for the flush
//! that covers them outside it, so concurrent changes share one flush. A
//! batch of a client's changes is applied under one hold of the lock and
//! answered after one wait, for the highest sequence it produced.
//! Transport-free, so tests drive it directly.
//!
//! A change is visible to lookups from the moment it is applied, a little
//! before it is durable (as in HDFS); what is acknowledged is durable.

use dfs_engine::sync;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::{Duration, Instant};

use dfs_engine::limits::{
    ADDRESS_BYTES_MAX, BAD_REPLICAS_PER_REPORT_MAX, BATCH_REQUESTS_MAX, BLOCK_REPORT_IDS_MAX,
    CHECKPOINTS_KEPT, CONTROL_FRAME_BYTES_MAX, ERROR_MESSAGE_BYTES_MAX, LIST_ENTRIES_MAX,
    PATH_BYTES_MAX, REPLICATION_MAX, STORED_BLOCKS_PER_REPORT_MAX,
};
use dfs_engine::limits::{GET_BLOCKS_PAGE_MAX, PATCH_RANGES_MAX};
use dfs_engine::msg::{
    AllocatedBlock, BadReplica, BlockCommit, BlockId, ClusterId, Credentials, Encoded, ErrorKind,
    Generation, LocatedBlock, MasterRequest, MasterResponse, MinionAddress, MinionId, MinionState,
    RemoteError, ReplicaChange, ReplicaId, StoredBlock,
};
use dfs_engine::path::DfsPath;
use dfs_engine::rpc::now_ms;
use dfs_engine::tls::{DataAuthority, BINDING_BYTES};
use dfs_engine::token::TokenKeys;
use dfs_engine::{Error, IoContext, Result};

use crate::checkpoint::{self, DataDir};
use crate::events::{Event, EventLog};
use crate::fsck::{self, PageLimits};
use crate::journal::{self, Journal, JournalConfig, Stop};
use crate::members::{self, Members};
use crate::metrics::{self, Metrics};
use crate::namespace::{
    access::{self, AttributeWish},
    check_file_parameters, Applied, BlockRecord, BlockTarget, Caller, Namespace, Op, WriteId,
};
use crate::recovery::{self, decode_op, encode_op, RecoveryOptions};
use crate::registry::{cut, place, Capacity, Liveness, Marked, Minion, Registry};
use crate::release::{DurableGate, Freed};
use crate::replication::{Healer, PlanSummary};
use crate::safe_mode::{Progress, SafeMode};
use crate::sessions::Sessions;

/// Settings of a master.
#[derive(Clone, Debug)]
pub struct MasterConfig {
    pub default_replication: u8,
    pub default_block_bytes: u64,
    pub heartbeat_interval: Duration,
    pub stale_after: Duration,
    pub dead_after: Duration,
    /// Size of new journal segments.
    pub journal_segment_bytes: u64,
    /// Journal bytes past the newest checkpoint that start a background checkpoint.
    pub checkpoint_journal_bytes: u64,
    /// How long a write left open by the previous run may be taken up again.
    pub orphaned_write_timeout: Duration,
    /// Keep the valid prefix of a damaged journal instead of refusing to start.
    pub recover: bool,
    /// How long a reported block nothing references is kept before its
    /// minion is told to delete it.
    pub orphan_grace: Duration,
    /// How long a re-replication may take before it is planned again.
    pub replication_timeout: Duration,
    /// How long a starting master waits for block reports at most before
    /// it answers lookups as final (`safe_mode`).
    pub safe_mode_timeout: Duration,
    /// How long a lock session lasts unrenewed (`sessions`).
    pub lock_lease: Duration,
    /// Members of this group (and `root`) are the superuser: every
    /// permission check passes, and `dfs admin` commands are theirs.
    pub admin_group: String,
    /// The cluster key minions must prove (`members`); None: any
    /// connection may speak for any minion (an insecure cluster).
    pub cluster_key: Option<dfs_engine::auth::ClusterKey>,
    /// With a key, serve clients that prove no identity as they assert
    /// (`--insecure`); without a key every client is.
    pub anonymous_clients: bool,
    /// Clients send block data only over TLS (`--tls-data`; needs a key).
    pub tls_data: bool,
}

/// The cluster's admin group when `--admin-group` does not name one.
pub const ADMIN_GROUP_DEFAULT: &str = "dfsadmin";

/// How long the master waits to see whether a minion's old address still
/// answers before it lets a restarted minion take over its id.
const TAKEOVER_PROBE_TIMEOUT_MS: u64 = 1000;
/// How often the maintenance thread looks at the journal size and at
/// orphaned writes.
const MAINTENANCE_INTERVAL_MS: u64 = 100;
/// Every how many maintenance rounds the events (`events`) are looked for:
/// once a second.
const EVENT_ROUNDS: u64 = 10;

/// Least time between two rounds of the replication monitor when landed
/// copies wake it early: a round takes the locks for a while.
const REPLICATION_ROUND_SPACING_MS: u64 = 100;

/// How long a failed background checkpoint waits before the next try.
const CHECKPOINT_RETRY_MS: u64 = 10_000;

/// Identifies a client connection, so its open writes end with it.
pub type ConnectionId = u64;

/// Most bytes the length prefix of one encoded batch entry takes: a varint
/// (7 bits to a byte) of the entry's length, which is less than a control
/// frame of 4 MiB (2^22 bytes), so 4 bytes cover it (checked below).
const BATCH_ENTRY_PREFIX_BYTES_MAX: usize = 4;

// The answer to a full batch fits one control frame: every entry an error
// of the longest message, or a first block with the longest pipeline of the
// longest addresses and its write token (plus slack for ids and lengths),
// each behind its entry's length prefix.
const _: () = assert!(
    BATCH_REQUESTS_MAX * (ERROR_MESSAGE_BYTES_MAX + 16 + BATCH_ENTRY_PREFIX_BYTES_MAX)
        < CONTROL_FRAME_BYTES_MAX as usize
);
const _: () = assert!(
    BATCH_REQUESTS_MAX
        * ((REPLICATION_MAX as usize) * (ADDRESS_BYTES_MAX + 16)
            + dfs_engine::token::TOKEN_BYTES_MAX
            + 64
            + BATCH_ENTRY_PREFIX_BYTES_MAX)
        < CONTROL_FRAME_BYTES_MAX as usize
);
const _: () = assert!(CONTROL_FRAME_BYTES_MAX < 1 << (7 * BATCH_ENTRY_PREFIX_BYTES_MAX));

/// Who asks for a change, and when: the same for every request of a batch,
/// so each is applied as if it came alone on that connection.
struct ChangeContext {
    connection: ConnectionId,
    owner: String,
    group: String,
    /// Who the change is made for, for the permission checks.
    caller: Caller,
    now: Instant,
    time_ms: u64,
}

impl ChangeContext {
    fn new(
        connection: ConnectionId,
        credentials: &Credentials,
        admin_group: &str,
    ) -> ChangeContext {
        let caller = caller_of(credentials, admin_group);
        ChangeContext {
            connection,
            owner: caller.user.clone(),
            group: caller.primary_group().to_string(),
            caller,
            now: Instant::now(),
            time_ms: now_ms(),
        }
    }
}

/// The pipeline a `same_pipeline` batch gives the first blocks of its
/// `OpenWrite`s: the one chosen for the first of them, so the client can
/// write all those blocks to the same minions in one exchange.
#[derive(Default)]
struct SharedPipeline {
    /// The replication the first allocation asked for and what it chose.
    first: Option<(u8, Vec<MinionAddress>)>,
}

impl SharedPipeline {
    /// The targets to reuse for a first block of `replication`, if any:
    /// a write asking another replication gets its own pipeline.
    fn targets_for(&self, replication: u8) -> Option<&[MinionAddress]> {
        match &self.first {
            Some((chosen_for, targets)) if *chosen_for == replication => Some(targets),
            _ => None,
        }
    }

    /// Keeps the first allocation of the batch; later ones change nothing.
    fn remember(&mut self, replication: u8, targets: &[MinionAddress]) {
        if self.first.is_none() {
            self.first = Some((replication, targets.to_vec()));
        }
    }
}

struct NamespaceState {
    namespace: Namespace,
    /// Which connection owns each open write (a lease that ends with the connection).
    write_owners: HashMap<WriteId, ConnectionId>,
    /// Writes found open at start-up, owned by nobody: the first connection
    /// that names one takes it up; at the deadline it is aborted.
    orphans: HashMap<WriteId, Instant>,
}

struct RegistryState {
    registry: Registry,
    random_state: u64,
    /// Copies and deletions for minions; shares the registry's lock since
    /// every decision reads the block map.
    healer: Healer,
}

/// xorshift64*: placement needs spread, not secrecy.
fn next_random(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// Background checkpoints' bookkeeping; its lock also keeps two
/// checkpoints from being written at once.
struct Checkpoints {
    /// Sequence of the newest checkpoint on disk.
    newest_sequence: u64,
    /// `journal_bytes()` when that checkpoint was taken.
    journal_bytes_mark: u64,
    /// After a failed background checkpoint, the next try waits until then.
    retry_at: Option<Instant>,
}

pub struct Master {
    config: MasterConfig,
    data_dir: DataDir,
    cluster: ClusterId,
    namespace: RwLock<NamespaceState>,
    registry: Mutex<RegistryState>,
    journal: Arc<Journal>,
    checkpoints: Mutex<Checkpoints>,
    /// Journal bytes replayed at start-up (not yet in a checkpoint).
    replayed_bytes: u64,
    /// The sequence the first record of this run got.
    first_sequence: u64,
    stopping: AtomicBool,
    /// Set when a copy landed, so the replication monitor plans the next
    /// one without waiting out its period.
    replan: (Mutex<bool>, Condvar),
    /// Replicas freed by ops (and orphans found) that may be deleted once
    /// the journal is durable past them. Taken innermost: never held while
    /// another of the master's locks is taken.
    frees: Mutex<DurableGate>,
    safe_mode: SafeMode,
    /// Lock sessions, the lock table and the files sessions hold open:
    /// soft state, taken alone or inside the namespace lock (a delete asks
    /// which files are held), never around another of the master's locks.
    sessions: Mutex<Sessions>,
    /// Until then, files kept open in the namespace with no holder are
    /// kept: mounts of the last run hold theirs again in new sessions.
    sustain_grace_until: Instant,
    /// Which connection speaks for which minion: taken alone.
    members: Mutex<Members>,
    /// The authority the minions' certificates are signed by (with a
    /// key), whose certificate clients ask for (`DataTrust`).
    data_authority: Option<DataAuthority>,
    /// Mints block access tokens, when the cluster has a key.
    tokens: Option<TokenKeys>,
    /// Counters and histograms for `/metrics` (`render_metrics`).
    metrics: Metrics,
}

fn parse_path(path: &str) -> Result<DfsPath, RemoteError> {
    DfsPath::parse(path).map_err(|e| RemoteError::new(ErrorKind::InvalidArgument, e.to_string()))
}

/// Refuses what only the superuser may do to anyone else.
fn check_superuser(caller: &Caller, what: &str) -> Result<(), RemoteError> {
    if caller.superuser {
        return Ok(());
    }
    Err(RemoteError::new(
        ErrorKind::PermissionDenied,
        format!(
            "{}: may not {what}: that is for root and the cluster's admin group",
            caller.user
        ),
    ))
}

/// The user `credentials` name, with their groups (the first is the
/// primary one, which new entries get).
fn caller_of(credentials: &Credentials, admin_group: &str) -> Caller {
    let (owner, group) = owner_and_group(credentials);
    let mut groups = vec![group];
    groups.extend(credentials.groups.iter().skip(1).cloned());
    Caller::new(&owner, &groups, admin_group)
}

fn owner_and_group(credentials: &Credentials) -> (String, String) {
    let owner = if credentials.user.is_empty() {
        "nobody".to_string()
    } else {
        credentials.user.clone()
    };
    let group = credentials
        .groups
        .first()
        .cloned()
        .unwrap_or_else(|| owner.clone());
    (owner, group)
}

fn journal_error(error: Error) -> RemoteError {
    match error {
        Error::Invalid(message) => RemoteError::new(ErrorKind::InvalidArgument, message),
        other => RemoteError::new(ErrorKind::Io, other.to_string()),
    }
}

impl Master {
    /// Opens (and locks) the data directory, rebuilds the namespace from the
    /// newest checkpoint and the journal (or starts a new cluster), and opens
    /// the journal for appending.
    pub fn open(data: &Path, config: MasterConfig) -> Result<Master> {
        let options = RecoveryOptions {
            recover: config.recover,
        };
        let started = Instant::now();
        let (data_dir, recovered) = recovery::open(data, options)?;
        let journal = Journal::open(
            data_dir.path(),
            JournalConfig {
                segment_bytes: config.journal_segment_bytes,
            },
            recovered.append.clone(),
        )?;
        tracing::info!(
            cluster = %recovered.cluster,
            checkpoint_sequence = recovered.checkpoint_sequence,
            replayed_records = recovered.replayed_records,
            last_sequence = recovered.last_sequence,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "loaded namespace from {}",
            data_dir.path().display()
        );
        let orphan_deadline = Instant::now() + config.orphaned_write_timeout;
        let orphans: HashMap<WriteId, Instant> = recovered
            .namespace
            .open_writes()
            .map(|(write, _)| (*write, orphan_deadline))
            .collect();
        if !orphans.is_empty() {
            tracing::info!(
                count = orphans.len(),
                "writes left open by the previous run: a client may take them up within {:?}, then they are aborted",
                config.orphaned_write_timeout
            );
        }
        let liveness = Liveness {
            stale_after: config.stale_after,
            dead_after: config.dead_after,
        };
        let mut registry = Registry::new(recovered.cluster, liveness);
        for &minion in recovered.namespace.draining() {
            registry.set_draining(minion, true);
        }
        if !recovered.namespace.draining().is_empty() {
            let ids: Vec<String> = recovered
                .namespace
                .draining()
                .iter()
                .map(MinionId::to_string)
                .collect();
            tracing::info!("minions being decommissioned: {}", ids.join(", "));
        }
        // The wait for block reports starts once the namespace is loaded.
        let safe_mode = SafeMode::new(Instant::now(), config.safe_mode_timeout);
        let mut sessions = Sessions::new(config.lock_lease);
        if recovered.last_sequence > 0 {
            // A restart: mounts take their locks again first.
            sessions.start_grace(Instant::now() + config.lock_lease);
        }
        let sessions = Mutex::new(sessions);
        let sustain_grace_until = Instant::now() + 2 * config.lock_lease;
        let members = Mutex::new(Members::new(
            config.cluster_key.clone(),
            config.anonymous_clients,
        ));
        let tokens = config.cluster_key.clone().map(TokenKeys::new);
        let data_authority = config
            .cluster_key
            .as_ref()
            .map(DataAuthority::derive)
            .transpose()?;
        Ok(Master {
            cluster: recovered.cluster,
            namespace: RwLock::new(NamespaceState {
                namespace: recovered.namespace,
                write_owners: HashMap::new(),
                orphans,
            }),
            registry: Mutex::new(RegistryState {
                registry,
                random_state: dfs_engine::rpc::random_u64()? | 1,
                healer: Healer::new(config.replication_timeout, config.orphan_grace),
            }),
            metrics: Metrics::new(journal.flush_metrics().clone()),
            journal,
            checkpoints: Mutex::new(Checkpoints {
                newest_sequence: recovered.checkpoint_sequence,
                journal_bytes_mark: 0,
                retry_at: None,
            }),
            replayed_bytes: recovered.replayed_bytes,
            first_sequence: recovered.last_sequence + 1,
            config,
            data_dir,
            stopping: AtomicBool::new(false),
            replan: (Mutex::new(false), Condvar::new()),
            frees: Mutex::new(DurableGate::default()),
            safe_mode,
            sustain_grace_until,
            sessions,
            members,
            data_authority,
            tokens,
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, NamespaceState> {
        // A panic while holding the lock would leave the namespace unknown:
        // the process aborts instead (see `dfs_engine::sync`).
        sync::read(&self.namespace)
    }

    fn write(&self) -> RwLockWriteGuard<'_, NamespaceState> {
        sync::write(&self.namespace)
    }

    fn registry(&self) -> MutexGuard<'_, RegistryState> {
        sync::lock(&self.registry)
    }

    fn checkpoints(&self) -> MutexGuard<'_, Checkpoints> {
        sync::lock(&self.checkpoints)
    }

    pub fn cluster(&self) -> ClusterId {
        self.cluster
    }

    /// The master's metrics, for the server to count connections.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Every metric in the text exposition format, the minion counts taken
    /// from the registry now (one short hold of its lock).
    pub fn render_metrics(&self) -> String {
        let minions = self.registry().registry.reports(Instant::now());
        self.metrics.render_with(&minions)
    }

    /// Why the master is still in safe mode (`safe_mode`), if it is; the
    /// caller holds the namespace (read) and registry locks.
    fn starting(&self, now: Instant, namespace: &Namespace, registry: &Registry) -> Option<String> {
        self.safe_mode.check(now, || {
            let (reported_minions, joining_minions) = registry.report_counts(now);
            Progress {
                committed_blocks: namespace.committed_block_count(),
                located_blocks: registry.located_block_count(),
                reported_minions,
                joining_minions,
            }
        })
    }

    /// True once safe mode is over.
    pub fn is_started(&self) -> bool {
        self.safe_mode.is_over()
    }

    /// Applies `op` and appends it to the journal; returns its sequence, to
    /// wait for once the lock is released. Nothing changes if the op is
    /// invalid or the journal refuses changes.
    fn change(&self, state: &mut NamespaceState, op: &Op) -> Result<u64, RemoteError> {
        let payload = encode_op(op).map_err(journal_error)?;
        journal::check_payload(&payload).map_err(journal_error)?;
        self.journal.check_writable().map_err(journal_error)?;
        let Applied { freed_blocks } = state.namespace.apply(op)?;
        // A bug here (a panic) leaves the namespace changed but unjournaled:
        // the process aborts rather than serve it (`dfs_engine::sync`).
        dfs_engine::failpoint::hit("change-applied");
        // Only a flush failing in between makes this fail; the journal is
        // poisoned then and the change is never acknowledged.
        let sequence = self.journal.append(&payload).map_err(journal_error)?;
        // The registry mirrors the logged decommissioning intent.
        match op {
            Op::Decommission { minion } => {
                self.registry().registry.set_draining(*minion, true);
                self.request_replan();
            }
            Op::Recommission { minion } => {
                self.registry().registry.set_draining(*minion, false);
                self.request_replan();
            }
            _ => {}
        }
        // Deleted on minions only once this op is durable: a crash before
        // would bring the file back without its blocks.
        sync::lock(&self.frees).hold(
            sequence,
            freed_blocks.into_iter().map(Freed::Block).collect(),
        );
        Ok(sequence)
    }

    /// Hands the replicas whose freeing ops are durable to the healer: the
    /// holders hear at their next heartbeat. A copy nobody knew of (an
    /// unreported pipeline member) shows up in a report later and goes as
    /// an orphan.
    pub fn release_durable(&self) {
        let durable = self.journal.durable_sequence();
        let released = sync::lock(&self.frees).release(durable);
        if released.is_empty() {
            return;
        }
        let mut registry = self.registry();
        let registry = &mut *registry;
        for freed in released {
            match freed {
                Freed::Block(replica) => {
                    let holders = registry.registry.forget_block(replica.block);
                    registry.healer.block_freed(replica, &holders);
                }
                Freed::Orphan(minion, replica) => {
                    tracing::info!(%minion, %replica, "orphan replica: telling its minion to delete it");
                    registry.healer.queue_delete(minion, replica);
                }
            }
        }
    }

    /// Writes the whole namespace as a checkpoint and keeps the namespace
    /// locked for good: no change is made after this returns, so the process
    /// can exit with the checkpoint as its last word. The journal is then
    /// only needed by the older checkpoint kept beside it.
    pub fn checkpoint_and_freeze(&self) -> Result<()> {
        self.stopping.store(true, Ordering::Release);
        let state = self.write();
        let result = (|| {
            let sequence = self.journal.appended_sequence();
            // Poisoned: the in-memory state may hold changes the disk lost
            // track of; the journal on disk is the truth for the next start.
            self.journal.wait_durable(sequence)?;
            let mut checkpoints = self.checkpoints();
            if checkpoints.newest_sequence != sequence {
                checkpoint::store(
                    self.data_dir.path(),
                    self.cluster,
                    sequence,
                    &state.namespace,
                )?;
                checkpoints.newest_sequence = sequence;
                self.metrics.checkpoint_written();
            }
            checkpoint::remove_obsolete(
                self.data_dir.path(),
                CHECKPOINTS_KEPT,
                Some(self.journal.active_segment_first()),
            )
        })();
        self.journal.close();
        let records = (self.journal.appended_sequence() + 1).saturating_sub(self.first_sequence);
        tracing::info!(
            records,
            flushes = self.journal.flushes(),
            "journal: {records} records appended in {} flushes since start",
            self.journal.flushes()
        );
        std::mem::forget(state);
        result
    }

    /// Journal bytes not yet covered by a checkpoint, roughly.
    fn journal_bytes(&self) -> u64 {
        self.replayed_bytes + self.journal.appended_bytes()
    }

    /// Writes a checkpoint of the durable journal without touching the live
    /// namespace: the newest checkpoint on disk plus the durable records
    /// after it, replayed into a copy. Writers go on meanwhile.
    pub fn checkpoint_in_background(&self) -> Result<Option<u64>> {
        let mut checkpoints = self.checkpoints();
        let target = self.journal.durable_sequence();
        if target <= checkpoints.newest_sequence || self.stopping.load(Ordering::Acquire) {
            return Ok(None);
        }
        let mark = self.journal_bytes();
        let started = Instant::now();
        let dir = self.data_dir.path();
        let newest = checkpoint::list(dir)?
            .into_iter()
            .find(|(sequence, _)| *sequence == checkpoints.newest_sequence)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "checkpoint of sequence {} vanished",
                    checkpoints.newest_sequence
                ))
            })?;
        let mut base = checkpoint::load(&newest.1)?;
        replay_durable(dir, &mut base.namespace, base.last_sequence, target)?;
        checkpoint::store(dir, self.cluster, target, &base.namespace)?;
        self.metrics.checkpoint_written();
        checkpoints.newest_sequence = target;
        checkpoints.journal_bytes_mark = mark;
        checkpoints.retry_at = None;
        checkpoint::remove_obsolete(
            dir,
            CHECKPOINTS_KEPT,
            Some(self.journal.active_segment_first()),
        )?;
        tracing::info!(
            sequence = target,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "background checkpoint written"
        );
        Ok(Some(target))
    }

    /// Starts the thread that writes background checkpoints and aborts
    /// orphaned writes whose time is up. It ends with the master.
    pub fn spawn_maintenance(master: &Arc<Master>) -> Result<()> {
        let weak: Weak<Master> = Arc::downgrade(master);
        let mut events = EventLog::default();
        let mut rounds: u64 = 0;
        std::thread::Builder::new()
            .name("maintenance".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis(MAINTENANCE_INTERVAL_MS));
                let Some(master) = weak.upgrade() else {
                    return;
                };
                if master.stopping.load(Ordering::Acquire) {
                    return;
                }
                rounds += 1;
                if rounds.is_multiple_of(EVENT_ROUNDS) {
                    master.log_events(&mut events, Instant::now());
                }
                master.abort_expired_orphans(Instant::now());
                master.release_unheld(Instant::now());
                master.release_durable();
                let due = {
                    let checkpoints = master.checkpoints();
                    let grown = master
                        .journal_bytes()
                        .saturating_sub(checkpoints.journal_bytes_mark);
                    grown >= master.config.checkpoint_journal_bytes
                        && checkpoints.retry_at.is_none_or(|at| Instant::now() >= at)
                };
                if due && !master.journal.is_poisoned() {
                    if let Err(e) = master.checkpoint_in_background() {
                        tracing::error!(
                            "background checkpoint failed, next try in {CHECKPOINT_RETRY_MS} ms: {e}"
                        );
                        master.checkpoints().retry_at =
                            Some(Instant::now() + Duration::from_millis(CHECKPOINT_RETRY_MS));
                    }
                }
            })
            .context("spawn maintenance thread")?;
        Ok(())
    }

    /// Logs the minions' state changes since the last look (`events`):
    /// going stale, dead or back. (Healing's start and end are logged by
    /// the replication monitor, from every round.)
    fn log_events(&self, events: &mut EventLog, now: Instant) {
        let minions: Vec<(MinionId, String, MinionState)> = self
            .registry()
            .registry
            .reports(now)
            .into_iter()
            .map(|report| (report.id, report.address, report.state))
            .collect();
        for event in events.minions(&minions) {
            match &event {
                Event::Minion {
                    to: MinionState::Dead | MinionState::Stale,
                    ..
                } => tracing::warn!("{event}"),
                _ => tracing::info!("{event}"),
            }
        }
    }

    /// After a write was closed (whole or as a patch) as journal sequence
    /// `sequence`: its owner is forgotten and the modification time asked
    /// for is set; returns the sequence to wait for.
    fn closed(
        &self,
        state: &mut NamespaceState,
        write: WriteId,
        path: String,
        modified_ns: Option<u64>,
        time_ms: u64,
        sequence: u64,
    ) -> Result<u64, RemoteError> {
        state.write_owners.remove(&write);
        let Some(modified_ns) = modified_ns else {
            return Ok(sequence);
        };
        let op = Op::SetAttributes {
            path,
            mode: None,
            owner: None,
            group: None,
            modified_ns: Some(modified_ns),
            accessed_ns: None,
            time_ms,
        };
        self.change(state, &op)
    }

    /// Journals `op`, which opens a write (`Op::OpenWrite` or
    /// `Op::OpenInodeWrite`), for the connection of `context`, and with
    /// `first_block` allocates the write's first block (to the pipeline a
    /// `same_pipeline` batch remembers): answered `WriteOpened`.
    fn open_write(
        &self,
        state: &mut NamespaceState,
        context: &ChangeContext,
        op: &Op,
        first_block: Option<Option<&mut SharedPipeline>>,
    ) -> Result<(MasterResponse, u64), RemoteError> {
        let (Op::OpenWrite {
            write,
            replication,
            block_bytes,
            ..
        }
        | Op::OpenInodeWrite {
            write,
            replication,
            block_bytes,
            ..
        }) = *op
        else {
            panic!("open_write of an op that opens no write: {op:?}");
        };
        let mut sequence = self.change(state, op)?;
        state.write_owners.insert(write, context.connection);
        let first_block = match first_block {
            Some(shared) => {
                // The write stays open when no minion can take the block:
                // the client may retry or abort it, as after a failed
                // `AllocateBlock`.
                let reuse = shared
                    .as_deref()
                    .and_then(|shared| shared.targets_for(replication));
                let (allocated, allocated_sequence) =
                    self.allocate(state, write, &[], context, reuse)?;
                if let Some(shared) = shared {
                    shared.remember(replication, &allocated.targets);
                }
                sequence = allocated_sequence;
                Some(allocated)
            }
            None => None,
        };
        let response = MasterResponse::WriteOpened {
            write,
            replication,
            block_bytes,
            first_block,
        };
        Ok((response, sequence))
    }

    /// Ends `Sustain` of the files no session holds open any more (closed,
    /// or their sessions expired), once the start-up grace is over: a file
    /// without names goes, its blocks freed.
    fn release_unheld(&self, now: Instant) {
        if now < self.sustain_grace_until {
            return;
        }
        let kept: Vec<u64> = self.read().namespace.sustained().collect();
        if kept.is_empty() {
            return;
        }
        let held = sync::lock(&self.sessions).held(now);
        let unheld: Vec<u64> = kept.into_iter().filter(|i| !held.contains(i)).collect();
        if unheld.is_empty() {
            return;
        }
        let mut state = self.write();
        for inode in unheld {
            if !state.namespace.is_sustained(inode) {
                continue;
            }
            if let Err(e) = self.change(&mut state, &Op::Unsustain { inode }) {
                tracing::warn!("release file {inode} kept open: {e}");
            }
        }
    }

    /// Files at `paths` (or under them) that a session holds open are kept
    /// (`Sustain`) before a change that may take their last name.
    fn sustain_held(
        &self,
        state: &mut NamespaceState,
        paths: &[&DfsPath],
    ) -> Result<(), RemoteError> {
        let held = sync::lock(&self.sessions).held(Instant::now());
        if held.is_empty() {
            return Ok(());
        }
        let files: Vec<u64> = paths
            .iter()
            .flat_map(|path| state.namespace.files_at_or_under(path))
            .filter(|inode| held.contains(inode) && !state.namespace.is_sustained(*inode))
            .collect();
        for inode in files {
            self.change(state, &Op::Sustain { inode })?;
        }
        Ok(())
    }

    /// Aborts writes of the previous run that nobody took up in time.
    fn abort_expired_orphans(&self, now: Instant) {
        if !self
            .read()
            .orphans
            .values()
            .any(|deadline| *deadline <= now)
        {
            return;
        }
        let mut state = self.write();
        let expired: Vec<WriteId> = state
            .orphans
            .iter()
            .filter(|(_, deadline)| **deadline <= now)
            .map(|(write, _)| *write)
            .collect();
        for write in expired {
            state.orphans.remove(&write);
            match self.change(&mut state, &Op::AbortWrite { write }) {
                Ok(_) => tracing::info!("aborted write {write}, left open by the previous run"),
                Err(e) => tracing::warn!("abort write {write} left by the previous run: {e}"),
            }
        }
    }

    /// True while writes opened on `connection` are open: closing it would
    /// abort them, so the server never closes it for idling.
    pub fn connection_owns_writes(&self, connection: ConnectionId) -> bool {
        self.read()
            .write_owners
            .values()
            .any(|owner| *owner == connection)
    }

    /// `connection` runs TLS with this channel binding (`members`).
    pub fn channel_opened(&self, connection: ConnectionId, binding: [u8; BINDING_BYTES]) {
        sync::lock(&self.members).channel_opened(connection, binding);
    }

    /// Ends the writes a closed connection left open.
    pub fn connection_closed(&self, connection: ConnectionId) {
        sync::lock(&self.members).closed(connection);
        let mut state = self.write();
        let orphaned: Vec<WriteId> = state
            .write_owners
            .iter()
            .filter(|(_, owner)| **owner == connection)
            .map(|(write, _)| *write)
            .collect();
        for write in orphaned {
            state.write_owners.remove(&write);
            // Not waited for: nobody is told; a crash before the flush
            // leaves the write to be aborted after the next start.
            if let Err(e) = self.change(&mut state, &Op::AbortWrite { write }) {
                tracing::warn!("abort write {write} of a closed connection: {e}");
            }
        }
    }

    /// Answers one request on `connection`, counted and timed by kind in
    /// the metrics.
    pub fn handle(
        &self,
        connection: ConnectionId,
        credentials: &Credentials,
        request: MasterRequest,
    ) -> MasterResponse {
        let op = metrics::op_name(&request);
        let started = Instant::now();
        let response = self.handle_request(connection, credentials, request);
        self.metrics.request_done(op, started.elapsed(), &response);
        response
    }

    fn handle_request(
        &self,
        connection: ConnectionId,
        credentials: &Credentials,
        request: MasterRequest,
    ) -> MasterResponse {
        match request {
            MasterRequest::Authenticate { minion, nonce } => {
                return sync::lock(&self.members)
                    .challenge(connection, minion, &nonce)
                    .unwrap_or_else(MasterResponse::Error);
            }
            MasterRequest::ProveMember { proof } => {
                return match sync::lock(&self.members).prove(connection, &proof) {
                    Ok(minion) => {
                        tracing::info!(%minion, "minion proved the cluster key on connection {connection}");
                        MasterResponse::Ok
                    }
                    Err(e) => MasterResponse::Error(e),
                };
            }
            MasterRequest::AuthenticateClient { principal, nonce } => {
                return sync::lock(&self.members)
                    .challenge_client(connection, principal, &nonce)
                    .unwrap_or_else(MasterResponse::Error);
            }
            MasterRequest::DataTrust => {
                return MasterResponse::DataTrust {
                    authority: self
                        .data_authority
                        .as_ref()
                        .map(|authority| authority.certificate())
                        .unwrap_or_default(),
                    required: self.data_authority.is_some() && self.config.tls_data,
                };
            }
            MasterRequest::ProveClient { proof } => {
                return match sync::lock(&self.members).prove_client(connection, &proof) {
                    Ok(principal) => {
                        tracing::debug!(
                            "{} proved its identity on connection {connection}",
                            members::principal_name(&principal)
                        );
                        MasterResponse::Ok
                    }
                    Err(e) => {
                        tracing::debug!(
                            "refused an identity on connection {connection}: {}",
                            e.message
                        );
                        MasterResponse::Error(e)
                    }
                };
            }
            _ => {}
        }
        let credentials = if let Some(minion) = members::speaks_for(&request) {
            if let Err(e) = sync::lock(&self.members).check(connection, minion) {
                return MasterResponse::Error(e);
            }
            std::borrow::Cow::Borrowed(credentials)
        } else {
            match sync::lock(&self.members).credentials(connection, credentials) {
                Ok(credentials) => credentials,
                Err(e) => return MasterResponse::Error(e),
            }
        };
        let credentials = credentials.as_ref();
        if let MasterRequest::Register {
            minion,
            cluster,
            address,
            capacity_bytes,
            used_bytes,
            available_bytes,
        } = request
        {
            let capacity = Capacity {
                capacity_bytes,
                used_bytes,
                available_bytes,
            };
            return match self.register(minion, cluster, &address, capacity) {
                Ok(response) => response,
                Err(e) => MasterResponse::Error(e),
            };
        }
        let outcome = if is_change(&request) {
            let (outcome, sequence) = match self.dispatch_change(connection, credentials, request) {
                Ok((response, sequence)) => (Ok(response), sequence),
                // A refusal may rest on changes not yet durable ("exists"):
                // it waits for them too.
                Err(e) => (Err(e), self.journal.appended_sequence()),
            };
            // Outside the lock: others append meanwhile and share the flush.
            let durable = self.journal.wait_durable(sequence).map_err(journal_error);
            if durable.is_ok() {
                self.release_durable();
            }
            durable.and(outcome)
        } else {
            let who = sync::lock(&self.members).principal_of(connection);
            self.dispatch_lookup(credentials, &who, request)
        };
        match outcome {
            Ok(response) => response,
            Err(e) => MasterResponse::Error(e),
        }
    }

    /// With a cluster key, a client reports a bad replica only of a block it
    /// was given to read: one replica, with that block's access token.
    fn check_client_report(
        &self,
        credentials: &Credentials,
        replicas: &[BadReplica],
    ) -> Result<(), RemoteError> {
        let Some(keys) = &self.tokens else {
            return Ok(());
        };
        let [replica] = replicas else {
            return Err(RemoteError::new(
                ErrorKind::PermissionDenied,
                format!(
                    "a client reports one bad replica at a time, with its block's access token ({} given)",
                    replicas.len()
                ),
            ));
        };
        let replica = ReplicaId {
            block: replica.block,
            generation: replica.generation,
        };
        keys.check_read(credentials, replica, now_ms())
            .map_err(|refused| {
                RemoteError::new(
                    ErrorKind::PermissionDenied,
                    format!("a report of a bad replica: {refused}"),
                )
            })
    }

    /// Registers a minion. An id that a live minion at another address holds
    /// is refused, unless that address no longer answers: then it is the same
    /// minion restarted on a new port, not a copied data directory.
    fn register(
        &self,
        minion: MinionId,
        cluster: Option<ClusterId>,
        address: &str,
        capacity: Capacity,
    ) -> Result<MasterResponse, RemoteError> {
        let first_try = self.registry().registry.register(
            minion,
            cluster,
            address,
            capacity,
            false,
            Instant::now(),
        );
        match first_try {
            Err(e) if e.kind == ErrorKind::DuplicateMinion => {
                let old = self.registry().registry.address_of(minion);
                // Probe without the lock: a connect may take a while.
                let old_answers = old.is_some_and(|old| {
                    dfs_engine::rpc::connect(&old, Duration::from_millis(TAKEOVER_PROBE_TIMEOUT_MS))
                        .is_ok()
                });
                if old_answers {
                    tracing::warn!("refused registration: {e}");
                    return Err(e);
                }
                self.registry().registry.register(
                    minion,
                    cluster,
                    address,
                    capacity,
                    true,
                    Instant::now(),
                )?;
            }
            other => other?,
        }
        tracing::info!(%minion, %address, "minion registered");
        Ok(MasterResponse::Registered {
            cluster: self.cluster(),
            heartbeat_interval_ms: self.config.heartbeat_interval.as_millis() as u64,
        })
    }

    /// Requests that change no namespace state: the read lock at most.
    /// `caller` may hold or test a lock on `inode`: it may read or write
    /// it (as it did when it opened it).
    fn check_open_inode(
        &self,
        caller: &Caller,
        inode: u64,
        wants: &[u32],
    ) -> Result<(), RemoteError> {
        self.read().namespace.check_open_inode(caller, inode, wants)
    }

    /// `caller` may take a lock of `kind` on `inode`: read access for a
    /// shared lock, write access for an exclusive one (as fcntl wants a
    /// descriptor open for them); dropping one needs neither.
    fn check_lock(
        &self,
        caller: &Caller,
        inode: u64,
        kind: Option<dfs_engine::msg::LockKind>,
    ) -> Result<(), RemoteError> {
        use dfs_engine::msg::LockKind;
        match kind {
            Some(LockKind::Read) => self.check_open_inode(caller, inode, &[access::READ]),
            Some(LockKind::Write) => self.check_open_inode(caller, inode, &[access::WRITE]),
            None => Ok(()),
        }
    }

    /// `who` names the connection's proven identity (empty without one),
    /// which owns the lock sessions it opens.
    fn dispatch_lookup(
        &self,
        credentials: &Credentials,
        who: &str,
        request: MasterRequest,
    ) -> Result<MasterResponse, RemoteError> {
        let now = Instant::now();
        // Only the lookups that check permissions need it.
        let caller = || caller_of(credentials, &self.config.admin_group);
        let response = match request {
            MasterRequest::Heartbeat {
                minion,
                capacity_bytes,
                used_bytes,
                available_bytes,
                block_count: _,
                traffic,
            } => {
                let capacity = Capacity {
                    capacity_bytes,
                    used_bytes,
                    available_bytes,
                };
                let mut registry = self.registry();
                registry
                    .registry
                    .heartbeat(minion, capacity, traffic, now)?;
                let commands = registry.healer.take_commands(minion, now);
                MasterResponse::HeartbeatAck { commands }
            }
            MasterRequest::BlockChanges { minion, changes } => {
                self.block_changes(minion, &changes, now)?;
                MasterResponse::Ok
            }
            MasterRequest::BlockReport {
                minion,
                blocks,
                first,
                last,
            } => {
                if blocks.len() > BLOCK_REPORT_IDS_MAX {
                    return Err(RemoteError::new(
                        ErrorKind::InvalidArgument,
                        format!(
                            "block report of {} ids is over the limit of {BLOCK_REPORT_IDS_MAX}",
                            blocks.len()
                        ),
                    ));
                }
                let state = self.read();
                let mut registry = self.registry();
                let registry = &mut *registry;
                let mut replicas = Vec::with_capacity(blocks.len());
                let mut unknown = 0;
                for stored in &blocks {
                    match note_reported(&state.namespace, registry, minion, stored, now) {
                        Judged::Replica => replicas.push(stored.block),
                        Judged::Early => {}
                        Judged::NotAReplica { .. } => unknown += 1,
                    }
                }
                registry.registry.block_report(minion, &replicas, first)?;
                if last {
                    registry.registry.finish_block_report(minion);
                }
                if last || unknown > 0 {
                    tracing::info!(
                        %minion,
                        blocks = blocks.len(),
                        unknown,
                        "block report"
                    );
                }
                MasterResponse::Ok
            }
            MasterRequest::Stat { path } => {
                let path = parse_path(&path)?;
                let state = self.read();
                state.namespace.check_lookup(&caller(), &path)?;
                MasterResponse::Status(state.namespace.status(&path)?)
            }
            MasterRequest::ReadLink { path } => {
                let path = parse_path(&path)?;
                let state = self.read();
                state.namespace.check_lookup(&caller(), &path)?;
                let target = state.namespace.read_link(&path)?.to_string();
                MasterResponse::LinkTarget { target }
            }
            MasterRequest::GetXattr { path, name } => {
                let path = parse_path(&path)?;
                let state = self.read();
                state
                    .namespace
                    .check_entry(&caller(), &path, access::READ)?;
                let value = state.namespace.xattr(&path, &name)?.to_vec();
                MasterResponse::XattrValue { value }
            }
            MasterRequest::ListXattrs { path } => {
                let path = parse_path(&path)?;
                let state = self.read();
                state
                    .namespace
                    .check_entry(&caller(), &path, access::READ)?;
                let names = state.namespace.xattr_names(&path)?;
                MasterResponse::XattrNames { names }
            }
            MasterRequest::OpenSession => {
                // Unpredictable: a session's id is all its requests carry.
                let drawn = u64::from_le_bytes(
                    dfs_engine::auth::random_bytes()
                        .map_err(|e| RemoteError::new(ErrorKind::Internal, e.to_string()))?,
                );
                sync::lock(&self.sessions).open(drawn, who.to_string(), Instant::now())?
            }
            MasterRequest::RenewSession { session } => {
                sync::lock(&self.sessions).check_owner(session, who)?;
                sync::lock(&self.sessions).renew(session, Instant::now())?;
                MasterResponse::Ok
            }
            MasterRequest::CloseSession { session } => {
                sync::lock(&self.sessions).check_owner(session, who)?;
                sync::lock(&self.sessions).close(session);
                MasterResponse::Ok
            }
            MasterRequest::Hold { session, inode } => {
                self.check_open_inode(&caller(), inode, &[access::READ, access::WRITE])?;
                sync::lock(&self.sessions).check_owner(session, who)?;
                sync::lock(&self.sessions).hold(session, inode, Instant::now())?;
                MasterResponse::Ok
            }
            MasterRequest::Release { session, inode } => {
                sync::lock(&self.sessions).check_owner(session, who)?;
                // A file kept open that nobody holds now goes with the
                // next maintenance round (`release_unheld`).
                sync::lock(&self.sessions).unhold(session, inode, Instant::now());
                MasterResponse::Ok
            }
            MasterRequest::Lock {
                session,
                inode,
                owner,
                kind,
                range,
            } => {
                self.check_lock(&caller(), inode, kind)?;
                let mut sessions = sync::lock(&self.sessions);
                sessions.check_owner(session, who)?;
                sessions.lock(session, inode, owner, kind, range, Instant::now())?
            }
            MasterRequest::ReclaimLock {
                session,
                inode,
                owner,
                kind,
                range,
            } => {
                self.check_lock(&caller(), inode, Some(kind))?;
                let mut sessions = sync::lock(&self.sessions);
                sessions.check_owner(session, who)?;
                sessions.reclaim(session, inode, owner, kind, range, Instant::now())?
            }
            MasterRequest::TestLock {
                session,
                inode,
                owner,
                kind,
                range,
            } => {
                self.check_open_inode(&caller(), inode, &[access::READ, access::WRITE])?;
                let mut sessions = sync::lock(&self.sessions);
                sessions.check_owner(session, who)?;
                sessions.test(session, inode, owner, kind, range, Instant::now())?
            }
            MasterRequest::ReleaseLocks {
                session,
                inode,
                owner,
            } => {
                sync::lock(&self.sessions).check_owner(session, who)?;
                sync::lock(&self.sessions).release(session, inode, owner, Instant::now())?;
                MasterResponse::Ok
            }
            MasterRequest::List {
                path,
                start_after,
                limit,
            } => {
                let path = parse_path(&path)?;
                let limit = limit.clamp(1, LIST_ENTRIES_MAX) as usize;
                let state = self.read();
                state.namespace.check_list(&caller(), &path)?;
                let (entries, more) = state.namespace.list(&path, start_after.as_deref(), limit)?;
                MasterResponse::Listing { entries, more }
            }
            MasterRequest::GetBlocks {
                path,
                offset_bytes,
                limit,
                first_index,
                inode,
            } => {
                let path = parse_path(&path)?;
                let caller = caller();
                let state = self.read();
                match inode {
                    Some(inode) => {
                        state
                            .namespace
                            .check_inode(&caller, &path, inode, access::READ)?
                    }
                    None => state.namespace.check_entry(&caller, &path, access::READ)?,
                }
                let limit = limit.clamp(1, GET_BLOCKS_PAGE_MAX) as usize;
                let page =
                    state
                        .namespace
                        .file_pieces(&path, inode, first_index, offset_bytes, limit)?;
                let minted_ms = now_ms();
                let registry = self.registry();
                let blocks = page
                    .pieces
                    .iter()
                    .map(|(extent, block)| match block {
                        Some(meta) => LocatedBlock {
                            id: meta.id,
                            generation: meta.generation,
                            offset_bytes: extent.offset_bytes,
                            length_bytes: extent.length_bytes,
                            locations: registry.registry.locations(meta.id, now),
                            crc32c: meta.crc32c,
                            block_offset_bytes: extent.block_offset_bytes,
                            block_length_bytes: meta.length_bytes,
                            token: self.tokens.as_ref().map_or_else(Vec::new, |keys| {
                                let replica = ReplicaId {
                                    block: meta.id,
                                    generation: meta.generation,
                                };
                                keys.mint_read(&caller.user, replica, minted_ms)
                            }),
                        },
                        None => LocatedBlock {
                            id: BlockId(0),
                            generation: Generation(0),
                            offset_bytes: extent.offset_bytes,
                            length_bytes: extent.length_bytes,
                            locations: Vec::new(),
                            crc32c: 0,
                            block_offset_bytes: 0,
                            block_length_bytes: 0,
                            token: Vec::new(),
                        },
                    })
                    .collect::<Vec<_>>();
                // A block without a location may only be short of reports.
                if blocks
                    .iter()
                    .any(|block| !block.is_hole() && block.locations.is_empty())
                {
                    if let Some(why) = self.starting(now, &state.namespace, &registry.registry) {
                        return Err(RemoteError::new(ErrorKind::Starting, why));
                    }
                }
                MasterResponse::Blocks {
                    status: page.status,
                    first_index: page.first_index,
                    blocks,
                    more: page.more,
                }
            }
            MasterRequest::Fsck {
                path,
                start_after,
                limit,
            } => {
                let root = parse_path(&path)?;
                let start_after = start_after.as_deref().map(parse_path).transpose()?;
                let state = self.read();
                let registry = self.registry();
                if let Some(why) = self.starting(now, &state.namespace, &registry.registry) {
                    return Err(RemoteError::new(ErrorKind::Starting, why));
                }
                let page = fsck::page(
                    &state.namespace,
                    &registry.registry,
                    &root,
                    start_after.as_ref(),
                    PageLimits::for_request(limit),
                    now,
                )?;
                MasterResponse::FsckPage {
                    files: page.files,
                    scanned_files: page.scanned_files,
                    scanned_blocks: page.scanned_blocks,
                    resume_after: page.resume_after,
                }
            }
            MasterRequest::ReportBadReplicas { reporter, replicas } => {
                if reporter.is_none() {
                    self.check_client_report(credentials, &replicas)?;
                }
                self.bad_replicas(reporter, &replicas)?;
                MasterResponse::Ok
            }
            MasterRequest::DataDirectoryFailed {
                minion,
                directory,
                reason,
            } => {
                if directory.len() > PATH_BYTES_MAX {
                    return Err(RemoteError::new(
                        ErrorKind::InvalidArgument,
                        format!("data directory name of {} bytes", directory.len()),
                    ));
                }
                let reason = cut(&reason, ERROR_MESSAGE_BYTES_MAX);
                let noted = self
                    .registry()
                    .registry
                    .directory_failed(minion, &directory, &reason)?;
                tracing::warn!(
                    %minion,
                    directory = %directory,
                    noted,
                    "data directory out of service: {reason}; its blocks are copied again as its block report comes"
                );
                MasterResponse::Ok
            }
            MasterRequest::ClusterReport => {
                let (file_count, directory_count, block_count) = self.read().namespace.counts();
                MasterResponse::Cluster {
                    minions: self.registry().registry.reports(now),
                    default_replication: self.config.default_replication,
                    default_block_bytes: self.config.default_block_bytes,
                    file_count,
                    directory_count,
                    block_count,
                }
            }
            other => {
                return Err(RemoteError::new(
                    ErrorKind::Internal,
                    format!("{} reached the lookup path", request_name(&other)),
                ))
            }
        };
        Ok(response)
    }

    /// Requests that change the namespace: applied and journaled under the
    /// write lock; returns the response and the sequence to wait for.
    fn dispatch_change(
        &self,
        connection: ConnectionId,
        credentials: &Credentials,
        request: MasterRequest,
    ) -> Result<(MasterResponse, u64), RemoteError> {
        let context = ChangeContext::new(connection, credentials, &self.config.admin_group);
        if let MasterRequest::Batch {
            requests,
            same_pipeline,
        } = request
        {
            return self.dispatch_batch(&context, requests, same_pipeline);
        }
        let mut guard = self.write();
        self.apply_change(&mut guard, &context, request, None)
    }

    /// A batch of client changes: decoded and checked as a whole first
    /// (nothing is applied if it is refused), then each applied in order
    /// under one hold of the write lock, a failure answered in its place
    /// without stopping the rest. Returns the answers, each encoded on its
    /// own, and one sequence covering all of them, so the batch shares one
    /// flush.
    fn dispatch_batch(
        &self,
        context: &ChangeContext,
        requests: Vec<Encoded>,
        same_pipeline: bool,
    ) -> Result<(MasterResponse, u64), RemoteError> {
        let requests = check_batch(&requests)?;
        let mut shared = same_pipeline.then(SharedPipeline::default);
        let mut guard = self.write();
        let state = &mut *guard;
        let mut responses = Vec::with_capacity(requests.len());
        let mut highest = 0;
        let mut refused = false;
        for request in requests {
            match self.apply_change(state, context, request, shared.as_mut()) {
                Ok((response, sequence)) => {
                    highest = highest.max(sequence);
                    responses.push(response);
                }
                Err(e) => {
                    refused = true;
                    responses.push(MasterResponse::Error(e));
                }
            }
        }
        // As for a single request, a refusal may rest on changes not yet
        // durable ("exists"); read under the lock, this is also at least
        // every sequence the batch produced.
        let sequence = if refused {
            self.journal.appended_sequence()
        } else {
            highest
        };
        // Encoding the answers needs no lock.
        drop(guard);
        Ok((MasterResponse::Batch(encode_answers(&responses)?), sequence))
    }

    /// Applies and journals one change request; the caller holds the write
    /// lock. `shared` is set inside a `same_pipeline` batch: first blocks
    /// allocated by `OpenWrite` go to the pipeline it remembers.
    fn apply_change(
        &self,
        state: &mut NamespaceState,
        context: &ChangeContext,
        request: MasterRequest,
        shared: Option<&mut SharedPipeline>,
    ) -> Result<(MasterResponse, u64), RemoteError> {
        let time_ms = context.time_ms;
        let outcome = match request {
            MasterRequest::Mkdir {
                path,
                parents,
                mode,
            } => {
                let path = parse_path(&path)?;
                state
                    .namespace
                    .check_create(&context.caller, &path, parents)?;
                let op = Op::Mkdir {
                    path: path.to_string(),
                    parents,
                    mode,
                    owner: context.owner.clone(),
                    group: context.group.clone(),
                    time_ms,
                };
                (MasterResponse::Ok, self.change(state, &op)?)
            }
            MasterRequest::Delete { path, recursive } => {
                let path = parse_path(&path)?;
                state
                    .namespace
                    .check_remove(&context.caller, &path, recursive)?;
                self.sustain_held(state, &[&path])?;
                let op = Op::Delete {
                    path: path.to_string(),
                    recursive,
                    time_ms,
                };
                (MasterResponse::Ok, self.change(state, &op)?)
            }
            MasterRequest::Rename { source, target } => {
                let target = parse_path(&target)?;
                state
                    .namespace
                    .check_rename(&context.caller, &parse_path(&source)?, &target)?;
                if source != target.as_str() {
                    self.sustain_held(state, &[&target])?;
                }
                let op = Op::Rename {
                    source: parse_path(&source)?.to_string(),
                    target: target.to_string(),
                    time_ms,
                };
                (MasterResponse::Ok, self.change(state, &op)?)
            }
            MasterRequest::Symlink { path, target } => {
                let path = parse_path(&path)?;
                state
                    .namespace
                    .check_create(&context.caller, &path, false)?;
                let op = Op::Symlink {
                    path: path.to_string(),
                    target,
                    owner: context.owner.clone(),
                    group: context.group.clone(),
                    time_ms,
                };
                (MasterResponse::Ok, self.change(state, &op)?)
            }
            MasterRequest::Mknod {
                path,
                kind,
                mode,
                rdev,
            } => {
                let path = parse_path(&path)?;
                state
                    .namespace
                    .check_create(&context.caller, &path, false)?;
                let op = Op::Mknod {
                    path: path.to_string(),
                    kind,
                    mode,
                    rdev,
                    owner: context.owner.clone(),
                    group: context.group.clone(),
                    time_ms,
                };
                (MasterResponse::Ok, self.change(state, &op)?)
            }
            MasterRequest::Link { source, target } => {
                let (source, target) = (parse_path(&source)?, parse_path(&target)?);
                state.namespace.check_lookup(&context.caller, &source)?;
                state
                    .namespace
                    .check_create(&context.caller, &target, false)?;
                let op = Op::Link {
                    source: source.to_string(),
                    target: target.to_string(),
                    time_ms,
                };
                (MasterResponse::Ok, self.change(state, &op)?)
            }
            MasterRequest::SetXattr {
                path,
                name,
                value,
                how,
            } => {
                let path = parse_path(&path)?;
                state
                    .namespace
                    .check_entry(&context.caller, &path, access::WRITE)?;
                let op = Op::SetXattr {
                    path: path.to_string(),
                    name,
                    value,
                    how,
                    time_ms,
                };
                (MasterResponse::Ok, self.change(state, &op)?)
            }
            MasterRequest::MarkAccessed { inode } => {
                state
                    .namespace
                    .check_open_inode(&context.caller, inode, &[access::READ])?;
                let accessed_ns = time_ms.saturating_mul(1_000_000);
                if state.namespace.access_due(inode, accessed_ns)? {
                    let op = Op::Accessed { inode, accessed_ns };
                    (MasterResponse::Ok, self.change(state, &op)?)
                } else {
                    // Nothing to change: answered once what came before
                    // is durable, as any answer.
                    (MasterResponse::Ok, self.journal.appended_sequence())
                }
            }
            MasterRequest::RemoveXattr { path, name } => {
                let path = parse_path(&path)?;
                state
                    .namespace
                    .check_entry(&context.caller, &path, access::WRITE)?;
                let op = Op::RemoveXattr {
                    path: path.to_string(),
                    name,
                    time_ms,
                };
                (MasterResponse::Ok, self.change(state, &op)?)
            }
            MasterRequest::OpenWrite {
                path,
                replication,
                block_bytes,
                overwrite,
                mode,
                allocate_first_block,
            } => {
                let replication = replication.unwrap_or(self.config.default_replication);
                let block_bytes = block_bytes.unwrap_or(self.config.default_block_bytes);
                check_file_parameters(replication, block_bytes)?;
                let path = parse_path(&path)?;
                state
                    .namespace
                    .check_create(&context.caller, &path, false)?;
                state
                    .namespace
                    .check_entry(&context.caller, &path, access::WRITE)?;
                let write = state.namespace.next_write_id();
                let op = Op::OpenWrite {
                    write,
                    path: path.to_string(),
                    replication,
                    block_bytes,
                    overwrite,
                    mode,
                    owner: context.owner.clone(),
                    group: context.group.clone(),
                    time_ms,
                };
                let first_block = allocate_first_block.then_some(shared);
                self.open_write(state, context, &op, first_block)?
            }
            MasterRequest::OpenInodeWrite {
                inode,
                path,
                replication,
                block_bytes,
                allocate_first_block,
            } => {
                let path = parse_path(&path)?;
                state
                    .namespace
                    .check_inode(&context.caller, &path, inode, access::WRITE)?;
                // By default, the file's own replication and block size.
                let (file_replication, file_block_bytes) =
                    state.namespace.file_of_inode(&path, inode)?;
                let replication = replication.unwrap_or(file_replication);
                let block_bytes = block_bytes.unwrap_or(file_block_bytes);
                check_file_parameters(replication, block_bytes)?;
                let write = state.namespace.next_write_id();
                let op = Op::OpenInodeWrite {
                    write,
                    inode,
                    path: path.to_string(),
                    replication,
                    block_bytes,
                    owner: context.owner.clone(),
                    group: context.group.clone(),
                    time_ms,
                };
                let first_block = allocate_first_block.then_some(shared);
                self.open_write(state, context, &op, first_block)?
            }
            MasterRequest::AllocateBlock { write, excluded } => {
                claim(state, write, context)?;
                let (
                    AllocatedBlock {
                        block,
                        generation,
                        targets,
                        token,
                    },
                    sequence,
                ) = self.allocate(state, write, &excluded, context, None)?;
                let response = MasterResponse::BlockAllocated {
                    block,
                    generation,
                    targets,
                    token,
                };
                (response, sequence)
            }
            MasterRequest::CommitBlock {
                write,
                block,
                generation,
                length_bytes,
                replicas,
                crc32c,
            } => {
                claim(state, write, context)?;
                let commit = BlockCommit {
                    block,
                    generation,
                    length_bytes,
                    replicas,
                    crc32c,
                };
                (MasterResponse::Ok, self.commit(state, write, commit)?)
            }
            MasterRequest::AbandonBlock { write, block } => {
                claim(state, write, context)?;
                let gone = state.namespace.write(write).is_some_and(|open| {
                    !open.pending.contains_key(&block)
                        && !open.blocks.iter().any(|meta| meta.id == block)
                });
                if gone {
                    // Abandoned already: a retry whose first answer was
                    // lost. Its answer waits for that change's flush.
                    (MasterResponse::Ok, self.journal.appended_sequence())
                } else {
                    let sequence = self.change(state, &Op::AbandonBlock { write, block })?;
                    (MasterResponse::Ok, sequence)
                }
            }
            MasterRequest::CloseWrite {
                write,
                last_block,
                modified_ns,
            } => {
                claim(state, write, context)?;
                let (path, inode) = match state.namespace.write(write) {
                    Some(open) => (open.path.clone(), open.inode),
                    None => return Err(not_open(write)),
                };
                if let Some(inode) = inode {
                    if modified_ns.is_some() {
                        return Err(RemoteError::new(
                            ErrorKind::InvalidArgument,
                            format!("{path}: a write by inode sets no modification time"),
                        ));
                    }
                    check_writes_inode(state, context, &path, inode)?;
                }
                if let Some(commit) = last_block {
                    self.commit(state, write, commit)?;
                }
                let sequence = self.change(state, &Op::CloseWrite { write, time_ms })?;
                let committed = committed_inode(state, inode, &path);
                let sequence = self.closed(state, write, path, modified_ns, time_ms, sequence)?;
                (MasterResponse::Closed { inode: committed? }, sequence)
            }
            MasterRequest::PatchWrite {
                write,
                last_block,
                ranges,
                size_bytes,
                modified_ns,
                if_version,
                inode,
            } => {
                claim(state, write, context)?;
                let (path, opened_inode) = match state.namespace.write(write) {
                    Some(open) => (open.path.clone(), open.inode),
                    None => return Err(not_open(write)),
                };
                // A write opened by inode changes that file (the namespace
                // refuses another inode).
                let inode = inode.or(opened_inode);
                if inode.is_some() && modified_ns.is_some() {
                    return Err(RemoteError::new(
                        ErrorKind::InvalidArgument,
                        format!("{path}: a patch by inode sets no modification time"),
                    ));
                }
                if ranges.len() > PATCH_RANGES_MAX {
                    return Err(RemoteError::new(
                        ErrorKind::InvalidArgument,
                        format!(
                            "{path}: a patch of {} ranges (at most {PATCH_RANGES_MAX})",
                            ranges.len()
                        ),
                    ));
                }
                if let Some(inode) = inode {
                    check_writes_inode(state, context, &path, inode)?;
                }
                if let Some(commit) = last_block {
                    self.commit(state, write, commit)?;
                }
                let op = match inode {
                    Some(inode) => Op::PatchInode {
                        write,
                        inode,
                        ranges,
                        size_bytes,
                        if_version,
                        time_ms,
                    },
                    None => Op::PatchWrite {
                        write,
                        ranges,
                        size_bytes,
                        if_version,
                        time_ms,
                    },
                };
                let sequence = self.change(state, &op)?;
                let committed = committed_inode(state, inode, &path);
                let sequence = self.closed(state, write, path, modified_ns, time_ms, sequence)?;
                (MasterResponse::Closed { inode: committed? }, sequence)
            }
            MasterRequest::SetAttributes {
                path,
                mode,
                owner,
                group,
                modified_ns,
                accessed_ns,
            } => {
                let path = parse_path(&path)?;
                let wish = AttributeWish {
                    mode: mode.is_some(),
                    owner: owner.as_deref(),
                    group: group.as_deref(),
                    times: modified_ns.is_some() || accessed_ns.is_some(),
                };
                state
                    .namespace
                    .check_set_attributes(&context.caller, &path, wish)?;
                let op = Op::SetAttributes {
                    path: path.to_string(),
                    mode,
                    owner,
                    group,
                    modified_ns,
                    accessed_ns,
                    time_ms,
                };
                (MasterResponse::Ok, self.change(state, &op)?)
            }
            MasterRequest::AbortWrite { write } => {
                claim(state, write, context)?;
                let sequence = self.change(state, &Op::AbortWrite { write })?;
                state.write_owners.remove(&write);
                (MasterResponse::Ok, sequence)
            }
            MasterRequest::Decommission { minion } => {
                check_superuser(&context.caller, "decommission a minion")?;
                if state.namespace.is_draining(minion) {
                    // Already asked: the answer waits for that op's flush.
                    (MasterResponse::Ok, self.journal.appended_sequence())
                } else {
                    if !self.registry().registry.is_registered(minion) {
                        return Err(RemoteError::new(
                            ErrorKind::UnknownMinion,
                            format!("minion {minion} is not registered"),
                        ));
                    }
                    let sequence = self.change(state, &Op::Decommission { minion })?;
                    tracing::info!(%minion, "decommissioning: its replicas are copied elsewhere");
                    (MasterResponse::Ok, sequence)
                }
            }
            MasterRequest::Recommission { minion } => {
                check_superuser(&context.caller, "recommission a minion")?;
                if state.namespace.is_draining(minion) {
                    let sequence = self.change(state, &Op::Recommission { minion })?;
                    tracing::info!(%minion, "recommissioned: back in service");
                    (MasterResponse::Ok, sequence)
                } else if self.registry().registry.is_registered(minion) {
                    // In service already (or put back by a retried request).
                    (MasterResponse::Ok, self.journal.appended_sequence())
                } else {
                    return Err(RemoteError::new(
                        ErrorKind::UnknownMinion,
                        format!("minion {minion} is neither registered nor being decommissioned"),
                    ));
                }
            }
            other => {
                return Err(RemoteError::new(
                    ErrorKind::Internal,
                    format!("{} reached the change path", request_name(&other)),
                ))
            }
        };
        Ok(outcome)
    }

    /// Chooses the pipeline of the next block of `write` and logs it.
    /// `reuse` is a pipeline to take again (a `same_pipeline` batch) as long
    /// as every member of it is still a candidate; otherwise, or without
    /// it, one is chosen afresh.
    fn allocate(
        &self,
        state: &mut NamespaceState,
        write: WriteId,
        excluded: &[MinionId],
        context: &ChangeContext,
        reuse: Option<&[MinionAddress]>,
    ) -> Result<(AllocatedBlock, u64), RemoteError> {
        let now = context.now;
        let (replication, block_bytes) = match state.namespace.write(write) {
            Some(open) => (open.replication, open.block_bytes),
            None => return Err(not_open(write)),
        };
        let targets = {
            let mut guard = self.registry();
            // Borrowed apart, so the candidates (which own their block
            // sets) are looked at in place, never copied.
            let RegistryState {
                registry,
                random_state,
                ..
            } = &mut *guard;
            let candidates = registry.candidates(block_bytes, excluded, now);
            if candidates.is_empty() {
                if let Some(why) = self.starting(now, &state.namespace, registry) {
                    return Err(RemoteError::new(ErrorKind::Starting, why));
                }
                return Err(RemoteError::new(
                    ErrorKind::NoSpace,
                    "no live minion can take a new block (none registered, all excluded, or all full)",
                ));
            }
            match reuse.filter(|targets| all_candidates(targets, &candidates)) {
                Some(targets) => targets.to_vec(),
                None => place(&candidates, replication as usize, || {
                    next_random(random_state)
                }),
            }
        };
        let block = state.namespace.next_block_id();
        let generation = self.new_generation();
        let op = Op::AllocateBlockStamped {
            write,
            block,
            generation,
        };
        let sequence = self.change(state, &op)?;
        let token = self.tokens.as_ref().map_or_else(Vec::new, |keys| {
            let replica = ReplicaId { block, generation };
            keys.mint_write(&context.caller.user, replica, &targets, now_ms())
        });
        Ok((
            AllocatedBlock {
                block,
                generation,
                targets,
                token,
            },
            sequence,
        ))
    }

    /// A generation for a new block: random and never 0, so that no stale
    /// or stray replica of the same id (from a journal cut by `--recover`,
    /// or an old backup of the data directory) can pass for it.
    fn new_generation(&self) -> Generation {
        let mut registry = self.registry();
        loop {
            let drawn = next_random(&mut registry.random_state);
            if drawn != 0 {
                return Generation(drawn);
            }
        }
    }

    /// Logs a sealed block as the next block of `write` and records where
    /// its replicas are.
    fn commit(
        &self,
        state: &mut NamespaceState,
        write: WriteId,
        commit: BlockCommit,
    ) -> Result<u64, RemoteError> {
        let BlockCommit {
            block,
            generation,
            length_bytes,
            replicas,
            crc32c,
        } = commit;
        if replicas.is_empty() {
            return Err(RemoteError::new(
                ErrorKind::InvalidArgument,
                format!("{block}: commit with no replica"),
            ));
        }
        let committed = StoredBlock {
            block,
            generation,
            length_bytes,
            crc32c,
        };
        let Some(open) = state.namespace.write(write) else {
            return Err(not_open(write));
        };
        match open.pending.get(&block) {
            Some(&allocated) if allocated == generation => {}
            Some(&allocated) => {
                return Err(RemoteError::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "{block}: a commit of generation {generation}, allocated as generation {allocated}"
                    ),
                ))
            }
            None if open
                .blocks
                .iter()
                .any(|meta| meta.matches(&committed)) =>
            {
                // Committed already, the same way: a retry whose first
                // answer was lost. Its answer waits for that commit's flush.
                return Ok(self.journal.appended_sequence());
            }
            // Not allocated to this write: `apply` refuses it and says so.
            None => {}
        }
        let op = Op::CommitBlock {
            write,
            block,
            length_bytes,
            crc32c,
        };
        let sequence = self.change(state, &op)?;
        let mut registry = self.registry();
        // Looked at even if no replica is known: it counts as missing then.
        registry.registry.touch(block);
        for minion in replicas {
            if !registry.registry.add_location(block, minion) {
                tracing::warn!(%block, %minion, "commit names an unregistered minion; ignored");
            }
        }
        // Replicas whose reports came before the commit count if they are
        // of what was committed.
        for (minion, reported) in registry.registry.take_early(block) {
            if reported == committed {
                registry.registry.add_location(block, minion);
            } else {
                let now = Instant::now();
                registry
                    .healer
                    .note_unreferenced(minion, reported, true, now);
            }
        }
        Ok(sequence)
    }

    /// What changed on a minion, in order: replicas sealed (a client's
    /// pipeline or a copy landed) and replicas gone (deletions done).
    fn block_changes(
        &self,
        minion: MinionId,
        changes: &[ReplicaChange],
        now: Instant,
    ) -> Result<(), RemoteError> {
        if changes.len() > STORED_BLOCKS_PER_REPORT_MAX {
            return Err(RemoteError::new(
                ErrorKind::InvalidArgument,
                format!(
                    "report of {} changed replicas is over the limit of {STORED_BLOCKS_PER_REPORT_MAX}",
                    changes.len()
                ),
            ));
        }
        let state = self.read();
        let mut registry = self.registry();
        let registry = &mut *registry;
        if !registry.registry.is_registered(minion) {
            return Err(RemoteError::new(
                ErrorKind::UnknownMinion,
                format!("minion {minion} is not registered"),
            ));
        }
        let mut landed = false;
        for change in changes {
            match change {
                ReplicaChange::Stored(stored) => {
                    if note_reported(&state.namespace, registry, minion, stored, now)
                        == Judged::Replica
                    {
                        registry.registry.add_location(stored.block, minion);
                        if registry.healer.landed(stored.block, minion) {
                            self.metrics.copy_finished();
                            landed = true;
                        }
                    }
                }
                ReplicaChange::Deleted(replica) => {
                    self.replica_deleted(&state.namespace, registry, minion, *replica);
                }
            }
        }
        if landed {
            self.request_replan();
        }
        Ok(())
    }

    /// `minion` no longer holds `replica`: if it was the replica the master
    /// counted there, the location (and any corrupt mark) goes; a deletion
    /// asked for is confirmed.
    fn replica_deleted(
        &self,
        namespace: &Namespace,
        registry: &mut RegistryState,
        minion: MinionId,
        replica: ReplicaId,
    ) {
        let counted = match namespace.block_record(replica.block) {
            Some(BlockRecord::Committed(record)) => record.generation == replica.generation,
            Some(BlockRecord::Pending { generation }) => generation == replica.generation,
            None => true,
        };
        if counted && registry.registry.holders(replica.block).contains(&minion) {
            registry.registry.remove_location(replica.block, minion);
            registry.registry.clear_corrupt(replica.block, minion);
        }
        registry.healer.deleted(minion, replica);
    }

    /// Replicas found corrupt by a client or a minion: marked, so they are
    /// no longer handed out nor counted, and replaced; deleted once their
    /// blocks are fully replicated without them. Reports of replicas the
    /// master does not know are logged and ignored.
    fn bad_replicas(
        &self,
        reporter: Option<MinionId>,
        replicas: &[BadReplica],
    ) -> Result<(), RemoteError> {
        if replicas.len() > BAD_REPLICAS_PER_REPORT_MAX {
            return Err(RemoteError::new(
                ErrorKind::InvalidArgument,
                format!(
                    "report of {} bad replicas is over the limit of {BAD_REPLICAS_PER_REPORT_MAX}",
                    replicas.len()
                ),
            ));
        }
        let reporter = reporter.map_or_else(|| "a client".to_string(), |id| format!("minion {id}"));
        let mut marked = 0;
        let state = self.read();
        let mut registry = self.registry();
        for BadReplica {
            block,
            generation,
            minion,
            reason,
        } in replicas
        {
            let reason = cut(reason, ERROR_MESSAGE_BYTES_MAX);
            if !registry.registry.is_registered(*minion) {
                tracing::warn!(%block, %minion, "{reporter} reported a bad replica on an unknown minion; ignored: {reason}");
                continue;
            }
            let recorded = match state.namespace.block_record(*block) {
                Some(BlockRecord::Committed(record)) => Some(record.generation),
                Some(BlockRecord::Pending { generation }) => Some(generation),
                None => None,
            };
            if recorded != Some(*generation) {
                // Not a replica the master counts: it goes as an orphan.
                tracing::info!(%block, %minion, %generation, "{reporter} reported a bad replica of no block's generation; ignored: {reason}");
                continue;
            }
            match registry.registry.mark_corrupt(*block, *minion) {
                Marked::New => {
                    marked += 1;
                    registry.healer.source_is_corrupt(*block, *minion);
                    tracing::warn!(%block, %minion, "{reporter} reported a corrupt replica; replacing it: {reason}");
                }
                Marked::Already => {}
                Marked::NotHeld => tracing::warn!(
                    %block,
                    %minion,
                    "{reporter} reported a bad replica the minion is not known to hold; ignored: {reason}"
                ),
                Marked::Full => tracing::warn!(
                    %block,
                    %minion,
                    "{reporter} reported a corrupt replica, but too many are marked already; ignored for now: {reason}"
                ),
            }
        }
        drop(registry);
        drop(state);
        if marked > 0 {
            self.request_replan();
        }
        Ok(())
    }

    fn request_replan(&self) {
        let (requested, wake) = &self.replan;
        *sync::lock(requested) = true;
        wake.notify_one();
    }

    /// Waits for the monitor's period or an early request; clears the request.
    fn wait_for_replan(&self, period: Duration) {
        let (requested, wake) = &self.replan;
        let guard = sync::lock(requested);
        let (mut guard, _) = sync::wait_timeout_while(wake, guard, period, |requested| !*requested);
        *guard = false;
    }

    /// One round of the replication monitor: collect orphans whose grace is
    /// over, then plan copies and deletions.
    pub fn heal_round(&self, now: Instant) -> PlanSummary {
        let state = self.read();
        let mut registry = self.registry();
        let registry = &mut *registry;
        // Until the reports are in, short blocks may only be unreported and
        // replicas that look surplus may be the only good ones.
        if self
            .starting(now, &state.namespace, &registry.registry)
            .is_some()
        {
            return PlanSummary::default();
        }
        let orphans = registry
            .healer
            .collect_orphans(now, |stored| state.namespace.is_replica_referenced(stored));
        if !orphans.is_empty() {
            // Judged on every op applied so far: deleted once those are
            // durable, or a crash could bring back a file that uses them.
            sync::lock(&self.frees).hold(
                self.journal.appended_sequence(),
                orphans
                    .into_iter()
                    .map(|(minion, replica)| Freed::Orphan(minion, replica))
                    .collect(),
            );
        }
        let RegistryState {
            registry,
            random_state,
            healer,
        } = registry;
        // Blocks without a target (freed, or not committed yet) drop out.
        let targets: Vec<BlockTarget> = healer
            .blocks_to_plan(registry, now)
            .into_iter()
            .filter_map(|block| state.namespace.block_target(block))
            .collect();
        drop(state);
        let summary = healer.plan(now, &targets, registry, || next_random(random_state));
        self.metrics.planned(&summary);
        summary
    }

    /// Starts the replication monitor: a round every heartbeat interval, or
    /// sooner when a copy landed. It ends with the master.
    pub fn spawn_replication_monitor(master: &Arc<Master>) -> Result<()> {
        let weak: Weak<Master> = Arc::downgrade(master);
        let period = master.config.heartbeat_interval;
        // After a (re)start the block map fills as minions register and
        // report; copying before every live minion had its say would copy
        // blocks that are not short at all (HDFS's safe mode, in small).
        let settle = master.config.stale_after;
        std::thread::Builder::new()
            .name("replication".into())
            .spawn(move || {
                let mut last = PlanSummary::default();
                // Healing's start and end, from every round's counts.
                let mut events = EventLog::default();
                std::thread::sleep(settle);
                loop {
                    let Some(master) = weak.upgrade() else {
                        return;
                    };
                    master.wait_for_replan(period);
                    if master.stopping.load(Ordering::Acquire) {
                        return;
                    }
                    let summary = master.heal_round(Instant::now());
                    let changed = (
                        summary.under_replicated,
                        summary.missing,
                        summary.in_flight,
                        summary.draining,
                    ) != (
                        last.under_replicated,
                        last.missing,
                        last.in_flight,
                        last.draining,
                    );
                    let acted = summary.replications_started > 0
                        || summary.excess_deleted > 0
                        || summary.corrupt_deleted > 0;
                    if changed || acted {
                        tracing::info!(
                            under_replicated = summary.under_replicated,
                            missing = summary.missing,
                            started = summary.replications_started,
                            in_flight = summary.in_flight,
                            excess_deleted = summary.excess_deleted,
                            corrupt_deleted = summary.corrupt_deleted,
                            draining = summary.draining,
                            "replication monitor"
                        );
                    }
                    let copies_done = master.registry().healer.progress().copies_done;
                    let healing = events.healing(
                        summary.under_replicated as u64,
                        summary.missing as u64,
                        copies_done,
                        Instant::now(),
                    );
                    if let Some(event) = healing {
                        tracing::info!("{event}");
                    }
                    last = summary;
                    drop(master);
                    std::thread::sleep(Duration::from_millis(REPLICATION_ROUND_SPACING_MS));
                }
            })
            .context("spawn replication monitor")?;
        Ok(())
    }

    /// Number of live minions, for logs and tests.
    pub fn live_minions(&self) -> usize {
        self.registry()
            .registry
            .reports(Instant::now())
            .iter()
            .filter(|m| m.state == MinionState::Live)
            .count()
    }

    // Read-only views for the status page (`status`): each takes one lock
    // briefly, and the closures copy what they need out of it.

    /// Runs `view` on the namespace under its read lock.
    pub(crate) fn view_namespace<R>(&self, view: impl FnOnce(&Namespace) -> R) -> R {
        view(&self.read().namespace)
    }

    /// Runs `view` on the registry and the healer under their lock.
    pub(crate) fn view_registry<R>(&self, view: impl FnOnce(&Registry, &Healer) -> R) -> R {
        let state = self.registry();
        view(&state.registry, &state.healer)
    }

    /// The journal's and the checkpoints' counters. A background
    /// checkpoint holds the checkpoints' lock while it writes (seconds, on
    /// a large namespace): then their part is None rather than waited for.
    pub(crate) fn journal_view(&self) -> crate::status::JournalView {
        let checkpoint = match self.checkpoints.try_lock() {
            Ok(checkpoints) => Some(crate::status::CheckpointView {
                sequence: checkpoints.newest_sequence,
                bytes_since: self
                    .journal_bytes()
                    .saturating_sub(checkpoints.journal_bytes_mark),
            }),
            Err(_) => None,
        };
        crate::status::JournalView {
            appended_sequence: self.journal.appended_sequence(),
            durable_sequence: self.journal.durable_sequence(),
            checkpoint,
            flushes: self.journal.flushes(),
        }
    }

    /// Why the master is still starting (safe mode), or None once it is
    /// over (which this may find, as a lookup would).
    pub(crate) fn starting_reason(&self) -> Option<String> {
        let state = self.read();
        let registry = self.registry();
        self.starting(Instant::now(), &state.namespace, &registry.registry)
    }

    /// The data directory (where the checkpoints are).
    pub(crate) fn data_path(&self) -> &Path {
        self.data_dir.path()
    }

    /// The settings the master runs with.
    pub(crate) fn settings(&self) -> &MasterConfig {
        &self.config
    }
}

/// What a minion's report of a replica is to the namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Judged {
    /// A replica of a committed block: generation, length and CRC32C match.
    Replica,
    /// Of a block allocated and not committed yet, with its generation:
    /// kept for the commit.
    Early,
    /// Of no block, or (`mismatch`) not the one recorded: a candidate
    /// orphan, and a mismatch never becomes a replica.
    NotAReplica { mismatch: bool },
}

fn judge_report(namespace: &Namespace, stored: &StoredBlock) -> Judged {
    match namespace.block_record(stored.block) {
        Some(BlockRecord::Committed(record)) if record == *stored => Judged::Replica,
        Some(BlockRecord::Pending { generation }) if generation == stored.generation => {
            Judged::Early
        }
        Some(_) => Judged::NotAReplica { mismatch: true },
        None => Judged::NotAReplica { mismatch: false },
    }
}

/// Judges a replica `minion` reported and keeps what is not a replica for
/// later: an early one for its commit, the rest as candidate orphans. The
/// caller locates the replicas.
fn note_reported(
    namespace: &Namespace,
    registry: &mut RegistryState,
    minion: MinionId,
    stored: &StoredBlock,
    now: Instant,
) -> Judged {
    let judged = judge_report(namespace, stored);
    match judged {
        Judged::Replica => {}
        Judged::Early => {
            if !registry.registry.note_early(minion, *stored) {
                registry
                    .healer
                    .note_unreferenced(minion, *stored, false, now);
            }
        }
        Judged::NotAReplica { mismatch } => {
            if mismatch {
                tracing::warn!(%minion, block = %stored.block, generation = %stored.generation, length_bytes = stored.length_bytes, crc32c = stored.crc32c, "a reported replica is not the block that was committed; it is no replica and goes");
            }
            registry
                .healer
                .note_unreferenced(minion, *stored, mismatch, now);
        }
    }
    judged
}

/// The caller of a commit by inode (its write's `path` names it in the
/// error) may write the file `inode`.
fn check_writes_inode(
    state: &NamespaceState,
    context: &ChangeContext,
    path: &str,
    inode: u64,
) -> Result<(), RemoteError> {
    state
        .namespace
        .check_inode(&context.caller, &parse_path(path)?, inode, access::WRITE)
}

/// The inode of the file a write just committed: `inode` for a write of
/// a file by inode, else the one now at the write's `path`.
fn committed_inode(
    state: &NamespaceState,
    inode: Option<u64>,
    path: &str,
) -> Result<u64, RemoteError> {
    match inode {
        Some(inode) => Ok(inode),
        None => state.namespace.resolve(&parse_path(path)?),
    }
}

/// True for requests that change the namespace (and so are journaled).
fn is_change(request: &MasterRequest) -> bool {
    is_client_change(request)
        || matches!(
            request,
            MasterRequest::Decommission { .. }
                | MasterRequest::Recommission { .. }
                | MasterRequest::Batch { .. }
        )
}

/// The namespace changes a client makes, the only requests a batch may
/// carry: administrative changes, lookups and minion reports each have
/// their own path, and a nested batch would only hide the limit.
fn is_client_change(request: &MasterRequest) -> bool {
    matches!(
        request,
        MasterRequest::Mkdir { .. }
            | MasterRequest::Delete { .. }
            | MasterRequest::Rename { .. }
            | MasterRequest::OpenWrite { .. }
            | MasterRequest::AllocateBlock { .. }
            | MasterRequest::CommitBlock { .. }
            | MasterRequest::AbandonBlock { .. }
            | MasterRequest::CloseWrite { .. }
            | MasterRequest::PatchWrite { .. }
            | MasterRequest::AbortWrite { .. }
            | MasterRequest::SetAttributes { .. }
            | MasterRequest::Symlink { .. }
            | MasterRequest::Link { .. }
            | MasterRequest::Mknod { .. }
            | MasterRequest::SetXattr { .. }
            | MasterRequest::RemoveXattr { .. }
            | MasterRequest::MarkAccessed { .. }
            | MasterRequest::OpenInodeWrite { .. }
    )
}

/// Decodes a batch's requests, one level down only (an entry that is a
/// batch holds its own entries as bytes, never decoded), or refuses the
/// batch as a whole, before any of it is applied: too many requests
/// (counted before anything is decoded), an entry that does not decode, or
/// one that is not a client's namespace change.
fn check_batch(requests: &[Encoded]) -> Result<Vec<MasterRequest>, RemoteError> {
    if requests.len() > BATCH_REQUESTS_MAX {
        return Err(RemoteError::new(
            ErrorKind::InvalidArgument,
            format!(
                "batch of {} requests is over the limit of {BATCH_REQUESTS_MAX}",
                requests.len()
            ),
        ));
    }
    let refuse = |index: usize, why: String| {
        RemoteError::new(
            ErrorKind::InvalidArgument,
            format!("batch request {index} {why}"),
        )
    };
    requests
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            let request: MasterRequest = entry
                .decode()
                .map_err(|e| refuse(index, format!("does not decode: {e}")))?;
            if !is_client_change(&request) {
                return Err(refuse(
                    index,
                    format!(
                        "is {}: a batch carries only namespace changes \
                         (no lookups, minion reports, decommissioning or nested batches)",
                        request_name(&request)
                    ),
                ));
            }
            Ok(request)
        })
        .collect()
}

/// Encodes a batch's answers, each on its own. Our own messages always
/// encode; should one not, the batch is answered with that error (its
/// changes are applied and journaled all the same).
fn encode_answers(responses: &[MasterResponse]) -> Result<Vec<Encoded>, RemoteError> {
    responses
        .iter()
        .enumerate()
        .map(|(index, response)| {
            Encoded::of(response).map_err(|e| {
                RemoteError::new(
                    ErrorKind::Internal,
                    format!("answer {index} of a batch does not encode: {e}"),
                )
            })
        })
        .collect()
}

/// True when every member of `targets` is among `candidates`, at the same
/// address.
fn all_candidates(targets: &[MinionAddress], candidates: &[&Minion]) -> bool {
    targets.iter().all(|target| {
        candidates
            .iter()
            .any(|minion| minion.id == target.id && minion.address == target.address)
    })
}

fn request_name(request: &MasterRequest) -> String {
    if let MasterRequest::Batch { .. } = request {
        // Its entries may be megabytes: not worth formatting to drop.
        return "Batch".to_string();
    }
    let debug = format!("{request:?}");
    debug
        .split([' ', '{', '('])
        .next()
        .unwrap_or("request")
        .to_string()
}

fn not_open(write: WriteId) -> RemoteError {
    RemoteError::new(
        ErrorKind::InvalidArgument,
        format!("write {write} is not open (closed, aborted or never opened)"),
    )
}

/// Only the connection that opened a write may add to it; a write the
/// previous run left open is taken up by the first connection that names it.
///
/// A write left open by the previous run is taken up only by the user who
/// opened it (or the superuser): write ids are sequential, and another
/// user must not finish, or fill, someone else's file.
fn claim(
    state: &mut NamespaceState,
    write: WriteId,
    context: &ChangeContext,
) -> Result<(), RemoteError> {
    let connection = context.connection;
    match state.write_owners.get(&write) {
        Some(owner) if *owner == connection => Ok(()),
        Some(_) => Err(RemoteError::new(
            ErrorKind::PermissionDenied,
            format!("write {write} belongs to another connection"),
        )),
        None if state.orphans.contains_key(&write) => {
            let opener = state.namespace.write(write).map(|open| open.owner.as_str());
            if opener != Some(context.caller.user.as_str()) && !context.caller.superuser {
                return Err(RemoteError::new(
                    ErrorKind::PermissionDenied,
                    format!(
                        "write {write} was opened by {}, not by {}",
                        opener.unwrap_or("nobody"),
                        context.caller.user
                    ),
                ));
            }
            state.orphans.remove(&write);
            tracing::info!(
                write,
                connection,
                "write left open by the previous run taken up"
            );
            state.write_owners.insert(write, connection);
            Ok(())
        }
        None => Err(not_open(write)),
    }
}

/// Applies the durable journal records `after + 1 ..= until` from the files
/// in `dir` to `namespace`. Bytes past `until` may be changing under us and
/// are not looked at.
fn replay_durable(dir: &Path, namespace: &mut Namespace, after: u64, until: u64) -> Result<()> {
    let segments = journal::list_segments(dir)?;
    let start = segments
        .iter()
        .rposition(|s| s.first_sequence <= after + 1)
        .unwrap_or(0);
    let mut last = after;
    for segment in &segments[start..] {
        if last >= until {
            break;
        }
        let bytes = journal::read_segment(&segment.path)?;
        let scan = journal::scan_segment(&bytes, |sequence, _, payload| {
            if sequence <= last || sequence > until {
                return Ok(());
            }
            if sequence != last + 1 {
                return Err(format!(
                    "sequence {sequence} follows {last}: records are missing"
                ));
            }
            let op = decode_op(payload)?;
            namespace
                .apply(&op)
                .map_err(|e| format!("op of sequence {sequence} does not apply: {e}"))?;
            last = sequence;
            Ok(())
        })
        .map_err(|reason| {
            Error::corrupted(format!("journal {}", segment.path.display()), reason)
        })?;
        if let Stop::Rejected { reason } = scan.stop {
            return Err(Error::corrupted(
                format!("journal {}", segment.path.display()),
                reason,
            ));
        }
    }
    if last != until {
        return Err(Error::corrupted(
            format!("journal in {}", dir.display()),
            format!("durable records end at sequence {last}, expected {until}"),
        ));
    }
    Ok(())
}

/// A master for unit tests, here and in other modules.
#[cfg(test)]
pub(crate) mod fixture {
    use dfs_engine::limits::{BLOCK_BYTES_DEFAULT, REPLICATION_DEFAULT};

    use super::*;

    fn config() -> MasterConfig {
        MasterConfig {
            default_replication: REPLICATION_DEFAULT,
            default_block_bytes: BLOCK_BYTES_DEFAULT,
            heartbeat_interval: Duration::from_secs(1),
            stale_after: Duration::from_secs(600),
            dead_after: Duration::from_secs(1200),
            journal_segment_bytes: dfs_engine::limits::JOURNAL_SEGMENT_BYTES_MIN,
            checkpoint_journal_bytes: u64::MAX,
            orphaned_write_timeout: Duration::from_secs(60),
            recover: false,
            orphan_grace: Duration::from_secs(3600),
            replication_timeout: Duration::from_secs(120),
            safe_mode_timeout: Duration::ZERO,
            lock_lease: Duration::from_secs(30),
            admin_group: ADMIN_GROUP_DEFAULT.to_string(),
            cluster_key: None,
            anonymous_clients: false,
            tls_data: false,
        }
    }

    /// A master on a fresh data directory with `minions` registered ones
    /// that exist only on paper (nothing here contacts them).
    pub(crate) fn master(minions: u64) -> (tempfile::TempDir, Master) {
        let dir = tempfile::tempdir().expect("tempdir");
        let master = Master::open(&dir.path().join("master"), config()).expect("open master");
        for id in 1..=minions {
            let response = master.handle(
                0,
                &Credentials::default(),
                MasterRequest::Register {
                    minion: MinionId(id),
                    cluster: None,
                    address: format!("127.0.0.1:{}", 20_000 + id),
                    capacity_bytes: 1 << 40,
                    used_bytes: 0,
                    available_bytes: 1 << 40,
                },
            );
            assert!(
                matches!(response, MasterResponse::Registered { .. }),
                "{response:?}"
            );
            // Its (empty) block report: only then does it take new blocks.
            let response = master.handle(
                0,
                &Credentials::default(),
                MasterRequest::BlockReport {
                    minion: MinionId(id),
                    blocks: vec![],
                    first: true,
                    last: true,
                },
            );
            assert!(matches!(response, MasterResponse::Ok), "{response:?}");
        }
        (dir, master)
    }
}

#[cfg(test)]
mod tests {
    use dfs_engine::msg::{BlockId, EntryKind, EntryStatus};

    use super::fixture::master;
    use super::*;

    const ONE: ConnectionId = 1;
    const OTHER: ConnectionId = 2;

    fn open(path: &str, replication: u8) -> MasterRequest {
        MasterRequest::OpenWrite {
            path: path.into(),
            replication: Some(replication),
            block_bytes: None,
            overwrite: false,
            mode: 0o644,
            allocate_first_block: true,
        }
    }

    fn mkdir(path: &str) -> MasterRequest {
        MasterRequest::Mkdir {
            path: path.into(),
            parents: false,
            mode: 0o755,
        }
    }

    fn encoded(requests: &[MasterRequest]) -> Vec<Encoded> {
        requests
            .iter()
            .map(|request| Encoded::of(request).expect("encode"))
            .collect()
    }

    fn batch(
        master: &Master,
        connection: ConnectionId,
        requests: Vec<MasterRequest>,
        same_pipeline: bool,
    ) -> Vec<MasterResponse> {
        let request = MasterRequest::Batch {
            requests: encoded(&requests),
            same_pipeline,
        };
        match master.handle(connection, &Credentials::default(), request) {
            MasterResponse::Batch(responses) => responses
                .iter()
                .map(|response| response.decode().expect("an answer decodes"))
                .collect(),
            other => panic!("expected a batch answer, got {other:?}"),
        }
    }

    /// The refusal of a whole batch of these entries.
    fn refusal_of(master: &Master, requests: Vec<Encoded>) -> RemoteError {
        let request = MasterRequest::Batch {
            requests,
            same_pipeline: false,
        };
        match master.handle(ONE, &Credentials::default(), request) {
            MasterResponse::Error(error) => error,
            other => panic!("expected the batch to be refused, got {other:?}"),
        }
    }

    /// The refusal of a whole batch.
    fn refusal(master: &Master, requests: Vec<MasterRequest>) -> RemoteError {
        refusal_of(master, encoded(&requests))
    }

    fn opened(response: &MasterResponse) -> (u64, AllocatedBlock) {
        match response {
            MasterResponse::WriteOpened {
                write,
                first_block: Some(first),
                ..
            } => (*write, first.clone()),
            other => panic!("expected a write with its first block, got {other:?}"),
        }
    }

    fn stat(master: &Master, path: &str) -> Result<EntryStatus, RemoteError> {
        match master.handle(
            ONE,
            &Credentials::default(),
            MasterRequest::Stat { path: path.into() },
        ) {
            MasterResponse::Status(status) => Ok(status),
            MasterResponse::Error(error) => Err(error),
            other => panic!("stat {path}: {other:?}"),
        }
    }

    fn error_kind(response: &MasterResponse) -> Option<ErrorKind> {
        match response {
            MasterResponse::Error(error) => Some(error.kind),
            _ => None,
        }
    }

    #[test]
    fn same_pipeline_batch_gives_first_blocks_of_one_replication_one_pipeline() {
        let (_dir, master) = master(8);
        let requests = vec![
            open("/a", 3),
            open("/b", 3),
            open("/c", 2),
            open("/d", 3),
            open("/e", 2),
        ];
        let responses = batch(&master, ONE, requests, true);
        let targets: Vec<Vec<MinionAddress>> = responses
            .iter()
            .map(|response| opened(response).1.targets)
            .collect();
        assert_eq!(targets[0].len(), 3);
        assert_eq!(targets[1], targets[0]);
        assert_eq!(targets[3], targets[0]);
        // Another replication is placed on its own, as asked.
        assert_eq!(targets[2].len(), 2);
        assert_eq!(targets[4].len(), 2);
        let blocks: std::collections::HashSet<BlockId> = responses
            .iter()
            .map(|response| opened(response).1.block)
            .collect();
        assert_eq!(blocks.len(), 5, "every first block is a new block");
    }

    #[test]
    fn without_same_pipeline_first_blocks_are_placed_one_by_one() {
        let (_dir, master) = master(8);
        let requests: Vec<MasterRequest> = (0..12).map(|i| open(&format!("/f{i}"), 3)).collect();
        let responses = batch(&master, ONE, requests, false);
        let first = opened(&responses[0]).1.targets;
        // 8 minions, pipelines of 3 in order: 336 choices, so twelve equal
        // ones would mean the batch shared a pipeline nobody asked for.
        assert!(
            responses
                .iter()
                .any(|response| opened(response).1.targets != first),
            "{responses:?}"
        );
    }

    #[test]
    fn a_pipeline_to_reuse_is_taken_only_while_all_its_members_are_candidates() {
        let (_dir, master) = master(5);
        let responses = batch(&master, ONE, vec![open("/a", 3), open("/b", 3)], false);
        let (a, _) = opened(&responses[0]);
        let (b, _) = opened(&responses[1]);
        let mut guard = master.write();
        let reuse = vec![
            MinionAddress {
                id: MinionId(4),
                address: "127.0.0.1:20004".into(),
            },
            MinionAddress {
                id: MinionId(2),
                address: "127.0.0.1:20002".into(),
            },
        ];
        let context = ChangeContext::new(1, &Credentials::default(), "dfsadmin");
        let (kept, _) = master
            .allocate(&mut guard, a, &[], &context, Some(&reuse))
            .expect("allocate");
        assert_eq!(kept.targets, reuse);
        let mut gone = reuse.clone();
        gone.push(MinionAddress {
            id: MinionId(99),
            address: "127.0.0.1:1".into(),
        });
        let (fresh, _) = master
            .allocate(&mut guard, b, &[], &context, Some(&gone))
            .expect("allocate");
        assert_eq!(fresh.targets.len(), 3);
        assert!(
            fresh.targets.iter().all(|t| (1..=5).contains(&t.id.0)),
            "{fresh:?}"
        );
    }

    #[test]
    fn a_failing_request_is_answered_in_its_place_and_the_rest_go_on() {
        let (_dir, master) = master(0);
        let responses = batch(
            &master,
            ONE,
            vec![mkdir("/a"), mkdir("/a"), mkdir("/b"), mkdir("/nowhere/c")],
            false,
        );
        assert_eq!(responses.len(), 4);
        assert_eq!(responses[0], MasterResponse::Ok);
        assert_eq!(error_kind(&responses[1]), Some(ErrorKind::AlreadyExists));
        assert_eq!(responses[2], MasterResponse::Ok);
        assert_eq!(error_kind(&responses[3]), Some(ErrorKind::NotFound));
        stat(&master, "/b").expect("/b was made after the failure");
        // Answered only once everything it appended is durable.
        assert!(master.journal.appended_sequence() > 0);
        assert_eq!(
            master.journal.durable_sequence(),
            master.journal.appended_sequence()
        );
        assert_eq!(batch(&master, ONE, Vec::new(), true), Vec::new());
    }

    #[test]
    fn a_batch_is_refused_whole_when_too_long_or_holding_what_it_may_not() {
        let (_dir, master) = master(1);
        let too_many: Vec<MasterRequest> = (0..=BATCH_REQUESTS_MAX)
            .map(|i| mkdir(&format!("/d{i}")))
            .collect();
        let error = refusal(&master, too_many);
        assert_eq!(error.kind, ErrorKind::InvalidArgument);
        assert_eq!(
            error.message,
            "batch of 257 requests is over the limit of 256"
        );
        for (request, name) in [
            (MasterRequest::Stat { path: "/".into() }, "Stat"),
            (
                MasterRequest::Heartbeat {
                    minion: MinionId(1),
                    capacity_bytes: 1,
                    used_bytes: 0,
                    available_bytes: 1,
                    block_count: 0,
                    traffic: Default::default(),
                },
                "Heartbeat",
            ),
            (
                MasterRequest::Decommission {
                    minion: MinionId(1),
                },
                "Decommission",
            ),
            (
                MasterRequest::Batch {
                    requests: encoded(&[mkdir("/nested")]),
                    same_pipeline: false,
                },
                "Batch",
            ),
        ] {
            let error = refusal(&master, vec![mkdir("/first"), request]);
            assert_eq!(error.kind, ErrorKind::InvalidArgument, "{name}");
            assert!(
                error
                    .message
                    .starts_with(&format!("batch request 1 is {name}: ")),
                "{error:?}"
            );
        }
        for path in ["/d0", "/first", "/nested"] {
            let found = stat(&master, path);
            assert_eq!(
                found.map_err(|e| e.kind),
                Err(ErrorKind::NotFound),
                "{path}: nothing of a refused batch is applied"
            );
        }
    }

    #[test]
    fn a_batch_with_an_entry_that_does_not_decode_is_refused_whole() {
        let (_dir, master) = master(0);
        let mut trailing = Encoded::of(&mkdir("/c")).expect("encode");
        trailing.0.push(0);
        for (bad, why) in [
            (Encoded(vec![0xff, 0xff, 0xff]), "undecodable MasterRequest"),
            (Encoded(Vec::new()), "undecodable MasterRequest"),
            (trailing, "1 trailing bytes after a MasterRequest"),
        ] {
            let mut requests = encoded(&[mkdir("/a"), mkdir("/b")]);
            requests.push(bad);
            let error = refusal_of(&master, requests);
            assert_eq!(error.kind, ErrorKind::InvalidArgument, "{error:?}");
            assert!(
                error
                    .message
                    .starts_with("batch request 2 does not decode: "),
                "{error:?}"
            );
            assert!(error.message.contains(why), "{error:?}");
        }
        for path in ["/a", "/b", "/c"] {
            assert_eq!(
                stat(&master, path).map_err(|e| e.kind),
                Err(ErrorKind::NotFound),
                "{path}: nothing of a refused batch is applied"
            );
        }
    }

    #[test]
    fn too_many_entries_are_refused_before_any_is_decoded() {
        let (_dir, master) = master(0);
        // Garbage in every entry: the count alone refuses the batch.
        let requests = vec![Encoded(vec![0xff]); BATCH_REQUESTS_MAX + 1];
        let error = refusal_of(&master, requests);
        assert_eq!(
            error.message,
            format!(
                "batch of {} requests is over the limit of {BATCH_REQUESTS_MAX}",
                BATCH_REQUESTS_MAX + 1
            )
        );
    }

    #[test]
    fn writes_in_a_batch_belong_to_the_connection_that_sent_it() {
        let (_dir, master) = master(3);
        let responses = batch(&master, ONE, vec![open("/f", 3), open("/g", 3)], true);
        let (f, f_block) = opened(&responses[0]);
        let (g, g_block) = opened(&responses[1]);
        let close =
            |write: u64, block: &AllocatedBlock, length_bytes: u64| MasterRequest::CloseWrite {
                write,
                last_block: Some(BlockCommit {
                    block: block.block,
                    generation: block.generation,
                    length_bytes,
                    replicas: block.targets.iter().map(|t| t.id).collect(),
                    crc32c: 0,
                }),
                modified_ns: None,
            };
        let stolen = batch(&master, OTHER, vec![close(f, &f_block, 5)], false);
        assert_eq!(error_kind(&stolen[0]), Some(ErrorKind::PermissionDenied));
        let closed = batch(
            &master,
            ONE,
            vec![close(f, &f_block, 5), close(g, &g_block, 7)],
            false,
        );
        assert!(
            matches!(
                closed[..],
                [MasterResponse::Closed { inode: f }, MasterResponse::Closed { inode: g }] if f != g
            ),
            "{closed:?}"
        );
        assert_eq!(
            master.journal.durable_sequence(),
            master.journal.appended_sequence(),
            "a batch is answered once all it appended is durable"
        );
        assert_eq!(stat(&master, "/f").expect("stat /f").size_bytes, 5);
        assert_eq!(stat(&master, "/g").expect("stat /g").size_bytes, 7);
    }
    #[test]
    fn a_write_by_inode_is_checked_as_its_file_and_changes_it_whatever_its_names() {
        let (_dir, master) = master(3);
        let user = |name: &str| Credentials {
            user: name.into(),
            groups: vec!["staff".into()],
            token: Vec::new(),
        };
        let (ann, bob) = (user("ann"), user("bob"));
        let opened = master.handle(
            ONE,
            &ann,
            MasterRequest::OpenWrite {
                path: "/f".into(),
                replication: Some(3),
                block_bytes: None,
                overwrite: false,
                mode: 0o644,
                allocate_first_block: false,
            },
        );
        let MasterResponse::WriteOpened { write, .. } = opened else {
            panic!("open /f: {opened:?}");
        };
        let close = |write: u64, modified_ns: Option<u64>| MasterRequest::CloseWrite {
            write,
            last_block: None,
            modified_ns,
        };
        let MasterResponse::Closed { inode } = master.handle(ONE, &ann, close(write, None)) else {
            panic!("close /f");
        };
        let open_inode = |inode: u64| MasterRequest::OpenInodeWrite {
            inode,
            path: "/f".into(),
            replication: None,
            block_bytes: None,
            allocate_first_block: false,
        };
        // Another user may not write ann's 0644 file, by inode either; a
        // number that names nothing, or a directory, is no file to write.
        let refused = master.handle(OTHER, &bob, open_inode(inode));
        assert_eq!(error_kind(&refused), Some(ErrorKind::PermissionDenied));
        let missing = master.handle(ONE, &ann, open_inode(inode + 1000));
        assert_eq!(error_kind(&missing), Some(ErrorKind::NotFound));
        let root = stat(&master, "/").expect("stat /").inode;
        let directory = master.handle(ONE, &Credentials::default(), open_inode(root));
        assert_eq!(error_kind(&directory), Some(ErrorKind::IsADirectory));
        // Renamed, with a directory at its old name: ann's write by inode
        // still changes it, and takes no modification time.
        for request in [
            MasterRequest::Rename {
                source: "/f".into(),
                target: "/g".into(),
            },
            mkdir("/f"),
        ] {
            let answer = master.handle(ONE, &ann, request);
            assert!(matches!(answer, MasterResponse::Ok), "{answer:?}");
        }
        let opened = master.handle(ONE, &ann, open_inode(inode));
        let MasterResponse::WriteOpened { write, .. } = opened else {
            panic!("open by inode: {opened:?}");
        };
        let timed = master.handle(ONE, &ann, close(write, Some(5)));
        assert_eq!(error_kind(&timed), Some(ErrorKind::InvalidArgument));
        let patched = master.handle(
            ONE,
            &ann,
            MasterRequest::PatchWrite {
                write,
                last_block: None,
                ranges: Vec::new(),
                size_bytes: 10,
                modified_ns: None,
                if_version: None,
                inode: None,
            },
        );
        assert_eq!(patched, MasterResponse::Closed { inode });
        let status = stat(&master, "/g").expect("stat /g");
        assert_eq!((status.inode, status.size_bytes), (inode, 10));
        assert_eq!(
            stat(&master, "/f").expect("stat /f").kind,
            EntryKind::Directory
        );
    }
}
