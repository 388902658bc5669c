//! The master survives malformed bytes on its port: garbage, a bad magic, a
//! header announcing a 4 GiB payload, an undecodable request and a frame cut
//! short. After each it drops (or answers) that connection, stays alive and
//! serves `dfs ls /`. Raw TCP against a real `dfs-master`.

use dfs_testkit::bad_wire::{bad_inputs, send_bad_input};
use dfs_testkit::{utf8, write_random_file, Cluster, ClusterOptions};

#[test]
fn malformed_input_does_not_hurt_the_master() {
    let mut cluster = Cluster::start(ClusterOptions::default());
    cluster.dfs_ok(["mkdir", "/still-here"]);
    for input in bad_inputs() {
        let reaction = send_bad_input(cluster.master_address(), &input);
        assert!(
            cluster.master_is_running(),
            "the master died of {}",
            input.name
        );
        assert_eq!(
            cluster.dfs_ok(["ls", "/"]),
            "still-here/\n",
            "dfs ls / after {} ({reaction:?})",
            input.name
        );
    }
    // And it still does real work.
    let local = cluster.dir().join("source");
    write_random_file(&local, 1, 100_000);
    cluster.dfs_ok(["put", utf8(&local), "/still-here/file"]);
    assert_eq!(cluster.dfs_ok(["ls", "/still-here"]), "file\n");
    cluster.wait_for_live_minions(3);
}
