//! Counters shared by the copy's threads, the progress line (redrawn in
//! place on a terminal, one line every few seconds otherwise) and the final
//! summary, as text or JSON.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use dfs_engine::units::format_bytes;

/// How often the line is redrawn on a terminal.
const TERMINAL_INTERVAL: Duration = Duration::from_millis(250);
/// How often a line is printed when standard error is not a terminal.
const LOG_INTERVAL: Duration = Duration::from_secs(5);

const MIB: f64 = 1024.0 * 1024.0;

/// What the run has done so far; updated by every thread.
#[derive(Debug, Default)]
pub struct Counters {
    pub files: AtomicU64,
    pub bytes: AtomicU64,
    pub skipped: AtomicU64,
    pub failed: AtomicU64,
    /// Files and bytes the walk has found so far.
    pub planned_files: AtomicU64,
    pub planned_bytes: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    pub fn summary(&self, elapsed: Duration) -> Summary {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Summary {
            files: load(&self.files),
            bytes: load(&self.bytes),
            seconds: elapsed.as_secs_f64(),
            skipped: load(&self.skipped),
            failed: load(&self.failed),
        }
    }
}

/// The end result of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Files copied.
    pub files: u64,
    /// Bytes copied.
    pub bytes: u64,
    pub seconds: f64,
    pub skipped: u64,
    pub failed: u64,
}

impl Summary {
    pub fn mib_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes as f64 / MIB / self.seconds
        } else {
            0.0
        }
    }

    /// `{"files":..,"bytes":..,"seconds":..,"mib_per_s":..,"skipped":..,"failed":..}`
    pub fn json(&self) -> String {
        format!(
            "{{\"files\":{},\"bytes\":{},\"seconds\":{:.3},\"mib_per_s\":{:.3},\"skipped\":{},\"failed\":{}}}",
            self.files,
            self.bytes,
            self.seconds,
            self.mib_per_s(),
            self.skipped,
            self.failed
        )
    }

    pub fn text(&self) -> String {
        format!(
            "{} files, {} in {:.1} s ({:.1} MiB/s), {} skipped, {} failed",
            self.files,
            format_bytes(self.bytes),
            self.seconds,
            self.mib_per_s(),
            self.skipped,
            self.failed
        )
    }
}

/// One progress line: done of found, throughput, and the time left at that
/// rate for what the walk found so far.
pub fn line(counters: &Counters, elapsed: Duration) -> String {
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let done_files = load(&counters.files) + load(&counters.skipped) + load(&counters.failed);
    let bytes = load(&counters.bytes);
    let planned_bytes = load(&counters.planned_bytes);
    let seconds = elapsed.as_secs_f64();
    let rate = if seconds > 0.0 {
        bytes as f64 / seconds
    } else {
        0.0
    };
    let eta = if rate > 0.0 && planned_bytes > bytes {
        let left = ((planned_bytes - bytes) as f64 / rate).round() as u64;
        format!(", ETA {}:{:02}", left / 60, left % 60)
    } else {
        String::new()
    };
    format!(
        "{done_files}/{} files, {}/{}, {:.1} MiB/s{eta}",
        load(&counters.planned_files),
        format_bytes(bytes),
        format_bytes(planned_bytes),
        rate / MIB
    )
}

/// Shows progress on standard error until `stop` is dropped.
pub fn show(counters: &Counters, started: Instant, stop: &Receiver<()>) {
    let mut stderr = std::io::stderr();
    let terminal = stderr.is_terminal();
    let interval = if terminal {
        TERMINAL_INTERVAL
    } else {
        LOG_INTERVAL
    };
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(interval) {
        let text = line(counters, started.elapsed());
        // Progress is best effort: a closed stderr must not fail the copy.
        let _ = if terminal {
            write!(stderr, "\r\x1b[K{text}")
        } else {
            writeln!(stderr, "dfs-cp: {text}")
        };
    }
    if terminal {
        let _ = write!(stderr, "\r\x1b[K");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_json_has_every_field() {
        let summary = Summary {
            files: 3,
            bytes: 3 << 20,
            seconds: 2.0,
            skipped: 1,
            failed: 0,
        };
        assert_eq!(
            summary.json(),
            r#"{"files":3,"bytes":3145728,"seconds":2.000,"mib_per_s":1.500,"skipped":1,"failed":0}"#
        );
        let instant = Summary {
            seconds: 0.0,
            ..summary
        };
        assert_eq!(instant.mib_per_s(), 0.0);
    }

    #[test]
    fn progress_line_counts_and_estimates() {
        let counters = Counters::default();
        Counters::add(&counters.files, 2);
        Counters::add(&counters.skipped, 1);
        Counters::add(&counters.planned_files, 10);
        Counters::add(&counters.bytes, 10 << 20);
        Counters::add(&counters.planned_bytes, 30 << 20);
        let text = line(&counters, Duration::from_secs(10));
        assert!(text.starts_with("3/10 files, "), "{text}");
        assert!(text.ends_with("1.0 MiB/s, ETA 0:20"), "{text}");
    }
}
