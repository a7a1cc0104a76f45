//! LongLivedSession (MITRE DET0028 AN0080): a session to an outside address still open past
//! duration thresholds (10 min, 1 h, 4 h, 12 h by default), with meaningful upload. Raised while
//! the session is open: the flow table sends interim updates every active timeout and at each
//! window checkpoint, and every update is checked.
//!
//! Sessions: the updates of one flow share a uid, so a flow split by the active timeout is
//! already one session. Consecutive flows with the same (inside host, outside address, service
//! port, protocol) whose gap is below `stitch_gap_seconds` are stitched into one session too, so
//! an agent that reconnects, or an exporter that cuts records, still shows one long session.
//!
//! Inbound sessions (an outside client connected to an inside server) are service, not egress
//! hijacking: an SSH or VPN login or a web server's download is expected. They count only when
//! upload-heavy (the inside host sends `upload_ratio` times what it receives and at least
//! `heavy_upload_bytes`), the shape of a planted proxy or tunnel that outside users pull through.
//!
//! Scoring rationale with the defaults (the scorer alerts at 40): a 1-hour symmetric video call
//! in business hours scores 35 and does not alert; a 4-hour upload-heavy session scores 50 + 15
//! = 65; a 12-hour, mostly off-hours, upload-heavy session 65 + 15 + 10 = 90. One finding per
//! threshold crossed per session, so a day-long session raises at most four.
use super::windows::ClosedWindow;
use super::{Branch, Detector, Finding, FlowView, human_bytes, human_duration};
use crate::decode::packet::ip_proto;
use crate::flow::key::Uid;
use crate::flow::update::{FlowUpdate, UpdateKind};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};

const NS: u64 = 1_000_000_000;
/// Flow uids kept per session for the evidence.
const MAX_EXAMPLE_FLOWS: usize = 10;
/// Live flows one stitched session holds at once; a further flow starts a session of its own.
const MAX_LIVE_MEMBERS: usize = 8;
/// A reconnect may open a few seconds before the old connection's last FIN or RST is seen.
const STITCH_OVERLAP_NS: u64 = 5 * NS;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LongLivedConfig {
    pub enabled: bool,
    /// Session durations that raise a finding (DET0028 DurationThreshold), ascending.
    pub thresholds_seconds: Vec<u64>,
    /// Strength of the finding for each threshold, in the same order.
    pub tier_strengths: Vec<u8>,
    /// A session must have sent at least this much to count (DET0028 TrafficRateThreshold).
    pub min_upload_bytes: u64,
    /// Upload-heavy: bytes_out at least this many times bytes_in ...
    pub upload_ratio: f64,
    /// ... and at least this many bytes out.
    pub heavy_upload_bytes: u64,
    /// Added to an upload-heavy session's strength.
    pub upload_heavy_bonus: u8,
    /// Share of the session's observed lifetime off business hours above which it counts as
    /// off-hours (DET0028 TimeWindow).
    pub off_hours_share: f64,
    /// Added to a mostly off-hours session's strength.
    pub off_hours_bonus: u8,
    /// Consecutive flows of one host to the same address, port and protocol closer than this
    /// are one session.
    pub stitch_gap_seconds: u64,
    /// Sessions tracked at once; beyond it the least recently seen is evicted (counted).
    pub max_sessions: usize,
}

impl Default for LongLivedConfig {
    fn default() -> Self {
        LongLivedConfig {
            enabled: true,
            thresholds_seconds: vec![600, 3600, 14_400, 43_200],
            tier_strengths: vec![25, 35, 50, 65],
            min_upload_bytes: 1_000_000,
            upload_ratio: 3.0,
            heavy_upload_bytes: 10_000_000,
            upload_heavy_bonus: 15,
            off_hours_share: 0.5,
            off_hours_bonus: 10,
            stitch_gap_seconds: 60,
            max_sessions: 500_000,
        }
    }
}

/// What makes consecutive flows one session. The service port is the outside port for
/// outbound flows and the inside (listening) port for inbound ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct StitchKey {
    inside: IpAddr,
    outside: IpAddr,
    port: u16,
    proto: u8,
    inbound: bool,
}

impl StitchKey {
    fn of(u: &FlowUpdate<'_>) -> StitchKey {
        StitchKey {
            inside: u.inside,
            outside: u.outside,
            port: if u.inbound {
                u.inside_port
            } else {
                u.outside_port
            },
            proto: u.proto,
            inbound: u.inbound,
        }
    }
}

/// A live flow of a session, with its cumulative counters as of its latest update.
#[derive(Debug, Clone, Copy)]
struct Member {
    uid: Uid,
    bytes_out: u64,
    bytes_in: u64,
}

#[derive(Debug)]
struct Session {
    key: StitchKey,
    start_ns: u64,
    last_ns: u64,
    /// Bytes of member flows that have ended.
    finished_out: u64,
    finished_in: u64,
    live: Vec<Member>,
    flows: u64,
    examples: Vec<Uid>,
    name: Option<Box<str>>,
    /// Time covered by updates so far, and the part of it off business hours.
    accounted_until_ns: u64,
    covered_ns: u64,
    off_hours_ns: u64,
    /// Thresholds already reported.
    tiers_reported: usize,
}

impl Session {
    fn bytes(&self) -> (u64, u64) {
        self.live
            .iter()
            .fold((self.finished_out, self.finished_in), |(o, i), m| {
                (o.saturating_add(m.bytes_out), i.saturating_add(m.bytes_in))
            })
    }
}

pub struct LongLivedDetector {
    config: LongLivedConfig,
    /// (threshold ns, strength), ascending by threshold.
    tiers: Vec<(u64, u8)>,
    sessions: FxHashMap<u64, Session>,
    by_uid: FxHashMap<Uid, u64>,
    /// The newest session per key: the one a following flow may continue.
    by_key: FxHashMap<StitchKey, u64>,
    /// (last seen, session id): eviction order.
    lru: BTreeSet<(u64, u64)>,
    /// Ended sessions still open to stitching, (last seen, id) in the order they ended.
    ended: VecDeque<(u64, u64)>,
    next_id: u64,
    evicted: u64,
}

impl LongLivedDetector {
    pub fn new(config: LongLivedConfig) -> LongLivedDetector {
        // A strength list shorter than the thresholds repeats its last value.
        let last = config.tier_strengths.last().copied().unwrap_or(0);
        let mut tiers: Vec<(u64, u8)> = config
            .thresholds_seconds
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let strength = config.tier_strengths.get(i).copied().unwrap_or(last);
                (s.saturating_mul(NS), strength)
            })
            .collect();
        tiers.sort_unstable();
        LongLivedDetector {
            config,
            tiers,
            sessions: FxHashMap::default(),
            by_uid: FxHashMap::default(),
            by_key: FxHashMap::default(),
            lru: BTreeSet::new(),
            ended: VecDeque::new(),
            next_id: 0,
            evicted: 0,
        }
    }

    /// Sessions currently tracked.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// The session a flow seen for the first time belongs to: the newest session of its key if
    /// the flow follows it closely, else a new one.
    fn attach(&mut self, u: &FlowUpdate<'_>, key: StitchKey) -> u64 {
        let gap_ns = self.config.stitch_gap_seconds.saturating_mul(NS);
        let follows = |s: &Session| {
            u.first_ns.saturating_add(STITCH_OVERLAP_NS) >= s.last_ns
                && u.first_ns.saturating_sub(s.last_ns) < gap_ns
                && s.live.len() < MAX_LIVE_MEMBERS
        };
        if let Some(&id) = self.by_key.get(&key)
            && let Some(s) = self.sessions.get_mut(&id).filter(|s| follows(s))
        {
            s.flows += 1;
            s.live.push(Member {
                uid: u.uid,
                bytes_out: 0,
                bytes_in: 0,
            });
            self.by_uid.insert(u.uid, id);
            return id;
        }
        if self.sessions.len() >= self.config.max_sessions.max(1)
            && let Some(&(_, oldest)) = self.lru.first()
        {
            self.remove(oldest);
            self.evicted += 1;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.sessions.insert(
            id,
            Session {
                key,
                start_ns: u.first_ns,
                last_ns: u.first_ns,
                finished_out: 0,
                finished_in: 0,
                live: vec![Member {
                    uid: u.uid,
                    bytes_out: 0,
                    bytes_in: 0,
                }],
                flows: 1,
                examples: Vec::new(),
                name: None,
                accounted_until_ns: u.first_ns,
                covered_ns: 0,
                off_hours_ns: 0,
                tiers_reported: 0,
            },
        );
        self.lru.insert((u.first_ns, id));
        self.by_uid.insert(u.uid, id);
        self.by_key.insert(key, id);
        id
    }

    fn remove(&mut self, id: u64) {
        let Some(s) = self.sessions.remove(&id) else {
            return;
        };
        self.lru.remove(&(s.last_ns, id));
        for m in &s.live {
            self.by_uid.remove(&m.uid);
        }
        if self.by_key.get(&s.key) == Some(&id) {
            self.by_key.remove(&s.key);
        }
    }

    /// Forgets ended sessions no flow can continue any more. Every flow is reported by the
    /// checkpoint of the window it began in at the latest, so once a window closes after an
    /// ended session's stitch gap, every flow that could continue it has been seen. (Expiring
    /// on update time instead would lose a reconnect after a silent drop: the old flow's final
    /// update comes an idle timeout after its last packet.)
    fn expire(&mut self, window_end_ns: u64) {
        let gap_ns = self.config.stitch_gap_seconds.saturating_mul(NS);
        while let Some(&(last_ns, id)) = self.ended.front() {
            if last_ns.saturating_add(gap_ns) >= window_end_ns {
                break;
            }
            self.ended.pop_front();
            // A session continued since it ended is queued again when it ends again.
            if self
                .sessions
                .get(&id)
                .is_some_and(|s| s.live.is_empty() && s.last_ns == last_ns)
            {
                self.remove(id);
            }
        }
    }

    fn finding(&self, s: &Session, view: &FlowView<'_>, tier: usize) -> Option<Finding> {
        let &(threshold_ns, tier_strength) = self.tiers.get(tier.checked_sub(1)?)?;
        let c = &self.config;
        let (bytes_out, bytes_in) = s.bytes();
        let heavy = bytes_out >= c.heavy_upload_bytes
            && bytes_out as f64 >= c.upload_ratio * bytes_in as f64;
        let off_share = if s.covered_ns == 0 {
            0.0
        } else {
            s.off_hours_ns as f64 / s.covered_ns as f64
        };
        let off_hours = s.covered_ns > 0 && off_share > c.off_hours_share;
        let mut strength = u32::from(tier_strength);
        if heavy {
            strength += u32::from(c.upload_heavy_bonus);
        }
        if off_hours {
            strength += u32::from(c.off_hours_bonus);
        }
        let duration_s = s.last_ns.saturating_sub(s.start_ns) as f64 / NS as f64;
        let proto = proto_label(s.key.proto);
        let name = s.name.as_deref();
        let named = name.map(|n| format!(" ({n})")).unwrap_or_default();
        let mut summary = if s.key.inbound {
            format!(
                "served an inbound {proto} session from {}{named} on port {} for {}, sent {} ({})",
                s.key.outside,
                s.key.port,
                human_duration(duration_s),
                human_bytes(bytes_out),
                ratio_text(bytes_out, bytes_in)
            )
        } else {
            format!(
                "kept {proto} {}{named} open {}, sent {} ({})",
                SocketAddr::new(s.key.outside, s.key.port),
                human_duration(duration_s),
                human_bytes(bytes_out),
                ratio_text(bytes_out, bytes_in)
            )
        };
        if off_hours {
            summary.push_str(", mostly off-hours");
        }
        if s.flows > 1 {
            summary.push_str(&format!(" over {} stitched connections", s.flows));
        }
        let u = view.update;
        Some(Finding {
            branch: Branch::LongLivedSession,
            host: s.key.inside,
            ts_ns: u.last_ns,
            strength: strength.min(100) as u8,
            destination: Some((s.key.outside, s.key.port)),
            destination_name: name.map(str::to_string),
            bytes_out,
            bytes_in,
            duration_s,
            country: view.geo.country.map(|c| c.to_string()),
            asn: view.geo.asn,
            summary,
            evidence: json!({
                "threshold_seconds": threshold_ns / NS,
                "duration_s": duration_s,
                "proto": proto,
                "inbound": s.key.inbound,
                "bytes_out": bytes_out,
                "bytes_in": bytes_in,
                "upload_heavy": heavy,
                "off_hours_share": (off_share * 100.0).round() / 100.0,
                "stitched_flows": s.flows,
                "open": u.kind == UpdateKind::Interim,
                "flows": s.examples.iter().map(ToString::to_string).collect::<Vec<_>>(),
            }),
        })
    }
}

impl Detector for LongLivedDetector {
    fn reconfigure(&mut self, config: &crate::config::DetectorsConfig) {
        let fresh = LongLivedDetector::new(config.long_lived.clone());
        self.config = fresh.config;
        self.tiers = fresh.tiers;
    }
    fn flow(&mut self, view: &FlowView<'_>, out: &mut Vec<Finding>) {
        if !self.config.enabled || !view.host_inside || view.host_allowlisted {
            return;
        }
        let u = view.update;
        let key = StitchKey::of(u);
        let id = match self.by_uid.get(&u.uid) {
            Some(&id) if self.sessions.contains_key(&id) => id,
            _ => self.attach(u, key),
        };
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        self.lru.remove(&(s.last_ns, id));
        s.start_ns = s.start_ns.min(u.first_ns);
        s.last_ns = s.last_ns.max(u.last_ns);
        self.lru.insert((s.last_ns, id));
        let member = match s.live.iter_mut().position(|m| m.uid == u.uid) {
            Some(i) => i,
            None => {
                s.live.push(Member {
                    uid: u.uid,
                    bytes_out: 0,
                    bytes_in: 0,
                });
                s.live.len() - 1
            }
        };
        if let Some(m) = s.live.get_mut(member) {
            m.bytes_out = m.bytes_out.max(u.bytes_out);
            m.bytes_in = m.bytes_in.max(u.bytes_in);
        }
        // Each update stands for the time since the session's previous one (about one active
        // timeout), judged by the update's own time of day.
        let span = u
            .last_ns
            .saturating_sub(s.accounted_until_ns.max(u.first_ns));
        s.covered_ns = s.covered_ns.saturating_add(span);
        if view.off_hours {
            s.off_hours_ns = s.off_hours_ns.saturating_add(span);
        }
        s.accounted_until_ns = s.accounted_until_ns.max(u.last_ns);
        if s.name.is_none() {
            s.name = u.name().map(Box::from);
        }
        if s.examples.len() < MAX_EXAMPLE_FLOWS && !s.examples.contains(&u.uid) {
            s.examples.push(u.uid);
        }
        if u.kind == UpdateKind::Final {
            if member < s.live.len() {
                let m = s.live.swap_remove(member);
                s.finished_out = s.finished_out.saturating_add(m.bytes_out);
                s.finished_in = s.finished_in.saturating_add(m.bytes_in);
            }
            self.by_uid.remove(&u.uid);
        }

        let duration_ns = s.last_ns.saturating_sub(s.start_ns);
        let reached = self.tiers.iter().take_while(|t| duration_ns >= t.0).count();
        let (bytes_out, bytes_in) = s.bytes();
        let heavy = bytes_out >= self.config.heavy_upload_bytes
            && bytes_out as f64 >= self.config.upload_ratio * bytes_in as f64;
        let qualifies = bytes_out >= self.config.min_upload_bytes && (!s.key.inbound || heavy);
        let ended = s.live.is_empty();
        let keyed = self.by_key.get(&key) == Some(&id);
        let last_ns = s.last_ns;
        if reached > s.tiers_reported && qualifies {
            s.tiers_reported = reached;
            if let Some(s) = self.sessions.get(&id)
                && let Some(f) = self.finding(s, view, reached)
            {
                out.push(f);
            }
        }
        if ended && keyed {
            self.ended.push_back((last_ns, id));
        } else if ended {
            // A newer session replaced it as its key's candidate: it can never grow again.
            self.remove(id);
        }
    }

    fn window(&mut self, closed: &ClosedWindow, _out: &mut Vec<Finding>) {
        self.expire(closed.end_ns);
    }

    fn evicted(&self) -> u64 {
        self.evicted
    }
}

fn proto_label(proto: u8) -> String {
    match proto {
        ip_proto::TCP => "TCP".to_string(),
        ip_proto::UDP => "UDP".to_string(),
        p => format!("IP proto {p}"),
    }
}

/// "38x received", "1.1x received", "nothing received".
pub(crate) fn ratio_text(bytes_out: u64, bytes_in: u64) -> String {
    if bytes_in == 0 {
        return "nothing received".to_string();
    }
    let r = bytes_out as f64 / bytes_in as f64;
    if r >= 10.0 {
        format!("{r:.0}x received")
    } else {
        format!("{r:.1}x received")
    }
}

/// Builds flow updates and feeds them to a detector the way the engine does (deltas, first
/// update), for the detectors' unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use super::super::windows::ClosedWindow;
    use super::super::{Delta, Detector, Finding, FlowView};
    use crate::enrich::geo::GeoInfo;
    use crate::flow::key::Uid;
    use crate::flow::update::{FlowUpdate, UpdateKind};
    use rustc_hash::FxHashMap;

    use super::NS;
    /// Tuesday 2024-03-05 10:00:00 UTC: business hours.
    pub const T0: u64 = 1_709_632_800 * NS;
    pub const HOST: &str = "10.1.2.3";

    pub fn at(seconds: f64) -> u64 {
        T0 + (seconds * NS as f64) as u64
    }

    /// One update of an outbound flow from HOST; counters cumulative.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        uid: u64,
        proto: u8,
        outside: &str,
        port: u16,
        first_s: f64,
        last_s: f64,
        bytes_out: u64,
        bytes_in: u64,
        kind: UpdateKind,
    ) -> FlowUpdate<'static> {
        FlowUpdate {
            uid: Uid(uid),
            kind,
            proto,
            inside: HOST.parse().unwrap(),
            inside_port: 40_000 + (uid % 20_000) as u16,
            outside: outside.parse().unwrap(),
            outside_port: port,
            inbound: false,
            first_ns: at(first_s),
            last_ns: at(last_s),
            bytes_out,
            bytes_in,
            pkts_out: bytes_out / 1200 + 1,
            pkts_in: bytes_in / 1200 + 1,
            answered: true,
            conn_state: if kind == UpdateKind::Final {
                "SF"
            } else {
                "S1"
            },
            services: 0,
            names: None,
        }
    }

    /// A flow's updates every `step_s` from `start_s` for `duration_s` at constant rates
    /// (bytes per second), ending with a final update when `ends`.
    #[allow(clippy::too_many_arguments)]
    pub fn session(
        uid: u64,
        proto: u8,
        outside: &str,
        port: u16,
        start_s: f64,
        duration_s: f64,
        step_s: f64,
        rate_out: f64,
        rate_in: f64,
        ends: bool,
    ) -> Vec<FlowUpdate<'static>> {
        let mut out = Vec::new();
        let mut t = step_s;
        while t < duration_s {
            out.push(update(
                uid,
                proto,
                outside,
                port,
                start_s,
                start_s + t,
                (rate_out * t) as u64,
                (rate_in * t) as u64,
                UpdateKind::Interim,
            ));
            t += step_s;
        }
        out.push(update(
            uid,
            proto,
            outside,
            port,
            start_s,
            start_s + duration_s,
            (rate_out * duration_s) as u64,
            (rate_in * duration_s) as u64,
            if ends {
                UpdateKind::Final
            } else {
                UpdateKind::Interim
            },
        ));
        out
    }

    /// Plays updates into a detector as the engine would.
    #[derive(Default)]
    pub struct Feeder {
        pub reported: FxHashMap<Uid, (u64, u64)>,
        pub geo: GeoInfo,
        pub off_hours: bool,
        pub findings: Vec<Finding>,
    }

    impl Feeder {
        pub fn feed(&mut self, detector: &mut dyn Detector, u: &FlowUpdate<'_>) {
            let previous = if u.kind == UpdateKind::Final {
                self.reported.remove(&u.uid)
            } else {
                self.reported.insert(u.uid, (u.bytes_out, u.bytes_in))
            };
            let (out0, in0) = previous.unwrap_or((0, 0));
            let view = FlowView {
                update: u,
                delta: Delta {
                    bytes_out: u.bytes_out.saturating_sub(out0),
                    bytes_in: u.bytes_in.saturating_sub(in0),
                    pkts_out: 0,
                    pkts_in: 0,
                },
                first_update: previous.is_none(),
                geo: &self.geo,
                allowlisted: false,
                history: None,
                off_hours: self.off_hours,
                host_inside: true,
                host_allowlisted: false,
            };
            detector.flow(&view, &mut self.findings);
        }

        /// Feeds updates in event-time order.
        pub fn feed_all(&mut self, detector: &mut dyn Detector, updates: &[FlowUpdate<'_>]) {
            let mut sorted: Vec<&FlowUpdate<'_>> = updates.iter().collect();
            sorted.sort_by_key(|u| (u.last_ns, u.uid));
            for u in sorted {
                self.feed(detector, u);
            }
        }

        pub fn close(&mut self, detector: &mut dyn Detector, start_s: f64, end_s: f64) {
            let closed = ClosedWindow {
                start_ns: at(start_s),
                end_ns: at(end_s),
                population_p90_bytes_out: None,
                hosts: Vec::new(),
            };
            detector.window(&closed, &mut self.findings);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    use crate::flow::update::FlowNames;

    const TCP: u8 = ip_proto::TCP;
    const UDP: u8 = ip_proto::UDP;

    fn strengths(findings: &[Finding]) -> Vec<u8> {
        findings.iter().map(|f| f.strength).collect()
    }

    #[test]
    fn video_call_of_an_hour_in_business_hours_stays_below_the_alert_score() {
        // 1 h of symmetric UDP at 2.5 Mbit/s each way, interim updates every 5 min.
        let mut d = LongLivedDetector::new(LongLivedConfig::default());
        let mut feeder = Feeder::default();
        let call = session(
            1,
            UDP,
            "198.51.100.20",
            8801,
            0.0,
            3630.0,
            300.0,
            312_500.0,
            330_000.0,
            true,
        );
        feeder.feed_all(&mut d, &call);
        // The 10 min and 1 h thresholds, once each; neither reaches the scorer's 40.
        assert_eq!(strengths(&feeder.findings), vec![25, 35]);
        let f = &feeder.findings[1];
        assert_eq!(
            f.summary,
            "kept UDP 198.51.100.20:8801 open 1.0 h, sent 1.1 GB (0.9x received)"
        );
        assert_eq!(f.evidence["threshold_seconds"], 3600);
        assert_eq!(f.evidence["upload_heavy"], false);
    }

    #[test]
    fn upload_heavy_session_is_raised_at_each_threshold_while_open() {
        // 90 kB/s up, 2.37 kB/s down, still open after 4 h 5 min.
        let names = FlowNames {
            sni: Some("relay.example.net".into()),
            ..FlowNames::default()
        };
        let mut updates = session(
            7,
            TCP,
            "203.0.113.9",
            443,
            0.0,
            14_700.0,
            300.0,
            90_000.0,
            2_370.0,
            false,
        );
        for u in &mut updates {
            u.names = Some(&names);
        }
        let mut d = LongLivedDetector::new(LongLivedConfig::default());
        let mut feeder = Feeder::default();
        feeder.feed_all(&mut d, &updates);
        // 25 + 15, 35 + 15, 50 + 15: one per threshold, none on the other 46 updates.
        assert_eq!(strengths(&feeder.findings), vec![40, 50, 65]);
        let f = &feeder.findings[2];
        assert_eq!(
            f.summary,
            "kept TCP 203.0.113.9:443 (relay.example.net) open 4.0 h, sent 1.3 GB (38x received)"
        );
        assert_eq!(f.destination, Some(("203.0.113.9".parse().unwrap(), 443)));
        assert_eq!(f.destination_name.as_deref(), Some("relay.example.net"));
        assert_eq!(f.ts_ns, at(14_400.0));
        assert_eq!(f.bytes_out, 1_296_000_000);
        assert_eq!(f.evidence["open"], true);
        assert_eq!(f.evidence["flows"][0], Uid(7).to_string());
    }

    #[test]
    fn twelve_hours_off_hours_upload_heavy_scores_ninety() {
        let mut d = LongLivedDetector::new(LongLivedConfig::default());
        let mut feeder = Feeder {
            off_hours: true,
            ..Feeder::default()
        };
        let s = session(
            3,
            TCP,
            "192.0.2.44",
            8443,
            0.0,
            43_500.0,
            300.0,
            40_000.0,
            1_000.0,
            true,
        );
        feeder.feed_all(&mut d, &s);
        assert_eq!(strengths(&feeder.findings), vec![50, 60, 75, 90]);
        assert!(feeder.findings[3].summary.ends_with(", mostly off-hours"));
        assert_eq!(feeder.findings[3].evidence["off_hours_share"], 1.0);
    }

    #[test]
    fn off_hours_bonus_needs_most_of_the_lifetime_off_hours() {
        // 2 h in business hours, then 1 h 10 min off-hours: a third off-hours, no bonus.
        let s = session(
            4,
            TCP,
            "192.0.2.45",
            443,
            0.0,
            15_000.0,
            300.0,
            100.0,
            100.0,
            false,
        );
        let mut d = LongLivedDetector::new(LongLivedConfig {
            min_upload_bytes: 1_000,
            ..LongLivedConfig::default()
        });
        let mut feeder = Feeder::default();
        for u in &s {
            feeder.off_hours = u.last_ns > at(7_200.0) && u.last_ns <= at(11_400.0);
            feeder.feed(&mut d, u);
        }
        assert_eq!(strengths(&feeder.findings), vec![25, 35, 50]);
    }

    #[test]
    fn little_upload_raises_nothing_however_long() {
        // A 12 h websocket that sends keepalives: 20 B/s up.
        let mut d = LongLivedDetector::new(LongLivedConfig::default());
        let mut feeder = Feeder::default();
        feeder.feed_all(
            &mut d,
            &session(
                5,
                TCP,
                "198.51.100.3",
                443,
                0.0,
                43_300.0,
                300.0,
                20.0,
                40.0,
                true,
            ),
        );
        assert!(feeder.findings.is_empty());
    }

    #[test]
    fn upload_reaching_the_minimum_late_reports_only_the_highest_tier_crossed() {
        // 300 B/s: the 1 MB minimum is reached at 1 h, long after the 10 min threshold.
        let mut d = LongLivedDetector::new(LongLivedConfig::default());
        let mut feeder = Feeder::default();
        feeder.feed_all(
            &mut d,
            &session(
                6,
                TCP,
                "198.51.100.4",
                443,
                0.0,
                3_700.0,
                300.0,
                300.0,
                300.0,
                true,
            ),
        );
        assert_eq!(strengths(&feeder.findings), vec![35]);
        assert_eq!(feeder.findings[0].ts_ns, at(3_600.0));
        assert_eq!(feeder.findings[0].evidence["threshold_seconds"], 3600);
    }

    #[test]
    fn reconnects_within_the_gap_are_one_session() {
        // Three 25 min connections with 20 s between them: one 76 min session.
        let mut updates = Vec::new();
        for (i, start) in [0.0, 1_520.0, 3_040.0].into_iter().enumerate() {
            updates.extend(session(
                10 + i as u64,
                TCP,
                "203.0.113.50",
                443,
                start,
                1_500.0,
                300.0,
                5_000.0,
                2_500.0,
                true,
            ));
        }
        let mut d = LongLivedDetector::new(LongLivedConfig::default());
        let mut feeder = Feeder::default();
        feeder.feed_all(&mut d, &updates);
        assert_eq!(strengths(&feeder.findings), vec![25, 35]);
        let f = &feeder.findings[1];
        assert_eq!(f.evidence["stitched_flows"], 3);
        assert_eq!(f.bytes_out, 5_000 * 1_500 * 2 + 5_000 * 600);
        assert!(
            f.summary.ends_with(" over 3 stitched connections"),
            "{}",
            f.summary
        );
        // Nothing is left once the gap has passed.
        feeder.close(&mut d, 4_500.0, 5_400.0);
        assert_eq!(d.sessions(), 0);
    }

    #[test]
    fn reconnect_after_a_silent_drop_is_stitched_though_the_old_flow_ends_late() {
        // The old connection's last packet is at 25 min; the flow table ends it an idle
        // timeout later (30 min), after other traffic, and only then reports the reconnect
        // that began 10 s after the drop.
        let old = session(
            60,
            TCP,
            "203.0.113.70",
            443,
            0.0,
            1_500.0,
            300.0,
            5_000.0,
            2_500.0,
            false,
        );
        let mut d = LongLivedDetector::new(LongLivedConfig::default());
        let mut feeder = Feeder::default();
        feeder.feed_all(&mut d, &old);
        let other = update(
            61,
            TCP,
            "198.51.100.99",
            443,
            1_790.0,
            1_800.0,
            900,
            4_000,
            UpdateKind::Final,
        );
        feeder.feed(&mut d, &other);
        let mut end = old[old.len() - 1].clone();
        end.kind = UpdateKind::Final;
        feeder.feed(&mut d, &end);
        let new = session(
            62,
            TCP,
            "203.0.113.70",
            443,
            1_510.0,
            2_400.0,
            300.0,
            5_000.0,
            2_500.0,
            true,
        );
        feeder.feed_all(&mut d, &new);
        assert_eq!(strengths(&feeder.findings), vec![25, 35]);
        assert_eq!(feeder.findings[1].evidence["stitched_flows"], 2);
        assert_eq!(feeder.findings[1].ts_ns, at(3_610.0));
    }

    #[test]
    fn a_longer_gap_starts_a_new_session() {
        let mut updates = session(
            20,
            TCP,
            "203.0.113.50",
            443,
            0.0,
            1_500.0,
            300.0,
            5_000.0,
            500.0,
            true,
        );
        updates.extend(session(
            21,
            TCP,
            "203.0.113.50",
            443,
            1_620.0,
            1_500.0,
            300.0,
            5_000.0,
            500.0,
            true,
        ));
        let mut d = LongLivedDetector::new(LongLivedConfig::default());
        let mut feeder = Feeder::default();
        feeder.feed_all(&mut d, &updates);
        // Each 25 min connection crosses 10 min on its own; neither reaches 1 h.
        assert_eq!(strengths(&feeder.findings), vec![25, 25]);
    }

    #[test]
    fn concurrent_connections_started_before_the_last_update_stay_apart() {
        // Two parallel 70 min connections to one server, the second opened 2 min after the
        // first: the first's updates make the second no continuation of it.
        let mut updates = session(
            30,
            TCP,
            "198.51.100.9",
            443,
            0.0,
            4_200.0,
            60.0,
            2_000.0,
            2_000.0,
            true,
        );
        updates.extend(session(
            31,
            TCP,
            "198.51.100.9",
            443,
            120.0,
            4_200.0,
            300.0,
            2_000.0,
            2_000.0,
            true,
        ));
        let mut d = LongLivedDetector::new(LongLivedConfig::default());
        let mut feeder = Feeder::default();
        feeder.feed_all(&mut d, &updates);
        assert_eq!(strengths(&feeder.findings), vec![25, 25, 35, 35]);
        assert!(
            feeder
                .findings
                .iter()
                .all(|f| f.evidence["stitched_flows"] == 1)
        );
    }

    #[test]
    fn inbound_sessions_count_only_when_upload_heavy() {
        let mut d = LongLivedDetector::new(LongLivedConfig::default());
        let mut feeder = Feeder::default();
        // A 2 h SSH login to an inside server: symmetric, no finding.
        let mut ssh = session(
            40,
            TCP,
            "192.0.2.80",
            51_000,
            0.0,
            7_300.0,
            300.0,
            3_000.0,
            2_000.0,
            true,
        );
        // A 2 h connection into a planted proxy that sends out 1.4 MB/s.
        let mut proxy = session(
            41,
            TCP,
            "192.0.2.81",
            52_000,
            0.0,
            7_300.0,
            300.0,
            1_400_000.0,
            20_000.0,
            true,
        );
        for u in ssh.iter_mut().chain(proxy.iter_mut()) {
            u.inbound = true;
        }
        for u in &mut ssh {
            u.inside_port = 22;
        }
        for u in &mut proxy {
            u.inside_port = 1080;
        }
        feeder.feed_all(&mut d, &ssh);
        assert!(feeder.findings.is_empty());
        feeder.feed_all(&mut d, &proxy);
        assert_eq!(strengths(&feeder.findings), vec![40, 50]);
        assert_eq!(
            feeder.findings[1].summary,
            "served an inbound TCP session from 192.0.2.81 on port 1080 for 1.0 h, sent 5.0 GB (70x received)"
        );
    }

    #[test]
    fn sessions_are_bounded_with_counted_eviction() {
        let mut d = LongLivedDetector::new(LongLivedConfig {
            max_sessions: 2,
            ..LongLivedConfig::default()
        });
        let mut feeder = Feeder::default();
        for (uid, addr) in [
            (50, "198.51.100.1"),
            (51, "198.51.100.2"),
            (52, "198.51.100.3"),
        ] {
            feeder.feed(
                &mut d,
                &update(
                    uid,
                    TCP,
                    addr,
                    443,
                    0.0,
                    300.0 + uid as f64,
                    10_000,
                    10_000,
                    UpdateKind::Interim,
                ),
            );
        }
        assert_eq!(d.sessions(), 2);
        assert_eq!(d.evicted(), 1);
    }

    #[test]
    fn shipped_thresholds_match_the_documented_tiers() {
        let d = LongLivedDetector::new(LongLivedConfig::default());
        assert_eq!(
            d.tiers,
            vec![
                (600 * NS, 25),
                (3_600 * NS, 35),
                (14_400 * NS, 50),
                (43_200 * NS, 65)
            ]
        );
        assert_eq!(ratio_text(38_000, 1_000), "38x received");
        assert_eq!(ratio_text(1_500, 1_000), "1.5x received");
        assert_eq!(ratio_text(1_500, 0), "nothing received");
    }
}
