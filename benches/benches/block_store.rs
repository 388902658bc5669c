//! The block store on the local disk: writing and sealing a block (page
//! cache only, no sync) and reading it back chunk by chunk with every
//! checksum checked.

use benches::pattern;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dfs_engine::block_store::BlockStore;
use dfs_engine::limits::CHUNK_BYTES;
use dfs_engine::msg::{BlockId, Generation, ReplicaId};

fn replica(id: u64) -> ReplicaId {
    ReplicaId {
        block: BlockId(id),
        generation: Generation(id + 1),
    }
}

/// Blocks of 4 MiB: big enough to stream, small enough to repeat often.
const BLOCK_BYTES: usize = 4 << 20;

fn block_store(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = BlockStore::open(&[dir.path().to_path_buf()]).expect("open store");
    let data = pattern(BLOCK_BYTES, 3);
    let chunks: Vec<(&[u8], u32)> = data
        .chunks(CHUNK_BYTES as usize)
        .map(|chunk| (chunk, crc32c::crc32c(chunk)))
        .collect();
    let mut group = c.benchmark_group("block store");
    group.throughput(Throughput::Bytes(BLOCK_BYTES as u64));
    let mut next_id = 0u64;
    group.bench_function("write and seal 4 MiB (no sync)", |b| {
        b.iter(|| {
            next_id += 1;
            let mut writer = store.create(replica(next_id)).expect("create");
            for (chunk, crc) in &chunks {
                writer.write_chunk(chunk, *crc).expect("write chunk");
            }
            writer.seal(false).expect("seal")
        })
    });
    let reader = store.open_block(replica(1)).expect("open block");
    let mut buffer = Vec::with_capacity(CHUNK_BYTES as usize);
    group.bench_function("read and check 4 MiB", |b| {
        b.iter(|| {
            for index in 0..reader.chunk_count() {
                reader.read_chunk(index, &mut buffer).expect("read chunk");
            }
        })
    });
    group.finish();
}

criterion_group!(benches, block_store);
criterion_main!(benches);
