//! What the durability suites share: a real `dfs-master` process started
//! with extra flags and an armed failpoint, raw protocol calls, and a view
//! of a directory's entries to compare against a model.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use dfs_engine::msg::{
    Credentials, EntryKind, MasterRequest, MasterResponse, MinionId, RemoteError,
};
use dfs_engine::rpc::Connection;
use dfs_testkit::{
    binary, read_first_line, run, ChildGuard, FirstLineError, Signal, EXIT_TIMEOUT, LISTEN_TIMEOUT,
};

/// Log lines that fail a test unless it expects them.
const BAD_LOG_MARKERS: [&str; 2] = [" ERROR ", "panicked at"];

/// A master's data directory and log, restartable with different flags.
pub struct MasterDir {
    pub root: tempfile::TempDir,
}

impl MasterDir {
    pub fn new() -> MasterDir {
        MasterDir {
            root: tempfile::Builder::new()
                .prefix("dfs-durability-")
                .tempdir()
                .expect("create a temporary directory"),
        }
    }

    pub fn data(&self) -> PathBuf {
        self.root.path().join("master")
    }

    pub fn log(&self) -> PathBuf {
        self.root.path().join("master.log")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    /// Starts `dfs-master --data DIR ARGS` with `failpoint` armed; panics if
    /// it does not print its address.
    pub fn start(&self, args: &[&str], failpoint: Option<&str>) -> Master {
        match self.try_start(args, failpoint) {
            Ok(master) => master,
            Err(output) => panic!(
                "dfs-master did not start: {output}\n{}",
                tail(&self.log_text())
            ),
        }
    }

    /// Starts a master; Err with what happened if it exited instead.
    pub fn try_start(&self, args: &[&str], failpoint: Option<&str>) -> Result<Master, String> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .expect("open the master log");
        let mut command = Command::new(binary("dfs-master"));
        command
            .arg("--data")
            .arg(self.data())
            .args(["--listen", "127.0.0.1:0", "--heartbeat-interval", "1s"])
            .args(args)
            .env_remove("DFS_FAILPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        if let Some(failpoint) = failpoint {
            command.env("DFS_FAILPOINT", failpoint);
        }
        let mut child = command.spawn().expect("spawn dfs-master");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut guard = ChildGuard::new("dfs-master", child);
        match read_first_line(stdout, LISTEN_TIMEOUT) {
            Ok(line) => {
                let address = line
                    .strip_prefix("listening on ")
                    .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
                    .to_string();
                Ok(Master { guard, address })
            }
            Err(FirstLineError::EndOfStream) => {
                let status = guard.wait_exit(EXIT_TIMEOUT);
                Err(format!("exited with {status}"))
            }
            Err(FirstLineError::Timeout) => panic!("dfs-master printed nothing in time"),
        }
    }

    /// Runs `dfs-master --data DIR ARGS` to completion (for --check and
    /// refused starts).
    pub fn run(&self, args: &[&str]) -> Output {
        let mut command = Command::new(binary("dfs-master"));
        command
            .arg("--data")
            .arg(self.data())
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("DFS_FAILPOINT");
        run(&mut command, None, Duration::from_secs(60))
    }

    /// Panics on ERROR or panic lines in the log not matching `allowed`.
    pub fn assert_clean_log(&self, allowed: &[&str]) {
        let text = self.log_text();
        let bad: Vec<&str> = text
            .lines()
            .filter(|line| BAD_LOG_MARKERS.iter().any(|m| line.contains(m)))
            .filter(|line| !allowed.iter().any(|a| line.contains(a)))
            .collect();
        assert!(bad.is_empty(), "unexpected log lines:\n{}", bad.join("\n"));
    }
}

pub fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// A running master.
pub struct Master {
    pub guard: ChildGuard,
    pub address: String,
}

impl Master {
    /// SIGKILL, unless it already died.
    pub fn kill(mut self) {
        if self.guard.try_status().is_none() {
            self.guard.signal(Signal::Kill);
        }
        self.guard.wait_exit(EXIT_TIMEOUT);
    }

    /// SIGTERM; asserts exit status 0.
    pub fn stop(mut self) {
        self.guard.signal(Signal::Terminate);
        let status = self.guard.wait_exit(EXIT_TIMEOUT);
        assert!(
            status.success(),
            "the master exited with {status} after SIGTERM"
        );
    }

    /// True once the process has exited (a failpoint fired).
    pub fn has_exited(&mut self) -> bool {
        self.guard.try_status().is_some()
    }

    pub fn connect(&self) -> Connection {
        Connection::open(&self.address).expect("connect to the master")
    }

    /// Registers a minion that exists only on paper, with an empty block
    /// report, so blocks can be allocated; the master never contacts it.
    pub fn register_paper_minion(&self, minion: MinionId) {
        let mut connection = self.connect();
        let response = call(
            &mut connection,
            MasterRequest::Register {
                minion,
                cluster: None,
                address: "127.0.0.1:9".into(),
                capacity_bytes: 1 << 40,
                used_bytes: 0,
                available_bytes: 1 << 40,
            },
        )
        .expect("register");
        assert!(
            matches!(response, MasterResponse::Registered { .. }),
            "{response:?}"
        );
        let response = call(
            &mut connection,
            MasterRequest::BlockReport {
                minion,
                blocks: vec![],
                first: true,
                last: true,
            },
        )
        .expect("block report");
        assert!(matches!(response, MasterResponse::Ok), "{response:?}");
    }
}

/// Why a call failed.
#[derive(Debug)]
pub enum CallError {
    /// The connection broke: the master may or may not have applied it.
    Connection(String),
    Remote(RemoteError),
}

/// One request; remote errors and broken connections told apart.
pub fn call(
    connection: &mut Connection,
    request: MasterRequest,
) -> Result<MasterResponse, CallError> {
    match connection.call(&Credentials::default(), request) {
        Ok(MasterResponse::Error(error)) => Err(CallError::Remote(error)),
        Ok(response) => Ok(response),
        Err(error) => Err(CallError::Connection(error.to_string())),
    }
}

/// What a directory entry must look like after a restart.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Entry {
    Directory,
    Symlink {
        length_bytes: u64,
    },
    /// A FIFO, socket or device (its kind as `Debug` shows it).
    Special(String),
    File {
        size_bytes: u64,
        block_count: u64,
    },
}

/// Every entry of `directory` (paged), by name.
pub fn list(connection: &mut Connection, directory: &str) -> BTreeMap<String, Entry> {
    let mut entries = BTreeMap::new();
    let mut start_after = None;
    loop {
        let response = call(
            connection,
            MasterRequest::List {
                path: directory.into(),
                start_after: start_after.clone(),
                limit: 1000,
            },
        )
        .unwrap_or_else(|e| panic!("list {directory}: {e:?}"));
        let MasterResponse::Listing {
            entries: page,
            more,
        } = response
        else {
            panic!("list {directory}: {response:?}");
        };
        for status in page {
            start_after = Some(status.name.clone());
            let entry = match status.kind {
                EntryKind::Directory => Entry::Directory,
                EntryKind::File => Entry::File {
                    size_bytes: status.size_bytes,
                    block_count: status.block_count,
                },
                EntryKind::Symlink => Entry::Symlink {
                    length_bytes: status.size_bytes,
                },
                special => Entry::Special(format!("{special:?}")),
            };
            entries.insert(status.name, entry);
        }
        if !more {
            return entries;
        }
    }
}

/// Copies the files of `source` into a new directory `target`.
pub fn copy_dir(source: &Path, target: &Path) {
    std::fs::create_dir_all(target).expect("create copy");
    for entry in std::fs::read_dir(source).expect("list") {
        let entry = entry.expect("entry");
        if entry.file_name() == "lock" {
            continue;
        }
        std::fs::copy(entry.path(), target.join(entry.file_name())).expect("copy");
    }
}
