//! The data service, proven through the real protocol: minions run
//! in-process on 127.0.0.1 with temporary data directories (no master), and
//! the tests talk to them with `rpc::Connection` as a client does. Covered:
//! three-replica pipeline writes of every block shape, members that are
//! unreachable, already hold the block, or whose upstream breaks, protocol
//! errors inside a write, reads and their errors (missing block, bad range,
//! corrupt data and footer), garbage connections next to a good write, and
//! the connection limit; batches of small blocks (`WriteBlocks`) with the
//! same cases.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dfs_engine::block_store::BlockStore;
use dfs_engine::limits::CHUNK_BYTES;
use dfs_engine::msg::{
    BatchBlock, BlockId, Credentials, ErrorKind, Generation, MinionAddress, MinionId,
    MinionRequest, MinionResponse, RemoteError, ReplicaId, SealedBlock,
};
use dfs_engine::rpc::Connection;
use dfs_engine::wire::{self, FrameKind};
use dfs_minion::server::{serve, DataService, ServeConfig};
use dfs_testkit::bad_wire::{bad_inputs, send_bad_input};
use dfs_testkit::{random_bytes, wait_for};

const CHUNK: usize = CHUNK_BYTES as usize;
const WAIT: Duration = Duration::from_secs(20);

/// The generation these tests write block `block` with.
fn generation(block: BlockId) -> Generation {
    Generation(block.0 ^ 0x6e6e)
}

fn replica(block: BlockId) -> ReplicaId {
    ReplicaId {
        block,
        generation: generation(block),
    }
}

struct TestMinion {
    dir: tempfile::TempDir,
    /// The same store the service uses, to look at what it holds.
    store: BlockStore,
    service: DataService,
}

impl TestMinion {
    fn start(id: u64) -> TestMinion {
        TestMinion::start_with_limit(id, dfs_engine::limits::CONNECTIONS_MAX)
    }

    fn start_with_limit(id: u64, connections_max: usize) -> TestMinion {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = BlockStore::open(&[dir.path().to_path_buf()]).expect("open store");
        let config = ServeConfig {
            connections_max,
            ..ServeConfig::new("127.0.0.1:0", MinionId(id))
        };
        let service = serve(config, store.clone()).expect("serve");
        TestMinion {
            dir,
            store,
            service,
        }
    }

    fn address(&self) -> MinionAddress {
        self.service.minion_address().clone()
    }

    fn id(&self) -> MinionId {
        self.service.minion_address().id
    }

    fn block_bytes(&self, block: BlockId) -> Vec<u8> {
        let reader = self.store.open_block(replica(block)).expect("open block");
        let mut bytes = Vec::new();
        let mut chunk = Vec::new();
        for index in 0..reader.chunk_count() {
            reader.read_chunk(index, &mut chunk).expect("read chunk");
            bytes.extend_from_slice(&chunk);
        }
        bytes
    }

    /// The file of the sealed replica of `block` on disk (found by its
    /// name's prefix), or where none is.
    fn block_path(&self, block: BlockId) -> PathBuf {
        let subdir = self
            .dir
            .path()
            .join("blocks")
            .join(dfs_engine::block_format::subdir_name(block));
        let prefix = format!("{block}_");
        fs::read_dir(&subdir)
            .ok()
            .and_then(|entries| {
                entries
                    .flatten()
                    .find(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
            })
            .map_or_else(|| subdir.join(block.to_string()), |entry| entry.path())
    }

    fn tmp_is_empty(&self) -> bool {
        is_empty(&self.dir.path().join("tmp"))
    }
}

fn is_empty(dir: &Path) -> bool {
    fs::read_dir(dir).expect("list dir").next().is_none()
}

fn credentials() -> Credentials {
    Credentials {
        user: "tester".into(),
        ..Credentials::default()
    }
}

/// An address where nothing listens.
fn dead_address(id: u64) -> MinionAddress {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    drop(listener);
    MinionAddress {
        id: MinionId(id),
        address,
    }
}

/// Starts a pipeline write on a new connection; returns it and the request id.
fn begin_write(targets: &[MinionAddress], block: BlockId, sync: bool) -> (Connection, u64) {
    let mut connection = Connection::open(&targets[0].address).expect("connect");
    let request_id = connection
        .send(
            &credentials(),
            MinionRequest::WriteBlock {
                block,
                generation: generation(block),
                downstream: targets[1..].to_vec(),
                sync,
            },
        )
        .expect("send WriteBlock");
    (connection, request_id)
}

fn send_chunks(connection: &mut Connection, data: &[u8]) {
    for chunk in data.chunks(CHUNK) {
        connection
            .send_data(chunk, crc32c::crc32c(chunk))
            .expect("send chunk");
    }
}

fn seal(connection: &mut Connection, block: BlockId, length_bytes: u64) -> MinionResponse {
    connection
        .call(
            &credentials(),
            MinionRequest::SealBlock {
                block,
                length_bytes,
            },
        )
        .expect("SealBlock answer")
}

fn write(targets: &[MinionAddress], block: BlockId, data: &[u8], sync: bool) -> MinionResponse {
    let (mut connection, _) = begin_write(targets, block, sync);
    send_chunks(&mut connection, data);
    seal(&mut connection, block, data.len() as u64)
}

fn sealed(response: MinionResponse) -> (Vec<MinionId>, Vec<(MinionId, ErrorKind, String)>) {
    match response {
        MinionResponse::Sealed { stored, failed } => (
            stored,
            failed
                .into_iter()
                .map(|f| (f.minion.id, f.error.kind, f.error.message))
                .collect(),
        ),
        other => panic!("expected Sealed, got {other:?}"),
    }
}

/// What a `ReadBlock` got back.
#[derive(Debug, PartialEq)]
enum ReadOutcome {
    Data {
        block_length_bytes: u64,
        first_offset_bytes: u64,
        bytes: Vec<u8>,
    },
    Refused(RemoteError),
    /// ReadStarted, then the connection ended after this many data bytes.
    Broken {
        bytes_before: usize,
    },
}

fn read_on(
    connection: &mut Connection,
    block: BlockId,
    offset_bytes: u64,
    length_bytes: u64,
) -> ReadOutcome {
    let request = MinionRequest::ReadBlock {
        block,
        generation: generation(block),
        offset_bytes,
        length_bytes,
    };
    let (block_length_bytes, first_offset_bytes, chunk_crcs) = match connection
        .call(&credentials(), request)
        .expect("ReadBlock answer")
    {
        MinionResponse::ReadStarted {
            block_length_bytes,
            first_offset_bytes,
            chunk_crcs,
        } => (block_length_bytes, first_offset_bytes, chunk_crcs),
        MinionResponse::Error(error) => return ReadOutcome::Refused(error),
        other => panic!("unexpected answer {other:?}"),
    };
    let end_bytes = offset_bytes + length_bytes;
    let mut bytes = Vec::new();
    let mut payload = Vec::new();
    // No data frames for an empty range.
    while length_bytes > 0 && first_offset_bytes + (bytes.len() as u64) < end_bytes {
        let header = match wire::read_header(connection.reader()) {
            Ok(Some(header)) => header,
            Ok(None) | Err(_) => {
                return ReadOutcome::Broken {
                    bytes_before: bytes.len(),
                }
            }
        };
        assert_eq!(header.kind, FrameKind::Data);
        wire::read_payload(connection.reader(), &header, &mut payload).expect("data payload");
        // Every chunk is the one its checksum in `ReadStarted` says.
        let index = ((first_offset_bytes + bytes.len() as u64) / CHUNK as u64) as usize;
        assert_eq!(chunk_crcs.get(index), Some(&crc32c::crc32c(&payload)));
        bytes.extend_from_slice(&payload);
    }
    ReadOutcome::Data {
        block_length_bytes,
        first_offset_bytes,
        bytes,
    }
}

fn read(
    address: &MinionAddress,
    block: BlockId,
    offset_bytes: u64,
    length_bytes: u64,
) -> ReadOutcome {
    let mut connection = Connection::open(&address.address).expect("connect");
    read_on(&mut connection, block, offset_bytes, length_bytes)
}

fn three_minions() -> [TestMinion; 3] {
    [
        TestMinion::start(0xa1),
        TestMinion::start(0xa2),
        TestMinion::start(0xa3),
    ]
}

#[test]
fn pipeline_writes_store_every_replica() {
    let minions = three_minions();
    let targets: Vec<MinionAddress> = minions.iter().map(TestMinion::address).collect();
    let ids: Vec<MinionId> = minions.iter().map(TestMinion::id).collect();
    let sizes = [0, 1, CHUNK, CHUNK + 1, 5 * CHUNK + 123];
    for (number, length_bytes) in sizes.into_iter().enumerate() {
        let block = BlockId(0x100 + number as u64);
        let data = random_bytes(number as u64, length_bytes);
        let response = write(&targets, block, &data, number % 2 == 0);
        assert_eq!(
            sealed(response),
            (ids.clone(), vec![]),
            "{length_bytes} bytes"
        );
        for minion in &minions {
            assert_eq!(
                minion.block_bytes(block),
                data,
                "{length_bytes} bytes on {}",
                minion.id()
            );
            assert_eq!(
                read(&minion.address(), block, 0, length_bytes as u64),
                ReadOutcome::Data {
                    block_length_bytes: length_bytes as u64,
                    first_offset_bytes: 0,
                    bytes: data.clone(),
                },
                "read {length_bytes} bytes from {}",
                minion.id()
            );
            assert!(minion.tmp_is_empty());
        }
    }
}

#[test]
fn one_connection_carries_several_writes_and_reads() {
    let minions = three_minions();
    let targets: Vec<MinionAddress> = minions.iter().map(TestMinion::address).collect();
    let mut connection = Connection::open(&targets[0].address).expect("connect");
    for number in 0..3u64 {
        let block = BlockId(0x200 + number);
        let data = random_bytes(number, 2 * CHUNK + 7);
        connection
            .send(
                &credentials(),
                MinionRequest::WriteBlock {
                    block,
                    generation: generation(block),
                    downstream: targets[1..].to_vec(),
                    sync: false,
                },
            )
            .expect("send WriteBlock");
        send_chunks(&mut connection, &data);
        let (stored, failed) = sealed(seal(&mut connection, block, data.len() as u64));
        assert_eq!((stored.len(), failed), (3, vec![]));
        // A range inside the second chunk comes as that whole chunk.
        let outcome = read_on(&mut connection, block, CHUNK as u64 + 5, 10);
        assert_eq!(
            outcome,
            ReadOutcome::Data {
                block_length_bytes: data.len() as u64,
                first_offset_bytes: CHUNK as u64,
                bytes: data[CHUNK..2 * CHUNK].to_vec(),
            }
        );
    }
}

#[test]
fn unreachable_members_are_skipped_and_reported() {
    let minions = three_minions();
    let [first, second, third] = &minions;
    let dead = dead_address(0xdead);
    let data = random_bytes(7, 3 * CHUNK + 1);
    let cases = [
        (
            "second member dead",
            vec![first.address(), dead.clone(), third.address()],
            vec![first.id(), third.id()],
        ),
        (
            "last member dead",
            vec![first.address(), second.address(), dead.clone()],
            vec![first.id(), second.id()],
        ),
    ];
    for (number, (name, targets, expected_stored)) in cases.into_iter().enumerate() {
        let block = BlockId(0x300 + number as u64);
        let (stored, failed) = sealed(write(&targets, block, &data, true));
        assert_eq!(stored, expected_stored, "{name}");
        assert_eq!(failed.len(), 1, "{name}: {failed:?}");
        let (id, kind, message) = &failed[0];
        assert_eq!((*id, *kind), (dead.id, ErrorKind::Io), "{name}");
        assert!(message.contains(&dead.address), "{name}: {message}");
        for minion in &minions {
            if expected_stored.contains(&minion.id()) {
                assert_eq!(minion.block_bytes(block), data, "{name}");
            } else {
                assert!(!minion.store.contains(replica(block)), "{name}");
            }
        }
    }
}

#[test]
fn a_member_that_cannot_store_still_forwards() {
    let minions = three_minions();
    let [first, second, third] = &minions;
    let block = BlockId(0x400);
    // The second member already holds a block with this id.
    let old = b"an older block with the same id";
    let mut writer = second.store.create(replica(block)).expect("create");
    writer.write_chunk(old, crc32c::crc32c(old)).expect("write");
    writer.seal(false).expect("seal");

    let data = random_bytes(4, 2 * CHUNK);
    let targets = [first.address(), second.address(), third.address()];
    let (stored, failed) = sealed(write(&targets, block, &data, false));
    assert_eq!(stored, vec![first.id(), third.id()]);
    assert_eq!(failed.len(), 1, "{failed:?}");
    let (id, kind, message) = &failed[0];
    assert_eq!((*id, *kind), (second.id(), ErrorKind::AlreadyExists));
    assert!(message.contains(&second.address().address), "{message}");
    assert!(message.contains("blk_0000000000000400"), "{message}");
    assert_eq!(first.block_bytes(block), data);
    assert_eq!(third.block_bytes(block), data);
    assert_eq!(second.block_bytes(block), old, "the old block is untouched");
}

/// Waits until no minion has a file of `block` in tmp/ or blocks/.
fn wait_until_gone(minions: &[TestMinion], block: BlockId, what: &str) {
    wait_for(
        || {
            minions
                .iter()
                .all(|m| m.tmp_is_empty() && !m.store.contains(replica(block)))
        },
        WAIT,
        what,
    );
    for minion in minions {
        assert!(!minion.block_path(block).exists());
    }
}

#[test]
fn a_broken_upstream_leaves_nothing_anywhere() {
    let minions = three_minions();
    let targets: Vec<MinionAddress> = minions.iter().map(TestMinion::address).collect();
    let block = BlockId(0x500);
    let (mut connection, _) = begin_write(&targets, block, true);
    send_chunks(&mut connection, &random_bytes(5, 2 * CHUNK));
    connection.flush().expect("flush");
    // Every member has started its file before the client goes away.
    wait_for(
        || minions.iter().all(|m| !m.tmp_is_empty()),
        WAIT,
        "every member to start writing",
    );
    drop(connection);
    wait_until_gone(&minions, block, "every member to abandon the block");
}

#[test]
fn protocol_errors_inside_a_write_abandon_it_everywhere() {
    type Misstep = fn(&mut Connection, BlockId) -> Option<u64>;
    let cases: [(&str, Misstep, &str); 4] = [
        (
            "a chunk over CHUNK_BYTES",
            |connection, _| {
                let chunk = vec![1u8; CHUNK + 1];
                connection
                    .send_data(&chunk, crc32c::crc32c(&chunk))
                    .expect("send");
                None
            },
            "a data frame of 65537 bytes",
        ),
        (
            "a short chunk that is not the last",
            |connection, _| {
                send_chunks(connection, b"short");
                send_chunks(connection, b"more");
                None
            },
            "after a short one",
        ),
        (
            "SealBlock with the wrong length",
            |connection, block| {
                send_chunks(connection, &[3u8; 100]);
                let request = MinionRequest::SealBlock {
                    block,
                    length_bytes: 101,
                };
                Some(connection.send(&credentials(), request).expect("send"))
            },
            "with 101 bytes, but 65636 bytes of",
        ),
        (
            "a second WriteBlock",
            |connection, block| {
                let request = MinionRequest::WriteBlock {
                    block,
                    generation: generation(block),
                    downstream: vec![],
                    sync: false,
                };
                Some(connection.send(&credentials(), request).expect("send"))
            },
            "expected data or SealBlock",
        ),
    ];
    let minions = three_minions();
    let targets: Vec<MinionAddress> = minions.iter().map(TestMinion::address).collect();
    for (number, (name, misstep, expected)) in cases.into_iter().enumerate() {
        let block = BlockId(0x600 + number as u64);
        let (mut connection, write_id) = begin_write(&targets, block, false);
        send_chunks(&mut connection, &random_bytes(6, CHUNK));
        let answer_id = misstep(&mut connection, block).unwrap_or(write_id);
        match connection.receive::<MinionResponse>(answer_id) {
            Ok(MinionResponse::Error(error)) => {
                assert_eq!(error.kind, ErrorKind::Protocol, "{name}");
                assert!(
                    error.message.contains(expected),
                    "{name}: {}",
                    error.message
                );
            }
            other => panic!("{name}: expected a protocol error, got {other:?}"),
        }
        wait_until_gone(&minions, block, name);
    }
}

#[test]
fn reads_report_missing_blocks_and_bad_ranges() {
    let minion = TestMinion::start(0xb1);
    let address = minion.address();
    let block = BlockId(0x700);
    let data = random_bytes(8, 2 * CHUNK + 10);
    let (stored, _) = sealed(write(std::slice::from_ref(&address), block, &data, false));
    assert_eq!(stored, vec![minion.id()]);
    let length = data.len() as u64;

    let refused = |outcome: ReadOutcome| match outcome {
        ReadOutcome::Refused(error) => (error.kind, error.message),
        other => panic!("expected a refusal, got {other:?}"),
    };
    let (kind, message) = refused(read(&address, BlockId(0x701), 0, 1));
    assert_eq!(kind, ErrorKind::NotFound);
    assert!(
        message.starts_with("minion 00000000000000b1@")
            && message.ends_with(": open blk_0000000000000701: no such block"),
        "{message}"
    );
    for (offset, count) in [(0, length + 1), (length, 1), (length - 1, 2), (u64::MAX, 2)] {
        let (kind, message) = refused(read(&address, block, offset, count));
        assert_eq!(
            kind,
            ErrorKind::InvalidArgument,
            "{offset}+{count}: {message}"
        );
        assert!(message.contains("past its end"), "{message}");
    }

    // Edges: nothing at the end, the last byte, everything; the connection
    // serves the next request after each.
    let mut connection = Connection::open(&address.address).expect("connect");
    let cases = [
        (length, 0, 2 * CHUNK as u64, vec![]),
        (0, 0, 0, vec![]),
        (length - 1, 1, 2 * CHUNK as u64, data[2 * CHUNK..].to_vec()),
        (CHUNK as u64 - 1, 2, 0, data[..2 * CHUNK].to_vec()),
        (0, length, 0, data.clone()),
    ];
    for (offset, count, first_offset, bytes) in cases {
        assert_eq!(
            read_on(&mut connection, block, offset, count),
            ReadOutcome::Data {
                block_length_bytes: length,
                first_offset_bytes: first_offset,
                bytes,
            },
            "{offset}+{count}"
        );
    }
}

#[test]
fn corrupt_blocks_are_refused_or_cut_short() {
    let minion = TestMinion::start(0xc1);
    let address = minion.address();
    let data = random_bytes(9, 3 * CHUNK);
    let data_block = BlockId(0x800);
    let footer_block = BlockId(0x801);
    for block in [data_block, footer_block] {
        sealed(write(std::slice::from_ref(&address), block, &data, false));
    }

    // A flipped byte in the second chunk: the first arrives, then the end.
    let path = minion.block_path(data_block);
    let mut bytes = fs::read(&path).expect("read block file");
    bytes[CHUNK + 1] ^= 0x01;
    fs::write(&path, &bytes).expect("write block file");
    assert_eq!(
        read(&address, data_block, 0, data.len() as u64),
        ReadOutcome::Broken {
            bytes_before: CHUNK
        }
    );

    // A damaged footer: refused before any data.
    let path = minion.block_path(footer_block);
    let mut bytes = fs::read(&path).expect("read block file");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    fs::write(&path, &bytes).expect("write block file");
    match read(&address, footer_block, 0, 1) {
        ReadOutcome::Refused(error) => {
            assert_eq!(error.kind, ErrorKind::Corrupted, "{}", error.message);
            assert!(
                error.message.contains("blk_0000000000000801"),
                "{}",
                error.message
            );
        }
        other => panic!("expected Corrupted, got {other:?}"),
    }
    // The minion still serves.
    let (kind, _) = match read(&address, BlockId(0x802), 0, 0) {
        ReadOutcome::Refused(error) => (error.kind, error.message),
        other => panic!("expected NotFound, got {other:?}"),
    };
    assert_eq!(kind, ErrorKind::NotFound);
}

#[test]
fn garbage_connections_do_not_disturb_a_good_write() {
    let minions = three_minions();
    let targets: Vec<MinionAddress> = minions.iter().map(TestMinion::address).collect();
    let block = BlockId(0x900);
    let data = random_bytes(10, 6 * CHUNK + 99);
    let (mut connection, _) = begin_write(&targets, block, false);
    send_chunks(&mut connection, &data[..3 * CHUNK]);
    connection.flush().expect("flush");
    for minion in &minions[..2] {
        for input in bad_inputs() {
            send_bad_input(&minion.address().address, &input);
        }
    }
    send_chunks(&mut connection, &data[3 * CHUNK..]);
    let (stored, failed) = sealed(seal(&mut connection, block, data.len() as u64));
    assert_eq!((stored.len(), failed), (3, vec![]));
    for minion in &minions {
        assert_eq!(minion.block_bytes(block), data);
    }
}

#[test]
fn connections_over_the_limit_are_told_busy() {
    let minion = TestMinion::start_with_limit(0xd1, 1);
    let address = minion.address();
    let mut held = Connection::open(&address.address).expect("connect");
    // The held connection is being served.
    assert!(matches!(
        read_on(&mut held, BlockId(1), 0, 0),
        ReadOutcome::Refused(RemoteError {
            kind: ErrorKind::NotFound,
            ..
        })
    ));
    match read(&address, BlockId(1), 0, 0) {
        ReadOutcome::Refused(error) => {
            assert_eq!(error.kind, ErrorKind::Busy, "{}", error.message);
            assert!(
                error.message.contains("limit of 1 connections"),
                "{}",
                error.message
            );
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    drop(held);
    wait_for(
        || {
            matches!(
                read(&address, BlockId(1), 0, 0),
                ReadOutcome::Refused(RemoteError {
                    kind: ErrorKind::NotFound,
                    ..
                })
            )
        },
        WAIT,
        "the freed slot to serve a new connection",
    );
}

#[test]
fn oversized_pipelines_are_refused() {
    let minion = TestMinion::start(0xe1);
    let downstream: Vec<MinionAddress> = (0..u64::from(dfs_engine::limits::REPLICATION_MAX))
        .map(dead_address)
        .collect();
    let mut connection = Connection::open(&minion.address().address).expect("connect");
    let request = MinionRequest::WriteBlock {
        block: BlockId(0xa00),
        generation: generation(BlockId(0xa00)),
        downstream,
        sync: false,
    };
    match connection.call::<_, MinionResponse>(&credentials(), request) {
        Ok(MinionResponse::Error(error)) => {
            assert_eq!(error.kind, ErrorKind::InvalidArgument, "{}", error.message);
            assert!(
                error.message.contains("over the limit"),
                "{}",
                error.message
            );
        }
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    assert!(minion.tmp_is_empty() && !minion.store.contains(replica(BlockId(0xa00))));
}

/// The `WriteBlocks` request of `blocks` (id, bytes) for the pipeline `targets`.
fn write_blocks(
    targets: &[MinionAddress],
    blocks: &[(BlockId, Vec<u8>)],
    sync: bool,
) -> MinionRequest {
    MinionRequest::WriteBlocks {
        blocks: blocks
            .iter()
            .map(|(block, data)| BatchBlock {
                block: *block,
                generation: generation(*block),
                length_bytes: data.len() as u64,
                token: Vec::new(),
            })
            .collect(),
        downstream: targets[1..].to_vec(),
        sync,
    }
}

/// Sends a `WriteBlocks` batch of `blocks` (id, bytes) to `targets[0]` and
/// returns the connection and the request id; `frames` of them are sent.
fn send_batch(
    targets: &[MinionAddress],
    blocks: &[(BlockId, Vec<u8>)],
    frames: usize,
    sync: bool,
) -> (Connection, u64) {
    let mut connection = Connection::open(&targets[0].address).expect("connect");
    let request = write_blocks(targets, blocks, sync);
    let request_id = connection
        .send(&credentials(), request)
        .expect("send WriteBlocks");
    for (_, data) in blocks.iter().take(frames) {
        connection
            .send_data(data, crc32c::crc32c(data))
            .expect("send data");
    }
    connection.flush().expect("flush");
    (connection, request_id)
}

fn batch_sealed(response: MinionResponse) -> Vec<SealedBlock> {
    match response {
        MinionResponse::BatchSealed { blocks } => blocks,
        other => panic!("expected BatchSealed, got {other:?}"),
    }
}

fn small_blocks(first_id: u64, count: usize) -> Vec<(BlockId, Vec<u8>)> {
    (0..count)
        .map(|number| {
            let length = [1, 100, 4096, CHUNK][number % 4];
            (
                BlockId(first_id + number as u64),
                random_bytes(first_id + number as u64, length),
            )
        })
        .collect()
}

#[test]
fn batches_of_small_blocks_are_stored_by_every_member() {
    let minions = three_minions();
    let targets: Vec<MinionAddress> = minions.iter().map(TestMinion::address).collect();
    let ids: Vec<MinionId> = minions.iter().map(TestMinion::id).collect();
    // Durable and not; the connection carries a second batch after the first.
    let batches = [small_blocks(0x700, 24), small_blocks(0x780, 3)];
    let mut connection = None;
    for (number, blocks) in batches.iter().enumerate() {
        let request_id = match connection.as_mut() {
            None => {
                let (opened, request_id) = send_batch(&targets, blocks, blocks.len(), true);
                connection = Some(opened);
                request_id
            }
            Some(open) => {
                let request = write_blocks(&targets, blocks, false);
                let request_id = open.send(&credentials(), request).expect("send");
                for (_, data) in blocks {
                    open.send_data(data, crc32c::crc32c(data)).expect("data");
                }
                open.flush().expect("flush");
                request_id
            }
        };
        let open = connection.as_mut().expect("connection");
        let sealed = batch_sealed(open.receive(request_id).expect("answer"));
        assert_eq!(sealed.len(), blocks.len(), "batch {number}");
        for (answer, (block, data)) in sealed.iter().zip(blocks) {
            assert_eq!(answer.block, *block);
            assert_eq!(answer.stored, ids, "batch {number}, {block}");
            assert!(answer.failed.is_empty(), "{:?}", answer.failed);
            for minion in &minions {
                assert_eq!(
                    &minion.block_bytes(*block),
                    data,
                    "{block} on {}",
                    minion.id()
                );
            }
        }
    }
    for minion in &minions {
        assert!(minion.tmp_is_empty());
    }
}

#[test]
fn a_batch_fails_only_the_blocks_a_member_cannot_store() {
    let minions = three_minions();
    let [first, second, third] = &minions;
    let blocks = small_blocks(0x800, 5);
    // The second member already holds a block with the id of the third one.
    let (taken, _) = &blocks[2];
    let old = b"an older block with the same id";
    let mut writer = second.store.create(replica(*taken)).expect("create");
    writer.write_chunk(old, crc32c::crc32c(old)).expect("write");
    writer.seal(false).expect("seal");

    let targets = [first.address(), second.address(), third.address()];
    let (mut connection, request_id) = send_batch(&targets, &blocks, blocks.len(), true);
    let sealed = batch_sealed(connection.receive(request_id).expect("answer"));
    for (answer, (block, data)) in sealed.iter().zip(&blocks) {
        if block == taken {
            assert_eq!(answer.stored, vec![first.id(), third.id()]);
            assert_eq!(answer.failed.len(), 1, "{:?}", answer.failed);
            assert_eq!(answer.failed[0].minion.id, second.id());
            assert_eq!(answer.failed[0].error.kind, ErrorKind::AlreadyExists);
            assert_eq!(
                second.block_bytes(*block),
                old,
                "the old block is untouched"
            );
        } else {
            assert_eq!(answer.stored, vec![first.id(), second.id(), third.id()]);
            assert!(answer.failed.is_empty(), "{:?}", answer.failed);
            assert_eq!(&second.block_bytes(*block), data);
        }
        assert_eq!(&third.block_bytes(*block), data);
    }
}

#[test]
fn an_unreachable_member_is_named_for_every_block_of_a_batch() {
    let minions = three_minions();
    let [first, _, third] = &minions;
    let dead = dead_address(0xdead);
    let blocks = small_blocks(0x900, 4);
    let targets = [first.address(), dead.clone(), third.address()];
    let (mut connection, request_id) = send_batch(&targets, &blocks, blocks.len(), false);
    let sealed = batch_sealed(connection.receive(request_id).expect("answer"));
    for (answer, (block, data)) in sealed.iter().zip(&blocks) {
        assert_eq!(answer.stored, vec![first.id(), third.id()], "{block}");
        assert_eq!(answer.failed.len(), 1, "{:?}", answer.failed);
        assert_eq!(answer.failed[0].minion.id, dead.id);
        assert!(answer.failed[0].error.message.contains(&dead.address));
        assert_eq!(&third.block_bytes(*block), data);
    }
}

#[test]
fn a_batch_cut_short_or_malformed_leaves_nothing_anywhere() {
    let minions = three_minions();
    let targets: Vec<MinionAddress> = minions.iter().map(TestMinion::address).collect();
    // The upstream goes away after two of four frames.
    let blocks = small_blocks(0xa00, 4);
    let (connection, _) = send_batch(&targets, &blocks, 2, false);
    drop(connection);
    for (block, _) in &blocks {
        wait_until_gone(&minions, *block, "a batch cut short");
    }
    // A frame whose length is not the announced one.
    let mut blocks = small_blocks(0xa10, 3);
    let (_, announced) = &mut blocks[1];
    let sent = announced.clone();
    announced.push(0);
    let mut connection = Connection::open(&targets[0].address).expect("connect");
    let request = write_blocks(&targets, &blocks, false);
    let request_id = connection.send(&credentials(), request).expect("send");
    for (number, (_, data)) in blocks.iter().enumerate() {
        let data = if number == 1 { &sent } else { data };
        connection
            .send_data(data, crc32c::crc32c(data))
            .expect("data");
    }
    // Pad so that the announced byte count arrives.
    connection
        .send_data(&[0u8; 1], crc32c::crc32c(&[0u8; 1]))
        .expect("pad");
    match connection.receive::<MinionResponse>(request_id) {
        Ok(MinionResponse::Error(error)) => {
            assert_eq!(error.kind, ErrorKind::Protocol);
            assert!(
                error.message.contains("announced with"),
                "{}",
                error.message
            );
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
    for (block, _) in &blocks {
        wait_until_gone(&minions, *block, "a malformed batch");
    }
}

#[test]
fn batches_over_the_limits_are_refused() {
    let minion = TestMinion::start(0xb1);
    let too_big = vec![(BlockId(0xb00), vec![1u8; CHUNK + 1])];
    let (mut connection, request_id) = send_batch(&[minion.address()], &too_big, 0, false);
    match connection.receive::<MinionResponse>(request_id) {
        Ok(MinionResponse::Error(error)) => {
            assert_eq!(error.kind, ErrorKind::InvalidArgument);
            assert!(
                error.message.contains("batched blocks have 1 to"),
                "{}",
                error.message
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(!minion.store.contains(replica(BlockId(0xb00))));
}
