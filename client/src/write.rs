//! Writing a file: `OpenWrite`, then per block `AllocateBlock`, a pipeline
//! write to the allocated minions (`WriteBlock`, chunks as `Data` frames,
//! `SealBlock`), `CommitBlock`; finally `CloseWrite`. Nothing is visible at the
//! path until `CloseWrite`, and a write that is given up is aborted.
//!
//! A small file costs two master round trips, not four: `put` asks
//! `OpenWrite` for the first block too, and a sealed block is committed
//! lazily, by the next `AllocateBlock`'s caller or by `CloseWrite`, which
//! carries the last block's commit.
//!
//! Bytes stream to the first minion as they come, a chunk at a time: memory
//! is one chunk plus socket buffers, never a block. So a block whose pipeline
//! fails can be sent again only if its bytes can be read again: `Client::put`
//! takes a `BlockSource`, which a local file can rewind and a pipe cannot.
//! `FileWriter` (`std::io::Write`) cannot go back at all; both recover from a
//! minion that fails before the block's first byte was sent. `Spooled`
//! makes a pipe an input that can go back, by keeping the current block's
//! bytes in an unlinked temporary file (`dfs put -` does).
//!
//! An input that can be read at any offset (`BlockSource::ranges`: a
//! `LocalFile`) of more than one block is written with several blocks in
//! flight by `parallel_write`. Pipes and `FileWriter` keep one block in
//! flight: a second block under way would need a second spool (a pipe) or
//! give up the resend of the first chunk (`FileWriter`), for a gain the
//! callers that need speed (`dfs put FILE`, `dfs-cp`) already get.
//!
//! A write can also close as a patch of the file at its path
//! (`FileWriter::finish_patch`, `PatchWrite`): its bytes, in order, replace
//! ranges of the file, which then has the size given (cut, or extended by
//! a hole that reads as zeros), and keeps its inode. The file becomes a
//! list of pieces (parts of blocks, holes) that readers follow; nothing of
//! it is read or copied. `Client::truncate` is a patch of nothing.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};

use dfs_engine::crc::CrcAppender;
use dfs_engine::limits::{
    BLOCK_BYTES_MAX, CHUNK_BYTES, PATCH_RANGES_MAX, REPLICATION_MAX,
    WRITE_BLOCKS_IN_FLIGHT_DEFAULT, WRITE_BLOCKS_IN_FLIGHT_MAX, WRITE_BLOCK_ATTEMPTS_MAX,
};
use dfs_engine::msg::{
    AllocatedBlock, BlockCommit, BlockId, Credentials, EntryKind, FileRange, Generation,
    MasterRequest, MasterResponse, MinionAddress, MinionId, MinionRequest, MinionResponse,
    RemoteError, ReplicaId,
};
use dfs_engine::path::DfsPath;
use dfs_engine::rpc::Connection;
use dfs_engine::{Error, Result};

use crate::client::{unexpected, Client};
use crate::master::Resend;
use crate::parallel_write::{self, RangeSource};
use crate::transfer::{explain_send_failure, minion_message, receive_answer};

const CHUNK_LENGTH_BYTES: u64 = CHUNK_BYTES as u64;

/// How a file is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteOptions {
    /// Replicas per block; None: the cluster default.
    pub replication: Option<u8>,
    /// Block size; None: the cluster default.
    pub block_bytes: Option<u64>,
    /// Replace a file that exists at the path.
    pub overwrite: bool,
    /// Minions acknowledge a block only once it is on stable storage.
    pub sync: bool,
    /// Permission bits of the new file.
    pub mode: u32,
    /// The new file's modification time (ms since the epoch); None: the
    /// time it is closed.
    pub modified_ns: Option<u64>,
    /// Blocks `Client::put` streams at once, each through its own pipeline,
    /// when the input can be read at any offset (`BlockSource::ranges`);
    /// 1 to `WRITE_BLOCKS_IN_FLIGHT_MAX`. Other inputs send one at a time.
    pub blocks_in_flight: usize,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            replication: None,
            block_bytes: None,
            overwrite: false,
            sync: true,
            mode: 0o644,
            modified_ns: None,
            blocks_in_flight: WRITE_BLOCKS_IN_FLIGHT_DEFAULT,
        }
    }
}

impl WriteOptions {
    /// Refuses what the master would refuse, before anything is sent.
    pub fn validate(&self) -> Result<()> {
        if let Some(replication) = self.replication {
            check_replication(u64::from(replication))?;
        }
        if let Some(block_bytes) = self.block_bytes {
            check_block_bytes(&block_bytes.to_string(), block_bytes)?;
        }
        check_blocks_in_flight(self.blocks_in_flight as u64)?;
        Ok(())
    }
}

/// A replication asked for by a user: 1 to `REPLICATION_MAX`.
pub fn check_replication(replication: u64) -> Result<u8> {
    u8::try_from(replication)
        .ok()
        .filter(|&r| (1..=REPLICATION_MAX).contains(&r))
        .ok_or_else(|| {
            Error::Invalid(format!(
                "replication {replication}: must be between 1 and {REPLICATION_MAX}"
            ))
        })
}

/// Blocks in flight asked for by a user: 1 to `WRITE_BLOCKS_IN_FLIGHT_MAX`.
pub fn check_blocks_in_flight(blocks: u64) -> Result<usize> {
    usize::try_from(blocks)
        .ok()
        .filter(|&b| (1..=WRITE_BLOCKS_IN_FLIGHT_MAX).contains(&b))
        .ok_or_else(|| {
            Error::Invalid(format!(
                "blocks in flight {blocks}: must be between 1 and {WRITE_BLOCKS_IN_FLIGHT_MAX}"
            ))
        })
}

/// A block size asked for by a user (`shown` as they wrote it): 1 byte to 2 GiB.
pub fn check_block_bytes(shown: &str, block_bytes: u64) -> Result<u64> {
    if (1..=BLOCK_BYTES_MAX).contains(&block_bytes) {
        Ok(block_bytes)
    } else {
        Err(Error::Invalid(format!(
            "block size {shown}: must be between 1 byte and 2 GiB"
        )))
    }
}

/// One block of a finished write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenBlock {
    pub id: BlockId,
    pub length_bytes: u64,
    /// Minions that stored the block.
    pub replica_count: usize,
    /// A `FileWriter`'s block written without `sync`: its replica and the
    /// members that stored it, for `Client::make_durable`. None for a
    /// durable block (and for `put`'s block-parallel writes, which keep no
    /// such record).
    pub unsynced: Option<UnsyncedReplica>,
}

/// A block stored without `sync`, and the minions that hold it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsyncedReplica {
    pub replica: ReplicaId,
    pub members: Vec<MinionAddress>,
}

/// What a finished write stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub length_bytes: u64,
    pub blocks: Vec<WrittenBlock>,
    /// The inode of the file committed (as the master answered the
    /// commit, or as found when a commit sent again was done by an earlier
    /// copy); None before the commit.
    pub inode: Option<u64>,
}

/// The input of `Client::put`: bytes read in order, and, when the input can,
/// read again from an earlier offset so a block can go to a fresh pipeline.
pub trait BlockSource {
    /// Reads the next bytes, as `std::io::Read::read`.
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize>;
    /// Goes back to `offset_bytes` from the start of the input, an offset
    /// already read. `Ok(false)`: this input cannot go back.
    fn rewind(&mut self, offset_bytes: u64) -> io::Result<bool>;
    /// The bytes before `offset_bytes` are stored for good and never asked
    /// for again (a block was committed).
    fn forget_before(&mut self, _offset_bytes: u64) {}
    /// The whole input as ranges any thread can read at once, and its
    /// length, when it can be read that way (a local regular file):
    /// `Client::put` then keeps several blocks in flight. Asked before the
    /// first read.
    fn ranges(&self) -> Option<(&dyn RangeSource, u64)> {
        None
    }
}

/// An input that can go back: a local file.
pub struct Seekable<R> {
    inner: R,
    /// Where the input started in `inner`.
    start_bytes: u64,
}

impl<R: Read + Seek> Seekable<R> {
    pub fn new(mut inner: R) -> io::Result<Seekable<R>> {
        let start_bytes = inner.stream_position()?;
        Ok(Seekable { inner, start_bytes })
    }
}

impl<R: Read + Seek> BlockSource for Seekable<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buffer)
    }

    fn rewind(&mut self, offset_bytes: u64) -> io::Result<bool> {
        let position = self
            .start_bytes
            .checked_add(offset_bytes)
            .ok_or_else(|| io::Error::other("rewind offset overflows"))?;
        self.inner.seek(SeekFrom::Start(position))?;
        Ok(true)
    }
}

/// An input that can go back only because it keeps what it read: the bytes
/// of the current block are copied to an unlinked temporary file as they
/// are read, so a block whose first minion dies can be sent again from it.
/// For standard input and pipes: memory stays one chunk, the block's bytes
/// wait in the page cache (or on the temporary file's disk).
pub struct Spooled<R> {
    inner: R,
    spool: File,
    /// Input offset of the spool's first byte.
    spool_start_bytes: u64,
    /// Bytes in the spool.
    spool_bytes: u64,
    /// While replaying: the input offset read next from the spool.
    replay_bytes: Option<u64>,
}

impl<R: Read> Spooled<R> {
    /// Spools in a new unlinked file of the temporary directory.
    pub fn new(inner: R) -> io::Result<Spooled<R>> {
        Ok(Spooled::with_spool(inner, temporary_spool()?))
    }

    /// Spools in `spool`, an empty file open for reading and writing.
    pub fn with_spool(inner: R, spool: File) -> Spooled<R> {
        Spooled {
            inner,
            spool,
            spool_start_bytes: 0,
            spool_bytes: 0,
            replay_bytes: None,
        }
    }
}

/// A new unlinked file in the temporary directory, for `Spooled`.
pub fn temporary_spool() -> io::Result<File> {
    let directory = std::env::temp_dir();
    OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(&directory)
        .map_err(|error| {
            io::Error::new(
                error.kind(),
                format!(
                    "make a temporary file in {} to keep the input's current block: {error}",
                    directory.display()
                ),
            )
        })
}

impl<R: Read> BlockSource for Spooled<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        if let Some(offset) = self.replay_bytes {
            let end = self.spool_start_bytes + self.spool_bytes;
            if offset < end {
                let wanted = buffer
                    .len()
                    .min(usize::try_from(end - offset).unwrap_or(usize::MAX));
                let count = self
                    .spool
                    .read_at(&mut buffer[..wanted], offset - self.spool_start_bytes)?;
                if count == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the temporary copy of the input ended early",
                    ));
                }
                self.replay_bytes = Some(offset + count as u64);
                return Ok(count);
            }
            self.replay_bytes = None;
        }
        let count = self.inner.read(buffer)?;
        self.spool
            .write_all_at(&buffer[..count], self.spool_bytes)?;
        self.spool_bytes += count as u64;
        Ok(count)
    }

    fn rewind(&mut self, offset_bytes: u64) -> io::Result<bool> {
        if offset_bytes < self.spool_start_bytes
            || offset_bytes > self.spool_start_bytes + self.spool_bytes
        {
            return Ok(false);
        }
        self.replay_bytes = Some(offset_bytes);
        Ok(true)
    }

    fn forget_before(&mut self, offset_bytes: u64) {
        // Only whole spools are dropped: the writer forgets at block ends,
        // when everything read so far is stored.
        let end = self.spool_start_bytes + self.spool_bytes;
        if offset_bytes == end && self.replay_bytes.is_none_or(|replay| replay == end) {
            self.replay_bytes = None;
            self.spool_start_bytes = offset_bytes;
            self.spool_bytes = 0;
            // Best effort: a spool that cannot shrink only uses more disk.
            let _ = self.spool.set_len(0);
        }
    }
}

/// An input that cannot go back: standard input, a pipe.
pub struct Unseekable<R>(pub R);

impl<R: Read> BlockSource for Unseekable<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        self.0.read(buffer)
    }

    fn rewind(&mut self, _offset_bytes: u64) -> io::Result<bool> {
        Ok(false)
    }
}

impl Client {
    /// Starts writing a file; bytes go in through `std::io::Write`, and
    /// `FileWriter::finish` makes the file visible (or
    /// `FileWriter::finish_patch` changes the file at the path with them).
    pub fn create(&mut self, path: &DfsPath, options: WriteOptions) -> Result<FileWriter<'_>> {
        self.create_for(path, options, false)
    }

    /// `create` for a writer that knows whether it `has_data`: if so, the
    /// first block is allocated with the open, one master round trip fewer
    /// (a write that then ends empty gives it back at its close).
    pub fn create_for(
        &mut self,
        path: &DfsPath,
        options: WriteOptions,
        has_data: bool,
    ) -> Result<FileWriter<'_>> {
        let session = Session::open(self, path, None, options, has_data)?;
        Ok(FileWriter::new(session))
    }

    /// `create_for` of the file `inode`, whatever its names are now (also
    /// none, while a session holds it open; `path` is the name the caller
    /// knows it by, for messages), with its replication and block size
    /// unless `options` set others (`OpenInodeWrite`): `finish` replaces
    /// its contents with what was written and `finish_patch` changes them.
    /// Nothing at any path is looked at, so the write commits whatever
    /// became of the name it was opened by. Sets no modification time.
    pub fn write_to(
        &mut self,
        inode: u64,
        path: &DfsPath,
        options: WriteOptions,
        has_data: bool,
    ) -> Result<FileWriter<'_>> {
        let session = Session::open(self, path, Some(inode), options, has_data)?;
        Ok(FileWriter::new(session))
    }

    /// Cuts or extends the file at `path` to `size_bytes`, as one patch of
    /// nothing (`PatchWrite`): the bytes past the new size go, and an
    /// extension is a hole that reads as zeros and is stored nowhere. It
    /// keeps its inode, names, owner, group and mode, and a reader sees the
    /// old contents or the new (one opened before fails rather than mix
    /// them). No data is read or copied.
    pub fn truncate(&mut self, path: &DfsPath, size_bytes: u64) -> Result<()> {
        let status = self.stat(path)?;
        if status.kind != EntryKind::File {
            return Err(Error::Invalid(format!("{path}: not a file")));
        }
        if size_bytes == status.size_bytes {
            return Ok(());
        }
        let options = WriteOptions {
            replication: Some(status.replication),
            block_bytes: Some(status.block_bytes),
            overwrite: true,
            mode: status.mode,
            ..WriteOptions::default()
        };
        let writer = self.create(path, options)?;
        writer.finish_patch(Vec::new(), size_bytes).map(drop)
    }

    /// Writes a whole file from `source` and makes it visible. A block whose
    /// pipeline fails is sent to a fresh one if `source` can rewind. A
    /// source read by ranges keeps `options.blocks_in_flight` blocks in
    /// flight.
    pub fn put(
        &mut self,
        path: &DfsPath,
        options: WriteOptions,
        source: &mut dyn BlockSource,
    ) -> Result<WriteStats> {
        let length_bytes = match source.ranges() {
            Some((_, length_bytes)) if options.blocks_in_flight > 1 && length_bytes > 0 => {
                length_bytes
            }
            _ => {
                // One byte is read before the write opens: an empty input
                // needs no block, any other gets its first block with the open.
                let mut probe = Probed::new(source)?;
                let allocate_first_block = probe.has_data();
                let session = Session::open(self, path, None, options, allocate_first_block)?;
                return send_blocks(session, &mut probe);
            }
        };
        let opened = self.open_write(path, &options, true)?;
        if length_bytes <= opened.block_bytes {
            // One block: nothing to overlap, and the sequential writer
            // keeps its minion connection for the next file.
            let session = Session::with_opened(self, path, options, opened);
            return send_blocks(session, source);
        }
        match source.ranges() {
            Some((ranges, _)) => {
                parallel_write::put_opened(self, path, options, opened, ranges, length_bytes)
            }
            None => {
                let session = Session::with_opened(self, path, options, opened);
                send_blocks(session, source)
            }
        }
    }
}

/// Sends `source` block by block, one block in flight, through `session`,
/// and closes it. A block whose pipeline fails is sent to a fresh one if
/// `source` can rewind.
fn send_blocks(mut session: Session<'_>, source: &mut dyn BlockSource) -> Result<WriteStats> {
    let mut chunk = Vec::with_capacity(CHUNK_BYTES as usize);
    let mut block_start_bytes = 0u64;
    loop {
        let first_chunk_bytes = CHUNK_LENGTH_BYTES.min(session.block_bytes);
        fill_chunk(source, &mut chunk, first_chunk_bytes)?;
        if chunk.is_empty() {
            break;
        }
        let mut attempts = 0u32;
        let mut last_failure: Option<String> = None;
        let length_bytes = loop {
            attempts += 1;
            let failure = match send_block(&mut session, source, &mut chunk) {
                Ok(length_bytes) => break length_bytes,
                Err(BlockError::Fatal(error)) => return Err(after_failure(error, last_failure)),
                Err(BlockError::Minion(failure)) => failure,
            };
            let message = session.failure_message(&failure);
            last_failure = Some(message.clone());
            session.exclude(&failure.excluded);
            if attempts >= WRITE_BLOCK_ATTEMPTS_MAX {
                return Err(gave_up(attempts, message));
            }
            if !failure.first_chunk_intact {
                let rewound = source
                    .rewind(block_start_bytes)
                    .map_err(|error| Error::io("rewind the input", error))?;
                if !rewound {
                    return Err(Error::Invalid(format!(
                        "{message}; the input cannot be read again to send the block to other minions"
                    )));
                }
                fill_chunk(source, &mut chunk, first_chunk_bytes)?;
                if chunk.is_empty() {
                    return Err(Error::Invalid(format!(
                        "{}: the input ended early when read again",
                        session.path
                    )));
                }
            }
        };
        block_start_bytes += length_bytes;
        source.forget_before(block_start_bytes);
    }
    session.close(None)
}

/// An input whose first byte was read ahead, to learn whether it is empty.
struct Probed<'s> {
    first: Option<u8>,
    inner: &'s mut dyn BlockSource,
}

impl<'s> Probed<'s> {
    fn new(inner: &'s mut dyn BlockSource) -> Result<Probed<'s>> {
        let mut byte = [0u8; 1];
        let first = loop {
            match inner.read(&mut byte) {
                Ok(0) => break None,
                Ok(_) => break Some(byte[0]),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(Error::io("read the input", error)),
            }
        };
        Ok(Probed { first, inner })
    }

    fn has_data(&self) -> bool {
        self.first.is_some()
    }
}

impl BlockSource for Probed<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        match (self.first.take(), buffer.first_mut()) {
            (Some(byte), Some(slot)) => {
                *slot = byte;
                Ok(1)
            }
            (first, _) => {
                self.first = first;
                self.inner.read(buffer)
            }
        }
    }

    fn rewind(&mut self, offset_bytes: u64) -> io::Result<bool> {
        // Offsets count from the input's start, the probed byte included.
        self.first = None;
        self.inner.rewind(offset_bytes)
    }

    fn forget_before(&mut self, offset_bytes: u64) {
        self.inner.forget_before(offset_bytes);
    }
}

/// Sends one block whose first chunk is in `chunk`, reading the rest from
/// `source`; returns its length once it is committed.
fn send_block(
    session: &mut Session<'_>,
    source: &mut dyn BlockSource,
    chunk: &mut Vec<u8>,
) -> Result<u64, BlockError> {
    let mut length_bytes = 0u64;
    loop {
        if let Err(error) = session.send_chunk(chunk) {
            return Err(error.with_first_chunk_intact(length_bytes == 0));
        }
        length_bytes += chunk.len() as u64;
        let room_bytes = session.block_bytes - length_bytes;
        if room_bytes == 0 {
            break;
        }
        fill_chunk(source, chunk, CHUNK_LENGTH_BYTES.min(room_bytes)).map_err(BlockError::Fatal)?;
        if chunk.is_empty() {
            break;
        }
    }
    // The chunk buffer no longer holds the block's first chunk.
    session
        .end_block()
        .map_err(|error| error.with_first_chunk_intact(false))?;
    Ok(length_bytes)
}

/// Reads up to `length_bytes` into `chunk` (cleared first); shorter only at
/// the end of the input.
fn fill_chunk(source: &mut dyn BlockSource, chunk: &mut Vec<u8>, length_bytes: u64) -> Result<()> {
    let length = usize::try_from(length_bytes.min(CHUNK_LENGTH_BYTES)).unwrap_or(0);
    chunk.clear();
    chunk.resize(length, 0);
    let mut filled = 0;
    while filled < length {
        match source.read(&mut chunk[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => {
                chunk.clear();
                return Err(Error::io("read the input", error));
            }
        }
    }
    chunk.truncate(filled);
    Ok(())
}

fn gave_up(attempts: u32, message: String) -> Error {
    Error::Invalid(format!("{message} (gave up after {attempts} pipelines)"))
}

/// `error`, which ended a write after a block failed as `last_failure`
/// says, with that said too: "no live minion can take a new block" alone
/// hides why the minions were passed over.
fn after_failure(error: Error, last_failure: Option<String>) -> Error {
    match (error, last_failure) {
        (Error::Remote(refused), Some(failure)) => Error::Remote(RemoteError::new(
            refused.kind,
            format!("{} (after {failure})", refused.message),
        )),
        (error, _) => error,
    }
}

/// A file being written through `std::io::Write`. `finish` makes it visible;
/// dropping it unfinished aborts the write.
///
/// `flush` sends nothing early: chunks are whole (`CHUNK_BYTES`) except the
/// last of each block, so bytes wait for their chunk to fill.
pub struct FileWriter<'a> {
    session: Session<'a>,
    /// Bytes taken through `write`.
    written_bytes: u64,
    /// Bytes of the current chunk, not yet sent.
    chunk: Vec<u8>,
    /// Bytes of the current block handed to its pipeline.
    block_sent_bytes: u64,
    /// Pipelines that failed the current block.
    attempts: u32,
    /// Why the write cannot go on; every later call fails with it.
    failed: Option<String>,
}

impl<'a> FileWriter<'a> {
    fn new(session: Session<'a>) -> FileWriter<'a> {
        FileWriter {
            session,
            written_bytes: 0,
            chunk: Vec::with_capacity(CHUNK_BYTES as usize),
            block_sent_bytes: 0,
            attempts: 0,
            failed: None,
        }
    }

    /// Sends what is left, commits the last block and makes the file visible.
    pub fn finish(mut self) -> Result<WriteStats> {
        self.send_rest()?;
        self.session.close(None)
    }

    /// Sends what is left, commits the last block and closes the write as
    /// a patch of the file at its path (`PatchWrite`; the write was opened
    /// with `overwrite`): the bytes written, in order, replace the file's
    /// `ranges` (in the order given, each `length_bytes` of what was
    /// written; they must add up to all of it), and the file then has
    /// `size_bytes`: cut, or extended by a hole that reads as zeros. No
    /// file at the path: one is made, with holes where nothing was
    /// written. At most `PATCH_RANGES_MAX` ranges; ranges that do not add
    /// up are refused before anything is sent, and the write is aborted.
    pub fn finish_patch(self, ranges: Vec<FileRange>, size_bytes: u64) -> Result<WriteStats> {
        self.finish_patch_of(ranges, size_bytes, PatchTarget::default())
    }

    /// `finish_patch` of the file `target` names, on its condition
    /// (`AlreadyExists` when the version is not the one given, `NotFound`
    /// when the inode is gone; see `PatchWrite`).
    pub fn finish_patch_of(
        mut self,
        ranges: Vec<FileRange>,
        size_bytes: u64,
        target: PatchTarget,
    ) -> Result<WriteStats> {
        self.check_failed()?;
        check_patch(&self.session.path, &ranges, self.written_bytes)?;
        self.send_rest()?;
        self.session.close(Some(Patch {
            ranges,
            size_bytes,
            if_version: target.if_version,
            inode: target.inode,
        }))
    }

    /// Sends the last chunk and ends the last block.
    fn send_rest(&mut self) -> Result<()> {
        self.check_failed()?;
        if !self.chunk.is_empty() {
            let chunk = std::mem::take(&mut self.chunk);
            self.send_chunk(&chunk)?;
        }
        if self.block_sent_bytes > 0 {
            self.end_block()?;
        }
        Ok(())
    }

    fn check_failed(&self) -> Result<()> {
        match &self.failed {
            Some(message) => Err(Error::Invalid(message.clone())),
            None => Ok(()),
        }
    }

    /// Bytes that complete the current chunk: a whole chunk, or less at the
    /// end of a block.
    fn chunk_limit_bytes(&self) -> u64 {
        CHUNK_LENGTH_BYTES.min(self.session.block_bytes - self.block_sent_bytes)
    }

    /// Sends one chunk of the current block, ending the block when it is
    /// full. The block's first chunk can go to a fresh pipeline when its
    /// minion fails; later chunks cannot, as earlier ones are gone.
    fn send_chunk(&mut self, chunk: &[u8]) -> Result<()> {
        loop {
            let first_chunk = self.block_sent_bytes == 0;
            let failure = match self.session.send_chunk(chunk) {
                Ok(()) => break,
                Err(BlockError::Fatal(error)) => return Err(self.fail(error)),
                Err(BlockError::Minion(failure)) => failure,
            };
            self.attempts += 1;
            let message = self.session.failure_message(&failure);
            self.session.exclude(&failure.excluded);
            if !first_chunk {
                return Err(self.fail(cannot_resend(message)));
            }
            if self.attempts >= WRITE_BLOCK_ATTEMPTS_MAX {
                return Err(self.fail(gave_up(self.attempts, message)));
            }
        }
        self.block_sent_bytes += chunk.len() as u64;
        if self.block_sent_bytes == self.session.block_bytes {
            self.end_block()?;
        }
        Ok(())
    }

    fn end_block(&mut self) -> Result<()> {
        self.block_sent_bytes = 0;
        self.attempts = 0;
        match self.session.end_block() {
            Ok(()) => Ok(()),
            Err(BlockError::Fatal(error)) => Err(self.fail(error)),
            Err(BlockError::Minion(failure)) => {
                let message = self.session.failure_message(&failure);
                Err(self.fail(cannot_resend(message)))
            }
        }
    }

    fn fail(&mut self, error: Error) -> Error {
        self.failed = Some(error.to_string());
        error
    }
}

/// A patch's ranges must be at most `PATCH_RANGES_MAX`, each within the
/// file offsets, and add up to the `written_bytes` that replace them.
fn check_patch(path: &DfsPath, ranges: &[FileRange], written_bytes: u64) -> Result<()> {
    if ranges.len() > PATCH_RANGES_MAX {
        return Err(Error::Invalid(format!(
            "{path}: a patch of {} ranges: at most {PATCH_RANGES_MAX} go in one",
            ranges.len()
        )));
    }
    let mut total_bytes = 0u64;
    for range in ranges {
        let end = range.offset_bytes.checked_add(range.length_bytes);
        let (Some(_), Some(sum)) = (end, total_bytes.checked_add(range.length_bytes)) else {
            return Err(Error::Invalid(format!(
                "{path}: a patch's range of {} bytes at offset {} passes the largest offset",
                range.length_bytes, range.offset_bytes
            )));
        };
        total_bytes = sum;
    }
    if total_bytes != written_bytes {
        return Err(Error::Invalid(format!(
            "{path}: the patch's {} ranges add up to {total_bytes} bytes, but {written_bytes} bytes were written",
            ranges.len()
        )));
    }
    Ok(())
}

fn cannot_resend(message: String) -> Error {
    Error::Invalid(format!(
        "{message}; the block's bytes were already sent and cannot be sent again"
    ))
}

impl Write for FileWriter<'_> {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        self.check_failed().map_err(io::Error::other)?;
        if buffer.is_empty() {
            return Ok(0);
        }
        let limit = usize::try_from(self.chunk_limit_bytes()).unwrap_or(usize::MAX);
        if self.chunk.is_empty() && buffer.len() >= limit {
            // A whole chunk straight from the caller's buffer, without a copy.
            self.send_chunk(&buffer[..limit])
                .map_err(io::Error::other)?;
            self.written_bytes += limit as u64;
            return Ok(limit);
        }
        let taken = buffer.len().min(limit - self.chunk.len());
        self.chunk.extend_from_slice(&buffer[..taken]);
        self.written_bytes += taken as u64;
        if self.chunk.len() == limit {
            let chunk = std::mem::take(&mut self.chunk);
            let result = self.send_chunk(&chunk);
            self.chunk = chunk;
            self.chunk.clear();
            result.map_err(io::Error::other)?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.check_failed().map_err(io::Error::other)
    }
}

/// A minion failed a block: the block can go to a fresh pipeline that avoids
/// `excluded`.
#[derive(Debug)]
struct MinionFailure {
    block: BlockId,
    minion: MinionAddress,
    error: Error,
    excluded: Vec<MinionId>,
    /// The chunk buffer still holds the block's first chunk, so the block can
    /// start again without reading the input again.
    first_chunk_intact: bool,
}

#[derive(Debug)]
enum BlockError {
    Minion(MinionFailure),
    /// Anything else (the master, the input) ends the write.
    Fatal(Error),
}

impl BlockError {
    fn with_first_chunk_intact(self, intact: bool) -> BlockError {
        match self {
            BlockError::Minion(failure) => BlockError::Minion(MinionFailure {
                first_chunk_intact: intact,
                ..failure
            }),
            fatal => fatal,
        }
    }
}

impl From<Error> for BlockError {
    fn from(error: Error) -> Self {
        BlockError::Fatal(error)
    }
}

/// The block being sent: its pipeline's first minion and the connection to it.
struct OpenBlock {
    block: BlockId,
    generation: Generation,
    first: MinionAddress,
    /// The whole pipeline, `first` at its head.
    targets: Vec<MinionAddress>,
    connection: Connection,
    write_request_id: u64,
    sent_bytes: u64,
    /// CRC32C of the bytes sent so far, combined from the chunks' CRCs.
    sent_crc32c: CrcAppender,
}

/// One open write on the master, block by block. Dropped before `close`, it
/// aborts the write.
struct Session<'a> {
    client: &'a mut Client,
    path: DfsPath,
    write: u64,
    /// The file written, for a write by inode.
    inode: Option<u64>,
    block_bytes: u64,
    sync: bool,
    /// Minions that failed this write; never chosen again for it.
    excluded: Vec<MinionId>,
    current: Option<OpenBlock>,
    /// Allocated with the open, not used yet.
    first_block: Option<AllocatedBlock>,
    /// Sealed, not committed yet: the next block's start or the close
    /// commits it.
    uncommitted: Option<(BlockCommit, WrittenBlock)>,
    modified_ns: Option<u64>,
    stats: WriteStats,
    closed: bool,
    buffer: Vec<u8>,
}

/// The master calls of a write, shared by `FileWriter`, `put` and the
/// block-parallel writer (`parallel_write`).
impl Client {
    /// Opens a write at `path`: its id and block size, and the first block
    /// when asked for. An answer that cannot be used
    /// aborts the write it opened.
    pub(crate) fn open_write(
        &mut self,
        path: &DfsPath,
        options: &WriteOptions,
        allocate_first_block: bool,
    ) -> Result<OpenedWrite> {
        self.open_write_of(path, None, options, allocate_first_block)
    }

    /// `open_write`, of the file `inode` when given (`OpenInodeWrite`).
    pub(crate) fn open_write_of(
        &mut self,
        path: &DfsPath,
        inode: Option<u64>,
        options: &WriteOptions,
        allocate_first_block: bool,
    ) -> Result<OpenedWrite> {
        options.validate()?;
        if inode.is_some() && options.modified_ns.is_some() {
            return Err(Error::Invalid(format!(
                "{path}: a write by inode sets no modification time"
            )));
        }
        let request = match inode {
            None => MasterRequest::OpenWrite {
                path: path.to_string(),
                replication: options.replication,
                block_bytes: options.block_bytes,
                overwrite: options.overwrite,
                mode: options.mode,
                allocate_first_block,
            },
            Some(inode) => MasterRequest::OpenInodeWrite {
                inode,
                path: path.to_string(),
                replication: options.replication,
                block_bytes: options.block_bytes,
                allocate_first_block,
            },
        };
        // A second open after a lost answer leaves an extra write open,
        // which the master aborts in time: harmless.
        match self.call_read_only(request)? {
            MasterResponse::WriteOpened {
                write,
                replication,
                block_bytes,
                first_block,
            } => {
                let unusable = if !(1..=BLOCK_BYTES_MAX).contains(&block_bytes)
                    || !(1..=REPLICATION_MAX).contains(&replication)
                {
                    Some(format!(
                        "master opened a write of {path} with block size {block_bytes} and replication {replication}"
                    ))
                } else {
                    match &first_block {
                        Some(first) if first.targets.is_empty() => Some(format!(
                            "master allocated {} of {path} without minions",
                            first.block
                        )),
                        Some(_) if !allocate_first_block => Some(format!(
                            "master allocated a first block of {path} that was not asked for"
                        )),
                        _ => None,
                    }
                };
                if let Some(message) = unusable {
                    // Best effort: the master also aborts the writes of a
                    // connection that closes.
                    let _ = self.call_read_only(MasterRequest::AbortWrite { write });
                    return Err(Error::Protocol(message));
                }
                Ok(OpenedWrite {
                    write,
                    inode,
                    block_bytes,
                    first_block,
                })
            }
            other => Err(unexpected("OpenWrite", &other)),
        }
    }

    /// The next block of `write` (of the file at `path`) with its
    /// generation and its pipeline, never empty.
    pub(crate) fn allocate_block(
        &mut self,
        path: &DfsPath,
        write: u64,
        excluded: &[MinionId],
    ) -> Result<AllocatedBlock> {
        let request = MasterRequest::AllocateBlock {
            write,
            excluded: excluded.to_vec(),
        };
        // An allocation whose answer was lost is freed at the close.
        let allocated = match self.call_read_only(request)? {
            MasterResponse::BlockAllocated {
                block,
                generation,
                targets,
                token,
            } => AllocatedBlock {
                block,
                generation,
                targets,
                token,
            },
            other => return Err(unexpected("AllocateBlock", &other)),
        };
        if allocated.targets.is_empty() {
            self.abandon_block(write, allocated.block)?;
            return Err(Error::Protocol(format!(
                "master allocated {} of {path} without minions",
                allocated.block
            )));
        }
        Ok(allocated)
    }

    /// Gives up an allocated block that was not committed.
    /// Logs a sealed block as the next block of `write`. Applied once
    /// however often it comes: sent again while the master restarts.
    pub(crate) fn commit_block(&mut self, write: u64, commit: &BlockCommit) -> Result<()> {
        let request = MasterRequest::CommitBlock {
            write,
            block: commit.block,
            generation: commit.generation,
            length_bytes: commit.length_bytes,
            replicas: commit.replicas.clone(),
            crc32c: commit.crc32c,
        };
        self.call_expect_ok_with("CommitBlock", request, Resend::Always)
    }

    /// Aborts `write`, best effort, for a writer given up or dropped: the
    /// master also collects writes whose client vanished.
    pub(crate) fn abort_write_quietly(&mut self, write: u64) {
        let _ = self.call_once(MasterRequest::AbortWrite { write });
    }

    pub(crate) fn abandon_block(&mut self, write: u64, block: BlockId) -> Result<()> {
        let request = MasterRequest::AbandonBlock { write, block };
        self.call_expect_ok_with("AbandonBlock", request, Resend::Always)
    }

    /// Closes `write` of the file at `path` (of the file `inode`, for a
    /// write by inode), committing `last_block` first, whose blocks were
    /// `committed` before: the file's inode. Sent again while the master
    /// restarts; when an earlier copy may have closed it already and this
    /// one is refused, the file is looked at: holding exactly these
    /// blocks, it was closed.
    pub(crate) fn close_write(
        &mut self,
        (path, inode): (&DfsPath, Option<u64>),
        write: u64,
        last_block: Option<BlockCommit>,
        modified_ns: Option<u64>,
        committed: &[BlockId],
    ) -> Result<Option<u64>> {
        let mut expected = committed.to_vec();
        expected.extend(last_block.as_ref().map(|commit| commit.block));
        let request = MasterRequest::CloseWrite {
            write,
            last_block,
            modified_ns,
        };
        let answer = self.call_with(request, Resend::Always)?;
        match answer.response {
            MasterResponse::Closed { inode } => Ok(Some(inode)),
            MasterResponse::Error(error) if answer.resent => {
                let closed = self.get_blocks_of(path, inode).ok().filter(|file| {
                    file.blocks
                        .iter()
                        .map(|block| block.id)
                        .eq(expected.iter().copied())
                });
                match closed {
                    Some(file) => Ok(Some(file.status.inode)),
                    None => Err(Error::Remote(error)),
                }
            }
            MasterResponse::Error(error) => Err(Error::Remote(error)),
            other => Err(unexpected("CloseWrite", &other)),
        }
    }

    /// Closes `write` as a patch of the file at `path` (of the file the
    /// patch names, or `opened` for a write by inode), committing
    /// `last_block` first, whose blocks were `committed` before: the
    /// file's inode. Sent again while the master restarts; when an earlier
    /// copy may have closed it already and this one is refused, the file
    /// is looked at: the patch was made when its pieces use every block of
    /// the write (for a write of no blocks, when the file has the patch's
    /// size).
    fn patch_write(
        &mut self,
        (path, opened): (&DfsPath, Option<u64>),
        write: u64,
        last_block: Option<BlockCommit>,
        patch: Patch,
        modified_ns: Option<u64>,
        committed: &[BlockId],
    ) -> Result<Option<u64>> {
        let mut expected = committed.to_vec();
        expected.extend(last_block.as_ref().map(|commit| commit.block));
        let Patch {
            ranges,
            size_bytes,
            if_version,
            inode,
        } = patch;
        let file = inode.or(opened);
        let request = MasterRequest::PatchWrite {
            write,
            last_block,
            ranges,
            size_bytes,
            modified_ns,
            if_version,
            inode,
        };
        let answer = self.call_with(request, Resend::Always)?;
        match answer.response {
            MasterResponse::Closed { inode } => Ok(Some(inode)),
            MasterResponse::Error(error) if answer.resent => {
                let made = if expected.is_empty() {
                    let status = match file {
                        Some(inode) => self.stat_inode(path, inode),
                        None => self.stat(path),
                    };
                    status.ok().filter(|status| {
                        status.kind == EntryKind::File && status.size_bytes == size_bytes
                    })
                } else {
                    self.get_blocks_of(path, file).ok().and_then(|found| {
                        let used: std::collections::HashSet<BlockId> =
                            found.blocks.iter().map(|piece| piece.id).collect();
                        expected
                            .iter()
                            .all(|block| used.contains(block))
                            .then_some(found.status)
                    })
                };
                match made {
                    Some(status) => Ok(Some(status.inode)),
                    None => Err(Error::Remote(error)),
                }
            }
            MasterResponse::Error(error) => Err(Error::Remote(error)),
            other => Err(unexpected("PatchWrite", &other)),
        }
    }
}

/// How a patch changes a file: the ranges a write's bytes replace, and
/// the file's size after.
struct Patch {
    ranges: Vec<FileRange>,
    size_bytes: u64,
    if_version: Option<u64>,
    inode: Option<u64>,
}

/// Which file a patch changes, and on what condition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PatchTarget {
    /// Only while its contents are this version (see `PatchWrite`).
    pub if_version: Option<u64>,
    /// The file with this inode, whatever its names are now; None: the one
    /// at the write's path.
    pub inode: Option<u64>,
}

/// What `OpenWrite` answered, checked.
pub(crate) struct OpenedWrite {
    pub(crate) write: u64,
    /// The file written, for a write by inode (`OpenInodeWrite`).
    pub(crate) inode: Option<u64>,
    pub(crate) block_bytes: u64,
    pub(crate) first_block: Option<AllocatedBlock>,
}

impl<'a> Session<'a> {
    fn open(
        client: &'a mut Client,
        path: &DfsPath,
        inode: Option<u64>,
        options: WriteOptions,
        allocate_first_block: bool,
    ) -> Result<Session<'a>> {
        let opened = client.open_write_of(path, inode, &options, allocate_first_block)?;
        Ok(Session::with_opened(client, path, options, opened))
    }

    /// The session of a write `client` opened.
    fn with_opened(
        client: &'a mut Client,
        path: &DfsPath,
        options: WriteOptions,
        opened: OpenedWrite,
    ) -> Session<'a> {
        let OpenedWrite {
            write,
            inode,
            block_bytes,
            first_block,
        } = opened;
        Session {
            client,
            path: path.clone(),
            write,
            inode,
            block_bytes,
            sync: options.sync,
            excluded: Vec::new(),
            current: None,
            first_block,
            uncommitted: None,
            modified_ns: options.modified_ns,
            stats: WriteStats::default(),
            closed: false,
            buffer: Vec::new(),
        }
    }

    fn exclude(&mut self, minions: &[MinionId]) {
        for minion in minions {
            if !self.excluded.contains(minion) {
                self.excluded.push(*minion);
            }
        }
    }

    fn failure_message(&self, failure: &MinionFailure) -> String {
        format!(
            "{}: block {} ({}): {}",
            self.path,
            self.stats.blocks.len(),
            failure.block,
            minion_message(&failure.minion, &failure.error)
        )
    }

    /// Allocates the next block and connects to its first minion. A minion
    /// that cannot be reached fails the block before its first byte.
    fn start_block(&mut self) -> Result<(), BlockError> {
        self.commit_sealed()?;
        let AllocatedBlock {
            block,
            generation,
            targets,
            token,
        } = match self.first_block.take() {
            Some(allocated) => allocated,
            None => self
                .client
                .allocate_block(&self.path, self.write, &self.excluded)?,
        };
        let Some(first) = targets.first().cloned() else {
            return Err(
                Error::Protocol(format!("master allocated {block} without minions")).into(),
            );
        };
        let opened = self
            .client
            .minions
            .connect_pipeline(&first.address, targets.len())
            .and_then(|mut connection| {
                let credentials = Credentials {
                    token,
                    ..self.client.credentials().clone()
                };
                let write_request_id = connection.send(
                    &credentials,
                    MinionRequest::WriteBlock {
                        block,
                        generation,
                        downstream: targets[1..].to_vec(),
                        sync: self.sync,
                    },
                )?;
                Ok((connection, write_request_id))
            });
        match opened {
            Ok((connection, write_request_id)) => {
                self.current = Some(OpenBlock {
                    block,
                    generation,
                    first,
                    targets,
                    connection,
                    write_request_id,
                    sent_bytes: 0,
                    sent_crc32c: CrcAppender::new(),
                });
                Ok(())
            }
            Err(error) => {
                self.abandon(block)?;
                Err(minion_failure(block, first, error, Vec::new()))
            }
        }
    }

    /// Sends one chunk of the current block, starting a block if none is open.
    fn send_chunk(&mut self, chunk: &[u8]) -> Result<(), BlockError> {
        if self.current.is_none() {
            self.start_block()?;
        }
        let Some(open) = self.current.as_mut() else {
            return Err(Error::Invalid("no block open".into()).into());
        };
        let chunk_crc = crc32c::crc32c(chunk);
        match open.connection.send_data(chunk, chunk_crc) {
            Ok(()) => {
                open.sent_bytes += chunk.len() as u64;
                open.sent_crc32c.append(chunk_crc, chunk.len() as u64);
                Ok(())
            }
            Err(error) => Err(self.drop_block(error)),
        }
    }

    /// Seals the current block on its pipeline and commits it.
    fn end_block(&mut self) -> Result<(), BlockError> {
        let Some(mut open) = self.current.take() else {
            return Ok(());
        };
        let sealed = open
            .connection
            .send(
                self.client.credentials(),
                MinionRequest::SealBlock {
                    block: open.block,
                    length_bytes: open.sent_bytes,
                },
            )
            .and_then(|seal_request_id| open.connection.flush().map(|()| seal_request_id))
            .and_then(|seal_request_id| {
                receive_answer(
                    &mut open.connection,
                    &[open.write_request_id, seal_request_id],
                    &mut self.buffer,
                )
            });
        let (stored, failed) = match sealed {
            Ok(MinionResponse::Sealed { stored, failed }) => (stored, failed),
            Ok(other) => {
                self.current = Some(open);
                return Err(self.drop_block(unexpected("SealBlock", &other)));
            }
            Err(error) => {
                self.current = Some(open);
                return Err(self.drop_block(error));
            }
        };
        if stored.is_empty() {
            self.abandon(open.block)?;
            let mut excluded: Vec<MinionId> = failed
                .iter()
                .filter(|f| f.is_own_failure())
                .map(|f| f.minion.id)
                .collect();
            excluded.push(open.first.id);
            let error = match failed.first() {
                Some(failure) => Error::Remote(failure.error.clone()),
                None => Error::Invalid("no minion of the pipeline stored the block".into()),
            };
            return Err(minion_failure(open.block, open.first, error, excluded));
        }
        // The exchange is complete: the connection can carry the next block.
        self.client.minions.keep(open.connection);
        // A member that failed this block is not asked again in this write,
        // so later blocks get a full pipeline.
        let failed_ids: Vec<MinionId> = failed
            .iter()
            .filter(|f| f.is_own_failure())
            .map(|f| f.minion.id)
            .collect();
        self.exclude(&failed_ids);
        for failure in &failed {
            let error = Error::Remote(failure.error.clone());
            self.client.warn(&format!(
                "{}: {}",
                open.block,
                minion_message(&failure.minion, &error)
            ));
        }
        let unsynced = (!self.sync).then(|| UnsyncedReplica {
            replica: ReplicaId {
                block: open.block,
                generation: open.generation,
            },
            members: open
                .targets
                .iter()
                .filter(|member| stored.contains(&member.id))
                .cloned()
                .collect(),
        });
        let written = WrittenBlock {
            id: open.block,
            length_bytes: open.sent_bytes,
            replica_count: stored.len(),
            unsynced,
        };
        let commit = BlockCommit {
            block: open.block,
            generation: open.generation,
            length_bytes: open.sent_bytes,
            replicas: stored,
            crc32c: open.sent_crc32c.crc(),
        };
        self.uncommitted = Some((commit, written));
        Ok(())
    }

    /// Commits the block sealed last, if it is not yet.
    fn commit_sealed(&mut self) -> Result<()> {
        let Some((commit, written)) = self.uncommitted.take() else {
            return Ok(());
        };
        self.client.commit_block(self.write, &commit)?;
        self.note_committed(written);
        Ok(())
    }

    fn note_committed(&mut self, written: WrittenBlock) {
        self.stats.length_bytes += written.length_bytes;
        self.stats.blocks.push(written);
    }

    /// Gives up the current block after its first minion failed with `error`.
    fn drop_block(&mut self, error: Error) -> BlockError {
        let Some(mut open) = self.current.take() else {
            return BlockError::Fatal(error);
        };
        let error = explain_send_failure(&mut open.connection, error);
        // Closing the connection makes the pipeline drop its partial copies.
        drop(open.connection);
        if let Err(master_error) = self.abandon(open.block) {
            return BlockError::Fatal(master_error);
        }
        minion_failure(open.block, open.first, error, Vec::new())
    }

    fn abandon(&mut self, block: BlockId) -> Result<()> {
        self.client.abandon_block(self.write, block)
    }

    /// Commits the last block and makes the file visible, or, with
    /// `patch`, changes the file at the path with the write's bytes.
    fn close(mut self, patch: Option<Patch>) -> Result<WriteStats> {
        if let Some(first) = self.first_block.take() {
            // Allocated with the open but never needed.
            self.abandon(first.block)?;
        }
        let (last_block, written) = match self.uncommitted.take() {
            Some((commit, written)) => (Some(commit), Some(written)),
            None => (None, None),
        };
        let committed: Vec<BlockId> = self.stats.blocks.iter().map(|block| block.id).collect();
        self.stats.inode = match patch {
            None => self.client.close_write(
                (&self.path, self.inode),
                self.write,
                last_block,
                self.modified_ns,
                &committed,
            )?,
            Some(patch) => self.client.patch_write(
                (&self.path, self.inode),
                self.write,
                last_block,
                patch,
                self.modified_ns,
                &committed,
            )?,
        };
        self.closed = true;
        if let Some(written) = written {
            self.note_committed(written);
        }
        Ok(std::mem::take(&mut self.stats))
    }
}

fn minion_failure(
    block: BlockId,
    minion: MinionAddress,
    error: Error,
    mut excluded: Vec<MinionId>,
) -> BlockError {
    if !excluded.contains(&minion.id) {
        excluded.push(minion.id);
    }
    BlockError::Minion(MinionFailure {
        block,
        minion,
        error,
        excluded,
        first_chunk_intact: false,
    })
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        if !self.closed {
            self.client.abort_write_quietly(self.write);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_checks() {
        assert!(check_replication(1).is_ok());
        assert!(check_replication(16).is_ok());
        for (value, message) in [
            (0, "replication 0: must be between 1 and 16"),
            (17, "replication 17: must be between 1 and 16"),
            (300, "replication 300: must be between 1 and 16"),
        ] {
            assert_eq!(
                check_replication(value).expect_err("refused").to_string(),
                message
            );
        }
        assert_eq!(check_block_bytes("1", 1).expect("ok"), 1);
        assert_eq!(check_block_bytes("2G", 2 << 30).expect("ok"), 2 << 30);
        for (shown, value, message) in [
            ("0", 0, "block size 0: must be between 1 byte and 2 GiB"),
            (
                "3G",
                3 << 30,
                "block size 3G: must be between 1 byte and 2 GiB",
            ),
        ] {
            assert_eq!(
                check_block_bytes(shown, value)
                    .expect_err("refused")
                    .to_string(),
                message
            );
        }
        let options = WriteOptions {
            replication: Some(0),
            ..WriteOptions::default()
        };
        assert!(options.validate().is_err());
        assert!(WriteOptions::default().validate().is_ok());
    }

    #[test]
    fn a_patch_needs_ranges_that_add_up_to_what_was_written() {
        let path = DfsPath::parse("/f").expect("path");
        let range = |offset_bytes, length_bytes| FileRange {
            offset_bytes,
            length_bytes,
        };
        check_patch(&path, &[], 0).expect("a truncate");
        check_patch(&path, &[range(10, 5), range(0, 7)], 12).expect("two ranges");
        let error = check_patch(&path, &[range(10, 5), range(0, 7)], 13).expect_err("short");
        assert_eq!(
            error.to_string(),
            "/f: the patch's 2 ranges add up to 12 bytes, but 13 bytes were written"
        );
        assert!(check_patch(&path, &[], 1).is_err(), "no ranges for a byte");
        assert!(check_patch(&path, &[range(u64::MAX, 1)], 1).is_err());
        assert!(check_patch(&path, &[range(0, u64::MAX), range(0, 1)], 0).is_err());
        let many = vec![range(0, 1); PATCH_RANGES_MAX + 1];
        let error = check_patch(&path, &many, many.len() as u64).expect_err("too many");
        assert!(error.to_string().contains("at most 2048"), "{error}");
        check_patch(&path, &many[1..], PATCH_RANGES_MAX as u64).expect("as many as allowed");
    }

    #[test]
    fn fill_chunk_reads_whole_chunks_from_short_reads() {
        /// Returns at most 1000 bytes per read.
        struct Trickle(io::Cursor<Vec<u8>>);
        impl BlockSource for Trickle {
            fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
                let n = buffer.len().min(1000);
                self.0.read(&mut buffer[..n])
            }
            fn rewind(&mut self, _offset_bytes: u64) -> io::Result<bool> {
                Ok(false)
            }
        }
        let data: Vec<u8> = (0..150_000u32).map(|i| i as u8).collect();
        let mut source = Trickle(io::Cursor::new(data.clone()));
        let mut chunk = Vec::new();
        let mut lengths = Vec::new();
        let mut collected = Vec::new();
        loop {
            fill_chunk(&mut source, &mut chunk, CHUNK_LENGTH_BYTES).expect("fill");
            if chunk.is_empty() {
                break;
            }
            lengths.push(chunk.len());
            collected.extend_from_slice(&chunk);
        }
        assert_eq!(lengths, vec![65536, 65536, 150_000 - 131_072]);
        assert_eq!(collected, data);
    }

    #[test]
    fn spooled_sources_replay_the_current_block_and_forget_stored_ones() {
        let data: Vec<u8> = (0..100u8).collect();
        let mut source = Spooled::new(&data[..]).expect("a temporary file");
        let mut buffer = [0u8; 30];
        assert_eq!(source.read(&mut buffer).expect("read"), 30);
        assert_eq!(source.read(&mut buffer[..10]).expect("read"), 10);
        // Back to 5: bytes 5..40 come from the spool, then the input goes on.
        assert!(source.rewind(5).expect("rewind"));
        let mut replayed = Vec::new();
        while replayed.len() < 45 {
            let wanted = 45 - replayed.len();
            let count = source.read(&mut buffer[..wanted.min(30)]).expect("read");
            replayed.extend_from_slice(&buffer[..count]);
        }
        assert_eq!(replayed, data[5..50]);
        // A block of 50 is stored: its bytes are gone, later ones replay.
        source.forget_before(50);
        assert!(!source.rewind(10).expect("rewind"), "forgotten bytes");
        assert_eq!(source.read(&mut buffer[..20]).expect("read"), 20);
        assert!(source.rewind(50).expect("rewind"));
        let mut again = [0u8; 20];
        assert_eq!(source.read(&mut again).expect("read"), 20);
        assert_eq!(again[..], data[50..70]);
        // Forgetting in the middle of what was read keeps everything.
        source.forget_before(60);
        assert!(source.rewind(50).expect("rewind"));
    }

    #[test]
    fn seekable_sources_rewind_relative_to_their_start() {
        let mut cursor = io::Cursor::new(b"xxabcdef".to_vec());
        cursor.set_position(2);
        let mut source = Seekable::new(cursor).expect("position");
        let mut buffer = [0u8; 4];
        assert_eq!(source.read(&mut buffer).expect("read"), 4);
        assert_eq!(&buffer, b"abcd");
        assert!(source.rewind(1).expect("rewind"));
        assert_eq!(source.read(&mut buffer).expect("read"), 4);
        assert_eq!(&buffer, b"bcde");
        let mut pipe = Unseekable(&b"abc"[..]);
        assert!(!pipe.rewind(0).expect("rewind"));
    }
}
