//! The frame layer of the wire protocol: the only module that encodes or
//! decodes bytes on a socket. Layout in docs/format.md.
//!
//! Every frame is a fixed 32-byte header followed by `payload_bytes` of
//! payload. The header carries a CRC32C of itself and one of the payload, so a
//! data frame's payload CRC is the chunk checksum. The decoder checks magic,
//! version, header CRC and the payload length against the limit before it
//! allocates anything.

use std::io::{Read, Write};
use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};
use zerocopy::byteorder::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::error::{Error, Result};
use crate::limits::{
    CONTROL_FRAME_BYTES_MAX, FRAME_DEADLINE_BYTES, FRAME_PAYLOAD_BYTES_MAX, PAYLOAD_READ_STEP_BYTES,
};

/// "DFSW" read as a little-endian u32.
pub const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"DFSW");
pub const PROTOCOL_VERSION: u16 = 13;
pub const FRAME_HEADER_BYTES: usize = 32;
/// The request id of an answer to a connection as a whole, sent before any
/// request on it was read (a `Busy` refusal when it was accepted). Requests
/// never carry it: their ids start at 1.
pub const CONNECTION_REQUEST_ID: u64 = 0;

/// What the payload of a frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum FrameKind {
    /// A postcard-encoded request.
    Request = 1,
    /// A postcard-encoded response to the request with the same id.
    Response = 2,
    /// Raw block bytes of one chunk; payload CRC is the chunk's CRC32C.
    Data = 3,
}

impl FrameKind {
    fn from_u16(value: u16) -> Option<FrameKind> {
        match value {
            1 => Some(FrameKind::Request),
            2 => Some(FrameKind::Response),
            3 => Some(FrameKind::Data),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct RawHeader {
    magic: U32,
    version: U16,
    kind: U16,
    flags: U32,
    request_id: U64,
    payload_bytes: U32,
    payload_crc: U32,
    header_crc: U32,
}

const _: () = assert!(std::mem::size_of::<RawHeader>() == FRAME_HEADER_BYTES);

/// A decoded, checked frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: FrameKind,
    pub flags: u32,
    pub request_id: u64,
    pub payload_bytes: u32,
    pub payload_crc: u32,
}

impl FrameHeader {
    pub fn encode(&self) -> [u8; FRAME_HEADER_BYTES] {
        let mut raw = RawHeader {
            magic: FRAME_MAGIC.into(),
            version: PROTOCOL_VERSION.into(),
            kind: (self.kind as u16).into(),
            flags: self.flags.into(),
            request_id: self.request_id.into(),
            payload_bytes: self.payload_bytes.into(),
            payload_crc: self.payload_crc.into(),
            header_crc: 0.into(),
        };
        let crc = crc32c::crc32c(&raw.as_bytes()[..FRAME_HEADER_BYTES - 4]);
        raw.header_crc = crc.into();
        let mut out = [0u8; FRAME_HEADER_BYTES];
        out.copy_from_slice(raw.as_bytes());
        out
    }

    /// Checks everything a header can be checked for on its own.
    pub fn decode(bytes: &[u8; FRAME_HEADER_BYTES]) -> Result<FrameHeader> {
        let raw = RawHeader::read_from_bytes(bytes)
            .map_err(|_| Error::Protocol("frame header has the wrong size".into()))?;
        if raw.magic.get() != FRAME_MAGIC {
            return Err(Error::Protocol(format!(
                "bad frame magic {:#010x} (is the peer a dfs daemon?)",
                raw.magic.get()
            )));
        }
        if raw.version.get() != PROTOCOL_VERSION {
            return Err(Error::Protocol(format!(
                "unsupported protocol version {} (this build speaks {PROTOCOL_VERSION})",
                raw.version.get()
            )));
        }
        let crc = crc32c::crc32c(&bytes[..FRAME_HEADER_BYTES - 4]);
        if crc != raw.header_crc.get() {
            return Err(Error::Protocol("frame header checksum mismatch".into()));
        }
        let kind = FrameKind::from_u16(raw.kind.get())
            .ok_or_else(|| Error::Protocol(format!("unknown frame kind {}", raw.kind.get())))?;
        let payload_bytes = raw.payload_bytes.get();
        if payload_bytes > FRAME_PAYLOAD_BYTES_MAX {
            return Err(Error::Protocol(format!(
                "frame payload of {payload_bytes} bytes is over the limit of {FRAME_PAYLOAD_BYTES_MAX}"
            )));
        }
        if kind != FrameKind::Data && payload_bytes > CONTROL_FRAME_BYTES_MAX {
            return Err(Error::Protocol(format!(
                "control frame of {payload_bytes} bytes is over the limit of {CONTROL_FRAME_BYTES_MAX}"
            )));
        }
        Ok(FrameHeader {
            kind,
            flags: raw.flags.get(),
            request_id: raw.request_id.get(),
            payload_bytes,
            payload_crc: raw.payload_crc.get(),
        })
    }
}

/// How long a frame of `frame_bytes` may take to arrive from its first
/// byte: one `deadline` per `FRAME_DEADLINE_BYTES` or part of them, so a
/// large frame on an honest link is not cut while a trickle is.
pub fn frame_deadline(deadline: Duration, frame_bytes: usize) -> Duration {
    let periods = frame_bytes
        .div_ceil(FRAME_DEADLINE_BYTES as usize)
        .clamp(1, u32::MAX as usize);
    deadline.saturating_mul(u32::try_from(periods).unwrap_or(u32::MAX))
}

fn io_error(context: &str, error: std::io::Error) -> Error {
    Error::io(context, error)
}

/// Reads and checks one frame header. `Ok(None)` is a clean end of stream
/// before the first byte of a header.
pub fn read_header(reader: &mut impl Read) -> Result<Option<FrameHeader>> {
    let mut bytes = [0u8; FRAME_HEADER_BYTES];
    let mut filled = 0;
    while filled < FRAME_HEADER_BYTES {
        match reader.read(&mut bytes[filled..]) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => {
                return Err(Error::Protocol(
                    "connection closed in the middle of a frame header".into(),
                ))
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error("read frame header", e)),
        }
    }
    FrameHeader::decode(&bytes).map(Some)
}

/// Reads the payload that `header` announces into `buffer` (cleared first) and
/// checks its CRC. The length was checked against the limit by the decoder.
///
/// The buffer grows as bytes arrive, never to the announced size up front:
/// first by `PAYLOAD_READ_STEP_BYTES`, then each time by at most what
/// arrived before, so a peer that announces the largest payload and sends
/// nothing holds one step of memory, and one that sends holds at most twice
/// what it sent.
pub fn read_payload(
    reader: &mut impl Read,
    header: &FrameHeader,
    buffer: &mut Vec<u8>,
) -> Result<()> {
    buffer.clear();
    let payload_bytes = header.payload_bytes as usize;
    while buffer.len() < payload_bytes {
        let filled = buffer.len();
        let step_bytes = (payload_bytes - filled).min(filled.max(PAYLOAD_READ_STEP_BYTES));
        buffer.resize(filled + step_bytes, 0);
        let read = match buffer.get_mut(filled..) {
            Some(room) => reader.read_exact(room),
            None => Ok(()),
        };
        if let Err(e) = read {
            buffer.truncate(filled);
            return Err(io_error("read frame payload", e));
        }
    }
    if crc32c::crc32c(buffer) != header.payload_crc {
        return Err(Error::Protocol(format!(
            "payload checksum mismatch in a {:?} frame of {} bytes",
            header.kind, header.payload_bytes
        )));
    }
    Ok(())
}

/// Writes one frame with the given payload.
pub fn write_frame(
    writer: &mut impl Write,
    kind: FrameKind,
    request_id: u64,
    flags: u32,
    payload: &[u8],
) -> Result<()> {
    write_frame_with_crc(
        writer,
        kind,
        request_id,
        flags,
        payload,
        crc32c::crc32c(payload),
    )
}

/// Writes one frame whose payload CRC is already known (a chunk whose
/// checksum was verified or computed before).
pub fn write_frame_with_crc(
    writer: &mut impl Write,
    kind: FrameKind,
    request_id: u64,
    flags: u32,
    payload: &[u8],
    payload_crc: u32,
) -> Result<()> {
    let limit = match kind {
        FrameKind::Data => FRAME_PAYLOAD_BYTES_MAX,
        _ => CONTROL_FRAME_BYTES_MAX,
    };
    let payload_bytes = u32::try_from(payload.len())
        .ok()
        .filter(|&n| n <= limit)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "refusing to send a {kind:?} frame of {} bytes (limit {limit})",
                payload.len()
            ))
        })?;
    let header = FrameHeader {
        kind,
        flags,
        request_id,
        payload_bytes,
        payload_crc,
    }
    .encode();
    writer
        .write_all(&header)
        .and_then(|()| writer.write_all(payload))
        .map_err(|e| io_error("write frame", e))
}

/// Encodes a control message as a frame.
pub fn write_message<T: Serialize>(
    writer: &mut impl Write,
    kind: FrameKind,
    request_id: u64,
    message: &T,
) -> Result<()> {
    let payload =
        postcard::to_stdvec(message).map_err(|e| Error::Invalid(format!("encode message: {e}")))?;
    write_frame(writer, kind, request_id, 0, &payload)
}

/// Decodes a control message from a payload; trailing bytes are an error.
pub fn decode_message<T: DeserializeOwned>(payload: &[u8]) -> Result<T> {
    let (message, rest) = postcard::take_from_bytes(payload)
        .map_err(|e| Error::Protocol(format!("undecodable message: {e}")))?;
    if !rest.is_empty() {
        return Err(Error::Protocol(format!(
            "{} trailing bytes after a message",
            rest.len()
        )));
    }
    Ok(message)
}

/// Reads one whole control frame of the expected kind and decodes it.
/// `Ok(None)` is a clean end of stream.
pub fn read_message<T: DeserializeOwned>(
    reader: &mut impl Read,
    expected: FrameKind,
    buffer: &mut Vec<u8>,
) -> Result<Option<(u64, T)>> {
    let Some(header) = read_header(reader)? else {
        return Ok(None);
    };
    if header.kind != expected {
        return Err(Error::Protocol(format!(
            "expected a {expected:?} frame, got {:?}",
            header.kind
        )));
    }
    read_payload(reader, &header, buffer)?;
    Ok(Some((header.request_id, decode_message(buffer)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> FrameHeader {
        FrameHeader {
            kind: FrameKind::Data,
            flags: 7,
            request_id: 0x0102_0304_0506_0708,
            payload_bytes: 5,
            payload_crc: crc32c::crc32c(b"hello"),
        }
    }

    #[test]
    fn header_round_trips() {
        let bytes = header().encode();
        assert_eq!(&bytes[..4], b"DFSW");
        assert_eq!(FrameHeader::decode(&bytes).expect("decode"), header());
    }

    fn check_rejected(
        mutate: impl Fn(&mut [u8; FRAME_HEADER_BYTES]),
        fix_crc: bool,
        expected: &str,
    ) {
        let mut bytes = header().encode();
        mutate(&mut bytes);
        if fix_crc {
            let crc = crc32c::crc32c(&bytes[..FRAME_HEADER_BYTES - 4]);
            bytes[FRAME_HEADER_BYTES - 4..].copy_from_slice(&crc.to_le_bytes());
        }
        let error = FrameHeader::decode(&bytes).expect_err("must be rejected");
        assert!(
            error.to_string().contains(expected),
            "{error} should contain {expected}"
        );
    }

    #[test]
    fn bad_headers_are_rejected_before_allocation() {
        check_rejected(|b| b[0] = b'X', false, "bad frame magic");
        check_rejected(|b| b[4] = 99, true, "unsupported protocol version 99");
        check_rejected(|b| b[6] = 99, true, "unknown frame kind 99");
        check_rejected(|b| b[10] ^= 1, false, "header checksum mismatch");
        check_rejected(
            |b| b[20..24].copy_from_slice(&u32::MAX.to_le_bytes()),
            true,
            "over the limit",
        );
    }

    #[test]
    fn frames_round_trip_and_detect_payload_corruption() {
        let mut wire = Vec::new();
        write_message(&mut wire, FrameKind::Request, 42, &("abc", 7u32)).expect("write");
        let mut buffer = Vec::new();
        let (id, message): (u64, (String, u32)) =
            read_message(&mut wire.as_slice(), FrameKind::Request, &mut buffer)
                .expect("read")
                .expect("one frame");
        assert_eq!((id, message), (42, ("abc".to_string(), 7)));

        let last = wire.len() - 1;
        wire[last] ^= 0xff;
        let error =
            read_message::<(String, u32)>(&mut wire.as_slice(), FrameKind::Request, &mut buffer)
                .expect_err("corrupt payload");
        assert!(error.to_string().contains("payload checksum mismatch"));
    }

    #[test]
    fn payload_memory_follows_the_bytes_that_arrived() {
        let announced = FRAME_PAYLOAD_BYTES_MAX;
        let sent = vec![7u8; 100_000];
        let header = FrameHeader {
            kind: FrameKind::Data,
            flags: 0,
            request_id: 1,
            payload_bytes: announced,
            payload_crc: 0,
        };
        let mut buffer = Vec::new();
        let error =
            read_payload(&mut sent.as_slice(), &header, &mut buffer).expect_err("cut short");
        assert!(error.to_string().contains("read frame payload"), "{error}");
        assert!(
            buffer.capacity() <= 2 * sent.len() + PAYLOAD_READ_STEP_BYTES,
            "{} bytes set aside for {} that arrived",
            buffer.capacity(),
            sent.len()
        );

        let payload: Vec<u8> = (0..1_000_003u32).map(|n| n as u8).collect();
        let mut wire = Vec::new();
        write_frame(&mut wire, FrameKind::Data, 3, 0, &payload).expect("write");
        let mut reader = wire.as_slice();
        let header = read_header(&mut reader).expect("read").expect("a header");
        read_payload(&mut reader, &header, &mut buffer).expect("whole payload");
        assert_eq!(buffer, payload);
    }

    #[test]
    fn frame_deadlines_grow_with_the_frame() {
        let second = Duration::from_secs(1);
        let step = FRAME_DEADLINE_BYTES as usize;
        for (frame_bytes, expected) in [
            (0, 1),
            (1, 1),
            (step, 1),
            (step + 1, 2),
            (FRAME_PAYLOAD_BYTES_MAX as usize, 64),
        ] {
            assert_eq!(
                frame_deadline(second, frame_bytes),
                second * expected,
                "{frame_bytes}"
            );
        }
    }

    #[test]
    fn truncated_streams_are_errors_and_empty_is_end() {
        let mut buffer = Vec::new();
        assert!(
            read_message::<u32>(&mut &b""[..], FrameKind::Request, &mut buffer)
                .expect("clean end")
                .is_none()
        );
        let bytes = header().encode();
        assert!(read_header(&mut &bytes[..10]).is_err());
    }
}
