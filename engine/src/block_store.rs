//! Sealed blocks on local disks: one file per block, written once through a
//! temporary file, checked on every read. Layout in docs/format.md.
//!
//! A block file is `[data][CRC32C of each chunk, u32 LE][32-byte footer]`.
//! Data comes first so a reader can send the file from offset 0. A block is
//! written under `DIR/tmp/` and renamed into `DIR/blocks/<xx>/` only when it
//! is sealed, so everything under `blocks/` is complete; whatever is left in
//! `tmp/` at start-up was abandoned and is removed.
//!
//! A replica that failed verification is moved to `DIR/quarantine/`: never
//! served again (`open_block` calls it corrupted), left out of listings, and
//! removed when the master deletes the block or a good copy is sealed here.
//!
//! A data directory that failed (an I/O error, or it vanished) is taken out
//! of service for as long as the store is open: its blocks are no longer
//! listed, counted, found or served, and no new block goes there. A full one
//! only gets no new blocks until it has room again.
//!
//! Invariant: a block id is in at most one of "being written" or "sealed" in
//! one store, so two writers never race to the same name.

use crate::sync;
use std::collections::HashSet;
use std::ffi::CString;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use zerocopy::byteorder::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::dir_lock::DirLock;
use crate::error::{Error, IoContext, Result};
use crate::limits::{BLOCK_BYTES_MAX, CHUNK_BYTES, FRAME_PAYLOAD_BYTES_MAX};
use crate::msg::BlockId;

/// "DFSB" read as a little-endian u32.
pub const BLOCK_MAGIC: u32 = u32::from_le_bytes(*b"DFSB");
/// Version of the block file layout this build writes and reads.
pub const BLOCK_FORMAT_VERSION: u16 = 1;
pub const BLOCK_FOOTER_BYTES: usize = 32;
/// Bytes of one stored chunk checksum.
const CRC_BYTES: u64 = 4;
/// Most chunks of one block: a largest block cut in standard chunks. Bounds
/// the checksum array a reader loads (128 KiB), whatever a footer claims.
pub const BLOCK_CHUNKS_MAX: u64 = BLOCK_BYTES_MAX / CHUNK_BYTES as u64;

const BLOCKS_DIR: &str = "blocks";
const TMP_DIR: &str = "tmp";
const QUARANTINE_DIR: &str = "quarantine";
/// What `open_block` says of a quarantined replica (see `is_quarantined`).
const QUARANTINED_DETAIL: &str = "quarantined after it failed verification; not served";
/// A directory with at least this much room (and free inodes) is roomy:
/// the roomy directories take new blocks in turn. One with less gets new
/// blocks only while none is roomy (the one with the most room), and none
/// once it ran out of space, until it is roomy again. A default-sized
/// block fits in it.
pub const DIRECTORY_ROOMY_BYTES: u64 = crate::limits::BLOCK_BYTES_DEFAULT;
/// Bytes the write probe of `check_directory` writes, syncs and reads back.
const PROBE_BYTES: usize = 4096;
/// The `blocks/` subdirectories: two hex digits of the low byte of the id.
const SUBDIR_COUNT: u64 = 256;

const _: () = assert!(BLOCK_BYTES_MAX.is_multiple_of(CHUNK_BYTES as u64));
const _: () = assert!(CHUNK_BYTES <= FRAME_PAYLOAD_BYTES_MAX);

#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct RawFooter {
    magic: U32,
    version: U16,
    reserved: U16,
    block: U64,
    length_bytes: U64,
    chunk_bytes: U32,
    footer_crc: U32,
}

const _: () = assert!(std::mem::size_of::<RawFooter>() == BLOCK_FOOTER_BYTES);

/// The footer checksum covers the checksum array and the footer before it.
fn footer_crc(crc_array: &[u8], footer: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(crc_array), &footer[..BLOCK_FOOTER_BYTES - 4])
}

/// Space of the filesystems under a store, and what our blocks take of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Size of the distinct filesystems holding the data directories.
    pub capacity_bytes: u64,
    /// Bytes of sealed block files (data, checksums and footers).
    pub used_bytes: u64,
    /// Bytes an unprivileged writer may still use on those filesystems.
    pub available_bytes: u64,
    pub block_count: u64,
}

/// What a scan of the `blocks/` directories found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Sealed blocks, sorted, each once.
    pub blocks: Vec<BlockId>,
    /// Files and directories that are not block files where they should be;
    /// they are never served, only reported.
    pub strays: Vec<PathBuf>,
    /// Sum of the sizes of the block files.
    pub used_bytes: u64,
}

/// What `BlockStore::open` found and cleaned, for the caller to log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Abandoned writes removed from `tmp/`.
    pub abandoned_removed: Vec<PathBuf>,
    pub strays: Vec<PathBuf>,
    /// Replicas kept in `quarantine/` by an earlier run.
    pub quarantined: Vec<BlockId>,
}

/// One data directory as the store sees it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryState {
    pub root: PathBuf,
    /// Why it was taken out of service; None while it serves.
    pub failure: Option<String>,
    /// It ran out of space and has not been roomy since.
    pub full: bool,
    /// Sealed blocks in it (0 once failed: they no longer count).
    pub block_count: u64,
}

struct DataDir {
    root: PathBuf,
    /// Held while the store is open: two minions never share a directory.
    _lock: DirLock,
    /// Device of the root, to count each filesystem once and to notice the
    /// filesystem going away (unmounted) under the running store.
    device: u64,
    /// Set once when the directory fails; never cleared while open.
    failure: OnceLock<String>,
    /// Ran out of space; cleared when a check finds it roomy again.
    full: AtomicBool,
    /// Its sealed block files: their bytes and their count.
    used_bytes: AtomicU64,
    block_count: AtomicU64,
}

impl DataDir {
    fn in_service(&self) -> bool {
        self.failure.get().is_none()
    }
}

struct Shared {
    dirs: Vec<DataDir>,
    /// Blocks with an open writer. Bounded by the number of writers, one per
    /// connection at most.
    writing: Mutex<HashSet<BlockId>>,
    /// Turn of the roomy directories for the next new block.
    next_dir: AtomicUsize,
    /// Some replica may be in quarantine: set at open when one is, and by
    /// every quarantine, never cleared. While it is false, sealing a block
    /// has no quarantined copy to remove (one syscall less per block).
    maybe_quarantined: AtomicBool,
}

impl Shared {
    /// The directories in service, with their index.
    fn serving(&self) -> impl Iterator<Item = (usize, &DataDir)> {
        self.dirs
            .iter()
            .enumerate()
            .filter(|(_, dir)| dir.in_service())
    }
}

/// Blocks in one or more data directories ("spare disks"). Cheap to clone;
/// clones share the same state.
#[derive(Clone)]
pub struct BlockStore {
    shared: Arc<Shared>,
    report: Arc<OpenReport>,
}

fn subdir_name(block: BlockId) -> String {
    format!("{:02x}", block.0 & 0xff)
}

fn block_path(root: &Path, block: BlockId) -> PathBuf {
    root.join(BLOCKS_DIR)
        .join(subdir_name(block))
        .join(block.to_string())
}

fn quarantine_path(root: &Path, block: BlockId) -> PathBuf {
    root.join(QUARANTINE_DIR).join(block.to_string())
}

/// Parses "blk_<16 lowercase hex>", the only name a block file has.
fn parse_block_name(name: &str) -> Option<BlockId> {
    let hex = name.strip_prefix("blk_")?;
    if hex.len() != 16 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok().map(BlockId)
}

fn parse_subdir_name(name: &str) -> Option<u64> {
    if name.len() != 2 || !name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(name, 16).ok()
}

/// True when `error` says a block does not exist (from `open_block`).
pub fn is_not_found(error: &Error) -> bool {
    matches!(error, Error::Io { cause: source, .. } if source.kind() == io::ErrorKind::NotFound)
}

/// True when `error` says a block already exists or is being written (from `create`).
pub fn is_already_exists(error: &Error) -> bool {
    matches!(error, Error::Io { cause: source, .. } if source.kind() == io::ErrorKind::AlreadyExists)
}

/// True when `error` is `open_block` refusing a quarantined replica (a
/// corruption already known, not a new one).
pub fn is_quarantined(error: &Error) -> bool {
    matches!(error, Error::Corrupted { detail, .. } if detail == QUARANTINED_DETAIL)
}

fn sync_directory(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|directory| directory.sync_all())
        .with_context(|| format!("sync directory {}", path.display()))
}

struct FilesystemSpace {
    capacity_bytes: u64,
    available_bytes: u64,
    /// False when no file can be created: out of inodes.
    inodes_available: bool,
}

fn filesystem_space(path: &Path) -> Result<FilesystemSpace> {
    let context = || format!("statvfs {}", path.display());
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| Error::io(context(), io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    // SAFETY: statvfs is a plain C struct of integers; all zeroes is a valid value.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is a NUL-terminated string that outlives the call, and
    // stat is a valid, writable statvfs the kernel fills in.
    let status = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    if status != 0 {
        return Err(Error::io(context(), io::Error::last_os_error()));
    }
    let fragment_bytes = stat.f_frsize as u64;
    Ok(FilesystemSpace {
        capacity_bytes: (stat.f_blocks as u64).saturating_mul(fragment_bytes),
        available_bytes: (stat.f_bavail as u64).saturating_mul(fragment_bytes),
        // Some filesystems count no inodes at all (f_files is 0).
        inodes_available: stat.f_files == 0 || stat.f_favail > 0,
    })
}

impl FilesystemSpace {
    fn is_roomy(&self) -> bool {
        self.available_bytes >= DIRECTORY_ROOMY_BYTES && self.inodes_available
    }
}

/// Creates `root/blocks/00..ff`, `root/tmp` and `root/quarantine`, and
/// empties `root/tmp`.
fn prepare_dir(root: &Path, report: &mut OpenReport) -> Result<DataDir> {
    fs::create_dir_all(root)
        .with_context(|| format!("create data directory {}", root.display()))?;
    // Lock before anything is cleaned: another minion's writes live in tmp/.
    let lock = DirLock::acquire(root, "minion")?;
    let blocks = root.join(BLOCKS_DIR);
    let tmp = root.join(TMP_DIR);
    let quarantine = root.join(QUARANTINE_DIR);
    let mut created = false;
    for subdir in (0..SUBDIR_COUNT).map(|index| blocks.join(format!("{index:02x}"))) {
        if !subdir.is_dir() {
            fs::create_dir_all(&subdir)
                .with_context(|| format!("create directory {}", subdir.display()))?;
            created = true;
        }
    }
    for directory in [&tmp, &quarantine] {
        if !directory.is_dir() {
            fs::create_dir_all(directory)
                .with_context(|| format!("create directory {}", directory.display()))?;
            created = true;
        }
    }
    if created {
        sync_directory(&blocks)?;
        sync_directory(root)?;
    }
    for entry in fs::read_dir(&tmp).with_context(|| format!("list {}", tmp.display()))? {
        let path = entry
            .with_context(|| format!("list {}", tmp.display()))?
            .path();
        let removed = if path.is_dir() && !path.is_symlink() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.with_context(|| format!("remove abandoned {}", path.display()))?;
        report.abandoned_removed.push(path);
    }
    report.quarantined.extend(list_quarantine(root)?);
    let device = fs::metadata(root)
        .with_context(|| format!("stat {}", root.display()))?
        .dev();
    Ok(DataDir {
        root: root.to_path_buf(),
        device,
        _lock: lock,
        failure: OnceLock::new(),
        full: AtomicBool::new(false),
        used_bytes: AtomicU64::new(0),
        block_count: AtomicU64::new(0),
    })
}

/// The replicas in `root/quarantine/`, sorted; other names are ignored.
fn list_quarantine(root: &Path) -> Result<Vec<BlockId>> {
    let quarantine = root.join(QUARANTINE_DIR);
    let context = || format!("list {}", quarantine.display());
    let mut blocks = Vec::new();
    for entry in fs::read_dir(&quarantine).with_context(context)? {
        let entry = entry.with_context(context)?;
        if let Some(block) = entry.file_name().to_str().and_then(parse_block_name) {
            blocks.push(block);
        }
    }
    blocks.sort_unstable();
    Ok(blocks)
}

/// Walks `root/blocks/`: `found` gets each block file with its size, the
/// rest goes to `strays`.
fn walk_blocks(
    root: &Path,
    found: &mut dyn FnMut(BlockId, u64),
    strays: &mut Vec<PathBuf>,
) -> Result<()> {
    let blocks = root.join(BLOCKS_DIR);
    for entry in fs::read_dir(&blocks).with_context(|| format!("list {}", blocks.display()))? {
        let entry = entry.with_context(|| format!("list {}", blocks.display()))?;
        let path = entry.path();
        let subdir = entry.file_name().to_str().and_then(parse_subdir_name);
        let is_dir = entry
            .file_type()
            .with_context(|| format!("stat {}", path.display()))?
            .is_dir();
        match subdir {
            Some(low_byte) if is_dir => walk_subdir(&path, low_byte, found, strays)?,
            _ => strays.push(path),
        }
    }
    Ok(())
}

fn walk_subdir(
    subdir: &Path,
    low_byte: u64,
    found: &mut dyn FnMut(BlockId, u64),
    strays: &mut Vec<PathBuf>,
) -> Result<()> {
    for entry in fs::read_dir(subdir).with_context(|| format!("list {}", subdir.display()))? {
        let entry = entry.with_context(|| format!("list {}", subdir.display()))?;
        let path = entry.path();
        let metadata = entry
            .metadata()
            .with_context(|| format!("stat {}", path.display()))?;
        let block = entry
            .file_name()
            .to_str()
            .and_then(parse_block_name)
            .filter(|block| block.0 & 0xff == low_byte && metadata.is_file());
        match block {
            Some(block) => found(block, metadata.len()),
            None => strays.push(path),
        }
    }
    Ok(())
}

/// Adds one directory's blocks to `scan` (not yet sorted).
fn scan_dir(root: &Path, scan: &mut Scan) -> Result<()> {
    let Scan {
        blocks,
        strays,
        used_bytes,
    } = scan;
    walk_blocks(
        root,
        &mut |block, file_bytes| {
            blocks.push(block);
            *used_bytes += file_bytes;
        },
        strays,
    )
}

/// True for errors that say the filesystem has no room (for us) left.
fn is_out_of_space(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// True for errors about this process's limits (descriptors, memory) or an
/// interrupted call: they say nothing about the disk.
fn is_process_limit(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::EINTR | libc::EAGAIN)
    )
}

/// Writes a small file in `root/tmp/`, syncs it, reads it back and removes it.
fn probe_directory(root: &Path) -> io::Result<()> {
    static PROBES: AtomicU64 = AtomicU64::new(0);
    let number = PROBES.fetch_add(1, Ordering::Relaxed);
    let path = root
        .join(TMP_DIR)
        .join(format!("probe.{:08x}.{number:08x}", std::process::id()));
    let written: Vec<u8> = (0..PROBE_BYTES).map(|i| (i % 251) as u8).collect();
    let probed = (|| {
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        file.write_all_at(&written, 0)?;
        file.sync_all()?;
        let mut read = vec![0u8; PROBE_BYTES];
        file.read_exact_at(&mut read, 0)?;
        if read != written {
            return Err(io::Error::other("the probe file read back differs"));
        }
        Ok(())
    })();
    let removed = match fs::remove_file(&path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    };
    probed.and(removed)
}

impl Shared {
    fn note_full(&self, index: usize) {
        if let Some(dir) = self.dirs.get(index) {
            dir.full.store(true, Ordering::Relaxed);
        }
    }

    fn dir(&self, index: usize) -> Result<&DataDir> {
        self.dirs
            .get(index)
            .ok_or_else(|| Error::Invalid(format!("no data directory {index}")))
    }

    /// Counts a block sealed in directory `index` and removes any
    /// quarantined replica of it: the good copy supersedes it.
    fn note_sealed(&self, index: usize, block: BlockId, file_bytes: u64) -> Result<()> {
        let dir = self.dir(index)?;
        dir.used_bytes.fetch_add(file_bytes, Ordering::Relaxed);
        dir.block_count.fetch_add(1, Ordering::Relaxed);
        if !self.maybe_quarantined.load(Ordering::Acquire) {
            return Ok(());
        }
        for (_, dir) in self.serving() {
            let path = quarantine_path(&dir.root, block);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(Error::io(format!("remove {}", path.display()), error)),
            }
        }
        Ok(())
    }
}

impl BlockStore {
    /// Opens (creating where missing) the data directories, removes abandoned
    /// writes from their `tmp/` and counts the sealed blocks.
    pub fn open(dirs: &[PathBuf]) -> Result<BlockStore> {
        if dirs.is_empty() {
            return Err(Error::Invalid(
                "a block store needs at least one data directory".into(),
            ));
        }
        let mut report = OpenReport::default();
        let mut prepared: Vec<DataDir> = Vec::with_capacity(dirs.len());
        let mut canonicals: Vec<PathBuf> = Vec::with_capacity(dirs.len());
        for dir in dirs {
            fs::create_dir_all(dir)
                .with_context(|| format!("create data directory {}", dir.display()))?;
            let canonical = fs::canonicalize(dir)
                .with_context(|| format!("resolve data directory {}", dir.display()))?;
            if let Some(index) = canonicals.iter().position(|other| *other == canonical) {
                return Err(Error::Invalid(format!(
                    "data directories {} and {} are the same directory",
                    dirs[index].display(),
                    dir.display()
                )));
            }
            canonicals.push(canonical);
            prepared.push(prepare_dir(dir, &mut report)?);
        }
        for dir in &prepared {
            let mut scan = Scan::default();
            scan_dir(&dir.root, &mut scan)?;
            dir.used_bytes.store(scan.used_bytes, Ordering::Relaxed);
            dir.block_count
                .store(scan.blocks.len() as u64, Ordering::Relaxed);
            report.strays.append(&mut scan.strays);
        }
        report.quarantined.sort_unstable();
        report.quarantined.dedup();
        Ok(BlockStore {
            shared: Arc::new(Shared {
                dirs: prepared,
                writing: Mutex::new(HashSet::new()),
                next_dir: AtomicUsize::new(0),
                maybe_quarantined: AtomicBool::new(!report.quarantined.is_empty()),
            }),
            report: Arc::new(report),
        })
    }

    /// The data directories, in the order given to `open` (failed ones too).
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.shared.dirs.iter().map(|dir| dir.root.as_path())
    }

    /// What `open` removed and found astray.
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    /// Every data directory (index as in `dirs`) and its state.
    pub fn directory_states(&self) -> Vec<DirectoryState> {
        self.shared
            .dirs
            .iter()
            .map(|dir| DirectoryState {
                root: dir.root.clone(),
                failure: dir.failure.get().cloned(),
                full: dir.full.load(Ordering::Relaxed),
                block_count: if dir.in_service() {
                    dir.block_count.load(Ordering::Relaxed)
                } else {
                    0
                },
            })
            .collect()
    }

    /// The data directories still in service.
    pub fn directories_in_service(&self) -> usize {
        self.shared.serving().count()
    }

    /// True while directory `index` is in service.
    pub fn is_in_service(&self, index: usize) -> bool {
        self.shared.dirs.get(index).is_some_and(DataDir::in_service)
    }

    /// The index of the data directory `path` lies in (the innermost, should
    /// one directory lie inside another).
    pub fn directory_of(&self, path: &Path) -> Option<usize> {
        self.shared
            .dirs
            .iter()
            .enumerate()
            .filter(|(_, dir)| path.starts_with(&dir.root))
            .max_by_key(|(_, dir)| dir.root.components().count())
            .map(|(index, _)| index)
    }

    /// Takes directory `index` out of service for good (while the store is
    /// open): its blocks are no longer listed, counted, found or served, and
    /// no new block goes there. True when it was in service until now.
    pub fn fail_directory(&self, index: usize, reason: &str) -> bool {
        self.shared
            .dirs
            .get(index)
            .is_some_and(|dir| dir.failure.set(reason.to_string()).is_ok())
    }

    /// Records that directory `index` ran out of space: it gets new blocks
    /// again only once it is roomy (`DIRECTORY_ROOMY_BYTES`).
    pub fn note_full(&self, index: usize) {
        self.shared.note_full(index);
    }

    /// Checks directory `index` in service: it is still the directory it was
    /// at open (same filesystem: not unmounted) with its subdirectories; with
    /// `probe`, a small file is also written, synced, read back and removed.
    /// A full filesystem is not a failure (it only marks the directory full),
    /// nor are this process's limits (descriptors, memory). `Err` says why
    /// the directory should be taken out of service; the caller decides.
    pub fn check_directory(&self, index: usize, probe: bool) -> Result<(), String> {
        let Some(dir) = self.shared.dirs.get(index) else {
            return Ok(());
        };
        let root = &dir.root;
        let judge = |what: String, error: io::Error| {
            if is_process_limit(&error) {
                Ok(())
            } else if is_out_of_space(&error) {
                dir.full.store(true, Ordering::Relaxed);
                Ok(())
            } else {
                Err(format!("{what}: {error}"))
            }
        };
        for path in [
            root.clone(),
            root.join(BLOCKS_DIR),
            root.join(TMP_DIR),
            root.join(QUARANTINE_DIR),
        ] {
            match fs::metadata(&path) {
                // The root's filesystem is the one its blocks were on.
                Ok(metadata) if path == *root && metadata.dev() != dir.device => {
                    return Err(format!(
                        "{} is on another filesystem than when the minion started (unmounted?)",
                        path.display()
                    ))
                }
                Ok(metadata) if metadata.is_dir() => {}
                Ok(_) => return Err(format!("{} is no longer a directory", path.display())),
                Err(error) => judge(format!("stat {}", path.display()), error)?,
            }
        }
        match filesystem_space(root) {
            Ok(space) if space.is_roomy() => dir.full.store(false, Ordering::Relaxed),
            Ok(_) => {}
            Err(Error::Io { context, cause }) => judge(context, cause)?,
            Err(other) => return Err(other.to_string()),
        }
        if probe {
            if let Err(error) = probe_directory(root) {
                judge(format!("write a probe file in {}", root.display()), error)?;
            }
        }
        Ok(())
    }

    /// The directory for a new block: the roomy directories in service in
    /// turn (spreading the writes over the disks); when none is roomy, the
    /// one with the most room that has not run out of space. An error when
    /// none can take a block (its `is_disk_full` is true when all are full).
    pub fn choose_directory(&self) -> Result<(usize, &Path)> {
        let mut roomy: Vec<usize> = Vec::with_capacity(self.shared.dirs.len());
        let mut best: Option<(u64, usize)> = None;
        let mut last_error = None;
        let mut serving = 0;
        for (index, dir) in self.shared.serving() {
            serving += 1;
            let space = match filesystem_space(&dir.root) {
                Ok(space) => space,
                Err(error) => {
                    last_error = Some(error);
                    continue;
                }
            };
            let available_bytes = space.available_bytes;
            if space.is_roomy() {
                dir.full.store(false, Ordering::Relaxed);
                roomy.push(index);
            } else if !dir.full.load(Ordering::Relaxed)
                && space.inodes_available
                && available_bytes >= u64::from(CHUNK_BYTES)
                && best.is_none_or(|(most, _)| available_bytes > most)
            {
                best = Some((available_bytes, index));
            }
        }
        let chosen = if roomy.is_empty() {
            best.map(|(_, index)| index)
        } else {
            let turn = self.shared.next_dir.fetch_add(1, Ordering::Relaxed);
            roomy.get(turn % roomy.len()).copied()
        };
        if let Some((index, dir)) =
            chosen.and_then(|index| Some((index, self.shared.dirs.get(index)?)))
        {
            return Ok((index, dir.root.as_path()));
        }
        let what = "choose a data directory for a new block";
        match last_error {
            _ if serving == 0 => Err(Error::io(
                what,
                io::Error::other("every data directory of this minion failed"),
            )),
            Some(error) => Err(error),
            None => Err(Error::io(
                format!("{what}: every data directory is full"),
                io::Error::from_raw_os_error(libc::ENOSPC),
            )),
        }
    }

    /// Counts a block that another writer of these directories (the
    /// minion's data path) sealed in directory `index`, and removes any
    /// quarantined replica of it, which the good copy supersedes.
    pub fn note_sealed(&self, index: usize, block: BlockId, file_bytes: u64) -> Result<()> {
        self.shared.note_sealed(index, block, file_bytes)
    }

    /// Starts writing a new block in the directory `choose_directory`
    /// picks. Refuses an id that is sealed or being written here.
    pub fn create(&self, block: BlockId) -> Result<BlockWriter> {
        let guard = WritingGuard::claim(&self.shared, block)?;
        let (dir_index, dir) = self.choose_directory()?;
        let suffix = crate::rpc::random_u64()?;
        let temporary_path = dir.join(TMP_DIR).join(format!("{block}.{suffix:016x}"));
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&temporary_path)
            .with_context(|| format!("create {}", temporary_path.display()))?;
        Ok(BlockWriter {
            guard,
            dir_index,
            root: dir.to_path_buf(),
            temporary_path,
            file,
            length_bytes: 0,
            crc_array: Vec::new(),
            short_chunk_written: false,
            failed: false,
            sealed: false,
        })
    }

    fn find(&self, block: BlockId) -> Option<PathBuf> {
        self.shared
            .serving()
            .map(|(_, dir)| block_path(&dir.root, block))
            .find(|path| path.symlink_metadata().is_ok())
    }

    /// Opens a sealed block and checks its footer and checksum array. A
    /// quarantined replica is refused as corrupted (`is_quarantined`).
    pub fn open_block(&self, block: BlockId) -> Result<BlockReader> {
        for (_, dir) in self.shared.serving() {
            let path = block_path(&dir.root, block);
            match File::open(&path) {
                Ok(file) => return BlockReader::open(file, block, path),
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => {
                    return Err(Error::io(format!("open {}", path.display()), error));
                }
            }
        }
        if self.is_quarantined(block) {
            return Err(Error::corrupted(block.to_string(), QUARANTINED_DETAIL));
        }
        Err(Error::io(
            format!("open {block}: no such block"),
            io::ErrorKind::NotFound.into(),
        ))
    }

    /// The directory in service that holds `block` (or fails to say
    /// whether it does: a stat that fails with other than "not found").
    pub fn directory_holding(&self, block: BlockId) -> Option<usize> {
        self.shared
            .serving()
            .find(
                |(_, dir)| match block_path(&dir.root, block).symlink_metadata() {
                    Ok(_) => true,
                    Err(error) => error.kind() != io::ErrorKind::NotFound,
                },
            )
            .map(|(index, _)| index)
    }

    /// True when a replica of `block` is in quarantine here.
    pub fn is_quarantined(&self, block: BlockId) -> bool {
        self.shared
            .serving()
            .any(|(_, dir)| quarantine_path(&dir.root, block).symlink_metadata().is_ok())
    }

    /// True when the block is sealed here (it may still be corrupt).
    pub fn contains(&self, block: BlockId) -> bool {
        self.find(block).is_some()
    }

    /// Removes a sealed block (its file, in whichever data directory holds
    /// it, and any quarantined replica of it) and returns the bytes its
    /// file took (0 for a quarantined replica alone, which no longer
    /// counted), or None when neither was here. A block being written is not
    /// sealed and is left alone. Readers that opened the block before keep
    /// reading it until they close it.
    pub fn remove(&self, block: BlockId) -> Result<Option<u64>> {
        let mut removed = None;
        for (_, dir) in self.shared.serving() {
            let quarantined = quarantine_path(&dir.root, block);
            match fs::remove_file(&quarantined) {
                Ok(()) => removed = removed.or(Some(0)),
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => {
                    return Err(Error::io(
                        format!("remove {}", quarantined.display()),
                        error,
                    ))
                }
            }
        }
        for (_, dir) in self.shared.serving() {
            let path = block_path(&dir.root, block);
            let file_bytes = match path.symlink_metadata() {
                Ok(metadata) if metadata.is_file() => metadata.len(),
                Ok(_) => continue,
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(Error::io(format!("stat {}", path.display()), error)),
            };
            match fs::remove_file(&path) {
                Ok(()) => {}
                // Removed by someone else meanwhile: not ours to count.
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(Error::io(format!("remove {}", path.display()), error)),
            }
            dir.used_bytes.fetch_sub(file_bytes, Ordering::Relaxed);
            dir.block_count.fetch_sub(1, Ordering::Relaxed);
            return Ok(Some(file_bytes));
        }
        Ok(removed)
    }

    /// Moves the sealed replica of `block` into `quarantine/` of its
    /// directory, where it is never served and no longer listed. With
    /// `inode`, only the file with that inode number moves (the one found
    /// bad, not a good copy sealed since under the same name). True when a
    /// file moved.
    pub fn quarantine(&self, block: BlockId, inode: Option<u64>) -> Result<bool> {
        for (_, dir) in self.shared.serving() {
            let path = block_path(&dir.root, block);
            let metadata = match path.symlink_metadata() {
                Ok(metadata) if metadata.is_file() => metadata,
                Ok(_) => continue,
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(Error::io(format!("stat {}", path.display()), error)),
            };
            if inode.is_some_and(|inode| inode != metadata.ino()) {
                continue;
            }
            let target = quarantine_path(&dir.root, block);
            // Before the move: a seal racing with it must look for the copy.
            self.shared.maybe_quarantined.store(true, Ordering::Release);
            fs::rename(&path, &target)
                .with_context(|| format!("move {} to {}", path.display(), target.display()))?;
            dir.used_bytes.fetch_sub(metadata.len(), Ordering::Relaxed);
            dir.block_count.fetch_sub(1, Ordering::Relaxed);
            // Not durable is harmless: the replica is found bad again.
            sync_directory(&dir.root.join(QUARANTINE_DIR))?;
            return Ok(true);
        }
        Ok(false)
    }

    /// The quarantined replicas in the directories in service, sorted.
    pub fn quarantined(&self) -> Result<Vec<BlockId>> {
        let mut blocks = Vec::new();
        for (_, dir) in self.shared.serving() {
            blocks.extend(list_quarantine(&dir.root)?);
        }
        blocks.sort_unstable();
        blocks.dedup();
        Ok(blocks)
    }

    /// The sealed blocks, sorted. Stray files are left out (see `scan`).
    pub fn list(&self) -> Result<Vec<BlockId>> {
        Ok(self.scan()?.blocks)
    }

    /// Reads every `blocks/` directory in service.
    pub fn scan(&self) -> Result<Scan> {
        let (scan, mut errors) = self.scan_directories();
        match errors.pop() {
            Some((_, error)) => Err(error),
            None => Ok(scan),
        }
    }

    /// `scan`, going on past a directory that can't be read: what the others
    /// hold, and the directories (by index) that failed, with why.
    pub fn scan_directories(&self) -> (Scan, Vec<(usize, Error)>) {
        let mut scan = Scan::default();
        let mut errors = Vec::new();
        for (index, dir) in self.shared.serving() {
            let mut found = Scan::default();
            match scan_dir(&dir.root, &mut found) {
                Ok(()) => {
                    scan.blocks.append(&mut found.blocks);
                    scan.strays.append(&mut found.strays);
                    scan.used_bytes += found.used_bytes;
                }
                Err(error) => errors.push((index, error)),
            }
        }
        scan.blocks.sort_unstable();
        scan.blocks.dedup();
        (scan, errors)
    }

    /// The sealed blocks of directory `index` with the sizes of their files,
    /// sorted by id (empty once the directory failed).
    pub fn list_directory(&self, index: usize) -> Result<Vec<(BlockId, u64)>> {
        let dir = self.shared.dir(index)?;
        if !dir.in_service() {
            return Ok(Vec::new());
        }
        let mut blocks = Vec::new();
        let mut strays = Vec::new();
        walk_blocks(
            &dir.root,
            &mut |block, file_bytes| blocks.push((block, file_bytes)),
            &mut strays,
        )?;
        blocks.sort_unstable();
        Ok(blocks)
    }

    /// Space of the filesystems (each counted once) and of our blocks, in
    /// the directories in service.
    pub fn usage(&self) -> Result<Usage> {
        let mut seen_devices = Vec::with_capacity(self.shared.dirs.len());
        let mut usage = Usage::default();
        for (_, dir) in self.shared.serving() {
            usage.used_bytes = usage
                .used_bytes
                .wrapping_add(dir.used_bytes.load(Ordering::Relaxed));
            usage.block_count = usage
                .block_count
                .wrapping_add(dir.block_count.load(Ordering::Relaxed));
            if seen_devices.contains(&dir.device) {
                continue;
            }
            seen_devices.push(dir.device);
            let space = filesystem_space(&dir.root)?;
            usage.capacity_bytes = usage.capacity_bytes.saturating_add(space.capacity_bytes);
            usage.available_bytes = usage.available_bytes.saturating_add(space.available_bytes);
        }
        Ok(usage)
    }
}

/// Marks a block as being written for as long as it lives.
struct WritingGuard {
    shared: Arc<Shared>,
    block: BlockId,
}

impl WritingGuard {
    fn claim(shared: &Arc<Shared>, block: BlockId) -> Result<WritingGuard> {
        let mut writing = sync::lock(&shared.writing);
        // A copy in a failed directory does not count: the block may be
        // copied back here.
        let exists = || {
            shared
                .serving()
                .any(|(_, dir)| block_path(&dir.root, block).symlink_metadata().is_ok())
        };
        if writing.contains(&block) || exists() {
            return Err(Error::io(
                format!("create {block}: the block exists or is being written"),
                io::ErrorKind::AlreadyExists.into(),
            ));
        }
        writing.insert(block);
        Ok(WritingGuard {
            shared: Arc::clone(shared),
            block,
        })
    }
}

impl Drop for WritingGuard {
    fn drop(&mut self) {
        sync::lock(&self.shared.writing).remove(&self.block);
    }
}

/// A block being written. Dropping it without `seal` removes its temporary
/// file: nothing of an unsealed block is ever served.
pub struct BlockWriter {
    guard: WritingGuard,
    /// Index of the data directory the block goes to.
    dir_index: usize,
    root: PathBuf,
    temporary_path: PathBuf,
    file: File,
    length_bytes: u64,
    /// Checksums of the chunks written so far, as stored (u32 LE each).
    crc_array: Vec<u8>,
    /// A chunk shorter than CHUNK_BYTES can only be the last one.
    short_chunk_written: bool,
    /// A write failed; the block can't be sealed.
    failed: bool,
    sealed: bool,
}

impl BlockWriter {
    pub fn block(&self) -> BlockId {
        self.guard.block
    }

    pub fn length_bytes(&self) -> u64 {
        self.length_bytes
    }

    /// Appends one chunk: CHUNK_BYTES bytes, except the last one which may be
    /// shorter (but not empty). `crc` is its CRC32C, already checked by
    /// whoever received it; it is checked again here because a wrong stored
    /// checksum would turn a good block into a "corrupt" one.
    pub fn write_chunk(&mut self, chunk: &[u8], crc: u32) -> Result<()> {
        let block = self.guard.block;
        let index = self.crc_array.len() as u64 / CRC_BYTES;
        let refuse = |why: String| Error::Invalid(format!("write {block} chunk {index}: {why}"));
        let checked = if self.failed {
            Err(refuse("an earlier write of this block failed".into()))
        } else if self.short_chunk_written {
            Err(refuse("a chunk after the short last chunk".into()))
        } else if chunk.is_empty() || chunk.len() > CHUNK_BYTES as usize {
            Err(refuse(format!(
                "a chunk of {} bytes (chunks have 1 to {CHUNK_BYTES})",
                chunk.len()
            )))
        } else if self.length_bytes + chunk.len() as u64 > BLOCK_BYTES_MAX {
            Err(refuse(format!(
                "the block grows over {BLOCK_BYTES_MAX} bytes"
            )))
        } else if crc32c::crc32c(chunk) != crc {
            Err(refuse(format!(
                "checksum {crc:#010x} does not match the data"
            )))
        } else {
            Ok(())
        };
        if let Err(error) = checked {
            self.failed = true;
            return Err(error);
        }
        if let Err(error) = self.file.write_all_at(chunk, self.length_bytes) {
            self.failed = true;
            if is_out_of_space(&error) {
                self.guard.shared.note_full(self.dir_index);
            }
            return Err(Error::io(
                format!(
                    "write {block} chunk {index} to {}",
                    self.temporary_path.display()
                ),
                error,
            ));
        }
        self.length_bytes += chunk.len() as u64;
        self.crc_array.extend_from_slice(&crc.to_le_bytes());
        self.short_chunk_written = chunk.len() < CHUNK_BYTES as usize;
        Ok(())
    }

    /// Writes the checksums and the footer, makes the file durable when
    /// `sync`, and moves it into `blocks/`. Returns the block's length. On
    /// error nothing is left under `blocks/` and the temporary file is removed.
    pub fn seal(mut self, sync: bool) -> Result<u64> {
        let block = self.guard.block;
        if self.failed {
            return Err(Error::Invalid(format!(
                "seal {block}: an earlier write of this block failed"
            )));
        }
        let expected_chunks = self.length_bytes.div_ceil(CHUNK_BYTES as u64);
        assert_eq!(expected_chunks * CRC_BYTES, self.crc_array.len() as u64);
        let mut footer = RawFooter {
            magic: BLOCK_MAGIC.into(),
            version: BLOCK_FORMAT_VERSION.into(),
            reserved: 0.into(),
            block: block.0.into(),
            length_bytes: self.length_bytes.into(),
            chunk_bytes: CHUNK_BYTES.into(),
            footer_crc: 0.into(),
        };
        footer.footer_crc = footer_crc(&self.crc_array, footer.as_bytes()).into();
        let mut tail = std::mem::take(&mut self.crc_array);
        tail.extend_from_slice(footer.as_bytes());
        let context = |what: &str| format!("{what} {block} in {}", self.temporary_path.display());
        if let Err(error) = self.file.write_all_at(&tail, self.length_bytes) {
            if is_out_of_space(&error) {
                self.guard.shared.note_full(self.dir_index);
            }
            return Err(Error::io(context("write checksums of"), error));
        }
        let shared = Arc::clone(&self.guard.shared);
        if let Some(failure) = shared.dir(self.dir_index)?.failure.get() {
            return Err(Error::io(
                context("seal"),
                io::Error::other(format!("its data directory failed: {failure}")),
            ));
        }
        if sync {
            self.file.sync_data().with_context(|| context("sync"))?;
        }
        let subdir = self.root.join(BLOCKS_DIR).join(subdir_name(block));
        if !subdir.is_dir() {
            // Someone removed it since open; put it back.
            fs::create_dir_all(&subdir)
                .with_context(|| format!("create directory {}", subdir.display()))?;
        }
        let target = subdir.join(block.to_string());
        fs::rename(&self.temporary_path, &target).with_context(|| {
            format!(
                "move {} to {}",
                self.temporary_path.display(),
                target.display()
            )
        })?;
        if sync {
            if let Err(error) = sync_directory(&subdir) {
                // The name may not be durable: do not pretend the block is sealed.
                let _ = fs::remove_file(&target);
                return Err(error);
            }
        }
        self.sealed = true;
        let file_bytes = self.length_bytes + tail.len() as u64;
        shared.note_sealed(self.dir_index, block, file_bytes)?;
        Ok(self.length_bytes)
    }

    /// Gives up the block and removes its temporary file.
    pub fn abort(self) {}
}

impl Drop for BlockWriter {
    fn drop(&mut self) {
        if !self.sealed {
            // Best effort: if this fails the file is removed at the next open.
            let _ = fs::remove_file(&self.temporary_path);
        }
    }
}

/// A sealed block whose footer and checksum array were checked.
pub struct BlockReader {
    block: BlockId,
    path: PathBuf,
    file: File,
    length_bytes: u64,
    chunk_bytes: u32,
    crcs: Vec<u32>,
}

impl BlockReader {
    fn open(file: File, block: BlockId, path: PathBuf) -> Result<BlockReader> {
        let corrupted = |detail: String| {
            Error::corrupted(format!("{block}"), format!("{detail} ({})", path.display()))
        };
        let file_bytes = file
            .metadata()
            .with_context(|| format!("stat {}", path.display()))?
            .len();
        if file_bytes < BLOCK_FOOTER_BYTES as u64 {
            return Err(corrupted(format!(
                "the file of {file_bytes} bytes is shorter than a footer"
            )));
        }
        let mut footer_bytes = [0u8; BLOCK_FOOTER_BYTES];
        read_exact_at(
            &file,
            &mut footer_bytes,
            file_bytes - BLOCK_FOOTER_BYTES as u64,
        )
        .map_err(|e| e.into_error(&path, &corrupted))?;
        let footer = RawFooter::read_from_bytes(&footer_bytes)
            .map_err(|_| corrupted("the footer has the wrong size".into()))?;
        if footer.magic.get() != BLOCK_MAGIC {
            return Err(corrupted(format!(
                "bad footer magic {:#010x} (not a block file)",
                footer.magic.get()
            )));
        }
        if footer.version.get() != BLOCK_FORMAT_VERSION || footer.reserved.get() != 0 {
            return Err(corrupted(format!(
                "unsupported block format version {}.{} (this build reads {BLOCK_FORMAT_VERSION}.0)",
                footer.version.get(),
                footer.reserved.get()
            )));
        }
        if footer.block.get() != block.0 {
            return Err(corrupted(format!(
                "the footer names {}",
                BlockId(footer.block.get())
            )));
        }
        let length_bytes = footer.length_bytes.get();
        let chunk_bytes = footer.chunk_bytes.get();
        if chunk_bytes == 0 || chunk_bytes > FRAME_PAYLOAD_BYTES_MAX {
            return Err(corrupted(format!("impossible chunk size {chunk_bytes}")));
        }
        let chunk_count = length_bytes.div_ceil(u64::from(chunk_bytes));
        if length_bytes > BLOCK_BYTES_MAX || chunk_count > BLOCK_CHUNKS_MAX {
            return Err(corrupted(format!(
                "impossible length {length_bytes} in chunks of {chunk_bytes}"
            )));
        }
        let crc_array_bytes = chunk_count * CRC_BYTES;
        let expected_bytes = length_bytes + crc_array_bytes + BLOCK_FOOTER_BYTES as u64;
        if file_bytes != expected_bytes {
            return Err(corrupted(format!(
                "the file has {file_bytes} bytes; its footer says {length_bytes} bytes of data \
                 in {chunk_count} chunks, {expected_bytes} bytes in all"
            )));
        }
        // Bounded by BLOCK_CHUNKS_MAX above.
        let mut crc_array = vec![0u8; crc_array_bytes as usize];
        read_exact_at(&file, &mut crc_array, length_bytes)
            .map_err(|e| e.into_error(&path, &corrupted))?;
        let expected_crc = footer_crc(&crc_array, &footer_bytes);
        if expected_crc != footer.footer_crc.get() {
            return Err(corrupted(format!(
                "footer checksum {:#010x} does not match {expected_crc:#010x}",
                footer.footer_crc.get()
            )));
        }
        let crcs = crc_array
            .chunks_exact(CRC_BYTES as usize)
            .map(|bytes| u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
            .collect();
        Ok(BlockReader {
            block,
            path,
            file,
            length_bytes,
            chunk_bytes,
            crcs,
        })
    }

    pub fn block(&self) -> BlockId {
        self.block
    }

    /// Where the block file is (`BlockStore::directory_of` tells its data
    /// directory).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn length_bytes(&self) -> u64 {
        self.length_bytes
    }

    /// Bytes of every chunk but the last (CHUNK_BYTES for blocks this build writes).
    pub fn chunk_bytes(&self) -> u32 {
        self.chunk_bytes
    }

    pub fn chunk_count(&self) -> u64 {
        self.crcs.len() as u64
    }

    /// The file, for callers that send data straight from it. Its data starts
    /// at offset 0; read it only after `read_chunk` checked the chunk, or
    /// check it yourself.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Reads chunk `index` into `buffer` (replacing its contents), checks it
    /// against its stored CRC32C, and returns that CRC.
    pub fn read_chunk(&self, index: u64, buffer: &mut Vec<u8>) -> Result<u32> {
        let block = self.block;
        let Some(&stored_crc) = usize::try_from(index).ok().and_then(|i| self.crcs.get(i)) else {
            return Err(Error::Invalid(format!(
                "read {block} chunk {index}: the block has {} chunks",
                self.crcs.len()
            )));
        };
        let offset = index * u64::from(self.chunk_bytes);
        let chunk_bytes = (self.length_bytes - offset).min(u64::from(self.chunk_bytes));
        buffer.clear();
        // At most chunk_bytes, which open() bounded by the frame limit.
        buffer.resize(chunk_bytes as usize, 0);
        let what = || format!("{block} chunk {index}");
        read_exact_at(&self.file, buffer, offset).map_err(|e| {
            e.into_error(&self.path, &|detail| {
                Error::corrupted(what(), format!("{detail} ({})", self.path.display()))
            })
        })?;
        let actual_crc = crc32c::crc32c(buffer);
        if actual_crc != stored_crc {
            return Err(Error::corrupted(
                what(),
                format!(
                    "checksum {actual_crc:#010x} does not match the stored {stored_crc:#010x} ({})",
                    self.path.display()
                ),
            ));
        }
        Ok(stored_crc)
    }
}

/// A failed positioned read: the file ended early (it shrank: corrupt) or
/// the operating system failed.
enum ReadFailure {
    Short,
    Io(io::Error),
}

impl ReadFailure {
    fn into_error(self, path: &Path, corrupted: &dyn Fn(String) -> Error) -> Error {
        match self {
            ReadFailure::Short => corrupted("the file ended early".into()),
            ReadFailure::Io(error) => Error::io(format!("read {}", path.display()), error),
        }
    }
}

fn read_exact_at(file: &File, buffer: &mut [u8], offset: u64) -> Result<(), ReadFailure> {
    file.read_exact_at(buffer, offset).map_err(|error| {
        if error.kind() == io::ErrorKind::UnexpectedEof {
            ReadFailure::Short
        } else {
            ReadFailure::Io(error)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNK: usize = CHUNK_BYTES as usize;

    fn pattern(length_bytes: usize, seed: u8) -> Vec<u8> {
        (0..length_bytes)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    fn write_block(store: &BlockStore, block: BlockId, data: &[u8], sync: bool) -> u64 {
        let mut writer = store.create(block).expect("create");
        for chunk in data.chunks(CHUNK) {
            writer
                .write_chunk(chunk, crc32c::crc32c(chunk))
                .expect("write chunk");
        }
        writer.seal(sync).expect("seal")
    }

    fn read_block(store: &BlockStore, block: BlockId) -> Vec<u8> {
        let reader = store.open_block(block).expect("open block");
        let mut data = Vec::new();
        let mut buffer = Vec::new();
        for index in 0..reader.chunk_count() {
            let crc = reader.read_chunk(index, &mut buffer).expect("read chunk");
            assert_eq!(crc, crc32c::crc32c(&buffer));
            data.extend_from_slice(&buffer);
        }
        assert_eq!(data.len() as u64, reader.length_bytes());
        data
    }

    fn files_under(path: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for entry in fs::read_dir(path).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                files.extend(files_under(&path));
            } else {
                files.push(path);
            }
        }
        files
    }

    fn one_dir_store() -> (tempfile::TempDir, BlockStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlockStore::open(&[dir.path().to_path_buf()]).expect("open");
        (dir, store)
    }

    #[test]
    fn blocks_round_trip() {
        let (dir, store) = one_dir_store();
        let cases = [
            (0, 0),
            (1, 1),
            (CHUNK, 1),
            (CHUNK + 1, 2),
            (3 * CHUNK + 17, 4),
            (4 * CHUNK, 4),
        ];
        let mut used_bytes = 0;
        for (number, (length_bytes, chunk_count)) in cases.into_iter().enumerate() {
            let block = BlockId(0x1000 + number as u64);
            let data = pattern(length_bytes, number as u8);
            let sync = number % 2 == 0;
            assert_eq!(write_block(&store, block, &data, sync), length_bytes as u64);
            assert!(store.contains(block));
            let reader = store.open_block(block).expect("open");
            assert_eq!(reader.chunk_count(), chunk_count, "{length_bytes}");
            assert_eq!(read_block(&store, block), data, "{length_bytes}");
            let file_bytes = length_bytes as u64 + 4 * chunk_count + 32;
            let path = block_path(dir.path(), block);
            assert_eq!(fs::metadata(&path).expect("stat").len(), file_bytes);
            used_bytes += file_bytes;
        }
        let usage = store.usage().expect("usage");
        assert_eq!(usage.used_bytes, used_bytes);
        assert_eq!(usage.block_count, cases.len() as u64);
        assert!(usage.capacity_bytes >= usage.available_bytes);
        assert!(usage.capacity_bytes > 0);

        // A fresh open counts the same blocks and bytes.
        drop(store); // the store holds its directories' locks
        let reopened = BlockStore::open(&[dir.path().to_path_buf()]).expect("reopen");
        let usage_again = reopened.usage().expect("usage");
        assert_eq!(
            (usage_again.used_bytes, usage_again.block_count),
            (used_bytes, cases.len() as u64)
        );
        assert_eq!(reopened.list().expect("list").len(), cases.len());
        assert!(files_under(&dir.path().join(TMP_DIR)).is_empty());
    }

    #[test]
    fn removed_blocks_leave_disk_and_counters() {
        let (dir, store) = one_dir_store();
        let kept = BlockId(0x2001);
        let removed = BlockId(0x2002);
        write_block(&store, kept, &pattern(CHUNK + 3, 1), false);
        write_block(&store, removed, &pattern(2 * CHUNK, 2), false);
        let before = store.usage().expect("usage");
        // A reader opened before the removal keeps its bytes.
        let reader = store.open_block(removed).expect("open");
        let file_bytes = fs::metadata(block_path(dir.path(), removed))
            .expect("stat")
            .len();
        assert_eq!(store.remove(removed).expect("remove"), Some(file_bytes));
        assert_eq!(store.remove(removed).expect("remove again"), None);
        assert!(!store.contains(removed));
        assert!(store.contains(kept));
        let mut buffer = Vec::new();
        reader
            .read_chunk(1, &mut buffer)
            .expect("read after removal");
        let after = store.usage().expect("usage");
        assert_eq!(after.used_bytes, before.used_bytes - file_bytes);
        assert_eq!(after.block_count, before.block_count - 1);
        assert_eq!(store.list().expect("list"), vec![kept]);
    }

    #[test]
    fn footer_layout_is_as_documented() {
        let (dir, store) = one_dir_store();
        let block = BlockId(0x0123_4567_89ab_cdef);
        let data = pattern(CHUNK + 5, 9);
        write_block(&store, block, &data, false);
        let path = dir.path().join("blocks/ef/blk_0123456789abcdef");
        let bytes = fs::read(path).expect("read");
        assert_eq!(&bytes[..data.len()], &data[..]);
        let crc_array = &bytes[data.len()..data.len() + 8];
        assert_eq!(
            &crc_array[..4],
            &crc32c::crc32c(&data[..CHUNK]).to_le_bytes()
        );
        assert_eq!(
            &crc_array[4..],
            &crc32c::crc32c(&data[CHUNK..]).to_le_bytes()
        );
        let footer = &bytes[data.len() + 8..];
        assert_eq!(footer.len(), 32);
        assert_eq!(&footer[0..4], b"DFSB");
        assert_eq!(&footer[4..8], &[1, 0, 0, 0]);
        assert_eq!(&footer[8..16], &block.0.to_le_bytes());
        assert_eq!(&footer[16..24], &(data.len() as u64).to_le_bytes());
        assert_eq!(&footer[24..28], &CHUNK_BYTES.to_le_bytes());
        let mut covered = crc_array.to_vec();
        covered.extend_from_slice(&footer[..28]);
        assert_eq!(&footer[28..32], &crc32c::crc32c(&covered).to_le_bytes());
    }

    #[test]
    fn a_flipped_data_byte_is_found_by_read_chunk() {
        let (dir, store) = one_dir_store();
        let block = BlockId(7);
        write_block(&store, block, &pattern(3 * CHUNK, 1), true);
        let path = block_path(dir.path(), block);
        let mut bytes = fs::read(&path).expect("read");
        bytes[CHUNK + 10] ^= 0x40;
        fs::write(&path, &bytes).expect("write");

        let reader = store.open_block(block).expect("footer is still fine");
        let mut buffer = Vec::new();
        reader.read_chunk(0, &mut buffer).expect("chunk 0 is fine");
        let error = reader
            .read_chunk(1, &mut buffer)
            .expect_err("chunk 1 is corrupt");
        assert!(
            matches!(&error, Error::Corrupted { what, .. } if what == "blk_0000000000000007 chunk 1"),
            "{error}"
        );
        reader.read_chunk(2, &mut buffer).expect("chunk 2 is fine");
        assert!(reader.read_chunk(3, &mut buffer).is_err(), "no chunk 3");
    }

    /// Each case damages a sealed file; open_block must refuse it as corrupted.
    #[test]
    fn damaged_files_are_refused_by_open_block() {
        type Damage = fn(&mut Vec<u8>);
        let cases: [(&str, Damage, &str); 8] = [
            ("empty", |b| b.clear(), "shorter than a footer"),
            (
                "cut in the footer",
                |b| b.truncate(b.len() - 1),
                "bad footer magic",
            ),
            (
                "cut in the data",
                |b| {
                    b.remove(0);
                },
                "the file has",
            ),
            ("grown", |b| b.insert(0, 0), "the file has"),
            (
                "bad magic",
                |b| {
                    let n = b.len();
                    b[n - 32] = b'X';
                },
                "bad footer magic",
            ),
            (
                "bad version",
                |b| {
                    let n = b.len();
                    b[n - 28] = 2;
                },
                "unsupported block format version 2",
            ),
            (
                "bad checksum array",
                |b| {
                    let n = b.len();
                    b[n - 33] ^= 1;
                },
                "footer checksum",
            ),
            (
                "bad length",
                |b| {
                    let n = b.len();
                    b[n - 16] ^= 1;
                },
                "the file has",
            ),
        ];
        for (name, damage, expected) in cases {
            let (dir, store) = one_dir_store();
            let block = BlockId(42);
            write_block(&store, block, &pattern(2 * CHUNK + 3, 5), false);
            let path = block_path(dir.path(), block);
            let mut bytes = fs::read(&path).expect("read");
            damage(&mut bytes);
            fs::write(&path, &bytes).expect("write");
            let error = store.open_block(block).err().expect(name);
            assert!(matches!(error, Error::Corrupted { .. }), "{name}: {error}");
            assert!(error.to_string().contains(expected), "{name}: {error}");
        }
    }

    #[test]
    fn a_block_file_under_another_id_is_refused() {
        let (dir, store) = one_dir_store();
        write_block(&store, BlockId(0x100), &pattern(10, 0), false);
        fs::rename(
            block_path(dir.path(), BlockId(0x100)),
            block_path(dir.path(), BlockId(0x200)),
        )
        .expect("rename");
        let error = store.open_block(BlockId(0x200)).err().expect("wrong id");
        assert!(
            error
                .to_string()
                .contains("the footer names blk_0000000000000100"),
            "{error}"
        );
    }

    #[test]
    fn missing_blocks_are_not_found() {
        let (_dir, store) = one_dir_store();
        let error = store.open_block(BlockId(5)).err().expect("missing");
        assert!(is_not_found(&error), "{error}");
        assert!(
            error.to_string().contains("blk_0000000000000005"),
            "{error}"
        );
        assert!(!store.contains(BlockId(5)));
    }

    #[test]
    fn tmp_files_are_removed_on_open_and_never_listed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlockStore::open(&[dir.path().to_path_buf()]).expect("open");
        // What a crash mid-write leaves: a partial block file in tmp/ (the
        // name a writer uses) and, say, a directory.
        fs::write(
            dir.path().join(TMP_DIR).join("blk_0000000000000009.00ff"),
            b"abc",
        )
        .expect("partial block");
        fs::create_dir(dir.path().join("tmp/leftover-dir")).expect("mkdir");
        assert_eq!(files_under(&dir.path().join(TMP_DIR)).len(), 1);
        assert_eq!(store.list().expect("list"), vec![]);
        assert!(!store.contains(BlockId(9)));

        drop(store); // the store holds its directories' locks
        let reopened = BlockStore::open(&[dir.path().to_path_buf()]).expect("reopen");
        assert_eq!(reopened.open_report().abandoned_removed.len(), 2);
        assert!(fs::read_dir(dir.path().join(TMP_DIR))
            .expect("tmp")
            .next()
            .is_none());
        assert_eq!(reopened.list().expect("list"), vec![]);
        // Its id can be written again.
        write_block(&reopened, BlockId(9), b"abc", false);
        assert_eq!(reopened.list().expect("list"), vec![BlockId(9)]);
    }

    #[test]
    fn stray_files_are_reported_not_listed() {
        let (dir, store) = one_dir_store();
        write_block(&store, BlockId(0x01), b"x", false);
        let strays = [
            "blocks/notes.txt",
            "blocks/zz",
            "blocks/01/blk_0000000000000002", // in the wrong subdirectory
            "blocks/01/blk_01",
            "blocks/01/BLK_0000000000000001",
        ];
        for stray in strays {
            fs::write(dir.path().join(stray), b"stray").expect("write stray");
        }
        let scan = store.scan().expect("scan");
        assert_eq!(scan.blocks, vec![BlockId(0x01)]);
        assert_eq!(scan.strays.len(), strays.len());
        drop(store); // the store holds its directories' locks
        let reopened = BlockStore::open(&[dir.path().to_path_buf()]).expect("reopen");
        assert_eq!(reopened.open_report().strays.len(), strays.len());
        assert_eq!(reopened.usage().expect("usage").block_count, 1);
    }

    #[test]
    fn existing_or_open_ids_are_refused() {
        let (_dir, store) = one_dir_store();
        write_block(&store, BlockId(1), b"one", true);
        let error = store.create(BlockId(1)).err().expect("sealed id");
        assert!(is_already_exists(&error), "{error}");

        let writer = store.create(BlockId(2)).expect("create");
        let error = store.create(BlockId(2)).err().expect("id being written");
        assert!(is_already_exists(&error), "{error}");
        writer.abort();
        store.create(BlockId(2)).expect("free again after abort");
    }

    #[test]
    fn several_dirs_are_used_and_read() {
        let dirs: Vec<tempfile::TempDir> = (0..3)
            .map(|_| tempfile::tempdir().expect("tempdir"))
            .collect();
        let paths: Vec<PathBuf> = dirs.iter().map(|d| d.path().to_path_buf()).collect();
        let store = BlockStore::open(&paths).expect("open");
        let mut blocks = Vec::new();
        for number in 0..12u64 {
            let block = BlockId(number * 977);
            write_block(&store, block, &pattern(100 + number as usize, 3), false);
            blocks.push(block);
        }
        // Each block lands in exactly one directory, and all are found.
        let mut found = 0;
        for path in &paths {
            found += files_under(&path.join(BLOCKS_DIR)).len();
        }
        assert_eq!(found, blocks.len());
        blocks.sort();
        assert_eq!(store.list().expect("list"), blocks);
        for block in &blocks {
            assert_eq!(
                read_block(&store, *block).len(),
                100 + (block.0 / 977) as usize
            );
        }
        // Blocks written to a second directory are found by a store that
        // opens the directories in another order.
        let mut reversed = paths.clone();
        reversed.reverse();
        drop(store); // the store holds its directories' locks
        let reopened = BlockStore::open(&reversed).expect("reopen");
        assert_eq!(reopened.list().expect("list"), blocks);
        // Same filesystem, counted once.
        let capacity_bytes = reopened.usage().expect("usage").capacity_bytes;
        drop(reopened);
        let one = BlockStore::open(&paths[..1]).expect("open one");
        assert_eq!(capacity_bytes, one.usage().expect("usage").capacity_bytes);
    }

    #[test]
    fn the_same_dir_twice_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = [dir.path().to_path_buf(), dir.path().join(".")];
        let error = BlockStore::open(&paths).err().expect("same dir");
        assert!(
            error.to_string().contains("are the same directory"),
            "{error}"
        );
    }

    #[test]
    fn chunk_rules_are_enforced() {
        let (_dir, store) = one_dir_store();
        let crc = |bytes: &[u8]| crc32c::crc32c(bytes);
        let full = pattern(CHUNK, 0);
        let over = pattern(CHUNK + 1, 0);

        let mut writer = store.create(BlockId(1)).expect("create");
        let error = writer.write_chunk(&over, crc(&over)).expect_err("too big");
        assert!(
            error.to_string().contains("a chunk of 65537 bytes"),
            "{error}"
        );
        assert!(writer.write_chunk(&full, crc(&full)).is_err(), "poisoned");
        assert!(writer.seal(false).is_err(), "a failed writer does not seal");

        let mut writer = store.create(BlockId(2)).expect("create");
        writer
            .write_chunk(b"short", crc(b"short"))
            .expect("short last chunk");
        let error = writer
            .write_chunk(b"more", crc(b"more"))
            .expect_err("after short");
        assert!(
            error.to_string().contains("after the short last chunk"),
            "{error}"
        );

        let mut writer = store.create(BlockId(3)).expect("create");
        let error = writer
            .write_chunk(b"data", crc(b"other"))
            .expect_err("bad crc");
        assert!(
            error.to_string().contains("does not match the data"),
            "{error}"
        );

        let mut writer = store.create(BlockId(4)).expect("create");
        assert!(writer.write_chunk(b"", crc(b"")).is_err(), "empty chunk");
        drop(writer);
        assert_eq!(store.list().expect("list"), vec![]);
    }

    /// Points a writer at /dev/full, whose writes fail with ENOSPC, to check
    /// the disk-full path: the error says so and nothing reaches blocks/.
    fn writer_on_full_disk(store: &BlockStore, block: BlockId) -> BlockWriter {
        let mut writer = store.create(block).expect("create");
        writer.file = File::options()
            .write(true)
            .open("/dev/full")
            .expect("open /dev/full");
        writer
    }

    #[test]
    fn disk_full_while_writing_leaves_nothing() {
        let (dir, store) = one_dir_store();
        let mut writer = writer_on_full_disk(&store, BlockId(11));
        let error = writer
            .write_chunk(b"data", crc32c::crc32c(b"data"))
            .expect_err("full");
        assert!(error.is_disk_full(), "{error}");
        assert!(
            error.to_string().contains("blk_000000000000000b"),
            "{error}"
        );
        let error = writer.seal(true).expect_err("failed writer");
        assert!(!error.is_disk_full(), "{error}");
        assert!(files_under(&dir.path().join(BLOCKS_DIR)).is_empty());
        assert!(files_under(&dir.path().join(TMP_DIR)).is_empty());
        assert!(!store.contains(BlockId(11)));
        assert_eq!(store.usage().expect("usage").block_count, 0);
    }

    #[test]
    fn disk_full_while_sealing_leaves_nothing() {
        let (dir, store) = one_dir_store();
        let mut writer = store.create(BlockId(12)).expect("create");
        let data = pattern(CHUNK, 2);
        writer
            .write_chunk(&data, crc32c::crc32c(&data))
            .expect("write");
        writer.file = File::options()
            .write(true)
            .open("/dev/full")
            .expect("open /dev/full");
        let error = writer.seal(true).expect_err("full");
        assert!(error.is_disk_full(), "{error}");
        assert!(files_under(&dir.path().join(BLOCKS_DIR)).is_empty());
        assert!(files_under(&dir.path().join(TMP_DIR)).is_empty());
        store.create(BlockId(12)).expect("the id is free again");
    }

    #[test]
    fn block_names_parse_strictly() {
        for (name, expected) in [
            ("blk_0000000000000001", Some(BlockId(1))),
            ("blk_ffffffffffffffff", Some(BlockId(u64::MAX))),
            ("blk_FFFFFFFFFFFFFFFF", None),
            ("blk_000000000000001", None),
            ("blk_00000000000000001", None),
            ("blk_+000000000000001", None),
            ("blk_0000000000000001.tmp", None),
            ("xyz", None),
        ] {
            assert_eq!(parse_block_name(name), expected, "{name}");
        }
    }

    #[test]
    fn quarantined_replicas_are_refused_unlisted_and_removed() {
        let (dir, store) = one_dir_store();
        let block = BlockId(0x105);
        let data = pattern(2 * CHUNK + 1, 4);
        write_block(&store, block, &data, false);
        let inode = fs::metadata(block_path(dir.path(), block))
            .expect("stat")
            .ino();
        assert!(!store
            .quarantine(block, Some(inode + 1))
            .expect("other inode"));
        assert!(store.contains(block), "a file with another inode stays");
        assert!(store.quarantine(block, Some(inode)).expect("quarantine"));
        assert!(quarantine_path(dir.path(), block).is_file());
        assert!(!store.contains(block));
        assert_eq!(store.list().expect("list"), vec![]);
        assert_eq!(store.usage().expect("usage").block_count, 0);
        assert_eq!(store.quarantined().expect("quarantined"), vec![block]);
        let error = store.open_block(block).err().expect("refused");
        assert!(matches!(error, Error::Corrupted { .. }), "{error}");
        assert!(is_quarantined(&error), "{error}");
        assert!(
            !store.quarantine(block, None).expect("again"),
            "already moved"
        );

        // Kept across a restart, still refused.
        drop(store);
        let store = BlockStore::open(&[dir.path().to_path_buf()]).expect("reopen");
        assert_eq!(store.open_report().quarantined, vec![block]);
        assert!(store.open_report().strays.is_empty());
        assert!(is_quarantined(
            &store.open_block(block).err().expect("refused")
        ));

        // A good copy sealed here supersedes it.
        write_block(&store, block, &data, true);
        assert_eq!(read_block(&store, block), data);
        assert_eq!(store.quarantined().expect("quarantined"), vec![]);

        // The master's Delete removes a quarantined replica too.
        assert!(store.quarantine(block, None).expect("quarantine"));
        assert_eq!(store.remove(block).expect("remove"), Some(0));
        assert_eq!(store.quarantined().expect("quarantined"), vec![]);
        assert!(is_not_found(&store.open_block(block).err().expect("gone")));
        assert_eq!(store.remove(block).expect("remove again"), None);
    }

    #[test]
    fn a_failed_directory_is_out_of_service() {
        let dirs: Vec<tempfile::TempDir> = (0..2)
            .map(|_| tempfile::tempdir().expect("tempdir"))
            .collect();
        let paths: Vec<PathBuf> = dirs.iter().map(|d| d.path().to_path_buf()).collect();
        // One block in each directory: each written by a store of that
        // directory alone.
        let blocks = [BlockId(0x10), BlockId(0x11)];
        for (path, block) in paths.iter().zip(blocks) {
            let alone = BlockStore::open(std::slice::from_ref(path)).expect("open one");
            write_block(&alone, block, b"x", false);
        }
        let store = BlockStore::open(&paths).expect("open");
        for (index, block) in blocks.iter().enumerate() {
            assert!(block_path(&paths[index], *block).is_file(), "{block}");
        }
        assert_eq!(store.usage().expect("usage").block_count, 2);
        assert_eq!(
            store.directory_of(&block_path(&paths[1], blocks[1])),
            Some(1)
        );
        assert_eq!(store.directory_of(Path::new("/elsewhere")), None);

        assert!(store.fail_directory(0, "disk on fire"));
        assert!(!store.fail_directory(0, "again"), "fails once");
        assert!(!store.is_in_service(0) && store.is_in_service(1));
        assert_eq!(store.directories_in_service(), 1);
        let states = store.directory_states();
        assert_eq!(states[0].failure.as_deref(), Some("disk on fire"));
        assert_eq!((states[0].block_count, states[1].block_count), (0, 1));
        assert_eq!(store.list().expect("list"), vec![blocks[1]]);
        assert_eq!(store.usage().expect("usage").block_count, 1);
        assert!(is_not_found(
            &store.open_block(blocks[0]).err().expect("gone")
        ));
        assert!(!store.contains(blocks[0]));
        assert_eq!(store.remove(blocks[0]).expect("remove"), None);
        assert_eq!(store.list_directory(0).expect("list 0"), vec![]);
        assert_eq!(
            store.list_directory(1).expect("list 1"),
            vec![(blocks[1], 1 + 4 + 32)]
        );
        // The lost block may be copied back: it goes to the other directory.
        write_block(&store, blocks[0], b"y", false);
        assert!(block_path(&paths[1], blocks[0]).is_file());
        assert_eq!(
            store.list().expect("list"),
            vec![blocks[0], blocks[1]],
            "the failed directory's copy is not listed"
        );

        assert!(store.fail_directory(1, "this one too"));
        let error = store.create(BlockId(0x12)).err().expect("nowhere to write");
        assert!(
            error
                .to_string()
                .contains("every data directory of this minion failed"),
            "{error}"
        );
        assert_eq!(store.list().expect("list"), vec![]);
        assert_eq!(store.usage().expect("usage"), Usage::default());
    }

    #[test]
    fn directory_checks_find_what_went_away() {
        let (dir, store) = one_dir_store();
        write_block(&store, BlockId(1), b"kept", false);
        assert_eq!(store.check_directory(0, true), Ok(()));
        assert!(
            files_under(&dir.path().join(TMP_DIR)).is_empty(),
            "no probe left"
        );
        assert_eq!(store.check_directory(7, true), Ok(()), "no such directory");

        fs::remove_dir(dir.path().join(QUARANTINE_DIR)).expect("rmdir");
        let reason = store
            .check_directory(0, false)
            .expect_err("quarantine/ gone");
        assert!(reason.contains("quarantine"), "{reason}");
        fs::create_dir(dir.path().join(QUARANTINE_DIR)).expect("mkdir");
        assert_eq!(store.check_directory(0, false), Ok(()));

        // The directory replaced by an empty one (as an unmount leaves it).
        let moved = tempfile::tempdir().expect("tempdir");
        let aside = moved.path().join("aside");
        fs::rename(dir.path(), &aside).expect("move the directory away");
        fs::create_dir(dir.path()).expect("an empty directory in its place");
        let reason = store.check_directory(0, true).expect_err("blocks/ gone");
        assert!(reason.contains("blocks"), "{reason}");
        fs::remove_dir(dir.path()).expect("rmdir");
        fs::rename(&aside, dir.path()).expect("move it back");
        assert_eq!(store.check_directory(0, true), Ok(()));
    }

    #[test]
    fn roomy_directories_take_new_blocks_in_turn() {
        let dirs: Vec<tempfile::TempDir> = (0..3)
            .map(|_| tempfile::tempdir().expect("tempdir"))
            .collect();
        let paths: Vec<PathBuf> = dirs.iter().map(|d| d.path().to_path_buf()).collect();
        let store = BlockStore::open(&paths).expect("open");
        let roomy = filesystem_space(&paths[0]).expect("statvfs").is_roomy();
        let chosen: Vec<usize> = (0..6)
            .map(|_| store.choose_directory().expect("choose").0)
            .collect();
        if roomy {
            assert_eq!(chosen, vec![0, 1, 2, 0, 1, 2]);
        }
        store.fail_directory(1, "gone");
        let chosen: Vec<usize> = (0..4)
            .map(|_| store.choose_directory().expect("choose").0)
            .collect();
        assert!(!chosen.contains(&1), "{chosen:?}");
    }
}
