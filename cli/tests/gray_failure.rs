//! Gray failures: a minion that is stopped (SIGSTOP) still accepts TCP
//! connections and looks live to the master for a while, but never answers.
//! With `DFS_IO_TIMEOUT` short, a put whose pipeline starts at the stopped
//! minion gives up on it after the timeout and sends the block to a fresh
//! pipeline (the input is a file, so it can be read again); one whose
//! pipeline has it further down is finished by the members before it
//! (`--pipeline-timeout`); a get reads from the other replicas: no error
//! reaches the user, no byte is wrong.

use std::process::Command;

use dfs_testkit::{
    assert_files_equal, expect_success, run, utf8, write_random_file, Cluster, ClusterOptions,
    COMMAND_TIMEOUT,
};

const MIB: u64 = 1 << 20;

fn dfs_with_timeout(cluster: &Cluster, args: &[&str]) -> String {
    let mut command: Command = cluster.dfs_command();
    command.env("DFS_IO_TIMEOUT", "2s").args(args);
    let output = run(&mut command, None, COMMAND_TIMEOUT);
    expect_success(&output, &format!("dfs {}", args.join(" ")))
}

#[test]
fn a_stopped_minion_costs_a_timeout_not_an_error() {
    let cluster = Cluster::start(ClusterOptions {
        minions: 4,
        // The stopped minion stays "live" to the master for the whole
        // test: every placement may still choose it.
        stale_after: Some("60s"),
        dead_after: Some("120s"),
        // A member gives up on a stopped one behind it after this (times
        // the members behind it); the client waits DFS_IO_TIMEOUT times
        // the pipeline's length, longer, so it blames the stopped minion.
        minion_arguments: vec!["--pipeline-timeout", "500ms"],
        ..ClusterOptions::default()
    });
    let before = cluster.dir().join("before");
    write_random_file(&before, 1, 6 * MIB + 5);
    cluster.dfs_ok(["put", "--block-size", "1M", utf8(&before), "/before"]);

    cluster.sigstop_minion(0);
    let source = cluster.dir().join("source");
    write_random_file(&source, 2, 12 * MIB + 3);
    dfs_with_timeout(
        &cluster,
        &["put", "--block-size", "1M", utf8(&source), "/during"],
    );
    for (remote, local) in [("/during", &source), ("/before", &before)] {
        let copy = cluster
            .dir()
            .join(format!("copy{}", remote.replace('/', "-")));
        dfs_with_timeout(&cluster, &["get", remote, utf8(&copy)]);
        assert_files_equal(&copy, local);
    }
    // Nothing written while it was stopped was placed on it for good.
    let stopped = cluster.minion_address(0).to_string();
    for block in cluster.located_blocks("/during") {
        assert!(
            !block.locations.is_empty() && block.locations.iter().all(|l| l.address != stopped),
            "{}: {:?}",
            block.id,
            block.locations
        );
    }
    cluster.sigcont_minion(0);
}

#[test]
fn a_bad_io_timeout_is_refused_naming_the_variable() {
    let cluster = Cluster::start(ClusterOptions {
        minions: 1,
        ..ClusterOptions::default()
    });
    for value in ["0s", "soon"] {
        let output = cluster
            .dfs_command()
            .env("DFS_IO_TIMEOUT", value)
            .args(["ls", "/"])
            .output()
            .expect("run dfs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{value}: {stderr}");
        assert!(stderr.contains("DFS_IO_TIMEOUT"), "{value}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{value}: {stderr}");
    }
}
