//! The namespace survives graceful master restarts: after SIGINT or SIGTERM
//! (exit 0) and a start on the same port, the minions re-register and
//! report their blocks, and the tree, every file's status and block list,
//! and every file's bytes are what they were; new blocks get new ids. Real
//! processes, compared through `dfs ls -R`, `dfs stat` and `dfs get`.

use dfs_testkit::{
    assert_files_equal, utf8, wait_for, write_random_file, Cluster, ClusterOptions, Signal, Stat,
    LIVE_TIMEOUT,
};

const MIB: u64 = 1 << 20;

/// A block as a restart must keep it: id, offset, length.
type DurableBlock = (String, u64, u64);

/// The parts of `stat` a restart must keep: everything but where the
/// replicas are (minions are listed in the order they re-registered).
fn durable_view(stat: &Stat) -> (Vec<(String, String)>, Vec<DurableBlock>) {
    let fields = stat
        .fields
        .iter()
        .filter(|(key, _)| key.as_str() != "accessed")
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    let blocks = stat
        .blocks
        .iter()
        .map(|b| (b.id.clone(), b.offset_bytes, b.length_bytes))
        .collect();
    (fields, blocks)
}

#[test]
fn namespace_and_contents_survive_a_graceful_restart() {
    let mut cluster = Cluster::start(ClusterOptions::default());
    cluster.dfs_ok(["mkdir", "-p", "/r/a/b", "/r/c", "/empty-dir"]);
    let files = [
        ("/r/a/b/empty", 0),
        ("/r/a/one", MIB + MIB / 2),
        ("/r/c/two", 2 * MIB + 3),
        ("/top", 700),
    ];
    for (index, (remote, length_bytes)) in files.iter().enumerate() {
        let local = cluster.dir().join(format!("source-{index}"));
        write_random_file(&local, index as u64, *length_bytes);
        cluster.dfs_ok(["put", "--block-size", "1M", utf8(&local), remote]);
    }
    cluster.dfs_ok(["mv", "/top", "/r/moved"]);
    let files =
        files.map(|(remote, length)| (if remote == "/top" { "/r/moved" } else { remote }, length));

    let tree_before = cluster.dfs_ok(["ls", "-R", "/"]);
    let long_before: Vec<String> = ["/", "/r", "/r/a", "/r/c"]
        .iter()
        .map(|dir| cluster.dfs_ok(["ls", "-l", dir]))
        .collect();
    let stats_before: Vec<Stat> = files
        .iter()
        .map(|(remote, _)| cluster.stat(remote))
        .collect();
    let mut ids_before: Vec<String> = stats_before
        .iter()
        .flat_map(|stat| stat.blocks.iter().map(|b| b.id.clone()))
        .collect();

    // Both stop signals write the namespace; the second restart also
    // proves a restarted master's own checkpoint loads.
    for signal in [Signal::Interrupt, Signal::Terminate] {
        cluster.stop_master_with(signal);
        cluster.start_master();
        cluster.wait_for_live_minions(3);
        // Locations come back with the minions' block reports.
        for (remote, _) in &files {
            wait_for(
                || {
                    let stat = cluster.stat(remote);
                    stat.blocks.iter().all(|b| b.replicas == 3)
                },
                LIVE_TIMEOUT,
                &format!("all replicas of {remote} reported after the restart"),
            );
        }

        assert_eq!(
            cluster.dfs_ok(["ls", "-R", "/"]),
            tree_before,
            "after {signal:?}"
        );
        for (dir, before) in ["/", "/r", "/r/a", "/r/c"].iter().zip(&long_before) {
            assert_eq!(
                &cluster.dfs_ok(["ls", "-l", dir]),
                before,
                "ls -l {dir} after {signal:?}"
            );
        }
        for ((remote, _), before) in files.iter().zip(&stats_before) {
            let after = cluster.stat(remote);
            assert_eq!(
                durable_view(&after),
                durable_view(before),
                "stat {remote} after {signal:?}"
            );
            after.assert_fully_replicated(3);
        }
        for (index, (remote, _)) in files.iter().enumerate() {
            let copy = cluster.dir().join(format!("copy-{index}-{signal:?}"));
            cluster.dfs_ok(["get", remote, utf8(&copy)]);
            assert_files_equal(&copy, &cluster.dir().join(format!("source-{index}")));
        }
    }

    // Block ids are never reused, also across a restart.
    let local = cluster.dir().join("after-restart");
    write_random_file(&local, 99, 3 * MIB);
    cluster.dfs_ok(["put", "--block-size", "1M", utf8(&local), "/r/new"]);
    let new = cluster.stat("/r/new");
    new.assert_fully_replicated(3);
    ids_before.sort();
    for block in &new.blocks {
        assert!(
            ids_before.binary_search(&block.id).is_err(),
            "{} was handed out before the restart too",
            block.id
        );
    }
    let copy = cluster.dir().join("copy-new");
    cluster.dfs_ok(["get", "/r/new", utf8(&copy)]);
    assert_files_equal(&copy, &local);
}
