//! Block access tokens: with a cluster key, the master hands a client a
//! token with each block it may read or write, and a minion serves the
//! block only to a request that carries one, checked with no call to the
//! master (as HDFS block access tokens).
//!
//! A token names the user the master answered, the block and generation,
//! the operation, for a write the pipeline the master chose (so a member
//! forwards a write only to the members the token names after it, never
//! to an address a client made up), and when it expires, and carries an
//! HMAC-SHA256 of them
//! under a key derived from the cluster key for the token's epoch (a day):
//! the key that signs changes every epoch, and needs no distribution, as
//! every minion of the cluster holds the cluster key it derives from. A
//! little clock skew between master and minion is tolerated.
//!
//! Tokens travel in `Credentials::token` (one per request) or beside each
//! block of a `WriteBlocks` batch; their bytes are untrusted and decoded
//! with a bound on their size before anything is checked. A minion copying
//! a replica for the master mints its own write token for the pipeline the
//! master named: every member holds the cluster key the tokens derive from.

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::auth::ClusterKey;
use crate::limits::{
    ADDRESS_BYTES_MAX, CONTROL_FRAME_BYTES_MAX, REPLICATION_MAX, WRITE_BATCH_BLOCKS_MAX,
};
use crate::msg::{Credentials, MinionAddress, MinionId, ReplicaId};

/// How long a token is good for.
pub const TOKEN_LIFETIME_MS: u64 = 10 * 60 * 60 * 1000;
/// How far the minion's clock may be behind or ahead of the master's.
pub const TOKEN_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;
/// How long one derived signing key is used.
pub const TOKEN_EPOCH_MS: u64 = 24 * 60 * 60 * 1000;
/// The largest encoded token a minion decodes: a user name is at most 255
/// bytes, and a write's pipeline at most `REPLICATION_MAX` addresses.
pub const TOKEN_BYTES_MAX: usize = 512 + (REPLICATION_MAX as usize) * (10 + ADDRESS_BYTES_MAX + 2);

const DERIVE_LABEL: &[u8] = b"dfs block access tokens v1";

// A `WriteBlocks` request of the most blocks, each with the largest token
// (and 40 bytes of its own fields), and its longest downstream, fits one
// control frame.
const _: () = assert!(
    WRITE_BATCH_BLOCKS_MAX * (TOKEN_BYTES_MAX + 40) + TOKEN_BYTES_MAX
        < CONTROL_FRAME_BYTES_MAX as usize
);

/// What a token allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Access {
    Read,
    /// Store the block and forward it down the pipeline the token names.
    Write,
}

/// A token's contents, as signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Claims {
    user: String,
    replica: ReplicaId,
    access: Access,
    /// The write's pipeline, in order; empty for reads.
    pipeline: Vec<MinionAddress>,
    expires_ms: u64,
    epoch: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Token {
    claims: Claims,
    mac: Vec<u8>,
}

/// Why a token was refused; one line each, naming the block.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("{0}: no block access token (this cluster has a key: ask the master for the block's location again)")]
    Missing(ReplicaId),
    #[error("{0}: the block access token does not decode")]
    Malformed(ReplicaId),
    #[error("{replica}: the block access token is for {named}")]
    WrongBlock {
        replica: ReplicaId,
        named: ReplicaId,
    },
    #[error("{0}: the block access token is for user {1}, not {2}")]
    WrongUser(ReplicaId, String, String),
    #[error("{0}: the block access token does not allow this operation")]
    WrongAccess(ReplicaId),
    #[error("{0}: the block access token names another pipeline ({1})")]
    WrongPipeline(ReplicaId, String),
    #[error("{0}: the block access token expired (ask the master for the block's location again)")]
    Expired(ReplicaId),
    #[error("{0}: the block access token is forged or from another cluster")]
    Forged(ReplicaId),
}

/// The user a request's credentials name, as the master names it in a
/// token: `nobody` for none.
fn user_named(credentials: &Credentials) -> &str {
    if credentials.user.is_empty() {
        "nobody"
    } else {
        &credentials.user
    }
}

/// Mints and checks tokens: the cluster key they derive from.
#[derive(Clone, Debug)]
pub struct TokenKeys {
    key: ClusterKey,
}

impl TokenKeys {
    pub fn new(key: ClusterKey) -> TokenKeys {
        TokenKeys { key }
    }

    fn mac(&self, claims: &Claims) -> Hmac<Sha256> {
        let derived = self.key.derive(DERIVE_LABEL, claims.epoch);
        // Invariant: HMAC takes a key of any length.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&derived)
            .expect("HMAC accepts keys of every length");
        // Invariant: our own claims always encode.
        let bytes = postcard::to_allocvec(claims).expect("claims encode");
        mac.update(&bytes);
        mac
    }

    /// A token for `user` to read `replica`, made at `now_ms` (the
    /// master's clock).
    pub fn mint_read(&self, user: &str, replica: ReplicaId, now_ms: u64) -> Vec<u8> {
        self.mint(user, replica, Access::Read, Vec::new(), now_ms)
    }

    /// A token for `user` to write `replica` down `pipeline` (its first
    /// member first), made at `now_ms`.
    pub fn mint_write(
        &self,
        user: &str,
        replica: ReplicaId,
        pipeline: &[MinionAddress],
        now_ms: u64,
    ) -> Vec<u8> {
        self.mint(user, replica, Access::Write, pipeline.to_vec(), now_ms)
    }

    fn mint(
        &self,
        user: &str,
        replica: ReplicaId,
        access: Access,
        pipeline: Vec<MinionAddress>,
        now_ms: u64,
    ) -> Vec<u8> {
        let claims = Claims {
            user: user.to_string(),
            replica,
            access,
            pipeline,
            expires_ms: now_ms + TOKEN_LIFETIME_MS,
            epoch: now_ms / TOKEN_EPOCH_MS,
        };
        let mac = self.mac(&claims).finalize().into_bytes().to_vec();
        // Invariant: our own token always encodes.
        let token = postcard::to_allocvec(&Token { claims, mac }).expect("token encodes");
        debug_assert!(token.len() <= TOKEN_BYTES_MAX, "a token over its bound");
        token
    }

    /// Checks that the token in `credentials` lets the user they name read
    /// `replica` at `now_ms` (the minion's clock).
    pub fn check_read(
        &self,
        credentials: &Credentials,
        replica: ReplicaId,
        now_ms: u64,
    ) -> Result<(), TokenError> {
        let user = user_named(credentials);
        self.check(&credentials.token, user, replica, Access::Read, now_ms)
            .map(drop)
    }

    /// Checks that `token` lets the user `credentials` name write `replica`
    /// at the minion `me`, forwarding it to `downstream`: the token's
    /// pipeline holds `me`, and exactly `downstream` after it.
    pub fn check_write(
        &self,
        token: &[u8],
        credentials: &Credentials,
        replica: ReplicaId,
        me: MinionId,
        downstream: &[MinionAddress],
        now_ms: u64,
    ) -> Result<(), TokenError> {
        let user = user_named(credentials);
        let claims = self.check(token, user, replica, Access::Write, now_ms)?;
        let named = |what: &str| {
            let members: Vec<String> = claims
                .pipeline
                .iter()
                .map(|member| format!("{}@{}", member.id, member.address))
                .collect();
            TokenError::WrongPipeline(replica, format!("{what}; it names {}", members.join(", ")))
        };
        let Some(position) = claims.pipeline.iter().position(|member| member.id == me) else {
            return Err(named(&format!("not minion {me}")));
        };
        if claims.pipeline[position + 1..] != *downstream {
            return Err(named("not the downstream asked for"));
        }
        Ok(())
    }

    /// Checks `token` for `user`, `replica` and `access` at `now_ms`, and
    /// answers its claims.
    fn check(
        &self,
        token: &[u8],
        user: &str,
        replica: ReplicaId,
        access: Access,
        now_ms: u64,
    ) -> Result<Claims, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing(replica));
        }
        if token.len() > TOKEN_BYTES_MAX {
            return Err(TokenError::Malformed(replica));
        }
        let decoded: Token = match postcard::from_bytes(token) {
            Ok(decoded) => decoded,
            Err(_) => return Err(TokenError::Malformed(replica)),
        };
        let claims = decoded.claims;
        if self.mac(&claims).verify_slice(&decoded.mac).is_err() {
            return Err(TokenError::Forged(replica));
        }
        if claims.replica != replica {
            return Err(TokenError::WrongBlock {
                replica,
                named: claims.replica,
            });
        }
        if claims.user != user {
            return Err(TokenError::WrongUser(
                replica,
                claims.user,
                user.to_string(),
            ));
        }
        if claims.access != access {
            return Err(TokenError::WrongAccess(replica));
        }
        let latest_epoch = (now_ms + TOKEN_CLOCK_SKEW_MS) / TOKEN_EPOCH_MS;
        if claims.expires_ms + TOKEN_CLOCK_SKEW_MS < now_ms || claims.epoch > latest_epoch {
            return Err(TokenError::Expired(replica));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{BlockId, Generation};

    const NOW_MS: u64 = 1_800_000_000_000;
    const REPLICA: ReplicaId = ReplicaId {
        block: BlockId(7),
        generation: Generation(70),
    };

    fn keys() -> TokenKeys {
        TokenKeys::new(ClusterKey::generate().expect("key"))
    }

    fn as_user(user: &str, token: &[u8]) -> Credentials {
        Credentials {
            user: user.into(),
            groups: Vec::new(),
            token: token.to_vec(),
        }
    }

    fn member(id: u64) -> MinionAddress {
        MinionAddress {
            id: MinionId(id),
            address: format!("10.0.0.{id}:7071"),
        }
    }

    #[test]
    fn a_token_opens_its_block_for_its_user_until_it_expires() {
        let keys = keys();
        let token = keys.mint_read("ann", REPLICA, NOW_MS);
        let check = |user: &str, replica: ReplicaId, now_ms: u64| {
            keys.check_read(&as_user(user, &token), replica, now_ms)
        };
        check("ann", REPLICA, NOW_MS).expect("good");
        // A minion's clock a little ahead or behind.
        let later = NOW_MS + TOKEN_LIFETIME_MS + TOKEN_CLOCK_SKEW_MS;
        check("ann", REPLICA, later).expect("within the skew");
        check("ann", REPLICA, NOW_MS - 1000).expect("minion behind");
        assert_eq!(
            check("ann", REPLICA, later + 1),
            Err(TokenError::Expired(REPLICA))
        );
        // Another block, generation or user: refused.
        for other in [
            ReplicaId {
                block: BlockId(8),
                ..REPLICA
            },
            ReplicaId {
                generation: Generation(71),
                ..REPLICA
            },
        ] {
            assert!(matches!(
                check("ann", other, NOW_MS),
                Err(TokenError::WrongBlock { .. })
            ));
        }
        assert!(matches!(
            check("bob", REPLICA, NOW_MS),
            Err(TokenError::WrongUser(..))
        ));
        // Nor does a read token write.
        assert_eq!(
            keys.check_write(
                &token,
                &as_user("ann", &[]),
                REPLICA,
                MinionId(1),
                &[],
                NOW_MS
            ),
            Err(TokenError::WrongAccess(REPLICA))
        );
    }

    #[test]
    fn a_write_token_is_forwarded_only_down_its_own_pipeline() {
        let keys = keys();
        let pipeline = [member(1), member(2), member(3)];
        let token = keys.mint_write("ann", REPLICA, &pipeline, NOW_MS);
        let ann = as_user("ann", &[]);
        let check = |me: u64, downstream: &[MinionAddress]| {
            keys.check_write(&token, &ann, REPLICA, MinionId(me), downstream, NOW_MS)
        };
        check(1, &pipeline[1..]).expect("first member");
        check(2, &pipeline[2..]).expect("second member");
        check(3, &[]).expect("last member");
        // A member not named, a downstream cut short, reordered, extended,
        // or sent to an address the client made up.
        let elsewhere = MinionAddress {
            id: MinionId(2),
            address: "203.0.113.9:22".into(),
        };
        for (me, downstream) in [
            (4, vec![]),
            (1, vec![member(2)]),
            (1, vec![member(3), member(2)]),
            (3, vec![member(4)]),
            (1, vec![elsewhere, member(3)]),
        ] {
            assert!(
                matches!(check(me, &downstream), Err(TokenError::WrongPipeline(..))),
                "{me} -> {downstream:?}"
            );
        }
        // A write token does not read.
        assert_eq!(
            keys.check_read(&as_user("ann", &token), REPLICA, NOW_MS),
            Err(TokenError::WrongAccess(REPLICA))
        );
        // The longest pipeline of the longest addresses fits the bound.
        let longest: Vec<MinionAddress> = (0..REPLICATION_MAX as u64)
            .map(|id| MinionAddress {
                id: MinionId(u64::MAX - id),
                address: "a".repeat(ADDRESS_BYTES_MAX),
            })
            .collect();
        let user = "u".repeat(255);
        let token = keys.mint_write(&user, REPLICA, &longest, NOW_MS);
        assert!(token.len() <= TOKEN_BYTES_MAX, "{} bytes", token.len());
        keys.check_write(
            &token,
            &as_user(&user, &[]),
            REPLICA,
            longest[0].id,
            &longest[1..],
            NOW_MS,
        )
        .expect("the longest token checks");
    }

    #[test]
    fn forged_tampered_missing_and_garbage_tokens_are_refused() {
        let keys = keys();
        let check = |token: &[u8]| keys.check_read(&as_user("ann", token), REPLICA, NOW_MS);
        assert_eq!(check(&[]), Err(TokenError::Missing(REPLICA)));
        assert_eq!(check(&[0xff; 40]), Err(TokenError::Malformed(REPLICA)));
        assert_eq!(
            check(&vec![1; TOKEN_BYTES_MAX + 1]),
            Err(TokenError::Malformed(REPLICA))
        );
        // Another cluster's key.
        let foreign = keys_other().mint_read("ann", REPLICA, NOW_MS);
        assert_eq!(check(&foreign), Err(TokenError::Forged(REPLICA)));
        // Every byte flipped in turn: never accepted.
        let token = keys.mint_read("ann", REPLICA, NOW_MS);
        for index in 0..token.len() {
            let mut tampered = token.clone();
            tampered[index] ^= 0x01;
            assert!(check(&tampered).is_err(), "byte {index} flipped passed");
        }
        // A token of a later epoch than the minion's clock allows.
        let future = keys.mint_read("ann", REPLICA, NOW_MS + 3 * TOKEN_EPOCH_MS);
        assert_eq!(check(&future), Err(TokenError::Expired(REPLICA)));
    }

    fn keys_other() -> TokenKeys {
        keys()
    }
}
