//! `dfs-mount MOUNTPOINT [--master HOST:PORT] [-o allow_other,ro]`: mounts
//! the cluster and serves it until SIGINT or SIGTERM (then unmounts) or
//! until it is unmounted (`umount`, `fusermount3 -u`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use dfs_engine::{Error, Result};
use dfs_mount::MountOptions;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

const USAGE: &str = "usage: dfs-mount MOUNTPOINT [--master HOST:PORT] [-o allow_other,ro]";

fn parse(mut args: impl Iterator<Item = String>) -> Result<(PathBuf, Option<String>, Vec<String>)> {
    let (mut mountpoint, mut master, mut options) = (None, None, Vec::new());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--master" => {
                master =
                    Some(args.next().ok_or_else(|| {
                        Error::Invalid(format!("--master needs HOST:PORT; {USAGE}"))
                    })?)
            }
            "-o" => {
                let list = args
                    .next()
                    .ok_or_else(|| Error::Invalid(format!("-o needs options; {USAGE}")))?;
                options.extend(
                    list.split(',')
                        .filter(|o| !o.is_empty())
                        .map(str::to_string),
                );
            }
            "-h" | "--help" => return Err(Error::Invalid(USAGE.into())),
            other if other.starts_with('-') => {
                return Err(Error::Invalid(format!("unknown option {other}; {USAGE}")))
            }
            other if mountpoint.is_none() => mountpoint = Some(PathBuf::from(other)),
            other => {
                return Err(Error::Invalid(format!(
                    "unexpected argument {other}; {USAGE}"
                )))
            }
        }
    }
    let mountpoint = mountpoint.ok_or_else(|| Error::Invalid(USAGE.into()))?;
    Ok((mountpoint, master, options))
}

fn run() -> Result<()> {
    let (mountpoint, master, options) = parse(std::env::args().skip(1))?;
    let mut mount = MountOptions {
        master: dfs_client::master_address(master.as_deref())?,
        credentials: dfs_client::client::process_credentials(),
        allow_other: false,
        read_only: false,
    };
    for option in &options {
        match option.as_str() {
            "allow_other" => mount.allow_other = true,
            "ro" => mount.read_only = true,
            "rw" => mount.read_only = false,
            other => {
                return Err(Error::Invalid(format!(
                    "unknown mount option {other} (allow_other, ro, rw)"
                )))
            }
        }
    }
    let mut signals =
        Signals::new([SIGINT, SIGTERM]).map_err(|e| Error::io("handle SIGINT and SIGTERM", e))?;
    let session = dfs_mount::spawn(&mountpoint, &mount)?;
    eprintln!(
        "dfs-mount: {} mounted at {}",
        mount.master,
        mountpoint.display()
    );
    loop {
        if signals.pending().next().is_some() {
            // Detached at once; files still open finish (and are committed
            // at their last close) before the session ends.
            if detach(&mountpoint) {
                eprintln!(
                    "dfs-mount: detached {}; serving open files until they are closed",
                    mountpoint.display()
                );
                while !session.guard.is_finished() {
                    std::thread::sleep(Duration::from_millis(100));
                }
                session
                    .join()
                    .map_err(|e| Error::io(format!("serve {}", mountpoint.display()), e))?;
            } else {
                session
                    .umount_and_join()
                    .map_err(|e| Error::io(format!("unmount {}", mountpoint.display()), e))?;
            }
            eprintln!("dfs-mount: unmounted {}", mountpoint.display());
            return Ok(());
        }
        if session.guard.is_finished() {
            // Unmounted from outside.
            return session
                .join()
                .map_err(|e| Error::io(format!("serve {}", mountpoint.display()), e));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A lazy unmount (`umount -l`); false when not allowed (not root).
fn detach(mountpoint: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(mountpoint.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `path` is a valid NUL-terminated string for the call.
    unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) == 0 }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("dfs-mount: {error}");
            ExitCode::FAILURE
        }
    }
}
