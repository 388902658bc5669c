//! One misbehaving peer cannot stop a minion: connections that trickle a
//! frame a byte at a time or sit idle are closed by the frame deadline and
//! the idle timeout (while honest chunk frames under the same deadline go
//! through), and one address holds at most a quarter of the connections,
//! so a good write succeeds while one address tries to open them all.
//! Raw TCP from 127.0.0.2 against real `dfs-minion`s in a `Cluster`.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use dfs_engine::limits::{CONNECTIONS_MAX, PEER_CONNECTIONS_MAX};
use dfs_engine::msg::{BlockId, Credentials, ErrorKind, Generation, MinionRequest, MinionResponse};
use dfs_engine::rpc::Connection;
use dfs_testkit::slow_peer::{
    assert_idle_connection_closed, assert_put_and_get, assert_trickling_connections_closed,
    connect_from, is_closed, loopback,
};
use dfs_testkit::{wait_for, Cluster, ClusterOptions};

/// How long a cluster command may take while the minions are under attack.
const PROMPT: Duration = Duration::from_secs(15);
const WAIT: Duration = Duration::from_secs(20);

#[test]
fn trickling_and_idle_connections_are_closed() {
    let cluster = Cluster::start(ClusterOptions {
        minion_arguments: vec!["--frame-deadline", "1s", "--idle-timeout", "2s"],
        ..ClusterOptions::default()
    });
    let minion = cluster.minion_address(0).to_string();
    assert_trickling_connections_closed(&minion, Duration::from_secs(1));
    assert_idle_connection_closed(&minion, Duration::from_secs(2));

    // Honest chunk frames meet the same deadline with room to spare.
    assert_put_and_get(&cluster, "whole-chunks", 11, 3 << 20);
}

#[test]
fn one_address_gets_a_share_of_the_connections() {
    let cluster = Cluster::start(ClusterOptions::default());
    let minions: Vec<String> = (0..3)
        .map(|index| cluster.minion_address(index).to_string())
        .collect();
    // One address tries to take every connection of every minion.
    let held: Vec<Vec<TcpStream>> = minions
        .iter()
        .map(|minion| {
            (0..CONNECTIONS_MAX)
                .map(|_| connect_from(loopback(2), minion))
                .collect()
        })
        .collect();

    // The minion keeps its share and closes the rest (answering Busy to
    // those that send a request, at most BUSY_ANSWERS_MAX at a time).
    let open_count = |streams: &[TcpStream]| streams.iter().filter(|s| !is_closed(s)).count();
    wait_for(
        || open_count(&held[0]) == PEER_CONNECTIONS_MAX,
        WAIT,
        "the connections over the share to be refused and closed",
    );

    // Now a request over the share hears why.
    let mut refused =
        Connection::from_stream(&minions[0], connect_from(loopback(2), &minions[0]), WAIT)
            .expect("wrap the connection");
    let request = MinionRequest::ReadBlock {
        block: BlockId(1),
        generation: Generation(1),
        offset_bytes: 0,
        length_bytes: 0,
    };
    match refused.call::<_, MinionResponse>(&Credentials::default(), request) {
        Ok(MinionResponse::Error(error)) => {
            assert_eq!(error.kind, ErrorKind::Busy, "{}", error.message);
            assert!(
                error.message.contains(&format!(
                    "limit of {PEER_CONNECTIONS_MAX} connections from 127.0.0.2"
                )),
                "{}",
                error.message
            );
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    // The cluster's own clients, on another address, write and read.
    let started = Instant::now();
    assert_put_and_get(&cluster, "in-spite-of-idlers", 11, 1 << 20);
    assert!(started.elapsed() < PROMPT, "took {:?}", started.elapsed());
    assert_eq!(open_count(&held[0]), PEER_CONNECTIONS_MAX);
}
