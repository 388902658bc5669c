//! Read-ahead on real processes: once a reader of a many-block file has
//! handed out a few MiB, the blocks after the one it hands out stream at
//! the same time, each on its own connection, spread over the minions
//! (seen as this process's, or a `dfs` process's, TCP connections to
//! minions while the reader pauses); and `dfs cat` and `dfs get` still
//! return exactly the file when the replicas those streams read have
//! corrupt chunks, when a minion they read from is SIGKILLed mid-stream,
//! or when the streams waited their turn longer than the minion waits for
//! a reader (it closes them; the file has one replica, so a stream that
//! blamed its replica for that would have none left).

mod support;

use std::io::Read;
use std::process::{Child, Stdio};
use std::time::Duration;

use dfs_engine::msg::LocatedBlock;
use dfs_testkit::{assert_bytes_equal, wait_for, Cluster, ClusterOptions, LIVE_TIMEOUT};
use support::{connect, connections_to_minions, minion_index, path, patient, CHUNK, MIB};

/// Larger than what one read-ahead stream buffers (4 MiB), so a stream
/// stays connected while its reader pauses.
const BLOCK: usize = 8 * MIB;
/// Blocks 1 to 3 are read ahead once 4 MiB of block 0 were handed out.
const FILE: usize = 5 * BLOCK + 1234;
/// Where a test pauses its reader: past the point where read-ahead starts.
const PAUSE: usize = 5 * MIB;
/// Longer than a minion waits for a reader that takes nothing.
const MINION_PATIENCE: Duration = Duration::from_secs(60);

fn put_file(cluster: &Cluster, seed: u64) -> Vec<u8> {
    put_blocks(cluster, seed, BLOCK, FILE)
}

fn put_blocks(cluster: &Cluster, seed: u64, block_bytes: usize, length_bytes: usize) -> Vec<u8> {
    support::put_file(cluster, block_bytes, length_bytes, seed)
}

/// `/f`'s blocks once each lists its three replicas.
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
    cluster.located_blocks("/f")
}

/// TCP connections of process `pid` to the cluster's minions, as the
/// minion index of each (read from /proc, as `support` does for this
/// process): established ones, and those the minion closed that the process
/// did not read to their end yet (CLOSE_WAIT: a stream whose minion met a
/// corrupt chunk ahead of it).
fn connections_of(cluster: &Cluster, pid: u32) -> Vec<usize> {
    let ports: Vec<String> = (0..cluster.minion_count())
        .map(|index| {
            let address = cluster.minion_address(index);
            let port: u16 = address
                .rsplit_once(':')
                .and_then(|(_, port)| port.parse().ok())
                .unwrap_or_else(|| panic!("{address:?} is not HOST:PORT"));
            format!("{port:04X}")
        })
        .collect();
    let sockets: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| std::fs::read_link(entry.path()).ok())
                .filter_map(|target| {
                    let target = target.to_str()?;
                    Some(
                        target
                            .strip_prefix("socket:[")?
                            .strip_suffix(']')?
                            .to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let mut found = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let columns: Vec<&str> = line.split_whitespace().collect();
            if columns.len() < 10
                || !["01", "08"].contains(&columns[3])
                || !sockets.iter().any(|s| s == columns[9])
            {
                continue;
            }
            let remote_port = columns[2].rsplit_once(':').map_or("", |(_, port)| port);
            if let Some(index) = ports.iter().position(|port| port == remote_port) {
                found.push(index);
            }
        }
    }
    found
}

/// True when at least four streams (the block handed out and three read
/// ahead) are open.
fn streams_open(minions: &[usize]) -> bool {
    minions.len() >= 4
}

fn two_streams(minions: &[usize]) -> bool {
    minions.len() >= 2
}

/// True when at least four streams are open, to all three minions.
fn streams_spread(minions: &[usize]) -> bool {
    let mut distinct = minions.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    streams_open(minions) && distinct.len() == 3
}

#[test]
fn a_reader_streams_the_blocks_ahead_at_once_from_every_minion() {
    let cluster = Cluster::start(patient(ClusterOptions::default()));
    let data = put_file(&cluster, 1);
    blocks_of_file(&cluster);
    let (mut client, _) = connect(&cluster);
    let mut reader = client.open(&path("/f")).expect("open /f");
    let mut output = vec![0u8; PAUSE];
    reader.read_exact(&mut output).expect("read the head of /f");
    let mut last = Vec::new();
    wait_for(
        || {
            last = connections_to_minions(&cluster)
                .iter()
                .map(|connection| connection.minion_index)
                .collect();
            streams_spread(&last)
        },
        LIVE_TIMEOUT,
        "four streams to three minions while the reader pauses",
    );
    reader
        .read_to_end(&mut output)
        .expect("read the rest of /f");
    assert_bytes_equal(&output, &data, "/f read with read-ahead");
}

/// Runs `dfs ARGS` (printing the file), reads `PAUSE` bytes of its output,
/// waits until its connections to minions (as minion indexes) satisfy
/// `streams`, runs `meanwhile`, then reads the rest; returns everything it
/// printed.
fn read_paused(
    cluster: &mut Cluster,
    args: &[&str],
    pause_bytes: usize,
    streams: fn(&[usize]) -> bool,
    meanwhile: impl FnOnce(&mut Cluster),
) -> Vec<u8> {
    let mut child: Child = cluster
        .dfs_command()
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start dfs {args:?}: {e}"));
    let mut stdout = child.stdout.take().expect("stdout");
    let mut output = vec![0u8; pause_bytes];
    stdout.read_exact(&mut output).expect("read the head");
    let pid = child.id();
    wait_for(
        || streams(&connections_of(cluster, pid)),
        LIVE_TIMEOUT,
        &format!("dfs {args:?} to stream four blocks at once"),
    );
    meanwhile(cluster);
    stdout.read_to_end(&mut output).expect("read the rest");
    let status = child.wait().expect("wait for dfs");
    assert!(status.success(), "dfs {args:?}: {status}");
    output
}

/// Gives two replicas of every block of `/f` (once each lists three) one
/// bad chunk each, at different places: whichever replica a stream starts
/// on, it may have to go to another and resume there, maybe twice. Flips
/// the bits of `mask`: a replica damaged before and never read stays bad.
fn corrupt_two_replicas(cluster: &Cluster, mask: u8) {
    for (index, block) in blocks_of_file(cluster).iter().enumerate() {
        for (replica, chunk) in [(index % 3, 3), ((index + 1) % 3, 100)] {
            let minion = minion_index(cluster, &block.locations[replica].address);
            let file_path = cluster.block_file_path(minion, &block.id.to_string());
            let mut bytes = std::fs::read(&file_path).expect("read a block file");
            // The last block is one short chunk.
            let last = (block.length_bytes as usize - 1) / CHUNK;
            bytes[chunk.min(last) * CHUNK + 7] ^= mask;
            std::fs::write(&file_path, &bytes).expect("write a block file");
        }
    }
}

#[test]
fn cat_and_get_return_the_file_when_replicas_read_ahead_are_corrupt() {
    let mut cluster = Cluster::start(ClusterOptions {
        stale_after: Some("60s"),
        dead_after: Some("120s"),
        // Partly corrupt replicas must stay readable up to their bad chunk.
        minion_arguments: vec!["--scrub-period", "off"],
        ..ClusterOptions::default()
    });
    cluster.allow_error("corrupted blk_");
    let data = put_file(&cluster, 2);
    corrupt_two_replicas(&cluster, 0x40);
    let output = read_paused(&mut cluster, &["cat", "/f"], PAUSE, streams_open, |_| {});
    assert_bytes_equal(&output, &data, "dfs cat /f");
    // The bad replicas met were reported and get replaced; once they are,
    // the new ones are damaged the same way.
    corrupt_two_replicas(&cluster, 0x01);
    let output = read_paused(
        &mut cluster,
        &["get", "/f", "-"],
        PAUSE,
        streams_open,
        |_| {},
    );
    assert_bytes_equal(&output, &data, "dfs get /f -");
    let local = cluster.dir().join("f.copy");
    let local_name = local.to_str().expect("a UTF-8 path");
    cluster.dfs_ok(["get", "/f", local_name]);
    let copy = std::fs::read(&local).expect("read the copy");
    assert_bytes_equal(&copy, &data, "dfs get /f FILE");
}

#[test]
fn cat_and_get_return_the_file_when_a_minion_read_ahead_from_dies() {
    let mut cluster = Cluster::start(ClusterOptions {
        // The dead minion stays listed: streams meet it and go elsewhere.
        stale_after: Some("60s"),
        dead_after: Some("120s"),
        ..ClusterOptions::default()
    });
    let data = put_file(&cluster, 3);
    blocks_of_file(&cluster);
    let output = read_paused(
        &mut cluster,
        &["cat", "/f"],
        PAUSE,
        streams_spread,
        |cluster| cluster.kill_minion(0),
    );
    assert_bytes_equal(&output, &data, "dfs cat /f");
    cluster.start_minion(0);
    cluster.wait_for_live_minions(3);
    blocks_of_file(&cluster);
    let output = read_paused(
        &mut cluster,
        &["get", "/f", "-"],
        PAUSE,
        streams_spread,
        |cluster| cluster.kill_minion(1),
    );
    assert_bytes_equal(&output, &data, "dfs get /f -");
}

#[test]
fn streams_that_waited_longer_than_their_minion_resume_on_the_same_replica() {
    let mut cluster = Cluster::start(patient(ClusterOptions {
        minions: 1,
        replication: Some(1),
        ..ClusterOptions::default()
    }));
    // Blocks larger than a stream's buffer and its sockets' together, so
    // that a paused stream stalls its minion.
    let block_bytes = 32 * MIB;
    let data = put_blocks(&cluster, 4, block_bytes, 3 * block_bytes);
    // Paused at the end of block 0: both blocks in flight come from
    // read-ahead streams, and they stall.
    let output = read_paused(
        &mut cluster,
        &["cat", "/f"],
        block_bytes,
        two_streams,
        |cluster| {
            let log = cluster.log_path("minion-0");
            wait_for(
                || {
                    std::fs::read_to_string(&log).is_ok_and(|text| {
                        text.lines().any(|line| {
                            line.contains(": send to ") && line.contains("closing the idle")
                        })
                    })
                },
                MINION_PATIENCE,
                "the minion to give up on a stalled stream",
            );
        },
    );
    assert_bytes_equal(&output, &data, "dfs cat /f after a long pause");
}
