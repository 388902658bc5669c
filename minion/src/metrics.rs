//! The minion's metrics, for Prometheus (`http` serves them as `/metrics`
//! with `--http`): bytes moved, requests and their latency, writes and
//! copies under way, per data directory its space, I/O errors and scrub
//! progress, checksum failures, quarantined replicas and connections.
//!
//! One `Metrics` lives in the `Store`, which every part of the minion
//! holds. Labelled series are created once, at start, and kept as plain
//! handles: an update on the data path (a batch of chunks stored, sent or
//! forwarded) is one relaxed atomic add, without a lock or a lookup. A
//! request's latency goes into its kind's histogram once per request (a
//! short lock of that histogram, which prometheus-client keeps behind a
//! mutex). Directory space is measured when the metrics are rendered.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use dfs_engine::block_store::BlockStore;
use dfs_engine::msg::MinionRequest;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Latency buckets of requests: 100 µs doubling to about 52 s (a request
/// to write a block lasts until the whole block is stored).
const REQUEST_BUCKET_START_SECONDS: f64 = 0.000_1;
const REQUEST_BUCKETS: u16 = 20;

/// The kinds of request a minion serves, as labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestKind {
    WriteBlock,
    ReadBlock,
    WriteBlocks,
    /// A `SealBlock` outside a write: refused.
    SealBlock,
    SyncReplicas,
}

impl RequestKind {
    const ALL: [RequestKind; 5] = [
        RequestKind::WriteBlock,
        RequestKind::ReadBlock,
        RequestKind::WriteBlocks,
        RequestKind::SealBlock,
        RequestKind::SyncReplicas,
    ];

    pub(crate) fn of(request: &MinionRequest) -> RequestKind {
        match request {
            MinionRequest::WriteBlock { .. } => RequestKind::WriteBlock,
            MinionRequest::ReadBlock { .. } => RequestKind::ReadBlock,
            MinionRequest::WriteBlocks { .. } => RequestKind::WriteBlocks,
            MinionRequest::SealBlock { .. } => RequestKind::SealBlock,
            MinionRequest::SyncReplicas { .. } => RequestKind::SyncReplicas,
        }
    }

    fn label(self) -> &'static str {
        match self {
            RequestKind::WriteBlock => "WriteBlock",
            RequestKind::ReadBlock => "ReadBlock",
            RequestKind::WriteBlocks => "WriteBlocks",
            RequestKind::SealBlock => "SealBlock",
            RequestKind::SyncReplicas => "SyncReplicas",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Where a replica failed its checksums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CheckedBy {
    /// Serving a client's read.
    Read,
    /// A keeper's scrub (or its check of a block a reader found bad).
    Scrub,
    /// Reading it to copy it to another minion.
    Copy,
}

impl CheckedBy {
    const ALL: [CheckedBy; 3] = [CheckedBy::Read, CheckedBy::Scrub, CheckedBy::Copy];

    fn label(self) -> &'static str {
        match self {
            CheckedBy::Read => "read",
            CheckedBy::Scrub => "scrub",
            CheckedBy::Copy => "copy",
        }
    }
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// At the minion's connection limit.
    Busy,
    /// At the limit of connections from one address.
    PeerLimit,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::Busy => "busy",
            Refusal::PeerLimit => "peer_limit",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectoryLabels {
    directory: String,
}

/// One data directory's series.
struct DirectoryMetrics {
    root: std::path::PathBuf,
    capacity_bytes: Gauge,
    used_bytes: Gauge,
    blocks: Gauge,
    in_service: Gauge,
    io_errors: Counter,
    scrub_last_pass: Gauge,
}

fn request_histogram() -> Histogram {
    Histogram::new(exponential_buckets(
        REQUEST_BUCKET_START_SECONDS,
        2.0,
        REQUEST_BUCKETS,
    ))
}

/// The minion's metrics.
pub struct Metrics {
    registry: Registry,
    /// Block bytes sent to readers.
    pub(crate) read_bytes: Counter,
    /// Block bytes stored here (pipeline writes, batches and copies that
    /// arrive).
    pub(crate) written_bytes: Counter,
    /// Block bytes sent on to the next pipeline member.
    pub(crate) forwarded_bytes: Counter,
    /// Block bytes sent to other minions to copy a replica.
    pub(crate) copied_bytes: Counter,
    requests: Vec<Counter>,
    request_seconds: Vec<Histogram>,
    /// Pipeline writes (blocks and batches) under way.
    pipeline_writes: Gauge,
    /// Copies waiting for a replication worker.
    copy_queue: Gauge,
    copies_done: Counter,
    copies_failed: Counter,
    checksum_failures: Vec<Counter>,
    quarantined: Counter,
    scrubbed_blocks: Counter,
    directories: Vec<DirectoryMetrics>,
    connections_open: Gauge,
    busy_refusals: Counter,
    peer_refusals: Counter,
}

impl Metrics {
    /// The byte counters the heartbeat sends the master, which turns
    /// them into rates for its status page.
    pub(crate) fn traffic(&self) -> dfs_engine::msg::MinionTraffic {
        dfs_engine::msg::MinionTraffic {
            read_bytes: self.read_bytes.get(),
            written_bytes: self.written_bytes.get(),
            forwarded_bytes: self.forwarded_bytes.get(),
            copied_bytes: self.copied_bytes.get(),
        }
    }

    /// Registers every metric, with series for each of `directories`.
    pub fn new<'a>(directories: impl Iterator<Item = &'a Path>) -> Metrics {
        let mut registry = Registry::with_prefix("dfs_minion");
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let counter = Counter::default();
            registry.register(name, help, counter.clone());
            counter
        };
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let gauge: Gauge = Gauge::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let read_bytes = counter(&mut registry, "read_bytes", "Block bytes sent to readers");
        let written_bytes = counter(
            &mut registry,
            "written_bytes",
            "Block bytes stored on this minion's disks (writes and copies that arrive)",
        );
        let forwarded_bytes = counter(
            &mut registry,
            "forwarded_bytes",
            "Block bytes sent on to the next minion of a write pipeline",
        );
        let copied_bytes = counter(
            &mut registry,
            "copied_bytes",
            "Block bytes sent to other minions to copy replicas (re-replication)",
        );

        let requests_family = Family::<KindLabels, Counter>::default();
        let seconds_family =
            Family::<KindLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                request_histogram,
            );
        let requests = RequestKind::ALL
            .iter()
            .map(|kind| requests_family.get_or_create_owned(&KindLabels { kind: kind.label() }))
            .collect();
        let request_seconds = RequestKind::ALL
            .iter()
            .map(|kind| seconds_family.get_or_create_owned(&KindLabels { kind: kind.label() }))
            .collect();
        registry.register(
            "requests",
            "Requests served, by kind (the MinionRequest variant)",
            requests_family,
        );
        registry.register(
            "request_duration_seconds",
            "Time to serve a request, by kind (a block write's lasts until the block is stored)",
            seconds_family,
        );

        let pipeline_writes = gauge(
            &mut registry,
            "pipeline_writes",
            "Pipeline writes (blocks and batches of small blocks) under way",
        );
        let copy_queue = gauge(
            &mut registry,
            "copy_queue_length",
            "Copies the master asked for that wait for a replication worker",
        );
        let copies_family = Family::<OutcomeLabels, Counter>::default();
        let copies_done = copies_family.get_or_create_owned(&OutcomeLabels { outcome: "done" });
        let copies_failed = copies_family.get_or_create_owned(&OutcomeLabels { outcome: "failed" });
        registry.register(
            "copies",
            "Replica copies to other minions, by outcome",
            copies_family,
        );

        let checksum_family = Family::<SourceLabels, Counter>::default();
        let checksum_failures = CheckedBy::ALL
            .iter()
            .map(|by| checksum_family.get_or_create_owned(&SourceLabels { source: by.label() }))
            .collect();
        registry.register(
            "checksum_failures",
            "Replicas that failed checksum verification, by where (read, scrub, copy)",
            checksum_family,
        );
        let quarantined = counter(
            &mut registry,
            "replicas_quarantined",
            "Replicas quarantined (never served again; the master copies the block)",
        );
        let scrubbed_blocks = counter(
            &mut registry,
            "scrubbed_blocks",
            "Blocks verified in full by the scrubber",
        );

        let directories = Self::register_directories(&mut registry, directories);

        let connections_open = gauge(
            &mut registry,
            "connections_open",
            "Connections being served",
        );
        let refusals = Family::<ReasonLabels, Counter>::default();
        let busy_refusals = refusals.get_or_create_owned(&ReasonLabels {
            reason: Refusal::Busy.label(),
        });
        let peer_refusals = refusals.get_or_create_owned(&ReasonLabels {
            reason: Refusal::PeerLimit.label(),
        });
        registry.register(
            "connections_refused",
            "Connections refused, by reason (busy: at the connection limit; peer_limit: at the limit for one address)",
            refusals,
        );

        Metrics {
            registry,
            read_bytes,
            written_bytes,
            forwarded_bytes,
            copied_bytes,
            requests,
            request_seconds,
            pipeline_writes,
            copy_queue,
            copies_done,
            copies_failed,
            checksum_failures,
            quarantined,
            scrubbed_blocks,
            directories,
            connections_open,
            busy_refusals,
            peer_refusals,
        }
    }

    /// The per-directory series, labelled with each directory's path.
    fn register_directories<'a>(
        registry: &mut Registry,
        directories: impl Iterator<Item = &'a Path>,
    ) -> Vec<DirectoryMetrics> {
        let capacity = Family::<DirectoryLabels, Gauge>::default();
        let used = Family::<DirectoryLabels, Gauge>::default();
        let blocks = Family::<DirectoryLabels, Gauge>::default();
        let in_service = Family::<DirectoryLabels, Gauge>::default();
        let io_errors = Family::<DirectoryLabels, Counter>::default();
        let last_pass = Family::<DirectoryLabels, Gauge>::default();
        let metrics = directories
            .map(|root| {
                let labels = DirectoryLabels {
                    directory: root.display().to_string(),
                };
                DirectoryMetrics {
                    root: root.to_path_buf(),
                    capacity_bytes: capacity.get_or_create_owned(&labels),
                    used_bytes: used.get_or_create_owned(&labels),
                    blocks: blocks.get_or_create_owned(&labels),
                    in_service: in_service.get_or_create_owned(&labels),
                    io_errors: io_errors.get_or_create_owned(&labels),
                    scrub_last_pass: last_pass.get_or_create_owned(&labels),
                }
            })
            .collect();
        registry.register(
            "directory_capacity_bytes",
            "Size of the filesystem a data directory is on",
            capacity,
        );
        registry.register(
            "directory_used_bytes",
            "Bytes in use on the filesystem a data directory is on",
            used,
        );
        registry.register(
            "directory_blocks",
            "Replicas stored in a data directory (0 once it failed)",
            blocks,
        );
        registry.register(
            "directory_in_service",
            "1 while a data directory is in service, 0 once it failed",
            in_service,
        );
        registry.register(
            "directory_io_errors",
            "I/O errors of operations in a data directory",
            io_errors,
        );
        registry.register(
            "scrub_last_pass_timestamp_seconds",
            "When the last full scrub pass of a data directory ended (Unix time; 0: none since start)",
            last_pass,
        );
        metrics
    }

    /// Starts timing a request of `kind`; it is counted when the timer
    /// drops.
    pub(crate) fn time_request(self: &Arc<Self>, kind: RequestKind) -> RequestTimer {
        RequestTimer {
            metrics: Arc::clone(self),
            kind,
            started: Instant::now(),
        }
    }

    /// Counts a pipeline write under way until the guard drops.
    pub(crate) fn pipeline_write(self: &Arc<Self>) -> PipelineWrite {
        self.pipeline_writes.inc();
        PipelineWrite {
            metrics: Arc::clone(self),
        }
    }

    pub(crate) fn copy_queued(&self) {
        self.copy_queue.inc();
    }

    pub(crate) fn copy_dequeued(&self) {
        self.copy_queue.dec();
    }

    pub(crate) fn copy_ended(&self, succeeded: bool) {
        if succeeded {
            self.copies_done.inc();
        } else {
            self.copies_failed.inc();
        }
    }

    pub(crate) fn checksum_failed(&self, by: CheckedBy) {
        if let Some(counter) = self.checksum_failures.get(by as usize) {
            counter.inc();
        }
    }

    pub(crate) fn quarantined(&self) {
        self.quarantined.inc();
    }

    pub(crate) fn block_scrubbed(&self) {
        self.scrubbed_blocks.inc();
    }

    /// A full scrub pass of data directory `index` ended now.
    pub(crate) fn scrub_pass_done(&self, index: usize) {
        if let Some(directory) = self.directories.get(index) {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            directory
                .scrub_last_pass
                .set(i64::try_from(now.as_secs()).unwrap_or(i64::MAX));
        }
    }

    pub(crate) fn directory_io_error(&self, index: usize) {
        if let Some(directory) = self.directories.get(index) {
            directory.io_errors.inc();
        }
    }

    pub(crate) fn connection_opened(&self) {
        self.connections_open.inc();
    }

    pub(crate) fn connection_closed(&self) {
        self.connections_open.dec();
    }

    pub(crate) fn connection_refused(&self, reason: Refusal) {
        match reason {
            Refusal::Busy => self.busy_refusals.inc(),
            Refusal::PeerLimit => self.peer_refusals.inc(),
        };
    }

    /// Everything in the text exposition format (OpenMetrics), the data
    /// directories' space and state measured now.
    pub fn render(&self, store: &BlockStore) -> String {
        self.measure_directories(store);
        let mut text = String::new();
        // Writing to a String fails only if a metric's encoder does; none
        // of these does.
        if let Err(error) = encode(&mut text, &self.registry) {
            tracing::error!("render metrics: {error}");
        }
        text
    }

    fn measure_directories(&self, store: &BlockStore) {
        let states = store.directory_states();
        for (directory, state) in self.directories.iter().zip(states) {
            let serving = state.failure.is_none();
            directory.in_service.set(i64::from(serving));
            directory
                .blocks
                .set(i64::try_from(state.block_count).unwrap_or(i64::MAX));
            let (capacity, used) = if serving {
                filesystem_space(&directory.root).unwrap_or((0, 0))
            } else {
                (0, 0)
            };
            directory
                .capacity_bytes
                .set(i64::try_from(capacity).unwrap_or(i64::MAX));
            directory
                .used_bytes
                .set(i64::try_from(used).unwrap_or(i64::MAX));
        }
    }
}

/// Size and bytes in use of the filesystem `path` is on; None when it
/// cannot be asked (an unmounted disk, say).
fn filesystem_space(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain data; all zeroes is a valid value.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string and `stats` a live statvfs.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stats) } != 0 {
        return None;
    }
    let fragment = stats.f_frsize;
    let capacity = stats.f_blocks.saturating_mul(fragment);
    let free = stats.f_bfree.saturating_mul(fragment);
    Some((capacity, capacity.saturating_sub(free)))
}

/// Times one request; counts it with its latency when dropped.
pub(crate) struct RequestTimer {
    metrics: Arc<Metrics>,
    kind: RequestKind,
    started: Instant,
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        let index = self.kind.index();
        if let Some(counter) = self.metrics.requests.get(index) {
            counter.inc();
        }
        if let Some(histogram) = self.metrics.request_seconds.get(index) {
            histogram.observe(self.started.elapsed().as_secs_f64());
        }
    }
}

/// A pipeline write under way; the gauge goes down when it drops.
pub(crate) struct PipelineWrite {
    metrics: Arc<Metrics>,
}

impl Drop for PipelineWrite {
    fn drop(&mut self) {
        self.metrics.pipeline_writes.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_renders_and_directory_space_is_measured() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlockStore::open(&[dir.path().to_path_buf()]).expect("open store");
        let metrics = Arc::new(Metrics::new(store.dirs()));
        metrics.written_bytes.inc_by(100);
        {
            let _timer = metrics.time_request(RequestKind::ReadBlock);
            let _write = metrics.pipeline_write();
        }
        metrics.checksum_failed(CheckedBy::Scrub);
        metrics.scrub_pass_done(0);
        let text = metrics.render(&store);
        for line in [
            "dfs_minion_written_bytes_total 100",
            "dfs_minion_requests_total{kind=\"ReadBlock\"} 1",
            "dfs_minion_request_duration_seconds_count{kind=\"ReadBlock\"} 1",
            "dfs_minion_pipeline_writes 0",
            "dfs_minion_checksum_failures_total{source=\"scrub\"} 1",
            "dfs_minion_checksum_failures_total{source=\"read\"} 0",
            "dfs_minion_connections_refused_total{reason=\"busy\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
        let directory = dir.path().display().to_string();
        let capacity = text
            .lines()
            .find(|line| {
                line.starts_with(&format!(
                    "dfs_minion_directory_capacity_bytes{{directory=\"{directory}\"}}"
                ))
            })
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse::<i64>().ok())
            .expect("a capacity sample");
        assert!(capacity > 0, "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
