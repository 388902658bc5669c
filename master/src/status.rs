//! Read-only snapshots of the master for the status page and its JSON API
//! (`http`). Each part is copied out under one of the master's locks at a
//! time, held only for the copy, so nothing renders or writes to a socket
//! with a lock held. Also the history behind the page's charts: a bounded
//! ring of samples of the master's running totals (journal records, copies
//! done), taken every few seconds by a thread of its own.
//!
//! Field names are the JSON API's (`/api/v1/...`) and stay stable: a unit
//! is part of a name (`_bytes`, `_ms`, `_ns`, `_per_second`).

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, UNIX_EPOCH};

use dfs_engine::limits::{GET_BLOCKS_PAGE_MAX, LIST_ENTRIES_MAX};
use dfs_engine::msg::{EntryKind, EntryStatus, ErrorKind, MinionReport, MinionState, RemoteError};
use dfs_engine::path::DfsPath;
use dfs_engine::rpc::now_ms;
use dfs_engine::sync;
use serde::Serialize;

use crate::checkpoint;
use crate::namespace::FilePieces;
use crate::registry::Replica;
use crate::service::Master;

/// How often the history is sampled.
pub const HISTORY_INTERVAL: Duration = Duration::from_secs(5);
/// How far back the history (and the charts) go.
pub const HISTORY_WINDOW: Duration = Duration::from_secs(30 * 60);
/// Samples kept: one per interval over the window, and one more so the
/// oldest interval has both ends.
pub const HISTORY_SAMPLES_MAX: usize =
    (HISTORY_WINDOW.as_secs() / HISTORY_INTERVAL.as_secs()) as usize + 1;
/// The span the current rates are measured over.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Entries of a directory one browse page shows.
pub const BROWSE_ENTRIES_MAX: usize = LIST_ENTRIES_MAX as usize;
/// Pieces of a file one browse page shows (with their replicas).
pub const BROWSE_BLOCKS_MAX: usize = GET_BLOCKS_PAGE_MAX as usize;

/// Where healing stands (`Healer::progress`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HealingProgress {
    /// Copies waiting for their source minion's next heartbeat.
    pub copies_queued: u64,
    /// Copies handed to their source, not yet landed on every target.
    pub copies_in_flight: u64,
    /// Copies landed on every target since the master started.
    pub copies_done: u64,
    /// Blocks with fewer counted replicas than their target, at the
    /// replication monitor's last round (which runs every heartbeat).
    pub under_replicated_blocks: u64,
    /// Of those, blocks without a good replica on a minion that is not dead.
    pub missing_blocks: u64,
}

/// The journal's and the checkpoints' counters (`Master::journal_view`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JournalView {
    pub appended_sequence: u64,
    pub durable_sequence: u64,
    /// None while a checkpoint is being written.
    pub checkpoint: Option<CheckpointView>,
    pub flushes: u64,
}

/// The newest checkpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckpointView {
    pub sequence: u64,
    /// Journal bytes written since it was taken (roughly).
    pub bytes_since: u64,
}

/// `/api/v1/cluster`: the whole cluster in one object.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterStatus {
    pub cluster_id: String,
    /// False while the master waits for the minions' block reports (safe
    /// mode): block lookups and healing wait until then.
    pub started: bool,
    /// Why it is still starting, while it is.
    pub starting_reason: Option<String>,
    /// When this snapshot was taken, milliseconds since the Unix epoch.
    pub time_ms: u64,
    pub capacity: CapacityStatus,
    pub minions: MinionCounts,
    pub namespace: NamespaceCounts,
    pub health: HealthCounts,
    pub healing: HealingStatus,
    pub journal: JournalStatus,
    pub throughput: ThroughputStatus,
    pub defaults: Defaults,
}

/// Block bytes the minions read and wrote per second over the last
/// minute (null until there is a sample to measure from).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct ThroughputStatus {
    pub read_bytes_per_second: Option<f64>,
    pub written_bytes_per_second: Option<f64>,
}

/// Totals over minions that are live, joining or stale (as `dfs df`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CapacityStatus {
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub available_bytes: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MinionCounts {
    pub total: u64,
    pub live: u64,
    pub joining: u64,
    pub stale: u64,
    pub dead: u64,
    pub decommissioning: u64,
    pub decommissioned: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NamespaceCounts {
    /// Files, symbolic links and special files.
    pub files: u64,
    pub directories: u64,
    /// Blocks of files.
    pub blocks: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HealthCounts {
    pub under_replicated_blocks: u64,
    pub missing_blocks: u64,
    /// Blocks with at least one replica reported corrupt.
    pub corrupt_blocks: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct HealingStatus {
    pub copies_queued: u64,
    pub copies_in_flight: u64,
    pub copies_done: u64,
    /// Copies done per second over the last minute; None until the
    /// history has a sample to measure from.
    pub copies_per_second: Option<f64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct JournalStatus {
    /// Sequence of the last namespace change applied and appended.
    pub last_sequence: u64,
    /// Sequence up to which the journal is on stable storage.
    pub durable_sequence: u64,
    /// True while a background checkpoint is being written: the three
    /// checkpoint fields are null then.
    pub checkpoint_being_written: bool,
    /// Journal bytes written since the newest checkpoint (roughly).
    pub since_checkpoint_bytes: Option<u64>,
    pub checkpoint_sequence: Option<u64>,
    /// When the newest checkpoint file was written (its modification
    /// time), milliseconds since the Unix epoch.
    pub checkpoint_time_ms: Option<u64>,
    pub flushes: u64,
    /// Namespace changes (journal records) per second over the last minute.
    pub namespace_ops_per_second: Option<f64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Defaults {
    pub replication: u8,
    pub block_bytes: u64,
}

/// One minion, as `dfs admin report` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MinionStatus {
    pub id: String,
    pub address: String,
    pub state: &'static str,
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub available_bytes: u64,
    pub blocks: u64,
    pub last_heartbeat_age_ms: u64,
    pub failed_directories: Vec<String>,
    /// Its traffic over its heartbeats of about the last 2 s.
    pub read_bytes_per_s: u64,
    pub written_bytes_per_s: u64,
    pub forwarded_bytes_per_s: u64,
    pub copied_bytes_per_s: u64,
}

/// `/api/v1/minions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MinionList {
    pub minions: Vec<MinionStatus>,
}

fn minion_status(report: &MinionReport) -> MinionStatus {
    MinionStatus {
        id: report.id.to_string(),
        address: report.address.clone(),
        state: report.state.name(),
        capacity_bytes: report.capacity_bytes,
        used_bytes: report.used_bytes,
        available_bytes: report.available_bytes,
        blocks: report.block_count,
        last_heartbeat_age_ms: report.last_heartbeat_age_ms,
        failed_directories: report.failed_directories.clone(),
        read_bytes_per_s: report.rates.read_bytes_per_s,
        written_bytes_per_s: report.rates.written_bytes_per_s,
        forwarded_bytes_per_s: report.rates.forwarded_bytes_per_s,
        copied_bytes_per_s: report.rates.copied_bytes_per_s,
    }
}

/// Every minion the master knows, ordered by address.
pub fn minions(master: &Master) -> MinionList {
    let now = Instant::now();
    let reports = master.view_registry(|registry, _| registry.reports(now));
    MinionList {
        minions: reports.iter().map(minion_status).collect(),
    }
}

fn capacity_of(reports: &[MinionReport]) -> CapacityStatus {
    let mut total = CapacityStatus::default();
    for minion in reports.iter().filter(|m| {
        matches!(
            m.state,
            MinionState::Live | MinionState::Stale | MinionState::Joining
        )
    }) {
        total.capacity_bytes = total.capacity_bytes.saturating_add(minion.capacity_bytes);
        total.used_bytes = total.used_bytes.saturating_add(minion.used_bytes);
        total.available_bytes = total.available_bytes.saturating_add(minion.available_bytes);
    }
    total
}

fn minion_counts(reports: &[MinionReport]) -> MinionCounts {
    let mut counts = MinionCounts {
        total: reports.len() as u64,
        ..MinionCounts::default()
    };
    for minion in reports {
        let count = match minion.state {
            MinionState::Live => &mut counts.live,
            MinionState::Joining => &mut counts.joining,
            MinionState::Stale => &mut counts.stale,
            MinionState::Dead => &mut counts.dead,
            MinionState::Decommissioning => &mut counts.decommissioning,
            MinionState::Decommissioned => &mut counts.decommissioned,
        };
        *count += 1;
    }
    counts
}

/// The modification time of the checkpoint of `sequence` in `data`, in
/// milliseconds since the Unix epoch (read from the disk, no lock held).
fn checkpoint_time_ms(data: &Path, sequence: u64) -> Option<u64> {
    let checkpoints = checkpoint::list(data).ok()?;
    let (_, path) = checkpoints.iter().find(|(found, _)| *found == sequence)?;
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(modified.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64)
}

/// The cluster's state now, with rates measured against `history`.
pub fn cluster(master: &Master, history: &Mutex<History>) -> ClusterStatus {
    let now = Instant::now();
    let starting_reason = master.starting_reason();
    // One lock at a time: the namespace's, the registry's, the checkpoints'.
    let (files, directories, blocks) = master.view_namespace(|namespace| namespace.counts());
    let (reports, progress, corrupt_blocks, traffic) = master.view_registry(|registry, healer| {
        (
            registry.reports(now),
            healer.progress(),
            registry.corrupt_block_count() as u64,
            registry.traffic_totals(),
        )
    });
    let journal = master.journal_view();
    let current = Sample {
        at: now,
        time_ms: now_ms(),
        namespace_ops: journal.appended_sequence,
        copies_done: progress.copies_done,
        read_bytes: traffic.read_bytes,
        written_bytes: traffic.written_bytes,
    };
    let rates = sync::lock(history).rates_to(&current, RATE_WINDOW);
    let settings = master.settings();
    ClusterStatus {
        cluster_id: master.cluster().to_string(),
        started: starting_reason.is_none(),
        starting_reason,
        time_ms: current.time_ms,
        capacity: capacity_of(&reports),
        minions: minion_counts(&reports),
        namespace: NamespaceCounts {
            files,
            directories,
            blocks,
        },
        health: HealthCounts {
            under_replicated_blocks: progress.under_replicated_blocks,
            missing_blocks: progress.missing_blocks,
            corrupt_blocks,
        },
        healing: HealingStatus {
            copies_queued: progress.copies_queued,
            copies_in_flight: progress.copies_in_flight,
            copies_done: progress.copies_done,
            copies_per_second: rates.map(|rates| rates.copies_per_second),
        },
        journal: JournalStatus {
            last_sequence: journal.appended_sequence,
            durable_sequence: journal.durable_sequence,
            checkpoint_being_written: journal.checkpoint.is_none(),
            since_checkpoint_bytes: journal.checkpoint.map(|checkpoint| checkpoint.bytes_since),
            checkpoint_sequence: journal.checkpoint.map(|checkpoint| checkpoint.sequence),
            checkpoint_time_ms: journal
                .checkpoint
                .and_then(|checkpoint| checkpoint_time_ms(master.data_path(), checkpoint.sequence)),
            flushes: journal.flushes,
            namespace_ops_per_second: rates.map(|rates| rates.namespace_ops_per_second),
        },
        throughput: ThroughputStatus {
            read_bytes_per_second: rates.map(|rates| rates.read_bytes_per_second),
            written_bytes_per_second: rates.map(|rates| rates.written_bytes_per_second),
        },
        defaults: Defaults {
            replication: settings.default_replication,
            block_bytes: settings.default_block_bytes,
        },
    }
}

// --- history ---

/// The master's running totals at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub at: Instant,
    /// Milliseconds since the Unix epoch, for display.
    pub time_ms: u64,
    /// Journal records appended (the last sequence).
    pub namespace_ops: u64,
    pub copies_done: u64,
    /// Block bytes the minions sent to readers and stored, as their last
    /// heartbeats counted them.
    pub read_bytes: u64,
    pub written_bytes: u64,
}

/// Rates between two samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rates {
    pub namespace_ops_per_second: f64,
    pub copies_per_second: f64,
    pub read_bytes_per_second: f64,
    pub written_bytes_per_second: f64,
}

fn rates_between(from: &Sample, to: &Sample) -> Option<Rates> {
    let seconds = to.at.checked_duration_since(from.at)?.as_secs_f64();
    if seconds < 0.5 {
        return None;
    }
    let per_second = |from: u64, to: u64| to.saturating_sub(from) as f64 / seconds;
    Some(Rates {
        namespace_ops_per_second: per_second(from.namespace_ops, to.namespace_ops),
        copies_per_second: per_second(from.copies_done, to.copies_done),
        read_bytes_per_second: per_second(from.read_bytes, to.read_bytes),
        written_bytes_per_second: per_second(from.written_bytes, to.written_bytes),
    })
}

/// One point of `/api/v1/history`: the rates over the interval ending at
/// `time_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct HistoryPoint {
    pub time_ms: u64,
    pub namespace_ops_per_second: f64,
    pub copies_per_second: f64,
    pub read_bytes_per_second: f64,
    pub written_bytes_per_second: f64,
}

/// `/api/v1/history`: the charts' series, oldest point first.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HistorySeries {
    pub interval_ms: u64,
    pub window_ms: u64,
    /// When the series was read, milliseconds since the Unix epoch.
    pub time_ms: u64,
    pub points: Vec<HistoryPoint>,
}

/// The last `HISTORY_SAMPLES_MAX` samples, oldest first.
#[derive(Debug, Default)]
pub struct History {
    samples: VecDeque<Sample>,
}

impl History {
    /// Keeps `sample`, dropping the oldest beyond the bound.
    pub fn push(&mut self, sample: Sample) {
        while self.samples.len() >= HISTORY_SAMPLES_MAX {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The rates of every interval between consecutive samples.
    pub fn series(&self) -> HistorySeries {
        let points = self
            .samples
            .iter()
            .zip(self.samples.iter().skip(1))
            .filter_map(|(from, to)| {
                rates_between(from, to).map(|rates| HistoryPoint {
                    time_ms: to.time_ms,
                    namespace_ops_per_second: rates.namespace_ops_per_second,
                    copies_per_second: rates.copies_per_second,
                    read_bytes_per_second: rates.read_bytes_per_second,
                    written_bytes_per_second: rates.written_bytes_per_second,
                })
            })
            .collect();
        HistorySeries {
            interval_ms: HISTORY_INTERVAL.as_millis() as u64,
            window_ms: HISTORY_WINDOW.as_millis() as u64,
            time_ms: now_ms(),
            points,
        }
    }

    /// The rates from the oldest sample at most `window` before `current`
    /// to `current`; None without one at least half a second before it.
    pub fn rates_to(&self, current: &Sample, window: Duration) -> Option<Rates> {
        let since = current.at.checked_sub(window);
        let from = self
            .samples
            .iter()
            .find(|sample| since.is_none_or(|since| sample.at >= since))?;
        rates_between(from, current)
    }
}

/// The master's totals now (the registry's lock, briefly).
pub fn sample(master: &Master) -> Sample {
    let (copies_done, traffic) = master.view_registry(|registry, healer| {
        (healer.progress().copies_done, registry.traffic_totals())
    });
    Sample {
        at: Instant::now(),
        time_ms: now_ms(),
        namespace_ops: master.journal_view().appended_sequence,
        copies_done,
        read_bytes: traffic.read_bytes,
        written_bytes: traffic.written_bytes,
    }
}

/// Starts the thread that samples the master into `history` every
/// `HISTORY_INTERVAL`; it ends with the master.
pub fn spawn_sampler(master: &Arc<Master>, history: Arc<Mutex<History>>) -> std::io::Result<()> {
    let weak: Weak<Master> = Arc::downgrade(master);
    std::thread::Builder::new()
        .name("status-history".into())
        .spawn(move || loop {
            let Some(master) = weak.upgrade() else {
                return;
            };
            let sample = sample(&master);
            drop(master);
            sync::lock(&history).push(sample);
            std::thread::sleep(HISTORY_INTERVAL);
        })?;
    Ok(())
}

// --- the file browser ---

/// One entry of the namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EntryView {
    /// The last path component ("" for the root).
    pub name: String,
    pub kind: &'static str,
    pub inode: u64,
    /// A file's length, a symbolic link's target length; 0 otherwise.
    pub size_bytes: u64,
    pub owner: String,
    pub group: String,
    /// Permission bits (0o755 is 493).
    pub mode: u32,
    pub modified_ns: u64,
    pub links: u32,
    /// Of a file: its target replication, block size and piece count.
    pub replication: u8,
    pub block_bytes: u64,
    pub block_count: u64,
}

/// The name of an entry kind in the API and on the page.
pub fn kind_name(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::File => "file",
        EntryKind::Directory => "directory",
        EntryKind::Symlink => "symlink",
        EntryKind::Fifo => "fifo",
        EntryKind::Socket => "socket",
        EntryKind::CharDevice => "char-device",
        EntryKind::BlockDevice => "block-device",
    }
}

fn entry_view(status: &EntryStatus) -> EntryView {
    EntryView {
        name: status.name.clone(),
        kind: kind_name(status.kind),
        inode: status.inode,
        size_bytes: status.size_bytes,
        owner: status.owner.clone(),
        group: status.group.clone(),
        mode: status.mode,
        modified_ns: status.modified_ns,
        links: status.links,
        replication: status.replication,
        block_bytes: status.block_bytes,
        block_count: status.block_count,
    }
}

/// A page of a directory's entries, in name order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Listing {
    pub entries: Vec<EntryView>,
    /// True when entries follow the last one shown: the next page starts
    /// after `entries.last().name`.
    pub more: bool,
    pub limit: u64,
}

/// One replica of a block, where the master knows of one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplicaView {
    pub minion: String,
    pub address: String,
    /// live, stale, draining, corrupt or dead.
    pub state: &'static str,
}

/// One piece of a file: a part of a block, or a hole (`block` None).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PieceView {
    pub index: u64,
    pub offset_bytes: u64,
    pub length_bytes: u64,
    pub block: Option<String>,
    pub block_offset_bytes: u64,
    pub block_length_bytes: u64,
    pub replicas: Vec<ReplicaView>,
}

/// The first pieces of a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PieceList {
    pub pieces: Vec<PieceView>,
    /// True when the file has more pieces than shown.
    pub more: bool,
    pub limit: u64,
}

/// `/api/v1/browse`: an entry and, by its kind, a page of its entries, its
/// first pieces, or its target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BrowseView {
    pub path: String,
    pub entry: EntryView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listing: Option<Listing>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PieceList>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_target: Option<String>,
}

/// What the namespace lock yields, before the registry adds replicas.
enum Found {
    Directory(EntryStatus, Vec<EntryStatus>, bool),
    File(FilePieces),
    Link(EntryStatus, String),
    Other(EntryStatus),
}

fn replica_state(replica: Replica) -> &'static str {
    match replica {
        Replica::Live => "live",
        Replica::Stale => "stale",
        Replica::Draining { .. } => "draining",
        Replica::Corrupt => "corrupt",
        Replica::Dead => "dead",
    }
}

/// The entry at `path` (every name is shown, as to the superuser): a
/// directory's entries after `after` (at most `BROWSE_ENTRIES_MAX`), a
/// file's first `BROWSE_BLOCKS_MAX` pieces with the minions holding them,
/// or a link's target.
pub fn browse(
    master: &Master,
    path: &DfsPath,
    after: Option<&str>,
) -> Result<BrowseView, RemoteError> {
    let found = master.view_namespace(|namespace| -> Result<Found, RemoteError> {
        let status = namespace.status(path)?;
        Ok(match status.kind {
            EntryKind::Directory => {
                let (entries, more) = namespace.list(path, after, BROWSE_ENTRIES_MAX)?;
                Found::Directory(status, entries, more)
            }
            EntryKind::File => {
                Found::File(namespace.file_pieces(path, None, Some(0), 0, BROWSE_BLOCKS_MAX)?)
            }
            EntryKind::Symlink => {
                let target = namespace.read_link(path)?.to_string();
                Found::Link(status, target)
            }
            _ => Found::Other(status),
        })
    })?;
    let view = |status: &EntryStatus| BrowseView {
        path: path.as_str().to_string(),
        entry: entry_view(status),
        listing: None,
        file: None,
        link_target: None,
    };
    Ok(match found {
        Found::Directory(status, entries, more) => BrowseView {
            listing: Some(Listing {
                entries: entries.iter().map(entry_view).collect(),
                more,
                limit: BROWSE_ENTRIES_MAX as u64,
            }),
            ..view(&status)
        },
        Found::File(pieces) => BrowseView {
            file: Some(piece_list(master, &pieces)),
            ..view(&pieces.status)
        },
        Found::Link(status, target) => BrowseView {
            link_target: Some(target),
            ..view(&status)
        },
        Found::Other(status) => view(&status),
    })
}

/// `pieces` with the replicas the registry knows of (its lock, briefly).
fn piece_list(master: &Master, pieces: &FilePieces) -> PieceList {
    let now = Instant::now();
    let views = master.view_registry(|registry, _| {
        pieces
            .pieces
            .iter()
            .enumerate()
            .map(|(offset, (extent, block))| {
                let replicas = block.as_ref().map_or_else(Vec::new, |block| {
                    registry
                        .replicas(block.id, now)
                        .into_iter()
                        .map(|(id, replica)| ReplicaView {
                            minion: id.to_string(),
                            address: registry
                                .minion(id)
                                .map_or_else(String::new, |minion| minion.address().address),
                            state: replica_state(replica),
                        })
                        .collect()
                });
                PieceView {
                    index: pieces.first_index + offset as u64,
                    offset_bytes: extent.offset_bytes,
                    length_bytes: extent.length_bytes,
                    block: block.as_ref().map(|block| block.id.to_string()),
                    block_offset_bytes: extent.block_offset_bytes,
                    block_length_bytes: block.as_ref().map_or(0, |block| block.length_bytes),
                    replicas,
                }
            })
            .collect()
    });
    PieceList {
        pieces: views,
        more: pieces.more,
        limit: BROWSE_BLOCKS_MAX as u64,
    }
}

/// A path from the page or the API, checked as every path is; its error
/// is an invalid argument (a 400).
pub fn parse_path(raw: &str) -> Result<DfsPath, RemoteError> {
    DfsPath::parse(raw).map_err(|e| RemoteError::new(ErrorKind::InvalidArgument, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: Instant, seconds: u64, ops: u64, copies: u64) -> Sample {
        Sample {
            at: at + Duration::from_secs(seconds),
            time_ms: seconds * 1000,
            namespace_ops: ops,
            copies_done: copies,
            read_bytes: ops * 1000,
            written_bytes: copies * 1000,
        }
    }

    #[test]
    fn history_keeps_a_bounded_window_and_rates_its_intervals() {
        let start = Instant::now();
        let mut history = History::default();
        assert!(history.series().points.is_empty());
        for i in 0..(HISTORY_SAMPLES_MAX as u64 + 50) {
            history.push(sample(start, i * 5, i * 10, i));
        }
        assert_eq!(history.len(), HISTORY_SAMPLES_MAX);
        let series = history.series();
        assert_eq!(series.points.len(), HISTORY_SAMPLES_MAX - 1);
        for point in &series.points {
            assert_eq!(point.namespace_ops_per_second, 2.0);
            assert_eq!(point.copies_per_second, 0.2);
        }
    }

    #[test]
    fn rates_need_a_sample_before_now_within_the_window() {
        let start = Instant::now();
        let mut history = History::default();
        let now = sample(start, 100, 1000, 50);
        assert_eq!(history.rates_to(&now, RATE_WINDOW), None);
        history.push(sample(start, 20, 0, 0));
        history.push(sample(start, 60, 400, 10));
        history.push(sample(start, 80, 800, 30));
        // The sample at 20 s is older than a minute before 100 s.
        let rates = history.rates_to(&now, RATE_WINDOW).expect("rates");
        assert_eq!(rates.namespace_ops_per_second, 15.0);
        assert_eq!(rates.copies_per_second, 1.0);
    }
}
