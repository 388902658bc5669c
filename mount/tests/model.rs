//! A seeded random-operation model test of `dfs-mount`: thousands of mixed
//! operations (opens with O_CREAT/O_TRUNC/O_APPEND/O_EXCL, writes at random
//! offsets and past the end, reads, ftruncate and truncate, fsync, close,
//! rename (also over a file and of directories), link, unlink (also while
//! open), mkdir/rmdir, stat and fstat, reads through a shared mapping and
//! writes through a shared writable mapping with msync) applied to the
//! mount and to a local directory, the model, with every result (return
//! value, errno, bytes read) compared at once and the whole tree (names,
//! kinds, sizes, contents, link counts, which names share a file) every
//! few steps and at the end.
//!
//! `DFS_MODEL_SEED` picks the sequence (every failure names its seed and
//! step), `DFS_MODEL_STEPS` how many operations run, `DFS_MODEL_TRACE=1`
//! prints each operation as it runs, `DFS_MODEL_KEEP=1` keeps the
//! cluster's directory (logs, both trees). No operation is stepped around:
//! the guards this test once had around the mount's known limits (a
//! commit of a file whose name was taken, a hard link to a new file still
//! open here) went with the limits.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use dfs_testkit::seeded::SplitMix64;
use dfs_testkit::{Cluster, ClusterOptions};

mod support;

use support::{errno, Mounted};

/// Operations when `DFS_MODEL_STEPS` does not say (about 12 s in a debug
/// build on two cores).
const DEFAULT_STEPS: u64 = 10_000;
const DEFAULT_SEED: u64 = 20_250_601;
/// The whole tree is compared every this many steps.
const TREE_EVERY_STEPS: u64 = 100;
/// Descriptors open at once, at most.
const OPEN_MAX: usize = 6;
/// Files grow to about this size (a little more through mappings: never).
const FILE_BYTES_MAX: u64 = 3 << 20;
/// The longest single write or read.
const IO_BYTES_MAX: u64 = 300 << 10;
/// The cluster's block size, so that files span several blocks.
const BLOCK_BYTES: u64 = 1 << 20;
const PAGE_BYTES: u64 = 4096;
/// Operations shown before a failure.
const HISTORY_SHOWN: usize = 60;
/// Lines of the mount's log a failure shows.
const MOUNT_LOG_SHOWN: usize = 20;

/// Directory names (the last is absent at first) and file names in each.
const DIRECTORIES: [&str; 3] = ["a", "b", "c"];
const FILES: [&str; 3] = ["f0", "f1", "f2"];

/// A number from the environment, or `default`.
fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
        Err(_) => default,
    }
}

/// The run's choices, from its seed.
struct Rng(SplitMix64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A number in 0..n (0 when n is 0).
    fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }

    /// A number in low..=high.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }

    /// True `percent` times in a hundred.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    fn bytes(&mut self, length: usize) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(length + 8);
        while bytes.len() < length {
            bytes.extend_from_slice(&self.next().to_le_bytes());
        }
        bytes.truncate(length);
        bytes
    }

    /// A length for a write or a read: mostly small, sometimes large.
    fn io_length(&mut self) -> u64 {
        match self.below(10) {
            0..=3 => self.between(1, 4096),
            4..=7 => self.between(4097, 64 << 10),
            _ => self.between(64 << 10, IO_BYTES_MAX),
        }
    }

    /// An offset into a file of `size` bytes: inside it, at a block edge,
    /// at its end, or past it (a hole), leaving room for `length` bytes.
    fn offset(&mut self, size: u64, length: u64) -> u64 {
        let room = FILE_BYTES_MAX.saturating_sub(length);
        let offset = match self.below(10) {
            0..=3 => self.below(size + 1),
            4..=5 => {
                let edge = self.between(1, FILE_BYTES_MAX / BLOCK_BYTES) * BLOCK_BYTES;
                edge.saturating_sub(self.below(length + 1))
            }
            6 => size,
            _ => size + self.below(512 << 10),
        };
        offset.min(room)
    }
}

/// Small wrappers for the calls `std` does not offer with their errno.
mod sys {
    use std::ffi::CString;
    use std::fs::File;
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    fn c_path(path: &Path) -> io::Result<CString> {
        CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
    }

    /// open(2) with exactly `flags` (and O_CLOEXEC).
    pub fn open(path: &Path, flags: i32, mode: u32) -> io::Result<File> {
        let path = c_path(path)?;
        // SAFETY: `path` is a NUL-terminated string that outlives the call.
        let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, mode) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and nothing else owns it.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// close(2), with its result (dropping a `File` ignores it).
    pub fn close(file: File) -> io::Result<()> {
        let fd = file.into_raw_fd();
        // SAFETY: `fd` is open and owned here alone; it is closed once.
        if unsafe { libc::close(fd) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// truncate(2) of a path.
    pub fn truncate(path: &Path, size: u64) -> io::Result<()> {
        let path = c_path(path)?;
        let size =
            libc::off_t::try_from(size).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
        // SAFETY: `path` is a NUL-terminated string that outlives the call.
        if unsafe { libc::truncate(path.as_ptr(), size) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// A shared mapping of `length` bytes of `file` at `offset` (a page
    /// multiple), unmapped when dropped.
    struct Mapping {
        address: *mut libc::c_void,
        length: usize,
    }

    impl Mapping {
        fn new(file: &File, offset: u64, length: usize, protection: i32) -> io::Result<Mapping> {
            let offset = libc::off_t::try_from(offset)
                .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
            // SAFETY: a new mapping chosen by the kernel (no address given),
            // of a descriptor that stays open while it is mapped.
            let address = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    length,
                    protection,
                    libc::MAP_SHARED,
                    file.as_raw_fd(),
                    offset,
                )
            };
            if address == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            Ok(Mapping { address, length })
        }

        fn bytes(&self) -> &[u8] {
            // SAFETY: `length` bytes are mapped at `address` until drop; the
            // callers keep them within the file's size, so no SIGBUS.
            unsafe { std::slice::from_raw_parts(self.address.cast::<u8>(), self.length) }
        }

        fn bytes_mut(&mut self) -> &mut [u8] {
            // SAFETY: as `bytes`, mapped writable, and borrowed uniquely.
            unsafe { std::slice::from_raw_parts_mut(self.address.cast::<u8>(), self.length) }
        }

        fn sync(&self) -> io::Result<()> {
            // SAFETY: the range is exactly the live mapping.
            if unsafe { libc::msync(self.address, self.length, libc::MS_SYNC) } < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }
    }

    impl Drop for Mapping {
        fn drop(&mut self) {
            // SAFETY: the range is exactly the mapping made in `new`, and no
            // slice of it outlives `self`.
            unsafe { libc::munmap(self.address, self.length) };
        }
    }

    /// The `length` bytes at `offset` (a page multiple) read through a
    /// shared read-only mapping of `file`.
    pub fn mmap_read(file: &File, offset: u64, length: usize) -> io::Result<Vec<u8>> {
        let mapping = Mapping::new(file, offset, length, libc::PROT_READ)?;
        Ok(mapping.bytes().to_vec())
    }

    /// Writes `data` at `at` into a shared writable mapping of `length`
    /// bytes of `file` at `offset` (a page multiple), then msync(MS_SYNC).
    pub fn mmap_write(
        file: &File,
        offset: u64,
        length: usize,
        at: usize,
        data: &[u8],
    ) -> io::Result<()> {
        let mut mapping = Mapping::new(file, offset, length, libc::PROT_READ | libc::PROT_WRITE)?;
        mapping.bytes_mut()[at..at + data.len()].copy_from_slice(data);
        mapping.sync()
    }
}

/// A result as it is compared: the value, or the errno.
type Outcome<T> = Result<T, i32>;

fn outcome<T>(result: io::Result<T>) -> Outcome<T> {
    result.map_err(|error| errno(&error))
}

/// What stat shows that the mount and the model must agree on. Left out,
/// where the mount differs from a local file system by design: times (the
/// cluster's clock, and no access times: `noatime`), st_blocks (what the
/// cluster stores, not what a local disk would), inode and device numbers
/// (the cluster's own; which names share a file is compared in the tree),
/// a directory's link count (one, as the README says) and a directory's
/// size. Modes and owners are kept by the mount, but this test does not
/// change them.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    /// `links`: its name, "." and each subdirectory's "..".
    Directory {
        links: u64,
    },
    File {
        size: u64,
        links: u64,
    },
    Other,
}

fn kind_of(metadata: &fs::Metadata) -> Kind {
    if metadata.is_dir() {
        Kind::Directory {
            links: metadata.nlink(),
        }
    } else if metadata.is_file() {
        Kind::File {
            size: metadata.len(),
            links: metadata.nlink(),
        }
    } else {
        Kind::Other
    }
}

/// One descriptor open on each side.
struct Open {
    serial: u64,
    label: String,
    mount: File,
    local: File,
    append: bool,
    /// The model's inode number of the file.
    inode: u64,
    /// On the mount, one of the descriptors sharing the file's copy there
    /// (open for writing, made by this open, opened while such a one was
    /// open, or a reader when a writer opened); otherwise a reader.
    shared: bool,
    /// The file lost one of its names while open here.
    lost_name: bool,
    /// The path it was opened by (for a `shared` descriptor, the one the
    /// copy was first opened by), moved by renames of it or of a directory
    /// above it.
    path: String,
}

impl Open {
    fn name(&self) -> String {
        format!("fd#{} ({})", self.serial, self.label)
    }
}

fn flag_names(flags: i32) -> String {
    let mut names = vec![match flags & libc::O_ACCMODE {
        libc::O_RDONLY => "O_RDONLY",
        libc::O_WRONLY => "O_WRONLY",
        _ => "O_RDWR",
    }];
    for (flag, name) in [
        (libc::O_CREAT, "O_CREAT"),
        (libc::O_EXCL, "O_EXCL"),
        (libc::O_TRUNC, "O_TRUNC"),
        (libc::O_APPEND, "O_APPEND"),
    ] {
        if flags & flag != 0 {
            names.push(name);
        }
    }
    names.join("|")
}

/// Where in two byte strings they first differ, for a failure message.
fn first_difference(mount: &[u8], local: &[u8]) -> String {
    if let Some(at) = mount.iter().zip(local).position(|(a, b)| a != b) {
        let end = (at + 16).min(mount.len()).min(local.len());
        return format!(
            "lengths {} (mount) and {} (model); first difference at byte {at}: mount {:02x?}, model {:02x?}",
            mount.len(),
            local.len(),
            &mount[at..end],
            &local[at..end]
        );
    }
    format!(
        "lengths {} (mount) and {} (model), equal as far as the shorter goes",
        mount.len(),
        local.len()
    )
}

/// The run: the two trees, the descriptors open on both, what happened.
struct Model {
    seed: u64,
    steps: u64,
    step: u64,
    op: String,
    /// The model's result of the operation, for the history.
    result: String,
    history: Vec<String>,
    rng: Rng,
    mount_root: PathBuf,
    local_root: PathBuf,
    open: Vec<Open>,
    next_serial: u64,
    trace: bool,
    counts: BTreeMap<&'static str, u64>,
}

impl Model {
    /// Panics with everything needed to run this failure again.
    fn fail(&self, what: &str, detail: &str) -> ! {
        if self.trace {
            eprintln!("{:>8}: {} = FAILED", self.step, self.op);
        }
        let shown = self.history.len().saturating_sub(HISTORY_SHOWN);
        let history: Vec<&str> = self.history[shown..].iter().map(String::as_str).collect();
        let open: Vec<String> = self
            .open
            .iter()
            .map(|open| {
                format!(
                    "  {}: model inode {}, opened as {}{}{}",
                    open.name(),
                    open.inode,
                    open.path,
                    if open.shared {
                        ", shares the mount's copy"
                    } else {
                        ", a reader"
                    },
                    if open.lost_name { ", lost a name" } else { "" },
                )
            })
            .collect();
        let tree = |root: &Path| match snapshot(root) {
            Ok(tree) => tree
                .iter()
                .map(|(name, (kind, _))| match kind {
                    Kind::Directory { links } => format!("{name}/ ({links} links)"),
                    Kind::File { size, links } => format!("{name} ({size} bytes, {links} links)"),
                    Kind::Other => format!("{name} (?)"),
                })
                .collect::<Vec<_>>()
                .join(", "),
            Err(error) => error,
        };
        // What the mount said about it (its errors go to its log).
        let mount_log = self
            .mount_root
            .parent()
            .map(|dir| dir.join("mount-mnt.log"))
            .and_then(|log| fs::read_to_string(log).ok())
            .map(|text| {
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(MOUNT_LOG_SHOWN)..].join("\n")
            })
            .unwrap_or_else(|| "(no log)".to_string());
        panic!(
            "model test seed {seed} (DFS_MODEL_SEED={seed} DFS_MODEL_STEPS={steps}), step {step}, \
             operation `{op}`: {what}: {detail}\nthe operations before it (step: operation):\n{}\n\
             descriptors open:\n{}\nthe model's tree: {}\nthe mount's tree: {}\n\
             the mount's log, last lines:\n{}",
            history.join("\n"),
            open.join("\n"),
            tree(&self.local_root),
            tree(&self.mount_root),
            mount_log,
            seed = self.seed,
            steps = self.steps,
            step = self.step,
            op = self.op,
        );
    }

    fn same<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, mount: &T, local: &T) {
        self.result = format!("{local:?}");
        if mount != local {
            self.fail(
                what,
                &format!("the mount gave {mount:?}, the model {local:?}"),
            );
        }
    }

    fn same_bytes(&mut self, what: &str, mount: &Outcome<Vec<u8>>, local: &Outcome<Vec<u8>>) {
        self.result = match local {
            Ok(bytes) => format!("Ok({} bytes)", bytes.len()),
            Err(errno) => format!("Err({errno})"),
        };
        match (mount, local) {
            (Ok(mount), Ok(local)) if mount != local => {
                self.fail(what, &first_difference(mount, local));
            }
            (Ok(_), Ok(_)) => {}
            (mount, local) if mount != local => {
                let shorten = |o: &Outcome<Vec<u8>>| match o {
                    Ok(bytes) => format!("Ok({} bytes)", bytes.len()),
                    Err(errno) => format!("Err({errno})"),
                };
                self.fail(
                    what,
                    &format!(
                        "the mount gave {}, the model {}",
                        shorten(mount),
                        shorten(local)
                    ),
                );
            }
            _ => {}
        }
    }

    /// After every operation: each file open here has the same size
    /// through the mount's descriptors as in the model (a wrong size the
    /// kernel took from an answer would show in no other result until a
    /// read or an O_APPEND write went wrong).
    fn check_open_sizes(&mut self) {
        let mut seen = BTreeSet::new();
        let mut wrong = None;
        for open in &self.open {
            if !open.shared || !seen.insert(open.inode) {
                continue;
            }
            let (Ok(mount), Ok(local)) = (open.mount.metadata(), open.local.metadata()) else {
                continue;
            };
            if mount.len() != local.len() {
                wrong = Some((open.name(), mount.len(), local.len()));
                break;
            }
        }
        if let Some((name, size, wanted)) = wrong {
            self.op = format!("fstat {name} after the operation");
            self.same("fstat: size", &size, &wanted);
        }
    }

    /// A name of the file `inode` was removed.
    fn lost_name(&mut self, inode: u64) {
        for open in &mut self.open {
            if open.inode == inode {
                open.lost_name = true;
            }
        }
    }

    /// Keeps the operation just done, with the model's result.
    fn record(&mut self) {
        let op = std::mem::take(&mut self.op);
        let result = std::mem::take(&mut self.result);
        let line = if result.is_empty() {
            format!("{:>8}: {op}", self.step)
        } else {
            format!("{:>8}: {op} = {result}", self.step)
        };
        if self.trace {
            eprintln!("{line}");
        }
        self.history.push(line);
    }

    fn begin(&mut self, kind: &'static str, op: String) {
        *self.counts.entry(kind).or_default() += 1;
        if self.trace {
            eprintln!("{:>8}> {op}", self.step);
        }
        self.op = op;
    }

    fn both(&self, relative: &str) -> (PathBuf, PathBuf) {
        (
            self.mount_root.join(relative),
            self.local_root.join(relative),
        )
    }

    fn file_path(&mut self) -> String {
        let directory = *self.rng.pick(&DIRECTORIES);
        let file = *self.rng.pick(&FILES);
        format!("{directory}/{file}")
    }

    /// Mostly a file's path, sometimes a directory's.
    fn any_path(&mut self) -> String {
        if self.rng.chance(15) {
            (*self.rng.pick(&DIRECTORIES)).to_string()
        } else {
            self.file_path()
        }
    }

    fn pick_open(&mut self) -> Option<usize> {
        if self.open.is_empty() {
            return None;
        }
        Some(self.rng.below(self.open.len() as u64) as usize)
    }

    /// The size of the model's file behind a descriptor.
    fn local_size(&self, index: usize) -> u64 {
        self.open[index]
            .local
            .metadata()
            .map_or(0, |metadata| metadata.len())
    }

    fn step_once(&mut self) {
        let choice = self.rng.below(100);
        let fd_op = self.pick_open();
        match (choice, fd_op) {
            (0..=13, _) => self.do_open(),
            (14..=20, Some(i)) => self.do_close(i),
            (21..=37, Some(i)) => self.do_write(i),
            (38..=48, Some(i)) => self.do_read(i),
            (49..=53, Some(i)) => self.do_ftruncate(i),
            (54..=56, Some(i)) => self.do_fsync(i),
            (57..=59, Some(i)) => self.do_fstat(i),
            (60..=63, Some(i)) => self.do_mmap_read(i),
            (64..=67, Some(i)) => self.do_mmap_write(i),
            (68..=69, _) => self.do_truncate(),
            (70..=75, _) => self.do_rename(),
            (76..=79, _) => self.do_link(),
            (80..=85, _) => self.do_unlink(),
            (86..=87, _) => self.do_mkdir(),
            (88..=89, _) => self.do_rmdir(),
            (90..=95, _) => self.do_stat(),
            (96..=97, _) => self.do_list(),
            _ => self.do_open(),
        }
    }

    fn do_open(&mut self) {
        if self.open.len() >= OPEN_MAX {
            let i = self.rng.below(self.open.len() as u64) as usize;
            return self.do_close(i);
        }
        let path = self.file_path();
        let mut flags = *self.rng.pick(&[
            libc::O_RDONLY,
            libc::O_RDONLY,
            libc::O_WRONLY,
            libc::O_RDWR,
            libc::O_RDWR,
            libc::O_RDWR,
        ]);
        if self.rng.chance(55) {
            flags |= libc::O_CREAT;
            if self.rng.chance(10) {
                flags |= libc::O_EXCL;
            }
        }
        if flags & libc::O_ACCMODE != libc::O_RDONLY {
            if self.rng.chance(15) {
                flags |= libc::O_TRUNC;
            }
            if self.rng.chance(15) {
                flags |= libc::O_APPEND;
            }
        }
        let serial = self.next_serial;
        self.next_serial += 1;
        let label = format!("{path} {}", flag_names(flags));
        self.begin("open", format!("open {label} -> fd#{serial}"));
        let (mount_path, local_path) = self.both(&path);
        let existed = fs::symlink_metadata(&local_path).is_ok();
        let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let mount = sys::open(&mount_path, flags, 0o644);
        let local = sys::open(&local_path, flags, 0o644);
        match (mount, local) {
            (Ok(mount), Ok(local)) => {
                let inode = local.metadata().map_or(0, |metadata| metadata.ino());
                self.result = format!("Ok (model inode {inode})");
                // One more descriptor of a copy the mount shares: it has
                // that copy's path and history.
                let group = self
                    .open
                    .iter()
                    .find(|open| open.shared && open.inode == inode)
                    .map(|open| (open.path.clone(), open.lost_name));
                let shared = writable || !existed || group.is_some();
                let (path, lost_name) = group.unwrap_or((path, false));
                if shared {
                    // The mount's readers of the file join the copy the
                    // first writer here opens: they see its writes, and
                    // keep it (and its path) while they are open.
                    for open in self.open.iter_mut().filter(|open| open.inode == inode) {
                        open.shared = true;
                        open.path.clone_from(&path);
                        open.lost_name = lost_name;
                    }
                }
                self.open.push(Open {
                    serial,
                    label,
                    mount,
                    local,
                    append: flags & libc::O_APPEND != 0,
                    inode,
                    shared,
                    lost_name,
                    path,
                });
            }
            (mount, local) => {
                let (mount, local) = (outcome(mount.map(drop)), outcome(local.map(drop)));
                self.same("open", &mount, &local);
            }
        }
    }

    fn do_close(&mut self, i: usize) {
        let open = self.open.remove(i);
        self.begin("close", format!("close {}", open.name()));
        let mount = outcome(sys::close(open.mount));
        let local = outcome(sys::close(open.local));
        self.same("close", &mount, &local);
    }

    fn do_write(&mut self, i: usize) {
        let size = self.local_size(i);
        let mut length = self.rng.io_length();
        let append = self.open[i].append;
        if append {
            length = length.min(FILE_BYTES_MAX.saturating_sub(size));
        }
        let offset = self.rng.offset(size, length);
        let data = self.rng.bytes(length as usize);
        let name = self.open[i].name();
        let (mount, local) = if append {
            self.begin(
                "write",
                format!("write {name} {length} bytes (appended, size {size})"),
            );
            let open = &mut self.open[i];
            (
                outcome((&open.mount).write(&data)),
                outcome((&open.local).write(&data)),
            )
        } else {
            self.begin(
                "write",
                format!("pwrite {name} {length} bytes at {offset} (size {size})"),
            );
            let open = &self.open[i];
            (
                outcome(open.mount.write_at(&data, offset)),
                outcome(open.local.write_at(&data, offset)),
            )
        };
        self.same("write", &mount, &local);
    }

    fn do_read(&mut self, i: usize) {
        let size = self.local_size(i);
        let length = self.rng.io_length();
        let offset = if self.rng.chance(10) {
            size + self.rng.below(4096)
        } else {
            self.rng.below(size + 1)
        };
        self.begin(
            "read",
            format!(
                "pread {} {length} bytes at {offset} (size {size})",
                self.open[i].name()
            ),
        );
        let read = |file: &File| {
            let mut buffer = vec![0u8; length as usize];
            outcome(file.read_at(&mut buffer, offset)).map(|read| {
                buffer.truncate(read);
                buffer
            })
        };
        let mount = read(&self.open[i].mount);
        let local = read(&self.open[i].local);
        self.same_bytes("pread", &mount, &local);
    }

    fn new_size(&mut self, size: u64) -> u64 {
        match self.rng.below(10) {
            0 => 0,
            1..=3 => self.rng.below(size + 1),
            4..=6 => (size + self.rng.below(300 << 10)).min(FILE_BYTES_MAX),
            _ => self.rng.below(FILE_BYTES_MAX + 1),
        }
    }

    fn do_ftruncate(&mut self, i: usize) {
        let size = self.local_size(i);
        let to = self.new_size(size);
        self.begin(
            "ftruncate",
            format!("ftruncate {} to {to} (size {size})", self.open[i].name()),
        );
        let mount = outcome(self.open[i].mount.set_len(to));
        let local = outcome(self.open[i].local.set_len(to));
        self.same("ftruncate", &mount, &local);
    }

    fn do_truncate(&mut self) {
        let path = self.any_path();
        let (mount_path, local_path) = self.both(&path);
        let size = fs::metadata(&local_path).map_or(0, |m| m.len());
        let to = self.new_size(size);
        self.begin("truncate", format!("truncate {path} to {to} (size {size})"));
        let mount = outcome(sys::truncate(&mount_path, to));
        let local = outcome(sys::truncate(&local_path, to));
        self.same("truncate", &mount, &local);
    }

    fn do_fsync(&mut self, i: usize) {
        self.begin("fsync", format!("fsync {}", self.open[i].name()));
        let mount = outcome(self.open[i].mount.sync_all());
        let local = outcome(self.open[i].local.sync_all());
        self.same("fsync", &mount, &local);
    }

    fn do_fstat(&mut self, i: usize) {
        self.begin("fstat", format!("fstat {}", self.open[i].name()));
        let mount = outcome(self.open[i].mount.metadata()).map(|m| kind_of(&m));
        let local = outcome(self.open[i].local.metadata()).map(|m| kind_of(&m));
        self.same("fstat", &mount, &local);
    }

    /// A page-aligned range inside a file of `size` bytes (not empty).
    fn mapped_range(&mut self, size: u64) -> (u64, usize) {
        let offset = self.rng.below(size) / PAGE_BYTES * PAGE_BYTES;
        let length = self.rng.io_length().min(size - offset);
        (offset, length as usize)
    }

    /// Both sides' sizes behind descriptor `i`, checked equal first (a
    /// mapping is made only within them).
    /// 0 for a directory (or a descriptor fstat fails on).
    fn mapped_size(&mut self, i: usize, what: &str) -> u64 {
        let mount = outcome(self.open[i].mount.metadata()).map(|m| kind_of(&m));
        let local = outcome(self.open[i].local.metadata()).map(|m| kind_of(&m));
        self.op = format!("fstat {} before {what}", self.open[i].name());
        self.same("fstat", &mount, &local);
        match local {
            Ok(Kind::File { size, .. }) => size,
            _ => 0,
        }
    }

    fn do_mmap_read(&mut self, i: usize) {
        let size = self.mapped_size(i, "mmap");
        if size == 0 {
            // An empty file (or a directory) has nothing to map: a mapping
            // of it is no test of anything, and touching it would fault.
            return self.do_fstat(i);
        }
        let (offset, length) = self.mapped_range(size);
        self.begin(
            "mmap read",
            format!(
                "mmap read {} {length} bytes at {offset} (size {size})",
                self.open[i].name()
            ),
        );
        let mount = outcome(sys::mmap_read(&self.open[i].mount, offset, length));
        let local = outcome(sys::mmap_read(&self.open[i].local, offset, length));
        self.same_bytes("read through a shared mapping", &mount, &local);
    }

    fn do_mmap_write(&mut self, i: usize) {
        let size = self.mapped_size(i, "mmap");
        if size == 0 {
            return self.do_fstat(i);
        }
        let (offset, length) = self.mapped_range(size);
        let at = self.rng.below(length as u64) as usize;
        let count = self.rng.between(1, (length - at) as u64) as usize;
        let data = self.rng.bytes(count);
        self.begin(
            "mmap write",
            format!(
                "mmap write {} {count} bytes at {} (mapped {length} at {offset}, size {size}), msync",
                self.open[i].name(),
                offset + at as u64
            ),
        );
        let mount = outcome(sys::mmap_write(
            &self.open[i].mount,
            offset,
            length,
            at,
            &data,
        ));
        let local = outcome(sys::mmap_write(
            &self.open[i].local,
            offset,
            length,
            at,
            &data,
        ));
        self.same("write through a shared mapping", &mount, &local);
    }

    fn do_rename(&mut self) {
        let (from, to) = if self.rng.chance(10) {
            let from = *self.rng.pick(&DIRECTORIES);
            let to = *self.rng.pick(&DIRECTORIES);
            (from.to_string(), to.to_string())
        } else {
            (self.any_path(), self.file_path())
        };
        // A directory goes into a file's place only when it has no
        // directories in it, so the tree stays two directories deep.
        let nested = list(&self.local_root.join(&from)).is_ok_and(|names| {
            names
                .iter()
                .any(|name| self.local_root.join(&from).join(name).is_dir())
        });
        let to = if nested && to.contains('/') {
            (*self.rng.pick(&DIRECTORIES)).to_string()
        } else {
            to
        };
        self.begin("rename", format!("rename {from} {to}"));
        let (mount_from, local_from) = self.both(&from);
        let (mount_to, local_to) = self.both(&to);
        let moved = fs::symlink_metadata(&local_from).map_or(0, |m| m.ino());
        let replaced = fs::symlink_metadata(&local_to).map_or(0, |m| m.ino());
        let mount = outcome(fs::rename(mount_from, mount_to));
        let local = outcome(fs::rename(local_from, local_to));
        self.same("rename", &mount, &local);
        if local.is_ok() && replaced != moved {
            self.lost_name(replaced);
        }
        if local.is_ok() && moved != replaced {
            // As the mount moves the files open under `from` (a rename
            // between two names of one file does nothing).
            for open in &mut self.open {
                if let Some(rest) = open.path.strip_prefix(&from) {
                    if rest.is_empty() || rest.starts_with('/') {
                        open.path = format!("{to}{rest}");
                    }
                }
            }
        }
    }

    fn do_link(&mut self) {
        let from = self.any_path();
        let to = self.file_path();
        self.begin("link", format!("link {from} {to}"));
        let (mount_from, local_from) = self.both(&from);
        let (mount_to, local_to) = self.both(&to);
        let mount = outcome(fs::hard_link(mount_from, mount_to));
        let local = outcome(fs::hard_link(local_from, local_to));
        self.same("link", &mount, &local);
    }

    fn do_unlink(&mut self) {
        let path = self.any_path();
        self.begin("unlink", format!("unlink {path}"));
        let (mount_path, local_path) = self.both(&path);
        let removed = fs::symlink_metadata(&local_path).map_or(0, |m| m.ino());
        let mount = outcome(fs::remove_file(mount_path));
        let local = outcome(fs::remove_file(local_path));
        self.same("unlink", &mount, &local);
        if local.is_ok() {
            self.lost_name(removed);
        }
    }

    fn do_mkdir(&mut self) {
        let path = *self.rng.pick(&DIRECTORIES);
        self.begin("mkdir", format!("mkdir {path}"));
        let (mount_path, local_path) = self.both(path);
        let mount = outcome(fs::create_dir(mount_path));
        let local = outcome(fs::create_dir(local_path));
        self.same("mkdir", &mount, &local);
    }

    fn do_rmdir(&mut self) {
        let path = self.any_path();
        self.begin("rmdir", format!("rmdir {path}"));
        let (mount_path, local_path) = self.both(&path);
        let mount = outcome(fs::remove_dir(mount_path));
        let local = outcome(fs::remove_dir(local_path));
        self.same("rmdir", &mount, &local);
    }

    fn do_stat(&mut self) {
        let path = self.any_path();
        self.begin("stat", format!("stat {path}"));
        let (mount_path, local_path) = self.both(&path);
        let mount = outcome(fs::symlink_metadata(mount_path)).map(|m| kind_of(&m));
        let local = outcome(fs::symlink_metadata(local_path)).map(|m| kind_of(&m));
        self.same("stat", &mount, &local);
    }

    fn do_list(&mut self) {
        let path = *self.rng.pick(&["", "a", "b", "c"]);
        self.begin("list", format!("list /{path}"));
        let (mount_path, local_path) = self.both(path);
        let local = outcome(list(&local_path));
        let mount = outcome(list(&mount_path));
        self.same("readdir", &mount, &local);
    }

    /// Compares the whole tree: names, kinds, sizes, link counts, which
    /// names share a file, and every file's contents.
    fn compare_trees(&mut self, when: &str) {
        self.op = format!("compare the trees ({when})");
        if self.trace {
            eprintln!("{:>8}: {}", self.step, self.op);
        }
        let local = snapshot(&self.local_root).unwrap_or_else(|e| self.fail("walk the model", &e));
        let mount = snapshot(&self.mount_root).unwrap_or_else(|e| self.fail("walk the mount", &e));
        let kinds = |tree: &BTreeMap<String, (Kind, u64)>| -> BTreeMap<String, Kind> {
            tree.iter()
                .map(|(name, (kind, _))| (name.clone(), kind.clone()))
                .collect()
        };
        self.same(
            "the tree's names, kinds, sizes and link counts",
            &kinds(&mount),
            &kinds(&local),
        );
        // (Before the contents are read, what the walk's lookups broke.)
        let op = std::mem::take(&mut self.op);
        self.check_open_sizes();
        self.op = op;
        self.same(
            "which names share a file",
            &shared_names(&mount),
            &shared_names(&local),
        );
        for (name, (kind, _)) in &local {
            if let Kind::File { .. } = kind {
                let (mount_path, local_path) = self.both(name);
                let mount = outcome(fs::read(mount_path));
                let local = outcome(fs::read(local_path));
                self.same_bytes(&format!("the contents of {name}"), &mount, &local);
            }
        }
    }
}

/// The names in a directory, sorted.
fn list(path: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(path)? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Every entry under `root` (relative path: kind and inode number);
/// `patch` sees each directory's listing first.
fn snapshot(root: &Path) -> Result<BTreeMap<String, (Kind, u64)>, String> {
    let mut tree = BTreeMap::new();
    let mut pending = vec![String::new()];
    while let Some(directory) = pending.pop() {
        let names = list(&root.join(&directory)).map_err(|e| format!("list /{directory}: {e}"))?;
        for name in names {
            let relative = if directory.is_empty() {
                name
            } else {
                format!("{directory}/{name}")
            };
            let metadata = fs::symlink_metadata(root.join(&relative))
                .map_err(|e| format!("stat {relative}: {e}"))?;
            if metadata.is_dir() {
                pending.push(relative.clone());
            }
            tree.insert(relative, (kind_of(&metadata), metadata.ino()));
        }
    }
    Ok(tree)
}

/// The files' names grouped by the file they name (by inode number).
fn shared_names(tree: &BTreeMap<String, (Kind, u64)>) -> BTreeSet<Vec<String>> {
    let mut groups: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (name, (kind, inode)) in tree {
        if let Kind::File { .. } = kind {
            groups.entry(*inode).or_default().push(name.clone());
        }
    }
    groups.into_values().collect()
}

#[test]
fn random_operations_on_the_mount_match_a_local_directory() {
    let seed = env_number("DFS_MODEL_SEED", DEFAULT_SEED);
    let steps = env_number("DFS_MODEL_STEPS", DEFAULT_STEPS);
    let flag = |name: &str| std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0");
    let trace = flag("DFS_MODEL_TRACE");
    eprintln!("model test: seed {seed}, {steps} steps (DFS_MODEL_SEED, DFS_MODEL_STEPS)");
    let mut cluster = Cluster::start(ClusterOptions {
        minions: 2,
        replication: Some(2),
        block_size: Some("1M"),
        ..ClusterOptions::default()
    });
    if flag("DFS_MODEL_KEEP") {
        // The logs (mount.log among them) and both trees, for a failure.
        cluster.keep_dir();
        eprintln!("model test: keeping {}", cluster.dir().display());
    }
    let mounted = Mounted::start(&cluster, &cluster.dir().join("mnt"));
    let local_root = cluster.dir().join("model");
    fs::create_dir(&local_root).expect("create the model directory");
    for directory in &DIRECTORIES[..2] {
        fs::create_dir(mounted.mountpoint.join(directory)).expect("mkdir in the mount");
        fs::create_dir(local_root.join(directory)).expect("mkdir in the model");
    }
    let mut model = Model {
        seed,
        steps,
        step: 0,
        op: String::new(),
        result: String::new(),
        history: Vec::new(),
        rng: Rng(SplitMix64(seed)),
        mount_root: mounted.mountpoint.clone(),
        local_root,
        open: Vec::new(),
        next_serial: 0,
        trace,
        counts: BTreeMap::new(),
    };
    let started = Instant::now();
    for step in 0..steps {
        model.step = step;
        model.step_once();
        model.record();
        model.check_open_sizes();
        if (step + 1) % TREE_EVERY_STEPS == 0 {
            model.compare_trees("every few steps");
        }
    }
    model.step = steps;
    model.compare_trees("with descriptors open, at the end");
    while !model.open.is_empty() {
        model.do_close(model.open.len() - 1);
        model.record();
    }
    model.compare_trees("all closed, at the end");
    eprintln!(
        "model test: seed {seed}, {steps} steps in {:.1?}; operations: {:?}",
        started.elapsed(),
        model.counts
    );
    drop(mounted);
    cluster.assert_clean_logs();
}
