//! Which contents the kernel's page cache holds for each file, so that an
//! open of a file that did not change since keeps those pages
//! (`FOPEN_KEEP_CACHE`) instead of reading it from the minions again, as
//! NFS and MooseFS do. Every open still asks the master what the file is
//! now (close-to-open): pages are kept only when that is exactly what they
//! were read from (same inode, contents version, size and modification
//! time; a version is never given twice).
//!
//! A file's pages are one cache, whatever descriptor filled them: they
//! are known only while every descriptor reading them reads the same
//! contents. Anything else (a write here, a reader that moved on to newer
//! contents, two readers of two versions) forgets the file, and its next
//! open drops its pages, as every open did before.

use std::collections::HashMap;

use dfs_engine::msg::EntryStatus;

/// Files remembered at most; past it, all are forgotten (their next
/// opens read them again).
const PAGES_KNOWN_MAX: usize = 65_536;

/// What a file's contents are: its inode, contents version, size and
/// modification time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Contents {
    inode: u64,
    version: u64,
    size_bytes: u64,
    modified_ns: u64,
}

impl Contents {
    pub fn of(status: &EntryStatus) -> Contents {
        Contents {
            inode: status.inode,
            version: status.version,
            size_bytes: status.size_bytes,
            modified_ns: status.modified_ns,
        }
    }
}

#[derive(Default)]
pub struct Pages {
    /// By the kernel's number of the file.
    known: HashMap<u64, Contents>,
}

impl Pages {
    pub fn new() -> Pages {
        Pages::default()
    }

    /// The file `nodeid` is opened for reading as `now`, while descriptors
    /// here read `open` (the contents each of them reads): true when the
    /// pages the kernel holds for it are of `now` and may be kept.
    pub fn opened(&mut self, nodeid: u64, now: Contents, open: &[Contents]) -> bool {
        // The pages are of the kernel's number: of this file only if the
        // path still names the file that number is (another workstation
        // may have put another there). And another descriptor may go on
        // filling them from other contents.
        if now.inode != nodeid || open.iter().any(|contents| *contents != now) {
            self.known.remove(&nodeid);
            return false;
        }
        let keep = self.known.get(&nodeid) == Some(&now);
        if self.known.len() >= PAGES_KNOWN_MAX {
            self.known.clear();
        }
        self.known.insert(nodeid, now);
        keep
    }

    /// The pages of `nodeid` may hold anything: written here, or read from
    /// contents a descriptor moved on to.
    pub fn forget(&mut self, nodeid: u64) {
        self.known.remove(&nodeid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(version: u64) -> Contents {
        Contents {
            inode: 7,
            version,
            size_bytes: 100,
            modified_ns: 5,
        }
    }

    #[test]
    fn pages_are_kept_only_for_the_contents_they_were_read_from() {
        let mut pages = Pages::new();
        assert!(!pages.opened(7, contents(1), &[]), "never read: dropped");
        assert!(pages.opened(7, contents(1), &[]));
        assert!(pages.opened(7, contents(1), &[contents(1)]));
        // The kernel's number 2, whose path now names the file 7.
        let two = Contents {
            inode: 2,
            ..contents(1)
        };
        pages.opened(2, two, &[]);
        assert!(!pages.opened(2, contents(1), &[]), "another file's pages");
        assert!(!pages.opened(2, two, &[]), "forgotten with it");
        assert!(!pages.opened(7, contents(2), &[]), "changed elsewhere");
        assert!(pages.opened(7, contents(2), &[]));
        let resized = Contents {
            size_bytes: 50,
            ..contents(2)
        };
        assert!(!pages.opened(7, resized, &[]));
        pages.forget(7);
        assert!(!pages.opened(7, resized, &[]), "written here: dropped");
    }

    #[test]
    fn a_descriptor_reading_other_contents_leaves_the_pages_unknown() {
        let mut pages = Pages::new();
        pages.opened(7, contents(1), &[]);
        // Changed elsewhere while the first descriptor still reads version 1.
        assert!(!pages.opened(7, contents(2), &[contents(1)]));
        assert!(
            !pages.opened(7, contents(2), &[contents(2)]),
            "the old reader may have filled pages meanwhile"
        );
        assert!(pages.opened(7, contents(2), &[]));
    }

    #[test]
    fn it_holds_a_bounded_number() {
        let mut pages = Pages::new();
        let of = |inode: u64| Contents {
            inode,
            ..contents(1)
        };
        for nodeid in 0..(PAGES_KNOWN_MAX as u64) * 2 {
            pages.opened(nodeid, of(nodeid), &[]);
            assert!(pages.known.len() <= PAGES_KNOWN_MAX);
        }
        let last = PAGES_KNOWN_MAX as u64 * 2 - 1;
        assert!(pages.opened(last, of(last), &[]));
    }
}
