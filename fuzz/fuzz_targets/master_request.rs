//! Fuzzes what a master decodes from the network: a frame header, then a
//! request envelope, then each entry of a batch. Any bytes are a request or
//! an error, never a panic or an allocation beyond what the bytes justify,
//! and a decoded request re-encodes to a request equal to it.

#![no_main]

use dfs_engine::msg::{Envelope, MasterRequest};
use dfs_engine::wire::{decode_message, FrameHeader, FRAME_HEADER_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(header) = data.first_chunk::<FRAME_HEADER_BYTES>() {
        let _ = FrameHeader::decode(header);
    }
    let Ok(envelope) = decode_message::<Envelope<MasterRequest>>(data) else {
        return;
    };
    if let MasterRequest::Batch { requests, .. } = &envelope.body {
        for entry in requests {
            let _ = entry.decode::<MasterRequest>();
        }
    }
    let encoded = postcard::to_stdvec(&envelope).expect("a decoded request encodes");
    let again: Envelope<MasterRequest> = decode_message(&encoded).expect("and decodes");
    assert_eq!(again, envelope);
});
