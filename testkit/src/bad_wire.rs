//! Malformed byte streams for a daemon's TCP port, built with the engine's
//! own frame codec so each one is wrong in exactly one way.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use dfs_engine::wire::{write_frame, FrameHeader, FrameKind, FRAME_HEADER_BYTES};

/// How long a daemon may take to react to a bad input.
pub const REACTION_TIMEOUT: Duration = Duration::from_secs(10);

/// What the daemon must do with the connection after a bad input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    /// The stream can't be resynchronised: the daemon must close the
    /// connection (an error response before that is fine) instead of
    /// waiting for bytes that will never make sense.
    Close,
    /// A whole, well-framed request that does not decode: the daemon must
    /// answer it or close the connection, not ignore it.
    AnswerOrClose,
    /// The test closes the connection itself in the middle of a frame.
    PeerCloses,
}

pub struct BadInput {
    pub name: &'static str,
    pub bytes: Vec<u8>,
    pub expected: Expected,
}

fn valid_header(kind: FrameKind, payload: &[u8]) -> [u8; FRAME_HEADER_BYTES] {
    FrameHeader {
        kind,
        flags: 0,
        request_id: 1,
        payload_bytes: u32::try_from(payload.len()).expect("small payload"),
        payload_crc: crc32c::crc32c(payload),
    }
    .encode()
}

/// Re-computes the header CRC after a header was edited, so that the edit is
/// the only thing wrong with it.
fn fix_header_crc(header: &mut [u8; FRAME_HEADER_BYTES]) {
    let crc = crc32c::crc32c(&header[..FRAME_HEADER_BYTES - 4]);
    header[FRAME_HEADER_BYTES - 4..].copy_from_slice(&crc.to_le_bytes());
}

/// The five inputs every daemon must survive.
pub fn bad_inputs() -> Vec<BadInput> {
    // (a) Two headers' worth of noise, so the daemon has a whole header to read.
    let garbage: Vec<u8> = (0..2 * FRAME_HEADER_BYTES as u32)
        .map(|i| (i.wrapping_mul(151) ^ 0x5a) as u8)
        .collect();

    // (b) A header that is right in every field but the magic.
    let mut bad_magic = valid_header(FrameKind::Request, b"");
    bad_magic[..4].copy_from_slice(b"HTTP");
    fix_header_crc(&mut bad_magic);

    // (c) A correct header announcing a payload of 4 GiB (the most a u32 says).
    let mut huge = valid_header(FrameKind::Request, b"");
    huge[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
    fix_header_crc(&mut huge);

    // (d) A correct frame whose payload is not a postcard request: a string
    // length of 2^63 where the credentials' user name should start.
    let mut undecodable = Vec::new();
    let nonsense = [0xff; 16];
    write_frame(&mut undecodable, FrameKind::Request, 1, 0, &nonsense).expect("encode frame");

    // (e) A correct header for 1000 bytes, then 100 of them, then the end.
    let payload = [7u8; 1000];
    let mut truncated = valid_header(FrameKind::Request, &payload).to_vec();
    truncated.extend_from_slice(&payload[..100]);

    vec![
        BadInput {
            name: "garbage bytes",
            bytes: garbage,
            expected: Expected::Close,
        },
        BadInput {
            name: "header with bad magic",
            bytes: bad_magic.to_vec(),
            expected: Expected::Close,
        },
        BadInput {
            name: "header announcing a 4 GiB payload",
            bytes: huge.to_vec(),
            expected: Expected::Close,
        },
        BadInput {
            name: "valid frame with undecodable postcard",
            bytes: undecodable,
            expected: Expected::AnswerOrClose,
        },
        BadInput {
            name: "valid header, connection closed mid-payload",
            bytes: truncated,
            expected: Expected::PeerCloses,
        },
    ]
}

/// What a daemon did with the connection after the bad input.
#[derive(Debug, PartialEq, Eq)]
pub enum Reaction {
    /// It closed the connection (after sending this many bytes, perhaps an
    /// error response).
    Closed { bytes_before: usize },
    /// It answered with some bytes and kept the connection open.
    Answered { bytes: usize },
    /// It neither answered nor closed within `REACTION_TIMEOUT`.
    Silent,
    /// The test closed the connection itself.
    NotObserved,
}

/// Connects to `address`, sends `input` and observes what the daemon does;
/// panics if that is not what `input.expected` says.
pub fn send_bad_input(address: &str, input: &BadInput) -> Reaction {
    let mut stream = TcpStream::connect(address)
        .unwrap_or_else(|e| panic!("{}: connect to {address}: {e}", input.name));
    // The daemon may close as soon as it has seen enough; a failed write is
    // then part of the expected outcome, not a test failure.
    let _ = stream.write_all(&input.bytes);
    if input.expected == Expected::PeerCloses {
        let _ = stream.shutdown(Shutdown::Both);
        return Reaction::NotObserved;
    }
    let reaction = observe(&mut stream);
    let acceptable = match input.expected {
        Expected::Close => matches!(reaction, Reaction::Closed { .. }),
        Expected::AnswerOrClose => !matches!(reaction, Reaction::Silent),
        Expected::PeerCloses => true,
    };
    assert!(
        acceptable,
        "{}: {address} reacted with {reaction:?}, expected {:?}",
        input.name, input.expected
    );
    reaction
}

fn observe(stream: &mut TcpStream) -> Reaction {
    let deadline = Instant::now() + REACTION_TIMEOUT;
    let mut received = 0;
    let mut buffer = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return if received > 0 {
                Reaction::Answered { bytes: received }
            } else {
                Reaction::Silent
            };
        }
        // Once something arrived, wait only briefly for a close behind it.
        let wait = if received > 0 {
            left.min(Duration::from_secs(2))
        } else {
            left
        };
        stream
            .set_read_timeout(Some(wait))
            .expect("set read timeout");
        match stream.read(&mut buffer) {
            Ok(0) => {
                return Reaction::Closed {
                    bytes_before: received,
                }
            }
            Ok(n) => received += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if received > 0 {
                    return Reaction::Answered { bytes: received };
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // A reset is a close with unread bytes still in the daemon's buffer.
            Err(_) => {
                return Reaction::Closed {
                    bytes_before: received,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_input_is_wrong_in_the_intended_way() {
        let inputs = bad_inputs();
        let header = |index: usize| -> [u8; FRAME_HEADER_BYTES] {
            inputs[index].bytes[..FRAME_HEADER_BYTES]
                .try_into()
                .expect("a header")
        };
        let error = |index: usize| {
            FrameHeader::decode(&header(index))
                .expect_err("refused")
                .to_string()
        };
        assert!(error(0).contains("bad frame magic"), "{}", error(0));
        assert!(error(1).contains("bad frame magic"), "{}", error(1));
        assert!(error(2).contains("over the limit"), "{}", error(2));
        let decoded = FrameHeader::decode(&header(3)).expect("valid header");
        assert_eq!(decoded.payload_bytes, 16);
        assert!(dfs_engine::wire::decode_message::<
            dfs_engine::msg::Envelope<dfs_engine::msg::MasterRequest>,
        >(&inputs[3].bytes[FRAME_HEADER_BYTES..])
        .is_err());
        assert!(dfs_engine::wire::decode_message::<
            dfs_engine::msg::Envelope<dfs_engine::msg::MinionRequest>,
        >(&inputs[3].bytes[FRAME_HEADER_BYTES..])
        .is_err());
        let truncated = FrameHeader::decode(&header(4)).expect("valid header");
        assert_eq!(truncated.payload_bytes, 1000);
        assert_eq!(inputs[4].bytes.len(), FRAME_HEADER_BYTES + 100);
    }
}
