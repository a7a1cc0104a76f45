//! ProxywareDomain (MITRE DET0028 AN0081): an inside host looked up or contacted a proxyware
//! service's domain. Observations of one host and service within one window fold into one
//! alert, emitted when the window ends in event time.
use crate::alert::{Alert, TECHNIQUE, alert_id, rfc3339, severity};
use crate::config::{Cidr, ProxywareConfig};
use crate::enrich::domains::DomainMatcher;
use crate::flow::key::Uid;
use crate::flow::update::{FlowUpdate, NameSource};
use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

const NS: u64 = 1_000_000_000;
/// Evidence lists stay readable and bounded however noisy the host is.
const MAX_EVIDENCE_ITEMS: usize = 20;

/// One sighting of a name by a host.
#[derive(Debug, Clone)]
pub struct NameObservation<'a> {
    pub ts_ns: u64,
    pub host: IpAddr,
    /// The server the name was used with (for DNS answers: the address it resolved to).
    pub destination: Option<(IpAddr, u16)>,
    pub name: &'a str,
    pub source: NameSource,
    pub flow: Option<Uid>,
    /// A DNS response: contributes an address, not a new observation.
    pub is_answer: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct AlertKey {
    window_start_ns: u64,
    host: IpAddr,
    service: String,
}

#[derive(Debug, Default)]
struct Accumulator {
    first_ns: u64,
    last_ns: u64,
    count: u64,
    matched_domain: String,
    names: BTreeSet<String>,
    via: BTreeSet<&'static str>,
    connected: bool,
    destination: Option<(IpAddr, u16)>,
    destination_name: Option<String>,
    addresses: BTreeSet<IpAddr>,
    flows: BTreeSet<Uid>,
    bytes_out: u64,
    bytes_in: u64,
}

/// Byte counts already credited for a matched flow, so interim updates add only the change.
#[derive(Debug)]
struct MatchedFlow {
    key: AlertKey,
    bytes_out: u64,
    bytes_in: u64,
}

pub struct ProxywareDetector {
    matcher: DomainMatcher,
    allow_domains: DomainMatcher,
    allow_hosts: Vec<Cidr>,
    config: ProxywareConfig,
    open: BTreeMap<AlertKey, Accumulator>,
    flows: FxHashMap<Uid, MatchedFlow>,
    pub observations: u64,
}

impl ProxywareDetector {
    pub fn new(
        matcher: DomainMatcher,
        allow_domains: DomainMatcher,
        config: ProxywareConfig,
    ) -> Self {
        ProxywareDetector {
            matcher,
            allow_domains,
            allow_hosts: config.allow_hosts.clone(),
            config,
            open: BTreeMap::new(),
            flows: FxHashMap::default(),
            observations: 0,
        }
    }

    /// Reloaded domain lists and settings; open alert windows and matched flows stay.
    pub fn reconfigure(
        &mut self,
        matcher: DomainMatcher,
        allow_domains: DomainMatcher,
        config: ProxywareConfig,
    ) {
        self.matcher = matcher;
        self.allow_domains = allow_domains;
        self.allow_hosts = config.allow_hosts.clone();
        self.config = config;
    }

    fn window_start(&self, ts_ns: u64) -> u64 {
        let w = self.config.alert_window_seconds.max(1) * NS;
        ts_ns - ts_ns % w
    }

    pub fn observe(&mut self, obs: &NameObservation<'_>) {
        let Some(hit) = self.matcher.find(obs.name) else {
            return;
        };
        if self.allow_domains.find(obs.name).is_some()
            || self.allow_hosts.iter().any(|n| n.contains(obs.host))
        {
            return;
        }
        self.observations += 1;
        let key = AlertKey {
            window_start_ns: self.window_start(obs.ts_ns),
            host: obs.host,
            service: hit.service.to_string(),
        };
        let domain = hit.domain.to_string();
        let acc = self.open.entry(key.clone()).or_insert_with(|| Accumulator {
            first_ns: obs.ts_ns,
            last_ns: obs.ts_ns,
            matched_domain: domain,
            ..Accumulator::default()
        });
        acc.first_ns = acc.first_ns.min(obs.ts_ns);
        acc.last_ns = acc.last_ns.max(obs.ts_ns);
        if acc.names.len() < MAX_EVIDENCE_ITEMS {
            acc.names
                .insert(obs.name.trim_end_matches('.').to_ascii_lowercase());
        }
        acc.via.insert(obs.source.as_str());
        if obs.is_answer {
            if let Some((addr, _)) = obs.destination
                && acc.addresses.len() < MAX_EVIDENCE_ITEMS
            {
                acc.addresses.insert(addr);
            }
            return;
        }
        acc.count += 1;
        if obs.source.is_connection() {
            // A connection's destination beats a resolver's address.
            if !acc.connected {
                acc.destination = obs.destination;
                acc.destination_name = Some(obs.name.to_string());
            }
            acc.connected = true;
        } else if acc.destination_name.is_none() {
            acc.destination_name = Some(obs.name.to_string());
        }
        if let Some(uid) = obs.flow.filter(|_| obs.source.is_connection()) {
            if acc.flows.len() < MAX_EVIDENCE_ITEMS * 50 {
                acc.flows.insert(uid);
            }
            self.flows.entry(uid).or_insert(MatchedFlow {
                key,
                bytes_out: 0,
                bytes_in: 0,
            });
        }
    }

    /// Credits a matched flow's bytes to its alert.
    pub fn flow_update(&mut self, update: &FlowUpdate, is_final: bool) {
        let Some(matched) = self.flows.get_mut(&update.uid) else {
            return;
        };
        if let Some(acc) = self.open.get_mut(&matched.key) {
            acc.bytes_out += update.bytes_out.saturating_sub(matched.bytes_out);
            acc.bytes_in += update.bytes_in.saturating_sub(matched.bytes_in);
            acc.last_ns = acc.last_ns.max(update.last_ns);
        }
        matched.bytes_out = matched.bytes_out.max(update.bytes_out);
        matched.bytes_in = matched.bytes_in.max(update.bytes_in);
        if is_final {
            self.flows.remove(&update.uid);
        }
    }

    /// Alerts whose window ended at or before `now_ns`, in deterministic order.
    pub fn close_windows(&mut self, now_ns: u64) -> Vec<Alert> {
        let w = self.config.alert_window_seconds.max(1) * NS;
        let due: Vec<AlertKey> = self
            .open
            .keys()
            .take_while(|k| k.window_start_ns.saturating_add(w) <= now_ns)
            .cloned()
            .collect();
        self.emit(due)
    }

    /// Every open alert (end of input).
    pub fn finish(&mut self) -> Vec<Alert> {
        let all: Vec<AlertKey> = self.open.keys().cloned().collect();
        self.emit(all)
    }

    fn emit(&mut self, keys: Vec<AlertKey>) -> Vec<Alert> {
        let w = self.config.alert_window_seconds.max(1) * NS;
        let mut alerts = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(acc) = self.open.remove(&key) else {
                continue;
            };
            self.flows.retain(|_, m| m.key != key);
            alerts.push(self.render(&key, &acc, w));
        }
        alerts
    }

    fn render(&self, key: &AlertKey, acc: &Accumulator, window_ns: u64) -> Alert {
        let c = &self.config;
        let mut score = u32::from(c.base_score);
        if acc.connected {
            score += u32::from(c.connection_bonus);
        }
        if acc.bytes_out > c.upload_bonus_bytes {
            score += u32::from(c.upload_bonus);
        }
        let score = score.min(100) as u8;
        let names: Vec<&str> = acc.names.iter().map(String::as_str).collect();
        let via: Vec<&str> = acc.via.iter().copied().collect();
        let what = if acc.connected {
            "contacted"
        } else {
            "looked up"
        };
        let mut reason = format!(
            "{} {what} {} (proxyware, {}) {} time{} in the window via {}: {}",
            key.host,
            key.service,
            acc.matched_domain,
            acc.count,
            if acc.count == 1 { "" } else { "s" },
            via.join(", "),
            names.join(", ")
        );
        if acc.bytes_out > 0 || acc.bytes_in > 0 {
            reason.push_str(&format!(
                "; {} bytes sent, {} received",
                acc.bytes_out, acc.bytes_in
            ));
        }
        let destination_ip = acc
            .destination
            .map(|d| d.0)
            .or_else(|| acc.addresses.iter().next().copied());
        Alert {
            // One alert per host, service and window: the service tells them apart.
            id: alert_id(
                "ProxywareDomain",
                key.host,
                key.window_start_ns,
                &key.service,
            ),
            time: rfc3339(acc.first_ns),
            host: key.host,
            destination_ip,
            destination_hostname: acc.destination_name.clone(),
            destination_port: acc.destination.map(|d| d.1).filter(|&p| p != 0),
            detection_branch: "ProxywareDomain",
            technique: TECHNIQUE,
            analytic: "AN0081",
            score,
            severity: severity(score),
            bytes_out: acc.bytes_out,
            bytes_in: acc.bytes_in,
            duration_s: (acc.last_ns.saturating_sub(acc.first_ns)) as f64 / 1e9,
            country: None,
            asn: None,
            window_start: rfc3339(key.window_start_ns),
            window_end: rfc3339(key.window_start_ns + window_ns),
            count: acc.count,
            reason,
            evidence: serde_json::json!({
                "service": key.service,
                "matched_domain": acc.matched_domain,
                "names": names,
                "via": via,
                "resolved_addresses": acc.addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                "flows": acc.flows.iter().take(MAX_EVIDENCE_ITEMS).map(|u| u.to_string()).collect::<Vec<_>>(),
                "flow_count": acc.flows.len(),
                "first_seen": rfc3339(acc.first_ns),
                "last_seen": rfc3339(acc.last_ns),
            }),
            process: None,
        }
    }
}
