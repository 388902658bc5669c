//! An existing file opened for writing without `O_TRUNC` (`r+`, a lock
//! file, an editor saving in place, an append): it reads as it is until the
//! first write, which starts a rewrite of the whole file: the old bytes
//! before the write are copied first, then writes go on front to back
//! (the old bytes a forward jump passes over are copied too). When the
//! rewrite is committed, the part of the old file past what was written is
//! copied after it, unless the file was truncated to what was written. The
//! new file keeps the old one's owner and group. A handle that never writes
//! changes nothing (the file keeps its inode, which its locks are held on).
//!
//! A write behind what was written (into bytes written already) needs the
//! namespace's extent maps: `EOPNOTSUPP`, and the rewrite is abandoned.

use dfs_client::client::AttributeChange;
use dfs_client::{Client, FileReader, WriteOptions};
use dfs_engine::msg::Credentials;
use dfs_engine::path::DfsPath;
use dfs_engine::{Error, Result};
use fuser::Errno;

use crate::cache::{each_old_piece, opened};
use crate::writer::WriteHandle;

pub struct Rewrite {
    path: DfsPath,
    old_size: u64,
    mode: u32,
    /// The old file's owner and group, given back to the new one.
    keep: AttributeChange,
    reader: Option<FileReader>,
    writer: Option<WriteHandle>,
    /// Truncated to what was written: no old tail follows it.
    truncated: bool,
}

impl Rewrite {
    pub fn new(path: DfsPath, old_size: u64, mode: u32, keep: AttributeChange) -> Rewrite {
        Rewrite {
            path,
            old_size,
            mode,
            keep,
            reader: None,
            writer: None,
            truncated: false,
        }
    }

    /// The file's size as this handle sees it.
    pub fn size(&self) -> u64 {
        match &self.writer {
            None => self.old_size,
            Some(writer) if self.truncated => writer.written_bytes(),
            Some(writer) => writer.written_bytes().max(self.old_size),
        }
    }

    fn reader(&mut self, client: &mut Client) -> Result<&mut FileReader> {
        opened(&mut self.reader, client, &self.path)
    }

    /// Reads the old contents; not once a rewrite started.
    pub fn read_at(
        &mut self,
        client: &mut Client,
        offset: u64,
        buffer: &mut [u8],
    ) -> std::result::Result<usize, Errno> {
        if self.writer.is_some() {
            return Err(Errno::EOPNOTSUPP);
        }
        let reader = self.reader(client).map_err(|e| crate::fs::errno(&e))?;
        reader
            .read_at(offset, buffer)
            .map_err(|e| crate::fs::errno(&e))
    }

    fn start(&mut self, master: &str, credentials: &Credentials) -> Result<&mut WriteHandle> {
        if self.writer.is_none() {
            let options = WriteOptions {
                overwrite: true,
                mode: self.mode,
                ..WriteOptions::default()
            };
            let mut writer =
                WriteHandle::open(master, credentials.clone(), self.path.clone(), options)?;
            writer.change_after_commit(self.keep.clone());
            self.writer = Some(writer);
        }
        self.writer
            .as_mut()
            .ok_or_else(|| Error::Invalid(format!("{}: no writer", self.path)))
    }

    pub fn write(
        &mut self,
        master: &str,
        credentials: &Credentials,
        offset: u64,
        data: &[u8],
    ) -> std::result::Result<(), Errno> {
        let written = self.writer.as_ref().map_or(0, WriteHandle::written_bytes);
        let committed = self.writer.as_ref().is_some_and(WriteHandle::is_committed);
        if offset < written || committed {
            if let Some(writer) = &mut self.writer {
                writer.poison();
            }
            return Err(Errno::EOPNOTSUPP);
        }
        self.start(master, credentials)
            .map_err(|e| crate::fs::errno(&e))?;
        if offset > written && written < self.old_size {
            // (a client of its own: the mount's is borrowed by the caller)
            let mut client = Client::connect_as(master, credentials.clone())
                .map_err(|e| crate::fs::errno(&e))?;
            self.copy_old(&mut client, offset.min(self.old_size))
                .map_err(|e| crate::fs::errno(&e))?;
        }
        match &mut self.writer {
            Some(writer) => writer.write(offset, data).map_err(|e| crate::fs::errno(&e)),
            None => Err(Errno::EIO),
        }
    }

    /// Copies the old bytes from what was written up to `end`.
    fn copy_old(&mut self, client: &mut Client, end: u64) -> Result<()> {
        let Some(writer) = &mut self.writer else {
            return Ok(());
        };
        let from = writer.written_bytes();
        let reader = opened(&mut self.reader, client, &self.path)?;
        each_old_piece(reader, from, end, |offset, piece| {
            writer.write(offset, piece)
        })
        .map(drop)
    }

    /// `ftruncate`: to the size written so far (nothing: to 0), or to the
    /// size the file has.
    pub fn truncate(
        &mut self,
        master: &str,
        credentials: &Credentials,
        size: u64,
    ) -> std::result::Result<(), Errno> {
        if size == self.size() {
            return Ok(());
        }
        let written = self.writer.as_ref().map_or(0, WriteHandle::written_bytes);
        if size != written {
            return Err(Errno::EOPNOTSUPP);
        }
        self.start(master, credentials)
            .map_err(|e| crate::fs::errno(&e))?;
        self.truncated = true;
        Ok(())
    }

    /// Waits until the writer took every write so far.
    pub fn check(&mut self) -> Result<()> {
        match &mut self.writer {
            Some(writer) => writer.check(),
            None => Ok(()),
        }
    }

    /// Commits a rewrite, the old tail copied after what was written.
    pub fn commit(&mut self, client: &mut Client) -> Result<()> {
        let Some(written) = self
            .writer
            .as_ref()
            .filter(|writer| !writer.is_committed())
            .map(WriteHandle::written_bytes)
        else {
            return Ok(());
        };
        if !self.truncated && written < self.old_size {
            self.copy_old(client, self.old_size)?;
        }
        match &mut self.writer {
            Some(writer) => writer.commit(),
            None => Ok(()),
        }
    }
}
