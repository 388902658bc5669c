//! Writing a file whose bytes can be read at any offset with several blocks
//! in flight (`WriteOptions::blocks_in_flight`), each through its own
//! pipeline, so a pipeline's disks never idle while the next block waits
//! for the last flush of the one before.
//!
//! The caller's thread keeps every master call (the master ties a write to
//! the connection that opened it): it allocates blocks ahead, hands each to
//! a block thread, abandons and reallocates a block whose pipeline failed,
//! and commits sealed blocks strictly in file order (those that finish
//! early wait for their predecessors; the last one travels with
//! `CloseWrite`). A block thread reads its block's range from a
//! `RangeSource` (a local file: positional reads), streams it a chunk at a
//! time and seals it. Memory is one chunk per block thread plus socket
//! buffers; sealed blocks waiting for a predecessor are bounded too.
//!
//! A block whose pipeline fails is read again from its range and sent to a
//! fresh pipeline without the minions that failed; anything else (the
//! master, the input) stops every block thread at its next chunk and
//! aborts the write, so nothing is visible until the close.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{self, Read, Seek};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Mutex;

use dfs_engine::crc::CrcAppender;
use dfs_engine::limits::{CHUNK_BYTES, WRITE_BLOCKS_IN_FLIGHT_MAX, WRITE_BLOCK_ATTEMPTS_MAX};
use dfs_engine::msg::{
    AllocatedBlock, BlockCommit, BlockId, Credentials, ErrorKind, MinionAddress, MinionId,
    MinionRequest, MinionResponse, ReplicaFailure, ReplicaId,
};
use dfs_engine::path::DfsPath;
use dfs_engine::{Error, Result};

use crate::client::{unexpected, Client};
use crate::pool::{pipeline_wait, DataLink};
use crate::transfer::{explain_send_failure, minion_message, receive_answer};
use crate::write::{BlockSource, OpenedWrite, WriteOptions, WriteStats, WrittenBlock};

/// The input of a block-parallel write: any range can be read on its own,
/// by any block thread, as often as a retry needs.
pub trait RangeSource: Sync {
    /// A reader of `length_bytes` from `offset_bytes`; it may end early only
    /// if the input shrank.
    fn open_range(&self, offset_bytes: u64, length_bytes: u64) -> Result<Box<dyn Read + '_>>;
}

impl RangeSource for File {
    fn open_range(&self, offset_bytes: u64, length_bytes: u64) -> Result<Box<dyn Read + '_>> {
        Ok(Box::new(FileRange {
            file: self,
            position_bytes: offset_bytes,
            end_bytes: offset_bytes.saturating_add(length_bytes),
        }))
    }
}

/// A range of a local file, read with positional reads.
struct FileRange<'f> {
    file: &'f File,
    position_bytes: u64,
    end_bytes: u64,
}

impl Read for FileRange<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.end_bytes - self.position_bytes).unwrap_or(usize::MAX);
        let wanted = buffer.len().min(left);
        if wanted == 0 {
            return Ok(0);
        }
        let count = self
            .file
            .read_at(&mut buffer[..wanted], self.position_bytes)?;
        self.position_bytes += count as u64;
        Ok(count)
    }
}

/// A local regular file as the input of `Client::put`: read in order by
/// the one-block-at-a-time writer, or by ranges, several blocks at once.
/// Its length is taken when it is made; bytes appended later are not
/// written, and a file that shrinks fails the write.
pub struct LocalFile {
    file: File,
    /// Where the input starts in the file.
    start_bytes: u64,
    length_bytes: u64,
    /// The file offset read next, for reads in order.
    position_bytes: u64,
}

impl LocalFile {
    /// The input from `file`'s current position to its end.
    pub fn new(mut file: File) -> io::Result<LocalFile> {
        let start_bytes = file.stream_position()?;
        let length_bytes = file.metadata()?.len().saturating_sub(start_bytes);
        Ok(LocalFile {
            file,
            start_bytes,
            length_bytes,
            position_bytes: start_bytes,
        })
    }
}

impl BlockSource for LocalFile {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let count = self.file.read_at(buffer, self.position_bytes)?;
        self.position_bytes += count as u64;
        Ok(count)
    }

    fn rewind(&mut self, offset_bytes: u64) -> io::Result<bool> {
        self.position_bytes = self
            .start_bytes
            .checked_add(offset_bytes)
            .ok_or_else(|| io::Error::other("rewind offset overflows"))?;
        Ok(true)
    }

    fn ranges(&self) -> Option<(&dyn RangeSource, u64)> {
        Some((self, self.length_bytes))
    }
}

impl RangeSource for LocalFile {
    fn open_range(&self, offset_bytes: u64, length_bytes: u64) -> Result<Box<dyn Read + '_>> {
        let offset_bytes = self
            .start_bytes
            .checked_add(offset_bytes)
            .ok_or_else(|| Error::Invalid("read the input: offset overflows".into()))?;
        self.file.open_range(offset_bytes, length_bytes)
    }
}

/// Writes `length_bytes` of `source` to `path` with up to
/// `options.blocks_in_flight` blocks in flight. Nothing is visible at
/// `path` unless every block was committed and the write closed.
pub fn put_parallel(
    client: &mut Client,
    path: &DfsPath,
    options: WriteOptions,
    source: &dyn RangeSource,
    length_bytes: u64,
) -> Result<WriteStats> {
    let opened = client.open_write(path, &options, length_bytes > 0)?;
    put_opened(client, path, options, opened, source, length_bytes)
}

/// `put_parallel` of a write already opened.
pub(crate) fn put_opened(
    client: &mut Client,
    path: &DfsPath,
    options: WriteOptions,
    opened: OpenedWrite,
    source: &dyn RangeSource,
    length_bytes: u64,
) -> Result<WriteStats> {
    let block_bytes = opened.block_bytes;
    let block_count = usize::try_from(length_bytes.div_ceil(block_bytes))
        .map_err(|_| Error::Invalid(format!("{path}: too many blocks")))?;
    let streams = options
        .blocks_in_flight
        .clamp(1, WRITE_BLOCKS_IN_FLIGHT_MAX)
        .min(block_count.max(1));
    let settings = StreamSettings {
        credentials: client.credentials().clone(),
        sync: options.sync,
        link: client.minions.link().clone(),
    };
    let mut open = OpenWrite {
        client,
        path,
        write: opened.write,
        first_block: opened.first_block,
        closed: false,
    };
    let plan = Plan {
        block_count,
        block_bytes,
        length_bytes,
        streams,
    };
    let stop = AtomicBool::new(false);
    let (task_sender, task_receiver) = mpsc::sync_channel::<Task>(streams);
    let task_receiver = Mutex::new(task_receiver);
    let (result_sender, result_receiver) = mpsc::channel::<TaskResult>();
    let finished = std::thread::scope(|scope| -> Result<Finished> {
        for _ in 0..streams {
            let results = result_sender.clone();
            let (tasks, settings, stop) = (&task_receiver, &settings, &stop);
            scope.spawn(move || run_block_thread(tasks, &results, source, settings, stop));
        }
        drop(result_sender);
        // Ends the block threads however the coordination ends.
        let task_sender = task_sender;
        let finished = coordinate(&mut open, &plan, &task_sender, &result_receiver);
        if finished.is_err() {
            // Block threads give up their blocks at the next chunk.
            stop.store(true, Ordering::Relaxed);
        }
        finished
    })?;
    open.close(options.modified_ns, finished)
}

/// How block threads talk to minions.
struct StreamSettings {
    credentials: Credentials,
    sync: bool,
    link: DataLink,
}

/// The shape of one write.
struct Plan {
    block_count: usize,
    block_bytes: u64,
    length_bytes: u64,
    streams: usize,
}

/// Takes blocks until the coordinator hangs up, sends each, reports each.
fn run_block_thread(
    tasks: &Mutex<mpsc::Receiver<Task>>,
    results: &mpsc::Sender<TaskResult>,
    source: &dyn RangeSource,
    settings: &StreamSettings,
    stop: &AtomicBool,
) {
    let mut chunk = Vec::with_capacity(CHUNK_BYTES as usize);
    let mut buffer = Vec::new();
    loop {
        let task = match tasks.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        let Ok(task) = task else { return };
        let outcome = send_block(&task, source, settings, stop, &mut chunk, &mut buffer);
        let result = TaskResult {
            index: task.index,
            replica: task.replica,
            length_bytes: task.length_bytes,
            outcome,
        };
        if results.send(result).is_err() {
            return;
        }
    }
}

/// One block to send: which range of the input, to which pipeline.
struct Task {
    index: usize,
    replica: ReplicaId,
    targets: Vec<MinionAddress>,
    /// The block's write token, from the master's allocation.
    token: Vec<u8>,
    offset_bytes: u64,
    length_bytes: u64,
}

enum BlockFailure {
    /// A minion failed: the block can go to a pipeline without `excluded`.
    Minion {
        error: Error,
        excluded: Vec<MinionId>,
    },
    /// The input failed, or the write was given up: the write ends.
    Fatal(Error),
}

/// A block its pipeline sealed.
struct SealedBlock {
    stored: Vec<MinionId>,
    failed: Vec<ReplicaFailure>,
    crc32c: u32,
}

struct TaskResult {
    index: usize,
    replica: ReplicaId,
    length_bytes: u64,
    outcome: std::result::Result<SealedBlock, BlockFailure>,
}

/// Every block sealed, all but the last committed.
struct Finished {
    stats: WriteStats,
    committed: Vec<BlockId>,
    last: Option<(BlockCommit, WrittenBlock)>,
}

/// Aborts the write on the master unless it was closed.
struct OpenWrite<'a> {
    client: &'a mut Client,
    path: &'a DfsPath,
    write: u64,
    /// Allocated with the open, not handed out yet.
    first_block: Option<AllocatedBlock>,
    closed: bool,
}

impl Drop for OpenWrite<'_> {
    fn drop(&mut self) {
        if !self.closed {
            self.client.abort_write_quietly(self.write);
        }
    }
}

impl OpenWrite<'_> {
    fn allocate(&mut self, excluded: &[MinionId]) -> Result<AllocatedBlock> {
        match self.first_block.take() {
            Some(first) => Ok(first),
            None => self.client.allocate_block(self.path, self.write, excluded),
        }
    }

    fn abandon(&mut self, block: BlockId) -> Result<()> {
        self.client.abandon_block(self.write, block)
    }

    fn commit(&mut self, commit: BlockCommit) -> Result<()> {
        self.client.commit_block(self.write, &commit)
    }

    /// Commits the last block with the close and makes the file visible.
    fn close(mut self, modified_ns: Option<u64>, finished: Finished) -> Result<WriteStats> {
        if let Some(first) = self.first_block.take() {
            // Allocated with the open but never needed (the input is empty).
            self.abandon(first.block)?;
        }
        let Finished {
            mut stats,
            committed,
            last,
        } = finished;
        let (last_commit, last_written) = match last {
            Some((commit, written)) => (Some(commit), Some(written)),
            None => (None, None),
        };
        stats.inode = self.client.close_write(
            (self.path, None),
            self.write,
            last_commit,
            modified_ns,
            &committed,
        )?;
        self.closed = true;
        if let Some(written) = last_written {
            stats.length_bytes += written.length_bytes;
            stats.blocks.push(written);
        }
        Ok(stats)
    }
}

/// Allocates, hands out, retries and commits blocks in order.
fn coordinate(
    open: &mut OpenWrite<'_>,
    plan: &Plan,
    tasks: &mpsc::SyncSender<Task>,
    results: &mpsc::Receiver<TaskResult>,
) -> Result<Finished> {
    let mut finished = Finished {
        stats: WriteStats::default(),
        committed: Vec::with_capacity(plan.block_count),
        last: None,
    };
    let mut excluded: Vec<MinionId> = Vec::new();
    let mut attempts = vec![0u32; plan.block_count];
    let mut retry: VecDeque<usize> = VecDeque::new();
    let mut sealed: BTreeMap<usize, (BlockCommit, WrittenBlock)> = BTreeMap::new();
    let (mut next_allocate, mut next_commit, mut in_flight) = (0usize, 0usize, 0usize);
    // Sealed blocks waiting for a predecessor are bounded too.
    let window = 2 * plan.streams;
    while next_commit < plan.block_count {
        while in_flight < plan.streams {
            let index = match retry.pop_front() {
                Some(index) => index,
                None if next_allocate < plan.block_count
                    && next_allocate < next_commit + window =>
                {
                    next_allocate += 1;
                    next_allocate - 1
                }
                None => break,
            };
            let task = plan.task(index, allocate_despite_blame(open, &mut excluded)?);
            tasks
                .send(task)
                .map_err(|_| Error::Invalid("block threads ended early".into()))?;
            in_flight += 1;
        }
        let result = results
            .recv()
            .map_err(|_| Error::Invalid("block threads ended early".into()))?;
        in_flight -= 1;
        match result.outcome {
            Ok(block) => {
                note_failed_members(open, result.replica.block, &block.failed, &mut excluded);
                let written = WrittenBlock {
                    id: result.replica.block,
                    length_bytes: result.length_bytes,
                    replica_count: block.stored.len(),
                    unsynced: None,
                };
                let commit = BlockCommit {
                    block: result.replica.block,
                    generation: result.replica.generation,
                    length_bytes: result.length_bytes,
                    replicas: block.stored,
                    crc32c: block.crc32c,
                };
                sealed.insert(result.index, (commit, written));
            }
            Err(BlockFailure::Fatal(error)) => return Err(error),
            Err(BlockFailure::Minion {
                error,
                excluded: failed,
            }) => {
                open.abandon(result.replica.block)?;
                for minion in failed {
                    if !excluded.contains(&minion) {
                        excluded.push(minion);
                    }
                }
                attempts[result.index] += 1;
                if attempts[result.index] >= WRITE_BLOCK_ATTEMPTS_MAX {
                    return Err(Error::Invalid(format!(
                        "{}: block {} ({}): {error} (gave up after {} pipelines)",
                        open.path, result.index, result.replica.block, attempts[result.index]
                    )));
                }
                retry.push_back(result.index);
            }
        }
        while let Some((commit, written)) = sealed.remove(&next_commit) {
            next_commit += 1;
            if next_commit == plan.block_count {
                // The last block's commit travels with the close.
                finished.last = Some((commit, written));
                break;
            }
            open.commit(commit)?;
            finished.committed.push(written.id);
            finished.stats.length_bytes += written.length_bytes;
            finished.stats.blocks.push(written);
        }
    }
    Ok(finished)
}

impl Plan {
    fn task(&self, index: usize, allocated: AllocatedBlock) -> Task {
        let offset_bytes = index as u64 * self.block_bytes;
        Task {
            index,
            replica: ReplicaId {
                block: allocated.block,
                generation: allocated.generation,
            },
            targets: allocated.targets,
            token: allocated.token,
            offset_bytes,
            length_bytes: self.block_bytes.min(self.length_bytes - offset_bytes),
        }
    }
}

/// The next block's pipeline, without the members this write blamed; if
/// they are all the minions there are, asked again without them. With
/// several blocks in flight, a member held up by a stalled one behind it
/// can miss the client's deadline first and be blamed too, until every
/// minion is; a member that is really gone fails again, or is no longer
/// live by then.
fn allocate_despite_blame(
    open: &mut OpenWrite<'_>,
    excluded: &mut Vec<MinionId>,
) -> Result<AllocatedBlock> {
    match open.allocate(excluded) {
        Err(Error::Remote(refused))
            if refused.kind == ErrorKind::NoSpace && !excluded.is_empty() =>
        {
            open.client.warn(&format!(
                "{}: every minion was blamed for a failed block ({}); asking the master again without the blame",
                open.path, refused.message
            ));
            excluded.clear();
            open.allocate(excluded)
        }
        other => other,
    }
}

/// A member that failed a block is warned about and not asked again in
/// this write, so later blocks get a full pipeline.
fn note_failed_members(
    open: &mut OpenWrite<'_>,
    block: BlockId,
    failed: &[ReplicaFailure],
    excluded: &mut Vec<MinionId>,
) {
    for failure in failed {
        let error = Error::Remote(failure.error.clone());
        open.client.warn(&format!(
            "{block}: {}",
            minion_message(&failure.minion, &error)
        ));
        if failure.is_own_failure() && !excluded.contains(&failure.minion.id) {
            excluded.push(failure.minion.id);
        }
    }
}

/// Sends one block's range of `source` through its pipeline and seals it.
fn send_block(
    task: &Task,
    source: &dyn RangeSource,
    settings: &StreamSettings,
    stop: &AtomicBool,
    chunk: &mut Vec<u8>,
    buffer: &mut Vec<u8>,
) -> std::result::Result<SealedBlock, BlockFailure> {
    let Some(first) = task.targets.first() else {
        return Err(BlockFailure::Fatal(Error::Protocol(format!(
            "master allocated {} without minions",
            task.replica.block
        ))));
    };
    let minion_failed = |error: Error| BlockFailure::Minion {
        error: Error::Invalid(minion_message(first, &error)),
        excluded: vec![first.id],
    };
    let mut connection = settings
        .link
        .open(
            &first.address,
            pipeline_wait(settings.link.io_timeout, task.targets.len()),
        )
        .map_err(minion_failed)?;
    let mut range = source
        .open_range(task.offset_bytes, task.length_bytes)
        .map_err(BlockFailure::Fatal)?;
    let write_request_id = connection
        .send(
            &Credentials {
                token: task.token.clone(),
                ..settings.credentials.clone()
            },
            MinionRequest::WriteBlock {
                block: task.replica.block,
                generation: task.replica.generation,
                downstream: task.targets[1..].to_vec(),
                sync: settings.sync,
            },
        )
        .map_err(|error| minion_failed(explain_send_failure(&mut connection, error)))?;
    let mut sent_bytes = 0u64;
    let mut block_crc = CrcAppender::new();
    while sent_bytes < task.length_bytes {
        if stop.load(Ordering::Relaxed) {
            return Err(BlockFailure::Fatal(Error::Invalid(
                "the write was given up".into(),
            )));
        }
        let length = (task.length_bytes - sent_bytes).min(u64::from(CHUNK_BYTES));
        chunk.clear();
        chunk.resize(length as usize, 0);
        range.read_exact(chunk).map_err(read_failed)?;
        let chunk_crc = crc32c::crc32c(chunk);
        if let Err(error) = connection.send_data(chunk, chunk_crc) {
            return Err(minion_failed(explain_send_failure(&mut connection, error)));
        }
        block_crc.append(chunk_crc, chunk.len() as u64);
        sent_bytes += length;
    }
    let sealed = connection
        .send(
            &settings.credentials,
            MinionRequest::SealBlock {
                block: task.replica.block,
                length_bytes: sent_bytes,
            },
        )
        .and_then(|seal_request_id| {
            receive_answer(
                &mut connection,
                &[write_request_id, seal_request_id],
                buffer,
            )
        });
    match sealed {
        Ok(MinionResponse::Sealed { stored, failed }) if !stored.is_empty() => Ok(SealedBlock {
            stored,
            failed,
            crc32c: block_crc.crc(),
        }),
        Ok(MinionResponse::Sealed { failed, .. }) => {
            let mut excluded: Vec<MinionId> = failed
                .iter()
                .filter(|f| f.is_own_failure())
                .map(|f| f.minion.id)
                .collect();
            excluded.push(first.id);
            let error = match failed.first() {
                Some(failure) => Error::Remote(failure.error.clone()),
                None => Error::Invalid("no minion of the pipeline stored the block".into()),
            };
            Err(BlockFailure::Minion { error, excluded })
        }
        Ok(other) => Err(minion_failed(unexpected("SealBlock", &other))),
        Err(error) => Err(minion_failed(explain_send_failure(&mut connection, error))),
    }
}

fn read_failed(error: io::Error) -> BlockFailure {
    let context = if error.kind() == io::ErrorKind::UnexpectedEof {
        "read the input: it became shorter during the write"
    } else {
        "read the input"
    };
    BlockFailure::Fatal(Error::io(context, error))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn local_files_read_in_order_by_ranges_and_again_from_their_start() {
        let mut file = tempfile::tempfile().expect("temporary file");
        file.write_all(b"xxabcdefgh").expect("write");
        file.seek(io::SeekFrom::Start(2)).expect("seek");
        let mut source = LocalFile::new(file).expect("local file");
        let (ranges, length_bytes) = source.ranges().expect("ranges");
        assert_eq!(length_bytes, 8);
        let mut range = Vec::new();
        ranges
            .open_range(3, 4)
            .expect("range")
            .read_to_end(&mut range)
            .expect("read");
        assert_eq!(range, b"defg");
        let mut buffer = [0u8; 4];
        assert_eq!(source.read(&mut buffer).expect("read"), 4);
        assert_eq!(&buffer, b"abcd");
        assert!(source.rewind(1).expect("rewind"));
        assert_eq!(source.read(&mut buffer).expect("read"), 4);
        assert_eq!(&buffer, b"bcde");
    }
}
