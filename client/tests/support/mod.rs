//! What the write-path and read-path suites share: a library client whose
//! warnings are kept for the test, a file of random bytes put through it,
//! the minion behind an address, and which
//! minions this process holds TCP connections to, read from /proc so a test
//! can see whom the library is talking to without asking the library.

use std::sync::{Arc, Mutex};

use dfs_client::{Client, Unseekable, WriteOptions};
use dfs_engine::path::DfsPath;
use dfs_testkit::{random_bytes, Cluster, ClusterOptions};

pub const CHUNK: usize = dfs_engine::limits::CHUNK_BYTES as usize;
pub const MIB: usize = 1 << 20;

/// `options` with minions that stay live through heartbeats a loaded
/// machine delays: stale after 10 s of silence, not 10 intervals (2 s), so
/// placement and replica order don't change under a test's feet.
pub fn patient(options: ClusterOptions) -> ClusterOptions {
    ClusterOptions {
        stale_after: options.stale_after.or(Some("10s")),
        ..options
    }
}

pub fn path(text: &str) -> DfsPath {
    DfsPath::parse(text).unwrap_or_else(|e| panic!("{text:?} is not a path: {e}"))
}

/// The warnings a client printed (a replica that failed while others stored
/// the block), in order.
#[derive(Clone, Default)]
pub struct Warnings(Arc<Mutex<Vec<String>>>);

impl Warnings {
    /// The warnings so far, removed from the list.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().expect("warnings lock"))
    }
}

/// A library client of `cluster` whose warnings go to the returned list.
pub fn connect(cluster: &Cluster) -> (Client, Warnings) {
    let mut client = Client::connect(cluster.master_address()).expect("connect to the master");
    let warnings = Warnings::default();
    let sink = warnings.clone();
    client.set_warning_sink(Arc::new(move |line: &str| {
        sink.0.lock().expect("warnings lock").push(line.to_string())
    }));
    (client, warnings)
}

/// The index of the cluster's minion at `address`.
pub fn minion_index(cluster: &Cluster, address: &str) -> usize {
    (0..cluster.minion_count())
        .find(|&index| cluster.minion_address(index) == address)
        .unwrap_or_else(|| panic!("no minion of the cluster listens at {address}"))
}

fn port_of(address: &str) -> u16 {
    address
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("{address:?} is not HOST:PORT"))
}

/// One established TCP connection of this process to a minion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinionConnection {
    pub minion_index: usize,
    /// The socket's inode: the same number means the same connection.
    pub socket_inode: u64,
}

/// This process's established TCP connections to the cluster's minions.
pub fn connections_to_minions(cluster: &Cluster) -> Vec<MinionConnection> {
    let ports: Vec<u16> = (0..cluster.minion_count())
        .map(|index| port_of(cluster.minion_address(index)))
        .collect();
    let own_sockets = own_socket_inodes();
    let mut found = Vec::new();
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        // Columns: sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
        for line in text.lines().skip(1) {
            let columns: Vec<&str> = line.split_whitespace().collect();
            if columns.len() < 10 || columns[3] != "01" {
                continue; // not ESTABLISHED
            }
            let Some(remote_port) = columns[2]
                .rsplit_once(':')
                .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok())
            else {
                continue;
            };
            let Ok(inode) = columns[9].parse::<u64>() else {
                continue;
            };
            if !own_sockets.contains(&inode) {
                continue;
            }
            let Some(minion_index) = ports.iter().position(|&port| port == remote_port) else {
                continue;
            };
            let connection = MinionConnection {
                minion_index,
                socket_inode: inode,
            };
            // The kernel may list a socket twice when the table changes
            // while it is read.
            if !found.contains(&connection) {
                found.push(connection);
            }
        }
    }
    found
}

/// Inodes of the sockets among this process's open files.
fn own_socket_inodes() -> Vec<u64> {
    let entries = std::fs::read_dir("/proc/self/fd").expect("list /proc/self/fd");
    entries
        .flatten()
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .filter_map(|target| {
            target
                .to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// Writes `/f` of `length_bytes` random bytes (from `seed`) in blocks of
/// `block_bytes` through the library, with no warning; returns its bytes.
#[allow(dead_code)]
pub fn put_file(cluster: &Cluster, block_bytes: usize, length_bytes: usize, seed: u64) -> Vec<u8> {
    let (mut client, warnings) = connect(cluster);
    let data = random_bytes(seed, length_bytes);
    let options = WriteOptions {
        block_bytes: Some(block_bytes as u64),
        ..WriteOptions::default()
    };
    client
        .put(&path("/f"), options, &mut Unseekable(data.as_slice()))
        .expect("put /f");
    assert_eq!(warnings.take(), Vec::<String>::new());
    data
}
