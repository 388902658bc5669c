//! `dfs local`: a master and N minions on this machine as child processes,
//! each in its own directory below one DIR, stopped in order (minions, then
//! the master) on SIGINT/SIGTERM. Reusing a DIR keeps the data.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use dfs_engine::limits::{LOCAL_CLUSTER_START_TIMEOUT_MS, LOCAL_CLUSTER_STOP_TIMEOUT_MS};
use dfs_engine::msg::MinionState;
use dfs_engine::{Error, IoContext, Result};

use dfs_client::Client;

/// How often we look at the children, the signal flag and the master's
/// minion count while waiting.
const POLL_INTERVAL_MS: u64 = 100;
/// Longest stdout line of a daemon we read at once.
const DAEMON_LINE_BYTES_MAX: u64 = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalOptions {
    /// DIR/master and DIR/minion-<i> hold the daemons' data.
    pub dir: PathBuf,
    pub minions: usize,
    /// Host the daemons listen on (port 0: the system picks).
    pub host: String,
    /// Let the daemons listen where other machines reach them without a
    /// cluster key.
    pub insecure: bool,
    /// Run with a key, DIR/cluster.key (made when missing).
    pub key: bool,
    /// Block data over TLS too (needs `key`).
    pub tls_data: bool,
}

/// Runs the cluster until SIGINT/SIGTERM; prints `DFS_MASTER=<address>` to
/// `out` once every minion has registered (and, with a key,
/// `DFS_IDENTITY=<key file>`, which clients prove as their identity).
pub fn run(options: &LocalOptions, out: &mut dyn Write) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("install a signal handler")?;
    }
    let master_program = find_program("dfs-master")?;
    let minion_program = find_program("dfs-minion")?;
    let deadline = Instant::now() + Duration::from_millis(LOCAL_CLUSTER_START_TIMEOUT_MS);
    let listen = listen_address(&options.host);
    let mut daemons = Daemons {
        running: Vec::new(),
        stop: Arc::clone(&stop),
    };

    let master_dir = options.dir.join("master");
    let insecure: &[&std::ffi::OsStr] = if options.insecure {
        &["--insecure".as_ref()]
    } else {
        &[]
    };
    let key_path = options.dir.join("cluster.key");
    let identity = if options.key {
        std::fs::create_dir_all(&options.dir)
            .with_context(|| format!("create {}", options.dir.display()))?;
        if !key_path.exists() {
            dfs_engine::auth::ClusterKey::create(&key_path)?;
        }
        Some(dfs_engine::identity::Identity::load(&key_path)?)
    } else {
        None
    };
    let mut keyed: Vec<&std::ffi::OsStr> = Vec::new();
    if options.key {
        keyed.extend(["--key".as_ref(), key_path.as_os_str()]);
    }
    if options.tls_data {
        keyed.push("--tls-data".as_ref());
    }
    // A local cluster is its own: not configured by the machine's
    // /etc/dfs/*.toml.
    let no_config: &[&std::ffi::OsStr] = &["--config".as_ref(), "/dev/null".as_ref()];
    let master_arguments = [
        no_config,
        &["--data".as_ref(), master_dir.as_os_str()],
        &["--listen".as_ref(), listen.as_ref()],
        insecure,
        &keyed,
    ]
    .concat();
    let Some(master_address) = daemons.start(
        "master",
        &master_program,
        &master_dir,
        &master_arguments,
        deadline,
    )?
    else {
        return daemons.stop_all();
    };
    for index in 0..options.minions {
        let minion_dir = options.dir.join(format!("minion-{index}"));
        let arguments = [
            no_config,
            &["--master".as_ref(), master_address.as_ref()],
            &["--data".as_ref(), minion_dir.as_os_str()],
            &["--listen".as_ref(), listen.as_ref()],
            insecure,
            &keyed,
        ]
        .concat();
        let name = format!("minion-{index}");
        if daemons
            .start(&name, &minion_program, &minion_dir, &arguments, deadline)?
            .is_none()
        {
            return daemons.stop_all();
        }
    }
    if !daemons.wait_registered(&master_address, identity, options.minions, deadline)? {
        return daemons.stop_all();
    }
    writeln!(out, "DFS_MASTER={master_address}")
        .and_then(|()| {
            if options.key {
                writeln!(out, "DFS_IDENTITY={}", key_path.display())?;
            }
            out.flush()
        })
        .context("write standard output")?;

    while !stop.load(Ordering::SeqCst) {
        if let Some((name, status)) = daemons.first_exited()? {
            // Best effort: the unexpected exit is the error to report.
            let _ = daemons.stop_all();
            return Err(Error::Invalid(format!("{name} exited: {status}")));
        }
        thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
    }
    daemons.stop_all()
}

/// "host:0", with brackets around an IPv6 host.
fn listen_address(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:0")
    } else {
        format!("{host}:0")
    }
}

/// The daemon program: next to this executable (a build or install
/// directory), else on PATH.
pub(crate) fn find_program(name: &str) -> Result<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    find_in(name, beside.into_iter().chain(on_path)).ok_or_else(|| {
        Error::Invalid(format!(
            "{name}: not found next to this program nor on PATH"
        ))
    })
}

fn find_in(name: &str, directories: impl IntoIterator<Item = PathBuf>) -> Option<PathBuf> {
    directories
        .into_iter()
        .map(|directory| directory.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .map(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// The address in a daemon's `listening on HOST:PORT` line.
fn listening_address(line: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(line).ok()?;
    let address = text.trim_end().strip_prefix("listening on ")?.trim();
    (!address.is_empty()).then(|| address.to_string())
}

struct Daemon {
    name: String,
    child: Child,
    /// Set once the child was reaped.
    status: Option<ExitStatus>,
}

/// The children, master first. Dropped with children still running (an
/// error path), it kills them.
struct Daemons {
    running: Vec<Daemon>,
    stop: Arc<AtomicBool>,
}

impl Daemons {
    /// Starts a daemon and waits for its `listening on` line. `Ok(None)`: a
    /// signal asked us to stop meanwhile.
    fn start(
        &mut self,
        name: &str,
        program: &Path,
        data_dir: &Path,
        arguments: &[&std::ffi::OsStr],
        deadline: Instant,
    ) -> Result<Option<String>> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("create {}", data_dir.display()))?;
        let mut command = Command::new(program);
        command
            .args(arguments)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Its own process group: a terminal's Ctrl-C reaches only us,
            // and we stop the daemons in order.
            .process_group(0);
        let parent = std::process::id();
        // SAFETY: the closure runs in the child between fork and exec; it
        // only makes async-signal-safe system calls and allocates nothing.
        unsafe {
            command.pre_exec(move || {
                // If we die, the daemon is told to stop rather than orphaned.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if u32::try_from(libc::getppid()).ok() != Some(parent) {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("start {}", program.display()))?;
        let stdout = child.stdout.take();
        self.running.push(Daemon {
            name: name.to_string(),
            child,
            status: None,
        });
        let Some(stdout) = stdout else {
            return Err(Error::Invalid(format!("{name}: no standard output")));
        };
        let addresses = read_listening_line(stdout);
        loop {
            match addresses.recv_timeout(Duration::from_millis(POLL_INTERVAL_MS)) {
                Ok(address) => return Ok(Some(address)),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // Its output closed without the line: it is exiting.
                    let status = self.wait_last(deadline)?;
                    return Err(Error::Invalid(format!("{name} exited: {status}")));
                }
            }
            if self.stop.load(Ordering::SeqCst) {
                return Ok(None);
            }
            if let Some((name, status)) = self.first_exited()? {
                return Err(Error::Invalid(format!("{name} exited: {status}")));
            }
            if Instant::now() >= deadline {
                return Err(Error::Invalid(format!(
                    "{name} did not say where it listens within {} s",
                    LOCAL_CLUSTER_START_TIMEOUT_MS / 1000
                )));
            }
        }
    }

    /// Waits for the most recently started daemon to exit.
    fn wait_last(&mut self, deadline: Instant) -> Result<String> {
        let Some(daemon) = self.running.last_mut() else {
            return Ok("unknown status".into());
        };
        while Instant::now() < deadline {
            if let Some(status) = daemon.child.try_wait().context("wait for a daemon")? {
                daemon.status = Some(status);
                return Ok(status.to_string());
            }
            thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
        }
        Ok("closed its output but still runs".into())
    }

    /// Polls the master until `count` minions are live. False: a signal
    /// asked us to stop meanwhile.
    fn wait_registered(
        &mut self,
        master: &str,
        identity: Option<dfs_engine::identity::Identity>,
        count: usize,
        deadline: Instant,
    ) -> Result<bool> {
        let mut client: Option<Client> = None;
        let mut live = 0;
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return Ok(false);
            }
            if let Some((name, status)) = self.first_exited()? {
                return Err(Error::Invalid(format!("{name} exited: {status}")));
            }
            if client.is_none() {
                client = match &identity {
                    Some(identity) => Client::connect_with(
                        master,
                        dfs_client::client::process_credentials(),
                        Some(identity.clone()),
                    )
                    .ok(),
                    None => Client::connect(master).ok(),
                };
            }
            if let Some(connected) = client.as_mut() {
                match connected.cluster_report() {
                    Ok(report) => {
                        live = report
                            .minions
                            .iter()
                            .filter(|minion| minion.state == MinionState::Live)
                            .count();
                        if live >= count {
                            return Ok(true);
                        }
                    }
                    Err(_) => client = None,
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::Invalid(format!(
                    "{live} of {count} minions registered with the master within {} s",
                    LOCAL_CLUSTER_START_TIMEOUT_MS / 1000
                )));
            }
            thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
        }
    }

    /// The first daemon that exited since the last look, reaped.
    fn first_exited(&mut self) -> Result<Option<(String, ExitStatus)>> {
        for daemon in &mut self.running {
            if daemon.status.is_some() {
                continue;
            }
            if let Some(status) = daemon.child.try_wait().context("wait for a daemon")? {
                daemon.status = Some(status);
                return Ok(Some((daemon.name.clone(), status)));
            }
        }
        Ok(None)
    }

    /// SIGINT to the minions, then to the master, each waited for (killed
    /// after a bounded wait). A daemon that does not stop cleanly is
    /// reported as a warning.
    fn stop_all(&mut self) -> Result<()> {
        let master_count = 1.min(self.running.len());
        let (masters, minions) = self.running.split_at_mut(master_count);
        for group in [minions, masters] {
            for daemon in group.iter_mut().filter(|d| d.status.is_none()) {
                interrupt(&daemon.child);
            }
            let deadline = Instant::now() + Duration::from_millis(LOCAL_CLUSTER_STOP_TIMEOUT_MS);
            for daemon in group.iter_mut().filter(|d| d.status.is_none()) {
                let status = wait_until(&mut daemon.child, deadline)?;
                daemon.status = Some(status);
                if !status.success() {
                    eprintln!("dfs: warning: {} exited: {status}", daemon.name);
                }
            }
        }
        Ok(())
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        for daemon in self.running.iter_mut().filter(|d| d.status.is_none()) {
            // Best effort on an error path: nothing is left to report to.
            let _ = daemon.child.kill();
            let _ = daemon.child.wait();
        }
    }
}

/// Waits for `child` until `deadline`, then kills it.
fn wait_until(child: &mut Child, deadline: Instant) -> Result<ExitStatus> {
    loop {
        if let Some(status) = child.try_wait().context("wait for a daemon")? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            child.kill().context("kill a daemon")?;
            return child.wait().context("wait for a daemon");
        }
        thread::sleep(Duration::from_millis(POLL_INTERVAL_MS / 4));
    }
}

fn interrupt(child: &Child) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill has no memory-safety preconditions; the child was not
    // reaped yet, so its pid cannot name another process.
    unsafe {
        libc::kill(pid, libc::SIGINT);
    }
}

/// Reads a daemon's stdout on a thread: the first `listening on` address is
/// sent on the returned channel, later output is read and dropped so the
/// daemon never blocks on a full pipe.
fn read_listening_line(stdout: ChildStdout) -> Receiver<String> {
    let (sender, receiver) = mpsc::sync_channel(1);
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        let mut found = false;
        loop {
            line.clear();
            match (&mut reader)
                .take(DAEMON_LINE_BYTES_MAX)
                .read_until(b'\n', &mut line)
            {
                Ok(0) | Err(_) => return,
                Ok(_) if !found => {
                    if let Some(address) = listening_address(&line) {
                        found = true;
                        // The receiver may be gone if we gave up waiting.
                        let _ = sender.send(address);
                    }
                }
                Ok(_) => {}
            }
        }
    });
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_lines() {
        for (line, want) in [
            (
                &b"listening on 127.0.0.1:4000\n"[..],
                Some("127.0.0.1:4000"),
            ),
            (b"listening on [::1]:80", Some("[::1]:80")),
            (b"listening on \n", None),
            (b"starting\n", None),
            (b"listening on \xff\n", None),
        ] {
            assert_eq!(listening_address(line).as_deref(), want);
        }
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(listen_address("127.0.0.1"), "127.0.0.1:0");
        assert_eq!(listen_address("::1"), "[::1]:0");
        assert_eq!(listen_address("[::1]"), "[::1]:0");
    }

    #[test]
    fn programs_are_found_in_order_and_must_be_executable() {
        let first = tempfile::tempdir().expect("temp dir");
        let second = tempfile::tempdir().expect("temp dir");
        let make = |dir: &Path, mode: u32| {
            let path = dir.join("dfs-master");
            std::fs::write(&path, b"#!/bin/sh\n").expect("write");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            path
        };
        let dirs = || [first.path().to_path_buf(), second.path().to_path_buf()];
        assert_eq!(find_in("dfs-master", dirs()), None);
        make(first.path(), 0o644);
        let executable = make(second.path(), 0o755);
        assert_eq!(find_in("dfs-master", dirs()), Some(executable));
        let preferred = make(first.path(), 0o755);
        assert_eq!(find_in("dfs-master", dirs()), Some(preferred));
    }
}
