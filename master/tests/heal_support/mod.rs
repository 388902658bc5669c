//! What the healing suites share: a cluster that notices dead minions and
//! orphans within seconds, and files of 1 MiB blocks.

#![allow(dead_code)]

use std::path::PathBuf;

use dfs_testkit::{utf8, write_random_file, Cluster, ClusterOptions};

/// Heartbeats every 200 ms, stale after 1 s, dead after 3 s, orphans
/// deleted after 2 s.
pub fn options(minions: usize) -> ClusterOptions {
    ClusterOptions {
        minions,
        heartbeat_interval: "200ms",
        stale_after: Some("1s"),
        dead_after: Some("3s"),
        orphan_grace: Some("2s"),
        ..ClusterOptions::default()
    }
}

/// Puts a random file of 1 MiB blocks at /`name`; returns the local copy.
pub fn put(cluster: &Cluster, name: &str, seed: u64, length_bytes: u64) -> PathBuf {
    let local = cluster.dir().join(name.replace('/', "_"));
    write_random_file(&local, seed, length_bytes);
    cluster.dfs_ok([
        "put",
        "--block-size",
        "1M",
        utf8(&local),
        &format!("/{name}"),
    ]);
    local
}
