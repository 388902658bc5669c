//! Reads survive replica loss and corruption, a minion stopped and started
//! again serves its blocks, and writes survive a cluster smaller than the
//! replication: real processes are SIGKILLed or restarted and real block
//! files get a flipped byte, then `dfs get` output is compared byte for byte.

use dfs_testkit::{
    assert_bytes_equal, assert_files_equal, random_bytes, utf8, write_random_file, Cluster,
    ClusterOptions, Signal, Stat,
};

const MIB: u64 = 1 << 20;

fn put_file(cluster: &Cluster, name: &str, length_bytes: u64) -> std::path::PathBuf {
    let local = cluster.dir().join(format!("{name}.source"));
    write_random_file(&local, 42, length_bytes);
    cluster.dfs_ok([
        "put",
        "--block-size",
        "1M",
        utf8(&local),
        &format!("/{name}"),
    ]);
    local
}

fn get_and_compare(cluster: &Cluster, remote: &str, expected: &std::path::Path, attempt: &str) {
    let copy = cluster.dir().join(format!("copy-{attempt}"));
    cluster.dfs_ok(["get", remote, utf8(&copy)]);
    assert_files_equal(&copy, expected);
}

#[test]
fn reads_survive_minions_dying_one_after_another() {
    let mut cluster = Cluster::start(ClusterOptions::default());
    let local = put_file(&cluster, "file", 5 * MIB + 123);
    cluster.stat("/file").assert_fully_replicated(3);
    get_and_compare(&cluster, "/file", &local, "all-alive");

    cluster.kill_minion(0);
    get_and_compare(&cluster, "/file", &local, "minion-0-dead");

    cluster.kill_minion(1);
    get_and_compare(&cluster, "/file", &local, "minions-0-1-dead");
}

#[test]
fn writes_with_fewer_live_minions_than_replication_are_under_replicated() {
    let cluster = Cluster::start(ClusterOptions {
        minions: 2,
        ..ClusterOptions::default()
    });
    let local = cluster.dir().join("source");
    write_random_file(&local, 3, 2 * MIB + 10);
    cluster.dfs_ok([
        "put",
        "-r",
        "3",
        "--block-size",
        "1M",
        utf8(&local),
        "/file",
    ]);

    let stat = cluster.stat("/file");
    assert_eq!(stat.number("replication"), 3);
    stat.assert_layout(2 * MIB + 10, MIB);
    for block in &stat.blocks {
        assert_eq!(
            (block.replicas, block.replication),
            (2, 3),
            "block {} should show replicas=2/3",
            block.index
        );
        assert!(
            block.under_replicated,
            "block {} should be marked (under-replicated)",
            block.index
        );
        assert_eq!(block.minions.len(), 2, "block {}", block.index);
    }
    get_and_compare(&cluster, "/file", &local, "under-replicated");
}

/// Flips the first byte of the block file: the data of chunk 0.
fn corrupt(cluster: &Cluster, minion: usize, block_id: &str) {
    let path = cluster.block_file_path(minion, block_id);
    let mut bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "read {} (minion {minion} holds {:?}): {e}",
            path.display(),
            cluster.block_files(minion)
        )
    });
    bytes[0] ^= 0xff;
    std::fs::write(&path, &bytes).expect("write the corrupted block file");
}

#[test]
fn reads_fall_back_from_corrupted_replicas_and_never_return_wrong_bytes() {
    let mut cluster = Cluster::start(ClusterOptions::default());
    // Minions may report what they found (and clients what they were sent).
    cluster.allow_error("corrupt");
    cluster.allow_error("checksum");
    let length_bytes = 3 * MIB;
    let local = put_file(&cluster, "file", length_bytes);
    let stat: Stat = cluster.stat("/file");
    stat.assert_fully_replicated(3);
    assert_eq!(stat.blocks.len(), 3);

    // Two of the three replicas of every block are bad, so whichever replica
    // a read tries first, some block needs the fall-back to the third.
    for block in &stat.blocks {
        corrupt(&cluster, 0, &block.id);
        corrupt(&cluster, 1, &block.id);
    }
    get_and_compare(&cluster, "/file", &local, "two-replicas-corrupt");

    // Now every replica of the second block is bad.
    let bad_block = &stat.blocks[1];
    corrupt(&cluster, 2, &bad_block.id);

    let target = cluster.dir().join("must-not-exist");
    let line = cluster.dfs_err(["get", "/file", utf8(&target)]);
    assert!(
        !target.exists(),
        "a failed get left {} behind ({line})",
        target.display()
    );

    let output = cluster.dfs(["get", "/file", "-"]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "get to stdout of a file with a fully corrupted block: {:?}",
        output.status
    );
    let expected = random_bytes(42, length_bytes as usize);
    assert!(
        output.stdout.len() as u64 <= bad_block.offset_bytes,
        "get wrote {} bytes to stdout, past the start of the corrupted block at {}",
        output.stdout.len(),
        bad_block.offset_bytes
    );
    assert_bytes_equal(
        &output.stdout,
        &expected[..output.stdout.len()],
        "what get wrote before failing",
    );
}

#[test]
fn a_restarted_minion_serves_its_blocks_again() {
    let mut cluster = Cluster::start(ClusterOptions::default());
    let local = put_file(&cluster, "file", 2 * MIB + 99);
    // A clean stop (exit 0) on either signal, then a start on the same
    // directory and port.
    for signal in [Signal::Terminate, Signal::Interrupt] {
        cluster.stop_minion_with(0, signal);
        cluster.start_minion(0);
        cluster.wait_for_live_minions(3);
    }
    // Only the restarted minion is left to serve the file.
    cluster.kill_minion(1);
    cluster.kill_minion(2);
    get_and_compare(&cluster, "/file", &local, "restarted-minion-alone");
}
