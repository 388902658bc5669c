//! Compaction: a file that many patches cut into small pieces is written
//! again as whole blocks (its holes stay holes), in one conditional patch
//! that applies only if nobody changed the file meanwhile, so it never
//! undoes a writer's change. The old blocks are freed by the patch, through
//! the same durable path as a delete's. Its bytes, inode, owner, mode and
//! modification time stay as they were.

use std::io::Write;

use dfs_engine::limits::COMPACT_PIECES_MIN;
use dfs_engine::msg::{EntryKind, ErrorKind, FileRange, LocatedBlock};
use dfs_engine::path::DfsPath;
use dfs_engine::{Error, Result};

use crate::client::Client;
use crate::write::{PatchTarget, WriteOptions};

/// What `Client::compact` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compacted {
    /// Written again: pieces before and after.
    Done { before: u64, after: u64 },
    /// Few enough pieces for its size: left as it is.
    NotNeeded { pieces: u64 },
    /// Changed by someone else while it was copied: left to them.
    Raced,
}

/// The runs of data between holes, as ranges of the file.
fn data_runs(pieces: &[LocatedBlock]) -> Vec<FileRange> {
    let mut runs: Vec<FileRange> = Vec::new();
    for piece in pieces.iter().filter(|piece| !piece.is_hole()) {
        match runs.last_mut() {
            Some(run) if run.offset_bytes + run.length_bytes == piece.offset_bytes => {
                run.length_bytes += piece.length_bytes
            }
            _ => runs.push(FileRange {
                offset_bytes: piece.offset_bytes,
                length_bytes: piece.length_bytes,
            }),
        }
    }
    runs
}

/// The pieces the file would have written again: each run of data as whole
/// blocks, and its holes.
fn ideal_pieces(pieces: &[LocatedBlock], block_bytes: u64) -> u64 {
    let holes = pieces.iter().filter(|piece| piece.is_hole()).count() as u64;
    let blocks: u64 = data_runs(pieces)
        .iter()
        .map(|run| run.length_bytes.div_ceil(block_bytes.max(1)))
        .sum();
    holes + blocks
}

/// True when a file of `pieces` pieces is worth compacting: at least
/// `COMPACT_PIECES_MIN`, and more than twice what whole blocks need.
pub fn is_fragmented(pieces: u64, ideal: u64) -> bool {
    pieces >= COMPACT_PIECES_MIN && pieces > ideal.saturating_mul(2)
}

impl Client {
    /// Writes the file at `path` again as whole blocks if it is fragmented
    /// (see `is_fragmented`; `force`: whatever its pieces).
    pub fn compact(&mut self, path: &DfsPath, force: bool) -> Result<Compacted> {
        let file = self.get_blocks(path)?;
        let status = file.status;
        if status.kind != EntryKind::File {
            return Err(Error::Invalid(format!("{path}: not a file")));
        }
        let before = file.blocks.len() as u64;
        let ideal = ideal_pieces(&file.blocks, status.block_bytes);
        if !force && !is_fragmented(before, ideal) {
            return Ok(Compacted::NotNeeded { pieces: before });
        }
        let runs = data_runs(&file.blocks);
        let mut reader = self.open(path)?;
        if reader.status().version != status.version || reader.status().inode != status.inode {
            return Ok(Compacted::Raced);
        }
        let options = WriteOptions {
            replication: Some(status.replication),
            block_bytes: Some(status.block_bytes),
            overwrite: true,
            mode: status.mode,
            modified_ns: Some(status.modified_ns),
            ..WriteOptions::default()
        };
        let mut writer = self.create(path, options)?;
        let mut buffer = vec![0u8; 1 << 20];
        for run in &runs {
            let end = run.offset_bytes + run.length_bytes;
            let mut at = run.offset_bytes;
            while at < end {
                let want = usize::try_from(end - at)
                    .unwrap_or(usize::MAX)
                    .min(buffer.len());
                let read = reader.read_at(at, &mut buffer[..want])?;
                if read == 0 {
                    return Err(Error::Invalid(format!(
                        "{path}: ended at {at} bytes while it was compacted"
                    )));
                }
                writer
                    .write_all(&buffer[..read])
                    .map_err(|e| Error::io(format!("compact {path}"), e))?;
                at += read as u64;
            }
        }
        let target = PatchTarget {
            if_version: Some(status.version),
            inode: None,
        };
        match writer.finish_patch_of(runs, status.size_bytes, target) {
            Ok(_) => {}
            Err(Error::Remote(error)) if error.kind == ErrorKind::AlreadyExists => {
                return Ok(Compacted::Raced)
            }
            Err(error) => return Err(error),
        }
        let after = self.stat(path)?.block_count;
        Ok(Compacted::Done { before, after })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dfs_engine::msg::{BlockId, Generation};

    fn piece(id: u64, offset_bytes: u64, length_bytes: u64) -> LocatedBlock {
        LocatedBlock {
            id: BlockId(id),
            generation: Generation(1),
            offset_bytes,
            length_bytes,
            locations: Vec::new(),
            crc32c: 0,
            block_offset_bytes: 0,
            block_length_bytes: if id == 0 { 0 } else { length_bytes },
            token: Vec::new(),
        }
    }

    #[test]
    fn runs_join_data_between_holes_and_the_ideal_counts_whole_blocks() {
        let pieces = [
            piece(1, 0, 3),
            piece(2, 3, 3),
            piece(0, 6, 10),
            piece(3, 16, 9),
        ];
        assert_eq!(
            data_runs(&pieces),
            vec![
                FileRange {
                    offset_bytes: 0,
                    length_bytes: 6
                },
                FileRange {
                    offset_bytes: 16,
                    length_bytes: 9
                }
            ]
        );
        // 6 bytes: 2 blocks of 4; 9 bytes: 3; and the hole.
        assert_eq!(ideal_pieces(&pieces, 4), 6);
        assert!(!is_fragmented(COMPACT_PIECES_MIN - 1, 1));
        assert!(is_fragmented(COMPACT_PIECES_MIN, 1));
        assert!(!is_fragmented(COMPACT_PIECES_MIN, COMPACT_PIECES_MIN / 2));
    }
}
