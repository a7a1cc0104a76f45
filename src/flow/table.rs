//! The flow table: one entry per bidirectional 5-tuple, in event time.
//!
//! Flows live in a slab; the index is a hash table of slab slots whose keys are the flows' own
//! endpoints (no second copy of the key). Each flow sits in exactly one expiry queue (TCP
//! open, TCP closed, UDP, other): every queue has one timeout, so its front is always the next
//! flow to expire, and a touched flow is re-queued lazily when it reaches the front. When
//! `max_flows` is reached the least recently seen flow is evicted and counted.
//!
//! A hint per hash (the slot last found there) lets most packets skip the index, and lets
//! [`FlowTable::look_ahead`] load a coming frame's flow before its turn: on whole frames,
//! where the capture's bytes stream through the caches, the flow's slot is otherwise a miss
//! to memory on nearly every packet.
//!
//! Memory per flow is budgeted (see the tests): a 184-byte [`Flow`], about 10 bytes of index,
//! 16-32 of queue entry and 8-16 of hints. Rarer parts are allocated only when needed: IPv6
//! endpoints, the TCP state's cold part, application inspection state while it runs, and
//! name sets, which are shared between flows carrying the same names.
use super::app::{AppEvent, AppState};
use super::key::{Endpoints, PairHasher, Probe, Uid};
use super::tcp_state::{self, TcpState, flags};
use super::update::{FlowNames, FlowSink, UpdateKind, service};
use crate::config::FlowConfig;
use crate::decode::bittorrent;
use crate::decode::dns;
use crate::decode::packet::{Transport, ip_proto};
use crate::decode::quic::{Hello, QuicConn};
use hashbrown::HashTable;
use rustc_hash::FxHashSet;
use std::net::IpAddr;
use std::sync::Arc;

const NS: u64 = 1_000_000_000;
/// UDP datagrams per flow checked for BitTorrent DHT/uTP; peers reveal themselves at once.
const BITTORRENT_PROBE_PACKETS: u64 = 4;
const DNS_PORTS: [u16; 3] = [53, 5353, 5355];
/// Client datagrams per UDP flow checked for a QUIC Initial (the first, unless the capture
/// began mid-handshake or the first ones were lost).
const QUIC_PROBE_PACKETS: u64 = 4;

/// `Flow::marks` bits.
mod mark {
    /// An interim update was sent.
    pub const UPDATED: u8 = 1;
    /// TCP: FIN from both sides, or RST.
    pub const CLOSED: u8 = 2;
    pub const FIN_ORIG: u8 = 4;
    pub const FIN_RESP: u8 = 8;
}

/// What only some protocols need.
#[derive(Debug)]
enum L4 {
    Tcp(TcpState),
    /// Transport payload bytes per the headers (UDP, ICMP, others).
    Other {
        orig_payload: u64,
        resp_payload: u64,
        /// A UDP flow's QUIC reader while the client's hello is incomplete.
        quic: Option<Box<QuicConn>>,
    },
}

/// A copy without the QUIC reader (see [`Flow::snapshot`]).
impl Clone for L4 {
    fn clone(&self) -> Self {
        match self {
            L4::Tcp(tcp) => L4::Tcp(tcp.clone()),
            L4::Other {
                orig_payload,
                resp_payload,
                ..
            } => L4::Other {
                orig_payload: *orig_payload,
                resp_payload: *resp_payload,
                quic: None,
            },
        }
    }
}

static NO_TCP: TcpState = TcpState::NEW;

#[derive(Debug)]
pub struct Flow {
    pub uid: Uid,
    pub first_ns: u64,
    pub last_ns: u64,
    pub orig_pkts: u64,
    pub resp_pkts: u64,
    /// Sum of IP total lengths (Zeek's orig_ip_bytes): right even for sliced captures.
    pub orig_ip_bytes: u64,
    pub resp_ip_bytes: u64,
    /// Sum of frame lengths on the wire, as tshark's conversation table counts.
    pub orig_wire_bytes: u64,
    pub resp_wire_bytes: u64,
    /// Event time of the last interim update (or of the start).
    last_update_ns: u64,
    /// The originator (Zeek's orig) first: the side that sent first, or sent the SYN.
    endpoints: Endpoints,
    /// Shared with every flow carrying the same names (see `NameSets`).
    names: Option<Arc<FlowNames>>,
    /// Application inspection, while it runs (TCP only).
    app: Option<Box<AppState>>,
    l4: L4,
    generation: u32,
    pub proto: u8,
    pub services: u8,
    queue: QueueClass,
    marks: u8,
}

impl Flow {
    /// The originator (Zeek's orig): the side that sent first, or sent the SYN.
    pub fn orig(&self) -> (IpAddr, u16) {
        self.endpoints.orig()
    }

    pub fn resp(&self) -> (IpAddr, u16) {
        self.endpoints.resp()
    }

    /// Zeek's TCP state; a fresh one for flows of other protocols.
    pub fn tcp(&self) -> &TcpState {
        match &self.l4 {
            L4::Tcp(tcp) => tcp,
            L4::Other { .. } => &NO_TCP,
        }
    }

    /// Transport payload bytes (orig, resp) as Zeek's conn.log counts them: from sequence
    /// numbers for TCP, from the headers otherwise.
    pub fn payload_bytes(&self) -> (u64, u64) {
        match &self.l4 {
            L4::Tcp(tcp) => (tcp.orig_bytes(), tcp.resp_bytes()),
            L4::Other {
                orig_payload,
                resp_payload,
                ..
            } => (*orig_payload, *resp_payload),
        }
    }

    pub fn names(&self) -> Option<&FlowNames> {
        self.names.as_deref()
    }

    /// A copy to hand to another thread: everything but the reassembly state.
    pub fn snapshot(&self) -> Flow {
        Flow {
            names: self.names.clone(),
            app: None,
            l4: self.l4.clone(),
            endpoints: self.endpoints.clone(),
            ..*self
        }
    }

    /// The flow's own names (copied first if shared with other flows).
    pub(crate) fn names_mut(&mut self) -> &mut FlowNames {
        Arc::make_mut(self.names.get_or_insert_with(Default::default))
    }

    fn hash(&self, hasher: &PairHasher) -> u64 {
        hasher.hash(&self.endpoints.probe(), self.proto)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueueClass {
    TcpOpen = 0,
    TcpClosed = 1,
    Udp = 2,
    Other = 3,
}

/// A flow's place in an expiry queue: current while the slot holds the same generation and
/// the flow is in this queue; `ts_ns` is the last-seen time it was queued with. Ordered by
/// time first: the earliest entry is the next to time out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct QueueEntry {
    ts_ns: u64,
    slot: u32,
    generation: u32,
}

/// Expiry entries, earliest first. A flow seen again after it was queued is queued anew
/// with its later time, which may be earlier than entries queued since: a FIFO would hold it
/// back behind them, so expiry would depend on what else shares the table (and on how the
/// sharded pipeline split the flows). A heap keeps expiry exact.
#[derive(Debug, Default)]
struct ExpiryQueue(std::collections::BinaryHeap<std::cmp::Reverse<QueueEntry>>);

impl ExpiryQueue {
    fn push(&mut self, entry: QueueEntry) {
        self.0.push(std::cmp::Reverse(entry));
    }

    fn peek(&self) -> Option<&QueueEntry> {
        self.0.peek().map(|e| &e.0)
    }

    fn pop(&mut self) -> Option<QueueEntry> {
        self.0.pop().map(|e| e.0)
    }
}

#[derive(Debug)]
enum Slot {
    /// `generation` is the next flow's, so stale queue entries never match it.
    Free {
        generation: u32,
    },
    Used(Flow),
}

/// Counters of the table's own work.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowCounters {
    pub flows_created: u64,
    pub flows_evicted: u64,
    pub interim_updates: u64,
    /// A SYN on a 4-tuple whose connection had ended: the old flow ends, a new one starts.
    pub connections_reused: u64,
}

/// Name sets shared between flows: most names (a CDN's SNI, a resolved name) are carried by
/// many flows at once, so each flow holds a pointer instead of its own copy.
#[derive(Default)]
struct NameSets {
    sets: FxHashSet<Arc<FlowNames>>,
    /// Sets no flow holds any more are dropped when the table reaches this size.
    prune_at: usize,
}

/// Unused name sets may pile up to twice the live ones, plus this many.
const MIN_NAME_SETS_BEFORE_PRUNE: usize = 1024;

impl NameSets {
    fn intern(&mut self, names: FlowNames) -> Arc<FlowNames> {
        if let Some(shared) = self.sets.get(&names) {
            return shared.clone();
        }
        if self.sets.len() >= self.prune_at {
            self.sets.retain(|set| Arc::strong_count(set) > 1);
            self.prune_at = (2 * self.sets.len()).max(MIN_NAME_SETS_BEFORE_PRUNE);
        }
        let shared = Arc::new(names);
        self.sets.insert(shared.clone());
        shared
    }

    /// Sets one name of a flow's set (once: later values are ignored), sharing the result.
    fn set(&mut self, names: &mut Option<Arc<FlowNames>>, field: NameField, value: &str) {
        if names.as_deref().is_some_and(|n| field.of(n).is_some()) {
            return;
        }
        let mut new = names.as_deref().cloned().unwrap_or_default();
        *field.of_mut(&mut new) = Some(value.into());
        *names = Some(self.intern(new));
    }
}

/// The names a flow's own traffic gives (the DNS name comes from the cache at creation).
#[derive(Debug, Clone, Copy)]
enum NameField {
    Sni,
    HttpHost,
    ConnectTarget,
    SocksTarget,
}

impl NameField {
    fn of(self, n: &FlowNames) -> &Option<Box<str>> {
        match self {
            NameField::Sni => &n.sni,
            NameField::HttpHost => &n.http_host,
            NameField::ConnectTarget => &n.connect_target,
            NameField::SocksTarget => &n.socks_target,
        }
    }

    fn of_mut(self, n: &mut FlowNames) -> &mut Option<Box<str>> {
        match self {
            NameField::Sni => &mut n.sni,
            NameField::HttpHost => &mut n.http_host,
            NameField::ConnectTarget => &mut n.connect_target,
            NameField::SocksTarget => &mut n.socks_target,
        }
    }
}

pub struct FlowTable {
    config: FlowConfig,
    max_pending_bytes: usize,
    index: HashTable<u32>,
    hasher: PairHasher,
    /// The slot last found for each `hash & (len - 1)`: a guess that the frame's flow is checked
    /// against before the index is searched, and that `look_ahead` loads early. A stale hint
    /// costs one comparison (a used slot holds the one flow of its key).
    hints: Vec<u32>,
    /// The hash of the next frame's flow, from the last `look_ahead`.
    next_hash: Option<u64>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    queues: [ExpiryQueue; 4],
    next_uid: u64,
    events: Vec<AppEvent>,
    names: NameSets,
    pub counters: FlowCounters,
}

/// Hints start at 16 KiB and keep at least two entries per flow, so that flows seldom share one.
const MIN_HINTS: usize = 4096;
const HINTS_PER_FLOW: usize = 2;
const NO_HINT: u32 = u32::MAX;

fn hint_at(hints: &[u32], hash: u64) -> usize {
    // The index uses the hash's low bits for buckets; the high ones spread the hints.
    (hash >> 32) as usize & (hints.len() - 1)
}

fn used(slots: &[Slot], slot: u32) -> Option<&Flow> {
    match slots.get(slot as usize) {
        Some(Slot::Used(flow)) => Some(flow),
        _ => None,
    }
}

fn used_mut(slots: &mut [Slot], slot: u32) -> Option<&mut Flow> {
    match slots.get_mut(slot as usize) {
        Some(Slot::Used(flow)) => Some(flow),
        _ => None,
    }
}

impl FlowTable {
    pub fn new(config: FlowConfig, max_pending_bytes: usize) -> FlowTable {
        FlowTable {
            config,
            max_pending_bytes,
            index: HashTable::new(),
            hasher: PairHasher::new(),
            hints: vec![NO_HINT; MIN_HINTS],
            next_hash: None,
            slots: Vec::new(),
            free: Vec::new(),
            queues: Default::default(),
            next_uid: 0,
            events: Vec::new(),
            names: NameSets::default(),
            counters: FlowCounters::default(),
        }
    }

    /// The uid the next new flow gets. Callers that number flows by frame (so uids do not
    /// depend on how frames were spread over shards) set it before each frame.
    pub fn set_next_uid(&mut self, uid: u64) {
        self.next_uid = uid;
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn timeout_ns(&self, class: QueueClass) -> u64 {
        NS * match class {
            QueueClass::TcpOpen => self.config.tcp_idle_timeout_seconds,
            QueueClass::TcpClosed => self.config.tcp_closed_timeout_seconds,
            QueueClass::Udp => self.config.udp_idle_timeout_seconds,
            QueueClass::Other => self.config.other_idle_timeout_seconds,
        }
    }

    /// The slot of the flow this packet belongs to, if tracked, and whether the packet comes
    /// from its originator.
    fn find(&mut self, hash: u64, probe: &Probe, proto: u8) -> Option<(u32, bool)> {
        let slots = &self.slots;
        let direction = |slot| {
            used(slots, slot)
                .filter(|f| f.proto == proto)
                .and_then(|f| f.endpoints.direction(probe))
        };
        if let Some(&slot) = self.hints.get(hint_at(&self.hints, hash))
            && let Some(from_orig) = direction(slot)
        {
            return Some((slot, from_orig));
        }
        let mut from_orig = true;
        let slot = *self.index.find(hash, |&slot| {
            let dir = direction(slot);
            from_orig = dir.unwrap_or(true);
            dir.is_some()
        })?;
        self.set_hint(hash, slot);
        Some((slot, from_orig))
    }

    fn set_hint(&mut self, hash: u64, slot: u32) {
        let hint = hint_at(&self.hints, hash);
        if let Some(entry) = self.hints.get_mut(hint) {
            *entry = slot;
        }
    }

    /// Starts loading the flow state of the coming frames: call once per frame, before
    /// [`FlowTable::packet`], with the flow of the frame two ahead if known (see
    /// [`Probe::guess`]). Asks the CPU for that frame's hint, and for the slot of the next
    /// frame, whose hint the previous call asked for; both are near when their turn comes.
    /// Only hints to the CPU: a wrong or missing flow costs the work of asking.
    #[inline]
    pub fn look_ahead(&mut self, two_ahead: Option<(Probe, u8)>) {
        if let Some(hash) = self.next_hash.take()
            && let Some(&slot) = self.hints.get(hint_at(&self.hints, hash))
            && let Some(entry) = self.slots.get(slot as usize)
        {
            mem_prefetch::prefetch_read_data::<_, 3>(entry);
        }
        if let Some((probe, proto)) = two_ahead {
            let hash = self.hasher.hash(&probe, proto);
            if let Some(hint) = self.hints.get(hint_at(&self.hints, hash)) {
                mem_prefetch::prefetch_read_data::<_, 3>(hint);
            }
            self.next_hash = Some(hash);
        }
    }

    /// Accounts one transport layer of a frame. `wire_len` is the frame's length on the wire.
    pub fn packet(
        &mut self,
        ts_ns: u64,
        wire_len: u32,
        t: &Transport<'_>,
        sink: &mut dyn FlowSink,
    ) {
        let probe = Probe::new((t.src, t.sport), (t.dst, t.dport));
        let hash = self.hasher.hash(&probe, t.proto);
        let (slot, from_orig) = match self.find(hash, &probe, t.proto) {
            Some((slot, _)) if self.is_reuse(slot, t) => {
                // A new connection on the same 4-tuple (Zeek's connection reuse): the old
                // one ends here and the SYN opens a new flow with a new uid.
                self.counters.connections_reused += 1;
                self.remove(slot, sink);
                self.create(hash, ts_ns, t, sink)
            }
            Some(found) => found,
            None => self.create(hash, ts_ns, t, sink),
        };
        let Some(flow) = used_mut(&mut self.slots, slot) else {
            return;
        };
        flow.last_ns = flow.last_ns.max(ts_ns);
        let payload_len = u64::from(t.payload_len);
        if from_orig {
            flow.orig_pkts += 1;
            flow.orig_ip_bytes += u64::from(t.ip_len);
            flow.orig_wire_bytes += u64::from(wire_len);
        } else {
            flow.resp_pkts += 1;
            flow.resp_ip_bytes += u64::from(t.ip_len);
            flow.resp_wire_bytes += u64::from(wire_len);
        }

        match &mut flow.l4 {
            L4::Tcp(tcp) => {
                tcp.observe(from_orig, t.tcp_flags, t.seq, t.ack, t.payload_len);
                if t.tcp_flags & flags::FIN != 0 {
                    flow.marks |= if from_orig {
                        mark::FIN_ORIG
                    } else {
                        mark::FIN_RESP
                    };
                }
                let both_fins = mark::FIN_ORIG | mark::FIN_RESP;
                let ends = t.tcp_flags & flags::RST != 0 || flow.marks & both_fins == both_fins;
                if ends && flow.marks & mark::CLOSED == 0 {
                    flow.marks |= mark::CLOSED;
                    flow.queue = QueueClass::TcpClosed;
                    queue(&mut self.queues, QueueClass::TcpClosed as usize).push(QueueEntry {
                        slot,
                        generation: flow.generation,
                        ts_ns: flow.last_ns,
                    });
                }
                if let Some(app) = flow.app.as_mut() {
                    let syn = t.tcp_flags & flags::SYN != 0;
                    app.tcp_segment(
                        from_orig,
                        t.seq,
                        syn,
                        t.payload,
                        t.payload_len,
                        self.max_pending_bytes,
                        &mut self.events,
                    );
                    if app.done() {
                        flow.app = None;
                    }
                }
            }
            L4::Other {
                orig_payload,
                resp_payload,
                quic,
            } => {
                if from_orig {
                    *orig_payload += payload_len;
                } else {
                    *resp_payload += payload_len;
                }
                if t.proto == ip_proto::UDP {
                    if DNS_PORTS.contains(&t.sport) || DNS_PORTS.contains(&t.dport) {
                        if let Ok(msg) = dns::parse_message(t.payload) {
                            self.events.push(AppEvent::Dns { from_orig, msg });
                        }
                    } else if let Some(conn) = quic.as_deref_mut() {
                        if let Some(info) = conn.datagram(from_orig, t.payload) {
                            self.events.push(AppEvent::Quic(info));
                            *quic = None;
                        }
                    } else if from_orig
                        && flow.orig_pkts <= QUIC_PROBE_PACKETS
                        && flow.services & service::QUIC == 0
                        && let Some((conn, info)) =
                            QuicConn::start(t.payload, self.config.quic_limits())
                    {
                        match info {
                            Some(info) => self.events.push(AppEvent::Quic(info)),
                            None => *quic = Some(Box::new(conn)),
                        }
                    } else if flow.orig_pkts + flow.resp_pkts <= BITTORRENT_PROBE_PACKETS
                        && flow.services & service::BITTORRENT == 0
                        && (bittorrent::is_dht_message(t.payload)
                            || bittorrent::is_utp_packet(t.payload))
                    {
                        self.events.push(AppEvent::BitTorrent);
                    }
                }
            }
        }

        let active_due =
            ts_ns.saturating_sub(flow.last_update_ns) >= self.config.active_timeout_seconds * NS;
        self.apply_events(slot, ts_ns, sink);
        if active_due && let Some(flow) = used_mut(&mut self.slots, slot) {
            flow.last_update_ns = ts_ns;
            flow.marks |= mark::UPDATED;
            self.counters.interim_updates += 1;
            sink.flow(flow, UpdateKind::Interim);
        }
    }

    fn is_reuse(&self, slot: u32, t: &Transport<'_>) -> bool {
        t.proto == ip_proto::TCP
            && used(&self.slots, slot).is_some_and(|flow| flow.tcp().is_reuse(t.tcp_flags, t.seq))
    }

    fn apply_events(&mut self, slot: u32, ts_ns: u64, sink: &mut dyn FlowSink) {
        if self.events.is_empty() {
            return;
        }
        let Some(flow) = used_mut(&mut self.slots, slot) else {
            return;
        };
        Self::apply(&mut self.events, &mut self.names, flow, ts_ns, sink);
    }

    /// Events of a flow already out of the table (it is ending).
    fn apply_to(&mut self, flow: &mut Flow, ts_ns: u64, sink: &mut dyn FlowSink) {
        Self::apply(&mut self.events, &mut self.names, flow, ts_ns, sink);
    }

    fn apply(
        events: &mut Vec<AppEvent>,
        names: &mut NameSets,
        flow: &mut Flow,
        ts_ns: u64,
        sink: &mut dyn FlowSink,
    ) {
        for event in events.drain(..) {
            match event {
                AppEvent::Dns { from_orig, msg } => {
                    flow.services |= service::DNS;
                    sink.dns(flow, ts_ns, from_orig, &msg);
                }
                AppEvent::Tls(hello) => {
                    flow.services |= service::SSL;
                    if let Some(sni) = &hello.sni {
                        names.set(&mut flow.names, NameField::Sni, sni);
                    }
                    sink.tls(flow, ts_ns, &hello);
                }
                AppEvent::TlsServer(info) => sink.tls_server(flow, ts_ns, &info),
                AppEvent::Http(request) => {
                    flow.services |= service::HTTP;
                    if request.method.eq_ignore_ascii_case("CONNECT") {
                        names.set(&mut flow.names, NameField::ConnectTarget, &request.uri);
                    } else if let Some(host) = &request.host {
                        names.set(&mut flow.names, NameField::HttpHost, host);
                    }
                    sink.http(flow, ts_ns, &request);
                }
                AppEvent::Socks(request) => {
                    flow.services |= service::SOCKS;
                    names.set(&mut flow.names, NameField::SocksTarget, &request.target);
                    sink.socks(flow, ts_ns, &request);
                }
                AppEvent::BitTorrent => flow.services |= service::BITTORRENT,
                AppEvent::Quic(info) => {
                    flow.services |= service::QUIC;
                    if matches!(info.hello, Some(Hello::Tls(_))) {
                        flow.services |= service::SSL;
                    }
                    if let Some(sni) = info.sni() {
                        names.set(&mut flow.names, NameField::Sni, sni);
                    }
                    sink.quic(flow, ts_ns, &info);
                }
            }
        }
    }

    fn create(
        &mut self,
        hash: u64,
        ts_ns: u64,
        t: &Transport<'_>,
        sink: &mut dyn FlowSink,
    ) -> (u32, bool) {
        if self.index.len() >= self.config.max_flows {
            self.evict_oldest(sink);
        }
        // A connection first seen at its SYN-ACK was opened by the other side.
        let flipped =
            t.proto == ip_proto::TCP && tcp_state::first_packet_is_from_responder(t.tcp_flags);
        let (orig, resp) = if flipped {
            ((t.dst, t.dport), (t.src, t.sport))
        } else {
            ((t.src, t.sport), (t.dst, t.dport))
        };
        let class = match t.proto {
            ip_proto::TCP => QueueClass::TcpOpen,
            ip_proto::UDP => QueueClass::Udp,
            _ => QueueClass::Other,
        };
        let (slot, generation) = match self.free.pop() {
            Some(slot) => match self.slots.get(slot as usize) {
                Some(&Slot::Free { generation }) => (slot, generation),
                _ => (slot, 0),
            },
            None => {
                self.slots.push(Slot::Free { generation: 0 });
                ((self.slots.len() - 1) as u32, 0)
            }
        };
        let dns_name = sink.resolved_name(Uid(self.next_uid), orig.0, resp, ts_ns);
        let (l4, app) = if t.proto == ip_proto::TCP {
            let mut tcp = TcpState::default();
            if flipped {
                tcp.record_flip();
            }
            let app = Box::new(AppState::new(t.sport == 53 || t.dport == 53));
            (L4::Tcp(tcp), Some(app))
        } else {
            let payload = L4::Other {
                orig_payload: 0,
                resp_payload: 0,
                quic: None,
            };
            (payload, None)
        };
        let flow = Flow {
            uid: Uid(self.next_uid),
            first_ns: ts_ns,
            last_ns: ts_ns,
            orig_pkts: 0,
            resp_pkts: 0,
            orig_ip_bytes: 0,
            resp_ip_bytes: 0,
            orig_wire_bytes: 0,
            resp_wire_bytes: 0,
            last_update_ns: ts_ns,
            endpoints: Endpoints::new(orig, resp),
            names: dns_name.map(|name| {
                self.names.intern(FlowNames {
                    dns_name: Some(name),
                    ..FlowNames::default()
                })
            }),
            app,
            l4,
            generation,
            proto: t.proto,
            services: 0,
            queue: class,
            marks: 0,
        };
        self.next_uid += 1;
        self.counters.flows_created += 1;
        if let Some(entry) = self.slots.get_mut(slot as usize) {
            *entry = Slot::Used(flow);
        }
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index.insert_unique(hash, slot, |&s| {
            used(slots, s).map_or(0, |f| f.hash(hasher))
        });
        if self.index.len() * HINTS_PER_FLOW > self.hints.len() {
            // Hints are only guesses: the grown table starts empty.
            self.hints = vec![NO_HINT; self.hints.len() * 2];
        }
        self.set_hint(hash, slot);
        queue(&mut self.queues, class as usize).push(QueueEntry {
            slot,
            generation,
            ts_ns,
        });
        (slot, (t.src, t.sport) == orig)
    }

    fn remove(&mut self, slot: u32, sink: &mut dyn FlowSink) {
        let Some(flow) = self.take(slot, sink) else {
            return;
        };
        if let Ok(found) = self
            .index
            .find_entry(flow.hash(&self.hasher), |&s| s == slot)
        {
            found.remove();
        }
        self.free.push(slot);
        sink.flow(&flow, UpdateKind::Final);
    }

    /// Frees the slot and returns its flow, its QUIC reader's last report made.
    fn take(&mut self, slot: u32, sink: &mut dyn FlowSink) -> Option<Flow> {
        let entry = self.slots.get_mut(slot as usize)?;
        let generation = match entry {
            Slot::Used(flow) => flow.generation.wrapping_add(1),
            Slot::Free { .. } => return None,
        };
        let Slot::Used(mut flow) = std::mem::replace(entry, Slot::Free { generation }) else {
            return None;
        };
        // A QUIC reader still waiting for its hello reports the connection before it ends.
        if let L4::Other { quic, .. } = &mut flow.l4
            && let Some(mut conn) = quic.take()
        {
            self.events.push(AppEvent::Quic(conn.flow_ended()));
            let ts_ns = flow.last_ns;
            self.apply_to(&mut flow, ts_ns, sink);
        }
        Some(flow)
    }

    /// Is this queue entry the flow's current one? Returns the flow's last-seen time if so.
    fn entry_state(&self, class: usize, entry: &QueueEntry) -> Option<u64> {
        let flow = used(&self.slots, entry.slot)?;
        (flow.generation == entry.generation && flow.queue as usize == class)
            .then_some(flow.last_ns)
    }

    /// Ends flows idle past their timeout at event time `now_ns`.
    pub fn expire(&mut self, now_ns: u64, sink: &mut dyn FlowSink) {
        for class in 0..4 {
            let timeout = self.timeout_ns(match class {
                0 => QueueClass::TcpOpen,
                1 => QueueClass::TcpClosed,
                2 => QueueClass::Udp,
                _ => QueueClass::Other,
            });
            while let Some(entry) = queue(&mut self.queues, class).peek().copied() {
                if entry.ts_ns.saturating_add(timeout) > now_ns {
                    break;
                }
                queue(&mut self.queues, class).pop();
                match self.entry_state(class, &entry) {
                    None => {}
                    Some(last_ns) if last_ns.saturating_add(timeout) > now_ns => {
                        self.requeue(class, entry.slot, last_ns);
                    }
                    Some(_) => self.remove(entry.slot, sink),
                }
            }
        }
    }

    fn requeue(&mut self, class: usize, slot: u32, last_ns: u64) {
        if let Some(flow) = used(&self.slots, slot) {
            let generation = flow.generation;
            queue(&mut self.queues, class).push(QueueEntry {
                slot,
                generation,
                ts_ns: last_ns,
            });
        }
    }

    /// Evicts the least recently seen flow (counted).
    fn evict_oldest(&mut self, sink: &mut dyn FlowSink) {
        loop {
            // The queue whose front was queued earliest holds the best candidate.
            let class = (0..4)
                .filter_map(|c| self.queues.get(c)?.peek().map(|e| (e.ts_ns, c)))
                .min()
                .map(|(_, c)| c);
            let Some(class) = class else { return };
            let Some(entry) = queue(&mut self.queues, class).pop() else {
                return;
            };
            match self.entry_state(class, &entry) {
                None => continue,
                Some(last_ns) if last_ns > entry.ts_ns => self.requeue(class, entry.slot, last_ns),
                Some(_) => {
                    self.counters.flows_evicted += 1;
                    self.remove(entry.slot, sink);
                    return;
                }
            }
        }
    }

    /// Reports every flow with packets since its last update (an interim update), so counters
    /// up to now are known before a detection window closes. O(flows), once per window.
    pub fn checkpoint(&mut self, sink: &mut dyn FlowSink) {
        for slot in &mut self.slots {
            let Slot::Used(flow) = slot else { continue };
            if flow.marks & mark::UPDATED == 0 || flow.last_ns > flow.last_update_ns {
                flow.marks |= mark::UPDATED;
                flow.last_update_ns = flow.last_ns;
                self.counters.interim_updates += 1;
                sink.flow(flow, UpdateKind::Interim);
            }
        }
    }

    /// Ends every flow (end of input), oldest first so output order is deterministic.
    pub fn flush(&mut self, sink: &mut dyn FlowSink) {
        // (first_ns, slot): 16 bytes a flow at peak memory; uids break the rare ties.
        let mut live: Vec<(u64, u32)> = (0..self.slots.len() as u32)
            .filter_map(|s| used(&self.slots, s).map(|f| (f.first_ns, s)))
            .collect();
        let slots = &self.slots;
        let uid = |s: u32| used(slots, s).map(|f| f.uid);
        live.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| uid(a.1).cmp(&uid(b.1))));
        // Nothing is looked up or expired from here on, and the detectors are about to
        // record every ended flow at once (a run's peak memory): free the lookup and expiry
        // structures first, and the slots after.
        self.index = HashTable::new();
        self.hints = vec![NO_HINT; MIN_HINTS];
        self.queues = Default::default();
        self.free = Vec::new();
        for (_, slot) in live {
            if let Some(flow) = self.take(slot, sink) {
                sink.flow(&flow, UpdateKind::Final);
            }
        }
        self.slots = Vec::new();
    }
}

/// The expiry queue of a class (a `QueueClass` as a number).
fn queue(queues: &mut [ExpiryQueue; 4], class: usize) -> &mut ExpiryQueue {
    let [tcp_open, tcp_closed, udp, other] = queues;
    match class {
        0 => tcp_open,
        1 => tcp_closed,
        2 => udp,
        _ => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::dns::DnsMessage;
    use crate::decode::http::RequestHead;
    use crate::decode::socks::SocksRequest;
    use crate::decode::tls::ClientHelloInfo;
    use std::sync::Arc;

    /// Records each final flow as (uid, history, orig_pkts).
    #[derive(Default)]
    struct Finals(Vec<(Uid, String, u64)>);

    impl FlowSink for Finals {
        fn resolved_name(
            &mut self,
            _: Uid,
            _: IpAddr,
            _: (IpAddr, u16),
            _: u64,
        ) -> Option<Arc<str>> {
            None
        }
        fn flow(&mut self, flow: &Flow, kind: UpdateKind) {
            if kind == UpdateKind::Final {
                self.0
                    .push((flow.uid, flow.tcp().history(), flow.orig_pkts));
            }
        }
        fn dns(&mut self, _: &Flow, _: u64, _: bool, _: &DnsMessage) {}
        fn tls(&mut self, _: &Flow, _: u64, _: &ClientHelloInfo) {}
        fn tls_server(&mut self, _: &Flow, _: u64, _: &crate::decode::tls::ServerInfo) {}
        fn http(&mut self, _: &Flow, _: u64, _: &RequestHead) {}
        fn socks(&mut self, _: &Flow, _: u64, _: &SocksRequest) {}
        fn quic(&mut self, _: &Flow, _: u64, _: &crate::decode::quic::QuicInfo) {}
    }

    /// A header-only packet between `client` and `server`, in the direction asked for.
    fn between(
        client: (IpAddr, u16),
        server: (IpAddr, u16),
        from_client: bool,
        proto: u8,
    ) -> Transport<'static> {
        let ((src, sport), (dst, dport)) = if from_client {
            (client, server)
        } else {
            (server, client)
        };
        Transport {
            src,
            dst,
            proto,
            sport,
            dport,
            ip_len: 40,
            tcp_flags: 0,
            seq: 0,
            ack: 0,
            window: 0,
            payload: &[],
            payload_len: 0,
        }
    }

    fn segment(from_client: bool, tcp_flags: u8, seq: u32, ack: u32) -> Transport<'static> {
        let client = (IpAddr::from([10, 0, 0, 1]), 40000);
        let server = (IpAddr::from([192, 0, 2, 1]), 80);
        Transport {
            tcp_flags,
            seq,
            ack,
            window: 1024,
            ..between(client, server, from_client, ip_proto::TCP)
        }
    }

    #[test]
    fn syn_after_close_on_the_same_tuple_starts_a_new_flow() {
        use flags::{ACK, FIN, SYN};
        let mut table = FlowTable::new(FlowConfig::default(), 1 << 16);
        let mut sink = Finals::default();
        let (c, s) = (1000, 5000);
        let first = [
            (true, SYN, c, 0),
            (false, SYN | ACK, s, c + 1),
            (true, ACK, c + 1, s + 1),
            (true, FIN | ACK, c + 1, s + 1),
            (false, FIN | ACK, s + 1, c + 2),
            (true, ACK, c + 2, s + 2),
        ];
        let second = [
            (true, SYN, c + 90_000, 0),
            (false, SYN | ACK, s + 7, c + 90_001),
        ];
        let mut ts = 1_000_000_000;
        for (from_client, f, seq, ack) in first.into_iter().chain(second) {
            table.packet(ts, 54, &segment(from_client, f, seq, ack), &mut sink);
            ts += 1_000_000;
        }
        assert_eq!(table.counters.connections_reused, 1);
        assert_eq!(sink.0, vec![(Uid(0), "ShAFf".to_string(), 4)]);
        table.flush(&mut sink);
        assert_eq!(sink.0[1], (Uid(1), "Sh".to_string(), 1));
    }

    #[test]
    fn retransmitted_syn_stays_in_its_flow() {
        use flags::SYN;
        let mut table = FlowTable::new(FlowConfig::default(), 1 << 16);
        let mut sink = Finals::default();
        table.packet(1, 54, &segment(true, SYN, 7, 0), &mut sink);
        table.packet(2, 54, &segment(true, SYN, 7, 0), &mut sink);
        table.flush(&mut sink);
        assert_eq!(table.counters.connections_reused, 0);
        assert_eq!(sink.0.len(), 1);
        assert_eq!(sink.0[0].2, 2);
    }

    /// End of input is the run's memory peak, since the detectors then record every flow at
    /// once: the flush must hand back the table's own memory, still end the flows oldest
    /// first, and leave a table that takes new flows.
    #[test]
    fn flush_ends_flows_oldest_first_and_frees_the_table() {
        let mut table = FlowTable::new(FlowConfig::default(), 1 << 16);
        let mut sink = Finals::default();
        let second = 1_000_000_000;
        // 1,000 flows that expire free their slots; the next 1,500 flows take them back
        // newest slot first, then new ones: slot order and age disagree.
        for n in 0..1_000u32 {
            table.packet(u64::from(n) + 1, 74, &datagram(n, true), &mut sink);
        }
        table.expire(3_600 * second, &mut sink);
        assert_eq!(sink.0.len(), 1_000);
        for n in 1_000..2_500u32 {
            table.packet(
                3_600 * second + u64::from(n),
                74,
                &datagram(n, true),
                &mut sink,
            );
        }
        table.flush(&mut sink);
        let uids: Vec<u64> = sink.0[1_000..].iter().map(|(uid, _, _)| uid.0).collect();
        assert_eq!(uids, (1_000..2_500).collect::<Vec<u64>>());
        assert_eq!(table.len(), 0);
        assert_eq!(table.slots.capacity(), 0);
        assert_eq!(table.free.capacity(), 0);
        assert!(table.index.capacity() < 64);
        assert_eq!(table.hints.len(), MIN_HINTS);
        assert!(table.queues.iter().all(|q| q.0.capacity() == 0));

        table.packet(7_200 * second, 74, &datagram(1, true), &mut sink);
        table.packet(7_200 * second + 1, 74, &datagram(1, false), &mut sink);
        assert_eq!(table.len(), 1);
        table.flush(&mut sink);
        let last = sink.0.last().map(|(uid, _, pkts)| (uid.0, *pkts));
        assert_eq!(last, Some((2_500, 1)));
    }

    /// One UDP packet of flow `n` (of many), from its client or its server.
    fn datagram(n: u32, from_client: bool) -> Transport<'static> {
        let client = (IpAddr::from((0x0a00_0000 | n).to_be_bytes()), 40000);
        let server = (IpAddr::from([192, 0, 2, 1]), 53);
        Transport {
            ip_len: 60,
            payload_len: 32,
            ..between(client, server, from_client, ip_proto::UDP)
        }
    }

    /// 20,000 flows share the hints (which start at 4,096) and, at `max_flows` 1,000, their
    /// slots are reused all the time; the look-ahead is also told of flows that never come.
    /// A hint that points at another flow must cost only a lookup, never a misplaced packet.
    #[test]
    fn shared_and_stale_hints_never_misplace_a_packet() {
        let (flows, rounds) = (20_000u32, 3u64);
        for max_flows in [1_000, 1_000_000] {
            let config = FlowConfig {
                max_flows,
                ..FlowConfig::default()
            };
            let mut table = FlowTable::new(config, 1 << 16);
            let mut sink = Finals::default();
            let mut ts = 1;
            for _ in 0..rounds {
                for n in 0..flows {
                    for from_client in [true, false] {
                        let wrong = datagram(n.wrapping_mul(7919) % flows, from_client);
                        let probe = Probe::new((wrong.src, wrong.sport), (wrong.dst, wrong.dport));
                        table.look_ahead(Some((probe, ip_proto::UDP)));
                        table.packet(ts, 74, &datagram(n, from_client), &mut sink);
                        ts += 1_000;
                    }
                }
            }
            table.flush(&mut sink);
            // Each flow lives through all rounds, or (evicted between its rounds) one per round.
            let (created, per_flow) = if max_flows > flows as usize {
                (u64::from(flows), rounds)
            } else {
                (u64::from(flows) * rounds, 1)
            };
            assert_eq!(
                table.counters.flows_created, created,
                "max_flows {max_flows}"
            );
            assert_eq!(sink.0.len() as u64, created);
            assert!(
                sink.0
                    .iter()
                    .all(|(_, _, orig_pkts)| *orig_pkts == per_flow),
                "max_flows {max_flows}: a packet went to the wrong flow"
            );
        }
    }

    /// Bytes one flow costs the table at most, without its optional parts (IPv6 endpoints,
    /// TCP cold part, inspection state, name sets): its slot, its index bucket (hashbrown
    /// keeps at least 7/16 of the buckets full after growing), its queue entry, twice
    /// over for a queue that just doubled, and its hints (up to twice `HINTS_PER_FLOW`, just
    /// after they doubled).
    const FIXED_BYTES_PER_FLOW: usize = 248;

    #[test]
    fn memory_per_flow_stays_in_budget() {
        use std::mem::size_of;
        assert_eq!(
            size_of::<Slot>(),
            size_of::<Flow>(),
            "free slots cost nothing more"
        );
        assert!(size_of::<Flow>() <= 184, "Flow grew: {}", size_of::<Flow>());
        assert!(size_of::<TcpState>() <= 64);
        assert!(size_of::<L4>() <= size_of::<TcpState>());
        assert!(size_of::<Endpoints>() <= 16);
        assert!(size_of::<QueueEntry>() <= 16);
        assert!(size_of::<AppState>() <= 112);
        let index_bucket = (size_of::<u32>() + 1) * 16 / 7;
        let hints = 2 * HINTS_PER_FLOW * size_of::<u32>();
        let fixed = size_of::<Slot>() + index_bucket + 2 * size_of::<QueueEntry>() + hints;
        assert!(fixed <= FIXED_BYTES_PER_FLOW, "{fixed} bytes per flow");
    }

    /// Records nothing.
    struct Null;

    impl FlowSink for Null {
        fn resolved_name(
            &mut self,
            _: Uid,
            _: IpAddr,
            _: (IpAddr, u16),
            _: u64,
        ) -> Option<Arc<str>> {
            None
        }
        fn flow(&mut self, _: &Flow, _: UpdateKind) {}
        fn dns(&mut self, _: &Flow, _: u64, _: bool, _: &DnsMessage) {}
        fn tls(&mut self, _: &Flow, _: u64, _: &ClientHelloInfo) {}
        fn tls_server(&mut self, _: &Flow, _: u64, _: &crate::decode::tls::ServerInfo) {}
        fn http(&mut self, _: &Flow, _: u64, _: &RequestHead) {}
        fn socks(&mut self, _: &Flow, _: u64, _: &SocksRequest) {}
        fn quic(&mut self, _: &Flow, _: u64, _: &crate::decode::quic::QuicInfo) {}
    }

    /// An HTTP request from client port `port`, with no handshake (midstream flows are
    /// inspected too); returns the flow's slot.
    fn http_packet(table: &mut FlowTable, port: u16, host: &str) -> u32 {
        let payload = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes();
        let t = Transport {
            src: IpAddr::from([10, 0, 0, 1]),
            dst: IpAddr::from([192, 0, 2, 1]),
            proto: ip_proto::TCP,
            sport: port,
            dport: 80,
            ip_len: 40 + payload.len() as u32,
            tcp_flags: flags::ACK | flags::PSH,
            seq: 1000,
            ack: 1,
            window: 1024,
            payload: &payload,
            payload_len: payload.len() as u32,
        };
        table.packet(1_000_000_000, 54 + payload.len() as u32, &t, &mut Null);
        let probe = Probe::new((t.src, t.sport), (t.dst, t.dport));
        table
            .find(table.hasher.hash(&probe, t.proto), &probe, t.proto)
            .expect("flow tracked")
            .0
    }

    #[test]
    fn flows_carrying_the_same_names_share_one_set() {
        let mut table = FlowTable::new(FlowConfig::default(), 1 << 16);
        let a = http_packet(&mut table, 40000, "cdn.example.net");
        let b = http_packet(&mut table, 40001, "cdn.example.net");
        let c = http_packet(&mut table, 40002, "other.example.net");
        let names = |slot| {
            used(&table.slots, slot)
                .and_then(|f| f.names.clone())
                .unwrap()
        };
        assert_eq!(names(a).http_host.as_deref(), Some("cdn.example.net"));
        assert!(Arc::ptr_eq(&names(a), &names(b)));
        assert!(!Arc::ptr_eq(&names(a), &names(c)));
        assert_eq!(names(c).best(), Some("other.example.net"));

        // Sets no flow holds are dropped as new ones come: the sets stay bounded by the
        // live flows, not by every name ever seen.
        table.flush(&mut Null);
        for i in 0..5000u16 {
            http_packet(&mut table, 1000 + i, &format!("h{i}.example.org"));
            if i % 100 == 99 {
                table.flush(&mut Null);
            }
        }
        assert!(table.names.sets.len() <= 2 * 100 + MIN_NAME_SETS_BEFORE_PRUNE);
    }

    #[test]
    fn concurrent_scenario_flows_stay_live_with_inspection_done_or_idle() {
        use crate::decode::packet::{Decoded, Layer, decode_frame};
        let tmp = crate::testing::TempDir::new("flowmem");
        let pcap = tmp.path("c.pcap");
        let opts = crate::generate::GenerateOptions {
            scenario: crate::generate::Scenario::Concurrent,
            flows: 2000,
            ..Default::default()
        };
        crate::generate::generate(&opts, &pcap, None).unwrap();
        let data = std::fs::read(&pcap).unwrap();
        let (_, cap) = pcap_parser::pcap::parse_pcap(&data).unwrap();
        let mut table = FlowTable::new(FlowConfig::default(), 1 << 16);
        let mut decoded = Decoded::default();
        for b in &cap.blocks {
            decode_frame(1, b.data, &mut decoded);
            let ts = u64::from(b.ts_sec) * NS + u64::from(b.ts_usec) * 1000;
            for layer in &decoded.layers {
                if let Layer::Transport(t) = layer {
                    table.packet(ts, b.origlen, t, &mut Null);
                }
            }
            table.expire(ts, &mut Null);
        }
        assert_eq!(table.len(), 2000);
        assert_eq!(table.counters.flows_created, 2000);
        let flows: Vec<&Flow> = (0..table.slots.len() as u32)
            .filter_map(|s| used(&table.slots, s))
            .collect();
        let tcp: Vec<&&Flow> = flows.iter().filter(|f| f.proto == ip_proto::TCP).collect();
        assert!(
            tcp.iter()
                .all(|f| f.marks & mark::CLOSED == 0 && f.tcp().conn_state() == "S1")
        );
        // TLS sessions were established, so their inspection state is gone; HTTP keep-alive
        // connections are still inspected, between requests.
        let tls = tcp.iter().filter(|f| f.services == service::SSL).count();
        let http = tcp.iter().filter(|f| f.services == service::HTTP).count();
        assert_eq!(tls + http, tcp.len());
        assert!(tls > http && http > 0);
        for f in &tcp {
            assert_eq!(f.app.is_some(), f.services == service::HTTP);
            assert!(f.names.is_some());
            if let L4::Tcp(state) = &f.l4 {
                assert!(
                    state.cold_is_empty(),
                    "no cold TCP part for a plain session"
                );
            }
        }
        let idle_buffers = tcp
            .iter()
            .filter_map(|f| f.app.as_ref())
            .all(|app| app.buffers_released());
        assert!(idle_buffers);
        // 64 SNIs and 64 hosts in the scenario: the name sets are shared.
        assert!(table.names.sets.len() <= 128);
    }
}
