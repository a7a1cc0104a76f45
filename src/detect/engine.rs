//! The behavioural engine: enriches each flow update once (deltas, geo, allowlist, history),
//! feeds the host windows and the detectors, and at each window's end turns findings into
//! scored alerts.
use super::allowlist::Allowlist;
use super::clock::{BusinessClock, ClockError};
use super::fanout::FanOutDetector;
use super::flood::FloodDetector;
use super::geo_unusual::GeoUnusualDetector;
use super::long_lived::LongLivedDetector;
use super::relay::RelayDetector;
use super::score::{DestinationFacts, Scorer};
use super::sustained::SustainedDetector;
use super::torrent::TorrentDetector;
use super::windows::{HostWindows, WindowsState};
use super::{Delta, Detector, Finding, FlowView};
use crate::alert::Alert;
use crate::config::Config;
use crate::enrich::domains::DomainListError;
use crate::enrich::geo::{Geo, GeoError, GeoInfo};
use crate::fleet::link::FleetLink;
use crate::flow::key::Uid;
use crate::flow::update::{FlowUpdate, UpdateKind};
use crate::report::{Recorder, ReportConfig, ReportData};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Destinations remembered for first-seen; beyond it the set is not grown (counted).
const MAX_KNOWN_DESTINATIONS: usize = 500_000;
/// Destinations tracked for prevalence within one window.
const MAX_WINDOW_DESTINATIONS: usize = 200_000;
/// Distinct hosts counted per destination for prevalence (enough to pass any threshold).
const MAX_HOSTS_PER_DESTINATION: usize = 64;
const STATE_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Geo(#[from] GeoError),
    #[error(transparent)]
    Clock(#[from] ClockError),
    #[error("allowlist.domains: {0}")]
    Allowlist(#[from] DomainListError),
    #[error("state file {path}: {reason}")]
    State { path: PathBuf, reason: String },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineCounters {
    pub updates: u64,
    pub allowlisted_updates: u64,
    pub windows_closed: u64,
    pub known_destinations_full: u64,
}

/// Saved with `--state FILE`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    known_destinations: Vec<IpAddr>,
    windows: WindowsState,
}

/// What the engine remembers of a flow between its updates (from its first non-final
/// update on): kept by the flow's source with the flow, or by the engine. Boxed: a pointer
/// where flows keep it, the memo itself only for flows that get a second update.
pub struct FlowMemo(Box<Memo>);

struct Memo {
    reported: Delta,
    /// The previous update's last_ns: where the next delta starts.
    last_ns: u64,
    geo: GeoInfo,
    allowlisted: bool,
}

/// Distinct inside hosts that reached one destination, by their index in the window's active
/// hosts: most destinations have one, so the others are kept apart (no allocation for one).
struct DestinationHosts {
    first: u32,
    more: Box<[u32]>,
}

impl DestinationHosts {
    fn len(&self) -> usize {
        1 + self.more.len()
    }

    fn add(&mut self, host: u32) {
        if self.len() < MAX_HOSTS_PER_DESTINATION
            && self.first != host
            && !self.more.contains(&host)
        {
            let mut more = std::mem::take(&mut self.more).into_vec();
            more.push(host);
            self.more = more.into_boxed_slice();
        }
    }
}

#[derive(Default)]
struct WindowFacts {
    destinations: FxHashMap<IpAddr, DestinationHosts>,
    /// Inside hosts active in the window, numbered in order of appearance.
    active_hosts: FxHashMap<IpAddr, u32>,
    known_before: FxHashSet<IpAddr>,
}

impl DestinationFacts for WindowFacts {
    fn prevalence(&self, dest: IpAddr) -> (u64, u64) {
        let hosts = self.destinations.get(&dest).map_or(0, |h| h.len() as u64);
        (hosts, self.active_hosts.len() as u64)
    }

    fn first_seen(&self, dest: IpAddr) -> bool {
        !self.known_before.contains(&dest)
    }
}

pub struct Engine {
    home: Config,
    geo: Geo,
    clock: BusinessClock,
    allowlist: Allowlist,
    windows: HostWindows,
    detectors: Vec<Box<dyn Detector>>,
    scorer: Scorer,
    /// Memos of flows whose source does not keep them.
    flows: FxHashMap<Uid, Option<FlowMemo>>,
    window: Option<(u64, u64)>,
    /// End of the last closed window.
    closed_until: u64,
    findings: Vec<Finding>,
    facts: WindowFacts,
    known_destinations: FxHashSet<IpAddr>,
    pub counters: EngineCounters,
    /// Per-host figures for the HTML report; None (nothing recorded) without `--report`.
    recorder: Option<Box<Recorder>>,
    /// Fleet mode: publishes windows and alerts, and brings the fleet's p90.
    fleet: Option<FleetLink>,
}

impl Engine {
    /// A reloaded config (SIGHUP): geo databases, business hours, allowlists, scoring and
    /// detector thresholds change; windows, baselines and detector state stay. The caller
    /// keeps the `[windows]` section as it was (window length cannot change mid-run).
    pub fn reconfigure(&mut self, config: &Config) -> Result<(), EngineError> {
        let clock = BusinessClock::new(&config.business_hours)?;
        let geo = Geo::open(&config.geo)?;
        let allowlist = Allowlist::new(&config.allowlist)?;
        self.windows.set_clock(clock.clone());
        self.clock = clock;
        self.geo = geo;
        self.allowlist = allowlist;
        self.scorer
            .reconfigure(config.scoring.clone(), config.segments.clone());
        for detector in &mut self.detectors {
            detector.reconfigure(&config.detectors);
        }
        // Flows already judged keep their verdicts until they end.
        self.home = config.clone();
        Ok(())
    }

    pub fn new(config: &Config) -> Result<Engine, EngineError> {
        let clock = BusinessClock::new(&config.business_hours)?;
        let d = &config.detectors;
        let detectors: Vec<Box<dyn Detector>> = vec![
            Box::new(LongLivedDetector::new(d.long_lived.clone())),
            Box::new(SustainedDetector::new(d.sustained.clone())),
            Box::new(FanOutDetector::new(d.fanout.clone())),
            Box::new(TorrentDetector::new(d.torrent.clone())),
            Box::new(FloodDetector::new(d.flood.clone())),
            Box::new(RelayDetector::new(d.relay.clone())),
            Box::new(GeoUnusualDetector::new(d.geo_unusual.clone())),
        ];
        Ok(Engine {
            home: config.clone(),
            geo: Geo::open(&config.geo)?,
            allowlist: Allowlist::new(&config.allowlist)?,
            windows: HostWindows::new(config.windows.clone(), clock.clone()),
            clock,
            detectors,
            scorer: Scorer::new(config.scoring.clone(), config.segments.clone()),
            flows: FxHashMap::default(),
            window: None,
            closed_until: 0,
            findings: Vec::new(),
            facts: WindowFacts::default(),
            known_destinations: FxHashSet::default(),
            counters: EngineCounters::default(),
            recorder: None,
            fleet: None,
        })
    }

    /// Records what the HTML report shows from now on (`[report]` bounds).
    pub fn record_report(&mut self, config: &ReportConfig) {
        let window_ns = self.window_ns();
        self.recorder = Some(Box::new(Recorder::new(
            config.clone(),
            self.clock.clone(),
            window_ns,
        )));
    }

    /// Fleet mode from now on: each closed window is published and scored against the fleet's
    /// p90 when the link has a fresh one.
    pub fn link_fleet(&mut self, link: FleetLink) {
        self.fleet = Some(link);
    }

    pub fn fleet_mut(&mut self) -> Option<&mut FleetLink> {
        self.fleet.as_mut()
    }

    pub fn fleet(&self) -> Option<&FleetLink> {
        self.fleet.as_ref()
    }

    pub fn recorder_mut(&mut self) -> Option<&mut Recorder> {
        self.recorder.as_deref_mut()
    }

    /// The report's data (call after the last window and its alerts).
    pub fn take_report(&mut self) -> Option<ReportData> {
        self.recorder.take().map(|r| r.finish())
    }

    pub fn geo(&self) -> &Geo {
        &self.geo
    }

    fn window_ns(&self) -> u64 {
        self.windows.config().window_ns()
    }

    /// A flow update from a source that does not keep the flow's [`FlowMemo`]: the engine
    /// keeps it, by uid, from the flow's first update to its final one.
    pub fn flow_update(&mut self, update: &FlowUpdate<'_>) {
        // Taken out while the update runs, which needs the rest of the engine (no copy).
        let mut flows = std::mem::take(&mut self.flows);
        if update.kind == UpdateKind::Final {
            self.flow_update_with(update, &mut flows.remove(&update.uid).flatten());
        } else {
            self.flow_update_with(update, flows.entry(update.uid).or_default());
        }
        self.flows = flows;
    }

    /// A flow update whose source keeps the flow's memo with the flow (`None` until the
    /// first update fills it; cleared by the final one): no lookup by uid, and nothing held
    /// beside the source's own bound.
    pub fn flow_update_with(&mut self, update: &FlowUpdate<'_>, memo: &mut Option<FlowMemo>) {
        self.counters.updates += 1;
        if self.window.is_none() {
            // Updates for packets before the last close (flows expiring late) belong to the
            // next window: a closed window never reopens.
            let w = self.window_ns();
            let at = update.last_ns.max(self.closed_until);
            let start = at - at % w;
            self.window = Some((start, start + w));
        }
        let is_final = update.kind == UpdateKind::Final;
        let totals = Delta {
            bytes_out: update.bytes_out,
            bytes_in: update.bytes_in,
            pkts_out: update.pkts_out,
            pkts_in: update.pkts_in,
        };
        // The first update enriches the flow; later ones reuse it (kept only while it lasts).
        let first_update = memo.is_none();
        let ended = if is_final { memo.take() } else { None };
        let (reported, delta_since_ns, geo, allowlisted) = match (ended, memo.as_mut()) {
            (Some(FlowMemo(m)), _) => (m.reported, m.last_ns, m.geo, m.allowlisted),
            (None, Some(FlowMemo(m))) => (
                std::mem::replace(&mut m.reported, totals),
                std::mem::replace(&mut m.last_ns, update.last_ns),
                m.geo.clone(),
                m.allowlisted,
            ),
            (None, None) => {
                let geo = self.geo.lookup(update.outside);
                let allowlisted = self.allowlist.destination(update, &geo).is_some();
                if !is_final {
                    *memo = Some(FlowMemo(Box::new(Memo {
                        reported: totals,
                        last_ns: update.last_ns,
                        geo: geo.clone(),
                        allowlisted,
                    })));
                }
                (Delta::default(), update.first_ns, geo, allowlisted)
            }
        };
        if allowlisted {
            self.counters.allowlisted_updates += 1;
        }
        let delta = Delta {
            bytes_out: totals.bytes_out.saturating_sub(reported.bytes_out),
            bytes_in: totals.bytes_in.saturating_sub(reported.bytes_in),
            pkts_out: totals.pkts_out.saturating_sub(reported.pkts_out),
            pkts_in: totals.pkts_in.saturating_sub(reported.pkts_in),
        };
        let host_inside = self.home.is_inside(update.inside);
        if host_inside && !allowlisted && first_update {
            self.note_destination(update.inside, update.outside);
        }
        let view = FlowView {
            update,
            delta,
            delta_since_ns,
            first_update,
            geo: &geo,
            allowlisted,
            history: self.windows.history(update.inside),
            off_hours: self.clock.is_off_hours(update.last_ns),
            host_inside,
            host_allowlisted: self.allowlist.inside_host(update.inside),
        };
        if let Some(recorder) = self.recorder.as_deref_mut() {
            recorder.flow(&view);
        }
        if !allowlisted {
            for detector in &mut self.detectors {
                detector.flow(&view, &mut self.findings);
            }
        }
        if host_inside {
            // The windows keep the history themselves; the view's borrow of it ends here.
            let view = FlowView {
                update,
                delta,
                delta_since_ns,
                first_update,
                geo: &geo,
                allowlisted,
                history: None,
                off_hours: view.off_hours,
                host_inside,
                host_allowlisted: view.host_allowlisted,
            };
            self.windows.flow(&view);
        }
    }

    fn note_destination(&mut self, host: IpAddr, dest: IpAddr) {
        let next = self.facts.active_hosts.len() as u32;
        let host = *self.facts.active_hosts.entry(host).or_insert(next);
        if self.facts.destinations.len() < MAX_WINDOW_DESTINATIONS
            || self.facts.destinations.contains_key(&dest)
        {
            self.facts
                .destinations
                .entry(dest)
                .and_modify(|hosts| hosts.add(host))
                .or_insert(DestinationHosts {
                    first: host,
                    more: Box::default(),
                });
        }
    }

    /// The open window's end, if event time `now_ns` has passed it.
    pub fn window_due(&self, now_ns: u64) -> Option<u64> {
        self.window.map(|(_, end)| end).filter(|&end| now_ns >= end)
    }

    /// Closes the open window (call after the flow table's checkpoint) and returns its alerts.
    pub fn close_window(&mut self) -> Vec<Alert> {
        let Some((start, end)) = self.window.take() else {
            return Vec::new();
        };
        self.counters.windows_closed += 1;
        self.closed_until = end;
        let mut closed = self.windows.close(start, end);
        if let Some(link) = self.fleet.as_mut() {
            link.window(&mut closed);
        }
        if let Some(recorder) = self.recorder.as_deref_mut() {
            recorder.window(&closed);
        }
        for detector in &mut self.detectors {
            detector.window(&closed, &mut self.findings);
        }
        let findings: Vec<Finding> = std::mem::take(&mut self.findings)
            .into_iter()
            .filter(|f| !self.allowlist.inside_host(f.host))
            .collect();
        let mut facts = std::mem::take(&mut self.facts);
        facts.known_before = std::mem::take(&mut self.known_destinations);
        let alerts = self.scorer.close_window(start, end, findings, &facts);
        // This window's destinations become known for the next one.
        let mut known = std::mem::take(&mut facts.known_before);
        for dest in facts.destinations.into_keys() {
            if known.len() >= MAX_KNOWN_DESTINATIONS {
                self.counters.known_destinations_full += 1;
                break;
            }
            known.insert(dest);
        }
        self.known_destinations = known;
        alerts
    }

    /// End of input: closes the open window.
    pub fn finish(&mut self) -> Vec<Alert> {
        self.close_window()
    }

    pub fn scorer(&self) -> &Scorer {
        &self.scorer
    }

    /// Inside hosts with window state now.
    pub fn hosts(&self) -> usize {
        self.windows.len()
    }

    pub fn hosts_evicted(&self) -> u64 {
        self.windows.evicted() + self.detectors.iter().map(|d| d.evicted()).sum::<u64>()
    }

    /// Loads baselines saved by an earlier run; a missing file is a first run.
    pub fn load_state(&mut self, path: &Path) -> Result<bool, EngineError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(state_error(path, e.to_string())),
        };
        let state: StateFile =
            serde_json::from_str(&text).map_err(|e| state_error(path, e.to_string()))?;
        if state.version != STATE_VERSION {
            return Err(state_error(
                path,
                format!(
                    "version {} (this build reads {STATE_VERSION})",
                    state.version
                ),
            ));
        }
        self.known_destinations = state.known_destinations.into_iter().collect();
        self.windows.restore(state.windows);
        Ok(true)
    }

    pub fn save_state(&self, path: &Path) -> Result<(), EngineError> {
        let mut known: Vec<IpAddr> = self.known_destinations.iter().copied().collect();
        known.sort_unstable();
        let state = StateFile {
            version: STATE_VERSION,
            known_destinations: known,
            windows: self.windows.state(),
        };
        let text = serde_json::to_string(&state).map_err(|e| state_error(path, e.to_string()))?;
        // Write beside and rename, so a crash never leaves half a state file.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| state_error(path, e.to_string()))
    }
}

fn state_error(path: &Path, reason: String) -> EngineError {
    EngineError::State {
        path: path.to_path_buf(),
        reason,
    }
}
