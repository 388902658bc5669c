//! One member of a write pipeline: store each chunk of a new block and pass
//! it on to the next member as it arrives; on `SealBlock`, seal here and
//! downstream and answer with who stored the block and who failed.
//!
//! Data path: the frames that one read brought in (up to
//! `INPUT_FRAMES_MAX`) are checked in place (header, limits, CRC32C of each
//! chunk), then written to the block file (their payloads, one vectored
//! write) and forwarded downstream (the frames as received, one vectored
//! send) at the same time, from the same buffer: block bytes are never
//! copied in user space. The next read waits for both, so a slow disk or a
//! slow downstream slows the upstream through TCP and memory stays at one
//! input buffer per connection.
//!
//! A failure here (disk full, say) or downstream does not stop the others:
//! this member keeps forwarding when its disk fails and keeps storing when
//! its downstream fails, and the `Sealed` answer names every failure. Only
//! the upstream can end the write early, by breaking its connection; then
//! nothing of the block is kept here, and dropping the downstream connection
//! makes the members after this one give up too.
//!
//! A downstream that stalls (a gray failure: stopped, swapping, a dead
//! link that still looks open) is a failure too: when it takes no data or
//! gives no answer for the pipeline timeout, this member drops it and goes
//! on alone. The wait grows with the members behind it (the timeout times
//! their number): a member waiting on a member that itself waits on a
//! stalled one must not give up first and blame the wrong minion. The
//! upstream's own wait must be longer still (see `Context::pipeline_timeout`).

use std::ops::Range;
use std::rc::Rc;
use std::time::Duration;

use dfs_engine::block_store;
use dfs_engine::limits::{BLOCK_BYTES_MAX, CHUNK_BYTES, CONNECT_TIMEOUT_MS, REPLICATION_MAX};
use dfs_engine::msg::{
    BlockId, Credentials, Envelope, ErrorKind, Generation, MinionAddress, MinionRequest,
    MinionResponse, RemoteError, ReplicaFailure, ReplicaId, NOT_REACHED_PREFIX,
};
use dfs_engine::tls::DataTrust;
use dfs_engine::wire::{self, FrameHeader, FrameKind, FRAME_HEADER_BYTES};
use dfs_engine::{Error, Result};

use crate::server::{minion_name, DataTls, Next, Session};
use crate::store::UringBlockWriter;
use crate::uring::{self, Framed, SharedPieces, Stream};

/// A `WriteBlock` request as it arrived.
pub(crate) struct WriteRequest {
    pub(crate) request_id: u64,
    pub(crate) credentials: Credentials,
    pub(crate) replica: ReplicaId,
    pub(crate) downstream: Vec<MinionAddress>,
    pub(crate) sync: bool,
}

/// Runs a pipeline write on `session` until the block is sealed (and the
/// connection can carry the next request) or the write is abandoned.
pub(crate) async fn write_block(session: &mut Session, request: WriteRequest) -> Result<Next> {
    let block = request.replica.block;
    // This member plus its downstream must be a pipeline a file may ask for.
    if request.downstream.len() >= usize::from(REPLICATION_MAX) {
        let error = RemoteError::new(
            ErrorKind::InvalidArgument,
            format!(
                "{block}: a pipeline of {} minions is over the limit of {REPLICATION_MAX}",
                request.downstream.len() + 1
            ),
        );
        session.respond_error(request.request_id, error).await?;
        return Ok(Next::Close);
    }
    let mut pipeline = Pipeline::start(session, &request).await;
    let reads_before = session.reads;
    session.grow_input();
    let received = receive(session, &mut pipeline, &request).await;
    session.shrink_input();
    match received {
        Ok(next) => {
            tracing::debug!(
                "{block}: {} bytes in {} reads and {} batches",
                pipeline.received_bytes,
                session.reads - reads_before,
                pipeline.batches
            );
            Ok(next)
        }
        Err(error) => {
            tracing::warn!(
                "{}: abandoned the write of {block} after {} bytes; nothing of it is kept",
                session.peer,
                pipeline.received_bytes
            );
            // Dropping the pipeline removes the partial file and closes the
            // downstream connection.
            drop(pipeline);
            Err(error)
        }
    }
}

fn closed_before_seal(block: BlockId) -> Error {
    Error::io(
        format!("receive {block}"),
        std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the upstream closed the connection before SealBlock",
        ),
    )
}

/// Reads data frames until `SealBlock`, then seals and answers.
async fn receive(
    session: &mut Session,
    pipeline: &mut Pipeline,
    request: &WriteRequest,
) -> Result<Next> {
    let block = request.replica.block;
    loop {
        let Some(header) = session.next_header().await? else {
            return Err(closed_before_seal(block));
        };
        match header.kind {
            FrameKind::Data => {
                pipeline.check_chunk(header.payload_bytes)?;
                let frame_bytes = FRAME_HEADER_BYTES + header.payload_bytes as usize;
                if !session.fill(frame_bytes).await? {
                    return Err(closed_before_seal(block));
                }
                let batch = pipeline.parse_frames(session.unparsed())?;
                let start = session.position();
                session.consume(batch.frame_bytes);
                // A block that arrived whole (a small one) has its SealBlock
                // right behind the data: it goes down in the same send.
                let seal = match session.take_buffered_request()? {
                    Some((request_id, envelope)) => {
                        check_seal(block, pipeline.received_bytes, envelope.body)?;
                        Some(request_id)
                    }
                    None => None,
                };
                pipeline
                    .store_and_forward(session, start, batch, seal.is_some(), &request.credentials)
                    .await;
                if let Some(request_id) = seal {
                    let response = pipeline.seal(&request.credentials).await;
                    session.respond(request_id, &response).await?;
                    return Ok(Next::Continue);
                }
            }
            FrameKind::Request => {
                let envelope = session.read_request(&header).await?;
                check_seal(block, pipeline.received_bytes, envelope.body)?;
                let response = pipeline.seal(&request.credentials).await;
                session.respond(header.request_id, &response).await?;
                return Ok(Next::Continue);
            }
            FrameKind::Response => {
                return Err(Error::Protocol(format!(
                    "a response frame in the middle of {block}"
                )));
            }
        }
    }
}

/// Refuses a request in the middle of a block that is not the `SealBlock`
/// of the bytes that arrived.
fn check_seal(block: BlockId, received_bytes: u64, request: MinionRequest) -> Result<()> {
    let MinionRequest::SealBlock {
        block: sealed,
        length_bytes,
    } = request
    else {
        return Err(Error::Protocol(format!(
            "expected data or SealBlock for {block}, got another request"
        )));
    };
    if sealed != block || length_bytes != received_bytes {
        return Err(Error::Protocol(format!(
            "SealBlock of {sealed} with {length_bytes} bytes, but {received_bytes} bytes of {block} arrived"
        )));
    }
    Ok(())
}

/// Complete data frames at the front of the unparsed input, checked.
#[derive(Debug, PartialEq, Eq)]
struct FrameBatch {
    /// Bytes of the frames, headers included, from the first unparsed byte.
    frame_bytes: usize,
    /// Where each chunk's payload is, relative to the first unparsed byte.
    payloads: Vec<Range<usize>>,
    crcs: Vec<u32>,
}

/// Idle connections to next members, kept per core for the next block: a
/// small file is one block, and a connection (connect, accept, a session on
/// the other side) per block and hop cost as much as storing it. A
/// connection is kept only after a complete exchange (the next member
/// answered the seal) and used again only while young and quiet; the
/// other side closes connections idle for the I/O timeout.
pub(crate) mod idle_links {
    use std::cell::RefCell;
    use std::time::{Duration, Instant};

    use dfs_engine::limits::IO_TIMEOUT_MS;

    use crate::uring::Stream;

    /// Idle connections kept per core.
    const IDLE_LINKS_MAX: usize = 16;
    /// Older idle connections are closed rather than used: well within the
    /// other side's idle timeout.
    const IDLE_KEPT_MS: u64 = 10_000;
    const _: () = assert!(IDLE_KEPT_MS < IO_TIMEOUT_MS);

    thread_local! {
        static IDLE: RefCell<Vec<(String, Stream, Instant)>> = const { RefCell::new(Vec::new()) };
    }

    /// A quiet, young idle connection to `address`, if one is kept.
    pub(crate) fn take(address: &str) -> Option<Stream> {
        IDLE.with(|idle| {
            let mut idle = idle.borrow_mut();
            let kept = Duration::from_millis(IDLE_KEPT_MS);
            idle.retain(|(_, _, since)| since.elapsed() < kept);
            while let Some(index) = idle.iter().rposition(|(to, _, _)| to == address) {
                let (_, stream, _) = idle.remove(index);
                if stream.is_quiet() {
                    return Some(stream);
                }
            }
            None
        })
    }

    pub(crate) fn keep(address: &str, stream: Stream) {
        IDLE.with(|idle| {
            let mut idle = idle.borrow_mut();
            if idle.len() >= IDLE_LINKS_MAX {
                idle.remove(0);
            }
            idle.push((address.to_string(), stream, Instant::now()));
        });
    }
}

/// The connection to the next member and the members it stands for.
pub(crate) struct Downstream {
    pub(crate) stream: Stream,
    /// Request frames not sent yet: they go with the next send, so a
    /// small block's `WriteBlock`, data and `SealBlock` travel together.
    pub(crate) queued: Vec<u8>,
    /// The member connected to, then the ones after it.
    pub(crate) members: Vec<MinionAddress>,
    next_request_id: u64,
    /// How long it may take any one send or answer: the pipeline timeout
    /// for each member in `members`.
    pub(crate) wait: Duration,
}

/// Says what a downstream operation that failed after `wait` means.
pub(crate) fn stalled(error: std::io::Error, wait: Duration) -> std::io::Error {
    if error.kind() == std::io::ErrorKind::TimedOut {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no progress in {wait:?} (stalled)"),
        )
    } else {
        error
    }
}

impl Downstream {
    /// Encodes a request behind the queued ones; returns its request id.
    fn queue(&mut self, credentials: &Credentials, body: MinionRequest) -> Result<u64> {
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        let envelope = Envelope {
            credentials: credentials.clone(),
            body,
        };
        wire::write_message(&mut self.queued, FrameKind::Request, request_id, &envelope)?;
        Ok(request_id)
    }

    /// Sends a request, after the queued ones.
    async fn send(&mut self, credentials: &Credentials, body: MinionRequest) -> Result<u64> {
        let request_id = self.queue(credentials, body)?;
        let frames = std::mem::take(&mut self.queued);
        self.stream
            .write_all(frames, self.wait)
            .await
            .map_err(|e| Error::io(format!("send to {}", self.address()), stalled(e, self.wait)))?;
        Ok(request_id)
    }

    pub(crate) async fn receive(&self, request_id: u64) -> Result<MinionResponse> {
        let address = self.address();
        let wait = self.wait;
        let header_bytes = self
            .stream
            .read_exact(FRAME_HEADER_BYTES, wait)
            .await
            .map_err(|e| Error::io(format!("receive from {address}"), stalled(e, wait)))?;
        let array: [u8; FRAME_HEADER_BYTES] = header_bytes
            .as_slice()
            .try_into()
            .map_err(|_| Error::Protocol("short frame header".into()))?;
        let header = FrameHeader::decode(&array)?;
        if header.kind != FrameKind::Response {
            return Err(Error::Protocol(format!(
                "expected a Response frame from {address}, got {:?}",
                header.kind
            )));
        }
        // The decoder bounded payload_bytes by the control frame limit.
        let payload = self
            .stream
            .read_exact(header.payload_bytes as usize, wait)
            .await
            .map_err(|e| Error::io(format!("receive from {address}"), stalled(e, wait)))?;
        if crc32c::crc32c(&payload) != header.payload_crc {
            return Err(Error::Protocol(format!(
                "payload checksum mismatch in a response from {address}"
            )));
        }
        if header.request_id != request_id {
            return Err(Error::Protocol(format!(
                "{address} answered request {}, expected {request_id}",
                header.request_id
            )));
        }
        wire::decode_message(&payload)
    }

    fn address(&self) -> &str {
        self.members
            .first()
            .map_or("the downstream minion", |member| member.address.as_str())
    }

    /// The id of the request queued or sent last.
    pub(crate) fn last_request_id(&self) -> u64 {
        self.next_request_id - 1
    }

    /// The failures that losing this connection while writing `what`
    /// means: the member connected to, for `why`, and every member after
    /// it, never reached.
    pub(crate) fn lost(&self, kind: ErrorKind, why: &str, what: &str) -> Vec<ReplicaFailure> {
        let Some((direct, behind)) = self.members.split_first() else {
            return Vec::new();
        };
        tracing::warn!(
            "lost downstream {} while writing {what}: {why}",
            minion_name(direct)
        );
        let mut lost = vec![failure(direct, kind, why.to_string())];
        for member in behind {
            lost.push(failure(
                member,
                ErrorKind::Io,
                format!(
                    "{NOT_REACHED_PREFIX}the pipeline broke at {}",
                    minion_name(direct)
                ),
            ));
        }
        lost
    }
}

/// Connects to the first member of `members` that can be reached and
/// queues for it `request(members after it)`, to go with the first data.
/// Members that could not be reached are returned as failures; `what`
/// names the write for the log.
pub(crate) async fn connect_downstream(
    me: &MinionAddress,
    what: &str,
    credentials: &Credentials,
    members: &[MinionAddress],
    pipeline_timeout: Duration,
    trust: Option<&DataTrust>,
    request: impl Fn(Vec<MinionAddress>) -> MinionRequest,
) -> (Option<Downstream>, Vec<ReplicaFailure>) {
    let mut failures = Vec::new();
    for (index, member) in members.iter().enumerate() {
        let behind = members.len() - index;
        let stream = match idle_links::take(&member.address) {
            Some(stream) => Ok(stream),
            None => {
                let wait = Duration::from_millis(CONNECT_TIMEOUT_MS);
                match trust {
                    Some(trust) => Stream::connect_tls(&member.address, wait, trust).await,
                    None => Stream::connect(&member.address, wait).await,
                }
                .map_err(|e| Error::io(format!("connect to {}", member.address), e))
            }
        };
        let opened = stream.and_then(|stream| {
            let mut downstream = Downstream {
                stream,
                queued: Vec::new(),
                members: members[index..].to_vec(),
                next_request_id: 1,
                wait: pipeline_timeout.saturating_mul(behind as u32),
            };
            downstream.queue(credentials, request(members[index + 1..].to_vec()))?;
            Ok(downstream)
        });
        match opened {
            Ok(downstream) => return (Some(downstream), failures),
            Err(error) => {
                tracing::warn!(
                    "{}: can't reach {} for {what}: {error}",
                    minion_name(me),
                    minion_name(member)
                );
                failures.push(failure(
                    member,
                    ErrorKind::Io,
                    format!("unreachable from {}: {error}", minion_name(me)),
                ));
            }
        }
    }
    (None, failures)
}

/// This member's failure to store `block`, for the answer upstream.
pub(crate) fn local_failure(me: &MinionAddress, block: BlockId, error: &Error) -> ReplicaFailure {
    let (kind, what) = if error.is_disk_full() {
        (ErrorKind::NoSpace, "disk full writing")
    } else if block_store::is_already_exists(error) {
        (ErrorKind::AlreadyExists, "already has")
    } else {
        (ErrorKind::Io, "failed to store")
    };
    tracing::warn!("can't store {block}: {error}");
    failure(me, kind, format!("{what} {block}: {error}"))
}

struct Pipeline {
    me: MinionAddress,
    block: BlockId,
    generation: Generation,
    sync: bool,
    /// None once the local write failed (or never started).
    writer: Option<UringBlockWriter>,
    own_failure: Option<ReplicaFailure>,
    downstream: Option<Downstream>,
    /// Members lost after the write started, with why.
    lost: Vec<ReplicaFailure>,
    /// Members that could not be reached when the write started.
    connect_failures: Vec<ReplicaFailure>,
    received_bytes: u64,
    short_chunk_received: bool,
    batches: u64,
    /// The `SealBlock` went down with the last data, as this request.
    seal_sent: Option<u64>,
}

fn failure(minion: &MinionAddress, kind: ErrorKind, why: String) -> ReplicaFailure {
    ReplicaFailure {
        minion: minion.clone(),
        error: RemoteError::new(kind, format!("{}: {why}", minion_name(minion))),
    }
}

impl Pipeline {
    /// Connects downstream (skipping members that can't be reached) and
    /// creates the local block file. Failures are recorded, not returned.
    async fn start(session: &Session, request: &WriteRequest) -> Pipeline {
        let context = &session.context;
        let mut pipeline = Pipeline {
            me: context.me.clone(),
            block: request.replica.block,
            generation: request.replica.generation,
            sync: request.sync,
            writer: None,
            own_failure: None,
            downstream: None,
            lost: Vec::new(),
            connect_failures: Vec::new(),
            received_bytes: 0,
            short_chunk_received: false,
            batches: 0,
            seal_sent: None,
        };
        let (created, ()) = uring::join(
            context.store.create(request.replica, request.sync),
            pipeline.connect_downstream(
                &request.credentials,
                &request.downstream,
                context.pipeline_timeout,
                DataTls::outgoing(context.data_tls.as_ref()),
            ),
        )
        .await;
        match created {
            Ok(writer) => pipeline.writer = Some(writer),
            Err(error) => pipeline.fail_locally(&error),
        }
        pipeline
    }

    async fn connect_downstream(
        &mut self,
        credentials: &Credentials,
        members: &[MinionAddress],
        pipeline_timeout: Duration,
        trust: Option<&DataTrust>,
    ) {
        let (block, generation, sync) = (self.block, self.generation, self.sync);
        let (downstream, failures) = connect_downstream(
            &self.me,
            &block.to_string(),
            credentials,
            members,
            pipeline_timeout,
            trust,
            |rest| MinionRequest::WriteBlock {
                block,
                generation,
                downstream: rest,
                sync,
            },
        )
        .await;
        self.downstream = downstream;
        self.connect_failures = failures;
    }

    /// Records that this member can't store the block and drops its file.
    fn fail_locally(&mut self, error: &Error) {
        self.writer = None;
        self.own_failure = Some(local_failure(&self.me, self.block, error));
    }

    /// Records the downstream member (and all behind it) as failed and drops
    /// the connection, which makes them give up the block.
    fn lose_downstream(&mut self, kind: ErrorKind, why: &str) {
        let Some(downstream) = self.downstream.take() else {
            return;
        };
        let lost = downstream.lost(kind, why, &self.block.to_string());
        self.lost.extend(lost);
    }

    /// Refuses a data frame that is no chunk of this block, before its
    /// payload is read.
    fn check_chunk(&self, payload_bytes: u32) -> Result<()> {
        check_chunk(
            self.block,
            self.received_bytes,
            self.short_chunk_received,
            payload_bytes,
        )
    }

    /// Takes the complete data frames at the front of `input` (at least the
    /// first, which the caller made complete), checking each header and
    /// CRC32C in place, and counts them as received.
    fn parse_frames(&mut self, input: &[u8]) -> Result<FrameBatch> {
        let batch = parse_frames(
            self.block,
            self.received_bytes,
            self.short_chunk_received,
            input,
        )?;
        for payload in &batch.payloads {
            self.received_bytes += payload.len() as u64;
            self.short_chunk_received = payload.len() < CHUNK_BYTES as usize;
        }
        Ok(batch)
    }

    /// Writes the batch's chunks here and sends its frames on, at once and
    /// from the session's input buffer. `start` is where the batch begins
    /// in that buffer. With `seal`, the `SealBlock` goes down right after.
    async fn store_and_forward(
        &mut self,
        session: &mut Session,
        start: usize,
        batch: FrameBatch,
        seal: bool,
        credentials: &Credentials,
    ) {
        let block = self.block;
        self.batches += 1;
        let data_bytes: u64 = batch.payloads.iter().map(|range| range.len() as u64).sum();
        let input = session.lend_input();
        let local_pieces = SharedPieces {
            bytes: Rc::clone(&input),
            ranges: batch
                .payloads
                .iter()
                .map(|range| start + range.start..start + range.end)
                .collect(),
        };
        let forward_pieces = SharedPieces {
            bytes: Rc::clone(&input),
            ranges: std::iter::once(start..start + batch.frame_bytes).collect(),
        };
        let mut seal_frame = Vec::new();
        if let (true, Some(downstream)) = (seal, &mut self.downstream) {
            let request = MinionRequest::SealBlock {
                block,
                length_bytes: self.received_bytes,
            };
            let queued_bytes = downstream.queued.len();
            match downstream.queue(credentials, request) {
                Ok(request_id) => {
                    seal_frame = downstream.queued.split_off(queued_bytes);
                    self.seal_sent = Some(request_id);
                }
                // Sent the usual way by `seal`.
                Err(error) => tracing::warn!("{block}: {error}"),
            }
        }
        let Pipeline {
            writer, downstream, ..
        } = self;
        let local = async {
            match writer {
                Some(writer) => Some(writer.write_chunks(local_pieces, &batch.crcs).await),
                None => None,
            }
        };
        let forward = async {
            match downstream {
                Some(downstream) => {
                    let framed = Framed {
                        before: std::mem::take(&mut downstream.queued),
                        pieces: forward_pieces,
                        after: seal_frame,
                    };
                    Some(
                        downstream
                            .stream
                            .write_vectored_all(framed, downstream.wait)
                            .await
                            .map(drop)
                            .map_err(|e| stalled(e, downstream.wait)),
                    )
                }
                None => None,
            }
        };
        let (stored, forwarded) = uring::join(local, forward).await;
        session.return_input(input);
        if let Some(Err(error)) = stored {
            self.fail_locally(&error);
        }
        match forwarded {
            Some(Ok(())) => {
                session
                    .context
                    .store
                    .metrics
                    .forwarded_bytes
                    .inc_by(data_bytes);
            }
            Some(Err(error)) => {
                self.lose_downstream(ErrorKind::Io, &format!("forward {block}: {error}"))
            }
            None => {}
        }
    }

    /// Seals the block here and downstream (in parallel: the request goes
    /// down first) and builds the answer for upstream.
    async fn seal(&mut self, credentials: &Credentials) -> MinionResponse {
        let block = self.block;
        let length_bytes = self.received_bytes;
        let mut pending = None;
        if let (Some(request_id), Some(_)) = (self.seal_sent, &self.downstream) {
            pending = Some(request_id);
        } else if let Some(downstream) = &mut self.downstream {
            let request = MinionRequest::SealBlock {
                block,
                length_bytes,
            };
            match downstream.send(credentials, request).await {
                Ok(request_id) => pending = Some(request_id),
                Err(error) => {
                    self.lose_downstream(ErrorKind::Io, &format!("seal {block}: {error}"))
                }
            }
        }
        let writer = self.writer.take();
        let sync = self.sync;
        let local = async move {
            match writer {
                Some(writer) => Some(writer.seal(sync).await),
                None => None,
            }
        };
        let downstream = &self.downstream;
        let remote = async move {
            match (pending, downstream) {
                (Some(request_id), Some(downstream)) => Some(downstream.receive(request_id).await),
                _ => None,
            }
        };
        let (sealed_here, answer) = uring::join(local, remote).await;
        let mut stored = Vec::new();
        match sealed_here {
            Some(Ok(_)) => stored.push(self.me.id),
            Some(Err(error)) => self.fail_locally(&error),
            None => {}
        }
        let mut reported_failures = Vec::new();
        match answer {
            Some(Ok(MinionResponse::Sealed {
                stored: stored_downstream,
                failed,
            })) => {
                stored.extend(stored_downstream);
                reported_failures = failed;
                // The exchange is complete: the connection can carry the
                // next block.
                if let Some(downstream) = self.downstream.take() {
                    let address = downstream.address().to_string();
                    idle_links::keep(&address, downstream.stream);
                }
            }
            Some(Ok(MinionResponse::Error(error))) => {
                self.lose_downstream(error.kind, &error.message)
            }
            Some(Ok(
                MinionResponse::ReadStarted { .. }
                | MinionResponse::BatchSealed { .. }
                | MinionResponse::Durable { .. },
            )) => self.lose_downstream(
                ErrorKind::Protocol,
                &format!("answered SealBlock of {block} with another answer than Sealed"),
            ),
            Some(Err(error)) => {
                self.lose_downstream(ErrorKind::Io, &format!("seal {block}: {error}"))
            }
            None => {}
        }
        if stored.first() == Some(&self.me.id) {
            tracing::debug!("stored {block} ({length_bytes} bytes)");
        }
        let mut failed: Vec<ReplicaFailure> = self.own_failure.take().into_iter().collect();
        failed.extend(reported_failures);
        failed.append(&mut self.lost);
        failed.append(&mut self.connect_failures);
        MinionResponse::Sealed { stored, failed }
    }
}

fn check_chunk(
    block: BlockId,
    received_bytes: u64,
    short_chunk_received: bool,
    payload_bytes: u32,
) -> Result<()> {
    if payload_bytes == 0 || payload_bytes > CHUNK_BYTES {
        return Err(Error::Protocol(format!(
            "a data frame of {payload_bytes} bytes in {block} (chunks have 1 to {CHUNK_BYTES})"
        )));
    }
    if short_chunk_received {
        return Err(Error::Protocol(format!(
            "a chunk of {block} after a short one (only the last chunk may be shorter than {CHUNK_BYTES} bytes)"
        )));
    }
    if received_bytes + u64::from(payload_bytes) > BLOCK_BYTES_MAX {
        return Err(Error::Protocol(format!(
            "{block} grows over the limit of {BLOCK_BYTES_MAX} bytes"
        )));
    }
    Ok(())
}

/// The complete data frames at the front of `input`, each checked as it
/// comes: its header, its place in the block, its CRC32C. Stops at the first
/// frame that is incomplete or not data.
fn parse_frames(
    block: BlockId,
    mut received_bytes: u64,
    mut short_chunk_received: bool,
    input: &[u8],
) -> Result<FrameBatch> {
    let mut batch = FrameBatch {
        frame_bytes: 0,
        payloads: Vec::new(),
        crcs: Vec::new(),
    };
    let mut position = 0;
    while let Some(header_bytes) = input.get(position..position + FRAME_HEADER_BYTES) {
        let array: &[u8; FRAME_HEADER_BYTES] = header_bytes
            .try_into()
            .map_err(|_| Error::Protocol("short frame header".into()))?;
        let header = FrameHeader::decode(array)?;
        if header.kind != FrameKind::Data {
            break;
        }
        check_chunk(
            block,
            received_bytes,
            short_chunk_received,
            header.payload_bytes,
        )?;
        let payload_start = position + FRAME_HEADER_BYTES;
        let payload_end = payload_start + header.payload_bytes as usize;
        let Some(payload) = input.get(payload_start..payload_end) else {
            break;
        };
        if crc32c::crc32c(payload) != header.payload_crc {
            return Err(Error::Protocol(format!(
                "payload checksum mismatch in a {:?} frame of {} bytes",
                header.kind, header.payload_bytes
            )));
        }
        batch.payloads.push(payload_start..payload_end);
        batch.crcs.push(header.payload_crc);
        received_bytes += u64::from(header.payload_bytes);
        short_chunk_received = header.payload_bytes < CHUNK_BYTES;
        position = payload_end;
        batch.frame_bytes = position;
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNK: usize = CHUNK_BYTES as usize;

    fn data_frame(payload: &[u8]) -> Vec<u8> {
        let mut frame = Vec::new();
        wire::write_frame(&mut frame, FrameKind::Data, 0, 0, payload).expect("encode");
        frame
    }

    fn request_frame() -> Vec<u8> {
        let mut frame = Vec::new();
        wire::write_message(&mut frame, FrameKind::Request, 2, &"seal").expect("encode");
        frame
    }

    /// (name, input, bytes already received, payload lengths or error)
    #[test]
    fn frames_are_taken_while_complete_and_checked() {
        let full = vec![7u8; CHUNK];
        let short = vec![9u8; 100];
        let mut corrupt = data_frame(&full);
        corrupt[FRAME_HEADER_BYTES + 5] ^= 1;
        let two_full = [data_frame(&full), data_frame(&full)].concat();
        type Expected = std::result::Result<Vec<usize>, &'static str>;
        let cases: Vec<(&str, Vec<u8>, u64, Expected)> = vec![
            ("two full", two_full.clone(), 0, Ok(vec![CHUNK, CHUNK])),
            (
                "a partial second frame stays",
                two_full[..two_full.len() - 1].to_vec(),
                0,
                Ok(vec![CHUNK]),
            ),
            (
                "short then seal",
                [data_frame(&full), data_frame(&short), request_frame()].concat(),
                0,
                Ok(vec![CHUNK, 100]),
            ),
            ("only a request", request_frame(), 0, Ok(vec![])),
            ("corrupt", corrupt, 0, Err("payload checksum mismatch")),
            (
                "after a short one",
                [data_frame(&short), data_frame(&short)].concat(),
                0,
                Err("after a short one"),
            ),
            (
                "over the block limit",
                data_frame(&full),
                BLOCK_BYTES_MAX,
                Err("grows over the limit"),
            ),
        ];
        for (name, input, received, expected) in cases {
            let parsed = parse_frames(BlockId(1), received, false, &input);
            match (parsed, expected) {
                (Ok(batch), Ok(lengths)) => {
                    let got: Vec<usize> = batch.payloads.iter().map(|r| r.len()).collect();
                    assert_eq!(got, lengths, "{name}");
                    let frames: usize = lengths.iter().map(|l| l + FRAME_HEADER_BYTES).sum();
                    assert_eq!(batch.frame_bytes, frames, "{name}");
                    for (range, crc) in batch.payloads.iter().zip(&batch.crcs) {
                        assert_eq!(crc32c::crc32c(&input[range.clone()]), *crc, "{name}");
                    }
                }
                (Err(error), Err(text)) => {
                    assert!(error.to_string().contains(text), "{name}: {error}")
                }
                (parsed, expected) => panic!("{name}: got {parsed:?}, expected {expected:?}"),
            }
        }
    }
}
