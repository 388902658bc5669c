//! Small files written in batches: one master `Batch` opens a group of
//! files (their first blocks allocated on one pipeline), one `WriteBlocks`
//! exchange stores all their blocks on that pipeline, and one more master
//! `Batch` closes them. Written one by one, each small file costs two
//! master round trips and a pipeline exchange, and the CPU cost of all
//! those messages, not the bytes, limits how many files a second a copy
//! reaches.
//!
//! A batch is an optimisation, never the only way: a file that cannot be
//! written in its batch (its path exists, it needs more than one block, a
//! minion failed it) comes back as an error with nothing visible at its
//! path, and the caller writes it alone through `Client::put`, which
//! retries on fresh pipelines and gives the proper error. Every write the
//! batch opens is closed or aborted before it returns; when the master's
//! answers leave that in doubt, the master connection is dropped, and the
//! master aborts the writes a closed connection left open.

use std::io;

use dfs_engine::limits::{
    BATCH_REQUESTS_MAX, BLOCK_BYTES_MAX, CHUNK_BYTES, REPLICATION_MAX, WRITE_BATCH_BLOCKS_MAX,
    WRITE_BATCH_BYTES_MAX,
};
use dfs_engine::msg::{
    AllocatedBlock, BatchBlock, BlockCommit, BlockId, Encoded, ErrorKind, Generation,
    MasterRequest, MasterResponse, MinionAddress, MinionRequest, MinionResponse, ReplicaId,
    SealedBlock,
};
use dfs_engine::path::DfsPath;
use dfs_engine::{Error, Result};

use crate::client::{unexpected, Client};
use crate::transfer::{explain_send_failure, minion_message, receive_answer};
use crate::write::WriteOptions;

/// Most bytes a file written in a batch may hold: one block of one chunk.
pub const SMALL_FILE_BYTES_MAX: u64 = CHUNK_BYTES as u64;

/// The master's answer to one request of a batch: an `Err` when its entry
/// does not decode, which the caller treats as any answer it cannot use.
type Answer = Result<MasterResponse>;

/// One file for `Client::put_small_files`: all its bytes, in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmallFile {
    pub path: DfsPath,
    /// The whole file, at most `SMALL_FILE_BYTES_MAX` bytes.
    pub data: Vec<u8>,
    /// Replace a file that exists at the path.
    pub overwrite: bool,
    /// Permission bits of the new file.
    pub mode: u32,
    /// The new file's modification time (ms since the epoch); None: the
    /// time it is closed.
    pub modified_ns: Option<u64>,
}

impl Client {
    /// Writes many small files with a few messages per batch, and answers
    /// for each file, in order: `Ok(bytes)` when it is written and visible,
    /// `Err` when this call made nothing visible at its path (its open was
    /// refused, e.g. `AlreadyExists`, or its write was aborted); the caller
    /// then writes it alone with `put`, which retries and gives the proper
    /// error. Exception: when the connection to the master breaks while
    /// files are being closed, their entries are errors although the master
    /// may have closed them.
    ///
    /// `options` gives replication, block size and sync; overwrite, mode
    /// and modification time are each file's own. A file of more than
    /// `SMALL_FILE_BYTES_MAX` bytes, or more than one block, is refused in
    /// its entry without being sent. Files are split into as many batches
    /// as the limits of one batch need. The outer error is for options the
    /// master would refuse.
    pub fn put_small_files(
        &mut self,
        files: &[SmallFile],
        options: &WriteOptions,
    ) -> Result<Vec<Result<u64>>> {
        options.validate()?;
        let mut results: Vec<Option<Result<u64>>> =
            files.iter().map(|file| too_large(file).map(Err)).collect();
        let sizes: Vec<u64> = files.iter().map(|file| file.data.len() as u64).collect();
        for indexes in plan_batches(&sizes) {
            let batch: Vec<&SmallFile> = indexes.iter().map(|&index| &files[index]).collect();
            let outcomes = self.put_batch(&batch, options);
            for (index, outcome) in indexes.into_iter().zip(outcomes) {
                results[index] = Some(outcome);
            }
        }
        Ok(results
            .into_iter()
            .zip(files)
            .map(|(result, file)| {
                result.unwrap_or_else(|| {
                    Err(Error::Invalid(format!(
                        "{}: left out of every batch",
                        file.path
                    )))
                })
            })
            .collect())
    }

    /// One batch, within every limit: open, store, close.
    fn put_batch(&mut self, files: &[&SmallFile], options: &WriteOptions) -> Vec<Result<u64>> {
        let mut steps = self.open_batch(files, options);
        let unnamed_writes = files
            .iter()
            .zip(&steps)
            .any(|(file, step)| may_have_left_a_write_open(file, step));
        self.store_batch(files, &mut steps, options.sync);
        let results = self.close_batch(files, steps);
        if unnamed_writes {
            // Now that the batch's own writes are closed, the master aborts
            // the ones no answer named.
            self.disconnect_master();
        }
        results
    }

    /// Opens every file of the batch, first blocks on one pipeline.
    fn open_batch(&mut self, files: &[&SmallFile], options: &WriteOptions) -> Vec<Step> {
        let requests = files
            .iter()
            .map(|file| MasterRequest::OpenWrite {
                path: file.path.to_string(),
                replication: options.replication,
                block_bytes: options.block_bytes,
                overwrite: file.overwrite,
                mode: file.mode,
                allocate_first_block: !file.data.is_empty(),
            })
            .collect();
        match self.call_batch("OpenWrite", requests, true) {
            Ok(answers) => {
                let steps: Vec<Step> = files
                    .iter()
                    .zip(answers)
                    .map(|(file, answer)| opened_step(file, answer))
                    .collect();
                match steps.iter().find_map(|step| match step {
                    Step::Unknown(error) => Some(error.to_string()),
                    _ => None,
                }) {
                    // An answer hides whether a write was opened.
                    Some(why) => self.give_up_batch(files, steps, &why),
                    None => steps,
                }
            }
            Err(error) => {
                // Writes may be open that no answer names.
                self.disconnect_master();
                files
                    .iter()
                    .map(|file| Step::Done(Err(in_batch(&file.path, &error))))
                    .collect()
            }
        }
    }

    /// Drops the master connection, so the master aborts every write of the
    /// batch: each file that was opened ends with an error saying `why`.
    fn give_up_batch(&mut self, files: &[&SmallFile], steps: Vec<Step>, why: &str) -> Vec<Step> {
        self.disconnect_master();
        files
            .iter()
            .zip(steps)
            .map(|(file, step)| match step {
                Step::Done(_) | Step::Unknown(_) => step,
                _ => Step::Done(Err(Error::Invalid(format!(
                    "{}: batch given up: {why}",
                    file.path
                )))),
            })
            .collect()
    }

    /// Stores the blocks of the opened files that share the first one's
    /// pipeline in one exchange; the others are to be aborted.
    fn store_batch(&mut self, files: &[&SmallFile], steps: &mut [Step], sync: bool) {
        let Some(targets) = steps.iter().find_map(|step| match step {
            Step::Opened {
                block: Some(block), ..
            } => Some(block.targets.clone()),
            _ => None,
        }) else {
            // Only empty files: nothing to store.
            for step in steps.iter_mut() {
                step.ready_if_empty();
            }
            return;
        };
        let mut sent: Vec<usize> = Vec::new();
        for (index, step) in steps.iter_mut().enumerate() {
            step.ready_if_empty();
            if let Step::Opened {
                write,
                block: Some(block),
            } = step
            {
                if block.targets == targets {
                    sent.push(index);
                } else {
                    *step = Step::Abort {
                        write: *write,
                        error: Error::Invalid(format!(
                            "{}: {} was allocated to another pipeline than the batch's",
                            files[index].path, block.block
                        )),
                    };
                }
            }
        }
        let blocks: Vec<Batched> = sent
            .iter()
            .filter_map(|&index| match &steps[index] {
                Step::Opened {
                    block: Some(block), ..
                } => Some(Batched {
                    replica: ReplicaId {
                        block: block.block,
                        generation: block.generation,
                    },
                    token: block.token.clone(),
                    data: files[index].data.as_slice(),
                }),
                _ => None,
            })
            .collect();
        match self.write_blocks(&targets, &blocks, sync) {
            Ok(sealed) => {
                for ((&index, sealed), batched) in sent.iter().zip(sealed).zip(&blocks) {
                    let step = &mut steps[index];
                    if let Step::Opened { write, .. } = *step {
                        let generation = batched.replica.generation;
                        *step = self.sealed_step(files[index], write, generation, sealed);
                    }
                }
            }
            Err(error) => {
                for &index in &sent {
                    let step = &mut steps[index];
                    if let Step::Opened { write, .. } = *step {
                        *step = Step::Abort {
                            write,
                            error: in_batch(&files[index].path, &error),
                        };
                    }
                }
            }
        }
    }

    /// The step after the pipeline answered for one block: closed with the
    /// members that stored it, or aborted when none did.
    fn sealed_step(
        &self,
        file: &SmallFile,
        write: u64,
        generation: Generation,
        sealed: SealedBlock,
    ) -> Step {
        for failure in &sealed.failed {
            let error = Error::Remote(failure.error.clone());
            self.warn(&format!(
                "{}: {}",
                sealed.block,
                minion_message(&failure.minion, &error)
            ));
        }
        if sealed.stored.is_empty() {
            let why = match sealed.failed.first() {
                Some(failure) => {
                    minion_message(&failure.minion, &Error::Remote(failure.error.clone()))
                }
                None => "no minion of the pipeline stored it".to_string(),
            };
            return Step::Abort {
                write,
                error: Error::Invalid(format!("{}: {}: {why}", file.path, sealed.block)),
            };
        }
        Step::Ready {
            write,
            last_block: Some(BlockCommit {
                block: sealed.block,
                generation,
                length_bytes: file.data.len() as u64,
                replicas: sealed.stored,
                crc32c: crc32c::crc32c(&file.data),
            }),
        }
    }

    /// Closes what was stored and aborts the rest in one batch; a close
    /// the master refuses is aborted after it. The results, in order.
    fn close_batch(&mut self, files: &[&SmallFile], steps: Vec<Step>) -> Vec<Result<u64>> {
        let mut requests = Vec::new();
        for (file, step) in files.iter().zip(&steps) {
            match step {
                Step::Ready { write, last_block } => requests.push(MasterRequest::CloseWrite {
                    write: *write,
                    last_block: last_block.clone(),
                    modified_ns: file.modified_ns,
                }),
                Step::Abort { write, .. } => {
                    requests.push(MasterRequest::AbortWrite { write: *write })
                }
                Step::Opened { write, .. } => {
                    // Not reached: every opened write was stored or aborted.
                    requests.push(MasterRequest::AbortWrite { write: *write })
                }
                Step::Done(_) | Step::Unknown(_) => {}
            }
        }
        let mut answers = if requests.is_empty() {
            Vec::new()
        } else {
            match self.call_batch("CloseWrite", requests, false) {
                Ok(answers) => answers,
                Err(error) => {
                    // The master aborts the open writes of a closed connection.
                    self.disconnect_master();
                    return files
                        .iter()
                        .zip(steps)
                        .map(|(file, step)| match step {
                            Step::Done(result) => result,
                            Step::Unknown(error) => Err(error),
                            _ => Err(in_batch(&file.path, &error)),
                        })
                        .collect();
                }
            }
        }
        .into_iter();
        let mut results = Vec::with_capacity(files.len());
        let mut refused_closes = Vec::new();
        for (file, step) in files.iter().zip(steps) {
            let result = match step {
                Step::Done(result) => result,
                Step::Unknown(error) => Err(error),
                Step::Ready { write, .. } => match answers.next() {
                    Some(Ok(MasterResponse::Closed { .. })) => Ok(file.data.len() as u64),
                    answer => {
                        refused_closes.push(MasterRequest::AbortWrite { write });
                        Err(close_error(file, answer))
                    }
                },
                Step::Abort { error, .. } => {
                    if !matches!(answers.next(), Some(Ok(MasterResponse::Ok))) {
                        // The write may still be open.
                        self.disconnect_master();
                    }
                    Err(error)
                }
                Step::Opened { .. } => {
                    answers.next();
                    Err(Error::Invalid(format!("{}: never stored", file.path)))
                }
            };
            results.push(result);
        }
        self.abort_refused_closes(refused_closes);
        results
    }

    /// Aborts writes whose close the master refused: they may still be
    /// open. Best effort: after any doubt the master connection is dropped.
    fn abort_refused_closes(&mut self, aborts: Vec<MasterRequest>) {
        if aborts.is_empty() {
            return;
        }
        let aborted = self.call_batch("AbortWrite", aborts, false);
        let all_ok = aborted.is_ok_and(|answers| {
            answers
                .iter()
                .all(|answer| matches!(answer, Ok(MasterResponse::Ok)))
        });
        if !all_ok {
            self.disconnect_master();
        }
    }

    /// One master `Batch`: the answers, one per request, in order, each
    /// decoded on its own (an entry that does not decode is an `Err` in
    /// its place, for the caller to treat as an answer it cannot use).
    fn call_batch(
        &mut self,
        what: &str,
        requests: Vec<MasterRequest>,
        same_pipeline: bool,
    ) -> Result<Vec<Answer>> {
        let count = requests.len();
        let request = MasterRequest::Batch {
            requests: requests
                .iter()
                .map(Encoded::of)
                .collect::<Result<Vec<Encoded>>>()?,
            same_pipeline,
        };
        match self.call(request)? {
            MasterResponse::Batch(answers) if answers.len() == count => Ok(answers
                .iter()
                .enumerate()
                .map(|(index, answer)| decode_answer(what, index, answer))
                .collect()),
            MasterResponse::Batch(answers) => Err(Error::Protocol(format!(
                "master answered a batch of {count} {what} requests with {} answers",
                answers.len()
            ))),
            other => Err(unexpected(&format!("a batch of {what}"), &other)),
        }
    }

    /// Stores `blocks` (id and bytes, each 1 to `CHUNK_BYTES` bytes) on the
    /// pipeline `targets` in one `WriteBlocks` exchange; the members'
    /// answers per block, in order.
    fn write_blocks(
        &mut self,
        targets: &[MinionAddress],
        blocks: &[Batched],
        sync: bool,
    ) -> Result<Vec<SealedBlock>> {
        let Some(first) = targets.first() else {
            return Err(Error::Protocol("a batch's pipeline has no minion".into()));
        };
        let mut connection = self
            .minions
            .connect_pipeline(&first.address, targets.len())
            .map_err(|error| Error::Invalid(minion_message(first, &error)))?;
        let request = MinionRequest::WriteBlocks {
            blocks: blocks
                .iter()
                .map(|batched| BatchBlock {
                    block: batched.replica.block,
                    generation: batched.replica.generation,
                    length_bytes: batched.data.len() as u64,
                    token: batched.token.clone(),
                })
                .collect(),
            downstream: targets[1..].to_vec(),
            sync,
        };
        let mut buffer = Vec::new();
        let answered = connection
            .send(self.credentials(), request)
            .and_then(|request_id| {
                for Batched { data, .. } in blocks {
                    connection.send_data(data, crc32c::crc32c(data))?;
                }
                receive_answer(&mut connection, &[request_id], &mut buffer)
            });
        let sealed = match answered {
            Ok(MinionResponse::BatchSealed { blocks: sealed }) => {
                check_sealed(first, blocks, &sealed).map(|()| sealed)
            }
            Ok(other) => Err(Error::Invalid(minion_message(
                first,
                &unexpected("WriteBlocks", &other),
            ))),
            Err(error) => {
                let error = explain_send_failure(&mut connection, error);
                // Closing the connection makes the pipeline drop its partial copies.
                return Err(Error::Invalid(minion_message(first, &error)));
            }
        }?;
        // The exchange is complete: the connection can carry the next one.
        self.minions.keep(connection);
        Ok(sealed)
    }
}

/// One file's block in a `WriteBlocks` exchange.
struct Batched<'a> {
    replica: ReplicaId,
    /// Its write token, from the master's allocation.
    token: Vec<u8>,
    data: &'a [u8],
}

/// Where one file of a batch is.
#[derive(Debug)]
enum Step {
    /// Nothing is open on the master for this file: its result.
    Done(Result<u64>),
    /// The master's answer to its open was not one this client can use,
    /// so a write may be open: the master connection is dropped.
    Unknown(Error),
    /// Open; its first block, if it has bytes, is to be stored.
    Opened {
        write: u64,
        block: Option<AllocatedBlock>,
    },
    /// Stored (or empty): to be closed.
    Ready {
        write: u64,
        last_block: Option<BlockCommit>,
    },
    /// Could not be completed: to be aborted, for this reason.
    Abort { write: u64, error: Error },
}

impl Step {
    /// An opened empty file needs no block: it is ready to close.
    fn ready_if_empty(&mut self) {
        if let Step::Opened { write, block: None } = *self {
            *self = Step::Ready {
                write,
                last_block: None,
            };
        }
    }
}

/// One entry of the master's answer to a batch of `what` requests.
fn decode_answer(what: &str, index: usize, answer: &Encoded) -> Answer {
    answer.decode().map_err(|error| {
        let why = match error {
            Error::Protocol(text) => text,
            other => other.to_string(),
        };
        Error::Protocol(format!(
            "answer {index} to a batch of {what} requests: {why}"
        ))
    })
}

/// The step after the master answered a file's `OpenWrite`. An answer
/// that does not decode or is not one of an open leaves in doubt whether
/// a write was opened.
fn opened_step(file: &SmallFile, answer: Answer) -> Step {
    let (write, replication, block_bytes, first_block) = match answer {
        Ok(MasterResponse::Error(error)) => return Step::Done(Err(Error::Remote(error))),
        Ok(MasterResponse::WriteOpened {
            write,
            replication,
            block_bytes,
            first_block,
        }) => (write, replication, block_bytes, first_block),
        Ok(other) => {
            return Step::Unknown(Error::Protocol(format!(
                "{}: {}",
                file.path,
                unexpected("OpenWrite", &other)
            )))
        }
        Err(error) => return Step::Unknown(Error::Protocol(format!("{}: {error}", file.path))),
    };
    let path = &file.path;
    let wanted_block = !file.data.is_empty();
    let length_bytes = file.data.len() as u64;
    let unusable = if !(1..=BLOCK_BYTES_MAX).contains(&block_bytes)
        || !(1..=REPLICATION_MAX).contains(&replication)
    {
        Some(Error::Protocol(format!(
            "master opened a write of {path} with block size {block_bytes} and replication {replication}"
        )))
    } else if length_bytes > block_bytes {
        Some(Error::Invalid(format!(
            "{path}: {length_bytes} bytes need more than one block of {block_bytes} bytes"
        )))
    } else {
        match &first_block {
            Some(_) if !wanted_block => Some(Error::Protocol(format!(
                "master allocated a first block of {path} that was not asked for"
            ))),
            None if wanted_block => Some(Error::Protocol(format!(
                "master allocated no first block of {path}"
            ))),
            Some(first) if first.targets.is_empty() => Some(Error::Protocol(format!(
                "master allocated {} of {path} without minions",
                first.block
            ))),
            _ => None,
        }
    };
    match unusable {
        Some(error) => Step::Abort { write, error },
        None => Step::Opened {
            write,
            block: first_block,
        },
    }
}

/// Whether a refused open may still have left a write open: the master
/// opens the write before it allocates the first block, and a failed
/// allocation (no minion can take it) leaves the write open, its id
/// unanswered. Errors that refuse the open itself do not.
fn may_have_left_a_write_open(file: &SmallFile, step: &Step) -> bool {
    let Step::Done(Err(Error::Remote(error))) = step else {
        return false;
    };
    !file.data.is_empty()
        && !matches!(
            error.kind,
            ErrorKind::AlreadyExists
                | ErrorKind::NotFound
                | ErrorKind::NotADirectory
                | ErrorKind::IsADirectory
                | ErrorKind::PermissionDenied
                | ErrorKind::InvalidArgument
        )
}

/// The error of a file whose `CloseWrite` was not answered `Closed`.
fn close_error(file: &SmallFile, answer: Option<Answer>) -> Error {
    match answer {
        Some(Ok(MasterResponse::Error(error))) => Error::Remote(error),
        Some(Ok(other)) => Error::Protocol(format!(
            "{}: {}",
            file.path,
            unexpected("CloseWrite", &other)
        )),
        Some(Err(error)) => Error::Protocol(format!("{}: {error}", file.path)),
        None => Error::Protocol(format!("{}: no answer to its CloseWrite", file.path)),
    }
}

/// A pipeline's answer must name every block sent, in order.
fn check_sealed(first: &MinionAddress, sent: &[Batched], sealed: &[SealedBlock]) -> Result<()> {
    let answered: Vec<BlockId> = sealed.iter().map(|block| block.block).collect();
    let expected: Vec<BlockId> = sent.iter().map(|batched| batched.replica.block).collect();
    if answered == expected {
        return Ok(());
    }
    Err(Error::Protocol(minion_message(
        first,
        &Error::Protocol(format!(
            "answered a batch of {} blocks for {} other blocks",
            expected.len(),
            answered.len()
        )),
    )))
}

/// Refuses a file too large for a batch, before anything is sent.
fn too_large(file: &SmallFile) -> Option<Error> {
    let length_bytes = file.data.len() as u64;
    (length_bytes > SMALL_FILE_BYTES_MAX).then(|| {
        Error::Invalid(format!(
            "{}: {length_bytes} bytes is more than a batched file may hold ({SMALL_FILE_BYTES_MAX})",
            file.path
        ))
    })
}

/// Splits files of these sizes into batches, in order, each within every
/// limit: `BATCH_REQUESTS_MAX` files (one request each in the open and in
/// the close), `WRITE_BATCH_BLOCKS_MAX` non-empty files and
/// `WRITE_BATCH_BYTES_MAX` bytes (one `WriteBlocks`). Files over
/// `SMALL_FILE_BYTES_MAX` are in no batch.
fn plan_batches(sizes: &[u64]) -> Vec<Vec<usize>> {
    let mut batches = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let (mut blocks, mut bytes) = (0usize, 0u64);
    for (index, &size) in sizes.iter().enumerate() {
        if size > SMALL_FILE_BYTES_MAX {
            continue;
        }
        let block = usize::from(size > 0);
        let fits = current.len() < BATCH_REQUESTS_MAX
            && blocks + block <= WRITE_BATCH_BLOCKS_MAX
            && bytes + size <= WRITE_BATCH_BYTES_MAX;
        if !fits {
            batches.push(std::mem::take(&mut current));
            (blocks, bytes) = (0, 0);
        }
        current.push(index);
        blocks += block;
        bytes += size;
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// An error of the whole batch, as one file's: named by its path, and a
/// copy (errors are not `Clone`: an I/O cause keeps its kind and text).
fn in_batch(path: &DfsPath, error: &Error) -> Error {
    let copy = match error {
        Error::Protocol(text) => Error::Protocol(text.clone()),
        Error::Corrupted { what, detail } => Error::corrupted(what.clone(), detail.clone()),
        Error::Invalid(text) => Error::Invalid(text.clone()),
        Error::Io { context, cause } => Error::io(
            context.clone(),
            io::Error::new(cause.kind(), cause.to_string()),
        ),
        Error::Remote(remote) => Error::Remote(remote.clone()),
    };
    match copy {
        Error::Remote(remote) => Error::Remote(remote),
        Error::Invalid(text) => Error::Invalid(format!("{path}: in a batch: {text}")),
        other => Error::Invalid(format!("{path}: in a batch: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dfs_engine::msg::{MinionId, RemoteError};

    fn file(path: &str, length: usize) -> SmallFile {
        SmallFile {
            path: DfsPath::parse(path).expect("path"),
            data: vec![7u8; length],
            overwrite: false,
            mode: 0o644,
            modified_ns: None,
        }
    }

    #[test]
    fn batches_keep_every_limit_and_the_order() {
        let chunk = SMALL_FILE_BYTES_MAX;
        // 300 empty files: only the request limit splits them.
        let empties = plan_batches(&[0; 300]);
        assert_eq!(
            empties.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![BATCH_REQUESTS_MAX, 300 - BATCH_REQUESTS_MAX]
        );
        // 200 one-byte files: the block limit.
        let ones = plan_batches(&[1; 200]);
        assert_eq!(
            ones.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![WRITE_BATCH_BLOCKS_MAX, 200 - WRITE_BATCH_BLOCKS_MAX]
        );
        // Whole chunks: the byte limit (8 per 512 KiB); a file over a
        // chunk is in no batch.
        let mut sizes = vec![chunk; 10];
        sizes.insert(3, chunk + 1);
        let chunks = plan_batches(&sizes);
        assert_eq!(chunks[0], vec![0, 1, 2, 4, 5, 6, 7, 8]);
        assert_eq!(chunks[1], vec![9, 10]);
        // Mixed sizes, every batch within the limits, every small file once.
        let mixed: Vec<u64> = (0..1000u64).map(|i| (i * 7919) % (chunk + 2)).collect();
        let batches = plan_batches(&mixed);
        let mut seen: Vec<usize> = batches.concat();
        assert!(seen.windows(2).all(|pair| pair[0] < pair[1]), "in order");
        seen.sort_unstable();
        let small: Vec<usize> = (0..mixed.len()).filter(|&i| mixed[i] <= chunk).collect();
        assert_eq!(seen, small);
        for batch in &batches {
            let bytes: u64 = batch.iter().map(|&i| mixed[i]).sum();
            let blocks = batch.iter().filter(|&&i| mixed[i] > 0).count();
            assert!(!batch.is_empty() && batch.len() <= BATCH_REQUESTS_MAX);
            assert!(blocks <= WRITE_BATCH_BLOCKS_MAX);
            assert!(bytes <= WRITE_BATCH_BYTES_MAX);
        }
        assert!(plan_batches(&[]).is_empty());
    }

    fn allocated(block: u64, minions: &[u64]) -> AllocatedBlock {
        AllocatedBlock {
            block: BlockId(block),
            generation: Generation(block + 1000),
            targets: minions
                .iter()
                .map(|&id| MinionAddress {
                    id: MinionId(id),
                    address: format!("127.0.0.1:{id}"),
                })
                .collect(),
            token: Vec::new(),
        }
    }

    fn opened(write: u64, block_bytes: u64, first_block: Option<AllocatedBlock>) -> MasterResponse {
        MasterResponse::WriteOpened {
            write,
            replication: 3,
            block_bytes,
            first_block,
        }
    }

    #[test]
    fn open_answers_become_steps() {
        let exists = RemoteError::new(ErrorKind::AlreadyExists, "/a: exists");
        let step = opened_step(&file("/a", 5), Ok(MasterResponse::Error(exists.clone())));
        assert!(matches!(step, Step::Done(Err(Error::Remote(e))) if e == exists));

        let step = opened_step(
            &file("/a", 5),
            Ok(opened(4, 1 << 20, Some(allocated(9, &[1])))),
        );
        assert!(
            matches!(step, Step::Opened { write: 4, block: Some(ref b) } if b.block == BlockId(9))
        );
        let step = opened_step(&file("/e", 0), Ok(opened(5, 1 << 20, None)));
        assert!(matches!(
            step,
            Step::Opened {
                write: 5,
                block: None
            }
        ));

        // Usable answers that this file cannot use: the write is aborted.
        for (length, answer, why) in [
            (
                5,
                opened(6, 4, Some(allocated(9, &[1]))),
                "more than one block",
            ),
            (
                0,
                opened(6, 1 << 20, Some(allocated(9, &[1]))),
                "not asked for",
            ),
            (5, opened(6, 1 << 20, None), "no first block"),
            (
                5,
                opened(6, 1 << 20, Some(allocated(9, &[]))),
                "without minions",
            ),
            (5, opened(6, 0, Some(allocated(9, &[1]))), "block size 0"),
        ] {
            match opened_step(&file("/f", length), Ok(answer)) {
                Step::Abort { write: 6, error } => {
                    assert!(error.to_string().contains(why), "{error} lacks {why:?}")
                }
                other => panic!("{why}: {other:?}"),
            }
        }
        // An answer that is no answer to an open, or that does not decode:
        // whether a write is open is unknown.
        assert!(matches!(
            opened_step(&file("/a", 5), Ok(MasterResponse::Ok)),
            Step::Unknown(Error::Protocol(_))
        ));
        let garbled = decode_answer("OpenWrite", 3, &Encoded(vec![0xff; 4]));
        match opened_step(&file("/a", 5), garbled) {
            Step::Unknown(error @ Error::Protocol(_)) => assert!(
                error
                    .to_string()
                    .contains("/a: protocol error: answer 3 to a batch of OpenWrite requests: "),
                "{error}"
            ),
            other => panic!("expected an unknown step, got {other:?}"),
        }
    }

    #[test]
    fn batch_answers_decode_one_by_one() {
        let answer = opened(4, 1 << 20, None);
        let entry = Encoded::of(&answer).expect("encode");
        assert_eq!(
            decode_answer("OpenWrite", 0, &entry).expect("decodes"),
            answer
        );
        let error = decode_answer("CloseWrite", 7, &Encoded(Vec::new())).expect_err("empty");
        assert!(
            error.to_string().starts_with(
                "protocol error: answer 7 to a batch of CloseWrite requests: \
                 undecodable MasterResponse of 0 bytes: "
            ),
            "{error}"
        );
    }

    #[test]
    fn opens_refused_after_opening_are_told_apart() {
        let refused = |kind| Step::Done(Err(Error::Remote(RemoteError::new(kind, "no"))));
        let data = file("/a", 5);
        assert!(may_have_left_a_write_open(
            &data,
            &refused(ErrorKind::NoSpace)
        ));
        assert!(may_have_left_a_write_open(&data, &refused(ErrorKind::Io)));
        assert!(!may_have_left_a_write_open(
            &data,
            &refused(ErrorKind::AlreadyExists)
        ));
        assert!(!may_have_left_a_write_open(
            &data,
            &refused(ErrorKind::NotFound)
        ));
        // An empty file asks for no block: a refused open opened nothing.
        assert!(!may_have_left_a_write_open(
            &file("/e", 0),
            &refused(ErrorKind::NoSpace)
        ));
        assert!(!may_have_left_a_write_open(&data, &Step::Done(Ok(5))));
    }

    #[test]
    fn files_over_a_chunk_are_refused_before_sending() {
        assert!(too_large(&file("/a", CHUNK_BYTES as usize)).is_none());
        let error = too_large(&file("/big", CHUNK_BYTES as usize + 1)).expect("refused");
        assert_eq!(
            error.to_string(),
            "/big: 65537 bytes is more than a batched file may hold (65536)"
        );
    }

    #[test]
    fn sealed_answers_must_name_the_blocks_sent_in_order() {
        let first = MinionAddress {
            id: MinionId(1),
            address: "127.0.0.1:1".into(),
        };
        let sealed = |ids: &[u64]| -> Vec<SealedBlock> {
            ids.iter()
                .map(|&id| SealedBlock {
                    block: BlockId(id),
                    stored: vec![MinionId(1)],
                    failed: vec![],
                })
                .collect()
        };
        let data = [1u8];
        let batched = |id: u64| Batched {
            replica: ReplicaId {
                block: BlockId(id),
                generation: Generation(id + 1000),
            },
            token: Vec::new(),
            data: &data[..],
        };
        let sent = [batched(1), batched(2)];
        assert!(check_sealed(&first, &sent, &sealed(&[1, 2])).is_ok());
        for wrong in [&[2u64, 1][..], &[1], &[1, 2, 3], &[]] {
            assert!(
                check_sealed(&first, &sent, &sealed(wrong)).is_err(),
                "{wrong:?}"
            );
        }
    }

    #[test]
    fn batch_errors_are_copied_per_file() {
        let path = DfsPath::parse("/x").expect("path");
        let io_error = Error::io(
            "connect to 127.0.0.1:1",
            io::Error::from(io::ErrorKind::ConnectionRefused),
        );
        let copied = in_batch(&path, &io_error);
        assert!(copied
            .to_string()
            .starts_with("/x: in a batch: connect to 127.0.0.1:1"));
        let remote = RemoteError::new(ErrorKind::Busy, "busy");
        assert!(matches!(
            in_batch(&path, &Error::Remote(remote.clone())),
            Error::Remote(r) if r == remote
        ));
    }

    /// A master on a loopback socket: opens get write ids from 1 (a path
    /// ending in "exists" is refused, one ending in "garbled" is opened
    /// and answered with bytes that do not decode), first blocks go to
    /// `minion`, closes of the writes in `refused_closes` are refused;
    /// every batch and the number of connections taken are kept.
    struct FakeMaster {
        address: String,
        batches: std::sync::Arc<std::sync::Mutex<Vec<Vec<MasterRequest>>>>,
        connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl FakeMaster {
        fn start(minion: MinionAddress, refused_closes: Vec<u64>) -> FakeMaster {
            use dfs_engine::msg::Envelope;
            use dfs_engine::wire::{read_message, write_message, FrameKind};
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let address = listener.local_addr().expect("address").to_string();
            let batches: std::sync::Arc<std::sync::Mutex<Vec<Vec<MasterRequest>>>> =
                std::sync::Arc::default();
            let kept = std::sync::Arc::clone(&batches);
            let connections: std::sync::Arc<std::sync::atomic::AtomicUsize> =
                std::sync::Arc::default();
            let counted = std::sync::Arc::clone(&connections);
            std::thread::spawn(move || {
                let mut next_write = 1u64;
                // One connection at a time: a client that drops one makes another.
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { return };
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
                    let mut writer = stream;
                    let mut buffer = Vec::new();
                    while let Ok(Some((id, envelope))) = read_message::<Envelope<MasterRequest>>(
                        &mut reader,
                        FrameKind::Request,
                        &mut buffer,
                    ) {
                        let MasterRequest::Batch { requests, .. } = envelope.body else {
                            panic!("not a batch: {:?}", envelope.body);
                        };
                        let requests: Vec<MasterRequest> = requests
                            .iter()
                            .map(|request| request.decode().expect("a request decodes"))
                            .collect();
                        let answers = requests
                            .iter()
                            .map(|request| {
                                let answer = match request {
                                    MasterRequest::OpenWrite { path, .. }
                                        if path.ends_with("garbled") =>
                                    {
                                        next_write += 1;
                                        return Encoded(vec![0xff; 4]);
                                    }
                                    MasterRequest::OpenWrite { path, .. }
                                        if path.ends_with("exists") =>
                                    {
                                        MasterResponse::Error(RemoteError::new(
                                            ErrorKind::AlreadyExists,
                                            format!("{path}: exists"),
                                        ))
                                    }
                                    MasterRequest::OpenWrite {
                                        allocate_first_block,
                                        ..
                                    } => {
                                        let write = next_write;
                                        next_write += 1;
                                        opened(
                                            write,
                                            1 << 20,
                                            allocate_first_block.then(|| AllocatedBlock {
                                                block: BlockId(100 + write),
                                                generation: Generation(1100 + write),
                                                targets: vec![minion.clone()],
                                                token: Vec::new(),
                                            }),
                                        )
                                    }
                                    MasterRequest::CloseWrite { write, .. }
                                        if refused_closes.contains(write) =>
                                    {
                                        MasterResponse::Error(RemoteError::new(
                                            ErrorKind::InvalidArgument,
                                            format!("write {write}: refused"),
                                        ))
                                    }
                                    MasterRequest::CloseWrite { write, .. } => {
                                        MasterResponse::Closed {
                                            inode: 1000 + write,
                                        }
                                    }
                                    _ => MasterResponse::Ok,
                                };
                                Encoded::of(&answer).expect("encode an answer")
                            })
                            .collect();
                        kept.lock().expect("lock").push(requests);
                        write_message(
                            &mut writer,
                            FrameKind::Response,
                            id,
                            &MasterResponse::Batch(answers),
                        )
                        .expect("answer");
                    }
                }
            });
            FakeMaster {
                address,
                batches,
                connections,
            }
        }

        fn batches(&self) -> Vec<Vec<MasterRequest>> {
            self.batches.lock().expect("lock").clone()
        }

        fn connections(&self) -> usize {
            self.connections.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    /// The blocks of one `WriteBlocks` exchange, as a fake minion received them.
    type ReceivedBlocks = Vec<(BlockId, Vec<u8>)>;

    /// A minion on a loopback socket that takes one `WriteBlocks` per
    /// connection and, when `store`, answers that it stored every block;
    /// otherwise it closes the connection. Returns its address and the
    /// blocks it received.
    fn fake_minion(store: bool) -> (MinionAddress, std::sync::mpsc::Receiver<ReceivedBlocks>) {
        use dfs_engine::msg::Envelope;
        use dfs_engine::wire::{read_header, read_message, read_payload, write_message, FrameKind};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = MinionAddress {
            id: MinionId(1),
            address: listener.local_addr().expect("address").to_string(),
        };
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
                let mut writer = stream;
                let mut buffer = Vec::new();
                while let Ok(Some((id, envelope))) = read_message::<Envelope<MinionRequest>>(
                    &mut reader,
                    FrameKind::Request,
                    &mut buffer,
                ) {
                    let MinionRequest::WriteBlocks { blocks, .. } = envelope.body else {
                        panic!("not WriteBlocks: {:?}", envelope.body);
                    };
                    let mut received = Vec::new();
                    for block in &blocks {
                        let header = read_header(&mut reader)
                            .expect("read")
                            .expect("a data frame");
                        read_payload(&mut reader, &header, &mut buffer).expect("payload");
                        assert_eq!(buffer.len() as u64, block.length_bytes);
                        received.push((block.block, buffer.clone()));
                    }
                    let _ = sender.send(received);
                    if !store {
                        break;
                    }
                    let sealed = blocks
                        .iter()
                        .map(|block| SealedBlock {
                            block: block.block,
                            stored: vec![MinionId(1)],
                            failed: vec![],
                        })
                        .collect();
                    write_message(
                        &mut writer,
                        FrameKind::Response,
                        id,
                        &MinionResponse::BatchSealed { blocks: sealed },
                    )
                    .expect("answer");
                }
            }
        });
        (address, receiver)
    }

    fn files_of_a_batch() -> Vec<SmallFile> {
        let mut files = vec![
            file("/a", 5),
            file("/exists", 3),
            file("/empty", 0),
            file("/b", 10),
        ];
        files[0].data = b"hello".to_vec();
        files[3].modified_ns = Some(1234);
        files
    }

    fn outcomes(results: &[Result<u64>]) -> Vec<String> {
        results
            .iter()
            .map(|result| match result {
                Ok(length) => format!("ok {length}"),
                Err(error) => format!("err {error}"),
            })
            .collect()
    }

    #[test]
    fn a_batch_opens_stores_and_closes_with_three_exchanges() {
        let (minion, received) = fake_minion(true);
        let master = FakeMaster::start(minion, vec![]);
        let mut client = Client::connect(&master.address).expect("connect");
        let files = files_of_a_batch();
        let results = client
            .put_small_files(&files, &WriteOptions::default())
            .expect("options are valid");
        assert_eq!(
            outcomes(&results),
            vec!["ok 5", "err /exists: exists", "ok 0", "ok 10"]
        );
        assert!(matches!(
            &results[1],
            Err(Error::Remote(e)) if e.kind == ErrorKind::AlreadyExists
        ));
        // Both blocks in one exchange, in order, whole.
        let blocks = received.recv().expect("one exchange");
        assert_eq!(
            blocks,
            vec![
                (BlockId(101), b"hello".to_vec()),
                (BlockId(103), vec![7u8; 10])
            ]
        );
        let batches = master.batches();
        assert_eq!(batches.len(), 2, "an open and a close batch: {batches:?}");
        assert_eq!(batches[0].len(), 4);
        let commit = |block, data: &[u8]| BlockCommit {
            block: BlockId(block),
            generation: Generation(1000 + block),
            length_bytes: data.len() as u64,
            replicas: vec![MinionId(1)],
            crc32c: crc32c::crc32c(data),
        };
        assert_eq!(
            batches[1],
            vec![
                MasterRequest::CloseWrite {
                    write: 1,
                    last_block: Some(commit(101, b"hello")),
                    modified_ns: None,
                },
                MasterRequest::CloseWrite {
                    write: 2,
                    last_block: None,
                    modified_ns: None,
                },
                MasterRequest::CloseWrite {
                    write: 3,
                    last_block: Some(commit(103, &[7u8; 10])),
                    modified_ns: Some(1234),
                },
            ]
        );
    }

    #[test]
    fn a_pipeline_that_fails_aborts_its_writes_and_a_refused_close_is_aborted() {
        let (minion, received) = fake_minion(false);
        let master = FakeMaster::start(minion, vec![]);
        let mut client = Client::connect(&master.address).expect("connect");
        let results = client
            .put_small_files(&files_of_a_batch(), &WriteOptions::default())
            .expect("options are valid");
        received.recv().expect("the blocks were sent");
        assert!(
            results[0].is_err() && results[3].is_err(),
            "{:?}",
            outcomes(&results)
        );
        assert_eq!(results[2].as_ref().ok(), Some(&0));
        let batches = master.batches();
        assert_eq!(
            batches[1],
            vec![
                MasterRequest::AbortWrite { write: 1 },
                MasterRequest::CloseWrite {
                    write: 2,
                    last_block: None,
                    modified_ns: None,
                },
                MasterRequest::AbortWrite { write: 3 },
            ]
        );

        // A close the master refuses is aborted after it.
        let (minion, _received) = fake_minion(true);
        let master = FakeMaster::start(minion, vec![3]);
        let mut client = Client::connect(&master.address).expect("connect");
        let results = client
            .put_small_files(&files_of_a_batch(), &WriteOptions::default())
            .expect("options are valid");
        assert_eq!(
            outcomes(&results),
            vec![
                "ok 5",
                "err /exists: exists",
                "ok 0",
                "err write 3: refused"
            ]
        );
        let batches = master.batches();
        assert_eq!(batches.len(), 3, "{batches:?}");
        assert_eq!(batches[2], vec![MasterRequest::AbortWrite { write: 3 }]);
    }

    #[test]
    fn many_files_go_in_several_batches_and_large_ones_in_none() {
        let (minion, received) = fake_minion(true);
        let master = FakeMaster::start(minion, vec![]);
        let mut client = Client::connect(&master.address).expect("connect");
        let mut files: Vec<SmallFile> = (0..WRITE_BATCH_BLOCKS_MAX + 3)
            .map(|i| file(&format!("/f{i}"), 100))
            .collect();
        files.push(file("/large", CHUNK_BYTES as usize + 1));
        let results = client
            .put_small_files(&files, &WriteOptions::default())
            .expect("options are valid");
        assert!(results[..files.len() - 1]
            .iter()
            .all(|r| matches!(r, Ok(100))));
        assert!(results[files.len() - 1].is_err());
        assert_eq!(
            received.recv().expect("first").len(),
            WRITE_BATCH_BLOCKS_MAX
        );
        assert_eq!(received.recv().expect("second").len(), 3);
        assert_eq!(master.batches().len(), 4);
    }

    #[test]
    fn an_open_answer_that_does_not_decode_gives_the_batch_up() {
        let (minion, received) = fake_minion(true);
        let master = FakeMaster::start(minion, vec![]);
        let mut client = Client::connect(&master.address).expect("connect");
        let files = vec![file("/a", 5), file("/garbled", 3), file("/exists", 2)];
        let results = client
            .put_small_files(&files, &WriteOptions::default())
            .expect("options are valid");
        let shown = outcomes(&results);
        assert!(
            shown[0].starts_with("err /a: batch given up: "),
            "{shown:?}"
        );
        let garbled = "/garbled: protocol error: answer 1 to a batch of OpenWrite requests: \
                       undecodable MasterResponse";
        assert!(shown[1].contains(garbled), "{shown:?}");
        assert_eq!(shown[2], "err /exists: exists");
        // Nothing stored, nothing closed: the connection was dropped, so
        // the master aborts every write the batch opened.
        assert!(received.try_recv().is_err(), "no block was sent");
        assert_eq!(master.batches().len(), 1, "{:?}", master.batches());
        let again = client
            .put_small_files(&[file("/b", 1)], &WriteOptions::default())
            .expect("options are valid");
        assert_eq!(outcomes(&again), vec!["ok 1"]);
        assert_eq!(master.connections(), 2, "the next batch connected again");
    }

    #[test]
    fn a_close_answer_that_does_not_decode_is_an_error_of_its_file() {
        let garbled = decode_answer("CloseWrite", 0, &Encoded(vec![0xff; 4]));
        let error = close_error(&file("/a", 1), Some(garbled));
        assert!(matches!(error, Error::Protocol(_)), "{error:?}");
        assert!(
            error
                .to_string()
                .contains("/a: protocol error: answer 0 to a batch of CloseWrite requests: "),
            "{error}"
        );
    }
}
