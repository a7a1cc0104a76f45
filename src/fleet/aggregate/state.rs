//! The aggregator's state and judgments, as plain values and functions (no bus): what one key
//! of the state bucket holds, how a message's content is merged into it (idempotently: merging
//! the same content twice leaves the value as merging it once), and the fleet alerts a value
//! calls for. The plumbing in `super` reads a value, calls these, and writes it back with the
//! revision it read.
use super::AggregateConfig;
use crate::alert::{TECHNIQUE, rfc3339, severity};
use crate::detect::windows::p90;
use crate::fleet::schema::{FleetAlert, FleetBaseline, HostSummary, SiteHost, WindowSummary};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

pub const SHARED_RELAY_ENDPOINT: &str = "SharedRelayEndpoint";
pub const SHARED_RELAY_ASN: &str = "SharedRelayAsn";
pub const PROXYWARE_ACROSS_SITES: &str = "ProxywareAcrossSites";
pub const SITE_EGRESS_SHIFT: &str = "SiteEgressShift";

const NS: u64 = 1_000_000_000;

/// Key of a window's entry: `win.<window start, unix s>`.
pub fn window_key(window_start_ns: u64) -> String {
    format!("win.{}", window_start_ns / NS)
}

/// Key of an outside endpoint's entry: `ep.<ip>.<port>`, the ip with `.` and `:` as `-` (KV
/// keys are dot-separated tokens of `[-_=/a-zA-Z0-9]`; `-` cannot be confused in an address).
pub fn endpoint_key(ip: IpAddr, port: u16) -> String {
    let ip: String = ip
        .to_string()
        .chars()
        .map(|c| if c == '.' || c == ':' { '-' } else { c })
        .collect();
    format!("ep.{ip}.{port}")
}

pub fn asn_key(asn: u32) -> String {
    format!("asn.{asn}")
}

/// Key of a proxyware service's entry: `pw.<slug>` (lower-case letters and digits, other
/// characters as `-`, at most 64).
pub fn service_key(service: &str) -> Option<String> {
    let slug: String = service
        .trim()
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let slug = slug.trim_matches('-');
    (!slug.is_empty()).then(|| format!("pw.{slug}"))
}

/// Key that a raised alert holds: created once, whoever creates it publishes the alert.
pub fn alerted_key(id: &str) -> String {
    format!("alerted.{id}")
}

/// The fleet alert's id: SHA-256 of kind, key and the sorted site set, first 8 bytes in hex
/// (as a sensor's alert ids). A site joining a finding makes a new id: a new, bigger alert.
pub fn fleet_alert_id(kind: &str, key: &str, sites: &[String]) -> String {
    let mut sorted: Vec<&str> = sites.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let text = format!("{kind}\n{key}\n{}", sorted.join(","));
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Windows: the population and the per-site shift.

/// `win.<start>`: every part of the window that sites reported. One u64 per active host of
/// the fleet (plus the few shifted hosts named): about 60 000 hosts fit NATS's default 1 MiB
/// max_payload.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowEntry {
    pub window_start_ns: u64,
    pub window_end_ns: u64,
    /// `site/sensor/part` -> the part (names are subject tokens: no `/` in them).
    pub parts: BTreeMap<String, PartEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PartEntry {
    pub site: String,
    pub sensor: String,
    pub part: u32,
    pub parts: u32,
    /// The population: bytes_out of every host in the part.
    pub bytes_out: Vec<u64>,
    /// Hosts of the part with a baseline (the shift's denominator).
    pub with_baseline: u64,
    /// Hosts that sent at least `shift_factor` x their baseline and `shift_min_bytes`...
    pub shifted_hosts: u64,
    /// ...the first `max_hosts_per_finding` of them by bytes.
    pub shifted: Vec<ShiftedHost>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShiftedHost {
    pub host: IpAddr,
    pub bytes_out: u64,
    pub baseline_bytes_out: f64,
}

fn shifted(h: &HostSummary, config: &AggregateConfig) -> Option<ShiftedHost> {
    let baseline = h.baseline_bytes_out?;
    (h.bytes_out >= config.shift_min_bytes
        && h.bytes_out as f64 >= config.shift_factor * baseline.max(0.0))
    .then_some(ShiftedHost {
        host: h.host,
        bytes_out: h.bytes_out,
        baseline_bytes_out: baseline,
    })
}

/// Stores (or overwrites: a repeat changes nothing) one part of a site's window.
pub fn merge_part(
    entry: &mut WindowEntry,
    site: &str,
    sensor: &str,
    w: &WindowSummary,
    config: &AggregateConfig,
) {
    entry.window_start_ns = w.window_start_ns;
    entry.window_end_ns = entry.window_end_ns.max(w.window_end_ns);
    let parts = w.parts.max(1);
    // A sensor that sends the window again in fewer parts: its old extra parts go.
    entry
        .parts
        .retain(|_, p| !(p.site == site && p.sensor == sensor && p.part >= parts));
    let mut shifted_all: Vec<ShiftedHost> =
        w.hosts.iter().filter_map(|h| shifted(h, config)).collect();
    let shifted_hosts = shifted_all.len() as u64;
    shifted_all.sort_by(|a, b| b.bytes_out.cmp(&a.bytes_out).then(a.host.cmp(&b.host)));
    shifted_all.truncate(config.max_hosts_per_finding);
    entry.parts.insert(
        format!("{site}/{sensor}/{}", w.part),
        PartEntry {
            site: site.into(),
            sensor: sensor.into(),
            part: w.part,
            parts,
            bytes_out: w.hosts.iter().map(|h| h.bytes_out).collect(),
            with_baseline: w
                .hosts
                .iter()
                .filter(|h| h.baseline_bytes_out.is_some())
                .count() as u64,
            shifted_hosts,
            shifted: shifted_all,
        },
    );
}

/// The fleet's figure for the window over every part stored.
pub fn window_baseline(entry: &WindowEntry, min_hosts: usize) -> FleetBaseline {
    let mut values: Vec<u64> = entry
        .parts
        .values()
        .flat_map(|p| p.bytes_out.iter().copied())
        .collect();
    let sites: BTreeSet<&str> = entry.parts.values().map(|p| p.site.as_str()).collect();
    FleetBaseline {
        window_start_ns: entry.window_start_ns,
        window_end_ns: entry.window_end_ns,
        hosts: values.len() as u64,
        p90_bytes_out: p90(&mut values, min_hosts),
        sites: sites.into_iter().map(String::from).collect(),
    }
}

/// The baseline message's `Nats-Msg-Id`: the same figure published again (a redelivered part)
/// is stored once.
pub fn baseline_msg_id(b: &FleetBaseline) -> String {
    let text = format!(
        "{}\n{}\n{:?}\n{}",
        b.window_start_ns,
        b.hosts,
        b.p90_bytes_out,
        b.sites.join(",")
    );
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let hex: String = digest
        .as_ref()
        .iter()
        .take(12)
        .map(|x| format!("{x:02x}"))
        .collect();
    format!("baseline.{}.{hex}", b.window_start_ns / NS)
}

/// One site's shift in one window, over all its parts.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteShift {
    pub site: String,
    pub shifted_hosts: u64,
    pub with_baseline: u64,
    /// Named hosts, heaviest first (bounded).
    pub hosts: Vec<ShiftedHost>,
}

/// Whether `site` shifted in the window: judged once every part its sensors announced is
/// stored (a partial window would understate the fraction).
pub fn site_shift(entry: &WindowEntry, site: &str, config: &AggregateConfig) -> Option<SiteShift> {
    let parts: Vec<&PartEntry> = entry.parts.values().filter(|p| p.site == site).collect();
    let mut announced: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    for p in &parts {
        let e = announced.entry(p.sensor.as_str()).or_insert((p.parts, 0));
        e.0 = e.0.max(p.parts);
        e.1 += 1;
    }
    if parts.is_empty() || announced.values().any(|&(want, have)| have < want) {
        return None;
    }
    let shifted_hosts: u64 = parts.iter().map(|p| p.shifted_hosts).sum();
    let with_baseline: u64 = parts.iter().map(|p| p.with_baseline).sum();
    if shifted_hosts < config.shift_min_hosts
        || (shifted_hosts as f64) < config.shift_min_fraction * with_baseline as f64
    {
        return None;
    }
    let mut hosts: Vec<ShiftedHost> = parts.iter().flat_map(|p| p.shifted.clone()).collect();
    hosts.sort_by(|a, b| b.bytes_out.cmp(&a.bytes_out).then(a.host.cmp(&b.host)));
    hosts.truncate(config.max_hosts_per_finding);
    Some(SiteShift {
        site: site.into(),
        shifted_hosts,
        with_baseline,
        hosts,
    })
}

/// Every site of the window that shifted.
pub fn shifted_sites(entry: &WindowEntry, config: &AggregateConfig) -> Vec<SiteShift> {
    let sites: BTreeSet<&str> = entry.parts.values().map(|p| p.site.as_str()).collect();
    sites
        .into_iter()
        .filter_map(|s| site_shift(entry, s, config))
        .collect()
}

/// Score of a site shift: 50, +10 per other site that shifted in the same window, +10 when
/// at least 80% of the site's hosts with a baseline shifted; at most 90 (a shift is a
/// change, not yet a proof of hijacking: the hosts' own alerts tell more).
pub fn shift_alert(
    entry: &WindowEntry,
    shift: &SiteShift,
    together: &[&SiteShift],
    config: &AggregateConfig,
) -> FleetAlert {
    let fraction = shift.shifted_hosts as f64 / shift.with_baseline.max(1) as f64;
    let score = (50 + 10 * together.len().min(4) + if fraction >= 0.8 { 10 } else { 0 }).min(90);
    let key = format!("{}@{}", shift.site, entry.window_start_ns / NS);
    let mut sites: Vec<String> = together.iter().map(|s| s.site.clone()).collect();
    sites.push(shift.site.clone());
    sites.sort();
    let host_list = |s: &SiteShift| {
        s.hosts
            .iter()
            .map(|h| {
                serde_json::json!({
                    "host": h.host,
                    "bytes_out": h.bytes_out,
                    "baseline_bytes_out": h.baseline_bytes_out.round() as u64,
                })
            })
            .collect::<Vec<_>>()
    };
    let mut reason = format!(
        "{} of {} hosts with a baseline at site {} each sent at least {}x their baseline and \
         {} bytes in the window starting {}",
        shift.shifted_hosts,
        shift.with_baseline,
        shift.site,
        config.shift_factor,
        config.shift_min_bytes,
        rfc3339(entry.window_start_ns)
    );
    if !together.is_empty() {
        reason.push_str(&format!(
            "; {} other site(s) shifted in the same window: {}",
            together.len(),
            together
                .iter()
                .map(|s| s.site.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    FleetAlert {
        // The site set in the id is the site alone: its alert is raised once per window; the
        // sites that shifted with it are evidence.
        id: fleet_alert_id(SITE_EGRESS_SHIFT, &key, std::slice::from_ref(&shift.site)),
        time: rfc3339(entry.window_end_ns),
        kind: SITE_EGRESS_SHIFT.into(),
        technique: TECHNIQUE.into(),
        score: score as u8,
        severity: severity(score as u8).into(),
        sites,
        hosts: {
            let mut hosts: Vec<SiteHost> = shift
                .hosts
                .iter()
                .map(|h| SiteHost {
                    site: shift.site.clone(),
                    host: h.host,
                })
                .collect();
            hosts.sort();
            hosts
        },
        destination_ip: None,
        destination_port: None,
        asn: None,
        service: None,
        window_start: rfc3339(entry.window_start_ns),
        window_end: rfc3339(entry.window_end_ns),
        reason,
        evidence: serde_json::json!({
            "site": shift.site,
            "shifted_hosts": shift.shifted_hosts,
            "hosts_with_baseline": shift.with_baseline,
            "fraction": (fraction * 1000.0).round() / 1000.0,
            "hosts": host_list(shift),
            "hosts_not_listed": shift.shifted_hosts.saturating_sub(shift.hosts.len() as u64),
            "together": together.iter().map(|s| serde_json::json!({
                "site": s.site,
                "shifted_hosts": s.shifted_hosts,
                "hosts_with_baseline": s.with_baseline,
            })).collect::<Vec<_>>(),
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Things seen at several sites: an outside endpoint, an ASN, a proxyware service.

/// `ep.*`, `asn.*`, `pw.*`: the sites where it was seen, within `correlation_hours` of the
/// latest sighting (older sites are pruned), at most `max_sites_per_finding` (the oldest go
/// first, counted).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SeenEntry {
    /// Endpoint or ASN or service, for the alert (set by the first sighting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub sites: BTreeMap<String, SiteSeen>,
    /// Sites dropped over `max_sites_per_finding`.
    #[serde(default)]
    pub sites_dropped: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SiteSeen {
    pub first_ns: u64,
    pub last_ns: u64,
    /// At most `max_hosts_per_finding`; later hosts are counted in `hosts_not_listed`.
    pub hosts: BTreeMap<IpAddr, HostSeen>,
    #[serde(default)]
    pub hosts_not_listed: u64,
    /// What it was reached by: endpoints (`ip:port`) of an ASN, names of a service (bounded).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub via: BTreeSet<String>,
}

/// A host's bytes: the windows before its latest one summed, and its latest window apart, so
/// a window seen again replaces its own figure instead of adding to it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostSeen {
    pub last_window_ns: u64,
    pub last_window_bytes: u64,
    pub earlier_bytes: u64,
}

impl HostSeen {
    pub fn bytes(&self) -> u64 {
        self.earlier_bytes.saturating_add(self.last_window_bytes)
    }
}

/// One observation: `host` at `site` sent `bytes_out` to the thing in the window.
#[derive(Debug, Clone, PartialEq)]
pub struct Sighting {
    pub site: String,
    pub host: IpAddr,
    pub window_start_ns: u64,
    pub window_end_ns: u64,
    pub bytes_out: u64,
    /// Endpoints of an ASN, names of a service.
    pub via: Vec<String>,
}

/// Latest sighting time in the entry.
pub fn newest_ns(entry: &SeenEntry) -> u64 {
    entry.sites.values().map(|s| s.last_ns).max().unwrap_or(0)
}

/// Merges a sighting; returns false when it was too old to matter (nothing changed).
/// Repeating a sighting changes nothing. A host's window older than its latest one is not
/// added (with one aggregator a sensor's windows come in order; with several, a late window
/// is left out rather than risk counting one twice).
pub fn record(entry: &mut SeenEntry, s: &Sighting, config: &AggregateConfig) -> bool {
    let horizon = config.correlation_ns();
    let newest = newest_ns(entry).max(s.window_end_ns);
    if s.window_end_ns.saturating_add(horizon) < newest {
        return false;
    }
    let site = entry.sites.entry(s.site.clone()).or_insert(SiteSeen {
        first_ns: s.window_start_ns,
        last_ns: s.window_end_ns,
        ..SiteSeen::default()
    });
    site.first_ns = site.first_ns.min(s.window_start_ns);
    site.last_ns = site.last_ns.max(s.window_end_ns);
    for via in &s.via {
        if site.via.len() < config.max_hosts_per_finding || site.via.contains(via) {
            site.via.insert(via.clone());
        }
    }
    let full = site.hosts.len() >= config.max_hosts_per_finding;
    match site.hosts.get_mut(&s.host) {
        Some(h) if s.window_start_ns == h.last_window_ns => h.last_window_bytes = s.bytes_out,
        Some(h) if s.window_start_ns > h.last_window_ns => {
            h.earlier_bytes = h.bytes();
            h.last_window_ns = s.window_start_ns;
            h.last_window_bytes = s.bytes_out;
        }
        Some(_) => {}
        None if !full => {
            site.hosts.insert(
                s.host,
                HostSeen {
                    last_window_ns: s.window_start_ns,
                    last_window_bytes: s.bytes_out,
                    earlier_bytes: 0,
                },
            );
        }
        // Bounded: counted per window, so a repeat of that window may count it again.
        None => site.hosts_not_listed += 1,
    }
    // Sites that fell out of the correlation span, then the oldest over the cap.
    entry
        .sites
        .retain(|_, v| v.last_ns.saturating_add(horizon) >= newest);
    while entry.sites.len() > config.max_sites_per_finding {
        let oldest = entry
            .sites
            .iter()
            .min_by_key(|(name, v)| (v.last_ns, (*name).clone()))
            .map(|(name, _)| name.clone());
        if let Some(name) = oldest {
            entry.sites.remove(&name);
            entry.sites_dropped += 1;
        }
    }
    true
}

/// What kind of thing an entry is about, and its alert's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finding {
    Endpoint,
    Asn,
    Service,
}

impl Finding {
    pub fn kind(self) -> &'static str {
        match self {
            Finding::Endpoint => SHARED_RELAY_ENDPOINT,
            Finding::Asn => SHARED_RELAY_ASN,
            Finding::Service => PROXYWARE_ACROSS_SITES,
        }
    }

    fn min_sites(self, config: &AggregateConfig) -> usize {
        match self {
            Finding::Endpoint => config.min_sites_endpoint,
            Finding::Asn => config.min_sites_asn,
            Finding::Service => config.min_sites_proxyware,
        }
    }

    /// Scores: an endpoint several sites upload to for long sessions is the strongest sign
    /// of one relay operator (70, +10 a site over the minimum, at most 95); a known proxyware
    /// service at several sites is a campaign of installs (80, +5, at most 100); an ASN is
    /// coarse, so weaker (60, +5, at most 90).
    fn score(self, sites: usize, min: usize) -> u8 {
        let extra = sites.saturating_sub(min).min(10) as u32;
        let (base, step, max) = match self {
            Finding::Endpoint => (70, 10, 95),
            Finding::Asn => (60, 5, 90),
            Finding::Service => (80, 5, 100),
        };
        (base + step * extra).min(max) as u8
    }
}

/// The sites that count for a fleet alert (all within the correlation span, since
/// [`record`] prunes the rest), or None when there are too few. An ASN needs its sites to
/// have reached it through at least two endpoints: one endpoint is an endpoint finding.
pub fn finding_sites(
    entry: &SeenEntry,
    finding: Finding,
    config: &AggregateConfig,
) -> Option<Vec<String>> {
    if entry.asn.is_some_and(|a| config.ignore_asns.contains(&a)) {
        return None;
    }
    let sites: Vec<String> = entry.sites.keys().cloned().collect();
    if sites.len() < finding.min_sites(config).max(1) {
        return None;
    }
    if finding == Finding::Asn {
        let endpoints: BTreeSet<&String> = entry.sites.values().flat_map(|s| &s.via).collect();
        if endpoints.len() < 2 {
            return None;
        }
    }
    Some(sites)
}

/// The fleet alert an entry calls for now, if any.
pub fn seen_alert(
    entry: &SeenEntry,
    finding: Finding,
    config: &AggregateConfig,
) -> Option<FleetAlert> {
    let sites = finding_sites(entry, finding, config)?;
    let involved: Vec<(&String, &SiteSeen)> = entry.sites.iter().collect();
    let key = match finding {
        Finding::Endpoint => match (entry.ip, entry.port) {
            (Some(ip), Some(port)) => std::net::SocketAddr::new(ip, port).to_string(),
            _ => return None,
        },
        Finding::Asn => format!("AS{}", entry.asn?),
        Finding::Service => entry.service.clone()?,
    };
    let score = finding.score(sites.len(), finding.min_sites(config));
    let first = involved.iter().map(|(_, s)| s.first_ns).min().unwrap_or(0);
    let last = involved.iter().map(|(_, s)| s.last_ns).max().unwrap_or(0);
    let mut hosts: Vec<SiteHost> = involved
        .iter()
        .flat_map(|(name, s)| {
            s.hosts.keys().map(|h| SiteHost {
                site: (*name).clone(),
                host: *h,
            })
        })
        .collect();
    hosts.sort();
    let host_count: u64 = involved
        .iter()
        .map(|(_, s)| s.hosts.len() as u64 + s.hosts_not_listed)
        .sum();
    let total_bytes: u64 = involved
        .iter()
        .flat_map(|(_, s)| s.hosts.values().map(HostSeen::bytes))
        .fold(0u64, u64::saturating_add);
    let per_site: Vec<serde_json::Value> = involved
        .iter()
        .map(|(name, s)| {
            serde_json::json!({
                "site": name,
                "hosts": s.hosts.iter().map(|(h, v)| serde_json::json!({
                    "host": h, "bytes_out": v.bytes(),
                })).collect::<Vec<_>>(),
                "hosts_not_listed": s.hosts_not_listed,
                "bytes_out": s.hosts.values().map(HostSeen::bytes).fold(0u64, u64::saturating_add),
                "via": s.via,
                "first_seen": rfc3339(s.first_ns),
                "last_seen": rfc3339(s.last_ns),
            })
        })
        .collect();
    let span_h = config.correlation_hours;
    let what = match finding {
        Finding::Endpoint => format!(
            "{} sites had hosts holding long-lived upload sessions to {key}",
            sites.len()
        ),
        Finding::Asn => {
            let endpoints: BTreeSet<&String> = involved.iter().flat_map(|(_, s)| &s.via).collect();
            format!(
                "{} sites had hosts holding long-lived upload sessions into {key} through {} endpoints",
                sites.len(),
                endpoints.len()
            )
        }
        Finding::Service => format!(
            "{} sites had hosts reaching the proxyware service {key}",
            sites.len()
        ),
    };
    let reason = format!(
        "{what} within {span_h} h: {} ({host_count} hosts, {total_bytes} bytes sent)",
        sites.join(", ")
    );
    Some(FleetAlert {
        id: fleet_alert_id(finding.kind(), &key, &sites),
        // Event time, so a rerun over the same messages writes the same alert.
        time: rfc3339(last),
        kind: finding.kind().into(),
        technique: TECHNIQUE.into(),
        score,
        severity: severity(score).into(),
        sites,
        hosts,
        destination_ip: if finding == Finding::Endpoint {
            entry.ip
        } else {
            None
        },
        destination_port: if finding == Finding::Endpoint {
            entry.port
        } else {
            None
        },
        asn: entry.asn,
        service: entry.service.clone(),
        window_start: rfc3339(first),
        window_end: rfc3339(last),
        reason,
        evidence: serde_json::json!({
            "key": key,
            "sites": per_site,
            "hosts": host_count,
            "bytes_out": total_bytes,
            "sites_dropped": entry.sites_dropped,
            "correlation_hours": span_h,
        }),
    })
}

/// Per endpoint: its ASN if known, and the sightings.
pub type EndpointSightings = BTreeMap<(IpAddr, u16), (Option<u32>, Vec<Sighting>)>;
pub type AsnSightings = BTreeMap<u32, Vec<Sighting>>;

/// The sightings a window part carries: per endpoint and per ASN (not ignored), each host's
/// long uploads to it summed. Grouped so one message updates each key once.
pub fn upload_sightings(
    site: &str,
    w: &WindowSummary,
    config: &AggregateConfig,
) -> (EndpointSightings, AsnSightings) {
    let mut endpoints = EndpointSightings::new();
    let mut asns = AsnSightings::new();
    for h in &w.hosts {
        let mut per_ep: BTreeMap<(IpAddr, u16), (Option<u32>, u64)> = BTreeMap::new();
        let mut per_asn: BTreeMap<u32, (u64, BTreeSet<String>)> = BTreeMap::new();
        for u in &h.long_uploads {
            if u.asn.is_some_and(|a| config.ignore_asns.contains(&a)) {
                continue;
            }
            let e = per_ep.entry((u.ip, u.port)).or_insert((u.asn, 0));
            e.0 = e.0.or(u.asn);
            e.1 = e.1.saturating_add(u.bytes_out);
            if let Some(asn) = u.asn {
                let a = per_asn.entry(asn).or_default();
                a.0 = a.0.saturating_add(u.bytes_out);
                a.1.insert(std::net::SocketAddr::new(u.ip, u.port).to_string());
            }
        }
        let sighting = |bytes_out, via| Sighting {
            site: site.into(),
            host: h.host,
            window_start_ns: w.window_start_ns,
            window_end_ns: w.window_end_ns,
            bytes_out,
            via,
        };
        for (ep, (asn, bytes)) in per_ep {
            let e = endpoints.entry(ep).or_insert((asn, Vec::new()));
            e.0 = e.0.or(asn);
            e.1.push(sighting(bytes, Vec::new()));
        }
        for (asn, (bytes, via)) in per_asn {
            asns.entry(asn)
                .or_default()
                .push(sighting(bytes, via.into_iter().collect()));
        }
    }
    (endpoints, asns)
}

/// The sighting a sensor's ProxywareDomain alert carries: (service, sighting).
pub fn proxyware_sighting(
    site: &str,
    alert: &serde_json::Value,
    event_time_ns: u64,
) -> Option<(String, Sighting)> {
    if alert.get("DetectionBranch")?.as_str()? != "ProxywareDomain" {
        return None;
    }
    let hostname = alert.get("DestinationHostname").and_then(|v| v.as_str());
    let service = alert
        .get("evidence")
        .and_then(|e| e.get("service"))
        .and_then(|v| v.as_str())
        .or(hostname)?;
    let host: IpAddr = alert.get("host")?.as_str()?.parse().ok()?;
    let time = |field: &str| {
        alert
            .get(field)
            .and_then(|v| v.as_str())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .and_then(|t| t.timestamp_nanos_opt())
            .and_then(|t| u64::try_from(t).ok())
    };
    let window_end_ns = time("window_end").unwrap_or(event_time_ns);
    Some((
        service.chars().take(128).collect(),
        Sighting {
            site: site.into(),
            host,
            window_start_ns: time("window_start").unwrap_or(window_end_ns),
            window_end_ns,
            bytes_out: alert.get("bytes_out").and_then(|v| v.as_u64()).unwrap_or(0),
            via: hostname
                .map(|h| vec![h.chars().take(253).collect()])
                .unwrap_or_default(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::schema::{Body, LongUpload, Message, SCHEMA};

    const W: u64 = 1_709_539_200_000_000_000;
    const WIN: u64 = 900_000_000_000;

    fn host(n: u8, bytes_out: u64, baseline: Option<f64>) -> HostSummary {
        HostSummary {
            host: IpAddr::from([10, 0, 0, n]),
            bytes_out,
            bytes_in: 0,
            flows_opened: 1,
            distinct_destinations: 1,
            baseline_bytes_out: baseline,
            long_uploads: Vec::new(),
        }
    }

    fn window(part: u32, parts: u32, hosts: Vec<HostSummary>) -> WindowSummary {
        WindowSummary {
            window_start_ns: W,
            window_end_ns: W + WIN,
            part,
            parts,
            hosts_total: hosts.len() as u64,
            site_p90_bytes_out: None,
            scored_against: "site".into(),
            hosts,
        }
    }

    #[test]
    fn a_part_stored_again_overwrites() {
        let config = AggregateConfig::default();
        let mut entry = WindowEntry::default();
        let a = window(
            0,
            1,
            (1..=4).map(|n| host(n, 1000 * n as u64, None)).collect(),
        );
        let b = window(0, 2, (1..=3).map(|n| host(n, 7, None)).collect());
        merge_part(&mut entry, "s1", "x", &a, &config);
        merge_part(&mut entry, "s2", "y", &b, &config);
        let once = entry.clone();
        merge_part(&mut entry, "s1", "x", &a, &config);
        assert_eq!(entry, once);
        assert_eq!(window_baseline(&entry, 5).hosts, 7);
        // The same site's window sent again in fewer parts: its old extra parts go.
        let c = window(1, 2, vec![host(9, 1, None)]);
        merge_part(&mut entry, "s2", "y", &c, &config);
        assert_eq!(window_baseline(&entry, 5).hosts, 8);
        merge_part(
            &mut entry,
            "s2",
            "y",
            &window(0, 1, vec![host(1, 2, None)]),
            &config,
        );
        assert_eq!(window_baseline(&entry, 5).hosts, 5);
    }

    #[test]
    fn the_fleet_p90_is_the_p90_over_every_sites_hosts() {
        let config = AggregateConfig::default();
        let mut entry = WindowEntry::default();
        let mut all = Vec::new();
        for (site, k) in [("b", 3u64), ("a", 5), ("c", 11)] {
            let hosts: Vec<HostSummary> = (1..=k as u8)
                .map(|n| host(n, k * 1000 + u64::from(n) * 37, None))
                .collect();
            all.extend(hosts.iter().map(|h| h.bytes_out));
            merge_part(&mut entry, site, "s", &window(0, 1, hosts), &config);
        }
        let b = window_baseline(&entry, 5);
        assert_eq!(b.p90_bytes_out, p90(&mut all, 5));
        assert_eq!(b.hosts, all.len() as u64);
        assert_eq!(b.sites, ["a", "b", "c"]);
        assert_eq!(b.window_end_ns, W + WIN);
        assert_eq!(window_baseline(&entry, 100).p90_bytes_out, None);
        // Repeats publish the same id; another figure another id.
        assert_eq!(baseline_msg_id(&b), baseline_msg_id(&b.clone()));
        let mut other = b.clone();
        other.hosts += 1;
        assert_ne!(baseline_msg_id(&b), baseline_msg_id(&other));
    }

    #[test]
    fn a_site_shifts_when_enough_of_its_hosts_jump_over_their_baselines() {
        let config = AggregateConfig::default();
        let jumped = |n| host(n, 3_000_000, Some(1_000_000.0));
        let calm = |n| host(n, 900_000, Some(1_000_000.0));
        let mut entry = WindowEntry::default();
        // Part 0 of 2: not judged before part 1 is in.
        merge_part(
            &mut entry,
            "s",
            "x",
            &window(0, 2, vec![jumped(1), jumped(2)]),
            &config,
        );
        assert_eq!(site_shift(&entry, "s", &config), None);
        merge_part(
            &mut entry,
            "s",
            "x",
            &window(1, 2, vec![jumped(3), calm(4), host(5, 9_000_000, None)]),
            &config,
        );
        let shift = site_shift(&entry, "s", &config).expect("3 of 4 jumped");
        assert_eq!((shift.shifted_hosts, shift.with_baseline), (3, 4));
        assert_eq!(shift.hosts.len(), 3);
        // Half or more of the hosts with a baseline: with 3 more calm hosts, 3 of 7 is not.
        merge_part(
            &mut entry,
            "s",
            "x",
            &window(1, 2, vec![jumped(3), calm(4), calm(6), calm(7), calm(8)]),
            &config,
        );
        assert_eq!(site_shift(&entry, "s", &config), None);
        // Below shift_min_bytes a jump does not count.
        let mut small = WindowEntry::default();
        let tiny: Vec<HostSummary> = (1..=4).map(|n| host(n, 900_000, Some(10.0))).collect();
        merge_part(&mut small, "s", "x", &window(0, 1, tiny), &config);
        assert_eq!(site_shift(&small, "s", &config), None);
        // Named hosts are bounded, the count is not.
        let bounded = AggregateConfig {
            max_hosts_per_finding: 2,
            ..AggregateConfig::default()
        };
        let mut many = WindowEntry::default();
        merge_part(
            &mut many,
            "s",
            "x",
            &window(0, 1, (1..=5).map(jumped).collect()),
            &bounded,
        );
        let shift = site_shift(&many, "s", &bounded).unwrap();
        assert_eq!((shift.shifted_hosts, shift.hosts.len()), (5, 2));
        let together = shifted_sites(&many, &bounded);
        let alert = shift_alert(&many, &shift, &[], &bounded);
        assert_eq!(together.len(), 1);
        assert_eq!(alert.kind, SITE_EGRESS_SHIFT);
        assert_eq!(alert.evidence["hosts_not_listed"], 3);
    }

    fn sighting(
        site: &str,
        host: u8,
        window_start_ns: u64,
        bytes_out: u64,
        via: &[&str],
    ) -> Sighting {
        Sighting {
            site: site.into(),
            host: IpAddr::from([10, 0, 0, host]),
            window_start_ns,
            window_end_ns: window_start_ns + WIN,
            bytes_out,
            via: via.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn sightings_merge_idempotently_and_stay_bounded() {
        let config = AggregateConfig {
            max_hosts_per_finding: 2,
            ..AggregateConfig::default()
        };
        let mut entry = SeenEntry::default();
        let s = sighting("a", 1, W, 100, &[]);
        assert!(record(&mut entry, &s, &config));
        let once = entry.clone();
        record(&mut entry, &s, &config);
        assert_eq!(entry, once, "a repeat changes nothing");
        // A later window adds; that window again replaces its own figure.
        record(&mut entry, &sighting("a", 1, W + WIN, 50, &[]), &config);
        record(&mut entry, &sighting("a", 1, W + WIN, 50, &[]), &config);
        assert_eq!(
            entry.sites["a"].hosts[&IpAddr::from([10, 0, 0, 1])].bytes(),
            150
        );
        // An older window of the host is left out rather than risk counting it twice.
        record(&mut entry, &sighting("a", 1, W, 100, &[]), &config);
        assert_eq!(
            entry.sites["a"].hosts[&IpAddr::from([10, 0, 0, 1])].bytes(),
            150
        );
        // Hosts over the cap are counted.
        for n in 2..=4 {
            record(&mut entry, &sighting("a", n, W, 1, &[]), &config);
        }
        assert_eq!(entry.sites["a"].hosts.len(), 2);
        assert_eq!(entry.sites["a"].hosts_not_listed, 2);
        // A site last seen more than correlation_hours before the newest sighting goes; a
        // sighting that old is not taken.
        let later = W + config.correlation_ns() + 3 * WIN;
        record(&mut entry, &sighting("b", 9, later, 1, &[]), &config);
        assert_eq!(entry.sites.keys().collect::<Vec<_>>(), ["b"]);
        assert!(!record(&mut entry, &sighting("c", 9, W, 1, &[]), &config));
        // Sites over the cap: the oldest go, counted.
        let few_sites = AggregateConfig {
            max_sites_per_finding: 2,
            ..AggregateConfig::default()
        };
        let mut e = SeenEntry::default();
        for (i, site) in ["x", "y", "z"].iter().enumerate() {
            record(
                &mut e,
                &sighting(site, 1, W + i as u64 * WIN, 1, &[]),
                &few_sites,
            );
        }
        assert_eq!(e.sites.keys().collect::<Vec<_>>(), ["y", "z"]);
        assert_eq!(e.sites_dropped, 1);
    }

    #[test]
    fn findings_need_enough_sites() {
        let config = AggregateConfig::default();
        let mut ep = SeenEntry {
            ip: Some("198.51.100.7".parse().unwrap()),
            port: Some(443),
            asn: Some(64_500),
            ..SeenEntry::default()
        };
        record(&mut ep, &sighting("a", 1, W, 10, &[]), &config);
        assert!(seen_alert(&ep, Finding::Endpoint, &config).is_none());
        record(&mut ep, &sighting("b", 2, W, 10, &[]), &config);
        let alert = seen_alert(&ep, Finding::Endpoint, &config).unwrap();
        assert_eq!(alert.sites, ["a", "b"]);
        assert_eq!(alert.destination_port, Some(443));
        assert_eq!(alert.evidence["bytes_out"], 20);
        // A third site: a new id (a new, bigger alert), a higher score.
        let mut three = ep.clone();
        record(&mut three, &sighting("c", 3, W, 10, &[]), &config);
        let bigger = seen_alert(&three, Finding::Endpoint, &config).unwrap();
        assert_ne!(bigger.id, alert.id);
        assert!(bigger.score > alert.score);
        // Allowlisted ASN: never a finding.
        let ignoring = AggregateConfig {
            ignore_asns: vec![64_500],
            ..AggregateConfig::default()
        };
        assert!(seen_alert(&ep, Finding::Endpoint, &ignoring).is_none());
        // An ASN needs three sites and two endpoints.
        let mut asn = SeenEntry {
            asn: Some(64_500),
            ..SeenEntry::default()
        };
        for (site, n) in [("a", 1), ("b", 2), ("c", 3)] {
            record(
                &mut asn,
                &sighting(site, n, W, 10, &["198.51.100.7:443"]),
                &config,
            );
        }
        assert!(seen_alert(&asn, Finding::Asn, &config).is_none());
        record(
            &mut asn,
            &sighting("c", 3, W, 10, &["198.51.100.8:443"]),
            &config,
        );
        let a = seen_alert(&asn, Finding::Asn, &config).unwrap();
        assert_eq!(a.sites, ["a", "b", "c"]);
        assert_eq!(a.kind, SHARED_RELAY_ASN);
    }

    #[test]
    fn uploads_group_by_endpoint_and_asn() {
        let config = AggregateConfig {
            ignore_asns: vec![16_509],
            ..AggregateConfig::default()
        };
        let up = |ip: &str, port, asn, bytes_out| LongUpload {
            ip: ip.parse().unwrap(),
            port,
            asn: Some(asn),
            country: None,
            bytes_out,
            bytes_in: 1,
            duration_s: 900.0,
        };
        let mut h = host(1, 10, None);
        h.long_uploads = vec![
            up("198.51.100.7", 443, 64_500, 5),
            up("198.51.100.7", 443, 64_500, 6),
            up("198.51.100.8", 443, 64_500, 7),
            up("52.95.0.1", 443, 16_509, 100),
        ];
        let (eps, asns) = upload_sightings("a", &window(0, 1, vec![h]), &config);
        assert_eq!(eps.len(), 2);
        assert_eq!(
            eps[&("198.51.100.7".parse().unwrap(), 443)].1[0].bytes_out,
            11
        );
        assert_eq!(asns.len(), 1);
        assert_eq!(asns[&64_500][0].bytes_out, 18);
        assert_eq!(asns[&64_500][0].via.len(), 2);
    }

    #[test]
    fn ids_and_keys() {
        let ab = ["a".to_string(), "b".to_string()];
        let ba = ["b".to_string(), "a".to_string()];
        let id = fleet_alert_id("K", "x", &ab);
        assert_eq!(id, fleet_alert_id("K", "x", &ba));
        assert_eq!(id.len(), 16);
        assert_ne!(id, fleet_alert_id("K", "y", &ab));
        assert_ne!(id, fleet_alert_id("L", "x", &ab));
        assert_ne!(id, fleet_alert_id("K", "x", &ab[..1]));
        assert_eq!(
            endpoint_key("198.51.100.7".parse().unwrap(), 443),
            "ep.198-51-100-7.443"
        );
        assert_eq!(
            endpoint_key("2001:db8::1".parse().unwrap(), 80),
            "ep.2001-db8--1.80"
        );
        assert_eq!(service_key("Honey Gain!").as_deref(), Some("pw.honey-gain"));
        assert_eq!(service_key(" .. "), None);
        assert_eq!(window_key(W), "win.1709539200");
    }

    #[test]
    fn proxyware_alerts_become_sightings() {
        let alert = serde_json::json!({
            "host": "10.0.0.5",
            "DetectionBranch": "ProxywareDomain",
            "DestinationHostname": "api.example-proxyware.net",
            "bytes_out": 1234,
            "window_start": "2024-03-04T08:00:00.000000Z",
            "window_end": "2024-03-04T08:15:00.000000Z",
            "evidence": {"service": "ExampleNet"},
        });
        let (service, s) = proxyware_sighting("a", &alert, 1).unwrap();
        assert_eq!(service, "ExampleNet");
        assert_eq!((s.window_start_ns, s.window_end_ns), (W, W + WIN));
        assert_eq!(s.bytes_out, 1234);
        assert_eq!(s.via, ["api.example-proxyware.net"]);
        let mut other = alert.clone();
        other["DetectionBranch"] = "FanOut".into();
        assert!(proxyware_sighting("a", &other, 1).is_none());
        let mut bad = alert;
        bad["host"] = "not an address".into();
        assert!(proxyware_sighting("a", &bad, 1).is_none());
    }

    #[test]
    fn fleet_alert_messages_round_trip() {
        let config = AggregateConfig::default();
        let mut ep = SeenEntry {
            ip: Some("198.51.100.7".parse().unwrap()),
            port: Some(443),
            ..SeenEntry::default()
        };
        record(&mut ep, &sighting("a", 1, W, 10, &[]), &config);
        record(&mut ep, &sighting("b", 2, W, 10, &[]), &config);
        let alert = seen_alert(&ep, Finding::Endpoint, &config).unwrap();
        let m = Message {
            schema: SCHEMA.into(),
            site: "fleet".into(),
            sensor: "agg".into(),
            run: 1,
            seq: 1,
            event_time_ns: W,
            dropped: 0,
            body: Body::FleetAlert {
                alert: Box::new(alert.clone()),
            },
        };
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<Message>(&text).unwrap(), m);
    }
}
