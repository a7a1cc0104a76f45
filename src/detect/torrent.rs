//! TorrentSeeding (AN0081): BitTorrent peer wire, DHT or uTP with many peers and upload at
//! least download.
//!
//! Flows carry the BITTORRENT service bit when the flow table saw a peer-wire handshake, a
//! bencoded DHT (KRPC) message or a uTP header. Per host and window this counts the distinct
//! outside peers and the bytes each way, and decides when the window closes.
use super::windows::ClosedWindow;
use super::{Branch, Detector, Finding, FlowView, human_bytes};
use crate::decode::packet::ip_proto;
use crate::enrich::geo::CountryCode;
use crate::flow::key::Uid;
use crate::flow::update::service;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

const BASE_STRENGTH: u8 = 60;
const UPLOAD_BONUS: u8 = 10;
const OFF_HOURS_BONUS: u8 = 5;
/// Example flows kept per host for the evidence.
const MAX_EXAMPLES: usize = 10;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TorrentConfig {
    pub enabled: bool,
    /// Distinct outside peers with BitTorrent flows in one window.
    pub min_peers: u64,
    /// Bytes sent over BitTorrent flows in one window.
    pub min_bytes_out: u64,
    /// Bytes sent must be at least this many times bytes received (seeding, not leeching).
    pub min_upload_ratio: f64,
    /// Sending at least this many times what was received adds weight.
    pub strong_upload_ratio: f64,
    /// Share of the window's BitTorrent egress outside business hours that adds weight.
    pub off_hours_share: f64,
    /// A flow that moved fewer bytes than this (both ways, so far) is DHT or handshake chatter;
    /// its peer counts as a peer but not as one that exchanged data.
    pub data_flow_min_bytes: u64,
    /// Peers remembered exactly per host and window; beyond it only flows opened to unlisted
    /// peers are counted.
    pub max_peers_per_host: usize,
    /// Hosts tracked per window; beyond it the host that sent least is dropped (counted).
    pub max_hosts: usize,
}

impl Default for TorrentConfig {
    fn default() -> Self {
        TorrentConfig {
            enabled: true,
            min_peers: 10,
            min_bytes_out: 10_000_000,
            min_upload_ratio: 1.0,
            strong_upload_ratio: 2.0,
            off_hours_share: 0.5,
            data_flow_min_bytes: 16_384,
            max_peers_per_host: 300,
            max_hosts: 4096,
        }
    }
}

/// One BitTorrent flow of a host, as evidence (bytes are the flow's totals so far).
#[derive(Debug, Clone)]
struct Example {
    uid: Uid,
    peer: IpAddr,
    port: u16,
    proto: u8,
    inbound: bool,
    bytes_out: u64,
    bytes_in: u64,
    country: Option<CountryCode>,
    asn: Option<u32>,
}

/// A host's BitTorrent activity in the open window.
#[derive(Debug)]
struct HostTorrent {
    peers: BTreeSet<IpAddr>,
    /// Peers with a flow that moved at least `data_flow_min_bytes`.
    data_peers: BTreeSet<IpAddr>,
    /// Flows opened in the window to peers beyond the exact set (a repeat peer counts again).
    peers_beyond_limit: u64,
    /// Flows that began in the window.
    flows_opened: u64,
    bytes_out: u64,
    bytes_in: u64,
    off_hours_bytes_out: u64,
    first_ns: u64,
    last_ns: u64,
    /// When the thresholds were first all met in this window.
    established_ns: Option<u64>,
    /// The heaviest flows by egress (approximate top: a newcomer replaces the lightest).
    examples: Vec<Example>,
}

impl HostTorrent {
    fn new(first_ns: u64) -> HostTorrent {
        HostTorrent {
            peers: BTreeSet::new(),
            data_peers: BTreeSet::new(),
            peers_beyond_limit: 0,
            flows_opened: 0,
            bytes_out: 0,
            bytes_in: 0,
            off_hours_bytes_out: 0,
            first_ns,
            last_ns: first_ns,
            established_ns: None,
            examples: Vec::new(),
        }
    }

    fn peer_count(&self) -> u64 {
        self.peers.len() as u64 + self.peers_beyond_limit
    }
}

pub struct TorrentDetector {
    config: TorrentConfig,
    hosts: BTreeMap<IpAddr, HostTorrent>,
    evicted: u64,
}

impl TorrentDetector {
    pub fn new(config: TorrentConfig) -> TorrentDetector {
        TorrentDetector {
            config,
            hosts: BTreeMap::new(),
            evicted: 0,
        }
    }

    /// Makes room for a new host by dropping the one that sent least (ties: lowest address).
    fn make_room(&mut self) {
        while !self.hosts.is_empty() && self.hosts.len() >= self.config.max_hosts.max(1) {
            let lightest = self
                .hosts
                .iter()
                .min_by_key(|(ip, h)| (h.bytes_out, **ip))
                .map(|(ip, _)| *ip);
            match lightest {
                Some(ip) => {
                    self.hosts.remove(&ip);
                    self.evicted += 1;
                }
                None => break,
            }
        }
    }

    fn finding(&self, host: IpAddr, h: &HostTorrent, closed: &ClosedWindow) -> Finding {
        let peers = h.peer_count();
        let strong = h.bytes_out as f64 >= h.bytes_in as f64 * self.config.strong_upload_ratio;
        let off_share = if h.bytes_out == 0 {
            0.0
        } else {
            h.off_hours_bytes_out as f64 / h.bytes_out as f64
        };
        let off_hours = h.off_hours_bytes_out > 0 && off_share >= self.config.off_hours_share;
        let mut strength = BASE_STRENGTH;
        if strong {
            strength += UPLOAD_BONUS;
        }
        if off_hours {
            strength += OFF_HOURS_BONUS;
        }
        let dht_only = h.peers.len().saturating_sub(h.data_peers.len()) as u64;
        let received = if h.bytes_in == 0 {
            "nothing received".to_string()
        } else {
            format!("{:.1}x received", h.bytes_out as f64 / h.bytes_in as f64)
        };
        let mut summary = format!(
            "seeded BitTorrent to {}{peers} peers, sent {} ({received})",
            if h.peers_beyond_limit > 0 {
                "about "
            } else {
                ""
            },
            human_bytes(h.bytes_out),
        );
        if dht_only > 0 {
            summary.push_str(&format!(", {dht_only} of the peers DHT only"));
        }
        if off_hours {
            summary.push_str(&format!(", {:.0}% off-hours", off_share * 100.0));
        }
        let mut examples = h.examples.clone();
        examples.sort_by(|a, b| b.bytes_out.cmp(&a.bytes_out).then(a.uid.cmp(&b.uid)));
        let top = examples.first();
        let start = h.first_ns.max(closed.start_ns);
        Finding {
            branch: Branch::TorrentSeeding,
            host,
            ts_ns: h.established_ns.unwrap_or(closed.start_ns),
            strength,
            destination: top.map(|e| (e.peer, e.port)),
            destination_name: None,
            bytes_out: h.bytes_out,
            bytes_in: h.bytes_in,
            duration_s: h.last_ns.saturating_sub(start) as f64 / 1e9,
            country: top.and_then(|e| e.country).map(|c| c.to_string()),
            asn: top.and_then(|e| e.asn),
            summary,
            evidence: json!({
                "peers": peers,
                "peers_exact": h.peers_beyond_limit == 0,
                "data_peers": h.data_peers.len(),
                "dht_only_peers": dht_only,
                "flows_opened": h.flows_opened,
                "bytes_out": h.bytes_out,
                "bytes_in": h.bytes_in,
                "off_hours_bytes_out": h.off_hours_bytes_out,
                "flows_by_egress": examples.iter().map(|e| json!({
                    "uid": e.uid.to_string(),
                    "peer": format!("{}:{}", e.peer, e.port),
                    "proto": proto_name(e.proto),
                    "inbound": e.inbound,
                    "flow_bytes_out": e.bytes_out,
                    "flow_bytes_in": e.bytes_in,
                    "country": e.country.map(|c| c.to_string()),
                    "asn": e.asn,
                })).collect::<Vec<_>>(),
            }),
        }
    }
}

impl Detector for TorrentDetector {
    fn reconfigure(&mut self, config: &crate::config::DetectorsConfig) {
        self.config = config.torrent.clone();
    }
    fn flow(&mut self, view: &FlowView<'_>, _out: &mut Vec<Finding>) {
        let u = view.update;
        if !self.config.enabled || !view.host_inside || u.services & service::BITTORRENT == 0 {
            return;
        }
        if !self.hosts.contains_key(&u.inside) {
            self.make_room();
        }
        let max_peers = self.config.max_peers_per_host;
        let data_min = self.config.data_flow_min_bytes;
        let h = self
            .hosts
            .entry(u.inside)
            .or_insert_with(|| HostTorrent::new(u.first_ns));
        h.first_ns = h.first_ns.min(u.first_ns);
        h.last_ns = h.last_ns.max(u.last_ns);
        h.flows_opened += u64::from(view.first_update);
        let known = h.peers.contains(&u.outside);
        if !known {
            if h.peers.len() < max_peers {
                h.peers.insert(u.outside);
            } else if view.first_update {
                h.peers_beyond_limit += 1;
            }
        }
        // A subset of `peers`, so bounded by it.
        if u.bytes_out.saturating_add(u.bytes_in) >= data_min && h.peers.contains(&u.outside) {
            h.data_peers.insert(u.outside);
        }
        let d = view.delta;
        h.bytes_out = h.bytes_out.saturating_add(d.bytes_out);
        h.bytes_in = h.bytes_in.saturating_add(d.bytes_in);
        if view.off_hours {
            h.off_hours_bytes_out = h.off_hours_bytes_out.saturating_add(d.bytes_out);
        }
        note_example(&mut h.examples, view);
        if h.established_ns.is_none() && seeding(&self.config, h) {
            h.established_ns = Some(u.last_ns);
        }
    }

    fn window(&mut self, closed: &ClosedWindow, out: &mut Vec<Finding>) {
        // Each window is judged on its own: the state starts empty again.
        let hosts = std::mem::take(&mut self.hosts);
        for (host, h) in &hosts {
            if seeding(&self.config, h) {
                out.push(self.finding(*host, h, closed));
            }
        }
    }

    fn evicted(&self) -> u64 {
        self.evicted
    }
}

fn proto_name(proto: u8) -> String {
    match proto {
        ip_proto::TCP => "tcp".to_string(),
        ip_proto::UDP => "udp".to_string(),
        other => other.to_string(),
    }
}

fn seeding(config: &TorrentConfig, h: &HostTorrent) -> bool {
    h.peer_count() >= config.min_peers
        && h.bytes_out >= config.min_bytes_out
        && h.bytes_out as f64 >= h.bytes_in as f64 * config.min_upload_ratio
}

fn note_example(examples: &mut Vec<Example>, view: &FlowView<'_>) {
    let u = view.update;
    // Counters are cumulative, so a flow's latest update ranks it by everything it sent.
    if let Some(e) = examples.iter_mut().find(|e| e.uid == u.uid) {
        e.bytes_out = u.bytes_out;
        e.bytes_in = u.bytes_in;
        return;
    }
    let new = Example {
        uid: u.uid,
        peer: u.outside,
        port: u.outside_port,
        proto: u.proto,
        inbound: u.inbound,
        bytes_out: u.bytes_out,
        bytes_in: u.bytes_in,
        country: view.geo.country,
        asn: view.geo.asn,
    };
    if examples.len() < MAX_EXAMPLES {
        examples.push(new);
    } else if let Some(lightest) = examples.iter_mut().min_by_key(|e| e.bytes_out)
        && lightest.bytes_out < new.bytes_out
    {
        *lightest = new;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::packet::ip_proto::{TCP, UDP};
    use crate::detect::Delta;
    use crate::enrich::geo::GeoInfo;
    use crate::flow::update::{FlowUpdate, UpdateKind};

    const NS: u64 = 1_000_000_000;
    const MB: u64 = 1_000_000;
    /// 2024-03-05 14:00 UTC, a window start.
    const T0: u64 = 1_709_647_200 * NS;
    const W: u64 = 900 * NS;
    const SEEDER: [u8; 4] = [192, 168, 1, 23];

    struct Flow {
        uid: u64,
        proto: u8,
        inside: [u8; 4],
        peer: IpAddr,
        port: u16,
        services: u8,
        first_ns: u64,
    }

    fn flow(uid: u64, proto: u8, peer: u32) -> Flow {
        Flow {
            uid,
            proto,
            inside: SEEDER,
            // Peers scattered over residential ranges.
            peer: IpAddr::V4(std::net::Ipv4Addr::from(0x5100_0000u32 + peer * 7919)),
            port: 6881 + (peer % 50) as u16,
            services: service::BITTORRENT,
            first_ns: T0 + u64::from(peer) * NS,
        }
    }

    /// Feeds one update of `f` with cumulative totals and the delta since its previous update.
    fn feed(
        d: &mut TorrentDetector,
        f: &Flow,
        at_ns: u64,
        total: (u64, u64),
        delta: (u64, u64),
        first_update: bool,
        off_hours: bool,
    ) {
        let geo = GeoInfo {
            country: CountryCode::parse("DE"),
            asn: Some(3320),
            as_org: None,
        };
        let update = FlowUpdate {
            uid: Uid(f.uid),
            kind: UpdateKind::Interim,
            proto: f.proto,
            inside: IpAddr::from(f.inside),
            inside_port: 51413,
            outside: f.peer,
            outside_port: f.port,
            inbound: f.proto == TCP,
            first_ns: f.first_ns,
            last_ns: at_ns,
            bytes_out: total.0,
            bytes_in: total.1,
            pkts_out: total.0 / 1400,
            pkts_in: total.1 / 1400,
            answered: true,
            conn_state: "S1",
            services: f.services,
            names: None,
        };
        let view = FlowView {
            update: &update,
            delta: Delta {
                bytes_out: delta.0,
                bytes_in: delta.1,
                pkts_out: delta.0 / 1400,
                pkts_in: delta.1 / 1400,
            },
            // Not read by this detector.
            delta_since_ns: update.first_ns,
            first_update,
            geo: &geo,
            allowlisted: false,
            history: None,
            off_hours,
            // 192.168/16 is inside; the documentation range 198.51.100/24 is not.
            host_inside: f.inside.starts_with(&[192, 168]),
            host_allowlisted: false,
        };
        let mut out = Vec::new();
        d.flow(&view, &mut out);
        assert!(out.is_empty(), "torrent decides at window close only");
    }

    /// Sends `out`/`in_` over `f` in two updates (an interim at half, then the rest).
    fn transfer(d: &mut TorrentDetector, f: &Flow, out: u64, in_: u64, off_hours: bool) {
        let half = (out / 2, in_ / 2);
        feed(d, f, f.first_ns + 200 * NS, half, half, true, off_hours);
        let rest = (out - half.0, in_ - half.1);
        feed(
            d,
            f,
            f.first_ns + 400 * NS,
            (out, in_),
            rest,
            false,
            off_hours,
        );
    }

    fn close(d: &mut TorrentDetector, i: u64) -> Vec<Finding> {
        let closed = ClosedWindow {
            start_ns: T0 + i * W,
            end_ns: T0 + (i + 1) * W,
            population_p90_bytes_out: None,
            population_scope: crate::detect::windows::PopulationScope::Site,
            hosts: Vec::new(),
        };
        let mut out = Vec::new();
        d.window(&closed, &mut out);
        out
    }

    /// 40 peers pulling pieces over the peer wire, plus 8 DHT nodes answering queries.
    fn seed(d: &mut TorrentDetector, off_hours: bool) {
        for p in 0..40 {
            let f = flow(100 + u64::from(p), TCP, p);
            // Piece uploads; the heaviest peers take more.
            let out = 50 * MB + u64::from(p) * 375_000;
            transfer(d, &f, out, out * 10 / 31, off_hours);
        }
        for p in 40..48 {
            let f = flow(100 + u64::from(p), UDP, p);
            transfer(d, &f, 300, 700, off_hours);
        }
    }

    #[test]
    fn seeding_host_raises_with_peers_bytes_and_examples() {
        let mut d = TorrentDetector::new(TorrentConfig::default());
        seed(&mut d, false);
        let f = close(&mut d, 0);
        assert_eq!(f.len(), 1);
        let f = &f[0];
        assert_eq!(f.branch, Branch::TorrentSeeding);
        assert_eq!(f.host, IpAddr::from(SEEDER));
        assert_eq!(f.bytes_out, 2_292_500_000 + 8 * 300);
        // 60 + 10 for sending over twice what it received; not off-hours.
        assert_eq!(f.strength, 70);
        assert_eq!(
            f.summary,
            "seeded BitTorrent to 48 peers, sent 2.3 GB (3.1x received), 8 of the peers DHT only"
        );
        assert_eq!(f.evidence["peers"], 48);
        assert_eq!(f.evidence["data_peers"], 40);
        assert_eq!(f.evidence["dht_only_peers"], 8);
        assert_eq!(f.evidence["flows_opened"], 48);
        let examples = f.evidence["flows_by_egress"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(examples.len(), MAX_EXAMPLES);
        // The heaviest peer (the 40th) leads and is the finding's destination.
        let heaviest = flow(139, TCP, 39);
        assert_eq!(f.destination, Some((heaviest.peer, heaviest.port)));
        assert_eq!(examples[0]["flow_bytes_out"], 50 * MB + 39 * 375_000);
        assert_eq!(examples[0]["uid"], Uid(139).to_string());
        // Exactly the ten heaviest flows, although they were split over interim updates.
        assert_eq!(examples[9]["flow_bytes_out"], 50 * MB + 30 * 375_000);
        assert_eq!(f.country.as_deref(), Some("DE"));
        assert_eq!(f.asn, Some(3320));
        // Established at the 10th peer's first update (the first time all tests held).
        let tenth = flow(109, TCP, 9);
        assert_eq!(f.ts_ns, tenth.first_ns + 200 * NS);
        // State is per window: the next window starts empty.
        assert!(close(&mut d, 1).is_empty());
    }

    #[test]
    fn off_hours_seeding_weighs_more() {
        let mut d = TorrentDetector::new(TorrentConfig::default());
        seed(&mut d, true);
        let f = close(&mut d, 0);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].strength, 75);
        assert!(
            f[0].summary.ends_with(", 100% off-hours"),
            "{}",
            f[0].summary
        );
    }

    #[test]
    fn leeching_is_not_seeding() {
        // Downloading a Linux ISO from 60 peers: 1.5 GB in, 90 MB out.
        let mut d = TorrentDetector::new(TorrentConfig::default());
        for p in 0..60 {
            transfer(
                &mut d,
                &flow(u64::from(p), TCP, p),
                1_500_000,
                25 * MB,
                false,
            );
        }
        assert!(close(&mut d, 0).is_empty());
    }

    #[test]
    fn dht_only_activity_does_not_raise() {
        // A client idling in the DHT: 150 nodes, a few hundred bytes each.
        let mut d = TorrentDetector::new(TorrentConfig::default());
        for p in 0..150 {
            transfer(&mut d, &flow(u64::from(p), UDP, p), 450, 1100, true);
        }
        assert!(close(&mut d, 0).is_empty());
    }

    #[test]
    fn few_peers_or_little_data_is_not_seeding() {
        // A large upload to 3 peers.
        let mut d = TorrentDetector::new(TorrentConfig::default());
        for p in 0..3 {
            transfer(&mut d, &flow(u64::from(p), TCP, p), 400 * MB, MB, false);
        }
        assert!(close(&mut d, 0).is_empty());
        // 30 peers but only 6 MB sent.
        for p in 0..30 {
            transfer(&mut d, &flow(u64::from(p), TCP, p), 200_000, 100_000, false);
        }
        assert!(close(&mut d, 0).is_empty());
    }

    #[test]
    fn only_bittorrent_flows_of_inside_hosts_count() {
        let mut d = TorrentDetector::new(TorrentConfig::default());
        for p in 0..40 {
            let mut f = flow(u64::from(p), TCP, p);
            f.services = service::SSL;
            transfer(&mut d, &f, 50 * MB, MB, false);
            let mut g = flow(1000 + u64::from(p), TCP, p);
            g.inside = [198, 51, 100, 7];
            transfer(&mut d, &g, 50 * MB, MB, false);
        }
        assert!(close(&mut d, 0).is_empty());
    }

    #[test]
    fn activity_split_across_windows_is_judged_per_window() {
        let mut d = TorrentDetector::new(TorrentConfig::default());
        for p in 0..6 {
            transfer(&mut d, &flow(u64::from(p), TCP, p), 20 * MB, MB, false);
        }
        assert!(close(&mut d, 0).is_empty());
        for p in 6..12 {
            transfer(&mut d, &flow(u64::from(p), TCP, p), 20 * MB, MB, false);
        }
        assert!(close(&mut d, 1).is_empty());
    }

    #[test]
    fn config_thresholds_are_used() {
        let strict = TorrentConfig {
            min_peers: 60,
            ..TorrentConfig::default()
        };
        let mut d = TorrentDetector::new(strict);
        seed(&mut d, false);
        assert!(close(&mut d, 0).is_empty());
        let ratio = TorrentConfig {
            min_upload_ratio: 4.0,
            ..TorrentConfig::default()
        };
        let mut d = TorrentDetector::new(ratio);
        seed(&mut d, false);
        assert!(close(&mut d, 0).is_empty());
        let disabled = TorrentConfig {
            enabled: false,
            ..TorrentConfig::default()
        };
        let mut d = TorrentDetector::new(disabled);
        seed(&mut d, false);
        assert!(close(&mut d, 0).is_empty());
    }

    #[test]
    fn peers_beyond_the_exact_set_are_counted() {
        let config = TorrentConfig {
            max_peers_per_host: 20,
            ..TorrentConfig::default()
        };
        let mut d = TorrentDetector::new(config);
        for p in 0..50 {
            transfer(&mut d, &flow(u64::from(p), TCP, p), 2 * MB, 500_000, false);
        }
        let f = close(&mut d, 0);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].evidence["peers"], 50);
        assert_eq!(f[0].evidence["peers_exact"], false);
        assert!(
            f[0].summary
                .starts_with("seeded BitTorrent to about 50 peers, sent 100.0 MB (4.0x received)")
        );
    }

    #[test]
    fn hosts_are_bounded_with_counted_eviction() {
        let config = TorrentConfig {
            max_hosts: 2,
            ..TorrentConfig::default()
        };
        let mut d = TorrentDetector::new(config);
        // Three seeders; the one that has sent least when the third appears is dropped.
        for (i, last) in [10u8, 11, 12].into_iter().enumerate() {
            for p in 0..12 {
                let mut f = flow(u64::from(last) * 100 + u64::from(p), TCP, p);
                f.inside = [192, 168, 1, last];
                transfer(&mut d, &f, (2 + i as u64) * MB, MB / 2, false);
            }
        }
        assert_eq!(d.evicted(), 1);
        let hosts: Vec<IpAddr> = close(&mut d, 0).iter().map(|f| f.host).collect();
        assert_eq!(
            hosts,
            vec![
                IpAddr::from([192, 168, 1, 11]),
                IpAddr::from([192, 168, 1, 12])
            ]
        );
    }
}
