//! A file open for writing, kept in a local spool (an unlinked temporary
//! file) while it is at most `SPOOL_BYTES_MAX`: written anywhere, read
//! back, truncated and grown as on a local disk, and sent to the cluster
//! whole when it is committed (its last close, or an fsync), as the file's
//! new contents in one atomic replace. An existing file is copied into the
//! spool at its first write or truncation; until then it reads as it is and
//! a handle that never writes changes nothing.
//!
//! A file that grows past the bound goes on as a stream instead: what the
//! spool holds is sent to a `WriteHandle`, and later writes must come in
//! order from there (gaps read as zeros); a write back into what was sent
//! abandons the file (`EOPNOTSUPP`), leaving the old one as it was. Random
//! writes to large files wait for the namespace's extent maps.
//!
//! Bounds: `SPOOL_BYTES_MAX` of local temporary space per file, and at most
//! `MOUNT_OPEN_WRITES_MAX` files written at once per mount.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

use dfs_client::client::AttributeChange;
use dfs_client::{Client, FileReader, WriteOptions};
use dfs_engine::limits::{BLOCK_BYTES_DEFAULT, FILE_BLOCKS_MAX, SPOOL_BYTES_MAX};
use dfs_engine::msg::Credentials;
use dfs_engine::path::DfsPath;
use dfs_engine::{Error, Result};
use fuser::Errno;

use crate::fs::errno;
use crate::writer::WriteHandle;

/// The largest file the mount writes: the most blocks of the size it uses.
const FILE_BYTES_MAX: u64 = FILE_BLOCKS_MAX as u64 * BLOCK_BYTES_DEFAULT;

/// Bytes moved between the spool and the cluster at a time.
const COPY_BYTES: usize = 1 << 20;

enum Contents {
    /// Nothing written yet: the existing file (`size` bytes) as it is.
    Old { size: u64 },
    /// The whole new contents, in the spool.
    Spooled { spool: File, size: u64 },
    /// Past the spool's bound: sent in order.
    Streaming(WriteHandle),
}

pub struct CachedFile {
    path: DfsPath,
    mode: u32,
    /// Replace a file that appears at the path meanwhile (not `O_EXCL`).
    overwrite: bool,
    contents: Contents,
    /// Reads the existing file before it is copied.
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
}

fn spool_error(path: &DfsPath, error: io::Error) -> Error {
    Error::io(
        format!("{path}: the local copy of a file being written"),
        error,
    )
}

/// The reader of the cluster's file at `path`, opened at its first use.
pub(crate) fn opened<'a>(
    slot: &'a mut Option<FileReader>,
    client: &mut Client,
    path: &DfsPath,
) -> Result<&'a mut FileReader> {
    if slot.is_none() {
        *slot = Some(client.open(path)?);
    }
    slot.as_mut()
        .ok_or_else(|| Error::Invalid(format!("{path}: no reader")))
}

/// Hands the bytes of `reader` from `from` to `to` to `sink` in order, a
/// piece at a time, with the offset of each; returns where it stopped
/// (short of `to` when the file ends first).
pub(crate) fn each_old_piece(
    reader: &mut FileReader,
    from: u64,
    to: u64,
    mut sink: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<u64> {
    let mut offset = from;
    let mut buffer = vec![0u8; COPY_BYTES];
    while offset < to {
        let want = usize::try_from(to - offset)
            .unwrap_or(usize::MAX)
            .min(buffer.len());
        let read = reader.read_at(offset, &mut buffer[..want])?;
        if read == 0 {
            break;
        }
        sink(offset, &buffer[..read])?;
        offset += read as u64;
    }
    Ok(offset)
}

/// Hands the spool's first `size` bytes to `sink` in order, a piece at a
/// time, with the offset of each.
fn each_piece(
    path: &DfsPath,
    spool: &File,
    size: u64,
    mut sink: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<()> {
    let mut offset = 0;
    let mut buffer = vec![0u8; COPY_BYTES];
    while offset < size {
        let length = usize::try_from(size - offset)
            .unwrap_or(usize::MAX)
            .min(buffer.len());
        spool
            .read_exact_at(&mut buffer[..length], offset)
            .map_err(|e| spool_error(path, e))?;
        sink(offset, &buffer[..length])?;
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
        let spool = dfs_client::temporary_spool().map_err(|e| spool_error(&path, e))?;
        Ok(CachedFile {
            path,
            mode,
            overwrite,
            contents: Contents::Spooled { spool, size: 0 },
            reader: None,
            dirty: true,
            after_commit,
            poisoned: false,
            nodeid: 0,
            unlinked: false,
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
            contents: Contents::Old { size },
            reader: None,
            dirty: false,
            after_commit,
            poisoned: false,
            nodeid: 0,
            unlinked: false,
        }
    }

    pub fn path(&self) -> &DfsPath {
        &self.path
    }

    /// Records the kernel's number for the file open here.
    pub fn set_nodeid(&mut self, nodeid: u64) {
        self.nodeid = nodeid;
    }

    pub fn nodeid(&self) -> u64 {
        self.nodeid
    }

    pub fn is_unlinked(&self) -> bool {
        self.unlinked
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// A lock was granted on the file: what this mount holds of it may be
    /// older than what another workstation committed under the lock, so an
    /// unchanged copy is dropped and the file read again (as NFS does).
    pub fn refresh(&mut self, client: &mut Client) -> Result<()> {
        if self.dirty || self.unlinked || matches!(self.contents, Contents::Streaming(_)) {
            return Ok(());
        }
        let status = client.stat(&self.path)?;
        self.contents = Contents::Old {
            size: status.size_bytes,
        };
        self.reader = None;
        Ok(())
    }

    /// The file's name is being removed: its contents stay here (copied
    /// now if they were not yet) for the descriptors still open, and are
    /// dropped at the last close. A stream already sent is abandoned.
    pub fn unlink(&mut self, client: &mut Client) -> Result<()> {
        if let Contents::Old { size } = self.contents {
            if !Self::fits(size) {
                return Err(Error::Invalid(format!(
                    "{}: open, and too large to keep here once removed",
                    self.path
                )));
            }
            self.load(client, u64::MAX)?;
        }
        if let Contents::Streaming(writer) = &mut self.contents {
            writer.poison();
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
            Contents::Old { size } | Contents::Spooled { size, .. } => *size,
            Contents::Streaming(writer) => writer.written_bytes(),
        }
    }

    /// Attributes set while the file is open, applied once committed; a
    /// later change of one replaces an earlier.
    pub fn change_after_commit(&mut self, change: AttributeChange) {
        self.after_commit.merge(change);
        self.dirty = true;
    }

    fn reader(&mut self, client: &mut Client) -> Result<&mut FileReader> {
        opened(&mut self.reader, client, &self.path)
    }

    pub fn read_at(
        &mut self,
        client: &mut Client,
        offset: u64,
        buffer: &mut [u8],
    ) -> std::result::Result<usize, Errno> {
        match &self.contents {
            Contents::Old { size } => {
                let size = *size;
                if offset >= size {
                    return Ok(0);
                }
                let reader = self.reader(client).map_err(|e| errno(&e))?;
                reader.read_at(offset, buffer).map_err(|e| errno(&e))
            }
            Contents::Spooled { spool, size } => {
                let end = (*size).min(offset.saturating_add(buffer.len() as u64));
                if offset >= end {
                    return Ok(0);
                }
                let length = (end - offset) as usize;
                spool
                    .read_exact_at(&mut buffer[..length], offset)
                    .map_err(|e| errno(&spool_error(&self.path, e)))?;
                Ok(length)
            }
            // What was sent is in the cluster, not here.
            Contents::Streaming(_) => Err(Errno::EOPNOTSUPP),
        }
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
            nlink: u32::from(!self.unlinked),
            uid: owner,
            gid: group,
            rdev: 0,
            blksize: 1 << 20,
            flags: 0,
        }
    }

    /// Copies the existing file into a new spool (at most `keep` bytes).
    fn load(&mut self, client: &mut Client, keep: u64) -> Result<()> {
        let Contents::Old { size } = self.contents else {
            return Ok(());
        };
        let spool = dfs_client::temporary_spool().map_err(|e| spool_error(&self.path, e))?;
        let end = size.min(keep);
        let path = &self.path;
        let reader = opened(&mut self.reader, client, path)?;
        let reached = each_old_piece(reader, 0, end, |offset, piece| {
            spool
                .write_all_at(piece, offset)
                .map_err(|e| spool_error(path, e))
        })?;
        if reached < end {
            return Err(Error::Invalid(format!(
                "{path}: ended at {reached} bytes while being copied ({size} expected)"
            )));
        }
        self.contents = Contents::Spooled { spool, size: end };
        Ok(())
    }

    /// Whether an existing file of this size is copied to be written; a
    /// larger one cannot be written here (see `Rewrite`).
    pub fn fits(size: u64) -> bool {
        size <= SPOOL_BYTES_MAX
    }

    /// Sends the spool to a new stream; from now on writes come in order.
    fn start_streaming(&mut self, master: &str, credentials: &Credentials) -> Result<()> {
        let Contents::Spooled { spool, size } = &self.contents else {
            return Ok(());
        };
        let options = WriteOptions {
            overwrite: self.overwrite,
            mode: self.mode,
            ..WriteOptions::default()
        };
        let mut writer =
            WriteHandle::open(master, credentials.clone(), self.path.clone(), options)?;
        writer.change_after_commit(self.after_commit.clone());
        each_piece(&self.path, spool, *size, |offset, piece| {
            writer.write(offset, piece)
        })?;
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
        self.load(client, u64::MAX).map_err(|e| errno(&e))?;
        if end > SPOOL_BYTES_MAX && matches!(self.contents, Contents::Spooled { .. }) {
            self.start_streaming(master, credentials)
                .map_err(|e| errno(&e))?;
        }
        self.dirty = true;
        match &mut self.contents {
            Contents::Spooled { spool, size } => {
                spool
                    .write_all_at(data, offset)
                    .map_err(|e| errno(&spool_error(&self.path, e)))?;
                *size = (*size).max(end);
                Ok(())
            }
            Contents::Streaming(writer) => {
                if offset < writer.written_bytes() || writer.is_committed() {
                    // Back into what was sent: the file is abandoned.
                    writer.poison();
                    self.poisoned = true;
                    return Err(Errno::EOPNOTSUPP);
                }
                writer.write(offset, data).map_err(|e| errno(&e))
            }
            Contents::Old { .. } => Err(Errno::EIO),
        }
    }

    /// `truncate`/`ftruncate` to `size`, shorter or longer.
    pub fn truncate(&mut self, client: &mut Client, size: u64) -> std::result::Result<(), Errno> {
        if size == self.size() {
            return Ok(());
        }
        // Past what a file of the cluster can hold at all.
        if size > FILE_BYTES_MAX {
            return Err(Errno::EFBIG);
        }
        if let Contents::Old { .. } = self.contents {
            self.load(client, size).map_err(|e| errno(&e))?;
        }
        self.dirty = true;
        match &mut self.contents {
            Contents::Spooled {
                spool,
                size: current,
            } if size <= SPOOL_BYTES_MAX => {
                spool
                    .set_len(size)
                    .map_err(|e| errno(&spool_error(&self.path, e)))?;
                *current = size;
                Ok(())
            }
            // Longer: zeros follow what was sent.
            Contents::Streaming(writer) if size > writer.written_bytes() => {
                writer.write(size, &[]).map_err(|e| errno(&e))
            }
            _ => Err(Errno::EOPNOTSUPP),
        }
    }

    /// A `close` of one of the file's descriptors: a spooled file with
    /// changes is committed now, so that its error reaches the close and
    /// other workstations see it once the close returns (as NFS does); it
    /// stays open to more writes, committed again at the next close. A
    /// stream only waits until it took every write so far (it is committed
    /// when the last descriptor goes). True when it committed.
    pub fn flush(&mut self, client: &mut Client) -> Result<bool> {
        match &mut self.contents {
            Contents::Streaming(writer) => writer.check().map(|()| false),
            Contents::Spooled { .. } if self.dirty && !self.unlinked => {
                self.commit(client).map(|()| true)
            }
            _ => Ok(false),
        }
    }

    /// Makes the cluster's file what this handle wrote. A spooled file
    /// stays open to more writes (and commits again); a stream ends.
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
        match &mut self.contents {
            Contents::Old { .. } => {}
            Contents::Spooled { spool, size } => {
                let options = WriteOptions {
                    overwrite: self.overwrite,
                    mode: self.mode,
                    ..WriteOptions::default()
                };
                let mut writer = client.create(&self.path, options)?;
                let path = &self.path;
                each_piece(path, spool, *size, |_, piece| {
                    writer
                        .write_all(piece)
                        .map_err(|e| Error::io(format!("write {path}"), e))
                })?;
                writer.finish()?;
                // Kept: a later commit replaces the file and sets them again.
                if self.after_commit != AttributeChange::default() {
                    client.set_attributes(&self.path, self.after_commit.clone())?;
                }
                // Once there, the next commit replaces it as any writer would.
                self.overwrite = true;
            }
            Contents::Streaming(writer) => writer.commit()?,
        }
        self.dirty = false;
        Ok(())
    }
}
