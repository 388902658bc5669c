//! The minion's `/metrics` (`--http`) on a live cluster of real processes:
//! the text parses strictly, and its numbers move with what the cluster
//! does. A `dfs put -r 2` stores its bytes twice and forwards them once,
//! `dfs cat` reads them, a killed minion's replicas are copied by the
//! others, and a replica corrupted on disk counts a checksum failure and a
//! quarantine when it is read. The Grafana dashboard queries only series
//! that exist.

use std::time::Duration;

use dfs_engine::msg::ReplicaId;
use dfs_testkit::metrics::{scrape, Exposition};
use dfs_testkit::{read_block_from, utf8, write_random_file, Cluster, ClusterOptions, MinionRead};

const MIB: u64 = 1 << 20;
/// Long enough for a loaded machine to notice a dead minion and copy its
/// blocks, or to verify and quarantine a bad replica.
const WAIT: Duration = Duration::from_secs(90);

/// Where minion `index` serves `/metrics`, from its log; the latest start's.
fn http_address(cluster: &Cluster, index: usize) -> Option<String> {
    cluster.minion_http_address(index)
}

/// Sums `name` over the minions `indexes`.
fn total(cluster: &Cluster, indexes: &[usize], name: &str) -> f64 {
    indexes
        .iter()
        .map(|&index| {
            let address = http_address(cluster, index).expect("a metrics address");
            scrape(&address).sum(name)
        })
        .sum()
}

/// The index of the minion serving blocks at `address`.
fn minion_at(cluster: &Cluster, address: &str) -> usize {
    (0..cluster.minion_count())
        .find(|&index| cluster.minion_address(index) == address)
        .unwrap_or_else(|| panic!("no minion at {address}"))
}

#[test]
fn minion_metrics_follow_writes_reads_healing_and_corruption() {
    let mut cluster = Cluster::start(ClusterOptions {
        minions: 4,
        stale_after: Some("1s"),
        dead_after: Some("3s"),
        minion_arguments: vec!["--http", "127.0.0.1:0"],
        ..ClusterOptions::default()
    });
    // The corrupt replica's read and check are logged as errors.
    cluster.allow_error("checksum");
    cluster.allow_error("corrupt");
    let all = [0, 1, 2, 3];
    cluster.wait_for(
        || {
            all.iter()
                .all(|&index| http_address(&cluster, index).is_some())
        },
        WAIT,
        "every minion says where it serves metrics",
    );
    let first = scrape(&http_address(&cluster, 0).expect("an address"));
    for family in [
        "dfs_minion_read_bytes",
        "dfs_minion_written_bytes",
        "dfs_minion_forwarded_bytes",
        "dfs_minion_copied_bytes",
        "dfs_minion_requests",
        "dfs_minion_request_duration_seconds",
        "dfs_minion_pipeline_writes",
        "dfs_minion_copy_queue_length",
        "dfs_minion_copies",
        "dfs_minion_checksum_failures",
        "dfs_minion_replicas_quarantined",
        "dfs_minion_scrubbed_blocks",
        "dfs_minion_scrub_last_pass_timestamp_seconds",
        "dfs_minion_directory_capacity_bytes",
        "dfs_minion_directory_used_bytes",
        "dfs_minion_directory_blocks",
        "dfs_minion_directory_in_service",
        "dfs_minion_directory_io_errors",
        "dfs_minion_connections_open",
        "dfs_minion_connections_refused",
    ] {
        assert!(first.families.contains_key(family), "{family} missing");
    }
    let capacity = first.sum("dfs_minion_directory_capacity_bytes");
    assert!(capacity > 0.0, "capacity {capacity}");
    assert_eq!(first.sum("dfs_minion_directory_in_service"), 1.0);
    check_dashboard(&first);

    // A write with two replicas: stored twice, forwarded once.
    let length = 3 * MIB + 12_345;
    let local = cluster.dir().join("source");
    write_random_file(&local, 7, length);
    let written_before = total(&cluster, &all, "dfs_minion_written_bytes_total");
    let forwarded_before = total(&cluster, &all, "dfs_minion_forwarded_bytes_total");
    let writes_before = total(&cluster, &all, "dfs_minion_requests_total");
    cluster.dfs_ok(["put", "-r", "2", "--block-size", "1M", utf8(&local), "/f"]);
    let written = total(&cluster, &all, "dfs_minion_written_bytes_total") - written_before;
    let forwarded = total(&cluster, &all, "dfs_minion_forwarded_bytes_total") - forwarded_before;
    let requests = total(&cluster, &all, "dfs_minion_requests_total") - writes_before;
    assert!(
        written >= 2.0 * length as f64,
        "stored {written} bytes of {length}"
    );
    assert!(
        forwarded >= length as f64,
        "forwarded {forwarded} bytes of {length}"
    );
    assert!(
        requests >= 8.0,
        "{requests} requests for four blocks on two minions"
    );
    assert_eq!(total(&cluster, &all, "dfs_minion_pipeline_writes"), 0.0);

    // A read of the whole file.
    let read_before = total(&cluster, &all, "dfs_minion_read_bytes_total");
    let output = cluster.dfs(["cat", "/f"]);
    assert!(output.status.success(), "dfs cat: {output:?}");
    assert_eq!(output.stdout.len() as u64, length);
    assert_eq!(
        output.stdout,
        std::fs::read(&local).expect("read the source")
    );
    let read = total(&cluster, &all, "dfs_minion_read_bytes_total") - read_before;
    assert!(read >= length as f64, "read {read} bytes of {length}");

    // A minion dies: the others copy its replicas.
    let doomed = minion_at(
        &cluster,
        &cluster.located_blocks("/f")[0].locations[0].address,
    );
    let doomed_address = cluster.minion_address(doomed).to_string();
    let lost: u64 = cluster
        .located_blocks("/f")
        .iter()
        .filter(|block| block.locations.iter().any(|l| l.address == doomed_address))
        .map(|block| block.length_bytes)
        .sum();
    let live: Vec<usize> = all.iter().copied().filter(|&i| i != doomed).collect();
    let copied_before = total(&cluster, &live, "dfs_minion_copied_bytes_total");
    let copies_before = total(&cluster, &live, "dfs_minion_copies_total");
    cluster.kill_minion(doomed);
    cluster.wait_for(
        || {
            cluster.located_blocks("/f").iter().all(|block| {
                block.locations.len() == 2
                    && block.locations.iter().all(|l| l.address != doomed_address)
            })
        },
        WAIT,
        "every block of /f back to two live replicas",
    );
    let copied = total(&cluster, &live, "dfs_minion_copied_bytes_total") - copied_before;
    let copies = total(&cluster, &live, "dfs_minion_copies_total") - copies_before;
    assert!(
        copied >= lost as f64,
        "copied {copied} bytes of {lost} lost"
    );
    assert!(copies >= 1.0, "{copies} copies");

    // A replica rots: its minion's read finds it, the check quarantines it.
    let block = cluster.located_blocks("/f")[0].clone();
    let holder = minion_at(&cluster, &block.locations[0].address);
    let holder_http = http_address(&cluster, holder).expect("an address");
    let before = scrape(&holder_http);
    let path = cluster.block_file_path(holder, &block.id.to_string());
    let mut bytes = std::fs::read(&path).expect("read the block file");
    // In the second chunk, so the footer and the first chunk are good.
    bytes[65_536 + 1000] ^= 0x40;
    std::fs::write(&path, &bytes).expect("write the block file back");
    let replica = ReplicaId {
        block: block.id,
        generation: block.generation,
    };
    let answer = read_block_from(cluster.minion_address(holder), replica, block.length_bytes);
    assert!(!matches!(answer, MinionRead::Data(_)), "{answer:?}");
    let failures = |exposition: &Exposition| {
        exposition
            .value("dfs_minion_checksum_failures_total", &[("source", "read")])
            .expect("read failures are counted")
    };
    let after = scrape(&holder_http);
    assert!(
        failures(&after) > failures(&before),
        "checksum failures on read: {} then {}",
        failures(&before),
        failures(&after)
    );
    cluster.wait_for(
        || {
            scrape(&holder_http).sum("dfs_minion_replicas_quarantined_total")
                > before.sum("dfs_minion_replicas_quarantined_total")
        },
        WAIT,
        "the bad replica is quarantined",
    );
    cluster.assert_clean_logs();
}

/// Every minion series the Grafana dashboard queries is one a minion
/// renders; the master's are checked by the master's own tests.
fn check_dashboard(minion: &Exposition) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/grafana/dfs.json"
    ))
    .expect("read deploy/grafana/dfs.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut checked = 0;
    let mut pending = vec![&dashboard];
    while let Some(value) = pending.pop() {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(expr)) = map.get("expr") {
                    let names = expr
                        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .filter(|word| word.starts_with("dfs_minion_"));
                    for name in names {
                        assert!(minion.knows(name), "{name} in {expr:?}");
                        checked += 1;
                    }
                }
                pending.extend(map.values());
            }
            serde_json::Value::Array(items) => pending.extend(items),
            _ => {}
        }
    }
    assert!(checked > 10, "{checked} minion series checked");
}
