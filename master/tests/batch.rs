//! `Batch` against a real `dfs-master`: first blocks of a `same_pipeline`
//! batch share one pipeline, a failing request is answered in its place
//! while the others are applied, an acknowledged batch survives a kill -9,
//! a batch too long or holding a lookup is refused whole, and so is one
//! holding garbage or a batch nested as deep as a frame allows (which must
//! not crash the master: entries are decoded one level at a time). The minions
//! exist only on paper (registered, never started): the master accepts
//! commits naming them without contacting them, which is all the namespace
//! needs.

mod support;

use std::collections::{BTreeMap, VecDeque};

use dfs_engine::limits::{BATCH_REQUESTS_MAX, CONTROL_FRAME_BYTES_MAX};
use dfs_engine::msg::{
    AllocatedBlock, BlockCommit, Encoded, ErrorKind, MasterRequest, MasterResponse, MinionId,
    RemoteError,
};
use dfs_engine::rpc::Connection;
use support::{call, list, CallError, Entry, Master, MasterDir};

/// Paper minions must not go stale while a slow test runs.
const ARGS: [&str; 2] = ["--stale-after", "5m"];
const BLOCK_BYTES: u64 = 1024;

/// A master with `minions` paper minions registered, each at an address
/// of its own (a new id at a known address replaces the minion there).
fn start(dir: &MasterDir, minions: u64) -> Master {
    let master = dir.start(&ARGS, None);
    let mut connection = master.connect();
    for id in 1..=minions {
        let response = call(
            &mut connection,
            MasterRequest::Register {
                minion: MinionId(id),
                cluster: None,
                address: format!("127.0.0.1:{}", 40_000 + id),
                capacity_bytes: 1 << 40,
                used_bytes: 0,
                available_bytes: 1 << 40,
            },
        );
        assert!(
            matches!(response, Ok(MasterResponse::Registered { .. })),
            "register minion {id}: {response:?}"
        );
        // Its (empty) block report: only then does it take new blocks.
        let response = call(
            &mut connection,
            MasterRequest::BlockReport {
                minion: MinionId(id),
                blocks: vec![],
                first: true,
                last: true,
            },
        );
        assert!(
            matches!(response, Ok(MasterResponse::Ok)),
            "report of minion {id}: {response:?}"
        );
    }
    master
}

fn open(path: &str, allocate_first_block: bool) -> MasterRequest {
    MasterRequest::OpenWrite {
        path: path.into(),
        replication: Some(3),
        block_bytes: Some(BLOCK_BYTES),
        overwrite: false,
        mode: 0o644,
        allocate_first_block,
    }
}

fn mkdir(path: &str) -> MasterRequest {
    MasterRequest::Mkdir {
        path: path.into(),
        parents: false,
        mode: 0o755,
    }
}

fn encoded(requests: &[MasterRequest]) -> Vec<Encoded> {
    requests
        .iter()
        .map(|request| Encoded::of(request).expect("encode a request"))
        .collect()
}

/// Sends a batch; panics unless it is answered with one entry per request.
fn batch(
    connection: &mut Connection,
    requests: Vec<MasterRequest>,
    same_pipeline: bool,
) -> Vec<MasterResponse> {
    let count = requests.len();
    let response = call(
        connection,
        MasterRequest::Batch {
            requests: encoded(&requests),
            same_pipeline,
        },
    )
    .unwrap_or_else(|e| panic!("batch of {count}: {e:?}"));
    let MasterResponse::Batch(responses) = response else {
        panic!("batch of {count}: expected a batch answer, got {response:?}");
    };
    assert_eq!(responses.len(), count, "one answer per request");
    responses
        .iter()
        .map(|response| response.decode().expect("an answer decodes"))
        .collect()
}

/// Sends a batch of these entries that must be refused as a whole.
fn refused_entries(connection: &mut Connection, requests: Vec<Encoded>) -> RemoteError {
    let request = MasterRequest::Batch {
        requests,
        same_pipeline: false,
    };
    match call(connection, request) {
        Err(CallError::Remote(error)) => error,
        other => panic!("expected the batch to be refused, got {other:?}"),
    }
}

/// Sends a batch that must be refused as a whole.
fn refused(connection: &mut Connection, requests: Vec<MasterRequest>) -> RemoteError {
    refused_entries(connection, encoded(&requests))
}

/// The postcard bytes of a `Batch` holding one entry, a batch holding one
/// entry, ... `levels` batches deep around an empty batch. Built outside
/// in, in time linear in the depth (encoding each level around the last
/// would copy the whole so far every time): each level is the variant
/// index, an entry count of 1 and the entry's length before the level
/// inside it, and `same_pipeline` after it.
fn nested_batch_bytes(levels: usize) -> Vec<u8> {
    let empty = MasterRequest::Batch {
        requests: Vec::new(),
        same_pipeline: false,
    };
    let innermost = postcard::to_stdvec(&empty).expect("encode");
    // The empty batch is its variant index, 0 entries and `false`.
    let variant = &innermost[..innermost.len() - 2];
    let mut bytes: VecDeque<u8> = innermost.iter().copied().collect();
    for _ in 0..levels {
        let length = postcard::to_stdvec(&bytes.len()).expect("encode a length");
        for &byte in variant.iter().chain([1u8].iter()).chain(&length).rev() {
            bytes.push_front(byte);
        }
        bytes.push_back(0);
    }
    bytes.into()
}

/// Stats the root; panics unless the master answers.
fn stat_root(connection: &mut Connection) {
    let answer = call(connection, MasterRequest::Stat { path: "/".into() });
    assert!(
        matches!(answer, Ok(MasterResponse::Status(_))),
        "stat /: {answer:?}"
    );
}

/// The write id and first block of an `OpenWrite` answer.
fn opened(response: &MasterResponse) -> (u64, AllocatedBlock) {
    match response {
        MasterResponse::WriteOpened {
            write,
            first_block: Some(first),
            ..
        } => (*write, first.clone()),
        other => panic!("expected a write with its first block, got {other:?}"),
    }
}

fn commit(block: &AllocatedBlock, length_bytes: u64) -> BlockCommit {
    BlockCommit {
        block: block.block,
        generation: block.generation,
        length_bytes,
        replicas: block.targets.iter().map(|target| target.id).collect(),
        crc32c: 0,
    }
}

fn close(write: u64, last_block: &AllocatedBlock, length_bytes: u64) -> MasterRequest {
    MasterRequest::CloseWrite {
        write,
        last_block: Some(commit(last_block, length_bytes)),
        modified_ns: None,
    }
}

#[test]
fn first_blocks_of_a_same_pipeline_batch_share_one_pipeline() {
    let dir = MasterDir::new();
    // Five minions for pipelines of three: 60 ordered choices each.
    let master = start(&dir, 5);
    let mut connection = master.connect();
    let responses = batch(
        &mut connection,
        vec![open("/a", true), open("/b", true), open("/c", true)],
        true,
    );
    let blocks: Vec<AllocatedBlock> = responses.iter().map(|r| opened(r).1).collect();
    assert_eq!(blocks[0].targets.len(), 3, "{blocks:?}");
    for block in &blocks[1..] {
        assert_eq!(block.targets, blocks[0].targets, "{blocks:?}");
    }
    assert!(
        blocks[0].block != blocks[1].block && blocks[1].block != blocks[2].block,
        "every first block is a block of its own: {blocks:?}"
    );
    master.stop();
    dir.assert_clean_log(&[]);
}

#[test]
fn a_request_that_fails_is_answered_in_its_place_and_the_others_are_applied() {
    let dir = MasterDir::new();
    let master = start(&dir, 3);
    let mut connection = master.connect();
    let made = batch(&mut connection, vec![open("/exists", true)], false);
    let (write, block) = opened(&made[0]);
    let closed = batch(&mut connection, vec![close(write, &block, 10)], false);
    assert!(
        matches!(closed[..], [MasterResponse::Closed { .. }]),
        "{closed:?}"
    );

    let responses = batch(
        &mut connection,
        vec![
            open("/new1", true),
            open("/exists", true),
            open("/new2", true),
        ],
        true,
    );
    let (first, first_block) = opened(&responses[0]);
    match &responses[1] {
        MasterResponse::Error(error) => {
            assert_eq!(error.kind, ErrorKind::AlreadyExists, "{error:?}");
            assert_eq!(error.message, "/exists: file exists");
        }
        other => panic!("/exists: expected AlreadyExists, got {other:?}"),
    }
    let (second, second_block) = opened(&responses[2]);
    let closed = batch(
        &mut connection,
        vec![
            close(first, &first_block, 1),
            close(second, &second_block, 2),
        ],
        false,
    );
    assert!(
        matches!(closed[..], [MasterResponse::Closed { inode: a }, MasterResponse::Closed { inode: b }] if a != b),
        "{closed:?}"
    );
    let expected: BTreeMap<String, Entry> = [("exists", 10), ("new1", 1), ("new2", 2)]
        .into_iter()
        .map(|(name, size_bytes)| {
            let file = Entry::File {
                size_bytes,
                block_count: 1,
            };
            (name.to_string(), file)
        })
        .collect();
    assert_eq!(list(&mut connection, "/"), expected);
    master.stop();
    dir.assert_clean_log(&[]);
}

#[test]
fn files_closed_by_a_batch_survive_a_kill_of_the_master() {
    let dir = MasterDir::new();
    let master = start(&dir, 3);
    let mut connection = master.connect();
    assert_eq!(
        batch(&mut connection, vec![mkdir("/dir")], false),
        vec![MasterResponse::Ok]
    );
    let names = ["two-blocks", "one", "stamped"];
    let responses = batch(
        &mut connection,
        names
            .iter()
            .map(|name| open(&format!("/dir/{name}"), true))
            .collect(),
        true,
    );
    let writes: Vec<(u64, AllocatedBlock)> = responses.iter().map(opened).collect();
    // The first file gets a full first block and a second one.
    let (two_blocks, first_block) = &writes[0];
    let responses = batch(
        &mut connection,
        vec![
            MasterRequest::CommitBlock {
                write: *two_blocks,
                block: first_block.block,
                generation: first_block.generation,
                length_bytes: BLOCK_BYTES,
                replicas: first_block.targets.iter().map(|t| t.id).collect(),
                crc32c: 0,
            },
            MasterRequest::AllocateBlock {
                write: *two_blocks,
                excluded: Vec::new(),
            },
        ],
        false,
    );
    assert_eq!(responses[0], MasterResponse::Ok);
    let second_block = match &responses[1] {
        MasterResponse::BlockAllocated {
            block,
            generation,
            targets,
            token,
        } => AllocatedBlock {
            generation: *generation,
            block: *block,
            targets: targets.clone(),
            token: token.clone(),
        },
        other => panic!("expected a second block, got {other:?}"),
    };
    let modified_ns = 1_500_000_000_123_456_789;
    let (one, one_block) = &writes[1];
    let (stamped, stamped_block) = &writes[2];
    let closed = batch(
        &mut connection,
        vec![
            close(*two_blocks, &second_block, 100),
            close(*one, one_block, 7),
            MasterRequest::CloseWrite {
                write: *stamped,
                last_block: Some(commit(stamped_block, BLOCK_BYTES)),
                modified_ns: Some(modified_ns),
            },
        ],
        false,
    );
    assert_eq!(closed.len(), 3);
    assert!(
        closed
            .iter()
            .all(|answer| matches!(answer, MasterResponse::Closed { .. })),
        "{closed:?}"
    );
    let expected: BTreeMap<String, Entry> = [
        ("two-blocks", BLOCK_BYTES + 100, 2),
        ("one", 7, 1),
        ("stamped", BLOCK_BYTES, 1),
    ]
    .into_iter()
    .map(|(name, size_bytes, block_count)| {
        let file = Entry::File {
            size_bytes,
            block_count,
        };
        (name.to_string(), file)
    })
    .collect();
    assert_eq!(list(&mut connection, "/dir"), expected);

    // Acknowledged means journaled: the restarted master replays it all.
    master.kill();
    let master = dir.start(&ARGS, None);
    let mut connection = master.connect();
    assert_eq!(list(&mut connection, "/dir"), expected);
    let stamped = call(
        &mut connection,
        MasterRequest::Stat {
            path: "/dir/stamped".into(),
        },
    );
    match stamped {
        Ok(MasterResponse::Status(status)) => assert_eq!(status.modified_ns, modified_ns),
        other => panic!("stat /dir/stamped: {other:?}"),
    }
    master.stop();
    dir.assert_clean_log(&[]);
}

#[test]
fn a_batch_too_long_or_holding_a_lookup_is_refused_whole() {
    let dir = MasterDir::new();
    let master = start(&dir, 0);
    let mut connection = master.connect();
    let too_many: Vec<MasterRequest> = (0..=BATCH_REQUESTS_MAX)
        .map(|i| mkdir(&format!("/d{i}")))
        .collect();
    let error = refused(&mut connection, too_many);
    assert_eq!(error.kind, ErrorKind::InvalidArgument, "{error:?}");
    assert_eq!(
        error.message,
        format!(
            "batch of {} requests is over the limit of {BATCH_REQUESTS_MAX}",
            BATCH_REQUESTS_MAX + 1
        )
    );

    let error = refused(
        &mut connection,
        vec![mkdir("/x"), MasterRequest::Stat { path: "/".into() }],
    );
    assert_eq!(error.kind, ErrorKind::InvalidArgument, "{error:?}");
    assert!(
        error.message.starts_with("batch request 1 is Stat: "),
        "{error:?}"
    );

    // Nothing of either batch was applied; a full batch is fine.
    assert_eq!(list(&mut connection, "/"), BTreeMap::new());
    let full: Vec<MasterRequest> = (0..BATCH_REQUESTS_MAX)
        .map(|i| mkdir(&format!("/d{i}")))
        .collect();
    let responses = batch(&mut connection, full, false);
    assert!(responses.iter().all(|r| *r == MasterResponse::Ok));
    assert_eq!(list(&mut connection, "/").len(), BATCH_REQUESTS_MAX);
    master.stop();
    dir.assert_clean_log(&[]);
}

#[test]
fn a_deeply_nested_or_garbage_batch_is_refused_and_the_master_lives_on() {
    const LEVELS: usize = 100_000;
    let dir = MasterDir::new();
    let master = start(&dir, 0);
    let mut connection = master.connect();

    // A batch whose one entry is a batch of a batch ... of an empty batch:
    // 2,000 levels used to overflow the stack of the connection's thread
    // and abort the master.
    let nested = Encoded(nested_batch_bytes(LEVELS));
    assert!(
        nested.0.len() < CONTROL_FRAME_BYTES_MAX as usize / 2,
        "{} bytes must fit a frame",
        nested.0.len()
    );
    let error = refused_entries(&mut connection, vec![nested]);
    assert_eq!(error.kind, ErrorKind::InvalidArgument, "{error:?}");
    assert!(
        error.message.starts_with("batch request 0 is Batch: "),
        "{error:?}"
    );
    stat_root(&mut connection);

    // Garbage in an entry is refused naming the entry, and nothing of the
    // batch is applied.
    let mut requests = encoded(&[mkdir("/a"), mkdir("/b")]);
    requests.insert(1, Encoded(vec![0xff; 9]));
    let error = refused_entries(&mut connection, requests);
    assert_eq!(error.kind, ErrorKind::InvalidArgument, "{error:?}");
    assert!(
        error
            .message
            .starts_with("batch request 1 does not decode: "),
        "{error:?}"
    );
    assert_eq!(list(&mut connection, "/"), BTreeMap::new());

    // The same connection and a new one are served.
    stat_root(&mut connection);
    stat_root(&mut master.connect());
    master.stop();
    dir.assert_clean_log(&[]);
}
