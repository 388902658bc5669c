//! File locks that hold across workstations: a lock session per mount
//! (renewed within its lease, or its locks go), and byte-range locks the
//! master arbitrates. Every call is idempotent for its owner (taking a lock
//! held already, dropping one not held), so each is sent again as long as
//! the master is down or starting.

use std::time::Duration;

use dfs_engine::msg::{LockKind, LockRange, MasterRequest, MasterResponse};
use dfs_engine::Result;

use crate::client::{unexpected, Client};

/// A lock in the way: its holder (session and owner), kind and range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockConflict {
    pub session: u64,
    pub owner: u64,
    pub kind: LockKind,
    pub range: LockRange,
}

fn conflict_or_none(what: &str, response: MasterResponse) -> Result<Option<LockConflict>> {
    match response {
        MasterResponse::Ok => Ok(None),
        MasterResponse::LockConflict {
            session,
            owner,
            kind,
            range,
        } => Ok(Some(LockConflict {
            session,
            owner,
            kind,
            range,
        })),
        other => Err(unexpected(what, &other)),
    }
}

impl Client {
    /// Opens a lock session: its id and how long it lasts unrenewed.
    pub fn open_lock_session(&mut self) -> Result<(u64, Duration)> {
        match self.call_read_only(MasterRequest::OpenSession)? {
            MasterResponse::Session { session, lease_ms } => {
                Ok((session, Duration::from_millis(lease_ms)))
            }
            other => Err(unexpected("OpenSession", &other)),
        }
    }

    /// Keeps a session's locks; an error says it expired (they are gone).
    pub fn renew_lock_session(&mut self, session: u64) -> Result<()> {
        match self.call_read_only(MasterRequest::RenewSession { session })? {
            MasterResponse::Ok => Ok(()),
            other => Err(unexpected("RenewSession", &other)),
        }
    }

    /// Ends a session, dropping its locks.
    pub fn close_lock_session(&mut self, session: u64) -> Result<()> {
        match self.call_read_only(MasterRequest::CloseSession { session })? {
            MasterResponse::Ok => Ok(()),
            other => Err(unexpected("CloseSession", &other)),
        }
    }

    /// Says that `session` has the file `inode` open: the master keeps it,
    /// also once its last name is removed, until `release_file`.
    pub fn hold_file(&mut self, session: u64, inode: u64) -> Result<()> {
        match self.call_read_only(MasterRequest::Hold { session, inode })? {
            MasterResponse::Ok => Ok(()),
            other => Err(unexpected("Hold", &other)),
        }
    }

    /// Says that `session` closed the file `inode`.
    pub fn release_file(&mut self, session: u64, inode: u64) -> Result<()> {
        match self.call_read_only(MasterRequest::Release { session, inode })? {
            MasterResponse::Ok => Ok(()),
            other => Err(unexpected("Release", &other)),
        }
    }

    /// Takes (`kind` Some) or drops (None) a lock of `owner` on the file
    /// `inode`; `Some(conflict)` when another owner's lock is in the way.
    pub fn lock(
        &mut self,
        session: u64,
        inode: u64,
        owner: u64,
        kind: Option<LockKind>,
        range: LockRange,
    ) -> Result<Option<LockConflict>> {
        let request = MasterRequest::Lock {
            session,
            inode,
            owner,
            kind,
            range,
        };
        conflict_or_none("Lock", self.call_read_only(request)?)
    }

    /// Takes again a lock held before the master restarted (see
    /// `ReclaimLock`); `Some(conflict)` when another owner has it now.
    pub fn reclaim_lock(
        &mut self,
        session: u64,
        inode: u64,
        owner: u64,
        kind: LockKind,
        range: LockRange,
    ) -> Result<Option<LockConflict>> {
        let request = MasterRequest::ReclaimLock {
            session,
            inode,
            owner,
            kind,
            range,
        };
        conflict_or_none("ReclaimLock", self.call_read_only(request)?)
    }

    /// The lock that would be in the way of `lock`, if one is.
    pub fn test_lock(
        &mut self,
        session: u64,
        inode: u64,
        owner: u64,
        kind: LockKind,
        range: LockRange,
    ) -> Result<Option<LockConflict>> {
        let request = MasterRequest::TestLock {
            session,
            inode,
            owner,
            kind,
            range,
        };
        conflict_or_none("TestLock", self.call_read_only(request)?)
    }

    /// Drops every lock of `owner` on `inode`.
    pub fn release_locks(&mut self, session: u64, inode: u64, owner: u64) -> Result<()> {
        let request = MasterRequest::ReleaseLocks {
            session,
            inode,
            owner,
        };
        match self.call_read_only(request)? {
            MasterResponse::Ok => Ok(()),
            other => Err(unexpected("ReleaseLocks", &other)),
        }
    }
}
