//! `mfsmount` in the foreground, in the cluster's network namespace,
//! unmounted with `umount` when stopped or dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::{
    log_tail, Namespace, ADDRESS, MASTER_PORTS, POLL_MS, START_TIMEOUT_MS, STOP_TIMEOUT_MS,
};
use crate::mount::{finish_stop, is_mounted, wait_exit};
use crate::throughput::process::process_cpu_seconds;

/// An `mfsmount` that takes longer than this to exit is reported.
const MOUNT_EXIT_NOTE_MS: u64 = 5_000;

/// A running `mfsmount -f`, unmounted when stopped or dropped.
pub(in crate::mount_small) struct Mount {
    child: Child,
    mountpoint: PathBuf,
    log: PathBuf,
    stopped: bool,
}

impl Mount {
    pub(super) fn start(namespace: &Namespace, mountpoint: &Path, log: &Path) -> Result<Mount> {
        if is_mounted(mountpoint)? {
            bail!("{} is mounted already", mountpoint.display());
        }
        let output = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open {}", log.display()))?;
        let errors = output
            .try_clone()
            .with_context(|| format!("open {}", log.display()))?;
        let child = namespace
            .command("mfsmount")
            .arg(mountpoint)
            .args(["-f", "-H", ADDRESS, "-P", &MASTER_PORTS[2].to_string()])
            .args(["-o", "mfsnice=0"])
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(errors)
            .spawn()
            .context("start mfsmount")?;
        let mut mount = Mount {
            child,
            mountpoint: mountpoint.to_path_buf(),
            log: log.to_path_buf(),
            stopped: false,
        };
        let started = Instant::now();
        while !is_mounted(mountpoint)? {
            if let Some(status) = mount.child.try_wait().context("wait for mfsmount")? {
                mount.stopped = true;
                bail!(
                    "mfsmount exited with {status} before {} was mounted{}",
                    mountpoint.display(),
                    log_tail(log)
                );
            }
            if started.elapsed() >= Duration::from_millis(START_TIMEOUT_MS) {
                bail!(
                    "{} not mounted {START_TIMEOUT_MS} ms after mfsmount started{}",
                    mountpoint.display(),
                    log_tail(log)
                );
            }
            std::thread::sleep(Duration::from_millis(POLL_MS));
        }
        Ok(mount)
    }

    /// User + system CPU seconds of `mfsmount` so far.
    pub(in crate::mount_small) fn cpu_seconds(&self) -> Result<f64> {
        process_cpu_seconds(self.child.id())
    }

    /// Unmounts with `umount` and waits for a clean exit (on SIGTERM
    /// mfsmount exits with status 1), else SIGTERM, `umount -l` and
    /// SIGKILL; fails when anything but the clean exit was needed.
    pub(in crate::mount_small) fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let mut problems = Vec::new();
        if let Some(status) = self.child.try_wait().context("wait for mfsmount")? {
            problems.push(format!("had exited with {status}"));
        } else {
            let unmounted = Command::new("umount")
                .arg(&self.mountpoint)
                .stderr(Stdio::null())
                .status()
                .context("run umount")?;
            if !unmounted.success() {
                problems.push(format!("umount failed ({unmounted}): sent SIGTERM"));
                let pid = libc::pid_t::try_from(self.child.id()).context("mfsmount pid")?;
                // SAFETY: kill(2) on our own, unreaped child; no memory is involved.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            let started = Instant::now();
            match wait_exit(
                &mut self.child,
                "mfsmount",
                Duration::from_millis(STOP_TIMEOUT_MS),
            )? {
                Some(status) if status.success() => {}
                Some(status) => problems.push(format!("exited with {status}")),
                None => problems.push(format!("still running {STOP_TIMEOUT_MS} ms after umount")),
            }
            let waited = started.elapsed();
            if waited >= Duration::from_millis(MOUNT_EXIT_NOTE_MS) {
                eprintln!(
                    "note: mfsmount took {:.1} s to exit after umount of {}",
                    waited.as_secs_f64(),
                    self.mountpoint.display()
                );
            }
        }
        finish_stop(
            &mut self.child,
            &self.mountpoint,
            "mfsmount",
            &log_tail(&self.log),
            Duration::from_millis(STOP_TIMEOUT_MS),
            problems,
        )
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Err(error) = self.shutdown() {
            eprintln!("{error:#}");
        }
    }
}
