//! `Fsck` on the master: the health of the blocks of the files at or under
//! a path, a page at a time. Files are visited depth first in name order
//! (a directory's entries in name order, each directory's files and
//! subdirectories where their names fall), and a page resumes after the
//! last file of the one before, so a tree of any size is checked in pages
//! of bounded size and bounded lock time. Open writes are not files yet
//! and are not looked at. Pure: the service passes the namespace and the
//! registry under their locks.

use std::ops::Bound;
use std::time::Instant;

use dfs_engine::limits::{
    FSCK_BLOCKS_PER_PAGE_MAX, FSCK_FILES_PER_PAGE_MAX, FSCK_SCANNED_BLOCKS_PER_PAGE_MAX,
};
use dfs_engine::msg::{ErrorKind, FsckBlock, FsckFile, RemoteError};
use dfs_engine::path::DfsPath;

use crate::namespace::{BlockMeta, InodeId, Namespace, Node};
use crate::registry::Registry;

/// One page of an fsck, as `MasterResponse::FsckPage` carries it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FsckPage {
    pub files: Vec<FsckFile>,
    pub scanned_files: u64,
    pub scanned_blocks: u64,
    pub resume_after: Option<String>,
}

/// What a page may hold; the limits of `limits` unless a test says less.
#[derive(Clone, Copy, Debug)]
pub struct PageLimits {
    pub files: usize,
    pub listed_blocks: usize,
    pub scanned_blocks: u64,
}

impl PageLimits {
    /// The limits of a page for a client that asked for `files` files.
    pub fn for_request(files: u32) -> PageLimits {
        PageLimits {
            files: files.clamp(1, FSCK_FILES_PER_PAGE_MAX) as usize,
            listed_blocks: FSCK_BLOCKS_PER_PAGE_MAX,
            scanned_blocks: FSCK_SCANNED_BLOCKS_PER_PAGE_MAX,
        }
    }
}

fn invalid(message: String) -> RemoteError {
    RemoteError::new(ErrorKind::InvalidArgument, message)
}

/// One directory on the walk's stack and the last entry taken from it.
struct Level {
    directory: InodeId,
    path: DfsPath,
    after: Option<String>,
}

/// The page of files at or under `root` that follow `start_after`.
pub fn page(
    namespace: &Namespace,
    registry: &Registry,
    root: &DfsPath,
    start_after: Option<&DfsPath>,
    limits: PageLimits,
    now: Instant,
) -> Result<FsckPage, RemoteError> {
    let root_id = namespace.resolve(root)?;
    let mut page = FsckPage::default();
    let mut listed_blocks = 0usize;
    // The last file looked at in this page.
    let mut last_file: Option<String> = None;
    if let Some(after) = start_after {
        if !after.is_within(root) {
            return Err(invalid(format!("fsck of {root}: {after} is not under it")));
        }
    }
    let mut stack = match namespace.inode_at(root_id).map(|inode| &inode.node) {
        Some(Node::Directory { .. }) => start_stack(namespace, root_id, root, start_after),
        Some(Node::File { .. }) => {
            // A file is its own tree of one.
            if start_after.is_none() {
                visit(
                    namespace,
                    registry,
                    root,
                    root_id,
                    &mut page,
                    &mut listed_blocks,
                    limits,
                    now,
                );
            }
            return Ok(page);
        }
        // A symbolic link or special file has no blocks.
        Some(Node::Symlink { .. } | Node::Special { .. }) | None => return Ok(page),
    };
    while let Some(level) = stack.last_mut() {
        let Some(Node::Directory { children }) =
            namespace.inode_at(level.directory).map(|inode| &inode.node)
        else {
            stack.pop();
            continue;
        };
        let next = match &level.after {
            Some(after) => children
                .range::<str, _>((Bound::Excluded(after.as_str()), Bound::Unbounded))
                .next(),
            None => children.iter().next(),
        };
        let Some((name, &child)) = next else {
            stack.pop();
            continue;
        };
        level.after = Some(name.clone());
        let path = level
            .path
            .join(name)
            .map_err(|e| RemoteError::new(ErrorKind::Internal, e.to_string()))?;
        match namespace.inode_at(child).map(|inode| &inode.node) {
            Some(Node::Directory { .. }) => stack.push(Level {
                directory: child,
                path,
                after: None,
            }),
            Some(Node::File { .. }) => {
                let fitted = visit(
                    namespace,
                    registry,
                    &path,
                    child,
                    &mut page,
                    &mut listed_blocks,
                    limits,
                    now,
                );
                if !fitted {
                    // Ends before this file: the next page starts with it.
                    page.resume_after = last_file;
                    return Ok(page);
                }
                last_file = Some(path.to_string());
                let full = page.scanned_files as usize >= limits.files
                    || page.scanned_blocks >= limits.scanned_blocks
                    || listed_blocks >= limits.listed_blocks;
                if full {
                    page.resume_after = last_file;
                    return Ok(page);
                }
            }
            Some(Node::Symlink { .. } | Node::Special { .. }) | None => {}
        }
    }
    Ok(page)
}

/// The walk's stack positioned just after `start_after` (a path under
/// `root`, which need not exist any more).
fn start_stack(
    namespace: &Namespace,
    root_id: InodeId,
    root: &DfsPath,
    start_after: Option<&DfsPath>,
) -> Vec<Level> {
    let mut stack = vec![Level {
        directory: root_id,
        path: root.clone(),
        after: None,
    }];
    let Some(after) = start_after else {
        return stack;
    };
    let depth = root.components().count();
    let names: Vec<&str> = after.components().skip(depth).collect();
    for (index, name) in names.iter().enumerate() {
        let Some(level) = stack.last_mut() else {
            break;
        };
        level.after = Some((*name).to_string());
        if index + 1 == names.len() {
            break;
        }
        let child = match namespace.inode_at(level.directory).map(|inode| &inode.node) {
            Some(Node::Directory { children }) => children.get(*name).copied(),
            _ => None,
        };
        let is_directory = child
            .and_then(|id| namespace.inode_at(id))
            .is_some_and(|inode| matches!(inode.node, Node::Directory { .. }));
        let (Some(child), true) = (child, is_directory) else {
            break;
        };
        let Ok(path) = level.path.join(name) else {
            break;
        };
        stack.push(Level {
            directory: child,
            path,
            after: None,
        });
    }
    stack
}

/// Looks at one file; adds it to the page when it has blocks to list.
/// False (and nothing added or counted) when its listed blocks do not fit
/// what is left of a page that already holds something: the next page
/// starts with it.
#[allow(clippy::too_many_arguments)]
fn visit(
    namespace: &Namespace,
    registry: &Registry,
    path: &DfsPath,
    id: InodeId,
    page: &mut FsckPage,
    listed_blocks: &mut usize,
    limits: PageLimits,
    now: Instant,
) -> bool {
    let Some(Node::File {
        blocks,
        size_bytes,
        replication,
        ..
    }) = namespace.inode_at(id).map(|inode| &inode.node)
    else {
        return true;
    };
    let mut file = FsckFile {
        path: path.to_string(),
        size_bytes: *size_bytes,
        replication: *replication,
        missing_blocks: 0,
        corrupt_blocks: 0,
        under_replicated_blocks: 0,
        over_replicated_blocks: 0,
        blocks: Vec::new(),
        unlisted_blocks: 0,
    };
    let room = limits.listed_blocks.saturating_sub(*listed_blocks);
    for (index, meta) in blocks.iter().enumerate() {
        let block = fsck_block(registry, index, meta, now);
        let health = block.health(*replication);
        if !health.is_listed() {
            continue;
        }
        file.missing_blocks += u64::from(health.missing);
        file.corrupt_blocks += u64::from(health.corrupt);
        file.under_replicated_blocks += u64::from(health.under_replicated);
        file.over_replicated_blocks += u64::from(health.over_replicated);
        if file.blocks.len() < room {
            file.blocks.push(block);
        } else {
            file.unlisted_blocks += 1;
        }
    }
    if file.unlisted_blocks > 0 && page.scanned_files > 0 {
        return false;
    }
    page.scanned_files += 1;
    page.scanned_blocks += blocks.len() as u64;
    *listed_blocks += file.blocks.len();
    if !file.blocks.is_empty() {
        page.files.push(file);
    }
    true
}

fn fsck_block(registry: &Registry, index: usize, meta: &BlockMeta, now: Instant) -> FsckBlock {
    let counts = registry.replica_counts(meta.id, now);
    let narrow = |count: usize| u8::try_from(count).unwrap_or(u8::MAX);
    FsckBlock {
        id: meta.id,
        index: index as u64,
        length_bytes: meta.length_bytes,
        live_replicas: narrow(counts.live),
        stale_replicas: narrow(counts.stale),
        decommissioning_replicas: narrow(counts.draining),
        corrupt_replicas: narrow(counts.corrupt),
    }
}

#[cfg(test)]
mod tests;
