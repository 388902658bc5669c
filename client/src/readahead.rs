//! Read-ahead of a sequential read: while a `FileReader` hands out piece N
//! of a file (a block, a part of one, or a hole), pieces N+1..N+K are
//! already streaming, each on its own connection and thread, from the
//! replica whose minion has the fewest of this reader's streams (so several
//! minions and disks work at once); a hole's stream makes its zeros. Each
//! stream is a one-piece `FileReader`, with every check and fallback of the
//! read path: what it passes on has been verified. It holds at most
//! `READ_AHEAD_STREAM_BYTES` of verified chunks; beyond that it stops
//! reading its socket and TCP flow control stalls its minion, so a reader
//! holds at most K+1 such buffers whatever the file's size. Pieces are
//! handed out strictly in order: only the oldest stream is drained.
//!
//! Read-ahead starts only once a reader has handed out
//! `READ_AHEAD_AFTER_BYTES` in one run (from its first byte, or from where
//! `read_at` or `Seek` last moved it), and never while it reads the range a
//! `read_at` that moved it asked for, so a small file, a short read or
//! reads here and there open no stream they do not use.

use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, RecvError, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use dfs_engine::limits::{
    CHUNK_BYTES, READ_AHEAD_BLOCKS_DEFAULT, READ_AHEAD_BLOCKS_MAX, READ_AHEAD_MESSAGE_CHUNKS,
    READ_AHEAD_STALL_MS, READ_AHEAD_STREAM_BYTES,
};
use dfs_engine::msg::{LocatedBlock, MinionId};
use dfs_engine::{Error, Result};

use crate::read::FileReader;

/// The environment variable that sets how many blocks (pieces of a file)
/// a reader fetches ahead, e.g. `DFS_READ_AHEAD=0` to read one at a time.
pub const READ_AHEAD_VARIABLE: &str = "DFS_READ_AHEAD";

/// Chunks one stream holds, verified, before it stops reading its socket:
/// those in its messages and those it gathers for the next one.
const STREAM_CHUNKS_MAX: usize = (READ_AHEAD_STREAM_BYTES / CHUNK_BYTES as u64) as usize;
/// Messages waiting in one stream's channel.
const STREAM_MESSAGES_MAX: usize = STREAM_CHUNKS_MAX / READ_AHEAD_MESSAGE_CHUNKS - 1;
const _: () = assert!(STREAM_MESSAGES_MAX >= 1);

/// Blocks to fetch ahead: `DFS_READ_AHEAD` or the default.
pub fn blocks_ahead_from_environment() -> Result<usize> {
    match std::env::var(READ_AHEAD_VARIABLE) {
        Ok(text) => parse_blocks_ahead(&text),
        Err(std::env::VarError::NotPresent) => Ok(READ_AHEAD_BLOCKS_DEFAULT),
        Err(error) => Err(Error::Invalid(format!("{READ_AHEAD_VARIABLE}: {error}"))),
    }
}

fn parse_blocks_ahead(text: &str) -> Result<usize> {
    match text.trim().parse::<usize>() {
        Ok(blocks) if blocks <= READ_AHEAD_BLOCKS_MAX => Ok(blocks),
        _ => Err(Error::Invalid(format!(
            "{READ_AHEAD_VARIABLE}: {text:?}: expected a number of blocks from 0 to {READ_AHEAD_BLOCKS_MAX}"
        ))),
    }
}

/// Verified bytes of a piece: `bytes[start..]` were not handed out yet
/// (a stream resumed on another replica starts at its chunk's first byte).
pub(crate) struct Verified {
    pub bytes: Vec<u8>,
    pub start: usize,
}

/// One piece being fetched by its own thread.
struct Stream {
    index: usize,
    length_bytes: u64,
    /// Bytes of the piece taken from `messages` so far.
    received_bytes: u64,
    /// The minion of the replica it started on.
    minion: Option<MinionId>,
    /// In a mutex only so that a reader can be shared (`Sync`) as a
    /// block-parallel copy shares it; only `&mut` reaches it, unlocked.
    messages: Mutex<Receiver<Result<Vec<Verified>>>>,
    /// The chunks of the last message not handed out yet.
    chunks: std::vec::IntoIter<Verified>,
}

/// Chunk buffers the reader is done with, for the streams to fill again,
/// so that the data path allocates (and faults in) no memory per chunk or
/// per piece. Holds at most what the streams may hold at once.
struct Spares {
    buffers: Mutex<Vec<Vec<u8>>>,
    count_max: usize,
}

impl Spares {
    fn take(&self) -> Option<Vec<u8>> {
        self.buffers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
    }

    fn give(&self, buffer: Vec<u8>) {
        let mut buffers = self.buffers.lock().unwrap_or_else(PoisonError::into_inner);
        if buffers.len() < self.count_max {
            buffers.push(buffer);
        }
    }
}

/// The streams of one reader, oldest (the piece handed out) first.
pub(crate) struct ReadAhead {
    blocks_ahead: usize,
    /// The next piece to start, and the end of the reader's pieces.
    next_index: usize,
    end_index: usize,
    streams: VecDeque<Stream>,
    spares: Arc<Spares>,
}

impl ReadAhead {
    /// Read-ahead of pieces `first_index..end_index`, at most `blocks_ahead`
    /// past the piece being handed out.
    pub(crate) fn new(first_index: usize, end_index: usize, blocks_ahead: usize) -> ReadAhead {
        let blocks_ahead = blocks_ahead.min(READ_AHEAD_BLOCKS_MAX);
        ReadAhead {
            blocks_ahead,
            next_index: first_index,
            end_index,
            streams: VecDeque::new(),
            spares: Arc::new(Spares {
                buffers: Mutex::new(Vec::new()),
                count_max: (blocks_ahead + 1) * STREAM_CHUNKS_MAX,
            }),
        }
    }

    /// The next piece to start while the reader hands out piece
    /// `reading_index`; None while the window is full or every piece started.
    pub(crate) fn wanted(&self, reading_index: usize) -> Option<usize> {
        let window_end = reading_index
            .saturating_add(self.blocks_ahead)
            .saturating_add(1)
            .min(self.end_index);
        (self.next_index < window_end).then_some(self.next_index)
    }

    /// Minions of the replicas the streams started on.
    pub(crate) fn minions(&self) -> impl Iterator<Item = MinionId> + '_ {
        self.streams.iter().filter_map(|stream| stream.minion)
    }

    /// The piece the oldest stream fetches.
    pub(crate) fn front_index(&self) -> Option<usize> {
        self.streams.front().map(|stream| stream.index)
    }

    /// The length of the piece the oldest stream fetches.
    pub(crate) fn front_length_bytes(&self) -> Option<u64> {
        self.streams.front().map(|stream| stream.length_bytes)
    }

    /// Starts fetching piece `index` (the one `wanted` named) with `reader`,
    /// a reader of that piece alone.
    pub(crate) fn start(
        &mut self,
        index: usize,
        block: &LocatedBlock,
        reader: FileReader,
    ) -> Result<()> {
        let (sender, messages) = mpsc::sync_channel(STREAM_MESSAGES_MAX);
        let spares = Arc::clone(&self.spares);
        std::thread::Builder::new()
            .name(format!("dfs-read-ahead-{index}"))
            .spawn(move || fetch(reader, sender, &spares))
            .map_err(|error| Error::io(format!("start the read-ahead of piece {index}"), error))?;
        self.streams.push_back(Stream {
            index,
            length_bytes: block.length_bytes,
            received_bytes: 0,
            minion: block.locations.first().map(|location| location.id),
            messages: Mutex::new(messages),
            chunks: Vec::new().into_iter(),
        });
        self.next_index = index + 1;
        Ok(())
    }

    /// Gives a buffer the reader is done with to the streams; dropped when
    /// they have enough.
    pub(crate) fn give_back(&mut self, buffer: Vec<u8>) {
        self.spares.give(buffer);
    }

    /// The next verified chunk of the oldest piece, waiting for it; None
    /// once that piece was handed out whole (its stream is then dropped).
    pub(crate) fn next_chunk(&mut self) -> Result<Option<Verified>> {
        let Some(stream) = self.streams.front_mut() else {
            return Ok(None);
        };
        if stream.received_bytes >= stream.length_bytes {
            self.streams.pop_front();
            return Ok(None);
        }
        let chunk = match stream.chunks.next() {
            Some(chunk) => chunk,
            None => {
                let messages = stream
                    .messages
                    .get_mut()
                    .unwrap_or_else(PoisonError::into_inner);
                let mut chunks = match messages.recv() {
                    Ok(chunks) => chunks?.into_iter(),
                    // A stream only ends early by failing, and says so
                    // first: this one stopped without a word (its thread
                    // died).
                    Err(RecvError) => {
                        return Err(Error::Invalid(format!(
                            "the read-ahead of piece {} stopped after {} of its {} bytes",
                            stream.index, stream.received_bytes, stream.length_bytes
                        )))
                    }
                };
                let first = chunks.next().ok_or_else(|| {
                    Error::Invalid(format!(
                        "the read-ahead of piece {} passed on an empty message",
                        stream.index
                    ))
                })?;
                stream.chunks = chunks;
                first
            }
        };
        let new_bytes = chunk.bytes.len().saturating_sub(chunk.start) as u64;
        if new_bytes == 0 || stream.received_bytes + new_bytes > stream.length_bytes {
            return Err(Error::Invalid(format!(
                "the read-ahead of piece {} passed on {new_bytes} bytes after {} of its {}",
                stream.index, stream.received_bytes, stream.length_bytes
            )));
        }
        stream.received_bytes += new_bytes;
        Ok(Some(chunk))
    }
}

/// A stream's thread: passes on `reader`'s verified chunks, a few to a
/// message (one wake-up of the reader for several chunks), until its piece
/// ends, it fails (the error is passed on last) or the reader is dropped.
/// A stream that waited long for its turn (its minion may have given up on
/// it meanwhile) asks for the rest of its piece again, from the same
/// replica: waiting is not the replica's failure.
fn fetch(mut reader: FileReader, sender: SyncSender<Result<Vec<Verified>>>, spares: &Spares) {
    let stall = Duration::from_millis(READ_AHEAD_STALL_MS);
    let mut chunks = Vec::with_capacity(READ_AHEAD_MESSAGE_CHUNKS);
    loop {
        let (end, failure) = match reader.take_chunk(spares.take()) {
            Ok(Some(chunk)) => {
                chunks.push(chunk);
                (false, None)
            }
            Ok(None) => (true, None),
            Err(error) => (true, Some(error)),
        };
        if chunks.len() >= READ_AHEAD_MESSAGE_CHUNKS || end && !chunks.is_empty() {
            let message =
                std::mem::replace(&mut chunks, Vec::with_capacity(READ_AHEAD_MESSAGE_CHUNKS));
            let waited = Instant::now();
            if sender.send(Ok(message)).is_err() {
                return;
            }
            if waited.elapsed() >= stall {
                reader.reopen_stream();
            }
        }
        if let Some(error) = failure {
            let _ = sender.send(Err(error));
        }
        if end {
            return;
        }
    }
}

/// `block` (a piece) with its replicas in the order a stream tries them:
/// those on minions with the fewest of `busy` (the reader's other streams)
/// first, the master's order among equals.
pub(crate) fn spread(mut block: LocatedBlock, busy: &[MinionId]) -> LocatedBlock {
    block
        .locations
        .sort_by_key(|location| busy.iter().filter(|&&minion| minion == location.id).count());
    block
}

#[cfg(test)]
mod tests {
    use super::*;
    use dfs_engine::msg::{BlockId, Generation, MinionAddress};

    fn block(minions: &[u64]) -> LocatedBlock {
        LocatedBlock {
            id: BlockId(1),
            generation: Generation(1),
            offset_bytes: 0,
            length_bytes: 10,
            crc32c: 0,
            block_offset_bytes: 0,
            block_length_bytes: 10,
            locations: minions
                .iter()
                .map(|&id| MinionAddress {
                    id: MinionId(id),
                    address: format!("127.0.0.1:{id}"),
                })
                .collect(),
            token: Vec::new(),
        }
    }

    fn order(block: &LocatedBlock) -> Vec<u64> {
        block
            .locations
            .iter()
            .map(|location| location.id.0)
            .collect()
    }

    #[test]
    fn streams_start_on_the_least_busy_minions() {
        for (minions, busy, expected) in [
            (&[1, 2, 3][..], &[][..], &[1, 2, 3][..]),
            (&[1, 2, 3], &[1], &[2, 3, 1]),
            (&[1, 2, 3], &[1, 2], &[3, 1, 2]),
            (&[1, 2, 3], &[1, 2, 3], &[1, 2, 3]),
            (&[1, 2, 3], &[1, 1, 2, 3], &[2, 3, 1]),
            (&[3, 1], &[2, 2], &[3, 1]),
        ] {
            let busy: Vec<MinionId> = busy.iter().map(|&id| MinionId(id)).collect();
            assert_eq!(
                order(&spread(block(minions), &busy)),
                expected,
                "{minions:?} with {busy:?} busy"
            );
        }
    }

    #[test]
    fn the_window_reaches_blocks_ahead_past_the_block_read() {
        let mut ahead = ReadAhead::new(1, 6, 3);
        assert_eq!(ahead.wanted(0), Some(1));
        ahead.next_index = 4;
        assert_eq!(ahead.wanted(0), None, "pieces 1 to 3 in flight");
        assert_eq!(ahead.wanted(1), Some(4));
        ahead.next_index = 6;
        assert_eq!(ahead.wanted(5), None, "past the last piece");
        assert_eq!(ReadAhead::new(1, 6, 0).wanted(0), None);
    }

    #[test]
    fn the_variable_is_a_bounded_number_of_blocks() {
        assert_eq!(parse_blocks_ahead("0").ok(), Some(0));
        assert_eq!(parse_blocks_ahead(" 5 ").ok(), Some(5));
        for bad in ["", "-1", "x", "9", "1000"] {
            assert!(parse_blocks_ahead(bad).is_err(), "{bad:?}");
        }
    }
}
