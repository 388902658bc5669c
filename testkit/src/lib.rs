//! The shared test-kit of the integration suites: it runs the real
//! `dfs-master`, `dfs-minion` and `dfs` binaries on 127.0.0.1 with temporary
//! directories, waits on conditions (never on fixed sleeps), and fails a test
//! whose daemons logged an unexpected ERROR line or crashed.
//!
//! Everything here panics with a clear message instead of returning errors:
//! it only ever runs inside tests.

pub mod bad_wire;
mod cluster;
mod data;
mod mount;
mod process;
mod stat;

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use cluster::{Cluster, ClusterOptions};
pub use data::{
    assert_bytes_equal, assert_file_matches, assert_files_equal, random_bytes, write_random_file,
    RandomReader,
};
pub use mount::TmpfsMount;
pub use process::{
    accepts_connections, expect_failure_line, expect_success, processes_mentioning,
    read_first_line, run, send_signal, wait_exit, ChildGuard, FirstLineError, Signal,
};
pub use stat::{Stat, StatBlock};

/// How long a daemon may take to print its `listening on` line.
pub const LISTEN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one `dfs` command may run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long minions may take to (re)register and show as live.
pub const LIVE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a signalled process may take to exit.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
/// How often `wait_for` evaluates its condition.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The path of a workspace binary (`dfs-master`, `dfs-minion`, `dfs`) in the
/// cargo target directory this test was built into.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("find the running test executable");
    // Tests live in target/<profile>/deps/; binaries in target/<profile>/.
    let mut dir = exe
        .parent()
        .expect("test executable has a parent directory")
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    let path = dir.join(name);
    if !path.is_file() {
        panic!(
            "{} not found: build the workspace binaries first: cargo build --workspace --bins",
            path.display()
        );
    }
    path
}

/// A temporary path as text, for command arguments.
pub fn utf8(path: &std::path::Path) -> &str {
    path.to_str()
        .unwrap_or_else(|| panic!("{} is not valid UTF-8", path.display()))
}

/// Polls `condition` until it holds; panics naming `what` after `timeout`.
pub fn wait_for(mut condition: impl FnMut() -> bool, timeout: Duration, what: &str) {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}
