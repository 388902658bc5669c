//! The baseline: a MooseFS cluster (one `mfsmaster`, `CHUNKSERVERS`
//! `mfschunkserver`s, goal `GOAL`) and `mfsmount`, set up by this harness
//! in its work directory and torn down when dropped.
//!
//! Nothing under /etc is read or changed: every daemon gets its own config
//! file (`-c`), data directory and hdd list in the work directory. The
//! chunkserver refuses a master on 127.0.0.0/8 (the master hands clients
//! the chunkservers' addresses as it sees them), so the cluster runs in a
//! network namespace of its own (`ip netns add`), on an address
//! (`ADDRESS`) on that namespace's loopback interface: the traffic never
//! leaves this machine's loopback, and nothing else listens there, so the
//! ports cannot collide. The daemons, `mfsmount` and the tools that talk to
//! the master (`mfssetgoal`, `mfsdirinfo`) run under `nsenter --net`, which
//! enters only the network namespace: the mount is seen by every process
//! here.
//!
//! Every option is MooseFS's default but two: the daemons and the mount
//! run at nice 0 (`NICE_LEVEL = 0`, `-o mfsnice=0`; by default they raise
//! themselves to -19) so that other work on the machine weighs on both
//! sides alike, and the goal of the root directory is set to 3 (the
//! default is 2) to match our replication.

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub(super) use mount::Mount;

mod mount;

/// The Debian packages that hold the programs below.
pub(super) const PACKAGES: &str = "moosefs-master moosefs-chunkserver moosefs-client";
/// The programs of those packages the baseline runs.
const PROGRAMS: [&str; 5] = [
    "mfsmaster",
    "mfschunkserver",
    "mfsmount",
    "mfssetgoal",
    "mfsdirinfo",
];
/// Chunkservers, and copies of each chunk: replication 3, as ours.
pub(super) const CHUNKSERVERS: usize = 3;
pub(super) const GOAL: u64 = 3;
/// The cluster's address, on the loopback interface of its own network
/// namespace (see the module's comment).
const ADDRESS: &str = "10.254.0.1";
/// The master's ports for metaloggers, chunkservers and clients; the
/// chunkservers listen on the ports after them (MooseFS's defaults are
/// 9419-9422).
const MASTER_PORTS: [u16; 3] = [19419, 19420, 19421];
const CHUNKSERVER_PORT_FIRST: u16 = 19422;
/// The empty file system a new master starts from (the contents of
/// MooseFS's `metadata.mfs.empty`).
const EMPTY_METADATA: &[u8] = b"MFSM NEW";
/// Longest wait for the master to listen and for every chunkserver to
/// register with it, and for a mount to show up.
const START_TIMEOUT_MS: u64 = 30_000;
const POLL_MS: u64 = 50;
/// Longest wait for a daemon to exit after SIGTERM (the master saves its
/// metadata first), and for `mfsmount` to exit once unmounted (it mostly
/// takes a second or two, but was once seen to take more than 20 s after
/// a step of 20,000 files).
const STOP_TIMEOUT_MS: u64 = 120_000;
/// What the master's log says once it serves clients, and once per
/// chunkserver that registered.
const MASTER_READY: &str = "main master server module: listen on";
const CHUNKSERVER_REGISTERED: &str = "chunkserver register end";
/// The file written to check that chunks get `GOAL` copies before any
/// step runs; it stays in the root directory, outside every step's tree.
const PROBE_NAME: &str = ".probe";
const PROBE_BYTES: usize = 4096;

/// Fails with the packages to install unless every program is there.
pub(super) fn check_installed() -> Result<()> {
    let missing: Vec<&str> = PROGRAMS
        .iter()
        .filter(|program| find_program(program).is_none())
        .copied()
        .collect();
    if !missing.is_empty() {
        bail!(
            "MooseFS, the baseline, is not installed ({} not found): \
             apt-get install -y {PACKAGES}, or pass --no-moosefs to measure dfs-mount alone",
            missing.join(", ")
        );
    }
    for program in ["ip", "nsenter", "tar"] {
        if find_program(program).is_none() {
            bail!("{program} not found: the MooseFS baseline needs iproute2, util-linux and tar");
        }
    }
    Ok(())
}

/// `program` in $PATH or in the sbin directories (the daemons live there).
fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// `mfsmaster -v`'s version line, for the report.
pub(super) fn version() -> String {
    Command::new("mfsmaster")
        .arg("-v")
        .output()
        .ok()
        .map(|output| {
            let text = String::from_utf8_lossy(&output.stdout);
            let text = text.trim();
            text.strip_prefix("version: ").unwrap_or(text).to_string()
        })
        .filter(|text| !text.is_empty())
        .unwrap_or_else(|| "unknown version".to_string())
}

/// The master's config file.
pub(super) fn master_config(dir: &Path) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "WORKING_USER = root\nWORKING_GROUP = root");
    let _ = writeln!(text, "NICE_LEVEL = 0");
    let _ = writeln!(text, "DATA_PATH = {}", dir.join("master").display());
    let _ = writeln!(
        text,
        "EXPORTS_FILENAME = {}",
        dir.join("mfsexports.cfg").display()
    );
    let _ = writeln!(
        text,
        "TOPOLOGY_FILENAME = {}",
        dir.join("mfstopology.cfg").display()
    );
    for (prefix, port) in ["MATOML", "MATOCS", "MATOCL"].iter().zip(MASTER_PORTS) {
        let _ = writeln!(text, "{prefix}_LISTEN_HOST = {ADDRESS}");
        let _ = writeln!(text, "{prefix}_LISTEN_PORT = {port}");
    }
    text
}

/// Clients from the cluster's address may mount everything, as root.
pub(super) fn exports() -> String {
    format!("{ADDRESS} / rw,alldirs,admin,maproot=0:0\n")
}

/// The config file of chunkserver `index`, whose files are in `dir`.
pub(super) fn chunkserver_config(dir: &Path, index: usize) -> String {
    let port = CHUNKSERVER_PORT_FIRST + index as u16;
    format!(
        "WORKING_USER = root\nWORKING_GROUP = root\nNICE_LEVEL = 0\n\
         DATA_PATH = {}\nHDD_CONF_FILENAME = {}\n\
         MASTER_HOST = {ADDRESS}\nMASTER_PORT = {}\nBIND_HOST = {ADDRESS}\n\
         CSSERV_LISTEN_HOST = {ADDRESS}\nCSSERV_LISTEN_PORT = {port}\n",
        dir.join("data").display(),
        dir.join("mfshdd.cfg").display(),
        MASTER_PORTS[1],
    )
}

/// What `mfsdirinfo` says of a directory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct DirInfo {
    pub(super) files: u64,
    /// Bytes of the files.
    pub(super) length: u64,
    /// Bytes of their chunks, and of all the chunks' copies.
    pub(super) size: u64,
    pub(super) realsize: u64,
}

impl DirInfo {
    /// Whether the directory holds `files` files of `file_size` bytes, each
    /// chunk with `GOAL` copies.
    pub(super) fn holds(&self, files: u64, file_size: u64) -> bool {
        self.files == files && self.length == files * file_size && self.realsize == GOAL * self.size
    }
}

/// The numbers of `mfsdirinfo`'s output (lines such as ` files:  2000`);
/// None when one is missing.
pub(super) fn parse_dir_info(text: &str) -> Option<DirInfo> {
    let field = |name: &str| -> Option<u64> {
        text.lines().find_map(|line| {
            line.trim()
                .strip_prefix(name)?
                .strip_prefix(':')?
                .trim()
                .parse()
                .ok()
        })
    };
    Some(DirInfo {
        files: field("files")?,
        length: field("length")?,
        size: field("size")?,
        realsize: field("realsize")?,
    })
}

/// A network namespace with `ADDRESS` on its loopback interface, deleted
/// when dropped.
struct Namespace {
    name: String,
}

impl Namespace {
    fn create() -> Result<Namespace> {
        let name = format!("dfs-perf-{:08x}", dfs_engine::rpc::random_u64()? as u32);
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let namespace = Namespace { name };
        let address = format!("{ADDRESS}/32");
        run(Command::new("ip").args(["-n", &namespace.name, "link", "set", "lo", "up"]))?;
        run(Command::new("ip").args([
            "-n",
            &namespace.name,
            "addr",
            "add",
            &address,
            "dev",
            "lo",
        ]))?;
        Ok(namespace)
    }

    /// `program` to be run in the namespace (only its network: the mount
    /// namespace stays this process's).
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/{}", self.name))
            .arg("--")
            .arg(program);
        command
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Err(error) = run(Command::new("ip").args(["netns", "delete", &self.name])) {
            eprintln!("{error:#}");
        }
    }
}

/// Runs `command` to its end; fails unless it succeeded, quoting its
/// standard error.
fn run(command: &mut Command) -> Result<String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).to_string())
}

/// A MooseFS daemon in the foreground (`-f`), stopped when dropped.
struct Daemon {
    name: String,
    child: Child,
    log: PathBuf,
    stopped: bool,
}

impl Daemon {
    fn start(namespace: &Namespace, program: &str, config: &Path, log: &Path) -> Result<Daemon> {
        let output = File::create(log).with_context(|| format!("create {}", log.display()))?;
        let errors = output
            .try_clone()
            .with_context(|| format!("open {}", log.display()))?;
        let child = namespace
            .command(program)
            .arg("-c")
            .arg(config)
            .args(["-f", "start"])
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(errors)
            .spawn()
            .with_context(|| format!("start {program}"))?;
        Ok(Daemon {
            name: format!("{program} -c {}", config.display()),
            child,
            log: log.to_path_buf(),
            stopped: false,
        })
    }

    /// Fails if the daemon has exited.
    fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait().context("wait for a daemon")? {
            self.stopped = true;
            bail!("{} exited with {status}{}", self.name, log_tail(&self.log));
        }
        Ok(())
    }

    /// SIGTERM and a clean exit, else SIGKILL (and an error).
    fn stop(&mut self) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let pid = libc::pid_t::try_from(self.child.id()).context("daemon pid")?;
        // SAFETY: kill(2) on our own, unreaped child; no memory is involved.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().context("wait for a daemon")? {
                if !status.success() {
                    bail!(
                        "{} exited with {status} after SIGTERM{}",
                        self.name,
                        log_tail(&self.log)
                    );
                }
                return Ok(());
            }
            if started.elapsed() >= Duration::from_millis(STOP_TIMEOUT_MS) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "{} still running {STOP_TIMEOUT_MS} ms after SIGTERM: killed",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(POLL_MS));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            eprintln!("{error:#}");
        }
    }
}

/// A running MooseFS cluster with an empty file system (but for the
/// probe) whose root directory has goal `GOAL`; stopped when dropped.
pub(super) struct Cluster {
    dir: PathBuf,
    chunkservers: Vec<Daemon>,
    master: Daemon,
    /// Deleted after the daemons stopped (fields drop in this order).
    namespace: Namespace,
}

impl Cluster {
    /// Writes the config files into `dir` (which must be empty or absent),
    /// starts the master and the chunkservers, waits until every
    /// chunkserver registered, sets the goal and checks that a file written
    /// through a mount at `mountpoint` gets `GOAL` copies.
    pub(super) fn start(dir: &Path, mountpoint: &Path) -> Result<Cluster> {
        std::fs::create_dir_all(dir.join("master"))
            .with_context(|| format!("create {}", dir.display()))?;
        let write = |path: PathBuf, contents: &[u8]| -> Result<()> {
            std::fs::write(&path, contents).with_context(|| format!("write {}", path.display()))
        };
        write(dir.join("master/metadata.mfs"), EMPTY_METADATA)?;
        write(dir.join("mfsexports.cfg"), exports().as_bytes())?;
        write(dir.join("mfstopology.cfg"), b"")?;
        write(dir.join("mfsmaster.cfg"), master_config(dir).as_bytes())?;
        for index in 0..CHUNKSERVERS {
            let chunkserver = chunkserver_dir(dir, index);
            for sub in ["data", "hdd"] {
                let path = chunkserver.join(sub);
                std::fs::create_dir_all(&path)
                    .with_context(|| format!("create {}", path.display()))?;
            }
            let hdd = format!("{}\n", chunkserver.join("hdd").display());
            write(chunkserver.join("mfshdd.cfg"), hdd.as_bytes())?;
            let config = chunkserver_config(&chunkserver, index);
            write(chunkserver.join("mfschunkserver.cfg"), config.as_bytes())?;
        }
        let namespace = Namespace::create()?;
        let master_log = dir.join("master.log");
        let mut master = Daemon::start(
            &namespace,
            "mfsmaster",
            &dir.join("mfsmaster.cfg"),
            &master_log,
        )?;
        wait_for_log(&mut master, &mut [], MASTER_READY, 1)?;
        let mut chunkservers = Vec::with_capacity(CHUNKSERVERS);
        for index in 0..CHUNKSERVERS {
            let chunkserver = chunkserver_dir(dir, index);
            chunkservers.push(Daemon::start(
                &namespace,
                "mfschunkserver",
                &chunkserver.join("mfschunkserver.cfg"),
                &dir.join(format!("chunkserver-{index}.log")),
            )?);
        }
        wait_for_log(
            &mut master,
            &mut chunkservers,
            CHUNKSERVER_REGISTERED,
            CHUNKSERVERS,
        )?;
        let cluster = Cluster {
            dir: dir.to_path_buf(),
            chunkservers,
            master,
            namespace,
        };
        cluster.prepare(mountpoint)?;
        Ok(cluster)
    }

    /// Sets goal `GOAL` on the root directory (new files inherit it) and
    /// writes the probe, waiting until its chunk has `GOAL` copies.
    fn prepare(&self, mountpoint: &Path) -> Result<()> {
        let mount = self.mount(mountpoint)?;
        run(self
            .namespace
            .command("mfssetgoal")
            .arg(GOAL.to_string())
            .arg(mountpoint))?;
        let probe = mountpoint.join(PROBE_NAME);
        std::fs::write(&probe, [0x5a; PROBE_BYTES])
            .with_context(|| format!("write {}", probe.display()))?;
        let started = Instant::now();
        loop {
            // The root holds nothing but the probe.
            let info = self.dir_info(mountpoint)?;
            if info.holds(1, PROBE_BYTES as u64) {
                break;
            }
            if started.elapsed() >= Duration::from_millis(START_TIMEOUT_MS) {
                bail!(
                    "MooseFS: the probe file has {info:?} {START_TIMEOUT_MS} ms after it was \
                     written, expected 1 file of {PROBE_BYTES} bytes with {GOAL} copies; see {}",
                    self.dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(POLL_MS));
        }
        mount.stop().context("unmount after the probe")
    }

    /// Mounts the cluster at `mountpoint` with a new `mfsmount`, its output
    /// appended to `mount.log`.
    pub(super) fn mount(&self, mountpoint: &Path) -> Result<Mount> {
        Mount::start(&self.namespace, mountpoint, &self.dir.join("mount.log"))
    }

    /// `mfsdirinfo PATH` (asked of the master, not of a mount's caches).
    pub(super) fn dir_info(&self, path: &Path) -> Result<DirInfo> {
        let text = run(self.namespace.command("mfsdirinfo").arg("-n").arg(path))?;
        parse_dir_info(&text)
            .with_context(|| format!("mfsdirinfo {} said {text:?}", path.display()))
    }

    /// Stops the chunkservers and the master (which saves its metadata);
    /// fails if any did not stop cleanly.
    pub(super) fn stop(mut self) -> Result<()> {
        let mut problems = Vec::new();
        for daemon in self
            .chunkservers
            .iter_mut()
            .chain(std::iter::once(&mut self.master))
        {
            if let Err(error) = daemon.stop() {
                problems.push(format!("{error:#}"));
            }
        }
        if !problems.is_empty() {
            bail!("MooseFS: {}", problems.join("; "));
        }
        Ok(())
    }
}

fn chunkserver_dir(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("chunkserver-{index}"))
}

/// Waits until `daemon`'s log holds `count` lines with `text`, failing if
/// it or any of `others` exits, or after `START_TIMEOUT_MS`.
fn wait_for_log(
    daemon: &mut Daemon,
    others: &mut [Daemon],
    text: &str,
    count: usize,
) -> Result<()> {
    let started = Instant::now();
    loop {
        let log = std::fs::read_to_string(&daemon.log).unwrap_or_default();
        if log.lines().filter(|line| line.contains(text)).count() >= count {
            return Ok(());
        }
        daemon.check_running()?;
        for other in others.iter_mut() {
            other.check_running()?;
        }
        if started.elapsed() >= Duration::from_millis(START_TIMEOUT_MS) {
            bail!(
                "{}: no {count} lines {text:?} in its log after {START_TIMEOUT_MS} ms{}",
                daemon.name,
                log_tail(&daemon.log)
            );
        }
        std::thread::sleep(Duration::from_millis(POLL_MS));
    }
}

/// The last lines of a log, to quote in an error.
fn log_tail(log: &Path) -> String {
    crate::mount::quote_log(log, &log.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_keep_everything_in_the_work_directory_on_the_cluster_address() {
        let master = master_config(Path::new("/w"));
        assert!(master.contains("DATA_PATH = /w/master\n"), "{master}");
        assert!(master.contains("EXPORTS_FILENAME = /w/mfsexports.cfg\n"));
        assert!(master.contains("MATOCL_LISTEN_HOST = 10.254.0.1\nMATOCL_LISTEN_PORT = 19421\n"));
        assert!(master.contains("MATOCS_LISTEN_PORT = 19420\n"));
        assert!(master.contains("NICE_LEVEL = 0\n"));
        let chunkserver = chunkserver_config(Path::new("/w/chunkserver-2"), 2);
        assert!(chunkserver.contains("HDD_CONF_FILENAME = /w/chunkserver-2/mfshdd.cfg\n"));
        assert!(chunkserver.contains("MASTER_HOST = 10.254.0.1\nMASTER_PORT = 19420\n"));
        assert!(chunkserver.contains("CSSERV_LISTEN_PORT = 19424\n"));
        assert_eq!(exports(), "10.254.0.1 / rw,alldirs,admin,maproot=0:0\n");
    }

    #[test]
    fn dir_info_is_read_from_mfsdirinfo_output() {
        let text = "/mnt/tree:\n inodes:                       2011\n  directories:      11\n  \
                    files:                       2000\n chunks:                       2000\n \
                    length:                    8192000\n size:                    147456000\n \
                    realsize:                442368000\n";
        let info = parse_dir_info(text).expect("parsed");
        assert_eq!(
            info,
            DirInfo {
                files: 2000,
                length: 8_192_000,
                size: 147_456_000,
                realsize: 442_368_000
            }
        );
        assert!(info.holds(2000, 4096));
        assert!(!info.holds(2000, 4095));
        assert!(!info.holds(1999, 4096));
        let two_copies = DirInfo {
            realsize: 2 * info.size,
            ..info
        };
        assert!(!two_copies.holds(2000, 4096));
        assert_eq!(parse_dir_info("files: 1\nlength: 2\n"), None);
    }
}
