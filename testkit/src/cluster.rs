//! A whole cluster of real processes in one temporary directory: the master
//! in DIR/master, minion i in DIR/minion-i, each daemon's stderr in
//! DIR/<name>.log. Dropping the cluster kills what still runs, then fails
//! the test on crashed daemons and on unexpected ERROR lines in the logs.

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use dfs_engine::msg::{
    Credentials, ErrorKind, LocatedBlock, MasterRequest, MasterResponse, MinionReport, MinionState,
};
use dfs_engine::rpc::Connection;
use tempfile::TempDir;

use crate::process::{
    expect_failure_line, expect_success, read_first_line, run, send_signal, wait_exit,
    FirstLineError, Signal,
};
use crate::stat::Stat;
use crate::{binary, wait_for, COMMAND_TIMEOUT, EXIT_TIMEOUT, LISTEN_TIMEOUT, LIVE_TIMEOUT};

/// How often `located_blocks` asks a starting master again.
const STARTING_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Lines of each daemon log shown when a test fails.
const LOG_TAIL_LINES: usize = 40;
/// Log lines that fail a test unless allowed.
const BAD_LOG_MARKERS: [&str; 3] = [" ERROR ", "\"level\":\"ERROR\"", "panicked at"];

/// How to start a cluster. `ClusterOptions::default()` is three minions,
/// the master's default block size and replication, heartbeats every 200 ms.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub minions: usize,
    /// `--block-size` of the master (its default block size).
    pub block_size: Option<&'static str>,
    /// `--replication` of the master (its default replication).
    pub replication: Option<u8>,
    /// `--heartbeat-interval` of the master and of every minion.
    pub heartbeat_interval: &'static str,
    pub stale_after: Option<&'static str>,
    pub dead_after: Option<&'static str>,
    /// Data directories used instead of DIR/minion-<i> (minion index, dir),
    /// e.g. a small tmpfs.
    pub minion_data_overrides: Vec<(usize, PathBuf)>,
    /// `--orphan-grace` of the master.
    pub orphan_grace: Option<&'static str>,
    /// The address every daemon listens on (and is reached at).
    pub listen_host: String,
    /// More arguments for every minion, e.g. `--scrub-period off`.
    pub minion_arguments: Vec<&'static str>,
    /// More arguments for the master, e.g. `--frame-deadline 1s`.
    pub master_arguments: Vec<&'static str>,
    /// Minions started through a command prefix and listening on another
    /// host (minion index, wrapper), e.g. inside a network namespace.
    pub minion_wrappers: Vec<(usize, MinionWrapper)>,
}

/// How a minion is started other than directly: `prefix` runs before the
/// program (it must exec it, keeping the process id, as `ip netns exec`
/// does), and the minion listens on `listen_host`.
#[derive(Clone, Debug)]
pub struct MinionWrapper {
    pub prefix: Vec<OsString>,
    pub listen_host: String,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            minions: 3,
            block_size: None,
            replication: None,
            heartbeat_interval: "200ms",
            // Ten heartbeats of 200 ms are too few on a loaded 2-core
            // machine: live minions would go stale and lose placements.
            stale_after: Some("5s"),
            dead_after: None,
            minion_data_overrides: Vec::new(),
            orphan_grace: None,
            listen_host: "127.0.0.1".to_string(),
            minion_arguments: Vec::new(),
            master_arguments: Vec::new(),
            minion_wrappers: Vec::new(),
        }
    }
}

/// One daemon process, restartable on the same port.
struct Daemon {
    name: String,
    /// Command words run before `program` (empty: the program itself).
    prefix: Vec<OsString>,
    program: PathBuf,
    /// Every argument except `--listen`.
    arguments: Vec<OsString>,
    /// Environment variables set for the next start (failpoints, say).
    environment: Vec<(String, String)>,
    /// The host part of `--listen`.
    host: String,
    log_path: PathBuf,
    /// Zero until the first start bound a port; later starts reuse it,
    /// because peers were told this address.
    port: u16,
    address: String,
    child: Option<Child>,
}

impl Daemon {
    fn new(name: &str, program: PathBuf, arguments: Vec<OsString>, log_path: PathBuf) -> Daemon {
        Daemon {
            name: name.to_string(),
            prefix: Vec::new(),
            program,
            arguments,
            environment: Vec::new(),
            host: "127.0.0.1".to_string(),
            log_path,
            port: 0,
            address: String::new(),
            child: None,
        }
    }

    fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap_or_else(|e| panic!("open {}: {e}", self.log_path.display()));
        let mut command = match self.prefix.split_first() {
            Some((first, rest)) => {
                let mut command = Command::new(first);
                command.args(rest).arg(&self.program);
                command
            }
            None => Command::new(&self.program),
        };
        command
            .args(&self.arguments)
            // The daemons log at their default level unless a test says
            // otherwise: the caller's RUST_LOG is not the test's.
            .env_remove("RUST_LOG")
            .envs(self.environment.iter().map(|(name, value)| (name, value)))
            .arg("--listen")
            .arg(format!("{}:{}", self.host, self.port))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        // Tests on other addresses (network namespaces) run keyless.
        if !dfs_engine::auth::is_loopback(&format!("{}:{}", self.host, self.port)) {
            command.arg("--insecure");
        }
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no
        // memory of the parent; it makes the daemon die with the thread that
        // started it, so a test process killed from outside leaks nothing.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.program.display()));
        let stdout = child.stdout.take().expect("stdout is piped");
        // Kept before waiting, so a panic below still kills it on drop.
        self.child = Some(child);
        let line = match read_first_line(stdout, LISTEN_TIMEOUT) {
            Ok(line) => line,
            Err(FirstLineError::Timeout) => panic!(
                "{} printed no 'listening on' line within {LISTEN_TIMEOUT:?}\n{}",
                self.name,
                log_tail(&self.log_path)
            ),
            Err(FirstLineError::EndOfStream) => {
                let status = self
                    .child
                    .as_mut()
                    .and_then(|child| wait_exit(child, Duration::from_secs(5)));
                self.child = None;
                panic!(
                    "{} closed stdout without a 'listening on' line (exit status {status:?})\n{}",
                    self.name,
                    log_tail(&self.log_path)
                )
            }
        };
        let address = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "{}: first stdout line should be 'listening on HOST:PORT', got {line:?}",
                    self.name
                )
            })
            .trim();
        let socket_address: std::net::SocketAddr = address
            .parse()
            .unwrap_or_else(|e| panic!("{}: {address:?} is not HOST:PORT: {e}", self.name));
        assert_ne!(socket_address.port(), 0, "{}: printed port 0", self.name);
        if self.port != 0 {
            assert_eq!(
                socket_address.port(),
                self.port,
                "{}: restarted on another port",
                self.name
            );
        }
        self.port = socket_address.port();
        self.address = address.to_string();
    }

    fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .unwrap_or_else(|| panic!("{} is not running", self.name))
            .id()
    }

    fn signal(&self, signal: Signal) {
        send_signal(self.pid(), signal)
            .unwrap_or_else(|e| panic!("send {signal:?} to {}: {e}", self.name));
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` and asserts the daemon exits with status 0.
    fn stop_gracefully(&mut self, signal: Signal) {
        self.signal(signal);
        let mut child = self.child.take().expect("checked running by signal");
        let Some(status) = wait_exit(&mut child, EXIT_TIMEOUT) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} did not exit within {EXIT_TIMEOUT:?} of {signal:?}\n{}",
                self.name,
                log_tail(&self.log_path)
            );
        };
        assert!(
            status.success(),
            "{} exited with {status} after {signal:?}, expected 0\n{}",
            self.name,
            log_tail(&self.log_path)
        );
    }

    /// Some(status) if the daemon is supposed to run but has exited.
    fn exited_on_its_own(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|child| child.try_wait().ok().flatten())
    }
}

fn set_environment(environment: &mut Vec<(String, String)>, name: &str, value: Option<&str>) {
    environment.retain(|(existing, _)| existing != name);
    if let Some(value) = value {
        environment.push((name.to_string(), value.to_string()));
    }
}

/// Daemons die with the thread that started them (see `Daemon::start`):
/// start and restart them from the test's own thread.
pub struct Cluster {
    master: Daemon,
    minions: Vec<Daemon>,
    minion_data_dirs: Vec<PathBuf>,
    allowed_errors: Vec<String>,
    /// The master's `--key`, which clients of the test prove as their
    /// identity (the member identity); None: an open cluster.
    identity: Option<PathBuf>,
    /// Set once `shut_down` has stopped everything and handed its problems
    /// over: `Drop` has nothing left to check.
    stopped: bool,
    // Last field, so dropped last: `Drop` has stopped the processes by then.
    dir: TempDir,
}

impl Cluster {
    /// Starts a master and `options.minions` minions and waits until the
    /// master lists them all as live.
    pub fn start(options: ClusterOptions) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("dfs-cluster-")
            .tempdir()
            .expect("create a temporary directory");
        let master_dir = dir.path().join("master");
        std::fs::create_dir_all(&master_dir).expect("create the master directory");
        // `--config /dev/null`: the machine's /etc/dfs/*.toml is not the test's.
        let mut master_arguments: Vec<OsString> = vec![
            "--config".into(),
            "/dev/null".into(),
            "--data".into(),
            master_dir.into(),
            "--heartbeat-interval".into(),
            options.heartbeat_interval.into(),
        ];
        let optional = [
            ("--block-size", options.block_size.map(str::to_string)),
            ("--replication", options.replication.map(|r| r.to_string())),
            ("--stale-after", options.stale_after.map(str::to_string)),
            ("--dead-after", options.dead_after.map(str::to_string)),
            ("--orphan-grace", options.orphan_grace.map(str::to_string)),
        ];
        for (flag, value) in optional {
            if let Some(value) = value {
                master_arguments.push(flag.into());
                master_arguments.push(value.into());
            }
        }
        master_arguments.extend(options.master_arguments.iter().map(OsString::from));
        let mut master = Daemon::new(
            "master",
            binary("dfs-master"),
            master_arguments,
            dir.path().join("master.log"),
        );
        master.host.clone_from(&options.listen_host);
        let identity = options
            .master_arguments
            .windows(2)
            .find(|pair| pair[0] == "--key")
            .map(|pair| PathBuf::from(pair[1]));
        let mut cluster = Cluster {
            master,
            minions: Vec::new(),
            minion_data_dirs: Vec::new(),
            allowed_errors: Vec::new(),
            identity,
            stopped: false,
            dir,
        };
        cluster.master.start();
        for index in 0..options.minions {
            let data_dir = options
                .minion_data_overrides
                .iter()
                .find(|(i, _)| *i == index)
                .map(|(_, path)| path.clone())
                .unwrap_or_else(|| cluster.dir.path().join(format!("minion-{index}")));
            std::fs::create_dir_all(&data_dir).expect("create a minion directory");
            let name = format!("minion-{index}");
            let mut arguments: Vec<OsString> = vec![
                "--config".into(),
                "/dev/null".into(),
                "--master".into(),
                cluster.master.address.clone().into(),
                "--data".into(),
                data_dir.clone().into(),
                "--heartbeat-interval".into(),
                options.heartbeat_interval.into(),
            ];
            arguments.extend(options.minion_arguments.iter().map(OsString::from));
            let log_path = cluster.dir.path().join(format!("{name}.log"));
            cluster.minions.push(Daemon::new(
                &name,
                binary("dfs-minion"),
                arguments,
                log_path,
            ));
            cluster.minion_data_dirs.push(data_dir);
            cluster.minions[index].host.clone_from(&options.listen_host);
            if let Some((_, wrapper)) = options.minion_wrappers.iter().find(|(i, _)| *i == index) {
                cluster.minions[index].prefix.clone_from(&wrapper.prefix);
                cluster.minions[index].host.clone_from(&wrapper.listen_host);
            }
            cluster.minions[index].start();
        }
        cluster.wait_for_live_minions(options.minions);
        cluster
    }

    /// The temporary directory everything lives in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn master_address(&self) -> &str {
        &self.master.address
    }

    /// The address of the master's status page (`--http`), from the last
    /// `http on HOST:PORT` its log shows (logged before it printed its
    /// `listening on` line, so there once the master started).
    pub fn master_http_address(&self) -> String {
        let log = std::fs::read_to_string(&self.master.log_path)
            .unwrap_or_else(|e| panic!("read {}: {e}", self.master.log_path.display()));
        log.lines()
            .rev()
            .find_map(|line| {
                line.rsplit_once("http on ")
                    .map(|(_, address)| address.trim())
            })
            .unwrap_or_else(|| panic!("the master logged no 'http on' line (run it with --http)"))
            .to_string()
    }

    /// Where minion `index` serves `/metrics` (`--http`), from its log;
    /// the latest start's. None until it logged it.
    pub fn minion_http_address(&self, index: usize) -> Option<String> {
        const MARK: &str = "serving metrics at http://";
        let log = std::fs::read_to_string(self.log_path(&format!("minion-{index}"))).ok()?;
        let start = log.rfind(MARK)? + MARK.len();
        let rest = &log[start..];
        Some(rest[..rest.find("/metrics")?].to_string())
    }

    pub fn master_pid(&self) -> u32 {
        self.master.pid()
    }

    pub fn minion_count(&self) -> usize {
        self.minions.len()
    }

    pub fn minion_address(&self, index: usize) -> &str {
        &self.minions[index].address
    }

    pub fn minion_pid(&self, index: usize) -> u32 {
        self.minions[index].pid()
    }

    pub fn minion_data_dir(&self, index: usize) -> &Path {
        &self.minion_data_dirs[index]
    }

    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    /// True while the master process runs.
    pub fn master_is_running(&mut self) -> bool {
        self.master.child.is_some() && self.master.exited_on_its_own().is_none()
    }

    /// True while minion `index` runs.
    pub fn minion_is_running(&mut self, index: usize) -> bool {
        let minion = &mut self.minions[index];
        minion.child.is_some() && minion.exited_on_its_own().is_none()
    }

    // --- the dfs command ---

    /// A `dfs` command aimed at this cluster's master (`--master` set,
    /// DFS_MASTER removed), without arguments yet.
    pub fn dfs_command(&self) -> Command {
        let mut command = Command::new(binary("dfs"));
        command
            .env_remove("DFS_MASTER")
            .env("DFS_IDENTITY", self.identity_env())
            .arg("--master")
            .arg(self.master_address());
        command
    }

    /// What `DFS_IDENTITY` is for clients of this cluster: the master's
    /// key file, or `none` (a developer's own identity is not the test's).
    pub fn identity_env(&self) -> OsString {
        self.identity
            .as_ref()
            .map_or_else(|| "none".into(), |path| path.clone().into_os_string())
    }

    /// Runs `dfs ARGS` against the cluster and returns what it did.
    pub fn dfs<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = self.dfs_command();
        command.args(args);
        run(&mut command, None, COMMAND_TIMEOUT)
    }

    /// Runs `dfs ARGS` with `stdin` as its standard input.
    pub fn dfs_with_stdin<I, S>(&self, args: I, stdin: &[u8]) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = self.dfs_command();
        command.args(args);
        run(&mut command, Some(stdin), COMMAND_TIMEOUT)
    }

    /// Runs `dfs ARGS`, asserts it succeeds and returns its stdout.
    pub fn dfs_ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let output = self.dfs(&args);
        expect_success(&output, &format!("dfs {}", show_args(&args)))
    }

    /// Runs `dfs ARGS`, asserts it fails as the CLI contract says (exit 1,
    /// exactly one stderr line `dfs: ...`) and returns that line.
    pub fn dfs_err<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let output = self.dfs(&args);
        expect_failure_line(&output, &format!("dfs {}", show_args(&args)))
    }

    /// `dfs stat PATH`, parsed.
    pub fn stat(&self, path: &str) -> Stat {
        let text = self.dfs_ok(["stat", path]);
        Stat::parse(&text).unwrap_or_else(|e| panic!("dfs stat {path}: {e}"))
    }

    // --- talking to the master directly ---

    /// Sends one request to the master on a fresh connection.
    pub fn master_call(&self, request: MasterRequest) -> dfs_engine::Result<MasterResponse> {
        let mut connection = match &self.identity {
            Some(path) => {
                dfs_engine::identity::Identity::load(path)?.connect(self.master_address())?
            }
            None => Connection::open(self.master_address())?,
        };
        connection.call(&admin_credentials(), request)
    }

    /// The master's view of the minions, or why it could not be had.
    pub fn try_cluster_report(&self) -> Result<Vec<MinionReport>, String> {
        match self.master_call(MasterRequest::ClusterReport) {
            Ok(MasterResponse::Cluster { minions, .. }) => Ok(minions),
            Ok(other) => Err(format!("ClusterReport answered with {other:?}")),
            Err(error) => Err(error.to_string()),
        }
    }

    pub fn cluster_report(&self) -> Vec<MinionReport> {
        self.try_cluster_report()
            .unwrap_or_else(|e| panic!("cluster report: {e}"))
    }

    /// A file's blocks with their locations (live first, dead left out), as
    /// the master answers `GetBlocks`.
    pub fn located_blocks(&self, path: &str) -> Vec<LocatedBlock> {
        let started = Instant::now();
        let mut found: Vec<LocatedBlock> = Vec::new();
        loop {
            let offset_bytes = found
                .last()
                .map_or(0, |block| block.offset_bytes + block.length_bytes);
            let request = MasterRequest::GetBlocks {
                path: path.into(),
                offset_bytes,
                limit: u32::MAX,
                first_index: None,
                inode: None,
            };
            match self.master_call(request) {
                Ok(MasterResponse::Blocks { blocks, more, .. }) => {
                    found.extend(blocks);
                    if !more {
                        return found;
                    }
                }
                // A restarted master waiting for block reports: wait too,
                // as clients do.
                Ok(MasterResponse::Error(error))
                    if error.kind == ErrorKind::Starting && started.elapsed() < LIVE_TIMEOUT =>
                {
                    std::thread::sleep(STARTING_POLL_INTERVAL);
                }
                other => panic!("GetBlocks {path}: {other:?}"),
            }
        }
    }

    /// Waits until the master lists exactly `count` live minions.
    pub fn wait_for_live_minions(&self, count: usize) {
        let mut last = String::from("no answer yet");
        let ready = poll(LIVE_TIMEOUT, || match self.try_cluster_report() {
            Ok(minions) => {
                let live = minions
                    .iter()
                    .filter(|m| m.state == MinionState::Live)
                    .count();
                last = format!("{minions:?}");
                live == count
            }
            Err(error) => {
                last = error;
                false
            }
        });
        if !ready {
            panic!(
                "the master did not list {count} live minions within {LIVE_TIMEOUT:?}; last report: {last}\n{}",
                log_tail(&self.master.log_path)
            );
        }
    }

    // --- faults and restarts ---

    /// SIGKILL to minion `index`; it stays down until `start_minion`.
    /// Returns once its port refuses connections: a dying process's
    /// listener can accept for a few milliseconds after it was reaped.
    pub fn kill_minion(&mut self, index: usize) {
        assert!(
            self.minions[index].child.is_some(),
            "minion-{index} is not running"
        );
        self.minions[index].kill();
        let address = self.minion_address(index).to_string();
        self.wait_for(
            || !crate::process::accepts_connections(&address),
            crate::LIVE_TIMEOUT,
            &format!("the port of the killed minion-{index} to refuse connections"),
        );
    }

    /// SIGTERM to minion `index`; asserts it exits with status 0.
    pub fn stop_minion(&mut self, index: usize) {
        self.stop_minion_with(index, Signal::Terminate);
    }

    /// `signal` (SIGINT or SIGTERM) to minion `index`; asserts it exits
    /// with status 0.
    pub fn stop_minion_with(&mut self, index: usize, signal: Signal) {
        self.minions[index].stop_gracefully(signal);
    }

    /// Starts minion `index` again with its data directory and port.
    pub fn start_minion(&mut self, index: usize) {
        self.minions[index].start();
    }

    /// Sets (or with None, unsets) an environment variable for minion
    /// `index` from its next start on, e.g. `DFS_FAILPOINT`.
    pub fn set_minion_environment(&mut self, index: usize, name: &str, value: Option<&str>) {
        set_environment(&mut self.minions[index].environment, name, value);
    }

    /// `set_minion_environment` for the master.
    pub fn set_master_environment(&mut self, name: &str, value: Option<&str>) {
        set_environment(&mut self.master.environment, name, value);
    }

    pub fn sigstop_minion(&self, index: usize) {
        self.minions[index].signal(Signal::Stop);
    }

    pub fn sigcont_minion(&self, index: usize) {
        self.minions[index].signal(Signal::Continue);
    }

    /// SIGINT to the master; asserts it exits with status 0.
    pub fn stop_master_gracefully(&mut self) {
        self.stop_master_with(Signal::Interrupt);
    }

    /// `signal` (SIGINT or SIGTERM) to the master; asserts it exits with
    /// status 0.
    pub fn stop_master_with(&mut self, signal: Signal) {
        self.master.stop_gracefully(signal);
    }

    /// SIGKILL to the master.
    pub fn kill_master(&mut self) {
        self.master.kill();
    }

    /// Starts the master again with its directory, on the same port (the
    /// minions know that address).
    pub fn start_master(&mut self) {
        self.master.start();
    }

    /// Polls `condition` until it holds; panics naming `what` after `timeout`.
    pub fn wait_for(&self, condition: impl FnMut() -> bool, timeout: Duration, what: &str) {
        wait_for(condition, timeout, what);
    }

    // --- minion storage ---

    /// Every block file (`blk_*`) under minion `index`'s `blocks/`, sorted.
    pub fn block_files(&self, index: usize) -> Vec<PathBuf> {
        let blocks = self.minion_data_dirs[index].join("blocks");
        let mut files = Vec::new();
        let Ok(subdirectories) = std::fs::read_dir(&blocks) else {
            return files;
        };
        for subdirectory in subdirectories.flatten() {
            let Ok(entries) = std::fs::read_dir(subdirectory.path()) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with("blk_") {
                    files.push(entry.path());
                }
            }
        }
        files.sort();
        files
    }

    /// The file of minion `index`'s sealed replica of block `id`
    /// (`blk_<16 hex>`), found by the layout `DIR/blocks/<low byte in
    /// hex>/blk_<16 hex>_<generation>_<crc>`; panics when there is none.
    pub fn block_file_path(&self, index: usize, id: &str) -> PathBuf {
        self.block_file_of(index, id)
            .unwrap_or_else(|| panic!("minion {index} holds no sealed file of {id}"))
    }

    /// The file of minion `index`'s sealed replica of block `id`, if any.
    pub fn block_file_of(&self, index: usize, id: &str) -> Option<PathBuf> {
        let hex = id.strip_prefix("blk_")?;
        let block = dfs_engine::msg::BlockId(u64::from_str_radix(hex, 16).ok()?);
        crate::sealed_replica_file(&self.minion_data_dirs[index], block)
    }

    // --- logs ---

    /// Lets daemon log lines containing `pattern` (ignoring case) pass the
    /// ERROR check.
    pub fn allow_error(&mut self, pattern: &str) {
        self.allowed_errors.push(pattern.to_lowercase());
    }

    /// Keeps the cluster's directory (logs, data) after the cluster is
    /// dropped, for a failure to be looked into.
    pub fn keep_dir(&mut self) {
        self.dir.disable_cleanup(true);
    }

    /// Kills every daemon and returns what `Drop` would fail on (daemons
    /// that exited on their own, log lines no `allow_error` pattern
    /// covers) instead of panicking, for a caller that reports them.
    pub fn shut_down(mut self) -> Vec<String> {
        let problems = self.stop_all();
        self.stopped = true;
        problems
    }

    fn stop_all(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        for daemon in self.all_daemons() {
            if let Some(status) = daemon.exited_on_its_own() {
                problems.push(format!("{} exited on its own with {status}", daemon.name));
            }
            daemon.kill();
        }
        problems.extend(self.log_problems());
        problems
    }

    /// Panics on daemon log lines with ERROR (or a panic) that no
    /// `allow_error` pattern covers.
    pub fn assert_clean_logs(&self) {
        let problems = self.log_problems();
        if !problems.is_empty() {
            panic!("unexpected lines in daemon logs:\n{}", problems.join("\n"));
        }
    }

    fn log_paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.master.log_path.clone()];
        paths.extend(self.minions.iter().map(|m| m.log_path.clone()));
        paths
    }

    fn log_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for path in self.log_paths() {
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            for line in String::from_utf8_lossy(&bytes).lines() {
                let bad = BAD_LOG_MARKERS.iter().any(|marker| line.contains(marker));
                let lower = line.to_lowercase();
                let allowed = self
                    .allowed_errors
                    .iter()
                    .any(|pattern| lower.contains(pattern.as_str()));
                if bad && !allowed {
                    problems.push(format!("{name}: {line}"));
                }
            }
        }
        problems
    }

    fn all_daemons(&mut self) -> impl Iterator<Item = &mut Daemon> {
        std::iter::once(&mut self.master).chain(self.minions.iter_mut())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        if std::thread::panicking() {
            for daemon in self.all_daemons() {
                daemon.kill();
            }
            for path in self.log_paths() {
                eprintln!("{}", log_tail(&path));
            }
            return;
        }
        let problems = self.stop_all();
        if !problems.is_empty() {
            panic!(
                "cluster problems:\n{}\n\n{}",
                problems.join("\n"),
                self.log_paths()
                    .iter()
                    .map(|path| log_tail(path))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
}

/// Polls `condition` until it holds or `timeout` passes; true if it held.
fn poll(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn show_args(args: &[OsString]) -> String {
    args.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last lines of a log, headed by its path, for failure messages.
fn log_tail(path: &Path) -> String {
    let text = File::open(path)
        .ok()
        .and_then(|mut file| {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut file, &mut bytes).ok()?;
            Some(String::from_utf8_lossy(&bytes).into_owned())
        })
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(LOG_TAIL_LINES);
    format!(
        "--- last lines of {} ---\n{}",
        path.display(),
        lines[start..].join("\n")
    )
}

/// Who `Cluster::master_call` asks as: root, the cluster's superuser, as an
/// administrator's probe (tests of permissions use the `dfs` commands or
/// their own credentials).
pub fn admin_credentials() -> Credentials {
    Credentials {
        user: "root".into(),
        groups: vec!["root".into()],
        token: Vec::new(),
    }
}
