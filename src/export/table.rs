//! Stitches normalised flow records into bidirectional flows and [`FlowUpdate`]s, mirroring
//! the packet flow table: Interim updates while a flow lasts, counters cumulative since it
//! began, one Final update at its end.
//!
//! Key: the direction-free (protocol, endpoint pair) of [`FlowKey`], so the two records of a
//! unidirectional exporter (one per direction) and a biflow record (RFC 5103) land on the same
//! flow. A record of a known key joins its flow when it starts no later than `last_ns +
//! stitch_gap`: the active-timeout pieces of a long session become one flow with one uid. A
//! record starting later ends the old flow (Final) and opens a new one. A record that arrives
//! late and ends more than `stitch_gap` before the flow began is an earlier, separate session:
//! it becomes a flow of its own, ended at once (counted `late_records`).
//!
//! Originator, strongest evidence first:
//! 1. TCP flags (cumulative ORs per direction): a side with SYN but no ACK sent the opening
//!    SYN (a server's SYN always carries ACK); else, with both directions' flags known, the
//!    only side with SYN opened the connection (the other side rejected or was seen
//!    mid-stream).
//! 2. Ports (TCP, UDP, SCTP): a side on a well-known port (1..1024) facing an ephemeral one
//!    (>= 1024) is the responder.
//! 3. Timing: the src of the flow's first record, corrected once if the reverse direction's
//!    first record started strictly earlier. Ports rank above timing because exporters cut
//!    records on their own timers: the first record of a session seen mid-way need not start
//!    with the client's packet.
//!
//! The orientation is decided when the flow is created and may be corrected once, when the
//! second direction first appears (its flags can settle what one direction could not).
//! After that it is fixed, so the inside/outside view of a uid never flips between updates.
//!
//! Ends (Final): idle expiry ([`RecordTable::expire`]), eviction at `max_flows`, a gap
//! restart, end of input ([`RecordTable::flush`]), and at once when a record says the flow
//! ended (IPFIX flowEndReason 3) while the flags show FIN or RST and both directions were
//! seen. The last condition keeps the two records of a unidirectional exporter together:
//! the first direction's end-of-flow record does not close the flow its reverse still joins.
//!
//! Sampling: with 1-in-N packet sampling (sFlow, sampled NetFlow) a missing reverse direction
//! only means no reply packet was sampled. Such a flow is "OTH", not "S0", and its updates
//! say `answered`, so fan-out does not count sampled flows as unanswered attempts. Likewise a
//! TCP originator's ACK acknowledges the responder, so a one-sided export (ingress-only
//! exporters, asymmetric routes) of an established connection is answered ("OTH"), not "S0".
//!
//! Time: records are stitched in arrival order; `last_ns` is the maximum seen, so it never
//! goes back between updates of a uid, while `first_ns` may move earlier when a piece
//! arrives out of order.
//!
//! Cost: flows sit in a slot vector, found by a hash map from key to slot; a min-heap of
//! (last_ns, uid, slot) gives the next flow to expire or evict. Heap entries are not removed
//! when their flow moves on or ends (that would need a search); a popped entry that no
//! longer matches its slot is skipped, and the heap is rebuilt from the table when stale
//! entries outnumber live ones. A push is O(1) on average and a pop O(log n), about a third
//! of the work of an ordered map's insert and remove.
use super::{ExportConfig, FlowRecord, RecordSource};
use crate::decode::packet::ip_proto;
use crate::detect::engine::FlowMemo;
use crate::flow::key::{FlowKey, Uid};
use crate::flow::tcp_state::flags;
use crate::flow::update::{FlowUpdate, UpdateKind};
use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::num::NonZeroU64;

/// Export flows number their uids from here, apart from the packet flow table's.
pub const UID_BASE: u64 = 1 << 62;

const NS: u64 = 1_000_000_000;
/// IPFIX flowEndReason "end of flow detected" (RFC 7011 / IANA IPFIX registry).
const END_OF_FLOW: u8 = 3;
/// Ports below this are well-known service ports (RFC 6335 system ports).
const EPHEMERAL_PORT_MIN: u16 = 1024;
const SCTP: u8 = 132;

/// One stitched connection, oriented originator -> responder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFlow {
    pub uid: Uid,
    pub source: RecordSource,
    pub exporter: IpAddr,
    pub proto: u8,
    pub orig: (IpAddr, u16),
    pub resp: (IpAddr, u16),
    pub first_ns: u64,
    pub last_ns: u64,
    pub orig_bytes: u64,
    pub orig_pkts: u64,
    pub resp_bytes: u64,
    pub resp_pkts: u64,
    pub orig_flags: Option<u8>,
    pub resp_flags: Option<u8>,
    /// Records stitched into this flow.
    pub records: u64,
    /// Largest sampling interval among the flow's records (1 = unsampled).
    pub sampling: u32,
}

impl ExportFlow {
    /// Zeek-style conn_state from the cumulative TCP flags and whether the responder sent
    /// anything; "OTH" when flow export cannot tell.
    ///
    /// TCP with flags: no reply and an orig SYN without ACK: "S0" ("RSTOS0" with an orig
    /// RST, "SH" with an orig FIN); responder RST without SYN after an orig SYN (or unknown orig flags): "REJ";
    /// both SYN: "RSTR"/"RSTO" by who reset (responder first, as Zeek), "SF" with FIN from
    /// both, "S2"/"S3" with FIN from orig/resp only, else "S1"; anything else "OTH". TCP
    /// without flags: "S0" when only the originator sent, else "OTH". Other protocols: "S0"
    /// only orig, "SF" both, "OTH" only resp. Sampled flows without a reply: "OTH".
    pub fn conn_state(&self) -> &'static str {
        let orig_seen = self.orig_pkts > 0;
        let resp_seen = self.resp_pkts > 0;
        if !resp_seen && self.is_sampled() {
            return "OTH";
        }
        if self.proto != ip_proto::TCP {
            return match (orig_seen, resp_seen) {
                (true, true) => "SF",
                (true, false) => "S0",
                _ => "OTH",
            };
        }
        if self.orig_flags.is_none() && self.resp_flags.is_none() {
            return if orig_seen && !resp_seen { "S0" } else { "OTH" };
        }
        let o = self.orig_flags.unwrap_or(0);
        let r = self.resp_flags.unwrap_or(0);
        let has = |f: u8, bit: u8| f & bit != 0;
        if !resp_seen {
            // An ACK from the originator acknowledges the responder: answered, not exported.
            return if !has(o, flags::SYN) || has(o, flags::ACK) {
                "OTH"
            } else if has(o, flags::RST) {
                "RSTOS0"
            } else if has(o, flags::FIN) {
                "SH"
            } else {
                "S0"
            };
        }
        if has(r, flags::RST)
            && !has(r, flags::SYN)
            && (has(o, flags::SYN) || self.orig_flags.is_none())
        {
            return "REJ";
        }
        if !(has(o, flags::SYN) && has(r, flags::SYN)) {
            return "OTH";
        }
        match (has(o, flags::FIN), has(r, flags::FIN)) {
            _ if has(r, flags::RST) => "RSTR",
            _ if has(o, flags::RST) => "RSTO",
            (true, true) => "SF",
            (true, false) => "S2",
            (false, true) => "S3",
            (false, false) => "S1",
        }
    }

    /// The responder sent something; or the flow is sampled and its silence proves nothing;
    /// or (TCP) the originator's ACK acknowledged the responder, whose direction the exporter
    /// did not report (ingress-only export, asymmetric routing).
    pub fn answered(&self) -> bool {
        self.resp_pkts > 0
            || self.is_sampled()
            || (self.proto == ip_proto::TCP && self.orig_flags.is_some_and(|f| f & flags::ACK != 0))
    }

    pub fn is_sampled(&self) -> bool {
        self.sampling > 1
    }

    fn both_directions_seen(&self) -> bool {
        self.orig_pkts > 0 && self.resp_pkts > 0
    }

    fn swap_sides(&mut self) {
        std::mem::swap(&mut self.orig, &mut self.resp);
        std::mem::swap(&mut self.orig_bytes, &mut self.resp_bytes);
        std::mem::swap(&mut self.orig_pkts, &mut self.resp_pkts);
        std::mem::swap(&mut self.orig_flags, &mut self.resp_flags);
    }

    /// The update the pipeline would build for a packet flow: inside -> outside.
    pub fn update(&self, kind: UpdateKind, is_inside: &dyn Fn(IpAddr) -> bool) -> FlowUpdate<'_> {
        let orig_inside = is_inside(self.orig.0) || !is_inside(self.resp.0);
        let (inside, outside, bytes_out, bytes_in, pkts_out, pkts_in) = if orig_inside {
            (
                self.orig,
                self.resp,
                self.orig_bytes,
                self.resp_bytes,
                self.orig_pkts,
                self.resp_pkts,
            )
        } else {
            (
                self.resp,
                self.orig,
                self.resp_bytes,
                self.orig_bytes,
                self.resp_pkts,
                self.orig_pkts,
            )
        };
        FlowUpdate {
            uid: self.uid,
            kind,
            proto: self.proto,
            inside: inside.0,
            inside_port: inside.1,
            outside: outside.0,
            outside_port: outside.1,
            inbound: !orig_inside,
            first_ns: self.first_ns,
            last_ns: self.last_ns,
            bytes_out,
            bytes_in,
            pkts_out,
            pkts_in,
            answered: self.answered(),
            conn_state: self.conn_state(),
            services: 0,
            names: None,
        }
    }
}

/// Receives stitched flows.
pub trait RecordSink {
    /// `update` is oriented inside -> outside (via `is_inside`); `flow` is the stitched flow.
    /// `memo` is the detection engine's memory of the flow, kept with it in the table (the
    /// engine would otherwise keep it in a map by uid: a second random access per update, and
    /// a second per-flow structure); a flow that is not tabled gets a fresh `None`.
    fn export_flow(
        &mut self,
        flow: &ExportFlow,
        update: &FlowUpdate<'_>,
        memo: &mut Option<FlowMemo>,
    );
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordTableCounters {
    pub records: u64,
    pub flows_created: u64,
    /// Records that joined a flow already in the table.
    pub records_stitched: u64,
    /// Flows ended because the table was full (least recently active first).
    pub flows_evicted: u64,
    /// Flows ended by the idle timeout.
    pub flows_expired: u64,
    /// Flows ended by an end-of-flow record with FIN or RST.
    pub flows_closed: u64,
    /// A record starting past the stitch gap ended its key's flow and opened a new one.
    pub gap_restarts: u64,
    /// Records of an earlier, separate session arriving after a later one (own flow).
    pub late_records: u64,
    /// Records with no packets in either direction: ignored.
    pub empty_records: u64,
    /// Orientations corrected when the second direction appeared.
    pub orientation_corrections: u64,
    /// One-way flows whose other direction never came within `pair_wait_seconds`.
    pub unpaired_flows: u64,
}

/// Where a record of a tabled key goes.
enum Join {
    Stitch,
    /// Starts past the stitch gap: the old flow ends, a new one begins.
    Restart,
    /// Ends before the flow began, past the stitch gap: an earlier, separate session.
    Late,
}

/// How a flow's orientation was decided; weaker evidence may be corrected once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Basis {
    FirstRecord,
    Ports,
    Flags,
}

struct Entry {
    flow: ExportFlow,
    basis: Basis,
    /// A flow opened by a one-way record of an unsampled exporter waits for its other
    /// direction (until this event time) before detectors see it: a half-flow would look
    /// like an upload with nothing received, or an unanswered attempt.
    /// Never 0: the deadline is at least `pair_wait` (> 0) after the record's end.
    awaiting_reverse: Option<NonZeroU64>,
    memo: Option<FlowMemo>,
}

/// A flow's place in a time order: (at, uid) with the smallest first out of a
/// [`BinaryHeap`] (which pops its largest), and the flow's slot. Uids are unique, so
/// (at, uid) never ties.
struct Due {
    at: u64,
    uid: Uid,
    slot: u32,
}

impl PartialEq for Due {
    fn eq(&self, other: &Due) -> bool {
        (self.at, self.uid) == (other.at, other.uid)
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Due) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    fn cmp(&self, other: &Due) -> Ordering {
        (other.at, other.uid).cmp(&(self.at, self.uid))
    }
}

/// A flow's index key: its endpoints in either order.
fn flow_key(flow: &ExportFlow) -> FlowKey {
    FlowKey::new(flow.orig, flow.resp, flow.proto)
}

/// Heap entries beyond twice the flows (plus this) are rebuilt away.
const STALE_SLACK: usize = 1024;

pub struct RecordTable {
    stitch_gap_ns: u64,
    idle_timeout_ns: u64,
    max_flows: usize,
    next_uid: u64,
    /// Key -> slot in `slots`, as (key hash, slot): the key lives in its flow (its
    /// endpoints), so the index is 16 bytes a bucket instead of 48, and resizes rehash from
    /// the stored hash without touching the flows. Time indexes name a flow by slot too.
    index: HashTable<(u64, u32)>,
    hasher: FxBuildHasher,
    slots: Vec<Option<Entry>>,
    /// Vacant slots, reused first.
    free: Vec<u32>,
    /// Every tabled flow by (last_ns, uid): the top idles out, or is evicted, first. An entry
    /// is live while its slot holds that uid with that last_ns; others are skipped.
    by_last: BinaryHeap<Due>,
    pair_wait_ns: u64,
    /// Flows waiting for their reverse direction by (deadline, uid); entries of flows that
    /// ended or paired meanwhile are skipped when they come up.
    awaiting: BinaryHeap<Due>,
    pub counters: RecordTableCounters,
}

impl RecordTable {
    pub fn new(config: &ExportConfig) -> RecordTable {
        RecordTable {
            stitch_gap_ns: config.stitch_gap_seconds.saturating_mul(NS),
            idle_timeout_ns: config.idle_timeout_seconds.saturating_mul(NS),
            // Slots are u32.
            max_flows: config.max_flows.clamp(1, u32::MAX as usize),
            next_uid: 0,
            index: HashTable::new(),
            hasher: FxBuildHasher,
            slots: Vec::new(),
            free: Vec::new(),
            by_last: BinaryHeap::new(),
            pair_wait_ns: config.pair_wait_seconds.saturating_mul(NS),
            awaiting: BinaryHeap::new(),
            counters: RecordTableCounters::default(),
        }
    }

    /// Flows in the table.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn entry(&self, slot: u32) -> Option<&Entry> {
        self.slots.get(slot as usize)?.as_ref()
    }

    /// The slot of the tabled flow with this key (and its hash).
    fn find(&self, hash: u64, key: &FlowKey) -> Option<u32> {
        let found = self.index.find(hash, |&(h, slot)| {
            h == hash && self.entry(slot).is_some_and(|e| flow_key(&e.flow) == *key)
        });
        found.map(|&(_, slot)| slot)
    }

    /// Adds a record: creates or extends its flow and sends an Interim update (a Final one
    /// when the record says the connection ended). `is_inside` orients updates.
    pub fn record(
        &mut self,
        record: &FlowRecord,
        is_inside: &dyn Fn(IpAddr) -> bool,
        sink: &mut dyn RecordSink,
    ) {
        self.counters.records += 1;
        if record.packets == 0 && record.rev_packets == 0 {
            self.counters.empty_records += 1;
            return;
        }
        let start = record.start_ns;
        let end = record.end_ns.max(start);
        let key = FlowKey::new(
            (record.src, record.src_port),
            (record.dst, record.dst_port),
            record.proto,
        );
        let late_gap = self.stitch_gap_ns;
        let hash = self.hasher.hash_one(key);
        let tabled = self.find(hash, &key);
        let joins = tabled.and_then(|slot| {
            let entry = self.entry(slot)?;
            Some(if start > entry.flow.last_ns.saturating_add(late_gap) {
                Join::Restart
            } else if end.saturating_add(late_gap) < entry.flow.first_ns {
                Join::Late
            } else {
                Join::Stitch
            })
        });
        match (joins, tabled) {
            (Some(Join::Stitch), Some(slot)) => {
                self.counters.records_stitched += 1;
                self.stitch(slot, record, start, end, is_inside, sink);
                return;
            }
            (Some(Join::Late), _) => {
                self.counters.late_records += 1;
                let late = self.new_flow(record, start, end);
                let update = late.flow.update(UpdateKind::Final, is_inside);
                sink.export_flow(&late.flow, &update, &mut None);
                return;
            }
            (Some(Join::Restart), Some(slot)) => {
                self.counters.gap_restarts += 1;
                self.end_flow(slot, is_inside, sink);
            }
            _ => {}
        }

        let entry = self.new_flow(record, start, end);
        if closes(&entry.flow, record) {
            self.counters.flows_closed += 1;
            let update = entry.flow.update(UpdateKind::Final, is_inside);
            sink.export_flow(&entry.flow, &update, &mut None);
            return;
        }
        while self.index.len() >= self.max_flows {
            let Some(oldest) = self.pop_oldest() else {
                break;
            };
            self.counters.flows_evicted += 1;
            self.end_flow(oldest, is_inside, sink);
        }
        let mut entry = entry;
        let one_way = record.rev_packets == 0 && record.sampling <= 1;
        let deadline = end.saturating_add(self.pair_wait_ns);
        if one_way
            && self.pair_wait_ns > 0
            && let Some(deadline) = NonZeroU64::new(deadline)
        {
            entry.awaiting_reverse = Some(deadline);
        } else {
            let update = entry.flow.update(UpdateKind::Interim, is_inside);
            sink.export_flow(&entry.flow, &update, &mut entry.memo);
        }
        let (last_ns, uid, awaiting) = (entry.flow.last_ns, entry.flow.uid, entry.awaiting_reverse);
        let slot = match self.free.pop() {
            Some(slot) => {
                if let Some(vacant) = self.slots.get_mut(slot as usize) {
                    *vacant = Some(entry);
                }
                slot
            }
            None => {
                self.slots.push(Some(entry));
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert_unique(hash, (hash, slot), |&(h, _)| h);
        if let Some(deadline) = awaiting {
            self.push_awaiting(deadline.get(), uid, slot);
        }
        self.push_last(last_ns, uid, slot);
    }

    /// Indexes a tabled flow's new last_ns; rebuilds the index once stale entries outnumber
    /// live ones, so it stays within twice the table (amortised O(1) per push).
    fn push_last(&mut self, at: u64, uid: Uid, slot: u32) {
        self.by_last.push(Due { at, uid, slot });
        if self.by_last.len() > 2 * self.index.len() + STALE_SLACK {
            let live = self.live_dues(|e| Some(e.flow.last_ns));
            self.by_last = BinaryHeap::from(live);
        }
    }

    /// Queues a flow's pairing deadline, bounded like `push_last`.
    fn push_awaiting(&mut self, at: u64, uid: Uid, slot: u32) {
        self.awaiting.push(Due { at, uid, slot });
        if self.awaiting.len() > 2 * self.index.len() + STALE_SLACK {
            let live = self.live_dues(|e| e.awaiting_reverse.map(NonZeroU64::get));
            self.awaiting = BinaryHeap::from(live);
        }
    }

    /// A time index of the tabled flows for which `at` has a time.
    fn live_dues(&self, at: impl Fn(&Entry) -> Option<u64>) -> Vec<Due> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(slot, e)| {
                let e = e.as_ref()?;
                Some(Due {
                    at: at(e)?,
                    uid: e.flow.uid,
                    slot: slot as u32,
                })
            })
            .collect()
    }

    /// Ends flows idle past the timeout at event time `now_ns` (Final updates), oldest first.
    pub fn expire(
        &mut self,
        now_ns: u64,
        is_inside: &dyn Fn(IpAddr) -> bool,
        sink: &mut dyn RecordSink,
    ) {
        while let Some(due) = self.awaiting.peek() {
            if due.at >= now_ns {
                break;
            }
            let (uid, slot) = (due.uid, due.slot);
            self.awaiting.pop();
            if let Some(entry) = self.slots.get_mut(slot as usize).and_then(Option::as_mut)
                && entry.flow.uid == uid
                && entry.awaiting_reverse.take().is_some()
            {
                self.counters.unpaired_flows += 1;
                let update = entry.flow.update(UpdateKind::Interim, is_inside);
                sink.export_flow(&entry.flow, &update, &mut entry.memo);
            }
        }
        while let Some(due) = self.by_last.peek() {
            if !self.is_live(due) {
                self.by_last.pop();
                continue;
            }
            if due.at.saturating_add(self.idle_timeout_ns) >= now_ns {
                break;
            }
            if let Some(slot) = self.pop_oldest() {
                self.counters.flows_expired += 1;
                self.end_flow(slot, is_inside, sink);
            }
        }
    }

    /// Whether an index entry still stands for its flow's current last_ns.
    fn is_live(&self, due: &Due) -> bool {
        self.entry(due.slot)
            .is_some_and(|e| e.flow.uid == due.uid && e.flow.last_ns == due.at)
    }

    /// Ends every flow (end of input), ordered by first_ns then uid.
    pub fn flush(&mut self, is_inside: &dyn Fn(IpAddr) -> bool, sink: &mut dyn RecordSink) {
        self.by_last.clear();
        self.awaiting.clear();
        self.index.clear();
        self.free.clear();
        // Sorting small keys, and reading each flow where it is, moves far fewer bytes than
        // collecting and sorting the flows.
        let mut order: Vec<(u64, Uid, usize)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(slot, e)| e.as_ref().map(|e| (e.flow.first_ns, e.flow.uid, slot)))
            .collect();
        order.sort_unstable();
        for &(_, _, slot) in &order {
            if let Some(Some(entry)) = self.slots.get_mut(slot) {
                let update = entry.flow.update(UpdateKind::Final, is_inside);
                sink.export_flow(&entry.flow, &update, &mut entry.memo);
            }
        }
        self.slots.clear();
    }

    /// The slot of the flow with the oldest last_ns (ties: lowest uid), skipping stale index
    /// entries. Pops the index first so every call makes progress.
    fn pop_oldest(&mut self) -> Option<u32> {
        while let Some(due) = self.by_last.pop() {
            if self.is_live(&due) {
                return Some(due.slot);
            }
        }
        None
    }

    /// Sends a tabled flow's Final update and removes it (read in place, not moved out).
    fn end_flow(
        &mut self,
        slot: u32,
        is_inside: &dyn Fn(IpAddr) -> bool,
        sink: &mut dyn RecordSink,
    ) {
        let Some(place) = self.slots.get_mut(slot as usize) else {
            return;
        };
        let Some(entry) = place.as_mut() else {
            return;
        };
        let update = entry.flow.update(UpdateKind::Final, is_inside);
        sink.export_flow(&entry.flow, &update, &mut entry.memo);
        let hash = self.hasher.hash_one(flow_key(&entry.flow));
        *place = None;
        if let Ok(found) = self.index.find_entry(hash, |&(_, s)| s == slot) {
            found.remove();
        }
        self.free.push(slot);
    }

    /// A flow holding just this record, oriented by its flags, then ports, then src.
    fn new_flow(&mut self, record: &FlowRecord, start: u64, end: u64) -> Entry {
        self.counters.flows_created += 1;
        let uid = Uid(UID_BASE.saturating_add(self.next_uid));
        self.next_uid += 1;
        let mut flow = ExportFlow {
            uid,
            source: record.source,
            exporter: record.exporter,
            proto: record.proto,
            orig: (record.src, record.src_port),
            resp: (record.dst, record.dst_port),
            first_ns: start,
            last_ns: end,
            orig_bytes: record.octets,
            orig_pkts: record.packets,
            resp_bytes: record.rev_octets,
            resp_pkts: record.rev_packets,
            orig_flags: tcp_flags(record.proto, record.packets, record.tcp_flags),
            resp_flags: tcp_flags(record.proto, record.rev_packets, record.rev_tcp_flags),
            records: 1,
            sampling: record.sampling.max(1),
        };
        let basis = match originator_by_flags(&flow) {
            Some(orig_is_orig) => {
                if !orig_is_orig {
                    flow.swap_sides();
                }
                Basis::Flags
            }
            None => match originator_by_ports(&flow) {
                Some(orig_is_orig) => {
                    if !orig_is_orig {
                        flow.swap_sides();
                    }
                    Basis::Ports
                }
                None => Basis::FirstRecord,
            },
        };
        Entry {
            flow,
            basis,
            awaiting_reverse: None,
            memo: None,
        }
    }

    /// Adds a record to the tabled flow in `slot`.
    fn stitch(
        &mut self,
        slot: u32,
        record: &FlowRecord,
        start: u64,
        end: u64,
        is_inside: &dyn Fn(IpAddr) -> bool,
        sink: &mut dyn RecordSink,
    ) {
        // Borrows the slot alone, so counters stay usable.
        let Some(entry) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) else {
            return;
        };
        let flow = &mut entry.flow;
        let old_last = flow.last_ns;
        let old_first = flow.first_ns;
        let one_direction = !flow.both_directions_seen();
        // src == dst (a host talking to itself on one port) counts as forward.
        let reverse = (record.src, record.src_port) != flow.orig;
        let (fwd_bytes, fwd_pkts, fwd_flags, rev_bytes, rev_pkts, rev_flags) = (
            record.octets,
            record.packets,
            tcp_flags(record.proto, record.packets, record.tcp_flags),
            record.rev_octets,
            record.rev_packets,
            tcp_flags(record.proto, record.rev_packets, record.rev_tcp_flags),
        );
        let (o_bytes, o_pkts, o_flags, r_bytes, r_pkts, r_flags) = if reverse {
            (
                rev_bytes, rev_pkts, rev_flags, fwd_bytes, fwd_pkts, fwd_flags,
            )
        } else {
            (
                fwd_bytes, fwd_pkts, fwd_flags, rev_bytes, rev_pkts, rev_flags,
            )
        };
        flow.orig_bytes = flow.orig_bytes.saturating_add(o_bytes);
        flow.orig_pkts = flow.orig_pkts.saturating_add(o_pkts);
        flow.resp_bytes = flow.resp_bytes.saturating_add(r_bytes);
        flow.resp_pkts = flow.resp_pkts.saturating_add(r_pkts);
        flow.orig_flags = or_flags(flow.orig_flags, o_flags);
        flow.resp_flags = or_flags(flow.resp_flags, r_flags);
        flow.first_ns = flow.first_ns.min(start);
        flow.last_ns = flow.last_ns.max(end);
        flow.records = flow.records.saturating_add(1);
        flow.sampling = flow.sampling.max(record.sampling);

        if one_direction && flow.both_directions_seen() {
            // The one correction: flags of both sides, else a reverse record that started
            // first when nothing but the first record's src decided.
            let swap = match originator_by_flags(flow) {
                Some(orig_is_orig) => {
                    entry.basis = Basis::Flags;
                    !orig_is_orig
                }
                None => {
                    entry.basis == Basis::FirstRecord
                        && reverse
                        && record.rev_packets == 0
                        && start < old_first
                }
            };
            if swap {
                flow.swap_sides();
                self.counters.orientation_corrections += 1;
            }
        }

        if entry.awaiting_reverse.is_some() && entry.flow.both_directions_seen() {
            entry.awaiting_reverse = None;
        }
        let flow = &entry.flow;
        let (last_ns, uid) = (flow.last_ns, flow.uid);
        if !closes(flow, record) {
            if entry.awaiting_reverse.is_none() {
                let update = flow.update(UpdateKind::Interim, is_inside);
                sink.export_flow(flow, &update, &mut entry.memo);
            }
            if last_ns != old_last {
                self.push_last(last_ns, uid, slot);
            }
            return;
        }
        self.counters.flows_closed += 1;
        self.end_flow(slot, is_inside, sink);
    }
}

/// A direction's flags count only for TCP and when that direction carried packets.
fn tcp_flags(proto: u8, packets: u64, flags: Option<u8>) -> Option<u8> {
    if proto == ip_proto::TCP && packets > 0 {
        flags
    } else {
        None
    }
}

fn or_flags(a: Option<u8>, b: Option<u8>) -> Option<u8> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a | b),
        (a, b) => a.or(b),
    }
}

/// Some(true) when the flags say the current orig opened the connection, Some(false) when
/// the current resp did, None when they cannot tell.
fn originator_by_flags(flow: &ExportFlow) -> Option<bool> {
    if flow.proto != ip_proto::TCP {
        return None;
    }
    let syn_only = |f: Option<u8>| f.is_some_and(|f| f & flags::SYN != 0 && f & flags::ACK == 0);
    let (o, r) = (flow.orig_flags, flow.resp_flags);
    match (syn_only(o), syn_only(r)) {
        (true, false) => return Some(true),
        (false, true) => return Some(false),
        _ => {}
    }
    let (Some(o), Some(r)) = (o, r) else {
        return None;
    };
    match (o & flags::SYN != 0, r & flags::SYN != 0) {
        (true, false) => Some(true),
        (false, true) => Some(false),
        _ => None,
    }
}

/// Some(true) when the current resp is on a well-known port and orig on an ephemeral one,
/// Some(false) for the reverse, None otherwise (or for protocols without ports).
fn originator_by_ports(flow: &ExportFlow) -> Option<bool> {
    if !matches!(flow.proto, ip_proto::TCP | ip_proto::UDP | SCTP) {
        return None;
    }
    let well_known = |port: u16| (1..EPHEMERAL_PORT_MIN).contains(&port);
    match (well_known(flow.orig.1), well_known(flow.resp.1)) {
        (false, true) if flow.orig.1 >= EPHEMERAL_PORT_MIN => return Some(true),
        (true, false) if flow.resp.1 >= EPHEMERAL_PORT_MIN => return Some(false),
        _ => {}
    }
    // A registered service port (1080, 3128, 8080, ...) against a port from the clients'
    // dynamic range (Linux from 32768, Windows and the IANA range from 49152).
    let service = |port: u16| (1..DYNAMIC_PORT_MIN).contains(&port);
    let dynamic = |port: u16| port >= DYNAMIC_PORT_MIN;
    match (flow.orig.1, flow.resp.1) {
        (o, r) if dynamic(o) && service(r) => Some(true),
        (o, r) if service(o) && dynamic(r) => Some(false),
        _ => None,
    }
}

/// Where clients' dynamic (ephemeral) source ports start on the common systems.
const DYNAMIC_PORT_MIN: u16 = 32_768;

/// The record reports the end of a TCP connection whose both directions were seen.
fn closes(flow: &ExportFlow, record: &FlowRecord) -> bool {
    let seen_flags = flow.orig_flags.unwrap_or(0) | flow.resp_flags.unwrap_or(0);
    record.end_reason == Some(END_OF_FLOW)
        && flow.proto == ip_proto::TCP
        && seen_flags & (flags::FIN | flags::RST) != 0
        && flow.both_directions_seen()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::path::Path;

    const T0: u64 = 1_700_000_000 * NS;
    const SYN: u8 = flags::SYN;
    const ACK: u8 = flags::ACK;
    const FIN: u8 = flags::FIN;
    const RST: u8 = flags::RST;
    const PSH: u8 = flags::PSH;
    const TCP: u8 = ip_proto::TCP;
    const UDP: u8 = ip_proto::UDP;

    /// An owned copy of what a FlowUpdate said.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Said {
        uid: Uid,
        kind: UpdateKind,
        proto: u8,
        inside: (IpAddr, u16),
        outside: (IpAddr, u16),
        inbound: bool,
        first_ns: u64,
        last_ns: u64,
        bytes_out: u64,
        bytes_in: u64,
        pkts_out: u64,
        pkts_in: u64,
        answered: bool,
        conn_state: &'static str,
        services: u8,
        named: bool,
        unanswered_attempt: bool,
    }

    #[derive(Default)]
    struct Collect(Vec<(ExportFlow, Said)>);

    impl RecordSink for Collect {
        fn export_flow(&mut self, flow: &ExportFlow, u: &FlowUpdate<'_>, _: &mut Option<FlowMemo>) {
            self.0.push((
                flow.clone(),
                Said {
                    uid: u.uid,
                    kind: u.kind,
                    proto: u.proto,
                    inside: (u.inside, u.inside_port),
                    outside: (u.outside, u.outside_port),
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
                    named: u.names.is_some(),
                    unanswered_attempt: u.unanswered_attempt(),
                },
            ));
        }
    }

    impl Collect {
        fn said(&self) -> Vec<&Said> {
            self.0.iter().map(|(_, s)| s).collect()
        }
        fn last(&self) -> &(ExportFlow, Said) {
            self.0.last().expect("an update")
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    /// Inside is 10.0.0.0/8.
    fn inside_10(addr: IpAddr) -> bool {
        matches!(addr, IpAddr::V4(v4) if v4.octets()[0] == 10)
    }

    /// Updates at once: these tests look at stitching, orientation and states record by
    /// record (`pairing_waits_for_the_other_direction` covers the wait).
    fn config() -> ExportConfig {
        ExportConfig {
            stitch_gap_seconds: 60,
            idle_timeout_seconds: 120,
            pair_wait_seconds: 0,
            max_flows: 1000,
            ..ExportConfig::default()
        }
    }

    /// A unidirectional unsampled record without flags.
    fn uni(
        src: (&str, u16),
        dst: (&str, u16),
        proto: u8,
        octets: u64,
        packets: u64,
        start_ns: u64,
        end_ns: u64,
    ) -> FlowRecord {
        FlowRecord {
            source: RecordSource::NetflowV9,
            exporter: ip("192.0.2.254"),
            src: ip(src.0),
            dst: ip(dst.0),
            src_port: src.1,
            dst_port: dst.1,
            proto,
            octets,
            packets,
            rev_octets: 0,
            rev_packets: 0,
            start_ns,
            end_ns,
            tcp_flags: None,
            rev_tcp_flags: None,
            sampling: 1,
            end_reason: None,
        }
    }

    fn with_flags(record: FlowRecord, f: u8) -> FlowRecord {
        FlowRecord {
            tcp_flags: Some(f),
            ..record
        }
    }

    #[test]
    fn a_tabled_flow_stays_within_its_budget() {
        // A million flows are tabled at the default max_flows: each byte here is a megabyte.
        assert!(
            std::mem::size_of::<Option<Entry>>() <= 160,
            "Entry grew: {}",
            std::mem::size_of::<Option<Entry>>()
        );
    }

    #[test]
    fn unidirectional_pair_is_one_flow_with_both_directions() {
        for server_first in [false, true] {
            let client = ("10.0.0.5", 50000);
            let server = ("198.51.100.7", 443);
            let c2s = with_flags(
                uni(client, server, TCP, 1200, 10, T0, T0 + 5 * NS),
                SYN | ACK | PSH | FIN,
            );
            let s2c = with_flags(
                uni(server, client, TCP, 9000, 8, T0 + 20_000_000, T0 + 5 * NS),
                SYN | ACK | PSH | FIN,
            );
            let mut table = RecordTable::new(&config());
            let mut sink = Collect::default();
            let order = if server_first {
                [&s2c, &c2s]
            } else {
                [&c2s, &s2c]
            };
            for r in order {
                table.record(r, &inside_10, &mut sink);
            }
            assert_eq!(sink.0.len(), 2, "one update per record");
            let (flow, said) = sink.last();
            assert_eq!(sink.0[0].1.uid, said.uid);
            assert_eq!(said.kind, UpdateKind::Interim);
            assert_eq!(flow.orig, (ip(client.0), client.1));
            assert_eq!((flow.orig_bytes, flow.orig_pkts), (1200, 10));
            assert_eq!((flow.resp_bytes, flow.resp_pkts), (9000, 8));
            assert_eq!((flow.first_ns, flow.last_ns), (T0, T0 + 5 * NS));
            assert_eq!(flow.records, 2);
            assert_eq!(said.conn_state, "SF");
            assert_eq!((said.bytes_out, said.bytes_in), (1200, 9000));
            assert_eq!((said.pkts_out, said.pkts_in), (10, 8));
            assert!(!said.inbound && said.answered && !said.unanswered_attempt);
            assert_eq!((said.services, said.named), (0, false));
            assert_eq!(table.counters.flows_created, 1);
            assert_eq!(table.counters.records_stitched, 1);
            let uid = said.uid;
            table.flush(&inside_10, &mut sink);
            let (_, fin) = sink.last();
            assert_eq!(
                (fin.kind, fin.uid, fin.bytes_in),
                (UpdateKind::Final, uid, 9000)
            );
            assert!(table.is_empty());
        }
    }

    #[test]
    fn biflow_record_fills_both_directions() {
        let record = FlowRecord {
            source: RecordSource::Ipfix,
            rev_octets: 4000,
            rev_packets: 5,
            tcp_flags: Some(SYN | ACK | PSH),
            rev_tcp_flags: Some(SYN | ACK | PSH),
            ..uni(
                ("10.1.1.1", 41000),
                ("203.0.113.80", 8443),
                TCP,
                700,
                6,
                T0,
                T0 + NS,
            )
        };
        let mut table = RecordTable::new(&config());
        let mut sink = Collect::default();
        table.record(&record, &inside_10, &mut sink);
        let (flow, said) = sink.last();
        assert_eq!((flow.orig_pkts, flow.resp_pkts), (6, 5));
        assert_eq!((said.bytes_out, said.bytes_in), (700, 4000));
        assert_eq!(said.conn_state, "S1");
        assert_eq!(flow.source, RecordSource::Ipfix);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn active_timeout_pieces_of_a_two_hour_session_are_one_flow() {
        // An exporter with a 30-minute active timeout cuts a 2-hour upload into four pieces
        // per direction.
        let inside = ("10.0.0.9", 52000);
        let outside = ("203.0.113.50", 443);
        let half_hour = 1800 * NS;
        let mut table = RecordTable::new(&config());
        let mut sink = Collect::default();
        for piece in 0..4u64 {
            let start = T0 + piece * half_hour;
            let end = start + half_hour - NS;
            let f = if piece == 0 {
                SYN | ACK | PSH
            } else {
                ACK | PSH
            };
            let up = FlowRecord {
                end_reason: Some(2),
                ..with_flags(uni(inside, outside, TCP, 50_000_000, 40_000, start, end), f)
            };
            let down = FlowRecord {
                end_reason: Some(2),
                ..with_flags(
                    uni(
                        outside,
                        inside,
                        TCP,
                        2_000_000,
                        20_000,
                        start + 1_000_000,
                        end,
                    ),
                    f,
                )
            };
            table.record(&up, &inside_10, &mut sink);
            table.record(&down, &inside_10, &mut sink);
        }
        let said = sink.said();
        assert_eq!(said.len(), 8);
        assert!(said.iter().all(|s| s.kind == UpdateKind::Interim));
        assert!(said.iter().all(|s| s.uid == said[0].uid));
        // Cumulative: every update carries at least what the one before did.
        for pair in said.windows(2) {
            assert!(pair[1].bytes_out >= pair[0].bytes_out);
            assert!(pair[1].last_ns >= pair[0].last_ns);
        }
        let last = said[7];
        assert_eq!(last.bytes_out, 4 * 50_000_000);
        assert_eq!(last.bytes_in, 4 * 2_000_000);
        assert_eq!(last.duration_ns(), 4 * half_hour - NS);
        assert_eq!(last.conn_state, "S1");
        assert_eq!(table.counters.flows_created, 1);
        assert_eq!(table.counters.records_stitched, 7);
        table.expire(T0 + 4 * half_hour, &inside_10, &mut sink);
        assert_eq!(sink.0.len(), 8, "not idle yet");
        table.flush(&inside_10, &mut sink);
        let said = sink.said();
        assert_eq!(said.len(), 9);
        assert_eq!(said[8].kind, UpdateKind::Final);
        assert_eq!(said[8].uid, said[0].uid);
        assert_eq!(
            said.iter().filter(|s| s.kind == UpdateKind::Final).count(),
            1
        );
    }

    impl Said {
        fn duration_ns(&self) -> u64 {
            self.last_ns - self.first_ns
        }
    }

    #[test]
    fn a_record_past_the_stitch_gap_starts_a_new_flow() {
        let a = ("10.0.0.2", 53000);
        let b = ("198.51.100.1", 53);
        let mut table = RecordTable::new(&config());
        let mut sink = Collect::default();
        table.record(&uni(a, b, UDP, 80, 1, T0, T0 + NS), &inside_10, &mut sink);
        // Exactly at last + gap still joins.
        table.record(
            &uni(a, b, UDP, 80, 1, T0 + 61 * NS, T0 + 61 * NS),
            &inside_10,
            &mut sink,
        );
        let first_uid = sink.last().1.uid;
        assert_eq!(sink.0[0].1.uid, first_uid);
        // One nanosecond later than last + gap starts over.
        table.record(
            &uni(a, b, UDP, 80, 1, T0 + 121 * NS + 1, T0 + 122 * NS),
            &inside_10,
            &mut sink,
        );
        let said = sink.said();
        assert_eq!(said.len(), 4);
        assert_eq!((said[2].kind, said[2].uid), (UpdateKind::Final, first_uid));
        assert_eq!(said[2].pkts_out, 2);
        assert_eq!(said[3].kind, UpdateKind::Interim);
        assert_ne!(said[3].uid, first_uid);
        assert_eq!(said[3].pkts_out, 1, "counters restart with the new flow");
        assert_eq!(said[3].uid, Uid(UID_BASE + 1));
        assert_eq!(first_uid, Uid(UID_BASE));
        assert_eq!(table.counters.gap_restarts, 1);
        assert_eq!(table.counters.flows_created, 2);
    }

    #[test]
    fn updates_are_oriented_inside_to_outside() {
        let mut table = RecordTable::new(&config());
        let mut sink = Collect::default();
        // An outside client logs into an inside SSH server; only the server's record exists.
        table.record(
            &with_flags(
                uni(
                    ("10.0.0.8", 22),
                    ("198.51.100.20", 51000),
                    TCP,
                    9_000,
                    30,
                    T0,
                    T0 + NS,
                ),
                ACK | PSH,
            ),
            &inside_10,
            &mut sink,
        );
        let (flow, said) = sink.last();
        assert_eq!(flow.orig, (ip("198.51.100.20"), 51000), "ports: 22 serves");
        assert!(said.inbound);
        assert_eq!(said.inside, (ip("10.0.0.8"), 22));
        assert_eq!(said.outside, (ip("198.51.100.20"), 51000));
        assert_eq!(
            (said.bytes_out, said.pkts_out, said.bytes_in),
            (9_000, 30, 0)
        );

        // Outbound: inside client to outside server.
        table.record(
            &uni(
                ("10.0.0.5", 40001),
                ("203.0.113.9", 443),
                TCP,
                500,
                4,
                T0,
                T0,
            ),
            &inside_10,
            &mut sink,
        );
        let (_, said) = sink.last();
        assert!(!said.inbound);
        assert_eq!(said.inside, (ip("10.0.0.5"), 40001));
        assert_eq!(said.bytes_out, 500);

        // Both outside (transit): the originator stands on the inside, as the pipeline does.
        table.record(
            &uni(
                ("198.51.100.3", 40002),
                ("203.0.113.9", 443),
                TCP,
                600,
                4,
                T0,
                T0,
            ),
            &inside_10,
            &mut sink,
        );
        let (_, said) = sink.last();
        assert!(!said.inbound);
        assert_eq!(said.inside, (ip("198.51.100.3"), 40002));
        assert_eq!(said.bytes_out, 600);
    }

    #[test]
    fn orientation_is_corrected_once_when_the_reverse_direction_appears() {
        let a = ("10.0.0.1", 40000);
        let b = ("10.0.0.2", 50000);
        // Timing: both ports ephemeral; the reverse record started earlier.
        let mut table = RecordTable::new(&config());
        let mut sink = Collect::default();
        table.record(
            &uni(a, b, UDP, 100, 1, T0 + NS, T0 + NS),
            &inside_10,
            &mut sink,
        );
        assert_eq!(sink.last().0.orig, (ip(a.0), a.1));
        table.record(&uni(b, a, UDP, 100, 1, T0, T0 + NS), &inside_10, &mut sink);
        assert_eq!(sink.last().0.orig, (ip(b.0), b.1));
        assert_eq!(sink.last().0.first_ns, T0);
        assert_eq!(table.counters.orientation_corrections, 1);
        // Once both directions are in, an even earlier record changes nothing.
        table.record(
            &uni(a, b, UDP, 100, 1, T0 - NS, T0 - NS),
            &inside_10,
            &mut sink,
        );
        assert_eq!(sink.last().0.orig, (ip(b.0), b.1));
        assert_eq!(table.counters.orientation_corrections, 1);

        // Flags: a SYN|ACK-only record is ambiguous; the reverse side's bare SYN settles it.
        let mut table = RecordTable::new(&config());
        let mut sink = Collect::default();
        table.record(
            &with_flags(uni(a, b, TCP, 44, 1, T0, T0), SYN | ACK),
            &inside_10,
            &mut sink,
        );
        assert_eq!(sink.last().0.orig, (ip(a.0), a.1));
        table.record(
            &with_flags(uni(b, a, TCP, 44, 1, T0 + NS, T0 + NS), SYN),
            &inside_10,
            &mut sink,
        );
        let (flow, said) = sink.last();
        assert_eq!(flow.orig, (ip(b.0), b.1));
        assert_eq!(flow.orig_flags, Some(SYN));
        assert_eq!(said.conn_state, "S1");

        // Ports outrank timing: the server's piece started first, the client still originates.
        let mut table = RecordTable::new(&config());
        let mut sink = Collect::default();
        let server = ("203.0.113.5", 443);
        table.record(
            &uni(server, a, TCP, 5000, 5, T0, T0 + NS),
            &inside_10,
            &mut sink,
        );
        table.record(
            &uni(a, server, TCP, 300, 4, T0 + NS / 2, T0 + NS),
            &inside_10,
            &mut sink,
        );
        assert_eq!(sink.last().0.orig, (ip(a.0), a.1));
        assert_eq!(table.counters.orientation_corrections, 0);
    }

    /// Packets and cumulative flags of one direction.
    type Side = (u64, Option<u8>);

    fn state(proto: u8, orig: Side, resp: Side, sampling: u32) -> ExportFlow {
        ExportFlow {
            uid: Uid(UID_BASE),
            source: RecordSource::NetflowV9,
            exporter: ip("192.0.2.254"),
            proto,
            orig: (ip("10.0.0.1"), 40000),
            resp: (ip("203.0.113.1"), 80),
            first_ns: T0,
            last_ns: T0,
            orig_bytes: orig.0 * 40,
            orig_pkts: orig.0,
            resp_bytes: resp.0 * 40,
            resp_pkts: resp.0,
            orig_flags: orig.1,
            resp_flags: resp.1,
            records: 1,
            sampling,
        }
    }

    #[test]
    fn conn_state_from_flags() {
        let cases: [(u8, Side, Side, u32, &str, bool); 24] = [
            // proto, orig (pkts, flags), resp, sampling, state, unanswered attempt
            (TCP, (1, Some(SYN)), (0, None), 1, "S0", true),
            (TCP, (4, Some(SYN | ACK | PSH)), (0, None), 1, "OTH", false),
            (TCP, (4, Some(ACK | PSH)), (0, None), 1, "OTH", false),
            (TCP, (2, Some(SYN | RST)), (0, None), 1, "RSTOS0", true),
            (TCP, (2, Some(SYN | FIN)), (0, None), 1, "SH", true),
            (TCP, (1, Some(SYN)), (1, Some(RST | ACK)), 1, "REJ", true),
            (TCP, (0, None), (1, Some(RST | ACK)), 1, "REJ", true),
            (
                TCP,
                (9, Some(SYN | ACK | FIN)),
                (8, Some(SYN | ACK | FIN)),
                1,
                "SF",
                false,
            ),
            (
                TCP,
                (5, Some(SYN | ACK | RST)),
                (4, Some(SYN | ACK)),
                1,
                "RSTO",
                false,
            ),
            (
                TCP,
                (5, Some(SYN | ACK)),
                (4, Some(SYN | ACK | RST)),
                1,
                "RSTR",
                false,
            ),
            (
                TCP,
                (5, Some(SYN | ACK | PSH)),
                (4, Some(SYN | ACK | PSH)),
                1,
                "S1",
                false,
            ),
            (
                TCP,
                (5, Some(SYN | ACK | FIN)),
                (4, Some(SYN | ACK)),
                1,
                "S2",
                false,
            ),
            (
                TCP,
                (5, Some(SYN | ACK)),
                (4, Some(SYN | ACK | FIN)),
                1,
                "S3",
                false,
            ),
            // Mid-stream: neither SYN was exported.
            (
                TCP,
                (5, Some(ACK | PSH)),
                (4, Some(ACK | PSH)),
                1,
                "OTH",
                false,
            ),
            (
                TCP,
                (5, Some(ACK | PSH)),
                (4, Some(ACK | RST)),
                1,
                "OTH",
                false,
            ),
            (TCP, (5, None), (4, None), 1, "OTH", false),
            (TCP, (1, None), (0, None), 1, "S0", true),
            // Sampled: an unsampled reply is no evidence of silence.
            (TCP, (1, None), (0, None), 512, "OTH", false),
            (TCP, (1, Some(SYN)), (0, None), 512, "OTH", false),
            (TCP, (3, Some(ACK)), (2, Some(ACK)), 512, "OTH", false),
            (UDP, (1, None), (0, None), 1, "S0", false),
            (UDP, (1, None), (1, None), 1, "SF", false),
            (UDP, (0, None), (1, None), 1, "OTH", false),
            (UDP, (1, None), (0, None), 100, "OTH", false),
        ];
        for (proto, orig, resp, sampling, want, unanswered) in cases {
            let flow = state(proto, orig, resp, sampling);
            assert_eq!(
                flow.conn_state(),
                want,
                "{proto} {orig:?} {resp:?} 1/{sampling}"
            );
            let update = flow.update(UpdateKind::Interim, &inside_10);
            assert_eq!(update.conn_state, want);
            assert_eq!(
                update.unanswered_attempt(),
                unanswered,
                "{proto} {orig:?} {resp:?} 1/{sampling}"
            );
        }
    }

    #[test]
    fn unanswered_syn_scan_is_eighty_unanswered_attempts() {
        for sampling in [1, 256] {
            let mut table = RecordTable::new(&config());
            let mut sink = Collect::default();
            for i in 0..80u16 {
                let target = format!("198.51.100.{}", i + 1);
                let record = FlowRecord {
                    sampling,
                    ..with_flags(
                        uni(
                            ("10.0.0.66", 40000 + i),
                            (&target, 22),
                            TCP,
                            44,
                            1,
                            T0 + u64::from(i) * 10_000_000,
                            T0 + u64::from(i) * 10_000_000,
                        ),
                        SYN,
                    )
                };
                table.record(&record, &inside_10, &mut sink);
            }
            table.flush(&inside_10, &mut sink);
            assert_eq!(table.counters.flows_created, 80);
            let said = sink.said();
            assert_eq!(said.len(), 160, "an Interim and a Final each");
            let uids: std::collections::HashSet<Uid> = said.iter().map(|s| s.uid).collect();
            assert_eq!(uids.len(), 80);
            if sampling == 1 {
                assert!(
                    said.iter()
                        .all(|s| s.unanswered_attempt && s.conn_state == "S0")
                );
                assert!(said.iter().all(|s| !s.answered && s.outside.1 == 22));
            } else {
                assert!(
                    said.iter()
                        .all(|s| !s.unanswered_attempt && s.conn_state == "OTH")
                );
            }
        }
    }

    #[test]
    fn idle_flows_expire() {
        let mut table = RecordTable::new(&config());
        let mut sink = Collect::default();
        let a = ("10.0.0.3", 41000);
        let b = ("203.0.113.3", 443);
        let c = ("203.0.113.4", 443);
        table.record(&uni(a, b, TCP, 40, 1, T0, T0 + NS), &inside_10, &mut sink);
        table.record(
            &uni(a, c, TCP, 40, 1, T0 + 100 * NS, T0 + 100 * NS),
            &inside_10,
            &mut sink,
        );
        table.expire(T0 + 121 * NS, &inside_10, &mut sink);
        assert_eq!(sink.0.len(), 2, "idle exactly the timeout: not yet");
        table.expire(T0 + 121 * NS + 1, &inside_10, &mut sink);
        let (flow, said) = sink.last();
        assert_eq!(said.kind, UpdateKind::Final);
        assert_eq!(flow.resp, (ip(b.0), b.1));
        assert_eq!(table.counters.flows_expired, 1);
        assert_eq!(table.len(), 1);
        table.expire(u64::MAX, &inside_10, &mut sink);
        assert_eq!(table.counters.flows_expired, 2);
        assert!(table.is_empty());
    }

    #[test]
    fn max_flows_evicts_the_least_recently_active() {
        let mut table = RecordTable::new(&ExportConfig {
            max_flows: 3,
            ..config()
        });
        let mut sink = Collect::default();
        // Arrival order differs from event order: the flow last active at +10 s goes first.
        for (i, at) in [50u64, 10, 30, 40, 60].into_iter().enumerate() {
            let t = T0 + at * NS;
            let port = 40000 + i as u16;
            table.record(
                &uni(("10.0.0.4", port), ("203.0.113.8", 443), TCP, 40, 1, t, t),
                &inside_10,
                &mut sink,
            );
        }
        assert_eq!(table.len(), 3);
        assert_eq!(table.counters.flows_evicted, 2);
        let evicted: Vec<u16> = sink
            .0
            .iter()
            .filter(|(_, s)| s.kind == UpdateKind::Final)
            .map(|(f, _)| f.orig.1)
            .collect();
        assert_eq!(evicted, vec![40001, 40002]);
    }

    #[test]
    fn out_of_order_records_stitch_and_time_never_goes_back() {
        let a = ("10.0.0.7", 45000);
        let b = ("203.0.113.70", 993);
        let piece = 300 * NS;
        let mut table = RecordTable::new(&config());
        let mut sink = Collect::default();
        for k in [2u64, 1, 0] {
            let start = T0 + k * piece;
            table.record(
                &uni(a, b, TCP, 1000 * (k + 1), 10, start, start + piece - NS),
                &inside_10,
                &mut sink,
            );
        }
        let said = sink.said();
        assert_eq!(said.len(), 3);
        assert!(said.iter().all(|s| s.uid == said[0].uid));
        assert_eq!(said[2].first_ns, T0);
        assert_eq!(said[2].last_ns, T0 + 3 * piece - NS);
        assert!(said.windows(2).all(|w| w[1].last_ns >= w[0].last_ns));
        assert_eq!(said[2].bytes_out, 6000);
        let session_uid = said[0].uid;

        // A record of a session that ended well before this one began: a flow of its own.
        table.record(
            &uni(a, b, TCP, 77, 1, T0 - 600 * NS, T0 - 599 * NS),
            &inside_10,
            &mut sink,
        );
        let (flow, late) = sink.last();
        assert_eq!(late.kind, UpdateKind::Final);
        assert_ne!(late.uid, session_uid);
        assert_eq!((flow.first_ns, late.bytes_out), (T0 - 600 * NS, 77));
        assert_eq!(table.counters.late_records, 1);
        assert_eq!(table.len(), 1, "the later session stays open");
    }

    #[test]
    fn end_of_flow_records_close_the_flow_once_both_directions_are_in() {
        let client = ("10.0.0.12", 47000);
        let server = ("203.0.113.12", 80);
        let ended = |r: FlowRecord| FlowRecord {
            end_reason: Some(END_OF_FLOW),
            ..r
        };
        let mut table = RecordTable::new(&config());
        let mut sink = Collect::default();
        table.record(
            &ended(with_flags(
                uni(client, server, TCP, 400, 6, T0, T0 + NS),
                SYN | ACK | PSH | FIN,
            )),
            &inside_10,
            &mut sink,
        );
        assert_eq!(
            sink.last().1.kind,
            UpdateKind::Interim,
            "the reverse is still to come"
        );
        table.record(
            &ended(with_flags(
                uni(server, client, TCP, 4000, 5, T0, T0 + NS),
                SYN | ACK | PSH | FIN,
            )),
            &inside_10,
            &mut sink,
        );
        let (_, said) = sink.last();
        assert_eq!((said.kind, said.conn_state), (UpdateKind::Final, "SF"));
        assert_eq!((said.bytes_out, said.bytes_in), (400, 4000));
        assert_eq!(table.counters.flows_closed, 1);
        assert!(table.is_empty());
        let closed_uid = said.uid;
        // Reuse of the 4-tuple: a new flow.
        table.record(
            &uni(client, server, TCP, 40, 1, T0 + 2 * NS, T0 + 2 * NS),
            &inside_10,
            &mut sink,
        );
        assert_ne!(sink.last().1.uid, closed_uid);

        // A rejected biflow closes at once and is never tabled.
        let mut table = RecordTable::new(&config());
        let mut sink = Collect::default();
        table.record(
            &FlowRecord {
                rev_octets: 40,
                rev_packets: 1,
                rev_tcp_flags: Some(RST | ACK),
                end_reason: Some(END_OF_FLOW),
                ..with_flags(uni(client, server, TCP, 44, 1, T0, T0), SYN)
            },
            &inside_10,
            &mut sink,
        );
        let (_, said) = sink.last();
        assert_eq!((said.kind, said.conn_state), (UpdateKind::Final, "REJ"));
        assert!(said.unanswered_attempt);
        assert!(table.is_empty());
        // Idle and active timeouts do not close.
        table.record(
            &FlowRecord {
                rev_octets: 40,
                rev_packets: 1,
                rev_tcp_flags: Some(SYN | ACK | FIN),
                end_reason: Some(1),
                ..with_flags(uni(client, server, TCP, 44, 1, T0, T0), SYN | ACK | FIN)
            },
            &inside_10,
            &mut sink,
        );
        assert_eq!(sink.last().1.kind, UpdateKind::Interim);
    }

    #[test]
    fn pairing_waits_for_the_other_direction() {
        let mut table = RecordTable::new(&ExportConfig {
            pair_wait_seconds: 30,
            ..config()
        });
        let mut sink = Collect(Vec::new());
        // An hour-long upload's forward record: nothing reaches detectors yet...
        let up = uni(
            ("10.0.0.5", 40000),
            ("198.51.100.9", 443),
            6,
            50_000_000,
            40_000,
            0,
            3_600 * NS,
        );
        table.record(&up, &inside_10, &mut sink);
        assert!(sink.0.is_empty());
        // ...until its reverse arrives: the first update has both directions.
        let down = uni(
            ("198.51.100.9", 443),
            ("10.0.0.5", 40000),
            6,
            2_000_000,
            20_000,
            0,
            3_600 * NS,
        );
        table.record(&down, &inside_10, &mut sink);
        assert_eq!(sink.0.len(), 1);
        assert_eq!(sink.last().1.bytes_in, 2_000_000);
        assert_eq!(sink.last().1.bytes_out, 50_000_000);
        // A SYN nobody answers is seen once the wait has passed in event time.
        let syn = uni(
            ("10.0.0.5", 40001),
            ("198.51.100.10", 80),
            6,
            60,
            1,
            100 * NS,
            100 * NS,
        );
        table.record(&syn, &inside_10, &mut sink);
        table.expire(129 * NS, &inside_10, &mut sink);
        assert_eq!(sink.0.len(), 1);
        table.expire(131 * NS, &inside_10, &mut sink);
        assert_eq!(sink.0.len(), 2);
        assert_eq!(sink.last().1.bytes_in, 0);
        assert_eq!(table.counters.unpaired_flows, 1);
    }

    #[test]
    fn flush_orders_by_first_seen_then_uid() {
        let mut table = RecordTable::new(&config());
        let mut sink = Collect::default();
        for (port, at) in [(1u16, 30u64), (2, 10), (3, 20), (4, 10)] {
            let t = T0 + at * NS;
            table.record(
                &uni(
                    ("10.0.0.1", 40000 + port),
                    ("203.0.113.1", 53),
                    UDP,
                    60,
                    1,
                    t,
                    t,
                ),
                &inside_10,
                &mut sink,
            );
        }
        sink.0.clear();
        table.flush(&inside_10, &mut sink);
        let order: Vec<u16> = sink.0.iter().map(|(f, _)| f.orig.1 - 40000).collect();
        assert_eq!(order, vec![2, 4, 3, 1]);
        assert!(sink.said().iter().all(|s| s.kind == UpdateKind::Final));
    }

    #[test]
    fn bad_records_do_not_panic_or_linger() {
        let mut table = RecordTable::new(&ExportConfig {
            max_flows: 0,
            stitch_gap_seconds: u64::MAX,
            idle_timeout_seconds: u64::MAX,
            ..config()
        });
        let mut sink = Collect::default();
        let a = ("10.0.0.1", 1);
        let b = ("203.0.113.1", 2);
        table.record(&uni(a, b, TCP, 0, 0, T0, T0), &inside_10, &mut sink);
        assert_eq!(table.counters.empty_records, 1);
        assert!(sink.0.is_empty());
        // End before start, sampling 0, extreme times and counters.
        for (start, end) in [(T0, 0), (u64::MAX, u64::MAX), (0, u64::MAX)] {
            table.record(
                &FlowRecord {
                    sampling: 0,
                    ..uni(a, b, TCP, u64::MAX, u64::MAX, start, end)
                },
                &inside_10,
                &mut sink,
            );
        }
        let (flow, said) = sink.last();
        assert!(said.last_ns >= said.first_ns);
        assert_eq!(flow.orig_bytes, u64::MAX, "saturates");
        assert_eq!(flow.sampling, 1);
        // max_flows 0 still keeps one flow.
        table.record(
            &uni(a, ("203.0.113.2", 2), UDP, 1, 1, T0, T0),
            &inside_10,
            &mut sink,
        );
        assert_eq!(table.len(), 1);
        assert_eq!(table.counters.flows_evicted, 1);
        table.expire(u64::MAX, &inside_10, &mut sink);
        table.flush(&inside_10, &mut sink);
        assert!(table.is_empty());
    }

    #[test]
    fn many_flows_stay_bounded() {
        let mut table = RecordTable::new(&ExportConfig {
            max_flows: 50_000,
            ..config()
        });
        let mut sink = CountSink::default();
        for i in 0..200_000u32 {
            let t = T0 + u64::from(i) * 1_000_000;
            let record = FlowRecord {
                src: IpAddr::from([10, 0, (i >> 8) as u8, i as u8]),
                src_port: 40000 + (i % 20000) as u16,
                ..uni(("0.0.0.0", 0), ("203.0.113.1", 443), TCP, 40, 1, t, t)
            };
            table.record(&record, &inside_10, &mut sink);
            if i % 1000 == 0 {
                table.expire(t, &inside_10, &mut sink);
            }
        }
        assert!(table.len() <= 50_000);
        assert_eq!(table.counters.flows_created, 200_000);
        assert_eq!(
            table.counters.flows_evicted + table.counters.flows_expired + table.len() as u64,
            200_000
        );
        assert_eq!(sink.finals + table.len() as u64, 200_000);
        table.flush(&inside_10, &mut sink);
        assert_eq!(sink.finals, 200_000);
    }

    #[derive(Default)]
    struct CountSink {
        finals: u64,
    }

    impl RecordSink for CountSink {
        fn export_flow(
            &mut self,
            _flow: &ExportFlow,
            update: &FlowUpdate<'_>,
            _: &mut Option<FlowMemo>,
        ) {
            if update.kind == UpdateKind::Final {
                self.finals += 1;
            }
        }
    }

    // --- Records as tshark decoded them from public captures ---

    fn oracle(file: &str) -> Value {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/captures/public")
            .join(format!("{file}.oracle.json"));
        let text = std::fs::read_to_string(&path).expect("oracle file");
        serde_json::from_str(&text).expect("oracle json")
    }

    /// A value, or the first and second of a biflow list.
    fn pair_u64(v: &Value) -> (u64, u64) {
        match v {
            Value::Array(items) => (
                items.first().and_then(Value::as_u64).unwrap_or(0),
                items.get(1).and_then(Value::as_u64).unwrap_or(0),
            ),
            other => (other.as_u64().unwrap_or(0), 0),
        }
    }

    fn pair_flags(v: Option<&Value>) -> (Option<u8>, Option<u8>) {
        let parse = |v: &Value| {
            v.as_str()
                .and_then(|s| u8::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        };
        match v {
            Some(Value::Array(items)) => {
                (items.first().and_then(parse), items.get(1).and_then(parse))
            }
            Some(other) => (parse(other), None),
            None => (None, None),
        }
    }

    /// Absolute times as they are; exporter-uptime seconds placed after T0.
    fn time_ns(v: &Value, kind: &Value) -> u64 {
        let s = v.as_str().expect("time");
        if kind.as_str() == Some("absolute_utc") {
            let t = chrono::DateTime::parse_from_rfc3339(s).expect("rfc3339");
            return u64::try_from(t.timestamp_nanos_opt().expect("ns")).expect("after 1970");
        }
        let (secs, frac) = s.split_once('.').unwrap_or((s, "0"));
        let frac = format!("{frac:0<9}");
        T0 + secs.parse::<u64>().expect("secs") * NS + frac[..9].parse::<u64>().expect("frac")
    }

    /// Flow records of an oracle (single-address records only), scaled by `sampling`.
    fn oracle_records(doc: &Value, source: RecordSource, sampling: u32) -> Vec<FlowRecord> {
        let records = doc["flow_export"]["records"].as_array().expect("records");
        records
            .iter()
            .filter(|r| r["has_flow_keys"] == Value::Bool(true) && r["src_addr"].is_string())
            .map(|r| {
                let (octets, rev_octets) = pair_u64(&r["octets"]);
                let (packets, rev_packets) = pair_u64(&r["packets"]);
                let (tcp_flags, rev_tcp_flags) = pair_flags(r["fields"].get("cflow.tcpflags"));
                let scale = u64::from(sampling);
                FlowRecord {
                    source,
                    exporter: ip(r["exporter"].as_str().expect("exporter")),
                    src: ip(r["src_addr"].as_str().expect("src")),
                    dst: ip(r["dst_addr"].as_str().expect("dst")),
                    src_port: r["src_port"].as_u64().expect("sport") as u16,
                    dst_port: r["dst_port"].as_u64().expect("dport") as u16,
                    proto: r["protocol"].as_u64().expect("proto") as u8,
                    octets: octets * scale,
                    packets: packets * scale,
                    rev_octets: rev_octets * scale,
                    rev_packets: rev_packets * scale,
                    start_ns: time_ns(&r["start"], &r["start_kind"]),
                    end_ns: time_ns(&r["end"], &r["end_kind"]),
                    tcp_flags,
                    rev_tcp_flags: if rev_packets > 0 { rev_tcp_flags } else { None },
                    sampling,
                    end_reason: r["fields"]
                        .get("cflow.flow_end_reason")
                        .and_then(Value::as_str)
                        .and_then(|s| s.parse().ok()),
                }
            })
            .collect()
    }

    #[test]
    fn real_ipfix_biflows() {
        // ipfixprobe biflows: DNS, NetBIOS broadcast, SMTP and ICMP from 10.10.1.4's LAN.
        let doc = oracle("akvorado__ipfixprobe-templates+data.pcap");
        let records = oracle_records(&doc, RecordSource::Ipfix, 1);
        assert_eq!(records.len(), 4);
        let mut table = RecordTable::new(&config());
        let mut sink = Collect::default();
        for r in &records {
            table.record(r, &inside_10, &mut sink);
        }
        assert_eq!(sink.0.len(), 4);
        for (r, (flow, said)) in records.iter().zip(&sink.0) {
            assert_eq!(
                said.kind,
                UpdateKind::Interim,
                "flowEndReason 4 (forced) does not close"
            );
            assert_eq!(flow.orig, (r.src, r.src_port));
            assert_eq!((flow.orig_bytes, flow.resp_bytes), (r.octets, r.rev_octets));
            assert_eq!((flow.first_ns, flow.last_ns), (r.start_ns, r.end_ns));
        }
        let smtp = &sink.0[2].1;
        assert_eq!(smtp.outside, (ip("74.53.140.153"), 25));
        assert_eq!((smtp.bytes_out, smtp.bytes_in), (21673, 1546));
        assert_eq!((smtp.pkts_out, smtp.pkts_in), (28, 25));
        assert_eq!(smtp.conn_state, "SF", "0x1b both ways: SYN, FIN, PSH, ACK");
        let dns = &sink.0[0].1;
        assert_eq!(
            (dns.outside.1, dns.conn_state, dns.answered),
            (53, "SF", true)
        );
        let netbios = &sink.0[1].1;
        assert_eq!((netbios.conn_state, netbios.answered), ("S0", false));
        let icmp = &sink.0[3].1;
        assert_eq!(icmp.inside, (ip("10.10.1.4"), 0));
        assert!(icmp.inbound, "192.168.1.1 (outside here) sent to 10.10.1.4");
        assert_eq!((icmp.bytes_in, icmp.conn_state), (2304, "S0"));
    }

    #[test]
    fn real_netflow_v9_sampled_unidirectional_pair() {
        let doc = oracle("akvorado__nfv9-data+templates.pcap");
        // The exporter's options data announces 1-in-100 sampling.
        let sampling: u32 = doc["flow_export"]["records"]
            .as_array()
            .expect("records")
            .iter()
            .find_map(|r| {
                r["fields"]
                    .get("cflow.sampling_interval")?
                    .as_str()?
                    .parse()
                    .ok()
            })
            .expect("sampling interval");
        assert_eq!(sampling, 100);
        let records = oracle_records(&doc, RecordSource::NetflowV9, sampling);
        assert_eq!(records.len(), 10);
        let mut table = RecordTable::new(&config());
        let mut sink = Collect::default();
        for r in &records {
            table.record(r, &|_| true, &mut sink);
        }
        // 120.120.15.78:80 <-> 120.120.150.119:45654 comes as one record per direction.
        assert_eq!(table.counters.flows_created, 9);
        assert_eq!(table.counters.records_stitched, 1);
        let server = (ip("120.120.15.78"), 80);
        let client = (ip("120.120.150.119"), 45654);
        let pair: Vec<&(ExportFlow, Said)> = sink
            .0
            .iter()
            .filter(|(f, _)| f.resp == server && f.orig == client)
            .collect();
        assert_eq!(pair.len(), 2, "both updates oriented client -> server");
        let (flow, said) = pair[1];
        assert_eq!(pair[0].1.uid, said.uid);
        assert_eq!((flow.orig_bytes, flow.orig_pkts), (312 * 100, 6 * 100));
        assert_eq!((flow.resp_bytes, flow.resp_pkts), (13500 * 100, 9 * 100));
        assert_eq!(said.conn_state, "OTH", "no SYN exported: mid-stream");
        // Sampled one-sided flows are not unanswered attempts.
        assert!(
            sink.said()
                .iter()
                .all(|s| s.answered && !s.unanswered_attempt)
        );
    }

    #[test]
    fn real_netflow_v5_server_side_records_are_answered_flows() {
        // A BNG exports what its customers (202.x, 61.6.x, 119.160.x) receive: one direction.
        let doc = oracle("akvorado__nfv5.pcap");
        let records = oracle_records(&doc, RecordSource::NetflowV5, 1);
        assert_eq!(records.len(), 29);
        let customers = |addr: IpAddr| match addr {
            IpAddr::V4(v4) => matches!(v4.octets(), [202, ..] | [61, 6, ..] | [119, 160, ..]),
            IpAddr::V6(_) => false,
        };
        let mut table = RecordTable::new(&config());
        let mut sink = Collect::default();
        for r in &records {
            table.record(r, &customers, &mut sink);
        }
        let keys: std::collections::HashSet<FlowKey> = records
            .iter()
            .map(|r| FlowKey::new((r.src, r.src_port), (r.dst, r.dst_port), r.proto))
            .collect();
        assert_eq!(table.len(), keys.len());
        let mut by_port = 0;
        for (r, (flow, said)) in records.iter().zip(&sink.0) {
            assert!(customers(said.inside.0), "{r:?} {said:?}");
            assert_eq!(
                (said.bytes_in, said.pkts_in, said.bytes_out),
                (r.octets, r.packets, 0)
            );
            // A well-known or registered service port against a dynamic client port.
            if r.src_port < 1024 || (r.src_port < 32_768 && r.dst_port >= 32_768) {
                by_port += 1;
                assert_eq!(flow.orig, (r.dst, r.dst_port), "the client originates");
                assert!(!said.inbound && said.answered);
                assert_eq!(said.conn_state, "OTH");
            } else {
                // No port tells: the record's src originates.
                assert_eq!(flow.orig, (r.src, r.src_port));
                assert!(said.inbound);
            }
            if r.proto == TCP {
                // Every TCP record here carries ACK: the other direction exists, unexported.
                assert!(r.tcp_flags.is_some_and(|f| f & ACK != 0));
                assert!(said.answered && !said.unanswered_attempt, "{r:?}");
            }
        }
        // 26 records come from port 443, one from 3724 to a dynamic port.
        assert_eq!(by_port, 27);
    }
}
