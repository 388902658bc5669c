//! `dfs-perf`: end-to-end runs on a local cluster, as a user would run them.
//!
//! `dfs-perf roundtrip` starts `dfs local` (a master and N minions on
//! loopback), writes a file of random bytes, copies it in with `dfs put`,
//! drops the page cache, reads it back with `dfs get`, checks every byte by
//! CRC32C and prints the throughput of both directions.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dfs_engine::units::{format_bytes, parse_bytes};

mod metadata;
mod raw_chain;
mod throughput;

struct Options {
    size_bytes: u64,
    minions: u32,
    replication: u8,
    block_size: Option<String>,
    dir: Option<PathBuf>,
}

fn usage() -> &'static str {
    "usage: dfs-perf roundtrip [--size SIZE] [--minions N] [-r N] [--block-size SIZE] [--dir DIR]"
}

fn parse_options(mut args: impl Iterator<Item = String>) -> Result<Options> {
    let mut options = Options {
        size_bytes: 1 << 30,
        minions: 3,
        replication: 3,
        block_size: None,
        dir: None,
    };
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{arg} needs a value\n{}", usage()))
        };
        match arg.as_str() {
            "--size" => options.size_bytes = parse_bytes(&value()?)?,
            "--minions" => options.minions = value()?.parse().context("--minions")?,
            "-r" | "--replication" => options.replication = value()?.parse().context("-r")?,
            "--block-size" => options.block_size = Some(value()?),
            "--dir" => options.dir = Some(PathBuf::from(value()?)),
            other => bail!("unknown option {other}\n{}", usage()),
        }
    }
    Ok(options)
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("roundtrip") => roundtrip(parse_options(args)?),
        Some("throughput") => throughput::run(throughput::parse_options(args)?),
        Some("metadata") => metadata::run(metadata::parse_options(args)?),
        _ => bail!("{}\n{}", usage(), throughput::usage()),
    }
}

/// The directory of this executable, where cargo also puts `dfs`.
fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("find own executable")?;
    let dir = exe.parent().context("executable has no directory")?;
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} not found: build the workspace first (cargo build --release)",
            path.display()
        );
    }
    Ok(path)
}

/// Stops the local cluster when dropped, even on error.
struct LocalCluster {
    child: Child,
    master: String,
}

impl LocalCluster {
    fn start(dir: &Path, minions: u32) -> Result<LocalCluster> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let mut child = Command::new(sibling("dfs")?)
            .args(["local", "--minions", &minions.to_string(), "--dir"])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(File::create(dir.join("cluster.log")).context("create cluster.log")?)
            .spawn()
            .context("start dfs local")?;
        let stdout = child.stdout.take().context("dfs local stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .context("read dfs local output")?;
        let master = line
            .trim()
            .strip_prefix("DFS_MASTER=")
            .with_context(|| {
                format!(
                    "dfs local said {line:?}; see {}",
                    dir.join("cluster.log").display()
                )
            })?
            .to_string();
        Ok(LocalCluster { child, master })
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let _ = self.child.wait();
    }
}

/// Writes `size_bytes` of xorshift random bytes; returns their CRC32C.
fn generate(path: &Path, size_bytes: u64) -> Result<u32> {
    let mut file = File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut state = 0x2545_f491_4f6c_dd1du64 ^ dfs_engine::rpc::now_ms();
    let mut buffer = vec![0u8; 1 << 20];
    let mut crc = 0;
    let mut left = size_bytes;
    while left > 0 {
        for word in buffer.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = left.min(buffer.len() as u64) as usize;
        file.write_all(&buffer[..n]).context("write source file")?;
        crc = crc32c::crc32c_append(crc, &buffer[..n]);
        left -= n as u64;
    }
    file.sync_all().context("sync source file")?;
    Ok(crc)
}

fn checksum(path: &Path) -> Result<u32> {
    let mut file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut buffer = vec![0u8; 1 << 20];
    let mut crc = 0;
    loop {
        let n = file.read(&mut buffer).context("read file back")?;
        if n == 0 {
            return Ok(crc);
        }
        crc = crc32c::crc32c_append(crc, &buffer[..n]);
    }
}

/// Drops the page cache (needs root); says so when it can't.
fn drop_caches() -> bool {
    let synced = Command::new("sync")
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    synced && std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}

fn dfs(master: &str, args: &[&str]) -> Result<Duration> {
    let started = Instant::now();
    let status = Command::new(sibling("dfs")?)
        .arg("--master")
        .arg(master)
        .args(args)
        .status()
        .with_context(|| format!("run dfs {}", args.join(" ")))?;
    if !status.success() {
        bail!("dfs {} failed: {status}", args.join(" "));
    }
    Ok(started.elapsed())
}

fn rate(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / elapsed.as_secs_f64().max(1e-9)
}

fn roundtrip(options: Options) -> Result<()> {
    let temp;
    let dir = match &options.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
            dir.clone()
        }
        None => {
            temp = TempDir::new()?;
            temp.0.clone()
        }
    };
    println!(
        "local cluster: 1 master, {} minions in {}; file {} ({}), replication {}",
        options.minions,
        dir.display(),
        format_bytes(options.size_bytes),
        options.size_bytes,
        options.replication
    );
    let source = dir.join("source.bin");
    let copy = dir.join("copy.bin");
    let source_crc = generate(&source, options.size_bytes)?;
    let cluster = LocalCluster::start(&dir.join("cluster"), options.minions)?;
    let cache_note = if drop_caches() {
        "caches dropped"
    } else {
        "could not drop caches (not root?)"
    };

    let replication = options.replication.to_string();
    let mut put_args = vec!["put", "-f", "-r", &replication];
    if let Some(block_size) = &options.block_size {
        put_args.extend(["--block-size", block_size]);
    }
    let source_text = source.to_string_lossy().to_string();
    put_args.extend([source_text.as_str(), "/roundtrip.bin"]);
    let put = dfs(&cluster.master, &put_args)?;
    drop_caches();
    let copy_text = copy.to_string_lossy().to_string();
    let get = dfs(&cluster.master, &["get", "/roundtrip.bin", &copy_text])?;
    let copy_crc = checksum(&copy)?;
    drop(cluster);
    if copy_crc != source_crc {
        bail!("VERIFY FAILED: source crc32c {source_crc:08x}, read back {copy_crc:08x}");
    }
    println!(
        "put  {:>9.1} MiB/s  ({:.2} s, durable, {cache_note})",
        rate(options.size_bytes, put),
        put.as_secs_f64()
    );
    println!(
        "get  {:>9.1} MiB/s  ({:.2} s, cold cache)",
        rate(options.size_bytes, get),
        get.as_secs_f64()
    );
    println!("verified: crc32c {source_crc:08x} matches");
    Ok(())
}

/// A temporary directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir> {
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
