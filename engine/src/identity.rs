//! Client identities: who a client is to a master that has a cluster key.
//!
//! A master with a key answers only clients that prove an identity on
//! their connection (unless it runs `--insecure`). Three kinds, as
//! `ClientPrincipal` names them:
//! - **member**: the cluster key file itself, for admin tools on a member
//!   machine; it asserts any user, as a host does;
//! - **host**: a trusted workstation (`dfs admin host add NAME`); a mount
//!   running as root there asserts its callers' users and groups, as NFS
//!   `sec=sys` does. The file is root's (mode 0600), so a user of the
//!   workstation cannot use it;
//! - **user**: one person (`dfs admin user add NAME`): every request on the
//!   connection is made as that user, with the groups the admin issued, no
//!   matter what the request's credentials say.
//!
//! Each identity's key is derived from the cluster key and the principal
//! (HMAC-SHA256 over a label and the encoded principal), so the master
//! stores nothing per client and a key issued for one name proves no
//! other. The principal carries the time it was issued, room for a
//! revocation list later; today rotating the cluster key revokes all.
//!
//! The exchange mirrors the minions' (`auth`), with the identity's key:
//! 1. client → `AuthenticateClient { principal, nonce: c }`;
//! 2. master → `Challenge { nonce: s, proof: HMAC(k, "master" | c | s) }`,
//!    which the client checks, so a master without the key is refused;
//! 3. client → `ProveClient { proof: HMAC(k, "client" | s | c) }`; `Ok`
//!    binds the connection to the principal.
//!
//! An identity file is text, readable by its owner only:
//! ```text
//! # dfs client identity: keep it secret
//! kind user
//! name ann
//! groups ann,staff
//! issued 1796000000
//! key 0123…(64 hex digits)
//! ```
//! (`groups` only for users.) A cluster key file (one line of 64 hex
//! digits) is read as the member identity.

use std::path::Path;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::auth::{
    bind_challenge, hex, parse_key_hex, random_bytes, read_private, write_private, ClusterKey,
    KEY_BYTES, NONCE_BYTES, PROOF_BYTES,
};
use crate::error::{Error, Result};
use crate::limits::{CONNECT_TIMEOUT_MS, IO_TIMEOUT_MS, NAME_BYTES_MAX};
use crate::msg::{ClientPrincipal, Credentials, MasterRequest, MasterResponse};
use crate::rpc::Connection;

/// Groups a user identity may carry at most (as many as a request's
/// credentials carry).
pub const IDENTITY_GROUPS_MAX: usize = 64;
/// Largest identity file read.
const IDENTITY_FILE_BYTES_MAX: u64 = 32 * 1024;

const DERIVE_LABEL: &[u8] = b"dfs client identity v1";
const MASTER_LABEL: &[u8] = b"dfs client identity v1: master";
const CLIENT_LABEL: &[u8] = b"dfs client identity v1: client";

/// A client's principal and the key that proves it.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    principal: ClientPrincipal,
    key: [u8; KEY_BYTES],
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

/// The key of `principal` in the cluster of `cluster`.
pub fn principal_key(cluster: &ClusterKey, principal: &ClientPrincipal) -> [u8; KEY_BYTES] {
    // Invariant: our own principal always encodes.
    let encoded = postcard::to_allocvec(principal).expect("a principal encodes");
    cluster.derive_with(DERIVE_LABEL, &encoded)
}

/// Checks what a principal names (from a file or the network) before
/// anything is derived from it; the error names what is wrong.
pub fn check_principal(principal: &ClientPrincipal) -> std::result::Result<(), String> {
    match principal {
        ClientPrincipal::Member => Ok(()),
        ClientPrincipal::Host { name, .. } => check_name("host", name),
        ClientPrincipal::User { name, groups, .. } => {
            check_name("user", name)?;
            if groups.len() > IDENTITY_GROUPS_MAX {
                return Err(format!(
                    "user {name} has {} groups (at most {IDENTITY_GROUPS_MAX})",
                    groups.len()
                ));
            }
            groups
                .iter()
                .try_for_each(|group| check_name("group", group))
        }
    }
}

fn check_name(what: &str, name: &str) -> std::result::Result<(), String> {
    let fine = !name.is_empty()
        && name.len() <= NAME_BYTES_MAX
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ',' || c == ':' || c == '/');
    if fine {
        Ok(())
    } else {
        Err(format!(
            "{what} name {name:?}: must be 1 to {NAME_BYTES_MAX} bytes without spaces, commas, colons or slashes"
        ))
    }
}

fn mac(key: &[u8; KEY_BYTES], label: &[u8], first: &[u8], second: &[u8]) -> Hmac<Sha256> {
    // Invariant: HMAC takes a key of any length.
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of every length");
    mac.update(label);
    mac.update(&(first.len() as u64).to_le_bytes());
    mac.update(first);
    mac.update(second);
    mac
}

/// The master's proof that it knows `key`, for the client's nonce.
pub fn master_proof(
    key: &[u8; KEY_BYTES],
    client_nonce: &[u8],
    master_nonce: &[u8],
) -> [u8; PROOF_BYTES] {
    mac(key, MASTER_LABEL, client_nonce, master_nonce)
        .finalize()
        .into_bytes()
        .into()
}

/// True when `proof` is the client's proof of `key` (constant time).
pub fn is_client_proof(
    key: &[u8; KEY_BYTES],
    proof: &[u8],
    client_nonce: &[u8],
    master_nonce: &[u8],
) -> bool {
    mac(key, CLIENT_LABEL, master_nonce, client_nonce)
        .verify_slice(proof)
        .is_ok()
}

impl Identity {
    /// The identity the cluster key issues to `principal`.
    pub fn issue(cluster: &ClusterKey, principal: ClientPrincipal) -> Result<Identity> {
        check_principal(&principal).map_err(Error::Invalid)?;
        let key = principal_key(cluster, &principal);
        Ok(Identity { principal, key })
    }

    pub fn principal(&self) -> &ClientPrincipal {
        &self.principal
    }

    /// The credentials requests on an authenticated connection are made
    /// with: a user identity's own name and groups, else `asserted`.
    pub fn credentials(&self, asserted: Credentials) -> Credentials {
        match &self.principal {
            ClientPrincipal::User { name, groups, .. } => Credentials {
                user: name.clone(),
                groups: groups.clone(),
                token: asserted.token,
            },
            ClientPrincipal::Member | ClientPrincipal::Host { .. } => asserted,
        }
    }

    /// This client's proof, answering the master's nonce.
    pub fn client_proof(&self, client_nonce: &[u8], master_nonce: &[u8]) -> [u8; PROOF_BYTES] {
        mac(&self.key, CLIENT_LABEL, master_nonce, client_nonce)
            .finalize()
            .into_bytes()
            .into()
    }

    /// True when `proof` is the master's (constant time).
    pub fn is_master_proof(&self, proof: &[u8], client_nonce: &[u8], master_nonce: &[u8]) -> bool {
        mac(&self.key, MASTER_LABEL, client_nonce, master_nonce)
            .verify_slice(proof)
            .is_ok()
    }

    /// The identity file's text.
    pub fn to_text(&self) -> String {
        let mut text = String::from("# dfs client identity: keep it secret (mode 0600)\n");
        match &self.principal {
            ClientPrincipal::Member => text.push_str("kind member\n"),
            ClientPrincipal::Host { name, issued_s } => {
                text.push_str(&format!("kind host\nname {name}\nissued {issued_s}\n"));
            }
            ClientPrincipal::User {
                name,
                groups,
                issued_s,
            } => text.push_str(&format!(
                "kind user\nname {name}\ngroups {}\nissued {issued_s}\n",
                groups.join(",")
            )),
        }
        text.push_str(&format!("key {}\n", hex(&self.key)));
        text
    }

    /// Parses an identity file's text (or a cluster key's: the member
    /// identity); the error says what is wrong, not where the file is.
    pub fn parse(text: &str) -> std::result::Result<Identity, String> {
        if let Some(cluster) = ClusterKey::parse(text.trim()) {
            return Identity::issue(&cluster, ClientPrincipal::Member).map_err(|e| e.to_string());
        }
        let (mut kind, mut name, mut groups, mut issued, mut key) = (None, None, None, None, None);
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (word, value) = line.split_once(' ').unwrap_or((line, ""));
            let slot = match word {
                "kind" => &mut kind,
                "name" => &mut name,
                "groups" => &mut groups,
                "issued" => &mut issued,
                "key" => &mut key,
                other => return Err(format!("unknown line {other:?}")),
            };
            if slot.replace(value.trim()).is_some() {
                return Err(format!("{word} is given twice"));
            }
        }
        let key = key
            .and_then(parse_key_hex)
            .ok_or_else(|| format!("no key line of {} hex digits", KEY_BYTES * 2))?;
        let name = || name.map(str::to_string).ok_or("no name line");
        let issued_s = || {
            issued
                .and_then(|value| value.parse::<u64>().ok())
                .ok_or("no issued line (seconds since 1970)")
        };
        let principal = match kind {
            Some("member") => ClientPrincipal::Member,
            Some("host") => ClientPrincipal::Host {
                name: name()?,
                issued_s: issued_s()?,
            },
            Some("user") => ClientPrincipal::User {
                name: name()?,
                groups: groups
                    .filter(|groups| !groups.is_empty())
                    .map(|groups| groups.split(',').map(str::to_string).collect())
                    .unwrap_or_default(),
                issued_s: issued_s()?,
            },
            Some(other) => return Err(format!("unknown kind {other:?} (member, host or user)")),
            None => return Err("no kind line".into()),
        };
        check_principal(&principal)?;
        Ok(Identity { principal, key })
    }

    /// Reads the identity at `path`, a file no one but its owner may read,
    /// owned by this process's user or root (a host identity another user
    /// owns would let them act as anyone); root reads any owner's (the
    /// cluster key is the daemons' user's).
    pub fn load(path: &Path) -> Result<Identity> {
        let shown = path.display();
        let (text, owner) = read_private(path, "identity file", IDENTITY_FILE_BYTES_MAX)?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if me != 0 && owner != me && owner != 0 {
            return Err(Error::Invalid(format!(
                "the identity file {shown} belongs to uid {owner}, not to this user ({me}) or root"
            )));
        }
        Identity::parse(&text)
            .map_err(|why| Error::Invalid(format!("the identity file {shown}: {why}")))
    }

    /// Writes the identity to `path` (which must not exist), readable by
    /// its owner only.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_private(path, "identity file", &self.to_text())
    }

    /// A new TLS connection to the master at `address` with this identity
    /// proved on it.
    pub fn connect(&self, address: &str) -> Result<Connection> {
        let mut connection = Connection::open_tls(
            address,
            Duration::from_millis(CONNECT_TIMEOUT_MS),
            Duration::from_millis(IO_TIMEOUT_MS),
        )?;
        self.authenticate(&mut connection, address)?;
        Ok(connection)
    }

    /// Proves this identity on `connection` to the master at `address`
    /// (named in errors). Afterwards the connection's requests are made as
    /// the principal.
    pub fn authenticate(&self, connection: &mut Connection, address: &str) -> Result<()> {
        let credentials = Credentials::default();
        let nonce: [u8; NONCE_BYTES] = random_bytes()?;
        let answer = connection.call::<_, MasterResponse>(
            &credentials,
            MasterRequest::AuthenticateClient {
                principal: self.principal.clone(),
                nonce: nonce.to_vec(),
            },
        )?;
        let (master_nonce, proof) = match answer {
            MasterResponse::Challenge { nonce, proof } => (nonce, proof),
            MasterResponse::Error(error) => return Err(Error::Remote(error)),
            other => {
                return Err(Error::Protocol(format!(
                    "the master at {address} answered AuthenticateClient with {other:?}"
                )))
            }
        };
        let master_nonce = bind_challenge(&master_nonce, connection.binding(), address)?;
        if !self.is_master_proof(&proof, &nonce, &master_nonce) {
            return Err(Error::Invalid(format!(
                "the master at {address} does not prove the key this identity was issued with: the identity is another cluster's, or damaged"
            )));
        }
        let answer = connection.call::<_, MasterResponse>(
            &credentials,
            MasterRequest::ProveClient {
                proof: self.client_proof(&nonce, &master_nonce).to_vec(),
            },
        )?;
        match answer {
            MasterResponse::Ok => Ok(()),
            MasterResponse::Error(error) => Err(Error::Remote(error)),
            other => Err(Error::Protocol(format!(
                "the master at {address} answered ProveClient with {other:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn ann() -> ClientPrincipal {
        ClientPrincipal::User {
            name: "ann".into(),
            groups: vec!["ann".into(), "staff".into()],
            issued_s: 1_796_000_000,
        }
    }

    #[test]
    fn an_identity_proves_only_its_own_principal_of_its_own_cluster() {
        let cluster = ClusterKey::generate().expect("key");
        let identity = Identity::issue(&cluster, ann()).expect("issue");
        let (client_nonce, master_nonce) = ([1u8; NONCE_BYTES], [2u8; NONCE_BYTES]);
        let proof = identity.client_proof(&client_nonce, &master_nonce);
        // The master derives the same key from the principal alone.
        let key = principal_key(&cluster, &ann());
        assert!(is_client_proof(&key, &proof, &client_nonce, &master_nonce));
        assert!(identity.is_master_proof(
            &master_proof(&key, &client_nonce, &master_nonce),
            &client_nonce,
            &master_nonce
        ));
        // Not with the nonces swapped, another principal, or another cluster.
        assert!(!is_client_proof(&key, &proof, &master_nonce, &client_nonce));
        let mut more_groups = ann();
        if let ClientPrincipal::User { groups, .. } = &mut more_groups {
            groups.push("dfsadmin".into());
        }
        let other_key = principal_key(&cluster, &more_groups);
        assert!(!is_client_proof(
            &other_key,
            &proof,
            &client_nonce,
            &master_nonce
        ));
        let other_cluster = ClusterKey::generate().expect("key");
        let foreign = principal_key(&other_cluster, &ann());
        assert!(!is_client_proof(
            &foreign,
            &proof,
            &client_nonce,
            &master_nonce
        ));
        // A master's proof does not pass as the client's.
        let as_master = master_proof(&key, &client_nonce, &master_nonce);
        assert!(!is_client_proof(
            &key,
            &as_master,
            &client_nonce,
            &master_nonce
        ));
    }

    #[test]
    fn identity_files_round_trip_and_bad_ones_say_what_is_wrong() {
        let cluster = ClusterKey::generate().expect("key");
        let host = ClientPrincipal::Host {
            name: "ws12".into(),
            issued_s: 5,
        };
        for principal in [ann(), host, ClientPrincipal::Member] {
            let identity = Identity::issue(&cluster, principal).expect("issue");
            assert_eq!(Identity::parse(&identity.to_text()), Ok(identity));
        }
        let text = Identity::issue(&cluster, ann()).expect("issue").to_text();
        let cases = [
            (text.replace("kind user", "kind admin"), "unknown kind"),
            (text.replace("name ann\n", ""), "no name"),
            (text.replace("name ann", "name a,b"), "user name"),
            (text.replace("issued", "isued"), "unknown line"),
            (format!("{text}key 00\n"), "given twice"),
            (text.replace("key ", "key 0"), "no key line"),
            (String::new(), "no key line"),
        ];
        for (bad, wanted) in cases {
            let error = Identity::parse(&bad).expect_err(wanted);
            assert!(error.contains(wanted), "{wanted}: {error}");
        }
        let many = (0..=IDENTITY_GROUPS_MAX).map(|g| format!("g{g}")).collect();
        let error = Identity::issue(
            &cluster,
            ClientPrincipal::User {
                name: "ann".into(),
                groups: many,
                issued_s: 0,
            },
        )
        .expect_err("too many groups");
        assert!(error.to_string().contains("groups"), "{error}");
    }

    #[test]
    fn a_cluster_key_file_is_the_member_identity_and_files_must_be_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key_path = dir.path().join("cluster.key");
        let cluster = ClusterKey::create(&key_path).expect("create");
        let member = Identity::load(&key_path).expect("load");
        assert_eq!(member.principal(), &ClientPrincipal::Member);
        assert_eq!(
            member,
            Identity::issue(&cluster, ClientPrincipal::Member).expect("issue")
        );
        let user_path = dir.path().join("identity");
        let user = Identity::issue(&cluster, ann()).expect("issue");
        user.save(&user_path).expect("save");
        assert_eq!(Identity::load(&user_path).expect("load"), user);
        user.save(&user_path).expect_err("never overwritten");
        std::fs::set_permissions(&user_path, std::fs::Permissions::from_mode(0o640))
            .expect("chmod");
        let error = Identity::load(&user_path).expect_err("readable by the group");
        assert!(error.to_string().contains("chmod 600"), "{error}");
        // A user identity's requests are that user's, whatever they say.
        let asserted = Credentials {
            user: "root".into(),
            groups: vec!["root".into()],
            token: vec![7],
        };
        let made = user.credentials(asserted.clone());
        assert_eq!(made.user, "ann");
        assert_eq!(made.groups, vec!["ann".to_string(), "staff".to_string()]);
        assert_eq!(made.token, vec![7]);
        assert_eq!(member.credentials(asserted.clone()), asserted);
    }
}
