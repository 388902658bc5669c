//! Writing blocks on the data path through io_uring: the counterpart of
//! `BlockStore::create` and `BlockWriter` for the cores. It writes exactly
//! the block file layout of `dfs_engine::block_store` (data, CRC32C array,
//! footer; docs/format.md) under the same `tmp/` and `blocks/` names, so the
//! engine's `BlockReader`, scans and start-up cleaning see no difference.
//!
//! Invariant: a block id is in at most one of "being written" or "sealed"
//! on this minion, as in `BlockStore`. All writes of a minion go through
//! one `Store`, whose claim set is the only state the cores share on the
//! write path, touched once at the start and once at the end of a block.

use std::collections::HashSet;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use dfs_engine::block_store::{
    BlockStore, Usage, BLOCK_FOOTER_BYTES, BLOCK_FORMAT_VERSION, BLOCK_MAGIC,
};
use dfs_engine::limits::{BLOCK_BYTES_MAX, CHUNK_BYTES, STORED_BLOCKS_QUEUED_MAX};
use dfs_engine::msg::{BlockId, StoredBlock};
use dfs_engine::{Error, Result};

use crate::uring::{self, SharedPieces, UringFile};

/// Bytes of one stored chunk checksum.
const CRC_BYTES: usize = 4;
/// A durable block's data is handed to the disk every this many bytes as it
/// arrives, so the disk writes while the network transfers and the seal's
/// fdatasync has at most this much left to write.
const WRITEBACK_STEP_BYTES: u64 = 8 * 1024 * 1024;

/// The block store of a minion as the cores write to it.
pub struct Store {
    store: BlockStore,
    /// Blocks with an open writer here: at most one per connection.
    writing: Mutex<HashSet<BlockId>>,
    /// Sealed by the cores since start (the engine's `BlockStore` counts
    /// what it found at open and what its own writers sealed).
    sealed_bytes: AtomicU64,
    sealed_count: AtomicU64,
    /// Sealed since the last incremental report to the master.
    stored: Mutex<StoredQueue>,
}

/// Blocks to report as stored, bounded: past the bound only a flag is
/// kept, and the heartbeat sends a full block report instead.
#[derive(Default)]
struct StoredQueue {
    blocks: Vec<StoredBlock>,
    overflowed: bool,
}

/// What the heartbeat should tell the master about new blocks.
#[derive(Debug, PartialEq, Eq)]
pub enum StoredReport {
    /// These blocks were sealed since the last report.
    Blocks(Vec<StoredBlock>),
    /// Too many to list: report everything.
    Full,
}

impl Store {
    pub fn new(store: BlockStore) -> Store {
        Store {
            store,
            writing: Mutex::new(HashSet::new()),
            sealed_bytes: AtomicU64::new(0),
            sealed_count: AtomicU64::new(0),
            stored: Mutex::new(StoredQueue::default()),
        }
    }

    /// Removes a sealed block; true when it was here. Blocks being written
    /// are left alone (they are not sealed).
    pub fn remove(&self, block: BlockId) -> Result<bool> {
        Ok(self.store.remove(block)?.is_some())
    }

    /// Remembers a sealed block for the next incremental report.
    pub fn note_stored(&self, block: BlockId, length_bytes: u64) {
        let mut queue = self.stored.lock().unwrap_or_else(PoisonError::into_inner);
        if queue.blocks.len() < STORED_BLOCKS_QUEUED_MAX {
            queue.blocks.push(StoredBlock {
                block,
                length_bytes,
            });
        } else {
            queue.overflowed = true;
        }
    }

    /// True when blocks wait to be reported.
    pub fn has_stored(&self) -> bool {
        let queue = self.stored.lock().unwrap_or_else(PoisonError::into_inner);
        !queue.blocks.is_empty() || queue.overflowed
    }

    /// Takes what was sealed since the last call.
    pub fn take_stored(&self) -> StoredReport {
        let mut queue = self.stored.lock().unwrap_or_else(PoisonError::into_inner);
        let taken = std::mem::take(&mut *queue);
        if taken.overflowed {
            StoredReport::Full
        } else {
            StoredReport::Blocks(taken.blocks)
        }
    }

    /// Puts back blocks whose report did not reach the master.
    pub fn restore_stored(&self, blocks: Vec<StoredBlock>) {
        for stored in blocks {
            self.note_stored(stored.block, stored.length_bytes);
        }
    }

    pub fn block_store(&self) -> &BlockStore {
        &self.store
    }

    /// Space and blocks, including those sealed through this `Store`.
    pub fn usage(&self) -> Result<Usage> {
        let mut usage = self.store.usage()?;
        // Wrapping: the engine's counters go below zero for blocks sealed
        // here and removed through it (see `BlockStore::remove`).
        usage.used_bytes = usage
            .used_bytes
            .wrapping_add(self.sealed_bytes.load(Ordering::Relaxed));
        usage.block_count = usage
            .block_count
            .wrapping_add(self.sealed_count.load(Ordering::Relaxed));
        Ok(usage)
    }

    /// Starts a new block in the data directory with the most available
    /// space. Refuses an id that is sealed or being written here. A `durable`
    /// block starts its writeback as it arrives.
    pub(crate) async fn create(
        self: &Arc<Store>,
        block: BlockId,
        durable: bool,
    ) -> Result<UringBlockWriter> {
        let claim = Claim::take(self, block)?;
        let root = self.emptiest_dir()?;
        let suffix = dfs_engine::rpc::random_u64()?;
        let temporary_path = root.join("tmp").join(format!("{block}.{suffix:016x}"));
        let file = UringFile::create_new(&temporary_path)
            .await
            .map_err(|e| Error::io(format!("create {}", temporary_path.display()), e))?;
        Ok(UringBlockWriter {
            claim,
            root,
            temporary_path,
            file,
            length_bytes: 0,
            crc_array: Vec::new(),
            short_chunk_written: false,
            failed: false,
            sealed: false,
            durable,
            written_back_bytes: 0,
        })
    }

    fn emptiest_dir(&self) -> Result<PathBuf> {
        let mut best: Option<(u64, &Path)> = None;
        let mut last_error = None;
        for root in self.store.dirs() {
            match available_bytes(root) {
                Ok(available) if best.is_none_or(|(most, _)| available > most) => {
                    best = Some((available, root));
                }
                Ok(_) => {}
                Err(error) => last_error = Some(error),
            }
        }
        match (best, last_error) {
            (Some((_, root)), _) => Ok(root.to_path_buf()),
            (None, Some(error)) => Err(error),
            (None, None) => Err(Error::Invalid("no data directory".into())),
        }
    }
}

fn available_bytes(path: &Path) -> Result<u64> {
    let context = || format!("statvfs {}", path.display());
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| Error::io(context(), io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    // SAFETY: statvfs is a plain C struct of integers; all zeroes is valid.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is NUL-terminated and outlives the call; stat is a
    // valid, writable statvfs.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(Error::io(context(), io::Error::last_os_error()));
    }
    Ok((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

/// Marks a block as being written for as long as it lives.
struct Claim {
    store: Arc<Store>,
    block: BlockId,
}

impl Claim {
    fn take(store: &Arc<Store>, block: BlockId) -> Result<Claim> {
        let mut writing = store.writing.lock().unwrap_or_else(PoisonError::into_inner);
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
        self.store
            .writing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.block);
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
    root: PathBuf,
    temporary_path: PathBuf,
    file: UringFile,
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
        if let Err(error) = self
            .file
            .write_vectored_all_at(pieces, self.length_bytes)
            .await
        {
            self.failed = true;
            return Err(Error::io(
                format!(
                    "write {block} chunk {index} to {}",
                    self.temporary_path.display()
                ),
                error,
            ));
        }
        self.length_bytes += added_bytes;
        self.short_chunk_written = short;
        for crc in crcs {
            self.crc_array.extend_from_slice(&crc.to_le_bytes());
        }
        let pending_bytes = self.length_bytes - self.written_back_bytes;
        if self.durable && pending_bytes >= WRITEBACK_STEP_BYTES {
            self.file
                .start_writeback(self.written_back_bytes, pending_bytes);
            self.written_back_bytes = self.length_bytes;
        }
        Ok(())
    }

    /// Writes the checksums and the footer, makes the file durable when
    /// `sync`, and moves it into `blocks/`. Returns the block's length. On
    /// error nothing is left under `blocks/` and the temporary file is removed.
    pub(crate) async fn seal(mut self, sync: bool) -> Result<u64> {
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
        let temporary = self.temporary_path.clone();
        let context = |what: &str| format!("{what} {block} in {}", temporary.display());
        self.file
            .write_all_at(tail, self.length_bytes)
            .await
            .map_err(|e| Error::io(context("write checksums of"), e))?;
        if sync {
            self.file
                .sync_data()
                .await
                .map_err(|e| Error::io(context("sync"), e))?;
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
        uring::rename(&self.temporary_path, &target)
            .await
            .map_err(|e| {
                Error::io(
                    format!("move {} to {}", temporary.display(), target.display()),
                    e,
                )
            })?;
        if sync {
            let synced = match UringFile::open(&subdir).await {
                Ok(directory) => directory.sync_all().await,
                Err(error) => Err(error),
            };
            if let Err(error) = synced {
                // The name may not be durable: do not pretend the block is sealed.
                let _ = std::fs::remove_file(&target);
                return Err(Error::io(
                    format!("sync directory {}", subdir.display()),
                    error,
                ));
            }
        }
        self.sealed = true;
        let store = &self.claim.store;
        store
            .sealed_bytes
            .fetch_add(self.length_bytes + tail_bytes, Ordering::Relaxed);
        store.sealed_count.fetch_add(1, Ordering::Relaxed);
        store.note_stored(block, self.length_bytes);
        Ok(self.length_bytes)
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
}
