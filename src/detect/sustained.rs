//! SustainedEgress (AN0081, AN0084): a host's egress over both its own baseline and the
//! population's 90th percentile for consecutive windows, weighted by off-hours and upload ratio.
use super::windows::{ClosedWindow, HostWindow, PopulationScope};
use super::{Branch, Detector, Finding, human_bytes};
use crate::alert::rfc3339;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::net::IpAddr;

const NS: u64 = 1_000_000_000;
const BASE_STRENGTH: u32 = 55;
const OFF_HOURS_BONUS: u32 = 10;
const UPLOAD_BONUS: u32 = 10;
/// The baseline bonus is half the factor over the baseline, at most this.
const MAX_BASELINE_BONUS: f64 = 10.0;
const MAX_STRENGTH: u32 = 95;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SustainedConfig {
    pub enabled: bool,
    /// Egress floor per hour, scaled to the window length (900 s: a quarter of it).
    pub min_bytes_out_per_hour: u64,
    /// Egress must be at least this many times the host's own baseline (when it has one).
    pub baseline_factor: f64,
    /// Consecutive closed windows over the thresholds before a finding.
    pub consecutive_windows: u32,
    /// Share of the streak's egress outside business hours that adds weight.
    pub off_hours_share: f64,
    /// Egress at least this many times ingress adds weight (an upload, not a download).
    pub upload_ratio: f64,
    /// Hosts with a running streak tracked at once; beyond it the shortest streaks are
    /// dropped (counted).
    pub max_hosts: usize,
}

impl Default for SustainedConfig {
    fn default() -> Self {
        SustainedConfig {
            enabled: true,
            min_bytes_out_per_hour: 200_000_000,
            baseline_factor: 3.0,
            consecutive_windows: 2,
            off_hours_share: 0.5,
            upload_ratio: 2.0,
            max_hosts: 100_000,
        }
    }
}

/// A host's run of consecutive windows over the thresholds.
#[derive(Debug, Clone, Copy)]
struct Streak {
    windows: u32,
    start_ns: u64,
    bytes_out: u64,
    bytes_in: u64,
    off_hours_bytes_out: u64,
}

pub struct SustainedDetector {
    config: SustainedConfig,
    streaks: BTreeMap<IpAddr, Streak>,
    /// End of the previous closed window: a gap means every host was absent.
    last_end_ns: Option<u64>,
    evicted: u64,
}

impl SustainedDetector {
    pub fn new(config: SustainedConfig) -> SustainedDetector {
        SustainedDetector {
            config,
            streaks: BTreeMap::new(),
            last_end_ns: None,
            evicted: 0,
        }
    }

    /// The egress floor for a window of `window_s` seconds.
    fn floor_bytes(&self, window_s: f64) -> f64 {
        self.config.min_bytes_out_per_hour as f64 * window_s / 3600.0
    }

    /// True when the host's egress in this window passes every test that applies. With neither
    /// a baseline nor a population p90 there is nothing to compare against: not over.
    fn over(&self, h: &HostWindow, floor: f64, p90: Option<u64>) -> bool {
        if h.baseline_bytes_out.is_none() && p90.is_none() {
            return false;
        }
        let out = h.bytes_out as f64;
        out >= floor
            && p90.is_none_or(|p| h.bytes_out > p)
            && h.baseline_bytes_out
                .is_none_or(|b| out >= self.config.baseline_factor * b)
    }

    fn finding(
        &self,
        h: &HostWindow,
        s: &Streak,
        closed: &ClosedWindow,
        window_s: f64,
        floor: f64,
    ) -> Finding {
        let p90 = closed.population_p90_bytes_out;
        let off_share = ratio(s.off_hours_bytes_out, s.bytes_out);
        let upload =
            s.bytes_in == 0 || s.bytes_out as f64 >= self.config.upload_ratio * s.bytes_in as f64;
        // Factors of this window over what the host and the population usually send.
        let base_factor = h
            .baseline_bytes_out
            .map(|b| h.bytes_out as f64 / b.max(1.0));
        let p90_factor = p90.map(|p| h.bytes_out as f64 / (p.max(1)) as f64);
        let mut strength = BASE_STRENGTH;
        if off_share >= self.config.off_hours_share {
            strength += OFF_HOURS_BONUS;
        }
        if upload {
            strength += UPLOAD_BONUS;
        }
        if let Some(f) = base_factor {
            strength += (f / 2.0).clamp(0.0, MAX_BASELINE_BONUS) as u32;
        }
        let strength = strength.min(MAX_STRENGTH) as u8;

        let mut compared = Vec::new();
        match base_factor {
            Some(f) => compared.push(format!("{} its baseline", times(f))),
            None => compared.push("no baseline yet".to_string()),
        }
        if let Some(f) = p90_factor {
            let whose = match closed.population_scope {
                PopulationScope::Site => "population",
                PopulationScope::Fleet { .. } => "fleet's",
            };
            compared.push(format!("{} the {whose} p90", times(f)));
        }
        let mut summary = format!(
            "sent {} in {} consecutive {} windows, {} in the last",
            human_bytes(s.bytes_out),
            s.windows,
            window_label(window_s),
            compared.join(" and "),
        );
        if s.off_hours_bytes_out > 0 {
            summary.push_str(&format!(", {:.0}% off-hours", off_share * 100.0));
        }
        if upload && s.bytes_in > 0 {
            summary.push_str(&format!(
                ", {} what it received",
                times(s.bytes_out as f64 / s.bytes_in as f64)
            ));
        }
        Finding {
            branch: Branch::SustainedEgress,
            host: h.host,
            // The window that completed (or continues) the streak.
            ts_ns: closed.start_ns,
            strength,
            destination: None,
            destination_name: None,
            bytes_out: s.bytes_out,
            bytes_in: s.bytes_in,
            duration_s: window_s * f64::from(s.windows),
            country: None,
            asn: None,
            summary,
            evidence: json!({
                "consecutive_windows": s.windows,
                "streak_start": rfc3339(s.start_ns),
                "window_seconds": window_s,
                "window_bytes_out": h.bytes_out,
                "window_bytes_in": h.bytes_in,
                "window_floor_bytes_out": floor.round() as u64,
                "baseline_bytes_out": h.baseline_bytes_out.map(|b| b.round() as u64),
                "baseline_factor": base_factor.map(round1),
                "history_windows": h.history_windows,
                "population_p90_bytes_out": p90,
                "population_p90_factor": p90_factor.map(round1),
                "population_scope": closed.population_scope,
                "streak_bytes_out": s.bytes_out,
                "streak_bytes_in": s.bytes_in,
                "streak_off_hours_bytes_out": s.off_hours_bytes_out,
                "off_hours_share": round1(off_share * 100.0) / 100.0,
                "flows_opened": h.flows_opened,
                "distinct_destinations": h.distinct_destinations,
                "long_sessions_open": h.long_sessions_open,
                "countries": h.countries,
                "asns": h.asns,
            }),
        }
    }
}

impl Detector for SustainedDetector {
    fn reconfigure(&mut self, config: &crate::config::DetectorsConfig) {
        self.config = config.sustained.clone();
    }
    fn window(&mut self, closed: &ClosedWindow, out: &mut Vec<Finding>) {
        if !self.config.enabled {
            return;
        }
        // A window nobody was active in was never closed: every streak broke.
        let previous = if self.last_end_ns == Some(closed.start_ns) {
            std::mem::take(&mut self.streaks)
        } else {
            self.streaks.clear();
            BTreeMap::new()
        };
        self.last_end_ns = Some(closed.end_ns);
        let window_s = closed.end_ns.saturating_sub(closed.start_ns) as f64 / NS as f64;
        let floor = self.floor_bytes(window_s);
        let p90 = closed.population_p90_bytes_out;
        let needed = self.config.consecutive_windows.max(1);
        // Hosts absent from this window or not over it drop out of `streaks` (reset).
        for h in &closed.hosts {
            if !self.over(h, floor, p90) {
                continue;
            }
            let s = match previous.get(&h.host) {
                Some(p) => Streak {
                    windows: p.windows.saturating_add(1),
                    start_ns: p.start_ns,
                    bytes_out: p.bytes_out.saturating_add(h.bytes_out),
                    bytes_in: p.bytes_in.saturating_add(h.bytes_in),
                    off_hours_bytes_out: p
                        .off_hours_bytes_out
                        .saturating_add(h.off_hours_bytes_out),
                },
                None => Streak {
                    windows: 1,
                    start_ns: closed.start_ns,
                    bytes_out: h.bytes_out,
                    bytes_in: h.bytes_in,
                    off_hours_bytes_out: h.off_hours_bytes_out,
                },
            };
            if s.windows >= needed {
                out.push(self.finding(h, &s, closed, window_s, floor));
            }
            self.streaks.insert(h.host, s);
        }
        let excess = self.streaks.len().saturating_sub(self.config.max_hosts);
        if excess > 0 {
            // Keep the longest, heaviest streaks; ties by address so the choice is deterministic.
            let mut order: Vec<(u32, u64, IpAddr)> = self
                .streaks
                .iter()
                .map(|(ip, s)| (s.windows, s.bytes_out, *ip))
                .collect();
            order.sort_unstable();
            for (_, _, ip) in order.into_iter().take(excess) {
                self.streaks.remove(&ip);
            }
            self.evicted += excess as u64;
        }
    }

    fn evicted(&self) -> u64 {
        self.evicted
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// "11x", "2.5x"; absurd factors (a near-zero baseline) print as a bound.
pub(crate) fn times(f: f64) -> String {
    if !f.is_finite() || f >= 1000.0 {
        ">1000x".to_string()
    } else if f >= 10.0 {
        format!("{f:.0}x")
    } else {
        format!("{f:.1}x")
    }
}

/// "15-min", "1-h", "90-s": the window length as an adjective.
fn window_label(seconds: f64) -> String {
    let s = seconds.round() as u64;
    if s >= 3600 && s.is_multiple_of(3600) {
        format!("{}-h", s / 3600)
    } else if s >= 60 && s.is_multiple_of(60) {
        format!("{}-min", s / 60)
    } else {
        format!("{s}-s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::geo::CountryCode;

    const MB: u64 = 1_000_000;
    const W: u64 = 900 * NS;
    /// 2024-03-05 (a Tuesday) 00:00 UTC: windows at night.
    const T0: u64 = 1_709_596_800 * NS;

    fn host(last: u8, bytes_out: u64, bytes_in: u64, baseline: Option<f64>) -> HostWindow {
        HostWindow {
            host: IpAddr::from([10, 1, 2, last]),
            bytes_out,
            bytes_in,
            pkts_out: bytes_out / 1200,
            pkts_in: bytes_in / 1200,
            flows_opened: 40,
            distinct_destinations: 12,
            distinct_ports: 3,
            unanswered_tcp: 0,
            long_sessions_open: 1,
            countries: vec![CountryCode(*b"US"), CountryCode(*b"NL")],
            asns: vec![16509, 60781],
            off_hours_bytes_out: 0,
            allowlisted_bytes_out: 0,
            baseline_bytes_out: baseline,
            history_windows: if baseline.is_some() { 40 } else { 1 },
            in_population: true,
            long_sessions: Vec::new(),
        }
    }

    fn window(i: u64, p90: Option<u64>, hosts: Vec<HostWindow>) -> ClosedWindow {
        ClosedWindow {
            start_ns: T0 + i * W,
            end_ns: T0 + (i + 1) * W,
            population_p90_bytes_out: p90,
            population_scope: crate::detect::windows::PopulationScope::Site,
            hosts,
        }
    }

    fn run(d: &mut SustainedDetector, w: &ClosedWindow) -> Vec<Finding> {
        let mut out = Vec::new();
        d.window(w, &mut out);
        out
    }

    /// An office of quiet hosts around a 2 GB-per-window uploader.
    fn office(i: u64, uploader_out: u64, uploader_off_hours: u64) -> ClosedWindow {
        let mut up = host(50, uploader_out, 60 * MB, Some(180.0 * MB as f64));
        up.off_hours_bytes_out = uploader_off_hours;
        let mut hosts = vec![up];
        for last in 10..20 {
            hosts.push(host(last, 15 * MB, 120 * MB, Some(14.0 * MB as f64)));
        }
        hosts.sort_by_key(|h| h.host);
        window(i, Some(330 * MB), hosts)
    }

    #[test]
    fn two_windows_over_baseline_and_p90_raise_then_continue() {
        let mut d = SustainedDetector::new(SustainedConfig::default());
        assert!(run(&mut d, &office(0, 2_000 * MB, 1_600 * MB)).is_empty());
        let f = run(&mut d, &office(1, 2_100 * MB, 2_100 * MB));
        assert_eq!(f.len(), 1);
        let f = &f[0];
        assert_eq!(f.branch, Branch::SustainedEgress);
        assert_eq!(f.host, IpAddr::from([10, 1, 2, 50]));
        assert_eq!(f.bytes_out, 4_100 * MB);
        assert_eq!(f.bytes_in, 120 * MB);
        assert_eq!(f.duration_s, 1800.0);
        assert_eq!(f.ts_ns, T0 + W);
        // 55 + off-hours 10 + upload 10 + min(10, 11.7 / 2) = 80.
        assert_eq!(f.strength, 80);
        assert_eq!(
            f.summary,
            "sent 4.1 GB in 2 consecutive 15-min windows, 12x its baseline and 6.4x the population \
             p90 in the last, 90% off-hours, 34x what it received"
        );
        assert_eq!(f.evidence["consecutive_windows"], 2);
        assert_eq!(f.evidence["window_floor_bytes_out"], 50 * MB);
        assert_eq!(f.evidence["population_p90_bytes_out"], 330 * MB);
        // A third window keeps raising (the scorer folds the repeat).
        let f = run(&mut d, &office(2, 1_900 * MB, 0));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].evidence["consecutive_windows"], 3);
        assert_eq!(f[0].bytes_out, 6_000 * MB);
    }

    #[test]
    fn a_quiet_window_resets_the_streak() {
        let mut d = SustainedDetector::new(SustainedConfig::default());
        assert!(run(&mut d, &office(0, 2_000 * MB, 0)).is_empty());
        assert!(run(&mut d, &office(1, 20 * MB, 0)).is_empty());
        assert!(run(&mut d, &office(2, 2_000 * MB, 0)).is_empty());
        assert_eq!(run(&mut d, &office(3, 2_000 * MB, 0)).len(), 1);
    }

    #[test]
    fn absence_or_a_skipped_window_resets_the_streak() {
        let mut d = SustainedDetector::new(SustainedConfig::default());
        assert!(run(&mut d, &office(0, 2_000 * MB, 0)).is_empty());
        // Window 1: the uploader sent nothing (absent), the others were active.
        let mut w = office(1, 0, 0);
        w.hosts.retain(|h| h.host != IpAddr::from([10, 1, 2, 50]));
        assert!(run(&mut d, &w).is_empty());
        assert!(run(&mut d, &office(2, 2_000 * MB, 0)).is_empty());
        // Window 3 never closed (nobody active): window 4 does not continue window 2.
        assert!(run(&mut d, &office(4, 2_000 * MB, 0)).is_empty());
        assert_eq!(run(&mut d, &office(5, 2_000 * MB, 0)).len(), 1);
    }

    #[test]
    fn within_baseline_factor_or_under_p90_is_not_over() {
        let mut d = SustainedDetector::new(SustainedConfig::default());
        // 1 GB against its usual 400 MB: 2.5x is under the 3x factor.
        let busy = || host(7, 1_000 * MB, 50 * MB, Some(400.0 * MB as f64));
        for i in 0..4 {
            assert!(run(&mut d, &window(i, Some(300 * MB), vec![busy()])).is_empty());
        }
        // Over its baseline but not over a population whose p90 is high (a render farm).
        let mut d = SustainedDetector::new(SustainedConfig::default());
        let spike = || host(7, 1_000 * MB, 50 * MB, Some(100.0 * MB as f64));
        for i in 0..4 {
            assert!(run(&mut d, &window(i, Some(1_500 * MB), vec![spike()])).is_empty());
        }
    }

    #[test]
    fn floor_scales_with_window_length() {
        // 40 MB per 900 s is 160 MB/h: under the 200 MB/h floor even at 10x baseline and p90.
        let mut d = SustainedDetector::new(SustainedConfig::default());
        for i in 0..3 {
            let h = host(9, 40 * MB, MB, Some(4.0 * MB as f64));
            assert!(run(&mut d, &window(i, Some(4 * MB), vec![h])).is_empty());
        }
        // The same 40 MB in 300 s windows is 480 MB/h: over.
        let mut d = SustainedDetector::new(SustainedConfig::default());
        let short = |i: u64| ClosedWindow {
            start_ns: T0 + i * 300 * NS,
            end_ns: T0 + (i + 1) * 300 * NS,
            population_p90_bytes_out: Some(4 * MB),
            population_scope: crate::detect::windows::PopulationScope::Site,
            hosts: vec![host(9, 40 * MB, MB, Some(4.0 * MB as f64))],
        };
        assert!(run(&mut d, &short(0)).is_empty());
        let f = run(&mut d, &short(1));
        assert_eq!(f.len(), 1);
        assert!(
            f[0].summary.contains("2 consecutive 5-min windows"),
            "{}",
            f[0].summary
        );
    }

    #[test]
    fn cold_host_decided_by_population_alone_and_nothing_without_either() {
        let mut d = SustainedDetector::new(SustainedConfig::default());
        let cold = || host(33, 900 * MB, 30 * MB, None);
        assert!(run(&mut d, &window(0, Some(150 * MB), vec![cold()])).is_empty());
        let f = run(&mut d, &window(1, Some(150 * MB), vec![cold()]));
        assert_eq!(f.len(), 1);
        // 55 + upload 10; no baseline bonus and no off-hours egress.
        assert_eq!(f[0].strength, 65);
        assert!(
            f[0].summary
                .contains("no baseline yet and 6.0x the population p90")
        );
        assert_eq!(f[0].evidence["baseline_bytes_out"], serde_json::Value::Null);

        // Too few hosts for a p90 and no history: nothing to compare against.
        let mut d = SustainedDetector::new(SustainedConfig::default());
        for i in 0..4 {
            assert!(run(&mut d, &window(i, None, vec![cold()])).is_empty());
        }
    }

    #[test]
    fn large_download_is_not_egress() {
        // A 6 GB OS image download: bytes_in is huge, bytes_out is the ACK stream.
        let mut d = SustainedDetector::new(SustainedConfig::default());
        for i in 0..4 {
            let h = host(60, 45 * MB, 3_000 * MB, Some(10.0 * MB as f64));
            assert!(run(&mut d, &window(i, Some(30 * MB), vec![h])).is_empty());
        }
    }

    #[test]
    fn allowlisted_backup_upload_is_not_counted() {
        // The nightly 20 GB backup goes to an allowlisted target: the windows leave it out of
        // bytes_out, so the host shows only its usual chatter.
        let mut d = SustainedDetector::new(SustainedConfig::default());
        for i in 0..8 {
            let mut h = host(5, 3 * MB, 2 * MB, Some(3.0 * MB as f64));
            h.off_hours_bytes_out = 3 * MB;
            assert!(run(&mut d, &window(i, Some(20 * MB), vec![h])).is_empty());
        }
    }

    #[test]
    fn strength_without_off_hours_or_upload() {
        // A symmetric transfer in business hours, 4x baseline: 55 + 4/2 = 57.
        let mut d = SustainedDetector::new(SustainedConfig::default());
        let h = || host(8, 800 * MB, 700 * MB, Some(200.0 * MB as f64));
        run(&mut d, &window(0, Some(100 * MB), vec![h()]));
        let f = run(&mut d, &window(1, Some(100 * MB), vec![h()]));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].strength, 57);
        assert!(!f[0].summary.contains("off-hours"));
        assert!(!f[0].summary.contains("received"));
    }

    #[test]
    fn config_thresholds_are_used() {
        let config = SustainedConfig {
            consecutive_windows: 3,
            min_bytes_out_per_hour: 10_000_000_000,
            ..SustainedConfig::default()
        };
        let mut d = SustainedDetector::new(config);
        // 2 GB per 15 min is 8 GB/h: under a 10 GB/h floor.
        for i in 0..4 {
            assert!(run(&mut d, &office(i, 2_000 * MB, 0)).is_empty());
        }
        let config = SustainedConfig {
            consecutive_windows: 3,
            ..SustainedConfig::default()
        };
        let mut d = SustainedDetector::new(config);
        assert!(run(&mut d, &office(0, 2_000 * MB, 0)).is_empty());
        assert!(run(&mut d, &office(1, 2_000 * MB, 0)).is_empty());
        assert_eq!(run(&mut d, &office(2, 2_000 * MB, 0)).len(), 1);
        let disabled = SustainedConfig {
            enabled: false,
            ..SustainedConfig::default()
        };
        let mut d = SustainedDetector::new(disabled);
        for i in 0..4 {
            assert!(run(&mut d, &office(i, 2_000 * MB, 0)).is_empty());
        }
    }

    #[test]
    fn streaks_are_bounded_with_counted_eviction() {
        let config = SustainedConfig {
            max_hosts: 2,
            ..SustainedConfig::default()
        };
        let mut d = SustainedDetector::new(config);
        let hosts = |i: u64| {
            let hs = (1..=4)
                .map(|n| host(n, (500 + u64::from(n)) * MB, MB, Some(10.0 * MB as f64)))
                .collect();
            window(i, Some(100 * MB), hs)
        };
        assert!(run(&mut d, &hosts(0)).is_empty());
        assert_eq!(d.evicted(), 2);
        // Only the two heaviest kept their streak.
        let f = run(&mut d, &hosts(1));
        let raised: Vec<IpAddr> = f.iter().map(|f| f.host).collect();
        assert_eq!(
            raised,
            vec![IpAddr::from([10, 1, 2, 3]), IpAddr::from([10, 1, 2, 4])]
        );
        assert_eq!(d.evicted(), 4);
    }

    #[test]
    fn labels_and_factors() {
        assert_eq!(window_label(900.0), "15-min");
        assert_eq!(window_label(3600.0), "1-h");
        assert_eq!(window_label(300.0), "5-min");
        assert_eq!(times(11.4), "11x");
        assert_eq!(times(3.06), "3.1x");
        assert_eq!(times(f64::INFINITY), ">1000x");
    }
}
