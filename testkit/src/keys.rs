//! Clusters with a key (`dfs admin keygen`, `--key` on the master and every
//! minion), for the tests of membership, tokens and client identities.

use std::path::Path;

use crate::{binary, utf8, Cluster, ClusterOptions};

/// `dfs admin keygen PATH`.
pub fn keygen(path: &Path) {
    let output = std::process::Command::new(binary("dfs"))
        .args(["admin", "keygen"])
        .arg(path)
        .output()
        .expect("run dfs admin keygen");
    assert!(
        output.status.success(),
        "keygen: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A path as a `'static` argument for `ClusterOptions`.
fn leaked(path: &Path) -> &'static str {
    Box::leak(utf8(path).to_string().into_boxed_str())
}

/// A cluster of `options` whose master and minions share a new key, with
/// the directory that holds it (`cluster.key`). The cluster's `dfs`
/// commands prove the key as their identity (the member identity).
pub fn keyed_cluster(options: ClusterOptions) -> (tempfile::TempDir, Cluster) {
    let keys = tempfile::tempdir().expect("tempdir");
    let key_path = keys.path().join("cluster.key");
    keygen(&key_path);
    let key = leaked(&key_path);
    let mut master_arguments = vec!["--key", key];
    master_arguments.extend(options.master_arguments.iter().copied());
    let mut minion_arguments = vec!["--key", key];
    minion_arguments.extend(options.minion_arguments.iter().copied());
    let cluster = Cluster::start(ClusterOptions {
        master_arguments,
        minion_arguments,
        ..options
    });
    (keys, cluster)
}
