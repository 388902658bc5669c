//! The master's TCP front: one thread per connection (bounded), frames in,
//! frames out. Everything a peer sends is checked by the wire decoder; a
//! peer that breaks the protocol loses its connection, nothing more.
//!
//! No one peer can stop the master either:
//! - a frame must arrive whole within its deadline from its first byte
//!   (`ServerConfig::frame_deadline`, per `FRAME_DEADLINE_BYTES`), so a peer
//!   that trickles bytes loses its connection;
//! - a connection that waits longer than `ServerConfig::idle_timeout` for
//!   its next request is closed, unless writes it opened are still open
//!   (closing it would abort them); clients and minions open a new one;
//! - one address holds at most `PEER_CONNECTIONS_MAX` connections;
//! - at `CONNECTIONS_MAX` the longest-idle connection is closed to admit a
//!   new one, so idle connections never keep a client out;
//! - a payload's memory grows as its bytes arrive (`wire::read_payload`),
//!   never to what a header only announces.
//!
//! A refused connection is answered `Busy` on the connection as a whole
//! (`wire::CONNECTION_REQUEST_ID`), which clients take as "master busy".
//!
//! A connection whose first byte opens a TLS handshake runs TLS
//! (`dfs_engine::tls`) with a certificate made when the server starts;
//! others run plain. Proofs of a key are taken only on TLS connections
//! (`members`), so with a key everything past them is encrypted.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dfs_engine::limits::{
    BUSY_ANSWERS_MAX, BUSY_ANSWER_TIMEOUT_MS, CONNECTIONS_MAX, FRAME_DEADLINE_MS_DEFAULT,
    IDLE_PAYLOAD_BUFFER_BYTES_MAX, IO_TIMEOUT_MS, MASTER_IDLE_TIMEOUT_MS_DEFAULT,
    PEER_CONNECTIONS_MAX,
};
use dfs_engine::msg::{Envelope, ErrorKind, MasterRequest, MasterResponse, RemoteError};
use dfs_engine::rpc::is_socket_quiet;
use dfs_engine::sync::lock;
use dfs_engine::tls::{self, Half, ServerTls};
use dfs_engine::wire::{self, FrameKind, CONNECTION_REQUEST_ID, FRAME_HEADER_BYTES};
use dfs_engine::{Error, IoContext, Result};

use crate::members::{self, AuthFailures, AUTH_FAILURES_MAX, AUTH_FAILURE_WINDOW};
use crate::metrics::Refusal;
use crate::service::{ConnectionId, Master};

/// Bytes of a connection's read and write buffers.
const SOCKET_BUFFER_BYTES: usize = 64 * 1024;
/// Pause after a failed accept (out of file descriptors, say) so the loop
/// does not spin.
const ACCEPT_RETRY_DELAY_MS: u64 = 50;

/// How the server treats slow and idle peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// How long a frame of up to `FRAME_DEADLINE_BYTES` may take from its
    /// first byte to its last (larger frames get one per such part).
    pub frame_deadline: Duration,
    /// How long a connection may wait for its next request.
    pub idle_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            frame_deadline: Duration::from_millis(FRAME_DEADLINE_MS_DEFAULT),
            idle_timeout: Duration::from_millis(MASTER_IDLE_TIMEOUT_MS_DEFAULT),
        }
    }
}

/// What the accept loop and the connection threads share.
struct Server {
    master: Arc<Master>,
    config: ServerConfig,
    peers: Mutex<Peers>,
    /// Refused connections being answered `Busy` now.
    busy_answers: AtomicUsize,
    /// Failed proofs of the cluster key, per address.
    auth_failures: Mutex<AuthFailures>,
    /// The certificate TLS connections are served with.
    tls: ServerTls,
}

/// The connections being served, by id and by peer address.
#[derive(Default)]
struct Peers {
    connections: HashMap<ConnectionId, Peer>,
    per_address: HashMap<IpAddr, usize>,
}

struct Peer {
    address: IpAddr,
    /// Since when the connection waits for its next request; `None` while
    /// a request arrives or is served.
    idle_since: Option<Instant>,
    /// The connection's socket, to close it when its slot is needed.
    socket: TcpStream,
}

impl Peers {
    fn insert(&mut self, connection: ConnectionId, peer: Peer) {
        *self.per_address.entry(peer.address).or_insert(0) += 1;
        self.connections.insert(connection, peer);
    }

    /// Forgets `connection`; nothing when it is already gone (a connection
    /// closed to make room is forgotten at once, before its thread ends).
    fn remove(&mut self, connection: ConnectionId) {
        let Some(peer) = self.connections.remove(&connection) else {
            return;
        };
        if let Some(count) = self.per_address.get_mut(&peer.address) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_address.remove(&peer.address);
            }
        }
    }

    /// A request arrives or is served on `connection`: not idle.
    fn mark_busy(&mut self, connection: ConnectionId) {
        if let Some(peer) = self.connections.get_mut(&connection) {
            peer.idle_since = None;
        }
    }

    /// `connection` waits for a request from `now` on, unless it was idle
    /// already: a new connection is idle from its accept, not from when its
    /// thread got to run, so the longest idle is the one accepted first.
    fn mark_idle(&mut self, connection: ConnectionId, now: Instant) {
        if let Some(peer) = self.connections.get_mut(&connection) {
            peer.idle_since.get_or_insert(now);
        }
    }
}

/// Accepts connections until the process ends.
pub fn serve(master: Arc<Master>, listener: TcpListener, config: ServerConfig) -> Result<()> {
    let server = Arc::new(Server {
        master,
        config,
        peers: Mutex::new(Peers::default()),
        busy_answers: AtomicUsize::new(0),
        auth_failures: Mutex::new(AuthFailures::default()),
        tls: ServerTls::self_signed()?,
    });
    let next_connection = AtomicU64::new(1);
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                // EMFILE and friends: wait a little rather than spin.
                tracing::warn!("accept connection: {e}");
                std::thread::sleep(Duration::from_millis(ACCEPT_RETRY_DELAY_MS));
                continue;
            }
        };
        let Ok(peer) = stream.peer_addr() else {
            // Gone before we looked at it.
            continue;
        };
        let connection = next_connection.fetch_add(1, Ordering::Relaxed);
        if let Err(reason) = server.admit(connection, peer.ip(), &stream) {
            refuse(&server, stream, peer, reason);
            continue;
        }
        let thread_server = Arc::clone(&server);
        let spawned = std::thread::Builder::new()
            .name(format!("conn-{connection}"))
            .spawn(move || thread_server.run_connection(connection, stream, peer));
        if let Err(e) = spawned {
            tracing::error!("spawn connection thread: {e}");
            lock(&server.peers).remove(connection);
        }
    }
    Ok(())
}

impl Server {
    /// Takes a slot for a new connection from `address`, closing the
    /// longest-idle connection when all are taken; the reason otherwise.
    fn admit(
        &self,
        connection: ConnectionId,
        address: IpAddr,
        stream: &TcpStream,
    ) -> std::result::Result<(), String> {
        let socket = stream.try_clone().map_err(|e| {
            self.master.metrics().connection_refused(Refusal::Busy);
            format!("master cannot serve a connection now: {e}")
        })?;
        let mut peers = lock(&self.peers);
        let held = peers.per_address.get(&address).copied().unwrap_or(0);
        if held >= PEER_CONNECTIONS_MAX {
            self.master.metrics().connection_refused(Refusal::Busy);
            return Err(format!(
                "master busy: {address} holds its limit of {PEER_CONNECTIONS_MAX} connections"
            ));
        }
        if peers.connections.len() >= CONNECTIONS_MAX && !self.close_longest_idle(&mut peers) {
            self.master.metrics().connection_refused(Refusal::Busy);
            return Err(format!(
                "master busy: {CONNECTIONS_MAX} connections open, none of them idle"
            ));
        }
        peers.insert(
            connection,
            Peer {
                address,
                idle_since: Some(Instant::now()),
                socket,
            },
        );
        Ok(())
    }

    /// Closes the connection idle the longest that may be closed (none of
    /// its writes open, no request waiting on it) and frees its slot.
    fn close_longest_idle(&self, peers: &mut Peers) -> bool {
        let mut idle: Vec<(Instant, ConnectionId)> = peers
            .connections
            .iter()
            .filter_map(|(connection, peer)| peer.idle_since.map(|since| (since, *connection)))
            .collect();
        idle.sort_unstable();
        for (since, connection) in idle {
            let Some(peer) = peers.connections.get(&connection) else {
                continue;
            };
            if !is_socket_quiet(&peer.socket) || self.master.connection_owns_writes(connection) {
                continue;
            }
            // Its thread wakes to the end of the stream and finishes.
            let _ = peer.socket.shutdown(Shutdown::Both);
            tracing::info!(
                peer = %peer.address,
                "closed a connection idle for {:?} to make room for a new one",
                since.elapsed()
            );
            peers.remove(connection);
            return true;
        }
        false
    }

    fn run_connection(&self, connection: ConnectionId, stream: TcpStream, peer: SocketAddr) {
        self.master.metrics().connection_opened();
        if let Err(e) = self.serve_connection(connection, stream, peer.ip()) {
            tracing::warn!(%peer, "connection closed: {e}");
        }
        lock(&self.peers).remove(connection);
        self.master.connection_closed(connection);
        self.master.metrics().connection_closed();
    }

    fn serve_connection(
        &self,
        connection: ConnectionId,
        stream: TcpStream,
        peer: IpAddr,
    ) -> Result<()> {
        stream
            .set_write_timeout(Some(Duration::from_millis(IO_TIMEOUT_MS)))
            .context("set write timeout")?;
        let _ = stream.set_nodelay(true);
        let Some(first) = self.wait_for_first_byte(connection, &stream)? else {
            return Ok(());
        };
        let mut paced = Paced::new(stream);
        let (reader, writer) = if first == tls::HANDSHAKE_RECORD {
            // The handshake must be done as a small frame would be.
            paced.deadline = Instant::now() + self.config.frame_deadline;
            let (reader, writer) = self.tls.accept(paced)?;
            if let Some(binding) = reader.binding() {
                self.master.channel_opened(connection, binding);
            }
            (reader, writer)
        } else {
            tls::plain(paced)
        };
        let mut reader = BufReader::with_capacity(SOCKET_BUFFER_BYTES, reader);
        let mut writer = BufWriter::with_capacity(SOCKET_BUFFER_BYTES, writer);
        let mut buffer = Vec::new();
        // The identity this connection last started to prove, which its
        // proof's failure counts against (with the peer's address).
        let mut proving_as: Option<String> = None;
        loop {
            if !self.wait_for_request(connection, &mut reader)? {
                return Ok(());
            }
            let started = Instant::now();
            let (request_id, envelope) = match self.read_request(&mut reader, started, &mut buffer)
            {
                Ok(request) => request,
                Err((request_id, e)) => {
                    return Err(reply_protocol_error(&mut writer, request_id, e))
                }
            };
            let proving = matches!(
                envelope.body,
                MasterRequest::ProveMember { .. } | MasterRequest::ProveClient { .. }
            );
            // A challenge for an identity this address keeps failing to
            // prove is refused; it is counted by its last challenge.
            let claimed = members::prover_name(&envelope.body);
            if let Some(name) = &claimed {
                proving_as = Some(name.clone());
            }
            let held_off = claimed.filter(|name| {
                lock(&self.auth_failures).is_limited(&(peer, name.clone()), Instant::now())
            });
            let response = match held_off {
                Some(name) => {
                    self.master
                        .metrics()
                        .connection_refused(Refusal::AuthLimited);
                    MasterResponse::Error(RemoteError::new(
                        ErrorKind::PermissionDenied,
                        format!(
                            "{name} failed to prove its key {AUTH_FAILURES_MAX} times within {AUTH_FAILURE_WINDOW:?} from {peer}: held off until the first failure is that old"
                        ),
                    ))
                }
                _ => self
                    .master
                    .handle(connection, &envelope.credentials, envelope.body),
            };
            // Only a wrong proof of a challenge counts as a guess.
            if proving
                && matches!(&response, MasterResponse::Error(e) if e.kind == ErrorKind::PermissionDenied)
            {
                if let Some(name) = &proving_as {
                    lock(&self.auth_failures).record((peer, name.clone()), Instant::now());
                }
                self.master.metrics().auth_failed();
            }
            wire::write_message(&mut writer, FrameKind::Response, request_id, &response)?;
            // A client that sent several requests at once gets their answers in
            // one send; otherwise each answer goes out at once.
            if reader.buffer().is_empty() {
                writer.flush().context("send response")?;
            }
            // One large request does not leave its memory with an idle
            // connection.
            if buffer.capacity() > IDLE_PAYLOAD_BUFFER_BYTES_MAX {
                buffer = Vec::new();
            }
        }
    }

    /// The connection's first byte, which tells TLS from plain, once it is
    /// here; `Ok(None)`: the peer closed the connection, or sent nothing
    /// for the idle timeout.
    fn wait_for_first_byte(
        &self,
        connection: ConnectionId,
        stream: &TcpStream,
    ) -> Result<Option<u8>> {
        lock(&self.peers).mark_idle(connection, Instant::now());
        stream
            .set_read_timeout(Some(self.config.idle_timeout))
            .context("set read timeout")?;
        let mut first = [0u8; 1];
        let outcome = match stream.peek(&mut first) {
            Ok(0) => Ok(None),
            Ok(_) => Ok(Some(first[0])),
            Err(e) if is_timeout(&e) => Ok(None),
            Err(e) => Err(Error::io("wait for a first request", e)),
        };
        lock(&self.peers).mark_busy(connection);
        outcome
    }

    /// Waits until the first byte of the next request is here. `Ok(false)`:
    /// the peer closed the connection, or it was idle too long (and owns
    /// no open write).
    fn wait_for_request(
        &self,
        connection: ConnectionId,
        reader: &mut BufReader<Half<Paced>>,
    ) -> Result<bool> {
        if !reader.buffer().is_empty() {
            return Ok(true);
        }
        lock(&self.peers).mark_idle(connection, Instant::now());
        let outcome = loop {
            set_deadline(reader, Instant::now() + self.config.idle_timeout);
            match reader.fill_buf() {
                Ok(bytes) => break Ok(!bytes.is_empty()),
                Err(e) if is_timeout(&e) => {
                    if self.master.connection_owns_writes(connection) {
                        continue;
                    }
                    tracing::info!(
                        "closing connection {connection}: idle for {:?}",
                        self.config.idle_timeout
                    );
                    break Ok(false);
                }
                Err(e) => break Err(Error::io("wait for a request", e)),
            }
        };
        lock(&self.peers).mark_busy(connection);
        outcome
    }

    /// Reads one request frame whose first byte arrived at `started`; an
    /// error comes with the request id to answer it under.
    fn read_request(
        &self,
        reader: &mut BufReader<Half<Paced>>,
        started: Instant,
        buffer: &mut Vec<u8>,
    ) -> std::result::Result<(u64, Envelope<MasterRequest>), (u64, Error)> {
        set_deadline(reader, self.frame_deadline(started, 0));
        let header = match wire::read_header(reader) {
            Ok(Some(header)) => header,
            Ok(None) => {
                let e = Error::Protocol("connection closed in the middle of a frame header".into());
                return Err((CONNECTION_REQUEST_ID, e));
            }
            Err(e) => return Err((CONNECTION_REQUEST_ID, self.late(reader, 0, e))),
        };
        let request_id = header.request_id;
        if header.kind != FrameKind::Request {
            let e = Error::Protocol(format!("expected a Request frame, got {:?}", header.kind));
            return Err((request_id, e));
        }
        set_deadline(reader, self.frame_deadline(started, header.payload_bytes));
        if let Err(e) = wire::read_payload(reader, &header, buffer) {
            return Err((request_id, self.late(reader, header.payload_bytes, e)));
        }
        match wire::decode_message(buffer) {
            Ok(envelope) => Ok((request_id, envelope)),
            Err(e) => Err((request_id, e)),
        }
    }

    /// When a frame of `payload_bytes` that began at `started` must be whole.
    fn frame_deadline(&self, started: Instant, payload_bytes: u32) -> Instant {
        let frame_bytes = FRAME_HEADER_BYTES + payload_bytes as usize;
        started + wire::frame_deadline(self.config.frame_deadline, frame_bytes)
    }

    /// `error`, or what it means when the frame's deadline passed.
    fn late(&self, reader: &BufReader<Half<Paced>>, payload_bytes: u32, error: Error) -> Error {
        if !reader
            .get_ref()
            .with_stream(|paced| paced.deadline_passed())
        {
            return error;
        }
        let frame_bytes = FRAME_HEADER_BYTES + payload_bytes as usize;
        Error::Protocol(format!(
            "a frame was not whole {:?} after its first byte; closing a connection that sends too slowly",
            wire::frame_deadline(self.config.frame_deadline, frame_bytes)
        ))
    }
}

fn set_deadline(reader: &BufReader<Half<Paced>>, deadline: Instant) {
    reader
        .get_ref()
        .with_stream(|paced| paced.deadline = deadline);
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A socket whose every read ends by `deadline`: the reader moves the
/// deadline (the idle timeout between requests, the frame's deadline
/// within one), and a read after it fails at once.
struct Paced {
    stream: TcpStream,
    deadline: Instant,
}

impl Paced {
    fn new(stream: TcpStream) -> Paced {
        Paced {
            stream,
            deadline: Instant::now(),
        }
    }

    fn deadline_passed(&self) -> bool {
        Instant::now() >= self.deadline
    }
}

impl Read for Paced {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the peer's time to send is over",
            ));
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buffer)
    }
}

/// Writes are bounded by the socket's write timeout.
impl Write for Paced {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        self.stream.write(buffer)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// Answers a refused connection `Busy` (best effort, on a thread of its
/// own so the accept loop never waits on a peer), or closes it unanswered
/// when `BUSY_ANSWERS_MAX` answers are under way.
fn refuse(server: &Arc<Server>, stream: TcpStream, peer: SocketAddr, reason: String) {
    tracing::warn!(%peer, "refusing a connection: {reason}");
    if server.busy_answers.fetch_add(1, Ordering::AcqRel) >= BUSY_ANSWERS_MAX {
        server.busy_answers.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    let thread_server = Arc::clone(server);
    let spawned = std::thread::Builder::new()
        .name("busy".into())
        .spawn(move || {
            answer_busy(stream, reason);
            thread_server.busy_answers.fetch_sub(1, Ordering::AcqRel);
        });
    if spawned.is_err() {
        server.busy_answers.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Tells the peer the master is busy, as the answer to the connection as a
/// whole (it stands for whatever request the peer sends first), then reads
/// what the peer sends until it closes, for a bounded time, so that our
/// close is not a reset that could destroy the answer on its way.
fn answer_busy(mut stream: TcpStream, reason: String) {
    let wait = Duration::from_millis(BUSY_ANSWER_TIMEOUT_MS);
    let deadline = Instant::now() + wait;
    let response = MasterResponse::Error(RemoteError::new(ErrorKind::Busy, reason));
    let mut frame = Vec::new();
    if wire::write_message(
        &mut frame,
        FrameKind::Response,
        CONNECTION_REQUEST_ID,
        &response,
    )
    .is_err()
        || stream.set_write_timeout(Some(wait)).is_err()
        || stream.write_all(&frame).is_err()
        || stream.shutdown(Shutdown::Write).is_err()
    {
        return;
    }
    let mut scratch = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut scratch) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Tells the peer what was wrong (best effort) and returns the error to log.
fn reply_protocol_error(writer: &mut impl Write, request_id: u64, error: Error) -> Error {
    if matches!(error, Error::Protocol(_)) {
        let response =
            MasterResponse::Error(RemoteError::new(ErrorKind::Protocol, error.to_string()));
        let _ = wire::write_message(writer, FrameKind::Response, request_id, &response);
        let _ = writer.flush();
    }
    error
}

/// Binds the listening socket.
pub fn bind(address: &str) -> Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(address).with_context(|| format!("listen on {address}"))?;
    let local = listener.local_addr().context("read bound address")?;
    Ok((listener, local))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_after_the_deadline_fails_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let _client = TcpStream::connect(address).expect("connect");
        let (accepted, _) = listener.accept().expect("accept");
        let mut paced = Paced::new(accepted);
        paced.deadline = Instant::now() + Duration::from_millis(100);
        let started = Instant::now();
        let error = paced.read(&mut [0u8; 8]).expect_err("nothing was sent");
        assert!(is_timeout(&error), "{error}");
        assert!(started.elapsed() >= Duration::from_millis(90));
        assert!(paced.deadline_passed());
        let error = paced.read(&mut [0u8; 8]).expect_err("past the deadline");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn peers_are_counted_per_address() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let socket = TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
        let address: IpAddr = "127.0.0.2".parse().expect("address");
        let mut peers = Peers::default();
        for connection in [1, 2] {
            peers.insert(
                connection,
                Peer {
                    address,
                    idle_since: None,
                    socket: socket.try_clone().expect("clone"),
                },
            );
        }
        assert_eq!(peers.per_address.get(&address), Some(&2));
        peers.remove(1);
        peers.remove(1);
        assert_eq!(peers.per_address.get(&address), Some(&1));
        peers.remove(2);
        assert!(peers.per_address.is_empty() && peers.connections.is_empty());
    }
}
