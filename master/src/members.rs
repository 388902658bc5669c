//! Which connections speak for which minion, and for which client. With a
//! cluster key (`dfs_engine::auth`), a request that speaks for a minion
//! (registers it, heartbeats, reports its blocks, bad replicas or failed
//! directories) is answered only on a connection where that minion proved
//! the key, so no one else can add minions, report blocks for them, take
//! their commands or speak for a live one. Every other request is answered
//! only on a connection where a client proved an identity
//! (`dfs_engine::identity`): a member or a host asserts its callers' users,
//! a user identity's requests are made as that user. Without a key every
//! connection may do anything, as may anonymous clients of a keyed master
//! run `--insecure`.
//!
//! Soft state: each connection's binding goes with the connection. Pure:
//! no I/O, no clock; the service owns one behind a lock.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use std::borrow::Cow;

use dfs_engine::auth::{
    bound_nonce, random_bytes, ClusterKey, KEY_BYTES, NONCE_BYTES, PROOF_BYTES, PROOF_NEEDS_TLS,
};
use dfs_engine::identity;
use dfs_engine::msg::{
    ClientPrincipal, Credentials, ErrorKind, MasterRequest, MasterResponse, MinionId, RemoteError,
};
use dfs_engine::tls::BINDING_BYTES;

use crate::service::ConnectionId;

/// A challenge sent on a connection, waiting for the minion's proof.
struct Pending {
    minion: MinionId,
    minion_nonce: Vec<u8>,
    /// The master's nonce bound to the connection's TLS session.
    master_nonce: Vec<u8>,
}

/// A client's challenge, waiting for its proof.
struct PendingClient {
    principal: ClientPrincipal,
    key: [u8; KEY_BYTES],
    client_nonce: Vec<u8>,
    /// The master's nonce bound to the connection's TLS session.
    master_nonce: Vec<u8>,
}

pub struct Members {
    key: Option<ClusterKey>,
    /// Clients that proved no identity are served as they assert
    /// (`--insecure` with a key).
    anonymous_allowed: bool,
    /// The channel binding of each connection that runs TLS.
    channels: HashMap<ConnectionId, [u8; BINDING_BYTES]>,
    pending: HashMap<ConnectionId, Pending>,
    bound: HashMap<ConnectionId, MinionId>,
    pending_clients: HashMap<ConnectionId, PendingClient>,
    clients: HashMap<ConnectionId, ClientPrincipal>,
    /// Minions a refusal was logged for: once each, not once per
    /// connection a refused minion retries on (at most
    /// `WARNED_MINIONS_MAX`; then the set starts again).
    warned: HashSet<MinionId>,
    /// Client principals a wrong proof was logged for, the same way.
    warned_clients: HashSet<String>,
}

/// Minions whose refusals are remembered as logged.
const WARNED_MINIONS_MAX: usize = 1024;

/// Why a keyed master refuses a client that proved no identity.
pub const NO_IDENTITY_MESSAGE: &str = "this cluster serves only clients that prove an identity: \
     give this client an identity file ($DFS_IDENTITY, ~/.config/dfs/identity, \
     or /etc/dfs/host.identity for root) made by `dfs admin user add` or `dfs admin host add`";

/// How refusals and logs name a client principal.
pub fn principal_name(principal: &ClientPrincipal) -> String {
    match principal {
        ClientPrincipal::Member => "the cluster key".into(),
        ClientPrincipal::Host { name, .. } => format!("host {name}"),
        ClientPrincipal::User { name, .. } => format!("user {name}"),
    }
}

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
    /// Members of the cluster of `key` (none: an insecure cluster);
    /// `anonymous_allowed` serves clients that prove no identity.
    pub fn new(key: Option<ClusterKey>, anonymous_allowed: bool) -> Members {
        Members {
            anonymous_allowed: anonymous_allowed || key.is_none(),
            key,
            channels: HashMap::new(),
            pending: HashMap::new(),
            bound: HashMap::new(),
            pending_clients: HashMap::new(),
            clients: HashMap::new(),
            warned: HashSet::new(),
            warned_clients: HashSet::new(),
        }
    }

    /// `connection` runs TLS with this channel binding: proofs on it must
    /// cover it.
    pub fn channel_opened(&mut self, connection: ConnectionId, binding: [u8; BINDING_BYTES]) {
        self.channels.insert(connection, binding);
    }

    /// A fresh nonce for a challenge on `connection`, and that nonce bound
    /// to its TLS session (refused on a connection without TLS).
    fn fresh_nonce(
        &self,
        connection: ConnectionId,
    ) -> Result<([u8; NONCE_BYTES], Vec<u8>), RemoteError> {
        let Some(binding) = self.channels.get(&connection) else {
            return Err(refused(PROOF_NEEDS_TLS.into()));
        };
        let nonce: [u8; NONCE_BYTES] =
            random_bytes().map_err(|e| RemoteError::new(ErrorKind::Internal, e.to_string()))?;
        Ok((nonce, bound_nonce(&nonce, binding)))
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
        let (sent_nonce, master_nonce) = self.fresh_nonce(connection)?;
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
            nonce: sent_nonce.to_vec(),
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
            // Not a guess at the key: not counted against the address.
            return Err(RemoteError::new(
                ErrorKind::InvalidArgument,
                "a proof with no challenge on this connection: send Authenticate first",
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

    /// `AuthenticateClient` for `principal` with its `nonce` on
    /// `connection`: the master's nonce and proof, to be answered by
    /// `ProveClient`.
    pub fn challenge_client(
        &mut self,
        connection: ConnectionId,
        principal: ClientPrincipal,
        nonce: &[u8],
    ) -> Result<MasterResponse, RemoteError> {
        let Some(cluster) = &self.key else {
            return Err(refused(
                "this master has no cluster key (--key): it issued no identities; run the client without one (unset DFS_IDENTITY)".into(),
            ));
        };
        if nonce.len() != NONCE_BYTES {
            return Err(RemoteError::new(
                ErrorKind::InvalidArgument,
                format!("a nonce of {} bytes (must be {NONCE_BYTES})", nonce.len()),
            ));
        }
        identity::check_principal(&principal)
            .map_err(|why| RemoteError::new(ErrorKind::InvalidArgument, why))?;
        let (sent_nonce, master_nonce) = self.fresh_nonce(connection)?;
        let key = identity::principal_key(cluster, &principal);
        let proof = identity::master_proof(&key, nonce, &master_nonce);
        self.clients.remove(&connection);
        self.pending_clients.insert(
            connection,
            PendingClient {
                principal,
                key,
                client_nonce: nonce.to_vec(),
                master_nonce,
            },
        );
        Ok(MasterResponse::Challenge {
            nonce: sent_nonce.to_vec(),
            proof: proof.to_vec(),
        })
    }

    /// `ProveClient` on `connection`: binds it to the principal challenged
    /// there when `proof` is right. A challenge is answered once.
    pub fn prove_client(
        &mut self,
        connection: ConnectionId,
        proof: &[u8],
    ) -> Result<ClientPrincipal, RemoteError> {
        let Some(pending) = self.pending_clients.remove(&connection) else {
            // Not a guess at a key: not counted against the address.
            return Err(RemoteError::new(
                ErrorKind::InvalidArgument,
                "a proof with no challenge on this connection: send AuthenticateClient first",
            ));
        };
        let right = proof.len() == PROOF_BYTES
            && identity::is_client_proof(
                &pending.key,
                proof,
                &pending.client_nonce,
                &pending.master_nonce,
            );
        if !right {
            let name = principal_name(&pending.principal);
            if self.warned_clients.len() >= WARNED_MINIONS_MAX {
                self.warned_clients.clear();
            }
            if self.warned_clients.insert(name.clone()) {
                tracing::warn!(
                    "refused a client on connection {connection}: a wrong proof of the identity of {name} (logged once)"
                );
            }
            return Err(refused(format!(
                "{name}: wrong proof of the identity (was it issued by this cluster's key, and is it the identity file as issued?)"
            )));
        }
        self.clients.insert(connection, pending.principal.clone());
        Ok(pending.principal)
    }

    /// The credentials a client's request on `connection` is served with:
    /// as asserted for a member, a host, a proven minion or (when allowed)
    /// an anonymous client; a user identity's own name and groups; refused
    /// for anyone else.
    pub fn credentials<'a>(
        &self,
        connection: ConnectionId,
        asserted: &'a Credentials,
    ) -> Result<Cow<'a, Credentials>, RemoteError> {
        match self.clients.get(&connection) {
            Some(ClientPrincipal::User { name, groups, .. }) => Ok(Cow::Owned(Credentials {
                user: name.clone(),
                groups: groups.clone(),
                token: asserted.token.clone(),
            })),
            Some(ClientPrincipal::Member | ClientPrincipal::Host { .. }) => {
                Ok(Cow::Borrowed(asserted))
            }
            None if self.anonymous_allowed || self.bound.contains_key(&connection) => {
                Ok(Cow::Borrowed(asserted))
            }
            None => Err(refused(NO_IDENTITY_MESSAGE.into())),
        }
    }

    /// How the identity proved on `connection` is named (empty without
    /// one): lock sessions belong to it.
    pub fn principal_of(&self, connection: ConnectionId) -> String {
        self.clients
            .get(&connection)
            .map_or_else(String::new, principal_name)
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
        self.channels.remove(&connection);
        self.pending.remove(&connection);
        self.bound.remove(&connection);
        self.pending_clients.remove(&connection);
        self.clients.remove(&connection);
    }
}

/// Failed proofs of one identity (a minion's membership, a client's
/// principal) an address may make in `AUTH_FAILURE_WINDOW` before it may
/// not try that identity again until the window has passed.
pub const AUTH_FAILURES_MAX: usize = 10;
/// The window failed proofs are counted in.
pub const AUTH_FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Provers whose failures are remembered at most (the oldest go first).
const AUTH_FAILURE_PROVERS_MAX: usize = 4096;

/// Who tries to prove an identity: the address and the identity it claims
/// (`prover_name`). Counting by both means a user who keeps failing on a
/// shared workstation holds off only their own tries, not its other users
/// or its mount.
pub type Prover = (IpAddr, String);

/// The identity `request` starts proving, as failures are counted by it.
pub fn prover_name(request: &MasterRequest) -> Option<String> {
    match request {
        MasterRequest::Authenticate { minion, .. } => Some(format!("minion {minion}")),
        MasterRequest::AuthenticateClient { principal, .. } => Some(principal_name(principal)),
        _ => None,
    }
}

/// Failed proofs per prover, so that guessing at a key is slowed to
/// `AUTH_FAILURES_MAX` a minute for each identity from each address.
/// Bounded.
#[derive(Default)]
pub struct AuthFailures {
    recent: HashMap<Prover, VecDeque<Instant>>,
    /// Provers in the order of their first remembered failure.
    order: VecDeque<Prover>,
}

impl AuthFailures {
    /// `prover` failed a proof at `now`.
    pub fn record(&mut self, prover: Prover, now: Instant) {
        if !self.recent.contains_key(&prover) {
            if self.order.len() >= AUTH_FAILURE_PROVERS_MAX {
                if let Some(oldest) = self.order.pop_front() {
                    self.recent.remove(&oldest);
                }
            }
            self.order.push_back(prover.clone());
        }
        let times = self.recent.entry(prover).or_default();
        times.push_back(now);
        while times.len() > AUTH_FAILURES_MAX {
            times.pop_front();
        }
    }

    /// True when `prover` failed `AUTH_FAILURES_MAX` proofs within the
    /// window before `now`.
    pub fn is_limited(&self, prover: &Prover, now: Instant) -> bool {
        self.recent.get(prover).is_some_and(|times| {
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

    /// The channel binding of connection 1's TLS session in these tests.
    const BINDING: [u8; BINDING_BYTES] = [3; BINDING_BYTES];

    fn register(minion: u64) -> MasterRequest {
        MasterRequest::Heartbeat {
            minion: MinionId(minion),
            capacity_bytes: 0,
            used_bytes: 0,
            available_bytes: 0,
            block_count: 0,
            traffic: Default::default(),
        }
    }

    #[test]
    fn only_a_connection_that_proved_the_key_speaks_for_its_minion() {
        let key = ClusterKey::generate().expect("key");
        let mut members = Members::new(Some(key.clone()), false);
        let minion = MinionId(5);
        assert_eq!(speaks_for(&register(5)), Some(minion));
        let error = members.check(1, minion).expect_err("not proven");
        assert_eq!(error.kind, ErrorKind::PermissionDenied);
        assert!(error.message.contains("--key"), "{}", error.message);

        let nonce = [9u8; NONCE_BYTES];
        let error = members
            .challenge(1, minion, &nonce)
            .expect_err("no TLS on the connection");
        assert_eq!(error.kind, ErrorKind::PermissionDenied);
        assert!(error.message.contains("only over TLS"), "{}", error.message);
        members.channel_opened(1, BINDING);
        let Ok(MasterResponse::Challenge {
            nonce: master_nonce,
            proof,
        }) = members.challenge(1, minion, &nonce)
        else {
            panic!("a challenge");
        };
        let master_nonce = bound_nonce(&master_nonce, &BINDING);
        assert!(key.is_master_proof(&proof, minion, &nonce, &master_nonce));
        // A wrong proof is refused, and the challenge is spent.
        let other = ClusterKey::generate().expect("key");
        let wrong = other.minion_proof(minion, &nonce, &master_nonce);
        members.prove(1, &wrong).expect_err("wrong key");
        let right = key.minion_proof(minion, &nonce, &master_nonce);
        members.prove(1, &right).expect_err("spent");

        // A proof made on another TLS session (a meddler's) is refused.
        let Ok(MasterResponse::Challenge {
            nonce: master_nonce,
            ..
        }) = members.challenge(1, minion, &nonce)
        else {
            panic!("a challenge");
        };
        let relayed = key.minion_proof(minion, &nonce, &bound_nonce(&master_nonce, &[7; 32]));
        members
            .prove(1, &relayed)
            .expect_err("another session's proof");

        let Ok(MasterResponse::Challenge {
            nonce: master_nonce,
            ..
        }) = members.challenge(1, minion, &nonce)
        else {
            panic!("a challenge");
        };
        let right = key.minion_proof(minion, &nonce, &bound_nonce(&master_nonce, &BINDING));
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
    fn a_prover_that_keeps_failing_is_held_off_for_the_window() {
        let mut failures = AuthFailures::default();
        let workstation: IpAddr = "10.0.0.9".parse().expect("ip");
        let guesser: Prover = (workstation, "user mallory".into());
        let same_address: Prover = (workstation, "host ws9".into());
        let elsewhere: Prover = ("10.0.0.8".parse().expect("ip"), "user mallory".into());
        let start = Instant::now();
        for second in 0..AUTH_FAILURES_MAX as u64 {
            assert!(!failures.is_limited(&guesser, start));
            failures.record(guesser.clone(), start + Duration::from_secs(second));
        }
        let last = start + Duration::from_secs(AUTH_FAILURES_MAX as u64);
        assert!(failures.is_limited(&guesser, last));
        assert!(
            !failures.is_limited(&same_address, last),
            "other identities from that address go on"
        );
        assert!(!failures.is_limited(&elsewhere, last), "only that address");
        assert!(
            !failures.is_limited(&guesser, start + AUTH_FAILURE_WINDOW),
            "free again once the first failure is a window old"
        );
        // Bounded: the oldest provers are forgotten first.
        for index in 0..AUTH_FAILURE_PROVERS_MAX as u32 {
            failures.record((IpAddr::from(index.to_be_bytes()), String::new()), last);
        }
        assert!(!failures.is_limited(&guesser, last));
        assert!(failures.recent.len() <= AUTH_FAILURE_PROVERS_MAX);
    }

    #[test]
    fn a_client_is_served_as_the_identity_it_proved_and_only_then() {
        use dfs_engine::identity::Identity;
        let key = ClusterKey::generate().expect("key");
        let mut members = Members::new(Some(key.clone()), false);
        let asserted = Credentials {
            user: "root".into(),
            groups: vec!["root".into()],
            token: vec![1],
        };
        let error = members.credentials(1, &asserted).expect_err("anonymous");
        assert!(
            error.message.contains("prove an identity"),
            "{}",
            error.message
        );

        let ann = ClientPrincipal::User {
            name: "ann".into(),
            groups: vec!["staff".into()],
            issued_s: 1,
        };
        let identity = Identity::issue(&key, ann.clone()).expect("issue");
        members.channel_opened(1, BINDING);
        let prove = |members: &mut Members, identity: &Identity, wrong: bool| {
            let nonce = [4u8; NONCE_BYTES];
            let Ok(MasterResponse::Challenge {
                nonce: master_nonce,
                proof,
            }) = members.challenge_client(1, identity.principal().clone(), &nonce)
            else {
                panic!("a challenge");
            };
            let master_nonce = bound_nonce(&master_nonce, &BINDING);
            assert!(identity.is_master_proof(&proof, &nonce, &master_nonce));
            let mut answer = identity.client_proof(&nonce, &master_nonce);
            if wrong {
                answer[0] ^= 1;
            }
            members.prove_client(1, &answer)
        };
        prove(&mut members, &identity, true).expect_err("a wrong proof");
        members
            .credentials(1, &asserted)
            .expect_err("still anonymous");
        members
            .prove_client(1, &[0; PROOF_BYTES])
            .expect_err("the challenge is spent");
        assert_eq!(prove(&mut members, &identity, false).expect("proved"), ann);
        let served = members.credentials(1, &asserted).expect("ann");
        assert_eq!(
            (
                served.user.as_str(),
                served.groups.as_slice(),
                served.token.as_slice()
            ),
            ("ann", &["staff".to_string()][..], &[1u8][..])
        );
        members
            .credentials(2, &asserted)
            .expect_err("only on its connection");
        // A host asserts its callers; the binding goes with the connection.
        let host = ClientPrincipal::Host {
            name: "ws1".into(),
            issued_s: 1,
        };
        let identity = Identity::issue(&key, host).expect("issue");
        prove(&mut members, &identity, false).expect("proved");
        assert_eq!(*members.credentials(1, &asserted).expect("host"), asserted);
        members.closed(1);
        members.credentials(1, &asserted).expect_err("closed");
        // Bad principals are refused before anything is derived.
        let bad = ClientPrincipal::User {
            name: "a b".into(),
            groups: Vec::new(),
            issued_s: 0,
        };
        let error = members
            .challenge_client(3, bad, &[0u8; NONCE_BYTES])
            .expect_err("a name with a space");
        assert_eq!(error.kind, ErrorKind::InvalidArgument);
        // `--insecure` serves anonymous clients as they say.
        let insecure = Members::new(Some(key), true);
        assert_eq!(
            *insecure.credentials(1, &asserted).expect("served"),
            asserted
        );
    }

    #[test]
    fn without_a_key_everyone_may_and_no_one_can_authenticate() {
        let mut members = Members::new(None, false);
        assert!(!members.required());
        members.check(1, MinionId(5)).expect("insecure cluster");
        members
            .challenge(1, MinionId(5), &[0u8; NONCE_BYTES])
            .expect_err("no key to prove");
    }
}
