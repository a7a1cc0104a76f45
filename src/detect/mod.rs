//! Detectors: they see names, flow updates and closed host windows, never where a flow came
//! from (packets or flow export). Behavioural detectors emit [`Finding`]s; the scorer combines
//! one host's findings in one window into one alert.
pub mod allowlist;
pub mod clock;
pub mod engine;
pub mod fanout;
pub mod flood;
pub mod geo_unusual;
pub mod long_lived;
pub mod proxyware;
pub mod relay;
pub mod score;
pub mod sustained;
pub mod torrent;
pub mod windows;

use crate::enrich::geo::GeoInfo;
use crate::flow::update::FlowUpdate;
use serde::Serialize;
use std::net::IpAddr;
use windows::{ClosedWindow, HostHistory};

/// The detection branches (the alert's `DetectionBranch`), with the DET0028 analytic each implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Branch {
    ProxywareDomain,
    LongLivedSession,
    SustainedEgress,
    FanOut,
    TorrentSeeding,
    FloodParticipation,
    RelayBehaviour,
    GeoUnusual,
}

impl Branch {
    pub fn as_str(self) -> &'static str {
        match self {
            Branch::ProxywareDomain => "ProxywareDomain",
            Branch::LongLivedSession => "LongLivedSession",
            Branch::SustainedEgress => "SustainedEgress",
            Branch::FanOut => "FanOut",
            Branch::TorrentSeeding => "TorrentSeeding",
            Branch::FloodParticipation => "FloodParticipation",
            Branch::RelayBehaviour => "RelayBehaviour",
            Branch::GeoUnusual => "GeoUnusual",
        }
    }

    pub fn analytic(self) -> &'static str {
        match self {
            Branch::LongLivedSession | Branch::GeoUnusual => "AN0080",
            Branch::SustainedEgress => "AN0081,AN0084",
            _ => "AN0081",
        }
    }
}

/// One piece of evidence that a host's bandwidth is being used: what a detector saw, how
/// strongly it points at hijacking, and the words and numbers an analyst needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub branch: Branch,
    /// The inside host (for spoofed floods: the first spoofed source seen).
    pub host: IpAddr,
    /// Event time at which the behaviour was established (decides the alert window).
    pub ts_ns: u64,
    /// 0-100: how strongly this finding alone indicates hijacking.
    pub strength: u8,
    pub destination: Option<(IpAddr, u16)>,
    pub destination_name: Option<String>,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub duration_s: f64,
    pub country: Option<String>,
    pub asn: Option<u32>,
    /// A clause for the alert's reason, without the host, e.g.
    /// "kept 6 sessions open 9 h to 3 ASNs, 4.1 GB sent".
    pub summary: String,
    /// Numbers and flows behind the finding (bounded lists).
    pub evidence: serde_json::Value,
}

/// Bytes and packets a flow moved since its previous update.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delta {
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub pkts_out: u64,
    pub pkts_in: u64,
}

/// A flow update as detectors see it: enriched once per update by the engine.
#[derive(Debug, Clone, Copy)]
pub struct FlowView<'a> {
    pub update: &'a FlowUpdate<'a>,
    /// What happened since this flow's previous update (the first update: everything).
    pub delta: Delta,
    /// Where the span `delta` covers starts: the previous update's last_ns (the first
    /// update: the flow's first_ns).
    pub delta_since_ns: u64,
    /// This is the first update of the flow.
    pub first_update: bool,
    /// Country and ASN of the outside address.
    pub geo: &'a GeoInfo,
    /// The destination is allowlisted (CIDR, domain, ASN or port): windows count it apart,
    /// detectors never see it.
    pub allowlisted: bool,
    /// The inside host's history before this update (None for a host not seen before).
    pub history: Option<&'a HostHistory>,
    /// The update's time falls outside business hours.
    pub off_hours: bool,
    /// `update.inside` is in home_nets. When false, neither side is inside (a spoofed or
    /// transit flow): only detectors that look at targets (floods) use such updates.
    pub host_inside: bool,
    /// The inside host is on the allowlist (its findings are dropped before scoring).
    pub host_allowlisted: bool,
}

/// A behavioural detector. Findings go to `out`; the engine routes them to the scorer.
pub trait Detector {
    /// Every flow update whose destination is not allowlisted (check `view.host_inside`).
    fn flow(&mut self, _view: &FlowView<'_>, _out: &mut Vec<Finding>) {}
    /// A window closed: per-host statistics and baselines for it.
    fn window(&mut self, _closed: &ClosedWindow, _out: &mut Vec<Finding>) {}
    /// Counted evictions of the detector's own bounded state.
    fn evicted(&self) -> u64 {
        0
    }
    /// New thresholds from a reloaded config (SIGHUP); what the detector has learned stays.
    fn reconfigure(&mut self, config: &crate::config::DetectorsConfig);
}

/// "1.2 GB", "640 kB": decimal units as network tools print them.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// "9 h", "45 min", "30 s".
pub fn human_duration(seconds: f64) -> String {
    if seconds >= 3600.0 {
        format!("{:.1} h", seconds / 3600.0)
    } else if seconds >= 60.0 {
        format!("{:.0} min", seconds / 60.0)
    } else {
        format!("{seconds:.0} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(4_100_000_000), "4.1 GB");
        assert_eq!(human_duration(9.0 * 3600.0), "9.0 h");
        assert_eq!(human_duration(600.0), "10 min");
    }
}
