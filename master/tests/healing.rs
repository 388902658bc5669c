//! Self-healing on real processes with short timeouts: a minion killed with
//! SIGKILL has its blocks copied back to full replication on the others and
//! the files read back byte-identical; when it returns with its old data,
//! the surplus replicas are deleted down to the target and its copies of
//! files removed meanwhile go as orphans; `rm` removes block files from
//! every minion's disk; a block file nobody references is deleted after the
//! grace period, not before.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

mod heal_support;

use heal_support::{options, put};

use dfs_testkit::{assert_files_equal, utf8, Cluster};

const MIB: u64 = 1 << 20;
/// Long enough for a dead minion's blocks to be copied on a loaded machine.
const HEAL_TIMEOUT: Duration = Duration::from_secs(90);

/// Block id (`blk_<hex>`) -> minions holding a file of it on disk.
fn blocks_on_disk(cluster: &Cluster, minions: &[usize]) -> BTreeMap<String, BTreeSet<usize>> {
    let mut found: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for &index in minions {
        for path in cluster.block_files(index) {
            // blk_<id>_<generation>_<crc>: the block is its first 20.
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().chars().take(20).collect())
                .unwrap_or_default();
            found.entry(name).or_default().insert(index);
        }
    }
    found
}

/// The ids (`blk_<hex>`) of a file's blocks.
fn block_names(cluster: &Cluster, path: &str) -> Vec<String> {
    cluster
        .located_blocks(path)
        .iter()
        .map(|b| b.id.to_string())
        .collect()
}

#[test]
fn a_dead_minions_blocks_are_copied_back_and_its_surplus_goes_when_it_returns() {
    let mut cluster = Cluster::start(options(4));
    let dir = cluster.dir().to_path_buf();
    let files = [
        ("a", 1, 3 * MIB + 12_345),
        ("b", 2, 2 * MIB),
        ("c", 3, 100_000),
    ];
    let locals: Vec<PathBuf> = files
        .iter()
        .map(|(name, seed, length)| put(&cluster, name, *seed, *length))
        .collect();
    // Six blocks: the minion about to die holds some of them.
    put(&cluster, "doomed", 4, 5 * MIB + 1);
    let dead_address = cluster.minion_address(0).to_string();
    cluster.kill_minion(0);

    // Every block of every file is back to three live replicas, none of
    // them on the dead minion.
    let started = Instant::now();
    cluster.wait_for(
        || {
            files.iter().all(|(name, _, _)| {
                cluster.located_blocks(&format!("/{name}")).iter().all(|b| {
                    b.locations.len() == 3 && b.locations.iter().all(|l| l.address != dead_address)
                })
            })
        },
        HEAL_TIMEOUT,
        "every block back to 3 live replicas",
    );
    eprintln!("healed in {:?}", started.elapsed());
    // The copies are on disk where the master says.
    let on_disk = blocks_on_disk(&cluster, &[1, 2, 3]);
    for (name, _, _) in &files {
        for block in block_names(&cluster, &format!("/{name}")) {
            let holders = on_disk.get(&block).cloned().unwrap_or_default();
            assert_eq!(holders.len(), 3, "{block} of /{name} on disk: {holders:?}");
        }
    }
    for ((name, _, _), local) in files.iter().zip(&locals) {
        let copy = dir.join(format!("{name}.copy"));
        cluster.dfs_ok(["get", &format!("/{name}"), utf8(&copy)]);
        assert_files_equal(&copy, local);
    }

    // A file removed while the minion is away: its copy there is an orphan.
    let doomed_blocks = block_names(&cluster, "/doomed");
    cluster.dfs_ok(["rm", "/doomed"]);
    let stale_before = blocks_on_disk(&cluster, &[0]);
    assert!(
        doomed_blocks.iter().any(|b| stale_before.contains_key(b)),
        "the dead minion held a block of /doomed: {stale_before:?}"
    );

    cluster.start_minion(0);
    cluster.wait_for_live_minions(4);
    let wanted: BTreeSet<String> = files
        .iter()
        .flat_map(|(name, _, _)| block_names(&cluster, &format!("/{name}")))
        .collect();
    cluster.wait_for(
        || {
            let on_disk = blocks_on_disk(&cluster, &[0, 1, 2, 3]);
            on_disk.keys().all(|block| wanted.contains(block))
                && wanted
                    .iter()
                    .all(|block| on_disk.get(block).map_or(0, BTreeSet::len) == 3)
        },
        HEAL_TIMEOUT,
        "surplus replicas and orphans deleted: exactly 3 files of each live block",
    );
    for ((name, _, _), local) in files.iter().zip(&locals) {
        let copy = dir.join(format!("{name}.after"));
        cluster.dfs_ok(["get", &format!("/{name}"), utf8(&copy)]);
        assert_files_equal(&copy, local);
        for block in cluster.located_blocks(&format!("/{name}")) {
            assert_eq!(block.locations.len(), 3, "{} of /{name}", block.id);
        }
    }
}

#[test]
fn removed_files_leave_every_minions_disk() {
    let cluster = Cluster::start(options(3));
    put(&cluster, "gone", 7, 2 * MIB + 5);
    put(&cluster, "kept", 8, MIB);
    let kept = block_names(&cluster, "/kept");
    let gone = block_names(&cluster, "/gone");
    assert_eq!(gone.len(), 3);
    let on_disk = blocks_on_disk(&cluster, &[0, 1, 2]);
    for block in &gone {
        assert_eq!(on_disk.get(block).map_or(0, BTreeSet::len), 3, "{block}");
    }
    cluster.dfs_ok(["rm", "/gone"]);
    cluster.wait_for(
        || {
            let on_disk = blocks_on_disk(&cluster, &[0, 1, 2]);
            gone.iter().all(|block| !on_disk.contains_key(block))
        },
        Duration::from_secs(30),
        "the removed file's block files to leave every minion",
    );
    let on_disk = blocks_on_disk(&cluster, &[0, 1, 2]);
    for block in &kept {
        assert_eq!(on_disk.get(block).map_or(0, BTreeSet::len), 3, "{block}");
    }
    cluster.wait_for(
        || {
            cluster
                .cluster_report()
                .iter()
                .map(|m| m.block_count)
                .sum::<u64>()
                == 3
        },
        Duration::from_secs(30),
        "the minions to count only the 3 kept block files",
    );
}

#[test]
fn an_unreferenced_block_file_is_deleted_after_the_grace_period() {
    let mut cluster = Cluster::start(options(3));
    let dir = cluster.dir().to_path_buf();
    put(&cluster, "real", 9, MIB / 2);
    let real = block_names(&cluster, "/real");
    // Plant a whole, valid block under an id no file has (a copy of a real
    // block's file would name that block in its footer, and the scrubber
    // would rightly quarantine it at once).
    cluster.stop_minion(0);
    let source = cluster.block_file_path(0, &real[0]);
    dfs_testkit::plant_block(
        cluster.minion_data_dir(0),
        dfs_engine::msg::ReplicaId {
            block: dfs_engine::msg::BlockId(0xdead_beef),
            generation: dfs_engine::msg::Generation(7),
        },
        b"an orphan nobody references",
    );
    let planted = cluster.block_file_path(0, "blk_00000000deadbeef");
    assert!(planted.exists(), "{} planted", planted.display());
    let restarted = Instant::now();
    cluster.start_minion(0);
    cluster.wait_for_live_minions(3);
    cluster.wait_for(
        || !planted.exists(),
        Duration::from_secs(30),
        "the planted block file to be deleted",
    );
    let elapsed = restarted.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1900),
        "deleted after {elapsed:?}, before the 2 s grace period was over"
    );
    assert!(source.exists(), "the real block stays");
    let copy = dir.join("real.copy");
    cluster.dfs_ok(["get", "/real", utf8(&copy)]);
    assert_files_equal(&copy, &dir.join("real"));
}
