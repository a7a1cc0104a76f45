//! Frame decoding speed on the real public captures (all frames in memory).
mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use egresswatch::decode::packet::{Decoded, decode_frame};
use std::hint::black_box;

fn frames() -> Vec<(u32, Vec<u8>)> {
    common::public_captures().into_iter().flatten().collect()
}

fn bench(c: &mut Criterion) {
    let frames = frames();
    let bytes: usize = frames.iter().map(|(_, f)| f.len()).sum();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(frames.len() as u64));
    group.bench_function(
        format!("public_captures_{}_frames_{}_bytes", frames.len(), bytes),
        |b| {
            b.iter(|| {
                let mut layers = 0;
                for (lt, f) in &frames {
                    let mut d = Decoded::default();
                    decode_frame(*lt, f, &mut d);
                    layers += d.layers.len();
                }
                black_box(layers)
            })
        },
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
