//! The FUSE file system: kernel requests answered with the client library.
//! Names and attributes come from the master (cached by the kernel for
//! `ENTRY_TTL`); reads go to the minions through a `FileReader` per open
//! file; a file opened for writing is written front to back by a
//! `WriteHandle` and appears, whole, when its last descriptor is closed or
//! it is fsynced (close-to-open, as NFS: another workstation sees it once
//! it is closed here).
//!
//! Requests are served one at a time (one session thread), under one lock
//! of the mount's state.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use dfs_client::client::AttributeChange;
use dfs_client::{Client, FileReader, WriteOptions};
use dfs_engine::msg::{Credentials, EntryKind, EntryStatus, ErrorKind};
use dfs_engine::path::DfsPath;
use dfs_engine::Error;
use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request,
    TimeOrNow, WriteFlags,
};

use crate::attr::{self, Ids};
use crate::inodes::{Inodes, PENDING_INODE_BASE};
use crate::writer::WriteHandle;

/// How long the kernel may keep a name or an attribute without asking
/// again: what another workstation's change may take to show here.
const ENTRY_TTL: Duration = Duration::from_secs(1);
/// Longest name in a directory (the master's limit).
const NAME_BYTES_MAX: u32 = dfs_engine::limits::NAME_BYTES_MAX as u32;
/// The statfs block size.
const STATFS_BLOCK_BYTES: u32 = 4096;

enum Handle {
    Read(Box<FileReader>),
    Write(WriteHandle),
}

struct State {
    client: Client,
    inodes: Inodes,
    ids: Ids,
    handles: HashMap<u64, Handle>,
    /// Open directories: their entries as listed at opendir.
    directories: HashMap<u64, Vec<(u64, FileType, String)>>,
    next_handle: u64,
}

/// The mounted cluster.
pub struct DfsFs {
    master: String,
    credentials: Credentials,
    state: Mutex<State>,
}

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
            _ => Errno::EIO,
        },
        Error::Io { cause, .. } => Errno::from(cause.kind()),
        _ => Errno::EIO,
    }
}

fn is_not_found(error: &Error) -> bool {
    matches!(error, Error::Remote(remote) if remote.kind == ErrorKind::NotFound)
}

impl DfsFs {
    pub fn new(master: &str, credentials: Credentials) -> dfs_engine::Result<DfsFs> {
        let client = Client::connect_as(master, credentials.clone())?;
        Ok(DfsFs {
            master: master.to_string(),
            credentials,
            state: Mutex::new(State {
                client,
                inodes: Inodes::new(),
                ids: Ids::default(),
                handles: HashMap::new(),
                directories: HashMap::new(),
                next_handle: 1,
            }),
        })
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
        self.path(parent)?.join(name).map_err(|_| Errno::EINVAL)
    }

    fn handle_id(&mut self) -> u64 {
        let id = self.next_handle;
        self.next_handle += 1;
        id
    }

    /// The attributes of a file being written, from its handle.
    fn pending_attr(&mut self, inode: u64) -> Option<FileAttr> {
        let handle = self.handles.values().find_map(|handle| match handle {
            Handle::Write(write) if self.inodes.path(inode) == Some(write.path()) => Some(write),
            _ => None,
        })?;
        let now = SystemTime::now();
        let size = handle.written_bytes();
        Some(FileAttr {
            ino: INodeNo(inode),
            size,
            blocks: size.div_ceil(512),
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            kind: FileType::RegularFile,
            perm: 0o644,
            nlink: 1,
            uid: self.ids.uid(&handle_owner(&self.client)),
            gid: self.ids.gid(&handle_group(&self.client)),
            rdev: 0,
            blksize: 1 << 20,
            flags: 0,
        })
    }

    /// Looks `path` up, remembers its inode, and answers its attributes.
    fn entry(&mut self, path: DfsPath) -> Result<FileAttr, Errno> {
        let status = self.client.stat(&path).map_err(|e| errno(&e))?;
        self.inodes.remember(status.inode, path);
        Ok(self.ids.attr(&status))
    }

    fn stat(&mut self, path: &DfsPath) -> Result<EntryStatus, Errno> {
        self.client.stat(path).map_err(|e| errno(&e))
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

fn time_ms(time: TimeOrNow) -> u64 {
    match time {
        TimeOrNow::SpecificTime(time) => attr::millis(time),
        TimeOrNow::Now => attr::millis(SystemTime::now()),
    }
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
        // The kernel's largest writes: fewer, larger pieces for the writer.
        let _ = config.set_max_write(1 << 20);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut state = self.state();
        let path = match state.child(parent, name) {
            Ok(path) => path,
            Err(error) => return reply.error(error),
        };
        match state.entry(path.clone()) {
            Ok(attr) => reply.entry(&ENTRY_TTL, &attr, Generation(0)),
            Err(error) if error == Errno::ENOENT => {
                // A new file this mount is writing is there for its users.
                let pending = state.inodes.pending_inode(&path);
                match pending.and_then(|inode| state.pending_attr(inode)) {
                    Some(attr) => {
                        state.inodes.remember(attr.ino.0, path);
                        reply.entry(&Duration::ZERO, &attr, Generation(0))
                    }
                    None => reply.error(error),
                }
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
            if let Some(attr) = state.pending_attr(ino.0) {
                return reply.attr(&Duration::ZERO, &attr);
            }
            // Committed since: the file under the number the kernel holds.
            let committed = state.path(ino).and_then(|path| state.stat(&path));
            return match committed {
                Ok(status) => {
                    let mut attr = state.ids.attr(&status);
                    attr.ino = ino;
                    reply.attr(&Duration::ZERO, &attr)
                }
                Err(error) => reply.error(error),
            };
        }
        let result = state.path(ino).and_then(|path| state.stat(&path));
        match result {
            Ok(status) => {
                let attr = state.ids.attr(&status);
                reply.attr(&ENTRY_TTL, &attr)
            }
            Err(error) => reply.error(error),
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
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut state = self.state();
        if ino.0 >= PENDING_INODE_BASE {
            // A file being written: only a size it already has is possible
            // (`open(O_TRUNC)` of a new file, say).
            let attr = state.pending_attr(ino.0);
            return match (attr, size) {
                (Some(attr), None) => reply.attr(&ENTRY_TTL, &attr),
                (Some(attr), Some(size)) if size == attr.size => reply.attr(&ENTRY_TTL, &attr),
                (Some(_), Some(_)) => reply.error(Errno::EOPNOTSUPP),
                (None, _) => reply.error(Errno::ESTALE),
            };
        }
        let path = match state.path(ino) {
            Ok(path) => path,
            Err(error) => return reply.error(error),
        };
        if let Some(size) = size {
            let status = match state.stat(&path) {
                Ok(status) => status,
                Err(error) => return reply.error(error),
            };
            let open_writer = fh.is_some_and(|fh| {
                matches!(state.handles.get(&fh.0), Some(Handle::Write(write)) if write.written_bytes() == size)
            });
            if size != status.size_bytes && !open_writer {
                if size != 0 {
                    // Other sizes need the extent maps of the namespace.
                    return reply.error(Errno::EOPNOTSUPP);
                }
                // Truncating to nothing: an empty file replaces it.
                let options = WriteOptions {
                    overwrite: true,
                    mode: status.mode,
                    ..WriteOptions::default()
                };
                let emptied = state
                    .client
                    .create(&path, options)
                    .and_then(|writer| writer.finish().map(drop));
                if let Err(error) = emptied {
                    return reply.error(errno(&error));
                }
            }
        }
        let mut change = AttributeChange {
            mode: mode.map(|mode| mode & 0o7777),
            modified_ms: mtime.map(time_ms),
            accessed_ms: atime.map(time_ms),
            ..AttributeChange::default()
        };
        if let Some(uid) = uid {
            change.owner = Some(state.ids.user_name(uid));
        }
        if let Some(gid) = gid {
            change.group = Some(state.ids.group_name(gid));
        }
        if change != AttributeChange::default() {
            if let Err(error) = state.client.set_attributes(&path, change) {
                return reply.error(errno(&error));
            }
        }
        match state.entry(path) {
            Ok(attr) => reply.attr(&ENTRY_TTL, &attr),
            Err(error) => reply.error(error),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
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
        if let Err(error) = state.client.mkdir(&path, false, mode & !umask & 0o7777) {
            return reply.error(errno(&error));
        }
        match state.entry(path) {
            Ok(attr) => reply.entry(&ENTRY_TTL, &attr, Generation(0)),
            Err(error) => reply.error(error),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut state = self.state();
        let result = state
            .child(parent, name)
            .and_then(|path| match state.stat(&path)?.kind {
                EntryKind::Directory => Err(Errno::EISDIR),
                EntryKind::File | EntryKind::Symlink => {
                    state.client.delete(&path, false).map_err(|e| errno(&e))
                }
            });
        match result {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(error),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut state = self.state();
        let result = state
            .child(parent, name)
            .and_then(|path| match state.stat(&path)?.kind {
                EntryKind::File | EntryKind::Symlink => Err(Errno::ENOTDIR),
                EntryKind::Directory => state.client.delete(&path, false).map_err(|e| errno(&e)),
            });
        match result {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(error),
        }
    }

    fn symlink(
        &self,
        _req: &Request,
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
        if let Err(error) = state.client.symlink(&path, target) {
            return reply.error(errno(&error));
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

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let mut state = self.state();
        let paths = state
            .path(ino)
            .and_then(|source| Ok((source, state.child(newparent, newname)?)));
        let (source, target) = match paths {
            Ok(paths) => paths,
            Err(error) => return reply.error(error),
        };
        if let Err(error) = state.client.link(&source, &target) {
            // A directory has one name: link(2) answers EPERM.
            let errno = match &error {
                Error::Remote(remote) if remote.kind == ErrorKind::IsADirectory => Errno::EPERM,
                other => errno(other),
            };
            return reply.error(errno);
        }
        match state.entry(target) {
            Ok(attr) => reply.entry(&ENTRY_TTL, &attr, Generation(0)),
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
        if flags.bits() & libc::RENAME_NOREPLACE != 0 {
            match state.client.stat(&target) {
                Ok(_) => return reply.error(Errno::EEXIST),
                Err(error) if is_not_found(&error) => {}
                Err(error) => return reply.error(errno(&error)),
            }
        }
        match state.client.rename(&source, &target) {
            Ok(()) => {
                state.inodes.renamed(&source, &target);
                reply.ok()
            }
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut state = self.state();
        let path = match state.path(ino) {
            Ok(path) => path,
            Err(error) => return reply.error(error),
        };
        let handle = if is_write(flags) {
            let status = match state.stat(&path) {
                Ok(status) => status,
                Err(error) => return reply.error(error),
            };
            // Only a file written anew: truncated on open, or empty.
            if flags.0 & libc::O_TRUNC == 0 && status.size_bytes != 0 {
                return reply.error(Errno::EOPNOTSUPP);
            }
            let options = WriteOptions {
                overwrite: true,
                mode: status.mode,
                ..WriteOptions::default()
            };
            match WriteHandle::open(&self.master, self.credentials.clone(), path, options) {
                Ok(write) => Handle::Write(write),
                Err(error) => return reply.error(errno(&error)),
            }
        } else {
            match state.client.open(&path) {
                Ok(reader) => Handle::Read(Box::new(reader)),
                Err(error) => return reply.error(errno(&error)),
            }
        };
        let id = state.handle_id();
        state.handles.insert(id, handle);
        reply.opened(FileHandle(id), FopenFlags::empty());
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut state = self.state();
        let path = match state.child(parent, name) {
            Ok(path) => path,
            Err(error) => return reply.error(error),
        };
        let options = WriteOptions {
            overwrite: false,
            mode: mode & !umask & 0o7777,
            ..WriteOptions::default()
        };
        let write = match WriteHandle::open(
            &self.master,
            self.credentials.clone(),
            path.clone(),
            options,
        ) {
            Ok(write) => write,
            Err(error) => return reply.error(errno(&error)),
        };
        let inode = state.inodes.pending(path);
        let id = state.handle_id();
        state.handles.insert(id, Handle::Write(write));
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
                    FopenFlags::empty(),
                )
            }
            None => reply.error(Errno::EIO),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut state = self.state();
        let reader = match state.handles.get_mut(&fh.0) {
            Some(Handle::Read(reader)) => reader,
            Some(Handle::Write(_)) => return reply.error(Errno::EBADF),
            None => return reply.error(Errno::EBADF),
        };
        let mut buffer = vec![0u8; size as usize];
        let mut filled = 0;
        while filled < buffer.len() {
            match reader.read_at(offset + filled as u64, &mut buffer[filled..]) {
                Ok(0) => break,
                Ok(read) => filled += read,
                Err(error) => return reply.error(errno(&error)),
            }
        }
        reply.data(&buffer[..filled]);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut state = self.state();
        let Some(Handle::Write(write)) = state.handles.get_mut(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        if write.is_committed() || offset != write.written_bytes() {
            // Rewriting or writing out of order needs extent maps.
            return reply.error(Errno::EOPNOTSUPP);
        }
        match write.write(offset, data) {
            Ok(()) => reply.written(data.len() as u32),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let mut state = self.state();
        let result = match state.handles.get_mut(&fh.0) {
            Some(Handle::Write(write)) => write.check(),
            _ => Ok(()),
        };
        match result {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.commit(fh, reply);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let handle = self.state().handles.remove(&fh.0);
        if let Some(Handle::Write(mut write)) = handle {
            if let Err(error) = write.commit() {
                eprintln!("dfs-mount: {error}");
            }
        }
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut state = self.state();
        let path = match state.path(ino) {
            Ok(path) => path,
            Err(error) => return reply.error(error),
        };
        let entries = match state.client.list(&path) {
            Ok(entries) => entries,
            Err(error) => return reply.error(errno(&error)),
        };
        let parent = path
            .parent()
            .and_then(|parent| state.client.stat(&parent).ok())
            .map_or(ino.0, |status| status.inode);
        let mut listed = vec![
            (ino.0, FileType::Directory, ".".to_string()),
            (parent, FileType::Directory, "..".to_string()),
        ];
        listed.extend(
            entries
                .into_iter()
                .map(|entry| (entry.inode, attr::file_type(entry.kind), entry.name)),
        );
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
        let state = self.state();
        let Some(entries) = state.directories.get(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        for (index, (inode, kind, name)) in entries.iter().enumerate().skip(start) {
            if reply.add(INodeNo(*inode), index as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
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
        let files = report.file_count + report.directory_count;
        reply.statfs(
            capacity / block,
            available / block,
            available / block,
            files + u64::from(u32::MAX),
            u64::from(u32::MAX),
            STATFS_BLOCK_BYTES,
            NAME_BYTES_MAX,
            STATFS_BLOCK_BYTES,
        );
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // The kernel checks modes itself (`default_permissions`).
        reply.ok();
    }
}

impl DfsFs {
    /// Commits the file written through `fh`, if it is one being written.
    fn commit(&self, fh: FileHandle, reply: ReplyEmpty) {
        let mut state = self.state();
        let result = match state.handles.get_mut(&fh.0) {
            Some(Handle::Write(write)) => write.commit(),
            _ => Ok(()),
        };
        match result {
            Ok(()) => reply.ok(),
            Err(error) => {
                eprintln!("dfs-mount: {error}");
                reply.error(errno(&error))
            }
        }
    }
}
