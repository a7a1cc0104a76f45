//! Per-host tumbling windows of egress and the baselines they feed (per-host EWMA, per hour of
//! day once warm, and the population's 90th percentile per window: AN0084's rule).
//!
//! Choices the detectors rely on:
//! - Allowlisted flows add only to `allowlisted_bytes_out`: none of their bytes, packets,
//!   destinations or sessions count, so a backup's upload never looks like egress.
//! - Destinations, ports, flows opened and unanswered attempts count outbound flows only (the
//!   host opened them); an attempt is judged on the flow's first update, which the flow table
//!   sends at the latest at the window's checkpoint (an answer arriving after that instant, a
//!   round trip at most, is missed).
//! - Every tracked host's history sees every closed window, with zero egress when it was silent,
//!   so a host quiet at night is not judged only against its busy windows.
//! - The per-hour-of-day baseline counts its samples in days: an hour is warm once it has been
//!   seen on `hour_of_day_min_samples` different days.
use super::FlowView;
use super::clock::BusinessClock;
use crate::enrich::geo::CountryCode;
use crate::flow::key::Uid;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::net::IpAddr;

const NS: u64 = 1_000_000_000;
const DAY_NS: u64 = 86_400 * NS;
/// Countries and ASNs listed per host and window: enough to show "many", bounded per host.
const MAX_WINDOW_COUNTRIES: usize = 64;
const MAX_WINDOW_ASNS: usize = 64;
/// Countries and ASNs remembered per host (about 250 countries exist).
const MAX_SEEN_COUNTRIES: usize = 256;
const MAX_SEEN_ASNS: usize = 256;
/// HyperLogLog precision: 4096 one-byte registers, standard error 1.04/sqrt(4096) = 1.6%.
const HLL_PRECISION: u32 = 12;
const HLL_REGISTERS: usize = 1 << HLL_PRECISION;
/// Exact distinct sets keep at most this capacity between windows; a host that needed more
/// reallocates once per window, not per update.
const KEEP_EXACT_CAPACITY: usize = 64;
/// Per-hour means weigh at most this many days of windows, so they follow a lasting change.
const HOUR_MEAN_MAX_DAYS: u32 = 28;
/// Long flows remembered per window so each counts once; matches the flow table's default bound.
const MAX_LONG_FLOWS_PER_WINDOW: usize = 1_000_000;
/// Long-session endpoints listed per host and window (fleet summaries); the busiest relay
/// hosts hold a few.
const MAX_LONG_SESSIONS_PER_HOST: usize = 8;
/// Stale idle-order entries tolerated beyond the host count before the heap is rebuilt.
const IDLE_HEAP_SLACK: usize = 1024;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WindowsConfig {
    /// Tumbling window length (DET0028 TimeWindow); 300, 900 and 3600 are typical.
    pub window_seconds: u64,
    /// Inside hosts tracked at once; beyond it the longest idle host is evicted (counted).
    pub max_hosts: usize,
    /// Distinct destinations and ports are counted exactly up to this many per host and
    /// window, then estimated with HyperLogLog.
    pub exact_distinct_limit: usize,
    /// Weight of the newest window in the per-host moving average of egress.
    pub ewma_alpha: f64,
    /// A host's own baseline is used once it has this many windows of history.
    pub min_history_windows: u32,
    /// The per-hour-of-day baseline replaces the EWMA once an hour has been seen on this many
    /// different days.
    pub hour_of_day_min_samples: u32,
    /// The population 90th percentile needs at least this many active hosts in the window.
    pub population_min_hosts: usize,
    /// A flow open at least this long counts as a long session in the window's statistics.
    pub long_session_seconds: u64,
}

impl WindowsConfig {
    pub fn window_ns(&self) -> u64 {
        self.window_seconds.max(1) * NS
    }
}

impl Default for WindowsConfig {
    fn default() -> Self {
        WindowsConfig {
            window_seconds: 900,
            max_hosts: 100_000,
            exact_distinct_limit: 256,
            ewma_alpha: 0.2,
            min_history_windows: 4,
            hour_of_day_min_samples: 3,
            population_min_hosts: 5,
            long_session_seconds: 600,
        }
    }
}

/// One inside host's statistics for one closed window, with its baseline before the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostWindow {
    pub host: IpAddr,
    /// Egress to destinations that are not allowlisted.
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub pkts_out: u64,
    pub pkts_in: u64,
    /// Egress to allowlisted destinations (counted apart, in no other field).
    pub allowlisted_bytes_out: u64,
    /// Outbound flows the host opened in the window.
    pub flows_opened: u64,
    /// Distinct outside addresses of outbound flows (exact up to the limit, then estimated).
    pub distinct_destinations: u64,
    /// Distinct outside ports of outbound flows.
    pub distinct_ports: u64,
    /// TCP attempts nobody accepted (S0, REJ, RSTOS0, SH) among flows opened in the window.
    pub unanswered_tcp: u64,
    /// Flows open at least `long_session_seconds` that carried bytes in the window.
    pub long_sessions_open: u64,
    /// Countries and ASNs contacted (bounded lists, sorted).
    pub countries: Vec<CountryCode>,
    pub asns: Vec<u32>,
    /// Egress that happened outside business hours.
    pub off_hours_bytes_out: u64,
    /// Egress the host's history predicts for this window (hour-of-day baseline when warm,
    /// else the EWMA); None until the host has `min_history_windows` windows.
    pub baseline_bytes_out: Option<f64>,
    /// Windows of history behind the baseline.
    pub history_windows: u32,
    /// Counted in the population p90 (some of its traffic was not allowlisted).
    pub in_population: bool,
    /// Long sessions that carried bytes in the window, by outside endpoint (bounded).
    pub long_sessions: Vec<LongSession>,
}

/// A session open at least `long_session_seconds`, as far as it went in one window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LongSession {
    pub outside: IpAddr,
    pub outside_port: u16,
    pub country: Option<CountryCode>,
    pub asn: Option<u32>,
    pub bytes_out: u64,
    pub bytes_in: u64,
    /// Session age at its last update in the window.
    pub duration_ns: u64,
}

/// Whose 90th percentile `population_p90_bytes_out` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PopulationScope {
    /// This sensor's own hosts.
    Site,
    /// The fleet's, from the aggregator (fleet mode).
    Fleet { sites: u32, hosts: u64 },
}

/// A window that just closed: every host active in it, sorted by address.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClosedWindow {
    pub start_ns: u64,
    pub end_ns: u64,
    /// 90th percentile (interpolated) of bytes_out over the window's active hosts (None when fewer than
    /// `population_min_hosts` were active). Hosts whose only traffic was allowlisted are not
    /// counted.
    pub population_p90_bytes_out: Option<u64>,
    pub population_scope: PopulationScope,
    pub hosts: Vec<HostWindow>,
}

/// What is known about a host from earlier windows (read by detectors before a flow is added).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostHistory {
    pub first_seen_ns: u64,
    /// Closed windows the host has been tracked through.
    pub windows: u32,
    /// Countries and ASNs the host has sent to before (bounded).
    pub countries: BTreeSet<CountryCode>,
    pub asns: BTreeSet<u32>,
    pub ewma_bytes_out: f64,
}

/// Egress statistics of one local hour of day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct HourStat {
    /// Different days this hour was seen on.
    pub days: u32,
    /// UTC day number + 1 of the latest sample (0: none).
    pub last_day: u64,
    /// Windows averaged (the weight of a new one is 1 / min(windows, cap)).
    pub windows: u32,
    pub mean_bytes_out: f64,
}

/// One host's saved baselines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedHost {
    pub host: IpAddr,
    pub last_seen_ns: u64,
    pub history: HostHistory,
    /// (local hour, statistics) for the hours that have samples.
    pub hours: Vec<(u8, HourStat)>,
}

/// Saved baselines (`--state FILE`), so a daily replay continues yesterday's history. The open
/// window is not saved: the engine closes it before saving.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowsState {
    pub hosts: Vec<SavedHost>,
}

struct Host {
    history: HostHistory,
    hours: [HourStat; 24],
    last_seen_ns: u64,
    /// Index of the host's accumulator while it is active in the open window.
    open: Option<usize>,
}

impl Host {
    fn new(first_seen_ns: u64, last_seen_ns: u64) -> Host {
        Host {
            history: HostHistory {
                first_seen_ns,
                ..HostHistory::default()
            },
            hours: [HourStat::default(); 24],
            last_seen_ns,
            open: None,
        }
    }
}

/// Exact distinct count of 64-bit hashes up to a limit, then HyperLogLog.
#[derive(Default)]
struct Distinct {
    exact: FxHashSet<u64>,
    /// Empty while counting exactly.
    registers: Vec<u8>,
}

impl Distinct {
    fn insert(&mut self, hash: u64, limit: usize) {
        if self.registers.is_empty() {
            if self.exact.len() < limit || self.exact.contains(&hash) {
                self.exact.insert(hash);
                return;
            }
            self.registers.resize(HLL_REGISTERS, 0);
            for h in self.exact.drain() {
                hll_add(&mut self.registers, h);
            }
        }
        hll_add(&mut self.registers, hash);
    }

    fn count(&self) -> u64 {
        if self.registers.is_empty() {
            self.exact.len() as u64
        } else {
            hll_estimate(&self.registers)
        }
    }

    fn reset(&mut self) {
        self.exact.clear();
        self.exact.shrink_to(KEEP_EXACT_CAPACITY);
        self.registers = Vec::new();
    }
}

fn hll_add(registers: &mut [u8], hash: u64) {
    let index = (hash >> (64 - HLL_PRECISION)) as usize;
    // A sentinel bit bounds the rank at 64 - p + 1.
    let rest = (hash << HLL_PRECISION) | (1 << (HLL_PRECISION - 1));
    let rank = rest.leading_zeros() as u8 + 1;
    if let Some(r) = registers.get_mut(index) {
        *r = (*r).max(rank);
    }
}

/// Flajolet et al.'s estimate with linear counting for small cardinalities; a 64-bit hash
/// needs no large-range correction.
fn hll_estimate(registers: &[u8]) -> u64 {
    let m = registers.len() as f64;
    if registers.is_empty() {
        return 0;
    }
    let mut sum = 0.0;
    let mut zeros = 0usize;
    for &r in registers {
        sum += 1.0 / (1u64 << r.min(63)) as f64;
        zeros += usize::from(r == 0);
    }
    let alpha = 0.7213 / (1.0 + 1.079 / m);
    let raw = alpha * m * m / sum;
    let estimate = if raw <= 2.5 * m && zeros > 0 {
        m * (m / zeros as f64).ln()
    } else {
        raw
    };
    estimate.round() as u64
}

/// splitmix64's finaliser: a fixed bijection, so counts are the same on every run.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn addr_hash(addr: IpAddr) -> u64 {
    match addr {
        IpAddr::V4(v4) => mix64(u64::from(u32::from(v4)) ^ 0x6a09_e667_f3bc_c908),
        IpAddr::V6(v6) => {
            let x = u128::from(v6);
            mix64((x as u64) ^ mix64(((x >> 64) as u64) ^ 0xbb67_ae85_84ca_a73b))
        }
    }
}

fn port_hash(port: u16) -> u64 {
    mix64(u64::from(port) ^ 0x3c6e_f372_fe94_f82b)
}

/// Adds to a sorted bounded list.
fn insert_bounded<T: Ord>(list: &mut Vec<T>, value: T, max: usize) {
    if let Err(pos) = list.binary_search(&value)
        && list.len() < max
    {
        list.insert(pos, value);
    }
}

/// One host's open window. Accumulators are pooled and reused across windows.
#[derive(Default)]
struct Accum {
    host: Option<IpAddr>,
    /// Had at least one update that was not allowlisted.
    counted: bool,
    bytes_out: u64,
    bytes_in: u64,
    pkts_out: u64,
    pkts_in: u64,
    allowlisted_bytes_out: u64,
    flows_opened: u64,
    unanswered_tcp: u64,
    long_sessions_open: u64,
    off_hours_bytes_out: u64,
    destinations: Distinct,
    ports: Distinct,
    countries: Vec<CountryCode>,
    asns: Vec<u32>,
    long_sessions: Vec<LongSession>,
}

impl Accum {
    fn reset(&mut self) {
        self.host = None;
        self.counted = false;
        self.bytes_out = 0;
        self.bytes_in = 0;
        self.pkts_out = 0;
        self.pkts_in = 0;
        self.allowlisted_bytes_out = 0;
        self.flows_opened = 0;
        self.unanswered_tcp = 0;
        self.long_sessions_open = 0;
        self.off_hours_bytes_out = 0;
        self.destinations.reset();
        self.ports.reset();
        self.countries.clear();
        self.asns.clear();
        self.long_sessions.clear();
    }
}

/// 90th percentile with linear interpolation between ranks (numpy's default); None for fewer
/// than `min_values`. Nearest rank would make the p90 of 5-9 hosts equal to the busiest host,
/// which could then never be "over the population". The fleet's p90 uses it too.
pub fn p90(values: &mut [u64], min_values: usize) -> Option<u64> {
    if values.is_empty() || values.len() < min_values {
        return None;
    }
    values.sort_unstable();
    let tenths = 9 * (values.len() - 1);
    let (lo, frac) = (tenths / 10, (tenths % 10) as u64);
    let low = *values.get(lo)?;
    let high = values.get(lo + 1).copied().unwrap_or(low);
    Some(low + (high - low) * frac / 10)
}

/// Adds a long flow's bytes to its endpoint's entry; endpoints past the bound are left out
/// (the count of long sessions still has them).
fn note_long_session(sessions: &mut Vec<LongSession>, view: &FlowView<'_>) {
    let u = view.update;
    let d = view.delta;
    let entry = match sessions
        .iter_mut()
        .position(|s| s.outside == u.outside && s.outside_port == u.outside_port)
    {
        Some(i) => sessions.get_mut(i),
        None if sessions.len() < MAX_LONG_SESSIONS_PER_HOST => {
            sessions.push(LongSession {
                outside: u.outside,
                outside_port: u.outside_port,
                country: view.geo.country,
                asn: view.geo.asn,
                bytes_out: 0,
                bytes_in: 0,
                duration_ns: 0,
            });
            sessions.last_mut()
        }
        None => None,
    };
    if let Some(s) = entry {
        s.bytes_out = s.bytes_out.saturating_add(d.bytes_out);
        s.bytes_in = s.bytes_in.saturating_add(d.bytes_in);
        s.duration_ns = s.duration_ns.max(u.duration_ns());
    }
}

pub struct HostWindows {
    config: WindowsConfig,
    clock: BusinessClock,
    hosts: FxHashMap<IpAddr, Host>,
    /// Pool of accumulators; the first `active` belong to hosts active in the open window.
    accums: Vec<Accum>,
    active: usize,
    /// Min-heap of (last seen, host), with stale entries skipped lazily on eviction.
    idle: BinaryHeap<Reverse<(u64, IpAddr)>>,
    /// Long flows already counted in the open window.
    long_flows: FxHashSet<Uid>,
    evicted: u64,
}

impl HostWindows {
    /// Reloaded business hours; per-host history stays.
    pub fn set_clock(&mut self, clock: BusinessClock) {
        self.clock = clock;
    }

    pub fn new(mut config: WindowsConfig, clock: BusinessClock) -> HostWindows {
        if !config.ewma_alpha.is_finite() {
            config.ewma_alpha = WindowsConfig::default().ewma_alpha;
        }
        config.ewma_alpha = config.ewma_alpha.clamp(0.0, 1.0);
        config.max_hosts = config.max_hosts.max(1);
        HostWindows {
            config,
            clock,
            hosts: FxHashMap::default(),
            accums: Vec::new(),
            active: 0,
            idle: BinaryHeap::new(),
            long_flows: FxHashSet::default(),
            evicted: 0,
        }
    }

    pub fn config(&self) -> &WindowsConfig {
        &self.config
    }

    /// Adds a flow update of an inside host to the open window.
    pub fn flow(&mut self, view: &FlowView<'_>) {
        let u = view.update;
        let slot = self.touch(u.inside, u.first_ns, u.last_ns);
        let long_ns = self.config.long_session_seconds.saturating_mul(NS);
        let limit = self.config.exact_distinct_limit;
        let Some(acc) = self.accums.get_mut(slot) else {
            return;
        };
        let d = view.delta;
        if view.allowlisted {
            acc.allowlisted_bytes_out = acc.allowlisted_bytes_out.saturating_add(d.bytes_out);
            return;
        }
        acc.counted = true;
        acc.bytes_out = acc.bytes_out.saturating_add(d.bytes_out);
        acc.bytes_in = acc.bytes_in.saturating_add(d.bytes_in);
        acc.pkts_out = acc.pkts_out.saturating_add(d.pkts_out);
        acc.pkts_in = acc.pkts_in.saturating_add(d.pkts_in);
        if view.off_hours {
            acc.off_hours_bytes_out = acc.off_hours_bytes_out.saturating_add(d.bytes_out);
        }
        if !u.inbound {
            if view.first_update {
                acc.flows_opened += 1;
                if u.unanswered_attempt() {
                    acc.unanswered_tcp += 1;
                }
            }
            acc.destinations.insert(addr_hash(u.outside), limit);
            acc.ports.insert(port_hash(u.outside_port), limit);
        }
        // Inbound attempts the host never answered say nothing about where it sends.
        if !u.inbound || d.bytes_out > 0 {
            if let Some(c) = view.geo.country {
                insert_bounded(&mut acc.countries, c, MAX_WINDOW_COUNTRIES);
            }
            if let Some(a) = view.geo.asn {
                insert_bounded(&mut acc.asns, a, MAX_WINDOW_ASNS);
            }
        }
        if d.bytes_out.saturating_add(d.bytes_in) > 0 && u.duration_ns() >= long_ns {
            if self.long_flows.len() < MAX_LONG_FLOWS_PER_WINDOW && self.long_flows.insert(u.uid) {
                acc.long_sessions_open += 1;
            }
            note_long_session(&mut acc.long_sessions, view);
        }
    }

    /// The host's record (created, evicting the longest idle host at the bound), its idle
    /// order refreshed; returns its accumulator slot in the open window.
    fn touch(&mut self, ip: IpAddr, first_ns: u64, now_ns: u64) -> usize {
        if self.hosts.len() >= self.config.max_hosts && !self.hosts.contains_key(&ip) {
            self.evict_idlest();
        }
        let mut created = false;
        let host = self.hosts.entry(ip).or_insert_with(|| {
            created = true;
            Host::new(first_ns, now_ns)
        });
        // Out-of-order updates never move a host back in the idle order.
        if created || now_ns > host.last_seen_ns {
            host.last_seen_ns = host.last_seen_ns.max(now_ns);
            self.idle.push(Reverse((host.last_seen_ns, ip)));
        }
        let slot = match host.open {
            Some(slot) => slot,
            None => {
                let slot = self.active;
                if slot == self.accums.len() {
                    self.accums.push(Accum::default());
                }
                if let Some(acc) = self.accums.get_mut(slot) {
                    acc.host = Some(ip);
                }
                self.active += 1;
                host.open = Some(slot);
                slot
            }
        };
        if self.idle.len() > self.hosts.len().saturating_mul(2) + IDLE_HEAP_SLACK {
            self.rebuild_idle();
        }
        slot
    }

    fn rebuild_idle(&mut self) {
        let mut entries = std::mem::take(&mut self.idle).into_vec();
        entries.clear();
        entries.extend(
            self.hosts
                .iter()
                .map(|(&ip, h)| Reverse((h.last_seen_ns, ip))),
        );
        self.idle = BinaryHeap::from(entries);
    }

    fn evict_idlest(&mut self) {
        while let Some(Reverse((seen, ip))) = self.idle.pop() {
            let current = self.hosts.get(&ip).is_some_and(|h| h.last_seen_ns == seen);
            if current {
                self.remove_host(ip);
                self.evicted += 1;
                return;
            }
        }
    }

    fn remove_host(&mut self, ip: IpAddr) {
        let Some(host) = self.hosts.remove(&ip) else {
            return;
        };
        let Some(slot) = host.open else {
            return;
        };
        if slot >= self.active || self.active > self.accums.len() {
            return;
        }
        // Keep the active accumulators contiguous: move the last one into the freed slot.
        let last = self.active - 1;
        self.accums.swap(slot, last);
        if let Some(acc) = self.accums.get_mut(last) {
            acc.reset();
        }
        self.active = last;
        if slot < last {
            let moved = self.accums.get(slot).and_then(|a| a.host);
            if let Some(h) = moved.and_then(|m| self.hosts.get_mut(&m)) {
                h.open = Some(slot);
            }
        }
    }

    pub fn history(&self, host: IpAddr) -> Option<&HostHistory> {
        self.hosts.get(&host).map(|h| &h.history)
    }

    /// Closes the open window at `end_ns` and updates the baselines.
    pub fn close(&mut self, start_ns: u64, end_ns: u64) -> ClosedWindow {
        let hour = usize::from(self.clock.hour_of_day(start_ns)) % 24;
        let day = start_ns / DAY_NS + 1;
        let alpha = self.config.ewma_alpha;
        let min_history = self.config.min_history_windows;
        let min_days = self.config.hour_of_day_min_samples.max(1);
        let windows_per_hour = (3600 / self.config.window_seconds.max(1)).max(1);
        let mean_cap = u32::try_from(windows_per_hour)
            .unwrap_or(u32::MAX)
            .saturating_mul(HOUR_MEAN_MAX_DAYS);
        let mut out = Vec::with_capacity(self.active);
        let mut population = Vec::with_capacity(self.active);
        for (&ip, host) in self.hosts.iter_mut() {
            let acc = host.open.take().and_then(|slot| self.accums.get(slot));
            let bytes_out = acc.map_or(0, |a| a.bytes_out);
            let hist = &mut host.history;
            let stat = host.hours.get_mut(hour);
            if let Some(acc) = acc {
                let baseline = (hist.windows >= min_history).then_some(match &stat {
                    Some(s) if s.days >= min_days => s.mean_bytes_out,
                    _ => hist.ewma_bytes_out,
                });
                out.push(HostWindow {
                    host: ip,
                    bytes_out: acc.bytes_out,
                    bytes_in: acc.bytes_in,
                    pkts_out: acc.pkts_out,
                    pkts_in: acc.pkts_in,
                    allowlisted_bytes_out: acc.allowlisted_bytes_out,
                    flows_opened: acc.flows_opened,
                    distinct_destinations: acc.destinations.count(),
                    distinct_ports: acc.ports.count(),
                    unanswered_tcp: acc.unanswered_tcp,
                    long_sessions_open: acc.long_sessions_open,
                    countries: acc.countries.clone(),
                    asns: acc.asns.clone(),
                    off_hours_bytes_out: acc.off_hours_bytes_out,
                    baseline_bytes_out: baseline,
                    history_windows: hist.windows,
                    in_population: acc.counted,
                    long_sessions: acc.long_sessions.clone(),
                });
                if acc.counted {
                    population.push(acc.bytes_out);
                }
                for &c in &acc.countries {
                    if hist.countries.len() < MAX_SEEN_COUNTRIES {
                        hist.countries.insert(c);
                    }
                }
                for &a in &acc.asns {
                    if hist.asns.len() < MAX_SEEN_ASNS {
                        hist.asns.insert(a);
                    }
                }
            }
            let x = bytes_out as f64;
            hist.ewma_bytes_out = if hist.windows == 0 {
                x
            } else {
                alpha * x + (1.0 - alpha) * hist.ewma_bytes_out
            };
            hist.windows = hist.windows.saturating_add(1);
            if let Some(s) = stat {
                if s.last_day != day {
                    s.last_day = day;
                    s.days = s.days.saturating_add(1);
                }
                s.windows = s.windows.saturating_add(1);
                let n = s.windows.min(mean_cap).max(1);
                s.mean_bytes_out += (x - s.mean_bytes_out) / f64::from(n);
            }
        }
        for acc in self.accums.iter_mut().take(self.active) {
            acc.reset();
        }
        self.active = 0;
        self.long_flows.clear();
        out.sort_unstable_by_key(|h| h.host);
        ClosedWindow {
            start_ns,
            end_ns,
            population_p90_bytes_out: p90(&mut population, self.config.population_min_hosts),
            population_scope: PopulationScope::Site,
            hosts: out,
        }
    }

    pub fn state(&self) -> WindowsState {
        let mut hosts: Vec<SavedHost> = self
            .hosts
            .iter()
            .map(|(&ip, h)| SavedHost {
                host: ip,
                last_seen_ns: h.last_seen_ns,
                history: h.history.clone(),
                hours: h
                    .hours
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.windows > 0)
                    .map(|(i, s)| (i as u8, *s))
                    .collect(),
            })
            .collect();
        hosts.sort_unstable_by_key(|h| h.host);
        WindowsState { hosts }
    }

    /// Replaces the tracked hosts with saved ones; beyond `max_hosts` the longest idle are
    /// dropped (counted as evicted). Non-finite numbers from a damaged file become zero.
    pub fn restore(&mut self, state: WindowsState) {
        for acc in self.accums.iter_mut().take(self.active) {
            acc.reset();
        }
        self.active = 0;
        self.long_flows.clear();
        self.hosts.clear();
        let mut saved = state.hosts;
        // Most recently seen first, address as tie-break, so the bound keeps the same hosts.
        saved.sort_unstable_by_key(|h| (Reverse(h.last_seen_ns), h.host));
        let keep = saved.len().min(self.config.max_hosts);
        self.evicted += (saved.len() - keep) as u64;
        for s in saved.into_iter().take(keep) {
            let mut history = s.history;
            if !history.ewma_bytes_out.is_finite() {
                history.ewma_bytes_out = 0.0;
            }
            while history.countries.len() > MAX_SEEN_COUNTRIES {
                history.countries.pop_last();
            }
            while history.asns.len() > MAX_SEEN_ASNS {
                history.asns.pop_last();
            }
            let mut hours = [HourStat::default(); 24];
            for (i, mut stat) in s.hours {
                if !stat.mean_bytes_out.is_finite() {
                    stat.mean_bytes_out = 0.0;
                }
                if let Some(slot) = hours.get_mut(usize::from(i)) {
                    *slot = stat;
                }
            }
            self.hosts.insert(
                s.host,
                Host {
                    history,
                    hours,
                    last_seen_ns: s.last_seen_ns,
                    open: None,
                },
            );
        }
        self.rebuild_idle();
    }

    /// Hosts evicted at the `max_hosts` bound.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Hosts with window state now.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::packet::ip_proto;
    use crate::detect::Delta;
    use crate::detect::clock::ClockConfig;
    use crate::enrich::geo::GeoInfo;
    use crate::flow::update::{FlowUpdate, UpdateKind};
    use std::net::Ipv4Addr;

    /// Monday 2024-06-03 00:00 UTC, in seconds.
    const MONDAY: u64 = 1_717_372_800;

    trait CloseSeconds {
        fn close_s(&mut self, start_s: u64, end_s: u64) -> ClosedWindow;
    }

    impl CloseSeconds for HostWindows {
        fn close_s(&mut self, start_s: u64, end_s: u64) -> ClosedWindow {
            self.close(start_s * NS, end_s * NS)
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn windows(config: WindowsConfig) -> HostWindows {
        HostWindows::new(config, BusinessClock::new(&ClockConfig::default()).unwrap())
    }

    fn config(window_seconds: u64) -> WindowsConfig {
        WindowsConfig {
            window_seconds,
            ..WindowsConfig::default()
        }
    }

    /// An answered outbound TCP flow with the given cumulative counters.
    fn update(
        uid: u64,
        host: IpAddr,
        dest: IpAddr,
        port: u16,
        first_s: u64,
        last_s: u64,
    ) -> FlowUpdate<'static> {
        FlowUpdate {
            uid: Uid(uid),
            kind: UpdateKind::Interim,
            proto: ip_proto::TCP,
            inside: host,
            inside_port: 50_000,
            outside: dest,
            outside_port: port,
            inbound: false,
            first_ns: first_s * NS,
            last_ns: last_s * NS,
            bytes_out: 0,
            bytes_in: 0,
            pkts_out: 0,
            pkts_in: 0,
            answered: true,
            conn_state: "SF",
            services: 0,
            names: None,
        }
    }

    fn view<'a>(
        u: &'a FlowUpdate<'a>,
        geo: &'a GeoInfo,
        delta: Delta,
        first: bool,
    ) -> FlowView<'a> {
        FlowView {
            update: u,
            delta,
            // Not read by the windows.
            delta_since_ns: u.first_ns,
            first_update: first,
            geo,
            allowlisted: false,
            history: None,
            off_hours: false,
            host_inside: true,
            host_allowlisted: false,
        }
    }

    fn out(bytes_out: u64) -> Delta {
        Delta {
            bytes_out,
            bytes_in: bytes_out / 10,
            pkts_out: bytes_out / 1000 + 1,
            pkts_in: 1,
        }
    }

    /// A one-update flow of `bytes` from `host` at `t_s`.
    fn send(w: &mut HostWindows, uid: u64, host: &str, dest: &str, t_s: u64, bytes: u64) {
        let u = update(uid, ip(host), ip(dest), 443, t_s, t_s);
        let geo = GeoInfo::default();
        w.flow(&view(&u, &geo, out(bytes), true));
    }

    fn host<'a>(closed: &'a ClosedWindow, addr: &str) -> &'a HostWindow {
        closed.hosts.iter().find(|h| h.host == ip(addr)).unwrap()
    }

    /// Drives windows the way the engine does: a long upload with an update every
    /// `active_s` (the flow table's active timeout) plus a checkpoint at each window end, and
    /// a short flow every minute; windows aligned to multiples of their length.
    fn run_aligned(window_seconds: u64) -> Vec<ClosedWindow> {
        let mut w = windows(config(window_seconds));
        let (h, dest, geo) = (ip("10.0.0.5"), ip("203.0.113.9"), GeoInfo::default());
        let start = MONDAY + 3 * 3600;
        let end = start + 3 * 3600;
        let active_s = 300;
        let mut closed = Vec::new();
        let mut window_end = start - start % window_seconds + window_seconds;
        let mut reported = 0u64;
        let mut first = true;
        // Event times: every minute; the long flow sends 50 kB per minute.
        for t in (start..end).step_by(60) {
            let short = update(1000 + t, h, ip("198.51.100.7"), 80, t, t + 1);
            w.flow(&view(&short, &geo, out(2_000), true));
            let sent = (t + 60 - start) / 60 * 50_000;
            // An update on the active timeout, and the checkpoint at the window's end.
            if (t + 60 - start).is_multiple_of(active_s) || (t + 60).is_multiple_of(window_seconds)
            {
                let mut long = update(1, h, dest, 443, start, t + 60);
                long.bytes_out = sent;
                w.flow(&view(&long, &geo, out(sent - reported), first));
                reported = sent;
                first = false;
            }
            if t + 60 >= window_end {
                closed.push(w.close_s(window_end - window_seconds, window_end));
                window_end += window_seconds;
            }
        }
        closed
    }

    #[test]
    fn window_arithmetic_300_900_3600() {
        for window_seconds in [300u64, 900, 3600] {
            let closed = run_aligned(window_seconds);
            assert_eq!(
                closed.len() as u64,
                3 * 3600 / window_seconds,
                "{window_seconds}"
            );
            let minutes = window_seconds / 60;
            for (i, c) in closed.iter().enumerate() {
                assert_eq!(c.end_ns - c.start_ns, window_seconds * NS);
                assert_eq!(c.start_ns % (window_seconds * NS), 0);
                let hw = host(c, "10.0.0.5");
                // Every byte lands in exactly one window: 50 kB + 2 kB per minute.
                assert_eq!(
                    hw.bytes_out,
                    minutes * 52_000,
                    "{window_seconds} window {i}"
                );
                assert_eq!(hw.bytes_in, minutes * 5_200);
                // One short flow per minute, plus the long one in the first window.
                assert_eq!(hw.flows_opened, minutes + u64::from(i == 0));
                assert_eq!(hw.distinct_destinations, 2);
                assert_eq!(hw.distinct_ports, 2);
                assert_eq!(hw.unanswered_tcp, 0);
                // The long flow is counted once per window once it has lasted 10 minutes,
                // however many updates it sent in the window.
                let long_yet = (i as u64 + 1) * window_seconds >= 600;
                assert_eq!(
                    hw.long_sessions_open,
                    u64::from(long_yet),
                    "{window_seconds} {i}"
                );
                assert_eq!(hw.history_windows, i as u32);
            }
        }
    }

    #[test]
    fn population_p90_interpolates_over_active_hosts() {
        let mut w = windows(config(900));
        let t = MONDAY + 600;
        for i in 1..=10u64 {
            send(&mut w, i, &format!("10.0.0.{i}"), "203.0.113.9", t, i * 100);
        }
        // A host whose only traffic is allowlisted is listed but not in the population.
        let u = update(99, ip("10.0.0.99"), ip("192.0.2.50"), 22, t, t);
        let geo = GeoInfo::default();
        let mut v = view(&u, &geo, out(50_000_000), true);
        v.allowlisted = true;
        w.flow(&v);
        let c = w.close_s(MONDAY, MONDAY + 900);
        // Position 0.9 * 9 = 8.1: 900 + 0.1 * (1000 - 900).
        assert_eq!(c.population_p90_bytes_out, Some(910));
        assert_eq!(c.hosts.len(), 11);
        let backup = host(&c, "10.0.0.99");
        assert_eq!(backup.bytes_out, 0);
        assert_eq!(backup.allowlisted_bytes_out, 50_000_000);
        assert_eq!(backup.pkts_out, 0);
        assert_eq!(backup.flows_opened, 0);
        // Sorted by address.
        let order: Vec<IpAddr> = c.hosts.iter().map(|h| h.host).collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted);

        // Four active hosts are too few for a population figure (default 5).
        for i in 1..=4u64 {
            send(
                &mut w,
                100 + i,
                &format!("10.0.0.{i}"),
                "203.0.113.9",
                t + 900,
                1000,
            );
        }
        assert_eq!(
            w.close_s(MONDAY + 900, MONDAY + 1800)
                .population_p90_bytes_out,
            None
        );

        // 21 hosts: position 0.9 * 20 = 18, the 19th smallest exactly.
        for i in 1..=21u64 {
            send(
                &mut w,
                200 + i,
                &format!("10.0.1.{i}"),
                "203.0.113.9",
                t + 1800,
                i,
            );
        }
        assert_eq!(
            w.close_s(MONDAY + 1800, MONDAY + 2700)
                .population_p90_bytes_out,
            Some(19)
        );
    }

    #[test]
    fn ewma_baseline_waits_for_history_and_sees_silent_windows() {
        let mut w = windows(config(900));
        let mut baselines = Vec::new();
        for (i, bytes) in [1000u64, 2000, 3000, 4000, 5000].into_iter().enumerate() {
            let start = MONDAY + i as u64 * 900;
            send(
                &mut w,
                i as u64,
                "10.0.0.7",
                "203.0.113.9",
                start + 10,
                bytes,
            );
            let c = w.close_s(start, start + 900);
            baselines.push(host(&c, "10.0.0.7").baseline_bytes_out);
        }
        // e1 = 1000, e2 = 1200, e3 = 1560, e4 = 2048: used from the fifth window (4 before it).
        assert_eq!(baselines[..4], [None, None, None, None]);
        let b = baselines[4].unwrap();
        assert!((b - 2048.0).abs() < 1e-9, "{b}");
        let ewma5 = 0.2 * 5000.0 + 0.8 * 2048.0;
        let h = w.history(ip("10.0.0.7")).unwrap();
        assert_eq!(h.windows, 5);
        assert!((h.ewma_bytes_out - ewma5).abs() < 1e-9);
        // A silent window (another host active) still ages the host's average towards zero.
        send(
            &mut w,
            50,
            "10.0.0.8",
            "203.0.113.9",
            MONDAY + 5 * 900 + 10,
            10,
        );
        let c = w.close_s(MONDAY + 5 * 900, MONDAY + 6 * 900);
        assert!(c.hosts.iter().all(|h| h.host != ip("10.0.0.7")));
        let h = w.history(ip("10.0.0.7")).unwrap();
        assert_eq!(h.windows, 6);
        assert!((h.ewma_bytes_out - 0.8 * ewma5).abs() < 1e-9);
        assert_eq!(h.first_seen_ns, (MONDAY + 10) * NS);
    }

    #[test]
    fn hour_of_day_baseline_takes_over_after_enough_days() {
        // Hourly windows: 10 MB in the 02:00 hour every night, 1 MB in every other hour.
        let mut w = windows(config(3600));
        let mut at_two = Vec::new();
        for day in 0..4u64 {
            for hour in 0..24u64 {
                let start = MONDAY + day * 86_400 + hour * 3600;
                let bytes = if hour == 2 { 10_000_000 } else { 1_000_000 };
                send(
                    &mut w,
                    day * 100 + hour,
                    "10.0.0.9",
                    "203.0.113.9",
                    start + 60,
                    bytes,
                );
                let c = w.close_s(start, start + 3600);
                let hw = host(&c, "10.0.0.9").clone();
                if hour == 2 {
                    at_two.push(hw.baseline_bytes_out);
                }
            }
        }
        // Day 0: too little history. Days 1-2: the 02:00 hour has 1-2 days, so the EWMA
        // (dominated by the 1 MB hours) is the baseline. Day 3: three days seen, hour mean.
        assert_eq!(at_two[0], None);
        for b in &at_two[1..3] {
            let b = b.unwrap();
            assert!(b > 900_000.0 && b < 2_000_000.0, "{b}");
        }
        assert_eq!(at_two[3], Some(10_000_000.0));
    }

    #[test]
    fn eviction_removes_the_longest_idle_host() {
        let mut w = windows(WindowsConfig {
            max_hosts: 3,
            ..config(900)
        });
        let t = MONDAY + 100;
        send(&mut w, 1, "10.0.0.1", "203.0.113.9", t, 100);
        send(&mut w, 2, "10.0.0.2", "203.0.113.9", t + 1, 200);
        send(&mut w, 3, "10.0.0.3", "203.0.113.9", t + 2, 300);
        // Many updates from .1 make the idle order stale many times over (heap rebuilds).
        for i in 0..5000 {
            send(
                &mut w,
                10 + i,
                "10.0.0.1",
                "203.0.113.9",
                t + 3 + i / 100,
                1,
            );
        }
        send(&mut w, 9000, "10.0.0.4", "203.0.113.9", t + 60, 400);
        assert_eq!(w.evicted(), 1);
        assert!(w.history(ip("10.0.0.2")).is_none());
        send(&mut w, 9001, "10.0.0.5", "203.0.113.9", t + 61, 500);
        assert_eq!(w.evicted(), 2);
        assert!(w.history(ip("10.0.0.3")).is_none());
        let c = w.close_s(MONDAY, MONDAY + 900);
        let seen: Vec<(IpAddr, u64)> = c.hosts.iter().map(|h| (h.host, h.bytes_out)).collect();
        assert_eq!(
            seen,
            vec![
                (ip("10.0.0.1"), 5100),
                (ip("10.0.0.4"), 400),
                (ip("10.0.0.5"), 500)
            ]
        );
        assert!(w.idle.len() <= 3 + 2 * 3 + IDLE_HEAP_SLACK);
        // A host evicted from history starts over when it returns.
        send(&mut w, 9002, "10.0.0.2", "203.0.113.9", MONDAY + 1000, 10);
        assert_eq!(w.evicted(), 3);
        assert_eq!(w.history(ip("10.0.0.2")).unwrap().windows, 0);
    }

    #[test]
    fn distinct_switches_from_exact_to_hyperloglog() {
        let mut w = windows(config(900));
        let h = ip("10.0.0.66");
        let geo = GeoInfo::default();
        let sweep = |w: &mut HostWindows, n: u32, t: u64| {
            for i in 0..n {
                let dest = IpAddr::V4(Ipv4Addr::from(0x0808_0001u32 + (i << 8)));
                let mut u = update(u64::from(i) + t, h, dest, 80, t, t);
                u.answered = false;
                u.conn_state = "S0";
                w.flow(&view(&u, &geo, Delta::default(), true));
            }
        };
        sweep(&mut w, 256, MONDAY);
        let c = w.close_s(MONDAY, MONDAY + 900);
        let hw = host(&c, "10.0.0.66");
        assert_eq!(hw.distinct_destinations, 256);
        assert_eq!(hw.distinct_ports, 1);
        assert_eq!(hw.unanswered_tcp, 256);
        // Past the exact limit, the estimate is close (linear counting at this size).
        sweep(&mut w, 2000, MONDAY + 900);
        let c = w.close_s(MONDAY + 900, MONDAY + 1800);
        let est = host(&c, "10.0.0.66").distinct_destinations;
        assert!(est.abs_diff(2000) <= 40, "{est}");
        // The next window starts exact again.
        sweep(&mut w, 3, MONDAY + 1800);
        let c = w.close_s(MONDAY + 1800, MONDAY + 2700);
        assert_eq!(host(&c, "10.0.0.66").distinct_destinations, 3);
    }

    #[test]
    fn hyperloglog_error_on_100k_values() {
        let mut d = Distinct::default();
        for i in 0..100_000u32 {
            let addr = IpAddr::V4(Ipv4Addr::from(0x2d00_0000u32.wrapping_add(i * 7)));
            d.insert(addr_hash(addr), 256);
            // Repeats do not count.
            d.insert(addr_hash(addr), 256);
        }
        let est = d.count();
        let err = est.abs_diff(100_000) as f64 / 100_000.0;
        assert!(err < 0.04, "estimate {est}, error {err}");
        let mut ports = Distinct::default();
        for p in 0..=u16::MAX {
            ports.insert(port_hash(p), 256);
        }
        let err = ports.count().abs_diff(65_536) as f64 / 65_536.0;
        assert!(err < 0.04, "{err}");
        let mut v6 = Distinct::default();
        for i in 0..50_000u128 {
            v6.insert(
                addr_hash(IpAddr::V6((0x2001_0db8u128 << 96 | i << 64).into())),
                256,
            );
        }
        let err = v6.count().abs_diff(50_000) as f64 / 50_000.0;
        assert!(err < 0.04, "{err}");
    }

    #[test]
    fn inbound_unanswered_and_geo_accounting() {
        let mut w = windows(config(900));
        let h = ip("10.0.0.20");
        let de = GeoInfo {
            country: CountryCode::parse("DE"),
            asn: Some(3320),
            as_org: None,
        };
        let ru = GeoInfo {
            country: CountryCode::parse("RU"),
            asn: Some(12389),
            as_org: None,
        };
        let t = MONDAY + 100;
        // Outbound: answered to DE, rejected attempt to RU.
        let a = update(1, h, ip("198.51.100.1"), 443, t, t + 5);
        w.flow(&view(&a, &de, out(5000), true));
        let mut b = update(2, h, ip("203.0.113.1"), 8080, t, t);
        b.conn_state = "REJ";
        w.flow(&view(&b, &ru, Delta::default(), true));
        // Inbound scan from a third country the host never answered: no destination, no geo.
        let mut c = update(3, h, ip("192.0.2.1"), 51_000, t, t);
        c.inbound = true;
        c.answered = false;
        c.conn_state = "S0";
        let cn = GeoInfo {
            country: CountryCode::parse("CN"),
            asn: Some(4134),
            as_org: None,
        };
        w.flow(&view(&c, &cn, out(0), true));
        // Off-hours egress (the engine decides off_hours from the clock).
        let d = update(4, h, ip("198.51.100.1"), 443, t + 10, t + 20);
        let mut v = view(&d, &de, out(7000), true);
        v.off_hours = true;
        w.flow(&v);
        let closed = w.close_s(MONDAY, MONDAY + 900);
        let hw = host(&closed, "10.0.0.20");
        assert_eq!(hw.flows_opened, 3);
        assert_eq!(hw.unanswered_tcp, 1);
        assert_eq!(hw.distinct_destinations, 2);
        assert_eq!(hw.distinct_ports, 2);
        assert_eq!(hw.bytes_out, 12_000);
        assert_eq!(hw.off_hours_bytes_out, 7000);
        let cc: Vec<&str> = hw.countries.iter().map(|c| c.as_str()).collect();
        assert_eq!(cc, ["DE", "RU"]);
        assert_eq!(hw.asns, [3320, 12389]);
        let hist = w.history(h).unwrap();
        assert!(hist.countries.contains(&CountryCode::parse("RU").unwrap()));
        assert!(!hist.countries.contains(&CountryCode::parse("CN").unwrap()));
        assert_eq!(hist.asns.iter().copied().collect::<Vec<_>>(), [3320, 12389]);
    }

    /// Hourly windows over four days for three hosts with varied egress.
    fn replay(w: &mut HostWindows, hours: std::ops::Range<u64>) -> Vec<ClosedWindow> {
        let mut out = Vec::new();
        for k in hours {
            let start = MONDAY + k * 3600;
            for (i, addr) in ["10.0.0.1", "10.0.0.2", "fd00::3"].iter().enumerate() {
                // A repeatable, uneven pattern: silence some hours.
                let bytes = (k * 7919 + i as u64 * 104_729) % 1_000_003;
                if !bytes.is_multiple_of(5) {
                    send(w, k * 10 + i as u64, addr, "203.0.113.9", start + 30, bytes);
                }
            }
            out.push(w.close_s(start, start + 3600));
        }
        out
    }

    #[test]
    fn saved_state_continues_the_baselines() {
        let cfg = WindowsConfig {
            population_min_hosts: 2,
            ..config(3600)
        };
        let mut straight = windows(cfg.clone());
        let all = replay(&mut straight, 0..100);

        let mut first = windows(cfg.clone());
        replay(&mut first, 0..80);
        let json = serde_json::to_string(&first.state()).unwrap();
        let state: WindowsState = serde_json::from_str(&json).unwrap();
        assert_eq!(state, first.state());
        let mut second = windows(cfg);
        second.restore(state);
        let resumed = replay(&mut second, 80..100);
        assert_eq!(resumed, all[80..]);
        // The baselines in play are hour-of-day ones (3 days) and not trivial.
        let last = all.last().unwrap();
        assert!(
            last.hosts
                .iter()
                .all(|h| h.baseline_bytes_out.is_some_and(|b| b > 0.0))
        );
        assert_eq!(second.state(), straight.state());
    }

    #[test]
    fn restore_respects_max_hosts() {
        let mut w = windows(config(900));
        for i in 1..=5u64 {
            send(
                &mut w,
                i,
                &format!("10.0.0.{i}"),
                "203.0.113.9",
                MONDAY + i,
                100,
            );
        }
        w.close_s(MONDAY, MONDAY + 900);
        let mut small = windows(WindowsConfig {
            max_hosts: 2,
            ..config(900)
        });
        small.restore(w.state());
        assert_eq!(small.evicted(), 3);
        assert!(small.history(ip("10.0.0.5")).is_some());
        assert!(small.history(ip("10.0.0.4")).is_some());
        assert!(small.history(ip("10.0.0.3")).is_none());
    }
}
