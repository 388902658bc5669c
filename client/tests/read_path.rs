//! The library's read path on real processes: `FileReader` returns a file's
//! bytes through `copy_to` and through reads of any size, keeps one
//! connection for consecutive blocks on the same minion, falls back to the
//! next replica when one has a corrupt chunk, drops the stream mid-block, has
//! lost the block file or is unreachable, resumes there at the first byte not
//! yet returned, and never returns a byte it did not verify: when every
//! replica of a block fails (or none is left) it fails with every byte before
//! that block returned and none after. Proved on a real dfs-master and
//! dfs-minions by flipping bytes in and deleting real block files, SIGKILLing
//! minions and letting the master declare one dead.

mod support;

use std::io::Read;

use dfs_client::{Client, FileReader};
use dfs_engine::msg::LocatedBlock;
use dfs_testkit::{assert_bytes_equal, wait_for, Cluster, ClusterOptions, LIVE_TIMEOUT};
use support::{connect, connections_to_minions, minion_index, path, patient, put_file, CHUNK, MIB};

/// Four chunks, the last of them 10 bytes.
const BLOCK: usize = 3 * CHUNK + 10;

/// `/f`'s blocks and where the master says they are, in the order a reader
/// tries them. Locations are soft state: a minion's first full block report
/// may cross a commit and drop a location its next incremental report
/// restores, so this waits until every block lists its three replicas.
fn blocks_of_file(cluster: &Cluster) -> Vec<LocatedBlock> {
    wait_for(
        || {
            cluster
                .located_blocks("/f")
                .iter()
                .all(|block| block.locations.len() == 3)
        },
        LIVE_TIMEOUT,
        "every block of /f to list three replicas",
    );
    let (mut client, _) = connect(cluster);
    let blocks = client.get_blocks(&path("/f")).expect("GetBlocks /f").blocks;
    for block in &blocks {
        assert_eq!(
            block.locations.len(),
            3,
            "{}: {:?}",
            block.id,
            block.locations
        );
    }
    blocks
}

fn open(client: &mut Client, file: &str) -> FileReader {
    client
        .open(&path(file))
        .unwrap_or_else(|e| panic!("open {file}: {e}"))
}

/// Reads `file` to its end or its first error with `copy_to` (`piece_bytes`
/// 0) or with reads of `piece_bytes`; returns what was read and the error.
fn read_all(cluster: &Cluster, file: &str, piece_bytes: usize) -> (Vec<u8>, Result<(), String>) {
    let (mut client, _) = connect(cluster);
    let mut reader = open(&mut client, file);
    let mut output = Vec::new();
    if piece_bytes == 0 {
        let result = reader
            .copy_to(&mut output, "memory")
            .map(|_| ())
            .map_err(|e| e.to_string());
        return (output, result);
    }
    let mut piece = vec![0u8; piece_bytes];
    loop {
        match reader.read(&mut piece) {
            Ok(0) => return (output, Ok(())),
            Ok(n) => output.extend_from_slice(&piece[..n]),
            Err(error) => return (output, Err(error.to_string())),
        }
    }
}

/// Flips one byte of the block file of `block` on the minion at `address`,
/// `offset_bytes` from the file's start (the data comes first).
fn flip_byte(cluster: &Cluster, address: &str, block: &LocatedBlock, offset_bytes: usize) {
    let index = minion_index(cluster, address);
    let file_path = cluster.block_file_path(index, &block.id.to_string());
    let mut bytes =
        std::fs::read(&file_path).unwrap_or_else(|e| panic!("read {}: {e}", file_path.display()));
    bytes[offset_bytes] ^= 0x40;
    std::fs::write(&file_path, &bytes)
        .unwrap_or_else(|e| panic!("write {}: {e}", file_path.display()));
}

/// Corrupts chunk `chunk_index` of `block`'s replica at `address`; the
/// minion sends the chunks before it, then closes the stream.
fn corrupt_chunk(cluster: &Cluster, address: &str, block: &LocatedBlock, chunk_index: usize) {
    flip_byte(cluster, address, block, chunk_index * CHUNK + 7);
}

fn delete_block_file(cluster: &Cluster, address: &str, block: &LocatedBlock) {
    let index = minion_index(cluster, address);
    let file_path = cluster.block_file_path(index, &block.id.to_string());
    std::fs::remove_file(&file_path)
        .unwrap_or_else(|e| panic!("remove {}: {e}", file_path.display()));
}

fn chunk_count(block: &LocatedBlock) -> usize {
    (block.length_bytes as usize).div_ceil(CHUNK)
}

/// A cluster where a killed minion stays listed live (and first) for the
/// whole test, and where minions may report corrupt replicas.
fn cluster_for_failures() -> Cluster {
    let mut cluster = Cluster::start(ClusterOptions {
        stale_after: Some("60s"),
        dead_after: Some("120s"),
        // Reading partly corrupt replicas is the point here: a minion that
        // found a bad chunk would otherwise quarantine the whole replica
        // (tests/scrub.rs of the minion covers that).
        minion_arguments: vec!["--scrub-period", "off"],
        ..ClusterOptions::default()
    });
    // A minion logs the corrupt chunk it refused to send.
    cluster.allow_error("corrupted blk_");
    cluster
}

#[test]
fn reads_whole_files_through_copy_to_and_reads_of_any_size() {
    let cluster = Cluster::start(patient(ClusterOptions::default()));
    for (block_bytes, length_bytes) in [(BLOCK, 2 * BLOCK + 1234), (MIB, 3 * MIB + 1234)] {
        let data = put_file(&cluster, block_bytes, length_bytes, block_bytes as u64);
        let (mut client, _) = connect(&cluster);
        let reader = open(&mut client, "/f");
        assert_eq!(reader.length_bytes(), length_bytes as u64);
        assert_eq!(reader.block_count(), length_bytes.div_ceil(block_bytes));
        for piece_bytes in [0, 1000, CHUNK, MIB] {
            let (output, result) = read_all(&cluster, "/f", piece_bytes);
            result.unwrap_or_else(|e| {
                panic!("blocks of {block_bytes}, pieces of {piece_bytes}: {e}")
            });
            assert_bytes_equal(
                &output,
                &data,
                &format!("blocks of {block_bytes}, read in pieces of {piece_bytes}"),
            );
        }
        client.delete(&path("/f"), false).expect("delete /f");
    }
}

#[test]
fn blocks_on_the_same_minion_share_one_connection() {
    let cluster = Cluster::start(patient(ClusterOptions {
        minions: 1,
        replication: Some(1),
        ..ClusterOptions::default()
    }));
    let data = put_file(&cluster, BLOCK, 3 * BLOCK, 1);
    let (mut client, _) = connect(&cluster);
    let mut reader = open(&mut client, "/f");
    let mut output = Vec::new();
    let mut piece = vec![0u8; 4096];
    let mut sockets = Vec::new();
    loop {
        let n = reader.read(&mut piece).expect("read");
        if n == 0 {
            break;
        }
        output.extend_from_slice(&piece[..n]);
        let connections = connections_to_minions(&cluster);
        assert_eq!(
            connections.len(),
            1,
            "one connection to the minion at offset {}: {connections:?}",
            output.len()
        );
        if !sockets.contains(&connections[0].socket_inode) {
            sockets.push(connections[0].socket_inode);
        }
    }
    assert_bytes_equal(&output, &data, "/f");
    assert_eq!(
        sockets.len(),
        1,
        "three blocks on one minion were read over {} connections",
        sockets.len()
    );
}

/// Damages `/f` with `damage` (given its blocks), then reads it back whole
/// through `copy_to` and through small reads.
fn check_fallback(what: &str, damage: impl FnOnce(&mut Cluster, &[LocatedBlock])) {
    let mut cluster = cluster_for_failures();
    let data = put_file(&cluster, BLOCK, 2 * BLOCK + 1234, 2);
    let blocks = blocks_of_file(&cluster);
    damage(&mut cluster, &blocks);
    assert_eq!(
        blocks_of_file(&cluster)[0].locations,
        blocks[0].locations,
        "{what}: the damaged replica is still the first a reader tries"
    );
    for piece_bytes in [0, 1000] {
        let (output, result) = read_all(&cluster, "/f", piece_bytes);
        result.unwrap_or_else(|e| panic!("{what}, pieces of {piece_bytes}: {e}"));
        assert_bytes_equal(&output, &data, &format!("{what}, pieces of {piece_bytes}"));
    }
}

#[test]
fn falls_back_when_the_first_replica_has_a_corrupt_chunk() {
    check_fallback("first chunk corrupt", |cluster, blocks| {
        for block in blocks {
            corrupt_chunk(cluster, &block.locations[0].address, block, 0);
        }
    });
}

#[test]
fn falls_back_and_resumes_when_the_first_replica_drops_the_stream_mid_block() {
    // The minion sends every chunk before the corrupt last one, then closes.
    check_fallback("stream dropped before the last chunk", |cluster, blocks| {
        for block in blocks {
            let last = chunk_count(block) - 1;
            corrupt_chunk(cluster, &block.locations[0].address, block, last);
        }
    });
}

#[test]
fn falls_back_when_the_first_replica_lost_its_block_file() {
    check_fallback("block file missing", |cluster, blocks| {
        for block in blocks {
            delete_block_file(cluster, &block.locations[0].address, block);
        }
    });
}

#[test]
fn falls_back_when_the_first_replica_is_unreachable() {
    check_fallback("first replica unreachable", |cluster, blocks| {
        let index = minion_index(cluster, &blocks[0].locations[0].address);
        cluster.kill_minion(index);
    });
}

#[test]
fn resumes_on_the_next_replica_where_the_last_one_stopped() {
    let cluster = cluster_for_failures();
    let data = put_file(&cluster, BLOCK, 3 * BLOCK, 3);
    let blocks = blocks_of_file(&cluster);
    // In every block the first replica can send only chunk 0, the second
    // only chunk 1, the third only chunks 2 and 3. A reader that asked a
    // replica for anything but the rest of the block would hit one of its
    // corrupt chunks before getting further, and fail.
    for block in &blocks {
        let [first, second, third] = [0, 1, 2].map(|i| block.locations[i].address.as_str());
        corrupt_chunk(&cluster, first, block, 1);
        corrupt_chunk(&cluster, second, block, 0);
        corrupt_chunk(&cluster, second, block, 2);
        corrupt_chunk(&cluster, third, block, 0);
        corrupt_chunk(&cluster, third, block, 1);
    }
    for piece_bytes in [0, 1000] {
        let (output, result) = read_all(&cluster, "/f", piece_bytes);
        result.unwrap_or_else(|e| panic!("pieces of {piece_bytes}: {e}"));
        assert_bytes_equal(&output, &data, &format!("pieces of {piece_bytes}"));
    }
}

#[test]
fn no_unverified_byte_is_ever_returned() {
    let cluster = cluster_for_failures();
    let data = put_file(&cluster, BLOCK, 2 * BLOCK + 1234, 4);
    let blocks = blocks_of_file(&cluster);
    // Block 0 is whole. Block 1 is missing on its first replica, has a
    // corrupt first chunk on the second and a corrupt checksum array (the
    // minion refuses to open it) on the third.
    let block = &blocks[1];
    delete_block_file(&cluster, &block.locations[0].address, block);
    corrupt_chunk(&cluster, &block.locations[1].address, block, 0);
    flip_byte(
        &cluster,
        &block.locations[2].address,
        block,
        block.length_bytes as usize + 1,
    );
    // The first read meets the three replicas as placed. It reports the
    // corrupt ones, which the master stops listing and their minions
    // quarantine, so later reads try fewer replicas in an order that
    // depends on when those reports land: they are checked more loosely.
    let replica_names: Vec<String> = block
        .locations
        .iter()
        .map(|l| format!("minion {}@{}: ", l.id, l.address))
        .collect();
    let head = format!("/f: block 1 ({}) unreadable: tried ", block.id);
    for piece_bytes in [0, 1000] {
        let (output, result) = read_all(&cluster, "/f", piece_bytes);
        let error = result.expect_err("every replica of block 1 fails");
        assert_bytes_equal(
            &output,
            &data[..BLOCK],
            &format!("pieces of {piece_bytes}: exactly block 0"),
        );
        if piece_bytes == 0 {
            let exact = format!("{head}3 replicas: {}", replica_names[2]);
            assert!(
                error.starts_with(&exact),
                "{error:?} should start {exact:?}"
            );
            assert!(error.contains("corrupted"), "{error:?}");
        } else {
            assert!(error.starts_with(&head), "{error:?} should start {head:?}");
            assert!(
                replica_names
                    .iter()
                    .any(|name| error.contains(name.as_str())),
                "{error:?} names none of {replica_names:?}"
            );
        }
    }
    // And a reader stays failed, with the same error.
    let (mut client, _) = connect(&cluster);
    let mut reader = open(&mut client, "/f");
    let mut sink = Vec::new();
    let first = reader
        .copy_to(&mut sink, "memory")
        .expect_err("block 1 fails");
    let mut piece = [0u8; 10];
    let again = reader.read(&mut piece).expect_err("still failed");
    assert!(first.to_string().starts_with(&head), "{first}");
    assert_eq!(again.to_string(), first.to_string());
}

#[test]
fn a_block_no_live_minion_holds_is_an_error() {
    let mut cluster = Cluster::start(ClusterOptions {
        replication: Some(1),
        stale_after: Some("2s"),
        dead_after: Some("4s"),
        ..ClusterOptions::default()
    });
    put_file(&cluster, BLOCK, 2 * BLOCK + 1234, 5);
    let (mut client, _) = connect(&cluster);
    let first = client.get_blocks(&path("/f")).expect("GetBlocks").blocks[0].clone();
    assert_eq!(first.locations.len(), 1);
    let holder = minion_index(&cluster, &first.locations[0].address);
    cluster.kill_minion(holder);
    // The master leaves dead minions out of the locations.
    wait_for(
        || {
            client
                .get_blocks(&path("/f"))
                .is_ok_and(|blocks| blocks.blocks[0].locations.is_empty())
        },
        LIVE_TIMEOUT,
        "the master to declare the minion with block 0 dead",
    );
    for piece_bytes in [0, 1000] {
        let (output, result) = read_all(&cluster, "/f", piece_bytes);
        assert_eq!(output.len(), 0, "pieces of {piece_bytes}: nothing read");
        assert_eq!(
            result.expect_err("no replica"),
            format!(
                "/f: block 0 ({}) unreadable: no minion holds a replica",
                first.id
            )
        );
    }
}

/// A minion that serves rotten bytes with checksums rewritten to match
/// them (rot plus a buggy or hostile minion; played by a failpoint) passes
/// every check the minion's own numbers allow. A reader must still never
/// hand out one of those bytes: it checks the replica's chunk checksums
/// against the block CRC32C the master recorded before it trusts them,
/// goes to a good replica, and reports the bad one.
#[test]
fn bytes_a_minion_rewrote_with_matching_checksums_never_reach_a_reader() {
    let mut cluster = Cluster::start(ClusterOptions::default());
    // Two of three minions lie about the first chunk of every read; each
    // block keeps a replica that does not.
    let liars = [0, 1];
    for index in liars {
        cluster.stop_minion(index);
        cluster.set_minion_environment(index, "DFS_FAILPOINT", Some("read-serve-rotten:on"));
        cluster.start_minion(index);
    }
    cluster.wait_for_live_minions(3);
    let data = put_file(&cluster, 2 * CHUNK, 24 * 2 * CHUNK + 777, 31);
    let blocks = blocks_of_file(&cluster);
    let lying: Vec<String> = liars
        .iter()
        .map(|&index| cluster.minion_address(index).to_string())
        .collect();
    let first_lies = blocks
        .iter()
        .filter(|block| lying.contains(&block.locations[0].address))
        .count();
    assert!(first_lies > 0, "no block is read from a lying minion first");

    // As users read: `dfs cat` prints exactly the file.
    let output = cluster.dfs(["cat", "/f"]);
    assert!(output.status.success(), "{output:?}");
    assert_bytes_equal(&output.stdout, &data, "dfs cat /f");
    // And the library, in small pieces.
    let (bytes, result) = read_all(&cluster, "/f", 1000);
    assert_eq!(result, Ok(()));
    assert_bytes_equal(&bytes, &data, "pieces of 1000 bytes");
    let master_log = std::fs::read_to_string(cluster.log_path("master")).unwrap_or_default();
    assert!(
        master_log.contains("a client reported a corrupt replica"),
        "the lying replicas were reported"
    );
}
