//! Availability on real processes with short timeouts: `dfs fsck` exits 0
//! with its summary last on a healthy tree and 1 once minions die (blocks
//! under-replicated, then missing); a byte flipped in a block file on disk
//! never reaches a reader, and the bad replica is reported, replaced and
//! deleted; a decommissioned minion is drained (every block fully
//! replicated on the others, so it can be switched off without a byte
//! lost), the intent survives master restarts, and a recommissioned
//! minion's surplus copies are trimmed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use dfs_engine::msg::{MasterRequest, MasterResponse, MinionId, MinionReport, MinionState};
mod heal_support;

use heal_support::{options, put};

use dfs_testkit::{assert_files_equal, utf8, Cluster};

const MIB: u64 = 1 << 20;
/// Long enough for copies and deletions on a loaded machine.
const HEAL_TIMEOUT: Duration = Duration::from_secs(90);

/// Reads /`name` back and compares it with `local`.
fn assert_reads_back(cluster: &Cluster, name: &str, local: &Path, suffix: &str) {
    let copy = cluster
        .dir()
        .join(format!("{}.{suffix}", name.replace('/', "_")));
    cluster.dfs_ok(["get", &format!("/{name}"), utf8(&copy)]);
    assert_files_equal(&copy, local);
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn last_line(output: &Output) -> String {
    stdout(output)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

/// The minion index whose data service listens at `address`.
fn index_of(cluster: &Cluster, address: &str) -> usize {
    (0..cluster.minion_count())
        .find(|&index| cluster.minion_address(index) == address)
        .unwrap_or_else(|| panic!("no minion at {address}"))
}

fn report_of(cluster: &Cluster, index: usize) -> MinionReport {
    let address = cluster.minion_address(index).to_string();
    cluster
        .cluster_report()
        .into_iter()
        .find(|m| m.address == address)
        .unwrap_or_else(|| panic!("minion-{index} is not in the cluster report"))
}

/// Every file under minion `index`'s data directory named after `block`
/// (`blk_<hex>`), wherever it is kept.
fn files_named(cluster: &Cluster, index: usize, block: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![cluster.minion_data_dir(index).to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if entry.file_name().to_string_lossy().starts_with(block) {
                found.push(path);
            }
        }
    }
    found
}

/// The minions holding a sealed file of `block` (`blk_<hex>`) under `blocks/`.
fn holders_on_disk(cluster: &Cluster, block: &str) -> BTreeSet<usize> {
    (0..cluster.minion_count())
        .filter(|&index| {
            cluster.block_files(index).iter().any(|path| {
                path.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{block}_")))
            })
        })
        .collect()
}

#[test]
fn fsck_is_healthy_until_minions_die_then_reports_what_is_short() {
    let mut cluster = Cluster::start(options(3));
    put(&cluster, "a", 1, 2 * MIB + 10);
    cluster.dfs_ok(["mkdir", "/d"]);
    put(&cluster, "d/b", 2, 100);
    put(&cluster, "d/c", 3, MIB);

    let healthy = cluster.dfs(["fsck"]);
    assert_eq!(healthy.status.code(), Some(0), "{healthy:?}");
    assert_eq!(
        stdout(&healthy).lines().count(),
        1,
        "only the summary: {healthy:?}"
    );
    assert_eq!(
        last_line(&healthy),
        "3 files, 5 blocks: 0 missing, 0 corrupt, 0 under-replicated, 0 over-replicated \u{2014} HEALTHY"
    );
    let under_d = cluster.dfs(["fsck", "/d"]);
    assert_eq!(under_d.status.code(), Some(0));
    assert!(last_line(&under_d).starts_with("2 files, 2 blocks: "));
    let missing_path = cluster.dfs_err(["fsck", "/nope"]);
    assert!(missing_path.contains("/nope"), "{missing_path}");
    let help = cluster.dfs_ok(["fsck", "--help"]);
    assert!(
        help.contains("over-replicated block is reported but healthy"),
        "{help}"
    );

    // One of three minions dies: every block is short of one replica and
    // cannot be copied anywhere.
    cluster.kill_minion(0);
    let mut last = String::new();
    cluster.wait_for(
        || {
            let output = cluster.dfs(["fsck"]);
            last = stdout(&output);
            output.status.code() == Some(1)
                && last_line(&output)
                    == "3 files, 5 blocks: 0 missing, 0 corrupt, 5 under-replicated, 0 over-replicated \u{2014} UNHEALTHY"
                && last.contains("under-replicated (2 of 3 live replicas)\n")
        },
        Duration::from_secs(30),
        "fsck to report 5 under-replicated blocks once minion-0 is dead",
    );
    let lines: Vec<&str> = last.lines().collect();
    assert_eq!(lines.len(), 6, "{last}");
    assert!(lines[0].starts_with("/a: block 0 blk_"), "{last}");
    assert!(lines[3].starts_with("/d/b: block 0 blk_"), "{last}");

    // The other two die: nothing is left to read.
    cluster.kill_minion(1);
    cluster.kill_minion(2);
    cluster.wait_for(
        || {
            let output = cluster.dfs(["fsck", "/d"]);
            last = stdout(&output);
            output.status.code() == Some(1)
                && last_line(&output)
                    == "2 files, 2 blocks: 2 missing, 0 corrupt, 0 under-replicated, 0 over-replicated \u{2014} UNHEALTHY"
        },
        Duration::from_secs(30),
        "fsck to report the blocks missing once every minion is dead",
    );
    assert!(
        last.contains("/d/c: block 0 blk_") && last.contains(": missing (0 of 3 live replicas)"),
        "{last}"
    );
}

#[test]
fn a_corrupt_replica_never_reaches_a_reader_and_is_replaced() {
    let mut cluster = Cluster::start(options(4));
    // The minion that found the bad replica logs it as an error.
    cluster.allow_error("corrupt");
    cluster.allow_error("checksum");
    let local = put(&cluster, "f", 5, 2 * MIB + 4321);
    let blocks = cluster.located_blocks("/f");
    assert_eq!(blocks.len(), 3);
    let block = blocks[1].id.to_string();
    // The replica a reader tries first.
    let bad = index_of(&cluster, &blocks[1].locations[0].address);
    let path = cluster.block_file_path(bad, &block);
    let mut bytes = std::fs::read(&path).expect("read the block file");
    // A byte in the middle of the second data chunk.
    bytes[65_536 + 1000] ^= 0x40;
    std::fs::write(&path, &bytes).expect("write the block file back");

    assert_reads_back(&cluster, "f", &local, "copy");

    // Reported, replaced from a good copy, then deleted from that minion.
    cluster.wait_for(
        || {
            let located = cluster.located_blocks("/f");
            let good = located[1]
                .locations
                .iter()
                .all(|l| l.address != cluster.minion_address(bad));
            let on_disk = holders_on_disk(&cluster, &block);
            good && located[1].locations.len() == 3
                && on_disk.len() == 3
                && !on_disk.contains(&bad)
                && files_named(&cluster, bad, &block).is_empty()
        },
        HEAL_TIMEOUT,
        "the corrupt replica to be replaced and deleted from its minion's disk",
    );
    let fsck = cluster.dfs(["fsck"]);
    assert_eq!(fsck.status.code(), Some(0), "{fsck:?}");
    assert_reads_back(&cluster, "f", &local, "after");
}

/// A replica rewritten on disk with checksums, footer and name that all
/// agree (rot plus a buggy minion, or an old file where a new one should
/// be) is served by its minion without complaint: the block report says
/// its CRC32C, and the master, which recorded the block's at commit, does
/// not count it as a replica. It is never handed to a reader, the block is
/// copied back to three replicas elsewhere, and the file goes as an orphan.
#[test]
fn a_replica_whose_crc_is_not_the_committed_one_is_no_replica() {
    let mut cluster = Cluster::start(options(4));
    let local = put(&cluster, "g", 6, MIB + MIB / 2);
    let blocks = cluster.located_blocks("/g");
    let block = blocks[0].id.to_string();
    let bad = index_of(&cluster, &blocks[0].locations[0].address);
    cluster.stop_minion(bad);
    let rewritten =
        dfs_testkit::corrupt_consistently(&cluster.block_file_path(bad, &block), MIB as usize - 5);
    cluster.start_minion(bad);
    cluster.wait_for(
        || {
            let located = cluster.located_blocks("/g");
            let on_disk = holders_on_disk(&cluster, &block);
            located[0].locations.len() == 3
                && located[0]
                    .locations
                    .iter()
                    .all(|l| l.address != cluster.minion_address(bad))
                && on_disk.len() == 3
                && !on_disk.contains(&bad)
        },
        HEAL_TIMEOUT,
        "the block back to three replicas elsewhere and the rewritten one deleted",
    );
    assert!(!rewritten.exists(), "{} deleted", rewritten.display());
    assert_reads_back(&cluster, "g", &local, "after");
}

#[test]
fn a_decommissioned_minion_is_drained_survives_restarts_and_can_return() {
    let mut cluster = Cluster::start(options(4));
    let files = [("x", 11, 3 * MIB + 7), ("y", 12, MIB), ("z", 13, 5000)];
    let locals: Vec<PathBuf> = files
        .iter()
        .map(|(name, seed, length)| put(&cluster, name, *seed, *length))
        .collect();
    let all_blocks = |cluster: &Cluster| -> Vec<String> {
        files
            .iter()
            .flat_map(|(name, _, _)| cluster.located_blocks(&format!("/{name}")))
            .map(|b| b.id.to_string())
            .collect()
    };
    // The minion holding the most blocks goes.
    let drained = (0..4)
        .max_by_key(|&index| cluster.block_files(index).len())
        .expect("four minions");
    assert!(!cluster.block_files(drained).is_empty());
    let address = cluster.minion_address(drained).to_string();
    let id = report_of(&cluster, drained).id;

    let unknown = cluster.dfs_err(["admin", "decommission", "00000000000000ff"]);
    assert!(unknown.contains("not registered"), "{unknown}");
    let nowhere = cluster.dfs_err(["admin", "decommission", "127.0.0.1:1"]);
    assert!(nowhere.contains("no minion registered"), "{nowhere}");
    cluster.dfs_ok(["admin", "decommission", &address]);
    let report = cluster.dfs_ok(["admin", "report"]);
    assert!(report.contains(&id.to_string()), "{report}");

    let every_block_elsewhere = |cluster: &Cluster| {
        all_blocks(cluster).iter().all(|block| {
            let on_disk = holders_on_disk(cluster, block);
            on_disk.iter().filter(|&&index| index != drained).count() == 3
        })
    };
    cluster.wait_for(
        || {
            report_of(&cluster, drained).state == MinionState::Decommissioned
                && every_block_elsewhere(&cluster)
        },
        HEAL_TIMEOUT,
        "the minion to be drained",
    );
    let report = cluster.dfs_ok(["admin", "report"]);
    assert!(report.contains("decommissioned"), "{report}");
    // Drained is healthy: three live replicas in service for every block.
    assert_eq!(cluster.dfs(["fsck"]).status.code(), Some(0));
    // Its copies were kept while it drained (still readable while up).
    assert!(!cluster.block_files(drained).is_empty());

    // A checkpointed restart of the master keeps the intent.
    cluster.stop_master_gracefully();
    cluster.start_master();
    cluster.wait_for(
        || {
            cluster.try_cluster_report().is_ok_and(|minions| {
                minions.len() == 4
                    && minions
                        .iter()
                        .all(|m| m.address != address || m.state == MinionState::Decommissioned)
            })
        },
        HEAL_TIMEOUT,
        "the restarted master to list the minion as decommissioned",
    );
    // New blocks avoid it.
    let late = put(&cluster, "late", 14, 2 * MIB);
    for block in cluster.located_blocks("/late") {
        assert!(
            block.locations.iter().all(|l| l.address != address),
            "{} placed on the decommissioned minion",
            block.id
        );
    }

    // Switched off: every byte is still there.
    cluster.kill_minion(drained);
    for ((name, _, _), local) in files.iter().zip(&locals) {
        assert_reads_back(&cluster, name, local, "after-drain");
    }
    assert_reads_back(&cluster, "late", &late, "after-drain");

    // Back, and recommissioned; a master crash does not undo that.
    cluster.start_minion(drained);
    cluster.wait_for(
        || report_of(&cluster, drained).state == MinionState::Decommissioned,
        HEAL_TIMEOUT,
        "the returning minion to show as decommissioned",
    );
    cluster.dfs_ok(["admin", "recommission", &id.to_string()]);
    cluster.kill_master();
    cluster.start_master();
    cluster.wait_for_live_minions(4);
    // Its surplus copies are trimmed as usual: three of each block.
    cluster.wait_for(
        || {
            all_blocks(&cluster)
                .iter()
                .all(|block| holders_on_disk(&cluster, block).len() == 3)
        },
        HEAL_TIMEOUT,
        "surplus replicas trimmed to 3 after the recommission",
    );
    for ((name, _, _), local) in files.iter().zip(&locals) {
        assert_reads_back(&cluster, name, local, "after-return");
    }
}

#[test]
fn failed_data_directories_and_bad_reports_are_checked() {
    let cluster = Cluster::start(options(3));
    let report = report_of(&cluster, 1);
    let call = |request| {
        cluster
            .master_call(request)
            .unwrap_or_else(|e| panic!("master call: {e}"))
    };
    let failed = call(MasterRequest::DataDirectoryFailed {
        minion: report.id,
        directory: "/srv/disk2".into(),
        reason: "Input/output error (os error 5)".into(),
    });
    assert_eq!(failed, MasterResponse::Ok);
    assert_eq!(
        report_of(&cluster, 1).failed_directories,
        ["/srv/disk2: Input/output error (os error 5)"]
    );
    let text = cluster.dfs_ok(["admin", "report"]);
    assert!(
        text.contains("  failed directory: /srv/disk2: Input/output error"),
        "{text}"
    );
    let unknown = call(MasterRequest::DataDirectoryFailed {
        minion: MinionId(0xdead),
        directory: "/x".into(),
        reason: "gone".into(),
    });
    assert!(matches!(unknown, MasterResponse::Error(_)), "{unknown:?}");
    // Reports of replicas nobody knows are ignored; too many at once are refused.
    let stray = dfs_engine::msg::BadReplica {
        block: dfs_engine::msg::BlockId(0xbad),
        generation: dfs_engine::msg::Generation(1),
        minion: report.id,
        reason: "chunk 0: CRC32C mismatch".into(),
    };
    let ignored = call(MasterRequest::ReportBadReplicas {
        reporter: None,
        replicas: vec![stray.clone()],
    });
    assert_eq!(ignored, MasterResponse::Ok);
    let flood = call(MasterRequest::ReportBadReplicas {
        reporter: Some(report.id),
        replicas: vec![stray; dfs_engine::limits::BAD_REPLICAS_PER_REPORT_MAX + 1],
    });
    assert!(matches!(flood, MasterResponse::Error(_)), "{flood:?}");
}
