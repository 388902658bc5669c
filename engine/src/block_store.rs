//! Sealed blocks on local disks: one file per replica, written once through
//! a temporary file, checked on every read. The names and layout are those
//! of `block_format` (docs/format.md, "Block file"); this module is their
//! blocking driver and the store's bookkeeping.
//!
//! The store keeps a catalog of the replicas in its directories, built at
//! open from one listing (version-1 files are renamed there to the names of
//! version 2) and kept by every seal, removal and quarantine: lookups by
//! block id need no directory listing, and a full block report is the
//! catalog. A replica that failed verification is moved to `quarantine/`:
//! never served again (`open_block` calls it corrupted), and removed when
//! the master deletes it or a good copy of its block is sealed here.
//!
//! A data directory that failed (an I/O error, or it vanished) is taken out
//! of service for as long as the store is open: its replicas leave the
//! catalog and no new block goes there. A full one only gets no new blocks
//! until it has room again.
//!
//! Invariant: a block id is in at most one of "being written" (claimed) or
//! "sealed" in one store, with at most one sealed replica: every writer of
//! these directories, the minion's io_uring writer included, claims the id
//! here first, so two writers never race and a replica of another
//! generation is never sealed beside one that is here.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::block_format::{
    self, check_checksums, check_footer, parse_name, parse_subdir_name, ChunkSequence, ParsedName,
    ReplicaName, BLOCKS_DIR, FOOTER_V1_BYTES, QUARANTINE_DIR, SUBDIR_COUNT, TMP_DIR,
};
use crate::dir_lock::DirLock;
use crate::error::{Error, IoContext, Result};
use crate::limits::CHUNK_BYTES;
use crate::msg::{BlockId, Generation, ReplicaId, StoredBlock};
use crate::sync;

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

/// What `BlockStore::open` found and cleaned, for the caller to log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Abandoned writes removed from `tmp/`.
    pub abandoned_removed: Vec<PathBuf>,
    /// Files and directories that are not replicas where they should be
    /// (or a second replica of a block), with why; never served, only
    /// reported.
    pub strays: Vec<PathBuf>,
    /// Version-1 files renamed to their version-2 names.
    pub renamed: u64,
    /// Replicas kept in `quarantine/` by an earlier run.
    pub quarantined: Vec<ReplicaId>,
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

/// A replica file the catalog knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Held {
    /// Index of its data directory.
    dir: usize,
    name: ReplicaName,
    file_bytes: u64,
}

/// The replicas of the directories in service, and the ids being written.
#[derive(Default)]
struct Catalog {
    /// Sealed replicas: at most one per block id.
    sealed: HashMap<BlockId, Held>,
    /// Quarantined replicas, by block id (rarely more than one).
    quarantined: HashMap<BlockId, Vec<Held>>,
    /// Ids with an open writer; bounded by the writers, one per connection.
    writing: HashSet<BlockId>,
}

struct Shared {
    dirs: Vec<DataDir>,
    catalog: Mutex<Catalog>,
    /// Turn of the roomy directories for the next new block.
    next_dir: AtomicUsize,
}

impl Shared {
    /// The directories in service, with their index.
    fn serving(&self) -> impl Iterator<Item = (usize, &DataDir)> {
        self.dirs
            .iter()
            .enumerate()
            .filter(|(_, dir)| dir.in_service())
    }

    fn catalog(&self) -> MutexGuard<'_, Catalog> {
        sync::lock(&self.catalog)
    }

    fn dir(&self, index: usize) -> Result<&DataDir> {
        self.dirs
            .get(index)
            .ok_or_else(|| Error::Invalid(format!("no data directory {index}")))
    }

    fn note_full(&self, index: usize) {
        if let Some(dir) = self.dirs.get(index) {
            dir.full.store(true, Ordering::Relaxed);
        }
    }

    fn count(&self, held: &Held, sign: i8) {
        if let Some(dir) = self.dirs.get(held.dir) {
            if sign > 0 {
                dir.used_bytes.fetch_add(held.file_bytes, Ordering::Relaxed);
                dir.block_count.fetch_add(1, Ordering::Relaxed);
            } else {
                dir.used_bytes.fetch_sub(held.file_bytes, Ordering::Relaxed);
                dir.block_count.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// Blocks in one or more data directories ("spare disks"). Cheap to clone;
/// clones share the same state.
#[derive(Clone)]
pub struct BlockStore {
    shared: Arc<Shared>,
    report: Arc<OpenReport>,
}

/// True when `error` says a block does not exist (from `open_block`).
pub fn is_not_found(error: &Error) -> bool {
    matches!(error, Error::Io { cause: source, .. } if source.kind() == io::ErrorKind::NotFound)
}

/// True when `error` says a block already exists or is being written (from `claim`).
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

fn not_found(what: String) -> Error {
    Error::io(what, io::ErrorKind::NotFound.into())
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

/// A file the walk of `blocks/` found.
enum Found {
    Replica(ReplicaName, u64),
    Stray(PathBuf),
}

/// Walks `root/blocks/`: each replica file with its size, the rest as
/// strays. Version-1 files are renamed to their version-2 names first
/// (`renamed` counts them); one that does not check out is a stray.
fn walk_blocks(root: &Path, renamed: &mut u64) -> Result<Vec<Found>> {
    let blocks = root.join(BLOCKS_DIR);
    let mut found = Vec::new();
    for entry in fs::read_dir(&blocks).with_context(|| format!("list {}", blocks.display()))? {
        let entry = entry.with_context(|| format!("list {}", blocks.display()))?;
        let path = entry.path();
        let subdir = entry.file_name().to_str().and_then(parse_subdir_name);
        let is_dir = entry
            .file_type()
            .with_context(|| format!("stat {}", path.display()))?
            .is_dir();
        match subdir {
            Some(low_byte) if is_dir => walk_subdir(&path, low_byte, renamed, &mut found)?,
            _ => found.push(Found::Stray(path)),
        }
    }
    Ok(found)
}

fn walk_subdir(
    subdir: &Path,
    low_byte: u64,
    renamed: &mut u64,
    found: &mut Vec<Found>,
) -> Result<()> {
    let renamed_before = *renamed;
    for entry in fs::read_dir(subdir).with_context(|| format!("list {}", subdir.display()))? {
        let entry = entry.with_context(|| format!("list {}", subdir.display()))?;
        let path = entry.path();
        let metadata = entry
            .metadata()
            .with_context(|| format!("stat {}", path.display()))?;
        let parsed = entry.file_name().to_str().and_then(parse_name);
        let in_place = |block: BlockId| block.0 & 0xff == low_byte && metadata.is_file();
        match parsed {
            Some(ParsedName::Replica(name)) if in_place(name.block) => {
                found.push(Found::Replica(name, metadata.len()));
            }
            Some(ParsedName::Version1(block)) if in_place(block) => {
                match rename_version_1(&path, block, metadata.len()) {
                    Some(name) => {
                        *renamed += 1;
                        found.push(Found::Replica(name, metadata.len()));
                    }
                    None => found.push(Found::Stray(path)),
                }
            }
            _ => found.push(Found::Stray(path)),
        }
    }
    if *renamed != renamed_before {
        sync_directory(subdir)?;
    }
    Ok(())
}

/// Renames the version-1 file `path` of `block` to its version-2 name
/// (generation 0, the CRC32C of its chunks) after checking it; None when
/// it does not check out (it stays where it is, never served).
fn rename_version_1(path: &Path, block: BlockId, file_bytes: u64) -> Option<ReplicaName> {
    let file = File::open(path).ok()?;
    let mut footer = [0u8; FOOTER_V1_BYTES];
    file.read_exact_at(&mut footer, file_bytes.checked_sub(FOOTER_V1_BYTES as u64)?)
        .ok()?;
    let name = block_format::name_of_version_1(block, &footer, file_bytes, |layout| {
        // Bounded by BLOCK_CHUNKS_MAX: check_footer checked the layout.
        let mut crc_array = vec![0u8; layout.crc_array_bytes as usize];
        file.read_exact_at(&mut crc_array, layout.crc_array_offset)
            .map_err(|e| e.to_string())?;
        Ok(crc_array)
    })
    .ok()?;
    let target = path.with_file_name(name.file_name());
    fs::rename(path, &target).ok()?;
    Some(name)
}

/// The replicas in `root/quarantine/` with their sizes; version-1 names
/// (quarantined by an older build) are renamed to generation 0 and CRC 0.
fn walk_quarantine(root: &Path) -> Result<Vec<(ReplicaName, u64)>> {
    let quarantine = root.join(QUARANTINE_DIR);
    let context = || format!("list {}", quarantine.display());
    let mut found = Vec::new();
    for entry in fs::read_dir(&quarantine).with_context(context)? {
        let entry = entry.with_context(context)?;
        let Ok(metadata) = entry.metadata() else {
            continue;
        };
        match entry.file_name().to_str().and_then(parse_name) {
            Some(ParsedName::Replica(name)) => found.push((name, metadata.len())),
            Some(ParsedName::Version1(block)) => {
                let name = ReplicaName {
                    block,
                    generation: Generation::LEGACY,
                    crc32c: 0,
                };
                let target = quarantine.join(name.file_name());
                if fs::rename(entry.path(), &target).is_ok() {
                    found.push((name, metadata.len()));
                }
            }
            None => {}
        }
    }
    Ok(found)
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

impl BlockStore {
    /// Opens (creating where missing) the data directories, removes abandoned
    /// writes from their `tmp/`, renames version-1 files and catalogs the
    /// replicas.
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
        let mut catalog = Catalog::default();
        for (index, dir) in prepared.iter().enumerate() {
            for found in walk_blocks(&dir.root, &mut report.renamed)? {
                match found {
                    Found::Replica(name, file_bytes) => {
                        if catalog.sealed.contains_key(&name.block) {
                            // A second replica of one block: never served.
                            report
                                .strays
                                .push(block_format::block_path(&dir.root, &name));
                            continue;
                        }
                        dir.used_bytes.fetch_add(file_bytes, Ordering::Relaxed);
                        dir.block_count.fetch_add(1, Ordering::Relaxed);
                        catalog.sealed.insert(
                            name.block,
                            Held {
                                dir: index,
                                name,
                                file_bytes,
                            },
                        );
                    }
                    Found::Stray(path) => report.strays.push(path),
                }
            }
            for (name, file_bytes) in walk_quarantine(&dir.root)? {
                report.quarantined.push(name.replica());
                catalog
                    .quarantined
                    .entry(name.block)
                    .or_default()
                    .push(Held {
                        dir: index,
                        name,
                        file_bytes,
                    });
            }
        }
        report.quarantined.sort_unstable();
        report.quarantined.dedup();
        Ok(BlockStore {
            shared: Arc::new(Shared {
                dirs: prepared,
                catalog: Mutex::new(catalog),
                next_dir: AtomicUsize::new(0),
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
    /// open): its replicas leave the catalog (no longer listed, counted,
    /// found or served) and no new block goes there. True when it was in
    /// service until now.
    pub fn fail_directory(&self, index: usize, reason: &str) -> bool {
        let Some(dir) = self.shared.dirs.get(index) else {
            return false;
        };
        // Under the catalog's lock: no replica of it is found once it failed.
        let mut catalog = self.shared.catalog();
        if dir.failure.set(reason.to_string()).is_err() {
            return false;
        }
        catalog.sealed.retain(|_, held| held.dir != index);
        catalog.quarantined.retain(|_, replicas| {
            replicas.retain(|held| held.dir != index);
            !replicas.is_empty()
        });
        true
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

    /// Claims `replica`'s block id for a writer: refused while a replica of
    /// the block is sealed here (of any generation: a fresh allocation that
    /// finds one is a conflict, never a success) or being written. Every
    /// writer of these directories claims here first; the claim ends when
    /// the replica is sealed (`seal_claimed`) or the claim is dropped.
    pub fn claim(&self, replica: ReplicaId) -> Result<Claim> {
        let block = replica.block;
        let mut catalog = self.shared.catalog();
        let conflict = if catalog.writing.contains(&block) {
            Some("it is being written here".to_string())
        } else {
            catalog.sealed.get(&block).map(|held| {
                if held.name.generation == replica.generation {
                    "it is here already".to_string()
                } else {
                    format!("a replica of generation {} is here", held.name.generation)
                }
            })
        };
        if let Some(why) = conflict {
            return Err(Error::io(
                format!("create {block} of generation {}: {why}", replica.generation),
                io::ErrorKind::AlreadyExists.into(),
            ));
        }
        catalog.writing.insert(block);
        Ok(Claim {
            shared: Arc::clone(&self.shared),
            replica,
            sealed: false,
        })
    }

    /// Records the replica a claim's writer sealed in directory `dir`
    /// (renamed to `block_format::block_path` of `name`, `file_bytes` long)
    /// and ends the claim, in one step: the id is never neither claimed nor
    /// sealed. A quarantined replica of the block is removed: the good copy
    /// supersedes it. Refused when the directory failed meanwhile.
    pub fn seal_claimed(
        &self,
        claim: Claim,
        dir: usize,
        name: ReplicaName,
        file_bytes: u64,
    ) -> Result<()> {
        assert_eq!(
            claim.replica,
            name.replica(),
            "a claim seals its own replica"
        );
        let data_dir = self.shared.dir(dir)?;
        let superseded = {
            let mut catalog = self.shared.catalog();
            if let Some(failure) = data_dir.failure.get() {
                return Err(Error::io(
                    format!("seal {}", name.block),
                    io::Error::other(format!(
                        "its data directory {} failed: {failure}",
                        data_dir.root.display()
                    )),
                ));
            }
            let held = Held {
                dir,
                name,
                file_bytes,
            };
            let previous = catalog.sealed.insert(name.block, held);
            assert!(previous.is_none(), "{} sealed twice", name.block);
            catalog.writing.remove(&name.block);
            self.shared.count(&held, 1);
            catalog.quarantined.remove(&name.block).unwrap_or_default()
        };
        // The claim is over: the catalog holds the id now.
        let mut claim = claim;
        claim.sealed = true;
        drop(claim);
        for held in superseded {
            let path = self.quarantine_file(&held)?;
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(Error::io(format!("remove {}", path.display()), error)),
            }
        }
        Ok(())
    }

    fn quarantine_file(&self, held: &Held) -> Result<PathBuf> {
        Ok(block_format::quarantine_path(
            &self.shared.dir(held.dir)?.root,
            &held.name,
        ))
    }

    fn sealed_file(&self, held: &Held) -> Result<PathBuf> {
        Ok(block_format::block_path(
            &self.shared.dir(held.dir)?.root,
            &held.name,
        ))
    }

    /// Starts writing a new replica in the directory `choose_directory`
    /// picks (the blocking writer; the minion's data path has its own).
    pub fn create(&self, replica: ReplicaId) -> Result<BlockWriter> {
        let claim = self.claim(replica)?;
        let (dir_index, dir) = self.choose_directory()?;
        let suffix = crate::rpc::random_u64()?;
        let temporary_path = block_format::temporary_path(dir, replica, suffix);
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&temporary_path)
            .with_context(|| format!("create {}", temporary_path.display()))?;
        Ok(BlockWriter {
            store: self.clone(),
            claim: Some(claim),
            dir_index,
            root: dir.to_path_buf(),
            temporary_path,
            file,
            chunks: ChunkSequence::new(replica),
            failed: false,
            sealed: false,
        })
    }

    /// The sealed replica of `block` here, if any.
    pub fn holding(&self, block: BlockId) -> Option<ReplicaName> {
        self.shared
            .catalog()
            .sealed
            .get(&block)
            .map(|held| held.name)
    }

    /// True when `replica` is sealed here (it may still be corrupt).
    pub fn contains(&self, replica: ReplicaId) -> bool {
        self.holding(replica.block)
            .is_some_and(|name| name.generation == replica.generation)
    }

    /// True when a replica of `block` is in quarantine here.
    pub fn is_quarantined(&self, block: BlockId) -> bool {
        self.shared.catalog().quarantined.contains_key(&block)
    }

    /// Opens the sealed `replica` and checks its footer and checksums. A
    /// replica of another generation is not found; a quarantined one is
    /// refused as corrupted (`is_quarantined`). A file that vanished leaves
    /// the catalog (`take_vanished` tells who lost it).
    pub fn open_block(&self, replica: ReplicaId) -> Result<BlockReader> {
        let block = replica.block;
        let held = self.sealed(replica)?;
        let path = self.sealed_file(&held)?;
        match File::open(&path) {
            Ok(file) => BlockReader::open(file, held.name, path),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                self.forget_vanished(&held);
                Err(not_found(format!(
                    "open {block}: its file {} vanished",
                    path.display()
                )))
            }
            Err(error) => Err(Error::io(format!("open {}", path.display()), error)),
        }
    }

    /// The file of the sealed `replica`, found as `open_block` finds it
    /// (the same errors), without opening or checking it.
    pub fn sealed_path(&self, replica: ReplicaId) -> Result<PathBuf> {
        let held = self.sealed(replica)?;
        self.sealed_file(&held)
    }

    /// The catalog's entry of the sealed `replica`: not found when another
    /// generation or none is sealed here, corrupted when it is quarantined.
    fn sealed(&self, replica: ReplicaId) -> Result<Held> {
        let block = replica.block;
        let held = self.shared.catalog().sealed.get(&block).copied();
        let Some(held) = held.filter(|held| held.name.generation == replica.generation) else {
            if self.is_quarantined(block) && held.is_none() {
                return Err(Error::corrupted(block.to_string(), QUARANTINED_DETAIL));
            }
            return Err(not_found(match held {
                Some(other) => format!(
                    "open {block} of generation {}: this minion holds generation {}",
                    replica.generation, other.name.generation
                ),
                None => format!("open {block}: no such block"),
            }));
        };
        Ok(held)
    }

    /// Drops a replica whose file is gone from the catalog.
    fn forget_vanished(&self, held: &Held) {
        let mut catalog = self.shared.catalog();
        if catalog.sealed.get(&held.name.block) == Some(held) {
            catalog.sealed.remove(&held.name.block);
            self.shared.count(held, -1);
        }
    }

    /// The directory in service that holds a replica of `block`, sealed or
    /// quarantined.
    pub fn directory_holding(&self, block: BlockId) -> Option<usize> {
        let catalog = self.shared.catalog();
        catalog.sealed.get(&block).map(|held| held.dir).or_else(|| {
            catalog
                .quarantined
                .get(&block)?
                .first()
                .map(|held| held.dir)
        })
    }

    /// Removes `replica`, sealed or quarantined, and returns the bytes its
    /// sealed file took (0 for a quarantined replica alone, which no longer
    /// counted), or None when neither was here. A replica of another
    /// generation, or one being written, is left alone. Readers that opened
    /// the replica before keep reading it until they close it.
    pub fn remove(&self, replica: ReplicaId) -> Result<Option<u64>> {
        let block = replica.block;
        let (sealed, quarantined) = {
            let mut catalog = self.shared.catalog();
            let sealed = match catalog.sealed.get(&block) {
                Some(held) if held.name.generation == replica.generation => {
                    let held = *held;
                    catalog.sealed.remove(&block);
                    self.shared.count(&held, -1);
                    Some(held)
                }
                _ => None,
            };
            let mut quarantined = Vec::new();
            if let Some(replicas) = catalog.quarantined.get_mut(&block) {
                replicas.retain(|held| {
                    let ours = held.name.generation == replica.generation;
                    if ours {
                        quarantined.push(*held);
                    }
                    !ours
                });
                if replicas.is_empty() {
                    catalog.quarantined.remove(&block);
                }
            }
            (sealed, quarantined)
        };
        let mut removed = None;
        for held in &quarantined {
            let path = self.quarantine_file(held)?;
            match fs::remove_file(&path) {
                Ok(()) => removed = Some(0),
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(Error::io(format!("remove {}", path.display()), error)),
            }
        }
        if let Some(held) = sealed {
            let path = self.sealed_file(&held)?;
            match fs::remove_file(&path) {
                Ok(()) => removed = Some(held.file_bytes),
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(Error::io(format!("remove {}", path.display()), error)),
            }
        }
        Ok(removed)
    }

    /// Moves the sealed `replica` into `quarantine/` of its directory, where
    /// it is never served and no longer counted. With `inode`, only the
    /// file with that inode number moves (the one found bad, not a good
    /// copy sealed since under the same name). True when a file moved.
    pub fn quarantine(&self, replica: ReplicaId, inode: Option<u64>) -> Result<bool> {
        let block = replica.block;
        let mut catalog = self.shared.catalog();
        let Some(held) = catalog
            .sealed
            .get(&block)
            .copied()
            .filter(|held| held.name.generation == replica.generation)
        else {
            return Ok(false);
        };
        let path = self.sealed_file(&held)?;
        let metadata = match path.symlink_metadata() {
            Ok(metadata) if metadata.is_file() => metadata,
            Ok(_) => return Ok(false),
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(error) => return Err(Error::io(format!("stat {}", path.display()), error)),
        };
        if inode.is_some_and(|inode| inode != metadata.ino()) {
            return Ok(false);
        }
        let target = self.quarantine_file(&held)?;
        fs::rename(&path, &target)
            .with_context(|| format!("move {} to {}", path.display(), target.display()))?;
        catalog.sealed.remove(&block);
        self.shared.count(&held, -1);
        catalog.quarantined.entry(block).or_default().push(held);
        drop(catalog);
        // Not durable is harmless: the replica is found bad again.
        sync_directory(&self.shared.dir(held.dir)?.root.join(QUARANTINE_DIR))?;
        Ok(true)
    }

    /// The quarantined replicas in the directories in service, sorted.
    pub fn quarantined(&self) -> Vec<StoredBlock> {
        let catalog = self.shared.catalog();
        let mut replicas: Vec<StoredBlock> = catalog
            .quarantined
            .values()
            .flatten()
            .map(|held| stored(&held.name, held.file_bytes))
            .collect();
        replicas.sort_unstable_by_key(|replica| (replica.block, replica.generation));
        replicas.dedup();
        replicas
    }

    /// The sealed replicas, sorted by block.
    pub fn list(&self) -> Vec<StoredBlock> {
        let catalog = self.shared.catalog();
        let mut replicas: Vec<StoredBlock> = catalog
            .sealed
            .values()
            .map(|held| stored(&held.name, held.file_bytes))
            .collect();
        replicas.sort_unstable_by_key(|replica| replica.block);
        replicas
    }

    /// Checks that the catalog still matches the directories in service:
    /// each sealed replica's file is looked at, and one that vanished
    /// leaves the catalog. Returns the directories (by index) where a look
    /// failed otherwise, with why, so the caller can judge them.
    pub fn verify_catalog(&self) -> Vec<(usize, Error)> {
        let snapshot: Vec<Held> = self.shared.catalog().sealed.values().copied().collect();
        let mut errors: Vec<(usize, Error)> = Vec::new();
        for held in snapshot {
            if errors.iter().any(|(dir, _)| *dir == held.dir) {
                continue;
            }
            let Ok(path) = self.sealed_file(&held) else {
                continue;
            };
            match path.symlink_metadata() {
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    self.forget_vanished(&held);
                }
                Err(error) => errors.push((
                    held.dir,
                    Error::io(format!("stat {}", path.display()), error),
                )),
            }
        }
        errors
    }

    /// The sealed replicas of directory `index` with the sizes of their
    /// files, sorted by block (empty once the directory failed).
    pub fn list_directory(&self, index: usize) -> Vec<(ReplicaName, u64)> {
        let catalog = self.shared.catalog();
        let mut replicas: Vec<(ReplicaName, u64)> = catalog
            .sealed
            .values()
            .filter(|held| held.dir == index)
            .map(|held| (held.name, held.file_bytes))
            .collect();
        replicas.sort_unstable();
        replicas
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

/// What a report says of a replica file of `file_bytes` bytes; a size no
/// replica can have (a file that changed under us) reports length 0.
fn stored(name: &ReplicaName, file_bytes: u64) -> StoredBlock {
    name.stored(file_bytes).unwrap_or(StoredBlock {
        block: name.block,
        generation: name.generation,
        length_bytes: 0,
        crc32c: name.crc32c,
    })
}

/// A block id claimed for a writer; dropping it gives the id up.
pub struct Claim {
    shared: Arc<Shared>,
    replica: ReplicaId,
    /// Its replica was sealed: the catalog holds the id, not the claim.
    sealed: bool,
}

impl Claim {
    pub fn replica(&self) -> ReplicaId {
        self.replica
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if !self.sealed {
            self.shared.catalog().writing.remove(&self.replica.block);
        }
    }
}

/// A block being written. Dropping it without `seal` removes its temporary
/// file: nothing of an unsealed block is ever served.
pub struct BlockWriter {
    store: BlockStore,
    /// Taken by the seal.
    claim: Option<Claim>,
    /// Index of the data directory the block goes to.
    dir_index: usize,
    root: PathBuf,
    temporary_path: PathBuf,
    file: File,
    chunks: ChunkSequence,
    /// A write failed; the block can't be sealed.
    failed: bool,
    sealed: bool,
}

impl BlockWriter {
    pub fn replica(&self) -> ReplicaId {
        self.chunks.replica()
    }

    pub fn length_bytes(&self) -> u64 {
        self.chunks.length_bytes()
    }

    /// Appends one chunk: CHUNK_BYTES bytes, except the last one which may be
    /// shorter (but not empty). `crc` is its CRC32C, already checked by
    /// whoever received it; it is checked again here because a wrong stored
    /// checksum would turn a good block into a "corrupt" one.
    pub fn write_chunk(&mut self, chunk: &[u8], crc: u32) -> Result<()> {
        let block = self.chunks.replica().block;
        let index = self.chunks.chunk_count();
        let offset = self.chunks.length_bytes();
        let checked = if self.failed {
            Err(format!(
                "{block} chunk {index}: an earlier write of this block failed"
            ))
        } else if crc32c::crc32c(chunk) != crc {
            Err(format!(
                "{block} chunk {index}: checksum {crc:#010x} does not match the data"
            ))
        } else {
            self.chunks.push(chunk.len(), crc)
        };
        if let Err(why) = checked {
            self.failed = true;
            return Err(Error::Invalid(format!("write {why}")));
        }
        if let Err(error) = self.file.write_all_at(chunk, offset) {
            self.failed = true;
            if is_out_of_space(&error) {
                self.store.shared.note_full(self.dir_index);
            }
            return Err(Error::io(
                format!(
                    "write {block} chunk {index} to {}",
                    self.temporary_path.display()
                ),
                error,
            ));
        }
        Ok(())
    }

    /// Writes the checksums and the footer, makes the file durable when
    /// `sync`, and moves it into `blocks/`. Returns the block's length. On
    /// error nothing is left under `blocks/` and the temporary file is removed.
    pub fn seal(mut self, sync: bool) -> Result<u64> {
        let block = self.chunks.replica().block;
        if self.failed {
            return Err(Error::Invalid(format!(
                "seal {block}: an earlier write of this block failed"
            )));
        }
        let length_bytes = self.chunks.length_bytes();
        let tail = self.chunks.tail();
        let name = self.chunks.name();
        let context = |what: &str| format!("{what} {block} in {}", self.temporary_path.display());
        if let Err(error) = self.file.write_all_at(&tail, length_bytes) {
            if is_out_of_space(&error) {
                self.store.shared.note_full(self.dir_index);
            }
            return Err(Error::io(context("write checksums of"), error));
        }
        if sync {
            self.file.sync_data().with_context(|| context("sync"))?;
        }
        let subdir = self
            .root
            .join(BLOCKS_DIR)
            .join(block_format::subdir_name(block));
        if !subdir.is_dir() {
            // Someone removed it since open; put it back.
            fs::create_dir_all(&subdir)
                .with_context(|| format!("create directory {}", subdir.display()))?;
        }
        let target = block_format::block_path(&self.root, &name);
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
        let file_bytes = length_bytes + tail.len() as u64;
        let claim = self
            .claim
            .take()
            .ok_or_else(|| Error::Invalid(format!("seal {block}: sealed already")))?;
        if let Err(error) = self
            .store
            .seal_claimed(claim, self.dir_index, name, file_bytes)
        {
            let _ = fs::remove_file(&target);
            return Err(error);
        }
        Ok(length_bytes)
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

/// A sealed replica whose footer and checksum array were checked.
pub struct BlockReader {
    name: ReplicaName,
    path: PathBuf,
    file: File,
    length_bytes: u64,
    chunk_bytes: u32,
    crcs: Vec<u32>,
}

impl BlockReader {
    fn open(file: File, name: ReplicaName, path: PathBuf) -> Result<BlockReader> {
        let block = name.block;
        let corrupted = |detail: String| {
            Error::corrupted(format!("{block}"), format!("{detail} ({})", path.display()))
        };
        let file_bytes = file
            .metadata()
            .with_context(|| format!("stat {}", path.display()))?
            .len();
        let footer_bytes = name.footer_bytes();
        if file_bytes < footer_bytes as u64 {
            return Err(corrupted(format!(
                "the file of {file_bytes} bytes is shorter than a footer"
            )));
        }
        let mut footer = vec![0u8; footer_bytes];
        read_exact_at(&file, &mut footer, file_bytes - footer_bytes as u64)
            .map_err(|e| e.into_error(&path, &corrupted))?;
        let layout = check_footer(&name, &footer, file_bytes).map_err(&corrupted)?;
        // Bounded by BLOCK_CHUNKS_MAX: check_footer checked the layout.
        let mut crc_array = vec![0u8; layout.crc_array_bytes as usize];
        read_exact_at(&file, &mut crc_array, layout.crc_array_offset)
            .map_err(|e| e.into_error(&path, &corrupted))?;
        let crcs = check_checksums(&name, &layout, &footer, &crc_array).map_err(&corrupted)?;
        Ok(BlockReader {
            name,
            path,
            file,
            length_bytes: layout.length_bytes,
            chunk_bytes: layout.chunk_bytes,
            crcs,
        })
    }

    pub fn block(&self) -> BlockId {
        self.name.block
    }

    /// The replica: block, generation and block CRC32C.
    pub fn name(&self) -> ReplicaName {
        self.name
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

    /// The stored CRC32C of every chunk, checked against the footer and
    /// against the block CRC32C of the replica's name.
    pub fn chunk_crcs(&self) -> &[u32] {
        &self.crcs
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
        let block = self.name.block;
        let Some(&stored_crc) = usize::try_from(index).ok().and_then(|i| self.crcs.get(i)) else {
            return Err(Error::Invalid(format!(
                "read {block} chunk {index}: the block has {} chunks",
                self.crcs.len()
            )));
        };
        let offset = index * u64::from(self.chunk_bytes);
        let chunk_bytes = (self.length_bytes - offset).min(u64::from(self.chunk_bytes));
        buffer.clear();
        // At most chunk_bytes, which check_footer bounded by the frame limit.
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
    use crate::block_format::{block_path, quarantine_path, FOOTER_BYTES};

    const CHUNK: usize = CHUNK_BYTES as usize;

    fn pattern(length_bytes: usize, seed: u8) -> Vec<u8> {
        (0..length_bytes)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// The replica of block `id` these tests write: a generation derived
    /// from the id, never 0.
    fn replica(id: u64) -> ReplicaId {
        ReplicaId {
            block: BlockId(id),
            generation: Generation(id.wrapping_mul(0x9e37_79b9) | 1),
        }
    }

    fn write_block(store: &BlockStore, id: u64, data: &[u8], sync: bool) -> u64 {
        let mut writer = store.create(replica(id)).expect("create");
        for chunk in data.chunks(CHUNK) {
            writer
                .write_chunk(chunk, crc32c::crc32c(chunk))
                .expect("write chunk");
        }
        writer.seal(sync).expect("seal")
    }

    fn read_block(store: &BlockStore, id: u64) -> Vec<u8> {
        let reader = store.open_block(replica(id)).expect("open block");
        let mut data = Vec::new();
        let mut buffer = Vec::new();
        for index in 0..reader.chunk_count() {
            let crc = reader.read_chunk(index, &mut buffer).expect("read chunk");
            assert_eq!(crc, crc32c::crc32c(&buffer));
            data.extend_from_slice(&buffer);
        }
        assert_eq!(data.len() as u64, reader.length_bytes());
        assert_eq!(reader.name().crc32c, crc32c::crc32c(&data));
        data
    }

    /// The file of the sealed replica of block `id` in `root`.
    fn file_of(store: &BlockStore, root: &Path, id: u64) -> PathBuf {
        let name = store.holding(BlockId(id)).expect("held");
        block_path(root, &name)
    }

    fn ids(replicas: &[StoredBlock]) -> Vec<u64> {
        replicas.iter().map(|replica| replica.block.0).collect()
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
    fn blocks_round_trip_and_are_listed_with_what_reports_need() {
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
        let mut expected = Vec::new();
        for (number, (length_bytes, chunk_count)) in cases.into_iter().enumerate() {
            let id = 0x1000 + number as u64;
            let data = pattern(length_bytes, number as u8);
            let sync = number % 2 == 0;
            assert_eq!(write_block(&store, id, &data, sync), length_bytes as u64);
            assert!(store.contains(replica(id)));
            let reader = store.open_block(replica(id)).expect("open");
            assert_eq!(reader.chunk_count(), chunk_count, "{length_bytes}");
            assert_eq!(read_block(&store, id), data, "{length_bytes}");
            let file_bytes = length_bytes as u64 + 4 * chunk_count + FOOTER_BYTES as u64;
            let path = file_of(&store, dir.path(), id);
            assert_eq!(fs::metadata(&path).expect("stat").len(), file_bytes);
            used_bytes += file_bytes;
            expected.push(StoredBlock {
                block: BlockId(id),
                generation: replica(id).generation,
                length_bytes: length_bytes as u64,
                crc32c: crc32c::crc32c(&data),
            });
        }
        assert_eq!(store.list(), expected);
        let usage = store.usage().expect("usage");
        assert_eq!(usage.used_bytes, used_bytes);
        assert_eq!(usage.block_count, cases.len() as u64);
        assert!(usage.capacity_bytes >= usage.available_bytes);
        assert!(usage.capacity_bytes > 0);

        // A fresh open catalogs the same replicas from their names alone.
        drop(store); // the store holds its directories' locks
        let reopened = BlockStore::open(&[dir.path().to_path_buf()]).expect("reopen");
        let usage_again = reopened.usage().expect("usage");
        assert_eq!(
            (usage_again.used_bytes, usage_again.block_count),
            (used_bytes, cases.len() as u64)
        );
        assert_eq!(reopened.list(), expected);
        assert!(files_under(&dir.path().join(TMP_DIR)).is_empty());
    }

    #[test]
    fn a_replica_of_another_generation_is_neither_served_nor_removed() {
        let (_dir, store) = one_dir_store();
        write_block(&store, 5, b"five", true);
        let other = ReplicaId {
            block: BlockId(5),
            generation: Generation(77),
        };
        let error = store.open_block(other).err().expect("another generation");
        assert!(is_not_found(&error), "{error}");
        assert!(error.to_string().contains("holds generation"), "{error}");
        assert!(!store.contains(other));
        assert_eq!(store.remove(other).expect("remove"), None);
        assert!(store.contains(replica(5)));
        // Nor can it be written beside the one here: a conflict.
        let error = store.create(other).err().expect("conflict");
        assert!(is_already_exists(&error), "{error}");
        assert!(
            error.to_string().contains("a replica of generation"),
            "{error}"
        );
    }

    #[test]
    fn removed_blocks_leave_disk_and_counters() {
        let (dir, store) = one_dir_store();
        write_block(&store, 0x2001, &pattern(CHUNK + 3, 1), false);
        write_block(&store, 0x2002, &pattern(2 * CHUNK, 2), false);
        let before = store.usage().expect("usage");
        // A reader opened before the removal keeps its bytes.
        let reader = store.open_block(replica(0x2002)).expect("open");
        let path = file_of(&store, dir.path(), 0x2002);
        let file_bytes = fs::metadata(&path).expect("stat").len();
        assert_eq!(
            store.remove(replica(0x2002)).expect("remove"),
            Some(file_bytes)
        );
        assert_eq!(store.remove(replica(0x2002)).expect("remove again"), None);
        assert!(!path.exists());
        assert!(!store.contains(replica(0x2002)));
        assert!(store.contains(replica(0x2001)));
        let mut buffer = Vec::new();
        reader
            .read_chunk(1, &mut buffer)
            .expect("read after removal");
        let after = store.usage().expect("usage");
        assert_eq!(after.used_bytes, before.used_bytes - file_bytes);
        assert_eq!(after.block_count, before.block_count - 1);
        assert_eq!(ids(&store.list()), vec![0x2001]);
    }

    #[test]
    fn version_1_files_are_renamed_at_open_and_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(BlockStore::open(&[dir.path().to_path_buf()]).expect("create the layout"));
        // The fixture, and a damaged copy of another id's file.
        let fixture = include_bytes!("../tests/fixtures/blk_0123456789abcdef.v1");
        let good = dir.path().join("blocks/ef/blk_0123456789abcdef");
        fs::write(&good, fixture).expect("plant");
        let mut damaged = fixture.to_vec();
        damaged[3] ^= 0xff;
        damaged[42] ^= 1; // its checksum array
        let bad = dir.path().join("blocks/ee/blk_01234567890000ee");
        fs::write(&bad, &damaged).expect("plant");

        let store = BlockStore::open(&[dir.path().to_path_buf()]).expect("open");
        assert_eq!(store.open_report().renamed, 1);
        assert_eq!(store.open_report().strays, vec![bad.clone()]);
        assert!(bad.is_file(), "a file that does not check out stays");
        let data = b"a block written by block format version 1\n";
        let legacy = ReplicaId {
            block: BlockId(0x0123_4567_89ab_cdef),
            generation: Generation::LEGACY,
        };
        let listed = store.list();
        assert_eq!(
            listed,
            vec![StoredBlock {
                block: legacy.block,
                generation: Generation::LEGACY,
                length_bytes: data.len() as u64,
                crc32c: crc32c::crc32c(data),
            }]
        );
        assert!(!good.exists());
        let renamed = block_path(dir.path(), &store.holding(legacy.block).expect("held"));
        let expected_name = format!(
            "blk_0123456789abcdef_0000000000000000_{:08x}",
            crc32c::crc32c(data)
        );
        assert_eq!(
            renamed.file_name().and_then(|n| n.to_str()),
            Some(expected_name.as_str())
        );
        let reader = store.open_block(legacy).expect("open the renamed file");
        let mut buffer = Vec::new();
        reader.read_chunk(0, &mut buffer).expect("read");
        assert_eq!(buffer, data);
        assert_eq!(
            store.remove(legacy).expect("remove"),
            Some(fixture.len() as u64)
        );
    }

    #[test]
    fn a_flipped_data_byte_is_found_by_read_chunk() {
        let (dir, store) = one_dir_store();
        write_block(&store, 7, &pattern(3 * CHUNK, 1), true);
        let path = file_of(&store, dir.path(), 7);
        let mut bytes = fs::read(&path).expect("read");
        bytes[CHUNK + 10] ^= 0x40;
        fs::write(&path, &bytes).expect("write");

        let reader = store.open_block(replica(7)).expect("footer is still fine");
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
                    b[n - 48] = b'X';
                },
                "bad footer magic",
            ),
            (
                "bad version",
                |b| {
                    let n = b.len();
                    b[n - 44] = 3;
                },
                "block format version 3.0",
            ),
            (
                "bad checksum array",
                |b| {
                    let n = b.len();
                    b[n - 49] ^= 1;
                },
                "footer checksum",
            ),
            (
                "bad length",
                |b| {
                    let n = b.len();
                    b[n - 24] ^= 1;
                },
                "the file has",
            ),
        ];
        for (name, damage, expected) in cases {
            let (dir, store) = one_dir_store();
            write_block(&store, 42, &pattern(2 * CHUNK + 3, 5), false);
            let path = file_of(&store, dir.path(), 42);
            let mut bytes = fs::read(&path).expect("read");
            damage(&mut bytes);
            fs::write(&path, &bytes).expect("write");
            let error = store.open_block(replica(42)).err().expect(name);
            assert!(matches!(error, Error::Corrupted { .. }), "{name}: {error}");
            assert!(error.to_string().contains(expected), "{name}: {error}");
        }
    }

    #[test]
    fn a_block_file_under_another_name_is_refused() {
        let (dir, store) = one_dir_store();
        write_block(&store, 0x100, &pattern(10, 0), false);
        let name = store.holding(BlockId(0x100)).expect("held");
        let planted = ReplicaName {
            block: BlockId(0x200),
            generation: replica(0x200).generation,
            crc32c: name.crc32c,
        };
        fs::rename(
            block_path(dir.path(), &name),
            block_path(dir.path(), &planted),
        )
        .expect("rename");
        drop(store);
        let store = BlockStore::open(&[dir.path().to_path_buf()]).expect("reopen");
        let error = store.open_block(replica(0x200)).err().expect("wrong id");
        assert!(
            error
                .to_string()
                .contains("the footer names blk_0000000000000100"),
            "{error}"
        );
    }

    #[test]
    fn missing_and_vanished_blocks_are_not_found() {
        let (dir, store) = one_dir_store();
        let error = store.open_block(replica(5)).err().expect("missing");
        assert!(is_not_found(&error), "{error}");
        assert!(
            error.to_string().contains("blk_0000000000000005"),
            "{error}"
        );
        assert!(!store.contains(replica(5)));
        // A file removed behind the store's back leaves its catalog.
        write_block(&store, 6, b"six", false);
        write_block(&store, 8, b"eight", false);
        fs::remove_file(file_of(&store, dir.path(), 6)).expect("rm");
        let error = store.open_block(replica(6)).err().expect("vanished");
        assert!(error.to_string().contains("vanished"), "{error}");
        assert!(!store.contains(replica(6)));
        fs::remove_file(file_of(&store, dir.path(), 8)).expect("rm");
        assert!(store.verify_catalog().is_empty());
        assert_eq!(store.list(), vec![]);
        assert_eq!(store.usage().expect("usage").block_count, 0);
    }

    #[test]
    fn tmp_files_are_removed_on_open_and_never_listed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlockStore::open(&[dir.path().to_path_buf()]).expect("open");
        // What a crash mid-write leaves: a partial block file in tmp/ (the
        // name a writer uses) and, say, a directory.
        let partial = block_format::temporary_path(dir.path(), replica(9), 0xff);
        fs::write(&partial, b"abc").expect("partial block");
        fs::create_dir(dir.path().join("tmp/leftover-dir")).expect("mkdir");
        assert_eq!(files_under(&dir.path().join(TMP_DIR)).len(), 1);
        assert_eq!(store.list(), vec![]);
        assert!(!store.contains(replica(9)));

        drop(store); // the store holds its directories' locks
        let reopened = BlockStore::open(&[dir.path().to_path_buf()]).expect("reopen");
        assert_eq!(reopened.open_report().abandoned_removed.len(), 2);
        assert!(fs::read_dir(dir.path().join(TMP_DIR))
            .expect("tmp")
            .next()
            .is_none());
        assert_eq!(reopened.list(), vec![]);
        // Its id can be written again.
        write_block(&reopened, 9, b"abc", false);
        assert_eq!(ids(&reopened.list()), vec![9]);
    }

    #[test]
    fn stray_files_are_reported_not_listed() {
        let (dir, store) = one_dir_store();
        write_block(&store, 0x01, b"x", false);
        let name = store.holding(BlockId(1)).expect("held");
        let other_generation = ReplicaName {
            generation: Generation(3),
            ..name
        };
        let wrong_place = ReplicaName {
            block: BlockId(2),
            ..name
        };
        let strays = [
            "blocks/notes.txt".to_string(),
            "blocks/zz".to_string(),
            // In the wrong subdirectory.
            format!("blocks/01/{}", wrong_place.file_name()),
            "blocks/01/blk_01".to_string(),
            "blocks/01/BLK_0000000000000001".to_string(),
            // A second replica of one block.
            format!("blocks/01/{}", other_generation.file_name()),
        ];
        drop(store); // the store holds its directories' locks
        for stray in &strays {
            fs::write(dir.path().join(stray), b"stray").expect("write stray");
        }
        let reopened = BlockStore::open(&[dir.path().to_path_buf()]).expect("reopen");
        assert_eq!(reopened.open_report().strays.len(), strays.len());
        assert_eq!(reopened.usage().expect("usage").block_count, 1);
        assert_eq!(ids(&reopened.list()), vec![1]);
    }

    #[test]
    fn existing_or_open_ids_are_refused() {
        let (_dir, store) = one_dir_store();
        write_block(&store, 1, b"one", true);
        let error = store.create(replica(1)).err().expect("sealed id");
        assert!(is_already_exists(&error), "{error}");
        assert!(error.to_string().contains("is here already"), "{error}");

        let writer = store.create(replica(2)).expect("create");
        let error = store.create(replica(2)).err().expect("id being written");
        assert!(is_already_exists(&error), "{error}");
        assert!(error.to_string().contains("being written"), "{error}");
        // A claim of any writer (the minion's) guards the same id.
        let error = store.claim(replica(2)).err().expect("claimed");
        assert!(is_already_exists(&error), "{error}");
        writer.abort();
        let claim = store.claim(replica(2)).expect("free again after abort");
        drop(claim);
        store
            .create(replica(2))
            .expect("free again after the claim");
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
            let id = number * 977;
            write_block(&store, id, &pattern(100 + number as usize, 3), false);
            blocks.push(id);
        }
        // Each block lands in exactly one directory, and all are found.
        let mut found = 0;
        for path in &paths {
            found += files_under(&path.join(BLOCKS_DIR)).len();
        }
        assert_eq!(found, blocks.len());
        blocks.sort();
        assert_eq!(ids(&store.list()), blocks);
        for id in &blocks {
            assert_eq!(read_block(&store, *id).len(), 100 + (id / 977) as usize);
        }
        // Blocks written to a second directory are found by a store that
        // opens the directories in another order.
        let mut reversed = paths.clone();
        reversed.reverse();
        drop(store); // the store holds its directories' locks
        let reopened = BlockStore::open(&reversed).expect("reopen");
        assert_eq!(ids(&reopened.list()), blocks);
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

        let mut writer = store.create(replica(1)).expect("create");
        let error = writer.write_chunk(&over, crc(&over)).expect_err("too big");
        assert!(
            error.to_string().contains("a chunk of 65537 bytes"),
            "{error}"
        );
        assert!(writer.write_chunk(&full, crc(&full)).is_err(), "poisoned");
        assert!(writer.seal(false).is_err(), "a failed writer does not seal");

        let mut writer = store.create(replica(2)).expect("create");
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

        let mut writer = store.create(replica(3)).expect("create");
        let error = writer
            .write_chunk(b"data", crc(b"other"))
            .expect_err("bad crc");
        assert!(
            error.to_string().contains("does not match the data"),
            "{error}"
        );

        let mut writer = store.create(replica(4)).expect("create");
        assert!(writer.write_chunk(b"", crc(b"")).is_err(), "empty chunk");
        drop(writer);
        assert_eq!(store.list(), vec![]);
    }

    /// Points a writer at /dev/full, whose writes fail with ENOSPC, to check
    /// the disk-full path: the error says so and nothing reaches blocks/.
    fn writer_on_full_disk(store: &BlockStore, id: u64) -> BlockWriter {
        let mut writer = store.create(replica(id)).expect("create");
        writer.file = File::options()
            .write(true)
            .open("/dev/full")
            .expect("open /dev/full");
        writer
    }

    #[test]
    fn disk_full_while_writing_leaves_nothing() {
        let (dir, store) = one_dir_store();
        let mut writer = writer_on_full_disk(&store, 11);
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
        assert!(!store.contains(replica(11)));
        assert_eq!(store.usage().expect("usage").block_count, 0);
    }

    #[test]
    fn disk_full_while_sealing_leaves_nothing() {
        let (dir, store) = one_dir_store();
        let mut writer = store.create(replica(12)).expect("create");
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
        store.create(replica(12)).expect("the id is free again");
    }

    #[test]
    fn quarantined_replicas_are_refused_unlisted_and_removed() {
        let (dir, store) = one_dir_store();
        let id = 0x105;
        let data = pattern(2 * CHUNK + 1, 4);
        write_block(&store, id, &data, false);
        let name = store.holding(BlockId(id)).expect("held");
        let inode = fs::metadata(block_path(dir.path(), &name))
            .expect("stat")
            .ino();
        assert!(!store
            .quarantine(replica(id), Some(inode + 1))
            .expect("other inode"));
        assert!(
            store.contains(replica(id)),
            "a file with another inode stays"
        );
        assert!(store
            .quarantine(replica(id), Some(inode))
            .expect("quarantine"));
        assert!(quarantine_path(dir.path(), &name).is_file());
        assert!(!store.contains(replica(id)));
        assert_eq!(store.list(), vec![]);
        assert_eq!(store.usage().expect("usage").block_count, 0);
        assert_eq!(ids(&store.quarantined()), vec![id]);
        assert_eq!(store.quarantined()[0].length_bytes, data.len() as u64);
        let error = store.open_block(replica(id)).err().expect("refused");
        assert!(matches!(error, Error::Corrupted { .. }), "{error}");
        assert!(is_quarantined(&error), "{error}");
        assert!(
            !store.quarantine(replica(id), None).expect("again"),
            "already moved"
        );

        // Kept across a restart, still refused.
        drop(store);
        let store = BlockStore::open(&[dir.path().to_path_buf()]).expect("reopen");
        assert_eq!(store.open_report().quarantined, vec![replica(id)]);
        assert!(store.open_report().strays.is_empty());
        assert!(is_quarantined(
            &store.open_block(replica(id)).err().expect("refused")
        ));

        // A good copy sealed here supersedes it.
        write_block(&store, id, &data, true);
        assert_eq!(read_block(&store, id), data);
        assert_eq!(store.quarantined(), vec![]);
        assert!(!quarantine_path(dir.path(), &name).exists());

        // The master's Delete removes a quarantined replica too.
        assert!(store.quarantine(replica(id), None).expect("quarantine"));
        assert_eq!(store.remove(replica(id)).expect("remove"), Some(0));
        assert_eq!(store.quarantined(), vec![]);
        assert!(is_not_found(
            &store.open_block(replica(id)).err().expect("gone")
        ));
        assert_eq!(store.remove(replica(id)).expect("remove again"), None);
    }

    #[test]
    fn a_failed_directory_is_out_of_service() {
        let dirs: Vec<tempfile::TempDir> = (0..2)
            .map(|_| tempfile::tempdir().expect("tempdir"))
            .collect();
        let paths: Vec<PathBuf> = dirs.iter().map(|d| d.path().to_path_buf()).collect();
        // One block in each directory: each written by a store of that
        // directory alone.
        let blocks = [0x10, 0x11];
        for (path, id) in paths.iter().zip(blocks) {
            let alone = BlockStore::open(std::slice::from_ref(path)).expect("open one");
            write_block(&alone, id, b"x", false);
        }
        let store = BlockStore::open(&paths).expect("open");
        for (index, id) in blocks.iter().enumerate() {
            assert!(file_of(&store, &paths[index], *id).is_file(), "{id}");
        }
        assert_eq!(store.usage().expect("usage").block_count, 2);
        assert_eq!(
            store.directory_of(&file_of(&store, &paths[1], blocks[1])),
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
        assert_eq!(ids(&store.list()), vec![blocks[1]]);
        assert_eq!(store.usage().expect("usage").block_count, 1);
        assert!(is_not_found(
            &store.open_block(replica(blocks[0])).err().expect("gone")
        ));
        assert!(!store.contains(replica(blocks[0])));
        assert_eq!(store.remove(replica(blocks[0])).expect("remove"), None);
        assert_eq!(store.list_directory(0), vec![]);
        let listed = store.list_directory(1);
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].1, 1 + 4 + FOOTER_BYTES as u64);
        // The lost block may be copied back: it goes to the other directory.
        write_block(&store, blocks[0], b"y", false);
        assert!(file_of(&store, &paths[1], blocks[0]).is_file());
        assert_eq!(
            ids(&store.list()),
            vec![blocks[0], blocks[1]],
            "the failed directory's copy is not listed"
        );

        assert!(store.fail_directory(1, "this one too"));
        let error = store.create(replica(0x12)).err().expect("nowhere to write");
        assert!(
            error
                .to_string()
                .contains("every data directory of this minion failed"),
            "{error}"
        );
        assert_eq!(store.list(), vec![]);
        assert_eq!(store.usage().expect("usage"), Usage::default());
    }

    #[test]
    fn directory_checks_find_what_went_away() {
        let (dir, store) = one_dir_store();
        write_block(&store, 1, b"kept", false);
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
