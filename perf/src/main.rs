//! `dfs-perf`: end-to-end runs on a local cluster, as a user would run them.
//!
//! `dfs-perf roundtrip` starts `dfs local` (a master and N minions on
//! loopback), writes a file of random bytes, copies it in with `dfs put`,
//! drops the page cache, reads it back with `dfs get`, checks every byte by
//! CRC32C and prints the throughput of both directions.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dfs_engine::units::{format_bytes, parse_bytes};

pub(crate) use common::{drop_caches, generate, rate, sibling, work_dir, LocalCluster};

/// CRC32C of a whole file.
pub(crate) fn checksum(path: &Path) -> Result<u32> {
    Ok(common::checksum_file(path)?.1)
}

mod alternate;
mod common;
mod cp;
mod heal;
mod metadata;
mod mount;
mod mount_small;
mod nemesis;
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

/// Every command's usage.
fn all_usage() -> String {
    format!(
        "{}\n{}\n{}\n{}",
        usage(),
        throughput::usage(),
        mount::usage(),
        mount_small::usage()
    )
}

fn main() -> Result<()> {
    if std::env::args().any(|arg| arg == "-h" || arg == "--help") {
        println!("{}", all_usage());
        return Ok(());
    }
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("roundtrip") => roundtrip(parse_options(args)?),
        Some("throughput") => throughput::run(throughput::parse_options(args)?),
        Some("metadata") => metadata::run(metadata::parse_options(args)?),
        Some("cp") => cp::run(cp::parse_options(args)?),
        Some("heal") => heal::run(heal::parse_options(args)?),
        Some("nemesis") => nemesis::run(nemesis::parse_options(args)?),
        Some("mount") => {
            let args: Vec<String> = args.collect();
            if mount_small::selected(&args) {
                mount_small::run(mount_small::parse_options(args.into_iter())?)
            } else {
                mount::run(mount::parse_options(args.into_iter())?)
            }
        }
        _ => bail!("{}", all_usage()),
    }
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

fn roundtrip(options: Options) -> Result<()> {
    let (dir, _scratch) = work_dir(options.dir.as_deref())?;
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
