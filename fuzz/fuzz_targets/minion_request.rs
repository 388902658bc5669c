//! Fuzzes what a minion decodes from the network: request envelopes
//! (writes, batches, reads) from clients and upstream members. Any bytes
//! are a request or an error, never a panic, and a decoded request
//! re-encodes to one equal to it.

#![no_main]

use dfs_engine::msg::{Envelope, MinionRequest};
use dfs_engine::wire::decode_message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = decode_message::<Envelope<MinionRequest>>(data) else {
        return;
    };
    let encoded = postcard::to_stdvec(&envelope).expect("a decoded request encodes");
    let again: Envelope<MinionRequest> = decode_message(&encoded).expect("and decodes");
    assert_eq!(again, envelope);
});
