//! Counters shared by the copy's threads, the progress display (a live bar
//! on a terminal, one line every few seconds otherwise) and the final
//! summary, as text or JSON.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use dfs_engine::units::format_bytes;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often the bar is updated on a terminal.
const TERMINAL_INTERVAL: Duration = Duration::from_millis(250);
/// Bytes, total found so far, throughput, time left, then the file counts.
const BAR_TEMPLATE: &str =
    "{wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}";
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
        "{}, {}/{}, {:.1} MiB/s{eta}",
        files_text(counters),
        format_bytes(bytes),
        format_bytes(planned_bytes),
        rate / MIB
    )
}

/// Files done (copied, skipped or failed) of files found so far.
fn files_text(counters: &Counters) -> String {
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let done_files = load(&counters.files) + load(&counters.skipped) + load(&counters.failed);
    format!("{done_files}/{} files", load(&counters.planned_files))
}

/// Shows progress on standard error until `stop` is dropped: a bar on a
/// terminal, a line every `LOG_INTERVAL` otherwise.
pub fn show(counters: &Counters, started: Instant, stop: &Receiver<()>) {
    if std::io::stderr().is_terminal() {
        show_bar(counters, stop);
        return;
    }
    let mut stderr = std::io::stderr();
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(LOG_INTERVAL) {
        // Progress is best effort: a closed stderr must not fail the copy.
        let _ = writeln!(stderr, "dfs-cp: {}", line(counters, started.elapsed()));
    }
}

/// The live bar: its length grows as the walk finds more to copy.
fn show_bar(counters: &Counters, stop: &Receiver<()>) {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    // The template is a constant; should it ever fail to parse, the plain
    // default bar still shows progress.
    let style =
        ProgressStyle::with_template(BAR_TEMPLATE).unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    let update = |bar: &ProgressBar| {
        bar.set_length(counters.planned_bytes.load(Ordering::Relaxed));
        bar.set_position(counters.bytes.load(Ordering::Relaxed));
        bar.set_message(files_text(counters));
    };
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(TERMINAL_INTERVAL) {
        update(&bar);
    }
    bar.finish_and_clear();
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
