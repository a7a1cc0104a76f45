//! What a run keeps of the endpoint events: hits folded into alerts per host, branch, key
//! and window; the processes and their network connections (Event 1 and 3), so a network
//! alert can name the program behind its flows; and which computer has which address.
//!
//! Events are read before the capture (they are small next to packets), so every endpoint
//! alert is known when the replay starts; each is released when event time passes its
//! window's end, beside the network alerts of the same window, and merged into a network
//! alert of the same host, branch and window (and service) rather than told twice.
use super::binaries::BinaryMatcher;
use super::config::EndpointConfig;
use super::detect::{EndpointBranch, Hit, Matchers, destination};
use super::event::SysmonEvent;
use crate::alert::{Alert, Process, TECHNIQUE, alert_id, rfc3339, severity};
use crate::config::Config;
use crate::enrich::domains::DomainMatcher;
use crate::flow::key::Uid;
use crate::flow::update::FlowUpdate;
use serde::Serialize;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

const NS: u64 = 1_000_000_000;
/// Evidence lists stay readable and bounded however busy the host is.
const MAX_EVIDENCE_ITEMS: usize = 20;
/// Distinct destinations counted exactly per process, port and window.
const MAX_FANOUT_DESTINATIONS: usize = 4096;
/// Processes named in one alert's evidence.
const MAX_PROCESSES_LISTED: usize = 5;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EndpointCounters {
    pub events: u64,
    pub hits: u64,
    pub alerts: u64,
    /// Endpoint alerts told inside a network alert of the same host, branch and window.
    pub merged: u64,
    /// Network alerts that gained the process behind their flows.
    pub network_with_process: u64,
    /// Network alerts whose score an endpoint hit on the same host raised.
    pub network_boosted: u64,
    pub connections_dropped: u64,
    pub processes_dropped: u64,
    pub flows_dropped: u64,
    /// Computers with hits but no known address (their alerts carry 0.0.0.0).
    pub computers_without_address: u64,
}

/// One Event 3, compact, for matching flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Conn {
    local: IpAddr,
    remote: IpAddr,
    remote_port: u16,
    local_port: u16,
    proto: u8,
    time_ns: u64,
    process: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct FoldKey {
    window_start_ns: u64,
    computer: u32,
    branch: EndpointBranch,
    key: String,
}

#[derive(Debug, Default)]
struct Fold {
    first_ns: u64,
    last_ns: u64,
    count: u64,
    score: u8,
    /// The strongest hit's summary, destination and process.
    summary: String,
    destination: Option<(IpAddr, u16)>,
    destination_name: Option<String>,
    process: Option<u32>,
    events: Vec<serde_json::Value>,
    summaries: BTreeSet<String>,
}

#[derive(Debug, Default)]
struct FanOut {
    destinations: HashSet<IpAddr>,
    attempts: u64,
    first_ns: u64,
    last_ns: u64,
    beyond: bool,
}

/// A capture flow of a host Sysmon also watched.
#[derive(Debug, Clone, Copy)]
struct FlowTuple {
    proto: u8,
    inside: IpAddr,
    inside_port: u16,
    outside: IpAddr,
    outside_port: u16,
    first_ns: u64,
    last_ns: u64,
}

/// An endpoint hit as network alerts of its host see it.
#[derive(Debug, Clone)]
struct HostHit {
    ts_ns: u64,
    score: u8,
    branch: EndpointBranch,
    key: String,
    summary: String,
    alert_id: String,
    process: Option<u32>,
}

pub struct EndpointEvidence {
    config: Arc<Config>,
    binaries: BinaryMatcher,
    domains: DomainMatcher,
    allow_domains: DomainMatcher,
    computers: Vec<String>,
    computer_index: HashMap<String, u32>,
    /// Per computer: its local addresses in Event 3, with how often.
    addresses: Vec<BTreeMap<IpAddr, u64>>,
    processes: Vec<Process>,
    process_index: HashMap<(u32, String), u32>,
    conns: Vec<Conn>,
    folds: BTreeMap<FoldKey, Fold>,
    fanout: BTreeMap<(u64, u32, u32, u8, u16), FanOut>,
    /// After `seal`: alerts waiting for their window to end, latest last.
    pending: VecDeque<Alert>,
    hits_by_host: HashMap<IpAddr, Vec<HostHit>>,
    watched: HashSet<IpAddr>,
    flows: HashMap<Uid, FlowTuple>,
    /// The uids as alert evidence writes them.
    flow_names: HashMap<String, Uid>,
    flow_order: VecDeque<Uid>,
    pub counters: EndpointCounters,
}

impl EndpointEvidence {
    pub fn new(
        config: Arc<Config>,
        binaries: BinaryMatcher,
        domains: DomainMatcher,
        allow_domains: DomainMatcher,
    ) -> EndpointEvidence {
        EndpointEvidence {
            config,
            binaries,
            domains,
            allow_domains,
            computers: Vec::new(),
            computer_index: HashMap::new(),
            addresses: Vec::new(),
            processes: Vec::new(),
            process_index: HashMap::new(),
            conns: Vec::new(),
            folds: BTreeMap::new(),
            fanout: BTreeMap::new(),
            pending: VecDeque::new(),
            hits_by_host: HashMap::new(),
            watched: HashSet::new(),
            flows: HashMap::new(),
            flow_names: HashMap::new(),
            flow_order: VecDeque::new(),
            counters: EndpointCounters::default(),
        }
    }

    fn c(&self) -> &EndpointConfig {
        &self.config.endpoint
    }

    fn computer(&mut self, name: &str) -> u32 {
        let key = name.to_ascii_lowercase();
        if let Some(&i) = self.computer_index.get(&key) {
            return i;
        }
        let i = self.computers.len() as u32;
        self.computers.push(name.to_string());
        self.addresses.push(BTreeMap::new());
        self.computer_index.insert(key, i);
        i
    }

    /// The process an event belongs to (by ProcessGuid, else ProcessId and Image), with
    /// what the event tells of it. None past `max_processes` (counted).
    fn process(&mut self, computer: u32, ev: &SysmonEvent) -> Option<u32> {
        let guid = ev.get("ProcessGuid").map(str::to_string).or_else(|| {
            Some(format!(
                "{}|{}",
                ev.get("ProcessId")?,
                ev.get("Image").unwrap_or("")
            ))
        })?;
        let index = match self.process_index.get(&(computer, guid.clone())) {
            Some(&i) => i,
            None => {
                if self.processes.len() >= self.c().max_processes {
                    self.counters.processes_dropped += 1;
                    return None;
                }
                let i = self.processes.len() as u32;
                self.processes.push(Process {
                    computer: self.computers[computer as usize].clone(),
                    process_guid: ev.get("ProcessGuid").map(str::to_string),
                    process_id: ev.get("ProcessId").and_then(|p| p.parse().ok()),
                    ..Process::default()
                });
                self.process_index.insert((computer, guid), i);
                i
            }
        };
        let p = &mut self.processes[index as usize];
        let fill = |slot: &mut Option<String>, value: Option<&str>| {
            if slot.is_none() {
                *slot = value.map(str::to_string);
            }
        };
        fill(&mut p.image, ev.get("Image"));
        fill(&mut p.user, ev.get("User"));
        if ev.event_id == 1 {
            fill(&mut p.command_line, ev.get("CommandLine"));
            fill(&mut p.parent_image, ev.get("ParentImage"));
            fill(&mut p.parent_command_line, ev.get("ParentCommandLine"));
        }
        Some(index)
    }

    /// One event of the endpoint files.
    pub fn add(&mut self, ev: &SysmonEvent) {
        self.counters.events += 1;
        let computer = self.computer(&ev.computer);
        let process = self.process(computer, ev);
        if ev.event_id == 3 {
            self.connection(computer, process, ev);
        }
        let mut hits = Vec::new();
        Matchers {
            binaries: &self.binaries,
            domains: &self.domains,
            allow_domains: &self.allow_domains,
            config: &self.config.endpoint,
            proxyware: &self.config.proxyware,
        }
        .hits(ev, &mut hits);
        let window_ns = self.config.proxyware.alert_window_seconds.max(1) * NS;
        for hit in hits {
            self.fold(computer, process, ev, hit, window_ns);
        }
    }

    fn connection(&mut self, computer: u32, process: Option<u32>, ev: &SysmonEvent) {
        let initiated = !ev
            .get("Initiated")
            .is_some_and(|v| v.eq_ignore_ascii_case("false"));
        let source = ev.get("SourceIp").and_then(|a| a.parse::<IpAddr>().ok());
        let source_port = ev.get("SourcePort").and_then(|p| p.parse::<u16>().ok());
        let (Some(source), Some(source_port), Some((dest, dest_port))) =
            (source, source_port, destination(ev))
        else {
            return;
        };
        let (local, local_port, remote, remote_port) = if initiated {
            (source, source_port, dest, dest_port)
        } else {
            (dest, dest_port, source, source_port)
        };
        if !local.is_loopback() && !local.is_unspecified() {
            *self.addresses[computer as usize].entry(local).or_insert(0) += 1;
        }
        let proto = match ev.get("Protocol").map(str::to_ascii_lowercase).as_deref() {
            Some("udp") => 17,
            _ => 6,
        };
        if let Some(process) = process {
            if self.conns.len() < self.c().max_connections {
                self.conns.push(Conn {
                    local,
                    remote,
                    remote_port,
                    local_port,
                    proto,
                    time_ns: ev.time_ns,
                    process,
                });
            } else {
                self.counters.connections_dropped += 1;
            }
            // Fan-out: outbound attempts to outside addresses, per process, port and window.
            if initiated && !self.config.is_inside(remote) && !remote.is_loopback() {
                let window_ns = self.config.windows.window_ns().max(1);
                let start = ev.time_ns - ev.time_ns % window_ns;
                let f = self
                    .fanout
                    .entry((start, computer, process, proto, remote_port))
                    .or_insert_with(|| FanOut {
                        first_ns: ev.time_ns,
                        last_ns: ev.time_ns,
                        ..FanOut::default()
                    });
                f.attempts += 1;
                f.first_ns = f.first_ns.min(ev.time_ns);
                f.last_ns = f.last_ns.max(ev.time_ns);
                if f.destinations.len() < MAX_FANOUT_DESTINATIONS {
                    f.destinations.insert(remote);
                } else {
                    f.beyond = true;
                }
            }
        }
    }

    fn fold(
        &mut self,
        computer: u32,
        process: Option<u32>,
        ev: &SysmonEvent,
        hit: Hit,
        window_ns: u64,
    ) {
        self.counters.hits += 1;
        let key = FoldKey {
            window_start_ns: ev.time_ns - ev.time_ns % window_ns,
            computer,
            branch: hit.branch,
            key: hit.key,
        };
        let fold = self.folds.entry(key).or_insert_with(|| Fold {
            first_ns: ev.time_ns,
            last_ns: ev.time_ns,
            ..Fold::default()
        });
        fold.first_ns = fold.first_ns.min(ev.time_ns);
        fold.last_ns = fold.last_ns.max(ev.time_ns);
        fold.count += 1;
        if hit.score > fold.score || fold.summary.is_empty() {
            fold.score = hit.score;
            fold.summary = hit.summary.clone();
            fold.process = process;
        }
        if fold.destination.is_none() {
            fold.destination = hit.destination;
        }
        if fold.destination_name.is_none() {
            fold.destination_name = hit.destination_name;
        }
        if fold.summaries.len() < MAX_EVIDENCE_ITEMS {
            fold.summaries.insert(hit.summary);
        }
        if fold.events.len() < MAX_EVIDENCE_ITEMS {
            fold.events.push(json!({
                "time": rfc3339(ev.time_ns),
                "EventID": ev.event_id,
                "record_id": ev.record_id,
                "Image": ev.get("Image"),
                "detail": hit.detail,
            }));
        }
    }

    /// The computer's address: its most used local address inside home_nets, then any, then
    /// `[endpoint] hosts`.
    fn address(&self, computer: u32) -> Option<IpAddr> {
        let seen = &self.addresses[computer as usize];
        let best = |inside: bool| {
            seen.iter()
                .filter(|(a, _)| self.config.is_inside(**a) == inside)
                .max_by_key(|(a, n)| (**n, std::cmp::Reverse(**a)))
                .map(|(a, _)| *a)
        };
        best(true).or_else(|| best(false)).or_else(|| {
            let name = &self.computers[computer as usize];
            let short = name.split('.').next().unwrap_or(name);
            self.c()
                .hosts
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name) || n.eq_ignore_ascii_case(short))
                .map(|(_, a)| *a)
        })
    }

    /// End of the endpoint files: fan-out becomes hits, every fold an alert, connections
    /// are indexed. Alerts are then released by [`EndpointEvidence::due`].
    pub fn seal(&mut self) {
        let min = self.c().fanout_min_destinations.max(1);
        let fanout = std::mem::take(&mut self.fanout);
        for ((start, computer, process, proto, port), f) in fanout {
            if f.destinations.len() < min {
                continue;
            }
            let image = self.processes[process as usize]
                .image
                .clone()
                .unwrap_or_default();
            let proto_name = if proto == 17 { "udp" } else { "tcp" };
            let seconds = (f.last_ns - f.first_ns) as f64 / 1e9;
            let key = FoldKey {
                window_start_ns: start,
                computer,
                branch: EndpointBranch::FanOut,
                key: format!("{proto_name}/{port}"),
            };
            let mut sample: Vec<String> = f.destinations.iter().map(|a| a.to_string()).collect();
            sample.sort();
            sample.truncate(MAX_EVIDENCE_ITEMS);
            let summary = format!(
                "{image} made {} connection{} to {}{} distinct outside addresses on {proto_name} port {port} in {}",
                f.attempts,
                if f.attempts == 1 { "" } else { "s" },
                if f.beyond { "at least " } else { "" },
                f.destinations.len(),
                crate::detect::human_duration(seconds)
            );
            self.counters.hits += 1;
            self.folds.insert(
                key,
                Fold {
                    first_ns: f.first_ns,
                    last_ns: f.last_ns,
                    count: f.attempts,
                    score: self.c().fanout_score,
                    summary: summary.clone(),
                    destination: None,
                    destination_name: None,
                    process: Some(process),
                    events: vec![json!({
                        "distinct_destinations": f.destinations.len(),
                        "attempts": f.attempts,
                        "port": port,
                        "protocol": proto_name,
                        "destinations_sample": sample,
                    })],
                    summaries: [summary].into(),
                },
            );
        }
        self.conns.sort_unstable();
        let folds = std::mem::take(&mut self.folds);
        let mut alerts = Vec::with_capacity(folds.len());
        let mut unaddressed = BTreeSet::new();
        for (key, fold) in folds {
            let address = self.address(key.computer);
            if address.is_none() {
                unaddressed.insert(key.computer);
            }
            let host = address.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            let window_ns = match key.branch {
                EndpointBranch::FanOut => self.config.windows.window_ns(),
                _ => self.config.proxyware.alert_window_seconds.max(1) * NS,
            };
            let alert = self.render(&key, &fold, host, window_ns);
            self.watched.insert(host);
            self.hits_by_host.entry(host).or_default().push(HostHit {
                ts_ns: fold.first_ns,
                score: fold.score,
                branch: key.branch,
                key: key.key.clone(),
                summary: fold.summary.clone(),
                alert_id: alert.id.clone(),
                process: fold.process,
            });
            alerts.push((key.window_start_ns + window_ns, alert));
        }
        self.counters.computers_without_address = unaddressed.len() as u64;
        for computer in 0..self.computers.len() as u32 {
            if let Some(a) = self.address(computer) {
                self.watched.insert(a);
            }
        }
        alerts.sort_by(|a, b| (a.0, &a.1.time, &a.1.id).cmp(&(b.0, &b.1.time, &b.1.id)));
        self.counters.alerts = alerts.len() as u64;
        self.pending = alerts.into_iter().map(|(_, a)| a).collect();
    }

    fn render(&self, key: &FoldKey, fold: &Fold, host: IpAddr, window_ns: u64) -> Alert {
        let computer = &self.computers[key.computer as usize];
        let others: Vec<&String> = fold
            .summaries
            .iter()
            .filter(|s| **s != fold.summary)
            .collect();
        let mut reason = format!("{computer} ({host}) {}", fold.summary);
        if !others.is_empty() {
            reason.push_str(&format!("; also {} more", others.len()));
        }
        reason.push_str(" (Sysmon)");
        let process = fold
            .process
            .map(|p| Box::new(self.processes[p as usize].clone()));
        Alert {
            id: alert_id(key.branch.as_str(), host, key.window_start_ns, &key.key),
            time: rfc3339(fold.first_ns),
            host,
            destination_ip: fold.destination.map(|d| d.0),
            destination_hostname: fold.destination_name.clone(),
            destination_port: fold.destination.map(|d| d.1),
            detection_branch: key.branch.as_str(),
            technique: TECHNIQUE,
            analytic: key.branch.analytic(),
            score: fold.score,
            severity: severity(fold.score),
            bytes_out: 0,
            bytes_in: 0,
            duration_s: (fold.last_ns - fold.first_ns) as f64 / 1e9,
            country: None,
            asn: None,
            window_start: rfc3339(key.window_start_ns),
            window_end: rfc3339(key.window_start_ns + window_ns),
            count: fold.count,
            reason,
            evidence: json!({
                "source": "sysmon",
                "computer": computer,
                "key": key.key,
                "events": fold.events,
                "summaries": fold.summaries,
            }),
            process,
        }
    }

    /// A capture flow: remembered (bounded) when its inside host is one Sysmon watched.
    pub fn flow(&mut self, update: &FlowUpdate<'_>) {
        if !self.watched.contains(&update.inside) {
            return;
        }
        let tuple = FlowTuple {
            proto: update.proto,
            inside: update.inside,
            inside_port: update.inside_port,
            outside: update.outside,
            outside_port: update.outside_port,
            first_ns: update.first_ns,
            last_ns: update.last_ns,
        };
        if let Some(known) = self.flows.get_mut(&update.uid) {
            *known = tuple;
            return;
        }
        if self.flows.len() >= self.c().max_flows {
            // The oldest flow goes: alerts are about recent flows.
            if let Some(old) = self.flow_order.pop_front() {
                self.flows.remove(&old);
                self.flow_names.remove(&old.to_string());
            }
            self.counters.flows_dropped += 1;
        }
        self.flows.insert(update.uid, tuple);
        self.flow_names.insert(update.uid.to_string(), update.uid);
        self.flow_order.push_back(update.uid);
    }

    /// Endpoint alerts whose window ended by `now_ns`.
    pub fn due(&mut self, now_ns: u64) -> Vec<Alert> {
        let mut out = Vec::new();
        while let Some(a) = self.pending.front() {
            if crate::alert::parse_rfc3339(&a.window_end).is_some_and(|end| end <= now_ns) {
                out.extend(self.pending.pop_front());
            } else {
                break;
            }
        }
        out
    }

    /// Every endpoint alert not yet released (end of input).
    pub fn rest(&mut self) -> Vec<Alert> {
        self.pending.drain(..).collect()
    }

    /// Network alerts meet endpoint alerts of the same moment: an endpoint alert of the same
    /// host, branch and window (and service) folds into the network one; every network
    /// alert gains the process behind its flows and the boost of its host's endpoint hits.
    /// Returns the batch to emit.
    pub fn combine(&mut self, network: Vec<Alert>, endpoint: Vec<Alert>) -> Vec<Alert> {
        let mut out = network;
        let told = out.len();
        let mut merged: Vec<Vec<String>> = vec![Vec::new(); told];
        for e in endpoint {
            match out[..told].iter().position(|n| same_finding(n, &e)) {
                Some(i) => {
                    self.counters.merged += 1;
                    merged[i].push(e.id.clone());
                    merge(&mut out[i], e);
                }
                None => out.push(e),
            }
        }
        for (alert, merged) in out[..told].iter_mut().zip(&merged) {
            self.enrich(alert, merged);
        }
        out
    }

    /// `merged`: ids of endpoint alerts already folded into this one (not told again).
    fn enrich(&mut self, alert: &mut Alert, merged: &[String]) {
        let (Some(start), Some(end)) = (
            crate::alert::parse_rfc3339(&alert.window_start),
            crate::alert::parse_rfc3339(&alert.window_end),
        ) else {
            return;
        };
        // Matching the alert's own flows beats the process a merged endpoint alert brought.
        if let Some((process, matched_by, connections, listed)) =
            self.process_for(alert, start, end)
        {
            alert.process = Some(Box::new(self.processes[process as usize].clone()));
            set_endpoint_evidence(alert, "process_matched_by", json!(matched_by));
            set_endpoint_evidence(alert, "connections_matched", json!(connections));
            set_endpoint_evidence(alert, "processes", json!(listed));
        }
        if alert.process.is_some() {
            self.counters.network_with_process += 1;
        }
        let slack = self.c().correlation_seconds * NS;
        let hits: Vec<&HostHit> = self
            .hits_by_host
            .get(&alert.host)
            .map(|h| {
                h.iter()
                    .filter(|h| h.ts_ns + slack >= start && h.ts_ns <= end.saturating_add(slack))
                    .collect()
            })
            .unwrap_or_default();
        if !hits.is_empty() {
            let boost = self.c().network_boost;
            alert.score = alert.score.saturating_add(boost).min(100);
            alert.severity = severity(alert.score);
            let strongest_other = hits
                .iter()
                .filter(|h| !merged.contains(&h.alert_id))
                .max_by_key(|h| (h.score, std::cmp::Reverse(h.ts_ns)));
            if let Some(h) = strongest_other {
                alert
                    .reason
                    .push_str(&format!("; on the endpoint it also {} (Sysmon)", h.summary));
            }
            let ids: Vec<&str> = hits.iter().map(|h| h.alert_id.as_str()).collect();
            set_endpoint_evidence(alert, "hits", json!(ids));
            set_endpoint_evidence(alert, "boost", json!(boost));
            self.counters.network_boosted += 1;
        }
    }

    /// The process behind a network alert: by the 5-tuples of its flows, else (a name alert)
    /// the process of an endpoint hit for the same service, else by host, destination
    /// address and port in the window. The process with the most matches wins.
    fn process_for(
        &self,
        alert: &Alert,
        start: u64,
        end: u64,
    ) -> Option<(u32, &'static str, u64, Vec<serde_json::Value>)> {
        let tolerance = self.c().match_tolerance_seconds * NS;
        let mut counts: BTreeMap<u32, u64> = BTreeMap::new();
        let mut uids = Vec::new();
        collect_strings(&alert.evidence, &mut uids);
        for uid in uids {
            let Some(flow) = self.flow_names.get(uid).and_then(|u| self.flows.get(u)) else {
                continue;
            };
            for c in self.conns_between(flow.inside, flow.outside, flow.outside_port) {
                if c.local_port == flow.inside_port
                    && c.proto == flow.proto
                    && c.time_ns + tolerance >= flow.first_ns
                    && c.time_ns <= flow.last_ns + tolerance
                {
                    *counts.entry(c.process).or_insert(0) += 1;
                }
            }
        }
        let mut matched_by = "5-tuple";
        if counts.is_empty() && alert.detection_branch == "ProxywareDomain" {
            let service = alert.evidence.get("service").and_then(|s| s.as_str());
            for h in self.hits_by_host.get(&alert.host).into_iter().flatten() {
                if h.branch == EndpointBranch::ProxywareDomain
                    && Some(h.key.as_str()) == service
                    && h.ts_ns + tolerance >= start
                    && h.ts_ns <= end + tolerance
                    && let Some(p) = h.process
                {
                    *counts.entry(p).or_insert(0) += 1;
                }
            }
            matched_by = "the endpoint's hit for the same service";
        }
        if counts.is_empty()
            && let (Some(ip), Some(port)) = (alert.destination_ip, alert.destination_port)
        {
            for c in self.conns_between(alert.host, ip, port) {
                if c.time_ns + tolerance >= start && c.time_ns <= end + tolerance {
                    *counts.entry(c.process).or_insert(0) += 1;
                }
            }
            matched_by = "host, destination and port";
        }
        let mut ranked: Vec<(u32, u64)> = counts.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let (best, n) = *ranked.first()?;
        let listed = ranked
            .iter()
            .take(MAX_PROCESSES_LISTED)
            .map(|(p, n)| {
                let p = &self.processes[*p as usize];
                json!({"Image": p.image, "ProcessId": p.process_id, "computer": p.computer, "matches": n})
            })
            .collect();
        Some((best, matched_by, n, listed))
    }

    /// Connections from `local` to `remote:port`, by binary search on the sorted list.
    fn conns_between(&self, local: IpAddr, remote: IpAddr, port: u16) -> &[Conn] {
        let lo = self
            .conns
            .partition_point(|c| (c.local, c.remote, c.remote_port) < (local, remote, port));
        let hi = self
            .conns
            .partition_point(|c| (c.local, c.remote, c.remote_port) <= (local, remote, port));
        &self.conns[lo..hi]
    }
}

/// The same finding seen from both sides: host, branch and window, and for names the service.
fn same_finding(network: &Alert, endpoint: &Alert) -> bool {
    network.host == endpoint.host
        && network.detection_branch == endpoint.detection_branch
        && network.window_start == endpoint.window_start
        && (network.detection_branch != "ProxywareDomain"
            || network.evidence.get("service") == endpoint.evidence.get("key"))
}

/// Folds an endpoint alert into the network alert of the same finding.
fn merge(network: &mut Alert, endpoint: Alert) {
    network.score = network.score.max(endpoint.score);
    network.severity = severity(network.score);
    if network.process.is_none() {
        network.process = endpoint.process.clone();
    }
    network.reason.push_str(&format!(
        "; Sysmon saw it too: {}",
        endpoint
            .reason
            .split_once(") ")
            .map_or(endpoint.reason.as_str(), |(_, r)| r)
    ));
    set_endpoint_evidence(network, "merged", endpoint.evidence);
}

fn set_endpoint_evidence(alert: &mut Alert, key: &str, value: serde_json::Value) {
    if !alert.evidence.is_object() {
        alert.evidence = json!({"details": alert.evidence.take()});
    }
    let endpoint = alert
        .evidence
        .as_object_mut()
        .map(|o| o.entry("endpoint").or_insert_with(|| json!({})));
    if let Some(serde_json::Value::Object(map)) = endpoint {
        map.insert(key.to_string(), value);
    }
}

/// Every string in the evidence (flow uids among them).
fn collect_strings<'v>(value: &'v serde_json::Value, out: &mut Vec<&'v str>) {
    match value {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_strings(v, out)),
        serde_json::Value::Object(o) => o.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}
