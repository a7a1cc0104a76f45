//! Cost per QUIC Initial: the client's first Initial of every public QUIC capture read from
//! scratch (key derivation, header protection, AES-GCM, frames, ClientHello), and Initials
//! of one connection decrypted with its keys already derived. Inputs are loaded first.
mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use egresswatch::decode::packet::{Decoded, Layer, decode_frame, ip_proto};
use egresswatch::decode::quic::{QuicConn, QuicLimits, V1, client_initial};
use std::hint::black_box;

/// The first UDP datagram of each public capture that starts a QUIC reader.
fn first_initials() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for frames in common::public_captures() {
        let first = frames.iter().find_map(|(linktype, data)| {
            let mut d = Decoded::default();
            decode_frame(*linktype, data, &mut d);
            d.layers.iter().find_map(|l| match l {
                Layer::Transport(t)
                    if t.proto == ip_proto::UDP
                        && QuicConn::start(t.payload, QuicLimits::default()).is_some() =>
                {
                    Some(t.payload.to_vec())
                }
                _ => None,
            })
        });
        out.extend(first);
    }
    out
}

fn bench(c: &mut Criterion) {
    let firsts = first_initials();
    let mut group = c.benchmark_group("quic");
    group.throughput(Throughput::Elements(firsts.len() as u64));
    group.bench_function(format!("first_initial_{}_captures", firsts.len()), |b| {
        b.iter(|| {
            let mut names = 0;
            for d in &firsts {
                if let Some((_, Some(info))) = QuicConn::start(d, QuicLimits::default()) {
                    names += usize::from(info.sni().is_some());
                }
            }
            black_box(names)
        })
    });

    // PING + PADDING Initials of one v1 connection: each is decrypted and walked, none
    // completes the hello, so this is the per-packet cost once the keys exist.
    const N: u32 = 256;
    let dcid = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];
    let packets: Vec<Vec<u8>> = (0..N)
        .filter_map(|pn| client_initial(V1, &dcid, pn, &[1]))
        .collect();
    let limits = QuicLimits {
        max_datagrams: u32::MAX,
        ..QuicLimits::default()
    };
    let (mut conn, _) = QuicConn::start(&packets[0], limits).expect("a v1 Initial");
    group.throughput(Throughput::Elements(packets.len() as u64));
    group.bench_function(format!("initial_1200_bytes_{N}_keys_derived"), |b| {
        b.iter(|| {
            for p in &packets {
                black_box(conn.datagram(true, p));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
