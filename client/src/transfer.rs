//! What reads and writes share when they talk to minions: answers that may
//! come for one of several requests, and the reason behind a broken
//! connection.

use std::time::Duration;

use dfs_engine::limits::FAILURE_ANSWER_WAIT_MS;
use dfs_engine::msg::{MinionAddress, MinionResponse};
use dfs_engine::rpc::Connection;
use dfs_engine::wire::{self, FrameKind};
use dfs_engine::{Error, Result};

/// Waits for the minion's answer to one of `request_ids`. An `Error` answer
/// is accepted whatever its id: a minion that refuses a connection (busy)
/// may answer before it read any request.
pub(crate) fn receive_answer(
    connection: &mut Connection,
    request_ids: &[u64],
    buffer: &mut Vec<u8>,
) -> Result<MinionResponse> {
    connection.flush()?;
    let address = connection.address().to_string();
    let (id, response) =
        wire::read_message::<MinionResponse>(connection.reader(), FrameKind::Response, buffer)?
            .ok_or_else(|| Error::Protocol(format!("{address} closed the connection")))?;
    match response {
        MinionResponse::Error(error) => Err(Error::Remote(error)),
        response if request_ids.contains(&id) => Ok(response),
        _ => Err(Error::Protocol(format!(
            "{address} answered request {id}, expected one of {request_ids:?}"
        ))),
    }
}

/// After sending to a minion failed, the minion may have said why before it
/// closed (busy, disk full): read that answer for a short while and prefer it
/// to the bare connection error.
pub(crate) fn explain_send_failure(connection: &mut Connection, error: Error) -> Error {
    if !error.is_connection_error() {
        return error;
    }
    let wait = Duration::from_millis(FAILURE_ANSWER_WAIT_MS);
    if connection
        .reader()
        .get_ref()
        .with_stream(|stream| stream.set_read_timeout(Some(wait)))
        .is_err()
    {
        return error;
    }
    let mut buffer = Vec::new();
    match wire::read_message::<MinionResponse>(
        connection.reader(),
        FrameKind::Response,
        &mut buffer,
    ) {
        Ok(Some((_, MinionResponse::Error(remote)))) => Error::Remote(remote),
        _ => error,
    }
}

/// "minion <id>@<address>: <error>", unless the error already starts by
/// naming a minion (as minions' own error messages do).
pub(crate) fn minion_message(minion: &MinionAddress, error: &Error) -> String {
    let text = error.to_string();
    if text.starts_with("minion ") {
        text
    } else {
        format!("minion {}@{}: {text}", minion.id, minion.address)
    }
}
