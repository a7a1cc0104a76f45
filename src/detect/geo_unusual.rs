//! GeoUnusual (AN0080): an inside host uploads to a country outside `allowed_countries`, or
//! to a country or ASN it has never sent to before, with volume.
//!
//! Volume is the larger of the flow's own upload and everything the host sent to that
//! country (or ASN) in the window, so one big upload and many small ones both count; the
//! flow must have sent bytes in this window. One finding per (host, country or ASN) per
//! window at most. Hosts with too little history (`min_history_windows`) get no never-seen
//! findings: for them everything is new.
use super::windows::{ClosedWindow, HostHistory};
use super::{Branch, Detector, Finding, FlowView, human_bytes};
use crate::enrich::geo::CountryCode;
use crate::flow::key::Uid;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::net::IpAddr;

/// (host, country or ASN) pairs tracked in one window; beyond it new pairs are not tracked
/// (counted in `evicted`).
const MAX_TRACKED: usize = 65_536;
/// Example flows kept per pair for the evidence.
const MAX_EXAMPLES: usize = 5;
/// Allowed countries listed in a summary before "…".
const MAX_LISTED_COUNTRIES: usize = 6;

/// Strengths (the scorer alerts at 40 by default): a stated country policy broken is the
/// clearest; a new country for a host with a stable history next; a new network within
/// countries the host already uses is weakest (CDNs and clouds add ASNs all the time).
const STRENGTH_OUTSIDE_ALLOWED: u8 = 55;
const STRENGTH_NEW_COUNTRY: u8 = 45;
const STRENGTH_NEW_ASN: u8 = 40;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeoUnusualConfig {
    pub enabled: bool,
    /// DestinationCountry: ISO 3166-1 alpha-2 codes uploads may go to; empty: no policy.
    pub allowed_countries: Vec<CountryCode>,
    /// TrafficRateThreshold: upload to a country outside `allowed_countries` that is reported.
    pub min_bytes_out: u64,
    /// TrafficRateThreshold: upload to a never-seen country or ASN that is reported.
    pub new_destination_min_bytes_out: u64,
    /// TimeWindow: closed windows of history a host needs before "never seen" means anything.
    pub min_history_windows: u32,
}

impl Default for GeoUnusualConfig {
    fn default() -> Self {
        GeoUnusualConfig {
            enabled: true,
            allowed_countries: Vec::new(),
            min_bytes_out: 1_000_000,
            new_destination_min_bytes_out: 10_000_000,
            min_history_windows: 4,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Country(CountryCode),
    Asn(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    OutsideAllowed,
    NewCountry,
    NewAsn,
}

/// One (host, country or ASN) in the open window.
#[derive(Default)]
struct Pair {
    bytes_out: u64,
    bytes_in: u64,
    flows_opened: u64,
    raised: bool,
    examples: Vec<Example>,
}

/// A flow behind a pair, with its latest cumulative counters.
struct Example {
    uid: Uid,
    outside: IpAddr,
    port: u16,
    name: Option<String>,
    bytes_out: u64,
    bytes_in: u64,
    duration_ns: u64,
}

impl Example {
    fn to_json(&self) -> serde_json::Value {
        json!({
            "uid": self.uid.to_string(),
            "destination": self.outside.to_string(),
            "port": self.port,
            "name": self.name,
            "bytes_out": self.bytes_out,
            "bytes_in": self.bytes_in,
            "duration_s": self.duration_ns as f64 / 1e9,
        })
    }
}

pub struct GeoUnusualDetector {
    config: GeoUnusualConfig,
    pairs: FxHashMap<(IpAddr, Key), Pair>,
    evicted: u64,
}

impl GeoUnusualDetector {
    pub fn new(mut config: GeoUnusualConfig) -> GeoUnusualDetector {
        config.allowed_countries.sort_unstable();
        config.allowed_countries.dedup();
        GeoUnusualDetector {
            config,
            pairs: FxHashMap::default(),
            evicted: 0,
        }
    }

    fn outside_policy(&self, country: CountryCode) -> bool {
        !self.config.allowed_countries.is_empty()
            && self
                .config
                .allowed_countries
                .binary_search(&country)
                .is_err()
    }

    /// Adds the flow's bytes to the pair; returns its window volume, or None when the pair
    /// is not tracked (bound reached) or already raised.
    fn account(&mut self, view: &FlowView<'_>, key: Key) -> Option<u64> {
        let u = view.update;
        let slot = (u.inside, key);
        if !self.pairs.contains_key(&slot) && self.pairs.len() >= MAX_TRACKED {
            self.evicted += 1;
            return None;
        }
        let pair = self.pairs.entry(slot).or_default();
        pair.bytes_out = pair.bytes_out.saturating_add(view.delta.bytes_out);
        pair.bytes_in = pair.bytes_in.saturating_add(view.delta.bytes_in);
        if view.first_update {
            pair.flows_opened += 1;
        }
        if let Some(e) = pair.examples.iter_mut().find(|e| e.uid == u.uid) {
            e.bytes_out = u.bytes_out;
            e.bytes_in = u.bytes_in;
            e.duration_ns = u.duration_ns();
        } else if pair.examples.len() < MAX_EXAMPLES {
            pair.examples.push(Example {
                uid: u.uid,
                outside: u.outside,
                port: u.outside_port,
                name: u.name().map(str::to_string),
                bytes_out: u.bytes_out,
                bytes_in: u.bytes_in,
                duration_ns: u.duration_ns(),
            });
        }
        if pair.raised {
            return None;
        }
        Some(pair.bytes_out.max(u.bytes_out))
    }

    fn raise(
        &mut self,
        view: &FlowView<'_>,
        key: Key,
        kind: Kind,
        volume: u64,
        history: Option<&HostHistory>,
        out: &mut Vec<Finding>,
    ) {
        let u = view.update;
        let geo = view.geo;
        let Some(pair) = self.pairs.get_mut(&(u.inside, key)) else {
            return;
        };
        pair.raised = true;
        let country = geo.country_string();
        let network = match (geo.asn, geo.as_org.as_deref()) {
            (Some(asn), Some(org)) => format!("AS{asn} {org}"),
            (Some(asn), None) => format!("AS{asn}"),
            _ => "unknown ASN".to_string(),
        };
        let place = country.as_deref().unwrap_or("unknown country");
        let dest = format!("{}:{}", u.outside, u.outside_port);
        let dest = match u.name() {
            Some(name) => format!("{name} ({dest})"),
            None => dest,
        };
        let windows = history.map_or(0, |h| h.windows);
        let summary = match kind {
            Kind::OutsideAllowed => {
                let mut allowed: Vec<&str> = self
                    .config
                    .allowed_countries
                    .iter()
                    .take(MAX_LISTED_COUNTRIES)
                    .map(CountryCode::as_str)
                    .collect();
                if self.config.allowed_countries.len() > MAX_LISTED_COUNTRIES {
                    allowed.push("…");
                }
                format!(
                    "sent {} to {place}, outside the allowed countries ({}), via {dest}, {network}",
                    human_bytes(volume),
                    allowed.join(", ")
                )
            }
            Kind::NewCountry => format!(
                "sent {} to {place}, a country it never sent to in {windows} windows, via {dest}, {network}",
                human_bytes(volume)
            ),
            Kind::NewAsn => format!(
                "sent {} to {network}, a network it never sent to in {windows} windows, via {dest} ({place})",
                human_bytes(volume)
            ),
        };
        let (kind_name, strength) = match kind {
            Kind::OutsideAllowed => ("outside_allowed_countries", STRENGTH_OUTSIDE_ALLOWED),
            Kind::NewCountry => ("new_country", STRENGTH_NEW_COUNTRY),
            Kind::NewAsn => ("new_asn", STRENGTH_NEW_ASN),
        };
        let evidence = json!({
            "kind": kind_name,
            "country": country,
            "asn": geo.asn,
            "as_org": geo.as_org.as_deref(),
            "window_bytes_out": pair.bytes_out,
            "window_bytes_in": pair.bytes_in,
            "window_flows_opened": pair.flows_opened,
            "flow_bytes_out": u.bytes_out,
            "threshold_bytes_out": match kind {
                Kind::OutsideAllowed => self.config.min_bytes_out,
                _ => self.config.new_destination_min_bytes_out,
            },
            "allowed_countries": self.config.allowed_countries,
            "history_windows": windows,
            "countries_seen_before": history.map_or(0, |h| h.countries.len()),
            "asns_seen_before": history.map_or(0, |h| h.asns.len()),
            "flows": pair.examples.iter().map(Example::to_json).collect::<Vec<_>>(),
        });
        out.push(Finding {
            branch: Branch::GeoUnusual,
            host: u.inside,
            ts_ns: u.last_ns,
            strength,
            destination: Some((u.outside, u.outside_port)),
            destination_name: u.name().map(str::to_string),
            bytes_out: volume,
            bytes_in: pair.bytes_in.max(u.bytes_in),
            duration_s: u.duration_ns() as f64 / 1e9,
            country,
            asn: geo.asn,
            summary,
            evidence,
        });
    }
}

impl Detector for GeoUnusualDetector {
    fn reconfigure(&mut self, config: &crate::config::DetectorsConfig) {
        self.config = GeoUnusualDetector::new(config.geo_unusual.clone()).config;
    }
    fn flow(&mut self, view: &FlowView<'_>, out: &mut Vec<Finding>) {
        // Only uploads from inside hosts that moved bytes in this window.
        if !self.config.enabled
            || !view.host_inside
            || view.host_allowlisted
            || view.delta.bytes_out == 0
        {
            return;
        }
        let geo = view.geo;
        let history = view
            .history
            .filter(|h| h.windows >= self.config.min_history_windows);
        let new_country = match (geo.country, history) {
            (Some(c), Some(h)) => !h.countries.contains(&c),
            _ => false,
        };
        let new_asn = match (geo.asn, history) {
            (Some(a), Some(h)) => !h.asns.contains(&a),
            _ => false,
        };
        if let Some(country) = geo.country {
            let key = Key::Country(country);
            if self.outside_policy(country) {
                if let Some(volume) = self.account(view, key)
                    && volume >= self.config.min_bytes_out
                {
                    self.raise(view, key, Kind::OutsideAllowed, volume, history, out);
                }
                // The country finding covers the ASN too.
                return;
            }
            if new_country {
                if let Some(volume) = self.account(view, key)
                    && volume >= self.config.new_destination_min_bytes_out
                {
                    self.raise(view, key, Kind::NewCountry, volume, history, out);
                }
                return;
            }
        }
        if let (Some(asn), true) = (geo.asn, new_asn) {
            let key = Key::Asn(asn);
            if let Some(volume) = self.account(view, key)
                && volume >= self.config.new_destination_min_bytes_out
            {
                self.raise(view, key, Kind::NewAsn, volume, history, out);
            }
        }
    }

    fn window(&mut self, _closed: &ClosedWindow, _out: &mut Vec<Finding>) {
        // Per-window state: the next window starts with fresh volumes and may raise again.
        self.pairs.clear();
    }

    fn evicted(&self) -> u64 {
        self.evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Delta;
    use crate::enrich::geo::GeoInfo;
    use crate::flow::update::{FlowUpdate, UpdateKind};
    use std::sync::Arc;

    const HOST: &str = "10.1.2.3";
    const T0: u64 = 1_700_000_000 * 1_000_000_000;
    const S: u64 = 1_000_000_000;

    fn cc(s: &str) -> CountryCode {
        CountryCode::parse(s).unwrap()
    }

    fn geo(country: &str, asn: u32, org: &str) -> GeoInfo {
        GeoInfo {
            country: Some(cc(country)),
            asn: Some(asn),
            as_org: Some(Arc::from(org)),
        }
    }

    fn upload(uid: u64, outside: &str, bytes_out: u64, secs: u64) -> FlowUpdate<'static> {
        FlowUpdate {
            uid: Uid(uid),
            kind: UpdateKind::Final,
            proto: 6,
            inside: HOST.parse().unwrap(),
            inside_port: 50_000,
            outside: outside.parse().unwrap(),
            outside_port: 443,
            inbound: false,
            first_ns: T0,
            last_ns: T0 + secs * S,
            bytes_out,
            bytes_in: bytes_out / 20,
            pkts_out: bytes_out / 1400,
            pkts_in: bytes_out / 28_000,
            answered: true,
            conn_state: "SF",
            services: 0,
            names: None,
        }
    }

    /// A host seen for `windows` windows that has sent to DE (AS3320) and US (AS15169).
    fn history(windows: u32) -> HostHistory {
        HostHistory {
            first_seen_ns: T0 - u64::from(windows) * 900 * S,
            windows,
            countries: [cc("DE"), cc("US")].into_iter().collect(),
            asns: [3320, 15169].into_iter().collect(),
            ewma_bytes_out: 40e6,
        }
    }

    fn feed(
        d: &mut GeoUnusualDetector,
        u: &FlowUpdate<'_>,
        delta_out: u64,
        g: &GeoInfo,
        h: Option<&HostHistory>,
    ) -> Vec<Finding> {
        let view = FlowView {
            update: u,
            delta: Delta {
                bytes_out: delta_out,
                bytes_in: delta_out / 20,
                ..Delta::default()
            },
            // Not read by this detector.
            delta_since_ns: u.first_ns,
            first_update: delta_out == u.bytes_out,
            geo: g,
            allowlisted: false,
            history: h,
            off_hours: false,
            host_inside: true,
            host_allowlisted: false,
        };
        let mut out = Vec::new();
        d.flow(&view, &mut out);
        out
    }

    fn closed() -> ClosedWindow {
        ClosedWindow {
            start_ns: T0,
            end_ns: T0 + 900 * S,
            population_p90_bytes_out: None,
            population_scope: crate::detect::windows::PopulationScope::Site,
            hosts: Vec::new(),
        }
    }

    fn policy(countries: &[&str]) -> GeoUnusualConfig {
        GeoUnusualConfig {
            allowed_countries: countries.iter().map(|c| cc(c)).collect(),
            ..GeoUnusualConfig::default()
        }
    }

    #[test]
    fn upload_outside_allowed_countries() {
        let mut d = GeoUnusualDetector::new(policy(&["US", "DE", "gb"]));
        let ru = geo("RU", 49505, "JSC Selectel");
        // 600 kB: under min_bytes_out, nothing yet.
        let small = upload(1, "95.213.4.10", 600_000, 30);
        assert!(feed(&mut d, &small, 600_000, &ru, None).is_empty());
        // A second flow to the same country brings the window's upload to 2.4 MB.
        let big = upload(2, "95.213.9.20", 1_800_000, 60);
        let found = feed(&mut d, &big, 1_800_000, &ru, None);
        assert_eq!(found.len(), 1);
        let f = &found[0];
        assert_eq!(f.branch, Branch::GeoUnusual);
        assert_eq!(f.strength, 55);
        assert_eq!(f.bytes_out, 2_400_000);
        assert_eq!(f.country.as_deref(), Some("RU"));
        assert_eq!(f.asn, Some(49505));
        assert_eq!(
            f.summary,
            "sent 2.4 MB to RU, outside the allowed countries (DE, GB, US), via \
             95.213.9.20:443, AS49505 JSC Selectel"
        );
        assert_eq!(f.evidence["kind"], "outside_allowed_countries");
        assert_eq!(f.evidence["window_flows_opened"], 2);
        let flows = f.evidence["flows"].as_array().unwrap();
        assert_eq!(flows.len(), 2);
        assert_eq!(flows[1]["destination"], "95.213.9.20");
        assert_eq!(flows[1]["bytes_out"], 1_800_000);
        assert_eq!(flows[1]["duration_s"], 60.0);
        // Allowed countries never raise, whatever the volume.
        let us = geo("US", 15169, "Google LLC");
        assert!(
            feed(
                &mut d,
                &upload(3, "8.8.8.8", 900_000_000, 60),
                900_000_000,
                &us,
                None
            )
            .is_empty()
        );
    }

    #[test]
    fn one_finding_per_host_and_country_per_window() {
        let mut d = GeoUnusualDetector::new(policy(&["DE"]));
        let cn = geo("CN", 4134, "Chinanet");
        let mut found = 0;
        for i in 0..5 {
            let u = upload(10 + i, "202.97.1.1", 3_000_000, 60);
            found += feed(&mut d, &u, 3_000_000, &cn, None).len();
        }
        assert_eq!(found, 1);
        // A long flow still uploading in the next window raises again (once).
        let mut out = Vec::new();
        d.window(&closed(), &mut out);
        assert!(out.is_empty());
        let mut interim = upload(10, "202.97.1.1", 9_000_000, 1000);
        interim.kind = UpdateKind::Interim;
        assert_eq!(feed(&mut d, &interim, 6_000_000, &cn, None).len(), 1);
        // An update that moved no bytes in this window says nothing.
        let mut d = GeoUnusualDetector::new(policy(&["DE"]));
        assert!(feed(&mut d, &interim, 0, &cn, None).is_empty());
    }

    #[test]
    fn never_seen_country_needs_history_and_volume() {
        let nl = geo("NL", 14907, "Wikimedia Foundation Inc.");
        let warm = history(96);
        // 12 MB to a country this host never used, after 96 windows of history.
        let mut d = GeoUnusualDetector::new(GeoUnusualConfig::default());
        let u = upload(20, "91.198.174.192", 12_000_000, 240);
        let found = feed(&mut d, &u, 12_000_000, &nl, Some(&warm));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].strength, 45);
        assert_eq!(found[0].country.as_deref(), Some("NL"));
        assert_eq!(found[0].duration_s, 240.0);
        assert_eq!(
            found[0].summary,
            "sent 12.0 MB to NL, a country it never sent to in 96 windows, via \
             91.198.174.192:443, AS14907 Wikimedia Foundation Inc."
        );
        assert_eq!(found[0].evidence["countries_seen_before"], 2);

        // Below new_destination_min_bytes_out: nothing.
        let mut d = GeoUnusualDetector::new(GeoUnusualConfig::default());
        let u = upload(21, "91.198.174.192", 9_000_000, 240);
        assert!(feed(&mut d, &u, 9_000_000, &nl, Some(&warm)).is_empty());

        // A host with 3 windows of history (< min_history_windows 4), or none: everything is new.
        let young = history(3);
        let u = upload(22, "91.198.174.192", 50_000_000, 240);
        let mut d = GeoUnusualDetector::new(GeoUnusualConfig::default());
        assert!(feed(&mut d, &u, 50_000_000, &nl, Some(&young)).is_empty());
        assert!(feed(&mut d, &u, 50_000_000, &nl, None).is_empty());

        // A known country and ASN: nothing.
        let de = geo("DE", 3320, "Deutsche Telekom AG");
        let u = upload(23, "80.156.1.1", 500_000_000, 240);
        assert!(feed(&mut d, &u, 500_000_000, &de, Some(&warm)).is_empty());
    }

    #[test]
    fn never_seen_asn_in_a_known_country() {
        let warm = history(10);
        let mut d = GeoUnusualDetector::new(GeoUnusualConfig::default());
        let hetzner = geo("DE", 24940, "Hetzner Online GmbH");
        let u = upload(30, "88.198.1.2", 25_000_000, 600);
        let found = feed(&mut d, &u, 25_000_000, &hetzner, Some(&warm));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].strength, 40);
        assert_eq!(found[0].asn, Some(24940));
        assert_eq!(found[0].country.as_deref(), Some("DE"));
        assert_eq!(found[0].evidence["kind"], "new_asn");
        assert_eq!(
            found[0].summary,
            "sent 25.0 MB to AS24940 Hetzner Online GmbH, a network it never sent to in 10 \
             windows, via 88.198.1.2:443 (DE)"
        );
        // A new country with a new ASN is one country finding, not two.
        let mut d = GeoUnusualDetector::new(GeoUnusualConfig::default());
        let ru = geo("RU", 49505, "JSC Selectel");
        let found = feed(
            &mut d,
            &upload(31, "95.213.4.10", 30_000_000, 60),
            30_000_000,
            &ru,
            Some(&warm),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].evidence["kind"], "new_country");
    }

    #[test]
    fn policy_wins_over_never_seen_and_unknown_country_is_no_policy_breach() {
        let warm = history(10);
        let mut d = GeoUnusualDetector::new(policy(&["DE", "US"]));
        let ru = geo("RU", 49505, "JSC Selectel");
        let found = feed(
            &mut d,
            &upload(40, "95.213.4.10", 30_000_000, 60),
            30_000_000,
            &ru,
            Some(&warm),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].strength, 55);
        // No country in the databases: the policy cannot judge it; a new ASN still counts.
        let unknown = GeoInfo {
            country: None,
            asn: Some(64_512),
            as_org: None,
        };
        let found = feed(
            &mut d,
            &upload(41, "203.0.113.9", 30_000_000, 60),
            30_000_000,
            &unknown,
            Some(&warm),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].evidence["kind"], "new_asn");
        assert!(
            found[0].summary.contains("AS64512, a network"),
            "{}",
            found[0].summary
        );
        assert!(
            found[0].summary.ends_with("(unknown country)"),
            "{}",
            found[0].summary
        );
        // No geo at all (databases missing): nothing, ever.
        let none = GeoInfo::default();
        assert!(
            feed(
                &mut d,
                &upload(42, "203.0.113.10", 900_000_000, 60),
                900_000_000,
                &none,
                Some(&warm)
            )
            .is_empty()
        );
    }

    #[test]
    fn disabled_and_state_bounded() {
        let mut d = GeoUnusualDetector::new(GeoUnusualConfig {
            enabled: false,
            ..policy(&["DE"])
        });
        let ru = geo("RU", 49505, "JSC Selectel");
        assert!(
            feed(
                &mut d,
                &upload(50, "95.213.4.10", 30_000_000, 60),
                30_000_000,
                &ru,
                None
            )
            .is_empty()
        );

        let mut d = GeoUnusualDetector::new(policy(&["DE"]));
        for i in 0..MAX_TRACKED as u32 + 10 {
            d.pairs.insert(
                (IpAddr::from([10, 0, (i >> 8) as u8, i as u8]), Key::Asn(i)),
                Pair::default(),
            );
        }
        assert!(
            feed(
                &mut d,
                &upload(51, "95.213.4.10", 30_000_000, 60),
                30_000_000,
                &ru,
                None
            )
            .is_empty()
        );
        assert_eq!(d.evicted(), 1);
        d.window(&closed(), &mut Vec::new());
        assert_eq!(d.pairs.len(), 0);
        assert_eq!(
            feed(
                &mut d,
                &upload(52, "95.213.4.10", 30_000_000, 60),
                30_000_000,
                &ru,
                None
            )
            .len(),
            1
        );
    }

    /// Through the engine: the geo databases' country and ASN reach the alert.
    #[test]
    fn country_and_asn_reach_the_alert() {
        let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/geo");
        let mut config = crate::config::Config::default();
        config.geo.country_db = data.join("country-test.mmdb");
        config.geo.asn_db = data.join("asn-test.mmdb");
        config.detectors.geo_unusual.allowed_countries = vec![cc("DE")];
        let mut engine = crate::detect::engine::Engine::new(&config).unwrap();
        engine.flow_update(&upload(60, "8.8.8.8", 5_000_000, 120));
        let alerts = engine.close_window();
        let alert = alerts
            .iter()
            .find(|a| a.detection_branch == "GeoUnusual")
            .unwrap();
        assert_eq!(alert.host, HOST.parse::<IpAddr>().unwrap());
        assert_eq!(alert.country.as_deref(), Some("US"));
        assert_eq!(alert.asn, Some(15169));
        assert!(
            alert.reason.contains("AS15169 Google LLC"),
            "{}",
            alert.reason
        );
    }
}
