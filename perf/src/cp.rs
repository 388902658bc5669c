//! `dfs-perf cp`: what `dfs-cp` achieves on a local cluster, against the
//! baselines of the same run. Large file: `dfs-cp` into the cluster against
//! `cp` + `sync` on the same disk and against the cluster's own `dfs put`,
//! and out of the cluster against `dfs get`. Small files: a tree of
//! `--files` files of `--file-size` copied in with `dfs-cp` (durable, then
//! `--no-sync`), as files per second, against `cp -r` + `sync`. `--size 0`
//! skips the large file.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dfs_engine::units::{format_bytes, parse_bytes};

use crate::checksum;
use crate::common::{drop_caches, generate, rate, sibling, work_dir, LocalCluster};

/// Files per directory of the small-file tree.
const FILES_PER_DIRECTORY: u64 = 1000;

pub struct Options {
    size_bytes: u64,
    files: u64,
    file_bytes: u64,
    minions: u32,
    jobs: Option<u32>,
    block_size: Option<String>,
    dir: Option<PathBuf>,
}

pub fn usage() -> &'static str {
    "usage: dfs-perf cp [--size SIZE] [--files N] [--file-size SIZE] [--minions N] [-j N] [--block-size SIZE] [--dir DIR]"
}

pub fn parse_options(mut args: impl Iterator<Item = String>) -> Result<Options> {
    let mut options = Options {
        size_bytes: 1 << 30,
        files: 100_000,
        file_bytes: 4096,
        minions: 3,
        jobs: None,
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
            "--files" => options.files = value()?.parse().context("--files")?,
            "--file-size" => options.file_bytes = parse_bytes(&value()?)?,
            "--minions" => options.minions = value()?.parse().context("--minions")?,
            "-j" => options.jobs = Some(value()?.parse().context("-j")?),
            "--block-size" => options.block_size = Some(value()?),
            "--dir" => options.dir = Some(PathBuf::from(value()?)),
            other => bail!("unknown option {other}\n{}", usage()),
        }
    }
    Ok(options)
}

/// Runs a command to success and returns how long it took.
fn timed(command: &mut Command, what: &str) -> Result<Duration> {
    let started = Instant::now();
    let output = command.output().with_context(|| format!("run {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(started.elapsed())
}

/// Drops the page cache so a step starts cold.
fn cold() {
    if !drop_caches() {
        eprintln!("dfs-perf: cannot drop the page cache (not root?); results are warmer");
    }
}

/// Rounds of the cluster's put and dfs-cp of the large file.
const LARGE_ROUNDS: usize = 2;

fn sync_all() -> Result<()> {
    timed(&mut Command::new("sync"), "sync").map(|_| ())
}

fn text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

pub fn run(options: Options) -> Result<()> {
    let (dir, _scratch) = work_dir(options.dir.as_deref())?;
    let cluster = LocalCluster::start(&dir.join("cluster"), options.minions)?;
    let dfs_cp = |args: &[&str]| -> Command {
        let mut command = Command::new(sibling("dfs-cp").unwrap_or_else(|_| "dfs-cp".into()));
        command.arg("--master").arg(&cluster.master).arg("-q");
        if let Some(jobs) = options.jobs {
            command.arg("-j").arg(jobs.to_string());
        }
        if let Some(block_size) = &options.block_size {
            command.arg("--block-size").arg(block_size);
        }
        command.args(args);
        command
    };
    let dfs = |args: &[&str]| -> Result<Command> {
        let mut command = Command::new(sibling("dfs")?);
        command.arg("--master").arg(&cluster.master).args(args);
        Ok(command)
    };
    println!(
        "local cluster: 1 master, {} minions in {}; replication 3; {} cores",
        options.minions,
        dir.display(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    if options.size_bytes > 0 {
        large_file(&options, &dir, &dfs_cp, &dfs)?;
    }
    small_files(&options, &dir, &dfs_cp)
}

/// `dfs-cp` of one large file in and out, against `cp` + `sync`, `dfs put`
/// and `dfs get`.
fn large_file(
    options: &Options,
    dir: &Path,
    dfs_cp: &dyn Fn(&[&str]) -> Command,
    dfs: &dyn Fn(&[&str]) -> Result<Command>,
) -> Result<()> {
    let source = dir.join("large.bin");
    let source_crc = generate(&source, options.size_bytes)?;
    let size = options.size_bytes;
    println!("large file: {} ({size} bytes)", format_bytes(size));
    // Every step starts with cold caches; the cluster's put and dfs-cp
    // alternate over `LARGE_ROUNDS` rounds and the faster of each counts,
    // so one slow moment of the shared disk does not decide the ratio.
    let cp_copy = dir.join("large.cp");
    cold();
    let started = Instant::now();
    timed(Command::new("cp").arg(&source).arg(&cp_copy), "cp")?;
    sync_all()?;
    let cp_sync = started.elapsed();
    std::fs::remove_file(&cp_copy).context("remove the cp copy")?;

    let mut put_args = vec!["put".to_string(), "-f".into()];
    if let Some(block_size) = &options.block_size {
        put_args.extend(["--block-size".into(), block_size.clone()]);
    }
    put_args.extend([text(&source), "/large.put".into()]);
    let put_refs: Vec<&str> = put_args.iter().map(String::as_str).collect();
    let (mut put, mut cp_in) = (Duration::MAX, Duration::MAX);
    for round in 0..LARGE_ROUNDS {
        cold();
        put = put.min(timed(&mut dfs(&put_refs)?, "dfs put")?);
        cold();
        let target = format!("dfs:///large.cp{round}");
        cp_in = cp_in.min(timed(&mut dfs_cp(&[&text(&source), &target]), "dfs-cp in")?);
    }
    let get_copy = dir.join("large.get");
    cold();
    let get = timed(
        &mut dfs(&["get", "/large.cp0", &text(&get_copy)])?,
        "dfs get",
    )?;
    std::fs::remove_file(&get_copy).context("remove the get copy")?;
    let out_copy = dir.join("large.out");
    cold();
    let cp_out = timed(
        &mut dfs_cp(&["dfs:///large.cp0", &text(&out_copy)]),
        "dfs-cp out",
    )?;
    if checksum(&out_copy)? != source_crc {
        bail!("VERIFY FAILED: the copy out of the cluster differs from the source");
    }
    std::fs::remove_file(&out_copy).context("remove the dfs-cp copy")?;
    let show = |name: &str, elapsed: Duration| {
        println!(
            "  {name:<24} {:>9.1} MiB/s  ({:.2} s)",
            rate(size, elapsed),
            elapsed.as_secs_f64()
        )
    };
    show("cp + sync (local disk)", cp_sync);
    show("dfs put (best of 2)", put);
    show("dfs-cp in (best of 2)", cp_in);
    show("dfs get", get);
    show("dfs-cp cluster -> local", cp_out);
    println!(
        "  ratios: dfs-cp in / cp+sync = {:.2}, dfs-cp in / dfs put = {:.2}, dfs-cp out / dfs get = {:.2}",
        cp_sync.as_secs_f64() / cp_in.as_secs_f64(),
        put.as_secs_f64() / cp_in.as_secs_f64(),
        get.as_secs_f64() / cp_out.as_secs_f64()
    );
    std::fs::remove_file(&source).context("remove the large source")?;
    timed(
        &mut dfs(&["rm", "/large.put", "/large.cp0", "/large.cp1"])?,
        "dfs rm",
    )?;
    Ok(())
}

/// `dfs-cp` of a tree of many small files, against `cp -r` + `sync`.
fn small_files(options: &Options, dir: &Path, dfs_cp: &dyn Fn(&[&str]) -> Command) -> Result<()> {
    let tree = dir.join("small");
    let mut buffer = vec![0u8; usize::try_from(options.file_bytes).context("--file-size")?];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for index in 0..options.files {
        let directory = tree.join(format!("d{:04}", index / FILES_PER_DIRECTORY));
        if index % FILES_PER_DIRECTORY == 0 {
            std::fs::create_dir_all(&directory)
                .with_context(|| format!("create {}", directory.display()))?;
        }
        for byte in buffer.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *byte = state as u8;
        }
        let path = directory.join(format!("f{index:06}"));
        std::fs::write(&path, &buffer).with_context(|| format!("write {}", path.display()))?;
    }
    sync_all()?;
    println!(
        "small files: {} files of {} in directories of {FILES_PER_DIRECTORY}",
        options.files,
        format_bytes(options.file_bytes)
    );
    let files = options.files as f64;
    cold();
    let durable = timed(
        &mut dfs_cp(&[&text(&tree), "dfs:///durable/"]),
        "dfs-cp small",
    )?;
    cold();
    let no_sync = timed(
        &mut dfs_cp(&["--no-sync", &text(&tree), "dfs:///no-sync/"]),
        "dfs-cp --no-sync small",
    )?;
    // The rerun checks the durable copy: a file is skipped only when its
    // size and CRC32C in the cluster are the source's.
    cold();
    let started = Instant::now();
    let output = dfs_cp(&["--json", &text(&tree), "dfs:///durable/"])
        .output()
        .context("run dfs-cp rerun")?;
    let rerun = started.elapsed();
    let summary = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() || !summary.contains(&format!("\"skipped\":{}", options.files)) {
        bail!(
            "VERIFY FAILED: the rerun did not skip all {} files: {summary}{}",
            options.files,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // The baseline comes last: removing its copy frees as many inodes as
    // the tree has, and an ext4 without a journal scans recently freed
    // inodes on every create for the next minute or more, which would slow
    // whatever ran next.
    let tree_copy = dir.join("small.cp");
    cold();
    let started = Instant::now();
    timed(
        Command::new("cp").arg("-r").arg(&tree).arg(&tree_copy),
        "cp -r",
    )?;
    sync_all()?;
    let cp_r = started.elapsed();
    std::fs::remove_dir_all(&tree_copy).context("remove the cp -r copy")?;
    let show_rate = |name: &str, elapsed: Duration| {
        println!(
            "  {name:<24} {:>9.0} files/s  ({:.2} s)",
            files / elapsed.as_secs_f64().max(1e-9),
            elapsed.as_secs_f64()
        )
    };
    show_rate("cp -r + sync", cp_r);
    show_rate("dfs-cp (durable)", durable);
    show_rate("dfs-cp --no-sync", no_sync);
    show_rate("dfs-cp rerun (all skip)", rerun);
    println!(
        "  ratios: dfs-cp / cp -r+sync = {:.3}, --no-sync / durable = {:.2}",
        cp_r.as_secs_f64() / durable.as_secs_f64(),
        durable.as_secs_f64() / no_sync.as_secs_f64()
    );
    Ok(())
}
