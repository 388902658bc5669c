//! Blocks this mount wrote without `sync`, by the file they belong to.
//!
//! A close commits a file with its blocks in every member's memory, not
//! yet on its disk (as HDFS and MooseFS do at close): visible to every
//! workstation at once, durable at `fsync`. `fsync` of a file makes the
//! blocks listed here for it durable (`Client::make_durable`), whichever
//! descriptor wrote them, even one closed since. The list is bounded: past
//! `UNSYNCED_REPLICAS_MAX` blocks, the commit that adds more makes all of
//! them durable first (one exchange per member and 1,024 blocks).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dfs_client::{Client, UnsyncedReplica, WriteStats};
use dfs_engine::sync;

/// Most blocks waiting for an `fsync` in one mount.
pub const UNSYNCED_REPLICAS_MAX: usize = 8192;

/// The list, shared by the mount and the files open in it.
#[derive(Clone, Default)]
pub struct Unsynced {
    pending: Arc<Mutex<Pending>>,
}

#[derive(Default)]
struct Pending {
    by_inode: HashMap<u64, Vec<UnsyncedReplica>>,
    count: usize,
}

impl Unsynced {
    /// Records `blocks` of the file `inode` just committed; past the bound
    /// everything listed is made durable now (an error is only reported:
    /// the blocks stay committed, their file's later `fsync` no longer
    /// knows them).
    pub fn note(&self, client: &mut Client, inode: u64, blocks: Vec<UnsyncedReplica>) {
        if blocks.is_empty() {
            return;
        }
        let everything = {
            let mut pending = sync::lock(&self.pending);
            if pending.count + blocks.len() > UNSYNCED_REPLICAS_MAX {
                pending.count = 0;
                let mut all: Vec<UnsyncedReplica> = pending
                    .by_inode
                    .drain()
                    .flat_map(|(_, list)| list)
                    .collect();
                all.extend(blocks);
                all
            } else {
                pending.count += blocks.len();
                pending.by_inode.entry(inode).or_default().extend(blocks);
                return;
            }
        };
        if let Err(error) = client.make_durable(&everything) {
            eprintln!("dfs-mount: flushing blocks written since the last fsync: {error}");
        }
    }

    /// Makes the blocks listed for `inode` durable.
    pub fn make_durable(&self, client: &mut Client, inode: u64) -> dfs_engine::Result<()> {
        let blocks = {
            let mut pending = sync::lock(&self.pending);
            let blocks = pending.by_inode.remove(&inode).unwrap_or_default();
            pending.count -= blocks.len();
            blocks
        };
        if blocks.is_empty() {
            return Ok(());
        }
        client.make_durable(&blocks)
    }
}

/// Lists the blocks a finished write of the file `inode` stored without
/// `sync` for its next `fsync`; without a list (or an inode to list them
/// by) they are made durable now.
pub fn record(
    unsynced: Option<&Unsynced>,
    inode: Option<u64>,
    client: &mut Client,
    stats: WriteStats,
) -> dfs_engine::Result<()> {
    let blocks: Vec<UnsyncedReplica> = stats
        .blocks
        .into_iter()
        .filter_map(|block| block.unsynced)
        .collect();
    match (unsynced, inode) {
        (Some(unsynced), Some(inode)) => {
            unsynced.note(client, inode, blocks);
            Ok(())
        }
        _ if blocks.is_empty() => Ok(()),
        _ => client.make_durable(&blocks),
    }
}
