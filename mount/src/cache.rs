//! A file open for writing. Its changes are kept in a local overlay (an
//! unlinked sparse temporary file at the file's own offsets) with the
//! ranges they cover; the rest reads from the cluster's file as it was
//! when this handle last read or committed it (its base). A commit (the
//! last close, a close after changes, an fsync) sends the changed ranges as
//! new blocks and makes them part of the file in one atomic patch (the
//! namespace's extent maps): a write into the middle of a file of any size
//! costs what was written, nothing is copied to be changed. A truncation
//! is part of the patch (shorter: cut; longer: a hole). A handle that never
//! writes changes nothing.
//!
//! A new (or truncated) file holds all its contents here and is committed
//! whole, replacing what is at its path in one atomic close. Once it grows
//! past `SPOOL_BYTES_MAX` it goes on as a stream (in order, gaps read as
//! zeros) so that a large file is never held here; a write back into what
//! was streamed, or a read of it, commits the stream and goes on as an
//! existing file. An existing file whose changes pass `SPOOL_BYTES_MAX`
//! commits them then (write-back), so local space stays bounded.
//!
//! Bounds: about `SPOOL_BYTES_MAX` of local temporary space per file,
//! `PATCH_RANGES_MAX` ranges per commit (the smallest gaps between changes
//! are filled from the base when there are more), and at most
//! `MOUNT_OPEN_WRITES_MAX` files written at once per mount.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

use dfs_client::client::AttributeChange;
use dfs_client::{Client, FileReader, WriteOptions};
use dfs_engine::limits::{BLOCK_BYTES_DEFAULT, FILE_BLOCKS_MAX, PATCH_RANGES_MAX, SPOOL_BYTES_MAX};
use dfs_engine::msg::{Credentials, FileRange};
use dfs_engine::path::DfsPath;
use dfs_engine::{Error, Result};
use fuser::Errno;

use crate::compactor::Compactor;
use crate::fs::errno;
use crate::ranges::Ranges;
use crate::unsynced::{self, Unsynced};
use crate::writer::WriteHandle;

/// The largest file the mount writes: the most blocks of the size it uses.
const FILE_BYTES_MAX: u64 = FILE_BLOCKS_MAX as u64 * BLOCK_BYTES_DEFAULT;

/// Bytes moved between the overlay and the cluster at a time.
const COPY_BYTES: usize = 1 << 20;

/// The file as this handle has it, held here.
struct Local {
    /// The cluster's bytes this builds on: the file's first `base_size`
    /// bytes (0 for a file held whole here).
    base_size: u64,
    /// The whole contents are here (a new or truncated file, or one
    /// removed while open): committed whole, replacing.
    whole: bool,
    /// Changed bytes at their offsets; made at the first change. Bytes
    /// past its end read as zeros.
    overlay: Option<File>,
    /// The ranges the overlay holds (zeros where a truncation cut the base
    /// and nothing was written since).
    changed: Ranges,
    size: u64,
    /// The base's inode, when known: read by it, whatever its names are.
    inode: Option<u64>,
}

enum Contents {
    Local(Local),
    /// A new file past the spool's bound: sent in order.
    Streaming(WriteHandle),
}

pub struct CachedFile {
    path: DfsPath,
    mode: u32,
    /// Replace a file that appears at the path meanwhile (not `O_EXCL`).
    overwrite: bool,
    contents: Contents,
    /// Reads the base from the cluster.
    reader: Option<FileReader>,
    /// Changed since the last commit (or since it was opened).
    dirty: bool,
    /// Attributes to set once committed: the old file's owner and group,
    /// and what was set while it was open.
    after_commit: AttributeChange,
    /// A write was refused: the file is abandoned, never committed.
    poisoned: bool,
    /// The kernel's number for the file open here.
    nodeid: u64,
    /// Its name was removed while it was open: it lives on here, for
    /// reads and writes, until its last close, and is never committed.
    unlinked: bool,
    /// Its last name was removed while the master keeps it for this mount:
    /// it has no links, and goes on by inode.
    nameless: bool,
    /// The name it was opened by (`path`) was removed or taken by another
    /// file; it goes on by inode (under other names, or none).
    path_gone: bool,
    /// Where a file a patch left fragmented is sent to be compacted.
    compactor: Option<Compactor>,
    /// Where its commits list the blocks they wrote without `sync`.
    unsynced: Option<Unsynced>,
    /// The file's inode in the namespace, once known (an existing file; a
    /// new one after its first commit): commits change that file whatever
    /// its names are by then (renamed, or one of several names removed).
    inode: Option<u64>,
}

fn spool_error(path: &DfsPath, error: io::Error) -> Error {
    Error::io(
        format!("{path}: the local copy of a file being written"),
        error,
    )
}

/// Reads `buffer.len()` bytes of `overlay` at `offset`; past its end, zeros.
fn read_overlay(overlay: Option<&File>, offset: u64, buffer: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    if let Some(overlay) = overlay {
        while filled < buffer.len() {
            match overlay.read_at(&mut buffer[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(read) => filled += read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
    }
    buffer[filled..].fill(0);
    Ok(())
}

impl Local {
    fn new_file() -> Local {
        Local {
            base_size: 0,
            whole: true,
            overlay: None,
            changed: Ranges::default(),
            size: 0,
            inode: None,
        }
    }

    /// The file of `size` bytes in the cluster, read from it until
    /// written (by `inode` when known).
    fn existing(size: u64, inode: Option<u64>) -> Local {
        Local {
            base_size: size,
            whole: false,
            overlay: None,
            changed: Ranges::default(),
            size,
            inode,
        }
    }

    fn overlay(&mut self, path: &DfsPath) -> Result<&File> {
        if self.overlay.is_none() {
            self.overlay = Some(dfs_client::temporary_spool().map_err(|e| spool_error(path, e))?);
        }
        self.overlay
            .as_ref()
            .ok_or_else(|| Error::Invalid(format!("{path}: no local copy")))
    }

    /// Fills `buffer` with the file's bytes at `offset` (the caller keeps
    /// the range within the size): changes from the overlay, the rest from
    /// the base, zeros past it.
    fn read_exact(
        &self,
        reader: &mut Option<FileReader>,
        mut client: Option<&mut Client>,
        path: &DfsPath,
        offset: u64,
        buffer: &mut [u8],
    ) -> Result<()> {
        let end = offset + buffer.len() as u64;
        for (from, to, changed) in self.changed.segments(offset, end) {
            let part = &mut buffer[(from - offset) as usize..(to - offset) as usize];
            if changed || self.whole || from >= self.base_size {
                // Zeros past the base: a hole the file grew over.
                let overlay = if changed || self.whole {
                    self.overlay.as_ref()
                } else {
                    None
                };
                read_overlay(overlay, from, part).map_err(|e| spool_error(path, e))?;
                continue;
            }
            let stop = to.min(self.base_size);
            let (base, beyond) = part.split_at_mut((stop - from) as usize);
            beyond.fill(0);
            if reader.is_none() {
                let client = client.as_deref_mut().ok_or_else(|| {
                    Error::Invalid(format!("{path}: the file's old bytes are not at hand"))
                })?;
                *reader = Some(match self.inode {
                    Some(inode) => client.open_inode(path, inode)?,
                    None => client.open(path)?,
                });
            }
            let reader = reader
                .as_mut()
                .ok_or_else(|| Error::Invalid(format!("{path}: no reader")))?;
            let mut filled = 0;
            while filled < base.len() {
                let read = reader.read_at(from + filled as u64, &mut base[filled..])?;
                if read == 0 {
                    return Err(Error::Invalid(format!(
                        "{path}: the file ended at {} bytes while it was read ({} expected)",
                        from + filled as u64,
                        self.base_size
                    )));
                }
                filled += read;
            }
        }
        Ok(())
    }

    fn write(&mut self, path: &DfsPath, offset: u64, data: &[u8]) -> Result<()> {
        let end = offset + data.len() as u64;
        self.overlay(path)?
            .write_all_at(data, offset)
            .map_err(|e| spool_error(path, e))?;
        self.changed.insert(offset, end);
        self.size = self.size.max(end);
        Ok(())
    }

    fn truncate(&mut self, path: &DfsPath, size: u64) -> Result<()> {
        if size < self.size {
            self.changed.remove(size, u64::MAX);
            if let Some(overlay) = &self.overlay {
                overlay.set_len(size).map_err(|e| spool_error(path, e))?;
            }
            if !self.whole && size < self.base_size {
                // The base's bytes past the cut read as zeros if the file
                // grows again: the overlay holds them so (it ends here).
                self.changed.insert(size, self.base_size);
            }
        }
        self.size = size;
        Ok(())
    }

    /// Bytes of local space the changes take.
    fn held_bytes(&self) -> u64 {
        self.changed.covered_bytes(self.size)
    }

    /// After a commit: the cluster's file is what this handle had.
    fn committed(&mut self, path: &DfsPath) -> Result<()> {
        self.base_size = self.size;
        // An empty file stays whole: what is written next is all of it,
        // so a large file can still go on as a stream (a program that
        // closed a duplicate descriptor right after the create, as `dd`
        // does, committed it empty first).
        self.whole = self.size == 0;
        self.changed.clear();
        if let Some(overlay) = &self.overlay {
            overlay.set_len(0).map_err(|e| spool_error(path, e))?;
        }
        Ok(())
    }
}

/// Hands the file's bytes `from..to` to `sink` in order, a piece at a time.
/// `client` opens the base's reader if need be (None: only the overlay's
/// bytes are wanted).
fn each_piece(
    local: &Local,
    reader: &mut Option<FileReader>,
    mut client: Option<&mut Client>,
    path: &DfsPath,
    from: u64,
    to: u64,
    mut sink: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let mut buffer = vec![0u8; COPY_BYTES];
    let mut offset = from;
    while offset < to {
        let length = usize::try_from(to - offset)
            .unwrap_or(usize::MAX)
            .min(buffer.len());
        local.read_exact(
            reader,
            client.as_deref_mut(),
            path,
            offset,
            &mut buffer[..length],
        )?;
        sink(&buffer[..length])?;
        offset += length as u64;
    }
    Ok(())
}

impl CachedFile {
    /// A new (or truncated) file: empty, committed even if never written.
    pub fn new_file(
        path: DfsPath,
        mode: u32,
        overwrite: bool,
        after_commit: AttributeChange,
    ) -> Result<CachedFile> {
        Ok(CachedFile {
            path,
            mode,
            overwrite,
            contents: Contents::Local(Local::new_file()),
            reader: None,
            dirty: true,
            after_commit,
            poisoned: false,
            nodeid: 0,
            unlinked: false,
            nameless: false,
            path_gone: false,
            compactor: None,
            unsynced: None,
            inode: None,
        })
    }

    /// An existing file of `size` bytes, as it is until written.
    pub fn existing(
        path: DfsPath,
        size: u64,
        mode: u32,
        after_commit: AttributeChange,
    ) -> CachedFile {
        CachedFile {
            path,
            mode,
            overwrite: true,
            contents: Contents::Local(Local::existing(size, None)),
            reader: None,
            dirty: false,
            after_commit,
            poisoned: false,
            nodeid: 0,
            unlinked: false,
            nameless: false,
            path_gone: false,
            compactor: None,
            unsynced: None,
            inode: None,
        }
    }

    pub fn path(&self) -> &DfsPath {
        &self.path
    }

    /// The path the file is at here, while a name of it is that path:
    /// none once that name was removed (also when other names are left).
    pub fn named(&self) -> Option<&DfsPath> {
        (!self.unlinked && !self.nameless && !self.path_gone).then_some(&self.path)
    }

    /// The file was renamed: it commits to its new path.
    pub fn set_path(&mut self, path: DfsPath) {
        self.path = path;
    }

    /// The name it was opened by was removed while other names of it are
    /// left: it goes on by inode.
    pub fn lose_path(&mut self) {
        self.path_gone = true;
    }

    /// True when the removal of its name was prepared for (`unlink`,
    /// `set_nameless`, `lose_path`).
    pub fn lost_name(&self) -> bool {
        self.unlinked || self.nameless || self.path_gone
    }

    /// A removal prepared for did not happen: the file is at its path
    /// again; one held here whole is committed there again (a stream
    /// `unlink` abandoned stays abandoned).
    pub fn relink(&mut self) {
        if self.unlinked {
            self.unlinked = false;
            self.dirty = true;
        }
        self.nameless = false;
        self.path_gone = false;
    }

    /// Records the kernel's number for the file open here.
    pub fn set_nodeid(&mut self, nodeid: u64) {
        self.nodeid = nodeid;
    }

    /// The file's inode in the namespace: commits go to it.
    pub fn set_inode(&mut self, inode: u64) {
        self.inode = Some(inode);
        if let Contents::Local(local) = &mut self.contents {
            local.inode = Some(inode);
        }
    }

    /// Its last name was removed elsewhere or here while it is held open:
    /// the master keeps it, and it goes on by inode (see `LockSession::hold`).
    pub fn set_nameless(&mut self) {
        self.nameless = true;
    }

    pub fn inode(&self) -> Option<u64> {
        self.inode
    }

    pub fn set_compactor(&mut self, compactor: Compactor) {
        self.compactor = Some(compactor);
    }

    pub fn set_unsynced(&mut self, unsynced: Unsynced) {
        self.unsynced = Some(unsynced);
    }

    pub fn nodeid(&self) -> u64 {
        self.nodeid
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// What this mount holds of the file may be older than what another
    /// workstation committed since (a lock was granted on it, or it is
    /// opened once more, close-to-open): a file with no changes of this
    /// mount's own is read again, by its inode, as NFS does. True when it
    /// was (the kernel's pages of it may be old then).
    pub fn refresh(&mut self, client: &mut Client) -> Result<bool> {
        if self.dirty || self.unlinked || matches!(self.contents, Contents::Streaming(_)) {
            return Ok(false);
        }
        let status = match self.inode {
            Some(inode) => client.stat_inode(&self.path, inode)?,
            None => client.stat(&self.path)?,
        };
        self.contents = Contents::Local(Local::existing(status.size_bytes, self.inode));
        self.reader = None;
        Ok(true)
    }

    /// The file's name is being removed: its contents are held here whole
    /// (copied now if they were not yet) for the descriptors still open,
    /// and dropped at the last close. A stream already sent is abandoned.
    pub fn unlink(&mut self, client: &mut Client) -> Result<()> {
        if let Contents::Streaming(writer) = &mut self.contents {
            writer.poison();
            self.unlinked = true;
            return Ok(());
        }
        let Contents::Local(local) = &mut self.contents else {
            return Ok(());
        };
        if !local.whole {
            if local.size > SPOOL_BYTES_MAX {
                return Err(Error::Invalid(format!(
                    "{}: open, and too large to keep here once removed",
                    self.path
                )));
            }
            // Copies what the overlay lacks of the base into it.
            let missing: Vec<(u64, u64)> = local
                .changed
                .segments(0, local.base_size.min(local.size))
                .into_iter()
                .filter(|(_, _, changed)| !changed)
                .map(|(from, to, _)| (from, to))
                .collect();
            let mut buffer = vec![0u8; COPY_BYTES];
            for (from, to) in missing {
                let mut at = from;
                while at < to {
                    let length = usize::try_from(to - at)
                        .unwrap_or(usize::MAX)
                        .min(COPY_BYTES);
                    local.read_exact(
                        &mut self.reader,
                        Some(&mut *client),
                        &self.path,
                        at,
                        &mut buffer[..length],
                    )?;
                    local.write(&self.path, at, &buffer[..length])?;
                    at += length as u64;
                }
            }
            local.whole = true;
            local.base_size = 0;
        }
        self.unlinked = true;
        Ok(())
    }

    /// The owner and group the file gets at its commit, if set.
    pub fn owner(&self) -> Option<&str> {
        self.after_commit.owner.as_deref()
    }

    pub fn group(&self) -> Option<&str> {
        self.after_commit.group.as_deref()
    }

    pub fn mode(&self) -> u32 {
        self.after_commit.mode.unwrap_or(self.mode)
    }

    /// The size the file has as this handle sees it.
    pub fn size(&self) -> u64 {
        match &self.contents {
            Contents::Local(local) => local.size,
            Contents::Streaming(writer) => writer.written_bytes(),
        }
    }

    /// Attributes set while the file is open, applied once committed; a
    /// later change of one replaces an earlier.
    pub fn change_after_commit(&mut self, change: AttributeChange) {
        self.after_commit.merge(change);
        self.dirty = true;
    }

    pub fn read_at(
        &mut self,
        client: &mut Client,
        offset: u64,
        buffer: &mut [u8],
    ) -> std::result::Result<usize, Errno> {
        if matches!(self.contents, Contents::Streaming(_)) {
            // What was sent is in the cluster: committed, then read there.
            self.settle().map_err(|e| errno(&e))?;
        }
        let Contents::Local(local) = &self.contents else {
            return Err(Errno::EIO);
        };
        let end = local.size.min(offset.saturating_add(buffer.len() as u64));
        if offset >= end {
            return Ok(0);
        }
        let length = (end - offset) as usize;
        local
            .read_exact(
                &mut self.reader,
                Some(client),
                &self.path,
                offset,
                &mut buffer[..length],
            )
            .map_err(|e| errno(&e))?;
        Ok(length)
    }

    /// The attributes of the file as this handle has it, for a file the
    /// namespace does not show (new, or removed while open).
    pub fn attr(&self, owner: u32, group: u32) -> fuser::FileAttr {
        let now = std::time::SystemTime::now();
        let size = self.size();
        fuser::FileAttr {
            ino: fuser::INodeNo(self.nodeid),
            size,
            blocks: size.div_ceil(512),
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            kind: fuser::FileType::RegularFile,
            perm: (self.mode() & 0o7777) as u16,
            nlink: u32::from(!self.unlinked && !self.nameless),
            uid: owner,
            gid: group,
            rdev: 0,
            blksize: 1 << 20,
            flags: 0,
        }
    }

    /// A stream is committed and the file goes on as an existing one, so
    /// that it can be read back and written anywhere.
    fn settle(&mut self) -> Result<()> {
        let Contents::Streaming(writer) = &mut self.contents else {
            return Ok(());
        };
        if self.unlinked {
            return Err(Error::Invalid(format!(
                "{}: removed while open, and streamed to the cluster already",
                self.path
            )));
        }
        let inode = writer.commit()?;
        if self.inode.is_none() {
            self.inode = inode;
        }
        let size = writer.written_bytes();
        // Read back by inode, whatever the path names by then.
        self.contents = Contents::Local(Local::existing(size, self.inode));
        self.reader = None;
        self.overwrite = true;
        self.dirty = false;
        Ok(())
    }

    /// Sends what is held to a new stream; from now on writes come in order.
    fn start_streaming(
        &mut self,
        client: &mut Client,
        master: &str,
        credentials: &Credentials,
    ) -> Result<()> {
        let Contents::Local(local) = &self.contents else {
            return Ok(());
        };
        // Unlike a commit from here, durable as it is written: a large
        // file's data left for its fsync would all reach the disks then,
        // where written as it arrives it overlaps the transfer.
        let options = WriteOptions {
            overwrite: self.overwrite,
            mode: self.mode,
            ..WriteOptions::default()
        };
        let mut writer = WriteHandle::open(
            master,
            credentials.clone(),
            self.path.clone(),
            options,
            self.inode,
        )?;
        writer.change_after_commit(self.after_commit.clone());
        let mut offset = 0;
        each_piece(
            local,
            &mut self.reader,
            Some(client),
            &self.path,
            0,
            local.size,
            |piece| {
                writer.write(offset, piece)?;
                offset += piece.len() as u64;
                Ok(())
            },
        )?;
        self.contents = Contents::Streaming(writer);
        Ok(())
    }

    pub fn write(
        &mut self,
        client: &mut Client,
        master: &str,
        credentials: &Credentials,
        offset: u64,
        data: &[u8],
    ) -> std::result::Result<(), Errno> {
        if self.poisoned {
            return Err(Errno::EIO);
        }
        let end = offset.saturating_add(data.len() as u64);
        if end > FILE_BYTES_MAX {
            return Err(Errno::EFBIG);
        }
        if let Contents::Streaming(writer) = &self.contents {
            if offset < writer.written_bytes() {
                // Back into what was sent: committed, then changed in place.
                self.settle().map_err(|e| errno(&e))?;
            }
        }
        let start_stream = matches!(
            &self.contents,
            Contents::Local(local) if local.whole && !self.unlinked && end > SPOOL_BYTES_MAX && offset >= local.size
        );
        if start_stream {
            self.start_streaming(client, master, credentials)
                .map_err(|e| errno(&e))?;
        }
        self.dirty = true;
        let write_back = match &mut self.contents {
            Contents::Streaming(writer) => {
                return writer.write(offset, data).map_err(|e| errno(&e));
            }
            Contents::Local(local) => {
                local
                    .write(&self.path, offset, data)
                    .map_err(|e| errno(&e))?;
                !local.whole && local.held_bytes() > SPOOL_BYTES_MAX
            }
        };
        if write_back && !self.unlinked {
            // Local space stays bounded: the changes so far go now.
            self.commit(client).map_err(|e| errno(&e))?;
        }
        Ok(())
    }

    /// `truncate`/`ftruncate` to `size`, shorter or longer.
    pub fn truncate(&mut self, size: u64) -> std::result::Result<(), Errno> {
        if size == self.size() {
            return Ok(());
        }
        // Past what a file of the cluster can hold at all.
        if size > FILE_BYTES_MAX {
            return Err(Errno::EFBIG);
        }
        if let Contents::Streaming(writer) = &mut self.contents {
            if size > writer.written_bytes() {
                // Longer: zeros follow what was sent.
                self.dirty = true;
                return writer.write(size, &[]).map_err(|e| errno(&e));
            }
            self.settle().map_err(|e| errno(&e))?;
        }
        self.dirty = true;
        match &mut self.contents {
            Contents::Local(local) => local.truncate(&self.path, size).map_err(|e| errno(&e)),
            Contents::Streaming(_) => Err(Errno::EIO),
        }
    }

    /// A `close` of one of the file's descriptors: a file with changes is
    /// committed now, so that its error reaches the close and other
    /// workstations see it once the close returns (as NFS does); it stays
    /// open to more writes, committed again at the next close. A stream
    /// only waits until it took every write so far (it is committed when
    /// the last descriptor goes). True when it committed.
    pub fn flush(&mut self, client: &mut Client) -> Result<bool> {
        match &mut self.contents {
            Contents::Streaming(writer) => writer.check().map(|()| false),
            Contents::Local(_) if self.dirty && !self.unlinked => {
                self.commit(client).map(|()| true)
            }
            _ => Ok(false),
        }
    }

    /// Makes the cluster's file what this handle wrote: whole (a new file,
    /// or one changed everywhere) or as a patch of the ranges changed. The
    /// file stays open to more writes (and commits again); a stream ends
    /// and the file goes on as an existing one.
    pub fn commit(&mut self, client: &mut Client) -> Result<()> {
        if self.unlinked {
            return Ok(());
        }
        if self.poisoned {
            return Err(Error::Invalid(format!(
                "{}: not written: a write to it was refused, so it is left as it was",
                self.path
            )));
        }
        if !self.dirty {
            return Ok(());
        }
        if matches!(self.contents, Contents::Streaming(_)) {
            return self.settle();
        }
        let Contents::Local(local) = &mut self.contents else {
            return Ok(());
        };
        let path = &self.path;
        // Visible everywhere once committed, durable at fsync (`unsynced`).
        let options = WriteOptions {
            overwrite: self.overwrite,
            mode: self.mode,
            sync: false,
            ..WriteOptions::default()
        };
        fill_smallest_gaps(local, &mut self.reader, client, path)?;
        let ranges: Vec<FileRange> = local
            .changed
            .iter()
            .filter(|&(start, _)| start < local.size)
            .map(|(start, end)| FileRange {
                offset_bytes: start,
                length_bytes: end.min(local.size) - start,
            })
            .collect();
        let everything = local.size > 0
            && ranges.len() == 1
            && ranges[0].offset_bytes == 0
            && ranges[0].length_bytes == local.size;
        let whole = local.whole || everything;
        if whole && self.inode.is_none() {
            // A new file: made at its path, as a whole.
            let mut writer = client.create_for(path, options, local.size > 0)?;
            each_piece(
                local,
                &mut self.reader,
                None,
                path,
                0,
                local.size,
                |piece| {
                    writer
                        .write_all(piece)
                        .map_err(|e| Error::io(format!("write {path}"), e))
                },
            )?;
            let stats = writer.finish()?;
            // As the master answered the commit (looked up only when a
            // commit sent again found it done).
            self.inode = match stats.inode {
                Some(inode) => Some(inode),
                None => client.stat(path).ok().map(|status| status.inode),
            };
            // What is not changed here is read from this file from now on,
            // by inode: the path may name another file by then.
            local.inode = self.inode;
            unsynced::record(self.unsynced.as_ref(), self.inode, client, stats)?;
        } else if whole || !ranges.is_empty() || local.size != local.base_size {
            let ranges = if whole && local.size > 0 {
                vec![FileRange {
                    offset_bytes: 0,
                    length_bytes: local.size,
                }]
            } else if whole {
                Vec::new()
            } else {
                ranges
            };
            let has_data = ranges.iter().any(|range| range.length_bytes > 0);
            // A file that has an inode is changed as that file, whatever
            // its names are by now.
            let mut writer = match self.inode {
                Some(inode) => client.write_to(inode, path, options, has_data)?,
                None => client.create_for(path, options, has_data)?,
            };
            for range in &ranges {
                let end = range.offset_bytes + range.length_bytes;
                each_piece(
                    local,
                    &mut self.reader,
                    None,
                    path,
                    range.offset_bytes,
                    end,
                    |piece| {
                        writer
                            .write_all(piece)
                            .map_err(|e| Error::io(format!("write {path}"), e))
                    },
                )?;
            }
            // The writer was opened for the file's inode, when it has one.
            let stats = writer.finish_patch(ranges, local.size)?;
            unsynced::record(self.unsynced.as_ref(), self.inode, client, stats)?;
            // Compacted by path: only while the path names this file.
            if let (Some(compactor), Ok(status)) = (&self.compactor, client.stat(path)) {
                let whole_blocks = status.size_bytes / status.block_bytes.max(1) + 1;
                let here = self.inode.is_none_or(|inode| inode == status.inode);
                if here && dfs_client::compact::is_fragmented(status.block_count, whole_blocks) {
                    compactor.offer(path.clone());
                }
            }
        }
        // Kept: a later commit sets them again. Only while the path still
        // names this file (it may have been renamed or removed elsewhere).
        if self.after_commit != AttributeChange::default() {
            let here = match self.inode {
                None => true,
                Some(inode) => client.stat(path).is_ok_and(|status| status.inode == inode),
            };
            if here {
                client.set_attributes(path, self.after_commit.clone())?;
            }
        }
        local.committed(path)?;
        // The file's contents changed: read afresh.
        self.reader = None;
        // Once there, the next commit changes it as any writer would.
        self.overwrite = true;
        self.dirty = false;
        Ok(())
    }
}

/// More changed ranges than one patch carries: the smallest gaps between
/// them are filled with the bytes there (read from the base), so that the
/// ranges join.
fn fill_smallest_gaps(
    local: &mut Local,
    reader: &mut Option<FileReader>,
    client: &mut Client,
    path: &DfsPath,
) -> Result<()> {
    if local.whole || local.changed.len() <= PATCH_RANGES_MAX {
        return Ok(());
    }
    let ends: Vec<(u64, u64)> = local.changed.iter().collect();
    let mut gaps: Vec<(u64, u64)> = ends
        .windows(2)
        .map(|pair| (pair[0].1, pair[1].0))
        .filter(|&(from, _)| from < local.size)
        .collect();
    gaps.sort_by_key(|&(from, to)| (to - from, from));
    let surplus = local.changed.len() - PATCH_RANGES_MAX;
    let mut buffer = vec![0u8; COPY_BYTES];
    for &(from, to) in gaps.iter().take(surplus) {
        let to = to.min(local.size);
        let mut at = from;
        while at < to {
            let length = usize::try_from(to - at)
                .unwrap_or(usize::MAX)
                .min(COPY_BYTES);
            local.read_exact(reader, Some(&mut *client), path, at, &mut buffer[..length])?;
            local.write(path, at, &buffer[..length])?;
            at += length as u64;
        }
    }
    Ok(())
}
