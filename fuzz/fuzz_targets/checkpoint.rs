//! Fuzzes the checkpoint decoder: any bytes are a checkpoint or an error,
//! never a panic or an allocation beyond what the bytes justify.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dfs_master::checkpoint::decode(data, "fuzz");
});
