//! Writing blocks on the data path through io_uring: the counterpart of
//! `BlockStore::create` and `BlockWriter` for the cores. It writes exactly
//! the block file layout of `dfs_engine::block_store` (data, CRC32C array,
//! footer; docs/format.md) under the same `tmp/` and `blocks/` names, so the
//! engine's `BlockReader`, scans and start-up cleaning see no difference.
//!
//! `Store` is also where the data path leaves news for the background: what
//! an I/O error said about a data directory (a full one gets no new blocks,
//! a failed one is taken out of service), blocks a reader found bad (for the
//! keepers in `scrub` to verify at once), and what the heartbeat must tell
//! the master (sealed blocks, bad replicas, failed directories).
//!
//! Invariant: a block id is in at most one of "being written" or "sealed"
//! on this minion, as in `BlockStore`. All writes of a minion go through
//! one `Store`, whose claim set is the only state the cores share on the
//! write path, touched once at the start and once at the end of a block.

use dfs_engine::sync;
use std::collections::{HashSet, VecDeque};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use dfs_engine::block_store::{
    BlockStore, Usage, BLOCK_FOOTER_BYTES, BLOCK_FORMAT_VERSION, BLOCK_MAGIC,
};
use dfs_engine::limits::{BLOCK_BYTES_MAX, CHUNK_BYTES, STORED_BLOCKS_QUEUED_MAX};
use dfs_engine::msg::{BlockId, StoredBlock};
use dfs_engine::{Error, Result};

use crate::group_sync::GroupSync;
use crate::health::{classify, Activity, Doorbell, Fault};
use crate::uring::{self, SharedPieces, UringFile};

/// Bytes of one stored chunk checksum.
const CRC_BYTES: usize = 4;
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
    /// Blocks with an open writer here: at most one per connection.
    writing: Mutex<HashSet<BlockId>>,
    /// Sealed since the last incremental report to the master.
    stored: Mutex<ReportQueue<StoredBlock>>,
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

/// What the heartbeat should tell the master about new blocks.
#[derive(Debug, PartialEq, Eq)]
pub enum StoredReport {
    /// These blocks were sealed since the last report.
    Blocks(Vec<StoredBlock>),
    /// Too many to list: report everything.
    Full,
}

/// A replica found bad and quarantined here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuarantinedReplica {
    pub block: BlockId,
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
        Store {
            store,
            writing: Mutex::new(HashSet::new()),
            stored: Mutex::new(ReportQueue::default()),
            bad: Mutex::new(ReportQueue::default()),
            failed_directories: Mutex::new(Vec::new()),
            suspects: Mutex::new(VecDeque::new()),
            check_requested,
            activity: Arc::new(Activity::new()),
            doorbell: Doorbell::default(),
            group_sync,
        }
    }

    /// Removes a sealed block (or its quarantined replica); true when it
    /// was here. Blocks being written are left alone (they are not sealed).
    pub fn remove(&self, block: BlockId) -> Result<bool> {
        Ok(self.store.remove(block)?.is_some())
    }

    /// Remembers a sealed block for the next incremental report.
    pub fn note_stored(&self, block: BlockId, length_bytes: u64) {
        let stored = StoredBlock {
            block,
            length_bytes,
        };
        sync::lock(&self.stored).push(stored, STORED_BLOCKS_QUEUED_MAX);
    }

    /// True when blocks wait to be reported.
    pub fn has_stored(&self) -> bool {
        sync::lock(&self.stored).is_pending()
    }

    /// Takes what was sealed since the last call.
    pub fn take_stored(&self) -> StoredReport {
        match sync::lock(&self.stored).take() {
            Some(blocks) => StoredReport::Blocks(blocks),
            None => StoredReport::Full,
        }
    }

    /// Puts back blocks whose report did not reach the master, except
    /// those quarantined (or removed) meanwhile: reported after the bad
    /// replica, they would tell the master it is good again.
    pub fn restore_stored(&self, blocks: Vec<StoredBlock>) {
        for stored in blocks {
            if self.store.contains(stored.block) {
                self.note_stored(stored.block, stored.length_bytes);
            }
        }
    }

    /// Remembers a quarantined replica for the next report to the master.
    pub fn note_bad(&self, block: BlockId, reason: &str) {
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
        sync::lock(&self.stored)
            .items
            .retain(|stored| stored.block != block);
        sync::lock(&self.bad).push(
            QuarantinedReplica { block, reason },
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
            self.note_bad(replica.block, &replica.reason);
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
        match classify(error) {
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

    /// The blocks of the directories in service, for a full block report,
    /// sorted: the sealed ones and the quarantined ones (the master counts
    /// those as held until it has them deleted, after they are reported
    /// bad). A directory that can't be listed is judged
    /// (`note_io_error`); the list is an error if that leaves it in
    /// service, so that no healthy directory's blocks go missing from a
    /// report.
    pub fn list_for_report(&self) -> Result<Vec<BlockId>> {
        let (scan, errors) = self.store.scan_directories();
        let mut still_serving = None;
        for (index, error) in errors {
            self.note_io_error(index, &error);
            if self.store.is_in_service(index) {
                still_serving = Some(error);
            }
        }
        if let Some(error) = still_serving {
            return Err(error);
        }
        let mut blocks = scan.blocks;
        blocks.extend(self.store.quarantined()?);
        blocks.sort_unstable();
        blocks.dedup();
        Ok(blocks)
    }

    pub fn block_store(&self) -> &BlockStore {
        &self.store
    }

    /// Space and blocks of the directories in service.
    pub fn usage(&self) -> Result<Usage> {
        self.store.usage()
    }

    /// Starts a new block in the data directory `BlockStore::choose_directory`
    /// picks. Refuses an id that is sealed or being written here. A
    /// `durable` block starts its writeback as it arrives.
    pub(crate) async fn create(
        self: &Arc<Store>,
        block: BlockId,
        durable: bool,
    ) -> Result<UringBlockWriter> {
        let claim = Claim::take(self, block)?;
        let (dir_index, root) = self
            .store
            .choose_directory()
            .map(|(index, root)| (index, root.to_path_buf()))?;
        let suffix = dfs_engine::rpc::random_u64()?;
        let temporary_path = root.join("tmp").join(format!("{block}.{suffix:016x}"));
        let file = match UringFile::create_new(&temporary_path).await {
            Ok(file) => file,
            Err(error) => {
                let error = Error::io(format!("create {}", temporary_path.display()), error);
                self.note_io_error(dir_index, &error);
                return Err(error);
            }
        };
        Ok(UringBlockWriter {
            claim,
            flush_failures: self.group_sync.failures(dir_index),
            dir_index,
            root,
            temporary_path,
            file: Some(file),
            length_bytes: 0,
            crc_array: Vec::new(),
            short_chunk_written: false,
            failed: false,
            sealed: false,
            durable,
            written_back_bytes: 0,
        })
    }
}

/// Marks a block as being written for as long as it lives.
struct Claim {
    store: Arc<Store>,
    block: BlockId,
}

impl Claim {
    fn take(store: &Arc<Store>, block: BlockId) -> Result<Claim> {
        let mut writing = sync::lock(&store.writing);
        if writing.contains(&block) || store.store.contains(block) {
            return Err(Error::io(
                format!("create {block}: the block exists or is being written"),
                io::ErrorKind::AlreadyExists.into(),
            ));
        }
        writing.insert(block);
        Ok(Claim {
            store: Arc::clone(store),
            block,
        })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        sync::lock(&self.store.writing).remove(&self.block);
    }
}

/// The 32-byte footer of a block file, as `dfs_engine::block_store` reads it.
fn footer(block: BlockId, length_bytes: u64, crc_array: &[u8]) -> [u8; BLOCK_FOOTER_BYTES] {
    let mut footer = [0u8; BLOCK_FOOTER_BYTES];
    footer[0..4].copy_from_slice(&BLOCK_MAGIC.to_le_bytes());
    footer[4..6].copy_from_slice(&BLOCK_FORMAT_VERSION.to_le_bytes());
    // 6..8: reserved, zero.
    footer[8..16].copy_from_slice(&block.0.to_le_bytes());
    footer[16..24].copy_from_slice(&length_bytes.to_le_bytes());
    footer[24..28].copy_from_slice(&CHUNK_BYTES.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(crc_array), &footer[..28]);
    footer[28..32].copy_from_slice(&crc.to_le_bytes());
    footer
}

/// A block being written through the ring. Dropping it without `seal`
/// removes its temporary file: nothing of an unsealed block is served.
pub(crate) struct UringBlockWriter {
    claim: Claim,
    /// Index of the data directory the block goes to.
    dir_index: usize,
    root: PathBuf,
    temporary_path: PathBuf,
    /// Closed before a shared flush: blocks waiting for one hold no
    /// descriptor.
    file: Option<UringFile>,
    /// `GroupSync::failures` of the directory when the block started.
    flush_failures: u64,
    length_bytes: u64,
    /// Checksums of the chunks written so far, as stored (u32 LE each).
    crc_array: Vec<u8>,
    short_chunk_written: bool,
    /// A write failed; the block can't be sealed.
    failed: bool,
    sealed: bool,
    /// Start writing back as data arrives (the block will be synced).
    durable: bool,
    /// Bytes from the start handed to the disk so far.
    written_back_bytes: u64,
}

impl UringBlockWriter {
    /// Appends chunks: `pieces` holds their bytes, `crcs` their CRC32C, which
    /// the caller checked against these very bytes when they arrived. Every
    /// chunk is `CHUNK_BYTES` long but the last of the block.
    pub(crate) async fn write_chunks(&mut self, pieces: SharedPieces, crcs: &[u32]) -> Result<()> {
        let block = self.claim.block;
        let index = self.crc_array.len() / CRC_BYTES;
        let refuse = |why: String| Error::Invalid(format!("write {block} chunk {index}: {why}"));
        let mut added_bytes = 0u64;
        let mut short = self.short_chunk_written;
        let mut checked = if self.failed {
            Err(refuse("an earlier write of this block failed".into()))
        } else if pieces.ranges.len() != crcs.len() {
            Err(refuse("a checksum per chunk is needed".into()))
        } else {
            Ok(())
        };
        for range in &pieces.ranges {
            if checked.is_err() {
                break;
            }
            let length = range.len();
            checked = if short {
                Err(refuse("a chunk after the short last chunk".into()))
            } else if length == 0 || length > CHUNK_BYTES as usize {
                Err(refuse(format!(
                    "a chunk of {length} bytes (chunks have 1 to {CHUNK_BYTES})"
                )))
            } else if self.length_bytes + added_bytes + length as u64 > BLOCK_BYTES_MAX {
                Err(refuse(format!(
                    "the block grows over {BLOCK_BYTES_MAX} bytes"
                )))
            } else {
                Ok(())
            };
            added_bytes += length as u64;
            short = length < CHUNK_BYTES as usize;
        }
        if let Err(error) = checked {
            self.failed = true;
            return Err(error);
        }
        let written = match self.file.as_mut() {
            Some(file) => file.write_vectored_all_at(pieces, self.length_bytes).await,
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
            self.claim.store.note_io_error(self.dir_index, &error);
            return Err(error);
        }
        self.length_bytes += added_bytes;
        self.short_chunk_written = short;
        for crc in crcs {
            self.crc_array.extend_from_slice(&crc.to_le_bytes());
        }
        let pending_bytes = self.length_bytes - self.written_back_bytes;
        if let (true, Some(file)) = (
            self.durable && pending_bytes >= WRITEBACK_STEP_BYTES,
            &self.file,
        ) {
            file.start_writeback(self.written_back_bytes, pending_bytes);
            self.written_back_bytes = self.length_bytes;
        }
        Ok(())
    }

    /// Writes the checksums and the footer, makes the file durable when
    /// `sync`, and moves it into `blocks/`. Returns the block's length. On
    /// error nothing is left under `blocks/` and the temporary file is removed.
    pub(crate) async fn seal(self, sync: bool) -> Result<u64> {
        let store = Arc::clone(&self.claim.store);
        let dir_index = self.dir_index;
        let sealed = self.seal_here(sync).await;
        if let Err(error) = &sealed {
            store.note_io_error(dir_index, error);
        }
        sealed
    }

    async fn seal_here(mut self, sync: bool) -> Result<u64> {
        let block = self.claim.block;
        if self.failed {
            return Err(Error::Invalid(format!(
                "seal {block}: an earlier write of this block failed"
            )));
        }
        let expected_chunks = self.length_bytes.div_ceil(u64::from(CHUNK_BYTES));
        if expected_chunks * CRC_BYTES as u64 != self.crc_array.len() as u64 {
            return Err(Error::Invalid(format!(
                "seal {block}: {} checksums for {expected_chunks} chunks",
                self.crc_array.len() / CRC_BYTES
            )));
        }
        let mut tail = std::mem::take(&mut self.crc_array);
        let footer = footer(block, self.length_bytes, &tail);
        tail.extend_from_slice(&footer);
        let tail_bytes = tail.len() as u64;
        // A small block shares its directory's flushes with every other one
        // sealed meanwhile (`group_sync`): one for its data before it gets
        // its name, one for the name. A large one, whose writeback started
        // as it arrived, syncs its own file and name.
        let shared_flush = sync && self.length_bytes < WRITEBACK_STEP_BYTES;
        let own_sync = sync && !shared_flush;
        let temporary = self.temporary_path.clone();
        let context = |what: &str| format!("{what} {block} in {}", temporary.display());
        let Some(file) = self.file.as_mut() else {
            return Err(Error::Invalid(format!("seal {block}: the file is closed")));
        };
        file.write_all_at(tail, self.length_bytes)
            .await
            .map_err(|e| Error::io(context("write checksums of"), e))?;
        if own_sync {
            file.sync_data()
                .await
                .map_err(|e| Error::io(context("sync"), e))?;
        }
        let store = Arc::clone(&self.claim.store);
        if shared_flush {
            self.file = None;
            self.shared_flush().await?;
        }
        let subdir = self
            .root
            .join("blocks")
            .join(format!("{:02x}", block.0 & 0xff));
        if !subdir.is_dir() {
            // Someone removed it since open; put it back.
            std::fs::create_dir_all(&subdir)
                .map_err(|e| Error::io(format!("create directory {}", subdir.display()), e))?;
        }
        let target = subdir.join(block.to_string());
        if !store.store.is_in_service(self.dir_index) {
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
        let file_bytes = self.length_bytes + tail_bytes;
        if let Err(error) = store.store.note_sealed(self.dir_index, block, file_bytes) {
            // Sealed all the same; a quarantined replica left over is removed
            // by the master's Delete or the next good copy.
            tracing::warn!("{block}: {error}");
        }
        store.note_stored(block, self.length_bytes);
        Ok(self.length_bytes)
    }
}

impl UringBlockWriter {
    /// Waits for a flush of the block's data directory that started now,
    /// and fails if it or any flush since the block started failed (the
    /// block's pages may have gone to the disk in any of them).
    async fn shared_flush(&self) -> Result<()> {
        let block = self.claim.block;
        let group_sync = &self.claim.store.group_sync;
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

    const CHUNK: usize = CHUNK_BYTES as usize;

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
        let mut writer = store.create(block, sync).await?;
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
        let reader = store.block_store().open_block(block).expect("open block");
        let mut data = Vec::new();
        let mut chunk = Vec::new();
        for index in 0..reader.chunk_count() {
            reader.read_chunk(index, &mut chunk).expect("read chunk");
            data.extend_from_slice(&chunk);
        }
        data
    }

    #[test]
    fn a_small_durable_block_fails_when_a_flush_failed_during_its_write() {
        let (dir, store) = open_store();
        let block = BlockId(0x4f0);
        let data = pattern(1000, 3);
        let sealed = uring::run_core(async {
            let mut writer = store.create(block, true).await?;
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
        assert!(!store.block_store().contains(block));
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
            .map(|(length, _, _)| (length + length.div_ceil(CHUNK) * 4 + 32) as u64)
            .sum();
        assert_eq!(usage.used_bytes, file_bytes);
    }

    #[test]
    fn a_quarantined_block_is_not_reported_stored_after_it_is_reported_bad() {
        let (_dir, store) = open_store();
        store.note_stored(BlockId(1), 10);
        store.note_stored(BlockId(2), 20);
        store.note_bad(BlockId(1), "checksum mismatch");
        assert_eq!(
            store.take_stored(),
            StoredReport::Blocks(vec![StoredBlock {
                block: BlockId(2),
                length_bytes: 20
            }])
        );
        assert!(matches!(store.take_bad(), BadReport::Replicas(r) if r.len() == 1));
        // Nor put back after a report that failed: block 2 is not held here.
        store.restore_stored(vec![StoredBlock {
            block: BlockId(2),
            length_bytes: 20,
        }]);
        assert!(!store.has_stored());
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
        let stored = |block, length_bytes| StoredBlock {
            block: BlockId(block),
            length_bytes,
        };
        assert_eq!(
            store.take_stored(),
            StoredReport::Blocks(vec![stored(0x700, CHUNK as u64 + 1), stored(0x701, 3)])
        );
        assert!(!store.has_stored());
        assert_eq!(store.take_stored(), StoredReport::Blocks(Vec::new()));
        // A report that did not go through is sent again.
        store.restore_stored(vec![stored(0x701, 3)]);
        assert_eq!(
            store.take_stored(),
            StoredReport::Blocks(vec![stored(0x701, 3)])
        );
        let full = store.usage().expect("usage");
        assert_eq!(full.block_count, empty.block_count + 2);
        assert!(store.remove(BlockId(0x700)).expect("remove"));
        assert!(!store.remove(BlockId(0x700)).expect("remove again"));
        let after = store.usage().expect("usage");
        assert_eq!(after.block_count, empty.block_count + 1);
        assert_eq!(after.used_bytes, empty.used_bytes + 3 + 4 + 32);
        assert_eq!(store.block_store().list().expect("list"), [BlockId(0x701)]);
    }

    #[test]
    fn existing_and_open_ids_are_refused_and_aborts_leave_nothing() {
        let (dir, store) = open_store();
        uring::run_core(async {
            write(&store, BlockId(1), b"one", 1, false)
                .await
                .expect("write");
            let error = store
                .create(BlockId(1), false)
                .await
                .err()
                .expect("sealed id");
            assert!(block_store::is_already_exists(&error), "{error}");

            let writer = store.create(BlockId(2), false).await.expect("create");
            let error = store
                .create(BlockId(2), false)
                .await
                .err()
                .expect("open id");
            assert!(block_store::is_already_exists(&error), "{error}");
            drop(writer);
            let tmp = std::fs::read_dir(dir.path().join("tmp")).expect("tmp");
            assert_eq!(tmp.count(), 0, "an abandoned block leaves no file");
            store.create(BlockId(2), false).await.expect("free again");
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
                    .create(BlockId(10 + number as u64), true)
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
        assert_eq!(store.block_store().list().expect("list"), vec![]);
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
        assert!(paths[1].join("blocks/40/blk_0000000000000040").is_file());
        assert_eq!(store.list_for_report().expect("list"), vec![BlockId(0x40)]);
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
        store.note_bad(BlockId(1), &long);
        let BadReport::Replicas(replicas) = store.take_bad() else {
            panic!("a full report");
        };
        assert_eq!(replicas[0].reason.len(), BAD_REPLICA_REASON_BYTES_MAX);
        assert!(!store.has_bad());
        for block in 0..=BAD_REPLICAS_QUEUED_MAX as u64 {
            store.note_bad(BlockId(block), "bad");
        }
        assert_eq!(store.take_bad(), BadReport::Full);
        store.restore_bad(vec![QuarantinedReplica {
            block: BlockId(9),
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
            .quarantine(BlockId(0x51), None)
            .expect("quarantine"));
        assert_eq!(
            store.list_for_report().expect("list"),
            vec![BlockId(0x50), BlockId(0x51)],
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
        assert_eq!(
            store.block_store().quarantined().expect("quarantined"),
            vec![]
        );
        assert_eq!(read_back(&store, BlockId(0x51)), pattern(CHUNK + 3, 2));
        assert!(store.remove(BlockId(0x51)).expect("remove"));
    }
}
