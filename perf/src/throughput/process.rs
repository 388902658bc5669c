//! Child processes of a step, timed, with their CPU time (wait4), and the
//! CPU time of running processes (/proc/PID/stat) and of this one.

use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::common::checksum_reader;

/// The pids listed in /proc/PID/task/PID/children.
pub(super) fn children(pid: u32) -> Result<Vec<u32>> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    let list = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    Ok(list
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect())
}

pub(super) fn command_name(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|name| name.trim().to_string())
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// User + system CPU seconds of a running process, from /proc/PID/stat.
pub(crate) fn process_cpu_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    // The command name is in parentheses and may contain spaces: fields
    // start after the last ')'. utime and stime are fields 14 and 15.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("{path}: no ')'"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let tick = |index: usize| -> Result<f64> {
        fields
            .get(index)
            .and_then(|field| field.parse::<u64>().ok())
            .map(|ticks| ticks as f64)
            .with_context(|| format!("{path}: field {} missing", index + 3))
    };
    // Field n (1-based) is fields[n - 3] here: pid and comm are cut off.
    Ok((tick(11)? + tick(12)?) / clock_ticks_per_second())
}

/// A timed step: wall time, CPU seconds of its processes and, when its
/// output was read, that output's length and CRC32C.
pub(crate) struct Timed {
    pub(crate) elapsed: Duration,
    pub(crate) cpu_seconds: f64,
    pub(crate) read: Option<(u64, u32)>,
}

/// Runs `command` to its end, timed, and fails unless it succeeded.
pub(crate) fn timed_child(command: Command, checksum_stdout: bool) -> Result<Timed> {
    let started = Instant::now();
    let (usage, read) = run_child(command, checksum_stdout)?;
    let elapsed = started.elapsed();
    check_status(&usage.program, usage.status)?;
    Ok(Timed {
        elapsed,
        cpu_seconds: usage.cpu_seconds,
        read,
    })
}

fn check_status(what: &str, status: ExitStatus) -> Result<()> {
    if !status.success() {
        bail!("{what} failed: {status}");
    }
    Ok(())
}

struct ChildUsage {
    program: String,
    status: ExitStatus,
    cpu_seconds: f64,
}

/// Runs `command` to its end; returns its status and CPU time (wait4), and
/// with `checksum_stdout` the byte count and CRC32C of its standard output.
fn run_child(
    mut command: Command,
    checksum_stdout: bool,
) -> Result<(ChildUsage, Option<(u64, u32)>)> {
    if checksum_stdout {
        command.stdout(Stdio::piped());
    }
    let program = command.get_program().to_string_lossy().to_string();
    let mut child = command
        .spawn()
        .with_context(|| format!("run {command:?}"))?;
    let read = match child.stdout.take() {
        Some(mut stdout) => Some(checksum_reader(&mut stdout)?),
        None => None,
    };
    let (status, cpu_seconds) = wait_with_usage(&child)?;
    Ok((
        ChildUsage {
            program,
            status,
            cpu_seconds,
        },
        read,
    ))
}

fn wait_with_usage(child: &Child) -> Result<(ExitStatus, f64)> {
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is a plain C struct of integers; all zeroes is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: status and usage are valid, writable locals; the pid is our
        // own unreaped child (std's Child is never waited on after this).
        let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
        if pid >= 0 {
            break;
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error).context("wait for a child");
        }
    }
    Ok((
        ExitStatus::from_raw(status),
        seconds(usage.ru_utime) + seconds(usage.ru_stime),
    ))
}

fn seconds(time: libc::timeval) -> f64 {
    time.tv_sec as f64 + time.tv_usec as f64 / 1e6
}

pub(super) fn self_cpu_seconds() -> f64 {
    // SAFETY: rusage is a plain C struct of integers; all zeroes is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: usage is a valid, writable local.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}
