//! Host state under sharded workers (issue 6): where do per-host accumulators live when two
//! workers share out the packet path by a symmetric flow hash?
//!
//! - `one_owner`: what src/shard.rs ships. Workers send batches of updates over a bounded
//!   channel to one thread that owns every host's state and applies them in order.
//! - `dashmap`: both workers update one shared `DashMap` directly.
//! - `per_shard_merge`: each worker fills its own map; at each window close the maps go to a
//!   merging thread (double-buffered, so workers do not wait) and are merged into one, since the
//!   close needs every host (the population p90).
//! - `one_thread`: the same accumulation on one thread with no sharing at all (the floor).
//!
//! `Acc` is a small mergeable stand-in for a host window (all three designs need the same
//! accumulator); the `real_windows` rows run the shipped `HostWindows` on one thread and as the
//! single owner, to show what the real per-update work costs.
//!
//! Inputs, built outside the timed loop:
//! - `per_flow`: the flows of a generated bench capture (replayed once), two updates each (the
//!   first report and the final one), the rate at which the sensor really touches host state.
//! - `per_packet`: one update per packet, drawn from the same flows weighted by their packets:
//!   what it would cost if host state were touched on every packet.
//!
//! A different capture can be given with EGRESSWATCH_HOST_STATE_PCAP. With HOST_STATE_CPU=SECONDS
//! the bench binary prints wall and CPU time per update instead (see `cpu_table`).
use criterion::{Criterion, Throughput, criterion_group};
use dashmap::DashMap;
use egresswatch::config::Config;
use egresswatch::decode::packet::ip_proto;
use egresswatch::detect::clock::{BusinessClock, ClockConfig};
use egresswatch::detect::windows::{HostWindows, WindowsConfig};
use egresswatch::detect::{Delta, FlowView};
use egresswatch::enrich::geo::GeoInfo;
use egresswatch::flow::key::Uid;
use egresswatch::flow::update::{FlowUpdate, UpdateKind};
use egresswatch::generate::{GenerateOptions, Scenario, generate};
use egresswatch::pipeline::{ReplayOptions, replay};
use rustc_hash::{FxBuildHasher, FxHashMap};
use std::hash::BuildHasher;
use std::hint::black_box;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};
use std::thread;

const WORKERS: usize = 2;
/// Updates per channel message in `one_owner` (src/shard.rs sends rounds of 4096 frames).
const BATCH: usize = 256;
/// Batches in flight per worker before it waits for the owner.
const CHANNEL_BOUND: usize = 8;
/// Updates per window. The bench capture moves 180 k packets and 1500 flows a second, so a
/// 300 s window of it would hold about a million flow reports: these windows are shorter than
/// that, to make the closes (and merges) count rather than vanish.
const FLOW_WINDOW: usize = 64 * 1024;
const PACKET_WINDOW: usize = 1024 * 1024;
/// The capture's flows are repeated (as new flows) up to this many reports.
const PER_FLOW_UPDATES: usize = 200_000;
const PER_PACKET_UPDATES: usize = 2_000_000;
const CAPTURE_PACKETS: u64 = 300_000;
const NS: u64 = 1_000_000_000;
/// 2024-03-05 14:00:00 UTC, a Tuesday afternoon (business hours).
const START_NS: u64 = 1_709_647_200 * NS;
const WINDOW_NS: u64 = 300 * NS;

#[derive(Debug, Clone, Copy)]
struct Update {
    inside: IpAddr,
    outside: IpAddr,
    outside_port: u16,
    first: bool,
    uid: u64,
    ts_ns: u64,
    delta: Delta,
}

/// What a host window accumulates, reduced to mergeable counters.
#[derive(Debug, Clone, Copy, Default)]
struct Acc {
    bytes_out: u64,
    bytes_in: u64,
    pkts_out: u64,
    pkts_in: u64,
    flows_opened: u64,
    updates: u64,
    /// One bit per destination hash: a tiny linear-counting sketch, merged by OR.
    destinations: u64,
    ports: u64,
}

impl Acc {
    fn add(&mut self, u: &Update) {
        self.bytes_out += u.delta.bytes_out;
        self.bytes_in += u.delta.bytes_in;
        self.pkts_out += u.delta.pkts_out;
        self.pkts_in += u.delta.pkts_in;
        self.flows_opened += u64::from(u.first);
        self.updates += 1;
        self.destinations |= 1 << (FxBuildHasher.hash_one(u.outside) & 63);
        self.ports |= 1 << (u.outside_port & 63);
    }

    fn merge(&mut self, o: &Acc) {
        self.bytes_out += o.bytes_out;
        self.bytes_in += o.bytes_in;
        self.pkts_out += o.pkts_out;
        self.pkts_in += o.pkts_in;
        self.flows_opened += o.flows_opened;
        self.updates += o.updates;
        self.destinations |= o.destinations;
        self.ports |= o.ports;
    }
}

type Map = FxHashMap<IpAddr, Acc>;

/// The population's 90th percentile of egress: the part of a window close that needs every host.
fn p90(bytes_out: impl Iterator<Item = u64>, scratch: &mut Vec<u64>) -> u64 {
    scratch.clear();
    scratch.extend(bytes_out);
    if scratch.is_empty() {
        return 0;
    }
    let k = (scratch.len() * 9 / 10).min(scratch.len() - 1);
    *scratch.select_nth_unstable(k).1
}

/// The update stream, cut into windows, and each window's updates as each worker sees them.
struct Input {
    windows: Vec<Vec<Update>>,
    /// `shards[worker][window]`: the updates of that window whose flow hashes to the worker.
    shards: Vec<Vec<Vec<Update>>>,
    updates: u64,
}

impl Input {
    fn new(stream: Vec<Update>, window: usize) -> Input {
        let updates = stream.len() as u64;
        let windows: Vec<Vec<Update>> = stream.chunks(window).map(<[Update]>::to_vec).collect();
        let shards = (0..WORKERS)
            .map(|w| {
                windows
                    .iter()
                    .map(|win| win.iter().filter(|u| worker_of(u) == w).copied().collect())
                    .collect()
            })
            .collect();
        Input {
            windows,
            shards,
            updates,
        }
    }
}

/// Both directions of a flow land on one worker, as in src/shard.rs (not its hash, same idea).
fn worker_of(u: &Update) -> usize {
    let (lo, hi) = if u.inside <= u.outside {
        (u.inside, u.outside)
    } else {
        (u.outside, u.inside)
    };
    (FxBuildHasher.hash_one((lo, hi)) % WORKERS as u64) as usize
}

struct Flow {
    inside: IpAddr,
    outside: IpAddr,
    outside_port: u16,
    outbound: bool,
    bytes_out: u64,
    bytes_in: u64,
    pkts_out: u64,
    pkts_in: u64,
}

/// The finished flows of the capture, seen from the inside host.
fn load_flows() -> (Vec<Flow>, u64) {
    let path = match std::env::var_os("EGRESSWATCH_HOST_STATE_PCAP") {
        Some(p) => PathBuf::from(p),
        None => {
            let dir =
                std::env::temp_dir().join(format!("egresswatch-host-state-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            let path = dir.join("bench.pcap");
            let opts = GenerateOptions {
                scenario: Scenario::Bench,
                seed: 7,
                packets: CAPTURE_PACKETS,
                snaplen: Some(128),
                ..Default::default()
            };
            generate(&opts, &path, None).expect("generate bench capture");
            path
        }
    };
    let config = Config::default();
    let options = ReplayOptions {
        collect: true,
        ..ReplayOptions::default()
    };
    let report = replay(&config, std::slice::from_ref(&path), &options, &mut |_| {
        Ok(())
    })
    .expect("replay bench capture");
    if std::env::var_os("EGRESSWATCH_HOST_STATE_PCAP").is_none() {
        let _ = std::fs::remove_dir_all(path.parent().unwrap_or(&path));
    }
    let home = |ip: IpAddr| config.home_nets.iter().any(|n| n.contains(ip));
    let flows = report
        .observed
        .conversations
        .iter()
        .filter_map(|c| {
            let outbound = home(c.a.0);
            if !outbound && !home(c.b.0) {
                return None;
            }
            let (inside, outside) = if outbound { (c.a, c.b) } else { (c.b, c.a) };
            let (bytes_out, bytes_in, pkts_out, pkts_in) = if outbound {
                (
                    c.bytes_a_to_b,
                    c.bytes_b_to_a,
                    c.frames_a_to_b,
                    c.frames_b_to_a,
                )
            } else {
                (
                    c.bytes_b_to_a,
                    c.bytes_a_to_b,
                    c.frames_b_to_a,
                    c.frames_a_to_b,
                )
            };
            Some(Flow {
                inside: inside.0,
                outside: outside.0,
                outside_port: outside.1,
                outbound,
                bytes_out,
                bytes_in,
                pkts_out,
                pkts_in,
            })
        })
        .collect();
    (flows, report.stats.frames)
}

/// Two reports per flow: the first (half its counters) and the final one, which comes a few
/// thousand flows later, as flows overlap in the capture (up to 3000 at once). The flows are
/// taken again, as new flows, until there are `n` reports.
fn per_flow_stream(flows: &[Flow], n: usize) -> Vec<Update> {
    const LAG: usize = 3000;
    let half = |f: &Flow, first: bool| {
        let h = Delta {
            bytes_out: f.bytes_out / 2,
            bytes_in: f.bytes_in / 2,
            pkts_out: f.pkts_out / 2,
            pkts_in: f.pkts_in / 2,
        };
        if first {
            h
        } else {
            Delta {
                bytes_out: f.bytes_out - h.bytes_out,
                bytes_in: f.bytes_in - h.bytes_in,
                pkts_out: f.pkts_out - h.pkts_out,
                pkts_in: f.pkts_in - h.pkts_in,
            }
        }
    };
    let update = |i: usize, first: bool| {
        let f = &flows[i % flows.len()];
        Update {
            inside: f.inside,
            outside: f.outside,
            outside_port: f.outside_port,
            first: first && f.outbound,
            uid: i as u64,
            ts_ns: 0,
            delta: half(f, first),
        }
    };
    let count = n.div_ceil(2).max(flows.len());
    let mut out = Vec::with_capacity(count * 2);
    for i in 0..count + LAG {
        if i < count {
            out.push(update(i, true));
        }
        if let Some(j) = i.checked_sub(LAG).filter(|&j| j < count) {
            out.push(update(j, false));
        }
    }
    out
}

/// One update per packet, flows drawn in proportion to their packets.
fn per_packet_stream(flows: &[Flow], n: usize) -> Vec<Update> {
    let mut cumulative = Vec::with_capacity(flows.len());
    let mut total = 0u64;
    for f in flows {
        total += (f.pkts_out + f.pkts_in).max(1);
        cumulative.push(total);
    }
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut out = Vec::with_capacity(n);
    let mut seen = vec![false; flows.len()];
    for _ in 0..n {
        // xorshift64: deterministic, and no dependency for it.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = cumulative
            .partition_point(|&c| c <= x % total)
            .min(flows.len() - 1);
        let f = &flows[i];
        let pkts = f.pkts_out + f.pkts_in;
        let outward = x >> 63 == 0 && f.pkts_out > 0 || f.pkts_in == 0;
        let delta = if outward {
            Delta {
                bytes_out: f.bytes_out / f.pkts_out.max(1),
                pkts_out: 1,
                ..Delta::default()
            }
        } else {
            Delta {
                bytes_in: f.bytes_in / f.pkts_in.max(1),
                pkts_in: 1,
                ..Delta::default()
            }
        };
        let first = f.outbound && pkts > 0 && !std::mem::replace(&mut seen[i], true);
        out.push(Update {
            inside: f.inside,
            outside: f.outside,
            outside_port: f.outside_port,
            first,
            uid: i as u64,
            ts_ns: 0,
            delta,
        });
    }
    out
}

/// Spreads event time over the windows so `HostWindows` sees time move on.
fn stamp(stream: &mut [Update], window: usize) {
    let step = WINDOW_NS / window as u64;
    for (i, u) in stream.iter_mut().enumerate() {
        u.ts_ns = START_NS + i as u64 * step;
    }
}

/// What a single owner does with updates and window closes.
trait HostState: Send {
    fn apply(&mut self, u: &Update);
    fn close(&mut self, window: usize) -> u64;
}

#[derive(Default)]
struct SmallState {
    map: Map,
    scratch: Vec<u64>,
}

impl HostState for SmallState {
    fn apply(&mut self, u: &Update) {
        self.map.entry(u.inside).or_default().add(u);
    }

    fn close(&mut self, _window: usize) -> u64 {
        let p = p90(self.map.values().map(|a| a.bytes_out), &mut self.scratch);
        self.map.clear();
        p
    }
}

struct RealState {
    windows: HostWindows,
    geo: GeoInfo,
}

impl RealState {
    fn new() -> RealState {
        let clock = BusinessClock::new(&ClockConfig::default()).expect("default clock");
        RealState {
            windows: HostWindows::new(WindowsConfig::default(), clock),
            geo: GeoInfo::default(),
        }
    }
}

impl HostState for RealState {
    fn apply(&mut self, u: &Update) {
        let update = FlowUpdate {
            uid: Uid(u.uid),
            kind: UpdateKind::Interim,
            proto: ip_proto::TCP,
            inside: u.inside,
            inside_port: 50_000,
            outside: u.outside,
            outside_port: u.outside_port,
            inbound: false,
            first_ns: u.ts_ns,
            last_ns: u.ts_ns,
            bytes_out: u.delta.bytes_out,
            bytes_in: u.delta.bytes_in,
            pkts_out: u.delta.pkts_out,
            pkts_in: u.delta.pkts_in,
            answered: true,
            conn_state: "SF",
            services: 0,
            names: None,
        };
        self.windows.flow(&FlowView {
            update: &update,
            delta: u.delta,
            delta_since_ns: update.first_ns,
            first_update: u.first,
            geo: &self.geo,
            allowlisted: false,
            history: None,
            off_hours: false,
            host_inside: true,
            host_allowlisted: false,
        });
    }

    fn close(&mut self, window: usize) -> u64 {
        let start = START_NS + window as u64 * WINDOW_NS;
        let closed = self.windows.close(start, start + WINDOW_NS);
        closed.population_p90_bytes_out.unwrap_or(0)
    }
}

// Not inlined, so callgrind's --toggle-collect can find it.
#[inline(never)]
fn one_thread(input: &Input, state: &mut impl HostState) -> u64 {
    let mut sum = 0;
    for (w, win) in input.windows.iter().enumerate() {
        for u in win {
            state.apply(u);
        }
        sum += state.close(w);
    }
    sum
}

struct Batch {
    updates: Vec<Update>,
    window_end: bool,
}

/// Workers batch their updates to the owner, which applies each window worker by worker (in
/// order, as the sensor applies rounds) and then closes it.
fn one_owner(input: &Input, state: &mut impl HostState) -> u64 {
    thread::scope(|s| {
        let mut links: Vec<(Receiver<Batch>, std::sync::mpsc::Sender<Vec<Update>>)> = Vec::new();
        for shard in &input.shards {
            let (tx, rx) = sync_channel::<Batch>(CHANNEL_BOUND);
            let (back_tx, back_rx) = channel::<Vec<Update>>();
            links.push((rx, back_tx));
            s.spawn(move || {
                let fresh = || {
                    back_rx
                        .try_recv()
                        .unwrap_or_else(|_| Vec::with_capacity(BATCH))
                };
                for win in shard {
                    let mut batch = fresh();
                    for u in win {
                        batch.push(*u);
                        if batch.len() == BATCH {
                            let full = std::mem::replace(&mut batch, fresh());
                            send(&tx, full, false);
                        }
                    }
                    send(&tx, batch, true);
                }
            });
        }
        let mut sum = 0;
        for w in 0..input.windows.len() {
            for (rx, back) in &links {
                while let Ok(mut batch) = rx.recv() {
                    for u in &batch.updates {
                        state.apply(u);
                    }
                    batch.updates.clear();
                    let _ = back.send(batch.updates);
                    if batch.window_end {
                        break;
                    }
                }
            }
            sum += state.close(w);
        }
        sum
    })
}

fn send(tx: &SyncSender<Batch>, updates: Vec<Update>, window_end: bool) {
    let _ = tx.send(Batch {
        updates,
        window_end,
    });
}

/// Both workers update one shared map; at each window end they meet and one closes it.
fn dashmap(input: &Input, map: &DashMap<IpAddr, Acc, FxBuildHasher>) -> u64 {
    let barrier = Barrier::new(WORKERS);
    let sum = AtomicU64::new(0);
    thread::scope(|s| {
        for shard in &input.shards {
            let (barrier, sum) = (&barrier, &sum);
            s.spawn(move || {
                let mut scratch = Vec::new();
                for win in shard {
                    for u in win {
                        map.entry(u.inside).or_default().add(u);
                    }
                    if barrier.wait().is_leader() {
                        let p = p90(map.iter().map(|e| e.value().bytes_out), &mut scratch);
                        sum.fetch_add(p, Ordering::Relaxed);
                        map.clear();
                    }
                    barrier.wait();
                }
            });
        }
    });
    sum.into_inner()
}

/// Each worker fills its own map and hands it over at each window end, taking a spare one back;
/// the merging thread folds both into one map, closes the window and returns the maps.
fn per_shard_merge(input: &Input, spares: &mut Vec<Map>, merged: &mut SmallState) -> u64 {
    thread::scope(|s| {
        let mut links = Vec::new();
        let mut handles = Vec::new();
        for shard in &input.shards {
            let (tx, rx) = sync_channel::<Map>(1);
            let (back_tx, back_rx) = channel::<Map>();
            // Two maps per worker: one filling while the other is merged.
            for _ in 0..2 {
                let _ = back_tx.send(spares.pop().unwrap_or_default());
            }
            links.push((rx, back_tx));
            handles.push(s.spawn(move || {
                let mut cur = back_rx.recv().unwrap_or_default();
                for win in shard {
                    for u in win {
                        cur.entry(u.inside).or_default().add(u);
                    }
                    let _ = tx.send(cur);
                    cur = back_rx.recv().unwrap_or_default();
                }
                drop(tx);
                let mut left = vec![cur];
                // The merger returns the last map once it is done with it.
                left.extend(back_rx.iter());
                left
            }));
        }
        let mut sum = 0;
        for w in 0..input.windows.len() {
            for (rx, back) in &links {
                if let Ok(mut map) = rx.recv() {
                    for (host, acc) in map.drain() {
                        merged.map.entry(host).or_default().merge(&acc);
                    }
                    let _ = back.send(map);
                }
            }
            sum += merged.close(w);
        }
        drop(links);
        for h in handles {
            spares.extend(h.join().unwrap_or_default());
        }
        sum
    })
}

/// The designs under test, each owning its state across iterations.
type Variant = (&'static str, Box<dyn FnMut(&Input) -> u64>);

fn variants() -> Vec<Variant> {
    let mut small = SmallState::default();
    let mut owned = SmallState::default();
    let map = DashMap::with_hasher(FxBuildHasher);
    let mut spares = Vec::new();
    let mut merged = SmallState::default();
    vec![
        ("one_thread", Box::new(move |i| one_thread(i, &mut small))),
        ("one_owner", Box::new(move |i| one_owner(i, &mut owned))),
        ("dashmap", Box::new(move |i| dashmap(i, &map))),
        (
            "per_shard_merge",
            Box::new(move |i| per_shard_merge(i, &mut spares, &mut merged)),
        ),
        // A fresh state each time: a reused one would see time go back and skip work.
        (
            "real_windows_one_thread",
            Box::new(|i| one_thread(i, &mut RealState::new())),
        ),
        (
            "real_windows_one_owner",
            Box::new(|i| one_owner(i, &mut RealState::new())),
        ),
    ]
}

fn inputs() -> Vec<(&'static str, Input)> {
    let (flows, packets) = load_flows();
    assert!(
        !flows.is_empty(),
        "the capture has no flows of an inside host"
    );
    let hosts: std::collections::BTreeSet<IpAddr> = flows.iter().map(|f| f.inside).collect();
    let mut flow_stream = per_flow_stream(&flows, PER_FLOW_UPDATES);
    stamp(&mut flow_stream, FLOW_WINDOW);
    let mut packet_stream = per_packet_stream(&flows, PER_PACKET_UPDATES);
    stamp(&mut packet_stream, PACKET_WINDOW);
    eprintln!(
        "host_state: capture of {packets} packets, {} flows of {} inside hosts ({:.4} reports a packet at two a flow); \
         per_flow {} updates in windows of {FLOW_WINDOW}, per_packet {} in windows of {PACKET_WINDOW}",
        flows.len(),
        hosts.len(),
        2.0 * flows.len() as f64 / packets.max(1) as f64,
        flow_stream.len(),
        packet_stream.len(),
    );
    let inputs = vec![
        ("per_flow", Input::new(flow_stream, FLOW_WINDOW)),
        ("per_packet", Input::new(packet_stream, PACKET_WINDOW)),
    ];
    inputs
}

/// The designs must close the same windows, or the comparison means nothing.
fn check_agreement(inputs: &[(&'static str, Input)]) {
    for (name, input) in inputs {
        let mut results = variants()
            .into_iter()
            .map(|(v, mut run)| (v, run(input)))
            .collect::<Vec<_>>();
        let real = results.split_off(4);
        for set in [&results, &real] {
            assert!(
                set.iter().all(|r| r.1 == set[0].1),
                "{name}: the designs disagree: {set:?}"
            );
        }
        eprintln!("host_state/{name}: window p90s agree: {results:?} {real:?}");
    }
}

fn bench(c: &mut Criterion) {
    let inputs = inputs();
    check_agreement(&inputs);
    for (name, input) in &inputs {
        let mut group = c.benchmark_group(format!("host_state/{name}"));
        group.throughput(Throughput::Elements(input.updates));
        group.sample_size(20);
        for (variant, mut run) in variants() {
            group.bench_function(variant, |b| b.iter(|| black_box(run(input))));
        }
        group.finish();
    }
}

/// CPU time of the whole process (all threads, ended ones included), in clock ticks.
fn process_cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // utime and stime are fields 14 and 15; the command name before them may hold spaces.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| {
        fields
            .get(n - 3)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(14) + field(15)
}

/// HOST_STATE_CPU=SECONDS: wall and CPU time (summed over threads) per update, each design run
/// for about that long (at least once). CPU is what the host state takes from the packet path on
/// a busy machine. HOST_STATE_ONLY=input/design runs one (e.g. under callgrind).
fn cpu_table(seconds: f64) {
    /// Linux's USER_HZ.
    const TICK_NS: f64 = 1e7;
    let only = std::env::var("HOST_STATE_ONLY").ok();
    println!("| input | design | runs | wall ns/update | CPU ns/update |");
    println!("|---|---|---|---|---|");
    for (name, input) in &inputs() {
        for (variant, mut run) in variants() {
            let id = format!("{name}/{variant}");
            if only.as_ref().is_some_and(|o| *o != id) {
                continue;
            }
            let start = std::time::Instant::now();
            let ticks = process_cpu_ticks();
            let mut n = 0u64;
            loop {
                black_box(run(input));
                n += 1;
                if start.elapsed().as_secs_f64() >= seconds {
                    break;
                }
            }
            let wall = start.elapsed().as_nanos() as f64;
            let cpu = (process_cpu_ticks() - ticks) as f64 * TICK_NS;
            let updates = (n * input.updates) as f64;
            println!(
                "| {name} | {variant} | {n} | {:.1} | {:.1} |",
                wall / updates,
                cpu / updates
            );
        }
    }
}

criterion_group!(benches, bench);

fn main() {
    if let Some(seconds) = std::env::var_os("HOST_STATE_CPU") {
        cpu_table(seconds.to_str().and_then(|s| s.parse().ok()).unwrap_or(2.0));
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
