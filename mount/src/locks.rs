//! Locks through the mount: `fcntl` byte-range locks and `flock`, arbitrated
//! by the master so that they hold across workstations. The mount keeps one
//! lock session, renewed by a thread of its own within the master's lease;
//! if the mount dies its locks go with the lease. The mount records the
//! locks granted through it (`HeldLocks`) and takes them again in a new
//! session when the master restarted (its grace lets only such reclaims
//! through). A lock that must wait
//! (F_SETLKW, a blocking flock) waits in a thread of its own, asking again
//! with a growing pause, so the session thread goes on serving.
//!
//! The kernel hands flock and fcntl locks alike (whole-file ranges owned by
//! the open file, for flock), so here they are one kind of lock: a flock
//! and an fcntl lock on one file exclude each other, which Linux's local
//! locks do not.
//!
//! A lock is on a path (`key`), not on an inode number: a file written
//! through a mount is replaced whole at each commit and gets a new number,
//! while a database and its lock must stay one file to every workstation.
//! A rename of a locked file leaves its locks on the old name.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use dfs_client::Client;
use dfs_engine::msg::{Credentials, ErrorKind, LockKind, LockRange};
use dfs_engine::{Error, Result};

/// The first pause of a waiting lock; it doubles up to the longest.
const WAIT_FIRST_MS: u64 = 20;
const WAIT_LONGEST_MS: u64 = 500;

/// The master's lock-table key of the file at `path`: FNV-1a (64 bits) of
/// the path, the same on every workstation and build.
pub fn key(path: &dfs_engine::path::DfsPath) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    path.as_str().bytes().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// The FUSE lock range `start..=end` (end `OFFSET_MAX`: to the end and
/// beyond) as the master's `start..end`.
pub fn range(start: u64, end: u64) -> LockRange {
    let end = if end >= i64::MAX as u64 {
        u64::MAX
    } else {
        end + 1
    };
    LockRange { start, end }
}

/// The master's range as FUSE reports it (end inclusive, OFFSET_MAX).
pub fn fuse_range(range: LockRange) -> (u64, u64) {
    let end = if range.end == u64::MAX {
        i64::MAX as u64
    } else {
        range.end.saturating_sub(1)
    };
    (range.start, end)
}

/// A lock type of `fcntl` (F_RDLCK, F_WRLCK, F_UNLCK) as a kind to take,
/// None to drop; `EINVAL` for anything else.
pub fn kind(typ: i32) -> std::result::Result<Option<LockKind>, fuser::Errno> {
    match typ {
        libc::F_RDLCK => Ok(Some(LockKind::Read)),
        libc::F_WRLCK => Ok(Some(LockKind::Write)),
        libc::F_UNLCK => Ok(None),
        _ => Err(fuser::Errno::EINVAL),
    }
}

pub fn fcntl_type(kind: LockKind) -> i32 {
    match kind {
        LockKind::Read => libc::F_RDLCK,
        LockKind::Write => libc::F_WRLCK,
    }
}

/// The files the mount holds open in the master, by inode, with how many
/// open files here hold each.
type Holds = Arc<Mutex<HashMap<u64, usize>>>;

/// The locks granted through this mount, by lock key and owner, as POSIX
/// has them for one owner (a new lock replaces what it overlaps, an unlock
/// cuts): what the mount takes again after a master restart.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HeldLocks {
    held: HashMap<(u64, u64), Vec<(LockKind, LockRange)>>,
}

/// `range` without `cut`: up to two pieces.
fn without(range: LockRange, cut: LockRange) -> Vec<LockRange> {
    if cut.end <= range.start || range.end <= cut.start {
        return vec![range];
    }
    let mut left = Vec::new();
    if range.start < cut.start {
        left.push(LockRange {
            start: range.start,
            end: cut.start,
        });
    }
    if cut.end < range.end {
        left.push(LockRange {
            start: cut.end,
            end: range.end,
        });
    }
    left
}

impl HeldLocks {
    /// A lock (`kind` Some) was granted, or a range unlocked (None).
    pub fn record(&mut self, key: u64, owner: u64, kind: Option<LockKind>, range: LockRange) {
        let entry = self.held.entry((key, owner)).or_default();
        let mut kept: Vec<(LockKind, LockRange)> = entry
            .iter()
            .flat_map(|&(held_kind, held)| {
                without(held, range)
                    .into_iter()
                    .map(move |piece| (held_kind, piece))
            })
            .collect();
        if let Some(kind) = kind {
            kept.push((kind, range));
        }
        if kept.is_empty() {
            self.held.remove(&(key, owner));
        } else {
            *entry = kept;
        }
    }

    /// Every lock of `owner` on `key` went (a close).
    pub fn forget(&mut self, key: u64, owner: u64) {
        self.held.remove(&(key, owner));
    }

    /// Every lock held: (key, owner, kind, range).
    pub fn all(&self) -> Vec<(u64, u64, LockKind, LockRange)> {
        let mut all: Vec<_> = self
            .held
            .iter()
            .flat_map(|(&(key, owner), ranges)| {
                ranges
                    .iter()
                    .map(move |&(kind, range)| (key, owner, kind, range))
            })
            .collect();
        all.sort_by_key(|&(key, owner, _, range)| (key, owner, range.start));
        all
    }
}

/// The mount's lock session, kept alive by a renewal thread. It also holds
/// the files open here, so that the master keeps one removed elsewhere (or
/// here) until it is closed here.
pub struct LockSession {
    master: String,
    credentials: Credentials,
    id: Arc<AtomicU64>,
    holds: Holds,
    locks: Arc<Mutex<HeldLocks>>,
    stopping: Arc<AtomicBool>,
    /// Set when a call found the session gone: renew (and so replace it)
    /// now rather than at the next period.
    urgent: Arc<AtomicBool>,
    renewer: Option<JoinHandle<()>>,
}

impl LockSession {
    pub fn open(master: &str, credentials: Credentials) -> Result<LockSession> {
        let mut client = Client::connect_as(master, credentials.clone())?;
        let (session, lease) = client.open_lock_session()?;
        let id = Arc::new(AtomicU64::new(session));
        let stopping = Arc::new(AtomicBool::new(false));
        let urgent = Arc::new(AtomicBool::new(false));
        let holds: Holds = Arc::default();
        let locks: Arc<Mutex<HeldLocks>> = Arc::default();
        let renewer = {
            let id = Arc::clone(&id);
            let stopping = Arc::clone(&stopping);
            let urgent = Arc::clone(&urgent);
            let holds = Arc::clone(&holds);
            let locks = Arc::clone(&locks);
            thread::Builder::new()
                .name("lock-lease".into())
                .spawn(move || renew(client, &id, &holds, &locks, (&stopping, &urgent), lease))
                .map_err(|e| Error::io("start the lock lease thread", e))?
        };
        Ok(LockSession {
            master: master.to_string(),
            credentials,
            id,
            holds,
            locks,
            stopping,
            urgent,
            renewer: Some(renewer),
        })
    }

    pub fn id(&self) -> u64 {
        self.id.load(Ordering::Relaxed)
    }

    /// A client for a waiting lock (its own master connection).
    pub fn client(&self) -> Result<Client> {
        Client::connect_as(&self.master, self.credentials.clone())
    }

    pub fn shared_id(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.id)
    }

    /// Waits (a few seconds at most) until the lease thread replaced the
    /// session `stale` the master no longer knows; the new one.
    pub fn wait_for_new_session(&self, stale: u64) -> Option<u64> {
        self.urgent.store(true, Ordering::Relaxed);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            let current = self.id();
            if current != stale {
                return Some(current);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The record of the locks granted through this mount.
    pub fn held_locks(&self) -> Arc<Mutex<HeldLocks>> {
        Arc::clone(&self.locks)
    }

    /// A file (`inode`) is opened here: the master is told at its first
    /// open here. Best effort: a file not held is only not kept once
    /// removed elsewhere.
    pub fn hold(&self, client: &mut Client, inode: u64) {
        let mut holds = dfs_engine::sync::lock(&self.holds);
        let count = holds.entry(inode).or_insert(0);
        *count += 1;
        if *count == 1 {
            if let Err(error) = client.hold_file(self.id(), inode) {
                eprintln!("dfs-mount: hold file {inode} open: {error}");
            }
        }
    }

    /// A file opened here with `hold` is closed: the master is told at its
    /// last close here.
    pub fn release(&self, client: &mut Client, inode: u64) {
        let mut holds = dfs_engine::sync::lock(&self.holds);
        let Some(count) = holds.get_mut(&inode) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            holds.remove(&inode);
            if let Err(error) = client.release_file(self.id(), inode) {
                eprintln!("dfs-mount: release file {inode}: {error}");
            }
        }
    }
}

impl Drop for LockSession {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Relaxed);
        if let Some(renewer) = self.renewer.take() {
            let _ = renewer.join();
        }
    }
}

/// Renews the session a third of the lease apart; a session the master no
/// longer knows (a restart, a long partition) is replaced by a new one, and
/// the loss of its locks is said. Closes the session when stopping.
fn renew(
    mut client: Client,
    id: &AtomicU64,
    holds: &Mutex<HashMap<u64, usize>>,
    locks: &Mutex<HeldLocks>,
    (stopping, urgent): (&AtomicBool, &AtomicBool),
    lease: Duration,
) {
    let period = (lease / 3).max(Duration::from_millis(100));
    let step = Duration::from_millis(50).min(period);
    let mut waited = Duration::ZERO;
    while !stopping.load(Ordering::Relaxed) {
        thread::sleep(step);
        waited += step;
        if waited < period && !urgent.swap(false, Ordering::Relaxed) {
            continue;
        }
        waited = Duration::ZERO;
        let session = id.load(Ordering::Relaxed);
        if let Err(error) = client.renew_lock_session(session) {
            eprintln!("dfs-mount: locks held through this mount are lost: {error}");
            match client.open_lock_session() {
                Ok((fresh, _)) => {
                    id.store(fresh, Ordering::Relaxed);
                    // The files open here are held again in the new session
                    // (the master keeps removed ones a while after a restart
                    // for this).
                    let held: Vec<u64> = dfs_engine::sync::lock(holds).keys().copied().collect();
                    for inode in held {
                        if let Err(error) = client.hold_file(fresh, inode) {
                            eprintln!("dfs-mount: hold file {inode} open again: {error}");
                        }
                    }
                    // And the locks taken through it, as the master allows
                    // in its grace after a restart.
                    let all = dfs_engine::sync::lock(locks).all();
                    let mut taken = 0;
                    for (key, owner, kind, range) in all {
                        match client.reclaim_lock(fresh, key, owner, kind, range) {
                            Ok(None) => taken += 1,
                            Ok(Some(_)) => eprintln!(
                                "dfs-mount: a lock held through this mount was taken by another meanwhile: it is lost"
                            ),
                            Err(error) => eprintln!("dfs-mount: take a lock again: {error}"),
                        }
                    }
                    if taken > 0 {
                        eprintln!("dfs-mount: {taken} locks taken again in a new session");
                    }
                }
                Err(error) => eprintln!("dfs-mount: no new lock session yet: {error}"),
            }
        }
    }
    let _ = client.close_lock_session(id.load(Ordering::Relaxed));
}

/// Asks for a lock until it is granted; `Err` when the master fails.
pub fn wait_for_lock(
    mut client: Client,
    session: &AtomicU64,
    inode: u64,
    owner: u64,
    kind: LockKind,
    range: LockRange,
) -> Result<()> {
    let mut pause = Duration::from_millis(WAIT_FIRST_MS);
    loop {
        let granted = match client.lock(
            session.load(Ordering::Relaxed),
            inode,
            owner,
            Some(kind),
            range,
        ) {
            Ok(granted) => granted.map(|_| ()),
            // The master restarted: its holders take their locks first, and
            // the lease thread opens a new session.
            Err(Error::Remote(error))
                if matches!(error.kind, ErrorKind::Starting | ErrorKind::NoSession) =>
            {
                Some(())
            }
            Err(error) => return Err(error),
        };
        if granted.is_none() {
            return Ok(());
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(WAIT_LONGEST_MS));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuse_ranges_and_master_ranges_convert_both_ways() {
        let whole = range(0, i64::MAX as u64);
        assert_eq!(
            whole,
            LockRange {
                start: 0,
                end: u64::MAX
            }
        );
        assert_eq!(fuse_range(whole), (0, i64::MAX as u64));
        let some = range(10, 19);
        assert_eq!(some, LockRange { start: 10, end: 20 });
        assert_eq!(fuse_range(some), (10, 19));
        assert_eq!(kind(libc::F_WRLCK), Ok(Some(LockKind::Write)));
        assert_eq!(kind(libc::F_UNLCK), Ok(None));
        assert!(kind(77).is_err());
        assert_eq!(fcntl_type(LockKind::Read), libc::F_RDLCK);
    }

    #[test]
    fn lock_keys_are_fnv1a_of_the_path() {
        let path = |text: &str| dfs_engine::path::DfsPath::parse(text).expect("path");
        // FNV-1a 64 of "/a".
        assert_eq!(key(&path("/a")), 0x07d6_6707_b49c_d92d);
        assert_ne!(key(&path("/a/db")), key(&path("/a/db-journal")));
    }

    fn r(start: u64, end: u64) -> LockRange {
        LockRange { start, end }
    }

    #[test]
    fn held_locks_follow_posix_for_one_owner() {
        let mut held = HeldLocks::default();
        held.record(1, 7, Some(LockKind::Write), r(0, 100));
        held.record(1, 7, Some(LockKind::Read), r(40, 60));
        held.record(1, 7, None, r(90, u64::MAX));
        held.record(2, 8, Some(LockKind::Write), r(0, u64::MAX));
        assert_eq!(
            held.all(),
            vec![
                (1, 7, LockKind::Write, r(0, 40)),
                (1, 7, LockKind::Read, r(40, 60)),
                (1, 7, LockKind::Write, r(60, 90)),
                (2, 8, LockKind::Write, r(0, u64::MAX)),
            ]
        );
        held.forget(2, 8);
        held.record(1, 7, None, r(0, u64::MAX));
        assert_eq!(held, HeldLocks::default());
    }
}
