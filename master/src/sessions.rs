//! Lock sessions: who may hold locks, and for how long. A mount opens one
//! session and renews it within its lease; a session not renewed in time
//! (its mount died, its workstation lost the network) expires and its
//! locks go, so a dead holder never blocks the living. Soft state, like the
//! lock table it owns: a master that restarts starts with no sessions, and
//! a mount finds out at its next renewal and takes its locks again in a new
//! session (`reclaim`); for a lease after a restart only such reclaims are
//! granted, so no one else takes a lock its holder has yet to reclaim.
//!
//! A session also holds the files its mount has open (`hold`): such a file
//! outlives its last name (the namespace keeps it, `Op::Sustain`) until no
//! session holds it; the holds are soft state too, and a mount holds its
//! open files again in a new session after a master restart.
//!
//! Pure apart from the ids it is handed: time comes in as `now`, so expiry
//! is tested without sleeping. Expired sessions are swept by every call
//! that could meet their locks; sessions are few (one per mount).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use dfs_engine::limits::{HOLDS_PER_SESSION_MAX, SESSIONS_MAX};
use dfs_engine::msg::{ErrorKind, LockKind as WireKind, LockRange, MasterResponse, RemoteError};

use crate::locks::{ByteRange, Flavor, LockError, LockKind, LockOwner, LockTable, SessionId};

/// Sessions and their locks.
pub struct Sessions {
    lease: Duration,
    /// When each session was opened or last renewed.
    renewed: HashMap<SessionId, Instant>,
    /// Who opened each session (`members::principal_name` of its
    /// connection's identity, empty without one): only they use it.
    owners: HashMap<SessionId, String>,
    table: LockTable,
    /// The files (inodes) each session holds open.
    holds: HashMap<SessionId, HashSet<u64>>,
    /// After a restart, until then only locks held before are taken again
    /// (`reclaim`): a new lock could take one its holder has not reclaimed
    /// yet.
    grace_until: Option<Instant>,
}

/// How a session's owner is named in a refusal.
fn shown(owner: &str) -> &str {
    if owner.is_empty() {
        "an anonymous client"
    } else {
        owner
    }
}

fn kind(wire: WireKind) -> LockKind {
    match wire {
        WireKind::Read => LockKind::Read,
        WireKind::Write => LockKind::Write,
    }
}

fn wire_kind(kind: LockKind) -> WireKind {
    match kind {
        LockKind::Read => WireKind::Read,
        LockKind::Write => WireKind::Write,
    }
}

fn range(wire: LockRange) -> ByteRange {
    ByteRange {
        start: wire.start,
        end: wire.end,
    }
}

fn expired(session: SessionId) -> RemoteError {
    RemoteError::new(
        ErrorKind::NoSession,
        format!("lock session {session:016x} is not open (expired, closed, or the master restarted): its locks are gone"),
    )
}

impl Sessions {
    pub fn new(lease: Duration) -> Sessions {
        Sessions {
            lease,
            renewed: HashMap::new(),
            owners: HashMap::new(),
            table: LockTable::new(),
            holds: HashMap::new(),
            grace_until: None,
        }
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// A restart: until `until`, locks are only reclaimed.
    pub fn start_grace(&mut self, until: Instant) {
        self.grace_until = Some(until);
    }

    /// Drops sessions not renewed within the lease, with their locks.
    fn sweep(&mut self, now: Instant) {
        let lease = self.lease;
        let gone: Vec<SessionId> = self
            .renewed
            .iter()
            .filter(|(_, &renewed)| now.saturating_duration_since(renewed) > lease)
            .map(|(&session, _)| session)
            .collect();
        for session in gone {
            self.renewed.remove(&session);
            self.owners.remove(&session);
            let held = self.holds.remove(&session).map_or(0, |held| held.len());
            let locks = self.table.release_session(session);
            tracing::info!(
                session = format!("{session:016x}"),
                locks,
                held,
                "lock session expired: its locks and open files are released"
            );
        }
    }

    fn check_open(&mut self, session: SessionId, now: Instant) -> Result<(), RemoteError> {
        self.sweep(now);
        if self.renewed.contains_key(&session) {
            Ok(())
        } else {
            Err(expired(session))
        }
    }

    /// Refuses `who` a session another identity opened (a session's id is
    /// all its requests carry). An unknown session passes here: the
    /// request itself says it expired.
    pub fn check_owner(&self, session: SessionId, who: &str) -> Result<(), RemoteError> {
        match self.owners.get(&session) {
            Some(owner) if owner != who => Err(RemoteError::new(
                ErrorKind::PermissionDenied,
                format!(
                    "lock session {session:016x} is {}'s, not {}'s",
                    shown(owner),
                    shown(who)
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Opens a session for `owner` with the id `drawn` (random, never 0).
    pub fn open(
        &mut self,
        drawn: SessionId,
        owner: String,
        now: Instant,
    ) -> Result<MasterResponse, RemoteError> {
        self.sweep(now);
        if self.renewed.len() >= SESSIONS_MAX {
            return Err(RemoteError::new(
                ErrorKind::Busy,
                format!("{SESSIONS_MAX} lock sessions are open already"),
            ));
        }
        let session = drawn.max(1);
        self.renewed.insert(session, now);
        self.owners.insert(session, owner);
        Ok(MasterResponse::Session {
            session,
            lease_ms: u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX),
        })
    }

    pub fn renew(&mut self, session: SessionId, now: Instant) -> Result<(), RemoteError> {
        self.check_open(session, now)?;
        self.renewed.insert(session, now);
        Ok(())
    }

    pub fn close(&mut self, session: SessionId) {
        self.owners.remove(&session);
        if self.renewed.remove(&session).is_some() {
            self.table.release_session(session);
        }
        self.holds.remove(&session);
    }

    /// `session` has the file `inode` open.
    pub fn hold(
        &mut self,
        session: SessionId,
        inode: u64,
        now: Instant,
    ) -> Result<(), RemoteError> {
        self.check_open(session, now)?;
        let held = self.holds.entry(session).or_default();
        if held.len() >= HOLDS_PER_SESSION_MAX && !held.contains(&inode) {
            return Err(RemoteError::new(
                ErrorKind::Busy,
                format!("session {session:016x} holds {HOLDS_PER_SESSION_MAX} files open already"),
            ));
        }
        held.insert(inode);
        Ok(())
    }

    /// `session` closed the file `inode`. A session gone already held
    /// nothing: not an error.
    pub fn unhold(&mut self, session: SessionId, inode: u64, now: Instant) {
        self.sweep(now);
        if let Some(held) = self.holds.get_mut(&session) {
            held.remove(&inode);
            if held.is_empty() {
                self.holds.remove(&session);
            }
        }
    }

    /// True when a live session holds the file `inode` open.
    pub fn is_held(&mut self, inode: u64, now: Instant) -> bool {
        self.sweep(now);
        self.holds.values().any(|held| held.contains(&inode))
    }

    /// Every file a live session holds open.
    pub fn held(&mut self, now: Instant) -> HashSet<u64> {
        self.sweep(now);
        self.holds.values().flatten().copied().collect()
    }

    /// Takes or (with `kind` None) drops a lock: `Ok`, or `LockConflict`.
    pub fn lock(
        &mut self,
        session: SessionId,
        inode: u64,
        owner: u64,
        wanted: Option<WireKind>,
        wire_range: LockRange,
        now: Instant,
    ) -> Result<MasterResponse, RemoteError> {
        self.check_open(session, now)?;
        let holder = LockOwner { session, owner };
        let Some(wanted) = wanted else {
            self.table
                .unlock(inode, holder, Flavor::Posix, range(wire_range));
            return Ok(MasterResponse::Ok);
        };
        if let Some(until) = self.grace_until.filter(|until| now < *until) {
            return Err(RemoteError::new(
                ErrorKind::Starting,
                format!(
                    "the master restarted: locks held before are being taken again for {} ms more; new ones wait",
                    until.saturating_duration_since(now).as_millis()
                ),
            ));
        }
        self.take(inode, holder, wanted, wire_range)
    }

    /// Takes again a lock held before the master restarted (allowed in the
    /// grace after the restart, and an ordinary lock after it).
    pub fn reclaim(
        &mut self,
        session: SessionId,
        inode: u64,
        owner: u64,
        wanted: WireKind,
        wire_range: LockRange,
        now: Instant,
    ) -> Result<MasterResponse, RemoteError> {
        self.check_open(session, now)?;
        self.take(inode, LockOwner { session, owner }, wanted, wire_range)
    }

    fn take(
        &mut self,
        inode: u64,
        holder: LockOwner,
        wanted: WireKind,
        wire_range: LockRange,
    ) -> Result<MasterResponse, RemoteError> {
        match self.table.lock(
            inode,
            holder,
            Flavor::Posix,
            kind(wanted),
            range(wire_range),
        ) {
            Ok(()) => Ok(MasterResponse::Ok),
            Err(LockError::Conflict(conflict)) => Ok(MasterResponse::LockConflict {
                session: conflict.holder.session,
                owner: conflict.holder.owner,
                kind: wire_kind(conflict.kind),
                range: LockRange {
                    start: conflict.range.start,
                    end: conflict.range.end,
                },
            }),
            Err(error @ LockError::TooMany { .. }) => {
                Err(RemoteError::new(ErrorKind::Busy, error.to_string()))
            }
            Err(error @ LockError::InvalidRange(_)) => Err(RemoteError::new(
                ErrorKind::InvalidArgument,
                error.to_string(),
            )),
        }
    }

    /// The lock that would stop `lock`: `LockConflict`, or `Ok`.
    pub fn test(
        &mut self,
        session: SessionId,
        inode: u64,
        owner: u64,
        wanted: WireKind,
        wire_range: LockRange,
        now: Instant,
    ) -> Result<MasterResponse, RemoteError> {
        self.check_open(session, now)?;
        let holder = LockOwner { session, owner };
        let found = self.table.test(
            inode,
            holder,
            Flavor::Posix,
            kind(wanted),
            range(wire_range),
        );
        Ok(match found {
            Some(conflict) => MasterResponse::LockConflict {
                session: conflict.holder.session,
                owner: conflict.holder.owner,
                kind: wire_kind(conflict.kind),
                range: LockRange {
                    start: conflict.range.start,
                    end: conflict.range.end,
                },
            },
            None => MasterResponse::Ok,
        })
    }

    /// Drops every lock of `owner` on `inode`.
    pub fn release(
        &mut self,
        session: SessionId,
        inode: u64,
        owner: u64,
        now: Instant,
    ) -> Result<(), RemoteError> {
        self.check_open(session, now)?;
        self.table
            .release_owner(inode, LockOwner { session, owner });
        Ok(())
    }

    /// Locks held in all.
    pub fn lock_count(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHOLE: LockRange = LockRange {
        start: 0,
        end: u64::MAX,
    };

    fn session_of(response: MasterResponse) -> SessionId {
        match response {
            MasterResponse::Session { session, .. } => session,
            other => panic!("not a session: {other:?}"),
        }
    }

    #[test]
    fn a_session_not_renewed_in_time_loses_its_locks_to_the_next_asker() {
        let start = Instant::now();
        let lease = Duration::from_secs(10);
        let mut sessions = Sessions::new(lease);
        let a = session_of(sessions.open(7, String::new(), start).expect("open"));
        let b = session_of(sessions.open(8, String::new(), start).expect("open"));
        let write = Some(WireKind::Write);
        assert_eq!(
            sessions.lock(a, 5, 1, write, WHOLE, start),
            Ok(MasterResponse::Ok)
        );
        assert!(matches!(
            sessions.lock(b, 5, 1, write, WHOLE, start),
            Ok(MasterResponse::LockConflict { session, .. }) if session == a
        ));
        // b renews, a does not: past the lease, a's lock is gone.
        let later = start + lease / 2;
        sessions.renew(b, later).expect("renew");
        let past = start + lease + Duration::from_secs(1);
        assert_eq!(
            sessions.lock(b, 5, 1, write, WHOLE, past),
            Ok(MasterResponse::Ok)
        );
        assert_eq!(sessions.lock_count(), 1);
        let error = sessions.renew(a, past).expect_err("expired");
        assert!(error.message.contains("not open"), "{error:?}");
        assert!(sessions.lock(a, 5, 1, write, WHOLE, past).is_err());
    }

    #[test]
    fn tests_unlocks_releases_and_closes() {
        let now = Instant::now();
        let mut sessions = Sessions::new(Duration::from_secs(10));
        let a = session_of(sessions.open(1, String::new(), now).expect("open"));
        let b = session_of(sessions.open(2, String::new(), now).expect("open"));
        let head = LockRange { start: 0, end: 100 };
        let tail = LockRange {
            start: 100,
            end: 200,
        };
        assert_eq!(
            sessions.lock(a, 9, 1, Some(WireKind::Read), head, now),
            Ok(MasterResponse::Ok)
        );
        // Readers share; a writer is told who is in the way.
        assert_eq!(
            sessions.test(b, 9, 1, WireKind::Read, head, now),
            Ok(MasterResponse::Ok)
        );
        assert_eq!(
            sessions.test(b, 9, 1, WireKind::Write, WHOLE, now),
            Ok(MasterResponse::LockConflict {
                session: a,
                owner: 1,
                kind: WireKind::Read,
                range: head
            })
        );
        assert_eq!(
            sessions.test(b, 9, 1, WireKind::Write, tail, now),
            Ok(MasterResponse::Ok)
        );
        // An unlock, a release (close) and a closed session all free.
        sessions.lock(a, 9, 1, None, head, now).expect("unlock");
        assert_eq!(sessions.lock_count(), 0);
        sessions
            .lock(a, 9, 2, Some(WireKind::Write), head, now)
            .expect("lock");
        sessions.release(a, 9, 2, now).expect("release");
        assert_eq!(sessions.lock_count(), 0);
        sessions
            .lock(a, 9, 3, Some(WireKind::Write), head, now)
            .expect("lock");
        sessions.close(a);
        assert_eq!(sessions.lock_count(), 0);
        assert!(sessions.renew(a, now).is_err());
        // A bad range is the caller's error, not a conflict.
        let backwards = LockRange { start: 5, end: 1 };
        let error = sessions
            .lock(b, 9, 1, Some(WireKind::Write), backwards, now)
            .expect_err("invalid");
        assert_eq!(error.kind, ErrorKind::InvalidArgument);
    }

    #[test]
    fn after_a_restart_only_reclaims_lock_until_the_grace_ends() {
        let start = Instant::now();
        let lease = Duration::from_secs(10);
        let mut sessions = Sessions::new(lease);
        sessions.start_grace(start + lease);
        let a = session_of(sessions.open(7, String::new(), start).expect("open"));
        let b = session_of(sessions.open(8, String::new(), start).expect("open"));
        let write = Some(WireKind::Write);
        let refused = sessions
            .lock(b, 5, 1, write, WHOLE, start)
            .expect_err("in grace");
        assert_eq!(refused.kind, ErrorKind::Starting);
        assert!(refused.message.contains("restarted"), "{}", refused.message);
        assert_eq!(
            sessions.reclaim(a, 5, 1, WireKind::Write, WHOLE, start),
            Ok(MasterResponse::Ok)
        );
        // Unlocking is never held up.
        assert_eq!(
            sessions.lock(b, 6, 1, None, WHOLE, start),
            Ok(MasterResponse::Ok)
        );
        // After the grace, a new lock meets the reclaimed one.
        let after = start + lease + Duration::from_millis(1);
        sessions.renew(a, start + lease / 2).expect("renew");
        sessions.renew(b, start + lease / 2).expect("renew");
        assert!(matches!(
            sessions.lock(b, 5, 1, write, WHOLE, after),
            Ok(MasterResponse::LockConflict { session, .. }) if session == a
        ));
    }

    #[test]
    fn a_session_is_used_only_by_the_identity_that_opened_it() {
        let mut sessions = Sessions::new(Duration::from_secs(30));
        let now = Instant::now();
        let session = session_of(sessions.open(9, "host ws1".to_string(), now).expect("open"));
        sessions.check_owner(session, "host ws1").expect("its own");
        let error = sessions
            .check_owner(session, "user mallory")
            .expect_err("another identity");
        assert_eq!(error.kind, ErrorKind::PermissionDenied);
        assert!(error.message.contains("host ws1"), "{}", error.message);
        sessions
            .check_owner(session, "")
            .expect_err("an anonymous client");
        sessions.close(session);
        sessions
            .check_owner(session, "user mallory")
            .expect("closed: the request itself says so");
    }
}
