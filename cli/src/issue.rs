//! `dfs admin user add` and `dfs admin host add`: issue client identities
//! (`dfs_engine::identity`) from the cluster key, where the key is (the
//! master's machine). Nothing is asked of the master: an identity's key is
//! derived from the cluster key and the principal, which the master derives
//! again when the client proves it.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use dfs_client::accounts;
use dfs_client::config::IDENTITY_FILE_IN_HOME;
use dfs_engine::auth::ClusterKey;
use dfs_engine::identity::{Identity, IDENTITY_GROUPS_MAX};
use dfs_engine::msg::ClientPrincipal;
use dfs_engine::{Error, Result};

/// Where the cluster key is read from when `--key` names no file.
pub const CLUSTER_KEY_DEFAULT: &str = "/etc/dfs/cluster.key";

/// An issued identity and where it was written.
#[derive(Debug)]
pub struct Issued {
    pub identity: Identity,
    pub path: PathBuf,
}

/// Seconds since 1970, the identity's issue time.
fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Issues user `name` an identity with `groups` (default: their groups on
/// this machine, primary first, or their name alone when they have no
/// account here), written to `out` (default: their
/// `~/.config/dfs/identity`, made theirs, when they have an account here).
pub fn add_user(
    key: &Path,
    name: &str,
    groups: Option<Vec<String>>,
    out: Option<PathBuf>,
) -> Result<Issued> {
    let cluster = ClusterKey::load(key)?;
    let account = accounts::account(name);
    let groups = match groups {
        Some(groups) => groups,
        None => match &account {
            Some(account) => accounts::user_groups(name, account.gid)
                .into_iter()
                .take(IDENTITY_GROUPS_MAX)
                .map(|gid| accounts::group_name(gid).unwrap_or_else(|| gid.to_string()))
                .collect(),
            None => vec![name.to_string()],
        },
    };
    let identity = Identity::issue(
        &cluster,
        ClientPrincipal::User {
            name: name.to_string(),
            groups,
            issued_s: now_s(),
        },
    )?;
    let path = match (out, &account) {
        (Some(path), _) => {
            identity.save(&path)?;
            path
        }
        (None, Some(account)) => {
            let path = account.home.join(IDENTITY_FILE_IN_HOME);
            save_owned(&identity, &path, account)?;
            path
        }
        (None, None) => {
            return Err(Error::Invalid(format!(
                "user {name} has no account on this machine: give --out FILE and hand the file to them (their ~/.config/dfs/identity, mode 0600)"
            )))
        }
    };
    Ok(Issued { identity, path })
}

/// Issues host `name` an identity, written to `path` (on the host itself:
/// `/etc/dfs/host.identity`, root's).
pub fn add_host(key: &Path, name: &str, path: PathBuf) -> Result<Issued> {
    let cluster = ClusterKey::load(key)?;
    let identity = Identity::issue(
        &cluster,
        ClientPrincipal::Host {
            name: name.to_string(),
            issued_s: now_s(),
        },
    )?;
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(|e| Error::io(format!("create {}", parent.display()), e))?;
    }
    identity.save(&path)?;
    Ok(Issued { identity, path })
}

/// Saves `identity` at `path` below `account`'s home, the file and the
/// directories made for it owned by the account.
fn save_owned(identity: &Identity, path: &Path, account: &accounts::Account) -> Result<()> {
    let mut made = Vec::new();
    let mut missing = path.parent();
    while let Some(directory) = missing.filter(|directory| !directory.exists()) {
        made.push(directory.to_path_buf());
        missing = directory.parent();
    }
    for directory in made.iter().rev() {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(directory)
            .map_err(|e| Error::io(format!("create {}", directory.display()), e))?;
    }
    identity.save(path)?;
    for owned in made.iter().map(PathBuf::as_path).chain([path]) {
        std::os::unix::fs::chown(owned, Some(account.uid), Some(account.gid))
            .map_err(|e| Error::io(format!("give {} to its user", owned.display()), e))?;
    }
    // The file stays its owner's alone (save made it 0600).
    debug_assert_eq!(
        std::fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o777)
            .ok(),
        Some(0o600)
    );
    Ok(())
}
