//! The flow table: one entry per bidirectional 5-tuple, in event time.
//!
//! Flows live in a slab indexed by a hash map. Each flow sits in exactly one expiry queue
//! (TCP open, TCP closed, UDP, other): every queue has one timeout, so its front is always the
//! next flow to expire, and a touched flow is re-queued lazily when it reaches the front.
//! When `max_flows` is reached the least recently seen flow is evicted and counted.
use super::app::{AppEvent, AppState};
use super::key::{FlowKey, Uid};
use super::tcp_state::{self, TcpState, flags};
use super::update::{FlowNames, FlowSink, UpdateKind, service};
use crate::config::FlowConfig;
use crate::decode::bittorrent;
use crate::decode::dns;
use crate::decode::packet::{Transport, ip_proto};
use rustc_hash::FxHashMap;
use std::net::IpAddr;

const NS: u64 = 1_000_000_000;
/// UDP datagrams per flow checked for BitTorrent DHT/uTP; peers reveal themselves at once.
const BITTORRENT_PROBE_PACKETS: u64 = 4;
const DNS_PORTS: [u16; 3] = [53, 5353, 5355];

#[derive(Debug)]
pub struct Flow {
    pub uid: Uid,
    pub proto: u8,
    /// The originator (Zeek's orig): the side that sent first, or sent the SYN.
    pub orig: (IpAddr, u16),
    pub resp: (IpAddr, u16),
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
    /// Transport payload bytes per the headers.
    pub orig_payload_bytes: u64,
    pub resp_payload_bytes: u64,
    pub tcp: TcpState,
    pub services: u8,
    pub names: Option<Box<FlowNames>>,
    app: Option<Box<AppState>>,
    /// Event time of the last interim update, and whether there was one.
    last_update_ns: u64,
    updated: bool,
    closed: bool,
    /// FIN seen from the originator (bit 0) and responder (bit 1).
    fins: u8,
    queue: QueueClass,
    queued_ns: u64,
    generation: u32,
}

impl Flow {
    pub fn names(&self) -> Option<&FlowNames> {
        self.names.as_deref()
    }

    /// A copy to hand to another thread: everything but the reassembly state.
    pub fn snapshot(&self) -> Flow {
        Flow {
            tcp: self.tcp.clone(),
            names: self.names.clone(),
            app: None,
            ..*self
        }
    }

    pub(crate) fn names_mut(&mut self) -> &mut FlowNames {
        self.names.get_or_insert_with(Box::default)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueueClass {
    TcpOpen = 0,
    TcpClosed = 1,
    Udp = 2,
    Other = 3,
}

/// Ordered by time first: the earliest entry is the next to time out.
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

    fn clear(&mut self) {
        self.0.clear();
    }
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

pub struct FlowTable {
    config: FlowConfig,
    max_pending_bytes: usize,
    index: FxHashMap<FlowKey, u32>,
    slots: Vec<Option<Flow>>,
    generations: Vec<u32>,
    free: Vec<u32>,
    queues: [ExpiryQueue; 4],
    next_uid: u64,
    events: Vec<AppEvent>,
    pub counters: FlowCounters,
}

impl FlowTable {
    pub fn new(config: FlowConfig, max_pending_bytes: usize) -> FlowTable {
        FlowTable {
            config,
            max_pending_bytes,
            index: FxHashMap::default(),
            slots: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            queues: Default::default(),
            next_uid: 0,
            events: Vec::new(),
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

    /// Accounts one transport layer of a frame. `wire_len` is the frame's length on the wire.
    pub fn packet(
        &mut self,
        ts_ns: u64,
        wire_len: u32,
        t: &Transport<'_>,
        sink: &mut dyn FlowSink,
    ) {
        let key = FlowKey::new((t.src, t.sport), (t.dst, t.dport), t.proto);
        let slot = match self.index.get(&key) {
            Some(&slot) if self.is_reuse(slot, t) => {
                // A new connection on the same 4-tuple (Zeek's connection reuse): the old
                // one ends here and the SYN opens a new flow with a new uid.
                self.counters.connections_reused += 1;
                self.remove(slot, sink);
                self.create(key, ts_ns, t, sink)
            }
            Some(&slot) => slot,
            None => self.create(key, ts_ns, t, sink),
        };
        let Some(Some(flow)) = self.slots.get_mut(slot as usize) else {
            return;
        };
        let from_orig = (t.src, t.sport) == flow.orig;
        flow.last_ns = flow.last_ns.max(ts_ns);
        if from_orig {
            flow.orig_pkts += 1;
            flow.orig_ip_bytes += u64::from(t.ip_len);
            flow.orig_wire_bytes += u64::from(wire_len);
            flow.orig_payload_bytes += u64::from(t.payload_len);
        } else {
            flow.resp_pkts += 1;
            flow.resp_ip_bytes += u64::from(t.ip_len);
            flow.resp_wire_bytes += u64::from(wire_len);
            flow.resp_payload_bytes += u64::from(t.payload_len);
        }

        match t.proto {
            ip_proto::TCP => {
                flow.tcp
                    .observe(from_orig, t.tcp_flags, t.seq, t.ack, t.payload_len);
                if t.tcp_flags & flags::FIN != 0 {
                    flow.fins |= if from_orig { 1 } else { 2 };
                }
                let ends = t.tcp_flags & flags::RST != 0 || flow.fins == 3;
                if ends && !flow.closed {
                    flow.closed = true;
                    flow.queue = QueueClass::TcpClosed;
                    flow.queued_ns = flow.last_ns;
                    let generation = flow.generation;
                    self.queues[QueueClass::TcpClosed as usize].push(QueueEntry {
                        slot,
                        generation,
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
            ip_proto::UDP => {
                if DNS_PORTS.contains(&t.sport) || DNS_PORTS.contains(&t.dport) {
                    if let Ok(msg) = dns::parse_message(t.payload) {
                        self.events.push(AppEvent::Dns { from_orig, msg });
                    }
                } else if flow.orig_pkts + flow.resp_pkts <= BITTORRENT_PROBE_PACKETS
                    && flow.services & service::BITTORRENT == 0
                    && (bittorrent::is_dht_message(t.payload)
                        || bittorrent::is_utp_packet(t.payload))
                {
                    self.events.push(AppEvent::BitTorrent);
                }
            }
            _ => {}
        }

        let active_due =
            ts_ns.saturating_sub(flow.last_update_ns) >= self.config.active_timeout_seconds * NS;
        self.apply_events(slot, ts_ns, sink);
        if active_due && let Some(Some(flow)) = self.slots.get_mut(slot as usize) {
            flow.last_update_ns = ts_ns;
            flow.updated = true;
            self.counters.interim_updates += 1;
            sink.flow(flow, UpdateKind::Interim);
        }
    }

    fn is_reuse(&self, slot: u32, t: &Transport<'_>) -> bool {
        t.proto == ip_proto::TCP
            && matches!(self.slots.get(slot as usize), Some(Some(flow))
                if flow.tcp.is_reuse(t.tcp_flags, t.seq))
    }

    fn apply_events(&mut self, slot: u32, ts_ns: u64, sink: &mut dyn FlowSink) {
        if self.events.is_empty() {
            return;
        }
        let Some(Some(flow)) = self.slots.get_mut(slot as usize) else {
            return;
        };
        for event in self.events.drain(..) {
            match event {
                AppEvent::Dns { from_orig, msg } => {
                    flow.services |= service::DNS;
                    sink.dns(flow, ts_ns, from_orig, &msg);
                }
                AppEvent::Tls(hello) => {
                    flow.services |= service::SSL;
                    if let Some(sni) = &hello.sni {
                        flow.names_mut()
                            .sni
                            .get_or_insert_with(|| sni.as_str().into());
                    }
                    sink.tls(flow, ts_ns, &hello);
                }
                AppEvent::TlsServer(info) => sink.tls_server(flow, ts_ns, &info),
                AppEvent::Http(request) => {
                    flow.services |= service::HTTP;
                    if request.method.eq_ignore_ascii_case("CONNECT") {
                        flow.names_mut()
                            .connect_target
                            .get_or_insert_with(|| request.uri.as_str().into());
                    } else if let Some(host) = &request.host {
                        flow.names_mut()
                            .http_host
                            .get_or_insert_with(|| host.as_str().into());
                    }
                    sink.http(flow, ts_ns, &request);
                }
                AppEvent::Socks(request) => {
                    flow.services |= service::SOCKS;
                    flow.names_mut()
                        .socks_target
                        .get_or_insert_with(|| request.target.as_str().into());
                    sink.socks(flow, ts_ns, &request);
                }
                AppEvent::BitTorrent => flow.services |= service::BITTORRENT,
            }
        }
    }

    fn create(
        &mut self,
        key: FlowKey,
        ts_ns: u64,
        t: &Transport<'_>,
        sink: &mut dyn FlowSink,
    ) -> u32 {
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
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                self.generations.push(0);
                (self.slots.len() - 1) as u32
            }
        };
        let generation = self.generations.get(slot as usize).copied().unwrap_or(0);
        let dns_name = sink.resolved_name(Uid(self.next_uid), orig.0, resp, ts_ns);
        let mut tcp = TcpState::default();
        if flipped {
            tcp.record_flip();
        }
        let app = (t.proto == ip_proto::TCP)
            .then(|| Box::new(AppState::new(t.sport == 53 || t.dport == 53)));
        let flow = Flow {
            uid: Uid(self.next_uid),
            proto: t.proto,
            orig,
            resp,
            first_ns: ts_ns,
            last_ns: ts_ns,
            orig_pkts: 0,
            resp_pkts: 0,
            orig_ip_bytes: 0,
            resp_ip_bytes: 0,
            orig_wire_bytes: 0,
            resp_wire_bytes: 0,
            orig_payload_bytes: 0,
            resp_payload_bytes: 0,
            tcp,
            services: 0,
            names: dns_name.map(|name| {
                Box::new(FlowNames {
                    dns_name: Some(name),
                    ..FlowNames::default()
                })
            }),
            app,
            last_update_ns: ts_ns,
            updated: false,
            closed: false,
            fins: 0,
            queue: class,
            queued_ns: ts_ns,
            generation,
        };
        self.next_uid += 1;
        self.counters.flows_created += 1;
        if let Some(entry) = self.slots.get_mut(slot as usize) {
            *entry = Some(flow);
        }
        self.index.insert(key, slot);
        self.queues[class as usize].push(QueueEntry {
            slot,
            generation,
            ts_ns,
        });
        slot
    }

    fn remove(&mut self, slot: u32, sink: &mut dyn FlowSink) {
        let Some(flow) = self.slots.get_mut(slot as usize).and_then(Option::take) else {
            return;
        };
        self.index
            .remove(&FlowKey::new(flow.orig, flow.resp, flow.proto));
        if let Some(g) = self.generations.get_mut(slot as usize) {
            *g = g.wrapping_add(1);
        }
        self.free.push(slot);
        sink.flow(&flow, UpdateKind::Final);
    }

    /// Is this queue entry the flow's current one? Returns the flow's last-seen time if so.
    fn entry_state(&self, class: usize, entry: &QueueEntry) -> Option<(u64, u64)> {
        let flow = self.slots.get(entry.slot as usize)?.as_ref()?;
        (flow.generation == entry.generation && flow.queue as usize == class)
            .then_some((flow.last_ns, flow.queued_ns))
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
            while let Some(entry) = self.queues[class].peek().copied() {
                if entry.ts_ns.saturating_add(timeout) > now_ns {
                    break;
                }
                self.queues[class].pop();
                match self.entry_state(class, &entry) {
                    None => {}
                    Some((last_ns, _)) if last_ns.saturating_add(timeout) > now_ns => {
                        self.requeue(class, entry.slot, last_ns);
                    }
                    Some(_) => self.remove(entry.slot, sink),
                }
            }
        }
    }

    fn requeue(&mut self, class: usize, slot: u32, last_ns: u64) {
        if let Some(Some(flow)) = self.slots.get_mut(slot as usize) {
            flow.queued_ns = last_ns;
            let generation = flow.generation;
            self.queues[class].push(QueueEntry {
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
                .filter_map(|c| self.queues[c].peek().map(|e| (e.ts_ns, c)))
                .min()
                .map(|(_, c)| c);
            let Some(class) = class else { return };
            let Some(entry) = self.queues[class].pop() else {
                return;
            };
            match self.entry_state(class, &entry) {
                None => continue,
                Some((last_ns, queued_ns)) if last_ns > queued_ns => {
                    self.requeue(class, entry.slot, last_ns)
                }
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
        for flow in self.slots.iter_mut().flatten() {
            if !flow.updated || flow.last_ns > flow.last_update_ns {
                flow.updated = true;
                flow.last_update_ns = flow.last_ns;
                self.counters.interim_updates += 1;
                sink.flow(flow, UpdateKind::Interim);
            }
        }
    }

    /// Ends every flow (end of input), oldest first so output order is deterministic.
    pub fn flush(&mut self, sink: &mut dyn FlowSink) {
        let mut live: Vec<(u64, Uid, u32)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.as_ref().map(|f| (f.first_ns, f.uid, i as u32)))
            .collect();
        live.sort_unstable();
        for (_, _, slot) in live {
            self.remove(slot, sink);
        }
        for q in &mut self.queues {
            q.clear();
        }
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
                self.0.push((flow.uid, flow.tcp.history(), flow.orig_pkts));
            }
        }
        fn dns(&mut self, _: &Flow, _: u64, _: bool, _: &DnsMessage) {}
        fn tls(&mut self, _: &Flow, _: u64, _: &ClientHelloInfo) {}
        fn tls_server(&mut self, _: &Flow, _: u64, _: &crate::decode::tls::ServerInfo) {}
        fn http(&mut self, _: &Flow, _: u64, _: &RequestHead) {}
        fn socks(&mut self, _: &Flow, _: u64, _: &SocksRequest) {}
    }

    fn segment(from_client: bool, tcp_flags: u8, seq: u32, ack: u32) -> Transport<'static> {
        let client = (IpAddr::from([10, 0, 0, 1]), 40000);
        let server = (IpAddr::from([192, 0, 2, 1]), 80);
        let ((src, sport), (dst, dport)) = if from_client {
            (client, server)
        } else {
            (server, client)
        };
        Transport {
            src,
            dst,
            proto: ip_proto::TCP,
            sport,
            dport,
            ip_len: 40,
            tcp_flags,
            seq,
            ack,
            window: 1024,
            payload: &[],
            payload_len: 0,
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
}
