//! The directories new entries were made in lately, with their statuses.
//! A create looks at its directory (that it is one; when it is setgid, its
//! group is the new entry's), and a tree copy makes many entries in each
//! directory in a row: one look at the master serves them all. A status
//! is used for as long as the kernel keeps an entry's attributes (the
//! mount's entry TTL), so another workstation's change of the directory
//! shows within that, as its other attributes do; this mount's own
//! changes of a directory (attributes, names, removal) drop every status
//! at once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use dfs_engine::path::DfsPath;

/// Directories remembered at most; past it, stale ones go, then all.
const PARENTS_MAX: usize = 256;

/// What a new entry takes from its directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parent {
    pub mode: u32,
    pub group: String,
}

pub struct Parents {
    ttl: Duration,
    seen: HashMap<DfsPath, (Parent, Instant)>,
}

impl Parents {
    pub fn new(ttl: Duration) -> Parents {
        Parents {
            ttl,
            seen: HashMap::new(),
        }
    }

    /// The directory `path` as seen within the TTL before `now`.
    pub fn get(&self, path: &DfsPath, now: Instant) -> Option<&Parent> {
        self.seen
            .get(path)
            .filter(|(_, seen)| now.saturating_duration_since(*seen) < self.ttl)
            .map(|(status, _)| status)
    }

    /// Remembers the directory `path`, seen at `now`.
    pub fn put(&mut self, path: DfsPath, status: Parent, now: Instant) {
        if self.seen.len() >= PARENTS_MAX {
            let ttl = self.ttl;
            self.seen
                .retain(|_, (_, seen)| now.saturating_duration_since(*seen) < ttl);
            if self.seen.len() >= PARENTS_MAX {
                self.seen.clear();
            }
        }
        self.seen.insert(path, (status, now));
    }

    /// This mount made a directory at `path`: what was seen there before
    /// (one removed elsewhere since) is not used again.
    pub fn forget(&mut self, path: &DfsPath) {
        self.seen.remove(path);
    }

    /// This mount changed a directory: nothing remembered is used again.
    pub fn forget_all(&mut self) {
        self.seen.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directory(group: &str) -> Parent {
        Parent {
            mode: 0o2775,
            group: group.into(),
        }
    }

    #[test]
    fn a_status_is_used_within_its_ttl_and_dropped_at_a_change() {
        let mut parents = Parents::new(Duration::from_secs(1));
        let d = DfsPath::parse("/d").expect("path");
        let start = Instant::now();
        parents.put(d.clone(), directory("lab"), start);
        let within = start + Duration::from_millis(999);
        assert_eq!(
            parents.get(&d, within).map(|s| s.group.as_str()),
            Some("lab")
        );
        assert!(parents.get(&d, start + Duration::from_secs(1)).is_none());
        assert!(parents
            .get(&DfsPath::parse("/e").expect("path"), start)
            .is_none());
        parents.put(DfsPath::parse("/e").expect("path"), directory("lab"), start);
        parents.forget(&d);
        assert!(parents.get(&d, start).is_none());
        assert!(parents
            .get(&DfsPath::parse("/e").expect("path"), start)
            .is_some());
        parents.forget_all();
        assert!(parents
            .get(&DfsPath::parse("/e").expect("path"), start)
            .is_none());
    }

    #[test]
    fn it_holds_a_bounded_number() {
        let mut parents = Parents::new(Duration::from_secs(1));
        let start = Instant::now();
        for i in 0..PARENTS_MAX * 3 {
            let path = DfsPath::parse(&format!("/d{i}")).expect("path");
            parents.put(path, directory("lab"), start);
            assert!(parents.seen.len() <= PARENTS_MAX);
        }
        let last = DfsPath::parse(&format!("/d{}", PARENTS_MAX * 3 - 1)).expect("path");
        assert!(parents.get(&last, start).is_some());
    }
}
