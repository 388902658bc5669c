//! Large files, many blocks at once. Writing: the worker that opened the
//! write keeps every master call (the master ties a write to the connection
//! that opened it) and allocates blocks ahead; block threads each send one
//! block's range of the local file (positional reads) through its pipeline
//! and seal it; sealed blocks are committed strictly in file order, those
//! that finish early wait for their predecessors. The bytes come from a
//! `RangeSource`: a local file (positional reads) or a cluster file (each
//! range through the verifying reader of the blocks it covers). Reading: block threads
//! each stream whole blocks through the verifying reader and write them at
//! their offsets of the local file.
//!
//! Streams beyond a worker's own come from a `StreamBudget` shared by the
//! run, so the number of pipelines, and the memory (one chunk each), stays
//! bounded whatever the mix of files.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

use dfs_engine::crc::CrcAppender;
use dfs_engine::limits::{CHUNK_BYTES, CONNECT_TIMEOUT_MS, WRITE_BLOCK_ATTEMPTS_MAX};
use dfs_engine::msg::{
    AllocatedBlock, BlockId, Credentials, MasterRequest, MinionAddress, MinionId, MinionRequest,
    MinionResponse, ReplicaFailure, ReplicaId,
};
use dfs_engine::path::DfsPath;
use dfs_engine::rpc::Connection;
use dfs_engine::{Error, Result};

use crate::client::{unexpected, Client};
use crate::master::Resend;
use crate::pool::pipeline_wait;
use crate::read::FileReader;
use crate::transfer::{explain_send_failure, minion_message, receive_answer};
use crate::write::WriteOptions;

/// Most block streams one file uses at once.
pub const BLOCK_STREAMS_PER_FILE_MAX: usize = 16;
/// A file is split into parallel block jobs only beyond this many blocks.
pub const PARALLEL_BLOCKS_MIN: u64 = 3;

/// Streams a run may add to its workers' own, shared by every large file.
#[derive(Debug)]
pub struct StreamBudget {
    available: Mutex<usize>,
}

impl StreamBudget {
    pub fn new(streams: usize) -> StreamBudget {
        StreamBudget {
            available: Mutex::new(streams),
        }
    }

    /// Takes up to `wanted` streams without waiting; returns how many.
    pub fn take_up_to(&self, wanted: usize) -> usize {
        match self.available.lock() {
            Ok(mut available) => {
                let taken = wanted.min(*available);
                *available -= taken;
                taken
            }
            Err(_) => 0,
        }
    }

    pub fn give_back(&self, count: usize) {
        if let Ok(mut available) = self.available.lock() {
            *available += count;
        }
    }
}

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

/// A cluster file as a `RangeSource`: a range is read through a verifying
/// reader of each block it covers, in turn.
pub struct ClusterSource<'r> {
    reader: &'r FileReader,
}

impl<'r> ClusterSource<'r> {
    pub fn new(reader: &'r FileReader) -> ClusterSource<'r> {
        ClusterSource { reader }
    }
}

impl RangeSource for ClusterSource<'_> {
    fn open_range(&self, offset_bytes: u64, length_bytes: u64) -> Result<Box<dyn Read + '_>> {
        if offset_bytes >= self.reader.length_bytes() {
            return Err(Error::Invalid(format!(
                "read the input: offset {offset_bytes} is past its end"
            )));
        }
        let block_bytes = self.reader.status().block_bytes.max(1);
        let index = usize::try_from(offset_bytes / block_bytes).unwrap_or(usize::MAX);
        let skip_bytes = offset_bytes - self.reader.block_offset_bytes(index);
        Ok(Box::new(ClusterRange {
            reader: self.reader,
            index,
            skip_bytes,
            left_bytes: length_bytes,
            current: None,
        }))
    }
}

struct ClusterRange<'r> {
    reader: &'r FileReader,
    /// The block read next (or now, with `current`).
    index: usize,
    /// Bytes of the block at `index` before the range starts.
    skip_bytes: u64,
    left_bytes: u64,
    current: Option<FileReader>,
}

impl Read for ClusterRange<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.left_bytes == 0 || buffer.is_empty() {
                return Ok(0);
            }
            if self.current.is_none() {
                let Some(mut block) = self.reader.block_reader(self.index) else {
                    return Ok(0);
                };
                // Ranges start on block boundaries when the block sizes
                // match; otherwise the head of the block is read and dropped.
                io::copy(&mut (&mut block).take(self.skip_bytes), &mut io::sink())?;
                self.skip_bytes = 0;
                self.current = Some(block);
            }
            let wanted = usize::try_from(self.left_bytes)
                .unwrap_or(usize::MAX)
                .min(buffer.len());
            let count = match self.current.as_mut() {
                Some(block) => block.read(&mut buffer[..wanted])?,
                None => 0,
            };
            if count == 0 {
                self.current = None;
                self.index += 1;
                continue;
            }
            self.left_bytes -= count as u64;
            return Ok(count);
        }
    }
}

/// One block to send: which range of the file, to which pipeline.
struct Task {
    index: usize,
    replica: ReplicaId,
    targets: Vec<MinionAddress>,
    offset_bytes: u64,
    length_bytes: u64,
}

enum BlockFailure {
    /// A minion failed: the block can go to a pipeline without `excluded`.
    Minion {
        error: Error,
        excluded: Vec<MinionId>,
    },
    /// The input failed: the write ends.
    Fatal(Error),
}

struct TaskResult {
    index: usize,
    replica: ReplicaId,
    length_bytes: u64,
    /// Who stored the block, who failed, and the block's CRC32C.
    outcome: std::result::Result<(Vec<MinionId>, Vec<ReplicaFailure>, u32), BlockFailure>,
}

/// Aborts the write on the master unless it was closed.
struct OpenWrite<'a> {
    client: &'a mut Client,
    path: &'a DfsPath,
    write: u64,
    closed: bool,
}

impl Drop for OpenWrite<'_> {
    fn drop(&mut self) {
        if !self.closed {
            // Best effort: the master also collects writes whose client vanished.
            let _ = self
                .client
                .call_once(MasterRequest::AbortWrite { write: self.write });
        }
    }
}

impl OpenWrite<'_> {
    fn allocate(&mut self, excluded: &[MinionId]) -> Result<AllocatedBlock> {
        self.client.allocate_block(self.path, self.write, excluded)
    }

    fn abandon(&mut self, block: BlockId) -> Result<()> {
        self.client.abandon_block(self.write, block)
    }
}

/// Writes the local file `source` of `length_bytes` to `path` with up to
/// `streams` blocks in flight; returns the bytes written. Nothing is
/// visible at `path` unless every block was committed and the write closed.
pub fn put_parallel(
    client: &mut Client,
    path: &DfsPath,
    options: WriteOptions,
    source: &dyn RangeSource,
    length_bytes: u64,
    streams: usize,
) -> Result<u64> {
    let opened = client.open_write(path, &options, false)?;
    let (write, block_bytes) = (opened.write, opened.block_bytes);
    let io_timeout = client.minions.io_timeout();
    let credentials = client.credentials().clone();
    let mut open = OpenWrite {
        client,
        path,
        write,
        closed: false,
    };
    let block_count = usize::try_from(length_bytes.div_ceil(block_bytes))
        .map_err(|_| Error::Invalid(format!("{path}: too many blocks")))?;
    let streams = streams
        .clamp(1, BLOCK_STREAMS_PER_FILE_MAX)
        .min(block_count.max(1));
    let sync = options.sync;

    let (task_sender, task_receiver) = mpsc::sync_channel::<Task>(streams);
    let task_receiver = Mutex::new(task_receiver);
    let (result_sender, result_receiver) = mpsc::channel::<TaskResult>();
    let committed = std::thread::scope(|scope| -> Result<Vec<BlockId>> {
        for _ in 0..streams {
            let results = result_sender.clone();
            let (tasks, credentials) = (&task_receiver, &credentials);
            scope.spawn(move || {
                let mut chunk = Vec::with_capacity(CHUNK_BYTES as usize);
                let mut buffer = Vec::new();
                loop {
                    let task = match tasks.lock() {
                        Ok(receiver) => receiver.recv(),
                        Err(_) => return,
                    };
                    let Ok(task) = task else { return };
                    let outcome = send_block(
                        &task,
                        source,
                        credentials,
                        sync,
                        io_timeout,
                        &mut chunk,
                        &mut buffer,
                    );
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
            });
        }
        drop(result_sender);
        // Ends the block threads however the coordination ends.
        let task_sender = task_sender;
        coordinate(
            &mut open,
            path,
            &task_sender,
            &result_receiver,
            block_count,
            block_bytes,
            length_bytes,
            streams,
        )
    })?;
    open.client
        .close_write(path, write, None, options.modified_ms, &committed)?;
    open.closed = true;
    Ok(length_bytes)
}

/// Allocates, hands out, retries and commits blocks in order; returns the
/// blocks committed, in order.
#[allow(clippy::too_many_arguments)]
fn coordinate(
    open: &mut OpenWrite<'_>,
    path: &DfsPath,
    tasks: &mpsc::SyncSender<Task>,
    results: &mpsc::Receiver<TaskResult>,
    block_count: usize,
    block_bytes: u64,
    length_bytes: u64,
    streams: usize,
) -> Result<Vec<BlockId>> {
    let mut committed = Vec::with_capacity(block_count);
    let mut excluded: Vec<MinionId> = Vec::new();
    let mut attempts = vec![0u32; block_count];
    let mut retry: VecDeque<usize> = VecDeque::new();
    let mut sealed: BTreeMap<usize, (ReplicaId, u64, Vec<MinionId>, u32)> = BTreeMap::new();
    let (mut next_allocate, mut next_commit, mut in_flight) = (0usize, 0usize, 0usize);
    // Sealed blocks waiting for a predecessor are bounded too.
    let window = 2 * streams;
    while next_commit < block_count {
        while in_flight < streams {
            let index = match retry.pop_front() {
                Some(index) => index,
                None if next_allocate < block_count && next_allocate < next_commit + window => {
                    next_allocate += 1;
                    next_allocate - 1
                }
                None => break,
            };
            let allocated = open.allocate(&excluded)?;
            let offset_bytes = index as u64 * block_bytes;
            let task = Task {
                index,
                replica: ReplicaId {
                    block: allocated.block,
                    generation: allocated.generation,
                },
                targets: allocated.targets,
                offset_bytes,
                length_bytes: block_bytes.min(length_bytes - offset_bytes),
            };
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
            Ok((stored, failed, crc32c)) => {
                for failure in &failed {
                    let error = Error::Remote(failure.error.clone());
                    open.client.warn(&format!(
                        "{}: {}",
                        result.replica.block,
                        minion_message(&failure.minion, &error)
                    ));
                    if !excluded.contains(&failure.minion.id) {
                        excluded.push(failure.minion.id);
                    }
                }
                sealed.insert(
                    result.index,
                    (result.replica, result.length_bytes, stored, crc32c),
                );
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
                        "{path}: block {}: {error} (gave up after {} pipelines)",
                        result.index, attempts[result.index]
                    )));
                }
                retry.push_back(result.index);
            }
        }
        while let Some((replica, length_bytes, replicas, crc32c)) = sealed.remove(&next_commit) {
            let request = MasterRequest::CommitBlock {
                write: open.write,
                block: replica.block,
                generation: replica.generation,
                length_bytes,
                replicas,
                crc32c,
            };
            open.client
                .call_expect_ok_with("CommitBlock", request, Resend::Always)?;
            committed.push(replica.block);
            next_commit += 1;
        }
    }
    Ok(committed)
}

/// Sends one block's range of `source` through its pipeline and seals it.
fn send_block(
    task: &Task,
    source: &dyn RangeSource,
    credentials: &Credentials,
    sync: bool,
    io_timeout: Duration,
    chunk: &mut Vec<u8>,
    buffer: &mut Vec<u8>,
) -> std::result::Result<(Vec<MinionId>, Vec<ReplicaFailure>, u32), BlockFailure> {
    let Some(first) = task.targets.first() else {
        return Err(BlockFailure::Fatal(Error::Invalid("no pipeline".into())));
    };
    let minion_failed = |error: Error| BlockFailure::Minion {
        error,
        excluded: vec![first.id],
    };
    let mut connection = Connection::open_with_timeouts(
        &first.address,
        Duration::from_millis(CONNECT_TIMEOUT_MS),
        pipeline_wait(io_timeout, task.targets.len()),
    )
    .map_err(minion_failed)?;
    let read_failed = |error: io::Error| {
        BlockFailure::Fatal(Error::io(
            if error.kind() == io::ErrorKind::UnexpectedEof {
                "read the input: it became shorter during the copy".to_string()
            } else {
                "read the input".to_string()
            },
            error,
        ))
    };
    let mut range = source
        .open_range(task.offset_bytes, task.length_bytes)
        .map_err(BlockFailure::Fatal)?;
    let write_request_id = connection
        .send(
            credentials,
            MinionRequest::WriteBlock {
                block: task.replica.block,
                generation: task.replica.generation,
                downstream: task.targets[1..].to_vec(),
                sync,
            },
        )
        .map_err(|error| minion_failed(explain_send_failure(&mut connection, error)))?;
    let mut sent_bytes = 0u64;
    let mut block_crc = CrcAppender::new();
    while sent_bytes < task.length_bytes {
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
            credentials,
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
        Ok(MinionResponse::Sealed { stored, failed }) if !stored.is_empty() => {
            Ok((stored, failed, block_crc.crc()))
        }
        Ok(MinionResponse::Sealed { failed, .. }) => {
            let mut excluded: Vec<MinionId> = failed.iter().map(|f| f.minion.id).collect();
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

/// Writes what it is given at increasing offsets of a file.
struct PositionedWriter<'a> {
    file: &'a File,
    offset_bytes: u64,
}

impl Write for PositionedWriter<'_> {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        self.file.write_all_at(buffer, self.offset_bytes)?;
        self.offset_bytes += buffer.len() as u64;
        Ok(buffer.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads every block of `reader`'s file into `target` at its offset, up to
/// `streams` blocks at once; returns the bytes written.
pub fn get_parallel(
    reader: &FileReader,
    target: &File,
    target_name: &str,
    streams: usize,
) -> Result<u64> {
    let block_count = reader.block_count();
    let streams = streams
        .clamp(1, BLOCK_STREAMS_PER_FILE_MAX)
        .min(block_count.max(1));
    target
        .set_len(reader.length_bytes())
        .map_err(|error| Error::io(format!("size {target_name}"), error))?;
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..streams {
            scope.spawn(|| loop {
                let failed = failure.lock().map_or(true, |failure| failure.is_some());
                let index = next.fetch_add(1, Ordering::Relaxed);
                if failed || index >= block_count {
                    return;
                }
                let Some(mut block_reader) = reader.block_reader(index) else {
                    return;
                };
                let mut writer = PositionedWriter {
                    file: target,
                    offset_bytes: reader.block_offset_bytes(index),
                };
                if let Err(error) = block_reader.copy_to(&mut writer, target_name) {
                    if let Ok(mut failure) = failure.lock() {
                        failure.get_or_insert(error);
                    }
                    return;
                }
            });
        }
    });
    match failure.into_inner() {
        Ok(Some(error)) => Err(error),
        Ok(None) => Ok(reader.length_bytes()),
        Err(_) => Err(Error::Invalid("a block thread panicked".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_never_gives_more_than_it_has() {
        let budget = StreamBudget::new(5);
        for (wanted, expected) in [(3, 3), (4, 2), (1, 0)] {
            assert_eq!(budget.take_up_to(wanted), expected, "wanted {wanted}");
        }
        budget.give_back(5);
        assert_eq!(budget.take_up_to(10), 5);
    }

    #[test]
    fn positioned_writes_land_at_their_offsets() {
        let file = tempfile::tempfile().expect("temporary file");
        for (offset, bytes) in [(4u64, &b"efgh"[..]), (0, b"abcd"), (8, b"ij")] {
            let mut writer = PositionedWriter {
                file: &file,
                offset_bytes: offset,
            };
            writer.write_all(bytes).expect("write");
        }
        let mut read_back = vec![0u8; 10];
        file.read_exact_at(&mut read_back, 0).expect("read");
        assert_eq!(&read_back, b"abcdefghij");
    }
}
