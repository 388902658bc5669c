//! Reading a file: its blocks come from the master a page at a time as the
//! read reaches them (`BlockList`); each block is streamed from the first
//! replica that works, and no byte is handed out before it is checked
//! against something the master vouches for. A replica first sends the
//! CRC32C of each of its chunks; they must combine to the block CRC32C the
//! master recorded at commit, and only then is that list trusted: every
//! chunk that follows must match its entry. When a replica fails
//! (connection, timeout, protocol, checksum, error answer) the read goes on
//! from the next replica at the first byte not yet handed out; when all
//! failed, the block's locations are asked for once more (they may have
//! moved) before the read gives up.
//!
//! A replica whose bytes or checksums are wrong (or that its minion says is
//! corrupt) is reported to the master, best effort, so it gets replaced.
//!
//! A reader of a whole file reads ahead (`readahead`) once it has handed
//! out a few MiB in one run: the blocks after the one it hands out stream
//! meanwhile, each through a one-block reader of its own with these same
//! rules.
//!
//! A reader also reads at any offset (`FileReader::read_at`, `Seek`): a
//! move drops the stream and the read-ahead and sets the reader on the
//! block and byte it lands on, as if every byte before it had been handed
//! out; from there the same code streams, checks and falls back as for a
//! read from the start (a stream starts mid-block as a resume on the next
//! replica does). A `read_at` that lands elsewhere than where the reader
//! stands asks its replica for the chunks its range covers only; one that
//! goes on where the last one ended asks for the rest of the block, as a
//! front-to-back read does, and keeps that stream for the calls after it.
//! Only the bytes handed out in one run (since the last move) start the
//! read-ahead, so reads here and there never fetch whole blocks ahead.

use std::collections::VecDeque;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dfs_engine::block_format;
use dfs_engine::crc;
use dfs_engine::limits::{
    CHUNK_BYTES, CONNECT_TIMEOUT_MS, GET_BLOCKS_PAGE_MAX, READ_AHEAD_AFTER_BYTES,
};
use dfs_engine::msg::{
    BadReplica, Credentials, EntryKind, EntryStatus, ErrorKind, LocatedBlock, MasterRequest,
    MasterResponse, MinionId, MinionRequest, MinionResponse,
};
use dfs_engine::path::DfsPath;
use dfs_engine::rpc::Connection;
use dfs_engine::sync;
use dfs_engine::wire::{self, FrameKind};
use dfs_engine::{Error, Result};

use crate::client::{unexpected, Client, FileBlocks};
use crate::master::{MasterLink, Resend};
use crate::readahead::{self, Piece, ReadAhead};
use crate::transfer::{minion_message, receive_answer};

const CHUNK_LENGTH_BYTES: u64 = CHUNK_BYTES as u64;
/// Pages of block locations a reader keeps: enough for the block being
/// read and the ones a block-parallel copy reads beside it.
const PAGES_KEPT_MAX: usize = 4;

/// True for errors that say a replica's bytes are wrong (as opposed to a
/// minion that is down, busy or slow).
fn is_corruption(error: &Error) -> bool {
    match error {
        Error::Corrupted { .. } => true,
        Error::Remote(remote) => remote.kind == ErrorKind::Corrupted,
        _ => false,
    }
}

/// One page of `GetBlocks`, checked against the file it must be of.
struct Page {
    /// Index of its first block in the file.
    first: usize,
    blocks: Vec<LocatedBlock>,
}

/// Asks the master for the page of `path`'s blocks from block `first` on.
fn fetch_page(
    link: &mut MasterLink,
    path: &DfsPath,
    first: usize,
    block_bytes: u64,
    notice: &dyn Fn(&str),
) -> Result<(EntryStatus, Vec<LocatedBlock>, bool)> {
    let request = MasterRequest::GetBlocks {
        path: path.to_string(),
        offset_bytes: (first as u64).saturating_mul(block_bytes),
        limit: GET_BLOCKS_PAGE_MAX,
    };
    match crate::client::remote_error(link.call(&request, Resend::Always, notice)?.response)? {
        MasterResponse::Blocks {
            status,
            blocks,
            more,
        } => {
            if status.kind != EntryKind::File {
                return Err(Error::Invalid(format!("{path}: is a directory")));
            }
            Ok((status, blocks, more))
        }
        other => Err(unexpected("GetBlocks", &other)),
    }
}

/// A page must be of the file the read started on (the same inode and
/// contents: an overwrite or rename since would mix two files) and lie where its blocks
/// are: every block the file's block size but the last, which ends the file.
fn check_page(
    path: &DfsPath,
    file: &EntryStatus,
    status: &EntryStatus,
    first: usize,
    blocks: &[LocatedBlock],
    more: bool,
) -> Result<()> {
    let bad = |why: String| Err(Error::Protocol(format!("block list of {path}: {why}")));
    if status.inode != file.inode || status.version != file.version {
        return Err(Error::Invalid(format!(
            "{path}: the file was replaced while it was read"
        )));
    }
    if status.size_bytes != file.size_bytes || status.block_count != file.block_count {
        return bad("the file changed size while it was read".into());
    }
    if blocks.len() > GET_BLOCKS_PAGE_MAX as usize {
        return bad(format!("a page of {} blocks", blocks.len()));
    }
    let count = usize::try_from(file.block_count).unwrap_or(usize::MAX);
    if first < count && blocks.is_empty() {
        return bad(format!("no blocks from block {first} on"));
    }
    for (offset, block) in blocks.iter().enumerate() {
        let index = first + offset;
        let expected_offset = (index as u64).saturating_mul(file.block_bytes);
        let expected_length = if index + 1 == count {
            file.size_bytes.saturating_sub(expected_offset)
        } else {
            file.block_bytes
        };
        if index >= count
            || block.offset_bytes != expected_offset
            || block.length_bytes != expected_length
            || block.length_bytes == 0
        {
            return bad(format!(
                "block {index} ({}) at offset {} with {} bytes, expected offset {expected_offset} and {expected_length} bytes",
                block.id, block.offset_bytes, block.length_bytes
            ));
        }
    }
    if more != (first + blocks.len() < count) {
        return bad(format!(
            "a page of blocks {first} to {} of {count} says {} follow",
            first + blocks.len(),
            if more { "more" } else { "none" }
        ));
    }
    Ok(())
}

/// A file's size as its blocks make it: they must add up.
fn check_size(path: &DfsPath, status: &EntryStatus) -> Result<()> {
    let expected = status
        .block_count
        .checked_sub(1)
        .map_or(0, |full| full.saturating_mul(status.block_bytes));
    let fits = status.block_count == 0 && status.size_bytes == 0
        || status.block_count > 0
            && status.size_bytes > expected
            && status.size_bytes - expected <= status.block_bytes;
    if fits {
        Ok(())
    } else {
        Err(Error::Protocol(format!(
            "block list of {path}: {} blocks of {} bytes cannot hold {} bytes",
            status.block_count, status.block_bytes, status.size_bytes
        )))
    }
}

/// The blocks of a file being read, from the master a page at a time as
/// the read reaches them, a few pages kept. Shared by the readers of one
/// file (a block-parallel copy reads several blocks at once).
pub(crate) struct BlockList {
    path: DfsPath,
    status: EntryStatus,
    pages: Mutex<Pages>,
}

struct Pages {
    /// Opened when a page beyond the first is needed.
    link: Option<MasterLink>,
    address: String,
    credentials: Credentials,
    wait: Duration,
    /// Newest last, at most `PAGES_KEPT_MAX`.
    kept: VecDeque<Page>,
}

impl BlockList {
    /// The first page of `path`, through `client`.
    fn open(client: &mut Client, path: &DfsPath) -> Result<BlockList> {
        let warnings = client.warning_sink();
        let (status, blocks, more) = {
            let link = client.master_link();
            // The block size is not known before the first answer: ask
            // from offset 0.
            fetch_page(link, path, 0, 1, &|text: &str| warnings(text))?
        };
        check_size(path, &status)?;
        check_page(path, &status, &status, 0, &blocks, more)?;
        Ok(BlockList {
            path: path.clone(),
            pages: Mutex::new(Pages {
                link: None,
                address: client.master_address().to_string(),
                credentials: client.credentials().clone(),
                wait: client.master_wait(),
                kept: VecDeque::from([Page { first: 0, blocks }]),
            }),
            status,
        })
    }

    fn count(&self) -> usize {
        usize::try_from(self.status.block_count).unwrap_or(usize::MAX)
    }

    /// Block `index` and its locations, fetching its page if need be (or
    /// again, with `fresh`: the locations kept may be stale).
    fn block(&self, index: usize, fresh: bool) -> Result<LocatedBlock> {
        if index >= self.count() {
            return Err(Error::Invalid(format!(
                "{}: block {index} is past the last of {}",
                self.path,
                self.count()
            )));
        }
        let mut pages = sync::lock(&self.pages);
        if !fresh {
            if let Some(block) = pages.kept.iter().find_map(|page| {
                index
                    .checked_sub(page.first)
                    .and_then(|offset| page.blocks.get(offset))
            }) {
                return Ok(block.clone());
            }
        }
        let Pages {
            link,
            address,
            credentials,
            wait,
            kept,
        } = &mut *pages;
        let link = link.get_or_insert_with(|| MasterLink::new(address, credentials.clone(), *wait));
        let (status, blocks, more) = fetch_page(
            link,
            &self.path,
            index,
            self.status.block_bytes,
            &|text: &str| eprintln!("dfs: warning: {text}"),
        )?;
        check_page(&self.path, &self.status, &status, index, &blocks, more)?;
        let block = blocks
            .first()
            .cloned()
            .ok_or_else(|| Error::Protocol(format!("{}: no block {index}", self.path)))?;
        kept.retain(|page| page.first != index);
        if kept.len() >= PAGES_KEPT_MAX {
            kept.pop_front();
        }
        kept.push_back(Page {
            first: index,
            blocks,
        });
        Ok(block)
    }
}

impl Client {
    /// Opens a file for reading: one `GetBlocks` for the first page of its
    /// blocks, then data straight from minions.
    pub fn open(&mut self, path: &DfsPath) -> Result<FileReader> {
        let blocks_ahead = readahead::blocks_ahead_from_environment()?;
        let list = Arc::new(BlockList::open(self, path)?);
        let end = list.count();
        let mut reader = FileReader::new(
            list,
            0..end,
            self.credentials().clone(),
            self.minions.io_timeout(),
            self.master_address().to_string(),
        );
        reader.blocks_ahead = blocks_ahead;
        Ok(reader)
    }

    /// A file's status and all its blocks with their locations, page by
    /// page; the pages must be of one file and add up to its size.
    pub fn get_blocks(&mut self, path: &DfsPath) -> Result<FileBlocks> {
        let list = BlockList::open(self, path)?;
        let mut blocks = Vec::with_capacity(list.count());
        for index in 0..list.count() {
            blocks.push(list.block(index, false)?);
        }
        Ok(FileBlocks {
            status: list.status,
            blocks,
        })
    }

    /// The checksum of a cluster file: the CRC32C of its bytes, from the
    /// block CRCs the master recorded at commit, without reading a byte.
    pub fn file_checksum(&mut self, path: &DfsPath) -> Result<FileChecksum> {
        let list = BlockList::open(self, path)?;
        let mut checksum = FileChecksum {
            length_bytes: 0,
            crc32c: 0,
        };
        for index in 0..list.count() {
            let block = list.block(index, false)?;
            checksum.crc32c = crc::combine(checksum.crc32c, block.crc32c, block.length_bytes);
            checksum.length_bytes += block.length_bytes;
        }
        Ok(checksum)
    }
}

/// A file's length and the CRC32C of all its bytes: the same number for the
/// same bytes whatever the block size, and the same as `crc32c` of a local copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileChecksum {
    pub length_bytes: u64,
    pub crc32c: u32,
}

/// A writer that only computes the CRC32C and length of what it is given.
#[derive(Debug, Default)]
pub struct ChecksumSink {
    pub crc32c: u32,
    pub length_bytes: u64,
}

impl Write for ChecksumSink {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        self.crc32c = crc32c::crc32c_append(self.crc32c, buffer);
        self.length_bytes += buffer.len() as u64;
        Ok(buffer.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The stream of one block (or of a range of it) from one minion.
struct BlockStream {
    connection: Connection,
    /// Block offset of the next data frame.
    next_chunk_bytes: u64,
    /// Block offset where the range asked for ends: a chunk's end or the
    /// block's. The connection is free for another request from there.
    end_bytes: u64,
    /// The CRC32C of every chunk of the block, as this replica stores
    /// them, checked to combine to the block CRC32C the master recorded.
    trusted_crcs: Vec<u32>,
}

/// A file being read; implements `std::io::Read` and `std::io::Seek`,
/// `read_at` reads at any offset, and `copy_to` writes the rest of the file
/// to a writer without an extra copy.
pub struct FileReader {
    list: Arc<BlockList>,
    /// The blocks this reader reads (the whole file, or one block).
    first_index: usize,
    end_index: usize,
    credentials: Credentials,
    /// The block being read and its locations.
    block_index: usize,
    current: Option<LocatedBlock>,
    /// The current block's locations were asked for again after every
    /// replica failed.
    refreshed: bool,
    /// Minions of the current block's replicas that failed: not tried
    /// again when the locations are asked for again.
    tried: Vec<MinionId>,
    /// Bytes of the current block that passed their checksum: handed out, or
    /// waiting in `chunk`.
    verified_bytes: u64,
    /// The last verified chunk; bytes before `chunk_position` were handed out.
    /// Holds nothing unverified: it is cleared whenever a chunk fails.
    chunk: Vec<u8>,
    chunk_position: usize,
    stream: Option<BlockStream>,
    /// A connection that finished a block, kept for the next block if that
    /// one lives on the same minion.
    idle: Option<Connection>,
    /// The replica of the current block in use or to try next.
    location_index: usize,
    /// Set once every replica of a block failed; every later read fails.
    failed: Option<String>,
    buffer: Vec<u8>,
    /// Of minion connections: how long a stalled replica holds up the read.
    io_timeout: Duration,
    /// Where corrupt replicas are reported.
    master_address: String,
    /// Blocks to fetch ahead of the one handed out (0: none).
    blocks_ahead: usize,
    /// The blocks fetched ahead, once the read went far enough.
    ahead: Option<ReadAhead>,
    /// File offset where the run of reads in progress started (the last
    /// move, or the reader's first byte): read-ahead waits for
    /// `READ_AHEAD_AFTER_BYTES` handed out from there.
    run_start_bytes: u64,
    /// While set, the end (file offset) of the range a `read_at` that moved
    /// the reader asked for: streams opened before it ask for the chunks up
    /// to there only, and nothing is read ahead.
    range_end_bytes: Option<u64>,
    /// The position a move to or past the reader's end set: nothing is
    /// read there.
    past_end_bytes: Option<u64>,
    /// The reader was read from or moved: a `read_at` where it stands
    /// continues a run.
    started: bool,
}

impl FileReader {
    fn new(
        list: Arc<BlockList>,
        indexes: std::ops::Range<usize>,
        credentials: Credentials,
        io_timeout: Duration,
        master_address: String,
    ) -> FileReader {
        let run_start_bytes = (indexes.start as u64).saturating_mul(list.status.block_bytes);
        FileReader {
            list,
            first_index: indexes.start,
            end_index: indexes.end,
            credentials,
            block_index: indexes.start,
            current: None,
            refreshed: false,
            tried: Vec::new(),
            verified_bytes: 0,
            chunk: Vec::with_capacity(CHUNK_BYTES as usize),
            chunk_position: 0,
            stream: None,
            idle: None,
            location_index: 0,
            failed: None,
            buffer: Vec::new(),
            io_timeout,
            master_address,
            blocks_ahead: 0,
            ahead: None,
            run_start_bytes,
            range_end_bytes: None,
            past_end_bytes: None,
            started: false,
        }
    }

    pub fn status(&self) -> &EntryStatus {
        &self.list.status
    }

    /// Blocks of the file.
    pub fn block_count(&self) -> usize {
        self.list.count()
    }

    /// Offset of block `index` in the file.
    pub fn block_offset_bytes(&self, index: usize) -> u64 {
        (index as u64).saturating_mul(self.list.status.block_bytes)
    }

    pub fn length_bytes(&self) -> u64 {
        self.list.status.size_bytes
    }

    /// A reader of block `index` alone (its bytes only, from the block's
    /// first byte), with the same replicas and checks, so that several
    /// blocks of one file can be read at once.
    pub fn block_reader(&self, index: usize) -> Option<FileReader> {
        (index < self.list.count()).then(|| {
            FileReader::new(
                Arc::clone(&self.list),
                index..index + 1,
                self.credentials.clone(),
                self.io_timeout,
                self.master_address.clone(),
            )
        })
    }

    /// Writes the rest of the file to `target` (named `target_name` in
    /// errors); returns the number of bytes written.
    pub fn copy_to(&mut self, target: &mut dyn Write, target_name: &str) -> Result<u64> {
        let mut written_bytes = 0u64;
        while self.fill()? {
            let bytes = &self.chunk[self.chunk_position..];
            target
                .write_all(bytes)
                .map_err(|error| Error::io(format!("write {target_name}"), error))?;
            written_bytes += bytes.len() as u64;
            self.chunk_position = self.chunk.len();
        }
        target
            .flush()
            .map_err(|error| Error::io(format!("write {target_name}"), error))?;
        Ok(written_bytes)
    }

    /// Reads up to `buffer.len()` bytes at file offset `offset_bytes` into
    /// `buffer` and returns how many. It returns fewer than asked only at
    /// the end of the reader's bytes (the file's end; a `block_reader`'s
    /// block's end), and 0 at or past it or for an empty `buffer`: a range
    /// across blocks is read whole, and a caller loops only to reach the
    /// end. Each byte is checked, and a failing replica left for the next,
    /// exactly as `Read` does.
    ///
    /// A call at the offset where the reader stands (where the last call,
    /// `Read` or `Seek` left it) goes on with the stream open there, to its
    /// block's end: a run of calls costs one request per block. A call
    /// elsewhere drops that stream and the read-ahead, and asks a replica
    /// for the chunks its range covers only (bytes of the last chunk
    /// verified are handed out again from memory). Read-ahead starts only
    /// once a run handed out `READ_AHEAD_AFTER_BYTES`.
    ///
    /// An error fails this call (what it put in `buffer` is not to be
    /// used); the next call tries the block's replicas again. Offsets are
    /// of the file, also for a `block_reader`, which refuses one before its
    /// block.
    pub fn read_at(&mut self, offset_bytes: u64, buffer: &mut [u8]) -> Result<usize> {
        let end_bytes = self.end_bytes();
        if buffer.is_empty() || offset_bytes >= end_bytes {
            return Ok(0);
        }
        if self.started && self.failed.is_none() && offset_bytes == self.position_bytes() {
            // A run: its stream goes on to its block's end.
            self.range_end_bytes = None;
        } else {
            let range_end_bytes = offset_bytes
                .saturating_add(buffer.len() as u64)
                .min(end_bytes);
            self.move_to(offset_bytes, Some(range_end_bytes))?;
        }
        let mut filled = 0;
        while filled < buffer.len() && self.fill()? {
            let available = &self.chunk[self.chunk_position..];
            let count = available.len().min(buffer.len() - filled);
            buffer[filled..filled + count].copy_from_slice(&available[..count]);
            self.chunk_position += count;
            filled += count;
        }
        Ok(filled)
    }

    /// The file offset of the next byte this reader hands out.
    fn position_bytes(&self) -> u64 {
        if let Some(position_bytes) = self.past_end_bytes {
            return position_bytes;
        }
        let unread_bytes = self.chunk.len().saturating_sub(self.chunk_position) as u64;
        self.block_offset_bytes(self.block_index)
            .saturating_add(self.verified_bytes)
            .saturating_sub(unread_bytes)
    }

    /// The file offset where this reader's bytes end.
    fn end_bytes(&self) -> u64 {
        if self.end_index >= self.list.count() {
            self.length_bytes()
        } else {
            self.block_offset_bytes(self.end_index)
        }
    }

    /// Moves the reader to file offset `target_bytes`, with
    /// `range_end_bytes` as the end of the range wanted there (None: read
    /// on to the block's end). Bytes of the last verified chunk are handed
    /// out again from memory; otherwise the stream in flight and the
    /// read-ahead are dropped and the block `target_bytes` is in streams
    /// from there when read. A reader that failed tries the replicas of
    /// its block again.
    fn move_to(&mut self, target_bytes: u64, range_end_bytes: Option<u64>) -> Result<()> {
        let start_bytes = self.block_offset_bytes(self.first_index);
        if target_bytes < start_bytes {
            return Err(Error::Invalid(format!(
                "{}: offset {target_bytes} is before this reader's first byte, {start_bytes}",
                self.list.path
            )));
        }
        self.started = true;
        self.range_end_bytes = range_end_bytes;
        let retry = self.failed.take().is_some();
        let past_end = target_bytes >= self.end_bytes();
        let (index, within_bytes) = if past_end {
            (self.end_index, 0)
        } else {
            // The reader has bytes, so its blocks have a size.
            let index = target_bytes
                .checked_div(self.list.status.block_bytes)
                .and_then(|index| usize::try_from(index).ok())
                .unwrap_or(self.first_index);
            (index, target_bytes - self.block_offset_bytes(index))
        };
        if !retry && !past_end && index == self.block_index {
            if let Some(position) =
                position_in_chunk(self.verified_bytes, self.chunk.len(), within_bytes)
            {
                self.past_end_bytes = None;
                self.chunk_position = position;
                return Ok(());
            }
        }
        self.past_end_bytes = past_end.then_some(target_bytes);
        self.run_start_bytes = target_bytes;
        self.ahead = None;
        self.stream = None;
        if retry || index != self.block_index {
            self.current = None;
            self.refreshed = false;
            self.tried.clear();
            self.location_index = 0;
        }
        self.block_index = index;
        self.verified_bytes = within_bytes;
        self.chunk.clear();
        self.chunk_position = 0;
        Ok(())
    }

    /// The block being read, fetched from the block list when the read
    /// reaches it; None past the last block of this reader.
    fn current_block(&mut self) -> Result<Option<LocatedBlock>> {
        if self.block_index >= self.end_index {
            return Ok(None);
        }
        if self.current.is_none() {
            self.current = Some(self.list.block(self.block_index, false)?);
        }
        Ok(self.current.clone())
    }

    /// Makes verified bytes available in `chunk`; false at the end.
    fn fill(&mut self) -> Result<bool> {
        if let Some(message) = &self.failed {
            return Err(Error::Invalid(message.clone()));
        }
        self.started = true;
        loop {
            if self.chunk_position < self.chunk.len() {
                return Ok(true);
            }
            if self
                .range_end_bytes
                .is_some_and(|end_bytes| self.position_bytes() >= end_bytes)
            {
                // The range a move asked for was handed out: reading on
                // past it is a run.
                self.range_end_bytes = None;
            }
            self.keep_ahead()?;
            if self.ahead.as_ref().and_then(ReadAhead::front_index) == Some(self.block_index) {
                self.take_ahead()?;
                continue;
            }
            let Some(block) = self.current_block()? else {
                return Ok(false);
            };
            if self.verified_bytes >= block.length_bytes {
                self.next_block();
                continue;
            }
            if block.locations.is_empty() && !self.ask_again()? {
                return Err(self.fail(format!(
                    "{}: block {} ({}) unreadable: no minion holds a replica",
                    self.list.path, self.block_index, block.id
                )));
            }
            if block.locations.is_empty() {
                continue;
            }
            if let Err(error) = self.read_chunk(&block) {
                // Nothing of a failed chunk may be handed out.
                self.chunk.clear();
                self.chunk_position = 0;
                if is_corruption(&error) {
                    self.report_bad_replica(&block, &error);
                }
                self.replica_failed(&block, &error)?;
            }
        }
    }

    /// Starts reading ahead once a run of reads (from the first byte or
    /// the last move) handed out `READ_AHEAD_AFTER_BYTES`, never within a
    /// range a move asked for, then keeps `blocks_ahead` blocks past the
    /// one handed out streaming.
    fn keep_ahead(&mut self) -> Result<()> {
        if self.ahead.is_none() {
            let position_bytes = self
                .block_offset_bytes(self.block_index)
                .saturating_add(self.verified_bytes);
            if self.blocks_ahead == 0
                || self.range_end_bytes.is_some()
                || position_bytes.saturating_sub(self.run_start_bytes) < READ_AHEAD_AFTER_BYTES
                || self.block_index + 1 >= self.end_index
            {
                return Ok(());
            }
            // The block in progress goes on from its own stream.
            self.ahead = Some(ReadAhead::new(
                self.block_index + 1,
                self.end_index,
                self.blocks_ahead,
            ));
        }
        let Some(mut ahead) = self.ahead.take() else {
            return Ok(());
        };
        let started = self.fill_window(&mut ahead);
        self.ahead = Some(ahead);
        started
    }

    /// Starts a stream for every block the window of `ahead` lacks, each on
    /// the replica whose minion has the fewest of this reader's streams.
    fn fill_window(&self, ahead: &mut ReadAhead) -> Result<()> {
        while let Some(index) = ahead.wanted(self.block_index) {
            let mut busy: Vec<MinionId> = ahead.minions().collect();
            // The block this reader streams itself, if any.
            busy.extend(
                self.current
                    .as_ref()
                    .and_then(|block| block.locations.get(self.location_index))
                    .map(|location| location.id),
            );
            let block = readahead::spread(self.list.block(index, false)?, &busy);
            let reader = self.ahead_reader(index, block.clone());
            ahead.start(index, &block, reader)?;
        }
        Ok(())
    }

    /// A reader of block `index` alone that tries the replicas of `block`
    /// (its locations, reordered) in their order.
    fn ahead_reader(&self, index: usize, block: LocatedBlock) -> FileReader {
        let mut reader = FileReader::new(
            Arc::clone(&self.list),
            index..index + 1,
            self.credentials.clone(),
            self.io_timeout,
            self.master_address.clone(),
        );
        reader.current = Some(block);
        reader
    }

    /// Hands out the next piece the oldest read-ahead stream verified, or
    /// moves to the next block once that stream's block was handed out.
    fn take_ahead(&mut self) -> Result<()> {
        let Some(ahead) = self.ahead.as_mut() else {
            return Ok(());
        };
        match ahead.next_piece() {
            Ok(Some(Piece { bytes, start })) => {
                // Blocks come from the streams from now on.
                self.idle = None;
                self.verified_bytes += bytes.len().saturating_sub(start) as u64;
                let spent = std::mem::replace(&mut self.chunk, bytes);
                self.chunk_position = start;
                if let Some(ahead) = self.ahead.as_mut() {
                    ahead.give_back(spent);
                }
                Ok(())
            }
            Ok(None) => {
                self.next_block();
                Ok(())
            }
            // The stream tried every replica (and asked where the block is
            // again) as this reader would have: its error is final.
            Err(error) => Err(self.fail(error.to_string())),
        }
    }

    /// The next verified piece of this reader, its buffer taken whole so
    /// that read-ahead passes it to the reading thread without a copy;
    /// None at the end.
    /// `spare`, a buffer the reading thread is done with, if any, holds the
    /// next chunk.
    pub(crate) fn take_piece(&mut self, spare: Option<Vec<u8>>) -> Result<Option<Piece>> {
        if !self.fill()? {
            return Ok(None);
        }
        let mut next = spare.unwrap_or_else(|| Vec::with_capacity(CHUNK_BYTES as usize));
        // What it held was handed out: it must not read as a chunk again.
        next.clear();
        let bytes = std::mem::replace(&mut self.chunk, next);
        let start = std::mem::take(&mut self.chunk_position);
        Ok(Some(Piece { bytes, start }))
    }

    /// Drops the current stream (not the replica): the next chunk is asked
    /// for again from the same replica, from the first byte not handed out.
    pub(crate) fn reopen_stream(&mut self) {
        self.stream = None;
    }

    fn next_block(&mut self) {
        // A stream that sent its whole range left its connection in `idle`.
        self.stream = None;
        self.block_index += 1;
        self.current = None;
        self.refreshed = false;
        self.tried.clear();
        self.verified_bytes = 0;
        self.location_index = 0;
    }

    /// Asks the master where the current block is once more, after every
    /// replica known failed (or none was known): replicas on other minions
    /// than those tried are tried next. False when it was asked already
    /// for this block, or it knows no other replica.
    fn ask_again(&mut self) -> Result<bool> {
        if self.refreshed {
            return Ok(false);
        }
        self.refreshed = true;
        let mut block = self.list.block(self.block_index, true)?;
        block
            .locations
            .retain(|location| !self.tried.contains(&location.id));
        let fresh = !block.locations.is_empty();
        if fresh {
            self.current = Some(block);
            self.location_index = 0;
        }
        Ok(fresh)
    }

    /// Tells the master that the current replica of `block` is corrupt.
    /// Best effort: the read goes on whatever happens here.
    fn report_bad_replica(&mut self, block: &LocatedBlock, error: &Error) {
        let Some(minion) = block.locations.get(self.location_index) else {
            return;
        };
        let replicas = vec![BadReplica {
            block: block.id,
            generation: block.generation,
            minion: minion.id,
            reason: error.to_string(),
        }];
        let timeout = Duration::from_millis(CONNECT_TIMEOUT_MS);
        // A report must not hold up the read for long.
        let _ = Connection::open_with_timeouts(&self.master_address, timeout, timeout).and_then(
            |mut connection| {
                connection.call::<_, MasterResponse>(
                    &self.credentials,
                    MasterRequest::ReportBadReplicas {
                        reporter: None,
                        replicas,
                    },
                )
            },
        );
    }

    /// Records the failure of the current replica and moves to the next;
    /// when none is left, asks where the block is once more, then fails.
    fn replica_failed(&mut self, block: &LocatedBlock, error: &Error) -> Result<()> {
        self.stream = None;
        let message = match block.locations.get(self.location_index) {
            Some(minion) => {
                self.tried.push(minion.id);
                minion_message(minion, error)
            }
            None => error.to_string(),
        };
        self.location_index += 1;
        if self.location_index < block.locations.len() || self.ask_again()? {
            return Ok(());
        }
        let text = format!(
            "{}: block {} ({}) unreadable: tried {} replicas: {message}",
            self.list.path,
            self.block_index,
            block.id,
            self.tried.len()
        );
        Err(self.fail(text))
    }

    fn fail(&mut self, message: String) -> Error {
        self.failed = Some(message.clone());
        Error::Invalid(message)
    }

    /// Reads the next chunk of `block` from the current replica, starting
    /// its stream if needed, and checks it against the trusted checksums.
    fn read_chunk(&mut self, block: &LocatedBlock) -> Result<()> {
        if self.stream.is_none() {
            self.stream = Some(self.start_stream(block)?);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        let address = stream.connection.address().to_string();
        let header = wire::read_header(stream.connection.reader())?.ok_or_else(|| {
            Error::Protocol(format!(
                "{address} closed the connection in the middle of {}",
                block.id
            ))
        })?;
        if header.kind == FrameKind::Response {
            // A minion that fails mid-stream may say why.
            wire::read_payload(stream.connection.reader(), &header, &mut self.buffer)?;
            return match wire::decode_message::<MinionResponse>(&self.buffer)? {
                MinionResponse::Error(error) => Err(Error::Remote(error)),
                other => Err(unexpected("ReadBlock", &other)),
            };
        }
        let expected_bytes = CHUNK_LENGTH_BYTES.min(block.length_bytes - stream.next_chunk_bytes);
        if header.kind != FrameKind::Data || u64::from(header.payload_bytes) != expected_bytes {
            return Err(Error::Protocol(format!(
                "{address} sent a {:?} frame of {} bytes at offset {} of {}, expected {expected_bytes} bytes of data",
                header.kind, header.payload_bytes, stream.next_chunk_bytes, block.id
            )));
        }
        // Read raw and checked here against the trusted list: a mismatch
        // means a corrupt replica (to report), not a broken frame.
        self.chunk.clear();
        self.chunk.resize(expected_bytes as usize, 0);
        stream
            .connection
            .reader()
            .read_exact(&mut self.chunk)
            .map_err(|error| Error::io(format!("read {} from {address}", block.id), error))?;
        let index = (stream.next_chunk_bytes / CHUNK_LENGTH_BYTES) as usize;
        let trusted = stream.trusted_crcs.get(index).copied();
        let crc = crc32c::crc32c(&self.chunk);
        if trusted != Some(crc) {
            return Err(Error::corrupted(
                format!(
                    "chunk at offset {} of {}",
                    stream.next_chunk_bytes, block.id
                ),
                format!(
                    "CRC32C {crc:#010x}, the block's checksums say {:#010x}",
                    trusted.unwrap_or(0)
                ),
            ));
        }
        let chunk_start_bytes = stream.next_chunk_bytes;
        let chunk_end_bytes = chunk_start_bytes + expected_bytes;
        // The first chunk after a resume may start before the bytes we need.
        let skip = usize::try_from(self.verified_bytes - chunk_start_bytes)
            .unwrap_or(usize::MAX)
            .min(self.chunk.len());
        stream.next_chunk_bytes = chunk_end_bytes;
        let range_done = chunk_end_bytes >= stream.end_bytes;
        self.chunk_position = skip;
        self.verified_bytes = chunk_end_bytes;
        if range_done {
            // Every chunk asked for came: the connection is free for the
            // next request (the rest of the block, or the next block).
            if let Some(stream) = self.stream.take() {
                self.idle = Some(stream.connection);
            }
        }
        Ok(())
    }

    /// Asks the current replica for the rest of `block`, or for the chunks
    /// up to the end of the range a move asked for.
    fn start_stream(&mut self, block: &LocatedBlock) -> Result<BlockStream> {
        let Some(minion) = block.locations.get(self.location_index) else {
            return Err(Error::Invalid(format!("{}: no replica left", block.id)));
        };
        let address = minion.address.clone();
        if let Some(connection) = self.idle.take() {
            if connection.address() == address {
                match self.request_range(connection, block) {
                    Ok(stream) => return Ok(stream),
                    // The kept connection may have been closed by the
                    // minion meanwhile: try once more on a fresh one.
                    Err(error) if error.is_connection_error() => {}
                    Err(error) => return Err(error),
                }
            }
        }
        let connection = Connection::open_with_timeouts(
            &address,
            Duration::from_millis(CONNECT_TIMEOUT_MS),
            self.io_timeout,
        )?;
        self.request_range(connection, block)
    }

    fn request_range(
        &mut self,
        mut connection: Connection,
        block: &LocatedBlock,
    ) -> Result<BlockStream> {
        let offset_bytes = self.verified_bytes;
        let end_bytes =
            match stream_end_bytes(block.offset_bytes, block.length_bytes, self.range_end_bytes) {
                end_bytes if end_bytes > offset_bytes => end_bytes,
                _ => block.length_bytes,
            };
        let request_id = connection.send(
            &self.credentials,
            MinionRequest::ReadBlock {
                block: block.id,
                generation: block.generation,
                offset_bytes,
                length_bytes: end_bytes - offset_bytes,
            },
        )?;
        let (block_length_bytes, first_offset_bytes, chunk_crcs) =
            match receive_answer(&mut connection, &[request_id], &mut self.buffer)? {
                MinionResponse::ReadStarted {
                    block_length_bytes,
                    first_offset_bytes,
                    chunk_crcs,
                } => (block_length_bytes, first_offset_bytes, chunk_crcs),
                other => return Err(unexpected("ReadBlock", &other)),
            };
        if block_length_bytes != block.length_bytes {
            return Err(Error::corrupted(
                block.id.to_string(),
                format!(
                    "the minion holds {block_length_bytes} bytes, the master recorded {}",
                    block.length_bytes
                ),
            ));
        }
        trust_checksums(block, &chunk_crcs)?;
        let expected_first_bytes = offset_bytes - offset_bytes % CHUNK_LENGTH_BYTES;
        if first_offset_bytes != expected_first_bytes {
            return Err(Error::Protocol(format!(
                "read of {} from offset {offset_bytes} starts at {first_offset_bytes}, expected {expected_first_bytes}",
                block.id
            )));
        }
        Ok(BlockStream {
            connection,
            next_chunk_bytes: first_offset_bytes,
            end_bytes,
            trusted_crcs: chunk_crcs,
        })
    }
}

/// Where the stream of a block at file offset `block_offset_bytes` of
/// `block_length_bytes` ends (a block offset) for a range wanted up to file
/// offset `range_end_bytes`: at the end of the chunk that holds the range's
/// last byte in the block, or at the block's end (also with no range, or
/// one that ends before the block).
fn stream_end_bytes(
    block_offset_bytes: u64,
    block_length_bytes: u64,
    range_end_bytes: Option<u64>,
) -> u64 {
    match range_end_bytes.and_then(|end_bytes| end_bytes.checked_sub(block_offset_bytes)) {
        Some(wanted_bytes) if wanted_bytes > 0 => wanted_bytes
            .div_ceil(CHUNK_LENGTH_BYTES)
            .saturating_mul(CHUNK_LENGTH_BYTES)
            .min(block_length_bytes),
        _ => block_length_bytes,
    }
}

/// Where block offset `within_bytes` is in the last verified chunk, which
/// holds `chunk_bytes` and ends at block offset `verified_bytes`; None when
/// it is not there.
fn position_in_chunk(verified_bytes: u64, chunk_bytes: usize, within_bytes: u64) -> Option<usize> {
    let start_bytes = verified_bytes.checked_sub(chunk_bytes as u64)?;
    (start_bytes..verified_bytes)
        .contains(&within_bytes)
        .then(|| usize::try_from(within_bytes - start_bytes).ok())
        .flatten()
}

/// The file offset `position` names, from `current_bytes` in a file of
/// `length_bytes`; None before offset 0 (or past `u64::MAX`).
fn seek_target(position: SeekFrom, current_bytes: u64, length_bytes: u64) -> Option<u64> {
    match position {
        SeekFrom::Start(offset_bytes) => Some(offset_bytes),
        SeekFrom::End(delta_bytes) => length_bytes.checked_add_signed(delta_bytes),
        SeekFrom::Current(delta_bytes) => current_bytes.checked_add_signed(delta_bytes),
    }
}

/// A replica's chunk checksums are trusted only if there is one per chunk
/// and they combine to the block CRC32C the master recorded at commit.
fn trust_checksums(block: &LocatedBlock, chunk_crcs: &[u32]) -> Result<()> {
    let chunks = block.length_bytes.div_ceil(CHUNK_LENGTH_BYTES);
    if chunk_crcs.len() as u64 != chunks {
        return Err(Error::corrupted(
            format!("checksums of {}", block.id),
            format!("{} chunk checksums for {chunks} chunks", chunk_crcs.len()),
        ));
    }
    let combined = block_format::combine_chunks(chunk_crcs, block.length_bytes, CHUNK_BYTES);
    if combined != block.crc32c {
        return Err(Error::corrupted(
            format!("checksums of {}", block.id),
            format!(
                "the replica's chunk checksums make CRC32C {combined:#010x}, the master recorded {:#010x}",
                block.crc32c
            ),
        ));
    }
    Ok(())
}

impl Read for FileReader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        if buffer.is_empty() || !self.fill().map_err(io::Error::other)? {
            return Ok(0);
        }
        let available = &self.chunk[self.chunk_position..];
        let count = available.len().min(buffer.len());
        buffer[..count].copy_from_slice(&available[..count]);
        self.chunk_position += count;
        Ok(count)
    }
}

/// Offsets are of the file, also for a `block_reader` (which refuses one
/// before its block). A seek to or past the end is allowed (reads there
/// return 0). A seek elsewhere than where the reader stands drops its
/// stream and read-ahead as `read_at` does, and reads after it stream from
/// there to their block's end; after a failure, any seek lets the next read
/// try the replicas of its block again.
impl Seek for FileReader {
    fn seek(&mut self, position: SeekFrom) -> io::Result<u64> {
        let current_bytes = self.position_bytes();
        let target_bytes = seek_target(position, current_bytes, self.length_bytes())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{}: seek to {position:?} from offset {current_bytes} of {} bytes leaves the file's offsets",
                        self.list.path,
                        self.length_bytes()
                    ),
                )
            })?;
        if self.failed.is_some() || target_bytes != current_bytes {
            self.move_to(target_bytes, None)
                .map_err(|error| match error {
                    Error::Invalid(_) => io::Error::new(io::ErrorKind::InvalidInput, error),
                    other => io::Error::other(other),
                })?;
        }
        self.started = true;
        Ok(target_bytes)
    }

    fn stream_position(&mut self) -> io::Result<u64> {
        Ok(self.position_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dfs_engine::msg::{BlockId, Generation};

    fn status(size_bytes: u64, block_bytes: u64, block_count: u64) -> EntryStatus {
        EntryStatus {
            name: "f".into(),
            inode: 7,
            kind: EntryKind::File,
            size_bytes,
            replication: 3,
            block_bytes,
            block_count,
            owner: "ana".into(),
            group: "staff".into(),
            mode: 0o644,
            modified_ms: 0,
            accessed_ms: 0,
            changed_ms: 0,
            links: 1,
            version: 0,
            rdev: 0,
        }
    }

    fn block(offset_bytes: u64, length_bytes: u64) -> LocatedBlock {
        LocatedBlock {
            id: BlockId(offset_bytes + 1),
            generation: Generation(9),
            offset_bytes,
            length_bytes,
            crc32c: 0,
            locations: vec![],
        }
    }

    #[test]
    fn pages_must_be_of_the_file_and_where_its_blocks_are() {
        let path = DfsPath::parse("/f").expect("path");
        let file = status(25, 10, 3);
        check_size(&path, &file).expect("fits");
        let all = [block(0, 10), block(10, 10), block(20, 5)];
        check_page(&path, &file, &file, 0, &all, false).expect("one page");
        check_page(&path, &file, &file, 0, &all[..2], true).expect("a first page");
        check_page(&path, &file, &file, 2, &all[2..], false).expect("a last page");
        let replaced = EntryStatus {
            inode: 8,
            ..file.clone()
        };
        let error = check_page(&path, &file, &replaced, 2, &all[2..], false).expect_err("other");
        assert!(
            error.to_string().contains("replaced while it was read"),
            "{error}"
        );
        for (first, blocks, more) in [
            (0, &all[..2], false),
            (0, &all[..], true),
            (1, &all[..2], false),
            (0, &[block(0, 10), block(10, 9), block(20, 5)][..], false),
            (2, &[][..], false),
        ] {
            assert!(
                check_page(&path, &file, &file, first, blocks, more).is_err(),
                "{first} {blocks:?} {more}"
            );
        }
        assert!(check_size(&path, &status(31, 10, 3)).is_err());
        assert!(check_size(&path, &status(20, 10, 3)).is_err());
        check_size(&path, &status(0, 10, 0)).expect("empty");
    }

    #[test]
    fn checksums_are_trusted_only_when_they_make_the_recorded_crc() {
        let data: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
        let crcs: Vec<u32> = data
            .chunks(CHUNK_BYTES as usize)
            .map(crc32c::crc32c)
            .collect();
        let located = LocatedBlock {
            crc32c: crc32c::crc32c(&data),
            ..block(0, data.len() as u64)
        };
        trust_checksums(&located, &crcs).expect("the replica's own checksums");
        let mut rewritten = crcs.clone();
        rewritten[0] ^= 1;
        let error = trust_checksums(&located, &rewritten).expect_err("rewritten");
        assert!(is_corruption(&error), "{error}");
        assert!(error.to_string().contains("the master recorded"), "{error}");
        assert!(
            trust_checksums(&located, &crcs[..2]).is_err(),
            "one missing"
        );
    }

    #[test]
    fn a_range_streams_the_chunks_that_cover_it_and_no_range_the_rest_of_the_block() {
        let chunk = CHUNK_LENGTH_BYTES;
        let block = 3 * chunk + 10;
        // Block 1 of a file of such blocks starts at `block`.
        for (range_end, expected) in [
            (None, block),
            (Some(block + 1), chunk),
            (Some(block + chunk), chunk),
            (Some(block + chunk + 1), 2 * chunk),
            (Some(block + 3 * chunk + 1), block),
            (Some(2 * block + 5), block),
            // A range that ended before the block asks for all of it.
            (Some(block), block),
            (Some(3), block),
        ] {
            assert_eq!(
                stream_end_bytes(block, block, range_end),
                expected,
                "range to {range_end:?}"
            );
        }
    }

    #[test]
    fn moves_within_the_last_verified_chunk_are_served_from_memory() {
        // A chunk of 100 bytes that ends at block offset 300.
        assert_eq!(position_in_chunk(300, 100, 200), Some(0));
        assert_eq!(position_in_chunk(300, 100, 299), Some(99));
        assert_eq!(position_in_chunk(300, 100, 300), None);
        assert_eq!(position_in_chunk(300, 100, 199), None);
        assert_eq!(position_in_chunk(300, 0, 299), None, "no chunk");
        // Left over from the previous block: the new one has 0 bytes verified.
        assert_eq!(position_in_chunk(0, 100, 0), None);
    }

    #[test]
    fn seeks_name_offsets_from_the_start_the_end_or_the_position() {
        assert_eq!(seek_target(SeekFrom::Start(7), 3, 10), Some(7));
        assert_eq!(seek_target(SeekFrom::Start(70), 3, 10), Some(70));
        assert_eq!(seek_target(SeekFrom::End(-4), 3, 10), Some(6));
        assert_eq!(seek_target(SeekFrom::End(5), 3, 10), Some(15));
        assert_eq!(seek_target(SeekFrom::End(-11), 3, 10), None);
        assert_eq!(seek_target(SeekFrom::Current(-3), 3, 10), Some(0));
        assert_eq!(seek_target(SeekFrom::Current(-4), 3, 10), None);
        assert_eq!(seek_target(SeekFrom::Current(1), u64::MAX, 10), None);
    }
}
