//! Blocking request/response connections over TCP, as clients and minions use
//! them to talk to the master and to minions; plain, or TLS (`tls`) for a
//! client or minion that has key material to prove to the master.

use std::io::{BufReader, BufWriter, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::limits::{CONNECT_TIMEOUT_MS, IO_TIMEOUT_MS};
use crate::msg::{Credentials, Envelope};
use crate::tls::{self, DataTrust, Half, BINDING_BYTES};
use crate::wire::{self, FrameKind};

/// Resolves `address` and connects with a timeout, trying each resolved address.
pub fn connect(address: &str, timeout: Duration) -> Result<TcpStream> {
    let resolved = address
        .to_socket_addrs()
        .with_context(|| format!("resolve {address}"))?;
    let mut last_error = None;
    for socket_address in resolved {
        match TcpStream::connect_timeout(&socket_address, timeout) {
            Ok(stream) => {
                stream.set_nodelay(true).context("set TCP_NODELAY")?;
                return Ok(stream);
            }
            Err(error) => last_error = Some(error),
        }
    }
    Err(Error::io(
        format!("connect to {address}"),
        last_error.unwrap_or_else(|| std::io::Error::other("address resolved to nothing")),
    ))
}

/// True when nothing is waiting to be read on `socket` and its peer has not
/// closed it, as far as the kernel knows now (a peek that never blocks):
/// an idle connection that may carry the next request.
pub fn is_socket_quiet(socket: &impl AsRawFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: the descriptor is open for the borrow of `socket` and `byte`
    // is a writable buffer of the one byte asked for; MSG_PEEK leaves the
    // data where it is and MSG_DONTWAIT never blocks.
    let peeked = unsafe {
        libc::recv(
            socket.as_raw_fd(),
            std::ptr::addr_of_mut!(byte).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    peeked < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
}

/// One connection to a daemon; requests are answered in order.
pub struct Connection {
    address: String,
    reader: BufReader<Half<TcpStream>>,
    writer: BufWriter<Half<TcpStream>>,
    next_request_id: u64,
    buffer: Vec<u8>,
}

impl Connection {
    pub fn open(address: &str) -> Result<Connection> {
        Connection::open_with_timeouts(
            address,
            Duration::from_millis(CONNECT_TIMEOUT_MS),
            Duration::from_millis(IO_TIMEOUT_MS),
        )
    }

    pub fn open_with_timeouts(
        address: &str,
        connect_timeout: Duration,
        io_timeout: Duration,
    ) -> Result<Connection> {
        let stream = connect(address, connect_timeout)?;
        Connection::from_stream(address, stream, io_timeout)
    }

    /// A connection with TLS (to the master of a cluster with a key), its
    /// handshake done within `io_timeout`.
    pub fn open_tls(
        address: &str,
        connect_timeout: Duration,
        io_timeout: Duration,
    ) -> Result<Connection> {
        Connection::open_secured(address, connect_timeout, io_timeout, tls::connect)
    }

    /// Connects, then runs `handshake` (TLS of some kind) on the stream
    /// with its timeouts set.
    fn open_secured(
        address: &str,
        connect_timeout: Duration,
        io_timeout: Duration,
        handshake: impl FnOnce(TcpStream) -> Result<(Half<TcpStream>, Half<TcpStream>)>,
    ) -> Result<Connection> {
        let stream = connect(address, connect_timeout)?;
        set_timeouts(&stream, io_timeout)?;
        let (reader, writer) =
            handshake(stream).map_err(|error| handshake_error(error, address))?;
        Ok(Connection::from_halves(address, reader, writer))
    }

    pub fn from_stream(
        address: &str,
        stream: TcpStream,
        io_timeout: Duration,
    ) -> Result<Connection> {
        set_timeouts(&stream, io_timeout)?;
        let (reader, writer) = tls::plain(stream);
        Ok(Connection::from_halves(address, reader, writer))
    }

    fn from_halves(address: &str, reader: Half<TcpStream>, writer: Half<TcpStream>) -> Connection {
        Connection {
            address: address.to_string(),
            reader: BufReader::with_capacity(256 * 1024, reader),
            writer: BufWriter::with_capacity(256 * 1024, writer),
            next_request_id: 1,
            buffer: Vec::new(),
        }
    }

    /// A connection to a minion: TLS checked by `trust` when there is one
    /// (`--tls-data`), plain otherwise.
    pub fn open_data(
        address: &str,
        connect_timeout: Duration,
        io_timeout: Duration,
        trust: Option<&DataTrust>,
    ) -> Result<Connection> {
        let Some(trust) = trust else {
            return Connection::open_with_timeouts(address, connect_timeout, io_timeout);
        };
        Connection::open_secured(address, connect_timeout, io_timeout, |stream| {
            trust.connect(stream)
        })
    }

    /// The TLS session's channel binding (`tls`), or `None` on a plain
    /// connection: proofs made on this connection cover it.
    pub fn binding(&self) -> Option<[u8; BINDING_BYTES]> {
        self.reader.get_ref().binding()
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// Changes how long a send or a receive may block.
    pub fn set_io_timeout(&mut self, io_timeout: Duration) -> Result<()> {
        // The reader and the writer share one socket: one setting covers both.
        self.reader
            .get_ref()
            .with_stream(|stream| set_timeouts(stream, io_timeout))
            .map_err(|error| match error {
                Error::Io { cause, .. } => Error::io(
                    format!("set the timeouts of the connection to {}", self.address),
                    cause,
                ),
                other => other,
            })
    }

    /// True when nothing is waiting to be read and the peer has not closed
    /// the connection, as far as the socket knows without blocking: a
    /// connection kept idle may be used for the next request.
    pub fn is_quiet(&mut self) -> bool {
        if !self.reader.buffer().is_empty() || !self.writer.buffer().is_empty() {
            return false;
        }
        let half = self.reader.get_ref();
        half.nothing_buffered() && half.with_stream(|stream| is_socket_quiet(stream))
    }

    /// Sends a request without waiting for its answer (it is buffered until
    /// the next flush or `receive`).
    pub fn send<Q: Serialize>(&mut self, credentials: &Credentials, body: Q) -> Result<u64> {
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        let envelope = Envelope {
            credentials: credentials.clone(),
            body,
        };
        wire::write_message(&mut self.writer, FrameKind::Request, request_id, &envelope)?;
        Ok(request_id)
    }

    /// Sends one data frame (a chunk) with its CRC32C.
    pub fn send_data(&mut self, chunk: &[u8], crc: u32) -> Result<()> {
        wire::write_frame_with_crc(&mut self.writer, FrameKind::Data, 0, 0, chunk, crc)
    }

    pub fn flush(&mut self) -> Result<()> {
        self.writer
            .flush()
            .with_context(|| format!("send to {}", self.address))
    }

    /// Waits for the response to `request_id`, or to the connection as a
    /// whole (`wire::CONNECTION_REQUEST_ID`: a daemon that refused it).
    pub fn receive<R: DeserializeOwned>(&mut self, request_id: u64) -> Result<R> {
        self.flush()?;
        let (id, response) =
            wire::read_message(&mut self.reader, FrameKind::Response, &mut self.buffer)?
                .ok_or_else(|| {
                    Error::Protocol(format!("{} closed the connection", self.address))
                })?;
        // An answer to the connection as a whole (a refusal sent when it
        // was accepted) stands for whatever request was sent on it.
        if id != request_id && id != wire::CONNECTION_REQUEST_ID {
            return Err(Error::Protocol(format!(
                "{} answered request {id}, expected {request_id}",
                self.address
            )));
        }
        Ok(response)
    }

    /// Sends a request and waits for its response.
    pub fn call<Q: Serialize, R: DeserializeOwned>(
        &mut self,
        credentials: &Credentials,
        body: Q,
    ) -> Result<R> {
        let request_id = self.send(credentials, body)?;
        self.receive(request_id)
    }

    /// The buffered reader, for callers that read data frames after a response.
    pub fn reader(&mut self) -> &mut BufReader<Half<TcpStream>> {
        &mut self.reader
    }
}

/// A failed TLS handshake, naming the peer's address.
fn handshake_error(error: Error, address: &str) -> Error {
    match error {
        Error::Io { context, cause } => Error::io(format!("{context} at {address}"), cause),
        other => other,
    }
}

fn set_timeouts(stream: &TcpStream, io_timeout: Duration) -> Result<()> {
    stream
        .set_read_timeout(Some(io_timeout))
        .and_then(|()| stream.set_write_timeout(Some(io_timeout)))
        .context("set socket timeouts")
}

/// 64 random bits from the operating system, for ids.
pub fn random_u64() -> Result<u64> {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut file| file.read_exact(&mut bytes))
        .context("read /dev/urandom")?;
    Ok(u64::from_le_bytes(bytes))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
