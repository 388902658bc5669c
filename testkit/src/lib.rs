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
pub mod keys;
pub mod metrics;
mod mount;
pub mod nemesis;
mod netns;
mod process;
pub mod seeded;
pub mod slow_peer;
mod stat;

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use cluster::{Cluster, ClusterOptions, MinionWrapper};
pub use data::{
    assert_bytes_equal, assert_file_matches, assert_files_equal, random_bytes, write_random_file,
    RandomReader,
};
pub use mount::TmpfsMount;
pub use netns::NetworkNamespace;
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

/// A `dfs-minion` a test starts itself, with the options it wants (several
/// data directories, `--scrub-period`, `--pipeline-timeout`, ...): its
/// stderr goes to `log`, and it is killed when dropped (or when the thread
/// that started it dies).
pub struct MinionProcess {
    process: ChildGuard,
    address: String,
    log: PathBuf,
}

impl MinionProcess {
    /// Runs `dfs-minion --master MASTER --data DIR,... --listen LISTEN
    /// --heartbeat-interval 200ms EXTRA...` and waits for its `listening on`
    /// line. `listen` is `127.0.0.1:0`, or an earlier run's address to come
    /// back on the same port.
    pub fn start(
        master: &str,
        dirs: &[PathBuf],
        listen: &str,
        extra: &[&str],
        log: &std::path::Path,
    ) -> MinionProcess {
        use std::os::unix::process::CommandExt;
        let data: Vec<&str> = dirs.iter().map(|dir| utf8(dir)).collect();
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
        let mut command = std::process::Command::new(binary("dfs-minion"));
        command
            .args(["--config", "/dev/null"])
            .args(["--master", master, "--data", &data.join(",")])
            .args(["--listen", listen, "--heartbeat-interval", "200ms"])
            .args(extra)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(log_file);
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no
        // memory of the parent; the minion dies with the thread that started it.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().expect("spawn dfs-minion");
        let stdout = child.stdout.take().expect("stdout is piped");
        let process = ChildGuard::new("dfs-minion started by the test", child);
        let line = read_first_line(stdout, LISTEN_TIMEOUT).unwrap_or_else(|e| {
            panic!(
                "dfs-minion printed no first line ({e:?}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        });
        let address = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line {line:?} is not 'listening on HOST:PORT'"))
            .to_string();
        MinionProcess {
            process,
            address,
            log: log.to_path_buf(),
        }
    }

    /// The address it serves data on.
    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn signal(&self, signal: Signal) {
        self.process.signal(signal);
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.process.try_status().is_none()
    }

    /// Everything it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until its log has a line containing `pattern`; panics after
    /// `timeout` with the log.
    pub fn wait_for_log(&self, pattern: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log_text().contains(pattern) {
            if Instant::now() >= deadline {
                panic!(
                    "no log line with {pattern:?} within {timeout:?}:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Panics on ERROR (or panic) lines in its log that contain none of
    /// `allowed`.
    pub fn assert_clean_log(&self, allowed: &[&str]) {
        let text = self.log_text();
        let bad: Vec<&str> = text
            .lines()
            .filter(|line| line.contains(" ERROR ") || line.contains("panicked at"))
            .filter(|line| !allowed.iter().any(|pattern| line.contains(pattern)))
            .collect();
        assert!(
            bad.is_empty(),
            "unexpected lines in {}:\n{}",
            self.log.display(),
            bad.join("\n")
        );
    }

    /// SIGTERM; asserts a clean exit (status 0).
    pub fn stop(mut self) {
        self.process.signal(Signal::Terminate);
        let status = self.process.wait_exit(EXIT_TIMEOUT);
        assert!(
            status.success(),
            "dfs-minion exited with {status} after SIGTERM\n{}",
            self.log_text()
        );
    }
}

/// What a minion answered to a `ReadBlock` of a whole block.
#[derive(Debug, PartialEq)]
pub enum MinionRead {
    /// Every byte, each chunk's CRC32C checked.
    Data(Vec<u8>),
    /// An error answer instead of `ReadStarted`.
    Refused(dfs_engine::msg::RemoteError),
    /// The stream ended (or a chunk failed its CRC32C) after this many bytes.
    Broken { bytes_before: usize },
}

/// Reads `replica` of `length_bytes` straight from the minion at `address`,
/// as a client does.
pub fn read_block_from(
    address: &str,
    replica: dfs_engine::msg::ReplicaId,
    length_bytes: u64,
) -> MinionRead {
    use dfs_engine::msg::{Credentials, MinionRequest, MinionResponse};
    use dfs_engine::wire::{self, FrameKind};
    let block = replica.block;
    let mut connection = dfs_engine::rpc::Connection::open(address).expect("connect to the minion");
    let request = MinionRequest::ReadBlock {
        block,
        generation: replica.generation,
        offset_bytes: 0,
        length_bytes,
    };
    let answer: MinionResponse = connection
        .call(&Credentials::default(), request)
        .expect("an answer to ReadBlock");
    match answer {
        MinionResponse::ReadStarted { .. } => {}
        MinionResponse::Error(error) => return MinionRead::Refused(error),
        other => panic!("{block}: unexpected answer {other:?}"),
    }
    let mut data = Vec::new();
    let mut chunk = Vec::new();
    while (data.len() as u64) < length_bytes {
        let header = match wire::read_header(connection.reader()) {
            Ok(Some(header)) if header.kind == FrameKind::Data => header,
            _ => {
                return MinionRead::Broken {
                    bytes_before: data.len(),
                }
            }
        };
        let read = wire::read_payload(connection.reader(), &header, &mut chunk);
        if read.is_err() || crc32c::crc32c(&chunk) != header.payload_crc {
            return MinionRead::Broken {
                bytes_before: data.len(),
            };
        }
        data.extend_from_slice(&chunk);
    }
    MinionRead::Data(data)
}

/// Writes a well-formed block file of `data` as `replica` into the data
/// directory `dir` of a minion that is not running, exactly as a minion
/// writes it (a copy of another block's file would be corrupt: its footer
/// names the other block, and the minion's scrubber quarantines it).
pub fn plant_block(dir: &std::path::Path, replica: dfs_engine::msg::ReplicaId, data: &[u8]) {
    let store = dfs_engine::block_store::BlockStore::open(&[dir.to_path_buf()])
        .unwrap_or_else(|e| panic!("open {}: {e}", dir.display()));
    let mut writer = store.create(replica).expect("create the block");
    for chunk in data.chunks(dfs_engine::limits::CHUNK_BYTES as usize) {
        writer
            .write_chunk(chunk, crc32c::crc32c(chunk))
            .expect("write a chunk");
    }
    writer.seal(true).expect("seal the block");
}

/// Flips a bit of data byte `offset` of the sealed replica file at `path`
/// and rewrites everything that checks it to match: the chunk's CRC32C,
/// the footer's block CRC32C and checksum, and the file's name (which
/// carries the block CRC32C; docs/format.md, block file). What is left is
/// a replica whose minion finds nothing wrong with it, as rot and a buggy
/// or hostile minion would leave it: only the block CRC32C the master
/// recorded can tell. Returns the file's new path.
pub fn corrupt_consistently(path: &std::path::Path, offset: usize) -> std::path::PathBuf {
    use dfs_engine::block_format::{self, ParsedName, FOOTER_BYTES};
    const CHUNK: usize = dfs_engine::limits::CHUNK_BYTES as usize;
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let Some(ParsedName::Replica(mut name)) = block_format::parse_name(file_name) else {
        panic!("{} is no replica of this block format", path.display());
    };
    let mut bytes = std::fs::read(path).expect("read the block file");
    let footer_start = bytes.len() - FOOTER_BYTES;
    let le_u64 = |at: usize, bytes: &[u8]| {
        u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
    };
    let length = le_u64(footer_start + 24, &bytes) as usize;
    let chunks = length.div_ceil(CHUNK);
    assert_eq!(
        length + 4 * chunks + FOOTER_BYTES,
        bytes.len(),
        "block file layout"
    );
    bytes[offset] ^= 0x01;
    let chunk = offset / CHUNK;
    let data_end = ((chunk + 1) * CHUNK).min(length);
    let crc = crc32c::crc32c(&bytes[chunk * CHUNK..data_end]);
    let entry = length + 4 * chunk;
    bytes[entry..entry + 4].copy_from_slice(&crc.to_le_bytes());
    let crcs: Vec<u32> = bytes[length..length + 4 * chunks]
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    name.crc32c = block_format::combine_chunks(&crcs, length as u64, CHUNK as u32);
    bytes[footer_start + 36..footer_start + 40].copy_from_slice(&name.crc32c.to_le_bytes());
    let footer_crc = crc32c::crc32c(&bytes[length..footer_start + 44]);
    bytes[footer_start + 44..].copy_from_slice(&footer_crc.to_le_bytes());
    std::fs::write(path, &bytes).expect("write the block file back");
    let renamed = path.with_file_name(name.file_name());
    std::fs::rename(path, &renamed).expect("rename the block file");
    renamed
}

/// The file in `directory` whose name starts with `block`'s
/// (`blk_<id>_<generation>_<crc>`), if any.
fn replica_file_in(directory: &std::path::Path, block: &str) -> Option<std::path::PathBuf> {
    let prefix = format!("{block}_");
    std::fs::read_dir(directory)
        .ok()?
        .flatten()
        .find(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
        .map(|entry| entry.path())
}

/// The file of the sealed replica of `block` in the data directory `dir`.
pub fn sealed_replica_file(
    dir: &std::path::Path,
    block: dfs_engine::msg::BlockId,
) -> Option<std::path::PathBuf> {
    let subdir = dir
        .join(dfs_engine::block_format::BLOCKS_DIR)
        .join(dfs_engine::block_format::subdir_name(block));
    replica_file_in(&subdir, &block.to_string())
}

/// The file of a quarantined replica of `block` in the data directory `dir`.
pub fn quarantined_replica_file(
    dir: &std::path::Path,
    block: dfs_engine::msg::BlockId,
) -> Option<std::path::PathBuf> {
    replica_file_in(
        &dir.join(dfs_engine::block_format::QUARANTINE_DIR),
        &block.to_string(),
    )
}
