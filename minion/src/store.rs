//! Writing blocks on the data path through io_uring: the counterpart of
//! `BlockStore::create` and `BlockWriter` for the cores. Its chunk rules,
//! names and tail (checksums and footer) come from the engine's
//! `block_format`, which the blocking writer and every reader use too, and
//! it claims and seals its blocks through the engine's `BlockStore`, so the
//! store's catalog, scans and start-up cleaning see no difference.
//!
//! `Store` is also where the data path leaves news for the background: what
//! an I/O error said about a data directory (a full one gets no new blocks,
//! a failed one is taken out of service), blocks a reader found bad (for the
//! keepers in `scrub` to verify at once), and what the heartbeat must tell
//! the master (sealed blocks, bad replicas, failed directories).
//!
//! Invariant: a block id is in at most one of "being written" or "sealed"
//! on this minion: every writer claims it in the one `BlockStore`, whose
//! catalog is the only state the cores share on the write path, touched
//! once at the start and once at the end of a block.

use dfs_engine::sync;
use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use dfs_engine::block_format::{self, ChunkSequence};
use dfs_engine::block_store::{self, BlockStore, Claim, Usage};
use dfs_engine::limits::STORED_BLOCKS_QUEUED_MAX;
use dfs_engine::msg::{BlockId, ReplicaChange, ReplicaId, StoredBlock};
use dfs_engine::{Error, Result};

use crate::group_sync::GroupSync;
use crate::health::{classify, Activity, Doorbell, Fault};
use crate::metrics::Metrics;
use crate::uring::{self, SharedPieces, UringFile};

/// A durable block's data is handed to the disk every this many bytes as it
/// arrives, so the disk writes while the network transfers and the seal's
/// fdatasync has at most this much left to write.
const WRITEBACK_STEP_BYTES: u64 = 8 * 1024 * 1024;
/// Bad replicas kept to report; past it, a full block report (which leaves
/// the quarantined ones out) tells the master instead.
pub const BAD_REPLICAS_QUEUED_MAX: usize = 10_000;
/// Blocks a reader found bad waiting for a keeper to verify them; more are
/// dropped (a scrub pass finds them later).
pub const SUSPECTS_QUEUED_MAX: usize = 256;
/// Longest reason kept for a bad replica (one line for the master).
pub const BAD_REPLICA_REASON_BYTES_MAX: usize = 256;

/// The block store of a minion as the cores write to it.
pub struct Store {
    store: BlockStore,
    /// Replicas sealed or deleted since the last incremental report to the
    /// master, in order.
    changes: Mutex<ReportQueue<ReplicaChange>>,
    /// Replicas quarantined since the last report to the master.
    bad: Mutex<ReportQueue<QuarantinedReplica>>,
    /// Directories that failed since the last report to the master; at
    /// most one entry per data directory.
    failed_directories: Mutex<Vec<FailedDirectory>>,
    /// Blocks a reader found bad, for a keeper to verify.
    suspects: Mutex<VecDeque<BlockId>>,
    /// Per data directory: an operation there failed in a way that calls
    /// for a check (with a write probe) by its keeper.
    check_requested: Vec<AtomicBool>,
    /// Client requests in flight, which background work yields to.
    pub(crate) activity: Arc<Activity>,
    /// Wakes the keepers for suspects, checks, or the stop.
    pub(crate) doorbell: Doorbell,
    /// Shared flushes for small durable blocks, per data directory.
    group_sync: GroupSync,
    /// What every part of the minion counts, for `/metrics`.
    pub(crate) metrics: Arc<Metrics>,
}

/// News for the next report to the master (blocks stored, replicas gone
/// bad), bounded: past the bound only a flag is kept, and the heartbeat
/// sends a full block report instead.
struct ReportQueue<T> {
    items: Vec<T>,
    overflowed: bool,
}

impl<T> Default for ReportQueue<T> {
    fn default() -> Self {
        ReportQueue {
            items: Vec::new(),
            overflowed: false,
        }
    }
}

impl<T> ReportQueue<T> {
    /// Queues `item`, or notes the overflow when `max` are queued.
    fn push(&mut self, item: T, max: usize) {
        if self.items.len() < max {
            self.items.push(item);
        } else {
            self.overflowed = true;
        }
    }

    fn is_pending(&self) -> bool {
        !self.items.is_empty() || self.overflowed
    }

    /// Empties the queue: what it held, or None after an overflow.
    fn take(&mut self) -> Option<Vec<T>> {
        let taken = std::mem::take(self);
        (!taken.overflowed).then_some(taken.items)
    }
}

/// What the heartbeat should tell the master about what changed.
#[derive(Debug, PartialEq, Eq)]
pub enum ChangeReport {
    /// These replicas were sealed or deleted since the last report, in order.
    Changes(Vec<ReplicaChange>),
    /// Too many to list: report everything.
    Full,
}

/// A replica found bad and quarantined here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuarantinedReplica {
    pub replica: ReplicaId,
    /// One line: what was wrong.
    pub reason: String,
}

/// What the heartbeat should tell the master about bad replicas.
#[derive(Debug, PartialEq, Eq)]
pub enum BadReport {
    Replicas(Vec<QuarantinedReplica>),
    /// Too many to list: a full block report leaves them all out.
    Full,
}

/// A data directory taken out of service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedDirectory {
    pub directory: String,
    pub reason: String,
}

impl Store {
    pub fn new(store: BlockStore) -> Store {
        let check_requested = store.dirs().map(|_| AtomicBool::new(false)).collect();
        let group_sync = GroupSync::new(store.dirs());
        let metrics = Arc::new(Metrics::new(store.dirs()));
        Store {
            store,
            changes: Mutex::new(ReportQueue::default()),
            bad: Mutex::new(ReportQueue::default()),
            failed_directories: Mutex::new(Vec::new()),
            suspects: Mutex::new(VecDeque::new()),
            check_requested,
            activity: Arc::new(Activity::new()),
            doorbell: Doorbell::default(),
            group_sync,
            metrics,
        }
    }

    /// Removes `replica`, sealed or quarantined, and queues its deletion
    /// for the master's next report whether or not it was here (the master
    /// waits for that before it copies the block here again); true when it
    /// was here. A replica being written is left alone (it is not sealed).
    pub fn remove(&self, replica: ReplicaId) -> Result<bool> {
        let removed = self.store.remove(replica)?.is_some();
        self.note_change(ReplicaChange::Deleted(replica));
        Ok(removed)
    }

    fn note_change(&self, change: ReplicaChange) {
        sync::lock(&self.changes).push(change, STORED_BLOCKS_QUEUED_MAX);
    }

    /// Drops the sealed replicas queued for the incremental report (a full
    /// report covers them), keeping the deletions.
    pub fn forget_stored_changes(&self) {
        sync::lock(&self.changes)
            .items
            .retain(|change| matches!(change, ReplicaChange::Deleted(_)));
    }

    /// Remembers a sealed replica for the next incremental report.
    pub fn note_stored(&self, stored: StoredBlock) {
        self.note_change(ReplicaChange::Stored(stored));
    }

    /// True when changes wait to be reported.
    pub fn has_changes(&self) -> bool {
        sync::lock(&self.changes).is_pending()
    }

    /// Takes what changed since the last call.
    pub fn take_changes(&self) -> ChangeReport {
        match sync::lock(&self.changes).take() {
            Some(changes) => ChangeReport::Changes(changes),
            None => ChangeReport::Full,
        }
    }

    /// Puts back changes whose report did not reach the master, in front
    /// of newer ones (the master applies them in order), except sealed
    /// replicas quarantined (or removed) meanwhile: reported after the bad
    /// replica, they would tell the master it is good again.
    pub fn restore_changes(&self, changes: Vec<ReplicaChange>) {
        let mut queue = sync::lock(&self.changes);
        let newer = std::mem::take(&mut *queue);
        for change in changes {
            let still_true = match change {
                ReplicaChange::Stored(stored) => self.store.contains(stored.replica()),
                ReplicaChange::Deleted(_) => true,
            };
            if still_true {
                queue.push(change, STORED_BLOCKS_QUEUED_MAX);
            }
        }
        queue.overflowed |= newer.overflowed;
        for change in newer.items {
            queue.push(change, STORED_BLOCKS_QUEUED_MAX);
        }
    }

    /// Quarantines `replica`, which failed verification for `reason` (with
    /// `inode`, only that file: the one found bad, not a good copy sealed
    /// since), and queues its report to the master. True when it was
    /// quarantined (not removed or replaced meanwhile).
    pub fn condemn(&self, replica: ReplicaId, inode: Option<u64>, reason: &str) -> bool {
        match self.store.quarantine(replica, inode) {
            Ok(true) => {
                tracing::warn!(
                    "{replica}: {reason}; quarantined: the replica is never served again and is reported to the master"
                );
                self.metrics.quarantined();
                self.note_bad(replica, reason);
                true
            }
            Ok(false) => false,
            Err(quarantine_error) => {
                tracing::warn!("{replica}: {reason}; quarantine it: {quarantine_error}");
                self.note_block_io_error(replica.block, &quarantine_error);
                false
            }
        }
    }

    /// Remembers a quarantined replica for the next report to the master.
    pub fn note_bad(&self, replica: ReplicaId, reason: &str) {
        let mut reason = reason.replace('\n', " ");
        if reason.len() > BAD_REPLICA_REASON_BYTES_MAX {
            let mut end = BAD_REPLICA_REASON_BYTES_MAX;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
        }
        // A report that it was stored, still queued, is older than this:
        // sent after the bad replica (news go first), it would tell the
        // master the replica is good again.
        sync::lock(&self.changes).items.retain(|change| {
            !matches!(change, ReplicaChange::Stored(stored) if stored.replica() == replica)
        });
        sync::lock(&self.bad).push(
            QuarantinedReplica { replica, reason },
            BAD_REPLICAS_QUEUED_MAX,
        );
    }

    /// True when bad replicas wait to be reported.
    pub fn has_bad(&self) -> bool {
        sync::lock(&self.bad).is_pending()
    }

    /// Takes the bad replicas found since the last call.
    pub fn take_bad(&self) -> BadReport {
        match sync::lock(&self.bad).take() {
            Some(replicas) => BadReport::Replicas(replicas),
            None => BadReport::Full,
        }
    }

    /// Puts back bad replicas whose report did not reach the master.
    pub fn restore_bad(&self, replicas: Vec<QuarantinedReplica>) {
        for replica in replicas {
            self.note_bad(replica.replica, &replica.reason);
        }
    }

    /// True when failed directories wait to be reported.
    pub fn has_failed_directories(&self) -> bool {
        !sync::lock(&self.failed_directories).is_empty()
    }

    /// Takes the directories that failed since the last call.
    pub fn take_failed_directories(&self) -> Vec<FailedDirectory> {
        std::mem::take(&mut *sync::lock(&self.failed_directories))
    }

    /// Puts back failures whose report did not reach the master.
    pub fn restore_failed_directories(&self, failures: Vec<FailedDirectory>) {
        let mut queue = sync::lock(&self.failed_directories);
        for failure in failures {
            if !queue.contains(&failure) {
                queue.push(failure);
            }
        }
    }

    /// Every directory out of service, with why (to tell a master that
    /// forgot this minion).
    pub fn failed_directories(&self) -> Vec<FailedDirectory> {
        self.store
            .directory_states()
            .into_iter()
            .filter_map(|state| {
                Some(FailedDirectory {
                    directory: state.root.display().to_string(),
                    reason: state.failure?,
                })
            })
            .collect()
    }

    /// Asks the keepers to verify `block` at once: a reader found it bad.
    /// Dropped when too many wait (a scrub pass finds it later).
    pub fn suspect(&self, block: BlockId) {
        {
            let mut suspects = sync::lock(&self.suspects);
            if suspects.contains(&block) || suspects.len() >= SUSPECTS_QUEUED_MAX {
                return;
            }
            suspects.push_back(block);
        }
        self.doorbell.ring();
    }

    /// The next block to verify for a reader, if any.
    pub(crate) fn take_suspect(&self) -> Option<BlockId> {
        sync::lock(&self.suspects).pop_front()
    }

    /// True once (and clears it) when directory `index` should be checked.
    pub(crate) fn take_check_request(&self, index: usize) -> bool {
        self.check_requested
            .get(index)
            .is_some_and(|flag| flag.swap(false, Ordering::Relaxed))
    }

    /// Acts on an I/O error of an operation in data directory `index`: a
    /// full directory gets no new blocks for a while, a failed one is taken
    /// out of service, anything unexpected gets its directory checked.
    pub fn note_io_error(&self, index: usize, error: &Error) {
        let fault = classify(error);
        if fault != Fault::NotTheDisk {
            self.metrics.directory_io_error(index);
        }
        match fault {
            Fault::Full => self.store.note_full(index),
            Fault::Failed => {
                self.fail_directory(index, &error.to_string());
            }
            Fault::Check => {
                if let Some(flag) = self.check_requested.get(index) {
                    flag.store(true, Ordering::Relaxed);
                    self.doorbell.ring();
                }
            }
            Fault::NotTheDisk => {}
        }
    }

    /// `note_io_error` for an error about `block`, wherever it lives; when
    /// no directory holds it, every directory is checked.
    pub fn note_block_io_error(&self, block: BlockId, error: &Error) {
        match self.store.directory_holding(block) {
            Some(index) => self.note_io_error(index, error),
            None if classify(error) != Fault::NotTheDisk => {
                for flag in &self.check_requested {
                    flag.store(true, Ordering::Relaxed);
                }
                self.doorbell.ring();
            }
            None => {}
        }
    }

    /// Takes data directory `index` out of service, logs it and queues the
    /// report to the master. True when it was in service until now.
    pub fn fail_directory(&self, index: usize, reason: &str) -> bool {
        let states = self.store.directory_states();
        let Some(state) = states.get(index) else {
            return false;
        };
        if !self.store.fail_directory(index, reason) {
            return false;
        }
        let directory = state.root.display().to_string();
        tracing::error!(
            "data directory {directory} failed: {reason}; it is out of service and its {} blocks are dropped (the master copies them again)",
            state.block_count
        );
        if self.store.directories_in_service() == 0 {
            tracing::error!(
                "every data directory failed: this minion now stores nothing and refuses writes; it keeps running so the master sees it, until it is restarted with working directories"
            );
        }
        self.restore_failed_directories(vec![FailedDirectory {
            directory,
            reason: reason.to_string(),
        }]);
        self.doorbell.ring();
        true
    }

    /// The replicas of the directories in service, for a full block
    /// report, sorted: the sealed ones and the quarantined ones (the master
    /// counts those as held until it has them deleted, after they are
    /// reported bad). The catalog is checked against the disks first: a
    /// file that vanished is dropped, and a directory where a look fails is
    /// judged (`note_io_error`); the list is an error if that leaves it in
    /// service, so that no healthy directory's blocks go missing from a
    /// report.
    pub fn list_for_report(&self) -> Result<Vec<StoredBlock>> {
        let mut still_serving = None;
        for (index, error) in self.store.verify_catalog() {
            self.note_io_error(index, &error);
            if self.store.is_in_service(index) {
                still_serving = Some(error);
            }
        }
        if let Some(error) = still_serving {
            return Err(error);
        }
        let mut replicas = self.store.list();
        replicas.extend(self.store.quarantined());
        replicas.sort_unstable_by_key(|replica| (replica.block, replica.generation));
        replicas.dedup();
        Ok(replicas)
    }

    pub fn block_store(&self) -> &BlockStore {
        &self.store
    }

    /// Makes sealed replicas durable as a `sync` write would have: each
    /// file's data (`fdatasync`, which also reports a writeback error of
    /// its pages that no flush reported yet) and then each directory that
    /// holds one of their names. For more than one, their data directories
    /// are flushed first (a shared `syncfs`, `group_sync`), so that each
    /// file's own flush finds little left to write. Returns the replicas
    /// not held here (freed since, or lost). The first replica not flushed
    /// fails the whole; an I/O error also counts against its directory.
    pub(crate) async fn make_durable(&self, replicas: &[ReplicaId]) -> Result<Vec<ReplicaId>> {
        let mut not_held = Vec::new();
        let mut held = Vec::new();
        for &replica in replicas {
            match self.store.sealed_path(replica) {
                Ok(path) => held.push((replica, path)),
                Err(error) if block_store::is_not_found(&error) => not_held.push(replica),
                Err(error) => return Err(error),
            }
        }
        if held.len() > 1 {
            let mut indexes: Vec<usize> = held
                .iter()
                .filter_map(|(_, path)| self.store.directory_of(path))
                .collect();
            indexes.sort_unstable();
            indexes.dedup();
            for index in indexes {
                // Only a head start: each file's own flush below decides.
                let _ = self.group_sync.flush(index).await;
            }
        }
        let mut directories: Vec<PathBuf> = Vec::new();
        for (replica, path) in held {
            let flushed = match UringFile::open(&path).await {
                Ok(file) => file.sync_data().await,
                // Removed since it was looked up (a deletion the master
                // ordered runs beside this), or lost: not held.
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    not_held.push(replica);
                    continue;
                }
                Err(error) => Err(error),
            };
            if let Err(error) = flushed {
                let error = Error::io(format!("flush {replica} in {}", path.display()), error);
                self.note_block_io_error(replica.block, &error);
                return Err(error);
            }
            if let Some(directory) = path.parent() {
                if !directories.iter().any(|known| known == directory) {
                    directories.push(directory.to_path_buf());
                }
            }
        }
        for directory in directories {
            let flushed = match UringFile::open(&directory).await {
                Ok(file) => file.sync_all().await,
                // Gone with every name in it: nothing left to flush.
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => Err(error),
            };
            if let Err(error) = flushed {
                let error = Error::io(format!("sync directory {}", directory.display()), error);
                if let Some(index) = self.store.directory_of(&directory) {
                    self.note_io_error(index, &error);
                }
                return Err(error);
            }
        }
        Ok(not_held)
    }

    /// Space and blocks of the directories in service.
    pub fn usage(&self) -> Result<Usage> {
        self.store.usage()
    }

    /// Starts writing `replica` in the data directory
    /// `BlockStore::choose_directory` picks. Refused while a replica of the
    /// block is sealed or being written here (a conflict: see
    /// `BlockStore::claim`). A `durable` block starts its writeback as it
    /// arrives.
    pub(crate) async fn create(
        self: &Arc<Store>,
        replica: ReplicaId,
        durable: bool,
    ) -> Result<UringBlockWriter> {
        let claim = self.store.claim(replica)?;
        let (dir_index, root) = self
            .store
            .choose_directory()
            .map(|(index, root)| (index, root.to_path_buf()))?;
        let suffix = dfs_engine::rpc::random_u64()?;
        let temporary_path = block_format::temporary_path(&root, replica, suffix);
        let file = match UringFile::create_new(&temporary_path).await {
            Ok(file) => file,
            Err(error) => {
                let error = Error::io(format!("create {}", temporary_path.display()), error);
                self.note_io_error(dir_index, &error);
                return Err(error);
            }
        };
        Ok(UringBlockWriter {
            store: Arc::clone(self),
            claim: Some(claim),
            flush_failures: self.group_sync.failures(dir_index),
            dir_index,
            root,
            temporary_path,
            file: Some(file),
            chunks: ChunkSequence::new(replica),
            failed: false,
            sealed: false,
            durable,
            written_back_bytes: 0,
        })
    }
}

/// A block being written through the ring. Dropping it without `seal`
/// removes its temporary file: nothing of an unsealed block is served.
pub(crate) struct UringBlockWriter {
    store: Arc<Store>,
    /// The block id claimed in the store; taken by the seal.
    claim: Option<Claim>,
    /// Index of the data directory the block goes to.
    dir_index: usize,
    root: PathBuf,
    temporary_path: PathBuf,
    /// Closed before a shared flush: blocks waiting for one hold no
    /// descriptor.
    file: Option<UringFile>,
    /// `GroupSync::failures` of the directory when the block started.
    flush_failures: u64,
    /// The chunks written so far, their checksums, and the block's CRC32C.
    chunks: ChunkSequence,
    /// A write failed; the block can't be sealed.
    failed: bool,
    sealed: bool,
    /// Start writing back as data arrives (the block will be synced).
    durable: bool,
    /// Bytes from the start handed to the disk so far.
    written_back_bytes: u64,
}

impl UringBlockWriter {
    fn block(&self) -> BlockId {
        self.chunks.replica().block
    }

    /// Appends chunks: `pieces` holds their bytes, `crcs` their CRC32C, which
    /// the caller checked against these very bytes when they arrived. Every
    /// chunk is `CHUNK_BYTES` long but the last of the block.
    pub(crate) async fn write_chunks(&mut self, pieces: SharedPieces, crcs: &[u32]) -> Result<()> {
        let block = self.block();
        let index = self.chunks.chunk_count();
        let refusal = if self.failed {
            Some(format!(
                "{block} chunk {index}: an earlier write of this block failed"
            ))
        } else if pieces.ranges.len() != crcs.len() {
            Some(format!(
                "{block} chunk {index}: a checksum per chunk is needed"
            ))
        } else {
            self.chunks
                .refusal_of_run(pieces.ranges.iter().map(|range| range.len()))
        };
        if let Some(why) = refusal {
            self.failed = true;
            return Err(Error::Invalid(format!("write {why}")));
        }
        let ranges = pieces.ranges.clone();
        let offset = self.chunks.length_bytes();
        let written = match self.file.as_mut() {
            Some(file) => file.write_vectored_all_at(pieces, offset).await,
            None => Err(io::Error::other("the file is closed")),
        };
        if let Err(error) = written {
            self.failed = true;
            let error = Error::io(
                format!(
                    "write {block} chunk {index} to {}",
                    self.temporary_path.display()
                ),
                error,
            );
            self.store.note_io_error(self.dir_index, &error);
            return Err(error);
        }
        for (range, crc) in ranges.iter().zip(crcs) {
            // Checked as a run above: it cannot be refused now.
            if let Err(why) = self.chunks.push(range.len(), *crc) {
                self.failed = true;
                return Err(Error::Invalid(format!("write {why}")));
            }
        }
        let length_bytes = self.chunks.length_bytes();
        self.store
            .metrics
            .written_bytes
            .inc_by(length_bytes - offset);
        let pending_bytes = length_bytes - self.written_back_bytes;
        if let (true, Some(file)) = (
            self.durable && pending_bytes >= WRITEBACK_STEP_BYTES,
            &self.file,
        ) {
            file.start_writeback(self.written_back_bytes, pending_bytes);
            self.written_back_bytes = length_bytes;
        }
        Ok(())
    }

    /// Writes the checksums and the footer, makes the file durable when
    /// `sync`, and moves it into `blocks/`. Returns the block's length. On
    /// error nothing is left under `blocks/` and the temporary file is removed.
    pub(crate) async fn seal(self, sync: bool) -> Result<u64> {
        let store = Arc::clone(&self.store);
        let dir_index = self.dir_index;
        let sealed = self.seal_here(sync).await;
        if let Err(error) = &sealed {
            store.note_io_error(dir_index, error);
        }
        sealed
    }

    async fn seal_here(mut self, sync: bool) -> Result<u64> {
        let block = self.block();
        if self.failed {
            return Err(Error::Invalid(format!(
                "seal {block}: an earlier write of this block failed"
            )));
        }
        let length_bytes = self.chunks.length_bytes();
        let tail = self.chunks.tail();
        let name = self.chunks.name();
        let tail_bytes = tail.len() as u64;
        // A small block shares its directory's flushes with every other one
        // sealed meanwhile (`group_sync`): one for its data before it gets
        // its name, one for the name. A large one, whose writeback started
        // as it arrived, syncs its own file and name.
        let shared_flush = sync && length_bytes < WRITEBACK_STEP_BYTES;
        let own_sync = sync && !shared_flush;
        let temporary = self.temporary_path.clone();
        let context = |what: &str| format!("{what} {block} in {}", temporary.display());
        let Some(file) = self.file.as_mut() else {
            return Err(Error::Invalid(format!("seal {block}: the file is closed")));
        };
        file.write_all_at(tail, length_bytes)
            .await
            .map_err(|e| Error::io(context("write checksums of"), e))?;
        if own_sync {
            file.sync_data()
                .await
                .map_err(|e| Error::io(context("sync"), e))?;
        }
        if shared_flush {
            self.file = None;
            self.shared_flush().await?;
        }
        let subdir = self
            .root
            .join(block_format::BLOCKS_DIR)
            .join(block_format::subdir_name(block));
        if !subdir.is_dir() {
            // Someone removed it since open; put it back.
            std::fs::create_dir_all(&subdir)
                .map_err(|e| Error::io(format!("create directory {}", subdir.display()), e))?;
        }
        let target = block_format::block_path(&self.root, &name);
        if !self.store.store.is_in_service(self.dir_index) {
            return Err(Error::Invalid(format!(
                "seal {block}: its data directory {} failed",
                self.root.display()
            )));
        }
        uring::rename(&self.temporary_path, &target)
            .await
            .map_err(|e| {
                Error::io(
                    format!("move {} to {}", temporary.display(), target.display()),
                    e,
                )
            })?;
        let synced = if shared_flush {
            self.shared_flush().await
        } else if own_sync {
            let synced = match UringFile::open(&subdir).await {
                Ok(directory) => directory.sync_all().await,
                Err(error) => Err(error),
            };
            synced.map_err(|e| Error::io(format!("sync directory {}", subdir.display()), e))
        } else {
            Ok(())
        };
        if let Err(error) = synced {
            // The name may not be durable: do not pretend the block is sealed.
            let _ = std::fs::remove_file(&target);
            return Err(error);
        }
        self.sealed = true;
        let file_bytes = length_bytes + tail_bytes;
        let claim = self
            .claim
            .take()
            .ok_or_else(|| Error::Invalid(format!("seal {block}: sealed already")))?;
        if let Err(error) = self
            .store
            .store
            .seal_claimed(claim, self.dir_index, name, file_bytes)
        {
            // Its directory failed meanwhile: not sealed after all.
            let _ = std::fs::remove_file(&target);
            return Err(error);
        }
        if let Some(stored) = name.stored(file_bytes) {
            self.store.note_stored(stored);
        }
        Ok(length_bytes)
    }
}

impl UringBlockWriter {
    /// Waits for a flush of the block's data directory that started now,
    /// and fails if it or any flush since the block started failed (the
    /// block's pages may have gone to the disk in any of them).
    async fn shared_flush(&self) -> Result<()> {
        let block = self.block();
        let group_sync = &self.store.group_sync;
        let root = self.root.display();
        group_sync
            .flush(self.dir_index)
            .await
            .map_err(|e| Error::io(format!("flush {root} for {block}"), e))?;
        if group_sync.failures(self.dir_index) != self.flush_failures {
            return Err(Error::io(
                format!("flush {root} for {block}"),
                io::Error::other("a flush of the directory failed since the block was started"),
            ));
        }
        Ok(())
    }
}

impl Drop for UringBlockWriter {
    fn drop(&mut self) {
        if !self.sealed {
            // Best effort: if this fails the file is removed at the next open.
            let _ = std::fs::remove_file(&self.temporary_path);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use dfs_engine::block_store;

    use super::*;

    use dfs_engine::limits::CHUNK_BYTES;
    use dfs_engine::msg::Generation;

    const CHUNK: usize = CHUNK_BYTES as usize;

    /// The replica of block `id` these tests write.
    fn rid(id: u64) -> ReplicaId {
        ReplicaId {
            block: BlockId(id),
            generation: Generation(id + 0x100),
        }
    }

    /// What a report says of the replica of block `id` holding `data`.
    fn stored_of(id: u64, data: &[u8]) -> StoredBlock {
        StoredBlock {
            block: BlockId(id),
            generation: rid(id).generation,
            length_bytes: data.len() as u64,
            crc32c: crc32c::crc32c(data),
        }
    }

    fn pattern(length_bytes: usize, seed: u8) -> Vec<u8> {
        (0..length_bytes)
            .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed))
            .collect()
    }

    fn open_store() -> (tempfile::TempDir, Arc<Store>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlockStore::open(&[dir.path().to_path_buf()]).expect("open");
        (dir, Arc::new(Store::new(store)))
    }

    /// Writes `data` in writes of `chunks_per_write` chunks and seals.
    async fn write(
        store: &Arc<Store>,
        block: BlockId,
        data: &[u8],
        chunks_per_write: usize,
        sync: bool,
    ) -> Result<u64> {
        let mut writer = store.create(rid(block.0), sync).await?;
        let bytes = Rc::new(data.to_vec());
        let ranges: Vec<_> = (0..data.len())
            .step_by(CHUNK)
            .map(|start| start..(start + CHUNK).min(data.len()))
            .collect();
        for group in ranges.chunks(chunks_per_write) {
            let crcs: Vec<u32> = group
                .iter()
                .map(|range| crc32c::crc32c(&data[range.clone()]))
                .collect();
            let pieces = SharedPieces {
                bytes: Rc::clone(&bytes),
                ranges: group.to_vec(),
            };
            writer.write_chunks(pieces, &crcs).await?;
        }
        writer.seal(sync).await
    }

    fn read_back(store: &Store, block: BlockId) -> Vec<u8> {
        let reader = store
            .block_store()
            .open_block(rid(block.0))
            .expect("open block");
        let mut data = Vec::new();
        let mut chunk = Vec::new();
        for index in 0..reader.chunk_count() {
            reader.read_chunk(index, &mut chunk).expect("read chunk");
            data.extend_from_slice(&chunk);
        }
        data
    }

    #[test]
    fn replicas_written_without_sync_are_made_durable_later_and_missing_ones_listed() {
        let (_dir, store) = open_store();
        let made = uring::run_core(async {
            write(&store, BlockId(0x51), &pattern(1000, 1), 1, false).await?;
            write(&store, BlockId(0x52), &pattern(3 * CHUNK, 2), 2, false).await?;
            // One, two (with the shared flush first), and one never written.
            let one = store.make_durable(&[rid(0x51)]).await?;
            let all = store
                .make_durable(&[rid(0x51), rid(0x52), rid(0x53)])
                .await?;
            Ok::<_, Error>((one, all))
        })
        .expect("runtime")
        .expect("made durable");
        assert_eq!(made, (Vec::new(), vec![rid(0x53)]));
        // Another generation of a block held here is not held either.
        let other = ReplicaId {
            block: BlockId(0x51),
            generation: Generation(7),
        };
        let missing = uring::run_core(store.make_durable(&[other]))
            .expect("runtime")
            .expect("answered");
        assert_eq!(missing, vec![other]);
        assert_eq!(read_back(&store, BlockId(0x52)), pattern(3 * CHUNK, 2));
        // A file removed after the lookup (a deletion the master ordered
        // runs beside a flush): not held, not an error.
        let path = store.block_store().sealed_path(rid(0x51)).expect("held");
        std::fs::remove_file(&path).expect("remove the file");
        let missing = uring::run_core(store.make_durable(&[rid(0x51), rid(0x52)]))
            .expect("runtime")
            .expect("answered");
        assert_eq!(missing, vec![rid(0x51)]);
    }

    #[test]
    fn a_small_durable_block_fails_when_a_flush_failed_during_its_write() {
        let (dir, store) = open_store();
        let block = BlockId(0x4f0);
        let data = pattern(1000, 3);
        let sealed = uring::run_core(async {
            let mut writer = store.create(rid(block.0), true).await?;
            let pieces = SharedPieces {
                bytes: Rc::new(data.clone()),
                ranges: std::iter::once(0..data.len()).collect(),
            };
            writer
                .write_chunks(pieces, &[crc32c::crc32c(&data)])
                .await?;
            // A flush for other blocks failed while this one was written:
            // its pages may have been among those that did not reach the disk.
            store.group_sync.note_failure(0);
            writer.seal(true).await
        })
        .expect("runtime");
        let error = sealed.expect_err("not durable");
        assert!(
            error
                .to_string()
                .contains("a flush of the directory failed"),
            "{error}"
        );
        assert!(!store.block_store().contains(rid(block.0)));
        let leftovers: Vec<_> = walk(dir.path());
        assert!(leftovers.is_empty(), "{leftovers:?}");
        // A block started after the failure is sealed as usual.
        let later = uring::run_core(write(&store, BlockId(0x4f1), &data, 1, true))
            .expect("runtime")
            .expect("sealed");
        assert_eq!(later, data.len() as u64);
    }

    /// Every file under `blocks/` and `tmp/` of a data directory.
    fn walk(root: &std::path::Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut pending = vec![root.join("blocks"), root.join("tmp")];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).expect("list").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pending.push(path);
                } else {
                    found.push(path);
                }
            }
        }
        found
    }

    #[test]
    fn blocks_written_through_the_ring_are_read_by_the_engine() {
        let (_dir, store) = open_store();
        let cases = [
            (0, 1, true),
            (1, 1, false),
            (CHUNK, 1, true),
            (CHUNK + 1, 1, false),
            (5 * CHUNK + 17, 2, true),
            (8 * CHUNK, 16, false),
            // Over WRITEBACK_STEP_BYTES: writeback starts before the seal.
            (130 * CHUNK + 5, 16, true),
        ];
        uring::run_core(async {
            for (number, (length_bytes, per_write, sync)) in cases.into_iter().enumerate() {
                let block = BlockId(0x500 + number as u64);
                let data = pattern(length_bytes, number as u8);
                let sealed = write(&store, block, &data, per_write, sync)
                    .await
                    .expect("write");
                assert_eq!(sealed, length_bytes as u64);
                assert_eq!(read_back(&store, block), data, "{length_bytes}");
            }
        })
        .expect("runtime");
        let usage = store.usage().expect("usage");
        assert_eq!(usage.block_count, cases.len() as u64);
        let file_bytes: u64 = cases
            .iter()
            .map(|(length, _, _)| (length + length.div_ceil(CHUNK) * 4 + 48) as u64)
            .sum();
        assert_eq!(usage.used_bytes, file_bytes);
    }

    #[test]
    fn a_quarantined_block_is_not_reported_stored_after_it_is_reported_bad() {
        let (_dir, store) = open_store();
        store.note_stored(stored_of(1, b"one"));
        store.note_stored(stored_of(2, b"two"));
        store.note_bad(rid(1), "checksum mismatch");
        assert_eq!(
            store.take_changes(),
            ChangeReport::Changes(vec![ReplicaChange::Stored(stored_of(2, b"two"))])
        );
        assert!(matches!(store.take_bad(), BadReport::Replicas(r) if r.len() == 1));
        // Nor put back after a report that failed: block 2 is not held here.
        store.restore_changes(vec![ReplicaChange::Stored(stored_of(2, b"two"))]);
        assert!(!store.has_changes());
    }

    #[test]
    fn deletions_are_reported_in_order_with_what_was_sealed() {
        let (_dir, store) = open_store();
        let data = pattern(10, 1);
        uring::run_core(async {
            write(&store, BlockId(0x900), &data, 1, false)
                .await
                .expect("write");
        })
        .expect("runtime");
        // Deleted as asked, and a deletion of a replica that is not here:
        // both confirmed, after the seal, in order.
        assert!(store.remove(rid(0x900)).expect("remove"));
        assert!(!store.remove(rid(0x901)).expect("remove"));
        let expected = vec![
            ReplicaChange::Stored(stored_of(0x900, &data)),
            ReplicaChange::Deleted(rid(0x900)),
            ReplicaChange::Deleted(rid(0x901)),
        ];
        assert_eq!(
            store.take_changes(),
            ChangeReport::Changes(expected.clone())
        );
        // A report that failed goes back before newer changes, and the
        // stored replica that is gone since is dropped from it.
        store.note_stored(stored_of(0x902, b"x"));
        store.restore_changes(expected[..2].to_vec());
        assert_eq!(
            store.take_changes(),
            ChangeReport::Changes(vec![
                ReplicaChange::Deleted(rid(0x900)),
                ReplicaChange::Stored(stored_of(0x902, b"x")),
            ])
        );
        // A full report covers what was sealed, not what was deleted.
        store.note_stored(stored_of(0x903, b"y"));
        assert!(!store.remove(rid(0x904)).expect("remove"));
        store.forget_stored_changes();
        assert_eq!(
            store.take_changes(),
            ChangeReport::Changes(vec![ReplicaChange::Deleted(rid(0x904))])
        );
    }

    #[test]
    fn sealed_blocks_are_reported_and_removed_blocks_leave_the_usage() {
        let (_dir, store) = open_store();
        let empty = store.usage().expect("usage");
        uring::run_core(async {
            for (block, length_bytes) in [(0x700, CHUNK + 1), (0x701, 3)] {
                write(&store, BlockId(block), &pattern(length_bytes, 1), 1, false)
                    .await
                    .expect("write");
            }
        })
        .expect("runtime");
        let stored = |block, length_bytes| {
            ReplicaChange::Stored(stored_of(block, &pattern(length_bytes, 1)))
        };
        assert_eq!(
            store.take_changes(),
            ChangeReport::Changes(vec![stored(0x700, CHUNK + 1), stored(0x701, 3)])
        );
        assert!(!store.has_changes());
        assert_eq!(store.take_changes(), ChangeReport::Changes(Vec::new()));
        // A report that did not go through is sent again.
        store.restore_changes(vec![stored(0x701, 3)]);
        assert_eq!(
            store.take_changes(),
            ChangeReport::Changes(vec![stored(0x701, 3)])
        );
        let full = store.usage().expect("usage");
        assert_eq!(full.block_count, empty.block_count + 2);
        assert!(store.remove(rid(0x700)).expect("remove"));
        assert!(!store.remove(rid(0x700)).expect("remove again"));
        let after = store.usage().expect("usage");
        assert_eq!(after.block_count, empty.block_count + 1);
        assert_eq!(after.used_bytes, empty.used_bytes + 3 + 4 + 48);
        assert_eq!(
            store.block_store().list(),
            [stored_of(0x701, &pattern(3, 1))]
        );
    }

    #[test]
    fn existing_and_open_ids_are_refused_and_aborts_leave_nothing() {
        let (dir, store) = open_store();
        uring::run_core(async {
            write(&store, BlockId(1), b"one", 1, false)
                .await
                .expect("write");
            let error = store.create(rid(1), false).await.err().expect("sealed id");
            assert!(block_store::is_already_exists(&error), "{error}");

            let writer = store.create(rid(2), false).await.expect("create");
            let error = store.create(rid(2), false).await.err().expect("open id");
            assert!(block_store::is_already_exists(&error), "{error}");
            drop(writer);
            let tmp = std::fs::read_dir(dir.path().join("tmp")).expect("tmp");
            assert_eq!(tmp.count(), 0, "an abandoned block leaves no file");
            store.create(rid(2), false).await.expect("free again");
        })
        .expect("runtime");
    }

    #[test]
    fn chunk_rules_are_enforced() {
        let (_dir, store) = open_store();
        uring::run_core(async {
            let cases: [(&[usize], &str); 3] = [
                (&[CHUNK + 1], "a chunk of 65537 bytes"),
                (&[10, 10], "after the short last chunk"),
                (&[0], "a chunk of 0 bytes"),
            ];
            for (number, (lengths, expected)) in cases.into_iter().enumerate() {
                let mut writer = store
                    .create(rid(10 + number as u64), true)
                    .await
                    .expect("create");
                let data = pattern(lengths.iter().sum(), 1);
                let mut start = 0;
                let ranges: Vec<_> = lengths
                    .iter()
                    .map(|length| {
                        start += length;
                        start - length..start
                    })
                    .collect();
                let crcs: Vec<u32> = ranges
                    .iter()
                    .map(|range| crc32c::crc32c(&data[range.clone()]))
                    .collect();
                let pieces = SharedPieces {
                    bytes: Rc::new(data),
                    ranges,
                };
                let error = writer
                    .write_chunks(pieces, &crcs)
                    .await
                    .expect_err(expected);
                assert!(error.to_string().contains(expected), "{error}");
                let error = writer.seal(false).await.expect_err("failed writer");
                assert!(error.to_string().contains("earlier write"), "{error}");
            }
        })
        .expect("runtime");
        assert_eq!(store.block_store().list(), vec![]);
    }

    #[test]
    fn io_errors_are_judged_for_their_directory() {
        let dirs: Vec<tempfile::TempDir> = (0..2)
            .map(|_| tempfile::tempdir().expect("tempdir"))
            .collect();
        let paths: Vec<PathBuf> = dirs.iter().map(|d| d.path().to_path_buf()).collect();
        let store = Arc::new(Store::new(BlockStore::open(&paths).expect("open")));
        let os = |code| Error::io("write", io::Error::from_raw_os_error(code));

        store.note_io_error(0, &os(libc::ENOSPC));
        let states = store.block_store().directory_states();
        assert!(states[0].full && states[0].failure.is_none(), "{states:?}");

        store.note_io_error(1, &os(libc::ENOENT));
        assert!(store.take_check_request(1), "a check is asked for");
        assert!(!store.take_check_request(1), "once");
        assert!(!store.take_check_request(0));

        store.note_io_error(0, &os(libc::EMFILE));
        assert_eq!(store.block_store().directories_in_service(), 2);
        assert!(!store.has_failed_directories());

        store.note_io_error(0, &os(libc::EIO));
        store.note_io_error(0, &os(libc::EIO));
        assert!(!store.block_store().is_in_service(0));
        let failures = store.take_failed_directories();
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert_eq!(failures[0].directory, paths[0].display().to_string());
        assert!(
            failures[0].reason.contains("Input/output error"),
            "{failures:?}"
        );
        assert_eq!(store.failed_directories(), failures);

        // New blocks go to the other directory; with none left, writes are refused.
        uring::run_core(async {
            write(&store, BlockId(0x40), b"here", 1, true)
                .await
                .expect("write");
        })
        .expect("runtime");
        let name = store.block_store().holding(BlockId(0x40)).expect("held");
        assert!(dfs_engine::block_format::block_path(&paths[1], &name).is_file());
        assert_eq!(
            store.list_for_report().expect("list"),
            vec![stored_of(0x40, b"here")]
        );
        assert!(store.fail_directory(1, "gone"));
        assert!(!store.fail_directory(1, "gone again"));
        uring::run_core(async {
            let error = write(&store, BlockId(0x41), b"nowhere", 1, true)
                .await
                .expect_err("no directory left");
            assert!(
                error.to_string().contains("every data directory"),
                "{error}"
            );
        })
        .expect("runtime");
        assert_eq!(store.usage().expect("usage").block_count, 0);
    }

    #[test]
    fn bad_replicas_and_suspects_are_bounded() {
        let (_dir, store) = open_store();
        let long = "x".repeat(BAD_REPLICA_REASON_BYTES_MAX + 10) + "\nsecond line";
        store.note_bad(rid(1), &long);
        let BadReport::Replicas(replicas) = store.take_bad() else {
            panic!("a full report");
        };
        assert_eq!(replicas[0].reason.len(), BAD_REPLICA_REASON_BYTES_MAX);
        assert!(!store.has_bad());
        for block in 0..=BAD_REPLICAS_QUEUED_MAX as u64 {
            store.note_bad(rid(block), "bad");
        }
        assert_eq!(store.take_bad(), BadReport::Full);
        store.restore_bad(vec![QuarantinedReplica {
            replica: rid(9),
            reason: "bad".into(),
        }]);
        assert!(store.has_bad());

        store.suspect(BlockId(7));
        store.suspect(BlockId(7));
        for block in 100..100 + SUSPECTS_QUEUED_MAX as u64 {
            store.suspect(BlockId(block));
        }
        let mut taken = Vec::new();
        while let Some(block) = store.take_suspect() {
            taken.push(block);
        }
        assert_eq!(taken.len(), SUSPECTS_QUEUED_MAX);
        assert_eq!(taken[0], BlockId(7));
        assert_eq!(taken[1], BlockId(100), "no duplicate");
    }

    #[test]
    fn quarantined_replicas_are_listed_for_the_master_until_a_good_copy_comes() {
        let (_dir, store) = open_store();
        uring::run_core(async {
            for block in [0x50, 0x51] {
                write(&store, BlockId(block), &pattern(CHUNK + 3, 2), 1, true)
                    .await
                    .expect("write");
            }
        })
        .expect("runtime");
        assert!(store
            .block_store()
            .quarantine(rid(0x51), None)
            .expect("quarantine"));
        let data = pattern(CHUNK + 3, 2);
        assert_eq!(
            store.list_for_report().expect("list"),
            vec![stored_of(0x50, &data), stored_of(0x51, &data)],
            "held until the master deletes it"
        );
        assert_eq!(store.usage().expect("usage").block_count, 1);
        // A good copy sealed again supersedes the quarantined one.
        uring::run_core(async {
            write(&store, BlockId(0x51), &pattern(CHUNK + 3, 2), 1, true)
                .await
                .expect("write again");
        })
        .expect("runtime");
        assert_eq!(store.block_store().quarantined(), vec![]);
        assert_eq!(read_back(&store, BlockId(0x51)), pattern(CHUNK + 3, 2));
        assert!(store.remove(rid(0x51)).expect("remove"));
    }
}
