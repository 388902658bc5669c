//! What the mount suites share: a real `dfs-mount` process on a real
//! cluster, unmounted when dropped, and small helpers to run programs in it.

#![allow(dead_code)]

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use dfs_testkit::{binary, wait_for, ChildGuard, Cluster, ClusterOptions, Signal};

/// How long a mount may take to appear or to go.
pub const MOUNT_WAIT: Duration = Duration::from_secs(20);

pub fn is_mounted(mountpoint: &Path) -> bool {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let wanted = mountpoint.to_string_lossy();
    mounts
        .lines()
        .any(|line| line.split(' ').nth(1) == Some(wanted.as_ref()))
}

/// A running `dfs-mount`; unmounts (lazily, if it must) when dropped.
pub struct Mounted {
    pub mountpoint: PathBuf,
    pub process: Option<ChildGuard>,
}

impl Mounted {
    /// Mounts with `dfs-mount`, its log in the cluster's directory.
    pub fn start(cluster: &Cluster, mountpoint: &Path) -> Mounted {
        Mounted::start_with(cluster, mountpoint, false, &[])
    }

    /// Mounts with `dfs-mount`, or with `via_dfs` through `dfs mount`,
    /// with `extra` arguments.
    pub fn start_with(
        cluster: &Cluster,
        mountpoint: &Path,
        via_dfs: bool,
        extra: &[&str],
    ) -> Mounted {
        Mounted::start_proving(cluster, mountpoint, via_dfs, extra, &cluster.identity_env())
    }

    /// `start_with`, the mount proving the identity `identity` (a file, or
    /// `none`).
    pub fn start_proving(
        cluster: &Cluster,
        mountpoint: &Path,
        via_dfs: bool,
        extra: &[&str],
        identity: &std::ffi::OsStr,
    ) -> Mounted {
        fs::create_dir_all(mountpoint).expect("create the mountpoint");
        let log = File::create(cluster.dir().join(format!(
            "mount-{}.log",
            mountpoint.file_name().map_or("x".into(), |n| n.to_string_lossy())
        )))
        .expect("create the mount log");
        let mut command = if via_dfs {
            let mut command = Command::new(binary("dfs"));
            command.args(["--master", cluster.master_address(), "mount"]);
            command.arg(mountpoint);
            command
        } else {
            let mut command = Command::new(binary("dfs-mount"));
            command.arg(mountpoint);
            command.args(["--master", cluster.master_address()]);
            command
        };
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no
        // memory of the parent: the mount dies with the thread that started
        // it, also when a fault through a mapping kills the test (SIGBUS).
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .args(extra)
            .env("DFS_IDENTITY", identity)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start dfs-mount");
        let mounted = Mounted {
            mountpoint: mountpoint.to_path_buf(),
            process: Some(ChildGuard::new("dfs-mount", child)),
        };
        wait_for(|| is_mounted(mountpoint), MOUNT_WAIT, "the mount to appear");
        mounted
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.mountpoint.join(relative)
    }

    /// Stops the mount with SIGTERM; returns whether it exited cleanly.
    pub fn terminate(&mut self) -> bool {
        let Some(mut process) = self.process.take() else {
            return true;
        };
        process.signal(Signal::Terminate);
        process.wait_exit(MOUNT_WAIT).success()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.signal(Signal::Terminate);
            let _ = dfs_testkit::wait_exit(process.child(), MOUNT_WAIT);
        }
        if is_mounted(&self.mountpoint) {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.mountpoint)
                .status();
        }
    }
}

/// A cluster of `minions` minions, every file on all of them.
pub fn cluster_of(minions: u8) -> Cluster {
    Cluster::start(ClusterOptions {
        minions: usize::from(minions),
        replication: Some(minions),
        ..ClusterOptions::default()
    })
}

pub fn errno(error: &std::io::Error) -> i32 {
    error.raw_os_error().unwrap_or(0)
}

/// Runs a python3 `script` with `path` as its argument; its trimmed output.
pub fn python(script: &str, path: &Path) -> String {
    let output = Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .output()
        .expect("run python3");
    assert!(
        output.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}
