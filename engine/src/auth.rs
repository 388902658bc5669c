//! Cluster membership: a secret key the master and its minions share, and
//! the challenge-response that proves it on a connection without ever
//! sending it.
//!
//! Why HMAC challenge-response rather than mutual TLS: it needs no
//! certificate authority, no clock and no handshake library on the
//! minions' io_uring path, one 32-byte key file is all an admin copies to a
//! workstation, and it proves exactly what membership needs (this peer
//! holds the cluster key) on the control connection a minion already
//! keeps. It does not hide traffic; TLS for that is a separate layer.
//!
//! The exchange, on a minion's connection to the master:
//! 1. minion → `Authenticate { minion, nonce: m }` (fresh random `m`);
//! 2. master → `Challenge { nonce: s, proof: HMAC(key, "master" | minion | m | s) }`;
//!    the minion checks the proof, so a master without the key is refused;
//! 3. minion → `ProveMember { proof: HMAC(key, "minion" | minion | s | m) }`;
//!    the master checks it and binds the connection to `minion`: from then
//!    on, and only on it, requests speak for that minion.
//!
//! Each side's nonce makes every proof fresh, and the labels keep one
//! side's proof from passing as the other's. Proofs are compared in
//! constant time.
//!
//! The exchange runs only over TLS (`tls`), and in both proofs the
//! master's nonce `s` stands for `bound_nonce(s, binding)`: the nonce and
//! the TLS session's channel binding. A proof is then good on its own TLS
//! session only, so a meddler who ends TLS on each side can relay neither
//! side's proof, and a connection the proofs authenticated is the one that
//! carries the traffic after them.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};
use crate::msg::MinionId;
use crate::tls::BINDING_BYTES;

/// Bytes of the cluster key.
pub const KEY_BYTES: usize = 32;
/// Bytes of each side's nonce.
pub const NONCE_BYTES: usize = 32;
/// Bytes of a proof (HMAC-SHA256).
pub const PROOF_BYTES: usize = 32;

const MASTER_LABEL: &[u8] = b"dfs cluster membership v1: master";
const MINION_LABEL: &[u8] = b"dfs cluster membership v1: minion";

/// The cluster's shared secret.
#[derive(Clone)]
pub struct ClusterKey([u8; KEY_BYTES]);

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

/// `N` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .map_err(|e| Error::io("read /dev/urandom", e))?;
    Ok(bytes)
}

impl ClusterKey {
    /// A new random key.
    pub fn generate() -> Result<ClusterKey> {
        Ok(ClusterKey(random_bytes()?))
    }

    /// Writes a new random key to `path` (which must not exist), readable
    /// by its owner only, as one line of hex.
    pub fn create(path: &Path) -> Result<ClusterKey> {
        let key = ClusterKey::generate()?;
        write_private(path, "key file", &format!("{}\n", hex(&key.0)))?;
        Ok(key)
    }

    /// Reads the key at `path`: one line of 64 hex digits, in a file no
    /// one but its owner may read or write.
    pub fn load(path: &Path) -> Result<ClusterKey> {
        let (text, _) = read_private(path, "key file", 256)?;
        ClusterKey::parse(text.trim()).ok_or_else(|| {
            Error::Invalid(format!(
                "the key file {} does not hold a key of {KEY_BYTES} bytes in hex",
                path.display()
            ))
        })
    }

    /// A key from its 64 hex digits.
    pub(crate) fn parse(text: &str) -> Option<ClusterKey> {
        parse_key_hex(text).map(ClusterKey)
    }

    fn proof(
        &self,
        label: &[u8],
        minion: MinionId,
        first: &[u8],
        second: &[u8],
    ) -> [u8; PROOF_BYTES] {
        self.mac(label, minion, first, second)
            .finalize()
            .into_bytes()
            .into()
    }

    fn mac(&self, label: &[u8], minion: MinionId, first: &[u8], second: &[u8]) -> Hmac<Sha256> {
        // Invariant: HMAC takes a key of any length.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC accepts keys of every length");
        mac.update(label);
        mac.update(&minion.0.to_le_bytes());
        mac.update(&(first.len() as u64).to_le_bytes());
        mac.update(first);
        mac.update(second);
        mac
    }

    /// A key for another use (`label`) and period (`epoch`), derived from
    /// this one: knowing it tells nothing of the cluster key.
    pub fn derive(&self, label: &[u8], epoch: u64) -> [u8; KEY_BYTES] {
        // Invariant: HMAC takes a key of any length.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC accepts keys of every length");
        mac.update(label);
        mac.update(&epoch.to_le_bytes());
        mac.finalize().into_bytes().into()
    }

    /// A key for another use (`label`) and subject (`subject`, e.g. an
    /// encoded client principal), derived from this one.
    pub fn derive_with(&self, label: &[u8], subject: &[u8]) -> [u8; KEY_BYTES] {
        // Invariant: HMAC takes a key of any length.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC accepts keys of every length");
        mac.update(label);
        mac.update(&(subject.len() as u64).to_le_bytes());
        mac.update(subject);
        mac.finalize().into_bytes().into()
    }

    /// The master's proof for `minion`, whose nonce is `minion_nonce`.
    pub fn master_proof(
        &self,
        minion: MinionId,
        minion_nonce: &[u8],
        master_nonce: &[u8],
    ) -> [u8; PROOF_BYTES] {
        self.proof(MASTER_LABEL, minion, minion_nonce, master_nonce)
    }

    /// The minion's proof, answering the master's nonce.
    pub fn minion_proof(
        &self,
        minion: MinionId,
        minion_nonce: &[u8],
        master_nonce: &[u8],
    ) -> [u8; PROOF_BYTES] {
        self.proof(MINION_LABEL, minion, master_nonce, minion_nonce)
    }

    /// True when `proof` is the master's proof (compared in constant time).
    pub fn is_master_proof(
        &self,
        proof: &[u8],
        minion: MinionId,
        minion_nonce: &[u8],
        master_nonce: &[u8],
    ) -> bool {
        self.mac(MASTER_LABEL, minion, minion_nonce, master_nonce)
            .verify_slice(proof)
            .is_ok()
    }

    /// True when `proof` is the minion's proof (compared in constant time).
    pub fn is_minion_proof(
        &self,
        proof: &[u8],
        minion: MinionId,
        minion_nonce: &[u8],
        master_nonce: &[u8],
    ) -> bool {
        self.mac(MINION_LABEL, minion, master_nonce, minion_nonce)
            .verify_slice(proof)
            .is_ok()
    }
}

/// The master's nonce as both sides' proofs cover it: the nonce, then the
/// channel binding of the TLS session the proofs travel on.
pub fn bound_nonce(master_nonce: &[u8], binding: &[u8; BINDING_BYTES]) -> Vec<u8> {
    [master_nonce, binding.as_slice()].concat()
}

/// The nonce of a master's `Challenge` (from `master`, for errors) bound
/// to the TLS session it came on (`binding`): refused on a connection
/// without TLS, or when the nonce is not `NONCE_BYTES` long.
pub fn bind_challenge(
    master_nonce: &[u8],
    binding: Option<[u8; BINDING_BYTES]>,
    master: &str,
) -> Result<Vec<u8>> {
    let binding = binding.ok_or_else(|| Error::Invalid(PROOF_NEEDS_TLS.into()))?;
    if master_nonce.len() != NONCE_BYTES {
        return Err(Error::Protocol(format!(
            "the master at {master} sent a nonce of {} bytes",
            master_nonce.len()
        )));
    }
    Ok(bound_nonce(master_nonce, &binding))
}

/// Why a proof cannot be made or taken on a connection without TLS.
pub const PROOF_NEEDS_TLS: &str = "proofs of a key are taken only over TLS; \
     clients and minions of protocol 11 or later connect to a keyed master with TLS";

/// A daemon about to listen on `listen` (HOST:PORT): refused when other
/// machines could reach it and the cluster has no key (`keyed`), unless
/// `insecure` says to run open. A host that does not resolve passes here
/// and fails at the bind.
pub fn check_exposure(listen: &str, keyed: bool, insecure: bool) -> Result<()> {
    if keyed || insecure || is_loopback(listen) {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "--listen {listen} is reachable from other machines and this cluster has no key: \
         give --key FILE (made by `dfs admin keygen FILE`), or --insecure to run without one"
    )))
}

/// True when every address `listen` (HOST:PORT) resolves to is a loopback
/// one (or it does not resolve).
pub fn is_loopback(listen: &str) -> bool {
    use std::net::ToSocketAddrs;
    match listen.to_socket_addrs() {
        Ok(addresses) => addresses
            .into_iter()
            .all(|address| address.ip().is_loopback()),
        Err(_) => true,
    }
}

/// Bytes as lower-case hex, as key files hold them.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A key from exactly `KEY_BYTES * 2` hex digits.
pub(crate) fn parse_key_hex(text: &str) -> Option<[u8; KEY_BYTES]> {
    if text.len() != KEY_BYTES * 2 {
        return None;
    }
    let mut key = [0u8; KEY_BYTES];
    for (index, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(index * 2..index * 2 + 2)?, 16).ok()?;
    }
    Some(key)
}

/// Writes `text` to a new file at `path` (which must not exist) that only
/// its owner may read; `what` names it in errors ("key file").
pub(crate) fn write_private(path: &Path, what: &str, text: &str) -> Result<()> {
    let shown = path.display();
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(format!("create the {what} {shown}"), e))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(format!("write the {what} {shown}"), e))
}

/// At most `bytes_max` of the file at `path`, which no one but its owner
/// may read or write, with its owner's uid; `what` names it in errors.
/// The mode is checked on the file opened, not on the path again.
pub(crate) fn read_private(path: &Path, what: &str, bytes_max: u64) -> Result<(String, u32)> {
    let shown = path.display();
    let file = File::open(path).map_err(|e| Error::io(format!("read the {what} {shown}"), e))?;
    let metadata = file
        .metadata()
        .map_err(|e| Error::io(format!("read the {what} {shown}"), e))?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::Invalid(format!(
            "the {what} {shown} has mode {mode:03o}: others may read it; chmod 600 it"
        )));
    }
    let mut text = String::new();
    file.take(bytes_max)
        .read_to_string(&mut text)
        .map_err(|e| Error::io(format!("read the {what} {shown}"), e))?;
    Ok((text, metadata.uid()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_pass_only_with_the_key_the_minion_and_both_nonces() {
        let key = ClusterKey::generate().expect("key");
        let other = ClusterKey::generate().expect("key");
        let minion = MinionId(7);
        let (m, s) = ([1u8; NONCE_BYTES], [2u8; NONCE_BYTES]);
        let proof = key.minion_proof(minion, &m, &s);
        assert!(key.is_minion_proof(&proof, minion, &m, &s));
        assert!(
            !other.is_minion_proof(&proof, minion, &m, &s),
            "another key"
        );
        assert!(
            !key.is_minion_proof(&proof, MinionId(8), &m, &s),
            "another minion"
        );
        assert!(
            !key.is_minion_proof(&proof, minion, &s, &m),
            "nonces swapped"
        );
        assert!(
            !key.is_minion_proof(&proof[..31], minion, &m, &s),
            "cut short"
        );
        // One side's proof never passes as the other's.
        assert!(!key.is_master_proof(&proof, minion, &m, &s));
        let master = key.master_proof(minion, &m, &s);
        assert!(key.is_master_proof(&master, minion, &m, &s));
        assert!(!key.is_minion_proof(&master, minion, &m, &s));
    }

    #[test]
    fn only_loopback_listens_open_without_a_key() {
        for open in ["127.0.0.1:7070", "[::1]:0", "localhost:7070", "127.0.0.2:1"] {
            check_exposure(open, false, false).expect(open);
        }
        for exposed in ["0.0.0.0:7070", "[::]:7070", "10.1.2.3:7070"] {
            let error = check_exposure(exposed, false, false).expect_err(exposed);
            let text = error.to_string();
            assert!(
                text.contains("--insecure") && text.contains("--key"),
                "{text}"
            );
            check_exposure(exposed, true, false).expect("keyed");
            check_exposure(exposed, false, true).expect("insecure");
        }
    }

    #[test]
    fn a_key_file_is_private_hex_and_anything_else_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cluster.key");
        let key = ClusterKey::create(&path).expect("create");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = ClusterKey::load(&path).expect("load");
        assert_eq!(loaded.0, key.0);
        assert!(ClusterKey::create(&path).is_err(), "never overwritten");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let error = ClusterKey::load(&path).expect_err("readable by others");
        assert!(error.to_string().contains("chmod 600"), "{error}");

        let bad = dir.path().join("bad.key");
        for text in ["", "zz", &"ab".repeat(31), &"g".repeat(64)] {
            std::fs::write(&bad, text).expect("write");
            std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            let error = ClusterKey::load(&bad).expect_err("not a key");
            assert!(error.to_string().contains("bad.key"), "{error}");
        }
    }
}
