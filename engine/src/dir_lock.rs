//! An exclusive lock on a data directory, held for as long as the value
//! lives, so two daemons never share one directory.

use std::fs::{File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use crate::error::{Error, IoContext, Result};

pub const LOCK_FILE: &str = "lock";

#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Locks `dir/lock` (created if missing). `owner` names the kind of
    /// daemon for the error: "data directory D is in use by another master".
    pub fn acquire(dir: &Path, owner: &str) -> Result<DirLock> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("open {}", path.display()))?;
        // SAFETY: flock on a descriptor we own; no memory is shared with the kernel.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked != 0 {
            return Err(Error::Invalid(format!(
                "data directory {} is in use by another {owner}",
                dir.display()
            )));
        }
        Ok(DirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_directory_is_refused_until_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = DirLock::acquire(dir.path(), "master").expect("first");
        let error = DirLock::acquire(dir.path(), "master").expect_err("second is refused");
        assert!(error.to_string().contains("in use by another master"));
        drop(first);
        DirLock::acquire(dir.path(), "master").expect("free again");
    }
}
