//! A master that dies and comes back under a running copy costs a pause,
//! not an error: clients wait for a master that is down or starting
//! (`DFS_MASTER_WAIT`) and send again only what the master applies once.
//! Real processes: `dfs-cp` of a tree (many small files and one of several
//! blocks) while the master is SIGKILLed and restarted part-way; dfs-cp
//! exits 0 and every file reads back byte for byte, with no file left open
//! or duplicated.

mod cp_support;

use std::process::Stdio;
use std::time::Duration;

use cp_support::{assert_cluster_files_match, cluster_files, cp_command, MIB};
use dfs_testkit::{
    utf8, wait_exit, wait_for, write_random_file, Cluster, ClusterOptions, LIVE_TIMEOUT,
};

/// How long the master stays down: several client retries long.
const MASTER_DOWN: Duration = Duration::from_secs(2);
/// Room for the rest of the copy after the restart.
const FINISH_TIMEOUT: Duration = Duration::from_secs(120);
const SMALL_FILES: u64 = 120;

#[test]
fn a_copy_goes_on_across_a_master_kill_and_restart() {
    let mut cluster = Cluster::start(ClusterOptions {
        block_size: Some("1M"),
        ..ClusterOptions::default()
    });
    let source = cluster.dir().join("tree");
    for index in 0..SMALL_FILES {
        let path = source.join(format!("{}/file-{index:04}", index % 8));
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        write_random_file(&path, 500 + index, 48 * 1024 + index);
    }
    write_random_file(&source.join("large"), 9, 6 * MIB + 17);

    // `tree/` into a target that does not exist: the contents land at
    // /target, whichever of the cp and rsync conventions applies.
    let mut child = cp_command(&cluster)
        .args([
            "-q",
            "-j",
            "2",
            &format!("{}/", utf8(&source)),
            "dfs:///target",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dfs-cp");
    wait_for(
        || cp_support::cluster_files_if_any(&cluster, "/target").len() >= 10,
        LIVE_TIMEOUT,
        "dfs-cp to make some files visible",
    );
    cluster.kill_master();
    assert!(
        child.try_wait().expect("poll dfs-cp").is_none(),
        "dfs-cp finished before the master was killed: the test proves nothing"
    );
    std::thread::sleep(MASTER_DOWN);
    cluster.start_master();

    let status = wait_exit(&mut child, FINISH_TIMEOUT).expect("dfs-cp finishes");
    let output = child.wait_with_output().expect("read dfs-cp");
    assert!(
        status.success(),
        "dfs-cp across a master restart: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let files = cluster_files(&cluster, "/target");
    assert_eq!(files.len() as u64, SMALL_FILES + 1, "{files:?}");
    assert_eq!(
        assert_cluster_files_match(&cluster, "/target", &source) as u64,
        SMALL_FILES + 1
    );
    cluster.allow_error("connection");
    cluster.assert_clean_logs();
}
