//! Blocks this mount wrote without `sync`, by the file they belong to.
//!
//! A close commits a file with its blocks in every member's memory, not
//! yet on its disk (as HDFS and MooseFS do at close): visible to every
//! workstation at once, durable at `fsync`. `fsync` of a file makes the
//! blocks listed here for it durable (`Client::make_durable`), whichever
//! descriptor wrote them, even one closed since. The list is bounded: past
//! `UNSYNCED_REPLICAS_MAX` blocks, the commit that adds more makes all of
//! them durable first (one exchange per member and 1,024 blocks); when
//! that fails, the next `fsync` of each of their files fails (once, as
//! Linux reports a writeback error).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dfs_client::{Client, UnsyncedReplica, WriteStats};
use dfs_engine::sync;

/// Most blocks waiting for an `fsync` in one mount.
pub const UNSYNCED_REPLICAS_MAX: usize = 8192;

/// The list, shared by the mount and the files open in it.
#[derive(Clone)]
pub struct Unsynced {
    pending: Arc<Mutex<Pending>>,
    /// Most blocks listed (`UNSYNCED_REPLICAS_MAX` but in tests).
    bound: usize,
}

impl Default for Unsynced {
    fn default() -> Unsynced {
        Unsynced::with_bound(UNSYNCED_REPLICAS_MAX)
    }
}

#[derive(Default)]
struct Pending {
    by_inode: HashMap<u64, Vec<UnsyncedReplica>>,
    count: usize,
    /// Files whose blocks a flush past the bound failed to make durable,
    /// with why: their next `fsync` fails. At most as many as were listed.
    failed: HashMap<u64, String>,
}

impl Unsynced {
    /// A list of at most `bound` blocks (at least one).
    pub fn with_bound(bound: usize) -> Unsynced {
        Unsynced {
            pending: Arc::default(),
            bound: bound.max(1),
        }
    }

    /// Records `blocks` of the file `inode` just committed; past the bound
    /// everything listed is made durable now (when that fails, each of
    /// those files' next `fsync` fails).
    pub fn note(&self, client: &mut Client, inode: u64, blocks: Vec<UnsyncedReplica>) {
        if blocks.is_empty() {
            return;
        }
        let (inodes, everything) = {
            let mut pending = sync::lock(&self.pending);
            if pending.count + blocks.len() <= self.bound {
                pending.count += blocks.len();
                pending.by_inode.entry(inode).or_default().extend(blocks);
                return;
            }
            pending.count = 0;
            pending.by_inode.entry(inode).or_default().extend(blocks);
            let listed: Vec<(u64, Vec<UnsyncedReplica>)> = pending.by_inode.drain().collect();
            let inodes: Vec<u64> = listed.iter().map(|(inode, _)| *inode).collect();
            let everything: Vec<UnsyncedReplica> =
                listed.into_iter().flat_map(|(_, list)| list).collect();
            (inodes, everything)
        };
        if let Err(error) = client.make_durable(&everything) {
            eprintln!("dfs-mount: flushing blocks written since the last fsync: {error}");
            let mut pending = sync::lock(&self.pending);
            for inode in inodes {
                if pending.failed.len() >= UNSYNCED_REPLICAS_MAX {
                    eprintln!("dfs-mount: too many files whose flush failed to remember more");
                    break;
                }
                pending.failed.insert(inode, error.to_string());
            }
        }
    }

    /// Makes the blocks listed for `inode` durable; fails (once) when a
    /// flush past the bound could not.
    pub fn make_durable(&self, client: &mut Client, inode: u64) -> dfs_engine::Result<()> {
        let blocks = {
            let mut pending = sync::lock(&self.pending);
            if let Some(why) = pending.failed.remove(&inode) {
                return Err(dfs_engine::Error::Invalid(format!(
                    "blocks of this file written since its last fsync may not be durable: {why}"
                )));
            }
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
