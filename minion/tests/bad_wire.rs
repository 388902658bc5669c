//! A minion survives malformed bytes on its data port: garbage, a bad
//! magic, a header announcing a 4 GiB payload, an undecodable request and a
//! frame cut short. After each it drops (or answers) that connection and
//! stays alive, and afterwards a put/get that needs it still works. Raw TCP
//! against a real `dfs-minion` in a real cluster.

use dfs_testkit::bad_wire::{bad_inputs, send_bad_input};
use dfs_testkit::{assert_files_equal, utf8, write_random_file, Cluster, ClusterOptions};

#[test]
fn malformed_input_does_not_hurt_a_minion() {
    let mut cluster = Cluster::start(ClusterOptions::default());
    for input in bad_inputs() {
        let reaction = send_bad_input(cluster.minion_address(0), &input);
        assert!(
            cluster.minion_is_running(0),
            "minion 0 died of {} ({reaction:?})",
            input.name
        );
    }
    cluster.wait_for_live_minions(3);

    // Replication 3 on three minions: the write pipeline and the replicas
    // include the minion that was fed the bad bytes.
    let local = cluster.dir().join("source");
    let copy = cluster.dir().join("copy");
    write_random_file(&local, 1, 3 * 1024 * 1024 + 5);
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
    stat.assert_fully_replicated(3);
    for block in &stat.blocks {
        assert!(
            block
                .minion_addresses()
                .contains(&cluster.minion_address(0)),
            "block {} is not on minion 0: {:?}",
            block.index,
            block.minions
        );
    }
    cluster.dfs_ok(["get", "/file", utf8(&copy)]);
    assert_files_equal(&copy, &local);

    // Reads served by minion 0 alone.
    cluster.kill_minion(1);
    cluster.kill_minion(2);
    let copy = cluster.dir().join("copy-from-minion-0");
    cluster.dfs_ok(["get", "/file", utf8(&copy)]);
    assert_files_equal(&copy, &local);
}
