//! `dfs admin user add` and `dfs admin host add`: issue client identities
//! (`dfs_engine::identity`) from the cluster key, where the key is (the
//! master's machine). Nothing is asked of the master: an identity's key is
//! derived from the cluster key and the principal, which the master derives
//! again when the client proves it.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
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
            Some(account) => {
                let groups = accounts::user_groups(name, account.gid);
                if groups.len() > IDENTITY_GROUPS_MAX {
                    // Never a silent cut: the one left out could be the
                    // admin group.
                    return Err(Error::Invalid(format!(
                        "user {name} is in {} groups here, an identity holds at most {IDENTITY_GROUPS_MAX}: give the ones that matter with --groups",
                        groups.len()
                    )));
                }
                groups
                    .into_iter()
                    .map(|gid| accounts::group_name(gid).unwrap_or_else(|| gid.to_string()))
                    .collect()
            }
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
        (None, Some(account)) => save_owned(&identity, account)?,
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

/// Saves `identity` as `~/.config/dfs/identity` of `account`, the file
/// and the directories made for it owned by the account. Done by open
/// descriptors from the home directory down, never following a symbolic
/// link and refusing a directory on the way the user does not own: the
/// user controls their home, and root writing there by path could be led
/// to write, or give away, any file of the machine.
fn save_owned(identity: &Identity, account: &accounts::Account) -> Result<PathBuf> {
    let path = account.home.join(IDENTITY_FILE_IN_HOME);
    let shown = path.display().to_string();
    let refuse = |why: String| Error::Invalid(format!("{shown}: {why}; give --out FILE instead"));
    let home = std::fs::File::open(&account.home)
        .map_err(|e| Error::io(format!("open {}", account.home.display()), e))?;
    check_owner(&home, account, || {
        format!("{} is not the user's", account.home.display())
    })
    .map_err(refuse)?;
    let mut directory: OwnedFd = home.into();
    let components: Vec<&std::ffi::OsStr> = Path::new(IDENTITY_FILE_IN_HOME).iter().collect();
    let (file_name, directories) = components
        .split_last()
        .ok_or_else(|| Error::Invalid("an empty identity path".into()))?;
    for name in directories {
        let name = c_name(name)?;
        // SAFETY: a valid directory descriptor and a NUL-terminated name.
        let made = unsafe { libc::mkdirat(directory.as_raw_fd(), name.as_ptr(), 0o700) } == 0;
        if !made {
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(Error::io(format!("create a directory for {shown}"), error));
            }
        }
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: as above; the descriptor returned is owned below.
        let opened = unsafe { libc::openat(directory.as_raw_fd(), name.as_ptr(), flags) };
        if opened < 0 {
            let error = std::io::Error::last_os_error();
            return Err(refuse(format!(
                "{} is not a directory of its own ({error})",
                name.to_string_lossy()
            )));
        }
        // SAFETY: `openat` returned a fresh descriptor nothing else owns.
        let child = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(opened) });
        if made {
            give(&child, account, &shown)?;
        } else {
            check_owner(&child, account, || {
                format!("{} is not the user's", name.to_string_lossy())
            })
            .map_err(refuse)?;
        }
        directory = child.into();
    }
    let name = c_name(file_name)?;
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: as above; mode 0600 for the new file.
    let opened = unsafe { libc::openat(directory.as_raw_fd(), name.as_ptr(), flags, 0o600) };
    if opened < 0 {
        let error = std::io::Error::last_os_error();
        return Err(Error::io(
            format!("create the identity file {shown}"),
            error,
        ));
    }
    // SAFETY: `openat` returned a fresh descriptor nothing else owns.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(opened) });
    give(&file, account, &shown)?;
    file.write_all(identity.to_text().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(format!("write the identity file {shown}"), e))?;
    Ok(path)
}

/// A path component as a C string.
fn c_name(name: &std::ffi::OsStr) -> Result<CString> {
    CString::new(name.as_bytes())
        .map_err(|_| Error::Invalid(format!("{}: a NUL in a path", name.to_string_lossy())))
}

/// Refuses `file` unless `account` owns it.
fn check_owner(
    file: &std::fs::File,
    account: &accounts::Account,
    why: impl FnOnce() -> String,
) -> std::result::Result<(), String> {
    match file.metadata() {
        Ok(metadata) if metadata.uid() == account.uid => Ok(()),
        Ok(_) => Err(why()),
        Err(error) => Err(format!("{} ({error})", why())),
    }
}

/// Gives `file` (by its descriptor) to `account`.
fn give(file: &std::fs::File, account: &accounts::Account, shown: &str) -> Result<()> {
    std::os::unix::fs::fchown(file, Some(account.uid), Some(account.gid))
        .map_err(|e| Error::io(format!("give {shown} to its user"), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const UID: u32 = 4_321;

    /// A home directory of a made-up account (UID), as root makes one.
    fn made_up_account() -> (tempfile::TempDir, accounts::Account) {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "these tests give files away: run as root"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().join("home");
        std::fs::create_dir(&home).expect("mkdir");
        std::os::unix::fs::chown(&home, Some(UID), Some(UID)).expect("chown");
        let account = accounts::Account {
            uid: UID,
            gid: UID,
            home,
        };
        (dir, account)
    }

    fn identity() -> Identity {
        let cluster = ClusterKey::generate().expect("key");
        Identity::issue(
            &cluster,
            ClientPrincipal::User {
                name: "ann".into(),
                groups: vec!["ann".into()],
                issued_s: 1,
            },
        )
        .expect("issue")
    }

    #[test]
    fn a_users_identity_is_theirs_and_private() {
        let (_dir, account) = made_up_account();
        let path = save_owned(&identity(), &account).expect("saved");
        assert_eq!(path, account.home.join(IDENTITY_FILE_IN_HOME));
        for (owned, mode) in [
            (account.home.join(".config"), 0o700),
            (account.home.join(".config/dfs"), 0o700),
            (path.clone(), 0o600),
        ] {
            let metadata = std::fs::symlink_metadata(&owned).expect("made");
            assert_eq!(metadata.uid(), UID, "{}", owned.display());
            assert_eq!(
                metadata.permissions().mode() & 0o777,
                mode,
                "{}",
                owned.display()
            );
        }
        let error = save_owned(&identity(), &account).expect_err("never overwritten");
        assert!(
            error.to_string().contains("create the identity file"),
            "{error}"
        );
    }

    #[test]
    fn links_and_directories_the_user_does_not_own_are_refused() {
        // The user points ~/.config elsewhere: nothing is written there.
        let (dir, account) = made_up_account();
        let elsewhere = dir.path().join("etc");
        std::fs::create_dir(&elsewhere).expect("mkdir");
        std::os::unix::fs::symlink(&elsewhere, account.home.join(".config")).expect("symlink");
        let error = save_owned(&identity(), &account).expect_err("a symbolic link");
        assert!(
            error.to_string().contains("not a directory of its own"),
            "{error}"
        );
        assert_eq!(std::fs::read_dir(&elsewhere).expect("list").count(), 0);
        // A directory on the way that is not the user's.
        let (_dir, account) = made_up_account();
        std::fs::create_dir(account.home.join(".config")).expect("mkdir");
        let error = save_owned(&identity(), &account).expect_err("root's directory");
        assert!(error.to_string().contains("is not the user's"), "{error}");
        // A home that is not the user's.
        let (_dir, mut account) = made_up_account();
        account.uid = UID + 1;
        let error = save_owned(&identity(), &account).expect_err("another's home");
        assert!(error.to_string().contains("is not the user's"), "{error}");
    }
}
