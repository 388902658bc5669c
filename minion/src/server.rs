//! The data service, thread per core: each core runs one single-threaded
//! io_uring runtime (`uring`) with its own listening socket on the shared
//! address (SO_REUSEPORT: the kernel spreads connections over the cores),
//! and serves the connections it accepted to their end. Nothing on the data
//! path is shared between cores: a connection's buffers, block file and
//! downstream socket belong to its core. What cores share is counted once
//! per connection or block (the connection limit, the block claims).
//!
//! At most `connections_max` connections are served at once, at most
//! `peer_connections_max` of them from one address; further ones get a
//! `Busy` answer (at most `BUSY_ANSWERS_MAX` at a time, the rest are closed
//! unanswered). A connection that waits longer than `idle_timeout` for its
//! next request is closed, and so is one whose frame is not whole
//! `frame_deadline` (per `FRAME_DEADLINE_BYTES`) after its first byte: a
//! peer that trickles bytes cannot hold a connection.
//!
//! Boundary: bytes from a peer reach the rest of the minion only through
//! `Session`, which checks every frame header against its limit before it
//! reads the payload. A peer that breaks the protocol loses its connection,
//! never the daemon.

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::os::fd::{FromRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use dfs_engine::auth::ClusterKey;
use dfs_engine::block_store::BlockStore;
use dfs_engine::limits::{
    BUSY_ANSWERS_MAX, BUSY_ANSWER_TIMEOUT_MS, CHUNK_BYTES, CONNECTIONS_MAX,
    FRAME_DEADLINE_MS_DEFAULT, IO_TIMEOUT_MS, MINION_IDLE_TIMEOUT_MS_DEFAULT, PEER_CONNECTIONS_MAX,
    SYNC_REPLICAS_MAX,
};
use dfs_engine::msg::{
    Envelope, ErrorKind, MinionAddress, MinionId, MinionRequest, MinionResponse, RemoteError,
    ReplicaId,
};
use dfs_engine::tls::{DataAuthority, DataTrust, ServerTls};
use dfs_engine::token::{TokenError, TokenKeys};
use dfs_engine::wire::{self, FrameHeader, FrameKind, FRAME_HEADER_BYTES};
use dfs_engine::{Error, IoContext, Result};

use crate::metrics::{Refusal, RequestKind};
use crate::replicate::REPLICATION_USER;
use crate::store::Store;
use crate::uring::{self, Either, Listener, Stream};
use crate::{batch, pipeline, read, spare};

/// Largest request frame a minion accepts. Its requests are small (a
/// pipeline of REPLICATION_MAX addresses is a few KiB).
pub const REQUEST_FRAME_BYTES_MAX: u32 = 64 * 1024;
/// Pause after a failed accept (out of file descriptors, say) so the loop
/// does not spin.
const ACCEPT_RETRY_DELAY_MS: u64 = 100;
/// How often an idle core looks at the stop flag.
const STOP_POLL_INTERVAL_MS: u64 = 50;
/// How long `DataService::stop` waits for the cores to close their listeners
/// and finish their connections.
const STOP_TIMEOUT_MS: u64 = 5_000;
/// Pending connections per listening socket.
const LISTEN_BACKLOG: libc::c_int = 1024;
/// A data frame of one whole chunk, header included.
pub(crate) const DATA_FRAME_BYTES: usize = FRAME_HEADER_BYTES + CHUNK_BYTES as usize;
/// Whole data frames a connection's input buffer holds: what one read may
/// bring in, and what one file write and one forward carry at most.
pub(crate) const INPUT_FRAMES_MAX: usize = 16;
/// A connection's input buffer while it writes a block (about 1 MiB).
pub(crate) const INPUT_BUFFER_BYTES: usize = INPUT_FRAMES_MAX * DATA_FRAME_BYTES;
/// A connection's input buffer otherwise: one data frame, which also holds
/// the largest request. Input memory is at most `CONNECTIONS_MAX` times
/// this plus `INPUT_BUFFER_BYTES` per block being written.
const IDLE_INPUT_BUFFER_BYTES: usize = DATA_FRAME_BYTES;

const _: () = assert!(REQUEST_FRAME_BYTES_MAX <= dfs_engine::limits::CONTROL_FRAME_BYTES_MAX);
const _: () =
    assert!(IDLE_INPUT_BUFFER_BYTES >= FRAME_HEADER_BYTES + REQUEST_FRAME_BYTES_MAX as usize);
const _: () = assert!(IDLE_INPUT_BUFFER_BYTES <= INPUT_BUFFER_BYTES);

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
    /// Cores, each with its own io_uring runtime and listener (at least 1).
    pub cores: usize,
    /// How long a pipeline member waits for the next member to take data or
    /// answer, per member after it, before it drops it (a stalled minion).
    pub pipeline_timeout: Duration,
    /// Connections one peer address may hold at once (at least 1, at most
    /// `connections_max`).
    pub peer_connections_max: usize,
    /// How long a frame of up to `FRAME_DEADLINE_BYTES` may take from its
    /// first byte to its last (larger frames get one per such part).
    pub frame_deadline: Duration,
    /// How long a connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Checks block access tokens, when the cluster has a key: a read
    /// without a good one is refused.
    pub tokens: Option<TokenKeys>,
    /// TLS for block data, when the cluster has a key.
    pub data_tls: Option<DataTls>,
}

/// TLS for block data (`dfs_engine::tls`).
#[derive(Clone, Debug)]
pub struct DataTls {
    /// This minion's certificate, for connections that open with TLS.
    pub server: ServerTls,
    /// How this minion checks the minions it sends data to.
    pub trust: DataTrust,
    /// `--tls-data`: plain connections are refused, and data to other
    /// minions goes over TLS.
    pub required: bool,
}

impl DataTls {
    /// TLS for the minions of the cluster of `key`.
    pub fn new(key: &ClusterKey, required: bool) -> Result<DataTls> {
        let authority = DataAuthority::derive(key)?;
        Ok(DataTls {
            server: authority.minion_server()?,
            trust: authority.trust()?,
            required,
        })
    }

    /// How to check the minions this one connects to, when it must.
    pub(crate) fn outgoing(tls: Option<&DataTls>) -> Option<&DataTrust> {
        tls.filter(|tls| tls.required).map(|tls| &tls.trust)
    }
}

impl ServeConfig {
    pub fn new(listen: impl Into<String>, minion: MinionId) -> ServeConfig {
        ServeConfig {
            listen: listen.into(),
            advertise: None,
            minion,
            connections_max: CONNECTIONS_MAX,
            cores: available_cores(),
            pipeline_timeout: crate::config::PIPELINE_TIMEOUT_DEFAULT,
            peer_connections_max: PEER_CONNECTIONS_MAX,
            frame_deadline: Duration::from_millis(FRAME_DEADLINE_MS_DEFAULT),
            idle_timeout: Duration::from_millis(MINION_IDLE_TIMEOUT_MS_DEFAULT),
            tokens: None,
            data_tls: None,
        }
    }
}

/// The cores this process may run on.
pub fn available_cores() -> usize {
    thread::available_parallelism().map_or(1, |count| count.get())
}

/// What every core shares.
pub(crate) struct Context {
    pub(crate) store: Arc<Store>,
    /// This minion as others know it, for failure messages.
    pub(crate) me: MinionAddress,
    /// A pipeline member waits this long per member after it. Whoever
    /// feeds a pipeline of n members must wait longer than n - 1 times
    /// this for the first one, or it gives up on a healthy first member
    /// while that one still waits out a stalled one behind it.
    pub(crate) pipeline_timeout: Duration,
    active: AtomicUsize,
    busy_answers: AtomicUsize,
    connections_max: usize,
    /// Connections served per peer address (taken once per connection,
    /// like `active`), at most `peer_connections_max` each.
    peers: Mutex<HashMap<IpAddr, usize>>,
    peer_connections_max: usize,
    frame_deadline: Duration,
    idle_timeout: Duration,
    stopping: AtomicBool,
    tokens: Option<TokenKeys>,
    pub(crate) data_tls: Option<DataTls>,
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
    context: Arc<Context>,
    /// One message per core once its listener is closed and its
    /// connections ended.
    closed: Receiver<()>,
    cores: usize,
    stopped: bool,
}

/// Binds `config.listen` on every core and serves blocks of `store`.
pub fn serve(config: ServeConfig, store: BlockStore) -> Result<DataService> {
    serve_store(config, Arc::new(Store::new(store)))
}

/// `serve` with the cores' view of the store, shared with the heartbeat.
pub fn serve_store(config: ServeConfig, store: Arc<Store>) -> Result<DataService> {
    let cores = config.cores.max(1);
    let listeners = bind_listeners(&config.listen, cores)?;
    let first = listeners
        .first()
        .ok_or_else(|| Error::Invalid("no listener".into()))?;
    let local_address = first.local_addr().context("read the bound address")?;
    let me = MinionAddress {
        id: config.minion,
        address: config
            .advertise
            .unwrap_or_else(|| local_address.to_string()),
    };
    let connections_max = config.connections_max.clamp(1, CONNECTIONS_MAX);
    let context = Arc::new(Context {
        store,
        me: me.clone(),
        pipeline_timeout: config.pipeline_timeout.max(Duration::from_millis(1)),
        active: AtomicUsize::new(0),
        busy_answers: AtomicUsize::new(0),
        connections_max,
        peers: Mutex::new(HashMap::new()),
        peer_connections_max: config.peer_connections_max.clamp(1, connections_max),
        frame_deadline: config.frame_deadline.max(Duration::from_millis(1)),
        idle_timeout: config.idle_timeout.max(Duration::from_millis(1)),
        stopping: AtomicBool::new(false),
        tokens: config.tokens.clone(),
        data_tls: config.data_tls.clone(),
    });
    let (closed_sender, closed) = mpsc::channel();
    for (index, listener) in listeners.into_iter().enumerate() {
        let context = Arc::clone(&context);
        let closed_sender = closed_sender.clone();
        thread::Builder::new()
            .name(format!("core-{index}"))
            .spawn(move || run_core(index, listener, context, closed_sender))
            .context("start a core thread")?;
    }
    tracing::info!(address = %local_address, advertised = %me.address, minion = %me.id, cores, "serving blocks");
    Ok(DataService {
        local_address,
        me,
        context,
        closed,
        cores,
        stopped: false,
    })
}

/// One listening socket per core on the same address (SO_REUSEPORT); the
/// first one picks the port when `listen` says 0.
fn bind_listeners(listen: &str, cores: usize) -> Result<Vec<std::net::TcpListener>> {
    let context = || format!("listen on {listen}");
    let mut last_error = None;
    for address in listen.to_socket_addrs().with_context(context)? {
        match bind_reuseport(address) {
            Ok(first) => {
                let bound = first.local_addr().with_context(context)?;
                let mut listeners = vec![first];
                for _ in 1..cores {
                    listeners.push(bind_reuseport(bound).with_context(context)?);
                }
                return Ok(listeners);
            }
            Err(error) => last_error = Some(error),
        }
    }
    Err(Error::io(
        context(),
        last_error.unwrap_or_else(|| io::Error::other("address resolved to nothing")),
    ))
}

fn bind_reuseport(address: SocketAddr) -> io::Result<std::net::TcpListener> {
    let family = match address {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    for option in [libc::SO_REUSEADDR, libc::SO_REUSEPORT] {
        // SAFETY: the option value is a live c_int of the size given.
        let status = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                option,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if status != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: sockaddr_storage is plain data; all zeroes is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let length = match address {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any
            // socket address, so it can be viewed as a sockaddr_in.
            let raw = unsafe {
                &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            raw.sin_family = libc::AF_INET as libc::sa_family_t;
            raw.sin_port = v4.port().to_be();
            raw.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above, for sockaddr_in6.
            let raw = unsafe {
                &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            raw.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            raw.sin6_port = v6.port().to_be();
            raw.sin6_addr.s6_addr = v6.ip().octets();
            raw.sin6_flowinfo = v6.flowinfo();
            raw.sin6_scope_id = v6.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    // SAFETY: storage holds a valid address of `length` bytes for this family.
    let status = unsafe {
        libc::bind(
            fd,
            (&storage as *const libc::sockaddr_storage).cast(),
            length as libc::socklen_t,
        )
    };
    if status != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: listen(2) on our bound socket.
    if unsafe { libc::listen(fd, LISTEN_BACKLOG) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(std::net::TcpListener::from(socket))
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

    /// The store as the cores write to it (its usage counts their blocks).
    pub fn store(&self) -> &Arc<Store> {
        &self.context.store
    }

    /// Stops accepting connections and waits (a bounded time) until every
    /// core closed its listener and finished its connections.
    pub fn stop(mut self) {
        self.stop_accepting();
    }

    fn stop_accepting(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        self.context.stopping.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_millis(STOP_TIMEOUT_MS);
        for _ in 0..self.cores {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.closed.recv_timeout(left).is_err() {
                tracing::warn!("a core still serves connections after the stop; leaving it");
                return;
            }
        }
    }
}

impl Drop for DataService {
    fn drop(&mut self) {
        self.stop_accepting();
    }
}

/// The thread of one core: its runtime, its accept loop, then its
/// remaining connections.
fn run_core(
    index: usize,
    listener: std::net::TcpListener,
    context: Arc<Context>,
    closed: Sender<()>,
) {
    let core_closed = closed.clone();
    let ran = uring::run_core(async move {
        let listener = match Listener::from_std(listener) {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!("core {index}: take over the listening socket: {error}");
                let _ = core_closed.send(());
                return;
            }
        };
        let connections = Rc::new(Cell::new(0usize));
        accept_loop(&listener, &context, &connections).await;
        drop(listener);
        // Connections finish on their own; the store (and the lock on its
        // directories) is let go when the last one ends.
        while connections.get() > 0 {
            uring::sleep(Duration::from_millis(STOP_POLL_INTERVAL_MS)).await;
        }
        drop(context);
        let _ = core_closed.send(());
    });
    if let Err(error) = ran {
        tracing::error!("core {index}: start its io_uring runtime: {error}");
        let _ = closed.send(());
    }
}

/// Gives back a connection slot (and its address's) when a connection ends.
struct ActiveSlot {
    context: Arc<Context>,
    connections: Rc<Cell<usize>>,
    address: IpAddr,
}

impl Drop for ActiveSlot {
    fn drop(&mut self) {
        self.context.store.metrics.connection_closed();
        release_peer(&self.context, self.address);
        self.context.active.fetch_sub(1, Ordering::SeqCst);
        self.connections
            .set(self.connections.get().saturating_sub(1));
    }
}

/// Counts a connection from `address`; the reason it is refused when the
/// address holds its share of the connections already.
fn claim_peer(context: &Context, address: IpAddr) -> std::result::Result<(), String> {
    let mut peers = dfs_engine::sync::lock(&context.peers);
    let held = peers.entry(address).or_insert(0);
    if *held >= context.peer_connections_max {
        return Err(format!(
            "{} is serving its limit of {} connections from {address}; try again later",
            context.name(),
            context.peer_connections_max
        ));
    }
    *held += 1;
    Ok(())
}

fn release_peer(context: &Context, address: IpAddr) {
    let mut peers = dfs_engine::sync::lock(&context.peers);
    if let Some(held) = peers.get_mut(&address) {
        *held = held.saturating_sub(1);
        if *held == 0 {
            peers.remove(&address);
        }
    }
}

async fn accept_loop(listener: &Listener, context: &Arc<Context>, connections: &Rc<Cell<usize>>) {
    let poll = Duration::from_millis(STOP_POLL_INTERVAL_MS);
    // One accept stays in flight across stop checks: a cancelled accept
    // could drop a connection the kernel just handed over.
    let mut accept = Box::pin(listener.accept());
    while !context.stopping.load(Ordering::SeqCst) {
        let accepted = match uring::race(&mut accept, uring::sleep(poll)).await {
            Either::First(accepted) => accepted,
            Either::Second(()) => continue,
        };
        accept = Box::pin(listener.accept());
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!("accept a connection: {error}");
                uring::sleep(Duration::from_millis(ACCEPT_RETRY_DELAY_MS)).await;
                continue;
            }
        };
        let active = context.active.fetch_add(1, Ordering::SeqCst);
        if active >= context.connections_max {
            context.active.fetch_sub(1, Ordering::SeqCst);
            let reason = format!(
                "{} is serving its limit of {} connections; try again later",
                context.name(),
                context.connections_max
            );
            context.store.metrics.connection_refused(Refusal::Busy);
            refuse(stream, context, reason);
            continue;
        }
        if let Err(reason) = claim_peer(context, peer.ip()) {
            context.active.fetch_sub(1, Ordering::SeqCst);
            context.store.metrics.connection_refused(Refusal::PeerLimit);
            refuse(stream, context, reason);
            continue;
        }
        connections.set(connections.get() + 1);
        context.store.metrics.connection_opened();
        let slot = ActiveSlot {
            context: Arc::clone(context),
            connections: Rc::clone(connections),
            address: peer.ip(),
        };
        uring::spawn(async move {
            let context = Arc::clone(&slot.context);
            Session::run(stream, peer.to_string(), context).await;
            drop(slot);
        });
    }
}

fn refuse(stream: Stream, context: &Arc<Context>, reason: String) {
    tracing::debug!("refusing a connection: {reason}");
    if context.busy_answers.fetch_add(1, Ordering::SeqCst) >= BUSY_ANSWERS_MAX {
        context.busy_answers.fetch_sub(1, Ordering::SeqCst);
        tracing::warn!("over the connection limit and too many busy answers pending; closing a connection unanswered");
        return;
    }
    let context = Arc::clone(context);
    uring::spawn(async move {
        let wait = Duration::from_millis(BUSY_ANSWER_TIMEOUT_MS);
        if uring::timeout(wait, answer_busy(&stream, reason))
            .await
            .is_none()
        {
            tracing::debug!("a refused connection sent no request in time");
        }
        context.busy_answers.fetch_sub(1, Ordering::SeqCst);
    });
}

/// Tells a connection over the limit that we are busy, answering its first
/// request by id, then reads the rest of that request before closing so the
/// close is not a reset that could destroy the answer on its way.
async fn answer_busy(stream: &Stream, reason: String) {
    let wait = Duration::from_millis(BUSY_ANSWER_TIMEOUT_MS);
    let Ok(bytes) = stream.read_exact(FRAME_HEADER_BYTES, wait).await else {
        return;
    };
    let Ok(header) = decode_header(&bytes) else {
        return;
    };
    let error = RemoteError::new(ErrorKind::Busy, reason);
    let mut answer = Vec::new();
    if wire::write_message(
        &mut answer,
        FrameKind::Response,
        header.request_id,
        &MinionResponse::Error(error),
    )
    .is_err()
        || stream.write_all(answer, wait).await.is_err()
    {
        return;
    }
    stream.shutdown_write().await;
    let mut unread_bytes = header.payload_bytes as usize;
    let mut scratch = vec![0u8; 4096];
    while unread_bytes > 0 {
        let length = scratch.len();
        match stream.read_into(scratch, 0..length, wait).await {
            Ok((0, _)) | Err(_) => break,
            Ok((count, returned)) => {
                scratch = returned;
                unread_bytes = unread_bytes.saturating_sub(count);
            }
        }
    }
}

/// Bytes of the request frame `header` announces, header included,
/// refused over the request limit (or when it is no request).
fn request_frame_bytes(header: &FrameHeader) -> Result<usize> {
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
    Ok(FRAME_HEADER_BYTES + header.payload_bytes as usize)
}

fn decode_header(bytes: &[u8]) -> Result<FrameHeader> {
    let array: &[u8; FRAME_HEADER_BYTES] = bytes
        .get(..FRAME_HEADER_BYTES)
        .and_then(|slice| slice.try_into().ok())
        .ok_or_else(|| Error::Protocol("short frame header".into()))?;
    FrameHeader::decode(array)
}

/// `future`'s output, or `None` once the service is stopping: a connection
/// waiting for a peer (its first bytes, its next request) does not keep a
/// stopping minion, and the lock on its directories, alive.
async fn unless_stopping<A: Future + Unpin>(
    context: &Context,
    future: &mut A,
) -> Option<A::Output> {
    let stopping = async {
        while !context.stopping.load(Ordering::SeqCst) {
            uring::sleep(Duration::from_millis(STOP_POLL_INTERVAL_MS)).await;
        }
    };
    match uring::race(future, stopping).await {
        Either::First(output) => Some(output),
        Either::Second(()) => None,
    }
}

/// What to do with a connection after a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    Continue,
    Close,
}

fn io_wait() -> Duration {
    Duration::from_millis(IO_TIMEOUT_MS)
}

/// One connection: its socket and its input buffer. Unparsed input is
/// `input[start..end]`; `start` is always at a frame boundary.
pub(crate) struct Session {
    pub(crate) context: Arc<Context>,
    pub(crate) peer: String,
    pub(crate) stream: Stream,
    /// IDLE_INPUT_BUFFER_BYTES, or INPUT_BUFFER_BYTES during a block write;
    /// always initialized; lent to operations while they run (then empty).
    input: Vec<u8>,
    start: usize,
    end: usize,
    /// The request an error answer refers to: the last request frame read.
    answer_to: Option<u64>,
    /// Since when the frame at `start` is awaited: its first byte's
    /// arrival, or when reading resumed after this side's own work (a disk
    /// write, a forward) if bytes of it came meanwhile. `None` at a frame
    /// boundary with nothing of the next frame waited for yet.
    frame_started: Option<Instant>,
    /// Socket reads so far, for the log.
    pub(crate) reads: u64,
}

impl Session {
    async fn run(stream: Stream, peer: String, context: Arc<Context>) {
        let layered = {
            let server = context.data_tls.as_ref().map(|tls| &tls.server);
            let mut layered = Box::pin(stream.accept_layer(server, context.idle_timeout));
            unless_stopping(&context, &mut layered).await
        };
        let stream = match layered {
            Some(Ok(stream)) => stream,
            Some(Err(error)) => {
                tracing::debug!("{peer}: closed before its first request: {error}");
                return;
            }
            None => return,
        };
        let refused_plain = context
            .data_tls
            .as_ref()
            .is_some_and(|tls| tls.required && !stream.is_tls());
        let mut session = Session {
            context,
            peer,
            stream,
            input: spare::take(IDLE_INPUT_BUFFER_BYTES),
            start: 0,
            end: 0,
            answer_to: None,
            frame_started: None,
            reads: 0,
        };
        tracing::debug!("{}: connected", session.peer);
        if refused_plain {
            session.refuse_plain().await;
            spare::give_back(std::mem::take(&mut session.input));
            return;
        }
        loop {
            match session.serve_one().await {
                Ok(Next::Continue) => {}
                Ok(Next::Close) => {
                    // A close after an answer: end our side gracefully so the
                    // answer is not lost to a reset.
                    session.stream.shutdown_write().await;
                    break;
                }
                Err(error) => {
                    session.fail(&error).await;
                    break;
                }
            }
        }
        tracing::debug!("{}: connection closed", session.peer);
        spare::give_back(std::mem::take(&mut session.input));
    }

    /// Answers the first request of a plain connection to a minion that
    /// takes block data only over TLS, then closes.
    async fn refuse_plain(&mut self) {
        let error = RemoteError::new(
            ErrorKind::PermissionDenied,
            format!(
                "{} takes block data only over TLS (--tls-data): the client must learn so from the master, which needs --tls-data too",
                self.context.name()
            ),
        );
        let answered = async {
            if !self.wait_for_request().await? {
                return Ok(());
            }
            match self.next_header().await? {
                Some(header) => self.respond_error(header.request_id, error).await,
                None => Ok(()),
            }
        }
        .await;
        if let Err(error) = answered {
            tracing::debug!("{}: refusing a plain connection: {error}", self.peer);
        }
        self.stream.shutdown_write().await;
    }

    /// Reads and runs one request. `Close` on a clean end of the stream.
    async fn serve_one(&mut self) -> Result<Next> {
        self.answer_to = None;
        if !self.wait_for_request().await? {
            return Ok(Next::Close);
        }
        let Some(header) = self.next_header().await? else {
            return Ok(Next::Close);
        };
        let request_id = header.request_id;
        let envelope = self.read_request(&header).await?;
        // Counted with its latency when this request is done.
        let _timer = self
            .context
            .store
            .metrics
            .time_request(RequestKind::of(&envelope.body));
        match envelope.body {
            MinionRequest::WriteBlock {
                block,
                generation,
                downstream,
                sync,
            } => {
                let replica = ReplicaId { block, generation };
                if let Some(keys) = &self.context.tokens {
                    let credentials = &envelope.credentials;
                    let checked = keys.check_write(
                        &credentials.token,
                        credentials,
                        replica,
                        self.context.me.id,
                        &downstream,
                        dfs_engine::rpc::now_ms(),
                    );
                    if let Err(refused) = checked {
                        return self
                            .refuse(request_id, "a write", refused, Next::Close)
                            .await;
                    }
                }
                // Copies between minions are background work, not clients.
                let _busy = (envelope.credentials.user != REPLICATION_USER)
                    .then(|| self.context.store.activity.begin());
                let _writing = self.context.store.metrics.pipeline_write();
                pipeline::write_block(
                    self,
                    pipeline::WriteRequest {
                        request_id,
                        credentials: envelope.credentials,
                        replica,
                        downstream,
                        sync,
                    },
                )
                .await
            }
            MinionRequest::ReadBlock {
                block,
                generation,
                offset_bytes,
                length_bytes,
            } => {
                let replica = ReplicaId { block, generation };
                if let Some(keys) = &self.context.tokens {
                    let checked =
                        keys.check_read(&envelope.credentials, replica, dfs_engine::rpc::now_ms());
                    if let Err(refused) = checked {
                        return self
                            .refuse(request_id, "a read", refused, Next::Continue)
                            .await;
                    }
                }
                let _busy = self.context.store.activity.begin();
                read::read_block(self, request_id, replica, offset_bytes, length_bytes).await
            }
            MinionRequest::WriteBlocks {
                blocks,
                downstream,
                sync,
            } => {
                if let Some(keys) = &self.context.tokens {
                    let now_ms = dfs_engine::rpc::now_ms();
                    let checked = blocks.iter().try_for_each(|batched| {
                        keys.check_write(
                            &batched.token,
                            &envelope.credentials,
                            batched.replica(),
                            self.context.me.id,
                            &downstream,
                            now_ms,
                        )
                    });
                    if let Err(refused) = checked {
                        return self
                            .refuse(request_id, "a batch write", refused, Next::Close)
                            .await;
                    }
                }
                let _busy = (envelope.credentials.user != REPLICATION_USER)
                    .then(|| self.context.store.activity.begin());
                let _writing = self.context.store.metrics.pipeline_write();
                batch::write_blocks(
                    self,
                    batch::BatchRequest {
                        request_id,
                        credentials: envelope.credentials,
                        blocks,
                        downstream,
                        sync,
                    },
                )
                .await
            }
            MinionRequest::SealBlock { block, .. } => Err(Error::Protocol(format!(
                "SealBlock of {block} without a WriteBlock before it"
            ))),
            MinionRequest::SyncReplicas { replicas } => {
                self.make_durable(request_id, &replicas).await
            }
        }
    }

    /// Answers `SyncReplicas`. No token is asked for: flushing what is
    /// stored changes nothing and reveals nothing a flush by time would
    /// not, and the count is bounded.
    async fn make_durable(&mut self, request_id: u64, replicas: &[ReplicaId]) -> Result<Next> {
        let name = self.context.name();
        if replicas.len() > SYNC_REPLICAS_MAX {
            let error = RemoteError::new(
                ErrorKind::InvalidArgument,
                format!(
                    "{name}: SyncReplicas names {} replicas, more than {SYNC_REPLICAS_MAX}",
                    replicas.len()
                ),
            );
            self.respond_error(request_id, error).await?;
            return Ok(Next::Continue);
        }
        let _busy = self.context.store.activity.begin();
        match self.context.store.make_durable(replicas).await {
            Ok(not_held) => {
                self.respond(request_id, &MinionResponse::Durable { not_held })
                    .await?;
            }
            Err(error) => {
                let kind = if matches!(error, Error::Corrupted { .. }) {
                    ErrorKind::Corrupted
                } else {
                    ErrorKind::Io
                };
                tracing::debug!("{}: SyncReplicas: {error}", self.peer);
                let error = RemoteError::new(kind, format!("{name}: {error}"));
                self.respond_error(request_id, error).await?;
            }
        }
        Ok(Next::Continue)
    }

    /// Answers a request whose block access token was refused, and goes on
    /// as `then` says: a read's connection goes on, a write's closes (its
    /// data frames follow).
    async fn refuse(
        &mut self,
        request_id: u64,
        what: &str,
        refused: TokenError,
        then: Next,
    ) -> Result<Next> {
        tracing::debug!("{}: refused {what}: {refused}", self.peer);
        let error = RemoteError::new(ErrorKind::PermissionDenied, refused.to_string());
        self.respond_error(request_id, error).await?;
        Ok(then)
    }

    /// Waits for the first bytes of the next request. `Ok(false)`: the
    /// stream ended, or the service is stopping (an idle connection does not
    /// keep a stopping minion, and the lock on its directories, alive).
    async fn wait_for_request(&mut self) -> Result<bool> {
        if self.start != self.end {
            return Ok(true);
        }
        let capacity = self.input.len();
        let buffer = std::mem::take(&mut self.input);
        let idle_timeout = self.context.idle_timeout;
        let mut read = Box::pin(self.stream.read_into(buffer, 0..capacity, idle_timeout));
        match unless_stopping(&self.context, &mut read).await {
            Some(read) => {
                let (count_read, buffer) =
                    read.map_err(|e| Error::io(format!("receive from {}", self.peer), e))?;
                self.input = buffer;
                self.reads += 1;
                self.start = 0;
                self.end = count_read;
                self.frame_started = Some(Instant::now());
                Ok(count_read > 0)
            }
            // The cancelled read keeps the buffer; the connection closes.
            None => Ok(false),
        }
    }

    /// Makes at least `count` unparsed bytes available. `Ok(false)` is a
    /// clean end of the stream with nothing unparsed.
    ///
    /// Reads stop at whole data frames from `start`, so a stream of full
    /// chunks fills the buffer exactly and nothing is ever moved; only a
    /// partial frame after an odd-sized one (a request) is moved to the
    /// front when the buffer runs out of room.
    pub(crate) async fn fill(&mut self, count: usize) -> Result<bool> {
        let capacity = self.input.len();
        if count > capacity {
            return Err(Error::Protocol(format!(
                "a frame of {count} bytes does not fit the input buffer"
            )));
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        // Bytes of the frame that came while this side worked started no
        // clock: the peer's time runs from now.
        if self.frame_started.is_none() && self.start != self.end {
            self.frame_started = Some(Instant::now());
        }
        while self.end - self.start < count {
            let room = capacity - self.start;
            let mut target = self.start + room / DATA_FRAME_BYTES * DATA_FRAME_BYTES;
            if target < self.start + count || target <= self.end {
                self.input.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
                target = capacity;
            }
            let wait = self.frame_wait(count)?;
            let buffer = std::mem::take(&mut self.input);
            let (count_read, buffer) = self
                .stream
                .read_into(buffer, self.end..target, wait)
                .await
                .map_err(|e| self.read_error(e, count))?;
            self.input = buffer;
            self.reads += 1;
            if self.frame_started.is_none() {
                self.frame_started = Some(Instant::now());
            }
            if count_read == 0 {
                if self.start == self.end {
                    return Ok(false);
                }
                return Err(Error::Protocol(
                    "connection closed in the middle of a frame".into(),
                ));
            }
            self.end += count_read;
        }
        Ok(true)
    }

    /// How long the next read for a frame of `count` bytes may wait: the
    /// I/O timeout for its first byte, then what is left of its deadline.
    fn frame_wait(&self, count: usize) -> Result<Duration> {
        let Some(started) = self.frame_started else {
            return Ok(io_wait());
        };
        let deadline = started + wire::frame_deadline(self.context.frame_deadline, count);
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.too_slow(count));
        }
        Ok(left.min(io_wait()))
    }

    fn read_error(&self, error: io::Error, count: usize) -> Error {
        let timed_out = matches!(
            error.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        );
        let past_deadline = self.frame_started.is_some_and(|started| {
            started.elapsed() >= wire::frame_deadline(self.context.frame_deadline, count)
        });
        if timed_out && past_deadline {
            return self.too_slow(count);
        }
        Error::io(format!("receive from {}", self.peer), error)
    }

    fn too_slow(&self, count: usize) -> Error {
        Error::Protocol(format!(
            "a frame of {count} bytes was not whole {:?} after its first byte; closing a connection that sends too slowly",
            wire::frame_deadline(self.context.frame_deadline, count)
        ))
    }

    /// The unparsed bytes.
    pub(crate) fn unparsed(&self) -> &[u8] {
        self.input.get(self.start..self.end).unwrap_or_default()
    }

    /// Marks `count` unparsed bytes as parsed.
    pub(crate) fn consume(&mut self, count: usize) {
        self.start = (self.start + count).min(self.end);
        // A frame boundary: the next frame's clock starts when it is
        // waited for.
        self.frame_started = None;
    }

    /// Grows the input buffer for a block write, keeping what it holds.
    pub(crate) fn grow_input(&mut self) {
        if self.input.len() < INPUT_BUFFER_BYTES {
            let mut grown = spare::take(INPUT_BUFFER_BYTES);
            // Unparsed bytes keep their place.
            grown[self.start..self.end].copy_from_slice(&self.input[self.start..self.end]);
            spare::give_back(std::mem::replace(&mut self.input, grown));
        }
    }

    /// Shrinks the input buffer back after a block write, when nothing
    /// unparsed is in the way.
    pub(crate) fn shrink_input(&mut self) {
        if self.input.len() > IDLE_INPUT_BUFFER_BYTES && self.start == self.end {
            let idle = spare::take(IDLE_INPUT_BUFFER_BYTES);
            spare::give_back(std::mem::replace(&mut self.input, idle));
            self.start = 0;
            self.end = 0;
        }
    }

    /// Position of the first unparsed byte in the input buffer.
    pub(crate) fn position(&self) -> usize {
        self.start
    }

    /// Lends the input buffer to operations that only read it (a file
    /// write and a forward of frames that were parsed and consumed).
    pub(crate) fn lend_input(&mut self) -> Rc<Vec<u8>> {
        Rc::new(std::mem::take(&mut self.input))
    }

    /// Takes the input buffer back after the operations that shared it.
    /// If one of them was cancelled and still holds it, the unparsed bytes
    /// move to a new buffer.
    pub(crate) fn return_input(&mut self, input: Rc<Vec<u8>>) {
        self.input = match Rc::try_unwrap(input) {
            Ok(buffer) => buffer,
            Err(shared) => {
                let mut fresh = vec![0u8; shared.len()];
                let unparsed = self.end - self.start;
                if let (Some(target), Some(source)) =
                    (fresh.get_mut(..unparsed), shared.get(self.start..self.end))
                {
                    target.copy_from_slice(source);
                }
                self.start = 0;
                self.end = unparsed;
                fresh
            }
        };
    }

    /// The next frame header, without consuming it; `None` at a clean end
    /// of the stream.
    pub(crate) async fn next_header(&mut self) -> Result<Option<FrameHeader>> {
        match self.fill(FRAME_HEADER_BYTES).await {
            Ok(false) => return Ok(None),
            Ok(true) => {}
            Err(Error::Protocol(_)) => {
                return Err(Error::Protocol(
                    "connection closed in the middle of a frame header".into(),
                ))
            }
            Err(error) => return Err(error),
        }
        let header = decode_header(self.unparsed())?;
        if header.kind == FrameKind::Request {
            self.answer_to = Some(header.request_id);
        }
        Ok(Some(header))
    }

    /// Reads and decodes the request frame that `header` announces.
    pub(crate) async fn read_request(
        &mut self,
        header: &FrameHeader,
    ) -> Result<Envelope<MinionRequest>> {
        let frame_bytes = request_frame_bytes(header)?;
        if !self.fill(frame_bytes).await? {
            return Err(Error::Protocol("connection closed before a request".into()));
        }
        self.decode_request(header, frame_bytes)
    }

    /// The request frame at the front of the input, if all of it already
    /// arrived (no I/O), with its request id; `None` when the input holds
    /// less or another kind of frame.
    pub(crate) fn take_buffered_request(
        &mut self,
    ) -> Result<Option<(u64, Envelope<MinionRequest>)>> {
        let Some(header_bytes) = self.unparsed().get(..FRAME_HEADER_BYTES) else {
            return Ok(None);
        };
        let header = decode_header(header_bytes)?;
        if header.kind != FrameKind::Request {
            return Ok(None);
        }
        let frame_bytes = request_frame_bytes(&header)?;
        if self.unparsed().len() < frame_bytes {
            return Ok(None);
        }
        self.answer_to = Some(header.request_id);
        let envelope = self.decode_request(&header, frame_bytes)?;
        Ok(Some((header.request_id, envelope)))
    }

    /// Decodes the complete request frame at the front of the input and
    /// consumes it.
    fn decode_request(
        &mut self,
        header: &FrameHeader,
        frame_bytes: usize,
    ) -> Result<Envelope<MinionRequest>> {
        let payload = self
            .unparsed()
            .get(FRAME_HEADER_BYTES..frame_bytes)
            .unwrap_or_default();
        if crc32c::crc32c(payload) != header.payload_crc {
            return Err(Error::Protocol(format!(
                "payload checksum mismatch in a {:?} frame of {} bytes",
                header.kind, header.payload_bytes
            )));
        }
        let envelope = wire::decode_message(payload)?;
        self.consume(frame_bytes);
        Ok(envelope)
    }

    /// Sends one response.
    pub(crate) async fn respond(
        &mut self,
        request_id: u64,
        response: &MinionResponse,
    ) -> Result<()> {
        let mut frame = Vec::new();
        wire::write_message(&mut frame, FrameKind::Response, request_id, response)?;
        self.stream
            .write_all(frame, io_wait())
            .await
            .map(drop)
            .map_err(|e| Error::io(format!("send to {}", self.peer), e))
    }

    pub(crate) async fn respond_error(
        &mut self,
        request_id: u64,
        error: RemoteError,
    ) -> Result<()> {
        self.respond(request_id, &MinionResponse::Error(error))
            .await
    }

    /// Ends the connection after `error`: a peer that broke the protocol is
    /// told why (when its request is known) and logged; a broken connection
    /// is only noted.
    async fn fail(&mut self, error: &Error) {
        match error {
            Error::Protocol(_) => {
                tracing::warn!("{}: {error}; closing the connection", self.peer);
                if let Some(request_id) = self.answer_to {
                    let answer = RemoteError::new(ErrorKind::Protocol, error.to_string());
                    if self.respond_error(request_id, answer).await.is_ok() {
                        // Let the answer arrive before the close.
                        self.stream.shutdown_write().await;
                    }
                }
            }
            Error::Io { cause, .. }
                if matches!(
                    cause.kind(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_core_gets_a_listener_on_the_same_port() {
        let listeners = bind_listeners("127.0.0.1:0", 3).expect("bind");
        let ports: Vec<u16> = listeners
            .iter()
            .map(|listener| listener.local_addr().expect("address").port())
            .collect();
        assert_eq!(ports.len(), 3);
        assert!(ports.iter().all(|&port| port == ports[0] && port != 0));
        let error = bind_listeners("256.0.0.1:0", 1).expect_err("bad address");
        assert!(
            error.to_string().contains("listen on 256.0.0.1:0"),
            "{error}"
        );
    }

    /// A peer that connects and says nothing (not even whether it speaks
    /// TLS) does not hold a stopping minion up.
    #[test]
    fn a_silent_connection_does_not_hold_up_the_stop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlockStore::open(&[dir.path().to_path_buf()]).expect("open store");
        let service = serve(ServeConfig::new("127.0.0.1:0", MinionId(7)), store).expect("serve");
        let _silent = std::net::TcpStream::connect(service.local_address()).expect("connect");
        // Accepted and waiting for its first bytes.
        std::thread::sleep(Duration::from_millis(200));
        let started = Instant::now();
        service.stop();
        assert!(
            started.elapsed() < Duration::from_millis(STOP_TIMEOUT_MS / 2),
            "the stop took {:?}",
            started.elapsed()
        );
    }

    /// A downstream that accepts and never reads must stall the upstream
    /// (TCP back-pressure through the minion), not make the minion buffer
    /// the block: the client can push only what socket buffers and one
    /// input buffer hold. Then the minion serves others as before.
    #[test]
    fn a_stalled_downstream_stalls_the_upstream() {
        use dfs_engine::msg::Credentials;
        use dfs_engine::rpc::Connection;

        const STALL_BOUND_BYTES: usize = 48 << 20;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlockStore::open(&[dir.path().to_path_buf()]).expect("open store");
        let service = serve(ServeConfig::new("127.0.0.1:0", MinionId(7)), store).expect("serve");
        let sink = std::net::TcpListener::bind("127.0.0.1:0").expect("bind sink");
        let sink_address = sink.local_addr().expect("sink address").to_string();
        let address = service.local_address().to_string();
        let mut connection = Connection::open_with_timeouts(
            &address,
            Duration::from_secs(5),
            Duration::from_millis(1_500),
        )
        .expect("connect");
        connection
            .send(
                &Credentials::default(),
                MinionRequest::WriteBlock {
                    block: dfs_engine::msg::BlockId(1),
                    generation: dfs_engine::msg::Generation(1),
                    downstream: vec![MinionAddress {
                        id: MinionId(8),
                        address: sink_address,
                    }],
                    sync: false,
                },
            )
            .expect("send WriteBlock");
        connection.flush().expect("flush WriteBlock");
        let (_held, _) = sink.accept().expect("the minion connects downstream");
        let chunk = vec![5u8; CHUNK_BYTES as usize];
        let crc = crc32c::crc32c(&chunk);
        let mut sent_bytes = 0;
        let stalled = loop {
            let sent = connection
                .send_data(&chunk, crc)
                .and_then(|()| connection.flush());
            if sent.is_err() {
                break true;
            }
            sent_bytes += chunk.len();
            if sent_bytes > STALL_BOUND_BYTES {
                break false;
            }
        };
        assert!(stalled, "{sent_bytes} bytes went in without a stall");
        assert!(sent_bytes > INPUT_BUFFER_BYTES, "{sent_bytes}");
        let mut other = Connection::open(&address).expect("connect again");
        let answer: MinionResponse = other
            .call(
                &Credentials::default(),
                MinionRequest::ReadBlock {
                    block: dfs_engine::msg::BlockId(2),
                    generation: dfs_engine::msg::Generation(2),
                    offset_bytes: 0,
                    length_bytes: 0,
                },
            )
            .expect("an answer");
        assert!(
            matches!(&answer, MinionResponse::Error(error) if error.kind == ErrorKind::NotFound),
            "{answer:?}"
        );
    }

    #[test]
    fn input_buffer_holds_whole_data_frames() {
        assert_eq!(INPUT_BUFFER_BYTES % DATA_FRAME_BYTES, 0);
        assert_eq!(DATA_FRAME_BYTES, 65_568);
    }
}
