//! One misbehaving peer cannot stop the master: idle connections up to the
//! connection limit do not keep the cluster's clients out (the longest-idle
//! one makes room, and one address holds at most a quarter of the limit),
//! headers that announce the largest payload and send nothing do not pin
//! memory, and connections that trickle bytes or sit idle are closed by the
//! frame deadline and the idle timeout, while minions and clients go on.
//! Raw TCP from 127.0.0.2.. against a real `dfs-master` with real minions.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use dfs_engine::limits::{CONNECTIONS_MAX, FRAME_PAYLOAD_BYTES_MAX, PEER_CONNECTIONS_MAX};
use dfs_engine::msg::{ErrorKind, MasterResponse};
use dfs_engine::wire::{self, FrameKind, CONNECTION_REQUEST_ID};
use dfs_testkit::slow_peer::{
    assert_idle_connection_closed, assert_put_and_get, assert_trickling_connections_closed,
    connect_from, is_closed, loopback, request_header, resident_bytes, thread_names,
};
use dfs_testkit::{wait_for, Cluster, ClusterOptions};

/// How long a cluster command may take while the master is under attack.
const PROMPT: Duration = Duration::from_secs(15);
const WAIT: Duration = Duration::from_secs(20);

#[test]
fn idle_connections_up_to_the_limit_do_not_keep_clients_out() {
    let cluster = Cluster::start(ClusterOptions::default());
    let master = cluster.master_address().to_string();
    let addresses = CONNECTIONS_MAX.div_ceil(PEER_CONNECTIONS_MAX);
    let mut idle: Vec<TcpStream> = Vec::with_capacity(CONNECTIONS_MAX);
    for index in 0..addresses {
        let source = loopback(2 + index as u8);
        idle.extend((0..PEER_CONNECTIONS_MAX).map(|_| connect_from(source, &master)));
    }
    // One more from an address that holds its share (the last one: room
    // was made by closing the oldest connections, of the first address)
    // is answered Busy, as the answer to the connection as a whole. The
    // master takes connections in order, so every one before it was taken.
    let last = loopback(1 + addresses as u8);
    let mut over_share = connect_from(last, &master);
    over_share
        .set_read_timeout(Some(WAIT))
        .expect("set a read timeout");
    let mut buffer = Vec::new();
    let (request_id, answer): (u64, MasterResponse) =
        wire::read_message(&mut over_share, FrameKind::Response, &mut buffer)
            .expect("read the refusal")
            .expect("a refusal, not a bare close");
    assert_eq!(request_id, CONNECTION_REQUEST_ID);
    match answer {
        MasterResponse::Error(error) => {
            assert_eq!(error.kind, ErrorKind::Busy, "{}", error.message);
            assert!(
                error.message.contains(&format!("{last} holds its limit")),
                "{}",
                error.message
            );
        }
        other => panic!("expected Busy, got {other:?}"),
    }

    // The master is at its limit; the cluster's own clients still get in,
    // at once.
    let started = Instant::now();
    cluster.dfs_ok(["mkdir", "/in"]);
    assert_eq!(cluster.dfs_ok(["ls", "/"]), "in/\n");
    assert_put_and_get(&cluster, "in-spite-of-idlers", 7, 300_000);
    assert!(started.elapsed() < PROMPT, "took {:?}", started.elapsed());
    // Room was made by closing the longest-idle connections (the first
    // ones opened), not by refusing or dropping the rest.
    let closed: Vec<usize> = idle
        .iter()
        .enumerate()
        .filter_map(|(index, stream)| is_closed(stream).then_some(index))
        .collect();
    assert!(!closed.is_empty(), "no idle connection made room");
    assert!(
        closed.iter().all(|&index| index < 64),
        "closed were not the longest idle: {closed:?}"
    );
    cluster.wait_for_live_minions(3);
}

/// The numbers of the master's connection threads (`conn-N`), which grow
/// with each connection it takes.
fn connection_numbers(pid: u32) -> impl Iterator<Item = u64> {
    thread_names(pid)
        .into_iter()
        .filter_map(|name| name.strip_prefix("conn-")?.parse().ok())
}

#[test]
fn announced_payloads_do_not_pin_memory() {
    const CONNECTIONS: usize = 200;
    const GROWTH_BYTES_MAX: u64 = 100 << 20;
    let cluster = Cluster::start(ClusterOptions::default());
    let master = cluster.master_address().to_string();
    let pid = cluster.master_pid();
    let resident_before = resident_bytes(pid);
    let connections_before = connection_numbers(pid).max().unwrap_or(0);
    let header = request_header(FRAME_PAYLOAD_BYTES_MAX);
    let announcers: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|_| {
            let mut stream = connect_from(loopback(2), &master);
            stream.write_all(&header).expect("announce a payload");
            stream
        })
        .collect();
    // Every connection has its thread, which reads the header at once and
    // waits for the payload.
    wait_for(
        || {
            connection_numbers(pid)
                .filter(|&n| n > connections_before)
                .count()
                >= CONNECTIONS
        },
        WAIT,
        "a thread per announcing connection",
    );
    let window = Instant::now();
    let mut resident_most = 0;
    while window.elapsed() < Duration::from_secs(1) {
        resident_most = resident_most.max(resident_bytes(pid));
        std::thread::sleep(Duration::from_millis(20));
    }
    let growth = resident_most.saturating_sub(resident_before);
    assert!(
        growth < GROWTH_BYTES_MAX,
        "{CONNECTIONS} connections that announced {FRAME_PAYLOAD_BYTES_MAX} bytes each and sent none grew the master by {} MiB",
        growth >> 20
    );
    assert_eq!(cluster.dfs_ok(["ls", "/"]), "");
    drop(announcers);
}

#[test]
fn trickling_and_idle_connections_are_closed() {
    let cluster = Cluster::start(ClusterOptions {
        master_arguments: vec!["--frame-deadline", "1s", "--idle-timeout", "1s"],
        // Longer than the idle timeout: the minions' kept connections are
        // closed between heartbeats, and they must open new ones quietly.
        heartbeat_interval: "1500ms",
        ..ClusterOptions::default()
    });
    let master = cluster.master_address().to_string();
    assert_trickling_connections_closed(&master, Duration::from_secs(1));
    assert_idle_connection_closed(&master, Duration::from_secs(1));

    // Clients and minions whose kept connections were closed go on.
    assert_put_and_get(&cluster, "after-idle", 7, 300_000);
    let heartbeats_closed = || {
        std::fs::read_to_string(cluster.log_path("master"))
            .expect("read the master log")
            .matches("idle for 1s")
            .count()
    };
    wait_for(
        || heartbeats_closed() >= 6,
        WAIT,
        "idle minion connections to be closed between heartbeats",
    );
    cluster.wait_for_live_minions(3);
    for index in 0..3 {
        let log = std::fs::read_to_string(cluster.log_path(&format!("minion-{index}")))
            .expect("read a minion log");
        assert!(
            !log.contains("retrying every"),
            "minion-{index} lost a heartbeat to a closed connection:\n{log}"
        );
    }
}
