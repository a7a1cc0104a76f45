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
use hashbrown::HashTable;
use rustc_hash::{FxBuildHasher, FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

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
    /// Sessions tracked at once; at it the least recently seen eighth is evicted (counted).
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

/// A live flow of a session: its session's slot and its counters as of its latest update.
#[derive(Debug, Clone, Copy)]
struct Member {
    session: u32,
    bytes_out: u64,
    bytes_in: u64,
}

impl Member {
    /// A flow that just joined `session`: none of its bytes counted yet.
    fn of(session: u32) -> Member {
        Member {
            session,
            bytes_out: 0,
            bytes_in: 0,
        }
    }
}

/// One session, live or ended (kept for stitching). Compact: a session is kept for every
/// flow to a distinct address, so a million flows ending at once are a million sessions.
#[derive(Debug)]
struct Session {
    key: StitchKey,
    /// Thresholds already reported.
    tiers_reported: u16,
    /// Member flows still live (their uids map to this session in `by_uid`).
    live: u8,
    /// Uids kept for the evidence: `first_uid`, then `more_uids`.
    examples: u8,
    flows: u32,
    start_ns: u64,
    last_ns: u64,
    /// Bytes of every member flow: ended ones' final counters, live ones' latest.
    bytes_out: u64,
    bytes_in: u64,
    /// Time covered by updates so far (updates are accounted up to `last_ns`), and the part
    /// of it off business hours.
    covered_ns: u64,
    off_hours_ns: u64,
    first_uid: Uid,
    /// Allocated only for a stitched session.
    more_uids: Option<Box<[Uid; MAX_EXAMPLE_FLOWS - 1]>>,
    /// Interned: many sessions share a name.
    name: Option<Arc<str>>,
}

impl Session {
    fn examples(&self) -> impl Iterator<Item = Uid> + '_ {
        let more = self.more_uids.as_deref().map_or(&[][..], |m| &m[..]);
        std::iter::once(self.first_uid)
            .chain(more.iter().copied())
            .take(usize::from(self.examples))
    }

    fn add_example(&mut self, uid: Uid) {
        let n = usize::from(self.examples);
        if n >= MAX_EXAMPLE_FLOWS || self.examples().any(|e| e == uid) {
            return;
        }
        if n == 0 {
            self.first_uid = uid;
        } else if let Some(slot) = self
            .more_uids
            .get_or_insert_with(|| Box::new([Uid(0); MAX_EXAMPLE_FLOWS - 1]))
            .get_mut(n - 1)
        {
            *slot = uid;
        }
        self.examples += 1;
    }
}

pub struct LongLivedDetector {
    config: LongLivedConfig,
    /// (threshold ns, strength), ascending by threshold.
    tiers: Vec<(u64, u8)>,
    /// Sessions by slot; `free` lists the empty slots.
    slots: Vec<Option<Session>>,
    free: Vec<u32>,
    sessions: usize,
    by_uid: FxHashMap<Uid, Member>,
    /// The newest session per key (slots, hashed by their session's key): the one a following
    /// flow may continue. Ended sessions stay only while they are their key's candidate.
    by_key: HashTable<u32>,
    names: FxHashSet<Arc<str>>,
    evicted: u64,
}

fn key_hash(key: &StitchKey) -> u64 {
    FxBuildHasher.hash_one(key)
}

fn slot_key(slots: &[Option<Session>], id: u32) -> Option<&StitchKey> {
    slots.get(id as usize)?.as_ref().map(|s| &s.key)
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
            slots: Vec::new(),
            free: Vec::new(),
            sessions: 0,
            by_uid: FxHashMap::default(),
            by_key: HashTable::new(),
            names: FxHashSet::default(),
            evicted: 0,
        }
    }

    /// Sessions currently tracked.
    pub fn sessions(&self) -> usize {
        self.sessions
    }

    fn session_mut(&mut self, id: u32) -> Option<&mut Session> {
        self.slots.get_mut(id as usize)?.as_mut()
    }

    /// The newest session of `key`.
    fn candidate(&self, key: &StitchKey) -> Option<u32> {
        let slots = &self.slots;
        self.by_key
            .find(key_hash(key), |&id| slot_key(slots, id) == Some(key))
            .copied()
    }

    /// The session a flow seen for the first time belongs to: the newest session of its key if
    /// the flow follows it closely, else a new one.
    fn attach(&mut self, u: &FlowUpdate<'_>, key: StitchKey) -> u32 {
        let gap_ns = self.config.stitch_gap_seconds.saturating_mul(NS);
        let follows = |s: &Session| {
            u.first_ns.saturating_add(STITCH_OVERLAP_NS) >= s.last_ns
                && u.first_ns.saturating_sub(s.last_ns) < gap_ns
                && usize::from(s.live) < MAX_LIVE_MEMBERS
        };
        let previous = self.candidate(&key);
        if let Some(id) = previous
            && let Some(s) = self.session_mut(id).filter(|s| follows(s))
        {
            s.flows = s.flows.saturating_add(1);
            s.live += 1;
            self.by_uid.insert(u.uid, Member::of(id));
            return id;
        }
        // The key's previous session can never grow again: an ended one goes now.
        let previous = previous.filter(|&id| {
            let ended = self.session_mut(id).is_some_and(|s| s.live == 0);
            if ended {
                self.remove(id);
            }
            !ended
        });
        if self.sessions >= self.config.max_sessions.max(1) {
            self.evict();
        }
        let session = Session {
            key,
            tiers_reported: 0,
            live: 1,
            examples: 0,
            flows: 1,
            start_ns: u.first_ns,
            last_ns: u.first_ns,
            bytes_out: 0,
            bytes_in: 0,
            covered_ns: 0,
            off_hours_ns: 0,
            first_uid: u.uid,
            more_uids: None,
            name: None,
        };
        let id = match self.free.pop() {
            Some(id) => {
                if let Some(slot) = self.slots.get_mut(id as usize) {
                    *slot = Some(session);
                }
                id
            }
            None => {
                self.slots.push(Some(session));
                (self.slots.len() - 1) as u32
            }
        };
        self.sessions += 1;
        self.by_uid.insert(u.uid, Member::of(id));
        // The new session replaces a live previous one as its key's candidate (evicted since?
        // then it is simply gone from the index).
        let hash = key_hash(&key);
        let slots = &self.slots;
        if let Some(old) = previous
            && let Ok(entry) = self.by_key.find_entry(hash, |&x| x == old)
        {
            entry.remove();
        }
        self.by_key
            .insert_unique(hash, id, |&x| slot_key(slots, x).map_or(0, key_hash));
        id
    }

    /// Forgets a session (its live members' uids stay in `by_uid`: see `evict`).
    fn remove(&mut self, id: u32) {
        let Some(s) = self.slots.get_mut(id as usize).and_then(Option::take) else {
            return;
        };
        self.sessions -= 1;
        self.free.push(id);
        if let Ok(entry) = self.by_key.find_entry(key_hash(&s.key), |&x| x == id) {
            entry.remove();
        }
    }

    /// At the bound: the least recently seen eighth of the sessions goes (counted), so
    /// eviction needs no per-session order.
    fn evict(&mut self) {
        // Only the times are collected (the sessions are many): the eighth's last time, then
        // every session before it and, in slot order, enough of those at it.
        let mut seen: Vec<u64> = self.slots.iter().flatten().map(|s| s.last_ns).collect();
        let n = seen.len().div_ceil(8);
        let Some(&mut cut) = n.checked_sub(1).map(|i| seen.select_nth_unstable(i).1) else {
            return;
        };
        let before = seen.iter().filter(|&&t| t < cut).count();
        drop(seen);
        let mut at_cut = n - before;
        for id in 0..self.slots.len() as u32 {
            let Some(last_ns) = self
                .slots
                .get(id as usize)
                .and_then(Option::as_ref)
                .map(|s| s.last_ns)
            else {
                continue;
            };
            if last_ns < cut || (last_ns == cut && at_cut > 0) {
                if last_ns == cut {
                    at_cut -= 1;
                }
                self.remove(id);
                self.evicted += 1;
            }
        }
        let slots = &self.slots;
        self.by_uid
            .retain(|_, m| slots.get(m.session as usize).is_some_and(Option::is_some));
    }

    /// Forgets ended sessions no flow can continue any more. Every flow is reported by the
    /// checkpoint of the window it began in at the latest, so once a window closes after an
    /// ended session's stitch gap, every flow that could continue it has been seen. (Expiring
    /// on update time instead would lose a reconnect after a silent drop: the old flow's final
    /// update comes an idle timeout after its last packet.)
    fn expire(&mut self, window_end_ns: u64) {
        let gap_ns = self.config.stitch_gap_seconds.saturating_mul(NS);
        let expired: Vec<u32> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let s = s.as_ref()?;
                (s.live == 0 && s.last_ns.saturating_add(gap_ns) < window_end_ns)
                    .then_some(i as u32)
            })
            .collect();
        for id in expired {
            self.remove(id);
        }
        // Names no session holds any more.
        self.names.retain(|n| Arc::strong_count(n) > 1);
    }

    fn finding(&self, s: &Session, view: &FlowView<'_>, tier: usize) -> Option<Finding> {
        let &(threshold_ns, tier_strength) = self.tiers.get(tier.checked_sub(1)?)?;
        let c = &self.config;
        let (bytes_out, bytes_in) = (s.bytes_out, s.bytes_in);
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
                "flows": s.examples().map(|u| u.to_string()).collect::<Vec<_>>(),
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
        // A connection attempt nobody accepted is no session; skipping it keeps a SYN flood
        // from churning the session table (an attempt answered later attaches then).
        if !self.config.enabled
            || !view.host_inside
            || view.host_allowlisted
            || view.update.unanswered_attempt()
        {
            return;
        }
        let u = view.update;
        let key = StitchKey::of(u);
        let id = match self.by_uid.get(&u.uid) {
            Some(m)
                if self
                    .slots
                    .get(m.session as usize)
                    .is_some_and(Option::is_some) =>
            {
                m.session
            }
            _ => self.attach(u, key),
        };
        let final_update = u.kind == UpdateKind::Final;
        let member = if final_update {
            self.by_uid.remove(&u.uid)
        } else {
            self.by_uid.get_mut(&u.uid).map(|m| {
                let before = *m;
                m.bytes_out = m.bytes_out.max(u.bytes_out);
                m.bytes_in = m.bytes_in.max(u.bytes_in);
                before
            })
        };
        let names = &mut self.names;
        let Some(s) = self.slots.get_mut(id as usize).and_then(Option::as_mut) else {
            return;
        };
        // Updates so far are accounted up to the session's last_ns.
        let accounted_until_ns = s.last_ns;
        s.start_ns = s.start_ns.min(u.first_ns);
        s.last_ns = s.last_ns.max(u.last_ns);
        if let Some(m) = member {
            s.bytes_out = s
                .bytes_out
                .saturating_add(u.bytes_out.saturating_sub(m.bytes_out));
            s.bytes_in = s
                .bytes_in
                .saturating_add(u.bytes_in.saturating_sub(m.bytes_in));
            if final_update {
                s.live = s.live.saturating_sub(1);
            }
        }
        // Each update stands for the time since the session's previous one (about one active
        // timeout), judged by the update's own time of day.
        let span = u.last_ns.saturating_sub(accounted_until_ns.max(u.first_ns));
        s.covered_ns = s.covered_ns.saturating_add(span);
        if view.off_hours {
            s.off_hours_ns = s.off_hours_ns.saturating_add(span);
        }
        if s.name.is_none() {
            s.name = u.name().map(|n| intern(names, n));
        }
        s.add_example(u.uid);

        let duration_ns = s.last_ns.saturating_sub(s.start_ns);
        let reached = self.tiers.iter().take_while(|t| duration_ns >= t.0).count();
        let (bytes_out, bytes_in) = (s.bytes_out, s.bytes_in);
        let heavy = bytes_out >= self.config.heavy_upload_bytes
            && bytes_out as f64 >= self.config.upload_ratio * bytes_in as f64;
        let qualifies = bytes_out >= self.config.min_upload_bytes && (!s.key.inbound || heavy);
        let ended = s.live == 0;
        if reached > usize::from(s.tiers_reported) && qualifies {
            s.tiers_reported = u16::try_from(reached).unwrap_or(u16::MAX);
            if let Some(s) = self.slots.get(id as usize).and_then(Option::as_ref)
                && let Some(f) = self.finding(s, view, reached)
            {
                out.push(f);
            }
        }
        // An ended session stays while a following flow may continue it (see `expire`);
        // one a newer session replaced as its key's candidate can never grow again.
        if ended && self.candidate(&key) != Some(id) {
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

/// The shared copy of `name`.
fn intern(names: &mut FxHashSet<Arc<str>>, name: &str) -> Arc<str> {
    if let Some(n) = names.get(name) {
        return n.clone();
    }
    let n: Arc<str> = Arc::from(name);
    names.insert(n.clone());
    n
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
        pub reported: FxHashMap<Uid, (u64, u64, u64)>,
        pub geo: GeoInfo,
        pub off_hours: bool,
        pub findings: Vec<Finding>,
    }

    impl Feeder {
        pub fn feed(&mut self, detector: &mut dyn Detector, u: &FlowUpdate<'_>) {
            let previous = if u.kind == UpdateKind::Final {
                self.reported.remove(&u.uid)
            } else {
                self.reported
                    .insert(u.uid, (u.bytes_out, u.bytes_in, u.last_ns))
            };
            let (out0, in0, since_ns) = previous.unwrap_or((0, 0, u.first_ns));
            let view = FlowView {
                update: u,
                delta: Delta {
                    bytes_out: u.bytes_out.saturating_sub(out0),
                    bytes_in: u.bytes_in.saturating_sub(in0),
                    pkts_out: 0,
                    pkts_in: 0,
                },
                delta_since_ns: since_ns,
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
                population_scope: crate::detect::windows::PopulationScope::Site,
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
