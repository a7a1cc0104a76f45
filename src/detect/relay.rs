//! RelayBehaviour (MITRE DET0028 AN0081): proxyware with no known domain, found by the shape
//! of relaying.
//!
//! Outbound variant (a residential-proxy agent): in one window the host keeps a long-lived,
//! upload-heavy TCP control connection, and makes many short flows to many other sites whose
//! downloads roughly equal what went up the control connection: it fetched pages for someone
//! and handed them back. Inbound variant (a planted proxy such as 3proxy, or a SOCKS or HTTP
//! proxy on 1080/3128/8080 or any port): the host accepts TCP connections from many outside
//! addresses and opens outbound flows whose downloads roughly equal what it serves back.
//!
//! Per host, updates accumulate into the open window (deltas, so a flow spanning windows counts
//! in each for what it moved there); the window's close evaluates them. The evidence is cleared
//! once it spans `min_span_seconds` or produced a finding, so with windows shorter than that
//! (300 s) the counts of consecutive windows add up rather than each window falling short. BitTorrent
//! flows are left to the TorrentSeeding detector: a peer swarm also uploads what it downloads.
//! Known look-alike: a host that uploads a large file over one long TCP connection while
//! downloading a similar amount in short flows from many sites in the same window; a scheduled
//! job of that shape belongs on the allowlist.
use super::windows::ClosedWindow;
use super::{Branch, Detector, Finding, FlowView, human_bytes, human_duration};
use crate::decode::packet::ip_proto;
use crate::flow::key::Uid;
use crate::flow::update::service;
use hashbrown::HashTable;
use rustc_hash::{FxBuildHasher, FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeSet;
use std::collections::hash_map::Entry;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};

const NS: u64 = 1_000_000_000;
/// Distinct addresses (and inbound flows) are counted exactly up to this many per host and
/// window; every threshold is far below it, so beyond it the count only says "at least".
const MAX_EXACT_DESTINATIONS: usize = 512;
/// Long TCP flows (control candidates) tracked per host and window; when full, the one that
/// has sent least is replaced (counted).
const MAX_CONTROLS: usize = 32;
/// Inbound service ports counted per host and window.
const MAX_PORTS: usize = 16;
/// Example addresses in the evidence.
const MAX_EXAMPLES: usize = 10;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    pub enabled: bool,
    /// A control connection is a TCP flow open at least this long (DET0028 DurationThreshold).
    pub control_min_seconds: u64,
    /// ... that sent at least this much in the window (DET0028 TrafficRateThreshold) ...
    pub control_min_bytes_out: u64,
    /// ... and at least this many times what it received in the window: relayed pages go up,
    /// only requests come down (a symmetric video call over TCP is no control connection).
    pub control_min_upload_ratio: f64,
    /// Flows shorter than this are the relay's fetches (DET0028 DurationThreshold).
    pub short_flow_max_seconds: u64,
    /// Short outbound flows needed in the window, and the distinct outside addresses they reach
    /// apart from the control endpoint.
    pub min_short_flows: u64,
    pub min_short_destinations: usize,
    /// The short flows' downloads must be within [ratio_min, ratio_max] times the control
    /// connection's upload (inbound variant: the outbound downloads times what was served).
    pub ratio_min: f64,
    pub ratio_max: f64,
    /// Strength of an outbound finding, plus the bonuses when the pattern also held in the
    /// previous window (around the clock) and when most of the host's traffic in the window was
    /// off business hours.
    pub strength: u8,
    pub previous_window_bonus: u8,
    pub off_hours_bonus: u8,
    /// Inbound variant: TCP connections accepted from at least this many distinct outside
    /// addresses (and at least as many connections) ...
    pub inbound_min_clients: usize,
    /// ... at least this many outbound flows opened ...
    pub inbound_min_outbound_flows: u64,
    /// ... and at least this much served back to the clients (DET0028 TrafficRateThreshold).
    pub inbound_min_bytes_out: u64,
    pub inbound_strength: u8,
    /// Evidence is judged over at least this long (DET0028 TimeWindow): shorter windows add
    /// up until they span it; each window's close still evaluates what has accumulated.
    pub min_span_seconds: u64,
    /// Hosts tracked per window; updates of further hosts are dropped (counted).
    pub max_hosts: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            enabled: true,
            control_min_seconds: 600,
            control_min_bytes_out: 5_000_000,
            control_min_upload_ratio: 1.5,
            short_flow_max_seconds: 60,
            min_short_flows: 20,
            min_short_destinations: 20,
            ratio_min: 0.5,
            ratio_max: 2.0,
            strength: 70,
            previous_window_bonus: 10,
            off_hours_bonus: 5,
            inbound_min_clients: 10,
            inbound_min_outbound_flows: 10,
            inbound_min_bytes_out: 5_000_000,
            inbound_strength: 75,
            min_span_seconds: 900,
            max_hosts: 50_000,
        }
    }
}

/// A long TCP flow's traffic in the window.
#[derive(Debug, Clone)]
struct Control {
    uid: Uid,
    outside: IpAddr,
    port: u16,
    name: Option<Box<str>>,
    country: Option<String>,
    asn: Option<u32>,
    first_ns: u64,
    last_ns: u64,
    bytes_out: u64,
    bytes_in: u64,
}

impl Control {
    fn duration_ns(&self) -> u64 {
        self.last_ns.saturating_sub(self.first_ns)
    }
}

/// Short flows to one outside address in the window.
#[derive(Debug, Clone, Copy)]
struct ShortDest {
    addr: IpAddr,
    flows: u32,
    bytes_in: u64,
}

/// Short flows per outside address, up to MAX_EXACT_DESTINATIONS: a dense list with an index
/// of slots, half a hash map's bytes per address (a busy host keeps hundreds a window).
#[derive(Debug, Default)]
struct ShortDests {
    index: HashTable<u32>,
    list: Vec<ShortDest>,
}

impl ShortDests {
    fn len(&self) -> usize {
        self.list.len()
    }

    fn get(&self, addr: &IpAddr) -> Option<&ShortDest> {
        let list = &self.list;
        let slot = self.index.find(FxBuildHasher.hash_one(addr), |&i| {
            list.get(i as usize).is_some_and(|d| d.addr == *addr)
        })?;
        list.get(*slot as usize)
    }

    /// Counts a short flow; false when `addr` is new and the list is full.
    fn add(&mut self, addr: IpAddr, bytes_in: u64) -> bool {
        let hash = FxBuildHasher.hash_one(addr);
        let list = &mut self.list;
        if let Some(&i) = self.index.find(hash, |&i| {
            list.get(i as usize).is_some_and(|d| d.addr == addr)
        }) && let Some(d) = list.get_mut(i as usize)
        {
            d.flows = d.flows.saturating_add(1);
            d.bytes_in = d.bytes_in.saturating_add(bytes_in);
            return true;
        }
        if list.len() >= MAX_EXACT_DESTINATIONS {
            return false;
        }
        list.push(ShortDest {
            addr,
            flows: 1,
            bytes_in,
        });
        let list = &self.list;
        self.index
            .insert_unique(hash, (list.len() - 1) as u32, |&i| {
                list.get(i as usize)
                    .map_or(0, |d| FxBuildHasher.hash_one(d.addr))
            });
        true
    }
}

/// One host's traffic in the open window, as the relay patterns need it.
#[derive(Debug, Default)]
struct HostAcc {
    /// Start of the window the evidence began in.
    span_start_ns: u64,
    last_ns: u64,
    bytes: u64,
    off_hours_bytes: u64,
    controls: Vec<Control>,
    /// Short outbound flows: count, downloads, and per outside address (flows, bytes_in).
    short_flows: u64,
    short_bytes_in: u64,
    short_dests: ShortDests,
    short_dests_full: bool,
    /// Outbound flows first reported in the window, and every outbound flow's downloads.
    outbound_flows: u64,
    outbound_bytes_in: u64,
    /// Inbound TCP: connections, clients (bytes served to each), service ports, bytes.
    inbound_flows: FxHashSet<Uid>,
    inbound_flows_more: u64,
    inbound_clients: FxHashMap<IpAddr, u64>,
    inbound_clients_full: bool,
    inbound_ports: Vec<(u16, u64)>,
    inbound_bytes_out: u64,
    inbound_bytes_in: u64,
}

pub struct RelayDetector {
    config: RelayConfig,
    hosts: FxHashMap<IpAddr, HostAcc>,
    /// Start of the open window (the previous window's end).
    window_start_ns: u64,
    /// Hosts whose outbound pattern held in the window that ended at `previous_end_ns`.
    previous: BTreeSet<IpAddr>,
    previous_end_ns: u64,
    dropped_updates: u64,
    controls_replaced: u64,
}

impl RelayDetector {
    pub fn new(config: RelayConfig) -> RelayDetector {
        RelayDetector {
            config,
            hosts: FxHashMap::default(),
            window_start_ns: 0,
            previous: BTreeSet::new(),
            previous_end_ns: 0,
            dropped_updates: 0,
            controls_replaced: 0,
        }
    }

    fn outbound(&self, host: IpAddr, acc: &HostAcc, closed: &ClosedWindow) -> Option<Finding> {
        let c = &self.config;
        let control_min_ns = c.control_min_seconds.saturating_mul(NS);
        let mut controls: Vec<&Control> = acc
            .controls
            .iter()
            .filter(|k| {
                k.duration_ns() >= control_min_ns
                    && k.bytes_out >= c.control_min_bytes_out
                    && k.bytes_out > 0
                    && k.bytes_out as f64 >= c.control_min_upload_ratio * k.bytes_in as f64
            })
            .collect();
        if controls.is_empty() {
            return None;
        }
        // Largest upload first: it names the finding.
        controls.sort_by(|a, b| b.bytes_out.cmp(&a.bytes_out).then(a.uid.cmp(&b.uid)));
        // Short flows to a control endpoint are part of the control channel, not fetches.
        let control_addrs: BTreeSet<IpAddr> = controls.iter().map(|k| k.outside).collect();
        let (mut flows, mut bytes_in, mut dests) =
            (acc.short_flows, acc.short_bytes_in, acc.short_dests.len());
        for addr in &control_addrs {
            if let Some(d) = acc.short_dests.get(addr) {
                flows = flows.saturating_sub(u64::from(d.flows));
                bytes_in = bytes_in.saturating_sub(d.bytes_in);
                dests = dests.saturating_sub(1);
            }
        }
        if flows < c.min_short_flows || dests < c.min_short_destinations {
            return None;
        }
        // One control connection or several at once: take the reading closest to 1:1.
        let mut candidates: Vec<(usize, u64)> = controls
            .iter()
            .enumerate()
            .map(|(i, k)| (i + 1, k.bytes_out))
            .collect();
        if controls.len() > 1 {
            let sum = controls
                .iter()
                .fold(0u64, |s, k| s.saturating_add(k.bytes_out));
            candidates.push((0, sum));
        }
        let (chosen, control_out, ratio) = candidates
            .into_iter()
            .map(|(i, out)| (i, out, bytes_in as f64 / out as f64))
            .filter(|&(_, _, r)| r >= c.ratio_min && r <= c.ratio_max)
            .min_by(|a, b| a.2.ln().abs().total_cmp(&b.2.ln().abs()))?;
        // chosen 0: all controls together; i: the i-th alone.
        let used: Vec<&Control> = if chosen == 0 {
            controls.clone()
        } else {
            controls.get(chosen - 1).copied().into_iter().collect()
        };
        let main = *used.first()?;
        let repeated = self.previous_end_ns == closed.start_ns && self.previous.contains(&host);
        let off_hours = acc.bytes > 0 && acc.off_hours_bytes.saturating_mul(2) > acc.bytes;
        let mut strength = u32::from(c.strength);
        if repeated {
            strength += u32::from(c.previous_window_bonus);
        }
        if off_hours {
            strength += u32::from(c.off_hours_bonus);
        }
        let endpoint = SocketAddr::new(main.outside, main.port);
        let named = main
            .name
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        let sessions = if used.len() == 1 {
            format!(
                "a {} control session to {endpoint}{named}",
                human_duration(main.duration_ns() as f64 / NS as f64)
            )
        } else {
            format!(
                "{} control sessions (the largest {} to {endpoint}{named})",
                used.len(),
                human_duration(main.duration_ns() as f64 / NS as f64)
            )
        };
        let sites = if acc.short_dests_full {
            format!("{dests}+")
        } else {
            dests.to_string()
        };
        let mut summary = format!(
            "relayed {}: {sessions} uploaded what {flows} short flows to {sites} sites downloaded (ratio {ratio:.2})",
            human_bytes(control_out)
        );
        if repeated {
            summary.push_str(", also in the previous window");
        }
        if off_hours {
            summary.push_str(", mostly off-hours");
        }
        let mut top: Vec<&ShortDest> = acc
            .short_dests
            .list
            .iter()
            .filter(|d| !control_addrs.contains(&d.addr))
            .collect();
        top.sort_by(|a, b| b.bytes_in.cmp(&a.bytes_in).then(a.addr.cmp(&b.addr)));
        Some(Finding {
            branch: Branch::RelayBehaviour,
            host,
            ts_ns: acc.last_ns.min(closed.end_ns.saturating_sub(1)),
            strength: strength.min(100) as u8,
            destination: Some((main.outside, main.port)),
            destination_name: main.name.as_deref().map(str::to_string),
            bytes_out: control_out,
            bytes_in,
            duration_s: main.duration_ns() as f64 / NS as f64,
            country: main.country.clone(),
            asn: main.asn,
            summary,
            evidence: json!({
                "variant": "outbound",
                "control": used.iter().map(|k| json!({
                    "uid": k.uid.to_string(),
                    "destination": SocketAddr::new(k.outside, k.port).to_string(),
                    "name": k.name.as_deref(),
                    "duration_s": k.duration_ns() as f64 / NS as f64,
                    "window_bytes_out": k.bytes_out,
                    "window_bytes_in": k.bytes_in,
                })).collect::<Vec<_>>(),
                "short_flows": flows,
                "short_destinations": dests,
                "short_destinations_capped": acc.short_dests_full,
                "short_bytes_in": bytes_in,
                "ratio": (ratio * 100.0).round() / 100.0,
                "previous_window": repeated,
                "off_hours": off_hours,
                "top_short_destinations": top.iter().take(MAX_EXAMPLES).map(|d| json!({
                    "address": d.addr.to_string(), "flows": d.flows, "bytes_in": d.bytes_in,
                })).collect::<Vec<_>>(),
            }),
        })
    }

    fn inbound(&self, host: IpAddr, acc: &HostAcc, closed: &ClosedWindow) -> Option<Finding> {
        let c = &self.config;
        let connections = (acc.inbound_flows.len() as u64).saturating_add(acc.inbound_flows_more);
        let clients = acc.inbound_clients.len();
        if connections < c.inbound_min_clients as u64
            || clients < c.inbound_min_clients
            || acc.outbound_flows < c.inbound_min_outbound_flows
            || acc.inbound_bytes_out < c.inbound_min_bytes_out
            || acc.inbound_bytes_out == 0
        {
            return None;
        }
        let ratio = acc.outbound_bytes_in as f64 / acc.inbound_bytes_out as f64;
        if ratio < c.ratio_min || ratio > c.ratio_max {
            return None;
        }
        let mut ports = acc.inbound_ports.clone();
        ports.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let port_text = match ports.as_slice() {
            [] => String::new(),
            [(p, _)] => format!(" on TCP port {p}"),
            [(p, _), ..] => format!(" on TCP port {p} and {} more", ports.len() - 1),
        };
        let client_text = if acc.inbound_clients_full {
            format!("{clients}+")
        } else {
            clients.to_string()
        };
        let summary = format!(
            "acted as a proxy{port_text}: {connections} inbound connections from {client_text} outside addresses took {} while it fetched {} over {} outbound flows (ratio {ratio:.2})",
            human_bytes(acc.inbound_bytes_out),
            human_bytes(acc.outbound_bytes_in),
            acc.outbound_flows
        );
        let mut top: Vec<(&IpAddr, &u64)> = acc.inbound_clients.iter().collect();
        top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        Some(Finding {
            branch: Branch::RelayBehaviour,
            host,
            ts_ns: acc.last_ns.min(closed.end_ns.saturating_sub(1)),
            strength: c.inbound_strength.min(100),
            destination: None,
            destination_name: None,
            bytes_out: acc.inbound_bytes_out,
            bytes_in: acc.outbound_bytes_in,
            duration_s: closed.end_ns.saturating_sub(acc.span_start_ns) as f64 / NS as f64,
            country: None,
            asn: None,
            summary,
            evidence: json!({
                "variant": "inbound",
                "inbound_connections": connections,
                "clients": clients,
                "clients_capped": acc.inbound_clients_full,
                "service_ports": ports.iter().map(|(p, n)| json!({"port": p, "connections": n})).collect::<Vec<_>>(),
                "served_bytes_out": acc.inbound_bytes_out,
                "inbound_bytes_in": acc.inbound_bytes_in,
                "outbound_flows": acc.outbound_flows,
                "outbound_bytes_in": acc.outbound_bytes_in,
                "ratio": (ratio * 100.0).round() / 100.0,
                "top_clients": top.iter().take(MAX_EXAMPLES).map(|(a, b)| json!({
                    "address": a.to_string(), "bytes_out": b,
                })).collect::<Vec<_>>(),
            }),
        })
    }
}

impl Detector for RelayDetector {
    fn reconfigure(&mut self, config: &crate::config::DetectorsConfig) {
        self.config = config.relay.clone();
    }
    fn flow(&mut self, view: &FlowView<'_>, _out: &mut Vec<Finding>) {
        let u = view.update;
        if !self.config.enabled
            || !view.host_inside
            || view.host_allowlisted
            || u.services & service::BITTORRENT != 0
        {
            return;
        }
        let tracked = self.hosts.len();
        let acc = match self.hosts.entry(u.inside) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) if tracked < self.config.max_hosts => e.insert(HostAcc {
                span_start_ns: self.window_start_ns,
                ..HostAcc::default()
            }),
            Entry::Vacant(_) => {
                self.dropped_updates += 1;
                return;
            }
        };
        let d = view.delta;
        acc.last_ns = acc.last_ns.max(u.last_ns);
        let moved = d.bytes_out.saturating_add(d.bytes_in);
        acc.bytes = acc.bytes.saturating_add(moved);
        if view.off_hours {
            acc.off_hours_bytes = acc.off_hours_bytes.saturating_add(moved);
        }
        let tcp = u.proto == ip_proto::TCP;
        if u.inbound {
            // Connections the host never accepted relay nothing (a SYN flood's victim is no relay).
            if !tcp || u.unanswered_attempt() {
                return;
            }
            if acc.inbound_flows.len() < MAX_EXACT_DESTINATIONS {
                acc.inbound_flows.insert(u.uid);
            } else if !acc.inbound_flows.contains(&u.uid) && view.first_update {
                acc.inbound_flows_more += 1;
            }
            let clients = acc.inbound_clients.len();
            match acc.inbound_clients.entry(u.outside) {
                Entry::Occupied(e) => *e.into_mut() += d.bytes_out,
                Entry::Vacant(e) if clients < MAX_EXACT_DESTINATIONS => {
                    e.insert(d.bytes_out);
                }
                Entry::Vacant(_) => acc.inbound_clients_full = true,
            }
            if view.first_update {
                if let Some(p) = acc.inbound_ports.iter_mut().find(|p| p.0 == u.inside_port) {
                    p.1 += 1;
                } else if acc.inbound_ports.len() < MAX_PORTS {
                    acc.inbound_ports.push((u.inside_port, 1));
                }
            }
            acc.inbound_bytes_out = acc.inbound_bytes_out.saturating_add(d.bytes_out);
            acc.inbound_bytes_in = acc.inbound_bytes_in.saturating_add(d.bytes_in);
            return;
        }

        if view.first_update {
            acc.outbound_flows += 1;
        }
        acc.outbound_bytes_in = acc.outbound_bytes_in.saturating_add(d.bytes_in);
        let duration_ns = u.duration_ns();
        let control_min_ns = self.config.control_min_seconds.saturating_mul(NS);
        let known = acc.controls.iter().position(|k| k.uid == u.uid);
        // Tracked from half the control age, so a flow that comes of age mid-window brings
        // most of its window's bytes.
        if tcp && (known.is_some() || duration_ns >= control_min_ns / 2) {
            match known.and_then(|i| acc.controls.get_mut(i)) {
                Some(k) => {
                    k.last_ns = k.last_ns.max(u.last_ns);
                    k.bytes_out = k.bytes_out.saturating_add(d.bytes_out);
                    k.bytes_in = k.bytes_in.saturating_add(d.bytes_in);
                }
                None => {
                    // A flow that began within the evidence span moved all its bytes in it.
                    let (bytes_out, bytes_in) = if u.first_ns >= acc.span_start_ns {
                        (u.bytes_out, u.bytes_in)
                    } else {
                        (d.bytes_out, d.bytes_in)
                    };
                    let fresh = Control {
                        uid: u.uid,
                        outside: u.outside,
                        port: u.outside_port,
                        name: u.name().map(Box::from),
                        country: view.geo.country.map(|c| c.to_string()),
                        asn: view.geo.asn,
                        first_ns: u.first_ns,
                        last_ns: u.last_ns,
                        bytes_out,
                        bytes_in,
                    };
                    if acc.controls.len() < MAX_CONTROLS {
                        acc.controls.push(fresh);
                    } else if let Some(least) = acc
                        .controls
                        .iter_mut()
                        .min_by_key(|k| k.bytes_out)
                        .filter(|k| k.bytes_out < bytes_out)
                    {
                        *least = fresh;
                        self.controls_replaced += 1;
                    } else {
                        self.controls_replaced += 1;
                    }
                }
            }
            return;
        }
        let short_ns = self.config.short_flow_max_seconds.saturating_mul(NS);
        // A short flow caught by a window's checkpoint counts in both windows it moved bytes in.
        if duration_ns < short_ns && (view.first_update || moved > 0) {
            acc.short_flows += 1;
            acc.short_bytes_in = acc.short_bytes_in.saturating_add(d.bytes_in);
            if !acc.short_dests.add(u.outside, d.bytes_in) {
                acc.short_dests_full = true;
            }
        }
    }

    fn window(&mut self, closed: &ClosedWindow, out: &mut Vec<Finding>) {
        let mut hosts: Vec<(IpAddr, HostAcc)> =
            std::mem::take(&mut self.hosts).into_iter().collect();
        hosts.sort_unstable_by_key(|(h, _)| *h);
        let min_span_ns = self.config.min_span_seconds.saturating_mul(NS);
        let mut held = BTreeSet::new();
        for (host, mut acc) in hosts {
            // Before the first close the detector does not know where windows start.
            if acc.span_start_ns == 0 {
                acc.span_start_ns = closed.start_ns;
            }
            let found = out.len();
            if let Some(f) = self.outbound(host, &acc, closed) {
                held.insert(host);
                out.push(f);
            }
            if let Some(f) = self.inbound(host, &acc, closed) {
                out.push(f);
            }
            let spanned = closed.end_ns.saturating_sub(acc.span_start_ns) >= min_span_ns;
            if out.len() == found && !spanned {
                self.hosts.insert(host, acc);
            }
        }
        self.previous = held;
        self.previous_end_ns = closed.end_ns;
        self.window_start_ns = closed.end_ns;
    }

    /// Updates dropped because `max_hosts` hosts were already tracked in the window, and
    /// control candidates dropped at a host's bound.
    fn evicted(&self) -> u64 {
        self.dropped_updates.saturating_add(self.controls_replaced)
    }
}

#[cfg(test)]
mod tests {
    use super::super::long_lived::test_support::*;
    use super::*;
    use crate::flow::update::{FlowNames, FlowUpdate, UpdateKind};

    const TCP: u8 = ip_proto::TCP;
    const UDP: u8 = ip_proto::UDP;
    const CONTROL: &str = "198.51.100.7";

    /// `n` short TCP fetches (2 s each) spread over the window starting at `start_s`, to
    /// `sites` distinct addresses, each downloading `bytes_in`.
    fn fetches(
        uid_base: u64,
        start_s: f64,
        n: u64,
        sites: u64,
        bytes_in: u64,
    ) -> Vec<FlowUpdate<'static>> {
        (0..n)
            .map(|i| {
                let site = i % sites;
                let addr = format!("198.18.{}.{}", site / 200, site % 200 + 1);
                let t = start_s + 1.0 + i as f64 * (880.0 / n as f64);
                update(
                    uid_base + i,
                    TCP,
                    &addr,
                    443,
                    t,
                    t + 2.0,
                    1_800,
                    bytes_in,
                    UpdateKind::Final,
                )
            })
            .collect()
    }

    /// The control session's updates falling in window `w` (900 s windows from T0): interim
    /// every 5 min, the last one being the window's checkpoint. 45 kB/s up, 1.5 kB/s down.
    fn control(w: u64) -> Vec<FlowUpdate<'static>> {
        session(
            1,
            TCP,
            CONTROL,
            443,
            0.0,
            900.0 * (w + 1) as f64,
            300.0,
            45_000.0,
            1_500.0,
            false,
        )
        .into_iter()
        .filter(|u| u.last_ns > at(900.0 * w as f64))
        .collect()
    }

    fn proxyware_window(w: u64) -> Vec<FlowUpdate<'static>> {
        let mut updates = control(w);
        // 312 fetches to 287 sites, 126 kB each: 39.3 MB against 40.5 MB sent up the control.
        updates.extend(fetches(
            1_000 * (w + 1),
            900.0 * w as f64,
            312,
            287,
            126_000,
        ));
        updates
    }

    #[test]
    fn proxyware_agent_without_a_known_domain_is_found_and_repeats_score_higher() {
        let mut d = RelayDetector::new(RelayConfig::default());
        let mut feeder = Feeder::default();
        feeder.feed_all(&mut d, &proxyware_window(0));
        feeder.close(&mut d, 0.0, 900.0);
        assert_eq!(feeder.findings.len(), 1);
        let f = &feeder.findings[0];
        assert_eq!(f.branch, Branch::RelayBehaviour);
        assert_eq!(f.host, HOST.parse::<IpAddr>().unwrap());
        assert_eq!(f.strength, 70);
        assert_eq!(f.bytes_out, 40_500_000);
        assert_eq!(f.bytes_in, 39_312_000);
        assert_eq!(
            f.summary,
            "relayed 40.5 MB: a 15 min control session to 198.51.100.7:443 uploaded what 312 short flows to 287 sites downloaded (ratio 0.97)"
        );
        assert_eq!(f.evidence["control"][0]["uid"], Uid(1).to_string());
        assert_eq!(
            f.evidence["top_short_destinations"]
                .as_array()
                .map(Vec::len),
            Some(10)
        );

        // Around the clock: the next window, same pattern, scores the repeat bonus.
        feeder.findings.clear();
        feeder.feed_all(&mut d, &proxyware_window(1));
        feeder.close(&mut d, 900.0, 1_800.0);
        assert_eq!(feeder.findings.len(), 1);
        let f = &feeder.findings[0];
        assert_eq!(f.strength, 80);
        // The control connection counts only what it sent in this window.
        assert_eq!(f.bytes_out, 40_500_000);
        assert!(
            f.summary
                .starts_with("relayed 40.5 MB: a 30 min control session"),
            "{}",
            f.summary
        );
        assert!(f.summary.ends_with(", also in the previous window"));
    }

    #[test]
    fn relaying_at_night_adds_the_off_hours_bonus() {
        let mut d = RelayDetector::new(RelayConfig::default());
        let mut feeder = Feeder {
            off_hours: true,
            ..Feeder::default()
        };
        feeder.feed_all(&mut d, &proxyware_window(0));
        feeder.close(&mut d, 0.0, 900.0);
        assert_eq!(
            feeder
                .findings
                .iter()
                .map(|f| f.strength)
                .collect::<Vec<_>>(),
            vec![75]
        );
        assert!(feeder.findings[0].summary.ends_with(", mostly off-hours"));
    }

    #[test]
    fn a_window_gap_breaks_the_repeat_bonus() {
        let mut d = RelayDetector::new(RelayConfig::default());
        let mut feeder = Feeder::default();
        feeder.feed_all(&mut d, &proxyware_window(0));
        feeder.close(&mut d, 0.0, 900.0);
        // The agent was off through window 1 (nobody's traffic opened it); in window 2 it
        // starts a new control session.
        let mut later = session(
            2, TCP, CONTROL, 443, 1_800.0, 900.0, 300.0, 45_000.0, 1_500.0, false,
        );
        later.extend(fetches(5_000, 1_800.0, 312, 287, 126_000));
        feeder.feed_all(&mut d, &later);
        feeder.close(&mut d, 1_800.0, 2_700.0);
        assert_eq!(
            feeder
                .findings
                .iter()
                .map(|f| f.strength)
                .collect::<Vec<_>>(),
            vec![70, 70]
        );
    }

    #[test]
    fn normal_browsing_is_no_relay() {
        // 300 page loads to 150 sites (200 MB down), a video stream, a chat websocket.
        let mut updates = fetches(100, 0.0, 300, 150, 666_000);
        updates.extend(session(
            2,
            TCP,
            "203.0.113.80",
            443,
            0.0,
            900.0,
            300.0,
            8_000.0,
            600_000.0,
            false,
        ));
        updates.extend(session(
            3,
            TCP,
            "203.0.113.81",
            443,
            0.0,
            900.0,
            300.0,
            100.0,
            300.0,
            false,
        ));
        let mut d = RelayDetector::new(RelayConfig::default());
        let mut feeder = Feeder::default();
        feeder.feed_all(&mut d, &updates);
        feeder.close(&mut d, 0.0, 900.0);
        assert!(feeder.findings.is_empty());
    }

    #[test]
    fn long_upload_to_one_destination_without_fetches_is_no_relay() {
        // A 2 GB backup upload, and the host's few DNS lookups.
        let mut updates = session(
            4,
            TCP,
            "192.0.2.200",
            443,
            0.0,
            900.0,
            300.0,
            2_200_000.0,
            20_000.0,
            false,
        );
        for i in 0..6 {
            let t = 100.0 * i as f64;
            updates.push(update(
                200 + i,
                UDP,
                "192.0.2.53",
                53,
                t,
                t + 0.1,
                80,
                200,
                UpdateKind::Final,
            ));
        }
        let mut d = RelayDetector::new(RelayConfig::default());
        let mut feeder = Feeder::default();
        feeder.feed_all(&mut d, &updates);
        feeder.close(&mut d, 0.0, 900.0);
        assert!(feeder.findings.is_empty());
    }

    #[test]
    fn symmetric_call_over_tcp_while_browsing_is_no_relay() {
        // A 15 min screen-shared call over TCP 443 (50 MB each way) while 40 page loads to 30
        // sites download 45 MB: the byte ratio fits, but the call is no upload-heavy control.
        let mut updates = session(
            5,
            TCP,
            "203.0.113.90",
            443,
            0.0,
            900.0,
            300.0,
            55_000.0,
            55_000.0,
            false,
        );
        updates.extend(fetches(300, 0.0, 40, 30, 1_125_000));
        let mut d = RelayDetector::new(RelayConfig::default());
        let mut feeder = Feeder::default();
        feeder.feed_all(&mut d, &updates);
        feeder.close(&mut d, 0.0, 900.0);
        assert!(feeder.findings.is_empty());
        // With the upload-ratio condition off, the same traffic would match.
        let mut d = RelayDetector::new(RelayConfig {
            control_min_upload_ratio: 0.0,
            ..RelayConfig::default()
        });
        feeder.feed_all(&mut d, &updates);
        feeder.close(&mut d, 0.0, 900.0);
        assert_eq!(feeder.findings.len(), 1);
    }

    #[test]
    fn short_flows_to_the_control_endpoint_are_not_fetches() {
        // The agent's own short check-ins to its controller, plus a few real sites.
        let mut updates = control(0);
        for i in 0..30 {
            let t = 10.0 + 25.0 * i as f64;
            updates.push(update(
                400 + i,
                TCP,
                CONTROL,
                443,
                t,
                t + 1.0,
                1_000,
                1_300_000,
                UpdateKind::Final,
            ));
        }
        updates.extend(fetches(500, 0.0, 5, 5, 100_000));
        let mut d = RelayDetector::new(RelayConfig::default());
        let mut feeder = Feeder::default();
        feeder.feed_all(&mut d, &updates);
        feeder.close(&mut d, 0.0, 900.0);
        assert!(feeder.findings.is_empty());
    }

    /// `n` inbound TCP connections to `port` from `clients` outside addresses, each serving
    /// `bytes_out` back.
    fn accepted(
        uid_base: u64,
        port: u16,
        n: u64,
        clients: u64,
        bytes_out: u64,
    ) -> Vec<FlowUpdate<'static>> {
        (0..n)
            .map(|i| {
                let client = i % clients;
                let addr = format!("192.0.2.{}", client + 1);
                let t = 5.0 + i as f64 * (850.0 / n as f64);
                let mut u = update(
                    uid_base + i,
                    TCP,
                    &addr,
                    50_000 + i as u16,
                    t,
                    t + 20.0,
                    bytes_out,
                    20_000,
                    UpdateKind::Final,
                );
                u.inbound = true;
                u.inside_port = port;
                u
            })
            .collect()
    }

    #[test]
    fn planted_proxy_serving_outside_clients_is_found() {
        // 40 connections from 25 addresses to port 1080 take 120 MB; the host fetches 120 MB
        // over 60 flows to 50 sites.
        let names = FlowNames {
            socks_target: Some("shop.example.com".into()),
            ..FlowNames::default()
        };
        let mut updates = accepted(100, 1080, 40, 25, 3_000_000);
        let mut out = fetches(500, 0.0, 60, 50, 2_000_000);
        for u in &mut out {
            u.names = Some(&names);
        }
        updates.extend(out);
        let mut d = RelayDetector::new(RelayConfig::default());
        let mut feeder = Feeder::default();
        feeder.feed_all(&mut d, &updates);
        feeder.close(&mut d, 0.0, 900.0);
        assert_eq!(feeder.findings.len(), 1);
        let f = &feeder.findings[0];
        assert_eq!(f.strength, 75);
        assert_eq!(
            f.summary,
            "acted as a proxy on TCP port 1080: 40 inbound connections from 25 outside addresses took 120.0 MB while it fetched 120.0 MB over 60 outbound flows (ratio 1.00)"
        );
        assert_eq!(f.evidence["variant"], "inbound");
        assert_eq!(f.evidence["top_clients"].as_array().map(Vec::len), Some(10));
    }

    /// Plays `updates` through 300-second windows from 0 to `end_s`, each window getting the
    /// updates that end in it; returns the findings' window ends.
    fn in_five_minute_windows(
        d: &mut RelayDetector,
        updates: &[FlowUpdate<'_>],
        end_s: f64,
    ) -> Vec<(f64, Finding)> {
        let mut feeder = Feeder::default();
        let mut out = Vec::new();
        let mut start = 0.0;
        while start < end_s {
            let end = start + 300.0;
            let window: Vec<FlowUpdate<'_>> = updates
                .iter()
                .filter(|u| u.last_ns > at(start) && u.last_ns <= at(end))
                .cloned()
                .collect();
            feeder.feed_all(d, &window);
            feeder.close(d, start, end);
            out.extend(feeder.findings.drain(..).map(|f| (end, f)));
            start = end;
        }
        out
    }

    #[test]
    fn short_windows_add_up_to_the_evidence_span() {
        // 12 clients and 12 fetches over 15 minutes: about 4 per 5-minute window, each window
        // below inbound_min_clients (10) alone.
        let mut updates = accepted(100, 1080, 12, 12, 1_000_000);
        updates.extend(fetches(500, 0.0, 12, 12, 1_000_000));
        let mut d = RelayDetector::new(RelayConfig::default());
        let found = in_five_minute_windows(&mut d, &updates, 900.0);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, 900.0, "found when the evidence spans 15 min");
        assert_eq!(found[0].1.evidence["clients"], 12);
        assert_eq!(found[0].1.duration_s, 900.0);

        // With the span at one window, each window is judged alone.
        let mut d = RelayDetector::new(RelayConfig {
            min_span_seconds: 300,
            ..RelayConfig::default()
        });
        assert!(in_five_minute_windows(&mut d, &updates, 900.0).is_empty());
    }

    #[test]
    fn evidence_older_than_the_span_is_dropped() {
        // 9 clients and fetches in the first 15 minutes (one short of the thresholds), 3 more
        // in the next: no 15-minute span holds 10.
        let later = |mut v: Vec<FlowUpdate<'static>>| {
            for u in v.iter_mut().skip(9) {
                u.first_ns += at(900.0) - at(0.0);
                u.last_ns += at(900.0) - at(0.0);
            }
            v
        };
        let mut updates = later(accepted(100, 1080, 12, 12, 1_000_000));
        updates.extend(later(fetches(500, 0.0, 12, 12, 1_000_000)));
        let mut d = RelayDetector::new(RelayConfig::default());
        assert!(in_five_minute_windows(&mut d, &updates, 1_800.0).is_empty());
        // Kept for 30 minutes, the same traffic is enough.
        let mut d = RelayDetector::new(RelayConfig {
            min_span_seconds: 1_800,
            ..RelayConfig::default()
        });
        assert_eq!(in_five_minute_windows(&mut d, &updates, 1_800.0).len(), 1);
    }

    #[test]
    fn busy_inside_web_server_is_no_proxy() {
        // 200 connections from 150 clients take 600 MB; the server downloads 5 MB of updates.
        let mut updates = accepted(100, 443, 200, 150, 3_000_000);
        updates.extend(fetches(1_000, 0.0, 15, 10, 333_000));
        let mut d = RelayDetector::new(RelayConfig::default());
        let mut feeder = Feeder::default();
        feeder.feed_all(&mut d, &updates);
        feeder.close(&mut d, 0.0, 900.0);
        assert!(feeder.findings.is_empty());
    }

    #[test]
    fn bittorrent_swarms_are_left_to_the_torrent_detector() {
        let mut updates = accepted(100, 6881, 40, 25, 3_000_000);
        updates.extend(fetches(500, 0.0, 60, 50, 2_000_000));
        for u in &mut updates {
            u.services = service::BITTORRENT;
        }
        let mut d = RelayDetector::new(RelayConfig::default());
        let mut feeder = Feeder::default();
        feeder.feed_all(&mut d, &updates);
        feeder.close(&mut d, 0.0, 900.0);
        assert!(feeder.findings.is_empty());
    }

    #[test]
    fn hosts_per_window_are_bounded_with_a_count() {
        let mut d = RelayDetector::new(RelayConfig {
            max_hosts: 1,
            ..RelayConfig::default()
        });
        let mut feeder = Feeder::default();
        let mut other = update(
            9,
            TCP,
            "198.18.0.1",
            443,
            1.0,
            2.0,
            100,
            100,
            UpdateKind::Final,
        );
        other.inside = "10.9.9.9".parse().unwrap();
        feeder.feed(
            &mut d,
            &update(
                8,
                TCP,
                "198.18.0.1",
                443,
                1.0,
                2.0,
                100,
                100,
                UpdateKind::Final,
            ),
        );
        feeder.feed(&mut d, &other);
        feeder.feed(&mut d, &other);
        assert_eq!(d.evicted(), 2);
        // The bound is per window.
        feeder.close(&mut d, 0.0, 900.0);
        feeder.feed(&mut d, &other);
        assert_eq!(d.evicted(), 2);
    }

    #[test]
    fn engine_turns_the_relay_pattern_into_an_alert() {
        // Through the real engine: deltas, routing, scoring. The control session also crosses
        // LongLivedSession's 10 min threshold (upload-heavy: 25 + 15); the relay finding leads.
        let config = crate::config::Config::default();
        let mut engine = super::super::engine::Engine::new(&config).unwrap();
        let mut updates = proxyware_window(0);
        updates.sort_by_key(|u| (u.last_ns, u.uid));
        for u in &updates {
            engine.flow_update(u);
        }
        let alerts = engine.close_window();
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!(a.host, HOST.parse::<IpAddr>().unwrap());
        assert_eq!(a.detection_branch, "RelayBehaviour");
        assert_eq!(a.destination_ip, Some(CONTROL.parse().unwrap()));
        // 70, +5 for the second branch, +5 for a destination no host had contacted before.
        assert_eq!(a.score, 80);
        assert_eq!(a.evidence["findings"].as_array().map(Vec::len), Some(2));
    }
}
