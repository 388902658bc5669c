//! What every `dfs-perf` run needs: the binaries beside this one, a scratch
//! directory, a local cluster, random source files, checksums, a way to
//! drop the page cache and one to wait for the writeback to settle.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Bytes per read or write when generating or checksumming files.
pub const IO_BUFFER_BYTES: usize = 1 << 20;

/// A program cargo built beside this one (`dfs`, `dfs-master`, `dfs-cp`).
pub fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("find own executable")?;
    let path = exe
        .parent()
        .context("executable has no directory")?
        .join(name);
    if !path.exists() {
        bail!(
            "{} not found: build the workspace first (cargo build --release)",
            path.display()
        );
    }
    Ok(path)
}

/// A scratch directory under the system's temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Result<TempDir> {
        let path =
            std::env::temp_dir().join(format!("dfs-perf-{:016x}", dfs_engine::rpc::random_u64()?));
        std::fs::create_dir_all(&path).with_context(|| format!("create {}", path.display()))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The directory a run works in: `--dir` if given (kept), else a `TempDir`
/// (removed when the returned guard drops).
pub fn work_dir(dir: Option<&Path>) -> Result<(PathBuf, Option<TempDir>)> {
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
            Ok((dir.to_path_buf(), None))
        }
        None => {
            let temp = TempDir::new()?;
            Ok((temp.0.clone(), Some(temp)))
        }
    }
}

/// `dfs local` with a master and `minions` minions; stopped with SIGINT
/// (which stops its children cleanly) when dropped.
pub struct LocalCluster {
    pub child: Child,
    pub master: String,
    /// What clients prove, for a cluster with a key (`DFS_IDENTITY`).
    pub identity: Option<String>,
}

impl LocalCluster {
    pub fn start(dir: &Path, minions: u32) -> Result<LocalCluster> {
        LocalCluster::start_with(dir, minions, &[])
    }

    /// `dfs local` with `flags` too (`--key`, `--tls-data`).
    pub fn start_with(dir: &Path, minions: u32, flags: &[&str]) -> Result<LocalCluster> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let log = dir.join("cluster.log");
        let mut child = Command::new(sibling("dfs")?)
            .args(["local", "--minions", &minions.to_string(), "--dir"])
            .arg(dir)
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(File::create(&log).context("create cluster.log")?)
            .spawn()
            .context("start dfs local")?;
        let stdout = child.stdout.take().context("dfs local stdout")?;
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .context("read dfs local output")?;
        let Some(master) = line.trim().strip_prefix("DFS_MASTER=") else {
            // SAFETY: kill(2) on our own child's pid; no memory is involved.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
            let _ = child.wait();
            bail!("dfs local said {line:?}; see {}", log.display());
        };
        let master = master.to_string();
        let keyed = flags
            .iter()
            .any(|flag| ["--key", "--tls-data"].contains(flag));
        let identity = if keyed {
            let mut line = String::new();
            stdout
                .read_line(&mut line)
                .context("read dfs local output")?;
            let identity = line
                .trim()
                .strip_prefix("DFS_IDENTITY=")
                .map(str::to_string);
            if identity.is_none() {
                // SAFETY: kill(2) on our own child's pid; no memory is involved.
                unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
                let _ = child.wait();
                bail!("dfs local said {line:?} where its identity belongs");
            }
            identity
        } else {
            None
        };
        Ok(LocalCluster {
            child,
            master,
            identity,
        })
    }

    /// `dfs --master MASTER` for this cluster, proving its identity (none
    /// without a key, whatever this process's environment says).
    pub fn dfs_command(&self) -> Result<Command> {
        let mut command = Command::new(sibling("dfs")?);
        command
            .env("DFS_IDENTITY", self.identity.as_deref().unwrap_or("none"))
            .arg("--master")
            .arg(&self.master);
        Ok(command)
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let _ = self.child.wait();
    }
}

/// A `dfs-master` or `dfs-minion` on 127.0.0.1:0, killed when dropped.
pub struct Daemon {
    child: Child,
    pub address: String,
}

impl Daemon {
    /// Starts `command` with `--listen 127.0.0.1:0`, its stderr to `log`,
    /// and waits for its `listening on` line.
    pub fn start(mut command: Command, log: &Path, name: &str) -> Result<Daemon> {
        let mut child = command
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(File::create(log).with_context(|| format!("create {}", log.display()))?)
            .spawn()
            .with_context(|| format!("start {name}"))?;
        let stdout = child.stdout.take().context("daemon stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .with_context(|| format!("read {name} output"))?;
        let Some(address) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{name} said {line:?}; see {}", log.display());
        };
        Ok(Daemon {
            address: address.to_string(),
            child,
        })
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit (a master checkpoints first).
    pub fn stop(mut self) -> Result<()> {
        let pid = libc::pid_t::try_from(self.child.id()).context("pid")?;
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let status = self.child.wait().context("wait for daemon")?;
        if !status.success() {
            bail!("daemon exited with {status} after SIGTERM");
        }
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Writes `size_bytes` of xorshift random bytes (a fresh seed each run) and
/// syncs them; returns their CRC32C.
pub fn generate(path: &Path, size_bytes: u64) -> Result<u32> {
    let mut file = File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut state = 0x2545_f491_4f6c_dd1du64 ^ dfs_engine::rpc::random_u64()?;
    let mut buffer = vec![0u8; IO_BUFFER_BYTES];
    let mut crc = 0;
    let mut left = size_bytes;
    while left > 0 {
        for word in buffer.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let count = left.min(buffer.len() as u64) as usize;
        file.write_all(&buffer[..count])
            .context("write source file")?;
        crc = crc32c::crc32c_append(crc, &buffer[..count]);
        left -= count as u64;
    }
    file.sync_all().context("sync source file")?;
    Ok(crc)
}

/// Length and CRC32C of everything `reader` yields.
pub fn checksum_reader(reader: &mut dyn Read) -> Result<(u64, u32)> {
    let mut buffer = vec![0u8; IO_BUFFER_BYTES];
    let mut crc = 0;
    let mut bytes = 0u64;
    loop {
        let count = match reader.read(&mut buffer) {
            Ok(0) => return Ok((bytes, crc)),
            Ok(count) => count,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error).context("read"),
        };
        crc = crc32c::crc32c_append(crc, &buffer[..count]);
        bytes += count as u64;
    }
}

/// Length and CRC32C of a file.
pub fn checksum_file(path: &Path) -> Result<(u64, u32)> {
    let mut file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    checksum_reader(&mut file).with_context(|| format!("read {}", path.display()))
}

/// Writes back dirty pages and drops the page cache; false when not allowed
/// (not root).
pub fn drop_caches() -> bool {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}

/// Dirty + Writeback bytes at or below which the page cache counts as
/// settled: what a quiet machine's daemons and logs keep dirty.
pub const SETTLED_DIRTY_BYTES_MAX: u64 = 16 << 20;
/// Longest wait for the dirty pages to drain; past it the step runs anyway
/// and the bytes still dirty are reported with it.
pub const SETTLE_TIMEOUT_MS: u64 = 60_000;
/// How often /proc/meminfo is read while waiting.
pub const SETTLE_POLL_MS: u64 = 100;
/// Pause once the page cache is clean: the device may still be busy with
/// what it already acknowledged (its own cache, discards of removed files),
/// which the kernel does not show.
pub const SETTLE_PAUSE_MS: u64 = 1_000;

/// What `settle` found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settled {
    /// Time from the `sync` to the end of the pause.
    pub waited: Duration,
    /// Dirty + Writeback bytes when the wait ended.
    pub dirty_bytes: u64,
}

/// `sync`, then waits (bounded) until Dirty + Writeback in /proc/meminfo is
/// near zero, then pauses, so a step does not pay for the writeback of the
/// one before it.
pub fn settle() -> Result<Settled> {
    let started = Instant::now();
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    let mut dirty_bytes = dirty_bytes_now()?;
    while dirty_bytes > SETTLED_DIRTY_BYTES_MAX
        && started.elapsed() < Duration::from_millis(SETTLE_TIMEOUT_MS)
    {
        std::thread::sleep(Duration::from_millis(SETTLE_POLL_MS));
        dirty_bytes = dirty_bytes_now()?;
    }
    if dirty_bytes > SETTLED_DIRTY_BYTES_MAX {
        eprintln!(
            "settle: {} MiB still dirty or under writeback after {SETTLE_TIMEOUT_MS} ms",
            dirty_bytes >> 20
        );
    }
    std::thread::sleep(Duration::from_millis(SETTLE_PAUSE_MS));
    Ok(Settled {
        waited: started.elapsed(),
        dirty_bytes,
    })
}

/// Dirty + Writeback bytes now.
fn dirty_bytes_now() -> Result<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").context("read /proc/meminfo")?;
    dirty_bytes_in(&meminfo).context("/proc/meminfo has no Dirty or Writeback line")
}

/// Dirty + Writeback bytes in the text of /proc/meminfo (lines such as
/// `Dirty:   1234 kB`); None when either line is missing or unreadable.
pub fn dirty_bytes_in(meminfo: &str) -> Option<u64> {
    let kilobytes = |key: &str| -> Option<u64> {
        meminfo.lines().find_map(|line| {
            let value = line.strip_prefix(key)?.strip_prefix(':')?;
            value.trim().strip_suffix("kB")?.trim().parse().ok()
        })
    };
    Some((kilobytes("Dirty")? + kilobytes("Writeback")?) * 1024)
}

/// MiB per second.
pub fn rate(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / elapsed.as_secs_f64().max(1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_files_checksum_to_what_generate_said() {
        let (dir, _guard) = work_dir(None).expect("work dir");
        let path = dir.join("f");
        let crc = generate(&path, 3 * IO_BUFFER_BYTES as u64 + 5).expect("generate");
        assert_eq!(
            checksum_file(&path).expect("checksum"),
            (3 * IO_BUFFER_BYTES as u64 + 5, crc)
        );
    }

    #[test]
    fn dirty_bytes_add_dirty_and_writeback_but_not_their_lookalikes() {
        let meminfo = "MemFree:  100 kB\nDirty:  3 kB\nWriteback:  5 kB\nWritebackTmp:  7 kB\n";
        assert_eq!(dirty_bytes_in(meminfo), Some(8 * 1024));
        assert_eq!(dirty_bytes_in("Dirty:  3 kB\n"), None);
        assert_eq!(dirty_bytes_in("Dirty: x kB\nWriteback: 1 kB\n"), None);
    }
}
