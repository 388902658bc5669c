//! Ranged reads on real processes: `FileReader::read_at` returns the bytes
//! of any range (across chunks and blocks, at and past the end, empty),
//! a run of calls returns the whole file over one stream per block, a
//! call that lands elsewhere asks its replica for the chunks its range
//! covers only, reads here and there never start the read-ahead while a
//! run of them does, `Seek` then `Read` returns the bytes from there, and
//! a replica that is corrupt, that rewrote its checksums or whose minion
//! is gone or stopped is left for the next one, mid-run too. Proved on a
//! real dfs-master and dfs-minions by flipping bytes in real block files,
//! SIGKILLing and SIGSTOPping minions, and watching this process's sockets
//! and threads.

mod support;

use std::io::{ErrorKind, Read, Seek, SeekFrom};

use dfs_client::FileReader;
use dfs_engine::msg::LocatedBlock;
use dfs_testkit::{assert_bytes_equal, wait_for, Cluster, ClusterOptions, LIVE_TIMEOUT};
use support::{connect, connections_to_minions, minion_index, path, patient, put_file, CHUNK, MIB};

/// Four chunks, the last of them 10 bytes.
const BLOCK: usize = 3 * CHUNK + 10;
/// What a mount asks for at a time.
const MOUNT_READ: usize = 128 * 1024;

/// `/f`'s blocks and their replicas in the order a reader tries them, once
/// every block lists `replicas` (a first full block report may cross a
/// commit and drop a location for a moment).
fn blocks_of_file(cluster: &Cluster, replicas: usize) -> Vec<LocatedBlock> {
    wait_for(
        || {
            cluster
                .located_blocks("/f")
                .iter()
                .all(|block| block.locations.len() == replicas)
        },
        LIVE_TIMEOUT,
        &format!("every block of /f to list {replicas} replicas"),
    );
    let (mut client, _) = connect(cluster);
    client.get_blocks(&path("/f")).expect("GetBlocks /f").blocks
}

fn open(cluster: &Cluster) -> FileReader {
    let (mut client, _) = connect(cluster);
    client.open(&path("/f")).expect("open /f")
}

/// Flips one byte of chunk `chunk_index` of `block`'s replica on the
/// minion at `address`; the minion refuses to send that chunk.
fn corrupt_chunk(cluster: &Cluster, address: &str, block: &LocatedBlock, chunk_index: usize) {
    let index = minion_index(cluster, address);
    let file_path = cluster.block_file_path(index, &block.id.to_string());
    assert!(
        chunk_index * CHUNK + 7 < block.length_bytes as usize,
        "{} has no chunk {chunk_index}",
        block.id
    );
    let mut bytes =
        std::fs::read(&file_path).unwrap_or_else(|e| panic!("read {}: {e}", file_path.display()));
    bytes[chunk_index * CHUNK + 7] ^= 0x40;
    std::fs::write(&file_path, &bytes)
        .unwrap_or_else(|e| panic!("write {}: {e}", file_path.display()));
}

/// A cluster where a killed minion stays listed (and first) for the whole
/// test, and where partly corrupt replicas stay readable up to their bad
/// chunks (no scrubber quarantines them).
fn cluster_for_failures() -> Cluster {
    Cluster::start(ClusterOptions {
        stale_after: Some("60s"),
        dead_after: Some("120s"),
        minion_arguments: vec!["--scrub-period", "off"],
        ..ClusterOptions::default()
    })
}

/// Reads `length` bytes at `offset` with `read_at` and checks them against
/// `data`: all of them, but for the part past the end.
fn check_range(reader: &mut FileReader, data: &[u8], offset: usize, length: usize, what: &str) {
    let mut buffer = vec![0xA5u8; length];
    let count = reader
        .read_at(offset as u64, &mut buffer)
        .unwrap_or_else(|e| panic!("{what}: read_at({offset}, {length}): {e}"));
    let start = offset.min(data.len());
    let end = offset.saturating_add(length).min(data.len());
    assert_eq!(
        count,
        end - start,
        "{what}: read_at({offset}, {length}) of a file of {} bytes",
        data.len()
    );
    assert_bytes_equal(
        &buffer[..count],
        &data[start..end],
        &format!("{what}: read_at({offset}, {length})"),
    );
}

/// Reads the whole file with `read_at` calls of `piece_bytes`, each at the
/// end of the last.
fn read_run(reader: &mut FileReader, piece_bytes: usize) -> Vec<u8> {
    let mut output = Vec::new();
    let mut piece = vec![0u8; piece_bytes];
    loop {
        let count = reader
            .read_at(output.len() as u64, &mut piece)
            .unwrap_or_else(|e| panic!("read_at({}, {piece_bytes}): {e}", output.len()));
        if count == 0 {
            return output;
        }
        assert!(
            count == piece_bytes || output.len() + count == reader.length_bytes() as usize,
            "read_at({}, {piece_bytes}) returned {count} bytes before the end",
            output.len()
        );
        output.extend_from_slice(&piece[..count]);
    }
}

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

/// Ranges that start and end on and around chunk and block boundaries,
/// at and past the end, and empty ones, in a file of `length` bytes of
/// `BLOCK` blocks.
fn edge_ranges(length: usize) -> Vec<(usize, usize)> {
    vec![
        (0, 0),
        (0, 1),
        (5, 0),
        (CHUNK - 1, 2),
        (CHUNK, CHUNK),
        (CHUNK - 3, CHUNK + 6),
        (2 * CHUNK + 1, 3 * CHUNK),
        (BLOCK - 10, 10),
        (BLOCK - 5, 10),
        (BLOCK, CHUNK),
        (BLOCK - 1, BLOCK + 2),
        (CHUNK + 7, 2 * BLOCK),
        (3 * BLOCK - 1, 2),
        (length - 1, 1),
        (length - 1, 10),
        (length - 100, 100),
        (length, 0),
        (length, 5),
        (length + 100, 5),
        (0, length),
        (0, length + 100),
        (7, length),
    ]
}

#[test]
fn read_at_returns_the_bytes_of_any_range() {
    let cluster = Cluster::start(patient(ClusterOptions::default()));
    let length = 3 * BLOCK + 1234;
    let data = put_file(&cluster, BLOCK, length, 11);
    // One reader for every range, in this order and then in random order,
    // so that it moves back and forth, within a chunk it holds, and on
    // from where the last call ended; and a fresh reader for each.
    let mut reader = open(&cluster);
    assert_eq!(reader.length_bytes(), length as u64);
    for (offset, range) in edge_ranges(length) {
        check_range(&mut reader, &data, offset, range, "one reader");
        check_range(&mut open(&cluster), &data, offset, range, "a fresh reader");
    }
    let mut numbers = Numbers(0x5eed_0001);
    for _ in 0..300 {
        let offset = numbers.below(length + 1000);
        let range = match numbers.below(4) {
            0 => numbers.below(100),
            1 => numbers.below(3 * CHUNK),
            2 => numbers.below(2 * BLOCK),
            _ => MOUNT_READ,
        };
        check_range(&mut reader, &data, offset, range, "random ranges");
        if numbers.below(3) == 0 {
            // Sometimes a run: on from where the last call ended.
            check_range(&mut reader, &data, offset + range, range, "a run");
        }
    }
}

#[test]
fn a_run_of_read_at_returns_the_whole_file() {
    let cluster = Cluster::start(patient(ClusterOptions::default()));
    for (block_bytes, length_bytes) in [(BLOCK, 3 * BLOCK + 1234), (MIB, 3 * MIB + 1234)] {
        let data = put_file(&cluster, block_bytes, length_bytes, block_bytes as u64);
        for piece_bytes in [MOUNT_READ, 1000, CHUNK + 3, length_bytes + 1] {
            let output = read_run(&mut open(&cluster), piece_bytes);
            assert_bytes_equal(
                &output,
                &data,
                &format!("blocks of {block_bytes}, read_at of {piece_bytes}"),
            );
        }
        let (mut client, _) = connect(&cluster);
        client.delete(&path("/f"), false).expect("delete /f");
    }
}

/// Bytes the minion sent on connection `socket_inode` that this process
/// did not read yet, from /proc/self/net/tcp; None when it is not open.
fn unread_bytes(socket_inode: u64) -> Option<u64> {
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        // Columns: sl local_address rem_address st tx_queue:rx_queue ... inode
        for line in text.lines().skip(1) {
            let columns: Vec<&str> = line.split_whitespace().collect();
            if columns.len() < 10 || columns[9].parse::<u64>().ok() != Some(socket_inode) {
                continue;
            }
            return columns[4]
                .split_once(':')
                .and_then(|(_, rx)| u64::from_str_radix(rx, 16).ok());
        }
    }
    None
}

/// The one connection this process holds to a minion.
fn the_connection(cluster: &Cluster, what: &str) -> u64 {
    let connections = connections_to_minions(cluster);
    assert_eq!(connections.len(), 1, "{what}: {connections:?}");
    connections[0].socket_inode
}

#[test]
fn a_run_keeps_one_stream_and_a_move_asks_for_its_range_only() {
    let cluster = Cluster::start(patient(ClusterOptions {
        minions: 1,
        replication: Some(1),
        ..ClusterOptions::default()
    }));
    // Blocks of 16 chunks: far more than a call reads.
    let block_bytes = 16 * CHUNK;
    let data = put_file(&cluster, block_bytes, 3 * block_bytes + 1234, 21);
    let mut reader = open(&cluster);
    // A move: only the chunks of its range come, and nothing follows them.
    check_range(&mut reader, &data, 5 * CHUNK + 3, CHUNK, "a move");
    let socket = the_connection(&cluster, "after a move");
    assert_eq!(
        unread_bytes(socket),
        Some(0),
        "a move asked for more than its range"
    );
    // A run: the second call asks for the rest of the block, which the
    // minion sends while the reader takes it a piece at a time.
    check_range(&mut reader, &data, 6 * CHUNK + 3, MOUNT_READ, "a run");
    wait_for(
        || unread_bytes(socket).is_some_and(|bytes| bytes > 0),
        LIVE_TIMEOUT,
        "the minion to send the rest of the block ahead of the run",
    );
    let mut offset = 6 * CHUNK + 3 + MOUNT_READ;
    while offset < data.len() {
        check_range(&mut reader, &data, offset, MOUNT_READ, "the run");
        // One minion: every block and request goes over one connection.
        assert_eq!(the_connection(&cluster, "during the run"), socket);
        offset += MOUNT_READ;
    }
}

#[test]
fn a_move_reads_only_the_chunks_its_range_covers() {
    let mut cluster = cluster_for_failures();
    // Block 0 is 12 chunks; chunk 6 is corrupt on every replica. A replica
    // asked for more than a range's chunks would read chunk 6 with the
    // chunks before it (a minion reads 8 at a time) and log it.
    let block_bytes = 12 * CHUNK;
    let data = put_file(&cluster, block_bytes, 2 * block_bytes + 1234, 31);
    let blocks = blocks_of_file(&cluster, 3);
    for location in &blocks[0].locations {
        corrupt_chunk(&cluster, &location.address, &blocks[0], 6);
    }
    let mut reader = open(&cluster);
    for (offset, length) in [
        (2 * CHUNK + 5, CHUNK),
        (7 * CHUNK, 2 * CHUNK),
        (5 * CHUNK + 100, CHUNK - 200),
        (0, 10),
        (11 * CHUNK + 9, CHUNK),
    ] {
        check_range(&mut reader, &data, offset, length, "around the bad chunk");
    }
    cluster.assert_clean_logs();

    // The same reader, moved by `Seek`, asks for the rest of block 0: its
    // replica meets chunk 6 (the reader took only 10 bytes, good ones).
    cluster.allow_error("corrupted blk_");
    reader.seek(SeekFrom::Start(0)).expect("seek to 0");
    let mut head = [0u8; 10];
    reader.read_exact(&mut head).expect("read 10 bytes");
    assert_bytes_equal(&head, &data[..10], "the head after a seek");
    let first = minion_index(&cluster, &blocks[0].locations[0].address);
    wait_for(
        || {
            std::fs::read_to_string(cluster.log_path(&format!("minion-{first}")))
                .is_ok_and(|log| log.contains("corrupted"))
        },
        LIVE_TIMEOUT,
        "the first replica to meet its bad chunk",
    );

    // A range with chunk 6 fails on every replica, and says so; that call
    // alone: the next one, in block 1, reads.
    let mut buffer = vec![0u8; 100];
    let error = reader
        .read_at(6 * CHUNK as u64, &mut buffer)
        .expect_err("every replica of chunk 6 is bad");
    let head = format!("/f: block 0 ({}) unreadable: tried ", blocks[0].id);
    assert!(
        error.to_string().starts_with(&head),
        "{error} should start {head:?}"
    );
    check_range(
        &mut reader,
        &data,
        block_bytes + 77,
        CHUNK,
        "after a failure",
    );
}

/// True while a read-ahead thread of this process runs (they are named
/// `dfs-read-ahead-N`, cut to 15 characters).
fn reading_ahead() -> bool {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks.flatten().any(|task| {
                std::fs::read_to_string(task.path().join("comm"))
                    .is_ok_and(|name| name.starts_with("dfs-read-ahead"))
            })
        })
        .unwrap_or(false)
}

#[test]
fn reads_here_and_there_never_read_ahead_and_a_run_does() {
    let cluster = Cluster::start(patient(ClusterOptions::default()));
    // Blocks larger than what a read-ahead stream holds (4 MiB), so its
    // thread waits for the reader as long as the reader does not read.
    let block_bytes = 8 * MIB;
    let length = 3 * block_bytes + 1234;
    let data = put_file(&cluster, block_bytes, length, 41);
    let mut reader = open(&cluster);
    let mut numbers = Numbers(0x5eed_0002);
    // 64 moves, each followed by a short run: 16 MiB in all, anywhere.
    for _ in 0..64 {
        let mut offset = numbers.below(2 * block_bytes);
        for _ in 0..=numbers.below(3) {
            check_range(&mut reader, &data, offset, MOUNT_READ, "here and there");
            assert!(!reading_ahead(), "a read_at at {offset} started read-ahead");
            offset += MOUNT_READ;
        }
    }
    // A run of more than 4 MiB reads ahead.
    let mut offset = 0;
    while offset <= 5 * MIB {
        check_range(&mut reader, &data, offset, MOUNT_READ, "a long run");
        offset += MOUNT_READ;
    }
    assert!(
        reading_ahead(),
        "a run of {offset} bytes did not read ahead"
    );
    // A move drops the read-ahead; reads are right all along.
    check_range(
        &mut reader,
        &data,
        2 * block_bytes + 3,
        CHUNK,
        "after the run",
    );
    wait_for(
        || !reading_ahead(),
        LIVE_TIMEOUT,
        "the dropped read-ahead to end",
    );
    check_range(&mut reader, &data, 6 * MIB, MOUNT_READ, "back in the run");
    let mut rest = Vec::new();
    reader.seek(SeekFrom::Start(0)).expect("seek to 0");
    reader.read_to_end(&mut rest).expect("read the file");
    assert_bytes_equal(&rest, &data, "the file read after the moves");
}

#[test]
fn seek_then_read_returns_the_bytes_from_there() {
    let cluster = Cluster::start(patient(ClusterOptions::default()));
    let length = 3 * BLOCK + 1234;
    let data = put_file(&cluster, BLOCK, length, 51);
    let mut reader = open(&cluster);
    let mut piece = vec![0u8; CHUNK + 5];
    for (seek, expected) in [
        (SeekFrom::Start(BLOCK as u64 - 3), BLOCK - 3),
        (SeekFrom::Current(-20), BLOCK - 3 + CHUNK + 5 - 20),
        (SeekFrom::End(-100), length - 100),
        (SeekFrom::Start(7), 7),
        (
            SeekFrom::Current(2 * BLOCK as i64),
            7 + CHUNK + 5 + 2 * BLOCK,
        ),
        (SeekFrom::Current(0), 7 + 2 * (CHUNK + 5) + 2 * BLOCK),
    ] {
        let position = reader.seek(seek).expect("seek");
        assert_eq!(position, expected as u64, "{seek:?}");
        assert_eq!(reader.stream_position().expect("position"), position);
        let end = (expected + piece.len()).min(length);
        reader
            .read_exact(&mut piece[..end - expected])
            .unwrap_or_else(|e| panic!("read after {seek:?}: {e}"));
        assert_bytes_equal(
            &piece[..end - expected],
            &data[expected..end],
            &format!("read after {seek:?}"),
        );
        assert_eq!(reader.stream_position().expect("position"), end as u64);
    }
    // The rest of the file, after a seek back, through `copy_to`.
    reader
        .seek(SeekFrom::Start(CHUNK as u64 + 1))
        .expect("seek");
    let mut rest = Vec::new();
    reader.copy_to(&mut rest, "memory").expect("copy_to");
    assert_bytes_equal(&rest, &data[CHUNK + 1..], "copy_to after a seek");
    // At and past the end, reads return nothing; before the start is an error.
    for past in [length as u64, length as u64 + 10] {
        assert_eq!(reader.seek(SeekFrom::Start(past)).expect("seek"), past);
        assert_eq!(reader.read(&mut piece).expect("read at the end"), 0);
        assert_eq!(reader.stream_position().expect("position"), past);
    }
    let error = reader
        .seek(SeekFrom::Current(-(length as i64) - 11))
        .expect_err("before the start");
    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
    // And back from past the end.
    reader.seek(SeekFrom::End(-10)).expect("seek");
    let mut tail = Vec::new();
    reader.read_to_end(&mut tail).expect("read the tail");
    assert_bytes_equal(&tail, &data[length - 10..], "the tail");
}

/// Checks every edge range and a run of mount-sized calls, on one reader,
/// against `data`.
fn check_ranges_and_a_run(cluster: &Cluster, data: &[u8], what: &str) {
    let mut reader = open(cluster);
    for (offset, length) in edge_ranges(data.len()) {
        check_range(&mut reader, data, offset, length, what);
    }
    let output = read_run(&mut open(cluster), 1000);
    assert_bytes_equal(&output, data, &format!("{what}: a run"));
}

#[test]
fn read_at_skips_a_replica_with_a_corrupt_chunk() {
    let mut cluster = cluster_for_failures();
    cluster.allow_error("corrupted blk_");
    let data = put_file(&cluster, BLOCK, 3 * BLOCK + 1234, 61);
    let blocks = blocks_of_file(&cluster, 3);
    // The replica a reader tries first has a bad chunk 1 in every block,
    // the second a bad chunk 2: a range over both meets two bad replicas.
    // The last block is one short chunk: its first replica's is bad.
    for block in &blocks {
        if block.length_bytes as usize > 2 * CHUNK {
            corrupt_chunk(&cluster, &block.locations[0].address, block, 1);
            corrupt_chunk(&cluster, &block.locations[1].address, block, 2);
        } else {
            corrupt_chunk(&cluster, &block.locations[0].address, block, 0);
        }
    }
    check_ranges_and_a_run(&cluster, &data, "bad chunks on two replicas");
}

#[test]
fn read_at_skips_a_replica_whose_minion_is_gone() {
    let mut cluster = cluster_for_failures();
    let data = put_file(&cluster, BLOCK, 3 * BLOCK + 1234, 71);
    let blocks = blocks_of_file(&cluster, 3);
    let first = minion_index(&cluster, &blocks[0].locations[0].address);
    cluster.kill_minion(first);
    assert_eq!(
        blocks_of_file(&cluster, 3)[0].locations,
        blocks[0].locations,
        "the killed minion is still the first a reader tries"
    );
    check_ranges_and_a_run(&cluster, &data, "the first replica's minion killed");
}

#[test]
fn read_at_skips_a_replica_whose_minion_is_stopped() {
    // A stopped minion accepts connections and never answers: a reader
    // waits its I/O timeout (short here, for the whole test process), then
    // goes to the next replica.
    std::env::set_var("DFS_IO_TIMEOUT", "2s");
    let cluster = cluster_for_failures();
    let length = 2 * BLOCK + 1234;
    let data = put_file(&cluster, BLOCK, length, 101);
    let blocks = blocks_of_file(&cluster, 3);
    let first = minion_index(&cluster, &blocks[0].locations[0].address);
    cluster.sigstop_minion(first);
    let mut reader = open(&cluster);
    for (offset, range) in [
        (CHUNK + 5, 100),
        (3, CHUNK),
        (BLOCK - 3, CHUNK),
        (0, length),
    ] {
        check_range(
            &mut reader,
            &data,
            offset,
            range,
            "the first replica's minion stopped",
        );
    }
    cluster.sigcont_minion(first);
}

#[test]
fn a_run_resumes_on_the_next_replica_when_its_minion_dies_mid_block() {
    let mut cluster = cluster_for_failures();
    // Blocks far larger than the sockets hold: the run's stream is cut off
    // mid-block.
    let block_bytes = 16 * MIB;
    let data = put_file(&cluster, block_bytes, block_bytes + 1234, 81);
    let blocks = blocks_of_file(&cluster, 3);
    let mut reader = open(&cluster);
    let mut output = vec![0u8; 2 * MOUNT_READ];
    for offset in [0, MOUNT_READ] {
        let count = reader
            .read_at(offset as u64, &mut output[offset..offset + MOUNT_READ])
            .expect("read_at before the kill");
        assert_eq!(count, MOUNT_READ);
    }
    cluster.kill_minion(minion_index(&cluster, &blocks[0].locations[0].address));
    let mut piece = vec![0u8; MOUNT_READ];
    loop {
        let count = reader
            .read_at(output.len() as u64, &mut piece)
            .unwrap_or_else(|e| panic!("read_at({}) after the kill: {e}", output.len()));
        if count == 0 {
            break;
        }
        output.extend_from_slice(&piece[..count]);
    }
    assert_bytes_equal(&output, &data, "a run across a killed minion");
}

/// A minion that serves rotten bytes with checksums rewritten to match
/// them (a failpoint plays one) passes every check its own numbers allow:
/// a ranged read still checks its chunk checksums against the block CRC32C
/// the master recorded, and goes to a good replica.
#[test]
fn read_at_never_returns_bytes_a_minion_rewrote_with_matching_checksums() {
    let mut cluster = Cluster::start(ClusterOptions::default());
    // Two of three minions lie about the first chunk of every read; each
    // block keeps a replica that does not.
    for index in [0, 1] {
        cluster.stop_minion(index);
        cluster.set_minion_environment(index, "DFS_FAILPOINT", Some("read-serve-rotten:on"));
        cluster.start_minion(index);
    }
    cluster.wait_for_live_minions(3);
    let data = put_file(&cluster, 2 * CHUNK, 24 * 2 * CHUNK + 777, 91);
    let blocks = blocks_of_file(&cluster, 3);
    let lying = [cluster.minion_address(0), cluster.minion_address(1)];
    assert!(
        blocks
            .iter()
            .any(|block| lying.contains(&block.locations[0].address.as_str())),
        "no block is read from a lying minion first"
    );
    let mut reader = open(&cluster);
    for (index, block) in blocks.iter().enumerate() {
        // The block's first chunk, and a range inside it.
        let offset = block.offset_bytes as usize;
        check_range(&mut reader, &data, offset, 100, &format!("block {index}"));
        check_range(
            &mut reader,
            &data,
            offset + 1000,
            CHUNK - 2000,
            &format!("block {index}"),
        );
        // A chunk the liars send as stored: their checksums still do not
        // make the block's CRC32C.
        check_range(
            &mut reader,
            &data,
            offset + CHUNK + 5,
            100,
            &format!("block {index}"),
        );
    }
}
