//! `dfs-mount [HOST:PORT] MOUNTPOINT [--master HOST:PORT] [-o OPTIONS]
//! [--daemon]`: mounts the cluster and serves it until SIGINT or SIGTERM
//! (then detaches it and serves open files to their close) or until it is
//! unmounted (`umount`, `fusermount3 -u`, `dfs umount`).
//!
//! The two-argument form is the one `mount(8)` uses for an `/etc/fstab`
//! line of type `fuse.dfs-mount` (through `mount.fuse3`): the master's
//! address first, then the mountpoint, then `-o` with the line's options;
//! the generic ones (`defaults`, `_netdev`, `rw`, `nosuid`, ...) are taken
//! or ignored as a FUSE file system does. `--daemon` (or `-o daemon`)
//! returns once the mount is up (or fails with the reason it did not come
//! up) and goes on serving in the background, saying nothing more.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use dfs_engine::{Error, Result};
use dfs_mount::MountOptions;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

const USAGE: &str = "usage: dfs-mount [HOST:PORT] MOUNTPOINT [--master HOST:PORT] [-o allow_other,ro,daemon] [--daemon]";

/// Options mount(8) and mount.fuse3 pass that change nothing here (the
/// mount is always nodev and nosuid).
const IGNORED_OPTIONS: &[&str] = &[
    "defaults", "_netdev", "auto", "noauto", "user", "nouser", "users", "dev", "nodev", "suid",
    "nosuid", "exec", "noexec", "nofail",
];

/// The command line, parsed.
#[derive(Debug, PartialEq, Eq)]
struct Arguments {
    mountpoint: PathBuf,
    master: Option<String>,
    allow_other: bool,
    read_only: bool,
    /// `relatime` (the default, also for `atime` and `strictatime`), or
    /// `noatime`.
    access_times: bool,
    daemon: bool,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Arguments> {
    let mut positional = Vec::new();
    let (mut master, mut options, mut daemon) = (None, Vec::new(), false);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--master" => {
                let address = args
                    .next()
                    .ok_or_else(|| Error::Invalid(format!("--master needs HOST:PORT; {USAGE}")))?;
                master = Some(address);
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
            "--daemon" => daemon = true,
            "-h" | "--help" => return Err(Error::Invalid(USAGE.into())),
            other if other.starts_with('-') => {
                return Err(Error::Invalid(format!("unknown option {other}; {USAGE}")))
            }
            other => positional.push(other.to_string()),
        }
    }
    let mountpoint = match positional.as_slice() {
        [mountpoint] => PathBuf::from(mountpoint),
        [source, mountpoint] => {
            if master.is_some() {
                return Err(Error::Invalid(format!(
                    "the master is given twice ({source} and --master); {USAGE}"
                )));
            }
            master = Some(source.clone());
            PathBuf::from(mountpoint)
        }
        _ => return Err(Error::Invalid(USAGE.into())),
    };
    let mut parsed = Arguments {
        mountpoint,
        master,
        allow_other: false,
        read_only: false,
        access_times: true,
        daemon,
    };
    for option in &options {
        match option.as_str() {
            "allow_other" => parsed.allow_other = true,
            "ro" => parsed.read_only = true,
            "rw" => parsed.read_only = false,
            "relatime" | "atime" | "strictatime" => parsed.access_times = true,
            "noatime" => parsed.access_times = false,
            "daemon" => parsed.daemon = true,
            ignored if IGNORED_OPTIONS.contains(&ignored) => {}
            other => {
                return Err(Error::Invalid(format!(
                    "unknown mount option {other} (allow_other, ro, rw, relatime, noatime, daemon, and the generic ones: {})",
                    IGNORED_OPTIONS.join(", ")
                )))
            }
        }
    }
    Ok(parsed)
}

/// Serves the mount until a signal or an unmount.
fn serve(arguments: &Arguments, ready: Option<OwnedFd>) -> Result<()> {
    let mountpoint = &arguments.mountpoint;
    let mount = MountOptions {
        master: dfs_client::master_address(arguments.master.as_deref())?,
        credentials: dfs_client::client::process_credentials(),
        allow_other: arguments.allow_other,
        read_only: arguments.read_only,
        access_times: arguments.access_times,
    };
    let mut signals =
        Signals::new([SIGINT, SIGTERM]).map_err(|e| Error::io("handle SIGINT and SIGTERM", e))?;
    let session = dfs_mount::spawn(mountpoint, &mount)?;
    eprintln!(
        "dfs-mount: {} mounted at {}",
        mount.master,
        mountpoint.display()
    );
    if let Some(ready) = ready {
        // The parent returns now; a write error means it is gone already.
        let _ = std::fs::File::from(ready).write_all(b"ok");
        // Whoever started it waits no more for its standard error either.
        if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
            use std::os::fd::AsRawFd;
            // SAFETY: both descriptors are open.
            unsafe { libc::dup2(null.as_raw_fd(), 2) };
        }
    }
    loop {
        if signals.pending().next().is_some() {
            // Detached at once; files still open finish (and are committed
            // at their last close) before the session ends.
            if detach(mountpoint) {
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

/// Forks before any thread exists: the child (in a session of its own,
/// standard input and output on /dev/null, errors still to standard error)
/// serves the mount; the parent returns once the child says the mount is
/// up, or fails with what the child printed if it ended first.
fn daemonize(arguments: &Arguments) -> Result<()> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 returns.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::io("make a pipe", std::io::Error::last_os_error()));
    }
    // SAFETY: pipe2 succeeded, so both are open descriptors owned here.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: no thread has been started in this process yet.
    match unsafe { libc::fork() } {
        -1 => Err(Error::io("fork", std::io::Error::last_os_error())),
        0 => {
            drop(read_end);
            // SAFETY: setsid has no preconditions; the child is no group leader.
            unsafe { libc::setsid() };
            if let Ok(null) = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
            {
                use std::os::fd::AsRawFd;
                // SAFETY: both descriptors are open.
                unsafe {
                    libc::dup2(null.as_raw_fd(), 0);
                    libc::dup2(null.as_raw_fd(), 1);
                }
            }
            let code = match serve(arguments, Some(write_end)) {
                Ok(()) => 0,
                Err(error) => {
                    eprintln!("dfs-mount: {error}");
                    1
                }
            };
            std::process::exit(code);
        }
        _child => {
            drop(write_end);
            let mut answer = String::new();
            let _ = std::fs::File::from(read_end).read_to_string(&mut answer);
            if answer == "ok" {
                Ok(())
            } else {
                Err(Error::Invalid(format!(
                    "{}: the mount did not come up (see the message above)",
                    arguments.mountpoint.display()
                )))
            }
        }
    }
}

fn run() -> Result<()> {
    let arguments = parse(std::env::args().skip(1))?;
    if arguments.daemon {
        daemonize(&arguments)
    } else {
        serve(&arguments, None)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(args: &[&str]) -> Result<Arguments> {
        parse(args.iter().map(|arg| arg.to_string()))
    }

    #[test]
    fn both_forms_and_fstab_options_parse() {
        let plain = parsed(&["/mnt", "--master", "h:1", "-o", "allow_other"]).expect("parses");
        assert_eq!(
            plain,
            Arguments {
                mountpoint: "/mnt".into(),
                master: Some("h:1".into()),
                allow_other: true,
                read_only: false,
                access_times: true,
                daemon: false,
            }
        );
        assert!(
            !parsed(&["/mnt", "-o", "noatime"])
                .expect("parses")
                .access_times
        );
        assert!(
            parsed(&["/mnt", "-o", "noatime,relatime"])
                .expect("parses")
                .access_times
        );
        // What mount.fuse3 runs for an fstab line.
        let fstab =
            parsed(&["h:2", "/mnt", "-o", "rw,nosuid,nodev,_netdev,daemon,ro"]).expect("parses");
        assert_eq!(fstab.master.as_deref(), Some("h:2"));
        assert!(fstab.daemon && fstab.read_only);
        assert!(parsed(&["/mnt", "--daemon"]).expect("parses").daemon);
        for bad in [
            &["/mnt", "-o", "bogus"][..],
            &["h:1", "/mnt", "--master", "h:2"],
            &["a", "b", "c"],
            &[],
            &["/mnt", "--what"],
        ] {
            assert!(parsed(bad).is_err(), "{bad:?}");
        }
    }
}
