//! The master's request handling: turns requests into namespace ops and
//! registry updates under one lock, and answers them. Transport-free, so
//! tests drive it directly.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use dfs_engine::limits::{BLOCK_REPORT_IDS_MAX, LIST_ENTRIES_MAX};
use dfs_engine::msg::{
    ClusterId, Credentials, ErrorKind, LocatedBlock, MasterRequest, MasterResponse, MinionId,
    MinionState, RemoteError,
};
use dfs_engine::path::DfsPath;
use dfs_engine::rpc::now_ms;
use dfs_engine::Result;

use crate::checkpoint::{self, Checkpoint, DataDir};
use crate::namespace::{check_file_parameters, Namespace, Op, WriteId};
use crate::registry::{place, Capacity, Liveness, Registry};

/// Settings of a master.
#[derive(Clone, Debug)]
pub struct MasterConfig {
    pub default_replication: u8,
    pub default_block_bytes: u64,
    pub heartbeat_interval: Duration,
    pub stale_after: Duration,
    pub dead_after: Duration,
}

/// How long the master waits to see whether a minion's old address still
/// answers before it lets a restarted minion take over its id.
const TAKEOVER_PROBE_TIMEOUT_MS: u64 = 1000;

/// Identifies a client connection, so its open writes end with it.
pub type ConnectionId = u64;

struct State {
    namespace: Namespace,
    registry: Registry,
    /// Which connection owns each open write (a lease that ends with the connection).
    write_owners: HashMap<WriteId, ConnectionId>,
    random_state: u64,
}

impl State {
    fn random(&mut self) -> u64 {
        // xorshift64*: placement needs spread, not secrecy.
        let mut x = self.random_state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.random_state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn apply(&mut self, op: &Op) -> Result<(), RemoteError> {
        let applied = self.namespace.apply(op)?;
        for block in applied.freed_blocks {
            // Deleting freed blocks on minions comes with re-replication and
            // garbage collection; until then they are only forgotten here.
            self.registry.forget_block(block);
        }
        Ok(())
    }
}

pub struct Master {
    config: MasterConfig,
    data_dir: DataDir,
    state: Mutex<State>,
}

fn parse_path(path: &str) -> Result<DfsPath, RemoteError> {
    DfsPath::parse(path).map_err(|e| RemoteError::new(ErrorKind::InvalidArgument, e.to_string()))
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

impl Master {
    /// Opens (and locks) the data directory and loads the checkpoint, or
    /// starts a new cluster and writes its first checkpoint at once, so the
    /// cluster id survives even an unclean stop.
    pub fn open(data: &std::path::Path, config: MasterConfig) -> Result<Master> {
        let data_dir = DataDir::open(data)?;
        let checkpoint = match checkpoint::load(data_dir.path())? {
            Some(checkpoint) => {
                tracing::info!(cluster = %checkpoint.cluster, "loaded namespace from {}", data_dir.path().display());
                checkpoint
            }
            None => {
                let checkpoint = Checkpoint {
                    cluster: ClusterId(dfs_engine::rpc::random_u64()?),
                    namespace: Namespace::new(now_ms()),
                };
                checkpoint::store(data_dir.path(), &checkpoint)?;
                tracing::info!(cluster = %checkpoint.cluster, "created a new cluster in {}", data_dir.path().display());
                checkpoint
            }
        };
        let liveness = Liveness {
            stale_after: config.stale_after,
            dead_after: config.dead_after,
        };
        let state = State {
            namespace: checkpoint.namespace,
            registry: Registry::new(checkpoint.cluster, liveness),
            write_owners: HashMap::new(),
            random_state: dfs_engine::rpc::random_u64()? | 1,
        };
        Ok(Master {
            config,
            data_dir,
            state: Mutex::new(state),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would leave the namespace unknown;
        // the handlers do not panic, so poisoning is not expected.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn cluster(&self) -> ClusterId {
        self.lock().registry.cluster()
    }

    /// Writes the whole namespace as a checkpoint and keeps the state
    /// locked for good: no change is made after this returns, so the process
    /// can exit with the checkpoint as its last word.
    pub fn checkpoint_and_freeze(&self) -> Result<()> {
        let state = self.lock();
        let checkpoint = Checkpoint {
            cluster: state.registry.cluster(),
            namespace: state.namespace.clone(),
        };
        let result = checkpoint::store(self.data_dir.path(), &checkpoint);
        std::mem::forget(state);
        result
    }

    /// Ends the writes a closed connection left open.
    pub fn connection_closed(&self, connection: ConnectionId) {
        let mut state = self.lock();
        let orphaned: Vec<WriteId> = state
            .write_owners
            .iter()
            .filter(|(_, owner)| **owner == connection)
            .map(|(write, _)| *write)
            .collect();
        for write in orphaned {
            state.write_owners.remove(&write);
            if let Err(e) = state.apply(&Op::AbortWrite { write }) {
                tracing::warn!("abort write {write} of a closed connection: {e}");
            }
        }
    }

    pub fn handle(
        &self,
        connection: ConnectionId,
        credentials: &Credentials,
        request: MasterRequest,
    ) -> MasterResponse {
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
        match self.dispatch(connection, credentials, request) {
            Ok(response) => response,
            Err(e) => MasterResponse::Error(e),
        }
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
        let first_try = self.lock().registry.register(
            minion,
            cluster,
            address,
            capacity,
            false,
            Instant::now(),
        );
        match first_try {
            Err(e) if e.kind == ErrorKind::DuplicateMinion => {
                let old = self.lock().registry.address_of(minion);
                // Probe without the lock: a connect may take a while.
                let old_answers = old.is_some_and(|old| {
                    dfs_engine::rpc::connect(&old, Duration::from_millis(TAKEOVER_PROBE_TIMEOUT_MS))
                        .is_ok()
                });
                if old_answers {
                    tracing::warn!("refused registration: {e}");
                    return Err(e);
                }
                self.lock().registry.register(
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

    fn dispatch(
        &self,
        connection: ConnectionId,
        credentials: &Credentials,
        request: MasterRequest,
    ) -> Result<MasterResponse, RemoteError> {
        let now = Instant::now();
        let time_ms = now_ms();
        let (owner, group) = owner_and_group(credentials);
        let mut state = self.lock();
        let response = match request {
            MasterRequest::Register { .. } => {
                // `handle` registers before it dispatches.
                return Err(RemoteError::new(
                    ErrorKind::Internal,
                    "registration reached dispatch",
                ));
            }
            MasterRequest::Heartbeat {
                minion,
                capacity_bytes,
                used_bytes,
                available_bytes,
                block_count: _,
            } => {
                let capacity = Capacity {
                    capacity_bytes,
                    used_bytes,
                    available_bytes,
                };
                state.registry.heartbeat(minion, capacity, now)?;
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
                let referenced = state.namespace.referenced_blocks();
                let unknown = state
                    .registry
                    .block_report(minion, &blocks, first, |b| referenced.contains(&b))?;
                if last {
                    tracing::info!(%minion, blocks = blocks.len(), unknown, "block report");
                }
                MasterResponse::Ok
            }
            MasterRequest::Stat { path } => {
                MasterResponse::Status(state.namespace.status(&parse_path(&path)?)?)
            }
            MasterRequest::List {
                path,
                start_after,
                limit,
            } => {
                let limit = limit.clamp(1, LIST_ENTRIES_MAX) as usize;
                let (entries, more) =
                    state
                        .namespace
                        .list(&parse_path(&path)?, start_after.as_deref(), limit)?;
                MasterResponse::Listing { entries, more }
            }
            MasterRequest::Mkdir {
                path,
                parents,
                mode,
            } => {
                state.apply(&Op::Mkdir {
                    path: parse_path(&path)?.to_string(),
                    parents,
                    mode,
                    owner,
                    group,
                    time_ms,
                })?;
                MasterResponse::Ok
            }
            MasterRequest::Delete { path, recursive } => {
                state.apply(&Op::Delete {
                    path: parse_path(&path)?.to_string(),
                    recursive,
                    time_ms,
                })?;
                MasterResponse::Ok
            }
            MasterRequest::Rename { source, target } => {
                state.apply(&Op::Rename {
                    source: parse_path(&source)?.to_string(),
                    target: parse_path(&target)?.to_string(),
                    time_ms,
                })?;
                MasterResponse::Ok
            }
            MasterRequest::OpenWrite {
                path,
                replication,
                block_bytes,
                overwrite,
                mode,
            } => {
                let replication = replication.unwrap_or(self.config.default_replication);
                let block_bytes = block_bytes.unwrap_or(self.config.default_block_bytes);
                check_file_parameters(replication, block_bytes)?;
                let write = state.namespace.next_write_id();
                state.apply(&Op::OpenWrite {
                    write,
                    path: parse_path(&path)?.to_string(),
                    replication,
                    block_bytes,
                    overwrite,
                    mode,
                    owner,
                    group,
                    time_ms,
                })?;
                state.write_owners.insert(write, connection);
                MasterResponse::WriteOpened {
                    write,
                    replication,
                    block_bytes,
                }
            }
            MasterRequest::AllocateBlock { write, excluded } => {
                check_owner(&state, write, connection)?;
                let (replication, block_bytes) = match state.namespace.write(write) {
                    Some(open) => (open.replication, open.block_bytes),
                    None => return Err(not_open(write)),
                };
                let candidates: Vec<_> = state
                    .registry
                    .candidates(block_bytes, &excluded, now)
                    .into_iter()
                    .cloned()
                    .collect();
                if candidates.is_empty() {
                    return Err(RemoteError::new(
                        ErrorKind::NoSpace,
                        "no live minion can take a new block (none registered, all excluded, or all full)",
                    ));
                }
                let candidate_refs: Vec<_> = candidates.iter().collect();
                let targets = place(&candidate_refs, replication as usize, || state.random());
                let block = state.namespace.next_block_id();
                state.apply(&Op::AllocateBlock { write, block })?;
                MasterResponse::BlockAllocated { block, targets }
            }
            MasterRequest::CommitBlock {
                write,
                block,
                length_bytes,
                replicas,
            } => {
                check_owner(&state, write, connection)?;
                if replicas.is_empty() {
                    return Err(RemoteError::new(
                        ErrorKind::InvalidArgument,
                        format!("{block}: commit with no replica"),
                    ));
                }
                state.apply(&Op::CommitBlock {
                    write,
                    block,
                    length_bytes,
                })?;
                for minion in replicas {
                    if !state.registry.add_location(block, minion) {
                        tracing::warn!(%block, %minion, "commit names an unregistered minion; ignored");
                    }
                }
                MasterResponse::Ok
            }
            MasterRequest::AbandonBlock { write, block } => {
                check_owner(&state, write, connection)?;
                state.apply(&Op::AbandonBlock { write, block })?;
                MasterResponse::Ok
            }
            MasterRequest::CloseWrite { write } => {
                check_owner(&state, write, connection)?;
                state.apply(&Op::CloseWrite { write, time_ms })?;
                state.write_owners.remove(&write);
                MasterResponse::Ok
            }
            MasterRequest::AbortWrite { write } => {
                check_owner(&state, write, connection)?;
                state.apply(&Op::AbortWrite { write })?;
                state.write_owners.remove(&write);
                MasterResponse::Ok
            }
            MasterRequest::GetBlocks { path } => {
                let path = parse_path(&path)?;
                let (status, metas) = state.namespace.file_blocks(&path)?;
                let mut offset_bytes = 0;
                let mut blocks = Vec::with_capacity(metas.len());
                for meta in metas {
                    blocks.push(LocatedBlock {
                        id: meta.id,
                        offset_bytes,
                        length_bytes: meta.length_bytes,
                        locations: state.registry.locations(meta.id, now),
                    });
                    offset_bytes += meta.length_bytes;
                }
                MasterResponse::Blocks { status, blocks }
            }
            MasterRequest::ClusterReport => {
                let (file_count, directory_count, block_count) = state.namespace.counts();
                MasterResponse::Cluster {
                    minions: state.registry.reports(now),
                    default_replication: self.config.default_replication,
                    default_block_bytes: self.config.default_block_bytes,
                    file_count,
                    directory_count,
                    block_count,
                }
            }
        };
        Ok(response)
    }

    /// Number of live minions, for logs and tests.
    pub fn live_minions(&self) -> usize {
        let state = self.lock();
        state
            .registry
            .reports(Instant::now())
            .iter()
            .filter(|m| m.state == MinionState::Live)
            .count()
    }
}

fn not_open(write: WriteId) -> RemoteError {
    RemoteError::new(
        ErrorKind::InvalidArgument,
        format!("write {write} is not open (closed, aborted or never opened)"),
    )
}

/// Only the connection that opened a write may add to it.
fn check_owner(state: &State, write: WriteId, connection: ConnectionId) -> Result<(), RemoteError> {
    match state.write_owners.get(&write) {
        Some(owner) if *owner == connection => Ok(()),
        Some(_) => Err(RemoteError::new(
            ErrorKind::PermissionDenied,
            format!("write {write} belongs to another connection"),
        )),
        None => Err(not_open(write)),
    }
}
