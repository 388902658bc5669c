//! A starting master's safe mode. Block locations are soft state: right
//! after a start the master knows none, and a lookup answered then would
//! say "no replica" of blocks that are fine. So until the minions' reports
//! are in (every live minion reported, and all but a thousandth of the
//! committed blocks located) or a bounded time has passed, the master
//! answers lookups that would show a block without locations, and
//! allocations it cannot place, with `Starting`, which clients wait out,
//! and plans no copies or deletions. It never comes back once left.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a master stays in safe mode at most when nobody says otherwise
/// (`--safe-mode-timeout`).
pub const SAFE_MODE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// Committed blocks, per thousand, that may be without a location when
/// safe mode ends before its timeout.
const UNLOCATED_PER_THOUSAND_MAX: usize = 1;

/// What the reports so far show.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub committed_blocks: usize,
    pub located_blocks: usize,
    /// Live minions whose full block report is in.
    pub reported_minions: usize,
    /// Live minions registered whose full block report is not in yet.
    pub joining_minions: usize,
}

impl Progress {
    /// True when the reports are in: no minion joining and nearly every
    /// committed block located by some minion (a namespace without blocks
    /// has nothing to wait for).
    fn is_complete(&self) -> bool {
        if self.joining_minions > 0 {
            return false;
        }
        if self.committed_blocks == 0 {
            return true;
        }
        let unlocated = self.committed_blocks.saturating_sub(self.located_blocks);
        self.reported_minions > 0
            && unlocated * 1000 <= self.committed_blocks * UNLOCATED_PER_THOUSAND_MAX
    }
}

pub struct SafeMode {
    started: Instant,
    timeout: Duration,
    left: AtomicBool,
}

impl SafeMode {
    pub fn new(started: Instant, timeout: Duration) -> SafeMode {
        SafeMode {
            started,
            timeout,
            left: AtomicBool::new(timeout.is_zero()),
        }
    }

    /// True once safe mode is over (for good).
    pub fn is_over(&self) -> bool {
        self.left.load(Ordering::Acquire)
    }

    /// None when safe mode is over (or ends now, looking at `progress`);
    /// otherwise why the master is still starting, one line for clients.
    pub fn check(&self, now: Instant, progress: impl FnOnce() -> Progress) -> Option<String> {
        if self.is_over() {
            return None;
        }
        let progress = progress();
        let waited = now.saturating_duration_since(self.started);
        if progress.is_complete() || waited >= self.timeout {
            if !self.left.swap(true, Ordering::AcqRel) {
                tracing::info!(
                    located_blocks = progress.located_blocks,
                    committed_blocks = progress.committed_blocks,
                    minions = progress.reported_minions,
                    waited_ms = waited.as_millis() as u64,
                    "safe mode over: {}",
                    if progress.is_complete() {
                        "the minions' block reports are in"
                    } else {
                        "its time is up"
                    }
                );
            }
            return None;
        }
        Some(format!(
            "the master is starting: waiting for the minions' block reports ({} of {} blocks located, {} minions reported, {} joining; at most {:?} more)",
            progress.located_blocks,
            progress.committed_blocks,
            progress.reported_minions,
            progress.joining_minions,
            self.timeout.saturating_sub(waited)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(committed: usize, located: usize, reported: usize, joining: usize) -> Progress {
        Progress {
            committed_blocks: committed,
            located_blocks: located,
            reported_minions: reported,
            joining_minions: joining,
        }
    }

    #[test]
    fn safe_mode_ends_when_the_reports_are_in_or_the_time_is_up_and_stays_over() {
        let start = Instant::now();
        let mode = SafeMode::new(start, Duration::from_secs(30));
        for (state, starting) in [
            (progress(10, 0, 0, 0), true),
            (progress(0, 0, 1, 1), true),
            (progress(2000, 1997, 3, 0), true),
            (progress(2000, 1998, 0, 0), true),
        ] {
            assert_eq!(mode.check(start, || state).is_some(), starting, "{state:?}");
        }
        let why = mode
            .check(start, || progress(10, 3, 1, 2))
            .expect("starting");
        assert!(why.contains("3 of 10 blocks located"), "{why}");
        assert!(!mode.is_over());
        assert_eq!(mode.check(start, || progress(2000, 1998, 3, 0)), None);
        assert!(mode.is_over());
        assert_eq!(
            mode.check(start, || progress(10, 0, 0, 5)),
            None,
            "for good"
        );

        let timed = SafeMode::new(start, Duration::from_secs(30));
        assert!(timed.check(start, || progress(10, 0, 0, 0)).is_some());
        let later = start + Duration::from_secs(30);
        assert_eq!(timed.check(later, || progress(10, 0, 0, 0)), None);
        assert!(SafeMode::new(start, Duration::ZERO).is_over());

        let empty = SafeMode::new(start, Duration::from_secs(30));
        assert_eq!(
            empty.check(start, || progress(0, 0, 0, 0)),
            None,
            "nothing to wait for"
        );
    }
}
