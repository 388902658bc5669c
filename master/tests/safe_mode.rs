//! A master restart costs a reader a pause, never a wrong "no replica": a
//! restarted master knows no block locations until the minions report, so
//! it answers lookups of unlocated blocks with `Starting` (safe mode) until
//! the reports are in, and `dfs get` waits. Real processes: the minions are
//! SIGSTOPped across the restart, so their reports are held back for as
//! long as the test wants; a `dfs get` started meanwhile is still waiting a
//! while later and succeeds byte for byte once they go on. Also: a
//! `--dead-after` given alone starts a master (the other timings follow it).

use std::process::Stdio;
use std::time::Duration;

use dfs_testkit::{
    assert_files_equal, binary, read_first_line, utf8, wait_exit, write_random_file, ChildGuard,
    Cluster, ClusterOptions, LISTEN_TIMEOUT,
};

const MIB: u64 = 1 << 20;
/// Long enough that a get answered "no replica" would have failed by then.
const WAITING_PROOF: Duration = Duration::from_millis(1500);
/// Room for the get to finish once the minions report.
const FINISH_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn a_read_during_a_master_restart_waits_for_the_block_reports() {
    let mut cluster = Cluster::start(ClusterOptions::default());
    let local = cluster.dir().join("source");
    write_random_file(&local, 7, 3 * MIB + 5);
    cluster.dfs_ok(["put", "--block-size", "1M", utf8(&local), "/f"]);

    for index in 0..cluster.minion_count() {
        cluster.sigstop_minion(index);
    }
    cluster.kill_master();
    cluster.start_master();

    let copy = cluster.dir().join("copy");
    let mut get = cluster.dfs_command();
    get.args(["get", "/f", utf8(&copy)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut get = get.spawn().expect("start dfs get");
    std::thread::sleep(WAITING_PROOF);
    let early = get.try_wait().expect("poll dfs get");
    if let Some(status) = early {
        let output = get.wait_with_output().expect("read dfs get");
        panic!(
            "dfs get ended ({status}) while the master waited for block reports: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    for index in 0..cluster.minion_count() {
        cluster.sigcont_minion(index);
    }
    let status = wait_exit(&mut get, FINISH_TIMEOUT).expect("dfs get finishes");
    let output = get.wait_with_output().expect("read dfs get");
    assert!(
        status.success(),
        "dfs get after the reports: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_files_equal(&copy, &local);
    cluster.assert_clean_logs();
}

#[test]
fn a_dead_after_alone_starts_a_master_with_timings_that_follow_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = std::process::Command::new(binary("dfs-master"));
    command
        .arg("--data")
        .arg(dir.path().join("master"))
        .args(["--listen", "127.0.0.1:0", "--dead-after", "5s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("start dfs-master");
    let stdout = child.stdout.take().expect("stdout");
    let mut guard = ChildGuard::new("dfs-master", child);
    match read_first_line(stdout, LISTEN_TIMEOUT) {
        Ok(line) => assert!(line.starts_with("listening on "), "{line}"),
        Err(e) => {
            let _ = guard.child().kill();
            let mut stderr = String::new();
            if let Some(mut pipe) = guard.child().stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            panic!("dfs-master --dead-after 5s did not start ({e:?}): {stderr}");
        }
    }
}
