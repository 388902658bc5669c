//! A stalled pipeline member (a gray failure: SIGSTOP, so its sockets stay
//! open and the kernel still accepts for it) does not hang a write: the
//! member before it drops it after the pipeline timeout, stores the block
//! alone and names the stalled member (and those behind it) in `Sealed`.
//! Proved with real dfs-minion processes (`--pipeline-timeout 1s`) and a
//! real dfs-master: once through the raw protocol, where the test picks the
//! middle member to stop, and once with `dfs put` of a many-block file
//! while a minion is stopped, which completes and reads back.

use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use dfs_engine::limits::CHUNK_BYTES;
use dfs_engine::msg::{
    BlockId, Credentials, Generation, MinionAddress, MinionId, MinionRequest, MinionResponse,
    ReplicaId,
};
use dfs_engine::rpc::Connection;
use dfs_testkit::{
    assert_files_equal, random_bytes, read_block_from, utf8, wait_for, write_random_file, Cluster,
    ClusterOptions, MinionProcess, MinionRead, Signal,
};

const MIB: u64 = 1 << 20;
const WAIT: Duration = Duration::from_secs(60);

/// A master without minions of its own, and `count` minions started here
/// with a short pipeline timeout.
fn start(count: usize) -> (Cluster, Vec<MinionProcess>) {
    let cluster = Cluster::start(ClusterOptions {
        minions: 0,
        stale_after: Some("10s"),
        ..ClusterOptions::default()
    });
    let minions: Vec<MinionProcess> = (0..count)
        .map(|index| {
            let dir: PathBuf = cluster.dir().join(format!("own-minion-{index}"));
            MinionProcess::start(
                cluster.master_address(),
                &[dir],
                "127.0.0.1:0",
                &["--pipeline-timeout", "1s"],
                &cluster.dir().join(format!("own-minion-{index}.log")),
            )
        })
        .collect();
    cluster.wait_for_live_minions(count);
    (cluster, minions)
}

/// The minions as the master lists them (id and address), in `minions` order.
fn addresses(cluster: &Cluster, minions: &[MinionProcess]) -> Vec<MinionAddress> {
    let reports = cluster.cluster_report();
    minions
        .iter()
        .map(|minion| {
            let report = reports
                .iter()
                .find(|report| report.address == minion.address())
                .unwrap_or_else(|| panic!("{} is not registered", minion.address()));
            MinionAddress {
                id: report.id,
                address: report.address.clone(),
            }
        })
        .collect()
}

fn tmp_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("tmp")).map_or(0, |entries| entries.count())
}

#[test]
fn a_stopped_middle_member_is_dropped_and_the_block_is_stored_before_it() {
    let (cluster, minions) = start(3);
    let targets = addresses(&cluster, &minions);
    let block = BlockId(0x57a11);
    let replica = ReplicaId {
        block,
        generation: Generation(0x57a),
    };
    // Far more than the socket buffers between two members hold, so the
    // first member's forwards stall mid-block.
    let data = random_bytes(5, 24 * MIB as usize);

    let mut connection = Connection::open(&targets[0].address).expect("connect");
    let credentials = Credentials::default();
    connection
        .send(
            &credentials,
            MinionRequest::WriteBlock {
                block,
                generation: replica.generation,
                downstream: targets[1..].to_vec(),
                sync: true,
            },
        )
        .expect("send WriteBlock");
    connection.flush().expect("flush WriteBlock");
    minions[1].signal(Signal::Stop);
    for chunk in data.chunks(CHUNK_BYTES as usize) {
        connection
            .send_data(chunk, crc32c::crc32c(chunk))
            .expect("send a chunk: the first member keeps taking data");
    }
    let answer: MinionResponse = connection
        .call(
            &credentials,
            MinionRequest::SealBlock {
                block,
                length_bytes: data.len() as u64,
            },
        )
        .expect("the seal is answered");
    let MinionResponse::Sealed { stored, failed } = answer else {
        panic!("expected Sealed, got {answer:?}");
    };
    assert_eq!(
        stored,
        vec![targets[0].id],
        "only the first member stored it"
    );
    let failed: Vec<(MinionId, String)> = failed
        .into_iter()
        .map(|failure| (failure.minion.id, failure.error.message))
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert_eq!(failed[0].0, targets[1].id, "{failed:?}");
    assert!(failed[0].1.contains("stalled"), "{failed:?}");
    assert_eq!(failed[1].0, targets[2].id, "{failed:?}");
    assert!(failed[1].1.contains("not reached"), "{failed:?}");
    assert_eq!(
        read_block_from(&targets[0].address, replica, data.len() as u64),
        MinionRead::Data(data.clone()),
        "the first member has the whole block"
    );

    // Woken up, the stopped member finds its upstream gone and keeps
    // nothing of the block, nor does the one behind it.
    minions[1].signal(Signal::Continue);
    for index in [1, 2] {
        let dir = cluster.dir().join(format!("own-minion-{index}"));
        wait_for(
            || tmp_files(&dir) == 0,
            WAIT,
            &format!("minion {index} to drop its partial copy"),
        );
        assert!(
            matches!(
                read_block_from(&targets[index].address, replica, data.len() as u64),
                MinionRead::Refused(error) if error.kind == dfs_engine::msg::ErrorKind::NotFound
            ),
            "minion {index} has no copy"
        );
    }
    minions[0].wait_for_log("stalled", WAIT);
    for minion in &minions {
        minion.assert_clean_log(&[]);
    }
    cluster.assert_clean_logs();
}

#[test]
fn a_put_completes_while_a_minion_is_stopped_mid_write() {
    let (cluster, mut minions) = start(3);
    let local = cluster.dir().join("source");
    let length_bytes = 64 * MIB + 123;
    write_random_file(&local, 77, length_bytes);
    let victim_dir = cluster.dir().join("own-minion-1");
    let put = {
        let mut command = cluster.dfs_command();
        // Longer than the first member may wait on the two behind it.
        command.env("DFS_IO_TIMEOUT", "10s");
        // Four blocks in flight: members held up behind the stopped one
        // get blamed too, and the put must go on (it ran out of pipelines
        // about one run in seven before the client asked again).
        command.args([
            "put",
            "--blocks-in-flight",
            "4",
            "--block-size",
            "1M",
            utf8(&local),
            "/big",
        ]);
        thread::spawn(move || dfs_testkit::run(&mut command, None, dfs_testkit::COMMAND_TIMEOUT))
    };
    // Stop the victim once the write reached it.
    wait_for(
        || tmp_files(&victim_dir) > 0 || block_count(&victim_dir) > 0,
        WAIT,
        "the write to reach minion 1",
    );
    minions[1].signal(Signal::Stop);
    let output = put.join().expect("the put thread");
    // Stopped, it sealed nothing more: the put went on without it.
    let sealed_before_the_stop = block_count(&victim_dir);
    minions[1].signal(Signal::Continue);
    dfs_testkit::expect_success(&output, "dfs put while a minion is stopped");
    let blocks = cluster.located_blocks("/big").len();
    assert!(
        sealed_before_the_stop < blocks,
        "the put ended before the stop: {sealed_before_the_stop} of {blocks} blocks on the victim"
    );

    let copy = cluster.dir().join("copy");
    cluster.dfs_ok(["get", "/big", utf8(&copy)]);
    assert_files_equal(&copy, &local);
    assert!(minions[1].is_running(), "the stopped minion survives");
    for minion in &minions {
        minion.assert_clean_log(&[]);
    }
    cluster.assert_clean_logs();
}

fn block_count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("blocks")).map_or(0, |subdirectories| {
        subdirectories
            .flatten()
            .map(|subdirectory| {
                std::fs::read_dir(subdirectory.path()).map_or(0, |files| files.count())
            })
            .sum()
    })
}
