//! The packet path (decode, defragment, flow table) and its sharding over worker threads.
//!
//! With one thread, [`PacketPath`] hands flows and names straight to the sensor. With several,
//! the reading thread spreads frames over workers by a symmetric hash of the innermost address
//! pair (both directions of a flow, and every fragment of a datagram, meet on one worker); each
//! worker runs its own `PacketPath` and records what it would have told the sensor as
//! [`Event`]s. The reading thread applies them in frame order, one round at a time, while the
//! workers go on with the next rounds. Flows are numbered by the frame that opened them, so any
//! number of threads gives the same flows, names, logs and alerts.
//!
//! Host state (windows, detectors, DNS cache, scoring) stays in the one sensor: it sees one
//! update per flow per window, not per packet, so it is not what limits throughput, and the
//! population figures (p90, prevalence) need every host anyway.
use crate::config::Config;
use crate::decode::dns::{self, DnsMessage};
use crate::decode::http::RequestHead;
use crate::decode::packet::{
    Decoded, DropReason, Fragment, Layer, Transport, decode_frame, decode_transport, ip_proto,
    plain_ip_header,
};
use crate::decode::quic::QuicInfo;
use crate::decode::socks::SocksRequest;
use crate::decode::tls::{ClientHelloInfo, ServerInfo};
use crate::export;
use crate::flow::defrag::{DefragOutcome, Defragmenter};
use crate::flow::key::{Probe, Uid};
use crate::flow::table::{Flow, FlowTable};
use crate::flow::update::{FlowSink, UpdateKind};
use crate::source::Packet;
use crate::source::pcap_file::SharedFrame;
use crate::stats::Stats;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

const NS: u64 = 1_000_000_000;
/// Event time between expiry checks (and window checks in the sensor).
pub const TICK_NS: u64 = NS;
/// Flow uids are `frame number * UIDS_PER_FRAME + n`: a frame opens at most one flow per layer.
const UIDS_PER_FRAME: u64 = crate::decode::packet::MAX_LAYERS as u64;
/// Frames per round: the unit handed to the workers and applied in order by the sensor.
const ROUND_FRAMES: usize = 4096;
/// Rounds in flight per worker before the reader waits for the oldest to be applied. Bounds
/// memory (frames are not copied: each round holds its read buffers) and keeps workers busy.
const ROUNDS_IN_FLIGHT: usize = 4;

/// What the packet path tells the stage above it besides flows and their names.
pub trait PacketSink: FlowSink {
    /// A DNS message quoted in an ICMP error: a name the host asked for, with no flow.
    fn quoted_dns(&mut self, ts_ns: u64, client: IpAddr, msg: DnsMessage);
    /// A NetFlow/IPFIX/sFlow datagram inside the capture.
    fn export_datagram(&mut self, ts_ns: u64, exporter: SocketAddr, payload: &[u8]);
}

/// Counters of the packet path, summed over workers at the end.
#[derive(Debug, Clone, Default)]
pub struct PacketCounters {
    pub frames: u64,
    pub wire_bytes: u64,
    pub sliced_frames: u64,
    pub fragments_reassembled: u64,
    pub drops: BTreeMap<&'static str, u64>,
}

impl PacketCounters {
    fn drop(&mut self, reason: DropReason) {
        *self.drops.entry(reason.name()).or_insert(0) += 1;
    }
}

/// Whether an outer layer of the frame (before `i`) has the same flow as `t`, in either
/// direction.
fn same_flow_as_outer(layers: &[Layer<'_>], i: usize, t: &Transport<'_>) -> bool {
    let ends = |t: &Transport<'_>| {
        let (a, b) = ((t.src, t.sport), (t.dst, t.dport));
        if a <= b { (a, b) } else { (b, a) }
    };
    layers
        .get(..i)
        .unwrap_or(&[])
        .iter()
        .any(|outer| match outer {
            Layer::Transport(o) => o.proto == t.proto && ends(o) == ends(t),
            Layer::Fragment(_) => false,
        })
}

/// Is a checkpoint due at a tick at `now_ns`, the last tick having been at `last_tick_ns`?
/// Flows report their counters to the windows each time event time crosses a window boundary,
/// so a window holds what its flows did while it was open. Decided from event time alone, so
/// the sharded reader and the one-thread run agree.
pub fn checkpoint_due(last_tick_ns: Option<u64>, now_ns: u64, window_ns: u64) -> bool {
    last_tick_ns.is_some_and(|last| last / window_ns.max(1) < now_ns / window_ns.max(1))
}

/// The next tick after one at `now_ns`.
pub fn next_tick(now_ns: u64) -> u64 {
    now_ns - now_ns % TICK_NS + TICK_NS
}

/// Decode, defragment and account frames in a flow table.
pub struct PacketPath {
    table: FlowTable,
    defrag: Defragmenter,
    decode_exports: bool,
    pub counters: PacketCounters,
}

impl PacketPath {
    /// One of `shards` paths: the flow and fragment limits are shared out between them.
    pub fn new(config: &Config, shards: usize) -> PacketPath {
        let shards = shards.max(1);
        let mut flow = config.flow.clone();
        flow.max_flows = (flow.max_flows / shards).max(1);
        PacketPath {
            table: FlowTable::new(flow, config.reassembly.max_out_of_order_bytes),
            defrag: Defragmenter::new(
                (config.reassembly.max_fragmented_datagrams / shards).max(1),
                config.reassembly.max_fragment_bytes / shards,
                config.reassembly.fragment_timeout_seconds * NS,
            ),
            decode_exports: config.export.decode_in_captures,
            counters: PacketCounters::default(),
        }
    }

    /// Starts loading the flow state of the frames after the next one (see
    /// `FlowTable::look_ahead`); `two_ahead` may be empty.
    pub fn look_ahead(&mut self, linktype: u32, two_ahead: &[u8]) {
        self.table.look_ahead(Probe::guess(linktype, two_ahead));
    }

    /// One frame; `frame_no` (from 1, in reading order) numbers the flows it opens.
    pub fn packet(&mut self, frame_no: u64, packet: &Packet<'_>, sink: &mut dyn PacketSink) {
        let counters = &mut self.counters;
        counters.frames += 1;
        counters.wire_bytes += u64::from(packet.orig_len);
        if (packet.data.len() as u32) < packet.orig_len {
            counters.sliced_frames += 1;
        }
        self.table
            .set_next_uid(frame_no.saturating_mul(UIDS_PER_FRAME));
        let mut decoded = Decoded::default();
        decode_frame(packet.linktype, packet.data, &mut decoded);
        if let Some(reason) = decoded.drop {
            counters.drop(reason);
        }
        if let Some(quote) = decoded.icmp_quote
            && let Some((client, msg)) = quoted_dns(&quote)
        {
            sink.quoted_dns(packet.ts_ns, client, msg);
        }
        for (i, layer) in decoded.layers.iter().enumerate() {
            match layer {
                Layer::Transport(t) if same_flow_as_outer(&decoded.layers, i, t) => {
                    self.counters.drop(DropReason::RepeatedTunnelLayer);
                }
                Layer::Transport(t) => self.transport(packet, t, sink),
                Layer::Fragment(frag) => match self.add_fragment(packet.ts_ns, frag) {
                    DefragOutcome::Pending => {}
                    DefragOutcome::Dropped(reason) => self.counters.drop(reason),
                    DefragOutcome::Complete(datagram) => {
                        self.counters.fragments_reassembled += 1;
                        let mut inner = Decoded::default();
                        let len = datagram.payload.len() as u32;
                        decode_transport(
                            datagram.src,
                            datagram.dst,
                            datagram.proto,
                            datagram.ip_len_sum,
                            &datagram.payload,
                            len,
                            1,
                            &mut inner,
                        );
                        if let Some(reason) = inner.drop {
                            self.counters.drop(reason);
                        }
                        for layer in &inner.layers {
                            if let Layer::Transport(t) = layer {
                                self.transport(packet, t, sink);
                            }
                        }
                    }
                },
            }
        }
    }

    fn add_fragment(&mut self, ts_ns: u64, frag: &Fragment<'_>) -> DefragOutcome {
        let outcome = self.defrag.add(ts_ns, frag);
        for _ in 0..self.defrag.take_evicted() {
            self.counters.drop(DropReason::FragmentEvicted);
        }
        outcome
    }

    fn transport(&mut self, packet: &Packet<'_>, t: &Transport<'_>, sink: &mut dyn PacketSink) {
        // Export datagrams inside a capture are decoded as export too (and are a flow of
        // their own, counted below).
        if self.decode_exports && t.proto == ip_proto::UDP && export::classify(t.payload).is_some()
        {
            sink.export_datagram(packet.ts_ns, SocketAddr::new(t.src, t.sport), t.payload);
        }
        self.table.packet(packet.ts_ns, packet.orig_len, t, sink);
    }

    /// Flows and fragments idle past their timeouts at event time `now_ns`.
    pub fn expire(&mut self, now_ns: u64, sink: &mut dyn FlowSink) {
        self.table.expire(now_ns, sink);
        for _ in 0..self.defrag.expire(now_ns) {
            self.counters.drop(DropReason::FragmentTimeout);
        }
    }

    /// Interim updates of every flow that changed since its last one.
    pub fn checkpoint(&mut self, sink: &mut dyn FlowSink) {
        self.table.checkpoint(sink);
    }

    /// Ends every flow (end of input).
    pub fn flush(&mut self, sink: &mut dyn FlowSink) {
        self.table.flush(sink);
    }

    /// Flows held now.
    pub fn active_flows(&self) -> u64 {
        self.table.len() as u64
    }

    /// Adds this path's counters to the run's.
    pub fn add_to(&self, stats: &mut Stats) {
        self.totals().add_to(stats);
    }

    /// This path's counters now.
    fn totals(&self) -> PathTotals {
        PathTotals {
            counters: self.counters.clone(),
            flows: self.table.counters.clone(),
            active_flows: self.active_flows(),
        }
    }
}

/// A packet path's counters, sent with each round so the run can report them while it goes.
#[derive(Debug, Clone, Default)]
pub struct PathTotals {
    counters: PacketCounters,
    flows: crate::flow::table::FlowCounters,
    pub active_flows: u64,
}

impl PathTotals {
    pub fn add_to(&self, stats: &mut Stats) {
        let c = &self.counters;
        stats.frames += c.frames;
        stats.wire_bytes += c.wire_bytes;
        stats.sliced_frames += c.sliced_frames;
        stats.fragments_reassembled += c.fragments_reassembled;
        for (reason, n) in &c.drops {
            *stats.drops.entry(reason).or_insert(0) += n;
        }
        let t = &self.flows;
        stats.flows += t.flows_created;
        stats.flows_evicted += t.flows_evicted;
        stats.interim_updates += t.interim_updates;
        stats.connections_reused += t.connections_reused;
    }
}

/// The DNS message an ICMP error quotes, with the asking host.
fn quoted_dns(quote: &Transport<'_>) -> Option<(IpAddr, DnsMessage)> {
    if quote.proto != ip_proto::UDP || (quote.sport != 53 && quote.dport != 53) {
        return None;
    }
    let msg = dns::parse_message(quote.payload).ok()?;
    let client = if msg.is_response {
        quote.dst
    } else {
        quote.src
    };
    Some((client, msg))
}

/// What a worker's packet path told its sink, to be applied by the sensor in frame order.
#[derive(Debug)]
pub enum Event {
    /// A flow began: the sensor names it from its DNS cache, as the one-thread path does at
    /// creation.
    Created {
        uid: Uid,
        client: IpAddr,
        server: (IpAddr, u16),
        ts_ns: u64,
    },
    Flow {
        flow: Box<Flow>,
        kind: UpdateKind,
    },
    Dns {
        flow: Box<Flow>,
        ts_ns: u64,
        from_orig: bool,
        msg: DnsMessage,
    },
    Tls {
        flow: Box<Flow>,
        ts_ns: u64,
        hello: ClientHelloInfo,
    },
    TlsServer {
        flow: Box<Flow>,
        ts_ns: u64,
        info: ServerInfo,
    },
    Http {
        flow: Box<Flow>,
        ts_ns: u64,
        request: RequestHead,
    },
    Socks {
        flow: Box<Flow>,
        ts_ns: u64,
        request: SocksRequest,
    },
    Quic {
        flow: Box<Flow>,
        ts_ns: u64,
        info: QuicInfo,
    },
    QuotedDns {
        ts_ns: u64,
        client: IpAddr,
        msg: DnsMessage,
    },
    Export {
        ts_ns: u64,
        exporter: SocketAddr,
        payload: Vec<u8>,
    },
}

impl Event {
    /// The flow an event is about, for ordering events of one tick.
    fn uid(&self) -> Uid {
        match self {
            Event::Created { uid, .. } => *uid,
            Event::Flow { flow, .. }
            | Event::Dns { flow, .. }
            | Event::Tls { flow, .. }
            | Event::TlsServer { flow, .. }
            | Event::Http { flow, .. }
            | Event::Socks { flow, .. }
            | Event::Quic { flow, .. } => flow.uid,
            Event::QuotedDns { .. } | Event::Export { .. } => Uid(0),
        }
    }

    fn first_ns(&self) -> u64 {
        match self {
            Event::Flow { flow, .. } => flow.first_ns,
            _ => 0,
        }
    }
}

/// A worker's sink: events tagged with the frame they came from.
#[derive(Default)]
struct EventSink {
    frame_no: u64,
    events: Vec<(u64, Event)>,
}

impl EventSink {
    fn push(&mut self, event: Event) {
        self.events.push((self.frame_no, event));
    }
}

impl FlowSink for EventSink {
    fn resolved_name(
        &mut self,
        uid: Uid,
        client: IpAddr,
        server: (IpAddr, u16),
        ts_ns: u64,
    ) -> Option<Arc<str>> {
        self.push(Event::Created {
            uid,
            client,
            server,
            ts_ns,
        });
        None
    }

    fn flow(&mut self, flow: &Flow, kind: UpdateKind) {
        self.push(Event::Flow {
            flow: Box::new(flow.snapshot()),
            kind,
        });
    }

    fn dns(&mut self, flow: &Flow, ts_ns: u64, from_orig: bool, msg: &DnsMessage) {
        self.push(Event::Dns {
            flow: Box::new(flow.snapshot()),
            ts_ns,
            from_orig,
            msg: msg.clone(),
        });
    }

    fn tls(&mut self, flow: &Flow, ts_ns: u64, hello: &ClientHelloInfo) {
        self.push(Event::Tls {
            flow: Box::new(flow.snapshot()),
            ts_ns,
            hello: hello.clone(),
        });
    }

    fn tls_server(&mut self, flow: &Flow, ts_ns: u64, info: &ServerInfo) {
        self.push(Event::TlsServer {
            flow: Box::new(flow.snapshot()),
            ts_ns,
            info: info.clone(),
        });
    }

    fn http(&mut self, flow: &Flow, ts_ns: u64, request: &RequestHead) {
        self.push(Event::Http {
            flow: Box::new(flow.snapshot()),
            ts_ns,
            request: request.clone(),
        });
    }

    fn socks(&mut self, flow: &Flow, ts_ns: u64, request: &SocksRequest) {
        self.push(Event::Socks {
            flow: Box::new(flow.snapshot()),
            ts_ns,
            request: request.clone(),
        });
    }

    fn quic(&mut self, flow: &Flow, ts_ns: u64, info: &QuicInfo) {
        self.push(Event::Quic {
            flow: Box::new(flow.snapshot()),
            ts_ns,
            info: info.clone(),
        });
    }
}

impl PacketSink for EventSink {
    fn quoted_dns(&mut self, ts_ns: u64, client: IpAddr, msg: DnsMessage) {
        self.push(Event::QuotedDns { ts_ns, client, msg });
    }

    fn export_datagram(&mut self, ts_ns: u64, exporter: SocketAddr, payload: &[u8]) {
        self.push(Event::Export {
            ts_ns,
            exporter,
            payload: payload.to_vec(),
        });
    }
}

/// A frame handed to a worker: where it lies in one of the round's buffers.
struct FrameAt {
    frame_no: u64,
    buffer: usize,
    start: usize,
    len: usize,
    ts_ns: u64,
    linktype: u32,
    orig_len: u32,
}

/// One worker's part of a round.
#[derive(Default)]
struct Part {
    frames: Vec<FrameAt>,
    buffers: Vec<Arc<Vec<u8>>>,
}

impl Part {
    fn push(&mut self, frame_no: u64, frame: &SharedFrame<'_>) {
        if !self
            .buffers
            .last()
            .is_some_and(|b| Arc::ptr_eq(b, frame.buffer))
        {
            self.buffers.push(frame.buffer.clone());
        }
        self.frames.push(FrameAt {
            frame_no,
            buffer: self.buffers.len() - 1,
            start: frame.start,
            len: frame.packet.data.len(),
            ts_ns: frame.packet.ts_ns,
            linktype: frame.packet.linktype,
            orig_len: frame.packet.orig_len,
        });
    }
}

/// How a round ends.
#[derive(Debug, Clone, Copy)]
struct Tick {
    now_ns: u64,
    checkpoint: bool,
}

struct Work {
    part: Part,
    tick: Option<Tick>,
    flush: bool,
    /// An emptied event list to fill, so rounds do not allocate anew.
    events: Vec<(u64, Event)>,
}

#[derive(Default)]
struct Output {
    /// The round's part, emptied, for reuse.
    part: Part,
    events: Vec<(u64, Event)>,
    expired: Vec<Event>,
    checkpointed: Vec<Event>,
    flushed: Vec<Event>,
    /// The worker's counters after the round.
    totals: PathTotals,
}

/// One round's events from every worker, in the order the one-thread path makes them.
#[derive(Default)]
pub struct Round {
    /// Frame-ordered events of the round's frames.
    pub events: Vec<Event>,
    /// Event time of the round's last frame.
    pub last_ts_ns: u64,
    /// The tick the round ended with, if it did.
    pub tick: Option<TickEvents>,
    /// Final updates of the end of input.
    pub flushed: Vec<Event>,
}

/// What the workers did at a tick: flows ended by expiry, then (at window boundaries) the
/// interim updates of the rest.
pub struct TickEvents {
    pub now_ns: u64,
    pub expired: Vec<Event>,
    pub checkpointed: Vec<Event>,
}

struct Worker {
    work: SyncSender<Work>,
    done: Receiver<Output>,
    handle: JoinHandle<PacketPath>,
    /// Emptied parts and event lists back from the worker, for its next rounds.
    spare_parts: Vec<Part>,
    spare_events: Vec<Vec<(u64, Event)>>,
    /// Counters of the last round received.
    totals: PathTotals,
}

/// The reading side of the sharded packet path.
pub struct Shards {
    workers: Vec<Worker>,
    parts: Vec<Part>,
    frames_in_round: usize,
    last_ts_ns: u64,
    /// Last-frame event time and tick of each round in flight, oldest first.
    in_flight: std::collections::VecDeque<(u64, Option<Tick>)>,
    frame_no: u64,
    now_ns: u64,
    next_tick: u64,
    last_tick_ns: Option<u64>,
    window_ns: u64,
}

impl Shards {
    /// Starts `threads` workers.
    pub fn start(config: &Config, threads: usize) -> std::io::Result<Shards> {
        let threads = threads.max(1);
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let (work_tx, work_rx) = sync_channel::<Work>(ROUNDS_IN_FLIGHT);
            let (done_tx, done_rx) = sync_channel::<Output>(ROUNDS_IN_FLIGHT);
            let path = PacketPath::new(config, threads);
            let handle = std::thread::Builder::new()
                .name(format!("egresswatch-shard-{i}"))
                .spawn(move || work(path, work_rx, done_tx))?;
            workers.push(Worker {
                work: work_tx,
                done: done_rx,
                handle,
                spare_parts: Vec::new(),
                spare_events: Vec::new(),
                totals: PathTotals::default(),
            });
        }
        Ok(Shards {
            parts: (0..threads).map(|_| Part::default()).collect(),
            workers,
            frames_in_round: 0,
            last_ts_ns: 0,
            in_flight: Default::default(),
            frame_no: 0,
            now_ns: 0,
            next_tick: 0,
            last_tick_ns: None,
            window_ns: config.windows.window_ns(),
        })
    }

    /// Hands a frame to its worker. Returns the oldest round once enough are in flight; the
    /// caller applies it before reading on.
    pub fn frame(&mut self, frame: &SharedFrame<'_>) -> Option<Round> {
        self.frame_no += 1;
        let shard = self.shard_of(&frame.packet);
        if let Some(part) = self.parts.get_mut(shard) {
            part.push(self.frame_no, frame);
        }
        self.frames_in_round += 1;
        self.last_ts_ns = frame.packet.ts_ns;
        // The same tick rule as the one-thread run: after a frame moves event time past the
        // next tick, expiry and windows are checked.
        self.now_ns = self.now_ns.max(frame.packet.ts_ns);
        let tick = self.due_tick();
        if tick.is_none() && self.frames_in_round < ROUND_FRAMES {
            return None;
        }
        self.send_round(tick, false);
        if self.in_flight.len() > ROUNDS_IN_FLIGHT {
            return self.receive_round();
        }
        None
    }

    /// Event time moved on with no frame (live capture on a quiet link): a tick, if due, goes
    /// to the workers as a round of its own.
    pub fn advance(&mut self, now_ns: u64) {
        self.now_ns = self.now_ns.max(now_ns);
        if let Some(tick) = self.due_tick() {
            self.send_round(Some(tick), false);
        }
    }

    /// The tick due at the current event time, if any (the one-thread run's rule).
    fn due_tick(&mut self) -> Option<Tick> {
        if self.now_ns < self.next_tick {
            return None;
        }
        self.next_tick = next_tick(self.now_ns);
        let checkpoint = checkpoint_due(self.last_tick_ns, self.now_ns, self.window_ns);
        self.last_tick_ns = Some(self.now_ns);
        Some(Tick {
            now_ns: self.now_ns,
            checkpoint,
        })
    }

    /// Every round in flight, oldest first (waits for the workers).
    pub fn drain(&mut self) -> Vec<Round> {
        let mut rounds = Vec::new();
        while let Some(round) = self.receive_round() {
            rounds.push(round);
        }
        rounds
    }

    /// Adds the workers' counters as of the rounds applied so far; returns their flows held.
    pub fn add_totals_to(&self, stats: &mut Stats) -> u64 {
        self.workers
            .iter()
            .map(|w| {
                w.totals.add_to(stats);
                w.totals.active_flows
            })
            .sum()
    }

    /// Frames handed to the workers so far.
    pub fn frames(&self) -> u64 {
        self.frame_no
    }

    /// End of input: every flow ends; returns the rounds still in flight (the last one with
    /// the final updates) and the workers' paths, for their counters.
    pub fn finish(mut self) -> (Vec<Round>, Vec<PacketPath>) {
        self.send_round(None, true);
        let rounds = self.drain();
        let paths = self
            .workers
            .into_iter()
            .filter_map(|w| {
                drop(w.work);
                w.handle.join().ok()
            })
            .collect();
        (rounds, paths)
    }

    fn shard_of(&mut self, packet: &Packet<'_>) -> usize {
        let n = self.workers.len();
        if n == 1 {
            return 0;
        }
        if let Some((a, b)) = plain_tcp_pair(packet) {
            return (pair_hash(a, b) % n as u64) as usize;
        }
        // The innermost addresses decide, so tunnelled traffic spreads too.
        let mut decoded = Decoded::default();
        decode_frame(packet.linktype, packet.data, &mut decoded);
        let pair = decoded.layers.last().map(|layer| match layer {
            Layer::Transport(t) => (t.src, t.dst),
            Layer::Fragment(f) => (f.src, f.dst),
        });
        match pair {
            Some((a, b)) => (pair_hash(a, b) % n as u64) as usize,
            // Undecodable frames only count drops: spread them by number.
            None => (self.frame_no % n as u64) as usize,
        }
    }

    fn send_round(&mut self, tick: Option<Tick>, flush: bool) {
        for (worker, part) in self.workers.iter_mut().zip(self.parts.iter_mut()) {
            let spare = worker.spare_parts.pop().unwrap_or_default();
            let work = Work {
                part: std::mem::replace(part, spare),
                tick,
                flush,
                events: worker.spare_events.pop().unwrap_or_default(),
            };
            // A worker that died (panicked) is noticed when its output is missing.
            let _ = worker.work.send(work);
        }
        self.in_flight.push_back((self.last_ts_ns, tick));
        self.frames_in_round = 0;
    }

    fn receive_round(&mut self) -> Option<Round> {
        let (last_ts_ns, tick) = self.in_flight.pop_front()?;
        let mut events: Vec<(u64, Event)> = Vec::new();
        let mut expired = Vec::new();
        let mut checkpointed = Vec::new();
        let mut flushed = Vec::new();
        for worker in &mut self.workers {
            let mut out = worker.done.recv().unwrap_or_default();
            events.append(&mut out.events);
            expired.append(&mut out.expired);
            checkpointed.append(&mut out.checkpointed);
            flushed.append(&mut out.flushed);
            worker.totals = out.totals;
            worker.spare_parts.push(out.part);
            worker.spare_events.push(out.events);
        }
        // Each worker's events are in frame order; a stable sort merges them.
        events.sort_by_key(|(frame_no, _)| *frame_no);
        // Within a tick, flows in the order they began, whatever worker held them.
        expired.sort_by_key(Event::uid);
        checkpointed.sort_by_key(Event::uid);
        flushed.sort_by_key(|e| (e.first_ns(), e.uid()));
        Some(Round {
            events: events.into_iter().map(|(_, e)| e).collect(),
            last_ts_ns,
            tick: tick.map(|t| TickEvents {
                now_ns: t.now_ns,
                expired,
                checkpointed,
            }),
            flushed,
        })
    }
}

/// The addresses of TCP straight over IP (`plain_ip_header`), the bulk of any link, without
/// the full decode. TCP never carries a tunnel here, so these are the innermost addresses
/// `decode_frame` would give. Anything else: `None`.
fn plain_tcp_pair(packet: &Packet<'_>) -> Option<(IpAddr, IpAddr)> {
    let ip = plain_ip_header(packet.linktype, packet.data)?;
    match ip.first()? >> 4 {
        4 if *ip.get(9)? == ip_proto::TCP => {
            let src: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            Some((IpAddr::from(src), IpAddr::from(dst)))
        }
        6 if *ip.get(6)? == ip_proto::TCP => {
            let src: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            Some((IpAddr::from(src), IpAddr::from(dst)))
        }
        _ => None,
    }
}

/// Symmetric: both directions of a pair hash alike.
fn pair_hash(a: IpAddr, b: IpAddr) -> u64 {
    let (x, y) = (addr_bits(a), addr_bits(b));
    let (lo, hi) = if x <= y { (x, y) } else { (y, x) };
    mix64(lo ^ mix64(hi))
}

fn addr_bits(addr: IpAddr) -> u64 {
    match addr {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            (bits as u64) ^ ((bits >> 64) as u64).rotate_left(17)
        }
    }
}

/// splitmix64's finaliser.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn work(mut path: PacketPath, work: Receiver<Work>, done: SyncSender<Output>) -> PacketPath {
    let mut sink = EventSink::default();
    while let Ok(Work {
        mut part,
        tick,
        flush,
        events,
    }) = work.recv()
    {
        sink.events = events;
        for f in &part.frames {
            let data = part
                .buffers
                .get(f.buffer)
                .and_then(|b| b.get(f.start..f.start + f.len))
                .unwrap_or(&[]);
            let packet = Packet {
                ts_ns: f.ts_ns,
                linktype: f.linktype,
                data,
                orig_len: f.orig_len,
            };
            sink.frame_no = f.frame_no;
            path.packet(f.frame_no, &packet, &mut sink);
        }
        // The round's buffers go back to the reader before the tick's work.
        part.frames.clear();
        part.buffers.clear();
        let mut out = Output {
            part,
            events: std::mem::take(&mut sink.events),
            ..Output::default()
        };
        if let Some(tick) = tick {
            path.expire(tick.now_ns, &mut sink);
            out.expired = sink.events.drain(..).map(|(_, e)| e).collect();
            if tick.checkpoint {
                path.checkpoint(&mut sink);
                out.checkpointed = sink.events.drain(..).map(|(_, e)| e).collect();
            }
        }
        if flush {
            path.flush(&mut sink);
            out.flushed = sink.events.drain(..).map(|(_, e)| e).collect();
        }
        out.totals = path.totals();
        if done.send(out).is_err() {
            break;
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::pcap_file::CaptureReader;
    use std::path::PathBuf;

    fn capture_files() -> Vec<PathBuf> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        for dir in [
            root.join("captures"),
            root.join("../shared/captures/public"),
        ] {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path
                    .extension()
                    .is_some_and(|x| x == "pcap" || x == "pcapng" || x == "cap")
                {
                    files.push(path);
                }
            }
        }
        files
    }

    /// The shortcut must pick the same addresses as the full decode, or a flow's packets could
    /// meet on different workers.
    #[test]
    fn plain_tcp_pair_agrees_with_the_full_decode() {
        let mut checked = 0;
        for file in capture_files() {
            let mut reader = CaptureReader::open(std::slice::from_ref(&file)).unwrap();
            while let Some(packet) = reader.next_packet() {
                let Some(pair) = plain_tcp_pair(&packet) else {
                    continue;
                };
                let mut decoded = Decoded::default();
                decode_frame(packet.linktype, packet.data, &mut decoded);
                let full = decoded.layers.last().map(|layer| match layer {
                    Layer::Transport(t) => (t.src, t.dst),
                    Layer::Fragment(f) => (f.src, f.dst),
                });
                if let Some(full) = full {
                    assert_eq!(pair, full, "{}", file.display());
                    checked += 1;
                }
            }
        }
        assert!(checked > 1000, "only {checked} TCP frames checked");
    }

    /// Found by the `flows` fuzz target (tests/data/fuzz/, in that target's input layout):
    /// Geneve over UDP carrying a frame of the very same UDP flow, nested again. Each layer
    /// counted the frame once more in the one flow, so the flow held more bytes than the
    /// capture.
    #[test]
    fn a_tunnel_nested_in_its_own_flow_counts_each_frame_once() {
        let input = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/fuzz/flows-tunnel-nested-in-its-own-flow.bin"),
        )
        .unwrap();
        let mut path = PacketPath::new(&Config::default(), 1);
        let mut sink = EventSink::default();
        let (mut rest, mut frames, mut bytes) = (&input[1..], 0u64, 0u64);
        while let [_gap, hi, lo, tail @ ..] = rest {
            let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
            let (data, next) = tail.split_at(len);
            rest = next;
            frames += 1;
            bytes += data.len() as u64;
            let packet = Packet {
                ts_ns: 1,
                linktype: crate::decode::packet::linktype::ETHERNET,
                data,
                orig_len: data.len() as u32,
            };
            path.packet(frames, &packet, &mut sink);
        }
        path.flush(&mut sink);
        let mut flows = 0;
        for (_, event) in &sink.events {
            if let Event::Flow { flow, .. } = event {
                flows += 1;
                assert!(flow.orig_wire_bytes + flow.resp_wire_bytes <= bytes);
                assert!(flow.orig_pkts + flow.resp_pkts <= frames);
            }
        }
        assert!(flows > 0);
        assert!(
            path.counters
                .drops
                .get("repeated_tunnel_layer")
                .is_some_and(|&n| n > 0)
        );
    }

    #[test]
    fn pair_hash_is_symmetric_and_spreads() {
        let mut per_shard = [0u32; 4];
        for i in 0..4000u32 {
            let a = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
            let b = IpAddr::from((0xc633_6400 + i * 7).to_be_bytes());
            assert_eq!(pair_hash(a, b), pair_hash(b, a));
            per_shard[(pair_hash(a, b) % 4) as usize] += 1;
        }
        // 1000 expected each; a fair hash stays well within this.
        assert!(
            per_shard.iter().all(|&n| (850..1150).contains(&n)),
            "{per_shard:?}"
        );
    }
}
