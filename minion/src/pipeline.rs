//! One member of a write pipeline: store each chunk of a new block and pass
//! it on to the next member as it arrives; on `SealBlock`, seal here and
//! downstream and answer with who stored the block and who failed.
//!
//! A failure here (disk full, say) or downstream does not stop the others:
//! this member keeps forwarding when its disk fails and keeps storing when
//! its downstream fails, and the `Sealed` answer names every failure. Only
//! the upstream can end the write early, by breaking its connection; then
//! nothing of the block is kept here, and dropping the downstream connection
//! makes the members after this one give up too.
//!
//! Memory: the session's one chunk buffer; a block is never held in memory.

use std::time::Duration;

use dfs_engine::block_store::{self, BlockWriter};
use dfs_engine::limits::{
    BLOCK_BYTES_MAX, CHUNK_BYTES, CONNECT_TIMEOUT_MS, IO_TIMEOUT_MS, REPLICATION_MAX,
};
use dfs_engine::msg::{
    BlockId, Credentials, ErrorKind, MinionAddress, MinionRequest, MinionResponse, RemoteError,
    ReplicaFailure,
};
use dfs_engine::rpc::Connection;
use dfs_engine::wire::FrameKind;
use dfs_engine::{Error, Result};

use crate::server::{minion_name, Next, Session};

/// A `WriteBlock` request as it arrived.
pub(crate) struct WriteRequest {
    pub(crate) request_id: u64,
    pub(crate) credentials: Credentials,
    pub(crate) block: BlockId,
    pub(crate) downstream: Vec<MinionAddress>,
    pub(crate) sync: bool,
}

/// Runs a pipeline write on `session` until the block is sealed (and the
/// connection can carry the next request) or the write is abandoned.
pub(crate) fn write_block(session: &mut Session, request: WriteRequest) -> Result<Next> {
    let block = request.block;
    // This member plus its downstream must be a pipeline a file may ask for.
    if request.downstream.len() >= usize::from(REPLICATION_MAX) {
        let error = RemoteError::new(
            ErrorKind::InvalidArgument,
            format!(
                "{block}: a pipeline of {} minions is over the limit of {REPLICATION_MAX}",
                request.downstream.len() + 1
            ),
        );
        session.respond_error(request.request_id, error)?;
        return Ok(Next::Close);
    }
    let mut pipeline = Pipeline::start(session, &request);
    match receive(session, &mut pipeline, &request) {
        Ok(next) => Ok(next),
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

/// Reads data frames until `SealBlock`, then seals and answers.
fn receive(session: &mut Session, pipeline: &mut Pipeline, request: &WriteRequest) -> Result<Next> {
    let block = request.block;
    loop {
        let Some(header) = session.read_header()? else {
            return Err(Error::io(
                format!("receive {block}"),
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the upstream closed the connection before SealBlock",
                ),
            ));
        };
        match header.kind {
            FrameKind::Data => {
                pipeline.check_chunk(header.payload_bytes)?;
                session.read_payload(&header)?;
                pipeline.store_and_forward(&session.buffer, header.payload_crc);
            }
            FrameKind::Request => {
                let envelope = session.read_request(&header)?;
                let MinionRequest::SealBlock {
                    block: sealed,
                    length_bytes,
                } = envelope.body
                else {
                    return Err(Error::Protocol(format!(
                        "expected data or SealBlock for {block}, got another request"
                    )));
                };
                if sealed != block || length_bytes != pipeline.received_bytes {
                    return Err(Error::Protocol(format!(
                        "SealBlock of {sealed} with {length_bytes} bytes, but {} bytes of {block} arrived",
                        pipeline.received_bytes
                    )));
                }
                let response = pipeline.seal(&request.credentials);
                session.respond(header.request_id, &response)?;
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

/// The connection to the next member and the members it stands for.
struct Downstream {
    connection: Connection,
    /// The member connected to, then the ones after it.
    members: Vec<MinionAddress>,
}

struct Pipeline {
    me: MinionAddress,
    block: BlockId,
    sync: bool,
    /// None once the local write failed (or never started).
    writer: Option<BlockWriter>,
    own_failure: Option<ReplicaFailure>,
    downstream: Option<Downstream>,
    /// Members lost after the write started, with why.
    lost: Vec<ReplicaFailure>,
    /// Members that could not be reached when the write started.
    connect_failures: Vec<ReplicaFailure>,
    received_bytes: u64,
    short_chunk_received: bool,
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
    fn start(session: &Session, request: &WriteRequest) -> Pipeline {
        let context = session.context;
        let mut pipeline = Pipeline {
            me: context.me.clone(),
            block: request.block,
            sync: request.sync,
            writer: None,
            own_failure: None,
            downstream: None,
            lost: Vec::new(),
            connect_failures: Vec::new(),
            received_bytes: 0,
            short_chunk_received: false,
        };
        pipeline.connect_downstream(&request.credentials, &request.downstream);
        match context.store.create(request.block) {
            Ok(writer) => pipeline.writer = Some(writer),
            Err(error) => pipeline.fail_locally(&error),
        }
        pipeline
    }

    fn connect_downstream(&mut self, credentials: &Credentials, members: &[MinionAddress]) {
        for (index, member) in members.iter().enumerate() {
            let forwarded = MinionRequest::WriteBlock {
                block: self.block,
                downstream: members[index + 1..].to_vec(),
                sync: self.sync,
            };
            let opened = Connection::open_with_timeouts(
                &member.address,
                Duration::from_millis(CONNECT_TIMEOUT_MS),
                Duration::from_millis(IO_TIMEOUT_MS),
            )
            .and_then(|mut connection| {
                connection.send(credentials, forwarded)?;
                connection.flush()?;
                Ok(connection)
            });
            match opened {
                Ok(connection) => {
                    self.downstream = Some(Downstream {
                        connection,
                        members: members[index..].to_vec(),
                    });
                    return;
                }
                Err(error) => {
                    tracing::warn!(
                        "{}: can't reach {} for {}: {error}",
                        minion_name(&self.me),
                        minion_name(member),
                        self.block
                    );
                    self.connect_failures.push(failure(
                        member,
                        ErrorKind::Io,
                        format!("unreachable from {}: {error}", minion_name(&self.me)),
                    ));
                }
            }
        }
    }

    /// Records that this member can't store the block and drops its file.
    fn fail_locally(&mut self, error: &Error) {
        let block = self.block;
        let (kind, what) = if error.is_disk_full() {
            (ErrorKind::NoSpace, "disk full writing")
        } else if block_store::is_already_exists(error) {
            (ErrorKind::AlreadyExists, "already has")
        } else {
            (ErrorKind::Io, "failed to store")
        };
        tracing::warn!("can't store {block}: {error}");
        self.writer = None;
        self.own_failure = Some(failure(&self.me, kind, format!("{what} {block}: {error}")));
    }

    /// Records the downstream member (and all behind it) as failed and drops
    /// the connection, which makes them give up the block.
    fn lose_downstream(&mut self, kind: ErrorKind, why: &str) {
        let Some(downstream) = self.downstream.take() else {
            return;
        };
        let Some((direct, behind)) = downstream.members.split_first() else {
            return;
        };
        tracing::warn!(
            "lost downstream {} while writing {}: {why}",
            minion_name(direct),
            self.block
        );
        self.lost.push(failure(direct, kind, why.to_string()));
        for member in behind {
            self.lost.push(failure(
                member,
                ErrorKind::Io,
                format!("not reached: the pipeline broke at {}", minion_name(direct)),
            ));
        }
    }

    /// Refuses a data frame that is no chunk of this block, before its
    /// payload is read.
    fn check_chunk(&self, payload_bytes: u32) -> Result<()> {
        let block = self.block;
        if payload_bytes == 0 || payload_bytes > CHUNK_BYTES {
            return Err(Error::Protocol(format!(
                "a data frame of {payload_bytes} bytes in {block} (chunks have 1 to {CHUNK_BYTES})"
            )));
        }
        if self.short_chunk_received {
            return Err(Error::Protocol(format!(
                "a chunk of {block} after a short one (only the last chunk may be shorter than {CHUNK_BYTES} bytes)"
            )));
        }
        if self.received_bytes + u64::from(payload_bytes) > BLOCK_BYTES_MAX {
            return Err(Error::Protocol(format!(
                "{block} grows over the limit of {BLOCK_BYTES_MAX} bytes"
            )));
        }
        Ok(())
    }

    /// Writes one checked chunk here and sends it on.
    fn store_and_forward(&mut self, chunk: &[u8], crc: u32) {
        if let Some(writer) = &mut self.writer {
            if let Err(error) = writer.write_chunk(chunk, crc) {
                self.fail_locally(&error);
            }
        }
        if let Some(downstream) = &mut self.downstream {
            let sent = downstream
                .connection
                .send_data(chunk, crc)
                .and_then(|()| downstream.connection.flush());
            if let Err(error) = sent {
                self.lose_downstream(ErrorKind::Io, &format!("forward {}: {error}", self.block));
            }
        }
        self.received_bytes += chunk.len() as u64;
        self.short_chunk_received = chunk.len() < CHUNK_BYTES as usize;
    }

    /// Seals the block here and downstream (in parallel: the request goes
    /// down first) and builds the answer for upstream.
    fn seal(&mut self, credentials: &Credentials) -> MinionResponse {
        let block = self.block;
        let length_bytes = self.received_bytes;
        let mut pending = None;
        if let Some(downstream) = &mut self.downstream {
            let request = MinionRequest::SealBlock {
                block,
                length_bytes,
            };
            let sent = downstream
                .connection
                .send(credentials, request)
                .and_then(|request_id| downstream.connection.flush().map(|()| request_id));
            match sent {
                Ok(request_id) => pending = Some(request_id),
                Err(error) => {
                    self.lose_downstream(ErrorKind::Io, &format!("seal {block}: {error}"))
                }
            }
        }
        let mut stored = Vec::new();
        if let Some(writer) = self.writer.take() {
            match writer.seal(self.sync) {
                Ok(_) => stored.push(self.me.id),
                Err(error) => self.fail_locally(&error),
            }
        }
        let mut reported_failures = Vec::new();
        if let (Some(request_id), Some(downstream)) = (pending, &mut self.downstream) {
            match downstream.connection.receive::<MinionResponse>(request_id) {
                Ok(MinionResponse::Sealed {
                    stored: stored_downstream,
                    failed,
                }) => {
                    stored.extend(stored_downstream);
                    reported_failures = failed;
                    self.downstream = None;
                }
                Ok(MinionResponse::Error(error)) => {
                    self.lose_downstream(error.kind, &error.message)
                }
                Ok(MinionResponse::ReadStarted { .. }) => self.lose_downstream(
                    ErrorKind::Protocol,
                    &format!("answered SealBlock of {block} with ReadStarted"),
                ),
                Err(error) => {
                    self.lose_downstream(ErrorKind::Io, &format!("seal {block}: {error}"))
                }
            }
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
