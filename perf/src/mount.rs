//! `dfs-perf mount`: the FUSE mount against the `dfs` commands it stands
//! in for, side by side on one local cluster.
//!
//! It starts `dfs local` (1 master, 3 minions on 127.0.0.1, replication 3)
//! and compares two pairs (mount, dfs), as `throughput` does its pairs:
//!
//! - write: `dd if=SOURCE of=MOUNT/mount.bin bs=1M conv=fsync` against
//!   `dfs put -r 3 SOURCE /put.bin`, both durable (a close through the
//!   mount makes a file visible, its `fsync` durable, so the copy fsyncs
//!   before it closes; the mount writes with the cluster's default
//!   replication, checked to be 3). The mount's time runs from the start
//!   of `dd` until `dfs stat` first shows the file whole, polled every
//!   `COMMIT_POLL_MS` (late by at most one poll and one `dfs stat`; the
//!   fsync committed it, so the first poll sees it); `dd`'s own time is
//!   reported beside it.
//! - cold read: `cat MOUNT/read.bin` against `dfs cat /read.bin`, of one
//!   file `dfs put` wrote, each into a pipe this harness counts and
//!   checksums as it streams.
//!
//! Each pair runs `--rounds` rounds of both sides, the order alternating
//! (mount first, then dfs first, ...; `alternate` runs the rounds). Every
//! step starts from the same state: the outputs of both sides removed
//! first (a removed file's replicas gone from the minions' disks), for a
//! mount step a fresh `dfs-mount` (no names, attributes or pages of the
//! file in the kernel, no connections in the mount: what a fresh `dfs`
//! process starts from), `sync`, the page cache dropped, for writes the
//! source read once, then `common::settle`. The mount is unmounted after
//! its step (SIGTERM, then `umount -l` if it is still mounted), on error
//! paths too. Every result is checked by CRC32C against the source: the
//! written files read back with `dfs get`, the reads' output as it
//! arrives.
//!
//! Reported: each side's median MiB/s with min-max, the ratio of medians
//! mount/dfs with the min-max of the per-round ratios, and the median CPU
//! seconds per GiB of the command (`dd`, `cat`, `dfs`; wait4), of the
//! `dfs-mount` process and of the minions (both from /proc/PID/stat).
//! `--json PATH` writes every round's raw numbers.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dfs_engine::units::{format_bytes, parse_bytes};

use crate::alternate::{
    self, check_rounds, comparison_columns, cpu_cell, head_columns, json_number, json_option,
    json_pairs, json_string, Measured, Side, StepPair, ROUNDS_DEFAULT,
};
use crate::common::{drop_caches, generate, settle, sibling, work_dir, Settled};
use crate::throughput::process::{process_cpu_seconds, timed_child};
use crate::throughput::{
    cold, load_average, replica_file_count, verify, warm, Bench, Source, MINION_COUNT, PUT_REMOTE,
    READ_REMOTE,
};

const SIZE_BYTES_DEFAULT: u64 = 1 << 30;
/// Smaller files would measure process start-up, not throughput.
const SIZE_BYTES_MIN: u64 = 1 << 20;
/// Replicas per block on both sides.
const REPLICATION: u8 = 3;
/// The cluster file `dd` writes through the mount.
const MOUNT_REMOTE: &str = "/mount.bin";
/// Longest wait for a started `dfs-mount` to show in /proc/self/mounts, and
/// for one to exit after SIGTERM or after `umount -l`.
const MOUNT_TIMEOUT_MS: u64 = 20_000;
const MOUNT_POLL_MS: u64 = 20;
/// Longest wait, after `dd` exited, for the mount to commit the file.
const COMMIT_TIMEOUT_MS: u64 = 60_000;
/// How often `dfs stat` asks for the committed file: the mount's write time
/// is late by at most this and one `dfs stat`.
const COMMIT_POLL_MS: u64 = 5;
/// Lines of the mount's log quoted when it fails.
const LOG_TAIL_LINES: usize = 5;
/// Width of the tables' first column (the pair, the step).
const NAME_COLUMN_WIDTH: usize = 44;

pub struct Options {
    size_bytes: u64,
    rounds: usize,
    dir: Option<PathBuf>,
    json: Option<PathBuf>,
}

pub fn usage() -> &'static str {
    "usage: dfs-perf mount [--size SIZE] [--rounds N] [--dir DIR] [--json PATH]\n  \
     --size default 1G, at least 1M; --rounds is odd (default 3)"
}

pub fn parse_options(mut args: impl Iterator<Item = String>) -> Result<Options> {
    let mut options = Options {
        size_bytes: SIZE_BYTES_DEFAULT,
        rounds: ROUNDS_DEFAULT,
        dir: None,
        json: None,
    };
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{arg} needs a value\n{}", usage()))
        };
        match arg.as_str() {
            "--size" => options.size_bytes = parse_bytes(&value()?)?,
            "--rounds" => options.rounds = value()?.parse().context("--rounds")?,
            "--dir" => options.dir = Some(PathBuf::from(value()?)),
            "--json" => options.json = Some(PathBuf::from(value()?)),
            other => bail!("unknown option {other}\n{}", usage()),
        }
    }
    if options.size_bytes < SIZE_BYTES_MIN {
        bail!("--size must be at least {}", format_bytes(SIZE_BYTES_MIN));
    }
    check_rounds(options.rounds)?;
    Ok(options)
}

/// One timed step of a pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    MountWrite,
    Put,
    MountRead,
    DfsCat,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::MountWrite => "dd conv=fsync to mount",
            Step::Put => "dfs put r=3 durable",
            Step::MountRead => "cat from mount cold",
            Step::DfsCat => "dfs cat cold",
        }
    }

    /// Writes start from a warm source; reads from a cold cache.
    fn writes(self) -> bool {
        matches!(self, Step::MountWrite | Step::Put)
    }

    fn uses_mount(self) -> bool {
        matches!(self, Step::MountWrite | Step::MountRead)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Pair {
    mount: Step,
    dfs: Step,
}

impl Pair {
    fn step(self, side: Side) -> Step {
        match side {
            Side::A => self.mount,
            Side::B => self.dfs,
        }
    }
}

impl StepPair for Pair {
    const SIDES: [&'static str; 2] = ["mount", "dfs"];

    fn step_name(self, side: Side) -> &'static str {
        self.step(side).name()
    }
}

const PAIRS: [Pair; 2] = [
    Pair {
        mount: Step::MountWrite,
        dfs: Step::Put,
    },
    Pair {
        mount: Step::MountRead,
        dfs: Step::DfsCat,
    },
];

/// One run of one step.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Sample {
    /// Until the step's result was there: for the mount's write, until the
    /// file was committed.
    seconds: f64,
    /// The command's own run (`dd`, which fsyncs: the mount commits before it exits).
    command_seconds: f64,
    /// CPU seconds of the command (`dd`, `cat`, `dfs`).
    command_cpu_seconds: f64,
    /// CPU seconds of `dfs-mount`; None for the `dfs` side.
    mount_cpu_seconds: Option<f64>,
    /// CPU seconds of all minions together.
    minion_cpu_seconds: f64,
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
            ("command_seconds", json_number(self.command_seconds)),
            ("command_cpu_seconds", json_number(self.command_cpu_seconds)),
            ("mount_cpu_seconds", json_option(self.mount_cpu_seconds)),
            ("minion_cpu_seconds", json_number(self.minion_cpu_seconds)),
        ]
    }

    /// When `dd` and the commit ended, for the mount's write.
    fn round_note(&self) -> String {
        if self.seconds > self.command_seconds {
            format!(
                " (dd exited at {:.2} s, committed at {:.2} s)",
                self.command_seconds, self.seconds
            )
        } else {
            String::new()
        }
    }
}

/// Side A is the mount, B `dfs`.
type PairReport = alternate::PairReport<Pair, Sample>;
type Report = alternate::SizeReport<Pair, Sample>;

pub fn run(options: Options) -> Result<()> {
    let (dir, _scratch) = work_dir(options.dir.as_deref())?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    println!(
        "mount: {} in {}; 1 master, {MINION_COUNT} minions on 127.0.0.1, replication {REPLICATION}; \
         {} rounds, order alternating",
        format_bytes(options.size_bytes),
        dir.display(),
        options.rounds
    );
    if !drop_caches() {
        bail!("can't drop the page cache (needs root): the cold numbers would be lies");
    }
    let load_before = load_average();
    let path = dir.join("source.bin");
    let crc = generate(&path, options.size_bytes)?;
    let source = Source {
        path,
        size_bytes: options.size_bytes,
        crc,
    };
    let mountpoint = dir.join("mnt");
    std::fs::create_dir_all(&mountpoint)
        .with_context(|| format!("create {}", mountpoint.display()))?;
    // /proc/self/mounts names the mountpoint with symbolic links resolved.
    let mountpoint = mountpoint
        .canonicalize()
        .with_context(|| format!("resolve {}", mountpoint.display()))?;
    let mut bench = MountBench {
        bench: Bench::start(&dir)?,
        mountpoint,
        log: dir.join("mount.log"),
        mount_written: false,
    };
    let report = bench.measure(&source, options.rounds)?;
    drop(bench);
    let load_after = load_average();

    println!();
    print!("{}", render_table(&report));
    // Other work on the machine skews every number: say how busy it was.
    println!("load average (1 min): {load_before:.2} at the start, {load_after:.2} at the end");
    println!("verified: every result matches the source's crc32c");
    println!("command: {command}");
    if let Some(path) = &options.json {
        let json = render_json(&command, options.rounds, [load_before, load_after], &report);
        std::fs::write(path, json).with_context(|| format!("write {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Throughput's bench (the local cluster, the put's output, the replica
/// count to wait for) with a mountpoint.
struct MountBench {
    bench: Bench,
    mountpoint: PathBuf,
    /// Every `dfs-mount`'s standard error, appended.
    log: PathBuf,
    /// `MOUNT_REMOTE` may exist (a write through the mount started since it
    /// was last removed).
    mount_written: bool,
}

/// What a timed step gave.
struct Ran {
    elapsed: Duration,
    command_elapsed: Duration,
    command_cpu_seconds: f64,
    read: Option<(u64, u32)>,
}

impl MountBench {
    /// Both pairs: the writes, then the reads of a file `dfs put` wrote once;
    /// nothing is left in the cluster afterwards.
    fn measure(&mut self, source: &Source, rounds: usize) -> Result<Report> {
        println!("{}", source.heading());
        let mut pairs = Vec::new();
        for pair in PAIRS.iter().filter(|pair| pair.mount.writes()) {
            pairs.push(self.measure_pair(source, *pair, rounds)?);
        }
        self.remove_outputs()?;
        let replication = REPLICATION.to_string();
        self.bench.dfs(
            &["put", "-r", &replication, source.text()?, READ_REMOTE],
            false,
        )?;
        self.bench.replica_files_kept = replica_file_count(&self.bench.cluster.dir)?;
        for pair in PAIRS.iter().filter(|pair| !pair.mount.writes()) {
            pairs.push(self.measure_pair(source, *pair, rounds)?);
        }
        self.bench.dfs(&["rm", READ_REMOTE], false)?;
        self.bench.replica_files_kept = 0;
        self.bench.wait_for_replica_files()?;
        Ok(Report {
            size_bytes: source.size_bytes,
            source_crc: source.crc,
            pairs,
        })
    }

    fn measure_pair(&mut self, source: &Source, pair: Pair, rounds: usize) -> Result<PairReport> {
        alternate::measure_pair(pair, rounds, source.size_bytes, |side| {
            self.measure_step(source, pair.step(side))
        })
    }

    /// Brings the machine to the common start state, runs `step` timed and
    /// checks its result against the source.
    fn measure_step(&mut self, source: &Source, step: Step) -> Result<Sample> {
        self.remove_outputs()?;
        let mut mount = if step.uses_mount() {
            Some(Mount::start(
                &self.bench.cluster.local.master,
                &self.mountpoint,
                &self.log,
            )?)
        } else {
            None
        };
        cold()?;
        if step.writes() {
            warm(source)?;
        }
        let settled = settle()?;
        let minions_before = self.bench.cluster.minion_cpu_seconds()?;
        let mount_before = mount.as_ref().map(Mount::cpu_seconds).transpose()?;
        let ran = self.run_timed(source, step, mount.as_mut())?;
        let mount_after = mount.as_ref().map(Mount::cpu_seconds).transpose()?;
        let minions_after = self.bench.cluster.minion_cpu_seconds()?;
        self.verify(source, step, ran.read)?;
        if let Some(mount) = mount {
            mount.stop()?;
        }
        Ok(Sample {
            seconds: ran.elapsed.as_secs_f64(),
            command_seconds: ran.command_elapsed.as_secs_f64(),
            command_cpu_seconds: ran.command_cpu_seconds,
            mount_cpu_seconds: mount_before
                .zip(mount_after)
                .map(|(before, after)| after - before),
            minion_cpu_seconds: minions_after - minions_before,
            settled,
        })
    }

    fn run_timed(&mut self, source: &Source, step: Step, mount: Option<&mut Mount>) -> Result<Ran> {
        let started = Instant::now();
        let timed = match step {
            Step::MountWrite => {
                let mount = mount.context("the mount's write needs a mount")?;
                self.mount_written = true;
                let mut command = Command::new("dd");
                command
                    .arg(format!("if={}", source.path.display()))
                    .arg(format!("of={}", self.in_mount(MOUNT_REMOTE).display()))
                    .args(["bs=1M", "conv=fsync", "status=none"]);
                let dd = timed_child(command, false)?;
                let command_elapsed = started.elapsed();
                self.wait_for_commit(source, mount)?;
                return Ok(Ran {
                    elapsed: started.elapsed(),
                    command_elapsed,
                    command_cpu_seconds: dd.cpu_seconds,
                    read: None,
                });
            }
            Step::Put => {
                self.bench.put_written = true;
                let replication = REPLICATION.to_string();
                self.bench.dfs(
                    &["put", "-r", &replication, source.text()?, PUT_REMOTE],
                    false,
                )?
            }
            Step::MountRead => {
                let mut command = Command::new("cat");
                command.arg(self.in_mount(READ_REMOTE));
                timed_child(command, true)?
            }
            Step::DfsCat => self.bench.dfs(&["cat", READ_REMOTE], true)?,
        };
        Ok(Ran {
            elapsed: timed.elapsed,
            command_elapsed: timed.elapsed,
            command_cpu_seconds: timed.cpu_seconds,
            read: timed.read,
        })
    }

    /// Polls `dfs stat` until the file written through the mount is
    /// committed with the source's size.
    fn wait_for_commit(&self, source: &Source, mount: &mut Mount) -> Result<()> {
        let started = Instant::now();
        loop {
            let output = self.stat(MOUNT_REMOTE)?;
            if output.status.success() {
                let text = String::from_utf8_lossy(&output.stdout);
                let size = stat_field(&text, "size");
                if size != Some(source.size_bytes) {
                    bail!(
                        "{MOUNT_REMOTE} was committed with size {size:?}, expected {}",
                        source.size_bytes
                    );
                }
                return Ok(());
            }
            if let Some(status) = mount.exited()? {
                bail!(
                    "dfs-mount exited with {status} before it committed {MOUNT_REMOTE}{}",
                    log_tail(&self.log)
                );
            }
            if started.elapsed() >= Duration::from_millis(COMMIT_TIMEOUT_MS) {
                bail!(
                    "{MOUNT_REMOTE} not committed {COMMIT_TIMEOUT_MS} ms after dd exited \
                     (dfs stat: {}){}",
                    String::from_utf8_lossy(&output.stderr).trim(),
                    log_tail(&self.log)
                );
            }
            std::thread::sleep(Duration::from_millis(COMMIT_POLL_MS));
        }
    }

    /// `dfs stat PATH`, its output captured.
    fn stat(&self, path: &str) -> Result<std::process::Output> {
        Command::new(sibling("dfs")?)
            .arg("--master")
            .arg(&self.bench.cluster.local.master)
            .args(["stat", path])
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("run dfs stat {path}"))
    }

    /// Every byte of the step's result against the source's CRC32C, and the
    /// replication of what was written (untimed).
    fn verify(&mut self, source: &Source, step: Step, read: Option<(u64, u32)>) -> Result<()> {
        let name = step.name();
        let written = match step {
            Step::MountWrite => MOUNT_REMOTE,
            Step::Put => PUT_REMOTE,
            Step::MountRead | Step::DfsCat => return verify(name, source, read),
        };
        let output = self.stat(written)?;
        let text = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "{name}: dfs stat {written} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let replication = stat_field(&text, "replication");
        if replication != Some(u64::from(REPLICATION)) {
            bail!("{name}: {written} has replication {replication:?}, expected {REPLICATION}");
        }
        let read_back = self.bench.dfs(&["get", written, "-"], true)?;
        verify(name, source, read_back.read)
    }

    /// Removes what the write steps left (the put's file with throughput's
    /// bench) and waits until their replicas are gone from the minions.
    fn remove_outputs(&mut self) -> Result<()> {
        let removed = self.mount_written;
        if removed {
            // Absent when the write failed before its commit.
            let output = self.stat(MOUNT_REMOTE)?;
            if output.status.success() {
                self.bench.dfs(&["rm", MOUNT_REMOTE], false)?;
            }
            self.mount_written = false;
        }
        self.bench.remove_outputs()?;
        if removed {
            self.bench.wait_for_replica_files()?;
        }
        Ok(())
    }

    /// Where the cluster's `remote` is in the mount.
    fn in_mount(&self, remote: &str) -> PathBuf {
        self.mountpoint.join(remote.trim_start_matches('/'))
    }
}

/// The number after `NAME: ` in `dfs stat`'s output.
fn stat_field(output: &str, name: &str) -> Option<u64> {
    output.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(": ")?
            .trim()
            .parse()
            .ok()
    })
}

/// A running `dfs-mount`, unmounted when stopped or dropped.
pub(crate) struct Mount {
    child: Child,
    mountpoint: PathBuf,
    log: PathBuf,
    /// Stopped (or found exited): nothing left to do when dropped.
    stopped: bool,
}

impl Mount {
    /// Starts `dfs-mount` (found beside this program) at `mountpoint`, its
    /// standard error appended to `log`, and waits until it is mounted.
    pub(crate) fn start(master: &str, mountpoint: &Path, log: &Path) -> Result<Mount> {
        if is_mounted(mountpoint)? {
            bail!("{} is mounted already", mountpoint.display());
        }
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open {}", log.display()))?;
        let child = Command::new(sibling("dfs-mount")?)
            .arg(mountpoint)
            .args(["--master", master])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .context("start dfs-mount")?;
        let mut mount = Mount {
            child,
            mountpoint: mountpoint.to_path_buf(),
            log: log.to_path_buf(),
            stopped: false,
        };
        let started = Instant::now();
        loop {
            if is_mounted(mountpoint)? {
                return Ok(mount);
            }
            if let Some(status) = mount.exited()? {
                bail!(
                    "dfs-mount exited with {status} before {} was mounted{}",
                    mountpoint.display(),
                    log_tail(log)
                );
            }
            if started.elapsed() >= Duration::from_millis(MOUNT_TIMEOUT_MS) {
                // Dropping `mount` stops the process.
                bail!(
                    "{} not mounted {MOUNT_TIMEOUT_MS} ms after dfs-mount started{}",
                    mountpoint.display(),
                    log_tail(log)
                );
            }
            std::thread::sleep(Duration::from_millis(MOUNT_POLL_MS));
        }
    }

    /// User + system CPU seconds of `dfs-mount` so far.
    pub(crate) fn cpu_seconds(&self) -> Result<f64> {
        process_cpu_seconds(self.child.id())
    }

    /// The exit status, if the process has ended (it is then reaped).
    fn exited(&mut self) -> Result<Option<ExitStatus>> {
        let status = self.child.try_wait().context("wait for dfs-mount")?;
        if status.is_some() {
            self.stopped = true;
        }
        Ok(status)
    }

    /// Unmounts: SIGTERM and a clean exit, else `umount -l` (and SIGKILL if
    /// even that does not end it). Fails when anything but the clean exit
    /// was needed.
    pub(crate) fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        let mut problems = Vec::new();
        if !self.stopped {
            self.stopped = true;
            if let Some(status) = self.child.try_wait().context("wait for dfs-mount")? {
                problems.push(format!("had exited with {status} before SIGTERM"));
            } else {
                let pid = libc::pid_t::try_from(self.child.id()).context("dfs-mount pid")?;
                // SAFETY: kill(2) on our own, unreaped child; no memory is involved.
                unsafe { libc::kill(pid, libc::SIGTERM) };
                match wait_exit(
                    &mut self.child,
                    "dfs-mount",
                    Duration::from_millis(MOUNT_TIMEOUT_MS),
                )? {
                    Some(status) if status.success() => {}
                    Some(status) => problems.push(format!("exited with {status} after SIGTERM")),
                    None => {
                        problems.push(format!("still running {MOUNT_TIMEOUT_MS} ms after SIGTERM"))
                    }
                }
            }
        }
        finish_stop(
            &mut self.child,
            &self.mountpoint,
            "dfs-mount",
            &log_tail(&self.log),
            Duration::from_millis(MOUNT_TIMEOUT_MS),
            problems,
        )
    }
}

/// The end of stopping a mount process (`what`) that was asked to stop:
/// unmounted lazily if it is still mounted, killed if it is still running
/// `timeout` later; fails with `problems` and what this needed (and
/// `log_tail`) when anything but a clean exit was needed.
pub(crate) fn finish_stop(
    child: &mut Child,
    mountpoint: &Path,
    what: &str,
    log_tail: &str,
    timeout: Duration,
    mut problems: Vec<String>,
) -> Result<()> {
    if is_mounted(mountpoint)? {
        problems.push("still mounted: unmounted with umount -l".to_string());
        let status = Command::new("umount")
            .arg("-l")
            .arg(mountpoint)
            .status()
            .context("run umount -l")?;
        if !status.success() {
            problems.push(format!("umount -l failed: {status}"));
        }
    }
    let running = child
        .try_wait()
        .with_context(|| format!("wait for {what}"))?
        .is_none();
    if running && wait_exit(child, what, timeout)?.is_none() {
        problems.push("killed".to_string());
        let _ = child.kill();
        let _ = child.wait();
    }
    if !problems.is_empty() {
        bail!(
            "{what} at {}: {}{log_tail}",
            mountpoint.display(),
            problems.join("; ")
        );
    }
    Ok(())
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Err(error) = self.shutdown() {
            eprintln!("{error:#}");
        }
    }
}

/// Waits up to `timeout` for `child` (`what`) to exit; None if it did not.
pub(crate) fn wait_exit(
    child: &mut Child,
    what: &str,
    timeout: Duration,
) -> Result<Option<ExitStatus>> {
    let started = Instant::now();
    loop {
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("wait for {what}"))?
        {
            return Ok(Some(status));
        }
        if started.elapsed() >= timeout {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(MOUNT_POLL_MS));
    }
}

pub(crate) fn is_mounted(mountpoint: &Path) -> Result<bool> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").context("read /proc/self/mounts")?;
    Ok(mounted_in(&mounts, mountpoint))
}

/// Whether the text of /proc/self/mounts lists a mount at `mountpoint`
/// (its second field, with space, tab, newline and backslash as octal
/// escapes).
fn mounted_in(mounts: &str, mountpoint: &Path) -> bool {
    let wanted = mountpoint.as_os_str().as_bytes();
    mounts
        .lines()
        .filter_map(|line| line.split(' ').nth(1))
        .any(|field| unescape_octal(field) == wanted)
}

fn unescape_octal(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let digits = bytes.get(index + 1..index + 4);
        match digits {
            Some(digits)
                if bytes[index] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)) =>
            {
                let value = digits
                    .iter()
                    .fold(0u32, |value, d| value * 8 + u32::from(d - b'0'));
                out.push(value as u8);
                index += 4;
            }
            _ => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    out
}

/// The last lines of the mount's log, to quote in an error (the scratch
/// directory goes with the run).
fn log_tail(log: &Path) -> String {
    quote_log(log, &"dfs-mount")
}

/// The last `LOG_TAIL_LINES` lines of `log`, as "; WHO said:" and the
/// lines, to quote in an error; nothing for an empty or unreadable log.
pub(crate) fn quote_log(log: &Path, who: &dyn std::fmt::Display) -> String {
    let Ok(text) = std::fs::read_to_string(log) else {
        return String::new();
    };
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
    if tail.is_empty() {
        String::new()
    } else {
        format!("; {who} said:\n  {}", tail.join("\n  "))
    }
}

fn render_table(report: &Report) -> String {
    let size_bytes = report.size_bytes;
    let rounds = report.rounds();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}, {rounds} rounds: MiB/s median (min-max); ratio of medians mount/dfs (min-max of per-round ratios)",
        format_bytes(size_bytes)
    );
    let _ = writeln!(out, "{}", head_columns::<Pair>(NAME_COLUMN_WIDTH));
    for pair_report in &report.pairs {
        let Some(comparison) = pair_report.comparison(size_bytes) else {
            continue;
        };
        let name = pair_report.pair.name();
        let _ = writeln!(
            out,
            "{}",
            comparison_columns(NAME_COLUMN_WIDTH, &name, &comparison)
        );
    }
    let _ = writeln!(
        out,
        "CPU seconds per GiB, median:\n  {:<NAME_COLUMN_WIDTH$} {:>8} {:>9} {:>8}",
        "step", "command", "dfs-mount", "minions"
    );
    for pair_report in &report.pairs {
        for side in [Side::A, Side::B] {
            let per_gib = |value: fn(&Sample) -> Option<f64>| {
                cpu_cell(pair_report.cpu_per_gib(size_bytes, |round| value(round.side(side))))
            };
            let _ = writeln!(
                out,
                "  {:<NAME_COLUMN_WIDTH$} {:>8} {:>9} {:>8}",
                pair_report.pair.step_name(side),
                per_gib(|sample| Some(sample.command_cpu_seconds)),
                per_gib(|sample| sample.mount_cpu_seconds),
                per_gib(|sample| Some(sample.minion_cpu_seconds)),
            );
        }
    }
    out
}

fn render_json(command: &str, rounds: usize, load: [f64; 2], report: &Report) -> String {
    format!(
        "{{\n  \"command\": {},\n  \"rounds\": {rounds},\n  \"replication\": {REPLICATION},\n  \
         \"size_bytes\": {},\n  \"source_crc32c\": \"{:08x}\",\n  \
         \"load_average_start_end\": [{}, {}],\n  \"pairs\": [\n{}\n  ]\n}}\n",
        json_string(command),
        report.size_bytes,
        report.source_crc,
        json_number(load[0]),
        json_number(load[1]),
        json_pairs(report.size_bytes, &report.pairs, 4)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seconds: f64, mount_cpu_seconds: Option<f64>) -> Sample {
        Sample {
            seconds,
            command_seconds: seconds * 0.75,
            command_cpu_seconds: 0.25,
            mount_cpu_seconds,
            minion_cpu_seconds: 1.5,
            settled: Settled {
                waited: Duration::from_secs(1),
                dirty_bytes: 4096,
            },
        }
    }

    /// 1 GiB: the mount's writes took 2, 4 and 1 s against puts of 4 s; its
    /// reads 1 s against 2 s.
    fn report() -> Report {
        let round = |mount_first, mount, dfs| alternate::Round {
            a_first: mount_first,
            a: sample(mount, Some(2.0)),
            b: sample(dfs, None),
        };
        Report {
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
                    pair: PAIRS[1],
                    rounds: vec![round(true, 1.0, 2.0)],
                },
            ],
        }
    }

    #[test]
    fn options_parse() {
        let parse = |line: &str| parse_options(line.split_whitespace().map(String::from));
        let options = parse("--size 2G --rounds 5 --json out.json --dir d").expect("parse");
        assert_eq!(options.size_bytes, 2 << 30);
        assert_eq!(options.rounds, 5);
        assert_eq!(options.json, Some(PathBuf::from("out.json")));
        assert_eq!(options.dir, Some(PathBuf::from("d")));
        let defaults = parse("").expect("defaults");
        assert_eq!(defaults.size_bytes, 1 << 30);
        assert_eq!(defaults.rounds, 3);
        assert_eq!(defaults.json, None);
        for bad in [
            "--size",
            "--size 0",
            "--size 4K",
            "--size x",
            "--rounds 2",
            "--rounds x",
            "--json",
            "--bogus",
            "1G",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mounts_are_found_by_their_unescaped_mountpoint() {
        let mounts = "/dev/vda / ext4 rw 0 0\n\
                      dfs@127.0.0.1:7070 /srv/a\\040b/mnt fuse.dfs rw,nosuid,nodev 0 0\n\
                      proc /proc proc rw 0 0\n";
        assert!(mounted_in(mounts, Path::new("/srv/a b/mnt")));
        assert!(mounted_in(mounts, Path::new("/")));
        assert!(!mounted_in(mounts, Path::new("/srv/a\\040b/mnt")));
        assert!(!mounted_in(mounts, Path::new("/srv/a b")));
        assert!(!mounted_in("", Path::new("/")));
        assert_eq!(unescape_octal("a\\134b\\011c\\0"), b"a\\b\tc\\0");
    }

    #[test]
    fn stat_fields_are_read_from_dfs_stat_output() {
        let output = "path: /mount.bin\ntype: file\nsize: 1073741824\nreplication: 3\n\
                      block size: 67108864\nblock 0: 12 offset=0 length=67108864 replicas=3/3\n";
        assert_eq!(stat_field(output, "size"), Some(1 << 30));
        assert_eq!(stat_field(output, "replication"), Some(3));
        assert_eq!(stat_field(output, "block size"), Some(64 << 20));
        assert_eq!(stat_field(output, "blocks"), None);
        assert_eq!(stat_field("size: many\n", "size"), None);
    }

    #[test]
    fn the_table_shows_medians_ratios_and_cpu_per_gib() {
        let table = render_table(&report());
        // Mount 512 (256-1024) MiB/s against put 256: 2.00x, rounds 1.00-4.00.
        assert!(table.contains("512.0 (256-1024)"), "{table}");
        assert!(table.contains("256.0 (256-256)"), "{table}");
        assert!(table.contains("2.00x (1.00-4.00)"), "{table}");
        // Reads: 1024 against 512.
        assert!(table.contains("2.00x (2.00-2.00)"), "{table}");
        // cp: 0.25 s, dfs-mount 2.0 s, minions 1.5 s per GiB; dfs put has
        // no mount.
        assert!(table.contains("0.25      2.00     1.50"), "{table}");
        assert!(table.contains("0.25         -     1.50"), "{table}");
    }

    #[test]
    fn the_json_keeps_every_round() {
        let json = render_json("dfs-perf mount", 3, [0.5, 1.25], &report());
        assert_eq!(json.matches("\"mount_first\"").count(), 4, "{json}");
        assert!(json.contains("\"ratio_of_medians\": 2.0000"), "{json}");
        assert!(json.contains("\"mount_cpu_seconds\": null"), "{json}");
        assert!(json.contains("\"mount_cpu_seconds\": 2.0000"), "{json}");
        assert!(json.contains("\"command_seconds\": 1.5000"), "{json}");
        assert!(json.contains("\"source_crc32c\": \"0000abcd\""), "{json}");
    }
}
