//! Copies of sealed replicas to other minions, as the master asks
//! (`MinionCommand::Replicate`): a few worker threads read the replica with
//! the engine's `BlockReader`, which verifies its checksums against its
//! footer and name and every chunk's CRC32C, check that it is the replica
//! the master asked for (generation, length and CRC32C as committed), and
//! push it as a pipeline client would (`WriteBlock` of that generation to
//! the first target with the rest downstream, `Data` frames, `SealBlock`,
//! durable). The targets report the new copy to the master themselves.
//!
//! A replica that turns out bad while it is read is handed to the keepers
//! (`Store::suspect`) to verify and quarantine.
//!
//! Copies yield to clients: while this minion serves client reads or writes,
//! a copy pauses after each chunk, and after the seal (when the targets'
//! disks write), three times as long as that step took
//! (`health::background_pause`), so it keeps about a quarter of the disk
//! and network time; idle, it runs at full speed. Copies pushed here by
//! other minions carry `REPLICATION_USER` and do not count as clients.
//!
//! Bounded twice: the master hands a minion at most
//! `REPLICATIONS_PER_SOURCE_MAX` copies at once, and the queue here takes at
//! most `REPLICATIONS_QUEUED_MAX`; a command dropped for a full queue is
//! planned again after the master's timeout.

use dfs_engine::sync;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use dfs_engine::block_store;
use dfs_engine::limits::{
    CONNECT_TIMEOUT_MS, IO_TIMEOUT_MS, REPLICATIONS_PER_SOURCE_MAX, REPLICATIONS_QUEUED_MAX,
};
use dfs_engine::msg::{
    BlockId, Credentials, MinionAddress, MinionRequest, MinionResponse, RemoteError, StoredBlock,
};
use dfs_engine::rpc::Connection;
use dfs_engine::tls::DataTrust;
use dfs_engine::wire::{self, FrameKind};
use dfs_engine::{Error, Result};

use crate::metrics::{CheckedBy, Metrics};
use crate::store::Store;

/// The user copies between minions are sent as: their writes are
/// background work to the receiving minion, not client traffic.
pub const REPLICATION_USER: &str = "dfs-minion";

/// One copy to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyJob {
    /// The replica as the master recorded it.
    pub replica: StoredBlock,
    pub targets: Vec<MinionAddress>,
    /// The write token for `targets`, minted here under the cluster key
    /// (empty without one).
    pub token: Vec<u8>,
}

/// The queue in front of the copy workers. Dropping it ends the workers
/// once they finish their current copy.
pub struct Replicator {
    queue: SyncSender<CopyJob>,
    /// Counts the queue's length.
    metrics: Arc<Metrics>,
    /// Set when a copy ended (either way): the heartbeat goes early to
    /// fetch the next one.
    finished: Arc<AtomicBool>,
}

impl Replicator {
    /// Starts `REPLICATIONS_PER_SOURCE_MAX` workers copying from `store`,
    /// over TLS checked by `trust` when there is one (`--tls-data`).
    pub fn start(store: Arc<Store>, trust: Option<DataTrust>) -> Result<Replicator> {
        let (queue, jobs) = mpsc::sync_channel::<CopyJob>(REPLICATIONS_QUEUED_MAX);
        let jobs = Arc::new(Mutex::new(jobs));
        let finished = Arc::new(AtomicBool::new(false));
        for index in 0..REPLICATIONS_PER_SOURCE_MAX {
            let jobs = Arc::clone(&jobs);
            let store = Arc::clone(&store);
            let finished = Arc::clone(&finished);
            let trust = trust.clone();
            thread::Builder::new()
                .name(format!("replicate-{index}"))
                .spawn(move || work(&store, &jobs, &finished, trust.as_ref()))
                .map_err(|e| Error::io("start a replication worker", e))?;
        }
        Ok(Replicator {
            queue,
            metrics: Arc::clone(&store.metrics),
            finished,
        })
    }

    /// True once after a copy ended.
    pub fn take_finished(&self) -> bool {
        self.finished.swap(false, Ordering::AcqRel)
    }

    /// Queues a copy; false when the queue is full (the master plans it
    /// again later).
    pub fn submit(&self, job: CopyJob) -> bool {
        // Counted first: a worker may take the job before `try_send` returns.
        self.metrics.copy_queued();
        let sent = self.queue.try_send(job);
        if sent.is_err() {
            self.metrics.copy_dequeued();
        }
        match sent {
            Ok(()) => true,
            Err(TrySendError::Full(job)) => {
                tracing::warn!(block = %job.replica.block, "replication queue full; copy dropped");
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

fn work(
    store: &Store,
    jobs: &Mutex<Receiver<CopyJob>>,
    finished: &AtomicBool,
    trust: Option<&DataTrust>,
) {
    loop {
        // The lock is held only while waiting for the next job.
        let job = match sync::lock(jobs).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        store.metrics.copy_dequeued();
        let started = std::time::Instant::now();
        let copied = copy_block(store, &job, trust);
        store.metrics.copy_ended(copied.is_ok());
        match copied {
            Ok(length_bytes) => tracing::info!(
                block = %job.replica.block,
                length_bytes,
                targets = job.targets.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "copied block to {}",
                names(&job.targets)
            ),
            Err(error) => tracing::warn!(
                block = %job.replica.block,
                "copy to {} failed: {error}",
                names(&job.targets)
            ),
        }
        finished.store(true, Ordering::Release);
    }
}

fn names(targets: &[MinionAddress]) -> String {
    targets
        .iter()
        .map(|t| t.address.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Hands a failure to read the block to copy on: a bad one to the keepers
/// to verify (and quarantine), an I/O error to its directory's judgement.
fn note_read_failure(store: &Store, block: BlockId, error: &Error) {
    if block_store::is_not_found(error) || block_store::is_quarantined(error) {
        return;
    }
    if matches!(error, Error::Corrupted { .. }) {
        store.metrics.checksum_failed(CheckedBy::Copy);
        store.suspect(block);
    } else {
        store.note_block_io_error(block, error);
    }
}

/// Pushes the sealed block through a pipeline of `job.targets`; returns its
/// length once every target answered the seal with the block stored.
pub fn copy_block(store: &Store, job: &CopyJob, trust: Option<&DataTrust>) -> Result<u64> {
    let wanted = job.replica;
    let block = wanted.block;
    let Some(first) = job.targets.first() else {
        return Err(Error::Invalid(format!("copy {block}: no targets")));
    };
    let reader = store
        .block_store()
        .open_block(wanted.replica())
        .inspect_err(|error| note_read_failure(store, block, error))?;
    let name = reader.name();
    if reader.length_bytes() != wanted.length_bytes || name.crc32c != wanted.crc32c {
        // Its own checksums agree with it, yet it is not the block that was
        // committed: never spread it. The master hears it is bad.
        let reason = format!(
            "{} bytes of CRC32C {:#010x}, the master recorded {} bytes of CRC32C {:#010x}",
            reader.length_bytes(),
            name.crc32c,
            wanted.length_bytes,
            wanted.crc32c
        );
        store.condemn(wanted.replica(), None, &reason);
        return Err(Error::corrupted(block.to_string(), reason));
    }
    let credentials = Credentials {
        user: REPLICATION_USER.into(),
        groups: Vec::new(),
        token: job.token.clone(),
    };
    let mut connection = Connection::open_data(
        &first.address,
        Duration::from_millis(CONNECT_TIMEOUT_MS),
        Duration::from_millis(IO_TIMEOUT_MS),
        trust,
    )?;
    let write_id = connection.send(
        &credentials,
        MinionRequest::WriteBlock {
            block,
            generation: wanted.generation,
            downstream: job.targets[1..].to_vec(),
            sync: true,
        },
    )?;
    let mut chunk = Vec::new();
    for index in 0..reader.chunk_count() {
        let started = std::time::Instant::now();
        // A corrupt chunk stops the copy: a bad replica is never spread.
        let crc = reader
            .read_chunk(index, &mut chunk)
            .inspect_err(|error| note_read_failure(store, block, error))?;
        connection.send_data(&chunk, crc)?;
        store.metrics.copied_bytes.inc_by(chunk.len() as u64);
        store.activity.yield_after(started.elapsed());
    }
    let length_bytes = reader.length_bytes();
    let sealing = std::time::Instant::now();
    let seal_id = connection.send(
        &credentials,
        MinionRequest::SealBlock {
            block,
            length_bytes,
        },
    )?;
    connection.flush()?;
    let mut buffer = Vec::new();
    let address = first.address.clone();
    let (id, response): (u64, MinionResponse) =
        wire::read_message(connection.reader(), FrameKind::Response, &mut buffer)?.ok_or_else(
            || Error::Protocol(format!("{address} closed the connection before the seal")),
        )?;
    // The targets' disks do most of their work in the seal (the data waits
    // in their page caches until fdatasync): that wait counts too.
    store.activity.yield_after(sealing.elapsed());
    if id != write_id && id != seal_id {
        return Err(Error::Protocol(format!(
            "{address} answered request {id}, expected {write_id} or {seal_id}"
        )));
    }
    match response {
        MinionResponse::Sealed { stored, failed } => {
            if let Some(failure) = failed.first() {
                return Err(Error::Remote(RemoteError::new(
                    failure.error.kind,
                    format!(
                        "{} of {} targets stored {block}; {}: {}",
                        stored.len(),
                        job.targets.len(),
                        failure.minion.address,
                        failure.error.message
                    ),
                )));
            }
            Ok(length_bytes)
        }
        MinionResponse::Error(error) => Err(Error::Remote(error)),
        MinionResponse::ReadStarted { .. }
        | MinionResponse::BatchSealed { .. }
        | MinionResponse::Durable { .. } => Err(Error::Protocol(format!(
            "{address} answered SealBlock with another answer than Sealed"
        ))),
    }
}
