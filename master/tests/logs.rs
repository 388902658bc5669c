//! The daemons' logs on a live cluster of real processes: `--log-format
//! json` writes one JSON object per line (parsed here, not grepped), the
//! cluster's significant events are one line each (a minion declared dead,
//! healing started and finished with its counts), `RUST_LOG` filters, and a
//! bad filter or format stops a daemon with one line naming it.

use std::process::Command;
use std::time::Duration;

use dfs_testkit::{binary, utf8, write_random_file, Cluster, ClusterOptions};

/// The JSON objects of a daemon's log; every line must be one.
fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"))
        })
        .collect()
}

/// The messages of the log lines at `level`.
fn messages(lines: &[serde_json::Value], level: &str) -> Vec<String> {
    lines
        .iter()
        .filter(|line| line["level"] == level)
        .filter_map(|line| line["fields"]["message"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn json_logs_carry_one_line_per_significant_event() {
    let mut cluster = Cluster::start(ClusterOptions {
        minions: 3,
        replication: Some(2),
        block_size: Some("1M"),
        stale_after: Some("1s"),
        dead_after: Some("2s"),
        master_arguments: vec!["--log-format", "json"],
        minion_arguments: vec!["--log-format", "json"],
        ..ClusterOptions::default()
    });
    let source = cluster.dir().join("source");
    write_random_file(&source, 9, 3 << 20);
    cluster.dfs_ok(["put", utf8(&source), "/file"]);
    let holder = cluster.located_blocks("/file")[0].locations[0]
        .address
        .clone();
    let index = (0..3)
        .find(|&index| cluster.minion_address(index) == holder)
        .expect("the holder's index");
    cluster.kill_minion(index);
    let master_log = cluster.log_path("master");
    let read_master = || std::fs::read_to_string(&master_log).expect("read the master's log");
    cluster.wait_for(
        || {
            let text = read_master();
            text.contains("healing finished") && text.contains(" is Dead ")
        },
        Duration::from_secs(60),
        "the master to log that the minion is dead and healing finished",
    );
    let lines = json_lines(&read_master());
    let warned = messages(&lines, "WARN");
    assert!(
        warned
            .iter()
            .any(|m| m.contains(&format!("@{holder} is Dead"))),
        "{warned:?}"
    );
    let told = messages(&lines, "INFO");
    let started = told
        .iter()
        .find(|m| m.starts_with("healing started"))
        .expect("healing started is logged");
    assert!(started.contains("blocks under-replicated"), "{started}");
    let finished = told
        .iter()
        .find(|m| m.starts_with("healing finished"))
        .expect("healing finished is logged");
    let copies: u64 = finished
        .split_whitespace()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count of copies: {finished}"));
    assert!(copies >= 1, "{finished}");
    assert!(lines
        .iter()
        .all(|line| line["target"].is_string() && line["timestamp"].is_string()));
    // The minions' logs are JSON too.
    for survivor in (0..3).filter(|&i| i != index) {
        let text = std::fs::read_to_string(cluster.log_path(&format!("minion-{survivor}")))
            .expect("read a minion's log");
        assert!(!json_lines(&text).is_empty());
    }
    cluster.assert_clean_logs();
}

#[test]
fn rust_log_filters_and_bad_settings_are_named() {
    let mut cluster = Cluster::start(ClusterOptions {
        minions: 1,
        ..ClusterOptions::default()
    });
    // A master restarted with RUST_LOG=warn logs no INFO line.
    cluster.stop_master_gracefully();
    let master_log = cluster.log_path("master");
    std::fs::write(&master_log, "").expect("empty the master's log");
    cluster.set_master_environment("RUST_LOG", Some("warn"));
    cluster.start_master();
    cluster.dfs_ok(["mkdir", "/quiet"]);
    let text = std::fs::read_to_string(&master_log).expect("read");
    assert!(!text.contains(" INFO "), "{text}");

    for (environment, arguments, wanted) in [
        (Some("dfs_master=loud"), &[][..], "RUST_LOG"),
        (None, &["--log-format", "xml"][..], "--log-format"),
    ] {
        let data = tempfile::tempdir().expect("tempdir");
        let mut command = Command::new(binary("dfs-master"));
        command
            .args(["--config", "/dev/null", "--listen", "127.0.0.1:0", "--data"])
            .arg(data.path())
            .args(arguments)
            .env_remove("RUST_LOG");
        if let Some(filter) = environment {
            command.env("RUST_LOG", filter);
        }
        let output = command.output().expect("run dfs-master");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{wanted}: started");
        assert!(stderr.contains(wanted), "{wanted}: {stderr}");
    }
    cluster.assert_clean_logs();
}
