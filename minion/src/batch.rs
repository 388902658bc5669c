//! A pipeline write of several small blocks in one exchange
//! (`WriteBlocks`): a client copying many small files sends them to the
//! same pipeline together, so each hop costs one request, one send and one
//! answer for the whole batch instead of for each block.
//!
//! A batch is small by rule (`WRITE_BATCH_BYTES_MAX`, one data frame per
//! block), so a member takes all of it into its input buffer before it does
//! anything, checks every frame, and only then stores the blocks (all at
//! once: creates, writes and seals overlap, and durable ones share one
//! flush, see `group_sync`) while it forwards the request and the frames as
//! they arrived in one send. The answer names, per block, who stored it and
//! who failed, as `Sealed` does for one block; a member that fails one
//! block still stores the others. A batch that breaks off before its last
//! frame leaves nothing behind.

use std::collections::HashSet;
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;

use dfs_engine::limits::{
    CHUNK_BYTES, REPLICATION_MAX, WRITE_BATCH_BLOCKS_MAX, WRITE_BATCH_BYTES_MAX,
};
use dfs_engine::msg::{
    BatchBlock, Credentials, ErrorKind, MinionAddress, MinionRequest, MinionResponse, RemoteError,
    ReplicaFailure, ReplicaId, SealedBlock,
};
use dfs_engine::tls::DataTrust;
use dfs_engine::wire::{FrameHeader, FrameKind, FRAME_HEADER_BYTES};
use dfs_engine::{Error, Result};

use crate::pipeline::{connect_downstream, idle_links, local_failure, stalled};
use crate::server::{DataTls, Next, Session, INPUT_BUFFER_BYTES};
use crate::store::Store;
use crate::uring::{self, Framed, SharedPieces};

// A whole batch, frame headers included, fits the input buffer.
const _: () = assert!(
    WRITE_BATCH_BYTES_MAX as usize + WRITE_BATCH_BLOCKS_MAX * FRAME_HEADER_BYTES
        <= INPUT_BUFFER_BYTES
);

/// A `WriteBlocks` request as it arrived.
pub(crate) struct BatchRequest {
    pub(crate) request_id: u64,
    pub(crate) credentials: Credentials,
    pub(crate) blocks: Vec<BatchBlock>,
    pub(crate) downstream: Vec<MinionAddress>,
    pub(crate) sync: bool,
}

/// Runs a batch write on `session` until it is answered (and the
/// connection can carry the next request) or abandoned.
pub(crate) async fn write_blocks(session: &mut Session, request: BatchRequest) -> Result<Next> {
    if let Err(why) = check_request(&request) {
        let error = RemoteError::new(ErrorKind::InvalidArgument, why);
        session.respond_error(request.request_id, error).await?;
        return Ok(Next::Close);
    }
    let frame_bytes: usize = request
        .blocks
        .iter()
        .map(|block| FRAME_HEADER_BYTES + block.length_bytes as usize)
        .sum();
    session.grow_input();
    let answered = receive_and_store(session, &request, frame_bytes).await;
    session.shrink_input();
    if answered.is_err() {
        tracing::warn!(
            "{}: abandoned a batch of {} blocks; nothing of it is kept",
            session.peer,
            request.blocks.len()
        );
    }
    answered
}

async fn receive_and_store(
    session: &mut Session,
    request: &BatchRequest,
    frame_bytes: usize,
) -> Result<Next> {
    if !session.fill(frame_bytes).await? {
        return Err(Error::Protocol(format!(
            "the connection closed before the {} blocks of a batch arrived",
            request.blocks.len()
        )));
    }
    let payloads = check_frames(&request.blocks, session.unparsed())?;
    let start = session.position();
    session.consume(frame_bytes);
    let response = store_and_forward(session, request, start..start + frame_bytes, payloads).await;
    session.respond(request.request_id, &response).await?;
    Ok(Next::Continue)
}

/// Refuses a batch over the limits, with a message naming what is wrong.
fn check_request(request: &BatchRequest) -> std::result::Result<(), String> {
    let count = request.blocks.len();
    if count == 0 || count > WRITE_BATCH_BLOCKS_MAX {
        return Err(format!(
            "a batch of {count} blocks (batches have 1 to {WRITE_BATCH_BLOCKS_MAX})"
        ));
    }
    if request.downstream.len() >= usize::from(REPLICATION_MAX) {
        return Err(format!(
            "a pipeline of {} minions is over the limit of {REPLICATION_MAX}",
            request.downstream.len() + 1
        ));
    }
    let mut total_bytes = 0u64;
    let mut seen = HashSet::with_capacity(count);
    for BatchBlock {
        block,
        length_bytes,
        ..
    } in &request.blocks
    {
        if *length_bytes == 0 || *length_bytes > u64::from(CHUNK_BYTES) {
            return Err(format!(
                "{block} of {length_bytes} bytes in a batch (batched blocks have 1 to {CHUNK_BYTES})"
            ));
        }
        if !seen.insert(*block) {
            return Err(format!("{block} twice in one batch"));
        }
        total_bytes += length_bytes;
    }
    if total_bytes > WRITE_BATCH_BYTES_MAX {
        return Err(format!(
            "a batch of {total_bytes} bytes is over the limit of {WRITE_BATCH_BYTES_MAX}"
        ));
    }
    Ok(())
}

/// Checks the one data frame of each block at the front of `input` (its
/// header, its length, its CRC32C); returns where each payload is, from the
/// first byte of `input`, and its CRC32C.
fn check_frames(blocks: &[BatchBlock], input: &[u8]) -> Result<Vec<(Range<usize>, u32)>> {
    let mut payloads = Vec::with_capacity(blocks.len());
    let mut position = 0;
    for BatchBlock {
        block,
        length_bytes,
        ..
    } in blocks
    {
        let header: &[u8; FRAME_HEADER_BYTES] = input
            .get(position..position + FRAME_HEADER_BYTES)
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| Error::Protocol(format!("the frame of {block} is cut short")))?;
        let header = FrameHeader::decode(header)?;
        if header.kind != FrameKind::Data {
            return Err(Error::Protocol(format!(
                "expected the data frame of {block} in a batch, got a {:?} frame",
                header.kind
            )));
        }
        if u64::from(header.payload_bytes) != *length_bytes {
            return Err(Error::Protocol(format!(
                "a data frame of {} bytes for {block}, announced with {length_bytes}",
                header.payload_bytes
            )));
        }
        let payload = position + FRAME_HEADER_BYTES
            ..position + FRAME_HEADER_BYTES + header.payload_bytes as usize;
        let bytes = input
            .get(payload.clone())
            .ok_or_else(|| Error::Protocol(format!("the frame of {block} is cut short")))?;
        if crc32c::crc32c(bytes) != header.payload_crc {
            return Err(Error::Protocol(format!(
                "payload checksum mismatch in the data frame of {block}"
            )));
        }
        position = payload.end;
        payloads.push((payload, header.payload_crc));
    }
    Ok(payloads)
}

/// What the rest of the pipeline said about the batch.
struct DownstreamAnswer {
    /// Its answer per block, when it gave one.
    sealed: Option<Vec<SealedBlock>>,
    /// Members that could not be reached or were lost, for every block.
    failed: Vec<ReplicaFailure>,
}

/// Stores every block here and sends the batch on, at once, from the
/// session's input buffer (`frames` is where the batch's frames are in it,
/// `payloads` where each block's bytes are, relative to `frames.start`).
async fn store_and_forward(
    session: &mut Session,
    request: &BatchRequest,
    frames: Range<usize>,
    payloads: Vec<(Range<usize>, u32)>,
) -> MinionResponse {
    let context = Arc::clone(&session.context);
    let input = session.lend_input();
    let stores = request
        .blocks
        .iter()
        .zip(&payloads)
        .map(|(block, (payload, crc))| {
            let pieces = SharedPieces {
                bytes: Rc::clone(&input),
                ranges: std::iter::once(frames.start + payload.start..frames.start + payload.end)
                    .collect(),
            };
            let replica = ReplicaId {
                block: block.block,
                generation: block.generation,
            };
            store_block(&context.store, replica, pieces, *crc, request.sync)
        });
    let local = uring::join_all(stores.collect());
    let forwarded = SharedPieces {
        bytes: Rc::clone(&input),
        ranges: std::iter::once(frames).collect(),
    };
    let remote = forward(
        &context.me,
        request,
        forwarded,
        context.pipeline_timeout,
        DataTls::outgoing(context.data_tls.as_ref()),
    );
    let (stored_here, downstream) = uring::join(local, remote).await;
    session.return_input(input);
    if downstream.sealed.is_some() {
        // Counted once the next member answered for the batch (a send that
        // broke may or may not have delivered it).
        let block_bytes: u64 = request.blocks.iter().map(|block| block.length_bytes).sum();
        context.store.metrics.forwarded_bytes.inc_by(block_bytes);
    }
    let mut answer = Vec::with_capacity(request.blocks.len());
    for (index, (block, stored)) in request.blocks.iter().zip(stored_here).enumerate() {
        let mut sealed = SealedBlock {
            block: block.block,
            stored: Vec::new(),
            failed: Vec::new(),
        };
        match stored {
            Ok(_) => sealed.stored.push(context.me.id),
            Err(error) => sealed
                .failed
                .push(local_failure(&context.me, block.block, &error)),
        }
        if let Some(theirs) = downstream.sealed.as_ref().and_then(|all| all.get(index)) {
            sealed.stored.extend(theirs.stored.iter().copied());
            sealed.failed.extend(theirs.failed.iter().cloned());
        }
        sealed.failed.extend(downstream.failed.iter().cloned());
        answer.push(sealed);
    }
    MinionResponse::BatchSealed { blocks: answer }
}

/// Creates, writes and seals one block of the batch here.
async fn store_block(
    store: &Arc<Store>,
    replica: ReplicaId,
    pieces: SharedPieces,
    crc: u32,
    sync: bool,
) -> Result<u64> {
    let mut writer = store.create(replica, sync).await?;
    writer.write_chunks(pieces, &[crc]).await?;
    writer.seal(sync).await
}

/// Sends the batch to the next member (the request, then the frames as
/// they arrived, in one send) and waits for its answer.
async fn forward(
    me: &MinionAddress,
    request: &BatchRequest,
    frames: SharedPieces,
    pipeline_timeout: std::time::Duration,
    trust: Option<&DataTrust>,
) -> DownstreamAnswer {
    let what = format!("a batch of {} blocks", request.blocks.len());
    let (connected, mut failed) = connect_downstream(
        me,
        &what,
        &request.credentials,
        &request.downstream,
        pipeline_timeout,
        trust,
        |rest| MinionRequest::WriteBlocks {
            blocks: request.blocks.clone(),
            downstream: rest,
            sync: request.sync,
        },
    )
    .await;
    let Some(mut downstream) = connected else {
        return DownstreamAnswer {
            sealed: None,
            failed,
        };
    };
    let request_id = downstream.last_request_id();
    let framed = Framed {
        before: std::mem::take(&mut downstream.queued),
        pieces: frames,
        after: Vec::new(),
    };
    let sent = downstream
        .stream
        .write_vectored_all(framed, downstream.wait)
        .await
        .map_err(|e| stalled(e, downstream.wait));
    if let Err(error) = sent {
        failed.extend(downstream.lost(ErrorKind::Io, &format!("forward: {error}"), &what));
        return DownstreamAnswer {
            sealed: None,
            failed,
        };
    }
    let sealed = match downstream.receive(request_id).await {
        Ok(MinionResponse::BatchSealed { blocks })
            if blocks.len() == request.blocks.len()
                && blocks
                    .iter()
                    .zip(&request.blocks)
                    .all(|(theirs, ours)| theirs.block == ours.block) =>
        {
            Some(blocks)
        }
        Ok(MinionResponse::Error(error)) => {
            failed.extend(downstream.lost(error.kind, &error.message, &what));
            None
        }
        Ok(_) => {
            failed.extend(downstream.lost(
                ErrorKind::Protocol,
                "answered WriteBlocks with another answer than its BatchSealed",
                &what,
            ));
            None
        }
        Err(error) => {
            failed.extend(downstream.lost(ErrorKind::Io, &format!("answer: {error}"), &what));
            None
        }
    };
    if sealed.is_some() {
        // The exchange is complete: the connection can carry the next one.
        let address = downstream.members.first().map(|m| m.address.clone());
        if let Some(address) = address {
            idle_links::keep(&address, downstream.stream);
        }
    }
    DownstreamAnswer { sealed, failed }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dfs_engine::wire;

    fn data_frame(payload: &[u8]) -> Vec<u8> {
        let mut frame = Vec::new();
        wire::write_frame(
            &mut frame,
            FrameKind::Data,
            0,
            crc32c::crc32c(payload),
            payload,
        )
        .expect("encode");
        frame
    }

    fn request(blocks: Vec<BatchBlock>, downstream: usize) -> BatchRequest {
        let member = MinionAddress {
            id: dfs_engine::msg::MinionId(1),
            address: "127.0.0.1:1".into(),
        };
        BatchRequest {
            request_id: 1,
            credentials: Credentials::default(),
            blocks,
            downstream: vec![member; downstream],
            sync: false,
        }
    }

    fn batch_block(id: u64, length_bytes: u64) -> BatchBlock {
        BatchBlock {
            block: dfs_engine::msg::BlockId(id),
            generation: dfs_engine::msg::Generation(id + 1),
            length_bytes,
            token: Vec::new(),
        }
    }

    #[test]
    fn requests_over_the_limits_are_refused_naming_the_problem() {
        let many: Vec<BatchBlock> = (0..=WRITE_BATCH_BLOCKS_MAX as u64)
            .map(|id| batch_block(id, 1))
            .collect();
        let heavy: Vec<BatchBlock> = (0..9)
            .map(|id| batch_block(id, u64::from(CHUNK_BYTES)))
            .collect();
        let cases = [
            ("empty", request(vec![], 0), "a batch of 0 blocks"),
            ("too many", request(many, 0), "a batch of 129 blocks"),
            (
                "empty block",
                request(vec![batch_block(1, 0)], 0),
                "of 0 bytes",
            ),
            (
                "block over a chunk",
                request(vec![batch_block(1, u64::from(CHUNK_BYTES) + 1)], 0),
                "batched blocks have 1 to",
            ),
            (
                "twice",
                request(vec![batch_block(1, 5), batch_block(1, 5)], 0),
                "twice in one batch",
            ),
            ("too heavy", request(heavy, 0), "over the limit of 524288"),
            (
                "pipeline too long",
                request(vec![batch_block(1, 5)], usize::from(REPLICATION_MAX)),
                "a pipeline of 17 minions",
            ),
        ];
        for (name, request, expected) in cases {
            let why = check_request(&request).expect_err(name);
            assert!(why.contains(expected), "{name}: {why}");
        }
        let fine = request(vec![batch_block(1, 5), batch_block(2, 7)], 2);
        assert_eq!(check_request(&fine), Ok(()));
    }

    #[test]
    fn frames_must_match_the_announced_blocks() {
        let blocks = vec![batch_block(1, 3), batch_block(2, 5)];
        let good = [data_frame(b"abc"), data_frame(b"hello")].concat();
        let payloads = check_frames(&blocks, &good).expect("good frames");
        assert_eq!(payloads.len(), 2);
        assert_eq!(&good[payloads[0].0.clone()], b"abc");
        assert_eq!(&good[payloads[1].0.clone()], b"hello");
        assert_eq!(payloads[1].1, crc32c::crc32c(b"hello"));

        let mut corrupt = good.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        let wrong_length = [data_frame(b"abc"), data_frame(b"hell")].concat();
        let mut request_frame = Vec::new();
        wire::write_message(&mut request_frame, FrameKind::Request, 2, &"seal").expect("encode");
        let not_data = [data_frame(b"abc"), request_frame].concat();
        let cases = [
            ("corrupt", corrupt, "checksum mismatch in the data frame of"),
            ("wrong length", wrong_length, "announced with 5"),
            ("not data", not_data, "expected the data frame of"),
            ("cut short", good[..good.len() - 2].to_vec(), "cut short"),
        ];
        for (name, input, expected) in cases {
            let error = check_frames(&blocks, &input).expect_err(name);
            assert!(error.to_string().contains(expected), "{name}: {error}");
        }
    }
}
