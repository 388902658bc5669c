//! The master's minion registry: minions that start register and show in
//! `dfs df`; a heartbeat from a minion it never registered is refused with
//! UnknownMinion; a second minion with a live minion's id is refused (as a
//! process with a copied data directory, and as a raw Register request) and
//! the original keeps its place; a minion that falls silent (SIGSTOP) turns
//! stale, is read last and gets no new blocks, and is live again once it
//! speaks (SIGCONT). Real processes and raw protocol requests.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dfs_engine::msg::{ErrorKind, MasterRequest, MasterResponse, MinionId, MinionState};
use dfs_testkit::{
    assert_files_equal, binary, utf8, wait_for, write_random_file, ChildGuard, Cluster,
    ClusterOptions, LIVE_TIMEOUT,
};

const MIB: u64 = 1 << 20;

/// Parses "capacity: <bytes> (<human>)" style lines of `dfs df`.
fn df_bytes(df: &str, key: &str) -> u64 {
    let line = df
        .lines()
        .find(|line| line.starts_with(&format!("{key}:")))
        .unwrap_or_else(|| panic!("dfs df has no '{key}:' line:\n{df}"));
    let value = line[key.len() + 1..].trim();
    let (number, human) = value
        .split_once(' ')
        .unwrap_or_else(|| panic!("'{line}' should be '{key}: <bytes> (<human>)'"));
    assert!(
        human.starts_with('(') && human.ends_with(')'),
        "'{line}' should be '{key}: <bytes> (<human>)'"
    );
    number
        .parse()
        .unwrap_or_else(|_| panic!("'{line}': {number:?} is not a byte count"))
}

#[test]
fn minions_register_and_appear_in_df() {
    let cluster = Cluster::start(ClusterOptions::default());
    let report = cluster.cluster_report();
    assert_eq!(report.len(), 3, "{report:?}");
    let mut reported: Vec<&str> = report.iter().map(|m| m.address.as_str()).collect();
    reported.sort_unstable();
    let mut started: Vec<&str> = (0..3).map(|i| cluster.minion_address(i)).collect();
    started.sort_unstable();
    assert_eq!(
        reported, started,
        "the master knows the minions by their addresses"
    );
    for minion in &report {
        assert_eq!(minion.state, MinionState::Live, "{minion:?}");
        assert!(minion.capacity_bytes > 0, "{minion:?}");
        assert!(
            minion.available_bytes <= minion.capacity_bytes,
            "{minion:?}"
        );
    }

    let df = cluster.dfs_ok(["df"]);
    let capacity = df_bytes(&df, "capacity");
    let used = df_bytes(&df, "used");
    let available = df_bytes(&df, "available");
    assert!(capacity > 0, "{df}");
    assert!(used <= capacity && available <= capacity, "{df}");
    let lines: Vec<&str> = df.lines().collect();
    let minions_line = lines
        .iter()
        .position(|line| line.starts_with("minions:"))
        .unwrap_or_else(|| panic!("dfs df has no 'minions:' line:\n{df}"));
    assert_eq!(
        lines[minions_line], "minions: 3 live, 0 stale, 0 dead",
        "{df}"
    );
    // Then a blank line, a header and one line per minion.
    let table = &lines[minions_line + 1..];
    assert!(
        table.len() == 5 && table[0].is_empty() && !table[1].is_empty(),
        "after 'minions:' dfs df should print a blank line, a header and 3 minion lines:\n{df}"
    );
    for address in started {
        assert_eq!(
            table[2..]
                .iter()
                .filter(|line| line.contains(address))
                .count(),
            1,
            "dfs df should list {address} once:\n{df}"
        );
    }
}

#[test]
fn a_heartbeat_from_an_unknown_minion_is_refused() {
    let cluster = Cluster::start(ClusterOptions::default());
    let known: Vec<MinionId> = cluster.cluster_report().iter().map(|m| m.id).collect();
    let stranger = MinionId(0x5eed_0000_0000_0001);
    assert!(!known.contains(&stranger));
    let response = cluster
        .master_call(MasterRequest::Heartbeat {
            minion: stranger,
            capacity_bytes: 1 << 30,
            used_bytes: 0,
            available_bytes: 1 << 30,
            block_count: 0,
            traffic: Default::default(),
        })
        .expect("the master answers");
    match response {
        MasterResponse::Error(error) => {
            assert_eq!(error.kind, ErrorKind::UnknownMinion, "{error:?}")
        }
        other => panic!("a heartbeat from an unknown minion got {other:?}"),
    }
    assert_eq!(
        cluster.cluster_report().len(),
        3,
        "the stranger was not added"
    );
}

fn copy_dir(source: &Path, target: &Path) {
    std::fs::create_dir_all(target).expect("create copy directory");
    for entry in std::fs::read_dir(source).expect("read directory") {
        let entry = entry.expect("directory entry");
        let to = target.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).expect("copy file");
        }
    }
}

/// How long the registry is watched for a duplicate that should never
/// appear: fifteen heartbeat intervals.
const WATCH: Duration = Duration::from_secs(3);

#[test]
fn a_second_minion_with_a_live_minions_id_is_refused() {
    let cluster = Cluster::start(ClusterOptions::default());
    let before = cluster.cluster_report();
    let original = before
        .iter()
        .find(|m| m.address == cluster.minion_address(0))
        .expect("minion 0 is registered")
        .clone();

    // A process whose data directory is a copy of minion 0's: same id.
    let copy = cluster.dir().join("minion-copy");
    copy_dir(cluster.minion_data_dir(0), &copy);
    let log = std::fs::File::create(cluster.dir().join("minion-copy.log")).expect("log");
    let child = Command::new(binary("dfs-minion"))
        .args(["--master", cluster.master_address(), "--data", utf8(&copy)])
        .args(["--listen", "127.0.0.1:0", "--heartbeat-interval", "200ms"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn the copied minion");
    let mut duplicate = ChildGuard::new("copied minion", child);

    let deadline = Instant::now() + WATCH;
    let mut exit = None;
    while Instant::now() < deadline {
        let report = cluster.cluster_report();
        assert_eq!(report.len(), 3, "the copy was added: {report:?}");
        let entry = report
            .iter()
            .find(|m| m.id == original.id)
            .expect("minion 0 stays registered");
        assert_eq!(
            entry.address, original.address,
            "the copy took over minion 0's registration"
        );
        if exit.is_none() {
            exit = duplicate.try_status();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some(status) = exit {
        assert!(!status.success(), "the refused copy exited with status 0");
    }
    drop(duplicate);
    assert!(
        cluster
            .dfs_ok(["df"])
            .contains("minions: 3 live, 0 stale, 0 dead"),
        "dfs df after the copy"
    );

    // The same at the protocol level. A Register needs the cluster id: a
    // brand-new minion (no cluster yet) learns it.
    let cluster_id = match cluster
        .master_call(MasterRequest::Register {
            minion: MinionId(0x5eed_0000_0000_0002),
            cluster: None,
            address: "127.0.0.1:9".into(),
            capacity_bytes: 1 << 30,
            used_bytes: 0,
            available_bytes: 1 << 30,
        })
        .expect("the master answers")
    {
        MasterResponse::Registered { cluster, .. } => cluster,
        other => panic!("a first Register got {other:?}"),
    };
    let response = cluster
        .master_call(MasterRequest::Register {
            minion: original.id,
            cluster: Some(cluster_id),
            address: "127.0.0.1:10".into(),
            capacity_bytes: 1 << 30,
            used_bytes: 0,
            available_bytes: 1 << 30,
        })
        .expect("the master answers");
    match response {
        MasterResponse::Error(error) => {
            assert_eq!(error.kind, ErrorKind::DuplicateMinion, "{error:?}")
        }
        other => panic!("a Register with a live minion's id got {other:?}"),
    }
    let entry = cluster
        .cluster_report()
        .into_iter()
        .find(|m| m.id == original.id)
        .expect("minion 0 stays registered");
    assert_eq!(entry.address, original.address);
    assert_eq!(entry.state, MinionState::Live);
}

#[test]
fn a_silent_minion_goes_stale_gets_no_new_blocks_and_returns_when_it_speaks() {
    let cluster = Cluster::start(ClusterOptions {
        stale_after: Some("1s"),
        ..ClusterOptions::default()
    });
    let local = cluster.dir().join("source");
    write_random_file(&local, 1, 2 * MIB + 1);
    cluster.dfs_ok(["put", "--block-size", "1M", utf8(&local), "/before"]);
    let frozen_address = cluster.minion_address(0).to_string();
    let state_of_frozen = || {
        cluster
            .cluster_report()
            .into_iter()
            .find(|m| m.address == frozen_address)
            .map(|m| m.state)
    };

    cluster.sigstop_minion(0);
    wait_for(
        || state_of_frozen() == Some(MinionState::Stale),
        LIVE_TIMEOUT,
        "the stopped minion to be reported stale",
    );
    assert!(
        cluster
            .dfs_ok(["df"])
            .contains("minions: 2 live, 1 stale, 0 dead"),
        "dfs df while minion 0 is stopped"
    );

    // Stale minions are tried last for reads: the frozen one (which would
    // accept a connection and never answer) does not stall the read.
    let copy = cluster.dir().join("copy");
    cluster.dfs_ok(["get", "/before", utf8(&copy)]);
    assert_files_equal(&copy, &local);

    // And they are not chosen for new blocks.
    cluster.dfs_ok(["put", "--block-size", "1M", utf8(&local), "/during"]);
    let stat = cluster.stat("/during");
    for block in &stat.blocks {
        assert!(
            !block.minion_addresses().contains(&frozen_address.as_str()),
            "block {} was placed on the stale minion: {:?}",
            block.index,
            block.minions
        );
        assert_eq!((block.replicas, block.replication), (2, 3));
    }

    cluster.sigcont_minion(0);
    wait_for(
        || state_of_frozen() == Some(MinionState::Live),
        LIVE_TIMEOUT,
        "the resumed minion to be live again",
    );
    cluster.wait_for_live_minions(3);
}
