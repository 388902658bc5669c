//! What the kernel sees of an entry: the master's status as a `FileAttr`,
//! owner and group names as this machine's user and group ids (as NFS
//! `sec=sys` maps them: by name, through the local password and group
//! databases; a name this machine does not know is `nobody`).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dfs_client::accounts;
use dfs_engine::msg::{EntryKind, EntryStatus};
use fuser::{FileAttr, FileType, INodeNo};

/// The id of a name this machine does not know.
pub const NOBODY: u32 = 65534;
/// `st_blksize`: what `cp` and friends read and write at a time.
const PREFERRED_IO_BYTES: u32 = 1 << 20;

/// The time `ns` nanoseconds after the Unix epoch.
pub fn system_time(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

/// Nanoseconds since the Unix epoch (0 before it).
pub fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    })
}

pub fn file_type(kind: EntryKind) -> FileType {
    match kind {
        EntryKind::Directory => FileType::Directory,
        EntryKind::File => FileType::RegularFile,
        EntryKind::Symlink => FileType::Symlink,
        EntryKind::Fifo => FileType::NamedPipe,
        EntryKind::Socket => FileType::Socket,
        EntryKind::CharDevice => FileType::CharDevice,
        EntryKind::BlockDevice => FileType::BlockDevice,
    }
}

/// User and group names to ids and back, looked up once each.
#[derive(Default)]
pub struct Ids {
    users: HashMap<String, u32>,
    groups: HashMap<String, u32>,
    user_names: HashMap<u32, String>,
    group_names: HashMap<u32, String>,
}

impl Ids {
    pub fn uid(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.users.get(name) {
            return id;
        }
        let id = name
            .parse()
            .ok()
            .or_else(|| accounts::user_id(name))
            .unwrap_or(NOBODY);
        self.users.insert(name.to_string(), id);
        id
    }

    pub fn gid(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.groups.get(name) {
            return id;
        }
        let id = name
            .parse()
            .ok()
            .or_else(|| accounts::group_id(name))
            .unwrap_or(NOBODY);
        self.groups.insert(name.to_string(), id);
        id
    }

    /// The name the cluster stores for a uid: the local name, or the number.
    pub fn user_name(&mut self, uid: u32) -> String {
        self.user_names
            .entry(uid)
            .or_insert_with(|| accounts::user_name(uid).unwrap_or_else(|| uid.to_string()))
            .clone()
    }

    pub fn group_name(&mut self, gid: u32) -> String {
        self.group_names
            .entry(gid)
            .or_insert_with(|| accounts::group_name(gid).unwrap_or_else(|| gid.to_string()))
            .clone()
    }

    /// The kernel's view of `status`.
    pub fn attr(&mut self, status: &EntryStatus) -> FileAttr {
        // A directory's links are its name, "." and each subdirectory's
        // "..", as the master counts them.
        let (nlink, size) = match status.kind {
            EntryKind::Directory => (status.links.max(2), 0),
            _ => (status.links.max(1), status.size_bytes),
        };
        FileAttr {
            ino: INodeNo(status.inode),
            size,
            blocks: size.div_ceil(512),
            atime: system_time(status.accessed_ns),
            mtime: system_time(status.modified_ns),
            ctime: system_time(status.changed_ns),
            crtime: system_time(status.changed_ns),
            kind: file_type(status.kind),
            perm: (status.mode & 0o7777) as u16,
            nlink,
            uid: self.uid(&status.owner),
            gid: self.gid(&status.group),
            rdev: status.rdev,
            blksize: PREFERRED_IO_BYTES,
            flags: 0,
        }
    }
}

/// Attributes with only the number and type set: for "." and ".." in a
/// `readdirplus`, whose attributes the kernel does not use.
pub fn bare(inode: u64, kind: FileType) -> FileAttr {
    FileAttr {
        ino: INodeNo(inode),
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind,
        perm: 0o755,
        nlink: 1,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: PREFERRED_IO_BYTES,
        flags: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_ids_and_back_and_strangers_are_nobody() {
        let mut ids = Ids::default();
        assert_eq!(ids.uid("root"), 0);
        assert_eq!(ids.gid("root"), 0);
        assert_eq!(ids.uid("1234"), 1234, "a number is its own id");
        assert_eq!(ids.uid("no-such-user-here"), NOBODY);
        assert_eq!(ids.user_name(0), "root");
        assert_eq!(ids.group_name(0), "root");
        assert_eq!(ids.user_name(4_000_000), "4000000");
    }

    #[test]
    fn status_becomes_attributes() {
        let mut ids = Ids::default();
        let status = EntryStatus {
            name: "f".into(),
            inode: 7,
            kind: EntryKind::File,
            size_bytes: 1025,
            replication: 3,
            block_bytes: 1 << 26,
            block_count: 1,
            owner: "root".into(),
            group: "root".into(),
            mode: 0o4755,
            modified_ns: 1_500,
            accessed_ns: 1_000,
            changed_ns: 2_000,
            links: 2,
            version: 0,
            rdev: 0,
        };
        let attr = ids.attr(&status);
        assert_eq!(attr.ino, INodeNo(7));
        assert_eq!((attr.size, attr.blocks), (1025, 3));
        assert_eq!(attr.perm, 0o4755);
        assert_eq!(attr.kind, FileType::RegularFile);
        assert_eq!(nanos(attr.mtime), 1_500);
        assert_eq!((attr.uid, attr.gid, attr.nlink), (0, 0, 2));
    }
}
