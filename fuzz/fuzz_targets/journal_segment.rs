//! Fuzzes whole-segment reading: a valid segment header followed by fuzzed
//! bytes scans to a clean end, a torn tail or corruption, never a panic, and
//! never reports an end past the bytes it was given.

#![no_main]

use dfs_master::journal::{scan_segment, SegmentHeader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let header = SegmentHeader {
        first_sequence: 1,
        segment_bytes: 256 * 1024,
        unsynced_bytes_max: 256 * 1024,
    };
    let mut segment = header.encode().to_vec();
    segment.extend_from_slice(data);
    let scan = scan_segment(&segment, |_, _, payload| {
        dfs_master::recovery::decode_op(payload).map(drop)
    })
    .expect("the header is valid");
    assert!(scan.end_offset as usize <= segment.len());
    // And the raw bytes as a segment of their own.
    let _ = scan_segment(data, |_, _, _| Ok(()));
});
