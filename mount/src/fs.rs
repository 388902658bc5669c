//! The FUSE file system: kernel requests answered with the client library.
//! Names and attributes come from the master (cached by the kernel for
//! `ENTRY_TTL`); reads go to the minions through a `FileReader` per open
//! file; a file opened for writing is written through a local copy
//! (`cache`; a large one as a stream) and appears, whole, when its last
//! descriptor is closed or it is fsynced (close-to-open, as NFS: another
//! workstation sees it once it is closed here).
//!
//! Requests are served one at a time (one session thread), under one lock
//! of the mount's state.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use dfs_client::client::AttributeChange;
use dfs_client::{Client, FileReader};
use dfs_engine::limits::{MOUNT_OPEN_WRITES_MAX, PATH_BYTES_MAX};
use dfs_engine::msg::{Credentials, EntryKind, EntryStatus, ErrorKind};
use dfs_engine::path::DfsPath;
use dfs_engine::Error;
use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyLock, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::attr::{self, Ids};
use crate::cache::CachedFile;
use crate::compactor::Compactor;
use crate::dirs::{DirEntry, Listing, PageSource};
use crate::inodes::{Inodes, PENDING_INODE_BASE};
use crate::locks::{self, LockSession};
use crate::pages::{Contents, Pages};
use crate::parents::{Parent, Parents};
use crate::unsynced::Unsynced;
use crate::xattrs;

/// How long the kernel may keep a name or an attribute without asking
/// again: what another workstation's change may take to show here.
const ENTRY_TTL: Duration = Duration::from_secs(1);
/// Longest name in a directory (the master's limit).
const NAME_BYTES_MAX: u32 = dfs_engine::limits::NAME_BYTES_MAX as u32;
/// The statfs block size.
const STATFS_BLOCK_BYTES: u32 = 4096;

enum Handle {
    Read(Box<FileReader>),
    /// A file being written (new, truncated, or an existing one), through
    /// a local overlay of its changes (`cache`): the kernel's number of the
    /// file, which every descriptor of it here shares (`State::files`).
    Cached(u64),
}

/// A file open for writing and its descriptors here.
struct SharedFile {
    file: CachedFile,
    handles: usize,
    /// The inode held open in the master for it (`LockSession::hold`).
    held: Option<u64>,
    /// A new file created here that was given another name here: its
    /// link count is the master's, not what its own name says.
    linked: bool,
    /// Its descriptors bypass the kernel's page cache (`FOPEN_DIRECT_IO`),
    /// all of them, so no cached page can go stale under a write of
    /// another (`opening`).
    direct: bool,
}

/// How the kernel is told to open a descriptor of a shared file that is
/// written around the page cache (`direct`) or through it.
fn opening(direct: bool) -> FopenFlags {
    if direct {
        FopenFlags::FOPEN_DIRECT_IO
    } else {
        FopenFlags::empty()
    }
}

struct State {
    client: Client,
    inodes: Inodes,
    ids: Ids,
    handles: HashMap<u64, Handle>,
    /// Open directories: their paths and the page of entries held.
    directories: HashMap<u64, (DfsPath, Listing)>,
    next_handle: u64,
    /// Files open for writing here, by the kernel's number: one copy each,
    /// shared by all their descriptors (as one inode is), with how many
    /// descriptors hold it; committed at each close after changes, and
    /// dropped at the last.
    files: HashMap<u64, SharedFile>,
    /// Lock keys (`locks::key`) of the files this mount ever locked: a
    /// close of one drops its owner's locks (POSIX), a close of another
    /// costs no master call.
    locked: HashSet<u64>,
    /// Compacts files commits left fragmented, in the background.
    compactor: Compactor,
    /// Blocks committed without `sync`, which the files' `fsync` makes
    /// durable.
    unsynced: Unsynced,
    /// What each locked file was (version, size, modification time) when
    /// this mount last locked it, by the kernel's number.
    locked_seen: HashMap<u64, (u64, u64, u64)>,
    /// The directories entries were made in lately (`new_entry_owner`).
    parents: Parents,
    /// The bytes of the read being answered, kept for the next one: a
    /// read is at most `max_read` (1 MiB), and zeroing a new buffer for
    /// each cost as much as copying the data into it.
    read_buffer: Vec<u8>,
    /// Which contents the kernel's page cache holds for each file.
    pages: Pages,
}

/// The mounted cluster.
pub struct DfsFs {
    master: String,
    credentials: Credentials,
    /// A file opened for reading has its access time moved (`relatime`).
    access_times: bool,
    state: Mutex<State>,
    locks: LockSession,
    /// Files whose cached attributes and data the kernel must drop (a
    /// commit changed them): sent by a thread of their own (`lib::spawn`).
    stale: std::sync::mpsc::SyncSender<Stale>,
    /// The kernel maps files opened with `FOPEN_DIRECT_IO` shared (it
    /// granted `FUSE_DIRECT_IO_ALLOW_MMAP`, Linux 6.6 and later): only
    /// then are files written around the page cache (`writes_direct`).
    direct_writes: bool,
    /// Notifications to the kernel sent from a request being answered
    /// (`invalidate_attributes`); set once the session is up (`lib::spawn`).
    notifier: Arc<OnceLock<fuser::Notifier>>,
}

/// A file whose cached attributes and pages the kernel must drop, and who
/// waits until it did.
pub struct Stale {
    pub inode: u64,
    pub done: Option<std::sync::mpsc::SyncSender<()>>,
}

/// How long a lock waits for the kernel to drop a file's cached pages.
const INVALIDATE_WAIT: Duration = Duration::from_secs(2);

/// Has the kernel drop what it caches of `inode` and waits until it did
/// (at most `INVALIDATE_WAIT`: a read of the file in flight may hold the
/// kernel up until this session answers it).
fn invalidate_and_wait(stale: &std::sync::mpsc::SyncSender<Stale>, inode: u64) {
    let (done, dropped) = std::sync::mpsc::sync_channel(1);
    let sent = stale.try_send(Stale {
        inode,
        done: Some(done),
    });
    if sent.is_ok() {
        let _ = dropped.recv_timeout(INVALIDATE_WAIT);
    }
}

/// Most files whose state at their last lock a mount remembers.
const LOCKED_SEEN_MAX: usize = 4096;

/// The errno the kernel gets for `error`.
pub fn errno(error: &Error) -> Errno {
    match error {
        Error::Remote(remote) => match remote.kind {
            ErrorKind::NotFound => Errno::ENOENT,
            ErrorKind::AlreadyExists => Errno::EEXIST,
            ErrorKind::NotADirectory => Errno::ENOTDIR,
            ErrorKind::IsADirectory => Errno::EISDIR,
            ErrorKind::DirectoryNotEmpty => Errno::ENOTEMPTY,
            ErrorKind::InvalidArgument => Errno::EINVAL,
            ErrorKind::NoSpace => Errno::ENOSPC,
            ErrorKind::PermissionDenied => Errno::EACCES,
            ErrorKind::Busy | ErrorKind::Starting => Errno::EAGAIN,
            ErrorKind::NoAttribute => Errno::ENODATA,
            // The master restarted and the mount opens a new session: try again.
            ErrorKind::NoSession => Errno::EAGAIN,
            _ => Errno::EIO,
        },
        // The system's own number when there is one (ENOSPC of a spool on a
        // full disk, say), else EIO.
        Error::Io { cause, .. } => cause
            .raw_os_error()
            .filter(|&number| number > 0)
            .map_or(Errno::EIO, Errno::from_i32),
        _ => Errno::EIO,
    }
}

fn is_no_session<T>(answer: &dfs_engine::Result<T>) -> bool {
    matches!(answer, Err(Error::Remote(remote)) if remote.kind == ErrorKind::NoSession)
}

fn is_not_found(error: &Error) -> bool {
    matches!(error, Error::Remote(remote) if remote.kind == ErrorKind::NotFound)
}

impl DfsFs {
    pub fn new(
        master: &str,
        credentials: Credentials,
        stale: std::sync::mpsc::SyncSender<Stale>,
    ) -> dfs_engine::Result<DfsFs> {
        let client = Client::connect_as(master, credentials.clone())?;
        let locks = LockSession::open(master, credentials.clone())?;
        let compactor = Compactor::start(master, credentials.clone())?;
        Ok(DfsFs {
            master: master.to_string(),
            access_times: false,
            direct_writes: false,
            notifier: Arc::new(OnceLock::new()),
            locks,
            stale,
            credentials,
            state: Mutex::new(State {
                client,
                inodes: Inodes::new(),
                ids: Ids::default(),
                handles: HashMap::new(),
                directories: HashMap::new(),
                next_handle: 1,
                files: HashMap::new(),
                locked: HashSet::new(),
                compactor,
                unsynced: Unsynced::default(),
                locked_seen: HashMap::new(),
                parents: Parents::new(ENTRY_TTL),
                read_buffer: Vec::new(),
                pages: Pages::new(),
            }),
        })
    }

    /// `self`, moving access times when a file is opened for reading
    /// (`relatime`: when the access time is not after the modification and
    /// change times, or is a day old), or not.
    pub fn marking_access_times(mut self, on: bool) -> DfsFs {
        self.access_times = on;
        self
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while the lock was held aborts the process (panic =
        // "abort"), so a poisoned lock is never seen; take it either way.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl State {
    fn path(&self, inode: INodeNo) -> Result<DfsPath, Errno> {
        self.inodes.path(inode.0).cloned().ok_or(Errno::ESTALE)
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<DfsPath, Errno> {
        let name = name.to_str().ok_or(Errno::EINVAL)?;
        if name.len() > NAME_BYTES_MAX as usize {
            return Err(Errno::ENAMETOOLONG);
        }
        let parent = self.path(parent)?;
        // The cluster's paths are bounded as a system call's are.
        if parent.as_str().len() + 1 + name.len() > PATH_BYTES_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        parent.join(name).map_err(|_| Errno::EINVAL)
    }

    fn handle_id(&mut self) -> u64 {
        let id = self.next_handle;
        self.next_handle += 1;
        id
    }

    /// Gives `path` the owner and group of `change`, if it names any.
    fn set_owner(&mut self, path: &DfsPath, change: AttributeChange) -> Result<(), Errno> {
        if change == AttributeChange::default() {
            return Ok(());
        }
        self.client
            .set_attributes(path, change)
            .map_err(|e| errno(&e))
    }

    /// The name `path` is being removed: files open here at it keep their
    /// contents for their descriptors. Returns the kernel's numbers of
    /// those files (for `relink_open` if the removal fails).
    /// A file with other names left lives on in the namespace: its
    /// descriptors here go on changing it (commits go by inode).
    fn unlink_open(&mut self, path: &DfsPath) -> Result<Vec<u64>, Errno> {
        let mut marked = Vec::new();
        let linked_elsewhere = self
            .client
            .stat(path)
            .ok()
            .filter(|status| status.links > 1)
            .map(|status| status.inode);
        let mut failed = None;
        for (&nodeid, shared) in self.files.iter_mut() {
            let file = &mut shared.file;
            if file.named() != Some(path) {
                continue;
            }
            if linked_elsewhere.is_some() && file.inode() == linked_elsewhere {
                file.lose_path();
            } else if shared.held.is_some() && file.inode() == shared.held {
                // Kept by the master while held open here: it goes on
                // by inode, nameless.
                file.set_nameless();
            } else if let Err(error) = file.unlink(&mut self.client) {
                eprintln!("dfs-mount: {error}");
                failed = Some(Errno::EBUSY);
                break;
            }
            marked.push(nodeid);
        }
        if let Some(error) = failed {
            self.relink_open(&marked);
            return Err(error);
        }
        Ok(marked)
    }

    /// The shared file behind the descriptor `fh`, if it is one, with the
    /// client to use beside it.
    fn cached(&mut self, fh: FileHandle) -> Option<(&mut CachedFile, &mut Client)> {
        let nodeid = self.shared_nodeid(fh)?;
        let shared = self.files.get_mut(&nodeid)?;
        Some((&mut shared.file, &mut self.client))
    }

    /// The kernel's number of the shared file behind the descriptor `fh`,
    /// if it is one.
    fn shared_nodeid(&self, fh: FileHandle) -> Option<u64> {
        match self.handles.get(&fh.0) {
            Some(Handle::Cached(nodeid)) => Some(*nodeid),
            _ => None,
        }
    }

    /// `file`, open here as the kernel's `nodeid`, shared by its first
    /// descriptor.
    fn share(&mut self, nodeid: u64, mut file: CachedFile, direct: bool) -> Handle {
        // Written here from now on, through the page cache or around it.
        self.pages.forget(nodeid);
        file.set_nodeid(nodeid);
        file.set_compactor(self.compactor.clone());
        file.set_unsynced(self.unsynced.clone());
        self.files.insert(
            nodeid,
            SharedFile {
                file,
                handles: 1,
                held: None,
                linked: false,
                direct,
            },
        );
        Handle::Cached(nodeid)
    }

    /// A read through `fh` failed with `error`: the file may have changed
    /// under its reader (another workstation's commit, a compaction freed
    /// the blocks it read), so it is opened again as it is now and read
    /// once more, if the path still names the same file (as a new open
    /// would see it, close-to-open).
    fn reread(
        &mut self,
        fh: FileHandle,
        ino: INodeNo,
        inode: u64,
        error: dfs_engine::Error,
        at: u64,
        buffer: &mut [u8],
    ) -> Result<usize, Errno> {
        let fresh = self
            .path(ino)
            .ok()
            .and_then(|path| self.client.open(&path).ok())
            .filter(|fresh| fresh.status().inode == inode);
        let (Some(fresh), Some(Handle::Read(reader))) = (fresh, self.handles.get_mut(&fh.0)) else {
            return Err(errno(&error));
        };
        **reader = fresh;
        // Its pages so far were of the contents it read before.
        self.pages.forget(ino.0);
        reader.read_at(at, buffer).map_err(|e| errno(&e))
    }

    /// True when the file at `path` (the kernel's `nodeid`) changed since
    /// this mount last locked it, or was never locked here (or cannot be
    /// looked at: then it may have).
    fn changed_since_locked(&mut self, nodeid: u64, path: &DfsPath) -> bool {
        let Ok(status) = self.client.stat(path) else {
            return true;
        };
        let now = (status.version, status.size_bytes, status.modified_ns);
        if self.locked_seen.len() >= LOCKED_SEEN_MAX {
            self.locked_seen.clear();
        }
        self.locked_seen.insert(nodeid, now) != Some(now)
    }

    /// The attributes of the file `inode` from what is open here, with no
    /// links: for one removed while open (the master keeps it).
    fn open_here_attr(&mut self, inode: u64) -> Option<FileAttr> {
        if self.files.contains_key(&inode) {
            let mut attr = self.pending_attr(inode)?;
            attr.nlink = 0;
            return Some(attr);
        }
        let status = self.handles.values().find_map(|handle| match handle {
            Handle::Read(reader) if reader.status().inode == inode => Some(reader.status().clone()),
            _ => None,
        })?;
        let mut attr = self.ids.attr(&status);
        attr.nlink = 0;
        Some(attr)
    }

    /// The file `inode` changed through its path: the descriptors that
    /// read it here read it as it is now (as on a local disk), not as it
    /// was when they opened it. One that cannot be reopened goes on as it
    /// was (its reads fail if the old pieces are gone).
    fn reopen_readers(&mut self, path: &DfsPath, inode: u64) {
        self.pages.forget(inode);
        for handle in self.handles.values_mut() {
            if let Handle::Read(reader) = handle {
                if reader.status().inode == inode {
                    if let Ok(fresh) = self.client.open_inode(path, inode) {
                        **reader = fresh;
                    }
                }
            }
        }
    }

    /// True when a descriptor here has the file `inode` open.
    fn is_open_here(&self, inode: u64) -> bool {
        self.files.contains_key(&inode)
            || self.handles.values().any(
                |handle| matches!(handle, Handle::Read(reader) if reader.status().inode == inode),
            )
    }

    /// Refuses one more file being written past the mount's bound.
    fn check_write_room(&self) -> Result<(), Errno> {
        if self.files.len() >= MOUNT_OPEN_WRITES_MAX {
            eprintln!("dfs-mount: {MOUNT_OPEN_WRITES_MAX} files are being written at once already");
            return Err(Errno::EMFILE);
        }
        Ok(())
    }

    /// The number of a new file open here at `path` (one not in the
    /// namespace when it was made): looked for among the files open here,
    /// not the whole inode table, as every lookup asks.
    fn new_file_at(&self, path: &DfsPath) -> Option<u64> {
        self.files
            .iter()
            .find(|(&nodeid, shared)| {
                nodeid >= PENDING_INODE_BASE && shared.file.named() == Some(path)
            })
            .map(|(&nodeid, _)| nodeid)
    }

    /// The attributes of the new file `nodeid` created here: as written,
    /// with the link count the master has once a hard link to it was made
    /// here (none once it is gone there). Only then does a stat of it ask
    /// the master.
    fn new_file_attr(&mut self, nodeid: u64) -> Option<FileAttr> {
        let mut attr = self.pending_attr(nodeid)?;
        let shared = self.files.get(&nodeid)?;
        if let (true, Some(inode)) = (shared.linked, shared.file.inode()) {
            let path = shared.file.path().clone();
            attr.nlink = self
                .client
                .stat_inode(&path, inode)
                .map_or(0, |status| status.links);
        }
        Some(attr)
    }

    /// The new files being written here in the directory open as `fh`:
    /// number, name and attributes.
    fn new_files_listed(&mut self, fh: FileHandle) -> Vec<(u64, String, FileAttr)> {
        let Some((directory, _)) = self.directories.get(&fh.0) else {
            return Vec::new();
        };
        let directory = directory.clone();
        let found: Vec<(u64, String)> = self
            .files
            .iter()
            .filter(|(&nodeid, _)| nodeid >= PENDING_INODE_BASE)
            .filter_map(|(&nodeid, shared)| {
                let path = shared.file.named()?;
                (path.parent().as_ref() == Some(&directory))
                    .then(|| Some((nodeid, path.name()?.to_string())))?
            })
            .collect();
        found
            .into_iter()
            .filter_map(|(nodeid, name)| Some((nodeid, name, self.pending_attr(nodeid)?)))
            .collect()
    }

    /// True when a file at or under `path` is being written here.
    fn writes_under(&self, path: &DfsPath) -> bool {
        self.files
            .values()
            .any(|shared| shared.file.named().is_some_and(|at| at.is_within(path)))
    }

    /// Commits the files open for writing at or under `path` that have
    /// changes (a new file appears in the namespace).
    fn commit_under(&mut self, path: &DfsPath) -> Result<(), Errno> {
        for shared in self.files.values_mut() {
            let file = &mut shared.file;
            if file.is_dirty() && file.named().is_some_and(|at| at.is_within(path)) {
                file.commit(&mut self.client).map_err(|e| {
                    eprintln!("dfs-mount: {e}");
                    errno(&e)
                })?;
            }
        }
        Ok(())
    }

    /// `from` was renamed to `to`: files open for writing under it commit
    /// to their new paths.
    fn moved_open_files(&mut self, from: &DfsPath, to: &DfsPath) {
        for shared in self.files.values_mut() {
            let Some(at) = shared.file.named() else {
                continue;
            };
            if let Some(path) = crate::inodes::moved(at, from, to) {
                shared.file.set_path(path);
            }
        }
    }

    /// A removal failed after `unlink_open` made the files open at the
    /// name ready for it (`marked`): they are at their path again. Files
    /// that lost that name earlier stay as they are.
    fn relink_open(&mut self, marked: &[u64]) {
        for nodeid in marked {
            if let Some(shared) = self.files.get_mut(nodeid) {
                shared.file.relink();
            }
        }
    }

    /// The attributes of the file open here as the kernel's `inode`, from
    /// its handle (a new file, or one removed while open).
    fn pending_attr(&mut self, inode: u64) -> Option<FileAttr> {
        let handle = &self.files.get(&inode)?.file;
        let owner = handle
            .owner()
            .map(str::to_string)
            .unwrap_or_else(|| handle_owner(&self.client));
        let group = handle
            .group()
            .map(str::to_string)
            .unwrap_or_else(|| handle_group(&self.client));
        let (uid, gid) = (self.ids.uid(&owner), self.ids.gid(&group));
        Some(handle.attr(uid, gid))
    }

    /// Looks `path` up, remembers its inode, and answers its attributes.
    fn entry(&mut self, path: DfsPath) -> Result<FileAttr, Errno> {
        let status = self.client.stat(&path).map_err(|e| errno(&e))?;
        let mut attr = self.ids.attr(&status);
        attr.ino = INodeNo(kernel_number(&self.files, status.inode));
        self.inodes.remember(attr.ino.0, path);
        Ok(attr)
    }

    fn stat(&mut self, path: &DfsPath) -> Result<EntryStatus, Errno> {
        self.client.stat(path).map_err(|e| errno(&e))
    }

    /// Drops `owner`'s locks on the file `inode`, if this mount ever
    /// locked it.
    fn release_locks(&mut self, session: &LockSession, inode: INodeNo, owner: u64) {
        let Some(path) = self.inodes.path(inode.0) else {
            return;
        };
        let key = locks::key(path);
        if !self.locked.contains(&key) {
            return;
        }
        dfs_engine::sync::lock(&session.held_locks()).forget(key, owner);
        if let Err(error) = self.client.release_locks(session.id(), key, owner) {
            eprintln!("dfs-mount: release the locks on {path}: {error}");
        }
    }
}

/// The number the kernel is given for the master's inode `inode`: a new
/// file created here has a number of the mount's own (`pending`), and once
/// committed the master's number of it is the same file, so every name of
/// it (a hard link made since) answers the mount's number while it is open
/// here: all its names are one inode to the kernel, sharing one copy.
fn kernel_number(files: &HashMap<u64, SharedFile>, inode: u64) -> u64 {
    files
        .iter()
        .find(|(&nodeid, shared)| {
            nodeid >= PENDING_INODE_BASE && shared.file.inode() == Some(inode)
        })
        .map_or(inode, |(&nodeid, _)| nodeid)
}

/// A file open for writing here (in `files`) has the size it has as
/// written, not the master's (the last commit's), and is not cached:
/// answers how long the kernel may keep `attr`.
fn as_written(files: &HashMap<u64, SharedFile>, attr: &mut FileAttr) -> Duration {
    match files.get(&attr.ino.0) {
        Some(shared) => {
            attr.size = shared.file.size();
            attr.blocks = attr.size.div_ceil(512);
            Duration::ZERO
        }
        None => ENTRY_TTL,
    }
}

fn handle_owner(client: &Client) -> String {
    client.credentials().user.clone()
}

fn handle_group(client: &Client) -> String {
    client
        .credentials()
        .groups
        .first()
        .cloned()
        .unwrap_or_else(|| client.credentials().user.clone())
}

fn time_ns(time: TimeOrNow) -> u64 {
    match time {
        TimeOrNow::SpecificTime(time) => attr::nanos(time),
        TimeOrNow::Now => attr::nanos(SystemTime::now()),
    }
}

/// Whether opening the file of `status` to read moves its access time
/// (`relatime_due`; the master decides again on its own copy).
fn access_due(status: &EntryStatus) -> bool {
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64);
    dfs_engine::msg::relatime_due(
        status.accessed_ns,
        status.modified_ns,
        status.changed_ns,
        now_ns,
    )
}

fn is_write(flags: OpenFlags) -> bool {
    (flags.0 & libc::O_ACCMODE) != libc::O_RDONLY
}

impl Filesystem for DfsFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // `open(O_TRUNC)` arrives as one open with the flag, not as an open
        // and a truncation: a file is written anew, not cut to nothing.
        if config
            .add_capabilities(InitFlags::FUSE_ATOMIC_O_TRUNC)
            .is_err()
        {
            eprintln!("dfs-mount: the kernel has no atomic O_TRUNC; rewriting a file needs it");
        }
        // Locks go to the master, so they hold across workstations.
        if config
            .add_capabilities(InitFlags::FUSE_POSIX_LOCKS | InitFlags::FUSE_FLOCK_LOCKS)
            .is_err()
        {
            eprintln!("dfs-mount: the kernel keeps locks local: they hold on this machine only");
        }
        // Listings carry attributes: `ls -l` needs no lookup per entry.
        let _ = config
            .add_capabilities(InitFlags::FUSE_DO_READDIRPLUS | InitFlags::FUSE_READDIRPLUS_AUTO);
        // The kernel's largest writes: fewer, larger pieces for the writer.
        let _ = config.set_max_write(1 << 20);
        // A file that another descriptor writes around the page cache
        // (`writes_direct`) can still be mapped shared through this one;
        // the kernel drops the mapped pages a direct write covers. Without
        // it, such a mapping would fail: files go through the page cache.
        self.direct_writes = config
            .add_capabilities(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP)
            .is_ok();
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut state = self.state();
        let path = match state.child(parent, name) {
            Ok(path) => path,
            Err(error) => return reply.error(error),
        };
        // A new file this mount is writing is there for its users under
        // the number it was created with, also once an fsync committed it
        // (programs such as SQLite take a changed number for a moved file).
        let pending = state.new_file_at(&path);
        if let Some(attr) = pending.and_then(|inode| state.new_file_attr(inode)) {
            state.inodes.remember(attr.ino.0, path);
            return reply.entry(&Duration::ZERO, &attr, Generation(0));
        }
        match state.entry(path) {
            Ok(mut attr) => {
                let ttl = as_written(&state.files, &mut attr);
                reply.entry(&ttl, &attr, Generation(0))
            }
            Err(error) => reply.error(error),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.state().inodes.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let mut state = self.state();
        if ino.0 >= PENDING_INODE_BASE {
            if let Some(attr) = state.new_file_attr(ino.0) {
                return reply.attr(&Duration::ZERO, &attr);
            }
            // Committed since: the file under the number the kernel holds.
            let committed = state.path(ino).and_then(|path| state.stat(&path));
            return match committed {
                Ok(status) => {
                    // The master's number, as a lookup of the path gives.
                    let attr = state.ids.attr(&status);
                    reply.attr(&Duration::ZERO, &attr)
                }
                Err(error) => reply.error(error),
            };
        }
        // Removed while open here: what the handle holds.
        if let Some(attr) = state.pending_attr(ino.0).filter(|attr| attr.nlink == 0) {
            return reply.attr(&Duration::ZERO, &attr);
        }
        // The file the number names, if its path still names it.
        let result = state
            .path(ino)
            .and_then(|path| state.stat(&path))
            .and_then(|status| {
                if status.inode == ino.0 {
                    Ok(status)
                } else {
                    Err(Errno::ENOENT)
                }
            })
            .or_else(|error| {
                // Open here by a name removed since: the file by its
                // number, with the names it has left.
                if !state.is_open_here(ino.0) {
                    return Err(error);
                }
                let path = state.path(ino).unwrap_or_else(|_| DfsPath::root());
                state
                    .client
                    .stat_inode(&path, ino.0)
                    .map_err(|e| errno(&e))
                    .and_then(|status| {
                        if status.links > 0 {
                            Ok(status)
                        } else {
                            Err(error)
                        }
                    })
            });
        match result {
            Ok(status) => {
                let mut attr = state.ids.attr(&status);
                let ttl = as_written(&state.files, &mut attr);
                reply.attr(&ttl, &attr)
            }
            // Removed (here or elsewhere) while open here: as the handle
            // has it, without names.
            Err(error) => match state.open_here_attr(ino.0) {
                Some(attr) => reply.attr(&Duration::ZERO, &attr),
                None => reply.error(error),
            },
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut guard = self.state();
        let state = &mut *guard;
        // It may be a directory whose mode or group new entries take (a
        // file's change touches no directory).
        if let Some(path) = state.inodes.path(ino.0) {
            state.parents.forget(path);
        }
        let mut change = AttributeChange {
            mode: mode.map(|mode| mode & 0o7777),
            modified_ns: mtime.map(time_ns),
            accessed_ns: atime.map(time_ns),
            ..AttributeChange::default()
        };
        if let Some(uid) = uid {
            change.owner = Some(state.ids.user_name(uid));
        }
        if let Some(gid) = gid {
            change.group = Some(state.ids.group_name(gid));
        }
        // A file not in the namespace yet (made here, not committed) has
        // only what its open file here holds.
        let pending = ino.0 >= PENDING_INODE_BASE;
        if pending && !state.files.contains_key(&ino.0) {
            return reply.error(Errno::ESTALE);
        }
        let mut written_size = None;
        if let Some(size) = size {
            let truncated = if let Some(shared) = state.files.get_mut(&ino.0) {
                // Open for writing here (through any descriptor).
                shared
                    .file
                    .truncate(size)
                    .map(|()| written_size = Some(shared.file.size()))
            } else {
                state.path(ino).and_then(|path| {
                    self.truncate_path(state, &path, size)?;
                    state.reopen_readers(&path, ino.0);
                    Ok(())
                })
            };
            if let Err(error) = truncated {
                return reply.error(error);
            }
        }
        if change != AttributeChange::default() {
            if let Some(shared) = state.files.get_mut(&ino.0) {
                // Kept for the commit, which replaces the file (`cp -p` and
                // `tar` set them before they close).
                shared.file.change_after_commit(change.clone());
            }
            if !pending {
                let set = state.path(ino).and_then(|path| {
                    state
                        .client
                        .set_attributes(&path, change)
                        .map_err(|e| errno(&e))
                });
                if let Err(error) = set {
                    return reply.error(error);
                }
            }
        }
        if pending {
            return match state.pending_attr(ino.0) {
                Some(attr) => reply.attr(&Duration::ZERO, &attr),
                None => reply.error(Errno::ESTALE),
            };
        }
        // No lookup comes with this answer: nothing to remember.
        let found = state
            .path(ino)
            .and_then(|path| state.stat(&path))
            .and_then(|status| {
                if status.inode == ino.0 {
                    Ok(status)
                } else {
                    Err(Errno::ENOENT)
                }
            });
        let mut attr = match found {
            Ok(status) => state.ids.attr(&status),
            // Removed while open here: as the handle has it.
            Err(error) => match state.open_here_attr(ino.0) {
                Some(attr) => return reply.attr(&Duration::ZERO, &attr),
                None => return reply.error(error),
            },
        };
        // A file being written here has the size it will have.
        if let Some(size) = written_size {
            attr.size = size;
            attr.blocks = size.div_ceil(512);
            return reply.attr(&Duration::ZERO, &attr);
        }
        reply.attr(&ENTRY_TTL, &attr)
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mut state = self.state();
        let path = match state.child(parent, name) {
            Ok(path) => path,
            Err(error) => return reply.error(error),
        };
        let (owner, inherited) = match self.new_entry_owner(&mut state, req, &path) {
            Ok(found) => found,
            Err(error) => return reply.error(error),
        };
        // A directory in a setgid directory is setgid too.
        let mode = (mode & !umask & 0o7777) | if inherited { libc::S_ISGID } else { 0 };
        state.parents.forget(&path);
        if let Err(error) = state.client.mkdir(&path, false, mode) {
            return reply.error(errno(&error));
        }
        if let Err(error) = state.set_owner(&path, owner) {
            return reply.error(error);
        }
        match state.entry(path) {
            Ok(attr) => reply.entry(&ENTRY_TTL, &attr, Generation(0)),
            Err(error) => reply.error(error),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut state = self.state();
        let result = state.child(parent, name).and_then(|path| {
            // Files open here live on in their handles until closed.
            let marked = state.unlink_open(&path)?;
            let removed = match state.stat(&path) {
                Err(Errno::ENOENT) if !marked.is_empty() => Ok(()),
                Err(error) => Err(error),
                Ok(status) if status.kind == EntryKind::Directory => Err(Errno::EISDIR),
                Ok(_) => state.client.delete(&path, false).map_err(|e| errno(&e)),
            };
            if let Err(error) = removed {
                // Not removed: the files open at it keep their name.
                state.relink_open(&marked);
                return Err(error);
            }
            state.inodes.removed(&path);
            Ok(())
        });
        match result {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(error),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut state = self.state();
        state.parents.forget_all();
        let result = state
            .child(parent, name)
            .and_then(|path| match state.stat(&path)?.kind {
                // New files being written here are in it, though the
                // master does not know them yet.
                EntryKind::Directory if state.writes_under(&path) => Err(Errno::ENOTEMPTY),
                EntryKind::Directory => state.client.delete(&path, false).map_err(|e| errno(&e)),
                _ => Err(Errno::ENOTDIR),
            });
        match result {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(error),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let kind = match mode & libc::S_IFMT {
            libc::S_IFIFO => EntryKind::Fifo,
            libc::S_IFSOCK => EntryKind::Socket,
            libc::S_IFCHR => EntryKind::CharDevice,
            libc::S_IFBLK => EntryKind::BlockDevice,
            libc::S_IFREG | 0 => EntryKind::File,
            _ => return reply.error(Errno::EINVAL),
        };
        let mut state = self.state();
        let path = match state.child(parent, name) {
            Ok(path) => path,
            Err(error) => return reply.error(error),
        };
        let owner = match self.new_entry_owner(&mut state, req, &path) {
            Ok((owner, _)) => owner,
            Err(error) => return reply.error(error),
        };
        let bits = mode & !umask & 0o7777;
        let made = if kind == EntryKind::File {
            // mknod of a regular file: an empty one, there at once.
            CachedFile::new_file(path.clone(), bits, false, owner)
                .and_then(|mut file| file.commit(&mut state.client))
                .map_err(|e| errno(&e))
        } else {
            state
                .client
                .mknod(&path, kind, bits, rdev)
                .map_err(|e| errno(&e))
                .and_then(|()| state.set_owner(&path, owner))
        };
        if let Err(error) = made {
            return reply.error(error);
        }
        match state.entry(path) {
            Ok(attr) => reply.entry(&ENTRY_TTL, &attr, Generation(0)),
            Err(error) => reply.error(error),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        let mut state = self.state();
        let path = match state.child(parent, link_name) {
            Ok(path) => path,
            Err(error) => return reply.error(error),
        };
        let Some(target) = target.to_str() else {
            return reply.error(Errno::EINVAL);
        };
        let owner = match self.new_entry_owner(&mut state, req, &path) {
            Ok((owner, _)) => owner,
            Err(error) => return reply.error(error),
        };
        if let Err(error) = state.client.symlink(&path, target) {
            return reply.error(errno(&error));
        }
        if let Err(error) = state.set_owner(&path, owner) {
            return reply.error(error);
        }
        match state.entry(path) {
            Ok(attr) => reply.entry(&ENTRY_TTL, &attr, Generation(0)),
            Err(error) => reply.error(error),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let mut state = self.state();
        let result = state
            .path(ino)
            .and_then(|path| state.client.read_link(&path).map_err(|e| errno(&e)));
        match result {
            Ok(target) => reply.data(target.as_bytes()),
            Err(error) => reply.error(error),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let mut guard = self.state();
        let state = &mut *guard;
        let result = state
            .path(ino)
            .and_then(|path| xattrs::set(&mut state.client, &path, name, value, flags));
        match result {
            Ok(()) => {
                drop(guard);
                // The change time moved.
                self.invalidate(ino.0);
                reply.ok()
            }
            Err(error) => reply.error(error),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let mut guard = self.state();
        let state = &mut *guard;
        let result = state
            .path(ino)
            .and_then(|path| xattrs::get(&mut state.client, &path, name, size));
        match result {
            Ok(xattrs::Sized::Size(size)) => reply.size(size),
            Ok(xattrs::Sized::Data(bytes)) => reply.data(&bytes),
            Err(error) => reply.error(error),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let mut guard = self.state();
        let state = &mut *guard;
        let result = state
            .path(ino)
            .and_then(|path| xattrs::list(&mut state.client, &path, size));
        match result {
            Ok(xattrs::Sized::Size(size)) => reply.size(size),
            Ok(xattrs::Sized::Data(bytes)) => reply.data(&bytes),
            Err(error) => reply.error(error),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut guard = self.state();
        let state = &mut *guard;
        let result = state
            .path(ino)
            .and_then(|path| xattrs::remove(&mut state.client, &path, name));
        match result {
            Ok(()) => {
                drop(guard);
                self.invalidate(ino.0);
                reply.ok()
            }
            Err(error) => reply.error(error),
        }
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let mut guard = self.state();
        let state = &mut *guard;
        let paths = state
            .path(ino)
            .and_then(|source| Ok((source, state.child(newparent, newname)?)));
        let (source, target) = match paths {
            Ok(paths) => paths,
            Err(error) => return reply.error(error),
        };
        // A new file created here is in the namespace first (committed, as
        // an fsync does, and held), so that the master can give it a
        // second name, which its own may not outlive.
        if let Some(shared) = state.files.get_mut(&ino.0) {
            if shared.file.inode().is_none() {
                if let Err(error) = shared.file.commit(&mut state.client) {
                    return reply.error(errno(&error));
                }
            }
            self.hold_committed(state, ino.0);
        }
        if let Err(error) = state.client.link(&source, &target) {
            // A directory has one name: link(2) answers EPERM.
            let errno = match &error {
                Error::Remote(remote) if remote.kind == ErrorKind::IsADirectory => Errno::EPERM,
                other => errno(other),
            };
            return reply.error(errno);
        }
        if let Some(shared) = state.files.get_mut(&ino.0) {
            shared.linked = true;
        }
        match state.entry(target) {
            Ok(mut attr) => {
                let ttl = as_written(&state.files, &mut attr);
                reply.entry(&ttl, &attr, Generation(0))
            }
            Err(error) => reply.error(error),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut state = self.state();
        // Directories may move, or be replaced.
        state.parents.forget_all();
        let paths = state
            .child(parent, name)
            .and_then(|source| Ok((source, state.child(newparent, newname)?)));
        let (source, target) = match paths {
            Ok(paths) => paths,
            Err(error) => return reply.error(error),
        };
        if flags.bits() & libc::RENAME_EXCHANGE != 0 {
            return reply.error(Errno::EINVAL);
        }
        if source == target {
            return reply.ok();
        }
        if flags.bits() & libc::RENAME_NOREPLACE != 0 {
            match state.client.stat(&target) {
                Ok(_) => return reply.error(Errno::EEXIST),
                Err(error) if is_not_found(&error) => {}
                Err(error) => return reply.error(errno(&error)),
            }
        }
        // A directory holding new files being written here is not empty,
        // though the master does not know them yet.
        let pending_under_target = state.files.values().any(|shared| {
            shared
                .file
                .named()
                .is_some_and(|at| at != &target && at.is_within(&target))
        });
        if pending_under_target {
            return reply.error(Errno::ENOTEMPTY);
        }
        // Files being written under the source are in the namespace first
        // (a new one is committed), so that they move with it.
        if let Err(error) = state.commit_under(&source) {
            return reply.error(error);
        }
        // A file open for writing at the target is replaced: held here
        // whole for its descriptors, as a removed one is.
        let replaced = match state.unlink_open(&target) {
            Ok(replaced) => replaced,
            Err(error) => return reply.error(error),
        };
        match state.client.rename(&source, &target) {
            Ok(()) => {
                // What the target named is gone (another name of it stays).
                state.inodes.removed(&target);
                state.inodes.renamed(&source, &target);
                state.moved_open_files(&source, &target);
                reply.ok()
            }
            Err(error) => {
                state.relink_open(&replaced);
                reply.error(errno(&error))
            }
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut guard = self.state();
        let state = &mut *guard;
        let path = match state.path(ino) {
            Ok(path) => path,
            Err(error) => return reply.error(error),
        };
        // A file open for writing here already: one more descriptor of it
        // (reading or writing), so all of them see one copy.
        if let Some(shared) = state.files.get_mut(&ino.0) {
            // Close-to-open: the copy may be older than what another
            // workstation committed since it was taken (a reader kept it
            // open after the writer here closed). Read again unless it
            // holds changes of this mount's own (also before a truncation,
            // which must then cut what is there now); the kernel drops the
            // file's cached pages at this open (no KEEP_CACHE), and the
            // size it cached goes too.
            match shared.file.refresh(&mut state.client) {
                Ok(true) => self.invalidate_attributes(ino.0),
                Ok(false) => {}
                Err(error) => eprintln!("dfs-mount: {error}"),
            }
            if flags.0 & libc::O_TRUNC != 0 && is_write(flags) {
                if let Err(error) = shared.file.truncate(0) {
                    return reply.error(error);
                }
            }
            shared.handles += 1;
            let opened = opening(shared.direct);
            let id = state.handle_id();
            state.handles.insert(id, Handle::Cached(ino.0));
            return reply.opened(FileHandle(id), opened);
        }
        let mut opened = FopenFlags::empty();
        let handle = if is_write(flags) {
            if let Err(error) = state.check_write_room() {
                return reply.error(error);
            }
            let status = match state.stat(&path) {
                Ok(status) => status,
                Err(error) => return reply.error(error),
            };
            // The new contents keep the old file's owner and group.
            let keep = self.keep_owner(&status);
            let mut file = if flags.0 & libc::O_TRUNC != 0 {
                match CachedFile::new_file(path, status.mode, true, keep) {
                    Ok(file) => file,
                    Err(error) => return reply.error(errno(&error)),
                }
            } else {
                // Read as it is until written; changes go as a patch.
                CachedFile::existing(path, status.size_bytes, status.mode, keep)
            };
            file.set_inode(status.inode);
            // Descriptors that read the file here already read this copy
            // from now on, so they see what is written through the new one.
            let readers: Vec<u64> = state
                .handles
                .iter()
                .filter(|(_, handle)| {
                    matches!(handle, Handle::Read(reader) if reader.status().inode == status.inode)
                })
                .map(|(&id, _)| id)
                .collect();
            // They read through the page cache: the writes go through it too.
            let direct = self.writes_direct(flags.0) && readers.is_empty();
            let handle = state.share(ino.0, file, direct);
            // Kept by the master while open here, also once removed.
            self.locks.hold(&mut state.client, status.inode);
            for id in &readers {
                state.handles.insert(*id, Handle::Cached(ino.0));
                self.locks.release(&mut state.client, status.inode);
            }
            if let Some(shared) = state.files.get_mut(&ino.0) {
                shared.held = Some(status.inode);
                shared.handles += readers.len();
            }
            handle
        } else {
            match state.client.open(&path) {
                Ok(reader) => {
                    let status = reader.status();
                    let reading: Vec<Contents> = state
                        .handles
                        .values()
                        .filter_map(|handle| match handle {
                            Handle::Read(other) if other.status().inode == status.inode => {
                                Some(Contents::of(other.status()))
                            }
                            _ => None,
                        })
                        .collect();
                    if state.pages.opened(ino.0, Contents::of(status), &reading) {
                        opened = FopenFlags::FOPEN_KEEP_CACHE;
                    }
                    self.locks.hold(&mut state.client, status.inode);
                    if self.access_times && access_due(status) {
                        // The read goes on whether or not the time moved.
                        if let Err(error) = state.client.mark_accessed(status.inode) {
                            eprintln!("dfs-mount: mark {path} read: {error}");
                        }
                    }
                    Handle::Read(Box::new(reader))
                }
                Err(error) => return reply.error(errno(&error)),
            }
        };
        let id = state.handle_id();
        state.handles.insert(id, handle);
        drop(guard);
        // Close-to-open, as NFS's revalidation at open: the size the kernel
        // cached (a stat within the attribute lifetime) may be older than
        // what this open found, and reads stop at it. Dropped, unless the
        // contents are the ones the kernel's pages and attributes were last
        // taken from. (Appends do not ask the kernel's size again: `write`
        // puts them at the end of the file as this open found it.)
        if !opened.contains(FopenFlags::FOPEN_KEEP_CACHE) {
            self.invalidate_attributes(ino.0);
        }
        reply.opened(FileHandle(id), opened);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut state = self.state();
        let path = match state.child(parent, name) {
            Ok(path) => path,
            Err(error) => return reply.error(error),
        };
        if let Err(error) = state.check_write_room() {
            return reply.error(error);
        }
        // The file goes to the master at its commit: its directory must be
        // one (`new_entry_owner` looks, or saw so within the entry TTL).
        let owner = match self.new_entry_owner(&mut state, req, &path) {
            Ok((owner, _)) => owner,
            Err(error) => return reply.error(error),
        };
        // Without O_EXCL, a file another workstation made meanwhile is
        // replaced at the commit (as this open would have truncated it).
        let file = match CachedFile::new_file(
            path.clone(),
            mode & !umask & 0o7777,
            flags & libc::O_EXCL == 0,
            owner,
        ) {
            Ok(file) => file,
            Err(error) => return reply.error(errno(&error)),
        };
        let inode = state.inodes.pending(path);
        let direct = self.writes_direct(flags);
        let handle = state.share(inode, file, direct);
        let id = state.handle_id();
        state.handles.insert(id, handle);
        match state.pending_attr(inode) {
            Some(mut attr) => {
                attr.perm = (mode & !umask & 0o7777) as u16;
                // Not cached: once committed, the file has the master's
                // number, which the next lookup gives the kernel.
                reply.created(
                    &Duration::ZERO,
                    &attr,
                    Generation(0),
                    FileHandle(id),
                    opening(direct),
                )
            }
            None => reply.error(Errno::EIO),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut guard = self.state();
        let state = &mut *guard;
        let mut buffer = std::mem::take(&mut state.read_buffer);
        // Zeroes only what the buffer grows by; only bytes read are sent.
        buffer.resize(size as usize, 0);
        let mut filled = 0;
        while filled < buffer.len() {
            let at = offset + filled as u64;
            let read = if let Some((file, client)) = state.cached(fh) {
                file.read_at(client, at, &mut buffer[filled..])
            } else {
                match state.handles.get_mut(&fh.0) {
                    Some(Handle::Read(reader)) => match reader.read_at(at, &mut buffer[filled..]) {
                        Ok(read) => Ok(read),
                        Err(error) => {
                            let inode = reader.status().inode;
                            state.reread(fh, ino, inode, error, at, &mut buffer[filled..])
                        }
                    },
                    _ => Err(Errno::EBADF),
                }
            };
            match read {
                Ok(0) => break,
                Ok(read) => filled += read,
                Err(error) => {
                    state.read_buffer = buffer;
                    return reply.error(error);
                }
            }
        }
        reply.data(&buffer[..filled]);
        state.read_buffer = buffer;
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut guard = self.state();
        let state = &mut *guard;
        let Some((nodeid, shared)) = state
            .shared_nodeid(fh)
            .and_then(|nodeid| Some((nodeid, state.files.get_mut(&nodeid)?)))
        else {
            return reply.error(Errno::EBADF);
        };
        // An append goes at the end of the file as this mount has it,
        // whatever size the kernel thought it had (it puts an append at the
        // size it cached, which may be older than the file the open found).
        let at = if flags.0 & libc::O_APPEND != 0 {
            shared.file.size()
        } else {
            offset
        };
        let written =
            shared
                .file
                .write(&mut state.client, &self.master, &self.credentials, at, data);
        // A write may have committed what came before (past the local bound).
        self.hold_committed(state, nodeid);
        if at != offset {
            // Through the page cache, the kernel put this append where it
            // thought the end was: those pages are wrong.
            self.invalidate(nodeid);
        }
        match written {
            Ok(()) => reply.written(data.len() as u32),
            Err(error) => reply.error(error),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let mut state = self.state();
        let state = &mut *state;
        let result = if let Some((file, client)) = state.cached(fh) {
            file.flush(client)
        } else {
            Ok(false)
        };
        // Another descriptor keeps the file open past this close.
        if let Some(nodeid) = state.shared_nodeid(fh) {
            if state
                .files
                .get(&nodeid)
                .is_some_and(|shared| shared.handles > 1)
            {
                self.hold_committed(state, nodeid);
            }
        }
        // POSIX: a close drops the process's locks on the file, after what
        // was written under them is committed.
        state.release_locks(&self.locks, ino, lock_owner.0);
        match result {
            Ok(committed) => {
                if committed {
                    self.invalidate(ino.0);
                }
                reply.ok()
            }
            Err(error) => {
                eprintln!("dfs-mount: {error}");
                reply.error(errno(&error))
            }
        }
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.commit(fh, ino, reply);
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let mut guard = self.state();
        let state = &mut *guard;
        // A flock goes with the last close of its open file.
        if let Some(owner) = lock_owner {
            state.release_locks(&self.locks, ino, owner.0);
        }
        // Whether the last descriptor of a shared file was committed.
        let committed = match state.handles.remove(&fh.0) {
            // The last descriptor of a shared file: committed, dropped.
            Some(Handle::Cached(nodeid)) => match state.files.get_mut(&nodeid) {
                Some(shared) if shared.handles > 1 => {
                    shared.handles -= 1;
                    Ok(false)
                }
                Some(_) => match state.files.remove(&nodeid) {
                    Some(mut shared) => {
                        let committed = shared.file.commit(&mut state.client);
                        if let Some(inode) = shared.held {
                            self.locks.release(&mut state.client, inode);
                        }
                        committed.map(|()| true)
                    }
                    None => Ok(false),
                },
                None => Ok(false),
            },
            Some(Handle::Read(reader)) => {
                self.locks.release(&mut state.client, reader.status().inode);
                Ok(false)
            }
            _ => Ok(false),
        };
        drop(guard);
        match committed {
            // What the kernel holds of it is old now. A descriptor that
            // only read leaves the pages (`pages`) to the next open.
            Ok(true) => self.invalidate(ino.0),
            Ok(false) => self.invalidate_attributes(ino.0),
            Err(error) => eprintln!("dfs-mount: {error}"),
        }
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut state = self.state();
        let path = match state.path(ino) {
            Ok(path) => path,
            Err(error) => return reply.error(error),
        };
        // A directory that is not there (or not a directory) fails here.
        match state.client.stat(&path) {
            Ok(status) if status.kind == EntryKind::Directory => {}
            Ok(_) => return reply.error(Errno::ENOTDIR),
            Err(error) => return reply.error(errno(&error)),
        }
        let parent = path
            .parent()
            .and_then(|parent| state.client.stat(&parent).ok())
            .map_or(ino.0, |status| status.inode);
        let listed = (path, Listing::new(ino.0, parent));
        let id = state.handle_id();
        state.directories.insert(id, listed);
        reply.opened(FileHandle(id), FopenFlags::empty());
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut guard = self.state();
        let state = &mut *guard;
        let extra = state.new_files_listed(fh);
        let Some((path, listing)) = state.directories.get_mut(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let mut source = ClientPages {
            client: &mut state.client,
            path,
            extra: extra
                .into_iter()
                .map(|(inode, name, _)| (inode, name))
                .collect(),
        };
        let filled = listing.fill(&mut source, offset, |next, (inode, kind, name, _)| {
            reply.add(INodeNo(*inode), next, *kind, name)
        });
        match filled {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(errno(&error)),
        }
    }

    /// `readdir` with each entry's attributes, from the master's listing
    /// pages (one request for many entries): `ls -l` of a large directory
    /// costs no lookup per entry. Each entry given counts as a lookup.
    fn readdirplus(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: fuser::ReplyDirectoryPlus,
    ) {
        let mut guard = self.state();
        let state = &mut *guard;
        let extra = state.new_files_listed(fh);
        let pending: HashMap<u64, FileAttr> = extra
            .iter()
            .map(|(inode, _, attr)| (*inode, *attr))
            .collect();
        let Some((path, listing)) = state.directories.get_mut(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let mut source = ClientPages {
            client: &mut state.client,
            path,
            extra: extra
                .into_iter()
                .map(|(inode, name, _)| (inode, name))
                .collect(),
        };
        let mut given: Vec<(u64, String)> = Vec::new();
        let ids = &mut state.ids;
        let files = &state.files;
        let filled = listing.fill(&mut source, offset, |next, (inode, kind, name, status)| {
            let Some(status) = status else {
                if let Some(attr) = pending.get(inode) {
                    // A new file being written here, not in the master yet.
                    let full = reply.add(
                        INodeNo(*inode),
                        next,
                        name,
                        &Duration::ZERO,
                        attr,
                        Generation(0),
                    );
                    if !full {
                        given.push((*inode, name.clone()));
                    }
                    return full;
                }
                // "." and "..": the kernel takes no attributes from them.
                let attr = attr::bare(*inode, *kind);
                return reply.add(
                    INodeNo(*inode),
                    next,
                    name,
                    &Duration::ZERO,
                    &attr,
                    Generation(0),
                );
            };
            let mut attr = ids.attr(status);
            attr.ino = INodeNo(kernel_number(files, *inode));
            let ttl = as_written(files, &mut attr);
            let full = reply.add(attr.ino, next, name, &ttl, &attr, Generation(0));
            if !full {
                given.push((attr.ino.0, name.clone()));
            }
            full
        });
        if let Err(error) = filled {
            return reply.error(errno(&error));
        }
        let parent = path.clone();
        for (inode, name) in given {
            if let Ok(child) = parent.join(&name) {
                state.inodes.remember(inode, child);
            }
        }
        reply.ok()
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.state().directories.remove(&fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let mut state = self.state();
        let report = match state.client.cluster_report() {
            Ok(report) => report,
            Err(error) => return reply.error(errno(&error)),
        };
        let block = u64::from(STATFS_BLOCK_BYTES);
        let capacity: u64 = report.minions.iter().map(|m| m.capacity_bytes).sum();
        let available: u64 = report.minions.iter().map(|m| m.available_bytes).sum();
        let files = report.file_count.saturating_add(report.directory_count);
        reply.statfs(
            capacity / block,
            available / block,
            available / block,
            files.saturating_add(u64::from(u32::MAX)),
            u64::from(u32::MAX),
            STATFS_BLOCK_BYTES,
            NAME_BYTES_MAX,
            STATFS_BLOCK_BYTES,
        );
    }

    fn getlk(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        _pid: u32,
        reply: ReplyLock,
    ) {
        let Ok(Some(kind)) = locks::kind(typ) else {
            return reply.error(Errno::EINVAL);
        };
        let range = locks::range(start, end);
        let mut state = self.state();
        let key = match state.path(ino) {
            Ok(path) => locks::key(&path),
            Err(error) => return reply.error(error),
        };
        let found = state
            .client
            .test_lock(self.locks.id(), key, lock_owner.0, kind, range);
        match found {
            // The holder may be on another machine: no pid to give.
            Ok(Some(conflict)) => {
                let (start, end) = locks::fuse_range(conflict.range);
                reply.locked(start, end, locks::fcntl_type(conflict.kind), 0)
            }
            Ok(None) => reply.locked(start, end, libc::F_UNLCK, 0),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn setlk(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        _pid: u32,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        let wanted = match locks::kind(typ) {
            Ok(wanted) => wanted,
            Err(error) => return reply.error(error),
        };
        let range = locks::range(start, end);
        let session = self.locks.id();
        let mut guard = self.state();
        let state = &mut *guard;
        let path = match state.path(ino) {
            Ok(path) => path,
            Err(error) => return reply.error(error),
        };
        let key = locks::key(&path);
        if wanted.is_some() {
            state.locked.insert(key);
        }
        // Unlocking: what was written under the lock goes first (NFS).
        if wanted.is_none() {
            let committed = match state.files.get_mut(&ino.0) {
                Some(shared) if shared.file.is_dirty() => {
                    shared.file.commit(&mut state.client).map(|()| true)
                }
                _ => Ok(false),
            };
            match committed {
                Ok(true) => self.invalidate(ino.0),
                Ok(false) => {}
                Err(error) => {
                    eprintln!("dfs-mount: {error}");
                    return reply.error(errno(&error));
                }
            }
        }
        let mut answer = state.client.lock(session, key, lock_owner.0, wanted, range);
        if is_no_session(&answer) {
            // The master restarted: once the lease thread opened a new
            // session (and took this mount's locks again), once more.
            if let Some(fresh) = self.locks.wait_for_new_session(session) {
                answer = state.client.lock(fresh, key, lock_owner.0, wanted, range);
            }
        }
        if matches!(answer, Ok(None)) {
            // Taken again after a master restart.
            dfs_engine::sync::lock(&self.locks.held_locks()).record(
                key,
                lock_owner.0,
                wanted,
                range,
            );
        }
        // Locked: read again what another workstation may have committed.
        if wanted.is_some() && matches!(answer, Ok(None)) {
            if let Some(shared) = state.files.get_mut(&ino.0) {
                if let Err(error) = shared.file.refresh(&mut state.client) {
                    eprintln!("dfs-mount: {error}");
                }
            }
            // Pages the kernel cached before another workstation's commit
            // must go before the lock's holder reads (as NFS does at a
            // lock): dropped, and waited for, when the file changed since
            // this mount last locked it.
            if state.changed_since_locked(ino.0, &path) {
                drop(guard);
                invalidate_and_wait(&self.stale, ino.0);
                return reply.ok();
            }
        }
        match (answer, wanted) {
            (Ok(None), _) => reply.ok(),
            (Ok(Some(_)), Some(kind)) if sleep => {
                // Waits in a thread of its own: the mount goes on serving.
                let client = match self.locks.client() {
                    Ok(client) => client,
                    Err(error) => return reply.error(errno(&error)),
                };
                let shared = self.locks.shared_id();
                let stale = self.stale.clone();
                let held = self.locks.held_locks();
                let spawned =
                    std::thread::Builder::new()
                        .name("lock-wait".into())
                        .spawn(move || {
                            match locks::wait_for_lock(
                                client,
                                &shared,
                                key,
                                lock_owner.0,
                                kind,
                                range,
                            ) {
                                Ok(()) => {
                                    dfs_engine::sync::lock(&held).record(
                                        key,
                                        lock_owner.0,
                                        Some(kind),
                                        range,
                                    );
                                    // It waited for another holder, who may
                                    // have changed the file.
                                    invalidate_and_wait(&stale, ino.0);
                                    reply.ok()
                                }
                                Err(error) => reply.error(errno(&error)),
                            }
                        });
                if let Err(error) = spawned {
                    eprintln!("dfs-mount: start a lock waiter: {error}");
                }
            }
            (Ok(Some(_)), _) => reply.error(Errno::EAGAIN),
            (Err(error), _) => reply.error(errno(&error)),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // The kernel checks modes itself (`default_permissions`).
        reply.ok();
    }
}

/// The master's listing of one directory, a page at a time.
struct ClientPages<'a> {
    client: &'a mut Client,
    path: &'a DfsPath,
    /// New files being written here in this directory (number, name):
    /// listed after the master's entries, those it does not have yet.
    extra: Vec<(u64, String)>,
}

impl PageSource for ClientPages<'_> {
    fn page(&mut self, after: Option<&str>) -> dfs_engine::Result<(Vec<DirEntry>, bool)> {
        let (entries, more) = self.client.list_page(self.path, after)?;
        let mut page: Vec<DirEntry> = entries
            .into_iter()
            .map(|entry| {
                // A name this mount is writing a new file at is that file
                // here, under the number it was created with, also once a
                // commit put it in the master (as a lookup answers).
                if let Some(at) = self.extra.iter().position(|(_, name)| *name == entry.name) {
                    let (inode, name) = self.extra.swap_remove(at);
                    return (inode, fuser::FileType::RegularFile, name, None);
                }
                let (inode, kind, name) =
                    (entry.inode, attr::file_type(entry.kind), entry.name.clone());
                (inode, kind, name, Some(Box::new(entry)))
            })
            .collect();
        if !more {
            // After the master's last entry: the new files being written
            // here that it does not have yet.
            for (inode, name) in std::mem::take(&mut self.extra) {
                page.push((inode, fuser::FileType::RegularFile, name, None));
            }
        }
        Ok((page, more))
    }
}

impl DfsFs {
    /// A file opened write-only where no descriptor of it is open here yet
    /// is written around the kernel's page cache: the data goes from the
    /// writer's buffer to this process in one copy, instead of first into
    /// new cache pages that nothing reads (`cp`, `dd`, `tar -x`, a
    /// compiler's output). Descriptors opened while it stays open are
    /// direct too (`opening`). So is a file opened to append: the kernel
    /// puts an append at the size it cached, which may be older than the
    /// file this open found (another workstation appended since a stat
    /// here); `write` puts it at the end instead, and no cached page may
    /// hold it where the kernel thought it went.
    fn writes_direct(&self, flags: i32) -> bool {
        self.direct_writes
            && (flags & libc::O_ACCMODE == libc::O_WRONLY || flags & libc::O_APPEND != 0)
    }

    /// Where notifications sent from requests go, to be set once the
    /// session is up.
    pub fn notifier_slot(&self) -> Arc<OnceLock<fuser::Notifier>> {
        Arc::clone(&self.notifier)
    }

    /// Has the kernel drop what it caches of the file `inode` (never
    /// blocks: a full queue means drops are pending anyway).
    fn invalidate(&self, inode: u64) {
        let _ = self.stale.try_send(Stale { inode, done: None });
    }

    /// Has the kernel drop the attributes it caches of the file `inode`,
    /// not its pages: its next look at the size asks this mount. Sent from
    /// the request being answered: dropping attributes takes no page lock
    /// and waits for no answer of this session, and it is done when the
    /// notification's write returns (before the session is up, nothing is
    /// cached to drop).
    fn invalidate_attributes(&self, inode: u64) {
        if let Some(notifier) = self.notifier.get() {
            // A negative offset leaves the pages alone.
            let _ = notifier.inval_inode(INodeNo(inode), -1, 0);
        }
    }

    /// Who a new entry at `path` belongs to: the caller (as NFS `sec=sys`
    /// has it), with the group of its directory when that is setgid. As
    /// the change to make after the master made it as this mount's user
    /// (empty when nothing differs), and whether the group was inherited.
    fn new_entry_owner(
        &self,
        state: &mut State,
        req: &Request,
        path: &DfsPath,
    ) -> Result<(AttributeChange, bool), Errno> {
        let parent = path.parent().ok_or(Errno::EINVAL)?;
        let now = Instant::now();
        let directory = match state.parents.get(&parent, now) {
            Some(directory) => directory.clone(),
            None => {
                let status = state.stat(&parent)?;
                if status.kind != EntryKind::Directory {
                    return Err(Errno::ENOTDIR);
                }
                let directory = Parent {
                    mode: status.mode,
                    group: status.group,
                };
                state.parents.put(parent, directory.clone(), now);
                directory
            }
        };
        let owner = state.ids.user_name(req.uid());
        let inherited = directory.mode & libc::S_ISGID != 0;
        let group = if inherited {
            directory.group
        } else {
            state.ids.group_name(req.gid())
        };
        Ok((self.owned_by(owner, group), inherited))
    }

    /// `truncate(2)` of a file no handle here writes: a patch of nothing
    /// that cuts or grows it (a hole) in the cluster; no byte is copied.
    fn truncate_path(&self, state: &mut State, path: &DfsPath, size: u64) -> Result<(), Errno> {
        let status = state.stat(path)?;
        if status.kind != EntryKind::File {
            return Err(Errno::EISDIR);
        }
        if size == status.size_bytes {
            return Ok(());
        }
        state.client.truncate(path, size).map_err(|e| errno(&e))
    }

    /// The change that gives a rewritten file its old owner and group back
    /// (none when they are this mount's user's).
    fn keep_owner(&self, status: &EntryStatus) -> AttributeChange {
        self.owned_by(status.owner.clone(), status.group.clone())
    }

    /// The change that makes an entry the master makes as this mount's
    /// user belong to `owner` and `group` (only what differs).
    fn owned_by(&self, owner: String, group: String) -> AttributeChange {
        AttributeChange {
            owner: (owner != self.credentials.user).then_some(owner),
            group: (Some(&group) != self.credentials.groups.first()).then_some(group),
            ..AttributeChange::default()
        }
    }

    /// A new file created here, once committed while it stays open (at
    /// `fsync`, written back past the local bound, or at the close of one
    /// descriptor while another is open), is held by the master as an
    /// opened file is: it outlives its names while open here, and its
    /// descriptors go on reading it, not what took its name. (A commit at
    /// its last close is followed by the release, and holds nothing.)
    fn hold_committed(&self, state: &mut State, nodeid: u64) {
        let Some(shared) = state.files.get_mut(&nodeid) else {
            return;
        };
        if let (None, Some(inode)) = (shared.held, shared.file.inode()) {
            self.locks.hold(&mut state.client, inode);
            shared.held = Some(inode);
        }
    }

    /// `fsync`: commits the file written through `fh`, if it is one being
    /// written, and makes every block this mount wrote to it durable.
    fn commit(&self, fh: FileHandle, ino: INodeNo, reply: ReplyEmpty) {
        let mut guard = self.state();
        let state = &mut *guard;
        let committed = if let Some((file, client)) = state.cached(fh) {
            let committed = file.commit(client).map(|()| file.inode());
            if let Some(nodeid) = state.shared_nodeid(fh) {
                self.hold_committed(state, nodeid);
            }
            committed
        } else {
            Ok(match state.handles.get(&fh.0) {
                Some(Handle::Read(reader)) => Some(reader.status().inode),
                _ => None,
            })
        };
        // A file known to the master has its number as the kernel's.
        let result = committed.and_then(|inode| {
            let inode = inode.unwrap_or(ino.0);
            state.unsynced.make_durable(&mut state.client, inode)
        });
        match result {
            Ok(()) => {
                self.invalidate(ino.0);
                reply.ok()
            }
            Err(error) => {
                eprintln!("dfs-mount: {error}");
                reply.error(errno(&error))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dfs_engine::msg::RemoteError;

    #[test]
    fn errors_become_the_errno_a_program_expects() {
        let remote = |kind| Error::Remote(RemoteError::new(kind, "x"));
        assert_eq!(errno(&remote(ErrorKind::NotFound)), Errno::ENOENT);
        assert_eq!(
            errno(&remote(ErrorKind::DirectoryNotEmpty)),
            Errno::ENOTEMPTY
        );
        assert_eq!(errno(&remote(ErrorKind::NoSpace)), Errno::ENOSPC);
        assert_eq!(errno(&remote(ErrorKind::Corrupted)), Errno::EIO);
        let full = Error::io("spool", std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(errno(&full), Errno::ENOSPC);
        let plain = Error::io("x", std::io::Error::other("no number"));
        assert_eq!(errno(&plain), Errno::EIO);
    }
}
