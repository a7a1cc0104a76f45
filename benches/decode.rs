//! Frame decoding speed on the real public captures (all frames in memory).
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use egresswatch::decode::packet::{Decoded, decode_frame};
use egresswatch::source::pcap_file::CaptureReader;
use std::hint::black_box;
use std::path::Path;

fn frames() -> Vec<(u32, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/captures/public");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    paths.retain(|p: &std::path::PathBuf| {
        let s = p.to_string_lossy();
        (s.ends_with(".pcap") || s.ends_with(".pcapng")) && !s.contains("oracle")
    });
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        let Ok(mut reader) = CaptureReader::open(std::slice::from_ref(&p)) else {
            continue;
        };
        while let Some(packet) = reader.next_packet() {
            out.push((packet.linktype, packet.data.to_vec()));
        }
    }
    out
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
