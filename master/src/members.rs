//! Which connections speak for which minion. With a cluster key
//! (`dfs_engine::auth`), a request that speaks for a minion (registers it,
//! heartbeats, reports its blocks, bad replicas or failed directories) is
//! answered only on a connection where that minion proved the key, so no
//! one else can add minions, report blocks for them, take their commands
//! or speak for a live one. Without a key every connection may, as before
//! (an insecure cluster, for tests and `dfs local`).
//!
//! Soft state: each connection's binding goes with the connection. Pure:
//! no I/O, no clock; the service owns one behind a lock.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use dfs_engine::auth::{random_bytes, ClusterKey, NONCE_BYTES, PROOF_BYTES};
use dfs_engine::msg::{ErrorKind, MasterRequest, MasterResponse, MinionId, RemoteError};

use crate::service::ConnectionId;

/// A challenge sent on a connection, waiting for the minion's proof.
struct Pending {
    minion: MinionId,
    minion_nonce: Vec<u8>,
    master_nonce: [u8; NONCE_BYTES],
}

pub struct Members {
    key: Option<ClusterKey>,
    pending: HashMap<ConnectionId, Pending>,
    bound: HashMap<ConnectionId, MinionId>,
    /// Minions a refusal was logged for: once each, not once per
    /// connection a refused minion retries on (at most
    /// `WARNED_MINIONS_MAX`; then the set starts again).
    warned: HashSet<MinionId>,
}

/// Minions whose refusals are remembered as logged.
const WARNED_MINIONS_MAX: usize = 1024;

/// The minion `request` speaks for, if it is one only a member may send.
pub fn speaks_for(request: &MasterRequest) -> Option<MinionId> {
    match request {
        MasterRequest::Register { minion, .. }
        | MasterRequest::Heartbeat { minion, .. }
        | MasterRequest::BlockReport { minion, .. }
        | MasterRequest::BlockChanges { minion, .. }
        | MasterRequest::DataDirectoryFailed { minion, .. } => Some(*minion),
        MasterRequest::ReportBadReplicas { reporter, .. } => *reporter,
        _ => None,
    }
}

fn refused(message: String) -> RemoteError {
    RemoteError::new(ErrorKind::PermissionDenied, message)
}

impl Members {
    pub fn new(key: Option<ClusterKey>) -> Members {
        Members {
            key,
            pending: HashMap::new(),
            bound: HashMap::new(),
            warned: HashSet::new(),
        }
    }

    /// True when minions must prove the cluster key.
    pub fn required(&self) -> bool {
        self.key.is_some()
    }

    /// `Authenticate` from `minion` with its `nonce` on `connection`: the
    /// master's nonce and proof, to be answered by `ProveMember`.
    pub fn challenge(
        &mut self,
        connection: ConnectionId,
        minion: MinionId,
        nonce: &[u8],
    ) -> Result<MasterResponse, RemoteError> {
        let Some(key) = &self.key else {
            return Err(refused(
                "this master has no cluster key (--key): it cannot prove itself to a minion that has one".into(),
            ));
        };
        if nonce.len() != NONCE_BYTES {
            return Err(RemoteError::new(
                ErrorKind::InvalidArgument,
                format!("a nonce of {} bytes (must be {NONCE_BYTES})", nonce.len()),
            ));
        }
        let master_nonce: [u8; NONCE_BYTES] =
            random_bytes().map_err(|e| RemoteError::new(ErrorKind::Internal, e.to_string()))?;
        let proof = key.master_proof(minion, nonce, &master_nonce);
        self.bound.remove(&connection);
        self.pending.insert(
            connection,
            Pending {
                minion,
                minion_nonce: nonce.to_vec(),
                master_nonce,
            },
        );
        Ok(MasterResponse::Challenge {
            nonce: master_nonce.to_vec(),
            proof: proof.to_vec(),
        })
    }

    /// `ProveMember` on `connection`: binds it to the minion challenged
    /// there when `proof` is right. A challenge is answered once.
    pub fn prove(
        &mut self,
        connection: ConnectionId,
        proof: &[u8],
    ) -> Result<MinionId, RemoteError> {
        let (Some(key), Some(pending)) = (&self.key, self.pending.remove(&connection)) else {
            return Err(refused(
                "a proof with no challenge on this connection: send Authenticate first".into(),
            ));
        };
        let right = proof.len() == PROOF_BYTES
            && key.is_minion_proof(
                proof,
                pending.minion,
                &pending.minion_nonce,
                &pending.master_nonce,
            );
        if !right {
            if self.first_warning(pending.minion) {
                tracing::warn!(
                    minion = %pending.minion,
                    "refused a minion on connection {connection}: wrong proof of the cluster key (logged once)"
                );
            }
            return Err(refused(format!(
                "minion {}: wrong proof of the cluster key (is --key this cluster's key?)",
                pending.minion
            )));
        }
        self.bound.insert(connection, pending.minion);
        Ok(pending.minion)
    }

    /// May a request on `connection` speak for `minion`?
    pub fn check(&mut self, connection: ConnectionId, minion: MinionId) -> Result<(), RemoteError> {
        if self.key.is_none() || self.bound.get(&connection) == Some(&minion) {
            return Ok(());
        }
        let message = match self.bound.get(&connection) {
            Some(other) => format!(
                "this connection speaks for minion {other}, not for minion {minion}"
            ),
            None => format!(
                "minion {minion}: not a proven member on this connection: minions of this cluster prove its key first (dfs-minion --key)"
            ),
        };
        if self.first_warning(minion) {
            tracing::warn!("refused on connection {connection}: {message} (logged once)");
        }
        Err(refused(message))
    }

    /// True the first time a refusal of `minion` is to be logged.
    fn first_warning(&mut self, minion: MinionId) -> bool {
        if self.warned.len() >= WARNED_MINIONS_MAX {
            self.warned.clear();
        }
        self.warned.insert(minion)
    }

    /// The connection closed: what it proved goes with it.
    pub fn closed(&mut self, connection: ConnectionId) {
        self.pending.remove(&connection);
        self.bound.remove(&connection);
    }
}

/// Failed proofs of the cluster key an address may make in
/// `AUTH_FAILURE_WINDOW` before its new connections are refused.
pub const AUTH_FAILURES_MAX: usize = 10;
/// The window failed proofs are counted in.
pub const AUTH_FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Addresses whose failures are remembered at most (the oldest go first).
const AUTH_FAILURE_ADDRESSES_MAX: usize = 4096;

/// Failed proofs per address, so that guessing at the key from one
/// address is slowed to `AUTH_FAILURES_MAX` a minute. Bounded.
#[derive(Default)]
pub struct AuthFailures {
    recent: HashMap<IpAddr, VecDeque<Instant>>,
    /// Addresses in the order of their first remembered failure.
    order: VecDeque<IpAddr>,
}

impl AuthFailures {
    /// `address` failed a proof at `now`.
    pub fn record(&mut self, address: IpAddr, now: Instant) {
        if !self.recent.contains_key(&address) {
            if self.order.len() >= AUTH_FAILURE_ADDRESSES_MAX {
                if let Some(oldest) = self.order.pop_front() {
                    self.recent.remove(&oldest);
                }
            }
            self.order.push_back(address);
        }
        let times = self.recent.entry(address).or_default();
        times.push_back(now);
        while times.len() > AUTH_FAILURES_MAX {
            times.pop_front();
        }
    }

    /// True when `address` failed `AUTH_FAILURES_MAX` proofs within the
    /// window before `now`.
    pub fn is_limited(&self, address: IpAddr, now: Instant) -> bool {
        self.recent.get(&address).is_some_and(|times| {
            times.len() >= AUTH_FAILURES_MAX
                && times.front().is_some_and(|first| {
                    now.saturating_duration_since(*first) < AUTH_FAILURE_WINDOW
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(minion: u64) -> MasterRequest {
        MasterRequest::Heartbeat {
            minion: MinionId(minion),
            capacity_bytes: 0,
            used_bytes: 0,
            available_bytes: 0,
            block_count: 0,
        }
    }

    #[test]
    fn only_a_connection_that_proved_the_key_speaks_for_its_minion() {
        let key = ClusterKey::generate().expect("key");
        let mut members = Members::new(Some(key.clone()));
        let minion = MinionId(5);
        assert_eq!(speaks_for(&register(5)), Some(minion));
        let error = members.check(1, minion).expect_err("not proven");
        assert_eq!(error.kind, ErrorKind::PermissionDenied);
        assert!(error.message.contains("--key"), "{}", error.message);

        let nonce = [9u8; NONCE_BYTES];
        let Ok(MasterResponse::Challenge {
            nonce: master_nonce,
            proof,
        }) = members.challenge(1, minion, &nonce)
        else {
            panic!("a challenge");
        };
        assert!(key.is_master_proof(&proof, minion, &nonce, &master_nonce));
        // A wrong proof is refused, and the challenge is spent.
        let other = ClusterKey::generate().expect("key");
        let wrong = other.minion_proof(minion, &nonce, &master_nonce);
        members.prove(1, &wrong).expect_err("wrong key");
        let right = key.minion_proof(minion, &nonce, &master_nonce);
        members.prove(1, &right).expect_err("spent");

        let Ok(MasterResponse::Challenge {
            nonce: master_nonce,
            ..
        }) = members.challenge(1, minion, &nonce)
        else {
            panic!("a challenge");
        };
        let right = key.minion_proof(minion, &nonce, &master_nonce);
        assert_eq!(members.prove(1, &right).expect("proved"), minion);
        members.check(1, minion).expect("bound");
        // Not for another minion, nor on another connection.
        members.check(1, MinionId(6)).expect_err("another minion");
        members.check(2, minion).expect_err("another connection");
        members.closed(1);
        members
            .check(1, minion)
            .expect_err("gone with the connection");
    }

    #[test]
    fn an_address_that_keeps_failing_is_held_off_for_the_window() {
        let mut failures = AuthFailures::default();
        let (guesser, other) = (
            "10.0.0.9".parse().expect("ip"),
            "10.0.0.8".parse().expect("ip"),
        );
        let start = Instant::now();
        for second in 0..AUTH_FAILURES_MAX as u64 {
            assert!(!failures.is_limited(guesser, start));
            failures.record(guesser, start + Duration::from_secs(second));
        }
        let last = start + Duration::from_secs(AUTH_FAILURES_MAX as u64);
        assert!(failures.is_limited(guesser, last));
        assert!(!failures.is_limited(other, last), "only that address");
        assert!(
            !failures.is_limited(guesser, start + AUTH_FAILURE_WINDOW),
            "free again once the first failure is a window old"
        );
        // Bounded: the oldest addresses are forgotten first.
        for index in 0..AUTH_FAILURE_ADDRESSES_MAX as u32 {
            failures.record(IpAddr::from(index.to_be_bytes()), last);
        }
        assert!(!failures.is_limited(guesser, last));
        assert!(failures.recent.len() <= AUTH_FAILURE_ADDRESSES_MAX);
    }

    #[test]
    fn without_a_key_everyone_may_and_no_one_can_authenticate() {
        let mut members = Members::new(None);
        assert!(!members.required());
        members.check(1, MinionId(5)).expect("insecure cluster");
        members
            .challenge(1, MinionId(5), &[0u8; NONCE_BYTES])
            .expect_err("no key to prove");
    }
}
