//! The block file format, sans I/O: the names of replicas in a data
//! directory, the layout of a block file, and the rules its chunks follow.
//! Every writer (the engine's blocking `BlockWriter`, the minion's io_uring
//! writer) and every reader (the engine's `BlockReader`, the minion's read
//! path and scrubber) goes through this module, so no two drivers of the
//! format can drift apart. Layout in docs/format.md ("Block file").
//!
//! A replica lives in `DIR/blocks/<xx>/blk_<id>_<generation>_<crc>`: its
//! block id (16 hex digits; `xx` are the two of its low byte), its
//! generation (16 hex digits) and the CRC32C of its bytes (8 hex digits),
//! so that a full block report is a directory listing. The file is
//! `[data][CRC32C of each chunk, u32 LE][footer]`; version 2 footers
//! (48 bytes) repeat the id, generation and block CRC32C of the name.
//! Files of block format version 1 (32-byte footers, no generation, named
//! `blk_<id>`) are renamed once, at open, to generation 0 with the CRC32C of
//! their chunks, and read as they are.
//!
//! A block being written lives in `DIR/tmp/` and is renamed into `blocks/`
//! when sealed; a replica that failed verification is moved to
//! `DIR/quarantine/` under its name.

use std::path::{Path, PathBuf};

use crate::crc::CrcAppender;
use crate::limits::{BLOCK_BYTES_MAX, CHUNK_BYTES, FRAME_PAYLOAD_BYTES_MAX};
use crate::msg::{BlockId, Generation, ReplicaId, StoredBlock};

/// "DFSB" read as a little-endian u32.
pub const BLOCK_MAGIC: u32 = u32::from_le_bytes(*b"DFSB");
/// The version this build writes: footers with generation and block CRC.
pub const FORMAT_VERSION: u16 = 2;
/// Files written before generations; read, never written.
pub const FORMAT_VERSION_1: u16 = 1;
pub const FOOTER_BYTES: usize = 48;
pub const FOOTER_V1_BYTES: usize = 32;
/// Bytes of one stored chunk checksum.
pub const CRC_BYTES: u64 = 4;
/// Most chunks of one block: a largest block cut in standard chunks. Bounds
/// the checksum array a reader loads (128 KiB), whatever a footer claims.
pub const BLOCK_CHUNKS_MAX: u64 = BLOCK_BYTES_MAX / CHUNK_BYTES as u64;

pub const BLOCKS_DIR: &str = "blocks";
pub const TMP_DIR: &str = "tmp";
pub const QUARANTINE_DIR: &str = "quarantine";
/// The `blocks/` subdirectories: two hex digits of the low byte of the id.
pub const SUBDIR_COUNT: u64 = 256;

const _: () = assert!(BLOCK_BYTES_MAX.is_multiple_of(CHUNK_BYTES as u64));
const _: () = assert!(CHUNK_BYTES <= FRAME_PAYLOAD_BYTES_MAX);
const _: () = assert!(FOOTER_V1_BYTES < FOOTER_BYTES);

/// One replica on disk, as its name says: the block, its generation and
/// the CRC32C of its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplicaName {
    pub block: BlockId,
    pub generation: Generation,
    pub crc32c: u32,
}

/// What a file name under `blocks/` or `quarantine/` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParsedName {
    Replica(ReplicaName),
    /// `blk_<id>`: a file of block format version 1, to be renamed.
    Version1(BlockId),
}

fn parse_hex(text: &str, digits: usize) -> Option<u64> {
    if text.len() != digits || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

/// Parses a replica's file name strictly (lowercase hex of fixed widths);
/// anything else is not a replica.
pub fn parse_name(name: &str) -> Option<ParsedName> {
    let rest = name.strip_prefix("blk_")?;
    if rest.len() == 16 {
        return parse_hex(rest, 16).map(|id| ParsedName::Version1(BlockId(id)));
    }
    let mut parts = rest.split('_');
    let block = parse_hex(parts.next()?, 16)?;
    let generation = parse_hex(parts.next()?, 16)?;
    let crc = parse_hex(parts.next()?, 8)?;
    if parts.next().is_some() {
        return None;
    }
    Some(ParsedName::Replica(ReplicaName {
        block: BlockId(block),
        generation: Generation(generation),
        crc32c: crc as u32,
    }))
}

/// Parses the name of a `blocks/` subdirectory: its low byte.
pub fn parse_subdir_name(name: &str) -> Option<u64> {
    parse_hex(name, 2)
}

/// The `blocks/` subdirectory of `block`.
pub fn subdir_name(block: BlockId) -> String {
    format!("{:02x}", block.0 & 0xff)
}

impl ReplicaName {
    pub fn replica(&self) -> ReplicaId {
        ReplicaId {
            block: self.block,
            generation: self.generation,
        }
    }

    /// `blk_<id>_<generation>_<crc>`.
    pub fn file_name(&self) -> String {
        format!("{}_{}_{:08x}", self.block, self.generation, self.crc32c)
    }

    /// The format version of the file: generation 0 means a version-1 file.
    pub fn format_version(&self) -> u16 {
        if self.generation == Generation::LEGACY {
            FORMAT_VERSION_1
        } else {
            FORMAT_VERSION
        }
    }

    pub fn footer_bytes(&self) -> usize {
        footer_bytes(self.format_version())
    }

    /// Bytes of the whole file of a replica of `length_bytes` bytes of data
    /// in standard chunks.
    pub fn file_bytes(&self, length_bytes: u64) -> u64 {
        file_bytes(length_bytes, self.footer_bytes())
    }

    /// The data length of a replica whose file has `file_bytes` bytes, if
    /// such a file can exist (standard chunks).
    pub fn data_bytes(&self, file_bytes: u64) -> Option<u64> {
        data_bytes(file_bytes, self.footer_bytes())
    }

    /// What a block report says of this replica, its file being `file_bytes` long.
    pub fn stored(&self, file_bytes: u64) -> Option<StoredBlock> {
        Some(StoredBlock {
            block: self.block,
            generation: self.generation,
            length_bytes: self.data_bytes(file_bytes)?,
            crc32c: self.crc32c,
        })
    }
}

fn footer_bytes(version: u16) -> usize {
    if version == FORMAT_VERSION_1 {
        FOOTER_V1_BYTES
    } else {
        FOOTER_BYTES
    }
}

fn chunk_count(length_bytes: u64, chunk_bytes: u64) -> u64 {
    length_bytes.div_ceil(chunk_bytes)
}

fn file_bytes(length_bytes: u64, footer: usize) -> u64 {
    length_bytes + chunk_count(length_bytes, u64::from(CHUNK_BYTES)) * CRC_BYTES + footer as u64
}

/// The inverse of `file_bytes`: `length + 4 * chunks(length)` grows
/// strictly with the length, so at most one length gives a file size.
fn data_bytes(file_bytes_total: u64, footer: usize) -> Option<u64> {
    let payload = file_bytes_total.checked_sub(footer as u64)?;
    let stride = u64::from(CHUNK_BYTES) + CRC_BYTES;
    let chunks = payload.div_ceil(stride);
    let length = payload.checked_sub(chunks * CRC_BYTES)?;
    (length <= BLOCK_BYTES_MAX && chunk_count(length, u64::from(CHUNK_BYTES)) == chunks)
        .then_some(length)
}

/// Where a sealed replica lives under the data directory `root`.
pub fn block_path(root: &Path, name: &ReplicaName) -> PathBuf {
    root.join(BLOCKS_DIR)
        .join(subdir_name(name.block))
        .join(name.file_name())
}

/// Where a quarantined replica lives under `root`.
pub fn quarantine_path(root: &Path, name: &ReplicaName) -> PathBuf {
    root.join(QUARANTINE_DIR).join(name.file_name())
}

/// Where a block being written lives under `root` (`suffix` tells two
/// attempts apart).
pub fn temporary_path(root: &Path, replica: ReplicaId, suffix: u64) -> PathBuf {
    root.join(TMP_DIR).join(format!(
        "{}_{}.{suffix:016x}",
        replica.block, replica.generation
    ))
}

/// The chunks of a block being written, checked as they come, and the tail
/// (checksum array and footer) that seals it. Both writers use it.
#[derive(Clone, Debug)]
pub struct ChunkSequence {
    replica: ReplicaId,
    length_bytes: u64,
    /// The CRC32C of each chunk so far, as stored (u32 LE each).
    crc_array: Vec<u8>,
    /// A chunk shorter than `CHUNK_BYTES` was taken: it must be the last.
    short_chunk_seen: bool,
    block_crc: CrcAppender,
}

impl ChunkSequence {
    /// A new block; generation 0 (version-1 files) is never written.
    pub fn new(replica: ReplicaId) -> ChunkSequence {
        assert_ne!(
            replica.generation,
            Generation::LEGACY,
            "blocks are only written with a generation"
        );
        ChunkSequence {
            replica,
            length_bytes: 0,
            crc_array: Vec::new(),
            short_chunk_seen: false,
            block_crc: CrcAppender::new(),
        }
    }

    pub fn replica(&self) -> ReplicaId {
        self.replica
    }

    pub fn length_bytes(&self) -> u64 {
        self.length_bytes
    }

    pub fn chunk_count(&self) -> u64 {
        self.crc_array.len() as u64 / CRC_BYTES
    }

    /// The CRC32C of the bytes so far.
    pub fn block_crc32c(&self) -> u32 {
        self.block_crc.crc()
    }

    /// Says why a next chunk of `chunk_bytes` bytes may not follow, if it
    /// may not: every chunk has 1 to `CHUNK_BYTES` bytes, only the last may
    /// be short, and the block stays within `BLOCK_BYTES_MAX`.
    pub fn refusal(&self, chunk_bytes: usize) -> Option<String> {
        if self.short_chunk_seen {
            Some("a chunk after the short last chunk".into())
        } else if chunk_bytes == 0 || chunk_bytes > CHUNK_BYTES as usize {
            Some(format!(
                "a chunk of {chunk_bytes} bytes (chunks have 1 to {CHUNK_BYTES})"
            ))
        } else if self.length_bytes + chunk_bytes as u64 > BLOCK_BYTES_MAX {
            Some(format!("the block grows over {BLOCK_BYTES_MAX} bytes"))
        } else {
            None
        }
    }

    /// Says why chunks of `chunk_lengths` may not follow, one after the
    /// other, naming the block and the first chunk that may not; None when
    /// they all may. Nothing changes: `push` each after they are written.
    pub fn refusal_of_run(&self, chunk_lengths: impl IntoIterator<Item = usize>) -> Option<String> {
        let mut probe = ChunkSequence {
            replica: self.replica,
            length_bytes: self.length_bytes,
            crc_array: Vec::new(),
            short_chunk_seen: self.short_chunk_seen,
            block_crc: self.block_crc,
        };
        let first_index = self.chunk_count();
        for (offset, chunk_bytes) in chunk_lengths.into_iter().enumerate() {
            if let Some(why) = probe.refusal(chunk_bytes) {
                return Some(format!(
                    "{} chunk {}: {why}",
                    self.replica.block,
                    first_index + offset as u64
                ));
            }
            probe.length_bytes += chunk_bytes as u64;
            probe.short_chunk_seen = chunk_bytes < CHUNK_BYTES as usize;
        }
        None
    }

    /// Takes the next chunk, of `chunk_bytes` bytes whose CRC32C is `crc`
    /// (which the caller checked against the bytes); the error says why it
    /// may not follow, naming the block and the chunk.
    pub fn push(&mut self, chunk_bytes: usize, crc: u32) -> Result<(), String> {
        if let Some(why) = self.refusal(chunk_bytes) {
            return Err(format!(
                "{} chunk {}: {why}",
                self.replica.block,
                self.chunk_count()
            ));
        }
        self.length_bytes += chunk_bytes as u64;
        self.crc_array.extend_from_slice(&crc.to_le_bytes());
        self.short_chunk_seen = chunk_bytes < CHUNK_BYTES as usize;
        self.block_crc.append(crc, chunk_bytes as u64);
        Ok(())
    }

    /// The name the sealed replica takes.
    pub fn name(&self) -> ReplicaName {
        ReplicaName {
            block: self.replica.block,
            generation: self.replica.generation,
            crc32c: self.block_crc32c(),
        }
    }

    /// The checksum array and the footer, to be written right after the
    /// data; the file is then `name().file_bytes(length_bytes())` long.
    pub fn tail(&self) -> Vec<u8> {
        let mut tail = Vec::with_capacity(self.crc_array.len() + FOOTER_BYTES);
        tail.extend_from_slice(&self.crc_array);
        tail.extend_from_slice(&encode_footer(
            &self.name(),
            self.length_bytes,
            &self.crc_array,
        ));
        debug_assert_eq!(
            self.length_bytes + tail.len() as u64,
            self.name().file_bytes(self.length_bytes)
        );
        tail
    }
}

/// Footer version 2: magic u32, version u16, reserved u16 (0), block u64,
/// generation u64, length_bytes u64, chunk_bytes u32, block CRC32C u32,
/// reserved u32 (0), footer CRC32C u32 over the checksum array and the 44
/// bytes before it.
fn encode_footer(name: &ReplicaName, length_bytes: u64, crc_array: &[u8]) -> [u8; FOOTER_BYTES] {
    let mut footer = [0u8; FOOTER_BYTES];
    footer[0..4].copy_from_slice(&BLOCK_MAGIC.to_le_bytes());
    footer[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    footer[8..16].copy_from_slice(&name.block.0.to_le_bytes());
    footer[16..24].copy_from_slice(&name.generation.0.to_le_bytes());
    footer[24..32].copy_from_slice(&length_bytes.to_le_bytes());
    footer[32..36].copy_from_slice(&CHUNK_BYTES.to_le_bytes());
    footer[36..40].copy_from_slice(&name.crc32c.to_le_bytes());
    let crc = footer_crc(crc_array, &footer);
    footer[44..48].copy_from_slice(&crc.to_le_bytes());
    footer
}

/// The footer checksum covers the checksum array and the footer before it.
fn footer_crc(crc_array: &[u8], footer: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(crc_array), &footer[..footer.len() - 4])
}

fn le_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut array = [0u8; 4];
    array.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(array)
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut array = [0u8; 8];
    array.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(array)
}

/// Where the parts of a block file are, from a footer checked against the
/// replica's name and the file's size (but not yet against its checksums).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub length_bytes: u64,
    /// Bytes of every chunk but the last.
    pub chunk_bytes: u32,
    pub chunk_count: u64,
    /// The checksum array starts right after the data.
    pub crc_array_offset: u64,
    pub crc_array_bytes: u64,
    /// The version-2 footer's block CRC32C; None in version 1.
    footer_block_crc: Option<u32>,
}

/// Checks a replica's footer (the last `name.footer_bytes()` bytes of its
/// file of `file_bytes` bytes) against its name and size; says what is
/// wrong otherwise. Nothing is allocated from what the footer claims.
pub fn check_footer(name: &ReplicaName, footer: &[u8], file_bytes: u64) -> Result<Layout, String> {
    let version = name.format_version();
    let expected_footer_bytes = footer_bytes(version);
    if file_bytes < expected_footer_bytes as u64 || footer.len() != expected_footer_bytes {
        return Err(format!(
            "the file of {file_bytes} bytes is shorter than a footer"
        ));
    }
    let magic = le_u32(footer, 0);
    if magic != BLOCK_MAGIC {
        return Err(format!(
            "bad footer magic {magic:#010x} (not a block file of format version {version})"
        ));
    }
    let (found_version, reserved) = (le_u16(footer, 4), le_u16(footer, 6));
    if found_version != version || reserved != 0 {
        return Err(format!(
            "block format version {found_version}.{reserved}, its name says version {version}"
        ));
    }
    let block = BlockId(le_u64(footer, 8));
    if block != name.block {
        return Err(format!("the footer names {block}"));
    }
    let (length_bytes, chunk_bytes, footer_block_crc) = if version == FORMAT_VERSION_1 {
        (le_u64(footer, 16), le_u32(footer, 24), None)
    } else {
        let generation = Generation(le_u64(footer, 16));
        if generation != name.generation {
            return Err(format!(
                "the footer says generation {generation}, the name {}",
                name.generation
            ));
        }
        if le_u32(footer, 40) != 0 {
            return Err("the footer's reserved field is not zero".into());
        }
        (
            le_u64(footer, 24),
            le_u32(footer, 32),
            Some(le_u32(footer, 36)),
        )
    };
    if chunk_bytes == 0 || chunk_bytes > FRAME_PAYLOAD_BYTES_MAX {
        return Err(format!("impossible chunk size {chunk_bytes}"));
    }
    let chunks = chunk_count(length_bytes, u64::from(chunk_bytes));
    if length_bytes > BLOCK_BYTES_MAX || chunks > BLOCK_CHUNKS_MAX {
        return Err(format!(
            "impossible length {length_bytes} in chunks of {chunk_bytes}"
        ));
    }
    let crc_array_bytes = chunks * CRC_BYTES;
    let expected_bytes = length_bytes + crc_array_bytes + expected_footer_bytes as u64;
    if file_bytes != expected_bytes {
        return Err(format!(
            "the file has {file_bytes} bytes; its footer says {length_bytes} bytes of data \
             in {chunks} chunks, {expected_bytes} bytes in all"
        ));
    }
    Ok(Layout {
        length_bytes,
        chunk_bytes,
        chunk_count: chunks,
        crc_array_offset: length_bytes,
        crc_array_bytes,
        footer_block_crc,
    })
}

/// Checks a replica's checksum array against its footer's checksum, and
/// the CRC32C the chunks combine to against the name (and the version-2
/// footer); returns the chunks' CRC32Cs.
pub fn check_checksums(
    name: &ReplicaName,
    layout: &Layout,
    footer: &[u8],
    crc_array: &[u8],
) -> Result<Vec<u32>, String> {
    if crc_array.len() as u64 != layout.crc_array_bytes {
        return Err(format!(
            "{} bytes of checksums for {} chunks",
            crc_array.len(),
            layout.chunk_count
        ));
    }
    let stored = le_u32(footer, footer.len() - 4);
    let expected = footer_crc(crc_array, footer);
    if stored != expected {
        return Err(format!(
            "footer checksum {stored:#010x} does not match {expected:#010x}"
        ));
    }
    let crcs: Vec<u32> = crc_array
        .chunks_exact(CRC_BYTES as usize)
        .map(|bytes| u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
        .collect();
    let combined = combine_chunks(&crcs, layout.length_bytes, layout.chunk_bytes);
    if let Some(footer_crc) = layout.footer_block_crc {
        if footer_crc != name.crc32c {
            return Err(format!(
                "the footer says block CRC32C {footer_crc:#010x}, the name {:#010x}",
                name.crc32c
            ));
        }
    }
    if combined != name.crc32c {
        return Err(format!(
            "the chunks make CRC32C {combined:#010x}, the name says {:#010x}",
            name.crc32c
        ));
    }
    Ok(crcs)
}

/// The CRC32C of a block of `length_bytes` bytes from its chunks' CRC32Cs
/// (every chunk `chunk_bytes` long but the last).
pub fn combine_chunks(crcs: &[u32], length_bytes: u64, chunk_bytes: u32) -> u32 {
    let mut appender = CrcAppender::new();
    let mut left = length_bytes;
    for &crc in crcs {
        let piece = left.min(u64::from(chunk_bytes));
        appender.append(crc, piece);
        left -= piece;
    }
    appender.crc()
}

/// The name a version-1 file `blk_<id>` takes when it is renamed at open:
/// generation 0 and the CRC32C its chunks combine to. `footer` is its last
/// 32 bytes, `crc_array` its checksums; everything is checked first.
pub fn name_of_version_1(
    block: BlockId,
    footer: &[u8],
    file_bytes: u64,
    read_crc_array: impl FnOnce(&Layout) -> Result<Vec<u8>, String>,
) -> Result<ReplicaName, String> {
    // The CRC in the name is not known yet: check the layout with a
    // placeholder, then the checksums against what they combine to.
    let mut name = ReplicaName {
        block,
        generation: Generation::LEGACY,
        crc32c: 0,
    };
    let layout = check_footer(&name, footer, file_bytes)?;
    let crc_array = read_crc_array(&layout)?;
    if crc_array.len() as u64 != layout.crc_array_bytes {
        return Err(format!(
            "{} bytes of checksums for {} chunks",
            crc_array.len(),
            layout.chunk_count
        ));
    }
    let crcs: Vec<u32> = crc_array
        .chunks_exact(CRC_BYTES as usize)
        .map(|bytes| u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
        .collect();
    name.crc32c = combine_chunks(&crcs, layout.length_bytes, layout.chunk_bytes);
    check_checksums(&name, &layout, footer, &crc_array)?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNK: usize = CHUNK_BYTES as usize;

    fn replica(block: u64, generation: u64) -> ReplicaId {
        ReplicaId {
            block: BlockId(block),
            generation: Generation(generation),
        }
    }

    /// A whole version-2 file of `data`, as a writer makes it.
    fn file_of(replica: ReplicaId, data: &[u8]) -> (ReplicaName, Vec<u8>) {
        let mut sequence = ChunkSequence::new(replica);
        for chunk in data.chunks(CHUNK) {
            sequence
                .push(chunk.len(), crc32c::crc32c(chunk))
                .expect("a good chunk");
        }
        let mut bytes = data.to_vec();
        bytes.extend_from_slice(&sequence.tail());
        (sequence.name(), bytes)
    }

    /// Reads a file as a reader does: footer, then checksums.
    fn read(name: &ReplicaName, bytes: &[u8]) -> Result<Vec<u32>, String> {
        let footer_start = bytes.len().saturating_sub(name.footer_bytes());
        let footer = &bytes[footer_start..];
        let layout = check_footer(name, footer, bytes.len() as u64)?;
        let start = layout.crc_array_offset as usize;
        let crc_array = &bytes[start..start + layout.crc_array_bytes as usize];
        check_checksums(name, &layout, footer, crc_array)
    }

    fn pattern(length: usize) -> Vec<u8> {
        (0..length).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn names_round_trip_and_are_strict() {
        let name = ReplicaName {
            block: BlockId(0x0123_4567_89ab_cdef),
            generation: Generation(0xfeed),
            crc32c: 0xdead_beef,
        };
        assert_eq!(
            name.file_name(),
            "blk_0123456789abcdef_000000000000feed_deadbeef"
        );
        assert_eq!(
            parse_name(&name.file_name()),
            Some(ParsedName::Replica(name))
        );
        assert_eq!(
            parse_name("blk_00000000000000ff"),
            Some(ParsedName::Version1(BlockId(255)))
        );
        for bad in [
            "blk_0123456789ABCDEF_000000000000feed_deadbeef",
            "blk_0123456789abcdef_000000000000feed_deadbee",
            "blk_0123456789abcdef_000000000000feed_deadbeef_",
            "blk_0123456789abcdef_000000000000feed",
            "blk_0123456789abcdef__deadbeef",
            "blk_123",
            "xblk_00000000000000ff",
            "blk_0123456789abcdef_000000000000feed_deadbeef.tmp",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
        assert_eq!(subdir_name(BlockId(0x1ff)), "ff");
        assert_eq!(parse_subdir_name("0a"), Some(10));
        assert_eq!(parse_subdir_name("0A"), None);
    }

    #[test]
    fn sizes_and_lengths_invert() {
        let name = ReplicaName {
            block: BlockId(1),
            generation: Generation(2),
            crc32c: 0,
        };
        let legacy = ReplicaName {
            generation: Generation::LEGACY,
            ..name
        };
        for length in [
            0u64,
            1,
            65_535,
            65_536,
            65_537,
            3 * 65_536 + 17,
            64 << 20,
            BLOCK_BYTES_MAX,
        ] {
            for name in [name, legacy] {
                let file = name.file_bytes(length);
                assert_eq!(name.data_bytes(file), Some(length), "{length}");
            }
        }
        // Sizes no block file can have.
        assert_eq!(name.data_bytes(10), None);
        assert_eq!(name.data_bytes(48 + 65_536 + 4 + 1), None);
        assert_eq!(name.data_bytes(name.file_bytes(BLOCK_BYTES_MAX) + 5), None);
    }

    #[test]
    fn written_files_read_back_and_name_their_crc() {
        for length in [0, 1, CHUNK, CHUNK + 1, 4 * CHUNK + 9] {
            let data = pattern(length);
            let (name, bytes) = file_of(replica(7, 9), &data);
            assert_eq!(name.crc32c, crc32c::crc32c(&data), "{length}");
            assert_eq!(bytes.len() as u64, name.file_bytes(length as u64));
            let crcs = read(&name, &bytes).expect("reads back");
            assert_eq!(crcs.len(), length.div_ceil(CHUNK));
        }
    }

    #[test]
    fn footer_layout_is_as_documented() {
        let data = pattern(CHUNK + 5);
        let (name, bytes) = file_of(replica(0x0102, 0x0a0b), &data);
        let footer = &bytes[bytes.len() - FOOTER_BYTES..];
        assert_eq!(&footer[0..4], b"DFSB");
        assert_eq!(&footer[4..8], &[2, 0, 0, 0]);
        assert_eq!(&footer[8..16], &0x0102u64.to_le_bytes());
        assert_eq!(&footer[16..24], &0x0a0bu64.to_le_bytes());
        assert_eq!(&footer[24..32], &(data.len() as u64).to_le_bytes());
        assert_eq!(&footer[32..36], &CHUNK_BYTES.to_le_bytes());
        assert_eq!(&footer[36..40], &name.crc32c.to_le_bytes());
        assert_eq!(&footer[40..44], &[0, 0, 0, 0]);
        let crc_array = &bytes[data.len()..data.len() + 8];
        assert_eq!(
            &crc_array[..4],
            &crc32c::crc32c(&data[..CHUNK]).to_le_bytes()
        );
        let expected = crc32c::crc32c_append(crc32c::crc32c(crc_array), &footer[..44]);
        assert_eq!(&footer[44..48], &expected.to_le_bytes());
    }

    #[test]
    fn chunk_rules_are_enforced() {
        let mut sequence = ChunkSequence::new(replica(3, 4));
        assert!(sequence
            .push(0, 0)
            .expect_err("empty")
            .contains("a chunk of 0 bytes"));
        assert!(sequence
            .push(CHUNK + 1, 0)
            .expect_err("long")
            .contains("a chunk of 65537 bytes"));
        sequence.push(10, 1).expect("a short last chunk");
        let error = sequence.push(10, 1).expect_err("after the short one");
        assert_eq!(
            error,
            "blk_0000000000000003 chunk 1: a chunk after the short last chunk"
        );
        let fresh = ChunkSequence::new(replica(3, 4));
        assert_eq!(fresh.refusal_of_run([CHUNK, CHUNK, 7]), None);
        assert_eq!(
            fresh.refusal_of_run([CHUNK, 7, 7]),
            Some("blk_0000000000000003 chunk 2: a chunk after the short last chunk".into())
        );
        assert_eq!(fresh.chunk_count(), 0, "a run is only looked at");
        let mut big = ChunkSequence::new(replica(5, 6));
        for _ in 0..BLOCK_CHUNKS_MAX {
            big.push(CHUNK, 0).expect("within the limit");
        }
        assert!(big.push(1, 0).expect_err("over").contains("grows over"));
    }

    #[test]
    fn every_damage_is_found_with_a_reason() {
        let data = pattern(2 * CHUNK + 3);
        let (name, good) = file_of(replica(11, 12), &data);
        read(&name, &good).expect("good");
        let check = |bytes: Vec<u8>, name: &ReplicaName, reason: &str| {
            let error = read(name, &bytes).expect_err(reason);
            assert!(error.contains(reason), "{error} lacks {reason}");
        };
        let footer = good.len() - FOOTER_BYTES;
        let mut magic = good.clone();
        magic[footer] ^= 1;
        check(magic, &name, "bad footer magic");
        let mut crc_entry = good.clone();
        crc_entry[data.len()] ^= 1;
        check(crc_entry, &name, "footer checksum");
        let other_generation = ReplicaName {
            generation: Generation(13),
            ..name
        };
        check(good.clone(), &other_generation, "generation");
        let other_crc = ReplicaName {
            crc32c: name.crc32c ^ 1,
            ..name
        };
        check(good.clone(), &other_crc, "block CRC32C");
        let other_block = ReplicaName {
            block: BlockId(99),
            ..name
        };
        check(good.clone(), &other_block, "the footer names");
        let mut longer = good.clone();
        longer.insert(0, 0);
        check(longer, &name, "the file has");
        // A checksum array rewritten to match other data, footer CRC too,
        // still does not combine to the name's CRC32C.
        let mut rewritten = good.clone();
        rewritten[5] ^= 0x40;
        let new_crc = crc32c::crc32c(&rewritten[..CHUNK]);
        rewritten[data.len()..data.len() + 4].copy_from_slice(&new_crc.to_le_bytes());
        let crc_array_end = data.len() + 12;
        let mut footer_bytes = rewritten[footer..].to_vec();
        let refreshed = crc32c::crc32c_append(
            crc32c::crc32c(&rewritten[data.len()..crc_array_end]),
            &footer_bytes[..44],
        );
        footer_bytes[44..].copy_from_slice(&refreshed.to_le_bytes());
        rewritten[footer..].copy_from_slice(&footer_bytes);
        check(rewritten, &name, "the chunks make CRC32C");
        // Every truncation is refused.
        for cut in 0..good.len() {
            assert!(read(&name, &good[..cut]).is_err(), "{cut}");
        }
    }

    #[test]
    fn a_version_1_file_gets_its_name_and_reads_back() {
        // Written by block format version 1 (tests/fixtures): 42 bytes.
        let bytes = include_bytes!("../tests/fixtures/blk_0123456789abcdef.v1");
        let data = b"a block written by block format version 1\n";
        assert_eq!(&bytes[..data.len()], data);
        let block = BlockId(0x0123_4567_89ab_cdef);
        let footer = &bytes[bytes.len() - FOOTER_V1_BYTES..];
        let name = name_of_version_1(block, footer, bytes.len() as u64, |layout| {
            let start = layout.crc_array_offset as usize;
            Ok(bytes[start..start + layout.crc_array_bytes as usize].to_vec())
        })
        .expect("a good version-1 file");
        assert_eq!(name.generation, Generation::LEGACY);
        assert_eq!(name.crc32c, crc32c::crc32c(data));
        assert_eq!(name.format_version(), FORMAT_VERSION_1);
        assert_eq!(name.data_bytes(bytes.len() as u64), Some(data.len() as u64));
        read(&name, bytes).expect("reads as version 1 under its new name");
        // A damaged one is refused, not renamed.
        let mut damaged = bytes.to_vec();
        damaged[data.len()] ^= 1;
        let footer = &damaged[damaged.len() - FOOTER_V1_BYTES..];
        let error = name_of_version_1(block, footer, damaged.len() as u64, |layout| {
            let start = layout.crc_array_offset as usize;
            Ok(damaged[start..start + layout.crc_array_bytes as usize].to_vec())
        })
        .expect_err("damaged");
        assert!(error.contains("footer checksum"), "{error}");
    }
}
