//! The master's liveness timing: heartbeat interval, stale and dead times.
//! Each may be given; one not given follows the ones that were, so that
//! `--dead-after 5s` alone yields a consistent set instead of a default
//! (a 30 s stale time) that contradicts it. Pure: the flags in, the three
//! durations or one line naming what is wrong out.

use std::time::Duration;

/// Heartbeat interval when nothing shorter is asked for (HDFS's).
pub const HEARTBEAT_INTERVAL_DEFAULT: Duration = Duration::from_secs(3);
/// Dead time when none is given (HDFS's is about 10 minutes).
pub const DEAD_AFTER_DEFAULT: Duration = Duration::from_secs(600);
/// A minion is stale after this many missed heartbeats by default.
const HEARTBEATS_PER_STALE: u32 = 10;
/// A derived heartbeat leaves at least this many heartbeats per stale time.
const HEARTBEATS_PER_STALE_MIN: u32 = 3;
/// A derived stale time is at most this fraction of the dead time.
const STALES_PER_DEAD_MIN: u32 = 2;

/// The flags as given (`None`: not given).
#[derive(Clone, Copy, Debug, Default)]
pub struct TimingFlags {
    pub heartbeat_interval: Option<Duration>,
    pub stale_after: Option<Duration>,
    pub dead_after: Option<Duration>,
}

/// The resolved timing: `heartbeat_interval < stale_after < dead_after`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub heartbeat_interval: Duration,
    pub stale_after: Duration,
    pub dead_after: Duration,
}

impl TimingFlags {
    /// Fills in what was not given from what was, then checks the order.
    pub fn resolve(self) -> Result<Timing, String> {
        let dead_after = self.dead_after.unwrap_or(DEAD_AFTER_DEFAULT);
        let heartbeat_interval = self.heartbeat_interval.unwrap_or_else(|| {
            let room = match self.stale_after {
                Some(stale) => stale / HEARTBEATS_PER_STALE_MIN,
                None => dead_after / (STALES_PER_DEAD_MIN * HEARTBEATS_PER_STALE),
            };
            // Whole milliseconds, as people write them.
            let room = Duration::from_millis(u64::try_from(room.as_millis()).unwrap_or(u64::MAX));
            HEARTBEAT_INTERVAL_DEFAULT.min(room)
        });
        let stale_after = self.stale_after.unwrap_or_else(|| {
            (heartbeat_interval * HEARTBEATS_PER_STALE).min(dead_after / STALES_PER_DEAD_MIN)
        });
        let named = |flag: &str, value: Duration, given: Option<Duration>| match given {
            Some(_) => format!("{flag} ({value:?})"),
            None => format!("{flag} ({value:?}, derived from the flags given)"),
        };
        if heartbeat_interval.is_zero() {
            return Err("--heartbeat-interval must be longer than 0".to_string());
        }
        if heartbeat_interval >= stale_after {
            return Err(format!(
                "{} must be shorter than {}",
                named(
                    "--heartbeat-interval",
                    heartbeat_interval,
                    self.heartbeat_interval
                ),
                named("--stale-after", stale_after, self.stale_after)
            ));
        }
        if stale_after >= dead_after {
            return Err(format!(
                "{} must be shorter than {}",
                named("--stale-after", stale_after, self.stale_after),
                named("--dead-after", dead_after, self.dead_after)
            ));
        }
        Ok(Timing {
            heartbeat_interval,
            stale_after,
            dead_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    fn check(given: [Option<u64>; 3], expected: Result<[u64; 3], &str>) {
        let flags = TimingFlags {
            heartbeat_interval: given[0].map(ms),
            stale_after: given[1].map(ms),
            dead_after: given[2].map(ms),
        };
        let resolved = flags.resolve();
        match expected {
            Ok([heartbeat, stale, dead]) => assert_eq!(
                resolved,
                Ok(Timing {
                    heartbeat_interval: ms(heartbeat),
                    stale_after: ms(stale),
                    dead_after: ms(dead),
                }),
                "{given:?}"
            ),
            Err(needle) => {
                let error = resolved.expect_err("refused");
                assert!(error.contains(needle), "{given:?}: {error}");
            }
        }
    }

    #[test]
    fn defaults_follow_the_flags_given() {
        check([None, None, None], Ok([3_000, 30_000, 600_000]));
        // --dead-after alone: the stale time and heartbeat shrink with it.
        check([None, None, Some(5_000)], Ok([250, 2_500, 5_000]));
        check([None, None, Some(40_000)], Ok([2_000, 20_000, 40_000]));
        // --stale-after alone: heartbeats fit three times into it.
        check([None, Some(1_000), None], Ok([333, 1_000, 600_000]));
        // --heartbeat-interval alone: ten of them make the stale time.
        check([Some(200), None, None], Ok([200, 2_000, 600_000]));
        check([Some(200), None, Some(3_000)], Ok([200, 1_500, 3_000]));
        check([Some(200), Some(5_000), None], Ok([200, 5_000, 600_000]));
    }

    #[test]
    fn contradictions_among_given_flags_are_refused_naming_them() {
        check(
            [None, Some(30_000), Some(5_000)],
            Err("--stale-after (30s) must be shorter than --dead-after (5s)"),
        );
        check(
            [Some(5_000), Some(5_000), None],
            Err("--heartbeat-interval (5s) must be shorter than --stale-after (5s)"),
        );
        check(
            [Some(60_000), None, Some(5_000)],
            Err("--stale-after (2.5s, derived from the flags given)"),
        );
        check([Some(0), None, None], Err("longer than 0"));
    }
}
