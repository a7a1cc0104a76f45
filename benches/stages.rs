//! Per-stage speed: decode, flow table (insert, update, whole capture, expire), DNS,
//! TLS ClientHello, window update. Every input comes from a `bench` scenario capture made by
//! the project's generator (the mix benches/compare.sh runs), read and decoded before the
//! timed loops; the timed loops see only the stage under test.
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use egresswatch::config::Config;
use egresswatch::decode::dns::{DnsMessage, parse_message};
use egresswatch::decode::http::RequestHead;
use egresswatch::decode::packet::{Decoded, Layer, Transport, decode_frame, ip_proto};
use egresswatch::decode::socks::SocksRequest;
use egresswatch::decode::tls::{ClientHelloInfo, ServerInfo, TlsParse, parse_client_hello};
use egresswatch::detect::engine::Engine;
use egresswatch::detect::windows::HostWindows;
use egresswatch::detect::{Delta, FlowView};
use egresswatch::enrich::geo::GeoInfo;
use egresswatch::flow::key::Uid;
use egresswatch::flow::table::{Flow, FlowTable};
use egresswatch::flow::tcp_state::flags;
use egresswatch::flow::update::{FlowSink, FlowUpdate, UpdateKind};
use egresswatch::generate::{GenerateOptions, Scenario, generate};
use egresswatch::pipeline::flow_update;
use egresswatch::source::pcap_file::CaptureReader;
use rustc_hash::FxHashMap;
use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;

/// Packets in the generated capture: enough flows and names to leave the caches, small
/// enough to hold in memory.
const PACKETS: u64 = 100_000;
/// Distinct flows made for the insert bench by giving captured packets new source ports.
const INSERT_FLOWS: u16 = 60_000;

/// Frames back to back in one buffer, as the reader hands them out: the decoder then reads
/// memory in order instead of chasing one allocation per frame.
#[derive(Default)]
struct Capture {
    buf: Vec<u8>,
    /// (timestamp, link type, wire length, start, captured length)
    frames: Vec<(u64, u32, u32, usize, usize)>,
}

impl Capture {
    fn push(&mut self, ts_ns: u64, linktype: u32, orig_len: u32, data: &[u8]) {
        self.frames
            .push((ts_ns, linktype, orig_len, self.buf.len(), data.len()));
        self.buf.extend_from_slice(data);
    }

    fn iter(&self) -> impl Iterator<Item = (u64, u32, u32, &[u8])> {
        self.frames.iter().map(|&(ts, lt, len, start, n)| {
            (ts, lt, len, self.buf.get(start..start + n).unwrap_or(&[]))
        })
    }

    /// The same frames cut to `snaplen` captured bytes (as `generate --snaplen` does).
    fn sliced(&self, snaplen: usize) -> Capture {
        let mut out = Capture::default();
        for (ts, lt, len, data) in self.iter() {
            out.push(ts, lt, len, data.get(..snaplen).unwrap_or(data));
        }
        out
    }
}

/// The generated capture, whole frames (DNS and TLS need their payloads).
fn capture() -> Capture {
    let path = std::env::temp_dir().join(format!("egresswatch-stages-{}.pcap", std::process::id()));
    let options = GenerateOptions {
        scenario: Scenario::Bench,
        seed: 7,
        packets: PACKETS,
        ..Default::default()
    };
    generate(&options, &path, None).expect("generate the bench capture");
    let mut reader = CaptureReader::open(std::slice::from_ref(&path)).expect("read it back");
    let mut out = Capture::default();
    while let Some(p) = reader.next_packet() {
        out.push(p.ts_ns, p.linktype, p.orig_len, p.data);
    }
    let _ = std::fs::remove_file(&path);
    out
}

/// (timestamp, wire length, transport) of every decoded transport header.
fn transports(capture: &Capture) -> Vec<(u64, u32, Transport<'_>)> {
    let mut out = Vec::new();
    for (ts, lt, len, data) in capture.iter() {
        let mut d = Decoded::default();
        decode_frame(lt, data, &mut d);
        for layer in &d.layers {
            if let Layer::Transport(t) = layer {
                out.push((ts, len, *t));
            }
        }
    }
    out
}

/// Receives the table's output and drops it, except flow updates when asked to keep them.
#[derive(Default)]
struct Sink {
    config: Option<Config>,
    updates: Vec<(
        FlowUpdate<'static>,
        Option<egresswatch::flow::update::FlowNames>,
    )>,
}

/// The update without its borrowed names (kept beside it), so it outlives the table.
fn detach(u: &FlowUpdate<'_>) -> FlowUpdate<'static> {
    FlowUpdate {
        uid: u.uid,
        kind: u.kind,
        proto: u.proto,
        inside: u.inside,
        inside_port: u.inside_port,
        outside: u.outside,
        outside_port: u.outside_port,
        inbound: u.inbound,
        first_ns: u.first_ns,
        last_ns: u.last_ns,
        bytes_out: u.bytes_out,
        bytes_in: u.bytes_in,
        pkts_out: u.pkts_out,
        pkts_in: u.pkts_in,
        answered: u.answered,
        conn_state: u.conn_state,
        services: u.services,
        names: None,
    }
}

impl FlowSink for Sink {
    fn resolved_name(&mut self, _: Uid, _: IpAddr, _: (IpAddr, u16), _: u64) -> Option<Arc<str>> {
        None
    }
    fn flow(&mut self, flow: &Flow, kind: UpdateKind) {
        if let Some(config) = &self.config {
            let update = flow_update(config, flow, kind);
            self.updates.push((detach(&update), update.names.cloned()));
        }
    }
    fn dns(&mut self, _: &Flow, _: u64, _: bool, _: &DnsMessage) {}
    fn tls(&mut self, _: &Flow, _: u64, _: &ClientHelloInfo) {}
    fn tls_server(&mut self, _: &Flow, _: u64, _: &ServerInfo) {}
    fn http(&mut self, _: &Flow, _: u64, _: &RequestHead) {}
    fn socks(&mut self, _: &Flow, _: u64, _: &SocksRequest) {}
    fn quic(&mut self, _: &Flow, _: u64, _: &egresswatch::decode::quic::QuicInfo) {}
}

fn table(config: &Config) -> FlowTable {
    FlowTable::new(
        config.flow.clone(),
        config.reassembly.max_out_of_order_bytes,
    )
}

fn fill(config: &Config, packets: &[(u64, u32, Transport<'_>)], sink: &mut Sink) -> FlowTable {
    let mut t = table(config);
    for (ts, len, tr) in packets {
        t.packet(*ts, *len, tr, sink);
    }
    t
}

fn bench(c: &mut Criterion) {
    let config = Config::default();
    let whole = capture();
    let sliced = whole.sliced(128);
    let all = transports(&whole);

    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(whole.frames.len() as u64));
    for (name, capture) in [("whole_frames", &whole), ("sliced_128", &sliced)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut layers = 0;
                for (_, lt, _, data) in capture.iter() {
                    let mut d = Decoded::default();
                    decode_frame(lt, data, &mut d);
                    layers += d.layers.len();
                }
                black_box(layers)
            })
        });
    }
    group.finish();

    // The table also runs its in-flow parsers (DNS, TLS, HTTP) on payloads: that is its job.
    let mut group = c.benchmark_group("flow_table");
    group.throughput(Throughput::Elements(all.len() as u64));
    group.bench_function("capture_into_empty_table", |b| {
        b.iter_batched_ref(
            || table(&config),
            |t| {
                let mut sink = Sink::default();
                for (ts, len, tr) in &all {
                    t.packet(*ts, *len, tr, &mut sink);
                }
            },
            BatchSize::LargeInput,
        )
    });
    // Mid-connection packets (no SYN, FIN or RST) hitting flows already in the table.
    let mid: Vec<_> = all
        .iter()
        .filter(|(_, _, t)| {
            t.proto != ip_proto::TCP || t.tcp_flags & (flags::SYN | flags::FIN | flags::RST) == 0
        })
        .copied()
        .collect();
    group.throughput(Throughput::Elements(mid.len() as u64));
    let mut warm = fill(&config, &mid, &mut Sink::default());
    group.bench_function("update_existing_flows", |b| {
        let mut sink = Sink::default();
        b.iter(|| {
            for (ts, len, tr) in &mid {
                warm.packet(*ts, *len, tr, &mut sink);
            }
        })
    });
    // New flows: captured SYNs and UDP datagrams, each given its own source port.
    let openers: Vec<_> = all
        .iter()
        .filter(|(_, _, t)| t.proto != ip_proto::TCP || t.tcp_flags & flags::SYN != 0)
        .copied()
        .cycle()
        .take(usize::from(INSERT_FLOWS))
        .zip(1024u16..)
        .map(|((ts, len, mut t), port)| {
            t.sport = port;
            (ts, len, t)
        })
        .collect();
    group.throughput(Throughput::Elements(openers.len() as u64));
    group.bench_function("insert_new_flows", |b| {
        b.iter_batched_ref(
            || table(&config),
            |t| {
                let mut sink = Sink::default();
                for (ts, len, tr) in &openers {
                    t.packet(*ts, *len, tr, &mut sink);
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("expire_all_flows", |b| {
        b.iter_batched_ref(
            || fill(&config, &openers, &mut Sink::default()),
            |t| t.expire(u64::MAX, &mut Sink::default()),
            BatchSize::LargeInput,
        )
    });
    group.finish();

    let dns: Vec<&[u8]> = all
        .iter()
        .filter(|(_, _, t)| t.proto == ip_proto::UDP && (t.sport == 53 || t.dport == 53))
        .map(|(_, _, t)| t.payload)
        .filter(|p| parse_message(p).is_ok())
        .collect();
    let hellos: Vec<&[u8]> = all
        .iter()
        .filter(|(_, _, t)| t.proto == ip_proto::TCP)
        .map(|(_, _, t)| t.payload)
        .filter(|p| matches!(parse_client_hello(p), TlsParse::ClientHello(_)))
        .collect();
    let mut group = c.benchmark_group("names");
    group.throughput(Throughput::Elements(dns.len() as u64));
    group.bench_function(format!("dns_parse_{}_messages", dns.len()), |b| {
        b.iter(|| {
            let mut answers = 0;
            for m in &dns {
                if let Ok(msg) = parse_message(m) {
                    answers += msg.answers.len();
                }
            }
            black_box(answers)
        })
    });
    group.throughput(Throughput::Elements(hellos.len() as u64));
    group.bench_function(format!("tls_client_hello_{}", hellos.len()), |b| {
        b.iter(|| {
            let mut named = 0;
            for h in &hellos {
                if let TlsParse::ClientHello(info) = parse_client_hello(h) {
                    named += usize::from(info.sni.is_some());
                }
            }
            black_box(named)
        })
    });
    group.finish();

    // Flow updates as the table emits them for the capture, oriented by the default config.
    let mut sink = Sink {
        config: Some(config.clone()),
        ..Sink::default()
    };
    let mut t = fill(&config, &all, &mut sink);
    t.flush(&mut sink);
    let recorded = std::mem::take(&mut sink.updates);
    let updates: Vec<FlowUpdate<'_>> = recorded
        .iter()
        .map(|(u, names)| FlowUpdate {
            names: names.as_ref(),
            ..u.clone()
        })
        .collect();
    // Each update's delta since the flow's previous one, as the engine computes it.
    let mut last: FxHashMap<Uid, Delta> = FxHashMap::default();
    let deltas: Vec<(Delta, bool)> = updates
        .iter()
        .map(|u| {
            let prev = last.insert(
                u.uid,
                Delta {
                    bytes_out: u.bytes_out,
                    bytes_in: u.bytes_in,
                    pkts_out: u.pkts_out,
                    pkts_in: u.pkts_in,
                },
            );
            let p = prev.unwrap_or_default();
            let delta = Delta {
                bytes_out: u.bytes_out - p.bytes_out,
                bytes_in: u.bytes_in - p.bytes_in,
                pkts_out: u.pkts_out - p.pkts_out,
                pkts_in: u.pkts_in - p.pkts_in,
            };
            (delta, prev.is_none())
        })
        .collect();
    let geo = GeoInfo::default();
    let mut group = c.benchmark_group("windows");
    group.throughput(Throughput::Elements(updates.len() as u64));
    let engine_clock = egresswatch::detect::clock::BusinessClock::new(&config.business_hours)
        .expect("default business hours");
    let mut windows = HostWindows::new(config.windows.clone(), engine_clock);
    group.bench_function(
        format!("host_windows_flow_{}_updates", updates.len()),
        |b| {
            b.iter(|| {
                for (u, (delta, first_update)) in updates.iter().zip(&deltas) {
                    windows.flow(&FlowView {
                        update: u,
                        delta: *delta,
                        delta_since_ns: u.first_ns,
                        first_update: *first_update,
                        geo: &geo,
                        allowlisted: false,
                        history: None,
                        off_hours: false,
                        host_inside: config.is_inside(u.inside),
                        host_allowlisted: false,
                    });
                }
            })
        },
    );
    // The engine's whole per-update work: enrichment once per flow, windows, every detector.
    let mut engine = Engine::new(&config).expect("default engine");
    group.bench_function(
        format!("engine_flow_update_{}_updates", updates.len()),
        |b| {
            b.iter(|| {
                for u in &updates {
                    engine.flow_update(u);
                }
            })
        },
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
