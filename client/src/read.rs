//! Reading a file: its block list comes from the master once; each block is
//! streamed from the first replica that works, chunk by chunk, and every
//! chunk's CRC32C is checked before any of its bytes is handed out. When a
//! replica fails (connection, timeout, protocol, checksum, error answer) the
//! read goes on from the next replica at the first byte not yet handed out.
//!
//! A replica whose bytes fail a checksum (or that its minion says is
//! corrupt) is reported to the master, best effort, so it gets replaced.
//! As a second line of defence, the chunk CRCs of a block are combined and
//! compared with the block CRC32C the master recorded at commit before the
//! block's last chunk is handed out.

use std::io::{self, Read, Write};
use std::time::Duration;

use dfs_engine::crc::{self, CrcAppender};
use dfs_engine::limits::{CHUNK_BYTES, CONNECT_TIMEOUT_MS};
use dfs_engine::msg::{
    BadReplica, Credentials, EntryStatus, ErrorKind, LocatedBlock, MasterRequest, MasterResponse,
    MinionRequest, MinionResponse,
};
use dfs_engine::path::DfsPath;
use dfs_engine::rpc::Connection;
use dfs_engine::wire::{self, FrameKind};
use dfs_engine::{Error, Result};

use crate::client::{unexpected, Client};
use crate::transfer::{minion_message, receive_answer};

const CHUNK_LENGTH_BYTES: u64 = CHUNK_BYTES as u64;
/// How an error of the whole-block check names what was corrupt.
const BLOCK_CRC_WHAT: &str = "bytes of";

/// True for errors that say a replica's bytes are wrong (as opposed to a
/// minion that is down, busy or slow).
fn is_corruption(error: &Error) -> bool {
    match error {
        Error::Corrupted { .. } => true,
        Error::Remote(remote) => remote.kind == ErrorKind::Corrupted,
        _ => false,
    }
}

impl Client {
    /// Opens a file for reading: one `GetBlocks`, then data straight from
    /// minions.
    pub fn open(&mut self, path: &DfsPath) -> Result<FileReader> {
        let blocks = self.get_blocks(path)?;
        Ok(FileReader {
            path: path.clone(),
            status: blocks.status,
            blocks: blocks.blocks,
            credentials: self.credentials().clone(),
            block_index: 0,
            verified_bytes: 0,
            chunk: Vec::with_capacity(CHUNK_BYTES as usize),
            chunk_position: 0,
            stream: None,
            idle: None,
            location_index: 0,
            failed: None,
            buffer: Vec::new(),
            io_timeout: self.minions.io_timeout(),
            master_address: self.master_address().to_string(),
            block_crc32c: CrcAppender::new(),
            mixed_sources: false,
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

impl Client {
    /// The checksum of a cluster file: the CRC32C of its bytes, from the
    /// block CRCs the master recorded at commit.
    pub fn file_checksum(&mut self, path: &DfsPath) -> Result<FileChecksum> {
        // The master keeps each block's CRC32C; combining them with their
        // lengths gives the CRC32C of the whole file without reading a byte.
        let blocks = self.get_blocks(path)?;
        let mut checksum = FileChecksum {
            length_bytes: 0,
            crc32c: 0,
        };
        for block in &blocks.blocks {
            let length = usize::try_from(block.length_bytes)
                .map_err(|_| Error::Invalid(format!("{path}: block {} is too long", block.id)))?;
            checksum.crc32c = crc::combine(checksum.crc32c, block.crc32c, length as u64);
            checksum.length_bytes += block.length_bytes;
        }
        Ok(checksum)
    }
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

/// The stream of one block from one minion.
struct BlockStream {
    connection: Connection,
    /// Block offset of the next data frame.
    next_chunk_bytes: u64,
}

/// A file being read; implements `std::io::Read`, and `copy_to` writes the
/// rest of the file to a writer without an extra copy.
pub struct FileReader {
    path: DfsPath,
    status: EntryStatus,
    blocks: Vec<LocatedBlock>,
    credentials: Credentials,
    /// The block being read.
    block_index: usize,
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
    /// CRC32C of the current block's bytes in `0..verified_bytes`.
    block_crc32c: CrcAppender,
    /// The current block's verified bytes came from more than one replica,
    /// so a wrong block CRC cannot be blamed on one of them.
    mixed_sources: bool,
}

impl FileReader {
    pub fn status(&self) -> &EntryStatus {
        &self.status
    }

    pub fn blocks(&self) -> &[LocatedBlock] {
        &self.blocks
    }

    pub fn length_bytes(&self) -> u64 {
        self.status.size_bytes
    }

    /// A reader of block `index` alone (its bytes only, from the block's
    /// first byte), with the same replicas and checks, so that several
    /// blocks of one file can be read at once.
    pub fn block_reader(&self, index: usize) -> Option<FileReader> {
        let block = self.blocks.get(index)?.clone();
        let mut status = self.status.clone();
        status.size_bytes = block.length_bytes;
        status.block_count = 1;
        Some(FileReader {
            path: self.path.clone(),
            status,
            blocks: vec![block],
            credentials: self.credentials.clone(),
            block_index: 0,
            verified_bytes: 0,
            chunk: Vec::with_capacity(CHUNK_BYTES as usize),
            chunk_position: 0,
            stream: None,
            idle: None,
            location_index: 0,
            failed: None,
            buffer: Vec::new(),
            io_timeout: self.io_timeout,
            master_address: self.master_address.clone(),
            block_crc32c: CrcAppender::new(),
            mixed_sources: false,
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

    /// Makes verified bytes available in `chunk`; false at the end of the file.
    fn fill(&mut self) -> Result<bool> {
        if let Some(message) = &self.failed {
            return Err(Error::Invalid(message.clone()));
        }
        loop {
            if self.chunk_position < self.chunk.len() {
                return Ok(true);
            }
            let Some(block) = self.blocks.get(self.block_index) else {
                return Ok(false);
            };
            if self.verified_bytes >= block.length_bytes {
                self.next_block();
                continue;
            }
            if block.locations.is_empty() {
                return Err(self.fail(format!(
                    "{}: block {} ({}) unreadable: no minion holds a replica",
                    self.path, self.block_index, block.id
                )));
            }
            if let Err(error) = self.read_chunk() {
                // Nothing of a failed chunk may be handed out.
                self.chunk.clear();
                self.chunk_position = 0;
                if is_corruption(&error) {
                    self.report_bad_replica(&error);
                }
                self.replica_failed(&error)?;
            }
        }
    }

    fn next_block(&mut self) {
        if let Some(stream) = self.stream.take() {
            self.idle = Some(stream.connection);
        }
        self.block_index += 1;
        self.verified_bytes = 0;
        self.location_index = 0;
        self.block_crc32c = CrcAppender::new();
        self.mixed_sources = false;
    }

    /// Tells the master that the current replica of the current block is
    /// corrupt. Best effort: the read goes on whatever happens here.
    fn report_bad_replica(&mut self, error: &Error) {
        let Some(block) = self.blocks.get(self.block_index) else {
            return;
        };
        let Some(minion) = block.locations.get(self.location_index) else {
            return;
        };
        let whole_block =
            matches!(error, Error::Corrupted { what, .. } if what.starts_with(BLOCK_CRC_WHAT));
        if whole_block && self.mixed_sources {
            // The bytes came from several replicas: none can be blamed.
            return;
        }
        let replicas = vec![BadReplica {
            block: block.id,
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
    /// an error once none is left.
    fn replica_failed(&mut self, error: &Error) -> Result<()> {
        self.stream = None;
        if self.verified_bytes > 0 {
            self.mixed_sources = true;
        }
        let Some(block) = self.blocks.get(self.block_index) else {
            return Ok(());
        };
        let message = match block.locations.get(self.location_index) {
            Some(minion) => minion_message(minion, error),
            None => error.to_string(),
        };
        self.location_index += 1;
        if self.location_index < block.locations.len() {
            return Ok(());
        }
        let text = format!(
            "{}: block {} ({}) unreadable: tried {} replicas: {message}",
            self.path,
            self.block_index,
            block.id,
            block.locations.len()
        );
        Err(self.fail(text))
    }

    fn fail(&mut self, message: String) -> Error {
        self.failed = Some(message.clone());
        Error::Invalid(message)
    }

    /// Reads and verifies the next chunk of the current block from the
    /// current replica, starting its stream if needed.
    fn read_chunk(&mut self) -> Result<()> {
        if self.stream.is_none() {
            self.stream = Some(self.start_stream()?);
        }
        let Some(block) = self.blocks.get(self.block_index) else {
            return Ok(());
        };
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
        // Read raw and checked here: the frame carries the CRC the minion
        // stored for the chunk, so a mismatch means a corrupt replica (to
        // report), not a broken frame.
        self.chunk.clear();
        self.chunk.resize(expected_bytes as usize, 0);
        stream
            .connection
            .reader()
            .read_exact(&mut self.chunk)
            .map_err(|error| Error::io(format!("read {} from {address}", block.id), error))?;
        let crc = crc32c::crc32c(&self.chunk);
        if crc != header.payload_crc {
            return Err(Error::corrupted(
                format!(
                    "chunk at offset {} of {}",
                    stream.next_chunk_bytes, block.id
                ),
                format!("CRC32C {crc:#010x}, stored {:#010x}", header.payload_crc),
            ));
        }
        let chunk_start_bytes = stream.next_chunk_bytes;
        let chunk_end_bytes = chunk_start_bytes + expected_bytes;
        // The first chunk after a resume may start before the bytes we need.
        let skip = usize::try_from(self.verified_bytes - chunk_start_bytes)
            .unwrap_or(usize::MAX)
            .min(self.chunk.len());
        let new_bytes = &self.chunk[skip..];
        let new_crc = if skip == 0 {
            crc
        } else {
            crc32c::crc32c(new_bytes)
        };
        let mut appended = self.block_crc32c;
        appended.append(new_crc, new_bytes.len() as u64);
        let block_crc32c = appended.crc();
        if chunk_end_bytes == block.length_bytes && block_crc32c != block.crc32c {
            // Every chunk matched its stored CRC, yet the block is not what
            // was committed: its last chunk is held back.
            return Err(Error::corrupted(
                format!("{BLOCK_CRC_WHAT} {}", block.id),
                format!(
                    "the chunks make CRC32C {block_crc32c:#010x}, the master recorded {:#010x}",
                    block.crc32c
                ),
            ));
        }
        stream.next_chunk_bytes = chunk_end_bytes;
        self.block_crc32c = appended;
        self.chunk_position = skip;
        self.verified_bytes = chunk_end_bytes;
        Ok(())
    }

    /// Asks the current replica for the rest of the current block.
    fn start_stream(&mut self) -> Result<BlockStream> {
        let Some(block) = self.blocks.get(self.block_index) else {
            return Err(Error::Invalid("read past the last block".into()));
        };
        let Some(minion) = block.locations.get(self.location_index) else {
            return Err(Error::Invalid(format!("{}: no replica left", block.id)));
        };
        let block = block.clone();
        let address = minion.address.clone();
        if let Some(connection) = self.idle.take() {
            if connection.address() == address {
                match self.request_range(connection, &block) {
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
        self.request_range(connection, &block)
    }

    fn request_range(
        &mut self,
        mut connection: Connection,
        block: &LocatedBlock,
    ) -> Result<BlockStream> {
        let offset_bytes = self.verified_bytes;
        let request_id = connection.send(
            &self.credentials,
            MinionRequest::ReadBlock {
                block: block.id,
                offset_bytes,
                length_bytes: block.length_bytes - offset_bytes,
            },
        )?;
        let (block_length_bytes, first_offset_bytes) =
            match receive_answer(&mut connection, &[request_id], &mut self.buffer)? {
                MinionResponse::ReadStarted {
                    block_length_bytes,
                    first_offset_bytes,
                } => (block_length_bytes, first_offset_bytes),
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
        })
    }
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
