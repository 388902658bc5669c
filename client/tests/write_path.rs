//! The library's write path on real processes: `Client::put` and `FileWriter`
//! cut every file size (empty to several blocks, at 1 MiB blocks and at a
//! block size that is no multiple of 64 KiB) into blocks of whole 64 KiB
//! chunks whatever the write sizes, and every replica's block file holds
//! exactly those bytes and chunk CRCs; a pipeline whose first member is
//! unreachable, dies mid-block or stores nothing is replaced when the input
//! allows it, else the write fails naming the minion and is aborted; a
//! member lost downstream is a warning; a write gives up after a bounded
//! number of pipelines. An input read by ranges keeps several blocks in
//! flight (block 0 cannot finish until blocks 1 to 3 were read) and still
//! commits them in file order; a minion killed while four blocks are in
//! flight costs only the pipelines it headed. Proved on a real dfs-master
//! and dfs-minions whose failures are SIGKILLs and a broken data directory,
//! checked through `GetBlocks`, the master's block ids and counts, and the
//! block files.

mod support;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use dfs_client::{
    BlockSource, Client, RangeSource, Seekable, Spooled, Unseekable, WriteOptions, WriteStats,
};
use dfs_engine::limits::WRITE_BLOCK_ATTEMPTS_MAX;
use dfs_engine::msg::{BlockId, MinionAddress};
use dfs_testkit::{
    assert_bytes_equal, random_bytes, wait_for, Cluster, ClusterOptions, LIVE_TIMEOUT,
};
use support::{connect, connections_to_minions, minion_index, path, patient, Warnings, CHUNK, MIB};

/// A block size that is not a multiple of the chunk size, so every block
/// ends in a short chunk.
const RAGGED_BLOCK: usize = 2 * CHUNK + 100;
const REPLICATION: usize = 3;
/// Fresh writes tried while waiting for the random placement to put a
/// failing minion where a test needs it; each try puts it there with odds
/// of about one in four or better, so all of them missing is below one in
/// ten thousand.
const PLACEMENT_TRIES_MAX: u64 = 60;
/// Times a broken minion must be chosen and left out of the next pipeline.
const REPLACEMENTS_WANTED: u64 = 6;
const BLOCK_FOOTER_BYTES: usize = 48;

fn options(block_bytes: usize) -> WriteOptions {
    WriteOptions {
        block_bytes: Some(block_bytes as u64),
        ..WriteOptions::default()
    }
}

/// The file sizes every block size is tried with: empty, around one chunk,
/// around one block, several blocks with a short last one.
fn sizes(block_bytes: usize) -> [usize; 8] {
    [
        0,
        1,
        CHUNK - 1,
        CHUNK,
        CHUNK + 1,
        block_bytes,
        block_bytes + 1,
        3 * block_bytes + 5000,
    ]
}

/// Lengths of the pieces `length` cuts into at `piece`.
fn split(length: usize, piece: usize) -> Vec<usize> {
    (0..length)
        .step_by(piece)
        .map(|start| piece.min(length - start))
        .collect()
}

fn put_bytes(client: &mut Client, file: &str, data: &[u8], block_bytes: usize) -> WriteStats {
    let mut source = Seekable::new(io::Cursor::new(data)).expect("a cursor has a position");
    client
        .put(&path(file), options(block_bytes), &mut source)
        .unwrap_or_else(|e| panic!("put {file}: {e}"))
}

/// Writes `data` through a `FileWriter` in writes of `write_bytes`.
fn write_bytes(
    client: &mut Client,
    file: &str,
    data: &[u8],
    block_bytes: usize,
    write_bytes: usize,
) -> WriteStats {
    let mut writer = client
        .create(&path(file), options(block_bytes))
        .unwrap_or_else(|e| panic!("create {file}: {e}"));
    for piece in data.chunks(write_bytes) {
        writer
            .write_all(piece)
            .unwrap_or_else(|e| panic!("write {file}: {e}"));
    }
    writer
        .finish()
        .unwrap_or_else(|e| panic!("finish {file}: {e}"))
}

fn read_back(client: &mut Client, file: &str) -> Vec<u8> {
    let mut output = Vec::new();
    client
        .open(&path(file))
        .unwrap_or_else(|e| panic!("open {file}: {e}"))
        .copy_to(&mut output, "memory")
        .unwrap_or_else(|e| panic!("read {file}: {e}"));
    output
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// Asserts the block file at `file_path` holds `expected` as the minion
/// received it: the data, then one CRC32C per 64 KiB chunk (so the chunks
/// arrived whole, cut at multiples of 64 KiB), then the footer of
/// docs/format.md naming the block.
fn check_block_file(cluster: &Cluster, index: usize, block: BlockId, expected: &[u8]) {
    let file_path = cluster.block_file_path(index, &block.to_string());
    let what = format!("{block} on minion-{index}");
    let bytes = std::fs::read(&file_path)
        .unwrap_or_else(|e| panic!("{what}: read {}: {e}", file_path.display()));
    let chunks = expected.len().div_ceil(CHUNK);
    let crc_array_end = expected.len() + 4 * chunks;
    assert_eq!(
        bytes.len(),
        crc_array_end + BLOCK_FOOTER_BYTES,
        "{what}: file size for {} bytes of data",
        expected.len()
    );
    assert_bytes_equal(&bytes[..expected.len()], expected, &what);
    for (chunk_index, chunk) in expected.chunks(CHUNK).enumerate() {
        assert_eq!(
            u32_at(&bytes, expected.len() + 4 * chunk_index),
            crc32c::crc32c(chunk),
            "{what}: CRC of chunk {chunk_index}"
        );
    }
    let footer = &bytes[crc_array_end..];
    assert_eq!(&footer[0..4], b"DFSB", "{what}: footer magic");
    assert_eq!(&footer[4..8], &[2, 0, 0, 0], "{what}: version, reserved");
    assert_eq!(u64_at(footer, 8), block.0, "{what}: block id");
    let generation = u64_at(footer, 16);
    assert_ne!(generation, 0, "{what}: a generation");
    assert_eq!(u64_at(footer, 24), expected.len() as u64, "{what}: length");
    assert_eq!(u32_at(footer, 32), CHUNK as u32, "{what}: chunk size");
    assert_eq!(
        u32_at(footer, 36),
        crc32c::crc32c(expected),
        "{what}: block CRC"
    );
    let mut covered = bytes[expected.len()..crc_array_end].to_vec();
    covered.extend_from_slice(&footer[..44]);
    assert_eq!(
        u32_at(footer, 44),
        crc32c::crc32c(&covered),
        "{what}: footer CRC"
    );
    // The name says the same.
    let name = file_path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    assert_eq!(
        name,
        format!("{block}_{generation:016x}_{:08x}", crc32c::crc32c(expected)),
        "{what}: file name"
    );
}

/// Asserts what a finished write stored: blocks of the right lengths in
/// `WriteStats` and in the master's `GetBlocks`, block `i` on
/// `replicas[i]` distinct minions whose block files hold exactly its bytes,
/// and the file reading back as `data`.
fn check_stored(
    cluster: &Cluster,
    client: &mut Client,
    file: &str,
    data: &[u8],
    stats: &WriteStats,
    block_bytes: usize,
    replicas: &[usize],
) {
    let lengths: Vec<usize> = stats
        .blocks
        .iter()
        .map(|b| b.length_bytes as usize)
        .collect();
    assert_eq!(
        lengths,
        split(data.len(), block_bytes),
        "{file}: block lengths"
    );
    assert_eq!(stats.length_bytes, data.len() as u64, "{file}: length");
    let located = client
        .get_blocks(&path(file))
        .unwrap_or_else(|e| panic!("GetBlocks {file}: {e}"));
    assert_eq!(located.status.size_bytes, data.len() as u64, "{file}: size");
    assert_eq!(
        located.status.block_bytes, block_bytes as u64,
        "{file}: block size"
    );
    let written: Vec<BlockId> = stats.blocks.iter().map(|b| b.id).collect();
    let listed: Vec<BlockId> = located.blocks.iter().map(|b| b.id).collect();
    assert_eq!(
        listed, written,
        "{file}: the master lists the written blocks"
    );
    assert_eq!(replicas.len(), located.blocks.len(), "{file}: expectations");
    for ((block, stat), expected_replicas) in located.blocks.iter().zip(&stats.blocks).zip(replicas)
    {
        assert_eq!(
            (stat.replica_count, block.locations.len()),
            (*expected_replicas, *expected_replicas),
            "{file}: replicas of {} (WriteStats, GetBlocks): {:?}",
            block.id,
            block.locations
        );
        let mut indexes: Vec<usize> = block
            .locations
            .iter()
            .map(|location| minion_index(cluster, &location.address))
            .collect();
        let start = block.offset_bytes as usize;
        let expected = &data[start..start + block.length_bytes as usize];
        for &index in &indexes {
            check_block_file(cluster, index, block.id, expected);
        }
        indexes.sort_unstable();
        indexes.dedup();
        assert_eq!(
            indexes.len(),
            *expected_replicas,
            "{file}: distinct replicas"
        );
    }
    assert_bytes_equal(&read_back(client, file), data, file);
}

#[test]
fn put_cuts_every_size_into_blocks_of_whole_chunks() {
    let cluster = Cluster::start(patient(ClusterOptions::default()));
    let (mut client, warnings) = connect(&cluster);
    for block_bytes in [MIB, RAGGED_BLOCK] {
        for (index, size) in sizes(block_bytes).into_iter().enumerate() {
            let data = random_bytes(index as u64, size);
            let file = format!("/put-{block_bytes}-{size}");
            let stats = put_bytes(&mut client, &file, &data, block_bytes);
            let replicas = vec![REPLICATION; size.div_ceil(block_bytes)];
            check_stored(
                &cluster,
                &mut client,
                &file,
                &data,
                &stats,
                block_bytes,
                &replicas,
            );
        }
    }
    assert_eq!(warnings.take(), Vec::<String>::new());
}

#[test]
fn file_writer_cuts_every_size_into_blocks_of_whole_chunks_whatever_the_write_sizes() {
    let cluster = Cluster::start(patient(ClusterOptions::default()));
    let (mut client, warnings) = connect(&cluster);
    for block_bytes in [MIB, RAGGED_BLOCK] {
        for write_size in [1, 1000, CHUNK, CHUNK + 7, MIB] {
            for (index, size) in sizes(block_bytes).into_iter().enumerate() {
                let data = random_bytes(100 + index as u64, size);
                let file = format!("/write-{block_bytes}-{write_size}-{size}");
                let stats = write_bytes(&mut client, &file, &data, block_bytes, write_size);
                let replicas = vec![REPLICATION; size.div_ceil(block_bytes)];
                check_stored(
                    &cluster,
                    &mut client,
                    &file,
                    &data,
                    &stats,
                    block_bytes,
                    &replicas,
                );
            }
        }
    }
    assert_eq!(warnings.take(), Vec::<String>::new());
}

/// The id, as the master knows it, of the cluster's minion `index`.
fn minion_address(cluster: &Cluster, index: usize) -> MinionAddress {
    let address = cluster.minion_address(index);
    let report = cluster.cluster_report();
    let entry = report
        .iter()
        .find(|m| m.address == address)
        .unwrap_or_else(|| panic!("the master does not list minion-{index}: {report:?}"));
    MinionAddress {
        id: entry.id,
        address: address.to_string(),
    }
}

/// Block ids are handed out one after another; a write's first block id
/// tells how many allocations came before it. Returns the id of a 1-byte
/// file written now.
fn last_block_id(client: &mut Client, file: &str) -> u64 {
    let stats = put_bytes(client, file, b"x", RAGGED_BLOCK);
    // The next write's connections are then the only ones this process
    // holds to minions.
    client.close_idle_connections();
    stats.blocks[0].id.0
}

/// Allocations a write made that did not become one of its blocks: the
/// pipelines it gave up. `previous_id` is the last id allocated before it.
fn abandoned_pipelines(stats: &WriteStats, previous_id: u64) -> u64 {
    let last = stats.blocks.last().map_or(previous_id, |b| b.id.0);
    last - previous_id - stats.blocks.len() as u64
}

/// What a minion that is listed live but dead did to one write.
#[derive(Debug, PartialEq, Eq)]
enum Incident {
    /// It was not in any pipeline.
    None,
    /// It was a pipeline's first member: that pipeline was given up and the
    /// block went to a new one without it.
    Replaced,
    /// It was further down a pipeline: the block was stored on the others,
    /// with a warning naming it.
    Warned,
}

/// A write that finished, and the last block id allocated before it.
struct FinishedWrite<'a> {
    file: &'a str,
    data: &'a [u8],
    stats: &'a WriteStats,
    previous_id: u64,
}

/// Checks a 2-block write to a cluster whose minion `dead` is down: it cost
/// at most one pipeline or one replica, then was left out of the write.
fn examine_write(
    cluster: &Cluster,
    client: &mut Client,
    warnings: &Warnings,
    dead: &MinionAddress,
    write: &FinishedWrite<'_>,
) -> Incident {
    let FinishedWrite {
        file,
        data,
        stats,
        previous_id,
    } = *write;
    let warned = warnings.take();
    let abandoned = abandoned_pipelines(stats, previous_id);
    let short: Vec<usize> = (0..stats.blocks.len())
        .filter(|&i| stats.blocks[i].replica_count < REPLICATION)
        .collect();
    assert!(
        abandoned + short.len() as u64 <= 1,
        "{file}: the dead minion should cost one pipeline or one replica, then be left out: \
         {abandoned} pipelines given up, blocks {short:?} short of replicas, warnings {warned:?}"
    );
    let replicas: Vec<usize> = (0..stats.blocks.len())
        .map(|i| {
            if short.contains(&i) {
                REPLICATION - 1
            } else {
                REPLICATION
            }
        })
        .collect();
    check_stored(cluster, client, file, data, stats, RAGGED_BLOCK, &replicas);
    if abandoned == 1 {
        assert_eq!(
            warned,
            Vec::<String>::new(),
            "{file}: a replaced pipeline warns nothing"
        );
        return Incident::Replaced;
    }
    let Some(&index) = short.first() else {
        assert_eq!(
            warned,
            Vec::<String>::new(),
            "{file}: no failure, no warning"
        );
        return Incident::None;
    };
    let block = stats.blocks[index].id;
    let prefix = format!(
        "{block}: minion {}@{}: unreachable from minion ",
        dead.id, dead.address
    );
    assert!(
        warned.len() == 1 && warned[0].starts_with(&prefix),
        "{file}: expected one warning starting {prefix:?}, got {warned:?}"
    );
    Incident::Warned
}

#[test]
fn an_unreachable_member_costs_a_pipeline_when_first_and_a_warning_when_downstream() {
    // Minion 3 dies but stays listed live, so placement keeps choosing it.
    let mut cluster = Cluster::start(ClusterOptions {
        minions: 4,
        stale_after: Some("60s"),
        dead_after: Some("120s"),
        ..ClusterOptions::default()
    });
    let (mut client, warnings) = connect(&cluster);
    let mut previous_id = last_block_id(&mut client, "/before");
    let dead = minion_address(&cluster, 3);
    cluster.kill_minion(3);

    // Placement is random: write until the dead minion was the first member
    // of a pipe's write and of a FileWriter's, and a downstream member once.
    let mut replaced_for_pipe = false;
    let mut replaced_for_writer = false;
    let mut warned = false;
    for attempt in 0..PLACEMENT_TRIES_MAX {
        if replaced_for_pipe && replaced_for_writer && warned {
            break;
        }
        let through_writer = attempt % 2 == 1;
        let file = format!("/try-{attempt}");
        let data = random_bytes(attempt, 2 * RAGGED_BLOCK);
        let stats = if through_writer {
            write_bytes(&mut client, &file, &data, RAGGED_BLOCK, 1000)
        } else {
            client
                .put(
                    &path(&file),
                    options(RAGGED_BLOCK),
                    &mut Unseekable(data.as_slice()),
                )
                .unwrap_or_else(|e| panic!("put {file} from a pipe: {e}"))
        };
        let write = FinishedWrite {
            file: &file,
            data: &data,
            stats: &stats,
            previous_id,
        };
        let incident = examine_write(&cluster, &mut client, &warnings, &dead, &write);
        match incident {
            Incident::Replaced if through_writer => replaced_for_writer = true,
            Incident::Replaced => replaced_for_pipe = true,
            Incident::Warned => warned = true,
            Incident::None => {}
        }
        previous_id = stats.blocks.last().map_or(previous_id, |b| b.id.0);
    }
    assert!(
        replaced_for_pipe && replaced_for_writer && warned,
        "in {PLACEMENT_TRIES_MAX} writes the dead minion was never: \
         {}{}{}",
        if replaced_for_pipe {
            ""
        } else {
            "first for a pipe; "
        },
        if replaced_for_writer {
            ""
        } else {
            "first for a FileWriter; "
        },
        if warned { "" } else { "downstream" }
    );
}

/// An input that calls its hook once, when it is first read at `offset_bytes`,
/// before it hands out the bytes from there: the moment to fail a minion in
/// the middle of a block. It goes back only when `rewindable`.
struct Interrupting<'a> {
    bytes: &'a [u8],
    position: usize,
    rewindable: bool,
    offset_bytes: usize,
    hook: Option<Box<dyn FnOnce() + 'a>>,
}

impl<'a> Interrupting<'a> {
    fn new(
        bytes: &'a [u8],
        rewindable: bool,
        offset_bytes: usize,
        hook: impl FnOnce() + 'a,
    ) -> Interrupting<'a> {
        Interrupting {
            bytes,
            position: 0,
            rewindable,
            offset_bytes,
            hook: Some(Box::new(hook)),
        }
    }
}

impl BlockSource for Interrupting<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        if self.position >= self.offset_bytes {
            if let Some(hook) = self.hook.take() {
                hook();
            }
        }
        let end = if self.hook.is_some() {
            self.offset_bytes
        } else {
            self.bytes.len()
        };
        let count = buffer.len().min(end - self.position);
        buffer[..count].copy_from_slice(&self.bytes[self.position..self.position + count]);
        self.position += count;
        Ok(count)
    }

    fn rewind(&mut self, offset_bytes: u64) -> io::Result<bool> {
        if !self.rewindable {
            return Ok(false);
        }
        self.position = usize::try_from(offset_bytes).map_err(io::Error::other)?;
        Ok(true)
    }
}

/// Read once, in order, like a pipe.
impl Read for Interrupting<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        BlockSource::read(self, buffer)
    }
}

/// Milliseconds since this process last sent data on the socket with
/// `socket_inode` (the kernel's TCP_INFO), None if it is not ours.
fn since_last_send_ms(socket_inode: u64) -> Option<u32> {
    use std::os::fd::AsRawFd;
    let wanted = format!("socket:[{socket_inode}]");
    let entries = std::fs::read_dir("/proc/self/fd").expect("list /proc/self/fd");
    for entry in entries.flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if target.to_str() != Some(wanted.as_str()) {
            continue;
        }
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // Borrowed only for the call: the descriptor stays the owner's.
        let file = std::mem::ManuallyDrop::new(unsafe {
            // SAFETY: fd is open in this process (just listed) and is not
            // closed here: ManuallyDrop never drops this File.
            <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd)
        });
        // SAFETY: tcp_info is plain integers; all zeroes is valid.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut length = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: info is writable for `length` bytes, and length says so.
        let result = unsafe {
            libc::getsockopt(
                file.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                std::ptr::addr_of_mut!(info).cast(),
                &mut length,
            )
        };
        if result == 0 {
            return Some(info.tcpi_last_data_sent);
        }
    }
    None
}

/// SIGKILLs the first member of the pipeline the writer is sending to.
/// Returns its index. A writer keeps the connection of a sealed block for
/// the next one, so besides the connection in use it may hold one idle
/// connection from the write's earlier block; the one in use is the one
/// that sent data last.
fn kill_first_member(cluster: &mut Cluster) -> usize {
    let connections = connections_to_minions(cluster);
    assert!(
        (1..=2).contains(&connections.len()),
        "a writer mid-block talks to the first minion of its pipeline and may keep one idle connection: {connections:?}"
    );
    let in_use = connections
        .iter()
        .min_by_key(|connection| since_last_send_ms(connection.socket_inode).unwrap_or(u32::MAX))
        .expect("one connection at least");
    let index = in_use.minion_index;
    cluster.kill_minion(index);
    index
}

/// The blocks the master places on the minions, counted over all of them.
fn located_replicas(cluster: &Cluster) -> u64 {
    cluster.cluster_report().iter().map(|m| m.block_count).sum()
}

fn four_minions_one_may_die() -> Cluster {
    Cluster::start(ClusterOptions {
        minions: 4,
        stale_after: Some("60s"),
        dead_after: Some("120s"),
        ..ClusterOptions::default()
    })
}

#[test]
fn a_first_member_dying_mid_block_is_survived_when_the_input_rewinds() {
    let mut cluster = four_minions_one_may_die();
    let (mut client, warnings) = connect(&cluster);
    let previous_id = last_block_id(&mut client, "/before");
    let data = random_bytes(8, 3 * MIB);
    let killed = Cell::new(None);
    let stats = {
        let cluster = &mut cluster;
        let killed = &killed;
        // Half a block in, past the 256 KiB the connection buffers, so the
        // member already received data.
        let mut source = Interrupting::new(&data, true, MIB / 2, move || {
            killed.set(Some(kill_first_member(cluster)))
        });
        client
            .put(&path("/f"), options(MIB), &mut source)
            .expect("the block goes to a new pipeline")
    };
    let killed = killed
        .get()
        .expect("the input reached the middle of block 0");

    // Exactly one pipeline was given up, the one of block 0.
    let ids: Vec<u64> = stats.blocks.iter().map(|b| b.id.0).collect();
    assert_eq!(ids, [previous_id + 2, previous_id + 3, previous_id + 4]);
    check_stored(
        &cluster,
        &mut client,
        "/f",
        &data,
        &stats,
        MIB,
        &[REPLICATION; 3],
    );
    let located = client.get_blocks(&path("/f")).expect("GetBlocks");
    for block in &located.blocks {
        assert!(
            block
                .locations
                .iter()
                .all(|l| l.address != cluster.minion_address(killed)),
            "{} was placed on the minion that died: {:?}",
            block.id,
            block.locations
        );
    }
    assert_eq!(warnings.take(), Vec::<String>::new());

    // The other members dropped their partial copies of the abandoned block.
    let abandoned = BlockId(previous_id + 1);
    for index in (0..4).filter(|&i| i != killed) {
        let tmp = cluster.minion_data_dir(index).join("tmp");
        wait_for(
            || std::fs::read_dir(&tmp).is_ok_and(|mut entries| entries.next().is_none()),
            LIVE_TIMEOUT,
            &format!("minion-{index} to drop its partial copy of {abandoned}"),
        );
        assert!(cluster
            .block_file_of(index, &abandoned.to_string())
            .is_none());
    }
}

#[test]
fn a_first_member_dying_mid_block_fails_a_pipe_naming_it_and_aborts_the_write() {
    let mut cluster = four_minions_one_may_die();
    let (mut client, _warnings) = connect(&cluster);
    let data = random_bytes(9, 3 * MIB);
    let killed = Cell::new(None);
    let replicas_mid_write = Cell::new(0);
    let error = {
        let cluster = &mut cluster;
        let (killed, replicas_mid_write) = (&killed, &replicas_mid_write);
        let mut source = Interrupting::new(&data, false, MIB + MIB / 2, move || {
            // Block 0 is committed by now.
            replicas_mid_write.set(located_replicas(cluster));
            killed.set(Some(kill_first_member(cluster)));
        });
        client
            .put(&path("/f"), options(MIB), &mut source)
            .expect_err("a pipe cannot send block 1 again")
    };
    let killed = killed
        .get()
        .expect("the input reached the middle of block 1");
    let message = error.to_string();
    let minion = minion_address(&cluster, killed);
    for part in [
        "/f: block 1 (blk_".to_string(),
        format!("minion {}@{}", minion.id, minion.address),
        "cannot be read again".to_string(),
    ] {
        assert!(message.contains(&part), "{message:?} lacks {part:?}");
    }
    assert_aborted(&cluster, &mut client, "/f", replicas_mid_write.get());
}

#[test]
fn a_first_member_dying_mid_block_is_survived_by_a_spooled_pipe() {
    let mut cluster = four_minions_one_may_die();
    let (mut client, warnings) = connect(&cluster);
    let data = random_bytes(19, 3 * MIB);
    let killed = Cell::new(None);
    let stats = {
        let cluster = &mut cluster;
        let killed = &killed;
        // Half-way through block 1: block 0 is stored and forgotten, block
        // 1 must come back from the spool.
        let pipe = Interrupting::new(&data, false, MIB + MIB / 2, move || {
            killed.set(Some(kill_first_member(cluster)))
        });
        let mut source = Spooled::new(pipe).expect("a temporary file");
        client
            .put(&path("/f"), options(MIB), &mut source)
            .expect("block 1 goes to a new pipeline from the spool")
    };
    let killed = killed
        .get()
        .expect("the input reached the middle of block 1");
    assert_eq!(stats.length_bytes, data.len() as u64);
    let located = client.get_blocks(&path("/f")).expect("GetBlocks");
    // Block 0 was stored before the kill; the blocks after avoid the dead.
    for block in &located.blocks[1..] {
        assert!(
            block
                .locations
                .iter()
                .all(|l| l.address != cluster.minion_address(killed)),
            "{} was placed on the minion that died: {:?}",
            block.id,
            block.locations
        );
    }
    let mut reader = client.open(&path("/f")).expect("open");
    let mut back = Vec::new();
    reader.read_to_end(&mut back).expect("read back");
    assert_bytes_equal(&back, &data, "the file");
    assert_eq!(warnings.take(), Vec::<String>::new());
}

#[test]
fn a_first_member_dying_mid_block_fails_a_file_writer_and_aborts_the_write() {
    let mut cluster = four_minions_one_may_die();
    let (mut client, _warnings) = connect(&cluster);
    let data = random_bytes(10, 3 * MIB);
    let (head, tail) = data.split_at(MIB + MIB / 2);
    let mut writer = client.create(&path("/g"), options(MIB)).expect("create");
    writer
        .write_all(head)
        .expect("write block 0 and half of block 1");
    let replicas_mid_write = located_replicas(&cluster);
    let killed = kill_first_member(&mut cluster);
    let written = writer.write_all(tail).and_then(|()| writer.flush());
    let message = match written {
        Err(error) => {
            drop(writer);
            error.to_string()
        }
        Ok(()) => writer
            .finish()
            .expect_err("block 1 cannot be sent again")
            .to_string(),
    };
    let minion = minion_address(&cluster, killed);
    for part in [
        format!("minion {}@{}", minion.id, minion.address),
        "cannot be sent again".to_string(),
    ] {
        assert!(message.contains(&part), "{message:?} lacks {part:?}");
    }
    assert_aborted(&cluster, &mut client, "/g", replicas_mid_write);
}

/// The failed write left nothing: no file, and the master forgot the block
/// it had committed (it does so when the write is aborted; this client's
/// connection is still open, so it is the client that aborted).
fn assert_aborted(cluster: &Cluster, client: &mut Client, file: &str, replicas_mid_write: u64) {
    assert_eq!(
        replicas_mid_write, REPLICATION as u64,
        "block 0 was committed on {REPLICATION} minions before the failure"
    );
    let error = client.stat(&path(file)).expect_err("nothing at the path");
    assert!(
        error.to_string().contains("no such file or directory"),
        "{error}"
    );
    assert_eq!(
        located_replicas(cluster),
        0,
        "the master still places blocks"
    );
}

#[test]
fn a_block_no_member_could_store_goes_to_other_minions() {
    let mut cluster = Cluster::start(patient(ClusterOptions {
        minions: 2,
        replication: Some(1),
        ..ClusterOptions::default()
    }));
    // The broken directory below is taken out of service, loudly.
    cluster.allow_error("failed:");
    cluster.allow_error("every data directory failed");
    let (mut client, warnings) = connect(&cluster);
    let mut previous_id = last_block_id(&mut client, "/before");
    // Minion 0 can no longer create block files: its tmp/ is a file now.
    let tmp = cluster.minion_data_dir(0).join("tmp");
    std::fs::remove_dir_all(&tmp).expect("remove tmp/");
    std::fs::write(&tmp, b"not a directory").expect("put a file in its place");

    // Placement is random: the first time minion 0 is chosen it fails the
    // block, which goes to a new pipeline without it (were it not left
    // out, it would be chosen again with odds of one in two). Its only data
    // directory is then out of service: it reports no room, and the master
    // stops choosing it, so no later write gives up a pipeline.
    let mut replaced = 0;
    let mut writes_after = 0;
    for attempt in 0..PLACEMENT_TRIES_MAX {
        if replaced > 0 {
            writes_after += 1;
            if writes_after > REPLACEMENTS_WANTED {
                break;
            }
        }
        let file = format!("/try-{attempt}");
        let data = random_bytes(attempt, 2 * RAGGED_BLOCK);
        let stats = put_bytes(&mut client, &file, &data, RAGGED_BLOCK);
        let abandoned = abandoned_pipelines(&stats, previous_id);
        assert!(
            abandoned <= 1,
            "{file}: minion 0 should be left out after it failed once; {abandoned} pipelines given up"
        );
        check_stored(
            &cluster,
            &mut client,
            &file,
            &data,
            &stats,
            RAGGED_BLOCK,
            &[1, 1],
        );
        let located = client.get_blocks(&path(&file)).expect("GetBlocks");
        for block in &located.blocks {
            assert_eq!(
                block.locations[0].address,
                cluster.minion_address(1),
                "{file}: {} is not on the minion that can store",
                block.id
            );
        }
        previous_id = stats.blocks.last().map_or(previous_id, |b| b.id.0);
        replaced += abandoned;
        if replaced > 0 && writes_after == 0 {
            // Not chosen again once the master heard of the failure.
            wait_for(
                || {
                    cluster
                        .cluster_report()
                        .iter()
                        .any(|m| m.address == cluster.minion_address(0) && m.available_bytes == 0)
                },
                LIVE_TIMEOUT,
                "minion 0 to report no room",
            );
        }
    }
    assert!(
        replaced >= 1,
        "in {PLACEMENT_TRIES_MAX} writes minion 0 was never chosen"
    );
    assert!(writes_after > 0, "no write followed the failure");
    let report = cluster.cluster_report();
    let broken = report
        .iter()
        .find(|m| m.address == cluster.minion_address(0))
        .expect("minion 0 listed");
    assert_eq!(broken.failed_directories.len(), 1, "{broken:?}");
    assert_eq!(warnings.take(), Vec::<String>::new());
}

#[test]
fn a_write_gives_up_after_a_bounded_number_of_pipelines() {
    let minions = WRITE_BLOCK_ATTEMPTS_MAX as usize;
    let mut cluster = Cluster::start(ClusterOptions {
        minions,
        stale_after: Some("60s"),
        dead_after: Some("120s"),
        ..ClusterOptions::default()
    });
    let (mut client, _warnings) = connect(&cluster);
    let previous_id = last_block_id(&mut client, "/before");
    // Every minion dies and stays listed live.
    for index in 0..minions {
        cluster.kill_minion(index);
    }
    let error = client
        .put(
            &path("/f"),
            options(RAGGED_BLOCK),
            &mut Unseekable(&b"x"[..]),
        )
        .expect_err("no minion answers");
    assert!(
        error.to_string().contains(&format!(
            "gave up after {WRITE_BLOCK_ATTEMPTS_MAX} pipelines"
        )),
        "{error}"
    );
    drop(client);

    // The master allocated exactly that many blocks: after a restart with
    // one minion back, the next block gets the id after them.
    cluster.stop_master_gracefully();
    cluster.start_master();
    cluster.start_minion(0);
    cluster.wait_for_live_minions(1);
    let (mut client, _warnings) = connect(&cluster);
    let stats = client
        .put(
            &path("/after"),
            WriteOptions {
                replication: Some(1),
                ..options(RAGGED_BLOCK)
            },
            &mut Unseekable(&b"y"[..]),
        )
        .expect("put with one minion back");
    assert_eq!(
        stats.blocks[0].id.0,
        previous_id + u64::from(WRITE_BLOCK_ATTEMPTS_MAX) + 1,
        "block ids allocated by the write that gave up"
    );
}

/// How far each range of a `RangeInput` was read, by its start offset.
#[derive(Default)]
struct Progress {
    read: Mutex<BTreeMap<u64, u64>>,
    changed: Condvar,
}

/// How long a range waits for the others in the tests below: long enough
/// for a loaded machine, short enough that a writer with one block in
/// flight fails them quickly.
const RANGE_WAIT: Duration = Duration::from_secs(20);

impl Progress {
    fn advance(&self, start_bytes: u64, end_bytes: u64) {
        let mut read = self.read.lock().expect("progress lock");
        let reached = read.entry(start_bytes).or_insert(start_bytes);
        *reached = (*reached).max(end_bytes);
        self.changed.notify_all();
    }

    /// Waits until `done` holds for the ranges read so far; an input error
    /// naming `what` after `RANGE_WAIT`.
    fn wait_until(&self, what: &str, done: impl Fn(&BTreeMap<u64, u64>) -> bool) -> io::Result<()> {
        let deadline = Instant::now() + RANGE_WAIT;
        let mut read = self.read.lock().expect("progress lock");
        while !done(&read) {
            let left = deadline
                .checked_duration_since(Instant::now())
                .ok_or_else(|| io::Error::other(format!("waited in vain for {what}")))?;
            read = self
                .changed
                .wait_timeout(read, left)
                .expect("progress lock")
                .0;
        }
        Ok(())
    }

    /// Ranges starting at `starts` each read to `end(start)` at least.
    fn reached(read: &BTreeMap<u64, u64>, starts: &[u64], end: impl Fn(u64) -> u64) -> bool {
        starts.iter().all(|&start| {
            read.get(&start)
                .is_some_and(|&reached| reached >= end(start))
        })
    }
}

type BeforeRead<'a> = Box<dyn Fn(&Progress, u64, u64) -> io::Result<()> + Sync + 'a>;

/// An input read by ranges (as a local file is) whose reads can wait for
/// each other: `before_read(progress, range start, offset)` runs before
/// every read. Read in order (one block in flight), it is one range from 0.
struct RangeInput<'a> {
    data: &'a [u8],
    in_order_bytes: u64,
    progress: Progress,
    before_read: BeforeRead<'a>,
}

impl<'a> RangeInput<'a> {
    fn new(data: &'a [u8], before_read: BeforeRead<'a>) -> RangeInput<'a> {
        RangeInput {
            data,
            in_order_bytes: 0,
            progress: Progress::default(),
            before_read,
        }
    }

    fn read_at(&self, start: u64, offset: u64, end: u64, buffer: &mut [u8]) -> io::Result<usize> {
        (self.before_read)(&self.progress, start, offset)?;
        let count = buffer.len().min((end - offset) as usize);
        let at = offset as usize;
        buffer[..count].copy_from_slice(&self.data[at..at + count]);
        self.progress.advance(start, offset + count as u64);
        Ok(count)
    }
}

impl BlockSource for RangeInput<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let offset = self.in_order_bytes;
        let count = self.read_at(0, offset, self.data.len() as u64, buffer)?;
        self.in_order_bytes += count as u64;
        Ok(count)
    }

    fn rewind(&mut self, offset_bytes: u64) -> io::Result<bool> {
        self.in_order_bytes = offset_bytes;
        Ok(true)
    }

    fn ranges(&self) -> Option<(&dyn RangeSource, u64)> {
        Some((self, self.data.len() as u64))
    }
}

impl RangeSource for RangeInput<'_> {
    fn open_range(
        &self,
        offset_bytes: u64,
        length_bytes: u64,
    ) -> dfs_client::Result<Box<dyn Read + '_>> {
        Ok(Box::new(InputRange {
            input: self,
            start_bytes: offset_bytes,
            offset_bytes,
            end_bytes: offset_bytes + length_bytes,
        }))
    }
}

struct InputRange<'i, 'a> {
    input: &'i RangeInput<'a>,
    start_bytes: u64,
    offset_bytes: u64,
    end_bytes: u64,
}

impl Read for InputRange<'_, '_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let count =
            self.input
                .read_at(self.start_bytes, self.offset_bytes, self.end_bytes, buffer)?;
        self.offset_bytes += count as u64;
        Ok(count)
    }
}

fn in_flight_options(blocks_in_flight: usize) -> WriteOptions {
    WriteOptions {
        blocks_in_flight,
        ..options(MIB)
    }
}

#[test]
fn put_keeps_several_blocks_in_flight_and_commits_them_in_file_order() {
    let cluster = Cluster::start(ClusterOptions {
        minions: 4,
        ..ClusterOptions::default()
    });
    let (mut client, warnings) = connect(&cluster);
    let data = random_bytes(21, 6 * MIB + 5000);
    let later_blocks = [MIB as u64, 2 * MIB as u64, 3 * MIB as u64];
    // Block 0 sends its last chunk only once blocks 1 to 3 were read whole:
    // a writer with one block in flight never gets there, and blocks 1 to
    // 3 are sealed before block 0, so they wait for it to be committed.
    let mut source = RangeInput::new(
        &data,
        Box::new(move |progress, start, offset| {
            if start != 0 || offset + CHUNK as u64 != MIB as u64 {
                return Ok(());
            }
            progress.wait_until("blocks 1 to 3 while block 0 was in flight", |read| {
                Progress::reached(read, &later_blocks, |start| start + MIB as u64)
            })
        }),
    );
    let stats = client
        .put(&path("/f"), in_flight_options(4), &mut source)
        .expect("put with four blocks in flight");

    assert_eq!(stats.length_bytes, data.len() as u64);
    let located = client.get_blocks(&path("/f")).expect("GetBlocks");
    let offsets: Vec<(u64, u64)> = located
        .blocks
        .iter()
        .map(|block| (block.offset_bytes, block.length_bytes))
        .collect();
    let expected: Vec<(u64, u64)> = split(data.len(), MIB)
        .iter()
        .enumerate()
        .map(|(index, &length)| ((index * MIB) as u64, length as u64))
        .collect();
    assert_eq!(offsets, expected);
    // Blocks are allocated in file order, so the file's blocks in offset
    // order carry increasing ids: each at its own place, none swapped.
    let ids: Vec<BlockId> = located.blocks.iter().map(|block| block.id).collect();
    let stats_ids: Vec<BlockId> = stats.blocks.iter().map(|block| block.id).collect();
    assert_eq!(ids, stats_ids);
    assert!(ids.windows(2).all(|pair| pair[0].0 < pair[1].0), "{ids:?}");
    check_stored(
        &cluster,
        &mut client,
        "/f",
        &data,
        &stats,
        MIB,
        &[REPLICATION; 7],
    );
    assert_eq!(warnings.take(), Vec::<String>::new());
}

#[test]
fn a_minion_killed_with_several_blocks_in_flight_costs_only_its_pipelines() {
    let cluster = Mutex::new(four_minions_one_may_die());
    let (mut client, _warnings) = connect(&cluster.lock().expect("cluster"));
    let previous_id = last_block_id(&mut client, "/before");
    let data = random_bytes(22, 8 * MIB);
    let first_blocks = [0, MIB as u64, 2 * MIB as u64, 3 * MIB as u64];
    let killed: Mutex<Option<usize>> = Mutex::new(None);
    let stats = {
        let (cluster, killed) = (&cluster, &killed);
        // Blocks 0 to 3 meet half a block in; the last to arrive kills the
        // minion most of them stream to first, then all go on.
        let mut source = RangeInput::new(
            &data,
            Box::new(move |progress, start, offset| {
                let half = start + MIB as u64 / 2;
                if !first_blocks.contains(&start) || offset != half {
                    return Ok(());
                }
                let half_sent = |read: &BTreeMap<u64, u64>| {
                    Progress::reached(read, &first_blocks, |start| start + MIB as u64 / 2)
                };
                let arrived = half_sent(&progress.read.lock().expect("progress lock"));
                if arrived {
                    {
                        let mut killed = killed.lock().expect("killed");
                        if killed.is_none() {
                            *killed = Some(kill_busiest_first_member(
                                &mut cluster.lock().expect("cluster"),
                            ));
                        }
                    }
                    // Under the lock the waiters check under: none misses it.
                    let _read = progress.read.lock().expect("progress lock");
                    progress.changed.notify_all();
                }
                // The minion dies before any of them goes on.
                progress.wait_until("blocks 0 to 3 to be half sent and the kill", |read| {
                    half_sent(read) && killed.lock().is_ok_and(|killed| killed.is_some())
                })
            }),
        );
        client
            .put(&path("/f"), in_flight_options(4), &mut source)
            .expect("the blocks of the dead minion go to new pipelines")
    };
    let killed = killed
        .into_inner()
        .expect("killed")
        .expect("blocks 0 to 3 met");
    let cluster = cluster.into_inner().expect("cluster");

    // At least one of blocks 0 to 3 (ids previous + 1 to 4) lost its
    // pipeline and went to a new one with a later id.
    let ids: Vec<u64> = stats.blocks.iter().map(|block| block.id.0).collect();
    assert!(
        (previous_id + 1..=previous_id + 4).any(|id| !ids.contains(&id)),
        "no pipeline was given up: {ids:?} after {previous_id}"
    );
    assert_eq!(read_back(&mut client, "/f"), data);
    let located = client.get_blocks(&path("/f")).expect("GetBlocks");
    let offsets: Vec<u64> = located.blocks.iter().map(|b| b.offset_bytes).collect();
    assert_eq!(offsets, (0..8).map(|i| i * MIB as u64).collect::<Vec<_>>());
    for block in &located.blocks {
        assert!(
            block
                .locations
                .iter()
                .all(|l| l.address != cluster.minion_address(killed)),
            "{} is placed on the minion that died: {:?}",
            block.id,
            block.locations
        );
        assert!(!block.locations.is_empty(), "{} has no replica", block.id);
    }
}

/// Kills the minion this process streams the most blocks to (the first
/// member of their pipelines); returns its index.
fn kill_busiest_first_member(cluster: &mut Cluster) -> usize {
    let connections = connections_to_minions(cluster);
    let mut counts = BTreeMap::<usize, usize>::new();
    for connection in &connections {
        *counts.entry(connection.minion_index).or_default() += 1;
    }
    let (&index, _) = counts
        .iter()
        .max_by_key(|(_, &count)| count)
        .unwrap_or_else(|| panic!("no connection to a minion mid-write: {connections:?}"));
    cluster.kill_minion(index);
    index
}
