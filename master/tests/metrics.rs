//! The master's `/metrics` (on its `--http` server) on a live cluster of
//! real processes: the text parses strictly, and its numbers move with
//! what the cluster does: requests and journal flushes with a `dfs put`,
//! errors with a refused request, minion states when a minion dies.

use std::time::Duration;

use dfs_testkit::metrics::scrape;
use dfs_testkit::{utf8, write_random_file, Cluster, ClusterOptions};

#[test]
fn master_metrics_follow_requests_the_journal_and_minion_states() {
    let mut cluster = Cluster::start(ClusterOptions {
        minions: 2,
        replication: Some(2),
        block_size: Some("1M"),
        stale_after: Some("1s"),
        dead_after: Some("2s"),
        master_arguments: vec!["--http", "127.0.0.1:0"],
        ..ClusterOptions::default()
    });
    let address = cluster.master_http_address();
    let before = scrape(&address);
    let live = |exposition: &dfs_testkit::metrics::Exposition| {
        exposition.value("dfs_master_minions", &[("state", "live")])
    };
    assert_eq!(live(&before), Some(2.0));
    let requests =
        |exposition: &dfs_testkit::metrics::Exposition| exposition.sum("dfs_master_requests_total");

    let source = cluster.dir().join("source");
    write_random_file(&source, 7, 3 << 20);
    cluster.dfs_ok(["put", utf8(&source), "/file"]);
    let refused = cluster.dfs(["mkdir", "/file"]);
    assert!(!refused.status.success(), "a second /file is refused");
    let after = scrape(&address);
    assert!(
        requests(&after) >= requests(&before) + 5.0,
        "requests {} -> {}",
        requests(&before),
        requests(&after)
    );
    let closes = after
        .value("dfs_master_requests_total", &[("op", "CloseWrite")])
        .unwrap_or(0.0);
    assert!(closes >= 1.0, "the put's close is counted");
    assert!(
        after.value("dfs_master_errors_total", &[("kind", "AlreadyExists")]) >= Some(1.0),
        "the refused mkdir is counted"
    );
    assert!(
        after.sum("dfs_master_journal_flush_records_count")
            > before.sum("dfs_master_journal_flush_records_count"),
        "the put's changes were flushed to the journal"
    );
    assert!(after.sum("dfs_master_request_duration_seconds_count") >= requests(&after) - 1.0);

    cluster.kill_minion(1);
    cluster.wait_for(
        || {
            let now = scrape(&address);
            live(&now) == Some(1.0)
                && now.value("dfs_master_minions", &[("state", "dead")]) == Some(1.0)
        },
        Duration::from_secs(30),
        "the master's metrics to count one minion dead",
    );
    cluster.assert_clean_logs();
}
