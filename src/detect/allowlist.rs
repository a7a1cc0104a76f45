//! Known-good traffic that behavioural detectors never score (a backup server's nightly upload,
//! authorised speed tests), and network segments with their own policy (a lab or BYOD subnet
//! where proxyware is tolerated).
use crate::config::Cidr;
use crate::enrich::domains::{DomainListError, DomainMatcher};
use crate::enrich::geo::GeoInfo;
use crate::flow::update::FlowUpdate;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AllowlistConfig {
    /// Outside networks whose traffic is never scored (backup targets, partners).
    pub destination_cidrs: Vec<Cidr>,
    /// Names (whole-label suffix match on SNI, Host, or the resolved name) never scored.
    pub domains: Vec<String>,
    /// Outside autonomous systems never scored.
    pub asns: Vec<u32>,
    /// Inside hosts that never alert on behaviour (a busy web proxy, the backup server).
    pub inside_hosts: Vec<Cidr>,
    /// Outside ports never scored (e.g. 5201 for authorised iperf3 tests).
    pub ports: Vec<u16>,
}

impl Default for AllowlistConfig {
    fn default() -> Self {
        AllowlistConfig {
            destination_cidrs: Vec::new(),
            // Authorised performance testing: speed-test services upload by design.
            domains: [
                "speedtest.net",
                "ooklaserver.net",
                "speed.cloudflare.com",
                "fast.com",
            ]
            .map(String::from)
            .to_vec(),
            asns: Vec::new(),
            inside_hosts: Vec::new(),
            ports: Vec::new(),
        }
    }
}

/// What a segment's hosts get when they alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SegmentPolicy {
    /// Alerts are counted in the summary but not emitted.
    Suppress,
    /// Scores are lowered by `score_penalty`.
    Lower,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentConfig {
    pub name: String,
    pub cidrs: Vec<Cidr>,
    pub policy: SegmentPolicy,
    #[serde(default = "default_score_penalty")]
    pub score_penalty: u8,
    /// Branches the policy applies to; empty means every branch.
    #[serde(default)]
    pub branches: Vec<String>,
}

fn default_score_penalty() -> u8 {
    30
}

pub struct Allowlist {
    destination_cidrs: Vec<Cidr>,
    domains: DomainMatcher,
    asns: Vec<u32>,
    inside_hosts: Vec<Cidr>,
    ports: Vec<u16>,
}

impl Allowlist {
    pub fn new(config: &AllowlistConfig) -> Result<Allowlist, DomainListError> {
        let mut asns = config.asns.clone();
        asns.sort_unstable();
        Ok(Allowlist {
            destination_cidrs: config.destination_cidrs.clone(),
            domains: DomainMatcher::from_list("allowlist", &config.domains)?,
            asns,
            inside_hosts: config.inside_hosts.clone(),
            ports: config.ports.clone(),
        })
    }

    /// The reason a flow's destination is allowlisted, if it is.
    pub fn destination(&self, update: &FlowUpdate<'_>, geo: &GeoInfo) -> Option<&'static str> {
        if self.ports.contains(&update.outside_port) {
            return Some("port");
        }
        if self
            .destination_cidrs
            .iter()
            .any(|c| c.contains(update.outside))
        {
            return Some("destination_cidr");
        }
        if geo
            .asn
            .is_some_and(|asn| self.asns.binary_search(&asn).is_ok())
        {
            return Some("asn");
        }
        let names = update.names?;
        let listed = |name: Option<&str>| name.is_some_and(|n| self.domains.find(n).is_some());
        (listed(names.sni.as_deref())
            || listed(names.http_host.as_deref())
            || listed(names.connect_target.as_deref())
            || listed(names.socks_target.as_deref())
            || listed(names.dns_name.as_deref()))
        .then_some("domain")
    }

    pub fn inside_host(&self, host: IpAddr) -> bool {
        self.inside_hosts.iter().any(|c| c.contains(host))
    }
}

/// Applies the segment policy to a finished alert (ProxywareDomain alerts, which the domain
/// detector scores itself). Returns false when the alert is suppressed.
pub fn apply_segment_policy(segments: &[SegmentConfig], alert: &mut crate::alert::Alert) -> bool {
    let Some(segment) = segment_for(segments, alert.host, alert.detection_branch) else {
        return true;
    };
    match segment.policy {
        SegmentPolicy::Suppress => false,
        SegmentPolicy::Lower => {
            alert.score = alert.score.saturating_sub(segment.score_penalty);
            alert.severity = crate::alert::severity(alert.score);
            if let Some(map) = alert.evidence.as_object_mut() {
                map.insert(
                    "segment".into(),
                    serde_json::json!({"segment": segment.name, "change": -i32::from(segment.score_penalty)}),
                );
            }
            true
        }
    }
}

/// The first configured segment containing `host` whose policy covers `branch`.
pub fn segment_for<'s>(
    segments: &'s [SegmentConfig],
    host: IpAddr,
    branch: &str,
) -> Option<&'s SegmentConfig> {
    segments.iter().find(|s| {
        s.cidrs.iter().any(|c| c.contains(host))
            && (s.branches.is_empty() || s.branches.iter().any(|b| b == branch))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::key::Uid;
    use crate::flow::update::{FlowNames, UpdateKind};

    fn update<'a>(outside: [u8; 4], port: u16, names: Option<&'a FlowNames>) -> FlowUpdate<'a> {
        FlowUpdate {
            uid: Uid(1),
            kind: UpdateKind::Final,
            proto: 6,
            inside: IpAddr::from([10, 0, 0, 5]),
            inside_port: 50000,
            outside: IpAddr::from(outside),
            outside_port: port,
            inbound: false,
            first_ns: 0,
            last_ns: 1,
            bytes_out: 1,
            bytes_in: 1,
            pkts_out: 1,
            pkts_in: 1,
            answered: true,
            conn_state: "SF",
            services: 0,
            names,
        }
    }

    #[test]
    fn destinations_are_allowlisted_by_cidr_port_asn_and_whole_label_name() {
        let config = AllowlistConfig {
            destination_cidrs: vec!["192.0.2.0/24".parse().unwrap()],
            asns: vec![64500],
            ports: vec![5201],
            ..AllowlistConfig::default()
        };
        let allow = Allowlist::new(&config).unwrap();
        let none = GeoInfo::default();
        assert_eq!(
            allow.destination(&update([192, 0, 2, 9], 443, None), &none),
            Some("destination_cidr")
        );
        assert_eq!(
            allow.destination(&update([203, 0, 113, 1], 5201, None), &none),
            Some("port")
        );
        let in_asn = GeoInfo {
            asn: Some(64500),
            ..GeoInfo::default()
        };
        assert_eq!(
            allow.destination(&update([203, 0, 113, 1], 443, None), &in_asn),
            Some("asn")
        );
        let speedtest = FlowNames {
            sni: Some("www.speedtest.net".into()),
            ..FlowNames::default()
        };
        assert_eq!(
            allow.destination(&update([203, 0, 113, 1], 443, Some(&speedtest)), &none),
            Some("domain")
        );
        let lookalike = FlowNames {
            dns_name: Some("notspeedtest.net".into()),
            ..FlowNames::default()
        };
        assert_eq!(
            allow.destination(&update([203, 0, 113, 1], 443, Some(&lookalike)), &none),
            None
        );
    }

    #[test]
    fn segments_match_host_and_branch() {
        let segments = vec![SegmentConfig {
            name: "byod".into(),
            cidrs: vec!["10.50.0.0/16".parse().unwrap()],
            policy: SegmentPolicy::Lower,
            score_penalty: 30,
            branches: vec!["ProxywareDomain".into()],
        }];
        assert!(segment_for(&segments, IpAddr::from([10, 50, 1, 2]), "ProxywareDomain").is_some());
        assert!(segment_for(&segments, IpAddr::from([10, 50, 1, 2]), "FanOut").is_none());
        assert!(segment_for(&segments, IpAddr::from([10, 51, 1, 2]), "ProxywareDomain").is_none());
    }
}
