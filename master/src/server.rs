//! The master's TCP front: one thread per connection (bounded), frames in,
//! frames out. Everything a peer sends is checked by the wire decoder; a
//! peer that breaks the protocol loses its connection, nothing more.

use std::io::{BufReader, BufWriter, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dfs_engine::limits::{CONNECTIONS_MAX, IO_TIMEOUT_MS};
use dfs_engine::msg::{Envelope, ErrorKind, MasterRequest, MasterResponse, RemoteError};
use dfs_engine::wire::{self, FrameKind};
use dfs_engine::{Error, IoContext, Result};

use crate::service::{ConnectionId, Master};

/// Accepts connections until the process ends.
pub fn serve(master: Arc<Master>, listener: TcpListener) -> Result<()> {
    let active = Arc::new(AtomicUsize::new(0));
    let next_connection = AtomicU64::new(1);
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                // EMFILE and friends: wait a little rather than spin.
                tracing::warn!("accept connection: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let peer = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "unknown peer".into());
        if active.load(Ordering::Acquire) >= CONNECTIONS_MAX {
            tracing::warn!(%peer, "refusing connection: {CONNECTIONS_MAX} connections open");
            refuse_busy(stream);
            continue;
        }
        active.fetch_add(1, Ordering::AcqRel);
        let connection = next_connection.fetch_add(1, Ordering::Relaxed);
        let master = Arc::clone(&master);
        let active = Arc::clone(&active);
        let spawned = std::thread::Builder::new()
            .name(format!("conn-{connection}"))
            .spawn(move || {
                if let Err(e) = serve_connection(&master, connection, stream) {
                    tracing::warn!(%peer, "connection closed: {e}");
                }
                master.connection_closed(connection);
                active.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(e) = spawned {
            tracing::error!("spawn connection thread: {e}");
        }
    }
    Ok(())
}

fn refuse_busy(stream: TcpStream) {
    let mut writer = BufWriter::new(stream);
    let response = MasterResponse::Error(RemoteError::new(
        ErrorKind::Busy,
        format!("master busy: {CONNECTIONS_MAX} connections open"),
    ));
    let _ = wire::write_message(&mut writer, FrameKind::Response, 0, &response);
    let _ = writer.flush();
}

fn serve_connection(master: &Master, connection: ConnectionId, stream: TcpStream) -> Result<()> {
    stream
        .set_write_timeout(Some(Duration::from_millis(IO_TIMEOUT_MS)))
        .context("set write timeout")?;
    let _ = stream.set_nodelay(true);
    let mut reader =
        BufReader::with_capacity(64 * 1024, stream.try_clone().context("clone socket")?);
    let mut writer = BufWriter::with_capacity(64 * 1024, stream);
    let mut buffer = Vec::new();
    loop {
        let header = match wire::read_header(&mut reader) {
            Ok(Some(header)) => header,
            Ok(None) => return Ok(()),
            Err(e) => return Err(reply_protocol_error(&mut writer, 0, e)),
        };
        if header.kind != FrameKind::Request {
            let e = Error::Protocol(format!("expected a Request frame, got {:?}", header.kind));
            return Err(reply_protocol_error(&mut writer, header.request_id, e));
        }
        if let Err(e) = wire::read_payload(&mut reader, &header, &mut buffer) {
            return Err(reply_protocol_error(&mut writer, header.request_id, e));
        }
        let envelope: Envelope<MasterRequest> = match wire::decode_message(&buffer) {
            Ok(envelope) => envelope,
            Err(e) => return Err(reply_protocol_error(&mut writer, header.request_id, e)),
        };
        let response = master.handle(connection, &envelope.credentials, envelope.body);
        wire::write_message(
            &mut writer,
            FrameKind::Response,
            header.request_id,
            &response,
        )?;
        // A client that sent several requests at once gets their answers in
        // one send; otherwise each answer goes out at once.
        if reader.buffer().is_empty() {
            writer.flush().context("send response")?;
        }
    }
}

/// Tells the peer what was wrong (best effort) and returns the error to log.
fn reply_protocol_error(writer: &mut BufWriter<TcpStream>, request_id: u64, error: Error) -> Error {
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
