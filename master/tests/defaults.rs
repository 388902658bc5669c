//! The master's `--block-size` and `--replication` are the defaults of files
//! whose writer does not ask, and a writer's own choice wins: real processes,
//! checked through `dfs stat` and byte comparison.

use dfs_testkit::{assert_files_equal, utf8, write_random_file, Cluster, ClusterOptions};

const MIB: u64 = 1 << 20;

#[test]
fn master_defaults_apply_unless_the_writer_chooses() {
    let cluster = Cluster::start(ClusterOptions {
        block_size: Some("1M"),
        replication: Some(2),
        ..ClusterOptions::default()
    });
    let local = cluster.dir().join("source");
    write_random_file(&local, 1, 2 * MIB + 5);

    cluster.dfs_ok(["put", utf8(&local), "/defaults"]);
    let stat = cluster.stat("/defaults");
    assert_eq!(stat.number("replication"), 2);
    assert_eq!(stat.number("block size"), MIB);
    stat.assert_layout(2 * MIB + 5, MIB);
    stat.assert_fully_replicated(2);

    cluster.dfs_ok([
        "put",
        "-r",
        "3",
        "--block-size",
        "512K",
        utf8(&local),
        "/chosen",
    ]);
    let stat = cluster.stat("/chosen");
    assert_eq!(stat.number("replication"), 3);
    assert_eq!(stat.number("block size"), 512 * 1024);
    stat.assert_layout(2 * MIB + 5, 512 * 1024);
    stat.assert_fully_replicated(3);

    for remote in ["/defaults", "/chosen"] {
        let copy = cluster
            .dir()
            .join(format!("copy{}", remote.replace('/', "-")));
        cluster.dfs_ok(["get", remote, utf8(&copy)]);
        assert_files_equal(&copy, &local);
    }
}
