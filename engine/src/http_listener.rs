//! The daemons' HTTP listener (the master's web front, a minion's
//! metrics): at most a fixed number of connections at once (the next is
//! accepted only when a slot is free; the rest wait in the kernel's
//! backlog), each closed once its lifetime is over, whatever it is doing,
//! so slow or idle peers cannot hold the slots; and, when asked, only
//! peers on loopback: others are closed at once, before they take a slot
//! for longer than their accept.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

/// Pause after a failed accept (out of file descriptors, say), so the loop
/// does not spin.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(50);

pub struct BoundedListener {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    lifetime: Duration,
    loopback_only: bool,
}

impl BoundedListener {
    /// Serves at most `connections_max` connections of `lifetime` each,
    /// from loopback peers only when `loopback_only`. The runtime needs
    /// time enabled.
    pub fn new(
        listener: TcpListener,
        connections_max: usize,
        lifetime: Duration,
        loopback_only: bool,
    ) -> Self {
        BoundedListener {
            listener,
            slots: Arc::new(Semaphore::new(connections_max.max(1))),
            lifetime,
            loopback_only,
        }
    }
}

impl Listener for BoundedListener {
    type Io = BoundedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (BoundedStream, SocketAddr) {
        loop {
            // The semaphore is never closed, so this waits for a free slot.
            let Ok(slot) = Arc::clone(&self.slots).acquire_owned().await else {
                std::future::pending::<()>().await;
                continue;
            };
            match self.listener.accept().await {
                Ok((stream, peer)) if self.loopback_only && !peer.ip().is_loopback() => {
                    // Closed unanswered: it may not be served at all.
                    drop((stream, slot));
                }
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let deadline = Box::pin(tokio::time::sleep(self.lifetime));
                    return (
                        BoundedStream {
                            stream,
                            deadline,
                            _slot: slot,
                        },
                        peer,
                    );
                }
                Err(_) => {
                    // Out of descriptors, or a connection reset before it
                    // was accepted: try again shortly.
                    drop(slot);
                    tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// A connection that holds one slot until it is dropped and fails every
/// read and write once its deadline passed (the deadline's timer wakes an
/// idle connection so it goes then, not at its next byte).
pub struct BoundedStream {
    stream: TcpStream,
    deadline: Pin<Box<Sleep>>,
    _slot: OwnedSemaphorePermit,
}

impl BoundedStream {
    fn check_deadline(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the connection's lifetime is over",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

impl AsyncRead for BoundedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check_deadline(cx)?;
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for BoundedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check_deadline(cx)?;
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check_deadline(cx)?;
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Reads one byte, or the error that ends the connection.
    async fn read_byte(stream: &mut BoundedStream) -> io::Result<usize> {
        let mut byte = [0u8; 1];
        std::future::poll_fn(|cx| {
            let mut buf = ReadBuf::new(&mut byte);
            Pin::new(&mut *stream)
                .poll_read(cx, &mut buf)
                .map_ok(|()| buf.filled().len())
        })
        .await
    }

    #[test]
    fn a_connection_holds_its_slot_until_its_lifetime_is_over() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let address = listener.local_addr().expect("the bound address");
            let lifetime = Duration::from_millis(300);
            let mut bounded = BoundedListener::new(listener, 1, lifetime, false);
            let _first_client = std::net::TcpStream::connect(address).expect("connect");
            let _second_client = std::net::TcpStream::connect(address).expect("connect");
            let started = Instant::now();
            let (mut first, _) = bounded.accept().await;
            // The only slot is taken: the second connection waits.
            let waited = tokio::time::timeout(Duration::from_millis(100), bounded.accept()).await;
            assert!(waited.is_err(), "a second connection got a slot");
            // The first, idle, is failed once its lifetime is over.
            let error = read_byte(&mut first).await.expect_err("lifetime over");
            assert_eq!(error.kind(), io::ErrorKind::TimedOut);
            assert!(started.elapsed() >= lifetime, "{:?}", started.elapsed());
            drop(first);
            // Its slot is free again.
            let second = tokio::time::timeout(Duration::from_secs(5), bounded.accept()).await;
            assert!(second.is_ok(), "the freed slot was not given out");
        });
    }
}
