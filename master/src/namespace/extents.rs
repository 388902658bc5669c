//! Extent maps: a file's contents as pieces of blocks. A file written front
//! to back is its blocks whole, in order, and needs no map; a patch (a write
//! into the middle, a truncate, a write past the end) turns the file into a
//! list of extents, each a range of one block or a hole (zeros stored
//! nowhere), that covers the file from its first byte to its last without
//! gaps or overlaps. Sealed blocks are never changed: a patch's bytes are
//! new blocks, and the extents of the old blocks they cover are cut.
//!
//! Everything here is pure: the namespace validates and applies with it, so
//! a patch is as deterministic as every other op.

use std::collections::HashSet;

use dfs_engine::limits::{FILE_PIECES_MAX, PATCH_RANGES_MAX};
use dfs_engine::msg::{BlockId, FileRange};

use super::BlockMeta;

/// The id that marks a hole; block ids start at 1.
pub const HOLE: BlockId = BlockId(0);

/// `length_bytes` of a file from `offset_bytes` on: bytes
/// `block_offset_bytes..` of `block`, or zeros when `block` is `HOLE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub offset_bytes: u64,
    pub length_bytes: u64,
    pub block: BlockId,
    pub block_offset_bytes: u64,
}

impl Extent {
    pub fn end_bytes(&self) -> u64 {
        self.offset_bytes + self.length_bytes
    }

    pub fn is_hole(&self) -> bool {
        self.block == HOLE
    }

    /// Bytes `start..end` of the file (within this extent) as an extent.
    fn slice(&self, start: u64, end: u64) -> Extent {
        debug_assert!(self.offset_bytes <= start && start < end && end <= self.end_bytes());
        Extent {
            offset_bytes: start,
            length_bytes: end - start,
            block: self.block,
            block_offset_bytes: if self.is_hole() {
                0
            } else {
                self.block_offset_bytes + (start - self.offset_bytes)
            },
        }
    }

    /// True when `next` goes on where this one ends, in the same block or
    /// as the same hole: the two are one extent.
    fn joins(&self, next: &Extent) -> bool {
        self.block == next.block
            && self.end_bytes() == next.offset_bytes
            && (self.is_hole()
                || self.block_offset_bytes + self.length_bytes == next.block_offset_bytes)
    }
}

/// A file's extent map and the version of its contents (a fresh number at
/// every patch, so a reader tells that what it reads changed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extents {
    pub list: Vec<Extent>,
    pub version: u64,
}

/// The extents of blocks written front to back: each block whole.
pub fn whole(blocks: &[BlockMeta]) -> Vec<Extent> {
    let mut offset_bytes = 0;
    blocks
        .iter()
        .map(|block| {
            let extent = Extent {
                offset_bytes,
                length_bytes: block.length_bytes,
                block: block.id,
                block_offset_bytes: 0,
            };
            offset_bytes += block.length_bytes;
            extent
        })
        .collect()
}

/// Appends `extent`, joined to the last one when it goes on from it.
fn push(list: &mut Vec<Extent>, extent: Extent) {
    if extent.length_bytes == 0 {
        return;
    }
    match list.last_mut() {
        Some(last) if last.joins(&extent) => last.length_bytes += extent.length_bytes,
        _ => list.push(extent),
    }
}

/// Checks a patch against the bytes written for it: ranges in file order,
/// not overlapping, none empty, all within `size_bytes`, adding up to
/// `written_bytes`, at most `PATCH_RANGES_MAX`.
pub fn check_ranges(
    ranges: &[FileRange],
    written_bytes: u64,
    size_bytes: u64,
) -> Result<(), String> {
    if ranges.len() > PATCH_RANGES_MAX {
        return Err(format!(
            "a patch of {} ranges (at most {PATCH_RANGES_MAX})",
            ranges.len()
        ));
    }
    let mut covered_bytes = 0u64;
    let mut previous_end = 0u64;
    for (index, range) in ranges.iter().enumerate() {
        let Some(end) = range.offset_bytes.checked_add(range.length_bytes) else {
            return Err(format!("range {index} ends past the largest offset"));
        };
        if range.length_bytes == 0 {
            return Err(format!("range {index} at {} is empty", range.offset_bytes));
        }
        if index > 0 && range.offset_bytes < previous_end {
            return Err(format!(
                "range {index} at {} overlaps or comes before the range before it (ending at {previous_end})",
                range.offset_bytes
            ));
        }
        if end > size_bytes {
            return Err(format!(
                "range {index} ends at {end}, past the file's new size {size_bytes}"
            ));
        }
        previous_end = end;
        covered_bytes += range.length_bytes;
    }
    if covered_bytes != written_bytes {
        return Err(format!(
            "the ranges cover {covered_bytes} bytes but {written_bytes} were written"
        ));
    }
    Ok(())
}

/// The extents of `base` (covering its file from 0) after `ranges` are
/// replaced by the bytes of `written` in order and the file is cut or
/// extended (with a hole) to `size_bytes`. The ranges must have passed
/// `check_ranges`. Refused when the result has more than `FILE_PIECES_MAX`
/// extents.
pub fn patch(
    base: &[Extent],
    written: &[BlockMeta],
    ranges: &[FileRange],
    size_bytes: u64,
) -> Result<Vec<Extent>, String> {
    let stream = whole(written);
    let mut stream_at = 0usize; // extent of the stream the next range starts in
    let mut stream_bytes = 0u64; // stream offset the next range starts at
    let mut base_at = 0usize;
    let mut result: Vec<Extent> = Vec::with_capacity(base.len() + 2 * ranges.len() + 1);
    // Copies the base's bytes `from..to` (of the file) into the result.
    let copy_base = |result: &mut Vec<Extent>, base_at: &mut usize, from: u64, to: u64| {
        if from >= to {
            return;
        }
        while *base_at < base.len() && base[*base_at].end_bytes() <= from {
            *base_at += 1;
        }
        let mut at = *base_at;
        while at < base.len() && base[at].offset_bytes < to {
            let extent = &base[at];
            let start = extent.offset_bytes.max(from);
            let end = extent.end_bytes().min(to);
            push(result, extent.slice(start, end));
            if extent.end_bytes() > to {
                break;
            }
            at += 1;
        }
        *base_at = at;
        let base_end = base.last().map_or(0, Extent::end_bytes);
        if to > base_end.max(from) {
            // Past the base's end: a hole.
            let start = base_end.max(from);
            push(
                result,
                Extent {
                    offset_bytes: start,
                    length_bytes: to - start,
                    block: HOLE,
                    block_offset_bytes: 0,
                },
            );
        }
    };
    let mut file_bytes = 0u64;
    for range in ranges {
        copy_base(&mut result, &mut base_at, file_bytes, range.offset_bytes);
        // The range's bytes, from the stream.
        let mut left = range.length_bytes;
        let mut at_file = range.offset_bytes;
        while left > 0 {
            let Some(piece) = stream.get(stream_at) else {
                return Err("the ranges cover more bytes than were written".into());
            };
            let within = stream_bytes - piece.offset_bytes;
            let take = (piece.length_bytes - within).min(left);
            push(
                &mut result,
                Extent {
                    offset_bytes: at_file,
                    length_bytes: take,
                    block: piece.block,
                    block_offset_bytes: within,
                },
            );
            left -= take;
            at_file += take;
            stream_bytes += take;
            if stream_bytes == piece.end_bytes() {
                stream_at += 1;
            }
        }
        file_bytes = range.offset_bytes + range.length_bytes;
    }
    copy_base(&mut result, &mut base_at, file_bytes, size_bytes);
    if result.len() > FILE_PIECES_MAX {
        return Err(format!(
            "the file would be {} pieces (at most {FILE_PIECES_MAX}): rewrite it whole first",
            result.len()
        ));
    }
    Ok(result)
}

/// True when `list` is `blocks` whole, in order, every one `block_bytes`
/// long but the last: the layout of a file written front to back, which
/// needs no extent map.
pub fn is_whole(list: &[Extent], blocks: &[BlockMeta], block_bytes: u64) -> bool {
    list.len() == blocks.len()
        && list
            .iter()
            .zip(blocks)
            .enumerate()
            .all(|(index, (extent, block))| {
                extent.block == block.id
                    && extent.block_offset_bytes == 0
                    && extent.length_bytes == block.length_bytes
                    && (index + 1 == blocks.len() || block.length_bytes == block_bytes)
            })
}

/// The blocks `list` uses, each once, in the order of their first use.
pub fn used_blocks(list: &[Extent]) -> Vec<BlockId> {
    let mut seen = HashSet::new();
    list.iter()
        .filter(|extent| !extent.is_hole() && seen.insert(extent.block))
        .map(|extent| extent.block)
        .collect()
}

/// An extent map as read from disk must cover `size_bytes` from 0 without
/// gaps, each data extent within one of `blocks` (exactly the blocks it
/// uses), at most `FILE_PIECES_MAX` extents.
pub fn check(list: &[Extent], size_bytes: u64, blocks: &[BlockMeta]) -> Result<(), String> {
    if list.len() > FILE_PIECES_MAX {
        return Err(format!(
            "{} extents (at most {FILE_PIECES_MAX})",
            list.len()
        ));
    }
    let mut offset_bytes = 0u64;
    for (index, extent) in list.iter().enumerate() {
        if extent.offset_bytes != offset_bytes || extent.length_bytes == 0 {
            return Err(format!(
                "extent {index} at {} of {} bytes where {offset_bytes} was expected",
                extent.offset_bytes, extent.length_bytes
            ));
        }
        offset_bytes = extent
            .offset_bytes
            .checked_add(extent.length_bytes)
            .ok_or_else(|| format!("extent {index} ends past the largest offset"))?;
        if extent.is_hole() {
            if extent.block_offset_bytes != 0 {
                return Err(format!("hole {index} has a block offset"));
            }
            continue;
        }
        let Some(block) = blocks.iter().find(|block| block.id == extent.block) else {
            return Err(format!(
                "extent {index} uses block {} the file does not have",
                extent.block
            ));
        };
        let fits = extent
            .block_offset_bytes
            .checked_add(extent.length_bytes)
            .is_some_and(|end| end <= block.length_bytes);
        if !fits {
            return Err(format!(
                "extent {index} ends past block {} ({} bytes)",
                block.id, block.length_bytes
            ));
        }
    }
    if offset_bytes != size_bytes {
        return Err(format!(
            "extents end at {offset_bytes}, the file has {size_bytes} bytes"
        ));
    }
    let used = used_blocks(list);
    if used.len() != blocks.len() || used.iter().zip(blocks).any(|(id, block)| *id != block.id) {
        return Err("the file's blocks are not those its extents use, in order".into());
    }
    Ok(())
}

/// The index of the extent holding byte `offset_bytes`, or `list.len()` at
/// or past the end.
pub fn index_at(list: &[Extent], offset_bytes: u64) -> usize {
    list.partition_point(|extent| extent.end_bytes() <= offset_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dfs_engine::msg::Generation;

    fn block(id: u64, length_bytes: u64) -> BlockMeta {
        BlockMeta {
            id: BlockId(id),
            generation: Generation(0),
            length_bytes,
            crc32c: 0,
        }
    }

    fn range(offset_bytes: u64, length_bytes: u64) -> FileRange {
        FileRange {
            offset_bytes,
            length_bytes,
        }
    }

    /// What each byte of a file is: (block, offset in block), or None for zero.
    type Model = Vec<Option<(u64, u64)>>;

    fn model_of(list: &[Extent]) -> Model {
        let mut bytes = Vec::new();
        for extent in list {
            for i in 0..extent.length_bytes {
                bytes.push(
                    (!extent.is_hole()).then(|| (extent.block.0, extent.block_offset_bytes + i)),
                );
            }
        }
        bytes
    }

    fn model_patch(base: &Model, written: &[BlockMeta], ranges: &[FileRange], size: u64) -> Model {
        let stream: Model = written
            .iter()
            .flat_map(|b| (0..b.length_bytes).map(move |i| Some((b.id.0, i))))
            .collect();
        let mut bytes = base.clone();
        let mut at = 0usize;
        for r in ranges {
            let end = (r.offset_bytes + r.length_bytes) as usize;
            if bytes.len() < end {
                bytes.resize(end, None);
            }
            for byte in &mut bytes[r.offset_bytes as usize..end] {
                *byte = stream[at];
                at += 1;
            }
        }
        bytes.resize(size as usize, None);
        bytes
    }

    #[test]
    fn a_patch_in_the_middle_cuts_the_block_around_it() {
        let base = whole(&[block(1, 10), block(2, 10)]);
        let result = patch(&base, &[block(3, 4)], &[range(8, 4)], 20).expect("patch");
        assert_eq!(
            result,
            vec![
                Extent {
                    offset_bytes: 0,
                    length_bytes: 8,
                    block: BlockId(1),
                    block_offset_bytes: 0
                },
                Extent {
                    offset_bytes: 8,
                    length_bytes: 4,
                    block: BlockId(3),
                    block_offset_bytes: 0
                },
                Extent {
                    offset_bytes: 12,
                    length_bytes: 8,
                    block: BlockId(2),
                    block_offset_bytes: 2
                },
            ]
        );
        assert_eq!(
            used_blocks(&result),
            vec![BlockId(1), BlockId(3), BlockId(2)]
        );
    }

    #[test]
    fn truncation_cuts_and_extension_makes_a_hole() {
        let base = whole(&[block(1, 10)]);
        let cut = patch(&base, &[], &[], 4).expect("cut");
        assert_eq!(model_of(&cut), model_patch(&model_of(&base), &[], &[], 4));
        let grown = patch(&cut, &[], &[], 9).expect("grow");
        assert_eq!(grown.len(), 2);
        assert!(grown[1].is_hole());
        assert_eq!(patch(&grown, &[], &[], 0).expect("empty"), vec![]);
    }

    #[test]
    fn a_range_that_rewrites_a_piece_back_in_place_joins_it() {
        // Block 1 bytes 0..10, then block 1's own continuation is not
        // possible, but two holes in a row are one.
        let base = patch(&[], &[], &[], 5).expect("hole");
        let more = patch(&base, &[], &[], 9).expect("longer hole");
        assert_eq!(more.len(), 1);
    }

    #[test]
    fn ranges_are_checked() {
        assert!(check_ranges(&[range(0, 4), range(2, 4)], 8, 10).is_err());
        assert!(check_ranges(&[range(4, 2), range(0, 2)], 4, 10).is_err());
        assert!(check_ranges(&[range(0, 0)], 0, 10).is_err());
        assert!(check_ranges(&[range(8, 4)], 4, 10).is_err());
        assert!(check_ranges(&[range(0, 4)], 5, 10)
            .expect_err("short")
            .contains("5 were written"));
        assert!(check_ranges(&[range(u64::MAX, 2)], 2, u64::MAX).is_err());
        assert!(check_ranges(&[range(0, 4), range(4, 4)], 8, 8).is_ok());
    }

    /// Random patches on a byte model: the extent map always says what the
    /// model says, stays well formed, and uses exactly the blocks it lists.
    #[test]
    fn random_patches_match_a_byte_model() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |bound: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % bound.max(1)
        };
        let mut next_id = 1u64;
        for _ in 0..200 {
            let mut list: Vec<Extent> = Vec::new();
            let mut metas: Vec<BlockMeta> = Vec::new();
            let mut model: Model = Vec::new();
            for _ in 0..20 {
                let size = next(200);
                let mut ranges = Vec::new();
                let mut at = 0;
                while at < size && ranges.len() < 5 {
                    let start = at + next(40);
                    if start >= size {
                        break;
                    }
                    let length = 1 + next((size - start).min(50));
                    ranges.push(range(start, length));
                    at = start + length;
                }
                let total: u64 = ranges.iter().map(|r| r.length_bytes).sum();
                let mut written = Vec::new();
                let mut left = total;
                while left > 0 {
                    let length = (1 + next(30)).min(left);
                    written.push(block(next_id, length));
                    next_id += 1;
                    left -= length;
                }
                check_ranges(&ranges, total, size).expect("valid ranges");
                let expected = model_patch(&model, &written, &ranges, size);
                list = patch(&list, &written, &ranges, size).expect("patch");
                model = expected;
                assert_eq!(model_of(&list), model, "ranges {ranges:?} size {size}");
                metas.extend(written);
                let used = used_blocks(&list);
                let blocks: Vec<BlockMeta> = used
                    .iter()
                    .map(|id| metas.iter().find(|m| m.id == *id).expect("known").clone())
                    .collect();
                check(&list, size, &blocks).expect("well formed");
                for pair in list.windows(2) {
                    assert!(!pair[0].joins(&pair[1]), "unjoined neighbours {pair:?}");
                }
                if size > 0 {
                    let probe = next(size);
                    let index = index_at(&list, probe);
                    assert!(list[index].offset_bytes <= probe && probe < list[index].end_bytes());
                }
            }
        }
    }
}
