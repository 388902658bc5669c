//! Who may do what: the POSIX rules of mode bits, owner and group, checked
//! against the caller a request names before its op is made, so that
//! `dfs`, `dfs-cp`, the mount (whose kernel checks the same rules with
//! `default_permissions`) and later gateways agree.
//!
//! The checks read the namespace and change nothing; an op that passes is
//! the same deterministic, journaled op as before (a consensus log carries
//! the op, not the check). A path whose entry is missing passes the check
//! where the op itself answers "no such file" (or "not a directory"), so
//! that a caller learns no more than `ls` would tell them; a directory on
//! the way that the caller may not search is refused first, as the kernel
//! does.
//!
//! Who the caller is comes from the request's credentials; until users
//! authenticate, they are what the client asserts (as NFS `sec=sys`). The
//! superuser (the user `root`, or a member of the cluster's admin group)
//! may do anything.

use dfs_engine::msg::{ErrorKind, RemoteError};
use dfs_engine::path::DfsPath;

use super::{Inode, InodeId, Namespace, Node, ROOT_INODE};

/// Permission to read a file or list a directory.
pub const READ: u32 = 0o4;
/// Permission to write a file or change a directory's entries.
pub const WRITE: u32 = 0o2;
/// Permission to search a directory (use a name in it).
pub const SEARCH: u32 = 0o1;

/// Restricted deletion: only an entry's owner, the directory's owner or the
/// superuser removes or renames an entry of a sticky directory.
const STICKY: u32 = 0o1000;

/// The user a request is made for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user: String,
    /// The user's groups, the primary one first.
    pub groups: Vec<String>,
    /// May do anything.
    pub superuser: bool,
}

impl Caller {
    /// `user` with `groups`; the superuser is `root` or a member of
    /// `admin_group`.
    pub fn new(user: &str, groups: &[String], admin_group: &str) -> Caller {
        let superuser = user == "root" || groups.iter().any(|group| group == admin_group);
        Caller {
            user: user.to_string(),
            groups: groups.to_vec(),
            superuser,
        }
    }

    /// The group new entries get: the first of the caller's.
    pub fn primary_group(&self) -> &str {
        self.groups.first().map_or(&self.user, |group| group)
    }

    /// True when the caller owns `inode` (or is the superuser).
    fn owns(&self, inode: &Inode) -> bool {
        self.superuser || inode.owner == self.user
    }

    fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|mine| mine == group)
    }
}

/// True when `caller` has every permission of `want` (`READ | WRITE |
/// SEARCH` bits) on `inode`: the owner's bits for its owner, else the
/// group's for a member of its group, else the others' (one class only, as
/// POSIX has it: an owner denied what others may is denied).
pub fn permits(caller: &Caller, inode: &Inode, want: u32) -> bool {
    if caller.superuser {
        return true;
    }
    let bits = if inode.owner == caller.user {
        inode.mode >> 6
    } else if caller.in_group(&inode.group) {
        inode.mode >> 3
    } else {
        inode.mode
    };
    bits & want == want
}

fn denied(path: &DfsPath, what: &str) -> RemoteError {
    RemoteError::new(
        ErrorKind::PermissionDenied,
        format!("{path}: permission denied ({what})"),
    )
}

/// `caller` may search `directory`, on the way to `path`.
fn check_search(caller: &Caller, path: &DfsPath, directory: &Inode) -> Result<(), RemoteError> {
    if permits(caller, directory, SEARCH) {
        Ok(())
    } else {
        Err(denied(path, "a directory on the way may not be searched"))
    }
}

/// What an attribute change sets, for its check.
#[derive(Clone, Copy, Debug, Default)]
pub struct AttributeWish<'a> {
    pub mode: bool,
    pub owner: Option<&'a str>,
    pub group: Option<&'a str>,
    pub times: bool,
}

impl Namespace {
    /// The entry at `path` if every directory on the way to it may be
    /// searched by `caller`; None when a name on the way (or the entry) is
    /// missing or not a directory, which the op reports itself.
    fn walk(&self, caller: &Caller, path: &DfsPath) -> Result<Option<InodeId>, RemoteError> {
        let mut current = ROOT_INODE;
        for name in path.components() {
            let directory = self.inode(current);
            let Node::Directory { children } = &directory.node else {
                return Ok(None);
            };
            check_search(caller, path, directory)?;
            match children.get(name) {
                Some(&child) => current = child,
                None => return Ok(None),
            }
        }
        Ok(Some(current))
    }

    /// `caller` may look at the entry at `path` (stat, readlink): every
    /// directory on the way may be searched.
    pub fn check_lookup(&self, caller: &Caller, path: &DfsPath) -> Result<(), RemoteError> {
        self.walk(caller, path).map(drop)
    }

    /// `caller` may use the entry at `path` for `want` (read a file, list a
    /// directory, write a file, read or change its extended attributes).
    pub fn check_entry(
        &self,
        caller: &Caller,
        path: &DfsPath,
        want: u32,
    ) -> Result<(), RemoteError> {
        match self.walk(caller, path)? {
            Some(id) if !permits(caller, self.inode(id), want) => {
                Err(denied(path, access_name(want)))
            }
            _ => Ok(()),
        }
    }

    /// `caller` may list `path`: read a directory (a file is listed as
    /// itself, which needs no more than a lookup).
    pub fn check_list(&self, caller: &Caller, path: &DfsPath) -> Result<(), RemoteError> {
        match self.walk(caller, path)? {
            Some(id) => {
                let inode = self.inode(id);
                let is_directory = matches!(inode.node, Node::Directory { .. });
                if is_directory && !permits(caller, inode, READ) {
                    return Err(denied(path, access_name(READ)));
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// `caller` may use the file `inode` for `want`, whatever its names
    /// are now: a file it opened (as a file handle of NFS is checked).
    pub fn check_inode(
        &self,
        caller: &Caller,
        path: &DfsPath,
        inode: InodeId,
        want: u32,
    ) -> Result<(), RemoteError> {
        match self.inodes.get(&inode) {
            Some(found) if !permits(caller, found, want) => Err(denied(path, access_name(want))),
            _ => Ok(()),
        }
    }

    /// `caller` may use the file `inode`, which it holds open or locks, for
    /// one of `wants` (a file opened for reading or writing); an inode
    /// that is gone passes here (the request says it is not there).
    pub fn check_open_inode(
        &self,
        caller: &Caller,
        inode: InodeId,
        wants: &[u32],
    ) -> Result<(), RemoteError> {
        match self.inodes.get(&inode) {
            Some(found) if !wants.iter().any(|&want| permits(caller, found, want)) => {
                Err(RemoteError::new(
                    ErrorKind::PermissionDenied,
                    format!(
                        "inode {inode}: permission denied ({})",
                        wants
                            .iter()
                            .map(|&want| access_name(want))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    /// `caller` may make an entry at `path`: the directory it goes in may
    /// be written and searched. With `parents`, the first directory on the
    /// way that is missing is made in the last one there.
    pub fn check_create(
        &self,
        caller: &Caller,
        path: &DfsPath,
        parents: bool,
    ) -> Result<(), RemoteError> {
        let mut current = ROOT_INODE;
        let components: Vec<&str> = path.components().collect();
        for (index, name) in components.iter().enumerate() {
            let directory = self.inode(current);
            let Node::Directory { children } = &directory.node else {
                return Ok(());
            };
            let last = index + 1 == components.len();
            match children.get(*name) {
                Some(&child) if !last => {
                    check_search(caller, path, directory)?;
                    current = child;
                }
                // Exists: the op answers (or, for an overwrite, the file is
                // checked for writing).
                Some(_) => return check_search(caller, path, directory),
                None if last || parents => {
                    return if permits(caller, directory, WRITE | SEARCH) {
                        Ok(())
                    } else {
                        Err(denied(path, "its directory may not be written"))
                    };
                }
                None => return Ok(()),
            }
        }
        Ok(())
    }

    /// `caller` may remove the name `path` (delete, or the old or replaced
    /// name of a rename): its directory may be written and searched, and in
    /// a sticky directory the caller owns the entry or the directory. With
    /// `recursive`, every directory below may be listed, written and
    /// searched, and its sticky rules hold for what is in it.
    pub fn check_remove(
        &self,
        caller: &Caller,
        path: &DfsPath,
        recursive: bool,
    ) -> Result<(), RemoteError> {
        let Some(parent) = path.parent() else {
            return Ok(());
        };
        let Some(directory) = self.walk(caller, &parent)? else {
            return Ok(());
        };
        let Some(name) = path.name() else {
            return Ok(());
        };
        let Some(entry) = self.child(directory, name) else {
            return Ok(());
        };
        self.check_unlink(caller, path, directory, entry)?;
        if !recursive {
            return Ok(());
        }
        let mut pending = vec![(path.clone(), entry)];
        while let Some((at, id)) = pending.pop() {
            let inode = self.inode(id);
            let Node::Directory { children } = &inode.node else {
                continue;
            };
            if children.is_empty() {
                continue;
            }
            if !permits(caller, inode, READ | WRITE | SEARCH) {
                return Err(denied(&at, "its entries may not be removed"));
            }
            for (name, &child) in children {
                let below = at.join(name).map_err(|e| {
                    RemoteError::new(ErrorKind::Internal, format!("{at}: {name}: {e}"))
                })?;
                self.check_sticky(caller, &below, inode, child)?;
                pending.push((below, child));
            }
        }
        Ok(())
    }

    /// `directory` may lose its entry `entry` (named `path`) to `caller`.
    fn check_unlink(
        &self,
        caller: &Caller,
        path: &DfsPath,
        directory: InodeId,
        entry: InodeId,
    ) -> Result<(), RemoteError> {
        let parent = self.inode(directory);
        if !permits(caller, parent, WRITE | SEARCH) {
            return Err(denied(path, "its directory may not be written"));
        }
        self.check_sticky(caller, path, parent, entry)
    }

    fn check_sticky(
        &self,
        caller: &Caller,
        path: &DfsPath,
        parent: &Inode,
        entry: InodeId,
    ) -> Result<(), RemoteError> {
        if parent.mode & STICKY != 0 && !caller.owns(parent) && !caller.owns(self.inode(entry)) {
            return Err(denied(
                path,
                "a sticky directory: only its owner or the entry's may remove it",
            ));
        }
        Ok(())
    }

    /// `caller` may rename `source` to `target`: remove the source name and
    /// make (or replace) the target, and a directory moved to another
    /// directory may itself be written (its `..` changes).
    pub fn check_rename(
        &self,
        caller: &Caller,
        source: &DfsPath,
        target: &DfsPath,
    ) -> Result<(), RemoteError> {
        self.check_remove(caller, source, false)?;
        match self.walk(caller, target)? {
            Some(_) => self.check_remove(caller, target, false)?,
            None => self.check_create(caller, target, false)?,
        }
        let moved = self.walk(caller, source)?;
        if let Some(id) = moved {
            let inode = self.inode(id);
            let is_directory = matches!(inode.node, Node::Directory { .. });
            if is_directory && source.parent() != target.parent() && !permits(caller, inode, WRITE)
            {
                return Err(denied(
                    source,
                    "a directory moved elsewhere must be writable",
                ));
            }
        }
        Ok(())
    }

    /// `caller` may change what `wish` names of the entry at `path`: mode
    /// only as its owner; the owner only as the superuser; the group as
    /// its owner to a group of the caller's; times as its owner or with
    /// write permission.
    pub fn check_set_attributes(
        &self,
        caller: &Caller,
        path: &DfsPath,
        wish: AttributeWish<'_>,
    ) -> Result<(), RemoteError> {
        let Some(id) = self.walk(caller, path)? else {
            return Ok(());
        };
        let inode = self.inode(id);
        if wish.mode && !caller.owns(inode) {
            return Err(denied(path, "only its owner changes its mode"));
        }
        if let Some(owner) = wish.owner {
            if owner != inode.owner && !caller.superuser {
                return Err(denied(path, "only the superuser gives a file away"));
            }
        }
        if let Some(group) = wish.group {
            let allowed = caller.superuser
                || group == inode.group
                || (inode.owner == caller.user && caller.in_group(group));
            if !allowed {
                return Err(denied(
                    path,
                    "only its owner changes its group, to a group of their own",
                ));
            }
        }
        if wish.times && !caller.owns(inode) && !permits(caller, inode, WRITE) {
            return Err(denied(path, "only its owner or a writer sets its times"));
        }
        Ok(())
    }
}

fn access_name(want: u32) -> &'static str {
    match want {
        READ => "it may not be read",
        WRITE => "it may not be written",
        SEARCH => "it may not be searched",
        _ => "not allowed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::Op;

    fn path(text: &str) -> DfsPath {
        DfsPath::parse(text).expect("valid path")
    }

    fn caller(user: &str, groups: &[&str]) -> Caller {
        let groups: Vec<String> = groups.iter().map(|group| group.to_string()).collect();
        Caller::new(user, &groups, "dfsadmin")
    }

    fn mkdir(ns: &mut Namespace, at: &str, mode: u32, owner: &str) {
        ns.apply(&Op::Mkdir {
            path: at.into(),
            parents: false,
            mode,
            owner: owner.into(),
            group: "lab".into(),
            time_ms: 1,
        })
        .expect("mkdir");
    }

    fn file(ns: &mut Namespace, at: &str, mode: u32, owner: &str) {
        let write = ns.next_write_id();
        ns.apply(&Op::OpenWrite {
            write,
            path: at.into(),
            replication: 1,
            block_bytes: 4,
            overwrite: false,
            mode,
            owner: owner.into(),
            group: "lab".into(),
            time_ms: 2,
        })
        .expect("open");
        ns.apply(&Op::CloseWrite { write, time_ms: 3 })
            .expect("close");
    }

    /// /home (0755 root), /home/ann (0750 ann:lab) with secret (0600) and
    /// shared (0640); /tmp (sticky 1777 root) with ann's and bob's files.
    fn tree() -> Namespace {
        let mut ns = Namespace::new(1);
        mkdir(&mut ns, "/home", 0o755, "root");
        mkdir(&mut ns, "/home/ann", 0o750, "ann");
        file(&mut ns, "/home/ann/secret", 0o600, "ann");
        file(&mut ns, "/home/ann/shared", 0o640, "ann");
        mkdir(&mut ns, "/tmp", 0o1777, "root");
        file(&mut ns, "/tmp/ann.txt", 0o666, "ann");
        file(&mut ns, "/tmp/bob.txt", 0o644, "bob");
        ns
    }

    fn refused(result: Result<(), RemoteError>) -> String {
        let error = result.expect_err("must be refused");
        assert_eq!(error.kind, ErrorKind::PermissionDenied, "{error:?}");
        error.message
    }

    #[test]
    fn one_class_of_bits_decides() {
        let ns = tree();
        let ann = caller("ann", &["ann"]);
        let bob_in_lab = caller("bob", &["bob", "lab"]);
        let eve = caller("eve", &["eve"]);
        let id = ns.resolve(&path("/home/ann/shared")).expect("there");
        let shared = ns.inode(id);
        assert!(permits(&ann, shared, READ | WRITE));
        assert!(permits(&bob_in_lab, shared, READ));
        assert!(!permits(&bob_in_lab, shared, WRITE));
        assert!(!permits(&eve, shared, READ));
        // An owner denied what the group may is denied.
        let mut odd = shared.clone();
        odd.mode = 0o070;
        assert!(!permits(&ann, &odd, READ));
        assert!(permits(&bob_in_lab, &odd, READ));
        // The superuser: root, or a member of the admin group.
        assert!(permits(&caller("root", &["root"]), &odd, READ | WRITE));
        assert!(permits(&caller("carl", &["carl", "dfsadmin"]), &odd, WRITE));
    }

    #[test]
    fn reading_needs_search_on_the_way_and_read_on_the_file() {
        let ns = tree();
        let ann = caller("ann", &["ann"]);
        let lab = caller("bob", &["bob", "lab"]);
        let eve = caller("eve", &["eve"]);
        let secret = path("/home/ann/secret");
        ns.check_entry(&ann, &secret, READ).expect("her own");
        assert!(refused(ns.check_entry(&lab, &secret, READ)).contains("may not be read"));
        ns.check_entry(&lab, &path("/home/ann/shared"), READ)
            .expect("the group reads shared");
        // Eve may not even search ann's directory: refused before the file.
        let message = refused(ns.check_lookup(&eve, &path("/home/ann/shared")));
        assert!(message.contains("may not be searched"), "{message}");
        // A missing entry passes: the op answers "no such file" itself.
        ns.check_entry(&lab, &path("/home/ann/none"), READ)
            .expect("missing");
        // Listing needs read on the directory.
        ns.check_list(&lab, &path("/home/ann")).expect("lab lists");
        refused(ns.check_list(&eve, &path("/home/ann")));
        ns.check_list(&eve, &path("/tmp/bob.txt")).expect("a file");
    }

    #[test]
    fn making_and_removing_names_needs_a_writable_directory() {
        let ns = tree();
        let ann = caller("ann", &["ann"]);
        let bob = caller("bob", &["bob", "lab"]);
        ns.check_create(&ann, &path("/home/ann/new"), false)
            .expect("her directory");
        refused(ns.check_create(&bob, &path("/home/ann/new"), false));
        refused(ns.check_create(&ann, &path("/home/new"), false));
        // With parents: the first missing directory is made in the last
        // one there, which must be writable.
        ns.check_create(&ann, &path("/home/ann/a/b/c"), true)
            .expect("below her own");
        refused(ns.check_create(&ann, &path("/home/x/y"), true));
        ns.check_remove(&ann, &path("/home/ann/secret"), false)
            .expect("her own");
        refused(ns.check_remove(&bob, &path("/home/ann/shared"), false));
        // Recursive: every directory below must be emptied by the caller.
        // Ann may empty her directory, but its name is in /home, root's.
        refused(ns.check_remove(&ann, &path("/home/ann"), true));
        let mut ns = ns;
        mkdir(&mut ns, "/home/ann/sub", 0o755, "ann");
        mkdir(&mut ns, "/home/ann/sub/locked", 0o555, "ann");
        file(&mut ns, "/home/ann/sub/locked/f", 0o644, "ann");
        let message = refused(ns.check_remove(&ann, &path("/home/ann/sub"), true));
        assert!(message.contains("/home/ann/sub/locked"), "{message}");
        ns.check_remove(&ann, &path("/home/ann/secret"), true)
            .expect("a file");
    }

    #[test]
    fn a_sticky_directory_keeps_other_users_entries() {
        let ns = tree();
        let ann = caller("ann", &["ann"]);
        let bob = caller("bob", &["bob"]);
        ns.check_remove(&ann, &path("/tmp/ann.txt"), false)
            .expect("her own");
        let message = refused(ns.check_remove(&ann, &path("/tmp/bob.txt"), false));
        assert!(message.contains("sticky"), "{message}");
        refused(ns.check_rename(&ann, &path("/tmp/bob.txt"), &path("/tmp/mine")));
        // Replacing bob's file by a rename is removing it too.
        refused(ns.check_rename(&ann, &path("/tmp/ann.txt"), &path("/tmp/bob.txt")));
        ns.check_rename(&bob, &path("/tmp/bob.txt"), &path("/tmp/b2"))
            .expect("his own");
        ns.check_remove(&caller("root", &["root"]), &path("/tmp/bob.txt"), false)
            .expect("root");
    }

    #[test]
    fn attributes_change_as_chmod_chown_and_chgrp_allow() {
        let ns = tree();
        let ann = caller("ann", &["ann", "lab", "other"]);
        let bob = caller("bob", &["bob", "lab"]);
        let shared = path("/home/ann/shared");
        let chmod = AttributeWish {
            mode: true,
            ..AttributeWish::default()
        };
        ns.check_set_attributes(&ann, &shared, chmod)
            .expect("owner");
        refused(ns.check_set_attributes(&bob, &shared, chmod));
        let give = AttributeWish {
            owner: Some("bob"),
            ..AttributeWish::default()
        };
        refused(ns.check_set_attributes(&ann, &shared, give));
        ns.check_set_attributes(&caller("root", &["root"]), &shared, give)
            .expect("root gives files away");
        let same_owner = AttributeWish {
            owner: Some("ann"),
            ..AttributeWish::default()
        };
        ns.check_set_attributes(&ann, &shared, same_owner)
            .expect("no change");
        let chgrp = |group| AttributeWish {
            group: Some(group),
            ..AttributeWish::default()
        };
        ns.check_set_attributes(&ann, &shared, chgrp("other"))
            .expect("a group of hers");
        refused(ns.check_set_attributes(&ann, &shared, chgrp("wheel")));
        let times = AttributeWish {
            times: true,
            ..AttributeWish::default()
        };
        refused(ns.check_set_attributes(&bob, &shared, times));
        ns.check_set_attributes(&bob, &path("/tmp/ann.txt"), times)
            .expect("a writer sets times");
    }

    #[test]
    fn a_directory_moved_elsewhere_must_be_writable() {
        let mut ns = tree();
        mkdir(&mut ns, "/tmp/locked", 0o555, "ann");
        let ann = caller("ann", &["ann"]);
        refused(ns.check_rename(&ann, &path("/tmp/locked"), &path("/home/ann/locked")));
        ns.check_rename(&ann, &path("/tmp/locked"), &path("/tmp/renamed"))
            .expect("same directory");
    }
}
