//! `dfs mount`: the cluster as a POSIX directory, through FUSE (`fuser`),
//! on the client library alone. See `fs` for what it serves and how.
//!
//! It serves directories, files read and written at any offset (changes go
//! to the cluster as patches of the file's extent map), symbolic and hard
//! links, special files, renames that replace, modes, owners, times, and
//! locks the master arbitrates between workstations.

pub mod attr;
pub mod cache;
pub mod compactor;
pub mod dirs;
pub mod fs;
pub mod inodes;
pub mod locks;
pub mod pages;
pub mod parents;
pub mod ranges;
pub mod unsynced;
pub mod writer;
pub mod xattrs;

use std::path::Path;

use dfs_engine::msg::Credentials;
use dfs_engine::{Error, Result};
use fuser::{Config, MountOption, SessionACL};

pub use fs::DfsFs;

/// What `mount` needs.
#[derive(Clone, Debug)]
pub struct MountOptions {
    pub master: String,
    pub credentials: Credentials,
    /// Let other users than the one mounting in (`-o allow_other`).
    pub allow_other: bool,
    pub read_only: bool,
    /// Opening a file to read moves its access time as `relatime` does
    /// (off with `-o noatime`, and on a read-only mount).
    pub access_times: bool,
}

/// The FUSE configuration of a mount: the kernel checks permissions
/// against the modes and owners the master keeps.
pub fn fuse_config(options: &MountOptions) -> Config {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(format!("dfs@{}", options.master)),
        MountOption::Subtype("dfs".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    if options.read_only {
        config.mount_options.push(MountOption::RO);
    }
    if options.allow_other {
        config.acl = SessionACL::All;
    }
    config
}

/// Mounts the cluster at `mountpoint` in the background; dropping or
/// `umount_and_join` of the session unmounts it.
pub fn spawn(mountpoint: &Path, options: &MountOptions) -> Result<fuser::BackgroundSession> {
    let (stale, to_drop) = std::sync::mpsc::sync_channel(STALE_QUEUE_MAX);
    let filesystem = DfsFs::new(&options.master, options.credentials.clone(), stale)?
        .marking_access_times(options.access_times && !options.read_only);
    let requests_notifier = filesystem.notifier_slot();
    let session = fuser::spawn_mount(filesystem, mountpoint, &fuse_config(options))
        .map_err(|e| Error::io(format!("mount at {}", mountpoint.display()), e))?;
    let _ = requests_notifier.set(session.notifier());
    // Invalidations of pages go from a thread of their own, never from a
    // request being answered (the kernel may wait on that answer); the
    // thread ends with the file system, which holds the sending end.
    let notifier = session.notifier();
    std::thread::Builder::new()
        .name("invalidate".into())
        .spawn(move || {
            for fs::Stale { inode, done } in to_drop {
                let _ = notifier.inval_inode(fuser::INodeNo(inode), 0, 0);
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
        })
        .map_err(|e| Error::io("start the invalidation thread", e))?;
    Ok(session)
}

/// Invalidations waiting to be sent.
const STALE_QUEUE_MAX: usize = 1024;
