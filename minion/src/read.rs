//! Serving `ReadBlock`: the whole chunks covering a byte range of a sealed
//! block, each checked against its stored CRC32C before it is sent.
//!
//! A chunk that fails its check mid-stream ends the connection: the reader
//! then sees a short stream and tries the next replica.

use dfs_engine::block_store;
use dfs_engine::msg::{BlockId, ErrorKind, MinionResponse, RemoteError};
use dfs_engine::wire::{self, FrameKind};
use dfs_engine::{Error, Result};

use crate::server::{Next, Session};

pub(crate) fn read_block(
    session: &mut Session,
    request_id: u64,
    block: BlockId,
    offset_bytes: u64,
    length_bytes: u64,
) -> Result<Next> {
    let name = session.context.name();
    let reader = match session.context.store.open_block(block) {
        Ok(reader) => reader,
        Err(error) => {
            let (kind, message) = if block_store::is_not_found(&error) {
                (
                    ErrorKind::NotFound,
                    format!("{block}: no such block on {name}"),
                )
            } else if matches!(error, Error::Corrupted { .. }) {
                tracing::error!("{}: read {block}: {error}", session.peer);
                (ErrorKind::Corrupted, format!("{name}: {error}"))
            } else {
                tracing::error!("{}: read {block}: {error}", session.peer);
                (ErrorKind::Io, format!("{name}: {error}"))
            };
            session.respond_error(request_id, RemoteError::new(kind, message))?;
            return Ok(Next::Continue);
        }
    };
    let block_length_bytes = reader.length_bytes();
    let end_bytes = offset_bytes
        .checked_add(length_bytes)
        .filter(|&end| end <= block_length_bytes);
    let Some(end_bytes) = end_bytes else {
        let error = RemoteError::new(
            ErrorKind::InvalidArgument,
            format!(
                "{block}: {length_bytes} bytes at offset {offset_bytes} reach past its end ({block_length_bytes} bytes)"
            ),
        );
        session.respond_error(request_id, error)?;
        return Ok(Next::Continue);
    };
    let chunk_bytes = u64::from(reader.chunk_bytes());
    let first_index = offset_bytes / chunk_bytes;
    session.respond(
        request_id,
        &MinionResponse::ReadStarted {
            block_length_bytes,
            first_offset_bytes: first_index * chunk_bytes,
        },
    )?;
    if length_bytes == 0 {
        return Ok(Next::Continue);
    }
    let last_index = (end_bytes - 1) / chunk_bytes;
    for index in first_index..=last_index {
        let crc = match reader.read_chunk(index, &mut session.buffer) {
            Ok(crc) => crc,
            Err(error) => {
                tracing::error!(
                    "{}: read {block}: {error}; closing the connection so the reader tries another replica",
                    session.peer
                );
                // The good chunks before it still go out.
                return Ok(Next::Close);
            }
        };
        wire::write_frame_with_crc(
            &mut session.writer,
            FrameKind::Data,
            0,
            0,
            &session.buffer,
            crc,
        )?;
    }
    session.flush()?;
    Ok(Next::Continue)
}
