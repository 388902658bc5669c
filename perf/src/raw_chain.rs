//! The raw chain: the least a three-replica write on one machine can do.
//! A sender streams a file into the first of three loopback TCP hops; each
//! hop stores what it receives in its own file and passes it to the next.
//! No protocol, no checksums, no fsync: the ceiling of the minions' data path
//! on this machine.
//!
//! The bytes never come to user space: each hop splices socket -> pipe,
//! `tee`s that pipe to a second one, and splices one pipe into its file and
//! the other into the next socket, the cheapest way Linux has to store and
//! forward the same bytes.

use std::fs::File;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::thread;

use anyhow::{bail, Context, Result};

/// Size of each pipe and of each buffer: one piece in flight per hop.
const PIECE_BYTES: usize = 1 << 20;

/// Pushes `source` through one hop per target; returns when every target
/// file is complete (not synced).
pub fn run(source: &Path, targets: &[PathBuf]) -> Result<()> {
    let listeners = targets
        .iter()
        .map(|_| TcpListener::bind("127.0.0.1:0").context("bind a hop"))
        .collect::<Result<Vec<_>>>()?;
    let addresses = listeners
        .iter()
        .map(|listener| listener.local_addr().context("hop address"))
        .collect::<Result<Vec<_>>>()?;
    let mut hops = Vec::with_capacity(targets.len());
    for (index, (listener, target)) in listeners.into_iter().zip(targets).enumerate() {
        let next = addresses.get(index + 1).copied();
        let target = target.clone();
        hops.push(
            thread::Builder::new()
                .name(format!("hop-{index}"))
                .spawn(move || hop(&listener, &target, next))
                .context("start a hop thread")?,
        );
    }
    let first = *addresses.first().context("no targets")?;
    let sent = send_file(source, first);
    let mut result = sent;
    for hop in hops {
        let joined = hop
            .join()
            .map_err(|_| anyhow::anyhow!("a hop thread panicked"))
            .and_then(|result| result);
        result = result.and(joined);
    }
    result
}

fn send_file(source: &Path, target: SocketAddr) -> Result<()> {
    let file = File::open(source).with_context(|| format!("open {}", source.display()))?;
    let mut left = file.metadata().context("stat source")?.len();
    let socket = TcpStream::connect(target).context("connect to the first hop")?;
    while left > 0 {
        let count = left.min(PIECE_BYTES as u64) as usize;
        // SAFETY: both descriptors are open for the whole call; a null
        // offset uses and advances the file position.
        let sent = unsafe {
            libc::sendfile(
                socket.as_raw_fd(),
                file.as_raw_fd(),
                std::ptr::null_mut(),
                count,
            )
        };
        match sent {
            0 => bail!("the source file ended early"),
            n if n > 0 => left -= n as u64,
            _ => {
                let error = std::io::Error::last_os_error();
                if error.kind() != std::io::ErrorKind::Interrupted {
                    return Err(error).context("sendfile");
                }
            }
        }
    }
    socket.shutdown(Shutdown::Write).context("end the stream")?;
    Ok(())
}

fn hop(listener: &TcpListener, target: &Path, next: Option<SocketAddr>) -> Result<()> {
    let (socket, _) = listener.accept().context("accept upstream")?;
    let file = File::create(target).with_context(|| format!("create {}", target.display()))?;
    let next = next
        .map(|address| TcpStream::connect(address).context("connect downstream"))
        .transpose()?;
    hop_splice(&socket, &file, next.as_ref())?;
    if let Some(next) = next {
        next.shutdown(Shutdown::Write).context("end the stream")?;
    }
    Ok(())
}

struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

fn pipe() -> Result<Pipe> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds is a writable array of two descriptors, as pipe2 needs.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("pipe");
    }
    // SAFETY: pipe2 succeeded, so both are fresh descriptors we own.
    let pipe = unsafe {
        Pipe {
            read: OwnedFd::from_raw_fd(fds[0]),
            write: OwnedFd::from_raw_fd(fds[1]),
        }
    };
    // SAFETY: fcntl on a descriptor we own.
    let resized = unsafe { libc::fcntl(pipe.write.as_raw_fd(), libc::F_SETPIPE_SZ, PIECE_BYTES) };
    if resized < PIECE_BYTES as libc::c_int {
        return Err(std::io::Error::last_os_error()).context("grow a pipe");
    }
    Ok(pipe)
}

fn retry_interrupted(mut call: impl FnMut() -> isize, what: &str) -> Result<usize> {
    loop {
        let result = call();
        if result >= 0 {
            return Ok(result as usize);
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error).context(what.to_string());
        }
    }
}

fn splice(source: RawFd, target: RawFd, count: usize) -> Result<usize> {
    retry_interrupted(
        || {
            // SAFETY: both descriptors are open; null offsets use the
            // descriptors' own positions.
            unsafe {
                libc::splice(
                    source,
                    std::ptr::null_mut(),
                    target,
                    std::ptr::null_mut(),
                    count,
                    libc::SPLICE_F_MOVE | libc::SPLICE_F_MORE,
                )
            }
        },
        "splice",
    )
}

/// Moves exactly `count` bytes from a pipe to `target`.
fn splice_all(source: RawFd, target: RawFd, mut count: usize) -> Result<()> {
    while count > 0 {
        let moved = splice(source, target, count)?;
        if moved == 0 {
            bail!("splice moved nothing");
        }
        count -= moved;
    }
    Ok(())
}

fn hop_splice(socket: &TcpStream, file: &File, next: Option<&TcpStream>) -> Result<()> {
    let received = pipe()?;
    let copy = next.map(|_| pipe()).transpose()?;
    loop {
        let count = splice(socket.as_raw_fd(), received.write.as_raw_fd(), PIECE_BYTES)?;
        if count == 0 {
            return Ok(());
        }
        if let (Some(copy), Some(next)) = (&copy, next) {
            // The copy pipe is empty and as large as the other, so one tee
            // takes all: a second tee would duplicate the first bytes.
            let teed = retry_interrupted(
                // SAFETY: both are pipe descriptors we own.
                || unsafe {
                    libc::tee(received.read.as_raw_fd(), copy.write.as_raw_fd(), count, 0)
                },
                "tee",
            )?;
            if teed != count {
                bail!("tee took {teed} of {count} bytes");
            }
            splice_all(received.read.as_raw_fd(), file.as_raw_fd(), count)?;
            splice_all(copy.read.as_raw_fd(), next.as_raw_fd(), count)?;
        } else {
            splice_all(received.read.as_raw_fd(), file.as_raw_fd(), count)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_reaches_every_target() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = dir.path().join("source");
        let data: Vec<u8> = (0..3 * PIECE_BYTES + 12_345)
            .map(|i| (i as u8).wrapping_mul(7))
            .collect();
        std::fs::write(&source, &data).expect("write source");
        let targets: Vec<PathBuf> = (0..3)
            .map(|i| dir.path().join(format!("target-{i}")))
            .collect();
        run(&source, &targets).expect("chain");
        for target in &targets {
            assert!(
                std::fs::read(target).expect("read") == data,
                "{}",
                target.display()
            );
        }
    }
}
