//! The frame codec: encoding and decoding a header, and writing and reading
//! (with its CRC check) a whole data frame of one chunk.

use benches::pattern;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dfs_engine::limits::CHUNK_BYTES;
use dfs_engine::wire::{self, FrameHeader, FrameKind, FRAME_HEADER_BYTES};

fn header(c: &mut Criterion) {
    let header = FrameHeader {
        kind: FrameKind::Data,
        flags: 0,
        request_id: 7,
        payload_bytes: CHUNK_BYTES,
        payload_crc: 0x1234_5678,
    };
    let bytes = header.encode();
    c.bench_function("frame header encode", |b| {
        b.iter(|| std::hint::black_box(&header).encode())
    });
    c.bench_function("frame header decode", |b| {
        b.iter(|| FrameHeader::decode(std::hint::black_box(&bytes)))
    });
}

fn data_frame(c: &mut Criterion) {
    let chunk = pattern(CHUNK_BYTES as usize, 2);
    let crc = crc32c::crc32c(&chunk);
    let mut group = c.benchmark_group("data frame");
    group.throughput(Throughput::Bytes(u64::from(CHUNK_BYTES)));
    let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + chunk.len());
    group.bench_function("write (CRC known)", |b| {
        b.iter(|| {
            out.clear();
            wire::write_frame_with_crc(&mut out, FrameKind::Data, 0, 0, &chunk, crc)
        })
    });
    let mut frame = Vec::new();
    wire::write_frame_with_crc(&mut frame, FrameKind::Data, 0, 0, &chunk, crc)
        .expect("encode a frame");
    let mut payload = Vec::with_capacity(chunk.len());
    group.bench_function("read and check", |b| {
        b.iter(|| {
            let mut reader = frame.as_slice();
            let header = wire::read_header(&mut reader)
                .expect("header")
                .expect("one frame");
            wire::read_payload(&mut reader, &header, &mut payload).expect("payload")
        })
    });
    group.finish();
}

criterion_group!(benches, header, data_frame);
criterion_main!(benches);
