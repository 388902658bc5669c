//! What the minion's background work needs to know about the foreground:
//! what an I/O error says about the data directory it came from (`classify`),
//! whether clients are being served (`Activity`), and a `Doorbell` that
//! wakes the directory keepers (`scrub`) for urgent work or a stop.

use dfs_engine::sync;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use dfs_engine::Error;

/// What an I/O error in a data directory says about that directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The filesystem is full: no new blocks there until it has room. Not
    /// a failure: its blocks stay readable.
    Full,
    /// The device or filesystem failed (EIO and the like): take the
    /// directory out of service now.
    Failed,
    /// Something unexpected (a file or directory gone, a permission): check
    /// the directory before judging it.
    Check,
    /// Nothing to do with the disk: this process's limits, an interruption,
    /// bad bytes (a corrupt block is the block's fault, not the directory's).
    NotTheDisk,
}

/// Judges an error of an operation on a data directory's files.
pub(crate) fn classify(error: &Error) -> Fault {
    let Error::Io { cause, .. } = error else {
        return Fault::NotTheDisk;
    };
    match cause.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => Fault::Full,
        // EUCLEAN: the filesystem found itself corrupted; EROFS: it went
        // read-only after errors; ENODEV, ENXIO: the device is gone; ESTALE,
        // ENOTCONN: a network or FUSE filesystem lost its server.
        Some(
            libc::EIO
            | libc::EROFS
            | libc::EUCLEAN
            | libc::ENODEV
            | libc::ENXIO
            | libc::ESTALE
            | libc::ENOTCONN,
        ) => Fault::Failed,
        Some(
            libc::EMFILE
            | libc::ENFILE
            | libc::ENOMEM
            | libc::EINTR
            | libc::EAGAIN
            | libc::ECANCELED
            | libc::ETIMEDOUT,
        ) => Fault::NotTheDisk,
        _ => Fault::Check,
    }
}

/// Client work in flight on this minion (reads and pipeline writes, which
/// include the copies other minions push here), for background work to
/// yield to.
pub(crate) struct Activity {
    in_flight: AtomicUsize,
    /// When the last request ended, in ms after `started`.
    last_end_ms: AtomicU64,
    started: Instant,
}

impl Activity {
    pub(crate) fn new() -> Activity {
        Activity {
            in_flight: AtomicUsize::new(0),
            last_end_ms: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    /// Counts a request as in flight until the guard drops.
    pub(crate) fn begin(self: &Arc<Activity>) -> ActivityGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        ActivityGuard {
            activity: Arc::clone(self),
        }
    }

    /// True while clients are served: a request in flight or one that ended
    /// in the last `QUIET_MS`. Background work yields then.
    pub(crate) fn clients_busy(&self) -> bool {
        !self.is_idle(Duration::from_millis(QUIET_MS))
    }

    /// Pauses background work after a step of it that took `elapsed`, for
    /// as long as `background_pause` says.
    pub(crate) fn yield_after(&self, elapsed: Duration) {
        let pause = background_pause(elapsed, self.clients_busy());
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }

    /// True when nothing is in flight and nothing ended in the last `quiet`.
    pub(crate) fn is_idle(&self, quiet: Duration) -> bool {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return false;
        }
        let now_ms = self.started.elapsed().as_millis() as u64;
        let last_end_ms = self.last_end_ms.load(Ordering::Relaxed);
        last_end_ms == 0 || now_ms.saturating_sub(last_end_ms) >= quiet.as_millis() as u64
    }
}

/// How long after the last client request a minion counts as idle, for
/// background work (scrubbing, copies) to go at full speed again.
const QUIET_MS: u64 = 1_000;

/// While clients are served, background work pauses this many times as
/// long as each step of it took, so it takes at most a quarter of the
/// time (of the disk and the network it shares with them) whatever the
/// hardware's speed; idle, it pauses not at all.
const BACKGROUND_YIELD_FACTOR: u32 = 3;

/// The pause after a step of background work that took `elapsed`.
fn background_pause(elapsed: Duration, clients_busy: bool) -> Duration {
    if clients_busy {
        elapsed.saturating_mul(BACKGROUND_YIELD_FACTOR)
    } else {
        Duration::ZERO
    }
}

/// A request in flight; dropping it ends it.
pub(crate) struct ActivityGuard {
    activity: Arc<Activity>,
}

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        let activity = &self.activity;
        // At least 1, so 0 keeps meaning "nothing ended yet".
        let now_ms = (activity.started.elapsed().as_millis() as u64).max(1);
        activity.last_end_ms.store(now_ms, Ordering::Relaxed);
        activity.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Rings {
    count: u64,
    stopped: bool,
}

/// Wakes sleeping keepers: for urgent work (a rung bell) or for good (a stop).
#[derive(Default)]
pub(crate) struct Doorbell {
    rings: Mutex<Rings>,
    wake: Condvar,
}

impl Doorbell {
    pub(crate) fn ring(&self) {
        sync::lock(&self.rings).count += 1;
        self.wake.notify_all();
    }

    pub(crate) fn stop(&self) {
        sync::lock(&self.rings).stopped = true;
        self.wake.notify_all();
    }

    pub(crate) fn is_stopped(&self) -> bool {
        sync::lock(&self.rings).stopped
    }

    /// Rings so far; pass it to `wait` to sleep only if none came since.
    pub(crate) fn rings(&self) -> u64 {
        sync::lock(&self.rings).count
    }

    /// Sleeps up to `timeout`, less if the bell rang after `seen` rings or
    /// the doorbell stopped.
    pub(crate) fn wait(&self, seen: u64, timeout: Duration) {
        let guard = sync::lock(&self.rings);
        let _ = sync::wait_timeout_while(&self.wake, guard, timeout, |rings| {
            rings.count == seen && !rings.stopped
        });
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    #[test]
    fn errors_are_judged_by_what_they_say_about_the_disk() {
        let os = |code| {
            Error::io(
                "write blk_0000000000000001",
                io::Error::from_raw_os_error(code),
            )
        };
        let cases = [
            (os(libc::ENOSPC), Fault::Full),
            (os(libc::EDQUOT), Fault::Full),
            (os(libc::EIO), Fault::Failed),
            (os(libc::EROFS), Fault::Failed),
            (os(libc::EUCLEAN), Fault::Failed),
            (os(libc::ENODEV), Fault::Failed),
            (os(libc::EMFILE), Fault::NotTheDisk),
            (os(libc::ENOMEM), Fault::NotTheDisk),
            (os(libc::ECANCELED), Fault::NotTheDisk),
            (os(libc::ENOENT), Fault::Check),
            (os(libc::EACCES), Fault::Check),
            (os(libc::EXDEV), Fault::Check),
            (
                Error::io("read", io::Error::other("no errno")),
                Fault::Check,
            ),
            (
                Error::corrupted("blk_0000000000000001 chunk 2", "checksum mismatch"),
                Fault::NotTheDisk,
            ),
            (Error::Protocol("bad frame".into()), Fault::NotTheDisk),
        ];
        for (error, expected) in cases {
            assert_eq!(classify(&error), expected, "{error}");
        }
    }

    #[test]
    fn background_work_pauses_only_while_clients_are_served() {
        let step = Duration::from_millis(20);
        assert_eq!(background_pause(step, false), Duration::ZERO);
        // Three times the step: background work keeps a quarter of the time.
        assert_eq!(background_pause(step, true), Duration::from_millis(60));
        assert_eq!(background_pause(Duration::MAX, true), Duration::MAX);
    }

    #[test]
    fn activity_is_idle_only_after_a_quiet_time() {
        let activity = Arc::new(Activity::new());
        let quiet = Duration::from_secs(3600);
        assert!(activity.is_idle(quiet), "nothing happened yet");
        let first = activity.begin();
        let second = activity.begin();
        assert!(!activity.is_idle(Duration::ZERO));
        drop(first);
        assert!(!activity.is_idle(Duration::ZERO), "one still in flight");
        drop(second);
        assert!(activity.is_idle(Duration::ZERO));
        assert!(!activity.is_idle(quiet), "it just ended");
    }

    #[test]
    fn a_doorbell_wakes_sleepers_that_missed_no_ring() {
        let bell = Arc::new(Doorbell::default());
        let seen = bell.rings();
        bell.ring();
        let started = Instant::now();
        bell.wait(seen, Duration::from_secs(60));
        assert!(started.elapsed() < Duration::from_secs(30), "a ring since");
        let seen = bell.rings();
        let sleeper = {
            let bell = Arc::clone(&bell);
            std::thread::spawn(move || bell.wait(seen, Duration::from_secs(60)))
        };
        bell.stop();
        sleeper.join().expect("sleeper");
        assert!(bell.is_stopped());
    }
}
