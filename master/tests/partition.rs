//! A network partition: one of four minions runs in its own network
//! namespace, joined to the others by a veth pair, and its side of the link
//! goes down. The master marks it dead and brings every block back to three
//! replicas on the others; reads and new writes go on; when the link comes
//! back the minion rejoins and the surplus copies are removed. Every file
//! reads back byte for byte throughout. Needs root and `ip netns`; skipped
//! with a printed reason otherwise.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use dfs_engine::msg::{MinionReport, MinionState};
use dfs_testkit::{
    assert_files_equal, binary, read_first_line, utf8, write_random_file, ChildGuard, Cluster,
    ClusterOptions, NetworkNamespace, LISTEN_TIMEOUT,
};

const MIB: u64 = 1 << 20;
/// Long enough for the healing of a loaded 2-core machine.
const HEAL_TIMEOUT: Duration = Duration::from_secs(90);

fn report_of<'a>(reports: &'a [MinionReport], address: &str) -> Option<&'a MinionReport> {
    reports.iter().find(|m| m.address == address)
}

#[test]
fn a_partitioned_minion_is_healed_around_and_rejoins() {
    let namespace = match NetworkNamespace::create() {
        Ok(namespace) => namespace,
        Err(reason) => {
            println!("skipped: {reason}");
            return;
        }
    };
    let mut cluster = Cluster::start(ClusterOptions {
        minions: 3,
        listen_host: namespace.host_ip().to_string(),
        dead_after: Some("8s"),
        ..ClusterOptions::default()
    });
    // The fourth minion, inside the namespace.
    let data: PathBuf = cluster.dir().join("minion-inside");
    std::fs::create_dir_all(&data).expect("mkdir");
    let mut child = Command::new("ip")
        .args(["netns", "exec", namespace.name()])
        .arg(binary("dfs-minion"))
        .args(["--master", cluster.master_address()])
        .args([
            "--listen",
            &format!("{}:0", namespace.inside_ip()),
            "--insecure",
        ])
        .args(["--heartbeat-interval", "200ms", "--data"])
        .arg(&data)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(cluster.dir().join("minion-inside.log")).expect("log file"))
        .spawn()
        .expect("start the minion inside the namespace");
    let stdout = child.stdout.take().expect("piped");
    let inside = ChildGuard::new("minion-inside", child);
    let line = read_first_line(stdout, LISTEN_TIMEOUT).expect("listening line");
    let inside_address = line
        .strip_prefix("listening on ")
        .expect("listening on HOST:PORT")
        .trim()
        .to_string();
    cluster.wait_for_live_minions(4);

    // Files until the partitioned minion holds some replicas.
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for index in 0..20u64 {
        let local = cluster.dir().join(format!("source-{index}"));
        write_random_file(&local, index, 2 * MIB + index * 1000);
        let remote = format!("/p{index}");
        cluster.dfs_ok(["put", "--block-size", "1M", utf8(&local), &remote]);
        files.push((remote, local));
        let held = files.iter().any(|(remote, _)| {
            cluster
                .located_blocks(remote)
                .iter()
                .any(|block| block.locations.iter().any(|l| l.address == inside_address))
        });
        if held && index >= 3 {
            break;
        }
    }

    namespace.cut();
    cluster.wait_for(
        || {
            report_of(&cluster.cluster_report(), &inside_address)
                .is_some_and(|m| m.state == MinionState::Dead)
        },
        HEAL_TIMEOUT,
        "the partitioned minion to be declared dead",
    );
    // A write during the partition lands on the reachable minions.
    let during = cluster.dir().join("during");
    write_random_file(&during, 99, MIB + 17);
    cluster.dfs_ok(["put", "--block-size", "1M", utf8(&during), "/during"]);
    files.push(("/during".into(), during));
    let fully_replicated_without_it = |cluster: &Cluster| {
        files.iter().all(|(remote, _)| {
            cluster.located_blocks(remote).iter().all(|block| {
                block.locations.len() == 3
                    && block.locations.iter().all(|l| l.address != inside_address)
            })
        })
    };
    cluster.wait_for(
        || fully_replicated_without_it(&cluster),
        HEAL_TIMEOUT,
        "every block back to three replicas on the reachable minions",
    );
    for (index, (remote, local)) in files.iter().enumerate() {
        let copy = cluster.dir().join(format!("during-copy-{index}"));
        cluster.dfs_ok(["get", remote, utf8(&copy)]);
        assert_files_equal(&copy, local);
    }

    // The link comes back: the minion rejoins and its surplus copies go.
    namespace.heal();
    cluster.wait_for_live_minions(4);
    cluster.wait_for(
        || {
            let exact = files.iter().all(|(remote, _)| {
                cluster
                    .located_blocks(remote)
                    .iter()
                    .all(|block| block.locations.len() == 3)
            });
            let held = report_of(&cluster.cluster_report(), &inside_address)
                .map_or(u64::MAX, |m| m.block_count);
            exact && held == count_block_files(&data)
        },
        HEAL_TIMEOUT,
        "exactly three replicas of every block, and the rejoined minion's disk matching its report",
    );
    for (index, (remote, local)) in files.iter().enumerate() {
        let copy = cluster.dir().join(format!("after-copy-{index}"));
        cluster.dfs_ok(["get", remote, utf8(&copy)]);
        assert_files_equal(&copy, local);
    }
    inside.signal(dfs_testkit::Signal::Interrupt);
    drop(inside);
    cluster.stop_master_gracefully();
}

/// Block files under a minion data directory's `blocks/`.
fn count_block_files(data: &std::path::Path) -> u64 {
    let mut count = 0;
    let Ok(subdirs) = std::fs::read_dir(data.join("blocks")) else {
        return 0;
    };
    for subdir in subdirs.flatten() {
        if let Ok(entries) = std::fs::read_dir(subdir.path()) {
            count += entries.count() as u64;
        }
    }
    count
}
