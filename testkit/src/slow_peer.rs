//! Peers that hold a daemon's connections without using them (idle ones,
//! ones that trickle a frame a byte at a time, ones that announce a payload
//! and never send it), connecting from loopback addresses other than the
//! cluster's own 127.0.0.1 (all of 127.0.0.0/8 is loopback on Linux), and
//! what a test reads of the daemon meanwhile (its memory, its threads).

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

use dfs_engine::wire::{FrameHeader, FrameKind, FRAME_HEADER_BYTES};

/// How long a test waits between the bytes it trickles.
pub const TRICKLE_INTERVAL: Duration = Duration::from_millis(100);

/// `127.0.0.<last>`, a loopback address that is not the cluster's own.
pub fn loopback(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// A TCP connection to `target` (HOST:PORT, IPv4) from `source`.
pub fn connect_from(source: Ipv4Addr, target: &str) -> TcpStream {
    let target: SocketAddrV4 = target
        .parse()
        .unwrap_or_else(|e| panic!("{target:?} is not an IPv4 HOST:PORT: {e}"));
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(
        fd >= 0,
        "open a socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: fd is a fresh descriptor that nothing else owns; the stream
    // closes it.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let bind = socket_address(SocketAddrV4::new(source, 0));
    let connect = socket_address(target);
    let length = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: both addresses are live sockaddr_in values of `length` bytes.
    unsafe {
        assert_eq!(
            libc::bind(fd, (&bind as *const libc::sockaddr_in).cast(), length),
            0,
            "bind to {source}: {}",
            std::io::Error::last_os_error()
        );
        assert_eq!(
            libc::connect(fd, (&connect as *const libc::sockaddr_in).cast(), length),
            0,
            "connect from {source} to {target}: {}",
            std::io::Error::last_os_error()
        );
    }
    stream
}

fn socket_address(address: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: address.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(address.ip().octets()),
        },
        sin_zero: [0; 8],
    }
}

/// The header of a request frame that announces `payload_bytes` (a
/// correct header: only the payload never comes).
pub fn request_header(payload_bytes: u32) -> [u8; FRAME_HEADER_BYTES] {
    FrameHeader {
        kind: FrameKind::Request,
        flags: 0,
        request_id: 1,
        payload_bytes,
        payload_crc: 0,
    }
    .encode()
}

/// True once the daemon closed `stream` (what it sent before is read and
/// dropped); never blocks.
pub fn is_closed(stream: &TcpStream) -> bool {
    let mut reader = stream;
    stream
        .set_nonblocking(true)
        .expect("make the socket non-blocking");
    let mut scratch = [0u8; 4096];
    let closed = loop {
        match reader.read(&mut scratch) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break true,
        }
    };
    stream
        .set_nonblocking(false)
        .expect("make the socket blocking");
    closed
}

/// Sends a request header to `stream` one byte every `TRICKLE_INTERVAL`
/// until the daemon closes the connection, and returns how long that took
/// from the first byte; panics if it is still open after `timeout`.
pub fn trickle_until_closed(stream: &mut TcpStream, timeout: Duration) -> Duration {
    let header = request_header(100);
    let started = Instant::now();
    let mut sent = 0;
    loop {
        let byte = header[sent % FRAME_HEADER_BYTES];
        if is_closed(stream) || stream.write_all(&[byte]).is_err() {
            return started.elapsed();
        }
        sent += 1;
        assert!(
            started.elapsed() < timeout,
            "a connection trickling a byte every {TRICKLE_INTERVAL:?} is still open after {timeout:?}"
        );
        std::thread::sleep(TRICKLE_INTERVAL);
    }
}

/// Three connections from 127.0.0.2 to `daemon` trickle a header one byte
/// at a time; asserts each is closed about `frame_deadline` after its first
/// byte (not before, and well before five deadlines).
pub fn assert_trickling_connections_closed(daemon: &str, frame_deadline: Duration) {
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let mut stream = connect_from(loopback(2), daemon);
            std::thread::spawn(move || trickle_until_closed(&mut stream, frame_deadline * 10))
        })
        .collect();
    for handle in handles {
        let held = handle.join().expect("a trickling peer");
        assert!(
            held >= frame_deadline - Duration::from_millis(100) && held < frame_deadline * 5,
            "a trickling connection to {daemon} was held {held:?} with a frame deadline of {frame_deadline:?}"
        );
    }
}

/// A connection from 127.0.0.3 to `daemon` that sends nothing; asserts it
/// is closed, not before `idle_timeout` (less a tenth for clocks).
pub fn assert_idle_connection_closed(daemon: &str, idle_timeout: Duration) {
    let idle = connect_from(loopback(3), daemon);
    let opened = Instant::now();
    crate::wait_for(
        || is_closed(&idle),
        idle_timeout * 10,
        &format!("{daemon} to close an idle connection"),
    );
    assert!(
        opened.elapsed() >= idle_timeout - idle_timeout / 10,
        "{daemon} closed an idle connection after {:?}, before its idle timeout of {idle_timeout:?}",
        opened.elapsed()
    );
}

/// Puts a random file of `length_bytes` (from `seed`) at `/<name>` through
/// `dfs` and asserts `dfs get` brings back the same bytes: the cluster
/// still serves clients while peers misbehave.
pub fn assert_put_and_get(cluster: &crate::Cluster, name: &str, seed: u64, length_bytes: u64) {
    let local = cluster.dir().join(name);
    crate::write_random_file(&local, seed, length_bytes);
    let path = format!("/{name}");
    cluster.dfs_ok(["put", crate::utf8(&local), &path]);
    let back = cluster.dir().join(format!("{name}.back"));
    cluster.dfs_ok(["get", &path, crate::utf8(&back)]);
    assert_eq!(
        std::fs::read(&local).expect("read the source"),
        std::fs::read(&back).expect("read the copy"),
        "{name} came back different"
    );
}

/// A field of /proc/PID/status, as the number before its unit.
fn status_number(pid: u32, field: &str) -> u64 {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    text.lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no {field} number in {path}"))
}

/// Resident memory of process `pid`, in bytes (VmRSS).
pub fn resident_bytes(pid: u32) -> u64 {
    status_number(pid, "VmRSS:") * 1024
}

/// The names of the threads of process `pid` (what each set as its name).
pub fn thread_names(pid: u32) -> Vec<String> {
    let tasks = format!("/proc/{pid}/task");
    let entries = std::fs::read_dir(&tasks).unwrap_or_else(|e| panic!("read {tasks}: {e}"));
    entries
        .filter_map(|entry| {
            let path = entry.ok()?.path().join("comm");
            // A thread that ended since the listing has no name to read.
            std::fs::read_to_string(path)
                .ok()
                .map(|name| name.trim_end().to_string())
        })
        .collect()
}
