//! Serving `ReadBlock`: the whole chunks covering a byte range of a sealed
//! replica of the generation asked for, each checked against its stored
//! CRC32C before it is sent. `ReadStarted` carries every chunk CRC32C of
//! the replica, so that the reader can check them against the block CRC32C
//! the master recorded before it trusts any byte.
//!
//! The engine's `BlockReader` checks the footer and the checksum array; the
//! chunks are then read through the ring `READ_BATCH_CHUNKS` at a time into
//! one buffer, checked in place and sent from that buffer with their frame
//! headers (one vectored send), while the next batch is read into a second
//! buffer. Memory: two batch buffers per reading connection.
//!
//! A chunk that fails its check ends the connection after the good chunks
//! before it: the reader then sees a short stream and tries the next replica.
//! The block is handed to the keepers (`Store::suspect`), which verify it
//! in full and quarantine and report it if it is bad; a quarantined replica
//! is refused as `Corrupted`. An I/O error is judged for its data directory
//! (`Store::note_io_error`).

use std::ops::Range;
use std::time::Duration;

use dfs_engine::block_store::{self, BlockReader};
use dfs_engine::limits::IO_TIMEOUT_MS;
use dfs_engine::msg::{BlockId, ErrorKind, MinionResponse, RemoteError, ReplicaId};
use dfs_engine::wire::{FrameHeader, FrameKind};
use dfs_engine::{Error, Result};

use crate::metrics::CheckedBy;
use crate::server::{Next, Session};
use crate::store::Store;
use crate::uring::{self, FrameBatch, UringFile};

/// Chunks read, checked and sent at once (512 KiB of standard chunks).
const READ_BATCH_CHUNKS: u64 = 8;

pub(crate) async fn read_block(
    session: &mut Session,
    request_id: u64,
    replica: ReplicaId,
    offset_bytes: u64,
    length_bytes: u64,
) -> Result<Next> {
    let block = replica.block;
    let name = session.context.name();
    let store = &session.context.store;
    let reader = match store.block_store().open_block(replica) {
        Ok(reader) => reader,
        Err(error) => {
            let (kind, message) = if block_store::is_not_found(&error) {
                let what = match &error {
                    Error::Io { context, .. } => context.clone(),
                    other => other.to_string(),
                };
                (ErrorKind::NotFound, format!("{name}: {what}"))
            } else if block_store::is_quarantined(&error) {
                tracing::debug!("{}: read {block}: {error}", session.peer);
                (ErrorKind::Corrupted, format!("{name}: {error}"))
            } else if matches!(error, Error::Corrupted { .. }) {
                tracing::error!("{}: read {block}: {error}", session.peer);
                store.metrics.checksum_failed(CheckedBy::Read);
                store.suspect(block);
                (ErrorKind::Corrupted, format!("{name}: {error}"))
            } else {
                tracing::error!("{}: read {block}: {error}", session.peer);
                store.note_block_io_error(block, &error);
                (ErrorKind::Io, format!("{name}: {error}"))
            };
            session
                .respond_error(request_id, RemoteError::new(kind, message))
                .await?;
            return Ok(Next::Continue);
        }
    };
    let block_length_bytes = reader.length_bytes();
    let end_bytes = offset_bytes
        .checked_add(length_bytes)
        .filter(|&end| end <= block_length_bytes);
    let Some(end_bytes) = end_bytes else {
        let error = RemoteError::new(
            ErrorKind::InvalidArgument,
            format!(
                "{block}: {length_bytes} bytes at offset {offset_bytes} reach past its end ({block_length_bytes} bytes)"
            ),
        );
        session.respond_error(request_id, error).await?;
        return Ok(Next::Continue);
    };
    let chunk_bytes = u64::from(reader.chunk_bytes());
    let first_index = offset_bytes / chunk_bytes;
    let mut chunk_crcs = reader.chunk_crcs().to_vec();
    let rotten = rotten_first_chunk(&reader, &mut chunk_crcs);
    session
        .respond(
            request_id,
            &MinionResponse::ReadStarted {
                block_length_bytes,
                first_offset_bytes: first_index * chunk_bytes,
                chunk_crcs,
            },
        )
        .await?;
    if length_bytes == 0 {
        return Ok(Next::Continue);
    }
    let last_index = (end_bytes - 1) / chunk_bytes;
    let store = &session.context.store;
    let directory = store.block_store().directory_of(reader.path());
    let chunks = match ChunkSource::open(&reader, directory, rotten) {
        Ok(chunks) => chunks,
        Err(error) => {
            tracing::error!(
                "{}: read {block}: {error}; closing the connection so the reader tries another replica",
                session.peer
            );
            note_failure(store, directory, block, &error);
            return Ok(Next::Close);
        }
    };
    // The disk starts on the whole range now, while the first chunks go out.
    let first_byte = chunks.chunk_range(first_index).start;
    let end_byte = chunks.chunk_range(last_index).end;
    chunks
        .file
        .advise_sequential(first_byte, end_byte - first_byte);
    send_chunks(session, &chunks, first_index..last_index + 1).await
}

/// Under the failpoint `read-serve-rotten` (fault tests only), this minion
/// plays one that serves rotten bytes with checksums rewritten to match
/// them, as rot plus a buggy or hostile minion would: the first chunk gets
/// a flipped bit and the CRC32C of the flipped bytes, in `chunk_crcs` and
/// in its frame. Only the block CRC32C the master recorded can tell a
/// reader. Returns the lying CRC32C of chunk 0.
fn rotten_first_chunk(reader: &BlockReader, chunk_crcs: &mut [u32]) -> Option<u32> {
    if chunk_crcs.is_empty() || !dfs_engine::failpoint::is_on("read-serve-rotten") {
        return None;
    }
    let mut first = Vec::new();
    reader.read_chunk(0, &mut first).ok()?;
    *first.first_mut()? ^= 0x01;
    let crc = crc32c::crc32c(&first);
    chunk_crcs[0] = crc;
    Some(crc)
}

/// Hands a failure to read `block` on: a bad chunk to the keepers to
/// verify, an I/O error to the judgement of its data directory.
fn note_failure(store: &Store, directory: Option<usize>, block: BlockId, error: &Error) {
    match (error, directory) {
        (Error::Corrupted { .. }, _) => {
            store.metrics.checksum_failed(CheckedBy::Read);
            store.suspect(block)
        }
        (_, Some(index)) => store.note_io_error(index, error),
        (_, None) => store.note_block_io_error(block, error),
    }
}

/// A sealed block's file on the ring and its stored checksums.
struct ChunkSource {
    block: BlockId,
    /// The data directory the file is in.
    directory: Option<usize>,
    file: UringFile,
    length_bytes: u64,
    chunk_bytes: u64,
    crcs: Vec<u32>,
    /// Chunk 0 is sent rotten with this CRC32C (`rotten_first_chunk`).
    rotten_first_crc: Option<u32>,
}

impl ChunkSource {
    /// Takes the file and checksums of a replica that `reader` opened (its
    /// footer and checksums checked, against each other and the name).
    fn open(
        reader: &BlockReader,
        directory: Option<usize>,
        rotten_first_crc: Option<u32>,
    ) -> Result<ChunkSource> {
        let block = reader.block();
        let file = reader
            .file()
            .try_clone()
            .map_err(|e| Error::io(format!("reopen {block}"), e))?;
        Ok(ChunkSource {
            block,
            directory,
            file: UringFile::from_std(file),
            length_bytes: reader.length_bytes(),
            chunk_bytes: u64::from(reader.chunk_bytes()),
            crcs: reader.chunk_crcs().to_vec(),
            rotten_first_crc,
        })
    }

    /// Byte range of chunk `index` in the block.
    fn chunk_range(&self, index: u64) -> Range<u64> {
        let start = index * self.chunk_bytes;
        start..(start + self.chunk_bytes).min(self.length_bytes)
    }

    /// Reads chunks `indexes` into `buffer` (from its start).
    async fn read(&self, indexes: Range<u64>, buffer: Vec<u8>) -> Result<(Range<u64>, Vec<u8>)> {
        let start = self.chunk_range(indexes.start).start;
        let end = self.chunk_range(indexes.end - 1).end;
        let length = (end - start) as usize;
        let buffer = self
            .file
            .read_exact_at(buffer, 0..length, start)
            .await
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    Error::corrupted(format!("{}", self.block), "the file ended early")
                } else {
                    Error::io(format!("read {}", self.block), e)
                }
            })?;
        Ok((indexes, buffer))
    }

    /// Checks the chunks `indexes` held by `buffer` and frames the good
    /// ones; the error says which chunk failed, if one did.
    fn frame(&self, indexes: Range<u64>, buffer: Vec<u8>) -> (FrameBatch, Option<Error>) {
        let base = self.chunk_range(indexes.start).start;
        let mut batch = FrameBatch {
            headers: Vec::new(),
            payload: buffer,
            ranges: Vec::new(),
        };
        for index in indexes {
            let chunk = self.chunk_range(index);
            let range = (chunk.start - base) as usize..(chunk.end - base) as usize;
            let stored = usize::try_from(index)
                .ok()
                .and_then(|i| self.crcs.get(i))
                .copied();
            let actual = batch.payload.get(range.clone()).map(crc32c::crc32c);
            match (stored, actual) {
                (Some(stored), Some(actual)) if stored == actual => {
                    let sent_crc = match self.rotten_first_crc {
                        Some(lie) if index == 0 => {
                            if let Some(byte) = batch.payload.get_mut(range.start) {
                                *byte ^= 0x01;
                            }
                            lie
                        }
                        _ => stored,
                    };
                    batch.headers.push(
                        FrameHeader {
                            kind: FrameKind::Data,
                            flags: 0,
                            request_id: 0,
                            payload_bytes: range.len() as u32,
                            payload_crc: sent_crc,
                        }
                        .encode(),
                    );
                    batch.ranges.push(range);
                }
                (stored, actual) => {
                    let detail = match (stored, actual) {
                        (Some(stored), Some(actual)) => format!(
                            "checksum {actual:#010x} does not match the stored {stored:#010x}"
                        ),
                        _ => "the chunk is missing".to_string(),
                    };
                    let error = Error::corrupted(format!("{} chunk {index}", self.block), detail);
                    return (batch, Some(error));
                }
            }
        }
        (batch, None)
    }
}

async fn send_chunks(
    session: &mut Session,
    chunks: &ChunkSource,
    indexes: Range<u64>,
) -> Result<Next> {
    let wait = Duration::from_millis(IO_TIMEOUT_MS);
    let buffer_bytes = (READ_BATCH_CHUNKS * chunks.chunk_bytes) as usize;
    let batch_end = |start: u64| (start + READ_BATCH_CHUNKS).min(indexes.end);
    let corrupt = |session: &Session, error: &Error| {
        tracing::error!(
            "{}: read: {error}; closing the connection so the reader tries another replica",
            session.peer
        );
        note_failure(
            &session.context.store,
            chunks.directory,
            chunks.block,
            error,
        );
    };
    let mut spare = vec![0u8; buffer_bytes];
    let mut current = chunks
        .read(
            indexes.start..batch_end(indexes.start),
            vec![0u8; buffer_bytes],
        )
        .await;
    loop {
        let (range, buffer) = match current {
            Ok(read) => read,
            Err(error) => {
                corrupt(session, &error);
                return Ok(Next::Close);
            }
        };
        let next_start = range.end;
        let (batch, failed) = chunks.frame(range, buffer);
        let next_read = async {
            if next_start < indexes.end && failed.is_none() {
                Some(chunks.read(next_start..batch_end(next_start), spare).await)
            } else {
                None
            }
        };
        let (sent, next) =
            uring::join(session.stream.write_vectored_all(batch, wait), next_read).await;
        let batch = sent.map_err(|e| Error::io(format!("send to {}", session.peer), e))?;
        let sent_bytes: usize = batch.ranges.iter().map(|range| range.len()).sum();
        session
            .context
            .store
            .metrics
            .read_bytes
            .inc_by(sent_bytes as u64);
        if let Some(error) = failed {
            // The good chunks before it went out.
            corrupt(session, &error);
            return Ok(Next::Close);
        }
        match next {
            Some(read) => {
                spare = batch.payload;
                current = read;
            }
            None => return Ok(Next::Continue),
        }
    }
}
