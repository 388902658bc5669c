//! The two ways the stat steps stat every entry of a directory: `ls -l`,
//! as a person would, and a walk that reads the directory and lstat()s
//! each entry. Each counts the regular files of the expected size it saw.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Runs `ls -l DIR`, reading its output as it comes; returns the files it
/// listed with `size` bytes.
pub(super) fn list_long(dir: &Path, size: u64) -> Result<usize> {
    let mut child = Command::new("ls")
        .arg("-l")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("run ls -l")?;
    let stdout = child.stdout.take().context("ls -l stdout")?;
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    let mut count = 0;
    while reader.read_line(&mut line).context("read ls -l output")? > 0 {
        if ls_long_file_of_size(&line, size) {
            count += 1;
        }
        line.clear();
    }
    let status = child.wait().context("wait for ls -l")?;
    if !status.success() {
        bail!("ls -l {} failed: {status}", dir.display());
    }
    Ok(count)
}

/// Whether a line of `ls -l` (`-rw-r--r-- 1 root root 4096 Dec  7 14:12
/// f000001`) is a regular file of `size` bytes.
fn ls_long_file_of_size(line: &str, size: u64) -> bool {
    let mut fields = line.split_whitespace();
    fields.next().is_some_and(|mode| mode.starts_with('-'))
        && fields.nth(3).and_then(|field| field.parse().ok()) == Some(size)
}

/// Reads `dir` and lstat()s every entry; returns the regular files of
/// `size` bytes.
pub(super) fn walk(dir: &Path, size: u64) -> Result<usize> {
    let mut count = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("list {}", dir.display()))?
            .path();
        let meta = std::fs::symlink_metadata(&path)
            .with_context(|| format!("lstat {}", path.display()))?;
        if meta.is_file() && meta.len() == size {
            count += 1;
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ls_long_lines_are_files_of_a_size() {
        assert!(ls_long_file_of_size(
            "-rw-r--r-- 1 root root 4096 Dec  7 14:12 f000001\n",
            4096
        ));
        assert!(!ls_long_file_of_size(
            "-rw-r--r-- 1 root root 4095 Dec  7 14:12 f000001",
            4096
        ));
        assert!(!ls_long_file_of_size(
            "drwxr-xr-x 2 root root 4096 Dec  7 14:12 d",
            4096
        ));
        assert!(!ls_long_file_of_size("total 40000", 4096));
        assert!(!ls_long_file_of_size("", 4096));
    }
}
