//! Criterion microbenchmarks of the engine, in `benches/`: the frame codec
//! (`wire`), hardware CRC32C (`crc`) and the block store (`block_store`).
//! Run them with `cargo bench -p benches`; the default build and test run
//! never compile criterion.

/// Deterministic bytes that do not compress or repeat within a chunk.
pub fn pattern(length_bytes: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut bytes = Vec::with_capacity(length_bytes + 8);
    while bytes.len() < length_bytes {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(length_bytes);
    bytes
}
