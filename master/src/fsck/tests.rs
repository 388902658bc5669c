use std::time::Duration;

use dfs_engine::msg::{BlockId, ClusterId, MinionId};

use super::*;
use crate::namespace::Op;
use crate::registry::{Capacity, Liveness};

const STALE_AFTER: Duration = Duration::from_secs(10);
const DEAD_AFTER: Duration = Duration::from_secs(60);

fn path(text: &str) -> DfsPath {
    DfsPath::parse(text).expect("valid path")
}

/// Writes a closed file of `blocks` one-byte blocks; returns their ids.
fn write(namespace: &mut Namespace, at: &str, blocks: usize, replication: u8) -> Vec<BlockId> {
    let write = namespace.next_write_id();
    namespace
        .apply(&Op::OpenWrite {
            write,
            path: at.into(),
            replication,
            block_bytes: 1,
            overwrite: false,
            mode: 0o644,
            owner: "u".into(),
            group: "g".into(),
            time_ms: 1,
        })
        .expect("open");
    let mut ids = Vec::new();
    for _ in 0..blocks {
        let block = namespace.next_block_id();
        namespace
            .apply(&Op::AllocateBlock { write, block })
            .expect("allocate");
        namespace
            .apply(&Op::CommitBlock {
                write,
                block,
                length_bytes: 1,
                crc32c: 0,
            })
            .expect("commit");
        ids.push(block);
    }
    namespace
        .apply(&Op::CloseWrite { write, time_ms: 2 })
        .expect("close");
    ids
}

fn mkdir(namespace: &mut Namespace, at: &str) {
    namespace
        .apply(&Op::Mkdir {
            path: at.into(),
            parents: true,
            mode: 0o755,
            owner: "u".into(),
            group: "g".into(),
            time_ms: 1,
        })
        .expect("mkdir");
}

/// Minions 1..=count, registered at `now`.
fn registry(count: u64, now: Instant) -> Registry {
    let mut registry = Registry::new(
        ClusterId(1),
        Liveness {
            stale_after: STALE_AFTER,
            dead_after: DEAD_AFTER,
        },
    );
    for id in 1..=count {
        registry
            .register(
                MinionId(id),
                None,
                &format!("m{id}:1"),
                Capacity::default(),
                false,
                now,
            )
            .expect("register");
    }
    registry
}

fn place(registry: &mut Registry, blocks: &[BlockId], minions: &[u64]) {
    for &block in blocks {
        for &id in minions {
            registry.add_location(block, MinionId(id));
        }
    }
}

fn limits(files: usize, listed_blocks: usize) -> PageLimits {
    PageLimits {
        files,
        listed_blocks,
        scanned_blocks: FSCK_SCANNED_BLOCKS_PER_PAGE_MAX,
    }
}

/// Every page of an fsck of `root`, `files` files at most per page.
fn all_pages(
    namespace: &Namespace,
    registry: &Registry,
    root: &str,
    limits: PageLimits,
    now: Instant,
) -> Vec<FsckPage> {
    let mut pages = Vec::new();
    let mut start_after: Option<DfsPath> = None;
    loop {
        let page = page(
            namespace,
            registry,
            &path(root),
            start_after.as_ref(),
            limits,
            now,
        )
        .expect("page");
        let resume = page.resume_after.clone();
        pages.push(page);
        match resume {
            Some(after) => start_after = Some(path(&after)),
            None => return pages,
        }
        assert!(pages.len() < 100, "paging does not end");
    }
}

fn listed(pages: &[FsckPage]) -> Vec<(String, Vec<u64>)> {
    pages
        .iter()
        .flat_map(|page| &page.files)
        .map(|file| {
            (
                file.path.clone(),
                file.blocks.iter().map(|b| b.index).collect(),
            )
        })
        .collect()
}

#[test]
fn blocks_are_classified_by_their_replicas() {
    let now = Instant::now();
    let mut namespace = Namespace::new(0);
    let healthy = write(&mut namespace, "/healthy", 2, 3);
    let mixed = write(&mut namespace, "/mixed", 5, 3);
    let mut registry = registry(6, now);
    place(&mut registry, &healthy, &[1, 2, 3]);
    // Block 0: 2 of 3. Block 1: 4 of 3. Block 2: nothing. Block 3: one
    // good, one corrupt, one on a draining minion. Block 4: only a
    // draining copy (not missing, but under-replicated).
    place(&mut registry, &mixed[0..1], &[1, 2]);
    place(&mut registry, &mixed[1..2], &[1, 2, 3, 4]);
    place(&mut registry, &mixed[3..4], &[1, 2, 5]);
    place(&mut registry, &mixed[4..5], &[5]);
    registry.mark_corrupt(mixed[3], MinionId(2));
    registry.set_draining(MinionId(5), true);
    let page = page(
        &namespace,
        &registry,
        &DfsPath::root(),
        None,
        PageLimits::for_request(100),
        now,
    )
    .expect("page");
    assert_eq!((page.scanned_files, page.scanned_blocks), (2, 7));
    assert_eq!(page.resume_after, None);
    assert_eq!(page.files.len(), 1, "the healthy file is not listed");
    let file = &page.files[0];
    assert_eq!(file.path, "/mixed");
    assert_eq!(
        (
            file.missing_blocks,
            file.corrupt_blocks,
            file.under_replicated_blocks,
            file.over_replicated_blocks
        ),
        (1, 1, 3, 1)
    );
    let counts: Vec<(u64, [u8; 4])> = file
        .blocks
        .iter()
        .map(|b| {
            (
                b.index,
                [
                    b.live_replicas,
                    b.stale_replicas,
                    b.decommissioning_replicas,
                    b.corrupt_replicas,
                ],
            )
        })
        .collect();
    assert_eq!(
        counts,
        [
            (0, [2, 0, 0, 0]),
            (1, [4, 0, 0, 0]),
            (2, [0, 0, 0, 0]),
            (3, [1, 0, 1, 1]),
            (4, [0, 0, 1, 0]),
        ]
    );
    // Minions go quiet: 1 and 2 stale, then dead.
    let later = now + STALE_AFTER + Duration::from_secs(1);
    for id in 3..=6 {
        registry
            .heartbeat(MinionId(id), Capacity::default(), Default::default(), later)
            .expect("beat");
    }
    let stale = super::page(
        &namespace,
        &registry,
        &path("/healthy"),
        None,
        PageLimits::for_request(1),
        later,
    )
    .expect("page");
    assert_eq!(stale.files.len(), 1);
    let blocks = &stale.files[0].blocks;
    assert_eq!((blocks[0].live_replicas, blocks[0].stale_replicas), (1, 2));
    assert_eq!(stale.files[0].under_replicated_blocks, 2);
    let much_later = now + DEAD_AFTER + Duration::from_secs(1);
    for id in 3..=6 {
        registry
            .heartbeat(
                MinionId(id),
                Capacity::default(),
                Default::default(),
                much_later,
            )
            .expect("beat");
    }
    let dead = super::page(
        &namespace,
        &registry,
        &path("/mixed"),
        None,
        PageLimits::for_request(1),
        much_later,
    )
    .expect("page");
    // Block 0 was on 1 and 2 only: missing now.
    assert_eq!(dead.files[0].blocks[0].index, 0);
    assert!(dead.files[0].blocks[0].health(3).missing);
}

#[test]
fn pages_walk_the_tree_depth_first_in_name_order_and_resume() {
    let now = Instant::now();
    let mut namespace = Namespace::new(0);
    mkdir(&mut namespace, "/a/b");
    mkdir(&mut namespace, "/a/empty/deeper");
    // Every file has one block with no replica: every file is listed.
    for file in [
        "/a/x",
        "/a/b/y",
        "/a/b/z",
        "/a-c",
        "/z",
        "/a/empty/deeper/w",
    ] {
        write(&mut namespace, file, 1, 1);
    }
    // An open write is not a file yet.
    let write = namespace.next_write_id();
    namespace
        .apply(&Op::OpenWrite {
            write,
            path: "/a/open".into(),
            replication: 1,
            block_bytes: 1,
            overwrite: false,
            mode: 0o644,
            owner: "u".into(),
            group: "g".into(),
            time_ms: 1,
        })
        .expect("open");
    let registry = registry(1, now);
    let order = [
        "/a/b/y",
        "/a/b/z",
        "/a/empty/deeper/w",
        "/a/x",
        "/a-c",
        "/z",
    ];
    for per_page in [1, 2, 4, 100] {
        let pages = all_pages(&namespace, &registry, "/", limits(per_page, 100), now);
        let paths: Vec<String> = listed(&pages).into_iter().map(|(p, _)| p).collect();
        assert_eq!(paths, order, "{per_page} per page");
        let scanned: u64 = pages.iter().map(|p| p.scanned_files).sum();
        assert_eq!(scanned, 6);
        assert!(pages.iter().all(|p| p.scanned_files as usize <= per_page));
    }
    // Under a directory; resuming after a path that is gone.
    let under_a = all_pages(&namespace, &registry, "/a", limits(1, 100), now);
    let paths: Vec<String> = listed(&under_a).into_iter().map(|(p, _)| p).collect();
    assert_eq!(paths, ["/a/b/y", "/a/b/z", "/a/empty/deeper/w", "/a/x"]);
    let after_gone = page(
        &namespace,
        &registry,
        &DfsPath::root(),
        Some(&path("/a/b/yy/q")),
        limits(100, 100),
        now,
    )
    .expect("page");
    let paths: Vec<&str> = after_gone.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["/a/b/z", "/a/empty/deeper/w", "/a/x", "/a-c", "/z"]);
    // A file is a tree of one.
    let one = all_pages(&namespace, &registry, "/a/x", limits(1, 100), now);
    assert_eq!(listed(&one), [("/a/x".to_string(), vec![0])]);
    // Refused: a missing root, a start outside the root.
    let missing = page(
        &namespace,
        &registry,
        &path("/nope"),
        None,
        limits(1, 1),
        now,
    )
    .expect_err("no such path");
    assert_eq!(missing.kind, ErrorKind::NotFound);
    let outside = page(
        &namespace,
        &registry,
        &path("/a"),
        Some(&path("/z")),
        limits(1, 1),
        now,
    )
    .expect_err("outside");
    assert_eq!(outside.kind, ErrorKind::InvalidArgument);
}

#[test]
fn listed_blocks_are_bounded_per_page_and_counted_beyond() {
    let now = Instant::now();
    let mut namespace = Namespace::new(0);
    let registry = registry(1, now);
    write(&mut namespace, "/a", 3, 1);
    write(&mut namespace, "/b", 5, 1);
    write(&mut namespace, "/c", 2, 1);
    // Four listed blocks per page: /a fits, /b does not fit after it and
    // starts the next page, where it is cut to four and counted whole.
    let pages = all_pages(&namespace, &registry, "/", limits(100, 4), now);
    assert_eq!(
        listed(&pages),
        [
            ("/a".to_string(), vec![0, 1, 2]),
            ("/b".to_string(), vec![0, 1, 2, 3]),
            ("/c".to_string(), vec![0, 1]),
        ]
    );
    assert_eq!(pages[0].resume_after.as_deref(), Some("/a"));
    assert_eq!(pages[1].resume_after.as_deref(), Some("/b"));
    let b = &pages[1].files[0];
    assert_eq!((b.missing_blocks, b.unlisted_blocks), (5, 1));
    assert_eq!(pages[0].files[0].unlisted_blocks, 0);
    let scanned: u64 = pages.iter().map(|p| p.scanned_blocks).sum();
    assert_eq!(scanned, 10);
}
