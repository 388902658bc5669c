//! Group commit for small durable blocks.
//!
//! A durable block needs its data, its checksums and its name on stable
//! storage before the minion answers `Sealed`. Per block that is an
//! `fdatasync` of the file and an `fsync` of its directory: two
//! synchronous round trips to the disk, each a wait on a kernel worker,
//! which for blocks of a few KiB cost far more than the write itself.
//! Small blocks therefore share the flushes instead: a block asks its data
//! directory's syncer for a `syncfs` that starts after its file was
//! written (and again after it was renamed into `blocks/`), and every block
//! that asked while one flush ran is covered by the next. One flush serves
//! all the small blocks the cores sealed in the meantime, however many
//! clients write.
//!
//! `syncfs` flushes every dirty page of the directory's filesystem, other
//! programs' too (and waits for them), so large blocks (which start their
//! writeback as they arrive, see `store`) keep their own `fdatasync`.
//!
//! Errors: since Linux 5.8, `syncfs` reports a writeback error anywhere on
//! the filesystem once per open descriptor, to the first flush through it
//! that looks. A block's pages may be written back, and fail, during a
//! flush it did not ask for, so one failed flush is not enough to tell
//! which blocks it hurt. Each directory therefore keeps one descriptor for
//! the store's whole life (so no error is missed between descriptors) and
//! counts failed flushes; a block samples the count when it starts and is
//! failed if any flush failed before its own last one succeeded.
//!
//! Each data directory has its own syncer thread, started by the first
//! request and ended after `IDLE_EXIT` without one, so a minion that only
//! takes large blocks (or only `--no-sync` ones) runs none.

use dfs_engine::sync;
use std::fs::File;
use std::future::Future;
use std::io;
use std::mem;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// A syncer thread without requests for this long ends.
const IDLE_EXIT: Duration = Duration::from_secs(10);

/// The syncers of a minion's data directories.
pub(crate) struct GroupSync {
    directories: Vec<Arc<DirectorySync>>,
}

impl GroupSync {
    /// Opens each data directory for its flushes; a directory that cannot
    /// be opened fails every flush with the reason.
    pub(crate) fn new<'a>(roots: impl Iterator<Item = &'a Path>) -> GroupSync {
        GroupSync {
            directories: roots
                .map(|root| {
                    Arc::new(DirectorySync {
                        directory: File::open(root)
                            .map_err(|error| error.raw_os_error().unwrap_or(libc::EIO)),
                        failures: AtomicU64::new(0),
                        state: Mutex::new(State::default()),
                        requested: Condvar::new(),
                    })
                })
                .collect(),
        }
    }

    /// How many flushes of data directory `index` failed so far: sampled
    /// when a block starts, compared after its last flush.
    pub(crate) fn failures(&self, index: usize) -> u64 {
        self.directories
            .get(index)
            .map_or(0, |directory| directory.failures.load(Ordering::SeqCst))
    }

    /// Counts a failed flush of data directory `index` as a flush would.
    #[cfg(test)]
    pub(crate) fn note_failure(&self, index: usize) {
        if let Some(directory) = self.directories.get(index) {
            directory.failures.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Waits until everything written to data directory `index` before
    /// this call is on stable storage.
    pub(crate) fn flush(&self, index: usize) -> Flushed {
        let ticket = Arc::new(Ticket::default());
        match self.directories.get(index) {
            Some(directory) => DirectorySync::request(directory, &ticket),
            None => ticket.complete(Err(libc::EINVAL)),
        }
        Flushed { ticket }
    }
}

/// One data directory's syncer: the requests waiting for the next flush.
struct DirectorySync {
    /// Open for the store's whole life: `syncfs` reports an error once per
    /// descriptor, so a new one could miss it. The errno if it failed.
    directory: Result<File, i32>,
    /// Flushes that failed so far.
    failures: AtomicU64,
    state: Mutex<State>,
    requested: Condvar,
}

#[derive(Default)]
struct State {
    /// Requests the next flush covers.
    waiting: Vec<Arc<Ticket>>,
    /// A syncer thread runs (it may be flushing or waiting for requests).
    running: bool,
}

impl DirectorySync {
    fn request(directory: &Arc<DirectorySync>, ticket: &Arc<Ticket>) {
        let mut state = sync::lock(&directory.state);
        state.waiting.push(Arc::clone(ticket));
        if state.running {
            directory.requested.notify_one();
            return;
        }
        let syncer = Arc::clone(directory);
        let spawned = std::thread::Builder::new()
            .name("group-sync".into())
            .spawn(move || syncer.run());
        match spawned {
            Ok(_) => state.running = true,
            Err(error) => {
                tracing::warn!("cannot start a syncer thread: {error}");
                for ticket in state.waiting.drain(..) {
                    ticket.complete(Err(error.raw_os_error().unwrap_or(libc::EAGAIN)));
                }
            }
        }
    }

    /// The syncer thread: one `syncfs` per batch of requests, until idle.
    fn run(self: Arc<DirectorySync>) {
        let mut state = sync::lock(&self.state);
        loop {
            if state.waiting.is_empty() {
                let (next, timed_out) = sync::wait_timeout(&self.requested, state, IDLE_EXIT);
                state = next;
                if timed_out && state.waiting.is_empty() {
                    state.running = false;
                    return;
                }
                continue;
            }
            let batch = mem::take(&mut state.waiting);
            drop(state);
            let outcome = self.flush();
            for ticket in batch {
                ticket.complete(outcome);
            }
            state = sync::lock(&self.state);
        }
    }

    /// One `syncfs` of the directory's filesystem; the errno on failure,
    /// counted in `failures` before anyone hears of it.
    fn flush(&self) -> Result<(), i32> {
        let outcome = match &self.directory {
            // SAFETY: syncfs only reads the descriptor, which `self` keeps open.
            Ok(file) => match unsafe { libc::syncfs(file.as_raw_fd()) } {
                0 => Ok(()),
                _ => Err(io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EIO)),
            },
            Err(errno) => Err(*errno),
        };
        if outcome.is_err() {
            self.failures.fetch_add(1, Ordering::SeqCst);
        }
        outcome
    }
}

/// One request's answer, and the task waiting for it.
#[derive(Default)]
struct Ticket {
    slot: Mutex<Slot>,
}

#[derive(Default)]
struct Slot {
    outcome: Option<Result<(), i32>>,
    waker: Option<Waker>,
}

impl Ticket {
    fn complete(&self, outcome: Result<(), i32>) {
        let waker = {
            let mut slot = sync::lock(&self.slot);
            slot.outcome = Some(outcome);
            slot.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// Resolves when the flush a request joined has finished.
pub(crate) struct Flushed {
    ticket: Arc<Ticket>,
}

impl Future for Flushed {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut slot = sync::lock(&self.ticket.slot);
        match slot.outcome {
            Some(outcome) => Poll::Ready(outcome.map_err(io::Error::from_raw_os_error)),
            None => {
                slot.waker = Some(context.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uring;

    #[test]
    fn flushes_answer_every_request_and_the_syncer_ends_when_idle() {
        let dir = tempfile::tempdir().expect("tempdir");
        let group = GroupSync::new(std::iter::once(dir.path()));
        let ran = uring::run_core(async {
            let flushes: Vec<Flushed> = (0..50).map(|_| group.flush(0)).collect();
            for flushed in flushes {
                flushed.await.expect("flush");
            }
            group.flush(0).await.expect("a later flush");
        });
        ran.expect("runtime");
        let directory = &group.directories[0];
        assert!(directory.state.lock().expect("state").running);
        assert!(directory.state.lock().expect("state").waiting.is_empty());
    }

    #[test]
    fn a_missing_directory_or_index_fails_the_flush_with_its_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gone = dir.path().join("gone");
        let group = GroupSync::new(std::iter::once(gone.as_path()));
        let ran = uring::run_core(async {
            let error = group.flush(0).await.expect_err("no directory");
            assert_eq!(error.kind(), io::ErrorKind::NotFound);
            let error = group.flush(7).await.expect_err("no such index");
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        });
        ran.expect("runtime");
    }
}
