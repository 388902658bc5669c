//! `dfs-perf mount --small-files N` and `--stat-entries N`: many small
//! files written through our FUSE mount (`dfs-mount`), and the stat of a
//! large directory through it, against the same through MooseFS's mount
//! (`mfsmount`) on this machine, as ratios in one run.
//!
//! Small files: a tree of N files of `--file-size` random bytes (default 4
//! KiB) in directories of 200, made once, is copied into each mount with
//! `cp -r`, and unpacked into it from a tar archive of it with `tar -x`.
//! Reported in files per second, as each side promises at a close by
//! default (neither program fsyncs): ours commits each file when it is
//! closed (`cp` and `tar` wait for each close), with its blocks in the
//! memory of 3 minions and the change journaled (fsynced) by the master;
//! `mfsmount` sends a file's data to the chunkservers before its last
//! close returns (its default `mfsfsyncmintime=0`), where the chunkservers
//! keep it in their page cache (their default `HDD_FSYNC_BEFORE_CLOSE =
//! 0`). Right after the command exits, a
//! second client that asks the cluster, not the mount (`dfs ls -R -l`;
//! `mfsdirinfo`), must see every file whole with its replication: the
//! time is the command's when it does; when it does not, the second client
//! is asked again until it does and the time runs until then (reported
//! beside the command's own).
//!
//! Stat: a directory of N entries (files of `--file-size`) is copied in
//! once per side; each step then stats every entry from a freshly started
//! mount with the page cache, dentries and inodes dropped: `ls -l DIR`
//! (its output counted, every file line checked for the size) and a walk
//! that reads the directory and lstat()s each entry. Reported in seconds.
//!
//! Both sides run replication 3: our `dfs local` (1 master, 3 minions on
//! 127.0.0.1) and MooseFS with 1 master, 3 chunkservers and goal 3, set up
//! in the work directory by `moosefs` (see there for its options: the
//! defaults but for nice 0 and the goal; every mount option is the
//! default on both sides).
//!
//! Each step runs `--rounds` times on each side, the order alternating
//! (ours first, then MooseFS first, ...), and starts from the same state:
//! a write step on a freshly started, empty cluster of its side (the
//! previous step's cluster stopped and its data removed before, so no
//! deletion runs during a step: MooseFS deletes chunks minutes after the
//! files), a fresh mount process, `sync` and the page cache dropped, the
//! source read once (warm), then `common::settle`. After each write step,
//! outside the time, the copy is read back through a fresh mount from a
//! cold cache and every file checked against the source's CRC32C, and
//! ours is checked with `dfs fsck`. Reported: each side's median with
//! min-max, the ratio of medians ours/MooseFS with the min-max of the
//! per-round ratios (for stat, the ratio of speeds: MooseFS's seconds
//! over ours), and the median CPU seconds of the mount process. `--json
//! PATH` writes every round's raw numbers.

mod moosefs;
mod render;
mod stat;
mod systems;
mod tree;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dfs_engine::units::{format_bytes, parse_bytes};

use crate::alternate::stats::{compare, spread, Comparison, Spread};
use crate::alternate::{check_rounds, ROUNDS_DEFAULT};
use crate::common::{checksum_file, settle, work_dir, Settled};
use crate::throughput::process::timed_child;
use crate::throughput::{cold, load_average};
use systems::{Cluster, System};
use tree::{Layout, Tree};

const FILE_SIZE_DEFAULT: u64 = 4 << 10;
/// Larger files are not small: `dfs-perf mount --size` measures those.
const FILE_SIZE_MAX: u64 = 1 << 20;
/// Most files of the tree or entries of the directory.
const COUNT_MAX: usize = 1_000_000;
/// Longest wait, after the command exited, for a second client to see
/// every file; and how often it is asked again.
const COMMIT_TIMEOUT_MS: u64 = 300_000;
const COMMIT_POLL_MS: u64 = 100;
/// The ratio of files per second, ours/MooseFS, the issue asks for.
const WRITE_TARGET_RATIO: f64 = 3.0;
/// Seconds the issue allows for the stat of the whole directory.
const STAT_TARGET_SECONDS: f64 = 1.0;

pub struct Options {
    small_files: Option<usize>,
    stat_entries: Option<usize>,
    file_size: u64,
    rounds: usize,
    moosefs: bool,
    dir: Option<PathBuf>,
    json: Option<PathBuf>,
}

pub fn usage() -> &'static str {
    "usage: dfs-perf mount --small-files N [--stat-entries N] [--file-size SIZE] [--rounds N]\n                \
     [--moosefs|--no-moosefs] [--dir DIR] [--json PATH]\n  \
     (or --stat-entries N alone) cp -r and tar -x of N small files, stat of a directory of N\n  \
     entries, against MooseFS's mount unless --no-moosefs; --file-size default 4K, at most 1M;\n  \
     --rounds is odd (default 3)"
}

/// Whether `dfs-perf mount`'s arguments ask for these modes rather than the
/// large-file one.
pub fn selected(args: &[String]) -> bool {
    args.iter()
        .any(|arg| arg == "--small-files" || arg == "--stat-entries")
}

pub fn parse_options(mut args: impl Iterator<Item = String>) -> Result<Options> {
    let mut options = Options {
        small_files: None,
        stat_entries: None,
        file_size: FILE_SIZE_DEFAULT,
        rounds: ROUNDS_DEFAULT,
        moosefs: true,
        dir: None,
        json: None,
    };
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{arg} needs a value\n{}", usage()))
        };
        match arg.as_str() {
            "--small-files" => options.small_files = Some(parse_count(&arg, &value()?)?),
            "--stat-entries" => options.stat_entries = Some(parse_count(&arg, &value()?)?),
            "--file-size" => options.file_size = parse_bytes(&value()?)?,
            "--rounds" => options.rounds = value()?.parse().context("--rounds")?,
            "--moosefs" => options.moosefs = true,
            "--no-moosefs" => options.moosefs = false,
            "--dir" => options.dir = Some(PathBuf::from(value()?)),
            "--json" => options.json = Some(PathBuf::from(value()?)),
            other => bail!("unknown option {other}\n{}", usage()),
        }
    }
    if options.small_files.is_none() && options.stat_entries.is_none() {
        bail!("give --small-files N or --stat-entries N\n{}", usage());
    }
    if !(1..=FILE_SIZE_MAX).contains(&options.file_size) {
        bail!(
            "--file-size must be 1 to {} bytes",
            format_bytes(FILE_SIZE_MAX)
        );
    }
    check_rounds(options.rounds)?;
    Ok(options)
}

fn parse_count(option: &str, text: &str) -> Result<usize> {
    let count: usize = text
        .parse()
        .with_context(|| format!("{option} {text}: not a count"))?;
    if !(1..=COUNT_MAX).contains(&count) {
        bail!("{option} must be 1 to {COUNT_MAX}");
    }
    Ok(count)
}

/// One timed step, run on each side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    CopyTree,
    ExtractTar,
    ListLong,
    StatWalk,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::CopyTree => "cp -r",
            Step::ExtractTar => "tar -x",
            Step::ListLong => "ls -l",
            Step::StatWalk => "readdir + lstat each",
        }
    }

    fn writes(self) -> bool {
        matches!(self, Step::CopyTree | Step::ExtractTar)
    }
}

/// One run of one step on one side.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Sample {
    /// Until the step's result was there: for a write, until a second
    /// client saw every file.
    seconds: f64,
    /// The command's own run.
    command_seconds: f64,
    /// CPU seconds of the mount process during the step.
    mount_cpu_seconds: f64,
    settled: Settled,
}

/// Every round of one step.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct StepRuns {
    step: Step,
    /// Files written, or entries stat'ed, per run.
    count: usize,
    ours_first: Vec<bool>,
    ours: Vec<Sample>,
    /// Empty with `--no-moosefs`.
    moosefs: Vec<Sample>,
}

impl StepRuns {
    /// Files or entries per second of each run of a side.
    fn rates(&self, samples: &[Sample]) -> Vec<f64> {
        samples
            .iter()
            .map(|sample| self.count as f64 / sample.seconds.max(1e-9))
            .collect()
    }

    fn ours_rates(&self) -> Option<Spread> {
        spread(&self.rates(&self.ours))
    }

    /// Ours against MooseFS in rates (higher is better); None without
    /// MooseFS.
    fn comparison(&self) -> Option<Comparison> {
        if self.moosefs.is_empty() {
            return None;
        }
        compare(&self.rates(&self.ours), &self.rates(&self.moosefs))
    }

    fn samples(&self, system: System) -> &[Sample] {
        match system {
            System::Ours => &self.ours,
            System::MooseFs => &self.moosefs,
        }
    }
}

/// What the run measured, for the table and the JSON.
pub(super) struct Report {
    command: String,
    rounds: usize,
    file_size: u64,
    /// Files and directories of the small-file tree.
    tree: Option<(usize, usize)>,
    moosefs: Option<String>,
    load: [f64; 2],
    steps: Vec<StepRuns>,
}

pub fn run(options: Options) -> Result<()> {
    let (dir, _scratch) = work_dir(options.dir.as_deref())?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    if options.moosefs {
        moosefs::check_installed()?;
    }
    cold().context("can't drop the page cache (needs root): the cold numbers would be lies")?;
    let load_before = load_average();
    let moosefs_version = options.moosefs.then(moosefs::version);
    println!(
        "mount, small files and stat: in {}; ours: 1 master, 3 minions on 127.0.0.1, replication \
         {}; baseline: {}; {} rounds, order alternating",
        dir.display(),
        systems::REPLICATION,
        match &moosefs_version {
            Some(version) => format!(
                "MooseFS {version}, 1 master, {} chunkservers, goal {}",
                moosefs::CHUNKSERVERS,
                moosefs::GOAL
            ),
            None => "none (--no-moosefs)".to_string(),
        },
        options.rounds
    );
    let mut bench = SmallBench::new(&dir, options.moosefs, options.rounds)?;
    let mut steps = Vec::new();
    let mut tree_shape = None;
    if let Some(count) = options.small_files {
        let source = WriteSource::make(&dir, count, options.file_size)?;
        tree_shape = Some((count, source.tree.directory_count()));
        for step in [Step::CopyTree, Step::ExtractTar] {
            steps.push(bench.measure_rounds(step, count, |bench, system| {
                bench.measure_write(system, step, &source)
            })?);
        }
    }
    if let Some(entries) = options.stat_entries {
        steps.extend(bench.measure_stat(entries, options.file_size)?);
    }
    let report = Report {
        command,
        rounds: options.rounds,
        file_size: options.file_size,
        tree: tree_shape,
        moosefs: moosefs_version,
        load: [load_before, load_average()],
        steps,
    };
    println!();
    print!("{}", render::table(&report));
    if let Some(path) = &options.json {
        std::fs::write(path, render::json(&report))
            .with_context(|| format!("write {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// The small-file tree and its tar archive.
struct WriteSource {
    tree: Tree,
    archive: PathBuf,
}

impl WriteSource {
    fn make(dir: &Path, count: usize, file_size: u64) -> Result<WriteSource> {
        let tree = Tree::generate(
            &dir.join("source"),
            "tree",
            count,
            file_size,
            Layout::Nested,
        )?;
        let archive = dir.join("tree.tar");
        tree.archive(&archive)?;
        println!(
            "\nsmall files: {count} files of {} in {} directories ({} in all); tar archive of {}",
            format_bytes(file_size),
            tree.directory_count(),
            format_bytes(count as u64 * file_size),
            format_bytes(std::fs::metadata(&archive).map_or(0, |meta| meta.len()))
        );
        Ok(WriteSource { tree, archive })
    }
}

/// The work directory, the mountpoints and the steps run so far.
struct SmallBench {
    dir: PathBuf,
    moosefs: bool,
    rounds: usize,
    /// Steps started, to name each step's directory.
    started: usize,
}

impl SmallBench {
    fn new(dir: &Path, moosefs: bool, rounds: usize) -> Result<SmallBench> {
        let bench = SmallBench {
            dir: dir.to_path_buf(),
            moosefs,
            rounds,
            started: 0,
        };
        for system in [System::Ours, System::MooseFs] {
            let path = dir.join(format!("mnt-{}", system.name()));
            std::fs::create_dir_all(&path).with_context(|| format!("create {}", path.display()))?;
        }
        Ok(bench)
    }

    /// Where `system` is mounted, with symbolic links resolved (as
    /// /proc/self/mounts names it).
    fn mountpoint(&self, system: System) -> Result<PathBuf> {
        let path = self.dir.join(format!("mnt-{}", system.name()));
        path.canonicalize()
            .with_context(|| format!("resolve {}", path.display()))
    }

    /// `rounds` rounds of `step` on each side, ours first in even rounds
    /// (counting from 0) and MooseFS first in odd ones; one line printed
    /// per round.
    fn measure_rounds(
        &mut self,
        step: Step,
        count: usize,
        mut measure: impl FnMut(&mut SmallBench, System) -> Result<Sample>,
    ) -> Result<StepRuns> {
        let mut runs = StepRuns {
            step,
            count,
            ours_first: Vec::new(),
            ours: Vec::new(),
            moosefs: Vec::new(),
        };
        for index in 0..self.rounds {
            let order = round_order(index, self.moosefs);
            let mut line = format!(
                "  {} round {}/{} ({} first):",
                step.name(),
                index + 1,
                self.rounds,
                order[0].name()
            );
            for &system in order {
                let sample = measure(self, system)?;
                line.push_str(&render::round_cell(step, count, system, &sample));
                match system {
                    System::Ours => runs.ours.push(sample),
                    System::MooseFs => runs.moosefs.push(sample),
                }
            }
            runs.ours_first.push(order[0] == System::Ours);
            println!("{}", line.trim_end_matches(';'));
        }
        Ok(runs)
    }

    /// A directory for the next step's cluster.
    fn step_dir(&mut self, system: System) -> PathBuf {
        self.started += 1;
        self.dir
            .join(format!("step-{:03}-{}", self.started, system.name()))
    }

    /// One write step on a fresh cluster of `system`, which is stopped and
    /// removed afterwards, on error too.
    fn measure_write(
        &mut self,
        system: System,
        step: Step,
        source: &WriteSource,
    ) -> Result<Sample> {
        let dir = self.step_dir(system);
        let mountpoint = self.mountpoint(system)?;
        let measured = Cluster::start(system, &dir, &mountpoint).and_then(|cluster| {
            let measured = timed_write(&cluster, &mountpoint, step, source);
            let stopped = cluster.stop();
            let sample = measured?;
            stopped?;
            Ok(sample)
        });
        let removed =
            std::fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()));
        let sample = measured.with_context(|| format!("{} into {}", step.name(), system.name()))?;
        removed?;
        Ok(sample)
    }

    /// The stat steps: a directory of `entries` files copied in once per
    /// side, then each step from fresh mounts; both clusters run through
    /// all of them and are stopped afterwards, on error too.
    fn measure_stat(&mut self, entries: usize, file_size: u64) -> Result<Vec<StepRuns>> {
        let tree = Tree::generate(
            &self.dir.join("stat-source"),
            "entries",
            entries,
            file_size,
            Layout::Flat,
        )?;
        println!(
            "\nstat: a directory of {entries} files of {}",
            format_bytes(file_size)
        );
        let ours = self.stat_cluster(System::Ours, &tree)?;
        let moosefs = if self.moosefs {
            Some(self.stat_cluster(System::MooseFs, &tree)?)
        } else {
            None
        };
        let measured = self.stat_rounds(&tree, &ours, moosefs.as_ref());
        let stopped = [Some(ours), moosefs]
            .into_iter()
            .flatten()
            .map(Cluster::stop)
            .collect::<Result<Vec<()>>>();
        let runs = measured?;
        stopped?;
        for system in [System::Ours, System::MooseFs] {
            let dir = self.stat_dir(system);
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("remove {}", dir.display()))?;
            }
        }
        Ok(runs)
    }

    fn stat_rounds(
        &mut self,
        tree: &Tree,
        ours: &Cluster,
        moosefs: Option<&Cluster>,
    ) -> Result<Vec<StepRuns>> {
        let mut runs = Vec::new();
        for step in [Step::ListLong, Step::StatWalk] {
            runs.push(
                self.measure_rounds(step, tree.file_count(), |bench, system| {
                    let cluster = match system {
                        System::Ours => ours,
                        System::MooseFs => moosefs.context("MooseFS is not running")?,
                    };
                    timed_stat(cluster, &bench.mountpoint(system)?, step, tree)
                        .with_context(|| format!("{} on {}", step.name(), system.name()))
                })?,
            );
        }
        Ok(runs)
    }

    /// Where the stat steps' cluster of `system` keeps its data.
    fn stat_dir(&self, system: System) -> PathBuf {
        self.dir.join(format!("stat-{}", system.name()))
    }

    /// A cluster of `system` holding a copy of `tree`, written (untimed)
    /// through a mount that is gone again.
    fn stat_cluster(&mut self, system: System, tree: &Tree) -> Result<Cluster> {
        let dir = self.stat_dir(system);
        let mountpoint = self.mountpoint(system)?;
        let cluster = Cluster::start(system, &dir, &mountpoint)?;
        let mount = cluster.mount(&mountpoint)?;
        let mut copy = Command::new("cp");
        copy.arg("-r")
            .arg(tree.root())
            .arg(mountpoint.join(tree.name()));
        timed_child(copy, false)?;
        let started = Instant::now();
        wait_until_seen(&cluster, &mountpoint, tree, started, started.elapsed())?;
        mount.stop()?;
        Ok(cluster)
    }
}

/// The sides of round `index` in order: ours first in even rounds.
fn round_order(index: usize, moosefs: bool) -> &'static [System] {
    match (moosefs, index.is_multiple_of(2)) {
        (false, _) => &[System::Ours],
        (true, true) => &[System::Ours, System::MooseFs],
        (true, false) => &[System::MooseFs, System::Ours],
    }
}

/// Mounts `cluster`, brings the machine to the start state, runs `step`
/// timed, waits for a second client to see every file, and checks the copy
/// through a fresh mount from a cold cache (untimed).
fn timed_write(
    cluster: &Cluster,
    mountpoint: &Path,
    step: Step,
    source: &WriteSource,
) -> Result<Sample> {
    let tree = &source.tree;
    let mount = cluster.mount(mountpoint)?;
    cold()?;
    let mut command = match step {
        Step::CopyTree => {
            tree.warm()?;
            let mut command = Command::new("cp");
            command
                .arg("-r")
                .arg(tree.root())
                .arg(mountpoint.join(tree.name()));
            command
        }
        Step::ExtractTar => {
            checksum_file(&source.archive)?;
            let mut command = Command::new("tar");
            command
                .arg("-xf")
                .arg(&source.archive)
                .arg("-C")
                .arg(mountpoint);
            command
        }
        Step::ListLong | Step::StatWalk => bail!("{} writes nothing", step.name()),
    };
    command.stdin(Stdio::null());
    let settled = settle()?;
    let cpu_before = mount.cpu_seconds()?;
    let started = Instant::now();
    timed_child(command, false)?;
    let command_elapsed = started.elapsed();
    let seconds = wait_until_seen(cluster, mountpoint, tree, started, command_elapsed)?;
    let mount_cpu_seconds = mount.cpu_seconds()? - cpu_before;
    mount.stop().context("unmount after the step")?;
    cluster.check_replicas(tree)?;
    cold()?;
    let reader = cluster.mount(mountpoint)?;
    tree.verify_copy(&mountpoint.join(tree.name()))?;
    reader
        .stop()
        .context("unmount after reading the copy back")?;
    Ok(Sample {
        seconds,
        command_seconds: command_elapsed.as_secs_f64(),
        mount_cpu_seconds,
        settled,
    })
}

/// Asks a second client whether the copy of `tree` is whole, right after
/// the command ended at `command_elapsed` (from `started`): the command's
/// time if it is, else the time of the first answer that says so.
fn wait_until_seen(
    cluster: &Cluster,
    mountpoint: &Path,
    tree: &Tree,
    started: Instant,
    command_elapsed: Duration,
) -> Result<f64> {
    let mut elapsed = command_elapsed;
    loop {
        let seen = cluster.seen(mountpoint, tree)?;
        if seen.whole {
            return Ok(elapsed.as_secs_f64());
        }
        if started.elapsed() >= command_elapsed + Duration::from_millis(COMMIT_TIMEOUT_MS) {
            bail!(
                "not all files there {COMMIT_TIMEOUT_MS} ms after the command exited: {}",
                seen.text
            );
        }
        std::thread::sleep(Duration::from_millis(COMMIT_POLL_MS));
        elapsed = started.elapsed();
    }
}

/// Mounts `cluster` afresh, drops the caches and times `step` over the
/// copy of `tree`; every entry must be seen with its size.
fn timed_stat(cluster: &Cluster, mountpoint: &Path, step: Step, tree: &Tree) -> Result<Sample> {
    let mount = cluster.mount(mountpoint)?;
    cold()?;
    let settled = settle()?;
    let dir = mountpoint.join(tree.name());
    let cpu_before = mount.cpu_seconds()?;
    let started = Instant::now();
    let seen = match step {
        Step::ListLong => stat::list_long(&dir, tree.file_size())?,
        Step::StatWalk => stat::walk(&dir, tree.file_size())?,
        Step::CopyTree | Step::ExtractTar => bail!("{} stats nothing", step.name()),
    };
    let elapsed = started.elapsed().as_secs_f64();
    let mount_cpu_seconds = mount.cpu_seconds()? - cpu_before;
    mount.stop()?;
    if seen != tree.file_count() {
        bail!(
            "VERIFY FAILED: {} saw {seen} files of {} bytes in {}, expected {}",
            step.name(),
            tree.file_size(),
            dir.display(),
            tree.file_count()
        );
    }
    Ok(Sample {
        seconds: elapsed,
        command_seconds: elapsed,
        mount_cpu_seconds,
        settled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Options> {
        parse_options(line.split_whitespace().map(String::from))
    }

    #[test]
    fn options_parse() {
        let options = parse(
            "--small-files 20000 --file-size 8K --stat-entries 10000 --rounds 5 \
             --no-moosefs --json out.json --dir d",
        )
        .expect("parse");
        assert_eq!(options.small_files, Some(20_000));
        assert_eq!(options.stat_entries, Some(10_000));
        assert_eq!(options.file_size, 8 << 10);
        assert_eq!(options.rounds, 5);
        assert!(!options.moosefs);
        assert_eq!(options.json, Some(PathBuf::from("out.json")));
        assert_eq!(options.dir, Some(PathBuf::from("d")));
        let defaults = parse("--stat-entries 10").expect("defaults");
        assert_eq!(defaults.small_files, None);
        assert_eq!(defaults.file_size, 4096);
        assert_eq!(defaults.rounds, 3);
        assert!(defaults.moosefs);
        assert!(
            parse("--no-moosefs --moosefs --small-files 1")
                .expect("last wins")
                .moosefs
        );
        for bad in [
            "",
            "--rounds 3",
            "--small-files",
            "--small-files 0",
            "--small-files x",
            "--small-files 1000001",
            "--stat-entries -1",
            "--small-files 10 --file-size 0",
            "--small-files 10 --file-size 2M",
            "--small-files 10 --rounds 2",
            "--small-files 10 --size 1G",
            "--small-files 10 extra",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn these_modes_are_chosen_by_their_options() {
        let args =
            |line: &str| -> Vec<String> { line.split_whitespace().map(String::from).collect() };
        assert!(selected(&args("--small-files 10")));
        assert!(selected(&args("--rounds 3 --stat-entries 10")));
        assert!(!selected(&args("--size 1G --rounds 3")));
        assert!(!selected(&[]));
    }

    #[test]
    fn rounds_alternate_which_side_goes_first() {
        assert_eq!(round_order(0, true), [System::Ours, System::MooseFs]);
        assert_eq!(round_order(1, true), [System::MooseFs, System::Ours]);
        assert_eq!(round_order(2, true), [System::Ours, System::MooseFs]);
        assert_eq!(round_order(1, false), [System::Ours]);
    }
}
