//! A minion with several data directories keeps working when one of them
//! fills up or fails. A full directory (a 4 MiB tmpfs filled to the brim)
//! is not failed: its blocks stay readable and new blocks go to the other
//! directory. A directory unmounted under the running minion (`umount -l`
//! of a tmpfs) is taken out of service and reported, its blocks are copied
//! again from the other minions, and the minion goes on serving and storing
//! with its other directory. A minion whose every directory failed stays up
//! and refuses writes. Proved with a real dfs-master, dfs-minion processes,
//! `dfs put`/`dfs get`, the master's block locations and cluster report,
//! raw protocol requests to the minion, its directories and its log.
//! Needs root to mount; skipped with a note otherwise.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dfs_engine::msg::{
    BlockId, Credentials, ErrorKind, Generation, MinionReport, MinionRequest, MinionResponse,
    MinionState, ReplicaId,
};
use dfs_engine::rpc::Connection;
use dfs_testkit::{
    assert_files_equal, read_block_from, utf8, write_random_file, Cluster, ClusterOptions,
    MinionProcess, MinionRead, TmpfsMount,
};

const MIB: u64 = 1 << 20;
/// Long enough for a loaded machine to notice, report and copy again.
const WAIT: Duration = Duration::from_secs(90);

fn mount_tmpfs(size: &str) -> Option<(tempfile::TempDir, TmpfsMount)> {
    let mount_point = tempfile::tempdir().expect("temp dir");
    match TmpfsMount::mount(mount_point.path(), size) {
        Ok(mount) => Some((mount_point, mount)),
        Err(why) => {
            eprintln!("note: skipping: {why}");
            None
        }
    }
}

fn cluster(minions: usize) -> Cluster {
    Cluster::start(ClusterOptions {
        minions,
        stale_after: Some("10s"),
        dead_after: Some("20s"),
        ..ClusterOptions::default()
    })
}

/// The block ids (`blk_<hex>`) in a data directory's `blocks/`.
fn block_names(dir: &Path) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let Ok(subdirectories) = std::fs::read_dir(dir.join("blocks")) else {
        return names;
    };
    for subdirectory in subdirectories.flatten() {
        for file in std::fs::read_dir(subdirectory.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            names.insert(file.file_name().to_string_lossy().into_owned());
        }
    }
    names
}

fn parse_block(name: &str) -> ReplicaId {
    match dfs_engine::block_format::parse_name(name) {
        Some(dfs_engine::block_format::ParsedName::Replica(replica)) => replica.replica(),
        other => panic!("{name} is no replica's name: {other:?}"),
    }
}

fn put(cluster: &Cluster, name: &str, seed: u64, length_bytes: u64) -> PathBuf {
    let local = cluster.dir().join(name);
    write_random_file(&local, seed, length_bytes);
    cluster.dfs_ok([
        "put",
        "-r",
        "3",
        "--block-size",
        "1M",
        utf8(&local),
        &format!("/{name}"),
    ]);
    local
}

fn get_matches(cluster: &Cluster, name: &str, local: &Path) {
    let copy = cluster.dir().join(format!("{name}.copy"));
    let _ = std::fs::remove_file(&copy);
    cluster.dfs_ok(["get", &format!("/{name}"), utf8(&copy)]);
    assert_files_equal(&copy, local);
}

fn report_of(cluster: &Cluster, address: &str) -> Option<MinionReport> {
    cluster
        .cluster_report()
        .into_iter()
        .find(|report| report.address == address)
}

/// Waits until the minion logged `pattern` at least `count` times.
fn wait_for_log_count(minion: &MinionProcess, pattern: &str, count: usize) {
    let started = std::time::Instant::now();
    while minion.log_text().matches(pattern).count() < count {
        assert!(
            started.elapsed() < WAIT,
            "{pattern:?} not logged {count} times:\n{}",
            minion.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_full_directory_gets_no_new_blocks_and_stays_readable() {
    let Some((full_dir, _mount)) = mount_tmpfs("4m") else {
        return;
    };
    let cluster = cluster(2);
    let log = cluster.dir().join("own-minion.log");
    // First on the small directory alone, so blocks land there.
    let minion = MinionProcess::start(
        cluster.master_address(),
        &[full_dir.path().to_path_buf()],
        "127.0.0.1:0",
        &[],
        &log,
    );
    cluster.wait_for_live_minions(3);
    let before = put(&cluster, "before", 1, 2 * MIB);
    let on_full = block_names(full_dir.path());
    assert_eq!(on_full.len(), 2, "{on_full:?}");
    let address = minion.address().to_string();
    minion.stop();

    // Fill it up, then start again with a roomy directory beside it.
    let mut filler = std::fs::File::create(full_dir.path().join("filler")).expect("filler");
    let chunk = vec![7u8; 64 * 1024];
    let error = loop {
        if let Err(error) = filler.write_all(&chunk).and_then(|()| filler.sync_all()) {
            break error;
        }
    };
    assert_eq!(error.raw_os_error(), Some(libc::ENOSPC), "{error}");
    let roomy_dir = cluster.dir().join("roomy");
    let minion = MinionProcess::start(
        cluster.master_address(),
        &[full_dir.path().to_path_buf(), roomy_dir.clone()],
        &address,
        &[],
        &log,
    );
    wait_for_log_count(&minion, "registered with the master", 2);

    let after = put(&cluster, "after", 2, 8 * MIB);
    for block in cluster.located_blocks("/after") {
        assert!(
            block.locations.iter().any(|l| l.address == address),
            "{} is not on the minion with the full directory: {:?}",
            block.id,
            block.locations
        );
    }
    assert_eq!(
        block_names(full_dir.path()),
        on_full,
        "nothing new in the full one"
    );
    assert_eq!(block_names(&roomy_dir).len(), 8);
    for name in &on_full {
        let block = parse_block(name);
        let located = cluster
            .located_blocks("/before")
            .into_iter()
            .find(|b| b.id == block.block)
            .expect("a block of /before");
        let offset = located.offset_bytes as usize;
        let expected = std::fs::read(&before).expect("read the source")
            [offset..offset + located.length_bytes as usize]
            .to_vec();
        assert_eq!(
            read_block_from(&address, block, located.length_bytes),
            MinionRead::Data(expected),
            "{name} on the full directory"
        );
    }
    get_matches(&cluster, "before", &before);
    get_matches(&cluster, "after", &after);
    assert!(
        !minion.log_text().contains("out of service"),
        "{}",
        minion.log_text()
    );
    minion.assert_clean_log(&[]);
    cluster.assert_clean_logs();
}

#[test]
fn an_unmounted_directory_is_failed_and_its_blocks_are_copied_again() {
    // Roomy enough to take new blocks in turn with the other directory.
    let Some((lost_dir, mount)) = mount_tmpfs("128m") else {
        return;
    };
    let cluster = cluster(3);
    let kept_dir = cluster.dir().join("kept");
    let minion = MinionProcess::start(
        cluster.master_address(),
        &[lost_dir.path().to_path_buf(), kept_dir.clone()],
        "127.0.0.1:0",
        &[],
        &cluster.dir().join("own-minion.log"),
    );
    cluster.wait_for_live_minions(4);
    let files: Vec<(String, PathBuf)> = (0..3)
        .map(|index| {
            let name = format!("file-{index}");
            let local = put(&cluster, &name, 10 + index, 4 * MIB + 99);
            (name, local)
        })
        .collect();
    let lost = block_names(lost_dir.path());
    let kept = block_names(&kept_dir);
    assert!(
        !lost.is_empty() && !kept.is_empty(),
        "blocks in both directories: {lost:?} {kept:?}"
    );

    let unmounted = Command::new("umount")
        .arg("-l")
        .arg(lost_dir.path())
        .status()
        .expect("run umount");
    assert!(unmounted.success(), "umount -l failed");
    // Unmounted already: the guard has nothing left to do.
    std::mem::forget(mount);
    let lost_name = lost_dir.path().display().to_string();
    minion.wait_for_log(&format!("data directory {lost_name} failed"), WAIT);
    minion.wait_for_log("told the master that data directory", WAIT);

    // Every block is back to three replicas; those on the minion are in
    // the directory it kept.
    let address = minion.address().to_string();
    cluster.wait_for(
        || {
            files.iter().all(|(name, _)| {
                cluster
                    .located_blocks(&format!("/{name}"))
                    .iter()
                    .all(|block| {
                        block.locations.len() == 3
                            && block.locations.iter().all(|l| {
                                l.address != address
                                    || block_names(&kept_dir)
                                        .iter()
                                        .any(|n| n.starts_with(&format!("{}_", block.id)))
                            })
                    })
            })
        },
        WAIT,
        "every block back to three replicas, none counted in the lost directory",
    );
    for (name, local) in &files {
        get_matches(&cluster, name, local);
    }
    let report = report_of(&cluster, &address).expect("the minion is still known");
    assert_eq!(report.state, MinionState::Live);
    assert!(
        report
            .failed_directories
            .iter()
            .any(|d| d.contains(&lost_name)),
        "{report:?}"
    );
    // It serves from the directory it kept, and stores there.
    let name = kept.iter().next().expect("a kept block");
    let block = parse_block(name);
    let length_bytes = files
        .iter()
        .flat_map(|(file, _)| cluster.located_blocks(&format!("/{file}")))
        .find(|b| b.id == block.block)
        .expect("a block of a file")
        .length_bytes;
    assert!(matches!(
        read_block_from(&address, block, length_bytes),
        MinionRead::Data(bytes) if bytes.len() as u64 == length_bytes
    ));
    let later = put(&cluster, "later", 20, 3 * MIB);
    get_matches(&cluster, "later", &later);
    assert!(
        !lost_dir.path().join("blocks").exists(),
        "nothing is written where the lost directory was"
    );
    minion.assert_clean_log(&[&format!("data directory {lost_name} failed")]);
    cluster.assert_clean_logs();
}

#[test]
fn a_minion_whose_every_directory_failed_stays_up_and_refuses_writes() {
    let Some((only_dir, mount)) = mount_tmpfs("16m") else {
        return;
    };
    let cluster = cluster(2);
    let mut minion = MinionProcess::start(
        cluster.master_address(),
        &[only_dir.path().to_path_buf()],
        "127.0.0.1:0",
        &[],
        &cluster.dir().join("own-minion.log"),
    );
    cluster.wait_for_live_minions(3);
    let unmounted = Command::new("umount")
        .arg("-l")
        .arg(only_dir.path())
        .status()
        .expect("run umount");
    assert!(unmounted.success(), "umount -l failed");
    // Unmounted already: the guard has nothing left to do.
    std::mem::forget(mount);
    minion.wait_for_log("every data directory failed", WAIT);

    let mut connection = Connection::open(minion.address()).expect("connect");
    let block = BlockId(0xdead);
    let credentials = Credentials::default();
    connection
        .send(
            &credentials,
            MinionRequest::WriteBlock {
                block,
                generation: Generation(1),
                downstream: Vec::new(),
                sync: true,
            },
        )
        .expect("send WriteBlock");
    connection
        .send_data(b"data", crc32c::crc32c(b"data"))
        .expect("send data");
    let answer: MinionResponse = connection
        .call(
            &credentials,
            MinionRequest::SealBlock {
                block,
                length_bytes: 4,
            },
        )
        .expect("an answer");
    let MinionResponse::Sealed { stored, failed } = answer else {
        panic!("expected Sealed, got {answer:?}");
    };
    assert!(stored.is_empty(), "{stored:?}");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].error.kind, ErrorKind::Io);
    assert!(
        failed[0].error.message.contains("every data directory"),
        "{}",
        failed[0].error.message
    );

    // It stays up and heartbeats, with no room: writes go elsewhere.
    let address = minion.address().to_string();
    cluster.wait_for(
        || report_of(&cluster, &address).is_some_and(|r| r.capacity_bytes == 0),
        WAIT,
        "the master to see the minion without capacity",
    );
    let local = put(&cluster, "elsewhere", 3, 2 * MIB);
    get_matches(&cluster, "elsewhere", &local);
    assert!(minion.is_running());
    let report = report_of(&cluster, &address).expect("still known");
    assert_eq!(report.state, MinionState::Live);
    minion.assert_clean_log(&["failed"]);
    cluster.assert_clean_logs();
}
