//! The data service: accepts connections from clients and from the minion
//! before this one in a pipeline, one thread per connection (at most
//! `connections_max`; further ones get a `Busy` answer), and runs their
//! requests in order.
//!
//! Boundary: bytes from a peer reach the rest of the minion only through
//! `Session`, which checks every frame against its limit before reading it.
//! A peer that breaks the protocol loses its connection, never the daemon.

use std::io::{self, BufReader, BufWriter, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use dfs_engine::block_store::BlockStore;
use dfs_engine::limits::{CHUNK_BYTES, CONNECTIONS_MAX, IO_TIMEOUT_MS};
use dfs_engine::msg::{
    Envelope, ErrorKind, MinionAddress, MinionId, MinionRequest, MinionResponse, RemoteError,
};
use dfs_engine::wire::{self, FrameHeader, FrameKind, FRAME_HEADER_BYTES};
use dfs_engine::{Error, IoContext, Result};

use crate::{pipeline, read};

/// Largest request frame a minion accepts. Its requests are small (a
/// pipeline of REPLICATION_MAX addresses is a few KiB), so the one buffer of
/// a connection never grows past a chunk for them.
pub const REQUEST_FRAME_BYTES_MAX: u32 = 64 * 1024;
/// Connections over the limit waiting for their `Busy` answer; more are
/// closed without one.
const BUSY_QUEUE_MAX: usize = 64;
/// How long a refused connection may take to send its first frame header.
const BUSY_ANSWER_TIMEOUT_MS: u64 = 1_000;
/// Pause after a failed accept (out of file descriptors, say) so the loop
/// does not spin.
const ACCEPT_RETRY_DELAY_MS: u64 = 100;
/// Capacity of a connection's read and write buffers: one data frame.
const SOCKET_BUFFER_BYTES: usize = CHUNK_BYTES as usize + FRAME_HEADER_BYTES;

const _: () = assert!(REQUEST_FRAME_BYTES_MAX <= dfs_engine::limits::CONTROL_FRAME_BYTES_MAX);

/// How to run the data service.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// HOST:PORT to bind; port 0 picks a free one.
    pub listen: String,
    /// HOST:PORT others reach us at; `None`: the bound address.
    pub advertise: Option<String>,
    pub minion: MinionId,
    /// Connections served at once (capped at `limits::CONNECTIONS_MAX`).
    pub connections_max: usize,
}

impl ServeConfig {
    pub fn new(listen: impl Into<String>, minion: MinionId) -> ServeConfig {
        ServeConfig {
            listen: listen.into(),
            advertise: None,
            minion,
            connections_max: CONNECTIONS_MAX,
        }
    }
}

/// What every connection thread shares.
pub(crate) struct Context {
    pub(crate) store: BlockStore,
    /// This minion as others know it, for failure messages.
    pub(crate) me: MinionAddress,
    active: AtomicUsize,
    connections_max: usize,
}

impl Context {
    /// "minion 00ab..@host:port", how failure messages name this minion.
    pub(crate) fn name(&self) -> String {
        minion_name(&self.me)
    }
}

pub(crate) fn minion_name(minion: &MinionAddress) -> String {
    format!("minion {}@{}", minion.id, minion.address)
}

/// A running data service. Dropping it stops accepting connections;
/// connections already open finish on their own.
pub struct DataService {
    local_address: SocketAddr,
    me: MinionAddress,
    stopping: Arc<AtomicBool>,
    accept_thread: Option<JoinHandle<()>>,
}

/// Binds `config.listen` and serves blocks of `store` on it from background threads.
pub fn serve(config: ServeConfig, store: BlockStore) -> Result<DataService> {
    let listener = TcpListener::bind(&config.listen)
        .with_context(|| format!("listen on {}", config.listen))?;
    let local_address = listener.local_addr().context("read the bound address")?;
    let me = MinionAddress {
        id: config.minion,
        address: config
            .advertise
            .unwrap_or_else(|| local_address.to_string()),
    };
    let context = Arc::new(Context {
        store,
        me: me.clone(),
        active: AtomicUsize::new(0),
        connections_max: config.connections_max.clamp(1, CONNECTIONS_MAX),
    });
    let (busy_sender, busy_receiver) = mpsc::sync_channel(BUSY_QUEUE_MAX);
    let busy_context = Arc::clone(&context);
    thread::Builder::new()
        .name("busy-answers".into())
        .spawn(move || answer_busy_connections(busy_receiver, &busy_context))
        .context("start the busy-answer thread")?;
    let stopping = Arc::new(AtomicBool::new(false));
    let accept_stopping = Arc::clone(&stopping);
    let accept_thread = thread::Builder::new()
        .name("accept".into())
        .spawn(move || accept_loop(listener, context, &accept_stopping, busy_sender))
        .context("start the accept thread")?;
    tracing::info!(address = %local_address, advertised = %me.address, minion = %me.id, "serving blocks");
    Ok(DataService {
        local_address,
        me,
        stopping,
        accept_thread: Some(accept_thread),
    })
}

impl DataService {
    /// The address the service is bound to.
    pub fn local_address(&self) -> SocketAddr {
        self.local_address
    }

    /// This minion as clients and other minions reach it.
    pub fn minion_address(&self) -> &MinionAddress {
        &self.me
    }

    /// Stops accepting connections and waits for the accept thread.
    pub fn stop(mut self) {
        self.stop_accepting();
    }

    fn stop_accepting(&mut self) {
        let Some(accept_thread) = self.accept_thread.take() else {
            return;
        };
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept with a connection of our own.
        let wake = match self.local_address.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => {
                SocketAddr::new(Ipv4Addr::LOCALHOST.into(), self.local_address.port())
            }
            IpAddr::V6(ip) if ip.is_unspecified() => {
                SocketAddr::new(Ipv6Addr::LOCALHOST.into(), self.local_address.port())
            }
            _ => self.local_address,
        };
        if TcpStream::connect_timeout(&wake, Duration::from_secs(1)).is_ok() {
            let _ = accept_thread.join();
        }
    }
}

impl Drop for DataService {
    fn drop(&mut self) {
        self.stop_accepting();
    }
}

/// Gives back one connection slot when a connection thread ends.
struct ActiveSlot(Arc<Context>);

impl Drop for ActiveSlot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

fn accept_loop(
    listener: TcpListener,
    context: Arc<Context>,
    stopping: &AtomicBool,
    busy: SyncSender<TcpStream>,
) {
    for incoming in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let stream = match incoming {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!("accept a connection: {error}");
                thread::sleep(Duration::from_millis(ACCEPT_RETRY_DELAY_MS));
                continue;
            }
        };
        let active = context.active.fetch_add(1, Ordering::SeqCst);
        if active >= context.connections_max {
            context.active.fetch_sub(1, Ordering::SeqCst);
            match busy.try_send(stream) {
                Ok(()) => {}
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    tracing::warn!("over the connection limit and the busy queue is full; closing a connection unanswered");
                }
            }
            continue;
        }
        let slot = ActiveSlot(Arc::clone(&context));
        let spawned = thread::Builder::new()
            .name("connection".into())
            .spawn(move || {
                let slot = slot;
                Session::run(stream, &slot.0);
            });
        if let Err(error) = spawned {
            // The closure, and with it the slot, was dropped.
            tracing::warn!("start a connection thread: {error}");
        }
    }
}

/// Answers connections over the limit with `Busy`, one at a time, so they
/// cost no thread each.
fn answer_busy_connections(connections: Receiver<TcpStream>, context: &Context) {
    for stream in connections {
        let peer = peer_name(&stream);
        if let Err(error) = answer_busy(stream, context) {
            tracing::debug!("{peer}: answer busy: {error}");
        }
    }
}

fn answer_busy(stream: TcpStream, context: &Context) -> Result<()> {
    let timeout = Some(Duration::from_millis(BUSY_ANSWER_TIMEOUT_MS));
    stream
        .set_read_timeout(timeout)
        .and_then(|()| stream.set_write_timeout(timeout))
        .context("set socket timeouts")?;
    // The answer carries the id of the request it refuses.
    let Some(header) = wire::read_header(&mut &stream)? else {
        return Ok(());
    };
    let error = RemoteError::new(
        ErrorKind::Busy,
        format!(
            "{} is serving its limit of {} connections; try again later",
            context.name(),
            context.connections_max
        ),
    );
    wire::write_message(
        &mut &stream,
        FrameKind::Response,
        header.request_id,
        &MinionResponse::Error(error),
    )?;
    // Read the rest of the request before closing, so the close is not a
    // reset that could destroy the answer on its way; but no longer than the
    // deadline, whatever the peer does.
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + Duration::from_millis(BUSY_ANSWER_TIMEOUT_MS);
    let mut unread_bytes = u64::from(header.payload_bytes);
    let mut scratch = [0u8; 4096];
    while unread_bytes > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match (&stream).read(&mut scratch) {
            Ok(0) | Err(_) => break,
            Ok(count) => unread_bytes = unread_bytes.saturating_sub(count as u64),
        }
    }
    Ok(())
}

fn peer_name(stream: &TcpStream) -> String {
    stream
        .peer_addr()
        .map_or_else(|_| "unknown peer".to_string(), |peer| peer.to_string())
}

/// What to do with a connection after a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    Continue,
    Close,
}

/// One connection: its socket, buffers, and the one chunk buffer it reuses.
pub(crate) struct Session<'a> {
    pub(crate) context: &'a Context,
    pub(crate) peer: String,
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    pub(crate) writer: BufWriter<TcpStream>,
    /// Payload of the last frame read; at most one chunk or one request.
    pub(crate) buffer: Vec<u8>,
    /// The request an error answer refers to: the last request frame read.
    answer_to: Option<u64>,
}

impl<'a> Session<'a> {
    fn run(stream: TcpStream, context: &'a Context) {
        let peer = peer_name(&stream);
        let mut session = match Session::new(stream, context, peer.clone()) {
            Ok(session) => session,
            Err(error) => {
                tracing::warn!("{peer}: set up the connection: {error}");
                return;
            }
        };
        tracing::debug!("{peer}: connected");
        loop {
            match session.serve_one() {
                Ok(Next::Continue) => {}
                Ok(Next::Close) => {
                    // A close after an answer: end our side gracefully so the
                    // answer is not lost to a reset.
                    if session.flush().is_ok() {
                        let _ = session.stream.shutdown(Shutdown::Write);
                    }
                    break;
                }
                Err(error) => {
                    session.fail(&error);
                    break;
                }
            }
        }
        tracing::debug!("{peer}: connection closed");
    }

    fn new(stream: TcpStream, context: &'a Context, peer: String) -> Result<Session<'a>> {
        let timeout = Some(Duration::from_millis(IO_TIMEOUT_MS));
        stream
            .set_read_timeout(timeout)
            .and_then(|()| stream.set_write_timeout(timeout))
            .and_then(|()| stream.set_nodelay(true))
            .context("set socket options")?;
        let reader = BufReader::with_capacity(
            SOCKET_BUFFER_BYTES,
            stream.try_clone().context("clone socket")?,
        );
        let writer = BufWriter::with_capacity(
            SOCKET_BUFFER_BYTES,
            stream.try_clone().context("clone socket")?,
        );
        Ok(Session {
            context,
            peer,
            stream,
            reader,
            writer,
            buffer: Vec::new(),
            answer_to: None,
        })
    }

    /// Reads and runs one request. `Close` on a clean end of the stream.
    fn serve_one(&mut self) -> Result<Next> {
        self.answer_to = None;
        let Some(header) = self.read_header()? else {
            return Ok(Next::Close);
        };
        let request_id = header.request_id;
        let envelope = self.read_request(&header)?;
        match envelope.body {
            MinionRequest::WriteBlock {
                block,
                downstream,
                sync,
            } => pipeline::write_block(
                self,
                pipeline::WriteRequest {
                    request_id,
                    credentials: envelope.credentials,
                    block,
                    downstream,
                    sync,
                },
            ),
            MinionRequest::ReadBlock {
                block,
                offset_bytes,
                length_bytes,
            } => read::read_block(self, request_id, block, offset_bytes, length_bytes),
            MinionRequest::SealBlock { block, .. } => Err(Error::Protocol(format!(
                "SealBlock of {block} without a WriteBlock before it"
            ))),
        }
    }

    /// The next frame header; `None` at a clean end of the stream.
    pub(crate) fn read_header(&mut self) -> Result<Option<FrameHeader>> {
        let header = wire::read_header(&mut self.reader)?;
        if let Some(header) = &header {
            if header.kind == FrameKind::Request {
                self.answer_to = Some(header.request_id);
            }
        }
        Ok(header)
    }

    /// Reads and decodes the request frame that `header` announces.
    pub(crate) fn read_request(&mut self, header: &FrameHeader) -> Result<Envelope<MinionRequest>> {
        if header.kind != FrameKind::Request {
            return Err(Error::Protocol(format!(
                "expected a request, got a {:?} frame",
                header.kind
            )));
        }
        if header.payload_bytes > REQUEST_FRAME_BYTES_MAX {
            return Err(Error::Protocol(format!(
                "a request of {} bytes is over the limit of {REQUEST_FRAME_BYTES_MAX}",
                header.payload_bytes
            )));
        }
        self.read_payload(header)?;
        wire::decode_message(&self.buffer)
    }

    /// Reads the payload `header` announces into `buffer`, checking its CRC.
    /// The caller checked its length against the limit for its kind.
    pub(crate) fn read_payload(&mut self, header: &FrameHeader) -> Result<()> {
        wire::read_payload(&mut self.reader, header, &mut self.buffer)
    }

    /// Sends one response and flushes it.
    pub(crate) fn respond(&mut self, request_id: u64, response: &MinionResponse) -> Result<()> {
        wire::write_message(&mut self.writer, FrameKind::Response, request_id, response)?;
        self.flush()
    }

    pub(crate) fn respond_error(&mut self, request_id: u64, error: RemoteError) -> Result<()> {
        self.respond(request_id, &MinionResponse::Error(error))
    }

    pub(crate) fn flush(&mut self) -> Result<()> {
        use std::io::Write;
        self.writer
            .flush()
            .with_context(|| format!("send to {}", self.peer))
    }

    /// Ends the connection after `error`: a peer that broke the protocol is
    /// told why (when its request is known) and logged; a broken connection
    /// is only noted.
    fn fail(&mut self, error: &Error) {
        match error {
            Error::Protocol(_) => {
                tracing::warn!("{}: {error}; closing the connection", self.peer);
                if let Some(request_id) = self.answer_to {
                    let answer = RemoteError::new(ErrorKind::Protocol, error.to_string());
                    if self.respond_error(request_id, answer).is_ok() {
                        // Let the answer arrive before the close.
                        let _ = self.stream.shutdown(Shutdown::Write);
                    }
                }
            }
            Error::Io { cause: source, .. }
                if matches!(
                    source.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                tracing::info!("{}: {error}; closing the idle connection", self.peer);
            }
            Error::Io { .. } => tracing::info!("{}: {error}; connection closed", self.peer),
            _ => tracing::warn!("{}: {error}; closing the connection", self.peer),
        }
    }
}
