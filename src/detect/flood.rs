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
use crate::decode::packet::ip_proto;
use crate::enrich::geo::CountryCode;
use crate::flow::update::FlowUpdate;
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
    /// An update whose flow received at least this many times the bytes it sent is a
    /// download: its outbound packets are acknowledgements, not a flood (0: off).
    pub download_ratio: f64,
    /// Outside targets tracked per window; beyond it the quietest half is evicted (counted).
    pub max_targets: usize,
    /// Targets with per-second buckets at once (each up to 2 h of buckets); beyond it a
    /// target keeps only totals (counted).
    pub max_rate_targets: usize,
    /// No longer used (a delta's span now comes with the update); accepted so that older
    /// configs still load, with a warning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tracked_flows: Option<usize>,
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
            download_ratio: 4.0,
            max_targets: 65_536,
            max_rate_targets: 1024,
            max_tracked_flows: None,
            max_sources: 1_000_000,
        }
    }
}

/// Counters of the detector's bounded state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FloodCounters {
    pub targets_evicted: u64,
    pub rate_targets_full: u64,
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
        let mut index = usize::try_from(s - self.base_s).unwrap_or(usize::MAX);
        if index >= MAX_RATE_SECONDS {
            // Keep the newest MAX_RATE_SECONDS seconds; a jump past them all starts afresh.
            let shift = index - (MAX_RATE_SECONDS - 1);
            if shift >= self.buckets.len() {
                *dropped += self.buckets.len() as u64;
                self.buckets.clear();
                self.base_s = s;
                index = 0;
            } else {
                self.buckets.drain(..shift);
                self.base_s += shift as u64;
                index -= shift;
                *dropped += shift as u64;
            }
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
    targets: FxHashMap<IpAddr, Target>,
    rate_targets: usize,
    sources_held: usize,
    pub counters: FloodCounters,
}

impl FloodDetector {
    pub fn new(config: FloodConfig) -> FloodDetector {
        FloodDetector {
            config,
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
        let spoofed = t.spoofed_sources + t.unchecked_sources;
        let hosts = |n: u64| format!("{} host{}", grouped(n), if n == 1 { "" } else { "s" });
        let spoofed_text = format!(
            "{about}{} spoofed source{}",
            grouped(spoofed),
            if spoofed == 1 { "" } else { "s" }
        );
        let from = match (t.inside_sources, spoofed) {
            (0, _) => spoofed_text,
            (inside, 0) => hosts(inside),
            (inside, _) => format!("{} and {spoofed_text}", hosts(inside)),
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
    fn reconfigure(&mut self, config: &crate::config::DetectorsConfig) {
        self.config = config.flood.clone();
    }
    fn flow(&mut self, view: &FlowView<'_>, _out: &mut Vec<Finding>) {
        let u = view.update;
        // Outbound only: what an inside host (or a spoofing one) sends to a target it chose.
        if !self.config.enabled || u.inbound || !routable(u.outside) {
            return;
        }
        let start_ns = view.delta_since_ns;
        let (pkts, bytes) = (view.delta.pkts_out, view.delta.bytes_out);
        if (pkts == 0 && bytes == 0 && !view.first_update)
            || tcp_session(u)
            || (self.config.download_ratio > 0.0
                && view.delta.bytes_in as f64 >= self.config.download_ratio * bytes as f64
                && view.delta.bytes_in > 0)
        {
            return;
        }
        if self.targets.len() >= self.config.max_targets && !self.targets.contains_key(&u.outside) {
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
            let room = self.sources_held < self.config.max_sources;
            if (room && !t.sources.insert(u.inside)) || (!room && t.sources.contains(&u.inside)) {
                // Known source.
            } else if room {
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
        self.counters.targets_evicted
    }
}

/// A TCP connection that completed its handshake: congestion control paces what it sends to
/// what the peer accepts (uploads, downloads' acknowledgements), which a flood does not wait for.
fn tcp_session(u: &FlowUpdate<'_>) -> bool {
    u.proto == ip_proto::TCP && matches!(u.conn_state, "S1" | "S2" | "S3" | "SF" | "RSTO" | "RSTR")
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
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// "TCP", "UDP", "ICMP", else the protocol number.
pub(super) fn proto_label(proto: u8) -> String {
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

/// Test support shared by the detectors' tests: feeds updates the way the engine does (deltas
/// since the flow's previous update, first-update flag, inside test by the default home_nets).
#[cfg(test)]
pub(super) mod testing {
    use super::super::windows::ClosedWindow;
    use super::super::{Delta, Detector, Finding, FlowView};
    use crate::config::Config;
    use crate::enrich::geo::GeoInfo;
    use crate::flow::key::Uid;
    use crate::flow::update::{FlowUpdate, UpdateKind};
    use rustc_hash::FxHashMap;

    pub const SEC: u64 = 1_000_000_000;
    /// 2024-03-05 10:00:00 UTC, a window boundary for 300/900/3600 s windows.
    pub const T0: u64 = 1_709_632_800 * SEC;

    /// A flow update with no answer yet; tests set the counters and state they need.
    pub fn update(
        uid: u64,
        proto: u8,
        inside: &str,
        outside: (&str, u16),
        first_ns: u64,
    ) -> FlowUpdate<'static> {
        FlowUpdate {
            uid: Uid(uid),
            kind: UpdateKind::Interim,
            proto,
            inside: inside
                .parse()
                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into()),
            inside_port: 40_000 + (uid % 20_000) as u16,
            outside: outside
                .0
                .parse()
                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into()),
            outside_port: outside.1,
            inbound: false,
            first_ns,
            last_ns: first_ns,
            bytes_out: 0,
            bytes_in: 0,
            pkts_out: 0,
            pkts_in: 0,
            answered: false,
            conn_state: "S0",
            services: 0,
            names: None,
        }
    }

    pub struct Feeder {
        config: Config,
        reported: FxHashMap<Uid, (Delta, u64)>,
        geo: GeoInfo,
        pub findings: Vec<Finding>,
    }

    impl Feeder {
        pub fn new() -> Feeder {
            Feeder {
                config: Config::default(),
                reported: FxHashMap::default(),
                geo: GeoInfo::default(),
                findings: Vec::new(),
            }
        }

        pub fn feed(&mut self, detector: &mut dyn Detector, u: &FlowUpdate<'_>) {
            let totals = Delta {
                bytes_out: u.bytes_out,
                bytes_in: u.bytes_in,
                pkts_out: u.pkts_out,
                pkts_in: u.pkts_in,
            };
            let before = if u.kind == UpdateKind::Final {
                self.reported.remove(&u.uid)
            } else {
                self.reported.insert(u.uid, (totals, u.last_ns))
            };
            let first_update = before.is_none();
            let (before, since_ns) = before.unwrap_or((Delta::default(), u.first_ns));
            let view = FlowView {
                update: u,
                delta: Delta {
                    bytes_out: totals.bytes_out - before.bytes_out,
                    bytes_in: totals.bytes_in - before.bytes_in,
                    pkts_out: totals.pkts_out - before.pkts_out,
                    pkts_in: totals.pkts_in - before.pkts_in,
                },
                delta_since_ns: since_ns,
                first_update,
                geo: &self.geo,
                allowlisted: false,
                history: None,
                off_hours: false,
                host_inside: self.config.is_inside(u.inside),
                host_allowlisted: false,
            };
            detector.flow(&view, &mut self.findings);
        }

        /// Closes the window [start, end) and returns every finding since the last close.
        pub fn close(
            &mut self,
            detector: &mut dyn Detector,
            start_ns: u64,
            end_ns: u64,
        ) -> Vec<Finding> {
            let closed = ClosedWindow {
                start_ns,
                end_ns,
                population_p90_bytes_out: None,
                population_scope: crate::detect::windows::PopulationScope::Site,
                hosts: Vec::new(),
            };
            detector.window(&closed, &mut self.findings);
            std::mem::take(&mut self.findings)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{Feeder, SEC, T0, update};
    use super::*;
    use crate::config::Config;
    use crate::flow::update::UpdateKind;

    const UDP: u8 = ip_proto::UDP;
    const TCP: u8 = ip_proto::TCP;

    #[test]
    fn udp_flood_from_one_host_is_found_with_its_rate() {
        // A bot sends 52,000 DNS queries a second (745 B each: ~310 Mbit/s) to one target
        // for 40 s, on one flow: an interim update at 20 s, then the final one.
        let mut det = FloodDetector::new(FloodConfig::default());
        let mut feed = Feeder::new();
        let start = T0 + 100 * SEC;
        let mut u = update(1, UDP, "10.1.2.3", ("203.0.113.50", 53), start);
        for (kind, secs) in [(UpdateKind::Interim, 20), (UpdateKind::Final, 40)] {
            u.kind = kind;
            u.last_ns = start + secs * SEC;
            u.pkts_out = 52_000 * secs;
            u.bytes_out = 52_000 * secs * 745;
            feed.feed(&mut det, &u);
        }
        let found = feed.close(&mut det, T0, T0 + 900 * SEC);
        assert_eq!(found.len(), 1, "{found:?}");
        let f = &found[0];
        assert_eq!(f.branch, Branch::FloodParticipation);
        assert_eq!(f.host, "10.1.2.3".parse::<IpAddr>().unwrap());
        assert_eq!(f.destination, Some(("203.0.113.50".parse().unwrap(), 53)));
        // 52 kpps is over 5x 5000 pps.
        assert_eq!(f.strength, 90);
        assert_eq!(
            f.summary,
            "sent 52 kpps / 310 Mbit/s to 203.0.113.50 UDP/53 for 40 s from 1 host"
        );
        assert_eq!(f.evidence["packets"], 2_080_000);
        assert_eq!(f.evidence["seconds_over_threshold"], 40);
        // The average first passes 5000 pps within the flood's first second.
        assert_eq!(f.ts_ns, start);
    }

    #[test]
    fn the_engine_finds_the_same_flood_whether_it_or_the_flow_source_keeps_the_memo() {
        // Two flows, each with interim updates then a final one: the 52 kpps flood above and
        // a quiet one. The engine keeps their memos by uid (packet flows) or the source keeps
        // them with the flows (the export table); the deltas and their spans must agree.
        let start = T0 + 100 * SEC;
        let mut updates = Vec::new();
        let mut flood = update(1, UDP, "10.1.2.3", ("203.0.113.50", 53), start);
        let mut quiet = update(2, UDP, "10.1.2.4", ("198.51.100.7", 123), start);
        for (kind, secs) in [
            (UpdateKind::Interim, 10),
            (UpdateKind::Interim, 20),
            (UpdateKind::Final, 40),
        ] {
            flood.kind = kind;
            flood.last_ns = start + secs * SEC;
            flood.pkts_out = 52_000 * secs;
            flood.bytes_out = 52_000 * secs * 745;
            quiet.kind = kind;
            quiet.last_ns = start + secs * SEC;
            quiet.pkts_out = secs;
            quiet.bytes_out = secs * 90;
            updates.push(flood.clone());
            updates.push(quiet.clone());
        }
        let config = Config::default();
        let mut by_uid = crate::detect::engine::Engine::new(&config).unwrap();
        let mut with_flows = crate::detect::engine::Engine::new(&config).unwrap();
        let mut kept: [Option<crate::detect::engine::FlowMemo>; 2] = [None, None];
        for u in &updates {
            by_uid.flow_update(u);
            with_flows.flow_update_with(u, &mut kept[u.uid.0 as usize - 1]);
        }
        assert!(
            kept.iter().all(Option::is_none),
            "final updates clear the memos"
        );
        let alerts = by_uid.finish();
        assert_eq!(alerts, with_flows.finish());
        let flood_alert = alerts
            .iter()
            .find(|a| a.detection_branch == "FloodParticipation")
            .expect("a flood alert");
        assert_eq!(flood_alert.host, "10.1.2.3".parse::<IpAddr>().unwrap());
        assert!(
            flood_alert.reason.contains("52 kpps") && flood_alert.reason.contains("for 40 s"),
            "{}",
            flood_alert.reason
        );
    }

    #[test]
    fn spoofed_syn_flood_counts_every_source_even_when_reported_out_of_order() {
        // 6,000 SYNs a second for 15 s, each from a different spoofed (non-home) address:
        // 90,000 one-packet flows. The flow table reports them at its checkpoint in slab order,
        // so the updates come scrambled in time.
        let mut det = FloodDetector::new(FloodConfig::default());
        let mut feed = Feeder::new();
        let start = T0 + 300 * SEC;
        let n: u64 = 90_000;
        let order = (0..n).map(|i| (i * 7_919) % n); // a permutation: 7919 is prime to 90000
        let mut first_source = None;
        for i in order {
            let ts = start + i * SEC / 6_000;
            let src = std::net::Ipv4Addr::from(0x2d00_0000u32 + (i as u32) * 131);
            let mut u = update(i + 1, TCP, "0.0.0.0", ("198.51.100.80", 443), ts);
            u.inside = src.into();
            u.pkts_out = 1;
            u.bytes_out = 60;
            first_source.get_or_insert(u.inside);
            feed.feed(&mut det, &u);
        }
        let found = feed.close(&mut det, T0, T0 + 900 * SEC);
        assert_eq!(found.len(), 1, "{found:?}");
        let f = &found[0];
        assert_eq!(Some(f.host), first_source);
        assert_eq!(f.strength, 80);
        assert_eq!(f.evidence["spoofed_sources"], 90_000);
        assert_eq!(f.evidence["inside_sources"], 0);
        // Updates before the target could be a flood are spread over the span they covered:
        // with scrambled arrival the peak is close to, not exactly, the true rate.
        let peak = f.evidence["peak_pps"].as_f64().unwrap_or(0.0);
        assert!((5_900.0..=6_100.0).contains(&peak), "{peak}");
        assert_eq!(
            f.summary,
            "sent 6.0 kpps / 3 Mbit/s to 198.51.100.80 TCP/443 for 15 s from 90,000 spoofed sources"
        );
    }

    #[test]
    fn heavy_download_is_no_flood() {
        // A 2 GB download at ~270 Mbit/s in 60 s: the host sends an ACK for every two
        // segments, 11,500 packets a second, but the bytes go the other way.
        let mut det = FloodDetector::new(FloodConfig::default());
        let mut feed = Feeder::new();
        let start = T0 + 60 * SEC;
        // Over TCP (an established session) and over QUIC (UDP, download-shaped).
        for (uid, proto, state) in [(1, TCP, "SF"), (2, UDP, "SF")] {
            let mut u = update(uid, proto, "10.1.2.4", ("198.51.100.20", 443), start);
            u.kind = UpdateKind::Final;
            u.last_ns = start + 60 * SEC;
            u.pkts_in = 1_380_000;
            u.bytes_in = 2_000_000_000;
            u.pkts_out = 690_000;
            u.bytes_out = 690_000 * 52;
            u.answered = true;
            u.conn_state = state;
            feed.feed(&mut det, &u);
        }
        assert!(feed.close(&mut det, T0, T0 + 900 * SEC).is_empty());
    }

    #[test]
    fn steady_traffic_below_threshold_and_short_bursts_are_no_flood() {
        let mut det = FloodDetector::new(FloodConfig::default());
        let mut feed = Feeder::new();
        // A video call: 1,200 pps each way for 15 min (UDP, answered).
        let mut call = update(1, UDP, "10.1.2.5", ("192.0.2.10", 3478), T0);
        call.last_ns = T0 + 899 * SEC;
        call.pkts_out = 1_200 * 899;
        call.bytes_out = 1_200 * 899 * 900;
        call.pkts_in = call.pkts_out;
        call.bytes_in = call.bytes_out;
        call.answered = true;
        call.conn_state = "SF";
        feed.feed(&mut det, &call);
        // 20,000 packets in 2 s: 10,000 pps, but only 2,000 pps over any 10 s.
        let mut burst = update(2, UDP, "10.1.2.6", ("192.0.2.11", 9000), T0 + 50 * SEC);
        burst.last_ns = T0 + 52 * SEC - 1;
        burst.pkts_out = 20_000;
        burst.bytes_out = 20_000 * 100;
        feed.feed(&mut det, &burst);
        assert!(feed.close(&mut det, T0, T0 + 900 * SEC).is_empty());
    }

    #[test]
    fn thresholds_and_averaging_come_from_config() {
        // The same 20,000 packets in 2 s pass a 1 s average at 8,000 pps.
        let config = FloodConfig {
            threshold_pps: 8_000,
            average_seconds: 1,
            ..FloodConfig::default()
        };
        let mut det = FloodDetector::new(config);
        let mut feed = Feeder::new();
        let mut burst = update(2, UDP, "10.1.2.6", ("192.0.2.11", 9000), T0 + 50 * SEC);
        burst.last_ns = T0 + 52 * SEC - 1;
        burst.pkts_out = 20_000;
        burst.bytes_out = 20_000 * 100;
        feed.feed(&mut det, &burst);
        let found = feed.close(&mut det, T0, T0 + 900 * SEC);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].strength, 80);
        assert_eq!(found[0].evidence["seconds_over_threshold"], 2);
    }

    #[test]
    fn bit_rate_alone_is_enough_and_inside_hosts_are_blamed_before_spoofed_ones() {
        // Two inside bots and one spoofed source send 8,000-byte UDP datagrams (fragmented on
        // the wire) at 700 pps each, 2,100 pps in total: 45 Mbit/s each, 134 Mbit/s together,
        // for 30 s.
        let mut det = FloodDetector::new(FloodConfig::default());
        let mut feed = Feeder::new();
        let start = T0 + 10 * SEC;
        for (uid, src) in [(1, "198.18.0.9"), (2, "10.0.0.7"), (3, "10.0.0.8")] {
            let mut u = update(uid, UDP, src, ("203.0.113.77", 80), start);
            u.last_ns = start + 30 * SEC;
            u.pkts_out = 700 * 30;
            u.bytes_out = u.pkts_out * 8_000;
            feed.feed(&mut det, &u);
        }
        let found = feed.close(&mut det, T0, T0 + 900 * SEC);
        assert_eq!(found.len(), 1, "{found:?}");
        let f = &found[0];
        assert_eq!(f.host, "10.0.0.7".parse::<IpAddr>().unwrap());
        assert!(
            f.summary
                == "sent 2.1 kpps / 134 Mbit/s to 203.0.113.77 UDP/80 for 30 s from 2 hosts and 1 spoofed source",
            "{}",
            f.summary
        );
        assert_eq!(f.evidence["sources"], 3);
    }

    #[test]
    fn inside_to_inside_and_inbound_traffic_are_ignored() {
        let mut det = FloodDetector::new(FloodConfig::default());
        let mut feed = Feeder::new();
        let mut backup = update(1, UDP, "10.0.0.5", ("10.0.9.9", 873), T0);
        backup.last_ns = T0 + 60 * SEC;
        backup.pkts_out = 60 * 20_000;
        backup.bytes_out = backup.pkts_out * 1_400;
        feed.feed(&mut det, &backup);
        let mut served = update(2, UDP, "10.0.0.6", ("203.0.113.9", 51_000), T0);
        served.inbound = true;
        served.last_ns = T0 + 60 * SEC;
        served.pkts_out = 60 * 20_000;
        served.bytes_out = served.pkts_out * 1_400;
        feed.feed(&mut det, &served);
        assert!(det.targets.is_empty());
        assert!(feed.close(&mut det, T0, T0 + 900 * SEC).is_empty());
    }

    #[test]
    fn targets_are_bounded_with_counted_eviction() {
        let config = FloodConfig {
            max_targets: 100,
            ..FloodConfig::default()
        };
        let mut det = FloodDetector::new(config);
        let mut feed = Feeder::new();
        for i in 0..1_000u64 {
            let dst = std::net::Ipv4Addr::from(0xc633_6400u32 + i as u32).to_string();
            let mut u = update(i + 1, TCP, "10.1.2.3", (&dst, 80), T0 + i * SEC / 10);
            u.pkts_out = 3;
            u.bytes_out = 180;
            feed.feed(&mut det, &u);
            assert!(det.targets.len() <= 100);
        }
        assert!(det.counters.targets_evicted >= 900);
        assert_eq!(det.evicted(), det.counters.targets_evicted);
    }

    #[test]
    fn spreading_keeps_totals_and_proportions() {
        let mut rate = Rate::default();
        let mut dropped = 0;
        // 1,000 packets over 2.5 s starting half a second in: 200 / 400 / 400.
        rate.spread(10 * SEC + SEC / 2, 13 * SEC, 1_000, 100_000, &mut dropped);
        let buckets: Vec<(u64, u64)> = rate.buckets.iter().copied().collect();
        assert_eq!(rate.base_s, 10);
        assert_eq!(buckets, vec![(200, 20_000), (400, 40_000), (400, 40_000)]);
        // A jump far ahead (a hostile timestamp) starts afresh at once.
        let mut jump = Rate::default();
        jump.add(5, 1, 1, &mut dropped);
        jump.add(u64::MAX / NS, 1, 1, &mut dropped);
        assert_eq!(jump.buckets.len(), 1);
        assert_eq!(jump.base_s, u64::MAX / NS);
        // A span far longer than the buckets keeps only its last part.
        rate.spread(0, 20_000 * SEC, 20_000, 0, &mut dropped);
        // One packet a second: the kept seconds 12,801..19,999 hold one each (the span ends
        // exactly at 20,000 s, so that second gets nothing); the earlier buckets were dropped.
        assert_eq!(rate.base_s, 12_801);
        assert_eq!(rate.buckets.len(), 7_199);
        assert!(rate.buckets.iter().all(|&(p, _)| p == 1));
        assert!(dropped > 0);
    }

    #[test]
    fn human_numbers() {
        assert_eq!(grouped(4_812), "4,812");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000_000), "1,000,000");
        assert_eq!(human_pps(52_300.0), "52 kpps");
        assert_eq!(human_bps(310e6), "310 Mbit/s");
        assert!(routable("203.0.113.50".parse().unwrap()));
        assert!(!routable("10.1.2.3".parse().unwrap()));
        assert!(!routable("fd00::1".parse().unwrap()));
    }
}
