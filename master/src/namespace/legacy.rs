//! The namespace as older checkpoint versions stored it, decoded into the
//! current one. Postcard is not self-describing, so each old layout needs
//! its own types; they are only ever read, never written. Ids are plain
//! integers, as in `records.rs`.
//!
//! - Version 3: no set of decommissioning minions.
//! - Version 4: blocks without generations (they become generation 0, as
//!   the minions' version-1 block files do when they are renamed).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use dfs_engine::msg::{BlockId, Generation, MinionId};
use serde::Deserialize;

use super::{BlockMeta, Inode, InodeId, Namespace, Node, OpenWrite, WriteId};

#[derive(Deserialize)]
struct BlockMetaV4 {
    id: u64,
    length_bytes: u64,
    crc32c: u32,
}

#[derive(Deserialize)]
enum NodeV4 {
    Directory {
        children: BTreeMap<String, InodeId>,
    },
    File {
        blocks: Vec<BlockMetaV4>,
        size_bytes: u64,
        replication: u8,
        block_bytes: u64,
    },
}

#[derive(Deserialize)]
struct InodeV4 {
    node: NodeV4,
    owner: String,
    group: String,
    mode: u32,
    modified_ms: u64,
    accessed_ms: u64,
    changed_ms: u64,
}

#[derive(Deserialize)]
struct OpenWriteV4 {
    path: String,
    replication: u8,
    block_bytes: u64,
    overwrite: bool,
    mode: u32,
    owner: String,
    group: String,
    blocks: Vec<BlockMetaV4>,
    pending: BTreeSet<u64>,
    opened_ms: u64,
}

/// The namespace of checkpoint version 3: without `draining`.
#[derive(Deserialize)]
pub struct NamespaceV3 {
    inodes: BTreeMap<InodeId, InodeV4>,
    writes: BTreeMap<WriteId, OpenWriteV4>,
    next_inode: InodeId,
    next_block: u64,
    next_write: WriteId,
}

/// The namespace of checkpoint version 4: blocks without generations.
#[derive(Deserialize)]
pub struct NamespaceV4 {
    inodes: BTreeMap<InodeId, InodeV4>,
    writes: BTreeMap<WriteId, OpenWriteV4>,
    next_inode: InodeId,
    next_block: u64,
    next_write: WriteId,
    draining: BTreeSet<u64>,
}

impl From<BlockMetaV4> for BlockMeta {
    fn from(old: BlockMetaV4) -> BlockMeta {
        BlockMeta {
            id: BlockId(old.id),
            generation: Generation::LEGACY,
            length_bytes: old.length_bytes,
            crc32c: old.crc32c,
        }
    }
}

fn blocks(old: Vec<BlockMetaV4>) -> Vec<BlockMeta> {
    old.into_iter().map(BlockMeta::from).collect()
}

impl From<InodeV4> for Inode {
    fn from(old: InodeV4) -> Inode {
        let node = match old.node {
            NodeV4::Directory { children } => Node::Directory { children },
            NodeV4::File {
                blocks: old_blocks,
                size_bytes,
                replication,
                block_bytes,
            } => Node::File {
                blocks: blocks(old_blocks),
                size_bytes,
                replication,
                block_bytes,
                extents: None,
            },
        };
        Inode {
            node,
            owner: old.owner,
            group: old.group,
            mode: old.mode,
            modified_ns: old.modified_ms.saturating_mul(1_000_000),
            accessed_ns: old.accessed_ms.saturating_mul(1_000_000),
            changed_ns: old.changed_ms.saturating_mul(1_000_000),
            // Counted by `rebuild_derived`.
            links: 0,
        }
    }
}

impl From<OpenWriteV4> for OpenWrite {
    fn from(old: OpenWriteV4) -> OpenWrite {
        OpenWrite {
            path: old.path,
            inode: None,
            replication: old.replication,
            block_bytes: old.block_bytes,
            overwrite: old.overwrite,
            mode: old.mode,
            owner: old.owner,
            group: old.group,
            blocks: blocks(old.blocks),
            pending: old
                .pending
                .into_iter()
                .map(|block| (BlockId(block), Generation::LEGACY))
                .collect(),
            opened_ms: old.opened_ms,
        }
    }
}

impl From<NamespaceV4> for Namespace {
    fn from(old: NamespaceV4) -> Namespace {
        let mut namespace = Namespace {
            inodes: old
                .inodes
                .into_iter()
                .map(|(id, inode)| (id, inode.into()))
                .collect(),
            writes: old
                .writes
                .into_iter()
                .map(|(id, write)| (id, write.into()))
                .collect(),
            next_inode: old.next_inode,
            next_block: old.next_block,
            next_write: old.next_write,
            draining: old.draining.into_iter().map(MinionId).collect(),
            xattrs: BTreeMap::new(),
            sustained: BTreeSet::new(),
            block_index: HashMap::new(),
            subdirectories: HashMap::new(),
        };
        namespace.rebuild_derived();
        namespace
    }
}

impl From<NamespaceV3> for Namespace {
    fn from(old: NamespaceV3) -> Namespace {
        NamespaceV4 {
            inodes: old.inodes,
            writes: old.writes,
            next_inode: old.next_inode,
            next_block: old.next_block,
            next_write: old.next_write,
            draining: BTreeSet::new(),
        }
        .into()
    }
}
