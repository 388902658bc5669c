//! The only module that touches io_uring: the per-core runtime, sockets,
//! block files, timers and the buffer types the kernel reads from while an
//! operation runs. Everything here is `compio` (pinned in the workspace) and
//! single-threaded: futures are `!Send` and live on the core that made them.
//!
//! Ownership rule: an operation owns its buffer until the kernel is done
//! with it. A cancelled operation (a timeout, a dropped future) keeps its
//! buffer alive inside the runtime until the completion arrives, so callers
//! get a buffer back only from a finished operation and allocate a fresh one
//! otherwise.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::path::Path;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use compio::buf::{BufResult, IntoInner, IoBuf, IoVectoredBuf};
use compio::io::{AsyncRead, AsyncReadAtExt, AsyncWrite, AsyncWriteAtExt, AsyncWriteExt};
use dfs_engine::tls::{DataTrust, ServerTls, HANDSHAKE_RECORD};

/// A connection's socket, plain or TLS (`--tls-data`). TLS runs here on
/// buffers (rustls moves no bytes itself): records are read and written
/// with the socket's own operations.
pub(crate) struct Stream {
    socket: compio::net::TcpStream,
    layer: Layer,
}

enum Layer {
    /// `pushback`: bytes read to tell TLS from plain, handed out first.
    Plain {
        pushback: RefCell<Vec<u8>>,
    },
    Tls(Box<RefCell<TlsState>>),
}

/// A listening socket owned by one core.
pub(crate) struct Listener(compio::net::TcpListener);

/// An open block file.
pub(crate) struct UringFile(compio::fs::File);

/// Runs `future` to its end on a new single-threaded io_uring runtime, on
/// the calling thread.
pub(crate) fn run_core<F: Future>(future: F) -> io::Result<F::Output> {
    let runtime = compio::runtime::Runtime::new()?;
    Ok(runtime.block_on(future))
}

/// Runs `future` on this core until it ends by itself.
pub(crate) fn spawn(future: impl Future<Output = ()> + 'static) {
    compio::runtime::spawn(future).detach();
}

/// `future`'s output, or `None` when `duration` passed first (the future is
/// then dropped, which cancels its operation).
pub(crate) async fn timeout<T>(duration: Duration, future: impl Future<Output = T>) -> Option<T> {
    compio::runtime::time::timeout(duration, future).await.ok()
}

pub(crate) async fn sleep(duration: Duration) {
    compio::runtime::time::sleep(duration).await;
}

/// Runs two futures of this core at once and waits for both.
pub(crate) async fn join<A: Future, B: Future>(first: A, second: B) -> (A::Output, B::Output) {
    let mut first = pin!(first);
    let mut second = pin!(second);
    let mut first_output = None;
    let mut second_output = None;
    poll_fn(|context| {
        if first_output.is_none() {
            if let Poll::Ready(output) = first.as_mut().poll(context) {
                first_output = Some(output);
            }
        }
        if second_output.is_none() {
            if let Poll::Ready(output) = second.as_mut().poll(context) {
                second_output = Some(output);
            }
        }
        if first_output.is_some() && second_output.is_some() {
            if let (Some(a), Some(b)) = (first_output.take(), second_output.take()) {
                return Poll::Ready((a, b));
            }
        }
        Poll::Pending
    })
    .await
}

/// Runs all `futures` of this core at once; their outputs in their order.
pub(crate) async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    poll_fn(|context| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(context) {
                    Poll::Ready(ready) => *output = Some(ready),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    // Every output is set once the loop above saw no pending future.
    outputs.into_iter().flatten().collect()
}

/// Which of two futures finished first.
pub(crate) enum Either<A, B> {
    First(A),
    Second(B),
}

/// Polls both futures until one is ready; the other is left as it is (so a
/// pinned future passed by `&mut` can be polled again later).
pub(crate) async fn race<A: Future + Unpin, B: Future>(
    first: &mut A,
    second: B,
) -> Either<A::Output, B::Output> {
    let mut second = pin!(second);
    poll_fn(|context| {
        if let Poll::Ready(output) = Pin::new(&mut *first).poll(context) {
            return Poll::Ready(Either::First(output));
        }
        if let Poll::Ready(output) = second.as_mut().poll(context) {
            return Poll::Ready(Either::Second(output));
        }
        Poll::Pending
    })
    .await
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what} timed out"))
}

impl Listener {
    /// Takes over a bound, listening std socket (set up by the caller with
    /// SO_REUSEPORT so that every core has its own).
    pub(crate) fn from_std(listener: std::net::TcpListener) -> io::Result<Listener> {
        listener.set_nonblocking(true)?;
        compio::net::TcpListener::from_std(listener).map(Listener)
    }

    /// The next connection. Keep the future until it is ready: dropping an
    /// accept the kernel is completing loses (and resets) that connection.
    pub(crate) async fn accept(&self) -> io::Result<(Stream, SocketAddr)> {
        let (stream, peer) = self.0.accept().await?;
        stream.set_nodelay(true)?;
        Ok((Stream::plain(stream), peer))
    }
}

impl Stream {
    fn plain(socket: compio::net::TcpStream) -> Stream {
        Stream {
            socket,
            layer: Layer::Plain {
                pushback: RefCell::new(Vec::new()),
            },
        }
    }

    /// Connects to the first address `address` resolves to that answers.
    pub(crate) async fn connect(address: &str, wait: Duration) -> io::Result<Stream> {
        // Resolution is std's: addresses here are IP:port in practice, so it
        // does not block on DNS.
        let mut last_error = None;
        for socket_address in address.to_socket_addrs()? {
            match timeout(wait, compio::net::TcpStream::connect(socket_address)).await {
                Some(Ok(stream)) => {
                    stream.set_nodelay(true)?;
                    return Ok(Stream::plain(stream));
                }
                Some(Err(error)) => last_error = Some(error),
                None => last_error = Some(timed_out(&format!("connect to {socket_address}"))),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("address resolved to nothing")))
    }

    /// `connect`, then TLS to a minion `trust` accepts (`--tls-data`).
    pub(crate) async fn connect_tls(
        address: &str,
        wait: Duration,
        trust: &DataTrust,
    ) -> io::Result<Stream> {
        let stream = Stream::connect(address, wait).await?;
        let session = trust.session().map_err(io::Error::other)?;
        stream
            .into_tls(rustls::Connection::Client(session), Vec::new(), wait)
            .await
    }

    /// Reads the connection's first bytes and tells TLS (a handshake
    /// record) from plain; TLS is run with `server` when there is one.
    /// Waits `wait` for the bytes.
    pub(crate) async fn accept_layer(
        self,
        server: Option<&ServerTls>,
        wait: Duration,
    ) -> io::Result<Stream> {
        let first = vec![0u8; FIRST_READ_BYTES];
        let (count, mut first) = self.read_socket(first, 0..FIRST_READ_BYTES, wait).await?;
        first.truncate(count);
        match (first.first(), server) {
            (None, _) => Ok(self),
            (Some(&HANDSHAKE_RECORD), Some(server)) => {
                let session = server.session().map_err(io::Error::other)?;
                self.into_tls(rustls::Connection::Server(session), first, wait)
                    .await
            }
            (Some(&HANDSHAKE_RECORD), None) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a TLS handshake, but this minion has no cluster key (--key) to serve TLS with",
            )),
            (Some(_), _) => {
                if let Layer::Plain { pushback } = &self.layer {
                    *pushback.borrow_mut() = first;
                }
                Ok(self)
            }
        }
    }

    /// Runs the handshake of `session` on this connection, all of it within
    /// `wait`; `received`: bytes of it read already.
    async fn into_tls(
        self,
        session: rustls::Connection,
        received: Vec<u8>,
        wait: Duration,
    ) -> io::Result<Stream> {
        timeout(wait, self.handshake(session, received, wait))
            .await
            .ok_or_else(|| timed_out("TLS handshake"))?
    }

    async fn handshake(
        self,
        mut session: rustls::Connection,
        received: Vec<u8>,
        wait: Duration,
    ) -> io::Result<Stream> {
        session.set_buffer_limit(None);
        let stream = Stream {
            socket: self.socket,
            layer: Layer::Tls(Box::new(RefCell::new(TlsState {
                session,
                incoming: received,
                closed: false,
            }))),
        };
        loop {
            stream.send_tls(wait).await?;
            if !stream.with_tls(|tls| tls.session.is_handshaking()) {
                return Ok(stream);
            }
            if !stream.receive_tls(wait).await? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection during the TLS handshake",
                ));
            }
        }
    }

    /// True when TLS protects the connection.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self.layer, Layer::Tls(_))
    }

    /// True when nothing is waiting to be read and the peer has not closed
    /// the connection, as far as the socket knows now: an idle connection
    /// that may carry the next request.
    pub(crate) fn is_quiet(&self) -> bool {
        let nothing_held = match &self.layer {
            Layer::Plain { pushback } => pushback.borrow().is_empty(),
            Layer::Tls(tls) => {
                let tls = tls.borrow();
                tls.incoming.is_empty() && tls.session.wants_read()
            }
        };
        nothing_held && dfs_engine::rpc::is_socket_quiet(&self.socket)
    }

    /// Reads what is available into `buffer[range]` (at least one byte, or
    /// 0 at the end of the stream). The buffer is lost on error or timeout.
    pub(crate) async fn read_into(
        &self,
        mut buffer: Vec<u8>,
        range: Range<usize>,
        wait: Duration,
    ) -> io::Result<(usize, Vec<u8>)> {
        match &self.layer {
            Layer::Plain { pushback } => {
                let held = std::mem::take(&mut *pushback.borrow_mut());
                if held.is_empty() {
                    return self.read_socket(buffer, range, wait).await;
                }
                let target = buffer.get_mut(range).unwrap_or_default();
                let count = held.len().min(target.len());
                target[..count].copy_from_slice(&held[..count]);
                *pushback.borrow_mut() = held[count..].to_vec();
                Ok((count, buffer))
            }
            Layer::Tls(_) => loop {
                let target = buffer.get_mut(range.clone()).unwrap_or_default();
                if <[u8]>::is_empty(target) {
                    return Ok((0, buffer));
                }
                if let Some(count) = self.with_tls(|tls| tls.plaintext(target))? {
                    return Ok((count, buffer));
                }
                if !self.receive_tls(wait).await? {
                    self.with_tls(|tls| tls.closed = true);
                }
            },
        }
    }

    /// Reads exactly `length` bytes into a new buffer.
    pub(crate) async fn read_exact(&self, length: usize, wait: Duration) -> io::Result<Vec<u8>> {
        let mut buffer = vec![0u8; length];
        let mut filled = 0;
        while filled < length {
            let (count, returned) = self.read_into(buffer, filled..length, wait).await?;
            buffer = returned;
            if count == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            filled += count;
        }
        Ok(buffer)
    }

    /// Writes all of `buffer`.
    pub(crate) async fn write_all<T: IoBuf>(&self, buffer: T, wait: Duration) -> io::Result<T> {
        if let Layer::Tls(_) = &self.layer {
            self.with_tls(|tls| tls.session.writer().write_all(buffer.as_init()))?;
            self.send_tls(wait).await?;
            return Ok(buffer);
        }
        let mut writer = &self.socket;
        let BufResult(result, buffer) = timeout(wait, writer.write_all(buffer))
            .await
            .ok_or_else(|| timed_out("write"))?;
        result.map(|()| buffer)
    }

    /// Writes all the pieces of `buffer`, in order.
    pub(crate) async fn write_vectored_all<T: IoVectoredBuf>(
        &self,
        buffer: T,
        wait: Duration,
    ) -> io::Result<T> {
        if let Layer::Tls(_) = &self.layer {
            // Encrypted a chunk or so at a time, so the ciphertext held
            // stays small.
            for piece in buffer.iter_slice() {
                self.with_tls(|tls| tls.session.writer().write_all(piece))?;
                if self.with_tls(|tls| tls.session.wants_write()) {
                    self.send_tls(wait).await?;
                }
            }
            self.send_tls(wait).await?;
            return Ok(buffer);
        }
        let mut writer = &self.socket;
        let BufResult(result, buffer) = timeout(wait, writer.write_vectored_all(buffer))
            .await
            .ok_or_else(|| timed_out("write"))?;
        result.map(|()| buffer)
    }

    /// Ends our direction of the connection, so an answer written before is
    /// not destroyed by a reset when we close.
    pub(crate) async fn shutdown_write(&self) {
        if let Layer::Tls(_) = &self.layer {
            self.with_tls(|tls| tls.session.send_close_notify());
            let _ = self
                .send_tls(Duration::from_millis(dfs_engine::limits::IO_TIMEOUT_MS))
                .await;
        }
        let mut writer = &self.socket;
        let _ = writer.shutdown().await;
    }

    async fn read_socket(
        &self,
        buffer: Vec<u8>,
        range: Range<usize>,
        wait: Duration,
    ) -> io::Result<(usize, Vec<u8>)> {
        let mut reader = &self.socket;
        let BufResult(result, slice) = timeout(wait, reader.read(buffer.slice(range)))
            .await
            .ok_or_else(|| timed_out("read"))?;
        Ok((result?, slice.into_inner()))
    }

    /// Runs `f` on the TLS state (never across an await).
    fn with_tls<R>(&self, f: impl FnOnce(&mut TlsState) -> R) -> R {
        match &self.layer {
            Layer::Tls(tls) => f(&mut tls.borrow_mut()),
            // Invariant: only called on TLS connections.
            Layer::Plain { .. } => unreachable!("a TLS operation on a plain connection"),
        }
    }

    /// Sends all the TLS records the session has ready.
    async fn send_tls(&self, wait: Duration) -> io::Result<()> {
        loop {
            let records = self.with_tls(TlsState::records)?;
            if records.is_empty() {
                return Ok(());
            }
            let mut writer = &self.socket;
            let BufResult(result, _) = timeout(wait, writer.write_all(records))
                .await
                .ok_or_else(|| timed_out("write"))?;
            result?;
        }
    }

    /// Reads more TLS records from the socket and processes what came;
    /// false when the peer closed its side.
    async fn receive_tls(&self, wait: Duration) -> io::Result<bool> {
        let held = self.with_tls(|tls| !tls.incoming.is_empty());
        if !held {
            let buffer = vec![0u8; TLS_READ_BYTES];
            let (count, mut buffer) = self.read_socket(buffer, 0..TLS_READ_BYTES, wait).await?;
            if count == 0 {
                return Ok(false);
            }
            buffer.truncate(count);
            self.with_tls(|tls| tls.incoming = buffer);
        }
        self.with_tls(TlsState::process)?;
        // Answers the protocol itself asks for (an alert, a key update).
        self.send_tls(wait).await?;
        Ok(true)
    }
}

/// Bytes of the first read of an accepted connection (TLS or plain?).
const FIRST_READ_BYTES: usize = 4096;
/// Bytes of each read of TLS records.
const TLS_READ_BYTES: usize = 64 * 1024;

/// A TLS session and the records read for it and not yet taken.
struct TlsState {
    session: rustls::Connection,
    incoming: Vec<u8>,
    /// The peer closed the socket.
    closed: bool,
}

impl TlsState {
    /// Plaintext into `target`: `Some(count)` (0 at the end of the stream),
    /// or `None` when more records must be read first.
    fn plaintext(&mut self, target: &mut [u8]) -> io::Result<Option<usize>> {
        match self.session.reader().read(target) {
            Ok(count) => Ok(Some(count)),
            // A close without TLS's own end is an end like any other:
            // frames carry their lengths, so a cut frame is caught above.
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                Ok((self.closed && self.incoming.is_empty()).then_some(0))
            }
            Err(error) => Err(error),
        }
    }

    /// Feeds the held records to the session, as much as it takes now.
    fn process(&mut self) -> io::Result<()> {
        let mut records = self.incoming.as_slice();
        while !records.is_empty() {
            let taken = self.session.read_tls(&mut records)?;
            self.session
                .process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if taken == 0 {
                break;
            }
            // Plaintext waiting to be read: take the rest after it.
            if !self.session.wants_read() {
                break;
            }
        }
        let left = records.len();
        let used = self.incoming.len() - left;
        self.incoming.drain(..used);
        Ok(())
    }

    /// The records ready to send.
    fn records(&mut self) -> io::Result<Vec<u8>> {
        let mut records = Vec::new();
        while self.session.wants_write() {
            self.session.write_tls(&mut records)?;
        }
        Ok(records)
    }
}

impl UringFile {
    /// Creates a new file; fails when it exists.
    pub(crate) async fn create_new(path: &Path) -> io::Result<UringFile> {
        compio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .await
            .map(UringFile)
    }

    /// Opens a file or directory for reading (and, for a directory, syncing).
    pub(crate) async fn open(path: &Path) -> io::Result<UringFile> {
        compio::fs::File::open(path).await.map(UringFile)
    }

    /// Takes over an open std file (a block a `BlockReader` checked).
    pub(crate) fn from_std(file: std::fs::File) -> UringFile {
        // SAFETY: into_raw_fd hands over the only owner of an open descriptor.
        UringFile(unsafe { compio::fs::File::from_raw_fd(file.into_raw_fd()) })
    }

    /// Tells the kernel that `length` bytes from `offset` are read soon and
    /// in order: it starts reading them from the disk now (in the
    /// background) and reads ahead further. Advice only: failure changes
    /// nothing but speed.
    pub(crate) fn advise_sequential(&self, offset: u64, length: u64) {
        let (Ok(offset), Ok(length)) = (i64::try_from(offset), i64::try_from(length)) else {
            return;
        };
        let fd = self.0.as_raw_fd();
        for advice in [libc::POSIX_FADV_SEQUENTIAL, libc::POSIX_FADV_WILLNEED] {
            // SAFETY: fadvise on a descriptor we own; no memory is involved.
            unsafe { libc::posix_fadvise(fd, offset, length, advice) };
        }
    }

    /// Starts writing back `length` bytes from `offset` without waiting for
    /// them, so that a later `sync_data` finds little left to do. A hint
    /// like `advise_sequential`: it may block only while the device queue
    /// is full, which is the back-pressure a durable write wants anyway.
    pub(crate) fn start_writeback(&self, offset: u64, length: u64) {
        let (Ok(offset), Ok(length)) = (i64::try_from(offset), i64::try_from(length)) else {
            return;
        };
        // SAFETY: sync_file_range on a descriptor we own; no memory is involved.
        unsafe {
            libc::sync_file_range(
                self.0.as_raw_fd(),
                offset,
                length,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
    }

    pub(crate) async fn write_vectored_all_at<T: IoVectoredBuf>(
        &mut self,
        buffer: T,
        offset: u64,
    ) -> io::Result<T> {
        let BufResult(result, buffer) = self.0.write_vectored_all_at(buffer, offset).await;
        result.map(|()| buffer)
    }

    pub(crate) async fn write_all_at(&mut self, buffer: Vec<u8>, offset: u64) -> io::Result<()> {
        let BufResult(result, _) = self.0.write_all_at(buffer, offset).await;
        result
    }

    /// Fills `buffer[range]` from `offset`. `UnexpectedEof` when the file
    /// ends first. The buffer is lost on error.
    pub(crate) async fn read_exact_at(
        &self,
        buffer: Vec<u8>,
        range: Range<usize>,
        offset: u64,
    ) -> io::Result<Vec<u8>> {
        let BufResult(result, slice) = self.0.read_exact_at(buffer.slice(range), offset).await;
        result.map(|()| slice.into_inner())
    }

    pub(crate) async fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data().await
    }

    pub(crate) async fn sync_all(&self) -> io::Result<()> {
        self.0.sync_all().await
    }
}

pub(crate) async fn rename(source: &Path, target: &Path) -> io::Result<()> {
    compio::fs::rename(source, target).await
}

/// Bytes shared by operations that only read them (a file write and a
/// socket send of the same received frames), as a list of ranges.
pub(crate) struct SharedPieces {
    pub(crate) bytes: Rc<Vec<u8>>,
    pub(crate) ranges: Vec<Range<usize>>,
}

impl IoVectoredBuf for SharedPieces {
    fn iter_slice(&self) -> impl Iterator<Item = &[u8]> {
        self.ranges
            .iter()
            .map(|range| self.bytes.get(range.clone()).unwrap_or_default())
    }
}

/// Pieces of a shared buffer sent between bytes of our own: frames
/// forwarded as they arrived, after the requests that must go before them
/// and before the one that follows them.
pub(crate) struct Framed {
    pub(crate) before: Vec<u8>,
    pub(crate) pieces: SharedPieces,
    pub(crate) after: Vec<u8>,
}

impl IoVectoredBuf for Framed {
    fn iter_slice(&self) -> impl Iterator<Item = &[u8]> {
        let pieces = &self.pieces;
        let shared = pieces
            .ranges
            .iter()
            .map(|range| pieces.bytes.get(range.clone()).unwrap_or_default());
        std::iter::once(self.before.as_slice())
            .chain(shared)
            .chain(std::iter::once(self.after.as_slice()))
    }
}

/// Frames to send: each header followed by its piece of `payload`.
pub(crate) struct FrameBatch {
    pub(crate) headers: Vec<[u8; dfs_engine::wire::FRAME_HEADER_BYTES]>,
    pub(crate) payload: Vec<u8>,
    pub(crate) ranges: Vec<Range<usize>>,
}

impl IoVectoredBuf for FrameBatch {
    fn iter_slice(&self) -> impl Iterator<Item = &[u8]> {
        self.headers
            .iter()
            .zip(&self.ranges)
            .flat_map(|(header, range)| {
                [
                    header.as_slice(),
                    self.payload.get(range.clone()).unwrap_or_default(),
                ]
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_waits_for_both_and_keeps_their_order() {
        let outputs = run_core(async {
            join(
                async {
                    sleep(Duration::from_millis(20)).await;
                    1
                },
                async { 2 },
            )
            .await
        })
        .expect("runtime");
        assert_eq!(outputs, (1, 2));
    }

    #[test]
    fn shared_pieces_and_frame_batches_list_their_slices_in_order() {
        let pieces = SharedPieces {
            bytes: Rc::new(b"abcdefgh".to_vec()),
            ranges: vec![1..3, 5..8, 9..12],
        };
        let slices: Vec<&[u8]> = pieces.iter_slice().collect();
        assert_eq!(
            slices,
            vec![&b"bc"[..], b"fgh", b""],
            "out of range is empty"
        );

        let batch = FrameBatch {
            headers: vec![[1; 32], [2; 32]],
            payload: b"xyz".to_vec(),
            ranges: vec![0..2, 2..3],
        };
        let slices: Vec<&[u8]> = batch.iter_slice().collect();
        assert_eq!(slices, vec![&[1; 32][..], b"xy", &[2; 32][..], b"z"]);
        assert_eq!(batch.total_len(), 67);
    }

    #[test]
    fn files_write_read_and_sync_through_the_ring() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("file");
        let read = run_core(async {
            let mut file = UringFile::create_new(&path).await.expect("create");
            assert!(UringFile::create_new(&path).await.is_err(), "exists");
            let pieces = SharedPieces {
                bytes: Rc::new(b"0123456789".to_vec()),
                ranges: vec![0..3, 7..10],
            };
            file.write_vectored_all_at(pieces, 0).await.expect("write");
            file.write_all_at(b"!".to_vec(), 6).await.expect("write");
            file.sync_data().await.expect("sync");
            let file = UringFile::open(&path).await.expect("open");
            file.read_exact_at(vec![0; 9], 1..8, 0).await.expect("read")
        })
        .expect("runtime");
        assert_eq!(&read[1..8], b"012789!");
    }
}
