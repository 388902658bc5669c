//! `dfs-perf throughput`: the data path against what the same disk and
//! loopback do without dfs, measured side by side in one run.
//!
//! It starts `dfs local` (1 master, 3 minions on 127.0.0.1) and, for each
//! `--size`, compares four pairs (ours, baseline): durable `dfs put -r 3`
//! with three `cp` + `sync`, `dfs put -r 3 --no-sync` with the raw chain
//! (`raw_chain`, splice/tee), and cold `dfs get -` and cold `dfs cat` with
//! a cold local `cat` (all three read into a pipe that this harness
//! counts and checksums) of a local copy written just after the cluster's
//! file.
//!
//! Each pair runs `--rounds` rounds of both sides, and the order alternates
//! (ours then baseline, then baseline then ours, ...): whatever a step
//! leaves behind that the settle below does not catch (the device's own
//! cache, discards of removed files) then weighs on each side as often,
//! instead of always on the second. Every step starts from the same state:
//! the outputs of both sides removed first (a removed cluster file's
//! replicas gone from the minions' disks), `sync`, the page cache dropped,
//! for writes the source read once (warm source), then `common::settle`
//! (Dirty + Writeback near zero, bounded, and a pause). Results are the
//! median of each side, the ratio of the medians and the spread (min-max)
//! of each side and of the per-round ratios (`alternate`, which runs the
//! rounds for `mount` too), with the median CPU seconds per GiB of the
//! client and of the minions.
//!
//! A disk check runs `dd ... oflag=direct conv=fsync` and a cold buffered
//! `dd` read (a sequential reader through the page cache, as `cat` is) at
//! the start and at the end; the run fails when a baseline's median moved
//! its bytes on or off the disk at less than a third of the better dd
//! figure for its direction: such a baseline ran in a worse state than the
//! disk allows, and would flatter us. Every result
//! is checked by CRC32C against the source. `--json PATH` writes every
//! round's raw numbers.

pub(crate) mod process;
pub(crate) mod render;
mod tls;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dfs_engine::units::{format_bytes, parse_bytes};

use crate::alternate::{
    self, check_rounds, json_number, json_option, mib_per_second, Measured, Side, StepPair,
    ROUNDS_DEFAULT,
};
use crate::common::{self, checksum_file, drop_caches, generate, settle, work_dir, Settled};
use crate::raw_chain;
use process::{children, command_name, process_cpu_seconds, self_cpu_seconds, timed_child, Timed};
use render::{render_disk_checks, render_json, render_table, JsonRun};

/// Minions of the local cluster: a replication-3 pipeline needs three.
pub(crate) const MINION_COUNT: u32 = 3;
/// Copies each write baseline makes, as a replication-3 put does.
const COPY_COUNT: usize = 3;
const SIZE_BYTES_DEFAULT: u64 = 1 << 30;
/// dd's block size for the disk check (`bs=4M`); also the least `--size`.
const DISK_CHECK_BLOCK_BYTES: u64 = 4 << 20;
/// Most bytes the disk check writes and reads each time.
const DISK_CHECK_BYTES_MAX: u64 = 1 << 30;
/// A baseline moving bytes to or from the disk at less than this share of
/// what dd measured fails the run.
const BASELINE_DISK_SHARE_MIN: f64 = 1.0 / 3.0;
/// A cold read baseline faster than this many times dd's direct read was
/// served by a cache below this machine (a VM host's page cache): worth a
/// note, since both sides' cold reads may then be the cache's.
const READ_ABOVE_DISK_FACTOR: f64 = 1.5;
/// Longest wait for the minions to delete the replicas of a removed file.
const REPLICA_DELETION_TIMEOUT_MS: u64 = 120_000;
const REPLICA_DELETION_POLL_MS: u64 = 100;
/// The cluster file each put writes, and the one the reads read.
pub(crate) const PUT_REMOTE: &str = "/put.bin";
pub(crate) const READ_REMOTE: &str = "/read.bin";

pub struct Options {
    sizes_bytes: Vec<u64>,
    rounds: usize,
    dir: Option<PathBuf>,
    json: Option<PathBuf>,
    /// Compare a cluster with `--tls-data` against one without (`tls`).
    tls: bool,
}

impl Options {
    /// The sizes, as the run's first line says them.
    fn sizes_text(&self) -> String {
        self.sizes_bytes
            .iter()
            .map(|&size| format_bytes(size))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub fn usage() -> &'static str {
    "usage: dfs-perf throughput [--size SIZE ...] [--rounds N] [--dir DIR] [--json PATH] [--tls]\n  \
     --size may repeat (default 1G); --rounds is odd (default 3); --tls compares put and get \
     with block data over TLS against plain (both clusters with a key)"
}

pub fn parse_options(mut args: impl Iterator<Item = String>) -> Result<Options> {
    let mut options = Options {
        sizes_bytes: Vec::new(),
        rounds: ROUNDS_DEFAULT,
        dir: None,
        json: None,
        tls: false,
    };
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{arg} needs a value\n{}", usage()))
        };
        match arg.as_str() {
            "--size" => options.sizes_bytes.push(parse_bytes(&value()?)?),
            "--rounds" => options.rounds = value()?.parse().context("--rounds")?,
            "--dir" => options.dir = Some(PathBuf::from(value()?)),
            "--json" => options.json = Some(PathBuf::from(value()?)),
            "--tls" => options.tls = true,
            other => bail!("unknown option {other}\n{}", usage()),
        }
    }
    if options.sizes_bytes.is_empty() {
        options.sizes_bytes.push(SIZE_BYTES_DEFAULT);
    }
    if options
        .sizes_bytes
        .iter()
        .any(|&size| size < DISK_CHECK_BLOCK_BYTES)
    {
        bail!(
            "--size must be at least {}",
            format_bytes(DISK_CHECK_BLOCK_BYTES)
        );
    }
    check_rounds(options.rounds)?;
    Ok(options)
}

/// One timed step of a pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    PutDurable,
    PutNoSync,
    CopiesAndSync,
    RawChain,
    Get,
    Cat,
    LocalCat,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::PutDurable => "put r=3 durable",
            Step::PutNoSync => "put r=3 --no-sync",
            Step::CopiesAndSync => "3x cp + sync",
            Step::RawChain => "raw chain (splice/tee)",
            Step::Get => "get cold",
            Step::Cat => "dfs cat cold",
            Step::LocalCat => "cat cold",
        }
    }

    /// Writes start from a warm source; reads from a cold cache.
    fn writes(self) -> bool {
        matches!(
            self,
            Step::PutDurable | Step::PutNoSync | Step::CopiesAndSync | Step::RawChain
        )
    }

    /// Ours: the cluster's minions work for it.
    fn uses_cluster(self) -> bool {
        matches!(
            self,
            Step::PutDurable | Step::PutNoSync | Step::Get | Step::Cat
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Pair {
    ours: Step,
    baseline: Step,
    /// The ratio of medians the issue asks for.
    target: f64,
}

impl Pair {
    fn step(self, side: Side) -> Step {
        match side {
            Side::A => self.ours,
            Side::B => self.baseline,
        }
    }

    /// Bytes the baseline moves to (writes) or from (reads) the disk per
    /// byte of the file.
    fn baseline_disk_bytes_per_byte(self) -> f64 {
        if self.baseline.writes() {
            COPY_COUNT as f64
        } else {
            1.0
        }
    }
}

impl StepPair for Pair {
    const SIDES: [&'static str; 2] = ["ours", "baseline"];

    fn step_name(self, side: Side) -> &'static str {
        self.step(side).name()
    }

    fn json_fields(self) -> Vec<(&'static str, String)> {
        vec![("target", json_number(self.target))]
    }
}

const PAIRS: [Pair; 4] = [
    Pair {
        ours: Step::PutDurable,
        baseline: Step::CopiesAndSync,
        target: 1.2,
    },
    Pair {
        ours: Step::PutNoSync,
        baseline: Step::RawChain,
        target: 0.8,
    },
    Pair {
        ours: Step::Get,
        baseline: Step::LocalCat,
        target: 1.0,
    },
    Pair {
        ours: Step::Cat,
        baseline: Step::LocalCat,
        target: 1.0,
    },
];

/// One run of one step.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Sample {
    seconds: f64,
    /// CPU seconds of the client process (or of the baseline's processes).
    client_cpu_seconds: f64,
    /// CPU seconds of all minions together; None for baselines.
    minion_cpu_seconds: Option<f64>,
    settled: Settled,
}

impl Measured for Sample {
    fn seconds(&self) -> f64 {
        self.seconds
    }

    fn settled(&self) -> Settled {
        self.settled
    }

    fn json_fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("client_cpu_seconds", json_number(self.client_cpu_seconds)),
            ("minion_cpu_seconds", json_option(self.minion_cpu_seconds)),
        ]
    }
}

/// Side A is ours, B the baseline.
type PairReport = alternate::PairReport<Pair, Sample>;
type SizeReport = alternate::SizeReport<Pair, Sample>;

/// What dd did (a direct write, a cold buffered read), in MiB/s.
#[derive(Clone, Copy, Debug, PartialEq)]
struct DiskRates {
    write: f64,
    read: f64,
}

/// A baseline's median against the disk check.
#[derive(Clone, Debug, PartialEq)]
struct DiskCheck {
    pair: Pair,
    size_bytes: u64,
    /// Bytes the baseline's median moved to or from the disk per second.
    baseline_disk_mib_per_second: f64,
    /// The better of the two dd figures for the same direction.
    disk_mib_per_second: f64,
}

impl DiskCheck {
    fn passed(&self) -> bool {
        self.baseline_disk_mib_per_second >= self.disk_mib_per_second * BASELINE_DISK_SHARE_MIN
    }

    fn read_above_disk(&self) -> bool {
        !self.pair.baseline.writes()
            && self.baseline_disk_mib_per_second > self.disk_mib_per_second * READ_ABOVE_DISK_FACTOR
    }
}

/// The random file every step of one size starts from.
pub(crate) struct Source {
    pub(crate) path: PathBuf,
    pub(crate) size_bytes: u64,
    pub(crate) crc: u32,
}

impl Source {
    pub(crate) fn text(&self) -> Result<&str> {
        text(&self.path)
    }

    /// Printed before the source's rounds.
    pub(crate) fn heading(&self) -> String {
        format!(
            "\n{} ({} bytes), source crc32c {:08x}",
            format_bytes(self.size_bytes),
            self.size_bytes,
            self.crc
        )
    }
}

pub fn run(options: Options) -> Result<()> {
    if options.tls {
        return tls::run(options);
    }
    let (dir, _scratch) = work_dir(options.dir.as_deref())?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    println!(
        "throughput: {} in {}; 1 master, {MINION_COUNT} minions on 127.0.0.1; {} rounds, order alternating",
        options.sizes_text(),
        dir.display(),
        options.rounds
    );
    if !drop_caches() {
        bail!("can't drop the page cache (needs root): the cold numbers would be lies");
    }
    let load_before = load_average();
    let mut sources = Vec::new();
    for (index, &size_bytes) in options.sizes_bytes.iter().enumerate() {
        let path = dir.join(format!("source-{index}.bin"));
        let crc = generate(&path, size_bytes)?;
        sources.push(Source {
            path,
            size_bytes,
            crc,
        });
    }
    let first = sources.first().context("no --size")?;
    let disk_start = disk_check(&dir, first)?;
    print_disk("start", disk_start);

    let mut bench = Bench::start(&dir)?;
    let mut reports = Vec::new();
    for source in &sources {
        reports.push(bench.measure_size(source, options.rounds)?);
    }
    drop(bench);

    let disk_end = disk_check(&dir, first)?;
    print_disk("end", disk_end);
    let load_after = load_average();
    let disk = DiskRates {
        write: disk_start.write.max(disk_end.write),
        read: disk_start.read.max(disk_end.read),
    };
    println!();
    for report in &reports {
        print!("{}", render_table(report));
    }
    let checks = disk_checks(&reports, disk);
    print!("{}", render_disk_checks(&checks));
    // Other work on the machine skews every number: say how busy it was.
    println!("load average (1 min): {load_before:.2} at the start, {load_after:.2} at the end");
    println!("verified: every result matches its source's crc32c");
    println!("command: {command}");
    if let Some(path) = &options.json {
        let json = render_json(&JsonRun {
            command: &command,
            rounds: options.rounds,
            disk: [disk_start, disk_end],
            load: [load_before, load_after],
            reports: &reports,
            checks: &checks,
        });
        std::fs::write(path, json).with_context(|| format!("write {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    let failed: Vec<String> = checks
        .iter()
        .filter(|check| !check.passed())
        .map(|check| {
            format!(
                "{} at {}",
                check.pair.baseline.name(),
                format_bytes(check.size_bytes)
            )
        })
        .collect();
    if !failed.is_empty() {
        bail!(
            "DISK CHECK FAILED: {} ran below a third of what dd measured on the same disk; the ratios are not honest",
            failed.join(", ")
        );
    }
    Ok(())
}

fn print_disk(when: &str, rates: DiskRates) {
    println!(
        "disk at the {when} (dd): direct write {:.1} MiB/s, cold buffered read {:.1} MiB/s",
        rates.write, rates.read
    );
}

fn text(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))
}

/// The local cluster and the state of its files and the outputs between
/// steps.
pub(crate) struct Bench {
    dir: PathBuf,
    pub(crate) cluster: LocalCluster,
    /// `PUT_REMOTE` exists (a put wrote it and it was not removed since).
    pub(crate) put_written: bool,
    /// Replica files the minions hold when no put output exists (those of
    /// `READ_REMOTE` while the reads run).
    pub(crate) replica_files_kept: usize,
}

impl Bench {
    pub(crate) fn start(dir: &Path) -> Result<Bench> {
        Bench::start_with(dir, "cluster", &[])
    }

    /// A bench whose cluster is `dfs local FLAGS` in `dir/name`.
    pub(crate) fn start_with(dir: &Path, name: &str, flags: &[&str]) -> Result<Bench> {
        Ok(Bench {
            dir: dir.to_path_buf(),
            cluster: LocalCluster::start(&dir.join(name), flags)?,
            put_written: false,
            replica_files_kept: 0,
        })
    }

    /// Every pair at one size: the writes first, then the reads of a
    /// file written once; nothing of this size is left afterwards.
    fn measure_size(&mut self, source: &Source, rounds: usize) -> Result<SizeReport> {
        println!("{}", source.heading());
        let mut pairs = Vec::new();
        for pair in PAIRS.iter().filter(|pair| pair.ours.writes()) {
            pairs.push(self.measure_pair(source, *pair, rounds)?);
        }
        self.remove_outputs()?;
        // Both sides read files written just now, the local one last: a
        // cache below this machine (a VM host's) that still holds recent
        // writes then favours the baseline, never us.
        self.dfs(&["put", "-r", "3", source.text()?, READ_REMOTE], false)?;
        self.replica_files_kept = replica_file_count(&self.cluster.dir)?;
        let read_local = read_local_path(&self.dir);
        copies(&source.path, std::slice::from_ref(&read_local))?;
        for pair in PAIRS.iter().filter(|pair| !pair.ours.writes()) {
            pairs.push(self.measure_pair(source, *pair, rounds)?);
        }
        std::fs::remove_file(&read_local)
            .with_context(|| format!("remove {}", read_local.display()))?;
        self.dfs(&["rm", READ_REMOTE], false)?;
        self.replica_files_kept = 0;
        self.wait_for_replica_files()?;
        Ok(SizeReport {
            size_bytes: source.size_bytes,
            source_crc: source.crc,
            pairs,
        })
    }

    fn measure_pair(&mut self, source: &Source, pair: Pair, rounds: usize) -> Result<PairReport> {
        alternate::measure_pair(pair, rounds, source.size_bytes, |side| {
            self.measure(source, pair.step(side))
        })
    }

    /// Brings the machine to the common start state, runs `step` timed and
    /// checks its result against the source.
    fn measure(&mut self, source: &Source, step: Step) -> Result<Sample> {
        self.remove_outputs()?;
        cold()?;
        if step.writes() {
            warm(source)?;
        }
        let settled = settle()?;
        let minions_before = self.cluster.minion_cpu_seconds()?;
        let timed = self.run_timed(source, step)?;
        let minions_after = self.cluster.minion_cpu_seconds()?;
        self.verify(source, step, timed.read)?;
        Ok(Sample {
            seconds: timed.elapsed.as_secs_f64(),
            client_cpu_seconds: timed.cpu_seconds,
            minion_cpu_seconds: step
                .uses_cluster()
                .then_some(minions_after - minions_before),
            settled,
        })
    }

    fn run_timed(&mut self, source: &Source, step: Step) -> Result<Timed> {
        match step {
            Step::PutDurable | Step::PutNoSync => {
                let mut args = vec!["put", "-r", "3"];
                if step == Step::PutNoSync {
                    args.push("--no-sync");
                }
                args.extend([source.text()?, PUT_REMOTE]);
                self.put_written = true;
                self.dfs(&args, false)
            }
            Step::CopiesAndSync => copies(&source.path, &copy_targets(&self.dir)),
            Step::RawChain => chain(&source.path, &chain_targets(&self.dir)),
            Step::Get => self.dfs(&["get", READ_REMOTE, "-"], true),
            Step::Cat => self.dfs(&["cat", READ_REMOTE], true),
            Step::LocalCat => {
                let mut command = Command::new("cat");
                command.arg(read_local_path(&self.dir));
                timed_child(command, true)
            }
        }
    }

    /// Every byte of the step's result against the source's CRC32C
    /// (untimed).
    fn verify(&mut self, source: &Source, step: Step, read: Option<(u64, u32)>) -> Result<()> {
        let name = step.name();
        match step {
            Step::PutDurable | Step::PutNoSync => {
                let read_back = self.dfs(&["get", PUT_REMOTE, "-"], true)?;
                verify(name, source, read_back.read)
            }
            Step::CopiesAndSync => verify_files(name, source, &copy_targets(&self.dir)),
            Step::RawChain => verify_files(name, source, &chain_targets(&self.dir)),
            Step::Get | Step::Cat | Step::LocalCat => verify(name, source, read),
        }
    }

    /// Removes what any write step left: local copies, and the put's cluster
    /// file once its replicas are gone from the minions' disks, so no
    /// deletion runs during the next step.
    pub(crate) fn remove_outputs(&mut self) -> Result<()> {
        for target in copy_targets(&self.dir)
            .iter()
            .chain(&chain_targets(&self.dir))
        {
            match std::fs::remove_file(target) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    return Err(error).with_context(|| format!("remove {}", target.display()))
                }
                _ => {}
            }
        }
        if self.put_written {
            self.dfs(&["rm", PUT_REMOTE], false)?;
            self.put_written = false;
            self.wait_for_replica_files()?;
        }
        Ok(())
    }

    pub(crate) fn wait_for_replica_files(&self) -> Result<()> {
        let started = Instant::now();
        loop {
            let count = replica_file_count(&self.cluster.dir)?;
            if count == self.replica_files_kept {
                return Ok(());
            }
            if started.elapsed() >= Duration::from_millis(REPLICA_DELETION_TIMEOUT_MS) {
                bail!(
                    "the minions hold {count} replica files {REPLICA_DELETION_TIMEOUT_MS} ms after dfs rm, expected {}",
                    self.replica_files_kept
                );
            }
            std::thread::sleep(Duration::from_millis(REPLICA_DELETION_POLL_MS));
        }
    }

    /// Runs one `dfs` command, timed; with `checksum_stdout` its standard
    /// output is checksummed as it arrives.
    pub(crate) fn dfs(&self, args: &[&str], checksum_stdout: bool) -> Result<Timed> {
        let mut command = self.cluster.local.dfs_command()?;
        command.args(args);
        timed_child(command, checksum_stdout).with_context(|| format!("dfs {}", args.join(" ")))
    }
}

/// The local file the cold `cat` baseline reads: a copy of the source
/// written next to the cluster's file, as recent as it.
fn read_local_path(dir: &Path) -> PathBuf {
    dir.join("read-local.bin")
}

fn copy_targets(dir: &Path) -> Vec<PathBuf> {
    (0..COPY_COUNT)
        .map(|index| dir.join(format!("copy-{index}.bin")))
        .collect()
}

fn chain_targets(dir: &Path) -> Vec<PathBuf> {
    (0..COPY_COUNT)
        .map(|index| dir.join(format!("chain-{index}.bin")))
        .collect()
}

/// `sync` and an empty page cache.
pub(crate) fn cold() -> Result<()> {
    if !drop_caches() {
        bail!("can't drop the page cache");
    }
    Ok(())
}

/// Reads the source once into the page cache, checking it is unchanged.
pub(crate) fn warm(source: &Source) -> Result<()> {
    let (bytes, crc) = checksum_file(&source.path)?;
    verify_read("source", source, bytes, crc)
}

/// Files named `blk_...` (sealed replicas) below `dir`, at any depth.
pub(crate) fn replica_file_count(dir: &Path) -> Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // A directory removed while we walk (a minion's tmp/) holds nothing.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(error).with_context(|| format!("list {}", dir.display())),
    };
    let mut count = 0;
    for entry in entries {
        let entry = entry.with_context(|| format!("list {}", dir.display()))?;
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            count += replica_file_count(&entry.path())?;
        } else if entry.file_name().to_string_lossy().starts_with("blk_") {
            count += 1;
        }
    }
    Ok(count)
}

pub(crate) fn verify(name: &str, source: &Source, read: Option<(u64, u32)>) -> Result<()> {
    let (bytes, crc) = read.with_context(|| format!("{name}: no output was read"))?;
    verify_read(name, source, bytes, crc)
}

fn verify_read(name: &str, source: &Source, bytes: u64, crc: u32) -> Result<()> {
    if bytes != source.size_bytes || crc != source.crc {
        bail!(
            "VERIFY FAILED in {name}: {bytes} bytes with crc32c {crc:08x}, expected {} bytes with {:08x}",
            source.size_bytes,
            source.crc
        );
    }
    Ok(())
}

fn verify_files(name: &str, source: &Source, targets: &[PathBuf]) -> Result<()> {
    for target in targets {
        let (bytes, crc) = checksum_file(target)?;
        verify_read(name, source, bytes, crc)?;
    }
    Ok(())
}

/// `dfs local` and the pids of its minions.
pub(crate) struct LocalCluster {
    pub(crate) local: common::LocalCluster,
    pub(crate) dir: PathBuf,
    minion_pids: Vec<u32>,
}

impl LocalCluster {
    /// `dfs local` in `dir` with `flags` (`--tls-data`, say).
    fn start(dir: &Path, flags: &[&str]) -> Result<LocalCluster> {
        let local = common::LocalCluster::start_with(dir, MINION_COUNT, flags)?;
        let minion_pids: Vec<u32> = children(local.child.id())?
            .into_iter()
            .filter(|&pid| command_name(pid).is_some_and(|name| name == "dfs-minion"))
            .collect();
        if minion_pids.len() != MINION_COUNT as usize {
            bail!(
                "found {} minion processes under dfs local, expected {MINION_COUNT}",
                minion_pids.len()
            );
        }
        Ok(LocalCluster {
            local,
            dir: dir.to_path_buf(),
            minion_pids,
        })
    }

    pub(crate) fn minion_cpu_seconds(&self) -> Result<f64> {
        self.minion_pids
            .iter()
            .map(|&pid| process_cpu_seconds(pid))
            .sum()
    }
}

/// `cp source target` for each target, then `sync`, timed as one.
fn copies(source: &Path, targets: &[PathBuf]) -> Result<Timed> {
    let started = Instant::now();
    let mut cpu_seconds = 0.0;
    for target in targets {
        let mut command = Command::new("cp");
        command.arg(source).arg(target);
        cpu_seconds += timed_child(command, false)?.cpu_seconds;
    }
    cpu_seconds += timed_child(Command::new("sync"), false)?.cpu_seconds;
    Ok(Timed {
        elapsed: started.elapsed(),
        cpu_seconds,
        read: None,
    })
}

/// The raw chain into `targets` (not synced, as `--no-sync`).
fn chain(source: &Path, targets: &[PathBuf]) -> Result<Timed> {
    let cpu_before = self_cpu_seconds();
    let started = Instant::now();
    raw_chain::run(source, targets)?;
    Ok(Timed {
        elapsed: started.elapsed(),
        cpu_seconds: self_cpu_seconds() - cpu_before,
        read: None,
    })
}

/// dd's sequential write (direct, then fsync) and read (buffered, as a
/// local `cat` reads, so the check compares like with like) of up to
/// `DISK_CHECK_BYTES_MAX` of the source, each from the start state of a
/// step: warm source for the write, cold cache for the read.
fn disk_check(dir: &Path, source: &Source) -> Result<DiskRates> {
    let target = dir.join("disk-check.bin");
    let blocks = source.size_bytes.min(DISK_CHECK_BYTES_MAX) / DISK_CHECK_BLOCK_BYTES;
    let bytes = blocks * DISK_CHECK_BLOCK_BYTES;
    let dd = |input: &Path, output: &Path, flags: &[&str]| -> Result<f64> {
        let mut command = Command::new("dd");
        command
            .arg(format!("if={}", text(input)?))
            .arg(format!("of={}", text(output)?))
            .arg(format!("bs={DISK_CHECK_BLOCK_BYTES}"))
            .arg(format!("count={blocks}"))
            .args(flags)
            .arg("status=none");
        Ok(mib_per_second(
            bytes,
            timed_child(command, false)?.elapsed.as_secs_f64(),
        ))
    };
    cold()?;
    warm(source)?;
    settle()?;
    // conv=fsync: the device's cache is flushed too, as `sync` does after cp.
    let write = dd(&source.path, &target, &["oflag=direct", "conv=fsync"])?;
    cold()?;
    settle()?;
    let read = dd(&target, Path::new("/dev/null"), &[])?;
    std::fs::remove_file(&target).with_context(|| format!("remove {}", target.display()))?;
    Ok(DiskRates { write, read })
}

/// Each baseline's median against what dd did in the same direction.
fn disk_checks(reports: &[SizeReport], disk: DiskRates) -> Vec<DiskCheck> {
    let mut checks = Vec::new();
    for report in reports {
        for pair_report in &report.pairs {
            let Some(comparison) = pair_report.comparison(report.size_bytes) else {
                continue;
            };
            let pair = pair_report.pair;
            checks.push(DiskCheck {
                pair,
                size_bytes: report.size_bytes,
                baseline_disk_mib_per_second: comparison.baseline.median
                    * pair.baseline_disk_bytes_per_byte(),
                disk_mib_per_second: if pair.baseline.writes() {
                    disk.write
                } else {
                    disk.read
                },
            });
        }
    }
    checks
}

/// The 1-minute load average, from /proc/loadavg (NaN when unreadable).
pub(crate) fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seconds: f64) -> Sample {
        Sample {
            seconds,
            client_cpu_seconds: 0.5,
            minion_cpu_seconds: Some(1.0),
            settled: Settled {
                waited: Duration::from_secs(1),
                dirty_bytes: 4096,
            },
        }
    }

    /// A 1 GiB report: the first pair's ours ran at 512, 256 and 1024 MiB/s
    /// against a baseline at 256 MiB/s; the reads at `cat_seconds`.
    fn report(cat_seconds: f64) -> SizeReport {
        let round = |ours_first, ours, baseline| alternate::Round {
            a_first: ours_first,
            a: sample(ours),
            b: sample(baseline),
        };
        SizeReport {
            size_bytes: 1 << 30,
            source_crc: 0xabcd,
            pairs: vec![
                PairReport {
                    pair: PAIRS[0],
                    rounds: vec![
                        round(true, 2.0, 4.0),
                        round(false, 4.0, 4.0),
                        round(true, 1.0, 4.0),
                    ],
                },
                PairReport {
                    pair: PAIRS[2],
                    rounds: vec![round(true, 2.0, cat_seconds)],
                },
            ],
        }
    }

    #[test]
    fn options_parse() {
        let parse = |line: &str| parse_options(line.split_whitespace().map(String::from));
        let options = parse("--size 1G --size 4G --rounds 5 --json out.json").expect("parse");
        assert_eq!(options.sizes_bytes, vec![1 << 30, 4 << 30]);
        assert_eq!(options.rounds, 5);
        assert_eq!(options.json, Some(PathBuf::from("out.json")));
        let defaults = parse("").expect("defaults");
        assert_eq!(defaults.sizes_bytes, vec![1 << 30]);
        assert_eq!(defaults.rounds, 3);
        assert!(!defaults.tls);
        assert!(parse("--tls --rounds 1").expect("--tls").tls);
        for bad in [
            "--size",
            "--size 0",
            "--size 1M",
            "--rounds 2",
            "--rounds x",
            "--bogus",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_table_shows_medians_spreads_and_the_ratio_of_medians() {
        let table = render_table(&report(1.0));
        // Ours 512 (256-1024), baseline 256 (256-256): ratio 2.00, rounds 1.00-4.00.
        assert!(table.contains("512.0 (256-1024)"), "{table}");
        assert!(table.contains("256.0 (256-256)"), "{table}");
        assert!(table.contains("2.00x (1.00-4.00)"), "{table}");
        assert!(table.contains("1.2x met"), "{table}");
        // get at 512 against cat at 1024: 0.50x.
        assert!(table.contains("0.50x (0.50-0.50)"), "{table}");
        assert!(table.contains("1.0x NOT met"), "{table}");
        // CPU: 0.5 s of client and 1.0 s of minions per GiB.
        assert!(table.contains("0.50    1.00"), "{table}");
    }

    #[test]
    fn a_baseline_far_below_the_disk_fails_the_check() {
        let disk = DiskRates {
            write: 800.0,
            read: 900.0,
        };
        // Three copies at 256 MiB/s put 768 MiB/s on the disk: fine. A cat
        // at 1024 MiB/s is fine, one at 256 is under 900 / 3.
        let passed = |checks: Vec<DiskCheck>| -> Vec<bool> {
            checks.iter().map(DiskCheck::passed).collect()
        };
        assert_eq!(passed(disk_checks(&[report(1.0)], disk)), [true, true]);
        assert_eq!(passed(disk_checks(&[report(4.0)], disk)), [true, false]);
        let rendered = render_disk_checks(&disk_checks(&[report(4.0)], disk));
        assert!(rendered.contains("FAILED"), "{rendered}");
        // A cold cat at 1024 MiB/s is not above 1.5 x 900; at 2048 it is.
        let fast = |cat_seconds| -> Vec<bool> {
            disk_checks(&[report(cat_seconds)], disk)
                .iter()
                .map(DiskCheck::read_above_disk)
                .collect()
        };
        assert_eq!(fast(1.0), [false, false]);
        assert_eq!(fast(0.5), [false, true]);
    }

    #[test]
    fn the_json_keeps_every_round() {
        let reports = [report(1.0)];
        let disk = DiskRates {
            write: 800.0,
            read: 900.0,
        };
        let checks = disk_checks(&reports, disk);
        let json = render_json(&JsonRun {
            command: "dfs-perf throughput",
            rounds: 3,
            disk: [disk, disk],
            load: [0.5, 1.25],
            reports: &reports,
            checks: &checks,
        });
        assert_eq!(json.matches("\"ours_first\"").count(), 4, "{json}");
        assert!(json.contains("\"ratio_of_medians\": 2.0000"), "{json}");
        assert!(json.contains("\"mib_per_second\": 1024.0000"), "{json}");
        assert!(
            json.contains("\"load_average_start_end\": [0.5000, 1.2500]"),
            "{json}"
        );
        assert!(json.contains("\"source_crc32c\": \"0000abcd\""), "{json}");
        assert!(json.contains("\"passed\": true"), "{json}");
    }

    #[test]
    fn replica_files_are_counted_at_any_depth() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nested = dir.path().join("minion-0/blocks/00");
        std::fs::create_dir_all(&nested).expect("mkdir");
        for name in ["blk_1_2_3", "blk_4_5_6", "scrub.cursor"] {
            std::fs::write(nested.join(name), b"x").expect("write");
        }
        std::fs::write(dir.path().join("blk_7_8_9"), b"x").expect("write");
        assert_eq!(replica_file_count(dir.path()).expect("count"), 3);
        assert_eq!(
            replica_file_count(&dir.path().join("absent")).expect("count"),
            0
        );
    }

    #[test]
    fn cpu_time_of_this_process_is_read_from_proc() {
        let seconds = process_cpu_seconds(std::process::id()).expect("own stat");
        assert!(seconds >= 0.0);
    }
}
