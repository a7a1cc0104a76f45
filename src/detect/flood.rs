//! FloodParticipation (T1496.002 botnets): outbound packet or bit rate to one outside target
//! over a threshold, FastNetMon style (per second, averaged over `average_seconds`), summed
//! over every source, spoofed ones included.
//!
//! Rates come from flow updates: each update's delta is spread evenly over the span it covers
//! (from the flow's previous update, or its first packet) into per-second buckets. Updates
//! arrive late and out of order (idle timeouts, and the flow table's checkpoint walks its slab
//! right before a window closes), so the buckets are judged when the window closes, when every
//! packet up to its end has been reported. Per-second buckets are kept only for targets whose
//! window volume could amount to a flood; the others keep totals.
use super::windows::ClosedWindow;
use super::{Branch, Detector, Finding, FlowView, human_bytes, human_duration};
use crate::enrich::geo::CountryCode;
use crate::flow::key::Uid;
use crate::flow::update::UpdateKind;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::VecDeque;
use std::net::IpAddr;

const NS: u64 = 1_000_000_000;
/// Example flows in a finding's evidence.
const MAX_EXAMPLES: usize = 10;
/// (protocol, port) pairs counted per target; a flood aims at one or a few.
const MAX_PORTS_PER_TARGET: usize = 8;
/// Seconds of buckets per target: two hours covers the longest usual window (3600 s) with
/// room for flows reported late; older seconds are dropped (counted).
const MAX_RATE_SECONDS: usize = 7200;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FloodConfig {
    pub enabled: bool,
    /// TrafficRateThreshold: packets per second to one outside target (0: off).
    pub threshold_pps: u64,
    /// TrafficRateThreshold: megabits per second to one outside target (0: off).
    pub threshold_mbps: u64,
    /// TimeWindow: seconds the per-second rate is averaged over.
    pub average_seconds: u64,
    /// Strength of a finding; `strong_bonus` is added at `strong_factor` times a threshold.
    pub strength: u8,
    pub strong_factor: f64,
    pub strong_bonus: u8,
    /// Outside targets tracked per window; beyond it the quietest half is evicted (counted).
    pub max_targets: usize,
    /// Targets with per-second buckets at once (each up to 2 h of buckets); beyond it a
    /// target keeps only totals (counted).
    pub max_rate_targets: usize,
    /// Flows whose previous update time is remembered (to know what span a delta covers).
    pub max_tracked_flows: usize,
    /// Distinct sources remembered per window over all targets; beyond it new flows count
    /// as possible new sources (reported as an estimate).
    pub max_sources: usize,
}

impl Default for FloodConfig {
    fn default() -> Self {
        FloodConfig {
            enabled: true,
            threshold_pps: 5000,
            threshold_mbps: 100,
            average_seconds: 10,
            strength: 80,
            strong_factor: 5.0,
            strong_bonus: 10,
            max_targets: 65_536,
            max_rate_targets: 1024,
            max_tracked_flows: 1_000_000,
            max_sources: 1_000_000,
        }
    }
}

/// Counters of the detector's bounded state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FloodCounters {
    pub targets_evicted: u64,
    pub rate_targets_full: u64,
    pub flows_untracked: u64,
    pub seconds_dropped: u64,
    pub sources_untracked: u64,
}

/// Per-second packets and bytes of one target, from `base_s` on.
#[derive(Debug, Default)]
struct Rate {
    base_s: u64,
    buckets: VecDeque<(u64, u64)>,
}

impl Rate {
    /// Adds to second `s`, growing the buckets; seconds too far from the rest are dropped.
    fn add(&mut self, s: u64, pkts: u64, bytes: u64, dropped: &mut u64) {
        if self.buckets.is_empty() {
            self.base_s = s;
        }
        while s < self.base_s {
            if self.buckets.len() >= MAX_RATE_SECONDS {
                *dropped += 1;
                return;
            }
            self.buckets.push_front((0, 0));
            self.base_s -= 1;
        }
        let mut index = (s - self.base_s) as usize;
        while index >= MAX_RATE_SECONDS {
            self.buckets.pop_front();
            self.base_s += 1;
            index -= 1;
            *dropped += 1;
        }
        while self.buckets.len() <= index {
            self.buckets.push_back((0, 0));
        }
        if let Some(b) = self.buckets.get_mut(index) {
            b.0 = b.0.saturating_add(pkts);
            b.1 = b.1.saturating_add(bytes);
        }
    }

    /// Spreads `pkts`/`bytes` evenly over [start_ns, end_ns], in proportion to each second's
    /// overlap. Shares are cut from cumulative totals, so rounding never loses a packet.
    fn spread(&mut self, start_ns: u64, end_ns: u64, pkts: u64, bytes: u64, dropped: &mut u64) {
        let end_ns = end_ns.max(start_ns);
        let span = end_ns - start_ns;
        let (first_s, last_s) = (start_ns / NS, end_ns / NS);
        if first_s == last_s {
            self.add(last_s, pkts, bytes, dropped);
            return;
        }
        // A span longer than the buckets: its oldest part could never be kept anyway.
        let from_s = first_s.max(last_s.saturating_sub(MAX_RATE_SECONDS as u64 - 1));
        *dropped += from_s - first_s;
        let share = |upto_ns: u64, total: u64| {
            (u128::from(total) * u128::from(upto_ns.saturating_sub(start_ns)) / u128::from(span))
                as u64
        };
        let from_ns = from_s.saturating_mul(NS).max(start_ns);
        let (mut done_p, mut done_b) = (share(from_ns, pkts), share(from_ns, bytes));
        for s in from_s..=last_s {
            let upto_ns = s.saturating_add(1).saturating_mul(NS).min(end_ns);
            let (cum_p, cum_b) = (share(upto_ns, pkts), share(upto_ns, bytes));
            let (p, b) = (cum_p.saturating_sub(done_p), cum_b.saturating_sub(done_b));
            if p > 0 || b > 0 {
                self.add(s, p, b, dropped);
            }
            (done_p, done_b) = (cum_p, cum_b);
        }
    }
}

#[derive(Debug, Clone, Serialize)]
struct Example {
    uid: String,
    source: IpAddr,
    source_port: u16,
    port: u16,
    proto: u8,
    pkts_out: u64,
    bytes_out: u64,
}

#[derive(Debug)]
struct Target {
    pkts: u64,
    bytes: u64,
    bytes_in: u64,
    flows: u64,
    /// Event time covered by the data not yet in buckets (spread over it on promotion).
    pending_pkts: u64,
    pending_bytes: u64,
    pending_from_ns: u64,
    pending_to_ns: u64,
    first_source: IpAddr,
    first_inside: Option<IpAddr>,
    sources: FxHashSet<IpAddr>,
    inside_sources: u64,
    spoofed_sources: u64,
    /// New flows from sources that could not be remembered (budget): possibly new sources.
    unchecked_sources: u64,
    ports: Vec<(u8, u16, u64)>,
    country: Option<CountryCode>,
    asn: Option<u32>,
    examples: Vec<Example>,
    rate: Option<Rate>,
}

pub struct FloodDetector {
    config: FloodConfig,
    /// Previous update time of each counted flow; removed at its final update.
    last_update: FxHashMap<Uid, u64>,
    targets: FxHashMap<IpAddr, Target>,
    rate_targets: usize,
    sources_held: usize,
    pub counters: FloodCounters,
}

impl FloodDetector {
    pub fn new(config: FloodConfig) -> FloodDetector {
        FloodDetector {
            config,
            last_update: FxHashMap::default(),
            targets: FxHashMap::default(),
            rate_targets: 0,
            sources_held: 0,
            counters: FloodCounters::default(),
        }
    }

    fn average_seconds(&self) -> u64 {
        self.config.average_seconds.max(1)
    }

    fn threshold_bps(&self) -> f64 {
        self.config.threshold_mbps as f64 * 1e6
    }

    /// Window volume that could make a flood: below both, no averaging period can be over.
    fn could_flood(&self, pkts: u64, bytes: u64) -> bool {
        let avg = self.average_seconds();
        (self.config.threshold_pps > 0 && pkts >= self.config.threshold_pps.saturating_mul(avg))
            || (self.config.threshold_mbps > 0
                && bytes as f64 * 8.0 >= self.threshold_bps() * avg as f64)
    }

    /// Makes room for a new target: the quietest half of the targets without buckets goes.
    fn make_room(&mut self) {
        let mut quiet: Vec<(u64, u64, IpAddr)> = self
            .targets
            .iter()
            .filter(|(_, t)| t.rate.is_none())
            .map(|(ip, t)| (t.pkts, t.bytes, *ip))
            .collect();
        quiet.sort_unstable();
        let n = quiet.len().div_ceil(2);
        for (_, _, ip) in quiet.into_iter().take(n) {
            if let Some(t) = self.targets.remove(&ip) {
                self.sources_held = self.sources_held.saturating_sub(t.sources.len());
                self.counters.targets_evicted += 1;
            }
        }
    }

    fn evaluate(&self, target_ip: IpAddr, t: &Target) -> Option<Finding> {
        let rate = t.rate.as_ref()?;
        let avg = self.average_seconds();
        let (thr_pps, thr_bps) = (self.config.threshold_pps, self.threshold_bps());
        let over = |pps: f64, bps: f64| {
            (thr_pps > 0 && pps >= thr_pps as f64) || (thr_bps > 0.0 && bps >= thr_bps)
        };
        let (mut sum_p, mut sum_b) = (0u64, 0u64);
        let (mut peak_pps, mut peak_bps) = (0f64, 0f64);
        let mut crossed_s = None;
        let mut seconds_over = 0u64;
        for (i, &(p, b)) in rate.buckets.iter().enumerate() {
            sum_p = sum_p.saturating_add(p);
            sum_b = sum_b.saturating_add(b);
            if let Some(&(old_p, old_b)) = i
                .checked_sub(avg as usize)
                .and_then(|j| rate.buckets.get(j))
            {
                sum_p = sum_p.saturating_sub(old_p);
                sum_b = sum_b.saturating_sub(old_b);
            }
            let pps = sum_p as f64 / avg as f64;
            let bps = sum_b as f64 * 8.0 / avg as f64;
            peak_pps = peak_pps.max(pps);
            peak_bps = peak_bps.max(bps);
            if crossed_s.is_none() && over(pps, bps) {
                crossed_s = Some(rate.base_s + i as u64);
            }
            if over(p as f64, b as f64 * 8.0) {
                seconds_over += 1;
            }
        }
        let crossed_s = crossed_s?;
        // A flood whose packets spread thinner than a second at a time still lasted the period.
        let seconds_over = seconds_over.max(1);
        let factor = f64::max(
            if thr_pps > 0 {
                peak_pps / thr_pps as f64
            } else {
                0.0
            },
            if thr_bps > 0.0 {
                peak_bps / thr_bps
            } else {
                0.0
            },
        );
        let strength = if factor >= self.config.strong_factor {
            self.config
                .strength
                .saturating_add(self.config.strong_bonus)
        } else {
            self.config.strength
        }
        .min(100);
        let (proto, port) = dominant_port(t);
        let service = match (proto, port) {
            (Some(p), Some(port)) => format!(" {}/{port}", proto_label(p)),
            (Some(p), None) => format!(" {} (many ports)", proto_label(p)),
            _ => String::new(),
        };
        let total_sources = t.sources.len() as u64 + t.unchecked_sources;
        let estimated = t.unchecked_sources > 0;
        let about = if estimated { "about " } else { "" };
        let from = match (t.inside_sources, t.spoofed_sources + t.unchecked_sources) {
            (0, spoofed) => format!("{about}{} spoofed sources", grouped(spoofed)),
            (1, 0) => "1 host".to_string(),
            (inside, 0) => format!("{} hosts", grouped(inside)),
            (inside, spoofed) => format!(
                "{} host{} and {about}{} spoofed sources",
                grouped(inside),
                if inside == 1 { "" } else { "s" },
                grouped(spoofed)
            ),
        };
        let summary = format!(
            "sent {} / {} to {target_ip}{service} for {} from {from}",
            human_pps(peak_pps),
            human_bps(peak_bps),
            human_duration(seconds_over as f64),
        );
        let evidence = json!({
            "target": target_ip,
            "proto": proto,
            "port": port,
            "peak_pps": peak_pps.round(),
            "peak_mbps": (peak_bps / 1e5).round() / 10.0,
            "average_seconds": avg,
            "threshold_pps": thr_pps,
            "threshold_mbps": self.config.threshold_mbps,
            "seconds_over_threshold": seconds_over,
            "packets": t.pkts,
            "bytes": t.bytes,
            "bytes_human": human_bytes(t.bytes),
            "flows": t.flows,
            "sources": total_sources,
            "inside_sources": t.inside_sources,
            "spoofed_sources": t.spoofed_sources + t.unchecked_sources,
            "sources_estimated": estimated,
            "example_flows": t.examples,
        });
        Some(Finding {
            branch: Branch::FloodParticipation,
            host: t.first_inside.unwrap_or(t.first_source),
            ts_ns: crossed_s.saturating_mul(NS),
            strength,
            destination: Some((target_ip, port.unwrap_or(0))),
            destination_name: None,
            bytes_out: t.bytes,
            bytes_in: t.bytes_in,
            duration_s: seconds_over as f64,
            country: t.country.map(|c| c.as_str().to_string()),
            asn: t.asn,
            summary,
            evidence,
        })
    }
}

/// The (protocol, port) that carried at least half the target's packets.
fn dominant_port(t: &Target) -> (Option<u8>, Option<u16>) {
    let Some(&(proto, port, pkts)) = t.ports.iter().max_by_key(|(pr, po, p)| (*p, *pr, *po)) else {
        return (None, None);
    };
    if pkts.saturating_mul(2) >= t.pkts {
        (Some(proto), Some(port))
    } else if t.ports.iter().all(|(p, _, _)| *p == proto) {
        (Some(proto), None)
    } else {
        (None, None)
    }
}

impl Detector for FloodDetector {
    fn flow(&mut self, view: &FlowView<'_>, _out: &mut Vec<Finding>) {
        let u = view.update;
        // Outbound only: what an inside host (or a spoofing one) sends to a target it chose.
        if !self.config.enabled || u.inbound || !routable(u.outside) {
            return;
        }
        let previous = if u.kind == UpdateKind::Final {
            self.last_update.remove(&u.uid)
        } else {
            let previous = self.last_update.get(&u.uid).copied();
            if previous.is_some() || self.last_update.len() < self.config.max_tracked_flows {
                self.last_update.insert(u.uid, u.last_ns);
            } else {
                // Its next delta is then spread from the flow's start: a lower rate, never higher.
                self.counters.flows_untracked += 1;
            }
            previous
        };
        let start_ns = match previous {
            Some(ns) if !view.first_update => ns,
            _ => u.first_ns,
        };
        let (pkts, bytes) = (view.delta.pkts_out, view.delta.bytes_out);
        if pkts == 0 && bytes == 0 && !view.first_update {
            return;
        }
        if !self.targets.contains_key(&u.outside) && self.targets.len() >= self.config.max_targets {
            self.make_room();
            if self.targets.len() >= self.config.max_targets {
                self.counters.targets_evicted += 1;
                return;
            }
        }
        let t = self.targets.entry(u.outside).or_insert_with(|| Target {
            pkts: 0,
            bytes: 0,
            bytes_in: 0,
            flows: 0,
            pending_pkts: 0,
            pending_bytes: 0,
            pending_from_ns: start_ns,
            pending_to_ns: u.last_ns,
            first_source: u.inside,
            first_inside: None,
            sources: FxHashSet::default(),
            inside_sources: 0,
            spoofed_sources: 0,
            unchecked_sources: 0,
            ports: Vec::new(),
            country: view.geo.country,
            asn: view.geo.asn,
            examples: Vec::new(),
            rate: None,
        });
        t.pkts = t.pkts.saturating_add(pkts);
        t.bytes = t.bytes.saturating_add(bytes);
        t.bytes_in = t.bytes_in.saturating_add(view.delta.bytes_in);
        if view.first_update {
            t.flows += 1;
            if t.sources.contains(&u.inside) {
                // Known source.
            } else if self.sources_held < self.config.max_sources {
                t.sources.insert(u.inside);
                self.sources_held += 1;
                if view.host_inside {
                    t.inside_sources += 1;
                    t.first_inside.get_or_insert(u.inside);
                } else {
                    t.spoofed_sources += 1;
                }
            } else {
                t.unchecked_sources += 1;
                self.counters.sources_untracked += 1;
            }
        }
        if view.host_inside {
            t.first_inside.get_or_insert(u.inside);
        }
        let port_slot = t
            .ports
            .iter()
            .position(|(pr, po, _)| *pr == u.proto && *po == u.outside_port);
        let full = t.ports.len() >= MAX_PORTS_PER_TARGET;
        match port_slot.and_then(|i| t.ports.get_mut(i)) {
            Some(entry) => entry.2 = entry.2.saturating_add(pkts),
            None if !full => t.ports.push((u.proto, u.outside_port, pkts)),
            None => {}
        }
        if t.examples.len() < MAX_EXAMPLES && view.first_update {
            t.examples.push(Example {
                uid: u.uid.to_string(),
                source: u.inside,
                source_port: u.inside_port,
                port: u.outside_port,
                proto: u.proto,
                pkts_out: u.pkts_out,
                bytes_out: u.bytes_out,
            });
        }
        if let Some(rate) = t.rate.as_mut() {
            rate.spread(
                start_ns,
                u.last_ns,
                pkts,
                bytes,
                &mut self.counters.seconds_dropped,
            );
            return;
        }
        let (pkts_total, bytes_total) = (t.pkts, t.bytes);
        let promote = self.could_flood(pkts_total, bytes_total);
        let room = self.rate_targets < self.config.max_rate_targets;
        let Some(t) = self.targets.get_mut(&u.outside) else {
            return;
        };
        if !promote || !room {
            if promote {
                self.counters.rate_targets_full += 1;
            }
            t.pending_pkts = t.pending_pkts.saturating_add(pkts);
            t.pending_bytes = t.pending_bytes.saturating_add(bytes);
            t.pending_from_ns = t.pending_from_ns.min(start_ns);
            t.pending_to_ns = t.pending_to_ns.max(u.last_ns);
            return;
        }
        self.rate_targets += 1;
        let dropped = &mut self.counters.seconds_dropped;
        let mut rate = Rate::default();
        // What came before has no finer timing than the span it covered.
        let (from_ns, to_ns) = (t.pending_from_ns, t.pending_to_ns);
        rate.spread(from_ns, to_ns, t.pending_pkts, t.pending_bytes, dropped);
        rate.spread(start_ns, u.last_ns, pkts, bytes, dropped);
        t.rate = Some(rate);
        t.pending_pkts = 0;
        t.pending_bytes = 0;
    }

    fn window(&mut self, _closed: &ClosedWindow, out: &mut Vec<Finding>) {
        let mut targets: Vec<(IpAddr, Target)> = self.targets.drain().collect();
        targets.sort_unstable_by_key(|(ip, _)| *ip);
        for (ip, t) in &targets {
            if let Some(finding) = self.evaluate(*ip, t) {
                out.push(finding);
            }
        }
        self.rate_targets = 0;
        self.sources_held = 0;
    }

    fn evicted(&self) -> u64 {
        self.counters.targets_evicted + self.counters.flows_untracked
    }
}

/// An address that can be an outside target: not private, loopback, link-local, multicast,
/// broadcast or unspecified (traffic between inside hosts is not egress).
pub(super) fn routable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_unspecified())
        }
        IpAddr::V6(v6) => {
            let first = v6.segments().first().copied().unwrap_or(0);
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || first & 0xfe00 == 0xfc00
                || first & 0xffc0 == 0xfe80)
        }
    }
}

/// "4,812": counts as analysts read them.
pub(super) fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// "TCP", "UDP", "ICMP", else the protocol number.
pub(super) fn proto_label(proto: u8) -> String {
    use crate::decode::packet::ip_proto;
    match proto {
        ip_proto::TCP => "TCP".to_string(),
        ip_proto::UDP => "UDP".to_string(),
        ip_proto::ICMP | ip_proto::ICMPV6 => "ICMP".to_string(),
        other => format!("proto {other}"),
    }
}

/// "52 kpps", "5.2 kpps", "800 pps".
fn human_pps(pps: f64) -> String {
    if pps >= 1e6 {
        format!("{:.1} Mpps", pps / 1e6)
    } else if pps >= 10e3 {
        format!("{:.0} kpps", pps / 1e3)
    } else if pps >= 1e3 {
        format!("{:.1} kpps", pps / 1e3)
    } else {
        format!("{pps:.0} pps")
    }
}

/// "310 Mbit/s", "1.2 Gbit/s".
fn human_bps(bps: f64) -> String {
    if bps >= 1e9 {
        format!("{:.1} Gbit/s", bps / 1e9)
    } else if bps >= 1e6 {
        format!("{:.0} Mbit/s", bps / 1e6)
    } else {
        format!("{:.0} kbit/s", bps / 1e3)
    }
}
