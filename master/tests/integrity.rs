//! The master never loses or wrongly deletes replicas, on real processes
//! with short timeouts: blocks freed by `rm`, `put -f` and `mv` over a file
//! stay on every minion while the freeing op waits for its (stalled) flush,
//! so a crash that drops the unflushed record leaves the file whole; in a
//! small cluster a corrupt replica on the only minion left to take a copy
//! is deleted first and replaced by a good one that is served, counted and
//! kept; and a minion that returns with its block files gone costs no good
//! copy elsewhere while its block report is late.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use dfs_engine::msg::{
    LocatedBlock, MasterRequest, MasterResponse, MinionReport, MinionState, ReplicaId,
};
use dfs_master::journal;
use dfs_master::namespace::Op;
use dfs_master::recovery::decode_op;
use dfs_testkit::{
    assert_files_equal, quarantined_replica_file, read_block_from, utf8, Cluster, ClusterOptions,
    MinionRead,
};

mod heal_support;

use heal_support::{options, put};

const MIB: u64 = 1 << 20;
/// How long every flush of the master's journal stalls in the tests of
/// freed blocks: far longer than the heartbeats the tests watch.
const FLUSH_STALL_MS: u64 = 4000;
/// Heartbeats (200 ms each) the freeing op stays unacknowledged while the
/// minions are watched.
const UNACKNOWLEDGED_WATCH: Duration = Duration::from_millis(1500);
/// Heartbeats a healed block is watched for afterwards.
const STABLE_WATCH: Duration = Duration::from_secs(2);
/// Copies, deletions and confirmations in a small cluster on a loaded
/// 2-core machine.
const HEAL_TIMEOUT: Duration = Duration::from_secs(40);
const POLL: Duration = Duration::from_millis(50);

// --- helpers ---

/// The ids (`blk_<hex>`) of `blocks`.
fn block_names(blocks: &[LocatedBlock]) -> Vec<String> {
    blocks.iter().map(|block| block.id.to_string()).collect()
}

fn replica_of(block: &LocatedBlock) -> ReplicaId {
    ReplicaId {
        block: block.id,
        generation: block.generation,
    }
}

/// `path`'s blocks, or None while the master does not answer them (down,
/// starting, or the file is not there).
fn try_blocks(cluster: &Cluster, path: &str) -> Option<Vec<LocatedBlock>> {
    let request = MasterRequest::GetBlocks {
        path: path.into(),
        offset_bytes: 0,
        limit: u32::MAX,
        first_index: None,
        inode: None,
    };
    match cluster.master_call(request) {
        Ok(MasterResponse::Blocks {
            blocks,
            more: false,
            ..
        }) => Some(blocks),
        _ => None,
    }
}

/// True when the master answers that `path` does not exist (whatever the
/// flush of that change).
fn is_gone(cluster: &Cluster, path: &str) -> bool {
    matches!(
        cluster.master_call(MasterRequest::Stat { path: path.into() }),
        Ok(MasterResponse::Error(error)) if error.kind == dfs_engine::msg::ErrorKind::NotFound
    )
}

/// (minion index, block) -> the block's file on that minion, for every
/// minion holding a sealed file of one of `blocks`.
fn files_of(cluster: &Cluster, blocks: &[String]) -> BTreeMap<(usize, String), PathBuf> {
    let mut found = BTreeMap::new();
    for index in 0..cluster.minion_count() {
        for block in blocks {
            if let Some(path) = cluster.block_file_of(index, block) {
                found.insert((index, block.clone()), path);
            }
        }
    }
    found
}

/// Minion index -> blocks of `blocks` it holds a sealed file of.
fn holders_on_disk(
    cluster: &Cluster,
    minions: &[usize],
    blocks: &[String],
) -> BTreeMap<String, BTreeSet<usize>> {
    let mut found: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for &index in minions {
        for block in blocks {
            if cluster.block_file_of(index, block).is_some() {
                found.entry(block.clone()).or_default().insert(index);
            }
        }
    }
    found
}

fn index_of(cluster: &Cluster, address: &str) -> usize {
    (0..cluster.minion_count())
        .find(|&index| cluster.minion_address(index) == address)
        .unwrap_or_else(|| panic!("no minion at {address}"))
}

fn report_of(cluster: &Cluster, index: usize) -> Option<MinionReport> {
    let address = cluster.minion_address(index).to_string();
    cluster
        .try_cluster_report()
        .ok()?
        .into_iter()
        .find(|minion| minion.address == address)
}

/// `dfs fsck` exits 0 with `blocks` blocks of `files` files and nothing
/// short, corrupt or surplus.
fn fsck_is_healthy(cluster: &Cluster, files: usize, blocks: usize) -> bool {
    let output = cluster.dfs(["fsck"]);
    let text = String::from_utf8_lossy(&output.stdout);
    output.status.code() == Some(0)
        && text.lines().last() == Some(&format!(
            "{files} files, {blocks} blocks: 0 missing, 0 corrupt, 0 under-replicated, 0 over-replicated \u{2014} HEALTHY"
        ))
}

fn assert_reads_back(cluster: &Cluster, name: &str, local: &Path, suffix: &str) {
    let copy = cluster.dir().join(format!("{name}.{suffix}"));
    cluster.dfs_ok(["get", &format!("/{name}"), utf8(&copy)]);
    assert_files_equal(&copy, local);
}

/// Starts `dfs ARGS` without waiting for it.
fn spawn_dfs(cluster: &Cluster, args: &[&str]) -> Child {
    cluster
        .dfs_command()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dfs")
}

/// Zeroes the newest record of the master's journal, as a power cut does
/// to a record appended and never flushed (bytes past the flushed offset
/// may be lost, see the journal's crash model); returns its op. The
/// master must not run.
fn drop_newest_journal_record(master_dir: &Path) -> Op {
    let segments = journal::list_segments(master_dir).expect("list the journal segments");
    let newest = segments.last().expect("a journal segment");
    let bytes = journal::read_segment(&newest.path).expect("read the newest segment");
    let mut last: Option<(u64, Vec<u8>)> = None;
    let scan = journal::scan_segment(&bytes, |_, offset, payload| {
        last = Some((offset, payload.to_vec()));
        Ok(())
    })
    .expect("scan the newest segment");
    let (offset, payload) = last.expect("a record in the newest segment");
    let op = decode_op(&payload).expect("decode the newest record");
    let length = usize::try_from(scan.end_offset - offset).expect("a record's length");
    OpenOptions::new()
        .write(true)
        .open(&newest.path)
        .and_then(|file| file.write_all_at(&vec![0; length], offset))
        .expect("zero the newest record");
    op
}

// --- freed blocks wait for the flush of the op that freed them ---

/// What frees /f's blocks.
enum Freeing {
    Remove,
    Overwrite,
    RenameOver,
}

/// Puts /f, stalls every journal flush, starts `freeing` in the
/// background and watches the minions while it is applied but
/// unacknowledged: every file of /f's blocks must stay. Then the master
/// dies before the flush, the unflushed record is lost, and /f reads back
/// byte-identical with all its replicas in place.
fn freed_blocks_wait_for_the_flush(freeing: Freeing) {
    let mut cluster = Cluster::start(options(3));
    let local = put(&cluster, "f", 31, 2 * MIB + 777);
    let old = cluster.located_blocks("/f");
    let old_names = block_names(&old);
    let old_files = files_of(&cluster, &old_names);
    assert_eq!(old_files.len(), 3 * old.len(), "{old_files:?}");
    let replacement = cluster.dir().join("replacement");
    dfs_testkit::write_random_file(&replacement, 32, MIB + 5);
    if matches!(freeing, Freeing::RenameOver) {
        cluster.dfs_ok(["put", "--block-size", "1M", utf8(&replacement), "/g"]);
    }

    cluster.kill_master();
    let stall = format!("journal-before-flush:sleep={FLUSH_STALL_MS}");
    cluster.set_master_environment("DFS_FAILPOINT", Some(&stall));
    cluster.start_master();
    cluster.wait_for(
        || try_blocks(&cluster, "/f").is_some_and(|b| b.iter().all(|b| b.locations.len() == 3)),
        Duration::from_secs(30),
        "the restarted master to locate /f's blocks",
    );

    let (mut client, expected) = match freeing {
        Freeing::Remove => (spawn_dfs(&cluster, &["rm", "/f"]), "Delete"),
        Freeing::Overwrite => (
            spawn_dfs(
                &cluster,
                &["put", "-f", "--block-size", "1M", utf8(&replacement), "/f"],
            ),
            "CloseWrite",
        ),
        Freeing::RenameOver => (spawn_dfs(&cluster, &["mv", "/g", "/f"]), "Rename"),
    };
    // Applied (lookups see it at once) but not durable.
    let applied = |cluster: &Cluster| match freeing {
        Freeing::Remove => is_gone(cluster, "/f"),
        Freeing::Overwrite => try_blocks(cluster, "/f")
            .is_some_and(|blocks| blocks.first().map(|b| b.id) != old.first().map(|b| b.id)),
        Freeing::RenameOver => is_gone(cluster, "/g"),
    };
    // Every flush stalls, so a `put -f` takes a few of them to get there.
    cluster.wait_for(
        || applied(&cluster),
        Duration::from_secs(40),
        "the freeing change to be applied",
    );
    let watch_started = Instant::now();
    while watch_started.elapsed() < UNACKNOWLEDGED_WATCH {
        for ((index, block), path) in &old_files {
            assert!(
                path.exists(),
                "minion-{index} deleted {block} of /f after {:?}, before the change that freed it was durable",
                watch_started.elapsed()
            );
        }
        std::thread::sleep(POLL);
    }
    assert!(
        client.try_wait().expect("poll dfs").is_none(),
        "the freeing change was acknowledged within {UNACKNOWLEDGED_WATCH:?}: the flush did not stall"
    );

    // The crash: the master dies in its stalled flush, the record that was
    // never flushed is lost, and the client (which would send it again)
    // is gone too.
    cluster.kill_master();
    let _ = client.kill();
    let _ = client.wait();
    let op = drop_newest_journal_record(&cluster.dir().join("master"));
    assert!(
        format!("{op:?}").starts_with(expected),
        "the unflushed record is {op:?}, expected {expected}"
    );
    cluster.set_master_environment("DFS_FAILPOINT", None);
    cluster.start_master();
    cluster.wait_for_live_minions(3);

    assert_reads_back(&cluster, "f", &local, "after");
    let blocks = cluster.located_blocks("/f");
    assert_eq!(block_names(&blocks), old_names, "/f is the old file");
    for block in &blocks {
        assert_eq!(block.locations.len(), 3, "{} of /f", block.id);
    }
    for ((index, block), path) in &old_files {
        assert!(path.exists(), "minion-{index} lost {block} of /f");
    }
    let mut paths = vec!["/f"];
    if matches!(freeing, Freeing::RenameOver) {
        // The rename is undone whole: /g is there too.
        assert_reads_back(&cluster, "g", &replacement, "after");
        paths.push("/g");
    }
    let block_count: usize = paths
        .iter()
        .map(|path| cluster.located_blocks(path).len())
        .sum();
    cluster.wait_for(
        || fsck_is_healthy(&cluster, paths.len(), block_count),
        HEAL_TIMEOUT,
        "fsck to be healthy after the restart",
    );
}

#[test]
fn blocks_freed_by_rm_stay_until_the_rm_is_durable() {
    freed_blocks_wait_for_the_flush(Freeing::Remove);
}

#[test]
fn blocks_freed_by_an_overwrite_stay_until_the_close_is_durable() {
    freed_blocks_wait_for_the_flush(Freeing::Overwrite);
}

#[test]
fn blocks_freed_by_a_rename_over_a_file_stay_until_the_rename_is_durable() {
    freed_blocks_wait_for_the_flush(Freeing::RenameOver);
}

// --- a corrupt replica on the only target left ---

/// A file's inode number and modification time: a fresh copy differs in
/// one of them from the file it replaced, even if it reuses the number.
type FileIdentity = (u64, i64, i64);

fn identity_of(path: &Path) -> Option<FileIdentity> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.ino(), metadata.mtime(), metadata.mtime_nsec()))
}

/// Flips a data byte of minion `index`'s replica of `block`, in place;
/// returns the file's identity after that.
fn flip_a_byte(cluster: &Cluster, index: usize, block: &str) -> FileIdentity {
    let path = cluster.block_file_path(index, block);
    let mut bytes = std::fs::read(&path).expect("read the block file");
    // In the second data chunk: the minion finds it when it reads.
    bytes[65_536 + 1000] ^= 0x40;
    std::fs::write(&path, &bytes).expect("write the block file back");
    identity_of(&path).expect("stat the block file")
}

/// The bytes of `block` in the file `local`.
fn expected_bytes(local: &[u8], block: &LocatedBlock) -> Vec<u8> {
    let start = usize::try_from(block.offset_bytes).expect("an offset");
    let length = usize::try_from(block.length_bytes).expect("a length");
    local[start..start + length].to_vec()
}

/// Each block's replica on minion `bad` was corrupt (its file's identity
/// in `corrupt_files`): waits until every block has three good replicas
/// (none on `dead`), `bad`'s a fresh file that it serves correctly, and
/// nothing left in its quarantine; and asserts all along that a fresh file
/// there, once seen, is never deleted (a deletion meant for the corrupt
/// replica must not take it). Then watches that it all stays so.
fn wait_for_good_replicas_on(
    cluster: &Cluster,
    bad: usize,
    dead: Option<usize>,
    corrupt_files: &BTreeMap<String, FileIdentity>,
    local: &[u8],
) {
    let blocks = cluster.located_blocks("/f");
    let dead_address = dead.map(|index| cluster.minion_address(index).to_string());
    let bad_address = cluster.minion_address(bad).to_string();
    // The fresh copy of each block seen in `bad`'s blocks/ so far.
    let mut fresh: BTreeMap<String, FileIdentity> = BTreeMap::new();
    let mut watch_fresh = |cluster: &Cluster| {
        for (block, corrupt) in corrupt_files {
            let found = cluster
                .block_file_of(bad, block)
                .and_then(|path| identity_of(&path));
            if let Some(seen) = fresh.get(block) {
                assert_eq!(
                    found,
                    Some(*seen),
                    "the fresh copy of {block} on minion-{bad} was deleted or replaced"
                );
            } else if let Some(found) = found.filter(|found| found != corrupt) {
                fresh.insert(block.clone(), found);
            }
        }
    };
    let healed = |cluster: &Cluster| {
        let Some(located) = try_blocks(cluster, "/f") else {
            return false;
        };
        located.iter().all(|block| {
            block.locations.len() == 3
                && block
                    .locations
                    .iter()
                    .all(|l| Some(&l.address) != dead_address.as_ref())
        }) && corrupt_files.keys().all(|block| {
            quarantined_replica_file(cluster.minion_data_dir(bad), parse_block(block)).is_none()
        }) && fsck_is_healthy(cluster, 1, located.len())
    };
    let started = Instant::now();
    loop {
        watch_fresh(cluster);
        if healed(cluster) {
            break;
        }
        assert!(
            started.elapsed() < HEAL_TIMEOUT,
            "the corrupt replicas on minion-{bad} were not replaced within {HEAL_TIMEOUT:?}: {}",
            String::from_utf8_lossy(&cluster.dfs(["fsck"]).stdout)
        );
        std::thread::sleep(POLL);
    }
    eprintln!("healed in {:?}", started.elapsed());
    // Served and counted: minion `bad` is a location of each block it held,
    // and answers a read of it with the right bytes.
    for block in &blocks {
        let name = block.id.to_string();
        if !corrupt_files.contains_key(&name) {
            continue;
        }
        let located = cluster.located_blocks("/f");
        let now = located
            .iter()
            .find(|b| b.id == block.id)
            .expect("the block is still /f's");
        assert!(
            now.locations.iter().any(|l| l.address == bad_address),
            "{name}: minion-{bad} is no location: {:?}",
            now.locations
        );
        match read_block_from(&bad_address, replica_of(block), block.length_bytes) {
            MinionRead::Data(data) => assert!(
                data == expected_bytes(local, block),
                "{name} on minion-{bad} serves wrong bytes"
            ),
            other => panic!("{name} on minion-{bad}: {other:?}"),
        }
    }
    // And it stays: later rounds and resent deletions leave it alone.
    let settled = Instant::now();
    while settled.elapsed() < STABLE_WATCH {
        watch_fresh(cluster);
        std::thread::sleep(POLL);
    }
    assert_eq!(
        fresh.len(),
        corrupt_files.len(),
        "a fresh copy of each: {fresh:?}"
    );
    assert!(healed(cluster), "still healthy after {STABLE_WATCH:?}");
}

fn parse_block(name: &str) -> dfs_engine::msg::BlockId {
    let hex = name.strip_prefix("blk_").expect("a block name");
    dfs_engine::msg::BlockId(u64::from_str_radix(hex, 16).expect("a block id"))
}

/// Makes minion `bad` read each of `blocks` from its disk, so it finds its
/// corrupt replicas, quarantines and reports them (as a reader sent there
/// first would); a replica already replaced may answer with good bytes.
fn read_each_from(cluster: &Cluster, bad: usize, blocks: &[LocatedBlock]) {
    let address = cluster.minion_address(bad).to_string();
    for block in blocks {
        let _ = read_block_from(&address, replica_of(block), block.length_bytes);
    }
}

/// Three minions, replication 3, a corrupt replica of every block
/// on one of them: the only place for a good copy is the minion holding the
/// bad one. It is deleted first, a good copy lands there, and that copy is
/// served, counted and never deleted by the deletion meant for the bad one,
/// even though that minion carries out deletions slowly (a failpoint): a
/// copy sent before the deletion is confirmed would land first, and the
/// deletion, which names the same block and generation, would take it.
#[test]
fn a_good_copy_replaces_a_corrupt_replica_on_the_only_target_and_stays() {
    let mut cluster = Cluster::start(ClusterOptions {
        // The slow deletion stalls the minion's heartbeats: it stays live.
        stale_after: Some("3s"),
        dead_after: Some("6s"),
        ..options(3)
    });
    cluster.allow_error("corrupt");
    cluster.allow_error("checksum");
    let bad = 0;
    cluster.stop_minion(bad);
    cluster.set_minion_environment(bad, "DFS_FAILPOINT", Some("delete-delay:sleep=1500"));
    cluster.start_minion(bad);
    cluster.wait_for_live_minions(3);
    let local = put(&cluster, "f", 41, 6 * MIB);
    let local_bytes = std::fs::read(&local).expect("read the local file");
    let blocks = cluster.located_blocks("/f");
    let corrupt_files: BTreeMap<String, FileIdentity> = block_names(&blocks)
        .into_iter()
        .map(|block| {
            let identity = flip_a_byte(&cluster, bad, &block);
            (block, identity)
        })
        .collect();
    read_each_from(&cluster, bad, &blocks);
    assert_reads_back(&cluster, "f", &local, "copy");
    wait_for_good_replicas_on(&cluster, bad, None, &corrupt_files, &local_bytes);
    assert_reads_back(&cluster, "f", &local, "after");
}

/// Four minions, replication 3; a byte flipped in every block file
/// of one minion, another minion killed. The only target left for each
/// block is the minion with its corrupt replica: fsck becomes healthy
/// (three good replicas per block) within a bound, and the file reads back.
#[test]
fn a_small_cluster_heals_around_corrupt_replicas_after_a_minion_dies() {
    let mut cluster = Cluster::start(options(4));
    cluster.allow_error("corrupt");
    cluster.allow_error("checksum");
    let local = put(&cluster, "f", 61, 4 * MIB);
    let local_bytes = std::fs::read(&local).expect("read the local file");
    let blocks = cluster.located_blocks("/f");
    let held_by = |index: usize| -> Vec<LocatedBlock> {
        let address = cluster.minion_address(index);
        blocks
            .iter()
            .filter(|b| b.locations.iter().any(|l| l.address == address))
            .cloned()
            .collect()
    };
    let bad = (0..4)
        .max_by_key(|&index| held_by(index).len())
        .expect("four minions");
    let bad_blocks = held_by(bad);
    let corrupt_files: BTreeMap<String, FileIdentity> = block_names(&bad_blocks)
        .into_iter()
        .map(|block| {
            let identity = flip_a_byte(&cluster, bad, &block);
            (block, identity)
        })
        .collect();
    // Another minion dies before the corrupt replicas are found (were they
    // found first, the fourth minion could take the copies in time).
    let dead = (0..4)
        .filter(|&index| index != bad)
        .max_by_key(|&index| held_by(index).len())
        .expect("another minion");
    cluster.kill_minion(dead);
    cluster.wait_for(
        || report_of(&cluster, dead).is_some_and(|m| m.state == MinionState::Dead),
        Duration::from_secs(20),
        "the killed minion to be dead",
    );
    // The read gets the right bytes; the corrupt replicas are found.
    assert_reads_back(&cluster, "f", &local, "copy");
    read_each_from(&cluster, bad, &bad_blocks);
    wait_for_good_replicas_on(&cluster, bad, Some(dead), &corrupt_files, &local_bytes);
    // Every block is on the three minions left.
    let survivors: Vec<usize> = (0..4).filter(|&index| index != dead).collect();
    let on_disk = holders_on_disk(&cluster, &survivors, &block_names(&blocks));
    for block in block_names(&blocks) {
        assert_eq!(on_disk.get(&block).map_or(0, BTreeSet::len), 3, "{block}");
    }
    assert_reads_back(&cluster, "f", &local, "after");
}

// --- a returning minion's old block list decides no surplus ---

/// A minion dies and its blocks are copied back to three replicas on the
/// others; it returns with its block files gone and its full block report
/// late (a failpoint stalls it). Until the report is in, the master still
/// lists it as holding its old blocks, four "replicas" each: no good copy
/// elsewhere may be deleted for that. In the end every block has its three
/// replicas where they were.
#[test]
fn a_returning_minions_old_block_list_deletes_no_good_copy() {
    let mut cluster = Cluster::start(ClusterOptions {
        // Live for 2 s without heartbeats: the window in which the late
        // report leaves the master with the old list of a live minion.
        stale_after: Some("2s"),
        dead_after: Some("4s"),
        ..options(4)
    });
    let locals: Vec<(&str, PathBuf)> = [("a", 51, 3 * MIB + 99), ("b", 52, 2 * MIB)]
        .into_iter()
        .map(|(name, seed, length)| (name, put(&cluster, name, seed, length)))
        .collect();
    let blocks: Vec<String> = locals
        .iter()
        .flat_map(|(name, _)| block_names(&cluster.located_blocks(&format!("/{name}"))))
        .collect();
    let returning = (0..4)
        .max_by_key(|&index| holders_on_disk(&cluster, &[index], &blocks).len())
        .expect("four minions");
    let returning_address = cluster.minion_address(returning).to_string();
    let others: Vec<usize> = (0..4).filter(|&index| index != returning).collect();
    cluster.kill_minion(returning);
    cluster.wait_for(
        || {
            locals.iter().all(|(name, _)| {
                try_blocks(&cluster, &format!("/{name}")).is_some_and(|located| {
                    located.iter().all(|b| {
                        b.locations.len() == 3
                            && b.locations.iter().all(|l| l.address != returning_address)
                    })
                })
            }) && holders_on_disk(&cluster, &others, &blocks)
                .values()
                .all(|holders| holders.len() == 3)
        },
        HEAL_TIMEOUT,
        "every block back to three replicas on the others",
    );
    let healed = holders_on_disk(&cluster, &others, &blocks);
    assert_eq!(healed.len(), blocks.len());

    // Its disk was replaced meanwhile: no block file is left there.
    for path in cluster.block_files(returning) {
        std::fs::remove_file(&path).expect("remove a block file");
    }
    cluster.set_minion_environment(
        returning,
        "DFS_FAILPOINT",
        Some("block-report-delay:sleep=3000"),
    );
    cluster.start_minion(returning);
    let started = Instant::now();
    let mut joined = false;
    loop {
        assert_eq!(
            holders_on_disk(&cluster, &others, &blocks),
            healed,
            "a good replica was deleted {:?} after the minion returned, before its block report was in",
            started.elapsed()
        );
        let state = report_of(&cluster, returning).map(|m| m.state);
        joined |= state == Some(MinionState::Joining);
        if joined && state == Some(MinionState::Live) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the returning minion never reported (joined: {joined}, state {state:?})"
        );
        std::thread::sleep(POLL);
    }
    eprintln!("its report was in after {:?}", started.elapsed());
    cluster.wait_for(
        || fsck_is_healthy(&cluster, 2, blocks.len()),
        HEAL_TIMEOUT,
        "fsck to be healthy once the report is in",
    );
    // Every block keeps its three replicas where they were, and the
    // returning minion, which holds nothing, is no location.
    assert_eq!(holders_on_disk(&cluster, &others, &blocks), healed);
    assert!(cluster.block_files(returning).is_empty());
    for (name, local) in &locals {
        for block in cluster.located_blocks(&format!("/{name}")) {
            assert_eq!(block.locations.len(), 3, "{} of /{name}", block.id);
            let holders: BTreeSet<usize> = block
                .locations
                .iter()
                .map(|l| index_of(&cluster, &l.address))
                .collect();
            assert_eq!(Some(&holders), healed.get(&block.id.to_string()));
        }
        assert_reads_back(&cluster, name, local, "after");
    }
}
