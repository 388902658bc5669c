//! Proves that memory stays bounded by far less than one block: a `put` from
//! standard input and a `get` to standard output of a file four 64 MiB blocks
//! long run with a peak RSS well under one block on the client, and no minion
//! of the pipeline peaks above one block either. Peaks are read from the
//! kernel (`wait4` rusage for the client, `VmHWM` for the minions).

use std::io::{Read, Write};
use std::process::{Child, Stdio};

use dfs_testkit::{Cluster, ClusterOptions, RandomReader};

const FILE_BYTES: u64 = 256 << 20;
const BLOCK_BYTES: u64 = 64 << 20;
/// Far below one block: streaming holds a chunk and socket buffers, not blocks.
const CLIENT_PEAK_BYTES_MAX: u64 = BLOCK_BYTES / 2;
const MINION_PEAK_BYTES_MAX: u64 = BLOCK_BYTES;

/// Waits for `child` and returns its exit status and peak RSS in bytes.
fn wait_with_peak(child: Child) -> (i32, u64) {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid out-parameter.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own child, not yet reaped; the pointers are valid.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    std::mem::forget(child); // reaped above
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (code, usage.ru_maxrss as u64 * 1024)
}

/// The peak resident set of a running process, from /proc.
fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .expect("VmHWM line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmHWM value");
    kib * 1024
}

#[test]
fn put_and_get_of_many_blocks_stay_far_below_one_block_of_memory() {
    let cluster = Cluster::start(ClusterOptions {
        minions: 3,
        block_size: Some("64M"),
        ..ClusterOptions::default()
    });

    let mut put = cluster
        .dfs_command()
        .args(["put", "--no-sync", "-", "/big"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("start dfs put");
    let mut stdin = put.stdin.take().expect("stdin");
    let feeder = std::thread::spawn(move || {
        let mut source = RandomReader::new(7, FILE_BYTES);
        let mut buffer = vec![0u8; 1 << 20];
        let mut crc = 0u32;
        loop {
            let n = source.read(&mut buffer).expect("generate");
            if n == 0 {
                break;
            }
            crc = crc32c::crc32c_append(crc, &buffer[..n]);
            stdin.write_all(&buffer[..n]).expect("feed dfs put");
        }
        crc
    });
    let expected_crc = feeder.join().expect("feeder");
    let (code, put_peak) = wait_with_peak(put);
    assert_eq!(code, 0, "dfs put failed");
    assert_eq!(
        cluster.stat("/big").blocks.len(),
        4,
        "the file spans four blocks"
    );

    let mut get = cluster
        .dfs_command()
        .args(["get", "/big", "-"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start dfs get");
    let mut stdout = get.stdout.take().expect("stdout");
    let mut buffer = vec![0u8; 1 << 20];
    let mut crc = 0u32;
    let mut length = 0u64;
    loop {
        let n = stdout.read(&mut buffer).expect("read dfs get");
        if n == 0 {
            break;
        }
        crc = crc32c::crc32c_append(crc, &buffer[..n]);
        length += n as u64;
    }
    let (code, get_peak) = wait_with_peak(get);
    assert_eq!(code, 0, "dfs get failed");
    assert_eq!(
        (length, crc),
        (FILE_BYTES, expected_crc),
        "read back the same bytes"
    );

    eprintln!("peaks: put {put_peak} get {get_peak}");
    assert!(
        put_peak < CLIENT_PEAK_BYTES_MAX,
        "dfs put peaked at {put_peak} bytes"
    );
    assert!(
        get_peak < CLIENT_PEAK_BYTES_MAX,
        "dfs get peaked at {get_peak} bytes"
    );
    for index in 0..3 {
        let peak = peak_rss_bytes(cluster.minion_pid(index));
        eprintln!("minion {index} peak {peak}");
        assert!(
            peak < MINION_PEAK_BYTES_MAX,
            "minion {index} peaked at {peak} bytes"
        );
    }
}
