//! A small tmpfs mounted for one test (a data directory that fills up),
//! unmounted when the guard drops, also when the test panics.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct TmpfsMount {
    path: PathBuf,
}

impl TmpfsMount {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it, e.g. "16m")
    /// on the existing directory `path`. Needs root; the error says why not.
    pub fn mount(path: &Path, size: &str) -> Result<TmpfsMount, String> {
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size}"))
            .arg("tmpfs")
            .arg(path)
            .output()
            .map_err(|e| format!("run mount: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "mount -t tmpfs on {} failed ({}): {}",
                path.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(TmpfsMount {
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|status| status.success());
        if !unmounted {
            // Something still holds a file open: detach it now, it goes away
            // when the last user does.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}
