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
//! say `answered`, so fan-out does not count sampled flows as unanswered attempts.
//!
//! Cost: flows sit in a hash map; an ordered index of (last_ns, uid) gives the next flow to
//! expire or evict in O(log n), so `expire` costs O(log n) per ended flow plus one peek.
use super::{ExportConfig, FlowRecord, RecordSource};
use crate::decode::packet::ip_proto;
use crate::flow::key::{FlowKey, Uid};
use crate::flow::tcp_state::flags;
use crate::flow::update::{FlowUpdate, UpdateKind};
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use std::net::IpAddr;

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
    /// TCP with flags: no reply and orig SYN: "S0" ("RSTOS0" with an orig RST, "SH" with an
    /// orig FIN); responder RST without SYN after an orig SYN (or unknown orig flags): "REJ";
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
            return if !has(o, flags::SYN) {
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

    /// The responder sent something, or the flow is sampled and its silence proves nothing.
    pub fn answered(&self) -> bool {
        self.resp_pkts > 0 || self.is_sampled()
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
    fn export_flow(&mut self, flow: &ExportFlow, update: &FlowUpdate<'_>);
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
}

pub struct RecordTable {
    stitch_gap_ns: u64,
    idle_timeout_ns: u64,
    max_flows: usize,
    next_uid: u64,
    flows: FxHashMap<FlowKey, Entry>,
    /// Every tabled flow by (last_ns, uid): the front idles out, or is evicted, first.
    by_last: BTreeMap<(u64, Uid), FlowKey>,
    pub counters: RecordTableCounters,
}

impl RecordTable {
    pub fn new(config: &ExportConfig) -> RecordTable {
        RecordTable {
            stitch_gap_ns: config.stitch_gap_seconds.saturating_mul(NS),
            idle_timeout_ns: config.idle_timeout_seconds.saturating_mul(NS),
            max_flows: config.max_flows.max(1),
            next_uid: 0,
            flows: FxHashMap::default(),
            by_last: BTreeMap::new(),
            counters: RecordTableCounters::default(),
        }
    }

    /// Flows in the table.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
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
        let joins = self.flows.get(&key).map(|entry| {
            if start > entry.flow.last_ns.saturating_add(late_gap) {
                Join::Restart
            } else if end.saturating_add(late_gap) < entry.flow.first_ns {
                Join::Late
            } else {
                Join::Stitch
            }
        });
        match joins {
            Some(Join::Stitch) => {
                self.counters.records_stitched += 1;
                self.stitch(key, record, start, end, is_inside, sink);
                return;
            }
            Some(Join::Late) => {
                self.counters.late_records += 1;
                let late = self.new_flow(record, start, end);
                sink.export_flow(&late.flow, &late.flow.update(UpdateKind::Final, is_inside));
                return;
            }
            Some(Join::Restart) => {
                self.counters.gap_restarts += 1;
                self.end_flow(&key, is_inside, sink);
            }
            None => {}
        }

        let entry = self.new_flow(record, start, end);
        if closes(&entry.flow, record) {
            self.counters.flows_closed += 1;
            sink.export_flow(
                &entry.flow,
                &entry.flow.update(UpdateKind::Final, is_inside),
            );
            return;
        }
        while self.flows.len() >= self.max_flows {
            let Some(oldest) = self.pop_oldest() else {
                break;
            };
            self.counters.flows_evicted += 1;
            sink.export_flow(&oldest, &oldest.update(UpdateKind::Final, is_inside));
        }
        sink.export_flow(
            &entry.flow,
            &entry.flow.update(UpdateKind::Interim, is_inside),
        );
        self.by_last
            .insert((entry.flow.last_ns, entry.flow.uid), key);
        self.flows.insert(key, entry);
    }

    /// Ends flows idle past the timeout at event time `now_ns` (Final updates), oldest first.
    pub fn expire(
        &mut self,
        now_ns: u64,
        is_inside: &dyn Fn(IpAddr) -> bool,
        sink: &mut dyn RecordSink,
    ) {
        while let Some((&(last_ns, _), _)) = self.by_last.first_key_value() {
            if last_ns.saturating_add(self.idle_timeout_ns) >= now_ns {
                break;
            }
            if let Some(flow) = self.pop_oldest() {
                self.counters.flows_expired += 1;
                sink.export_flow(&flow, &flow.update(UpdateKind::Final, is_inside));
            }
        }
    }

    /// Ends every flow (end of input), ordered by first_ns then uid.
    pub fn flush(&mut self, is_inside: &dyn Fn(IpAddr) -> bool, sink: &mut dyn RecordSink) {
        self.by_last.clear();
        let mut flows: Vec<ExportFlow> = self.flows.drain().map(|(_, e)| e.flow).collect();
        flows.sort_unstable_by_key(|f| (f.first_ns, f.uid));
        for flow in &flows {
            sink.export_flow(flow, &flow.update(UpdateKind::Final, is_inside));
        }
    }

    /// Removes the flow with the oldest last_ns (ties: lowest uid). Pops the index first so
    /// every call makes progress.
    fn pop_oldest(&mut self) -> Option<ExportFlow> {
        let (_, key) = self.by_last.pop_first()?;
        self.flows.remove(&key).map(|entry| entry.flow)
    }

    /// Removes a tabled flow and sends its Final update.
    fn end_flow(
        &mut self,
        key: &FlowKey,
        is_inside: &dyn Fn(IpAddr) -> bool,
        sink: &mut dyn RecordSink,
    ) {
        let Some(entry) = self.flows.remove(key) else {
            return;
        };
        self.by_last.remove(&(entry.flow.last_ns, entry.flow.uid));
        sink.export_flow(
            &entry.flow,
            &entry.flow.update(UpdateKind::Final, is_inside),
        );
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
        Entry { flow, basis }
    }

    /// Adds a record to the tabled flow of `key`.
    fn stitch(
        &mut self,
        key: FlowKey,
        record: &FlowRecord,
        start: u64,
        end: u64,
        is_inside: &dyn Fn(IpAddr) -> bool,
        sink: &mut dyn RecordSink,
    ) {
        let Some(entry) = self.flows.get_mut(&key) else {
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

        let flow = &entry.flow;
        if flow.last_ns != old_last {
            self.by_last.remove(&(old_last, flow.uid));
            self.by_last.insert((flow.last_ns, flow.uid), key);
        }
        if !closes(flow, record) {
            sink.export_flow(flow, &flow.update(UpdateKind::Interim, is_inside));
            return;
        }
        self.counters.flows_closed += 1;
        self.end_flow(&key, is_inside, sink);
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
        (false, true) if flow.orig.1 >= EPHEMERAL_PORT_MIN => Some(true),
        (true, false) if flow.resp.1 >= EPHEMERAL_PORT_MIN => Some(false),
        _ => None,
    }
}

/// The record reports the end of a TCP connection whose both directions were seen.
fn closes(flow: &ExportFlow, record: &FlowRecord) -> bool {
    let seen_flags = flow.orig_flags.unwrap_or(0) | flow.resp_flags.unwrap_or(0);
    record.end_reason == Some(END_OF_FLOW)
        && flow.proto == ip_proto::TCP
        && seen_flags & (flags::FIN | flags::RST) != 0
        && flow.both_directions_seen()
}
