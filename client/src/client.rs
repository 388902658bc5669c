//! `Client`: one connection to the master and the namespace calls, each a
//! single `MasterRequest`. Reading and writing file data live in `read` and
//! `write`; they use the client for names and locations only.

use std::ffi::OsString;
use std::sync::Arc;

use dfs_engine::identity::Identity;
use dfs_engine::limits::{FSCK_BLOCKS_PER_PAGE_MAX, FSCK_FILES_PER_PAGE_MAX, LIST_ENTRIES_MAX};
use dfs_engine::msg::{
    BadReplica, Credentials, EntryKind, EntryStatus, ErrorKind, FsckFile, LocatedBlock,
    MasterRequest, MasterResponse, MinionId, MinionReport,
};
use dfs_engine::path::DfsPath;
use dfs_engine::tls::DataTrust;
use dfs_engine::{Error, Result};

use crate::master::{self, Answer, MasterLink, Resend};
use crate::pool::{self, MinionConnections};

/// Receives warnings that do not fail an operation (a replica that could not
/// store a block that others stored).
pub type WarningSink = Arc<dyn Fn(&str) + Send + Sync>;

/// What `ClusterReport` answers: the minions and the cluster's totals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterReport {
    pub minions: Vec<MinionReport>,
    pub default_replication: u8,
    pub default_block_bytes: u64,
    pub file_count: u64,
    pub directory_count: u64,
    pub block_count: u64,
}

/// What `Client::set_attributes` changes: `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttributeChange {
    /// Permission bits, as in POSIX (0o7777 at most).
    pub mode: Option<u32>,
    pub owner: Option<String>,
    pub group: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub modified_ns: Option<u64>,
    pub accessed_ns: Option<u64>,
}

impl AttributeChange {
    /// Takes in a later change: each field it sets replaces this one's.
    pub fn merge(&mut self, later: AttributeChange) {
        let AttributeChange {
            mode,
            owner,
            group,
            modified_ns,
            accessed_ns,
        } = later;
        self.mode = mode.or(self.mode.take());
        self.owner = owner.or(self.owner.take());
        self.group = group.or(self.group.take());
        self.modified_ns = modified_ns.or(self.modified_ns.take());
        self.accessed_ns = accessed_ns.or(self.accessed_ns.take());
    }
}

/// What an fsck looked at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsckScanned {
    pub files: u64,
    pub blocks: u64,
}

/// A file's status with its pieces and where they are: its blocks whole
/// for a file written front to back; parts of blocks and holes after
/// writes into its middle (`LocatedBlock::is_whole_block`, `is_hole`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileBlocks {
    pub status: EntryStatus,
    pub blocks: Vec<LocatedBlock>,
}

/// A connection to the master, with the caller's credentials.
pub struct Client {
    /// Opened again after a connection error; waits for a master that is
    /// down or starting (`DFS_MASTER_WAIT`).
    master: MasterLink,
    warnings: WarningSink,
    /// Minion connections kept between blocks.
    pub(crate) minions: MinionConnections,
}

impl Client {
    /// Connects to the master, as the user this process runs as.
    pub fn connect(master_address: &str) -> Result<Client> {
        Client::connect_as(master_address, process_credentials())
    }

    /// Connects to the master with the given credentials, waiting for it
    /// as long as `DFS_MASTER_WAIT` says when it is down or starting, and
    /// proving the identity this process has (`config::identity`).
    pub fn connect_as(master_address: &str, credentials: Credentials) -> Result<Client> {
        let identity = crate::config::identity_from_environment()?;
        Client::connect_with(master_address, credentials, identity)
    }

    /// `connect_as` proving `identity` (none: as an anonymous client, which
    /// only a master without a key or run `--insecure` serves). A user
    /// identity's requests are made as that user, whatever `credentials`
    /// say.
    pub fn connect_with(
        master_address: &str,
        credentials: Credentials,
        identity: Option<Identity>,
    ) -> Result<Client> {
        let io_timeout = pool::io_timeout_from_environment()?;
        let wait = master::master_wait_from_environment()?;
        let credentials = match &identity {
            Some(identity) => identity.credentials(credentials),
            None => credentials,
        };
        let identity = identity.map(Arc::new);
        let mut client = Client {
            master: MasterLink::new(master_address, credentials, identity, wait),
            warnings: Arc::new(|message: &str| eprintln!("dfs: warning: {message}")),
            minions: MinionConnections::new(io_timeout),
        };
        let warnings = Arc::clone(&client.warnings);
        client.master.connect(&|text: &str| warnings(text))?;
        if client.identity().is_some() {
            client.learn_data_trust()?;
        }
        Ok(client)
    }

    /// Asks the master how block data travels (`DataTrust`): over TLS to
    /// minions its data authority vouches for, when the cluster says so.
    fn learn_data_trust(&mut self) -> Result<()> {
        match self.call_read_only(MasterRequest::DataTrust)? {
            MasterResponse::DataTrust {
                authority,
                required: true,
            } => {
                let trust = DataTrust::new(&authority).map_err(|error| {
                    Error::Invalid(format!(
                        "the master at {} sent a data authority certificate that is no good: {error}",
                        self.master_address()
                    ))
                })?;
                self.minions.use_tls(trust);
                Ok(())
            }
            MasterResponse::DataTrust {
                required: false, ..
            } => Ok(()),
            other => Err(unexpected("DataTrust", &other)),
        }
    }

    pub fn master_address(&self) -> &str {
        self.master.address()
    }

    pub fn credentials(&self) -> &Credentials {
        self.master.credentials()
    }

    /// The identity proved on each connection to the master, if any.
    pub fn identity(&self) -> Option<&Arc<Identity>> {
        self.master.identity()
    }

    /// How long calls wait for a master that is down or starting.
    pub fn master_wait(&self) -> std::time::Duration {
        self.master.wait()
    }

    /// Where warnings go; by default a `dfs: warning: ...` line on stderr.
    pub fn set_warning_sink(&mut self, sink: WarningSink) {
        self.warnings = sink;
    }

    pub(crate) fn warn(&self, message: &str) {
        (self.warnings)(message);
    }

    /// Drops the master connection; the master aborts the writes it left
    /// open, and the next call connects again.
    pub(crate) fn disconnect_master(&mut self) {
        self.master.disconnect();
    }

    /// The status of one entry.
    pub fn stat(&mut self, path: &DfsPath) -> Result<EntryStatus> {
        let request = MasterRequest::Stat {
            path: path.to_string(),
        };
        match self.call_read_only(request)? {
            MasterResponse::Status(status) => Ok(status),
            other => Err(unexpected("Stat", &other)),
        }
    }

    /// All entries of a directory in name order, fetched page by page.
    pub fn list(&mut self, path: &DfsPath) -> Result<Vec<EntryStatus>> {
        let mut entries = Vec::new();
        self.list_each(path, |entry| {
            entries.push(entry);
            Ok(())
        })?;
        Ok(entries)
    }

    /// Calls `visit` for each entry of a directory in name order, holding one
    /// page in memory at a time.
    pub fn list_each(
        &mut self,
        path: &DfsPath,
        mut visit: impl FnMut(EntryStatus) -> Result<()>,
    ) -> Result<()> {
        let mut start_after: Option<String> = None;
        loop {
            let (entries, more) = self.list_page(path, start_after.as_deref())?;
            start_after = entries.last().map(|entry| entry.name.clone());
            for entry in entries {
                visit(entry)?;
            }
            if !more {
                return Ok(());
            }
        }
    }

    /// One page of a directory's entries in name order, after the name
    /// `start_after` (from the first without), and whether more follow.
    pub fn list_page(
        &mut self,
        path: &DfsPath,
        start_after: Option<&str>,
    ) -> Result<(Vec<EntryStatus>, bool)> {
        let request = MasterRequest::List {
            path: path.to_string(),
            start_after: start_after.map(str::to_string),
            limit: LIST_ENTRIES_MAX,
        };
        let (entries, more) = match self.call_read_only(request)? {
            MasterResponse::Listing { entries, more } => (entries, more),
            other => return Err(unexpected("List", &other)),
        };
        check_page(path, start_after, &entries, more)?;
        Ok((entries, more))
    }

    /// Makes a directory (with `parents`, the missing ones on the way; an
    /// existing directory is no error then). Sent again while the master is
    /// down or restarting, also after a connection broke once it was sent:
    /// a copy sent again that finds the directory there finds what the
    /// first copy made.
    pub fn mkdir(&mut self, path: &DfsPath, parents: bool, mode: u32) -> Result<()> {
        let request = MasterRequest::Mkdir {
            path: path.to_string(),
            parents,
            mode,
        };
        let answer = self.call_with(request, Resend::Always)?;
        match answer.response {
            MasterResponse::Ok => Ok(()),
            MasterResponse::Error(error)
                if answer.resent
                    && error.kind == ErrorKind::AlreadyExists
                    && self
                        .stat(path)
                        .is_ok_and(|status| status.kind == EntryKind::Directory) =>
            {
                Ok(())
            }
            MasterResponse::Error(error) => Err(Error::Remote(error)),
            other => Err(unexpected("Mkdir", &other)),
        }
    }

    pub fn delete(&mut self, path: &DfsPath, recursive: bool) -> Result<()> {
        let request = MasterRequest::Delete {
            path: path.to_string(),
            recursive,
        };
        self.call_expect_ok("Delete", request)
    }

    pub fn rename(&mut self, source: &DfsPath, target: &DfsPath) -> Result<()> {
        let request = MasterRequest::Rename {
            source: source.to_string(),
            target: target.to_string(),
        };
        self.call_expect_ok("Rename", request)
    }

    /// Makes a symbolic link at `path` to the text `target`.
    pub fn symlink(&mut self, path: &DfsPath, target: &str) -> Result<()> {
        let request = MasterRequest::Symlink {
            path: path.to_string(),
            target: target.to_string(),
        };
        self.call_expect_ok("Symlink", request)
    }

    /// Makes a FIFO, socket or device node (`kind`) at `path`.
    pub fn mknod(&mut self, path: &DfsPath, kind: EntryKind, mode: u32, rdev: u32) -> Result<()> {
        let request = MasterRequest::Mknod {
            path: path.to_string(),
            kind,
            mode,
            rdev,
        };
        self.call_expect_ok("Mknod", request)
    }

    /// Gives the file or symbolic link at `source` the name `target` too.
    pub fn link(&mut self, source: &DfsPath, target: &DfsPath) -> Result<()> {
        let request = MasterRequest::Link {
            source: source.to_string(),
            target: target.to_string(),
        };
        self.call_expect_ok("Link", request)
    }

    /// The target of the symbolic link at `path`.
    pub fn read_link(&mut self, path: &DfsPath) -> Result<String> {
        let request = MasterRequest::ReadLink {
            path: path.to_string(),
        };
        match self.call_read_only(request)? {
            MasterResponse::LinkTarget { target } => Ok(target),
            other => Err(unexpected("ReadLink", &other)),
        }
    }

    /// Tells the master the file `inode` was opened for reading: its
    /// access time moves to now when `relatime` says so.
    pub fn mark_accessed(&mut self, inode: u64) -> Result<()> {
        self.call_expect_ok_with(
            "MarkAccessed",
            MasterRequest::MarkAccessed { inode },
            Resend::Always,
        )
    }

    /// Changes an entry's attributes; a field left `None` stays as it is.
    pub fn set_attributes(&mut self, path: &DfsPath, change: AttributeChange) -> Result<()> {
        let request = MasterRequest::SetAttributes {
            path: path.to_string(),
            mode: change.mode,
            owner: change.owner,
            group: change.group,
            modified_ns: change.modified_ns,
            accessed_ns: change.accessed_ns,
        };
        self.call_expect_ok("SetAttributes", request)
    }

    pub fn cluster_report(&mut self) -> Result<ClusterReport> {
        match self.call_read_only(MasterRequest::ClusterReport)? {
            MasterResponse::Cluster {
                minions,
                default_replication,
                default_block_bytes,
                file_count,
                directory_count,
                block_count,
            } => Ok(ClusterReport {
                minions,
                default_replication,
                default_block_bytes,
                file_count,
                directory_count,
                block_count,
            }),
            other => Err(unexpected("ClusterReport", &other)),
        }
    }

    /// Checks the blocks of the files at or under `path`, page by page:
    /// `visit` sees each file with blocks to list (unhealthy or
    /// over-replicated) in path order. Returns the totals looked at.
    pub fn fsck_each(
        &mut self,
        path: &DfsPath,
        mut visit: impl FnMut(FsckFile) -> Result<()>,
    ) -> Result<FsckScanned> {
        let mut scanned = FsckScanned::default();
        let mut start_after: Option<String> = None;
        loop {
            let request = MasterRequest::Fsck {
                path: path.to_string(),
                start_after: start_after.clone(),
                limit: FSCK_FILES_PER_PAGE_MAX,
            };
            let (files, scanned_files, scanned_blocks, resume_after) =
                match self.call_read_only(request)? {
                    MasterResponse::FsckPage {
                        files,
                        scanned_files,
                        scanned_blocks,
                        resume_after,
                    } => (files, scanned_files, scanned_blocks, resume_after),
                    other => return Err(unexpected("Fsck", &other)),
                };
            check_fsck_page(
                path,
                start_after.as_deref(),
                &files,
                resume_after.as_deref(),
            )?;
            scanned.files += scanned_files;
            scanned.blocks += scanned_blocks;
            for file in files {
                visit(file)?;
            }
            match resume_after {
                Some(after) => start_after = Some(after),
                None => return Ok(scanned),
            }
        }
    }

    /// Starts draining a minion; it can be switched off once decommissioned.
    pub fn decommission(&mut self, minion: MinionId) -> Result<()> {
        self.call_expect_ok("Decommission", MasterRequest::Decommission { minion })
    }

    /// Puts a decommissioning or decommissioned minion back in service.
    pub fn recommission(&mut self, minion: MinionId) -> Result<()> {
        self.call_expect_ok("Recommission", MasterRequest::Recommission { minion })
    }

    /// Tells the master about replicas that failed verification.
    pub fn report_bad_replicas(&mut self, replicas: Vec<BadReplica>) -> Result<()> {
        self.call_expect_ok(
            "ReportBadReplicas",
            MasterRequest::ReportBadReplicas {
                reporter: None,
                replicas,
            },
        )
    }

    /// The link to the master, for calls of other modules.
    pub(crate) fn master_link(&mut self) -> &mut MasterLink {
        &mut self.master
    }

    /// Where warnings go, for calls that outlive a borrow of the client.
    pub(crate) fn warning_sink(&self) -> WarningSink {
        Arc::clone(&self.warnings)
    }

    /// Sends a request that changes nothing (or that the master applies
    /// once however often it comes), sent again as often as needed while
    /// the master is down or starting (`DFS_MASTER_WAIT`).
    pub(crate) fn call_read_only(&mut self, request: MasterRequest) -> Result<MasterResponse> {
        remote_error(self.call_with(request, Resend::Always)?.response)
    }

    /// Sends a change and returns the master's answer; `Error` answers
    /// become `Error::Remote`. It is sent again while the master is down
    /// or starting only as long as it certainly was not applied.
    pub(crate) fn call(&mut self, request: MasterRequest) -> Result<MasterResponse> {
        remote_error(self.call_with(request, Resend::UntilSent)?.response)
    }

    /// Sends a request with the given resend rule (`master::Resend`); an
    /// `Error` answer is in the answer, not an `Err`.
    pub(crate) fn call_with(&mut self, request: MasterRequest, resend: Resend) -> Result<Answer> {
        let warnings = Arc::clone(&self.warnings);
        self.master
            .call(&request, resend, &|text: &str| warnings(text))
    }

    /// Sends a request once, not waiting for a master that is down or
    /// starting (best effort, on the way out).
    pub(crate) fn call_once(&mut self, request: MasterRequest) -> Result<MasterResponse> {
        remote_error(self.master.call_once(&request)?)
    }

    /// `call_expect_ok` with the given resend rule.
    pub(crate) fn call_expect_ok_with(
        &mut self,
        what: &str,
        request: MasterRequest,
        resend: Resend,
    ) -> Result<()> {
        match remote_error(self.call_with(request, resend)?.response)? {
            MasterResponse::Ok => Ok(()),
            other => Err(unexpected(what, &other)),
        }
    }

    pub(crate) fn call_expect_ok(&mut self, what: &str, request: MasterRequest) -> Result<()> {
        match self.call(request)? {
            MasterResponse::Ok => Ok(()),
            other => Err(unexpected(what, &other)),
        }
    }
}

/// An `Error` answer as `Error::Remote`.
pub(crate) fn remote_error(response: MasterResponse) -> Result<MasterResponse> {
    match response {
        MasterResponse::Error(error) => Err(Error::Remote(error)),
        response => Ok(response),
    }
}

pub(crate) fn unexpected<T: std::fmt::Debug>(request: &str, response: &T) -> Error {
    let mut shown = format!("{response:?}");
    if shown.len() > 80 {
        let mut end = 80;
        while !shown.is_char_boundary(end) {
            end -= 1;
        }
        shown.truncate(end);
        shown.push_str("...");
    }
    Error::Protocol(format!("unexpected answer to {request}: {shown}"))
}

/// An fsck page must stay within its limits and move forward, or paging
/// would never end.
fn check_fsck_page(
    path: &DfsPath,
    start_after: Option<&str>,
    files: &[FsckFile],
    resume_after: Option<&str>,
) -> Result<()> {
    let bad = |why: &str| Err(Error::Protocol(format!("fsck of {path}: {why}")));
    if files.len() > FSCK_FILES_PER_PAGE_MAX as usize {
        return bad(&format!("page of {} files", files.len()));
    }
    let listed: usize = files.iter().map(|file| file.blocks.len()).sum();
    if listed > FSCK_BLOCKS_PER_PAGE_MAX {
        return bad(&format!("page of {listed} blocks"));
    }
    if resume_after.is_some() && resume_after == start_after {
        return bad("the next page starts where this one did");
    }
    Ok(())
}

/// A listing page must move forward, or paging would never end.
fn check_page(
    path: &DfsPath,
    start_after: Option<&str>,
    entries: &[EntryStatus],
    more: bool,
) -> Result<()> {
    let bad = |why: &str| Err(Error::Protocol(format!("listing of {path}: {why}")));
    if entries.len() > LIST_ENTRIES_MAX as usize {
        return bad(&format!("page of {} entries", entries.len()));
    }
    if more && entries.is_empty() {
        return bad("empty page with more to come");
    }
    let mut previous = start_after;
    for entry in entries {
        if previous.is_some_and(|previous| entry.name.as_str() <= previous) {
            return bad("entries out of name order");
        }
        previous = Some(&entry.name);
    }
    Ok(())
}

/// Supplementary groups sent with a request, at most (the master checks
/// permissions against them; more would only grow every request).
const CALLER_GROUPS_MAX: usize = 64;

/// Who this process runs as: `$USER`, else `$LOGNAME`, else the name the
/// user database gives the uid, else the numeric uid; the groups are the
/// primary group's name (or number) first, then the supplementary groups
/// (at most `CALLER_GROUPS_MAX`).
pub fn process_credentials() -> Credentials {
    // SAFETY: getuid and getgid have no preconditions and cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let user = user_name(
        std::env::var_os("USER"),
        std::env::var_os("LOGNAME"),
        || crate::accounts::user_name(uid),
        uid,
    );
    let name_of =
        |gid: libc::gid_t| crate::accounts::group_name(gid).unwrap_or_else(|| gid.to_string());
    let mut groups = vec![name_of(gid)];
    for other in supplementary_groups() {
        if other != gid && groups.len() < CALLER_GROUPS_MAX {
            groups.push(name_of(other));
        }
    }
    Credentials {
        user,
        groups,
        token: Vec::new(),
    }
}

/// The process's supplementary group ids (none if they cannot be read).
fn supplementary_groups() -> Vec<libc::gid_t> {
    // SAFETY: getgroups(0, NULL) only counts the groups.
    let count = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    let Ok(count) = usize::try_from(count) else {
        return Vec::new();
    };
    let mut groups = vec![0; count];
    // SAFETY: `groups` has room for `count` ids, the length passed.
    let filled = unsafe { libc::getgroups(count as libc::c_int, groups.as_mut_ptr()) };
    match usize::try_from(filled) {
        Ok(filled) => {
            groups.truncate(filled);
            groups
        }
        Err(_) => Vec::new(),
    }
}

fn user_name(
    user: Option<OsString>,
    logname: Option<OsString>,
    from_database: impl FnOnce() -> Option<String>,
    uid: u32,
) -> String {
    [user, logname]
        .into_iter()
        .flatten()
        .find(|name| !name.is_empty())
        .map(|name| name.to_string_lossy().into_owned())
        .or_else(from_database)
        .unwrap_or_else(|| uid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_attribute_change_replaces_only_what_it_sets() {
        let mut kept = AttributeChange {
            mode: Some(0o600),
            owner: Some("ann".into()),
            modified_ns: Some(1),
            ..AttributeChange::default()
        };
        kept.merge(AttributeChange {
            owner: Some("bob".into()),
            group: Some("lab".into()),
            ..AttributeChange::default()
        });
        assert_eq!(
            kept,
            AttributeChange {
                mode: Some(0o600),
                owner: Some("bob".into()),
                group: Some("lab".into()),
                modified_ns: Some(1),
                accessed_ns: None,
            }
        );
    }
    use dfs_engine::msg::EntryKind;

    #[test]
    fn user_name_precedence() {
        let os = |s: &str| Some(OsString::from(s));
        for (user, logname, database, want) in [
            (os("ana"), os("bob"), Some("carl"), "ana"),
            (None, os("bob"), Some("carl"), "bob"),
            (os(""), os("bob"), None, "bob"),
            (None, None, Some("carl"), "carl"),
            (None, None, None, "1234"),
            (os(""), os(""), None, "1234"),
        ] {
            let from_database = || database.map(str::to_string);
            assert_eq!(user_name(user, logname, from_database, 1234), want);
        }
    }

    #[test]
    fn the_user_database_names_root() {
        assert_eq!(crate::accounts::user_name(0).as_deref(), Some("root"));
        assert_eq!(crate::accounts::group_name(0).as_deref(), Some("root"));
    }

    fn entry(name: &str) -> EntryStatus {
        EntryStatus {
            name: name.into(),
            inode: 2,
            kind: EntryKind::File,
            size_bytes: 0,
            replication: 3,
            block_bytes: 1024,
            block_count: 0,
            owner: "ana".into(),
            group: "staff".into(),
            mode: 0o644,
            modified_ns: 0,
            accessed_ns: 0,
            changed_ns: 0,
            links: 1,
            version: 0,
            rdev: 0,
        }
    }

    #[test]
    fn listing_pages_must_move_forward() {
        let root = DfsPath::root();
        let page = [entry("a"), entry("b")];
        assert!(check_page(&root, None, &page, true).is_ok());
        assert!(check_page(&root, Some("0"), &page, false).is_ok());
        for (start_after, entries, more) in [
            (Some("b"), &page[..], true),
            (None, &[entry("b"), entry("a")][..], false),
            (None, &[entry("a"), entry("a")][..], false),
            (None, &[][..], true),
        ] {
            assert!(check_page(&root, start_after, entries, more).is_err());
        }
    }
}
