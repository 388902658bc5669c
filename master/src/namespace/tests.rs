use super::*;

fn mkdir(path: &str, parents: bool) -> Op {
    Op::Mkdir {
        path: path.into(),
        parents,
        mode: 0o755,
        owner: "ana".into(),
        group: "staff".into(),
        time_ms: 10,
    }
}

/// The generation these tests allocate `block` with: never 0.
fn generation_of(block: BlockId) -> Generation {
    Generation(block.0 * 1000 + 7)
}

fn replica(block: BlockId) -> ReplicaId {
    ReplicaId {
        block,
        generation: generation_of(block),
    }
}

fn allocate(write: WriteId, block: BlockId) -> Op {
    Op::AllocateBlockStamped {
        write,
        block,
        generation: generation_of(block),
    }
}

fn path(text: &str) -> DfsPath {
    DfsPath::parse(text).expect("valid path")
}

/// Opens a write of `at` (blocks of 4 bytes, replication 3) as `owner`
/// with `mode` and commits blocks of `lengths` to it.
fn open_with_blocks(
    ns: &mut Namespace,
    at: &str,
    lengths: &[u64],
    overwrite: bool,
    (owner, mode): (&str, u32),
) -> Result<WriteId, RemoteError> {
    let write = ns.next_write_id();
    ns.apply(&Op::OpenWrite {
        write,
        path: at.into(),
        replication: 3,
        block_bytes: 4,
        overwrite,
        mode,
        owner: owner.into(),
        group: "staff".into(),
        time_ms: 20,
    })?;
    commit_blocks(ns, write, lengths)?;
    Ok(write)
}

/// Allocates and commits blocks of `lengths` to the open `write`.
fn commit_blocks(ns: &mut Namespace, write: WriteId, lengths: &[u64]) -> Result<(), RemoteError> {
    for &length_bytes in lengths {
        let block = ns.next_block_id();
        ns.apply(&allocate(write, block))?;
        ns.apply(&Op::CommitBlock {
            write,
            block,
            length_bytes,
            crc32c: 0,
        })?;
    }
    Ok(())
}

/// Writes a file of `lengths` blocks through the ops a client causes.
fn write_file(
    ns: &mut Namespace,
    at: &str,
    lengths: &[u64],
    overwrite: bool,
) -> Result<Applied, RemoteError> {
    let write = open_with_blocks(ns, at, lengths, overwrite, ("ana", 0o644))?;
    ns.apply(&Op::CloseWrite { write, time_ms: 30 })
}

/// The namespace keeps its invariants, and what it derives (indexes, link
/// counts) is what a rebuild from its inodes alone gives, as after a load.
fn assert_rebuilds(ns: &Namespace) {
    ns.check_invariants().expect("invariants");
    let mut rebuilt = ns.clone();
    rebuilt.rebuild_derived();
    assert_eq!(&rebuilt, ns);
}

fn names(ns: &Namespace, dir: &str) -> Vec<String> {
    let (entries, more) = ns.list(&path(dir), None, 1000).expect("list");
    assert!(!more);
    entries.into_iter().map(|e| e.name).collect()
}

fn check_error(result: Result<Applied, RemoteError>, kind: ErrorKind, message: &str) {
    let error = result.expect_err("must fail");
    assert_eq!(error.kind, kind, "{error}");
    assert!(
        error.message.contains(message),
        "{} lacks {message}",
        error.message
    );
}

#[test]
fn mkdir_with_and_without_parents() {
    let mut ns = Namespace::new(0);
    ns.apply(&mkdir("/a", false)).expect("mkdir /a");
    check_error(
        ns.apply(&mkdir("/a", false)),
        ErrorKind::AlreadyExists,
        "/a: file exists",
    );
    ns.apply(&mkdir("/a", true))
        .expect("mkdir -p existing is fine");
    check_error(
        ns.apply(&mkdir("/x/y", false)),
        ErrorKind::NotFound,
        "/x: no such file",
    );
    ns.apply(&mkdir("/x/y/z", true)).expect("mkdir -p");
    assert_eq!(names(&ns, "/"), ["a", "x"]);
    assert_eq!(names(&ns, "/x/y"), ["z"]);
    let status = ns.status(&path("/x/y")).expect("stat");
    assert_eq!(
        (status.kind, status.owner.as_str(), status.mode),
        (EntryKind::Directory, "ana", 0o755)
    );
    ns.check_invariants().expect("invariants");
}

#[test]
fn files_are_invisible_until_closed_and_replace_atomically() {
    let mut ns = Namespace::new(0);
    let write = ns.next_write_id();
    ns.apply(&Op::OpenWrite {
        write,
        path: "/f".into(),
        replication: 2,
        block_bytes: 4,
        overwrite: false,
        mode: 0o644,
        owner: "ana".into(),
        group: "staff".into(),
        time_ms: 1,
    })
    .expect("open");
    let block = ns.next_block_id();
    ns.apply(&allocate(write, block)).expect("allocate");
    ns.apply(&Op::CommitBlock {
        write,
        block,
        length_bytes: 4,
        crc32c: 0,
    })
    .expect("commit");
    assert!(ns.status(&path("/f")).is_err(), "not visible before close");
    ns.apply(&Op::CloseWrite { write, time_ms: 2 })
        .expect("close");
    let status = ns.status(&path("/f")).expect("visible");
    assert_eq!(
        (status.size_bytes, status.block_count, status.replication),
        (4, 1, 2)
    );

    check_error(
        write_file(&mut ns, "/f", &[1], false),
        ErrorKind::AlreadyExists,
        "/f: file exists",
    );
    let applied = write_file(&mut ns, "/f", &[4, 4, 2], true).expect("overwrite");
    assert_eq!(
        applied.freed_blocks,
        vec![replica(block)],
        "old version's blocks are freed"
    );
    assert_eq!(ns.status(&path("/f")).expect("stat").size_bytes, 10);
    ns.check_invariants().expect("invariants");
}

#[test]
fn only_the_last_block_may_be_short() {
    let mut ns = Namespace::new(0);
    check_error(
        write_file(&mut ns, "/f", &[2, 4], false),
        ErrorKind::InvalidArgument,
        "follows a short block",
    );
    check_error(
        write_file(&mut ns, "/g", &[5], false),
        ErrorKind::InvalidArgument,
        "outside 1..=4",
    );
}

#[test]
fn abort_frees_blocks_and_leaves_nothing() {
    let mut ns = Namespace::new(0);
    let write = ns.next_write_id();
    ns.apply(&Op::OpenWrite {
        write,
        path: "/f".into(),
        replication: 1,
        block_bytes: 4,
        overwrite: false,
        mode: 0o644,
        owner: "a".into(),
        group: "a".into(),
        time_ms: 1,
    })
    .expect("open");
    let first = ns.next_block_id();
    ns.apply(&allocate(write, first)).expect("allocate");
    ns.apply(&Op::CommitBlock {
        write,
        block: first,
        length_bytes: 4,
        crc32c: 0,
    })
    .expect("commit");
    let second = ns.next_block_id();
    ns.apply(&allocate(write, second)).expect("allocate");
    let applied = ns.apply(&Op::AbortWrite { write }).expect("abort");
    assert_eq!(applied.freed_blocks, vec![replica(first), replica(second)]);
    assert!(ns.status(&path("/f")).is_err());
    assert_eq!(ns.open_writes().count(), 0);
}

#[test]
fn a_close_frees_the_blocks_allocated_and_never_committed() {
    let mut ns = Namespace::new(0);
    let write = ns.next_write_id();
    ns.apply(&Op::OpenWrite {
        write,
        path: "/f".into(),
        replication: 1,
        block_bytes: 4,
        overwrite: false,
        mode: 0o644,
        owner: "a".into(),
        group: "a".into(),
        time_ms: 1,
    })
    .expect("open");
    let committed = ns.next_block_id();
    ns.apply(&allocate(write, committed)).expect("allocate");
    ns.apply(&Op::CommitBlock {
        write,
        block: committed,
        length_bytes: 3,
        crc32c: 0,
    })
    .expect("commit");
    // An allocation whose answer the client lost, then the one it used.
    let lost = ns.next_block_id();
    ns.apply(&allocate(write, lost)).expect("allocate");
    let applied = ns
        .apply(&Op::CloseWrite { write, time_ms: 2 })
        .expect("close");
    assert_eq!(applied.freed_blocks, vec![replica(lost)]);
    assert!(!ns.is_block_referenced(lost));
    let (_, blocks) = ns.file_blocks(&path("/f")).expect("the file");
    assert_eq!(blocks.len(), 1);
    ns.check_invariants().expect("invariants");
}

#[test]
fn delete_rules() {
    let mut ns = Namespace::new(0);
    ns.apply(&mkdir("/d/e", true)).expect("mkdir");
    write_file(&mut ns, "/d/e/f", &[4, 1], false).expect("write");
    check_error(
        ns.apply(&Op::Delete {
            path: "/d".into(),
            recursive: false,
            time_ms: 5,
        }),
        ErrorKind::DirectoryNotEmpty,
        "/d: directory not empty",
    );
    check_error(
        ns.apply(&Op::Delete {
            path: "/".into(),
            recursive: true,
            time_ms: 5,
        }),
        ErrorKind::InvalidArgument,
        "root",
    );
    check_error(
        ns.apply(&Op::Delete {
            path: "/nope".into(),
            recursive: false,
            time_ms: 5,
        }),
        ErrorKind::NotFound,
        "/nope: no such file or directory",
    );
    let applied = ns
        .apply(&Op::Delete {
            path: "/d".into(),
            recursive: true,
            time_ms: 5,
        })
        .expect("rm -r");
    assert_eq!(applied.freed_blocks.len(), 2);
    assert!(names(&ns, "/").is_empty());
    ns.check_invariants().expect("invariants");
}

#[test]
fn rename_rules() {
    let mut ns = Namespace::new(0);
    ns.apply(&mkdir("/a/b", true)).expect("mkdir");
    ns.apply(&mkdir("/empty", true)).expect("mkdir");
    write_file(&mut ns, "/f", &[1], false).expect("write f");
    write_file(&mut ns, "/g", &[2], false).expect("write g");
    let rename = |source: &str, target: &str| Op::Rename {
        source: source.into(),
        target: target.into(),
        time_ms: 9,
    };
    check_error(
        ns.apply(&rename("/a", "/a/b/c")),
        ErrorKind::InvalidArgument,
        "into itself",
    );
    check_error(
        ns.apply(&rename("/", "/x")),
        ErrorKind::InvalidArgument,
        "root",
    );
    check_error(
        ns.apply(&rename("/f", "/a")),
        ErrorKind::IsADirectory,
        "/a: is a directory",
    );
    check_error(
        ns.apply(&rename("/a", "/f")),
        ErrorKind::NotADirectory,
        "/f: not a directory",
    );
    check_error(
        ns.apply(&rename("/nope", "/x")),
        ErrorKind::NotFound,
        "/nope",
    );
    check_error(
        ns.apply(&rename("/f", "/nope/x")),
        ErrorKind::NotFound,
        "/nope",
    );
    // A file replaces a file and frees its blocks.
    let applied = ns.apply(&rename("/f", "/g")).expect("mv f g");
    assert_eq!(applied.freed_blocks.len(), 1);
    assert_eq!(ns.status(&path("/g")).expect("g").size_bytes, 1);
    // A directory replaces an empty directory and carries its subtree.
    ns.apply(&rename("/a", "/empty")).expect("mv a empty");
    assert_eq!(names(&ns, "/"), ["empty", "g"]);
    assert_eq!(names(&ns, "/empty"), ["b"]);
    ns.apply(&rename("/g", "/empty/b/g2")).expect("into subdir");
    assert_eq!(names(&ns, "/empty/b"), ["g2"]);
    ns.check_invariants().expect("invariants");
}

#[test]
fn listing_pages_in_name_order() {
    let mut ns = Namespace::new(0);
    for name in ["c", "a", "b", "d"] {
        ns.apply(&mkdir(&format!("/{name}"), false)).expect("mkdir");
    }
    let (page, more) = ns.list(&path("/"), None, 3).expect("list");
    assert_eq!(
        page.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    assert!(more);
    let (page, more) = ns.list(&path("/"), Some("c"), 3).expect("list");
    assert_eq!(
        page.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        ["d"]
    );
    assert!(!more);
}

#[test]
fn bad_parameters_are_refused() {
    for (replication, block_bytes, message) in [
        (0, 4, "replication 0"),
        (17, 4, "replication 17"),
        (3, 0, "block size 0"),
        (3, BLOCK_BYTES_MAX + 1, "block size"),
    ] {
        let error = check_file_parameters(replication, block_bytes).expect_err("refused");
        assert!(error.message.contains(message), "{}", error.message);
    }
}

#[test]
fn replaying_the_same_ops_rebuilds_the_same_state() {
    let mut ns = Namespace::new(0);
    let mut log = Vec::new();
    let mut record = |ns: &mut Namespace, op: Op| {
        if ns.apply(&op).is_ok() {
            log.push(op);
        }
    };
    record(&mut ns, mkdir("/a/b", true));
    let write = ns.next_write_id();
    record(
        &mut ns,
        Op::OpenWrite {
            write,
            path: "/a/f".into(),
            replication: 3,
            block_bytes: 8,
            overwrite: false,
            mode: 0o600,
            owner: "u".into(),
            group: "g".into(),
            time_ms: 3,
        },
    );
    let block = ns.next_block_id();
    record(&mut ns, allocate(write, block));
    record(
        &mut ns,
        Op::CommitBlock {
            write,
            block,
            length_bytes: 5,
            crc32c: 0,
        },
    );
    record(&mut ns, Op::CloseWrite { write, time_ms: 4 });
    record(
        &mut ns,
        Op::Rename {
            source: "/a/f".into(),
            target: "/a/b/f".into(),
            time_ms: 5,
        },
    );
    let mut replayed = Namespace::new(0);
    for op in &log {
        replayed.apply(op).expect("replay");
    }
    assert_eq!(replayed, ns);
}

#[test]
fn decommission_intent_is_a_logged_set() {
    let mut ns = Namespace::new(0);
    let steps = [
        (
            Op::Decommission {
                minion: MinionId(7),
            },
            &[7u64][..],
        ),
        // Twice: no change, no error (a retried request).
        (
            Op::Decommission {
                minion: MinionId(7),
            },
            &[7],
        ),
        (
            Op::Decommission {
                minion: MinionId(3),
            },
            &[3, 7],
        ),
        (
            Op::Recommission {
                minion: MinionId(7),
            },
            &[3],
        ),
        (
            Op::Recommission {
                minion: MinionId(9),
            },
            &[3],
        ),
    ];
    for (op, want) in steps {
        assert_eq!(ns.apply(&op).expect("applies"), Applied::default());
        let got: Vec<u64> = ns.draining().iter().map(|m| m.0).collect();
        assert_eq!(got, want, "after {op:?}");
    }
    assert!(ns.is_draining(MinionId(3)));
    assert!(!ns.is_draining(MinionId(7)));
    // The set is part of the state a replay rebuilds and a checkpoint keeps.
    let mut other = Namespace::new(0);
    other
        .apply(&Op::Decommission {
            minion: MinionId(3),
        })
        .expect("applies");
    assert_eq!(other, ns);
    assert_ne!(Namespace::new(0), ns);
}

#[test]
fn appended_ops_keep_the_indexes_of_older_ones() {
    // Postcard writes the variant index first: journal records of older
    // versions must decode to the same ops.
    for (op, index) in [
        (Op::AbortWrite { write: 1 }, 8u8),
        (
            Op::Decommission {
                minion: MinionId(1),
            },
            10,
        ),
        (
            Op::Recommission {
                minion: MinionId(1),
            },
            11,
        ),
        (allocate(1, BlockId(2)), 12),
        (
            Op::SkipIds {
                block_ids: 1,
                write_ids: 1,
            },
            13,
        ),
    ] {
        let bytes = encode_op(&op).expect("encode");
        assert_eq!(bytes[0], index, "{op:?}");
    }
    // The allocation of journals before block generations, byte for byte.
    let legacy = Op::AllocateBlock {
        write: 1,
        block: BlockId(2),
    };
    assert_eq!(encode_op(&legacy).expect("encode"), [4, 1, 2]);
    assert_eq!(decode_op(&[4, 1, 2]).expect("decode"), legacy);
    let stamped = Op::AllocateBlockStamped {
        write: 1,
        block: BlockId(2),
        generation: Generation(3),
    };
    assert_eq!(encode_op(&stamped).expect("encode"), [12, 1, 2, 3]);
}

#[test]
fn allocations_of_old_journals_replay_with_generation_0() {
    let mut ns = Namespace::new(0);
    write_file(&mut ns, "/new", &[4], false).expect("a file of this version");
    let write = ns.next_write_id();
    ns.apply(&Op::OpenWrite {
        write,
        path: "/old".into(),
        replication: 1,
        block_bytes: 4,
        overwrite: false,
        mode: 0o644,
        owner: "ana".into(),
        group: "staff".into(),
        time_ms: 1,
    })
    .expect("open");
    let block = ns.next_block_id();
    ns.apply(&Op::AllocateBlock { write, block })
        .expect("an allocation of an old journal");
    assert_eq!(
        ns.block_record(block),
        Some(BlockRecord::Pending {
            generation: Generation::LEGACY
        })
    );
    ns.apply(&Op::CommitBlock {
        write,
        block,
        length_bytes: 3,
        crc32c: 9,
    })
    .expect("commit");
    ns.apply(&Op::CloseWrite { write, time_ms: 2 })
        .expect("close");
    let (_, blocks) = ns.file_blocks(&path("/old")).expect("the file");
    assert_eq!(blocks[0].generation, Generation::LEGACY);
    // New allocations must carry a generation.
    check_error(
        ns.apply(&Op::AllocateBlockStamped {
            write: 99,
            block: ns.next_block_id(),
            generation: Generation::LEGACY,
        }),
        ErrorKind::Internal,
        "generation 0",
    );
    ns.check_invariants().expect("invariants");
}

#[test]
fn replicas_match_only_what_was_committed() {
    let mut ns = Namespace::new(0);
    let write = ns.next_write_id();
    ns.apply(&Op::OpenWrite {
        write,
        path: "/f".into(),
        replication: 1,
        block_bytes: 4,
        overwrite: false,
        mode: 0o644,
        owner: "ana".into(),
        group: "staff".into(),
        time_ms: 1,
    })
    .expect("open");
    let block = ns.next_block_id();
    ns.apply(&allocate(write, block)).expect("allocate");
    let stored = StoredBlock {
        block,
        generation: generation_of(block),
        length_bytes: 4,
        crc32c: 0xabc,
    };
    // Allocated: its generation is all there is to match.
    assert!(ns.is_replica_referenced(&stored));
    let other = StoredBlock {
        generation: Generation(1),
        ..stored
    };
    assert!(!ns.is_replica_referenced(&other));
    ns.apply(&Op::CommitBlock {
        write,
        block,
        length_bytes: 4,
        crc32c: 0xabc,
    })
    .expect("commit");
    assert_eq!(ns.block_record(block), Some(BlockRecord::Committed(stored)));
    assert!(ns.is_replica_referenced(&stored));
    for wrong in [
        other,
        StoredBlock {
            length_bytes: 3,
            ..stored
        },
        StoredBlock {
            crc32c: 0xabd,
            ..stored
        },
        StoredBlock {
            block: BlockId(99),
            ..stored
        },
    ] {
        assert!(!ns.is_replica_referenced(&wrong), "{wrong:?}");
    }
    assert_eq!(ns.committed_block_count(), 1);
}

#[test]
fn skipping_ids_moves_both_spaces_on() {
    let mut ns = Namespace::new(0);
    write_file(&mut ns, "/f", &[4], false).expect("write");
    let (block, write) = (ns.next_block_id(), ns.next_write_id());
    ns.apply(&Op::SkipIds {
        block_ids: 1 << 32,
        write_ids: 1 << 32,
    })
    .expect("skip");
    assert_eq!(ns.next_block_id(), BlockId(block.0 + (1 << 32)));
    assert_eq!(ns.next_write_id(), write + (1 << 32));
    check_error(
        ns.apply(&Op::SkipIds {
            block_ids: u64::MAX,
            write_ids: 0,
        }),
        ErrorKind::Internal,
        "overflow",
    );
    ns.check_invariants().expect("invariants");
}

#[test]
fn the_block_index_follows_every_op() {
    let mut ns = Namespace::new(0);
    let target = |ns: &Namespace, block: BlockId| {
        ns.block_target(block)
            .map(|t| (t.replication, t.length_bytes()))
    };
    // A write: allocated blocks are referenced but have no target yet.
    let write = ns.next_write_id();
    ns.apply(&Op::OpenWrite {
        write,
        path: "/f".into(),
        replication: 2,
        block_bytes: 4,
        overwrite: false,
        mode: 0o644,
        owner: "ana".into(),
        group: "staff".into(),
        time_ms: 1,
    })
    .expect("open");
    let first = ns.next_block_id();
    ns.apply(&allocate(write, first)).expect("allocate");
    assert!(ns.is_block_referenced(first) && ns.is_block_in_open_write(first));
    assert_eq!(target(&ns, first), None);
    ns.apply(&Op::CommitBlock {
        write,
        block: first,
        length_bytes: 4,
        crc32c: 0,
    })
    .expect("commit");
    assert_eq!(target(&ns, first), Some((2, 4)));
    let abandoned = ns.next_block_id();
    ns.apply(&allocate(write, abandoned)).expect("allocate");
    ns.apply(&Op::AbandonBlock {
        write,
        block: abandoned,
    })
    .expect("abandon");
    assert!(!ns.is_block_referenced(abandoned));
    ns.apply(&Op::CloseWrite { write, time_ms: 2 })
        .expect("close");
    assert!(ns.is_block_referenced(first) && !ns.is_block_in_open_write(first));
    assert_eq!(target(&ns, first), Some((2, 4)));
    ns.check_invariants().expect("invariants");

    // Replaced by an overwrite, by a rename, removed by a delete, aborted.
    write_file(&mut ns, "/f", &[4, 1], true).expect("overwrite");
    assert!(!ns.is_block_referenced(first));
    let (_, blocks) = ns.file_blocks(&path("/f")).expect("file");
    let second: Vec<BlockId> = blocks.iter().map(|b| b.id).collect();
    assert_eq!(target(&ns, second[1]), Some((3, 1)));
    write_file(&mut ns, "/g", &[2], false).expect("write /g");
    ns.apply(&Op::Rename {
        source: "/g".into(),
        target: "/f".into(),
        time_ms: 3,
    })
    .expect("rename over /f");
    assert!(second.iter().all(|b| !ns.is_block_referenced(*b)));
    let (_, blocks) = ns.file_blocks(&path("/f")).expect("file");
    let third = blocks[0].id;
    assert_eq!(target(&ns, third), Some((3, 2)));
    ns.apply(&Op::Delete {
        path: "/f".into(),
        recursive: false,
        time_ms: 4,
    })
    .expect("delete");
    assert!(!ns.is_block_referenced(third));
    let write = ns.next_write_id();
    ns.apply(&Op::OpenWrite {
        write,
        path: "/h".into(),
        replication: 1,
        block_bytes: 4,
        overwrite: false,
        mode: 0o644,
        owner: "ana".into(),
        group: "staff".into(),
        time_ms: 5,
    })
    .expect("open");
    let pending = ns.next_block_id();
    ns.apply(&allocate(write, pending)).expect("allocate");
    ns.apply(&Op::AbortWrite { write }).expect("abort");
    assert!(!ns.is_block_referenced(pending));
    ns.check_invariants().expect("invariants");
    // What is left matches an index built from scratch.
    assert_rebuilds(&ns);
}

fn symlink(at: &str, target: &str) -> Op {
    Op::Symlink {
        path: at.into(),
        target: target.into(),
        owner: "ana".into(),
        group: "staff".into(),
        time_ms: 40,
    }
}

fn hard_link(source: &str, target: &str) -> Op {
    Op::Link {
        source: source.into(),
        target: target.into(),
        time_ms: 50,
    }
}

fn freed_ids(applied: &Applied) -> Vec<u64> {
    let mut ids: Vec<u64> = applied.freed_blocks.iter().map(|r| r.block.0).collect();
    ids.sort_unstable();
    ids
}

#[test]
fn symbolic_links_hold_their_target_and_nothing_else() {
    let mut ns = Namespace::new(0);
    ns.apply(&mkdir("/d", false)).expect("mkdir");
    ns.apply(&symlink("/d/l", "../elsewhere/x"))
        .expect("symlink");
    let status = ns.status(&path("/d/l")).expect("stat");
    assert_eq!(status.kind, EntryKind::Symlink);
    assert_eq!(status.size_bytes, "../elsewhere/x".len() as u64);
    assert_eq!((status.mode, status.links), (0o777, 1));
    assert_eq!(
        ns.read_link(&path("/d/l")).expect("target"),
        "../elsewhere/x"
    );
    check_error(
        ns.apply(&symlink("/d/l", "y")),
        ErrorKind::AlreadyExists,
        "file exists",
    );
    check_error(
        ns.apply(&symlink("/d/m", "")),
        ErrorKind::InvalidArgument,
        "target",
    );
    let long = "x".repeat(SYMLINK_TARGET_BYTES_MAX + 1);
    check_error(
        ns.apply(&symlink("/d/m", &long)),
        ErrorKind::InvalidArgument,
        "target",
    );
    check_error(
        ns.apply(&symlink("/d/l/under", "y")),
        ErrorKind::NotADirectory,
        "not a directory",
    );
    assert!(
        ns.file_blocks(&path("/d/l")).is_err(),
        "a link has no blocks"
    );
    assert!(ns.read_link(&path("/d")).is_err(), "a directory is no link");
    // A symbolic link is replaced, renamed and removed as a file is.
    write_file(&mut ns, "/d/l", &[4], true).expect("a file over the link");
    assert_eq!(
        ns.status(&path("/d/l")).expect("stat").kind,
        EntryKind::File
    );
    ns.apply(&symlink("/d/l2", "t")).expect("symlink");
    ns.apply(&Op::Rename {
        source: "/d/l2".into(),
        target: "/d/l3".into(),
        time_ms: 60,
    })
    .expect("rename");
    ns.apply(&Op::Delete {
        path: "/d/l3".into(),
        recursive: false,
        time_ms: 61,
    })
    .expect("rm");
    ns.check_invariants().expect("invariants");
}

#[test]
fn a_file_keeps_its_blocks_while_any_name_is_left() {
    let mut ns = Namespace::new(0);
    ns.apply(&mkdir("/a", false)).expect("mkdir");
    ns.apply(&mkdir("/b", false)).expect("mkdir");
    write_file(&mut ns, "/a/f", &[4, 2], false).expect("write");
    let blocks: Vec<u64> = ns
        .file_blocks(&path("/a/f"))
        .expect("blocks")
        .1
        .iter()
        .map(|b| b.id.0)
        .collect();
    ns.apply(&hard_link("/a/f", "/b/g")).expect("link");
    ns.apply(&hard_link("/a/f", "/a/h")).expect("link");
    let first = ns.status(&path("/a/f")).expect("stat");
    let second = ns.status(&path("/b/g")).expect("stat");
    assert_eq!(first.inode, second.inode, "one inode, two names");
    assert_eq!(second.links, 3);
    ns.check_invariants().expect("invariants");
    // Refused: a name taken, a directory, a missing source.
    check_error(
        ns.apply(&hard_link("/a/f", "/b/g")),
        ErrorKind::AlreadyExists,
        "exists",
    );
    check_error(
        ns.apply(&hard_link("/a", "/c")),
        ErrorKind::IsADirectory,
        "directory",
    );
    check_error(
        ns.apply(&hard_link("/nope", "/c")),
        ErrorKind::NotFound,
        "no such",
    );
    // A rename between two names of one file changes nothing.
    let applied = ns
        .apply(&Op::Rename {
            source: "/a/f".into(),
            target: "/a/h".into(),
            time_ms: 70,
        })
        .expect("rename onto itself");
    assert!(applied.freed_blocks.is_empty());
    assert_eq!(names(&ns, "/a"), ["f", "h"]);
    // Removing names frees nothing until the last one goes, even when a
    // whole directory goes.
    let applied = ns
        .apply(&Op::Delete {
            path: "/b".into(),
            recursive: true,
            time_ms: 71,
        })
        .expect("rm -r");
    assert!(applied.freed_blocks.is_empty(), "{applied:?}");
    let applied = ns
        .apply(&Op::Delete {
            path: "/a/h".into(),
            recursive: false,
            time_ms: 72,
        })
        .expect("rm a name");
    assert!(applied.freed_blocks.is_empty(), "{applied:?}");
    assert_eq!(ns.status(&path("/a/f")).expect("stat").links, 1);
    assert_eq!(ns.status(&path("/a/f")).expect("stat").size_bytes, 6);
    ns.check_invariants().expect("invariants");
    let applied = ns
        .apply(&Op::Delete {
            path: "/a/f".into(),
            recursive: false,
            time_ms: 73,
        })
        .expect("rm the last name");
    assert_eq!(freed_ids(&applied), blocks);
    ns.check_invariants().expect("invariants");
}

#[test]
fn names_are_counted_again_when_a_checkpoint_is_read() {
    let mut ns = Namespace::new(0);
    write_file(&mut ns, "/f", &[4], false).expect("write");
    ns.apply(&hard_link("/f", "/g")).expect("link");
    ns.apply(&symlink("/l", "f")).expect("symlink");
    ns.apply(&Op::Mknod {
        path: "/fifo".into(),
        kind: EntryKind::Fifo,
        mode: 0o644,
        rdev: 7,
        owner: "ana".into(),
        group: "staff".into(),
        time_ms: 60,
    })
    .expect("mkfifo");
    let bytes = postcard::to_stdvec(&NamespaceWriter(&ns)).expect("encode");
    let read: NamespaceRecord = postcard::from_bytes(&bytes).expect("decode");
    let loaded = Namespace::from(read);
    assert_eq!(loaded, ns);
    assert_eq!(loaded.status(&path("/g")).expect("stat").links, 2);
    loaded.check_invariants().expect("invariants");
}

#[test]
fn an_overwrite_changes_a_file_in_place() {
    let mut ns = Namespace::new(0);
    write_file(&mut ns, "/f", &[4, 1], false).expect("write");
    ns.apply(&Op::SetAttributes {
        path: "/f".into(),
        mode: Some(0o600),
        owner: Some("zoe".into()),
        group: None,
        modified_ns: None,
        accessed_ns: None,
        time_ms: 25,
    })
    .expect("chmod");
    ns.apply(&hard_link("/f", "/g")).expect("link");
    let before = ns.status(&path("/f")).expect("stat");
    let old_blocks: Vec<u64> = ns
        .file_blocks(&path("/f"))
        .expect("blocks")
        .1
        .iter()
        .map(|b| b.id.0)
        .collect();
    let applied = write_file(&mut ns, "/f", &[3], true).expect("overwrite");
    assert_eq!(
        freed_ids(&applied),
        old_blocks,
        "the old contents are freed"
    );
    let after = ns.status(&path("/f")).expect("stat");
    assert_eq!(after.inode, before.inode, "the same file");
    assert_ne!(after.version, before.version, "other contents");
    assert_eq!(
        (after.size_bytes, after.mode, after.owner.as_str()),
        (3, 0o600, "zoe")
    );
    let other = ns.status(&path("/g")).expect("stat");
    assert_eq!(
        (other.size_bytes, other.links),
        (3, 2),
        "every name sees it"
    );
    ns.check_invariants().expect("invariants");
    // A symbolic link is replaced by a new file, not written through.
    ns.apply(&symlink("/l", "f")).expect("symlink");
    write_file(&mut ns, "/l", &[2], true).expect("over the link");
    assert_eq!(ns.status(&path("/l")).expect("stat").kind, EntryKind::File);
    assert_eq!(ns.status(&path("/f")).expect("stat").size_bytes, 3);
    ns.check_invariants().expect("invariants");
}

#[test]
fn special_files_are_names_and_attributes() {
    let mut ns = Namespace::new(0);
    let mknod = |at: &str, kind: EntryKind, rdev: u32| Op::Mknod {
        path: at.into(),
        kind,
        mode: 0o640,
        rdev,
        owner: "ana".into(),
        group: "staff".into(),
        time_ms: 5,
    };
    ns.apply(&mknod("/p", EntryKind::Fifo, 9)).expect("mkfifo");
    ns.apply(&mknod("/c", EntryKind::CharDevice, 0x0103))
        .expect("mknod c");
    let fifo = ns.status(&path("/p")).expect("stat");
    assert_eq!(
        (fifo.kind, fifo.rdev, fifo.mode, fifo.size_bytes),
        (EntryKind::Fifo, 0, 0o640, 0)
    );
    assert_eq!(ns.status(&path("/c")).expect("stat").rdev, 0x0103);
    check_error(
        ns.apply(&mknod("/p", EntryKind::Socket, 0)),
        ErrorKind::AlreadyExists,
        "exists",
    );
    check_error(
        ns.apply(&mknod("/f", EntryKind::File, 0)),
        ErrorKind::InvalidArgument,
        "mknod",
    );
    check_error(
        ns.apply(&mknod("/p/x", EntryKind::Fifo, 0)),
        ErrorKind::NotADirectory,
        "not a directory",
    );
    assert!(ns.file_blocks(&path("/p")).is_err());
    ns.apply(&hard_link("/p", "/q")).expect("ln");
    ns.apply(&Op::Rename {
        source: "/q".into(),
        target: "/r".into(),
        time_ms: 6,
    })
    .expect("mv");
    ns.apply(&Op::Delete {
        path: "/p".into(),
        recursive: false,
        time_ms: 7,
    })
    .expect("rm");
    assert_eq!(ns.status(&path("/r")).expect("stat").kind, EntryKind::Fifo);
    ns.check_invariants().expect("invariants");
}

/// Opens a write of `at` (an overwrite), commits blocks of `lengths` and
/// closes it as a patch of `ranges` to `size_bytes`.
fn patch_file(
    ns: &mut Namespace,
    at: &str,
    lengths: &[u64],
    ranges: &[(u64, u64)],
    size_bytes: u64,
) -> Result<Applied, RemoteError> {
    let write = open_with_blocks(ns, at, lengths, true, ("bo", 0o640))?;
    ns.apply(&Op::PatchWrite {
        write,
        ranges: ranges
            .iter()
            .map(|&(offset_bytes, length_bytes)| FileRange {
                offset_bytes,
                length_bytes,
            })
            .collect(),
        size_bytes,
        if_version: None,
        time_ms: 50,
    })
}

/// (block id or 0, block offset, length) of every piece of `at`.
fn pieces(ns: &Namespace, at: &str) -> Vec<(u64, u64, u64)> {
    let page = ns
        .file_pieces(&path(at), None, Some(0), 0, usize::MAX)
        .expect("pieces");
    assert!(!page.more);
    page.pieces
        .iter()
        .map(|(extent, block)| {
            assert_eq!(extent.is_hole(), block.is_none());
            (
                extent.block.0,
                extent.block_offset_bytes,
                extent.length_bytes,
            )
        })
        .collect()
}

#[test]
fn a_patch_changes_part_of_a_file_and_frees_what_no_piece_uses() {
    let mut ns = Namespace::new(0);
    write_file(&mut ns, "/f", &[4, 4, 2], false).expect("write");
    let before = ns.status(&path("/f")).expect("stat");
    let (_, blocks) = ns.file_blocks(&path("/f")).expect("file");
    let old: Vec<u64> = blocks.iter().map(|b| b.id.0).collect();
    // Bytes 3..9 replaced: block 2 of the file (bytes 4..8) is no longer used.
    let applied = patch_file(&mut ns, "/f", &[4, 2], &[(3, 6)], 10).expect("patch");
    let new = ns.next_block_id().0 - 3; // two blocks and the version
    assert_eq!(freed_ids(&applied), vec![old[1]]);
    assert_eq!(
        pieces(&ns, "/f"),
        vec![(old[0], 0, 3), (new, 0, 4), (new + 1, 0, 2), (old[2], 1, 1)]
    );
    let after = ns.status(&path("/f")).expect("stat");
    assert_eq!(
        (after.inode, after.size_bytes, after.block_count),
        (before.inode, 10, 4)
    );
    assert_ne!(after.version, before.version, "a reader tells the change");
    // The file keeps its owner and mode; the write's are not the file's.
    assert_eq!((after.owner.as_str(), after.mode), ("ana", 0o644));
    assert!(ns.block_target(BlockId(new)).is_some());
    assert!(!ns.is_block_referenced(BlockId(old[1])));
    // Cut to 2 bytes, then grown to 6 with a hole: only block 1 is left.
    let applied = patch_file(&mut ns, "/f", &[], &[], 2).expect("truncate");
    let mut freed = freed_ids(&applied);
    freed.sort_unstable();
    assert_eq!(freed, vec![old[2], new, new + 1]);
    patch_file(&mut ns, "/f", &[], &[], 6).expect("grow");
    assert_eq!(pieces(&ns, "/f"), vec![(old[0], 0, 2), (0, 0, 4)]);
    // By offset: the page starts at the piece holding the byte.
    let page = ns
        .file_pieces(&path("/f"), None, None, 3, 10)
        .expect("by offset");
    assert_eq!((page.first_index, page.pieces.len()), (1, 1));
    assert_rebuilds(&ns);
}

#[test]
fn a_patch_makes_a_missing_file_and_refuses_bad_ranges_changing_nothing() {
    let mut ns = Namespace::new(0);
    ns.apply(&mkdir("/d", false)).expect("mkdir");
    patch_file(&mut ns, "/d/new", &[3], &[(5, 3)], 8).expect("patch of nothing");
    let block = ns.next_block_id().0 - 2;
    assert_eq!(pieces(&ns, "/d/new"), vec![(0, 0, 5), (block, 0, 3)]);
    let status = ns.status(&path("/d/new")).expect("stat");
    assert_eq!((status.owner.as_str(), status.mode), ("bo", 0o640));
    let before = ns.clone();
    let bad = patch_file(&mut ns, "/d/new", &[3], &[(0, 2)], 8);
    check_error(
        bad,
        ErrorKind::InvalidArgument,
        "the ranges cover 2 bytes but 3 were written",
    );
    // The refused close left the write open: nothing else changed.
    let write = ns.next_write_id() - 1;
    ns.apply(&Op::AbortWrite { write }).expect("abort");
    assert_eq!(
        pieces(&ns, "/d/new"),
        pieces(&before, "/d/new"),
        "the file is as it was"
    );
    let bad = patch_file(&mut ns, "/d/new", &[2], &[(7, 2)], 8);
    check_error(
        bad,
        ErrorKind::InvalidArgument,
        "past the file's new size 8",
    );
    let bad = patch_file(&mut ns, "/d", &[], &[], 0);
    check_error(bad, ErrorKind::IsADirectory, "is a directory");
    ns.check_invariants().expect("invariants");
}

fn set_xattr(at: &str, name: &str, value: &[u8], how: XattrSet) -> Op {
    Op::SetXattr {
        path: at.into(),
        name: name.into(),
        value: value.to_vec(),
        how,
        time_ms: 60,
    }
}

#[test]
fn user_extended_attributes_are_set_listed_removed_and_go_with_their_inode() {
    let mut ns = Namespace::new(0);
    write_file(&mut ns, "/f", &[1], false).expect("write");
    ns.apply(&set_xattr("/f", "user.b", b"2", XattrSet::Create))
        .expect("create");
    ns.apply(&set_xattr("/f", "user.a", b"1", XattrSet::Either))
        .expect("set");
    assert_eq!(ns.status(&path("/f")).expect("stat").changed_ns, 60_000_000);
    check_error(
        ns.apply(&set_xattr("/f", "user.a", b"x", XattrSet::Create)),
        ErrorKind::AlreadyExists,
        "user.a already",
    );
    check_error(
        ns.apply(&set_xattr("/f", "user.c", b"x", XattrSet::Replace)),
        ErrorKind::NoAttribute,
        "no extended attribute user.c",
    );
    ns.apply(&set_xattr("/f", "user.a", b"11", XattrSet::Replace))
        .expect("replace");
    assert_eq!(ns.xattr(&path("/f"), "user.a"), Ok(&b"11"[..]));
    assert_eq!(
        ns.xattr_names(&path("/f")).expect("list"),
        vec!["user.a".to_string(), "user.b".to_string()]
    );
    for bad in [
        "trusted.a",
        "user.",
        "user.a\0b",
        &format!("user.{}", "n".repeat(251)),
    ] {
        check_error(
            ns.apply(&set_xattr("/f", bad, b"", XattrSet::Either)),
            ErrorKind::InvalidArgument,
            "must be user.",
        );
    }
    let big = vec![7u8; XATTR_VALUE_BYTES_MAX + 1];
    check_error(
        ns.apply(&set_xattr("/f", "user.big", &big, XattrSet::Either)),
        ErrorKind::InvalidArgument,
        "at most",
    );
    for i in 0..3 {
        ns.apply(&set_xattr(
            "/f",
            &format!("user.fill{i}"),
            &vec![1u8; XATTR_VALUE_BYTES_MAX],
            XattrSet::Either,
        ))
        .expect("fill");
    }
    check_error(
        ns.apply(&set_xattr(
            "/f",
            "user.more",
            &vec![1u8; XATTR_VALUE_BYTES_MAX],
            XattrSet::Either,
        )),
        ErrorKind::NoSpace,
        "more than",
    );
    ns.apply(&symlink("/l", "f")).expect("symlink");
    check_error(
        ns.apply(&set_xattr("/l", "user.a", b"1", XattrSet::Either)),
        ErrorKind::PermissionDenied,
        "only files and directories",
    );
    ns.apply(&Op::RemoveXattr {
        path: "/f".into(),
        name: "user.b".into(),
        time_ms: 61,
    })
    .expect("remove");
    check_error(
        ns.apply(&Op::RemoveXattr {
            path: "/f".into(),
            name: "user.b".into(),
            time_ms: 62,
        }),
        ErrorKind::NoAttribute,
        "user.b",
    );
    ns.check_invariants().expect("invariants");
    // A rename keeps them (same inode); the inode's end takes them along.
    ns.apply(&Op::Rename {
        source: "/f".into(),
        target: "/g".into(),
        time_ms: 63,
    })
    .expect("rename");
    assert_eq!(ns.xattr(&path("/g"), "user.a"), Ok(&b"11"[..]));
    ns.apply(&Op::Delete {
        path: "/g".into(),
        recursive: false,
        time_ms: 64,
    })
    .expect("delete");
    write_file(&mut ns, "/g", &[1], false).expect("a new /g");
    assert_eq!(
        ns.xattr_names(&path("/g")).expect("list"),
        Vec::<String>::new()
    );
    ns.check_invariants().expect("invariants");
}

#[test]
fn a_conditional_patch_applies_only_to_the_version_it_read_and_whole_blocks_need_no_map() {
    let mut ns = Namespace::new(0);
    write_file(&mut ns, "/f", &[4, 4, 2], false).expect("write");
    patch_file(&mut ns, "/f", &[1], &[(5, 1)], 10).expect("fragment it");
    let fragmented = ns.status(&path("/f")).expect("stat");
    assert_eq!(fragmented.block_count, 5);
    // A compaction read version `fragmented.version`: all data rewritten
    // as whole blocks of the file's block size (4).
    let compact = |ns: &mut Namespace, if_version: u64| {
        let write = open_with_blocks(ns, "/f", &[4, 4, 2], true, ("ana", 0o644))?;
        let applied = ns.apply(&Op::PatchWrite {
            write,
            ranges: vec![FileRange {
                offset_bytes: 0,
                length_bytes: 10,
            }],
            size_bytes: 10,
            if_version: Some(if_version),
            time_ms: 71,
        });
        if applied.is_err() {
            ns.apply(&Op::AbortWrite { write })?;
        }
        applied
    };
    check_error(
        compact(&mut ns, fragmented.version + 1),
        ErrorKind::AlreadyExists,
        "changed since version",
    );
    assert_eq!(
        ns.status(&path("/f")).expect("stat"),
        fragmented,
        "nothing changed"
    );
    let applied = compact(&mut ns, fragmented.version).expect("compact");
    assert_eq!(applied.freed_blocks.len(), 4, "every old block freed");
    let after = ns.status(&path("/f")).expect("stat");
    let (_, blocks) = ns.file_blocks(&path("/f")).expect("file");
    assert_eq!(after.block_count, 3);
    assert_eq!(after.version, blocks[0].id.0, "whole blocks: no extent map");
    assert_ne!(after.version, fragmented.version);
    ns.check_invariants().expect("invariants");
}

#[test]
fn a_file_kept_open_outlives_its_last_name_until_released() {
    let mut ns = Namespace::new(0);
    ns.apply(&mkdir("/d", false)).expect("mkdir");
    write_file(&mut ns, "/d/f", &[4, 2], false).expect("write");
    let status = ns.status(&path("/d/f")).expect("stat");
    let (_, blocks) = ns.file_blocks(&path("/d/f")).expect("file");
    let ids: Vec<BlockId> = blocks.iter().map(|b| b.id).collect();
    check_error(
        ns.apply(&Op::Sustain { inode: 1 }),
        ErrorKind::InvalidArgument,
        "not a file",
    );
    ns.apply(&Op::Sustain {
        inode: status.inode,
    })
    .expect("sustain");
    // Its directory removed whole: the file stays, nameless, blocks kept.
    let applied = ns
        .apply(&Op::Delete {
            path: "/d".into(),
            recursive: true,
            time_ms: 90,
        })
        .expect("delete");
    assert!(applied.freed_blocks.is_empty());
    assert!(ids.iter().all(|id| ns.is_block_referenced(*id)));
    let page = ns
        .file_pieces(&path("/d/f"), Some(status.inode), None, 0, 10)
        .expect("read by inode");
    assert_eq!(page.status.size_bytes, 6);
    assert_eq!(page.status.links, 0);
    assert!(ns.status(&path("/d/f")).is_err(), "no name");
    // Written to by inode while nameless.
    let write = ns.next_write_id();
    ns.apply(&Op::OpenWrite {
        write,
        path: "/g".into(),
        replication: 3,
        block_bytes: 4,
        overwrite: true,
        mode: 0o644,
        owner: "ana".into(),
        group: "staff".into(),
        time_ms: 91,
    })
    .expect("open");
    ns.apply(&Op::PatchInode {
        write,
        inode: status.inode,
        ranges: vec![],
        size_bytes: 1,
        if_version: None,
        time_ms: 92,
    })
    .expect("patch the nameless file");
    assert_rebuilds(&ns);
    // Released: gone with its blocks.
    let applied = ns
        .apply(&Op::Unsustain {
            inode: status.inode,
        })
        .expect("unsustain");
    assert_eq!(applied.freed_blocks.len(), 1, "what the cut left");
    assert!(ids.iter().all(|id| !ns.is_block_referenced(*id)));
    check_error(
        ns.apply(&Op::Unsustain {
            inode: status.inode,
        }),
        ErrorKind::NotFound,
        "not kept open",
    );
    ns.check_invariants().expect("invariants");
    // Kept but never unnamed: released, it simply stays.
    write_file(&mut ns, "/h", &[1], false).expect("write");
    let inode = ns.status(&path("/h")).expect("stat").inode;
    ns.apply(&Op::Sustain { inode }).expect("sustain");
    ns.apply(&Op::Unsustain { inode }).expect("unsustain");
    assert!(ns.status(&path("/h")).is_ok());
}

#[test]
fn a_directory_links_its_name_itself_and_each_subdirectory() {
    let mut ns = Namespace::new(0);
    let links = |ns: &Namespace, dir: &str| ns.status(&path(dir)).expect("stat").links;
    assert_eq!(links(&ns, "/"), 2);
    for dir in ["/a", "/a/b", "/a/c", "/a/b/deep"] {
        ns.apply(&mkdir(dir, false)).expect("mkdir");
    }
    write_file(&mut ns, "/a/f", &[3], false).expect("write");
    assert_eq!((links(&ns, "/"), links(&ns, "/a")), (3, 4));
    assert_eq!((links(&ns, "/a/b"), links(&ns, "/a/c")), (3, 2));
    // A directory moved elsewhere takes its ".." along.
    ns.apply(&Op::Rename {
        source: "/a/b".into(),
        target: "/b".into(),
        time_ms: 20,
    })
    .expect("move a directory");
    assert_eq!((links(&ns, "/"), links(&ns, "/a")), (4, 3));
    // Over an empty directory: the replaced one's ".." goes.
    ns.apply(&Op::Rename {
        source: "/b".into(),
        target: "/a/c".into(),
        time_ms: 21,
    })
    .expect("move over an empty directory");
    assert_eq!((links(&ns, "/"), links(&ns, "/a")), (3, 3));
    assert_eq!(links(&ns, "/a/c"), 3);
    ns.check_invariants().expect("invariants");
    // A subtree removed whole takes its counts with it.
    ns.apply(&Op::Delete {
        path: "/a/c".into(),
        recursive: true,
        time_ms: 22,
    })
    .expect("rm -r");
    assert_eq!(links(&ns, "/a"), 2);
    ns.check_invariants().expect("invariants");
    // Counted again from the directories after a load.
    assert_rebuilds(&ns);
}

/// Opens a write of the file `inode` (as the mount does), known by `at`,
/// and commits blocks of `lengths` to it.
fn open_inode_with_blocks(
    ns: &mut Namespace,
    inode: InodeId,
    at: &str,
    lengths: &[u64],
) -> Result<WriteId, RemoteError> {
    let write = ns.next_write_id();
    ns.apply(&Op::OpenInodeWrite {
        write,
        inode,
        path: at.into(),
        replication: 3,
        block_bytes: 4,
        owner: "ana".into(),
        group: "staff".into(),
        time_ms: 40,
    })?;
    commit_blocks(ns, write, lengths)?;
    Ok(write)
}

#[test]
fn a_write_by_inode_changes_that_file_whatever_became_of_its_names() {
    let mut ns = Namespace::new(0);
    ns.apply(&mkdir("/d", false)).expect("mkdir");
    write_file(&mut ns, "/d/f", &[4, 2], false).expect("write");
    let inode = ns.status(&path("/d/f")).expect("stat").inode;
    let old_blocks: Vec<BlockId> = ns
        .file_blocks(&path("/d/f"))
        .expect("blocks")
        .1
        .iter()
        .map(|block| block.id)
        .collect();
    // Opened, then its name moves away and a directory takes the old one,
    // inside a directory that is renamed too: the commit does not care.
    let write = open_inode_with_blocks(&mut ns, inode, "/d/f", &[3]).expect("open");
    ns.apply(&Op::Rename {
        source: "/d/f".into(),
        target: "/g".into(),
        time_ms: 41,
    })
    .expect("rename");
    ns.apply(&mkdir("/d/f", false))
        .expect("a directory at the old name");
    ns.apply(&Op::Rename {
        source: "/d".into(),
        target: "/e".into(),
        time_ms: 42,
    })
    .expect("rename the directory");
    let applied = ns
        .apply(&Op::CloseWrite { write, time_ms: 43 })
        .expect("close");
    // The close replaced the file's contents: its old blocks are freed.
    let mut freed: Vec<BlockId> = applied.freed_blocks.iter().map(|r| r.block).collect();
    freed.sort_unstable();
    assert_eq!(freed, old_blocks);
    let status = ns.status(&path("/g")).expect("stat");
    assert_eq!((status.inode, status.size_bytes), (inode, 3));
    assert!(ns.status(&path("/e/f")).expect("stat").kind == EntryKind::Directory);
    ns.check_invariants().expect("invariants");

    // A patch of it by inode, opened while it had no name at all.
    ns.apply(&Op::Sustain { inode }).expect("sustain");
    ns.apply(&Op::Delete {
        path: "/g".into(),
        recursive: false,
        time_ms: 44,
    })
    .expect("delete");
    let write = open_inode_with_blocks(&mut ns, inode, "/g", &[1]).expect("open nameless");
    // Another file's inode is refused for a write opened for this one.
    write_file(&mut ns, "/other", &[1], false).expect("write");
    let other = ns.status(&path("/other")).expect("stat").inode;
    let patch_of = |target: InodeId| Op::PatchInode {
        write,
        inode: target,
        ranges: vec![FileRange {
            offset_bytes: 1,
            length_bytes: 1,
        }],
        size_bytes: 5,
        if_version: None,
        time_ms: 45,
    };
    check_error(
        ns.apply(&patch_of(other)),
        ErrorKind::InvalidArgument,
        &format!("opened for inode {inode} cannot change inode {other}"),
    );
    ns.apply(&Op::PatchWrite {
        write,
        ranges: vec![FileRange {
            offset_bytes: 1,
            length_bytes: 1,
        }],
        size_bytes: 5,
        if_version: None,
        time_ms: 45,
    })
    .expect("a patch with no inode changes the one opened");
    let page = ns
        .file_pieces(&path("/g"), Some(inode), None, 0, 10)
        .expect("read by inode");
    assert_eq!((page.status.size_bytes, page.status.links), (5, 0));
    assert_rebuilds(&ns);
}

#[test]
fn a_write_by_inode_opens_only_of_a_file_that_is_there() {
    let mut ns = Namespace::new(0);
    ns.apply(&mkdir("/d", false)).expect("mkdir");
    let directory = ns.status(&path("/d")).expect("stat").inode;
    check_error(
        open_inode_with_blocks(&mut ns, directory, "/d", &[]).map(|_| Applied::default()),
        ErrorKind::IsADirectory,
        &format!("/d: inode {directory} is a directory"),
    );
    check_error(
        open_inode_with_blocks(&mut ns, 999, "/x", &[]).map(|_| Applied::default()),
        ErrorKind::NotFound,
        "/x: inode 999 is gone",
    );
    assert_eq!(ns.open_writes().count(), 0, "nothing opened");
}
