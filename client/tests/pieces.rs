//! Files made of pieces on real processes: a truncate is a patch of
//! nothing (a shrink cuts a block short, a grow adds a hole that reads as
//! zeros and is stored nowhere), a patch replaces ranges in the middle of
//! a file with parts of its own blocks, past the end (a sparse file) or of
//! a file that did not exist, and ranges that do not add up to what was
//! written are refused before anything is sent. Every such file reads back
//! as a local model of it says, through `Read`, `read_at` at any offset
//! (within holes and across piece boundaries), a reader of each piece,
//! read-ahead, and `file_checksum`; a file of more pieces than a page
//! reads page by page; and a reader opened before a patch fails, saying
//! the file was replaced, rather than mix the old contents and the new.
//! Proved on a real dfs-master and dfs-minions.

mod support;

use std::io::{Read, Seek, SeekFrom, Write};

use dfs_client::{Client, FileRange, WriteOptions};
use dfs_engine::msg::{EntryStatus, LocatedBlock};
use dfs_testkit::{assert_bytes_equal, random_bytes, Cluster, ClusterOptions};
use support::{connect, connections_to_minions, minion_index, path, patient, put_file, CHUNK, MIB};

/// A small deterministic generator of offsets and lengths (xorshift64*).
struct Numbers(u64);

impl Numbers {
    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound.max(1) as u64) as usize
    }
}

fn range(offset_bytes: usize, length_bytes: usize) -> FileRange {
    FileRange {
        offset_bytes: offset_bytes as u64,
        length_bytes: length_bytes as u64,
    }
}

/// What a patch makes of `model`: the bytes `written`, in order, replace
/// `ranges`, then the file is cut or extended with zeros to `size_bytes`.
fn apply(model: &mut Vec<u8>, ranges: &[FileRange], written: &[u8], size_bytes: usize) {
    let mut taken = 0;
    for range in ranges {
        let offset = range.offset_bytes as usize;
        let length = range.length_bytes as usize;
        if model.len() < offset + length {
            model.resize(offset + length, 0);
        }
        model[offset..offset + length].copy_from_slice(&written[taken..taken + length]);
        taken += length;
    }
    assert_eq!(taken, written.len(), "the model's ranges add up");
    model.resize(size_bytes, 0);
}

/// Patches `file` with `ranges` of fresh random bytes (from `seed`) and
/// `size_bytes`, written in blocks of `block_bytes`; returns the bytes.
fn patch(
    client: &mut Client,
    file: &str,
    block_bytes: usize,
    ranges: &[FileRange],
    size_bytes: usize,
    seed: u64,
) -> Vec<u8> {
    let length: u64 = ranges.iter().map(|range| range.length_bytes).sum();
    let written = random_bytes(seed, length as usize);
    let options = WriteOptions {
        block_bytes: Some(block_bytes as u64),
        overwrite: true,
        ..WriteOptions::default()
    };
    let mut writer = client
        .create(&path(file), options)
        .unwrap_or_else(|e| panic!("open a patch of {file}: {e}"));
    writer
        .write_all(&written)
        .unwrap_or_else(|e| panic!("write a patch of {file}: {e}"));
    writer
        .finish_patch(ranges.to_vec(), size_bytes as u64)
        .unwrap_or_else(|e| panic!("patch {file} with {ranges:?} to {size_bytes} bytes: {e}"));
    written
}

fn pieces(client: &mut Client, file: &str) -> (EntryStatus, Vec<LocatedBlock>) {
    let located = client
        .get_blocks(&path(file))
        .unwrap_or_else(|e| panic!("GetBlocks {file}: {e}"));
    (located.status, located.blocks)
}

/// Reads `length` bytes at `offset` of `file` with `read_at` and checks
/// them against `model`: all of them, but for the part past the end.
fn check_range(
    reader: &mut dfs_client::FileReader,
    model: &[u8],
    offset: usize,
    length: usize,
    what: &str,
) {
    let mut buffer = vec![0xA5u8; length];
    let count = reader
        .read_at(offset as u64, &mut buffer)
        .unwrap_or_else(|e| panic!("{what}: read_at({offset}, {length}): {e}"));
    let start = offset.min(model.len());
    let end = offset.saturating_add(length).min(model.len());
    assert_eq!(count, end - start, "{what}: read_at({offset}, {length})");
    assert_bytes_equal(
        &buffer[..count],
        &model[start..end],
        &format!("{what}: read_at({offset}, {length})"),
    );
}

/// Checks that `file` reads as `model` every way a reader reads: whole,
/// at and around every piece boundary and at random offsets, piece by
/// piece, and its checksum.
fn check_file(client: &mut Client, file: &str, model: &[u8], what: &str) {
    let (status, located) = pieces(client, file);
    assert_eq!(status.size_bytes, model.len() as u64, "{what}: size");
    assert_eq!(status.block_count, located.len() as u64, "{what}: pieces");
    let mut reader = client
        .open(&path(file))
        .unwrap_or_else(|e| panic!("{what}: open {file}: {e}"));
    let mut whole = Vec::new();
    reader
        .read_to_end(&mut whole)
        .unwrap_or_else(|e| panic!("{what}: read {file}: {e}"));
    assert_bytes_equal(&whole, model, &format!("{what}: the whole file"));

    // Every piece of a file of a few; a sample of one of many.
    let step = (located.len() / 100).max(1);
    let count = located.len();
    let sample: Vec<(usize, &LocatedBlock)> = located
        .iter()
        .enumerate()
        .filter(|(index, _)| index % step == 0 || index + 1 == count)
        .collect();
    let mut reader = client.open(&path(file)).expect("open again");
    for &(_, piece) in &sample {
        let start = piece.offset_bytes as usize;
        for (offset, length) in [
            (start, 1),
            (start.saturating_sub(3), 7),
            (start.saturating_sub(CHUNK), 2 * CHUNK + 5),
            (start + 1, piece.length_bytes as usize),
        ] {
            check_range(&mut reader, model, offset, length, what);
        }
    }
    let mut numbers = Numbers(0x5eed_0002 ^ model.len() as u64);
    for _ in 0..150 {
        let offset = numbers.below(model.len() + 100);
        let length = match numbers.below(3) {
            0 => numbers.below(100),
            1 => numbers.below(3 * CHUNK),
            _ => numbers.below(MIB / 4),
        };
        check_range(&mut reader, model, offset, length, what);
        if numbers.below(3) == 0 {
            check_range(&mut reader, model, offset + length, length, what);
        }
    }

    for &(index, piece) in &sample {
        let start = piece.offset_bytes as usize;
        let end = start + piece.length_bytes as usize;
        assert_eq!(
            reader.block_offset_bytes(index).expect("a piece's offset"),
            piece.offset_bytes,
            "{what}: offset of piece {index}"
        );
        assert_eq!(
            reader
                .block_index_at(end as u64 - 1)
                .expect("a piece's index"),
            index,
            "{what}: the piece at offset {}",
            end - 1
        );
        let mut piece_reader = reader
            .block_reader(index)
            .expect("a piece's reader")
            .unwrap_or_else(|| panic!("{what}: no reader of piece {index}"));
        let mut bytes = Vec::new();
        piece_reader
            .read_to_end(&mut bytes)
            .unwrap_or_else(|e| panic!("{what}: read piece {index}: {e}"));
        assert_bytes_equal(
            &bytes,
            &model[start..end],
            &format!("{what}: piece {index} ({})", piece.id),
        );
        // A piece's reader moved into its piece (as a ranged copy starts
        // one) reads from there to the piece's end, and refuses offsets
        // before it.
        let middle = start + (end - start) / 2;
        piece_reader
            .seek(SeekFrom::Start(middle as u64))
            .unwrap_or_else(|e| panic!("{what}: seek piece {index} to {middle}: {e}"));
        bytes.clear();
        piece_reader
            .read_to_end(&mut bytes)
            .unwrap_or_else(|e| panic!("{what}: read piece {index} from {middle}: {e}"));
        assert_bytes_equal(
            &bytes,
            &model[middle..end],
            &format!("{what}: piece {index} from {middle}"),
        );
        if start > 0 {
            assert!(
                piece_reader
                    .seek(SeekFrom::Start(start as u64 - 1))
                    .is_err(),
                "{what}: piece {index} moved before its start"
            );
        }
    }
    assert!(reader
        .block_reader(located.len())
        .expect("past the end")
        .is_none());

    let checksum = client
        .file_checksum(&path(file))
        .unwrap_or_else(|e| panic!("{what}: checksum of {file}: {e}"));
    assert_eq!(
        (checksum.length_bytes, checksum.crc32c),
        (model.len() as u64, crc32c::crc32c(model)),
        "{what}: checksum"
    );
}

/// The options of every test's cluster: patient minions, 1 MiB blocks.
fn cluster() -> Cluster {
    Cluster::start(patient(ClusterOptions::default()))
}

#[test]
fn a_truncate_that_grows_a_file_adds_a_hole_of_zeros() {
    let cluster = cluster();
    let length = MIB + MIB / 2;
    let mut model = put_file(&cluster, MIB, length, 1);
    let (mut client, _) = connect(&cluster);
    let before = client.stat(&path("/f")).expect("stat /f");
    let size = 3 * MIB + 100;
    client
        .truncate(&path("/f"), size as u64)
        .expect("truncate /f to grow it");
    model.resize(size, 0);

    let after = client.stat(&path("/f")).expect("stat /f");
    assert_eq!(
        (after.inode, &after.owner, &after.group, after.mode),
        (before.inode, &before.owner, &before.group, before.mode),
        "the file is the same file"
    );
    assert_ne!(after.version, before.version, "its contents changed");
    let (_, located) = pieces(&mut client, "/f");
    assert!(
        located.iter().take(2).all(LocatedBlock::is_whole_block),
        "the blocks written stay whole: {located:?}"
    );
    let holes: Vec<&LocatedBlock> = located.iter().filter(|piece| piece.is_hole()).collect();
    assert_eq!(holes.len(), 1, "one hole: {located:?}");
    assert_eq!(
        (holes[0].offset_bytes, holes[0].length_bytes),
        (length as u64, (size - length) as u64),
        "the hole is the growth"
    );

    let mut reader = client.open(&path("/f")).expect("open /f");
    for (offset, range) in [
        (length - 10, 20),
        (length, 1),
        (2 * MIB, 1000),
        (2 * MIB - 5, MIB),
        (size - 5, 10),
        (0, size),
    ] {
        check_range(&mut reader, &model, offset, range, "a hole");
    }
    check_file(&mut client, "/f", &model, "grown");

    // The hole is read from no one; the data from a minion that holds it.
    drop(reader);
    drop(client);
    let (mut client, _) = connect(&cluster);
    let mut reader = client.open(&path("/f")).expect("open /f");
    check_range(&mut reader, &model, 2 * MIB, 1000, "the hole alone");
    assert_eq!(
        connections_to_minions(&cluster),
        [],
        "a hole's zeros come from no minion"
    );
    check_range(&mut reader, &model, 10, 1000, "the data alone");
    let connections = connections_to_minions(&cluster);
    assert_eq!(connections.len(), 1, "{connections:?}");
    assert!(
        located[0].locations.iter().any(
            |location| minion_index(&cluster, &location.address) == connections[0].minion_index
        ),
        "{connections:?} for {:?}",
        located[0].locations
    );
    drop(reader);

    // Growing an empty file: a file of one hole.
    client
        .put(
            &path("/empty"),
            WriteOptions::default(),
            &mut dfs_client::Unseekable(&b""[..]),
        )
        .expect("put /empty");
    client
        .truncate(&path("/empty"), 5000)
        .expect("truncate /empty to grow it");
    check_file(&mut client, "/empty", &[0; 5000], "an empty file grown");
}

#[test]
fn a_truncate_that_shrinks_a_file_cuts_a_block_short() {
    let cluster = cluster();
    let mut model = put_file(&cluster, MIB, 3 * MIB + 5, 2);
    let (mut client, _) = connect(&cluster);
    let size = MIB + 12_345;
    client
        .truncate(&path("/f"), size as u64)
        .expect("truncate /f to shrink it");
    model.truncate(size);
    let (status, located) = pieces(&mut client, "/f");
    assert_eq!(status.size_bytes, size as u64);
    assert_eq!(located.len(), 2, "{located:?}");
    assert!(located[0].is_whole_block(), "{:?}", located[0]);
    assert_eq!(
        (
            located[1].block_offset_bytes,
            located[1].length_bytes,
            located[1].block_length_bytes
        ),
        (0, 12_345, MIB as u64),
        "the head of the second block"
    );
    check_file(&mut client, "/f", &model, "shrunk");

    // Then grown again: the part of the block, then a hole.
    client
        .truncate(&path("/f"), (2 * MIB) as u64)
        .expect("truncate /f to grow it");
    model.resize(2 * MIB, 0);
    check_file(&mut client, "/f", &model, "shrunk then grown");
    // And cut to nothing.
    client.truncate(&path("/f"), 0).expect("truncate /f to 0");
    check_file(&mut client, "/f", &[], "emptied");
}

#[test]
fn a_patch_of_two_ranges_in_the_middle_of_a_file_reads_back() {
    let cluster = cluster();
    let size = 3 * MIB;
    let mut model = put_file(&cluster, MIB, size, 3);
    let (mut client, _) = connect(&cluster);
    // One across the first block boundary, one across a chunk boundary
    // of the third block: both parts of the one block the patch writes.
    let ranges = [range(MIB - 1000, 5000), range(2 * MIB + 300_000, 70_000)];
    let written = patch(&mut client, "/f", MIB, &ranges, size, 4);
    apply(&mut model, &ranges, &written, size);
    let (_, located) = pieces(&mut client, "/f");
    assert_eq!(
        located.len(),
        6,
        "the head of block 1, the first range, the tail of block 2, the head of block 3, the second range, the tail of block 3: {located:?}"
    );
    let patched: Vec<&LocatedBlock> = located
        .iter()
        .filter(|piece| piece.block_length_bytes == written.len() as u64)
        .collect();
    assert_eq!(patched.len(), 2, "the written block, twice: {located:?}");
    assert_eq!(patched[0].id, patched[1].id);
    assert_eq!(
        (patched[0].block_offset_bytes, patched[1].block_offset_bytes),
        (0, 5000),
        "the two parts of the written block"
    );
    check_file(&mut client, "/f", &model, "patched");

    // The same ranges again with other bytes, written in small blocks:
    // a range made of parts of several blocks.
    let written = patch(&mut client, "/f", 3 * CHUNK + 10, &ranges, size, 5);
    apply(&mut model, &ranges, &written, size);
    check_file(&mut client, "/f", &model, "patched twice");
}

#[test]
fn a_patch_past_the_end_makes_a_sparse_file() {
    let cluster = cluster();
    let mut model = put_file(&cluster, MIB, MIB + MIB / 2, 6);
    let (mut client, _) = connect(&cluster);
    // A hole longer than the read-ahead's start, then data: the data is
    // read ahead while the hole is handed out.
    let start = 6 * MIB + 7;
    let ranges = [range(start, 50_000)];
    let size = start + 50_000;
    let written = patch(&mut client, "/f", MIB, &ranges, size, 7);
    apply(&mut model, &ranges, &written, size);
    let (_, located) = pieces(&mut client, "/f");
    assert!(
        located.iter().any(|piece| piece.is_hole()
            && piece.offset_bytes == (MIB + MIB / 2) as u64
            && piece.length_bytes == (start - MIB - MIB / 2) as u64),
        "a hole between: {located:?}"
    );
    check_file(&mut client, "/f", &model, "sparse");
}

#[test]
fn a_patch_of_a_file_that_does_not_exist_makes_one() {
    let cluster = cluster();
    let (mut client, _) = connect(&cluster);
    let ranges = [range(1000, 3000), range(200_000, CHUNK + 1)];
    let size = 300_000;
    let written = patch(&mut client, "/new", MIB, &ranges, size, 8);
    let mut model = Vec::new();
    apply(&mut model, &ranges, &written, size);
    let (status, located) = pieces(&mut client, "/new");
    assert_eq!(status.size_bytes, size as u64);
    assert!(
        located[0].is_hole(),
        "zeros before the first range: {located:?}"
    );
    check_file(&mut client, "/new", &model, "made by a patch");
}

#[test]
fn a_patch_whose_ranges_do_not_add_up_is_refused() {
    let cluster = cluster();
    let model = put_file(&cluster, MIB, 2 * MIB, 9);
    let (mut client, _) = connect(&cluster);
    let before = client.stat(&path("/f")).expect("stat /f");
    let options = WriteOptions {
        block_bytes: Some(MIB as u64),
        overwrite: true,
        ..WriteOptions::default()
    };
    let mut writer = client.create(&path("/f"), options).expect("open a patch");
    writer.write_all(&[7u8; 1000]).expect("write");
    let error = writer
        .finish_patch(vec![range(10, 500), range(5000, 499)], (2 * MIB) as u64)
        .expect_err("ranges of 999 bytes for 1000 written");
    let message = error.to_string();
    assert!(
        message.contains("add up to 999 bytes") && message.contains("1000 bytes were written"),
        "{message}"
    );
    let after = client.stat(&path("/f")).expect("stat /f");
    assert_eq!(after.version, before.version, "the file did not change");
    check_file(&mut client, "/f", &model, "after a refused patch");
}

#[test]
fn a_reader_opened_before_a_patch_fails_rather_than_mix_contents() {
    let cluster = cluster();
    let size = 5 * MIB;
    let mut model = put_file(&cluster, MIB, size, 10);
    let (mut client, _) = connect(&cluster);
    // 600 single bytes across the file: some 1200 pieces, more than a
    // page holds, many of them tiny and some read ahead.
    let ranges: Vec<FileRange> = (0..600).map(|index| range(index * 8000 + 3, 1)).collect();
    let written = patch(&mut client, "/f", MIB, &ranges, size, 11);
    apply(&mut model, &ranges, &written, size);
    let (status, located) = pieces(&mut client, "/f");
    assert!(status.block_count > 1024, "{} pieces", status.block_count);
    assert_eq!(located.len() as u64, status.block_count);
    check_file(&mut client, "/f", &model, "pieces of many pages");

    let mut sequential = client.open(&path("/f")).expect("open /f");
    let mut at_offsets = client.open(&path("/f")).expect("open /f");
    let mut head = vec![0u8; 1000];
    sequential.read_exact(&mut head).expect("read the head");
    assert_bytes_equal(&head, &model[..1000], "the head, before the patch");
    // A patch that leaves every block in use, so that only the pages can
    // tell the versions apart.
    client
        .truncate(&path("/f"), (size + 1) as u64)
        .expect("grow /f by a byte");
    let mut rest = Vec::new();
    let error = sequential
        .read_to_end(&mut rest)
        .expect_err("a read of the old version past its first page");
    assert!(error.to_string().contains("replaced"), "{error}");
    assert!(rest.len() < size - 1000, "the read stopped before the end");
    assert_bytes_equal(&rest, &model[1000..1000 + rest.len()], "what it read");
    let mut buffer = vec![0u8; 100];
    let error = at_offsets
        .read_at((size - 100) as u64, &mut buffer)
        .expect_err("a read of the old version's last page");
    assert!(error.to_string().contains("replaced"), "{error}");
}

#[test]
fn compaction_writes_a_fragmented_file_again_as_whole_blocks_and_keeps_its_holes() {
    let cluster = cluster();
    let size = 4 * MIB;
    let mut model = put_file(&cluster, MIB, size, 20);
    let (mut client, _) = connect(&cluster);
    // Not fragmented: left alone unless forced.
    assert_eq!(
        client.compact(&path("/f"), false).expect("compact"),
        dfs_client::Compacted::NotNeeded { pieces: 4 }
    );
    // 300 single bytes: some 600 pieces; then a hole past the end.
    let ranges: Vec<FileRange> = (0..300).map(|index| range(index * 9000 + 5, 1)).collect();
    let written = patch(&mut client, "/f", MIB, &ranges, size, 21);
    apply(&mut model, &ranges, &written, size);
    let grown = size + 2 * MIB + 7;
    client.truncate(&path("/f"), grown as u64).expect("grow");
    model.resize(grown, 0);
    let (before, _) = pieces(&mut client, "/f");
    assert!(before.block_count > 600, "{} pieces", before.block_count);

    let outcome = client.compact(&path("/f"), false).expect("compact");
    assert_eq!(
        outcome,
        dfs_client::Compacted::Done {
            before: before.block_count,
            after: 5
        },
        "4 whole blocks and the hole"
    );
    let (after, located) = pieces(&mut client, "/f");
    assert!(located[..4].iter().all(|piece| piece.is_whole_block()));
    assert!(located[4].is_hole());
    assert_eq!(
        (after.inode, after.size_bytes, after.modified_ns, after.mode),
        (
            before.inode,
            before.size_bytes,
            before.modified_ns,
            before.mode
        ),
        "the same file, the same bytes and times"
    );
    assert_ne!(after.version, before.version);
    check_file(&mut client, "/f", &model, "compacted");
}
