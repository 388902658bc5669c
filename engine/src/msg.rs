//! Control messages of the protocol, carried as postcard payloads of
//! `Request`/`Response` frames (see `wire`). Every request travels in an
//! `Envelope` with the caller's credentials, so permission checks and access
//! tokens can be added without changing the shape of any message.

use std::fmt;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::limits::ERROR_MESSAGE_BYTES_MAX;

/// A block's id, allocated by the master, never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BlockId(pub u64);

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blk_{:016x}", self.0)
    }
}

/// A block's generation stamp: random, never 0, drawn by the master when it
/// allocates the block. A replica is one of block `id` only if it carries
/// the generation (and the length and CRC32C) the master recorded: a stale
/// or stray file that happens to have the same id is not one. 0 is the
/// generation of blocks written before generations existed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Generation(pub u64);

impl Generation {
    /// Blocks written before generation stamps (block format version 1).
    pub const LEGACY: Generation = Generation(0);
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// One replica of a block, as a minion names it: the block and its
/// generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ReplicaId {
    pub block: BlockId,
    pub generation: Generation,
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (generation {})", self.block, self.generation)
    }
}

/// A minion's id: random at its first start, kept in its data directories.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MinionId(pub u64);

impl fmt::Display for MinionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A cluster's id: random at the master's first start. Minions remember the
/// cluster they joined and are refused by any other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClusterId(pub u64);

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Who is asking. Carried by every request; checked once users exist.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub user: String,
    pub groups: Vec<String>,
    /// Reserved for block access tokens and master-issued tickets.
    pub token: Vec<u8>,
}

/// One message, postcard-encoded on its own: an entry of a `Batch`. A
/// batch holds its entries as bytes, so decoding a batch never decodes what
/// is inside it: the types are not recursive, and a batch nested in a batch
/// (as deep as a frame allows) stays bytes until the receiver decodes that
/// one entry and refuses it. Postcard has no depth limit, so a recursive
/// message type would let any peer overflow the decoder's stack.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encoded(pub Vec<u8>);

impl Encoded {
    /// Encodes `value` as a control payload is encoded (see `wire`).
    pub fn of<T: Serialize>(value: &T) -> Result<Encoded> {
        postcard::to_stdvec(value)
            .map(Encoded)
            .map_err(|e| Error::Protocol(format!("encode {}: {e}", short_type_name::<T>())))
    }

    /// Decodes the one message these bytes hold; trailing bytes are an
    /// error, as in a frame's payload.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        let (value, rest) = postcard::take_from_bytes(&self.0).map_err(|e| {
            Error::Protocol(format!(
                "undecodable {} of {} bytes: {e}",
                short_type_name::<T>(),
                self.0.len()
            ))
        })?;
        if !rest.is_empty() {
            return Err(Error::Protocol(format!(
                "{} trailing bytes after a {}",
                rest.len(),
                short_type_name::<T>()
            )));
        }
        Ok(value)
    }
}

/// A type's name without its path or parameters ("MasterRequest"), for errors.
fn short_type_name<T>() -> &'static str {
    let name = std::any::type_name::<T>();
    let outer = name.split('<').next().unwrap_or(name);
    outer.rsplit("::").next().unwrap_or(outer)
}

/// A request and who sends it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub credentials: Credentials,
    pub body: T,
}

/// What went wrong on the remote side, in a form a client can act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    NotFound,
    AlreadyExists,
    NotADirectory,
    IsADirectory,
    DirectoryNotEmpty,
    InvalidArgument,
    /// No minion can take a new block, or a minion's disk is full.
    NoSpace,
    UnknownMinion,
    DuplicateMinion,
    WrongCluster,
    /// Stored bytes failed their checksum.
    Corrupted,
    PermissionDenied,
    /// The daemon is at a limit (connections, open writes); try later.
    Busy,
    Io,
    Protocol,
    Internal,
    /// The master is starting: it waits for the minions' block reports
    /// before it answers where blocks are, or places new ones (its safe
    /// mode); try again shortly.
    Starting,
    /// The entry has no extended attribute of that name (appended in
    /// protocol 7).
    NoAttribute,
    /// The lock session is not open (expired, closed, or the master
    /// restarted): open a new one (appended in protocol 7).
    NoSession,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteError {
    pub kind: ErrorKind,
    /// One line naming the thing that was wrong, e.g. "/a/b: no such file or directory".
    pub message: String,
}

impl RemoteError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let mut message: String = message.into();
        if message.len() > ERROR_MESSAGE_BYTES_MAX {
            let mut end = ERROR_MESSAGE_BYTES_MAX;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        RemoteError { kind, message }
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RemoteError {}

/// A minion as clients and other minions reach it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinionAddress {
    pub id: MinionId,
    /// host:port of its data service.
    pub address: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    File,
    Directory,
    /// A symbolic link: its target (`ReadLink`) is text, resolved by the
    /// reader (the mount's kernel), never by the master.
    Symlink,
    /// Special files, names only: what they lead to (a pipe, a socket, a
    /// device) is each workstation's own.
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl EntryKind {
    /// Kinds that are only a name and attributes (no blocks, no entries).
    pub fn is_special(self) -> bool {
        matches!(
            self,
            EntryKind::Fifo | EntryKind::Socket | EntryKind::CharDevice | EntryKind::BlockDevice
        )
    }
}

/// How old an access time may get before a read moves it anyway (a day,
/// as Linux's `relatime`).
pub const RELATIME_REFRESH_NS: u64 = 24 * 3600 * 1_000_000_000;

/// Whether a read at `now_ns` moves an access time, as `relatime` has it:
/// when it is not after the modification and change times, or is
/// `RELATIME_REFRESH_NS` old.
pub fn relatime_due(accessed_ns: u64, modified_ns: u64, changed_ns: u64, now_ns: u64) -> bool {
    accessed_ns <= modified_ns
        || accessed_ns <= changed_ns
        || now_ns.saturating_sub(accessed_ns) >= RELATIME_REFRESH_NS
}

/// What `stat` and `ls -l` show of one namespace entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryStatus {
    /// The last path component ("" for the root).
    pub name: String,
    /// The entry's inode number: never reused, so a reader can tell that a
    /// path now names another file (one overwrite or rename replaced).
    pub inode: u64,
    pub kind: EntryKind,
    /// File length in bytes; 0 for directories.
    pub size_bytes: u64,
    /// Target replication of a file; 0 for directories.
    pub replication: u8,
    /// Block size of a file; 0 for directories.
    pub block_bytes: u64,
    pub block_count: u64,
    pub owner: String,
    pub group: String,
    /// Permission bits, as in POSIX (0o755).
    pub mode: u32,
    /// Nanoseconds since the Unix epoch (protocol 7).
    pub modified_ns: u64,
    pub accessed_ns: u64,
    pub changed_ns: u64,
    /// Names the entry has (hard links); 1 for a directory.
    pub links: u32,
    /// Which contents a file has: the id of its first block (0 when it has
    /// none). An overwrite keeps a file's inode but never its blocks, so a
    /// reader tells that the contents it reads were replaced by this.
    pub version: u64,
    /// The device number of a character or block device; 0 otherwise.
    pub rdev: u32,
}

/// One piece of a file (protocol 7): bytes `block_offset_bytes..+length_bytes`
/// of a block, with the minions that hold it, best first; or a hole
/// (`id` 0, no locations): `length_bytes` of zeros stored nowhere. A file
/// written front to back is its blocks whole, one piece each; writes into
/// the middle and truncation make pieces that use part of a block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocatedBlock {
    pub id: BlockId,
    pub generation: Generation,
    /// Offset of the piece's first byte in the file.
    pub offset_bytes: u64,
    /// Bytes of the file the piece holds.
    pub length_bytes: u64,
    pub locations: Vec<MinionAddress>,
    /// CRC32C of the whole block's bytes, as committed (0 for a hole).
    pub crc32c: u32,
    /// Where in the block the piece starts.
    pub block_offset_bytes: u64,
    /// The whole block's length, as committed (0 for a hole).
    pub block_length_bytes: u64,
    /// Protocol 9: the block access token a minion wants for reading the
    /// block (`token`), when the cluster has a key; empty otherwise.
    pub token: Vec<u8>,
}

impl LocatedBlock {
    pub fn replica(&self) -> ReplicaId {
        ReplicaId {
            block: self.id,
            generation: self.generation,
        }
    }

    /// A run of zeros stored nowhere.
    pub fn is_hole(&self) -> bool {
        self.id == BlockId(0)
    }

    /// The piece is its block, whole.
    pub fn is_whole_block(&self) -> bool {
        !self.is_hole()
            && self.block_offset_bytes == 0
            && self.length_bytes == self.block_length_bytes
    }
}

/// Bytes `offset_bytes..offset_bytes + length_bytes` of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRange {
    pub offset_bytes: u64,
    pub length_bytes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MinionState {
    Live,
    /// Missed heartbeats: not chosen for new blocks, tried last for reads.
    Stale,
    Dead,
    Decommissioning,
    /// Drained: every block it held has its full replication elsewhere, so
    /// it can be switched off.
    Decommissioned,
    /// Registered and heartbeating, its block report not in yet: not chosen
    /// for new blocks until it is (appended in protocol 4).
    Joining,
}

impl MinionState {
    /// The state's name, as commands, pages and metrics show it.
    pub fn name(self) -> &'static str {
        match self {
            MinionState::Live => "live",
            MinionState::Stale => "stale",
            MinionState::Dead => "dead",
            MinionState::Decommissioning => "decommissioning",
            MinionState::Decommissioned => "decommissioned",
            MinionState::Joining => "joining",
        }
    }
}

/// One line of `dfs df`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinionReport {
    pub id: MinionId,
    pub address: String,
    pub state: MinionState,
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub available_bytes: u64,
    pub block_count: u64,
    /// Milliseconds since its last heartbeat.
    pub last_heartbeat_age_ms: u64,
    /// Data directories taken out of service, with why.
    pub failed_directories: Vec<String>,
    /// Its traffic over its heartbeats of about the last 2 s (protocol 10).
    pub rates: TrafficRates,
}

/// A minion's byte counters since it started, sent with each heartbeat
/// (protocol 10): the master turns them into rates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinionTraffic {
    /// Block bytes sent to readers.
    pub read_bytes: u64,
    /// Block bytes stored (client writes, batches and copies that arrive).
    pub written_bytes: u64,
    /// Block bytes passed to the next pipeline member.
    pub forwarded_bytes: u64,
    /// Block bytes sent as copies the master asked for.
    pub copied_bytes: u64,
}

/// A minion's traffic in bytes per second, as the master last measured it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficRates {
    pub read_bytes_per_s: u64,
    pub written_bytes_per_s: u64,
    pub forwarded_bytes_per_s: u64,
    pub copied_bytes_per_s: u64,
}

/// Requests to the master, from clients and from minions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MasterRequest {
    // --- from minions ---
    /// A minion (re)joins. `cluster` is None on its very first start.
    Register {
        minion: MinionId,
        cluster: Option<ClusterId>,
        address: String,
        capacity_bytes: u64,
        used_bytes: u64,
        available_bytes: u64,
    },
    Heartbeat {
        minion: MinionId,
        capacity_bytes: u64,
        used_bytes: u64,
        available_bytes: u64,
        block_count: u64,
        /// Its byte counters (protocol 10).
        traffic: MinionTraffic,
    },
    /// The blocks a minion holds. A report may span several frames: the first
    /// has `first` set (the master forgets what it knew of that minion), the
    /// last has `last` set.
    BlockReport {
        minion: MinionId,
        blocks: Vec<StoredBlock>,
        first: bool,
        last: bool,
    },

    // --- from clients: namespace ---
    Stat {
        path: String,
    },
    /// A page of a directory's entries in name order, after `start_after`.
    List {
        path: String,
        start_after: Option<String>,
        limit: u32,
    },
    Mkdir {
        path: String,
        parents: bool,
        mode: u32,
    },
    Delete {
        path: String,
        recursive: bool,
    },
    Rename {
        source: String,
        target: String,
    },

    // --- from clients: writing a file ---
    /// Starts writing a file. Nothing is visible at `path` until `CloseWrite`.
    OpenWrite {
        path: String,
        /// None: the cluster default.
        replication: Option<u8>,
        /// None: the cluster default.
        block_bytes: Option<u64>,
        overwrite: bool,
        mode: u32,
        /// Also allocate the first block (as `AllocateBlock` with nothing
        /// excluded): one round trip less for a small file.
        allocate_first_block: bool,
    },
    /// Chooses minions for the next block of an open write.
    AllocateBlock {
        write: u64,
        /// Minions the client could not reach for this write.
        excluded: Vec<MinionId>,
    },
    /// Records a sealed block: it is the next block of the file.
    CommitBlock {
        write: u64,
        block: BlockId,
        /// As allocated; a commit of another generation is refused.
        generation: Generation,
        length_bytes: u64,
        /// Minions that acknowledged the sealed block.
        replicas: Vec<MinionId>,
        /// CRC32C of the block's bytes, kept by the master so a file's
        /// checksum needs no data read.
        crc32c: u32,
    },
    /// Gives up an allocated block that was not committed.
    AbandonBlock {
        write: u64,
        block: BlockId,
    },
    /// Makes the written file visible at its path, replacing any old version.
    CloseWrite {
        write: u64,
        /// Commits this block first (as `CommitBlock`): one round trip less
        /// for the last block of a file.
        last_block: Option<BlockCommit>,
        /// The file's modification time (ms since the epoch); None: now.
        modified_ns: Option<u64>,
    },
    /// Gives up a write; its blocks are collected.
    AbortWrite {
        write: u64,
    },

    // --- from clients: reading and reports ---
    /// A file's status and a page of its pieces with their locations: the
    /// pieces from the one holding byte `offset_bytes` on (or, when
    /// `first_index` is set, from that piece on), at most `limit` of them
    /// (clamped to `limits::GET_BLOCKS_PAGE_MAX`); none when the offset or
    /// index is at or past the end of the file.
    GetBlocks {
        path: String,
        offset_bytes: u64,
        limit: u32,
        /// Protocol 7: the page starts at this piece.
        first_index: Option<u64>,
        /// Protocol 7: the file with this inode, whatever its names are now
        /// (a reader goes on with the file it opened, also once it was
        /// renamed, or removed while a session holds it open).
        inode: Option<u64>,
    },
    ClusterReport,

    // --- from minions, appended ---
    /// What changed on a minion since its last report (incremental block
    /// report), in the order it happened: replicas sealed (written by a
    /// client's pipeline or copied by re-replication) and replicas deleted
    /// (as the master asked, or found absent when asked).
    BlockChanges {
        minion: MinionId,
        changes: Vec<ReplicaChange>,
    },

    // --- appended in protocol 3 ---
    /// Changes attributes of an entry; None leaves one as it is.
    SetAttributes {
        path: String,
        mode: Option<u32>,
        owner: Option<String>,
        group: Option<String>,
        modified_ns: Option<u64>,
        accessed_ns: Option<u64>,
    },
    /// The health of the blocks of the files at or under `path`, a page at a
    /// time: files in path order after `start_after`, at most `limit` files
    /// looked at per page.
    Fsck {
        path: String,
        start_after: Option<String>,
        limit: u32,
    },
    /// Starts draining a minion: its replicas stop counting towards their
    /// blocks' targets and are copied elsewhere; it gets no new blocks.
    Decommission {
        minion: MinionId,
    },
    /// Puts a decommissioning or decommissioned minion back in service.
    Recommission {
        minion: MinionId,
    },
    /// Replicas that failed checksum verification: found by a client's read
    /// or by a minion (its reader or scrubber). `reporter` is the minion that
    /// sends it, None for a client.
    ReportBadReplicas {
        reporter: Option<MinionId>,
        replicas: Vec<BadReplica>,
    },
    /// A data directory of a minion failed and is out of service; the
    /// minion sends a full block report of what it still holds after this.
    DataDirectoryFailed {
        minion: MinionId,
        directory: String,
        reason: String,
    },

    // --- appended in protocol 4 ---
    /// Several change requests (`OpenWrite`, `CloseWrite`, `AbortWrite`,
    /// `Mkdir`, ...; no lookups, no minion reports, no nested batch) in one
    /// round trip: applied in order, each answered on its own, and answered
    /// together once all of them are journaled. At most
    /// `limits::BATCH_REQUESTS_MAX`.
    Batch {
        /// Each entry one postcard-encoded `MasterRequest`, so a batch never
        /// nests at decode time: a batch inside a batch stays bytes until
        /// the master decodes that entry and refuses it.
        requests: Vec<Encoded>,
        /// Every first block the batch's `OpenWrite`s allocate goes to one
        /// pipeline (the first one chosen), so that a client can write them
        /// to the minions together (`MinionRequest::WriteBlocks`).
        same_pipeline: bool,
    },

    // --- appended in protocol 6 ---
    /// Makes a symbolic link at `path` whose target is the text `target`
    /// (at most `limits::SYMLINK_TARGET_BYTES_MAX` bytes, never empty).
    Symlink {
        path: String,
        target: String,
    },
    /// Gives the file or symbolic link at `source` another name, `target`
    /// (a hard link); directories have one name only.
    Link {
        source: String,
        target: String,
    },
    /// The target of the symbolic link at `path`: `LinkTarget`.
    ReadLink {
        path: String,
    },
    /// Starts a lock session (one per mount): answered with `Session`. Its
    /// locks last while it is renewed within its lease.
    OpenSession,
    /// Keeps a session's locks: `Ok`, or `InvalidArgument` when it expired
    /// (its locks are gone).
    RenewSession {
        session: u64,
    },
    /// Ends a session and drops its locks.
    CloseSession {
        session: u64,
    },
    /// Takes (`kind` Some) or drops (None) a byte-range lock of `owner` on
    /// the file `inode`: `Ok`, or `LockConflict` naming a lock in the way.
    /// POSIX rules: an owner's new lock replaces its own where they
    /// overlap; adjacent locks of one kind merge.
    Lock {
        session: u64,
        inode: u64,
        owner: u64,
        kind: Option<LockKind>,
        range: LockRange,
    },
    /// The first lock that would stop `Lock` with this kind and range:
    /// `LockConflict`, or `Ok` when there is none (F_GETLK).
    TestLock {
        session: u64,
        inode: u64,
        owner: u64,
        kind: LockKind,
        range: LockRange,
    },
    /// Drops every lock of `owner` on `inode` (a close: POSIX drops a
    /// process's locks on a file when it closes any descriptor of it).
    ReleaseLocks {
        session: u64,
        inode: u64,
        owner: u64,
    },
    /// Makes a special file (`kind` one of `EntryKind::is_special`) at
    /// `path` with permission bits `mode` and, for a device, `rdev`.
    Mknod {
        path: String,
        kind: EntryKind,
        mode: u32,
        rdev: u32,
    },

    // --- appended in protocol 7 ---
    /// Closes a write as a change to the file at its path instead of its
    /// new contents: the write's bytes, in order, replace the file's
    /// `ranges` (in the order given, each `length_bytes` of the written
    /// stream; they must add up to what was written), and the file then
    /// has `size_bytes` (shorter: cut; longer: a hole reads as zeros). A
    /// write of nothing with no ranges truncates. No file at the path: one
    /// is made, holes where nothing was written. Answered as `CloseWrite`.
    PatchWrite {
        write: u64,
        last_block: Option<BlockCommit>,
        ranges: Vec<FileRange>,
        size_bytes: u64,
        modified_ns: Option<u64>,
        /// Refused (`AlreadyExists`) unless the file's contents are still
        /// this version: a rewrite that read them (a compaction) loses a
        /// race with a writer rather than undoing its change.
        if_version: Option<u64>,
        /// The file with this inode, whatever its names are now, instead
        /// of the one at the write's path (`NotFound` once it has none).
        inode: Option<u64>,
    },
    /// Sets the extended attribute `name` (a `user.` name) of the entry at
    /// `path` to `value`: `Ok`.
    SetXattr {
        path: String,
        name: String,
        value: Vec<u8>,
        how: XattrSet,
    },
    /// Removes an extended attribute: `Ok`, or `NoAttribute`.
    RemoveXattr {
        path: String,
        name: String,
    },
    /// The value of an extended attribute: `XattrValue`, or `NoAttribute`.
    GetXattr {
        path: String,
        name: String,
    },
    /// The names of an entry's extended attributes: `XattrNames`.
    ListXattrs {
        path: String,
    },
    /// The lock session `session` has the file `inode` open: it outlives
    /// its last name until released (`Ok`).
    Hold {
        session: u64,
        inode: u64,
    },
    /// The session closed the file (`Ok`); a file without names goes with
    /// its last holder.
    Release {
        session: u64,
        inode: u64,
    },
    /// `Lock` of a lock the mount held before the master restarted: taken
    /// also in the grace after a restart, when `Lock` waits (`Starting`).
    ReclaimLock {
        session: u64,
        inode: u64,
        owner: u64,
        kind: LockKind,
        range: LockRange,
    },

    // --- appended in protocol 8 ---
    /// A minion starts proving on this connection that it holds the cluster
    /// key (`auth`): `nonce` is its fresh random `NONCE_BYTES`. Answered by
    /// `Challenge`.
    Authenticate {
        minion: MinionId,
        nonce: Vec<u8>,
    },
    /// The minion's proof, answering the master's `Challenge`; `Ok` binds
    /// the connection to the minion.
    ProveMember {
        proof: Vec<u8>,
    },
    /// A client starts proving its identity (`identity`) on this
    /// connection (appended in protocol 10): `nonce` is its fresh random
    /// `NONCE_BYTES`. Answered by `Challenge`.
    AuthenticateClient {
        principal: ClientPrincipal,
        nonce: Vec<u8>,
    },
    /// The client's proof, answering the master's `Challenge`; `Ok` binds
    /// the connection to the principal.
    ProveClient {
        proof: Vec<u8>,
    },

    // --- appended in protocol 11 ---
    /// How to reach the minions' block data (`tls`): answered by
    /// `DataTrust`.
    DataTrust,
    /// The file `inode` was opened for reading: the master moves its
    /// access time to now when `relatime` says so (the access time is not
    /// after the modification and change times, or is a day old), for a
    /// caller that may read it. Answered `Ok`.
    MarkAccessed {
        inode: u64,
    },

    // --- appended in protocol 13 ---
    /// Starts a write whose commit changes the file `inode`, whatever its
    /// names are now (also none, while a session holds it open): answered
    /// as `OpenWrite`. Nothing at any path is checked or changed; `path` is
    /// the name the caller knows the file by, for messages only. Its
    /// `CloseWrite` replaces the file's contents with what was written and
    /// its `PatchWrite` changes them (as with `inode` set); neither sets a
    /// modification time.
    OpenInodeWrite {
        inode: u64,
        path: String,
        /// None: the cluster default.
        replication: Option<u8>,
        /// None: the cluster default.
        block_bytes: Option<u64>,
        allocate_first_block: bool,
    },
}

/// Who a client proves to be (`identity`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientPrincipal {
    /// Holds the cluster key; asserts any user, as a host does.
    Member,
    /// A trusted host: asserts its callers' users and groups.
    Host { name: String, issued_s: u64 },
    /// One user: every request is made as `name`, with `groups`.
    User {
        name: String,
        groups: Vec<String>,
        issued_s: u64,
    },
}

/// How `SetXattr` treats an attribute that is there or not (as
/// `XATTR_CREATE` and `XATTR_REPLACE` of setxattr(2)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum XattrSet {
    /// Made or replaced.
    Either,
    /// Made; `AlreadyExists` if it is there.
    Create,
    /// Replaced; `NoAttribute` if it is not there.
    Replace,
}

/// A lock's kind: shared (read) or exclusive (write).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockKind {
    Read,
    Write,
}

/// Bytes `start..end` of a file; `end` u64::MAX: to its end and beyond.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRange {
    pub start: u64,
    pub end: u64,
}

/// The last block of a write, committed by `CloseWrite`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockCommit {
    pub block: BlockId,
    pub generation: Generation,
    pub length_bytes: u64,
    /// Minions that acknowledged the sealed block.
    pub replicas: Vec<MinionId>,
    pub crc32c: u32,
}

/// A block allocated for a write and its pipeline, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocatedBlock {
    pub block: BlockId,
    pub generation: Generation,
    pub targets: Vec<MinionAddress>,
    /// Protocol 10: the block access token the pipeline's members want for
    /// storing the block and forwarding it to the rest of `targets`, when
    /// the cluster has a key; empty otherwise.
    pub token: Vec<u8>,
}

/// One replica that failed verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadReplica {
    pub block: BlockId,
    /// The generation of the bad replica: a report of another generation
    /// than the block's is about no replica the master counts.
    pub generation: Generation,
    pub minion: MinionId,
    /// What was wrong, one line ("chunk 3: CRC32C mismatch").
    pub reason: String,
}

/// One block of a file that `Fsck` found unhealthy. The replica counts
/// are disjoint; replicas on dead minions are in none of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsckBlock {
    pub id: BlockId,
    /// Position of the block in its file, from 0.
    pub index: u64,
    pub length_bytes: u64,
    /// Replicas on live minions that are not known to be corrupt.
    pub live_replicas: u8,
    /// Replicas on stale minions, not known to be corrupt.
    pub stale_replicas: u8,
    /// Replicas on decommissioning (or decommissioned) minions that are not
    /// dead, not known to be corrupt.
    pub decommissioning_replicas: u8,
    /// Replicas reported corrupt (on minions that are not dead).
    pub corrupt_replicas: u8,
}

/// What is wrong with a block, as `Fsck` judges it; a block may be corrupt
/// and under-replicated at once. Only over-replication is healthy (the
/// master trims it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockHealth {
    /// No good replica on a live, stale or decommissioning minion.
    pub missing: bool,
    /// At least one replica was reported corrupt.
    pub corrupt: bool,
    /// Not missing, but fewer good live replicas than the target
    /// (replicas on decommissioning minions do not count).
    pub under_replicated: bool,
    /// More good live replicas than the target.
    pub over_replicated: bool,
}

impl BlockHealth {
    /// True when nothing is wrong but perhaps a surplus.
    pub fn is_healthy(&self) -> bool {
        !(self.missing || self.corrupt || self.under_replicated)
    }

    /// True when there is anything to list, a surplus included.
    pub fn is_listed(&self) -> bool {
        !self.is_healthy() || self.over_replicated
    }
}

impl FsckBlock {
    /// The block's health for a file of target `replication`.
    pub fn health(&self, replication: u8) -> BlockHealth {
        let good = u32::from(self.live_replicas)
            + u32::from(self.stale_replicas)
            + u32::from(self.decommissioning_replicas);
        let missing = good == 0;
        BlockHealth {
            missing,
            corrupt: self.corrupt_replicas > 0,
            under_replicated: !missing && self.live_replicas < replication,
            over_replicated: self.live_replicas > replication,
        }
    }
}

/// A file with at least one block to list (unhealthy or over-replicated).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsckFile {
    pub path: String,
    pub size_bytes: u64,
    /// Target replication.
    pub replication: u8,
    /// Counts over all the file's blocks (as `BlockHealth` judges them).
    pub missing_blocks: u64,
    pub corrupt_blocks: u64,
    pub under_replicated_blocks: u64,
    pub over_replicated_blocks: u64,
    /// The blocks to list, in file order: the first ones only when the
    /// page's limit (`FSCK_BLOCKS_PER_PAGE_MAX`) was reached.
    pub blocks: Vec<FsckBlock>,
    /// Blocks to list that were left out of `blocks`.
    pub unlisted_blocks: u64,
}

/// One sealed replica a minion holds, as its block reports say: what the
/// master compares with its record of the block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredBlock {
    pub block: BlockId,
    pub generation: Generation,
    pub length_bytes: u64,
    /// CRC32C of the replica's bytes, as its writer recorded it.
    pub crc32c: u32,
}

impl StoredBlock {
    pub fn replica(&self) -> ReplicaId {
        ReplicaId {
            block: self.block,
            generation: self.generation,
        }
    }
}

/// One change of what a minion holds, in an incremental report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaChange {
    /// A replica was sealed here.
    Stored(StoredBlock),
    /// The replica is gone from here (deleted as asked, or not here when
    /// the master asked for its deletion).
    Deleted(ReplicaId),
}

/// Work the master gives a minion in the answer to its heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MinionCommand {
    /// Copy this sealed replica to `targets` as a pipeline (`targets[0]`
    /// first, the rest its downstream), only if the replica here is this
    /// very one (generation, length and CRC32C) and reads back whole.
    Replicate {
        replica: StoredBlock,
        targets: Vec<MinionAddress>,
    },
    /// Remove these replicas, sealed or quarantined (no file needs them
    /// here), and report each as deleted. A replica of the same block with
    /// another generation is left alone.
    Delete { replicas: Vec<ReplicaId> },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MasterResponse {
    Ok,
    Error(RemoteError),
    Registered {
        cluster: ClusterId,
        heartbeat_interval_ms: u64,
    },
    Status(EntryStatus),
    Listing {
        entries: Vec<EntryStatus>,
        /// More entries follow the last one returned.
        more: bool,
    },
    WriteOpened {
        write: u64,
        replication: u8,
        block_bytes: u64,
        /// Set when `OpenWrite` asked for the first block.
        first_block: Option<AllocatedBlock>,
    },
    BlockAllocated {
        block: BlockId,
        generation: Generation,
        /// The pipeline, in order. May be shorter than the replication when
        /// fewer minions are live.
        targets: Vec<MinionAddress>,
        /// As `AllocatedBlock::token` (protocol 10).
        token: Vec<u8>,
    },
    /// A page of `GetBlocks`.
    Blocks {
        status: EntryStatus,
        /// Index of the page's first piece in the file (protocol 7).
        first_index: u64,
        blocks: Vec<LocatedBlock>,
        /// Blocks follow the last one of this page.
        more: bool,
    },
    Cluster {
        minions: Vec<MinionReport>,
        default_replication: u8,
        default_block_bytes: u64,
        file_count: u64,
        directory_count: u64,
        block_count: u64,
    },
    /// The answer to `Heartbeat` (appended; a minion also accepts `Ok`,
    /// which means no commands).
    HeartbeatAck {
        commands: Vec<MinionCommand>,
    },

    // --- appended in protocol 3 ---
    /// A page of `Fsck`.
    FsckPage {
        /// Files of this page with unhealthy blocks.
        files: Vec<FsckFile>,
        /// Files and blocks looked at in this page.
        scanned_files: u64,
        scanned_blocks: u64,
        /// Where the next page starts (its `start_after`); None at the end.
        resume_after: Option<String>,
    },
    /// Answers to a `Batch`, in its order (`Error` for a request that
    /// failed): each entry one postcard-encoded `MasterResponse`, so a
    /// client's decoding never recurses either.
    Batch(Vec<Encoded>),
    /// Answers `ReadLink` (appended in protocol 6).
    LinkTarget {
        target: String,
    },
    /// Answers `OpenSession`: the session and how long it lasts unrenewed.
    Session {
        session: u64,
        lease_ms: u64,
    },
    /// A lock in the way of a `Lock` or `TestLock`: its holder's session
    /// and owner, kind and range.
    LockConflict {
        session: u64,
        owner: u64,
        kind: LockKind,
        range: LockRange,
    },
    /// Answers `GetXattr` (appended in protocol 7).
    XattrValue {
        value: Vec<u8>,
    },
    /// Answers `ListXattrs`, in name order.
    XattrNames {
        names: Vec<String>,
    },
    /// Answers `Authenticate` (appended in protocol 8): the master's nonce
    /// and its own proof of the key, which the minion checks first.
    Challenge {
        nonce: Vec<u8>,
        proof: Vec<u8>,
    },
    /// Answers `DataTrust` (appended in protocol 11): the certificate of
    /// the cluster's data authority (DER; empty without a key), which the
    /// minions' certificates are signed by, and whether block data must
    /// travel over TLS (`--tls-data`).
    DataTrust {
        authority: Vec<u8>,
        required: bool,
    },
    /// Answers `CloseWrite` and `PatchWrite` (protocol 13): the inode of
    /// the file the write made or changed, so a writer need not look it up
    /// (and cannot find another file that took the path since).
    Closed {
        inode: u64,
    },
}

/// Requests to a minion, from clients and from the minion before it in a pipeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MinionRequest {
    /// Starts a pipeline write of a new block. The receiver forwards this to
    /// `downstream[0]` with the rest of the list, then receives `Data` frames
    /// (chunks, in order), each stored and forwarded as it arrives, and finally
    /// a `SealBlock` request. With a cluster key, `Credentials::token` holds
    /// the block's write token, which names this member and `downstream`.
    WriteBlock {
        block: BlockId,
        generation: Generation,
        downstream: Vec<MinionAddress>,
        /// Acknowledge only once the block is on stable storage.
        sync: bool,
    },
    /// Ends a pipeline write; answered with `Sealed` once every member answered.
    SealBlock { block: BlockId, length_bytes: u64 },
    /// Streams part of a sealed block: the answer is `ReadStarted` followed by
    /// `Data` frames of whole chunks (the last may be short) from
    /// `ReadStarted.first_offset_bytes` to the end of the range.
    ReadBlock {
        block: BlockId,
        /// The generation the reader expects; a replica of another one is
        /// refused as not found.
        generation: Generation,
        offset_bytes: u64,
        length_bytes: u64,
    },
    /// Starts a pipeline write of several small blocks in one exchange (in
    /// protocol 4). The receiver forwards this to `downstream[0]` with the
    /// rest of the list, then receives one `Data` frame per block, in the
    /// order of `blocks`, holding all of that block; it stores and forwards
    /// them and, once the last one arrived, seals them all and answers
    /// `BatchSealed`. Each block holds 1 to `CHUNK_BYTES` bytes; at most
    /// `limits::WRITE_BATCH_BLOCKS_MAX` blocks and
    /// `limits::WRITE_BATCH_BYTES_MAX` bytes in all.
    WriteBlocks {
        blocks: Vec<BatchBlock>,
        downstream: Vec<MinionAddress>,
        /// Acknowledge only once the blocks are on stable storage.
        sync: bool,
    },
    /// Protocol 12: makes replicas sealed here without `sync` durable (each
    /// file's data and its name), as a `sync` write would have before its
    /// answer: a client's `fsync` after writes it let return early.
    /// Answered `Durable` once all it holds are (listing those it does not
    /// hold: freed since, or lost), or an error naming the first that could
    /// not be flushed. At most `limits::SYNC_REPLICAS_MAX` replicas.
    SyncReplicas { replicas: Vec<ReplicaId> },
}

/// A block of a `WriteBlocks` batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchBlock {
    pub block: BlockId,
    pub generation: Generation,
    pub length_bytes: u64,
    /// Protocol 10: the block's write token (`AllocatedBlock::token`);
    /// the request's `Credentials::token` is not used.
    pub token: Vec<u8>,
}

impl BatchBlock {
    pub fn replica(&self) -> ReplicaId {
        ReplicaId {
            block: self.block,
            generation: self.generation,
        }
    }
}

/// Who stored one block of a batch, and who failed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SealedBlock {
    pub block: BlockId,
    /// Members that have the whole block sealed (durably when asked).
    pub stored: Vec<MinionId>,
    pub failed: Vec<ReplicaFailure>,
}

/// A pipeline member that could not store a block, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaFailure {
    pub minion: MinionAddress,
    pub error: RemoteError,
}

/// How a minion's message for a member behind a broken link begins: that
/// member did not fail, the pipeline broke before it.
pub const NOT_REACHED_PREFIX: &str = "not reached: ";

impl ReplicaFailure {
    /// True when the member itself failed, false when it was only not
    /// reached: a writer excludes from its later pipelines only the first.
    pub fn is_own_failure(&self) -> bool {
        !self.error.message.starts_with(NOT_REACHED_PREFIX)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MinionResponse {
    Error(RemoteError),
    Sealed {
        /// Members that have the whole block sealed (durably when asked).
        stored: Vec<MinionId>,
        failed: Vec<ReplicaFailure>,
    },
    ReadStarted {
        block_length_bytes: u64,
        /// Chunk-aligned offset of the first data frame that follows.
        first_offset_bytes: u64,
        /// The CRC32C of every chunk of the block, as stored: a reader
        /// combines them and compares the result with the block CRC32C the
        /// master recorded before it trusts any of them, then checks each
        /// chunk it receives against this list.
        chunk_crcs: Vec<u32>,
    },
    /// The answer to `WriteBlocks`: every block of the batch, in its order.
    BatchSealed {
        blocks: Vec<SealedBlock>,
    },
    /// The answer to `SyncReplicas`: every replica named is on stable
    /// storage but those listed, which this minion does not hold.
    Durable {
        not_held: Vec<ReplicaId>,
    },
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::wire::{decode_message, read_message, write_message, FrameKind};

    #[test]
    fn messages_round_trip() {
        let request = Envelope {
            credentials: Credentials {
                user: "ana".into(),
                groups: vec!["staff".into()],
                token: vec![],
            },
            body: MasterRequest::OpenWrite {
                path: "/data/x".into(),
                replication: Some(3),
                block_bytes: None,
                overwrite: false,
                mode: 0o644,
                allocate_first_block: true,
            },
        };
        let mut wire = Vec::new();
        write_message(&mut wire, FrameKind::Request, 1, &request).expect("encode");
        let decoded: Envelope<MasterRequest> =
            decode_message(&wire[crate::wire::FRAME_HEADER_BYTES..]).expect("decode");
        assert_eq!(decoded, request);
    }

    #[test]
    fn healing_messages_keep_their_places_and_round_trip() {
        // Postcard encodes the variant index first: variants keep their
        // places across protocol versions where they can.
        let stored = StoredBlock {
            block: BlockId(2),
            generation: Generation(5),
            length_bytes: 3,
            crc32c: 4,
        };
        let cases: [(Vec<u8>, u8); 4] = [
            (
                postcard::to_stdvec(&MasterRequest::BlockChanges {
                    minion: MinionId(1),
                    changes: vec![
                        ReplicaChange::Stored(stored),
                        ReplicaChange::Deleted(stored.replica()),
                    ],
                })
                .expect("encode"),
                16,
            ),
            (
                postcard::to_stdvec(&MasterRequest::ClusterReport).expect("encode"),
                15,
            ),
            (
                postcard::to_stdvec(&MasterResponse::HeartbeatAck { commands: vec![] })
                    .expect("encode"),
                9,
            ),
            (postcard::to_stdvec(&MasterResponse::Ok).expect("encode"), 0),
        ];
        for (bytes, index) in cases {
            assert_eq!(bytes[0], index, "{bytes:?}");
        }
        let ack = MasterResponse::HeartbeatAck {
            commands: vec![
                MinionCommand::Replicate {
                    replica: stored,
                    targets: vec![MinionAddress {
                        id: MinionId(9),
                        address: "127.0.0.1:1".into(),
                    }],
                },
                MinionCommand::Delete {
                    replicas: vec![stored.replica()],
                },
            ],
        };
        let bytes = postcard::to_stdvec(&ack).expect("encode");
        let decoded: MasterResponse = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!(decoded, ack);
    }

    #[test]
    fn encoded_entries_round_trip_and_bad_bytes_are_protocol_errors() {
        let request = MasterRequest::Mkdir {
            path: "/a".into(),
            parents: true,
            mode: 0o755,
        };
        let entry = Encoded::of(&request).expect("encode");
        assert_eq!(entry.decode::<MasterRequest>().expect("decode"), request);

        let mut trailing = entry.clone();
        trailing.0.push(0);
        let error = trailing
            .decode::<MasterRequest>()
            .expect_err("trailing byte");
        assert!(matches!(error, Error::Protocol(_)), "{error:?}");
        assert_eq!(
            error.to_string(),
            "protocol error: 1 trailing bytes after a MasterRequest"
        );

        let error = Encoded(vec![0xff; 3])
            .decode::<MasterRequest>()
            .expect_err("garbage");
        assert!(matches!(error, Error::Protocol(_)), "{error:?}");
        assert!(
            error
                .to_string()
                .starts_with("protocol error: undecodable MasterRequest of 3 bytes: "),
            "{error}"
        );
    }

    /// The postcard bytes of a `MasterRequest::Batch` holding one entry, a
    /// batch holding one entry, ... `levels` batches deep around an empty
    /// batch. Built outside in, in time linear in the depth: each level is
    /// the variant index, an entry count of 1 and the entry's length before
    /// the level inside it, and `same_pipeline` after it.
    fn nested_batch_bytes(levels: usize) -> Vec<u8> {
        let empty = MasterRequest::Batch {
            requests: Vec::new(),
            same_pipeline: false,
        };
        let innermost = postcard::to_stdvec(&empty).expect("encode");
        // The empty batch is its variant index, 0 entries and `false`.
        let variant = &innermost[..innermost.len() - 2];
        let mut bytes: VecDeque<u8> = innermost.iter().copied().collect();
        for _ in 0..levels {
            let length = postcard::to_stdvec(&bytes.len()).expect("encode a length");
            for &byte in variant.iter().chain([1u8].iter()).chain(&length).rev() {
                bytes.push_front(byte);
            }
            bytes.push_back(0);
        }
        bytes.into()
    }

    #[test]
    fn nested_batch_bytes_are_batches_of_batches() {
        // Where the batch variants were before their entries became bytes.
        let empty_request = MasterRequest::Batch {
            requests: Vec::new(),
            same_pipeline: false,
        };
        assert_eq!(postcard::to_stdvec(&empty_request).expect("encode")[0], 23);
        let empty_response = MasterResponse::Batch(Vec::new());
        assert_eq!(postcard::to_stdvec(&empty_response).expect("encode")[0], 11);

        let two = nested_batch_bytes(2);
        let outer: MasterRequest = postcard::from_bytes(&two).expect("decode");
        let MasterRequest::Batch { requests, .. } = outer else {
            panic!("{outer:?}");
        };
        let middle: MasterRequest = requests[0].decode().expect("decode");
        let MasterRequest::Batch { requests, .. } = middle else {
            panic!("{middle:?}");
        };
        let inner: MasterRequest = requests[0].decode().expect("decode");
        assert_eq!(
            inner,
            MasterRequest::Batch {
                requests: Vec::new(),
                same_pipeline: false
            }
        );
    }

    #[test]
    fn a_deeply_nested_batch_decodes_one_level_at_a_time() {
        const LEVELS: usize = 100_000;
        let entry = Encoded(nested_batch_bytes(LEVELS));
        let request = Envelope {
            credentials: Credentials::default(),
            body: MasterRequest::Batch {
                requests: vec![entry.clone()],
                same_pipeline: true,
            },
        };
        let mut wire = Vec::new();
        write_message(&mut wire, FrameKind::Request, 7, &request).expect("encode");
        // A small stack: decoding that recursed once per level would
        // overflow it many times over.
        let decoded = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let mut buffer = Vec::new();
                let (id, envelope): (u64, Envelope<MasterRequest>) =
                    read_message(&mut wire.as_slice(), FrameKind::Request, &mut buffer)
                        .expect("the outer frame decodes")
                        .expect("one frame");
                assert_eq!(id, 7);
                let MasterRequest::Batch { requests, .. } = &envelope.body else {
                    panic!("not a batch");
                };
                // One level further down is one more batch of one entry.
                let inner: MasterRequest = requests[0].decode().expect("one level down");
                (envelope.body, inner)
            })
            .expect("spawn")
            .join()
            .expect("decoding did not overflow the stack");
        let (outer, inner) = decoded;
        let MasterRequest::Batch {
            requests,
            same_pipeline,
        } = outer
        else {
            panic!("not a batch");
        };
        assert!(same_pipeline);
        assert_eq!(requests, vec![entry], "one entry of bytes, as sent");
        match inner {
            MasterRequest::Batch { requests, .. } => assert_eq!(requests.len(), 1),
            other => panic!("expected the next level's batch, got {other:?}"),
        }
    }

    #[test]
    fn fsck_block_health() {
        let block = |live, stale, decommissioning, corrupt| FsckBlock {
            id: BlockId(1),
            index: 0,
            length_bytes: 1,
            live_replicas: live,
            stale_replicas: stale,
            decommissioning_replicas: decommissioning,
            corrupt_replicas: corrupt,
        };
        let health = |missing, corrupt, under_replicated, over_replicated| BlockHealth {
            missing,
            corrupt,
            under_replicated,
            over_replicated,
        };
        // (live, stale, decommissioning, corrupt), target 3 -> health, healthy.
        for (counts, want, healthy) in [
            ((3, 0, 0, 0), health(false, false, false, false), true),
            ((4, 0, 0, 0), health(false, false, false, true), true),
            ((2, 1, 0, 0), health(false, false, true, false), false),
            ((0, 0, 3, 0), health(false, false, true, false), false),
            ((0, 1, 0, 0), health(false, false, true, false), false),
            ((0, 0, 0, 0), health(true, false, false, false), false),
            ((0, 0, 0, 3), health(true, true, false, false), false),
            ((3, 0, 0, 1), health(false, true, false, false), false),
            ((2, 0, 1, 1), health(false, true, true, false), false),
        ] {
            let (live, stale, decommissioning, corrupt) = counts;
            let got = block(live, stale, decommissioning, corrupt).health(3);
            assert_eq!(got, want, "{counts:?}");
            assert_eq!(got.is_healthy(), healthy, "{counts:?}");
        }
        assert!(!health(false, false, false, false).is_listed());
        assert!(health(false, false, false, true).is_listed());
    }

    #[test]
    fn long_error_messages_are_cut_on_a_char_boundary() {
        let error = RemoteError::new(ErrorKind::Io, "é".repeat(ERROR_MESSAGE_BYTES_MAX));
        assert!(error.message.len() <= ERROR_MESSAGE_BYTES_MAX);
    }

    #[test]
    fn ids_display_as_fixed_width_hex() {
        assert_eq!(BlockId(255).to_string(), "blk_00000000000000ff");
        assert_eq!(MinionId(1).to_string(), "0000000000000001");
    }
}
