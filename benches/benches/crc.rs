//! CRC32C (hardware instructions through the `crc32c` crate) over a chunk
//! and over a megabyte: the checksum every chunk pays on every hop.

use benches::pattern;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dfs_engine::limits::CHUNK_BYTES;

fn crc(c: &mut Criterion) {
    let mut group = c.benchmark_group("crc32c");
    for length_bytes in [4096, CHUNK_BYTES as usize, 1 << 20] {
        let data = pattern(length_bytes, 1);
        group.throughput(Throughput::Bytes(length_bytes as u64));
        group.bench_function(format!("{length_bytes} bytes"), |b| {
            b.iter(|| crc32c::crc32c(std::hint::black_box(&data)))
        });
    }
    group.finish();
}

criterion_group!(benches, crc);
criterion_main!(benches);
