//! The namespace state machine: directories, files and open writes, changed
//! only by applying an `Op`. `apply` is deterministic (every time and id comes
//! in the op) and validates an op completely before it changes anything, so
//! the same sequence of ops rebuilds the same state: a journal or a consensus
//! log can carry them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use dfs_engine::limits::{
    BLOCK_BYTES_MAX, FILE_BLOCKS_MAX, LINKS_MAX, MINIONS_MAX, NAME_BYTES_MAX, OPEN_WRITES_MAX,
    REPLICATION_MAX, SYMLINK_TARGET_BYTES_MAX, XATTR_BYTES_PER_ENTRY_MAX, XATTR_NAME_BYTES_MAX,
    XATTR_VALUE_BYTES_MAX,
};
use dfs_engine::msg::{
    relatime_due, BlockId, EntryKind, EntryStatus, ErrorKind, FileRange, Generation, MinionId,
    RemoteError, ReplicaId, StoredBlock, XattrSet,
};
use dfs_engine::path::DfsPath;

pub type InodeId = u64;
pub type WriteId = u64;
pub const ROOT_INODE: InodeId = 1;
/// The mode of a new cluster's root directory.
pub const ROOT_MODE: u32 = 0o1777;

/// A sealed block of a file: what a replica must match to be one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockMeta {
    pub id: BlockId,
    /// As allocated (checkpoint version 5; 0 for blocks of older versions).
    pub generation: Generation,
    pub length_bytes: u64,
    /// CRC32C of the block's bytes, as the writer computed it.
    pub crc32c: u32,
}

impl BlockMeta {
    pub fn replica(&self) -> ReplicaId {
        ReplicaId {
            block: self.id,
            generation: self.generation,
        }
    }

    /// True when a replica's report matches this record: same generation,
    /// length and CRC32C. Anything else is not a replica of this block.
    pub fn matches(&self, stored: &StoredBlock) -> bool {
        stored.block == self.id
            && stored.generation == self.generation
            && stored.length_bytes == self.length_bytes
            && stored.crc32c == self.crc32c
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Directory {
        children: BTreeMap<String, InodeId>,
    },
    File {
        /// The blocks the file's bytes are in, each once, in the order of
        /// their first use.
        blocks: Vec<BlockMeta>,
        size_bytes: u64,
        replication: u8,
        block_bytes: u64,
        /// None: the blocks, whole, in order (a file written front to
        /// back). Some after a patch: which parts of which blocks make the
        /// file (checkpoint version 7).
        extents: Option<Extents>,
    },
    /// A symbolic link: text the reader resolves (checkpoint version 6).
    Symlink {
        target: String,
    },
    /// A FIFO, socket or device: a name and attributes, nothing stored
    /// (checkpoint version 6). `kind` is one of `EntryKind::is_special`.
    Special {
        kind: EntryKind,
        rdev: u32,
    },
}

impl Node {
    pub fn is_directory(&self) -> bool {
        matches!(self, Node::Directory { .. })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inode {
    pub node: Node,
    pub owner: String,
    pub group: String,
    pub mode: u32,
    /// Times in nanoseconds since the Unix epoch (checkpoint version 9; a
    /// time the master gives is its clock's millisecond).
    pub modified_ns: u64,
    pub accessed_ns: u64,
    pub changed_ns: u64,
    /// The names the inode has: more than one for a file or symbolic link
    /// with hard links, always one for a directory. Derived from the
    /// directories (never written; counted again after a checkpoint is
    /// read); the inode goes when its last name does.
    pub links: u32,
}

/// A file being written: invisible until closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenWrite {
    /// Where the file goes; for a write of `inode`, the name its writer
    /// knew it by when it opened (for messages only).
    pub path: DfsPathString,
    /// A write of this file, whatever its names are now (`OpenInodeWrite`):
    /// its commit changes the file, never anything at `path`.
    pub inode: Option<InodeId>,
    pub replication: u8,
    pub block_bytes: u64,
    pub overwrite: bool,
    pub mode: u32,
    pub owner: String,
    pub group: String,
    pub blocks: Vec<BlockMeta>,
    /// Allocated, not yet committed or abandoned, with their generations.
    pub pending: BTreeMap<BlockId, Generation>,
    pub opened_ms: u64,
}

/// Paths are stored as checked strings; `DfsPath` is rebuilt on use.
pub type DfsPathString = String;

/// One logged change of the namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Mkdir {
        path: DfsPathString,
        parents: bool,
        mode: u32,
        owner: String,
        group: String,
        time_ms: u64,
    },
    Delete {
        path: DfsPathString,
        recursive: bool,
        time_ms: u64,
    },
    Rename {
        source: DfsPathString,
        target: DfsPathString,
        time_ms: u64,
    },
    OpenWrite {
        write: WriteId,
        path: DfsPathString,
        replication: u8,
        block_bytes: u64,
        overwrite: bool,
        mode: u32,
        owner: String,
        group: String,
        time_ms: u64,
    },
    /// An allocation journaled before block generations: generation 0.
    /// Only replayed; `AllocateBlockStamped` is what is written now.
    AllocateBlock {
        write: WriteId,
        block: BlockId,
    },
    CommitBlock {
        write: WriteId,
        block: BlockId,
        length_bytes: u64,
        crc32c: u32,
    },
    AbandonBlock {
        write: WriteId,
        block: BlockId,
    },
    CloseWrite {
        write: WriteId,
        time_ms: u64,
    },
    AbortWrite {
        write: WriteId,
    },
    /// Changes attributes of an entry; None leaves one as it is (times in
    /// nanoseconds; journaled in milliseconds before checkpoint version 9).
    /// Every change moves the entry's change time to `time_ms`.
    SetAttributes {
        path: DfsPathString,
        mode: Option<u32>,
        owner: Option<String>,
        group: Option<String>,
        modified_ns: Option<u64>,
        accessed_ns: Option<u64>,
        time_ms: u64,
    },
    /// Starts draining a minion: it gets no new blocks and its replicas stop
    /// counting towards their targets. Already draining: no change.
    Decommission {
        minion: MinionId,
    },
    /// Puts a minion back in service. Not draining: no change.
    Recommission {
        minion: MinionId,
    },
    /// Allocates the next block of an open write with its generation
    /// (appended with block generations).
    AllocateBlockStamped {
        write: WriteId,
        block: BlockId,
        generation: Generation,
    },
    /// Moves the block and write id spaces on by the given counts: applied
    /// when `--recover` dropped part of the journal, so that ids handed out
    /// in the lost records (which minions and clients may still hold) are
    /// never handed out again.
    SkipIds {
        block_ids: u64,
        write_ids: u64,
    },
    /// Makes a symbolic link (journal records of this op are version 2
    /// segments too: an older master refuses them as an unknown op).
    Symlink {
        path: DfsPathString,
        target: String,
        owner: String,
        group: String,
        time_ms: u64,
    },
    /// Gives the file or symbolic link at `source` the name `target` too.
    Link {
        source: DfsPathString,
        target: DfsPathString,
        time_ms: u64,
    },
    /// Makes a FIFO, socket or device node.
    Mknod {
        path: DfsPathString,
        kind: EntryKind,
        mode: u32,
        rdev: u32,
        owner: String,
        group: String,
        time_ms: u64,
    },
    /// Closes a write as a change to the file at its path: the write's
    /// blocks, in order, replace `ranges` of the file, which then has
    /// `size_bytes` (cut, or extended with a hole). No file there: one is
    /// made. With `if_version`, refused unless the file's contents are
    /// still that version (a compaction that lost a race). The contents
    /// get a new version: the first block when the result is its blocks
    /// whole and it starts with one of the write's, else a fresh id from
    /// the block id space (allocated by the op).
    PatchWrite {
        write: WriteId,
        ranges: Vec<FileRange>,
        size_bytes: u64,
        if_version: Option<u64>,
        time_ms: u64,
    },
    /// `PatchWrite` of the file with inode `inode`, whatever its names
    /// are now (it may have been renamed, or have lost the name the write
    /// was opened at to another link).
    PatchInode {
        write: WriteId,
        inode: InodeId,
        ranges: Vec<FileRange>,
        size_bytes: u64,
        if_version: Option<u64>,
        time_ms: u64,
    },
    /// Keeps the file `inode` while it is open somewhere: it outlives its
    /// last name until `Unsustain`. Already kept: no change.
    Sustain {
        inode: InodeId,
    },
    /// Ends `Sustain`: a file without names goes, its blocks freed.
    Unsustain {
        inode: InodeId,
    },
    /// Sets a `user.` extended attribute of the entry at `path`.
    SetXattr {
        path: DfsPathString,
        name: String,
        value: Vec<u8>,
        how: XattrSet,
        time_ms: u64,
    },
    /// Removes an extended attribute of the entry at `path`.
    RemoveXattr {
        path: DfsPathString,
        name: String,
        time_ms: u64,
    },
    /// The file `inode` was read (`relatime`): its access time becomes
    /// `accessed_ns`, and nothing else changes, its change time neither.
    Accessed {
        inode: InodeId,
        accessed_ns: u64,
    },
    /// `OpenWrite` of the file `inode`, whatever its names are now: no path
    /// is checked (`path` is for messages), and its commit is a patch of
    /// that file (`CloseWrite` replaces its contents).
    OpenInodeWrite {
        write: WriteId,
        inode: InodeId,
        path: DfsPathString,
        replication: u8,
        block_bytes: u64,
        owner: String,
        group: String,
        time_ms: u64,
    },
}

/// A page of a file's pieces (`Namespace::file_pieces`).
#[derive(Debug)]
pub struct FilePieces {
    pub status: EntryStatus,
    pub first_index: u64,
    /// Each piece with the block it is part of; None: a hole.
    pub pieces: Vec<(Extent, Option<BlockMeta>)>,
    pub more: bool,
}

/// A sealed block and the replication its file asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockTarget {
    /// The block as committed: what its replicas must match.
    pub stored: StoredBlock,
    pub replication: u8,
}

impl BlockTarget {
    pub fn block(&self) -> BlockId {
        self.stored.block
    }

    pub fn length_bytes(&self) -> u64 {
        self.stored.length_bytes
    }
}

/// What the namespace knows of a block a replica names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockRecord {
    /// Committed (to a file or an open write): replicas must match it.
    Committed(StoredBlock),
    /// Allocated to an open write, not committed yet.
    Pending { generation: Generation },
}

/// What an applied op freed or created, for the caller's soft state.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Replicas no file or write references any more: to delete on
    /// minions, once the op is durable.
    pub freed_blocks: Vec<ReplicaId>,
}

/// The whole namespace; the unit of a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    inodes: BTreeMap<InodeId, Inode>,
    writes: BTreeMap<WriteId, OpenWrite>,
    next_inode: InodeId,
    next_block: u64,
    next_write: WriteId,
    /// Minions being decommissioned: an administrator's intent, so it is
    /// logged and survives restarts (appended in checkpoint version 4).
    draining: BTreeSet<MinionId>,
    /// The `user.` extended attributes of inodes that have any (checkpoint
    /// version 7); they go with their inode.
    xattrs: BTreeMap<InodeId, BTreeMap<String, Vec<u8>>>,
    /// Files kept while they are open somewhere (checkpoint version 8): one
    /// that loses its last name stays, nameless, with its blocks, until
    /// `Unsustain` (the last holder closed it, or its session ended).
    sustained: BTreeSet<InodeId>,
    /// Where every block a file or an open write refers to is: derived from
    /// the inodes and writes, kept by `apply`, never written (rebuilt after
    /// a checkpoint is read), so that block lookups are not scans.
    block_index: HashMap<BlockId, BlockPlace>,
    /// How many subdirectories each directory that has any holds: what
    /// its link count reports (2 + these, as "." and each ".." are links).
    /// Derived like `block_index`, kept by `link` and `unlink`.
    subdirectories: HashMap<InodeId, u32>,
}

/// Where a referenced block is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BlockPlace {
    /// Block `index` of the file `inode`.
    File { inode: InodeId, index: usize },
    /// Committed block `index` of the open write `write`.
    Written { write: WriteId, index: usize },
    /// Allocated to the open write `write`, not committed yet.
    Pending { write: WriteId },
}

fn error(kind: ErrorKind, message: impl Into<String>) -> RemoteError {
    RemoteError::new(kind, message)
}

fn not_found(path: &DfsPath) -> RemoteError {
    error(
        ErrorKind::NotFound,
        format!("{path}: no such file or directory"),
    )
}

fn no_attribute(path: &DfsPath, name: &str) -> RemoteError {
    error(
        ErrorKind::NoAttribute,
        format!("{path}: no extended attribute {name}"),
    )
}

/// An extended attribute name: `user.` and 1 or more bytes after it, at
/// most `XATTR_NAME_BYTES_MAX` in all, no NUL.
fn check_xattr_name(path: &DfsPath, name: &str) -> Result<(), RemoteError> {
    let fits = name.len() <= XATTR_NAME_BYTES_MAX
        && name
            .strip_prefix("user.")
            .is_some_and(|rest| !rest.is_empty())
        && !name.contains('\0');
    if fits {
        Ok(())
    } else {
        Err(error(
            ErrorKind::InvalidArgument,
            format!(
                "{path}: extended attribute name {name:?} must be user. and a name, at most {XATTR_NAME_BYTES_MAX} bytes"
            ),
        ))
    }
}

/// Nanoseconds since the epoch of `ms` milliseconds (an op's time).
fn ns(ms: u64) -> u64 {
    ms.saturating_mul(1_000_000)
}

/// Permission bits an entry may carry: setuid, setgid, sticky and rwx.
pub const MODE_BITS_MAX: u32 = 0o7777;

/// An owner or group name: 1 to `NAME_BYTES_MAX` bytes, no control
/// characters, no ':' (it separates owner from group in listings).
fn check_account_name(path: &DfsPath, name: &str) -> Result<(), RemoteError> {
    if name.is_empty()
        || name.len() > NAME_BYTES_MAX
        || name.chars().any(|c| c.is_control() || c == ':')
    {
        return Err(error(
            ErrorKind::InvalidArgument,
            format!(
                "{path}: owner or group {name:?} must be 1 to {NAME_BYTES_MAX} bytes without control characters or ':'"
            ),
        ));
    }
    Ok(())
}

fn parse(path: &str) -> Result<DfsPath, RemoteError> {
    DfsPath::parse(path).map_err(|e| error(ErrorKind::InvalidArgument, e.to_string()))
}

/// Checks replication and block size as asked by a user.
pub fn check_file_parameters(replication: u8, block_bytes: u64) -> Result<(), RemoteError> {
    if replication == 0 || replication > REPLICATION_MAX {
        return Err(error(
            ErrorKind::InvalidArgument,
            format!("replication {replication}: must be between 1 and {REPLICATION_MAX}"),
        ));
    }
    if block_bytes == 0 || block_bytes > BLOCK_BYTES_MAX {
        return Err(error(
            ErrorKind::InvalidArgument,
            format!("block size {block_bytes}: must be between 1 byte and 2 GiB"),
        ));
    }
    Ok(())
}

impl Default for Namespace {
    fn default() -> Self {
        Namespace::new(0)
    }
}

impl Namespace {
    /// This namespace with its root directory's mode `mode`, as a cluster
    /// made before `ROOT_MODE` has it (for fixtures of old versions).
    #[cfg(test)]
    pub(crate) fn with_root_mode(mut self, mode: u32) -> Namespace {
        if let Some(root) = self.inodes.get_mut(&ROOT_INODE) {
            root.mode = mode;
        }
        self
    }

    /// An empty namespace: only the root directory, made at `time_ms`,
    /// root's and open to all as `/tmp` is (mode 1777: anyone makes entries
    /// in it, only their owners remove them; `dfs chmod 755 /` keeps it to
    /// root, and the admin makes each user a directory).
    pub fn new(time_ms: u64) -> Namespace {
        let root = Inode {
            node: Node::Directory {
                children: BTreeMap::new(),
            },
            owner: "root".into(),
            group: "root".into(),
            mode: ROOT_MODE,
            modified_ns: ns(time_ms),
            accessed_ns: ns(time_ms),
            changed_ns: ns(time_ms),
            links: 1,
        };
        Namespace {
            inodes: BTreeMap::from([(ROOT_INODE, root)]),
            writes: BTreeMap::new(),
            next_inode: ROOT_INODE + 1,
            next_block: 1,
            next_write: 1,
            draining: BTreeSet::new(),
            xattrs: BTreeMap::new(),
            sustained: BTreeSet::new(),
            block_index: HashMap::new(),
            subdirectories: HashMap::new(),
        }
    }

    /// Rebuilds what is derived, not written, after a load: the block
    /// index, every inode's count of names and every directory's count of
    /// subdirectories.
    pub fn rebuild_derived(&mut self) {
        self.block_index = self.built_block_index();
        let counted = self.counted_links();
        for (id, inode) in &mut self.inodes {
            inode.links = counted.get(id).copied().unwrap_or(0);
        }
        self.subdirectories = self.counted_subdirectories();
    }

    /// How many subdirectories each directory holds (none: absent).
    fn counted_subdirectories(&self) -> HashMap<InodeId, u32> {
        let mut counted = HashMap::new();
        for (id, inode) in &self.inodes {
            if let Node::Directory { children } = &inode.node {
                let subdirectories = children
                    .values()
                    .filter(|child| {
                        self.inodes
                            .get(child)
                            .is_some_and(|c| c.node.is_directory())
                    })
                    .count() as u32;
                if subdirectories > 0 {
                    counted.insert(*id, subdirectories);
                }
            }
        }
        counted
    }

    /// How many directory entries name each inode (the root: one).
    fn counted_links(&self) -> HashMap<InodeId, u32> {
        let mut counted = HashMap::from([(ROOT_INODE, 1)]);
        for inode in self.inodes.values() {
            if let Node::Directory { children } = &inode.node {
                for child in children.values() {
                    *counted.entry(*child).or_insert(0) += 1;
                }
            }
        }
        counted
    }

    fn built_block_index(&self) -> HashMap<BlockId, BlockPlace> {
        let mut index = HashMap::new();
        for (&inode, entry) in &self.inodes {
            if let Node::File { blocks, .. } = &entry.node {
                for (position, block) in blocks.iter().enumerate() {
                    index.insert(
                        block.id,
                        BlockPlace::File {
                            inode,
                            index: position,
                        },
                    );
                }
            }
        }
        for (&write, open) in &self.writes {
            for (position, block) in open.blocks.iter().enumerate() {
                index.insert(
                    block.id,
                    BlockPlace::Written {
                        write,
                        index: position,
                    },
                );
            }
            for &block in open.pending.keys() {
                index.insert(block, BlockPlace::Pending { write });
            }
        }
        index
    }

    /// Minions being decommissioned.
    pub fn draining(&self) -> &BTreeSet<MinionId> {
        &self.draining
    }

    pub fn is_draining(&self, minion: MinionId) -> bool {
        self.draining.contains(&minion)
    }

    /// The inode `id`, if there is one (for walks such as fsck's).
    pub fn inode_at(&self, id: InodeId) -> Option<&Inode> {
        self.inodes.get(&id)
    }

    /// The id the next `AllocateBlock` op should carry.
    pub fn next_block_id(&self) -> BlockId {
        BlockId(self.next_block)
    }

    /// The id the next `OpenWrite` op should carry.
    pub fn next_write_id(&self) -> WriteId {
        self.next_write
    }

    pub fn write(&self, write: WriteId) -> Option<&OpenWrite> {
        self.writes.get(&write)
    }

    pub fn open_writes(&self) -> impl Iterator<Item = (&WriteId, &OpenWrite)> {
        self.writes.iter()
    }

    /// Counts of files, directories and blocks in files.
    pub fn counts(&self) -> (u64, u64, u64) {
        let mut files = 0;
        let mut directories = 0;
        let mut blocks = 0;
        for inode in self.inodes.values() {
            match &inode.node {
                Node::Directory { .. } => directories += 1,
                Node::File { blocks: b, .. } => {
                    files += 1;
                    blocks += b.len() as u64;
                }
                Node::Symlink { .. } | Node::Special { .. } => files += 1,
            }
        }
        (files, directories, blocks)
    }

    /// True when a file or an open write refers to `block`.
    pub fn is_block_referenced(&self, block: BlockId) -> bool {
        self.block_index.contains_key(&block)
    }

    /// True when the file `inode` is kept while open (`Sustain`).
    pub fn is_sustained(&self, inode: InodeId) -> bool {
        self.sustained.contains(&inode)
    }

    /// The files kept while open.
    pub fn sustained(&self) -> impl Iterator<Item = InodeId> + '_ {
        self.sustained.iter().copied()
    }

    /// The inodes of the files at or under `path` (none if there is
    /// nothing there): the files a delete of it, or a rename onto it, may
    /// take the last name of.
    pub fn files_at_or_under(&self, path: &DfsPath) -> Vec<InodeId> {
        let Ok(id) = self.resolve(path) else {
            return Vec::new();
        };
        let mut files = Vec::new();
        let mut stack = vec![id];
        while let Some(id) = stack.pop() {
            match self.inodes.get(&id).map(|entry| &entry.node) {
                Some(Node::Directory { children }) => stack.extend(children.values().copied()),
                Some(Node::File { .. }) => files.push(id),
                _ => {}
            }
        }
        files
    }

    /// True when an open write holds `block` (allocated or committed).
    pub fn is_block_in_open_write(&self, block: BlockId) -> bool {
        matches!(
            self.block_index.get(&block),
            Some(BlockPlace::Written { .. } | BlockPlace::Pending { .. })
        )
    }

    /// A sealed block of a file or an open write with the replication it
    /// should have and its length, for the replication monitor; None for a
    /// block nothing refers to or that is not committed yet.
    pub fn block_target(&self, block: BlockId) -> Option<BlockTarget> {
        let (replication, meta) = self.committed(block)?;
        Some(BlockTarget {
            stored: stored_of(meta),
            replication,
        })
    }

    /// A committed block's record and its file's (or write's) replication.
    fn committed(&self, block: BlockId) -> Option<(u8, &BlockMeta)> {
        match *self.block_index.get(&block)? {
            BlockPlace::File { inode, index } => match &self.inodes.get(&inode)?.node {
                Node::File {
                    blocks,
                    replication,
                    ..
                } => Some((*replication, blocks.get(index)?)),
                Node::Directory { .. } | Node::Symlink { .. } | Node::Special { .. } => None,
            },
            BlockPlace::Written { write, index } => {
                let open = self.writes.get(&write)?;
                Some((open.replication, open.blocks.get(index)?))
            }
            BlockPlace::Pending { .. } => None,
        }
    }

    /// What the namespace knows of `block`: its committed record, or the
    /// generation it was allocated with; None for a block nothing references.
    pub fn block_record(&self, block: BlockId) -> Option<BlockRecord> {
        if let Some((_, meta)) = self.committed(block) {
            return Some(BlockRecord::Committed(stored_of(meta)));
        }
        match *self.block_index.get(&block)? {
            BlockPlace::Pending { write } => Some(BlockRecord::Pending {
                generation: *self.writes.get(&write)?.pending.get(&block)?,
            }),
            _ => None,
        }
    }

    /// True when `stored` is a replica of a block a file or open write
    /// references: committed with its generation, length and CRC32C, or
    /// allocated with its generation and not committed yet.
    pub fn is_replica_referenced(&self, stored: &StoredBlock) -> bool {
        match self.block_record(stored.block) {
            Some(BlockRecord::Committed(record)) => record == *stored,
            Some(BlockRecord::Pending { generation }) => generation == stored.generation,
            None => false,
        }
    }

    /// Committed blocks (in files and open writes): those a starting master
    /// waits to see located.
    pub fn committed_block_count(&self) -> usize {
        let pending: usize = self.writes.values().map(|open| open.pending.len()).sum();
        self.block_index.len().saturating_sub(pending)
    }

    /// Whether a read of `inode` at `now_ns` moves its access time
    /// (`relatime_due`).
    pub fn access_due(&self, inode: InodeId, now_ns: u64) -> Result<bool, RemoteError> {
        let entry = self
            .inodes
            .get(&inode)
            .ok_or_else(|| error(ErrorKind::NotFound, format!("inode {inode}: no such entry")))?;
        Ok(relatime_due(
            entry.accessed_ns,
            entry.modified_ns,
            entry.changed_ns,
            now_ns,
        ))
    }

    fn inode(&self, id: InodeId) -> &Inode {
        // Invariant: every id in a directory's children is in the table.
        &self.inodes[&id]
    }

    /// Resolves a path to its inode id.
    pub fn resolve(&self, path: &DfsPath) -> Result<InodeId, RemoteError> {
        let mut current = ROOT_INODE;
        for name in path.components() {
            match &self.inode(current).node {
                Node::Directory { children } => {
                    current = *children.get(name).ok_or_else(|| not_found(path))?;
                }
                Node::File { .. } | Node::Symlink { .. } | Node::Special { .. } => {
                    return Err(not_found(path))
                }
            }
        }
        Ok(current)
    }

    /// The directory that holds `path`'s last component, which must exist.
    fn parent_directory(&self, path: &DfsPath) -> Result<InodeId, RemoteError> {
        let parent = path
            .parent()
            .ok_or_else(|| error(ErrorKind::InvalidArgument, "/: is the root directory"))?;
        let id = self.resolve(&parent)?;
        match self.inode(id).node {
            Node::Directory { .. } => Ok(id),
            Node::File { .. } | Node::Symlink { .. } | Node::Special { .. } => Err(error(
                ErrorKind::NotADirectory,
                format!("{parent}: not a directory"),
            )),
        }
    }

    fn child(&self, directory: InodeId, name: &str) -> Option<InodeId> {
        match &self.inode(directory).node {
            Node::Directory { children } => children.get(name).copied(),
            Node::File { .. } | Node::Symlink { .. } | Node::Special { .. } => None,
        }
    }

    pub fn status(&self, path: &DfsPath) -> Result<EntryStatus, RemoteError> {
        let id = self.resolve(path)?;
        Ok(self.entry_status(path.name().unwrap_or(""), id))
    }

    pub fn entry_status(&self, name: &str, id: InodeId) -> EntryStatus {
        let inode = self.inode(id);
        let (kind, size_bytes, replication, block_bytes, block_count) = match &inode.node {
            Node::Directory { .. } => (EntryKind::Directory, 0, 0, 0, 0),
            Node::File {
                blocks,
                size_bytes,
                replication,
                block_bytes,
                extents,
            } => (
                EntryKind::File,
                *size_bytes,
                *replication,
                *block_bytes,
                extents
                    .as_ref()
                    .map_or(blocks.len(), |extents| extents.list.len()) as u64,
            ),
            Node::Symlink { target } => (EntryKind::Symlink, target.len() as u64, 0, 0, 0),
            Node::Special { kind, .. } => (*kind, 0, 0, 0, 0),
        };
        EntryStatus {
            name: name.to_string(),
            inode: id,
            kind,
            size_bytes,
            replication,
            block_bytes,
            block_count,
            owner: inode.owner.clone(),
            group: inode.group.clone(),
            mode: inode.mode,
            modified_ns: inode.modified_ns,
            accessed_ns: inode.accessed_ns,
            changed_ns: inode.changed_ns,
            links: match &inode.node {
                // Its name, its own "." and each subdirectory's "..".
                Node::Directory { .. } => 2 + self.subdirectories.get(&id).copied().unwrap_or(0),
                _ => inode.links,
            },
            version: match &inode.node {
                Node::File {
                    extents: Some(extents),
                    ..
                } => extents.version,
                Node::File { blocks, .. } => blocks.first().map_or(0, |block| block.id.0),
                Node::Directory { .. } | Node::Symlink { .. } | Node::Special { .. } => 0,
            },
            rdev: match inode.node {
                Node::Special { rdev, .. } => rdev,
                _ => 0,
            },
        }
    }

    /// The target of the symbolic link at `path`.
    pub fn read_link(&self, path: &DfsPath) -> Result<&str, RemoteError> {
        match &self.inode(self.resolve(path)?).node {
            Node::Symlink { target } => Ok(target),
            _ => Err(error(
                ErrorKind::InvalidArgument,
                format!("{path}: not a symbolic link"),
            )),
        }
    }

    /// The blocks of the file at `path`.
    pub fn file_blocks(&self, path: &DfsPath) -> Result<(EntryStatus, &[BlockMeta]), RemoteError> {
        let id = self.resolve(path)?;
        match &self.inode(id).node {
            Node::File { blocks, .. } => {
                Ok((self.entry_status(path.name().unwrap_or(""), id), blocks))
            }
            Node::Directory { .. } => Err(error(
                ErrorKind::IsADirectory,
                format!("{path}: is a directory"),
            )),
            Node::Symlink { .. } => Err(error(
                ErrorKind::InvalidArgument,
                format!("{path}: is a symbolic link (read its target instead)"),
            )),
            Node::Special { .. } => Err(error(
                ErrorKind::InvalidArgument,
                format!("{path}: is a special file (it holds no data)"),
            )),
        }
    }

    /// A page of a directory's entries after `start_after`, and whether more follow.
    /// A file lists as itself.
    pub fn list(
        &self,
        path: &DfsPath,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<EntryStatus>, bool), RemoteError> {
        let id = self.resolve(path)?;
        let Node::Directory { children } = &self.inode(id).node else {
            return Ok((
                vec![self.entry_status(path.name().unwrap_or(""), id)],
                false,
            ));
        };
        let mut range: Box<dyn Iterator<Item = (&String, &InodeId)>> =
            match start_after {
                Some(after) => Box::new(children.range::<str, _>((
                    std::ops::Bound::Excluded(after),
                    std::ops::Bound::Unbounded,
                ))),
                None => Box::new(children.iter()),
            };
        let entries: Vec<EntryStatus> = range
            .by_ref()
            .take(limit)
            .map(|(name, child)| self.entry_status(name, *child))
            .collect();
        let more = range.next().is_some();
        Ok((entries, more))
    }

    /// Applies one op; on error nothing changed.
    pub fn apply(&mut self, op: &Op) -> Result<Applied, RemoteError> {
        let applied = self.apply_op(op)?;
        // A freed block is referenced by nothing (a block belongs to one
        // file or write only).
        for replica in &applied.freed_blocks {
            self.block_index.remove(&replica.block);
        }
        Ok(applied)
    }

    fn apply_op(&mut self, op: &Op) -> Result<Applied, RemoteError> {
        match op {
            Op::Mkdir {
                path,
                parents,
                mode,
                owner,
                group,
                time_ms,
            } => self.mkdir(&parse(path)?, *parents, *mode, owner, group, *time_ms),
            Op::Delete {
                path,
                recursive,
                time_ms,
            } => self.delete(&parse(path)?, *recursive, *time_ms),
            Op::Rename {
                source,
                target,
                time_ms,
            } => self.rename(&parse(source)?, &parse(target)?, *time_ms),
            Op::OpenWrite {
                write,
                path,
                replication,
                block_bytes,
                overwrite,
                mode,
                owner,
                group,
                time_ms,
            } => {
                let path = parse(path)?;
                self.check_writable(&path, *overwrite)?;
                self.open_write(
                    *write,
                    OpenWrite {
                        path: path.to_string(),
                        inode: None,
                        replication: *replication,
                        block_bytes: *block_bytes,
                        overwrite: *overwrite,
                        mode: *mode,
                        owner: owner.clone(),
                        group: group.clone(),
                        blocks: Vec::new(),
                        pending: BTreeMap::new(),
                        opened_ms: *time_ms,
                    },
                )
            }
            Op::OpenInodeWrite {
                write,
                inode,
                path,
                replication,
                block_bytes,
                owner,
                group,
                time_ms,
            } => {
                let path = parse(path)?;
                self.file_of_inode(&path, *inode)?;
                self.open_write(
                    *write,
                    OpenWrite {
                        path: path.to_string(),
                        inode: Some(*inode),
                        replication: *replication,
                        block_bytes: *block_bytes,
                        overwrite: true,
                        mode: 0,
                        owner: owner.clone(),
                        group: group.clone(),
                        blocks: Vec::new(),
                        pending: BTreeMap::new(),
                        opened_ms: *time_ms,
                    },
                )
            }
            Op::AllocateBlock { write, block } => self.allocate(*write, *block, Generation::LEGACY),
            Op::AllocateBlockStamped {
                write,
                block,
                generation,
            } => {
                if *generation == Generation::LEGACY {
                    return Err(error(
                        ErrorKind::Internal,
                        format!("{block}: generation 0 is for blocks of older versions"),
                    ));
                }
                self.allocate(*write, *block, *generation)
            }
            Op::SkipIds {
                block_ids,
                write_ids,
            } => {
                let (Some(next_block), Some(next_write)) = (
                    self.next_block.checked_add(*block_ids),
                    self.next_write.checked_add(*write_ids),
                ) else {
                    return Err(error(
                        ErrorKind::Internal,
                        "skipping ids would overflow the id space",
                    ));
                };
                self.next_block = next_block;
                self.next_write = next_write;
                Ok(Applied::default())
            }
            Op::CommitBlock {
                write,
                block,
                length_bytes,
                crc32c,
            } => {
                let open = self.open_write_mut(*write)?;
                let Some(&generation) = open.pending.get(block) else {
                    return Err(error(
                        ErrorKind::InvalidArgument,
                        format!("{block} is not an allocated block of write {write}"),
                    ));
                };
                if *length_bytes == 0 || *length_bytes > open.block_bytes {
                    return Err(error(
                        ErrorKind::InvalidArgument,
                        format!(
                            "{block}: length {length_bytes} is outside 1..={} bytes",
                            open.block_bytes
                        ),
                    ));
                }
                if let Some(last) = open.blocks.last() {
                    // Only the last block of a file may be short.
                    if last.length_bytes != open.block_bytes {
                        return Err(error(
                            ErrorKind::InvalidArgument,
                            format!("{block}: follows a short block"),
                        ));
                    }
                }
                open.pending.remove(block);
                open.blocks.push(BlockMeta {
                    id: *block,
                    generation,
                    length_bytes: *length_bytes,
                    crc32c: *crc32c,
                });
                let index = open.blocks.len() - 1;
                self.block_index.insert(
                    *block,
                    BlockPlace::Written {
                        write: *write,
                        index,
                    },
                );
                Ok(Applied::default())
            }
            Op::AbandonBlock { write, block } => {
                let open = self.open_write_mut(*write)?;
                let Some(generation) = open.pending.remove(block) else {
                    return Err(error(
                        ErrorKind::InvalidArgument,
                        format!("{block} is not an allocated block of write {write}"),
                    ));
                };
                Ok(Applied {
                    freed_blocks: vec![ReplicaId {
                        block: *block,
                        generation,
                    }],
                })
            }
            Op::CloseWrite { write, time_ms } => self.close_write(*write, *time_ms),
            Op::PatchWrite {
                write,
                ranges,
                size_bytes,
                if_version,
                time_ms,
            } => self.patch_write(*write, None, ranges, *size_bytes, *if_version, *time_ms),
            Op::PatchInode {
                write,
                inode,
                ranges,
                size_bytes,
                if_version,
                time_ms,
            } => self.patch_write(
                *write,
                Some(*inode),
                ranges,
                *size_bytes,
                *if_version,
                *time_ms,
            ),
            Op::Sustain { inode } => {
                match self.inodes.get(inode).map(|entry| &entry.node) {
                    Some(Node::File { .. }) => {}
                    Some(_) => {
                        return Err(error(
                            ErrorKind::InvalidArgument,
                            format!("inode {inode}: not a file"),
                        ))
                    }
                    None => {
                        return Err(error(
                            ErrorKind::NotFound,
                            format!("inode {inode}: no such file"),
                        ))
                    }
                }
                self.sustained.insert(*inode);
                Ok(Applied::default())
            }
            Op::Unsustain { inode } => {
                if !self.sustained.remove(inode) {
                    return Err(error(
                        ErrorKind::NotFound,
                        format!("inode {inode}: not kept open"),
                    ));
                }
                let mut freed = Vec::new();
                if self.inodes.get(inode).is_some_and(|entry| entry.links == 0) {
                    self.xattrs.remove(inode);
                    if let Some(Node::File { blocks, .. }) =
                        self.inodes.remove(inode).map(|entry| entry.node)
                    {
                        freed.extend(blocks.iter().map(BlockMeta::replica));
                    }
                }
                Ok(Applied {
                    freed_blocks: freed,
                })
            }
            Op::SetXattr {
                path,
                name,
                value,
                how,
                time_ms,
            } => self.set_xattr(&parse(path)?, name, value, *how, *time_ms),
            Op::RemoveXattr {
                path,
                name,
                time_ms,
            } => self.remove_xattr(&parse(path)?, name, *time_ms),
            Op::Accessed { inode, accessed_ns } => {
                let entry = self.inodes.get_mut(inode).ok_or_else(|| {
                    error(ErrorKind::NotFound, format!("inode {inode}: no such entry"))
                })?;
                entry.accessed_ns = *accessed_ns;
                Ok(Applied::default())
            }
            Op::AbortWrite { write } => {
                let open = self
                    .writes
                    .remove(write)
                    .ok_or_else(|| unknown_write(*write))?;
                let mut freed: Vec<ReplicaId> =
                    open.blocks.iter().map(BlockMeta::replica).collect();
                freed.extend(
                    open.pending
                        .iter()
                        .map(|(&block, &generation)| ReplicaId { block, generation }),
                );
                Ok(Applied {
                    freed_blocks: freed,
                })
            }
            Op::SetAttributes {
                path,
                mode,
                owner,
                group,
                modified_ns,
                accessed_ns,
                time_ms,
            } => {
                let path = parse(path)?;
                let id = self.resolve(&path)?;
                if let Some(mode) = mode {
                    if *mode > MODE_BITS_MAX {
                        return Err(error(
                            ErrorKind::InvalidArgument,
                            format!("{path}: mode {mode:o} has bits beyond {MODE_BITS_MAX:o}"),
                        ));
                    }
                }
                for name in [owner, group].into_iter().flatten() {
                    check_account_name(&path, name)?;
                }
                let Some(inode) = self.inodes.get_mut(&id) else {
                    return Err(not_found(&path));
                };
                if let Some(mode) = mode {
                    inode.mode = *mode;
                }
                if let Some(owner) = owner {
                    inode.owner.clone_from(owner);
                }
                if let Some(group) = group {
                    inode.group.clone_from(group);
                }
                if let Some(modified_ns) = modified_ns {
                    inode.modified_ns = *modified_ns;
                }
                if let Some(accessed_ns) = accessed_ns {
                    inode.accessed_ns = *accessed_ns;
                }
                inode.changed_ns = ns(*time_ms);
                Ok(Applied::default())
            }
            Op::Decommission { minion } => {
                if !self.draining.contains(minion) && self.draining.len() >= MINIONS_MAX {
                    return Err(error(
                        ErrorKind::Busy,
                        format!("{MINIONS_MAX} minions are being decommissioned already"),
                    ));
                }
                self.draining.insert(*minion);
                Ok(Applied::default())
            }
            Op::Recommission { minion } => {
                self.draining.remove(minion);
                Ok(Applied::default())
            }
            Op::Symlink {
                path,
                target,
                owner,
                group,
                time_ms,
            } => self.symlink(&parse(path)?, target, owner, group, *time_ms),
            Op::Link {
                source,
                target,
                time_ms,
            } => self.hard_link(&parse(source)?, &parse(target)?, *time_ms),
            Op::Mknod {
                path,
                kind,
                mode,
                rdev,
                owner,
                group,
                time_ms,
            } => self.mknod(&parse(path)?, *kind, *mode, *rdev, owner, group, *time_ms),
        }
    }

    /// Allocates `block` (the next id) of generation `generation` to `write`.
    fn allocate(
        &mut self,
        write: WriteId,
        block: BlockId,
        generation: Generation,
    ) -> Result<Applied, RemoteError> {
        let next = self.next_block;
        let open = self.open_write_mut(write)?;
        if block.0 != next {
            return Err(error(
                ErrorKind::Internal,
                format!("{block} out of sequence"),
            ));
        }
        if open.blocks.len() + open.pending.len() >= FILE_BLOCKS_MAX {
            return Err(error(
                ErrorKind::InvalidArgument,
                format!("{}: more than {FILE_BLOCKS_MAX} blocks", open.path),
            ));
        }
        open.pending.insert(block, generation);
        self.next_block += 1;
        self.block_index
            .insert(block, BlockPlace::Pending { write });
        Ok(Applied::default())
    }

    fn open_write_mut(&mut self, write: WriteId) -> Result<&mut OpenWrite, RemoteError> {
        self.writes
            .get_mut(&write)
            .ok_or_else(|| unknown_write(write))
    }

    /// A file may be created at `path`: the parent is a directory, and the
    /// path is free or (with `overwrite`) a file.
    fn check_writable(&self, path: &DfsPath, overwrite: bool) -> Result<(), RemoteError> {
        let parent = self.parent_directory(path)?;
        let name = path.name().unwrap_or("");
        if let Some(existing) = self.child(parent, name) {
            match self.inode(existing).node {
                Node::Directory { .. } => {
                    return Err(error(
                        ErrorKind::IsADirectory,
                        format!("{path}: is a directory"),
                    ))
                }
                Node::File { .. } | Node::Symlink { .. } | Node::Special { .. } if !overwrite => {
                    return Err(error(
                        ErrorKind::AlreadyExists,
                        format!("{path}: file exists"),
                    ))
                }
                Node::File { .. } | Node::Symlink { .. } | Node::Special { .. } => {}
            }
        }
        Ok(())
    }

    fn mkdir(
        &mut self,
        path: &DfsPath,
        parents: bool,
        mode: u32,
        owner: &str,
        group: &str,
        time_ms: u64,
    ) -> Result<Applied, RemoteError> {
        // Validate the whole chain first, then create.
        let mut current = ROOT_INODE;
        let mut walked = DfsPath::root();
        let mut missing: Vec<&str> = Vec::new();
        for name in path.components() {
            let next = walked
                .join(name)
                .map_err(|e| error(ErrorKind::InvalidArgument, e.to_string()))?;
            if missing.is_empty() {
                match self.child(current, name) {
                    Some(id) => match self.inode(id).node {
                        Node::Directory { .. } => current = id,
                        Node::File { .. } | Node::Symlink { .. } | Node::Special { .. } => {
                            let kind = if next == *path {
                                ErrorKind::AlreadyExists
                            } else {
                                ErrorKind::NotADirectory
                            };
                            let what = if next == *path {
                                "file exists"
                            } else {
                                "not a directory"
                            };
                            return Err(error(kind, format!("{next}: {what}")));
                        }
                    },
                    None => missing.push(name),
                }
            } else {
                missing.push(name);
            }
            walked = next;
        }
        if missing.is_empty() {
            if parents {
                return Ok(Applied::default());
            }
            return Err(error(
                ErrorKind::AlreadyExists,
                format!("{path}: file exists"),
            ));
        }
        if missing.len() > 1 && !parents {
            let parent = path.parent().unwrap_or_else(DfsPath::root);
            return Err(not_found(&parent));
        }
        for name in missing {
            let id = self.next_inode;
            self.next_inode += 1;
            self.inodes.insert(
                id,
                Inode {
                    node: Node::Directory {
                        children: BTreeMap::new(),
                    },
                    owner: owner.to_string(),
                    group: group.to_string(),
                    mode: mode & 0o7777,
                    modified_ns: ns(time_ms),
                    accessed_ns: ns(time_ms),
                    changed_ns: ns(time_ms),
                    links: 1,
                },
            );
            self.link(current, name, id, time_ms);
            current = id;
        }
        Ok(Applied::default())
    }

    fn link(&mut self, directory: InodeId, name: &str, child: InodeId, time_ms: u64) {
        if self
            .inodes
            .get(&child)
            .is_some_and(|c| c.node.is_directory())
        {
            *self.subdirectories.entry(directory).or_insert(0) += 1;
        }
        let inode = self.inodes.get_mut(&directory);
        debug_assert!(inode.is_some());
        if let Some(inode) = inode {
            if let Node::Directory { children } = &mut inode.node {
                let previous = children.insert(name.to_string(), child);
                debug_assert!(previous.is_none(), "link over an existing entry");
            }
            inode.modified_ns = ns(time_ms);
            inode.changed_ns = ns(time_ms);
        }
    }

    fn unlink(&mut self, directory: InodeId, name: &str, time_ms: u64) -> Option<InodeId> {
        let inode = self.inodes.get_mut(&directory)?;
        let removed = match &mut inode.node {
            Node::Directory { children } => children.remove(name),
            Node::File { .. } | Node::Symlink { .. } | Node::Special { .. } => None,
        };
        inode.modified_ns = ns(time_ms);
        inode.changed_ns = ns(time_ms);
        if let Some(child) = removed {
            if self
                .inodes
                .get(&child)
                .is_some_and(|c| c.node.is_directory())
            {
                match self.subdirectories.get_mut(&directory) {
                    Some(count) if *count > 1 => *count -= 1,
                    Some(_) => {
                        self.subdirectories.remove(&directory);
                    }
                    None => debug_assert!(false, "an uncounted subdirectory of {directory}"),
                }
            }
        }
        removed
    }

    /// One name of `id` is gone (already unlinked from its directory): a
    /// directory goes with everything below it, a file or symbolic link
    /// when it was its last name (else its change time moves to `time_ms`).
    /// Adds the blocks of files gone to `freed`.
    fn drop_name(&mut self, id: InodeId, time_ms: u64, freed: &mut Vec<ReplicaId>) {
        let mut stack = vec![id];
        while let Some(id) = stack.pop() {
            let Some(inode) = self.inodes.get_mut(&id) else {
                debug_assert!(false, "dangling inode {id}");
                continue;
            };
            if !inode.node.is_directory() && inode.links > 1 {
                inode.links -= 1;
                inode.changed_ns = ns(time_ms);
                continue;
            }
            if self.sustained.contains(&id) && matches!(inode.node, Node::File { .. }) {
                // Open somewhere: it lives on without a name until released.
                inode.links = 0;
                inode.changed_ns = ns(time_ms);
                continue;
            }
            self.xattrs.remove(&id);
            self.subdirectories.remove(&id);
            match self.inodes.remove(&id).map(|inode| inode.node) {
                Some(Node::Directory { children }) => stack.extend(children.values().copied()),
                Some(Node::File { blocks, .. }) => {
                    freed.extend(blocks.iter().map(BlockMeta::replica))
                }
                Some(Node::Symlink { .. } | Node::Special { .. }) | None => {}
            }
        }
    }

    fn delete(
        &mut self,
        path: &DfsPath,
        recursive: bool,
        time_ms: u64,
    ) -> Result<Applied, RemoteError> {
        if path.is_root() {
            return Err(error(
                ErrorKind::InvalidArgument,
                "/: cannot remove the root directory",
            ));
        }
        let id = self.resolve(path)?;
        if let Node::Directory { children } = &self.inode(id).node {
            if !children.is_empty() && !recursive {
                return Err(error(
                    ErrorKind::DirectoryNotEmpty,
                    format!("{path}: directory not empty"),
                ));
            }
        }
        let parent = self.parent_directory(path)?;
        self.unlink(parent, path.name().unwrap_or(""), time_ms);
        let mut freed = Vec::new();
        self.drop_name(id, time_ms, &mut freed);
        Ok(Applied {
            freed_blocks: freed,
        })
    }

    fn rename(
        &mut self,
        source: &DfsPath,
        target: &DfsPath,
        time_ms: u64,
    ) -> Result<Applied, RemoteError> {
        if source.is_root() {
            return Err(error(
                ErrorKind::InvalidArgument,
                "/: cannot move the root directory",
            ));
        }
        let source_id = self.resolve(source)?;
        if source == target {
            return Ok(Applied::default());
        }
        if target.is_within(source) {
            return Err(error(
                ErrorKind::InvalidArgument,
                format!("cannot move {source} into itself ({target})"),
            ));
        }
        let target_parent = self.parent_directory(target)?;
        let target_name = target.name().unwrap_or("");
        let source_is_directory = matches!(self.inode(source_id).node, Node::Directory { .. });
        let mut freed = Vec::new();
        // POSIX rename: a file replaces a file, a directory replaces an empty directory.
        let replaced = self.child(target_parent, target_name);
        if replaced == Some(source_id) {
            // Two names of one file: POSIX leaves both as they are.
            return Ok(Applied::default());
        }
        if let Some(existing) = replaced {
            match (&self.inode(existing).node, source_is_directory) {
                (Node::Directory { children }, true) if children.is_empty() => {}
                (Node::Directory { .. }, true) => {
                    return Err(error(
                        ErrorKind::DirectoryNotEmpty,
                        format!("{target}: directory not empty"),
                    ))
                }
                (Node::Directory { .. }, false) => {
                    return Err(error(
                        ErrorKind::IsADirectory,
                        format!("{target}: is a directory"),
                    ))
                }
                (Node::File { .. } | Node::Symlink { .. } | Node::Special { .. }, true) => {
                    return Err(error(
                        ErrorKind::NotADirectory,
                        format!("{target}: not a directory"),
                    ))
                }
                (Node::File { .. } | Node::Symlink { .. } | Node::Special { .. }, false) => {}
            }
        }
        let source_parent = self.parent_directory(source)?;
        if let Some(existing) = replaced {
            self.unlink(target_parent, target_name, time_ms);
            self.drop_name(existing, time_ms, &mut freed);
        }
        self.unlink(source_parent, source.name().unwrap_or(""), time_ms);
        self.link(target_parent, target_name, source_id, time_ms);
        if let Some(inode) = self.inodes.get_mut(&source_id) {
            inode.changed_ns = ns(time_ms);
        }
        Ok(Applied {
            freed_blocks: freed,
        })
    }

    /// Records the write `write` opened (the next id, within the limits).
    fn open_write(&mut self, write: WriteId, open: OpenWrite) -> Result<Applied, RemoteError> {
        check_file_parameters(open.replication, open.block_bytes)?;
        if self.writes.len() >= OPEN_WRITES_MAX {
            return Err(error(ErrorKind::Busy, "too many files open for writing"));
        }
        if write != self.next_write {
            return Err(error(
                ErrorKind::Internal,
                format!("write id {write} out of sequence"),
            ));
        }
        self.next_write += 1;
        self.writes.insert(write, open);
        Ok(Applied::default())
    }

    /// The file `id` is there (named or kept open), so a write may change
    /// it: its replication and block size. `path` names it in the error.
    pub fn file_of_inode(&self, path: &DfsPath, id: InodeId) -> Result<(u8, u64), RemoteError> {
        match self.inodes.get(&id).map(|inode| &inode.node) {
            Some(Node::File {
                replication,
                block_bytes,
                ..
            }) => Ok((*replication, *block_bytes)),
            Some(Node::Directory { .. }) => Err(error(
                ErrorKind::IsADirectory,
                format!("{path}: inode {id} is a directory"),
            )),
            Some(Node::Symlink { .. } | Node::Special { .. }) => Err(error(
                ErrorKind::InvalidArgument,
                format!("{path}: inode {id} is not a file"),
            )),
            None => Err(error(
                ErrorKind::NotFound,
                format!("{path}: inode {id} is gone (every name of it was removed)"),
            )),
        }
    }

    fn close_write(&mut self, write: WriteId, time_ms: u64) -> Result<Applied, RemoteError> {
        let open = self
            .writes
            .get(&write)
            .ok_or_else(|| unknown_write(write))?;
        if open.inode.is_some() {
            // A write of a file: what was written replaces its contents.
            let written_bytes: u64 = open.blocks.iter().map(|b| b.length_bytes).sum();
            let whole = FileRange {
                offset_bytes: 0,
                length_bytes: written_bytes,
            };
            let ranges: &[FileRange] = if written_bytes > 0 { &[whole] } else { &[] };
            return self.patch_write(write, None, ranges, written_bytes, None, time_ms);
        }
        let path = parse(&open.path)?;
        // The namespace may have changed since the write opened.
        self.check_writable(&path, open.overwrite)?;
        let parent = self.parent_directory(&path)?;
        let open = self
            .writes
            .remove(&write)
            .ok_or_else(|| unknown_write(write))?;
        let name = path.name().unwrap_or("");
        // Blocks allocated and never committed (an allocation whose answer
        // the client lost, say) are not the file's: freed.
        let mut freed: Vec<ReplicaId> = open
            .pending
            .iter()
            .map(|(&block, &generation)| ReplicaId { block, generation })
            .collect();
        let size_bytes = open.blocks.iter().map(|b| b.length_bytes).sum();
        if let Some(id) = self
            .child(parent, name)
            .filter(|&id| matches!(self.inode(id).node, Node::File { .. }))
        {
            // An overwrite of a file changes its contents in place, as a
            // write with O_TRUNC does: it keeps its inode, names, owner,
            // group and mode.
            for (index, block) in open.blocks.iter().enumerate() {
                self.block_index
                    .insert(block.id, BlockPlace::File { inode: id, index });
            }
            if let Some(inode) = self.inodes.get_mut(&id) {
                let old = std::mem::replace(
                    &mut inode.node,
                    Node::File {
                        blocks: open.blocks,
                        size_bytes,
                        replication: open.replication,
                        block_bytes: open.block_bytes,
                        extents: None,
                    },
                );
                if let Node::File { blocks, .. } = old {
                    freed.extend(blocks.iter().map(BlockMeta::replica));
                }
                inode.modified_ns = ns(time_ms);
                inode.changed_ns = ns(time_ms);
            }
            return Ok(Applied {
                freed_blocks: freed,
            });
        }
        if let Some(existing) = self.unlink(parent, name, time_ms) {
            self.drop_name(existing, time_ms, &mut freed);
        }
        let id = self.next_inode;
        self.next_inode += 1;
        for (index, block) in open.blocks.iter().enumerate() {
            self.block_index
                .insert(block.id, BlockPlace::File { inode: id, index });
        }
        self.inodes.insert(
            id,
            Inode {
                node: Node::File {
                    blocks: open.blocks,
                    size_bytes,
                    replication: open.replication,
                    block_bytes: open.block_bytes,
                    extents: None,
                },
                owner: open.owner,
                group: open.group,
                mode: open.mode & 0o7777,
                modified_ns: ns(time_ms),
                accessed_ns: ns(time_ms),
                changed_ns: ns(time_ms),
                links: 1,
            },
        );
        self.link(parent, name, id, time_ms);
        Ok(Applied {
            freed_blocks: freed,
        })
    }

    /// A patch of the file at the write's path, or with `target` of the
    /// file with that inode, whatever its names are now.
    fn patch_write(
        &mut self,
        write: WriteId,
        target: Option<InodeId>,
        ranges: &[FileRange],
        size_bytes: u64,
        if_version: Option<u64>,
        time_ms: u64,
    ) -> Result<Applied, RemoteError> {
        let open = self
            .writes
            .get(&write)
            .ok_or_else(|| unknown_write(write))?;
        let path = parse(&open.path)?;
        let invalid = |why: String| error(ErrorKind::InvalidArgument, format!("{path}: {why}"));
        let written_bytes = open.blocks.iter().map(|b| b.length_bytes).sum();
        extents::check_ranges(ranges, written_bytes, size_bytes).map_err(invalid)?;
        let target = match (target, open.inode) {
            (Some(asked), Some(opened)) if asked != opened => {
                return Err(invalid(format!(
                    "a write opened for inode {opened} cannot change inode {asked}"
                )))
            }
            (asked, opened) => asked.or(opened),
        };
        // Where a new file goes: the write's path (a patch by inode makes none).
        let (existing, place) = match target {
            Some(id) => {
                self.file_of_inode(&path, id)?;
                (Some(id), None)
            }
            None => {
                self.check_writable(&path, open.overwrite)?;
                let parent = self.parent_directory(&path)?;
                let name = path.name().unwrap_or("");
                let existing = self
                    .child(parent, name)
                    .filter(|&id| matches!(self.inode(id).node, Node::File { .. }));
                (existing, Some((parent, name.to_string())))
            }
        };
        if let Some(expected) = if_version {
            let version = existing.map(|id| self.entry_status("", id).version);
            if version != Some(expected) {
                return Err(error(
                    ErrorKind::AlreadyExists,
                    format!("{path}: changed since version {expected}; the patch is not applied"),
                ));
            }
        }
        // A file patched keeps its replication and block size; a new one
        // has the write's.
        let (base, base_blocks, replication, block_bytes) =
            match existing.map(|id| &self.inode(id).node) {
                Some(Node::File {
                    blocks,
                    extents,
                    replication,
                    block_bytes,
                    ..
                }) => (
                    extents
                        .as_ref()
                        .map_or_else(|| extents::whole(blocks), |extents| extents.list.clone()),
                    blocks.as_slice(),
                    *replication,
                    *block_bytes,
                ),
                _ => (Vec::new(), &[][..], open.replication, open.block_bytes),
            };
        let list = extents::patch(&base, &open.blocks, ranges, size_bytes).map_err(invalid)?;
        // Validated: from here on the op changes the namespace.
        let mut known: BTreeMap<BlockId, BlockMeta> = base_blocks
            .iter()
            .chain(&open.blocks)
            .map(|block| (block.id, block.clone()))
            .collect();
        let open = self
            .writes
            .remove(&write)
            .ok_or_else(|| unknown_write(write))?;
        let blocks: Vec<BlockMeta> = extents::used_blocks(&list)
            .into_iter()
            .map(|id| {
                known
                    .remove(&id)
                    .expect("a patch uses only blocks of the file and the write")
            })
            .collect();
        let mut freed: Vec<ReplicaId> = open
            .pending
            .iter()
            .map(|(&block, &generation)| ReplicaId { block, generation })
            .chain(known.values().map(BlockMeta::replica))
            .collect();
        // Blocks whole, in order, starting with a block never seen before:
        // the layout of a file written front to back, whose version is its
        // first block.
        let fresh_start = blocks
            .first()
            .is_some_and(|first| open.blocks.iter().any(|block| block.id == first.id));
        let extents = if fresh_start && extents::is_whole(&list, &blocks, block_bytes) {
            None
        } else {
            let version = self.next_block;
            self.next_block += 1;
            Some(Extents { list, version })
        };
        let node = Node::File {
            blocks,
            size_bytes,
            replication,
            block_bytes,
            extents,
        };
        let id = match (existing, place) {
            (Some(id), _) => {
                let inode = self.inodes.get_mut(&id).expect("the patched file exists");
                inode.node = node;
                inode.modified_ns = ns(time_ms);
                inode.changed_ns = ns(time_ms);
                id
            }
            (None, None) => unreachable!("a patch by inode has its file"),
            (None, Some((parent, name))) => {
                let name = name.as_str();
                if let Some(other) = self.unlink(parent, name, time_ms) {
                    self.drop_name(other, time_ms, &mut freed);
                }
                let id = self.next_inode;
                self.next_inode += 1;
                self.inodes.insert(
                    id,
                    Inode {
                        node,
                        owner: open.owner,
                        group: open.group,
                        mode: open.mode & 0o7777,
                        modified_ns: ns(time_ms),
                        accessed_ns: ns(time_ms),
                        changed_ns: ns(time_ms),
                        links: 1,
                    },
                );
                self.link(parent, name, id, time_ms);
                id
            }
        };
        if let Some(Inode {
            node: Node::File { blocks, .. },
            ..
        }) = self.inodes.get(&id)
        {
            for (index, block) in blocks.iter().enumerate() {
                self.block_index
                    .insert(block.id, BlockPlace::File { inode: id, index });
            }
        }
        Ok(Applied {
            freed_blocks: freed,
        })
    }

    /// The entry at `path` if it may carry `user.` extended attributes (a
    /// file or directory, as Linux has it), and `name` if it is one.
    fn xattr_entry(&self, path: &DfsPath, name: &str) -> Result<InodeId, RemoteError> {
        let id = self.resolve(path)?;
        check_xattr_name(path, name)?;
        match self.inode(id).node {
            Node::File { .. } | Node::Directory { .. } => Ok(id),
            Node::Symlink { .. } | Node::Special { .. } => Err(error(
                ErrorKind::PermissionDenied,
                format!("{path}: only files and directories have user extended attributes"),
            )),
        }
    }

    fn set_xattr(
        &mut self,
        path: &DfsPath,
        name: &str,
        value: &[u8],
        how: XattrSet,
        time_ms: u64,
    ) -> Result<Applied, RemoteError> {
        let id = self.xattr_entry(path, name)?;
        if value.len() > XATTR_VALUE_BYTES_MAX {
            return Err(error(
                ErrorKind::InvalidArgument,
                format!(
                    "{path}: a value of {} bytes for {name} (at most {XATTR_VALUE_BYTES_MAX})",
                    value.len()
                ),
            ));
        }
        let held = self.xattrs.get(&id);
        let old = held.and_then(|attributes| attributes.get(name));
        match (how, old) {
            (XattrSet::Create, Some(_)) => {
                return Err(error(
                    ErrorKind::AlreadyExists,
                    format!("{path}: has the extended attribute {name} already"),
                ))
            }
            (XattrSet::Replace, None) => return Err(no_attribute(path, name)),
            _ => {}
        }
        let others: usize = held.map_or(0, |attributes| {
            attributes
                .iter()
                .filter(|(other, _)| other.as_str() != name)
                .map(|(other, value)| other.len() + value.len())
                .sum()
        });
        if others + name.len() + value.len() > XATTR_BYTES_PER_ENTRY_MAX {
            return Err(error(
                ErrorKind::NoSpace,
                format!(
                    "{path}: extended attributes would take more than {XATTR_BYTES_PER_ENTRY_MAX} bytes"
                ),
            ));
        }
        self.xattrs
            .entry(id)
            .or_default()
            .insert(name.to_string(), value.to_vec());
        if let Some(inode) = self.inodes.get_mut(&id) {
            inode.changed_ns = ns(time_ms);
        }
        Ok(Applied::default())
    }

    fn remove_xattr(
        &mut self,
        path: &DfsPath,
        name: &str,
        time_ms: u64,
    ) -> Result<Applied, RemoteError> {
        let id = self.xattr_entry(path, name)?;
        let attributes = self
            .xattrs
            .get_mut(&id)
            .filter(|attributes| attributes.contains_key(name))
            .ok_or_else(|| no_attribute(path, name))?;
        attributes.remove(name);
        if attributes.is_empty() {
            self.xattrs.remove(&id);
        }
        if let Some(inode) = self.inodes.get_mut(&id) {
            inode.changed_ns = ns(time_ms);
        }
        Ok(Applied::default())
    }

    /// The value of the extended attribute `name` of the entry at `path`.
    pub fn xattr(&self, path: &DfsPath, name: &str) -> Result<&[u8], RemoteError> {
        let id = self.xattr_entry(path, name)?;
        self.xattrs
            .get(&id)
            .and_then(|attributes| attributes.get(name))
            .map(Vec::as_slice)
            .ok_or_else(|| no_attribute(path, name))
    }

    /// The names of the extended attributes of the entry at `path`, in order.
    pub fn xattr_names(&self, path: &DfsPath) -> Result<Vec<String>, RemoteError> {
        let id = self.resolve(path)?;
        Ok(self
            .xattrs
            .get(&id)
            .map(|attributes| attributes.keys().cloned().collect())
            .unwrap_or_default())
    }

    /// The pieces of the file at `path` from piece `first` (or, with
    /// `first` None, from the one holding byte `offset_bytes`), at most
    /// `limit`: the file's status, the first piece's index, the pieces with
    /// the blocks they are of (None: a hole), and whether more follow.
    ///
    /// With `inode`, of the file with that inode whatever its names are now
    /// (also one kept open after its last name went): a reader goes on with
    /// the file it opened.
    pub fn file_pieces(
        &self,
        path: &DfsPath,
        inode: Option<InodeId>,
        first: Option<u64>,
        offset_bytes: u64,
        limit: usize,
    ) -> Result<FilePieces, RemoteError> {
        let id = match inode {
            Some(id) => id,
            None => self.resolve(path)?,
        };
        let (status, blocks, extents) = match self.inodes.get(&id).map(|entry| &entry.node) {
            Some(Node::File {
                blocks, extents, ..
            }) => (
                self.entry_status(path.name().unwrap_or(""), id),
                blocks.as_slice(),
                extents,
            ),
            Some(_) if inode.is_none() => {
                // The reasons `file_blocks` gives for what is not a file.
                self.file_blocks(path)?;
                return Err(not_found(path));
            }
            _ => {
                return Err(error(
                    ErrorKind::NotFound,
                    format!("{path}: the file (inode {id}) is gone"),
                ))
            }
        };
        let count = status.block_count as usize;
        let start = match first {
            Some(index) => usize::try_from(index).map_or(count, |index| index.min(count)),
            None => match extents {
                Some(extents) => extents::index_at(&extents.list, offset_bytes),
                // Every block is the file's block size but the last.
                None => offset_bytes
                    .checked_div(status.block_bytes)
                    .and_then(|index| usize::try_from(index).ok())
                    .map_or(count, |index| index.min(count)),
            },
        };
        let end = start.saturating_add(limit).min(count);
        let pieces = match extents {
            Some(extents) => extents.list[start..end]
                .iter()
                .map(|extent| {
                    let block = (!extent.is_hole()).then(|| self.file_block(id, extent.block));
                    (*extent, block.flatten())
                })
                .collect(),
            None => {
                let whole = extents::whole(&blocks[start..end]);
                let offset_bytes = (start as u64).saturating_mul(status.block_bytes);
                whole
                    .into_iter()
                    .zip(&blocks[start..end])
                    .map(|(extent, block)| {
                        let extent = Extent {
                            offset_bytes: extent.offset_bytes + offset_bytes,
                            ..extent
                        };
                        (extent, Some(block.clone()))
                    })
                    .collect()
            }
        };
        Ok(FilePieces {
            first_index: start as u64,
            more: end < count,
            status,
            pieces,
        })
    }

    /// The record of `block` of file `id`.
    fn file_block(&self, id: InodeId, block: BlockId) -> Option<BlockMeta> {
        match self.block_index.get(&block) {
            Some(&BlockPlace::File { inode, index }) if inode == id => match &self.inode(id).node {
                Node::File { blocks, .. } => blocks.get(index).cloned(),
                _ => None,
            },
            _ => None,
        }
    }

    /// The name `path` must be free for a new entry; returns its directory.
    fn free_name(&self, path: &DfsPath) -> Result<InodeId, RemoteError> {
        let parent = self.parent_directory(path)?;
        if self.child(parent, path.name().unwrap_or("")).is_some() {
            return Err(error(
                ErrorKind::AlreadyExists,
                format!("{path}: file exists"),
            ));
        }
        Ok(parent)
    }

    fn symlink(
        &mut self,
        path: &DfsPath,
        target: &str,
        owner: &str,
        group: &str,
        time_ms: u64,
    ) -> Result<Applied, RemoteError> {
        if target.is_empty() || target.len() > SYMLINK_TARGET_BYTES_MAX || target.contains('\0') {
            return Err(error(
                ErrorKind::InvalidArgument,
                format!(
                    "{path}: a symbolic link's target has 1 to {SYMLINK_TARGET_BYTES_MAX} bytes and no NUL ({} given)",
                    target.len()
                ),
            ));
        }
        check_account_name(path, owner)?;
        check_account_name(path, group)?;
        let parent = self.free_name(path)?;
        let id = self.next_inode;
        self.next_inode += 1;
        self.inodes.insert(
            id,
            Inode {
                node: Node::Symlink {
                    target: target.to_string(),
                },
                owner: owner.to_string(),
                group: group.to_string(),
                mode: 0o777,
                modified_ns: ns(time_ms),
                accessed_ns: ns(time_ms),
                changed_ns: ns(time_ms),
                links: 1,
            },
        );
        self.link(parent, path.name().unwrap_or(""), id, time_ms);
        Ok(Applied::default())
    }

    /// A FIFO, socket or device node: a name and attributes.
    #[allow(clippy::too_many_arguments)]
    fn mknod(
        &mut self,
        path: &DfsPath,
        kind: EntryKind,
        mode: u32,
        rdev: u32,
        owner: &str,
        group: &str,
        time_ms: u64,
    ) -> Result<Applied, RemoteError> {
        if !kind.is_special() {
            return Err(error(
                ErrorKind::InvalidArgument,
                format!("{path}: mknod makes FIFOs, sockets and devices, not a {kind:?}"),
            ));
        }
        if mode > MODE_BITS_MAX {
            return Err(error(
                ErrorKind::InvalidArgument,
                format!("{path}: mode {mode:o} has bits beyond {MODE_BITS_MAX:o}"),
            ));
        }
        check_account_name(path, owner)?;
        check_account_name(path, group)?;
        let parent = self.free_name(path)?;
        let id = self.next_inode;
        self.next_inode += 1;
        let rdev = if matches!(kind, EntryKind::CharDevice | EntryKind::BlockDevice) {
            rdev
        } else {
            0
        };
        self.inodes.insert(
            id,
            Inode {
                node: Node::Special { kind, rdev },
                owner: owner.to_string(),
                group: group.to_string(),
                mode,
                modified_ns: ns(time_ms),
                accessed_ns: ns(time_ms),
                changed_ns: ns(time_ms),
                links: 1,
            },
        );
        self.link(parent, path.name().unwrap_or(""), id, time_ms);
        Ok(Applied::default())
    }

    /// A hard link: `target` becomes another name of the file or symbolic
    /// link at `source`.
    fn hard_link(
        &mut self,
        source: &DfsPath,
        target: &DfsPath,
        time_ms: u64,
    ) -> Result<Applied, RemoteError> {
        let id = self.resolve(source)?;
        let inode = self.inode(id);
        if inode.node.is_directory() {
            return Err(error(
                ErrorKind::IsADirectory,
                format!("{source}: is a directory (a directory has one name)"),
            ));
        }
        if inode.links >= LINKS_MAX {
            return Err(error(
                ErrorKind::InvalidArgument,
                format!("{source}: has {LINKS_MAX} names already (too many links)"),
            ));
        }
        let parent = self.free_name(target)?;
        if let Some(inode) = self.inodes.get_mut(&id) {
            inode.links += 1;
            inode.changed_ns = ns(time_ms);
        }
        self.link(parent, target.name().unwrap_or(""), id, time_ms);
        Ok(Applied::default())
    }

    /// Checks the structural invariants; used by tests and after loading.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![ROOT_INODE];
        let counted = self.counted_links();
        if self.subdirectories != self.counted_subdirectories() {
            return Err("the kept subdirectory counts differ from the directories".into());
        }
        while let Some(id) = stack.pop() {
            let inode = self
                .inodes
                .get(&id)
                .ok_or_else(|| format!("dangling inode {id}"))?;
            if !seen.insert(id) {
                if inode.node.is_directory() {
                    return Err(format!("directory inode {id} reachable twice"));
                }
                // Another name of a file or link: looked at already.
                continue;
            }
            let names = counted.get(&id).copied().unwrap_or(0);
            if inode.links != names {
                return Err(format!(
                    "inode {id} counts {} names but has {names}",
                    inode.links
                ));
            }
            match &inode.node {
                Node::Directory { children } => {
                    for (name, child) in children {
                        if name.is_empty() || name.contains('/') || name.contains('\0') {
                            return Err(format!("bad name {name:?} in inode {id}"));
                        }
                        stack.push(*child);
                    }
                }
                Node::File {
                    blocks,
                    size_bytes,
                    extents: Some(extents),
                    ..
                } => {
                    extents::check(&extents.list, *size_bytes, blocks)
                        .map_err(|why| format!("inode {id}: {why}"))?;
                    if extents.version >= self.next_block
                        || blocks.iter().any(|b| b.id.0 >= self.next_block)
                    {
                        return Err(format!("inode {id}: block id at or past next_block"));
                    }
                }
                Node::File {
                    blocks, size_bytes, ..
                } => {
                    let sum: u64 = blocks.iter().map(|b| b.length_bytes).sum();
                    if sum != *size_bytes {
                        return Err(format!(
                            "inode {id}: size {size_bytes} != sum of blocks {sum}"
                        ));
                    }
                    if blocks.iter().any(|b| b.id.0 >= self.next_block) {
                        return Err(format!("inode {id}: block id at or past next_block"));
                    }
                }
                Node::Special { kind, .. } => {
                    if !kind.is_special() {
                        return Err(format!("inode {id}: a special node of kind {kind:?}"));
                    }
                }
                Node::Symlink { target } => {
                    if target.is_empty() || target.len() > SYMLINK_TARGET_BYTES_MAX {
                        return Err(format!(
                            "inode {id}: a symbolic link of {} bytes",
                            target.len()
                        ));
                    }
                }
            }
        }
        if !matches!(
            self.inodes.get(&ROOT_INODE).map(|i| &i.node),
            Some(Node::Directory { .. })
        ) {
            return Err("root is not a directory".into());
        }
        // Unreachable: only files kept open after their last name went.
        for (id, inode) in &self.inodes {
            if seen.contains(id) {
                continue;
            }
            let nameless_file = matches!(inode.node, Node::File { .. }) && inode.links == 0;
            if !nameless_file || !self.sustained.contains(id) {
                return Err(format!("inode {id} unreachable from the root"));
            }
        }
        for id in &self.sustained {
            if !matches!(
                self.inodes.get(id).map(|i| &i.node),
                Some(Node::File { .. })
            ) {
                return Err(format!("kept open inode {id} is not a file"));
            }
        }
        if self.inodes.keys().any(|&id| id >= self.next_inode) {
            return Err("inode id at or past next_inode".into());
        }
        for (id, attributes) in &self.xattrs {
            let Some(inode) = self.inodes.get(id) else {
                return Err(format!("extended attributes of a missing inode {id}"));
            };
            if !matches!(inode.node, Node::File { .. } | Node::Directory { .. }) {
                return Err(format!(
                    "extended attributes on inode {id}, not a file or directory"
                ));
            }
            let bytes: usize = attributes.iter().map(|(n, v)| n.len() + v.len()).sum();
            let names_fit = attributes.iter().all(|(name, value)| {
                name.len() <= XATTR_NAME_BYTES_MAX
                    && name.starts_with("user.")
                    && name.len() > "user.".len()
                    && value.len() <= XATTR_VALUE_BYTES_MAX
            });
            if attributes.is_empty() || !names_fit || bytes > XATTR_BYTES_PER_ENTRY_MAX {
                return Err(format!("inode {id}: extended attributes out of bounds"));
            }
        }
        // Checked in tests; a loaded namespace has just had it rebuilt.
        if cfg!(debug_assertions) && self.block_index != self.built_block_index() {
            return Err("the block index does not match the files and writes".into());
        }
        Ok(())
    }
}

/// A committed block as a replica of it must be.
fn stored_of(meta: &BlockMeta) -> StoredBlock {
    StoredBlock {
        block: meta.id,
        generation: meta.generation,
        length_bytes: meta.length_bytes,
        crc32c: meta.crc32c,
    }
}

fn unknown_write(write: WriteId) -> RemoteError {
    error(
        ErrorKind::InvalidArgument,
        format!("write {write} is not open (closed, aborted or never opened)"),
    )
}

pub mod access;
mod extents;
mod legacy;
mod records;

pub use access::Caller;
pub use extents::{Extent, Extents};
pub use legacy::{NamespaceV3, NamespaceV4};
pub use records::{
    decode_op, encode_op, NamespaceRecord, NamespaceV6, NamespaceV7, NamespaceV8, NamespaceV9,
    NamespaceWriter,
};

#[cfg(test)]
mod tests;
