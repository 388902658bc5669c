//! Fuzzes the journal record decoder: any bytes decode to a record, an end
//! or a reason, never a panic, and a decoded record re-encodes to the same
//! bytes.

#![no_main]

use dfs_master::journal::{decode_record, encode_record, Decoded};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Decoded::Record { sequence, payload } = decode_record(data) {
        let mut encoded = Vec::new();
        encode_record(sequence, payload, &mut encoded);
        assert_eq!(&data[..encoded.len()], &encoded[..]);
        // The payload as an op: an error or an op, never a panic.
        let _ = dfs_master::recovery::decode_op(payload);
    }
});
