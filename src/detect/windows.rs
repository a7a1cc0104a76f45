//! Per-host tumbling windows of egress and the baselines they feed (per-host EWMA, per hour of
//! day once warm, and the population's 90th percentile per window: AN0084's rule).
//!
//! CONTRACT STUB: the types and signatures below are the interface the engine and detectors
//! use; the bodies are placeholders until the windows work lands.
use super::FlowView;
use super::clock::BusinessClock;
use crate::enrich::geo::CountryCode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::IpAddr;

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
    /// The per-hour-of-day baseline replaces the EWMA once an hour has this many samples.
    pub hour_of_day_min_samples: u32,
    /// The population 90th percentile needs at least this many active hosts in the window.
    pub population_min_hosts: usize,
    /// A flow open at least this long counts as a long session in the window's statistics.
    pub long_session_seconds: u64,
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
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub pkts_out: u64,
    pub pkts_in: u64,
    pub flows_opened: u64,
    /// Distinct outside addresses (exact up to the limit, then estimated).
    pub distinct_destinations: u64,
    /// Distinct outside ports.
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
}

/// A window that just closed: every host active in it, sorted by address.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClosedWindow {
    pub start_ns: u64,
    pub end_ns: u64,
    /// 90th percentile of bytes_out over the window's active hosts (None when fewer than
    /// `population_min_hosts` were active).
    pub population_p90_bytes_out: Option<u64>,
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

/// Saved baselines (`--state FILE`), so a daily replay continues yesterday's history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowsState {
    pub hosts: Vec<(IpAddr, HostHistory)>,
}

pub struct HostWindows {
    config: WindowsConfig,
    _clock: BusinessClock,
    evicted: u64,
}

impl HostWindows {
    pub fn new(config: WindowsConfig, clock: BusinessClock) -> HostWindows {
        HostWindows {
            config,
            _clock: clock,
            evicted: 0,
        }
    }

    pub fn config(&self) -> &WindowsConfig {
        &self.config
    }

    /// Adds a flow update of an inside host to the open window.
    pub fn flow(&mut self, _view: &FlowView<'_>) {}

    pub fn history(&self, _host: IpAddr) -> Option<&HostHistory> {
        None
    }

    /// Closes the open window at `end_ns` and updates the baselines.
    pub fn close(&mut self, start_ns: u64, end_ns: u64) -> ClosedWindow {
        ClosedWindow {
            start_ns,
            end_ns,
            population_p90_bytes_out: None,
            hosts: Vec::new(),
        }
    }

    pub fn state(&self) -> WindowsState {
        WindowsState::default()
    }

    pub fn restore(&mut self, _state: WindowsState) {}

    /// Hosts evicted at the `max_hosts` bound.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}
