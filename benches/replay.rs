//! Whole-pipeline replay of the bundled generated office capture (names, flows, alerts).
//! For the large-capture comparison beside tshark see scripts/bench-vs-tshark.sh.
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use egresswatch::config::Config;
use egresswatch::pipeline::{ReplayOptions, replay};
use std::hint::black_box;
use std::path::Path;

fn bench(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/office.pcap");
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let config = Config::default();
    let mut group = c.benchmark_group("replay");
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("office_pcap", |b| {
        b.iter(|| {
            let report = replay(
                &config,
                std::slice::from_ref(&path),
                &ReplayOptions::default(),
                &mut |_| Ok(()),
            );
            black_box(report.map(|r| r.stats.frames).unwrap_or(0))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
