//! The two sides of `dfs-perf mount --small-files` and `--stat-entries`
//! behind one interface: our local cluster with `dfs-mount`, and MooseFS
//! with `mfsmount`. Each can be started afresh, mounted by a new mount
//! process, and asked by a second client (not through the mount) whether
//! a copied tree is there whole.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use super::moosefs;
use super::tree::Tree;
use crate::common::sibling;
use crate::mount::Mount;
use crate::throughput::Bench;

/// Replicas of every block on our side (the local cluster's default, with
/// its 3 minions); MooseFS's goal is the same.
pub(super) const REPLICATION: u64 = 3;

/// A side of the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum System {
    Ours,
    MooseFs,
}

impl System {
    /// The mount program: what the report calls the side.
    pub(super) fn name(self) -> &'static str {
        match self {
            System::Ours => "dfs-mount",
            System::MooseFs => "mfsmount",
        }
    }
}

/// A running cluster of one side.
pub(super) enum Cluster {
    Ours { bench: Bench, dir: PathBuf },
    MooseFs(moosefs::Cluster),
}

/// What a second client saw of a copied tree.
pub(super) struct Seen {
    /// Every file there with its full length and replication.
    pub(super) whole: bool,
    /// What was seen, for an error.
    pub(super) text: String,
}

impl Cluster {
    /// Starts an empty cluster with its data in `dir` (emptied first: a run
    /// that was killed leaves it behind); MooseFS checks it through a
    /// mount at `mountpoint` first (unmounted again).
    pub(super) fn start(system: System, dir: &Path, mountpoint: &Path) -> Result<Cluster> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("remove {}", dir.display()))?;
        }
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(match system {
            System::Ours => Cluster::Ours {
                bench: Bench::start(dir)?,
                dir: dir.to_path_buf(),
            },
            System::MooseFs => Cluster::MooseFs(moosefs::Cluster::start(dir, mountpoint)?),
        })
    }

    /// A new mount process at `mountpoint`, mounted when this returns.
    pub(super) fn mount(&self, mountpoint: &Path) -> Result<Mounted> {
        Ok(match self {
            Cluster::Ours { bench, dir } => Mounted::Ours(Mount::start(
                &bench.cluster.local.master,
                mountpoint,
                &dir.join("mount.log"),
            )?),
            Cluster::MooseFs(cluster) => Mounted::MooseFs(cluster.mount(mountpoint)?),
        })
    }

    /// Asks the cluster, not the mount at `mountpoint`, whether the copy of
    /// `tree` (at `/NAME` in the file system) is there whole: ours lists
    /// it with `dfs ls -R -l` (size and replication of every file),
    /// MooseFS's master sums it up for `mfsdirinfo` (files, length, copies
    /// of every chunk).
    pub(super) fn seen(&self, mountpoint: &Path, tree: &Tree) -> Result<Seen> {
        let files = tree.file_count();
        match self {
            Cluster::Ours { bench, .. } => {
                let path = format!("/{}", tree.name());
                let listing = dfs_output(&bench.cluster.local.master, &["ls", "-R", "-l", &path])?;
                let whole = whole_files_listed(&listing, tree.file_size(), REPLICATION);
                Ok(Seen {
                    whole: whole == files,
                    text: format!(
                        "dfs ls -R -l {path} lists {whole} of {files} files with {} bytes and \
                         replication {REPLICATION}",
                        tree.file_size()
                    ),
                })
            }
            Cluster::MooseFs(cluster) => {
                let info = cluster.dir_info(&mountpoint.join(tree.name()))?;
                Ok(Seen {
                    whole: info.holds(files as u64, tree.file_size()),
                    text: format!(
                        "mfsdirinfo says {info:?}, expected {files} files of {} bytes with goal {}",
                        tree.file_size(),
                        moosefs::GOAL
                    ),
                })
            }
        }
    }

    /// Checks that every block of the copy of `tree` has its replicas on
    /// live servers: `dfs fsck` for ours; for MooseFS, `seen` already
    /// counted every chunk's copies.
    pub(super) fn check_replicas(&self, tree: &Tree) -> Result<()> {
        if let Cluster::Ours { bench, .. } = self {
            let path = format!("/{}", tree.name());
            dfs_output(&bench.cluster.local.master, &["fsck", &path])
                .with_context(|| format!("VERIFY FAILED: dfs fsck {path}"))?;
        }
        Ok(())
    }

    /// Stops the cluster; fails if it did not stop cleanly.
    pub(super) fn stop(self) -> Result<()> {
        match self {
            // `dfs local` stops its daemons on SIGINT when dropped.
            Cluster::Ours { bench, .. } => drop(bench),
            Cluster::MooseFs(cluster) => cluster.stop()?,
        }
        Ok(())
    }
}

/// A mount process of one side.
pub(super) enum Mounted {
    Ours(Mount),
    MooseFs(moosefs::Mount),
}

impl Mounted {
    /// User + system CPU seconds of the mount process so far.
    pub(super) fn cpu_seconds(&self) -> Result<f64> {
        match self {
            Mounted::Ours(mount) => mount.cpu_seconds(),
            Mounted::MooseFs(mount) => mount.cpu_seconds(),
        }
    }

    /// Unmounts; fails when the process did not exit cleanly.
    pub(super) fn stop(self) -> Result<()> {
        match self {
            Mounted::Ours(mount) => mount.stop(),
            Mounted::MooseFs(mount) => mount.stop(),
        }
    }
}

/// `dfs ARGS`'s standard output; fails unless it succeeded.
fn dfs_output(master: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(sibling("dfs")?)
        .arg("--master")
        .arg(master)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run dfs {}", args.join(" ")))?;
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    if !output.status.success() {
        bail!(
            "dfs {} failed: {}: {}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            stdout.lines().last().unwrap_or_default()
        );
    }
    Ok(stdout)
}

/// Files in `dfs ls -l` output (lines such as `-rw-r--r-- root root  4096 3
/// 2026-12-07 14:12 /tree/d000/f0000`) with `size` bytes and
/// `replication`.
pub(super) fn whole_files_listed(listing: &str, size: u64, replication: u64) -> usize {
    listing
        .lines()
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let number = |index: usize| fields.get(index).and_then(|field| field.parse().ok());
            fields.first().is_some_and(|mode| mode.starts_with('-'))
                && number(3) == Some(size)
                && number(4) == Some(replication)
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_files_are_counted_from_dfs_ls_long_output() {
        let listing = "drwxr-xr-x root root            0 - 2026-12-07 14:12 /tree/d000/\n\
                       -rw-r--r-- root root         4096 3 2026-12-07 14:12 /tree/d000/f0000\n\
                       -rw-r--r-- root root         4096 3 2026-12-07 14:12 /tree/d000/f0001\n\
                       -rw-r--r-- root root            0 3 2026-12-07 14:12 /tree/d000/f0002\n\
                       -rw-r--r-- root root         4096 2 2026-12-07 14:12 /tree/d000/f0003\n\
                       lrwxrwxrwx root root         4096 - 2026-12-07 14:12 /tree/d000/l\n";
        assert_eq!(whole_files_listed(listing, 4096, 3), 2);
        assert_eq!(whole_files_listed(listing, 4096, 2), 1);
        assert_eq!(whole_files_listed(listing, 0, 3), 1);
        assert_eq!(whole_files_listed("", 4096, 3), 0);
    }
}
