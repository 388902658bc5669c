//! The nemesis: a randomized fault test on real processes. A cluster (five
//! minions, replication 3, 1 MiB blocks, short liveness timeouts) serves
//! writers (`dfs put` of new files and `put -f` over their own), readers
//! (`dfs cat`/`get` of acknowledged files, every byte checked) and
//! namespace changers (`mkdir`, `mv`, `rm`, small files) through the `dfs`
//! binary, while the nemesis, on the thread that owns the cluster, picks a
//! fault every 1-3 s from a seeded generator: SIGKILL a minion and restart
//! it later, SIGSTOP and SIGCONT one, SIGKILL the master and restart it,
//! restart it gracefully (SIGINT), or cut the one minion that runs in its
//! own network namespace off for a few seconds. At most one minion is down,
//! stopped or cut off at a time (with three replicas nothing acknowledged
//! may be lost), the master at most a few seconds.
//!
//! Every file's bytes name themselves: a header with a magic, the seed and
//! the length, then `RandomReader` bytes of that seed. So any read can be
//! checked on its own (a read that succeeds with bytes no writer wrote, or
//! a mix or a prefix of a version, is a hard failure), and the final check
//! can regenerate every version. Each writer and changer owns a directory
//! and keeps a model of it: for each path the states it may be in. A
//! change acknowledged (exit status 0) sets the state; one that failed or
//! timed out may or may not have happened, so it adds its outcome to the
//! states the path may be in, never a half-written file.
//!
//! At the end every fault is healed, `dfs fsck /` must be healthy within a
//! bound, and then the tree (`dfs ls -R /`) must match the models: every
//! acknowledged file reads back byte-identical, every acknowledged mkdir,
//! mv and rm shows, a path in doubt is absent or one of its possible
//! versions, and no path exists that no worker could have made.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cluster::{Cluster, ClusterOptions, MinionWrapper};
use crate::data::RandomReader;
use crate::netns::NetworkNamespace;
use crate::process::wait_exit;

/// The environment variable a seed is taken from when the options name none.
pub const SEED_VARIABLE: &str = "DFS_NEMESIS_SEED";
/// How long the workers' clients wait for a master that is down or starting.
const MASTER_WAIT: &str = "20s";
/// A `dfs` command running longer is killed; what it did is in doubt.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);
/// The cluster's block size: files of a few MiB have several blocks.
const BLOCK_SIZE: &str = "1M";
const MIB: u64 = 1 << 20;
/// The largest file a writer puts.
const FILE_BYTES_MAX: u64 = 3 * MIB + MIB / 2;
/// The largest file a namespace changer puts.
const SMALL_FILE_BYTES_MAX: u64 = 64 * 1024;
/// The pause between two faults, drawn in this range.
const FAULT_GAP_MS: (u64, u64) = (1_000, 3_000);
/// How long a minion stays killed, stopped or cut off.
const MINION_FAULT_MS: (u64, u64) = (1_000, 6_000);
/// How long the master stays down after a SIGKILL.
const MASTER_DOWN_MS: (u64, u64) = (500, 3_000);
/// How long the master stays down after a graceful stop.
const MASTER_RESTART_MS: (u64, u64) = (0, 1_000);
/// Files a writer keeps: past this it removes some, so a long run's data
/// stays bounded.
const WRITER_FILES_MAX: usize = 32;
/// Paths a namespace changer keeps before it prefers removing.
const CHANGER_PATHS_MAX: usize = 150;
/// Paths readers choose from; past this new ones replace random old ones.
const READABLE_PATHS_MAX: usize = 4_096;
/// How often a final read is tried before the file counts as unreadable.
const FINAL_READ_ATTEMPTS: u32 = 3;
/// The pause between two `dfs fsck /` while waiting for health, and of a
/// reader that has nothing to read yet.
const POLL_PAUSE: Duration = Duration::from_millis(500);
/// What `dfs` says of a path that is not there.
const GONE: &str = "no such file or directory";
/// Every file starts with this, then its seed and length (little-endian).
const MAGIC: &[u8; 8] = b"NEMESIS1";
const HEADER_BYTES: u64 = 24;

/// Daemon log lines with ERROR that the faults legitimately cause. None so
/// far: the daemons log a peer that vanished (killed, stopped, cut off)
/// mid-exchange as a warning, so any ERROR line fails the run.
pub const ALLOWED_LOG_ERRORS: &[&str] = &[];

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// How long workers and faults run (the final check comes after).
    pub duration: Duration,
    /// None: `DFS_NEMESIS_SEED`, else one drawn from the clock.
    pub seed: Option<u64>,
    pub minions: usize,
    pub writers: usize,
    pub readers: usize,
    pub changers: usize,
    /// How long `dfs fsck /` may take to be healthy once faults are healed.
    pub healthy_timeout: Duration,
}

impl Options {
    /// Five minions, three writers, two readers, two namespace changers.
    pub fn for_duration(duration: Duration) -> Options {
        Options {
            duration,
            seed: None,
            minions: 5,
            writers: 3,
            readers: 2,
            changers: 2,
            healthy_timeout: Duration::from_secs(120),
        }
    }
}

/// The faults the nemesis injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    KillMinion,
    StopMinion,
    PartitionMinion,
    KillMaster,
    RestartMaster,
}

impl FaultKind {
    const ALL: [FaultKind; 5] = [
        FaultKind::KillMinion,
        FaultKind::StopMinion,
        FaultKind::PartitionMinion,
        FaultKind::KillMaster,
        FaultKind::RestartMaster,
    ];

    fn is_minion_fault(self) -> bool {
        matches!(
            self,
            FaultKind::KillMinion | FaultKind::StopMinion | FaultKind::PartitionMinion
        )
    }
}

/// Counts of one kind of operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OperationCounts {
    pub acknowledged: u64,
    pub in_doubt: u64,
}

/// What a run did and found.
#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    pub duration: Duration,
    /// Per operation (`put`, `overwrite`, `mkdir`, `mv`, `rm`).
    pub operations: BTreeMap<&'static str, OperationCounts>,
    /// Reads during the run whose bytes were checked, and reads that failed
    /// (allowed while faults are active).
    pub reads_verified: u64,
    pub reads_failed: u64,
    /// Reads of a path moved or removed since it was written.
    pub reads_gone: u64,
    pub faults: BTreeMap<FaultKind, u64>,
    /// Why partitions were left out, if they were.
    pub partitions_skipped: Option<String>,
    /// From the last fault healed to `dfs fsck /` healthy.
    pub time_to_healthy: Option<Duration>,
    /// Paths the final check compared, and files it read back.
    pub paths_checked: u64,
    pub files_read_back: u64,
    /// Where the daemons' logs are; kept when the run failed.
    pub cluster_dir: PathBuf,
    pub failures: Vec<String>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.failures.is_empty()
    }

    pub fn acknowledged(&self) -> u64 {
        self.operations.values().map(|c| c.acknowledged).sum()
    }

    pub fn in_doubt(&self) -> u64 {
        self.operations.values().map(|c| c.in_doubt).sum()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "nemesis seed {} ({SEED_VARIABLE}={} repeats its choices), {:.0} s of faults",
            self.seed,
            self.seed,
            self.duration.as_secs_f64()
        )?;
        writeln!(
            f,
            "operations: {} acknowledged, {} in doubt",
            self.acknowledged(),
            self.in_doubt()
        )?;
        for (name, counts) in &self.operations {
            writeln!(
                f,
                "  {name:<10} {:>6} acknowledged {:>4} in doubt",
                counts.acknowledged, counts.in_doubt
            )?;
        }
        writeln!(
            f,
            "reads during faults: {} verified, {} failed (allowed), {} of paths moved or removed since",
            self.reads_verified, self.reads_failed, self.reads_gone
        )?;
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(kind, count)| format!("{kind:?} {count}"))
            .collect();
        writeln!(f, "faults: {}", faults.join(", "))?;
        if let Some(reason) = &self.partitions_skipped {
            writeln!(f, "partitions skipped: {reason}")?;
        }
        match self.time_to_healthy {
            Some(time) => writeln!(f, "fsck healthy {:.1} s after healing", time.as_secs_f64())?,
            None => writeln!(f, "fsck never healthy")?,
        }
        writeln!(
            f,
            "final check: {} paths, {} files read back byte for byte",
            self.paths_checked, self.files_read_back
        )?;
        if self.is_clean() {
            return writeln!(f, "clean");
        }
        writeln!(
            f,
            "{} FAILURES (seed {}; logs in {}):",
            self.failures.len(),
            self.seed,
            self.cluster_dir.display()
        )?;
        for failure in &self.failures {
            writeln!(f, "  seed {}: {failure}", self.seed)?;
        }
        Ok(())
    }
}

/// Locks `mutex`; a worker that panicked while holding it fails the run
/// anyway, so what it left is still fit to count and report.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

// --- a seeded generator ---

/// The nemesis's choices, from a seed (`seeded::SplitMix64`).
struct Rng(crate::seeded::SplitMix64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(crate::seeded::SplitMix64(seed))
    }

    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// In `low..high` (`low` when the range is empty).
    fn between(&mut self, low: u64, high: u64) -> u64 {
        if high <= low {
            return low;
        }
        low + self.next() % (high - low)
    }

    fn percent(&mut self) -> u64 {
        self.between(0, 100)
    }

    fn millis(&mut self, range: (u64, u64)) -> Duration {
        Duration::from_millis(self.between(range.0, range.1))
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            return None;
        }
        let index = self.between(0, items.len() as u64) as usize;
        items.get(index)
    }
}

fn seed_from_environment_or_clock() -> u64 {
    if let Ok(text) = std::env::var(SEED_VARIABLE) {
        match text.trim().parse() {
            Ok(seed) => return seed,
            Err(error) => panic!("{SEED_VARIABLE}={text:?} is not a number: {error}"),
        }
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |time| time.as_nanos() as u64);
    Rng::new(nanos ^ u64::from(std::process::id())).next()
}

// --- self-describing file contents ---

/// One version of a file: its bytes follow from these two numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Version {
    seed: u64,
    length_bytes: u64,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}/{}B", self.seed, self.length_bytes)
    }
}

fn version_bytes(version: Version) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(version.length_bytes as usize);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&version.seed.to_le_bytes());
    bytes.extend_from_slice(&version.length_bytes.to_le_bytes());
    RandomReader::new(version.seed, version.length_bytes - HEADER_BYTES)
        .read_to_end(&mut bytes)
        .expect("random bytes");
    bytes
}

fn write_version(path: &Path, version: Version) {
    std::fs::write(path, version_bytes(version))
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The version `bytes` are, checked byte for byte, or what is wrong.
fn identify(bytes: &[u8]) -> Result<Version, String> {
    if bytes.len() < HEADER_BYTES as usize || &bytes[..8] != MAGIC {
        let shown = &bytes[..bytes.len().min(8)];
        return Err(format!(
            "{} bytes without the file header (first bytes {shown:02x?})",
            bytes.len()
        ));
    }
    let number = |at: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(word)
    };
    let version = Version {
        seed: number(8),
        length_bytes: number(16),
    };
    if version.length_bytes != bytes.len() as u64 {
        return Err(format!(
            "{} bytes of version {version} (length differs)",
            bytes.len()
        ));
    }
    let expected = version_bytes(version);
    if let Some(offset) = bytes.iter().zip(&expected).position(|(a, b)| a != b) {
        return Err(format!(
            "bytes of version {version} differ from it at offset {offset}"
        ));
    }
    Ok(version)
}

fn random_length(rng: &mut Rng, max_bytes: u64) -> u64 {
    let length = match rng.percent() {
        0..=29 => rng.between(HEADER_BYTES, 4096),
        30..=59 => rng.between(4096, 256 * 1024),
        60..=79 => rng.between(256 * 1024, 3 * MIB / 2),
        // Whole blocks: the last block is exactly full.
        80..=84 => MIB * rng.between(1, 4),
        _ => rng.between(3 * MIB / 2, FILE_BYTES_MAX),
    };
    length.clamp(HEADER_BYTES, max_bytes)
}

// --- running dfs ---

/// How a `dfs` command ended.
enum Outcome {
    /// Exit status 0: acknowledged; its stdout.
    Done(Vec<u8>),
    /// Any other end: its stderr.
    Failed(String),
    TimedOut,
}

impl Outcome {
    fn acknowledged(&self) -> bool {
        matches!(self, Outcome::Done(_))
    }

    fn describe(&self) -> String {
        match self {
            Outcome::Done(_) => "ok".into(),
            Outcome::Failed(stderr) => stderr.trim().replace('\n', " | "),
            Outcome::TimedOut => format!("killed after {COMMAND_TIMEOUT:?}"),
        }
    }
}

/// Runs the `dfs` binary against the cluster from any thread.
struct Dfs {
    program: PathBuf,
    master: String,
}

impl Dfs {
    fn run(&self, args: &[&str]) -> Outcome {
        let mut command = Command::new(&self.program);
        command
            .env_remove("DFS_MASTER")
            .env("DFS_MASTER_WAIT", MASTER_WAIT)
            .arg("--master")
            .arg(&self.master)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) => return Outcome::Failed(format!("spawn dfs: {error}")),
        };
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        let Some(status) = wait_exit(&mut child, COMMAND_TIMEOUT) else {
            let _ = child.kill();
            let _ = child.wait();
            return Outcome::TimedOut;
        };
        let stdout = stdout.join().unwrap_or_default();
        let stderr = stderr.join().unwrap_or_default();
        if status.success() {
            Outcome::Done(stdout)
        } else {
            Outcome::Failed(format!(
                "{status}: {}",
                String::from_utf8_lossy(&stderr).trim()
            ))
        }
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

// --- the model ---

/// A state a path may be in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum State {
    Absent,
    Directory,
    File(Version),
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Absent => write!(f, "absent"),
            State::Directory => write!(f, "directory"),
            State::File(version) => write!(f, "file {version}"),
        }
    }
}

fn show_states(states: &BTreeSet<State>) -> String {
    let shown: Vec<String> = states.iter().map(ToString::to_string).collect();
    format!("{{{}}}", shown.join(", "))
}

/// For each path a worker touched, the states it may be in; a path not
/// listed is absent.
#[derive(Default)]
struct Model {
    paths: BTreeMap<String, BTreeSet<State>>,
}

impl Model {
    fn with_directory(root: &str) -> Model {
        let mut model = Model::default();
        model.set(root, State::Directory, true);
        model
    }

    fn states(&self, path: &str) -> BTreeSet<State> {
        self.paths
            .get(path)
            .cloned()
            .unwrap_or_else(|| BTreeSet::from([State::Absent]))
    }

    /// An acknowledged change makes `state` the only one; one in doubt adds
    /// it to those the path may be in.
    fn set(&mut self, path: &str, state: State, acknowledged: bool) {
        let mut states = if acknowledged {
            BTreeSet::new()
        } else {
            self.states(path)
        };
        states.insert(state);
        self.paths.insert(path.to_string(), states);
    }

    /// `path` and every path below it.
    fn subtree(&self, path: &str) -> Vec<String> {
        let below = format!("{path}/");
        self.paths
            .keys()
            .filter(|key| *key == path || key.starts_with(&below))
            .cloned()
            .collect()
    }

    fn remove(&mut self, path: &str, acknowledged: bool) {
        for key in self.subtree(path) {
            self.set(&key, State::Absent, acknowledged);
        }
    }

    fn rename(&mut self, source: &str, target: &str, acknowledged: bool) {
        let moved: Vec<(String, BTreeSet<State>)> = self
            .subtree(source)
            .into_iter()
            .map(|key| {
                let states = self.states(&key);
                (format!("{target}{}", &key[source.len()..]), states)
            })
            .collect();
        for (key, mut states) in moved {
            if !acknowledged {
                // Not moved: the target keeps whatever it may have been.
                states.extend(self.states(&key));
            }
            self.paths.insert(key, states);
        }
        self.remove(source, acknowledged);
    }

    fn certain(&self, path: &str) -> Option<State> {
        let states = self.paths.get(path)?;
        match states.iter().next() {
            Some(state) if states.len() == 1 => Some(*state),
            _ => None,
        }
    }

    fn certain_directories(&self) -> Vec<String> {
        self.paths
            .keys()
            .filter(|path| self.certain(path) == Some(State::Directory))
            .cloned()
            .collect()
    }

    fn certain_files(&self) -> Vec<String> {
        self.paths
            .keys()
            .filter(|path| matches!(self.certain(path), Some(State::File(_))))
            .cloned()
            .collect()
    }

    /// Paths that may hold a file: `put -f` works whether or not it is there.
    fn possible_files(&self) -> Vec<String> {
        self.paths
            .iter()
            .filter(|(_, states)| states.iter().any(|s| matches!(s, State::File(_))))
            .map(|(path, _)| path.clone())
            .collect()
    }

    fn present_count(&self) -> usize {
        self.paths
            .values()
            .filter(|states| !states.contains(&State::Absent))
            .count()
    }
}

// --- workers ---

/// What the workers share.
struct Shared {
    dfs: Dfs,
    /// Local scratch space for files to put and read back.
    work: PathBuf,
    stop: AtomicBool,
    /// Paths whose put was acknowledged, for readers to choose from.
    readable: Mutex<Vec<String>>,
    /// Every version any worker tried to write.
    versions: Mutex<HashSet<Version>>,
    operations: Mutex<BTreeMap<&'static str, OperationCounts>>,
    reads_verified: AtomicU64,
    reads_failed: AtomicU64,
    reads_gone: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Shared {
    fn new(dfs: Dfs, work: PathBuf) -> Shared {
        std::fs::create_dir_all(&work).unwrap_or_else(|e| panic!("create {}: {e}", work.display()));
        Shared {
            dfs,
            work,
            stop: AtomicBool::new(false),
            readable: Mutex::new(Vec::new()),
            versions: Mutex::new(HashSet::new()),
            operations: Mutex::new(BTreeMap::new()),
            reads_verified: AtomicU64::new(0),
            reads_failed: AtomicU64::new(0),
            reads_gone: AtomicU64::new(0),
            failures: Mutex::new(Vec::new()),
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn fail(&self, failure: String) {
        println!("nemesis FAILURE: {failure}");
        lock(&self.failures).push(failure);
    }

    /// Counts `operation` and, when it is in doubt, says so with why.
    fn record(&self, operation: &'static str, args: &[&str], outcome: &Outcome) {
        let mut operations = lock(&self.operations);
        let counts = operations.entry(operation).or_default();
        if outcome.acknowledged() {
            counts.acknowledged += 1;
        } else {
            counts.in_doubt += 1;
            println!("in doubt: dfs {}: {}", args.join(" "), outcome.describe());
        }
    }

    fn publish(&self, path: &str, rng: &mut Rng) {
        let mut readable = lock(&self.readable);
        if readable.len() < READABLE_PATHS_MAX {
            readable.push(path.to_string());
        } else {
            let index = rng.between(0, readable.len() as u64) as usize;
            readable[index] = path.to_string();
        }
    }

    /// Readers stop choosing `path` and everything below it (removed or
    /// moved away for certain).
    fn unpublish(&self, path: &str) {
        let below = format!("{path}/");
        lock(&self.readable).retain(|p| p != path && !p.starts_with(&below));
    }

    fn new_version(&self, rng: &mut Rng, max_bytes: u64) -> Version {
        let version = Version {
            seed: rng.next(),
            length_bytes: random_length(rng, max_bytes),
        };
        lock(&self.versions).insert(version);
        version
    }
}

/// One writer's or changer's own state: its model and generator.
struct Worker<'a> {
    shared: &'a Shared,
    root: String,
    model: Model,
    rng: Rng,
    /// For fresh names: never used twice by this worker.
    names_made: u64,
}

impl Worker<'_> {
    fn fresh_name(&mut self, prefix: &str) -> String {
        self.names_made += 1;
        format!("{prefix}{}", self.names_made)
    }

    /// `dfs put` of `version` to `path` (`-f` when `force`).
    fn put(&mut self, path: &str, version: Version, force: bool) {
        let local = self.shared.work.join(format!("{:016x}", version.seed));
        write_version(&local, version);
        let local_text = crate::utf8(&local).to_string();
        let mut args = vec!["put"];
        if force {
            args.push("-f");
        }
        args.extend([local_text.as_str(), path]);
        let outcome = self.shared.dfs.run(&args);
        let _ = std::fs::remove_file(&local);
        let acknowledged = outcome.acknowledged();
        self.shared
            .record(if force { "overwrite" } else { "put" }, &args, &outcome);
        self.model.set(path, State::File(version), acknowledged);
        if acknowledged {
            self.shared.publish(path, &mut self.rng);
        }
    }

    /// A new file named by its seed and length in `directory`.
    /// (Seeds are drawn anew for every version, so the name is fresh.)
    fn put_new(&mut self, directory: &str, max_bytes: u64) {
        let version = self.shared.new_version(&mut self.rng, max_bytes);
        // The bytes' header says which version a later `put -f` or `mv`
        // left under the name.
        let path = format!(
            "{directory}/f{:016x}-{}",
            version.seed, version.length_bytes
        );
        self.put(&path, version, false);
    }

    fn mkdir(&mut self, parent: &str) {
        let name = self.fresh_name("d");
        let path = format!("{parent}/{name}");
        let args = ["mkdir", path.as_str()];
        let outcome = self.shared.dfs.run(&args);
        self.shared.record("mkdir", &args, &outcome);
        self.model
            .set(&path, State::Directory, outcome.acknowledged());
    }

    fn mv(&mut self, source: &str, target: &str) {
        let args = ["mv", source, target];
        let outcome = self.shared.dfs.run(&args);
        self.shared.record("mv", &args, &outcome);
        self.model.rename(source, target, outcome.acknowledged());
        if outcome.acknowledged() {
            self.shared.unpublish(source);
            if matches!(self.model.certain(target), Some(State::File(_))) {
                self.shared.publish(target, &mut self.rng);
            }
        }
    }

    fn rm(&mut self, path: &str, recursive: bool) {
        let mut args = vec!["rm"];
        if recursive {
            args.push("-r");
        }
        args.push(path);
        let outcome = self.shared.dfs.run(&args);
        self.shared.record("rm", &args, &outcome);
        self.model.remove(path, outcome.acknowledged());
        if outcome.acknowledged() {
            self.shared.unpublish(path);
        }
    }

    /// New files, `put -f` over its own, and removals past a bound.
    fn write_step(&mut self) {
        let files = self.model.certain_files();
        let roll = self.rng.percent();
        if files.len() > WRITER_FILES_MAX || (roll < 10 && files.len() > 4) {
            if let Some(path) = self.rng.pick(&files).cloned() {
                return self.rm(&path, false);
            }
        }
        let overwritable = self.model.possible_files();
        if roll < 50 {
            if let Some(path) = self.rng.pick(&overwritable).cloned() {
                let version = self.shared.new_version(&mut self.rng, FILE_BYTES_MAX);
                return self.put(&path, version, true);
            }
        }
        let root = self.root.clone();
        self.put_new(&root, FILE_BYTES_MAX);
    }

    /// Directories made, moved and removed, small files put, moved (to a
    /// new name or over another file) and removed.
    fn change_step(&mut self) {
        let directories = self.model.certain_directories();
        let movable: Vec<String> = directories
            .iter()
            .filter(|d| **d != self.root)
            .cloned()
            .collect();
        let files = self.model.certain_files();
        let crowded = self.model.present_count() > CHANGER_PATHS_MAX;
        let roll = if crowded {
            self.rng.between(72, 92)
        } else {
            self.rng.percent()
        };
        let parent = self
            .rng
            .pick(&directories)
            .cloned()
            .unwrap_or_else(|| self.root.clone());
        match roll {
            20..=39 => self.put_new(&parent, SMALL_FILE_BYTES_MAX),
            40..=54 if !files.is_empty() => {
                let source = self.rng.pick(&files).cloned().unwrap_or_default();
                let target = format!("{parent}/{}", self.fresh_name("m"));
                self.mv(&source, &target);
            }
            55..=61 if files.len() >= 2 => {
                let source = self.rng.pick(&files).cloned().unwrap_or_default();
                let target = self.rng.pick(&files).cloned().unwrap_or_default();
                if source != target {
                    self.mv(&source, &target);
                }
            }
            62..=71 if !movable.is_empty() => {
                let source = self.rng.pick(&movable).cloned().unwrap_or_default();
                let inside = format!("{source}/");
                let parents: Vec<String> = directories
                    .iter()
                    .filter(|d| **d != source && !d.starts_with(&inside))
                    .cloned()
                    .collect();
                let parent = self
                    .rng
                    .pick(&parents)
                    .cloned()
                    .unwrap_or(self.root.clone());
                let target = format!("{parent}/{}", self.fresh_name("d"));
                self.mv(&source, &target);
            }
            72..=84 if !files.is_empty() => {
                let path = self.rng.pick(&files).cloned().unwrap_or_default();
                self.rm(&path, false);
            }
            85..=91 if !movable.is_empty() => {
                let path = self.rng.pick(&movable).cloned().unwrap_or_default();
                self.rm(&path, true);
            }
            _ => self.mkdir(&parent),
        }
    }
}

/// What a worker does with its directory.
#[derive(Clone, Copy)]
enum Role {
    Writer,
    Changer,
}

fn run_worker(shared: &Shared, root: String, seed: u64, role: Role) -> Model {
    let mut worker = Worker {
        shared,
        model: Model::with_directory(&root),
        root,
        rng: Rng::new(seed),
        names_made: 0,
    };
    while !shared.stopping() {
        match role {
            Role::Writer => worker.write_step(),
            Role::Changer => worker.change_step(),
        }
    }
    worker.model
}

/// Reads acknowledged files (`cat` or `get`) until told to stop; a read
/// may fail, but one that succeeds must be a whole version some writer
/// wrote.
fn run_reader(shared: &Shared, index: usize, seed: u64) {
    let mut rng = Rng::new(seed);
    let local = shared.work.join(format!("reader-{index}"));
    let local_text = crate::utf8(&local).to_string();
    while !shared.stopping() {
        let path = {
            let readable = lock(&shared.readable);
            rng.pick(&readable).cloned()
        };
        let Some(path) = path else {
            std::thread::sleep(POLL_PAUSE);
            continue;
        };
        let use_get = rng.percent() < 50;
        let command = if use_get { "get" } else { "cat" };
        let _ = std::fs::remove_file(&local);
        let outcome = if use_get {
            shared.dfs.run(&["get", &path, &local_text])
        } else {
            shared.dfs.run(&["cat", &path])
        };
        let bytes = match outcome {
            Outcome::Done(_) if use_get => match std::fs::read(&local) {
                Ok(bytes) => bytes,
                Err(error) => {
                    shared.fail(format!(
                        "dfs get {path} succeeded but left no file: {error}"
                    ));
                    continue;
                }
            },
            Outcome::Done(stdout) => stdout,
            Outcome::Failed(stderr) if stderr.contains(GONE) => {
                shared.reads_gone.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            failed => {
                println!("read failed: dfs {command} {path}: {}", failed.describe());
                shared.reads_failed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        match identify(&bytes) {
            Ok(version) if lock(&shared.versions).contains(&version) => {
                shared.reads_verified.fetch_add(1, Ordering::Relaxed);
            }
            Ok(version) => shared.fail(format!(
                "dfs {command} {path} returned version {version}, which no worker wrote"
            )),
            Err(wrong) => shared.fail(format!(
                "dfs {command} {path} returned wrong bytes: {wrong}"
            )),
        }
    }
    let _ = std::fs::remove_file(&local);
}

// --- the nemesis ---

/// The faults in force and how they are healed; lives on the thread that
/// started the cluster (daemons die with the thread that started them).
struct Nemesis<'a> {
    cluster: &'a mut Cluster,
    /// The namespace and the index of the minion inside it.
    partition: Option<(&'a NetworkNamespace, usize)>,
    rng: Rng,
    started: Instant,
    /// (kind, minion index, heal at).
    minion_fault: Option<(FaultKind, usize, Instant)>,
    master_back_at: Option<Instant>,
    faults: BTreeMap<FaultKind, u64>,
}

impl Nemesis<'_> {
    fn say(&self, what: &str) {
        println!(
            "nemesis {:>7.1} s: {what}",
            self.started.elapsed().as_secs_f64()
        );
    }

    fn available(&self) -> Vec<FaultKind> {
        FaultKind::ALL
            .into_iter()
            .filter(|kind| {
                if kind.is_minion_fault() {
                    self.minion_fault.is_none()
                        && (*kind != FaultKind::PartitionMinion || self.partition.is_some())
                } else {
                    self.master_back_at.is_none()
                }
            })
            .collect()
    }

    fn inject(&mut self) {
        let available = self.available();
        let Some(kind) = self.rng.pick(&available).copied() else {
            return;
        };
        *self.faults.entry(kind).or_default() += 1;
        let now = Instant::now();
        match kind {
            FaultKind::KillMinion | FaultKind::StopMinion => {
                let index = self.rng.between(0, self.cluster.minion_count() as u64) as usize;
                let heal_at = now + self.rng.millis(MINION_FAULT_MS);
                self.minion_fault = Some((kind, index, heal_at));
                if kind == FaultKind::KillMinion {
                    self.say(&format!("SIGKILL minion-{index}"));
                    self.cluster.kill_minion(index);
                } else {
                    self.say(&format!("SIGSTOP minion-{index}"));
                    self.cluster.sigstop_minion(index);
                }
            }
            FaultKind::PartitionMinion => {
                let Some((namespace, index)) = self.partition else {
                    return;
                };
                let heal_at = now + self.rng.millis(MINION_FAULT_MS);
                self.minion_fault = Some((kind, index, heal_at));
                self.say(&format!("cut minion-{index} off"));
                namespace.cut();
            }
            FaultKind::KillMaster => {
                self.master_back_at = Some(now + self.rng.millis(MASTER_DOWN_MS));
                self.say("SIGKILL master");
                self.cluster.kill_master();
            }
            FaultKind::RestartMaster => {
                self.say("SIGINT master");
                self.cluster.stop_master_gracefully();
                self.master_back_at = Some(Instant::now() + self.rng.millis(MASTER_RESTART_MS));
            }
        }
    }

    fn heal_minion(&mut self) {
        let Some((kind, index, _)) = self.minion_fault.take() else {
            return;
        };
        match kind {
            FaultKind::KillMinion => {
                self.say(&format!("restart minion-{index}"));
                self.cluster.start_minion(index);
            }
            FaultKind::StopMinion => {
                self.say(&format!("SIGCONT minion-{index}"));
                self.cluster.sigcont_minion(index);
            }
            FaultKind::PartitionMinion => {
                self.say(&format!("reconnect minion-{index}"));
                if let Some((namespace, _)) = self.partition {
                    namespace.heal();
                }
            }
            FaultKind::KillMaster | FaultKind::RestartMaster => {}
        }
    }

    fn heal_master(&mut self) {
        if self.master_back_at.take().is_some() {
            self.say("start master");
            self.cluster.start_master();
        }
    }

    fn heal_due(&mut self, now: Instant) {
        if self.minion_fault.is_some_and(|(_, _, at)| at <= now) {
            self.heal_minion();
        }
        if self.master_back_at.is_some_and(|at| at <= now) {
            self.heal_master();
        }
    }

    fn heal_all(&mut self) {
        self.heal_minion();
        self.heal_master();
    }

    /// Faults until `deadline`, each pause drawn anew; the faults in force
    /// are healed on time in between.
    fn run_until(&mut self, deadline: Instant) {
        let mut next_fault = Instant::now() + self.rng.millis(FAULT_GAP_MS);
        loop {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            self.heal_due(now);
            if now >= next_fault {
                self.inject();
                next_fault = Instant::now() + self.rng.millis(FAULT_GAP_MS);
            }
            // Wake for whatever comes first: a heal, the next fault, the end.
            let mut wake = next_fault.min(deadline);
            if let Some((_, _, at)) = self.minion_fault {
                wake = wake.min(at);
            }
            if let Some(at) = self.master_back_at {
                wake = wake.min(at);
            }
            std::thread::sleep(wake.saturating_duration_since(Instant::now()));
        }
    }
}

// --- the run ---

/// Sets its flag when dropped, on the way out of a panic too.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Starts the cluster, runs workers and faults for `options.duration`,
/// heals, waits for health and checks everything; the report says what
/// happened and every failure.
pub fn run(options: Options) -> Report {
    let seed = options.seed.unwrap_or_else(seed_from_environment_or_clock);
    println!("nemesis seed {seed} (rerun with {SEED_VARIABLE}={seed})");
    let mut rng = Rng::new(seed);
    let namespace = NetworkNamespace::create();
    let partitions_skipped = namespace.as_ref().err().cloned();
    if let Some(reason) = &partitions_skipped {
        println!("nemesis: partitions skipped: {reason}");
    }
    let namespace = namespace.ok();
    let mut cluster = Cluster::start(cluster_options(&options, namespace.as_ref()));
    // Kept if anything fails (removed below when the run is clean).
    cluster.keep_dir();
    for pattern in ALLOWED_LOG_ERRORS {
        cluster.allow_error(pattern);
    }
    let cluster_dir = cluster.dir().to_path_buf();
    let shared = Shared::new(
        Dfs {
            program: crate::binary("dfs"),
            master: cluster.master_address().to_string(),
        },
        cluster_dir.join("nemesis-work"),
    );
    let roots = worker_roots(&options);
    make_roots(&cluster, &roots);
    let partition = namespace.as_ref().map(|n| (n, options.minions - 1));
    let workload = run_workload(&options, &shared, &roots, &mut cluster, partition, &mut rng);

    let mut failures = std::mem::take(&mut *lock(&shared.failures));
    let time_to_healthy = wait_healthy(&shared.dfs, options.healthy_timeout, &mut failures)
        .then(|| workload.healed_at.elapsed());
    let check = check_final(&shared.dfs, &workload.model, &mut failures);
    failures.extend(cluster.shut_down());
    drop(namespace);
    if failures.is_empty() {
        let _ = std::fs::remove_dir_all(&cluster_dir);
    }
    let operations = std::mem::take(&mut *lock(&shared.operations));
    Report {
        seed,
        duration: options.duration,
        operations,
        reads_verified: shared.reads_verified.load(Ordering::Relaxed),
        reads_failed: shared.reads_failed.load(Ordering::Relaxed),
        reads_gone: shared.reads_gone.load(Ordering::Relaxed),
        faults: workload.faults,
        partitions_skipped,
        time_to_healthy,
        paths_checked: check.paths,
        files_read_back: check.files,
        cluster_dir,
        failures,
    }
}

/// What the workers and the nemesis left.
struct Workload {
    /// Every worker's model, merged (their directories are disjoint).
    model: Model,
    faults: BTreeMap<FaultKind, u64>,
    /// When the last fault was healed.
    healed_at: Instant,
}

/// Workers on their own threads and the nemesis on this one (which
/// started the cluster) until `options.duration` has passed; then every
/// fault is healed and the workers finish their last command.
fn run_workload(
    options: &Options,
    shared: &Shared,
    roots: &[String],
    cluster: &mut Cluster,
    partition: Option<(&NetworkNamespace, usize)>,
    rng: &mut Rng,
) -> Workload {
    std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for root in roots {
            let role = if root.starts_with("/w") {
                Role::Writer
            } else {
                Role::Changer
            };
            let (root, worker_seed) = (root.clone(), rng.next());
            handles.push(scope.spawn(move || run_worker(shared, root, worker_seed, role)));
        }
        for index in 0..options.readers {
            let reader_seed = rng.next();
            scope.spawn(move || run_reader(shared, index, reader_seed));
        }
        // Workers stop even when the nemesis panics (a daemon that would
        // not start): the scope waits for them before the panic goes on.
        let _stop_workers = StopOnDrop(&shared.stop);
        let mut nemesis = Nemesis {
            cluster,
            partition,
            rng: Rng::new(rng.next()),
            started: Instant::now(),
            minion_fault: None,
            master_back_at: None,
            faults: BTreeMap::new(),
        };
        nemesis.run_until(Instant::now() + options.duration);
        shared.stop.store(true, Ordering::Relaxed);
        nemesis.heal_all();
        let healed_at = Instant::now();
        let mut model = Model::default();
        for handle in handles {
            model
                .paths
                .extend(handle.join().expect("a worker panicked").paths);
        }
        Workload {
            model,
            faults: nemesis.faults,
            healed_at,
        }
    })
}

fn cluster_options(options: &Options, namespace: Option<&NetworkNamespace>) -> ClusterOptions {
    let mut cluster = ClusterOptions {
        minions: options.minions,
        block_size: Some(BLOCK_SIZE),
        replication: Some(3),
        stale_after: Some("4s"),
        dead_after: Some("8s"),
        ..ClusterOptions::default()
    };
    if let Some(namespace) = namespace {
        // Everyone else listens on this side of the link, so the minion
        // inside can reach them and is cut off from all of them at once.
        cluster.listen_host = namespace.host_ip().to_string();
        cluster.minion_wrappers = vec![(
            options.minions - 1,
            MinionWrapper {
                prefix: namespace.exec_prefix(),
                listen_host: namespace.inside_ip().to_string(),
            },
        )];
    }
    cluster
}

/// `/w<i>` for writers, `/n<i>` for namespace changers.
fn worker_roots(options: &Options) -> Vec<String> {
    let writers = (0..options.writers).map(|i| format!("/w{i}"));
    let changers = (0..options.changers).map(|i| format!("/n{i}"));
    writers.chain(changers).collect()
}

/// Made before any fault, so every worker starts from a directory that is
/// certainly there.
fn make_roots(cluster: &Cluster, roots: &[String]) {
    let mut args = vec!["mkdir".to_string()];
    args.extend(roots.iter().cloned());
    cluster.dfs_ok(&args);
}

/// Polls `dfs fsck /` until it is healthy (exit status 0); false, with a
/// failure naming its last output, after `timeout`.
fn wait_healthy(dfs: &Dfs, timeout: Duration, failures: &mut Vec<String>) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let outcome = dfs.run(&["fsck", "/"]);
        let last = match outcome {
            Outcome::Done(_) => return true,
            Outcome::Failed(stderr) => stderr,
            Outcome::TimedOut => "timed out".into(),
        };
        if Instant::now() >= deadline {
            // The failure names the blocks fsck listed.
            let listing = match dfs.run(&["fsck", "/"]) {
                Outcome::Done(stdout) => String::from_utf8_lossy(&stdout).into_owned(),
                Outcome::Failed(_) | Outcome::TimedOut => last,
            };
            let lines: Vec<&str> = listing.lines().collect();
            let tail = &lines[lines.len().saturating_sub(20)..];
            failures.push(format!(
                "dfs fsck / not healthy within {timeout:?} of healing; last output:\n{}",
                tail.join("\n")
            ));
            return false;
        }
        std::thread::sleep(POLL_PAUSE);
    }
}

/// What the final check looked at.
#[derive(Default)]
struct Checked {
    paths: u64,
    files: u64,
}

/// Compares the tree with the model: no path nobody made, nothing
/// acknowledged missing, every file one of the versions its path may hold.
fn check_final(dfs: &Dfs, model: &Model, failures: &mut Vec<String>) -> Checked {
    let mut checked = Checked::default();
    let listed = match list_tree(dfs) {
        Ok(listed) => listed,
        Err(error) => {
            failures.push(format!("dfs ls -R / failed after healing: {error}"));
            return checked;
        }
    };
    for (path, is_directory) in &listed {
        checked.paths += 1;
        let states = model.states(path);
        let possible = if *is_directory {
            states.contains(&State::Directory)
        } else {
            states.iter().any(|s| matches!(s, State::File(_)))
        };
        let kind = if *is_directory { "directory" } else { "file" };
        if !possible {
            failures.push(format!(
                "{path} is a {kind}, which no change could have made (it may be {})",
                show_states(&states)
            ));
            continue;
        }
        if !is_directory {
            checked.files += 1;
            check_file(dfs, path, &states, failures);
        }
    }
    for (path, states) in &model.paths {
        if !listed.contains_key(path) && !states.contains(&State::Absent) {
            failures.push(format!(
                "{path} is missing, but it must be {}",
                show_states(states)
            ));
        }
    }
    checked
}

/// `dfs ls -R /`: every path below the root, and whether it is a directory.
fn list_tree(dfs: &Dfs) -> Result<BTreeMap<String, bool>, String> {
    let stdout = match dfs.run(&["ls", "-R", "/"]) {
        Outcome::Done(stdout) => stdout,
        other => return Err(other.describe()),
    };
    let text = String::from_utf8(stdout).map_err(|_| "not UTF-8".to_string())?;
    Ok(text
        .lines()
        .map(|line| match line.strip_suffix('/') {
            Some(directory) => (directory.to_string(), true),
            None => (line.to_string(), false),
        })
        .collect())
}

fn check_file(dfs: &Dfs, path: &str, states: &BTreeSet<State>, failures: &mut Vec<String>) {
    let mut last = String::new();
    for _ in 0..FINAL_READ_ATTEMPTS {
        match dfs.run(&["cat", path]) {
            Outcome::Done(bytes) => {
                match identify(&bytes) {
                    Ok(version) if states.contains(&State::File(version)) => {}
                    Ok(version) => failures.push(format!(
                        "{path} reads back as version {version}, but it must be {}",
                        show_states(states)
                    )),
                    Err(wrong) => failures.push(format!(
                        "{path} reads back wrong bytes: {wrong}; it must be {}",
                        show_states(states)
                    )),
                }
                return;
            }
            other => last = other.describe(),
        }
    }
    failures.push(format!(
        "{path} cannot be read after healing ({last}); it must be {}",
        show_states(states)
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(seed: u64) -> State {
        State::File(Version {
            seed,
            length_bytes: 100,
        })
    }

    #[test]
    fn file_bytes_name_their_version_and_every_change_is_caught() {
        let written = Version {
            seed: 7,
            length_bytes: 5000,
        };
        let mut bytes = version_bytes(written);
        assert_eq!(identify(&bytes), Ok(written));
        assert!(identify(&bytes[..4999]).is_err(), "a prefix");
        bytes[4000] ^= 1;
        let error = identify(&bytes).expect_err("a flipped bit");
        assert!(error.contains("offset 4000"), "{error}");
        assert!(identify(b"short").is_err());
    }

    #[test]
    fn an_acknowledged_change_is_certain_and_one_in_doubt_adds_a_possibility() {
        let mut model = Model::with_directory("/n0");
        model.set("/n0/a", version(1), true);
        assert_eq!(model.certain("/n0/a"), Some(version(1)));
        model.set("/n0/a", version(2), false);
        assert_eq!(model.certain("/n0/a"), None);
        assert_eq!(
            model.states("/n0/a"),
            BTreeSet::from([version(1), version(2)])
        );
        model.set("/n0/a", version(3), true);
        assert_eq!(model.certain("/n0/a"), Some(version(3)));
        model.remove("/n0/a", false);
        assert_eq!(
            model.states("/n0/a"),
            BTreeSet::from([State::Absent, version(3)])
        );
    }

    #[test]
    fn a_rename_moves_the_subtree_and_one_in_doubt_leaves_both_places_possible() {
        let mut model = Model::with_directory("/n0");
        model.set("/n0/d", State::Directory, true);
        model.set("/n0/d/f", version(1), true);
        model.rename("/n0/d", "/n0/e", true);
        assert_eq!(model.certain("/n0/d"), Some(State::Absent));
        assert_eq!(model.certain("/n0/d/f"), Some(State::Absent));
        assert_eq!(model.certain("/n0/e"), Some(State::Directory));
        assert_eq!(model.certain("/n0/e/f"), Some(version(1)));
        model.rename("/n0/e", "/n0/g", false);
        assert_eq!(
            model.states("/n0/e/f"),
            BTreeSet::from([State::Absent, version(1)])
        );
        assert_eq!(
            model.states("/n0/g/f"),
            BTreeSet::from([State::Absent, version(1)])
        );
        // A file moved over another replaces it.
        model.set("/n0/x", version(2), true);
        model.set("/n0/y", version(3), true);
        model.rename("/n0/x", "/n0/y", true);
        assert_eq!(model.certain("/n0/y"), Some(version(2)));
        assert_eq!(model.certain("/n0/x"), Some(State::Absent));
    }

    #[test]
    fn the_generator_repeats_for_a_seed() {
        let draw = |seed| {
            let mut rng = Rng::new(seed);
            (0..4).map(|_| rng.next()).collect::<Vec<u64>>()
        };
        assert_eq!(draw(5), draw(5));
        assert_ne!(draw(5), draw(6));
        let mut rng = Rng::new(1);
        assert!((0..1000).all(|_| (3..7).contains(&rng.between(3, 7))));
    }
}
