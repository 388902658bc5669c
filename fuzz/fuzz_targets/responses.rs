//! Fuzzes what clients and minions decode from the network in answers:
//! master responses (and each answer of a batch) and minion responses.
//! Any bytes are an answer or an error, never a panic.

#![no_main]

use dfs_engine::msg::{MasterResponse, MinionResponse};
use dfs_engine::wire::decode_message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(MasterResponse::Batch(answers)) = decode_message::<MasterResponse>(data) {
        for answer in answers {
            let _ = answer.decode::<MasterResponse>();
        }
    }
    let _ = decode_message::<MinionResponse>(data);
});
