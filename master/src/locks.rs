//! The lock table: `flock(2)` and POSIX (`fcntl`) byte-range locks that hold
//! across every workstation mounting the cluster, arbitrated by the master.
//! Soft state, like the registry: nothing of it is journaled. Every lock
//! belongs to a client session (one per mount, kept alive by a lease), and
//! when the session ends or its lease expires its locks go with it
//! (`release_session`). Pure: no threads, no I/O, no clock; the service
//! calls it under its own lock.
//!
//! Semantics, as on Linux:
//! - An owner is a session and, inside it, the kernel's lock owner (POSIX:
//!   the process's files table; flock: the open file). An owner's own locks
//!   never conflict with it; locks of different owners conflict where they
//!   overlap and either is a write lock, even inside one session.
//! - POSIX and flock locks live side by side and never conflict with each
//!   other.
//! - POSIX: a lock replaces the owner's locks where it overlaps them
//!   (upgrade, downgrade, split of a larger range), and ranges of one kind
//!   that overlap or touch are merged, so an owner's ranges on an inode are
//!   disjoint and no two of one kind touch. An unlock removes what it covers
//!   (it may split a range in two); unlocking what is not held is fine.
//!   `end == u64::MAX` means to the end of the file and beyond; a range with
//!   `start >= end` is invalid (and an unlock or test of it does nothing).
//! - flock: the range is the whole file (`0..u64::MAX`); one lock per owner
//!   per inode, converted in place, and only when no other owner conflicts
//!   (Linux drops the old lock first; here a failed conversion keeps it).
//!   Any unlock of a non-empty range releases the owner's flock.
//! - A lock that fails changes nothing. `lock` checks, in this order, the
//!   range, conflicts (the first in the order of `locks_of`: lowest owner,
//!   then lowest start; what F_GETLK reports, and the same `test` answers),
//!   then the bounds.
//!
//! Bounds: `LOCKS_MAX` locks in all and `SESSION_LOCKS_MAX` per session,
//! counted as the ranges a change leaves (a merge counts once, a split
//! twice); a lock that would take the table or its session past a bound
//! fails with `TooMany`, while one that leaves as many or fewer ranges
//! always succeeds. `unlock` cannot fail: an unlock that would split a range
//! in two when the table or the session is at its bound leaves that range
//! whole, so the owner holds more than it asked for (never less) until it
//! unlocks a whole range, closes the file or its session ends.
//!
//! Cost: locks are kept per inode, per owner, in ordered maps, one per kind;
//! a lock, unlock or test looks at the other owners of one inode and a
//! logarithmic part of each one's ranges, and an index from sessions to
//! their inodes lets `release_session` visit only the inodes the session
//! holds locks on.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use dfs_engine::limits::{LOCKS_MAX, SESSION_LOCKS_MAX};

pub type SessionId = u64;
pub type InodeId = u64;

/// Who holds a lock: a session (a mount) and, inside it, the kernel's lock
/// owner (POSIX locks: the process's files table; flock: the open file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LockOwner {
    pub session: SessionId,
    pub owner: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    Read,
    Write,
}

/// POSIX (fcntl) and flock locks live side by side and never conflict with
/// each other, as on Linux.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flavor {
    Posix,
    Flock,
}

/// Bytes start..end; `end == u64::MAX` means to the end of the file and beyond.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

/// A lock in the way: who holds it, its kind and range (what F_GETLK reports).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub holder: LockOwner,
    pub kind: LockKind,
    pub range: ByteRange,
}

#[derive(Debug, PartialEq, Eq)]
pub enum LockError {
    /// Held by someone else: try again later (F_SETLK answers EAGAIN; a
    /// waiting F_SETLKW/flock retries).
    Conflict(Conflict),
    /// The table or this session is at its bound (limits below).
    TooMany { what: &'static str, limit: usize },
    /// start >= end, or a flock range that is not the whole file.
    InvalidRange(ByteRange),
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Conflict(c) => write!(
                f,
                "held by session {} owner {} ({:?} lock on bytes {}..{})",
                c.holder.session, c.holder.owner, c.kind, c.range.start, c.range.end
            ),
            LockError::TooMany { what, limit } => write!(f, "too many {what} (limit {limit})"),
            LockError::InvalidRange(r) => write!(f, "invalid lock range {}..{}", r.start, r.end),
        }
    }
}

impl std::error::Error for LockError {}

/// The only range a flock covers.
const WHOLE_FILE: ByteRange = ByteRange {
    start: 0,
    end: u64::MAX,
};

/// What `TooMany` names for each bound.
const TABLE_BOUND: &str = "locks in the lock table";
const SESSION_BOUND: &str = "locks of one session";

/// One owner's POSIX locks on one inode, start -> end, one map per kind.
/// Invariant: the ranges of both maps are disjoint and non-empty, and no two
/// ranges of one map touch (they would have been merged).
#[derive(Clone, Debug, Default)]
struct OwnerRanges {
    read: BTreeMap<u64, u64>,
    write: BTreeMap<u64, u64>,
}

impl OwnerRanges {
    fn len(&self) -> usize {
        self.read.len() + self.write.len()
    }

    fn map(&self, kind: LockKind) -> &BTreeMap<u64, u64> {
        match kind {
            LockKind::Read => &self.read,
            LockKind::Write => &self.write,
        }
    }

    fn map_mut(&mut self, kind: LockKind) -> &mut BTreeMap<u64, u64> {
        match kind {
            LockKind::Read => &mut self.read,
            LockKind::Write => &mut self.write,
        }
    }

    /// The owner's lock of `kind` overlapping `range` that starts first.
    fn first_overlap(&self, kind: LockKind, range: ByteRange) -> Option<ByteRange> {
        let map = self.map(kind);
        if let Some((&start, &end)) = map.range(..range.start).next_back() {
            if end > range.start {
                return Some(ByteRange { start, end });
            }
        }
        map.range(range.start..range.end)
            .next()
            .map(|(&start, &end)| ByteRange { start, end })
    }

    /// The owner's locks in order of their start, both kinds.
    fn in_order(&self) -> Vec<(LockKind, ByteRange)> {
        let mut all: Vec<(LockKind, ByteRange)> = self
            .read
            .iter()
            .map(|(&start, &end)| (LockKind::Read, ByteRange { start, end }))
            .chain(
                self.write
                    .iter()
                    .map(|(&start, &end)| (LockKind::Write, ByteRange { start, end })),
            )
            .collect();
        all.sort_by_key(|(_, range)| range.start);
        all
    }
}

/// The changes a POSIX lock or unlock makes to one owner's ranges, worked
/// out before any is made, so a change that would break a bound changes
/// nothing. Every removal names a range held now; removals go first.
#[derive(Debug, Default)]
struct Plan {
    remove: Vec<(LockKind, u64)>,
    insert: Vec<(LockKind, ByteRange)>,
}

impl Plan {
    /// Takes `range` out of the owner's ranges, keeping the parts of ranges
    /// that stick out on either side.
    fn carve(ranges: &OwnerRanges, range: ByteRange) -> Plan {
        let mut plan = Plan::default();
        for kind in [LockKind::Read, LockKind::Write] {
            let map = ranges.map(kind);
            if let Some((&start, &end)) = map.range(..range.start).next_back() {
                if end > range.start {
                    plan.remove.push((kind, start));
                    plan.insert.push((
                        kind,
                        ByteRange {
                            start,
                            end: range.start,
                        },
                    ));
                    if end > range.end {
                        plan.insert.push((
                            kind,
                            ByteRange {
                                start: range.end,
                                end,
                            },
                        ));
                    }
                }
            }
            for (&start, &end) in map.range(range.start..range.end) {
                plan.remove.push((kind, start));
                if end > range.end {
                    plan.insert.push((
                        kind,
                        ByteRange {
                            start: range.end,
                            end,
                        },
                    ));
                }
            }
        }
        plan
    }

    /// Carves `range` out and puts a lock of `kind` there, merged with the
    /// ranges of that kind it then touches.
    fn lock(ranges: &OwnerRanges, kind: LockKind, range: ByteRange) -> Plan {
        let mut plan = Plan::carve(ranges, range);
        let map = ranges.map(kind);
        let mut merged = range;
        // The neighbour on the left: what is left of a range cut at `start`,
        // or a range that ends where this one starts.
        if let Some(i) = plan
            .insert
            .iter()
            .position(|&(k, r)| k == kind && r.end == range.start)
        {
            merged.start = plan.insert.swap_remove(i).1.start;
        } else if let Some((&start, &end)) = map.range(..range.start).next_back() {
            if end == range.start {
                plan.remove.push((kind, start));
                merged.start = start;
            }
        }
        // The neighbour on the right, likewise.
        if let Some(i) = plan
            .insert
            .iter()
            .position(|&(k, r)| k == kind && r.start == range.end)
        {
            merged.end = plan.insert.swap_remove(i).1.end;
        } else if let Some(&end) = map.get(&range.end) {
            plan.remove.push((kind, range.end));
            merged.end = end;
        }
        plan.insert.push((kind, merged));
        plan
    }

    /// How many ranges the owner holds once the plan is applied.
    fn after(&self, before: usize) -> usize {
        before + self.insert.len() - self.remove.len()
    }

    fn apply(self, ranges: &mut OwnerRanges) {
        for (kind, start) in self.remove {
            ranges.map_mut(kind).remove(&start);
        }
        for (kind, range) in self.insert {
            ranges.map_mut(kind).insert(range.start, range.end);
        }
    }
}

/// The locks of one inode.
#[derive(Debug, Default)]
struct InodeLocks {
    posix: BTreeMap<LockOwner, OwnerRanges>,
    flock: BTreeMap<LockOwner, LockKind>,
    /// The owners whose flock is a write lock (a reader's conflicts).
    flock_writers: BTreeSet<LockOwner>,
}

impl InodeLocks {
    fn is_empty(&self) -> bool {
        self.posix.is_empty() && self.flock.is_empty()
    }

    fn holds_session(&self, session: SessionId) -> bool {
        let owners = session_owners(session);
        self.posix.range(owners.clone()).next().is_some()
            || self.flock.range(owners).next().is_some()
    }

    /// The first lock of another owner in the way of `kind` on `range`.
    fn first_conflict(
        &self,
        owner: LockOwner,
        flavor: Flavor,
        kind: LockKind,
        range: ByteRange,
    ) -> Option<Conflict> {
        match flavor {
            Flavor::Posix => self
                .posix
                .iter()
                .filter(|(holder, _)| **holder != owner)
                .find_map(|(holder, ranges)| {
                    let write = ranges
                        .first_overlap(LockKind::Write, range)
                        .map(|r| (LockKind::Write, r));
                    let found = match kind {
                        LockKind::Read => write,
                        LockKind::Write => {
                            let read = ranges
                                .first_overlap(LockKind::Read, range)
                                .map(|r| (LockKind::Read, r));
                            match (read, write) {
                                (Some(r), Some(w)) => {
                                    Some(if r.1.start < w.1.start { r } else { w })
                                }
                                (r, w) => r.or(w),
                            }
                        }
                    };
                    found.map(|(kind, range)| Conflict {
                        holder: *holder,
                        kind,
                        range,
                    })
                }),
            Flavor::Flock => {
                let found = match kind {
                    LockKind::Read => self
                        .flock_writers
                        .iter()
                        .find(|holder| **holder != owner)
                        .map(|holder| (*holder, LockKind::Write)),
                    LockKind::Write => self
                        .flock
                        .iter()
                        .find(|(holder, _)| **holder != owner)
                        .map(|(holder, kind)| (*holder, *kind)),
                };
                found.map(|(holder, kind)| Conflict {
                    holder,
                    kind,
                    range: WHOLE_FILE,
                })
            }
        }
    }
}

/// Every owner of one session, as a range of the owner order.
fn session_owners(session: SessionId) -> std::ops::RangeInclusive<LockOwner> {
    LockOwner { session, owner: 0 }..=LockOwner {
        session,
        owner: u64::MAX,
    }
}

/// What one session holds.
#[derive(Debug, Default)]
struct SessionLocks {
    /// Locks held, counted as in the table.
    locks: usize,
    /// The inodes the session holds at least one lock on.
    inodes: HashSet<InodeId>,
}

/// Every lock the master holds; see the module documentation.
#[derive(Debug)]
pub struct LockTable {
    inodes: HashMap<InodeId, InodeLocks>,
    sessions: HashMap<SessionId, SessionLocks>,
    /// Locks held, in all.
    len: usize,
    locks_max: usize,
    session_locks_max: usize,
}

impl Default for LockTable {
    fn default() -> LockTable {
        LockTable::new()
    }
}

impl LockTable {
    pub fn new() -> LockTable {
        LockTable::with_limits(LOCKS_MAX, SESSION_LOCKS_MAX)
    }

    /// A table with other bounds (tests reach them quickly).
    fn with_limits(locks_max: usize, session_locks_max: usize) -> LockTable {
        LockTable {
            inodes: HashMap::new(),
            sessions: HashMap::new(),
            len: 0,
            locks_max,
            session_locks_max,
        }
    }

    /// Takes (or converts, merges, splits: POSIX rules) a lock. Posix: an
    /// owner's own locks never conflict with it; a new lock of an owner
    /// replaces that owner's locks where they overlap (upgrade/downgrade,
    /// split of an existing range, merging of adjacent/overlapping
    /// same-kind ranges). Flock: the range must be the whole file
    /// (0..u64::MAX); one flock per owner per inode, converted in place,
    /// only when no other owner conflicts. Conflicts: overlapping ranges of
    /// different owners of the same flavor where either is Write. Nothing
    /// changes when it fails.
    pub fn lock(
        &mut self,
        inode: InodeId,
        owner: LockOwner,
        flavor: Flavor,
        kind: LockKind,
        range: ByteRange,
    ) -> Result<(), LockError> {
        let valid = match flavor {
            Flavor::Posix => range.start < range.end,
            Flavor::Flock => range == WHOLE_FILE,
        };
        if !valid {
            return Err(LockError::InvalidRange(range));
        }
        if let Some(conflict) = self.first_conflict(inode, owner, flavor, kind, range) {
            return Err(LockError::Conflict(conflict));
        }
        match flavor {
            Flavor::Posix => {
                let none = OwnerRanges::default();
                let held = self
                    .inodes
                    .get(&inode)
                    .and_then(|locks| locks.posix.get(&owner))
                    .unwrap_or(&none);
                let plan = Plan::lock(held, kind, range);
                let before = held.len();
                let after = plan.after(before);
                self.check_room(owner.session, before, after)?;
                let ranges = self
                    .inodes
                    .entry(inode)
                    .or_default()
                    .posix
                    .entry(owner)
                    .or_default();
                plan.apply(ranges);
                self.settle(inode, owner, before, after);
            }
            Flavor::Flock => {
                let before = usize::from(
                    self.inodes
                        .get(&inode)
                        .is_some_and(|locks| locks.flock.contains_key(&owner)),
                );
                self.check_room(owner.session, before, 1)?;
                let locks = self.inodes.entry(inode).or_default();
                locks.flock.insert(owner, kind);
                match kind {
                    LockKind::Write => locks.flock_writers.insert(owner),
                    LockKind::Read => locks.flock_writers.remove(&owner),
                };
                self.settle(inode, owner, before, 1);
            }
        }
        Ok(())
    }

    /// Releases the owner's locks of `flavor` in `range` (POSIX: may split
    /// a lock in two; unlocking what is not held is fine). A split that
    /// would take the table or the session past its bound is not made: the
    /// range stays whole (see the module documentation).
    pub fn unlock(&mut self, inode: InodeId, owner: LockOwner, flavor: Flavor, range: ByteRange) {
        if range.start >= range.end {
            return;
        }
        match flavor {
            Flavor::Posix => {
                let Some(held) = self
                    .inodes
                    .get(&inode)
                    .and_then(|locks| locks.posix.get(&owner))
                else {
                    return;
                };
                let plan = Plan::carve(held, range);
                if plan.remove.is_empty() {
                    return;
                }
                let before = held.len();
                let after = plan.after(before);
                if self.check_room(owner.session, before, after).is_err() {
                    return;
                }
                if let Some(ranges) = self
                    .inodes
                    .get_mut(&inode)
                    .and_then(|locks| locks.posix.get_mut(&owner))
                {
                    plan.apply(ranges);
                }
                self.settle(inode, owner, before, after);
            }
            Flavor::Flock => {
                let Some(locks) = self.inodes.get_mut(&inode) else {
                    return;
                };
                if locks.flock.remove(&owner).is_some() {
                    locks.flock_writers.remove(&owner);
                    self.settle(inode, owner, 1, 0);
                }
            }
        }
    }

    /// The first conflicting lock, if any (F_GETLK); changes nothing.
    pub fn test(
        &self,
        inode: InodeId,
        owner: LockOwner,
        flavor: Flavor,
        kind: LockKind,
        range: ByteRange,
    ) -> Option<Conflict> {
        if range.start >= range.end {
            return None;
        }
        self.first_conflict(inode, owner, flavor, kind, range)
    }

    /// Every lock of the owner on `inode`, both flavors (a close of the
    /// file: POSIX drops all of a process's locks on it; flock drops the
    /// open file's).
    pub fn release_owner(&mut self, inode: InodeId, owner: LockOwner) {
        let Some(locks) = self.inodes.get_mut(&inode) else {
            return;
        };
        let mut gone = locks.posix.remove(&owner).map_or(0, |ranges| ranges.len());
        if locks.flock.remove(&owner).is_some() {
            locks.flock_writers.remove(&owner);
            gone += 1;
        }
        if gone > 0 {
            self.settle(inode, owner, gone, 0);
        }
    }

    /// Every lock of the session (it ended or its lease expired); returns
    /// how many locks went.
    pub fn release_session(&mut self, session: SessionId) -> usize {
        let Some(held) = self.sessions.remove(&session) else {
            return 0;
        };
        let mut gone = 0;
        for inode in held.inodes {
            let Some(locks) = self.inodes.get_mut(&inode) else {
                continue;
            };
            let owners: Vec<LockOwner> = locks
                .posix
                .range(session_owners(session))
                .map(|(owner, _)| *owner)
                .collect();
            for owner in owners {
                gone += locks.posix.remove(&owner).map_or(0, |ranges| ranges.len());
            }
            let owners: Vec<LockOwner> = locks
                .flock
                .range(session_owners(session))
                .map(|(owner, _)| *owner)
                .collect();
            for owner in owners {
                locks.flock.remove(&owner);
                locks.flock_writers.remove(&owner);
                gone += 1;
            }
            if locks.is_empty() {
                self.inodes.remove(&inode);
            }
        }
        debug_assert_eq!(gone, held.locks, "session {session}'s lock count");
        self.len -= gone;
        gone
    }

    /// Locks held, in all (for metrics and tests).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The locks of one inode, in a stable order (for tests and a status
    /// page): POSIX locks by owner and start, then flocks by owner.
    pub fn locks_of(&self, inode: InodeId) -> Vec<(LockOwner, Flavor, LockKind, ByteRange)> {
        let Some(locks) = self.inodes.get(&inode) else {
            return Vec::new();
        };
        let mut all = Vec::new();
        for (owner, ranges) in &locks.posix {
            for (kind, range) in ranges.in_order() {
                all.push((*owner, Flavor::Posix, kind, range));
            }
        }
        for (owner, kind) in &locks.flock {
            all.push((*owner, Flavor::Flock, *kind, WHOLE_FILE));
        }
        all
    }

    fn first_conflict(
        &self,
        inode: InodeId,
        owner: LockOwner,
        flavor: Flavor,
        kind: LockKind,
        range: ByteRange,
    ) -> Option<Conflict> {
        self.inodes
            .get(&inode)?
            .first_conflict(owner, flavor, kind, range)
    }

    /// Whether the session and the table may go from `before` to `after`
    /// locks of one owner on one inode; fewer or as many always may.
    fn check_room(&self, session: SessionId, before: usize, after: usize) -> Result<(), LockError> {
        let Some(growth) = after.checked_sub(before).filter(|growth| *growth > 0) else {
            return Ok(());
        };
        let held = self.sessions.get(&session).map_or(0, |held| held.locks);
        if held + growth > self.session_locks_max {
            return Err(LockError::TooMany {
                what: SESSION_BOUND,
                limit: self.session_locks_max,
            });
        }
        if self.len + growth > self.locks_max {
            return Err(LockError::TooMany {
                what: TABLE_BOUND,
                limit: self.locks_max,
            });
        }
        Ok(())
    }

    /// Counts the change of one owner's locks on one inode from `before` to
    /// `after` (already made) and drops what is left empty: the owner's
    /// ranges, the inode, the inode in the session's index, the session.
    fn settle(&mut self, inode: InodeId, owner: LockOwner, before: usize, after: usize) {
        self.len = self.len + after - before;
        let held = self.sessions.entry(owner.session).or_default();
        held.locks = held.locks + after - before;
        let mut session_here = false;
        if let Some(locks) = self.inodes.get_mut(&inode) {
            if locks
                .posix
                .get(&owner)
                .is_some_and(|ranges| ranges.len() == 0)
            {
                locks.posix.remove(&owner);
            }
            session_here = locks.holds_session(owner.session);
            if locks.is_empty() {
                self.inodes.remove(&inode);
            }
        }
        if session_here {
            held.inodes.insert(inode);
        } else {
            held.inodes.remove(&inode);
        }
        if held.locks == 0 {
            debug_assert!(held.inodes.is_empty());
            self.sessions.remove(&owner.session);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use LockKind::{Read, Write};

    const INODE: InodeId = 7;
    const OTHER_INODE: InodeId = 8;
    const END: u64 = u64::MAX;
    const POSIX: Flavor = Flavor::Posix;
    const FLOCK: Flavor = Flavor::Flock;
    /// Two owners (processes, open files) of one session, and two other
    /// sessions.
    const A: LockOwner = LockOwner {
        session: 1,
        owner: 1,
    };
    const B: LockOwner = LockOwner {
        session: 1,
        owner: 2,
    };
    const C: LockOwner = LockOwner {
        session: 2,
        owner: 1,
    };
    const D: LockOwner = LockOwner {
        session: 3,
        owner: 1,
    };

    fn range(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    type Held = (InodeId, LockOwner, Flavor, LockKind, ByteRange);

    impl LockTable {
        /// Every lock of every inode, inodes in order.
        fn all_locks(&self) -> Vec<Held> {
            let mut inodes: Vec<InodeId> = self.inodes.keys().copied().collect();
            inodes.sort_unstable();
            inodes
                .into_iter()
                .flat_map(|inode| {
                    self.locks_of(inode)
                        .into_iter()
                        .map(move |(owner, flavor, kind, range)| {
                            (inode, owner, flavor, kind, range)
                        })
                })
                .collect()
        }

        /// The table's own invariants: counts, the session index, no empty
        /// entries, disjoint and merged ranges, the flock writer index.
        fn check_consistent(&self) {
            let mut total = 0;
            let mut sessions: HashMap<SessionId, (usize, HashSet<InodeId>)> = HashMap::new();
            for (&inode, locks) in &self.inodes {
                assert!(!locks.is_empty(), "inode {inode} kept without locks");
                for (owner, ranges) in &locks.posix {
                    assert!(ranges.len() > 0, "{owner:?} kept without ranges");
                    for kind in [Read, Write] {
                        let mut last_end = None;
                        for (&start, &end) in ranges.map(kind) {
                            assert!(start < end, "empty range {start}..{end}");
                            if let Some(last_end) = last_end {
                                assert!(last_end < start, "{kind:?} ranges touch at {start}");
                            }
                            last_end = Some(end);
                        }
                    }
                    let all = ranges.in_order();
                    for pair in all.windows(2) {
                        assert!(pair[0].1.end <= pair[1].1.start, "overlap: {pair:?}");
                    }
                    let entry = sessions.entry(owner.session).or_default();
                    entry.0 += ranges.len();
                    entry.1.insert(inode);
                    total += ranges.len();
                }
                for (owner, kind) in &locks.flock {
                    assert_eq!(
                        locks.flock_writers.contains(owner),
                        *kind == Write,
                        "flock writer index of {owner:?}"
                    );
                    let entry = sessions.entry(owner.session).or_default();
                    entry.0 += 1;
                    entry.1.insert(inode);
                    total += 1;
                }
                assert!(locks
                    .flock_writers
                    .iter()
                    .all(|owner| locks.flock.contains_key(owner)));
            }
            assert_eq!(total, self.len, "lock count");
            assert_eq!(self.sessions.len(), sessions.len(), "sessions indexed");
            for (session, (locks, inodes)) in sessions {
                let held = self
                    .sessions
                    .get(&session)
                    .unwrap_or_else(|| panic!("session {session} not indexed"));
                assert_eq!(held.locks, locks, "session {session}'s count");
                assert_eq!(held.inodes, inodes, "session {session}'s inodes");
            }
        }
    }

    /// What the brief asks of `locks_of`: per owner and flavor, ranges in
    /// order, disjoint, and no two of one kind touching; one flock per owner.
    fn check_canonical(locks: &[(LockOwner, Flavor, LockKind, ByteRange)]) {
        let mut groups: BTreeMap<(LockOwner, bool), Vec<(LockKind, ByteRange)>> = BTreeMap::new();
        for &(owner, flavor, kind, range) in locks {
            assert!(range.start < range.end, "empty range in {locks:?}");
            if flavor == FLOCK {
                assert_eq!(range, WHOLE_FILE, "flock range in {locks:?}");
            }
            groups
                .entry((owner, flavor == FLOCK))
                .or_default()
                .push((kind, range));
        }
        for ((owner, flock), ranges) in groups {
            if flock {
                assert_eq!(ranges.len(), 1, "flocks of {owner:?}: {ranges:?}");
            }
            for pair in ranges.windows(2) {
                let ((k0, r0), (k1, r1)) = (pair[0], pair[1]);
                assert!(r0.end <= r1.start, "{owner:?}: overlap or order {pair:?}");
                assert!(
                    !(r0.end == r1.start && k0 == k1),
                    "{owner:?}: unmerged {pair:?}"
                );
            }
        }
    }

    enum Step {
        Lock(
            InodeId,
            LockOwner,
            Flavor,
            LockKind,
            ByteRange,
            Result<(), LockError>,
        ),
        Unlock(LockOwner, Flavor, ByteRange),
        Test(LockOwner, Flavor, LockKind, ByteRange, Option<Conflict>),
        ReleaseOwner(InodeId, LockOwner),
        ReleaseSession(SessionId, usize),
    }

    fn lock(owner: LockOwner, flavor: Flavor, kind: LockKind, start: u64, end: u64) -> Step {
        Step::Lock(INODE, owner, flavor, kind, range(start, end), Ok(()))
    }

    fn lock_on(
        inode: InodeId,
        owner: LockOwner,
        flavor: Flavor,
        kind: LockKind,
        r: ByteRange,
    ) -> Step {
        Step::Lock(inode, owner, flavor, kind, r, Ok(()))
    }

    fn refused(
        owner: LockOwner,
        flavor: Flavor,
        kind: LockKind,
        start: u64,
        end: u64,
        error: LockError,
    ) -> Step {
        Step::Lock(INODE, owner, flavor, kind, range(start, end), Err(error))
    }

    fn conflict(holder: LockOwner, kind: LockKind, start: u64, end: u64) -> Conflict {
        Conflict {
            holder,
            kind,
            range: range(start, end),
        }
    }

    fn in_conflict(holder: LockOwner, kind: LockKind, start: u64, end: u64) -> LockError {
        LockError::Conflict(conflict(holder, kind, start, end))
    }

    fn invalid(start: u64, end: u64) -> LockError {
        LockError::InvalidRange(range(start, end))
    }

    fn unlock(owner: LockOwner, flavor: Flavor, start: u64, end: u64) -> Step {
        Step::Unlock(owner, flavor, range(start, end))
    }

    fn test(
        owner: LockOwner,
        flavor: Flavor,
        kind: LockKind,
        start: u64,
        end: u64,
        expected: Option<Conflict>,
    ) -> Step {
        Step::Test(owner, flavor, kind, range(start, end), expected)
    }

    fn held(owner: LockOwner, flavor: Flavor, kind: LockKind, start: u64, end: u64) -> Held {
        (INODE, owner, flavor, kind, range(start, end))
    }

    struct Case {
        name: &'static str,
        /// (table, session) bounds; None: the real ones.
        limits: Option<(usize, usize)>,
        steps: Vec<Step>,
        /// Every lock left, inodes in order, then as `locks_of` lists them.
        locks: Vec<Held>,
    }

    fn case(name: &'static str, steps: Vec<Step>, locks: Vec<Held>) -> Case {
        Case {
            name,
            limits: None,
            steps,
            locks,
        }
    }

    fn bounded(
        name: &'static str,
        limits: (usize, usize),
        steps: Vec<Step>,
        locks: Vec<Held>,
    ) -> Case {
        Case {
            name,
            limits: Some(limits),
            steps,
            locks,
        }
    }

    fn run(case: Case) {
        let name = case.name;
        let mut table = match case.limits {
            Some((table, session)) => LockTable::with_limits(table, session),
            None => LockTable::new(),
        };
        for (i, step) in case.steps.into_iter().enumerate() {
            let before = table.all_locks();
            match step {
                Step::Lock(inode, owner, flavor, kind, r, expected) => {
                    let tested = table.test(inode, owner, flavor, kind, r);
                    let result = table.lock(inode, owner, flavor, kind, r);
                    assert_eq!(result, expected, "{name}, step {i}");
                    match &result {
                        Err(LockError::Conflict(c)) => {
                            assert_eq!(tested, Some(*c), "{name}, step {i}: test agrees")
                        }
                        Ok(()) => assert_eq!(tested, None, "{name}, step {i}: test agrees"),
                        Err(_) => {}
                    }
                    if result.is_err() {
                        assert_eq!(table.all_locks(), before, "{name}, step {i}: changed");
                    }
                }
                Step::Unlock(owner, flavor, r) => table.unlock(INODE, owner, flavor, r),
                Step::Test(owner, flavor, kind, r, expected) => {
                    assert_eq!(
                        table.test(INODE, owner, flavor, kind, r),
                        expected,
                        "{name}, step {i}"
                    );
                    assert_eq!(table.all_locks(), before, "{name}, step {i}: changed");
                }
                Step::ReleaseOwner(inode, owner) => table.release_owner(inode, owner),
                Step::ReleaseSession(session, gone) => {
                    assert_eq!(table.release_session(session), gone, "{name}, step {i}")
                }
            }
            table.check_consistent();
            for inode in [INODE, OTHER_INODE] {
                check_canonical(&table.locks_of(inode));
            }
        }
        assert_eq!(table.all_locks(), case.locks, "{name}");
        assert_eq!(table.len(), case.locks.len(), "{name}: len");
        assert_eq!(table.is_empty(), case.locks.is_empty(), "{name}: is_empty");
    }

    #[test]
    fn posix_merges_and_splits() {
        let cases = vec![
            case(
                "merge adjacent same kind",
                vec![lock(A, POSIX, Read, 0, 10), lock(A, POSIX, Read, 10, 20)],
                vec![held(A, POSIX, Read, 0, 20)],
            ),
            case(
                "merge overlapping same kind",
                vec![lock(A, POSIX, Write, 0, 10), lock(A, POSIX, Write, 5, 15)],
                vec![held(A, POSIX, Write, 0, 15)],
            ),
            case(
                "a lock filling a gap merges three ranges into one",
                vec![
                    lock(A, POSIX, Read, 0, 10),
                    lock(A, POSIX, Read, 20, 30),
                    lock(A, POSIX, Read, 10, 20),
                ],
                vec![held(A, POSIX, Read, 0, 30)],
            ),
            case(
                "a lock covering several ranges takes their place",
                vec![
                    lock(A, POSIX, Read, 5, 10),
                    lock(A, POSIX, Write, 20, 30),
                    lock(A, POSIX, Read, 40, 50),
                    lock(A, POSIX, Read, 0, 45),
                ],
                vec![held(A, POSIX, Read, 0, 50)],
            ),
            case(
                "a lock inside one of its kind changes nothing",
                vec![lock(A, POSIX, Read, 0, 100), lock(A, POSIX, Read, 10, 20)],
                vec![held(A, POSIX, Read, 0, 100)],
            ),
            case(
                "touching ranges of different kinds stay apart",
                vec![lock(A, POSIX, Read, 0, 10), lock(A, POSIX, Write, 10, 20)],
                vec![held(A, POSIX, Read, 0, 10), held(A, POSIX, Write, 10, 20)],
            ),
            case(
                "merge with a lock to the end of the file",
                vec![lock(A, POSIX, Write, 10, END), lock(A, POSIX, Write, 0, 10)],
                vec![held(A, POSIX, Write, 0, END)],
            ),
            case(
                "ranges of different owners never merge",
                vec![lock(A, POSIX, Read, 0, 10), lock(B, POSIX, Read, 10, 20)],
                vec![held(A, POSIX, Read, 0, 10), held(B, POSIX, Read, 10, 20)],
            ),
            case(
                "split on unlock in the middle",
                vec![lock(A, POSIX, Write, 0, 100), unlock(A, POSIX, 40, 60)],
                vec![held(A, POSIX, Write, 0, 40), held(A, POSIX, Write, 60, 100)],
            ),
            case(
                "unlock of both edges",
                vec![
                    lock(A, POSIX, Write, 0, 100),
                    unlock(A, POSIX, 0, 10),
                    unlock(A, POSIX, 90, END),
                ],
                vec![held(A, POSIX, Write, 10, 90)],
            ),
            case(
                "unlock across several ranges",
                vec![
                    lock(A, POSIX, Read, 0, 10),
                    lock(A, POSIX, Write, 20, 30),
                    lock(A, POSIX, Read, 40, 50),
                    unlock(A, POSIX, 5, 45),
                ],
                vec![held(A, POSIX, Read, 0, 5), held(A, POSIX, Read, 45, 50)],
            ),
            case(
                "unlock of what is not held is fine",
                vec![
                    lock(A, POSIX, Read, 0, 10),
                    unlock(A, POSIX, 20, 30),
                    unlock(B, POSIX, 0, 10),
                    unlock(C, POSIX, 0, END),
                    unlock(A, FLOCK, 0, END),
                    unlock(A, POSIX, 5, 5),
                ],
                vec![held(A, POSIX, Read, 0, 10)],
            ),
            case(
                "unlock of everything",
                vec![
                    lock(A, POSIX, Write, 0, 10),
                    lock(A, POSIX, Read, 20, END),
                    unlock(A, POSIX, 0, END),
                ],
                vec![],
            ),
            case(
                "upgrade of part of a read lock",
                vec![lock(A, POSIX, Read, 0, 100), lock(A, POSIX, Write, 40, 60)],
                vec![
                    held(A, POSIX, Read, 0, 40),
                    held(A, POSIX, Write, 40, 60),
                    held(A, POSIX, Read, 60, 100),
                ],
            ),
            case(
                "upgrade across the end of a read lock",
                vec![lock(A, POSIX, Read, 0, 50), lock(A, POSIX, Write, 40, END)],
                vec![held(A, POSIX, Read, 0, 40), held(A, POSIX, Write, 40, END)],
            ),
            case(
                "downgrade",
                vec![lock(A, POSIX, Write, 0, 100), lock(A, POSIX, Read, 0, 100)],
                vec![held(A, POSIX, Read, 0, 100)],
            ),
            case(
                "downgrade of part of a write lock",
                vec![lock(A, POSIX, Write, 0, 100), lock(A, POSIX, Read, 50, END)],
                vec![held(A, POSIX, Write, 0, 50), held(A, POSIX, Read, 50, END)],
            ),
            case(
                "a downgrade merges with the read lock it touches",
                vec![
                    lock(A, POSIX, Read, 0, 10),
                    lock(A, POSIX, Write, 10, 20),
                    lock(A, POSIX, Read, 10, 20),
                ],
                vec![held(A, POSIX, Read, 0, 20)],
            ),
            case(
                "upgrade and downgrade back leave one range",
                vec![
                    lock(A, POSIX, Read, 0, 100),
                    lock(A, POSIX, Write, 40, 60),
                    lock(A, POSIX, Read, 40, 60),
                ],
                vec![held(A, POSIX, Read, 0, 100)],
            ),
            case(
                "an owner's own locks never conflict",
                vec![lock(A, POSIX, Write, 0, 10), lock(A, POSIX, Read, 5, 6)],
                vec![
                    held(A, POSIX, Write, 0, 5),
                    held(A, POSIX, Read, 5, 6),
                    held(A, POSIX, Write, 6, 10),
                ],
            ),
        ];
        for c in cases {
            run(c);
        }
    }

    #[test]
    fn posix_conflicts() {
        let cases = vec![
            case(
                "read vs read is fine",
                vec![
                    lock(A, POSIX, Read, 0, 100),
                    lock(C, POSIX, Read, 50, 150),
                    lock(B, POSIX, Read, 0, 10),
                ],
                vec![
                    held(A, POSIX, Read, 0, 100),
                    held(B, POSIX, Read, 0, 10),
                    held(C, POSIX, Read, 50, 150),
                ],
            ),
            case(
                "write vs read conflicts",
                vec![
                    lock(A, POSIX, Read, 0, 100),
                    refused(C, POSIX, Write, 50, 60, in_conflict(A, Read, 0, 100)),
                    refused(C, POSIX, Write, 99, END, in_conflict(A, Read, 0, 100)),
                    lock(C, POSIX, Write, 100, 200),
                ],
                vec![
                    held(A, POSIX, Read, 0, 100),
                    held(C, POSIX, Write, 100, 200),
                ],
            ),
            case(
                "read vs write conflicts; touching is not overlapping",
                vec![
                    lock(A, POSIX, Write, 10, 20),
                    refused(C, POSIX, Read, 0, 15, in_conflict(A, Write, 10, 20)),
                    lock(C, POSIX, Read, 20, 30),
                    lock(C, POSIX, Read, 0, 10),
                ],
                vec![
                    held(A, POSIX, Write, 10, 20),
                    held(C, POSIX, Read, 0, 10),
                    held(C, POSIX, Read, 20, 30),
                ],
            ),
            case(
                "owners of one session conflict",
                vec![
                    lock(A, POSIX, Write, 0, 10),
                    refused(B, POSIX, Write, 5, 6, in_conflict(A, Write, 0, 10)),
                ],
                vec![held(A, POSIX, Write, 0, 10)],
            ),
            case(
                "the first conflict: lowest owner, then lowest start",
                vec![
                    lock(C, POSIX, Read, 50, 60),
                    lock(C, POSIX, Write, 70, 80),
                    lock(D, POSIX, Write, 0, 10),
                    refused(A, POSIX, Write, 0, 100, in_conflict(C, Read, 50, 60)),
                    refused(A, POSIX, Write, 55, END, in_conflict(C, Read, 50, 60)),
                    refused(A, POSIX, Write, 65, END, in_conflict(C, Write, 70, 80)),
                    refused(A, POSIX, Read, 0, 100, in_conflict(C, Write, 70, 80)),
                    refused(A, POSIX, Read, 0, 60, in_conflict(D, Write, 0, 10)),
                ],
                vec![
                    held(C, POSIX, Read, 50, 60),
                    held(C, POSIX, Write, 70, 80),
                    held(D, POSIX, Write, 0, 10),
                ],
            ),
            case(
                "a failed upgrade changes nothing",
                vec![
                    lock(A, POSIX, Read, 0, 100),
                    lock(C, POSIX, Read, 50, 60),
                    refused(A, POSIX, Write, 0, 100, in_conflict(C, Read, 50, 60)),
                ],
                vec![held(A, POSIX, Read, 0, 100), held(C, POSIX, Read, 50, 60)],
            ),
            case(
                "a conflict reports the holder's whole (merged) range",
                vec![
                    lock(A, POSIX, Write, 0, 10),
                    lock(A, POSIX, Write, 10, 20),
                    refused(C, POSIX, Read, 15, 16, in_conflict(A, Write, 0, 20)),
                ],
                vec![held(A, POSIX, Write, 0, 20)],
            ),
            case(
                "a lock to the end of the file",
                vec![
                    lock(A, POSIX, Write, 100, END),
                    refused(
                        C,
                        POSIX,
                        Read,
                        1 << 40,
                        (1 << 40) + 1,
                        in_conflict(A, Write, 100, END),
                    ),
                    refused(
                        C,
                        POSIX,
                        Read,
                        END - 1,
                        END,
                        in_conflict(A, Write, 100, END),
                    ),
                    lock(C, POSIX, Read, 0, 100),
                ],
                vec![
                    held(A, POSIX, Write, 100, END),
                    held(C, POSIX, Read, 0, 100),
                ],
            ),
            case(
                "test reports the conflict and changes nothing",
                vec![
                    lock(A, POSIX, Write, 0, 10),
                    test(C, POSIX, Read, 5, 6, Some(conflict(A, Write, 0, 10))),
                    test(B, POSIX, Write, 0, END, Some(conflict(A, Write, 0, 10))),
                    test(A, POSIX, Write, 5, 6, None),
                    test(C, POSIX, Read, 10, 20, None),
                    test(C, FLOCK, Write, 0, END, None),
                    test(C, POSIX, Write, 5, 5, None),
                    test(C, POSIX, Write, 6, 5, None),
                ],
                vec![held(A, POSIX, Write, 0, 10)],
            ),
            case(
                "invalid ranges",
                vec![
                    refused(A, POSIX, Read, 5, 5, invalid(5, 5)),
                    refused(A, POSIX, Write, 10, 5, invalid(10, 5)),
                    refused(A, POSIX, Write, END, END, invalid(END, END)),
                ],
                vec![],
            ),
            case(
                "locks on different inodes are independent",
                vec![
                    lock(A, POSIX, Write, 0, END),
                    lock_on(OTHER_INODE, C, POSIX, Write, range(0, END)),
                ],
                vec![
                    held(A, POSIX, Write, 0, END),
                    (OTHER_INODE, C, POSIX, Write, range(0, END)),
                ],
            ),
        ];
        for c in cases {
            run(c);
        }
    }

    #[test]
    fn flock_rules() {
        let cases = vec![
            case(
                "flock and posix are independent",
                vec![
                    lock(A, FLOCK, Write, 0, END),
                    lock(C, POSIX, Write, 0, END),
                    refused(C, FLOCK, Read, 0, END, in_conflict(A, Write, 0, END)),
                    refused(A, POSIX, Read, 0, 10, in_conflict(C, Write, 0, END)),
                    test(D, FLOCK, Read, 0, END, Some(conflict(A, Write, 0, END))),
                    test(D, POSIX, Read, 0, END, Some(conflict(C, Write, 0, END))),
                ],
                vec![held(C, POSIX, Write, 0, END), held(A, FLOCK, Write, 0, END)],
            ),
            case(
                "a flock must cover the whole file",
                vec![
                    refused(A, FLOCK, Read, 0, 10, invalid(0, 10)),
                    refused(A, FLOCK, Write, 1, END, invalid(1, END)),
                    refused(A, FLOCK, Write, 0, END - 1, invalid(0, END - 1)),
                ],
                vec![],
            ),
            case(
                "an invalid range is reported before a conflict",
                vec![
                    lock(A, FLOCK, Write, 0, END),
                    refused(C, FLOCK, Write, 0, 10, invalid(0, 10)),
                    lock(A, POSIX, Write, 0, 10),
                    refused(C, POSIX, Write, 10, 10, invalid(10, 10)),
                ],
                vec![held(A, POSIX, Write, 0, 10), held(A, FLOCK, Write, 0, END)],
            ),
            case(
                "flock read is shared, write exclusive",
                vec![
                    lock(A, FLOCK, Read, 0, END),
                    lock(C, FLOCK, Read, 0, END),
                    refused(D, FLOCK, Write, 0, END, in_conflict(A, Read, 0, END)),
                    refused(B, FLOCK, Write, 0, END, in_conflict(A, Read, 0, END)),
                ],
                vec![held(A, FLOCK, Read, 0, END), held(C, FLOCK, Read, 0, END)],
            ),
            case(
                "a flock write lock keeps out other owners of its session",
                vec![
                    lock(A, FLOCK, Write, 0, END),
                    refused(B, FLOCK, Read, 0, END, in_conflict(A, Write, 0, END)),
                ],
                vec![held(A, FLOCK, Write, 0, END)],
            ),
            case(
                "flock conversion in place",
                vec![
                    lock(A, FLOCK, Read, 0, END),
                    lock(A, FLOCK, Write, 0, END),
                    lock(A, FLOCK, Write, 0, END),
                ],
                vec![held(A, FLOCK, Write, 0, END)],
            ),
            case(
                "flock downgrade lets readers in",
                vec![
                    lock(A, FLOCK, Write, 0, END),
                    lock(A, FLOCK, Read, 0, END),
                    lock(C, FLOCK, Read, 0, END),
                ],
                vec![held(A, FLOCK, Read, 0, END), held(C, FLOCK, Read, 0, END)],
            ),
            case(
                "a blocked conversion keeps the old lock",
                vec![
                    lock(A, FLOCK, Read, 0, END),
                    lock(C, FLOCK, Read, 0, END),
                    refused(A, FLOCK, Write, 0, END, in_conflict(C, Read, 0, END)),
                    unlock(C, FLOCK, 0, END),
                    lock(A, FLOCK, Write, 0, END),
                ],
                vec![held(A, FLOCK, Write, 0, END)],
            ),
            case(
                "flock unlock",
                vec![
                    lock(A, FLOCK, Write, 0, END),
                    lock(A, POSIX, Write, 0, 10),
                    unlock(A, FLOCK, 0, END),
                    unlock(A, FLOCK, 0, END),
                    lock(C, FLOCK, Write, 0, END),
                ],
                vec![held(A, POSIX, Write, 0, 10), held(C, FLOCK, Write, 0, END)],
            ),
        ];
        for c in cases {
            run(c);
        }
    }

    #[test]
    fn releases() {
        let cases = vec![
            case(
                "release_owner drops both flavors of that owner on that inode",
                vec![
                    lock(A, POSIX, Write, 0, 10),
                    lock(A, POSIX, Read, 20, 30),
                    lock(A, FLOCK, Read, 0, END),
                    lock(B, POSIX, Read, 40, 50),
                    lock(C, FLOCK, Read, 0, END),
                    lock_on(OTHER_INODE, A, POSIX, Write, range(0, 10)),
                    Step::ReleaseOwner(INODE, A),
                    lock(C, POSIX, Write, 0, 30),
                    Step::ReleaseOwner(INODE, A),
                    Step::ReleaseOwner(99, A),
                ],
                vec![
                    held(B, POSIX, Read, 40, 50),
                    held(C, POSIX, Write, 0, 30),
                    held(C, FLOCK, Read, 0, END),
                    (OTHER_INODE, A, POSIX, Write, range(0, 10)),
                ],
            ),
            case(
                "release_session frees exactly that session's locks",
                vec![
                    lock(A, POSIX, Write, 0, 10),
                    lock(A, POSIX, Read, 20, 30),
                    lock(B, FLOCK, Write, 0, END),
                    lock_on(OTHER_INODE, A, POSIX, Read, range(0, 5)),
                    lock(C, POSIX, Read, 40, 50),
                    lock_on(OTHER_INODE, C, FLOCK, Read, range(0, END)),
                    lock_on(OTHER_INODE, D, POSIX, Read, range(0, 5)),
                    Step::ReleaseSession(1, 4),
                    Step::ReleaseSession(1, 0),
                    Step::ReleaseSession(9, 0),
                    lock(C, POSIX, Write, 0, 10),
                    lock(D, FLOCK, Write, 0, END),
                ],
                vec![
                    held(C, POSIX, Write, 0, 10),
                    held(C, POSIX, Read, 40, 50),
                    held(D, FLOCK, Write, 0, END),
                    (OTHER_INODE, D, POSIX, Read, range(0, 5)),
                    (OTHER_INODE, C, FLOCK, Read, range(0, END)),
                ],
            ),
            case(
                "a session is released after its locks came and went",
                vec![
                    lock(A, POSIX, Write, 0, 10),
                    lock_on(OTHER_INODE, A, POSIX, Write, range(0, 10)),
                    unlock(A, POSIX, 0, 10),
                    lock(C, POSIX, Read, 0, 10),
                    Step::ReleaseSession(1, 1),
                    Step::ReleaseSession(2, 1),
                ],
                vec![],
            ),
        ];
        for c in cases {
            run(c);
        }
    }

    #[test]
    fn bounds() {
        let too_many_session = |limit| LockError::TooMany {
            what: SESSION_BOUND,
            limit,
        };
        let too_many_table = |limit| LockError::TooMany {
            what: TABLE_BOUND,
            limit,
        };
        let cases = vec![
            bounded(
                "the session bound; merges and conversions need no room",
                (100, 3),
                vec![
                    lock(A, POSIX, Read, 0, 1),
                    lock(A, POSIX, Read, 2, 3),
                    lock(B, POSIX, Read, 4, 5),
                    refused(A, POSIX, Read, 6, 7, too_many_session(3)),
                    refused(B, FLOCK, Read, 0, END, too_many_session(3)),
                    lock(C, POSIX, Read, 6, 7),
                    lock(A, POSIX, Read, 1, 2),
                    lock(A, FLOCK, Read, 0, END),
                    lock(A, FLOCK, Write, 0, END),
                    lock(B, POSIX, Write, 4, 5),
                    refused(B, POSIX, Read, 10, 11, too_many_session(3)),
                ],
                vec![
                    held(A, POSIX, Read, 0, 3),
                    held(B, POSIX, Write, 4, 5),
                    held(C, POSIX, Read, 6, 7),
                    held(A, FLOCK, Write, 0, END),
                ],
            ),
            bounded(
                "a split counts as the ranges it leaves",
                (100, 2),
                vec![
                    lock(A, POSIX, Read, 0, 100),
                    refused(A, POSIX, Write, 40, 60, too_many_session(2)),
                    lock(A, POSIX, Write, 0, 40),
                ],
                vec![held(A, POSIX, Write, 0, 40), held(A, POSIX, Read, 40, 100)],
            ),
            bounded(
                "the table bound",
                (3, 10),
                vec![
                    lock(A, POSIX, Read, 0, 1),
                    lock(C, POSIX, Read, 0, 1),
                    lock(D, FLOCK, Read, 0, END),
                    refused(A, POSIX, Read, 5, 6, too_many_table(3)),
                    refused(D, POSIX, Read, 5, 6, too_many_table(3)),
                    lock(A, POSIX, Read, 1, 2),
                    unlock(D, FLOCK, 0, END),
                    lock(A, POSIX, Read, 5, 6),
                ],
                vec![
                    held(A, POSIX, Read, 0, 2),
                    held(A, POSIX, Read, 5, 6),
                    held(C, POSIX, Read, 0, 1),
                ],
            ),
            bounded(
                "an unlock that would split at the bound leaves the range whole",
                (100, 1),
                vec![
                    lock(A, POSIX, Write, 0, 100),
                    unlock(A, POSIX, 40, 60),
                    test(C, POSIX, Read, 50, 51, Some(conflict(A, Write, 0, 100))),
                    unlock(A, POSIX, 0, 40),
                    lock(C, POSIX, Read, 0, 40),
                ],
                vec![held(A, POSIX, Write, 40, 100), held(C, POSIX, Read, 0, 40)],
            ),
            bounded(
                "a conflict is reported before the bound",
                (100, 1),
                vec![
                    lock(A, POSIX, Write, 0, 10),
                    lock(C, POSIX, Read, 20, 30),
                    refused(C, POSIX, Write, 0, 5, in_conflict(A, Write, 0, 10)),
                    refused(C, POSIX, Write, 10, 15, too_many_session(1)),
                ],
                vec![held(A, POSIX, Write, 0, 10), held(C, POSIX, Read, 20, 30)],
            ),
        ];
        for c in cases {
            run(c);
        }
    }

    #[test]
    fn real_session_bound() {
        let mut table = LockTable::new();
        assert_eq!(
            (table.locks_max, table.session_locks_max),
            (LOCKS_MAX, SESSION_LOCKS_MAX)
        );
        let owners = [A, B];
        for i in 0..SESSION_LOCKS_MAX as u64 {
            let owner = owners[(i % 2) as usize];
            table
                .lock(i % 5, owner, POSIX, Read, range(3 * i, 3 * i + 1))
                .expect("below the session bound");
        }
        assert_eq!(
            table.lock(0, A, POSIX, Read, range(END - 1, END)),
            Err(LockError::TooMany {
                what: SESSION_BOUND,
                limit: SESSION_LOCKS_MAX
            })
        );
        table
            .lock(0, C, POSIX, Read, range(END - 1, END))
            .expect("another session has room");
        table.check_consistent();
        assert_eq!(table.len(), SESSION_LOCKS_MAX + 1);
        assert_eq!(table.release_session(1), SESSION_LOCKS_MAX);
        assert_eq!(table.len(), 1);
        table.check_consistent();
    }

    // Seeded: deterministic runs.
    use dfs_testkit::seeded::SplitMix64 as Rng;

    /// The model's file: bytes 0..64, and one more cell standing for
    /// 64..u64::MAX, so a range to the end of the file is its own thing.
    const CELLS: usize = 65;
    type Cells = [Option<LockKind>; CELLS];

    fn cell_span(r: ByteRange) -> (usize, usize) {
        let end = if r.end == END { CELLS } else { r.end as usize };
        (r.start as usize, end)
    }

    fn cell_range(start: usize, end: usize) -> ByteRange {
        let end = if end == CELLS { END } else { end as u64 };
        range(start as u64, end)
    }

    /// An owner's ranges: the maximal runs of one kind.
    fn runs(cells: &Cells) -> Vec<(LockKind, ByteRange)> {
        let mut runs = Vec::new();
        let mut i = 0;
        while i < CELLS {
            match cells[i] {
                None => i += 1,
                Some(kind) => {
                    let start = i;
                    while i < CELLS && cells[i] == Some(kind) {
                        i += 1;
                    }
                    runs.push((kind, cell_range(start, i)));
                }
            }
        }
        runs
    }

    /// The naive lock table: one lock state per byte.
    struct Model {
        posix: BTreeMap<(InodeId, LockOwner), Cells>,
        flock: BTreeMap<(InodeId, LockOwner), LockKind>,
        locks_max: usize,
        session_locks_max: usize,
    }

    impl Model {
        fn held(&self, inode: InodeId, owner: LockOwner) -> usize {
            self.posix
                .get(&(inode, owner))
                .map_or(0, |cells| runs(cells).len())
                + usize::from(self.flock.contains_key(&(inode, owner)))
        }

        fn count(&self, session: Option<SessionId>) -> usize {
            let counted = |owner: &LockOwner| session.is_none_or(|s| owner.session == s);
            self.posix
                .iter()
                .filter(|((_, owner), _)| counted(owner))
                .map(|(_, cells)| runs(cells).len())
                .sum::<usize>()
                + self
                    .flock
                    .keys()
                    .filter(|(_, owner)| counted(owner))
                    .count()
        }

        fn conflict(
            &self,
            inode: InodeId,
            owner: LockOwner,
            flavor: Flavor,
            kind: LockKind,
            r: ByteRange,
        ) -> Option<Conflict> {
            if r.start >= r.end {
                return None;
            }
            match flavor {
                Flavor::Posix => {
                    let (start, end) = cell_span(r);
                    self.posix
                        .iter()
                        .filter(|((i, holder), _)| *i == inode && *holder != owner)
                        .find_map(|((_, holder), cells)| {
                            runs(cells).into_iter().find_map(|(held, run)| {
                                let (a, b) = cell_span(run);
                                let clash =
                                    a < end && start < b && (kind == Write || held == Write);
                                clash.then_some(conflict(*holder, held, run.start, run.end))
                            })
                        })
                }
                Flavor::Flock => self
                    .flock
                    .iter()
                    .filter(|((i, holder), _)| *i == inode && *holder != owner)
                    .find(|(_, held)| kind == Write || **held == Write)
                    .map(|((_, holder), held)| Conflict {
                        holder: *holder,
                        kind: *held,
                        range: WHOLE_FILE,
                    }),
            }
        }

        fn room(&self, session: SessionId, before: usize, after: usize) -> Result<(), LockError> {
            if after <= before {
                return Ok(());
            }
            if self.count(Some(session)) + after - before > self.session_locks_max {
                return Err(LockError::TooMany {
                    what: SESSION_BOUND,
                    limit: self.session_locks_max,
                });
            }
            if self.count(None) + after - before > self.locks_max {
                return Err(LockError::TooMany {
                    what: TABLE_BOUND,
                    limit: self.locks_max,
                });
            }
            Ok(())
        }

        fn set(
            &mut self,
            inode: InodeId,
            owner: LockOwner,
            r: ByteRange,
            kind: Option<LockKind>,
        ) -> (usize, usize) {
            let mut cells = self
                .posix
                .get(&(inode, owner))
                .copied()
                .unwrap_or([None; CELLS]);
            let before = runs(&cells).len();
            let (start, end) = cell_span(r);
            for cell in &mut cells[start..end] {
                *cell = kind;
            }
            let after = runs(&cells).len();
            (before, after)
        }

        fn store(
            &mut self,
            inode: InodeId,
            owner: LockOwner,
            r: ByteRange,
            kind: Option<LockKind>,
        ) {
            let cells = self.posix.entry((inode, owner)).or_insert([None; CELLS]);
            let (start, end) = cell_span(r);
            for cell in &mut cells[start..end] {
                *cell = kind;
            }
            if cells.iter().all(Option::is_none) {
                self.posix.remove(&(inode, owner));
            }
        }

        fn lock(
            &mut self,
            inode: InodeId,
            owner: LockOwner,
            flavor: Flavor,
            kind: LockKind,
            r: ByteRange,
        ) -> Result<(), LockError> {
            let valid = match flavor {
                Flavor::Posix => r.start < r.end,
                Flavor::Flock => r == WHOLE_FILE,
            };
            if !valid {
                return Err(LockError::InvalidRange(r));
            }
            if let Some(c) = self.conflict(inode, owner, flavor, kind, r) {
                return Err(LockError::Conflict(c));
            }
            match flavor {
                Flavor::Posix => {
                    let (before, after) = self.set(inode, owner, r, Some(kind));
                    self.room(owner.session, before, after)?;
                    self.store(inode, owner, r, Some(kind));
                }
                Flavor::Flock => {
                    let before = usize::from(self.flock.contains_key(&(inode, owner)));
                    self.room(owner.session, before, 1)?;
                    self.flock.insert((inode, owner), kind);
                }
            }
            Ok(())
        }

        fn unlock(&mut self, inode: InodeId, owner: LockOwner, flavor: Flavor, r: ByteRange) {
            if r.start >= r.end {
                return;
            }
            match flavor {
                Flavor::Posix => {
                    let (before, after) = self.set(inode, owner, r, None);
                    if self.room(owner.session, before, after).is_ok() {
                        self.store(inode, owner, r, None);
                    }
                }
                Flavor::Flock => {
                    self.flock.remove(&(inode, owner));
                }
            }
        }

        fn release_owner(&mut self, inode: InodeId, owner: LockOwner) {
            self.posix.remove(&(inode, owner));
            self.flock.remove(&(inode, owner));
        }

        fn release_session(&mut self, session: SessionId) -> usize {
            let gone = self.count(Some(session));
            self.posix.retain(|(_, owner), _| owner.session != session);
            self.flock.retain(|(_, owner), _| owner.session != session);
            gone
        }

        fn locks_of(&self, inode: InodeId) -> Vec<(LockOwner, Flavor, LockKind, ByteRange)> {
            let mut all = Vec::new();
            for ((i, owner), cells) in &self.posix {
                if *i == inode {
                    for (kind, r) in runs(cells) {
                        all.push((*owner, POSIX, kind, r));
                    }
                }
            }
            for ((i, owner), kind) in &self.flock {
                if *i == inode {
                    all.push((*owner, FLOCK, *kind, WHOLE_FILE));
                }
            }
            all
        }
    }

    const MODEL_OWNERS: [LockOwner; 6] = [
        A,
        B,
        C,
        LockOwner {
            session: 2,
            owner: 9,
        },
        D,
        LockOwner {
            session: 3,
            owner: 2,
        },
    ];
    const MODEL_INODES: [InodeId; 2] = [1, 2];

    fn random_range(rng: &mut Rng) -> ByteRange {
        if rng.below(20) == 0 {
            // Empty or backwards.
            let start = rng.below(CELLS as u64 + 1);
            return range(start, start.saturating_sub(rng.below(3)));
        }
        let start = rng.below(CELLS as u64);
        let last = CELLS as u64 - 1;
        let end = if start == last || rng.below(5) == 0 {
            END
        } else if rng.below(2) == 0 {
            (start + 1 + rng.below(8)).min(last)
        } else {
            start + 1 + rng.below(last - start)
        };
        range(start, end)
    }

    #[derive(Debug, Default)]
    struct Seen {
        locked: usize,
        conflicts: usize,
        too_many: usize,
        invalid: usize,
        splits: usize,
        splits_refused: usize,
        released: usize,
    }

    fn model_run(seed: u64, limits: (usize, usize), ops: usize, seen: &mut Seen) {
        let mut rng = Rng(seed);
        let mut table = LockTable::with_limits(limits.0, limits.1);
        let mut model = Model {
            posix: BTreeMap::new(),
            flock: BTreeMap::new(),
            locks_max: limits.0,
            session_locks_max: limits.1,
        };
        for op in 0..ops {
            let at = format!("seed {seed}, op {op}");
            let inode = MODEL_INODES[rng.below(MODEL_INODES.len() as u64) as usize];
            let owner = MODEL_OWNERS[rng.below(MODEL_OWNERS.len() as u64) as usize];
            let flavor = if rng.below(4) == 0 { FLOCK } else { POSIX };
            let kind = if rng.below(2) == 0 { Read } else { Write };
            let r = if flavor == FLOCK && rng.below(8) != 0 {
                WHOLE_FILE
            } else {
                random_range(&mut rng)
            };
            match rng.below(100) {
                0..=49 => {
                    let tested = table.test(inode, owner, flavor, kind, r);
                    assert_eq!(
                        tested,
                        model.conflict(inode, owner, flavor, kind, r),
                        "{at}"
                    );
                    let expected = model.lock(inode, owner, flavor, kind, r);
                    let got = table.lock(inode, owner, flavor, kind, r);
                    assert_eq!(
                        got, expected,
                        "{at}: lock {owner:?} {flavor:?} {kind:?} {r:?}"
                    );
                    match got {
                        Ok(()) => seen.locked += 1,
                        Err(LockError::Conflict(c)) => {
                            assert_eq!(tested, Some(c), "{at}");
                            seen.conflicts += 1;
                        }
                        Err(LockError::TooMany { .. }) => seen.too_many += 1,
                        Err(LockError::InvalidRange(_)) => seen.invalid += 1,
                    }
                }
                50..=79 => {
                    let before = model.held(inode, owner);
                    model.unlock(inode, owner, flavor, r);
                    table.unlock(inode, owner, flavor, r);
                    if flavor == POSIX && r.start < r.end {
                        let (held, after) = model.set(inode, owner, r, None);
                        if after > held {
                            // Still whole: the split was refused.
                            seen.splits_refused += 1;
                        } else if model.held(inode, owner) > before {
                            seen.splits += 1;
                        }
                    }
                }
                80..=89 => {
                    model.release_owner(inode, owner);
                    table.release_owner(inode, owner);
                }
                90..=92 => {
                    let gone = model.release_session(owner.session);
                    assert_eq!(table.release_session(owner.session), gone, "{at}");
                    seen.released += gone;
                }
                _ => {}
            }
            table.check_consistent();
            assert_eq!(table.len(), model.count(None), "{at}: len");
            for inode in MODEL_INODES {
                let locks = table.locks_of(inode);
                check_canonical(&locks);
                assert_eq!(locks, model.locks_of(inode), "{at}: locks of {inode}");
            }
            for _ in 0..4 {
                let inode = MODEL_INODES[rng.below(MODEL_INODES.len() as u64) as usize];
                let owner = MODEL_OWNERS[rng.below(MODEL_OWNERS.len() as u64) as usize];
                let flavor = if rng.below(4) == 0 { FLOCK } else { POSIX };
                let kind = if rng.below(2) == 0 { Read } else { Write };
                let r = random_range(&mut rng);
                assert_eq!(
                    table.test(inode, owner, flavor, kind, r),
                    model.conflict(inode, owner, flavor, kind, r),
                    "{at}: test {owner:?} {flavor:?} {kind:?} {r:?}"
                );
            }
        }
    }

    #[test]
    fn agrees_with_a_per_byte_model() {
        let mut seen = Seen::default();
        for seed in 0..36 {
            let limits = match seed % 3 {
                0 => (LOCKS_MAX, SESSION_LOCKS_MAX),
                1 => (12, 5),
                _ => (8, 8),
            };
            model_run(seed, limits, 1500, &mut seen);
        }
        // Every outcome happened, so the comparison covered each rule.
        assert!(seen.locked > 1000, "{seen:?}");
        assert!(seen.conflicts > 100, "{seen:?}");
        assert!(seen.too_many > 10, "{seen:?}");
        assert!(seen.invalid > 10, "{seen:?}");
        assert!(seen.splits > 10, "{seen:?}");
        assert!(seen.splits_refused > 0, "{seen:?}");
        assert!(seen.released > 10, "{seen:?}");
    }
}
