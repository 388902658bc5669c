//! Reading a file: its contents are a list of pieces, each a whole block,
//! a part of one, or a hole (zeros stored nowhere), which come from the
//! master a page at a time as the read reaches them (`BlockList`: by the
//! offset a read lands on, or by a piece's index). A file written front to
//! back is its blocks whole; a patch (a write into the middle, a truncate)
//! makes pieces that start anywhere in a block and holes. Each piece of a
//! block is streamed from the first replica that works: its replica sends
//! the whole chunks that cover the piece, and the bytes of the block
//! before and after the piece are dropped. A hole hands out zeros without
//! asking anyone. No byte is handed out before it is checked against
//! something the master vouches for. A replica first sends the CRC32C of
//! each of its block's chunks; they must combine to the whole block's
//! CRC32C the master recorded at commit, and only then is that list
//! trusted: every chunk that follows must match its entry. When a replica
//! fails (connection, timeout, protocol, checksum, error answer) the read
//! goes on from the next replica at the first byte not yet handed out;
//! when all failed, the piece's locations are asked for once more (they
//! may have moved) before the read gives up. Every page must be of the
//! file as it was opened (the same inode and version): a file changed
//! since fails the read rather than mix its old and new contents.
//!
//! A replica whose bytes or checksums are wrong (or that its minion says is
//! corrupt) is reported to the master, best effort, so it gets replaced.
//!
//! A reader of a whole file reads ahead (`readahead`) once it has handed
//! out a few MiB in one run: the pieces after the one it hands out stream
//! meanwhile, each through a one-piece reader of its own with these same
//! rules.
//!
//! A reader also reads at any offset (`FileReader::read_at`, `Seek`): a
//! move drops the stream and the read-ahead and sets the reader on the
//! piece and byte it lands on, as if every byte before it had been handed
//! out; from there the same code streams, checks and falls back as for a
//! read from the start (a stream starts mid-piece as a resume on the next
//! replica does). A `read_at` that lands elsewhere than where the reader
//! stands asks its replica for the chunks its range covers only; one that
//! goes on where the last one ended asks for the rest of the piece, as a
//! front-to-back read does, and keeps that stream for the calls after it.
//! Only the bytes handed out in one run (since the last move) start the
//! read-ahead, so reads here and there never fetch whole pieces ahead.

use std::collections::VecDeque;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dfs_engine::block_format;
use dfs_engine::crc;
use dfs_engine::identity::Identity;
use dfs_engine::limits::{
    BLOCK_BYTES_MAX, CHUNK_BYTES, CONNECT_TIMEOUT_MS, FILE_PIECES_MAX, GET_BLOCKS_PAGE_MAX,
    READ_AHEAD_AFTER_BYTES,
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
use crate::master::{open_master_with_timeouts, MasterLink, Resend};
use crate::pool::DataLink;
use crate::readahead::{self, ReadAhead, Verified};
use crate::transfer::{minion_message, receive_answer};

const CHUNK_LENGTH_BYTES: u64 = CHUNK_BYTES as u64;
/// Pages of piece locations a reader keeps: enough for the piece being
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
    /// Index of its first piece in the file.
    first: usize,
    blocks: Vec<LocatedBlock>,
}

impl Page {
    /// Piece `index` of the file, if this page holds it.
    fn by_index(&self, index: usize) -> Option<&LocatedBlock> {
        index
            .checked_sub(self.first)
            .and_then(|offset| self.blocks.get(offset))
    }

    /// The index and the piece that holds file offset `offset_bytes`, if
    /// this page holds it (its pieces are contiguous: `check_page`).
    fn by_offset(&self, offset_bytes: u64) -> Option<(usize, &LocatedBlock)> {
        let first = self.blocks.first()?;
        let last = self.blocks.last()?;
        if offset_bytes < first.offset_bytes
            || offset_bytes >= last.offset_bytes.saturating_add(last.length_bytes)
        {
            return None;
        }
        let position = self.blocks.partition_point(|piece| {
            piece.offset_bytes.saturating_add(piece.length_bytes) <= offset_bytes
        });
        self.blocks
            .get(position)
            .map(|piece| (self.first + position, piece))
    }
}

/// Where a page of `GetBlocks` starts.
#[derive(Clone, Copy, Debug)]
enum PageStart {
    /// At the piece that holds this file offset.
    Offset(u64),
    /// At the piece of this index.
    Index(usize),
}

/// A page of `GetBlocks` as it came: the file's status, the index of its
/// first piece, its pieces, and whether more follow.
struct Answer {
    status: EntryStatus,
    first: usize,
    blocks: Vec<LocatedBlock>,
    more: bool,
}

/// Asks the master for the page of `path`'s pieces from `start` on (with
/// `inode`, of the file with that inode, whatever its names are now).
fn fetch_page(
    link: &mut MasterLink,
    path: &DfsPath,
    inode: Option<u64>,
    start: PageStart,
    limit: u32,
    notice: &dyn Fn(&str),
) -> Result<Answer> {
    let (offset_bytes, first_index) = match start {
        PageStart::Offset(offset_bytes) => (offset_bytes, None),
        PageStart::Index(index) => (0, Some(index as u64)),
    };
    let request = MasterRequest::GetBlocks {
        path: path.to_string(),
        offset_bytes,
        limit,
        first_index,
        inode,
    };
    match crate::client::remote_error(link.call(&request, Resend::Always, notice)?.response)? {
        MasterResponse::Blocks {
            status,
            first_index,
            blocks,
            more,
        } => {
            if status.kind != EntryKind::File {
                return Err(Error::Invalid(format!("{path}: is a directory")));
            }
            let first = usize::try_from(first_index)
                .ok()
                .filter(|&first| first <= FILE_PIECES_MAX)
                .ok_or_else(|| {
                    Error::Protocol(format!(
                        "block list of {path}: a page that starts at piece {first_index}"
                    ))
                })?;
            if let PageStart::Index(index) = start {
                if first != index {
                    return Err(Error::Protocol(format!(
                        "block list of {path}: asked for the page from piece {index}, got the one from piece {first}"
                    )));
                }
            }
            Ok(Answer {
                status,
                first,
                blocks,
                more,
            })
        }
        other => Err(unexpected("GetBlocks", &other)),
    }
}

/// A page must be of the file the read started on (the same inode and
/// contents: a change, overwrite or rename since would mix two files) and
/// hold pieces that can be: each starts where the one before it ends, has
/// bytes, lies within its block (a hole is id 0 with no replicas,
/// checksum or block), and the file's last piece ends at its size.
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
        return bad(format!("a page of {} pieces", blocks.len()));
    }
    let count = usize::try_from(file.block_count).unwrap_or(usize::MAX);
    if first < count && blocks.is_empty() {
        return bad(format!("no pieces from piece {first} on"));
    }
    if first.saturating_add(blocks.len()) > count {
        return bad(format!(
            "a page of pieces {first} to {} of a file of {count}",
            first.saturating_add(blocks.len())
        ));
    }
    let mut expected_offset = (first == 0).then_some(0u64);
    for (offset, piece) in blocks.iter().enumerate() {
        let index = first + offset;
        let Some(end_bytes) = piece.offset_bytes.checked_add(piece.length_bytes) else {
            return bad(format!(
                "piece {index} at offset {} with {} bytes",
                piece.offset_bytes, piece.length_bytes
            ));
        };
        if piece.length_bytes == 0 {
            return bad(format!("piece {index} ({}) has no bytes", piece.id));
        }
        if let Some(expected) = expected_offset.filter(|&e| e != piece.offset_bytes) {
            return bad(format!(
                "piece {index} ({}) starts at offset {}, expected {expected}",
                piece.id, piece.offset_bytes
            ));
        }
        let last = index + 1 == count;
        if last && end_bytes != file.size_bytes || !last && end_bytes >= file.size_bytes {
            return bad(format!(
                "piece {index} of {count} ({}) ends at offset {end_bytes} of a file of {} bytes",
                piece.id, file.size_bytes
            ));
        }
        if piece.is_hole() {
            if !piece.locations.is_empty()
                || piece.crc32c != 0
                || piece.block_offset_bytes != 0
                || piece.block_length_bytes != 0
            {
                return bad(format!(
                    "hole {index} with {} replicas, CRC32C {:#010x}, block offset {} and block length {}",
                    piece.locations.len(),
                    piece.crc32c,
                    piece.block_offset_bytes,
                    piece.block_length_bytes
                ));
            }
        } else {
            let fits = piece
                .block_offset_bytes
                .checked_add(piece.length_bytes)
                .is_some_and(|end| end <= piece.block_length_bytes)
                && piece.block_length_bytes <= BLOCK_BYTES_MAX;
            if !fits {
                return bad(format!(
                    "piece {index} ({}) is {} bytes at offset {} of a block of {} bytes",
                    piece.id,
                    piece.length_bytes,
                    piece.block_offset_bytes,
                    piece.block_length_bytes
                ));
            }
        }
        expected_offset = Some(end_bytes);
    }
    if more != (first + blocks.len() < count) {
        return bad(format!(
            "a page of pieces {first} to {} of {count} says {} follow",
            first + blocks.len(),
            if more { "more" } else { "none" }
        ));
    }
    Ok(())
}

/// A file's size and its number of pieces must go together: none for an
/// empty file, and at most one per byte (and `FILE_PIECES_MAX`).
fn check_size(path: &DfsPath, status: &EntryStatus) -> Result<()> {
    let fits = (status.block_count == 0) == (status.size_bytes == 0)
        && status.block_count <= status.size_bytes
        && status.block_count <= FILE_PIECES_MAX as u64;
    if fits {
        Ok(())
    } else {
        Err(Error::Protocol(format!(
            "block list of {path}: {} pieces cannot hold {} bytes",
            status.block_count, status.size_bytes
        )))
    }
}

/// The pieces of a file being read, from the master a page at a time as
/// the read reaches them, a few pages kept. Shared by the readers of one
/// file (a block-parallel copy reads several pieces at once).
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
    identity: Option<Arc<Identity>>,
    wait: Duration,
    /// Newest last, at most `PAGES_KEPT_MAX`.
    kept: VecDeque<Page>,
}

impl BlockList {
    /// The first page of `path`, through `client`.
    fn open(client: &mut Client, path: &DfsPath, inode: Option<u64>) -> Result<BlockList> {
        let warnings = client.warning_sink();
        let answer = fetch_page(
            client.master_link(),
            path,
            inode,
            PageStart::Offset(0),
            GET_BLOCKS_PAGE_MAX,
            &|text: &str| warnings(text),
        )?;
        let status = answer.status;
        check_size(path, &status)?;
        if answer.first != 0 {
            return Err(Error::Protocol(format!(
                "block list of {path}: the page from offset 0 starts at piece {}",
                answer.first
            )));
        }
        check_page(path, &status, &status, 0, &answer.blocks, answer.more)?;
        Ok(BlockList {
            path: path.clone(),
            pages: Mutex::new(Pages {
                link: None,
                address: client.master_address().to_string(),
                credentials: client.credentials().clone(),
                identity: client.identity().cloned(),
                wait: client.master_wait(),
                kept: VecDeque::from([Page {
                    first: 0,
                    blocks: answer.blocks,
                }]),
            }),
            status,
        })
    }

    fn count(&self) -> usize {
        usize::try_from(self.status.block_count).unwrap_or(usize::MAX)
    }

    /// Piece `index` and its locations, fetching its page if need be (or
    /// again, with `fresh`: the locations kept may be stale).
    fn block(&self, index: usize, fresh: bool) -> Result<LocatedBlock> {
        if index >= self.count() {
            return Err(Error::Invalid(format!(
                "{}: piece {index} is past the last of {}",
                self.path,
                self.count()
            )));
        }
        let mut pages = sync::lock(&self.pages);
        if !fresh {
            if let Some(piece) = pages.kept.iter().find_map(|page| page.by_index(index)) {
                return Ok(piece.clone());
            }
        }
        let page = self.fetch(&mut pages, PageStart::Index(index))?;
        page.by_index(index)
            .cloned()
            .ok_or_else(|| Error::Protocol(format!("{}: no piece {index}", self.path)))
    }

    /// The index of the piece that holds file offset `offset_bytes`, and
    /// the piece, fetching its page if need be.
    fn locate(&self, offset_bytes: u64) -> Result<(usize, LocatedBlock)> {
        if offset_bytes >= self.status.size_bytes {
            return Err(Error::Invalid(format!(
                "{}: offset {offset_bytes} is past the end of its {} bytes",
                self.path, self.status.size_bytes
            )));
        }
        let mut pages = sync::lock(&self.pages);
        if let Some((index, piece)) = pages
            .kept
            .iter()
            .find_map(|page| page.by_offset(offset_bytes))
        {
            return Ok((index, piece.clone()));
        }
        let page = self.fetch(&mut pages, PageStart::Offset(offset_bytes))?;
        page.by_offset(offset_bytes)
            .map(|(index, piece)| (index, piece.clone()))
            .ok_or_else(|| {
                Error::Protocol(format!(
                    "block list of {}: the page from offset {offset_bytes} does not hold it",
                    self.path
                ))
            })
    }

    /// Fetches, checks and keeps the page from `start`.
    fn fetch<'p>(&self, pages: &'p mut Pages, start: PageStart) -> Result<&'p Page> {
        let Pages {
            link,
            address,
            credentials,
            identity,
            wait,
            kept,
        } = pages;
        let link = link.get_or_insert_with(|| {
            MasterLink::new(address, credentials.clone(), identity.clone(), *wait)
        });
        // The file opened, also once renamed or removed while held open.
        let inode = Some(self.status.inode);
        let answer = fetch_page(
            link,
            &self.path,
            inode,
            start,
            GET_BLOCKS_PAGE_MAX,
            &|text: &str| eprintln!("dfs: warning: {text}"),
        )?;
        check_page(
            &self.path,
            &self.status,
            &answer.status,
            answer.first,
            &answer.blocks,
            answer.more,
        )?;
        kept.retain(|page| page.first != answer.first);
        if kept.len() >= PAGES_KEPT_MAX {
            kept.pop_front();
        }
        kept.push_back(Page {
            first: answer.first,
            blocks: answer.blocks,
        });
        kept.back()
            .ok_or_else(|| Error::Invalid(format!("{}: no page kept", self.path)))
    }
}

impl Client {
    /// Opens a file for reading: one `GetBlocks` for the first page of its
    /// pieces, then data straight from minions.
    pub fn open(&mut self, path: &DfsPath) -> Result<FileReader> {
        let list = Arc::new(BlockList::open(self, path, None)?);
        self.reader_of(list)
    }

    /// Opens the file with inode `inode` for reading, whatever its names are
    /// now (`path` is what errors call it): also one renamed, or removed
    /// while a session holds it open (`hold_file`).
    pub fn open_inode(&mut self, path: &DfsPath, inode: u64) -> Result<FileReader> {
        let list = Arc::new(BlockList::open(self, path, Some(inode))?);
        self.reader_of(list)
    }

    /// The status of the file with inode `inode`, whatever its names are
    /// now (`path` is what errors call it): its link count, size and times
    /// also once the name it was known by was removed or renamed. One
    /// `GetBlocks` of a single piece.
    pub fn stat_inode(&mut self, path: &DfsPath, inode: u64) -> Result<EntryStatus> {
        let warnings = self.warning_sink();
        let answer = fetch_page(
            self.master_link(),
            path,
            Some(inode),
            PageStart::Offset(0),
            1,
            &|text: &str| warnings(text),
        )?;
        Ok(answer.status)
    }

    /// A reader of the whole file `list` is of.
    fn reader_of(&self, list: Arc<BlockList>) -> Result<FileReader> {
        let blocks_ahead = readahead::blocks_ahead_from_environment()?;
        let end = list.count();
        let length_bytes = list.status.size_bytes;
        let mut reader = FileReader::new(
            list,
            0..end,
            0..length_bytes,
            self.credentials().clone(),
            self.minions.link().clone(),
            MasterContact {
                address: self.master_address().to_string(),
                identity: self.identity().cloned(),
            },
        );
        reader.blocks_ahead = blocks_ahead;
        Ok(reader)
    }

    /// A file's status and all its pieces with their locations, page by
    /// page; the pages must be of one file and add up to its size.
    pub fn get_blocks(&mut self, path: &DfsPath) -> Result<FileBlocks> {
        self.get_blocks_of(path, None)
    }

    /// `get_blocks`, of the file with inode `inode` when given (whatever
    /// its names are now; `path` is what errors call it).
    pub(crate) fn get_blocks_of(
        &mut self,
        path: &DfsPath,
        inode: Option<u64>,
    ) -> Result<FileBlocks> {
        let list = BlockList::open(self, path, inode)?;
        let mut blocks = Vec::with_capacity(list.count().min(GET_BLOCKS_PAGE_MAX as usize));
        for index in 0..list.count() {
            blocks.push(list.block(index, false)?);
        }
        Ok(FileBlocks {
            status: list.status,
            blocks,
        })
    }

    /// The checksum of a cluster file: the CRC32C of its bytes. From the
    /// block CRCs the master recorded at commit, without reading a byte,
    /// when every piece is a whole block (a file written front to back);
    /// otherwise (parts of blocks, holes) by reading the file.
    pub fn file_checksum(&mut self, path: &DfsPath) -> Result<FileChecksum> {
        let list = BlockList::open(self, path, None)?;
        let mut checksum = FileChecksum {
            length_bytes: 0,
            crc32c: 0,
        };
        for index in 0..list.count() {
            let piece = list.block(index, false)?;
            if !piece.is_whole_block() {
                return self.read_checksum(Arc::new(list));
            }
            checksum.crc32c = crc::combine(checksum.crc32c, piece.crc32c, piece.length_bytes);
            checksum.length_bytes += piece.length_bytes;
        }
        Ok(checksum)
    }

    /// The checksum of the file `list` is of, from its bytes, read.
    fn read_checksum(&self, list: Arc<BlockList>) -> Result<FileChecksum> {
        let path = list.path.clone();
        let mut reader = self.reader_of(list)?;
        let mut sink = ChecksumSink::default();
        reader.copy_to(&mut sink, "the checksum")?;
        if sink.length_bytes != reader.length_bytes() {
            return Err(Error::Invalid(format!(
                "{path}: read {} of its {} bytes",
                sink.length_bytes,
                reader.length_bytes()
            )));
        }
        Ok(FileChecksum {
            length_bytes: sink.length_bytes,
            crc32c: sink.crc32c,
        })
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

/// The stream of one piece (or of a range of it) from one minion.
struct BlockStream {
    connection: Connection,
    /// Block offset of the next data frame.
    next_chunk_bytes: u64,
    /// Block offset where the last chunk asked for ends: a chunk's end or
    /// the block's. The connection is free for another request from there.
    end_bytes: u64,
    /// The CRC32C of every chunk of the block, as this replica stores
    /// them, checked to combine to the block CRC32C the master recorded.
    trusted_crcs: Vec<u32>,
}

/// Where and as whom a reader reaches the master on its own (to report a
/// corrupt replica).
#[derive(Clone, Debug)]
struct MasterContact {
    address: String,
    identity: Option<Arc<Identity>>,
}

/// A file being read; implements `std::io::Read` and `std::io::Seek`,
/// `read_at` reads at any offset, and `copy_to` writes the rest of the file
/// to a writer without an extra copy.
pub struct FileReader {
    list: Arc<BlockList>,
    /// The pieces this reader reads (the whole file, or one piece).
    first_index: usize,
    end_index: usize,
    /// The file offsets of this reader's bytes: where its first piece
    /// starts and its last one ends.
    start_bytes: u64,
    end_bytes: u64,
    credentials: Credentials,
    /// The piece being read, its file offset, and the piece with its
    /// locations once fetched.
    piece_index: usize,
    piece_start_bytes: u64,
    current: Option<LocatedBlock>,
    /// The current piece's locations were asked for again after every
    /// replica failed.
    refreshed: bool,
    /// Minions of the current piece's replicas that failed: not tried
    /// again when the locations are asked for again.
    tried: Vec<MinionId>,
    /// Bytes of the current piece that passed their checksum: handed out,
    /// or waiting in `chunk`.
    verified_bytes: u64,
    /// The last verified chunk, cut to the current piece's bytes (it ends
    /// at piece offset `verified_bytes`); bytes before `chunk_position`
    /// were handed out. Holds nothing unverified: it is cleared whenever a
    /// chunk fails.
    chunk: Vec<u8>,
    chunk_position: usize,
    stream: Option<BlockStream>,
    /// A connection that finished a piece, kept for the next piece if that
    /// one lives on the same minion.
    idle: Option<Connection>,
    /// The replica of the current piece in use or to try next.
    location_index: usize,
    /// Set once every replica of a piece failed; every later read fails.
    failed: Option<String>,
    buffer: Vec<u8>,
    /// How minion connections are made (how long a stalled replica holds
    /// up the read, and TLS).
    link: DataLink,
    /// Where corrupt replicas are reported.
    master: MasterContact,
    /// Pieces to fetch ahead of the one handed out (0: none).
    blocks_ahead: usize,
    /// The pieces fetched ahead, once the read went far enough.
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
    /// A reader of pieces `indexes` of `list`'s file, which hold file
    /// offsets `bytes`.
    fn new(
        list: Arc<BlockList>,
        indexes: std::ops::Range<usize>,
        bytes: std::ops::Range<u64>,
        credentials: Credentials,
        link: DataLink,
        master: MasterContact,
    ) -> FileReader {
        FileReader {
            list,
            first_index: indexes.start,
            end_index: indexes.end,
            start_bytes: bytes.start,
            end_bytes: bytes.end,
            credentials,
            piece_index: indexes.start,
            piece_start_bytes: bytes.start,
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
            link,
            master,
            blocks_ahead: 0,
            ahead: None,
            run_start_bytes: bytes.start,
            range_end_bytes: None,
            past_end_bytes: None,
            started: false,
        }
    }

    /// A reader of piece `index` alone, which is `piece`.
    fn piece_reader(&self, index: usize, piece: LocatedBlock) -> FileReader {
        let start_bytes = piece.offset_bytes;
        let end_bytes = piece.offset_bytes.saturating_add(piece.length_bytes);
        let mut reader = FileReader::new(
            Arc::clone(&self.list),
            index..index + 1,
            start_bytes..end_bytes,
            self.credentials.clone(),
            self.link.clone(),
            self.master.clone(),
        );
        reader.current = Some(piece);
        reader
    }

    pub fn status(&self) -> &EntryStatus {
        &self.list.status
    }

    /// Pieces of the file: its blocks, for a file written front to back;
    /// after writes into its middle, parts of blocks and holes too.
    pub fn block_count(&self) -> usize {
        self.list.count()
    }

    /// Offset of piece `index` in the file (the file's length for the
    /// index past its last piece); may ask the master for the piece's page.
    pub fn block_offset_bytes(&self, index: usize) -> Result<u64> {
        if index == self.list.count() {
            return Ok(self.length_bytes());
        }
        Ok(self.list.block(index, false)?.offset_bytes)
    }

    /// The index of the piece that holds file offset `offset_bytes` (an
    /// error at or past the end); may ask the master for its page.
    pub fn block_index_at(&self, offset_bytes: u64) -> Result<usize> {
        Ok(self.list.locate(offset_bytes)?.0)
    }

    pub fn length_bytes(&self) -> u64 {
        self.list.status.size_bytes
    }

    /// A reader of piece `index` alone (its bytes only, from the piece's
    /// first byte), with the same replicas and checks, so that several
    /// pieces of one file can be read at once; None past the last piece.
    /// May ask the master for the piece's page.
    pub fn block_reader(&self, index: usize) -> Result<Option<FileReader>> {
        if index >= self.list.count() {
            return Ok(None);
        }
        let piece = self.list.block(index, false)?;
        Ok(Some(self.piece_reader(index, piece)))
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
    /// piece's end), and 0 at or past it or for an empty `buffer`: a range
    /// across pieces is read whole, and a caller loops only to reach the
    /// end. Each byte is checked, and a failing replica left for the next,
    /// exactly as `Read` does.
    ///
    /// A call at the offset where the reader stands (where the last call,
    /// `Read` or `Seek` left it) goes on with the stream open there, to its
    /// piece's end: a run of calls costs one request per piece. A call
    /// elsewhere drops that stream and the read-ahead, and asks a replica
    /// for the chunks its range covers only (bytes of the last chunk
    /// verified are handed out again from memory). Read-ahead starts only
    /// once a run handed out `READ_AHEAD_AFTER_BYTES`.
    ///
    /// An error fails this call (what it put in `buffer` is not to be
    /// used); the next call tries the piece's replicas again. Offsets are
    /// of the file, also for a `block_reader`, which refuses one before its
    /// piece.
    pub fn read_at(&mut self, offset_bytes: u64, buffer: &mut [u8]) -> Result<usize> {
        let end_bytes = self.end_bytes;
        if buffer.is_empty() || offset_bytes >= end_bytes {
            return Ok(0);
        }
        if self.started && self.failed.is_none() && offset_bytes == self.position_bytes() {
            // A run: its stream goes on to its piece's end.
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
        self.piece_start_bytes
            .saturating_add(self.verified_bytes)
            .saturating_sub(unread_bytes)
    }

    /// Moves the reader to file offset `target_bytes`, with
    /// `range_end_bytes` as the end of the range wanted there (None: read
    /// on to the piece's end). Bytes of the last verified chunk are handed
    /// out again from memory; otherwise the stream in flight and the
    /// read-ahead are dropped and the piece `target_bytes` is in streams
    /// from there when read. A reader that failed tries the replicas of
    /// its piece again.
    fn move_to(&mut self, target_bytes: u64, range_end_bytes: Option<u64>) -> Result<()> {
        if target_bytes < self.start_bytes {
            return Err(Error::Invalid(format!(
                "{}: offset {target_bytes} is before this reader's first byte, {}",
                self.list.path, self.start_bytes
            )));
        }
        let past_end = target_bytes >= self.end_bytes;
        // The piece the move lands on: the current one, or found in the
        // list (by its pages, which may be fetched).
        let within_current = self.current.as_ref().filter(|piece| {
            self.piece_index < self.end_index
                && target_bytes >= piece.offset_bytes
                && target_bytes - piece.offset_bytes < piece.length_bytes
        });
        let (index, piece_start_bytes, landed) = if past_end {
            (self.end_index, self.end_bytes, None)
        } else if let Some(piece) = within_current {
            (self.piece_index, piece.offset_bytes, None)
        } else {
            let (index, piece) = self.list.locate(target_bytes)?;
            if !(self.first_index..self.end_index).contains(&index) {
                return Err(Error::Protocol(format!(
                    "{}: offset {target_bytes} is in piece {index}, not in this reader's pieces {} to {}",
                    self.list.path, self.first_index, self.end_index
                )));
            }
            (index, piece.offset_bytes, Some(piece))
        };
        let within_bytes = target_bytes.saturating_sub(piece_start_bytes);
        self.started = true;
        self.range_end_bytes = range_end_bytes;
        let retry = self.failed.take().is_some();
        if !retry && !past_end && index == self.piece_index {
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
        if retry || index != self.piece_index {
            self.current = landed;
            self.refreshed = false;
            self.tried.clear();
            self.location_index = 0;
        }
        self.piece_index = index;
        self.piece_start_bytes = piece_start_bytes;
        self.verified_bytes = within_bytes;
        self.chunk.clear();
        self.chunk_position = 0;
        Ok(())
    }

    /// The piece being read, fetched from the block list when the read
    /// reaches it; None past the last piece of this reader.
    fn current_block(&mut self) -> Result<Option<LocatedBlock>> {
        if self.piece_index >= self.end_index {
            return Ok(None);
        }
        if self.current.is_none() {
            let piece = self.list.block(self.piece_index, false)?;
            if piece.offset_bytes != self.piece_start_bytes {
                return Err(Error::Protocol(format!(
                    "block list of {}: piece {} ({}) starts at offset {}, the one before it ends at {}",
                    self.list.path,
                    self.piece_index,
                    piece.id,
                    piece.offset_bytes,
                    self.piece_start_bytes
                )));
            }
            self.current = Some(piece);
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
            if self.ahead.as_ref().and_then(ReadAhead::front_index) == Some(self.piece_index) {
                self.take_ahead()?;
                continue;
            }
            let Some(block) = self.current_block()? else {
                return Ok(false);
            };
            if self.verified_bytes >= block.length_bytes {
                self.next_block(block.length_bytes);
                continue;
            }
            if block.is_hole() {
                self.hand_out_zeros(&block);
                continue;
            }
            if block.locations.is_empty() && !self.ask_again()? {
                return Err(self.fail(format!(
                    "{}: block {} ({}) unreadable: no minion holds a replica",
                    self.list.path, self.piece_index, block.id
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

    /// The next chunk of `hole`: zeros, from no one.
    fn hand_out_zeros(&mut self, hole: &LocatedBlock) {
        let zeros = CHUNK_LENGTH_BYTES.min(hole.length_bytes.saturating_sub(self.verified_bytes));
        self.chunk.clear();
        self.chunk.resize(zeros as usize, 0);
        self.chunk_position = 0;
        self.verified_bytes += zeros;
    }

    /// Starts reading ahead once a run of reads (from the first byte or
    /// the last move) handed out `READ_AHEAD_AFTER_BYTES`, never within a
    /// range a move asked for, then keeps `blocks_ahead` pieces past the
    /// one handed out streaming.
    fn keep_ahead(&mut self) -> Result<()> {
        if self.ahead.is_none() {
            let position_bytes = self.piece_start_bytes.saturating_add(self.verified_bytes);
            if self.blocks_ahead == 0
                || self.range_end_bytes.is_some()
                || position_bytes.saturating_sub(self.run_start_bytes) < READ_AHEAD_AFTER_BYTES
                || self.piece_index + 1 >= self.end_index
            {
                return Ok(());
            }
            // The piece in progress goes on from its own stream.
            self.ahead = Some(ReadAhead::new(
                self.piece_index + 1,
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

    /// Starts a stream for every piece the window of `ahead` lacks, each on
    /// the replica whose minion has the fewest of this reader's streams.
    fn fill_window(&self, ahead: &mut ReadAhead) -> Result<()> {
        while let Some(index) = ahead.wanted(self.piece_index) {
            let mut busy: Vec<MinionId> = ahead.minions().collect();
            // The piece this reader streams itself, if any.
            busy.extend(
                self.current
                    .as_ref()
                    .and_then(|block| block.locations.get(self.location_index))
                    .map(|location| location.id),
            );
            let block = readahead::spread(self.list.block(index, false)?, &busy);
            let reader = self.piece_reader(index, block.clone());
            ahead.start(index, &block, reader)?;
        }
        Ok(())
    }

    /// Hands out the next chunk the oldest read-ahead stream verified, or
    /// moves to the next piece once that stream's piece was handed out.
    fn take_ahead(&mut self) -> Result<()> {
        let Some(ahead) = self.ahead.as_mut() else {
            return Ok(());
        };
        let length_bytes = ahead.front_length_bytes();
        match ahead.next_chunk() {
            Ok(Some(Verified { bytes, start })) => {
                // Pieces come from the streams from now on.
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
                self.next_block(length_bytes.unwrap_or(0));
                Ok(())
            }
            // The stream tried every replica (and asked where the piece is
            // again) as this reader would have: its error is final.
            Err(error) => Err(self.fail(error.to_string())),
        }
    }

    /// The next verified chunk of this reader, its buffer taken whole so
    /// that read-ahead passes it to the reading thread without a copy;
    /// None at the end.
    /// `spare`, a buffer the reading thread is done with, if any, holds the
    /// next chunk.
    pub(crate) fn take_chunk(&mut self, spare: Option<Vec<u8>>) -> Result<Option<Verified>> {
        if !self.fill()? {
            return Ok(None);
        }
        let mut next = spare.unwrap_or_else(|| Vec::with_capacity(CHUNK_BYTES as usize));
        // What it held was handed out: it must not read as a chunk again.
        next.clear();
        let bytes = std::mem::replace(&mut self.chunk, next);
        let start = std::mem::take(&mut self.chunk_position);
        Ok(Some(Verified { bytes, start }))
    }

    /// Drops the current stream (not the replica): the next chunk is asked
    /// for again from the same replica, from the first byte not handed out.
    pub(crate) fn reopen_stream(&mut self) {
        self.stream = None;
    }

    /// Moves on to the next piece once the current one, of
    /// `length_bytes`, was handed out.
    fn next_block(&mut self, length_bytes: u64) {
        // A stream that sent its whole range left its connection in `idle`.
        self.stream = None;
        self.piece_index += 1;
        self.piece_start_bytes = self.piece_start_bytes.saturating_add(length_bytes);
        self.current = None;
        self.refreshed = false;
        self.tried.clear();
        self.verified_bytes = 0;
        self.location_index = 0;
    }

    /// Asks the master where the current piece is once more, after every
    /// replica known failed (or none was known): replicas on other minions
    /// than those tried are tried next. False when it was asked already
    /// for this piece, or it knows no other replica.
    fn ask_again(&mut self) -> Result<bool> {
        if self.refreshed {
            return Ok(false);
        }
        self.refreshed = true;
        let mut block = self.list.block(self.piece_index, true)?;
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
    /// Our credentials with `block`'s access token (when the master gave
    /// one): a minion of a keyed cluster reads the block only with it, and
    /// the master takes a report of a bad replica of it only with it.
    fn credentials_for(&self, block: &LocatedBlock) -> Credentials {
        Credentials {
            token: block.token.clone(),
            ..self.credentials.clone()
        }
    }

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
        let identity = self.master.identity.as_deref();
        let _ = open_master_with_timeouts(&self.master.address, identity, timeout).and_then(
            |mut connection| {
                connection.call::<_, MasterResponse>(
                    &self.credentials_for(block),
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
            self.piece_index,
            block.id,
            self.tried.len()
        );
        Err(self.fail(text))
    }

    fn fail(&mut self, message: String) -> Error {
        self.failed = Some(message.clone());
        Error::Invalid(message)
    }

    /// Reads the next chunk of `block`'s piece from the current replica,
    /// starting its stream if needed, checks it against the trusted
    /// checksums, and keeps the piece's bytes of it.
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
        let piece_start_bytes = block.block_offset_bytes;
        let piece_end_bytes = block.block_offset_bytes + block.length_bytes;
        let chunk_start_bytes = stream.next_chunk_bytes;
        let wanted_bytes = piece_start_bytes + self.verified_bytes;
        let expected_bytes = block
            .block_length_bytes
            .saturating_sub(chunk_start_bytes)
            .min(CHUNK_LENGTH_BYTES);
        if header.kind != FrameKind::Data
            || u64::from(header.payload_bytes) != expected_bytes
            || chunk_start_bytes + expected_bytes <= wanted_bytes
        {
            return Err(Error::Protocol(format!(
                "{address} sent a {:?} frame of {} bytes at offset {chunk_start_bytes} of {}, expected {expected_bytes} bytes of data from offset {wanted_bytes} on",
                header.kind, header.payload_bytes, block.id
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
        let index = (chunk_start_bytes / CHUNK_LENGTH_BYTES) as usize;
        let trusted = stream.trusted_crcs.get(index).copied();
        let crc = crc32c::crc32c(&self.chunk);
        if trusted != Some(crc) {
            return Err(Error::corrupted(
                format!("chunk at offset {chunk_start_bytes} of {}", block.id),
                format!(
                    "CRC32C {crc:#010x}, the block's checksums say {:#010x}",
                    trusted.unwrap_or(0)
                ),
            ));
        }
        let chunk_end_bytes = chunk_start_bytes + expected_bytes;
        // Only the piece's bytes are kept: the block's bytes after it and
        // before it (in the chunk it starts or ends in) go.
        let kept_end_bytes = chunk_end_bytes.min(piece_end_bytes);
        let kept_start_bytes = chunk_start_bytes.max(piece_start_bytes);
        self.chunk.truncate(
            usize::try_from(kept_end_bytes.saturating_sub(chunk_start_bytes)).unwrap_or(usize::MAX),
        );
        if kept_start_bytes > chunk_start_bytes {
            let before = usize::try_from(kept_start_bytes - chunk_start_bytes)
                .unwrap_or(usize::MAX)
                .min(self.chunk.len());
            self.chunk.drain(..before);
        }
        // The first chunk after a resume may start before the bytes we need.
        let skip = usize::try_from(wanted_bytes.saturating_sub(kept_start_bytes))
            .unwrap_or(usize::MAX)
            .min(self.chunk.len());
        stream.next_chunk_bytes = chunk_end_bytes;
        let range_done = chunk_end_bytes >= stream.end_bytes;
        self.chunk_position = skip;
        self.verified_bytes = kept_end_bytes.saturating_sub(piece_start_bytes);
        if range_done {
            // Every chunk asked for came: the connection is free for the
            // next request (the rest of the piece, or the next piece).
            if let Some(stream) = self.stream.take() {
                self.idle = Some(stream.connection);
            }
        }
        Ok(())
    }

    /// Asks the current replica for the rest of `block`'s piece, or for
    /// the chunks up to the end of the range a move asked for.
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
        let connection = self.link.open(&address, self.link.io_timeout)?;
        self.request_range(connection, block)
    }

    fn request_range(
        &mut self,
        mut connection: Connection,
        block: &LocatedBlock,
    ) -> Result<BlockStream> {
        let range = stream_range(block, self.verified_bytes, self.range_end_bytes);
        let request_id = connection.send(
            &self.credentials_for(block),
            MinionRequest::ReadBlock {
                block: block.id,
                generation: block.generation,
                offset_bytes: range.start_bytes,
                length_bytes: range.end_bytes - range.start_bytes,
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
        if block_length_bytes != block.block_length_bytes {
            return Err(Error::corrupted(
                block.id.to_string(),
                format!(
                    "the minion holds {block_length_bytes} bytes, the master recorded {}",
                    block.block_length_bytes
                ),
            ));
        }
        trust_checksums(block, &chunk_crcs)?;
        let expected_first_bytes = range.start_bytes - range.start_bytes % CHUNK_LENGTH_BYTES;
        if first_offset_bytes != expected_first_bytes {
            return Err(Error::Protocol(format!(
                "read of {} from offset {} starts at {first_offset_bytes}, expected {expected_first_bytes}",
                block.id, range.start_bytes
            )));
        }
        Ok(BlockStream {
            connection,
            next_chunk_bytes: first_offset_bytes,
            end_bytes: range.chunks_end_bytes,
            trusted_crcs: chunk_crcs,
        })
    }
}

/// What a stream asks a replica for, in block offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct StreamRange {
    /// The first byte wanted.
    start_bytes: u64,
    /// Where the bytes wanted end.
    end_bytes: u64,
    /// Where the last chunk that holds them ends: the minion sends whole
    /// chunks.
    chunks_end_bytes: u64,
}

/// The range of `piece`'s block a stream asks for, from the piece's byte
/// `from_bytes` on, for a range wanted up to file offset `range_end_bytes`:
/// to the chunk that holds the range's last byte in the piece, or to the
/// piece's end (also with no range, or one that ends at or before
/// `from_bytes`).
fn stream_range(
    piece: &LocatedBlock,
    from_bytes: u64,
    range_end_bytes: Option<u64>,
) -> StreamRange {
    let start_bytes = piece.block_offset_bytes.saturating_add(from_bytes);
    let piece_end_bytes = piece.block_offset_bytes.saturating_add(piece.length_bytes);
    let end_bytes = match range_end_bytes.and_then(|end| end.checked_sub(piece.offset_bytes)) {
        Some(wanted_bytes) if wanted_bytes > from_bytes => piece
            .block_offset_bytes
            .saturating_add(wanted_bytes)
            .min(piece_end_bytes),
        _ => piece_end_bytes,
    };
    let chunks_end_bytes = end_bytes
        .div_ceil(CHUNK_LENGTH_BYTES)
        .saturating_mul(CHUNK_LENGTH_BYTES)
        .min(piece.block_length_bytes);
    StreamRange {
        start_bytes,
        end_bytes,
        chunks_end_bytes,
    }
}

/// Where piece offset `within_bytes` is in the last verified chunk, which
/// holds `chunk_bytes` of the piece and ends at piece offset
/// `verified_bytes`; None when it is not there.
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
/// of the whole block (not only of the piece read) and they combine to the
/// block CRC32C the master recorded at commit.
fn trust_checksums(block: &LocatedBlock, chunk_crcs: &[u32]) -> Result<()> {
    let chunks = block.block_length_bytes.div_ceil(CHUNK_LENGTH_BYTES);
    if chunk_crcs.len() as u64 != chunks {
        return Err(Error::corrupted(
            format!("checksums of {}", block.id),
            format!("{} chunk checksums for {chunks} chunks", chunk_crcs.len()),
        ));
    }
    let combined = block_format::combine_chunks(chunk_crcs, block.block_length_bytes, CHUNK_BYTES);
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
/// before its piece). A seek to or past the end is allowed (reads there
/// return 0). A seek elsewhere than where the reader stands drops its
/// stream and read-ahead as `read_at` does, and reads after it stream from
/// there to their piece's end; after a failure, any seek lets the next read
/// try the replicas of its piece again.
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
    use dfs_engine::msg::{BlockId, Generation, MinionAddress};

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
            modified_ns: 0,
            accessed_ns: 0,
            changed_ns: 0,
            links: 1,
            version: 0,
            rdev: 0,
        }
    }

    /// A whole block at file offset `offset_bytes`.
    fn block(offset_bytes: u64, length_bytes: u64) -> LocatedBlock {
        piece(
            offset_bytes + 1,
            offset_bytes,
            length_bytes,
            0,
            length_bytes,
        )
    }

    /// `length_bytes` of block `id` (of `block_length_bytes`) from its
    /// byte `block_offset_bytes`, at file offset `offset_bytes`.
    fn piece(
        id: u64,
        offset_bytes: u64,
        length_bytes: u64,
        block_offset_bytes: u64,
        block_length_bytes: u64,
    ) -> LocatedBlock {
        LocatedBlock {
            id: BlockId(id),
            generation: Generation(9),
            offset_bytes,
            length_bytes,
            crc32c: 0x1234,
            locations: vec![MinionAddress {
                id: MinionId(1),
                address: "127.0.0.1:1".into(),
            }],
            block_offset_bytes,
            block_length_bytes,
            token: Vec::new(),
        }
    }

    fn hole(offset_bytes: u64, length_bytes: u64) -> LocatedBlock {
        LocatedBlock {
            id: BlockId(0),
            generation: Generation(0),
            offset_bytes,
            length_bytes,
            crc32c: 0,
            locations: vec![],
            block_offset_bytes: 0,
            block_length_bytes: 0,
            token: Vec::new(),
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
        let changed = EntryStatus {
            version: 1,
            ..file.clone()
        };
        let error = check_page(&path, &file, &changed, 2, &all[2..], false).expect_err("changed");
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
    }

    #[test]
    fn pages_of_parts_of_blocks_and_holes_must_be_contiguous_and_within_their_blocks() {
        let path = DfsPath::parse("/f").expect("path");
        // Block 1 whole, part of block 2, a hole, another part of block 2,
        // and the head of block 3: 10 + 5 + 7 + 4 + 4 = 30 bytes.
        let file = status(30, 10, 5);
        check_size(&path, &file).expect("fits");
        let all = [
            piece(1, 0, 10, 0, 10),
            piece(2, 10, 5, 3, 10),
            hole(15, 7),
            piece(2, 22, 4, 6, 10),
            piece(3, 26, 4, 0, 10),
        ];
        check_page(&path, &file, &file, 0, &all, false).expect("one page");
        check_page(&path, &file, &file, 0, &all[..3], true).expect("a first page");
        check_page(&path, &file, &file, 2, &all[2..], false).expect("a page from a hole");
        check_page(&path, &file, &file, 3, &all[3..4], true).expect("a middle page");
        let with = |index: usize, replacement: LocatedBlock| {
            let mut pieces = all.to_vec();
            pieces[index] = replacement;
            pieces
        };
        let hole_with_replica = LocatedBlock {
            locations: all[1].locations.clone(),
            ..hole(15, 7)
        };
        let hole_with_crc = LocatedBlock {
            crc32c: 1,
            ..hole(15, 7)
        };
        let hole_in_a_block = LocatedBlock {
            block_length_bytes: 10,
            ..hole(15, 7)
        };
        for (why, pieces) in [
            ("a gap", with(2, hole(16, 6))),
            ("an overlap", with(2, hole(14, 8))),
            ("past its block", with(1, piece(2, 10, 5, 6, 10))),
            (
                "offsets that overflow",
                with(1, piece(2, 10, 5, u64::MAX, 10)),
            ),
            ("a hole with a replica", with(2, hole_with_replica)),
            ("a hole with a checksum", with(2, hole_with_crc)),
            ("a hole in a block", with(2, hole_in_a_block)),
            (
                "an empty piece",
                vec![
                    all[0].clone(),
                    piece(2, 10, 0, 3, 10),
                    piece(2, 10, 5, 3, 10),
                    hole(15, 11),
                    all[4].clone(),
                ],
            ),
            ("short of the size", with(4, piece(3, 26, 3, 0, 10))),
            ("past the size", with(4, piece(3, 26, 5, 0, 10))),
            ("a first piece not at 0", with(0, piece(1, 1, 9, 0, 10))),
        ] {
            let error = check_page(&path, &file, &file, 0, &pieces, false)
                .expect_err(&format!("{why}: {pieces:?}"));
            assert!(matches!(error, Error::Protocol(_)), "{why}: {error}");
        }
        // A piece that ends the file before its last.
        let short = status(26, 10, 5);
        assert!(check_page(&path, &short, &short, 0, &all[..4], true).is_err());
        // A page past the file's pieces, and `more` that does not fit.
        assert!(check_page(&path, &file, &file, 3, &all[2..], false).is_err());
        assert!(check_page(&path, &file, &file, 0, &all[..3], false).is_err());
        assert!(check_page(&path, &file, &file, 0, &all, true).is_err());
    }

    #[test]
    fn a_size_needs_pieces_and_pieces_need_bytes() {
        let path = DfsPath::parse("/f").expect("path");
        check_size(&path, &status(0, 10, 0)).expect("empty");
        check_size(&path, &status(31, 10, 3)).expect("three pieces of any length");
        check_size(&path, &status(3, 10, 3)).expect("three pieces of a byte");
        check_size(&path, &status(1 << 40, 10, 1)).expect("one long hole");
        assert!(check_size(&path, &status(5, 10, 0)).is_err());
        assert!(check_size(&path, &status(0, 10, 1)).is_err());
        assert!(check_size(&path, &status(3, 10, 4)).is_err());
        let many = FILE_PIECES_MAX as u64 + 1;
        assert!(check_size(&path, &status(many * 10, 10, many)).is_err());
    }

    #[test]
    fn pages_find_pieces_by_index_and_by_offset() {
        let page = Page {
            first: 4,
            blocks: vec![
                piece(2, 100, 5, 3, 10),
                hole(105, 7),
                piece(2, 112, 4, 6, 10),
            ],
        };
        assert_eq!(page.by_index(3), None);
        assert_eq!(page.by_index(5), Some(&page.blocks[1]));
        assert_eq!(page.by_index(7), None);
        for (offset, expected) in [
            (99, None),
            (100, Some(4)),
            (104, Some(4)),
            (105, Some(5)),
            (111, Some(5)),
            (112, Some(6)),
            (115, Some(6)),
            (116, None),
        ] {
            assert_eq!(
                page.by_offset(offset).map(|(index, _)| index),
                expected,
                "offset {offset}"
            );
        }
        assert!(Page {
            first: 0,
            blocks: vec![]
        }
        .by_offset(0)
        .is_none());
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
        // A piece of the block: the checksums are still of the whole block.
        let part = LocatedBlock {
            crc32c: crc32c::crc32c(&data),
            ..piece(1, 40, 1000, 70_000, data.len() as u64)
        };
        trust_checksums(&part, &crcs).expect("a piece's block");
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
    fn a_range_streams_the_chunks_that_cover_it_and_no_range_the_rest_of_the_piece() {
        let chunk = CHUNK_LENGTH_BYTES;
        let length = 3 * chunk + 10;
        // Piece 1 of a file of whole blocks starts at `length`.
        let whole = block(length, length);
        for (from, range_end, expected_end, expected_chunks_end) in [
            (0, None, length, length),
            (0, Some(length + 1), 1, chunk),
            (0, Some(length + chunk), chunk, chunk),
            (0, Some(length + chunk + 1), chunk + 1, 2 * chunk),
            (0, Some(length + 3 * chunk + 1), 3 * chunk + 1, length),
            (0, Some(2 * length + 5), length, length),
            // A range that ended before the piece asks for all of it.
            (0, Some(length), length, length),
            (0, Some(3), length, length),
            // From the middle: to the range, or all the rest.
            (chunk + 5, Some(length + chunk + 6), chunk + 6, 2 * chunk),
            (chunk + 5, Some(length + chunk + 5), length, length),
        ] {
            assert_eq!(
                stream_range(&whole, from, range_end),
                StreamRange {
                    start_bytes: from,
                    end_bytes: expected_end,
                    chunks_end_bytes: expected_chunks_end,
                },
                "from {from}, range to {range_end:?}"
            );
        }
        // 100 bytes from block offset chunk - 50, at file offset 1000, of a
        // block of four chunks: the two chunks it crosses.
        let part = piece(2, 1000, 100, chunk - 50, 4 * chunk);
        for (from, range_end, expected) in [
            (0, None, (chunk - 50, chunk + 50, 2 * chunk)),
            (0, Some(1010), (chunk - 50, chunk - 40, chunk)),
            (60, Some(1070), (chunk + 10, chunk + 20, 2 * chunk)),
            (60, Some(5000), (chunk + 10, chunk + 50, 2 * chunk)),
        ] {
            let (start_bytes, end_bytes, chunks_end_bytes) = expected;
            assert_eq!(
                stream_range(&part, from, range_end),
                StreamRange {
                    start_bytes,
                    end_bytes,
                    chunks_end_bytes,
                },
                "from {from}, range to {range_end:?}"
            );
        }
    }

    #[test]
    fn moves_within_the_last_verified_chunk_are_served_from_memory() {
        // A chunk of 100 bytes that ends at piece offset 300.
        assert_eq!(position_in_chunk(300, 100, 200), Some(0));
        assert_eq!(position_in_chunk(300, 100, 299), Some(99));
        assert_eq!(position_in_chunk(300, 100, 300), None);
        assert_eq!(position_in_chunk(300, 100, 199), None);
        assert_eq!(position_in_chunk(300, 0, 299), None, "no chunk");
        // Left over from the previous piece: the new one has 0 bytes verified.
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
