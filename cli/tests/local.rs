//! `dfs local` runs a working cluster (master and minions as its children),
//! announces it with one `DFS_MASTER=host:port` line, and on SIGINT or
//! SIGTERM stops every child and exits 0: proved by a put/get through it,
//! then by checking that no port of the cluster accepts connections and that
//! no process mentioning its directory is left.

use std::process::{Command, Stdio};
use std::time::Duration;

use dfs_engine::msg::{Credentials, MasterRequest, MasterResponse, MinionState};
use dfs_engine::rpc::Connection;
use dfs_testkit::{
    accepts_connections, assert_files_equal, binary, expect_success, processes_mentioning,
    read_first_line, run, send_signal, utf8, write_random_file, ChildGuard, Signal,
    COMMAND_TIMEOUT,
};

/// Kills whatever still mentions the cluster directory, so a failed test
/// leaves no daemons behind.
struct Leftovers(String);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for (pid, _) in processes_mentioning(&self.0) {
            // It may have exited meanwhile; nothing to do then.
            let _ = send_signal(pid, Signal::Kill);
        }
    }
}

fn log_problems(dir: &std::path::Path, stderr_path: &std::path::Path) -> Vec<String> {
    let mut paths = vec![stderr_path.to_path_buf()];
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "log") {
                paths.push(path);
            }
        }
    }
    let mut problems = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for line in text.lines() {
            if line.contains(" ERROR ") || line.contains("panicked at") {
                problems.push(format!("{}: {line}", path.display()));
            }
        }
    }
    problems
}

/// `dfs local --dir DIR ARGS`, its standard error to `stderr_path`.
fn spawn_local(dir: &std::path::Path, stderr_path: &std::path::Path, args: &[&str]) -> ChildGuard {
    let child = Command::new(binary("dfs"))
        .env_remove("DFS_MASTER")
        .args(["local", "--dir", utf8(dir)])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(stderr_path).expect("create stderr file"))
        .spawn()
        .expect("spawn dfs local");
    ChildGuard::new("dfs local", child)
}

#[test]
fn local_cluster_serves_and_stops_cleanly_on_sigint() {
    check_local_cluster(Signal::Interrupt);
}

#[test]
fn local_cluster_serves_and_stops_cleanly_on_sigterm() {
    check_local_cluster(Signal::Terminate);
}

fn check_local_cluster(stop: Signal) {
    let work = tempfile::tempdir().expect("temp dir");
    let cluster_dir = work.path().join("cluster");
    let stderr_path = work.path().join("local.stderr");
    let _leftovers = Leftovers(utf8(&cluster_dir).to_string());

    let mut local = spawn_local(&cluster_dir, &stderr_path, &["--minions", "3"]);
    let stdout = local.child().stdout.take().expect("stdout is piped");
    let line = read_first_line(stdout, Duration::from_secs(60)).unwrap_or_else(|e| {
        panic!(
            "dfs local printed no line ({e:?}); stderr:\n{}",
            std::fs::read_to_string(&stderr_path).unwrap_or_default()
        )
    });
    let master = line
        .strip_prefix("DFS_MASTER=")
        .unwrap_or_else(|| panic!("first line should be DFS_MASTER=host:port, got {line:?}"))
        .to_string();

    // "Once all minions registered": all three are live right away.
    let mut connection = Connection::open(&master).expect("connect to the local master");
    let minions = match connection
        .call::<_, MasterResponse>(&Credentials::default(), MasterRequest::ClusterReport)
        .expect("cluster report")
    {
        MasterResponse::Cluster { minions, .. } => minions,
        other => panic!("ClusterReport answered {other:?}"),
    };
    drop(connection);
    assert_eq!(minions.len(), 3, "{minions:?}");
    assert!(
        minions.iter().all(|m| m.state == MinionState::Live),
        "{minions:?}"
    );

    // Through DFS_MASTER, as a user of `dfs local` would.
    let source = work.path().join("source");
    let copy = work.path().join("copy");
    write_random_file(&source, 11, 3 * 1024 * 1024 + 17);
    for args in [
        vec!["put", "--block-size", "1M", utf8(&source), "/file"],
        vec!["get", "/file", utf8(&copy)],
    ] {
        let mut command = Command::new(binary("dfs"));
        command.env("DFS_MASTER", &master).args(&args);
        let output = run(&mut command, None, COMMAND_TIMEOUT);
        expect_success(&output, &format!("dfs {}", args.join(" ")));
    }
    assert_files_equal(&copy, &source);

    local.signal(stop);
    let status = local.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "dfs local after {stop:?}: {status}");

    assert!(
        !accepts_connections(&master),
        "the master at {master} still accepts connections"
    );
    for minion in &minions {
        assert!(
            !accepts_connections(&minion.address),
            "minion {} still accepts connections",
            minion.address
        );
    }
    let left = processes_mentioning(utf8(&cluster_dir));
    assert!(left.is_empty(), "processes left behind: {left:?}");
    let problems = log_problems(&cluster_dir, &stderr_path);
    assert!(
        problems.is_empty(),
        "unexpected log lines:\n{}",
        problems.join("\n")
    );
}

/// `dfs local --tls-data`: a keyed cluster whose block data travels over
/// TLS; it prints the identity clients prove after the master's address,
/// serves a client that proves it and refuses one that does not.
#[test]
fn a_local_cluster_with_tls_data_serves_clients_with_its_identity() {
    use std::io::BufRead;
    let work = tempfile::tempdir().expect("temp dir");
    let cluster_dir = work.path().join("cluster");
    let stderr_path = work.path().join("local.stderr");
    let _leftovers = Leftovers(utf8(&cluster_dir).to_string());
    let mut local = spawn_local(
        &cluster_dir,
        &stderr_path,
        &["--minions", "2", "--tls-data"],
    );
    let stdout = local.child().stdout.take().expect("stdout is piped");
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let lines: Vec<String> = std::io::BufReader::new(stdout)
            .lines()
            .take(2)
            .map_while(Result::ok)
            .collect();
        let _ = sender.send(lines);
    });
    let lines = lines
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|e| {
            panic!(
                "dfs local printed no lines ({e:?}); stderr:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            )
        });
    let [master, identity] = [("DFS_MASTER=", 0), ("DFS_IDENTITY=", 1)].map(|(prefix, index)| {
        lines
            .get(index)
            .and_then(|line| line.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("line {index} should start with {prefix}: {lines:?}"))
            .to_string()
    });
    let source = work.path().join("source");
    let copy = work.path().join("copy");
    write_random_file(&source, 12, 2 * 1024 * 1024 + 5);
    for args in [
        vec![
            "put",
            "-r",
            "2",
            "--block-size",
            "1M",
            utf8(&source),
            "/file",
        ],
        vec!["get", "/file", utf8(&copy)],
    ] {
        let mut command = Command::new(binary("dfs"));
        command
            .env("DFS_MASTER", &master)
            .env("DFS_IDENTITY", &identity)
            .args(&args);
        let output = run(&mut command, None, COMMAND_TIMEOUT);
        expect_success(&output, &format!("dfs {}", args.join(" ")));
    }
    assert_files_equal(&copy, &source);
    // Small files travel in batches (WriteBlocks), over TLS as well.
    let small = work.path().join("small");
    std::fs::create_dir(&small).expect("mkdir");
    for index in 0..40u64 {
        write_random_file(&small.join(format!("f{index}")), 100 + index, 1000 + index);
    }
    let mut cp = Command::new(binary("dfs-cp"));
    cp.env("DFS_MASTER", &master)
        .env("DFS_IDENTITY", &identity)
        .args(["-q", utf8(&small), "dfs:///small"]);
    expect_success(
        &run(&mut cp, None, COMMAND_TIMEOUT),
        "dfs-cp of small files",
    );
    let back = work.path().join("back");
    let mut get = Command::new(binary("dfs"));
    get.env("DFS_MASTER", &master)
        .env("DFS_IDENTITY", &identity)
        .args(["get", "/small/small/f39", utf8(&back)]);
    expect_success(
        &run(&mut get, None, COMMAND_TIMEOUT),
        "dfs get of a small file",
    );
    assert_files_equal(&back, &small.join("f39"));
    let mut anonymous = Command::new(binary("dfs"));
    anonymous
        .env("DFS_MASTER", &master)
        .env("DFS_IDENTITY", "none")
        .args(["ls", "/"]);
    let refused = run(&mut anonymous, None, COMMAND_TIMEOUT);
    assert!(!refused.status.success(), "an anonymous client was served");
    local.signal(Signal::Interrupt);
    let status = local.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "dfs local after SIGINT: {status}");
    let problems = log_problems(&cluster_dir, &stderr_path);
    assert!(
        problems.is_empty(),
        "unexpected log lines:\n{}",
        problems.join("\n")
    );
}
