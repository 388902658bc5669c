//! Child processes for tests: running a command with a deadline, reading a
//! daemon's first stdout line with a deadline, signals, and a guard that kills
//! a child a test forgot (or could not, because it panicked) to stop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Signals the kit sends to daemons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
    Kill,
    Stop,
    Continue,
}

impl Signal {
    fn number(self) -> libc::c_int {
        match self {
            Signal::Interrupt => libc::SIGINT,
            Signal::Terminate => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
            Signal::Stop => libc::SIGSTOP,
            Signal::Continue => libc::SIGCONT,
        }
    }
}

/// Sends `signal` to the process `pid`.
pub fn send_signal(pid: u32, signal: Signal) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(std::io::Error::other)?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let result = unsafe { libc::kill(pid, signal.number()) };
    if result != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Polls `child` until it exits or `timeout` passes; `None` on timeout.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("poll child status") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `command` to completion with `stdin` fed to it, capturing stdout and
/// stderr; kills it and panics when it runs longer than `timeout`.
pub fn run(command: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> Output {
    let description = format!("{command:?}");
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {description}: {e}"));
    let writer = stdin.map(|bytes| {
        let bytes = bytes.to_vec();
        let mut pipe = child.stdin.take().expect("stdin is piped");
        // A writer thread, so a child that stops reading early (or fills its
        // stdout first) cannot deadlock the test.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        })
    });
    let stdout = collect(child.stdout.take().expect("stdout is piped"));
    let stderr = collect(child.stderr.take().expect("stderr is piped"));
    let Some(status) = wait_exit(&mut child, timeout) else {
        let _ = child.kill();
        let _ = child.wait();
        let stderr = stderr.join().unwrap_or_default();
        panic!(
            "{description} did not finish within {timeout:?}; its stderr so far:\n{}",
            String::from_utf8_lossy(&stderr)
        );
    };
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    Output {
        status,
        stdout: stdout.join().expect("stdout reader thread"),
        stderr: stderr.join().expect("stderr reader thread"),
    }
}

fn collect(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// Asserts `output` is a success and returns its stdout as text.
pub fn expect_success(output: &Output, what: &str) -> String {
    if !output.status.success() {
        panic!(
            "{what} failed with {}; stderr:\n{}stdout:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
    }
    String::from_utf8(output.stdout.clone())
        .unwrap_or_else(|_| panic!("{what} printed invalid UTF-8 on stdout"))
}

/// Asserts `output` is the failure of a `dfs` command as the CLI contract
/// says: exit status 1 and exactly one stderr line starting with `dfs: `.
/// Returns that line without its newline.
pub fn expect_failure_line(output: &Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{what} should fail with exit status 1, got {}; stderr:\n{stderr}stdout:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout)
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("dfs: "),
        "{what} should print exactly one stderr line starting with 'dfs: ', got:\n{stderr}"
    );
    lines[0].to_string()
}

/// Why `read_first_line` found no line.
#[derive(Debug, PartialEq, Eq)]
pub enum FirstLineError {
    /// The process closed its stdout (usually: it exited) first.
    EndOfStream,
    Timeout,
}

/// Reads the first line a child prints on stdout (without the newline),
/// waiting at most `timeout`. Afterwards a thread keeps draining the pipe, so
/// the child never blocks on (or dies of) a full or closed stdout.
pub fn read_first_line(stdout: ChildStdout, timeout: Duration) -> Result<String, FirstLineError> {
    let (sender, receiver) = mpsc::sync_channel(1);
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(n) if n > 0 => {
                let _ = sender.send(Some(line.trim_end_matches(['\r', '\n']).to_string()));
            }
            _ => {
                let _ = sender.send(None);
                return;
            }
        }
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    match receiver.recv_timeout(timeout) {
        Ok(Some(line)) => Ok(line),
        Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => Err(FirstLineError::EndOfStream),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(FirstLineError::Timeout),
    }
}

/// A child process that is killed (SIGKILL) and reaped when the guard drops,
/// unless it already exited.
pub struct ChildGuard {
    name: String,
    child: Child,
}

impl ChildGuard {
    pub fn new(name: impl Into<String>, child: Child) -> ChildGuard {
        ChildGuard {
            name: name.into(),
            child,
        }
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: Signal) {
        send_signal(self.child.id(), signal)
            .unwrap_or_else(|e| panic!("send {signal:?} to {}: {e}", self.name));
    }

    /// Waits for the child to exit; panics after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        wait_exit(&mut self.child, timeout)
            .unwrap_or_else(|| panic!("{} did not exit within {timeout:?}", self.name))
    }

    /// The exit status if the child has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("poll child status")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// True when something accepts TCP connections at `address`.
pub fn accepts_connections(address: &str) -> bool {
    let socket_address: SocketAddr = address
        .parse()
        .unwrap_or_else(|e| panic!("{address:?} is not a socket address: {e}"));
    TcpStream::connect_timeout(&socket_address, Duration::from_secs(1)).is_ok()
}

/// Live (not zombie) processes other than this one whose command line
/// contains `needle`, as (pid, command line).
pub fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let own_pid = std::process::id();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own_pid {
            continue;
        }
        // Processes may vanish while we look; a failed read means "gone".
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let command_line = String::from_utf8_lossy(&raw).replace('\0', " ");
        if !command_line.contains(needle) {
            continue;
        }
        let zombie = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|stat| {
                // The state follows the parenthesised command name.
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.trim_start().chars().next())
            })
            .is_some_and(|state| state == 'Z' || state == 'X');
        if !zombie {
            found.push((pid, command_line.trim_end().to_string()));
        }
    }
    found
}
