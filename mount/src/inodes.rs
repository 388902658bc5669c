//! The inodes the kernel knows and the paths they have now. The master
//! numbers inodes and never reuses a number, and its root is inode 1 as
//! FUSE's is, so a master inode number is the kernel's inode number. Files
//! being written do not exist in the namespace until they are closed: they
//! get numbers of their own (high bit set) until then.
//!
//! Pure bookkeeping: no I/O, so renames and forgets are tested alone.

use std::collections::HashMap;

use dfs_engine::path::DfsPath;

/// The root's inode number, in FUSE and in the master alike.
pub const ROOT_INODE: u64 = 1;
/// Numbers at or above this are files being written (not in the namespace
/// yet); the master's numbers stay below it.
pub const PENDING_INODE_BASE: u64 = 1 << 63;

struct Known {
    path: DfsPath,
    /// Lookups the kernel holds (entries replied minus forgotten).
    lookups: u64,
}

/// Inode number to path, for every inode the kernel holds.
pub struct Inodes {
    known: HashMap<u64, Known>,
    next_pending: u64,
}

impl Default for Inodes {
    fn default() -> Self {
        Self::new()
    }
}

impl Inodes {
    pub fn new() -> Inodes {
        let mut known = HashMap::new();
        known.insert(
            ROOT_INODE,
            Known {
                path: DfsPath::root(),
                // The kernel never forgets the root.
                lookups: 1,
            },
        );
        Inodes {
            known,
            next_pending: PENDING_INODE_BASE,
        }
    }

    pub fn path(&self, inode: u64) -> Option<&DfsPath> {
        self.known.get(&inode).map(|known| &known.path)
    }

    /// Records that the kernel got one more entry of `inode` at `path`.
    pub fn remember(&mut self, inode: u64, path: DfsPath) {
        let known = self.known.entry(inode).or_insert(Known {
            path: path.clone(),
            lookups: 0,
        });
        known.path = path;
        known.lookups += 1;
    }

    /// A number for a file being written at `path`, remembered once.
    pub fn pending(&mut self, path: DfsPath) -> u64 {
        let inode = self.next_pending;
        self.next_pending += 1;
        self.remember(inode, path);
        inode
    }

    /// The kernel dropped `count` lookups of `inode`.
    pub fn forget(&mut self, inode: u64, count: u64) {
        if inode == ROOT_INODE {
            return;
        }
        if let Some(known) = self.known.get_mut(&inode) {
            known.lookups = known.lookups.saturating_sub(count);
            if known.lookups == 0 {
                self.known.remove(&inode);
            }
        }
    }

    /// The name `path` is gone: an inode known by it is forgotten here, so
    /// that the kernel looks up another of its names (a hard link) rather
    /// than this one, which names nothing.
    pub fn removed(&mut self, path: &DfsPath) {
        self.known
            .retain(|&inode, known| inode == ROOT_INODE || &known.path != path);
    }

    /// `from` is now at `to`: so is everything under it.
    pub fn renamed(&mut self, from: &DfsPath, to: &DfsPath) {
        for known in self.known.values_mut() {
            if let Some(path) = moved(&known.path, from, to) {
                known.path = path;
            }
        }
    }
}

/// Where `path` is once `from` was renamed to `to`: None when it is not
/// `from` or under it.
pub fn moved(path: &DfsPath, from: &DfsPath, to: &DfsPath) -> Option<DfsPath> {
    let from_text = from.as_str();
    let text = path.as_str();
    let rest = if text == from_text {
        ""
    } else {
        text.strip_prefix(from_text)
            .filter(|rest| rest.starts_with('/') || from_text == "/")?
    };
    DfsPath::parse(&format!("{}{rest}", to.as_str())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> DfsPath {
        DfsPath::parse(text).expect("path")
    }

    #[test]
    fn renames_move_an_entry_and_everything_under_it_only() {
        let mut inodes = Inodes::new();
        inodes.remember(2, path("/a"));
        inodes.remember(3, path("/a/b"));
        inodes.remember(4, path("/ab"));
        inodes.renamed(&path("/a"), &path("/x/y"));
        assert_eq!(inodes.path(2), Some(&path("/x/y")));
        assert_eq!(inodes.path(3), Some(&path("/x/y/b")));
        assert_eq!(
            inodes.path(4),
            Some(&path("/ab")),
            "a sibling with the prefix"
        );
        assert_eq!(inodes.path(ROOT_INODE), Some(&DfsPath::root()));
    }

    #[test]
    fn a_removed_name_is_forgotten_and_others_stay() {
        let mut inodes = Inodes::new();
        inodes.remember(2, path("/a"));
        inodes.remember(3, path("/b"));
        inodes.removed(&path("/a"));
        assert_eq!(inodes.path(2), None);
        assert_eq!(inodes.path(3), Some(&path("/b")));
    }

    #[test]
    fn an_inode_is_dropped_when_its_last_lookup_is_forgotten() {
        let mut inodes = Inodes::new();
        inodes.remember(2, path("/a"));
        inodes.remember(2, path("/a"));
        inodes.forget(2, 1);
        assert!(inodes.path(2).is_some());
        inodes.forget(2, 1);
        assert!(inodes.path(2).is_none());
        inodes.forget(ROOT_INODE, 5);
        assert!(inodes.path(ROOT_INODE).is_some(), "the root stays");
    }

    #[test]
    fn files_being_written_get_numbers_of_their_own() {
        let mut inodes = Inodes::new();
        let first = inodes.pending(path("/new"));
        let second = inodes.pending(path("/other"));
        assert!(first >= PENDING_INODE_BASE && second > first);
        assert_eq!(inodes.path(first), Some(&path("/new")));
        assert_eq!(inodes.path(second), Some(&path("/other")));
    }
}
