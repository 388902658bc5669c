//! TLS on the connections to the master (`dfs_engine::tls`): with a key,
//! what a client says to the master cannot be read on the way, and a
//! meddler who ends TLS on each side is found out by the proofs, which
//! cover each session's channel binding. Real processes; the observer and
//! the meddler are TCP relays in the test.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::thread;

use dfs_engine::tls::{self, ServerTls, HANDSHAKE_RECORD};
use dfs_engine::wire::{FrameHeader, FRAME_HEADER_BYTES};
use dfs_testkit::keys::keyed_cluster;
use dfs_testkit::{binary, Cluster, ClusterOptions};

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

/// A relay to `master` that records what clients send through it; its
/// address.
fn observer(master: &str) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let seen = Seen::default();
    let recorder = seen.clone();
    let master = master.to_string();
    thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(&master) else {
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
                    if read == 0 || server_out.write_all(&buffer[..read]).is_err() {
                        break;
                    }
                    record.connections.lock().expect("seen")[index]
                        .extend_from_slice(&buffer[..read]);
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
