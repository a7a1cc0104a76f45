//! FanOut (AN0081): many distinct outside destinations per port, or ports per destination, in a
//! window, mostly unanswered: scanning from inside. A sequential test (Threshold Random Walk,
//! Jung et al. 2004) over first contacts to new destinations catches scans too slow for the
//! per-window counts.
//!
//! The first update of a flow is one connection attempt. Whether it was answered is taken from
//! the flow's latest update in the window (the flow table checkpoints every flow right before a
//! window closes, so a SYN answered after its first update is not counted as unanswered).
use super::flood::{grouped, proto_label, routable};
use super::windows::ClosedWindow;
use super::{Branch, Detector, Finding, FlowView, human_duration};
use crate::alert::rfc3339;
use crate::decode::packet::ip_proto;
use crate::enrich::geo::CountryCode;
use crate::flow::key::Uid;
use crate::flow::update::{FlowUpdate, UpdateKind};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::hash::Hash;
use std::net::IpAddr;

/// Example flows, ports or destinations in a finding's evidence.
const MAX_EXAMPLES: usize = 10;
/// Bits per remembered destination in a host's known-destination filter: with two hashes the
/// chance of taking a new destination for a known one stays under about 5% when full.
const FILTER_BITS_PER_DESTINATION: usize = 8;
/// Ceiling on `trw_known_destinations`: 128 kB of filter per host at most.
const MAX_KNOWN_DESTINATIONS: usize = 1 << 17;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FanOutConfig {
    pub enabled: bool,
    /// TrafficRateThreshold: distinct outside addresses on one (protocol, port) in a window
    /// (horizontal scan).
    pub min_destinations_per_port: u64,
    /// TrafficRateThreshold: distinct ports on one outside address in a window (vertical scan).
    pub min_ports_per_destination: u64,
    /// ToolPattern: share of those connection attempts nobody answered.
    pub min_unanswered_share: f64,
    /// Strength of a per-window finding; `strong_bonus` is added at `strong_factor` times the
    /// threshold.
    pub strength: u8,
    pub strong_factor: f64,
    pub strong_bonus: u8,
    /// Threshold Random Walk over first TCP contacts to new destinations, across windows.
    pub trw_enabled: bool,
    /// Chance a benign host's first contact succeeds (theta0) and a scanner's (theta1).
    pub trw_theta0: f64,
    pub trw_theta1: f64,
    /// Target false-positive (alpha) and detection (beta) probabilities: the walk calls a
    /// scanner at likelihood ratio beta/alpha (99) and resets at (1-beta)/(1-alpha).
    pub trw_alpha: f64,
    pub trw_beta: f64,
    /// A scanner call also needs this many failed first contacts since the walk began, so a
    /// short run of dead hosts (a few blocked sites) is not a scan.
    pub trw_min_failures: u64,
    pub trw_strength: u8,
    /// Destinations remembered per host to tell first contacts (a fixed-size filter; when
    /// this many were added it starts over, counted).
    pub trw_known_destinations: usize,
    /// Inside hosts with state; beyond it the longest idle eighth is evicted (counted).
    pub max_hosts: usize,
    /// Connection attempts kept individually per host and window (exact distinct counts);
    /// beyond it the host's further attempts are only counted.
    pub max_flows_per_host: usize,
    /// Connection attempts kept individually per window over all hosts.
    pub max_tracked_flows: usize,
}

impl Default for FanOutConfig {
    fn default() -> Self {
        FanOutConfig {
            enabled: true,
            min_destinations_per_port: 50,
            min_ports_per_destination: 100,
            min_unanswered_share: 0.5,
            strength: 70,
            strong_factor: 5.0,
            strong_bonus: 10,
            trw_enabled: true,
            trw_theta0: 0.8,
            trw_theta1: 0.2,
            trw_alpha: 0.01,
            trw_beta: 0.99,
            trw_min_failures: 20,
            trw_strength: 60,
            trw_known_destinations: 1024,
            max_hosts: 20_000,
            max_flows_per_host: 4096,
            max_tracked_flows: 500_000,
        }
    }
}

/// Counters of the detector's bounded state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FanOutCounters {
    pub hosts_evicted: u64,
    pub attempts_untracked: u64,
    pub known_destinations_reset: u64,
}

/// One connection attempt of the open window, as of its latest update. 64 bytes: a window
/// can hold `max_tracked_flows` of them.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    uid: Uid,
    /// The inside host, as its index in the window's `window_hosts`.
    host: u32,
    proto: u8,
    port: u16,
    dest: IpAddr,
    first_ns: u64,
    /// `UNANSWERED`, `FIRST_CONTACT`, `HAS_ASN`.
    flags: u8,
    bytes_out: u64,
    bytes_in: u64,
    country: Option<CountryCode>,
    asn: u32,
}

const UNANSWERED: u8 = 1;
/// The host's first contact with `dest` (an input of the sequential test).
const FIRST_CONTACT: u8 = 2;
const HAS_ASN: u8 = 4;

impl Attempt {
    fn unanswered(&self) -> bool {
        self.flags & UNANSWERED != 0
    }

    fn set_unanswered(&mut self, yes: bool) {
        self.flags = (self.flags & !UNANSWERED) | if yes { UNANSWERED } else { 0 };
    }

    fn first_contact(&self) -> bool {
        self.flags & FIRST_CONTACT != 0
    }

    fn asn(&self) -> Option<u32> {
        (self.flags & HAS_ASN != 0).then_some(self.asn)
    }
}

/// Derived once from the config: the walk's steps and bounds in log space.
#[derive(Debug, Clone, Copy)]
struct TrwParams {
    success_step: f64,
    failure_step: f64,
    ln_eta0: f64,
    ln_eta1: f64,
    eta1: f64,
}

impl TrwParams {
    /// None when the parameters cannot separate scanners from benign hosts.
    fn new(c: &FanOutConfig) -> Option<TrwParams> {
        let clamp = |p: f64| {
            if p.is_finite() {
                p.clamp(1e-6, 1.0 - 1e-6)
            } else {
                0.5
            }
        };
        let (t0, t1) = (clamp(c.trw_theta0), clamp(c.trw_theta1));
        let (alpha, beta) = (clamp(c.trw_alpha), clamp(c.trw_beta));
        let eta1 = beta / alpha;
        let eta0 = (1.0 - beta) / (1.0 - alpha);
        (c.trw_enabled && t1 < t0 && eta1 > 1.0 && eta0 < 1.0).then(|| TrwParams {
            success_step: (t1 / t0).ln(),
            failure_step: ((1.0 - t1) / (1.0 - t0)).ln(),
            ln_eta0: eta0.ln(),
            ln_eta1: eta1.ln(),
            eta1,
        })
    }
}

#[derive(Debug, Clone, Default)]
struct Walk {
    log_ratio: f64,
    contacts: u64,
    failures: u64,
    start_ns: u64,
    failed: Vec<(IpAddr, u16)>,
}

/// A scanner call of the sequential test, reported at the window's close.
#[derive(Debug, Clone)]
struct TrwHit {
    ts_ns: u64,
    walk: Walk,
}

struct HostState {
    last_seen_ns: u64,
    /// Two-hash bit filter of destinations contacted before.
    known: Vec<u64>,
    known_added: usize,
    walk: Walk,
    hit: Option<TrwHit>,
    /// The host's index in `window_hosts` once it made an attempt in the open window.
    window_index: Option<u32>,
    /// Attempts of the open window kept individually, and those only counted.
    tracked: usize,
    untracked: u64,
    untracked_unanswered: u64,
}

impl HostState {
    fn new(words: usize) -> HostState {
        HostState {
            last_seen_ns: 0,
            known: vec![0; words],
            known_added: 0,
            walk: Walk::default(),
            hit: None,
            window_index: None,
            tracked: 0,
            untracked: 0,
            untracked_unanswered: 0,
        }
    }

    /// Marks `dest` known; true when it was not known before.
    fn remember(&mut self, dest: IpAddr, limit: usize, resets: &mut u64) -> bool {
        let bits = self.known.len() * 64;
        if bits == 0 {
            return true;
        }
        let h = mix(ip_bits(dest));
        let positions = [(h as usize) % bits, ((h >> 32) as usize) % bits];
        let known = positions.iter().all(|&p| {
            self.known
                .get(p / 64)
                .is_some_and(|w| w & (1 << (p % 64)) != 0)
        });
        if known {
            return false;
        }
        if self.known_added >= limit {
            // Full: start over rather than let false "known" answers grow.
            self.known.iter_mut().for_each(|w| *w = 0);
            self.known_added = 0;
            *resets += 1;
        }
        for p in positions {
            if let Some(w) = self.known.get_mut(p / 64) {
                *w |= 1 << (p % 64);
            }
        }
        self.known_added += 1;
        true
    }

    /// One step of the walk for a first contact; a scanner call is kept for the window's close.
    fn step(&mut self, trw: &TrwParams, min_failures: u64, a: &Attempt) {
        let w = &mut self.walk;
        if w.contacts == 0 {
            w.start_ns = a.first_ns;
        }
        w.contacts += 1;
        if a.unanswered() {
            w.log_ratio += trw.failure_step;
            w.failures += 1;
            if w.failed.len() < MAX_EXAMPLES {
                w.failed.push((a.dest, a.port));
            }
        } else {
            w.log_ratio += trw.success_step;
        }
        if w.log_ratio <= trw.ln_eta0 {
            // Benign for now; the test starts afresh so a later scan is still caught.
            self.walk = Walk::default();
        } else if w.log_ratio >= trw.ln_eta1 && w.failures >= min_failures {
            let walk = std::mem::take(&mut self.walk);
            self.hit.get_or_insert(TrwHit {
                ts_ns: a.first_ns,
                walk,
            });
        }
    }
}

/// splitmix64 finaliser: spreads address bits over the filter.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn ip_bits(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => {
            let b = u128::from(v6);
            (b as u64) ^ mix((b >> 64) as u64)
        }
    }
}

/// A connection attempt nobody answered: TCP by its state, other protocols by silence.
fn unanswered(u: &FlowUpdate<'_>) -> bool {
    if u.proto == ip_proto::TCP {
        u.unanswered_attempt()
    } else {
        !u.answered
    }
}

/// Attempts grouped by one key (a port, or a destination), counting distinct values of the
/// other.
struct Group<V> {
    distinct: FxHashSet<V>,
    attempts: u64,
    unanswered: u64,
    first_ns: u64,
    last_ns: u64,
    /// When the distinct count reached the threshold.
    reached_ns: Option<u64>,
}

impl<V: Hash + Eq> Group<V> {
    fn new() -> Group<V> {
        Group {
            distinct: FxHashSet::default(),
            attempts: 0,
            unanswered: 0,
            first_ns: u64::MAX,
            last_ns: 0,
            reached_ns: None,
        }
    }

    fn add(&mut self, value: V, a: &Attempt, threshold: u64) {
        self.distinct.insert(value);
        self.attempts += 1;
        self.unanswered += u64::from(a.unanswered());
        self.first_ns = self.first_ns.min(a.first_ns);
        self.last_ns = self.last_ns.max(a.first_ns);
        if self.reached_ns.is_none() && self.distinct.len() as u64 >= threshold {
            self.reached_ns = Some(a.first_ns);
        }
    }

    fn share(&self) -> f64 {
        self.unanswered as f64 / self.attempts.max(1) as f64
    }
}

#[derive(Clone, Copy)]
enum Pattern {
    Horizontal(u8, u16),
    Vertical(IpAddr),
}

pub struct FanOutDetector {
    config: FanOutConfig,
    trw: Option<TrwParams>,
    filter_words: usize,
    hosts: FxHashMap<IpAddr, HostState>,
    /// Attempts whose flow may still be updated, by uid ...
    attempts: FxHashMap<Uid, Attempt>,
    /// ... and those whose flow has ended (no key: most flows of a window end in it).
    ended: Vec<Attempt>,
    /// Inside hosts with attempts in the open window (an attempt's `host` indexes it).
    window_hosts: Vec<IpAddr>,
    pub counters: FanOutCounters,
}

impl FanOutDetector {
    pub fn new(config: FanOutConfig) -> FanOutDetector {
        let filter_words = config
            .trw_known_destinations
            .min(MAX_KNOWN_DESTINATIONS)
            .saturating_mul(FILTER_BITS_PER_DESTINATION)
            .div_ceil(64)
            .max(1);
        FanOutDetector {
            trw: TrwParams::new(&config),
            filter_words,
            config,
            hosts: FxHashMap::default(),
            attempts: FxHashMap::default(),
            ended: Vec::new(),
            window_hosts: Vec::new(),
            counters: FanOutCounters::default(),
        }
    }

    /// Makes room for one more host: the longest idle eighth goes.
    fn make_room(&mut self) {
        let mut idle: Vec<(u64, IpAddr)> = self
            .hosts
            .iter()
            .map(|(ip, h)| (h.last_seen_ns, *ip))
            .collect();
        idle.sort_unstable();
        let n = idle.len().div_ceil(8);
        for (_, ip) in idle.into_iter().take(n) {
            self.hosts.remove(&ip);
            self.counters.hosts_evicted += 1;
        }
    }

    /// The host's strongest per-window pattern, if any passes its thresholds.
    fn window_finding(&self, host: IpAddr, list: &[Attempt]) -> Option<Finding> {
        let c = &self.config;
        let (min_dest, min_ports) = (
            c.min_destinations_per_port.max(1),
            c.min_ports_per_destination.max(1),
        );
        let mut by_port: BTreeMap<(u8, u16), Group<IpAddr>> = BTreeMap::new();
        let mut by_dest: BTreeMap<IpAddr, Group<(u8, u16)>> = BTreeMap::new();
        for a in list {
            by_port
                .entry((a.proto, a.port))
                .or_insert_with(Group::new)
                .add(a.dest, a, min_dest);
            by_dest
                .entry(a.dest)
                .or_insert_with(Group::new)
                .add((a.proto, a.port), a, min_ports);
        }
        let passes = |distinct: usize, threshold: u64, share: f64| {
            distinct as u64 >= threshold && share >= c.min_unanswered_share
        };
        let mut best: Option<(f64, Pattern)> = None;
        let mut consider = |ratio: f64, p: Pattern| {
            if best.is_none_or(|(r, _)| ratio > r) {
                best = Some((ratio, p));
            }
        };
        for (&(proto, port), g) in &by_port {
            if passes(g.distinct.len(), min_dest, g.share()) {
                consider(
                    g.distinct.len() as f64 / min_dest as f64,
                    Pattern::Horizontal(proto, port),
                );
            }
        }
        for (&dest, g) in &by_dest {
            if passes(g.distinct.len(), min_ports, g.share()) {
                consider(
                    g.distinct.len() as f64 / min_ports as f64,
                    Pattern::Vertical(dest),
                );
            }
        }
        let (ratio, pattern) = best?;
        let strength = if ratio >= c.strong_factor {
            c.strength.saturating_add(c.strong_bonus)
        } else {
            c.strength
        }
        .min(100);
        let matches = |a: &&Attempt| match pattern {
            Pattern::Horizontal(proto, port) => a.proto == proto && a.port == port,
            Pattern::Vertical(dest) => a.dest == dest,
        };
        let chosen: Vec<&Attempt> = list.iter().filter(matches).collect();
        let bytes_out = chosen
            .iter()
            .map(|a| a.bytes_out)
            .fold(0u64, u64::saturating_add);
        let bytes_in = chosen
            .iter()
            .map(|a| a.bytes_in)
            .fold(0u64, u64::saturating_add);
        let examples: Vec<serde_json::Value> = chosen
            .iter()
            .take(MAX_EXAMPLES)
            .map(|a| {
                json!({
                    "time": rfc3339(a.first_ns),
                    "destination": a.dest,
                    "proto": proto_label(a.proto),
                    "port": a.port,
                    "answered": !a.unanswered(),
                })
            })
            .collect();
        let host_state = self.hosts.get(&host);
        let untracked = host_state.map_or(0, |h| h.untracked);
        let untracked_unanswered = host_state.map_or(0, |h| h.untracked_unanswered);
        let at_least = if untracked > 0 { "at least " } else { "" };
        let (summary, evidence, destination, reached, first, last, country, asn) = match pattern {
            Pattern::Horizontal(proto, port) => {
                let g = by_port.get(&(proto, port))?;
                let mut top: Vec<(&(u8, u16), &Group<IpAddr>)> = by_port.iter().collect();
                top.sort_by(|a, b| {
                    b.1.distinct
                        .len()
                        .cmp(&a.1.distinct.len())
                        .then(a.0.cmp(b.0))
                });
                let top_ports: Vec<serde_json::Value> = top
                    .iter()
                    .take(MAX_EXAMPLES)
                    .map(|((p, port), g)| {
                        json!({"proto": proto_label(*p), "port": port, "destinations": g.distinct.len(), "attempts": g.attempts, "unanswered": g.unanswered})
                    })
                    .collect();
                let mut dests: Vec<IpAddr> = g.distinct.iter().copied().collect();
                dests.sort_unstable();
                dests.truncate(MAX_EXAMPLES);
                let summary = format!(
                    "probed {at_least}{} addresses on {}/{port} in {}, {} of {} attempts unanswered (horizontal scan)",
                    grouped(g.distinct.len() as u64),
                    proto_label(proto),
                    human_duration((g.last_ns.saturating_sub(g.first_ns)) as f64 / 1e9),
                    grouped(g.unanswered),
                    grouped(g.attempts),
                );
                let evidence = json!({
                    "pattern": "horizontal",
                    "proto": proto_label(proto),
                    "port": port,
                    "distinct_destinations": g.distinct.len(),
                    "threshold": min_dest,
                    "attempts": g.attempts,
                    "unanswered": g.unanswered,
                    "unanswered_share": (g.share() * 1000.0).round() / 1000.0,
                    "top_ports": top_ports,
                    "example_destinations": dests,
                    "example_flows": examples,
                    "untracked_attempts": untracked,
                    "untracked_unanswered": untracked_unanswered,
                });
                (
                    summary,
                    evidence,
                    None,
                    g.reached_ns,
                    g.first_ns,
                    g.last_ns,
                    None,
                    None,
                )
            }
            Pattern::Vertical(dest) => {
                let g = by_dest.get(&dest)?;
                let mut top: Vec<(&IpAddr, &Group<(u8, u16)>)> = by_dest.iter().collect();
                top.sort_by(|a, b| {
                    b.1.distinct
                        .len()
                        .cmp(&a.1.distinct.len())
                        .then(a.0.cmp(b.0))
                });
                let top_dests: Vec<serde_json::Value> = top
                    .iter()
                    .take(MAX_EXAMPLES)
                    .map(|(d, g)| {
                        json!({"destination": d, "ports": g.distinct.len(), "attempts": g.attempts, "unanswered": g.unanswered})
                    })
                    .collect();
                let mut ports: Vec<(u8, u16)> = g.distinct.iter().copied().collect();
                ports.sort_unstable();
                let port_list: Vec<String> = ports
                    .iter()
                    .take(MAX_EXAMPLES)
                    .map(|(p, port)| format!("{}/{port}", proto_label(*p)))
                    .collect();
                let summary = format!(
                    "probed {at_least}{} ports on {dest} in {}, {} of {} attempts unanswered (vertical scan)",
                    grouped(g.distinct.len() as u64),
                    human_duration((g.last_ns.saturating_sub(g.first_ns)) as f64 / 1e9),
                    grouped(g.unanswered),
                    grouped(g.attempts),
                );
                let evidence = json!({
                    "pattern": "vertical",
                    "destination": dest,
                    "distinct_ports": g.distinct.len(),
                    "threshold": min_ports,
                    "attempts": g.attempts,
                    "unanswered": g.unanswered,
                    "unanswered_share": (g.share() * 1000.0).round() / 1000.0,
                    "top_destinations": top_dests,
                    "example_ports": port_list,
                    "example_flows": examples,
                    "untracked_attempts": untracked,
                    "untracked_unanswered": untracked_unanswered,
                });
                let geo = chosen.first();
                // Port 0: the finding is about many ports of one address.
                (
                    summary,
                    evidence,
                    Some((dest, 0)),
                    g.reached_ns,
                    g.first_ns,
                    g.last_ns,
                    geo.and_then(|a| a.country),
                    geo.and_then(|a| a.asn()),
                )
            }
        };
        Some(Finding {
            branch: Branch::FanOut,
            host,
            ts_ns: reached.unwrap_or(last),
            strength,
            destination,
            destination_name: None,
            bytes_out,
            bytes_in,
            duration_s: last.saturating_sub(first) as f64 / 1e9,
            country: country.map(|c| c.as_str().to_string()),
            asn,
            summary,
            evidence,
        })
    }

    fn trw_finding(&self, host: IpAddr, hit: &TrwHit, eta1: f64) -> Finding {
        let w = &hit.walk;
        let span_s = hit.ts_ns.saturating_sub(w.start_ns) as f64 / 1e9;
        let failed: Vec<serde_json::Value> = w
            .failed
            .iter()
            .map(|(d, p)| json!({"destination": d, "port": p}))
            .collect();
        Finding {
            branch: Branch::FanOut,
            host,
            ts_ns: hit.ts_ns,
            strength: self.config.trw_strength.min(100),
            destination: None,
            destination_name: None,
            bytes_out: 0,
            bytes_in: 0,
            duration_s: span_s,
            country: None,
            asn: None,
            summary: format!(
                "failed {} of {} first contacts to new addresses over {} (sequential test: likely scanning, slow)",
                grouped(w.failures),
                grouped(w.contacts),
                human_duration(span_s),
            ),
            evidence: json!({
                "pattern": "sequential",
                "test": "threshold random walk",
                "first_contacts": w.contacts,
                "failed_first_contacts": w.failures,
                "likelihood_ratio": w.log_ratio.exp(),
                "scanner_ratio": eta1,
                "theta0": self.config.trw_theta0,
                "theta1": self.config.trw_theta1,
                "since": rfc3339(w.start_ns),
                "example_failed_contacts": failed,
            }),
        }
    }
}

impl Detector for FanOutDetector {
    fn reconfigure(&mut self, config: &crate::config::DetectorsConfig) {
        // The per-host filter size stays: hosts already tracked keep their filters.
        self.trw = TrwParams::new(&config.fanout);
        self.config = config.fanout.clone();
    }
    fn flow(&mut self, view: &FlowView<'_>, _out: &mut Vec<Finding>) {
        let u = view.update;
        if !self.config.enabled || !view.host_inside || u.inbound || !routable(u.outside) {
            return;
        }
        let last = u.kind == UpdateKind::Final;
        if let Some(a) = self.attempts.get_mut(&u.uid) {
            // The latest update decides whether the attempt was answered.
            a.set_unanswered(unanswered(u));
            a.bytes_out = u.bytes_out;
            a.bytes_in = u.bytes_in;
            if last && let Some(a) = self.attempts.remove(&u.uid) {
                self.ended.push(a);
            }
            return;
        }
        if !view.first_update {
            return;
        }
        if !self.hosts.contains_key(&u.inside) && self.hosts.len() >= self.config.max_hosts.max(1) {
            self.make_room();
        }
        let words = self.filter_words;
        let limit = self.config.trw_known_destinations.max(1);
        let host = self
            .hosts
            .entry(u.inside)
            .or_insert_with(|| HostState::new(words));
        host.last_seen_ns = host.last_seen_ns.max(u.last_ns);
        let first_contact = host.remember(
            u.outside,
            limit,
            &mut self.counters.known_destinations_reset,
        );
        let index = *host.window_index.get_or_insert_with(|| {
            self.window_hosts.push(u.inside);
            (self.window_hosts.len() - 1) as u32
        });
        let answer = unanswered(u);
        let attempt = Attempt {
            uid: u.uid,
            host: index,
            proto: u.proto,
            port: u.outside_port,
            dest: u.outside,
            first_ns: u.first_ns,
            flags: if answer { UNANSWERED } else { 0 }
                | if first_contact { FIRST_CONTACT } else { 0 }
                | if view.geo.asn.is_some() { HAS_ASN } else { 0 },
            bytes_out: u.bytes_out,
            bytes_in: u.bytes_in,
            country: view.geo.country,
            asn: view.geo.asn.unwrap_or(0),
        };
        if host.tracked < self.config.max_flows_per_host
            && self.attempts.len() + self.ended.len() < self.config.max_tracked_flows
        {
            host.tracked += 1;
            if last {
                self.ended.push(attempt);
            } else {
                self.attempts.insert(u.uid, attempt);
            }
            return;
        }
        self.counters.attempts_untracked += 1;
        host.untracked += 1;
        host.untracked_unanswered += u64::from(answer);
        if let Some(trw) = &self.trw
            && first_contact
            && u.proto == ip_proto::TCP
        {
            // No later update will be seen for it: its first answer is its outcome.
            host.step(trw, self.config.trw_min_failures, &attempt);
        }
    }

    fn window(&mut self, _closed: &ClosedWindow, out: &mut Vec<Finding>) {
        let mut list = std::mem::take(&mut self.ended);
        list.extend(self.attempts.drain().map(|(_, a)| a));
        let window_hosts = std::mem::take(&mut self.window_hosts);
        let host_of = |a: &Attempt| window_hosts.get(a.host as usize).copied();
        list.sort_unstable_by_key(|a| (host_of(a), a.first_ns, a.uid));
        let mut with_window_finding: FxHashSet<IpAddr> = FxHashSet::default();
        for chunk in list.chunk_by(|a, b| host_of(a) == host_of(b)) {
            let Some(host) = chunk.first().and_then(host_of) else {
                continue;
            };
            if let Some(finding) = self.window_finding(host, chunk) {
                with_window_finding.insert(host);
                out.push(finding);
            }
            if let (Some(trw), Some(state)) = (self.trw, self.hosts.get_mut(&host)) {
                // Jung et al. test TCP only: other protocols' silence is not a refusal.
                for a in chunk
                    .iter()
                    .filter(|a| a.first_contact() && a.proto == ip_proto::TCP)
                {
                    state.step(&trw, self.config.trw_min_failures, a);
                }
            }
        }
        let mut hits: Vec<(IpAddr, TrwHit)> = Vec::new();
        for (ip, state) in self.hosts.iter_mut() {
            state.window_index = None;
            state.tracked = 0;
            state.untracked = 0;
            state.untracked_unanswered = 0;
            if let Some(hit) = state.hit.take() {
                // One finding per host and window: the per-window pattern already says it.
                if !with_window_finding.contains(ip) {
                    hits.push((*ip, hit));
                }
            }
        }
        hits.sort_unstable_by_key(|(ip, _)| *ip);
        if let Some(trw) = self.trw {
            for (ip, hit) in &hits {
                out.push(self.trw_finding(*ip, hit, trw.eta1));
            }
        }
    }

    fn evicted(&self) -> u64 {
        self.counters.hosts_evicted
    }
}

#[cfg(test)]
mod tests {
    use super::super::flood::testing::{Feeder, SEC, T0, update};
    use super::*;
    use crate::flow::update::UpdateKind;

    const TCP: u8 = ip_proto::TCP;
    const UDP: u8 = ip_proto::UDP;
    const WINDOW: u64 = 900 * SEC;

    /// An unanswered SYN with two retransmissions, first reported by the window's checkpoint.
    fn syn(uid: u64, host: &str, dest: &str, port: u16, ts: u64) -> FlowUpdate<'static> {
        let mut u = update(uid, TCP, host, (dest, port), ts);
        u.last_ns = ts + 3 * SEC;
        u.pkts_out = 3;
        u.bytes_out = 180;
        u
    }

    /// A completed HTTPS exchange.
    fn web(uid: u64, host: &str, dest: &str, ts: u64) -> FlowUpdate<'static> {
        let mut u = update(uid, TCP, host, (dest, 443), ts);
        u.kind = UpdateKind::Final;
        u.last_ns = ts + 4 * SEC;
        u.pkts_out = 18;
        u.bytes_out = 2_400;
        u.pkts_in = 24;
        u.bytes_in = 28_000;
        u.answered = true;
        u.conn_state = "SF";
        u
    }

    fn addr(n: u32) -> String {
        std::net::Ipv4Addr::from(0x2d40_0000u32.wrapping_add(n.wrapping_mul(2_654_435_761) >> 8))
            .to_string()
    }

    #[test]
    fn atomic_red_team_burst_is_a_horizontal_scan() {
        // 80 connections to 8.8.0.1 ... 8.8.79.1 on port 80 within a minute, none answered.
        let mut det = FanOutDetector::new(FanOutConfig::default());
        let mut feed = Feeder::new();
        let start = T0 + 120 * SEC;
        for i in 0..80u64 {
            let dest = format!("8.8.{i}.1");
            feed.feed(
                &mut det,
                &syn(i + 1, "10.1.2.3", &dest, 80, start + i * 700_000_000),
            );
        }
        let found = feed.close(&mut det, T0, T0 + WINDOW);
        assert_eq!(found.len(), 1, "{found:?}");
        let f = &found[0];
        assert_eq!(f.branch, Branch::FanOut);
        assert_eq!(f.host, "10.1.2.3".parse::<IpAddr>().unwrap());
        assert_eq!(f.strength, 70);
        assert_eq!(
            f.summary,
            "probed 80 addresses on TCP/80 in 55 s, 80 of 80 attempts unanswered (horizontal scan)"
        );
        assert_eq!(f.evidence["pattern"], "horizontal");
        assert_eq!(f.evidence["distinct_destinations"], 80);
        // Established when the 50th address was tried.
        assert_eq!(f.ts_ns, start + 49 * 700_000_000);
        assert_eq!(
            f.evidence["example_flows"].as_array().map(Vec::len),
            Some(10)
        );
    }

    #[test]
    fn masscan_vertical_sweep_is_strong() {
        // 1,000 ports of one address in 10 s; 990 refused with RST, 10 open.
        let mut det = FanOutDetector::new(FanOutConfig::default());
        let mut feed = Feeder::new();
        for port in 1..=1_000u16 {
            let ts = T0 + 30 * SEC + u64::from(port) * 10_000_000;
            let mut u = syn(u64::from(port), "10.20.0.9", "198.51.100.7", port, ts);
            u.kind = UpdateKind::Final;
            u.pkts_out = 1;
            u.bytes_out = 44;
            u.pkts_in = 1;
            u.bytes_in = 40;
            u.answered = true;
            u.conn_state = if port % 100 == 0 { "RSTO" } else { "REJ" };
            feed.feed(&mut det, &u);
        }
        let found = feed.close(&mut det, T0, T0 + WINDOW);
        assert_eq!(found.len(), 1, "{found:?}");
        let f = &found[0];
        // 1,000 ports is 10x the threshold of 100.
        assert_eq!(f.strength, 80);
        assert_eq!(f.destination, Some(("198.51.100.7".parse().unwrap(), 0)));
        assert_eq!(
            f.summary,
            "probed 1,000 ports on 198.51.100.7 in 10 s, 990 of 1,000 attempts unanswered (vertical scan)"
        );
        assert_eq!(f.evidence["example_ports"][0], "TCP/1");
    }

    #[test]
    fn busy_answered_web_client_is_no_scan() {
        // 400 HTTPS connections to 220 addresses per window, all answered, plus DNS to one
        // resolver, for three windows: no per-window pattern and no sequential call.
        let mut det = FanOutDetector::new(FanOutConfig::default());
        let mut feed = Feeder::new();
        let mut uid = 0;
        for w in 0..3u64 {
            let base = T0 + w * WINDOW;
            for i in 0..400u64 {
                uid += 1;
                let dest = addr((w * 150 + i % 220) as u32);
                feed.feed(&mut det, &web(uid, "10.1.5.20", &dest, base + i * 2 * SEC));
                if i % 8 == 0 {
                    uid += 1;
                    let mut dns =
                        update(uid, UDP, "10.1.5.20", ("9.9.9.9", 53), base + i * 2 * SEC);
                    dns.kind = UpdateKind::Final;
                    dns.pkts_out = 1;
                    dns.pkts_in = 1;
                    dns.answered = true;
                    dns.conn_state = "SF";
                    feed.feed(&mut det, &dns);
                }
            }
            // A few blocked sites on the way: refused, but no scan.
            for i in 0..5u64 {
                uid += 1;
                feed.feed(
                    &mut det,
                    &syn(
                        uid,
                        "10.1.5.20",
                        &addr(90_000 + (w * 5 + i) as u32),
                        443,
                        base + 850 * SEC,
                    ),
                );
            }
            let found = feed.close(&mut det, base, base + WINDOW);
            assert!(found.is_empty(), "window {w}: {found:?}");
        }
    }

    #[test]
    fn an_attempt_answered_after_its_first_update_is_not_unanswered() {
        // 60 connections first reported (by the checkpoint) before the SYN-ACK came back, then
        // finished normally in the same window.
        let mut det = FanOutDetector::new(FanOutConfig::default());
        let mut feed = Feeder::new();
        for i in 0..60u64 {
            let dest = addr(i as u32);
            let ts = T0 + i * SEC;
            let first = syn(i + 1, "10.1.2.3", &dest, 443, ts);
            feed.feed(&mut det, &first);
            feed.feed(&mut det, &web(i + 1, "10.1.2.3", &dest, ts));
        }
        assert!(feed.close(&mut det, T0, T0 + WINDOW).is_empty());
        // Had they stayed unanswered, the same 60 would be a scan.
        let mut det = FanOutDetector::new(FanOutConfig::default());
        for i in 0..60u64 {
            feed.feed(
                &mut det,
                &syn(i + 1, "10.1.2.3", &addr(i as u32), 443, T0 + i * SEC),
            );
        }
        assert_eq!(feed.close(&mut det, T0, T0 + WINDOW).len(), 1);
    }

    #[test]
    fn slow_scan_is_caught_by_the_sequential_test_across_windows() {
        // 12 new addresses on port 22 per window (far below 50), 11 of them silent, beside
        // 6 ordinary answered web visits: the walk calls a scanner once 20 first contacts have
        // failed, in the second window.
        let mut det = FanOutDetector::new(FanOutConfig::default());
        let mut feed = Feeder::new();
        let mut uid = 0;
        let mut windows_with_findings = Vec::new();
        for w in 0..3u64 {
            let base = T0 + w * WINDOW;
            for i in 0..12u64 {
                uid += 1;
                let dest = addr((1_000 + w * 12 + i) as u32);
                let ts = base + i * 70 * SEC;
                if i == 5 {
                    feed.feed(&mut det, &web(uid, "10.3.0.44", &dest, ts));
                } else {
                    feed.feed(&mut det, &syn(uid, "10.3.0.44", &dest, 22, ts));
                }
                if i % 2 == 0 {
                    uid += 1;
                    // The same few sites every window: known after the first.
                    let site = addr((i / 2) as u32);
                    feed.feed(&mut det, &web(uid, "10.3.0.44", &site, ts + SEC));
                }
            }
            let found = feed.close(&mut det, base, base + WINDOW);
            if !found.is_empty() {
                windows_with_findings.push(w);
                assert_eq!(found.len(), 1);
                let f = &found[0];
                assert_eq!(f.strength, 60);
                assert_eq!(f.evidence["pattern"], "sequential");
                assert!(f.evidence["failed_first_contacts"].as_u64() >= Some(20));
                assert!(f.summary.starts_with("failed 2"), "{}", f.summary);
            }
        }
        assert_eq!(windows_with_findings, vec![1]);
    }

    #[test]
    fn sequential_test_parameters_come_from_config() {
        let config = FanOutConfig {
            trw_enabled: false,
            ..FanOutConfig::default()
        };
        assert!(FanOutDetector::new(config).trw.is_none());
        // theta1 must be below theta0 for the test to mean anything.
        let config = FanOutConfig {
            trw_theta0: 0.2,
            trw_theta1: 0.8,
            ..FanOutConfig::default()
        };
        assert!(FanOutDetector::new(config).trw.is_none());
        let trw = TrwParams::new(&FanOutConfig::default()).map(|t| t.eta1);
        assert!(trw.is_some_and(|eta1| (eta1 - 99.0).abs() < 1e-9));
        // Four straight failures reach 99 (4 x ln 4 > ln 99); three do not.
        let t = TrwParams::new(&FanOutConfig::default());
        assert!(t.is_some_and(|t| 4.0 * t.failure_step >= t.ln_eta1 && 3.0 * t.failure_step < t.ln_eta1));
    }

    #[test]
    fn per_window_thresholds_come_from_config() {
        // The burst of 80 falls below a 100-address threshold.
        let config = FanOutConfig {
            min_destinations_per_port: 100,
            ..FanOutConfig::default()
        };
        let mut det = FanOutDetector::new(config);
        let mut feed = Feeder::new();
        for i in 0..80u64 {
            feed.feed(
                &mut det,
                &syn(
                    i + 1,
                    "10.1.2.3",
                    &format!("8.8.{i}.1"),
                    80,
                    T0 + i * SEC / 2,
                ),
            );
        }
        // The sequential test still calls it: 80 failed first contacts in a row.
        let found = feed.close(&mut det, T0, T0 + WINDOW);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].evidence["pattern"], "sequential");
    }

    #[test]
    fn inbound_and_inside_destinations_are_not_scans() {
        let mut det = FanOutDetector::new(FanOutConfig::default());
        let mut feed = Feeder::new();
        for i in 0..200u64 {
            // Internet scanners probing an inside web server.
            let mut u = syn(i + 1, "10.1.2.80", &addr(i as u32), 22, T0 + i * SEC);
            u.inbound = true;
            feed.feed(&mut det, &u);
            // An inside host sweeping its own LAN (not egress).
            let lan = format!("10.9.{}.{}", i / 250, i % 250 + 1);
            feed.feed(
                &mut det,
                &syn(1_000 + i, "10.1.2.81", &lan, 445, T0 + i * SEC),
            );
        }
        assert!(det.attempts.is_empty());
        assert!(feed.close(&mut det, T0, T0 + WINDOW).is_empty());
    }

    #[test]
    fn state_is_bounded_with_counted_eviction() {
        let config = FanOutConfig {
            max_hosts: 16,
            max_flows_per_host: 100,
            ..FanOutConfig::default()
        };
        let mut det = FanOutDetector::new(config);
        let mut feed = Feeder::new();
        let mut uid = 0;
        for h in 0..64u32 {
            let host = format!("10.2.0.{}", h + 1);
            for i in 0..150u32 {
                uid += 1;
                feed.feed(
                    &mut det,
                    &syn(uid, &host, &addr(h * 1_000 + i), 80, T0 + uid * 1_000_000),
                );
                assert!(det.hosts.len() <= 16);
            }
        }
        assert!(det.counters.hosts_evicted >= 48);
        assert_eq!(det.evicted(), det.counters.hosts_evicted);
        // 50 attempts per host went uncounted individually, yet each host still shows a scan.
        assert_eq!(det.counters.attempts_untracked, 64 * 50);
        let found = feed.close(&mut det, T0, T0 + WINDOW);
        assert_eq!(found.len(), 64);
        assert!(det.attempts.is_empty());
    }

    #[test]
    fn known_destination_filter_tells_first_contacts() {
        let mut host = HostState::new(FanOutConfig::default().trw_known_destinations * 8 / 64);
        let mut resets = 0;
        let a: IpAddr = "198.51.100.1".parse().unwrap();
        assert!(host.remember(a, 1024, &mut resets));
        assert!(!host.remember(a, 1024, &mut resets));
        let new = (0..1_023u32)
            .filter(|&i| host.remember(addr(i).parse().unwrap(), 1024, &mut resets))
            .count();
        // A few may collide with earlier ones; most are new.
        assert!(new > 950, "{new}");
        assert_eq!(resets, 0);
        for i in 0..2_000u32 {
            host.remember(addr(50_000 + i).parse().unwrap(), 1024, &mut resets);
        }
        assert!(resets >= 1);
    }
}
