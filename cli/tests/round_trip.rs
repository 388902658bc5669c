//! Files survive `dfs put` then `dfs get` byte for byte at the block-size
//! edges (empty, exactly one block, one byte over, many blocks), through
//! stdin/stdout and `cat`, with a chosen replication and without sync, and
//! every block is stored on as many minions as asked: proved on a real
//! three-minion cluster by comparing bytes and `dfs stat`.

use dfs_testkit::{
    assert_bytes_equal, assert_files_equal, random_bytes, utf8, write_random_file, Cluster,
    ClusterOptions,
};

const MIB: u64 = 1 << 20;

/// Puts a file of `length_bytes` at 1 MiB blocks, gets it back, compares,
/// and checks the block layout and replication `stat` reports.
fn check_round_trip(cluster: &Cluster, name: &str, length_bytes: u64, expected_blocks: u64) {
    let local = cluster.dir().join(format!("{name}.source"));
    let copy = cluster.dir().join(format!("{name}.copy"));
    let remote = format!("/{name}");
    write_random_file(&local, length_bytes, length_bytes);
    cluster.dfs_ok(["put", "--block-size", "1M", utf8(&local), &remote]);
    cluster.dfs_ok(["get", &remote, utf8(&copy)]);
    assert_files_equal(&copy, &local);

    let stat = cluster.stat(&remote);
    for key in [
        "path",
        "type",
        "size",
        "replication",
        "block size",
        "blocks",
        "owner",
        "group",
        "mode",
        "modified",
    ] {
        stat.field(key);
    }
    assert_eq!(stat.field("path"), remote);
    assert_eq!(stat.field("type"), "file");
    assert_eq!(stat.number("replication"), 3, "{name}");
    assert_eq!(stat.number("blocks"), expected_blocks, "{name}");
    stat.assert_layout(length_bytes, MIB);
    stat.assert_fully_replicated(3);
}

#[test]
fn round_trips_at_block_size_edges() {
    let cluster = Cluster::start(ClusterOptions::default());
    for (name, length_bytes, expected_blocks) in [
        ("empty", 0, 0),
        ("one-byte", 1, 1),
        ("exactly-one-block", MIB, 1),
        ("one-byte-over", MIB + 1, 2),
        ("one-chunk-over", MIB + 64 * 1024, 2),
        ("many-blocks", 20 * MIB, 20),
        ("many-blocks-ragged", 3 * MIB + 12_345, 4),
    ] {
        check_round_trip(&cluster, name, length_bytes, expected_blocks);
    }
}

#[test]
fn stdin_put_stdout_get_and_cat() {
    let cluster = Cluster::start(ClusterOptions::default());
    let first = random_bytes(1, (2 * MIB + 777) as usize);
    let second = random_bytes(2, 1000);

    let output = cluster.dfs_with_stdin(["put", "--block-size", "1M", "-", "/first"], &first);
    assert!(output.status.success(), "put from stdin: {output:?}");
    let output = cluster.dfs_with_stdin(["put", "--block-size", "1M", "-", "/second"], &second);
    assert!(output.status.success(), "put from stdin: {output:?}");

    let output = cluster.dfs(["get", "/first", "-"]);
    assert!(
        output.status.success(),
        "get to stdout: {:?}",
        output.status
    );
    assert_bytes_equal(&output.stdout, &first, "get /first -");

    let output = cluster.dfs(["cat", "/second"]);
    assert!(output.status.success(), "cat: {:?}", output.status);
    assert_bytes_equal(&output.stdout, &second, "cat /second");

    let output = cluster.dfs(["cat", "/first", "/second", "/first"]);
    assert!(output.status.success(), "cat: {:?}", output.status);
    let expected = [first.as_slice(), &second, &first].concat();
    assert_bytes_equal(&output.stdout, &expected, "cat /first /second /first");

    for (remote, length_bytes, blocks) in [("/first", 2 * MIB + 777, 3), ("/second", 1000, 1)] {
        let stat = cluster.stat(remote);
        assert_eq!(stat.number("blocks"), blocks, "{remote}");
        stat.assert_layout(length_bytes, MIB);
        stat.assert_fully_replicated(3);
    }
}

#[test]
fn chosen_replication_and_no_sync_writes_round_trip() {
    let cluster = Cluster::start(ClusterOptions::default());
    let local = cluster.dir().join("source");
    write_random_file(&local, 9, 2 * MIB + 3);
    for (name, flags, replication) in [
        ("r1", vec!["-r", "1"], 1),
        ("r2", vec!["-r", "2"], 2),
        ("no-sync", vec!["--no-sync"], 3),
    ] {
        let remote = format!("/{name}");
        let mut args = vec!["put", "--block-size", "1M"];
        args.extend(flags);
        args.extend([utf8(&local), remote.as_str()]);
        cluster.dfs_ok(&args);
        let stat = cluster.stat(&remote);
        assert_eq!(stat.number("replication"), replication, "{name}");
        stat.assert_layout(2 * MIB + 3, MIB);
        stat.assert_fully_replicated(replication as u32);
        let copy = cluster.dir().join(format!("{name}.copy"));
        cluster.dfs_ok(["get", &remote, utf8(&copy)]);
        assert_files_equal(&copy, &local);
    }
}

/// A file of more blocks than one block lookup answers (`GetBlocks` pages
/// of `GET_BLOCKS_PAGE_MAX` by offset): `get` and `cat` fetch the pages as
/// they read, across every page boundary.
#[test]
fn files_of_more_blocks_than_one_lookup_page_read_back() {
    let cluster = Cluster::start(ClusterOptions::default());
    let block_bytes = 4 * 1024;
    let blocks = 2 * u64::from(dfs_engine::limits::GET_BLOCKS_PAGE_MAX) + 7;
    let length_bytes = blocks * block_bytes - 100;
    let local = cluster.dir().join("paged.source");
    write_random_file(&local, 41, length_bytes);
    cluster.dfs_ok([
        "put",
        "-r",
        "1",
        "--block-size",
        "4K",
        utf8(&local),
        "/paged",
    ]);
    assert_eq!(cluster.stat("/paged").number("blocks"), blocks);
    let copy = cluster.dir().join("paged.copy");
    cluster.dfs_ok(["get", "/paged", utf8(&copy)]);
    assert_files_equal(&copy, &local);
    let output = cluster.dfs(["cat", "/paged"]);
    assert!(output.status.success(), "dfs cat /paged");
    let expected = std::fs::read(&local).expect("read the source");
    assert_bytes_equal(&output.stdout, &expected, "dfs cat /paged");
}
