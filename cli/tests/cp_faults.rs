//! `dfs-cp` when things go wrong, on a real cluster: `kill -9` of dfs-cp in
//! the middle of a copy into a target it made leaves no incomplete file
//! under its final name, and the same command run again finishes the job
//! in the same place, nothing nested; a minion killed mid-copy costs replicas, not
//! files; existing targets are refused, skipped or overwritten as the flags
//! say; failures name the file, the run goes on and the exit status is 1;
//! a device or FIFO target is written in place, never replaced.

mod cp_support;

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use cp_support::{
    assert_cluster_files_match, assert_trees_equal, cluster_files, cluster_files_if_any,
    cluster_names, cp, cp_command, cp_ok, summary_field, MIB,
};
use dfs_testkit::{
    utf8, wait_for, write_random_file, Cluster, ClusterOptions, EXIT_TIMEOUT, LIVE_TIMEOUT,
};

/// `count` files of `length_bytes` each under `root/<i % 10>/file-<i>`.
fn make_many(root: &std::path::Path, count: u64, length_bytes: u64) {
    for index in 0..count {
        let path = root.join(format!("{}/file-{index:04}", index % 10));
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        write_random_file(&path, 1000 + index, length_bytes);
    }
}

/// Asserts every file visible under `/target/many` in the cluster that is
/// not a temporary name holds exactly the bytes of its source.
fn assert_visible_files_complete(cluster: &Cluster, source: &std::path::Path) -> usize {
    assert_cluster_files_match(cluster, "/target/many", source)
}

#[test]
fn a_killed_copy_leaves_only_complete_files_and_a_rerun_finishes_it() {
    let cluster = Cluster::start(ClusterOptions::default());
    let source = cluster.dir().join("many");
    make_many(&source, 150, 96 * 1024);
    // `/target` does not exist: the first run makes it, so the rerun finds
    // it there and must still copy into `/target/many`, not nest.
    let command = ["-q", "-j", "2", utf8(&source), "dfs:///target"];

    let mut child = cp_command(&cluster)
        .args(command)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dfs-cp");
    wait_for(
        || cluster_files_if_any(&cluster, "/target").len() >= 20,
        LIVE_TIMEOUT,
        "dfs-cp to make some files visible",
    );
    let _ = child.kill(); // SIGKILL
    let status = child.wait().expect("reap dfs-cp");
    assert!(!status.success(), "dfs-cp was killed before it finished");

    let complete_before = assert_visible_files_complete(&cluster, &source);
    assert!(
        complete_before < 150,
        "the copy was cut short ({complete_before} complete)"
    );

    // The same command again finishes the job and removes leftovers.
    let json = cp_ok(&cluster, std::iter::once("--json").chain(command));
    assert_eq!(summary_field(&json, "failed"), 0.0, "{json}");
    assert_eq!(
        summary_field(&json, "files") + summary_field(&json, "skipped"),
        150.0,
        "{json}"
    );
    assert!(
        summary_field(&json, "skipped") >= complete_before as f64,
        "{json}"
    );
    assert_eq!(assert_visible_files_complete(&cluster, &source), 150);

    // Exactly the source tree, at `/target/many`: nothing beside it, nothing
    // nested in it, no temporary file.
    assert_eq!(cluster_names(&cluster, "/target"), vec!["many".to_string()]);
    let mut expected: Vec<(String, u64)> = (0..150)
        .map(|index| (format!("many/{}/file-{index:04}", index % 10), 96 * 1024))
        .collect();
    expected.sort();
    assert_eq!(cluster_files(&cluster, "/target"), expected);
    let directories: Vec<String> = (0..10).map(|index| index.to_string()).collect();
    assert_eq!(cluster_names(&cluster, "/target/many"), directories);
}

#[test]
fn a_minion_killed_mid_copy_costs_replicas_not_files() {
    let mut cluster = Cluster::start(ClusterOptions {
        stale_after: Some("10s"),
        ..ClusterOptions::default()
    });
    cluster.allow_error("connection");
    cluster.allow_error("broken pipe");
    cluster.allow_error("reset");
    let source = cluster.dir().join("many");
    make_many(&source, 120, 128 * 1024);
    // Last in the walk, so written after the kill, block by block in parallel.
    write_random_file(&source.join("9/zz-large"), 7, 12 * MIB + 5);
    cluster.dfs_ok(["mkdir", "/target"]);

    let mut child = cp_command(&cluster)
        .args([
            "-q",
            "-j",
            "2",
            "--block-size",
            "1M",
            utf8(&source),
            "dfs:///target",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dfs-cp");
    wait_for(
        || cluster_files(&cluster, "/target").len() >= 10,
        LIVE_TIMEOUT,
        "dfs-cp to make some files visible",
    );
    assert!(
        child.try_wait().expect("poll").is_none(),
        "the copy is still running"
    );
    cluster.kill_minion(0);
    let status = dfs_testkit::wait_exit(&mut child, EXIT_TIMEOUT * 3).expect("dfs-cp ends");
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        use std::io::Read;
        let _ = pipe.read_to_string(&mut stderr);
    }
    assert!(status.success(), "dfs-cp failed: {status}\n{stderr}");

    let back = cluster.dir().join("back");
    cp_ok(&cluster, ["-q", "dfs:///target/many/", utf8(&back)]);
    assert_trees_equal(&back, &source);
    let under_replicated = cluster_files(&cluster, "/target/many")
        .into_iter()
        .filter(|(name, _)| {
            cluster
                .stat(&format!("/target/many/{name}"))
                .blocks
                .iter()
                .any(|block| block.replicas < 3)
        })
        .count();
    assert!(
        under_replicated > 0,
        "files written after the kill have fewer replicas"
    );
}

#[test]
fn existing_targets_failures_and_exit_codes() {
    let cluster = Cluster::start(ClusterOptions::default());
    let dir = cluster.dir().join("files");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let first = dir.join("first");
    let second = dir.join("second");
    write_random_file(&first, 1, 5000);
    write_random_file(&second, 2, 6000);
    cp_ok(&cluster, ["-q", utf8(&first), "dfs:///first"]);

    // Same content: skipped, exit 0.
    let json = cp_ok(&cluster, ["--json", "-q", utf8(&first), "dfs:///first"]);
    assert_eq!(summary_field(&json, "skipped"), 1.0, "{json}");

    // Different content without --force: refused, named, exit 1.
    let output = cp(&cluster, ["-q", utf8(&second), "dfs:///first"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "dfs-cp: {}: dfs://{}/first: exists; use --force or --update",
            utf8(&second),
            cluster.master_address()
        )),
        "{stderr}"
    );

    // --force and --update overwrite.
    cp_ok(&cluster, ["-q", "-f", utf8(&second), "dfs:///first"]);
    assert_eq!(cluster.stat("/first").size_bytes(), 6000);
    cp_ok(&cluster, ["-q", "-u", utf8(&first), "dfs:///first"]);
    assert_eq!(cluster.stat("/first").size_bytes(), 5000);

    // One unreadable or missing source fails alone; the others are copied.
    let unreadable = dir.join("unreadable");
    write_random_file(&unreadable, 3, 10);
    std::fs::set_permissions(&unreadable, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    let running_as_root = std::fs::File::open(&unreadable).is_ok();
    let missing = dir.join("missing");
    let output = cp(
        &cluster,
        [
            "-q",
            "--json",
            utf8(&missing),
            utf8(&second),
            utf8(&unreadable),
            "dfs:///many/",
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "dfs-cp: {}: no such file or directory",
            utf8(&missing)
        )),
        "{stderr}"
    );
    if !running_as_root {
        assert!(
            stderr.contains(&format!("dfs-cp: {}: ", utf8(&unreadable))),
            "{stderr}"
        );
    }
    assert_eq!(cluster.stat("/many/second").size_bytes(), 6000);

    // A file where a directory is needed; a master that is not there.
    let output = cp(
        &cluster,
        ["-q", utf8(&first), utf8(&second), "dfs:///first"],
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/first: exists and is not a directory"),
        "{stderr}"
    );
    let output = std::process::Command::new(dfs_testkit::binary("dfs-cp"))
        .args(["--master", "127.0.0.1:1", "-q", utf8(&first), "dfs:///x"])
        .output()
        .expect("run dfs-cp");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("connect to the master at 127.0.0.1:1"),
        "{stderr}"
    );

    // --fail-fast: the first failure ends the run; later files are not copied.
    cluster.dfs_ok(["mkdir", "/ff"]);
    cp_ok(&cluster, ["-q", utf8(&first), "dfs:///ff/second"]);
    let output = cp(
        &cluster,
        [
            "-q",
            "-j",
            "1",
            "--fail-fast",
            utf8(&second),
            utf8(&first),
            "dfs:///ff/",
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(cluster.dfs(["stat", "/ff/first"]).status.code(), Some(1));

    // Usage errors exit 2.
    let output = cp(&cluster, ["only-one-path"]);
    assert_eq!(output.status.code(), Some(2));
}

/// A FIFO at `path` and a thread that reads everything written to it.
fn fifo_reader(path: &std::path::Path) -> std::thread::JoinHandle<Vec<u8>> {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo {}", path.display());
    let path = path.to_path_buf();
    std::thread::spawn(move || std::fs::read(&path).expect("read the FIFO"))
}

#[test]
fn devices_and_fifos_are_written_in_place_never_replaced() {
    use std::os::unix::fs::FileTypeExt;
    let cluster = Cluster::start(ClusterOptions::default());
    let source = cluster.dir().join("source");
    write_random_file(&source, 11, 300_000);
    cp_ok(&cluster, ["-q", utf8(&source), "dfs:///f"]);
    let expected = std::fs::read(&source).expect("read the source");
    let fifo = cluster.dir().join("fifo");
    // `dfs get` and `dfs-cp` (which would refuse or replace a regular file
    // that exists) both write into the FIFO; it stays a FIFO.
    for (number, tool) in ["get", "cp"].into_iter().enumerate() {
        let reader = fifo_reader(&fifo);
        match tool {
            "get" => {
                cluster.dfs_ok(["get", "/f", utf8(&fifo)]);
            }
            _ => {
                cp_ok(&cluster, ["-q", "dfs:///f", utf8(&fifo)]);
            }
        }
        // Checked first: a replaced FIFO leaves its reader waiting forever.
        let kind = std::fs::symlink_metadata(&fifo).expect("stat").file_type();
        assert!(kind.is_fifo(), "{tool} replaced the FIFO ({number})");
        let received = reader.join().expect("reader thread");
        assert!(received == expected, "{tool}: {} bytes", received.len());
        std::fs::remove_file(&fifo).expect("remove the FIFO");
    }
}
