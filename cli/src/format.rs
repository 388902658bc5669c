//! The text the `dfs` command prints: `ls -l` lines, `stat`, `df`, `fsck`
//! and `admin report` reports, UTC times. Pure functions, so every format
//! is unit-tested.

use dfs_engine::msg::{
    EntryKind, EntryStatus, FsckBlock, FsckFile, LocatedBlock, MinionReport, MinionState,
};
use dfs_engine::units::{civil_time, format_bytes};

use dfs_client::{ClusterReport, FileBlocks};

/// "2026-11-25 10:01" in UTC, as `ls -l` shows times.
pub fn time_to_minute(unix_ns: u64) -> String {
    let t = civil_time(unix_ns / 1_000_000);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        t.year, t.month, t.day, t.hour, t.minute
    )
}

/// "2026-11-25 10:01:02 UTC", as `stat` shows times.
pub fn time_to_second(unix_ns: u64) -> String {
    let t = civil_time(unix_ns / 1_000_000);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// "drwxr-xr-x": the type and the permission bits.
pub fn mode_string(kind: EntryKind, mode: u32) -> String {
    let mut text = String::with_capacity(10);
    text.push(match kind {
        EntryKind::Directory => 'd',
        EntryKind::File => '-',
        EntryKind::Symlink => 'l',
        EntryKind::Fifo => 'p',
        EntryKind::Socket => 's',
        EntryKind::CharDevice => 'c',
        EntryKind::BlockDevice => 'b',
    });
    // Each class's execute place also shows its special bit, as ls does:
    // setuid and setgid as s (S without x), sticky as t (T).
    for (shift, special, marks) in [
        (6u32, 0o4000, ['s', 'S']),
        (3, 0o2000, ['s', 'S']),
        (0, 0o1000, ['t', 'T']),
    ] {
        let bits = (mode >> shift) & 0o7;
        text.push(if bits & 4 != 0 { 'r' } else { '-' });
        text.push(if bits & 2 != 0 { 'w' } else { '-' });
        text.push(match (mode & special != 0, bits & 1 != 0) {
            (true, true) => marks[0],
            (true, false) => marks[1],
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    text
}

/// How `ls` names an entry: directories end in `/`.
pub fn listed_name(name: &str, kind: EntryKind) -> String {
    match kind {
        EntryKind::Directory if !name.ends_with('/') => format!("{name}/"),
        _ => name.to_string(),
    }
}

/// One `ls -l` line; `name` is the entry's name or full path, already with
/// its trailing `/` for directories.
pub fn long_line(entry: &EntryStatus, name: &str) -> String {
    let replication = match entry.kind {
        EntryKind::File => entry.replication.to_string(),
        _ => "-".to_string(),
    };
    format!(
        "{} {} {} {:>12} {} {} {}",
        mode_string(entry.kind, entry.mode),
        or_dash(&entry.owner),
        or_dash(&entry.group),
        entry.size_bytes,
        replication,
        time_to_minute(entry.modified_ns),
        name
    )
}

fn or_dash(text: &str) -> &str {
    if text.is_empty() {
        "-"
    } else {
        text
    }
}

/// The `stat` report of an entry; `blocks` for files.
pub fn stat_lines(
    path: &str,
    status: &EntryStatus,
    blocks: Option<&[LocatedBlock]>,
) -> Vec<String> {
    let kind = match status.kind {
        EntryKind::File => "file",
        EntryKind::Directory => "directory",
        EntryKind::Symlink => "symbolic link",
        EntryKind::Fifo => "fifo",
        EntryKind::Socket => "socket",
        EntryKind::CharDevice => "character device",
        EntryKind::BlockDevice => "block device",
    };
    let mut lines = vec![
        format!("path: {path}"),
        format!("type: {kind}"),
        format!("size: {}", status.size_bytes),
        format!("replication: {}", status.replication),
        format!("block size: {}", status.block_bytes),
        format!(
            "blocks: {}",
            blocks.map_or(status.block_count, |b| b.len() as u64)
        ),
        format!("owner: {}", status.owner),
        format!("group: {}", status.group),
        format!("mode: {:04o}", status.mode & 0o7777),
        format!("modified: {}", time_to_second(status.modified_ns)),
        format!("inode: {}", status.inode),
        format!("links: {}", status.links),
    ];
    for (index, block) in blocks.unwrap_or_default().iter().enumerate() {
        lines.push(block_line(index, block, status.replication));
    }
    lines
}

/// The `stat` report of a file from its `GetBlocks` answer.
pub fn file_stat_lines(path: &str, file: &FileBlocks) -> Vec<String> {
    stat_lines(path, &file.status, Some(&file.blocks))
}

/// One piece of a file: a block whole, a part of one (where in the block
/// it starts, and the block's length), or a hole (zeros stored nowhere:
/// block id 0, `kind=hole`, no replicas wanted). Every line has the same
/// `key=value` fields after the id, so scripts read holes and parts too.
fn block_line(index: usize, block: &LocatedBlock, replication: u8) -> String {
    if block.is_hole() {
        return format!(
            "block {index}: {} offset={} length={} kind=hole replicas=0/0 minions=",
            block.id, block.offset_bytes, block.length_bytes
        );
    }
    let minions: Vec<String> = block
        .locations
        .iter()
        .map(|minion| format!("{}@{}", minion.id, minion.address))
        .collect();
    let part = if block.is_whole_block() {
        String::new()
    } else {
        format!(
            " block_offset={} block_length={}",
            block.block_offset_bytes, block.block_length_bytes
        )
    };
    let mut line = format!(
        "block {index}: {} offset={} length={}{part} replicas={}/{} minions={}",
        block.id,
        block.offset_bytes,
        block.length_bytes,
        block.locations.len(),
        replication,
        minions.join(",")
    );
    if block.locations.len() < usize::from(replication) {
        line.push_str(" (under-replicated)");
    }
    line
}

/// The columns `df` and `admin report` show of every minion.
const MINION_HEADER: [&str; 7] = [
    "ID",
    "ADDRESS",
    "STATE",
    "CAPACITY",
    "USED",
    "AVAILABLE",
    "BLOCKS",
];

fn minion_columns(minion: &MinionReport) -> Vec<String> {
    vec![
        minion.id.to_string(),
        minion.address.clone(),
        minion.state.name().to_string(),
        minion.capacity_bytes.to_string(),
        minion.used_bytes.to_string(),
        minion.available_bytes.to_string(),
        minion.block_count.to_string(),
    ]
}

/// The `df` report: totals over live, joining and stale minions, then a table of
/// every minion, columns two spaces apart, numbers in bytes right-aligned.
pub fn df_lines(report: &ClusterReport) -> Vec<String> {
    let counted = report.minions.iter().filter(|m| {
        matches!(
            m.state,
            MinionState::Live | MinionState::Stale | MinionState::Joining
        )
    });
    let (mut capacity, mut used, mut available) = (0u64, 0u64, 0u64);
    for minion in counted {
        capacity = capacity.saturating_add(minion.capacity_bytes);
        used = used.saturating_add(minion.used_bytes);
        available = available.saturating_add(minion.available_bytes);
    }
    let count = |state: MinionState| report.minions.iter().filter(|m| m.state == state).count();
    let mut lines = vec![
        format!("capacity: {capacity} ({})", format_bytes(capacity)),
        format!("used: {used} ({})", format_bytes(used)),
        format!("available: {available} ({})", format_bytes(available)),
        format!(
            "minions: {} live, {} stale, {} dead",
            count(MinionState::Live),
            count(MinionState::Stale),
            count(MinionState::Dead)
        ),
        String::new(),
    ];
    let mut rows: Vec<Vec<String>> = vec![MINION_HEADER.map(str::to_string).to_vec()];
    rows.extend(report.minions.iter().map(minion_columns));
    lines.extend(table(&rows, 3));
    lines
}

/// Rows as lines, columns two spaces apart, columns from `right_from` on
/// right-aligned (numbers), trailing spaces trimmed.
fn table(rows: &[Vec<String>], right_from: usize) -> Vec<String> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(column, (cell, &width))| {
                    if column >= right_from {
                        format!("{cell:>width$}")
                    } else {
                        format!("{cell:<width$}")
                    }
                })
                .collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect()
}

/// "1.2s ago": the age of a heartbeat, to a tenth of a second.
pub fn age(milliseconds: u64) -> String {
    format!("{}.{}s ago", milliseconds / 1000, milliseconds % 1000 / 100)
}

/// The `admin report`: how many minions are in each state, then every
/// minion with its space, blocks and last heartbeat, each followed by the
/// data directories it took out of service.
pub fn admin_report_lines(report: &ClusterReport) -> Vec<String> {
    let count = |state: MinionState| report.minions.iter().filter(|m| m.state == state).count();
    let mut lines = vec![
        format!(
            "minions: {} live, {} stale, {} dead, {} decommissioning, {} decommissioned, {} joining",
            count(MinionState::Live),
            count(MinionState::Stale),
            count(MinionState::Dead),
            count(MinionState::Decommissioning),
            count(MinionState::Decommissioned),
            count(MinionState::Joining),
        ),
        format!(
            "files: {}, directories: {}, blocks: {}",
            report.file_count, report.directory_count, report.block_count
        ),
        String::new(),
    ];
    let mut header = MINION_HEADER.map(str::to_string).to_vec();
    header.push("HEARTBEAT".to_string());
    let mut rows: Vec<Vec<String>> = vec![header];
    for minion in &report.minions {
        let mut row = minion_columns(minion);
        row.push(age(minion.last_heartbeat_age_ms));
        rows.push(row);
    }
    let mut table = table(&rows, 3).into_iter();
    lines.extend(table.next());
    for (minion, row) in report.minions.iter().zip(table) {
        lines.push(row);
        for failed in &minion.failed_directories {
            lines.push(format!("  failed directory: {failed}"));
        }
    }
    lines
}

/// What `dfs fsck` found, over every page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsckSummary {
    pub files: u64,
    pub blocks: u64,
    pub missing: u64,
    pub corrupt: u64,
    pub under_replicated: u64,
    pub over_replicated: u64,
}

impl FsckSummary {
    /// Adds a listed file's counts.
    pub fn add(&mut self, file: &FsckFile) {
        self.missing += file.missing_blocks;
        self.corrupt += file.corrupt_blocks;
        self.under_replicated += file.under_replicated_blocks;
        self.over_replicated += file.over_replicated_blocks;
    }

    /// Healthy: nothing missing, corrupt or under-replicated (a surplus is
    /// trimmed by the master and is no harm).
    pub fn is_healthy(&self) -> bool {
        self.missing == 0 && self.corrupt == 0 && self.under_replicated == 0
    }
}

/// "under-replicated (1 of 3 live replicas)": what is wrong with a block
/// and the replicas it has.
fn fsck_problem(block: &FsckBlock, replication: u8) -> String {
    let health = block.health(replication);
    let problems: Vec<&str> = [
        (health.missing, "missing"),
        (health.corrupt, "corrupt"),
        (health.under_replicated, "under-replicated"),
        (health.over_replicated, "over-replicated"),
    ]
    .into_iter()
    .filter(|(present, _)| *present)
    .map(|(_, name)| name)
    .collect();
    let mut details = format!("{} of {replication} live replicas", block.live_replicas);
    for (count, name) in [
        (block.stale_replicas, "stale"),
        (block.decommissioning_replicas, "decommissioning"),
        (block.corrupt_replicas, "corrupt"),
    ] {
        if count > 0 {
            details.push_str(&format!(", {count} {name}"));
        }
    }
    format!("{} ({details})", problems.join(", "))
}

/// One line per listed block of a file, and one more when the master
/// listed fewer blocks than it counted.
pub fn fsck_file_lines(file: &FsckFile) -> Vec<String> {
    let mut lines: Vec<String> = file
        .blocks
        .iter()
        .map(|block| {
            format!(
                "{}: block {} {}: {}",
                file.path,
                block.index,
                block.id,
                fsck_problem(block, file.replication)
            )
        })
        .collect();
    if file.unlisted_blocks > 0 {
        lines.push(format!(
            "{}: {} more blocks like these, not listed",
            file.path, file.unlisted_blocks
        ));
    }
    lines
}

/// The last line of `dfs fsck`.
pub fn fsck_summary_line(summary: &FsckSummary) -> String {
    format!(
        "{} files, {} blocks: {} missing, {} corrupt, {} under-replicated, {} over-replicated \u{2014} {}",
        summary.files,
        summary.blocks,
        summary.missing,
        summary.corrupt,
        summary.under_replicated,
        summary.over_replicated,
        if summary.is_healthy() {
            "HEALTHY"
        } else {
            "UNHEALTHY"
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use dfs_engine::msg::{BlockId, FsckBlock, FsckFile, MinionAddress, MinionId, MinionReport};

    #[test]
    fn times_in_utc() {
        for (unix_ms, minute, second) in [
            (0, "1970-01-01 00:00", "1970-01-01 00:00:00 UTC"),
            // 2026-11-25 10:01:02.999 UTC
            (
                1_795_600_862_999,
                "2026-11-25 10:01",
                "2026-11-25 10:01:02 UTC",
            ),
            // Leap day and the last second of a year.
            (
                951_782_400_000,
                "2000-02-29 00:00",
                "2000-02-29 00:00:00 UTC",
            ),
            (
                1_704_067_199_000,
                "2023-12-31 23:59",
                "2023-12-31 23:59:59 UTC",
            ),
        ] {
            let unix_ns = unix_ms * 1_000_000;
            assert_eq!(time_to_minute(unix_ns), minute, "{unix_ms}");
            assert_eq!(time_to_second(unix_ns), second, "{unix_ms}");
        }
    }

    #[test]
    fn modes() {
        for (kind, mode, want) in [
            (EntryKind::File, 0o644, "-rw-r--r--"),
            (EntryKind::Directory, 0o755, "drwxr-xr-x"),
            (EntryKind::File, 0o4777, "-rwsrwxrwx"),
            (EntryKind::File, 0o4644, "-rwSr--r--"),
            (EntryKind::Directory, 0o3775, "drwxrwsr-t"),
            (EntryKind::Directory, 0o1770, "drwxrwx--T"),
            (EntryKind::File, 0, "----------"),
            (EntryKind::Directory, 0o710, "drwx--x---"),
            (EntryKind::Symlink, 0o777, "lrwxrwxrwx"),
        ] {
            assert_eq!(mode_string(kind, mode), want);
        }
    }

    fn entry(name: &str, kind: EntryKind, size_bytes: u64, mode: u32) -> EntryStatus {
        EntryStatus {
            name: name.into(),
            inode: 2,
            kind,
            size_bytes,
            replication: if kind == EntryKind::File { 3 } else { 0 },
            block_bytes: if kind == EntryKind::File {
                67_108_864
            } else {
                0
            },
            block_count: 0,
            owner: "ana".into(),
            group: "staff".into(),
            mode,
            modified_ns: 1_795_600_862_999_000_000,
            accessed_ns: 0,
            changed_ns: 0,
            links: 1,
            version: 0,
            rdev: 0,
        }
    }

    #[test]
    fn ls_long_lines() {
        let file = entry("data.bin", EntryKind::File, 1_048_576, 0o644);
        assert_eq!(
            long_line(&file, &listed_name(&file.name, file.kind)),
            "-rw-r--r-- ana staff      1048576 3 2026-11-25 10:01 data.bin"
        );
        let dir = entry("dir", EntryKind::Directory, 0, 0o755);
        assert_eq!(
            long_line(&dir, &listed_name(&dir.name, dir.kind)),
            "drwxr-xr-x ana staff            0 - 2026-11-25 10:01 dir/"
        );
        let nobody = EntryStatus {
            owner: String::new(),
            group: String::new(),
            ..entry("x", EntryKind::File, 1, 0o600)
        };
        assert_eq!(
            long_line(&nobody, "/a/x"),
            "-rw------- - -            1 3 2026-11-25 10:01 /a/x"
        );
    }

    fn located(id: u64, offset_bytes: u64, length_bytes: u64, minions: &[u64]) -> LocatedBlock {
        LocatedBlock {
            id: BlockId(id),
            generation: dfs_engine::msg::Generation(id),
            offset_bytes,
            length_bytes,
            crc32c: 0,
            block_offset_bytes: 0,
            block_length_bytes: length_bytes,
            locations: minions
                .iter()
                .map(|&m| MinionAddress {
                    id: MinionId(m),
                    address: format!("127.0.0.1:{}", 4000 + m),
                })
                .collect(),
            token: Vec::new(),
        }
    }

    #[test]
    fn stat_of_a_file_and_a_directory() {
        let file = entry("b", EntryKind::File, 67_108_864 + 10, 0o644);
        let blocks = [
            located(1, 0, 67_108_864, &[1, 2, 3]),
            located(2, 67_108_864, 10, &[2]),
        ];
        assert_eq!(
            stat_lines("/a/b", &file, Some(&blocks)),
            [
                "path: /a/b",
                "type: file",
                "size: 67108874",
                "replication: 3",
                "block size: 67108864",
                "blocks: 2",
                "owner: ana",
                "group: staff",
                "mode: 0644",
                "modified: 2026-11-25 10:01:02 UTC",
                "inode: 2",
                "links: 1",
                "block 0: blk_0000000000000001 offset=0 length=67108864 replicas=3/3 minions=0000000000000001@127.0.0.1:4001,0000000000000002@127.0.0.1:4002,0000000000000003@127.0.0.1:4003",
                "block 1: blk_0000000000000002 offset=67108864 length=10 replicas=1/3 minions=0000000000000002@127.0.0.1:4002 (under-replicated)",
            ]
        );
        let dir = entry("a", EntryKind::Directory, 0, 0o755);
        assert_eq!(
            stat_lines("/a", &dir, None),
            [
                "path: /a",
                "type: directory",
                "size: 0",
                "replication: 0",
                "block size: 0",
                "blocks: 0",
                "owner: ana",
                "group: staff",
                "mode: 0755",
                "modified: 2026-11-25 10:01:02 UTC",
                "inode: 2",
                "links: 1",
            ]
        );
    }

    #[test]
    fn stat_of_a_patched_file_shows_parts_of_blocks_and_holes() {
        let file = EntryStatus {
            block_count: 3,
            ..entry("b", EntryKind::File, 1_048_576 + 4096 + 10, 0o644)
        };
        // Block id 0, no replicas, no block: a hole.
        let hole = LocatedBlock {
            block_length_bytes: 0,
            ..located(0, 1_048_576, 4096, &[])
        };
        let part = LocatedBlock {
            block_offset_bytes: 100,
            block_length_bytes: 1_048_576,
            ..located(7, 1_048_576 + 4096, 10, &[1, 2, 3])
        };
        let blocks = [located(5, 0, 1_048_576, &[1, 2, 3]), hole, part];
        let lines = stat_lines("/a/b", &file, Some(&blocks));
        assert_eq!(
            lines[5..6].iter().chain(&lines[12..]).collect::<Vec<_>>(),
            [
                "blocks: 3",
                "block 0: blk_0000000000000005 offset=0 length=1048576 replicas=3/3 minions=0000000000000001@127.0.0.1:4001,0000000000000002@127.0.0.1:4002,0000000000000003@127.0.0.1:4003",
                "block 1: blk_0000000000000000 offset=1048576 length=4096 kind=hole replicas=0/0 minions=",
                "block 2: blk_0000000000000007 offset=1052672 length=10 block_offset=100 block_length=1048576 replicas=3/3 minions=0000000000000001@127.0.0.1:4001,0000000000000002@127.0.0.1:4002,0000000000000003@127.0.0.1:4003",
            ]
        );
    }

    fn fsck_block(index: u64, counts: [u8; 4]) -> FsckBlock {
        FsckBlock {
            id: BlockId(0x10 + index),
            index,
            length_bytes: 1,
            live_replicas: counts[0],
            stale_replicas: counts[1],
            decommissioning_replicas: counts[2],
            corrupt_replicas: counts[3],
        }
    }

    #[test]
    fn fsck_lines_and_summary() {
        let file = FsckFile {
            path: "/a/b".into(),
            size_bytes: 10,
            replication: 3,
            missing_blocks: 1,
            corrupt_blocks: 1,
            under_replicated_blocks: 2,
            over_replicated_blocks: 1,
            blocks: vec![
                fsck_block(0, [1, 0, 0, 0]),
                fsck_block(1, [2, 0, 1, 1]),
                fsck_block(2, [0, 0, 0, 0]),
                fsck_block(3, [4, 1, 0, 0]),
            ],
            unlisted_blocks: 2,
        };
        assert_eq!(
            fsck_file_lines(&file),
            [
                "/a/b: block 0 blk_0000000000000010: under-replicated (1 of 3 live replicas)",
                "/a/b: block 1 blk_0000000000000011: corrupt, under-replicated (2 of 3 live replicas, 1 decommissioning, 1 corrupt)",
                "/a/b: block 2 blk_0000000000000012: missing (0 of 3 live replicas)",
                "/a/b: block 3 blk_0000000000000013: over-replicated (4 of 3 live replicas, 1 stale)",
                "/a/b: 2 more blocks like these, not listed",
            ]
        );
        let mut summary = FsckSummary {
            files: 7,
            blocks: 20,
            ..FsckSummary::default()
        };
        assert_eq!(
            fsck_summary_line(&summary),
            "7 files, 20 blocks: 0 missing, 0 corrupt, 0 under-replicated, 0 over-replicated \u{2014} HEALTHY"
        );
        let surplus_only = FsckFile {
            missing_blocks: 0,
            corrupt_blocks: 0,
            under_replicated_blocks: 0,
            ..file.clone()
        };
        summary.add(&surplus_only);
        assert!(summary.is_healthy(), "a surplus is healthy");
        summary.add(&file);
        assert_eq!(
            fsck_summary_line(&summary),
            "7 files, 20 blocks: 1 missing, 1 corrupt, 2 under-replicated, 2 over-replicated \u{2014} UNHEALTHY"
        );
        for (missing, corrupt, under, healthy) in [
            (1, 0, 0, false),
            (0, 1, 0, false),
            (0, 0, 1, false),
            (0, 0, 0, true),
        ] {
            let summary = FsckSummary {
                missing,
                corrupt,
                under_replicated: under,
                over_replicated: 5,
                ..FsckSummary::default()
            };
            assert_eq!(summary.is_healthy(), healthy, "{summary:?}");
        }
    }

    #[test]
    fn admin_report() {
        let minion = |id, state, age_ms, failed: &[&str]| MinionReport {
            id: MinionId(id),
            address: format!("127.0.0.1:{}", 40000 + id),
            state,
            capacity_bytes: 1 << 30,
            used_bytes: 1 << 20,
            available_bytes: (1 << 30) - (1 << 20),
            block_count: 16,
            last_heartbeat_age_ms: age_ms,
            failed_directories: failed.iter().map(|f| f.to_string()).collect(),
            rates: Default::default(),
        };
        let report = ClusterReport {
            minions: vec![
                minion(1, MinionState::Live, 150, &[]),
                minion(
                    2,
                    MinionState::Decommissioning,
                    1_234,
                    &["/d1: Input/output error", "/d2: gone"],
                ),
                minion(3, MinionState::Decommissioned, 0, &[]),
            ],
            default_replication: 3,
            default_block_bytes: 64 << 20,
            file_count: 4,
            directory_count: 2,
            block_count: 9,
        };
        assert_eq!(
            admin_report_lines(&report),
            [
                "minions: 1 live, 0 stale, 0 dead, 1 decommissioning, 1 decommissioned, 0 joining",
                "files: 4, directories: 2, blocks: 9",
                "",
                "ID                ADDRESS          STATE              CAPACITY     USED   AVAILABLE  BLOCKS  HEARTBEAT",
                "0000000000000001  127.0.0.1:40001  live             1073741824  1048576  1072693248      16   0.1s ago",
                "0000000000000002  127.0.0.1:40002  decommissioning  1073741824  1048576  1072693248      16   1.2s ago",
                "  failed directory: /d1: Input/output error",
                "  failed directory: /d2: gone",
                "0000000000000003  127.0.0.1:40003  decommissioned   1073741824  1048576  1072693248      16   0.0s ago",
            ]
        );
    }

    #[test]
    fn df_report() {
        let minion = |id, state, capacity_bytes: u64, used_bytes: u64| MinionReport {
            id: MinionId(id),
            address: format!("127.0.0.1:{}", 40000 + id),
            state,
            capacity_bytes,
            used_bytes,
            available_bytes: capacity_bytes - used_bytes,
            block_count: used_bytes / 1024,
            last_heartbeat_age_ms: 0,
            failed_directories: Vec::new(),
            rates: Default::default(),
        };
        let report = ClusterReport {
            minions: vec![
                minion(1, MinionState::Live, 1 << 30, 1 << 20),
                minion(2, MinionState::Stale, 1 << 30, 0),
                minion(3, MinionState::Dead, 1 << 30, 1 << 30),
            ],
            default_replication: 3,
            default_block_bytes: 64 << 20,
            file_count: 1,
            directory_count: 1,
            block_count: 1,
        };
        assert_eq!(
            df_lines(&report),
            [
                "capacity: 2147483648 (2.0 GiB)",
                "used: 1048576 (1.0 MiB)",
                "available: 2146435072 (2.0 GiB)",
                "minions: 1 live, 1 stale, 1 dead",
                "",
                "ID                ADDRESS          STATE    CAPACITY        USED   AVAILABLE   BLOCKS",
                "0000000000000001  127.0.0.1:40001  live   1073741824     1048576  1072693248     1024",
                "0000000000000002  127.0.0.1:40002  stale  1073741824           0  1073741824        0",
                "0000000000000003  127.0.0.1:40003  dead   1073741824  1073741824           0  1048576",
            ]
        );
    }
}
