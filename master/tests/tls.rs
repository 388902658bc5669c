//! TLS on the connections to the master (`dfs_engine::tls`): with a key,
//! what a client says to the master cannot be read on the way, and a
//! meddler who ends TLS on each side is found out by the proofs, which
//! cover each session's channel binding. With `--tls-data`, block data to
//! and between minions is encrypted too, and only minions whose
//! certificate the cluster's data authority signed are trusted. Real
//! processes; the observers and meddlers are TCP relays in the test.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::thread;

use dfs_engine::msg::{BlockId, Credentials, Generation, MinionRequest, MinionResponse};
use dfs_engine::rpc::Connection;
use dfs_engine::tls::{self, DataAuthority, ServerTls, HANDSHAKE_RECORD};
use dfs_engine::wire::{FrameHeader, FRAME_HEADER_BYTES};
use dfs_testkit::keys::keyed_cluster;
use dfs_testkit::{binary, utf8, Cluster, ClusterOptions, MinionProcess};

fn one_minion() -> ClusterOptions {
    ClusterOptions {
        minions: 1,
        replication: Some(1),
        ..ClusterOptions::default()
    }
}

/// `dfs ARGS` as a client of `cluster` that reaches its master at `master`.
fn dfs_via(cluster: &Cluster, master: &str, args: &[&str]) -> Output {
    Command::new(binary("dfs"))
        .env_remove("DFS_MASTER")
        .env("DFS_IDENTITY", cluster.identity_env())
        .env("DFS_MASTER_WAIT", "0s")
        .arg("--master")
        .arg(master)
        .args(args)
        .output()
        .expect("run dfs")
}

fn succeeded(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// What an observer on the path saw the clients send: every connection's
/// bytes toward the master, in order.
#[derive(Clone, Default)]
struct Seen {
    connections: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Seen {
    fn contains(&self, needle: &[u8]) -> bool {
        self.connections
            .lock()
            .expect("seen")
            .iter()
            .any(|bytes| bytes.windows(needle.len()).any(|window| window == needle))
    }

    fn first_bytes(&self) -> Vec<u8> {
        self.connections
            .lock()
            .expect("seen")
            .iter()
            .filter_map(|bytes| bytes.first().copied())
            .collect()
    }
}

/// A relay to `target` that records what clients send through it; its
/// address.
fn observer(target: &str) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let seen = Seen::default();
    let recorder = seen.clone();
    let target = target.to_string();
    thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(&target) else {
                continue;
            };
            let index = {
                let mut connections = recorder.connections.lock().expect("seen");
                connections.push(Vec::new());
                connections.len() - 1
            };
            let (mut client_in, mut server_out) = (
                client.try_clone().expect("clone"),
                server.try_clone().expect("clone"),
            );
            let record = recorder.clone();
            thread::spawn(move || {
                let mut buffer = [0u8; 16 * 1024];
                while let Ok(read) = client_in.read(&mut buffer) {
                    if read == 0 {
                        break;
                    }
                    // Recorded before it goes on, so all of it is seen by
                    // the time the other side answers.
                    record.connections.lock().expect("seen")[index]
                        .extend_from_slice(&buffer[..read]);
                    if server_out.write_all(&buffer[..read]).is_err() {
                        break;
                    }
                }
                let _ = server_out.shutdown(std::net::Shutdown::Write);
            });
            let (mut server_in, mut client_out) = (server, client);
            thread::spawn(move || {
                let _ = std::io::copy(&mut server_in, &mut client_out);
                let _ = client_out.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (address, seen)
}

/// The names a client sends the master, as an observer would look for
/// them.
const SECRET_NAME: &str = "payroll-2026-do-not-read";

#[test]
fn with_a_key_an_observer_sees_no_name_a_client_sends_the_master() {
    let (_keys, cluster) = keyed_cluster(one_minion());
    let (relay, seen) = observer(cluster.master_address());
    let directory = format!("/{SECRET_NAME}");
    succeeded(&dfs_via(&cluster, &relay, &["mkdir", &directory]), "mkdir");
    let listed = dfs_via(&cluster, &relay, &["ls", "/"]);
    succeeded(&listed, "ls");
    assert!(String::from_utf8_lossy(&listed.stdout).contains(SECRET_NAME));
    let firsts = seen.first_bytes();
    assert!(!firsts.is_empty(), "the clients went through the observer");
    assert!(
        firsts.iter().all(|byte| *byte == HANDSHAKE_RECORD),
        "every connection opens with a TLS handshake: {firsts:x?}"
    );
    assert!(
        !seen.contains(SECRET_NAME.as_bytes()),
        "the observer read a name the client sent"
    );
}

#[test]
fn without_a_key_the_same_observer_reads_the_names() {
    // The observer is able to see: without a key nothing is encrypted, as
    // the README says.
    let cluster = Cluster::start(one_minion());
    let (relay, seen) = observer(cluster.master_address());
    let directory = format!("/{SECRET_NAME}");
    succeeded(&dfs_via(&cluster, &relay, &["mkdir", &directory]), "mkdir");
    assert!(seen.contains(SECRET_NAME.as_bytes()));
    assert!(seen.first_bytes().iter().all(|byte| *byte == b'D'));
}

/// Relays one frame from `from` to `to`; false when `from` closed.
fn relay_frame(from: &mut impl Read, to: &mut impl Write) -> bool {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    if from.read_exact(&mut header).is_err() {
        return false;
    }
    let Ok(decoded) = FrameHeader::decode(&header) else {
        return false;
    };
    let mut payload = vec![0u8; decoded.payload_bytes as usize];
    if from.read_exact(&mut payload).is_err() {
        return false;
    }
    to.write_all(&header)
        .and_then(|()| to.write_all(&payload))
        .and_then(|()| to.flush())
        .is_ok()
}

/// A meddler between clients and `master`: it ends each client's TLS with
/// a certificate of its own, opens TLS to the master itself and relays the
/// frames in between, reading them all. Its address, and how many frames
/// it relayed from the master.
fn meddler(master: &str) -> (String, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let relayed = Arc::new(Mutex::new(0usize));
    let counter = Arc::clone(&relayed);
    let master = master.to_string();
    thread::spawn(move || {
        let certificate = ServerTls::self_signed().expect("the meddler's certificate");
        for client in listener.incoming().flatten() {
            let Ok((mut from_client, mut to_client)) = certificate.accept(client) else {
                continue;
            };
            let Ok((mut from_master, mut to_master)) = TcpStream::connect(&master)
                .map_err(|_| ())
                .and_then(|stream| tls::connect(stream).map_err(|_| ()))
            else {
                continue;
            };
            // Request, answer, request, answer: the clients wait for each.
            while relay_frame(&mut from_client, &mut to_master) {
                if !relay_frame(&mut from_master, &mut to_client) {
                    break;
                }
                *counter.lock().expect("count") += 1;
            }
        }
    });
    (address, relayed)
}

#[test]
fn a_meddler_that_ends_tls_on_each_side_is_found_out_by_the_client() {
    let (_keys, cluster) = keyed_cluster(one_minion());
    let (address, relayed) = meddler(cluster.master_address());
    let listed = dfs_via(&cluster, &address, &["ls", "/"]);
    let stderr = String::from_utf8_lossy(&listed.stderr);
    assert!(!listed.status.success(), "served through a meddler");
    assert!(
        stderr.contains("does not prove the key this identity was issued with"),
        "{stderr}"
    );
    // The meddler did relay the master's challenge: the proof over the
    // other session's binding is what failed, not the relay.
    assert!(*relayed.lock().expect("count") >= 1);
    // The client never sent its own proof through it, and the master
    // still serves the client directly.
    succeeded(
        &dfs_via(&cluster, cluster.master_address(), &["ls", "/"]),
        "ls",
    );
}

/// A free loopback port's address (free when asked).
fn free_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").to_string()
}

/// A keyed cluster of one minion that the master and clients reach
/// through `relay(minion's address)`, which gives the address to
/// advertise; `tls_data` runs master and minion with `--tls-data`.
fn one_relayed_minion(
    tls_data: bool,
    relay: impl FnOnce(&str) -> String,
) -> (tempfile::TempDir, Cluster, MinionProcess) {
    let master_arguments: &[&'static str] = if tls_data { &["--tls-data"] } else { &[] };
    let (keys, cluster) = keyed_cluster(ClusterOptions {
        minions: 0,
        replication: Some(1),
        master_arguments: master_arguments.to_vec(),
        ..ClusterOptions::default()
    });
    let listen = free_address();
    let advertised = relay(&listen);
    let key = keys.path().join("cluster.key");
    let mut extra = vec!["--key", utf8(&key), "--advertise", &advertised];
    if tls_data {
        extra.push("--tls-data");
    }
    let minion = MinionProcess::start(
        cluster.master_address(),
        &[cluster.dir().join("relayed-minion")],
        &listen,
        &extra,
        &cluster.dir().join("relayed-minion.log"),
    );
    cluster.wait_for_live_minions(1);
    (keys, cluster, minion)
}

/// `one_relayed_minion` with an observer as the relay, and what it sees.
fn observed_minion(tls_data: bool) -> (tempfile::TempDir, Cluster, MinionProcess, Seen) {
    let mut seen = None;
    let (keys, cluster, minion) = one_relayed_minion(tls_data, |listen| {
        let (address, recorded) = observer(listen);
        seen = Some(recorded);
        address
    });
    (keys, cluster, minion, seen.expect("the observer"))
}

/// A file whose every 63 bytes say something an observer could find.
fn telltale_file(dir: &std::path::Path) -> (std::path::PathBuf, &'static [u8]) {
    const LINE: &[u8] = b"quarterly numbers nobody outside may read, line after line....\n";
    let path = dir.join("telltale");
    std::fs::write(&path, LINE.repeat(64 * 1024)).expect("write the file");
    (path, LINE)
}

/// `telltale_file` put into the cluster at `remote` with `dfs put`, which
/// must succeed.
fn put_telltale(cluster: &Cluster, remote: &str) -> (std::path::PathBuf, &'static [u8]) {
    let (local, line) = telltale_file(cluster.dir());
    succeeded(
        &dfs_via(
            cluster,
            cluster.master_address(),
            &["put", utf8(&local), remote],
        ),
        "put",
    );
    (local, line)
}

#[test]
fn with_tls_data_an_observer_of_a_minion_sees_no_block_data() {
    let (_keys, cluster, _minion, seen) = observed_minion(true);
    let (local, line) = put_telltale(&cluster, "/telltale");
    let master = cluster.master_address();
    let copy = cluster.dir().join("copy");
    succeeded(
        &dfs_via(&cluster, master, &["get", "/telltale", utf8(&copy)]),
        "get",
    );
    assert_eq!(
        std::fs::read(&copy).expect("read the copy"),
        std::fs::read(&local).expect("read the file")
    );
    let sent: usize = seen
        .connections
        .lock()
        .expect("seen")
        .iter()
        .map(Vec::len)
        .sum();
    let length = std::fs::metadata(&local).expect("stat").len() as usize;
    assert!(
        sent > length,
        "the block went through the observer ({sent} bytes)"
    );
    assert!(seen
        .first_bytes()
        .iter()
        .all(|byte| *byte == HANDSHAKE_RECORD));
    assert!(!seen.contains(line), "the observer read the file");
}

#[test]
fn without_tls_data_the_same_observer_reads_block_data() {
    let (_keys, cluster, _minion, seen) = observed_minion(false);
    let (_, line) = put_telltale(&cluster, "/telltale");
    assert!(seen.contains(line), "the observer sees plain block data");
}

#[test]
fn a_minion_without_the_cluster_authority_is_not_trusted_with_data() {
    // A meddler in front of the minion with a certificate of its own (a
    // self-signed one, as the master's, and one of another cluster's
    // authority): the client refuses to send it a byte of data.
    for other_cluster in [false, true] {
        let (_keys, cluster, _minion) = one_relayed_minion(true, |listen| {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let address = listener.local_addr().expect("address").to_string();
            let minion = listen.to_string();
            thread::spawn(move || {
                let certificate = if other_cluster {
                    let key = dfs_engine::auth::ClusterKey::generate().expect("key");
                    DataAuthority::derive(&key)
                        .and_then(|authority| authority.minion_server())
                        .expect("another cluster's minion certificate")
                } else {
                    ServerTls::self_signed().expect("a certificate")
                };
                for client in listener.incoming().flatten() {
                    let Ok((mut from_client, mut to_client)) = certificate.accept(client) else {
                        continue;
                    };
                    let Ok(server) = TcpStream::connect(&minion) else {
                        continue;
                    };
                    let mut to_minion = server.try_clone().expect("clone");
                    let mut from_minion = server;
                    while relay_frame(&mut from_client, &mut to_minion)
                        && relay_frame(&mut from_minion, &mut to_client)
                    {}
                }
            });
            address
        });
        let (local, _) = telltale_file(cluster.dir());
        let put = dfs_via(
            &cluster,
            cluster.master_address(),
            &["put", utf8(&local), "/x"],
        );
        let stderr = String::from_utf8_lossy(&put.stderr);
        assert!(!put.status.success(), "data went to a meddler");
        assert!(
            stderr.contains("TLS handshake with a minion") && stderr.contains("certificate"),
            "{stderr}"
        );
    }
}

#[test]
fn a_plain_connection_to_a_tls_data_minion_is_told_why_it_is_refused() {
    let (_keys, _cluster, minion) = one_relayed_minion(true, |listen| listen.to_string());
    let mut connection = Connection::open(minion.address()).expect("connect");
    let answer = connection
        .call::<_, MinionResponse>(
            &Credentials::default(),
            MinionRequest::ReadBlock {
                block: BlockId(1),
                generation: Generation(1),
                offset_bytes: 0,
                length_bytes: 1,
            },
        )
        .map(|answer| format!("{answer:?}"))
        .unwrap_or_else(|error| error.to_string());
    assert!(
        answer.contains("PermissionDenied") && answer.contains("only over TLS (--tls-data)"),
        "{answer}"
    );
}

#[test]
fn with_tls_data_pipelines_and_healing_run_over_tls() {
    // Every minion refuses plain connections, so a block forwarded or
    // copied in the clear would be missing a replica.
    let (_keys, mut cluster) = keyed_cluster(ClusterOptions {
        minions: 4,
        replication: Some(3),
        block_size: Some("1M"),
        stale_after: Some("1s"),
        dead_after: Some("3s"),
        master_arguments: vec!["--tls-data"],
        minion_arguments: vec!["--tls-data"],
        ..ClusterOptions::default()
    });
    let (local, _) = put_telltale(&cluster, "/t");
    let master = cluster.master_address().to_string();
    let blocks = cluster.located_blocks("/t");
    assert_eq!(blocks.len(), 4);
    assert!(
        blocks.iter().all(|block| block.locations.len() == 3),
        "every block stored down its whole pipeline: {blocks:?}"
    );
    // A minion dies: its replicas are copied to the one left over.
    let dead = cluster.minion_address(0).to_string();
    cluster.kill_minion(0);
    cluster.wait_for(
        || {
            cluster.located_blocks("/t").iter().all(|block| {
                block.locations.len() == 3
                    && block.locations.iter().all(|minion| minion.address != dead)
            })
        },
        std::time::Duration::from_secs(60),
        "every block back to 3 replicas, copied over TLS",
    );
    let copy = cluster.dir().join("copy");
    succeeded(
        &dfs_via(&cluster, &master, &["get", "/t", utf8(&copy)]),
        "get",
    );
    assert_eq!(
        std::fs::read(&copy).expect("read the copy"),
        std::fs::read(&local).expect("read the file")
    );
}
