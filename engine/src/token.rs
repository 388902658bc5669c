//! Block access tokens: with a cluster key, the master hands a client a
//! token with each block it may read, and a minion serves the block only
//! to a request that carries one, checked with no call to the master
//! (as HDFS block access tokens).
//!
//! A token names the user the master answered, the block and generation,
//! the operation and when it expires, and carries an HMAC-SHA256 of them
//! under a key derived from the cluster key for the token's epoch (a day):
//! the key that signs changes every epoch, and needs no distribution, as
//! every minion of the cluster holds the cluster key it derives from. A
//! little clock skew between master and minion is tolerated.
//!
//! Tokens travel in `Credentials::token`; its bytes are untrusted and
//! decoded with a bound on their size before anything is checked.

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::auth::ClusterKey;
use crate::msg::{BlockId, Credentials, Generation};

/// How long a token is good for.
pub const TOKEN_LIFETIME_MS: u64 = 10 * 60 * 60 * 1000;
/// How far the minion's clock may be behind or ahead of the master's.
pub const TOKEN_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;
/// How long one derived signing key is used.
pub const TOKEN_EPOCH_MS: u64 = 24 * 60 * 60 * 1000;
/// The largest encoded token a minion decodes (a user name is at most
/// 255 bytes).
pub const TOKEN_BYTES_MAX: usize = 512;

const DERIVE_LABEL: &[u8] = b"dfs block access tokens v1";

/// What a token allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Access {
    Read,
}

/// A token's contents, as signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Claims {
    user: String,
    block: BlockId,
    generation: Generation,
    access: Access,
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
    Missing(BlockId),
    #[error("{0}: the block access token does not decode")]
    Malformed(BlockId),
    #[error("{block}: the block access token is for {named}")]
    WrongBlock { block: BlockId, named: String },
    #[error("{0}: the block access token is for user {1}, not {2}")]
    WrongUser(BlockId, String, String),
    #[error("{0}: the block access token does not allow this operation")]
    WrongAccess(BlockId),
    #[error("{0}: the block access token expired (ask the master for the block's location again)")]
    Expired(BlockId),
    #[error("{0}: the block access token is forged or from another cluster")]
    Forged(BlockId),
}

/// The user a request's credentials name, as the master names it in a
/// token: `nobody` for none.
fn user_named(user: &str) -> &str {
    if user.is_empty() {
        "nobody"
    } else {
        user
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

    /// A token for `user` to `access` the replica `block`/`generation`,
    /// made at `now_ms` (the master's clock).
    pub fn mint(
        &self,
        user: &str,
        block: BlockId,
        generation: Generation,
        access: Access,
        now_ms: u64,
    ) -> Vec<u8> {
        let claims = Claims {
            user: user.to_string(),
            block,
            generation,
            access,
            expires_ms: now_ms + TOKEN_LIFETIME_MS,
            epoch: now_ms / TOKEN_EPOCH_MS,
        };
        let mac = self.mac(&claims).finalize().into_bytes().to_vec();
        // Invariant: our own token always encodes.
        postcard::to_allocvec(&Token { claims, mac }).expect("token encodes")
    }

    /// Checks that the token in `credentials` lets the user they name
    /// `access` the replica `block` of `generation` at `now_ms`.
    pub fn check_request(
        &self,
        credentials: &Credentials,
        block: BlockId,
        generation: Generation,
        access: Access,
        now_ms: u64,
    ) -> Result<(), TokenError> {
        let user = user_named(&credentials.user);
        self.check(&credentials.token, user, block, generation, access, now_ms)
    }

    /// Checks that `token` lets `user` `access` the replica `block` of
    /// `generation` at `now_ms` (the minion's clock).
    pub fn check(
        &self,
        token: &[u8],
        user: &str,
        block: BlockId,
        generation: Generation,
        access: Access,
        now_ms: u64,
    ) -> Result<(), TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing(block));
        }
        if token.len() > TOKEN_BYTES_MAX {
            return Err(TokenError::Malformed(block));
        }
        let decoded: Token = match postcard::from_bytes(token) {
            Ok(decoded) => decoded,
            Err(_) => return Err(TokenError::Malformed(block)),
        };
        let claims = &decoded.claims;
        if self.mac(claims).verify_slice(&decoded.mac).is_err() {
            return Err(TokenError::Forged(block));
        }
        if claims.block != block || claims.generation != generation {
            return Err(TokenError::WrongBlock {
                block,
                named: format!("{} (generation {})", claims.block, claims.generation.0),
            });
        }
        if claims.user != user {
            return Err(TokenError::WrongUser(
                block,
                claims.user.clone(),
                user.to_string(),
            ));
        }
        if claims.access != access {
            return Err(TokenError::WrongAccess(block));
        }
        let latest_epoch = (now_ms + TOKEN_CLOCK_SKEW_MS) / TOKEN_EPOCH_MS;
        if claims.expires_ms + TOKEN_CLOCK_SKEW_MS < now_ms || claims.epoch > latest_epoch {
            return Err(TokenError::Expired(block));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 1_800_000_000_000;

    fn keys() -> TokenKeys {
        TokenKeys::new(ClusterKey::generate().expect("key"))
    }

    #[test]
    fn a_token_opens_its_block_for_its_user_until_it_expires() {
        let keys = keys();
        let (block, generation) = (BlockId(7), Generation(70));
        let token = keys.mint("ann", block, generation, Access::Read, NOW_MS);
        keys.check(&token, "ann", block, generation, Access::Read, NOW_MS)
            .expect("good");
        // A minion's clock a little ahead or behind.
        let later = NOW_MS + TOKEN_LIFETIME_MS + TOKEN_CLOCK_SKEW_MS;
        keys.check(&token, "ann", block, generation, Access::Read, later)
            .expect("within the skew");
        keys.check(
            &token,
            "ann",
            block,
            generation,
            Access::Read,
            NOW_MS - 1000,
        )
        .expect("minion behind");
        assert_eq!(
            keys.check(&token, "ann", block, generation, Access::Read, later + 1),
            Err(TokenError::Expired(block))
        );
        // Another block, generation or user: refused.
        assert!(matches!(
            keys.check(&token, "ann", BlockId(8), generation, Access::Read, NOW_MS),
            Err(TokenError::WrongBlock { .. })
        ));
        assert!(matches!(
            keys.check(&token, "ann", block, Generation(71), Access::Read, NOW_MS),
            Err(TokenError::WrongBlock { .. })
        ));
        assert!(matches!(
            keys.check(&token, "bob", block, generation, Access::Read, NOW_MS),
            Err(TokenError::WrongUser(..))
        ));
    }

    #[test]
    fn forged_tampered_missing_and_garbage_tokens_are_refused() {
        let keys = keys();
        let (block, generation) = (BlockId(7), Generation(70));
        let check =
            |token: &[u8]| keys.check(token, "ann", block, generation, Access::Read, NOW_MS);
        assert_eq!(check(&[]), Err(TokenError::Missing(block)));
        assert_eq!(check(&[0xff; 40]), Err(TokenError::Malformed(block)));
        assert_eq!(
            check(&vec![1; TOKEN_BYTES_MAX + 1]),
            Err(TokenError::Malformed(block))
        );
        // Another cluster's key.
        let other = keys_other();
        let foreign = other.mint("ann", block, generation, Access::Read, NOW_MS);
        assert_eq!(check(&foreign), Err(TokenError::Forged(block)));
        // Every byte flipped in turn: never accepted.
        let token = keys.mint("ann", block, generation, Access::Read, NOW_MS);
        for index in 0..token.len() {
            let mut tampered = token.clone();
            tampered[index] ^= 0x01;
            assert!(check(&tampered).is_err(), "byte {index} flipped passed");
        }
        // A token of a later epoch than the minion's clock allows.
        let future = keys.mint(
            "ann",
            block,
            generation,
            Access::Read,
            NOW_MS + 3 * TOKEN_EPOCH_MS,
        );
        assert_eq!(check(&future), Err(TokenError::Expired(block)));
    }

    fn keys_other() -> TokenKeys {
        keys()
    }
}
