//! The mount's list of blocks written without sync
//! (`dfs_mount::unsynced`), on a real cluster: past its bound, the commit
//! that adds more makes everything listed durable (each member is asked);
//! when that fails, the next fsync of each of those files fails, once.

use std::io::Write;
use std::time::Duration;

use dfs_client::{Client, WriteOptions, WriteStats};
use dfs_engine::path::DfsPath;
use dfs_mount::unsynced::{self, Unsynced};
use dfs_testkit::metrics::scrape;
use dfs_testkit::{wait_for, Cluster, ClusterOptions};

const MINIONS: usize = 3;

/// A small file at `path`, its blocks written without sync; its inode and
/// what the write stored.
fn write_unsynced(client: &mut Client, path: &str) -> (u64, WriteStats) {
    let path = DfsPath::parse(path).expect("a path");
    let options = WriteOptions {
        sync: false,
        ..WriteOptions::default()
    };
    let mut writer = client.create(&path, options).expect("create");
    writer
        .write_all(path.to_string().as_bytes())
        .expect("write");
    let stats = writer.finish().expect("finish");
    let inode = client.stat(&path).expect("stat").inode;
    (inode, stats)
}

/// `SyncReplicas` requests every minion served.
fn replica_syncs(cluster: &Cluster) -> f64 {
    (0..MINIONS)
        .map(|index| {
            cluster
                .minion_http_address(index)
                .expect("a metrics address")
        })
        .map(|address| {
            scrape(&address)
                .value("dfs_minion_requests_total", &[("kind", "SyncReplicas")])
                .expect("a SyncReplicas count")
        })
        .sum()
}

#[test]
fn past_its_bound_the_list_is_made_durable_and_a_failed_flush_fails_each_files_next_fsync() {
    let mut cluster = Cluster::start(ClusterOptions {
        minions: MINIONS,
        replication: Some(3),
        minion_arguments: vec!["--http", "127.0.0.1:0"],
        ..ClusterOptions::default()
    });
    wait_for(
        || (0..MINIONS).all(|index| cluster.minion_http_address(index).is_some()),
        Duration::from_secs(30),
        "the minions' metrics addresses",
    );
    let mut client = Client::connect(cluster.master_address()).expect("connect");
    let list = Unsynced::with_bound(2);
    let record = |client: &mut Client, path: &str| {
        let (inode, stats) = write_unsynced(client, path);
        unsynced::record(Some(&list), Some(inode), client, stats).expect("record");
        inode
    };

    // Two blocks fill the list; nobody was asked to flush them yet.
    let a = record(&mut client, "/a");
    record(&mut client, "/b");
    assert_eq!(replica_syncs(&cluster), 0.0);
    // A third: all three made durable at once, one request per member.
    record(&mut client, "/c");
    assert_eq!(replica_syncs(&cluster), MINIONS as f64);
    // Nothing is left for their fsync.
    list.make_durable(&mut client, a).expect("fsync a");
    assert_eq!(replica_syncs(&cluster), MINIONS as f64);

    // The list full again, and every member gone before the next commit:
    // its flush fails, and so does the next fsync of each file listed
    // (once).
    let d = record(&mut client, "/d");
    let e = record(&mut client, "/e");
    let (f, stats) = write_unsynced(&mut client, "/f");
    for index in 0..MINIONS {
        cluster.kill_minion(index);
    }
    unsynced::record(Some(&list), Some(f), &mut client, stats).expect("record f");
    for inode in [d, e, f] {
        let error = list
            .make_durable(&mut client, inode)
            .expect_err("a failed flush fails the fsync");
        assert!(error.to_string().contains("may not be durable"), "{error}");
        list.make_durable(&mut client, inode)
            .expect("reported once");
    }
}
