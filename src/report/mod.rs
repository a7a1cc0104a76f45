//! The analyst's HTML report (`replay --report FILE`): a bounded recorder fed by the behavioural
//! engine (per-host figures of every closed window, per-host destinations) and the pipeline
//! (alerts), and the renderer that turns it into one self-contained HTML file.
//!
//! Nothing here runs without `--report`: the engine holds no recorder then.
pub mod html;
pub mod svg;

use crate::alert::Alert;
use crate::detect::FlowView;
use crate::detect::clock::BusinessClock;
use crate::detect::windows::{ClosedWindow, HostWindow};
use crate::enrich::geo::CountryCode;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;

/// Within a window a host may gather this many times `max_destinations_per_host` before new
/// destinations fold into "other"; at the window's close the table is cut back to the
/// heaviest, so a destination that becomes heavy later still gets its place.
const DESTINATION_SLACK: usize = 4;
/// Off-hours are sampled at least this finely (business hours are set in minutes) ...
const OFF_HOURS_MIN_STEP_NS: u64 = 60 * 1_000_000_000;
/// ... with at most this many samples over the whole run.
const OFF_HOURS_MAX_SAMPLES: u64 = 20_000;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportConfig {
    /// Inside hosts whose windows, totals and destinations are recorded. When full, a new
    /// host takes the place of the recorded host with the least egress if it sent more in its
    /// window; an alerted host always gets a place (over a host that did not alert).
    pub max_hosts: usize,
    /// Closed windows kept per host and for the run (the latest; older ones are dropped).
    pub max_windows_per_host: usize,
    /// Destinations kept per host (the heaviest by egress); the rest are summed as "other".
    pub max_destinations_per_host: usize,
    /// Hosts listed under "top talkers".
    pub top_talkers: usize,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            max_hosts: 1000,
            // A week of 900 s windows.
            max_windows_per_host: 672,
            max_destinations_per_host: 15,
            top_talkers: 20,
        }
    }
}

/// What the bounds cut; the report says it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cuts {
    /// Host windows not recorded because the host table was full.
    pub host_windows_unrecorded: u64,
    /// Flow updates of hosts not recorded (their destinations are missing).
    pub flow_updates_unrecorded: u64,
    /// Recorded hosts dropped to make room for heavier or alerted ones.
    pub hosts_evicted: u64,
    /// Alerted hosts with no place (every recorded host had alerted).
    pub alerted_hosts_unrecorded: u64,
    /// Oldest windows dropped from hosts' series and from the run's.
    pub host_windows_dropped: u64,
    pub run_windows_dropped: u64,
    /// Destinations folded into "other" at window closes (beyond `max_destinations_per_host`).
    pub destinations_folded: u64,
    /// Flows to new destinations that went straight to "other" because the host's table was
    /// full within a window.
    pub flows_folded_when_full: u64,
}

/// One closed window of the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunWindow {
    pub start_ns: u64,
    pub end_ns: u64,
    pub population_p90_bytes_out: Option<u64>,
    pub active_hosts: u32,
}

/// One host in one closed window (32 bytes: the bulk of the recorder's memory).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub start_ns: u64,
    pub bytes_out: u64,
    pub bytes_in: u64,
    /// The host's baseline before the window; NaN when it had none yet.
    pub baseline_bytes_out: f32,
}

impl Point {
    pub fn baseline(&self) -> Option<f64> {
        (!self.baseline_bytes_out.is_nan()).then_some(f64::from(self.baseline_bytes_out))
    }
}

/// Traffic to one outside address.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Destination {
    pub ip: Option<IpAddr>,
    /// The first name a flow to it carried (SNI, HTTP Host, ..., DNS cache).
    pub name: Option<Arc<str>>,
    /// The first port.
    pub port: u16,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub flows: u64,
    pub country: Option<CountryCode>,
    pub asn: Option<u32>,
    pub as_org: Option<Arc<str>>,
    pub allowlisted: bool,
}

/// One recorded host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostRecord {
    pub host: Option<IpAddr>,
    /// Totals over the recorded windows (egress as detection counts it: not allowlisted).
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub allowlisted_bytes_out: u64,
    pub off_hours_bytes_out: u64,
    pub windows_active: u64,
    /// Start of the window recording of this host began in.
    pub since_ns: u64,
    /// Placed after the table was full (in another host's place): earlier figures are missing.
    pub late: bool,
    pub alerted: bool,
    pub points: VecDeque<Point>,
    pub destinations: Vec<Destination>,
    /// Destinations folded together (ip None): bytes and flows beyond the kept ones.
    pub other: Destination,
    /// Destinations by address while recording (moved to `destinations` at the end).
    by_ip: FxHashMap<IpAddr, Destination>,
}

impl HostRecord {
    fn new(host: IpAddr, since_ns: u64) -> HostRecord {
        HostRecord {
            host: Some(host),
            since_ns,
            ..HostRecord::default()
        }
    }

    /// Keeps the `keep` heaviest destinations by egress (then ingress, then address), folding
    /// the rest into `other`; returns how many were folded.
    fn trim(&mut self, keep: usize) -> u64 {
        if self.by_ip.len() <= keep {
            return 0;
        }
        let mut all: Vec<Destination> = self.by_ip.drain().map(|(_, d)| d).collect();
        all.sort_unstable_by_key(|d| Reverse((d.bytes_out, d.bytes_in, d.ip)));
        let folded = all.split_off(keep);
        for d in &folded {
            fold(&mut self.other, d);
        }
        self.by_ip = all.into_iter().filter_map(|d| Some((d.ip?, d))).collect();
        folded.len() as u64
    }
}

fn fold(other: &mut Destination, d: &Destination) {
    other.bytes_out = other.bytes_out.saturating_add(d.bytes_out);
    other.bytes_in = other.bytes_in.saturating_add(d.bytes_in);
    other.flows = other.flows.saturating_add(d.flows);
}

/// What the report shows, once the run has ended.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportData {
    pub window_seconds: u64,
    pub windows: Vec<RunWindow>,
    /// Off-hours spans (event time) over the recorded windows, from `[business_hours]`.
    pub off_hours: Vec<(u64, u64)>,
    /// Every recorded host, most egress first; destinations sorted the same way.
    pub hosts: Vec<HostRecord>,
    pub cuts: Cuts,
    pub limits: ReportConfig,
}

impl ReportData {
    pub fn host(&self, ip: IpAddr) -> Option<&HostRecord> {
        self.hosts.iter().find(|h| h.host == Some(ip))
    }
}

/// Records per-host figures for the report within [`ReportConfig`]'s bounds.
pub struct Recorder {
    config: ReportConfig,
    clock: BusinessClock,
    window_ns: u64,
    windows: VecDeque<RunWindow>,
    hosts: FxHashMap<IpAddr, HostRecord>,
    /// Event time of the latest update or window (where a newly placed host starts).
    now_ns: u64,
    cuts: Cuts,
}

impl Recorder {
    pub fn new(mut config: ReportConfig, clock: BusinessClock, window_ns: u64) -> Recorder {
        config.max_hosts = config.max_hosts.max(1);
        config.max_windows_per_host = config.max_windows_per_host.max(1);
        Recorder {
            config,
            clock,
            window_ns,
            windows: VecDeque::new(),
            hosts: FxHashMap::default(),
            now_ns: 0,
            cuts: Cuts::default(),
        }
    }

    /// A flow update the engine has enriched (every update of an inside host, allowlisted or not).
    pub fn flow(&mut self, view: &FlowView<'_>) {
        if !view.host_inside {
            return;
        }
        let u = view.update;
        self.now_ns = self.now_ns.max(u.last_ns);
        let full = self.hosts.len() >= self.config.max_hosts;
        let window_ns = self.window_ns.max(1);
        let record = match self.hosts.get_mut(&u.inside) {
            Some(r) => r,
            None if full => {
                self.cuts.flow_updates_unrecorded += 1;
                return;
            }
            None => self
                .hosts
                .entry(u.inside)
                .or_insert_with(|| HostRecord::new(u.inside, u.first_ns - u.first_ns % window_ns)),
        };
        let cap = self
            .config
            .max_destinations_per_host
            .saturating_mul(DESTINATION_SLACK);
        let delta = view.delta;
        let room = record.by_ip.len() < cap;
        let dest = match record.by_ip.get_mut(&u.outside) {
            Some(d) => d,
            None if !room => {
                let flows = u64::from(view.first_update);
                fold(
                    &mut record.other,
                    &Destination {
                        bytes_out: delta.bytes_out,
                        bytes_in: delta.bytes_in,
                        flows,
                        ..Destination::default()
                    },
                );
                self.cuts.flows_folded_when_full += flows;
                return;
            }
            None => record
                .by_ip
                .entry(u.outside)
                .or_insert_with(|| Destination {
                    ip: Some(u.outside),
                    port: u.outside_port,
                    country: view.geo.country,
                    asn: view.geo.asn,
                    as_org: view.geo.as_org.clone(),
                    allowlisted: view.allowlisted,
                    ..Destination::default()
                }),
        };
        dest.bytes_out = dest.bytes_out.saturating_add(delta.bytes_out);
        dest.bytes_in = dest.bytes_in.saturating_add(delta.bytes_in);
        dest.flows += u64::from(view.first_update);
        if dest.name.is_none() {
            dest.name = u.name().map(Arc::from);
        }
    }

    /// A closed window: every active host's figures, the population p90.
    pub fn window(&mut self, closed: &ClosedWindow) {
        self.now_ns = self.now_ns.max(closed.end_ns);
        if self.windows.len() >= self.config.max_windows_per_host {
            self.windows.pop_front();
            self.cuts.run_windows_dropped += 1;
        }
        self.windows.push_back(RunWindow {
            start_ns: closed.start_ns,
            end_ns: closed.end_ns,
            population_p90_bytes_out: closed.population_p90_bytes_out,
            active_hosts: u32::try_from(closed.hosts.len()).unwrap_or(u32::MAX),
        });
        // Recorded hosts first, then the others compete for places, heaviest first (against
        // totals that already hold this window).
        let mut newcomers: Vec<&HostWindow> = Vec::new();
        for h in &closed.hosts {
            if !self.add(h, closed.start_ns) {
                newcomers.push(h);
            }
        }
        newcomers.sort_by_key(|h| Reverse(h.bytes_out));
        let mut placing = true;
        for h in newcomers {
            // Once one fails, the lighter ones after it would too (the lightest place only
            // gets heavier).
            placing = placing && self.place(h.host, closed.start_ns, h.bytes_out, false);
            if placing {
                self.add(h, closed.start_ns);
            } else {
                self.cuts.host_windows_unrecorded += 1;
            }
        }
        let keep_destinations = self.config.max_destinations_per_host;
        // Hosts silent in this window may still have gathered destinations (flows whose
        // bytes were all allowlisted, or updates before their first window).
        for r in self.hosts.values_mut() {
            self.cuts.destinations_folded += r.trim(keep_destinations);
        }
    }

    /// Adds a host's window to its record; false when the host is not recorded.
    fn add(&mut self, h: &HostWindow, start_ns: u64) -> bool {
        let Some(r) = self.hosts.get_mut(&h.host) else {
            return false;
        };
        if r.points.len() >= self.config.max_windows_per_host {
            r.points.pop_front();
            self.cuts.host_windows_dropped += 1;
        }
        r.points.push_back(Point {
            start_ns,
            bytes_out: h.bytes_out,
            bytes_in: h.bytes_in,
            baseline_bytes_out: h.baseline_bytes_out.map_or(f32::NAN, |b| b as f32),
        });
        r.bytes_out = r.bytes_out.saturating_add(h.bytes_out);
        r.bytes_in = r.bytes_in.saturating_add(h.bytes_in);
        r.allowlisted_bytes_out = r
            .allowlisted_bytes_out
            .saturating_add(h.allowlisted_bytes_out);
        r.off_hours_bytes_out = r.off_hours_bytes_out.saturating_add(h.off_hours_bytes_out);
        r.windows_active += 1;
        true
    }

    /// Alerts as they are emitted: their hosts keep their places.
    pub fn alerts(&mut self, alerts: &[Alert]) {
        for alert in alerts {
            if let Some(r) = self.hosts.get_mut(&alert.host) {
                r.alerted = true;
            } else if !self.place(
                alert.host,
                self.now_ns - self.now_ns % self.window_ns.max(1),
                u64::MAX,
                true,
            ) {
                self.cuts.alerted_hosts_unrecorded += 1;
            }
        }
    }

    /// Finds a place for `host`: a free one, else that of the recorded host with the least
    /// egress that has not alerted, if `bytes_out` is more. Linear in the hosts recorded, but
    /// only once the table is full and only for hosts that beat its lightest entry.
    fn place(&mut self, host: IpAddr, since_ns: u64, bytes_out: u64, alerted: bool) -> bool {
        let late = self.hosts.len() >= self.config.max_hosts;
        if late {
            let lightest = self
                .hosts
                .values()
                .filter(|r| !r.alerted)
                .min_by_key(|r| (r.bytes_out, r.host))
                .and_then(|r| Some((r.bytes_out, r.host?)));
            match lightest {
                Some((least, ip)) if least < bytes_out => {
                    self.hosts.remove(&ip);
                    self.cuts.hosts_evicted += 1;
                }
                _ => return false,
            }
        }
        let mut record = HostRecord::new(host, since_ns);
        record.alerted = alerted;
        record.late = late;
        self.hosts.insert(host, record);
        true
    }

    /// The run has ended (after the last window and its alerts).
    pub fn finish(self) -> ReportData {
        let keep = self.config.max_destinations_per_host;
        let mut folded = 0;
        let mut hosts: Vec<HostRecord> = self
            .hosts
            .into_values()
            .map(|mut r| {
                folded += r.trim(keep);
                let mut destinations: Vec<Destination> = r.by_ip.drain().map(|(_, d)| d).collect();
                destinations.sort_unstable_by_key(|d| Reverse((d.bytes_out, d.bytes_in, d.ip)));
                r.destinations = destinations;
                r
            })
            .collect();
        hosts.sort_unstable_by_key(|r| Reverse((r.bytes_out, r.bytes_in, r.host)));
        let mut cuts = self.cuts;
        cuts.destinations_folded += folded;
        let span = match (self.windows.front(), self.windows.back()) {
            (Some(first), Some(last)) => Some((first.start_ns, last.end_ns)),
            _ => None,
        };
        ReportData {
            window_seconds: self.window_ns / 1_000_000_000,
            windows: self.windows.into(),
            off_hours: span.map_or_else(Vec::new, |(a, b)| off_hours_spans(&self.clock, a, b)),
            hosts,
            cuts,
            limits: self.config,
        }
    }
}

/// Off-hours spans within [start, end), sampled every minute (coarser over long runs).
pub fn off_hours_spans(clock: &BusinessClock, start_ns: u64, end_ns: u64) -> Vec<(u64, u64)> {
    let step = (end_ns.saturating_sub(start_ns) / OFF_HOURS_MAX_SAMPLES).max(OFF_HOURS_MIN_STEP_NS);
    let mut spans: Vec<(u64, u64)> = Vec::new();
    let mut t = start_ns;
    while t < end_ns {
        let next = t.saturating_add(step).min(end_ns);
        if clock.is_off_hours(t) {
            match spans.last_mut() {
                Some(last) if last.1 == t => last.1 = next,
                _ => spans.push((t, next)),
            }
        }
        t = next;
    }
    spans
}

#[cfg(test)]
mod tests;
