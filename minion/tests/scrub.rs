//! A replica that rots on disk is found, set aside and replaced: a byte
//! flipped in a data chunk of one replica is found by the minion's scrubber
//! (`--scrub-period 2s`) or, with the default two weeks, by the minion's
//! read path when a client reads it. Either way the minion quarantines the
//! replica at once (a read of it gets `Corrupted`), reports it to the
//! master, which copies the block elsewhere and then has the bad replica
//! deleted; the file reads back byte-identical throughout. Proved with a
//! real dfs-master, four dfs-minion processes, `dfs put`/`dfs get`, the
//! master's block locations, raw reads from the minion and its data
//! directory and log.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dfs_engine::limits::CHUNK_BYTES;
use dfs_engine::msg::{BlockId, ErrorKind, LocatedBlock};
use dfs_testkit::{
    assert_files_equal, read_block_from, utf8, write_random_file, Cluster, ClusterOptions,
    MinionProcess, MinionRead,
};

const MIB: u64 = 1 << 20;
/// Long enough for a loaded machine to verify, report and copy a block.
const WAIT: Duration = Duration::from_secs(60);

/// A master and four minions started here with `extra` options.
fn start(extra: &[&str]) -> (Cluster, Vec<MinionProcess>) {
    let cluster = Cluster::start(ClusterOptions {
        minions: 0,
        stale_after: Some("10s"),
        ..ClusterOptions::default()
    });
    let minions: Vec<MinionProcess> = (0..4)
        .map(|index| {
            MinionProcess::start(
                cluster.master_address(),
                &[data_dir(&cluster, index)],
                "127.0.0.1:0",
                extra,
                &cluster.dir().join(format!("own-minion-{index}.log")),
            )
        })
        .collect();
    cluster.wait_for_live_minions(minions.len());
    (cluster, minions)
}

fn data_dir(cluster: &Cluster, index: usize) -> PathBuf {
    cluster.dir().join(format!("own-minion-{index}"))
}

/// The file of `dir`'s sealed replica of `block` (or where none is).
fn block_path(dir: &Path, block: BlockId) -> PathBuf {
    dfs_testkit::sealed_replica_file(dir, block).unwrap_or_else(|| dir.join("blocks/none"))
}

/// Puts a six-block file with three replicas; returns its local copy.
fn put(cluster: &Cluster) -> PathBuf {
    let local = cluster.dir().join("source");
    write_random_file(&local, 21, 6 * MIB - 1000);
    cluster.dfs_ok(["put", "--block-size", "1M", utf8(&local), "/file"]);
    local
}

/// A block of /file that the minion at `address` holds.
fn block_held_by(cluster: &Cluster, address: &str) -> LocatedBlock {
    cluster
        .located_blocks("/file")
        .into_iter()
        .find(|block| block.locations.iter().any(|l| l.address == address))
        .unwrap_or_else(|| panic!("{address} holds no block of /file"))
}

/// Flips one byte of the second data chunk of a block file, in place.
fn rot(path: &Path) {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let offset = u64::from(CHUNK_BYTES) + 4321;
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, offset).expect("read a byte");
    byte[0] ^= 0x20;
    file.write_all_at(&byte, offset).expect("write a byte");
}

/// Waits until the minion quarantined `block` and then asserts what a
/// reader and the master see until the replica is replaced and deleted.
fn assert_quarantined_reported_and_replaced(
    cluster: &Cluster,
    minion: &MinionProcess,
    dir: &Path,
    block: &LocatedBlock,
    local: &Path,
) {
    cluster.wait_for(
        || {
            dfs_testkit::quarantined_replica_file(dir, block.id).is_some()
                && !block_path(dir, block.id).exists()
        },
        WAIT,
        "the bad replica to be quarantined",
    );
    match read_block_from(minion.address(), block.replica(), block.length_bytes) {
        MinionRead::Refused(error) => {
            assert_eq!(error.kind, ErrorKind::Corrupted, "{}", error.message);
            assert!(error.message.contains("quarantined"), "{}", error.message);
        }
        other => panic!("a quarantined replica was served: {other:?}"),
    }
    minion.wait_for_log("reported quarantined replicas to the master", WAIT);

    // The master copies the block to the fourth minion, then has the bad
    // replica deleted.
    cluster.wait_for(
        || {
            cluster
                .located_blocks("/file")
                .iter()
                .find(|b| b.id == block.id)
                .is_some_and(|b| {
                    b.locations.len() == 3
                        && b.locations.iter().all(|l| l.address != minion.address())
                })
        },
        WAIT,
        "three good replicas of the block, none on the minion that found it bad",
    );
    cluster.wait_for(
        || dfs_testkit::quarantined_replica_file(dir, block.id).is_none(),
        WAIT,
        "the master to have the quarantined replica deleted",
    );
    let copy = cluster.dir().join("copy");
    cluster.dfs_ok(["get", "/file", utf8(&copy)]);
    assert_files_equal(&copy, local);
}

#[test]
fn the_scrubber_finds_a_rotten_replica() {
    let (cluster, minions) = start(&["--scrub-period", "2s"]);
    let local = put(&cluster);
    let block = block_held_by(&cluster, minions[0].address());
    let dir = data_dir(&cluster, 0);
    rot(&block_path(&dir, block.id));

    assert_quarantined_reported_and_replaced(&cluster, &minions[0], &dir, &block, &local);
    minions[0].wait_for_log(" 1 bad, in ", WAIT);
    for minion in &minions {
        // A client may read the bad replica before the scrubber gets to it.
        minion.assert_clean_log(&["corrupted blk_"]);
    }
    cluster.assert_clean_logs();
}

#[test]
fn a_rotten_replica_a_reader_finds_is_verified_and_quarantined() {
    // The default period: the first pass ran at start, when there was
    // nothing to verify, and the next is two weeks away.
    let (cluster, minions) = start(&[]);
    let local = put(&cluster);
    let block = block_held_by(&cluster, minions[0].address());
    let dir = data_dir(&cluster, 0);
    rot(&block_path(&dir, block.id));

    assert_eq!(
        read_block_from(minions[0].address(), block.replica(), block.length_bytes),
        MinionRead::Broken {
            bytes_before: CHUNK_BYTES as usize
        },
        "the good first chunk, then the end"
    );
    assert_quarantined_reported_and_replaced(&cluster, &minions[0], &dir, &block, &local);
    for minion in &minions {
        minion.assert_clean_log(&["corrupted blk_"]);
    }
    cluster.assert_clean_logs();
}
